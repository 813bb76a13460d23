//! Devices: `--gpu` binds the GPU nodes the host has, and a command that asks
//! for a GPU gets nothing else of the host's /dev: not a node planted beside
//! /dev/dri, not a block device inside it, not a link from it to elsewhere.
//!
//! The host's /dev is replaced by a fake one in a private mount namespace
//! (`unshare -m`, then a tmpfs bound over /dev), which needs `mknod`: root
//! only. The control reads the same planted nodes through the same paths in
//! that namespace, outside the sandbox.

use std::process::Command;

use crate::harness::*;

/// The fake /dev: the basic nodes, one DRM render node, and what must stay out.
const SETUP: &str = r#"set -e
here=$(pwd)
mount -t tmpfs -o mode=755 fakedev "$FAKE"
cd "$FAKE"
mknod -m 666 null c 1 3; mknod -m 666 zero c 1 5; mknod -m 666 full c 1 7
mknod -m 666 random c 1 8; mknod -m 666 urandom c 1 9; mknod -m 666 tty c 5 0
mkdir -p dri/by-path
mknod -m 666 dri/renderD128 c 226 128
# Planted: a node with a working driver (null) beside dri, a block
# device (loop) inside dri, and links from dri to the planted node.
mknod -m 666 fake-disk c 1 3
mknod -m 666 dri/loop9 b 7 0
ln -s ../fake-disk dri/card9
ln -s ../../fake-disk dri/by-path/pci-evil-card
cd "$here"
mount --bind "$FAKE" /dev
exec "$@"
"#;

const PLANTED: [&str; 4] = [
    "/dev/fake-disk",
    "/dev/dri/loop9",
    "/dev/dri/card9",
    "/dev/dri/by-path/pci-evil-card",
];

/// `cmd` run in a private mount namespace whose /dev is the fake one.
fn in_fake_dev(cmd: Command, fake: &std::path::Path) -> Out {
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", SETUP, "sh"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env("FAKE", fake);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    c.stdin(std::process::Stdio::null());
    Out::from_output(c.output().unwrap())
}

fn probe_argv(what: &str, path: &str) -> Vec<String> {
    [PY, ".probe.py", what, path].map(String::from).to_vec()
}

/// Each planted path refused inside with one of `want`; the render node is
/// there (so `--gpu` took effect); the control reads every planted path.
fn planted_stay_out(c: &Ctx, extra: &[&str], want: &[&str]) {
    if !crate::common::is_root() {
        c.seen("skipped: a fake /dev needs mknod (root); CI runs this as root");
        eprintln!("SKIP: a fake /dev needs mknod (root)");
        return;
    }
    let fake = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for path in PLANTED {
        let argv = probe_argv("read", path);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut flags = vec!["--gpu"];
        flags.extend_from_slice(extra);
        let out = in_fake_dev(c.sc_cmd(&flags, &argv), fake.path());
        seen.push(format!("{path}: {}", assert_errno(&out, want)));
        let control = in_fake_dev(c.host_cmd(&argv), fake.path());
        assert_ok(&control);
    }
    // The GPU node itself is reachable (its driver is absent: ENXIO).
    let argv = probe_argv("read", "/dev/dri/renderD128");
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut flags = vec!["--gpu"];
    flags.extend_from_slice(extra);
    let out = in_fake_dev(c.sc_cmd(&flags, &argv), fake.path());
    assert_errno(&out, &["ENXIO"]);
    c.seen(&seen.join("; "));
}

attack!(dev_gpu_exposes_no_other_device, "devices", |c| {
    planted_stay_out(&c, &[], &["ENOENT"])
});

attack!(
    dev_gpu_container_tier_refuses_other_devices,
    "devices",
    |c| {
        // No mount namespace: the planted nodes exist, Landlock refuses them.
        planted_stay_out(&c, &["--tier", "container"], &["EACCES"])
    }
);

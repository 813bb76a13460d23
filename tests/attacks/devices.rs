//! Devices: `--gpu` binds the GPU nodes the host has, and a command that asks
//! for a GPU gets nothing else of the host's /dev: not a node planted beside
//! /dev/dri, not a block device inside it, not a link from it to elsewhere.
//!
//! The host's /dev is replaced by a fake one in a private mount namespace
//! (`unshare -m`, then a tmpfs bound over /dev; without privilege in a user
//! namespace of the test's own, with the host's nodes bound under the planted
//! names). The control reads the same planted nodes through the same paths in
//! that namespace, outside the sandbox.

use std::process::Command;

use crate::harness::*;

/// The fake /dev: (path, `c`/`b`/`l`, major and minor or link target, the host node that
/// stands in for it without privilege; None: planted as root only). The basic nodes, one
/// DRM render node, and what must stay out: a node with a working driver (null) beside
/// dri, a block device (loop) inside it, links from dri to the planted node.
const FAKE: &[(&str, &str, &str, Option<&str>)] = &[
    ("null", "c", "1 3", Some("null")),
    ("zero", "c", "1 5", Some("zero")),
    ("full", "c", "1 7", Some("full")),
    ("random", "c", "1 8", Some("random")),
    ("urandom", "c", "1 9", Some("urandom")),
    ("tty", "c", "5 0", Some("tty")),
    ("dri/renderD128", "c", "226 128", Some("zero")),
    ("fake-disk", "c", "1 3", Some("null")),
    ("dri/loop9", "b", "7 0", None),
    ("dri/card9", "l", "../fake-disk", None),
    ("dri/by-path/pci-evil-card", "l", "../../fake-disk", None),
];

/// As root the nodes are made with mknod; without privilege the tree is built in a user
/// namespace of the test's own from bind mounts of the host's nodes (no block device).
fn setup_script() -> String {
    let root = crate::common::is_root();
    let mut s = String::from(
        "set -e\nhere=$(pwd)\nmount -t tmpfs -o mode=755 fakedev \"$FAKE\"\ncd \"$FAKE\"\nmkdir -p dri/by-path\n",
    );
    for (path, kind, arg, alt) in FAKE {
        match (*kind, root, alt) {
            ("l", ..) => s.push_str(&format!("ln -s '{arg}' '{path}'\n")),
            (k, true, _) => s.push_str(&format!("mknod -m 666 '{path}' {k} {arg}\n")),
            (_, false, Some(host)) => s.push_str(&format!(
                ": > '{path}'\nmount --bind /dev/{host} '{path}'\n"
            )),
            (_, false, None) => {}
        }
    }
    s.push_str("cd \"$here\"\nmount --rbind \"$FAKE\" /dev\nexec \"$@\"\n");
    s
}

/// The planted paths that must stay out (the block device as root only).
fn planted() -> Vec<&'static str> {
    let mut p = vec![
        "/dev/fake-disk",
        "/dev/dri/card9",
        "/dev/dri/by-path/pci-evil-card",
    ];
    if crate::common::is_root() {
        p.push("/dev/dri/loop9");
    }
    p
}

/// `cmd` run in a private mount namespace whose /dev is the fake one.
fn in_fake_dev(cmd: Command, fake: &std::path::Path) -> Out {
    let mut c = Command::new("unshare");
    if !crate::common::is_root() {
        c.arg("-Ur");
    }
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(setup_script())
        .arg("sh")
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
    let fake = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for path in planted() {
        let argv = probe_argv("read", path);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut flags = vec!["--gpu"];
        flags.extend_from_slice(extra);
        let out = in_fake_dev(c.sc_cmd(&flags, &argv), fake.path());
        seen.push(format!("{path}: {}", assert_errno(&out, want)));
        let control = in_fake_dev(c.host_cmd(&argv), fake.path());
        assert_ok(&control);
    }
    // The GPU node itself is reachable (as root its driver is absent: ENXIO; the
    // stand-in answers).
    let argv = probe_argv("read", "/dev/dri/renderD128");
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut flags = vec!["--gpu"];
    flags.extend_from_slice(extra);
    let out = in_fake_dev(c.sc_cmd(&flags, &argv), fake.path());
    if crate::common::is_root() {
        assert_errno(&out, &["ENXIO"]);
    } else {
        assert_ok(&out);
    }
    c.seen(&seen.join("; "));
}

attack!(dev_gpu_exposes_no_other_device, "devices", |c| {
    planted_stay_out(&c, &[], &["ENOENT"])
});

attack!(
    dev_gpu_container_tier_refuses_other_devices,
    "devices",
    |c| {
        // No mount namespace: the planted nodes exist, Landlock refuses them. Root only:
        // Landlock's rules follow inodes, and without privilege the planted node can only be
        // a bind of a basic node (/dev/null), whose inode every sandbox may open.
        if !crate::common::is_root() {
            c.seen("skipped: needs mknod (root); CI runs it as root");
            eprintln!("SKIP: the container tier's case needs mknod (root)");
            return;
        }
        planted_stay_out(&c, &["--tier", "container"], &["EACCES"])
    }
);

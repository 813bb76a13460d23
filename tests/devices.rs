//! `[devices] gpu = true` / `--gpu` (issue 15 §3): the host's GPU device nodes
//! in the sandbox's /dev, and nothing else of the host's /dev.
//!
//! - On this host as it is (any user): the nodes found inside are exactly the
//!   host's GPU character devices, each opening inside as it opens outside; on
//!   a host without any, `--gpu` refuses (125) and a profile's `gpu = true`
//!   runs without one and says so.
//! - On a fake /dev: a private mount namespace (`unshare -m`) whose /dev is a
//!   tmpfs holding the basic nodes, DRM nodes 226:0 and 226:128, NVIDIA nodes
//!   195:0, 195:255 and a caps node (mknod as root; without privilege, in a
//!   user namespace of the test's own, the host's null and zero bound under
//!   those names), plus nodes that must stay out (a block device in dri/ as
//!   root, a stray node beside dri/, links leading out). A fake GPU path holding 1:3 (the null driver)
//!   answers `ioctl`, which shows Landlock's IOCTL_DEV rule on it; a node the
//!   profile shows read-only (container tier) opens but its `ioctl` is EACCES,
//!   which shows Landlock handles IOCTL_DEV and grants it only on the GPU nodes.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Workspace, bin, expect_code, is_root, stderr, stdout};

/// Lists /dev (`L`) or opens paths and tries an ioctl (`O PATH…`; `ro:PATH`
/// opens read-only). One line per entry or path.
const PROBE: &str = r#"
import errno, fcntl, os, stat, sys, termios
def name(e): return errno.errorcode.get(e.errno, str(e.errno))
if sys.argv[1] == "L":
    for root, dirs, files in os.walk("/dev"):
        for n in sorted(dirs + files):
            p = os.path.join(root, n)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                print("L", p, os.readlink(p))
            elif stat.S_ISCHR(st.st_mode):
                print("C", p, "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)))
            elif stat.S_ISBLK(st.st_mode):
                print("B", p, "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)))
            elif stat.S_ISDIR(st.st_mode):
                print("D", p)
            else:
                print("F", p)
else:
    for a in sys.argv[2:]:
        p, flags = a, os.O_RDWR
        if a.startswith("ro:"):
            p, flags = a[3:], os.O_RDONLY
        try:
            fd = os.open(p, flags | os.O_NONBLOCK)
        except OSError as e:
            print("O", a, name(e)); continue
        try:
            fcntl.ioctl(fd, termios.TCGETS, bytes(64)); r = "ok"
        except OSError as e:
            r = name(e)
        print("O", a, "open", "ioctl=" + r)
"#;

const PY: &str = "/usr/bin/python3";

/// The GPU character devices of the host's /dev, as `path major:minor`
/// (an independent reading: names and types, no link followed).
fn host_gpu_nodes() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |p: &Path| {
        if let Ok(m) = std::fs::symlink_metadata(p) {
            if m.file_type().is_char_device() {
                let (ma, mi) = (
                    nix::sys::stat::major(m.rdev()),
                    nix::sys::stat::minor(m.rdev()),
                );
                out.insert(format!("{} {ma}:{mi}", p.display()));
            }
        }
    };
    let list = |d: &str| -> Vec<std::path::PathBuf> {
        match std::fs::read_dir(d) {
            Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
            Err(_) => vec![],
        }
    };
    for p in list("/dev") {
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("nvidia")
        {
            add(&p);
        }
    }
    let real_dir = |d: &str| std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir());
    for d in ["/dev/nvidia-caps", "/dev/dri"] {
        if real_dir(d) {
            for p in list(d) {
                add(&p);
            }
        }
    }
    out
}

fn probe_ws() -> Workspace {
    let ws = Workspace::new();
    ws.write("probe.py", PROBE);
    ws
}

/// The character devices a listing shows, as `path major:minor`.
fn char_devices(listing: &str) -> BTreeSet<String> {
    listing
        .lines()
        .filter_map(|l| l.strip_prefix("C "))
        .map(str::to_string)
        .collect()
}

/// The basic nodes every sandbox has (null, zero, full, random, urandom, tty).
fn basic(listing: &str) -> BTreeSet<String> {
    let names = ["null", "zero", "full", "random", "urandom", "tty"];
    char_devices(listing)
        .into_iter()
        .filter(|l| {
            names.iter().any(|n| l.starts_with(&format!("/dev/{n} "))) || l.starts_with("/dev/pts/")
        })
        .collect()
}

fn open_line<'a>(out: &'a str, path: &str) -> &'a str {
    let prefix = format!("O {path} ");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no probe line for {path}: {out}"))
}

// ---- this host as it is ------------------------------------------------------------------

#[test]
fn gpu_nodes_of_this_host_are_exactly_what_is_inside() {
    needs_sandbox!();
    let ws = probe_ws();
    let host = host_gpu_nodes();
    let out = common::cmd(&ws, &["--gpu"], &[PY, "probe.py", "L"])
        .output()
        .unwrap();
    if host.is_empty() {
        // Asked on the command line, absent here: refused, nothing ran.
        expect_code(&out, 125);
        let err = stderr(&out);
        assert!(
            err.contains("--gpu: this host has no GPU device node")
                && err.contains("/dev/dri/*")
                && err.contains("nothing ran"),
            "{err}"
        );
        assert!(stdout(&out).is_empty(), "the command ran: {out:?}");
        return;
    }
    expect_code(&out, 0);
    let listing = stdout(&out);
    let inside: BTreeSet<String> = char_devices(&listing)
        .difference(&basic(&listing))
        .cloned()
        .collect();
    assert_eq!(inside, host, "{listing}");
    // Each opens inside as it opens on the host (the host's permissions decide;
    // the sandbox adds no EACCES of its own).
    let paths: Vec<String> = host
        .iter()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let mut argv = vec![PY, "probe.py", "O"];
    argv.extend(paths.iter().map(String::as_str));
    let inside = common::cmd(&ws, &["--gpu"], &argv).output().unwrap();
    let outside = Command::new(PY)
        .args(&argv[1..])
        .current_dir(ws.path())
        .output()
        .unwrap();
    for p in &paths {
        let i = open_line(&stdout(&inside), p)
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        let o = open_line(&stdout(&outside), p)
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(i, o, "{p}: inside {inside:?}, outside {outside:?}");
    }
}

#[test]
fn a_profile_asking_for_a_gpu_the_host_lacks_runs_without_and_says_so() {
    needs_sandbox!();
    if !host_gpu_nodes().is_empty() {
        eprintln!("SKIP: this host has GPU nodes (the absent case is tested on a fake /dev)");
        return;
    }
    let ws = probe_ws();
    let profile = ws.write(
        "gpu.toml",
        "version = 1\nextends = \"dev\"\n[devices]\ngpu = true\n",
    );
    // A fresh runtime dir: the notice is said once per workspace and profile.
    let rt = tempfile::tempdir().unwrap();
    let report = ws.path().join("report.json");
    let out = common::cmd(
        &ws,
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--report-file",
            report.to_str().unwrap(),
        ],
        &[PY, "probe.py", "L"],
    )
    .env("XDG_RUNTIME_DIR", rt.path())
    .output()
    .unwrap();
    expect_code(&out, 0);
    assert!(
        stderr(&out).contains("[devices] gpu = true, but this host has no GPU device node"),
        "{out:?}"
    );
    let listing = stdout(&out);
    assert!(!listing.contains("/dev/dri") && !listing.contains("/dev/nvidia"));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["devices"]["gpu"]["nodes"], serde_json::json!([]), "{r}");
    let surface = r["enforcement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["guarantee"] == "kernel_surface")
        .unwrap();
    assert_eq!(surface["status"], "partial", "{surface}");
}

// ---- a fake /dev ---------------------------------------------------------------------------
//
// As root the nodes are made with mknod, with the real majors (no driver behind them here:
// opening one is the kernel's ENXIO). Without privilege mknod is refused, so the same tree
// is built in a user namespace of the test's own (`unshare -Urm`) from bind mounts of the
// host's /dev/null and /dev/zero under the GPU names: real character devices with a
// driver, which open and answer ioctl (ENOTTY). Block devices are planted as root only.

/// The fake /dev: (kind, path below /dev, major and minor or link target, the host node
/// standing in for it without privilege; None: not planted then).
const FAKE: &[(&str, &str, &str, Option<&str>)] = &[
    ("c", "null", "1 3", Some("null")),
    ("c", "zero", "1 5", Some("zero")),
    ("c", "full", "1 7", Some("full")),
    ("c", "random", "1 8", Some("random")),
    ("c", "urandom", "1 9", Some("urandom")),
    ("c", "tty", "5 0", Some("tty")),
    ("c", "dri/card0", "226 0", Some("zero")),
    ("c", "dri/renderD128", "226 128", Some("zero")),
    // A GPU path on the null driver: answers open and ioctl.
    ("c", "dri/renderD129", "1 3", Some("null")),
    ("l", "dri/by-path/pci-0000:00:02.0-card", "../card0", None),
    ("c", "nvidia0", "195 0", Some("zero")),
    ("c", "nvidiactl", "195 255", Some("zero")),
    ("c", "nvidia-caps/nvidia-cap1", "240 1", Some("zero")),
    // Must stay out: beside dri/, a block device and links inside it.
    ("c", "fake-other", "1 5", Some("zero")),
    ("c", "mem", "1 1", Some("null")),
    ("b", "dri/sda", "7 0", None),
    ("l", "dri/card9", "../fake-other", None),
    ("l", "dri/by-path/evil", "../../fake-other", None),
];

/// The GPU nodes planted, as `path major:minor` seen inside.
fn gpu_nodes() -> BTreeSet<String> {
    let standin = |n: &str| if n == "null" { "1:3" } else { "1:5" };
    FAKE.iter()
        .filter(|(k, p, ..)| *k == "c" && (p.starts_with("dri/") || p.starts_with("nvidia")))
        .map(|(_, p, arg, alt)| {
            let rdev = if is_root() {
                arg.replace(' ', ":")
            } else {
                standin(alt.unwrap()).to_string()
            };
            format!("/dev/{p} {rdev}")
        })
        .collect()
}

/// What opening a planted GPU node without a driver behind it gives: ENXIO
/// from the kernel as root; the stand-in's driver otherwise.
fn driverless() -> &'static str {
    if is_root() {
        "ENXIO"
    } else {
        "open ioctl=ENOTTY"
    }
}

/// `sh -c` text that mounts a tmpfs at `dir`, fills it with `FAKE`, binds
/// it over /dev, and execs its arguments (run under `unshare -m`, or
/// `unshare -Urm` without privilege).
fn fake_dev_script(dir: &Path) -> String {
    let mut s = format!(
        "set -e\nhere=$(pwd)\nmount -t tmpfs -o mode=755 fakedev '{d}'\ncd '{d}'\nmkdir -p dri/by-path nvidia-caps\n",
        d = dir.display()
    );
    for (kind, path, arg, alt) in FAKE {
        match (*kind, is_root(), alt) {
            ("l", ..) => s.push_str(&format!("ln -s '{arg}' '{path}'\n")),
            (k, true, _) => s.push_str(&format!("mknod -m 666 '{path}' {k} {arg}\n")),
            (_, false, Some(host)) => s.push_str(&format!(
                ": > '{path}'\nmount --bind /dev/{host} '{path}'\n"
            )),
            (_, false, None) => {}
        }
    }
    s.push_str("cd \"$here\"\nmount --rbind '");
    s.push_str(&dir.display().to_string());
    s.push_str("' /dev\nexec \"$@\"\n");
    s
}

/// `unshare` around `shellcage run --workspace WS EXTRA -- ARGV`, with
/// the fake /dev in place.
fn in_fake_dev(ws: &Workspace, extra: &[&str], argv: &[&str]) -> Option<Output> {
    let mut args = vec!["run", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(argv);
    shellcage_in_fake_dev(ws, &args)
}

/// `unshare` around `shellcage ARGS` (from WS) with the fake /dev in place.
/// `Option` for the call sites' `let … else`: always `Some`.
fn shellcage_in_fake_dev(ws: &Workspace, args: &[&str]) -> Option<Output> {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new("unshare");
    if !is_root() {
        // Our own user namespace: mounts without privilege (no mknod).
        c.arg("-Ur");
    }
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(fake_dev_script(dir.path()))
        .arg("sh")
        .arg(bin())
        .args(args)
        .current_dir(ws.path())
        .stdin(Stdio::null());
    Some(c.output().unwrap())
}

#[test]
fn fake_gpu_nodes_inside_with_their_numbers_and_nothing_else_of_dev() {
    needs_sandbox!();
    let ws = probe_ws();
    let Some(out) = in_fake_dev(&ws, &["--gpu"], &[PY, "probe.py", "L"]) else {
        return;
    };
    expect_code(&out, 0);
    let listing = stdout(&out);
    let extra: BTreeSet<String> = char_devices(&listing)
        .difference(&basic(&listing))
        .cloned()
        .collect();
    assert_eq!(extra, gpu_nodes(), "{listing}");
    // The by-path link to an exposed node is there, as the same link; the ones
    // leading out, the block device and the stray nodes are not.
    assert!(
        listing.contains("L /dev/dri/by-path/pci-0000:00:02.0-card ../card0"),
        "{listing}"
    );
    for absent in [
        "/dev/fake-other",
        "/dev/mem",
        "/dev/dri/sda",
        "/dev/dri/card9",
        "evil",
    ] {
        assert!(!listing.contains(absent), "{absent} inside: {listing}");
    }
    // Control: without --gpu the same fake /dev shows none of them.
    let plain = in_fake_dev(&ws, &[], &[PY, "probe.py", "L"]).unwrap();
    expect_code(&plain, 0);
    let listing = stdout(&plain);
    assert_eq!(char_devices(&listing), basic(&listing), "{listing}");
    assert!(!listing.contains("/dev/dri") && !listing.contains("/dev/nvidia"));
}

#[test]
fn fake_gpu_nodes_reach_their_driver_and_answer_ioctl() {
    needs_sandbox!();
    let ws = probe_ws();
    let paths = [
        "/dev/dri/card0",
        "/dev/dri/renderD128",
        "/dev/dri/renderD129",
        "/dev/nvidia0",
        "/dev/nvidia-caps/nvidia-cap1",
        "/dev/dri/by-path/pci-0000:00:02.0-card",
    ];
    let mut argv = vec![PY, "probe.py", "O"];
    argv.extend(paths);
    let Some(out) = in_fake_dev(&ws, &["--gpu"], &argv) else {
        return;
    };
    expect_code(&out, 0);
    let o = stdout(&out);
    // As root no driver is behind 226:*, 195:*, 240:*: the kernel's ENXIO, not
    // Landlock's EACCES (without privilege: the stand-in's driver answers).
    for p in [
        "/dev/dri/card0",
        "/dev/dri/renderD128",
        "/dev/nvidia0",
        "/dev/nvidia-caps/nvidia-cap1",
        "/dev/dri/by-path/pci-0000:00:02.0-card",
    ] {
        assert_eq!(open_line(&o, p), driverless(), "{p}: {o}");
    }
    // The null driver answers: open works and ioctl reaches it (ENOTTY, its
    // own answer), so Landlock's IOCTL_DEV is granted on the GPU path (as root,
    // where 1:3 here is a node of its own; a stand-in shares /dev/null's inode).
    assert_eq!(
        open_line(&o, "/dev/dri/renderD129"),
        "open ioctl=ENOTTY",
        "{o}"
    );
}

#[test]
fn container_tier_landlock_allows_exactly_the_gpu_nodes() {
    needs_sandbox!();
    if !is_root() {
        // Landlock's rules follow inodes: the stand-ins are /dev/null's and /dev/zero's
        // own, which every sandbox may open, so they cannot tell the GPU rule apart.
        eprintln!("SKIP: the container tier's Landlock rules on a fake /dev need mknod (root)");
        return;
    }
    let ws = probe_ws();
    let argv = [
        PY,
        "probe.py",
        "O",
        "/dev/dri/card0",
        "/dev/dri/renderD129",
        "/dev/nvidia0",
        "/dev/fake-other",
        "ro:/dev/fake-other",
        "/dev/null",
    ];
    // /dev/fake-other listed read-only: Landlock grants it ReadFile, no IOCTL_DEV.
    let extra = ["--tier", "container", "--read", "/dev/fake-other"];
    let mut with = extra.to_vec();
    with.push("--gpu");
    let Some(gpu) = in_fake_dev(&ws, &with, &argv) else {
        return;
    };
    expect_code(&gpu, 0);
    let g = stdout(&gpu);
    assert_eq!(open_line(&g, "/dev/dri/card0"), driverless(), "{g}");
    assert_eq!(open_line(&g, "/dev/nvidia0"), driverless(), "{g}");
    assert_eq!(
        open_line(&g, "/dev/dri/renderD129"),
        "open ioctl=ENOTTY",
        "{g}"
    );
    // The rest of the host's /dev is there (no mount namespace) but refused.
    assert_eq!(open_line(&g, "/dev/fake-other"), "EACCES", "{g}");
    // Opened read-only, a device outside the GPU list gets no ioctl at all.
    assert_eq!(
        open_line(&g, "ro:/dev/fake-other"),
        "open ioctl=EACCES",
        "{g}"
    );
    assert_eq!(open_line(&g, "/dev/null"), "open ioctl=ENOTTY", "{g}");
    // Control: without --gpu Landlock refuses the GPU nodes too.
    let plain = in_fake_dev(&ws, &extra, &argv).unwrap();
    expect_code(&plain, 0);
    let p = stdout(&plain);
    for path in ["/dev/dri/card0", "/dev/nvidia0", "/dev/dri/renderD129"] {
        assert_eq!(open_line(&p, path), "EACCES", "{path}: {p}");
    }
}

#[test]
fn the_report_lists_the_nodes_links_and_what_was_skipped() {
    needs_sandbox!();
    let ws = probe_ws();
    let report = ws.path().join("report.json");
    let Some(out) = in_fake_dev(
        &ws,
        &["--gpu", "--report-file", report.to_str().unwrap()],
        &["true"],
    ) else {
        return;
    };
    expect_code(&out, 0);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let gpu = &r["devices"]["gpu"];
    let nodes: BTreeSet<String> = gpu["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            format!(
                "{} {}:{}",
                n["path"].as_str().unwrap(),
                n["major"],
                n["minor"]
            )
        })
        .collect();
    assert_eq!(nodes, gpu_nodes(), "{gpu}");
    assert_eq!(
        gpu["links"],
        serde_json::json!([{"path": "/dev/dri/by-path/pci-0000:00:02.0-card", "target": "../card0"}])
    );
    let skipped = gpu["skipped"].to_string();
    for s in ["/dev/dri/card9", "/dev/dri/by-path/evil"] {
        assert!(skipped.contains(s), "{s}: {skipped}");
    }
    // Block devices are planted as root only.
    if is_root() {
        assert!(
            skipped.contains("/dev/dri/sda") && skipped.contains("a block device"),
            "{skipped}"
        );
    }
    assert!(
        !skipped.contains("fake-other\""),
        "never looked at: {skipped}"
    );
}

#[test]
fn explain_names_the_gpu_rule_for_nodes_and_links_only() {
    let ws = probe_ws();
    let targets = [
        "/dev/dri/renderD128",
        "/dev/dri/by-path/pci-0000:00:02.0-card",
        "/dev/fake-other",
        "/dev/dri/sda",
    ];
    let mut args = vec!["explain", "--gpu"];
    args.extend(targets);
    let Some(out) = shellcage_in_fake_dev(&ws, &args) else {
        return;
    };
    expect_code(&out, 0);
    let o = stdout(&out);
    let verdict = |p: &str| {
        o.lines()
            .find(|l| l.starts_with(&format!("{p}: ")) || l.starts_with(&format!("{p} -> ")))
            .unwrap_or_else(|| panic!("{p}: {o}"))
            .to_string()
    };
    for p in &targets[..2] {
        assert!(verdict(p).contains("writable: a GPU device node"), "{o}");
    }
    for p in &targets[2..] {
        assert!(
            verdict(p).contains("absent: the sandbox has its own /dev"),
            "{o}"
        );
    }
    // Without --gpu the same node is absent.
    let plain = shellcage_in_fake_dev(&ws, &["explain", "/dev/dri/renderD128"]).unwrap();
    assert!(stdout(&plain).contains("absent"), "{plain:?}");
}

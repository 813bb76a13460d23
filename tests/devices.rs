//! `[devices] gpu = true` / `--gpu` (issue 15 §3): the host's GPU device nodes
//! in the sandbox's /dev, and nothing else of the host's /dev.
//!
//! - On this host as it is (any user): the nodes found inside are exactly the
//!   host's GPU character devices, each opening inside as it opens outside; on
//!   a host without any, `--gpu` refuses (125) and a profile's `gpu = true`
//!   runs without one and says so.
//! - On a fake /dev (root: `mknod` needs CAP_MKNOD): a private mount namespace
//!   (`unshare -m`) whose /dev is a tmpfs holding the basic nodes, DRM nodes
//!   226:0 and 226:128, NVIDIA nodes 195:0, 195:255 and a caps node, plus
//!   nodes that must stay out (a block device in dri/, a stray node beside
//!   dri/, links leading out). A fake GPU path holding 1:3 (the null driver)
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

// ---- a fake /dev (root) -------------------------------------------------------------------

/// The fake /dev: (kind, path below /dev, major, minor or link target).
const FAKE: &[(&str, &str, &str)] = &[
    ("c", "null", "1 3"),
    ("c", "zero", "1 5"),
    ("c", "full", "1 7"),
    ("c", "random", "1 8"),
    ("c", "urandom", "1 9"),
    ("c", "tty", "5 0"),
    ("c", "dri/card0", "226 0"),
    ("c", "dri/renderD128", "226 128"),
    // A GPU path on the null driver: answers open and ioctl.
    ("c", "dri/renderD129", "1 3"),
    ("l", "dri/by-path/pci-0000:00:02.0-card", "../card0"),
    ("c", "nvidia0", "195 0"),
    ("c", "nvidiactl", "195 255"),
    ("c", "nvidia-caps/nvidia-cap1", "240 1"),
    // Must stay out: beside dri/, a block device and links inside it.
    ("c", "fake-other", "1 5"),
    ("c", "mem", "1 1"),
    ("b", "dri/sda", "7 0"),
    ("l", "dri/card9", "../fake-other"),
    ("l", "dri/by-path/evil", "../../fake-other"),
];

/// `sh -c` text that mounts a tmpfs at `dir`, fills it with `FAKE`, binds
/// it over /dev, and execs its arguments (run under `unshare -m`).
fn fake_dev_script(dir: &Path) -> String {
    let mut s = format!(
        "set -e\nhere=$(pwd)\nmount -t tmpfs -o mode=755 fakedev '{d}'\ncd '{d}'\nmkdir -p dri/by-path nvidia-caps\n",
        d = dir.display()
    );
    for (kind, path, arg) in FAKE {
        match *kind {
            "l" => s.push_str(&format!("ln -s '{arg}' '{path}'\n")),
            k => s.push_str(&format!("mknod -m 666 '{path}' {k} {arg}\n")),
        }
    }
    s.push_str("cd \"$here\"\nmount --bind '");
    s.push_str(&dir.display().to_string());
    s.push_str("' /dev\nexec \"$@\"\n");
    s
}

/// `unshare -m` around `shellcage run --workspace WS EXTRA -- ARGV`, with
/// the fake /dev in place; None (a skip) unless root.
fn in_fake_dev(ws: &Workspace, extra: &[&str], argv: &[&str]) -> Option<Output> {
    let mut args = vec!["run", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(argv);
    shellcage_in_fake_dev(ws, &args)
}

/// `unshare -m` around `shellcage ARGS` (from WS) with the fake /dev in place.
fn shellcage_in_fake_dev(ws: &Workspace, args: &[&str]) -> Option<Output> {
    if !is_root() {
        eprintln!(
            "SKIP: a fake /dev needs mknod (root); the unprivileged run checks this host's nodes"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(fake_dev_script(dir.path()))
        .arg("sh")
        .arg(bin())
        .args(args)
        .current_dir(ws.path())
        .stdin(Stdio::null());
    Some(c.output().unwrap())
}

const GPU_NODES: [&str; 6] = [
    "/dev/dri/card0 226:0",
    "/dev/dri/renderD128 226:128",
    "/dev/dri/renderD129 1:3",
    "/dev/nvidia-caps/nvidia-cap1 240:1",
    "/dev/nvidia0 195:0",
    "/dev/nvidiactl 195:255",
];

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
    let want: BTreeSet<String> = GPU_NODES.iter().map(|s| s.to_string()).collect();
    assert_eq!(extra, want, "{listing}");
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
    // No driver behind 226:*, 195:*, 240:*: the kernel's ENXIO, not Landlock's EACCES.
    for p in [
        "/dev/dri/card0",
        "/dev/dri/renderD128",
        "/dev/nvidia0",
        "/dev/nvidia-caps/nvidia-cap1",
    ] {
        assert_eq!(open_line(&o, p), "ENXIO", "{p}: {o}");
    }
    assert_eq!(
        open_line(&o, "/dev/dri/by-path/pci-0000:00:02.0-card"),
        "ENXIO"
    );
    // The null driver answers: open works and ioctl reaches it (ENOTTY, its
    // own answer), so Landlock's IOCTL_DEV is granted on the GPU path.
    assert_eq!(
        open_line(&o, "/dev/dri/renderD129"),
        "open ioctl=ENOTTY",
        "{o}"
    );
}

#[test]
fn container_tier_landlock_allows_exactly_the_gpu_nodes() {
    needs_sandbox!();
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
    assert_eq!(open_line(&g, "/dev/dri/card0"), "ENXIO", "{g}");
    assert_eq!(open_line(&g, "/dev/nvidia0"), "ENXIO", "{g}");
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
    let want: BTreeSet<String> = GPU_NODES.iter().map(|s| s.to_string()).collect();
    assert_eq!(nodes, want, "{gpu}");
    assert_eq!(
        gpu["links"],
        serde_json::json!([{"path": "/dev/dri/by-path/pci-0000:00:02.0-card", "target": "../card0"}])
    );
    let skipped = gpu["skipped"].to_string();
    for s in [
        "/dev/dri/sda",
        "a block device",
        "/dev/dri/card9",
        "/dev/dri/by-path/evil",
    ] {
        assert!(skipped.contains(s), "{s}: {skipped}");
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

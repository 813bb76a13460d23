//! Shared helpers for integration tests: one shellcage process per case, a
//! private workspace and `$HOME`, runs with a chosen environment, host-side
//! process and file checks. Everything stays under the system temp dir, so it
//! works as any user.
//!
//! - `SHELLCAGE_BIN` overrides the binary under test (CI copies it somewhere an
//!   unprivileged user can run it); otherwise cargo's built binary is used.
//! - A test that needs a kernel feature calls [`require`]; it skips (returns
//!   false) only when `SHELLCAGE_TEST_REQUIRE_KERNEL` is unset, and fails the
//!   test when it is set (CI sets it, so nothing can silently skip there).
//!   A test that needs the sandbox itself starts with `needs_sandbox!()`.
#![allow(dead_code)]

pub mod cgroups;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The shellcage binary under test.
pub fn bin() -> PathBuf {
    std::env::var_os("SHELLCAGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_shellcage")))
}

/// Skip, or fail under `SHELLCAGE_TEST_REQUIRE_KERNEL`, when `ok` is false.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os("SHELLCAGE_TEST_REQUIRE_KERNEL").is_some() {
        panic!("required kernel feature missing: {what} (SHELLCAGE_TEST_REQUIRE_KERNEL is set)");
    }
    eprintln!("SKIP: {what}");
    false
}

/// Return from the test unless this machine can create the namespaces
/// shellcage needs (see [`sandbox_available`]); under
/// `SHELLCAGE_TEST_REQUIRE_KERNEL` the test fails instead.
#[allow(unused_macros)]
macro_rules! needs_sandbox {
    () => {
        if !$crate::common::require($crate::common::sandbox_available(), "user namespaces") {
            return;
        }
    };
}

/// Can this machine create the namespaces shellcage needs? (Checked by running
/// the real binary once.)
pub fn sandbox_available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        let ws = tempfile::tempdir().unwrap();
        Command::new(bin())
            .args(["run", "--workspace"])
            .arg(ws.path())
            .args(["--", "true"])
            .stdin(Stdio::null())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// A private workspace directory (a git repository when `git` is true).
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        // Not under $HOME (the sandbox mounts a private tmpfs there) and
        // readable by whoever runs the tests.
        let dir = tempfile::Builder::new()
            .prefix("shellcage-test-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        Workspace { dir }
    }
    pub fn git() -> Workspace {
        let ws = Workspace::new();
        let ok = Command::new("git")
            .args(["init", "-q"])
            .current_dir(ws.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "git init");
        ws
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// The kept sandbox homes (`home = "persistent"`) of a test workspace go with
/// it: runs with the caller's HOME would otherwise leave one per test there.
impl Drop for Workspace {
    fn drop(&mut self) {
        // A warm pass: the workspace's sessions end with it, before the directory goes
        // (each server holds one of the user's 128 inotify instances; past them, sessions
        // would not start and the pass would run cold).
        if cgroups::warm() {
            let _ = shellcage(
                None,
                &["session", "stop", self.path().to_str().unwrap_or("")],
            )
            .output();
        }
        let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
            return;
        };
        for root in [
            shellcage::sandbox::home::store_root(&home),
            home.join(".local/state/shellcage/homes"),
        ] {
            let _ = std::fs::remove_dir_all(shellcage::sandbox::home::workspace_dir(
                &root,
                self.dir.path(),
            ));
        }
    }
}

/// `shellcage run --workspace WS [extra] -- sh -c SCRIPT`, stdin closed.
pub fn run_sh(ws: &Workspace, extra: &[&str], script: &str) -> Output {
    cmd(ws, extra, &["sh", "-c", script]).output().unwrap()
}

/// A `Command` for `shellcage run --workspace WS [extra] -- ARGV…`.
pub fn cmd(ws: &Workspace, extra: &[&str], argv: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("run")
        .arg("--workspace")
        .arg(ws.path())
        .args(extra)
        .arg("--")
        .args(argv);
    c.current_dir(ws.path()).stdin(Stdio::null());
    c
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A random canary string, different on every call.
pub fn canary() -> String {
    let mut b = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("CANARY_{hex}")
}

/// Is the current user root?
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A temporary `$HOME` for shellcage (set with `HOME=`), so tests can plant
/// secrets and toolchains without touching the real home of whoever runs them.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("shellcage-home-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        Home { dir }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// `shellcage ARGS…` with a scrubbed, predictable caller environment:
/// PATH and LANG from the test, HOME as given, and nothing that would change
/// the workspace or profile choice behind the test's back.
pub fn shellcage(home: Option<&Path>, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env_clear()
        .env(
            "SHELLCAGE_SESSION",
            std::env::var_os("SHELLCAGE_SESSION").unwrap_or_else(|| "off".into()),
        )
        // A warm pass's servers end soon after their test (each holds an inotify
        // instance, and a user has 128: past that, sessions would not start).
        .env(
            "SHELLCAGE_SESSION_IDLE",
            std::env::var_os("SHELLCAGE_SESSION_IDLE").unwrap_or_else(|| "10m".into()),
        )
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null());
    match home {
        Some(h) => c.env("HOME", h),
        None => c.env("HOME", std::env::var_os("HOME").unwrap_or_default()),
    };
    c
}

/// `shellcage run --workspace WS [extra] -- sh -c SCRIPT` with HOME=`home`.
pub fn run_in(ws: &Workspace, home: &Home, extra: &[&str], script: &str) -> Output {
    let mut args = vec!["run", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", script]);
    let mut c = shellcage(Some(home.path()), &args);
    c.current_dir(ws.path());
    c.output().unwrap()
}

/// Panic with both streams unless `out` exited with `code`.
#[track_caller]
pub fn expect_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

/// The value of the first line `KEY VALUE` (space or tab separated), trimmed.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.strip_prefix(key)
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map(str::trim)
    })
}

/// A number usable as a unique `sleep` argument: `sleep 900.<random>` shows
/// up verbatim in /proc/PID/cmdline, so the host can find exactly that process.
pub fn sleep_marker() -> String {
    let hex = canary();
    let digits: String = hex
        .bytes()
        .skip(7)
        .map(|b| char::from(b'0' + b % 10))
        .collect();
    format!("900.{digits}")
}

/// Host pids whose command line contains `marker` as one argument.
pub fn host_pids_with(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in rd.filter_map(Result::ok) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|a| a == marker.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// Wait until `cond` holds, up to `limit`; returns whether it did.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Send `sig` to a process the test spawned.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

/// Read everything a child wrote to a piped stream.
pub fn drain(r: Option<impl Read>) -> String {
    let mut s = String::new();
    if let Some(mut r) = r {
        let _ = r.read_to_string(&mut s);
    }
    s
}

/// Every path under `root` with its content (files) or a marker (dirs,
/// symlinks) and mode: a snapshot to compare before and after a run.
pub fn snapshot(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    fn walk(p: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
        let meta = std::fs::symlink_metadata(p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let mode = meta.permissions().mode();
        if meta.is_dir() {
            out.push((rel, format!("dir {mode:o}")));
            let mut entries: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for e in entries {
                walk(&e, root, out);
            }
        } else if meta.file_type().is_symlink() {
            out.push((rel, format!("link {:?}", std::fs::read_link(p).unwrap())));
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
            out.push((rel, format!("file {mode:o} {text}")));
        }
    }
    walk(root, root, &mut out);
    out
}

/// Compile a C program with the host's `cc` (a test prerequisite, like git).
pub fn cc(src: &str, out: &Path) {
    let dir = out.parent().unwrap();
    let c = dir.join("prog.c");
    std::fs::write(&c, src).unwrap();
    let st = Command::new("cc")
        .arg("-O0")
        .arg("-o")
        .arg(out)
        .arg(&c)
        .status()
        .expect("cc is needed to build the probe program");
    assert!(st.success(), "cc failed for {}", c.display());
}

/// /usr/bin/python3 (pyenv shims are not reachable as every user).
pub const PY: &str = "/usr/bin/python3";

/// Run `argv` (from `dir`) on a fresh pseudo-terminal that is its stdin,
/// stdout, stderr and controlling terminal (tests/attacks/ptyrun.py); what
/// the terminal showed, as text.
pub fn under_pty(dir: &Path, argv: &[&str]) -> String {
    let script = dir.join(".ptyrun.py");
    std::fs::write(&script, include_str!("../attacks/ptyrun.py")).unwrap();
    let o = Command::new(PY)
        .arg(&script)
        .args(argv)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = stdout(&o);
    let hex = text
        .lines()
        .find_map(|l| l.strip_prefix("OUTPUT "))
        .unwrap_or_else(|| panic!("ptyrun failed: {o:?}"))
        .trim();
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

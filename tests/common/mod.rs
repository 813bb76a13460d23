//! Shared helpers for integration tests: one shellcage process per case.
//!
//! - `SHELLCAGE_BIN` overrides the binary under test (CI copies it somewhere an
//!   unprivileged user can run it); otherwise cargo's built binary is used.
//! - A test that needs a kernel feature calls [`require`]; it skips (returns
//!   false) only when `SHELLCAGE_TEST_REQUIRE_KERNEL` is unset, and fails the
//!   test when it is set (CI sets it, so nothing can silently skip there).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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
    use std::io::Read;
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

//! The attack harness: one `Ctx` per case (a private workspace, a fake $HOME
//! holding planted secrets, a random canary), helpers that run the same probe
//! inside `shellcage run` and directly on the host (the control), and the
//! `ATTACK\t<case>\t<category>\t<observed>` line scripts/attack-report reads.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Workspace};

/// The probe script (see probe.py): one `OK …` / `ERR ENAME` line per attempt.
pub const PROBE: &str = include_str!("probe.py");
/// The system interpreter: pyenv's is not visible to an unprivileged test user.
pub const PY: &str = "/usr/bin/python3";

/// What one run printed and how it ended.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn from_output(o: Output) -> Out {
        Out::from(o)
    }
    fn from(o: Output) -> Out {
        use std::os::unix::process::ExitStatusExt;
        Out {
            code: o
                .status
                .code()
                .or_else(|| o.status.signal().map(|s| 128 + s)),
            stdout: common::stdout(&o),
            stderr: common::stderr(&o),
        }
    }
    /// Both streams, for canary checks.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    /// The probe's result line (`OK …` or `ERR ENAME`), or the whole output.
    pub fn result(&self) -> String {
        self.stdout
            .lines()
            .find(|l| l.starts_with("OK") || l.starts_with("ERR "))
            .map(str::to_string)
            .unwrap_or_else(|| format!("no result: code={:?} {}", self.code, self.all().trim()))
    }
}

pub struct Ctx {
    pub case: &'static str,
    pub category: &'static str,
    pub ws: Workspace,
    pub home: tempfile::TempDir,
    pub canary: String,
    /// Extra environment for the shellcage process (and the host control).
    pub env: Vec<(String, String)>,
}

impl Ctx {
    /// None (a skip) only when the sandbox cannot run here and
    /// SHELLCAGE_TEST_REQUIRE_KERNEL is unset.
    pub fn new(case: &'static str, category: &'static str) -> Option<Ctx> {
        if !common::require(common::sandbox_available(), "user namespaces") {
            return None;
        }
        let ws = Workspace::new();
        let home = tempfile::Builder::new()
            .prefix("shellcage-attack-home-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        std::fs::write(ws.path().join(".probe.py"), PROBE).unwrap();
        Some(Ctx {
            case,
            category,
            ws,
            home,
            canary: common::canary(),
            env: Vec::new(),
        })
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Write TEXT at HOME/REL (parents created).
    pub fn plant(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.home().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Plant the canary at HOME/REL.
    pub fn plant_secret(&self, rel: &str) -> PathBuf {
        self.plant(rel, &format!("secret {}\n", self.canary))
    }

    fn base(&self, c: &mut Command) {
        c.env("HOME", self.home())
            .env_remove("SHELLCAGE_PROFILE")
            .env_remove("SHELLCAGE_WORKSPACE")
            .current_dir(self.ws.path())
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
    }

    /// `shellcage run --workspace WS EXTRA -- ARGV` with HOME = the fake home.
    pub fn sc_cmd(&self, extra: &[&str], argv: &[&str]) -> Command {
        let mut c = common::cmd(&self.ws, extra, argv);
        self.base(&mut c);
        c
    }

    /// A host command (the control), same HOME and directory.
    pub fn host_cmd(&self, argv: &[&str]) -> Command {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        self.base(&mut c);
        c
    }

    pub fn sc(&self, extra: &[&str], script: &str) -> Out {
        Out::from(
            self.sc_cmd(extra, &["/bin/sh", "-c", script])
                .output()
                .unwrap(),
        )
    }

    pub fn host(&self, script: &str) -> Out {
        Out::from(self.host_cmd(&["/bin/sh", "-c", script]).output().unwrap())
    }

    /// The probe inside the sandbox.
    pub fn probe_sc(&self, extra: &[&str], args: &[&str]) -> Out {
        let mut argv = vec![PY, ".probe.py"];
        argv.extend_from_slice(args);
        Out::from(self.sc_cmd(extra, &argv).output().unwrap())
    }

    /// The same probe on the host (the control).
    pub fn probe_host(&self, args: &[&str]) -> Out {
        let mut argv = vec![PY, ".probe.py"];
        argv.extend_from_slice(args);
        Out::from(self.host_cmd(&argv).output().unwrap())
    }

    /// Print the machine-readable line for scripts/attack-report.
    pub fn seen(&self, observed: &str) {
        let line = format!(
            "ATTACK\t{}\t{}\t{}\n",
            self.case,
            self.category,
            observed.replace(['\n', '\t'], " ")
        );
        eprint!("{line}");
    }

    /// The canary must appear nowhere in what the sandboxed run printed.
    pub fn assert_no_canary(&self, out: &Out) {
        assert!(
            !out.all().contains(&self.canary),
            "{}: the canary leaked: {out:?}",
            self.case
        );
    }

    /// The control detected the secret.
    pub fn assert_control_leaks(&self, out: &Out) {
        assert!(
            out.all().contains(&self.canary),
            "{}: control did not see the canary, the probe is broken: {out:?}",
            self.case
        );
    }
}

/// `ERR ENAME` with ENAME in `want`.
pub fn assert_errno(out: &Out, want: &[&str]) -> String {
    let r = out.result();
    let got = r.strip_prefix("ERR ").unwrap_or("");
    assert!(
        want.contains(&got),
        "expected one of {want:?}, got {r:?} (full output {out:?})"
    );
    r
}

/// The control probe succeeded (`OK …`).
pub fn assert_ok(out: &Out) -> String {
    let r = out.result();
    assert!(r.starts_with("OK"), "control probe failed: {out:?}");
    r
}

/// For syscalls the host kernel only allows with privilege: as root the
/// control must succeed; otherwise the probe must at least reach the kernel.
pub fn assert_ok_if_root(out: &Out) -> String {
    let r = out.result();
    if common::is_root() {
        assert!(r.starts_with("OK"), "control probe failed as root: {out:?}");
    } else {
        assert!(
            r.starts_with("OK") || r.starts_with("ERR "),
            "control probe broken: {out:?}"
        );
    }
    r
}

/// Held by cases that load the machine (the fork bomb) and by timing-sensitive
/// ones, so they never overlap.
pub fn heavy_lock() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A random marker (not the canary) for finding processes on the host.
pub fn marker() -> String {
    common::canary().replace("CANARY", "MARK")
}

/// Host pids whose command line contains `needle` (excluding this process).
pub fn host_pids_with(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                found.push(pid);
            }
        }
    }
    found
}

/// Wait until `cond` holds or `limit` passes; returns whether it held.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

pub fn kill_all(pids: &[i32]) {
    for p in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// A long-running host process (the victim of process attacks), killed on drop.
pub struct Victim(pub std::process::Child);

impl Victim {
    pub fn spawn() -> Victim {
        Victim(
            Command::new("sleep")
                .arg("300")
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
    /// Alive and not stopped.
    pub fn running(&mut self) -> bool {
        if self.0.try_wait().unwrap().is_some() {
            return false;
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let state = stat.rsplit(')').next().unwrap().trim().chars().next();
        !matches!(state, Some('T' | 't' | 'Z'))
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Nothing pending on a non-blocking TCP listener.
pub fn tcp_saw_nothing(l: &std::net::TcpListener) -> bool {
    l.set_nonblocking(true).unwrap();
    matches!(l.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// A TCP listener saw a connection (waits a little for it).
pub fn tcp_saw_connection(l: &std::net::TcpListener) -> bool {
    l.set_nonblocking(true).unwrap();
    wait_for(Duration::from_secs(3), || l.accept().is_ok())
}

pub fn udp_received(s: &std::net::UdpSocket) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 512];
    s.recv(&mut b).is_ok()
}

pub fn unix_saw_connection(l: &std::os::unix::net::UnixListener, wait: bool) -> bool {
    l.set_nonblocking(true).unwrap();
    let limit = if wait {
        Duration::from_secs(3)
    } else {
        Duration::ZERO
    };
    wait_for(limit, || l.accept().is_ok())
}

/// The host's own non-loopback IPv4 address, if any.
pub fn host_ipv4() -> Option<std::net::Ipv4Addr> {
    let out = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .find(|a| !a.is_loopback())
}

/// sha256 of a file, via sha256sum (coreutils).
pub fn sha256(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Read a file's bytes, or None when missing.
pub fn read_opt(p: &Path) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    std::fs::File::open(p).ok()?.read_to_end(&mut v).ok()?;
    Some(v)
}

//! Helpers for the tier tests: run shellcage where user namespaces fail, by
//! simulation (bwrap --disable-userns, or a seccomp filter like a container
//! runtime's), and a secret that lies outside every allowlist.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{self, Workspace};

/// How the test takes user namespaces away.
#[derive(Debug, Clone, Copy)]
pub enum Sim {
    /// `bwrap --unshare-user --disable-userns …`: nested user namespaces fail (ENOSPC).
    Bwrap,
    /// A seccomp filter refusing unshare/clone with CLONE_NEWUSER (EPERM), clone3 ENOSYS.
    Seccomp,
    /// Ubuntu ≥ 23.10 as an unprivileged user (uid 1000 in a bwrap user
    /// namespace): `kernel.apparmor_restrict_unprivileged_userns = 1` and
    /// AppArmor enabled (a fake sysctl file and securityfs directory), the
    /// process unconfined. User namespaces themselves still work, as on
    /// Ubuntu 24.04 where the clone succeeds and only the capabilities in
    /// the new namespace are taken away: shellcage must decide from the
    /// settings, before any clone.
    AppArmor,
}

/// A simulation environment; holds the compiled helper while alive.
pub struct Env {
    sim: Sim,
    _dir: tempfile::TempDir,
    helper: PathBuf,
}

const HELPER_SRC: &str = include_str!("nouserns.c");

fn bwrap_works() -> bool {
    Command::new("bwrap")
        .args([
            "--unshare-user",
            "--disable-userns",
            "--ro-bind",
            "/",
            "/",
            "true",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Env {
    /// `None` (a skip, or a failure under SHELLCAGE_TEST_REQUIRE_KERNEL) when
    /// the simulation cannot be set up here.
    pub fn new(sim: Sim) -> Option<Env> {
        let dir = tempfile::Builder::new()
            .prefix("shellcage-tier-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        let helper = dir.path().join("nouserns");
        match sim {
            Sim::Bwrap => {
                if !common::require(bwrap_works(), "bwrap with --disable-userns") {
                    return None;
                }
            }
            Sim::AppArmor => {
                std::fs::write(dir.path().join("restrict"), "1\n").unwrap();
                if !common::require(bwrap_works(), "bwrap") {
                    return None;
                }
            }
            Sim::Seccomp => {
                let src = dir.path().join("nouserns.c");
                std::fs::write(&src, HELPER_SRC).unwrap();
                let ok = Command::new("cc")
                    .arg("-O1")
                    .arg("-o")
                    .arg(&helper)
                    .arg(&src)
                    .status()
                    .is_ok_and(|s| s.success());
                if !common::require(ok, "cc to build the seccomp helper") {
                    return None;
                }
            }
        }
        Some(Env {
            sim,
            _dir: dir,
            helper,
        })
    }

    /// [`Sim::AppArmor`]: the value of the fake
    /// `kernel.apparmor_restrict_unprivileged_userns` (written in place, so
    /// the bind shows it).
    pub fn set_restrict(&self, value: &str) {
        std::fs::write(self._dir.path().join("restrict"), format!("{value}\n")).unwrap();
    }

    /// `shellcage ARGS…` inside the simulation. `ws` is writable there.
    pub fn shellcage(&self, ws: &Workspace, args: &[&str]) -> Command {
        let mut c = match self.sim {
            Sim::Bwrap => {
                let mut c = Command::new("bwrap");
                c.args(["--unshare-user", "--disable-userns", "--die-with-parent"])
                    .args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"])
                    .args(["--unshare-pid"])
                    // The system temp dir holds the workspace and the per-run $HOME.
                    .arg("--bind")
                    .arg(std::env::temp_dir())
                    .arg(std::env::temp_dir())
                    .arg("--")
                    .arg(common::bin());
                c
            }
            Sim::AppArmor => {
                let restrict = self._dir.path().join("restrict");
                let mut c = Command::new("bwrap");
                c.args(["--unshare-user", "--uid", "1000", "--gid", "1000"])
                    .args(["--die-with-parent", "--unshare-pid"])
                    .args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"])
                    .args(["--tmpfs", "/proc/sys/kernel", "--ro-bind"])
                    .arg(&restrict)
                    .arg("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
                    .args(["--tmpfs", "/sys/kernel/security"])
                    .args(["--dir", "/sys/kernel/security/apparmor"])
                    .arg("--bind")
                    .arg(std::env::temp_dir())
                    .arg(std::env::temp_dir())
                    .arg("--")
                    .arg(common::bin());
                c
            }
            Sim::Seccomp => {
                let mut c = Command::new(&self.helper);
                c.arg(common::bin());
                c
            }
        };
        // A private runtime directory of this test (the shellcage-sh link, the
        // notice markers): the host's /tmp/shellcage-UID belongs to whoever
        // made it, and a real uid 1000's directory is "nobody's" inside the
        // AppArmor simulation (its uid 1000 is our uid).
        c.env("XDG_RUNTIME_DIR", self.runtime_dir());
        c.args(args).current_dir(ws.path()).stdin(Stdio::null());
        c
    }

    fn runtime_dir(&self) -> PathBuf {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self._dir.path().join("run");
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        dir
    }
}

/// A file outside every allowlist (not under the workspace, /tmp, the
/// toolchains or the system directories), readable by us on the host.
pub struct Secret {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub text: String,
}

impl Secret {
    pub fn new() -> Secret {
        let dir = tempfile::Builder::new()
            .prefix("shellcage-secret-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let text = common::canary();
        let path = dir.path().join("id_ed25519");
        std::fs::write(&path, &text).unwrap();
        Secret { dir, path, text }
    }
}

/// A python3 snippet printing the errno (or "open") of socket() for TCP and
/// UDP over IPv4 and IPv6; where a TCP socket opens, it connects to `port`.
pub fn socket_probe(port: u16) -> String {
    format!(
        r#"/usr/bin/python3 -c '
import socket
r = []
for fam, typ in [(socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET6, socket.SOCK_STREAM),
                 (socket.AF_INET, socket.SOCK_DGRAM), (socket.AF_INET6, socket.SOCK_DGRAM)]:
    try:
        s = socket.socket(fam, typ)
        try:
            if fam == socket.AF_INET and typ == socket.SOCK_STREAM:
                s.connect(("127.0.0.1", {port}))
            r.append("open")
        except OSError as e:
            r.append("connect%d" % e.errno)
    except OSError as e:
        r.append(str(e.errno))
print("net=" + ",".join(r))
'"#
    )
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

//! shellcage in network mode `proxy` against servers the test starts on the host's
//! loopback, under test names.
//!
//! The run happens in a mount namespace of the test's own (`unshare -rm`: the network is
//! still the host's) whose `/etc/hosts` maps the test names ([`NAMES`]) to 127.0.0.1, so
//! the proxy process, which resolves names with the host's resolver, finds the loopback
//! servers; inside the sandbox those names go through the proxy's resolver like any other
//! (the sandbox's own hosts file lists only localhost). The profile lets the proxy reach
//! 127.0.0.0/8 (`allow_private`), as a user's profile would for an internal host.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::common::{self, Workspace};

/// Mapped to 127.0.0.1 for the proxy (the test CA's certificate names most of them).
pub const NAMES: &[&str] = &[
    "a.example",
    "b.example",
    "evil.example",
    "x.test.example",
    "deny.test.example",
];

/// Can the sandbox run here, and can the test make a mount namespace of its own?
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        common::sandbox_available()
            && Command::new("unshare")
                .args(["-rm", "true"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    });
    common::require(ok, "user namespaces and `unshare -rm` for the proxy tests")
}

pub struct Cage {
    pub ws: Workspace,
    pub home: tempfile::TempDir,
    dir: tempfile::TempDir,
    /// Extra variables for the shellcage process.
    pub env: Vec<(String, String)>,
    /// Run in a network namespace of the test's own too, whose resolver is [`DNS_SINK`]
    /// (see [`Cage::with_dns_sink`]).
    dns_sink: bool,
    /// Show /etc with resolv.conf as a symlink into /run (see [`Cage::with_resolv_symlink`]).
    resolv_symlink: bool,
}

/// A DNS server for a test network namespace: 127.0.0.1:53 (UDP), every question logged
/// (one name a line), `a.example` answered with 127.0.0.1, everything else NXDOMAIN.
pub const DNS_SINK: &str = r#"
import socket, struct, sys
log, ready = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
open(ready, "w").close()
while True:
    q, peer = s.recvfrom(4096)
    i, labels = 12, []
    while i < len(q) and q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode("latin-1"))
        i += 1 + q[i]
    name = ".".join(labels)
    qtype = struct.unpack("!H", q[i + 1:i + 3])[0] if i + 3 <= len(q) else 0
    with open(log, "a") as f:
        f.write(name + "\n")
    question = q[12:i + 5]
    if name.lower() == "a.example" and qtype == 1:
        head = q[:2] + b"\x81\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00"
        answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x7f\x00\x00\x01"
        s.sendto(head + question + answer, peer)
    else:
        head = q[:2] + b"\x81\x83" + b"\x00\x01\x00\x00\x00\x00\x00\x00"
        s.sendto(head + question, peer)
"#;

impl Cage {
    /// A cage whose profile extends `dev` with `[network] mode = "proxy"` and the lines
    /// of `network` (`allow = [...]` …), `allow_private = ["127.0.0.0/8"]` unless
    /// `network` sets it. `None`: skipped (see [`available`]).
    pub fn new(network: &str) -> Option<Cage> {
        if !available() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("shellcage-proxy-test-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        let private = if network.contains("allow_private") {
            ""
        } else {
            "allow_private = [\"127.0.0.0/8\"]\n"
        };
        std::fs::write(
            dir.path().join("proxy.toml"),
            format!(
                "version = 1\nextends = \"dev\"\n[network]\nmode = \"proxy\"\n{private}{network}\n"
            ),
        )
        .unwrap();
        let hosts: String = std::iter::once("127.0.0.1 localhost\n".to_string())
            .chain(NAMES.iter().map(|n| format!("127.0.0.1 {n}\n")))
            .collect();
        std::fs::write(dir.path().join("hosts"), hosts).unwrap();
        let home = tempfile::Builder::new()
            .prefix("shellcage-proxy-home-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        Some(Cage {
            ws: Workspace::new(),
            home,
            dir,
            env: Vec::new(),
            dns_sink: false,
            resolv_symlink: false,
        })
    }

    /// Run in a network namespace of the test's own as well (`unshare -rmn`), whose
    /// /etc/resolv.conf names [`DNS_SINK`] on 127.0.0.1 and whose /etc/hosts has only
    /// localhost: every name the proxy looks up is seen by the test ([`Cage::dns_log`]).
    /// Nothing else listens in that namespace.
    pub fn with_dns_sink(mut self) -> Cage {
        std::fs::write(self.dir.path().join("sink.py"), DNS_SINK).unwrap();
        std::fs::write(
            self.dir.path().join("resolv.conf"),
            "nameserver 127.0.0.1\n",
        )
        .unwrap();
        std::fs::write(self.dir.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
        self.dns_sink = true;
        self
    }

    /// Show the host's /etc to shellcage through an overlay whose `resolv.conf` is a
    /// symlink to `../run/systemd/resolve/stub-resolv.conf`, as on a host running
    /// systemd-resolved (the target need not exist: the sandbox does not show /run).
    pub fn with_resolv_symlink(mut self) -> Cage {
        self.resolv_symlink = true;
        self
    }

    /// The names the DNS sink was asked for, in order.
    pub fn dns_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("dns.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn profile(&self) -> PathBuf {
        self.dir.path().join("proxy.toml")
    }

    /// Copy `file` into the workspace (the sandbox sees the workspace, not the test's
    /// temporary directories); returns its name there.
    pub fn give(&self, file: &Path) -> String {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        std::fs::copy(file, self.ws.path().join(&name)).unwrap();
        name
    }

    /// `shellcage run --workspace WS --profile P EXTRA -- ARGV` in the test's mount
    /// namespace, with a scrubbed environment (PATH, LANG, HOME = a fresh home).
    pub fn command(&self, extra: &[&str], argv: &[&str]) -> Command {
        let mut c = Command::new("unshare");
        if self.dns_sink {
            c.args(["-rmn", "sh", "-c", SINK_SETUP]);
        } else if self.resolv_symlink {
            c.args(["-rm", "sh", "-c", SYMLINK_SETUP]);
        } else {
            c.args([
                "-rm",
                "sh",
                "-c",
                "mount --bind \"$0/hosts\" /etc/hosts && exec \"$@\"",
            ]);
        }
        c.arg(self.dir.path())
            .arg(common::bin())
            .args(["run", "--workspace"])
            .arg(self.ws.path())
            .arg("--profile")
            .arg(self.profile())
            .args(extra)
            .arg("--")
            .args(argv)
            .env_clear()
            .env(
                "SHELLCAGE_SESSION",
                std::env::var_os("SHELLCAGE_SESSION").unwrap_or_else(|| "off".into()),
            )
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .env("HOME", self.home.path())
            .current_dir(self.ws.path())
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// A shell script run in the cage itself (its mount namespace and /etc/hosts), with
    /// `$SC` (shellcage), `$WS`, `$PROFILE` and `$OUT` (a directory of the test's) set:
    /// several shellcage commands in one namespace, so that they can share a session
    /// (`SHELLCAGE_SESSION=auto`, a private runtime directory of the cage's).
    pub fn script(&self, script: &str) -> Output {
        let run = self.dir.path().join("run");
        let out = self.dir.path().join("out");
        for d in [&run, &out] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
        }
        Command::new("unshare")
            .args([
                "-rm",
                "sh",
                "-c",
                "mount --bind \"$0/hosts\" /etc/hosts && exec sh -c \"$1\"",
            ])
            .arg(self.dir.path())
            .arg(script)
            .env_clear()
            .env("SC", common::bin())
            .env("WS", self.ws.path())
            .env("PROFILE", self.profile())
            .env("OUT", &out)
            .env("SHELLCAGE_SESSION", "auto")
            .env("SHELLCAGE_SESSION_IDLE", "30s")
            .env("XDG_RUNTIME_DIR", &run)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .env("HOME", self.home.path())
            .current_dir(self.ws.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `$OUT` of [`Cage::script`].
    pub fn report_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// The JSON report a [`Cage::script`] wrote to `$OUT/NAME`.
    pub fn report(&self, name: &str) -> serde_json::Value {
        let p = self.dir.path().join("out").join(name);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// `sh -c SCRIPT` in the cage.
    pub fn sh(&self, extra: &[&str], script: &str) -> Output {
        self.command(extra, &["sh", "-c", script]).output().unwrap()
    }
}

/// `$0` is the cage's directory.
const SYMLINK_SETUP: &str = "set -e
mkdir -p \"$0/ov/u\" \"$0/ov/w\"
ln -sfn ../run/systemd/resolve/stub-resolv.conf \"$0/ov/u/resolv.conf\"
cp \"$0/hosts\" \"$0/ov/u/hosts\"
mount -t overlay overlay -o \"lowerdir=/etc,upperdir=$0/ov/u,workdir=$0/ov/w\" /etc
exec \"$@\"";

/// `$0` is the cage's directory.
const SINK_SETUP: &str = "set -e
rm -f \"$0/ready\"
ip link set lo up
/usr/bin/python3 \"$0/sink.py\" \"$0/dns.log\" \"$0/ready\" &
sink=$!
i=0
while [ ! -e \"$0/ready\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
[ -e \"$0/ready\" ]
mount --bind \"$0/resolv.conf\" /etc/resolv.conf
mount --bind \"$0/hosts\" /etc/hosts
set +e
\"$@\"
rc=$?
kill $sink
exit $rc";

/// Both streams and the status, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        common::stdout(o),
        common::stderr(o)
    )
}

/// Unset every proxy variable shellcage sets (a client that ignores them).
pub const NO_PROXY_VARS: &str = "unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY npm_config_proxy npm_config_https_proxy YARN_HTTP_PROXY YARN_HTTPS_PROXY;";

//! Real layers for the overlay tests: a workspace, a state directory, and
//! overlayfs mounted in a throwaway user + mount namespace (`unshare -Urm`)
//! with the workspace as the lower layer and the layer's upper/work dirs,
//! exactly as the sandbox will mount it (`userxattr`). The commands under test
//! (`shellcage changes/apply/discard`) then run on the host, as the user does.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};
use shellcage::overlay::{Layer, Store};

/// The shellcage binary under test (`SHELLCAGE_BIN` overrides, as in CI).
pub use crate::common::bin;

/// Can this machine mount overlayfs in a user namespace? A skip is a
/// failure under SHELLCAGE_TEST_REQUIRE_KERNEL (CI).
pub fn overlay_available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *OK.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        for d in ["l", "u", "w", "m"] {
            std::fs::create_dir(t.path().join(d)).unwrap();
        }
        let ok = Command::new("unshare")
            .args([
                "-Urm",
                "sh",
                "-c",
                "mount -t overlay overlay -o lowerdir=l,upperdir=u,workdir=w,userxattr m",
            ])
            .current_dir(t.path())
            .stdin(Stdio::null())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        // overlayfs made w/work mode 000: let the temporary directory go.
        let _ = std::fs::set_permissions(
            t.path().join("w/work"),
            std::fs::Permissions::from_mode(0o700),
        );
        ok
    });
    crate::common::require(ok, "overlayfs in a user namespace")
}

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    /// The host workspace (canonical).
    pub ws: PathBuf,
    pub state: PathBuf,
    pub home: PathBuf,
}

pub fn sh(dir: &Path, script: &str) -> Output {
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sh {script}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

pub fn code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

/// The command succeeded (its output shown if not); its stdout.
#[track_caller]
pub fn ok(out: &std::process::Output) -> String {
    assert_eq!(
        code(out),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("shellcage-overlay-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        let ws = tmp.path().join("ws");
        let state = tmp.path().join("state");
        let home = tmp.path().join("home");
        for d in [&ws, &home, &tmp.path().join("merged")] {
            std::fs::create_dir(d).unwrap();
        }
        let ws = std::fs::canonicalize(ws).unwrap();
        Fixture {
            tmp,
            ws,
            state,
            home,
        }
    }

    /// A workspace that is a git repository with one commit of `script`'s files.
    pub fn git(script: &str) -> Fixture {
        let f = Fixture::new();
        f.host(&format!(
            "git init -q -b main && {script} && git add -A && git commit -qm base"
        ));
        f
    }

    pub fn store(&self) -> Store {
        Store {
            root: self.state.join("shellcage/layers"),
        }
    }

    /// Create (or open) a layer, as `run --overlay` will.
    pub fn begin(&self, layer: &str) -> Layer {
        Layer::begin(&self.store(), &self.ws, layer).unwrap()
    }

    /// Run `script` on the host workspace.
    pub fn host(&self, script: &str) -> Output {
        sh(&self.ws, script)
    }

    /// Mount the layer over the workspace in a new user+mount namespace and
    /// run `script` in the merged view (as the sandbox's root user).
    pub fn in_layer(&self, layer: &str, script: &str) -> Output {
        let l = self.begin(layer);
        // A `shellcage run` mounts layers `volatile`: the kernel refuses the
        // next mount until its marker is gone (shellcage removes it under the
        // layer's lock; here nobody else uses the layer).
        let scratch = l.work().join("work");
        if std::fs::symlink_metadata(&scratch).is_ok() {
            // (mode 000 and below: open it up first, for a non-root test)
            let st = Command::new("chmod")
                .arg("-R")
                .arg("u+rwX")
                .arg(&scratch)
                .status()
                .unwrap();
            assert!(st.success());
            std::fs::remove_dir_all(&scratch).unwrap();
        }
        let merged = self.tmp.path().join("merged");
        let full = format!(
            "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={},userxattr {} && cd {} && {script}",
            self.ws.display(),
            l.upper().display(),
            l.work().display(),
            merged.display(),
            merged.display()
        );
        let out = Command::new("unshare")
            .args(["-Urm", "sh", "-c", &full])
            .env("GIT_AUTHOR_NAME", "Agent")
            .env("GIT_AUTHOR_EMAIL", "agent@example.com")
            .env("GIT_COMMITTER_NAME", "Agent")
            .env("GIT_COMMITTER_EMAIL", "agent@example.com")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "in layer: {script}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    /// A copy of the merged view (`cp -a` inside the namespace), to hash.
    pub fn merged_copy(&self, layer: &str) -> PathBuf {
        let dst = self
            .tmp
            .path()
            .join(format!("copy-{layer}-{}", rand_suffix()));
        std::fs::create_dir(&dst).unwrap();
        self.in_layer(layer, &format!("cp -a . {}", dst.display()));
        dst
    }

    /// `shellcage ARGS` on the host, in the workspace, with this fixture's state.
    pub fn sc(&self, args: &[&str]) -> Output {
        self.sc_env(args, &[])
    }

    pub fn sc_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).output().unwrap()
    }

    /// The command [`Fixture::sc_env`] runs.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .current_dir(&self.ws)
            .env_clear()
            .env(
                "SHELLCAGE_SESSION",
                std::env::var_os("SHELLCAGE_SESSION").unwrap_or_else(|| "off".into()),
            )
            .env(
                "SHELLCAGE_SESSION_IDLE",
                std::env::var_os("SHELLCAGE_SESSION_IDLE").unwrap_or_else(|| "30s".into()),
            )
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_STATE_HOME", &self.state)
            .env("LANG", "C.UTF-8")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "User")
            .env("GIT_AUTHOR_EMAIL", "user@example.com")
            .env("GIT_COMMITTER_NAME", "User")
            .env("GIT_COMMITTER_EMAIL", "user@example.com")
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// `shellcage run --layer LAYER -- sh -c SCRIPT` in the workspace: the
    /// sandbox mounts the layer over the workspace (the real launch path).
    pub fn run(&self, layer: &str, script: &str) -> Output {
        self.run_env(layer, script, &[])
    }

    pub fn run_env(&self, layer: &str, script: &str, env: &[(&str, &str)]) -> Output {
        self.sc_env(&["run", "--layer", layer, "--", "sh", "-c", script], env)
    }

    /// [`Fixture::run`] that must succeed; its stdout.
    #[track_caller]
    pub fn run_ok(&self, layer: &str, script: &str) -> String {
        let out = self.run(layer, script);
        assert_eq!(
            out.status.code(),
            Some(0),
            "run --layer {layer} {script}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `shellcage changes` output (must succeed).
    pub fn changes(&self, extra: &[&str]) -> String {
        let mut args = vec!["changes"];
        args.extend_from_slice(extra);
        let out = self.sc(&args);
        assert_eq!(out.status.code(), Some(0), "changes: {}", text(&out.stderr));
        text(&out.stdout)
    }
}

impl Drop for Fixture {
    /// overlayfs leaves `work/work` at mode 000 (and tests make odd modes):
    /// make every directory ours-writable so the temporary tree really goes.
    fn drop(&mut self) {
        // The workspace's sessions (which hold its layer) end with it (a test may start
        // one in a cold pass too: --no-session is not the default).
        let _ = self.sc(&["session", "stop", self.ws.to_str().unwrap_or("")]);
        fn open_up(dir: &Path) {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        open_up(&e.path());
                    }
                }
            }
        }
        open_up(self.tmp.path());
    }
}

fn rand_suffix() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Every node below `root`: type, permission bits, content hash or link target.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        // overlayfs's work/work is mode 000: unreadable to a non-root test, its mode is hashed.
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut names: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names {
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let ft = md.file_type();
            let mode = md.permissions().mode() & 0o7777;
            let desc = if ft.is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                format!("dir {mode:o}")
            } else if ft.is_file() {
                let mut h = Sha256::new();
                let mut f = std::fs::File::open(&p).unwrap();
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = f.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                format!(
                    "file {mode:o} {} {}",
                    md.size(),
                    shellcage::audit::sha256_hex(&h.finalize())
                )
            } else if ft.is_fifo() {
                format!("fifo {mode:o}")
            } else {
                format!("special {mode:o} {:x}", md.rdev())
            };
            out.insert(rel, desc);
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// `tree` without the paths below `skip` prefixes.
pub fn tree_without(root: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    tree(root)
        .into_iter()
        .filter(|(k, _)| {
            !skip
                .iter()
                .any(|s| k == s || k.starts_with(&format!("{s}/")))
        })
        .collect()
}

/// Assert two trees are equal, showing only the differing paths.
#[track_caller]
pub fn assert_same(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>, what: &str) {
    if a == b {
        return;
    }
    let mut diff = String::new();
    for k in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if a.get(k) != b.get(k) {
            diff.push_str(&format!("  {k}: {:?} vs {:?}\n", a.get(k), b.get(k)));
        }
    }
    panic!("{what}: trees differ:\n{diff}");
}

/// The sorted lines of `changes` output.
pub fn lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

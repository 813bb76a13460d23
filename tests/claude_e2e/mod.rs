//! Driving the real, published Claude Code (`claude -p`) against the mock
//! Messages API, with shellcage installed by `shellcage install claude-code`.
#![allow(dead_code)]

pub mod mock;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mock::Mock;

/// The Claude Code version these tests (and `.ci/run`) pin.
pub const PINNED: &str = "2.1.332";

/// The shellcage binary under test (`SHELLCAGE_BIN` for the unprivileged run); skip or
/// fail (under `SHELLCAGE_TEST_REQUIRE_KERNEL`: CI) when a prerequisite is missing; can
/// shellcage build its sandbox here.
pub use crate::common::{bin, canary, require, sandbox_available};

/// The pinned `claude`: `$SHELLCAGE_TEST_CLAUDE`, else `claude` on PATH,
/// checked with `claude --version`. `Err` says what is wrong.
pub fn find_claude() -> Result<PathBuf, String> {
    let candidate = match std::env::var_os("SHELLCAGE_TEST_CLAUDE") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join("claude"))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "Claude Code {PINNED} is not installed (npm install -g @anthropic-ai/claude-code@{PINNED}, or set SHELLCAGE_TEST_CLAUDE)"
                )
            })?,
    };
    let out = Command::new(&candidate)
        .arg("--version")
        .env("DISABLE_AUTOUPDATER", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", candidate.display()))?;
    let version = String::from_utf8_lossy(&out.stdout);
    if !version.starts_with(PINNED) {
        return Err(format!(
            "{} is Claude Code {:?}, these tests pin {PINNED} (npm install -g @anthropic-ai/claude-code@{PINNED})",
            candidate.display(),
            version.trim()
        ));
    }
    Ok(candidate)
}

/// The claude binary, the sandbox, or a skip (a failure in CI).
pub fn prerequisites() -> Option<PathBuf> {
    let claude = find_claude();
    if !require(
        claude.is_ok(),
        claude.as_ref().err().map_or("", |e| e.as_str()),
    ) {
        return None;
    }
    if !require(sandbox_available(), "user namespaces (shellcage run)") {
        return None;
    }
    claude.ok()
}

/// The project's `.claude/settings.json`.
pub const SETTINGS: &str = "{\"env\": {\"PROJECT_FLAG\": \"1\"}}\n";

/// A user's machine in a temporary directory: a home with a secret key, a
/// git project with a subdirectory, and shellcage's links.
pub struct Project {
    pub root: tempfile::TempDir,
    pub home: PathBuf,
    pub ws: PathBuf,
    /// `~/.ssh/id_canary`, holding `secret`.
    pub key: PathBuf,
    pub secret: String,
    /// The `.env` in the workspace holds `env_secret`.
    pub env_secret: String,
    /// `bin/shellcage` (a link to the binary under test) and `bin/shellcage-prefix`.
    pub shellcage: PathBuf,
}

fn sh(cwd: &Path, script: &str) {
    let ok = Command::new("sh")
        .args(["-c", script])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "{script}");
}

impl Project {
    pub fn new() -> Project {
        let root = tempfile::Builder::new()
            .prefix("shellcage-claude-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        let r = root.path().canonicalize().unwrap();
        let (home, ws) = (r.join("home"), r.join("project"));
        for d in [
            "home/.ssh",
            "project/sub",
            "project/.claude",
            "bin",
            "claude-tmp",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        let secret = canary();
        let key = home.join(".ssh/id_canary");
        std::fs::write(&key, &secret).unwrap();
        let env_secret = canary();
        std::fs::write(ws.join(".env"), format!("API_KEY={env_secret}\n")).unwrap();
        std::fs::write(ws.join(".claude/settings.json"), SETTINGS).unwrap();
        std::fs::write(ws.join(".gitignore"), ".env\n").unwrap();
        std::fs::write(ws.join("sub/notes.txt"), "hello from the project\n").unwrap();
        sh(
            &ws,
            "git init -q && git config user.email t@example.com && git config user.name t",
        );
        let shellcage = r.join("bin/shellcage");
        symlink(bin(), &shellcage).unwrap();
        Project {
            root,
            home,
            ws,
            key,
            secret,
            env_secret,
            shellcage,
        }
    }

    /// `shellcage install claude-code --user [extra]` with this home.
    pub fn install(&self, extra: &[&str]) -> Output {
        let o = Command::new(&self.shellcage)
            .args(["install", "claude-code", "--user", "--bin"])
            .arg(&self.shellcage)
            .args(extra)
            .env("HOME", &self.home)
            .env_remove("CLAUDE_CONFIG_DIR")
            .current_dir(&self.ws)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "install failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    pub fn settings(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.home.join(".claude/settings.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// `claude -p` in `cwd` against `mock`.
    pub fn claude(&self, claude: &Path, mock: &Mock, cwd: &Path, extra: &[&str]) -> Output {
        self.claude_wrapped(claude, mock, cwd, extra, &[])
    }

    /// The same, started as `WRAPPER… claude ARGS…` (`wrapper` empty: directly).
    pub fn claude_wrapped(
        &self,
        claude: &Path,
        mock: &Mock,
        cwd: &Path,
        extra: &[&str],
        wrapper: &[String],
    ) -> Output {
        let path = format!(
            "{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            claude.parent().unwrap().display()
        );
        let mut c = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(claude);
                c
            }
            None => Command::new(claude),
        };
        c.args(["-p", "run the scripted steps", "--output-format", "json"])
            .args(["--permission-mode", "bypassPermissions"])
            .args(["--tools", "Bash,Read,Write,Edit,Glob,Grep,WebFetch,Monitor"])
            .args(extra)
            .env_clear()
            .env(
                "SHELLCAGE_SESSION",
                std::env::var_os("SHELLCAGE_SESSION").unwrap_or_else(|| "off".into()),
            )
            .env("PATH", path)
            .env("HOME", &self.home)
            .env(
                "USER",
                std::env::var("USER").unwrap_or_else(|_| "root".into()),
            )
            .env("LANG", "C.UTF-8")
            .env("TMPDIR", "/tmp")
            // Claude Code's own temp directory (task output, the prefix's cwd
            // file), private to this test.
            .env("CLAUDE_CODE_TMPDIR", self.root.path().join("claude-tmp"))
            .env("ANTHROPIC_BASE_URL", mock.base_url())
            .env("ANTHROPIC_API_KEY", "sk-ant-dummy-key-for-tests")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            // bypassPermissions is refused to root outside a declared sandbox
            // (CI runs as root); the permission prompts are not under test.
            .env("IS_SANDBOX", "1")
            .current_dir(cwd)
            .stdin(Stdio::null());
        let o = c.output().unwrap();
        assert!(
            o.status.success(),
            "claude -p failed ({:?}): {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// A wrapper that shows `managed` as /etc/claude-code/managed-settings.json
    /// to the command only: a private mount namespace (and a user namespace
    /// when not root) with an overlay on /etc. The host's /etc is not touched.
    pub fn managed_wrapper(&self, managed: &Path) -> Vec<String> {
        let o = self.root.path().join("etc-overlay");
        let _ = std::fs::remove_dir_all(&o);
        std::fs::create_dir_all(o.join("up")).unwrap();
        std::fs::create_dir_all(o.join("work")).unwrap();
        let script = format!(
            "mount -t overlay overlay -o lowerdir=/etc,upperdir={o}/up,workdir={o}/work /etc && mkdir -p /etc/claude-code && cp {m} /etc/claude-code/managed-settings.json && exec \"$@\"",
            o = o.display(),
            m = managed.display()
        );
        let mut w: Vec<String> = vec![
            "unshare".into(),
            "--mount".into(),
            "--propagation".into(),
            "private".into(),
        ];
        if !nix_is_root() {
            w.push("--map-root-user".into());
        }
        w.extend(["sh".into(), "-c".into(), script, "sh".into()]);
        w
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

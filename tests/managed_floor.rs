//! The managed floor (/etc/shellcage/managed.toml) against every way a user or
//! an agent could loosen it: flags, SHELLCAGE_* variables, a user profile that
//! extends a built-in, a profile by path, --audit elsewhere, --write outside
//! the roots, --net host, --tier container, a secret through --env. Each
//! refusal must exit 125 naming the managed key and value, and nothing may run
//! (the command's marker file never appears).
//!
//! Two modes, one floor (tests/fixtures/managed/team.toml):
//! - as root (the root CI run): the floor is a root-owned copy in a temporary
//!   directory, named by SHELLCAGE_MANAGED (honoured for root only);
//! - as an unprivileged user (scripts/test-unprivileged): shellcage reads the
//!   real path, /etc/shellcage/managed.toml, which scripts/with-managed-floor
//!   prepared as root in a private mount namespace before dropping to the
//!   user; SHELLCAGE_MANAGED is then ignored, and a test checks that.
#[macro_use]
mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TEMPLATE: &str = include_str!("fixtures/managed/team.toml");
/// Where scripts/with-managed-floor puts the floor and its log.
const PREPARED: &str = "/etc/shellcage/managed.toml";
const PREPARED_LOG: &str = "/etc/shellcage/log/audit.log";

struct Floor {
    file: PathBuf,
    log: PathBuf,
    /// Root mode: the temporary directory holding file and log.
    dir: Option<tempfile::TempDir>,
}

impl Floor {
    /// The team floor in force for this test, or `None` (skip outside CI)
    /// when running unprivileged without the prepared one.
    fn team() -> Option<Floor> {
        if is_root() {
            let dir = tempfile::Builder::new()
                .prefix("shellcage-floor-")
                .tempdir_in("/tmp")
                .unwrap();
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let logdir = dir.path().join("log");
            std::fs::create_dir(&logdir).unwrap();
            std::fs::set_permissions(&logdir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let log = logdir.join("audit.log");
            std::fs::write(&log, "").unwrap();
            std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
            assert!(chattr("+a", &log), "chattr +a {}", log.display());
            let file = dir.path().join("managed.toml");
            std::fs::write(&file, TEMPLATE.replace("@LOG@", log.to_str().unwrap())).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            return Some(Floor {
                file,
                log,
                dir: Some(dir),
            });
        }
        let prepared = std::fs::read_to_string(PREPARED).ok();
        let expected = TEMPLATE.replace("@LOG@", PREPARED_LOG);
        if !require(
            prepared.as_deref() == Some(expected.as_str()),
            "the team floor at /etc/shellcage/managed.toml (scripts/with-managed-floor prepares it)",
        ) {
            return None;
        }
        Some(Floor {
            file: PREPARED.into(),
            log: PREPARED_LOG.into(),
            dir: None,
        })
    }

    /// `shellcage ARGS…` under this floor, HOME = `home`.
    fn cmd(&self, home: &Home, args: &[&str]) -> Command {
        let mut c = shellcage(Some(home.path()), args);
        if self.dir.is_some() {
            c.env("SHELLCAGE_MANAGED", &self.file);
        }
        c
    }

    /// `run --workspace WS EXTRA -- sh -c 'touch ran; SCRIPT'`.
    fn run(&self, ws: &Workspace, home: &Home, extra: &[&str], script: &str) -> Output {
        let mut args = vec!["run", "--workspace", ws.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        let script = format!("touch ran; {script}");
        args.extend_from_slice(&["--", "sh", "-c", &script]);
        let mut c = self.cmd(home, &args);
        c.current_dir(ws.path());
        c.output().unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        if self.dir.is_some() {
            chattr("-a", &self.log);
        }
    }
}

fn chattr(flag: &str, path: &Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

/// Exit 125, the floor's file, the key and its value named, and nothing ran.
#[track_caller]
fn assert_refused(o: &Output, ws: &Workspace, floor: &Floor, key_value: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(125), "stderr: {err}");
    assert!(
        err.contains("refused by the managed floor") && err.contains(floor.file.to_str().unwrap()),
        "{err}"
    );
    assert!(err.contains(key_value), "expected {key_value:?} in: {err}");
    assert!(!ws.path().join("ran").exists(), "the command ran: {err}");
}

macro_rules! floor {
    () => {
        match Floor::team() {
            Some(f) => f,
            None => return,
        }
    };
}

#[test]
fn a_plain_run_works_is_audited_and_gets_the_floors_timeout() {
    needs_sandbox!();
    let floor = floor!();
    let (ws, home) = (Workspace::new(), Home::new());
    let marker = canary();
    let before = floor.log_text().lines().count();
    let o = floor.run(
        &ws,
        &home,
        &["--env", "GIT_AUTHOR_NAME=floor"],
        &format!("echo {marker} $GIT_AUTHOR_NAME"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), format!("{marker} floor"));
    // The managed log got this run's line, with its command.
    let text = floor.log_text();
    assert_eq!(text.lines().count(), before + 1, "{text}");
    assert!(text.lines().last().unwrap().contains(&marker));
    let v = Command::new(bin())
        .args(["audit", "verify"])
        .arg(&floor.log)
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));

    let show = floor
        .cmd(
            &home,
            &["policy", "show", "--workspace", ws.path().to_str().unwrap()],
        )
        .output()
        .unwrap();
    let text = stdout(&show);
    assert_eq!(show.status.code(), Some(0), "{text}{}", stderr(&show));
    assert!(
        text.contains(&format!("managed floor: {}", floor.file.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}:10", floor.file.display())),
        "network_modes' line: {text}"
    );
    assert!(
        text.contains("timeout 3600s") && text.contains("tier full"),
        "{text}"
    );
    let doctor = floor
        .cmd(&home, &["doctor"])
        .current_dir(ws.path())
        .output()
        .unwrap();
    assert!(
        stdout(&doctor).contains(&format!(
            "managed floor {} is in force",
            floor.file.display()
        )),
        "{}",
        stdout(&doctor)
    );
}

#[test]
fn the_log_is_append_only_for_users() {
    needs_sandbox!();
    let floor = floor!();
    let before = floor.log_text();
    // How users add to it: O_APPEND works (shellcage does just that) …
    let o = Command::new("sh")
        .arg("-c")
        .arg("printf '' >> \"$0\"")
        .arg(&floor.log)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // … but no one can rewrite, truncate or remove it.
    for script in [
        ": > \"$0\"",
        "truncate -s 0 \"$0\"",
        "rm -f \"$0\"",
        "mv \"$0\" \"$0.x\"",
    ] {
        let o = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&floor.log)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{script} succeeded");
    }
    assert!(floor.log_text().starts_with(&before));
    // Inside the sandbox the log does not exist.
    let (ws, home) = (Workspace::new(), Home::new());
    let o = floor.run(
        &ws,
        &home,
        &["--read", floor.log.parent().unwrap().to_str().unwrap()],
        &format!("cat {} && echo READ", floor.log.display()),
    );
    assert!(!stdout(&o).contains("READ"), "{}", stdout(&o));
}

#[test]
fn flags_cannot_loosen_it() {
    needs_sandbox!();
    let floor = floor!();
    let (ws, home) = (Workspace::new(), Home::new());
    let elsewhere = ws.path().join("elsewhere.log");
    let team = home.path().join(".config/team-secrets");
    std::fs::create_dir_all(&team).unwrap();
    let cases: [(&[&str], &str); 11] = [
        (
            &["--net", "host"],
            "network_modes = [\"none\", \"loopback\"]: network mode host (--net host)",
        ),
        (
            &["--allow-host", "pkgs.example.com"],
            "network_modes = [\"none\", \"loopback\"]: network mode proxy",
        ),
        (
            &["--tier", "container"],
            "tiers = [\"full\"]: tier container (--tier container)",
        ),
        (
            &["--write", "/usr/share"],
            "write_roots = [\"~\", \"/tmp\", \"/var/tmp\"]: --write /usr/share is outside them",
        ),
        (
            &["--timeout", "2h"],
            "max_timeout = \"1h\": a timeout of 7200s (--timeout 2h) is longer",
        ),
        (
            &["--audit", elsewhere.to_str().unwrap()],
            "would log this run elsewhere",
        ),
        (
            &["--env", "AWS_SECRET_ACCESS_KEY"],
            "env_pass = [\"GIT_*\", \"LANG\", \"CLAUDECODE\", \"CLAUDE_PROJECT_DIR\"]: --env AWS_SECRET_ACCESS_KEY is not one of them",
        ),
        (&["--env", "FOO=1"], "--env FOO is not one of them"),
        (
            &["--gpu"],
            "devices = []: --gpu would expose the host's GPU device nodes",
        ),
        (
            &["--profile", "readonly"],
            "profiles = [\"dev\", \"ci\"]: builtin:readonly (--profile readonly) is not one of them",
        ),
        (
            &["--read", team.to_str().unwrap()],
            "hide = [\"~/.aws\", \"~/.config/team-secrets\", \"{workspace}/deploy-keys\"]: --read",
        ),
    ];
    for (flags, expected) in cases {
        let o = floor.run(&ws, &home, flags, "true");
        assert_refused(&o, &ws, &floor, expected);
    }
    assert!(!elsewhere.exists());
    // A symlink inside a write root that leads out of it is judged by its target.
    let link = ws.path().join("share-link");
    std::os::unix::fs::symlink("/usr/share", &link).unwrap();
    let o = floor.run(&ws, &home, &["--write", link.to_str().unwrap()], "true");
    assert_refused(&o, &ws, &floor, "is outside them");
    // --write / is refused before the floor is even consulted; still nothing runs.
    let o = floor.run(&ws, &home, &["--write", "/"], "true");
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(!ws.path().join("ran").exists());
    // The control: the same flags within the floor run.
    let o = floor.run(
        &ws,
        &home,
        &[
            "--net",
            "loopback",
            "--timeout",
            "30m",
            "--write",
            "/var/tmp",
        ],
        "true",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(ws.path().join("ran").exists());
}

#[test]
fn environment_variables_cannot_loosen_it() {
    needs_sandbox!();
    let floor = floor!();
    let (ws, home) = (Workspace::new(), Home::new());
    let run = |var: &str, value: &str| {
        let mut args = vec!["run", "--workspace", ws.path().to_str().unwrap()];
        if var == "SHELLCAGE_WORKSPACE" {
            args = vec!["run"];
        }
        args.extend_from_slice(&["--", "sh", "-c", "touch ran"]);
        let mut c = floor.cmd(&home, &args);
        c.env(var, value).current_dir(ws.path());
        c.output().unwrap()
    };
    let o = run("SHELLCAGE_TIER", "container");
    assert_refused(&o, &ws, &floor, "tier container (SHELLCAGE_TIER=container)");
    let o = run("SHELLCAGE_PROFILE", "readonly");
    assert_refused(
        &o,
        &ws,
        &floor,
        "(SHELLCAGE_PROFILE=readonly) is not one of them",
    );
    // A directory outside the write roots that no profile mounts otherwise.
    let outside = ["/mnt", "/media", "/srv"]
        .into_iter()
        .find(|d| Path::new(d).is_dir())
        .unwrap();
    let o = run("SHELLCAGE_WORKSPACE", outside);
    assert_refused(&o, &ws, &floor, "write_roots = [");
    assert!(
        stderr(&o).contains(&format!("(SHELLCAGE_WORKSPACE={outside})")),
        "{}",
        stderr(&o)
    );
    // $HOME is the caller's to set: `~` in write_roots is the password
    // database's home, so HOME=/usr/share does not make /usr/share a write root.
    let below = ["/usr/share/doc", "/usr/share/man", "/usr/share/zoneinfo"]
        .into_iter()
        .find(|d| Path::new(d).is_dir())
        .unwrap();
    let mut c = floor.cmd(
        &home,
        &[
            "run",
            "--workspace",
            ws.path().to_str().unwrap(),
            "--write",
            below,
            "--",
            "touch",
            "ran",
        ],
    );
    c.env("HOME", "/usr/share").current_dir(ws.path());
    let o = c.output().unwrap();
    assert_refused(&o, &ws, &floor, &format!("--write {below} is outside them"));
    // An unprivileged caller cannot point shellcage at another floor.
    if !is_root() {
        let empty = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(empty.path(), "version = 1\n").unwrap();
        let mut c = floor.cmd(
            &home,
            &[
                "run",
                "--workspace",
                ws.path().to_str().unwrap(),
                "--net",
                "host",
                "--",
                "touch",
                "ran",
            ],
        );
        c.env("SHELLCAGE_MANAGED", empty.path())
            .current_dir(ws.path());
        let o = c.output().unwrap();
        assert_refused(&o, &ws, &floor, "network mode host (--net host)");
    }
}

#[test]
fn user_profiles_cannot_loosen_it() {
    needs_sandbox!();
    let floor = floor!();
    let (ws, home) = (Workspace::new(), Home::new());
    let loose = "version = 1\nextends = \"dev\"\n[network]\nmode = \"host\"\n[landlock]\nmode = \"best-effort\"\n";
    home.write(".config/shellcage/profiles/mine.toml", loose);
    let elsewhere = Home::new();
    let by_path = elsewhere.write("loose.toml", loose);
    let o = floor.run(&ws, &home, &["--profile", "mine"], "true");
    assert_refused(&o, &ws, &floor, "profiles = [\"dev\", \"ci\"]: ");
    assert!(
        stderr(&o).contains("mine.toml (--profile mine) is not one of them"),
        "{}",
        stderr(&o)
    );
    let o = floor.run(
        &ws,
        &home,
        &["--profile", by_path.to_str().unwrap()],
        "true",
    );
    assert_refused(&o, &ws, &floor, "loose.toml (--profile");
    // A listed built-in still gets every other key: ci's 30m timeout is within the floor.
    let o = floor.run(&ws, &home, &["--profile", "ci"], "true");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn hide_and_protect_reach_every_run() {
    needs_sandbox!();
    let floor = floor!();
    let (ws, home) = (Workspace::git(), Home::new());
    let secret = canary();
    ws.write("deploy-keys/id_deploy", &secret);
    ws.write(".github/workflows/ci.yml", "on: push\n");
    let o = floor.run(
        &ws,
        &home,
        &[],
        "cat deploy-keys/id_deploy; echo pwned > .github/workflows/ci.yml; echo done",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("done"));
    assert!(!stdout(&o).contains(&secret), "the hidden key was read");
    assert_eq!(
        std::fs::read_to_string(ws.path().join(".github/workflows/ci.yml")).unwrap(),
        "on: push\n"
    );
    // Control: without the floor's protect the same workflow file is writable (dev does not protect it).
    let o = shellcage(
        Some(home.path()),
        &[
            "run",
            "--workspace",
            ws.path().to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "cat deploy-keys/id_deploy",
        ],
    )
    .current_dir(ws.path())
    .output()
    .unwrap();
    if is_root() {
        assert!(
            stdout(&o).contains(&secret),
            "control: the key is readable without the floor"
        );
    }
}

#[test]
fn an_untrusted_floor_refuses_everything() {
    if !is_root() {
        // Making root-owned files takes root: the root run checks these; as a
        // user, only_root_owned_files_are_trusted (lib) covers a user's file.
        return;
    }
    let floor = floor!();
    let (ws, home) = (Workspace::new(), Home::new());
    let file = floor.file.clone();
    let dir = floor.dir.as_ref().unwrap().path().to_path_buf();
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let refused = |what: &str| {
        let o = floor.run(&ws, &home, &[], "true");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{err}");
        assert!(err.contains(what) && err.contains("nothing runs"), "{err}");
        assert!(!ws.path().join("ran").exists());
    };
    mode(&file, 0o666);
    refused("is writable by everyone (mode 0666)");
    mode(&file, 0o664);
    refused("chmod go-w");
    mode(&file, 0o644);
    nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    refused("is owned by uid 65534, not root");
    nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    mode(&dir, 0o777);
    refused(&format!(
        "directory {} is writable by everyone",
        dir.display()
    ));
    mode(&dir, 0o755);
    std::fs::write(&file, "version = 1\nnetwork_mode = [\"none\"]\n").unwrap();
    refused("unknown field `network_mode`");
    // Named by SHELLCAGE_MANAGED but missing: refused, never "no floor".
    std::fs::remove_file(&file).unwrap();
    refused("no such file");
}

#[test]
fn explain_and_the_claude_code_hook_name_the_floor() {
    let floor = floor!();
    let (ws, home) = (Workspace::new(), Home::new());
    let key = home.write(".config/team-secrets/token", &canary());
    let o = floor
        .cmd(
            &home,
            &["explain", key.to_str().unwrap(), ".github/workflows/ci.yml"],
        )
        .current_dir(ws.path())
        .output()
        .unwrap();
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}{}", stderr(&o));
    assert!(
        text.contains(&format!(
            "hidden: managed hide \"~/.config/team-secrets\" ({}:7)",
            floor.file.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "protected: managed protect \".github/workflows\" ({}:8)",
            floor.file.display()
        )),
        "{text}"
    );
    // The agent's Read tool is refused by the same rule, and told who set it.
    let event = serde_json::json!({
        "hook_event_name": "PreToolUse",
        "tool_name": "Read",
        "tool_input": {"file_path": key},
        "cwd": ws.path(),
        "session_id": "s",
        "transcript_path": "/nonexistent",
    });
    let mut c = floor.cmd(&home, &["hook", "claude-code"]);
    c.current_dir(ws.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event.to_string().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let answer = stdout(&o);
    assert!(
        answer.contains("\"permissionDecision\":\"deny\""),
        "{answer}{}",
        stderr(&o)
    );
    assert!(
        answer.contains("managed hide") && answer.contains("which the user cannot change either"),
        "{answer}"
    );
}

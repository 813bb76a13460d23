//! Sessions (issue 11): commands run warm in a session's sandbox, with the same
//! guarantees as a cold run, and the session itself is out of reach from inside.
//! Each test has its own runtime directory (XDG_RUNTIME_DIR), home and workspace, and
//! stops its sessions when it ends.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Home, Workspace, canary, expect_code, stderr, stdout, wait_for};

struct Session {
    ws: Workspace,
    home: Home,
    rt: tempfile::TempDir,
    bin: PathBuf,
}

impl Session {
    /// A session whose workspace is a fresh git repository.
    fn git() -> Session {
        Session::with(Workspace::git())
    }

    fn new() -> Session {
        Session::with(Workspace::new())
    }

    fn with(ws: Workspace) -> Session {
        let rt = tempfile::Builder::new()
            .prefix("shellcage-rt-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        std::fs::set_permissions(
            rt.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        Session {
            ws,
            home: Home::new(),
            rt,
            bin: common::bin(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args);
        self.caller(c)
    }

    /// `c` as this test's caller: its environment and workspace.
    fn caller(&self, mut c: Command) -> Command {
        c.env_clear()
            .env("SHELLCAGE_SESSION", "auto")
            .env("XDG_RUNTIME_DIR", self.rt.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .env("HOME", self.home.path())
            .current_dir(self.ws.path())
            .stdin(Stdio::null());
        c
    }

    /// `shellcage run --workspace WS [extra] -- sh -c SCRIPT`.
    fn sh(&self, extra: &[&str], script: &str) -> Command {
        let ws = self.ws.path().to_str().unwrap().to_owned();
        let mut args = vec!["run", "--workspace", &ws];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        self.command(&args)
    }

    fn run(&self, extra: &[&str], script: &str) -> Output {
        self.sh(extra, script).output().unwrap()
    }

    fn sessions_dir(&self) -> PathBuf {
        self.rt.path().join("shellcage/sessions")
    }

    /// Start a session whose profile extends dev with `session_idle = IDLE` (one `true`
    /// run in it); its server's pid.
    fn started_with_idle(&self, idle: &str) -> i32 {
        let profile = self.home.path().join("quick.toml");
        std::fs::write(
            &profile,
            format!("version = 1\nextends = \"dev\"\nsession_idle = \"{idle}\"\n"),
        )
        .unwrap();
        expect_code(
            &self.run(&["--profile", profile.to_str().unwrap()], "true"),
            0,
        );
        let servers = self.servers();
        assert_eq!(servers.len(), 1);
        servers[0]
    }

    /// The (first) file of the sessions directory whose name ends in `.EXT`.
    fn file(&self, ext: &str) -> PathBuf {
        std::fs::read_dir(self.sessions_dir())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == ext))
            .unwrap_or_else(|| panic!("no .{ext} file in the sessions directory"))
    }

    /// The pids of the servers that have a description file.
    fn servers(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.sessions_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "json") {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(e.path()).unwrap_or_default())
                        .unwrap_or_default();
                if let Some(pid) = v["pid"].as_i64() {
                    out.push(pid as i32);
                }
            }
        }
        out
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.command(&["session", "stop", "--all"]).output();
    }
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
}

fn report(out: &Output) -> serde_json::Value {
    let text = stderr(out);
    let start = text
        .find("{\n")
        .or_else(|| text.find('{'))
        .expect("a JSON report");
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn commands_run_warm_share_tmp_and_keep_exit_codes() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    let first = s.run(
        &["--report", "json"],
        "echo one > /tmp/kept; echo out; echo err >&2; exit 3",
    );
    expect_code(&first, 3);
    assert_eq!(stdout(&first), "out\n");
    assert!(stderr(&first).contains("err\n"));
    let r = report(&first);
    assert!(
        r["session"]["id"].is_string(),
        "the report names the session: {r}"
    );
    assert_eq!(s.servers().len(), 1, "one server for the workspace");
    // The next command: the same server, and the same /tmp.
    let second = s.run(&[], "cat /tmp/kept");
    expect_code(&second, 0);
    assert_eq!(stdout(&second), "one\n");
    assert_eq!(s.servers().len(), 1);
    // Exit codes of the design, warm as cold.
    expect_code(&s.run(&[], "kill -9 $$"), 137);
    let missing = s
        .command(&["run", "--", "no-such-command-here"])
        .output()
        .unwrap();
    expect_code(&missing, 127);
    assert!(stderr(&missing).contains("command not found"));
    let timeout = s.run(&["--timeout", "1s"], "sleep 30");
    expect_code(&timeout, 124);
    // stdin is the caller's: a pipe goes through.
    let mut c = s.sh(&[], "tr a-z A-Z");
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped text\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "PIPED TEXT\n");
    // --no-session: cold, and says nothing of a session.
    let cold = s.run(
        &["--no-session", "--report", "json"],
        "cat /tmp/kept 2>/dev/null; true",
    );
    expect_code(&cold, 0);
    assert_eq!(stdout(&cold), "", "a cold run has its own /tmp");
    assert!(report(&cold).get("session").is_none());
}

#[test]
fn each_command_has_its_own_pid_namespace_and_sees_no_server() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    expect_code(&s.run(&[], "true"), 0);
    let rt = s.rt.path().display().to_string();
    let script = format!(
        "ls /proc | grep -c '^[0-9]'; ls -a '{rt}/shellcage/sessions' 2>&1; grep -c sessions /proc/net/unix; cat /proc/1/cmdline | tr '\\0' ' '"
    );
    // The runtime directory visible to the command: the sessions' directory still is not.
    let out = s.run(&["--read", &rt, "--report", "json"], &script);
    // In the session as a user. As root the session cannot mask its directory (root's
    // view maps no owner of the runtime directory, so its init cannot reach it): the
    // session is not used and the command runs cold, where the directory is as
    // unreadable to the command.
    if !common::is_root() {
        assert!(report(&out).get("session").is_some(), "{}", stderr(&out));
    }
    let text = stdout(&out);
    let mut lines = text.lines();
    let pids: usize = lines.next().unwrap().trim().parse().unwrap();
    assert!(pids <= 4, "only the command's own processes: {text}");
    let listing = lines.next().unwrap_or_default();
    assert!(
        !listing.contains(".sock") && !listing.contains(".json"),
        "the sessions' directory is hidden: {text}"
    );
    assert_eq!(
        lines.next().map(str::trim),
        Some("0"),
        "no session socket in /proc/net/unix: {text}"
    );
    // pid 1 is this command's own init, not the template or the server.
    let init = lines.next().unwrap_or_default();
    assert!(init.contains("shellcage"), "{text}");
    for pid in s.servers() {
        assert!(!text.contains(&format!(" {pid} ")), "{text}");
    }
}

#[test]
fn sixty_four_commands_at_once() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    expect_code(&s.run(&[], "true"), 0);
    let children: Vec<_> = (0..64)
        .map(|i| {
            let mut c = s.sh(&[], &format!("echo n{i}; echo $$"));
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            (i, c.spawn().unwrap())
        })
        .collect();
    for (i, child) in children {
        let out = child.wait_with_output().unwrap();
        expect_code(&out, 0);
        let text = stdout(&out);
        assert!(text.starts_with(&format!("n{i}\n")), "{text}");
        // Each its own pid namespace: the shell has the same small pid in every one
        // (pid 1 is its init).
        let pid: u32 = text.lines().nth(1).unwrap().parse().unwrap();
        assert!(pid <= 3, "{text}");
    }
    assert_eq!(s.servers().len(), 1);
}

#[test]
fn killing_the_client_kills_its_command() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    expect_code(&s.run(&[], "true"), 0);
    let marker = common::sleep_marker();
    let mut child = s
        .sh(&[], &format!("sleep {marker}; touch after"))
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(10), || {
        !common::host_pids_with(&marker).is_empty()
    }));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        wait_for(Duration::from_secs(10), || common::host_pids_with(&marker)
            .is_empty()),
        "the command outlived its client"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(!s.ws.path().join("after").exists());
    // The session goes on.
    expect_code(&s.run(&[], "true"), 0);
}

#[test]
fn killing_the_server_kills_running_commands_and_the_client_says_so() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    expect_code(&s.run(&[], "true"), 0);
    let server = s.servers()[0];
    let marker = common::sleep_marker();
    let child = s
        .sh(&[], &format!("sleep {marker}; touch after"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(10), || {
        !common::host_pids_with(&marker).is_empty()
    }));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(125), "something did run");
    assert!(
        stderr(&out).contains("session's server ended"),
        "{}",
        stderr(&out)
    );
    assert!(wait_for(Duration::from_secs(10), || {
        common::host_pids_with(&marker).is_empty()
    }));
    assert!(!s.ws.path().join("after").exists());
    // The stale socket is not a problem: the next command starts a new session.
    let next = s.run(&[], "echo again");
    expect_code(&next, 0);
    assert_eq!(stdout(&next), "again\n");
    assert!(!s.servers().contains(&server));
}

#[test]
fn an_env_file_made_on_the_host_between_commands_is_hidden_at_any_depth() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    s.ws.write("src/main.txt", "code");
    expect_code(&s.run(&[], "true"), 0);
    let secret = canary();
    // Depth 7, in directories made after the session started, and at the root.
    s.ws.write("a/b/c/d/e/f/g/.env", &secret);
    s.ws.write(".env.local", &secret);
    s.ws.write("src/.env", &secret);
    let out = s.run(
        &[],
        "cat a/b/c/d/e/f/g/.env .env.local src/.env 2>&1; cat src/main.txt",
    );
    assert!(!stdout(&out).contains(&secret), "{}", stdout(&out));
    assert!(stdout(&out).ends_with("code"), "{}", stdout(&out));
    // Deleted and made again on the host: hidden again.
    std::fs::remove_file(s.ws.path().join("src/.env")).unwrap();
    s.ws.write("src/.env", &secret);
    let again = s.run(&[], "cat src/.env 2>&1; true");
    assert!(!stdout(&again).contains(&secret), "{}", stdout(&again));
    // The host's files are untouched.
    assert_eq!(
        std::fs::read_to_string(s.ws.path().join("src/.env")).unwrap(),
        secret
    );
}

#[test]
fn a_profile_edited_between_commands_takes_effect_on_the_next() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    let profile = s.home.path().join("mine.toml");
    let text =
        |v: &str| format!("version = 1\nextends = \"dev\"\n[env]\nset = {{ MINE = \"{v}\" }}\n");
    std::fs::write(&profile, text("one")).unwrap();
    let p = profile.to_str().unwrap();
    let first = s.run(&["--profile", p], "echo $MINE");
    assert_eq!(stdout(&first), "one\n");
    let before = s.servers();
    assert_eq!(before.len(), 1);
    std::fs::write(&profile, text("two")).unwrap();
    let second = s.run(&["--profile", p], "echo $MINE");
    assert_eq!(stdout(&second), "two\n", "never the old policy");
    // The old session ends (it watched the file); the new one serves.
    assert!(wait_for(Duration::from_secs(10), || !alive(before[0])));
    assert_eq!(s.servers().len(), 1);
}

#[test]
fn a_rebuilt_binary_ends_the_session_and_the_next_command_starts_a_new_one() {
    if !needs_sandbox() {
        return;
    }
    let mut s = Session::new();
    let copy = s.rt.path().join("shellcage-copy");
    std::fs::copy(&s.bin, &copy).unwrap();
    s.bin = copy.clone();
    expect_code(&s.run(&[], "true"), 0);
    let before = s.servers();
    assert_eq!(before.len(), 1);
    // "Rebuilt": replaced by a new file with other contents.
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes.extend_from_slice(b"rebuilt");
    let tmp = s.rt.path().join("shellcage-new");
    std::fs::write(&tmp, &bytes).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &copy).unwrap();
    assert!(wait_for(Duration::from_secs(10), || !alive(before[0])));
    expect_code(&s.run(&[], "true"), 0);
    let after = s.servers();
    assert_eq!(after.len(), 1);
    assert_ne!(after, before);
}

#[test]
fn an_idle_session_ends_by_itself() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    let server = s.started_with_idle("1s");
    assert!(wait_for(Duration::from_secs(10), || !alive(server)));
    assert!(s.servers().is_empty(), "its files are removed");
}

#[test]
fn a_bad_session_idle_is_refused() {
    let s = Session::new();
    let profile = s.home.path().join("bad.toml");
    std::fs::write(
        &profile,
        "version = 1\nextends = \"dev\"\nsession_idle = \"soon\"\n",
    )
    .unwrap();
    let out = s.run(&["--profile", profile.to_str().unwrap()], "touch ran");
    expect_code(&out, 125);
    assert!(stderr(&out).contains("session_idle"), "{}", stderr(&out));
    assert!(!s.ws.path().join("ran").exists());
}

#[test]
fn another_user_cannot_reach_the_socket() {
    if !needs_sandbox() || !common::is_root() {
        return;
    }
    let s = Session::new();
    expect_code(&s.run(&[], "true"), 0);
    let sock = s.file("sock");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c"])
        .arg(format!(
            "import socket,sys\ns=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\ntry:\n s.connect({:?}); print('connected')\nexcept OSError as e: print('refused', e.errno)",
            sock.display().to_string()
        ))
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.starts_with("refused"), "{text}{}", stderr(&out));
}

#[test]
fn session_list_status_and_stop() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    expect_code(&s.run(&[], "true"), 0);
    let list = s.command(&["session", "list"]).output().unwrap();
    expect_code(&list, 0);
    assert!(
        stdout(&list).contains(&s.ws.path().display().to_string()),
        "{}",
        stdout(&list)
    );
    let status = s.command(&["session", "status"]).output().unwrap();
    expect_code(&status, 0);
    let server = s.servers()[0];
    let stop = s.command(&["session", "stop"]).output().unwrap();
    expect_code(&stop, 0);
    assert!(
        !alive(server),
        "session stop returns once the server has exited"
    );
    assert!(s.servers().is_empty(), "its description file is gone");
    let status = s.command(&["session", "status"]).output().unwrap();
    expect_code(&status, 1);
}

#[test]
fn git_rewriting_the_config_on_the_host_ends_the_session_and_the_copy_still_holds() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::git();
    expect_code(&s.run(&[], "true"), 0);
    let before = s.servers();
    assert_eq!(before.len(), 1);
    // git writes config.lock and renames it over .git/config: the kernel takes every
    // mount on the old file away, the session's private-copy link with it.
    let ok = Command::new("git")
        .args(["config", "user.name", "host"])
        .current_dir(s.ws.path())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = s.run(
        &[],
        "printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' >> .git/config; echo done",
    );
    assert_eq!(stdout(&out), "done\n", "{}", stderr(&out));
    let host = std::fs::read_to_string(s.ws.path().join(".git/config")).unwrap();
    assert!(
        !host.contains("fsmonitor"),
        "the host's config was written: {host}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || !alive(before[0])),
        "the old session ended"
    );
}

#[test]
fn a_hidden_file_replaced_on_the_host_stays_hidden() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    let profile = s.home.path().join("hide.toml");
    std::fs::write(
        &profile,
        "version = 1\nextends = \"dev\"\n[filesystem]\nhide = [\"{workspace}/secret.txt\"]\n",
    )
    .unwrap();
    let p = profile.to_str().unwrap();
    s.ws.write("secret.txt", "old");
    let first = s.run(&["--profile", p], "cat secret.txt 2>&1; true");
    assert!(!stdout(&first).contains("old"), "{}", stdout(&first));
    // An editor's save: a new file renamed over the hidden one.
    let secret = canary();
    s.ws.write("secret.new", &secret);
    std::fs::rename(
        s.ws.path().join("secret.new"),
        s.ws.path().join("secret.txt"),
    )
    .unwrap();
    let second = s.run(&["--profile", p], "cat secret.txt 2>&1; true");
    assert!(!stdout(&second).contains(&secret), "{}", stdout(&second));
}

#[test]
fn the_host_tree_has_no_placeholders_between_commands() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::git();
    let status = || {
        let o = Command::new("git")
            .args(["status", "--porcelain", "--ignored"])
            .current_dir(s.ws.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // During a command the names that must not be made are held ...
    let first = s.run(
        &[],
        "echo x > .envrc 2>/dev/null && echo envrc-written; \
         mkdir .vscode 2>/dev/null && echo vscode-made; \
         echo '{}' > .mcp.json 2>/dev/null && echo mcp-written; true",
    );
    expect_code(&first, 0);
    assert_eq!(stdout(&first), "", "{}", stderr(&first));
    let server = s.servers();
    assert_eq!(server.len(), 1);
    // ... and between commands the host tree is the user's: nothing of ours in it.
    assert_eq!(
        status(),
        "",
        "the host sees no placeholders between commands"
    );
    for name in [".envrc", ".vscode", ".mcp.json"] {
        assert!(
            std::fs::symlink_metadata(s.ws.path().join(name)).is_err(),
            "{name} is not on the host between commands"
        );
    }
    // Nor the private copy of .git/config: each command has it while it runs (git
    // inside writes it, and what it changed is merged), the last one out removes it.
    let copies = || -> Vec<String> {
        std::fs::read_dir(s.ws.path().join(".git"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("config.shellcage."))
            .collect()
    };
    assert_eq!(
        copies(),
        Vec::<String>::new(),
        "a git config copy between commands"
    );
    let during = s.run(
        &[],
        "git config user.name inside && ls -a .git | grep -c '^config.shellcage.'",
    );
    expect_code(&during, 0);
    assert_eq!(stdout(&during).trim(), "1", "{}", stderr(&during));
    assert_eq!(
        copies(),
        Vec::<String>::new(),
        "the copy stayed after the command"
    );
    let host = std::fs::read_to_string(s.ws.path().join(".git/config")).unwrap();
    assert!(host.contains("name = inside"), "not merged: {host}");
    assert_eq!(s.servers(), server, "the same session ran it");
    // The user makes one of those names on the host between commands: it is theirs,
    // the next command cannot change it, and the session gives way to a new one.
    std::fs::create_dir(s.ws.path().join(".vscode")).unwrap();
    s.ws.write(".vscode/settings.json", "{}");
    let second = s.run(
        &[],
        "echo evil > .vscode/settings.json 2>/dev/null && echo written; cat .vscode/settings.json",
    );
    expect_code(&second, 0);
    assert_eq!(stdout(&second), "{}", "{}", stderr(&second));
    assert_eq!(
        std::fs::read_to_string(s.ws.path().join(".vscode/settings.json")).unwrap(),
        "{}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || !alive(server[0])),
        "the session that could not hold .vscode ended"
    );
    assert!(
        s.ws.path().join(".vscode").is_dir(),
        "the user's .vscode stays"
    );
    assert!(std::fs::symlink_metadata(s.ws.path().join(".envrc")).is_err());
}

#[test]
fn a_workspace_moved_away_ends_its_session_and_the_new_directory_is_used() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    s.ws.write("which", "old");
    let first = s.run(&[], "cat which");
    assert_eq!(stdout(&first), "old");
    let server = s.servers();
    assert_eq!(server.len(), 1);
    // The directory is renamed away and a new one made at its path.
    let away = s.ws.path().with_extension("away");
    std::fs::rename(s.ws.path(), &away).unwrap();
    std::fs::create_dir(s.ws.path()).unwrap();
    s.ws.write("which", "new");
    let second = s.run(&[], "cat which; echo x > written");
    assert_eq!(stdout(&second), "new", "{}", stderr(&second));
    assert!(s.ws.path().join("written").exists());
    assert!(
        !away.join("written").exists(),
        "the old directory is untouched"
    );
    assert!(
        wait_for(Duration::from_secs(10), || !alive(server[0])),
        "the session of the old directory ended"
    );
    std::fs::remove_dir_all(&away).unwrap();
}

#[test]
fn each_command_merges_its_git_config_changes_when_it_ends() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(s.ws.path())
            .env("HOME", s.home.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    git(&["init", "-q"]);
    let first = s.run(&[], "git config user.name a && git config alias.x '!id'");
    expect_code(&first, 0);
    let err = stderr(&first);
    assert!(
        err.contains("merged user.name") && err.contains("refused alias.x"),
        "{err}"
    );
    assert_eq!(
        git(&["config", "user.name"]),
        "a",
        "merged when the command ended"
    );
    assert_eq!(git(&["config", "alias.x"]), "");
    let second = s.run(&[], "git config user.name b");
    expect_code(&second, 0);
    let err = stderr(&second);
    assert!(err.contains("merged user.name"), "{err}");
    assert!(
        !err.contains("alias.x"),
        "said once, by the command that set it: {err}"
    );
    assert_eq!(git(&["config", "user.name"]), "b");
    let third = s.run(&[], "git config user.name");
    assert_eq!(stdout(&third), "b\n");
    assert!(
        !stderr(&third).contains(".git/config"),
        "{}",
        stderr(&third)
    );
    assert_eq!(git(&["config", "alias.x"]), "");
}

#[test]
fn home_reset_ends_an_idle_session_and_refuses_while_a_command_runs() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    // The dev profile keeps the home's caches (~/.cache) per workspace.
    let p = "dev";
    expect_code(
        &s.run(
            &["--profile", p],
            "mkdir -p ~/.cache && echo x > ~/.cache/marker",
        ),
        0,
    );
    let server = s.servers();
    assert_eq!(server.len(), 1);
    // A command running in the session keeps its home: the reset is refused.
    let marker = common::sleep_marker();
    let mut running = s
        .sh(&["--profile", p], &format!("sleep {marker}"))
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(10), || {
        !common::host_pids_with(&marker).is_empty()
    }));
    let refused = s.command(&["home", "reset"]).output().unwrap();
    expect_code(&refused, 125);
    assert!(stderr(&refused).contains("in use"), "{}", stderr(&refused));
    let _ = running.kill();
    let _ = running.wait();
    // Idle: the session ends and the home goes.
    assert!(wait_for(Duration::from_secs(10), || {
        let r = s.command(&["home", "reset"]).output().unwrap();
        r.status.code() == Some(0)
    }));
    assert!(wait_for(Duration::from_secs(10), || !alive(server[0])));
    let after = s.run(
        &["--profile", p],
        "cat ~/.cache/marker 2>/dev/null; echo end",
    );
    assert_eq!(stdout(&after).trim(), "end", "{}", stdout(&after));
}

#[test]
fn a_client_with_no_new_privs_gets_nothing_and_a_plain_one_is_answered() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    expect_code(&s.run(&[], "true"), 0);
    let sock = s.file("sock");
    // What a sandbox without a user namespace (the container tier) looks like: same
    // uid, same user namespace, but no_new_privs.
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\ntry:\n s.connect({:?})\n s.send(b'{{\"key\":\"x\",\"argv\":[\"true\"],\"cwd\":\"/\",\"env\":[],\"report_file\":null,\"report\":false}}')\n s.settimeout(5)\n print(repr(s.recv(65536)))\nexcept Exception as e: print('error', e)",
        sock.display().to_string()
    );
    let run = |nnp: bool| {
        let mut c = Command::new("setpriv");
        if nnp {
            c.arg("--no-new-privs");
        }
        let out = c
            .args(["/usr/bin/python3", "-c", &script])
            .output()
            .unwrap();
        stdout(&out)
    };
    let refused = run(true);
    assert!(
        refused.trim() == "b''" || refused.starts_with("error"),
        "refused without a word: {refused}"
    );
    assert!(run(false).contains("cold"), "a plain client is answered");
}

fn needs_sandbox() -> bool {
    common::require(
        common::sandbox_available(),
        "user namespaces for the sandbox",
    )
}

#[test]
fn a_warm_and_a_cold_command_of_one_workspace_and_profile_share_one_kept_home() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    let warm = s.run(
        &["--profile", "dev"],
        "echo from-warm > ~/.cache/shared-marker",
    );
    expect_code(&warm, 0);
    assert_eq!(s.servers().len(), 1, "the first command started a session");
    let cold = s.run(
        &["--profile", "dev", "--no-session"],
        "cat ~/.cache/shared-marker && echo from-cold >> ~/.cache/shared-marker",
    );
    expect_code(&cold, 0);
    assert_eq!(stdout(&cold).trim(), "from-warm", "{}", stderr(&cold));
    let again = s.run(&["--profile", "dev"], "cat ~/.cache/shared-marker");
    assert_eq!(
        stdout(&again),
        "from-warm\nfrom-cold\n",
        "{}",
        stderr(&again)
    );
    // One home directory for the workspace, on the host.
    let homes = s.home.path().join(".local/state/shellcage/homes");
    let per_workspace: Vec<_> = std::fs::read_dir(&homes).unwrap().collect();
    assert_eq!(per_workspace.len(), 1);
    let dir = per_workspace[0].as_ref().unwrap().path();
    let kept: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
}

#[test]
fn each_command_reports_its_own_name_lookups() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    expect_code(&s.run(&[], "true"), 0);
    let hosts = |out: &Output| -> Vec<String> {
        let r = report(out);
        assert!(r.get("session").is_some(), "warm: {}", stderr(out));
        (r["egress"]["destinations"]
            .as_array()
            .cloned()
            .unwrap_or_default())
        .iter()
        .map(|d| d["host"].as_str().unwrap_or_default().to_owned())
        .collect()
    };
    let first = s.run(&["--report", "json"], "getent hosts first.example; true");
    assert_eq!(hosts(&first), ["first.example"]);
    let second = s.run(&["--report", "json"], "getent hosts second.example; true");
    assert_eq!(hosts(&second), ["second.example"], "only its own");
    let none = s.run(&["--report", "json"], "true");
    assert!(hosts(&none).is_empty());
}

/// A caller in other cgroups gets a session of its own, started inside them: its command
/// runs under the limits its caller is under, never below an earlier caller's cgroups.
#[test]
fn a_caller_in_other_cgroups_gets_its_own_session_inside_them() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    expect_code(&s.run(&[], "true"), 0);
    assert_eq!(s.servers().len(), 1, "the first command started a session");
    let Some(g) = common::cgroups::Guard::new(512, 1 << 30) else {
        common::require(
            !common::is_root(),
            "writable v1 pids and memory cgroups (root)",
        );
        return;
    };
    let m = common::sleep_marker();
    let bin = s.bin.to_str().unwrap().to_owned();
    let ws = s.ws.path().to_str().unwrap().to_owned();
    let script = format!("sleep {m}; echo done");
    let argv = [
        &bin[..],
        "run",
        "--workspace",
        &ws,
        "--",
        "sh",
        "-c",
        &script,
    ];
    let mut c = s.caller(g.command(&argv));
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sleeping = || {
        common::host_pids_with(&m).into_iter().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
    };
    assert!(wait_for(Duration::from_secs(10), || sleeping().is_some()));
    let pid = sleeping().unwrap();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let guard_name = g.dirs[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for ctrl in ["pids", "memory"] {
        let line = cgroups
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == ctrl))
            })
            .unwrap_or_else(|| panic!("no {ctrl} line: {cgroups}"));
        let below =
            line.ends_with(&format!("/{guard_name}")) || line.contains(&format!("/{guard_name}/"));
        assert!(below, "{ctrl}: not below the caller's cgroup: {cgroups}");
    }
    // The marker is a long sleep: end it, the script goes on.
    common::signal(pid, nix::sys::signal::Signal::SIGKILL);
    let out = child.wait_with_output().unwrap();
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "done\n");
    assert_eq!(
        s.servers().len(),
        2,
        "the caller in the guard got a session of its own"
    );
    // Control: the first caller's session is still used by a caller in its cgroups.
    expect_code(&s.run(&[], "true"), 0);
    assert_eq!(s.servers().len(), 2);
    let _ = s.command(&["session", "stop", "--all"]).output();
    assert!(
        wait_for(Duration::from_secs(5), || g.empty()),
        "the guard's session left processes"
    );
}

/// A workspace deleted on the host ends its session at once (not at its idle time): the
/// session's own mounts keep the directory alive, so its parent's watch says it went.
#[test]
fn a_deleted_workspace_ends_its_session() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    expect_code(&s.run(&[], "true"), 0);
    let server = s.servers();
    assert_eq!(server.len(), 1);
    // Control: a file deleted next to the workspace does not end it.
    let sibling = s.ws.path().with_extension("sibling");
    std::fs::create_dir(&sibling).unwrap();
    std::fs::remove_dir(&sibling).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(server[0]), "a sibling's deletion ended the session");
    std::fs::remove_dir_all(s.ws.path()).unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || !alive(server[0])),
        "the session of a deleted workspace lives on"
    );
}

/// A command swaps the session's `.git/config` copy for a link to a file outside the
/// workspace (and, in a second command, for a FIFO): nothing is read or written through
/// it, the last command out removes the link itself, and the next command gets a fresh
/// copy made from the host's file.
#[test]
fn a_git_config_copy_swapped_for_a_link_or_fifo_is_not_followed() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::git();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    std::fs::write(&target, "[user]\n\tname = victim\n").unwrap();
    std::fs::set_permissions(
        outside.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let host_config = || std::fs::read_to_string(s.ws.path().join(".git/config")).unwrap();
    let before = host_config();
    let swap = format!(
        "copy=$(readlink .git/config) && rm -f \"$copy\" && ln -s {} \"$copy\" && \
         ls -l \"$copy\" | grep -c victim",
        target.display()
    );
    let out = s.run(&[], &swap);
    expect_code(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        "1",
        "control: the link was made: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "[user]\n\tname = victim\n",
        "written through the link"
    );
    assert_eq!(
        host_config(),
        before,
        "the victim's keys reached the host config"
    );
    // The link itself is gone (the target stays), and the next command has a fresh copy.
    let left: Vec<_> = std::fs::read_dir(s.ws.path().join(".git"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("config.shellcage.")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(target.exists());
    let next = s.run(
        &[],
        "test -f $(readlink .git/config) && ! test -L $(readlink .git/config) && \
         git config user.name fresh && git config user.name",
    );
    expect_code(&next, 0);
    assert_eq!(stdout(&next).trim(), "fresh", "{}", stderr(&next));
    assert!(host_config().contains("name = fresh"));
    // A FIFO in its place: the handler's merge must not wait on it.
    let fifo = s.run(
        &[],
        "copy=$(readlink .git/config) && rm -f \"$copy\" && mkfifo \"$copy\" && echo made",
    );
    assert_eq!(stdout(&fifo).trim(), "made", "{}", stderr(&fifo));
    let after = s.run(&[], "git config user.name");
    expect_code(&after, 0);
    assert_eq!(stdout(&after).trim(), "fresh", "{}", stderr(&after));
}

#[test]
fn looking_at_sessions_does_not_keep_them_alive() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    let server = s.started_with_idle("2s");
    // `session list` connects to every session of the user to see it answer (control:
    // it does list this one); that is no command, so the idle time runs on.
    let list = || s.command(&["session", "list"]).output().unwrap();
    let ws = s.ws.path().to_str().unwrap().to_owned();
    assert!(stdout(&list()).contains(&ws), "control: listed");
    let ended = wait_for(Duration::from_secs(8), || {
        let _ = list();
        std::thread::sleep(Duration::from_millis(100));
        !alive(server)
    });
    assert!(ended, "the session lived on while it was looked at");
}

#[test]
fn an_ending_session_leaves_the_next_ones_socket_and_description() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    let (started, done) = (s.ws.path().join("started"), s.ws.path().join("done"));
    let running = s
        .sh(
            &["--report-file", "/dev/stderr", "--report", "json"],
            &format!(
                "touch {}; while [ ! -e {} ]; do sleep 0.05; done",
                started.display(),
                done.display()
            ),
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command runs (in the session: its report says so below).
    assert!(wait_for(Duration::from_secs(10), || started.exists()));
    assert_eq!(s.servers().len(), 1);
    let server = s.servers()[0];
    let json = s.file("json");
    let sock = json.with_extension("sock");
    // Asked to end once its command has: it takes no new command (its socket is gone).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert!(wait_for(Duration::from_secs(10), || !sock.exists()));
    // What the next session of the key writes under the same names meanwhile (its
    // socket, its description with its own pid).
    std::fs::write(&sock, "next").unwrap();
    let mut next: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    next["pid"] = serde_json::json!(std::process::id());
    std::fs::write(&json, serde_json::to_vec(&next).unwrap()).unwrap();
    std::fs::write(&done, "").unwrap();
    let out = running.wait_with_output().unwrap();
    expect_code(&out, 0);
    assert!(
        report(&out)["session"]["server"] == serde_json::json!(server),
        "it ran in the session: {}",
        stderr(&out)
    );
    assert!(
        wait_for(Duration::from_secs(10), || !alive(server)),
        "control: the ending session ended"
    );
    assert_eq!(
        std::fs::read(&sock).unwrap(),
        b"next",
        "the next socket stays"
    );
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(
        kept["pid"],
        serde_json::json!(std::process::id()),
        "the next description stays"
    );
    let _ = std::fs::remove_file(&json);
}

#[test]
fn nothing_of_a_command_runs_before_its_client_heard_it_started() {
    if !needs_sandbox() {
        return;
    }
    let s = Session::new();
    expect_code(&s.run(&[], "true"), 0);
    let json = s.file("json");
    let key = json.file_stem().unwrap().to_str().unwrap().to_owned();
    let ran = s.ws.path().join("ran");
    // A client of our own whose stderr is a full pipe: the handler blocks writing the
    // line about the dropped variable, which comes before it tells the client the command
    // started. Had the command begun meanwhile, a client that heard nothing could send it
    // elsewhere and it would run twice. Then the pipe is drained: it runs (control).
    let request = serde_json::json!({
        "key": key,
        "argv": ["sh", "-c", format!("touch {}", ran.display())],
        "cwd": s.ws.path(),
        "env": [["PATH", "/usr/bin:/bin"], ["PIP_INDEX_URL", "https://user:pass@pkgs.example.org/simple"]],
        "report_file": null,
        "report": false,
    });
    let script = format!(
        "import socket,sys,os,time,fcntl,threading
ran = sys.argv[2]
r, w = os.pipe()
fl = fcntl.fcntl(w, fcntl.F_GETFL)
fcntl.fcntl(w, fcntl.F_SETFL, fl | os.O_NONBLOCK)
try:
    while True: os.write(w, b'x' * 4096)
except BlockingIOError: pass
fcntl.fcntl(w, fcntl.F_SETFL, fl)
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect({:?})
socket.send_fds(s, [sys.argv[1].encode()], [0, 1, w])
time.sleep(0.8)
print('before', os.path.exists(ran))
def drain():
    while os.read(r, 65536): pass
threading.Thread(target=drain, daemon=True).start()
said = b''
while b'exit' not in said:
    m = s.recv(65536)
    if not m: break
    said += m
print('after', os.path.exists(ran), said.decode())",
        json.with_extension("sock").display().to_string()
    );
    let out = s
        .caller(Command::new("python3"))
        .args(["-c", &script, &request.to_string()])
        .arg(&ran)
        .output()
        .unwrap();
    let said = stdout(&out);
    assert!(
        said.contains("before False"),
        "it ran before its client heard it started: {said}{}",
        stderr(&out)
    );
    assert!(
        said.contains("after True"),
        "control: it ran once the client could hear: {said}{}",
        stderr(&out)
    );
    assert!(said.contains("\"started\""), "{said}");
}

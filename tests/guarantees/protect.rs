//! Guarantee 3 (protected paths in the workspace): they cannot be created or
//! changed from inside, present or absent at start, and no placeholder is
//! left on the host after a normal exit, SIGINT or SIGTERM.
use crate::common::*;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The dev profile's protected paths (directories, then files).
const DIRS: &[&str] = &[
    ".git/hooks",
    ".vscode",
    ".idea",
    ".claude",
    ".codex",
    ".cursor",
    ".devcontainer",
];
const FILES: &[&str] = &[".git/config", ".envrc", ".mcp.json"];

/// Try every way to create or change each protected path; print what worked.
fn attack_script() -> String {
    let mut s = String::new();
    for d in DIRS {
        s.push_str(&format!(
            "mkdir -p {d} 2>/dev/null; ( echo pwned > {d}/pwned ) 2>/dev/null && echo CREATED {d}/pwned
             for f in {d}/*; do [ -f \"$f\" ] && ( echo pwned >> \"$f\" ) 2>/dev/null && echo CHANGED $f; done
             rm -rf {d} 2>/dev/null; [ -e {d} ] || [ -L {d} ] || echo REMOVED {d}
             mv {d} {d}.moved 2>/dev/null && echo MOVED {d}\n"
        ));
    }
    for f in FILES {
        // `.git/config` is a private copy for the run (issue 13, item 2):
        // writing it works; the host file is compared by the callers.
        let changed = if *f == ".git/config" {
            "WROTE-COPY"
        } else {
            "CHANGED"
        };
        s.push_str(&format!(
            "( echo pwned >> {f} ) 2>/dev/null && echo {changed} {f}
             rm -f {f} 2>/dev/null; [ -e {f} ] || [ -L {f} ] || echo REMOVED {f}
             mv {f} {f}.moved 2>/dev/null && echo MOVED {f}\n"
        ));
    }
    s.push_str("echo normal > normal.txt && mkdir -p src && echo ok > src/lib.rs && echo done\n");
    s
}

fn assert_attack_failed(out: &std::process::Output, ws: &Workspace) {
    expect_code(out, 0);
    let text = stdout(out);
    for bad in ["CREATED", "CHANGED", "REMOVED", "MOVED"] {
        assert!(!text.contains(bad), "{text}");
    }
    assert!(text.ends_with("done\n"), "{text}");
    // Writing a normal file elsewhere in the workspace works.
    assert_eq!(
        std::fs::read_to_string(ws.path().join("normal.txt")).unwrap(),
        "normal\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("src/lib.rs")).unwrap(),
        "ok\n"
    );
}

#[test]
fn protected_paths_absent_at_start_stay_absent() {
    needs_sandbox!();
    let (ws, home) = (Workspace::git(), Home::new());
    std::fs::remove_dir_all(ws.path().join(".git/hooks")).unwrap();
    let before = snapshot(&ws.path().join(".git"));
    let out = run_in(&ws, &home, &[], &attack_script());
    assert_attack_failed(&out, &ws);
    assert_eq!(snapshot(&ws.path().join(".git")), before);
    for p in DIRS.iter().chain(FILES).filter(|p| !p.starts_with(".git/")) {
        assert!(
            std::fs::symlink_metadata(ws.path().join(p)).is_err(),
            "{p} left on the host"
        );
    }
    assert!(!ws.path().join(".git/hooks").exists());
}

#[test]
fn protected_paths_present_at_start_are_unchanged() {
    needs_sandbox!();
    let (ws, home) = (Workspace::git(), Home::new());
    let c = canary();
    ws.write(".git/hooks/pre-commit", &format!("#!/bin/sh\n# {c}\n"));
    for d in DIRS.iter().filter(|d| !d.starts_with(".git")) {
        ws.write(&format!("{d}/settings.json"), &c);
    }
    for f in [".envrc", ".mcp.json"] {
        ws.write(f, &c);
    }
    let before = snapshot(ws.path());
    let out = run_in(&ws, &home, &[], &attack_script());
    assert_attack_failed(&out, &ws);
    let after: Vec<_> = snapshot(ws.path())
        .into_iter()
        .filter(|(p, _)| !p.starts_with("normal.txt") && !p.starts_with("src"))
        .collect();
    assert_eq!(after, before);
}

#[test]
fn git_config_cannot_set_fsmonitor() {
    needs_sandbox!();
    let (ws, home) = (Workspace::git(), Home::new());
    let before = std::fs::read_to_string(ws.path().join(".git/config")).unwrap();
    let out = run_in(
        &ws,
        &home,
        &[],
        "git config core.fsmonitor 'touch /tmp/pwned'; echo status=$?; git config core.hooksPath /tmp; echo status=$?",
    );
    expect_code(&out, 0);
    // git inside writes its private copy; neither key reaches the host, and
    // the refusal is named.
    assert!(
        stderr(&out).contains("refused core.fsmonitor, core.hookspath"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join(".git/config")).unwrap(),
        before
    );
}

#[test]
fn git_init_is_refused_without_a_repository() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(&ws, &home, &[], "git init -q; echo status=$?");
    expect_code(&out, 0);
    assert!(!stdout(&out).contains("status=0"), "{}", stdout(&out));
    // Nothing remains on the host: no .git, no placeholder of any kind.
    let left: Vec<_> = std::fs::read_dir(ws.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn worktree_git_file_is_protected() {
    needs_sandbox!();
    // In a git worktree or submodule `.git` is a file naming the git dir.
    let (ws, home) = (Workspace::new(), Home::new());
    let c = canary();
    ws.write(".git", &format!("gitdir: /nonexistent/{c}\n"));
    let out = run_in(
        &ws,
        &home,
        &[],
        "( echo 'gitdir: /tmp/evil' > .git ) 2>/dev/null && echo CHANGED; echo ok > f && echo done",
    );
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "done\n", "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(ws.path().join(".git")).unwrap(),
        format!("gitdir: /nonexistent/{c}\n")
    );
}

fn placeholders_removed_after(sig: nix::sys::signal::Signal) {
    let (ws, home) = (Workspace::new(), Home::new());
    let ready = ws.path().join("ready");
    let mut args = vec!["run", "--workspace", ws.path().to_str().unwrap(), "--"];
    args.extend_from_slice(&["sh", "-c", "touch ready; sleep 20"]);
    let mut child = shellcage(Some(home.path()), &args)
        .current_dir(ws.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(10), || ready.exists()));
    // While it runs, the placeholders exist on the host (proves the check below
    // looks at the right place): links to nowhere.
    for name in [".vscode", ".git", "refs"] {
        let link = std::fs::symlink_metadata(ws.path().join(name)).unwrap();
        assert!(link.file_type().is_symlink(), "{name}");
    }
    signal(child.id(), sig);
    let status = child.wait().unwrap();
    // Forwarded to the command, which dies of it: 128 + N.
    assert_eq!(status.code(), Some(128 + sig as i32), "{status:?}");
    std::fs::remove_file(&ready).unwrap();
    let left: Vec<_> = std::fs::read_dir(ws.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left on the host after {sig:?}: {left:?}");
}

#[test]
fn no_placeholder_left_after_normal_exit() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(&ws, &home, &[], "ls -A; touch made");
    expect_code(&out, 0);
    // Inside, the placeholders are there (and held) …
    assert!(stdout(&out).contains(".vscode\n"), "{}", stdout(&out));
    // … on the host after the run only the command's own file remains.
    let left: Vec<_> = std::fs::read_dir(ws.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, vec!["made".to_string()]);
}

#[test]
fn no_placeholder_left_after_sigint() {
    needs_sandbox!();
    placeholders_removed_after(nix::sys::signal::Signal::SIGINT);
}

#[test]
fn no_placeholder_left_after_sigterm() {
    needs_sandbox!();
    placeholders_removed_after(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn protected_paths_refuse_writes_at_the_kernel() {
    needs_sandbox!();
    let (ws, home) = (Workspace::git(), Home::new());
    let out = run_in(
        &ws,
        &home,
        &[],
        &format!(
            "for p in .vscode/x .mcp.json .git/hooks/x; do {PY} -c 'import os,sys
try: os.open(sys.argv[1], os.O_WRONLY|os.O_CREAT|os.O_APPEND); print(\"opened\")
except OSError as e: print(e.errno)' $p; done"
        ),
    );
    expect_code(&out, 0);
    // EROFS from the read-only bind, or ENOENT through a placeholder (a link
    // to a path under /proc/0, which cannot exist).
    for line in stdout(&out).lines() {
        assert!(line == "30" || line == "2", "{}", stdout(&out));
    }
    assert_eq!(stdout(&out).lines().count(), 3);
    assert!(!Path::new(&ws.path().join(".vscode/x")).exists());
}

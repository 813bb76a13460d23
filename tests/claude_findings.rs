//! Findings of the real Claude Code run (issue 14, section 4) that needed the
//! mount plan: each test failed on the code of that run and passes now.

mod common;

use common::bin;
use std::process::{Command, Stdio};

fn git(ws: &std::path::Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args(args)
        .current_dir(ws)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `git add -A && git commit` inside the sandbox committed the empty
/// placeholders of missing protected files (`.envrc`, `.mcp.json`), and the
/// host's `git status` showed them deleted afterwards. Fixed: git inside
/// reads an exclude file naming the placeholders (src/sandbox/mount/protect/git.rs).
#[test]
fn placeholders_are_not_committed() {
    let dir = tempfile::Builder::new()
        .prefix("shellcage-findings-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let ws = dir.path();
    git(ws, &["init", "-q"]);
    git(ws, &["config", "user.email", "t@example.com"]);
    git(ws, &["config", "user.name", "t"]);
    std::fs::write(ws.join("f.txt"), "x\n").unwrap();
    let o = Command::new(bin())
        .args(["run", "--workspace"])
        .arg(ws)
        .args(["--", "sh", "-c", "git add -A && git commit -qm inside"])
        .current_dir(ws)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let committed = git(ws, &["show", "--name-only", "--format=", "HEAD"]);
    assert_eq!(committed.trim(), "f.txt", "only the real file is committed");
    assert_eq!(
        git(ws, &["status", "--porcelain"]),
        "",
        "the host tree is clean"
    );
}

//! Protected paths on temporary directories: placeholders are created with
//! their marker modes, adopted, shared between runs and removed; what a mount
//! cannot hold is refused. No privilege needed.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt, symlink};

use super::*;

fn ws() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ws = std::fs::canonicalize(dir.path()).unwrap().join("ws");
    std::fs::create_dir(&ws).unwrap();
    (dir, ws)
}

fn policy(ws: &Path, protect: &[&str]) -> Policy {
    let mut p = Policy::for_tests(ws, Path::new("/nonexistent-home"));
    p.protect = protect.iter().map(PathBuf::from).collect();
    p
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn is_link_placeholder(p: &Path) -> bool {
    std::fs::read_link(p).is_ok_and(|t| t == Path::new(LINK_TARGET))
}

fn ino(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).unwrap().ino()
}

#[test]
fn missing_paths_get_placeholders_removed_at_cleanup() {
    let (_t, ws) = ws();
    std::fs::create_dir(ws.join(".vscode")).unwrap();
    let p = prepare(&policy(
        &ws,
        &[".git/hooks", ".git/config", ".envrc", ".vscode", ".claude"],
    ))
    .unwrap();
    // No .git: the placeholder at .git covers .git/config; `refs` keeps the
    // root from being a bare repository. All are links of one dangling
    // symlink.
    assert_eq!(
        p.protected,
        vec![
            (ws.join(".git"), Node::Link),
            (ws.join(".envrc"), Node::Link),
            (ws.join(".vscode"), Node::Dir),
            (ws.join(".claude"), Node::Link),
            (ws.join("refs"), Node::Link),
        ]
    );
    let made = [".git", ".envrc", ".claude", "refs"];
    assert_eq!(p.placeholders, made.map(|n| ws.join(n)).to_vec());
    for name in made {
        assert!(is_link_placeholder(&ws.join(name)), "{name}");
        assert_eq!(ino(&ws.join(name)), ino(&ws.join(".git")), "one inode");
    }
    assert!(p.holds_lock());
    cleanup(&p);
    for name in made {
        assert!(std::fs::symlink_metadata(ws.join(name)).is_err(), "{name}");
    }
    assert!(ws.join(".vscode").is_dir(), "a real directory is kept");
}

#[test]
fn placeholders_are_shared_by_concurrent_runs_and_adopted_after_a_crash() {
    let (_t, ws) = ws();
    let pol = policy(&ws, &[".claude", ".mcp.json"]);
    let first = prepare(&pol).unwrap();
    let second = prepare(&pol).unwrap();
    assert_eq!(
        second.placeholders,
        vec![ws.join(".claude"), ws.join(".mcp.json")]
    );
    cleanup(&first);
    assert!(
        is_link_placeholder(&ws.join(".claude")),
        "still used by the second run"
    );
    drop(first);
    cleanup(&second);
    assert!(std::fs::symlink_metadata(ws.join(".claude")).is_err());
    // Cleanup upgraded its lock: a run only does that as it exits.
    drop(second);
    // Left behind by a SIGKILLed run (or an older version): same shape, so
    // taken over and removed.
    symlink(LINK_TARGET, ws.join(".claude")).unwrap();
    std::fs::DirBuilder::new()
        .mode(0o555)
        .create(ws.join(".mcp.json"))
        .unwrap();
    std::fs::set_permissions(ws.join(".mcp.json"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let third = prepare(&pol).unwrap();
    assert_eq!(
        third.placeholders,
        vec![ws.join(".claude"), ws.join(".mcp.json")]
    );
    cleanup(&third);
    assert!(std::fs::symlink_metadata(ws.join(".claude")).is_err());
    assert!(std::fs::symlink_metadata(ws.join(".mcp.json")).is_err());
}

#[test]
fn what_the_host_put_in_place_of_a_placeholder_is_kept() {
    let (_t, ws) = ws();
    let p = prepare(&policy(&ws, &[".mcp.json"])).unwrap();
    // During the run the host replaces it (the sandbox cannot: it is held).
    std::fs::remove_file(ws.join(".mcp.json")).unwrap();
    std::fs::write(ws.join(".mcp.json"), "{}").unwrap();
    cleanup(&p);
    assert_eq!(std::fs::read_to_string(ws.join(".mcp.json")).unwrap(), "{}");
}

#[test]
fn a_real_directory_of_the_old_placeholder_mode_is_not_adopted() {
    let (_t, ws) = ws();
    std::fs::create_dir(ws.join(".idea")).unwrap();
    std::fs::write(ws.join(".idea/x.xml"), "x").unwrap();
    std::fs::set_permissions(ws.join(".idea"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let p = prepare(&policy(&ws, &[".idea"])).unwrap();
    assert!(p.placeholders.is_empty());
    assert_eq!(p.protected, vec![(ws.join(".idea"), Node::Dir)]);
    cleanup(&p);
    std::fs::set_permissions(ws.join(".idea"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(ws.join(".idea/x.xml").exists());
}

#[test]
fn symlinked_protected_paths_hold_the_link_and_what_it_leads_to() {
    let (_t, ws) = ws();
    // A link to a directory inside: the link held, the directory protected.
    std::fs::create_dir_all(ws.join("tools/claude-config")).unwrap();
    symlink("tools/claude-config", ws.join(".claude")).unwrap();
    // A link above a protected path, through a second link, with `..` after
    // it (resolved the kernel's way: `up/..` is the parent of where `up`
    // leads, not the directory holding `up`).
    std::fs::create_dir_all(ws.join("real/deep/git")).unwrap();
    symlink("real/deep", ws.join("up")).unwrap();
    symlink("up/../deep/git", ws.join(".git")).unwrap();
    // A link to a missing name inside: a placeholder at the target.
    symlink("cfg/missing.json", ws.join(".mcp.json")).unwrap();
    // A link to outside: held, nothing else to do.
    symlink("/nonexistent-outside/x", ws.join(".vscode")).unwrap();
    let p = prepare(&policy(
        &ws,
        &[".claude", ".git/hooks", ".mcp.json", ".vscode"],
    ))
    .unwrap();
    let has = |rel: &str, node: Node| p.protected.contains(&(ws.join(rel), node));
    assert!(has(".claude", Node::Link), "{:?}", p.protected);
    assert!(has("tools/claude-config", Node::Dir), "{:?}", p.protected);
    assert!(
        has(".git", Node::Link) && has("up", Node::Link),
        "{:?}",
        p.protected
    );
    assert!(has("real/deep/git/hooks", Node::Link), "{:?}", p.protected);
    assert!(is_link_placeholder(&ws.join("real/deep/git/hooks")));
    assert!(
        has(".mcp.json", Node::Link) && has("cfg", Node::Link),
        "{:?}",
        p.protected
    );
    assert!(has(".vscode", Node::Link), "{:?}", p.protected);
    cleanup(&p);
    assert!(!ws.join("real/deep/git/hooks").exists() && !ws.join("cfg").exists());
    drop(p);
    // A link to a path the sandbox may write outside the workspace: refused.
    let out = tempfile::tempdir().unwrap();
    std::fs::remove_file(ws.join(".vscode")).unwrap();
    symlink(out.path(), ws.join(".vscode")).unwrap();
    let mut pol = policy(&ws, &[".vscode"]);
    pol.paths.push(crate::policy::PathRule {
        path: out.path().to_path_buf(),
        access: Access::Write,
        optional: false,
    });
    let err = prepare(&pol).unwrap_err().to_string();
    assert!(err.contains("which the sandbox can write"), "{err}");
    // A loop: refused, nothing made.
    std::fs::remove_file(ws.join(".vscode")).unwrap();
    symlink(".vscode", ws.join(".vscode")).unwrap();
    let err = prepare(&policy(&ws, &[".vscode"])).unwrap_err().to_string();
    assert!(err.contains(".vscode"), "{err}");
}

#[test]
fn a_git_file_is_protected_itself() {
    // In a git worktree or submodule `.git` is a file naming the git directory.
    let (_t, ws) = ws();
    std::fs::write(ws.join(".git"), "gitdir: /elsewhere\n").unwrap();
    let p = prepare(&policy(&ws, &[".git/hooks", ".git/config"])).unwrap();
    assert_eq!(
        p.protected,
        vec![(ws.join(".git"), Node::File), (ws.join("refs"), Node::Link)]
    );
    assert_eq!(p.placeholders, vec![ws.join("refs")]);
    cleanup(&p);
    assert!(ws.join(".git").is_file());
}

#[test]
fn git_redirect_files_are_held_for_the_whole_run() {
    let (_t, ws) = ws();
    std::fs::create_dir_all(ws.join(".git/hooks")).unwrap();
    std::fs::write(ws.join(".git/config"), "").unwrap();
    std::fs::write(ws.join(".git/commondir"), "../x\n").unwrap();
    let p = prepare(&policy(&ws, &[".git/hooks", ".git/config"])).unwrap();
    assert!(
        p.protected
            .contains(&(ws.join(".git/commondir"), Node::File))
    );
    // Missing: a placeholder git reads as no worktree configuration.
    assert!(
        p.protected
            .contains(&(ws.join(".git/config.worktree"), Node::Link))
    );
    assert!(is_link_placeholder(&ws.join(".git/config.worktree")));
    cleanup(&p);
    assert!(std::fs::symlink_metadata(ws.join(".git/config.worktree")).is_err());
    assert!(ws.join(".git/commondir").is_file());
    drop(p);
    // A missing commondir: a file naming the git directory itself.
    std::fs::remove_file(ws.join(".git/commondir")).unwrap();
    let p = prepare(&policy(&ws, &[".git/config"])).unwrap();
    assert!(
        p.protected
            .contains(&(ws.join(".git/commondir"), Node::File))
    );
    assert_eq!(std::fs::read(ws.join(".git/commondir")).unwrap(), b".\n");
    assert_eq!(mode(&ws.join(".git/commondir")), 0o444);
    cleanup(&p);
    assert!(std::fs::symlink_metadata(ws.join(".git/commondir")).is_err());
    drop(p);
    // One that is not a regular file is refused.
    std::fs::create_dir(ws.join(".git/commondir")).unwrap();
    let err = prepare(&policy(&ws, &[".git/config"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn the_root_cannot_become_a_bare_repository() {
    let (_t, ws) = ws();
    // The project has its own `refs` directory: `objects` is held instead.
    std::fs::create_dir(ws.join("refs")).unwrap();
    let p = prepare(&policy(&ws, &[".git/config"])).unwrap();
    assert!(p.protected.contains(&(ws.join("objects"), Node::Link)));
    assert!(!p.protected.iter().any(|(q, _)| *q == ws.join("refs")));
    cleanup(&p);
    drop(p);
    // Both are the project's: nothing to hold at the root.
    std::fs::create_dir(ws.join("objects")).unwrap();
    let p = prepare(&policy(&ws, &[".git/config"])).unwrap();
    assert_eq!(p.placeholders, vec![ws.join(".git")]);
    cleanup(&p);
    drop(p);
    // Without git's protection in the profile, no guard either.
    std::fs::remove_dir(ws.join("refs")).unwrap();
    let p = prepare(&policy(&ws, &[".vscode"])).unwrap();
    assert_eq!(p.placeholders, vec![ws.join(".vscode")]);
}

#[test]
fn a_read_only_workspace_needs_nothing() {
    let (_t, ws) = ws();
    let mut pol = policy(&ws, &[".git/hooks"]);
    pol.workspace_access = Access::Read;
    let p = prepare(&pol).unwrap();
    assert!(p.protected.is_empty() && !p.holds_lock());
    assert!(!ws.join(".git").exists());
}

#[test]
fn the_exit_check_judges_nested_repositories_not_the_workspaces_own() {
    let (_t, ws) = ws();
    std::fs::create_dir_all(ws.join(".git/hooks")).unwrap();
    std::fs::write(ws.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::create_dir_all(ws.join(".git/objects")).unwrap();
    std::fs::create_dir_all(ws.join(".git/refs")).unwrap();
    let since = crate::git::repo::tick_start();
    // Written after the run began: the workspace's own hook (held for the
    // run, so the user's) stays; a nested repository's is disabled.
    std::fs::write(ws.join(".git/hooks/pre-commit"), "#!/bin/sh\n").unwrap();
    for d in ["sub/.git/objects", "sub/.git/refs", "sub/.git/hooks"] {
        std::fs::create_dir_all(ws.join(d)).unwrap();
    }
    std::fs::write(ws.join("sub/.git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(ws.join("sub/.git/config"), "[core]\n\tfsmonitor = x\n").unwrap();
    std::fs::write(ws.join("sub/.git/hooks/pre-commit"), "#!/bin/sh\n").unwrap();
    // A concurrent run's placeholder for a missing `.git`: not a link to judge.
    std::fs::create_dir(ws.join("other")).unwrap();
    symlink(LINK_TARGET, ws.join("other/.git")).unwrap();
    let (check, lines) = check_repositories(&ws, since);
    assert!(check.complete, "{check:?}");
    assert_eq!(check.neutralised, 2, "{check:?}");
    assert!(ws.join(".git/hooks/pre-commit").exists());
    assert!(is_link_placeholder(&ws.join("other/.git")));
    assert!(!ws.join("sub/.git/hooks/pre-commit").exists());
    assert!(
        ws.join("sub/.git/hooks/pre-commit.shellcage-disabled")
            .exists()
    );
    let config = std::fs::read_to_string(ws.join("sub/.git/config")).unwrap();
    assert!(!config.contains("fsmonitor"), "{config}");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("core.fsmonitor") && l.contains("sub/.git/config"))
    );
}

#[test]
fn root_name_patterns_hold_matches_and_disable_new_ones() {
    let (_t, ws) = ws();
    std::fs::write(ws.join("mine.code-workspace"), "{}").unwrap();
    let p = prepare(&policy(&ws, &["*.code-workspace"])).unwrap();
    assert_eq!(
        p.protected,
        vec![(ws.join("mine.code-workspace"), Node::File)]
    );
    assert!(p.placeholders.is_empty());
    // Made during the run (inside, or by anyone): renamed at exit, reversibly.
    std::fs::write(ws.join("evil.code-workspace"), "{}").unwrap();
    std::fs::write(ws.join("not-a.code-workspace.txt"), "").unwrap();
    let (lines, complete) = disable_new_matches(&p, &ws);
    assert!(complete);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(!ws.join("evil.code-workspace").exists());
    assert!(ws.join("evil.code-workspace.shellcage-disabled").exists());
    assert!(ws.join("mine.code-workspace").exists());
    assert!(ws.join("not-a.code-workspace.txt").exists());
    // The disabled copy is not itself a match next time.
    assert!(disable_new_matches(&p, &ws).0.is_empty());
}

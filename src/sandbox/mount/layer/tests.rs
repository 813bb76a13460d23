//! The merged view as overlayfs reads it, on temporary directories: a host
//! workspace and an upper directory built by hand (whiteouts are 0/0
//! character devices, which Linux 5.8+ lets anyone create). No privilege.

use std::os::unix::fs::symlink;

use super::*;

struct Trees {
    _t: tempfile::TempDir,
    ws: PathBuf,
    upper: PathBuf,
}

fn trees() -> Trees {
    let t = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(t.path()).unwrap();
    let (ws, upper) = (root.join("ws"), root.join("upper"));
    std::fs::create_dir(&ws).unwrap();
    std::fs::create_dir(&upper).unwrap();
    Trees { _t: t, ws, upper }
}

fn mkdirs(base: &Path, rel: &str) {
    std::fs::create_dir_all(base.join(rel)).unwrap();
}

fn write(base: &Path, rel: &str) {
    let p = base.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, b"x").unwrap();
}

fn whiteout(base: &Path, rel: &str) {
    nix::sys::stat::mknod(
        &base.join(rel),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
}

fn at(p: &str) -> PathBuf {
    PathBuf::from(p)
}

#[test]
fn the_merged_view_follows_overlayfs() {
    let t = trees();
    let (ws, up) = (&t.ws, &t.upper);
    mkdirs(ws, ".git/hooks");
    write(ws, ".git/config");
    write(ws, "src/a.rs");
    // Nothing in the layer on the way: the host decides.
    assert_eq!(lookup(ws, up, Path::new(".git/hooks")), Merged::Host);
    assert_eq!(lookup(ws, up, Path::new("missing/x")), Merged::Host);
    // A copied-up directory merged with the host's: still the host below it.
    mkdirs(up, ".git");
    assert_eq!(lookup(ws, up, Path::new(".git/hooks")), Merged::Host);
    // The layer's own entries.
    write(up, ".git/config");
    assert_eq!(
        lookup(ws, up, Path::new(".git/config")),
        Merged::Layer {
            at: at(".git/config"),
            kind: Kind::File
        }
    );
    mkdirs(up, ".git/hooks");
    assert_eq!(
        lookup(ws, up, Path::new(".git/hooks")),
        Merged::Layer {
            at: at(".git/hooks"),
            kind: Kind::Dir
        }
    );
    // A whiteout deletes; below it nothing is left.
    whiteout(up, "src");
    for rel in ["src", "src/a.rs"] {
        assert_eq!(
            lookup(ws, up, Path::new(rel)),
            Merged::Gone {
                at: at("src"),
                layer_only_dir: false
            },
            "{rel}"
        );
    }
    // A non-directory in the layer ends the path (`.vscode` as a file or a link).
    write(up, ".vscode");
    assert_eq!(
        lookup(ws, up, Path::new(".vscode/tasks.json")),
        Merged::Layer {
            at: at(".vscode"),
            kind: Kind::File
        }
    );
    symlink("/etc", up.join(".idea")).unwrap();
    assert_eq!(
        lookup(ws, up, Path::new(".idea")),
        Merged::Layer {
            at: at(".idea"),
            kind: Kind::Symlink
        }
    );
    // A directory only the layer has: what it lacks is absent, with no host
    // directory to make a placeholder in.
    mkdirs(up, "new/dir");
    assert_eq!(
        lookup(ws, up, Path::new("new/dir/hooks")),
        Merged::Gone {
            at: at("new/dir/hooks"),
            layer_only_dir: true
        }
    );
    // The host's file under the layer's directory of the same name: the layer's
    // directory replaced it (overlayfs makes such a directory opaque).
    write(ws, "f");
    mkdirs(up, "f");
    assert_eq!(
        lookup(ws, up, Path::new("f/x")),
        Merged::Gone {
            at: at("f/x"),
            layer_only_dir: true
        }
    );
}

#[test]
fn env_files_of_the_layer_and_the_host_are_found_where_the_view_shows_them() {
    let t = trees();
    let (ws, up) = (&t.ws, &t.upper);
    write(ws, ".env");
    write(ws, "gone/.env");
    write(ws, "kept/.env");
    // The layer deletes one, adds one, and replaces one dir by a file.
    mkdirs(up, "gone");
    whiteout(up, "gone/.env");
    write(up, "new/.env");
    write(up, "kept2/.env.local");
    let cfg = EnvFileScan {
        enabled: true,
        max_depth: 4,
        skip_dirs: vec![],
        allow_names: vec![],
        max_dirs: 100,
    };
    let mut found = env_scan(ws, up, &cfg).unwrap().hidden;
    found.sort();
    let mut want = vec![
        ws.join(".env"),
        ws.join("kept/.env"),
        ws.join("kept2/.env.local"),
        ws.join("new/.env"),
    ];
    want.sort();
    assert_eq!(found, want);
}

#[test]
fn masks_follow_the_merged_view() {
    let t = trees();
    let (ws, up) = (&t.ws, &t.upper);
    write(ws, "secrets/key");
    write(ws, "old");
    whiteout(up, "old");
    write(up, "made");
    mkdirs(up, "made-dir");
    symlink("/etc/passwd", up.join("link")).unwrap();
    assert_eq!(masked_kind(ws, up, &ws.join("secrets")), Some(true));
    assert_eq!(masked_kind(ws, up, &ws.join("secrets/key")), Some(false));
    assert_eq!(
        masked_kind(ws, up, &ws.join("old")),
        None,
        "deleted in the layer"
    );
    assert_eq!(masked_kind(ws, up, &ws.join("made")), Some(false));
    assert_eq!(masked_kind(ws, up, &ws.join("made-dir")), Some(true));
    assert_eq!(
        masked_kind(ws, up, &ws.join("link")),
        None,
        "a link holds no secret"
    );
    assert_eq!(masked_kind(ws, up, Path::new("/elsewhere")), None);
}

#[test]
fn protected_paths_in_the_layer_are_held_and_what_cannot_be_held_is_refused() {
    let t = trees();
    let (ws, up) = (&t.ws, &t.upper);
    mkdirs(ws, ".git/hooks");
    write(ws, ".git/config");
    let layer = LayerDirs {
        name: "default".into(),
        upper: up.clone(),
        work: up.join("../work"),
    };
    let mut policy = Policy::for_tests(ws, Path::new("/nonexistent-home"));
    policy.protect = vec![at(".git/hooks"), at(".git/config"), at(".envrc")];
    // The layer made .envrc (a file): held read-only where the view shows it.
    write(up, ".envrc");
    let p = protect(&policy, &layer).unwrap();
    for (path, node) in [
        (ws.join(".envrc"), Node::File),
        (ws.join(".git/config"), Node::File),
        (ws.join(".git/hooks"), Node::Dir),
    ] {
        assert!(
            p.protected.contains(&(path.clone(), node)),
            "{path:?}: {:?}",
            p.protected
        );
    }
    assert!(
        p.git.is_empty() && p.git_check_since.is_none(),
        "no private .git/config merged back into the host, no exit check of host repositories"
    );
    protect::cleanup(&p);
    drop(p);
    assert!(
        !ws.join(".envrc").exists(),
        "no placeholder on the host for a path the layer holds"
    );
    assert_eq!(
        std::fs::read_dir(ws.join(".git")).unwrap().count(),
        2,
        "the host's placeholders are gone after the run"
    );
    // The layer deleted the hooks directory: nothing to hold, refused and named.
    std::fs::create_dir(up.join(".git")).unwrap();
    whiteout(up, ".git/hooks");
    let err = protect(&policy, &layer).unwrap_err().to_string();
    assert!(
        err.contains(".git/hooks")
            && err.contains("deleted in the layer")
            && err.contains("discard"),
        "{err}"
    );
    // A symlink the layer put at a protected path: refused (a mount would follow it).
    std::fs::remove_file(up.join(".git/hooks")).unwrap();
    std::fs::remove_file(up.join(".envrc")).unwrap();
    symlink("/tmp", up.join(".envrc")).unwrap();
    let err = protect(&policy, &layer).unwrap_err().to_string();
    assert!(err.contains("is a symlink in layer"), "{err}");
}

#[test]
fn paths_of_their_own_inside_an_overlay_workspace_are_refused() {
    let t = trees();
    let ws = &t.ws;
    mkdirs(ws, "vendor");
    let layer = LayerDirs {
        name: "default".into(),
        upper: t.upper.clone(),
        work: t.upper.join("../work"),
    };
    let mut policy = Policy::for_tests(ws, Path::new("/nonexistent-home"));
    let mut b = super::super::describe::binds(&policy).unwrap();
    make_overlay(&policy, &layer, &mut b).unwrap();
    assert!(
        b.tree
            .iter()
            .any(|op| matches!(op, Op::Overlay { at, .. } if at == ws)),
        "the workspace is mounted as the overlay: {:?}",
        b.tree
    );
    policy.paths.push(crate::policy::PathRule {
        path: ws.join("vendor"),
        access: Access::Write,
        optional: false,
    });
    let mut b = super::super::describe::binds(&policy).unwrap();
    let err = make_overlay(&policy, &layer, &mut b)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("vendor") && err.contains("bypass the layer"),
        "{err}"
    );
}

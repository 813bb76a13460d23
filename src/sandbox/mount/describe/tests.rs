//! The host side of the mount plan on temporary directories: no privilege,
//! nothing mounted, only the plan looked at.

use std::os::unix::fs::symlink;

use super::*;
use crate::policy::{HideRule, PathRule};
use crate::sandbox::mount::Node;

/// A canonical temporary root holding `ws/` and `home/`.
struct Root {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        let path = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(path.join("ws")).unwrap();
        std::fs::create_dir(path.join("home")).unwrap();
        Root { _dir: dir, path }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
    fn dir(&self, rel: &str) -> PathBuf {
        std::fs::create_dir_all(self.p(rel)).unwrap();
        self.p(rel)
    }
    fn file(&self, rel: &str) -> PathBuf {
        let p = self.p(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "x").unwrap();
        p
    }
    fn policy(&self) -> Policy {
        Policy::for_tests(&self.p("ws"), &self.p("home"))
    }
}

/// The `.env` scan as `mount::prepare` runs it.
fn scan(pol: &Policy) -> EnvScan {
    if pol.env_files.enabled {
        super::super::env_scan::scan(&pol.workspace, &pol.env_files).unwrap()
    } else {
        EnvScan::default()
    }
}

fn rule(path: PathBuf, access: Access, optional: bool) -> PathRule {
    PathRule {
        path,
        access,
        optional,
    }
}

fn bind_of<'a>(ops: &'a [Op], at: &Path) -> Option<(&'a PathBuf, bool, bool)> {
    ops.iter().find_map(|op| match op {
        Op::Bind {
            src,
            at: a,
            readonly,
            dir,
        } if a == at => Some((src, *readonly, *dir)),
        _ => None,
    })
}

#[test]
fn binds_show_each_path_once_parents_first() {
    let r = Root::new();
    let usr = r.dir("usr/bin");
    let usr = usr.parent().unwrap().to_path_buf();
    symlink("usr/bin", r.p("bin")).unwrap();
    let file = r.file("data/file");
    let elsewhere = r.dir("elsewhere");
    symlink(&elsewhere, r.p("link")).unwrap();
    let mut pol = r.policy();
    pol.paths = vec![
        rule(usr.clone(), Access::Read, true),
        rule(r.p("bin"), Access::Read, true),
        rule(file.clone(), Access::Write, true),
        rule(r.p("link"), Access::Read, true),
        rule(r.p("missing"), Access::Read, true),
    ];
    let b = binds(&pol).unwrap();
    let ops = &b.tree;

    assert_eq!(bind_of(ops, &usr), Some((&usr, true, true)));
    // A symlink to a directory that is bound anyway: the link, no bind of its own.
    assert!(ops.contains(&Op::Symlink {
        target: PathBuf::from("usr/bin"),
        at: r.p("bin"),
    }));
    assert_eq!(bind_of(ops, &usr.join("bin")), None);
    assert_eq!(bind_of(ops, &file), Some((&file, false, false)));
    // A symlink elsewhere: the link, and its target bound at its own path.
    assert!(ops.contains(&Op::Symlink {
        target: elsewhere.clone(),
        at: r.p("link"),
    }));
    assert_eq!(bind_of(ops, &elsewhere), Some((&elsewhere, true, true)));
    // An optional path that does not exist: nothing.
    assert!(ops.iter().all(|op| op.at() != r.p("missing")));
    // The workspace, writable; the private tmpfs mounts, /dev and /proc.
    let ws = r.p("ws");
    assert_eq!(bind_of(ops, &ws), Some((&ws, false, true)));
    for at in ["/tmp", "/dev", "/proc"] {
        assert!(ops.iter().any(|op| op.at() == Path::new(at)), "{at}");
    }
    assert!(ops.contains(&Op::Tmpfs {
        at: r.p("home"),
        size: pol.limits.home_size,
        mode: 0o700,
    }));
    // Parents before children.
    let depths: Vec<usize> = ops.iter().map(|op| depth(op.at())).collect();
    assert!(depths.windows(2).all(|w| w[0] <= w[1]), "{ops:?}");

    let mut read = b.visible.read.clone();
    read.sort();
    assert_eq!(read, vec![elsewhere, usr]);
    for w in [
        PathBuf::from("/tmp"),
        r.p("home"),
        PathBuf::from("/dev/shm"),
        file,
        ws,
    ] {
        assert!(b.visible.write.contains(&w), "{w:?}");
    }
}

#[test]
fn a_later_rule_for_the_same_path_wins() {
    let r = Root::new();
    let d = r.dir("tools");
    let mut pol = r.policy();
    pol.paths = vec![
        rule(d.clone(), Access::Read, true),
        rule(d.clone(), Access::Write, false),
    ];
    let b = binds(&pol).unwrap();
    assert_eq!(bind_of(&b.tree, &d), Some((&d, false, true)));
    let n = b.tree.iter().filter(|op| op.at() == d).count();
    assert_eq!(n, 1, "{:?}", b.tree);
    assert!(!b.visible.read.contains(&d) && b.visible.write.contains(&d));
}

#[test]
fn a_required_path_that_is_missing_is_an_error() {
    let r = Root::new();
    let mut pol = r.policy();
    pol.paths = vec![rule(r.p("nope"), Access::Read, false)];
    let err = binds(&pol).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("cannot read {}: ", r.p("nope").display())),
        "{err}"
    );
    // A dangling symlink: cannot be resolved.
    symlink(r.p("gone"), r.p("dangling")).unwrap();
    pol.paths = vec![rule(r.p("dangling"), Access::Read, false)];
    let err = binds(&pol).unwrap_err().to_string();
    assert!(err.starts_with("cannot resolve "), "{err}");
    pol.paths[0].optional = true;
    assert!(binds(&pol).is_ok());
}

#[test]
fn a_workspace_holding_the_home_directory_is_refused() {
    let r = Root::new();
    let mut pol = r.policy();
    pol.home = r.p("ws/me");
    let err = binds(&pol).unwrap_err().to_string();
    assert!(err.contains("contains the home directory"), "{err}");
    pol.home = r.p("home");
    pol.workspace = PathBuf::from("/");
    assert!(binds(&pol).is_err());
}

fn masks(plan: &MountPlan) -> Vec<(PathBuf, bool)> {
    plan.ops
        .iter()
        .filter_map(|op| match op {
            Op::Mask { at, dir } => Some((at.clone(), *dir)),
            _ => None,
        })
        .collect()
}

#[test]
fn secrets_inside_visible_trees_are_masked() {
    let r = Root::new();
    let etc = r.dir("etc/ssh");
    let etc = etc.parent().unwrap().to_path_buf();
    let key = r.file("etc/ssh/ssh_host_ed25519_key");
    r.file("etc/ssh/moduli");
    let shadow = r.file("etc/shadow");
    let ssh = r.dir("ws/.ssh");
    let outside = r.file("not-visible/secret");
    // A hidden path that is a symlink: its target is masked.
    let target = r.file("ws/real-secret");
    symlink(&target, r.p("ws/secret-link")).unwrap();
    let mut pol = r.policy();
    pol.paths = vec![rule(etc.clone(), Access::Read, true)];
    pol.hide = [
        etc.join("ssh/*key*"),
        shadow.clone(),
        ssh.clone(),
        outside,
        r.p("ws/secret-link"),
        r.p("etc/absent"),
    ]
    .into_iter()
    .map(|pattern| HideRule { pattern })
    .collect();
    let plan = finish(
        &pol,
        binds(&pol).unwrap(),
        Protection::default(),
        scan(&pol),
    );
    assert_eq!(
        masks(&plan),
        vec![(key, false), (shadow, false), (ssh, true), (target, false)]
    );
    // Masks come last, after every bind they cover.
    let first_mask = plan
        .ops
        .iter()
        .position(|op| matches!(op, Op::Mask { .. }))
        .unwrap();
    assert!(
        plan.ops[first_mask..]
            .iter()
            .all(|op| matches!(op, Op::Mask { .. }))
    );
}

#[test]
fn env_files_are_masked_in_the_whole_workspace() {
    let r = Root::new();
    let top = r.file("ws/.env");
    let sub = r.file("ws/app/.env.local");
    let deep = r.file("ws/a/b/c/.env");
    r.file("ws/.env.example");
    r.file("ws/node_modules/pkg/.env");
    let mut pol = r.policy();
    pol.env_files = crate::policy::EnvFileScan {
        enabled: true,
        max_depth: 64,
        skip_dirs: vec!["node_modules".into()],
        allow_names: vec![".env.example".into()],
        max_dirs: 100,
    };
    let plan = finish(
        &pol,
        binds(&pol).unwrap(),
        Protection::default(),
        scan(&pol),
    );
    let mut hidden = plan.env_scan.hidden.clone();
    hidden.sort();
    assert_eq!(hidden, vec![top.clone(), deep.clone(), sub.clone()]);
    let mut m = masks(&plan);
    m.sort();
    assert_eq!(m, vec![(top, false), (deep, false), (sub, false)]);

    pol.env_files.enabled = false;
    let plan = finish(
        &pol,
        binds(&pol).unwrap(),
        Protection::default(),
        scan(&pol),
    );
    assert!(masks(&plan).is_empty());
    assert_eq!(plan.env_scan, EnvScan::default());
}

#[test]
fn env_links_are_masked_with_their_targets_in_the_workspace() {
    let r = Root::new();
    let secret = r.file("ws/config/production");
    let outside = r.file("home/secrets/prod.env");
    let link = r.p("ws/.env");
    symlink("config/production", &link).unwrap();
    let link2 = r.p("ws/app/.env.local");
    std::fs::create_dir(r.p("ws/app")).unwrap();
    symlink(&outside, &link2).unwrap();
    let mut pol = r.policy();
    pol.env_files.enabled = true;
    pol.env_files.max_depth = 64;
    pol.env_files.max_dirs = 100;
    let plan = finish(
        &pol,
        binds(&pol).unwrap(),
        Protection::default(),
        scan(&pol),
    );
    let mut m = masks(&plan);
    m.sort();
    // Both links, and the target inside the workspace; not the one outside it.
    assert_eq!(
        m,
        vec![(link, false), (link2, false), (secret.clone(), false)]
    );
    assert_eq!(plan.env_scan.link_targets, vec![secret]);
}

#[test]
fn protected_paths_are_bound_read_only_and_their_parents_pinned() {
    let r = Root::new();
    let ws = r.p("ws");
    let hooks = r.dir("ws/.git/hooks");
    let env = r.file("ws/deep/er/.env");
    let mut pol = r.policy();
    pol.hide = vec![HideRule {
        pattern: hooks.clone(),
    }];
    pol.env_files.enabled = true;
    pol.env_files.max_depth = 64;
    pol.env_files.max_dirs = 100;
    let protection = Protection::for_tests(vec![(hooks.clone(), Node::Dir)]);
    let plan = finish(&pol, binds(&pol).unwrap(), protection, scan(&pol));
    let protect: Vec<&Op> = plan
        .ops
        .iter()
        .filter(|op| matches!(op, Op::Protect { .. }))
        .collect();
    assert_eq!(
        protect,
        vec![&Op::Protect {
            ws: ws.clone(),
            at: hooks.clone(),
            node: Node::Dir,
        }]
    );
    // A hidden path that is also protected: the read-only bind only.
    assert_eq!(masks(&plan), vec![(env, false)]);
    let mut pins: Vec<&PathBuf> = plan
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Pin { at } => Some(at),
            _ => None,
        })
        .collect();
    pins.sort();
    assert_eq!(
        pins,
        vec![&ws.join(".git"), &ws.join("deep"), &ws.join("deep/er")]
    );
    // Each pin is made after the bind of the workspace and before any mask.
    let pos = |f: &dyn Fn(&Op) -> bool| plan.ops.iter().position(f).unwrap();
    let ws_bind = pos(&|op| op.at() == ws);
    let first_pin = pos(&|op| matches!(op, Op::Pin { .. }));
    let first_mask = pos(&|op| matches!(op, Op::Protect { .. }));
    assert!(
        ws_bind < first_pin && first_pin < first_mask,
        "{:?}",
        plan.ops
    );

    // A read-only workspace cannot be rearranged: no pins.
    pol.workspace_access = Access::Read;
    let plan = finish(
        &pol,
        binds(&pol).unwrap(),
        Protection::default(),
        scan(&pol),
    );
    assert!(!plan.ops.iter().any(|op| matches!(op, Op::Pin { .. })));
}

#[test]
fn generated_files_go_only_where_the_host_is_not_touched() {
    let r = Root::new();
    let etc = r.dir("etc");
    let conf = r.file("etc/tool.conf");
    symlink(&conf, r.p("etc/link.conf")).unwrap();
    let mut pol = r.policy();
    pol.paths = vec![rule(etc.clone(), Access::Read, true)];
    let b = binds(&pol).unwrap();
    let mut plan = finish(&pol, b, Protection::default(), scan(&pol));
    let home = r.p("home");
    let ws = r.p("ws");
    // Over an existing host file under a read-only bind; in the home tmpfs;
    // in the new root itself.
    for at in [
        conf.clone(),
        home.join(".tool/rc"),
        PathBuf::from("/.shellcage/hook"),
    ] {
        plan.add_file(&at, b"x=1\n".to_vec(), 0o644).unwrap();
        assert!(plan.visible.read.contains(&at), "{}", at.display());
    }
    // Refused: a missing file under a read-only bind (its mountpoint would be
    // a new host file), a symlink, anything in the writable workspace, a
    // relative or dotted path, a file over 1 MiB.
    for at in [
        etc.join("missing.conf"),
        etc.join("link.conf"),
        ws.join("x"),
        PathBuf::from("rel/x"),
        home.join("../x"),
    ] {
        assert!(
            plan.add_file(&at, b"x".to_vec(), 0o444).is_err(),
            "{}",
            at.display()
        );
    }
    assert!(
        plan.add_file(
            &home.join("big"),
            vec![0; super::super::MAX_FILE + 1],
            0o444
        )
        .is_err()
    );
    // Modes lose their write bits; a later file replaces an earlier one.
    plan.add_file(&conf, b"y=2\n".to_vec(), 0o666).unwrap();
    let files: Vec<_> = plan
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::File { at, bytes, mode } => Some((at.clone(), bytes.clone(), *mode)),
            _ => None,
        })
        .collect();
    assert_eq!(files.len(), 3);
    assert_eq!(
        files.last().unwrap(),
        &(conf.clone(), b"y=2\n".to_vec(), 0o444)
    );
}

#[test]
fn a_generated_file_replaces_the_mask_of_a_hidden_file() {
    let r = Root::new();
    let rc = r.file("home/.toolrc");
    let mut pol = r.policy();
    pol.paths = vec![rule(r.p("home"), Access::Read, true)];
    pol.hide = vec![HideRule {
        pattern: rc.clone(),
    }];
    // (home is both the tmpfs and a read-only bind here: the bind is deeper in
    // the op list, so the file counts as under a read-only bind.)
    let b = binds(&pol).unwrap();
    let mut plan = finish(&pol, b, Protection::default(), scan(&pol));
    assert!(plan.ops.contains(&Op::Mask {
        at: rc.clone(),
        dir: false
    }));
    plan.add_file(&rc, b"ok\n".to_vec(), 0o444).unwrap();
    assert!(
        !plan
            .ops
            .iter()
            .any(|op| matches!(op, Op::Mask { at, .. } if at == &rc))
    );
}

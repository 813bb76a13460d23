use std::path::Path;

use super::*;
use crate::policy::{Access, Policy};

fn pol(ws: &str) -> Policy {
    let mut p = Policy::for_tests(Path::new(ws), Path::new("/home/u"));
    p.hide.push(HideRule {
        pattern: "/home/u/.ssh".into(),
    });
    p.protect.push(".git/hooks".into());
    p
}

#[test]
fn a_home_per_workspace_profile_and_privileges() {
    let root = Path::new("/s/homes");
    let base = home_dir(root, &pol("/w/a"));
    assert_eq!(base, home_dir(root, &pol("/w/a")), "stable");
    assert!(base.starts_with(workspace_dir(root, Path::new("/w/a"))));
    assert_ne!(base, home_dir(root, &pol("/w/b")), "another workspace");
    let mut p = pol("/w/a");
    p.profile = "other".into();
    assert_ne!(base, home_dir(root, &p), "another profile");
    // Every change of what the command may reach is another home.
    type Change = Box<dyn Fn(&mut Policy)>;
    let changes: Vec<Change> = vec![
        Box::new(|p| p.network = NetMode::Host),
        Box::new(|p| p.network = NetMode::Loopback),
        Box::new(|p| {
            p.paths.push(PathRule {
                path: "/srv".into(),
                access: Access::Write,
                optional: false,
            })
        }),
        Box::new(|p| p.hide.clear()),
        Box::new(|p| p.protect.clear()),
        Box::new(|p| p.env_files.enabled = !p.env_files.enabled),
        Box::new(|p| p.env.explicit.push(("GITHUB_TOKEN".into(), None))),
        Box::new(|p| p.env.pass.push("AWS_*".into())),
        Box::new(|p| p.env.tools = !p.env.tools),
        Box::new(|p| p.workspace_access = Access::Read),
    ];
    for (i, change) in changes.iter().enumerate() {
        let mut p = pol("/w/a");
        change(&mut p);
        assert_ne!(base, home_dir(root, &p), "change {i}");
    }
    // Not a privilege: limits, the report, an --env value.
    let mut p = pol("/w/a");
    p.limits.timeout = Some(std::time::Duration::from_secs(5));
    p.report = true;
    assert_eq!(base, home_dir(root, &p));
    let (mut a, mut b) = (pol("/w/a"), pol("/w/a"));
    a.env.explicit.push(("X".into(), Some("1".into())));
    b.env.explicit.push(("X".into(), Some("2".into())));
    assert_eq!(home_dir(root, &a), home_dir(root, &b));
}

#[test]
fn names_are_path_free() {
    let root = Path::new("/s");
    let p = workspace_dir(root, Path::new("/w/../.x y/$(id)"));
    let name = p.file_name().unwrap().to_str().unwrap();
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'),
        "{name}"
    );
    assert!(!name.starts_with('.'));
    let mut pol = pol("/w/a");
    pol.profile = "../../etc/x.toml".into();
    let h = home_dir(root, &pol);
    assert_eq!(h.parent().unwrap().parent().unwrap(), root);
}

#[test]
fn usage_counts_without_following_symlinks_and_reset_removes_them_only() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), vec![7u8; 64 << 10]).unwrap();
    let home = t.path().join("ws-0/dev-0");
    let cache = home.join("cache");
    std::fs::create_dir_all(cache.join("d")).unwrap();
    std::fs::write(cache.join("d/f"), vec![1u8; 32 << 10]).unwrap();
    std::os::unix::fs::symlink(&outside, cache.join("link")).unwrap();
    // A directory the command made unreadable.
    std::fs::create_dir(cache.join("locked")).unwrap();
    std::fs::write(cache.join("locked/x"), b"x").unwrap();
    std::fs::set_permissions(
        cache.join("locked"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let n = usage(&home, USAGE_CAP);
    assert!((32 << 10..64 << 10).contains(&n), "{n}");
    let listed = Listed {
        dir: home.clone(),
        meta: None,
        bytes: n,
    };
    reset(&[listed]).unwrap();
    assert!(!home.exists());
    assert!(
        !t.path().join("ws-0").exists(),
        "empty workspace dir removed"
    );
    assert_eq!(std::fs::read(outside.join("keep")).unwrap().len(), 64 << 10);
}

#[test]
fn a_visible_store_is_refused() {
    let mut p = pol("/w/a");
    p.home = "/home/u".into();
    let root = Path::new("/home/u/.local/state/shellcage/homes");
    assert!(check_hidden(root, &p).is_ok());
    p.paths.push(PathRule {
        path: "/home/u/.local".into(),
        access: Access::Read,
        optional: true,
    });
    let err = check_hidden(root, &p).unwrap_err().to_string();
    assert!(err.contains("would be visible"), "{err}");
    let mut p = pol("/home/u/.local/state/shellcage/homes/x");
    p.home = "/home/u".into();
    assert!(
        check_hidden(root, &p).is_err(),
        "workspace inside the store"
    );
}

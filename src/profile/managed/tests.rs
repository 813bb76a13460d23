use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::policy::{Access, PathRule, Policy, Requirement};

fn floor(text: &str) -> Floor {
    parse(text, "/etc/shellcage/managed.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    parse(text, "/etc/shellcage/managed.toml")
        .unwrap_err()
        .to_string()
}

fn policy() -> Policy {
    Policy::for_tests(Path::new("/work/proj"), Path::new("/home/u"))
}

fn refused(f: &Floor, p: &mut Policy, asked: &Asked) -> String {
    let e = f.apply(p, asked).unwrap_err();
    assert!(matches!(e, FloorError::Loosens { .. }), "{e}");
    e.to_string()
}

#[test]
fn every_key_parses_with_its_line() {
    let f = floor(
        r#"version = 1
hide = ["~/.aws", "/srv/secrets/*key*"]
protect = [".github/workflows"]
network_modes = ["none", "loopback"]
allow_hosts = ["*.example.com", "git.example.org:22"]
deny_hosts = ["metadata.example.internal"]
tiers = ["full"]
workspace_modes = ["write", "overlay"]
write_roots = ["~", "/srv/work"]
env_pass = ["GIT_*", "CARGO_TERM_COLOR"]
max_timeout = "1h"
audit = "/var/log/shellcage/audit.log"
profiles = ["dev", "ci", "/etc/shellcage/profiles/team.toml"]
landlock = "required"
env_files = "required"
"#,
    );
    assert_eq!(f.network_modes.as_ref().unwrap().line, 4);
    assert_eq!(
        f.network_modes.as_ref().unwrap().written,
        r#"["none", "loopback"]"#
    );
    assert_eq!(
        f.max_timeout.as_ref().unwrap().value,
        Duration::from_secs(3600)
    );
    assert_eq!(f.audit.as_ref().unwrap().line, 12);
    assert_eq!(f.tiers.as_ref().unwrap().value, vec![TierChoice::Full]);
    let shown = render(Some(&f), None);
    assert!(shown.contains("/etc/shellcage/managed.toml:11"), "{shown}");
}

#[test]
fn bad_floors_name_file_line_key_and_value() {
    let e = err("version = 1\nnetwork_mode = [\"none\"]\n");
    assert!(
        e.contains("/etc/shellcage/managed.toml") && e.contains("network_mode"),
        "{e}"
    );
    let e = err("version = 2\n");
    assert!(e.contains(":1: version = 2"), "{e}");
    let e = err("version = 1\n\nnetwork_modes = [\"none\", \"everything\"]\n");
    assert!(
        e.contains(":3: network_modes = \"everything\": unknown network mode"),
        "{e}"
    );
    assert!(err("version = 1\ntiers = [\"auto\"]\n").contains("auto is narrowed"));
    assert!(err("version = 1\ntiers = []\n").contains("would refuse every run"));
    assert!(err("version = 1\nprofiles = []\n").contains("would refuse every run"));
    assert!(err("version = 1\nprofiles = [\"mine\"]\n").contains("not a built-in profile"));
    assert!(err("version = 1\nenv_pass = [\"*\"]\n").contains("every variable"));
    assert!(err("version = 1\naudit = \"log/audit.log\"\n").contains("absolute"));
    assert!(err("version = 1\naudit = \"~/audit.log\"\n").contains("absolute"));
    assert!(err("version = 1\nwrite_roots = [\"{workspace}\"]\n").contains("not a root"));
    assert!(err("version = 1\nhide = [\"/a/*/b\"]\n").contains("last path component"));
    assert!(err("version = 1\nhide = [\"/\"]\n").contains("root directory"));
    assert!(err("version = 1\nprotect = [\"../x\"]\n").contains("'..'"));
    assert!(err("version = 1\nallow_hosts = [\"*\"]\n").contains("invalid network allow entry"));
    assert!(err("version = 1\nmax_timeout = \"0s\"\n").contains("longer than 0"));
    assert!(err("version = 1\nlandlock = \"best-effort\"\n").contains("required"));
    assert!(err("hide = []\n").contains("version"));
}

#[test]
fn network_modes_and_host_past_an_allowlist() {
    let f = floor("version = 1\nnetwork_modes = [\"none\", \"loopback\"]\n");
    let mut p = policy();
    p.network = NetMode::Host;
    let asked = Asked {
        net: Some("--net host".into()),
        ..Asked::default()
    };
    let e = refused(&f, &mut p, &asked);
    assert!(
        e.contains("managed.toml:2: network_modes = [\"none\", \"loopback\"]: network mode host (--net host) is not one of them"),
        "{e}"
    );
    p.network = NetMode::Loopback;
    f.apply(&mut p, &asked).unwrap();

    // Allowlists cannot hold on the host's network, even when modes are not limited.
    for text in [
        "version = 1\nallow_hosts = [\"*.example.com\"]\n",
        "version = 1\ndeny_hosts = [\"metadata.example.internal\"]\n",
    ] {
        let mut p = policy();
        p.network = NetMode::Host;
        let e = refused(&floor(text), &mut p, &Asked::default());
        assert!(e.contains("reaches every host"), "{e}");
    }
}

#[test]
fn allow_hosts_is_the_widest_list() {
    let f = floor(
        "version = 1\nallow_hosts = [\"*.example.com\", \"git.example.org:22\", \"pkgs.example.net\"]\n",
    );
    let ok = |e: &str| {
        f.check_allow_entries(&[(e.into(), "--allow-host".into())])
            .is_ok()
    };
    assert!(ok("a.example.com"));
    assert!(ok("*.b.example.com"));
    assert!(ok("*.example.com"));
    assert!(ok("a.example.com:443"));
    assert!(ok("git.example.org:22"));
    assert!(ok("pkgs.example.net"));
    assert!(ok("pkgs.example.net:80"));
    assert!(!ok("example.com"), "*. does not cover the name itself");
    assert!(!ok("a.example.com:22"), "default ports are 80 and 443");
    assert!(!ok("git.example.org"), "only port 22 is allowed there");
    assert!(!ok("pkgs.example.net:8080"));
    assert!(!ok("evil.example"));
    assert!(!ok("10.0.0.1"));
    assert!(!ok("*.com"));
    let e = f
        .check_allow_entries(&[("evil.example".into(), "--allow-host evil.example".into())])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("allow_hosts = [")
            && e.contains("evil.example (--allow-host evil.example) is not inside it"),
        "{e}"
    );
}

#[test]
fn tiers_refuse_or_narrow() {
    let f = floor("version = 1\ntiers = [\"full\"]\n");
    let mut p = policy();
    p.tier = TierChoice::Container;
    let asked = Asked {
        tier: Some("SHELLCAGE_TIER=container".into()),
        ..Asked::default()
    };
    let e = refused(&f, &mut p, &asked);
    assert!(
        e.contains("tier container (SHELLCAGE_TIER=container) is not one of them"),
        "{e}"
    );
    p.tier = TierChoice::Auto;
    let applied = f.apply(&mut p, &asked).unwrap();
    assert_eq!(p.tier, TierChoice::Full);
    assert!(applied.notes[0].contains("auto -> full"));
    let both = floor("version = 1\ntiers = [\"full\", \"container\"]\n");
    p.tier = TierChoice::Auto;
    both.apply(&mut p, &asked).unwrap();
    assert_eq!(p.tier, TierChoice::Auto);
}

#[test]
fn write_roots_hold_for_flags_profiles_and_the_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let ws = root.join("ws");
    let outside = root.join("outside");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    // A symlink inside the root that leads out of it.
    std::os::unix::fs::symlink(&outside, ws.join("link")).unwrap();
    let f = floor(&format!(
        "version = 1\nwrite_roots = [\"{}\"]\n",
        ws.display()
    ));
    let mut p = Policy::for_tests(&ws, Path::new("/home/u"));
    f.apply(&mut p, &Asked::default()).unwrap();

    for path in [
        PathBuf::from("/"),
        outside.clone(),
        ws.join("link"),
        ws.join("link/missing"),
    ] {
        let mut p = Policy::for_tests(&ws, Path::new("/home/u"));
        p.paths.push(PathRule {
            path: path.clone(),
            access: Access::Write,
            optional: false,
        });
        let asked = Asked {
            flags: vec![(path.clone(), format!("--write {}", path.display()))],
            ..Asked::default()
        };
        let e = refused(&f, &mut p, &asked);
        assert!(
            e.contains(&format!("--write {} is outside them", path.display())),
            "{e}"
        );
    }
    // Read-only paths are not writes.
    let mut p = Policy::for_tests(&ws, Path::new("/home/u"));
    p.paths.push(PathRule {
        path: outside.clone(),
        access: Access::Read,
        optional: false,
    });
    f.apply(&mut p, &Asked::default()).unwrap();
    // A writable workspace outside the roots is a write outside them.
    let mut p = Policy::for_tests(&outside, Path::new("/home/u"));
    let e = refused(
        &f,
        &mut p,
        &Asked {
            workspace: "--workspace /x".into(),
            ..Asked::default()
        },
    );
    assert!(
        e.contains("the writable workspace") && e.contains("(--workspace /x)"),
        "{e}"
    );
    p.workspace_access = Access::Read;
    f.apply(&mut p, &Asked::default()).unwrap();
}

#[test]
fn env_pass_default_refuses_secret_names() {
    let none = floor("version = 1\n");
    let secret = crate::sandbox::env::is_secret_name;
    let mut p = policy();
    p.env.explicit = vec![("GIT_EDITOR".into(), None)];
    none.apply(&mut p, &Asked::default()).unwrap();
    none.check_env_secrets(&p, secret).unwrap();
    p.env.explicit = vec![("AWS_SECRET_ACCESS_KEY".into(), None)];
    let e = none.check_env_secrets(&p, secret).unwrap_err().to_string();
    assert!(
        e.contains("env_pass = (not set)") && e.contains("--env AWS_SECRET_ACCESS_KEY"),
        "{e}"
    );
    let listed = floor("version = 1\nenv_pass = [\"GIT_*\", \"NPM_TOKEN\"]\n");
    p.env.explicit = vec![
        ("NPM_TOKEN".into(), None),
        ("GIT_EDITOR".into(), Some("true".into())),
    ];
    listed.apply(&mut p, &Asked::default()).unwrap();
    listed.check_env_secrets(&p, secret).unwrap();
    p.env.explicit = vec![("FOO".into(), Some("1".into()))];
    let e = refused(&listed, &mut p, &Asked::default());
    assert!(e.contains("--env FOO is not one of them"), "{e}");
}

#[test]
fn max_timeout_sets_or_refuses() {
    let f = floor("version = 1\nmax_timeout = \"1h\"\n");
    let mut p = policy();
    f.apply(&mut p, &Asked::default()).unwrap();
    assert_eq!(p.limits.timeout, Some(Duration::from_secs(3600)));
    p.limits.timeout = Some(Duration::from_secs(600));
    f.apply(&mut p, &Asked::default()).unwrap();
    assert_eq!(p.limits.timeout, Some(Duration::from_secs(600)));
    p.limits.timeout = Some(Duration::from_secs(7200));
    let e = refused(
        &f,
        &mut p,
        &Asked {
            timeout: Some("--timeout 2h".into()),
            ..Asked::default()
        },
    );
    assert!(
        e.contains("max_timeout = \"1h\": a timeout of 7200s (--timeout 2h) is longer"),
        "{e}"
    );
}

#[test]
fn hide_and_protect_are_added_and_win() {
    let f = floor(
        "version = 1\nhide = [\"~/.aws\", \"/srv/secret\", \"{workspace}/deploy-keys\"]\nprotect = [\".github/workflows\"]\n",
    );
    let mut p = policy();
    p.paths.push(PathRule {
        path: "/srv/secret/x".into(),
        access: Access::Read,
        optional: true,
    });
    p.paths.push(PathRule {
        path: "/usr".into(),
        access: Access::Read,
        optional: true,
    });
    let applied = f.apply(&mut p, &Asked::default()).unwrap();
    let patterns: Vec<_> = p.hide.iter().map(|h| h.pattern.clone()).collect();
    assert!(
        patterns.contains(&PathBuf::from("/home/u/.aws")),
        "{patterns:?}"
    );
    assert!(patterns.contains(&PathBuf::from("/srv/secret")));
    assert!(patterns.contains(&PathBuf::from("/work/proj/deploy-keys")));
    assert!(p.protect.contains(&PathBuf::from(".github/workflows")));
    // The profile's path below a managed hide is not mounted at all.
    assert!(!p.paths.iter().any(|r| r.path == Path::new("/srv/secret/x")));
    assert!(p.paths.iter().any(|r| r.path == Path::new("/usr")));
    assert!(
        applied
            .notes
            .iter()
            .any(|n| n.contains("/srv/secret/x not mounted"))
    );

    // A flag's path below it is refused.
    let mut p = policy();
    p.paths.push(PathRule {
        path: "/srv/secret".into(),
        access: Access::Read,
        optional: false,
    });
    let asked = Asked {
        flags: vec![("/srv/secret".into(), "--read /srv/secret".into())],
        ..Asked::default()
    };
    let e = refused(&f, &mut p, &asked);
    assert!(
        e.contains("--read /srv/secret is hidden by /srv/secret"),
        "{e}"
    );

    // A workspace inside a managed hide.
    let mut p = Policy::for_tests(Path::new("/srv/secret/repo"), Path::new("/home/u"));
    let e = refused(&f, &mut p, &Asked::default());
    assert!(e.contains("the workspace /srv/secret/repo"), "{e}");
}

#[test]
fn profiles_landlock_env_files_and_workspace_modes() {
    let f = floor(
        "version = 1\nprofiles = [\"dev\", \"ci\"]\nlandlock = \"required\"\nenv_files = \"required\"\nworkspace_modes = [\"read\"]\n",
    );
    let mut p = policy();
    p.source = "builtin:dev".into();
    p.env_files.enabled = true;
    p.workspace_access = Access::Read;
    f.apply(&mut p, &Asked::default()).unwrap();

    let mut user = p.clone();
    user.source = "/home/u/.config/shellcage/profiles/mine.toml".into();
    user.profile_chain = crate::policy::ProfileChain(vec![
        (user.source.clone(), String::new()),
        ("builtin:dev".into(), String::new()),
    ]);
    let asked = Asked {
        profile: "--profile mine".into(),
        ..Asked::default()
    };
    let e = refused(&f, &mut user, &asked);
    assert!(e.contains("profiles = [\"dev\", \"ci\"]: /home/u/.config/shellcage/profiles/mine.toml (--profile mine) is not one of them"), "{e}");

    let mut q = p.clone();
    q.landlock = Requirement::BestEffort;
    assert!(refused(&f, &mut q, &Asked::default()).contains("landlock = \"required\""));
    let mut q = p.clone();
    q.env_files.enabled = false;
    assert!(refused(&f, &mut q, &Asked::default()).contains("env_files = \"required\""));
    let mut q = p.clone();
    q.workspace_access = Access::Write;
    let e = refused(&f, &mut q, &Asked::default());
    assert!(e.contains("workspace mode write"), "{e}");
    // An overlay workspace is its own mode: a floor can require it, or refuse it.
    q.workspace_layer = Some("default".into());
    let e = refused(&f, &mut q, &Asked::default());
    assert!(e.contains("workspace mode overlay"), "{e}");
    let only_overlay = floor("version = 1\nworkspace_modes = [\"overlay\"]\n");
    only_overlay.apply(&mut q, &Asked::default()).unwrap();
    let mut w = q.clone();
    w.workspace_layer = None;
    assert!(refused(&only_overlay, &mut w, &Asked::default()).contains("workspace mode write"));
}

#[test]
fn audit_elsewhere_is_refused_and_the_log_must_be_append_only() {
    let f = floor("version = 1\naudit = \"/nonexistent/shellcage/audit.log\"\n");
    let mut p = policy();
    p.audit = Some("/tmp/mine.log".into());
    let e = refused(
        &f,
        &mut p,
        &Asked {
            audit: Some("--audit /tmp/mine.log".into()),
            ..Asked::default()
        },
    );
    assert!(
        e.contains("--audit /tmp/mine.log would log this run elsewhere"),
        "{e}"
    );
    p.audit = None;
    let e = refused(&f, &mut p, &Asked::default());
    assert!(
        e.contains("does not exist") && e.contains("chattr +a"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    std::fs::write(&log, "").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let f = floor(&format!("version = 1\naudit = \"{}\"\n", log.display()));
    let mut p = policy();
    let e = refused(&f, &mut p, &Asked::default());
    if nix::unistd::getuid().is_root() {
        assert!(
            e.contains("is not append-only") && e.contains("chattr +a"),
            "{e}"
        );
        let chattr = |flag: &str| {
            std::process::Command::new("chattr")
                .arg(flag)
                .arg(&log)
                .status()
                .unwrap()
                .success()
        };
        assert!(chattr("+a"));
        let applied = f.apply(&mut p, &Asked::default());
        chattr("-a");
        applied.unwrap();
        assert_eq!(p.audit.as_deref(), Some(log.as_path()));
    } else {
        assert!(e.contains("not a regular file owned by root"), "{e}");
    }
}

#[test]
fn only_root_owned_files_are_trusted() {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.path().join("managed.toml");
    std::fs::write(&file, "version = 1\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let shown = file.display().to_string();
    let r = trusted(&file, &shown);
    if nix::unistd::getuid().is_root() {
        r.unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = trusted(&file, &shown).unwrap_err().to_string();
        assert!(
            e.contains("writable by everyone (mode 0666)") && e.contains("chmod go-w"),
            "{e}"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
        let e = trusted(&file, &shown).unwrap_err().to_string();
        assert!(
            e.contains("directory") && e.contains("writable by its group"),
            "{e}"
        );
        nix::unistd::chown(dir.path(), Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = trusted(&file, &shown).unwrap_err().to_string();
        assert!(e.contains("owned by uid 65534, not root"), "{e}");
    } else {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("not root") && e.contains("nothing runs"), "{e}");
    }
}

#[test]
fn the_proxys_lists_stay_inside_the_floor() {
    let f = floor(
        "version = 1\nallow_hosts = [\"*.example.com\"]\nallow_private = [\"10.0.0.0/8\"]\ndeny_hosts = [\"metadata.example.internal\"]\n",
    );
    let mut p = policy();
    p.network = NetMode::Proxy;
    p.egress.allow = vec!["pkgs.example.com".into(), "evil.example.net".into()];
    let asked = Asked {
        allow_host: vec!["evil.example.net".into()],
        ..Asked::default()
    };
    let e = refused(&f, &mut p, &asked);
    assert!(
        e.contains("evil.example.net (--allow-host evil.example.net) is not inside it"),
        "{e}"
    );
    p.egress.allow = vec!["pkgs.example.com".into()];
    p.egress.allow_private = vec!["10.1.0.0/16".into()];
    f.apply(&mut p, &asked).unwrap();
    assert_eq!(p.egress.deny, vec!["metadata.example.internal".to_string()]);
    p.egress.allow_private = vec!["192.168.0.0/16".into()];
    let e = refused(&f, &mut p, &asked);
    assert!(
        e.contains("allow_private = [\"10.0.0.0/8\"]") && e.contains("192.168.0.0/16"),
        "{e}"
    );
    p.egress.allow_private = vec!["10.0.0.0/7".into()];
    refused(&f, &mut p, &asked);
    // allow_hosts without allow_private: no private block at all.
    let g = floor("version = 1\nallow_hosts = [\"*.example.com\"]\n");
    p.egress.allow_private = vec!["10.1.0.0/16".into()];
    let e = refused(&g, &mut p, &asked);
    assert!(e.contains("allow_hosts = [\"*.example.com\"]"), "{e}");
}

#[test]
fn devices_can_be_forbidden_for_profiles_and_flags() {
    let none = floor("version = 1\n\ndevices = []\n");
    let gpu = floor("version = 1\ndevices = [\"gpu\"]\n");
    assert_eq!(none.devices.as_ref().unwrap().line, 3);
    // Nothing asked: nothing refused.
    let mut p = policy();
    none.apply(&mut p, &Asked::default()).unwrap();
    // A profile's gpu = true, then --gpu: both refused, each named.
    let mut p = policy();
    p.devices.gpu = true;
    let e = refused(&none, &mut p, &Asked::default());
    assert!(
        e.contains(":3: devices = []") && e.contains("devices.gpu = true"),
        "{e}"
    );
    let mut p = policy();
    p.devices.gpu = true;
    p.devices.gpu_from_command_line = true;
    let asked = Asked {
        gpu: true,
        ..Asked::default()
    };
    let e = refused(&none, &mut p, &asked);
    assert!(
        e.contains("--gpu would expose") && e.contains("drop --gpu"),
        "{e}"
    );
    // Listed: allowed.
    gpu.apply(&mut p, &asked).unwrap();
    assert!(p.devices.gpu);
    // Unknown classes are an error with the line.
    let e = err("version = 1\ndevices = [\"kvm\"]\n");
    assert!(
        e.contains(":2: devices = \"kvm\": unknown device class"),
        "{e}"
    );
    assert!(render(Some(&none), None).contains("devices"));
}

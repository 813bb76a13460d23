use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

const GOLDEN: &str = "\
# AppArmor profile for shellcage at /usr/local/bin/shellcage, written by 'shellcage setup apparmor'.
#
# It confines nothing (flags=(unconfined)): it exists only to grant the
# creation of user namespaces (userns), which Ubuntu 23.10 and later deny to
# programs without such a profile (kernel.apparmor_restrict_unprivileged_userns=1).
# shellcage builds its sandbox in user namespaces; every command it runs is
# then confined by shellcage's own layers (seccomp forbids new namespaces).
# Remove this file and run 'apparmor_parser -R' on it to undo.

abi <abi/4.0>,
include <tunables/global>

profile usr.local.bin.shellcage /usr/local/bin/shellcage flags=(unconfined) {
  userns,

  # Site-specific additions and overrides. See local/README for details.
  include if exists <local/usr.local.bin.shellcage>
}
";

#[test]
fn golden_profile() {
    let text = render_profile(Path::new("/usr/local/bin/shellcage")).unwrap();
    assert_eq!(text, GOLDEN);
}

#[test]
fn names_and_quoting() {
    assert_eq!(
        profile_name(Path::new("/home/ann/.cargo/bin/shellcage")),
        "home.ann..cargo.bin.shellcage"
    );
    let text = render_profile(Path::new("/opt/my tools/shellcage")).unwrap();
    assert!(text.contains(
        "profile opt.my_tools.shellcage \"/opt/my tools/shellcage\" flags=(unconfined) {"
    ));
    assert!(text.contains("include if exists <local/opt.my_tools.shellcage>"));
    assert_eq!(
        setup_command(Path::new("/opt/my tools/shellcage")),
        "sudo '/opt/my tools/shellcage' setup apparmor"
    );
    assert_eq!(
        setup_command(Path::new("/usr/local/bin/shellcage")),
        "sudo /usr/local/bin/shellcage setup apparmor"
    );
}

#[test]
fn pattern_characters_in_the_path_are_refused() {
    for bad in [
        "/opt/*/shellcage",
        "/opt/a?b/shellcage",
        "/opt/[x]/shellcage",
        "/opt/{a,b}/shellcage",
        "/opt/@{HOME}/shellcage",
        "/opt/a\"b/shellcage",
        "/opt/a\\b/shellcage",
        "/opt/a#b/shellcage",
        "/opt/a,b/shellcage",
        "/opt/a\nb/shellcage",
        "relative/shellcage",
    ] {
        let err = render_profile(Path::new(bad)).unwrap_err();
        assert!(
            matches!(err, AppArmorError::BadPath { .. }),
            "{bad:?}: {err}"
        );
    }
    let err = render_profile(Path::new("/opt/*/shellcage")).unwrap_err();
    assert!(err.to_string().contains("'*'"), "{err}");
}

/// A simulated host's files below a temporary root.
fn host(files: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = root.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    root
}

const EXE: &str = "/usr/local/bin/shellcage";

fn ubuntu_2404(extra: &[(&'static str, &'static str)]) -> tempfile::TempDir {
    let mut files = vec![
        (
            "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1\n",
        ),
        ("proc/sys/user/max_user_namespaces", "127431\n"),
        ("sys/module/apparmor/parameters/enabled", "Y\n"),
        ("sys/kernel/security/apparmor/profiles", ""),
        ("proc/self/attr/apparmor/current", "unconfined\n"),
    ];
    files.extend_from_slice(extra);
    host(&files)
}

#[test]
fn ubuntu_restriction_is_detected_with_the_setup_command() {
    let root = ubuntu_2404(&[]);
    let d = diagnose(root.path(), 1000, Path::new(EXE));
    assert!(d.apparmor_enabled);
    assert_eq!(d.apparmor_restrict, Some(true));
    assert_eq!(d.apparmor_label.as_deref(), Some("unconfined"));
    assert!(!d.confined_by_our_profile);
    assert_eq!(d.blockers.len(), 1);
    let b = &d.blockers[0];
    assert_eq!(b.setting, "kernel.apparmor_restrict_unprivileged_userns=1");
    assert_eq!(b.fix, "sudo /usr/local/bin/shellcage setup apparmor");
}

#[test]
fn our_profile_loaded_or_root_lifts_the_restriction() {
    // The label the kernel shows once the profile is loaded and attached.
    let root = ubuntu_2404(&[(
        "proc/self/attr/apparmor/current",
        "usr.local.bin.shellcage (unconfined)\n",
    )]);
    let d = diagnose(root.path(), 1000, Path::new(EXE));
    assert!(d.confined_by_our_profile);
    assert!(d.blockers.is_empty(), "{d:?}");
    // Another copy's profile does not count.
    let d = diagnose(
        root.path(),
        1000,
        Path::new("/home/ann/.cargo/bin/shellcage"),
    );
    assert_eq!(d.blockers.len(), 1);
    assert_eq!(
        d.blockers[0].fix,
        "sudo /home/ann/.cargo/bin/shellcage setup apparmor"
    );
    // Root is not subject to the restriction.
    let root = ubuntu_2404(&[]);
    assert!(diagnose(root.path(), 0, Path::new(EXE)).blockers.is_empty());
}

#[test]
fn older_kernels_expose_the_label_in_attr_current() {
    let root = host(&[
        (
            "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1\n",
        ),
        ("sys/module/apparmor/parameters/enabled", "Y\n"),
        (
            "proc/self/attr/current",
            "usr.local.bin.shellcage (unconfined)\n",
        ),
    ]);
    let d = diagnose(root.path(), 1000, Path::new(EXE));
    assert!(d.confined_by_our_profile, "{d:?}");
}

#[test]
fn restriction_sysctl_without_apparmor_enabled_is_no_blocker() {
    let root = host(&[
        (
            "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1\n",
        ),
        ("sys/module/apparmor/parameters/enabled", "N\n"),
    ]);
    let d = diagnose(root.path(), 1000, Path::new(EXE));
    assert!(!d.apparmor_enabled);
    assert!(d.blockers.is_empty());
}

#[test]
fn debian_and_max_user_namespaces() {
    let root = host(&[
        ("proc/sys/kernel/unprivileged_userns_clone", "0\n"),
        ("proc/sys/user/max_user_namespaces", "0\n"),
    ]);
    let d = diagnose(root.path(), 1000, Path::new(EXE));
    let settings: Vec<&str> = d.blockers.iter().map(|b| b.setting.as_str()).collect();
    assert_eq!(
        settings,
        [
            "user.max_user_namespaces=0",
            "kernel.unprivileged_userns_clone=0"
        ]
    );
    assert!(
        d.blockers[0]
            .fix
            .starts_with("sudo sysctl -w user.max_user_namespaces=16384")
    );
    assert!(
        d.blockers[1]
            .fix
            .starts_with("sudo sysctl -w kernel.unprivileged_userns_clone=1")
    );
    // max_user_namespaces=0 stops root too; the Debian switch does not.
    let d = diagnose(root.path(), 0, Path::new(EXE));
    assert_eq!(d.blockers.len(), 1);
    assert_eq!(d.blockers[0].setting, "user.max_user_namespaces=0");
}

#[test]
fn nothing_set_nothing_blocks() {
    let root = host(&[("proc/sys/user/max_user_namespaces", "63000\n")]);
    let d = diagnose(root.path(), 1000, Path::new(EXE));
    assert!(d.blockers.is_empty());
    assert_eq!(d.apparmor_restrict, None);
    assert_eq!(d.unprivileged_userns_clone, None);
}

/// A fake apparmor_parser that records its arguments and exits with `code`.
fn fake_parser(dir: &Path, code: i32) -> (PathBuf, PathBuf) {
    let log = dir.join("parser.log");
    let script = dir.join("apparmor_parser");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\necho 'parser says no' >&2\nexit {code}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn install_writes_atomically_and_loads_with_the_parser() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("apparmor.d");
    std::fs::create_dir(&profiles).unwrap();
    let (parser, log) = fake_parser(tmp.path(), 0);
    let inst = Installer {
        dir: profiles.clone(),
        parser: Some(parser.clone()),
        euid: 0,
    };
    let done = install(Path::new(EXE), &inst).unwrap();
    let file = profiles.join("usr.local.bin.shellcage");
    assert_eq!(done.path, file);
    assert!(!done.replaced);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), GOLDEN);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert_eq!(
        listing(&profiles),
        ["usr.local.bin.shellcage"],
        "no temporary file left"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("-r {}\n", file.display())
    );
    // Again: replaces the file.
    assert!(install(Path::new(EXE), &inst).unwrap().replaced);
}

#[test]
fn failed_load_puts_the_host_back() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("apparmor.d");
    std::fs::create_dir(&profiles).unwrap();
    let (parser, _log) = fake_parser(tmp.path(), 1);
    let inst = Installer {
        dir: profiles.clone(),
        parser: Some(parser),
        euid: 0,
    };
    // No previous file: the new one is removed again.
    let err = install(Path::new(EXE), &inst).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("parser says no") && text.contains("was removed again"),
        "{text}"
    );
    assert!(listing(&profiles).is_empty());
    // A previous file: put back byte for byte.
    let file = profiles.join("usr.local.bin.shellcage");
    std::fs::write(&file, "# the admin's own\n").unwrap();
    let err = install(Path::new(EXE), &inst).unwrap_err();
    assert!(err.to_string().contains("the previous"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "# the admin's own\n"
    );
    assert_eq!(listing(&profiles), ["usr.local.bin.shellcage"]);
}

#[test]
fn refusals_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let profiles = tmp.path().join("apparmor.d");
    std::fs::create_dir(&profiles).unwrap();
    let (parser, log) = fake_parser(tmp.path(), 0);
    // Not root.
    let err = install(
        Path::new(EXE),
        &Installer {
            dir: profiles.clone(),
            parser: Some(parser.clone()),
            euid: 1000,
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "setup apparmor: writing {}/usr.local.bin.shellcage needs root (hint: sudo /usr/local/bin/shellcage setup apparmor; or --print to see the profile)",
            profiles.display()
        )
    );
    // No parser.
    let err = install(
        Path::new(EXE),
        &Installer {
            dir: profiles.clone(),
            parser: None,
            euid: 0,
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("apparmor_parser not found"),
        "{err}"
    );
    // No profile directory.
    let err = install(
        Path::new(EXE),
        &Installer {
            dir: tmp.path().join("missing"),
            parser: Some(parser),
            euid: 0,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(listing(&profiles).is_empty());
    assert!(!log.exists(), "the parser never ran");
}

#[test]
fn restriction_is_decided_before_any_clone() {
    let exe = || Some(PathBuf::from(EXE));
    // Ubuntu 24.04, an unconfined user process: the blocker, with the fix.
    let root = ubuntu_2404(&[]);
    let b = restriction(root.path(), 1000, exe).unwrap();
    assert_eq!(b.fix, "sudo /usr/local/bin/shellcage setup apparmor");
    // No label file at all (older kernels without attr/apparmor): unconfined.
    let bare = host(&[
        (
            "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1\n",
        ),
        ("sys/module/apparmor/parameters/enabled", "Y\n"),
    ]);
    assert!(restriction(bare.path(), 1000, exe).is_some());
    // Root, our profile, or any other profile (it may grant userns: the
    // clone tells): nothing decided here.
    assert!(restriction(root.path(), 0, exe).is_none());
    for label in [
        "usr.local.bin.shellcage (unconfined)\n",
        "snap.code.code (complain)\n",
    ] {
        let r = ubuntu_2404(&[("proc/self/attr/apparmor/current", label)]);
        assert!(restriction(r.path(), 1000, exe).is_none(), "{label}");
    }
    // Restriction off or absent: one file read, and the binary's path is
    // never asked for.
    let never = || -> Option<PathBuf> { panic!("exe asked for") };
    let off = ubuntu_2404(&[(
        "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "0\n",
    )]);
    assert!(restriction(off.path(), 1000, never).is_none());
    assert!(restriction(host(&[]).path(), 1000, never).is_none());
    // The sysctl without AppArmor enabled restricts nothing.
    let no_lsm = host(&[(
        "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1\n",
    )]);
    assert!(restriction(no_lsm.path(), 1000, exe).is_none());
}

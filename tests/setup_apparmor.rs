//! `shellcage setup apparmor [--print]`: the printed profile is the one for
//! the binary's real path, and installing is refused with the fix, changing
//! nothing, where it cannot be done (not root; no apparmor_parser).

mod common;

use common::bin;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn run(exe: &Path, args: &[&str]) -> Output {
    Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn print_gives_the_profile_for_the_real_path() {
    let real = std::fs::canonicalize(bin()).unwrap();
    // Started through a symlink (as shellcage-sh is): AppArmor attaches by
    // the executed file's real path, so that is the one in the profile.
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("shellcage-link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    for exe in [bin(), link] {
        let out = run(&exe, &["setup", "apparmor", "--print"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let printed = text(&out.stdout);
        assert_eq!(
            printed,
            shellcage::apparmor::render_profile(&real).unwrap(),
            "via {}",
            exe.display()
        );
        let name = shellcage::apparmor::profile_name(&real);
        let lines: Vec<&str> = printed
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines,
            [
                "abi <abi/4.0>,".to_string(),
                "include <tunables/global>".to_string(),
                format!("profile {name} {} flags=(unconfined) {{", real.display()),
                "  userns,".to_string(),
                format!("  include if exists <local/{name}>"),
                "}".to_string(),
            ]
        );
    }
}

#[test]
fn install_is_refused_with_the_fix_and_changes_nothing() {
    let real = std::fs::canonicalize(bin()).unwrap();
    let target =
        Path::new(shellcage::apparmor::PROFILE_DIR).join(shellcage::apparmor::profile_name(&real));
    let existed = target.exists();
    let root = nix::unistd::geteuid().is_root();
    if root && shellcage::apparmor::find_parser().is_some() {
        // A real AppArmor host: installing would change it for every later
        // test run; the install path is tested against a temporary directory
        // and a fake parser in the unit tests (src/apparmor/tests.rs).
        eprintln!("note: apparmor_parser present; not installing a profile on this host as root");
        return;
    }
    let out = run(&bin(), &["setup", "apparmor"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(out.stdout.is_empty());
    if root {
        assert!(
            stderr.contains("apparmor_parser not found") && stderr.contains("nothing was written"),
            "{stderr}"
        );
    } else {
        assert_eq!(
            stderr.trim(),
            format!(
                "shellcage: setup apparmor: writing {} needs root (hint: sudo {} setup apparmor; or --print to see the profile)",
                target.display(),
                real.display()
            )
        );
    }
    assert_eq!(target.exists(), existed, "{} changed", target.display());
}

//! The mechanism for `.git/config` inside a sandbox, end to end with real git:
//! a symlink mounted over the host's file (so it cannot be removed or
//! replaced) points to a private copy; git config / remote add / submodule
//! add work on the copy; the host file is unchanged while the namespace
//! lives; at exit the merge brings the allowed keys to the host file and the
//! host's git reads them.
//!
//! Each case runs the `helper_in_namespace` test in a fresh user+mount
//! namespace (`unshare -Urm`, util-linux), one process per case.

mod common;

use common::require;
use shellcage::git::merge::merge_into_file;
use shellcage::git::policy::{Context, MERGE_BACK};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn userns_available() -> bool {
    Command::new("unshare")
        .args(["-Urm", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

fn git(home: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .env_clear()
        .env(
            "SHELLCAGE_SESSION",
            std::env::var_os("SHELLCAGE_SESSION").unwrap_or_else(|| "off".into()),
        )
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Layout {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    ws: PathBuf,
    private: PathBuf,
}

fn layout() -> Layout {
    let tmp = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(tmp.path()).unwrap();
    let home = root.join("home");
    fs::create_dir(&home).unwrap();
    fs::write(
        home.join(".gitconfig"),
        "[user]\n\tname = t\n\temail = t@example.com\n[init]\n\tdefaultBranch = main\n[protocol \"file\"]\n\tallow = always\n[safe]\n\tdirectory = *\n",
    )
    .unwrap();
    let ws = root.join("ws");
    let other = root.join("other");
    for d in [&ws, &other] {
        fs::create_dir(d).unwrap();
        git(&home, d, &["init", "-q"]);
        git(&home, d, &["commit", "-q", "--allow-empty", "-m", "c"]);
    }
    let private = root.join("private");
    fs::create_dir(&private).unwrap();
    fs::copy(ws.join(".git/config"), private.join("config")).unwrap();
    std::os::unix::fs::symlink(private.join("config"), private.join("link")).unwrap();
    Layout {
        _tmp: tmp,
        root,
        home,
        ws,
        private,
    }
}

/// Run the helper in a new user+mount namespace; `legacy` picks mount(2).
fn run_helper(l: &Layout, legacy: bool) {
    let out = Command::new("unshare")
        .args(["-Urm", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_in_namespace",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GITCFG_HELPER_ROOT", &l.root)
        .env("GITCFG_HELPER_LEGACY", if legacy { "1" } else { "" })
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && all.contains("1 passed"),
        "helper failed:\n{all}"
    );
}

#[test]
#[ignore = "helper: runs inside the namespace made by the symlink_config_* tests"]
fn helper_in_namespace() {
    use std::os::unix::fs::PermissionsExt;
    let root =
        PathBuf::from(std::env::var_os("GITCFG_HELPER_ROOT").expect("run by symlink_config_*"));
    let (home, ws, private) = (root.join("home"), root.join("ws"), root.join("private"));
    let config = ws.join(".git/config");
    let legacy = std::env::var("GITCFG_HELPER_LEGACY").is_ok_and(|v| v == "1");
    if legacy {
        shellcage::sys::mount_symlink_over_legacy(&private.join("link"), &config).unwrap();
    } else {
        shellcage::sys::mount_symlink_over_new_api(&private.join("link"), &config).unwrap();
    }
    assert_eq!(fs::read_link(&config).unwrap(), private.join("config"));
    let ebusy = |r: std::io::Result<()>| r.unwrap_err().raw_os_error() == Some(libc::EBUSY);
    assert!(ebusy(fs::remove_file(&config)), "unlink of the mount point");
    fs::write(ws.join("x"), "[core]\n\tfsmonitor = evil\n").unwrap();
    assert!(
        ebusy(fs::rename(ws.join("x"), &config)),
        "rename over the mount point"
    );
    assert!(
        ebusy(fs::rename(&config, ws.join("y"))),
        "rename of the mount point"
    );
    // Everyday git on the private copy.
    git(&home, &ws, &["config", "user.name", "inside"]);
    git(
        &home,
        &ws,
        &["remote", "add", "up", "https://example.com/u.git"],
    );
    git(&home, &ws, &["submodule", "add", "-q", "../other", "sub"]);
    git(&home, &ws, &["config", "core.fsmonitor", "touch /tmp/evil"]);
    git(&home, &ws, &["config", "alias.x", "!sh"]);
    assert_eq!(
        git(&home, &ws, &["config", "remote.up.url"]),
        "https://example.com/u.git"
    );
    // git wrote config.lock next to the private copy, not in .git.
    assert!(!ws.join(".git/config.lock").exists());
    assert_eq!(fs::read_link(&config).unwrap(), private.join("config"));
    let mode = fs::metadata(private.join("config"))
        .unwrap()
        .permissions()
        .mode();
    assert!(mode & 0o200 != 0);
}

fn symlink_config_case(legacy: bool) {
    if !require(
        userns_available(),
        "unprivileged user+mount namespaces (unshare -Urm)",
    ) {
        return;
    }
    let l = layout();
    let base = fs::read(l.ws.join(".git/config")).unwrap();
    run_helper(&l, legacy);
    // The namespace is gone: the host file was never written.
    assert_eq!(fs::read(l.ws.join(".git/config")).unwrap(), base);
    // The supervisor's exit step.
    let host = l.ws.join(".git/config");
    let copy = l.private.join("config");
    let m = merge_into_file(&host, &base, &copy, &MERGE_BACK, &Context::default()).unwrap();
    let line = m.summary(".git/config").unwrap();
    assert!(
        line.contains("refused core.fsmonitor, alias.x (not allowed)"),
        "{line}"
    );
    let g = |args: &[&str]| git(&l.home, &l.ws, args);
    assert_eq!(g(&["config", "user.name"]), "inside");
    assert_eq!(g(&["config", "remote.up.url"]), "https://example.com/u.git");
    assert_eq!(
        g(&["config", "submodule.sub.url"]),
        l.root.join("other").display().to_string()
    );
    let all = g(&["config", "--local", "--list"]);
    assert!(
        !all.contains("fsmonitor") && !all.contains("alias"),
        "{all}"
    );
    // The submodule the sandbox added works on the host.
    g(&["submodule", "status"]);
}

#[test]
fn symlink_config_new_mount_api() {
    symlink_config_case(false);
}

#[test]
fn symlink_config_legacy_mount() {
    symlink_config_case(true);
}

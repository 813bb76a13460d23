//! Repositories planted in a workspace, run by the host's real git.
//!
//! Each attack plants a repository git on the host would use, with a config
//! or hook that creates a marker file. The control runs git without
//! neutralising and must see the marker (the attack works); the case runs
//! `neutralise(before, after)` first and must not. Real work (clone,
//! worktree, submodule) must come out unchanged and still work.
//!
//! The sandbox is not involved: `neutralise` is the host-side step the
//! supervisor runs at exit; what a command can do in the workspace is
//! simulated by doing it directly.

use shellcage::git::neutralise::{Action, neutralise};
use shellcage::git::repo::{Discovery, Inventory, discover};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    ws: PathBuf,
    outside: PathBuf,
    marker: PathBuf,
}

fn have_git() -> bool {
    let ok = Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok || (std::env::var_os("CI").is_none()
            && std::env::var_os("SHELLCAGE_TEST_REQUIRE_KERNEL").is_none()),
        "git is required in CI and under SHELLCAGE_TEST_REQUIRE_KERNEL"
    );
    ok
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        let (home, ws, outside) = (root.join("home"), root.join("ws"), root.join("outside"));
        for d in [&home, &ws, &outside] {
            fs::create_dir(d).unwrap();
        }
        fs::write(
            home.join(".gitconfig"),
            "[user]\n\tname = t\n\temail = t@example.com\n[init]\n\tdefaultBranch = main\n[protocol \"file\"]\n\tallow = always\n[safe]\n\tdirectory = *\n",
        )
        .unwrap();
        let env = Env {
            marker: root.join("MARK"),
            _tmp: tmp,
            home,
            ws,
            outside,
        };
        env.git(&env.ws, &["init", "-q"]);
        env.git(&env.ws, &["commit", "-q", "--allow-empty", "-m", "base"]);
        env
    }

    fn git(&self, dir: &Path, args: &[&str]) -> Output {
        let out = Command::new("git")
            .env_clear()
            .env(
                "SHELLCAGE_SESSION",
                std::env::var_os("SHELLCAGE_SESSION").unwrap_or_else(|| "off".into()),
            )
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        let may_fail = args[0] == "status" || args.starts_with(&["config", "--get"]);
        assert!(
            out.status.success() || may_fail,
            "git {args:?} in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A config that runs the marker command on `git status`.
    fn evil_config(&self, extra: &str) -> String {
        format!(
            "[core]\n\trepositoryformatversion = 0\n\tbare = false\n{extra}\tfsmonitor = \"touch {}; false\"\n",
            self.marker.display()
        )
    }

    fn bare_shape(&self, dir: &Path, config: &str) {
        fs::create_dir_all(dir.join("objects")).unwrap();
        fs::create_dir_all(dir.join("refs")).unwrap();
        fs::write(dir.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        fs::write(dir.join("config"), config).unwrap();
    }

    fn ran(&self) -> bool {
        let r = self.marker.exists();
        let _ = fs::remove_file(&self.marker);
        r
    }
}

/// Run `attack` in a fresh workspace twice: without neutralising (the marker
/// must appear when git runs `check`), then with (it must not).
fn attack_case(name: &str, attack: impl Fn(&Env), check: impl Fn(&Env)) -> Vec<Action> {
    let control = Env::new();
    attack(&control);
    check(&control);
    assert!(
        control.ran(),
        "{name}: control: the attack must work without neutralising"
    );

    let env = Env::new();
    let before = Inventory::scan(&env.ws).unwrap();
    attack(&env);
    let after = Inventory::rescan(&before).unwrap();
    let report = neutralise(&before, &after);
    for line in report.lines(&env.ws) {
        eprintln!("{name}: {line}");
    }
    check(&env);
    assert!(
        !env.ran(),
        "{name}: host git ran the planted command after neutralising"
    );
    assert!(!report.actions.is_empty(), "{name}: nothing reported");
    report.actions
}

fn status(at: &'static str) -> impl Fn(&Env) {
    move |e: &Env| {
        e.git(&e.ws.join(at), &["status", "--short"]);
    }
}

#[test]
fn workspace_root_taken_as_bare_repository() {
    if !have_git() {
        return;
    }
    attack_case(
        "root bare",
        |e| {
            fs::remove_file(e.ws.join(".git/HEAD")).unwrap();
            e.bare_shape(&e.ws, &e.evil_config("\tworktree = .\n"));
        },
        status("."),
    );
}

#[test]
fn nested_repository_directory() {
    if !have_git() {
        return;
    }
    let actions = attack_case(
        "nested dir",
        |e| {
            let sub = e.ws.join("sub");
            fs::create_dir(&sub).unwrap();
            e.git(&sub, &["init", "-q"]);
            e.git(
                &sub,
                &["remote", "add", "origin", "https://example.com/x.git"],
            );
            let cfg = fs::read_to_string(sub.join(".git/config")).unwrap();
            fs::write(
                sub.join(".git/config"),
                cfg + "[Core]\n\tFSMonitor = \"touch "
                    + e.marker.to_str().unwrap()
                    + "\"\n[alias]\n\tx = !sh\n",
            )
            .unwrap();
        },
        status("sub"),
    );
    let Action::CleanedConfig { refused, .. } = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(
        refused,
        &vec![b"core.fsmonitor".to_vec(), b"alias.x".to_vec()]
    );
}

#[test]
fn nested_repository_keeps_its_remote() {
    if !have_git() {
        return;
    }
    let e = Env::new();
    let before = Inventory::scan(&e.ws).unwrap();
    let sub = e.ws.join("sub");
    fs::create_dir(&sub).unwrap();
    e.git(&sub, &["init", "-q"]);
    e.git(
        &sub,
        &["remote", "add", "origin", "https://example.com/x.git"],
    );
    e.git(&sub, &["config", "core.hooksPath", "/tmp"]);
    let report = neutralise(&before, &Inventory::scan(&e.ws).unwrap());
    assert_eq!(report.actions.len(), 1, "{report:?}");
    let url = e.git(&sub, &["config", "remote.origin.url"]);
    assert_eq!(
        String::from_utf8_lossy(&url.stdout).trim(),
        "https://example.com/x.git"
    );
    let hp = e.git(&sub, &["config", "--get", "core.hookspath"]);
    assert!(hp.stdout.is_empty());
}

#[test]
fn gitfile_to_a_bare_shaped_directory() {
    if !have_git() {
        return;
    }
    attack_case(
        "gitfile",
        |e| {
            fs::create_dir(e.ws.join("sub")).unwrap();
            e.bare_shape(&e.ws.join("evil"), &e.evil_config("\tworktree = ../sub\n"));
            fs::write(e.ws.join("sub/.git"), "gitdir: ../evil\n").unwrap();
        },
        status("sub"),
    );
}

#[test]
fn dotgit_symlink_to_a_repository() {
    if !have_git() {
        return;
    }
    attack_case(
        "symlink",
        |e| {
            fs::create_dir(e.ws.join("sub")).unwrap();
            e.bare_shape(&e.ws.join("evil"), &e.evil_config("\tworktree = ../sub\n"));
            std::os::unix::fs::symlink("../evil", e.ws.join("sub/.git")).unwrap();
        },
        status("sub"),
    );
}

#[test]
fn gitfile_pointing_outside_the_workspace() {
    if !have_git() {
        return;
    }
    let actions = attack_case(
        "gitfile outside",
        |e| {
            fs::create_dir(e.ws.join("sub")).unwrap();
            let evil = e.outside.join("evil");
            e.bare_shape(
                &evil,
                &e.evil_config(&format!("\tworktree = {}\n", e.ws.join("sub").display())),
            );
            fs::write(
                e.ws.join("sub/.git"),
                format!("gitdir: {}\n", evil.display()),
            )
            .unwrap();
        },
        status("sub"),
    );
    assert!(
        matches!(&actions[0], Action::MovedAside { path, .. } if path.ends_with("sub/.git")),
        "{actions:?}"
    );
}

#[test]
fn hook_in_a_nested_repository() {
    if !have_git() {
        return;
    }
    attack_case(
        "hook",
        |e| {
            let sub = e.ws.join("sub");
            fs::create_dir(&sub).unwrap();
            e.git(&sub, &["init", "-q"]);
            let hook = sub.join(".git/hooks/pre-commit");
            fs::write(&hook, format!("#!/bin/sh\ntouch {}\n", e.marker.display())).unwrap();
            fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        },
        |e| {
            e.git(
                &e.ws.join("sub"),
                &["commit", "-q", "--allow-empty", "-m", "x"],
            );
        },
    );
}

#[test]
fn submodule_config_changed_in_the_run() {
    if !have_git() {
        return;
    }
    let setup = |e: &Env| {
        let up = e.outside.join("up");
        fs::create_dir(&up).unwrap();
        e.git(&up, &["init", "-q"]);
        e.git(&up, &["commit", "-q", "--allow-empty", "-m", "up"]);
        e.git(
            &e.ws,
            &["submodule", "add", "-q", up.to_str().unwrap(), "sub"],
        );
    };
    let control = Env::new();
    setup(&control);
    let e = Env::new();
    setup(&e);
    let before = Inventory::scan(&e.ws).unwrap();
    for env in [&control, &e] {
        let cfg = env.ws.join(".git/modules/sub/config");
        let text = fs::read_to_string(&cfg).unwrap();
        fs::write(
            &cfg,
            format!(
                "{text}[core]\n\tfsmonitor = \"touch {}; false\"\n",
                env.marker.display()
            ),
        )
        .unwrap();
    }
    control.git(&control.ws.join("sub"), &["status", "--short"]);
    assert!(control.ran(), "control: the attack must work");
    let report = neutralise(&before, &Inventory::scan(&e.ws).unwrap());
    e.git(&e.ws.join("sub"), &["status", "--short"]);
    assert!(!e.ran(), "{report:?}");
    let wt = e.git(&e.ws.join(".git/modules/sub"), &["config", "core.worktree"]);
    assert_eq!(
        String::from_utf8_lossy(&wt.stdout).trim(),
        "../../../sub",
        "core.worktree kept"
    );
}

#[test]
fn commondir_made_in_the_run() {
    if !have_git() {
        return;
    }
    attack_case(
        "commondir",
        |e| {
            let evil = e.ws.join("evil");
            fs::create_dir_all(evil.join("objects")).unwrap();
            fs::create_dir_all(evil.join("refs")).unwrap();
            fs::write(
                evil.join("config"),
                e.evil_config(&format!("\tworktree = {}\n", e.ws.display())),
            )
            .unwrap();
            fs::write(e.ws.join(".git/commondir"), "../evil\n").unwrap();
        },
        status("."),
    );
}

#[test]
fn unreadable_config_is_put_aside() {
    if !have_git() {
        return;
    }
    let e = Env::new();
    let before = Inventory::scan(&e.ws).unwrap();
    let sub = e.ws.join("sub");
    fs::create_dir(&sub).unwrap();
    e.git(&sub, &["init", "-q"]);
    fs::write(
        sub.join(".git/config"),
        format!("{}[broken\n", e.evil_config("")),
    )
    .unwrap();
    let report = neutralise(&before, &Inventory::scan(&e.ws).unwrap());
    assert!(
        matches!(&report.actions[0], Action::MovedAside { .. }),
        "{report:?}"
    );
    e.git(&sub, &["status", "--short"]);
    assert!(!e.ran());
    assert!(!sub.join(".git/config").exists());
}

#[test]
fn users_own_refused_keys_survive_and_unchanged_repos_are_untouched() {
    if !have_git() {
        return;
    }
    let e = Env::new();
    let sub = e.ws.join("sub");
    fs::create_dir(&sub).unwrap();
    e.git(&sub, &["init", "-q"]);
    e.git(&sub, &["config", "alias.st", "status"]);
    let hook = sub.join(".git/hooks/post-commit");
    fs::write(&hook, "#!/bin/sh\n").unwrap();
    // Stamps from the clock tick of the scan are not trusted (a change later
    // in the same tick would keep them): let that tick pass.
    std::thread::sleep(std::time::Duration::from_millis(30));
    let before = Inventory::scan(&e.ws).unwrap();
    assert!(neutralise(&before, &Inventory::scan(&e.ws).unwrap()).is_empty());
    e.git(&sub, &["config", "core.fsmonitor", "evil"]);
    let report = neutralise(&before, &Inventory::scan(&e.ws).unwrap());
    assert_eq!(report.actions.len(), 1, "{report:?}");
    assert_eq!(
        String::from_utf8_lossy(&e.git(&sub, &["config", "alias.st"]).stdout).trim(),
        "status"
    );
    assert!(hook.exists(), "the user's own hook stays");
}

#[test]
fn real_work_comes_through_untouched() {
    if !have_git() {
        return;
    }
    let e = Env::new();
    let up = e.outside.join("up");
    fs::create_dir(&up).unwrap();
    e.git(&up, &["init", "-q"]);
    e.git(&up, &["commit", "-q", "--allow-empty", "-m", "up"]);
    let before = Inventory::scan(&e.ws).unwrap();
    e.git(&e.ws, &["clone", "-q", up.to_str().unwrap(), "clone"]);
    e.git(&e.ws, &["worktree", "add", "-q", "wt"]);
    e.git(
        &e.ws,
        &["submodule", "add", "-q", up.to_str().unwrap(), "sub"],
    );
    let after = Inventory::scan(&e.ws).unwrap();
    let report = neutralise(&before, &after);
    assert!(report.is_empty(), "{report:?}");
    e.git(&e.ws.join("clone"), &["fetch", "-q"]);
    e.git(
        &e.ws.join("wt"),
        &["commit", "-q", "--allow-empty", "-m", "wt"],
    );
    e.git(&e.ws.join("sub"), &["status", "--short"]);
    assert!(after.git_dirs.contains_key(&e.ws.join(".git/worktrees/wt")));
    assert!(after.git_dirs.contains_key(&e.ws.join(".git/modules/sub")));
}

/// `discover` against `git rev-parse --absolute-git-dir` on the layouts above.
#[test]
fn discovery_matches_git() {
    if !have_git() {
        return;
    }
    let e = Env::new();
    let sub = e.ws.join("a/b");
    fs::create_dir_all(&sub).unwrap();
    e.git(&sub, &["init", "-q"]);
    e.bare_shape(&e.ws.join("bare"), "");
    fs::create_dir(e.ws.join("g")).unwrap();
    fs::write(e.ws.join("g/.git"), "gitdir: ../bare\n").unwrap();
    fs::create_dir(e.ws.join("bad")).unwrap();
    fs::write(e.ws.join("bad/.git"), "nonsense\n").unwrap();
    fs::create_dir_all(e.ws.join("plain/deeper")).unwrap();
    for (dir, explicit) in [
        ("a/b", false),
        ("a", false),
        ("bare", false),
        ("bare", true),
        ("g", false),
        ("bad", false),
        ("plain/deeper", false),
        (".", false),
    ] {
        let at = e.ws.join(dir);
        let mut cmd = Command::new("git");
        cmd.env_clear()
            .env(
                "SHELLCAGE_SESSION",
                std::env::var_os("SHELLCAGE_SESSION").unwrap_or_else(|| "off".into()),
            )
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", &e.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .current_dir(&at)
            .args([
                "-c",
                &format!(
                    "safe.bareRepository={}",
                    if explicit { "explicit" } else { "all" }
                ),
            ])
            .args(["rev-parse", "--absolute-git-dir"]);
        let out = cmd.output().unwrap();
        let git_says = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let ours = match discover(&at, explicit) {
            Discovery::DotGit { git_dir, .. } => Some(git_dir),
            Discovery::Bare { at } => Some(at),
            _ => None,
        };
        match ours {
            Some(p) => assert_eq!(PathBuf::from(&git_says), p, "{dir}"),
            None => assert!(!out.status.success(), "{dir}: git found {git_says}"),
        }
    }
}

/// The placeholder the mount plan can hold over a missing `.git/commondir`
/// for the whole run: a read-only file containing "." (the git directory
/// itself). git dies on an empty or unreadable commondir and on a dangling
/// symlink (it tests existence with lstat), but works with ".".
#[test]
fn dot_commondir_placeholder_keeps_git_working() {
    if !have_git() {
        return;
    }
    let e = Env::new();
    let placeholder = e.ws.join(".git/commondir");
    fs::write(&placeholder, ".\n").unwrap();
    fs::set_permissions(
        &placeholder,
        std::os::unix::fs::PermissionsExt::from_mode(0o444),
    )
    .unwrap();
    let before = Inventory::scan(&e.ws).unwrap();
    e.git(
        &e.ws,
        &["commit", "-q", "--allow-empty", "-m", "with placeholder"],
    );
    e.git(&e.ws, &["branch", "b"]);
    e.git(&e.ws, &["worktree", "add", "-q", "wt", "b"]);
    e.git(
        &e.ws.join("wt"),
        &["commit", "-q", "--allow-empty", "-m", "in worktree"],
    );
    e.git(&e.ws, &["config", "user.name", "x"]);
    let log = e.git(&e.ws, &["log", "--oneline", "b"]);
    assert_eq!(String::from_utf8_lossy(&log.stdout).lines().count(), 3);
    let report = neutralise(&before, &Inventory::scan(&e.ws).unwrap());
    assert!(report.is_empty(), "{report:?}");
    fs::remove_file(&placeholder).unwrap();
    fs::symlink_metadata(e.ws.join(".git/worktrees/wt/commondir")).unwrap();
    e.git(&e.ws.join("wt"), &["status", "--short"]);
}

/// A hook written in the same clock tick as the scan cannot be told apart
/// from one rewritten right after it (same ctime): it counts as changed.
#[test]
fn stamps_from_the_scan_tick_are_not_trusted() {
    if !have_git() {
        return;
    }
    let e = Env::new();
    let sub = e.ws.join("sub");
    fs::create_dir(&sub).unwrap();
    e.git(&sub, &["init", "-q"]);
    let hook = sub.join(".git/hooks/pre-commit");
    fs::write(&hook, "#!/bin/sh\ntrue\n").unwrap();
    let before = Inventory::scan(&e.ws).unwrap();
    fs::write(&hook, "#!/bin/sh\nfalse\n").unwrap(); // same size, same inode
    let report = neutralise(&before, &Inventory::rescan(&before).unwrap());
    assert!(
        matches!(&report.actions[..], [Action::MovedAside { path, .. }] if *path == hook),
        "{report:?}"
    );
}

/// `rescan` (reads only directories whose stamp moved) finds what `scan` finds.
#[test]
fn rescan_sees_what_a_full_scan_sees() {
    if !have_git() {
        return;
    }
    let e = Env::new();
    for d in ["a/b/c", "a/x", "vendor/old"] {
        fs::create_dir_all(e.ws.join(d)).unwrap();
    }
    e.git(&e.ws.join("vendor/old"), &["init", "-q"]);
    std::thread::sleep(std::time::Duration::from_millis(30));
    let before = Inventory::scan(&e.ws).unwrap();
    e.git(&e.ws.join("a/b/c"), &["init", "-q"]);
    fs::write(e.ws.join("a/x/.git"), "gitdir: ../b/c/.git\n").unwrap();
    e.git(&e.ws.join("vendor/old"), &["config", "core.fsmonitor", "x"]);
    e.bare_shape(&e.ws.join("a/bare"), "");
    let full = Inventory::scan(&e.ws).unwrap();
    let quick = Inventory::rescan(&before).unwrap();
    assert_eq!(quick.git_dirs, full.git_dirs);
    assert_eq!(quick.links, full.links);
    assert_eq!(
        quick.dirs.keys().collect::<std::collections::BTreeSet<_>>(),
        full.dirs.keys().collect()
    );
    assert!(
        quick.dirs_read < full.dirs_read,
        "{} vs {}",
        quick.dirs_read,
        full.dirs_read
    );
    let report = neutralise(&before, &quick);
    assert_eq!(report.actions.len(), 1, "{report:?}");
}

//! The copy-on-write workspace through the real launch path: `shellcage run
//! --overlay/--layer` mounts the layer over the workspace inside the sandbox;
//! `changes`, `apply`, `discard` then work on what the command left. Each test
//! hashes the host tree: unchanged while the layer is used, equal to the
//! merged view after `apply`. The attack cases (each with a control) are
//! about what a hostile command can put into the layer through the mount.

mod common;
#[path = "overlay/harness.rs"]
mod harness;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;

fn ready() -> bool {
    common::require(common::sandbox_available(), "user namespaces") && overlay_available()
}

const GIT: &str = "git -c user.name=Agent -c user.email=agent@example.com";

#[test]
fn a_destructive_command_leaves_the_host_intact_and_the_layer_carries_on() {
    if !ready() {
        return;
    }
    let f = Fixture::git(
        "mkdir -p src docs && echo 'fn main() {}' > src/main.rs && echo a > docs/a.md && echo keep > README",
    );
    let before = tree(&f.ws);
    let out = f.run_ok(
        "default",
        "rm -rf src && echo gone && echo changed > README && mkdir new && echo n > new/f",
    );
    assert_eq!(out, "gone\n");
    assert_same(&tree(&f.ws), &before, "host after the run");
    assert_eq!(
        lines(&f.changes(&[])),
        lines("D  src/main.rs\nM  README\nA  new/f\n"),
        "changes"
    );
    // The next command on the layer sees the first one's work.
    assert_eq!(
        f.run_ok(
            "default",
            "ls -d README docs new src 2>/dev/null; cat README; test -e src && echo src-back; true"
        ),
        "README\ndocs\nnew\nchanged\n"
    );
    assert_same(&tree(&f.ws), &before, "host after the second run");
    // Apply: the host equals what the command saw; the layer is empty.
    let merged = f.merged_copy("default");
    ok(&f.sc(&["apply"]));
    assert_same(
        &tree_without(&f.ws, &[".git"]),
        &tree_without(&merged, &[".git"]),
        "host after apply vs the merged view",
    );
    assert_eq!(f.changes(&[]), "");
    assert!(!f.ws.join("src").exists());
}

#[test]
fn discard_drops_the_layer_and_the_next_run_starts_from_the_host() {
    if !ready() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    let before = tree(&f.ws);
    // (git clean warns about the protected paths' read-only placeholders.)
    f.run_ok(
        "try-1",
        "echo 2 > a && git reset -q --hard && git clean -qfdx; rm -f a",
    );
    f.run_ok("try-2", "echo 3 > a");
    let one = f.changes(&["--layer", "try-1"]);
    assert!(one.contains("D  a\n") && !one.contains("M  a"), "{one}");
    assert_eq!(f.changes(&["--layer", "try-2"]), "M  a\n");
    ok(&f.sc(&["discard", "--layer", "try-1"]));
    assert_same(&tree(&f.ws), &before, "host after discard");
    assert_eq!(f.run_ok("try-1", "cat a"), "1\n", "a fresh layer");
    assert_eq!(f.run_ok("try-2", "cat a"), "3\n", "the other layer stays");
    let list = f.changes(&["--list"]);
    assert!(list.contains("try-1") && list.contains("try-2"), "{list}");
}

#[test]
fn a_profile_with_workspace_overlay_works_on_the_default_layer() {
    if !ready() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    let prof = f.tmp.path().join("ov.toml");
    std::fs::write(
        &prof,
        "version = 1\nextends = \"dev\"\n[filesystem]\nworkspace = \"overlay\"\n",
    )
    .unwrap();
    let p = prof.to_str().unwrap();
    let out = f.sc(&[
        "run",
        "--profile",
        p,
        "--report",
        "json",
        "--",
        "sh",
        "-c",
        "echo 2 > a",
    ]);
    ok(&out);
    assert_eq!(std::fs::read_to_string(f.ws.join("a")).unwrap(), "1\n");
    assert_eq!(f.changes(&[]), "M  a\n");
    let report = text(&out.stderr);
    assert!(
        report.contains("\"layer\": \"default\"") || report.contains("\"layer\":\"default\""),
        "the report names the layer: {report}"
    );
    // apply takes the protected paths of the profile the layer began with.
    let meta = std::fs::read_to_string(f.begin("default").dir.join("meta.json")).unwrap();
    assert!(meta.contains("ov.toml"), "{meta}");
    ok(&f.sc(&["apply"]));
    assert_eq!(std::fs::read_to_string(f.ws.join("a")).unwrap(), "2\n");
}

#[test]
fn commands_on_one_layer_take_turns_and_apply_waits_for_none() {
    if !ready() {
        return;
    }
    // Cold runs, each with a mount of its own (a session's commands share one: see
    // `a_session_shares_one_overlay_mount_and_lets_it_go_for_apply`).
    let cold = [("SHELLCAGE_SESSION", "off")];
    let f = Fixture::git("echo 1 > a");
    let started = f.tmp.path().join("started");
    std::fs::create_dir(&started).unwrap();
    // The first command holds the layer for a while.
    let mut first = Command::new(bin())
        .args(["run", "--no-session", "--layer", "default", "--write"])
        .arg(&started)
        .args(["--", "sh", "-c"])
        .arg(format!(
            "echo 2 > a && touch {}/one && sleep 3 && echo 3 > a",
            started.display()
        ))
        .current_dir(&f.ws)
        .env("HOME", &f.home)
        .env("XDG_STATE_HOME", &f.state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(common::wait_for(Duration::from_secs(20), || started
        .join("one")
        .exists()));
    // apply and discard refuse a layer in use, naming it; the host is unchanged.
    for args in [&["apply"][..], &["discard"], &["apply", "--branch", "x"]] {
        let out = f.sc(args);
        assert_eq!(code(&out), Some(125), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("is in use"),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(std::fs::read_to_string(f.ws.join("a")).unwrap(), "1\n");
    // A second command waits (and says so), then sees the first one's result.
    let t = Instant::now();
    let out = f.run_env("default", "cat a", &cold);
    assert_eq!(ok(&out), "3\n", "the second command ran after the first");
    assert!(
        text(&out.stderr).contains("waiting for layer \"default\""),
        "{}",
        text(&out.stderr)
    );
    assert!(t.elapsed() > Duration::from_millis(500));
    assert!(first.wait().unwrap().success());
    // A wait bounded by --timeout ends with 124, nothing run.
    let mut holder = Command::new(bin())
        .args([
            "run",
            "--no-session",
            "--layer",
            "default",
            "--",
            "sleep",
            "3",
        ])
        .current_dir(&f.ws)
        .env("HOME", &f.home)
        .env("XDG_STATE_HOME", &f.state)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let out = f.sc_env(
        &[
            "run",
            "--layer",
            "default",
            "--timeout",
            "1s",
            "--",
            "sh",
            "-c",
            "echo 9 > a",
        ],
        &cold,
    );
    assert_eq!(code(&out), Some(124), "{}", text(&out.stderr));
    holder.wait().unwrap();
    assert_eq!(
        f.run_ok("default", "cat a"),
        "3\n",
        "the timed-out command never ran"
    );
    // Control: once nobody uses it, apply works.
    ok(&f.sc(&["apply"]));
    assert_eq!(std::fs::read_to_string(f.ws.join("a")).unwrap(), "3\n");
}

#[test]
fn protected_paths_and_env_masks_hold_in_the_merged_view() {
    if !ready() {
        return;
    }
    let canary = common::canary();
    let f = Fixture::git(&format!(
        "mkdir -p app && echo 'TOKEN={canary}' > .env && echo 'TOKEN={canary}' > app/.env.local && echo 1 > a"
    ));
    let before = tree(&f.ws);
    // A .env the command writes in the layer is the layer's; the next run masks it too.
    let out = f.run(
        "default",
        &format!(
            "cat .env app/.env.local; echo x > .git/hooks/pre-commit; echo 'A={canary}2' > new.env.d; mkdir -p sub && echo 'B={canary}3' > sub/.env; echo 2 > a; echo done"
        ),
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains(&canary), "a host .env was readable: {all}");
    assert!(all.contains("Read-only file system"), "{all}");
    assert!(all.contains("done"), "control: the command ran: {all}");
    assert_same(&tree(&f.ws), &before, "host after the run");
    let out = f.run("default", "cat sub/.env; cat new.env.d; cat a");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !all.contains(&format!("{canary}3")),
        "the layer's .env was readable: {all}"
    );
    assert!(
        all.contains(&format!("{canary}2")),
        "control: not a .env name: {all}"
    );
    assert!(all.contains("2\n"), "control: {all}");
    // Nothing was written below the protected path.
    let changes = f.changes(&[]);
    assert!(!changes.contains(".git/hooks"), "{changes}");
    assert!(changes.contains("M  a"), "{changes}");
}

#[test]
fn without_overlayfs_in_a_user_namespace_nothing_runs() {
    if !ready() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    let before = tree(&f.ws);
    // A directory of the host the command can write: its marker proves it ran.
    let out_dir = f.tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let marker = out_dir.join("ran");
    let out_arg = out_dir.to_str().unwrap().to_string();
    let script = format!("touch {} && echo 2 > a", marker.display());
    for (env, tier, want) in [
        (
            ("SHELLCAGE_TEST_KERNEL_RELEASE", "5.10.0-28-amd64"),
            None,
            "needs Linux 5.11 or later; this kernel is 5.10.0-28-amd64",
        ),
        (
            ("SHELLCAGE_TEST_OVERLAY_ERRNO", "1"),
            None,
            "does not let a user namespace mount overlayfs",
        ),
        (("SHELLCAGE_TEST_OVERLAY_ERRNO", "19"), None, "no overlayfs"),
        (
            ("X", ""),
            Some("container"),
            "container tier has no mount namespace",
        ),
    ] {
        let mut args = vec!["run", "--overlay", "--write", &out_arg];
        if let Some(t) = tier {
            args.extend(["--tier", t]);
        }
        args.extend(["--", "sh", "-c", &script]);
        let out = f.sc_env(&args, &[env]);
        let err = text(&out.stderr);
        assert_eq!(code(&out), Some(125), "{env:?} {tier:?}: {err}");
        assert!(err.contains(want) && err.contains("hint"), "{env:?}: {err}");
        assert!(!marker.exists(), "{env:?}: the command ran");
        assert_same(&tree(&f.ws), &before, "host after a refusal");
    }
    // Control: the same command runs on the real kernel.
    ok(&f.sc(&[
        "run",
        "--overlay",
        "--write",
        &out_arg,
        "--",
        "sh",
        "-c",
        &script,
    ]));
    assert!(marker.exists());
    assert_eq!(f.changes(&[]), "M  a\n");
}

#[test]
fn git_cargo_and_npm_work_in_the_layer() {
    if !ready() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    // git: a branch and a commit in the layer; the host's repository is untouched.
    let head = text(&sh(&f.ws, "git rev-parse HEAD").stdout);
    let out = f.run_ok(
        "default",
        &format!(
            "{GIT} switch -qc feature && echo 2 > a && {GIT} commit -qam 'in the layer' && {GIT} stash list && git log --format=%s -1 && git status --porcelain -uno"
        ),
    );
    assert_eq!(out, "in the layer\n");
    assert_eq!(text(&sh(&f.ws, "git rev-parse HEAD").stdout), head);
    // (GIT_OPTIONAL_LOCKS=0: a plain `git status` on the host rewrites
    // .git/index, which apply would then refuse as changed on the host.)
    assert_eq!(
        text(&sh(&f.ws, "GIT_OPTIONAL_LOCKS=0 git status --porcelain").stdout),
        ""
    );
    // npm: a package installed from a local tarball (no network).
    std::fs::create_dir(f.tmp.path().join("pkg")).unwrap();
    let out = f.run_ok(
        "default",
        "mkdir -p vendor/hello && cd vendor/hello && printf '{\"name\":\"hello\",\"version\":\"1.0.0\",\"main\":\"i.js\"}' > package.json && echo 'module.exports=()=>\"hi from npm\"' > i.js && npm pack -q >/dev/null 2>&1 && cd ../.. && npm init -y >/dev/null && npm install --offline --no-audit --no-fund -q ./vendor/hello/hello-1.0.0.tgz >/dev/null 2>&1; node -e 'console.log(require(\"hello\")())'",
    );
    assert_eq!(out, "hi from npm\n");
    assert!(!f.ws.join("node_modules").exists());
    let changes = f.changes(&[]);
    assert!(changes.contains("A  node_modules/hello/i.js"), "{changes}");
    // Apply brings the commit and the install over.
    let out = f.sc(&["apply"]);
    assert!(
        matches!(code(&out), Some(0) | Some(1)),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        text(&sh(&f.ws, "git log --format=%s -1 feature").stdout),
        "in the layer\n"
    );
    assert!(f.ws.join("node_modules/hello/i.js").exists());
}

#[test]
fn cargo_builds_in_the_layer_and_the_host_gets_no_target() {
    if !ready() {
        return;
    }
    let home = std::env::var_os("HOME").unwrap();
    let cargo_ok = Command::new("cargo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !cargo_ok {
        // As the unprivileged CI user the toolchain under /root is unreachable.
        assert!(!common::is_root(), "cargo must be usable as root");
        eprintln!("SKIP: cargo not usable as this user");
        return;
    }
    let f = Fixture::git(
        "mkdir src && printf '[package]\\nname = \"tiny\"\\nversion = \"0.1.0\"\\nedition = \"2021\"\\n' > Cargo.toml && echo 'fn main() { println!(\"built in the layer\"); }' > src/main.rs",
    );
    let out = Command::new(bin())
        .args([
            "run",
            "--layer",
            "default",
            "--",
            "cargo",
            "run",
            "--offline",
            "-q",
        ])
        .current_dir(&f.ws)
        .env("HOME", &home)
        .env("XDG_STATE_HOME", &f.state)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(ok(&out), "built in the layer\n");
    assert!(!f.ws.join("target").exists(), "the build reached the host");
    assert!(f.changes(&[]).contains("A  Cargo.lock"));
}

// ---- attack cases (each with a control) ----

#[test]
fn symlinks_the_layer_plants_are_applied_as_links_and_never_followed() {
    if !ready() {
        return;
    }
    let f = Fixture::git("mkdir d && echo 1 > d/f && echo 1 > a");
    let outside = f.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "host secret\n").unwrap();
    let o = outside.display();
    // In the sandbox the outside directory is not visible: writing through a
    // link to it fails there. The links themselves land in the layer.
    let out = f.run(
        "default",
        &format!(
            "ln -s {o} out && ln -s {o}/secret a2 && rm -rf d && ln -s {o} d && echo pwned > d/new; echo pwned > out/secret; ln -s d/f inside; echo ok"
        ),
    );
    assert!(text(&out.stdout).contains("ok"), "{}", text(&out.stderr));
    let changes = f.changes(&[]);
    for l in ["A  out", "A  a2", "A  d\n", "D  d/f", "A  inside"] {
        assert!(changes.contains(l), "{l}: {changes}");
    }
    ok(&f.sc(&["apply"]));
    // Applied as links (what the user reviewed), nothing written through them.
    assert_eq!(std::fs::read_link(f.ws.join("out")).unwrap(), outside);
    assert_eq!(std::fs::read_link(f.ws.join("d")).unwrap(), outside);
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "nothing new in the outside directory"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).unwrap(),
        "host secret\n"
    );
    // Control: a link inside the workspace is applied the same way.
    assert_eq!(
        std::fs::read_link(f.ws.join("inside")).unwrap(),
        std::path::Path::new("d/f")
    );
}

#[test]
fn overlay_metadata_cannot_be_forged_through_the_mount() {
    if !ready() {
        return;
    }
    let f = Fixture::git(
        "mkdir -p keep && echo kept > keep/x && echo 1 > a && mkdir -p e && echo 1 > e/y",
    );
    // The command tries to mark `keep` opaque (hiding the host's files from
    // the merged view and from apply's scan), plant a redirect, turn `a` into
    // a whiteout by xattr, and make a 0/0 device (a whiteout) directly.
    let out = f.run(
        "default",
        "python3 - <<'EOF'\nimport os\nfor (p, n, v) in [('keep', 'user.overlay.opaque', b'y'), ('keep', 'user.overlay.redirect', b'/etc'), ('a', 'user.overlay.whiteout', b'')]:\n    try:\n        os.setxattr(p, n, v, follow_symlinks=False); print('call ok', p, n)\n    except OSError as e:\n        print('refused', p, n, e.errno)\ntry:\n    os.mknod('wh', 0o600 | 0o020000, os.makedev(0, 0)); print('made whiteout')\nexcept OSError as e:\n    print('refused mknod', e.errno)\nEOF\nrm -rf e && mkdir e && echo 2 > e/z",
    );
    let so = text(&out.stdout);
    assert!(!so.contains("made whiteout"), "{so}");
    // Whatever the calls answered (Linux 6.7+ stores them escaped, as
    // `user.overlay.overlay.*`; older kernels refuse them), the upper
    // directory holds no overlay xattr of the command's making ...
    let upper = f.begin("default").upper();
    for p in ["keep", "a"] {
        let out = Command::new("python3")
            .args([
                "-c",
                "import os,sys; print(sorted(os.listxattr(sys.argv[1], follow_symlinks=False)))",
            ])
            .arg(upper.join(p))
            .output()
            .unwrap();
        let names = text(&out.stdout);
        for forged in [
            "'user.overlay.opaque'",
            "'user.overlay.redirect'",
            "'user.overlay.whiteout'",
        ] {
            assert!(!names.contains(forged), "{p}: {names} ({so})");
        }
    }
    // ... so the host's `keep/x` and `a` are still in the merged view and not
    // deleted by apply; the honest opaque directory (`rm -rf e && mkdir e`,
    // control) is read as the kernel reads it.
    assert_eq!(f.run_ok("default", "cat keep/x a; ls e"), "kept\n1\nz\n");
    assert_eq!(lines(&f.changes(&[])), lines("D  e/y\nA  e/z\n"), "{so}");
    ok(&f.sc(&["apply"]));
    assert_eq!(
        std::fs::read_to_string(f.ws.join("keep/x")).unwrap(),
        "kept\n"
    );
    assert_eq!(std::fs::read_to_string(f.ws.join("a")).unwrap(), "1\n");
    assert!(
        !f.ws.join("e/y").exists() && f.ws.join("e/z").exists(),
        "control"
    );
}

#[test]
fn setuid_files_and_device_nodes_from_the_layer_never_reach_the_host() {
    if !ready() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    let out = f.run(
        "default",
        "cp /bin/true su && chmod 4755 su; chmod 2755 su; mknod null c 1 3; mkfifo fifo; cp /bin/true plain && chmod 755 plain; ls -l su null fifo plain; echo done",
    );
    assert!(text(&out.stdout).contains("done"), "{}", text(&out.stderr));
    let out = f.sc(&["apply"]);
    let err = text(&out.stderr);
    assert!(
        !f.ws.join("null").exists(),
        "a device node was made on the host"
    );
    assert!(
        !f.ws.join("fifo").exists(),
        "a fifo was made on the host: {err}"
    );
    assert!(err.contains("fifo"), "named: {err}");
    let su = std::fs::metadata(f.ws.join("su")).unwrap();
    assert_eq!(su.mode() & 0o7000, 0, "setuid/setgid reached the host");
    // Control: the executable bit of an honest file is kept.
    assert_eq!(
        std::fs::metadata(f.ws.join("plain"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
}

#[test]
fn a_host_file_swapped_between_changes_and_apply_is_refused_and_never_followed() {
    if !ready() {
        return;
    }
    let f = Fixture::git("echo 1 > a && echo 1 > b && mkdir d && echo 1 > d/c");
    f.run_ok("default", "echo 2 > a && echo 2 > b && echo 2 > d/c");
    assert_eq!(lines(&f.changes(&[])), lines("M  a\nM  b\nM  d/c\n"));
    // Meanwhile on the host: `a` edited, `b` swapped for a link to a file
    // outside, `d` swapped for a link to a directory outside.
    let outside = f.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), "victim\n").unwrap();
    std::fs::write(outside.join("c"), "victim c\n").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(f.ws.join("a"), "user edit\n").unwrap();
    std::fs::remove_file(f.ws.join("b")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), f.ws.join("b")).unwrap();
    std::fs::rename(f.ws.join("d"), f.tmp.path().join("d-moved")).unwrap();
    std::os::unix::fs::symlink(&outside, f.ws.join("d")).unwrap();
    let out = f.sc(&["apply"]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), Some(1), "{err}");
    for p in ["a", "b", "d"] {
        assert!(err.contains(&format!(" {p}")), "{p} named: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(f.ws.join("a")).unwrap(),
        "user edit\n"
    );
    // --force replaces the links; it never writes through them.
    let out = f.sc(&["apply", "--force"]);
    ok(&out);
    assert_eq!(
        std::fs::read_to_string(outside.join("victim")).unwrap(),
        "victim\n"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("c")).unwrap(),
        "victim c\n"
    );
    assert!(
        !std::fs::symlink_metadata(f.ws.join("b"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(f.ws.join("b")).unwrap(), "2\n");
    assert_eq!(
        std::fs::read_to_string(f.ws.join("d/c")).unwrap(),
        "2\n",
        "control"
    );
}

#[test]
fn hard_links_made_in_the_layer_never_link_host_files() {
    if !ready() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    let outside = f.tmp.path().join("outside-file");
    std::fs::write(&outside, "outside\n").unwrap();
    let out = f.run(
        "default",
        &format!(
            "ln a hl && ln {} hl2; echo edited >> hl; cat a; echo done",
            outside.display()
        ),
    );
    let so = text(&out.stdout);
    assert!(so.contains("done"), "{}", text(&out.stderr));
    // In the layer a link of a host file is a copy-up plus a link there.
    assert_eq!(so, "1\nedited\ndone\n");
    ok(&f.sc(&["apply"]));
    let a = std::fs::metadata(f.ws.join("a")).unwrap();
    let hl = std::fs::metadata(f.ws.join("hl")).unwrap();
    assert_ne!(a.ino(), hl.ino(), "apply made a hard link on the host");
    assert_eq!((a.nlink(), hl.nlink()), (1, 1));
    assert!(!f.ws.join("hl2").exists(), "the outside file was linked");
    assert_eq!(std::fs::metadata(&outside).unwrap().nlink(), 1);
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "outside\n");
    // Control: content as the command left it.
    assert_eq!(
        std::fs::read_to_string(f.ws.join("hl")).unwrap(),
        "1\nedited\n"
    );
}

#[test]
fn git_hooks_and_config_changed_in_the_layer_are_never_applied_unnamed() {
    if !ready() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    let marker = f.tmp.path().join("payload-ran");
    // Through the mount: the protected paths are read-only in the merged view.
    let out = f.run(
        "default",
        &format!(
            "printf '#!/bin/sh\\ntouch {m}\\n' > .git/hooks/post-checkout; chmod +x .git/hooks/post-checkout; git config core.fsmonitor 'touch {m}'; mkdir -p sub && cd sub && git init -q && git config core.hooksPath /tmp && cd .. && echo 2 > a; echo done",
            m = marker.display()
        ),
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        all.contains("done") && all.contains("Read-only file system"),
        "{all}"
    );
    // A nested repository's config is the layer's: apply names and skips it.
    let out = f.sc(&["apply"]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), Some(1), "{err}");
    assert!(err.contains("sub/.git/config"), "named: {err}");
    assert!(!f.ws.join(".git/hooks/post-checkout").exists());
    assert!(!f.ws.join("sub/.git/config").exists());
    assert!(!text(&sh(&f.ws, "git config --get core.fsmonitor || true").stdout).contains("touch"));
    sh(
        &f.ws,
        "git status -s >/dev/null; cd sub && git status -s >/dev/null 2>&1 || true",
    );
    assert!(!marker.exists(), "a payload ran on the host");
    // Control: the honest change was applied.
    assert_eq!(std::fs::read_to_string(f.ws.join("a")).unwrap(), "2\n");
}

/// The session id of a `--report json` run (its stderr's last line).
fn session_of(out: &std::process::Output) -> Option<String> {
    let err = text(&out.stderr);
    let line = err.lines().rev().find(|l| l.starts_with('{'))?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v["session"]["id"].as_str().map(str::to_owned)
}

#[test]
fn a_session_shares_one_overlay_mount_and_lets_it_go_for_apply() {
    if !ready() {
        return;
    }
    let warm = [("SHELLCAGE_SESSION", "auto")];
    let canary = common::canary();
    let f = Fixture::git("echo 1 > a && echo old > h");
    let before = tree(&f.ws);
    // Every command with the same flags: a command of another policy is another session,
    // which cannot mount the layer while this one holds it.
    fn args(script: &str) -> Vec<&str> {
        let mut a = vec!["run", "--layer", "default", "--timeout", "20s"];
        a.extend(["--report", "json", "--", "sh", "-c", script]);
        a
    }
    let run = |script: &str| f.sc_env(&args(script), &warm);
    let out = run("echo 2 > a; cat h");
    assert_eq!(ok(&out), "old\n", "{}", text(&out.stderr));
    let id = session_of(&out).expect("the first command ran in a session");
    assert_same(&tree(&f.ws), &before, "host after a warm command");

    // Two commands at once see each other's writes while both run: one mount (cold
    // runs of one layer would take turns, and this would time out).
    let spawn = |script: &str| {
        f.command(&args(script), &warm)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // (Each file is written, then renamed into place: seen only whole.)
    let a = spawn(
        "echo ping > a.tmp && mv a.tmp from_a; while [ ! -e from_b ]; do sleep 0.05; done; cat from_b",
    );
    let b = spawn(
        "while [ ! -e from_a ]; do sleep 0.05; done; cat from_a; echo pong > b.tmp && mv b.tmp from_b",
    );
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(ok(&a), "pong\n", "{}", text(&a.stderr));
    assert_eq!(ok(&b), "ping\n", "{}", text(&b.stderr));
    assert_eq!(session_of(&a).as_deref(), Some(id.as_str()));
    assert_eq!(session_of(&b).as_deref(), Some(id.as_str()));

    // A .env a command writes in the layer is hidden from the session's next command.
    let out = run(&format!(
        "mkdir -p deep/er && echo 'K={canary}' > deep/er/.env && echo made"
    ));
    assert_eq!(ok(&out), "made\n", "{}", text(&out.stderr));
    let out = run("cat deep/er/.env; cat a");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !all.contains(&canary),
        "the layer's new .env was readable: {all}"
    );
    assert!(text(&out.stdout).contains('2'), "control: {all}");
    assert_eq!(
        session_of(&out).as_deref(),
        Some(id.as_str()),
        "the same session"
    );

    // A later command of the session: protected paths, present or missing on the host,
    // still refuse writes in the merged view, and no descriptor of the session's (the
    // layer's lock) reaches the command.
    let out = run(
        "echo x > .git/hooks/pre-commit; echo x > lefthook.yml; mkdir -p .vscode && echo x > .vscode/settings.json; ls /proc/self/fd | tr '\\n' ' '; echo; echo done",
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(
        session_of(&out).as_deref(),
        Some(id.as_str()),
        "the same session"
    );
    assert!(all.contains("done"), "control: it ran: {all}");
    // (A missing name's placeholder reads as absent: writes through it fail with
    // ENOENT; a name on the host is a read-only mount.)
    assert!(all.contains("pre-commit: Read-only file system"), "{all}");
    assert!(all.contains("cannot create lefthook.yml"), "{all}");
    assert!(all.contains("cannot create directory"), "{all}");
    let fds = text(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    assert_eq!(
        fds, "0 1 2 3",
        "the command's descriptors (3: ls's own): {all}"
    );
    let changes = f.changes(&[]);
    for p in [".git/hooks/pre-commit", "lefthook.yml", ".vscode"] {
        assert!(!changes.contains(p), "{p} in the layer: {changes}");
    }
    assert!(changes.contains("from_a"), "control: {changes}");

    // A change on the host ends the session: the next command mounts the layer over
    // the host's tree as it is now. (A file the session's mount has looked up, replaced
    // the way editors and git save: the mount would keep showing the old one.)
    std::fs::write(f.ws.join("h.new"), "new\n").unwrap();
    std::fs::rename(f.ws.join("h.new"), f.ws.join("h")).unwrap();
    let out = run("cat h");
    assert_eq!(ok(&out), "new\n", "{}", text(&out.stderr));
    assert!(
        session_of(&out).is_some(),
        "warm again: {}",
        text(&out.stderr)
    );

    // apply refuses while a command of the session runs, and the host is unchanged.
    let slow = spawn("touch running && sleep 3 && echo 4 > a");
    assert!(common::wait_for(Duration::from_secs(20), || {
        ok(&f.sc(&["changes"])).contains("running")
    }));
    let refused = f.sc(&["apply"]);
    assert_eq!(code(&refused), Some(125), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("is in use"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(std::fs::read_to_string(f.ws.join("a")).unwrap(), "1\n");
    let slow = slow.wait_with_output().unwrap();
    assert_eq!(
        code(&slow),
        Some(0),
        "the running command went on: {}",
        text(&slow.stderr)
    );

    // Idle now: apply ends the session (not its idle time, 30 s) and applies.
    let t = Instant::now();
    let applied = f.sc(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied.stderr));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(std::fs::read_to_string(f.ws.join("a")).unwrap(), "4\n");
    assert_eq!(
        std::fs::read_to_string(f.ws.join("from_a")).unwrap(),
        "ping\n"
    );
    let listed = text(&f.sc(&["session", "list"]).stdout);
    assert!(
        !listed.contains(f.ws.to_str().unwrap()),
        "the session let its layer go: {listed}"
    );

    // A cold command on the layer does not wait for an idle session's idle time.
    let out = run("echo 5 > a");
    assert!(session_of(&out).is_some(), "{}", text(&out.stderr));
    let t = Instant::now();
    let out = f.sc_env(
        &[
            "run",
            "--no-session",
            "--layer",
            "default",
            "--timeout",
            "20s",
            "--",
            "cat",
            "a",
        ],
        &warm,
    );
    assert_eq!(ok(&out), "5\n", "{}", text(&out.stderr));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // `session stop` with a command running: once it returns, no process of the session
    // is left (none still holds the overlay mount), and a cold command takes the layer
    // without waiting.
    let running = spawn("sleep 31.25 & touch stop-me; wait");
    assert!(common::wait_for(Duration::from_secs(20), || {
        ok(&f.sc(&["changes"])).contains("stop-me")
    }));
    let stopped = f.sc(&["session", "stop", f.ws.to_str().unwrap()]);
    assert_eq!(code(&stopped), Some(0), "{}", text(&stopped.stderr));
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("sleep 31.25"))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "left after session stop");
    let _ = running.wait_with_output();
    let out = f.sc_env(
        &[
            "run",
            "--no-session",
            "--layer",
            "default",
            "--",
            "cat",
            "a",
        ],
        &warm,
    );
    assert_eq!(ok(&out), "5\n", "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("waiting for layer"),
        "{}",
        text(&out.stderr)
    );
}

/// The server's pid in a report's session section.
fn server_of(out: &std::process::Output) -> Option<i32> {
    let err = text(&out.stderr);
    let line = err.lines().rev().find(|l| l.starts_with('{'))?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v["session"]["server"].as_i64().map(|p| p as i32)
}

#[test]
fn a_command_that_reaches_a_session_as_it_ends_runs_in_the_next_one() {
    if !ready() {
        return;
    }
    use std::io::BufRead;
    let warm = [("SHELLCAGE_SESSION", "auto")];
    let f = Fixture::git("echo old > h");
    let args = |script: &'static str| {
        vec![
            "run",
            "--layer",
            "default",
            "--timeout",
            "20s",
            "--report",
            "json",
            "--",
            "sh",
            "-c",
            script,
        ]
    };
    let out = f.sc_env(&args("cat h"), &warm);
    assert_eq!(ok(&out), "old\n", "{}", text(&out.stderr));
    let (id, server) = (session_of(&out).unwrap(), server_of(&out).unwrap());
    // The server is stopped, the host file changes, and a command connects while the
    // server has not seen the change: its connection waits in the listener's queue. The
    // server then sees the change first, ends, and never takes it (CI saw this order by
    // chance, and the command ran cold).
    let pid = nix::unistd::Pid::from_raw(server);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    std::fs::write(f.ws.join("h.new"), "new\n").unwrap();
    std::fs::rename(f.ws.join("h.new"), f.ws.join("h")).unwrap();
    let mut child = f
        .command(&args("cat h"), &[warm[0], ("RUST_LOG", "shellcage=debug")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        said.push_str(&line);
        if line.contains("client: request sent") {
            break;
        }
        line.clear();
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(said.contains("client: request sent"), "{said}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let status = child.wait().unwrap();
    let out = std::process::Output {
        status,
        stdout: stdout.into_bytes(),
        stderr: format!("{said}{rest}").into_bytes(),
    };
    assert_eq!(ok(&out), "new\n", "{}", text(&out.stderr));
    assert_eq!(
        session_of(&out).as_deref(),
        Some(id.as_str()),
        "it ran cold: {}",
        text(&out.stderr)
    );
    assert_ne!(server_of(&out), Some(server), "the ended session's server");
    assert!(
        text(&out.stderr).contains("nothing was started"),
        "control: the first session was reached and took nothing: {}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("waiting for layer"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_layer_let_go_within_moments_is_waited_for_and_the_command_runs_warm() {
    if !ready() {
        return;
    }
    use nix::fcntl::{Flock, FlockArg};
    let warm = [("SHELLCAGE_SESSION", "auto")];
    let f = Fixture::git("echo 1 > a");
    let args = [
        "run", "--layer", "default", "--report", "json", "--", "cat", "a",
    ];
    // The layer exists (a cold run made it) and no session holds it.
    ok(&f.sc(&["run", "--layer", "default", "--no-session", "--", "true"]));
    let lock = find_file(&f.state.join("shellcage/layers"), "lock").expect("the layer's lock");
    // Held by a process that is no session (as a session that has just let it go and
    // removed its description looks by the time the new one lists the holders), and let
    // go 0.5 s later: the new session waits for it rather than sending the command cold.
    let held = Flock::lock(
        std::fs::OpenOptions::new().write(true).open(&lock).unwrap(),
        FlockArg::LockExclusiveNonblock,
    )
    .map_err(|(_, e)| e)
    .unwrap();
    let child = f
        .command(&args, &warm)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert_eq!(ok(&out), "1\n", "{}", text(&out.stderr));
    assert!(
        session_of(&out).is_some(),
        "it ran cold: {}",
        text(&out.stderr)
    );
}

/// The first file named `name` below `dir`.
fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

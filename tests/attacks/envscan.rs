//! The `.env` scan fails closed (issue 8, item 4): no file stays readable
//! because the scan stopped, could not read a directory, or met a link.
//! Each case failed on main before the fix (see the commit) and passes now;
//! each has a host control that reads the same secret.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::harness::*;

/// `dirs` directories in a tree under `ws/root` (fan-out 10 per level), made fast.
fn wide_tree(ws: &Path, root: &str, dirs: usize) {
    let mut made = 0;
    let mut level = vec![ws.join(root)];
    std::fs::create_dir_all(&level[0]).unwrap();
    while made < dirs {
        let mut next = Vec::new();
        for d in &level {
            for i in 0..10 {
                if made == dirs {
                    break;
                }
                let p = d.join(format!("d{i}"));
                std::fs::create_dir(&p).unwrap();
                next.push(p);
                made += 1;
            }
        }
        level = next;
    }
}

fn report(out: &Out) -> serde_json::Value {
    let line = out.stderr.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|_| panic!("no JSON report: {out:?}"))
}

// (a) main stopped at depth 4 and 4,000 directories without a word: in a
// 6,000-directory workspace most .env files stayed readable while the report
// said secrets_hidden: full. Now the whole tree is scanned.
attack!(secret_env_scan_large_deep_tree, "secrets", |c| {
    let ws = c.ws.path().to_path_buf();
    wide_tree(&ws, "big", 6000);
    let files = [
        ".env",
        "big/.env",
        "big/d9/.env.local",
        "big/d9/d9/d9/.env",
        "big/d5/d5/d5/.env.prod",
        "big/d9/d9/d9/d9/.env",
        "deep/1/2/3/4/5/.env",
        "deep/1/2/3/4/5/6/7/8/.env.test",
        "zz/a/b/c/d/e/.env",
        "zz/.env.production",
        "apps/web/.env",
        "apps/api/.env",
        "apps/api/src/.env.local",
        "zz/y/x/.env",
        "zz/y/x/w/v/.env",
    ];
    for f in files {
        c.ws.write(f, &format!("K={} {f}\n", c.canary));
    }
    let script: String = files
        .iter()
        .map(|f| format!("cat {f} 2>/dev/null; "))
        .chain(["true".to_string()])
        .collect();
    let out = c.sc(&["--report", "json"], &script);
    let json = report(&out);
    c.seen(&format!(
        "{} dirs read, {} hidden",
        json["env_files"]["dirs_read"], json["env_files"]["hidden"]
    ));
    c.assert_no_canary(&out);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(json["env_files"]["hidden"].as_array().unwrap().len(), 15);
    assert!(json["env_files"]["dirs_read"].as_u64().unwrap() > 6000);
    assert!(json["env_files"].get("truncated").is_none(), "{json}");
    // Control: every one of them is readable on the host.
    let control = c.host(&script);
    assert_eq!(control.stdout.matches(&c.canary).count(), 15, "{control:?}");
});

// (b) a command filled main's budget (4,100 directories sorting first) so the
// next run missed a .env. Now the same tree is simply scanned; and a budget the
// profile sets lower is never a silent miss: the run refuses, naming where.
attack!(secret_env_scan_budget_filled_by_command, "secrets", |c| {
    c.ws.write("zzz/.env", &format!("K={}\n", c.canary));
    // The attacker's fill: directories that readdir returns before zzz (on
    // this ext4, about half of f10..f99; none on tmpfs, which lists in creation
    // order), holding 4,100 directories between them.
    let fill = c.sc(
        &[],
        "for i in $(seq 10 99); do mkdir f$i; done; \
         before=$(ls -f | sed -n '/^zzz$/q;/^f/p'); k=$(echo $before | wc -w); \
         if [ $k -gt 0 ]; then per=$((4100 / k + 1)); \
           for d in $before; do (cd $d && seq 1 $per | xargs mkdir); done; fi; echo made $k",
    );
    assert!(fill.stdout.contains("made"), "{fill:?}");
    let out = c.sc(&[], "cat zzz/.env; echo rc=$?");
    c.seen(out.all().trim());
    c.assert_no_canary(&out);
    assert!(out.stdout.contains("rc=1"), "{out:?}");
    // A profile with a small budget: refused before anything runs (cold; a session
    // keeps an index of the whole workspace, with no budget: the file stays hidden).
    c.plant(
        ".config/shellcage/profiles/small-scan.toml",
        "version = 1\nextends = \"dev\"\n[filesystem.env_files]\nmax_dirs = 1000\n",
    );
    if std::env::var("SHELLCAGE_SESSION").is_ok_and(|v| v == "auto") {
        let warm = c.sc(&["--profile", "small-scan"], "cat zzz/.env; echo rc=$?");
        c.assert_no_canary(&warm);
        assert!(warm.stdout.contains("rc=1"), "{warm:?}");
    }
    let refused = c.sc(
        &["--no-session", "--profile", "small-scan"],
        "touch ran; cat zzz/.env",
    );
    c.assert_no_canary(&refused);
    assert_eq!(refused.code, Some(125), "{refused:?}");
    assert!(
        refused.stderr.contains("more than 1000 directories")
            && refused.stderr.contains("filesystem.env_files.max_dirs")
            && refused
                .stderr
                .contains(&format!("the largest part: {}/f", c.ws.path().display())),
        "{refused:?}"
    );
    assert!(!c.ws.path().join("ran").exists(), "the command ran");
    // Control: the host reads it.
    c.assert_control_leaks(&c.host("cat zzz/.env"));
});

// (c) as an unprivileged user, a command made the directory above a .env
// unreadable (chmod 000): main's next scan skipped it silently, and the next
// command chmod'ed it back and read the file. Now an unreadable directory is
// hidden whole for the run (and named on stderr). As root the scan reads any
// directory, so the case only has teeth unprivileged; it runs in both.
attack!(secret_env_scan_unreadable_dir, "secrets", |c| {
    let env =
        c.ws.write("locked/inner/.env", &format!("K={}\n", c.canary));
    let locked = c.ws.path().join("locked");
    let first = c.sc(&[], "chmod 000 locked; echo chmod=$?");
    assert!(first.stdout.contains("chmod=0"), "{first:?}");
    let out = c.sc(
        &[],
        "chmod 755 locked 2>&1; cat locked/inner/.env; echo rc=$?",
    );
    let mode = std::fs::symlink_metadata(&locked)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    c.seen(out.all().trim());
    c.assert_no_canary(&out);
    assert!(out.stdout.contains("rc=1"), "{out:?}");
    if !nix::unistd::geteuid().is_root() {
        assert_eq!(mode, 0o000, "the chmod back reached the host");
        assert!(
            out.stderr
                .contains("the .env scan cannot read them: locked"),
            "{out:?}"
        );
    }
    assert!(env.exists());
    // Control: on the host the same two steps read the secret.
    let control = c.host("chmod 000 locked; chmod 755 locked; cat locked/inner/.env");
    c.assert_control_leaks(&control);
});

// (d) a .env that is a symbolic link (.env -> config/production) was not
// masked on main: the link and its target both read the secret.
attack!(secret_env_scan_symlink, "secrets", |c| {
    c.ws.write("config/production", &format!("K={}\n", c.canary));
    c.ws.write("apps/web/real.env", &format!("K={}\n", c.canary));
    let ws = c.ws.path();
    std::os::unix::fs::symlink("config/production", ws.join(".env")).unwrap();
    std::os::unix::fs::symlink(ws.join("apps/web/real.env"), ws.join("apps/web/.env.local"))
        .unwrap();
    // Work control: a directory named .env (a virtualenv) is still usable.
    c.ws.write(".env.d/ok", "fine\n");
    c.ws.write("venv-named/.env/bin/activate", "ACTIVATE\n");
    let script = "cat .env; cat config/production; cat apps/web/.env.local; \
                  cat apps/web/real.env; cat venv-named/.env/bin/activate";
    let out = c.sc(&[], script);
    c.seen(out.all().trim());
    c.assert_no_canary(&out);
    assert!(out.stdout.contains("ACTIVATE"), "{out:?}");
    // Host side unchanged.
    assert!(
        std::fs::symlink_metadata(ws.join(".env"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let control = c.host(script);
    assert_eq!(control.stdout.matches(&c.canary).count(), 4, "{control:?}");
});

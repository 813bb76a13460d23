//! Profiles and bad input: the readonly profile, profile errors and bad flags
//! exit 125 naming the file, key and value with nothing run, and the
//! `profile list | show | check` subcommands.
use crate::common::*;

#[test]
fn readonly_profile_refuses_workspace_writes() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    ws.write("file", "original");
    let out = run_in(
        &ws,
        &home,
        &["--profile", "readonly"],
        &format!(
            "cat file; echo; {PY} -c 'import os\nfor p in (\"file\", \"new\"):\n  try: os.open(p, os.O_WRONLY|os.O_CREAT)\n  except OSError as e: print(p, e.errno)'"
        ),
    );
    expect_code(&out, 0);
    assert_eq!(
        stdout(&out),
        "original\nfile 30\nnew 30\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("file")).unwrap(),
        "original"
    );
    assert!(!ws.path().join("new").exists());
}

/// A bad profile: exit 125, the message names file, key and value, and the
/// command (which would create a marker file) never runs.
#[test]
fn bad_profiles_exit_125_and_nothing_runs() {
    let (ws, home) = (Workspace::new(), Home::new());
    let cases = [
        (
            "bad-size.toml",
            "version = 1\nextends = \"dev\"\n[limits]\ntmp_size = \"banana\"\n",
            &["bad-size.toml", "tmp_size", "banana"][..],
        ),
        (
            "bad-key.toml",
            "version = 1\nextends = \"dev\"\nbogus = 1\n",
            &["bad-key.toml", "bogus"][..],
        ),
        (
            "bad-version.toml",
            "version = 2\nextends = \"dev\"\n",
            &["bad-version.toml", "version", "2"][..],
        ),
        (
            "bad-net.toml",
            "version = 1\nextends = \"dev\"\n[network]\nmode = \"everywhere\"\n",
            &["bad-net.toml", "mode", "everywhere"][..],
        ),
        (
            "bad-path.toml",
            "version = 1\nextends = \"dev\"\n[filesystem]\nread = [\"relative/path\"]\n",
            &["bad-path.toml", "relative/path"][..],
        ),
    ];
    for (name, text, words) in cases {
        let file = home.write(name, text);
        let out = shellcage(
            Some(home.path()),
            &[
                "run",
                "--workspace",
                ws.path().to_str().unwrap(),
                "--profile",
                file.to_str().unwrap(),
                "--",
                "touch",
                "marker",
            ],
        )
        .current_dir(ws.path())
        .output()
        .unwrap();
        expect_code(&out, 125);
        let err = stderr(&out);
        for w in words {
            assert!(err.contains(w), "{name}: '{w}' not in: {err}");
        }
        assert_eq!(err.matches(name).count(), 1, "{name}: said twice: {err}");
        assert!(
            !ws.path().join("marker").exists(),
            "{name}: the command ran"
        );
        // `profile check` gives the same verdict.
        let out = shellcage(
            Some(home.path()),
            &["profile", "check", file.to_str().unwrap()],
        )
        .output()
        .unwrap();
        expect_code(&out, 125);
    }
}

#[test]
fn missing_parent_profile_exits_125() {
    // Names the missing value. (It does not name the file holding the
    // `extends` line yet; see the report.)
    let (ws, home) = (Workspace::new(), Home::new());
    let file = home.write(
        "bad-parent.toml",
        "version = 1\nextends = \"no-such-profile\"\n",
    );
    let out = shellcage(
        Some(home.path()),
        &[
            "run",
            "--workspace",
            ws.path().to_str().unwrap(),
            "--profile",
            file.to_str().unwrap(),
            "--",
            "touch",
            "marker",
        ],
    )
    .current_dir(ws.path())
    .output()
    .unwrap();
    expect_code(&out, 125);
    assert!(stderr(&out).contains("no-such-profile"), "{}", stderr(&out));
    assert!(!ws.path().join("marker").exists());
}

#[test]
fn bad_flags_exit_125_and_nothing_runs() {
    let (ws, home) = (Workspace::new(), Home::new());
    let ws_s = ws.path().to_str().unwrap();
    for (flags, word) in [
        (&["--timeout", "10x"][..], "10x"),
        (&["--timeout", "-1s"][..], "-1s"),
        (&["--net", "bogus"][..], "bogus"),
        (&["--env", "A-B=1"][..], "A-B"),
        (&["--env", "=x"][..], "=x"),
        (&["--workspace", "/nonexistent/ws"][..], "/nonexistent/ws"),
        (&["--read", "/nonexistent/r"][..], "/nonexistent/r"),
        (&["--profile", "no-such-profile"][..], "no-such-profile"),
    ] {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "touch", "marker"]);
        let out = shellcage(Some(home.path()), &args)
            .env("SHELLCAGE_WORKSPACE", ws_s)
            .current_dir(ws.path())
            .output()
            .unwrap();
        expect_code(&out, 125);
        assert!(stderr(&out).contains(word), "{flags:?}: {}", stderr(&out));
        assert!(
            !ws.path().join("marker").exists(),
            "{flags:?}: the command ran"
        );
    }
}

#[test]
fn profile_list_show_check() {
    let home = Home::new();
    let out = shellcage(Some(home.path()), &["profile", "list"])
        .output()
        .unwrap();
    expect_code(&out, 0);
    let listing = stdout(&out);
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for n in ["dev", "readonly", "ci"] {
        assert!(names.contains(&n), "{}", stdout(&out));
    }
    let ws = Workspace::new();
    let out = shellcage(
        Some(home.path()),
        &["profile", "show", "readonly", "--json"],
    )
    .current_dir(ws.path())
    .output()
    .unwrap();
    expect_code(&out, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["profile"], "readonly");
    let good = home.write(
        "good.toml",
        "version = 1\nextends = \"dev\"\n[limits]\ntmp_size = \"8M\"\n",
    );
    let out = shellcage(
        Some(home.path()),
        &["profile", "check", good.to_str().unwrap()],
    )
    .current_dir(ws.path())
    .output()
    .unwrap();
    expect_code(&out, 0);
    assert!(stdout(&out).contains("ok"), "{}", stdout(&out));
}

#[test]
fn profile_in_the_workspace_is_never_loaded_by_name() {
    needs_sandbox!();
    // An agent can write the workspace: a profile there must not be picked up
    // by name (only by an explicit path).
    let (ws, home) = (Workspace::new(), Home::new());
    ws.write(
        ".shellcage/profiles/evil.toml",
        "version = 1\nextends = \"dev\"\n[network]\nmode = \"host\"\n",
    );
    ws.write(
        "evil.toml",
        "version = 1\nextends = \"dev\"\n[network]\nmode = \"host\"\n",
    );
    let out = run_in(&ws, &home, &["--profile", "evil"], "touch marker");
    expect_code(&out, 125);
    assert!(!ws.path().join("marker").exists());
}

/// The kernel's Landlock ABI, asked on the host (landlock_create_ruleset with
/// LANDLOCK_CREATE_RULESET_VERSION; syscall 444 on x86_64 and aarch64).
fn host_landlock_abi() -> i64 {
    let out = std::process::Command::new(PY)
        .args([
            "-c",
            "import ctypes; print(max(0, ctypes.CDLL(None).syscall(444, None, 0, 1)))",
        ])
        .output()
        .unwrap();
    stdout(&out).trim().parse().unwrap()
}

/// The last line of stderr that is a JSON object: `--report json`.
fn report(out: &std::process::Output) -> serde_json::Value {
    let err = stderr(out);
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("{}");
    serde_json::from_str(line).unwrap()
}

#[test]
fn the_report_states_the_landlock_status_the_sandbox_got() {
    needs_sandbox!();
    let abi = host_landlock_abi();
    if !require(abi >= 1, "landlock") {
        return;
    }
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(&ws, &home, &["--report", "json"], "true");
    expect_code(&out, 0);
    let ll = &report(&out)["landlock"];
    assert_eq!(ll["abi"], abi, "{ll}");
    // The rights asked for are those of ABI 6: all of them on ABI >= 6.
    let whole = if abi >= 6 { "full" } else { "partial" };
    assert_eq!(ll["ruleset"], whole, "{ll}");
    let fs = if abi >= 5 { "full" } else { "partial" };
    assert_eq!(ll["filesystem"], fs, "{ll}");
    assert_eq!(ll["tcp"], if abi >= 4 { "partial" } else { "no" }, "{ll}");
    assert_eq!(ll["scopes"], if abi >= 6 { "full" } else { "no" }, "{ll}");
    // `--net loopback` asks for no TCP rule: the status says so.
    let out = run_in(
        &ws,
        &home,
        &["--report", "json", "--net", "loopback"],
        "true",
    );
    expect_code(&out, 0);
    assert_eq!(report(&out)["landlock"]["tcp"], "no", "{}", stderr(&out));
}

#[test]
fn doctor_shows_what_a_landlock_ruleset_gets_here() {
    let abi = host_landlock_abi();
    let out = shellcage(None, &["doctor", "--json"]).output().unwrap();
    let d: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let trial = &d["landlock_trial"];
    assert_eq!(trial["abi"], abi, "{trial}");
    assert_eq!(d["landlock_abi"], abi);
    if abi >= 6 {
        assert_eq!(trial["ruleset"], "full", "{trial}");
        assert_eq!(trial["scopes"], "full", "{trial}");
    }
    let out = shellcage(None, &["doctor"]).output().unwrap();
    assert!(
        stdout(&out).contains("a run's ruleset here: "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn doctor_recommends_safe_bare_repository_explicit() {
    // doctor judges the workspace of its current directory: a project, not
    // a directory holding the test's home (as sctest the tests run in /tmp).
    let (ws, home) = (Workspace::new(), Home::new());
    let hint = "safe.bareRepository explicit";
    let out = shellcage(Some(home.path()), &["doctor"])
        .current_dir(ws.path())
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("git safe.bareRepository: unset"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains(hint), "{}", stdout(&out));
    // Set in the user's global config (git's own spelling rules: any case).
    home.write(".gitconfig", "[Safe]\n\tbareRepository = explicit\n");
    let out = shellcage(Some(home.path()), &["doctor", "--json"])
        .current_dir(ws.path())
        .output()
        .unwrap();
    let d: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(d["git_safe_bare_repository"], "explicit");
    assert!(!stdout(&out).contains(hint), "{}", stdout(&out));
}

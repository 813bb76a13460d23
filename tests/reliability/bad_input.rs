//! Bad input never panics: property tests over the parsers a caller (or a
//! hostile profile file) can reach, and end-to-end cases through the binary:
//! exit 125, one clear error line, no panic, and nothing ran.

use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use shellcage::cli::parse_shell_args;
use shellcage::profile::{self, LoadContext, parse_duration, parse_size};

use crate::common::*;

/// An error message is clean: not empty, no panic text, and no control
/// characters but newlines (it goes to the user's terminal).
fn assert_clean(msg: &str) {
    assert!(!msg.trim().is_empty(), "empty error message");
    assert!(!msg.contains("panicked"), "{msg}");
    assert!(
        !msg.chars().any(|c| c.is_control() && c != '\n'),
        "control character in error message: {msg:?}"
    );
}

/// Argument vectors biased towards what the shell parser looks at.
fn shell_arg() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-c".to_owned()),
        Just("-o".to_owned()),
        Just("+o".to_owned()),
        Just("--".to_owned()),
        Just("-".to_owned()),
        Just("+".to_owned()),
        Just("--login".to_owned()),
        "[-+][a-zA-Z]{1,4}",
        "--[a-z]{0,6}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn shell_parser_never_panics(args in prop::collection::vec(shell_arg(), 0..8)) {
        match parse_shell_args(&args) {
            Ok(parsed) => {
                // What is parsed comes from the input, nothing is invented.
                if let Some(c) = &parsed.command {
                    prop_assert!(args.contains(c));
                }
            }
            Err(e) => assert_clean_lossy(&e),
        }
    }

    /// `sh -c S` runs S verbatim, unless S looks like an option: POSIX sh keeps
    /// parsing options after `-c` (`sh -c -e 'cmd'`), so such an S is not the
    /// command string there either; `sh -c -- S` passes any S.
    #[test]
    fn shell_command_string_round_trips(s in any::<String>(), rest in prop::collection::vec(any::<String>(), 0..3)) {
        let mut args = vec!["-c".to_owned(), "--".to_owned(), s.clone()];
        args.extend(rest.iter().cloned());
        let parsed = parse_shell_args(&args).unwrap();
        prop_assert_eq!(parsed.command.as_deref(), Some(s.as_str()));
        prop_assert_eq!(&parsed.rest, &rest);
        prop_assert!(parsed.flags.is_empty());
        // A lone `-` or `+` is an operand, not an option.
        if s.len() < 2 || !(s.starts_with('-') || s.starts_with('+')) {
            let parsed = parse_shell_args(&["-c".to_owned(), s.clone()]).unwrap();
            prop_assert_eq!(parsed.command.as_deref(), Some(s.as_str()));
            prop_assert!(parsed.rest.is_empty());
        } else if let Ok(parsed) = parse_shell_args(&["-c".to_owned(), s.clone()]) {
            // Taken as options, never silently as the command.
            prop_assert_eq!(parsed.command, None::<String>);
        }
    }

    #[test]
    fn durations_parse_or_fail_cleanly(s in prop_oneof![any::<String>(), "[0-9]{0,22}(ms|s|m|h|d|x|)([0-9]{0,22}(ms|s|m|h|d|))*"]) {
        if let Err(e) = parse_duration(&s) {
            assert_clean_lossy(&e);
        }
    }

    #[test]
    fn durations_in_seconds_round_trip(n in any::<u64>()) {
        let got = parse_duration(&format!("{n}s"));
        match n.checked_mul(1000) {
            Some(_) => prop_assert_eq!(got, Ok(std::time::Duration::from_secs(n))),
            None => prop_assert!(got.unwrap_err().contains("too large")),
        }
        prop_assert_eq!(parse_duration(&n.to_string()), Ok(std::time::Duration::from_secs(n)));
    }

    #[test]
    fn sizes_parse_or_fail_cleanly(s in prop_oneof![any::<String>(), "[0-9]{0,22}[kKmMgGtTx]?"]) {
        if let Err(e) = parse_size(&s) {
            assert_clean_lossy(&e);
        }
    }

    #[test]
    fn sizes_round_trip(n in any::<u64>(), unit in 0usize..5) {
        let (suffix, shift) = [("", 0), ("K", 10), ("M", 20), ("G", 30), ("T", 40)][unit];
        let got = parse_size(&format!("{n}{suffix}"));
        match n.checked_mul(1u64 << shift) {
            Some(v) => prop_assert_eq!(got, Ok(v)),
            None => prop_assert!(got.is_err()),
        }
    }
}

/// Messages from parsers quote the input with `{:?}`, which escapes control
/// characters; check the same property as for profile errors.
fn assert_clean_lossy(msg: &str) {
    assert_clean(msg);
}

// ---------------------------------------------------------------------------
// Profiles: arbitrary files, and `extends` chains of generated profiles.

/// One TOML value of a plausible or implausible kind.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1".to_owned()),
        Just("-1".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("true".to_owned()),
        Just("1.5".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"/\"".to_owned()),
        Just("\"~\"".to_owned()),
        Just("\"~/x\"".to_owned()),
        Just("\"{workspace}/.git\"".to_owned()),
        Just("\"/usr/../etc\"".to_owned()),
        Just("\"*\"".to_owned()),
        Just("\"1h30m\"".to_owned()),
        Just("\"512M\"".to_owned()),
        Just("\"none\"".to_owned()),
        Just("\"write\"".to_owned()),
        Just("\"full\"".to_owned()),
        Just("\"best-effort\"".to_owned()),
        Just("[\"/usr\", \"{workspace}\", \"~/.ssh\"]".to_owned()),
        Just("{ A = \"b\" }".to_owned()),
        any::<String>().prop_map(|s| format!("{s:?}")),
    ]
}

const KEYS: &[(&str, &str)] = &[
    ("", "version"),
    ("", "extends"),
    ("", "description"),
    ("", "tier"),
    ("", "bogus"),
    ("filesystem", "workspace"),
    ("filesystem", "read"),
    ("filesystem", "write"),
    ("filesystem", "hide"),
    ("filesystem", "protect"),
    ("filesystem.env_files", "enabled"),
    ("filesystem.env_files", "max_depth"),
    ("filesystem.env_files", "skip_dirs"),
    ("filesystem.env_files", "allow"),
    ("network", "mode"),
    ("landlock", "mode"),
    ("env", "pass"),
    ("env", "set"),
    ("limits", "timeout"),
    ("limits", "open_files"),
    ("limits", "processes"),
    ("limits", "file_size"),
    ("limits", "tmp_size"),
    ("limits", "home_size"),
    ("shell", "candidates"),
    ("report", "enabled"),
];

/// A profile text: `version = 1`, maybe `extends`, then random keys grouped
/// by table (TOML forbids reopening a table, so one header per table).
fn profile_text(parents: Vec<String>) -> impl Strategy<Value = String> {
    (
        prop::option::of(prop::sample::select(parents)),
        prop::bool::weighted(0.9),
        prop::collection::vec((0..KEYS.len(), toml_value()), 0..10),
    )
        .prop_map(|(extends, version, entries)| {
            let mut text = String::new();
            if version {
                text.push_str("version = 1\n");
            }
            if let Some(p) = extends {
                text.push_str(&format!("extends = {p:?}\n"));
            }
            let mut tables: Vec<&str> = Vec::new();
            let mut seen: Vec<usize> = Vec::new();
            for (k, _) in &entries {
                if !tables.contains(&KEYS[*k].0) {
                    tables.push(KEYS[*k].0);
                }
            }
            tables.sort_by_key(|t| !t.is_empty());
            for table in tables {
                if !table.is_empty() {
                    text.push_str(&format!("[{table}]\n"));
                }
                for (k, v) in &entries {
                    let (t, key) = KEYS[*k];
                    if t == table && !seen.contains(k) && !(t.is_empty() && key == "version") {
                        seen.push(*k);
                        text.push_str(&format!("{key} = {v}\n"));
                    }
                }
            }
            text
        })
}

struct Dirs {
    _root: tempfile::TempDir,
    ctx: LoadContext,
}

fn dirs() -> Dirs {
    let root = tempfile::Builder::new()
        .prefix("shellcage-rel-prop-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let home = root.path().join("home");
    let workspace = root.path().join("ws");
    let user_dir = home.join(".config/shellcage/profiles");
    std::fs::create_dir_all(&user_dir).unwrap();
    std::fs::create_dir_all(&workspace).unwrap();
    Dirs {
        ctx: LoadContext {
            home,
            workspace,
            user_dir: Some(user_dir),
        },
        _root: root,
    }
}

fn check_load(name_or_path: &str, ctx: &LoadContext) {
    match profile::load(name_or_path, ctx) {
        Ok(policy) => {
            // A loaded policy is absolute-pathed as documented.
            for r in &policy.paths {
                assert!(r.path.is_absolute(), "{:?}", r.path);
            }
        }
        Err(e) => assert_clean(&e.to_string()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_profile_files_load_or_fail_cleanly(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        any::<String>().prop_map(String::into_bytes),
        profile_text(vec!["dev".into(), "readonly".into(), "ci".into(), "nope".into(), "../x".into(), "".into()])
            .prop_map(String::into_bytes),
    ]) {
        let d = dirs();
        let file = d.ctx.home.join("p.toml");
        std::fs::write(&file, &bytes).unwrap();
        check_load(&file.display().to_string(), &d.ctx);
    }

    #[test]
    fn extends_chains_load_or_fail_cleanly(texts in prop::collection::vec(
        profile_text(vec!["p0".into(), "p1".into(), "p2".into(), "p3".into(), "dev".into(), "ci".into()]), 1..5)) {
        let d = dirs();
        let user_dir = d.ctx.user_dir.clone().unwrap();
        for (i, t) in texts.iter().enumerate() {
            std::fs::write(user_dir.join(format!("p{i}.toml")), t).unwrap();
        }
        check_load("p0", &d.ctx);
    }
}

// ---------------------------------------------------------------------------
// End to end: bad input through the binary.

/// Run `shellcage ARGS… -- sh -c 'touch MARK'` (or the `sh` form); assert
/// exit 125, one clear error line naming `names`, no panic, MARK absent.
fn refused(ws: &Workspace, home: &Path, args: &[&str], sh_mode: bool, names: &str) {
    let mark = ws.path().join("ran");
    let touch = format!("touch '{}'", mark.display());
    let mut c = Command::new(bin());
    if sh_mode {
        c.arg("sh").args(args).arg(&touch);
    } else {
        c.arg("run");
        if !args.contains(&"--workspace") {
            c.arg("--workspace").arg(ws.path());
        }
        c.args(args).args(["--", "sh", "-c", &touch]);
    }
    let out = c
        .current_dir(ws.path())
        .env("HOME", home)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
    assert_clean(&err);
    assert!(!mark.exists(), "{args:?}: the command ran");
    assert!(out.stdout.is_empty(), "{args:?}");
    // One error line, first: our own (`shellcage: …`, with the cause chain
    // once), or clap's (`error: …`, followed by usage lines). A TOML syntax
    // error quotes the offending line under it.
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("shellcage: ") || first.starts_with("error: "),
        "{args:?}: {err}"
    );
    let lines = err
        .lines()
        .filter(|l| l.starts_with("shellcage:") || l.starts_with("error:"))
        .count();
    assert_eq!(lines, 1, "{args:?}: {err}");
    assert!(err.contains(names), "{args:?}: {err}");
    if first.starts_with("shellcage: ") {
        // The cause chain is not repeated (`{:#}` over a `{0}` wrapper did).
        let msg = first.trim_start_matches("shellcage: ");
        let half = &msg[..msg.len() / 2];
        assert!(
            half.len() < 20 || msg.matches(half).count() == 1,
            "{args:?}: repeated message: {err}"
        );
    }
}

#[test]
fn bad_input_through_the_binary_exits_125_and_runs_nothing() {
    needs_sandbox!();
    let _guard = crate::shared();
    let ws = Workspace::new();
    let home = Workspace::new();
    let touch = format!("touch '{}'", ws.path().join("ran").display());

    // Control: the same invocation with good input runs the command.
    let out = cmd(&ws, &[], &["sh", "-c", &touch])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        ws.path().join("ran").exists(),
        "control: the marker command did not run"
    );
    std::fs::remove_file(ws.path().join("ran")).unwrap();

    let h = home.path();
    refused(&ws, h, &["--no-such-flag"], false, "--no-such-flag");
    refused(&ws, h, &["--net", "everywhere"], false, "everywhere");
    refused(
        &ws,
        h,
        &["--timeout", "5parsecs"],
        false,
        "--timeout 5parsecs",
    );
    refused(
        &ws,
        h,
        &["--timeout", "99999999999999999999999h"],
        false,
        "--timeout",
    );
    refused(&ws, h, &["--env", "1BAD=x"], false, "--env 1BAD=x");
    refused(&ws, h, &["--env", "A-B"], false, "--env A-B");
    refused(&ws, h, &["--env", "=x"], false, "--env =x");
    let missing = ws.path().join("does-not-exist");
    refused(
        &ws,
        h,
        &["--read", missing.to_str().unwrap()],
        false,
        "--read",
    );
    let file = ws.write("a-file", "x");
    refused(
        &ws,
        h,
        &["--workspace", file.to_str().unwrap()],
        false,
        "not a directory",
    );
    refused(
        &ws,
        h,
        &["--profile", "no-such-profile"],
        false,
        "no-such-profile",
    );

    let bad = PathBuf::from(home.path()).join("bad.toml");
    std::fs::write(&bad, "version = 1\nextends = \"dev\"\nbogus = 3\n").unwrap();
    refused(
        &ws,
        h,
        &["--profile", bad.to_str().unwrap()],
        false,
        "bogus",
    );
    std::fs::write(
        &bad,
        "version = 1\nextends = \"dev\"\n[limits]\ntimeout = \"soon\"\n",
    )
    .unwrap();
    refused(&ws, h, &["--profile", bad.to_str().unwrap()], false, "soon");
    std::fs::write(&bad, b"version = 1\n\x1b[31m\xff\n").unwrap();
    refused(
        &ws,
        h,
        &["--profile", bad.to_str().unwrap()],
        false,
        "bad.toml",
    );

    // An `extends` cycle among user profiles.
    let dir = home.path().join(".config/shellcage/profiles");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("loop-a.toml"),
        "version = 1\nextends = \"loop-b\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("loop-b.toml"),
        "version = 1\nextends = \"loop-a\"\n",
    )
    .unwrap();
    refused(&ws, h, &["--profile", "loop-a"], false, "cycle");

    // Shell mode.
    refused(&ws, h, &["-Q", "-c"], true, "-Q");
    refused(&ws, h, &["--rcfile", "-c"], true, "--rcfile");
    refused(
        &ws,
        h,
        &["--timeout", "later", "-c"],
        true,
        "--timeout later",
    );
}

//! Guarantee 9 (environment): only the allowlist passes, secret-looking
//! names and LD_* are dropped, `--env NAME` passes one and the report says so.
use crate::common::*;

fn run_env(extra: &[&str], vars: &[(&str, &str)]) -> (std::process::Output, Workspace, Home) {
    let (ws, home) = (Workspace::new(), Home::new());
    let mut args = vec!["run", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "env"]);
    let mut c = shellcage(Some(home.path()), &args);
    c.current_dir(ws.path());
    for (k, v) in vars {
        c.env(k, v);
    }
    (c.output().unwrap(), ws, home)
}

#[test]
fn only_allowlisted_variables_pass() {
    needs_sandbox!();
    let c = canary();
    let secrets = [
        "FOO_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "SSH_AUTH_SOCK",
        "GITHUB_TOKEN",
        "DB_PASSWORD",
        "OPENAI_API_KEY",
        "KUBECONFIG",
        "DOCKER_HOST",
        "PLAIN_UNLISTED",
        "LD_LIBRARY_PATH",
    ];
    let mut vars: Vec<(&str, String)> = secrets.iter().map(|n| (*n, format!("{c}_{n}"))).collect();
    vars.push(("TERM", "xterm-test".into()));
    vars.push(("LC_TIME", "C".into()));
    vars.push(("TZ", "UTC".into()));
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (out, ws, home) = run_env(&[], &borrowed);
    expect_code(&out, 0);
    let text = stdout(&out);
    assert!(!text.contains(&c), "{text}");
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    for n in secrets {
        assert!(!names.contains(&n), "{n} passed: {text}");
    }
    for want in [
        "TERM=xterm-test".to_string(),
        "LC_TIME=C".into(),
        "TZ=UTC".into(),
        "LANG=C.UTF-8".into(),
        "SHELLCAGE=1".into(),
        "SHELLCAGE_PROFILE=dev".into(),
        "TMPDIR=/tmp".into(),
        format!("HOME={}", home.path().display()),
        format!("PWD={}", ws.path().display()),
    ] {
        assert!(text.lines().any(|l| l == want), "{want} missing:\n{text}");
    }
    assert!(names.contains(&"USER") && names.contains(&"PATH"), "{text}");
    // The retry settings shellcage sets because the network mode is none.
    let defaults: Vec<&str> = shellcage::sandbox::envrules::NO_NETWORK_DEFAULTS
        .iter()
        .map(|(n, v, _)| {
            assert!(
                text.lines().any(|l| l == format!("{n}={v}")),
                "{n}:\n{text}"
            );
            *n
        })
        .collect();
    // User installs go into the kept home (dev: home = "persistent").
    let installs = format!("{}/.shellcage", home.path().display());
    for n in ["PYTHONUSERBASE", "CARGO_INSTALL_ROOT"] {
        assert!(
            text.lines().any(|l| l == format!("{n}={installs}")),
            "{n}:\n{text}"
        );
    }
    // Nothing else: every name is accounted for.
    for n in &names {
        assert!(
            defaults.contains(n)
                || ["PYTHONUSERBASE", "CARGO_INSTALL_ROOT"].contains(n)
                || [
                    "TERM",
                    "LC_TIME",
                    "TZ",
                    "LANG",
                    "SHELLCAGE",
                    "SHELLCAGE_PROFILE",
                    "TMPDIR",
                    "HOME",
                    "PWD",
                    "USER",
                    "LOGNAME",
                    "PATH",
                    "SHELL"
                ]
                .contains(n),
            "unexpected {n}:\n{text}"
        );
    }
}

#[test]
fn ld_preload_does_not_reach_the_command() {
    needs_sandbox!();
    // The loader ignores a missing preload (with a warning), so shellcage
    // still runs; the command must not see the variable.
    let c = canary();
    let (out, _ws, _home) = run_env(&[], &[("LD_PRELOAD", &format!("/nonexistent/{c}.so"))]);
    expect_code(&out, 0);
    assert!(!stdout(&out).contains("LD_PRELOAD"), "{}", stdout(&out));
    assert!(!stdout(&out).contains(&c));
}

#[test]
fn explicit_env_passes_a_secret_and_the_report_lists_it() {
    needs_sandbox!();
    let c = canary();
    let (out, _ws, _home) = run_env(
        &[
            "--env",
            "FOO_TOKEN",
            "--env",
            "SET_HERE=v1",
            "--report",
            "json",
        ],
        &[("FOO_TOKEN", &c), ("AWS_SECRET_ACCESS_KEY", &c)],
    );
    expect_code(&out, 0);
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l == format!("FOO_TOKEN={c}")),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "SET_HERE=v1"), "{text}");
    assert!(!text.contains("AWS_SECRET_ACCESS_KEY"), "{text}");
    let report = stderr(&out);
    let json: serde_json::Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    let explicit = json["environment"]["explicit"].to_string();
    assert!(explicit.contains("FOO_TOKEN"), "{explicit}");
    assert!(explicit.contains("SET_HERE"), "{explicit}");
    // The report names the variable, never its value.
    assert!(!report.contains(&c), "{report}");
}

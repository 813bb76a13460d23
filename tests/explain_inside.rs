//! Inside the sandbox the policy in force is a read-only file,
//! /run/shellcage/policy.json: `shellcage explain` and the Claude Code hook
//! started there judge by it (file and line of each rule), and it names paths
//! and rules, never a file's content or a variable's value.
#[macro_use]
mod common;
use common::*;

use std::io::Write;
use std::process::Stdio;

/// A workspace holding a copy of the binary (runnable inside as ./shellcage),
/// a `.env` and a home with an ssh key, each with its own canary, and a third
/// canary in the caller's environment.
struct Case {
    ws: Workspace,
    home: Home,
    canaries: Vec<String>,
}

fn case() -> Case {
    let ws = Workspace::git();
    std::fs::copy(bin(), ws.path().join("shellcage")).unwrap();
    let home = Home::new();
    let canaries = vec![canary(), canary(), canary()];
    ws.write(".env", &format!("API_KEY={}\n", canaries[0]));
    home.write(".ssh/id_ed25519", &canaries[1]);
    Case { ws, home, canaries }
}

fn run(c: &Case, extra: &[&str], script: &str, stdin: Option<&str>) -> std::process::Output {
    let mut args = vec!["run", "--workspace", c.ws.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", script]);
    let mut cmd = shellcage(Some(c.home.path()), &args);
    cmd.env("DEPLOY_TOKEN", &c.canaries[2])
        .current_dir(c.ws.path());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_policy_in_force_is_a_read_only_file_inside() {
    needs_sandbox!();
    let c = case();
    let o = run(&c, &[], "cat /run/shellcage/policy.json", None);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let view: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ws = c.ws.path().canonicalize().unwrap();
    assert_eq!(view["workspace"], ws.to_str().unwrap());
    assert!(out.contains("\"~/.ssh\""), "the rules are named: {out}");
    for canary in &c.canaries {
        assert!(
            !out.contains(canary.as_str()),
            "a secret reached the policy file"
        );
    }
    let o = run(
        &c,
        &[],
        "echo x > /run/shellcage/policy.json && echo WROTE; rm -f /run/shellcage/policy.json && echo REMOVED; \
         mv /run/shellcage/policy.json /tmp/p && echo MOVED; test -s /run/shellcage/policy.json && echo STILL",
        None,
    );
    let out = stdout(&o);
    assert!(
        !out.contains("WROTE") && !out.contains("REMOVED") && !out.contains("MOVED"),
        "{out}"
    );
    assert!(out.contains("STILL"), "{out}{}", stderr(&o));
}

#[test]
fn explain_inside_judges_by_the_policy_in_force() {
    needs_sandbox!();
    let c = case();
    // --net loopback outside; inside, explain with no options must say so
    // (recomputing the policy there would give the profile's "none").
    let o = run(
        &c,
        &["--net", "loopback"],
        "./shellcage explain ~/.ssh/id_ed25519 .env .git/hooks/pre-commit",
        None,
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(
        out.contains("network loopback; the policy in force, from /run/shellcage/policy.json"),
        "{out}"
    );
    assert!(
        out.contains(
            "id_ed25519: hidden: filesystem.hide \"~/.ssh\" (profiles/dev.toml (built-in):"
        ),
        "{out}"
    );
    assert!(out.contains(".git/hooks/pre-commit: protected: filesystem.protect \".git/hooks\" (profiles/dev.toml (built-in):"), "{out}");
    assert!(out.contains(".env: hidden"), "{out}");
    // Control: outside, with no options, explain computes the profile's own policy.
    let o = shellcage(Some(c.home.path()), &["explain", ".env"])
        .current_dir(c.ws.path())
        .output()
        .unwrap();
    assert!(
        stdout(&o).contains("network none") && !stdout(&o).contains("policy in force"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn the_hook_inside_judges_by_the_policy_in_force() {
    needs_sandbox!();
    let c = case();
    let home = c.home.path().to_str().unwrap();
    let event = serde_json::json!({
        "hook_event_name": "PreToolUse",
        "tool_name": "Read",
        "tool_input": {"file_path": format!("{home}/.ssh/id_ed25519")},
        "cwd": c.ws.path(),
        "session_id": "s",
        "transcript_path": "/nonexistent",
    })
    .to_string();
    let o = run(&c, &[], "./shellcage hook claude-code", Some(&event));
    let out = stdout(&o);
    assert!(
        out.contains("\"permissionDecision\":\"deny\""),
        "{out}{}",
        stderr(&o)
    );
    assert!(
        out.contains("filesystem.hide \\\"~/.ssh\\\" (profiles/dev.toml (built-in):"),
        "{out}"
    );
}

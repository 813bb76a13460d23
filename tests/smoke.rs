//! The README's first command works: a command runs in the default profile.
#[macro_use]
mod common;
use common::*;

#[test]
fn runs_a_command_with_the_default_profile() {
    needs_sandbox!();
    let ws = Workspace::new();
    let out = run_sh(&ws, &[], "echo hello; hostname; echo $SHELLCAGE_PROFILE");
    assert_eq!(
        stdout(&out),
        "hello\nshellcage\ndev\n",
        "stderr: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn exit_codes_follow_the_design() {
    needs_sandbox!();
    let ws = Workspace::new();
    assert_eq!(run_sh(&ws, &[], "exit 42").status.code(), Some(42));
    assert_eq!(run_sh(&ws, &[], "kill -TERM $$").status.code(), Some(143));
    let o = cmd(&ws, &[], &["definitely-not-a-command-xyz"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("command not found: definitely-not-a-command-xyz"),
        "{}",
        stderr(&o)
    );
    ws.write("noexec.sh", "#!/bin/sh\necho no\n");
    let o = cmd(&ws, &[], &["./noexec.sh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    let o = cmd(&ws, &["--timeout", "10x"], &["true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("--timeout 10x"), "{}", stderr(&o));
}

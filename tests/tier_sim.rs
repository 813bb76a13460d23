//! The container tier where user namespaces really fail, simulated two ways:
//! inside `bwrap --disable-userns` (ENOSPC) and under a seccomp filter like a
//! container runtime's (EPERM). One shellcage process per case.
mod common;
mod tier;

use std::io::ErrorKind;
use std::net::TcpListener;

use common::*;
use tier::{Env, Secret, Sim, path_str, socket_probe};

fn full_tier_refuses(sim: Sim) {
    let Some(env) = Env::new(sim) else { return };
    let ws = Workspace::new();
    let ran = ws.path().join("ran");
    let out = env
        .shellcage(
            &ws,
            &[
                "run",
                "--workspace",
                path_str(ws.path()),
                "--tier",
                "full",
                "--",
                "touch",
                path_str(&ran),
            ],
        )
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("cannot create user namespace"), "{err}");
    assert!(
        err.contains("hint:") && err.contains("--tier auto"),
        "{err}"
    );
    assert!(!ran.exists(), "nothing may run");
}

fn auto_tier_falls_back(sim: Sim) {
    let Some(env) = Env::new(sim) else { return };
    let ws = Workspace::new();
    let secret = Secret::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let report = ws.path().join("report.json");
    let mark = canary();
    let script = format!(
        "cat {secret}; echo secret_rc=$?; {probe}; echo {mark} > written; echo ws_rc=$?",
        secret = path_str(&secret.path),
        probe = socket_probe(port),
    );
    let out = env
        .shellcage(
            &ws,
            &[
                "run",
                "--workspace",
                path_str(ws.path()),
                "--tier",
                "auto",
                "--report-file",
                path_str(&report),
                "--",
                "sh",
                "-c",
                &script,
            ],
        )
        .output()
        .unwrap();
    let (o, e) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "stdout: {o}\nstderr: {e}");
    // Fallback said on stderr, once.
    assert_eq!(e.matches("running in the container tier").count(), 1, "{e}");
    // The secret outside the allowlist: EACCES, and its text never appears.
    assert!(o.contains("secret_rc=1"), "{o}");
    assert!(e.contains("Permission denied"), "{e}");
    assert!(!o.contains(&secret.text) && !e.contains(&secret.text));
    // TCP and UDP over v4 and v6: socket() refused with EAFNOSUPPORT (97).
    assert!(o.contains("net=97,97,97,97"), "{o}");
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "the host listener saw a connection"
    );
    // The workspace is writable.
    assert!(o.contains("ws_rc=0"), "{o}");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("written")).unwrap(),
        format!("{mark}\n")
    );
    // The report says which tier ran, and why.
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["tier"], "container", "{r}");
    assert!(
        r["fallback"]
            .as_str()
            .is_some_and(|f| f.contains("user namespaces unavailable")),
        "{r}"
    );
    if matches!(sim, Sim::AppArmor) {
        // Known before any clone: the line gives the one fix.
        let line = e.lines().find(|l| l.contains("container tier")).unwrap();
        assert!(
            line.ends_with(&format!("; for the namespaces tier: {}", setup_command())),
            "{line}"
        );
    }
    let status = |g: &str| {
        r["enforcement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["guarantee"] == g)
            .map(|row| row["status"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(status("protected_paths"), "not_enforced");
    assert_eq!(status("no_network"), "full");
}

fn doctor_reports_the_fallback(sim: Sim) {
    let Some(env) = Env::new(sim) else { return };
    let ws = Workspace::new();
    let out = env
        .shellcage(&ws, &["doctor", "--json", "--tier", "auto"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["user_namespaces"]["works"], false, "{d}");
    assert!(d["user_namespaces"]["error"].is_string(), "{d}");
    assert_eq!(d["run_uses"], "container", "{d}");
    // The same profile with tier full: refused, exit 1.
    let out = env
        .shellcage(&ws, &["doctor", "--json", "--tier", "full"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(d["run_uses"].is_null(), "{d}");
    assert!(
        d["run_refusal"]
            .as_str()
            .is_some_and(|r| r.contains("user namespaces")),
        "{d}"
    );
}

fn entrypoint_runs_the_agent_with_a_sandboxed_shell(sim: Sim) {
    let Some(env) = Env::new(sim) else { return };
    let ws = Workspace::new();
    let secret = Secret::new();
    // The "agent": outside the sandbox it can read the secret; through $SHELL it cannot.
    let agent = format!(
        "echo tier=$SHELLCAGE_TIER; cat {s} >/dev/null && echo agent_reads=yes; \"$SHELL\" -c 'cat {s}; echo shell_rc=$?; echo in=$SHELLCAGE'",
        s = path_str(&secret.path)
    );
    let out = env
        .shellcage(
            &ws,
            &[
                "entrypoint",
                "--workspace",
                path_str(ws.path()),
                "--",
                "sh",
                "-c",
                &agent,
            ],
        )
        .output()
        .unwrap();
    let (o, e) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "stdout: {o}\nstderr: {e}");
    assert!(o.contains("tier=container"), "{o}");
    assert!(o.contains("agent_reads=yes"), "{o}");
    assert!(o.contains("shell_rc=1") && o.contains("in=1"), "{o}");
    assert!(!o.contains(&secret.text), "{o}");
    let summary: Vec<&str> = e.lines().filter(|l| l.contains("container tier")).collect();
    assert_eq!(summary.len(), 1, "{e}");
    assert!(summary[0].contains("not enforced: protected_paths"), "{e}");
}

#[test]
fn bwrap_full_tier_refuses() {
    full_tier_refuses(Sim::Bwrap);
}

#[test]
fn seccomp_full_tier_refuses() {
    full_tier_refuses(Sim::Seccomp);
}

#[test]
fn bwrap_auto_tier_falls_back_to_the_container_tier() {
    auto_tier_falls_back(Sim::Bwrap);
}

#[test]
fn seccomp_auto_tier_falls_back_to_the_container_tier() {
    auto_tier_falls_back(Sim::Seccomp);
}

#[test]
fn bwrap_doctor_reports_the_fallback() {
    doctor_reports_the_fallback(Sim::Bwrap);
}

#[test]
fn seccomp_doctor_reports_the_fallback() {
    doctor_reports_the_fallback(Sim::Seccomp);
}

#[test]
fn seccomp_entrypoint_runs_the_agent_with_a_sandboxed_shell() {
    entrypoint_runs_the_agent_with_a_sandboxed_shell(Sim::Seccomp);
}

#[test]
fn bwrap_entrypoint_runs_the_agent_with_a_sandboxed_shell() {
    entrypoint_runs_the_agent_with_a_sandboxed_shell(Sim::Bwrap);
}

/// What the AppArmor messages must give, exactly: the real path of the binary.
fn setup_command() -> String {
    let exe = std::fs::canonicalize(bin()).unwrap();
    format!("sudo {} setup apparmor", exe.display())
}

#[test]
fn apparmor_full_tier_refuses_with_the_setup_command() {
    full_tier_refuses_apparmor();
}

fn full_tier_refuses_apparmor() {
    let Some(env) = Env::new(Sim::AppArmor) else {
        return;
    };
    let ws = Workspace::new();
    let ran = ws.path().join("ran");
    let run = |tier: &str| {
        env.shellcage(
            &ws,
            &[
                "run",
                "--workspace",
                path_str(ws.path()),
                "--tier",
                tier,
                "--",
                "touch",
                path_str(&ran),
            ],
        )
        .output()
        .unwrap()
    };
    let out = run("full");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(
            "user namespaces are restricted: kernel.apparmor_restrict_unprivileged_userns=1"
        ),
        "{err}"
    );
    assert!(
        err.contains(&format!("(hint: {}, or --tier auto", setup_command())),
        "{err}"
    );
    assert!(!ran.exists(), "nothing may run");
    // The honest fallback the hint names: the container tier runs.
    let out = run("container");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(ran.exists());
    std::fs::remove_file(&ran).unwrap();
    // Control: with the restriction off the refusal is gone; the run gets
    // as far as the sandbox's /proc, which the kernel refuses here only
    // because the simulation mounted over the host's /proc/sys/kernel.
    env.set_restrict("0");
    let out = run("full");
    let err = stderr(&out);
    assert!(!err.contains("apparmor"), "{err}");
    assert!(err.contains("mount(/newroot/proc)"), "{err}");
    assert!(!ran.exists());
}

#[test]
fn apparmor_auto_tier_falls_back_to_the_container_tier() {
    auto_tier_falls_back(Sim::AppArmor);
}

#[test]
fn apparmor_doctor_gives_the_setup_command() {
    doctor_reports_the_fallback(Sim::AppArmor);
    let Some(env) = Env::new(Sim::AppArmor) else {
        return;
    };
    let ws = Workspace::new();
    let out = env
        .shellcage(&ws, &["doctor", "--tier", "auto"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.contains("user namespaces FAIL (user namespaces are restricted: kernel.apparmor_restrict_unprivileged_userns=1"), "{text}");
    let fix = text
        .lines()
        .find(|l| l.contains("setup apparmor"))
        .unwrap_or_default();
    assert!(
        fix.contains(&format!(
            "kernel.apparmor_restrict_unprivileged_userns=1: {}, or run with --tier auto",
            setup_command()
        )),
        "{text}"
    );
}

#[test]
fn apparmor_entrypoint_runs_the_agent_with_a_sandboxed_shell() {
    entrypoint_runs_the_agent_with_a_sandboxed_shell(Sim::AppArmor);
}

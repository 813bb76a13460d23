//! Guarantee 5 (processes): a pid namespace with an init as pid 1, host
//! processes invisible and unkillable, nothing outlives the command (daemons
//! included) or shellcage itself, and /proc/1/environ shows nothing.
use crate::common::*;
use nix::sys::signal::Signal;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn pid_namespace_with_init_as_pid_1() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(
        &ws,
        &home,
        &[],
        "echo $$; cat /proc/1/comm; ls -d /proc/[0-9]* | wc -l",
    );
    expect_code(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let me: u32 = lines[0].parse().unwrap();
    assert!(me > 1 && me < 10, "{text}");
    assert_eq!(lines[1], "shellcage", "pid 1 is shellcage's init: {text}");
    let n: u32 = lines[2].trim().parse().unwrap();
    assert!((2..=5).contains(&n), "{text}");
}

#[test]
fn host_processes_are_invisible_and_unkillable() {
    needs_sandbox!();
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = victim.id();
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(
        &ws,
        &home,
        &[],
        &format!(
            "test -e /proc/{pid} && echo VISIBLE; kill -9 {pid} 2>/dev/null && echo KILLED; kill -0 {pid} 2>/dev/null && echo SIGNALLED; echo done"
        ),
    );
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "done\n");
    // Host side: still running.
    std::thread::sleep(Duration::from_millis(50));
    assert!(victim.try_wait().unwrap().is_none(), "host process died");
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn daemons_do_not_outlive_the_command() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let (m1, m2, m3) = (sleep_marker(), sleep_marker(), sleep_marker());
    let ready = ws.path().join("ready");
    let script = format!(
        "setsid -f sleep {m1}; nohup sleep {m2} >/dev/null 2>&1 & (sleep {m3} &) ; touch ready; sleep 0.5"
    );
    let mut args = vec!["run", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(&["--", "sh", "-c", &script]);
    let mut child = shellcage(Some(home.path()), &args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(10), || ready.exists()));
    // All three are running: the host scan finds them while the command runs.
    for m in [&m1, &m2, &m3] {
        assert!(
            wait_for(Duration::from_secs(2), || !host_pids_with(m).is_empty()),
            "{m} never started"
        );
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    for m in [&m1, &m2, &m3] {
        assert!(
            wait_for(Duration::from_secs(1), || host_pids_with(m).is_empty()),
            "sleep {m} survived the command: {:?}",
            host_pids_with(m)
        );
    }
}

#[test]
fn killing_shellcage_kills_the_sandbox() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let m = sleep_marker();
    let script = format!("setsid -f sleep {m}; sleep {m}");
    let mut args = vec!["run", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(&["--", "sh", "-c", &script]);
    let mut child = shellcage(Some(home.path()), &args).spawn().unwrap();
    assert!(wait_for(Duration::from_secs(10), || host_pids_with(&m)
        .len()
        == 2));
    signal(child.id(), Signal::SIGKILL);
    child.wait().unwrap();
    assert!(
        wait_for(Duration::from_secs(1), || host_pids_with(&m).is_empty()),
        "sandbox survived SIGKILL of shellcage: {:?}",
        host_pids_with(&m)
    );
}

#[test]
fn init_environment_is_not_exposed() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let c = canary();
    let mut args = vec!["run", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(&[
        "--",
        "sh",
        "-c",
        "cat /proc/1/environ; echo status=$?; tr '\\0' '\\n' < /proc/1/environ; cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    let out = shellcage(Some(home.path()), &args)
        .env("SHELLCAGE_TEST_CANARY", &c)
        .output()
        .unwrap();
    expect_code(&out, 0);
    let text = stdout(&out);
    assert!(text.starts_with("status=1\n"), "{text}");
    assert!(!text.contains(&c), "{text}");
    assert!(!stderr(&out).contains(&c), "{}", stderr(&out));
}

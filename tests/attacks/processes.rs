//! Processes: host processes are invisible and untouchable, shellcage itself
//! cannot be rewritten, and nothing started inside outlives the run.

use std::time::Duration;

use crate::harness::*;

fn signal_case(c: &Ctx, sig: &str) {
    let mut v = Victim::spawn();
    let pid = v.pid().to_string();
    let out = c.probe_sc(&[], &["kill", &pid, sig]);
    let r = assert_errno(&out, &["ESRCH", "EPERM"]);
    c.seen(&format!("{r}; host pid {pid} still running"));
    std::thread::sleep(Duration::from_millis(100));
    assert!(v.running(), "host process was signalled");
    // Control: the host can signal it (0 = existence check; does no harm).
    assert_ok(&c.probe_host(&["kill", &pid, "0"]));
}

attack!(proc_kill_host_pid, "processes", |c| {
    signal_case(&c, "9")
});
attack!(proc_stop_host_pid, "processes", |c| {
    signal_case(&c, "19")
});

attack!(proc_kill_minus_one, "processes", |c| {
    let mut v = Victim::spawn();
    let out = c.sc(&[], "kill -9 -1; echo rc=$?");
    c.seen(&format!("code={:?} {}", out.code, out.all().trim()));
    std::thread::sleep(Duration::from_millis(100));
    assert!(v.running(), "host process killed by kill -9 -1");
    // Control (not `kill -9 -1` on the host, which would end this machine's
    // session): the victim is a signalable host process.
    assert_ok(&c.probe_host(&["kill", &v.pid().to_string(), "0"]));
});

attack!(proc_ptrace_host_pid, "processes", |c| {
    let mut v = Victim::spawn();
    let out = c.probe_sc(&[], &["ptrace-attach", &v.pid().to_string()]);
    let r = assert_errno(&out, &["EPERM", "ESRCH"]);
    c.seen(&r);
    assert!(v.running());
    // Control: ptrace works on the host (on our own child, whatever Yama says).
    assert_ok(&c.probe_host(&["ptrace-child"]));
});

attack!(proc_ptrace_own_child, "processes", |c| {
    let out = c.probe_sc(&[], &["ptrace-child"]);
    let r = assert_errno(&out, &["EPERM"]);
    c.seen(&r);
    assert_ok(&c.probe_host(&["ptrace-child"]));
});

attack!(proc_process_vm_readv_host_pid, "processes", |c| {
    let v = Victim::spawn();
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", v.pid())).unwrap();
    let addr = maps.split('-').next().unwrap().to_string();
    let out = c.probe_sc(&[], &["vm-read", &v.pid().to_string(), &addr]);
    let r = assert_errno(&out, &["EPERM", "ESRCH"]);
    c.seen(&r);
    assert_ok(&c.probe_host(&["vm-read-child"]));
});

attack!(proc_process_vm_readv_own_child, "processes", |c| {
    let out = c.probe_sc(&[], &["vm-read-child"]);
    let r = assert_errno(&out, &["EPERM"]);
    c.seen(&r);
    assert_ok(&c.probe_host(&["vm-read-child"]));
});

/// Write through /proc/PID/exe of the sandbox's ancestors: a copy of the
/// shellcage binary (the real one is never at risk) keeps its hash.
fn exe_case(c: &Ctx, target: &str) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("shellcage");
    std::fs::copy(crate::common::bin(), &copy).unwrap();
    let before = sha256(&copy);
    let script = format!(
        "for p in {target}; do printf 'evil' > /proc/$p/exe; echo rc=$?; \
         printf 'evil' >> /proc/$p/exe; echo rc=$?; done"
    );
    let ws = c.ws.path().display().to_string();
    let o = c
        .host_cmd(&[
            copy.to_str().unwrap(),
            "run",
            "--workspace",
            &ws,
            "--",
            "/bin/sh",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    let err = crate::common::stderr(&o);
    c.seen(&format!(
        "{} {}",
        crate::common::stdout(&o).replace('\n', " "),
        err.lines().next().unwrap_or("")
    ));
    assert!(!crate::common::stdout(&o).contains("rc=0"), "{o:?}");
    assert_eq!(sha256(&copy), before, "the shellcage binary was modified");
    // Control: the copy is writable by this user, so a successful write would
    // have changed it. (Warm, the copy's session server still runs it, and a
    // running binary cannot be opened for writing: the session ends first.)
    let _ = c
        .host_cmd(&[copy.to_str().unwrap(), "session", "stop", &ws])
        .output();
    assert!(
        crate::common::wait_for(std::time::Duration::from_secs(5), || {
            std::fs::OpenOptions::new().append(true).open(&copy).is_ok()
        }),
        "control: the copy is not writable"
    );
}

attack!(proc_write_proc_1_exe, "processes", |c| {
    exe_case(&c, "1")
});
attack!(proc_write_proc_ppid_exe, "processes", |c| {
    exe_case(&c, "$PPID")
});

/// Start a daemon inside whose command line carries a marker; after the run
/// no host process carries it. Control: the same script on the host leaves one.
fn daemon_case(c: &Ctx, how: &str) {
    let m = marker();
    // The marker is spelled with an empty quote pair so that only the daemon's
    // own command line (not the shell that starts it) contains it.
    let script = how.replace(
        "CMD",
        &format!("sh -c \"sleep 30; true\" {}\"\"{}", &m[..2], &m[2..]),
    );
    let out = c.sc(&[], &script);
    std::thread::sleep(Duration::from_millis(300));
    let left = host_pids_with(&m);
    kill_all(&left);
    c.seen(&format!("code={:?}; {} left on host", out.code, left.len()));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(left.is_empty(), "daemon survived the sandbox: {left:?}");
    let control = c
        .host_cmd(&["/bin/sh", "-c", &script])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(control.success());
    let found = wait_for(Duration::from_secs(3), || !host_pids_with(&m).is_empty());
    kill_all(&host_pids_with(&m));
    assert!(found, "control daemon not found: the probe is broken");
}

attack!(proc_daemon_setsid_f, "processes", |c| {
    daemon_case(&c, "setsid -f CMD >/dev/null 2>&1")
});
attack!(proc_daemon_nohup_disown, "processes", |c| {
    daemon_case(&c, "bash -c 'nohup CMD >/dev/null 2>&1 & disown'")
});
attack!(proc_daemon_double_fork, "processes", |c| {
    daemon_case(&c, "( ( CMD >/dev/null 2>&1 & ) & ); exit 0")
});

attack!(proc_sigkill_shellcage_ends_sandbox, "processes", |c| {
    let m = marker();
    let mut child = c
        .sc_cmd(
            &[],
            &[
                "/bin/sh",
                "-c",
                &format!("sh -c 'sleep 300; true' {}''{}; true", &m[..2], &m[2..]),
            ],
        )
        .spawn()
        .unwrap();
    // Control: the sandboxed process is visible from the host while it runs.
    let seen = wait_for(Duration::from_secs(10), || !host_pids_with(&m).is_empty());
    child.kill().unwrap();
    let _ = child.wait();
    let gone = wait_for(Duration::from_secs(5), || host_pids_with(&m).is_empty());
    let left = host_pids_with(&m);
    kill_all(&left);
    c.seen(&format!(
        "running before: {seen}; gone after SIGKILL: {gone}"
    ));
    assert!(seen, "control: the sandboxed process never appeared");
    assert!(gone, "sandbox outlived shellcage: {left:?}");
});

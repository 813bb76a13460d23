//! Reliability (issue 3): many runs leave nothing behind, signals end the
//! whole sandbox with the design's exit codes, data passes through exactly,
//! and bad input is a clean exit 125 with nothing run.
//!
//! Tests that compare host state before and after take `LEAK_CHECK` for
//! writing, so no other test of this binary runs shellcage meanwhile; the
//! others take it for reading and run in parallel with each other.
//!
//! `cargo test --test reliability -- --nocapture` prints the timings.

#[macro_use]
mod common;
#[path = "reliability/bad_input.rs"]
mod bad_input;
#[path = "reliability/host.rs"]
mod host;

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

static LEAK_CHECK: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    LEAK_CHECK.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    LEAK_CHECK.write().unwrap_or_else(|e| e.into_inner())
}

/// A private directory used as TMPDIR for shellcage, holding the workspace.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("shellcage-rel-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        Scratch { dir }
    }
    /// A git work tree: the dev profile then protects .git/hooks, .git/config …
    fn workspace(&self) -> std::path::PathBuf {
        let ws = self.plain_workspace();
        let ok = Command::new("git")
            .args(["init", "-q"])
            .current_dir(&ws)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git init");
        ws
    }
    /// A directory that is not a git work tree: every protected path (.git,
    /// .envrc, .vscode …) is missing, so each run makes placeholders for them
    /// and the last run out must remove them.
    fn plain_workspace(&self) -> std::path::PathBuf {
        let ws = self.dir.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        ws
    }
    fn cmd(&self, ws: &Path, argv: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("run")
            .arg("--workspace")
            .arg(ws)
            .arg("--")
            .args(argv)
            .current_dir(ws)
            .env("TMPDIR", self.dir.path())
            .stdin(Stdio::null());
        c
    }
}

/// A per-test marker, written into argv of a background process the command
/// leaves behind (`sh -c LOOP MARKER &`: the loop keeps the `sh` alive, so
/// the marker stays in its command line).
fn background(marker: &str) -> String {
    format!("sh -c 'while :; do sleep 1; done' {marker} &")
}

#[test]
fn thousand_sequential_runs_leave_nothing_behind() {
    needs_sandbox!();
    let _guard = exclusive();
    let scratch = Scratch::new();
    let ws = scratch.workspace();
    let ws_before = host::tree(&ws);
    let snap = host::Snapshot::take();
    let marker = canary();
    let script = format!("{} echo ok-$1", background(&marker));
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut runs = std::collections::HashSet::new();
    for i in 0..1000 {
        let t = Instant::now();
        let mut c = scratch.cmd(&ws, &["sh", "-c", &script, "sh", &i.to_string()]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        runs.insert(child.id());
        let out = child.wait_with_output().unwrap();
        slowest = slowest.max(t.elapsed());
        assert_eq!(
            (out.status.code(), stdout(&out)),
            (Some(0), format!("ok-{i}\n")),
            "run {i}: stderr: {}",
            stderr(&out)
        );
        if i % 100 == 0 {
            let left = host::procs_with(&marker);
            assert!(left.is_empty(), "run {i} left processes: {left:?}");
        }
    }
    let total = start.elapsed();
    eprintln!(
        "1000 sequential runs: {:.2?} total, {:.2?} mean, {:.2?} slowest",
        total,
        total / 1000,
        slowest
    );
    let left = host::procs_with(&marker);
    assert!(left.is_empty(), "processes left: {left:?}");
    assert_eq!(host::tree(&ws), ws_before, "the workspace changed");
    let stray: Vec<_> = host::tree(scratch.dir.path())
        .into_iter()
        .filter(|p| !p.starts_with("ws"))
        .collect();
    assert!(stray.is_empty(), "new entries in TMPDIR: {stray:?}");
    snap.assert_unchanged(&[scratch.dir.path()], &runs);
}

#[test]
fn two_hundred_concurrent_runs_in_waves_of_fifty() {
    needs_sandbox!();
    let _guard = exclusive();
    let scratch = Scratch::new();
    // Not a git tree: 50 runs at once race to create and remove placeholders.
    let ws = scratch.plain_workspace();
    let ws_before = host::tree(&ws);
    let snap = host::Snapshot::take();
    let marker = canary();
    let script = format!("{} echo ok-$1", background(&marker));
    let mut waves = Vec::new();
    let mut runs = std::collections::HashSet::new();
    for wave in 0..4 {
        let start = Instant::now();
        let children: Vec<_> = (0..50)
            .map(|j| {
                let n = (wave * 50 + j).to_string();
                let mut c = scratch.cmd(&ws, &["sh", "-c", &script, "sh", &n]);
                c.stdout(Stdio::piped()).stderr(Stdio::piped());
                (n, c.spawn().unwrap())
            })
            .collect();
        runs.extend(children.iter().map(|(_, c)| c.id()));
        for (n, child) in children {
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                (out.status.code(), stdout(&out)),
                (Some(0), format!("ok-{n}\n")),
                "run {n}: stderr: {}",
                stderr(&out)
            );
        }
        waves.push(start.elapsed());
    }
    eprintln!("4 waves of 50 concurrent runs: {waves:.2?}");
    let left = host::procs_with(&marker);
    assert!(left.is_empty(), "processes left: {left:?}");
    // The runs shared one workspace: the last one out removes the placeholders.
    assert_eq!(host::tree(&ws), ws_before, "the workspace changed");
    snap.assert_unchanged(&[scratch.dir.path()], &runs);
}

// ---------------------------------------------------------------------------
// Signals

/// Start a sandbox whose command leaves a marker process and prints `ready`
/// once it is set up; `ignore` makes the command ignore INT/TERM/HUP.
fn start_marked(scratch: &Scratch, ws: &Path, marker: &str, ignore: bool) -> std::process::Child {
    let trap = if ignore { "trap '' INT TERM HUP;" } else { "" };
    let script = format!("{trap} {} echo ready; wait", background(marker));
    let mut c = scratch.cmd(ws, &["sh", "-c", &script]);
    // Its own process group, like a job in a shell: Ctrl-C goes to the group.
    c.process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let line = host::read_line(child.stdout.as_mut().unwrap());
    assert_eq!(line, "ready", "the sandbox did not start");
    // Control: the probe sees the marker process while the sandbox runs.
    assert!(
        host::wait_present(marker, Duration::from_secs(5)),
        "marker process never appeared"
    );
    child
}

fn signal_case(sig: Signal, to_group: bool, ignore: bool) {
    needs_sandbox!();
    let _guard = shared();
    let scratch = Scratch::new();
    let ws = scratch.workspace();
    let marker = canary();
    let mut child = start_marked(&scratch, &ws, &marker, ignore);
    let pid = child.id() as i32;
    let target = if to_group { -pid } else { pid };
    let sent = Instant::now();
    kill(Pid::from_raw(target), sig).unwrap();
    let status = host::wait_within(&mut child, Duration::from_secs(10), "shellcage");
    let took = sent.elapsed();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert_eq!(
        status.code(),
        Some(128 + sig as i32),
        "{sig:?}: {status:?}, stderr: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // GRACE in src/supervise.rs is 2 s: a command that ignores the signal is
    // killed after it, one that does not ends at once.
    if ignore {
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
            "{sig:?} ignored: shellcage ended after {took:?}, expected the 2 s grace"
        );
    } else {
        assert!(
            took < Duration::from_millis(1500),
            "{sig:?}: shellcage took {took:?}"
        );
    }
    // Everything in the sandbox is gone (the pid namespace died with its init).
    if let Err(left) = host::wait_gone(&marker, Duration::from_secs(1)) {
        panic!("{sig:?}: sandbox processes outlived shellcage: {left:?}");
    }
    eprintln!("{sig:?} (ignored: {ignore}): exit {status:?} after {took:.2?}");
}

#[test]
fn ctrl_c_to_the_process_group_ends_the_sandbox_with_130() {
    signal_case(Signal::SIGINT, true, false);
}

#[test]
fn sigterm_ends_the_sandbox_with_143() {
    signal_case(Signal::SIGTERM, false, false);
}

#[test]
fn sighup_ends_the_sandbox_with_129() {
    signal_case(Signal::SIGHUP, false, false);
}

#[test]
fn sigint_ignored_by_the_command_ends_after_the_grace_with_130() {
    signal_case(Signal::SIGINT, false, true);
}

#[test]
fn sigterm_ignored_by_the_command_ends_after_the_grace_with_143() {
    signal_case(Signal::SIGTERM, false, true);
}

#[test]
fn sighup_ignored_by_the_command_ends_after_the_grace_with_129() {
    signal_case(Signal::SIGHUP, false, true);
}

/// A signal that arrives while the sandbox is still starting is not lost:
/// it used to be forwarded to the command's process group before the command
/// had made it (setsid), and then only the 2 s grace ended the run.
#[test]
fn sigterm_during_startup_is_not_lost() {
    needs_sandbox!();
    let _guard = shared();
    let scratch = Scratch::new();
    let ws = scratch.workspace();
    let marker = canary();
    let script = format!("{} wait", background(&marker));
    let mut slowest = Duration::ZERO;
    for step in 0..40u64 {
        let mut child = scratch.cmd(&ws, &["sh", "-c", &script]).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(step * 1500));
        let sent = Instant::now();
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        let status = host::wait_within(&mut child, Duration::from_secs(10), "shellcage");
        let took = sent.elapsed();
        slowest = slowest.max(took);
        // Before shellcage blocks the signal (its first milliseconds, before
        // any sandbox exists) the default action kills it: also 143 to a shell.
        assert!(
            status.code() == Some(143) || status.signal() == Some(libc::SIGTERM),
            "after {}us: {status:?}",
            step * 1500
        );
        assert!(
            took < Duration::from_millis(1500),
            "SIGTERM {}us after start: shellcage took {took:?} (the signal was lost; the grace ended it)",
            step * 1500
        );
        if let Err(left) = host::wait_gone(&marker, Duration::from_secs(1)) {
            panic!("sandbox processes outlived shellcage: {left:?}");
        }
    }
    eprintln!("SIGTERM during startup (40 runs, 0-60 ms): slowest end {slowest:.2?}");
}

#[test]
fn sigkill_to_shellcage_still_ends_the_sandbox() {
    needs_sandbox!();
    let _guard = shared();
    let scratch = Scratch::new();
    let ws = scratch.workspace();
    let marker = canary();
    let mut child = start_marked(&scratch, &ws, &marker, true);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let status = host::wait_within(&mut child, Duration::from_secs(5), "shellcage");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    match host::wait_gone(&marker, Duration::from_secs(1)) {
        Ok(t) => eprintln!("SIGKILL: sandbox gone {t:.2?} after shellcage was reaped"),
        Err(left) => panic!("sandbox processes outlived a SIGKILLed shellcage: {left:?}"),
    }
}

// ---------------------------------------------------------------------------
// Data

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut v)
        .unwrap();
    v
}

fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Feed `input` to `sh -c script` in the sandbox; return (status, stdout, stderr).
fn pipe_through(script: &str, input: Vec<u8>) -> (std::process::ExitStatus, Vec<u8>, Vec<u8>) {
    let scratch = Scratch::new();
    let ws = scratch.workspace();
    let mut child = scratch
        .cmd(&ws, &["sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&input).unwrap();
    });
    let out = host::drain(child.stdout.take().unwrap());
    let err = host::drain(child.stderr.take().unwrap());
    let status = host::wait_within(&mut child, Duration::from_secs(60), "shellcage");
    writer.join().unwrap();
    (status, out.join().unwrap(), err.join().unwrap())
}

#[test]
fn binary_stdin_to_stdout_is_byte_exact() {
    needs_sandbox!();
    let _guard = shared();
    let data = random_bytes(4 << 20);
    let (status, out, err) = pipe_through("cat", data.clone());
    assert_eq!(status.code(), Some(0), "{}", String::from_utf8_lossy(&err));
    assert_eq!(out.len(), data.len());
    assert_eq!(sha(&out), sha(&data));
    assert!(err.is_empty());
}

#[test]
fn binary_stdin_to_stderr_is_byte_exact_and_separate() {
    needs_sandbox!();
    let _guard = shared();
    let data = random_bytes(3 << 20);
    let (status, out, err) = pipe_through("cat >&2; printf end", data.clone());
    assert_eq!(status.code(), Some(0));
    assert_eq!(out, b"end", "stdout carries only what went to stdout");
    assert_eq!(err.len(), data.len());
    assert_eq!(sha(&err), sha(&data));
}

#[test]
fn one_gib_through_a_pipe() {
    needs_sandbox!();
    let _guard = shared();
    let scratch = Scratch::new();
    let ws = scratch.workspace();
    let script = format!(
        "head -c 1073741824 /dev/zero | '{}' run --workspace '{}' -- cat | wc -c",
        bin().display(),
        ws.display()
    );
    let start = Instant::now();
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .current_dir(&ws)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = host::drain(child.stdout.take().unwrap());
    let status = host::wait_within(&mut child, Duration::from_secs(60), "1 GiB pipe");
    let took = start.elapsed();
    assert!(status.success());
    let count = String::from_utf8(out.join().unwrap()).unwrap();
    assert_eq!(count.trim(), "1073741824");
    eprintln!("1 GiB through `shellcage run -- cat`: {took:.2?}");
    assert!(took < Duration::from_secs(30), "1 GiB took {took:?}");
}

#[test]
fn a_closed_stdout_ends_the_run_promptly() {
    needs_sandbox!();
    let _guard = shared();
    let scratch = Scratch::new();
    let ws = scratch.workspace();
    let marker = canary();
    // `yes` writes forever; the reader takes one line and goes away.
    let script = format!("{} exec yes", background(&marker));
    let mut child = scratch
        .cmd(&ws, &["sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    assert_eq!(host::read_line(&mut stdout), "y");
    let closed = Instant::now();
    drop(stdout);
    let status = host::wait_within(&mut child, Duration::from_secs(10), "yes | head -1");
    let took = closed.elapsed();
    // yes dies of SIGPIPE: 128 + 13.
    assert_eq!(status.code(), Some(141));
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(host::wait_gone(&marker, Duration::from_secs(1)).is_ok());
}

#[test]
fn exit_codes_are_reported_exactly() {
    needs_sandbox!();
    let _guard = shared();
    let scratch = Scratch::new();
    let ws = scratch.workspace();
    for code in [
        0, 1, 2, 3, 7, 42, 99, 100, 123, 124, 125, 126, 127, 128, 129, 200, 254, 255,
    ] {
        let out = scratch
            .cmd(&ws, &["sh", "-c", &format!("exit {code}")])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "exit {code}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).is_empty(), "exit {code}: {}", stderr(&out));
    }
}

#[test]
fn signals_are_reported_exactly() {
    needs_sandbox!();
    let _guard = shared();
    let scratch = Scratch::new();
    let ws = scratch.workspace();
    for (name, num) in [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ABRT", 6),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
    ] {
        let out = scratch
            .cmd(&ws, &["sh", "-c", &format!("kill -{name} $$")])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(128 + num),
            "kill -{name}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_broken_stderr_does_not_change_the_exit_status() {
    needs_sandbox!();
    let _guard = shared();
    let scratch = Scratch::new();
    let ws = scratch.workspace();
    // shellcage writes to stderr after the command: the "command not found"
    // line, the JSON report. With the reader gone that write gets EPIPE, which
    // is not an error (it was a panic, exit 101).
    for (extra, argv, code) in [
        (&[][..], &["no-such-command-xyz"][..], 127),
        (&["--report", "json"][..], &["sh", "-c", "exit 7"][..], 7),
    ] {
        let mut c = Command::new(bin());
        c.arg("run")
            .arg("--workspace")
            .arg(&ws)
            .args(extra)
            .arg("--")
            .args(argv)
            .current_dir(&ws)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        drop(child.stderr.take());
        let status = host::wait_within(&mut child, Duration::from_secs(10), "shellcage");
        assert_eq!(status.code(), Some(code), "{argv:?}");
    }
}

/// The container tier has no pid namespace: daemons that left the command's
/// process group (setsid, double fork) are found as orphans of the
/// supervisor (a child subreaper) and killed when the command ends.
#[test]
fn container_tier_leaves_no_daemons() {
    let _guard = shared();
    let scratch = Scratch::new();
    let ws = scratch.plain_workspace();
    let profile = scratch.dir.path().join("container.toml");
    std::fs::write(
        &profile,
        "version = 1\nextends = \"dev\"\ntier = \"container\"\n",
    )
    .unwrap();
    let probe = Command::new(bin())
        .args(["run", "--profile"])
        .arg(&profile)
        .arg("--workspace")
        .arg(&ws)
        .args(["--", "true"])
        .current_dir(&ws)
        .output()
        .unwrap();
    if !require(probe.status.success(), "the container tier (Landlock)") {
        return;
    }
    let marker = canary();
    let lp = "while :; do sleep 1; done";
    let script = format!(
        "setsid sh -c '{lp}' {marker} & sh -c \"sh -c '{lp}' {marker} &\"; echo ready; read _; exit 0"
    );
    let mut child = Command::new(bin())
        .args(["run", "--profile"])
        .arg(&profile)
        .arg("--workspace")
        .arg(&ws)
        .args(["--", "sh", "-c", &script])
        .current_dir(&ws)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // A surviving daemon must not hold the test's own stderr open.
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(host::read_line(child.stdout.as_mut().unwrap()), "ready");
    // Control: both daemons run (the command's own argv holds the marker
    // after "done'", theirs after "done ").
    let daemon = format!("done {marker}");
    let start = Instant::now();
    while host::procs_with(&daemon).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "control: the daemons never appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(child.stdin.take());
    let status = host::wait_within(&mut child, Duration::from_secs(10), "shellcage");
    assert_eq!(status.code(), Some(0));
    if let Err(left) = host::wait_gone(&marker, Duration::from_secs(1)) {
        panic!("daemons outlived the container-tier run: {left:?}");
    }
}

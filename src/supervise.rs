//! The supervisor after launch: wait for the sandbox, enforce the timeout,
//! forward signals, and turn what happened into an `Outcome`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::Serialize;

use crate::sandbox::init::EXIT_SETUP;

/// How long a command may take to end after SIGINT/SIGTERM/SIGHUP before the
/// whole sandbox is killed.
pub const GRACE: Duration = Duration::from_secs(2);

/// What happened to the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Status {
    Exited(i32),
    Signaled(i32),
    /// Setup failed; nothing ran (or exec failed: 126/127).
    NotStarted(i32),
    TimedOut,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub status: Status,
    /// shellcage's exit code.
    pub exit_code: i32,
    pub duration_ms: u64,
    /// Signal received by shellcage and forwarded (SIGINT/SIGTERM/SIGHUP …).
    pub signal_received: Option<i32>,
    /// Error lines reported by the sandbox (printed once on stderr).
    pub errors: Vec<String>,
}

/// Has the init reported the command's final status (`X` or `S` line)?
fn final_status_seen(messages: &[u8]) -> bool {
    messages
        .split(|&b| b == b'\n')
        .any(|l| l.starts_with(b"X ") || l.starts_with(b"S "))
}

fn terminating(sig: Signal) -> bool {
    matches!(
        sig,
        Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP | Signal::SIGQUIT
    )
}

/// Wait for the sandbox whose init (or, in the container tier, command) is
/// `child`. `kill_group` also kills `child`'s process group at the end
/// (container tier: there is no pid namespace to do it).
pub fn supervise(
    child: Pid,
    report: OwnedFd,
    signals: &SignalFd,
    timeout: Option<Duration>,
    start: Instant,
    kill_group: bool,
) -> Outcome {
    let pidfd = crate::sys::pidfd_open(child).ok();
    let deadline = timeout.map(|t| start + t);
    let mut grace: Option<Instant> = None;
    let mut timed_out = false;
    let mut signal_received = None;
    let mut messages = Vec::new();
    let mut report_open = true;
    let mut exited = false;
    while !exited || report_open {
        let now = Instant::now();
        let wake = [deadline.filter(|_| !timed_out), grace]
            .into_iter()
            .flatten()
            .min();
        let wait_ms = match wake {
            Some(w) => w
                .saturating_duration_since(now)
                .as_millis()
                .min(i32::MAX as u128) as i32,
            None => -1,
        };
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if report_open {
            fds.push(PollFd::new(report.as_fd(), PollFlags::POLLIN));
        }
        if let (Some(p), false) = (&pidfd, exited) {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        let timeout = PollTimeout::try_from(wait_ms).unwrap_or(PollTimeout::NONE);
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                tracing::debug!(%e, "poll failed; killing the sandbox");
                let _ = kill(child, Signal::SIGKILL);
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            if let Ok(Some(info)) = signals.read_signal() {
                if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                    // Container tier: the command leads its own process group
                    // (setsid); the namespaces tier's init forwards by itself.
                    if !kill_group || kill(Pid::from_raw(-child.as_raw()), sig).is_err() {
                        let _ = kill(child, sig);
                    }
                    if terminating(sig) && signal_received.is_none() {
                        signal_received = Some(sig as i32);
                        grace = Some(Instant::now() + GRACE);
                    }
                }
            }
        }
        let mut idx = 1;
        if report_open {
            if ready[idx] {
                let mut buf = [0u8; 4096];
                match nix::unistd::read(report.as_fd(), &mut buf) {
                    Ok(0) => report_open = false,
                    Ok(n) => {
                        messages.extend_from_slice(&buf[..n]);
                        tracing::trace!(target: "shellcage::timing", "report bytes {}", start.elapsed().as_micros());
                    }
                    Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                    Err(_) => report_open = false,
                }
            }
            idx += 1;
        }
        if pidfd.is_some() && !exited && ready.get(idx).copied().unwrap_or(false) {
            tracing::trace!(target: "shellcage::timing", "init exited {}", start.elapsed().as_micros());
            exited = true;
        }
        if pidfd.is_none() && !report_open {
            exited = true;
        }
        // Namespaces tier: the init reports the command's status only after it
        // has killed and reaped every other process of the sandbox, and the
        // pipe closes as it exits. That is the end of the sandbox; the kernel's
        // teardown of the namespaces after the init's exit is not waited for.
        if !kill_group && !report_open && final_status_seen(&messages) {
            exited = true;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) && !timed_out {
            timed_out = true;
            let _ = kill(child, Signal::SIGKILL);
            if kill_group {
                let _ = kill(Pid::from_raw(-child.as_raw()), Signal::SIGKILL);
            }
        }
        if grace.is_some_and(|g| now >= g) {
            grace = None;
            let _ = kill(child, Signal::SIGKILL);
        }
        if exited && report_open && kill_group {
            // Container tier: the command is gone; the pipe stays open only if
            // something it left behind holds it (it cannot: close-on-exec).
            report_open = false;
        }
    }
    if kill_group {
        let _ = kill(Pid::from_raw(-child.as_raw()), Signal::SIGKILL);
    }
    // After a reported status the init is only finishing its exit: reap it
    // if it is done, else leave it (it is reparented and reaped when we exit).
    let flags = (!kill_group && final_status_seen(&messages))
        .then_some(nix::sys::wait::WaitPidFlag::WNOHANG);
    let wait = loop {
        match waitpid(child, flags) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    if kill_group {
        // Everything the command left behind, in any session or process group,
        // was reparented to us (child subreaper): kill it all.
        let n = crate::sandbox::contained::kill_descendants();
        tracing::debug!(killed = n, "container tier: descendants killed");
    }
    let duration_ms = start.elapsed().as_millis() as u64;
    let text = String::from_utf8_lossy(&messages);
    let mut errors = Vec::new();
    let mut reported: Option<Status> = None;
    for line in text.lines() {
        let (kind, rest) = line.split_at(line.len().min(2));
        match kind.trim() {
            "E" => errors.push(rest.to_string()),
            "T" => tracing::debug!(target: "shellcage::timing", "{}", rest.trim()),
            "X" => reported = rest.trim().parse().ok().map(Status::Exited),
            "S" => reported = rest.trim().parse().ok().map(Status::Signaled),
            _ => {}
        }
    }
    let status = if timed_out {
        Status::TimedOut
    } else if let Some(s) = reported {
        s
    } else {
        match wait {
            Ok(WaitStatus::Exited(_, code)) if !errors.is_empty() => Status::NotStarted(code),
            Ok(WaitStatus::Exited(_, code)) => Status::Exited(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => Status::Signaled(sig as i32),
            _ => Status::NotStarted(EXIT_SETUP),
        }
    };
    let exit_code = match (&status, signal_received) {
        (Status::TimedOut, _) => 124,
        (_, Some(sig)) => 128 + sig,
        (Status::Exited(c), _) | (Status::NotStarted(c), _) => *c,
        (Status::Signaled(s), _) => 128 + s,
    };
    Outcome {
        status,
        exit_code,
        duration_ms,
        signal_received,
        errors,
    }
}

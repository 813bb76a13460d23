//! The supervisor after launch: wait for the sandbox, enforce the timeout,
//! forward signals, and turn what happened into an `Outcome`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::Serialize;

use crate::sandbox::init::{EXIT_SETUP, FORWARDED};
use crate::sandbox::landlock::LandlockStatus;
use crate::sandbox::lookups::LookupRecord;
use crate::sandbox::report::{Decoder, Message};
use crate::sys::SysError;

pub mod relay;
pub use relay::Relay;

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
    /// What Landlock enforced, as the command process reported it (none when
    /// the command never got that far). In the report's own `landlock` field.
    #[serde(skip)]
    pub landlock: Option<LandlockStatus>,
    /// Network mode `none`: the name lookups the sandbox answered itself (none when there
    /// were none). In the report's `egress` field.
    #[serde(skip)]
    pub lookups: Option<LookupRecord>,
}

/// The supervised signals, blocked and read from a signalfd while the sandbox
/// runs; the previous signal mask comes back when this is dropped.
///
/// Blocked before the clone: the init inherits the mask (it waits for the
/// signals synchronously). SIGTTOU and SIGTTIN are blocked too, so that giving
/// the terminal back after an interactive shell does not stop us.
pub struct SignalGuard {
    pub fd: SignalFd,
    old: SigSet,
}

impl SignalGuard {
    pub fn block() -> Result<SignalGuard, SysError> {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(s);
        }
        let mut block = set;
        block.add(Signal::SIGTTOU);
        block.add(Signal::SIGTTIN);
        let mut old = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut old))
            .map_err(|e| SysError::new("sigprocmask", "supervisor", e))?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| SysError::new("signalfd", "supervisor", e));
        match fd {
            Ok(fd) => Ok(SignalGuard { fd, old }),
            Err(e) => {
                let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
                Err(e)
            }
        }
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}

fn terminating(sig: Signal) -> bool {
    matches!(
        sig,
        Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP | Signal::SIGQUIT
    )
}

/// The state of one supervision, advanced by [`Watch::step`].
struct Watch<'a> {
    child: Pid,
    report: OwnedFd,
    signals: &'a SignalFd,
    pidfd: Option<OwnedFd>,
    start: Instant,
    /// Container tier: no pid namespace, so the command's process group is
    /// signalled and killed by us.
    kill_group: bool,
    deadline: Option<Instant>,
    grace: Option<Instant>,
    timed_out: bool,
    signal_received: Option<i32>,
    messages: Decoder,
    report_open: bool,
    exited: bool,
    /// The terminal relay, when the command has its own pty.
    relay: Option<&'a mut Relay>,
}

/// What a poll entry of [`Watch::poll`] is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Signals,
    Report,
    Pid,
    Relay(relay::Side),
}

impl Watch<'_> {
    fn done(&self) -> bool {
        self.exited && !self.report_open
    }

    /// Wait for the next event (a signal, report bytes, the init's exit, a
    /// deadline) and handle it.
    fn step(&mut self) {
        let wake = [self.deadline.filter(|_| !self.timed_out), self.grace]
            .into_iter()
            .flatten()
            .min();
        let wait_ms = match wake {
            Some(w) => w
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32,
            None => -1,
        };
        let ready = self.poll(wait_ms);
        let has = |what: Source| ready.contains(&what);
        if has(Source::Signals) {
            self.on_signal();
        }
        if has(Source::Report) {
            self.on_report();
        }
        if let Some(r) = self.relay.as_deref_mut() {
            for side in ready.iter().filter_map(|s| match s {
                Source::Relay(side) => Some(*side),
                _ => None,
            }) {
                r.ready(side);
            }
        }
        let pid = has(Source::Pid);
        if pid {
            tracing::trace!(target: "shellcage::timing", "init exited {}", self.start.elapsed().as_micros());
            self.exited = true;
        }
        if self.pidfd.is_none() && !self.report_open {
            self.exited = true;
        }
        // Namespaces tier: the init reports the command's status only after it
        // has killed and reaped every other process of the sandbox, and the
        // pipe closes as it exits. That is the end of the sandbox; the kernel's
        // teardown of the namespaces after the init's exit is not waited for.
        if !self.kill_group && !self.report_open && self.messages.final_seen() {
            self.exited = true;
        }
        self.enforce_deadlines();
        if self.exited && self.report_open && self.kill_group {
            // Container tier: the command is gone; the pipe stays open only if
            // something it left behind holds it (it cannot: close-on-exec).
            self.report_open = false;
        }
    }

    /// poll(2) on the signalfd, the report pipe (while open), the pidfd (until the init
    /// exits) and the terminal relay's descriptors: which of them are ready.
    fn poll(&self, wait_ms: i32) -> Vec<Source> {
        let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        let mut what = vec![Source::Signals];
        if self.report_open {
            fds.push(PollFd::new(self.report.as_fd(), PollFlags::POLLIN));
            what.push(Source::Report);
        }
        if let (Some(p), false) = (&self.pidfd, self.exited) {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            what.push(Source::Pid);
        }
        if let Some(r) = self.relay.as_deref() {
            for (fd, flags, side) in r.interest() {
                fds.push(PollFd::new(fd, flags));
                what.push(Source::Relay(side));
            }
        }
        let timeout = PollTimeout::try_from(wait_ms).unwrap_or(PollTimeout::NONE);
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                tracing::debug!(%e, "poll failed; killing the sandbox");
                let _ = kill(self.child, Signal::SIGKILL);
            }
        }
        fds.iter()
            .zip(what)
            .filter(|(f, _)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, w)| w)
            .collect()
    }

    fn on_signal(&mut self) {
        let Ok(Some(info)) = self.signals.read_signal() else {
            return;
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            return;
        };
        // With the relay the command's terminal is its pty: a new size of the caller's
        // terminal goes to the pty, whose foreground process group the kernel signals.
        if sig == Signal::SIGWINCH {
            if let Some(r) = self.relay.as_deref().filter(|r| r.active()) {
                r.window_changed();
                return;
            }
        }
        // Container tier: the command leads its own process group (setsid);
        // the namespaces tier's init forwards by itself.
        if !self.kill_group || kill(Pid::from_raw(-self.child.as_raw()), sig).is_err() {
            let _ = kill(self.child, sig);
        }
        if terminating(sig) && self.signal_received.is_none() {
            self.signal_received = Some(sig as i32);
            self.grace = Some(Instant::now() + GRACE);
        }
    }

    fn on_report(&mut self) {
        let mut buf = [0u8; 4096];
        match nix::unistd::read(self.report.as_fd(), &mut buf) {
            Ok(0) => self.report_open = false,
            Ok(n) => {
                self.messages.push(&buf[..n]);
                tracing::trace!(target: "shellcage::timing", "report bytes {}", self.start.elapsed().as_micros());
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(_) => self.report_open = false,
        }
    }

    /// The timeout kills the whole sandbox; so does the end of the grace
    /// period after a terminating signal.
    fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        if self.deadline.is_some_and(|d| now >= d) && !self.timed_out {
            self.timed_out = true;
            let _ = kill(self.child, Signal::SIGKILL);
            if self.kill_group {
                let _ = kill(Pid::from_raw(-self.child.as_raw()), Signal::SIGKILL);
            }
        }
        if self.grace.is_some_and(|g| now >= g) {
            self.grace = None;
            let _ = kill(self.child, Signal::SIGKILL);
        }
    }

    /// Kill what is left, reap the child, and say what happened.
    fn finish(self) -> Outcome {
        if self.kill_group {
            let _ = kill(Pid::from_raw(-self.child.as_raw()), Signal::SIGKILL);
        }
        // After a reported status the init is only finishing its exit: reap it
        // if it is done, else leave it (it is reparented and reaped when we exit).
        let flags = (!self.kill_group && self.messages.final_seen())
            .then_some(nix::sys::wait::WaitPidFlag::WNOHANG);
        let wait = loop {
            match waitpid(self.child, flags) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        };
        if self.kill_group {
            // Everything the command left behind, in any session or process group,
            // was reparented to us (child subreaper): kill it all.
            let n = crate::sandbox::container_tier::kill_descendants();
            tracing::debug!(killed = n, "container tier: descendants killed");
        }
        let duration_ms = self.start.elapsed().as_millis() as u64;
        let mut errors = Vec::new();
        let mut reported: Option<Status> = None;
        let mut landlock = None;
        let mut lookups = None;
        for message in self.messages.finish() {
            match message {
                Message::Error(text) => errors.push(text),
                Message::Phase { name, micros } => {
                    tracing::debug!(target: "shellcage::timing", "{name} {micros}")
                }
                Message::Landlock(status) => landlock = Some(status),
                Message::Lookups(record) => lookups = Some(record.bounded()),
                Message::Exited(code) => reported = Some(Status::Exited(code)),
                Message::Signaled(sig) => reported = Some(Status::Signaled(sig)),
            }
        }
        let status = if self.timed_out {
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
        let exit_code = match (&status, self.signal_received) {
            (Status::TimedOut, _) => 124,
            (_, Some(sig)) => 128 + sig,
            (Status::Exited(c), _) | (Status::NotStarted(c), _) => *c,
            (Status::Signaled(s), _) => 128 + s,
        };
        Outcome {
            status,
            exit_code,
            duration_ms,
            signal_received: self.signal_received,
            errors,
            landlock,
            lookups,
        }
    }
}

/// Wait for the sandbox whose init (or, in the container tier, command) is
/// `child`. `kill_group` also kills `child`'s process group at the end
/// (container tier: there is no pid namespace to do it).
pub fn supervise(
    child: Pid,
    report: OwnedFd,
    signals: &SignalGuard,
    timeout: Option<Duration>,
    start: Instant,
    kill_group: bool,
    mut relay: Option<&mut Relay>,
) -> Outcome {
    if let Some(r) = relay.as_deref_mut() {
        r.start();
    }
    let mut watch = Watch {
        child,
        report,
        signals: &signals.fd,
        pidfd: crate::sys::pidfd_open(child).ok(),
        start,
        kill_group,
        deadline: timeout.map(|t| start + t),
        grace: None,
        timed_out: false,
        signal_received: None,
        messages: Decoder::default(),
        report_open: true,
        exited: false,
        relay,
    };
    while !watch.done() {
        watch.step();
    }
    // The sandbox is over: what it wrote is shown before anything shellcage says.
    if let Some(r) = watch.relay.as_deref_mut() {
        r.finish();
    }
    watch.finish()
}

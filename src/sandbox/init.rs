//! Inside the sandbox: pid 1 (sets up the namespaces' view, then reaps and
//! forwards signals) and the command process (drops everything, then execs).
//!
//! Both tell the supervisor what happened over the report pipe, in the typed
//! messages of [`super::report`]: an error that stopped the launch, the phase
//! timings (`-v`), the Landlock status the command process got, and the
//! command's final status.

use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::cgroup::{GateError, StartGate};
use super::lookups::{self, LookupRecord, Responder};
use super::net::{self, Channel, Listening};
use super::report::{self, Message};
use super::terminal::{self, PtySource};
use super::{SandboxSpec, landlock, limits, mount, privileges, rootview, seccomp};
use crate::sys::{self, Forked};

/// Signals the init forwards to the command's process group.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Exit codes of the design.
pub const EXIT_SETUP: i32 = 125;
pub const EXIT_NOEXEC: i32 = 126;
pub const EXIT_NOTFOUND: i32 = 127;

/// `-v` phase timing, only when timing is on.
fn mark(spec: &SandboxSpec, fd: RawFd, phase: &str) {
    if let Some(start) = spec.command.timing {
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        report::send(
            fd,
            &Message::Phase {
                name: phase.into(),
                micros,
            },
        );
    }
}

pub(crate) fn fail(fd: RawFd, code: i32, err: impl std::fmt::Display) -> ! {
    report::send(fd, &Message::Error(err.to_string()));
    sys::exit_now(code)
}

fn write_id_maps(uid: u32, gid: u32) -> Result<(), crate::sys::SysError> {
    use std::io::Write;
    let write = |path: &str, text: String| -> Result<(), crate::sys::SysError> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| {
                crate::sys::SysError::new(
                    "write",
                    path,
                    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                )
            })
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("{uid} {uid} 1\n"))?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1\n"))?;
    Ok(())
}

/// Wait until the supervisor has placed us in the run's cgroups (`gate`, when
/// it must move us; nothing else is done before, so that everything the
/// sandbox does is counted there); then make sure the kernel's OOM killer may
/// pick us. Exits when the supervisor gave up.
pub(crate) fn enter_limits(gate: Option<StartGate>, report_fd: RawFd) {
    if let Some(gate) = gate {
        match gate.enter() {
            Ok(()) => {}
            Err(GateError::GaveUp) => sys::exit_now(EXIT_SETUP),
            Err(GateError::Join(why)) => fail(report_fd, EXIT_SETUP, why),
        }
    }
    // A supervisor started with a negative oom_score_adj (a service with
    // OOMScoreAdjust=-1000) would pass it on: a sandbox at its memory limit
    // could then not be OOM-killed and would hang there, and a host-wide OOM
    // would spare it. Raising it back to 0 needs no privilege.
    if let Err(e) = reset_oom_score_adj(std::path::Path::new("/proc/self/oom_score_adj")) {
        fail(
            report_fd,
            EXIT_SETUP,
            format_args!("cannot reset /proc/self/oom_score_adj to 0: {e}"),
        );
    }
}

/// Raise a negative `oom_score_adj` in `file` to 0; a value of 0 or more is
/// left as it is (the user may want their tools killed first).
fn reset_oom_score_adj(file: &std::path::Path) -> std::io::Result<()> {
    let now: i32 = std::fs::read_to_string(file)?.trim().parse().unwrap_or(0);
    if now < 0 {
        std::fs::write(file, "0")?;
    }
    Ok(())
}

/// The id maps: written by the sandbox itself (its own uid and gid, the one
/// map a process may write for itself), or, for a sandbox started by root, by
/// the supervisor, which sends the id-mapped trees on `root` once they are
/// (see [`super::rootview`]). Returns those trees.
fn id_maps(
    spec: &SandboxSpec,
    report_fd: RawFd,
    root: Option<std::os::unix::net::UnixStream>,
) -> Vec<std::os::fd::OwnedFd> {
    let Some(sock) = root else {
        if let Err(e) = write_id_maps(spec.uid, spec.gid) {
            fail(
                report_fd,
                EXIT_SETUP,
                format_args!("cannot map user ids: {e}"),
            );
        }
        return Vec::new();
    };
    let expected = spec.mounts.as_ref().map_or(0, |m| m.idmapped.len());
    match rootview::receive(&sock, expected) {
        Ok(Some(trees)) => {
            // Changing credentials cleared the parent-death signal: set it
            // again, and close the race where the supervisor died meanwhile.
            if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err()
                || sys::pipe_reader_gone(report_fd)
            {
                sys::exit_now(EXIT_SETUP);
            }
            trees
        }
        // The supervisor gave up, and says why.
        Ok(None) => sys::exit_now(EXIT_SETUP),
        Err(e) => fail(
            report_fd,
            EXIT_SETUP,
            format_args!("cannot map user ids: {e}"),
        ),
    }
}

/// pid 1 of the sandbox. Never returns. `gate`: see [`enter_limits`];
/// `root`: see [`id_maps`].
pub fn run_init(
    spec: &SandboxSpec,
    report_fd: RawFd,
    gate: Option<StartGate>,
    root: Option<std::os::unix::net::UnixStream>,
) -> ! {
    // Die with the supervisor; close the race where it died before this line.
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || sys::pipe_reader_gone(report_fd)
    {
        sys::exit_now(EXIT_SETUP);
    }
    let moved = gate.is_some();
    enter_limits(gate, report_fd);
    if moved {
        // Cloned without CLONE_NEWCGROUP: our leaf becomes the root of the
        // sandbox's cgroup namespace only now that we are in it.
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP) {
            fail(
                report_fd,
                EXIT_SETUP,
                format_args!("unshare(CLONE_NEWCGROUP) => {e}"),
            );
        }
    }
    mark(spec, report_fd, "init started");
    // The network namespace (about a third of the namespace cost) is created,
    // with loopback up, on a second thread while this one builds the mounts;
    // it is joined before the command exists. Until then the init alone is in
    // the host's network namespace, and does no networking.
    // In proxy mode the same thread creates the proxy's listeners there and sends them to
    // the proxy process (see sandbox::net); in mode none it binds the socket that brought
    // loopback up as the name-lookup responder's (see sandbox::lookups).
    let listen = proxy_listeners(spec);
    let answer_lookups = spec.lookups;
    let netns = spec.plan.new_netns.then(|| {
        std::thread::Builder::new().stack_size(64 * 1024).spawn(
            move || -> Result<NetnsUp, crate::sys::SysError> {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| crate::sys::SysError::new("unshare", "CLONE_NEWNET", e))?;
                let (ns, sock) = sys::loopback_up_netns_fd()?;
                // Not a guarantee: without it lookups fail as they did before (at once with
                // glibc, after the resolver's timeout with musl).
                let lookups = answer_lookups
                    .then(|| lookups::bind(sock))
                    .and_then(Result::ok);
                if let Some(listen) = listen {
                    let (l, channel) = listen?;
                    net::create_listeners(&l, &channel).map_err(|e| match e.errno {
                        // The proxy is gone; the supervisor says why.
                        nix::errno::Errno::EPIPE | nix::errno::Errno::ECONNRESET => {
                            crate::sys::SysError::new("network proxy", "ended", e.errno)
                        }
                        _ => e,
                    })?;
                }
                Ok(NetnsUp { ns, lookups })
            },
        )
    });
    let idmapped = id_maps(spec, report_fd, root);
    mark(spec, report_fd, "id maps written");
    // Not dumpable: the command (same uid) cannot read /proc/1/environ, /proc/1/mem or ptrace us.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        fail(
            report_fd,
            EXIT_SETUP,
            format_args!("prctl(PR_SET_DUMPABLE, 0) => {e}"),
        );
    }
    if !spec.command.interactive {
        // Out of the caller's session: terminal signals reach the supervisor only.
        let _ = nix::unistd::setsid();
    }
    if let Some(mounts) = &spec.mounts {
        if let Err(e) = mount::apply(mounts, idmapped) {
            fail(
                report_fd,
                EXIT_SETUP,
                format_args!("cannot build the sandbox filesystem: {e}"),
            );
        }
    }
    if let Err(e) = nix::unistd::sethostname(spec.hostname) {
        fail(
            report_fd,
            EXIT_SETUP,
            format_args!("sethostname({}) => {e}", spec.hostname),
        );
    }
    mark(spec, report_fd, "root built");
    let mut responder = None;
    if let Some(thread) = netns {
        let joined = match thread {
            Ok(handle) => handle.join().unwrap_or_else(|_| {
                Err(crate::sys::SysError::new(
                    "thread",
                    "network namespace",
                    nix::errno::Errno::EINVAL,
                ))
            }),
            Err(e) => Err(crate::sys::SysError::new(
                "thread",
                "network namespace",
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            )),
        };
        // Single-threaded again from here on (the command is forked below).
        let entered = joined.and_then(|up| {
            responder = up.lookups.map(|s| Responder::new(s, spec.hostname));
            nix::sched::setns(&up.ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| crate::sys::SysError::new("setns", "CLONE_NEWNET", e))
        });
        if let Err(e) = entered {
            fail(
                report_fd,
                EXIT_SETUP,
                format_args!("cannot create the network namespace: {e}"),
            );
        }
    }
    mark(spec, report_fd, "network up");
    // Before the connector of the published ports is forked: it gets the pty too.
    let pty = own_terminal(spec, report_fd);
    start_network_helpers(spec, report_fd);
    if let Some(sock) = spec.template {
        serve_template(spec, report_fd, sock, responder)
    }
    let mut keep = vec![0, 1, 2, report_fd];
    keep.extend(spec.layer_lock);
    keep.extend(responder.as_ref().map(|r| r.fd().as_raw_fd()));
    sys::close_fds_except(&keep);
    let blocked = block_reaped(report_fd);
    let child = match sys::fork_process() {
        Ok(Forked::Child) => exec_command(spec, report_fd, pty),
        Ok(Forked::Parent { child }) => child,
        Err(e) => fail(report_fd, EXIT_SETUP, e),
    };
    let served = responder.and_then(|r| serving(r, &blocked));
    reap_until(child, &blocked, report_fd, served)
}

/// Block SIGCHLD and the forwarded signals (the init reads them with `sigwait` or a
/// signalfd); returns the set.
fn block_reaped(report_fd: RawFd) -> SigSet {
    let mut blocked = SigSet::empty();
    blocked.add(Signal::SIGCHLD);
    for s in FORWARDED {
        blocked.add(s);
    }
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None) {
        fail(
            report_fd,
            EXIT_SETUP,
            format_args!("sigprocmask(SIG_BLOCK) in the init => {e}"),
        );
    }
    blocked
}

/// The namespaces a session's template holds, in the order it sends them.
pub const TEMPLATE_NAMESPACES: [&str; 5] = ["user", "mnt", "net", "ipc", "uts"];

/// A session's template (see the `session` module): the sandbox is built; send its
/// namespaces to the session server on `sock`, then only answer name lookups (mode
/// none) until the server closes `sock` or dies (the parent-death signal). No command
/// ever runs here, and nothing of a command can reach this process: it is in no
/// command's pid namespace, and holds no capability once the namespaces are sent.
fn serve_template(
    spec: &SandboxSpec,
    report_fd: RawFd,
    sock: RawFd,
    responder: Option<Responder>,
) -> ! {
    let mut fds = Vec::new();
    for ns in TEMPLATE_NAMESPACES {
        let path = format!("/proc/self/ns/{ns}");
        match std::fs::File::open(&path) {
            Ok(f) => fds.push(std::os::fd::OwnedFd::from(f)),
            Err(e) => fail(report_fd, EXIT_SETUP, format_args!("open {path}: {e}")),
        }
    }
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let mounts = match mount_count() {
        Ok(n) => n,
        Err(e) => fail(
            report_fd,
            EXIT_SETUP,
            format_args!("/proc/self/mountinfo: {e}"),
        ),
    };
    if let Err(e) = sys::send_fds(
        sys::borrow_fd(sock),
        mounts.to_string().as_bytes(),
        &borrowed,
    ) {
        fail(
            report_fd,
            EXIT_SETUP,
            format_args!("cannot send the namespaces: {e}"),
        );
    }
    drop(borrowed);
    drop(fds);
    mark(spec, report_fd, "template ready");
    // Each command answers its own lookups (see lookups::bind_for_session_command):
    // the template's socket goes, and the port is free for theirs.
    drop(responder);
    let mut keep = vec![sock, report_fd];
    keep.extend(spec.layer_lock);
    sys::close_fds_except(&keep);
    if privileges::drop_held().is_err() {
        sys::exit_now(EXIT_SETUP);
    }
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let sock = sys::borrow_fd(sock);
    loop {
        let mut fds = [PollFd::new(sock, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => sys::exit_now(EXIT_SETUP),
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            // The server closed its end (or wrote, which it never does): done.
            sys::exit_now(0);
        }
    }
}

/// The command a session's pre-started sandbox gets (see [`run_warm`]), sent by its
/// handler with the command's stdin, stdout and stderr.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WarmCommand {
    pub argv: Vec<Vec<u8>>,
    pub envp: Vec<Vec<u8>>,
    pub path: String,
    pub cwd: std::path::PathBuf,
    /// `.env` files and unreadable directories to mask (see [`mount::mask_for_command`]).
    pub masks: Vec<(std::path::PathBuf, bool)>,
    /// Placeholders to hold for the run (see [`mount::hold_placeholders`]).
    pub holds: Vec<std::path::PathBuf>,
}

/// How a session's command starts: its masks and holds known (`known`), or pre-started, waiting
/// on `sock` for its [`WarmCommand`] (`known: None`). Either way the init says on
/// `sock` when the command's root is checked and complete ([`WARM_READY`]).
pub struct WarmStart<'a> {
    pub sock: RawFd,
    /// The masks and the placeholders to hold, when the command is known.
    pub known: Option<Known<'a>>,
}

/// A known command's masks (path, is a directory) and placeholders to hold.
#[derive(Clone, Copy)]
pub struct Known<'a> {
    pub masks: &'a [(std::path::PathBuf, bool)],
    pub holds: &'a [std::path::PathBuf],
}

/// The byte a session's command init sends when its root is checked.
pub const WARM_READY: u8 = b'k';

/// The byte the handler answers with once its client knows the command started: only
/// then is the command forked. (A handler gone before it, so the client heard nothing
/// started and may run the command elsewhere: nothing of it runs here.)
pub const WARM_GO: u8 = b'g';

/// The lines of `/proc/self/mountinfo`: the mounts of our mount namespace.
pub fn mount_count() -> std::io::Result<usize> {
    Ok(std::fs::read("/proc/self/mountinfo")?
        .iter()
        .filter(|b| **b == b'\n')
        .count())
}

/// A command of a session (see the `session` module): pid 1 of a new pid namespace, in a
/// private copy of the session's mount namespace and in its other namespaces. Masks
/// what the session's root does not (see [`mount::mask_for_command`]), mounts its own
/// `/proc`, then runs the command as [`run_init`] does. Pre-started (`WarmStart::Wait`),
/// it mounts its `/proc` first and then waits for the command; the handler's end
/// closing first means no command: it exits. Never returns.
pub fn run_warm(spec: &mut SandboxSpec, report_fd: RawFd, start: WarmStart<'_>) -> ! {
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || sys::pipe_reader_gone(report_fd)
    {
        sys::exit_now(EXIT_SETUP);
    }
    mark(spec, report_fd, "init started");
    if let Err(e) = mount::mount_own_proc() {
        fail(
            report_fd,
            EXIT_SETUP,
            format_args!("cannot prepare the session's filesystem for the command: {e}"),
        );
    }
    // The ruleset is the session's, whatever the command: built while no command waits.
    // Nothing of the handler's is kept; the ruleset's descriptor is what building it
    // left open (kept when the others are closed before the fork).
    // An overlay session's layer lock: held while this sandbox (and so the session's
    // mount) lives.
    let mut ours = vec![0, 1, 2, report_fd, start.sock];
    ours.extend(spec.layer_lock);
    sys::close_fds_except(&ours);
    let ruleset = match landlock::prepare(&spec.landlock) {
        Ok(r) => r,
        Err(e) => fail(report_fd, EXIT_SETUP, e),
    };
    let ruleset_fds: Vec<RawFd> = (sys::open_fds().into_iter())
        .filter(|fd| !ours.contains(fd))
        .filter(|fd| {
            std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .is_ok_and(|l| l.as_os_str() == "anon_inode:[landlock-ruleset]")
        })
        .collect();
    mark(spec, report_fd, "landlock ruleset built");
    let (masks, holds) = match start.known {
        Some(k) => (k.masks.to_vec(), k.holds.to_vec()),
        None => match receive_command(spec, start.sock) {
            Some(known) => known,
            None => sys::exit_now(EXIT_SETUP),
        },
    };
    mark(spec, report_fd, "command received");
    // A file the host deleted or renamed over (git's config.lock, an editor's save, a
    // secret replaced) takes every mount on it away, in every namespace: a protection
    // of the session's root may be gone. Its mounts, and our /proc and /proc/sys, must
    // all be there.
    let expected = spec.warm_mounts + 2;
    match mount_count() {
        Ok(n) if n >= expected => {}
        Ok(n) => fail(
            report_fd,
            EXIT_SETUP,
            format_args!(
                "the session's root lost {} of its mounts (a hidden or protected path was replaced on the host): the session ends",
                expected - n
            ),
        ),
        Err(e) => fail(
            report_fd,
            EXIT_SETUP,
            format_args!("/proc/self/mountinfo: {e}"),
        ),
    }
    mark(spec, report_fd, "mounts counted");
    if let Err(e) = mount::hold_placeholders(&holds) {
        fail(
            report_fd,
            EXIT_SETUP,
            format_args!("cannot hold the protected names for the command: {e}"),
        );
    }
    mark(spec, report_fd, "placeholders mounted");
    if let Err(e) = mount::mask_for_command(&masks) {
        fail(
            report_fd,
            EXIT_SETUP,
            format_args!("cannot prepare the session's filesystem for the command: {e}"),
        );
    }
    sys::write_all_raw(start.sock, &[WARM_READY]);
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        fail(
            report_fd,
            EXIT_SETUP,
            format_args!("prctl(PR_SET_DUMPABLE, 0) => {e}"),
        );
    }
    if !spec.command.interactive {
        let _ = nix::unistd::setsid();
    }
    mark(spec, report_fd, "root refreshed");
    // Not a guarantee (as in a cold run): without it lookups fail as they would anyway.
    let responder = spec
        .lookups
        .then(lookups::bind_for_session_command)
        .and_then(Result::ok)
        .map(|s| Responder::new(s, spec.hostname));
    // The client has heard `Started` before anything of the command runs.
    let mut go = [0u8; 1];
    let went = loop {
        match nix::unistd::read(sys::borrow_fd(start.sock), &mut go) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(1) => break go[0] == WARM_GO,
            _ => break false,
        }
    };
    if !went {
        sys::exit_now(EXIT_SETUP);
    }
    let mut keep = vec![0, 1, 2, report_fd];
    keep.extend_from_slice(&ruleset_fds);
    keep.extend(spec.layer_lock);
    keep.extend(responder.as_ref().map(|r| r.fd().as_raw_fd()));
    sys::close_fds_except(&keep);
    let blocked = block_reaped(report_fd);
    let child = match sys::fork_process() {
        Ok(Forked::Child) => exec_prepared(spec, report_fd, None, Some(ruleset)),
        Ok(Forked::Parent { child }) => {
            drop(ruleset);
            child
        }
        Err(e) => fail(report_fd, EXIT_SETUP, e),
    };
    match responder.and_then(|r| serving(r, &blocked)) {
        Some(served) => reap_until(child, &blocked, report_fd, Some(served)),
        None => {
            // Reaping and forwarding signals need no capability.
            let _ = privileges::drop_held();
            reap_until(child, &blocked, report_fd, None)
        }
    }
}

/// Wait for the command on `sock`, take its stdio as 0, 1 and 2, and put it in `spec`.
/// Returns its masks and holds; `None` when the handler closed instead (no command).
#[allow(clippy::type_complexity)]
fn receive_command(
    spec: &mut SandboxSpec,
    sock: RawFd,
) -> Option<(Vec<(std::path::PathBuf, bool)>, Vec<std::path::PathBuf>)> {
    let mut buf = vec![0u8; 256 * 1024];
    let (n, fds) = loop {
        match sys::recv_fds(sys::borrow_fd(sock), &mut buf) {
            Err(e) if e.errno == nix::errno::Errno::EINTR => continue,
            other => break other.ok()?,
        }
    };
    if n == 0 || fds.len() != 3 {
        return None;
    }
    let cmd: WarmCommand = serde_json::from_slice(&buf[..n]).ok()?;
    for (fd, to) in fds.iter().zip(0..) {
        // SAFETY: dup2 onto 0, 1 and 2, which this process owns.
        if unsafe { libc::dup2(fd.as_raw_fd(), to) } < 0 {
            return None;
        }
    }
    let c = |v: Vec<u8>| std::ffi::CString::new(v).ok();
    spec.command.argv = cmd.argv.into_iter().map(c).collect::<Option<_>>()?;
    spec.command.envp = cmd.envp.into_iter().map(c).collect::<Option<_>>()?;
    spec.command.path = cmd.path;
    spec.command.cwd = cmd.cwd;
    Some((cmd.masks, cmd.holds))
}

/// What the network-namespace thread hands back: the namespace, and in mode none the
/// name-lookup responder's bound socket.
struct NetnsUp {
    ns: std::os::fd::OwnedFd,
    lookups: Option<std::os::fd::OwnedFd>,
}

/// Once the command is forked, before the init reads anything the command sends: drop
/// every capability, and read the reaped signals from a signalfd (polled with the
/// responder's socket). `None` when either fails: lookups then go unanswered (they fail as
/// they would without the responder), the command is not stopped for it.
fn serving(responder: Responder, blocked: &SigSet) -> Option<(Responder, SignalFd)> {
    if privileges::drop_held().is_err() {
        return None;
    }
    let sfd = SignalFd::with_flags(blocked, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok()?;
    Some((responder, sfd))
}

/// The next signal of `waited`: from a plain `sigwait`, or, with the responder, from its
/// signalfd, answering name lookups while waiting.
fn next_signal(waited: &SigSet, served: &mut Option<(Responder, SignalFd)>) -> nix::Result<Signal> {
    let Some((responder, sfd)) = served else {
        return waited.wait();
    };
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        // A signal first: a flood of lookups never delays the command's end.
        if let Ok(Some(info)) = sfd.read_signal() {
            return Signal::try_from(info.ssi_signo as i32);
        }
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(responder.fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => {
                // Never seen; rather than spin, stop answering and wait as without.
                *served = None;
                return waited.wait();
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            responder.serve();
        }
    }
}

/// When the supervisor relays the caller's terminal: a pty of the sandbox's own devpts
/// (the root is built, so `/dev/ptmx` is its `ptmx`) on the fds that were the caller's
/// terminal, in the init too, so that from here on no process of the sandbox holds the
/// caller's terminal. Returns the fd the command makes its controlling terminal. When
/// the pty cannot be made (no devpts inside), the supervisor does not relay (it gets no
/// master) and the command keeps the caller's terminal, as without a relay.
fn own_terminal(spec: &SandboxSpec, report_fd: RawFd) -> Option<RawFd> {
    let t = spec.command.terminal.as_ref()?;
    spec.mounts.as_ref()?;
    let slave = match terminal::open_inside(t) {
        Ok(slave) => slave,
        Err(e) => {
            mark(spec, report_fd, &format!("no pty inside ({e}): no relay"));
            return None;
        }
    };
    // The master is with the supervisor now, which relays: the slave must be on the fds.
    match terminal::attach(t, &slave) {
        Ok(fd) => Some(fd),
        Err(e) => fail(
            report_fd,
            EXIT_SETUP,
            format_args!("cannot attach the pty: {e}"),
        ),
    }
}

/// The proxy's listening spec and a descriptor of the channel for the network thread (it
/// sends the listeners itself).
fn proxy_listeners(
    spec: &SandboxSpec,
) -> Option<Result<(Listening, Channel), crate::sys::SysError>> {
    let n = spec.net.as_ref()?;
    let l = n.proxy.clone()?;
    Some(match &n.channel {
        Some(c) => c.try_clone().map(|c| (l, c)),
        None => Err(crate::sys::SysError::new(
            "proxy channel",
            "missing",
            nix::errno::Errno::EBADF,
        )),
    })
}

/// With a proxy process: wait until it serves (it starts in parallel with our setup), then
/// fork the connector of the published ports. The command starts only after this.
fn start_network_helpers(spec: &SandboxSpec, report_fd: RawFd) {
    let Some(n) = &spec.net else { return };
    let Some(channel) = &n.channel else {
        fail(
            report_fd,
            EXIT_SETUP,
            "network proxy: no channel to the proxy process",
        )
    };
    if let Err(why) = net::wait_ready(channel) {
        fail(report_fd, EXIT_SETUP, why);
    }
    mark(spec, report_fd, "network proxy ready");
    if n.publish.is_empty() {
        return;
    }
    match sys::fork_process() {
        Ok(Forked::Child) => {
            sys::close_fds_except(&[0, 1, 2, channel.as_raw_fd()]);
            net::run_connector(channel, &n.publish, spec.landlock.required)
        }
        Ok(Forked::Parent { .. }) => {}
        Err(e) => fail(
            report_fd,
            EXIT_SETUP,
            format_args!("cannot start the published ports' connector: {e}"),
        ),
    }
}

/// Reap every child; forward signals to the command's process group; when the
/// command itself ends, report its status and exit (the kernel then kills
/// everything left in the pid namespace).
fn reap_until(
    command: Pid,
    waited: &SigSet,
    report_fd: RawFd,
    mut served: Option<(Responder, SignalFd)>,
) -> ! {
    loop {
        match next_signal(waited, &mut served) {
            Ok(Signal::SIGCHLD) => loop {
                let record = || served.as_ref().map(|(r, _)| &r.record);
                match waitpid(
                    Pid::from_raw(-1),
                    Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
                ) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == command => {
                        finish(report_fd, Message::Exited(code), code, record())
                    }
                    Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => finish(
                        report_fd,
                        Message::Signaled(sig as i32),
                        128 + sig as i32,
                        record(),
                    ),
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            },
            Ok(sig) => {
                // Until the command's setsid its process group does not exist
                // (ESRCH) and the signal would be lost; then signal the command
                // itself: it keeps the signal pending (blocked) until just
                // before execve.
                if kill(Pid::from_raw(-command.as_raw()), sig) == Err(nix::errno::Errno::ESRCH) {
                    let _ = kill(command, sig);
                }
            }
            Err(_) => continue,
        }
    }
}

/// The command has ended: kill everything left in the pid namespace, reap it
/// all (orphans are our children), and only then report the status and exit.
/// So when the supervisor reads the status, no process of the sandbox is
/// left; it need not wait for the kernel to finish tearing the namespaces
/// down after our exit (about 1.5 ms, mostly unmounting).
fn finish(report_fd: RawFd, status: Message, code: i32, lookups: Option<&LookupRecord>) -> ! {
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    // Until ECHILD: nothing left.
    while let Ok(_) | Err(nix::errno::Errno::EINTR) =
        waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL))
    {}
    if let Some(record) = lookups.filter(|r| r.total > 0) {
        report::send(report_fd, &Message::Lookups(record.clone()));
    }
    report::send(report_fd, &status);
    sys::exit_now(code)
}

/// The command process: drop everything, then exec. Never returns. `pty`: the fd of
/// the command's own terminal (see [`terminal`]), which becomes its controlling terminal.
pub fn exec_command(spec: &SandboxSpec, report_fd: RawFd, pty: Option<RawFd>) -> ! {
    exec_prepared(spec, report_fd, pty, None)
}

/// [`exec_command`] with the Landlock ruleset already built (a session's pre-started
/// sandbox builds it before its command comes).
fn exec_prepared(
    spec: &SandboxSpec,
    report_fd: RawFd,
    pty: Option<RawFd>,
    ruleset: Option<landlock::Prepared>,
) -> ! {
    mark(spec, report_fd, "command forked");
    if let Err(e) = prepare_command(spec, report_fd, pty, ruleset) {
        fail(report_fd, EXIT_SETUP, e);
    }
    let name = spec.command.argv[0].to_string_lossy().into_owned();
    let argv: Vec<&std::ffi::CStr> = spec.command.argv.iter().map(|a| a.as_c_str()).collect();
    let envp: Vec<&std::ffi::CStr> = spec.command.envp.iter().map(|a| a.as_c_str()).collect();
    sys::reset_signal_dispositions();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let mut denied = None;
    for candidate in super::env::search_path(&name, &spec.command.path) {
        match sys::execve(&candidate, &argv, &envp) {
            nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP => {
                continue;
            }
            nix::errno::Errno::EACCES => {
                denied.get_or_insert(candidate);
            }
            errno => fail(
                report_fd,
                EXIT_NOEXEC,
                format_args!(
                    "cannot execute {}: {}",
                    candidate.to_string_lossy(),
                    errno.desc().to_lowercase()
                ),
            ),
        }
    }
    match denied {
        Some(path) => fail(
            report_fd,
            EXIT_NOEXEC,
            format_args!(
                "cannot execute {}: permission denied",
                path.to_string_lossy()
            ),
        ),
        None => fail(
            report_fd,
            EXIT_NOTFOUND,
            format_args!("command not found: {name}"),
        ),
    }
}

#[derive(Debug, thiserror::Error)]
enum CommandSetupError {
    #[error("setsid => {0}")]
    Session(nix::errno::Errno),
    #[error("{0}")]
    Terminal(crate::sys::SysError),
    #[error("{0}")]
    Limits(#[from] limits::LimitError),
    #[error("chdir({path}) => {source}")]
    Chdir {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Privileges(#[from] privileges::PrivilegeError),
    #[error("{0}")]
    Landlock(#[from] landlock::LandlockError),
    #[error("{0}")]
    Seccomp(#[from] seccomp::SeccompError),
}

/// The design's order: setsid → rlimits → close fds → chdir → drop caps →
/// no_new_privs → Landlock → seccomp (last, so the steps before it may use
/// any syscall).
fn prepare_command(
    spec: &SandboxSpec,
    report_fd: RawFd,
    pty: Option<RawFd>,
    ruleset: Option<landlock::Prepared>,
) -> Result<(), CommandSetupError> {
    if let Some(fd) = pty {
        // A session of its own whose controlling terminal is the sandbox's pty: job
        // control works through the pty's line discipline.
        nix::unistd::setsid().map_err(CommandSetupError::Session)?;
        sys::set_controlling_tty(sys::borrow_fd(fd)).map_err(CommandSetupError::Terminal)?;
    } else if spec.command.interactive {
        // Own process group in the terminal's foreground (job control works;
        // TIOCSTI is refused by seccomp).
        let me = nix::unistd::getpid();
        let _ = nix::unistd::setpgid(me, me);
        let _ = nix::unistd::tcsetpgrp(std::io::stdin(), me);
    } else {
        nix::unistd::setsid().map_err(CommandSetupError::Session)?;
    }
    limits::apply(&spec.limits, spec.plan.rlimit_nproc)?;
    std::env::set_current_dir(&spec.command.cwd).map_err(|source| CommandSetupError::Chdir {
        path: spec.command.cwd.display().to_string(),
        source,
    })?;
    privileges::drop_all()?;
    mark(spec, report_fd, "privileges dropped");
    let landlock = match ruleset {
        Some(r) => r.restrict(&spec.landlock)?,
        None => landlock::apply(&spec.landlock)?,
    };
    report::send(report_fd, &Message::Landlock(landlock));
    mark(spec, report_fd, "landlock applied");
    seccomp::install(&spec.seccomp)?;
    mark(spec, report_fd, "seccomp installed (exec next)");
    Ok(())
}

/// Container tier: no namespaces. The supervisor's child becomes the command
/// directly (the supervisor kills its process group at the end).
pub fn run_container_tier(spec: &SandboxSpec, report_fd: RawFd, gate: Option<StartGate>) -> ! {
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || sys::pipe_reader_gone(report_fd)
    {
        sys::exit_now(EXIT_SETUP);
    }
    enter_limits(gate, report_fd);
    // The supervisor opened the pty on the host (no devpts of our own here).
    let pty = match spec.command.terminal.as_ref() {
        Some(
            t @ terminal::TerminalSpec {
                source: PtySource::Slave(slave),
                ..
            },
        ) => match terminal::attach(t, slave) {
            Ok(fd) => Some(fd),
            Err(e) => fail(
                report_fd,
                EXIT_SETUP,
                format_args!("cannot attach the pty: {e}"),
            ),
        },
        _ => None,
    };
    match spec.layer_lock {
        Some(lock) => sys::close_fds_except(&[0, 1, 2, report_fd, lock]),
        None => sys::close_fds_except(&[0, 1, 2, report_fd]),
    }
    exec_command(spec, report_fd, pty)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_negative_oom_score_adj_is_raised_to_zero_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("oom_score_adj");
        for (before, after) in [
            ("-1000\n", "0"),
            ("-1\n", "0"),
            ("0\n", "0\n"),
            ("500\n", "500\n"),
        ] {
            std::fs::write(&f, before).unwrap();
            super::reset_oom_score_adj(&f).unwrap();
            assert_eq!(std::fs::read_to_string(&f).unwrap(), after, "{before:?}");
        }
        assert!(super::reset_oom_score_adj(&dir.path().join("missing")).is_err());
    }
}

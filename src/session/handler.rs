//! One command of a session: a process forked from the server for it, which does what
//! a cold run's supervisor does (limits, timeout, signals, exit step, report, audit)
//! with the session's sandbox instead of a new one.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::server::Session;
use super::{SessionUse, proto};
use crate::audit::AuditLog;
use crate::launch::{self, Done};
use crate::sandbox::cgroup::Cgroup;
use crate::sandbox::home::{self, HomeUse};
use crate::sandbox::mount;
use crate::sandbox::report::{self, Message};
use crate::sandbox::spawn::Spawned;
use crate::sandbox::spec::CommandSpec;
use crate::sandbox::{self, SandboxSpec, init};
use crate::supervise::{self, SignalGuard};
use crate::sys::{self, Forked};

fn cold(conn: &OwnedFd, why: impl Into<String>) -> ! {
    let _ = proto::send(conn.as_fd(), &proto::Reply::Cold { why: why.into() }, &[]);
    sys::exit_now(0)
}

/// What a command's sandbox is before its command is known: started (pre-started, or
/// for this command), in its cgroups, with the signals blocked.
struct Prepared {
    spawned: Spawned,
    signals: SignalGuard,
    /// The init's socket: a pre-started one takes its command there, and every one says
    /// there when its root is checked (see [`init::WarmStart`]).
    go: OwnedFd,
    /// Pre-started: the command is sent on `go`.
    waits: bool,
}

/// Make the command's cgroups, block the signals, and start its sandbox (waiting for
/// its command when `masks` is `None`).
fn prepare(
    session: &mut Session<'_>,
    known: Option<init::Known<'_>>,
    start: Instant,
) -> Result<Prepared, String> {
    let spec = &mut session.spec;
    spec.command.timing = tracing::enabled!(tracing::Level::DEBUG).then_some(start);
    if !session.cgroups.groups.is_empty() {
        spec.cgroup = Some(Cgroup::create(&session.cgroups).map_err(|e| e.to_string())?);
    }
    let signals = match SignalGuard::block() {
        Ok(s) => s,
        Err(e) => {
            remove_cgroup(spec);
            return Err(e.to_string());
        }
    };
    let (go, theirs) = match std::os::unix::net::UnixStream::pair() {
        Ok((a, b)) => (OwnedFd::from(a), OwnedFd::from(b)),
        Err(e) => {
            remove_cgroup(spec);
            return Err(e.to_string());
        }
    };
    let spawned = spawn_warm(spec, &session.ns, theirs.as_raw_fd(), known);
    drop(theirs);
    match spawned {
        Ok(spawned) => Ok(Prepared {
            spawned,
            signals,
            go,
            waits: known.is_none(),
        }),
        Err(why) => {
            remove_cgroup(spec);
            Err(why)
        }
    }
}

fn remove_cgroup(spec: &mut SandboxSpec) {
    if let Some(cg) = spec.cgroup.take() {
        let _ = cg.remove();
    }
}

/// The client's stdio as our 0, 1 and 2: what shellcage says goes where a cold run's
/// would (the server's stdio are /dev/null and its log).
fn take_stdio(stdio: &[OwnedFd]) -> Result<(), String> {
    for (fd, to) in stdio.iter().zip(0..) {
        // SAFETY: dup2 onto 0, 1 and 2, which this process owns.
        if unsafe { libc::dup2(fd.as_raw_fd(), to) } < 0 {
            return Err("dup2 of the client's stdio failed".into());
        }
    }
    Ok(())
}

/// Nothing of the server's but 0, 1, 2, `keep` and the session's namespaces (before
/// anything of our own is opened).
fn close_server_fds(session: &Session<'_>, keep: &[i32]) {
    let mut all = vec![0, 1, 2];
    all.extend_from_slice(keep);
    all.extend(session.ns.iter().map(|f| f.as_raw_fd()));
    // The layer's lock: the command's init keeps it (see server::build).
    all.extend(session.spec.layer_lock);
    // The session proxy's query socket (never the command's: close-on-exec).
    all.extend(queries(session).map(|q| q.raw_fd()));
    sys::close_fds_except(&all);
}

/// Network mode `proxy`: where the session's proxy answers for its summary so far.
fn queries<'s>(session: &'s Session<'_>) -> Option<&'s crate::sandbox::proxy::Queries> {
    session.proxy.as_ref().and_then(|p| p.queries.as_ref())
}

/// Die with the server (and so do the commands: their inits die with us).
fn bind_to_server(session: &Session<'_>) {
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err()
        || nix::unistd::getppid().as_raw() != session.server
    {
        sys::exit_now(1);
    }
}

/// The handler for one command whose sandbox is started for it. Never returns.
pub(super) fn run(
    session: &mut Session<'_>,
    request: proto::CommandRequest,
    stdio: Vec<OwnedFd>,
    conn: OwnedFd,
    masks: Vec<(PathBuf, bool)>,
) -> ! {
    let start = Instant::now();
    bind_to_server(session);
    close_server_fds(session, &[conn.as_raw_fd()]);
    if let Err(why) = take_stdio(&stdio) {
        cold(&conn, why);
    }
    drop(stdio);
    let mut holds = hold(session, &conn);
    let git = git_before(&mut holds);
    let paths = holds.as_ref().map(|h| h.paths.clone()).unwrap_or_default();
    let prepared = match prepare(
        session,
        Some(init::Known {
            masks: &masks,
            holds: &paths,
        }),
        start,
    ) {
        Ok(p) => p,
        Err(why) => {
            if let Some(h) = holds {
                let _ = h.finish(git_copies(&session.spec));
            }
            cold(&conn, why)
        }
    };
    serve(
        session,
        prepared,
        request,
        conn,
        Before {
            masks: &masks,
            holds,
            git,
        },
        start,
    )
}

/// What the session's git config copies held when the command started: what it
/// changes in them is merged when it ends.
fn git_before(holds: &mut Option<mount::CommandHolds>) -> Vec<Option<Vec<u8>>> {
    holds
        .as_mut()
        .map(|h| std::mem::take(&mut h.git_before))
        .unwrap_or_default()
}

/// The session's private git config copies (made and removed per command).
fn git_copies(spec: &SandboxSpec) -> &[mount::PrivateConfig] {
    spec.mounts
        .as_ref()
        .map_or(&[][..], |m| &m.protection.git[..])
}

/// The session's placeholders, put in place and held for this command. When that
/// fails the tree no longer fits the session's plan (a name was made on the host): the
/// command runs cold and the session ends.
fn hold(session: &Session<'_>, conn: &OwnedFd) -> Option<mount::CommandHolds> {
    let git = git_copies(&session.spec);
    if session.holds.is_empty() && git.is_empty() {
        return None;
    }
    match mount::hold_for_command(&session.req.policy.workspace, &session.holds, git) {
        Ok(h) => Some(h),
        Err(e) => {
            let why = e.to_string();
            tracing::debug!(why, "session: the placeholders cannot be held");
            let _ = proto::send(conn.as_fd(), &proto::Reply::Cold { why }, &[]);
            sys::exit_now(super::server::EXIT_BROKEN)
        }
    }
}

/// A spare handler: its command's sandbox is started before any command comes (in its
/// cgroups, in the session's namespaces, its own /proc mounted), and waits; the server
/// sends the next command's connection on `control`. Never returns.
pub(super) fn spare(session: &mut Session<'_>, control: OwnedFd) -> ! {
    bind_to_server(session);
    close_server_fds(session, &[control.as_raw_fd()]);
    let prepared = match prepare(session, None, Instant::now()) {
        Ok(p) => p,
        Err(why) => {
            tracing::debug!(why, "session: no spare");
            sys::exit_now(1)
        }
    };
    let got = proto::recv::<super::proto::SpareRequest>(control.as_fd());
    let start = Instant::now();
    let Ok(Some((sr, mut fds))) = got else {
        // No command (the server ends): the sandbox and its cgroups go.
        let _ = nix::sys::signal::kill(prepared.spawned.child, Signal::SIGKILL);
        let _ = waitpid(prepared.spawned.child, None);
        remove_cgroup(&mut session.spec);
        sys::exit_now(0)
    };
    drop(control);
    if fds.len() != 4 {
        sys::exit_now(1);
    }
    let conn = fds.remove(0);
    if let Err(why) = take_stdio(&fds) {
        cold(&conn, why);
    }
    drop(fds);
    let mut holds = hold(session, &conn);
    let git = git_before(&mut holds);
    tracing::debug!(target: "shellcage::timing", "session: placeholders and git copies held {}", start.elapsed().as_micros());
    serve(
        session,
        prepared,
        sr.request,
        conn,
        Before {
            masks: &sr.masks,
            holds,
            git,
        },
        start,
    )
}

/// What is set for a command before it starts: its masks, the placeholders held for
/// it, what the git config copies hold.
struct Before<'a> {
    masks: &'a [(PathBuf, bool)],
    holds: Option<mount::CommandHolds>,
    git: Vec<Option<Vec<u8>>>,
}

/// The command is known and its sandbox started: run and conclude it.
fn serve(
    session: &mut Session<'_>,
    prepared: Prepared,
    request: proto::CommandRequest,
    conn: OwnedFd,
    before: Before<'_>,
    start: Instant,
) -> ! {
    let Before {
        masks,
        holds,
        git: git_before,
    } = before;
    // The caller's environment and directory, for the command's environment and for
    // what is relative to them (the report file).
    let env: Vec<(OsString, OsString)> = request
        .env
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    let _ = std::env::set_current_dir(&request.cwd);
    let mut req = session.req.clone();
    req.started = start;
    req.argv = request.argv.clone();
    req.argv_c = match request
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(v) if !v.is_empty() => v,
        _ => cold(&conn, "argv"),
    };
    req.cwd = request.cwd.clone();
    req.report_file = request.report_file.clone();
    req.policy.report = request.report;
    req.interactive = false;
    let user = env
        .iter()
        .find(|(k, _)| k == "USER")
        .and_then(|(_, v)| v.to_str())
        .map(str::to_owned)
        .unwrap_or_else(crate::request::user_name);
    let spec = &mut session.spec;
    let command = sandbox::Command {
        argv: &req.argv_c,
        cwd: &req.cwd,
        interactive: false,
        user: &user,
        policy_file: None,
    };
    let (mut env_out, cwd) = sandbox::command_env(&req.policy, &spec.plan, &command, env);
    for (k, v) in &spec.env_delta {
        if !env_out.explicit.iter().any(|e| e == k) {
            env_out.vars.insert(k.clone(), v.clone());
        }
    }
    spec.command = CommandSpec {
        argv: req.argv_c.clone(),
        envp: env_out.to_cstrings(),
        path: env_out.vars.get("PATH").cloned().unwrap_or_default(),
        cwd,
        interactive: false,
        terminal: None,
        timing: spec.command.timing,
    };
    let Prepared {
        spawned,
        signals,
        go,
        waits,
    } = prepared;
    // The session proxy's summary before the command: its report is what came after.
    let proxy_before = queries(session).map(|q| q.snapshot(false));
    let spec = &mut session.spec;
    let mut taken = true;
    if waits {
        // The pre-started sandbox gets the command, with its stdio (ours now).
        let cmd = init::WarmCommand {
            argv: spec
                .command
                .argv
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect(),
            envp: spec
                .command
                .envp
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect(),
            path: spec.command.path.clone(),
            cwd: spec.command.cwd.clone(),
            masks: masks.to_vec(),
            holds: holds.as_ref().map(|h| h.paths.clone()).unwrap_or_default(),
        };
        let stdio = [0, 1, 2].map(sys::borrow_fd);
        taken = proto::send(go.as_fd(), &cmd, &stdio).is_ok();
    }
    // Nothing is said to the client before the init has checked the root: until then a
    // failure runs the command cold, and ends the session.
    let mut byte = [0u8; 1];
    let ready = taken
        && loop {
            match nix::unistd::read(go.as_fd(), &mut byte) {
                Err(nix::errno::Errno::EINTR) => continue,
                Ok(1) => break byte[0] == init::WARM_READY,
                _ => break false,
            }
        };
    tracing::debug!(target: "shellcage::timing", "session: command's root checked {}", start.elapsed().as_micros());
    if !ready {
        drop(go);
        let _ = nix::sys::signal::kill(spawned.child, Signal::SIGKILL);
        let _ = waitpid(spawned.child, None);
        let why = read_error(spawned.report)
            .unwrap_or_else(|| "the session's sandbox did not start the command".into());
        tracing::debug!(why, "session: broken");
        remove_cgroup(spec);
        if let Some(h) = holds {
            let _ = h.finish(git_copies(spec));
        }
        let _ = proto::send(conn.as_fd(), &proto::Reply::Cold { why }, &[]);
        sys::exit_now(super::server::EXIT_BROKEN)
    }
    // The lines a cold run says before its command starts (each once per workspace and
    // profile): dropped variables, hidden config files, directories hidden whole since
    // the `.env` scan cannot read them (the session's own and those since it started).
    let mut unreadable: Vec<PathBuf> = spec
        .mounts
        .as_ref()
        .map(|m| m.env_scan.unreadable.clone())
        .unwrap_or_default();
    unreadable.extend(masks.iter().filter(|(_, dir)| *dir).map(|(p, _)| p.clone()));
    launch::notices(
        &req.policy,
        &env_out,
        &spec.configs,
        &unreadable,
        spec.devices.as_ref(),
    );
    let since = crate::git::repo::tick_start();
    let me = sys::pidfd_open(nix::unistd::getpid()).ok();
    let started = proto::Reply::Started {
        handler: std::process::id() as i32,
    };
    let sent = match &me {
        Some(fd) => proto::send(conn.as_fd(), &started, &[fd.as_fd()]),
        None => proto::send(conn.as_fd(), &started, &[]),
    };
    drop(me);
    // The client gone (killed, or it failed to take the answer): the command dies, and
    // was never forked (the init waits for our go, which only a client that heard
    // `Started` gets: one that did not may run the command elsewhere).
    let init_fd = sys::pidfd_open(spawned.child).ok();
    if sent.is_err() {
        if let Some(fd) = &init_fd {
            let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
        }
    } else {
        sys::write_all_raw(go.as_raw_fd(), &[init::WARM_GO]);
    }
    drop(go);
    watch_client(&conn, init_fd);
    let outcome = supervise::supervise(
        spawned.child,
        spawned.report,
        &signals,
        req.policy.limits.timeout,
        start,
        false,
        None,
    );
    tracing::debug!(target: "shellcage::timing", "session: command ended {}", start.elapsed().as_micros());
    let (network, decided) = match proxy_before.map(|before| network_since(session, before)) {
        Some((n, d)) => (Some(n), d),
        None => (None, 0),
    };
    let proxy_broken = network.as_ref().is_some_and(|n| n.summary.is_none());
    let spec = &mut session.spec;
    let (limits, cgroups) = spec.end_limits_kept().unzip();
    tracing::debug!(target: "shellcage::timing", "session: limits read {}", start.elapsed().as_micros());
    let mut after_run = spec
        .mounts
        .as_ref()
        .map(|m| mount::after_command(m, since, &git_before))
        .unwrap_or_default();
    if let Some(h) = holds {
        for line in h.finish(git_copies(spec)) {
            after_run.say(line);
        }
    }
    let (home_use, home_over) = match &spec.home {
        Some(kept) => home::after_session_command(kept),
        None => (
            HomeUse::fresh(req.policy.home_mode, spec.home_unavailable.as_deref()),
            false,
        ),
    };
    tracing::debug!(target: "shellcage::timing", "session: exit step done {}", start.elapsed().as_micros());
    drop(signals);
    let used = SessionUse {
        id: session.key.to_owned(),
        server: session.server,
        shared: super::SHARED,
        masked_since_start: masks.iter().filter(|(_, dir)| !dir).count(),
    };
    let audit = match &req.policy.audit {
        Some(path) => match AuditLog::open(path) {
            Ok(log) => Some(log),
            Err(e) => {
                crate::say!("shellcage: {e}");
                None
            }
        },
        None => None,
    };
    let done = Done {
        spec,
        env: &env_out,
        fallback: None,
        outcome: &outcome,
        limits: limits.as_ref(),
        network: network.as_ref(),
        after_run: &after_run,
        home: &home_use,
        session: Some(&used),
    };
    launch::conclude(&req, &done, audit, &user);
    // The session proxy's limits are per proxy (connections in its life, names its
    // resolver hands out, destinations its summary itemizes): past half of any the
    // session ends after this command, and the next one starts with a new proxy.
    let full = decided > 500;
    if home_over || full {
        // The server takes no command after this one's client hears its end: the signal
        // is pending before the client can connect again (see the server's loop).
        let _ = nix::sys::signal::kill(Pid::from_raw(session.server), Signal::SIGHUP);
    }
    tracing::debug!(target: "shellcage::timing", "session: concluded {}", start.elapsed().as_micros());
    let _ = proto::send(
        conn.as_fd(),
        &proto::Reply::Exit {
            code: outcome.exit_code,
        },
        &[],
    );
    drop(conn);
    // The command's processes are all gone (its pid namespace ended with its init).
    if let Some(cg) = cgroups {
        if let Err(e) = cg.remove() {
            tracing::warn!("session: {e}");
        }
    }
    // Not the command's code: the server reads ours (EXIT_BROKEN means the session is not
    // sound, or must end: its kept home is over its limit).
    sys::exit_now(if home_over || full || proxy_broken {
        super::server::EXIT_BROKEN
    } else {
        0
    })
}

/// The command's network summary: the session proxy's now, less what it had decided
/// before the command (`before`); and how much of its lasting limits the proxy has used
/// (parts per thousand).
/// Without a summary, why (the proxy is gone: the session ends after this command).
fn network_since(
    session: &Session<'_>,
    before: crate::sandbox::proxy::ProxyOutcome,
) -> (crate::sandbox::proxy::ProxyOutcome, u64) {
    use crate::sandbox::proxy::ProxyOutcome;
    let Some(after) = queries(session).map(|q| q.snapshot(true)) else {
        return (before, 0);
    };
    match (before.summary, after.summary) {
        (Some(b), Some(a)) => {
            // How much of the proxy's lasting limits is used, in parts per thousand: the
            // connections of its life, the names handed out, the destinations itemized.
            let decided = a.allowed.saturating_add(a.blocked).saturating_add(a.failed);
            let max = crate::net::engine::Limits::default().max_connections.max(1);
            let used = (decided.saturating_mul(1000) / max).max(after.fill_permille);
            let out = ProxyOutcome {
                summary: Some(a.since(&b)),
                error: None,
                fill_permille: after.fill_permille,
            };
            (out, used)
        }
        (_, None) => (
            ProxyOutcome {
                summary: None,
                fill_permille: 0,
                error: after.error,
            },
            0,
        ),
        (None, _) => (
            ProxyOutcome {
                summary: None,
                fill_permille: 0,
                error: before.error,
            },
            0,
        ),
    }
}

/// A thread that waits for the client's end of the connection to close before the
/// command ends: then it kills the command's init (by pidfd: never another process).
fn watch_client(conn: &OwnedFd, init: Option<OwnedFd>) {
    let Ok(conn) = conn.try_clone() else { return };
    let _ = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut buf = [0u8; 64];
            loop {
                match nix::sys::socket::recv(
                    conn.as_raw_fd(),
                    &mut buf,
                    nix::sys::socket::MsgFlags::empty(),
                ) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Ok(n) if n > 0 => continue,
                    _ => break,
                }
            }
            if let Some(fd) = &init {
                let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
            }
        });
}

/// Start the command's sandbox in the session's namespaces: a child joins them (and the
/// command's cgroups), takes a private copy of the mount namespace, and clones pid 1 of
/// a new pid namespace as our own child (`CLONE_PARENT`), then exits.
/// The first error the sandbox reported on its report pipe (it ended).
fn read_error(report: OwnedFd) -> Option<String> {
    let mut dec = report::Decoder::default();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = nix::unistd::read(report.as_fd(), &mut chunk) {
        dec.push(&chunk[..n]);
    }
    dec.finish().into_iter().find_map(|m| match m {
        Message::Error(e) => Some(e),
        _ => None,
    })
}

fn spawn_warm(
    spec: &mut SandboxSpec,
    ns: &[OwnedFd],
    sock: i32,
    known: Option<init::Known<'_>>,
) -> Result<Spawned, String> {
    let (read, write) = sys::pipe_cloexec().map_err(|e| e.to_string())?;
    let (pid_read, pid_write) = sys::pipe_cloexec().map_err(|e| e.to_string())?;
    let into = spec.cgroup.as_ref().and_then(|c| c.clone_target());
    let direct = into.and_then(|fd| match sys::clone_into_cgroup(0, fd) {
        Err(e)
            if matches!(
                e.errno,
                nix::errno::Errno::ENOSYS | nix::errno::Errno::E2BIG | nix::errno::Errno::EINVAL
            ) =>
        {
            None
        }
        other => Some(other),
    });
    let (forked, gate) = match direct {
        Some(f) => (f, None),
        None => {
            let gate = spec
                .cgroup
                .as_ref()
                .map(Cgroup::start_gate)
                .transpose()
                .map_err(|e| e.to_string())?;
            (sys::fork_process(), gate)
        }
    };
    let in_cgroup = spec.cgroup.is_some();
    match forked.map_err(|e| e.to_string())? {
        Forked::Child => {
            drop(read);
            drop(pid_read);
            let fd = write.as_raw_fd();
            if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
                sys::exit_now(init::EXIT_SETUP);
            }
            init::enter_limits(gate, fd);
            phase(spec, fd, "session: child in its cgroups");
            join(spec, ns, in_cgroup, fd);
            phase(spec, fd, "session: namespaces joined");
            match sys::clone_process(libc::CLONE_PARENT | libc::CLONE_NEWPID) {
                Ok(Forked::Child) => {
                    drop(pid_write);
                    init::run_warm(spec, fd, init::WarmStart { sock, known })
                }
                Ok(Forked::Parent { child }) => {
                    sys::write_all_raw(pid_write.as_raw_fd(), &child.as_raw().to_le_bytes());
                    sys::exit_now(0)
                }
                Err(e) => init::fail(fd, init::EXIT_SETUP, format_args!("clone: {e}")),
            }
        }
        Forked::Parent { child } => {
            drop(write);
            drop(pid_write);
            if let (Some(gate), Some(cg)) = (gate, &spec.cgroup) {
                if let Err(e) = cg.attach(child) {
                    drop(gate);
                    let _ = waitpid(child, None);
                    return Err(e.to_string());
                }
                gate.release().map_err(|e| e.to_string())?;
            }
            let _ = waitpid(child, None);
            let mut buf = [0u8; 4];
            let n = loop {
                match nix::unistd::read(pid_read.as_fd(), &mut buf) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other.unwrap_or(0),
                }
            };
            if n != 4 {
                return Err(read_error(read)
                    .unwrap_or_else(|| "the command's sandbox did not start".into()));
            }
            Ok(Spawned {
                child: Pid::from_raw(i32::from_le_bytes(buf)),
                report: read,
            })
        }
    }
}

fn phase(spec: &SandboxSpec, fd: i32, name: &str) {
    if let Some(start) = spec.command.timing {
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        report::send(
            fd,
            &Message::Phase {
                name: name.into(),
                micros,
            },
        );
    }
}

/// In the child: join the session's namespaces (the user namespace first: in it we hold
/// every capability needed for the others), then our own cgroup namespace and a private
/// copy of the mount namespace. Exits on failure, after saying why.
fn join(spec: &SandboxSpec, ns: &[OwnedFd], in_cgroup: bool, report_fd: i32) {
    let kinds = [
        CloneFlags::CLONE_NEWUSER,
        CloneFlags::CLONE_NEWNS,
        CloneFlags::CLONE_NEWNET,
        CloneFlags::CLONE_NEWIPC,
        CloneFlags::CLONE_NEWUTS,
    ];
    for (fd, kind) in ns.iter().zip(kinds) {
        if let Err(e) = nix::sched::setns(fd, kind) {
            init::fail(
                report_fd,
                init::EXIT_SETUP,
                format_args!("setns({kind:?}) into the session => {e}"),
            );
        }
        if kind == CloneFlags::CLONE_NEWUSER && spec.mapped_root.is_some() {
            if let Err(e) = sys::become_namespace_root() {
                init::fail(report_fd, init::EXIT_SETUP, e);
            }
        }
    }
    // Our own cgroup namespace in every case (rooted at the command's cgroups when it
    // has some, as in a cold run): nothing of the host's cgroup paths shows.
    let _ = in_cgroup;
    let own = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP;
    if let Err(e) = nix::sched::unshare(own) {
        init::fail(
            report_fd,
            init::EXIT_SETUP,
            format_args!("unshare({own:?}) in the session => {e}"),
        );
    }
    // setns(CLONE_NEWNS) put us at the namespace's root; the command's directory is set
    // by the command itself.
    let _ = std::env::set_current_dir("/");
}

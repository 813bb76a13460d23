//! The session server: started by a client (forked from it), builds the template,
//! keeps the `.env` index, accepts the owner's commands and forks a handler for each.
//! One thread, woken only by the kernel (a connection, an inotify event, a signal, the
//! template's end, the idle deadline): an idle server uses no CPU.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{Info, proto};
use crate::overlay::hold::{self, Held, HoldError};
use crate::plan::{self, Plan, Tier};
use crate::policy::{EnvFileScan, Policy};
use crate::probe::{Features, KernelVersion};
use crate::request::Request;
use crate::sandbox::cgroup::{self, CgroupPlan};
use crate::sandbox::mount::{self, EnvScan};
use crate::sandbox::{self, SandboxSpec, init, spawn};
use crate::sys::{self, Forked};

/// Start the server for `key` (unless another client just did), and wait until it
/// serves. `Err`: why it could not (the caller runs cold).
pub fn start(req: &Request, dir: &Path, key: &str) -> Result<(), String> {
    use nix::fcntl::{Flock, FlockArg};
    let lock_path = dir.join(format!("{key}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let _lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("lock {}: {e}", lock_path.display()))?;
    let sock = dir.join(format!("{key}.sock"));
    if super::connect(&sock).is_some() {
        return Ok(());
    }
    let (read, write) = sys::pipe_cloexec().map_err(|e| e.to_string())?;
    match sys::fork_process().map_err(|e| e.to_string())? {
        Forked::Child => {
            drop(read);
            let _ = nix::unistd::setsid();
            match sys::fork_process() {
                Ok(Forked::Child) => run(req, dir, key, write),
                _ => sys::exit_now(0),
            }
        }
        Forked::Parent { child } => {
            drop(write);
            let _ = waitpid(child, None);
            let mut said = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match nix::unistd::read(read.as_fd(), &mut buf) {
                    Ok(0) => break,
                    Ok(n) => said.extend_from_slice(&buf[..n]),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break,
                }
            }
            let result = match String::from_utf8_lossy(&said).trim() {
                "ok" => Ok(()),
                "" => Err("the session server ended while starting".into()),
                why => Err(why.to_owned()),
            };
            if result.is_err() {
                let _ = std::fs::remove_file(dir.join(format!("{key}.log")));
            }
            result
        }
    }
}

/// Everything a handler needs: the request the session was built for, its sandbox
/// (the template's description), and the index's view of the workspace.
pub(super) struct Session<'a> {
    pub req: &'a Request,
    pub key: &'a str,
    pub spec: SandboxSpec,
    pub cgroups: CgroupPlan,
    /// The template's namespaces, in [`init::TEMPLATE_NAMESPACES`] order.
    pub ns: Vec<OwnedFd>,
    pub server: i32,
    /// The placeholders each command puts in place and holds for its own run (none are
    /// on the host between commands).
    pub holds: Vec<mount::Hold>,
    /// An overlay workspace's layer: held (locked) and mounted in the template for the
    /// session's life, so all its commands share one overlay mount.
    pub layer: Option<Held>,
    /// Network mode `proxy`: the proxy process serving the template's network namespace
    /// for the session's life; each handler asks it for the summary at its command's
    /// start and end.
    pub proxy: Option<crate::sandbox::proxy::ProxyProcess>,
}

/// The reason a session did not start because its layer is held by another command:
/// it is not remembered (the next command tries a session again).
pub(super) const LAYER_BUSY: &str = "the overlay layer is held by another command";

/// Why the server stops.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// Idle, or the binary or a profile changed: no new command, the running ones end.
    Gracefully(&'static str),
    /// `session stop` (SIGTERM) or the template is gone: the running commands are killed.
    Now(&'static str),
}

fn say_ready(ready: &OwnedFd, text: &str) {
    sys::write_all_raw(ready.as_raw_fd(), text.as_bytes());
}

/// Overwrite our command line (the first client's, inherited by the fork) with
/// `shellcage session`: every command's pid 1 is a fork of this process, and its
/// `/proc/1/cmdline` must not show another command's arguments.
fn scrub_cmdline() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name's closing parenthesis; arg_start and arg_end are
    // fields 48 and 49 (proc(5)), i.e. the 46th and 47th after it.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (Some(start), Some(end)) = (
        fields.get(45).and_then(|f| f.parse::<usize>().ok()),
        fields.get(46).and_then(|f| f.parse::<usize>().ok()),
    ) else {
        return;
    };
    if end <= start || end - start > 1 << 20 {
        return;
    }
    let text = b"shellcage\0session\0";
    // SAFETY: [start, end) is this process's own argument area (mapped, writable: it
    // is on the initial stack), as the kernel reports it; nothing reads the original
    // arguments after the request was built from them.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
        area.fill(0);
        let n = text.len().min(area.len());
        area[..n].copy_from_slice(&text[..n]);
    }
}

/// The server. Never returns.
fn run(req: &Request, dir: &Path, key: &str, ready: OwnedFd) -> ! {
    scrub_cmdline();
    // Our own stdio: nothing of the first client's (its terminal, its pipes) is kept.
    let log = dir.join(format!("{key}.log"));
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null");
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&log);
    match (null, logf) {
        (Ok(null), Ok(logf)) => {
            let _ = nix::unistd::dup2_stdin(&null);
            let _ = nix::unistd::dup2_stdout(&null);
            let _ = nix::unistd::dup2_stderr(&logf);
        }
        _ => sys::exit_now(1),
    }
    sys::close_fds_except(&[0, 1, 2, ready.as_raw_fd()]);
    // Orphaned command inits (their handler died) become ours: the session's end waits
    // for them (see below, before the layer is let go).
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        say_ready(&ready, &format!("PR_SET_CHILD_SUBREAPER: {e}"));
        sys::exit_now(1)
    }
    let mut blocked = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
    ] {
        blocked.add(s);
    }
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None);
    sys::ignore_sigpipe();
    let sfd = match SignalFd::with_flags(&blocked, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(s) => s,
        Err(e) => {
            say_ready(&ready, &format!("signalfd: {e}"));
            sys::exit_now(1)
        }
    };
    let mut index = match Index::new(&req.policy) {
        Ok(i) => i,
        Err(why) => {
            say_ready(&ready, &why);
            sys::exit_now(1)
        }
    };
    let (mut session, template, channel) = match build(req, key, &index) {
        Ok(b) => b,
        Err(why) => {
            say_ready(&ready, &why);
            sys::exit_now(1)
        }
    };
    // The session's own names on the host (the placeholders each command makes and
    // removes) are no change of the workspace.
    index.own = session.holds.iter().map(|h| h.path.clone()).collect();
    if let Some(upper) = session.layer.as_ref().map(|l| l.dirs.upper.clone()) {
        if let Err(why) = index.watch_upper(&upper) {
            say_ready(&ready, &why);
            sys::exit_now(1)
        }
    }
    let sock_path = dir.join(format!("{key}.sock"));
    let listener = match listen(&sock_path) {
        Ok(l) => l,
        Err(why) => {
            say_ready(&ready, &why);
            sys::exit_now(1)
        }
    };
    let info = Info {
        key: key.to_owned(),
        pid: std::process::id() as i32,
        workspace: req.policy.workspace.clone(),
        profile: req.policy.profile.clone(),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        idle_secs: std::env::var(super::ENV_IDLE)
            .ok()
            .and_then(|v| crate::profile::units::parse_duration(&v).ok())
            .unwrap_or(req.policy.session_idle)
            .as_secs(),
        layer: session.layer.as_ref().map(|l| l.layer.dir.clone()),
    };
    let info_path = dir.join(format!("{key}.json"));
    let _ = std::fs::write(&info_path, serde_json::to_vec(&info).unwrap_or_default());
    // The binary and the profile files: a change ends the session (the next command's
    // key differs anyway, so it never runs under the old policy).
    // (The index's inotify instance: a user has only 128 of them.)
    if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
        index.end_on_change(&exe);
    }
    for (id, _) in &req.policy.profile_chain.0 {
        let p = Path::new(id);
        if p.is_absolute() {
            index.end_on_change(p);
        }
    }
    say_ready(&ready, "ok");
    drop(ready);
    tracing::info!(key, pid = info.pid, "session serving");
    // SHELLCAGE_SESSION_IDLE (a duration) overrides the profile's, for test runs that
    // start many sessions; it does not change the policy.
    let idle = std::env::var(super::ENV_IDLE)
        .ok()
        .and_then(|v| crate::profile::units::parse_duration(&v).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(req.policy.session_idle);
    let mut handlers: HashMap<Pid, ()> = HashMap::new();
    let mut last = Instant::now();
    let mut draining: Option<&'static str> = None;
    // The socket's name is the key's: once it is removed (draining), the next session
    // of this key may bind the same name while we still end, so it is removed only once.
    let mut unlisten = Unlisten::new(&sock_path);
    // A handler whose command's sandbox is already started, waiting for the next command.
    let mut spare = fork_spare(&mut session);
    let stop = loop {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        if let Some(why) = draining {
            if handlers.is_empty() {
                break Stop::Gracefully(why);
            }
        }
        let timeout = if handlers.is_empty() && draining.is_none() {
            let left = idle.saturating_sub(last.elapsed());
            if left.is_zero() {
                break Stop::Gracefully("idle");
            }
            PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32 + 1)
                .unwrap_or(PollTimeout::MAX)
        } else {
            PollTimeout::NONE
        };
        let mut fds = vec![
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(index.inotify.as_fd(), PollFlags::POLLIN),
            PollFd::new(channel.as_fd(), PollFlags::POLLIN),
        ];
        if draining.is_none() {
            fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break Stop::Now("poll failed"),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            let mut term = false;
            let mut if_idle = false;
            while let Ok(Some(info)) = sfd.read_signal() {
                if info.ssi_signo == Signal::SIGUSR1 as u32 {
                    // `apply`/`discard` want the layer: ended only when no command runs.
                    if_idle = true;
                } else if info.ssi_signo == Signal::SIGHUP as u32 {
                    // `home reset`: end once the running commands have.
                    if draining.is_none() {
                        unlisten.now();
                        draining = Some("asked to end when its commands have");
                    }
                } else if info.ssi_signo != Signal::SIGCHLD as u32 {
                    term = true;
                }
            }
            if reap(&mut handlers, template, &mut last, &mut spare) && draining.is_none() {
                unlisten.now();
                draining = Some("the session's sandbox is no longer sound");
            }
            if term {
                break Stop::Now("stopped");
            }
            if if_idle && handlers.is_empty() {
                break Stop::Gracefully("its layer is wanted");
            }
            if !alive(template) {
                break Stop::Now("the template ended");
            }
        }
        if ready[1] {
            index.update();
        }
        if let (Some(why), None) = (index.changed, draining) {
            unlisten.now();
            draining = Some(why);
        }
        if ready[2] {
            // The template never writes: its end closed (it died).
            break Stop::Now("the template ended");
        }
        if draining.is_none() && ready.get(3).copied().unwrap_or(false) {
            {
                if let Some((child, used_spare)) =
                    accept(&listener, &mut session, &mut index, spare.as_ref())
                {
                    handlers.insert(child, ());
                    if used_spare {
                        spare = fork_spare(&mut session);
                    }
                    // Only a command counts: `session list` and the like connect to every
                    // session of the user to see it answer, and would keep them all alive.
                    last = Instant::now();
                }
            }
        }
    };
    tracing::info!(?stop, "session ending");
    unlisten.now();
    drop(listener);
    // The spare sees its control socket close: its sandbox and cgroups go. Running
    // handlers (Stop::Now) have the parent-death signal: our exit kills them, and with
    // them their commands (the commands' inits have it too).
    if let Some((pid, control)) = spare.take() {
        drop(control);
        let _ = waitpid(pid, None);
    }
    let _ = &stop;
    drop(channel);
    let _ = waitpid(template, None);
    // Every command's sandbox ends before the layer is let go: the handlers still
    // running (Stop::Now) are killed, their inits are reparented to us (a subreaper)
    // when they die, and an init is reaped only once every process of its pid
    // namespace is gone, so no process of the session still holds the overlay mount
    // when another mount of the layer may begin.
    for pid in handlers.keys() {
        let _ = nix::sys::signal::kill(*pid, Signal::SIGKILL);
    }
    if let Some(p) = session.proxy.take() {
        p.kill();
    }
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
            Ok(_) => {}
        }
    }
    // The template's namespaces, and with them the last reference to an overlay
    // session's mount: the layer is free for `apply` now, before the slower clean-up.
    session.ns.clear();
    drop(session.layer.take());
    // Placeholders made once for the session, and the git config copies merged back.
    let _ = session.spec.cleanup();
    // Every command is gone: the kept home is measured, and cleared when over its limit.
    if let Some(kept) = session.spec.home.take() {
        let _ = crate::sandbox::home::after_run(kept);
    }
    // Last: `session status` lists the session until all of that is done. The names are
    // the key's: a next session of this key (started once our socket was gone) may have
    // written its own description and log meanwhile, which stay.
    if described_by(&info_path, info.pid) {
        let _ = std::fs::remove_file(&log);
        let _ = std::fs::remove_file(&info_path);
        let _ = std::fs::remove_file(dir.join(format!("{key}.lock")));
    }
    sys::exit_now(0)
}

/// The socket's name, removed once (see the server's loop).
struct Unlisten<'a> {
    path: &'a Path,
    done: bool,
}

impl<'a> Unlisten<'a> {
    fn new(path: &'a Path) -> Self {
        Unlisten { path, done: false }
    }

    fn now(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(self.path);
            self.done = true;
        }
    }
}

/// Whether the description at `path` is the one of server `pid` (not a next session's
/// of the same key; one being written, unreadable, is not ours).
fn described_by(path: &Path, pid: i32) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<super::Info>(&b).ok())
        .is_some_and(|i| i.pid == pid)
}

fn alive(pid: Pid) -> bool {
    nix::sys::signal::kill(pid, None).is_ok()
}

/// Reap what ended: handlers (the count drives the idle deadline) and, if it died, the
/// template (its channel's end says so too).
/// A handler's exit code when the session's sandbox is no longer sound (its root lost
/// a mount, a pre-started sandbox failed): the server takes no more commands.
pub(super) const EXIT_BROKEN: i32 = 3;

fn reap(
    handlers: &mut HashMap<Pid, ()>,
    template: Pid,
    last: &mut Instant,
    spare: &mut Option<(Pid, OwnedFd)>,
) -> bool {
    let mut broken = false;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(status) => {
                // (Only a handler's code says so: the server is a subreaper, and an
                // orphaned command init's code is its command's.)
                let handler = status.pid().is_some_and(|p| handlers.contains_key(&p));
                if handler && matches!(status, WaitStatus::Exited(_, EXIT_BROKEN)) {
                    broken = true;
                }
                if let Some(pid) = status.pid() {
                    if spare.as_ref().is_some_and(|(p, _)| *p == pid) {
                        // It could not prepare: commands get a handler of their own.
                        *spare = None;
                    } else if pid != template && handlers.remove(&pid).is_some() {
                        *last = Instant::now();
                    }
                }
            }
        }
    }
    broken
}

/// Fork a spare handler (see [`super::handler::spare`]); `None` when that fails (each
/// command then gets a handler forked for it).
fn fork_spare(session: &mut Session<'_>) -> Option<(Pid, OwnedFd)> {
    let (ours, theirs) = UnixStream::pair().ok()?;
    match sys::fork_process() {
        Ok(Forked::Child) => {
            drop(ours);
            super::handler::spare(session, OwnedFd::from(theirs))
        }
        Ok(Forked::Parent { child }) => Some((child, OwnedFd::from(ours))),
        Err(_) => None,
    }
}

/// Build the session's sandbox: plan it as a cold run would, describe it with the
/// index's `.env` files, and start its init as a template. Returns the session, the
/// template's pid and our end of its channel.
fn build<'a>(
    req: &'a Request,
    key: &'a str,
    index: &Index,
) -> Result<(Session<'a>, Pid, UnixStream), String> {
    let policy = &req.policy;
    let mut features = Features::for_launch();
    if let Some(u) =
        crate::probe::userns_restricted(Path::new("/"), nix::unistd::geteuid().as_raw())
    {
        features.userns = u;
    }
    features.kernel = Some(KernelVersion::running());
    let cgroups = cgroup::plan_for(&policy.limits);
    features.cgroup_limits = cgroups.support();
    let plan: Plan = plan::plan(policy, &features).map_err(|e| e.to_string())?;
    if plan.tier != Tier::Namespaces {
        return Err("this machine runs the container tier: nothing to keep".into());
    }
    if let Some(path) = &policy.audit {
        // As a cold run refuses it: an audit log the command could reach.
        crate::audit::AuditLog::open(path)
            .and_then(|log| log.refuse_if_reachable(policy, plan.tier))
            .map_err(|e| e.to_string())?;
    }
    let user = crate::request::user_name();
    let argv = [CString::new("true").unwrap_or_default()];
    let policy_file = crate::explain::policy_file_json(req);
    let command = sandbox::Command {
        argv: &argv,
        cwd: &req.cwd,
        interactive: false,
        user: &user,
        policy_file: Some((
            Path::new(crate::explain::POLICY_FILE),
            policy_file.as_bytes(),
        )),
    };
    // An overlay workspace: the layer is held for the session's life, taken now.
    let layer = match &policy.workspace_layer {
        Some(name) => {
            let store = crate::overlay::Store::from_env(&policy.home);
            let profile = crate::launch::layer_profile(req);
            // A session that holds it and is ending (its workspace changed, it was
            // asked to) lets it go within moments: `hold` waits up to 2 s for that,
            // asking the sessions that hold it now and then. (Whatever holds it: a
            // session lets the layer go just before it removes its description, so one
            // may be listed nowhere by the time we look.) A cold command that holds it
            // longer: this client then runs cold, and waits for it there.
            let limit = std::time::Duration::from_secs(2);
            match hold::hold(
                &store,
                &policy.workspace,
                name,
                &profile,
                Some((Instant::now(), limit)),
            ) {
                Ok(h) => Some(h),
                Err(HoldError::Timeout(..)) => return Err(LAYER_BUSY.into()),
                Err(e) => return Err(e.to_string()),
            }
        }
        None => None,
    };
    let (mut spec, _env) = sandbox::describe_with(
        policy,
        plan,
        &command,
        &CgroupPlan::none(),
        layer.as_ref().map(|l| &l.dirs),
        Some(index.scan.clone()),
    )
    .map_err(|e| e.to_string())?;
    // The template and every command's init keep the lock's descriptor: the layer stays
    // held while any of them (and so the mount) lives, even past a killed server.
    spec.layer_lock = layer.as_ref().map(Held::lock_fd);
    // Network mode `proxy`: one proxy for the session (the template's init hands it the
    // listeners it makes in the namespace, as a cold run's init does).
    let proxy = match crate::launch::start_proxy_for(policy, &mut spec, true) {
        Ok(p) => p,
        Err(e) => {
            spec.cleanup();
            return Err(e.to_string());
        }
    };
    let (ours, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
    spec.template = Some(theirs.as_raw_fd());
    let spawned = match spawn::spawn(&spec) {
        Ok(s) => s,
        Err(e) => {
            if let Some(p) = proxy {
                p.kill();
            }
            spec.cleanup();
            return Err(e.to_string());
        }
    };
    drop(theirs);
    spec.template = None;
    // The init's end of the proxy's channel is the template's alone.
    if let Some(net) = spec.net.as_mut() {
        net.channel = None;
    }
    let mut buf = [0u8; 16];
    let received = sys::recv_fds(ours.as_fd(), &mut buf);
    let mounts = match &received {
        Ok((n, _)) => std::str::from_utf8(&buf[..*n])
            .ok()
            .and_then(|t| t.parse().ok()),
        Err(_) => None,
    };
    match (received, mounts) {
        (Ok((_, fds)), Some(mounts)) if fds.len() == init::TEMPLATE_NAMESPACES.len() => {
            spec.warm_mounts = mounts;
            // The template's placeholders leave the host's tree again (their mounts in
            // the template go with them): each command holds them for its own run. What
            // the template has then is what every command's root is checked against.
            // (In an overlay session the template's mounts are on the overlay's own
            // names, which a host deletion does not take away: they stay for the
            // session's life, and each command's hold binds over them.)
            let holds = (spec.mounts.as_mut())
                .map(|m| m.protection.release_placeholders())
                .unwrap_or_default();
            if !holds.is_empty() {
                match template_mounts(spawned.child) {
                    Ok(n) => spec.warm_mounts = n,
                    Err(e) => {
                        let _ = nix::sys::signal::kill(
                            spawned.child,
                            nix::sys::signal::Signal::SIGKILL,
                        );
                        let _ = waitpid(spawned.child, None);
                        spec.cleanup();
                        return Err(format!("the template's mounts: {e}"));
                    }
                }
            }
            // The template's report pipe stays open (its errors would come there);
            // nothing reads it after this, and the template writes nothing more.
            std::mem::forget(spawned.report);
            Ok((
                Session {
                    req,
                    key,
                    spec,
                    cgroups,
                    ns: fds,
                    server: std::process::id() as i32,
                    holds,
                    layer,
                    proxy,
                },
                spawned.child,
                ours,
            ))
        }
        _ => {
            let why = read_error(spawned.report);
            let _ = waitpid(spawned.child, None);
            spec.cleanup();
            Err(why.unwrap_or_else(|| "the session's sandbox could not be built".into()))
        }
    }
}

/// How many mounts the template's namespace has (what its own count would say).
fn template_mounts(template: Pid) -> std::io::Result<usize> {
    Ok(std::fs::read(format!("/proc/{template}/mountinfo"))?
        .iter()
        .filter(|b| **b == b'\n')
        .count())
}

/// The first error line the sandbox reported (it failed to build).
fn read_error(report: OwnedFd) -> Option<String> {
    let mut dec = crate::sandbox::report::Decoder::default();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(report.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => dec.push(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    dec.finish().into_iter().find_map(|m| match m {
        crate::sandbox::report::Message::Error(e) => Some(e),
        _ => None,
    })
}

fn listen(path: &Path) -> Result<OwnedFd, String> {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket,
    };
    // We hold the start lock and nobody answered on it: a stale socket of a server that
    // died.
    let _ = std::fs::remove_file(path);
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    let addr = UnixAddr::new(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = bind(fd.as_raw_fd(), &addr);
    nix::sys::stat::umask(old);
    bound.map_err(|e| format!("bind {}: {e}", path.display()))?;
    listen(&fd, Backlog::new(128).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| format!("listen: {e}"))?;
    Ok(fd)
}

/// Is the peer on `conn` allowed: the same user, and not inside any sandbox (a process
/// of a sandbox is in another user namespace than ours, even when it could reach the
/// socket).
fn peer_allowed(conn: BorrowedFd<'_>) -> Result<(), String> {
    let cred = nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| format!("SO_PEERCRED: {e}"))?;
    if cred.uid() != nix::unistd::getuid().as_raw() {
        return Err(format!("uid {} is not the session's owner", cred.uid()));
    }
    let ours = std::fs::read_link("/proc/self/ns/user").map_err(|e| e.to_string())?;
    let theirs = std::fs::read_link(format!("/proc/{}/ns/user", cred.pid()))
        .map_err(|e| format!("pid {}: {e}", cred.pid()))?;
    if ours != theirs {
        return Err(format!("pid {} is in another user namespace", cred.pid()));
    }
    // A sandbox without a user namespace (the container tier) is in ours: it has
    // no_new_privs and a seccomp filter, which no client of ours has.
    let status = std::fs::read_to_string(format!("/proc/{}/status", cred.pid()))
        .map_err(|e| format!("pid {}: {e}", cred.pid()))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or("")
            .to_owned()
    };
    if field("NoNewPrivs:") != "0" || field("Seccomp:") != "0" {
        return Err(format!(
            "pid {} runs with no_new_privs or a seccomp filter",
            cred.pid()
        ));
    }
    Ok(())
}

/// One connection: check the peer, read its request, and fork the handler. Returns the
/// handler's pid.
fn accept(
    listener: &OwnedFd,
    session: &mut Session<'_>,
    index: &mut Index,
    spare: Option<&(Pid, OwnedFd)>,
) -> Option<(Pid, bool)> {
    let t0 = Instant::now();
    let conn = nix::sys::socket::accept4(
        listener.as_raw_fd(),
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .ok()?;
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    let conn: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(conn) };
    if let Err(why) = peer_allowed(conn.as_fd()) {
        tracing::warn!(why, "session: connection refused");
        return None;
    }
    let _ = nix::sys::socket::setsockopt(
        &conn,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(2, 0),
    );
    let (request, fds) = match proto::recv::<proto::CommandRequest>(conn.as_fd()) {
        Ok(Some(r)) => r,
        _ => return None,
    };
    let _ = nix::sys::socket::setsockopt(
        &conn,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(0, 0),
    );
    let cold = |why: String| {
        let _ = proto::send(conn.as_fd(), &proto::Reply::Cold { why }, &[]);
        None
    };
    if request.key != session.key {
        return cold("another session's key".into());
    }
    if fds.len() != 3 {
        return cold(format!(
            "{} descriptors instead of stdin, stdout, stderr",
            fds.len()
        ));
    }
    // Whatever happened in the workspace up to the request is in the index now.
    index.update();
    if let Some(why) = index.changed {
        return cold(why.into());
    }
    // The directory at the workspace's path is still the one the session was built on
    // (a rename away and a new directory in its place: the watch saw the rename, this
    // sees the result).
    if dir_id(&session.req.policy.workspace).ok() != Some(index.root_id) {
        return cold("the workspace directory is not the session's any more".into());
    }
    let masks = match index.masks_for_command() {
        Ok(m) => m,
        Err(why) => return cold(why),
    };
    tracing::debug!(target: "shellcage::timing", "server: request checked {}", t0.elapsed().as_micros());
    if let Some((pid, control)) = spare {
        let handed = proto::SpareRequest { request, masks };
        let mut pass = vec![conn.as_fd()];
        pass.extend(fds.iter().map(|f| f.as_fd()));
        match proto::send(control.as_fd(), &handed, &pass) {
            Ok(()) => return Some((*pid, true)),
            Err(e) => {
                tracing::debug!(%e, "session: the spare did not take the command");
                return cold("the spare handler is gone".into());
            }
        }
    }
    match sys::fork_process() {
        Ok(Forked::Child) => super::handler::run(session, request, fds, conn, masks),
        Ok(Forked::Parent { child }) => Some((child, false)),
        Err(e) => cold(e.to_string()),
    }
}

/// A directory's (device, inode).
fn dir_id(p: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p)?;
    Ok((m.dev(), m.ino()))
}

/// See [`Index::dir_change`].
enum DirChange {
    Ignore,
    Rescan,
    Walk,
}

/// inotify sees every change only on a local filesystem: on a network or FUSE one,
/// another machine's (or the FUSE server's) files appear without an event.
fn local_filesystem(ws: &Path) -> Result<(), String> {
    use nix::sys::statfs::{
        BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC,
        statfs,
    };
    let st = statfs(ws).map_err(|e| format!("statfs {}: {e}", ws.display()))?;
    let t = st.filesystem_type();
    let known = [
        EXT4_SUPER_MAGIC,
        XFS_SUPER_MAGIC,
        BTRFS_SUPER_MAGIC,
        TMPFS_MAGIC,
        OVERLAYFS_SUPER_MAGIC,
    ];
    if known.contains(&t) {
        Ok(())
    } else {
        Err(format!(
            "{} is on a filesystem whose changes inotify may not see (type {:#x}): commands run cold",
            ws.display(),
            t.0
        ))
    }
}

/// The `.env` index of the workspace: every `.env` / `.env.*` file at any depth (the
/// profile's skip list and allowed names apply; no depth or count limit), kept current
/// by inotify watches on every directory walked.
pub(super) struct Index {
    pub inotify: Inotify,
    ws: PathBuf,
    cfg: EnvFileScan,
    enabled: bool,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    /// What the template's root masks (the scan it was built with).
    pub scan: EnvScan,
    /// Found (again) since the root was built: masked per command.
    fresh: BTreeSet<(PathBuf, bool)>,
    /// The index cannot be trusted until the workspace is walked again (an overflow, a
    /// directory moved).
    rescan: bool,
    /// Why the index cannot be kept at all (the watch limit): commands run cold.
    broken: Option<String>,
    /// Watches of files whose change ends the session (the binary, the profiles).
    ends: std::collections::HashSet<WatchDescriptor>,
    /// The watch of the workspace directory itself (moved or deleted: the session ends).
    root: Option<WatchDescriptor>,
    /// The watch of the workspace's parent directory and the workspace's name in it: the
    /// directory itself never reports its deletion, since the session's own mounts keep
    /// it alive (IN_DELETE_SELF comes only when the last reference goes); its parent
    /// reports the name's removal. Only deletions and moves out of the parent wake the
    /// server. `None` when the parent cannot be watched (the session then ends at its
    /// idle time).
    parent: Option<(WatchDescriptor, std::ffi::OsString)>,
    /// The workspace directory the session was built on (device, inode).
    root_id: (u64, u64),
    /// Why the session must end: one of `ends` changed, or the workspace went.
    pub changed: Option<&'static str>,
    /// An overlay workspace: the host's tree is the lower layer of the session's one
    /// mount, which the kernel does not expect to change under it (a cached name would
    /// keep showing what the host replaced). Any change the watches see ends the
    /// session, and the next command mounts the layer over the tree as it is then.
    lower: bool,
    /// The session's own names on the host (its placeholders): no change of the tree.
    pub own: std::collections::HashSet<PathBuf>,
    /// An overlay session's upper directory, and the watches of its directories: a
    /// `.env` a command writes in the layer is masked from the next command on, as a
    /// cold run's scan of the merged view would.
    upper: Option<PathBuf>,
    upper_dirs: HashMap<WatchDescriptor, PathBuf>,
    upper_rescan: bool,
}

impl Index {
    fn new(policy: &Policy) -> Result<Index, String> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .map_err(|e| format!("inotify_init: {e}"))?;
        let mut cfg = policy.env_files.clone();
        cfg.max_depth = usize::MAX;
        cfg.max_dirs = usize::MAX;
        let mut index = Index {
            inotify,
            ws: policy.workspace.clone(),
            cfg,
            enabled: policy.env_files.enabled,
            dirs: HashMap::new(),
            scan: EnvScan::default(),
            fresh: BTreeSet::new(),
            rescan: false,
            broken: None,
            ends: Default::default(),
            root: None,
            parent: None,
            root_id: dir_id(&policy.workspace)
                .map_err(|e| format!("{}: {e}", policy.workspace.display()))?,
            changed: None,
            lower: policy.workspace_layer.is_some(),
            own: Default::default(),
            upper: None,
            upper_dirs: HashMap::new(),
            upper_rescan: false,
        };
        if index.watching() {
            local_filesystem(&policy.workspace)?;
            let ws = index.ws.clone();
            let found = index.walk(&ws)?;
            if index.enabled {
                index.scan = found;
            }
            if let Some(why) = &index.broken {
                return Err(why.clone());
            }
        }
        // The workspace itself: moved away or deleted, the session's root no longer is
        // the directory at its path. (Watched already when the index is kept: the same
        // watch, with the same flags.)
        let flags = if index.watching() {
            index.watch_flags()
        } else {
            AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_ONLYDIR
                | AddWatchFlags::IN_DONT_FOLLOW
        };
        let wd = index
            .inotify
            .add_watch(&policy.workspace, flags)
            .map_err(|e| format!("cannot watch {}: {e}", policy.workspace.display()))?;
        index.root = Some(wd);
        if let (Some(parent), Some(name)) =
            (policy.workspace.parent(), policy.workspace.file_name())
        {
            let flags = AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_ONLYDIR
                | AddWatchFlags::IN_DONT_FOLLOW;
            match index.inotify.add_watch(parent, flags) {
                Ok(wd) => index.parent = Some((wd, name.to_owned())),
                Err(e) => {
                    tracing::debug!(%e, parent = %parent.display(), "session: the workspace's parent is not watched")
                }
            }
        }
        Ok(index)
    }

    /// Watch the overlay session's layer (its upper directory) for `.env` files the
    /// commands write there. What it holds now is masked by the template's root.
    fn watch_upper(&mut self, upper: &Path) -> Result<(), String> {
        self.upper = Some(upper.to_path_buf());
        if self.enabled {
            self.walk_upper(upper)?;
        }
        Ok(())
    }

    /// Walk `top` in the upper directory, watching each directory; returns the `.env`
    /// files found, as the sandbox sees them (paths in the workspace).
    fn walk_upper(&mut self, top: &Path) -> Result<Vec<PathBuf>, String> {
        let Some(upper) = self.upper.clone() else {
            return Ok(Vec::new());
        };
        let flags = self.watch_flags();
        let inotify = &self.inotify;
        let dirs = &mut self.upper_dirs;
        let mut failed = None;
        let mut on_dir = |p: &Path| match inotify.add_watch(p, flags) {
            Ok(wd) => {
                dirs.insert(wd, p.to_path_buf());
            }
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => {}
            Err(e) => {
                failed.get_or_insert_with(|| {
                    format!(
                        "cannot watch the layer's {} for new .env files: {e}",
                        p.display()
                    )
                });
            }
        };
        let found = mount::scan_watched(top, &self.cfg, &mut on_dir).map_err(|e| e.to_string())?;
        if let Some(why) = failed {
            return Err(why);
        }
        let ws = &self.ws;
        let to_ws = |p: &PathBuf| p.strip_prefix(&upper).ok().map(|r| ws.join(r));
        Ok((found.hidden.iter().chain(&found.links))
            .filter_map(to_ws)
            .collect())
    }

    /// One event of a watch in the upper directory.
    fn upper_event(&mut self, dir: PathBuf, ev: &nix::sys::inotify::InotifyEvent) {
        if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
            self.upper_dirs.remove(&ev.wd);
            return;
        }
        let Some(name) = &ev.name else {
            // The directory itself moved: the paths recorded below it are stale.
            if ev
                .mask
                .intersects(AddWatchFlags::IN_MOVE_SELF | AddWatchFlags::IN_ATTRIB)
            {
                self.upper_rescan = true;
            }
            return;
        };
        let path = dir.join(name);
        if ev.mask.contains(AddWatchFlags::IN_ISDIR) {
            match self.dir_change(ev.mask, name) {
                DirChange::Ignore => {}
                DirChange::Rescan => self.upper_rescan = true,
                DirChange::Walk => match self.walk_upper(&path) {
                    Ok(found) => self.fresh.extend(found.into_iter().map(|p| (p, false))),
                    Err(why) => self.broken = Some(why),
                },
            }
        } else if ev
            .mask
            .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
            && mount::is_env_file(
                std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()),
                &self.cfg.allow_names,
            )
        {
            let Some(upper) = &self.upper else { return };
            if let Ok(rel) = dir.strip_prefix(upper) {
                self.fresh.insert((self.ws.join(rel).join(name), false));
            }
        }
    }

    /// What an event about the subdirectory `name` of a watched directory asks for: a
    /// skipped name nothing; one moved away or whose mode changed, a walk of the whole
    /// tree again (paths below it changed, or it may be unreadable); a new one, a walk
    /// of it.
    fn dir_change(&self, mask: AddWatchFlags, name: &std::ffi::OsStr) -> DirChange {
        if (self.cfg.skip_dirs.iter()).any(|s| std::ffi::OsStr::new(s) == name) {
            DirChange::Ignore
        } else if mask.intersects(AddWatchFlags::IN_MOVED_FROM | AddWatchFlags::IN_ATTRIB) {
            DirChange::Rescan
        } else if mask.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO) {
            DirChange::Walk
        } else {
            DirChange::Ignore
        }
    }

    /// Watch `file`: a change to it ends the session.
    fn end_on_change(&mut self, file: &Path) {
        let flags = AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_CLOSE_WRITE;
        if let Ok(wd) = self.inotify.add_watch(file, flags) {
            self.ends.insert(wd);
        }
    }

    /// Are the workspace's directories watched: for the `.env` index, or for the
    /// lower layer of an overlay session.
    fn watching(&self) -> bool {
        self.enabled || self.lower
    }

    fn watch_flags(&self) -> AddWatchFlags {
        let flags = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_ONLYDIR
            | AddWatchFlags::IN_DONT_FOLLOW;
        if self.lower {
            flags | AddWatchFlags::IN_DELETE
        } else {
            flags
        }
    }

    /// Walk `top` (the workspace or a directory new in it), watching each directory
    /// before it is listed.
    fn walk(&mut self, top: &Path) -> Result<EnvScan, String> {
        let flags = self.watch_flags();
        let inotify = &self.inotify;
        let dirs = &mut self.dirs;
        let broken = &mut self.broken;
        let mut on_dir = |p: &Path| match inotify.add_watch(p, flags) {
            Ok(wd) => {
                dirs.insert(wd, p.to_path_buf());
            }
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => {}
            Err(e) => {
                broken.get_or_insert_with(|| {
                    format!(
                        "cannot watch {} for new .env files: {e} (hint: raise fs.inotify.max_user_watches, or add large directories to filesystem.env_files.skip_dirs)",
                        p.display()
                    )
                });
            }
        };
        let found = mount::scan_watched(top, &self.cfg, &mut on_dir).map_err(|e| e.to_string())?;
        Ok(found)
    }

    /// Read the pending events, and walk again what they make unknown.
    fn update(&mut self) {
        loop {
            let events = match self.inotify.read_events() {
                Ok(ev) if !ev.is_empty() => ev,
                _ => break,
            };
            for ev in events {
                if self.ends.contains(&ev.wd) {
                    self.changed
                        .get_or_insert("shellcage's binary or a profile changed");
                    continue;
                }
                if let Some((wd, name)) = &self.parent {
                    if ev.wd == *wd {
                        if ev.name.as_ref() == Some(name)
                            && ev.mask.contains(AddWatchFlags::IN_ISDIR)
                            && ev
                                .mask
                                .intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM)
                        {
                            self.changed
                                .get_or_insert("the workspace directory was moved or deleted");
                        }
                        continue;
                    }
                }
                if Some(ev.wd) == self.root
                    && ev.mask.intersects(
                        AddWatchFlags::IN_MOVE_SELF
                            | AddWatchFlags::IN_DELETE_SELF
                            | AddWatchFlags::IN_IGNORED,
                    )
                {
                    self.changed
                        .get_or_insert("the workspace directory was moved or deleted");
                }
                if !self.watching() {
                    continue;
                }
                if self.lower && ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    self.changed.get_or_insert(
                        "the host workspace changed under the session's overlay layer",
                    );
                    continue;
                }
                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    self.rescan = true;
                    continue;
                }
                if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                    self.dirs.remove(&ev.wd);
                    continue;
                }
                if let Some(dir) = self.upper_dirs.get(&ev.wd).cloned() {
                    if self.enabled {
                        self.upper_event(dir, &ev);
                    }
                    continue;
                }
                let Some(dir) = self.dirs.get(&ev.wd).cloned() else {
                    continue;
                };
                if self.lower {
                    let own = (ev.name.as_ref()).is_some_and(|n| self.own.contains(&dir.join(n)));
                    if !own {
                        self.changed.get_or_insert(
                            "the host workspace changed under the session's overlay layer",
                        );
                    }
                    continue;
                }
                let is_dir = ev.mask.contains(AddWatchFlags::IN_ISDIR);
                let Some(name) = ev.name else {
                    // About the directory itself: moved (paths under it changed) or its
                    // mode changed (it may be unreadable now).
                    if ev
                        .mask
                        .intersects(AddWatchFlags::IN_MOVE_SELF | AddWatchFlags::IN_ATTRIB)
                    {
                        self.rescan = true;
                    }
                    continue;
                };
                let path = dir.join(&name);
                if is_dir {
                    match self.dir_change(ev.mask, &name) {
                        DirChange::Ignore => {}
                        DirChange::Rescan => self.rescan = true,
                        DirChange::Walk => match self.walk(&path) {
                            Ok(found) => self.add_found(found),
                            Err(_) => self.rescan = true,
                        },
                    }
                } else if ev
                    .mask
                    .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                    && mount::is_env_file(
                        std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()),
                        &self.cfg.allow_names,
                    )
                {
                    self.fresh.insert((path.clone(), false));
                    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                        if let Some(t) = self.link_target(&path) {
                            self.fresh.insert((t, false));
                        }
                    }
                }
            }
        }
        if self.upper_rescan {
            self.upper_rescan = false;
            if let Some(upper) = self.upper.clone() {
                // After a walk we cannot tell what was made since: mask all it finds.
                match self.walk_upper(&upper) {
                    Ok(found) => self.fresh.extend(found.into_iter().map(|p| (p, false))),
                    Err(why) => self.broken = Some(why),
                }
            }
        }
        if self.rescan {
            self.rescan = false;
            let ws = self.ws.clone();
            match self.walk(&ws) {
                Ok(found) => {
                    // After a walk we cannot tell what was made again: mask it all.
                    self.add_found(found);
                }
                Err(why) => self.broken = Some(why),
            }
        }
    }

    fn link_target(&self, link: &Path) -> Option<PathBuf> {
        let t = std::fs::canonicalize(link).ok()?;
        (t.starts_with(&self.ws) && t.is_file()).then_some(t)
    }

    fn add_found(&mut self, found: EnvScan) {
        for p in found.hidden.iter().chain(&found.link_targets) {
            self.fresh.insert((p.clone(), false));
        }
        for l in &found.links {
            if let Some(t) = self.link_target(l) {
                self.fresh.insert((t, false));
            }
        }
        for d in found.unreadable {
            self.fresh.insert((d, true));
        }
    }

    /// The masks a command needs on top of the root's. `Err`: the index is broken (the
    /// command runs cold, with a full scan of its own).
    fn masks_for_command(&self) -> Result<Vec<(PathBuf, bool)>, String> {
        if let Some(why) = &self.broken {
            return Err(why.clone());
        }
        // Everything made (or made again: a mask of the root over a file deleted on
        // the host went with it) since the root was built.
        Ok(self.fresh.iter().cloned().collect())
    }
}

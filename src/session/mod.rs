//! Sessions: a warm sandbox per user, workspace, resolved policy and shellcage build,
//! so that an agent's later commands start in about a millisecond.
//!
//! The first command for a (workspace, policy) starts a **server** (forked from that
//! command's shellcage, so it holds the very same [`Request`]): it scans the workspace
//! for `.env` files once (no depth limit) and keeps that index current with inotify,
//! builds the sandbox as a cold run would, up to the point where the command would be
//! forked, and keeps the result: a **template** process holding the user, mount,
//! network, ipc and uts namespaces (see [`crate::sandbox::init`]). It then listens on a
//! socket in the user's private runtime directory.
//!
//! Each command is a connection: the client sends its argv, cwd, environment and its
//! stdin, stdout and stderr. The server forks a **handler** for it (see [`handler`]),
//! which supervises the command exactly as a cold run's supervisor does (limits,
//! timeout, signals, exit step, report, audit), except that the sandbox is not built:
//! a child joins the template's namespaces, takes a private copy of the mount
//! namespace, and becomes pid 1 of a new pid namespace with its own `/proc`; the
//! command then drops everything (capabilities, no_new_privs, Landlock, seccomp) as
//! in a cold run.
//!
//! What a session shares between its commands: `$HOME` and `/tmp` of the sandbox (one
//! machine), the network namespace (loopback), SysV IPC. What it never shares: a pid
//! namespace, a mount table, a process.

mod handler;
pub mod proto;
mod server;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::{SessionMode, TierChoice};
use crate::request::Request;

/// `SHELLCAGE_SESSION=off` (or `0`, `no`): every command runs cold.
pub const ENV_SWITCH: &str = "SHELLCAGE_SESSION";

/// `SHELLCAGE_SESSION_IDLE=30s`: a new session's idle time instead of the profile's.
pub const ENV_IDLE: &str = "SHELLCAGE_SESSION_IDLE";

pub use crate::launch::SessionUse;

/// Run the request: in its session when it may use one, else cold
/// ([`crate::launch::run`]).
pub fn run(req: Request) -> Result<i32, crate::launch::LaunchError> {
    if cold_reason(&req).is_none() {
        // The checks a cold run makes before anything else, and the hide rules it adds:
        // the session's sandbox is built from this very policy.
        if let Some((floor, _)) = &req.floor {
            floor
                .check_env_secrets(&req.policy, crate::sandbox::env::is_secret_name)
                .map_err(crate::request::RequestError::from)?;
        }
        let mut hide = Vec::new();
        if let Some(path) = &req.policy.audit {
            let log = crate::audit::AuditLog::open(path)?;
            hide.push(log.path().to_path_buf());
        }
        // The sessions' sockets are never visible inside. (Not part of the kept home's
        // key: a cold run of the same policy uses the same home, see home::home_dir.)
        if let Ok(d) = dir() {
            hide.push(d);
        }
        // An overlay workspace's layer store, as a cold run hides it (the session holds
        // the layer, see server::build).
        if req.policy.workspace_layer.is_some() {
            let store = crate::overlay::Store::from_env(&req.policy.home);
            hide.push(crate::overlay::hold::store_root(&store));
        }
        let mut warm = req.clone();
        warm.policy.hide.extend(
            hide.into_iter()
                .map(|pattern| crate::policy::HideRule { pattern }),
        );
        if let Some(code) = try_run(&warm) {
            return Ok(code);
        }
    }
    crate::launch::run(req)
}

/// What a session keeps from one command to the next.
pub const SHARED: &[&str] = &["$HOME", "/tmp", "network namespace (loopback)", "SysV IPC"];

/// The sessions' directory: `sessions` under shellcage's private runtime directory
/// (`$XDG_RUNTIME_DIR/shellcage`, or `/tmp/shellcage-UID`, checked to be the user's,
/// mode 0700). Never visible inside a sandbox (it is hidden by every policy).
pub fn dir() -> std::io::Result<PathBuf> {
    let d = crate::notice::runtime_dir()?.join("sessions");
    match std::fs::DirBuilder::new().mode(0o700).create(&d) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&d)?;
    if !meta.is_dir() || meta.uid() != nix::unistd::getuid().as_raw() || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{}: not a private directory of this user", d.display()),
        ));
    }
    Ok(d)
}

use std::os::unix::fs::DirBuilderExt;

/// The session key: the user, shellcage's build (the binary's identity), the whole
/// resolved policy (the profile chain's texts and every flag that changed it), and the
/// caller's cgroups. A session's commands run below the server's cgroups, and the server
/// is forked from the command that started it: a caller in other cgroups (a CI job's, a
/// `systemd-run` scope with its own limits) gets its own session, so that no command
/// ever runs outside the limits its caller is under.
pub fn key(req: &Request) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(nix::unistd::getuid().as_raw().to_le_bytes());
    if let Ok(m) = std::fs::metadata("/proc/self/exe") {
        for v in [
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime() as u64,
            m.mtime_nsec() as u64,
        ] {
            h.update(v.to_le_bytes());
        }
    }
    // Unreadable: the empty string, which no caller with cgroups shares.
    let cgroups = std::fs::read("/proc/self/cgroup").unwrap_or_default();
    h.update((cgroups.len() as u64).to_le_bytes());
    h.update(&cgroups);
    // The report is an output choice, sent with each command.
    let mut policy = req.policy.clone();
    policy.report = false;
    // The profile texts as they are, each length-prefixed (their Debug would escape
    // every character: most of a client's time went there).
    let chain = std::mem::take(&mut policy.profile_chain).0;
    h.update((chain.len() as u64).to_le_bytes());
    for (id, text) in &chain {
        for part in [id.as_bytes(), text.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    h.update(format!("{policy:?}").as_bytes());
    let digest = h.finalize();
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Why this command runs cold, when it must (`None`: it may use a session).
pub fn cold_reason(req: &Request) -> Option<&'static str> {
    let p = &req.policy;
    if req.opts.no_session {
        return Some("--no-session");
    }
    if std::env::var(ENV_SWITCH).is_ok_and(|v| matches!(v.as_str(), "off" | "0" | "no")) {
        return Some("SHELLCAGE_SESSION=off");
    }
    if p.session == SessionMode::Off {
        return Some("the profile says session = \"off\"");
    }
    if p.tier == TierChoice::Container {
        return Some("the container tier has no namespaces to keep");
    }
    if !p.publish.is_empty() {
        return Some("published ports are per command");
    }
    if req.interactive || crate::sys::is_tty(0) || crate::sys::is_tty(1) || crate::sys::is_tty(2) {
        return Some("a terminal: the command gets its own pty in a cold run");
    }
    None
}

/// Run the command in its session (starting the session when there is none). `None`:
/// nothing ran, run it cold (no session may be used here, or it could not be reached
/// or started; `-v` says why).
pub fn try_run(req: &Request) -> Option<i32> {
    if let Some(why) = cold_reason(req) {
        tracing::debug!(why, "no session");
        return None;
    }
    let key = key(req);
    let dir = match dir() {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(%e, "no session: no private runtime directory");
            return None;
        }
    };
    let sock = dir.join(format!("{key}.sock"));
    if let Some(why) = recently_refused(&dir, &key) {
        tracing::debug!(why, "no session: it could not be started a moment ago");
        return None;
    }
    tracing::debug!(target: "shellcage::timing", "client: connecting {}", req.started.elapsed().as_micros());
    // A server that took the connection but started nothing was ending (its workspace
    // changed between the connect and its look at the change, or its sandbox is no longer
    // sound): asked once more, which starts the next session (and an overlay session
    // waits for the ending one to let the layer go), rather than running cold.
    for attempt in 0..2 {
        let conn = match connect(&sock) {
            Some(c) => c,
            None => match server::start(req, &dir, &key) {
                Ok(()) => connect(&sock)?,
                Err(why) => {
                    tracing::debug!(why, "no session: it could not be started");
                    if why != server::LAYER_BUSY {
                        let _ = std::fs::write(dir.join(format!("{key}.cold")), why.as_bytes());
                    }
                    return None;
                }
            },
        };
        match client(req, &key, conn) {
            Client::Ran(code) => return Some(code),
            Client::NotTaken(why) => {
                tracing::debug!(why, attempt, "session: nothing was started");
            }
        }
    }
    tracing::debug!("no session: nothing was started twice");
    None
}

/// What came of a command sent to a session.
enum Client {
    /// It ran (or was started and then lost): its exit code.
    Ran(i32),
    /// Nothing was started: the same command may still run once, elsewhere.
    NotTaken(String),
}

/// A server that could not start for this key less than a minute ago: its reason.
fn recently_refused(dir: &Path, key: &str) -> Option<String> {
    let f = dir.join(format!("{key}.cold"));
    let age = std::fs::metadata(&f)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .ok()?;
    if age > std::time::Duration::from_secs(60) {
        let _ = std::fs::remove_file(&f);
        return None;
    }
    std::fs::read_to_string(&f).ok()
}

fn connect(sock: &Path) -> Option<UnixStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    let addr = UnixAddr::new(sock).ok()?;
    connect(fd.as_raw_fd(), &addr).ok()?;
    Some(UnixStream::from(fd))
}

/// The client's side of one command: send it, forward signals to the handler, return
/// its exit code.
fn client(req: &Request, key: &str, conn: UnixStream) -> Client {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let msg = proto::CommandRequest {
        key: key.to_owned(),
        argv: req.argv.clone(),
        cwd: req.cwd.clone(),
        env,
        report: req.policy.report,
        report_file: req.report_file.as_ref().map(|f| {
            if f.is_absolute() {
                f.clone()
            } else {
                req.cwd.join(f)
            }
        }),
    };
    let stdio = [0, 1, 2].map(crate::sys::borrow_fd);
    // Blocked before the command exists: a ^C now is forwarded, not lost.
    let signals = match crate::supervise::SignalGuard::block() {
        Ok(s) => s,
        Err(e) => return Client::NotTaken(format!("signals: {e}")),
    };
    if let Err(e) = proto::send(conn.as_fd(), &msg, &stdio) {
        return Client::NotTaken(format!("the request was not taken: {e}"));
    }
    tracing::debug!(target: "shellcage::timing", "client: request sent {}", req.started.elapsed().as_micros());
    let mut handler: Option<OwnedFd> = None;
    // Signals that came before the command started: forwarded once it has.
    let mut pending: Vec<i32> = Vec::new();
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        let mut fds = [
            PollFd::new(conn.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.fd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            while let Ok(Some(info)) = signals.fd.read_signal() {
                match &handler {
                    Some(h) => {
                        let _ = crate::sys::pidfd_send_signal(h.as_fd(), info.ssi_signo as i32);
                    }
                    None => pending.push(info.ssi_signo as i32),
                }
            }
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            match proto::recv::<proto::Reply>(conn.as_fd()) {
                Ok(Some((proto::Reply::Started { .. }, mut fds))) => {
                    tracing::debug!(target: "shellcage::timing", "client: started {}", req.started.elapsed().as_micros());
                    handler = fds.pop();
                    if let Some(h) = &handler {
                        for sig in pending.drain(..) {
                            let _ = crate::sys::pidfd_send_signal(h.as_fd(), sig);
                        }
                    }
                }
                Ok(Some((proto::Reply::Exit { code }, _))) => {
                    tracing::debug!(target: "shellcage::timing", "client: exit {}", req.started.elapsed().as_micros());
                    return Client::Ran(code);
                }
                Ok(Some((proto::Reply::Cold { why }, _))) => {
                    return Client::NotTaken(format!("the server ran nothing: {why}"));
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    if handler.is_none() {
        // Nothing was started: a cold run is the same command, run once.
        return Client::NotTaken(
            "the server closed the connection before starting anything".into(),
        );
    }
    crate::say!(
        "shellcage: the session's server ended while the command ran (it was stopped or killed); the command was killed with it (hint: shellcage session status)"
    );
    Client::Ran(128 + libc::SIGKILL)
}

/// A session's description, next to its socket (`KEY.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    pub key: String,
    pub pid: i32,
    pub workspace: PathBuf,
    pub profile: String,
    /// Seconds since the epoch.
    pub started: u64,
    pub idle_secs: u64,
    /// An overlay workspace's layer directory, which the session holds (mounted)
    /// between its commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<PathBuf>,
}

pub use crate::overlay::Release;

/// Ask the sessions that hold the layer at `dir` (mounted between their commands) to
/// end, as `how` says; does not wait. Returns how many were asked.
pub fn release_layer(dir: &Path, how: Release) -> usize {
    let sig = match how {
        Release::IfIdle => nix::sys::signal::Signal::SIGUSR1,
        Release::AfterCommands => nix::sys::signal::Signal::SIGHUP,
    };
    let mut asked = 0;
    for (info, answers) in all() {
        if info.layer.as_deref() != Some(dir) {
            continue;
        }
        // One that no longer answers is ending already (it took no new command since it
        // removed its socket): counted, so that the caller waits for it too.
        if answers {
            let r = signal_server_for(&info, sig, std::time::Duration::ZERO);
            tracing::debug!(
                key = info.key,
                ?how,
                ?r,
                "session asked to let its layer go"
            );
        }
        asked += 1;
    }
    asked
}

/// The sessions of this user that answer (a stale description is removed).
pub fn list() -> Vec<Info> {
    let mut out: Vec<Info> = (all().into_iter())
        .filter_map(|(info, answers)| answers.then_some(info))
        .collect();
    out.sort_by(|a, b| {
        a.workspace
            .cmp(&b.workspace)
            .then(a.started.cmp(&b.started))
    });
    out
}

/// Every session description of this user whose server lives, and whether it answers
/// on its socket (one that ends has removed its socket already). A description whose
/// server is gone is removed.
fn all() -> Vec<(Info, bool)> {
    let Ok(d) = dir() else { return Vec::new() };
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&d) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Some(info) = std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Info>(&b).ok())
        else {
            continue;
        };
        let sock = d.join(format!("{}.sock", info.key));
        if connect(&sock).is_some() {
            out.push((info, true));
        } else if nix::sys::signal::kill(nix::unistd::Pid::from_raw(info.pid), None).is_err() {
            let _ = std::fs::remove_file(&p);
            let _ = std::fs::remove_file(&sock);
        } else {
            out.push((info, false));
        }
    }
    out
}

/// End a session: its server stops, and the commands still running in it are killed.
/// Returns once the server has exited (its placeholders and copies undone), or after 10 s.
pub fn stop(info: &Info) -> Result<(), String> {
    signal_server(info, nix::sys::signal::Signal::SIGTERM)
}

/// End a session once the commands running in it have ended (none new are taken).
/// Returns once the server has exited, or after `limit`: then a command still runs.
pub fn drain(info: &Info, limit: std::time::Duration) -> Result<(), String> {
    signal_server_for(info, nix::sys::signal::Signal::SIGHUP, limit)
}

fn signal_server(info: &Info, sig: nix::sys::signal::Signal) -> Result<(), String> {
    signal_server_for(info, sig, std::time::Duration::from_secs(10))
}

fn signal_server_for(
    info: &Info,
    sig: nix::sys::signal::Signal,
    limit: std::time::Duration,
) -> Result<(), String> {
    let d = dir().map_err(|e| e.to_string())?;
    // Only a process that answers on the session's socket with that pid is signalled:
    // a pid from a stale file may be anybody's by now.
    let sock = d.join(format!("{}.sock", info.key));
    let conn = connect(&sock).ok_or_else(|| format!("session {} does not answer", info.key))?;
    let cred = nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| e.to_string())?;
    if cred.pid() != info.pid {
        return Err(format!(
            "session {}: its socket is served by another process",
            info.key
        ));
    }
    let pid = nix::unistd::Pid::from_raw(info.pid);
    // The pidfd before the signal: the process it names is the one that answered.
    let pidfd = crate::sys::pidfd_open(pid).map_err(|e| e.to_string())?;
    drop(conn);
    // By the pidfd: never another process that took the pid meanwhile.
    crate::sys::pidfd_send_signal(pidfd.as_fd(), sig as i32).map_err(|e| e.to_string())?;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!(
                "session {} has not ended after {} s",
                info.key,
                limit.as_secs()
            ));
        }
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&pidfd),
            PollFlags::POLLIN,
        )];
        let t =
            PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, t) {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// One line about a session.
fn describe(s: &Info, now: u64) -> String {
    format!(
        "{}  pid {}  {}  profile {}{}  up {}s  ends after {}s without a command",
        s.key,
        s.pid,
        s.workspace.display(),
        s.profile,
        s.layer
            .as_deref()
            .and_then(Path::file_name)
            .map(|n| format!("  layer {}", n.to_string_lossy()))
            .unwrap_or_default(),
        now.saturating_sub(s.started),
        s.idle_secs
    )
}

/// `shellcage session list | status | stop`.
pub fn cli(command: &crate::cli::SessionCommand) -> anyhow::Result<i32> {
    use crate::cli::SessionCommand;
    let pick = |all: bool, workspace: &Option<PathBuf>| -> anyhow::Result<Vec<Info>> {
        let sessions = list();
        if all {
            return Ok(sessions);
        }
        let ws = match workspace {
            Some(w) => std::fs::canonicalize(w)
                .map_err(|e| anyhow::anyhow!("session: workspace {}: {e}", w.display()))?,
            None => crate::request::current_dir()?,
        };
        Ok(sessions
            .into_iter()
            .filter(|s| ws.starts_with(&s.workspace))
            .collect())
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match command {
        SessionCommand::List => {
            for s in list() {
                println!("{}", describe(&s, now));
            }
            Ok(0)
        }
        SessionCommand::Status { workspace } => {
            let found = pick(false, workspace)?;
            if found.is_empty() {
                println!("no session for this workspace");
                return Ok(1);
            }
            for s in found {
                println!("{}", describe(&s, now));
            }
            Ok(0)
        }
        SessionCommand::Stop { all, workspace } => {
            let mut code = 0;
            for s in pick(*all, workspace)? {
                match stop(&s) {
                    Ok(()) => println!("stopped session {} ({})", s.key, s.workspace.display()),
                    Err(e) => {
                        crate::say!("shellcage: session stop: {e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
    }
}

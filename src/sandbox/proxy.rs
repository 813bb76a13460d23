//! The proxy process: shellcage's egress proxy engine (`crate::net`) serving the listeners
//! that the sandbox init created inside the network namespace, from outside, in the host's
//! namespace; and the host side of `--publish`.
//!
//! The supervisor forks it (while single-threaded, before the sandbox is cloned) with
//! [`start`]; it runs in parallel with the sandbox's setup:
//!
//! 1. dies with the supervisor (PDEATHSIG), leaves the terminal's session (Ctrl-C goes to
//!    the supervisor, which ends the run), keeps only its descriptors;
//! 2. locks itself down: no capabilities, no_new_privs, not dumpable; Landlock: no
//!    filesystem but the files the C library's resolver reads (read-only), TCP connect
//!    only to the allowed destination ports and 53, no bind; the abstract-socket and
//!    signal scopes; a seccomp allowlist (`seccomp/proxy.rs`);
//! 3. receives the listeners from the init over the channel, starts the engine, answers
//!    Ready (the init releases the command only then), serves;
//! 4. when the supervisor closes the control socket (the run is over), stops the engine
//!    and writes its summary (JSON) back, then exits.
//!
//! The supervisor reads that summary as untrusted data (bounded, sanitized: the engine
//! parses what the sandbox sends, so its process is the one a hostile command would
//! attack).
//!
//! A session server starts one with [`start`] and keeps it for all its commands.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::unistd::Pid;

use super::landlock::{self, LandlockSpec};
use super::net::{Channel, ChannelMessage};
use super::{privileges, seccomp};
use crate::net::rules::RuleSet;
use crate::net::summary::SummaryReport;
use crate::net::{Config, Engine, Listeners, SystemResolver};
use crate::policy::Publish;
use crate::sys::{self, Forked, SysError};

/// What the proxy process serves.
pub struct ProxyConfig {
    /// The allowlist (network mode `proxy`); `None`: publishing only.
    pub rules: Option<RuleSet>,
    /// Host listeners of `--publish`, bound by the supervisor (so a busy port refuses the
    /// run before anything starts).
    pub publish: Vec<Published>,
    /// Landlock must be enforced on the proxy (the profile's `[landlock] mode`).
    pub landlock_required: bool,
    /// A session's proxy serves all its commands: each command's handler asks for the
    /// summary so far at its start and end (see [`Queries`]); `false` for a cold run.
    pub queries: bool,
}

/// The handlers' side of a session proxy's query socket (`SOCK_SEQPACKET`, shared by every
/// handler): each query carries a descriptor of the asker's own, on which the proxy
/// writes the summary so far and closes it, so concurrent handlers never read each
/// other's answers.
pub struct Queries(std::os::fd::OwnedFd);

/// One published port: the host listener and the port inside.
pub struct Published {
    pub listener: TcpListener,
    pub sandbox_port: u16,
}

/// Why the proxy process could not be started (nothing ran).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("--publish {spec}: cannot listen on {addr}: {source} (hint: choose another host port)")]
    Publish {
        spec: String,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("network proxy: {0}")]
    Sys(#[from] SysError),
}

/// Bind the host side of every published port (`--publish`), on the host's loopback.
pub fn bind_published(publish: &[Publish]) -> Result<Vec<Published>, ProxyError> {
    publish
        .iter()
        .map(|p| {
            let addr = std::net::SocketAddr::new(p.host, p.port);
            TcpListener::bind(addr)
                .map(|listener| Published {
                    listener,
                    sandbox_port: p.sandbox_port,
                })
                .map_err(|source| ProxyError::Publish {
                    spec: format!("{}:{}:{}", p.host, p.port, p.sandbox_port),
                    addr,
                    source,
                })
        })
        .collect()
}

/// A running proxy process, seen from the supervisor.
pub struct ProxyProcess {
    pub pid: Pid,
    control: UnixStream,
    /// A session's proxy: where its handlers ask for the summary so far.
    pub queries: Option<Queries>,
}

/// What the proxy reported when the run ended.
#[derive(Debug, Default)]
pub struct ProxyOutcome {
    /// Sanitized; `None` when the proxy ended without one (it failed or was killed).
    pub summary: Option<SummaryReport>,
    /// Why there is no summary.
    pub error: Option<String>,
    /// A session proxy's snapshot: how full its lasting tables are (names handed out,
    /// destinations itemized), in parts per thousand of their limits.
    pub fill_permille: u64,
}

/// The largest summary accepted from the proxy process.
const MAX_SUMMARY: usize = 16 << 20;
/// How long the supervisor waits for the summary after the run.
const SUMMARY_WAIT: Duration = Duration::from_secs(3);
/// How long a session proxy waits, for a command that has ended, for the connections
/// still being decided.
const SETTLE_WAIT: Duration = Duration::from_secs(1);

/// Fork the proxy process. Returns it and the init's end of the channel (to be inherited
/// by the sandbox init: put it in `NetSpec::channel`, and drop it after the clone). The
/// caller is single-threaded.
pub fn start(config: ProxyConfig) -> Result<(ProxyProcess, Channel), ProxyError> {
    let (proxy_end, init_end) = Channel::pair()?;
    let (control, control_child) = UnixStream::pair()
        .map_err(|e| SysError::new("socketpair", "proxy control", io_errno(&e)))?;
    let queries = if config.queries {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| SysError::new("socketpair", "proxy queries", e))?;
        Some((a, b))
    } else {
        None
    };
    let parent = nix::unistd::getpid();
    match sys::fork_process()? {
        Forked::Child => {
            drop(init_end);
            drop(control);
            let theirs = queries.map(|(_, b)| b);
            run(config, proxy_end, control_child, theirs, parent)
        }
        Forked::Parent { child } => Ok((
            ProxyProcess {
                pid: child,
                control,
                queries: queries.map(|(a, _)| Queries(a)),
            },
            init_end,
        )),
    }
}

impl Queries {
    /// The descriptor (a session's handlers keep it across their descriptor clean-up).
    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// The proxy's summary so far (sanitized), or why there is none (the proxy is gone).
    /// `settle`: a command has just ended; the proxy first waits (up to 1 s) for the
    /// connections still being decided (looked up, connected) to be decided.
    pub fn snapshot(&self, settle: bool) -> ProxyOutcome {
        let (ours, theirs) = match UnixStream::pair() {
            Ok(p) => p,
            Err(e) => {
                return ProxyOutcome {
                    summary: None,
                    fill_permille: 0,
                    error: Some(format!("the network proxy's summary: {e}")),
                };
            }
        };
        let what: &[u8] = if settle { b"e" } else { b"s" };
        let sent = sys::send_fds(self.0.as_fd(), what, &[theirs.as_fd()]);
        drop(theirs);
        if let Err(e) = sent {
            return ProxyOutcome {
                summary: None,
                fill_permille: 0,
                error: Some(format!("the session's network proxy is gone ({e})")),
            };
        }
        outcome_of(read_bounded(&ours, SUMMARY_WAIT))
    }
}

impl ProxyProcess {
    /// The run is over: ask for the summary (close our side), read it, and end the
    /// process.
    pub fn finish(self) -> ProxyOutcome {
        let _ = self.control.shutdown(std::net::Shutdown::Write);
        let read = read_bounded(&self.control, SUMMARY_WAIT);
        self.kill();
        outcome_of(read)
    }

    /// End the process now (launch errors, session teardown).
    pub fn kill(self) {
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
        // SIGKILL cannot be caught: the wait is short, and leaves no zombie behind.
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

/// What the proxy answered (its JSON report, read as untrusted data).
fn outcome_of(read: std::io::Result<Vec<u8>>) -> ProxyOutcome {
    {
        match read {
            Ok(bytes) if bytes.is_empty() => ProxyOutcome {
                summary: None,
                fill_permille: 0,
                error: Some("the network proxy ended without its summary".into()),
            },
            Ok(bytes) => match serde_json::from_slice::<Report>(&bytes) {
                Ok(Report::Summary(s)) => ProxyOutcome {
                    summary: Some(s.sanitized()),
                    error: None,
                    fill_permille: 0,
                },
                Ok(Report::Snapshot {
                    summary,
                    fill_permille,
                }) => ProxyOutcome {
                    summary: Some(summary.sanitized()),
                    error: None,
                    fill_permille,
                },
                Ok(Report::Failed(why)) => ProxyOutcome {
                    summary: None,
                    fill_permille: 0,
                    error: Some(printable_line(&why)),
                },
                Err(e) => ProxyOutcome {
                    summary: None,
                    fill_permille: 0,
                    error: Some(format!("the network proxy's summary is not readable: {e}")),
                },
            },
            Err(e) => ProxyOutcome {
                summary: None,
                fill_permille: 0,
                error: Some(format!("the network proxy's summary: {e}")),
            },
        }
    }
}

/// What the proxy writes on the control socket at the end.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Report {
    Summary(SummaryReport),
    /// A session proxy's answer to a query.
    Snapshot {
        summary: SummaryReport,
        fill_permille: u64,
    },
    Failed(String),
}

fn printable_line(text: &str) -> String {
    text.chars()
        .take(500)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

fn io_errno(e: &std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Read until end of file, at most [`MAX_SUMMARY`] bytes, giving up after `wait`.
fn read_bounded(s: &UnixStream, wait: Duration) -> std::io::Result<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let mut s = s;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {}s", wait.as_secs()),
            ));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) if out.len() + n > MAX_SUMMARY => {
                return Err(std::io::Error::other("larger than 16 MiB"));
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

// ---- the proxy process -----------------------------------------------------------------

/// The proxy process. Never returns.
fn run(
    config: ProxyConfig,
    channel: Channel,
    control: UnixStream,
    queries: Option<std::os::fd::OwnedFd>,
    parent: Pid,
) -> ! {
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || nix::unistd::getppid() != parent
    {
        sys::exit_now(1);
    }
    // Out of the terminal's session and process group: a Ctrl-C reaches the supervisor
    // (which ends the run and then this process), not the proxy in the middle of it.
    let _ = nix::unistd::setsid();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let mut keep: Vec<RawFd> = vec![2, channel.as_raw_fd(), control.as_raw_fd()];
    keep.extend(queries.as_ref().map(|q| q.as_raw_fd()));
    keep.extend(config.publish.iter().map(|p| p.listener.as_raw_fd()));
    stdio_to_null();
    sys::close_fds_except(&keep);
    let fail = |why: String| -> ! {
        let _ = channel.send(&ChannelMessage::Failed(why.clone()), &[]);
        write_report(&control, &Report::Failed(why));
        sys::exit_now(1)
    };
    if let Err(e) = lock_down(&config) {
        fail(format!("network proxy: cannot lock itself down: {e}"));
    }
    let engine = match &config.rules {
        Some(rules) => match serve(rules.clone(), &channel) {
            Ok(engine) => Some(engine),
            Err(why) => fail(why),
        },
        None => None,
    };
    if channel.send(&ChannelMessage::Ready, &[]).is_err() {
        sys::exit_now(1);
    }
    publish(config.publish, channel);
    // Until the supervisor closes its side: the run (or the session) is over.
    match &queries {
        None => {
            let mut buf = [0u8; 64];
            let mut c = &control;
            while !matches!(c.read(&mut buf), Ok(0) | Err(_)) {}
        }
        Some(q) => answer_queries(&control, q.as_fd(), engine.as_ref()),
    }
    let summary = engine.map(Engine::stop).unwrap_or_default();
    write_report(&control, &Report::Summary(summary.report()));
    sys::exit_now(0)
}

/// A session's proxy: answer each query (the summary so far, on the descriptor it
/// carries) until the control socket closes.
fn answer_queries(control: &UnixStream, queries: BorrowedFd<'_>, engine: Option<&Engine>) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        let mut fds = [
            PollFd::new(control.as_fd(), PollFlags::POLLIN),
            PollFd::new(queries, PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
        let (control_ready, query_ready) = (ready(&fds[0]), ready(&fds[1]));
        if control_ready {
            let mut buf = [0u8; 64];
            let mut c = control;
            if matches!(c.read(&mut buf), Ok(0) | Err(_)) {
                return;
            }
        }
        if query_ready {
            let mut buf = [0u8; 8];
            match sys::recv_fds(queries, &mut buf) {
                Ok((0, _)) => return,
                Ok((n, mut fds)) => {
                    // One descriptor per query; anything else is dropped unanswered.
                    if let (Some(reply), true) = (fds.pop(), fds.is_empty()) {
                        if let (Some(e), b"e") = (engine, &buf[..n.min(1)]) {
                            let until = Instant::now() + SETTLE_WAIT;
                            while e.undecided() > 0 && Instant::now() < until {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        }
                        let summary = engine.map(Engine::summary).unwrap_or_default();
                        let fill_permille = engine.map_or(0, Engine::fill_permille);
                        let reply = UnixStream::from(reply);
                        // A handler that stops reading must not stall every later query.
                        let _ = reply.set_write_timeout(Some(SUMMARY_WAIT));
                        let report = Report::Snapshot {
                            summary: summary.report(),
                            fill_permille,
                        };
                        write_report(&reply, &report);
                    }
                }
                Err(e) if e.errno == nix::errno::Errno::EINTR => {}
                Err(_) => return,
            }
        }
    }
}

fn write_report(control: &UnixStream, report: &Report) {
    if let Ok(json) = serde_json::to_vec(report) {
        let mut c = control;
        let _ = c.write_all(&json);
    }
    let _ = control.shutdown(std::net::Shutdown::Write);
}

/// stdin and stdout become /dev/null (nothing here reads the terminal or writes to the
/// caller's stdout); stderr stays for diagnostics (`-v`).
fn stdio_to_null() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(null.as_fd());
        let _ = nix::unistd::dup2_stdout(null.as_fd());
    }
}

/// The files the C library's name lookup (getaddrinfo) reads, for the Landlock rules:
/// its configuration, /etc/hosts, the dynamic loader's cache and the library directories
/// (NSS modules are loaded on first use), and, when /etc/resolv.conf is a symlink (to
/// systemd-resolved's or resolvconf's file in /run), the directory it points into (those
/// files are replaced, not rewritten).
pub fn resolver_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = [
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/nsswitch.conf",
        "/etc/host.conf",
        "/etc/gai.conf",
        "/etc/ld.so.cache",
        "/lib",
        "/lib64",
        "/usr/lib",
        "/usr/lib64",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let resolv = Path::new("/etc/resolv.conf");
    if std::fs::symlink_metadata(resolv).is_ok_and(|m| m.file_type().is_symlink()) {
        if let Some(dir) = std::fs::canonicalize(resolv)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .filter(|d| !d.starts_with("/etc") && d != Path::new("/"))
        {
            paths.push(dir);
        }
    }
    paths
}

/// No capabilities, no_new_privs, not dumpable, Landlock (the resolver's files read-only,
/// TCP connect to the destination ports and 53 only, no bind, scopes), seccomp allowlist.
fn lock_down(config: &ProxyConfig) -> Result<(), String> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("PR_SET_DUMPABLE: {e}"))?;
    privileges::drop_all().map_err(|e| e.to_string())?;
    let mut tcp_connect: Vec<u16> = config.rules.iter().flat_map(RuleSet::ports).collect();
    if config.rules.is_some() {
        // The host's resolver over TCP (truncated answers).
        tcp_connect.push(53);
    }
    let spec = LandlockSpec {
        read: resolver_paths(),
        deny_tcp: true,
        tcp_connect,
        scopes: true,
        required: config.landlock_required,
        ..LandlockSpec::default()
    };
    landlock::apply(&spec).map_err(|e| e.to_string())?;
    for prog in seccomp::build_proxy().map_err(|e| e.to_string())? {
        seccomp::install(&prog).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Receive the listeners and start the engine on them.
fn serve(rules: RuleSet, channel: &Channel) -> Result<Engine, String> {
    let (msg, fds) = match channel.recv() {
        Ok(Some(m)) => m,
        Ok(None) => sys::exit_now(0),
        Err(e) => return Err(format!("network proxy: receiving the listeners: {e}")),
    };
    let ChannelMessage::Listeners {
        explicit: _,
        transparent,
    } = msg
    else {
        return Err(format!("network proxy: unexpected message {msg:?}"));
    };
    let n = transparent.len();
    let mut fds = fds;
    if fds.len() != n + 3 {
        return Err(format!(
            "network proxy: {} descriptors for {} listeners",
            fds.len(),
            n + 3
        ));
    }
    // Order: explicit, transparent…, resolver UDP, resolver TCP.
    let dns_tcp = fds.split_off(n + 2);
    let dns_udp = fds.split_off(n + 1);
    let transparent = fds.split_off(1);
    let listeners = Listeners {
        explicit: fds.into_iter().map(TcpListener::from).collect(),
        transparent: transparent.into_iter().map(TcpListener::from).collect(),
        dns_udp: dns_udp.into_iter().map(std::net::UdpSocket::from).collect(),
        dns_tcp: dns_tcp.into_iter().map(TcpListener::from).collect(),
    };
    Engine::start(
        Config::new(rules),
        listeners,
        Arc::new(SystemResolver),
        None,
    )
    .map_err(|e| e.to_string())
}

/// Serve the published ports: each accepted host connection is matched with a connection
/// the connector makes inside, and the two are relayed.
fn publish(published: Vec<Published>, channel: Channel) {
    if published.is_empty() {
        return;
    }
    let channel = Arc::new(Mutex::new(channel));
    for p in published {
        let channel = channel.clone();
        let spawned = std::thread::Builder::new()
            .name("publish-accept".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                for host in p.listener.incoming().flatten() {
                    let inside = connect_inside(&channel, p.sandbox_port);
                    match inside {
                        Some(inside) => relay(host, inside),
                        None => drop(host),
                    }
                }
            });
        if spawned.is_err() {
            tracing::warn!("network proxy: cannot serve a published port");
        }
    }
}

/// Ask the connector for a connection to `port` inside.
fn connect_inside(channel: &Mutex<Channel>, port: u16) -> Option<TcpStream> {
    let channel = channel.lock().ok()?;
    channel.send(&ChannelMessage::Connect { port }, &[]).ok()?;
    match channel.recv() {
        Ok(Some((ChannelMessage::Connected, mut fds))) if fds.len() == 1 => {
            fds.pop().map(TcpStream::from)
        }
        Ok(Some((ChannelMessage::ConnectFailed { errno }, _))) => {
            tracing::debug!(port, errno, "published port: nothing accepts inside");
            None
        }
        _ => None,
    }
}

fn relay(host: TcpStream, inside: TcpStream) {
    let spawned = std::thread::Builder::new()
        .name("publish-relay".into())
        .stack_size(128 * 1024)
        .spawn(move || crate::net::relay_both_ways(host, inside, Duration::from_secs(3600)));
    if spawned.is_err() {
        tracing::warn!("network proxy: cannot relay a published connection");
    }
}

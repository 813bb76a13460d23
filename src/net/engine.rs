//! The engine: listeners served by threads, the shared state they decide with, and the
//! record of what they decided.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use super::addr::Cidr;
use super::dns::NameMap;
use super::host::Host;
use super::relay::Pair;
use super::resolver::Resolver;
use super::rules::RuleSet;
use super::summary::{Summary, Via};
use super::verdict::Reason;
use super::{dns_server, proxy};
use crate::sys;

/// The limits of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (and first text line, and ClientHello) accepted.
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// Time allowed for a whole request head or ClientHello, from its first byte (from the
    /// connection for explicit requests): slow clients are cut.
    pub head_timeout: Duration,
    /// Transparent mode: how long to wait for the client's first bytes before connecting
    /// anyway (protocols where the server speaks first). No byte is forwarded unchecked.
    pub first_bytes_wait: Duration,
    /// A relay is cut when nothing moved either way for this long.
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    /// Connections accepted in the whole run (explicit and transparent).
    pub max_connections: u64,
    /// Connections open at once.
    pub max_active: usize,
    /// Names the resolver hands addresses out for.
    pub max_names: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 32 * 1024,
            max_headers: 100,
            head_timeout: Duration::from_secs(10),
            first_bytes_wait: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            max_connections: 20_000,
            max_active: 512,
            max_names: 4096,
        }
    }
}

/// What the engine enforces.
#[derive(Clone, Debug)]
pub struct Config {
    pub rules: RuleSet,
    pub limits: Limits,
    /// The reserved block the resolver hands addresses out from (routed to `lo` inside).
    pub transparent_range: Cidr,
    /// TTL of the resolver's answers (the mapping never changes during a run).
    pub dns_ttl: u32,
}

/// The range used by default: RFC 2544's benchmarking block, which is never a destination.
pub const TRANSPARENT_RANGE: Cidr = Cidr::v4(198, 18, 0, 0, 15);

impl Config {
    pub fn new(rules: RuleSet) -> Config {
        Config {
            rules,
            limits: Limits::default(),
            transparent_range: TRANSPARENT_RANGE,
            dns_ttl: 60,
        }
    }
}

/// Listening sockets, created (and bound) inside the sandbox's network namespace.
#[derive(Debug, Default)]
pub struct Listeners {
    /// `127.0.0.1:PORT`: HTTP_PROXY and friends point there.
    pub explicit: Vec<TcpListener>,
    /// `0.0.0.0:PORT` for each allowed port: connections to the reserved range.
    pub transparent: Vec<TcpListener>,
    /// `127.0.0.1:53`.
    pub dns_udp: Vec<UdpSocket>,
    pub dns_tcp: Vec<TcpListener>,
}

/// One decision, as it is made (for live logs and the audit stream).
#[derive(Clone, Debug)]
pub struct Event {
    pub via: Via,
    /// The destination host as written (or an escaped description when there is none).
    pub host: String,
    pub port: Option<u16>,
    pub reason: Reason,
    /// The sandbox side of the connection.
    pub peer: Option<SocketAddr>,
    /// The address connected to (allowed connections).
    pub upstream: Option<SocketAddr>,
}

/// A receiver of events; called on the deciding thread, so it must be quick.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// Counters of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub accepted: u64,
    pub active: usize,
    pub peak_active: usize,
}

/// What every thread of the engine shares.
pub(crate) struct Shared {
    pub rules: RuleSet,
    pub limits: Limits,
    pub resolver: Arc<dyn Resolver>,
    pub names: Mutex<NameMap>,
    pub dns_ttl: u32,
    summary: Mutex<Summary>,
    sink: Option<EventSink>,
    accepted: AtomicU64,
    active: AtomicUsize,
    peak: AtomicUsize,
    pub stopping: AtomicBool,
    pub dns_tcp_active: AtomicUsize,
    pairs: Mutex<Vec<Tracked>>,
}

/// A relay kept reachable for [`Engine::stop`], with the destination its bytes go to
/// (for [`Engine::summary`] while it runs).
struct Tracked {
    pair: Weak<Pair>,
    via: Via,
    host: String,
    port: u16,
    allowed: Reason,
}

/// A connection counted as active until dropped.
pub(crate) struct Admitted(Arc<Shared>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An upstream connection the rules allowed, to an address that was checked.
pub(crate) struct Upstream {
    pub stream: TcpStream,
    pub addr: SocketAddr,
    pub allowed: Reason,
}

impl Shared {
    pub fn record(
        &self,
        via: Via,
        host: &str,
        port: Option<u16>,
        reason: &Reason,
        peer: Option<SocketAddr>,
        upstream: Option<SocketAddr>,
    ) {
        if let Ok(mut s) = self.summary.lock() {
            s.record(host, port, via, reason);
        }
        match reason {
            Reason::Allowed { .. } => {
                tracing::debug!(?via, host, ?port, %reason, "network: allowed")
            }
            _ => tracing::info!(?via, host, ?port, %reason, "network: refused"),
        }
        if let Some(sink) = &self.sink {
            sink(&Event {
                via,
                host: host.to_string(),
                port,
                reason: reason.clone(),
                peer,
                upstream,
            });
        }
    }

    pub fn add_bytes(&self, via: Via, host: &Host, port: u16, allowed: &Reason, pair: &Pair) {
        if let Ok(mut s) = self.summary.lock() {
            let out = pair.bytes_out.load(Ordering::Relaxed);
            let inn = pair.bytes_in.load(Ordering::Relaxed);
            s.add_bytes(&host.to_string(), port, via, allowed, out, inn);
            pair.counted.store(true, Ordering::Relaxed);
        }
    }

    /// Count a new connection against the run's limits.
    pub fn admit(self: &Arc<Self>) -> Result<Admitted, Reason> {
        let n = self.accepted.fetch_add(1, Ordering::SeqCst) + 1;
        if n > self.limits.max_connections {
            return Err(Reason::Limit {
                what: format!(
                    "more than {} connections in this run",
                    self.limits.max_connections
                ),
            });
        }
        let active = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        let admitted = Admitted(self.clone());
        if active > self.limits.max_active {
            return Err(Reason::Limit {
                what: format!("more than {} connections at once", self.limits.max_active),
            });
        }
        self.peak.fetch_max(active, Ordering::SeqCst);
        Ok(admitted)
    }

    /// Rules, resolution, address check, connect: the upstream for `host:port`, or why not.
    pub fn open(&self, host: &Host, port: u16) -> Result<Upstream, Reason> {
        let rule = self.rules.check(host, port).map_err(Reason::from_list)?;
        let candidates: Vec<SocketAddr> = match host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
            Host::Name(name) => {
                self.resolver
                    .resolve(name, port)
                    .map_err(|e| Reason::ResolveFailed {
                        error: e.to_string(),
                    })?
            }
        };
        let mut refused = None;
        let mut checked = Vec::new();
        for addr in candidates {
            match self.rules.addresses().check(addr.ip()) {
                Ok(()) => checked.push(addr),
                Err(f) => {
                    refused.get_or_insert(f);
                }
            }
        }
        if checked.is_empty() {
            return Err(match refused {
                Some(f) => Reason::private(&f),
                None => Reason::ResolveFailed {
                    error: "no address".into(),
                },
            });
        }
        let mut last_error = None;
        for addr in checked {
            match TcpStream::connect_timeout(&addr, self.limits.connect_timeout) {
                Ok(stream) => {
                    return Ok(Upstream {
                        stream,
                        addr,
                        allowed: Reason::Allowed { rule },
                    });
                }
                Err(e) => last_error = Some(format!("{addr}: {e}")),
            }
        }
        Err(Reason::ConnectFailed {
            error: last_error.unwrap_or_default(),
        })
    }

    /// Keep `pair` reachable for [`Engine::stop`], and its bytes countable while it runs
    /// (they go to `host:port`, allowed as `allowed`).
    pub fn track(&self, pair: &Arc<Pair>, via: Via, host: &Host, port: u16, allowed: &Reason) {
        if let Ok(mut pairs) = self.pairs.lock() {
            if pairs.len() >= 64 && pairs.len() >= 2 * self.active.load(Ordering::SeqCst) {
                pairs.retain(|t| t.pair.strong_count() > 0);
            }
            pairs.push(Tracked {
                pair: Arc::downgrade(pair),
                via,
                host: host.to_string(),
                port,
                allowed: allowed.clone(),
            });
        }
    }

    /// The name the resolver handed `ip` out for.
    pub fn name_for(&self, ip: IpAddr) -> Option<String> {
        match ip {
            IpAddr::V4(v4) => self.names.lock().ok()?.name_for(v4).map(str::to_string),
            IpAddr::V6(v6) => self.name_for(IpAddr::V4(v6.to_ipv4_mapped()?)),
        }
    }
}

/// The engine could not start serving a listener.
#[derive(Debug, thiserror::Error)]
#[error(
    "network proxy: cannot serve the {what}: {source} (hint: the listeners must be bound, listening sockets)"
)]
pub struct StartError {
    pub what: String,
    #[source]
    pub source: io::Error,
}

fn start_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> StartError {
    let what = what.into();
    move |source| StartError { what, source }
}

/// A running engine.
pub struct Engine {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Descriptors to shut down on stop (kept open by their threads' handles).
    wake: Vec<Arc<dyn AsRawFd + Send + Sync>>,
}

/// How long [`Engine::stop`] waits for cut connections to finish their records.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// Stack of a connection thread: the system resolver (getaddrinfo) runs on it.
pub(crate) const CONN_STACK: usize = 256 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Explicit,
    Transparent,
    DnsTcp,
}

impl Engine {
    /// Serve `listeners` with `config`; resolution on the host goes through `resolver`.
    ///
    /// Also: ignores SIGPIPE in this process (a relay into a closed socket must fail, not
    /// kill it) and raises the soft descriptor limit to the hard one (a relay holds six).
    pub fn start(
        config: Config,
        listeners: Listeners,
        resolver: Arc<dyn Resolver>,
        sink: Option<EventSink>,
    ) -> Result<Engine, StartError> {
        sys::ignore_sigpipe();
        raise_fd_limit();
        let shared = Arc::new(Shared {
            names: Mutex::new(NameMap::new(
                config.transparent_range,
                config.limits.max_names,
            )),
            rules: config.rules,
            limits: config.limits,
            resolver,
            dns_ttl: config.dns_ttl,
            summary: Mutex::new(Summary::default()),
            sink,
            accepted: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            dns_tcp_active: AtomicUsize::new(0),
            pairs: Mutex::new(Vec::new()),
        });
        let mut engine = Engine {
            shared,
            threads: Vec::new(),
            wake: Vec::new(),
        };
        let tcp = [
            (listeners.explicit, Kind::Explicit),
            (listeners.transparent, Kind::Transparent),
            (listeners.dns_tcp, Kind::DnsTcp),
        ];
        let mut started = Ok(());
        for (list, kind) in tcp {
            for l in list {
                started = started.and_then(|()| engine.spawn_accept(l, kind));
            }
        }
        for sock in listeners.dns_udp {
            started = started.and_then(|()| engine.spawn_dns_udp(sock));
        }
        match started {
            Ok(()) => Ok(engine),
            Err(e) => {
                // Nothing half-started keeps serving.
                engine.stop();
                Err(e)
            }
        }
    }

    fn spawn_accept(&mut self, listener: TcpListener, kind: Kind) -> Result<(), StartError> {
        let what = match listener.local_addr() {
            Ok(a) => format!("{kind:?} listener {a}").to_lowercase(),
            Err(_) => format!("{kind:?} listener").to_lowercase(),
        };
        let listening =
            nix::sys::socket::getsockopt(&listener, nix::sys::socket::sockopt::AcceptConn)
                .map_err(|e| io::Error::from_raw_os_error(e as i32))
                .map_err(start_error(&what))?;
        if !listening {
            return Err(start_error(what)(io::Error::other(
                "not a listening socket",
            )));
        }
        listener
            .set_nonblocking(false)
            .map_err(start_error(&what))?;
        set_accept_timeout(&listener).map_err(start_error(&what))?;
        let listener = Arc::new(listener);
        self.wake.push(listener.clone());
        let shared = self.shared.clone();
        let t = std::thread::Builder::new()
            .name(format!("net-accept-{kind:?}"))
            .stack_size(CONN_STACK)
            .spawn(move || accept_loop(shared, &listener, kind))
            .map_err(start_error(what))?;
        self.threads.push(t);
        Ok(())
    }

    fn spawn_dns_udp(&mut self, sock: UdpSocket) -> Result<(), StartError> {
        let what = "dns udp socket";
        sock.set_nonblocking(false).map_err(start_error(what))?;
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(start_error(what))?;
        let sock = Arc::new(sock);
        self.wake.push(sock.clone());
        let shared = self.shared.clone();
        let t = std::thread::Builder::new()
            .name("net-dns-udp".into())
            .stack_size(CONN_STACK)
            .spawn(move || dns_server::udp_loop(&shared, &sock))
            .map_err(start_error(what))?;
        self.threads.push(t);
        Ok(())
    }

    /// What was decided so far, with the bytes the relays still running have moved (a
    /// relay's bytes are in the summary itself only once it ends: a session's command is
    /// reported from two of these, and its uploads must not wait for a later one).
    pub fn summary(&self) -> Summary {
        let Ok(s) = self.shared.summary.lock() else {
            return Summary::default();
        };
        let mut out = s.clone();
        if let Ok(pairs) = self.shared.pairs.lock() {
            for t in pairs.iter() {
                let Some(p) = t.pair.upgrade() else { continue };
                // Set under the summary's lock, which we hold: counted once.
                if p.counted.load(Ordering::Relaxed) {
                    continue;
                }
                let (o, i) = (
                    p.bytes_out.load(Ordering::Relaxed),
                    p.bytes_in.load(Ordering::Relaxed),
                );
                out.add_bytes(&t.host, t.port, t.via, &t.allowed, o, i);
            }
        }
        out
    }

    /// How full the tables that last the engine's life are, in parts per thousand of
    /// their limits (the busier of: names handed out, destinations itemized).
    pub fn fill_permille(&self) -> u64 {
        let names = self.shared.names.lock().map(|n| n.len()).unwrap_or(0) as u64;
        let dests = self.shared.summary.lock().map(|s| s.len()).unwrap_or(0) as u64;
        let of = |n: u64, max: usize| n.saturating_mul(1000) / (max.max(1) as u64);
        of(names, self.shared.limits.max_names).max(of(dests, super::summary::MAX_DESTINATIONS))
    }

    /// Connections accepted and not yet relaying (being checked, looked up, connected):
    /// their decisions are still to come.
    pub fn undecided(&self) -> usize {
        let relaying = (self.shared.pairs.lock())
            .map(|p| p.iter().filter(|t| t.pair.strong_count() > 0).count())
            .unwrap_or(0);
        self.shared
            .active
            .load(Ordering::SeqCst)
            .saturating_sub(relaying)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            accepted: self.shared.accepted.load(Ordering::SeqCst),
            active: self.shared.active.load(Ordering::SeqCst),
            peak_active: self.shared.peak.load(Ordering::SeqCst),
        }
    }

    /// Stop accepting, cut every relay, and return the summary.
    pub fn stop(mut self) -> Summary {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for fd in &self.wake {
            let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Read);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Ok(pairs) = self.shared.pairs.lock() {
            for p in pairs.iter().filter_map(|t| t.pair.upgrade()) {
                p.abort();
            }
        }
        // Cut relays end at once; a connection still reading its head ends at its timeout.
        // Wait briefly so the summary has the bytes of what just ended.
        let start = std::time::Instant::now();
        while self.shared.active.load(Ordering::SeqCst) > 0 && start.elapsed() < STOP_WAIT {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.summary()
    }
}

fn set_accept_timeout(l: &TcpListener) -> io::Result<()> {
    let tv = nix::sys::time::TimeVal::new(0, 500_000);
    nix::sys::socket::setsockopt(l, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn accept_loop(shared: Arc<Shared>, listener: &TcpListener, kind: Kind) {
    while !shared.stopping.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR | libc::ECONNABORTED) => continue,
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    tracing::warn!(error = %e, "network proxy: accept");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                _ => {
                    if !shared.stopping.load(Ordering::SeqCst) {
                        tracing::warn!(error = %e, "network proxy: accept failed; listener closed");
                    }
                    return;
                }
            },
        };
        if kind == Kind::DnsTcp {
            dns_server::spawn_tcp(&shared, stream);
            continue;
        }
        let admitted = match shared.admit() {
            Ok(a) => a,
            Err(reason) => {
                proxy::refuse_at_accept(&shared, kind, stream, &reason);
                continue;
            }
        };
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("net-conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || {
                let _admitted = admitted;
                match kind {
                    Kind::Explicit => proxy::serve_explicit(&s, stream),
                    _ => proxy::serve_transparent(&s, stream),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "network proxy: cannot start a connection thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_that_is_not_listening_is_refused_at_start() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let not_listening = TcpListener::from(std::os::fd::OwnedFd::from(client));
        let listeners = Listeners {
            explicit: vec![not_listening],
            ..Listeners::default()
        };
        let rules = RuleSet::new::<&str>(&[], &[], &[]).unwrap();
        let resolver = Arc::new(super::super::SystemResolver);
        let err = Engine::start(Config::new(rules), listeners, resolver, None)
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.starts_with("network proxy: cannot serve the explicit listener 127.0.0.1:"),
            "{text}"
        );
        assert!(text.contains("not a listening socket"), "{text}");
    }
}

//! The sandbox's side of the network in `proxy` mode and for `--publish`: what exists
//! inside the network namespace, and the channel to the proxy process outside.
//!
//! - The init's network-namespace thread creates the proxy's listeners there
//!   ([`create_listeners`]: the explicit proxy on `127.0.0.1:PORT`, one `0.0.0.0:PORT` per
//!   allowed port for the reserved range made local by a route, the resolver on
//!   `127.0.0.1:53` UDP and TCP) and sends them over the [`Channel`] to the proxy process,
//!   keeping no copy. The proxy answers [`ChannelMessage::Ready`] once it serves them; the
//!   init releases the command only then ([`wait_ready`]), so a proxy that cannot start
//!   means nothing runs (exit 125).
//! - With `--publish`, the init forks the [`run_connector`] process before the command: it
//!   connects to the published ports inside on the proxy's request and hands back the
//!   connected sockets (the proxy relays them to the host's loopback).
//!
//! Functions a warm sandbox (a session) calls once: [`create_listeners`], and on the host
//! side `sandbox::proxy::start`.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{AddressFamily, Backlog, SockFlag, SockType, listen, setsockopt, sockopt};
use serde::{Deserialize, Serialize};

use crate::sys::{self, SysError};

/// The explicit proxy's port inside, unless an allowed destination port takes it.
pub const EXPLICIT_PORT: u16 = 3128;
/// The resolver's port (on 127.0.0.1, UDP and TCP).
pub const DNS_PORT: u16 = 53;
/// What `/etc/resolv.conf` says inside in proxy mode: our resolver, and no waiting on it
/// (it answers at once or not at all).
pub const RESOLV_CONF: &str = "# shellcage: names resolve through the allowlist proxy's resolver (network mode proxy)\nnameserver 127.0.0.1\noptions timeout:2 attempts:2\n";
/// What `/etc/hosts` says inside in proxy mode: loopback and the sandbox's host name only.
/// Every other name goes to the proxy's resolver, so a name the host's hosts file maps
/// (an internal server) is judged by the allowlist like any other, and resolved by the
/// proxy outside, not by the command to an address it cannot reach.
pub const HOSTS: &str = "# shellcage: other names resolve through the allowlist proxy (network mode proxy)\n127.0.0.1 localhost shellcage\n::1 localhost ip6-localhost ip6-loopback\n";

/// The listeners of the proxy, as the init creates them inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// `127.0.0.1:explicit`: HTTP_PROXY and friends.
    pub explicit: u16,
    /// `0.0.0.0:PORT` for each allowed destination port.
    pub transparent: Vec<u16>,
    /// The reserved block the resolver hands addresses out from; a `local` route makes
    /// every address of it reach the `0.0.0.0` listeners.
    pub range: (Ipv4Addr, u8),
}

impl Listening {
    /// The ports the command may connect to (Landlock TCP rules): the listeners'.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports = vec![self.explicit, DNS_PORT];
        ports.extend(&self.transparent);
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// The network pieces of one sandbox (`None` in a [`super::SandboxSpec`] when there are
/// none: mode `none` or `loopback` without `--publish`, and `host`).
#[derive(Debug)]
pub struct NetSpec {
    /// The proxy's listeners (network mode `proxy`).
    pub proxy: Option<Listening>,
    /// Ports inside the sandbox published to the host (`--publish`).
    pub publish: Vec<u16>,
    /// The init's end of the channel to the proxy process: set by the launch once the
    /// proxy process exists, inherited by the init through the clone, and taken (closed)
    /// in the supervisor right after it.
    pub channel: Option<Channel>,
}

/// The explicit listener's port: [`EXPLICIT_PORT`], or the next port that is neither an
/// allowed destination port (a transparent listener), the resolver's, nor published.
pub fn explicit_port(taken: &[u16]) -> u16 {
    (EXPLICIT_PORT..=u16::MAX)
        .chain(1025..EXPLICIT_PORT)
        .find(|p| !taken.contains(p) && *p != DNS_PORT)
        .unwrap_or(EXPLICIT_PORT)
}

/// The variables that point the usual tools at the explicit proxy (`http://127.0.0.1:PORT`):
/// - `http_proxy`, `https_proxy`, `all_proxy`, `no_proxy` in both cases: curl and libcurl
///   users (git, cargo) read lower-case `http_proxy` only; Python's urllib and requests,
///   pip, Go, wget, uv, Deno and Ruby read one case or the other;
/// - `npm_config_proxy`, `npm_config_https_proxy`: npm and pnpm (yarn 1 reads npm's);
/// - `YARN_HTTP_PROXY`, `YARN_HTTPS_PROXY`: Yarn 2+ ignores the generic variables (and
///   `YARN_NO_PROXY` is *not* set: Yarn refuses to start on a setting it does not know);
/// - `NODE_USE_ENV_PROXY=1`: Node's own `fetch` and `http` follow `HTTPS_PROXY` (Node 24,
///   22.21); older Node ignores it, and its connections go through the transparent mode.
///
/// `no_proxy` keeps loopback direct (the sandbox's own servers).
pub fn proxy_env(port: u16) -> Vec<(&'static str, String)> {
    let url = format!("http://127.0.0.1:{port}");
    let no_proxy = "localhost,127.0.0.1,::1".to_string();
    let mut vars = Vec::new();
    for name in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "npm_config_proxy",
        "npm_config_https_proxy",
        "YARN_HTTP_PROXY",
        "YARN_HTTPS_PROXY",
    ] {
        vars.push((name, url.clone()));
    }
    vars.push(("no_proxy", no_proxy.clone()));
    vars.push(("NO_PROXY", no_proxy));
    vars.push(("NODE_USE_ENV_PROXY", "1".into()));
    vars
}

/// What travels between the init (and the connector) and the proxy process, one message
/// per datagram of a `SOCK_SEQPACKET` pair, as JSON, descriptors attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelMessage {
    /// init → proxy. Descriptors: the explicit listener, the transparent ones (in this
    /// order), the resolver's UDP then TCP socket.
    Listeners {
        explicit: u16,
        transparent: Vec<u16>,
    },
    /// proxy → init: serving; the command may start.
    Ready,
    /// proxy → init: the proxy cannot serve (the run is refused with this line).
    Failed(String),
    /// proxy → connector: a host client connected to a published port.
    Connect { port: u16 },
    /// connector → proxy: the connected socket is attached.
    Connected,
    /// connector → proxy: connecting failed (errno).
    ConnectFailed { errno: i32 },
}

/// The largest message (the listener list is the longest).
const MAX_MESSAGE: usize = 4096;

/// One end of the channel.
#[derive(Debug)]
pub struct Channel(OwnedFd);

impl Channel {
    /// A connected pair, close-on-exec: one end for the proxy, one for the init.
    pub fn pair() -> Result<(Channel, Channel), SysError> {
        let (a, b) = nix::sys::socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| SysError::new("socketpair", "proxy channel", e))?;
        Ok((Channel(a), Channel(b)))
    }

    /// A second descriptor for the same end (for the init's network thread).
    pub fn try_clone(&self) -> Result<Channel, SysError> {
        self.0
            .try_clone()
            .map(Channel)
            .map_err(|e| SysError::new("dup", "proxy channel", io_errno(&e)))
    }

    pub fn send(&self, msg: &ChannelMessage, fds: &[BorrowedFd<'_>]) -> Result<(), SysError> {
        let data = serde_json::to_vec(msg).unwrap_or_default();
        sys::send_fds(self.0.as_fd(), &data, fds)
    }

    /// The next message and its descriptors; `Ok(None)` at end of file (the other end is
    /// gone).
    pub fn recv(&self) -> Result<Option<(ChannelMessage, Vec<OwnedFd>)>, SysError> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (n, fds) = sys::recv_fds(self.0.as_fd(), &mut buf)?;
        if n == 0 && fds.is_empty() {
            return Ok(None);
        }
        match serde_json::from_slice(&buf[..n]) {
            Ok(m) => Ok(Some((m, fds))),
            Err(_) => Err(SysError::new(
                "recvmsg",
                "proxy channel (not a message)",
                nix::errno::Errno::EBADMSG,
            )),
        }
    }

    /// Give up waiting after `t` (`SO_RCVTIMEO`).
    pub fn set_timeout(&self, t: Duration) -> Result<(), SysError> {
        let tv = nix::sys::time::TimeVal::new(t.as_secs() as _, t.subsec_micros() as _);
        setsockopt(&self.0, sockopt::ReceiveTimeout, &tv)
            .map_err(|e| SysError::new("setsockopt", "SO_RCVTIMEO proxy channel", e))
    }
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

fn io_errno(e: &std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn tcp_listener(addr: Ipv4Addr, port: u16) -> Result<OwnedFd, SysError> {
    let what = || format!("{addr}:{port} (tcp)");
    let l = std::net::TcpListener::bind((addr, port))
        .map_err(|e| SysError::new("bind", what(), io_errno(&e)))?;
    // std listens with a backlog of 128: 200 parallel connects would wait on SYN retries.
    // A second listen(2) on a listening socket sets the new backlog.
    listen(&l, Backlog::MAXCONN).map_err(|e| SysError::new("listen", what(), e))?;
    Ok(OwnedFd::from(l))
}

fn udp_socket(addr: Ipv4Addr, port: u16) -> Result<OwnedFd, SysError> {
    let s = std::net::UdpSocket::bind((addr, port))
        .map_err(|e| SysError::new("bind", format!("{addr}:{port} (udp)"), io_errno(&e)))?;
    Ok(OwnedFd::from(s))
}

/// In the sandbox's (new, empty) network namespace, with loopback up: the local route for
/// the reserved range and every listener of `l`, sent over `channel` to the proxy. Nothing
/// is kept: the proxy holds the only copies. Needs CAP_NET_ADMIN and CAP_NET_BIND_SERVICE
/// in the namespace (the init has them).
pub fn create_listeners(l: &Listening, channel: &Channel) -> Result<(), SysError> {
    sys::add_local_route_v4(l.range.0, l.range.1)?;
    let mut fds = vec![tcp_listener(Ipv4Addr::LOCALHOST, l.explicit)?];
    for &port in &l.transparent {
        fds.push(tcp_listener(Ipv4Addr::UNSPECIFIED, port)?);
    }
    fds.push(udp_socket(Ipv4Addr::LOCALHOST, DNS_PORT)?);
    fds.push(tcp_listener(Ipv4Addr::LOCALHOST, DNS_PORT)?);
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    channel.send(
        &ChannelMessage::Listeners {
            explicit: l.explicit,
            transparent: l.transparent.clone(),
        },
        &borrowed,
    )
}

/// How long the init waits for the proxy to serve (it starts in parallel with the
/// sandbox's setup, so this is a bound for a stuck proxy, not a delay).
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

const ENDED: &str = "network proxy: the proxy process ended before it served";

/// Wait for the proxy's [`ChannelMessage::Ready`]; its failure line otherwise.
pub fn wait_ready(channel: &Channel) -> Result<(), String> {
    channel
        .set_timeout(READY_TIMEOUT)
        .map_err(|e| e.to_string())?;
    match channel.recv() {
        Ok(Some((ChannelMessage::Ready, _))) => Ok(()),
        Ok(Some((ChannelMessage::Failed(why), _))) => Err(why),
        Ok(Some((other, _))) => Err(format!(
            "network proxy: unexpected message {other:?} while starting"
        )),
        Ok(None) => Err(ENDED.into()),
        Err(e)
            if matches!(
                e.errno,
                nix::errno::Errno::ECONNRESET | nix::errno::Errno::EPIPE
            ) =>
        {
            Err(ENDED.into())
        }
        Err(e) if e.errno == nix::errno::Errno::EAGAIN => Err(format!(
            "network proxy: not ready after {}s",
            READY_TIMEOUT.as_secs()
        )),
        Err(e) => Err(format!("network proxy: {e}")),
    }
}

/// How long the connector waits for a published server to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The connector process (inside the sandbox's network namespace, forked by the init
/// before the command): for each [`ChannelMessage::Connect`] of the proxy, connect to
/// `127.0.0.1:PORT` (then `[::1]:PORT`) of one of the `published` ports and send the
/// socket back. It reads nothing from the sockets it makes. Never returns.
pub fn run_connector(channel: &Channel, published: &[u16], landlock_required: bool) -> ! {
    if let Err(e) = lock_down_connector(published, landlock_required) {
        tracing::warn!(%e, "the published ports' connector cannot lock itself down");
        sys::exit_now(super::init::EXIT_SETUP);
    }
    loop {
        let port = match channel.recv() {
            Ok(Some((ChannelMessage::Connect { port }, _))) => port,
            Ok(Some(_)) => continue,
            Ok(None) => sys::exit_now(0),
            Err(e) if e.errno == nix::errno::Errno::EINTR => continue,
            Err(_) => sys::exit_now(0),
        };
        let reply = if published.contains(&port) {
            connect_inside(port)
        } else {
            Err(libc::EPERM)
        };
        let sent = match &reply {
            Ok(stream) => channel.send(&ChannelMessage::Connected, &[stream.as_fd()]),
            Err(errno) => channel.send(&ChannelMessage::ConnectFailed { errno: *errno }, &[]),
        };
        if sent.is_err() {
            sys::exit_now(0);
        }
    }
}

fn connect_inside(port: u16) -> Result<std::net::TcpStream, i32> {
    let v4 = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    match std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e4) => std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT)
            .map_err(|_| e4.raw_os_error().unwrap_or(libc::ECONNREFUSED)),
    }
}

/// The connector keeps nothing it does not need: no capabilities, no filesystem, TCP
/// connect to the published ports only, the proxy's system-call allowlist.
fn lock_down_connector(published: &[u16], required: bool) -> Result<(), String> {
    let _ = nix::sys::prctl::set_dumpable(false);
    super::privileges::drop_all().map_err(|e| e.to_string())?;
    let spec = super::landlock::LandlockSpec {
        deny_tcp: true,
        tcp_connect: published.to_vec(),
        scopes: true,
        required,
        ..Default::default()
    };
    super::landlock::apply(&spec).map_err(|e| e.to_string())?;
    for prog in super::seccomp::build_proxy().map_err(|e| e.to_string())? {
        super::seccomp::install(&prog).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The bytes of a channel message as sent (tests).
#[cfg(test)]
fn encode(m: &ChannelMessage) -> Vec<u8> {
    serde_json::to_vec(m).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_port_avoids_allowed_and_published_ports() {
        assert_eq!(explicit_port(&[80, 443]), 3128);
        assert_eq!(explicit_port(&[80, 443, 3128, 3129]), 3130);
        assert_eq!(explicit_port(&[]), 3128);
    }

    #[test]
    fn listening_ports_include_the_resolver() {
        let l = Listening {
            explicit: 3128,
            transparent: vec![443, 80, 8443],
            range: (Ipv4Addr::new(198, 18, 0, 0), 15),
        };
        assert_eq!(l.ports(), vec![53, 80, 443, 3128, 8443]);
    }

    #[test]
    fn proxy_variables_name_the_explicit_listener_and_never_yarn_no_proxy() {
        let vars = proxy_env(3128);
        let get = |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        for n in [
            "http_proxy",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "npm_config_https_proxy",
            "YARN_HTTPS_PROXY",
        ] {
            assert_eq!(get(n), Some("http://127.0.0.1:3128"), "{n}");
        }
        assert_eq!(get("NO_PROXY"), Some("localhost,127.0.0.1,::1"));
        assert_eq!(get("NODE_USE_ENV_PROXY"), Some("1"));
        assert_eq!(get("YARN_NO_PROXY"), None);
    }

    #[test]
    fn channel_messages_round_trip_with_descriptors() {
        let (a, b) = Channel::pair().unwrap();
        let (r, w) = sys::pipe_cloexec().unwrap();
        let m = ChannelMessage::Listeners {
            explicit: 3128,
            transparent: vec![80, 443],
        };
        assert!(encode(&m).len() < MAX_MESSAGE);
        a.send(&m, &[r.as_fd(), w.as_fd()]).unwrap();
        let (got, fds) = b.recv().unwrap().unwrap();
        assert_eq!((got, fds.len()), (m, 2));
        a.send(&ChannelMessage::Failed("x".into()), &[]).unwrap();
        assert_eq!(wait_ready(&b).unwrap_err(), "x");
        drop(a);
        assert!(b.recv().unwrap().is_none());
    }
}

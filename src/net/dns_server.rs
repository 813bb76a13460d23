//! The resolver inside the sandbox (UDP and TCP on 127.0.0.1:53): A questions for allowed
//! names get an address of the reserved range; AAAA and other types for them get an empty
//! answer (NODATA, so clients fall back to IPv4 and nothing reads it as a failure); names
//! that are not allowed get NXDOMAIN and are recorded; other opcodes NOTIMP, other classes
//! REFUSED. Nothing is ever forwarded.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::dns::{self, CLASS_IN, Parsed, TYPE_A};
use super::engine::{CONN_STACK, Shared};
use super::host::Host;
use super::summary::Via;
use super::verdict::Reason;

/// DNS-over-TCP connections served at once, questions per connection, and the time a
/// connection may take per question.
const TCP_MAX_ACTIVE: usize = 32;
const TCP_MAX_QUERIES: usize = 100;
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer to one message, or None to drop it.
pub(crate) fn respond(shared: &Shared, msg: &[u8]) -> Option<Vec<u8>> {
    let q = match dns::parse(msg) {
        Parsed::Drop => return None,
        Parsed::FormErr { id, flags } => return Some(dns::formerr(id, flags)),
        Parsed::Query(q) => q,
    };
    if q.opcode != 0 {
        return Some(dns::answer(&q, dns::RCODE_NOTIMP, None));
    }
    if q.qclass != CLASS_IN {
        return Some(dns::answer(&q, dns::RCODE_REFUSED, None));
    }
    let name = match &q.name {
        Ok(n) => n.clone(),
        Err(shown) => {
            let reason = Reason::bad(400, "not a host name");
            shared.record(Via::Dns, shown, None, &reason, None, None);
            return Some(dns::answer(&q, dns::RCODE_NXDOMAIN, None));
        }
    };
    if let Err(refusal) = shared.rules.check_name(&name) {
        shared.record(
            Via::Dns,
            &name,
            None,
            &Reason::from_list(refusal),
            None,
            None,
        );
        return Some(dns::answer(&q, dns::RCODE_NXDOMAIN, None));
    }
    if q.qtype != TYPE_A {
        return Some(dns::answer(&q, 0, None));
    }
    let addr = shared.names.lock().ok()?.address_for(&name);
    match addr {
        Some(a) => Some(dns::answer(&q, 0, Some((a, shared.dns_ttl)))),
        None => {
            let reason = Reason::Limit {
                what: format!(
                    "more than {} names resolved in this run",
                    shared.limits.max_names
                ),
            };
            shared.record(
                Via::Dns,
                &Host::Name(name).to_string(),
                None,
                &reason,
                None,
                None,
            );
            Some(dns::answer(&q, dns::RCODE_SERVFAIL, None))
        }
    }
}

/// The IPv4 or IPv6 address a datagram came from.
fn peer_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<std::net::SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(std::net::SocketAddr::V4(std::net::SocketAddrV4::from(*v4)));
    }
    a.as_sockaddr_in6()
        .map(|v6| std::net::SocketAddr::V6(std::net::SocketAddrV6::from(*v6)))
}

pub(crate) fn udp_loop(shared: &Arc<Shared>, sock: &UdpSocket) {
    let mut buf = [0u8; 4096];
    while !shared.stopping.load(Ordering::SeqCst) {
        // nix's recvfrom, not std's: the zero-length read that shutdown(2)
        // wakes comes without a peer address, and std asserts on that
        // (seen in a release build: the resolver thread panicked).
        let got = nix::sys::socket::recvfrom::<nix::sys::socket::SockaddrStorage>(
            sock.as_raw_fd(),
            &mut buf,
        )
        .map_err(std::io::Error::from);
        let (n, peer) = match got {
            Ok((n, Some(peer))) => match peer_addr(&peer) {
                Some(peer) => (n, peer),
                None => continue,
            },
            Ok((_, None)) if shared.stopping.load(Ordering::SeqCst) => return,
            Ok((_, None)) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            // Stopping: shutdown(2) woke the call (a zero-length read without a peer
            // address, which std reports as an invalid argument).
            Err(_) if shared.stopping.load(Ordering::SeqCst) => return,
            Err(e) => {
                tracing::warn!(error = %e, "network resolver: recv");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if let Some(answer) = respond(shared, &buf[..n]) {
            let _ = sock.send_to(&answer, peer);
        }
    }
}

pub(crate) fn spawn_tcp(shared: &Arc<Shared>, stream: TcpStream) {
    if shared.dns_tcp_active.fetch_add(1, Ordering::SeqCst) >= TCP_MAX_ACTIVE {
        shared.dns_tcp_active.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let s = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("net-dns-tcp".into())
        .stack_size(CONN_STACK)
        .spawn(move || {
            serve_tcp(&s, stream);
            s.dns_tcp_active.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        shared.dns_tcp_active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Length-prefixed messages (RFC 1035 §4.2.2), each within [`TCP_TIMEOUT`].
fn serve_tcp(shared: &Shared, mut stream: TcpStream) {
    for _ in 0..TCP_MAX_QUERIES {
        let deadline = Instant::now() + TCP_TIMEOUT;
        let mut len = [0u8; 2];
        if read_exact_by(&mut stream, &mut len, deadline).is_err() {
            return;
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        if read_exact_by(&mut stream, &mut msg, deadline).is_err() {
            return;
        }
        let Some(answer) = respond(shared, &msg) else {
            return;
        };
        let mut out = (answer.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&answer);
        let _ = stream.set_write_timeout(Some(TCP_TIMEOUT));
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

fn read_exact_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

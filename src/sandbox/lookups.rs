//! Name lookups in network mode `none` (namespaces tier): they fail at once, and the
//! sandbox knows which names were asked for.
//!
//! The sandbox's `/etc/resolv.conf` names `127.0.0.1` ([`RESOLV_CONF`]), and the init
//! answers every DNS question that arrives there, over UDP, at once: NXDOMAIN for a query,
//! NOTIMP for another opcode, REFUSED for another class, FORMERR for a malformed message.
//! Nothing is ever forwarded: the namespace has only loopback, and the init sends answers
//! only to the sender, from the socket the question came in on.
//!
//! Why a responder at all: glibc and Go use connected UDP sockets and see the namespace's
//! "network unreachable" or loopback's "port unreachable" at once, but musl (Alpine, static
//! binaries) sends from an unconnected socket, which the kernel does not tell about ICMP
//! errors, and waits out its 5 s timeout. TCP on port 53 has no listener: a connection is
//! refused at once (and Landlock TCP rules, where the kernel has them, refuse it earlier).
//!
//! Cost at launch: the network-namespace thread binds the UDP socket it already opened to
//! bring loopback up (one `bind`, in parallel with the mounts); resolv.conf is one more
//! generated file. The init serves the socket from its reaping loop (a signalfd and the
//! socket in one `poll`), so no thread or process is added.
//!
//! What a hostile command can do with it: flood it (the init answers at most
//! [`BATCH`] datagrams between two looks at its signals, and keeps at most [`MAX_NAMES`]
//! distinct names and a saturating count: its memory is bounded), send garbage (dropped or
//! FORMERR), ask for huge or binary names (the parser caps them at 255 bytes and escapes
//! what is not a host name; the supervisor shows at most 64 safe characters of each). The
//! init parses these datagrams with no capability left (it drops them once the command is
//! forked), so a bug in the parser reaches nothing the command does not already have.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{MsgFlags, SockaddrIn, SockaddrStorage};
use serde::{Deserialize, Serialize};

use crate::net::dns::{self, CLASS_IN, Parsed};
use crate::net::summary::{Destination, SummaryReport, Via};
use crate::net::verdict::Decision;
use crate::sys::SysError;

/// What `/etc/resolv.conf` says inside in network mode `none`.
pub const RESOLV_CONF: &str = "# shellcage: network mode none: names do not resolve (the sandbox answers every lookup itself, at once)\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n";

/// Distinct names kept (with their counts); more are only counted.
pub const MAX_NAMES: usize = 16;
/// Datagrams answered between two looks at the init's signals.
pub const BATCH: usize = 64;
/// The reason recorded for each lookup (the report's `egress.destinations[].reason`).
pub const REASON: &str = "network mode none";

const TYPE_PTR: u16 = 12;

/// One name and how many questions asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameCount {
    pub name: String,
    pub count: u64,
}

/// The names the sandbox asked for: the first [`MAX_NAMES`] distinct ones with their
/// counts, and the count of every question (`total` ≥ the sum of `names`' counts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupRecord {
    pub total: u64,
    pub names: Vec<NameCount>,
}

impl LookupRecord {
    /// Count one question for `name`.
    pub fn add(&mut self, name: &str) {
        self.total = self.total.saturating_add(1);
        if let Some(n) = self.names.iter_mut().find(|n| n.name == name) {
            n.count = n.count.saturating_add(1);
        } else if self.names.len() < MAX_NAMES {
            self.names.push(NameCount {
                name: name.to_string(),
                count: 1,
            });
        }
    }

    /// A record that came over the report pipe, held to the bounds the init keeps (the
    /// pipe carries only shellcage's own messages, but the supervisor does not lean on
    /// that).
    pub fn bounded(mut self) -> LookupRecord {
        self.names.truncate(MAX_NAMES);
        for n in &mut self.names {
            if n.name.len() > 255 {
                let mut end = 255;
                while !n.name.is_char_boundary(end) {
                    end -= 1;
                }
                n.name.truncate(end);
            }
        }
        let listed = self
            .names
            .iter()
            .map(|n| n.count)
            .fold(0, u64::saturating_add);
        self.total = self.total.max(listed);
        self
    }

    /// The report's and the audit record's `egress` shape (as network mode `proxy` has
    /// it): each name a blocked DNS destination; names beyond [`MAX_NAMES`] counted as
    /// `untracked`.
    pub fn summary(&self) -> SummaryReport {
        let listed = self
            .names
            .iter()
            .map(|n| n.count)
            .fold(0, u64::saturating_add);
        SummaryReport {
            allowed: 0,
            blocked: self.total,
            failed: 0,
            destinations: self
                .names
                .iter()
                .map(|n| Destination {
                    host: n.name.clone(),
                    port: None,
                    decision: Decision::Blocked,
                    reason: REASON.into(),
                    via: Via::Dns,
                    count: n.count,
                    bytes_out: 0,
                    bytes_in: 0,
                })
                .collect(),
            untracked: self.total.saturating_sub(listed),
        }
    }
}

/// The responder's socket: `sock` (the network-namespace thread's UDP socket, loopback
/// already up) bound to 127.0.0.1:53 and made non-blocking. Needs CAP_NET_BIND_SERVICE in
/// the namespace (the init has it).
pub fn bind(sock: OwnedFd) -> Result<OwnedFd, SysError> {
    let addr = SockaddrIn::new(127, 0, 0, 1, crate::sandbox::net::DNS_PORT);
    nix::sys::socket::bind(sock.as_raw_fd(), &addr)
        .map_err(|e| SysError::new("bind", "127.0.0.1:53 (udp, name lookups)", e))?;
    let flags = nix::fcntl::fcntl(&sock, nix::fcntl::FcntlArg::F_GETFL)
        .map_err(|e| SysError::new("fcntl", "F_GETFL name lookups", e))?;
    let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&sock, nix::fcntl::FcntlArg::F_SETFL(flags))
        .map_err(|e| SysError::new("fcntl", "O_NONBLOCK name lookups", e))?;
    Ok(sock)
}

/// A session's command (see the `session` module): its own responder socket on
/// 127.0.0.1:53 of the session's network namespace, so that its init answers and records
/// its command's lookups as a cold run's does. `SO_REUSEPORT`: every running command of
/// the session binds one (the template binds none once it is built); when several run at
/// once the kernel spreads the questions over their sockets, so a command's record may
/// hold a name a concurrent one asked for. Needs CAP_NET_BIND_SERVICE in the namespace
/// (the init has it until the command is forked). Only after the command has come: a
/// socket nobody serves would hold the running commands' questions.
pub fn bind_for_session_command() -> Result<OwnedFd, SysError> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, setsockopt, socket, sockopt};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| SysError::new("socket", "udp (name lookups)", e))?;
    setsockopt(&sock, sockopt::ReusePort, &true)
        .map_err(|e| SysError::new("setsockopt", "SO_REUSEPORT (name lookups)", e))?;
    bind(sock)
}

/// The answer to one datagram (`None`: drop it), and the name to record, if any.
///
/// Not recorded: reverse lookups (PTR, `*.arpa`: not names a command connects to), and
/// `hostname` and `localhost` (the sandbox's own names, not the network's).
pub fn answer(msg: &[u8], hostname: &str) -> (Option<Vec<u8>>, Option<String>) {
    let q = match dns::parse(msg) {
        Parsed::Drop => return (None, None),
        Parsed::FormErr { id, flags } => return (Some(dns::formerr(id, flags)), None),
        Parsed::Query(q) => q,
    };
    if q.opcode != 0 {
        return (Some(dns::answer(&q, dns::RCODE_NOTIMP, None)), None);
    }
    if q.qclass != CLASS_IN {
        return (Some(dns::answer(&q, dns::RCODE_REFUSED, None)), None);
    }
    let name = match &q.name {
        Ok(n) | Err(n) => n.clone(),
    };
    let own = name == hostname
        || name == "localhost"
        || name.ends_with(".arpa")
        || q.qtype == TYPE_PTR
        || name.is_empty();
    let reply = dns::answer(&q, dns::RCODE_NXDOMAIN, None);
    (Some(reply), (!own).then_some(name))
}

/// The responder the init serves (see the module's text).
pub struct Responder {
    sock: OwnedFd,
    hostname: &'static str,
    pub record: LookupRecord,
}

impl Responder {
    pub fn new(sock: OwnedFd, hostname: &'static str) -> Self {
        Responder {
            sock,
            hostname,
            record: LookupRecord::default(),
        }
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Answer the datagrams waiting, at most [`BATCH`] of them.
    pub fn serve(&mut self) {
        let mut buf = [0u8; 1024];
        for _ in 0..BATCH {
            let got =
                nix::sys::socket::recvfrom::<SockaddrStorage>(self.sock.as_raw_fd(), &mut buf);
            let (n, peer) = match got {
                Ok((n, Some(peer))) => (n, peer),
                Ok((_, None)) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                // EAGAIN: nothing left; anything else: try again on the next wakeup.
                Err(_) => return,
            };
            let (reply, name) = answer(&buf[..n.min(buf.len())], self.hostname);
            if let Some(name) = name {
                self.record.add(&name);
            }
            if let Some(reply) = reply {
                let _ = nix::sys::socket::sendto(
                    self.sock.as_raw_fd(),
                    &reply,
                    &peer,
                    MsgFlags::MSG_DONTWAIT,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` (type, class) as a resolver sends it.
    fn query(id: u16, name: &str, qtype: u16, qclass: u16) -> Vec<u8> {
        dns::query_in_class(id, name, qtype, qclass)
    }

    fn rcode(answer: &[u8]) -> u8 {
        answer[3] & 0xf
    }

    #[test]
    fn every_query_gets_nxdomain_and_is_recorded_except_our_own_names() {
        let (a, name) = answer(&query(7, "a.example", 1, 1), "shellcage");
        let a = a.unwrap();
        assert_eq!((a[0], a[1], a[2] & 0x80), (0, 7, 0x80), "id echoed, QR set");
        assert_eq!(rcode(&a), dns::RCODE_NXDOMAIN);
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 0, "no answer records");
        assert_eq!(name.as_deref(), Some("a.example"));
        let (a, name) = answer(&query(8, "A.Example", 28, 1), "shellcage");
        assert_eq!(rcode(&a.unwrap()), dns::RCODE_NXDOMAIN);
        assert_eq!(name.as_deref(), Some("a.example"));
        for own in ["shellcage", "localhost", "1.0.0.127.in-addr.arpa"] {
            let (a, name) = answer(&query(9, own, 1, 1), "shellcage");
            assert_eq!(rcode(&a.unwrap()), dns::RCODE_NXDOMAIN, "{own}");
            assert_eq!(name, None, "{own}");
        }
        let (a, name) = answer(&query(9, "b.example", TYPE_PTR, 1), "shellcage");
        assert_eq!((rcode(&a.unwrap()), name), (dns::RCODE_NXDOMAIN, None));
    }

    #[test]
    fn other_classes_opcodes_and_garbage() {
        let (a, name) = answer(&query(1, "a.example", 1, 3), "shellcage");
        assert_eq!((rcode(&a.unwrap()), name), (dns::RCODE_REFUSED, None));
        let mut notify = query(2, "a.example", 1, 1);
        notify[2] |= 4 << 3;
        let (a, name) = answer(&notify, "shellcage");
        assert_eq!((rcode(&a.unwrap()), name), (dns::RCODE_NOTIMP, None));
        assert_eq!(answer(b"short", "shellcage"), (None, None));
        let mut response = query(3, "a.example", 1, 1);
        response[2] |= 0x80;
        assert_eq!(answer(&response, "shellcage"), (None, None));
        let mut two = query(4, "a.example", 1, 1);
        two[5] = 2;
        let (a, name) = answer(&two, "shellcage");
        assert_eq!((rcode(&a.unwrap()), name), (dns::RCODE_FORMERR, None));
        // A label with bytes that are not a host name: recorded escaped.
        let mut odd = query(5, "x.example", 1, 1);
        odd[13] = 0x1b;
        let (_, name) = answer(&odd, "shellcage");
        let name = name.unwrap();
        assert!(!name.chars().any(|c| c.is_control()), "{name:?}");
    }

    #[test]
    fn the_record_is_bounded_and_counts_everything() {
        let mut r = LookupRecord::default();
        for i in 0..1000 {
            r.add(&format!("n{}.example", i % 40));
        }
        r.add("n0.example");
        assert_eq!(r.total, 1001);
        assert_eq!(r.names.len(), MAX_NAMES);
        assert_eq!(r.names[0].count, 26);
        let s = r.summary();
        assert_eq!(s.blocked, 1001);
        assert_eq!(s.destinations.len(), MAX_NAMES);
        let listed: u64 = s.destinations.iter().map(|d| d.count).sum();
        assert_eq!(s.untracked, 1001 - listed);
        assert!(
            s.destinations
                .iter()
                .all(|d| d.via == Via::Dns && d.port.is_none())
        );
        // From the pipe: cut to the same bounds.
        let big = LookupRecord {
            total: 0,
            names: (0..100)
                .map(|i| NameCount {
                    name: format!("{i}{}", "é".repeat(300)),
                    count: 2,
                })
                .collect(),
        }
        .bounded();
        assert_eq!(big.names.len(), MAX_NAMES);
        assert!(big.names.iter().all(|n| n.name.len() <= 255));
        assert_eq!(big.total, 2 * MAX_NAMES as u64);
    }
}

//! One connection from the sandbox, explicit or transparent: read what it asks for, decide,
//! connect to the checked address, check the first bytes of the stream against the
//! authorised name, and relay.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::engine::{Kind, Shared, Upstream};
use super::host::Host;
use super::http::{self, Body, Chunked, Parsed, Request, Target};
use super::relay::Pair;
use super::sni::{self, Hello};
use super::sniff::{Class, classify};
use super::summary::Via;
use super::verdict::Reason;

/// How a read of the head or first bytes ended, when it did not succeed.
enum Failure {
    /// The client closed (or reset) before sending anything: nothing to record.
    Silent,
    Refused(Reason),
}

/// The client's connection and what was read from it but not yet forwarded.
struct Inbound {
    stream: TcpStream,
    buf: Vec<u8>,
    peer: Option<SocketAddr>,
}

impl Inbound {
    fn new(stream: TcpStream) -> Inbound {
        let peer = stream.peer_addr().ok();
        Inbound {
            stream,
            buf: Vec::new(),
            peer,
        }
    }

    /// Read more bytes before `deadline`; `what` names the wait in a timeout.
    fn read_more(&mut self, deadline: Instant, what: &str) -> Result<(), Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Refused(Reason::Timeout { what: what.into() }));
        }
        let _ = self
            .stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))));
        let mut chunk = [0u8; 8192];
        loop {
            return match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => Err(Failure::Silent),
                Ok(0) => Err(Failure::Refused(Reason::bad(
                    400,
                    format!("connection closed during the {what}"),
                ))),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    Err(Failure::Refused(Reason::Timeout { what: what.into() }))
                }
                Err(_) if self.buf.is_empty() => Err(Failure::Silent),
                Err(e) => Err(Failure::Refused(Reason::bad(400, format!("{what}: {e}")))),
            };
        }
    }

    /// Answer with the proxy's own response and close.
    fn reply(&mut self, status: u16, summary: &str, proxy_status: Option<&str>, line: &str) {
        let _ = self.stream.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = self
            .stream
            .write_all(&http::response(status, summary, proxy_status, line));
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    fn refuse(&mut self, reason: &Reason, host: &Host, port: u16) {
        let line = reason.refusal_line(host, port);
        let summary = format!("shellcage blocked {host}:{port}: {reason}");
        self.reply(
            reason.status(),
            &summary,
            Some(reason.proxy_status()),
            &line,
        );
    }
}

/// Read a request head within the head timeout and size limit.
fn read_head(
    inb: &mut Inbound,
    shared: &Shared,
    deadline: Instant,
) -> Result<(Request, usize), Failure> {
    let limits = &shared.limits;
    let mut scanned = 0;
    loop {
        let complete = match http::scan_head(&inb.buf, scanned) {
            Ok((end, next)) => {
                scanned = next;
                end.is_some()
            }
            Err(e) => return Err(Failure::Refused(Reason::bad(e.status, e.what))),
        };
        if complete || inb.buf.len() > limits.max_head_bytes {
            let end = inb.buf.len().min(limits.max_head_bytes);
            return match http::parse_request(&inb.buf[..end], limits.max_headers) {
                Ok(Parsed::Complete(req, n)) => Ok((req, n)),
                Ok(Parsed::Partial) => Err(Failure::Refused(Reason::bad(
                    431,
                    format!("request head over {} bytes", limits.max_head_bytes),
                ))),
                Err(e) => Err(Failure::Refused(Reason::bad(e.status, e.what))),
            };
        }
        inb.read_more(deadline, "request head")?;
    }
}

/// What the client sent first on a tunnel or transparent connection.
enum First {
    Tls(Option<Host>),
    Http(Box<Request>, usize),
    Other,
}

/// Read until the first bytes can be classified (and, for TLS and HTTP, parsed). The first
/// byte may take until `first_deadline` (None: the idle timeout); the rest must follow
/// within the head timeout. Ok(None): nothing arrived by `first_deadline`.
fn sniff(
    inb: &mut Inbound,
    shared: &Shared,
    first_deadline: Option<Instant>,
) -> Result<Option<First>, Failure> {
    let limits = &shared.limits;
    let mut head_deadline = None;
    loop {
        if !inb.buf.is_empty() && head_deadline.is_none() {
            head_deadline = Some(Instant::now() + limits.head_timeout);
        }
        let first = match classify(&inb.buf, limits.max_head_bytes) {
            Class::NeedMore => None,
            Class::Tls => match sni::parse_client_hello(&inb.buf, limits.max_head_bytes * 2) {
                Ok(Hello::Complete { sni, .. }) => Some(First::Tls(sni)),
                Ok(Hello::Partial) => None,
                Err(e) => return Err(Failure::Refused(Reason::bad(400, e.to_string()))),
            },
            Class::Http => match http::parse_request(&inb.buf, limits.max_headers) {
                Ok(Parsed::Complete(req, n)) => Some(First::Http(Box::new(req), n)),
                Ok(Parsed::Partial) if inb.buf.len() > limits.max_head_bytes => {
                    return Err(Failure::Refused(Reason::bad(431, "request head too large")));
                }
                Ok(Parsed::Partial) => None,
                Err(e) => return Err(Failure::Refused(Reason::bad(e.status, e.what))),
            },
            Class::Other => Some(First::Other),
            Class::Unclear => {
                return Err(Failure::Refused(Reason::bad(
                    400,
                    "a long first line of text without an end",
                )));
            }
        };
        if let Some(f) = first {
            return Ok(Some(f));
        }
        let (deadline, what) = match head_deadline {
            Some(d) => (d, "first bytes (TLS hello or request head)"),
            None => (
                first_deadline.unwrap_or_else(|| Instant::now() + limits.idle_timeout),
                "first bytes",
            ),
        };
        match inb.read_more(deadline, what) {
            Ok(()) => {}
            Err(Failure::Refused(Reason::Timeout { .. }))
                if head_deadline.is_none() && first_deadline.is_some() =>
            {
                return Ok(None);
            }
            Err(f) => return Err(f),
        }
    }
}

/// Do the first bytes agree with the authorised destination?
fn check_first(first: &First, expected: &Host, port: u16) -> Result<(), Reason> {
    match first {
        First::Tls(Some(sni)) if sni != expected => Err(Reason::SniMismatch {
            sni: sni.to_string(),
        }),
        First::Tls(_) | First::Other => Ok(()),
        First::Http(req, _) => check_http(req, expected, port),
    }
}

/// An HTTP request on a connection authorised for `expected:port`: its URL host (absolute
/// form) and Host header must name that destination.
fn check_http(req: &Request, expected: &Host, port: u16) -> Result<(), Reason> {
    let mismatch = |h: &Host, p: Option<u16>| match p {
        Some(p) => Reason::HostMismatch {
            host: format!("{h}:{p}"),
        },
        None => Reason::HostMismatch {
            host: h.to_string(),
        },
    };
    match &req.target {
        Target::Authority { .. } => {
            return Err(Reason::bad(
                400,
                "CONNECT inside a connection to a destination",
            ));
        }
        Target::Absolute { host, port: p, .. } if host != expected || *p != port => {
            return Err(mismatch(host, Some(*p)));
        }
        Target::Origin(_) | Target::Asterisk if req.host.is_none() && req.minor == 1 => {
            return Err(Reason::bad(400, "HTTP/1.1 request without a Host header"));
        }
        _ => {}
    }
    match &req.host {
        Some((h, p)) if h != expected || p.is_some_and(|p| p != port) => Err(mismatch(h, *p)),
        _ => Ok(()),
    }
}

/// The Host header value sent upstream.
fn host_value(host: &Host, port: u16) -> String {
    match port {
        80 => host.to_string(),
        p => format!("{host}:{p}"),
    }
}

/// An explicit-proxy connection: `CONNECT host:port` or `METHOD http://host/...`.
pub(crate) fn serve_explicit(shared: &Arc<Shared>, stream: TcpStream) {
    let mut inb = Inbound::new(stream);
    let deadline = Instant::now() + shared.limits.head_timeout;
    let (req, head_len) = match read_head(&mut inb, shared, deadline) {
        Ok(x) => x,
        Err(Failure::Silent) => return,
        Err(Failure::Refused(reason)) => {
            shared.record(
                Via::Explicit,
                "(unparsed request)",
                None,
                &reason,
                inb.peer,
                None,
            );
            let line = format!("shellcage: {reason}");
            inb.reply(reason.status(), &line, Some(reason.proxy_status()), &line);
            return;
        }
    };
    inb.buf.drain(..head_len);
    let (host, port) = match &req.target {
        Target::Authority { host, port } | Target::Absolute { host, port, .. } => {
            (host.clone(), *port)
        }
        Target::Origin(_) | Target::Asterisk => {
            let reason = Reason::bad(
                400,
                "not a proxy request (send CONNECT or an absolute http:// URL)",
            );
            shared.record(
                Via::Explicit,
                "(origin-form request)",
                None,
                &reason,
                inb.peer,
                None,
            );
            let line = format!("shellcage: {reason}");
            inb.reply(400, &line, Some(reason.proxy_status()), &line);
            return;
        }
    };
    let is_connect = matches!(req.target, Target::Authority { .. });
    if !is_connect {
        if let Err(reason) = check_http(&req, &host, port) {
            refuse(shared, &mut inb, Via::Explicit, &host, port, &reason, true);
            return;
        }
    }
    let up = match shared.open(&host, port) {
        Ok(up) => up,
        Err(reason) => {
            refuse(shared, &mut inb, Via::Explicit, &host, port, &reason, true);
            return;
        }
    };
    if is_connect {
        let _ = inb
            .stream
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        relay(shared, inb, up, Via::Explicit, host, port, None);
    } else {
        let first = First::Http(Box::new(req), 0);
        relay(shared, inb, up, Via::Explicit, host, port, Some(first));
    }
}

/// Record a refusal and tell the client (HTTP) or close (anything else).
fn refuse(
    shared: &Shared,
    inb: &mut Inbound,
    via: Via,
    host: &Host,
    port: u16,
    reason: &Reason,
    http: bool,
) {
    shared.record(via, &host.to_string(), Some(port), reason, inb.peer, None);
    if http {
        inb.refuse(reason, host, port);
    }
}

/// Connection-level refusal before any thread was started (limits).
pub(crate) fn refuse_at_accept(shared: &Shared, kind: Kind, stream: TcpStream, reason: &Reason) {
    let mut inb = Inbound::new(stream);
    let _ = inb.stream.set_nonblocking(true);
    let (via, host) = match kind {
        Kind::Explicit => (Via::Explicit, "(over a limit)".to_string()),
        _ => {
            let local = inb.stream.local_addr().ok();
            let name = local.and_then(|a| shared.name_for(a.ip()));
            (
                Via::Transparent,
                name.unwrap_or_else(|| "(over a limit)".into()),
            )
        }
    };
    shared.record(via, &host, None, reason, inb.peer, None);
    if kind == Kind::Explicit {
        let line = format!("shellcage: {reason}");
        let _ = inb.stream.write_all(&http::response(
            503,
            &line,
            Some(reason.proxy_status()),
            &line,
        ));
    }
}

/// A connection to an address of the reserved range: the name the resolver handed it out
/// for is the destination.
pub(crate) fn serve_transparent(shared: &Arc<Shared>, stream: TcpStream) {
    let mut inb = Inbound::new(stream);
    let Some(local) = inb.stream.local_addr().ok() else {
        return;
    };
    let port = local.port();
    let Some(name) = shared.name_for(local.ip()) else {
        let reason = Reason::UnmappedAddress { addr: local };
        shared.record(
            Via::Transparent,
            &local.ip().to_string(),
            Some(port),
            &reason,
            inb.peer,
            None,
        );
        return;
    };
    let host = Host::Name(name);
    let first = match sniff(
        &mut inb,
        shared,
        Some(Instant::now() + shared.limits.first_bytes_wait),
    ) {
        Ok(f) => f,
        Err(Failure::Silent) => return,
        Err(Failure::Refused(reason)) => {
            let http = matches!(
                classify(&inb.buf, shared.limits.max_head_bytes),
                Class::Http
            );
            refuse(
                shared,
                &mut inb,
                Via::Transparent,
                &host,
                port,
                &reason,
                http,
            );
            return;
        }
    };
    let speaks_http = matches!(first, Some(First::Http(..)));
    let checked = match &first {
        Some(f) => check_first(f, &host, port),
        None => Ok(()),
    };
    let up = checked.and_then(|()| shared.open(&host, port));
    match up {
        Ok(up) => relay(shared, inb, up, Via::Transparent, host, port, first),
        Err(reason) => refuse(
            shared,
            &mut inb,
            Via::Transparent,
            &host,
            port,
            &reason,
            speaks_http,
        ),
    }
}

/// Relay an allowed connection. With `first` known, it is forwarded now; otherwise the
/// first bytes are read, classified and checked on the request direction before any of
/// them is forwarded (the response direction already runs: the server may speak first).
fn relay(
    shared: &Arc<Shared>,
    mut inb: Inbound,
    up: Upstream,
    via: Via,
    host: Host,
    port: u16,
    first: Option<First>,
) {
    let Upstream {
        stream,
        addr,
        allowed,
    } = up;
    let peer = inb.peer;
    let client = match inb.stream.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    };
    let pair = match Pair::new(client, stream, shared.limits.idle_timeout) {
        Ok(p) => Arc::new(p),
        Err(_) => return,
    };
    shared.track(&pair, via, &host, port, &allowed);
    let host_text = host.to_string();
    let record_allowed = || shared.record(via, &host_text, Some(port), &allowed, peer, Some(addr));
    pair.run(|p| {
        let first = match first {
            Some(f) => f,
            None => match sniff(&mut inb, shared, None) {
                Ok(Some(f)) => f,
                Ok(None) | Err(Failure::Silent) => return Ok(()),
                Err(Failure::Refused(reason)) => {
                    let http = classify(&inb.buf, shared.limits.max_head_bytes) == Class::Http;
                    refuse(shared, &mut inb, via, &host, port, &reason, http);
                    return Err(io::Error::other("refused"));
                }
            },
        };
        if let Err(reason) = check_first(&first, &host, port) {
            let http = matches!(first, First::Http(..));
            refuse(shared, &mut inb, via, &host, port, &reason, http);
            return Err(io::Error::other("refused"));
        }
        record_allowed();
        forward(p, first, &inb.buf, &host, port)
    });
    shared.add_bytes(via, &host, port, &allowed, &pair);
}

/// Forward the checked first bytes, then the rest of the request direction.
fn forward(p: &Pair, first: First, buf: &[u8], host: &Host, port: u16) -> io::Result<()> {
    match first {
        First::Tls(_) | First::Other => {
            p.write_all(&p.upstream, buf)?;
            p.add_out(buf.len());
            p.pump(&p.client, &p.upstream, None, &p.bytes_out)
        }
        First::Http(req, head_len) => {
            p.close_client_after_response.store(true, Ordering::SeqCst);
            let head = req.forward_head(&host_value(host, port));
            p.write_all(&p.upstream, &head)?;
            p.add_out(head.len());
            forward_body(p, req.body, &buf[head_len..])?;
            p.drain_client()
        }
    }
}

/// Exactly one body, as framed by the head; nothing after it.
fn forward_body(p: &Pair, body: Body, already: &[u8]) -> io::Result<()> {
    match body {
        Body::Empty => Ok(()),
        Body::Length(n) => {
            let k = already.len().min(n as usize);
            p.write_all(&p.upstream, &already[..k])?;
            p.add_out(k);
            p.pump(&p.client, &p.upstream, Some(n - k as u64), &p.bytes_out)
        }
        Body::Chunked => {
            let mut chunked = Chunked::default();
            let bad = |e: http::HttpError| io::Error::new(io::ErrorKind::InvalidData, e.what);
            let k = chunked.feed(already).map_err(bad)?;
            p.write_all(&p.upstream, &already[..k])?;
            p.add_out(k);
            let mut buf = vec![0u8; 64 * 1024];
            while !chunked.is_done() {
                let n = p.read(&p.client, &mut buf)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "chunked body cut short",
                    ));
                }
                let k = chunked.feed(&buf[..n]).map_err(bad)?;
                p.write_all(&p.upstream, &buf[..k])?;
                p.add_out(k);
            }
            Ok(())
        }
    }
}

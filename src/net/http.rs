//! HTTP/1.x request heads as the proxy accepts them: strict where a lenient reading could
//! let one request be understood two ways (request smuggling, a second host behind an
//! allowed one), and re-serialised before forwarding, so the upstream only ever sees a
//! canonical head with `Connection: close` and exactly one body.
//!
//! Refused: bare CR or LF line endings, leading empty lines, obs-fold, invalid bytes in
//! names or values (httparse), more than one Host, Content-Length or Transfer-Encoding
//! header, both Content-Length and Transfer-Encoding, a Transfer-Encoding other than
//! `chunked`, Transfer-Encoding on HTTP/1.0, a body on GET/HEAD/CONNECT, non-ASCII or
//! `#` in the request target, userinfo, `%`, `\` or an empty port in an authority, a
//! scheme other than `http` in absolute form, and a Host header that disagrees with the
//! absolute URL.

use super::host::{Host, escape};
use super::rules::{parse_port, split_host_port};

/// A request the proxy will not handle: the HTTP status to answer and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct HttpError {
    pub status: u16,
    pub what: String,
}

fn bad(what: impl Into<String>) -> HttpError {
    HttpError {
        status: 400,
        what: what.into(),
    }
}

/// The request target, by form (RFC 9112 §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `CONNECT host:port`.
    Authority { host: Host, port: u16 },
    /// `GET http://host[:port]/path?q`; `path` is the origin form to forward.
    Absolute { host: Host, port: u16, path: String },
    /// `GET /path?q`.
    Origin(String),
    /// `OPTIONS *`.
    Asterisk,
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Empty,
    Length(u64),
    Chunked,
}

/// A validated request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The minor version: HTTP/1.0 or HTTP/1.1.
    pub minor: u8,
    pub target: Target,
    /// The Host header, parsed (host, optional port).
    pub host: Option<(Host, Option<u16>)>,
    pub body: Body,
    /// End-to-end headers to forward, in order (Host and hop-by-hop headers removed).
    headers: Vec<(String, Vec<u8>)>,
}

/// Result of parsing what has arrived so far.
#[derive(Debug)]
pub enum Parsed {
    /// The head is not complete yet.
    Partial,
    /// The head, and its length in bytes (the body starts there).
    Complete(Request, usize),
}

/// Headers that belong to one connection and are never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// Find the end of the head (`CRLF CRLF`), refusing bare CR, bare LF and NUL on the way.
fn head_end(buf: &[u8]) -> Result<Option<usize>, HttpError> {
    scan_head(buf, 0).map(|(end, _)| end)
}

/// [`head_end`] from `from` on (the bytes before it were scanned by an earlier call): the
/// end of the head if it is in `buf`, and where the next call should start, so a reader
/// checks each byte once however slowly the head arrives.
pub fn scan_head(buf: &[u8], from: usize) -> Result<(Option<usize>, usize), HttpError> {
    if buf.first().is_some_and(|&b| b == b'\r' || b == b'\n') {
        return Err(bad("empty line before the request line"));
    }
    for (i, &b) in buf.iter().enumerate().skip(from) {
        match b {
            b'\r' => match buf.get(i + 1) {
                Some(b'\n') => {}
                Some(_) => return Err(bad("bare CR in the request head")),
                None => return Ok((None, i)),
            },
            b'\n' => {
                if i == 0 || buf[i - 1] != b'\r' {
                    return Err(bad("bare LF in the request head"));
                }
                if i >= 3 && &buf[i - 3..=i] == b"\r\n\r\n" {
                    return Ok((Some(i + 1), i + 1));
                }
            }
            0 => return Err(bad("NUL byte in the request head")),
            _ => {}
        }
    }
    Ok((None, buf.len()))
}

/// Parse a request head. `max_headers` bounds the header count (431 beyond it); the
/// caller bounds the head's size.
pub fn parse_request(buf: &[u8], max_headers: usize) -> Result<Parsed, HttpError> {
    let Some(end) = head_end(buf)? else {
        return Ok(Parsed::Partial);
    };
    let mut storage = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut storage);
    match req.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(n)) if n == end => {}
        Ok(_) => return Err(bad("malformed request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError {
                status: 431,
                what: format!("more than {max_headers} header fields"),
            });
        }
        Err(e) => return Err(bad(format!("malformed request head ({e})"))),
    }
    let method = req.method.unwrap_or_default().to_string();
    let minor = req.version.unwrap_or(1);
    let target = parse_target(&method, req.path.unwrap_or_default())?;
    let mut fields = Fields::default();
    for h in req.headers.iter() {
        fields.add(h.name, h.value)?;
    }
    let body = fields.body(&method, minor)?;
    let host = match fields.host.take() {
        None => None,
        Some(v) => Some(parse_host_header(&v)?),
    };
    let headers = fields.end_to_end();
    Ok(Parsed::Complete(
        Request {
            method,
            minor,
            target,
            host,
            body,
            headers,
        },
        end,
    ))
}

/// Header fields collected while checking the framing rules.
#[derive(Default)]
struct Fields {
    all: Vec<(String, Vec<u8>)>,
    host: Option<Vec<u8>>,
    content_length: Option<u64>,
    chunked: bool,
    connection_tokens: Vec<String>,
}

impl Fields {
    fn add(&mut self, name: &str, value: &[u8]) -> Result<(), HttpError> {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "host" if self.host.replace(value.to_vec()).is_some() => {
                return Err(bad("more than one Host header"));
            }
            "content-length" => {
                if self.content_length.is_some() {
                    return Err(bad("more than one Content-Length header"));
                }
                self.content_length = Some(parse_content_length(value)?);
            }
            "transfer-encoding" => {
                if self.chunked {
                    return Err(bad("more than one Transfer-Encoding header"));
                }
                if !value.eq_ignore_ascii_case(b"chunked") {
                    return Err(bad(format!(
                        "Transfer-Encoding {} (only \"chunked\" is accepted)",
                        escape(value)
                    )));
                }
                self.chunked = true;
            }
            "connection" => {
                for token in String::from_utf8_lossy(value).split(',') {
                    self.connection_tokens
                        .push(token.trim().to_ascii_lowercase());
                }
            }
            _ => {}
        }
        self.all.push((name.to_string(), value.to_vec()));
        Ok(())
    }

    fn body(&self, method: &str, minor: u8) -> Result<Body, HttpError> {
        if self.chunked && self.content_length.is_some() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if self.chunked && minor == 0 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        let body = match (self.chunked, self.content_length) {
            (true, _) => Body::Chunked,
            (false, Some(0) | None) => Body::Empty,
            (false, Some(n)) => Body::Length(n),
        };
        if body != Body::Empty && matches!(method, "GET" | "HEAD" | "CONNECT") {
            return Err(bad(format!("a {method} request with a body")));
        }
        Ok(body)
    }

    fn end_to_end(self) -> Vec<(String, Vec<u8>)> {
        let tokens = self.connection_tokens;
        self.all
            .into_iter()
            .filter(|(name, _)| {
                let lower = name.to_ascii_lowercase();
                lower != "host" && !HOP_BY_HOP.contains(&lower.as_str()) && !tokens.contains(&lower)
            })
            .collect()
    }
}

fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad(format!(
            "Content-Length {} is not a number",
            escape(value)
        )));
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("Content-Length out of range"))
}

/// `host[:port]` from an authority (CONNECT target, absolute URL, Host header).
fn parse_authority(text: &str, what: &str) -> Result<(Host, Option<u16>), HttpError> {
    if text.contains('@') {
        return Err(bad(format!(
            "userinfo in the {what} {}",
            escape(text.as_bytes())
        )));
    }
    let (host, port) = split_host_port(text)
        .map_err(|why| bad(format!("{what} {}: {why}", escape(text.as_bytes()))))?;
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p).ok_or_else(|| {
            bad(format!(
                "{what} {}: port must be 1-65535",
                escape(text.as_bytes())
            ))
        })?),
    };
    let host = Host::parse(host).map_err(|e| bad(format!("{what}: {e}")))?;
    Ok((host, port))
}

fn parse_host_header(value: &[u8]) -> Result<(Host, Option<u16>), HttpError> {
    let text = std::str::from_utf8(value).map_err(|_| bad("Host header is not ASCII"))?;
    parse_authority(text, "Host header")
}

fn parse_target(method: &str, target: &str) -> Result<Target, HttpError> {
    if !target.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(bad("request target with a byte outside visible ASCII"));
    }
    if target.contains('#') {
        return Err(bad("request target with a fragment ('#')"));
    }
    if method == "CONNECT" {
        let (host, port) = parse_authority(target, "CONNECT target")?;
        let port = port.ok_or_else(|| bad("CONNECT target without a port"))?;
        return Ok(Target::Authority { host, port });
    }
    if target == "*" {
        return match method {
            "OPTIONS" => Ok(Target::Asterisk),
            _ => Err(bad("'*' target outside OPTIONS")),
        };
    }
    if target.starts_with('/') {
        return Ok(Target::Origin(target.to_string()));
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(bad("request target is neither a path nor an absolute URL"));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(bad("https URL in a plain request (use CONNECT for https)"));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(bad(format!(
            "scheme {} is not supported",
            escape(scheme.as_bytes())
        )));
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('%') || authority.contains('\\') {
        return Err(bad("'%' or '\\' in the URL's host"));
    }
    let (host, port) = parse_authority(authority, "URL host")?;
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok(Target::Absolute {
        host,
        port: port.unwrap_or(80),
        path,
    })
}

impl Request {
    /// The head to send upstream: origin-form target, `Host` first, end-to-end headers in
    /// their order, `Connection: close` last.
    pub fn forward_head(&self, host_value: &str) -> Vec<u8> {
        let target = match &self.target {
            Target::Absolute { path, .. } => path.as_str(),
            Target::Origin(p) => p.as_str(),
            Target::Asterisk => "*",
            Target::Authority { .. } => "/",
        };
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(
            format!("{} {target} HTTP/1.{}\r\n", self.method, self.minor).as_bytes(),
        );
        out.extend_from_slice(format!("Host: {host_value}\r\n").as_bytes());
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out
    }

    /// The end-to-end headers that will be forwarded.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }
}

/// An answer the proxy itself gives (a refusal, an error, the CONNECT reply), always
/// closing the connection. The reason phrase carries `summary` (clients such as pip show
/// it when a tunnel is refused); the body is `line` and a newline.
pub fn response(status: u16, summary: &str, proxy_status: Option<&str>, line: &str) -> Vec<u8> {
    let phrase: String = summary
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect();
    let mut out = format!("HTTP/1.1 {status} {phrase}\r\n");
    if let Some(error) = proxy_status {
        out.push_str(&format!("Proxy-Status: shellcage; error={error}\r\n"));
    }
    let body = format!("{line}\n");
    out.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    out.into_bytes()
}

/// Where a chunked body ends (RFC 9112 §7.1), checked strictly as it streams through:
/// hex sizes (at most 16 digits), extensions of visible characters, CRLF everywhere, a
/// bounded trailer section.
#[derive(Clone, Debug)]
pub struct Chunked {
    state: ChunkState,
    size: u64,
    digits: usize,
    line: usize,
    trailers: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

const CHUNK_LINE_MAX: usize = 4096;
const TRAILERS_MAX: usize = 32;

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: ChunkState::Size,
            size: 0,
            digits: 0,
            line: 0,
            trailers: 0,
        }
    }
}

impl Chunked {
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Check the next bytes of the body; returns how many belong to it (all of `buf`
    /// unless the body ends inside it).
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, HttpError> {
        let mut i = 0;
        while i < buf.len() && self.state != ChunkState::Done {
            if self.state == ChunkState::Data {
                let take = (buf.len() - i).min(self.size.min(usize::MAX as u64) as usize);
                self.size -= take as u64;
                i += take;
                if self.size == 0 {
                    self.state = ChunkState::DataCr;
                }
                continue;
            }
            self.step(buf[i])?;
            i += 1;
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        use ChunkState::*;
        self.line += 1;
        if self.line > CHUNK_LINE_MAX {
            return Err(bad("chunk line too long"));
        }
        let next = match (self.state, b) {
            (Size, b) if b.is_ascii_hexdigit() => {
                self.digits += 1;
                if self.digits > 16 {
                    return Err(bad("chunk size too large"));
                }
                self.size = self.size * 16 + (b as char).to_digit(16).unwrap_or(0) as u64;
                Size
            }
            (Size, b';') if self.digits > 0 => Ext,
            (Size, b'\r') if self.digits > 0 => SizeLf,
            (Ext, b'\r') => SizeLf,
            (Ext, b) if b == b'\t' || (0x20..=0x7e).contains(&b) => Ext,
            (SizeLf, b'\n') => {
                self.line = 0;
                self.digits = 0;
                match self.size {
                    0 => TrailerStart,
                    _ => Data,
                }
            }
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => {
                self.line = 0;
                Size
            }
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart, b) if is_tchar(b) => {
                self.trailers += 1;
                if self.trailers > TRAILERS_MAX {
                    return Err(bad("too many trailer fields"));
                }
                Trailer
            }
            (Trailer, b'\r') => TrailerLf,
            (Trailer, b) if b == b'\t' || b >= 0x20 && b != 0x7f => Trailer,
            (TrailerLf, b'\n') => {
                self.line = 0;
                TrailerStart
            }
            (EndLf, b'\n') => Done,
            _ => return Err(bad("malformed chunked body")),
        };
        self.state = next;
        Ok(())
    }
}

/// A `tchar` of RFC 9110 §5.6.2 (method names, header names).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Request, HttpError> {
        match parse_request(text.as_bytes(), 64)? {
            Parsed::Complete(r, n) => {
                assert_eq!(n, text.find("\r\n\r\n").unwrap() + 4);
                Ok(r)
            }
            Parsed::Partial => panic!("partial: {text:?}"),
        }
    }

    fn refused(text: &str, what: &str) {
        let err = parse(text).expect_err(text);
        assert!(err.what.contains(what), "{text:?}: {}", err.what);
    }

    #[test]
    fn connect_and_absolute_form() {
        let r =
            parse("CONNECT pkgs.example.org:443 HTTP/1.1\r\nHost: pkgs.example.org:443\r\n\r\n")
                .unwrap();
        assert_eq!(
            r.target,
            Target::Authority {
                host: Host::Name("pkgs.example.org".into()),
                port: 443
            }
        );
        let r = parse("CONNECT [::ffff:127.0.0.1]:443 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(
            r.target,
            Target::Authority {
                host: Host::Ip("::ffff:127.0.0.1".parse().unwrap()),
                port: 443
            }
        );
        let r = parse("CONNECT 0x7f.1:22 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(
            r.target,
            Target::Authority {
                host: Host::Ip("127.0.0.1".parse().unwrap()),
                port: 22
            }
        );
        let r = parse("GET http://A.Example:8080/x?y=1 HTTP/1.1\r\nHost: a.example:8080\r\nUser-Agent: t\r\n\r\n").unwrap();
        assert_eq!(
            r.target,
            Target::Absolute {
                host: Host::Name("a.example".into()),
                port: 8080,
                path: "/x?y=1".into()
            }
        );
        let r = parse("GET HTTP://a.example?q HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(
            r.target,
            Target::Absolute {
                host: Host::Name("a.example".into()),
                port: 80,
                path: "/?q".into()
            }
        );
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap().target,
            Target::Origin("/".into())
        );
        assert_eq!(
            parse("OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n")
                .unwrap()
                .target,
            Target::Asterisk
        );
    }

    #[test]
    fn partial_heads_wait_for_more() {
        for text in [
            "",
            "GET",
            "GET http://a.example/ HTTP/1.1\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n\r",
        ] {
            assert!(
                matches!(parse_request(text.as_bytes(), 64), Ok(Parsed::Partial)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn smuggling_and_ambiguity_are_refused() {
        let cases = [
            (
                "POST http://a.example/ HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                "both",
            ),
            (
                "POST http://a.example/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                "more than one Content-Length",
            ),
            (
                "POST http://a.example/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                "more than one Content-Length",
            ),
            (
                "POST http://a.example/ HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
                "not a number",
            ),
            (
                "POST http://a.example/ HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
                "not a number",
            ),
            (
                "POST http://a.example/ HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
                "not a number",
            ),
            (
                "POST http://a.example/ HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                "not a number",
            ),
            (
                "POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                "only \"chunked\"",
            ),
            (
                "POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
                "only \"chunked\"",
            ),
            (
                "POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                "more than one Transfer-Encoding",
            ),
            (
                "POST http://a.example/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.0",
            ),
            (
                "POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
                "malformed",
            ),
            (
                "POST http://a.example/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
                "malformed",
            ),
            (
                "GET http://a.example/ HTTP/1.1\r\nX: a\rb\r\n\r\n",
                "bare CR",
            ),
            (
                "GET http://a.example/ HTTP/1.1\nHost: a.example\r\n\r\n",
                "bare LF",
            ),
            ("\r\nGET http://a.example/ HTTP/1.1\r\n\r\n", "empty line"),
            (
                "GET http://a.example/ HTTP/1.1\r\nX\x01: a\r\n\r\n",
                "malformed",
            ),
            ("GET http://a.example/ HTTP/1.1\r\nX: a\x00\r\n\r\n", "NUL"),
            (
                "GET http://a.example/ HTTP/1.1\r\nX: a\x7f\r\n\r\n",
                "malformed",
            ),
            (
                "GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
                "more than one Host",
            ),
            (
                "GET http://a.example/ HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
                "GET request with a body",
            ),
            (
                "HEAD http://a.example/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HEAD request with a body",
            ),
            (
                "GET http://a.example@b.example/ HTTP/1.1\r\n\r\n",
                "userinfo",
            ),
            (
                "GET http://a.example:80@b.example/ HTTP/1.1\r\n\r\n",
                "userinfo",
            ),
            (
                "GET http://b.example#@a.example/ HTTP/1.1\r\n\r\n",
                "fragment",
            ),
            (
                "GET http://a.example\\@b.example/ HTTP/1.1\r\n\r\n",
                "'%' or '\\'",
            ),
            ("GET http://%61.example/ HTTP/1.1\r\n\r\n", "'%' or '\\'"),
            ("GET http://a.example:/ HTTP/1.1\r\n\r\n", "port must be"),
            ("GET http://a.example:0/ HTTP/1.1\r\n\r\n", "port must be"),
            (
                "GET http://a.example:80:80/ HTTP/1.1\r\n\r\n",
                "more than one ':'",
            ),
            ("GET http:///x HTTP/1.1\r\n\r\n", "empty host"),
            ("GET https://a.example/ HTTP/1.1\r\n\r\n", "use CONNECT"),
            ("GET ftp://a.example/ HTTP/1.1\r\n\r\n", "not supported"),
            ("GET a.example/ HTTP/1.1\r\n\r\n", "neither a path"),
            (
                "GET http://a.example/\u{e9} HTTP/1.1\r\n\r\n",
                "visible ASCII",
            ),
            ("GET * HTTP/1.1\r\n\r\n", "outside OPTIONS"),
            ("CONNECT a.example HTTP/1.1\r\n\r\n", "without a port"),
            ("CONNECT a.example:443/x HTTP/1.1\r\n\r\n", "port must be"),
            (
                "CONNECT http://a.example:443 HTTP/1.1\r\n\r\n",
                "CONNECT target",
            ),
            ("CONNECT ::1:443 HTTP/1.1\r\n\r\n", "more than one ':'"),
            ("CONNECT [fe80::1%25lo]:443 HTTP/1.1\r\n\r\n", "zone"),
            (
                "CONNECT a.example:443 HTTP/1.1\r\nContent-Length: 4\r\n\r\n",
                "CONNECT request with a body",
            ),
            (
                "GET http://a.example/ HTTP/1.1\r\nHost: a b\r\n\r\n",
                "Host header",
            ),
            ("GET http://a.example/ HTTP/2.0\r\n\r\n", "malformed"),
            ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "malformed"),
            ("GET  http://a.example/ HTTP/1.1\r\n\r\n", "malformed"),
            ("GET\thttp://a.example/ HTTP/1.1\r\n\r\n", "malformed"),
        ];
        for (text, what) in cases {
            refused(text, what);
        }
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut text = String::from("GET http://a.example/ HTTP/1.1\r\n");
        for i in 0..65 {
            text.push_str(&format!("X-{i}: v\r\n"));
        }
        text.push_str("\r\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.status, 431);
    }

    #[test]
    fn forwarded_head_is_canonical_and_closes() {
        let r = parse(concat!(
            "POST http://a.example:8080/up?x HTTP/1.1\r\n",
            "Host: a.example:8080\r\n",
            "Proxy-Connection: keep-alive\r\n",
            "Proxy-Authorization: Basic c2VjcmV0\r\n",
            "Connection: keep-alive, X-Secret\r\n",
            "X-Secret: 1\r\n",
            "Upgrade: h2c\r\n",
            "TE: trailers\r\n",
            "Content-Length: 4\r\n",
            "User-Agent: test\r\n\r\n"
        ))
        .unwrap();
        assert_eq!(r.body, Body::Length(4));
        assert_eq!(
            String::from_utf8(r.forward_head("a.example:8080")).unwrap(),
            "POST /up?x HTTP/1.1\r\nHost: a.example:8080\r\nContent-Length: 4\r\nUser-Agent: test\r\nConnection: close\r\n\r\n"
        );
        let r =
            parse("POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(r.body, Body::Chunked);
        assert_eq!(r.host, None);
    }

    #[test]
    fn chunked_bodies_end_where_they_should() {
        let body =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\nGET /smuggled HTTP/1.1\r\n";
        let mut c = Chunked::default();
        let n = c.feed(body).unwrap();
        assert!(c.is_done());
        assert_eq!(&body[n..], b"GET /smuggled HTTP/1.1\r\n");
        // Byte by byte, the same answer.
        let mut c = Chunked::default();
        let mut total = 0;
        for b in body.iter() {
            if c.is_done() {
                break;
            }
            total += c.feed(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(total, n);
        for bad_body in [
            &b"4\nWiki\r\n0\r\n\r\n"[..],
            b"4\r\nWikiX\r\n",
            b" 4\r\n",
            b"\r\n",
            b"-1\r\n",
            b"4 \r\nWiki\r\n",
            b"11111111111111111\r\n",
            b"0\r\nX-T: 1\n\r\n",
            b"0\r\n: x\r\n\r\n",
        ] {
            let mut c = Chunked::default();
            assert!(c.feed(bad_body).is_err(), "{}", escape(bad_body));
        }
        let mut c = Chunked::default();
        assert!(c.feed(&vec![b'a'; 5000]).is_err());
    }

    #[test]
    fn responses_are_single_line_and_closed() {
        let r = response(
            403,
            "blocked a.example:443\r\nX: y",
            Some("http_request_denied"),
            "shellcage: blocked",
        );
        let text = String::from_utf8(r).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 403 blocked a.example:443??X: y\r\n"),
            "{text}"
        );
        assert!(text.contains("Proxy-Status: shellcage; error=http_request_denied\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\nshellcage: blocked\n"));
    }
}

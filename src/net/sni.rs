//! The server name of a TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3), reassembled across
//! records: a client may split its hello into many small records, and a parser that only
//! looked at the first record would see no name and let anything through.

use super::host::{Host, escape};

/// Result of looking at what has arrived so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// The hello is not complete yet.
    Partial,
    /// The hello's server name (None if it sent none), and the bytes of the records that
    /// carried it.
    Complete { sni: Option<Host>, len: usize },
}

/// A ClientHello the proxy will not pass on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed TLS ClientHello: {0}")]
pub struct TlsError(pub String);

fn err<T>(what: impl Into<String>) -> Result<T, TlsError> {
    Err(TlsError(what.into()))
}

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const MAX_RECORD: usize = 1 << 14;
const EXT_SERVER_NAME: u16 = 0;

/// Parse the ClientHello at the start of `buf` (bounded by `max` bytes of handshake).
pub fn parse_client_hello(buf: &[u8], max: usize) -> Result<Hello, TlsError> {
    let mut handshake = Vec::new();
    let mut pos = 0;
    loop {
        if handshake.len() >= 4 {
            let len = u32::from_be_bytes([0, handshake[1], handshake[2], handshake[3]]) as usize;
            if handshake[0] != HANDSHAKE_CLIENT_HELLO {
                return err("first handshake message is not a ClientHello");
            }
            if len > max {
                return err(format!(
                    "ClientHello of {len} bytes is over the {max}-byte limit"
                ));
            }
            if handshake.len() >= 4 + len {
                let sni = server_name(&handshake[4..4 + len])?;
                return Ok(Hello::Complete { sni, len: pos });
            }
        }
        let Some(header) = buf.get(pos..pos + 5) else {
            return Ok(Hello::Partial);
        };
        if header[0] != RECORD_HANDSHAKE {
            return err(format!(
                "record type {} before the hello was complete",
                header[0]
            ));
        }
        if header[1] != 3 {
            return err("record version is not 3.x");
        }
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        if len == 0 || len > MAX_RECORD {
            return err(format!("record length {len}"));
        }
        let Some(fragment) = buf.get(pos + 5..pos + 5 + len) else {
            return Ok(Hello::Partial);
        };
        handshake.extend_from_slice(fragment);
        pos += 5 + len;
    }
}

/// A cursor over the hello body; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], TlsError> {
        if self.buf.len() < n {
            return err(format!("truncated {what}"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<usize, TlsError> {
        Ok(self.take(1, what)?[0] as usize)
    }

    fn u16(&mut self, what: &str) -> Result<usize, TlsError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }

    /// A vector with a `width`-byte length prefix.
    fn vec(&mut self, width: usize, what: &str) -> Result<&'a [u8], TlsError> {
        let n = match width {
            1 => self.u8(what)?,
            _ => self.u16(what)?,
        };
        self.take(n, what)
    }
}

fn server_name(body: &[u8]) -> Result<Option<Host>, TlsError> {
    let mut r = Reader { buf: body };
    r.take(2 + 32, "version and random")?;
    if r.vec(1, "session id")?.len() > 32 {
        return err("session id longer than 32 bytes");
    }
    let suites = r.vec(2, "cipher suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return err("cipher suite list");
    }
    if r.vec(1, "compression methods")?.is_empty() {
        return err("no compression method");
    }
    if r.buf.is_empty() {
        return Ok(None);
    }
    let mut exts = Reader {
        buf: r.vec(2, "extensions")?,
    };
    if !r.buf.is_empty() {
        return err("bytes after the extensions");
    }
    let mut seen = Vec::new();
    let mut sni = None;
    while !exts.buf.is_empty() {
        let kind = exts.u16("extension type")? as u16;
        let data = exts.vec(2, "extension")?;
        if seen.contains(&kind) {
            return err(format!("extension {kind} appears twice"));
        }
        seen.push(kind);
        if kind == EXT_SERVER_NAME {
            sni = Some(parse_server_name_list(data)?);
        }
    }
    Ok(sni)
}

fn parse_server_name_list(data: &[u8]) -> Result<Host, TlsError> {
    let mut r = Reader { buf: data };
    let mut list = Reader {
        buf: r.vec(2, "server name list")?,
    };
    if !r.buf.is_empty() {
        return err("bytes after the server name list");
    }
    let kind = list.u8("server name type")?;
    let name = list.vec(2, "server name")?;
    if kind != 0 {
        return err(format!("server name type {kind}"));
    }
    if !list.buf.is_empty() {
        return err("more than one server name");
    }
    let text =
        std::str::from_utf8(name).map_err(|_| TlsError(format!("server name {}", escape(name))))?;
    Host::parse(text).map_err(|e| TlsError(format!("server name: {e}")))
}

/// Build a ClientHello with the given extensions (for tests, the fuzz corpus and the
/// integration tests' raw clients).
pub fn client_hello_for_tests(sni: Option<&str>, extra_ext: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let mut entry = vec![0u8];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&entry);
        exts.extend_from_slice(&EXT_SERVER_NAME.to_be_bytes());
        exts.extend_from_slice(&(list.len() as u16).to_be_bytes());
        exts.extend_from_slice(&list);
    }
    for (kind, data) in extra_ext {
        exts.extend_from_slice(&kind.to_be_bytes());
        exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
        exts.extend_from_slice(data);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![HANDSHAKE_CLIENT_HELLO];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![RECORD_HANDSHAKE, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// Split a single-record hello into records of at most `size` bytes of handshake each.
pub fn fragment_for_tests(record: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in record[5..].chunks(size) {
        out.extend_from_slice(&[RECORD_HANDSHAKE, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sni_of(buf: &[u8]) -> Result<Hello, TlsError> {
        parse_client_hello(buf, 1 << 16)
    }

    #[test]
    fn server_name_is_found_whole_and_fragmented() {
        let hello = client_hello_for_tests(Some("Pkgs.Example.org"), &[(43, vec![2, 3, 4])]);
        let want = Hello::Complete {
            sni: Some(Host::Name("pkgs.example.org".into())),
            len: hello.len(),
        };
        assert_eq!(sni_of(&hello).unwrap(), want);
        let mut with_more = hello.clone();
        with_more.extend_from_slice(b"\x17\x03\x03");
        assert_eq!(sni_of(&with_more).unwrap(), want);
        let frag = fragment_for_tests(&hello, 1);
        let got = sni_of(&frag).unwrap();
        assert_eq!(
            got,
            Hello::Complete {
                sni: Some(Host::Name("pkgs.example.org".into())),
                len: frag.len()
            }
        );
        for n in 0..frag.len() {
            assert_eq!(sni_of(&frag[..n]).unwrap(), Hello::Partial, "prefix {n}");
        }
    }

    #[test]
    fn no_server_name_is_none() {
        let hello = client_hello_for_tests(None, &[]);
        assert_eq!(
            sni_of(&hello).unwrap(),
            Hello::Complete {
                sni: None,
                len: hello.len()
            }
        );
    }

    #[test]
    fn ambiguous_or_broken_hellos_are_refused() {
        let two_sni = client_hello_for_tests(
            Some("a.example"),
            &[(0, {
                let mut v = vec![0, 12, 0, 0, 9];
                v.extend_from_slice(b"b.example");
                v
            })],
        );
        assert!(sni_of(&two_sni).unwrap_err().0.contains("twice"));
        let mut two_names = vec![0u8, 24, 0, 0, 9];
        two_names.extend_from_slice(b"a.example");
        two_names.extend_from_slice(&[0, 0, 9]);
        two_names.extend_from_slice(b"b.example");
        let mut hello = client_hello_for_tests(None, &[(0, two_names)]);
        assert!(sni_of(&hello).unwrap_err().0.contains("more than one"));
        hello = client_hello_for_tests(Some("a\x1b.example"), &[]);
        assert!(sni_of(&hello).is_err());
        hello = client_hello_for_tests(Some(""), &[]);
        assert!(sni_of(&hello).is_err());
        let mut bad = client_hello_for_tests(Some("a.example"), &[]);
        bad[5] = 2; // ServerHello
        assert!(sni_of(&bad).is_err());
        let mut alert = client_hello_for_tests(Some("a.example"), &[]);
        alert[0] = 21;
        assert!(sni_of(&alert).is_err());
        let mut long = client_hello_for_tests(Some("a.example"), &[]);
        long[3] = 0x40;
        long[4] = 0x01;
        assert!(sni_of(&long).is_err());
        let big = client_hello_for_tests(Some("a.example"), &[(21, vec![0; 5000])]);
        assert!(parse_client_hello(&fragment_for_tests(&big, 1000), 4096).is_err());
    }
}

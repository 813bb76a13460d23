//! What a client sends first on a tunnel or a transparent connection: a TLS ClientHello
//! (its server name is checked), an HTTP request (its host is checked and it is handled
//! as one request), or another protocol (relayed as is to the authorised destination).
//!
//! The decision must not be fooled into "another protocol" by an HTTP request that a
//! lenient server would still accept (a tab instead of a space, a lower-case method, a
//! request line split over many segments, UTF-8 in the path): "other" needs strong
//! evidence, a first byte that cannot start a request line, a control byte no HTTP server
//! accepts, or a complete first line without `HTTP/`. Anything else waits for more bytes,
//! and a long printable line without an end is refused.

use super::http::is_tchar;

/// The class of the first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    NeedMore,
    Tls,
    Http,
    Other,
    /// A long first line of text without an end: refused rather than guessed.
    Unclear,
}

/// Classify the bytes received so far; `max_line` bounds the first line.
pub fn classify(buf: &[u8], max_line: usize) -> Class {
    let Some(&first) = buf.first() else {
        return Class::NeedMore;
    };
    if first == 0x16 {
        return Class::Tls;
    }
    if !is_tchar(first) {
        return Class::Other;
    }
    for (i, &b) in buf.iter().enumerate().take(max_line) {
        match b {
            b'\n' => {
                return match contains_http_version(&buf[..i]) {
                    true => Class::Http,
                    false => Class::Other,
                };
            }
            // C0 controls that no request line may hold (tab, VT, FF and CR may be read
            // as whitespace by lenient servers, so they prove nothing), and
            // DEL. After an `HTTP/` it is a broken request, refused rather than relayed.
            0x00..=0x08 | 0x0e..=0x1f | 0x7f => {
                return match contains_http_version(&buf[..i]) {
                    true => Class::Unclear,
                    false => Class::Other,
                };
            }
            _ => {}
        }
    }
    if buf.len() >= max_line {
        Class::Unclear
    } else {
        Class::NeedMore
    }
}

fn contains_http_version(line: &[u8]) -> bool {
    line.windows(5).any(|w| w.eq_ignore_ascii_case(b"HTTP/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let cases: &[(&[u8], Class)] = &[
            (b"", Class::NeedMore),
            (b"\x16\x03\x01", Class::Tls),
            (b"GET / HTTP/1.1\r\n", Class::Http),
            (b"get / http/1.1\r\n", Class::Http),
            (b"GET\t/\tHTTP/1.1\r\n", Class::Http),
            (b"GET\x0b/\x0bHTTP/1.1\n", Class::Http),
            (b"GET /\xc3\xa9 HTTP/1.1\r\n", Class::Http),
            (b"GET /", Class::NeedMore),
            (b"GET /\xc3\xa9", Class::NeedMore),
            (b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", Class::Other),
            (b"SSH-2.0-OpenSSH_9.2p1", Class::NeedMore),
            (b"AMQP\x00\x00\x09\x01", Class::Other),
            (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", Class::Other),
            (b"*1\r\n$4\r\nPING\r\n", Class::Other),
            (b"\x80\x2e\x01\x00\x02", Class::Other),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Class::Http),
            (b"GET / HTTP/1.1\x00", Class::Unclear),
            (b"GET\x00/ HTTP/1.1\r\n", Class::Other),
        ];
        for (buf, want) in cases {
            assert_eq!(classify(buf, 64), *want, "{}", String::from_utf8_lossy(buf));
        }
        assert_eq!(classify(&[b'a'; 64], 64), Class::Unclear);
        assert_eq!(classify(&[b'a'; 63], 64), Class::NeedMore);
    }
}

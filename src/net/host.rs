//! Destination hosts as the sandbox writes them: a host name (normalised: lower case, one
//! trailing dot removed, ASCII letters, digits, `-` and `_` only) or an IP literal in any
//! notation libc's `inet_aton` accepts (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`) or a
//! bracketed IPv6 address (`[::ffff:127.0.0.1]`). Parsing literals the way libc does
//! matters: a name that *looks* like a name to us but like an address to `getaddrinfo`
//! would otherwise dodge the address rules.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A destination host.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// A normalised host name.
    Name(String),
    /// An IP literal, whatever notation it was written in.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    /// Names as they are, IPv6 in brackets (so `HOST:PORT` stays unambiguous).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
        }
    }
}

/// A host that is neither a valid name nor an IP literal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host {shown}: {why}")]
pub struct HostError {
    /// The host as written, escaped for printing.
    pub shown: String,
    pub why: &'static str,
}

/// Quote text that came from the sandbox so that it cannot carry terminal escapes or line
/// breaks into a log, an error or the exit line (at most 100 characters are kept).
pub fn escape(text: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in text.iter().take(100) {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    if text.len() > 100 {
        out.push_str("...");
    }
    out.push('"');
    out
}

fn host_error(text: &str, why: &'static str) -> HostError {
    HostError {
        shown: escape(text.as_bytes()),
        why,
    }
}

impl Host {
    /// Parse a host as it appears in an authority (`[v6]` bracketed), a `Host` header, an
    /// SNI or a DNS question.
    pub fn parse(text: &str) -> Result<Host, HostError> {
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| host_error(text, "unterminated '['"))?;
            if inner.contains('%') {
                return Err(host_error(text, "IPv6 zone identifiers are not allowed"));
            }
            return inner
                .parse::<Ipv6Addr>()
                .map(|a| Host::Ip(IpAddr::V6(a)))
                .map_err(|_| host_error(text, "not an IPv6 address"));
        }
        if text.contains(':') {
            return Err(host_error(
                text,
                "an IPv6 address must be written in brackets",
            ));
        }
        if !text.is_ascii() {
            return Err(host_error(
                text,
                "not an ASCII host name (write an international name in its xn-- form)",
            ));
        }
        let name = text.strip_suffix('.').unwrap_or(text);
        if let Some(v4) = parse_inet_aton(name) {
            return Ok(Host::Ip(IpAddr::V4(v4)));
        }
        normalise_name(name)
            .map(Host::Name)
            .map_err(|why| host_error(text, why))
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Host::Name(n) => Some(n),
            Host::Ip(_) => None,
        }
    }
}

/// Check and lower-case a host name (already without its trailing dot).
fn normalise_name(name: &str) -> Result<String, &'static str> {
    if name.is_empty() {
        return Err("empty host name");
    }
    if name.len() > 253 {
        return Err("host name longer than 253 characters");
    }
    let name = name.to_ascii_lowercase();
    let mut last = "";
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row, or a leading dot)");
        }
        if label.len() > 63 {
            return Err("label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err("only letters, digits, '-' and '_' are allowed in a host name");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label may not start or end with '-'");
        }
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) || looks_numeric(last) {
        // `1.2.3.4.5` or `256.1.1.1`: not an address inet_aton accepts, and no top-level
        // domain is numeric; a resolver could still read it as one.
        return Err("numeric top-level label (not a valid IP address either)");
    }
    Ok(name)
}

/// `0x1f`-style labels: a resolver library might read them as numbers.
fn looks_numeric(label: &str) -> bool {
    label
        .strip_prefix("0x")
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// IPv4 in any notation glibc's `inet_aton` accepts: one to four parts separated by dots,
/// each decimal, octal (leading `0`) or hexadecimal (`0x`); the last part fills the
/// remaining bytes (`a` = 32 bits, `a.b` = 8+24, `a.b.c` = 8+8+16). No signs, no spaces, no
/// empty parts, no trailing dot (the caller strips one, as a resolver would).
pub fn parse_inet_aton(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(4);
    for part in &parts {
        values.push(parse_c_number(part)?);
    }
    let (last, init) = values.split_last()?;
    let mut addr: u32 = 0;
    for (i, &v) in init.iter().enumerate() {
        if v > 0xff {
            return None;
        }
        addr |= (v as u32) << (24 - 8 * i);
    }
    let bits = 32 - 8 * init.len() as u32;
    let max: u64 = if bits == 32 {
        u32::MAX as u64
    } else {
        (1u64 << bits) - 1
    };
    if *last > max {
        return None;
    }
    Some(Ipv4Addr::from(addr | *last as u32))
}

/// One part of an `inet_aton` address, as C's `strtoul(part, _, 0)` reads it, with the
/// whole part consumed and the value at most 2^32 - 1.
fn parse_c_number(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(h) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (h, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        // "0x" alone: strtoul reads the "0" and stops at the "x", so inet_aton fails;
        // "" (an empty part) fails too.
        return None;
    }
    let mut value: u64 = 0;
    for b in digits.bytes() {
        let d = (b as char).to_digit(radix)? as u64;
        value = value * radix as u64 + d;
        if value > u32::MAX as u64 {
            return None;
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Option<String> {
        parse_inet_aton(s).map(|a| a.to_string())
    }

    #[test]
    fn inet_aton_notations() {
        let cases = [
            ("127.0.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0X7F000001", "127.0.0.1"),
            ("017700000001", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("0177.0000.0000.0001", "127.0.0.1"),
            ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
            ("0xa9fea9fe", "169.254.169.254"),
            ("2852039166", "169.254.169.254"),
            ("0251.0376.0251.0376", "169.254.169.254"),
            ("169.254.43518", "169.254.169.254"),
            ("169.16689662", "169.254.169.254"),
            ("0", "0.0.0.0"),
            ("00", "0.0.0.0"),
            ("4294967295", "255.255.255.255"),
            ("10.0.0.0x5", "10.0.0.5"),
            ("0x0000000000007f.1", "127.0.0.1"),
        ];
        for (text, want) in cases {
            assert_eq!(v4(text).as_deref(), Some(want), "{text}");
        }
    }

    #[test]
    fn inet_aton_rejects_what_libc_rejects() {
        for text in [
            "",
            ".",
            "1.",
            ".1",
            "1..1",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.256.1.1",
            "1.2.65536",
            "1.16777216",
            "4294967296",
            "0x",
            "0x.1",
            "08",
            "09.1.1.1",
            "0x1g",
            "1.2.3.4 ",
            " 1",
            "+1",
            "-1",
            "1e3",
            "0x100000000",
            "1.2.3.0x100",
        ] {
            assert_eq!(v4(text), None, "{text:?}");
        }
    }

    proptest::proptest! {
        /// Same answer as glibc on strings of digits, hex letters, `x` and dots (libc also
        /// accepts trailing whitespace, which no host can contain).
        #[test]
        fn inet_aton_agrees_with_libc(text in "[0-9a-fxX.]{0,24}") {
            proptest::prop_assert_eq!(parse_inet_aton(&text), crate::sys::libc_inet_aton(&text));
        }
    }

    #[test]
    fn hosts_parse_to_names_or_addresses() {
        let ip = |s: &str| Host::Ip(s.parse().unwrap());
        let name = |s: &str| Host::Name(s.to_string());
        let cases = [
            ("Pkgs.Example.ORG", name("pkgs.example.org")),
            ("pkgs.example.org.", name("pkgs.example.org")),
            ("_acme.example.org", name("_acme.example.org")),
            ("localhost", name("localhost")),
            ("a-b.example", name("a-b.example")),
            ("1e100.example", name("1e100.example")),
            ("127.0.0.1.", ip("127.0.0.1")),
            ("0x7f.1", ip("127.0.0.1")),
            ("2130706433", ip("127.0.0.1")),
            ("[::1]", ip("::1")),
            ("[::ffff:127.0.0.1]", ip("::ffff:127.0.0.1")),
            ("[0:0:0:0:0:ffff:7f00:1]", ip("::ffff:127.0.0.1")),
        ];
        for (text, want) in cases {
            assert_eq!(Host::parse(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn bad_hosts_are_refused_with_a_reason() {
        for text in [
            "",
            ".",
            "a..example",
            ".a.example",
            "a.example..",
            "-a.example",
            "a-.example",
            "a b.example",
            "a\\b.example",
            "a%2e.example",
            "a@b.example",
            "1.2.3.4.5",
            "256.1.1.1",
            "a.0x10",
            "a.123",
            "::1",
            "[::1",
            "[fe80::1%25lo]",
            "[fe80::1%lo]",
            "[v1.x]",
            "ex\u{e4}mple.org",
            "allowed\u{3002}example",
            "a/b",
            "a\0b",
            "a\r\nb",
        ] {
            assert!(Host::parse(text).is_err(), "{text:?} must be refused");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(Host::parse(&long).is_err());
        let err = Host::parse("\x1b[2Jevil").unwrap_err();
        assert!(!err.to_string().contains('\x1b'), "{err}");
    }

    #[test]
    fn hosts_display_unambiguously() {
        assert_eq!(Host::parse("[::1]").unwrap().to_string(), "[::1]");
        assert_eq!(Host::parse("0x7f.1").unwrap().to_string(), "127.0.0.1");
    }

    #[test]
    fn escape_keeps_text_printable() {
        assert_eq!(escape(b"a\x1b[2J\"\n"), "\"a\\x1b[2J\\\"\\x0a\"");
        assert!(escape(&[b'a'; 300]).ends_with("...\""));
    }
}

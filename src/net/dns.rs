//! The resolver served inside the sandbox: DNS messages (RFC 1035) for one question, and
//! the map from allowed names to addresses of the reserved range. It answers from that map
//! only and never forwards a question anywhere, so DNS is no way out either.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::addr::Cidr;
use super::host::{Host, escape};

pub const TYPE_A: u16 = 1;
pub const CLASS_IN: u16 = 1;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;
pub const RCODE_REFUSED: u8 = 5;

/// A question as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    flags: u16,
    pub opcode: u8,
    /// The question section as received (echoed back, case included).
    question: Vec<u8>,
    /// The name as a host name; Err(escaped text) when it is not one.
    pub name: Result<String, String>,
    pub qtype: u16,
    pub qclass: u16,
}

/// What to do with a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A query with one question.
    Query(Query),
    /// Malformed but with a readable id: answer FORMERR.
    FormErr { id: u16, flags: u16 },
    /// Not a query (a response, or under 12 bytes): drop it silently.
    Drop,
}

pub fn parse(msg: &[u8]) -> Parsed {
    if msg.len() < 12 {
        return Parsed::Drop;
    }
    let word = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
    let (id, flags) = (word(0), word(2));
    if flags & 0x8000 != 0 {
        return Parsed::Drop;
    }
    let formerr = Parsed::FormErr { id, flags };
    if word(4) != 1 || word(6) != 0 || word(8) != 0 {
        return formerr;
    }
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let Some(&len) = msg.get(pos) else {
            return formerr;
        };
        pos += 1;
        if len == 0 {
            break;
        }
        // No compression pointers (0xC0) or extended label types in a question.
        if len > 63 || pos + len as usize > msg.len() || pos > 12 + 255 {
            return formerr;
        }
        labels.push(&msg[pos..pos + len as usize]);
        pos += len as usize;
    }
    let Some(tail) = msg.get(pos..pos + 4) else {
        return formerr;
    };
    let qtype = u16::from_be_bytes([tail[0], tail[1]]);
    let qclass = u16::from_be_bytes([tail[2], tail[3]]);
    let question = msg[12..pos + 4].to_vec();
    Parsed::Query(Query {
        id,
        flags,
        opcode: ((flags >> 11) & 0xf) as u8,
        question,
        name: name_of(&labels),
        qtype,
        qclass,
    })
}

fn name_of(labels: &[&[u8]]) -> Result<String, String> {
    let joined = labels.join(&b'.');
    let text = std::str::from_utf8(&joined).map_err(|_| escape(&joined))?;
    if labels.iter().any(|l| l.contains(&b'.')) {
        return Err(escape(&joined));
    }
    match Host::parse(text) {
        Ok(Host::Name(n)) => Ok(n),
        _ => Err(escape(&joined)),
    }
}

/// The header of an answer to a query with these flags.
fn header(id: u16, flags: u16, rcode: u8, qd: u16, an: u16) -> Vec<u8> {
    // QR, the opcode and RD copied, AA and RA set.
    let out_flags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode as u16;
    let mut out = Vec::with_capacity(64);
    for w in [id, out_flags, qd, an, 0, 0] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    out
}

/// An answer with `rcode` and, for an A question, the address.
pub fn answer(q: &Query, rcode: u8, a: Option<(Ipv4Addr, u32)>) -> Vec<u8> {
    let mut out = header(q.id, q.flags, rcode, 1, a.is_some() as u16);
    out.extend_from_slice(&q.question);
    if let Some((addr, ttl)) = a {
        // Name: a pointer to the question's name at offset 12.
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&addr.octets());
    }
    out
}

pub fn formerr(id: u16, flags: u16) -> Vec<u8> {
    header(id, flags, RCODE_FORMERR, 0, 0)
}

/// Allowed names and the reserved addresses handed out for them, both ways. An address,
/// once handed out, keeps its name for the run.
#[derive(Debug)]
pub struct NameMap {
    by_name: HashMap<String, Ipv4Addr>,
    by_addr: HashMap<Ipv4Addr, String>,
    range: Cidr,
    next: u32,
    max: usize,
}

impl NameMap {
    /// `range` must be an IPv4 block (the engine's default is 198.18.0.0/15).
    pub fn new(range: Cidr, max: usize) -> NameMap {
        let first = match range.addr() {
            std::net::IpAddr::V4(a) => u32::from(a),
            std::net::IpAddr::V6(_) => 0,
        };
        NameMap {
            by_name: HashMap::new(),
            by_addr: HashMap::new(),
            range,
            next: first,
            max,
        }
    }

    /// The address for `name`, handing out the next free one (none ending in .0 or .255)
    /// the first time; None when the map is full.
    /// How many names have an address.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn address_for(&mut self, name: &str) -> Option<Ipv4Addr> {
        if let Some(a) = self.by_name.get(name) {
            return Some(*a);
        }
        if self.by_name.len() >= self.max {
            return None;
        }
        loop {
            let candidate = Ipv4Addr::from(self.next);
            if !self.range.contains(candidate.into()) {
                return None;
            }
            self.next = self.next.checked_add(1)?;
            let last = candidate.octets()[3];
            if last == 0 || last == 255 {
                continue;
            }
            self.by_name.insert(name.to_string(), candidate);
            self.by_addr.insert(candidate, name.to_string());
            return Some(candidate);
        }
    }

    pub fn name_for(&self, addr: Ipv4Addr) -> Option<&str> {
        self.by_addr.get(&addr).map(String::as_str)
    }
}

/// A query message (for tests, the fuzz corpus and raw clients).
pub fn query_for_tests(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    query_in_class(id, name, qtype, CLASS_IN)
}

/// [`query_for_tests`] in any class (tests of the answers to other classes).
pub fn query_in_class(id: u16, name: &str, qtype: u16, qclass: u16) -> Vec<u8> {
    let mut out = Vec::new();
    for w in [id, 0x0100, 1, 0, 0, 0] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&qclass.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(msg: &[u8]) -> Query {
        match parse(msg) {
            Parsed::Query(q) => q,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_question_and_its_answer() {
        let msg = query_for_tests(0x1234, "Pkgs.Example.org", TYPE_A);
        let q = query(&msg);
        assert_eq!(q.name.as_deref(), Ok("pkgs.example.org"));
        assert_eq!((q.qtype, q.qclass, q.opcode), (TYPE_A, CLASS_IN, 0));
        let ans = answer(&q, 0, Some((Ipv4Addr::new(198, 18, 0, 1), 60)));
        assert_eq!(&ans[..2], &[0x12, 0x34]);
        assert_eq!(ans[2] & 0x80, 0x80, "QR");
        assert_eq!(ans[2] & 0x01, 0x01, "RD copied");
        assert_eq!(ans[3] & 0x0f, 0, "NOERROR");
        assert_eq!(&ans[6..8], &[0, 1], "one answer");
        assert_eq!(
            &ans[12..msg.len()],
            &msg[12..],
            "question echoed with its case"
        );
        assert_eq!(&ans[ans.len() - 4..], &[198, 18, 0, 1]);
        let nx = answer(&q, RCODE_NXDOMAIN, None);
        assert_eq!(nx[3] & 0x0f, RCODE_NXDOMAIN);
        assert_eq!(&nx[6..8], &[0, 0]);
    }

    #[test]
    fn malformed_messages() {
        assert_eq!(parse(b"short"), Parsed::Drop);
        let mut response = query_for_tests(1, "a.example", TYPE_A);
        response[2] |= 0x80;
        assert_eq!(parse(&response), Parsed::Drop);
        let mut two = query_for_tests(1, "a.example", TYPE_A);
        two[5] = 2;
        assert!(matches!(parse(&two), Parsed::FormErr { id: 1, .. }));
        let mut pointer = query_for_tests(1, "a.example", TYPE_A);
        pointer[12] = 0xc0;
        assert!(matches!(parse(&pointer), Parsed::FormErr { .. }));
        let truncated = &query_for_tests(1, "a.example", TYPE_A)[..20];
        assert!(matches!(parse(truncated), Parsed::FormErr { .. }));
        let odd = query(&query_for_tests(1, "a\u{1b}b.example", TYPE_A));
        assert!(odd.name.is_err());
        let mut dotted = query_for_tests(1, "ab.example", TYPE_A);
        dotted[13] = b'.';
        assert!(
            query(&dotted).name.is_err(),
            "a '.' inside a label is not a host name"
        );
        let literal = query(&query_for_tests(1, "127.0.0.1", TYPE_A));
        assert!(literal.name.is_err());
        assert_eq!(formerr(7, 0x0100)[3] & 0x0f, RCODE_FORMERR);
    }

    #[test]
    fn name_map_is_stable_bounded_and_skips_edges() {
        let mut m = NameMap::new(Cidr::v4(198, 18, 0, 0, 15), 300);
        let a = m.address_for("a.example").unwrap();
        assert_eq!(a, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(m.address_for("a.example"), Some(a));
        assert_eq!(m.name_for(a), Some("a.example"));
        let mut last = a;
        for i in 0..299 {
            last = m.address_for(&format!("h{i}.example")).unwrap();
            assert!(![0, 255].contains(&last.octets()[3]));
        }
        assert_eq!(last, Ipv4Addr::new(198, 18, 1, 46));
        assert_eq!(m.address_for("one-too-many.example"), None);
        let mut tiny = NameMap::new(Cidr::v4(198, 18, 0, 0, 31), 10);
        assert!(tiny.address_for("x.example").is_some());
        assert_eq!(tiny.address_for("y.example"), None);
    }
}

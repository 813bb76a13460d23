//! Which addresses the proxy may connect to: never loopback, private, shared (CGNAT),
//! link-local (cloud metadata), multicast, reserved, documentation or benchmark space, nor
//! any IPv6 form that embeds such an IPv4 address, unless `allow_private` names it.
//!
//! IPv6 is checked the other way round: only global unicast (`2000::/3`) may be a
//! destination, minus its special blocks; the two embedding forms that really reach an IPv4
//! host (IPv4-mapped and the NAT64 well-known prefix) and 6to4 are checked through the
//! IPv4 address they embed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address block, `ADDR/LEN` (the address is stored with its host bits cleared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// A CIDR block that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid address block {text:?}: {why} (expected ADDR/LEN such as 10.1.2.0/24 or fd00::/8)"
)]
pub struct CidrError {
    pub text: String,
    pub why: &'static str,
}

impl Cidr {
    pub const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Cidr {
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            len,
        }
    }

    const fn v6(segments: [u16; 8], len: u8) -> Cidr {
        let [a, b, c, d, e, f, g, h] = segments;
        Cidr {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            len,
        }
    }

    /// The block of one address (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Cidr {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, len }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Is `ip` inside this block? (An IPv4 block never contains an IPv6 address: embedded
    /// forms are unwrapped by the caller.)
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.len);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.len);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn mask32(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDR/LEN`, or a bare address meaning one host. Addresses use the standard notation
    /// only (no `0x7f.1` forms here: this is configuration, not input from the sandbox); host
    /// bits must be zero so `10.1.2.3/24` is not silently read as `10.1.2.0/24`.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let err = |why| CidrError {
            text: text.to_string(),
            why,
        };
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr_text = addr_text
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr_text);
        let addr: IpAddr = addr_text.parse().map_err(|_| err("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len_text {
            None => max,
            Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => l
                .parse::<u8>()
                .map_err(|_| err("prefix length out of range"))?,
            Some(_) => return Err(err("prefix length is not a number")),
        };
        if len > max {
            return Err(err("prefix length out of range"));
        }
        let cidr = Cidr { addr, len };
        if !cidr.contains(addr) || host_bits_set(addr, len) {
            return Err(err("host bits are set (write the network address)"));
        }
        Ok(cidr)
    }
}

fn host_bits_set(addr: IpAddr, len: u8) -> bool {
    match addr {
        IpAddr::V4(a) => u32::from(a) & !mask32(len) != 0,
        IpAddr::V6(a) => u128::from(a) & !mask128(len) != 0,
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why an address is not a destination: the block it is in and what that block is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forbidden {
    /// The address that was checked (as resolved or written).
    pub addr: IpAddr,
    /// For IPv6 forms that embed an IPv4 address: that address, which is what was refused.
    pub embedded: Option<(&'static str, Ipv4Addr)>,
    pub block: Cidr,
    pub what: &'static str,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            Some((form, v4)) => write!(
                f,
                "{} ({form} of {v4}; {}: {})",
                self.addr, self.block, self.what
            ),
            None => write!(f, "{} ({}: {})", self.addr, self.block, self.what),
        }
    }
}

/// IPv4 blocks that are never a destination (RFC 6890 and its updates, plus cloud
/// platform endpoints that sit outside private space).
const V4_FORBIDDEN: &[(Cidr, &str)] = &[
    (
        Cidr::v4(0, 0, 0, 0, 8),
        "\"this network\" (0.0.0.0 reaches the local host)",
    ),
    (Cidr::v4(10, 0, 0, 0, 8), "private network (RFC 1918)"),
    (
        Cidr::v4(100, 64, 0, 0, 10),
        "shared address space (carrier-grade NAT, RFC 6598)",
    ),
    (Cidr::v4(127, 0, 0, 0, 8), "loopback"),
    (
        Cidr::v4(169, 254, 0, 0, 16),
        "link-local (cloud metadata endpoint)",
    ),
    (Cidr::v4(172, 16, 0, 0, 12), "private network (RFC 1918)"),
    (Cidr::v4(192, 0, 0, 0, 24), "IETF protocol assignments"),
    (Cidr::v4(192, 0, 2, 0, 24), "documentation (TEST-NET-1)"),
    (Cidr::v4(192, 88, 99, 0, 24), "6to4 relay anycast"),
    (Cidr::v4(192, 168, 0, 0, 16), "private network (RFC 1918)"),
    (
        Cidr::v4(198, 18, 0, 0, 15),
        "benchmarking (shellcage's transparent-mode range)",
    ),
    (Cidr::v4(198, 51, 100, 0, 24), "documentation (TEST-NET-2)"),
    (Cidr::v4(203, 0, 113, 0, 24), "documentation (TEST-NET-3)"),
    (Cidr::v4(224, 0, 0, 0, 4), "multicast"),
    (
        Cidr::v4(240, 0, 0, 0, 4),
        "reserved (includes broadcast 255.255.255.255)",
    ),
    (
        Cidr::v4(168, 63, 129, 16, 32),
        "cloud platform endpoint (Azure WireServer)",
    ),
];

/// How an IPv6 block is treated.
#[derive(Clone, Copy)]
enum V6Kind {
    /// Never a destination.
    Forbidden,
    /// Reaches the IPv4 address in bits 96..128 (IPv4-mapped, NAT64 well-known prefix).
    EmbedsLow,
    /// 6to4: reaches the IPv4 address in bits 16..48.
    Embeds6to4,
}

/// IPv6 blocks, most specific first; anything outside `2000::/3` is forbidden anyway.
const V6_BLOCKS: &[(Cidr, &str, V6Kind)] = &[
    (
        Cidr::v6([0; 8], 128),
        "unspecified address",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
        "loopback",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
        "IPv4-mapped",
        V6Kind::EmbedsLow,
    ),
    (
        Cidr::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
        "NAT64",
        V6Kind::EmbedsLow,
    ),
    (
        Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
        "6to4",
        V6Kind::Embeds6to4,
    ),
    (
        Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "IPv4-compatible (deprecated)",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96),
        "IPv4-translated (SIIT)",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "local-use NAT64",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "discard-only",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),
        "Teredo",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48),
        "benchmarking",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28),
        "ORCHID",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28),
        "ORCHIDv2",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "documentation",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        "documentation",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),
        "SRv6 SIDs",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique local (ULA)",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "link-local",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local (deprecated)",
        V6Kind::Forbidden,
    ),
    (
        Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        "multicast",
        V6Kind::Forbidden,
    ),
];

const V6_GLOBAL: Cidr = Cidr::v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

fn check_v4(addr: IpAddr, v4: Ipv4Addr) -> Result<(), Forbidden> {
    let ip = IpAddr::V4(v4);
    match V4_FORBIDDEN.iter().find(|(block, _)| block.contains(ip)) {
        Some(&(block, what)) => Err(Forbidden {
            addr,
            embedded: None,
            block,
            what,
        }),
        None => Ok(()),
    }
}

/// The IPv4 address an IPv6 address reaches, and the form's name, if it embeds one.
pub fn embedded_v4(v6: Ipv6Addr) -> Option<(&'static str, Ipv4Addr)> {
    let ip = IpAddr::V6(v6);
    let (_, form, kind) = V6_BLOCKS.iter().find(|(block, _, _)| block.contains(ip))?;
    let bits = u128::from(v6);
    match kind {
        V6Kind::EmbedsLow => Some((form, Ipv4Addr::from(bits as u32))),
        V6Kind::Embeds6to4 => Some((form, Ipv4Addr::from((bits >> 80) as u32))),
        V6Kind::Forbidden => None,
    }
}

/// Is `addr` a forbidden destination, ignoring `allow_private`?
pub fn classify(addr: IpAddr) -> Result<(), Forbidden> {
    let v6 = match addr {
        IpAddr::V4(v4) => return check_v4(addr, v4),
        IpAddr::V6(v6) => v6,
    };
    let block = V6_BLOCKS.iter().find(|(block, _, _)| block.contains(addr));
    match block {
        Some(&(_, form, V6Kind::EmbedsLow | V6Kind::Embeds6to4)) => {
            let (_, v4) = embedded_v4(v6).expect("embedding block");
            check_v4(addr, v4).map_err(|f| Forbidden {
                embedded: Some((form, v4)),
                ..f
            })
        }
        Some(&(block, what, V6Kind::Forbidden)) => Err(Forbidden {
            addr,
            embedded: None,
            block,
            what,
        }),
        None if V6_GLOBAL.contains(addr) => Ok(()),
        None => Err(Forbidden {
            addr,
            embedded: None,
            block: V6_GLOBAL,
            what: "outside global unicast 2000::/3",
        }),
    }
}

/// The address rule of a run: the forbidden blocks, minus what `allow_private` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow_private: Vec<Cidr>,
}

impl AddressPolicy {
    pub fn new(allow_private: Vec<Cidr>) -> AddressPolicy {
        AddressPolicy { allow_private }
    }

    pub fn allow_private(&self) -> &[Cidr] {
        &self.allow_private
    }

    /// May the proxy connect to `addr`? An address inside an `allow_private` block is
    /// allowed; so is an IPv6 form whose embedded IPv4 address is inside one.
    pub fn check(&self, addr: IpAddr) -> Result<(), Forbidden> {
        let covered = |ip: IpAddr| self.allow_private.iter().any(|c| c.contains(ip));
        if covered(addr) {
            return Ok(());
        }
        if let IpAddr::V6(v6) = addr {
            if let Some((_, v4)) = embedded_v4(v6) {
                if covered(IpAddr::V4(v4)) {
                    return Ok(());
                }
            }
        }
        classify(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forbidden(s: &str) -> bool {
        classify(ip(s)).is_err()
    }

    #[test]
    fn private_and_special_v4_blocks_are_forbidden() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.5",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "100.100.100.200",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.251",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "168.63.129.16",
        ] {
            assert!(forbidden(a), "{a} must be forbidden");
        }
    }

    #[test]
    fn public_v4_is_allowed() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "168.63.129.17",
            "93.184.215.14",
        ] {
            assert!(!forbidden(a), "{a} must be allowed");
        }
    }

    #[test]
    fn v6_special_blocks_are_forbidden() {
        for a in [
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:0:8.8.8.8",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "2001:db8::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "4000::1",
            "8000::1",
            "1000::1",
        ] {
            assert!(forbidden(a), "{a} must be forbidden");
        }
    }

    #[test]
    fn v6_embedding_forms_are_checked_through_their_v4_address() {
        for a in [
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::ffff:10.0.0.5",
            "::ffff:169.254.169.254",
            "::ffff:a9fe:a9fe",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a00:5",
            "64:ff9b::169.254.169.254",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101::",
        ] {
            let f = classify(ip(a)).unwrap_err();
            assert!(f.embedded.is_some(), "{a}: {f}");
        }
        for a in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert!(!forbidden(a), "{a} must be allowed");
        }
        let f = classify(ip("::ffff:169.254.169.254")).unwrap_err();
        assert_eq!(
            f.to_string(),
            "::ffff:169.254.169.254 (IPv4-mapped of 169.254.169.254; 169.254.0.0/16: link-local (cloud metadata endpoint))"
        );
    }

    #[test]
    fn global_v6_is_allowed() {
        for a in [
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "2001:4860:4860::8888",
            "2001:3::1",
        ] {
            assert!(!forbidden(a), "{a} must be allowed");
        }
    }

    #[test]
    fn allow_private_opens_exactly_its_blocks() {
        let p = AddressPolicy::new(vec![
            "10.1.2.0/24".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        assert!(p.check(ip("10.1.2.3")).is_ok());
        assert!(p.check(ip("::ffff:10.1.2.3")).is_ok());
        assert!(p.check(ip("64:ff9b::10.1.2.3")).is_ok());
        assert!(p.check(ip("fd00::5")).is_ok());
        assert!(p.check(ip("10.1.3.3")).is_err());
        assert!(p.check(ip("127.0.0.1")).is_err());
        assert!(p.check(ip("::ffff:127.0.0.1")).is_err());
        assert!(p.check(ip("fc00::1")).is_err());
        let f = p.check(ip("10.0.0.5")).unwrap_err();
        assert_eq!(
            f.to_string(),
            "10.0.0.5 (10.0.0.0/8: private network (RFC 1918))"
        );
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "10.0.0.5".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.5/32"
        );
        assert_eq!(
            "[fd00::]/8".parse::<Cidr>().unwrap().to_string(),
            "fd00::/8"
        );
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix_len(), 0);
        for bad in [
            "10.0.0.5/24",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "example.org/8",
            "0x7f.1/32",
            "::/129",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let c: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(c.contains(ip("1.2.3.4")));
        assert!(!c.contains(ip("::1")));
    }
}

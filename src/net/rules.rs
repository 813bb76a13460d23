//! The allow and deny lists of a run.
//!
//! Entries: `pkgs.example.org` (that name, ports 80 and 443), `*.example.net` (every name
//! below example.net, not example.net itself), `git.example.com:22` (that port only), IP
//! literals `10.1.2.3`, `[2001:db8::1]:8443` (an address is only ever allowed when an entry
//! names it). A deny entry without a port denies every port, and deny wins over allow.
//! Allowed destinations still go through the address rules ([`AddressPolicy`]).

use std::fmt;
use std::net::IpAddr;

use super::addr::{AddressPolicy, Cidr, CidrError};
use super::host::{Host, HostError, escape};

/// Ports an allow entry without `:PORT` opens.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Name(String),
    /// `*.example.net`, stored as `.example.net`.
    Below(String),
    Ip(IpAddr),
}

/// One entry of the allow or deny list, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pattern: Pattern,
    port: Option<u16>,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pattern {
            Pattern::Name(n) => f.write_str(n)?,
            Pattern::Below(s) => write!(f, "*{s}")?,
            Pattern::Ip(ip) => write!(f, "{}", Host::Ip(*ip))?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// An entry that does not parse, with the list it is in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("invalid network {list} entry {shown}: {why}")]
    Entry {
        list: &'static str,
        shown: String,
        why: String,
    },
    #[error("invalid network allow_private entry: {0}")]
    Block(#[from] CidrError),
}

impl Rule {
    /// Parse `HOST`, `HOST:PORT`, `*.SUFFIX[:PORT]`, `[V6][:PORT]`.
    pub fn parse(list: &'static str, text: &str) -> Result<Rule, RuleError> {
        let err = |why: String| RuleError::Entry {
            list,
            shown: escape(text.as_bytes()),
            why,
        };
        let (host, port) = split_host_port(text).map_err(|w| err(w.to_string()))?;
        let port = match port {
            None => None,
            Some(p) => Some(parse_port(p).ok_or_else(|| err("port must be 1-65535".into()))?),
        };
        let pattern = if let Some(suffix) = host.strip_prefix("*.") {
            match Host::parse(suffix).map_err(|e: HostError| err(e.why.to_string()))? {
                Host::Name(n) if n.contains('.') => Pattern::Below(format!(".{n}")),
                Host::Name(_) => {
                    return Err(err(
                        "a wildcard needs at least two labels after '*.' (*.example.net)".into(),
                    ));
                }
                Host::Ip(_) => return Err(err("a wildcard cannot cover an IP address".into())),
            }
        } else if host.contains('*') {
            return Err(err("'*' is only allowed as a leading '*.' label".into()));
        } else {
            match Host::parse(host).map_err(|e| err(e.why.to_string()))? {
                Host::Name(n) => Pattern::Name(n),
                Host::Ip(ip) => Pattern::Ip(ip),
            }
        };
        Ok(Rule { pattern, port })
    }

    /// Does `self` allow every destination `other` allows? (The managed floor's
    /// `allow_hosts`: a profile's or `--allow-host`'s entry may only narrow it.)
    pub fn covers(&self, other: &Rule) -> bool {
        let host = match (&self.pattern, &other.pattern) {
            (Pattern::Name(a), Pattern::Name(b)) => a == b,
            (Pattern::Below(s), Pattern::Name(h)) => h.len() > s.len() && h.ends_with(s.as_str()),
            // `.example.net` covers `.example.net` and `.a.example.net`.
            (Pattern::Below(s), Pattern::Below(t)) => t.ends_with(s.as_str()),
            (Pattern::Ip(a), Pattern::Ip(b)) => a == b,
            _ => false,
        };
        host && match other.port {
            Some(p) => self.allows_port(p),
            None => DEFAULT_PORTS.iter().all(|&p| self.allows_port(p)),
        }
    }

    fn covers_host(&self, host: &Host) -> bool {
        match (&self.pattern, host) {
            (Pattern::Name(n), Host::Name(h)) => n == h,
            (Pattern::Below(s), Host::Name(h)) => h.len() > s.len() && h.ends_with(s.as_str()),
            (Pattern::Ip(a), Host::Ip(b)) => a == b,
            _ => false,
        }
    }

    fn allows_port(&self, port: u16) -> bool {
        match self.port {
            Some(p) => p == port,
            None => DEFAULT_PORTS.contains(&port),
        }
    }
}

/// `HOST[:PORT]` with IPv6 in brackets; a second ':' outside brackets is an error.
pub fn split_host_port(text: &str) -> Result<(&str, Option<&str>), &'static str> {
    if text.starts_with('[') {
        let end = text.find(']').ok_or("unterminated '['")?;
        let (host, rest) = text.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => match rest.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("unexpected text after ']'"),
            },
        };
    }
    match text.split_once(':') {
        None => Ok((text, None)),
        Some((_, port)) if port.contains(':') => {
            Err("more than one ':' (write an IPv6 address in brackets)")
        }
        Some((host, port)) => Ok((host, Some(port))),
    }
}

/// A decimal port 1-65535 (at most five digits, so no `+80` or ` 80`).
pub fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match text.parse::<u32>() {
        Ok(p @ 1..=65535) => Some(p as u16),
        _ => None,
    }
}

/// Why a destination was not allowed by the lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListRefusal {
    NotInAllowlist,
    /// The host is allowed, on these ports only.
    PortNotAllowed {
        allowed: Vec<u16>,
    },
    Denied {
        rule: String,
    },
}

/// The lists and the address rule of a run.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    addresses: AddressPolicy,
}

impl RuleSet {
    pub fn new<S: AsRef<str>>(
        allow: &[S],
        deny: &[S],
        allow_private: &[S],
    ) -> Result<RuleSet, RuleError> {
        let parse = |list, v: &[S]| -> Result<Vec<Rule>, RuleError> {
            v.iter().map(|s| Rule::parse(list, s.as_ref())).collect()
        };
        let blocks = allow_private
            .iter()
            .map(|s| s.as_ref().parse::<Cidr>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RuleSet {
            allow: parse("allow", allow)?,
            deny: parse("deny", deny)?,
            addresses: AddressPolicy::new(blocks),
        })
    }

    pub fn addresses(&self) -> &AddressPolicy {
        &self.addresses
    }

    /// Every port some allow entry opens (the transparent listeners to create).
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .allow
            .iter()
            .flat_map(|r| match r.port {
                Some(p) => vec![p],
                None => DEFAULT_PORTS.to_vec(),
            })
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// May the sandbox reach `host:port`? Returns the allow entry that lets it.
    pub fn check(&self, host: &Host, port: u16) -> Result<String, ListRefusal> {
        if let Some(rule) = self
            .deny
            .iter()
            .find(|r| r.covers_host(host) && r.port.is_none_or(|p| p == port))
        {
            return Err(ListRefusal::Denied {
                rule: rule.to_string(),
            });
        }
        let mut matching = self.allow.iter().filter(|r| r.covers_host(host)).peekable();
        if matching.peek().is_none() {
            return Err(ListRefusal::NotInAllowlist);
        }
        let mut allowed = Vec::new();
        for rule in matching {
            if rule.allows_port(port) {
                return Ok(rule.to_string());
            }
            match rule.port {
                Some(p) => allowed.push(p),
                None => allowed.extend(DEFAULT_PORTS),
            }
        }
        allowed.sort_unstable();
        allowed.dedup();
        Err(ListRefusal::PortNotAllowed { allowed })
    }

    /// Is `name` allowed on some port and not denied on all of them? (The resolver answers
    /// only such names.)
    pub fn check_name(&self, name: &str) -> Result<(), ListRefusal> {
        let host = Host::Name(name.to_string());
        if let Some(rule) = self
            .deny
            .iter()
            .find(|r| r.port.is_none() && r.covers_host(&host))
        {
            return Err(ListRefusal::Denied {
                rule: rule.to_string(),
            });
        }
        match self.allow.iter().any(|r| r.covers_host(&host)) {
            true => Ok(()),
            false => Err(ListRefusal::NotInAllowlist),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> RuleSet {
        RuleSet::new(allow, deny, &[]).unwrap()
    }

    fn check(r: &RuleSet, host: &str, port: u16) -> Result<String, ListRefusal> {
        r.check(&Host::parse(host).unwrap(), port)
    }

    #[test]
    fn names_wildcards_and_ports() {
        let r = rules(
            &[
                "pkgs.example.org",
                "*.example.net",
                "git.example.com:22",
                "Upper.Example.COM.",
            ],
            &[],
        );
        assert_eq!(
            check(&r, "pkgs.example.org", 443).unwrap(),
            "pkgs.example.org"
        );
        assert_eq!(
            check(&r, "PKGS.example.org.", 80).unwrap(),
            "pkgs.example.org"
        );
        assert_eq!(
            check(&r, "upper.example.com", 443).unwrap(),
            "upper.example.com"
        );
        assert_eq!(
            check(&r, "pkgs.example.org", 8080),
            Err(ListRefusal::PortNotAllowed {
                allowed: vec![80, 443]
            })
        );
        assert_eq!(check(&r, "a.example.net", 443).unwrap(), "*.example.net");
        assert_eq!(check(&r, "a.b.example.net", 80).unwrap(), "*.example.net");
        assert_eq!(
            check(&r, "example.net", 443),
            Err(ListRefusal::NotInAllowlist)
        );
        assert_eq!(
            check(&r, "xexample.net", 443),
            Err(ListRefusal::NotInAllowlist)
        );
        assert_eq!(
            check(&r, "example.net.evil.example", 443),
            Err(ListRefusal::NotInAllowlist)
        );
        assert_eq!(
            check(&r, "git.example.com", 22).unwrap(),
            "git.example.com:22"
        );
        assert_eq!(
            check(&r, "git.example.com", 443),
            Err(ListRefusal::PortNotAllowed { allowed: vec![22] })
        );
        assert_eq!(
            check(&r, "evil.example", 443),
            Err(ListRefusal::NotInAllowlist)
        );
        assert_eq!(r.ports(), vec![22, 80, 443]);
    }

    #[test]
    fn deny_wins_and_covers_every_port() {
        let r = rules(
            &["*.example.net", "uploads.example.net:8443"],
            &["uploads.example.net", "a.example.net:80"],
        );
        let denied = |rule: &str| Err(ListRefusal::Denied { rule: rule.into() });
        assert_eq!(
            check(&r, "uploads.example.net", 443),
            denied("uploads.example.net")
        );
        assert_eq!(
            check(&r, "uploads.example.net", 8443),
            denied("uploads.example.net")
        );
        assert_eq!(check(&r, "a.example.net", 80), denied("a.example.net:80"));
        assert!(check(&r, "a.example.net", 443).is_ok());
        assert!(matches!(
            r.check_name("uploads.example.net"),
            Err(ListRefusal::Denied { .. })
        ));
        assert!(r.check_name("a.example.net").is_ok());
        assert_eq!(
            r.check_name("example.net"),
            Err(ListRefusal::NotInAllowlist)
        );
    }

    #[test]
    fn ip_literals_are_allowed_only_when_named() {
        let r = rules(
            &["10.1.2.3", "[2001:db8::1]:8443", "2130706433:8080"],
            &["[::1]"],
        );
        assert_eq!(check(&r, "10.1.2.3", 443).unwrap(), "10.1.2.3");
        assert_eq!(check(&r, "0x0a.1.2.3", 80).unwrap(), "10.1.2.3");
        assert_eq!(check(&r, "167838211", 80).unwrap(), "10.1.2.3");
        assert_eq!(
            check(&r, "[2001:db8::1]", 8443).unwrap(),
            "[2001:db8::1]:8443"
        );
        assert_eq!(check(&r, "127.0.0.1", 8080).unwrap(), "127.0.0.1:8080");
        assert_eq!(check(&r, "10.1.2.4", 443), Err(ListRefusal::NotInAllowlist));
        assert_eq!(
            check(&r, "[::ffff:10.1.2.3]", 443),
            Err(ListRefusal::NotInAllowlist)
        );
        assert!(matches!(
            check(&r, "[::1]", 443),
            Err(ListRefusal::Denied { .. })
        ));
        assert!(r.check_name("10.1.2.3").is_err());
    }

    #[test]
    fn bad_entries_name_the_list_and_the_reason() {
        for (entry, why) in [
            ("*.com", "at least two labels"),
            ("*", "'*' is only allowed"),
            ("a.*.example", "'*' is only allowed"),
            ("*.10.0.0.1", "cannot cover an IP"),
            ("example.org:0", "port must be"),
            ("example.org:99999", "port must be"),
            ("example.org:+80", "port must be"),
            ("example.org:", "port must be"),
            ("::1", "more than one ':'"),
            ("[::1]x", "unexpected text"),
            ("ex ample.org", "only letters"),
            ("ex\u{e4}mple.org", "xn--"),
            ("", "empty"),
        ] {
            let err = RuleSet::new(&[entry], &[], &[]).unwrap_err().to_string();
            assert!(err.contains(why), "{entry:?}: {err}");
            assert!(err.starts_with("invalid network allow entry"), "{err}");
        }
        let err = RuleSet::new(&[], &["a b"], &[]).unwrap_err().to_string();
        assert!(err.starts_with("invalid network deny entry"), "{err}");
        let err = RuleSet::new(&[], &[], &["10.0.0.1/8"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("host bits"), "{err}");
    }

    #[test]
    fn split_host_port_forms() {
        assert_eq!(
            split_host_port("a.example:443"),
            Ok(("a.example", Some("443")))
        );
        assert_eq!(split_host_port("a.example"), Ok(("a.example", None)));
        assert_eq!(split_host_port("[::1]:443"), Ok(("[::1]", Some("443"))));
        assert_eq!(split_host_port("[::1]"), Ok(("[::1]", None)));
        assert!(split_host_port("::1:443").is_err());
        assert_eq!(parse_port("0443"), Some(443));
        assert_eq!(parse_port("65536"), None);
    }
}

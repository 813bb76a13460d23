//! What the proxy decided about one connection, and how it says so: the reason, the HTTP
//! status of an explicit refusal, and the fix a user can apply.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::addr::{Cidr, Forbidden};
use super::host::Host;
use super::rules::{DEFAULT_PORTS, ListRefusal};

/// The outcome class of a connection or lookup.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Relayed to the destination.
    Allowed,
    /// Refused by policy or by a defence (a bad request, a mismatch, a limit).
    Blocked,
    /// Allowed, but the destination could not be resolved or reached.
    Failed,
}

/// Why: the allow entry that let it through, or what refused it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Allowed {
        rule: String,
    },
    NotInAllowlist,
    PortNotAllowed {
        allowed: Vec<u16>,
    },
    Denied {
        rule: String,
    },
    /// The destination (named or resolved) is in a forbidden block.
    PrivateAddress {
        addr: IpAddr,
        detail: String,
    },
    /// The TLS server name differs from the authorised name.
    SniMismatch {
        sni: String,
    },
    /// The HTTP Host (or absolute URL host) differs from the authorised name.
    HostMismatch {
        host: String,
    },
    /// A transparent connection to an address the resolver never handed out.
    UnmappedAddress {
        addr: SocketAddr,
    },
    /// A request the proxy will not parse or forward (`status` is the HTTP answer).
    BadRequest {
        status: u16,
        what: String,
    },
    /// A limit of the run (connections, names, header size).
    Limit {
        what: String,
    },
    /// A client too slow to send its request head or TLS hello.
    Timeout {
        what: String,
    },
    ResolveFailed {
        error: String,
    },
    ConnectFailed {
        error: String,
    },
}

impl Reason {
    pub fn decision(&self) -> Decision {
        match self {
            Reason::Allowed { .. } => Decision::Allowed,
            Reason::ResolveFailed { .. } | Reason::ConnectFailed { .. } => Decision::Failed,
            _ => Decision::Blocked,
        }
    }

    pub fn from_list(refusal: ListRefusal) -> Reason {
        match refusal {
            ListRefusal::NotInAllowlist => Reason::NotInAllowlist,
            ListRefusal::PortNotAllowed { allowed } => Reason::PortNotAllowed { allowed },
            ListRefusal::Denied { rule } => Reason::Denied { rule },
        }
    }

    pub fn private(f: &Forbidden) -> Reason {
        Reason::PrivateAddress {
            addr: f.addr,
            detail: f.to_string(),
        }
    }

    pub fn bad(status: u16, what: impl Into<String>) -> Reason {
        Reason::BadRequest {
            status,
            what: what.into(),
        }
    }

    /// The HTTP status an explicit client gets.
    pub fn status(&self) -> u16 {
        match self {
            Reason::Allowed { .. } => 200,
            Reason::BadRequest { status, .. } => *status,
            Reason::Limit { .. } => 503,
            Reason::Timeout { .. } => 408,
            Reason::ResolveFailed { .. } | Reason::ConnectFailed { .. } => 502,
            _ => 403,
        }
    }

    /// The RFC 9209 `Proxy-Status` error type.
    pub fn proxy_status(&self) -> &'static str {
        match self {
            Reason::PrivateAddress { .. } => "destination_ip_prohibited",
            Reason::BadRequest { .. } | Reason::Timeout { .. } => "http_request_error",
            Reason::ResolveFailed { .. } => "dns_error",
            Reason::ConnectFailed { .. } => "connection_refused",
            Reason::Limit { .. } => "proxy_internal_error",
            _ => "http_request_denied",
        }
    }

    /// How the user lets this destination through, when a setting can.
    pub fn fix(&self, host: &Host, port: u16) -> Option<String> {
        let entry = match DEFAULT_PORTS.contains(&port) {
            true => host.to_string(),
            false => format!("{host}:{port}"),
        };
        match self {
            Reason::NotInAllowlist | Reason::PortNotAllowed { .. } => Some(format!(
                "--allow-host {entry} or [network] allow = [\"{entry}\"]"
            )),
            Reason::Denied { rule } => Some(format!("remove \"{rule}\" from [network] deny")),
            Reason::PrivateAddress { addr, .. } => Some(format!(
                "[network] allow_private = [\"{}\"] if this address is meant to be reached",
                Cidr::host(*addr)
            )),
            _ => None,
        }
    }

    /// One line for a refused client: what was refused, why, and the fix.
    pub fn refusal_line(&self, host: &Host, port: u16) -> String {
        let mut line = format!("shellcage: blocked {host}:{port}: {self}");
        if let Some(fix) = self.fix(host, port) {
            line.push_str(&format!(" (fix: {fix})"));
        }
        line
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Allowed { rule } => write!(f, "allowed by \"{rule}\""),
            Reason::NotInAllowlist => f.write_str("not in the allowlist"),
            Reason::PortNotAllowed { allowed } => {
                let list: Vec<String> = allowed.iter().map(u16::to_string).collect();
                write!(f, "port not allowed (allowed: {})", list.join(", "))
            }
            Reason::Denied { rule } => write!(f, "denied by rule \"{rule}\""),
            Reason::PrivateAddress { detail, .. } => write!(f, "private address {detail}"),
            Reason::SniMismatch { sni } => write!(f, "TLS server name {sni} differs"),
            Reason::HostMismatch { host } => write!(f, "HTTP host {host} differs"),
            Reason::UnmappedAddress { addr } => {
                write!(
                    f,
                    "address {addr} was not handed out by shellcage's resolver"
                )
            }
            Reason::BadRequest { what, .. } => write!(f, "bad request: {what}"),
            Reason::Limit { what } => write!(f, "limit reached: {what}"),
            Reason::Timeout { what } => write!(f, "timed out: {what}"),
            Reason::ResolveFailed { error } => write!(f, "cannot resolve: {error}"),
            Reason::ConnectFailed { error } => write!(f, "cannot connect: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::addr::classify;

    #[test]
    fn refusal_lines_name_host_port_rule_and_fix() {
        let host = Host::parse("a.example").unwrap();
        assert_eq!(
            Reason::NotInAllowlist.refusal_line(&host, 443),
            "shellcage: blocked a.example:443: not in the allowlist (fix: --allow-host a.example or [network] allow = [\"a.example\"])"
        );
        assert_eq!(
            Reason::PortNotAllowed {
                allowed: vec![80, 443]
            }
            .refusal_line(&host, 22),
            "shellcage: blocked a.example:22: port not allowed (allowed: 80, 443) (fix: --allow-host a.example:22 or [network] allow = [\"a.example:22\"])"
        );
        assert_eq!(
            Reason::Denied {
                rule: "*.example".into()
            }
            .refusal_line(&host, 443),
            "shellcage: blocked a.example:443: denied by rule \"*.example\" (fix: remove \"*.example\" from [network] deny)"
        );
        let f = classify("10.0.0.5".parse().unwrap()).unwrap_err();
        assert_eq!(
            Reason::private(&f).refusal_line(&Host::parse("10.0.0.5").unwrap(), 22),
            "shellcage: blocked 10.0.0.5:22: private address 10.0.0.5 (10.0.0.0/8: private network (RFC 1918)) (fix: [network] allow_private = [\"10.0.0.5/32\"] if this address is meant to be reached)"
        );
        assert_eq!(Reason::private(&f).status(), 403);
        assert_eq!(Reason::bad(431, "head too large").status(), 431);
    }
}

//! The egress proxy's engine: the one way out of a sandbox whose network is `proxy`.
//!
//! It takes listening sockets that were created inside the sandbox's network namespace
//! and serves them from outside, in the host's namespace, with threads and blocking I/O:
//! - explicit mode: HTTP `CONNECT` and absolute-form requests (`HTTP_PROXY` points there);
//! - transparent mode: connections to addresses of a reserved range that the resolver
//!   handed out for allowed names;
//! - the resolver (DNS over UDP and TCP) that hands them out, and never forwards.
//!
//! Every connection is decided by the [`rules::RuleSet`] (allow and deny lists, then the
//! address rules of [`addr`]), made by the proxy to the exact address it checked, and
//! recorded in a [`summary::Summary`].

pub mod addr;
pub mod dns;
pub mod engine;
pub mod host;
pub mod http;
pub mod resolver;
pub mod rules;
pub mod sni;
pub mod sniff;
pub mod summary;
pub mod verdict;

mod dns_server;
mod proxy;
mod relay;

pub use engine::{Config, Engine, Event, EventSink, Limits, Listeners, StartError, Stats};
pub use relay::relay_both_ways;
pub use resolver::{Resolver, StaticResolver, SystemResolver};

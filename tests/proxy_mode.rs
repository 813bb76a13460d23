//! Network mode `proxy` end to end: `shellcage run` with the proxy in the launch path,
//! real clients inside the sandbox (curl, Python), real servers the test starts on the
//! host's loopback under test names (see proxy_mode/cage.rs), each result checked on the
//! server's side too. The attack cases are in tests/attacks/proxy.rs.
mod common;
#[path = "net_proxy/support.rs"]
mod support;

#[path = "proxy_mode/cage.rs"]
mod cage;
#[path = "proxy_mode/clients.rs"]
mod clients;
#[path = "proxy_mode/publish.rs"]
mod publish;
#[path = "proxy_mode/registry.rs"]
mod registry;
#[path = "proxy_mode/tools.rs"]
mod tools;

//! The egress proxy engine (src/net) driven by real clients against real servers on
//! loopback: curl, Python requests and urllib in explicit mode; raw sockets, curl and
//! glibc's resolver in transparent mode inside a throwaway network namespace whose
//! listeners were created inside and handed out with SCM_RIGHTS; and the refusals, each
//! with the upstream's side checked. Each attack idea is listed in /work/wt/notes/net.md
//! with the test that covers it.
mod common;
#[path = "net_proxy/support.rs"]
mod support;

#[path = "net_proxy/attacks.rs"]
mod attacks;
#[path = "net_proxy/dns.rs"]
mod dns;
#[path = "net_proxy/explicit.rs"]
mod explicit;
#[path = "net_proxy/transparent.rs"]
mod transparent;

/// Not a test: the helper process re-executed inside `unshare -rmn` (see support::Netns).
#[test]
#[ignore]
fn netns_helper() {
    let Some(spec) = std::env::var_os("SHELLCAGE_NET_HELPER") else {
        return;
    };
    let spec: support::NetnsSpec = serde_json::from_str(spec.to_str().unwrap()).unwrap();
    match spec.mode.as_str() {
        "rpc" => support::helper_main(spec),
        "private" => attacks::private_ranges_inside(),
        "route" => transparent::route_inside(),
        other => panic!("unknown helper mode {other}"),
    }
}

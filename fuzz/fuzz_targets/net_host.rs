//! Host names, IP literals, allow/deny entries and CIDR blocks: any string gives Ok or
//! Err; an accepted host prints as text that parses back to the same host.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shellcage::net::host::Host;

fuzz_target!(|s: &str| {
    if let Ok(h) = Host::parse(s) {
        assert_eq!(Host::parse(&h.to_string()).as_ref(), Ok(&h));
    }
    let _ = shellcage::net::rules::Rule::parse("allow", s);
    let _ = s.parse::<shellcage::net::addr::Cidr>();
});

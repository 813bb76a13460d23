//! The egress proxy's TLS ClientHello reader and first-bytes classifier: any bytes give a
//! result without panicking; a complete hello never claims more bytes than it was given.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shellcage::net::sni::{Hello, parse_client_hello};

fuzz_target!(|data: &[u8]| {
    let _ = shellcage::net::sniff::classify(data, 4096);
    if let Ok(Hello::Complete { len, .. }) = parse_client_hello(data, 1 << 16) {
        assert!(len <= data.len());
    }
});

//! The egress proxy's resolver: any message parses to a query, a FORMERR or a drop without
//! panicking; an answer to a query echoes its id and question and is itself never taken
//! for a query (no answer loops).
#![no_main]
use libfuzzer_sys::fuzz_target;
use shellcage::net::dns::{Parsed, answer, parse};

fuzz_target!(|data: &[u8]| {
    if let Parsed::Query(q) = parse(data) {
        let a = answer(&q, 0, Some(("198.18.0.1".parse().unwrap(), 60)));
        assert_eq!(&a[..2], &data[..2]);
        assert_eq!(parse(&a), Parsed::Drop);
        let nx = answer(&q, 3, None);
        assert_eq!(parse(&nx), Parsed::Drop);
    }
});

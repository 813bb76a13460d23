//! The egress proxy's request-head parser and chunked-body checker: any bytes give a
//! result without panicking, and a head it accepts re-serialises into a head that parses
//! back to the same method, framing and target, with `Connection: close`, and ends where
//! it says it ends (what the upstream sees cannot be read two ways).
#![no_main]
use libfuzzer_sys::fuzz_target;
use shellcage::net::http::{Body, Chunked, Parsed, Target, parse_request};

fuzz_target!(|data: &[u8]| {
    let Ok(Parsed::Complete(req, n)) = parse_request(data, 100) else {
        return;
    };
    assert!(n <= data.len());
    if req.method == "CONNECT" {
        return; // tunnels are never forwarded as a request
    }
    let head = req.forward_head("a.example");
    assert!(head.ends_with(b"Connection: close\r\n\r\n"));
    let Ok(Parsed::Complete(again, m)) = parse_request(&head, 200) else {
        panic!(
            "forwarded head does not parse: {:?}",
            String::from_utf8_lossy(&head)
        );
    };
    assert_eq!(m, head.len(), "forwarded head ends early");
    assert_eq!(again.method, req.method);
    assert_eq!(again.body, req.body);
    let path = match &req.target {
        Target::Absolute { path, .. } => Target::Origin(path.clone()),
        t => t.clone(),
    };
    assert_eq!(again.target, path);
    if req.body == Body::Chunked {
        let mut c = Chunked::default();
        let used = c.feed(&data[n..]).unwrap_or(0);
        assert!(used <= data.len() - n);
    }
});

//! The engine's resolver over UDP and TCP with raw messages: answer types, error codes,
//! malformed input and the bounded name map.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use crate::support::*;
use shellcage::net::Listeners;
use shellcage::net::dns::{TYPE_A, query_for_tests};

fn dns_proxy(max_names: usize) -> (Proxy, UdpSocket, std::net::SocketAddr) {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let listeners = Listeners {
        dns_udp: vec![udp],
        dns_tcp: vec![tcp],
        ..Listeners::default()
    };
    let p = builder()
        .allow("a.example")
        .allow("*.test.example")
        .deny("bad.test.example")
        .listeners(listeners)
        .limits(|l| l.max_names = max_names)
        .start();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(udp_addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    (p, client, tcp_addr)
}

fn ask(c: &UdpSocket, msg: &[u8]) -> Option<Vec<u8>> {
    // A dropped message is detected by a 500 ms silence (answers take microseconds).
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    c.send(msg).unwrap();
    let mut buf = [0u8; 4096];
    c.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

fn rcode(a: &[u8]) -> u8 {
    a[3] & 0x0f
}

fn answers(a: &[u8]) -> u16 {
    u16::from_be_bytes([a[6], a[7]])
}

#[test]
fn answers_and_error_codes() {
    let (p, c, _) = dns_proxy(4096);
    let a = ask(&c, &query_for_tests(1, "A.Example", TYPE_A)).unwrap();
    assert_eq!((rcode(&a), answers(&a)), (0, 1));
    assert_eq!(&a[a.len() - 4..], &[198, 18, 0, 1]);
    assert_eq!(&a[12..22], b"\x01A\x07Example", "question echoed as asked");
    for qtype in [28u16, 15, 65, 255] {
        let a = ask(&c, &query_for_tests(2, "a.example", qtype)).unwrap();
        assert_eq!((rcode(&a), answers(&a)), (0, 0), "type {qtype}: no data");
    }
    for name in [
        "evil.example",
        "bad.test.example",
        "test.example",
        "a.example.evil.example",
    ] {
        let a = ask(&c, &query_for_tests(3, name, TYPE_A)).unwrap();
        assert_eq!(rcode(&a), 3, "{name}: NXDOMAIN");
    }
    let mut status = query_for_tests(4, "a.example", TYPE_A);
    status[2] = (status[2] & 0x87) | (2 << 3);
    assert_eq!(
        rcode(&ask(&c, &status).unwrap()),
        4,
        "opcode STATUS: NOTIMP"
    );
    let mut chaos = query_for_tests(5, "version.bind", 16);
    let n = chaos.len();
    chaos[n - 1] = 3;
    assert_eq!(rcode(&ask(&c, &chaos).unwrap()), 5, "class CH: REFUSED");
    let mut two = query_for_tests(6, "a.example", TYPE_A);
    two[5] = 2;
    assert_eq!(rcode(&ask(&c, &two).unwrap()), 1, "two questions: FORMERR");
    let mut response = query_for_tests(7, "a.example", TYPE_A);
    response[2] |= 0x80;
    assert_eq!(
        ask(&c, &response),
        None,
        "a response is dropped, never answered"
    );
    assert_eq!(ask(&c, b"\x00"), None);
    let odd = ask(&c, &query_for_tests(8, "a\u{1b}[2J.example", TYPE_A)).unwrap();
    assert_eq!(rcode(&odd), 3);
    let line = p.stop().exit_line().unwrap();
    assert!(line.contains("refused 5 lookups"), "{line}");
    assert!(!line.contains('\u{1b}'), "{line:?}");
}

#[test]
fn the_name_map_is_bounded() {
    let (p, c, _) = dns_proxy(2);
    for (i, name) in ["a.example", "x.test.example"].iter().enumerate() {
        let a = ask(&c, &query_for_tests(i as u16, name, TYPE_A)).unwrap();
        assert_eq!(rcode(&a), 0);
    }
    let full = ask(&c, &query_for_tests(9, "y.test.example", TYPE_A)).unwrap();
    assert_eq!(rcode(&full), 2, "SERVFAIL when the map is full");
    let again = ask(&c, &query_for_tests(10, "a.example", TYPE_A)).unwrap();
    assert_eq!(
        (rcode(&again), &again[again.len() - 4..]),
        (0, &[198u8, 18, 0, 1][..])
    );
    assert!(p.reasons("y.test.example")[0].starts_with("limit reached"));
}

#[test]
fn dns_over_tcp_answers_several_questions() {
    let (_p, _c, tcp) = dns_proxy(4096);
    let mut s = TcpStream::connect(tcp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    for (i, name) in ["a.example", "z.test.example"].iter().enumerate() {
        let q = query_for_tests(i as u16, name, TYPE_A);
        s.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
        s.write_all(&q).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut a = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut a).unwrap();
        assert_eq!((rcode(&a), answers(&a)), (0, 1));
        assert_eq!(a[a.len() - 1], 1 + i as u8);
    }
}

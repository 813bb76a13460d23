//! Refusals, each with the destination's side checked: it saw no connection (or, where the
//! protocol makes the connection first, no request).
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use shellcage::net::SystemResolver;

/// The proxy's answer to `CONNECT target`: a refusal up to its end, or just the head of an
/// established tunnel.
fn connect(p: &Proxy, target: &str) -> String {
    let mut s = TcpStream::connect(p.addr).unwrap();
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.starts_with(b"HTTP/1.1 200 Connection established\r\n\r\n") {
            break;
        }
    }
    text(&got)
}

#[test]
fn names_not_allowed_or_denied_never_reach_the_upstream() {
    let up = Upstream::start();
    let port = up.port();
    let p = builder()
        .allow(&format!("*.test.example:{port}"))
        .deny("uploads.test.example")
        .private("127.0.0.0/8")
        .map("a.test.example", "127.0.0.1")
        .map("uploads.test.example", "127.0.0.1")
        .map("evil.example", "127.0.0.1")
        .map("test.example", "127.0.0.1")
        .start();
    assert!(connect(&p, &format!("a.test.example:{port}")).starts_with("HTTP/1.1 200"));
    let control = up.accepted();
    assert_eq!(control, 1, "the control connection must reach the upstream");
    for (target, reason) in [
        (
            format!("evil.example:{port}"),
            "not in the allowlist".to_string(),
        ),
        (
            format!("test.example:{port}"),
            "not in the allowlist".to_string(),
        ),
        (
            format!("uploads.test.example:{port}"),
            "denied by rule \"uploads.test.example\"".to_string(),
        ),
        (
            format!("UPLOADS.Test.Example.:{port}"),
            "denied by rule \"uploads.test.example\"".to_string(),
        ),
        (
            "a.test.example:22".to_string(),
            "port not allowed (allowed: ".to_string() + &port.to_string() + ")",
        ),
    ] {
        let answer = connect(&p, &target);
        assert!(answer.starts_with("HTTP/1.1 403"), "{target}: {answer}");
        assert!(answer.contains(&reason), "{target}: {answer}");
    }
    let url = format!("http://uploads.test.example:{port}/");
    let answer = raw(
        p.addr,
        format!("GET {url} HTTP/1.1\r\nHost: uploads.test.example:{port}\r\n\r\n").as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(up.accepted(), control, "a refused destination was reached");
}

/// A name that resolves to loopback, link-local (metadata) or any other forbidden block is
/// refused unless allow_private covers it; `localhost` through the host's own resolver too.
#[test]
fn names_resolving_to_forbidden_addresses_are_refused() {
    let up = Upstream::start();
    let port = up.port();
    let p = builder()
        .allow(&format!("*.test.example:{port}"))
        .map("loop.test.example", "127.0.0.1")
        .map("mapped.test.example", "::ffff:127.0.0.1")
        .map("meta.test.example", "169.254.169.254")
        .map("zero.test.example", "0.0.0.0")
        .map("mixed.test.example", "10.0.0.5")
        .map("mixed.test.example", "127.0.0.1")
        .start();
    for (name, want) in [
        ("loop", "private address 127.0.0.1 (127.0.0.0/8: loopback)"),
        (
            "mapped",
            "private address ::ffff:127.0.0.1 (IPv4-mapped of 127.0.0.1; 127.0.0.0/8: loopback)",
        ),
        (
            "meta",
            "private address 169.254.169.254 (169.254.0.0/16: link-local (cloud metadata endpoint))",
        ),
        ("zero", "private address 0.0.0.0"),
        ("mixed", "private address 10.0.0.5"),
    ] {
        let answer = connect(&p, &format!("{name}.test.example:{port}"));
        assert!(answer.starts_with("HTTP/1.1 403"), "{name}: {answer}");
        assert!(answer.contains(want), "{name}: {answer}");
        assert!(answer.contains("allow_private = ["), "{name}: {answer}");
    }
    assert_eq!(up.accepted(), 0);

    let sys = builder()
        .allow(&format!("localhost:{port}"))
        .resolver(Arc::new(SystemResolver))
        .start();
    let answer = connect(&sys, &format!("localhost:{port}"));
    assert!(answer.contains("private address"), "{answer}");
    assert_eq!(up.accepted(), 0);
    // Control: with allow_private the same name reaches the upstream, so the refusal above
    // is the rule at work.
    let open = builder()
        .allow(&format!("localhost:{port}"))
        .private("127.0.0.0/8")
        .private("::1/128")
        .resolver(Arc::new(SystemResolver))
        .start();
    assert!(connect(&open, &format!("localhost:{port}")).starts_with("HTTP/1.1 200"));
    assert!(eventually(|| up.accepted() == 1));
}

/// IP literals in every notation libc accepts are the address they denote: refused when
/// only a name is allowed, and refused as private when the literal is allowed without
/// allow_private.
#[test]
fn odd_ip_literal_notations_are_checked_as_addresses() {
    let up = Upstream::start();
    let port = up.port();
    let names_only = builder().allow(&format!("a.example:{port}")).start();
    let literal = builder()
        .allow(&format!("127.0.0.1:{port}"))
        .allow(&format!("[::ffff:127.0.0.1]:{port}"))
        .start();
    let forms = [
        "2130706433",
        "0x7f000001",
        "017700000001",
        "0x7f.1",
        "127.1",
        "0177.0.0.1",
        "0x7f.0.0.1",
        "127.0.0.1.",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
    ];
    for form in forms {
        let target = format!("{form}:{port}");
        let a = connect(&names_only, &target);
        assert!(
            a.starts_with("HTTP/1.1 403") && a.contains("not in the allowlist"),
            "{target}: {a}"
        );
        let a = connect(&literal, &target);
        assert!(
            a.starts_with("HTTP/1.1 403") && a.contains("private address"),
            "{target}: {a}"
        );
        let get = format!("GET http://{form}:{port}/ HTTP/1.1\r\n\r\n");
        let a = raw(literal.addr, get.as_bytes());
        assert!(
            a.starts_with("HTTP/1.1 403") && a.contains("private address"),
            "{target}: {a}"
        );
    }
    for bad in ["[fe80::1%25lo]", "[::1", "1.2.3.4.5", "0x", "::1"] {
        let a = connect(&literal, &format!("{bad}:{port}"));
        assert!(a.starts_with("HTTP/1.1 400"), "{bad}: {a}");
    }
    assert_eq!(up.accepted(), 0);
}

/// Request smuggling and ambiguous targets get a 400 and never reach the upstream; a valid
/// request with bytes after its body reaches it alone.
#[test]
fn smuggling_attempts_are_refused_or_cut_to_one_request() {
    let up = Upstream::start();
    let port = up.port();
    let p = builder()
        .allow(&format!("a.example:{port}"))
        .private("127.0.0.0/8")
        .map("a.example", "127.0.0.1")
        .start();
    let url = format!("http://a.example:{port}/");
    let refused = [
        format!(
            "POST {url} HTTP/1.1\r\nHost: a.example:{port}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        format!("POST {url} HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd"),
        format!("POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        format!(
            "POST {url} HTTP/1.1\r\nTransfer-Encoding:\tchunked\r\nTransfer-Encoding: x\r\n\r\n"
        ),
        format!("POST {url} HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        format!("GET {url} HTTP/1.1\r\nX: a\r\n b\r\n\r\n"),
        format!("GET {url} HTTP/1.1\nHost: a.example\n\n"),
        format!("GET {url} HTTP/1.1\r\nX: a\rHost: evil.example\r\n\r\n"),
        format!("GET {url} HTTP/1.1\r\nHost: a.example:{port}\r\nHost: evil.example\r\n\r\n"),
        format!("GET {url} HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
        format!("GET http://a.example:{port}@evil.example/ HTTP/1.1\r\n\r\n"),
        format!("GET http://evil.example#@a.example:{port}/ HTTP/1.1\r\n\r\n"),
        format!("GET https://a.example:{port}/ HTTP/1.1\r\n\r\n"),
        format!("GET {url} HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
        "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n".to_string(),
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(),
    ];
    for req in &refused {
        let a = raw(p.addr, req.as_bytes());
        assert!(
            a.starts_with("HTTP/1.1 400") || a.starts_with("HTTP/1.1 403"),
            "{req:?}: {a}"
        );
    }
    assert_eq!(
        up.accepted(),
        0,
        "a refused request reached the upstream: {:?}",
        up.received()
    );

    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: evil.example\r\n\r\n";
    let cases = [
        format!("POST {url} HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello{smuggled}"),
        format!(
            "POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{smuggled}"
        ),
        format!("GET {url} HTTP/1.1\r\nConnection: keep-alive\r\n\r\n{smuggled}"),
        format!(
            "GET {url} HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
        ),
    ];
    for req in &cases {
        let a = raw(p.addr, req.as_bytes());
        assert!(a.starts_with("HTTP/1.1 200"), "{req:?}: {a}");
    }
    assert!(eventually(|| up.accepted() == cases.len()));
    std::thread::sleep(Duration::from_millis(400));
    for got in up.received() {
        assert!(
            !got.contains("smuggled"),
            "a second request reached the upstream: {got:?}"
        );
        assert!(!got.to_ascii_lowercase().contains("upgrade"), "{got:?}");
        assert!(!got.contains("HTTP2-Settings"), "{got:?}");
        assert_eq!(got.matches("HTTP/1.1\r\n").count(), 1, "{got:?}");
        assert!(got.contains("\r\nConnection: close\r\n"), "{got:?}");
    }
}

#[test]
fn oversized_heads_get_431() {
    let up = Upstream::start();
    let p = builder()
        .allow(&format!("a.example:{}", up.port()))
        .private("127.0.0.0/8")
        .map("a.example", "127.0.0.1")
        .limits(|l| l.max_head_bytes = 8192)
        .start();
    let url = format!("http://a.example:{}/", up.port());
    let big = format!("GET {url} HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    assert!(raw(p.addr, big.as_bytes()).starts_with("HTTP/1.1 431"));
    let mut many = format!("GET {url} HTTP/1.1\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert!(raw(p.addr, many.as_bytes()).starts_with("HTTP/1.1 431"));
    let endless = "GET / HTTP/1.1\r\nX: ".to_string() + &"a".repeat(20000);
    assert!(raw(p.addr, endless.as_bytes()).starts_with("HTTP/1.1 431"));
    assert_eq!(up.accepted(), 0);
}

/// A client that trickles its head (or says nothing) is cut at the head timeout, however
/// regularly it sends; the upstream never hears of it.
#[test]
fn slow_clients_are_cut_at_the_head_timeout() {
    let up = Upstream::start();
    let p = builder()
        .allow(&format!("a.example:{}", up.port()))
        .private("127.0.0.0/8")
        .map("a.example", "127.0.0.1")
        .limits(|l| l.head_timeout = Duration::from_millis(800))
        .start();
    let start = Instant::now();
    let mut s = TcpStream::connect(p.addr).unwrap();
    let req = format!(
        "GET http://a.example:{}/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
        up.port()
    );
    let mut answer = String::new();
    for b in req.bytes() {
        if s.write_all(&[b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        if let Ok(n) = s.read(&mut buf) {
            answer.push_str(&text(&buf[..n]));
            break;
        }
        s.set_nonblocking(false).unwrap();
    }
    let elapsed = start.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    let mut silent = TcpStream::connect(p.addr).unwrap();
    let a = read_all(&mut silent, Duration::from_secs(6));
    assert!(a.starts_with("HTTP/1.1 408"), "{a:?}");
    assert_eq!(up.accepted(), 0);
}

/// Inside a CONNECT tunnel the first bytes are checked too: a TLS hello for another name,
/// fragmented or not, and a plain request for another host are cut before they reach the
/// upstream (which saw the TCP connection CONNECT asked for, and nothing else).
#[test]
fn tunnels_check_sni_and_host_before_forwarding() {
    let up = Upstream::start();
    let port = up.port();
    let p = builder()
        .allow(&format!("a.example:{port}"))
        .private("127.0.0.0/8")
        .map("a.example", "127.0.0.1")
        .limits(|l| l.head_timeout = Duration::from_millis(800))
        .start();
    let tunnel = |payload: &[u8]| {
        let mut s = TcpStream::connect(p.addr).unwrap();
        s.write_all(format!("CONNECT a.example:{port} HTTP/1.1\r\n\r\n").as_bytes())
            .unwrap();
        s.write_all(payload).unwrap();
        read_all(&mut s, Duration::from_secs(3))
    };
    let hello = shellcage::net::sni::client_hello_for_tests(Some("evil.example"), &[]);
    let fragmented = shellcage::net::sni::fragment_for_tests(&hello, 1);
    for payload in [
        hello.clone(),
        fragmented,
        b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_vec(),
        b"get / http/1.1\r\nHost: evil.example\r\n\r\n".to_vec(),
        b"GET\t/\tHTTP/1.1\r\nHost: evil.example\r\n\r\n".to_vec(),
        b"GET /aaaa".to_vec(),
        vec![0x16, 3, 1],
    ] {
        let a = tunnel(&payload);
        assert!(
            a.starts_with("HTTP/1.1 200 Connection established\r\n\r\n"),
            "{a:?}"
        );
        assert!(!a.contains("hello from"), "{a:?}");
    }
    assert!(eventually(|| up.accepted() == 7));
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        up.received().iter().all(|r| r.is_empty()),
        "{:?}",
        up.received()
    );
    let reasons = p.reasons("a.example");
    assert!(
        reasons
            .iter()
            .any(|r| r == "TLS server name evil.example differs"),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r == "HTTP host evil.example differs"),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("timed out")),
        "{reasons:?}"
    );
    // Control: the right name goes through.
    let ok = tunnel(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert!(ok.contains("hello from a.example"), "{ok}");
}

#[test]
fn connection_limits_answer_503() {
    let up = Upstream::start();
    let port = up.port();
    let p = builder()
        .allow(&format!("a.example:{port}"))
        .private("127.0.0.0/8")
        .map("a.example", "127.0.0.1")
        .limits(|l| {
            l.max_active = 2;
            l.max_connections = 4;
        })
        .start();
    let open: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(p.addr).unwrap())
        .collect();
    assert!(eventually(|| p.stats().active == 2));
    let a = raw(p.addr, b"CONNECT a.example:1 HTTP/1.1\r\n\r\n");
    assert!(
        a.starts_with("HTTP/1.1 503") && a.contains("at once"),
        "{a}"
    );
    drop(open);
    assert!(eventually(|| p.stats().active == 0));
    let a = connect(&p, &format!("a.example:{port}"));
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    let a = connect(&p, &format!("a.example:{port}"));
    assert!(
        a.starts_with("HTTP/1.1 503") && a.contains("in this run"),
        "{a}"
    );
}

#[test]
fn idle_relays_are_cut() {
    let up = Upstream::start();
    let p = builder()
        .allow(&format!("a.example:{}", up.port()))
        .private("127.0.0.0/8")
        .map("a.example", "127.0.0.1")
        .limits(|l| l.idle_timeout = Duration::from_millis(700))
        .start();
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.write_all(format!("CONNECT a.example:{} HTTP/1.1\r\n\r\n", up.port()).as_bytes())
        .unwrap();
    let start = Instant::now();
    // Reads until the proxy closes the tunnel, or 10 s.
    let a = read_all(&mut s, Duration::from_secs(10));
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_secs(6),
        "the idle tunnel stayed open {elapsed:?}"
    );
}

/// Runs inside a throwaway network namespace where 169.254.169.254, 10.0.0.5, 100.100.100.200
/// and 192.168.1.1 are local addresses with listeners: without allow_private nothing
/// reaches them (the listeners count), with it they are reached (the control).
pub fn private_ranges_inside() {
    shellcage::sys::loopback_up_netns_fd().unwrap();
    let targets = [
        "169.254.169.254",
        "10.0.0.5",
        "100.100.100.200",
        "192.168.1.1",
        "172.16.0.1",
    ];
    let mut sinks = Vec::new();
    for t in targets {
        shellcage::sys::add_local_route_v4(t.parse().unwrap(), 32).unwrap();
        sinks.push(Sink::start_on(format!("{t}:8080").parse().unwrap()));
    }
    let mut b = builder();
    for (i, t) in targets.iter().enumerate() {
        b = b
            .allow(&format!("{t}:8080"))
            .allow(&format!("h{i}.example:8080"))
            .map(&format!("h{i}.example"), t);
    }
    let closed = b.start();
    for (i, t) in targets.iter().enumerate() {
        for target in [format!("{t}:8080"), format!("h{i}.example:8080")] {
            let a = connect(&closed, &target);
            assert!(
                a.starts_with("HTTP/1.1 403") && a.contains(&format!("private address {t}")),
                "{target}: {a}"
            );
        }
    }
    let mut b = builder();
    for (i, t) in targets.iter().enumerate() {
        b = b
            .allow(&format!("h{i}.example:8080"))
            .map(&format!("h{i}.example"), t)
            .private(&format!("{t}/32"));
    }
    let open = b.start();
    for (i, sink) in sinks.iter().enumerate() {
        assert_eq!(
            sink.accepted(),
            0,
            "{} was reached without allow_private",
            targets[i]
        );
        let a = connect(&open, &format!("h{i}.example:8080"));
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
        assert!(
            eventually(|| sink.accepted() == 1),
            "control for {}",
            targets[i]
        );
    }
    println!("checked {} private targets", targets.len());
}

#[test]
fn private_addresses_with_live_listeners_are_never_reached() {
    if !require(userns_ok(), "user and network namespaces (unshare -rmn)") {
        return;
    }
    let out = run_in_netns("private");
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        text(&out.stdout).contains("checked 5 private targets"),
        "{}",
        show(&out)
    );
}

/// A resolver that answers an allowed address and a forbidden one in turn (DNS
/// rebinding): the engine asks once per connection and connects to what it checked, so
/// the forbidden address is never reached.
struct Rebinding {
    calls: std::sync::atomic::AtomicUsize,
}

impl shellcage::net::Resolver for Rebinding {
    fn resolve(&self, _name: &str, port: u16) -> std::io::Result<Vec<std::net::SocketAddr>> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let ip = if n % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" };
        Ok(vec![std::net::SocketAddr::new(ip.parse().unwrap(), port)])
    }
}

#[test]
fn dns_rebinding_cannot_switch_the_checked_address() {
    let up = Upstream::start_on("127.0.0.2:0".parse().unwrap());
    let port = up.port();
    let sink = Sink::start_on(format!("127.0.0.3:{port}").parse().unwrap());
    let resolver = Arc::new(Rebinding {
        calls: std::sync::atomic::AtomicUsize::new(0),
    });
    let p = builder()
        .allow(&format!("a.example:{port}"))
        .private("127.0.0.2/32")
        .resolver(resolver.clone())
        .start();
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(connect(&p, &format!("a.example:{port}")));
    }
    assert!(
        answers[0].starts_with("HTTP/1.1 200") && answers[2].starts_with("HTTP/1.1 200"),
        "{answers:?}"
    );
    assert!(
        answers[1].contains("private address 127.0.0.3")
            && answers[3].contains("private address 127.0.0.3"),
        "{answers:?}"
    );
    assert_eq!(
        resolver.calls.load(std::sync::atomic::Ordering::SeqCst),
        4,
        "one lookup per connection"
    );
    assert_eq!(up.accepted(), 2);
    assert_eq!(sink.accepted(), 0, "the rebound address was reached");
}

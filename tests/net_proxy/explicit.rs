//! Explicit mode with real clients: curl (-x, CONNECT to an HTTPS server with a test CA),
//! Python requests and urllib; what reaches the upstream is canonical.
use crate::support::*;

#[test]
fn curl_http_through_the_proxy() {
    let up = Upstream::start();
    let p = builder()
        .allow(&format!("a.example:{}", up.port()))
        .private("127.0.0.0/8")
        .map("a.example", "127.0.0.1")
        .start();
    let out = clean("curl")
        .args([
            "-sS",
            "-x",
            &p.url(),
            "-H",
            "Proxy-Authorization: Basic c2VjcmV0",
        ])
        .arg(format!("http://a.example:{}/hello", up.port()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        text(&out.stdout),
        format!("hello from a.example:{}\n", up.port())
    );
    let got = up.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let head = &got[0];
    assert!(
        head.starts_with("GET /hello HTTP/1.1\r\nHost: a.example:"),
        "{head}"
    );
    assert!(head.ends_with("Connection: close\r\n\r\n"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("proxy-"),
        "proxy headers leaked: {head}"
    );
    let s = p.stop();
    let r = s.report();
    assert_eq!((r.allowed, r.blocked), (1, 0));
    assert!(r.destinations[0].bytes_in > 0);
    assert_eq!(s.exit_line(), None);
}

#[test]
fn curl_https_over_connect_with_a_test_ca() {
    let Some(ca) = TestCa::new() else {
        assert!(require(false, "openssl"));
        return;
    };
    let up = TlsUpstream::start(&ca);
    let p = builder()
        .allow(&format!("a.example:{}", up.port))
        .private("127.0.0.0/8")
        .map("a.example", "127.0.0.1")
        .start();
    let out = clean("curl")
        .args(["-sS", "--cacert"])
        .arg(ca.ca())
        .args(["-x", &p.url()])
        .arg(format!("https://a.example:{}/x", up.port))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        text(&out.stdout),
        format!("hello from a.example:{}\n", up.port)
    );
    assert_eq!(up.events("sni")[0]["name"], "a.example");
    assert_eq!(
        p.reasons("a.example"),
        vec![format!("allowed by \"a.example:{}\"", up.port)]
    );
}

/// Python requests (HTTP and HTTPS) and urllib read the proxy from the environment.
#[test]
fn python_requests_and_urllib() {
    let Some(ca) = TestCa::new() else {
        assert!(require(false, "openssl"));
        return;
    };
    let tls = TlsUpstream::start(&ca);
    let plain = Upstream::start();
    let p = builder()
        .allow(&format!("a.example:{}", tls.port))
        .allow(&format!("b.example:{}", plain.port()))
        .private("127.0.0.0/8")
        .map("a.example", "127.0.0.1")
        .map("b.example", "127.0.0.1")
        .start();
    let script = format!(
        r#"
import sys, urllib.request
https_url = "https://a.example:{tls}/py"
http_url = "http://b.example:{plain}/py"
try:
    import requests
    print(requests.get(https_url, timeout=10).text, end="")
    print(requests.get(http_url, timeout=10).text, end="")
except ImportError:
    print("no requests", file=sys.stderr)
import ssl
ctx = ssl.create_default_context(cafile="{ca}")
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))
print(opener.open(https_url, timeout=10).read().decode(), end="")
print(urllib.request.urlopen(http_url, timeout=10).read().decode(), end="")
"#,
        tls = tls.port,
        plain = plain.port(),
        ca = ca.ca().display()
    );
    let out = clean(PY)
        .args(["-c", &script])
        .env("HTTP_PROXY", p.url())
        .env("HTTPS_PROXY", p.url())
        .env("REQUESTS_CA_BUNDLE", ca.ca())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let stdout = text(&out.stdout);
    let has_requests = !text(&out.stderr).contains("no requests");
    let want = if has_requests { 2 } else { 1 };
    assert_eq!(
        stdout
            .matches(&format!("hello from a.example:{}", tls.port))
            .count(),
        want,
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches(&format!("hello from b.example:{}", plain.port()))
            .count(),
        want,
        "{stdout}"
    );
}

/// A refused CONNECT names the reason in the status line (pip and urllib show it) and in
/// the body; a refused plain request gets the line as its body.
#[test]
fn refusals_say_what_and_how_to_fix() {
    let up = Upstream::start();
    let p = builder()
        .allow("a.example")
        .map("evil.example", "127.0.0.1")
        .start();
    let answer = raw(
        p.addr,
        b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    );
    assert!(
        answer.starts_with(
            "HTTP/1.1 403 shellcage blocked evil.example:443: not in the allowlist\r\n"
        ),
        "{answer}"
    );
    assert!(
        answer.contains("Proxy-Status: shellcage; error=http_request_denied\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("shellcage: blocked evil.example:443: not in the allowlist (fix: --allow-host evil.example or [network] allow = [\"evil.example\"])\n"),
        "{answer}"
    );
    let out = clean("curl")
        .args(["-sS", "-x", &p.url()])
        .arg(format!("http://evil.example:{}/", up.port()))
        .output()
        .unwrap();
    let body = text(&out.stdout);
    assert!(
        body.contains(&format!("--allow-host evil.example:{}", up.port())),
        "{}",
        show(&out)
    );
    let out = clean(PY)
        .args(["-c", "import urllib.request as u\ntry:\n  u.urlopen('https://evil.example/', timeout=5)\nexcept Exception as e:\n  print(e)"])
        .env("HTTPS_PROXY", p.url())
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("not in the allowlist"),
        "{}",
        show(&out)
    );
    assert_eq!(up.accepted(), 0);
    let line = p.stop().exit_line().unwrap();
    assert_eq!(
        line,
        format!(
            "shellcage: network: blocked 3 connections: evil.example:443 \u{d7}2, evil.example:{}",
            up.port()
        )
    );
}

/// The proxy relays a redirect as it is and never follows it; the client's next request
/// is decided like any other.
#[test]
fn redirects_are_relayed_not_followed() {
    let up = Upstream::start();
    let evil = Upstream::start();
    let p = builder()
        .allow(&format!("a.example:{}", up.port()))
        .private("127.0.0.0/8")
        .map("a.example", "127.0.0.1")
        .map("evil.example", "127.0.0.1")
        .start();
    let url = format!(
        "http://a.example:{}/redirect?to=http://evil.example:{}/loot",
        up.port(),
        evil.port()
    );
    let out = clean("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            &p.url(),
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "302", "{}", show(&out));
    let out = clean("curl")
        .args(["-sS", "-L", "-w", "%{http_code}", "-x", &p.url(), &url])
        .output()
        .unwrap();
    assert!(text(&out.stdout).ends_with("403"), "{}", show(&out));
    assert_eq!(up.accepted(), 2);
    assert_eq!(evil.accepted(), 0, "the redirect target was reached");
    assert!(
        p.reasons("evil.example")
            .iter()
            .all(|r| r == "not in the allowlist")
    );
}

/// 200 tunnels open at once through one engine (every client waits until all 200 are
/// established before sending its request), every one answered.
#[test]
fn two_hundred_concurrent_connections() {
    use std::io::{Read, Write};
    let up = Upstream::start();
    let p = builder()
        .allow(&format!("a.example:{}", up.port()))
        .private("127.0.0.0/8")
        .map("a.example", "127.0.0.1")
        .start();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(200));
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let (addr, port, b) = (p.addr, up.port(), barrier.clone());
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                let connect = format!("CONNECT a.example:{port} HTTP/1.1\r\n\r\n");
                s.write_all(connect.as_bytes()).unwrap();
                let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
                let mut head = vec![0u8; established.len()];
                let got = s.read_exact(&mut head).is_ok() && head == established;
                b.wait();
                let get = format!("GET /{i} HTTP/1.1\r\nHost: a.example\r\n\r\n");
                s.write_all(get.as_bytes()).unwrap();
                got && read_all(&mut s, std::time::Duration::from_secs(20))
                    .starts_with("HTTP/1.1 200 OK")
            })
        })
        .collect();
    let ok = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|&ok| ok)
        .count();
    assert_eq!(ok, 200);
    assert_eq!(up.accepted(), 200);
    assert_eq!(p.stats().peak_active, 200, "{:?}", p.stats());
}

/// A reproducible byte stream (xorshift), so both ends can check every byte.
fn stream(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An upstream that hashes the request body it gets (Content-Length) and answers with a
/// body of `down` stream bytes and the hash in a header.
fn hashing_upstream(down: usize) -> std::net::SocketAddr {
    use sha2::Digest;
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read_exact(&mut b).is_ok() {
                    head.push(b[0]);
                }
                let head = text(&head).to_ascii_lowercase();
                let n: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                let mut hash = sha2::Sha256::new();
                let mut left = n;
                let mut buf = vec![0u8; 65536];
                while left > 0 {
                    let k = s.read(&mut buf[..left.min(65536)]).unwrap();
                    assert!(k > 0, "upload cut short");
                    hash.update(&buf[..k]);
                    left -= k;
                }
                let digest: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
                let body = stream(7, down);
                let _ = s.write_all(
                    format!("HTTP/1.1 200 OK\r\nX-Upload-Sha256: {digest}\r\nContent-Length: {down}\r\nConnection: close\r\n\r\n").as_bytes(),
                );
                let _ = s.write_all(&body);
            });
        }
    });
    addr
}

/// 16 MiB up and 48 MiB down through the relay, absolute-form and CONNECT: every byte
/// arrives, in order, and the upload ends exactly where its Content-Length says.
#[test]
fn bulk_transfers_are_byte_exact_both_ways() {
    use sha2::Digest;
    use std::io::{Read, Write};
    let (up_n, down_n) = (16 << 20, 48 << 20);
    let addr = hashing_upstream(down_n);
    let port = addr.port();
    let p = builder()
        .allow(&format!("a.example:{port}"))
        .private("127.0.0.0/8")
        .map("a.example", "127.0.0.1")
        .start();
    let upload = stream(3, up_n);
    let want_up: String = sha2::Sha256::digest(&upload)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let want_down = stream(7, down_n);
    for tunnel in [false, true] {
        let mut s = std::net::TcpStream::connect(p.addr).unwrap();
        let mut pre = Vec::new();
        if tunnel {
            s.write_all(format!("CONNECT a.example:{port} HTTP/1.1\r\n\r\n").as_bytes())
                .unwrap();
            pre.extend_from_slice(b"HTTP/1.1 200 Connection established\r\n\r\n");
        }
        let target = if tunnel {
            "/".to_string()
        } else {
            format!("http://a.example:{port}/")
        };
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: a.example:{port}\r\nContent-Length: {up_n}\r\n\r\n"
        );
        let writer = {
            let mut w = s.try_clone().unwrap();
            let (head, upload) = (head.clone(), upload.clone());
            std::thread::spawn(move || {
                w.write_all(head.as_bytes()).unwrap();
                w.write_all(&upload).unwrap();
            })
        };
        let mut got = Vec::new();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        s.read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        assert!(got.starts_with(&pre), "tunnel={tunnel}");
        let got = &got[pre.len()..];
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = text(&got[..end]);
        assert!(
            head.contains(&format!("X-Upload-Sha256: {want_up}")),
            "tunnel={tunnel}: {head}"
        );
        assert!(
            got[end..] == want_down[..],
            "tunnel={tunnel}: download differs ({} bytes)",
            got.len() - end
        );
    }
    let r = p.stop().report();
    let d = &r.destinations[0];
    assert_eq!(d.count, 2);
    assert!(
        d.bytes_out >= 2 * up_n as u64 && d.bytes_in >= 2 * down_n as u64,
        "{d:?}"
    );
}

/// curl's chunked upload (with Expect: 100-continue) is forwarded chunk for chunk and ends
/// at its last chunk.
#[test]
fn chunked_upload_with_curl() {
    let up = Upstream::start();
    let p = builder()
        .allow(&format!("a.example:{}", up.port()))
        .private("127.0.0.0/8")
        .map("a.example", "127.0.0.1")
        .start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    let body = stream(11, 300_000);
    std::fs::write(&file, &body).unwrap();
    let out = clean("curl")
        .args([
            "-sS",
            "-x",
            &p.url(),
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
        ])
        .arg(format!("@{}", file.display()))
        .arg(format!("http://a.example:{}/up", up.port()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(eventually(|| up
        .received()
        .first()
        .is_some_and(|r| r.ends_with("0\r\n\r\n"))));
    let raw = up.conns_raw().remove(0);
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = text(&raw[..end]);
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    let mut rest = &raw[end..];
    let mut decoded = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(text(&rest[..line_end]).split(';').next().unwrap(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        decoded.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    assert_eq!(rest, b"\r\n");
    assert!(decoded == body, "chunked body differs");
}

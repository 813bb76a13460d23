//! Transparent mode in a throwaway network namespace: the local route for the reserved
//! range, listeners created inside and handed out, glibc's resolver pointed at the
//! engine's DNS, and real clients (Python sockets, curl) that know nothing of a proxy.
use std::net::TcpListener;
use std::time::Duration;

use crate::support::*;

/// Inside a fresh namespace: the route makes every address of the range local, a 0.0.0.0
/// listener accepts a connection to any of them and sees which one was dialled.
pub fn route_inside() {
    shellcage::sys::loopback_up_netns_fd().unwrap();
    shellcage::sys::add_local_route_v4("198.18.0.0".parse().unwrap(), 15).unwrap();
    let again = shellcage::sys::add_local_route_v4("198.18.0.0".parse().unwrap(), 15).unwrap_err();
    assert_eq!(
        again.to_string(),
        "RTM_NEWROUTE(local 198.18.0.0/15 dev lo) => EEXIST: File exists"
    );
    // iproute2's view of the same table, where it is installed (often /usr/sbin, off the
    // PATH of an unprivileged CI user).
    if let Some(ip) = ["ip", "/usr/sbin/ip", "/sbin/ip"]
        .into_iter()
        .find(|c| have(c))
    {
        let routes = clean(ip)
            .args(["route", "show", "table", "local"])
            .output()
            .unwrap();
        assert!(
            text(&routes.stdout).contains("local 198.18.0.0/15 dev lo"),
            "{}",
            show(&routes)
        );
    }
    let l = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = l.local_addr().unwrap().port();
    for addr in ["198.18.0.1", "198.18.3.4", "198.19.255.254"] {
        let _c = std::net::TcpStream::connect((addr, port)).unwrap();
        let (s, _) = l.accept().unwrap();
        assert_eq!(
            s.local_addr().unwrap().to_string(),
            format!("{addr}:{port}")
        );
    }
    assert!(
        std::net::TcpStream::connect(("198.20.0.1", port)).is_err(),
        "outside the range"
    );
}

#[test]
fn local_route_makes_the_reserved_range_land_on_listeners() {
    if !require(userns_ok(), "user and network namespaces (unshare -rmn)") {
        return;
    }
    let out = run_in_netns("route");
    assert!(
        out.status.success() && text(&out.stdout).contains("1 passed"),
        "{}",
        show(&out)
    );
}

/// A namespace with the route, the DNS listeners and transparent listeners on `ports`,
/// served by an engine outside with `allow` rules (all names resolve to 127.0.0.1).
fn setup(
    ports: &[u16],
    allow: &[String],
    tune: impl FnOnce(&mut shellcage::net::Limits),
) -> Option<(Netns, Proxy)> {
    if !require(userns_ok(), "user and network namespaces (unshare -rmn)") {
        return None;
    }
    let mut ns = Netns::start(NetnsSpec {
        transparent: ports.to_vec(),
        dns: true,
        route: true,
        ..NetnsSpec::default()
    });
    let mut listeners = ns.listeners.take().unwrap();
    listeners.explicit.clear();
    let mut b = builder().listeners(listeners).private("127.0.0.0/8");
    for a in allow {
        b = b.allow(a);
    }
    for name in ["a.example", "b.example", "evil.example"] {
        b = b.map(name, "127.0.0.1");
    }
    b = b.limits(tune);
    Some((ns, b.start()))
}

const RAW_CLIENT: &str = r#"
import socket, sys
host, port, header = sys.argv[1], int(sys.argv[2]), sys.argv[3]
addr = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
print("addr", addr[0])
s = socket.create_connection(addr, timeout=5)
s.sendall(("GET /raw HTTP/1.1\r\nHost: %s\r\n\r\n" % header).encode())
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.decode(errors="replace"))
"#;

/// A plain-socket Python client, resolving with glibc through the engine's DNS: the right
/// Host goes through, another host is refused with a 403 and never reaches the upstream.
#[test]
fn raw_socket_client_in_transparent_mode() {
    let up = Upstream::start();
    let port = up.port();
    let Some((mut ns, p)) = setup(&[port], &[format!("a.example:{port}")], |_| {}) else {
        return;
    };
    let script = format!("{PY} -c '{RAW_CLIENT}' a.example {port} a.example:{port}");
    let (code, out, err) = ns.sh(&script);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with("addr 198.18.0.1\n"), "{out}");
    assert!(
        out.contains(&format!("hello from a.example:{port}")),
        "{out}"
    );
    let (code, out, err) = ns.sh(&format!(
        "{PY} -c '{RAW_CLIENT}' a.example {port} evil.example"
    ));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("HTTP/1.1 403") && out.contains("HTTP host evil.example differs"),
        "{out}"
    );
    assert_eq!(up.accepted(), 1);
    let got = up.received();
    assert!(
        got[0].starts_with(&format!("GET /raw HTTP/1.1\r\nHost: a.example:{port}\r\n")),
        "{got:?}"
    );
    let s = p.stop();
    assert!(
        s.exit_line()
            .unwrap()
            .contains(&format!("a.example:{port}"))
    );
}

/// curl with no proxy settings at all, HTTPS through the transparent listener to a TLS
/// upstream on the host, certificate checked against the test CA.
#[test]
fn curl_https_in_transparent_mode() {
    let Some(ca) = TestCa::new() else {
        assert!(require(false, "openssl"));
        return;
    };
    let up = TlsUpstream::start(&ca);
    let port = up.port;
    let Some((mut ns, p)) = setup(&[port], &[format!("a.example:{port}")], |_| {}) else {
        return;
    };
    let (code, out, err) = ns.sh(&format!(
        "curl -sS --max-time 10 --cacert {} https://a.example:{port}/t",
        ca.ca().display()
    ));
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out, format!("hello from a.example:{port}\n"));
    assert_eq!(up.events("request").len(), 1);
    assert_eq!(
        p.reasons("a.example"),
        vec![format!("allowed by \"a.example:{port}\"")]
    );
}

const TLS_CLIENT: &str = r#"
import socket, ssl, sys, time
host, port, sni, delay = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.create_connection((host, port), timeout=5)
time.sleep(delay)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
try:
    t = ctx.wrap_socket(s, server_hostname=sni)
    t.sendall(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
    print("got", t.recv(100))
except (OSError, ssl.SSLError) as e:
    print("refused", type(e).__name__)
"#;

/// A TLS hello whose server name differs from the name the address was handed out for is
/// cut before any byte reaches the upstream: at once (no connection at all), or after a
/// wait past `first_bytes_wait` (a TCP connection, but no hello).
#[test]
fn sni_that_differs_from_the_resolved_name_is_refused() {
    let Some(ca) = TestCa::new() else {
        assert!(require(false, "openssl"));
        return;
    };
    let up = TlsUpstream::start(&ca);
    let port = up.port;
    let allow = [format!("a.example:{port}"), format!("evil.example:{port}")];
    // A wait long enough that a loaded machine still sends the hello inside it (the
    // first case), and a client that waits well past it (the second).
    let Some((mut ns, p)) = setup(&[port], &allow, |l| {
        l.first_bytes_wait = Duration::from_millis(1500)
    }) else {
        return;
    };
    let (_, out, err) = ns.sh(&format!(
        "{PY} -c '{TLS_CLIENT}' a.example {port} evil.example 0"
    ));
    assert!(out.starts_with("refused"), "{out}\n{err}");
    assert!(eventually(|| p
        .reasons("a.example")
        .iter()
        .any(|r| r == "TLS server name evil.example differs")));
    assert_eq!(up.events("conn").len(), 0, "the upstream was contacted");
    let (_, out, err) = ns.sh(&format!(
        "{PY} -c '{TLS_CLIENT}' a.example {port} evil.example 2.5"
    ));
    assert!(out.starts_with("refused"), "{out}\n{err}");
    assert!(eventually(|| up.events("conn").len() == 1));
    std::thread::sleep(Duration::from_millis(300));
    assert!(up.events("sni").is_empty(), "{:?}", up.events("sni"));
    assert!(up.events("request").is_empty());
    // Control: the same client with the right name gets through.
    let (_, out, err) = ns.sh(&format!(
        "{PY} -c '{TLS_CLIENT}' a.example {port} a.example 0"
    ));
    assert!(out.starts_with("got b'HTTP/1.1 200"), "{out}\n{err}");
}

/// Connections to an address the resolver never handed out, to loopback on a transparent
/// port, to a name allowed on another port only, or to a port without a listener: none
/// reaches an upstream.
#[test]
fn unmapped_addresses_and_other_ports_are_refused() {
    let up = Upstream::start();
    let other = Upstream::start();
    let (p1, p2) = (up.port(), other.port());
    let allow = [format!("a.example:{p1}"), format!("b.example:{p2}")];
    let Some((mut ns, p)) = setup(&[p1, p2], &allow, |_| {}) else {
        return;
    };
    let script = format!(
        r#"
import socket
def attempt(addr, port):
    try:
        s = socket.create_connection((addr, port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        print(addr, port, repr(s.recv(4096)[:12]))
    except OSError as e:
        print(addr, port, type(e).__name__)
a = socket.gethostbyname("a.example")
attempt("198.18.9.9", {p1})
attempt("127.0.0.1", {p1})
attempt(a, {p2})
attempt(a, {p1} + 1 if {p1} + 1 != {p2} else {p1} + 2)
"#
    );
    let (code, out, err) = ns.sh(&format!("{PY} -c '{script}'"));
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    // Closed without an answer (a reset when the request was still unread).
    for (line, addr) in lines.iter().zip(["198.18.9.9", "127.0.0.1"]) {
        let closed = [
            format!("{addr} {p1} b''"),
            format!("{addr} {p1} ConnectionResetError"),
        ];
        assert!(closed.contains(&line.to_string()), "{out}");
    }
    assert!(lines[2].ends_with("b'HTTP/1.1 403'"), "{out}");
    assert!(lines[3].ends_with("ConnectionRefusedError"), "{out}");
    assert_eq!(up.accepted() + other.accepted(), 0);
    let s = p.stop();
    let r = s.report();
    let reasons: Vec<String> = r.destinations.iter().map(|d| d.reason.clone()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("198.18.9.9") && r.contains("not handed out")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("127.0.0.1") && r.contains("not handed out")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("port not allowed")),
        "{reasons:?}"
    );
}

/// glibc's resolver inside the namespace: A answers from the reserved range, AAAA has no
/// data, names not allowed do not exist (and are recorded), nothing is forwarded.
#[test]
fn glibc_resolver_inside_gets_reserved_addresses() {
    let Some((mut ns, p)) = setup(&[], &["a.example".into(), "*.test.example".into()], |_| {})
    else {
        return;
    };
    let script = r#"
import socket
for name, fam in [("a.example", socket.AF_INET), ("x.test.example", socket.AF_INET),
                  ("a.example", socket.AF_INET), ("a.example", socket.AF_INET6),
                  ("evil.example", socket.AF_INET), ("test.example", socket.AF_INET)]:
    try:
        print(name, sorted({i[4][0] for i in socket.getaddrinfo(name, 443, fam)}))
    except socket.gaierror as e:
        print(name, "error", e.errno)
"#;
    let (code, out, err) = ns.sh(&format!("{PY} -c '{script}'"));
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "a.example ['198.18.0.1']");
    assert_eq!(lines[1], "x.test.example ['198.18.0.2']");
    assert_eq!(lines[2], "a.example ['198.18.0.1']");
    assert!(lines[3].starts_with("a.example error"), "{out}");
    assert!(lines[4].starts_with("evil.example error"), "{out}");
    assert!(lines[5].starts_with("test.example error"), "{out}");
    let line = p.stop().exit_line().unwrap();
    assert!(
        line.contains("refused ") && line.contains("evil.example") && line.contains("test.example"),
        "{line}"
    );
}

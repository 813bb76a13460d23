//! Guarantee 4 (no network) and the network half of guarantee 8 (Landlock TCP
//! bind/connect denial): host listeners on 127.0.0.1 and ::1 see nothing,
//! UDP never arrives, only `lo` exists, foreign socket families are refused.
//! Controls: `--net host` reaches the host, `--net loopback` allows a server
//! and a client inside the sandbox.
use crate::common::*;
use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};

/// Python that connects to each `host port` pair and prints the outcome.
fn connect_script(targets: &[(String, u16)]) -> String {
    let list: Vec<String> = targets
        .iter()
        .map(|(h, p)| format!("(\"{h}\", {p})"))
        .collect();
    format!(
        "import socket\nfor h, p in [{}]:\n  try:\n    socket.create_connection((h, p), timeout=2)\n    print('connected', h)\n  except OSError as e:\n    print('refused', h, e.errno)\n",
        list.join(", ")
    )
}

fn listeners() -> Vec<(TcpListener, String, u16)> {
    let mut out = Vec::new();
    for host in ["127.0.0.1", "::1"] {
        match TcpListener::bind((host, 0)) {
            Ok(l) => {
                l.set_nonblocking(true).unwrap();
                let port = l.local_addr().unwrap().port();
                out.push((l, host.to_string(), port));
            }
            // No IPv6 on this host: the v4 listener still proves the point.
            Err(e) => eprintln!("no listener on {host}: {e}"),
        }
    }
    assert!(!out.is_empty());
    out
}

fn run_py(net: &[&str], code: &str) -> std::process::Output {
    let (ws, home) = (Workspace::new(), Home::new());
    let mut args = vec!["run", "--workspace", ws.path().to_str().unwrap()];
    args.extend_from_slice(net);
    args.extend_from_slice(&["--", PY, "-c", code]);
    shellcage(Some(home.path()), &args).output().unwrap()
}

#[test]
fn host_tcp_listeners_are_unreachable() {
    needs_sandbox!();
    let ls = listeners();
    let targets: Vec<_> = ls.iter().map(|(_, h, p)| (h.clone(), *p)).collect();
    let out = run_py(&[], &connect_script(&targets));
    expect_code(&out, 0);
    let text = stdout(&out);
    assert_eq!(text.matches("refused").count(), ls.len(), "{text}");
    for (l, h, _) in &ls {
        // Landlock denies the connect (EACCES); without it the empty netns
        // would answer ECONNREFUSED.
        assert!(text.contains(&format!("refused {h} 13\n")), "{text}");
        let e = l.accept().unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::WouldBlock,
            "listener on {h} saw a connection"
        );
    }
}

#[test]
fn net_host_reaches_the_host_listener() {
    needs_sandbox!();
    // The control for the test above: the same script with --net host connects.
    let ls = listeners();
    let targets: Vec<_> = ls.iter().map(|(_, h, p)| (h.clone(), *p)).collect();
    let out = run_py(&["--net", "host"], &connect_script(&targets));
    expect_code(&out, 0);
    assert_eq!(
        stdout(&out).matches("connected").count(),
        ls.len(),
        "{}",
        stdout(&out)
    );
    for (l, h, _) in &ls {
        assert!(l.accept().is_ok(), "listener on {h} saw nothing");
    }
}

#[test]
fn udp_to_the_host_never_arrives() {
    needs_sandbox!();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let c = canary();
    let code = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range(3):\n  try:\n    s.sendto(b'{c}', ('127.0.0.1', {port}))\n    print('sent')\n  except OSError as e:\n    print('error', e.errno)\n"
    );
    let out = run_py(&[], &code);
    expect_code(&out, 0);
    // The datagrams go to the sandbox's own loopback, never to the host's.
    sock.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    let got = sock.recv_from(&mut buf);
    assert!(got.is_err(), "host received {:?}", got);
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
}

#[test]
fn host_abstract_unix_sockets_are_unreachable() {
    needs_sandbox!();
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    let name = canary();
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let l = UnixListener::bind_addr(&addr).unwrap();
    l.set_nonblocking(true).unwrap();
    let code = format!(
        "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n  s.connect('\\0{name}')\n  print('connected')\nexcept OSError as e:\n  print('refused', e.errno)\n"
    );
    let out = run_py(&[], &code);
    expect_code(&out, 0);
    assert!(stdout(&out).starts_with("refused"), "{}", stdout(&out));
    assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
}

#[test]
fn only_loopback_exists() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(
        &ws,
        &home,
        &[],
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /sys/class/net/lo/operstate 2>/dev/null; readlink /proc/self/ns/net",
    );
    expect_code(&out, 0);
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("lo"), "{text}");
    let ns = lines.next_back().unwrap();
    assert_ne!(
        ns,
        std::fs::read_link("/proc/self/ns/net")
            .unwrap()
            .to_string_lossy()
    );
    assert_eq!(lines.next(), None, "{text}");
}

#[test]
fn foreign_socket_families_are_refused() {
    needs_sandbox!();
    // AF_VSOCK (40) reaches the host from a VM; AF_PACKET (17) sniffs and forges.
    let code = "import socket\nfor fam, ty in [(40, socket.SOCK_STREAM), (17, socket.SOCK_RAW), (16, socket.SOCK_RAW), (1, socket.SOCK_STREAM)]:\n  try:\n    socket.socket(fam, ty)\n    print(fam, 'ok')\n  except OSError as e:\n    print(fam, e.errno)\n";
    let out = run_py(&[], code);
    expect_code(&out, 0);
    // EAFNOSUPPORT (97) from seccomp; netlink (16) and unix (1) stay allowed.
    assert_eq!(stdout(&out), "40 97\n17 97\n16 ok\n1 ok\n");
}

#[test]
fn tcp_bind_is_denied_by_landlock_in_the_default_profile() {
    needs_sandbox!();
    let code = "import socket\nfor fam, h in [(socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')]:\n  s = socket.socket(fam)\n  try:\n    s.bind((h, 0))\n    print('bound')\n  except OSError as e:\n    print(e.errno)\n";
    let out = run_py(&[], code);
    expect_code(&out, 0);
    // EACCES: Landlock's TCP bind rule (the netns alone would allow binding lo).
    assert_eq!(stdout(&out), "13\n13\n", "{}", stderr(&out));
}

#[test]
fn net_loopback_allows_a_server_and_client_inside() {
    needs_sandbox!();
    let c = canary();
    let code = format!(
        "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen()\nc = socket.create_connection(s.getsockname())\na, _ = s.accept()\nc.sendall(b'{c}')\nprint(a.recv(100).decode())\n"
    );
    let out = run_py(&["--net", "loopback"], &code);
    expect_code(&out, 0);
    assert_eq!(stdout(&out), format!("{c}\n"));
    // And the host listener is still out of reach in loopback mode.
    let ls = listeners();
    let targets: Vec<_> = ls.iter().map(|(_, h, p)| (h.clone(), *p)).collect();
    let out = run_py(&["--net", "loopback"], &connect_script(&targets));
    expect_code(&out, 0);
    assert_eq!(stdout(&out).matches("refused").count(), ls.len());
    for (l, _, _) in &ls {
        assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
    }
}

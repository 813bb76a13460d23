//! Network: no packet reaches a host listener; no host socket is reachable.
//! (A named Unix socket inside the workspace IS reachable: the workspace is
//! shared by design, so a socket there is something the user put in it. The
//! cases use sockets outside the workspace.)

use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;

use crate::harness::*;

fn tcp_case(c: &Ctx, host: &str) {
    let l = TcpListener::bind((host, 0)).unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let out = c.probe_sc(&[], &["tcp", host, &port]);
    let r = assert_errno(
        &out,
        &[
            "ECONNREFUSED",
            "ENETUNREACH",
            "EADDRNOTAVAIL",
            "EACCES",
            "EPERM",
            "EAFNOSUPPORT",
        ],
    );
    c.seen(&format!("{r}; listener saw nothing"));
    assert!(tcp_saw_nothing(&l), "the host listener got a connection");
    assert_ok(&c.probe_host(&["tcp", host, &port]));
    assert!(tcp_saw_connection(&l), "control connection not seen");
}

attack!(net_tcp_host_loopback, "network", |c| {
    tcp_case(&c, "127.0.0.1")
});

attack!(net_tcp_host_interface_address, "network", |c| {
    let Some(addr) = host_ipv4() else {
        crate::common::require(false, "a non-loopback IPv4 address");
        return;
    };
    tcp_case(&c, &addr.to_string());
});

attack!(net_tcp_ipv6_loopback, "network", |c| {
    if !crate::common::require(TcpListener::bind("[::1]:0").is_ok(), "IPv6 ::1 on the host") {
        return;
    }
    tcp_case(&c, "::1");
});

attack!(net_tcp_loopback_with_net_loopback_mode, "network", |c| {
    // --net loopback gives a *private* loopback: still not the host's.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let out = c.probe_sc(&["--net", "loopback"], &["tcp", "127.0.0.1", &port]);
    let r = assert_errno(&out, &["ECONNREFUSED"]);
    c.seen(&r);
    assert!(tcp_saw_nothing(&l));
    // Control: the protection switched off (--net host) reaches it.
    assert_ok(&c.probe_sc(&["--net", "host"], &["tcp", "127.0.0.1", &port]));
    assert!(tcp_saw_connection(&l));
});

fn udp_case(c: &Ctx, kind: &str) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port().to_string();
    let out = c.probe_sc(&[], &[kind, "127.0.0.1", &port]);
    let r = out.result();
    // The datagram may be "sent" into the private loopback: what matters is
    // that the host socket receives nothing.
    assert!(
        r.starts_with("OK") || r.starts_with("ERR "),
        "probe did not run: {out:?}"
    );
    c.seen(&format!("{r}; host socket received nothing"));
    assert!(!udp_received(&s), "the host UDP socket received a datagram");
    assert_ok(&c.probe_host(&[kind, "127.0.0.1", &port]));
    assert!(udp_received(&s), "control datagram not received");
}

attack!(net_udp_host_loopback, "network", |c| {
    udp_case(&c, "udp")
});
attack!(net_dns_query_to_host_resolver, "network", |c| {
    udp_case(&c, "dns")
});

attack!(net_bash_dev_tcp, "network", |c| {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let script = format!("bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}'; echo rc=$?");
    let out = c.sc(&[], &script);
    c.seen(out.all().trim());
    assert!(out.stdout.contains("rc=1"), "{out:?}");
    // Refused by the empty loopback, or by Landlock's TCP rule (EACCES).
    assert!(
        out.stderr.contains("Connection refused") || out.stderr.contains("Permission denied"),
        "{out:?}"
    );
    assert!(tcp_saw_nothing(&l));
    assert!(c.host(&script).stdout.contains("rc=0"));
    assert!(tcp_saw_connection(&l));
});

attack!(net_abstract_unix_socket, "network", |c| {
    use std::os::linux::net::SocketAddrExt;
    let name = marker();
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let l = UnixListener::bind_addr(&addr).unwrap();
    let out = c.probe_sc(&[], &["abstract", &name]);
    let r = assert_errno(&out, &["ECONNREFUSED", "EPERM", "EACCES"]);
    c.seen(&r);
    assert!(!unix_saw_connection(&l, false));
    assert_ok(&c.probe_host(&["abstract", &name]));
    assert!(unix_saw_connection(&l, true));
});

attack!(net_named_unix_socket_outside_workspace, "network", |c| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let l = UnixListener::bind(&path).unwrap();
    let p = path.display().to_string();
    let out = c.probe_sc(&[], &["unix", &p]);
    let r = assert_errno(&out, &["ENOENT", "EACCES", "ECONNREFUSED"]);
    c.seen(&r);
    assert!(!unix_saw_connection(&l, false));
    assert_ok(&c.probe_host(&["unix", &p]));
    assert!(unix_saw_connection(&l, true));
});

attack!(net_ssh_agent_socket, "network", |c| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ssh-agent.sock");
    let l = UnixListener::bind(&path).unwrap();
    c.env
        .push(("SSH_AUTH_SOCK".into(), path.display().to_string()));
    let script = format!(
        "{PY} .probe.py unix \"${{SSH_AUTH_SOCK:-{}}}\"",
        path.display()
    );
    let out = c.sc(&[], &script);
    let r = assert_errno(&out, &["ENOENT", "EACCES", "ECONNREFUSED"]);
    c.seen(&r);
    assert!(!unix_saw_connection(&l, false));
    assert_ok(&c.host(&format!("{PY} .probe.py unix \"$SSH_AUTH_SOCK\"")));
    assert!(unix_saw_connection(&l, true));
});

/// Create a socket of FAMILY/TYPE/PROTO: refused inside (by the filter, or by
/// the kernel for lack of CAP_NET_RAW); on the host, root creates it.
fn socket_case(c: &Ctx, family: &str, ty: &str, proto: &str) {
    let out = c.probe_sc(&[], &["socket", family, ty, proto]);
    let r = assert_errno(&out, &["EAFNOSUPPORT", "EPERM", "EACCES"]);
    c.seen(&r);
    let control = c.probe_host(&["socket", family, ty, proto]);
    assert_ok_if_root(&control);
}

attack!(net_raw_socket, "network", |c| {
    socket_case(&c, "2", "3", "1")
});
attack!(net_packet_socket, "network", |c| {
    socket_case(&c, "17", "3", "768")
});
attack!(net_vsock_socket, "network", |c| {
    socket_case(&c, "40", "1", "0")
});

attack!(net_ping_host, "network", |c| {
    // Both ways `ping` opens its socket: ICMP datagram (unprivileged ping) and raw ICMP.
    let dgram = c.probe_sc(&[], &["socket", "2", "2", "1"]);
    let raw = c.probe_sc(&[], &["socket", "2", "3", "1"]);
    let r = format!("dgram {} / raw {}", dgram.result(), raw.result());
    c.seen(&r);
    assert_errno(&dgram, &["EAFNOSUPPORT", "EPERM", "EACCES"]);
    assert_errno(&raw, &["EAFNOSUPPORT", "EPERM", "EACCES"]);
    // Control: on the host, root can open the raw ICMP socket ping uses.
    assert_ok_if_root(&c.probe_host(&["socket", "2", "3", "1"]));
});

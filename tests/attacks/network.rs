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

const DNSFLOOD: &str = include_str!("dnsflood.py");

/// The flood script (N datagrams) in `shellcage run EXTRA`, on pipes.
fn flood(c: &Ctx, extra: &[&str], n: &str) -> Out {
    Out::from_output(c.sc_cmd(extra, &[PY, ".dnsflood.py", n]).output().unwrap())
}

/// `shellcage run -- ARGV` on a terminal, in a clean environment: what the terminal showed.
fn on_tty(c: &Ctx, argv: &[&str]) -> String {
    let bin = crate::common::bin().display().to_string();
    let path = format!("PATH={}", std::env::var("PATH").unwrap_or_default());
    let home = format!("HOME={}", c.home().display());
    let ws = c.ws.path().display().to_string();
    let mut full = vec![
        "env",
        "-i",
        &path,
        &home,
        "LANG=C.UTF-8",
        &bin,
        "run",
        "--workspace",
        &ws,
        "--",
    ];
    full.extend_from_slice(argv);
    crate::common::under_pty(c.ws.path(), &full)
}

/// `KEY a b …` in the flood script's output: the numbers after KEY.
fn numbers(out: &str, key: &str) -> Vec<i64> {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key:?} line in {out:?}"))
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

// Network mode none: the init answers name lookups itself (sandbox::lookups). A hostile
// command floods it with distinct names, the longest names, names holding terminal escapes
// and a fake `shellcage:` line, garbage datagrams, and tries TCP. Every question is
// answered and nothing else happens: the init's memory stays flat, the report keeps at
// most 16 names (the rest counted), the terminal gets exactly one `shellcage:` line, with
// no control character, and TCP finds no listener. As root, a host socket on 127.0.0.1:53
// receives nothing. Controls: in `--net loopback` nobody answers (so "answered" measures
// the responder); the command's own escape bytes do reach the terminal (so the test would
// see shellcage's if it printed any); as root, the same flood with `--net host` reaches
// the host socket.
attack!(
    net_lookup_responder_flood_garbage_and_huge_names,
    "network",
    |c| {
        std::fs::write(c.ws.path().join(".dnsflood.py"), DNSFLOOD).unwrap();
        let host53 = if crate::common::is_root() {
            UdpSocket::bind("127.0.0.1:53").ok()
        } else {
            None
        };
        let report = c.ws.path().join(".report.json");
        let rep = report.to_str().unwrap();
        let out = flood(&c, &["--report", "json", "--report-file", rep], "20000");
        let rss = numbers(&out.stdout, "RSS");
        let udp = numbers(&out.stdout, "UDP sent");
        let tcp = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("TCP "))
            .unwrap_or("")
            .to_string();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let egress = &json["egress"];
        let listed = egress["destinations"].as_array().map_or(0, Vec::len);
        let blocked = egress["blocked"].as_u64().unwrap_or(0);
        c.seen(&format!(
        "sent {} answered {}; init RssAnon {} -> {} kB; report lists {listed} names of {blocked} lookups; TCP {tcp}",
        udp[0], udp[1], rss[0], rss[1]
    ));
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(
            udp[0] > 10_000 && udp[1] > 1_000,
            "the flood was not answered: {out:?}"
        );
        assert!(
            rss[0] > 0 && rss[1] - rss[0] < 1024,
            "the init grew: {rss:?}"
        );
        assert!((1..=16).contains(&listed), "{egress}");
        let sum: u64 = egress["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["count"].as_u64().unwrap())
            .sum();
        assert_eq!(
            egress["untracked"].as_u64().unwrap_or(0),
            blocked - sum,
            "{egress}"
        );
        assert!(blocked >= udp[1] as u64 / 2, "{egress}");
        assert!(tcp == "ERR ECONNREFUSED" || tcp == "ERR EACCES", "{tcp}");
        assert!(
            !out.stderr.contains("shellcage:"),
            "not a terminal: no line: {}",
            out.stderr
        );
        if let Some(s) = &host53 {
            assert!(!udp_received(s), "a query reached the host's 127.0.0.1:53");
        }
        // On a terminal: one closing line, bounded, with no control character.
        let shown = on_tty(&c, &[PY, ".dnsflood.py", "4000"]);
        let ours: Vec<&str> = shown
            .lines()
            .filter(|l| l.starts_with("shellcage:"))
            .collect();
        assert_eq!(ours.len(), 1, "{shown:?}");
        assert!(
            ours[0].starts_with(
                "shellcage: the sandbox has no network (mode none): refused name lookups: "
            ),
            "{}",
            ours[0]
        );
        assert!(
            ours[0].len() < 600 && !ours[0].chars().any(|ch| ch.is_control()),
            "{:?}",
            ours[0]
        );
        // Controls.
        let lo = flood(&c, &["--net", "loopback"], "2000");
        assert_eq!(
            numbers(&lo.stdout, "UDP sent")[1],
            0,
            "nobody answers in loopback mode: {lo:?}"
        );
        let raw = on_tty(
            &c,
            &["sh", "-c", "printf '\\033]0;owned\\007\\n' >&2; exit 1"],
        );
        assert!(
            raw.contains("\x1b]0;owned\x07"),
            "the terminal shows what the command writes: {raw:?}"
        );
        if let Some(s) = &host53 {
            flood(&c, &["--net", "host"], "200");
            assert!(
                udp_received(s),
                "control: the flood did not reach the host socket with --net host"
            );
        }
    }
);

// The init reads the responder's datagrams with no capability left (it drops them once
// the command is forked): a parser bug would reach nothing the command lacks. Control:
// without the responder (`--net loopback`) the init keeps its namespace capabilities, so
// the probe sees them.
attack!(net_lookup_responder_holds_no_capability, "network", |c| {
    let out = c.sc(&[], "grep CapEff /proc/1/status");
    c.seen(out.stdout.trim());
    assert!(out.stdout.contains("CapEff:\t0000000000000000"), "{out:?}");
    // (Cold: a session's pid 1 drops its capabilities whatever the mode.)
    let control = c.sc(
        &["--no-session", "--net", "loopback"],
        "grep CapEff /proc/1/status",
    );
    assert!(
        control.stdout.contains("CapEff:") && !control.stdout.contains("CapEff:\t0000000000000000"),
        "{control:?}"
    );
});

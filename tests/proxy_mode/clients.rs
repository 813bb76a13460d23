//! curl and Python in explicit mode (the proxy variables shellcage sets) and in
//! transparent mode (no proxy variables: names resolve through the proxy's resolver to
//! reserved addresses whose connections land on the proxy); the refusal line, the exit
//! line and the report.

use crate::cage::{Cage, NO_PROXY_VARS, show};
use crate::common::{stderr, stdout};
use crate::support::{TestCa, TlsUpstream, Upstream};

#[test]
fn curl_over_http_and_https_through_the_explicit_proxy() {
    let up = Upstream::start();
    let Some(ca) = TestCa::new() else {
        crate::common::require(false, "openssl");
        return;
    };
    let tls = TlsUpstream::start(&ca);
    let Some(cage) = Cage::new(&format!(
        "allow = [\"a.example:{}\", \"a.example:{}\"]",
        up.port(),
        tls.port
    )) else {
        return;
    };
    let ca_file = cage.give(&ca.ca());
    let out = cage.sh(
        &[],
        &format!(
            "echo \"proxy=$https_proxy\"; curl -sS -m 20 http://a.example:{}/plain && curl -sS -m 20 --cacert {ca_file} https://a.example:{}/tls",
            up.port(),
            tls.port
        ),
    );
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{}", show(&out));
    assert!(o.contains("proxy=http://127.0.0.1:3128"), "{}", show(&out));
    assert!(
        o.contains(&format!("hello from a.example:{}", up.port())),
        "{}",
        show(&out)
    );
    assert!(
        o.contains(&format!("hello from a.example:{}", tls.port)),
        "{}",
        show(&out)
    );
    // The upstreams saw the requests, with the name the client used.
    let got = up.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("GET /plain HTTP/1.1\r\n"), "{got:?}");
    assert!(
        got[0].contains(&format!("\r\nHost: a.example:{}\r\n", up.port())),
        "{got:?}"
    );
    let sni: Vec<_> = tls
        .events("sni")
        .iter()
        .map(|v| v["name"].clone())
        .collect();
    assert_eq!(sni, ["a.example"], "{sni:?}");
    // Nothing was refused: no exit line.
    assert!(!e.contains("shellcage: network:"), "{e}");
}

#[test]
fn a_refusal_names_the_host_the_rule_and_the_flag_and_the_upstream_sees_nothing() {
    let up = Upstream::start();
    let port = up.port();
    let Some(cage) = Cage::new(&format!("allow = [\"a.example:{port}\"]")) else {
        return;
    };
    let script = format!(
        "curl -sS -m 20 -o body -w '%{{http_code}}\\n' http://b.example:{port}/x; cat body; curl -sS -m 20 https://evil.example:{port}/ ; echo rc=$?"
    );
    let out = cage.sh(&[], &script);
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(o.starts_with("403\n"), "{}", show(&out));
    assert!(
        o.contains(&format!(
            "shellcage: blocked b.example:{port}: not in the allowlist (fix: --allow-host b.example:{port} or [network] allow = [\"b.example:{port}\"])"
        )),
        "{}",
        show(&out)
    );
    // curl's own line for a refused CONNECT, then the exit line naming both.
    assert!(e.contains("CONNECT tunnel failed, response 403"), "{e}");
    let line = e
        .lines()
        .find(|l| l.starts_with("shellcage: network: blocked 2 connections: "))
        .unwrap_or_else(|| panic!("no exit line: {}", show(&out)));
    assert!(line.contains(&format!("b.example:{port}")), "{line}");
    assert!(line.contains(&format!("evil.example:{port}")), "{line}");
    assert_eq!(
        up.accepted(),
        0,
        "the upstream was reached: {:?}",
        up.received()
    );
    // Control: the flag the message names lets the same request through.
    let out = cage.sh(
        &["--allow-host", &format!("b.example:{port}")],
        &format!("curl -sS -m 20 http://b.example:{port}/x"),
    );
    assert!(
        stdout(&out).contains(&format!("hello from b.example:{port}")),
        "{}",
        show(&out)
    );
    assert_eq!(up.accepted(), 1);
}

#[test]
fn clients_that_ignore_proxy_variables_go_through_the_transparent_proxy() {
    let up = Upstream::start();
    let Some(ca) = TestCa::new() else {
        crate::common::require(false, "openssl");
        return;
    };
    let tls = TlsUpstream::start(&ca);
    let (p, t) = (up.port(), tls.port);
    let Some(cage) = Cage::new(&format!("allow = [\"a.example:{p}\", \"a.example:{t}\"]")) else {
        return;
    };
    let ca_file = cage.give(&ca.ca());
    // A raw socket after a plain getaddrinfo (the proxy's resolver answers with a reserved
    // address), then curl told to use no proxy, over TLS.
    let py = format!(
        r#"
import socket
addr = socket.getaddrinfo("a.example", {p}, socket.AF_INET, socket.SOCK_STREAM)[0][4]
print("resolved", addr[0])
s = socket.create_connection(addr, timeout=20)
s.sendall(b"GET /raw HTTP/1.1\r\nHost: a.example:{p}\r\nConnection: close\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode().splitlines()[-1])
"#
    );
    cage.ws.write("raw.py", &py);
    let out = cage.sh(
        &[],
        &format!(
            "{NO_PROXY_VARS} /usr/bin/python3 raw.py && curl -sS -m 20 --noproxy '*' --cacert {ca_file} https://a.example:{t}/tls"
        ),
    );
    let o = stdout(&out);
    assert!(out.status.success(), "{}", show(&out));
    let resolved = o
        .lines()
        .find_map(|l| l.strip_prefix("resolved "))
        .unwrap_or_else(|| panic!("{}", show(&out)));
    assert!(
        resolved.starts_with("198.18.") || resolved.starts_with("198.19."),
        "{resolved}"
    );
    assert!(
        o.contains(&format!("hello from a.example:{p}")),
        "{}",
        show(&out)
    );
    assert!(
        o.contains(&format!("hello from a.example:{t}")),
        "{}",
        show(&out)
    );
    assert_eq!(up.received().len(), 1);
    assert_eq!(tls.events("sni").len(), 1);
}

#[test]
fn the_report_lists_every_destination_with_its_decision() {
    let up = Upstream::start();
    let port = up.port();
    let Some(cage) = Cage::new(&format!("allow = [\"a.example:{port}\"]")) else {
        return;
    };
    let report = cage.ws.path().join("report.json");
    let out = cage.sh(
        &["--report-file", report.to_str().unwrap()],
        &format!(
            "curl -sS -m 20 http://a.example:{port}/ http://a.example:{port}/again >/dev/null; curl -sS -m 20 http://b.example:{port}/ >/dev/null; getent hosts nope.example; true"
        ),
    );
    assert!(out.status.success(), "{}", show(&out));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let egress = &r["egress"];
    assert_eq!(egress["allowed"], 2, "{egress}");
    let find = |host: &str| {
        egress["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["host"] == host)
            .cloned()
            .unwrap_or_else(|| panic!("{host} not in {egress}"))
    };
    let a = find("a.example");
    assert_eq!(
        (a["decision"].as_str(), a["count"].as_u64()),
        (Some("allowed"), Some(2))
    );
    assert_eq!(a["port"], port);
    let b = find("b.example");
    assert_eq!(b["decision"], "blocked");
    assert_eq!(b["reason"], "not in the allowlist");
    // getent asks for A and AAAA: each refused lookup is counted.
    let n = find("nope.example");
    assert_eq!(
        (n["decision"].as_str(), n["via"].as_str()),
        (Some("blocked"), Some("dns"))
    );
    let lookups = n["count"].as_u64().unwrap();
    assert!(lookups >= 1);
    assert_eq!(egress["blocked"].as_u64(), Some(1 + lookups), "{egress}");
    let plural = if lookups == 1 { "" } else { "s" };
    assert!(
        stderr(&out).contains(&format!(
            "shellcage: network: blocked 1 connection: b.example:{port}; refused {lookups} lookup{plural}: nope.example"
        )),
        "{}",
        show(&out)
    );
}

#[test]
fn the_container_tier_refuses_proxy_mode_naming_the_missing_namespace() {
    if !crate::common::require(crate::common::sandbox_available(), "user namespaces") {
        return;
    }
    let ws = crate::common::Workspace::new();
    let out = crate::common::cmd(
        &ws,
        &["--tier", "container", "--allow-host", "a.example"],
        &["sh", "-c", "echo ran"],
    )
    .output()
    .unwrap();
    crate::common::expect_code(&out, 125);
    assert!(!stdout(&out).contains("ran"), "{}", show(&out));
    assert!(
        stderr(&out).contains("network mode proxy needs a network namespace"),
        "{}",
        show(&out)
    );
}

#[test]
fn python_requests_and_urllib_through_the_explicit_proxy() {
    let Some(ca) = TestCa::new() else {
        crate::common::require(false, "openssl");
        return;
    };
    let tls = TlsUpstream::start(&ca);
    let up = Upstream::start();
    let (t, p) = (tls.port, up.port());
    let Some(cage) = Cage::new(&format!("allow = [\"a.example:{t}\", \"a.example:{p}\"]")) else {
        return;
    };
    let ca_file = cage.give(&ca.ca());
    let has_requests = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import requests"])
        .status()
        .is_ok_and(|s| s.success());
    let script = format!(
        r#"
import ssl, urllib.request
ctx = ssl.create_default_context(cafile="{ca_file}")
print("urllib", urllib.request.urlopen("https://a.example:{t}/u", context=ctx, timeout=20).read().decode().strip())
print("urllib-http", urllib.request.urlopen("http://a.example:{p}/h", timeout=20).read().decode().strip())
try:
    import requests
except ImportError:
    requests = None
if requests:
    print("requests", requests.get("https://a.example:{t}/r", verify="{ca_file}", timeout=20).text.strip())
"#
    );
    cage.ws.write("clients.py", &script);
    let out = cage.sh(&[], "/usr/bin/python3 clients.py");
    let o = stdout(&out);
    assert!(
        o.contains(&format!("urllib hello from a.example:{t}")),
        "{}",
        show(&out)
    );
    assert!(
        o.contains(&format!("urllib-http hello from a.example:{p}")),
        "{}",
        show(&out)
    );
    if has_requests {
        assert!(
            o.contains(&format!("requests hello from a.example:{t}")),
            "{}",
            show(&out)
        );
    } else {
        eprintln!("note: python3-requests not installed for /usr/bin/python3: urllib only");
    }
    let paths: Vec<_> = tls
        .events("request")
        .iter()
        .map(|v| v["path"].clone())
        .collect();
    assert!(paths.contains(&serde_json::json!("/u")), "{paths:?}");
    assert_eq!(up.received().len(), 1);
}

/// wget reads the proxy variables; Node 20's `fetch` and Java's `HttpURLConnection` do not
/// (they resolve the name with the C library and connect: the transparent mode). Each tool
/// that is installed is run; the upstream's log shows which request arrived.
#[test]
fn wget_node_fetch_and_java_reach_an_allowed_host() {
    let Some(ca) = TestCa::new() else {
        crate::common::require(false, "openssl");
        return;
    };
    let tls = TlsUpstream::start(&ca);
    let up = Upstream::start();
    let (t, p) = (tls.port, up.port());
    let Some(cage) = Cage::new(&format!("allow = [\"a.example:{t}\", \"a.example:{p}\"]")) else {
        return;
    };
    let ca_file = cage.give(&ca.ca());
    let have = |c: &str| crate::support::have(c);
    let mut ran = vec![];
    if have("wget") {
        let out = cage.sh(&[], &format!("wget -q -O - http://a.example:{p}/wget"));
        assert!(
            stdout(&out).contains(&format!("hello from a.example:{p}")),
            "{}",
            show(&out)
        );
        ran.push("wget");
    }
    if have("node") {
        let js = format!(
            "fetch('https://a.example:{t}/node').then(r => r.text()).then(t => console.log(t.trim())).catch(e => {{ console.log('ERR', e.cause || e); process.exit(1) }})"
        );
        cage.ws.write("f.js", &js);
        let out = cage.sh(
            &[],
            &format!("NODE_EXTRA_CA_CERTS=\"$PWD/{ca_file}\" node f.js"),
        );
        assert!(
            stdout(&out).contains(&format!("hello from a.example:{t}")),
            "{}",
            show(&out)
        );
        ran.push("node fetch");
    }
    if have("java") {
        let java = format!(
            "public class Get {{ public static void main(String[] a) throws Exception {{ var c = (java.net.HttpURLConnection) new java.net.URL(\"http://a.example:{p}/java\").openConnection(); System.out.println(new String(c.getInputStream().readAllBytes()).trim()); }} }}"
        );
        cage.ws.write("Get.java", &java);
        let out = cage.sh(&[], "java -Djava.net.useSystemProxies=false Get.java");
        assert!(
            stdout(&out).contains(&format!("hello from a.example:{p}")),
            "{}",
            show(&out)
        );
        ran.push("java");
    }
    let paths: Vec<String> = up
        .received()
        .iter()
        .filter_map(|r| r.split_whitespace().nth(1).map(str::to_string))
        .collect();
    if ran.contains(&"wget") {
        assert!(paths.iter().any(|p| p == "/wget"), "{paths:?}");
    }
    if ran.contains(&"java") {
        assert!(paths.iter().any(|p| p == "/java"), "{paths:?}");
    }
    eprintln!("note: ran {ran:?}");
}

/// On a host running systemd-resolved /etc/resolv.conf is a symlink into /run, which the
/// sandbox does not show: the generated file is placed at the symlink's target, so the
/// sandbox reads the proxy's resolver through the same symlink.
#[test]
fn a_resolv_conf_symlinked_into_run_is_replaced_at_its_target() {
    let up = Upstream::start();
    let p = up.port();
    let Some(cage) =
        Cage::new(&format!("allow = [\"a.example:{p}\"]")).map(Cage::with_resolv_symlink)
    else {
        return;
    };
    let out = cage.sh(
        &[],
        &format!(
            "readlink /etc/resolv.conf; grep nameserver /etc/resolv.conf; {NO_PROXY_VARS} curl -sS -m 20 http://a.example:{p}/sym"
        ),
    );
    let o = stdout(&out);
    assert!(
        o.contains("../run/systemd/resolve/stub-resolv.conf"),
        "{}",
        show(&out)
    );
    assert!(o.contains("nameserver 127.0.0.1"), "{}", show(&out));
    assert!(
        o.contains(&format!("hello from a.example:{p}")),
        "{}",
        show(&out)
    );
    assert_eq!(up.received().len(), 1);
}

#[test]
fn a_session_s_commands_share_one_proxy_and_each_reports_its_own_traffic() {
    let up = Upstream::start();
    let port = up.port();
    let Some(cage) = Cage::new(&format!("allow = [\"a.example:{port}\"]")) else {
        return;
    };
    // Three commands of one session (the same policy), then the session is stopped.
    let out = cage.script(&format!(
        r#"
run() {{ n=$1; shift; "$SC" run --workspace "$WS" --profile "$PROFILE" --report-file "$OUT/$n.json" -- "$@"; }}
run 1 curl -sS -m 20 http://a.example:{port}/first >/dev/null
run 2 sh -c 'curl -sS -m 20 http://b.example:{port}/never >/dev/null; curl -sS -m 20 http://a.example:{port}/second >/dev/null; true' 2>"$OUT/2.err"
run 3 true
run 4 sh -c 'head -c 3000000 /dev/zero | curl -sS -m 20 -T - http://a.example:{port}/up >/dev/null'
"$SC" session list >"$OUT/list"
run 5 python3 -c '
import socket
for i in range(2200):
    try:
        socket.getaddrinfo("n%d.nope.example" % i, 80)
    except OSError:
        pass
'
run 6 true
"$SC" session stop --all
"#
    ));
    assert!(out.status.success(), "{}", show(&out));
    let (r1, r2, r3) = (
        cage.report("1.json"),
        cage.report("2.json"),
        cage.report("3.json"),
    );
    let id = r1["session"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("warm: {r1}"));
    for r in [&r2, &r3] {
        assert_eq!(r["session"]["id"].as_str(), Some(id), "one session: {r}");
    }
    let listed = std::fs::read_to_string(cage.report_dir().join("list")).unwrap();
    assert!(listed.contains(id), "{listed}");
    // Each command's report has its own connections only.
    let count = |r: &serde_json::Value, host: &str, decision: &str| -> u64 {
        (r["egress"]["destinations"].as_array().into_iter().flatten())
            .filter(|d| d["host"] == host && d["decision"] == decision)
            .filter_map(|d| d["count"].as_u64())
            .sum()
    };
    assert_eq!(count(&r1, "a.example", "allowed"), 1, "{}", r1["egress"]);
    assert_eq!(r1["egress"]["blocked"], 0, "{}", r1["egress"]);
    assert_eq!(count(&r2, "a.example", "allowed"), 1, "{}", r2["egress"]);
    assert_eq!(count(&r2, "b.example", "blocked"), 1, "{}", r2["egress"]);
    assert_eq!(r3["egress"]["allowed"], 0, "{}", r3["egress"]);
    assert_eq!(r3["egress"]["blocked"], 0, "{}", r3["egress"]);
    let err2 = std::fs::read_to_string(cage.report_dir().join("2.err")).unwrap();
    assert!(
        err2.contains(&format!(
            "shellcage: network: blocked 1 connection: b.example:{port}"
        )),
        "{err2}"
    );
    // The upstream's side: the allowed requests, nothing of the refused one.
    let got = up.received();
    assert!(got.len() >= 2, "{got:?}");
    assert!(got[0].starts_with("GET /first "), "{got:?}");
    assert!(got[1].starts_with("GET /second "), "{got:?}");
    assert!(!got.iter().any(|r| r.contains("/never")), "{got:?}");
    // An upload's bytes are in its own command's report (a relay's bytes reach the
    // proxy's summary when it ends, which may be after the command's end snapshot).
    let r4 = cage.report("4.json");
    let out4: u64 = (r4["egress"]["destinations"]
        .as_array()
        .into_iter()
        .flatten())
    .filter(|d| d["host"] == "a.example")
    .filter_map(|d| d["bytes_out"].as_u64())
    .sum();
    assert!(out4 >= 3_000_000, "bytes_out {out4}: {}", r4["egress"]);
    assert_eq!(r4["session"]["id"].as_str(), Some(id), "{r4}");
    // A command that fills half of the proxy's lasting tables (2,200 distinct names
    // refused, of 4,096 itemized) ends the session after it: the next command starts a
    // new one, with a new proxy.
    let r5 = cage.report("5.json");
    assert_eq!(r5["session"]["id"].as_str(), Some(id), "{r5}");
    assert!(
        r5["egress"]["blocked"].as_u64().unwrap_or(0) >= 2200,
        "{}",
        r5["egress"]
    );
    let r6 = cage.report("6.json");
    let id6 = r6["session"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("warm: {r6}"));
    assert!(r6["session"]["server"].as_i64().is_some(), "{r6}");
    assert_ne!(
        r6["session"]["server"], r1["session"]["server"],
        "a new session ({id6}) after the tables filled"
    );
}

//! Helpers for the egress proxy tests: upstream servers on loopback that record what they
//! receive, the engine started in-process, a test CA, raw clients, and a helper process in
//! a throwaway network namespace (`unshare -rmn`, the test binary re-executed) that creates
//! the listening sockets inside, hands them out with SCM_RIGHTS like the sandbox init will,
//! and runs clients there.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use shellcage::net::rules::RuleSet;
use shellcage::net::summary::Summary;
use shellcage::net::{Config, Engine, Event, Limits, Listeners, Resolver, StaticResolver};

pub const PY: &str = "python3";

/// Skip, or fail under `SHELLCAGE_TEST_REQUIRE_KERNEL` (CI), when `ok` is false.
#[allow(unused_imports)]
pub use crate::common::require;

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Can this machine create a user + mount + network namespace (`unshare -rmn`)?
pub fn userns_ok() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        Command::new("unshare")
            .args(["-rmn", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A command with no proxy variables from the environment running the tests.
pub fn clean(cmd: &str) -> Command {
    let mut c = Command::new(cmd);
    for v in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "CURL_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        "SSL_CERT_FILE",
    ] {
        c.env_remove(v);
    }
    c.stdin(Stdio::null());
    c
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

// --- upstreams ---

/// A plain HTTP server on loopback that records the raw bytes of every connection.
/// `GET /redirect?to=URL` answers 302; `/bytes/N` N bytes; anything else
/// `hello from HOST`. After answering it keeps reading briefly, so bytes smuggled after
/// the request are recorded too.
pub struct Upstream {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<Vec<u8>>>>,
    accepted: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn start() -> Upstream {
        Upstream::start_on("127.0.0.1:0".parse().unwrap())
    }

    pub fn start_on(addr: SocketAddr) -> Upstream {
        Upstream::from_listener(TcpListener::bind(addr).unwrap())
    }

    pub fn from_listener(l: TcpListener) -> Upstream {
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (c, a) = (conns.clone(), accepted.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                a.fetch_add(1, Ordering::SeqCst);
                let slot = {
                    let mut v = c.lock().unwrap();
                    v.push(Vec::new());
                    v.len() - 1
                };
                let c = c.clone();
                std::thread::spawn(move || serve_plain(s, &c, slot));
            }
        });
        Upstream {
            addr,
            conns,
            accepted,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted, once the count has settled (see [`settled`]).
    pub fn accepted(&self) -> usize {
        settled(&self.accepted)
    }

    /// What each connection sent, as bytes.
    pub fn conns_raw(&self) -> Vec<Vec<u8>> {
        self.conns.lock().unwrap().clone()
    }

    /// What each connection sent, as text.
    pub fn received(&self) -> Vec<String> {
        self.conns.lock().unwrap().iter().map(|b| text(b)).collect()
    }
}

fn serve_plain(mut s: TcpStream, conns: &Mutex<Vec<Vec<u8>>>, slot: usize) {
    let start = Instant::now();
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut all = Vec::new();
    let mut answered = false;
    let mut answered_at = None;
    let mut buf = [0u8; 65536];
    while start.elapsed() < Duration::from_secs(20) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                conns.lock().unwrap()[slot] = all.clone();
            }
            Err(_)
                if answered_at
                    .is_some_and(|t: Instant| t.elapsed() > Duration::from_millis(300)) =>
            {
                break;
            }
            Err(_) => {}
        }
        if !answered && request_complete(&all) {
            answered = true;
            answered_at = Some(Instant::now());
            let _ = s.write_all(&plain_answer(&all));
            let _ = s.shutdown(Shutdown::Write);
        }
    }
}

/// Is a whole request (head and Content-Length or chunked body) in `all`?
fn request_complete(all: &[u8]) -> bool {
    let t = text(all);
    let Some(end) = t.find("\r\n\r\n") else {
        return false;
    };
    let head = t[..end].to_ascii_lowercase();
    let body = &t[end + 4..];
    if let Some(cl) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        return body.len() >= cl.trim().parse::<usize>().unwrap_or(0);
    }
    if head.contains("transfer-encoding: chunked") {
        return body.contains("0\r\n\r\n");
    }
    true
}

fn plain_answer(req: &[u8]) -> Vec<u8> {
    let t = text(req);
    let path = t.split(' ').nth(1).unwrap_or("/").to_string();
    let host = t
        .lines()
        .find_map(|l| l.strip_prefix("Host: "))
        .unwrap_or("?")
        .to_string();
    if let Some(to) = path.strip_prefix("/redirect?to=") {
        return format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
    }
    let body = match path.strip_prefix("/bytes/") {
        Some(n) => "x".repeat(n.parse().unwrap_or(0)),
        None => format!("hello from {host}\n"),
    };
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A listener that only counts connections (a destination that must never be reached).
pub struct Sink {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Sink {
    pub fn start_on(addr: SocketAddr) -> Sink {
        let l = TcpListener::bind(addr).unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                a.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        Sink { addr, accepted }
    }

    pub fn accepted(&self) -> usize {
        settled(&self.accepted)
    }
}

/// A counter's value once it stopped changing for 150 ms (at most 3 s): a connection the
/// kernel completed is counted by the accepting thread a moment later, and a "nothing
/// reached it" check must not run in that moment.
pub fn settled(counter: &AtomicUsize) -> usize {
    let start = Instant::now();
    let mut last = counter.load(Ordering::SeqCst);
    let mut since = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(25));
        let now = counter.load(Ordering::SeqCst);
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= Duration::from_millis(150) {
            break;
        }
    }
    last
}

/// A test CA and a server certificate for the test names, made with openssl.
pub struct TestCa {
    pub dir: tempfile::TempDir,
}

pub const CERT_NAMES: &[&str] = &["a.example", "b.example", "evil.example", "*.test.example"];

impl TestCa {
    pub fn new() -> Option<TestCa> {
        if !have("openssl") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let san: Vec<String> = CERT_NAMES.iter().map(|n| format!("DNS:{n}")).collect();
        std::fs::write(
            dir.path().join("ext.cnf"),
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\n",
                san.join(",")
            ),
        )
        .unwrap();
        let script = "set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=shellcage-test-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr -subj /CN=a.example 2>/dev/null
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf 2>/dev/null";
        let ok = Command::new("sh")
            .args(["-c", script])
            .current_dir(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl failed");
        Some(TestCa { dir })
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// The Python HTTPS upstream (tests/net_proxy/upstream.py) and its event log.
pub struct TlsUpstream {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl TlsUpstream {
    pub fn start(ca: &TestCa) -> TlsUpstream {
        // Written out at run time: the test binary may run as another user, far from the
        // source tree (scripts/test-unprivileged).
        let script = ca.dir.path().join("upstream.py");
        std::fs::write(&script, include_str!("upstream.py")).unwrap();
        let mut child = Command::new(PY)
            .arg(script)
            .arg(ca.dir.path().join("srv.pem"))
            .arg(ca.dir.path().join("srv.key"))
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                if let Some(p) = v.get("port") {
                    let _ = tx.send(p.as_u64().unwrap() as u16);
                }
                l.lock().unwrap().push(v);
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("upstream.py port");
        TlsUpstream { child, port, log }
    }

    /// The logged events of one kind ("conn", "sni", "request").
    pub fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == kind)
            .cloned()
            .collect()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- the engine ---

/// The engine on a loopback listener (explicit mode), with its events collected.
pub struct Proxy {
    engine: Option<Engine>,
    pub addr: SocketAddr,
    pub events: Arc<Mutex<Vec<Event>>>,
}

pub struct ProxyBuilder {
    allow: Vec<String>,
    deny: Vec<String>,
    private: Vec<String>,
    map: Vec<(String, IpAddr)>,
    resolver: Option<Arc<dyn Resolver>>,
    pub limits: Limits,
    listeners: Listeners,
}

pub fn builder() -> ProxyBuilder {
    ProxyBuilder {
        allow: vec![],
        deny: vec![],
        private: vec![],
        map: vec![],
        resolver: None,
        limits: Limits::default(),
        listeners: Listeners::default(),
    }
}

impl ProxyBuilder {
    pub fn allow(mut self, e: &str) -> Self {
        self.allow.push(e.to_string());
        self
    }
    pub fn deny(mut self, e: &str) -> Self {
        self.deny.push(e.to_string());
        self
    }
    pub fn private(mut self, e: &str) -> Self {
        self.private.push(e.to_string());
        self
    }
    /// Resolve `name` to `ip` (a StaticResolver; ignored when a resolver is given).
    pub fn map(mut self, name: &str, ip: &str) -> Self {
        self.map.push((name.to_string(), ip.parse().unwrap()));
        self
    }
    pub fn resolver(mut self, r: Arc<dyn Resolver>) -> Self {
        self.resolver = Some(r);
        self
    }
    pub fn limits(mut self, f: impl FnOnce(&mut Limits)) -> Self {
        f(&mut self.limits);
        self
    }
    /// Serve these listeners instead of a fresh explicit one on loopback.
    pub fn listeners(mut self, l: Listeners) -> Self {
        self.listeners = l;
        self
    }

    pub fn start(self) -> Proxy {
        let rules = RuleSet::new(&self.allow, &self.deny, &self.private).unwrap();
        let mut config = Config::new(rules);
        config.limits = self.limits;
        let resolver = self.resolver.unwrap_or_else(|| {
            Arc::new(StaticResolver::new(
                self.map.iter().map(|(n, ip)| (n.as_str(), *ip)),
            ))
        });
        let mut listeners = self.listeners;
        let addr = match listeners.explicit.first() {
            Some(l) => l.local_addr().unwrap(),
            None if listeners.transparent.is_empty() => {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let a = l.local_addr().unwrap();
                listeners.explicit.push(l);
                a
            }
            None => "0.0.0.0:0".parse().unwrap(),
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let e = events.clone();
        let sink: shellcage::net::EventSink =
            Arc::new(move |ev: &Event| e.lock().unwrap().push(ev.clone()));
        let engine = Engine::start(config, listeners, resolver, Some(sink)).unwrap();
        Proxy {
            engine: Some(engine),
            addr,
            events,
        }
    }
}

impl Proxy {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn summary(&self) -> Summary {
        self.engine.as_ref().unwrap().summary()
    }

    pub fn stats(&self) -> shellcage::net::Stats {
        self.engine.as_ref().unwrap().stats()
    }

    /// The reasons recorded for `host` (as the summary writes it).
    pub fn reasons(&self, host: &str) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.host == host)
            .map(|e| e.reason.to_string())
            .collect()
    }

    pub fn stop(mut self) -> Summary {
        self.engine.take().unwrap().stop()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            e.stop();
        }
    }
}

// --- raw clients ---

/// Send `bytes` to `addr` and read the answer until the peer closes (5 s at most).
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let _ = s.write_all(bytes);
    read_all(&mut s, Duration::from_secs(5))
}

pub fn read_all(s: &mut TcpStream, limit: Duration) -> String {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    text(&out)
}

/// Wait until `f` holds (for counts updated by other threads), at most 3 s.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

// --- a helper process in its own network namespace ---

/// What the helper sets up inside its namespace.
#[derive(serde::Serialize, serde::Deserialize, Default, Clone, Debug)]
pub struct NetnsSpec {
    /// What the helper does: "rpc" (hand out listeners, run commands) or the name of an
    /// in-namespace test body (see `netns_helper` in tests/net_proxy.rs).
    pub mode: String,
    /// Ports of the 0.0.0.0 listeners for the reserved range.
    pub transparent: Vec<u16>,
    /// 127.0.0.1:53 over UDP and TCP, and /etc/resolv.conf pointing there.
    pub dns: bool,
    /// The local route for the reserved range (198.18.0.0/15).
    pub route: bool,
    pub ctl: PathBuf,
    pub dir: PathBuf,
}

pub struct Netns {
    child: Child,
    ctl: UnixStream,
    pub listeners: Option<Listeners>,
    _dir: tempfile::TempDir,
}

/// The command that re-runs this test binary as the helper inside `unshare -rmn`.
fn helper_command(spec: &NetnsSpec) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut c = clean("unshare");
    c.arg("-rmn")
        .arg(exe)
        .args([
            "netns_helper",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SHELLCAGE_NET_HELPER", serde_json::to_string(spec).unwrap());
    c
}

/// Run an in-namespace test body (the helper's `mode`) and return its output.
pub fn run_in_netns(mode: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let spec = NetnsSpec {
        mode: mode.to_string(),
        dir: dir.path().to_path_buf(),
        ..NetnsSpec::default()
    };
    helper_command(&spec).output().unwrap()
}

impl Netns {
    pub fn start(mut spec: NetnsSpec) -> Netns {
        let dir = tempfile::tempdir().unwrap();
        spec.mode = "rpc".into();
        spec.ctl = dir.path().join("ctl.sock");
        spec.dir = dir.path().to_path_buf();
        let listener = UnixListener::bind(&spec.ctl).unwrap();
        let mut child = helper_command(&spec)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let start = Instant::now();
        let ctl = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if start.elapsed() < Duration::from_secs(20) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("netns helper exited early: {status}");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("netns helper did not connect: {e}"),
            }
        };
        ctl.set_nonblocking(false).unwrap();
        let mut header = vec![0u8; 4096];
        let (n, fds) = shellcage::sys::recv_fds(ctl.as_fd(), &mut header).unwrap();
        let header: serde_json::Value = serde_json::from_slice(&header[..n]).unwrap();
        let mut fds = fds.into_iter();
        let mut listeners = Listeners::default();
        for _ in 0..header["transparent"].as_u64().unwrap() {
            listeners
                .transparent
                .push(TcpListener::from(fds.next().unwrap()));
        }
        if header["dns"].as_bool().unwrap() {
            listeners.dns_udp.push(UdpSocket::from(fds.next().unwrap()));
            listeners
                .dns_tcp
                .push(TcpListener::from(fds.next().unwrap()));
        }
        listeners
            .explicit
            .push(TcpListener::from(fds.next().unwrap()));
        Netns {
            child,
            ctl,
            listeners: Some(listeners),
            _dir: dir,
        }
    }

    /// Run `sh -c script` inside the namespace: (exit code, stdout, stderr).
    pub fn sh(&mut self, script: &str) -> (i32, String, String) {
        let req = serde_json::to_vec(&serde_json::json!({ "sh": script })).unwrap();
        self.ctl
            .write_all(&(req.len() as u32).to_be_bytes())
            .unwrap();
        self.ctl.write_all(&req).unwrap();
        let mut len = [0u8; 4];
        self.ctl.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.ctl.read_exact(&mut body).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (
            v["code"].as_i64().unwrap() as i32,
            v["stdout"].as_str().unwrap().to_string(),
            v["stderr"].as_str().unwrap().to_string(),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.ctl.shutdown(Shutdown::Both);
        let _ = self.child.wait();
    }
}

/// The helper's side: set up the namespace, hand the listeners out, run commands.
pub fn helper_main(spec: NetnsSpec) {
    shellcage::sys::loopback_up_netns_fd().expect("lo up");
    if spec.route {
        shellcage::sys::add_local_route_v4("198.18.0.0".parse().unwrap(), 15).expect("local route");
    }
    let mut fds: Vec<std::os::fd::OwnedFd> = Vec::new();
    for port in &spec.transparent {
        fds.push(TcpListener::bind(("0.0.0.0", *port)).unwrap().into());
    }
    if spec.dns {
        fds.push(UdpSocket::bind("127.0.0.1:53").unwrap().into());
        fds.push(TcpListener::bind("127.0.0.1:53").unwrap().into());
        let conf = spec.dir.join("resolv.conf");
        std::fs::write(
            &conf,
            "nameserver 127.0.0.1\noptions attempts:1 timeout:2\n",
        )
        .unwrap();
        nix::mount::mount(
            Some(&conf),
            "/etc/resolv.conf",
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind resolv.conf");
    }
    fds.push(TcpListener::bind("127.0.0.1:0").unwrap().into());
    let ctl = UnixStream::connect(&spec.ctl).unwrap();
    let header = serde_json::json!({ "transparent": spec.transparent.len(), "dns": spec.dns });
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    shellcage::sys::send_fds(ctl.as_fd(), header.to_string().as_bytes(), &borrowed).unwrap();
    drop(fds);
    rpc_loop(ctl);
}

fn rpc_loop(mut ctl: UnixStream) {
    loop {
        let mut len = [0u8; 4];
        if ctl.read_exact(&mut len).is_err() {
            return;
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        ctl.read_exact(&mut body).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let out = clean("sh")
            .args(["-c", v["sh"].as_str().unwrap()])
            .output()
            .unwrap();
        let reply = serde_json::json!({
            "code": out.status.code().unwrap_or(-1),
            "stdout": text(&out.stdout),
            "stderr": text(&out.stderr),
        });
        let bytes = serde_json::to_vec(&reply).unwrap();
        ctl.write_all(&(bytes.len() as u32).to_be_bytes()).unwrap();
        ctl.write_all(&bytes).unwrap();
    }
}

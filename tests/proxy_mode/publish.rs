//! `--publish`: a server the command starts inside the sandbox is reachable from the
//! host's loopback at the published port, and only there; without the flag the same
//! server is not reachable from the host.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{self, Workspace};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET /f from 127.0.0.1:port, retried until `limit`.
fn fetch(port: u16, limit: Duration) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            s.write_all(b"GET /f HTTP/1.0\r\n\r\n").unwrap();
            let mut got = String::new();
            let _ = s.read_to_string(&mut got);
            if !got.is_empty() {
                return Some(got);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// A server inside on 127.0.0.1:8000 serving `f`, for about `secs` seconds.
fn serve_inside(ws: &Workspace, extra: &[&str], secs: u32) -> std::process::Child {
    let script = format!(
        "cd \"$TMPDIR\" && echo served-from-inside > f && exec timeout {secs} /usr/bin/python3 -m http.server 8000 --bind 127.0.0.1"
    );
    common::cmd(ws, extra, &["sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_published_port_reaches_the_server_inside_and_an_unpublished_one_does_not() {
    if !common::require(common::sandbox_available(), "user namespaces") {
        return;
    }
    let ws = Workspace::new();
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:8000");
    let mut child = serve_inside(&ws, &["--publish", &spec], 8);
    let got = fetch(port, Duration::from_secs(6));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let got = got.unwrap_or_else(|| panic!("nothing on {port}: {}", common::stderr(&out)));
    assert!(got.starts_with("HTTP/1.0 200"), "{got}");
    assert!(got.contains("served-from-inside"), "{got}");
    // Control: the same server without --publish cannot be reached on any host port; the
    // run's own 8000 is in its namespace, not the host's.
    let port2 = free_port();
    let mut child = serve_inside(&ws, &[], 4);
    std::thread::sleep(Duration::from_millis(1500));
    let direct = TcpStream::connect(("127.0.0.1", port2)).is_ok();
    let host_8000 =
        fetch(8000, Duration::from_millis(300)).is_some_and(|g| g.contains("served-from-inside"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(!direct, "an unpublished port answered");
    assert!(
        !host_8000,
        "the sandbox's port 8000 was reachable from the host"
    );
}

#[test]
fn publish_needs_a_loopback_address_and_a_free_port() {
    if !common::require(common::sandbox_available(), "user namespaces") {
        return;
    }
    let ws = Workspace::new();
    let out = common::cmd(&ws, &["--publish", "0.0.0.0:8080"], &["true"])
        .output()
        .unwrap();
    common::expect_code(&out, 125);
    assert!(
        common::stderr(&out).contains("not a loopback address"),
        "{}",
        common::stderr(&out)
    );
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = busy.local_addr().unwrap().port().to_string();
    let out = common::cmd(&ws, &["--publish", &p], &["true"])
        .output()
        .unwrap();
    common::expect_code(&out, 125);
    assert!(
        common::stderr(&out).contains(&format!("cannot listen on 127.0.0.1:{p}")),
        "{}",
        common::stderr(&out)
    );
}

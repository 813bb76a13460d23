//! Real tools through the proxy, each against a server the test starts on the host's
//! loopback under a test name: pip from a local package index over https (the test CA
//! passed with --cert), npm from a local registry (packument and tarball), cargo from a
//! local sparse registry, git cloning over https (the test CA passed with GIT_SSL_CAINFO),
//! and the server's log showing the requests arrived with the name the tool used. The
//! tools read the proxy variables shellcage sets; nothing else configures them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cage::{Cage, show};
use crate::common::{require, stderr, stdout};
use crate::support::TestCa;

/// tests/proxy_mode/static.py serving a directory (over TLS with a CA) and its log.
struct Static {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
    log: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Static {
    fn start(tls: Option<&TestCa>) -> Static {
        let root = tempfile::tempdir().unwrap();
        let script = root.path().join(".static.py");
        std::fs::write(&script, include_str!("static.py")).unwrap();
        let serve = root.path().join("srv");
        std::fs::create_dir(&serve).unwrap();
        let mut c = Command::new("/usr/bin/python3");
        c.arg(&script).arg(&serve);
        if let Some(ca) = tls {
            c.arg(ca.dir.path().join("srv.pem"))
                .arg(ca.dir.path().join("srv.key"));
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                if let Some(p) = v.get("port") {
                    let _ = tx.send(p.as_u64().unwrap() as u16);
                }
                l.lock().unwrap().push(v);
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("static.py port");
        Static {
            child,
            port,
            root,
            log,
        }
    }

    fn dir(&self) -> PathBuf {
        self.root.path().join("srv")
    }

    /// The paths requested, each with the Host header it came with.
    fn requests(&self) -> Vec<(String, String)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == "request")
            .map(|v| {
                (
                    v["path"].as_str().unwrap_or("").to_string(),
                    v["host"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Static {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have(cmd: &str) -> bool {
    crate::support::have(cmd)
}

/// Python on the host writes the fixtures (a wheel, an npm tarball: zipfile and tarfile).
fn py(script: &str, args: &[&Path]) {
    let ok = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "fixture script failed");
}

const WHEEL: &str = r#"
import base64, hashlib, os, sys, zipfile
root = sys.argv[1]
name = "shellcage_demo-1.0-py3-none-any.whl"
files = {
    "shellcage_demo/__init__.py": b"MESSAGE = 'demo installed through the proxy'\n",
    "shellcage_demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: shellcage-demo\nVersion: 1.0\n",
    "shellcage_demo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = ""
for path, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += "%s,sha256=%s,%d\n" % (path, digest, len(data))
record += "shellcage_demo-1.0.dist-info/RECORD,,\n"
os.makedirs(os.path.join(root, "files"))
with zipfile.ZipFile(os.path.join(root, "files", name), "w") as z:
    for path, data in files.items():
        z.writestr(path, data)
    z.writestr("shellcage_demo-1.0.dist-info/RECORD", record)
os.makedirs(os.path.join(root, "simple", "shellcage-demo"))
with open(os.path.join(root, "simple", "shellcage-demo", "index.html"), "w") as f:
    f.write('<html><body><a href="../../files/%s">%s</a></body></html>\n' % (name, name))
"#;

#[test]
fn pip_installs_from_a_local_index_over_https_through_the_proxy() {
    let Some(ca) = TestCa::new() else {
        require(false, "openssl");
        return;
    };
    let srv = Static::start(Some(&ca));
    py(WHEEL, &[&srv.dir()]);
    let port = srv.port;
    let Some(cage) = Cage::new(&format!("allow = [\"a.example:{port}\"]")) else {
        return;
    };
    let ca_file = cage.give(&ca.ca());
    let out = cage.sh(
        &[],
        &format!(
            "/usr/bin/python3 -m pip install --no-cache-dir --disable-pip-version-check --cert \"$PWD/{ca_file}\" --index-url https://a.example:{port}/simple/ --target \"$TMPDIR/t\" shellcage-demo 2>&1 | tail -3 && PYTHONPATH=\"$TMPDIR/t\" /usr/bin/python3 -c 'import shellcage_demo; print(shellcage_demo.MESSAGE)'"
        ),
    );
    assert!(
        stdout(&out).contains("demo installed through the proxy"),
        "{}",
        show(&out)
    );
    let reqs = srv.requests();
    let host = format!("a.example:{port}");
    assert!(
        reqs.iter()
            .any(|(p, h)| p.starts_with("/simple/shellcage-demo") && *h == host),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|(p, _)| p == "/files/shellcage_demo-1.0-py3-none-any.whl"),
        "{reqs:?}"
    );
    assert!(!stderr(&out).contains("blocked"), "{}", show(&out));
}

const NPM_PACKAGE: &str = r#"
import base64, hashlib, io, json, os, sys, tarfile
root, port = sys.argv[1], os.path.basename(sys.argv[2])
pkg = {"name": "shellcage-demo", "version": "1.0.0", "main": "index.js"}
files = {
    "package/package.json": json.dumps(pkg).encode(),
    "package/index.js": b"module.exports = 'demo installed through the proxy';\n",
}
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as t:
    for path, data in files.items():
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = 0o644
        t.addfile(info, io.BytesIO(data))
tgz = buf.getvalue()
os.makedirs(os.path.join(root, "tarballs"))
with open(os.path.join(root, "tarballs", "shellcage-demo-1.0.0.tgz"), "wb") as f:
    f.write(tgz)
dist = {
    "tarball": "http://a.example:%s/tarballs/shellcage-demo-1.0.0.tgz" % port,
    "shasum": hashlib.sha1(tgz).hexdigest(),
    "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode(),
}
doc = {
    "name": "shellcage-demo",
    "dist-tags": {"latest": "1.0.0"},
    "versions": {"1.0.0": dict(pkg, dist=dist)},
}
with open(os.path.join(root, "shellcage-demo.json"), "w") as f:
    json.dump(doc, f)
"#;

#[test]
fn npm_installs_from_a_local_registry_through_the_proxy() {
    if !require(have("npm"), "npm") {
        return;
    }
    let srv = Static::start(None);
    let port = srv.port;
    py(NPM_PACKAGE, &[&srv.dir(), Path::new(&port.to_string())]);
    let Some(cage) = Cage::new(&format!("allow = [\"a.example:{port}\"]")) else {
        return;
    };
    cage.ws.write(
        "package.json",
        "{\"name\": \"ws\", \"version\": \"1.0.0\"}\n",
    );
    let out = cage.sh(
        &[],
        &format!(
            "npm install --no-audit --no-fund --registry http://a.example:{port}/ shellcage-demo 2>&1 | tail -3 && node -e 'console.log(require(\"shellcage-demo\"))'"
        ),
    );
    assert!(
        stdout(&out).contains("demo installed through the proxy"),
        "{}",
        show(&out)
    );
    let reqs = srv.requests();
    assert!(
        reqs.iter()
            .any(|(p, h)| p == "/shellcage-demo" && *h == format!("a.example:{port}")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|(p, _)| p == "/tarballs/shellcage-demo-1.0.0.tgz"),
        "{reqs:?}"
    );
}

#[test]
fn git_clones_over_https_through_the_proxy() {
    let Some(ca) = TestCa::new() else {
        require(false, "openssl");
        return;
    };
    let srv = Static::start(Some(&ca));
    let port = srv.port;
    // A repository with one commit, served over "dumb" HTTP (static files).
    let work = tempfile::tempdir().unwrap();
    let git = |dir: &Path, args: &[&str]| {
        let ok = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", work.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    std::fs::write(src.join("README"), "cloned through the proxy\n").unwrap();
    git(&src, &["add", "README"]);
    git(
        &src,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "commit",
            "-qm",
            "one",
        ],
    );
    git(
        work.path(),
        &[
            "clone",
            "-q",
            "--bare",
            "src",
            srv.dir().join("repo.git").to_str().unwrap(),
        ],
    );
    git(&srv.dir().join("repo.git"), &["update-server-info"]);
    let Some(cage) = Cage::new(&format!("allow = [\"a.example:{port}\"]")) else {
        return;
    };
    let ca_file = cage.give(&ca.ca());
    let out = cage.sh(
        &[],
        &format!(
            "GIT_SSL_CAINFO=\"$PWD/{ca_file}\" git clone -q https://a.example:{port}/repo.git \"$TMPDIR/c\" && cat \"$TMPDIR/c/README\""
        ),
    );
    assert!(
        stdout(&out).contains("cloned through the proxy"),
        "{}",
        show(&out)
    );
    let reqs = srv.requests();
    assert!(
        reqs.iter().any(|(p, h)| p.starts_with("/repo.git/info/refs")
            && *h == format!("a.example:{port}")),
        "{reqs:?}"
    );
}

const CRATE: &str = r#"
import hashlib, io, json, os, sys, tarfile
root, port = sys.argv[1], os.path.basename(sys.argv[2])
files = {
    "scdemo-1.0.0/Cargo.toml": b'[package]\nname = "scdemo"\nversion = "1.0.0"\nedition = "2021"\n',
    "scdemo-1.0.0/src/lib.rs": b"pub const MESSAGE: &str = \"fetched through the proxy\";\n",
}
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as t:
    for path, data in files.items():
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = 0o644
        t.addfile(info, io.BytesIO(data))
crate = buf.getvalue()
os.makedirs(os.path.join(root, "crates", "scdemo", "1.0.0"))
with open(os.path.join(root, "crates", "scdemo", "1.0.0", "download"), "wb") as f:
    f.write(crate)
os.makedirs(os.path.join(root, "index", "sc", "de"))
with open(os.path.join(root, "index", "config.json"), "w") as f:
    json.dump({"dl": "http://a.example:%s/crates/{crate}/{version}/download" % port}, f)
entry = {"name": "scdemo", "vers": "1.0.0", "deps": [], "cksum": hashlib.sha256(crate).hexdigest(),
         "features": {}, "yanked": False}
with open(os.path.join(root, "index", "sc", "de", "scdemo"), "w") as f:
    f.write(json.dumps(entry) + "\n")
"#;

/// The toolchain directory holding a real `cargo` (rustup's proxy resolved), if this
/// user has one.
fn toolchain() -> Option<PathBuf> {
    let out = Command::new("rustup")
        .args(["which", "cargo"])
        .output()
        .ok()?;
    let cargo = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && cargo.is_file())
        .then(|| cargo.parent()?.parent().map(Path::to_path_buf))?
}

#[test]
fn cargo_fetches_from_a_local_sparse_registry_through_the_proxy() {
    let Some(tc) = toolchain() else {
        // rustup is per user (root's in CI; the unprivileged run has none).
        eprintln!("SKIP: no rustup toolchain for this user");
        return;
    };
    let srv = Static::start(None);
    let port = srv.port;
    py(CRATE, &[&srv.dir(), Path::new(&port.to_string())]);
    let Some(cage) = Cage::new(&format!("allow = [\"a.example:{port}\"]")) else {
        return;
    };
    cage.ws.write(
        "Cargo.toml",
        "[package]\nname = \"ws\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nscdemo = { version = \"1\", registry = \"local\" }\n",
    );
    cage.ws.write("src/lib.rs", "pub use scdemo::MESSAGE;\n");
    let tc = tc.to_str().unwrap();
    let out = cage.sh(
        &["--read", tc],
        &format!(
            "export PATH={tc}/bin:$PATH CARGO_HOME=\"$TMPDIR/ch\" CARGO_TARGET_DIR=\"$TMPDIR/t\" CARGO_REGISTRIES_LOCAL_INDEX=sparse+http://a.example:{port}/index/ && cargo fetch -q && cat \"$TMPDIR\"/ch/registry/src/*/scdemo-1.0.0/src/lib.rs"
        ),
    );
    assert!(
        stdout(&out).contains("fetched through the proxy"),
        "{}",
        show(&out)
    );
    let reqs = srv.requests();
    assert!(
        reqs.iter()
            .any(|(p, h)| p == "/index/sc/de/scdemo" && *h == format!("a.example:{port}")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|(p, _)| p == "/crates/scdemo/1.0.0/download"),
        "{reqs:?}"
    );
}

//! One real install from a package registry this machine reaches, through the proxy:
//! pip downloads a small package from its default index. The hosts are taken at run time
//! from pip's own defaults (the index URL and the file storage domain it knows), never
//! written here. If this machine's resolver maps those names into a block the proxy
//! refuses (a registry mirror on a private or documentation address), the test allows
//! exactly the addresses it found, and says so.

use std::net::ToSocketAddrs;

use crate::cage::{Cage, show};
use crate::common::{require, stdout};

/// pip's default index host and file host, from pip itself.
fn pip_hosts() -> Option<Vec<String>> {
    let out = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "from pip._internal.models.index import PyPI\nimport urllib.parse\nprint(urllib.parse.urlsplit(PyPI.simple_url).hostname)\nprint(PyPI.file_storage_domain)",
        ])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    })
}

#[test]
fn pip_downloads_from_its_default_index_through_the_proxy() {
    let Some(hosts) = pip_hosts().filter(|h| h.len() == 2) else {
        require(false, "/usr/bin/python3 with pip");
        return;
    };
    let mut private = vec![];
    for h in &hosts {
        let addrs: Vec<_> = match (h.as_str(), 443).to_socket_addrs() {
            Ok(a) => a.map(|a| a.ip()).collect(),
            Err(e) => {
                require(
                    false,
                    &format!("a registry this machine reaches ({h}: {e})"),
                );
                return;
            }
        };
        for ip in addrs {
            if shellcage::net::addr::classify(ip).is_err() {
                eprintln!(
                    "note: {h} resolves to {ip} here, in a block the proxy refuses; allowing exactly it"
                );
                private.push(format!("\"{}\"", shellcage::net::addr::Cidr::host(ip)));
            }
        }
    }
    let Some(cage) = Cage::new(&format!(
        "allow = [{}]\nallow_private = [{}]",
        hosts
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect::<Vec<_>>()
            .join(", "),
        private.join(", ")
    )) else {
        return;
    };
    let out = cage.sh(
        &[],
        "/usr/bin/python3 -m pip download --no-deps --no-cache-dir --disable-pip-version-check -d \"$TMPDIR/d\" six 2>&1 | tail -2; ls \"$TMPDIR/d\"",
    );
    let o = stdout(&out);
    assert!(o.contains("Successfully downloaded six"), "{}", show(&out));
    assert!(
        o.lines()
            .any(|l| l.starts_with("six-") && l.ends_with(".whl")),
        "{}",
        show(&out)
    );
    // Control: without the file host, the download is refused and the exit line names it.
    let Some(index_only) = Cage::new(&format!(
        "allow = [\"{}\"]\nallow_private = [{}]",
        hosts[0],
        private.join(", ")
    )) else {
        return;
    };
    let out = index_only.sh(
        &[],
        "/usr/bin/python3 -m pip download --no-deps --no-cache-dir --disable-pip-version-check --retries 0 -d \"$TMPDIR/d\" six >/dev/null 2>&1; true",
    );
    assert!(
        crate::common::stderr(&out).contains(&format!(
            "shellcage: network: blocked 1 connection: {}:443",
            hosts[1]
        )),
        "{}",
        show(&out)
    );
}

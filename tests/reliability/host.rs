//! Host-side observations for the reliability tests: what a run could leave
//! behind (processes, mounts, temp entries, cgroups, descriptors), and a
//! timeout wrapper so a hang fails the test instead of blocking CI.

use std::collections::{BTreeSet, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant, SystemTime};

/// Processes whose command line contains `marker`, as (pid, cmdline).
pub fn procs_with(marker: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.filter_map(Result::ok) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.contains(marker) {
            out.push((pid, line));
        }
    }
    out
}

/// Poll until no process carries `marker`; returns how long it took, or the
/// survivors after `limit`.
pub fn wait_gone(marker: &str, limit: Duration) -> Result<Duration, Vec<(i32, String)>> {
    let start = Instant::now();
    loop {
        let left = procs_with(marker);
        if left.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(left);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Poll until some process carries `marker` (the control: the probe sees it).
pub fn wait_present(marker: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !procs_with(marker).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The parent of a live process (or zombie), `None` when it is gone.
fn ppid_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": comm may hold spaces and parentheses.
    let tail = stat.rsplit_once(')').map(|(_, t)| t)?;
    tail.split_whitespace().nth(1).and_then(|p| p.parse().ok())
}

/// Children (and zombies) of the test process.
pub fn own_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if ppid_of(pid) == Some(me) {
            out.push(pid);
        }
    }
    out
}

/// Could a shellcage run of this test have left the cgroup `dir`? shellcage names its
/// groups `shellcage-<supervisor pid>-…` (src/sandbox/cgroup/apply.rs), and `runs` are
/// the pids of this test's own runs. Other groups belong to other tests running at the
/// same time (cgroup_limits, a session's handlers, a supervisor killed on purpose whose
/// groups a later run removes) or to other software.
fn may_be_ours(dir: &Path, runs: &HashSet<u32>) -> bool {
    let Some(rest) = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("shellcage-"))
    else {
        return false;
    };
    let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    runs.contains(&pid)
}

/// Directories under /sys/fs/cgroup (all hierarchies), a few levels deep.
fn cgroup_dirs() -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut BTreeSet<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.insert(e.path());
                if depth > 0 {
                    walk(&e.path(), depth - 1, out);
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(Path::new("/sys/fs/cgroup"), 4, &mut out);
    out
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every path under `dir` (recursive), relative, with its kind.
pub fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            let kind = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            out.insert(format!(
                "{}{}",
                p.strip_prefix(root).unwrap().display(),
                if kind { "/" } else { "" }
            ));
            if kind {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// What the test process and the host look like at one moment.
pub struct Snapshot {
    at: SystemTime,
    mountinfo: String,
    fds: BTreeSet<String>,
    temp: BTreeSet<String>,
    cgroups: BTreeSet<PathBuf>,
    children: Vec<i32>,
}

fn fds() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(Result::ok)
    {
        let target = std::fs::read_link(e.path())
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        out.insert(format!("{} -> {target}", e.file_name().to_string_lossy()));
    }
    out
}

impl Snapshot {
    pub fn take() -> Snapshot {
        Snapshot {
            at: SystemTime::now(),
            mountinfo: std::fs::read_to_string("/proc/self/mountinfo").unwrap(),
            fds: fds(),
            temp: listing(&std::env::temp_dir()),
            cgroups: cgroup_dirs(),
            children: own_children(),
        }
    }

    /// Compare with a later snapshot; `own` are temp entries the test made.
    /// `runs`: the pids of the test's own shellcage runs (their groups are named after
    /// them); a group of any other supervisor is another test's (a session's handler, or
    /// a supervisor another test killed on purpose, whose groups a later run removes).
    pub fn assert_unchanged(&self, own: &[&Path], runs: &HashSet<u32>) {
        let after = Snapshot::take();
        assert_eq!(
            self.mountinfo, after.mountinfo,
            "the mount table of the test process changed"
        );
        let new_fds: Vec<_> = after.fds.difference(&self.fds).collect();
        // The read_dir of /proc/self/fd itself shows up in both snapshots
        // under the same number, so any difference is a leak.
        assert!(new_fds.is_empty(), "descriptors leaked: {new_fds:?}");
        // The system temp dir is shared with every other process on the host:
        // new entries named like ours are printed, and fail the test only with
        // SHELLCAGE_TEST_STRICT_TMP=1 (a quiet CI host: then every new entry
        // counts). The tests also point TMPDIR at a private directory and
        // check that one exactly, always.
        let strict = std::env::var_os("SHELLCAGE_TEST_STRICT_TMP").is_some();
        let tmp = std::env::temp_dir();
        let new_temp: Vec<_> = after
            .temp
            .difference(&self.temp)
            .filter(|name| !own.iter().any(|o| o.file_name().unwrap() == name.as_str()))
            .filter(|name| strict || name.to_lowercase().contains("shellcage"))
            // Workspaces other test binaries make now (tests/common Workspace).
            .filter(|name| !name.starts_with("shellcage-test-") && !name.starts_with(".tmp"))
            .filter(|name| {
                std::fs::symlink_metadata(tmp.join(name)).is_ok_and(|m| {
                    use std::os::unix::fs::MetadataExt;
                    m.uid() == nix::unistd::geteuid().as_raw()
                        && m.modified().is_ok_and(|t| t >= self.at)
                })
            })
            .collect();
        if strict {
            assert!(
                new_temp.is_empty(),
                "new entries in {}: {new_temp:?}",
                tmp.display()
            );
        } else if !new_temp.is_empty() {
            // Other users of this host (parallel test binaries) make such names
            // too; only a quiet host can attribute them.
            eprintln!(
                "note: new entries in {} during the test (not attributed; set SHELLCAGE_TEST_STRICT_TMP=1 on a quiet host to fail on them): {new_temp:?}",
                tmp.display()
            );
        }
        let new_cg: Vec<_> = after
            .cgroups
            .difference(&self.cgroups)
            // Listed, then judged: a group another binary's run removed in
            // between (its supervisor gone by the time we look) is no leak.
            .filter(|d| may_be_ours(d, runs) && d.exists())
            .collect();
        assert!(new_cg.is_empty(), "cgroups created: {new_cg:?}");
        let new_children: Vec<_> = after
            .children
            .iter()
            .filter(|c| !self.children.contains(c))
            .collect();
        assert!(
            new_children.is_empty(),
            "children of the test process left (zombies or alive): {new_children:?}"
        );
    }
}

/// Wait for `child` at most `limit`; kill it and panic on a hang.
pub fn wait_within(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?} (hang)");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Read a stream to its end on a thread.
pub fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Read one line (up to `\n`) from a stream, byte by byte.
pub fn read_line(r: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while let Ok(1) = r.read(&mut b) {
        if b[0] == b'\n' {
            break;
        }
        out.push(b[0]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

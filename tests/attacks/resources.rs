//! Resources: the caps hold (tmpfs size, process count, wall clock).

use std::time::{Duration, Instant};

use crate::harness::*;

attack!(res_disk_fill_tmp_stops_at_cap, "resources", |c| {
    c.plant(
        ".config/shellcage/profiles/smalltmp.toml",
        "version = 1\nextends = \"dev\"\n[limits]\ntmp_size = \"16M\"\n",
    );
    let script = "dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1 | grep -v records; \
                  echo size=$(du -m /tmp/fill | cut -f1)";
    let out = c.sc(&["--profile", "smalltmp", "--timeout", "60s"], script);
    c.seen(out.all().trim());
    assert!(out.stdout.contains("No space left on device"), "{out:?}");
    let size: u64 = out
        .stdout
        .split("size=")
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u64::MAX);
    assert!(size <= 16, "{out:?}");
    // Control: the same fill under the default 2G cap completes.
    let control = c.sc(&["--timeout", "60s"], script);
    assert!(control.stdout.contains("size=64"), "{control:?}");
});

/// A pids cgroup (v2 or v1) this test creates, with pids.max set; removed on drop.
/// Only a real cgroup filesystem counts: a plain directory (e.g. a tmpfs at
/// /sys/fs/cgroup) would accept the same writes and guard nothing.
struct PidsCgroup {
    dir: std::path::PathBuf,
    name: String,
}

impl PidsCgroup {
    fn new(max: u32) -> Option<PidsCgroup> {
        use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, statfs};
        let name = marker().to_lowercase();
        for base in [
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup",
        ] {
            let Ok(fs) = statfs(base) else { continue };
            let kind = fs.filesystem_type();
            if kind != CGROUP_SUPER_MAGIC && kind != CGROUP2_SUPER_MAGIC {
                continue;
            }
            let dir = std::path::Path::new(base).join(&name);
            if std::fs::create_dir(&dir).is_err() {
                continue;
            }
            // The kernel creates pids.max only where the pids controller is on.
            if dir.join("pids.max").exists()
                && std::fs::write(dir.join("pids.max"), max.to_string()).is_ok()
                && std::fs::read_to_string(dir.join("pids.max"))
                    .ok()
                    .as_deref()
                    == Some(&format!("{max}\n"))
            {
                return Some(PidsCgroup { dir, name });
            }
            let _ = std::fs::remove_dir(&dir);
        }
        None
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

attack!(res_fork_bomb_stops_at_limit, "resources", |c| {
    // Also an RLIMIT_NPROC guard inside (binds non-root users only): bash's `ulimit -u`,
    // dash's `ulimit -p` (dash, Debian's /bin/sh, has no -u: without the fallback the bomb
    // had to reach the user's default limit within the timeout).
    let bomb = "ulimit -u 200 2>/dev/null || ulimit -p 200 || exit 98; b() { b | b & }; b; sleep 5; echo bombed";
    let _heavy = heavy_lock();
    let start = Instant::now();
    let (out, limited) = if crate::common::is_root() {
        // RLIMIT_NPROC does not bind uid 0: guard with a pids cgroup.
        let Some(cg) = PidsCgroup::new(128) else {
            crate::common::require(false, "a writable pids cgroup (root)");
            return;
        };
        let procs = cg.dir.join("cgroup.procs");
        let bin = crate::common::bin().display().to_string();
        let ws = c.ws.path().display().to_string();
        let o = c
            .host_cmd(&[
                "/bin/sh",
                "-c",
                // Join the cgroup, prove membership, only then start the bomb.
                "echo $$ > \"$0\" && grep -q \"/$1\\$\" /proc/self/cgroup || exit 99; shift; exec \"$@\"",
                procs.to_str().unwrap(),
                &cg.name,
                &bin,
                "run",
                "--workspace",
                &ws,
                "--timeout",
                "10s",
                // The run's own pids cgroup (below this one) holds first;
                // this one's 128 is the backstop should it not.
                "--processes",
                "100",
                "--",
                "/bin/sh",
                "-c",
                bomb,
            ])
            .output()
            .unwrap();
        // v1 counts a refused fork in the forking group (the run's own):
        // shellcage says which limit it was.
        let err = String::from_utf8_lossy(&o.stderr);
        let hit = err.contains("shellcage: process limit 100 reached: ");
        assert!(
            !err.contains("enclosing cgroup's process limit"),
            "the backstop held, not the run's limit"
        );
        // Warm, the session's server was started in the guard with the command and lives
        // on there: it ends first (cold, there is none).
        let _ = c.host_cmd(&[&bin, "session", "stop", &ws]).output();
        assert!(
            wait_for(Duration::from_secs(5), || std::fs::read_to_string(
                cg.dir.join("cgroup.procs")
            )
            .map(|s| s.trim().is_empty())
            .unwrap_or(true)),
            "processes left in the cgroup"
        );
        assert_ne!(o.status.code(), Some(99), "could not join the pids cgroup");
        (Out::from_output(o), hit)
    } else {
        let out = c.sc(&["--timeout", "10s"], bomb);
        let hit =
            out.stderr.contains("Resource temporarily unavailable") || out.stderr.contains("fork");
        (out, hit)
    };
    c.seen(&format!(
        "code={:?} after {:?}; limit hit: {limited}",
        out.code,
        start.elapsed()
    ));
    // Control: the limit was actually reached (so the bomb really ran).
    assert!(limited, "the fork bomb never reached the limit: {out:?}");
    assert!(start.elapsed() < Duration::from_secs(60));
});

attack!(res_timeout_kills_everything, "resources", |c| {
    let m = marker();
    let script = format!(
        "sh -c 'sleep 300; true' {a}''{b} & setsid -f sh -c 'sleep 300; true' {a}''{b}; sleep 300",
        a = &m[..2],
        b = &m[2..]
    );
    let _heavy = heavy_lock();
    let start = Instant::now();
    let mut child = c
        .sc_cmd(&["--timeout", "2s"], &["/bin/sh", "-c", &script])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Control: the processes were running on the host before the timeout.
    let seen = wait_for(Duration::from_secs(5), || host_pids_with(&m).len() >= 2);
    let status = child.wait().unwrap();
    let took = start.elapsed();
    let gone = wait_for(Duration::from_secs(3), || host_pids_with(&m).is_empty());
    kill_all(&host_pids_with(&m));
    c.seen(&format!(
        "code={:?} after {took:?}; all gone: {gone}",
        status.code()
    ));
    assert!(seen, "control: sandboxed processes never appeared");
    assert_eq!(status.code(), Some(124));
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(gone, "processes survived the timeout");
});

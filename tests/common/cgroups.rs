//! cgroup helpers for tests that run bombs through the real binary: a *guard*
//! group (made by the test, below the test's own cgroups, with looser limits)
//! that shellcage is started in, so that a broken limit cannot hurt the host;
//! and the groups a given shellcage process left behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use shellcage::sandbox::cgroup::{self, Version};

/// A group per hierarchy (pids and memory) that the test made, with
/// `pids.max` and a memory cap; removed on drop.
pub struct Guard {
    pub dirs: Vec<PathBuf>,
}

/// Our own cgroup directory in every hierarchy this process can write (v1
/// hierarchies with memory, pids or cpu, and v2).
pub fn our_dirs() -> Vec<(Version, Vec<String>, PathBuf)> {
    let layout = cgroup::detect_host();
    layout
        .v1
        .iter()
        .chain(layout.v2.as_ref())
        .filter_map(|h| {
            let ours = h.ours.as_ref().ok()?;
            Some((h.version, h.controllers.clone(), ours.dir.clone()))
        })
        .collect()
}

impl Guard {
    /// `None` when this process cannot make such groups (not root, or a host
    /// without v1 memory and pids hierarchies: the guards are v1 here, as on
    /// the CI machine).
    pub fn new(pids_max: u64, memory_max: u64) -> Option<Guard> {
        let name = format!("shellcage-test-guard-{}", super::canary().to_lowercase());
        let mut guard = Guard { dirs: Vec::new() };
        for (ctrl, file, value) in [
            ("pids", "pids.max", pids_max),
            ("memory", "memory.limit_in_bytes", memory_max),
        ] {
            let (_, _, parent) = our_dirs()
                .into_iter()
                .find(|(v, c, _)| *v == Version::V1 && c.iter().any(|n| n == ctrl))?;
            let dir = parent.join(&name);
            std::fs::create_dir(&dir).ok()?;
            guard.dirs.push(dir.clone());
            std::fs::write(dir.join(file), value.to_string()).ok()?;
            let back: u64 = std::fs::read_to_string(dir.join(file))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            if back > value {
                return None;
            }
        }
        Some(guard)
    }

    /// `argv` started inside the guard (it joins every guard group, then execs).
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut script = String::new();
        for d in &self.dirs {
            script.push_str(&format!(
                "echo $$ > '{}/cgroup.procs' || exit 99; ",
                d.display()
            ));
        }
        script.push_str("exec \"$@\"");
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script).arg("sh").args(argv);
        c
    }

    /// The guard's own memory limit was never reached (the run's limit held first).
    pub fn memory_untouched(&self) -> bool {
        self.dirs
            .iter()
            .filter(|d| d.join("memory.failcnt").exists())
            .all(|d| {
                std::fs::read_to_string(d.join("memory.failcnt")).is_ok_and(|s| s.trim() == "0")
            })
    }

    /// No process is left in the guard.
    pub fn empty(&self) -> bool {
        self.dirs.iter().all(|d| {
            std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|s| s.trim().is_empty())
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for d in &self.dirs {
            super::wait_for(Duration::from_secs(3), || {
                std::fs::remove_dir(d).is_ok() || !d.exists()
            });
        }
    }
}

/// The groups shellcage process `pid` made (`shellcage-<pid>-…`) that still
/// exist below `roots` (our own cgroups and any guard's), at any depth.
pub fn left_by(pid: u32, roots: &[PathBuf]) -> Vec<PathBuf> {
    let prefix = format!("shellcage-{pid}-");
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = roots.to_vec();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                out.push(p.clone());
            }
            // Only our own test groups nest; the real root's other children
            // are not ours to walk.
            if e.file_name()
                .to_string_lossy()
                .starts_with("shellcage-test-guard-")
            {
                stack.push(p);
            }
        }
    }
    out
}

/// [`left_by`] below our own cgroups and `extra` (a guard's directories).
pub fn left_by_anywhere(pid: u32, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = our_dirs().into_iter().map(|(_, _, d)| d).collect();
    roots.extend_from_slice(extra);
    left_by(pid, &roots)
}

/// Whether this process could hold a memory, a process and a CPU limit in
/// cgroups of its own here (root on this machine's v1 controllers; a user
/// with a delegated v2 scope).
pub fn limits_available() -> bool {
    let req = cgroup::LimitRequest {
        memory: Some(256 << 20),
        processes: Some(200),
        cpu_millis: Some(1000),
    };
    let plan = cgroup::describe(
        &req,
        &cgroup::detect_host(),
        nix::unistd::geteuid().as_raw(),
    );
    plan.not_enforced().next().is_none()
}

/// A host path as the test passes it to shellcage.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Whether the suite runs warm (`SHELLCAGE_SESSION=auto`, CI's second pass): each
/// command runs in a session, whose server lives on in the caller's cgroups after it.
pub fn warm() -> bool {
    std::env::var("SHELLCAGE_SESSION").is_ok_and(|v| v != "off" && v != "0" && v != "no")
}

/// Warm: end workspace `ws`'s sessions (HOME=`home`), so that the server and its
/// pre-started sandbox leave the caller's cgroups, and fail unless there was one (the
/// command did run warm). Cold: nothing.
pub fn end_sessions(home: &Path, ws: &Path) {
    if !warm() {
        return;
    }
    let out = super::shellcage(Some(home), &["session", "stop", s(ws)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("stopped session")),
        "warm: the command ran in no session of {}: {text}{}",
        ws.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The groups a run left behind. Cold: those of shellcage process `pid` below our own
/// cgroups and `guard` ([`left_by_anywhere`]). Warm (after [`end_sessions`]): the
/// session's handlers name the groups, so every `shellcage-<n>-…` below `guard`, which
/// is the test's own (an unprivileged caller has no cgroups to leave: nothing to look at).
pub fn left(pid: u32, guard: &[PathBuf]) -> Vec<PathBuf> {
    if !warm() || guard.is_empty() {
        return left_by_anywhere(pid, guard);
    }
    let mut out = Vec::new();
    for e in guard
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let run = name
            .strip_prefix("shellcage-")
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
        if run && e.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(e.path());
        }
    }
    out
}

//! cgroup limits on the real kernel (src/sandbox/cgroup.rs): a fork bomb and a
//! memory bomb held by a per-run leaf group, the verdict naming the limit, and
//! every group directory gone afterwards, on every exit path.
//!
//! Each case runs in a helper process (this test binary started again with
//! `SHELLCAGE_CGROUP_HELPER=<case>`), never in the test process itself: the
//! module may move its caller (cgroup v2), and the test process must stay in
//! its own cgroup. As root the helper is first put into a *guard* group below
//! the test's own cgroup, with looser limits set by this file, so that a broken
//! module cannot harm the host: the bombs meet the module's limit first, and
//! the guard's if that fails.
//!
//! As an unprivileged user (CI runs the tests again as `sctest`) the v1
//! controllers of a hybrid host belong to root: the module must say "not
//! available" with the fix and create nothing.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::require;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use shellcage::sandbox::cgroup::{
    self, Cgroup, CgroupPlan, Ended, GroupPlan, LimitRequest, Version, Write,
};
use shellcage::sys::{self, Forked};

const HELPER_ENV: &str = "SHELLCAGE_CGROUP_HELPER";
const HELPER_TEST: &str = "helper_entry";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn marker() -> String {
    format!(
        "cgmark{}x{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ u128::from(nix::unistd::getpid().as_raw() as u32)
    )
}

/// Host pids whose command line contains `needle`.
fn host_pids_with(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

// ---------------------------------------------------------------- guard

/// Groups made by this file (not the module) below the test process's own
/// cgroups, with looser limits, that the helper runs in.
struct Guard {
    /// Directory per hierarchy.
    dirs: Vec<PathBuf>,
    name: String,
}

impl Guard {
    /// `pids_max` in the pids hierarchy, `memory_max` in the memory one (v1 or
    /// v2, wherever the controller is), each read back. `None` when this host
    /// gives the test process no such hierarchy to write.
    fn new(pids_max: u64, memory_max: u64) -> Option<Guard> {
        let layout = cgroup::detect_host();
        let name = format!("shellcage-test-guard-{}", marker());
        let mut guard = Guard {
            dirs: Vec::new(),
            name: name.clone(),
        };
        for (ctrl, file, value) in [
            ("pids", "pids.max", pids_max),
            ("memory", "memory.limit_in_bytes", memory_max),
        ] {
            let h = layout
                .v1
                .iter()
                .find(|h| h.controllers.iter().any(|c| c == ctrl))?;
            let parent = &h.ours.as_ref().ok()?.dir;
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

    /// A command that joins the guard, then execs `argv`.
    fn command(&self, argv: &[&str]) -> Command {
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

    fn empty(&self) -> bool {
        self.dirs.iter().all(|d| {
            std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|s| s.trim().is_empty())
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for d in &self.dirs {
            for _ in 0..100 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

// ---------------------------------------------------------------- helper side

/// Lines `CG KEY VALUE` printed by the helper.
#[derive(Debug)]
struct Report {
    code: Option<i32>,
    lines: BTreeMap<String, String>,
    stdout: String,
    stderr: String,
}

impl Report {
    fn get(&self, key: &str) -> &str {
        self.lines
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("helper printed no {key}: {self:#?}"))
    }
}

/// Run helper case `case` (in `guard` when given) and collect its report.
fn helper(case: &str, guard: Option<&Guard>, env: &[(&str, &str)]) -> Report {
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().unwrap();
    let argv = [
        exe,
        HELPER_TEST,
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ];
    let mut cmd = match guard {
        Some(g) => g.command(&argv),
        None => {
            let mut c = Command::new(exe);
            c.args(&argv[1..]);
            c
        }
    };
    cmd.env(HELPER_ENV, case).stdin(Stdio::null());
    if let Some(g) = guard {
        cmd.env("SHELLCAGE_CGROUP_GUARD", &g.name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("CG "))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Report {
        code: out.status.code(),
        lines,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn say(key: &str, value: impl std::fmt::Display) {
    println!("CG {key} {value}");
}

/// How the helper ran its child.
struct Child {
    status: Option<WaitStatus>,
    /// Highest pids.current seen in the leaves while it ran.
    peak_pids: u64,
}

/// Start `sh -c script marker` in the cgroup (clone3 into the v2 leaf when
/// possible, else fork behind a start gate: v1 joined by the child, v2 attached), and wait up to `wait`.
fn run_child(cg: &Cgroup, script: &str, marker: &str, wait: Duration) -> Child {
    let sh = CString::new("/bin/sh").unwrap();
    let args = [
        sh.clone(),
        CString::new("-c").unwrap(),
        CString::new(script).unwrap(),
        CString::new(marker).unwrap(),
    ];
    let argv: Vec<&std::ffi::CStr> = args.iter().map(|a| a.as_c_str()).collect();
    let envp_owned = [CString::new("PATH=/usr/bin:/bin").unwrap()];
    let envp: Vec<&std::ffi::CStr> = envp_owned.iter().map(|a| a.as_c_str()).collect();
    let gate = cg.start_gate().unwrap();
    let forked = match cg.clone_target() {
        Some(fd) => {
            say("placement", "clone3");
            sys::clone_into_cgroup(0, fd)
        }
        None => {
            say("placement", "attach");
            sys::fork_process()
        }
    }
    .unwrap();
    let child = match forked {
        Forked::Child => {
            if gate.enter().is_err() {
                sys::exit_now(125);
            }
            sys::execve(&sh, &argv, &envp);
            sys::exit_now(127);
        }
        Forked::Parent { child } => child,
    };
    if cg.clone_target().is_none() {
        if let Err(e) = cg.attach(child) {
            say("attach_error", e);
            drop(gate);
            let _ = waitpid(child, None);
            return Child {
                status: None,
                peak_pids: 0,
            };
        }
    }
    gate.release().unwrap();
    let deadline = Instant::now() + wait;
    let mut peak = 0;
    loop {
        for leaf in cg.leaves() {
            if let Some(n) = std::fs::read_to_string(leaf.join("pids.current"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
            {
                peak = peak.max(n);
            }
        }
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => {}
            Ok(status) => {
                return Child {
                    status: Some(status),
                    peak_pids: peak,
                };
            }
            Err(e) => panic!("waitpid: {e}"),
        }
        if Instant::now() >= deadline {
            return Child {
                status: None,
                peak_pids: peak,
            };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn status_text(s: &Option<WaitStatus>) -> String {
    match s {
        Some(WaitStatus::Exited(_, c)) => format!("exit:{c}"),
        Some(WaitStatus::Signaled(_, sig, _)) => format!("signal:{}", *sig as i32),
        Some(other) => format!("{other:?}"),
        None => "running".into(),
    }
}

/// The plan when every limit asked for can be held; else say why not (what a
/// run that requires them is refused with) and stop.
fn plan_for(req: LimitRequest) -> CgroupPlan {
    let layout = cgroup::detect_host();
    let euid = nix::unistd::geteuid().as_raw();
    let plan = cgroup::describe(&req, &layout, euid);
    if let Some(why) = refusal(&plan) {
        say("refused", why);
        std::process::exit(0);
    }
    plan
}

/// Every limit the plan cannot hold, `LIMIT: reason (hint: …)`.
fn refusal(plan: &CgroupPlan) -> Option<String> {
    let missing: Vec<_> = plan.not_enforced().collect();
    let first = missing.first()?;
    let reasons: Vec<String> = missing
        .iter()
        .map(|l| format!("{}: {}", l.limit, l.reason.as_deref().unwrap_or("")))
        .collect();
    Some(format!(
        "{} (hint: {})",
        reasons.join("; "),
        first.hint.as_deref().unwrap_or("")
    ))
}

fn dirs_json(dirs: &[PathBuf]) -> String {
    serde_json::to_string(dirs).unwrap()
}

/// Create, run `script`, report verdict and removal.
fn case_run(req: LimitRequest, script: &str, wait: Duration) {
    let plan = plan_for(req);
    let cg = Cgroup::create(&plan).unwrap();
    say("dirs", dirs_json(&cg.created_dirs()));
    let marker = std::env::var("SHELLCAGE_CGROUP_MARKER").unwrap_or_else(|_| "cgmark".into());
    let child = run_child(&cg, script, &marker, wait);
    say("status", status_text(&child.status));
    say("peak_pids", child.peak_pids);
    let v = cg.verdict();
    say("verdict", serde_json::to_string(&v).unwrap());
    say("ended", serde_json::to_string(&v.ended()).unwrap());
    for e in v.ended() {
        say("message", e);
    }
    say(
        "removed",
        match cg.remove() {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        },
    );
}

fn req(memory: Option<u64>, processes: Option<u64>, cpu: Option<u32>) -> LimitRequest {
    LimitRequest {
        memory,
        processes,
        cpu_millis: cpu,
    }
}

/// The helper is in the guard the test made (each hierarchy's line names it).
fn check_in_guard() {
    if let Ok(name) = std::env::var("SHELLCAGE_CGROUP_GUARD") {
        let me = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let lines = me.lines().filter(|l| l.contains(&name)).count();
        if lines < 2 {
            say("not_in_guard", me.replace('\n', ";"));
            std::process::exit(99);
        }
    }
}

/// Not a test on its own: the entry point of the helper processes.
#[test]
fn helper_entry() {
    let Ok(case) = std::env::var(HELPER_ENV) else {
        return;
    };
    println!();
    check_in_guard();
    match case.as_str() {
        "fork-bomb" => case_run(
            req(None, Some(50), None),
            "b() { b | b & }; b; sleep 2; echo bomb-done",
            Duration::from_secs(20),
        ),
        "memory-bomb" => case_run(
            req(Some(64 << 20), None, None),
            "exec python3 -c 'a = []\nwhile True: a.append(b\"\\x01\" * (1 << 20))'",
            Duration::from_secs(30),
        ),
        "cpu" => case_run(
            req(None, None, Some(200)),
            // 0.4 s of CPU time, however long it takes to get it: at 0.2
            // cores that needs about 2 s of wall time, and on a loaded
            // machine longer, never less.
            "exec python3 -c 'import time\nt = time.process_time\ns = t()\nwhile t() - s < 0.4: pass'",
            Duration::from_secs(20),
        ),
        "normal" => case_run(
            req(Some(256 << 20), Some(100), Some(1000)),
            "true",
            Duration::from_secs(20),
        ),
        // The supervisor gives up while the command and what it started run
        // on (a timeout, a signal): removal must kill them.
        "kill" => case_run(
            req(Some(256 << 20), Some(100), None),
            "sleep 300 & sleep 300 & setsid sleep 300 & sleep 300",
            Duration::from_millis(300),
        ),
        "attach-error" => case_attach_error(),
        "fork-drop" => case_fork_drop(),
        "create-error" => case_create_error(),
        "v2-clone" => case_v2_clone(),
        "v2-move" => case_v2_move(),
        "unprivileged" => case_unprivileged(),
        other => panic!("unknown helper case {other}"),
    }
    std::process::exit(0);
}

/// Placing the sandbox fails: dropping the Cgroup removes it all, and a
/// child that cannot join its leaf runs nothing.
/// - v2 (the supervisor moves it): attach() of a pid that is gone, ESRCH.
/// - v1 (the child writes itself into `tasks`): the leaf was removed after
///   the gate opened its file, ENODEV; the child exits 125 and says where.
fn case_attach_error() {
    let plan = plan_for(req(Some(256 << 20), Some(100), Some(1000)));
    let cg = Cgroup::create(&plan).unwrap();
    say("dirs", dirs_json(&cg.created_dirs()));
    // A pid that exited and was reaped: the kernel says ESRCH.
    let gone = Command::new("true").spawn().unwrap();
    let pid = nix::unistd::Pid::from_raw(gone.id() as i32);
    let mut gone = gone;
    gone.wait().unwrap();
    match cg.attach(pid) {
        Ok(()) => say("attach", "ok"),
        Err(e) => say("attach_error", e),
    }
    let v1: Vec<PathBuf> = cg
        .leaves()
        .into_iter()
        .filter(|l| l.join("tasks").exists())
        .map(Path::to_path_buf)
        .collect();
    say("v1_leaves", v1.len());
    if let Some(first) = v1.first() {
        let gate = cg.start_gate().unwrap();
        std::fs::remove_dir(first).unwrap();
        let marker = std::env::temp_dir().join(format!("cg-ran-{}", std::process::id()));
        match sys::fork_process().unwrap() {
            Forked::Child => match gate.enter() {
                Ok(()) => {
                    let _ = std::fs::write(&marker, "ran");
                    sys::exit_now(0)
                }
                Err(e) => {
                    println!("CG join_error {e:?}");
                    sys::exit_now(125)
                }
            },
            Forked::Parent { child } => {
                gate.release().unwrap();
                say(
                    "join_status",
                    format!("{:?}", waitpid(child, None).unwrap()),
                );
                say("child_ran", marker.exists());
                let _ = std::fs::remove_file(&marker);
            }
        }
    }
    drop(cg);
    say("removed", "dropped");
}

/// A forked child that drops its copy of the Cgroup (no exec, plain drop)
/// leaves the parent's groups alone.
fn case_fork_drop() {
    let plan = plan_for(req(Some(256 << 20), Some(100), None));
    let cg = Cgroup::create(&plan).unwrap();
    say("dirs", dirs_json(&cg.created_dirs()));
    match sys::fork_process().unwrap() {
        Forked::Child => {
            drop(cg);
            sys::exit_now(0);
        }
        Forked::Parent { child } => {
            let _ = waitpid(child, None);
            say(
                "after_child_drop",
                cg.created_dirs().iter().all(|d| d.exists()),
            );
            say(
                "removed",
                match cg.remove() {
                    Ok(()) => "ok".to_string(),
                    Err(e) => e.to_string(),
                },
            );
        }
    }
}

/// create() fails half-way (the kernel refuses a value in the last group):
/// what it made before is gone when the error comes back.
fn case_create_error() {
    let mut plan = plan_for(req(Some(256 << 20), Some(100), Some(1000)));
    let parents: Vec<PathBuf> = plan.groups.iter().map(|g| g.parent.clone()).collect();
    say("dirs", dirs_json(&parents));
    say("pid", std::process::id());
    plan.groups.last_mut().unwrap().writes.push(Write {
        file: "cgroup.procs".into(),
        value: "not-a-pid".into(),
        required: true,
    });
    match Cgroup::create(&plan) {
        Ok(_) => say("create", "ok?!"),
        Err(e) => say("create_error", e),
    }
}

/// The v2 path with this host's unified hierarchy (no controllers needed):
/// create a leaf, clone3 a child straight into it, kill with cgroup.kill.
fn case_v2_clone() {
    let layout = cgroup::detect_host();
    let Some(ours) = layout.v2.as_ref().and_then(|h| h.ours.as_ref().ok()) else {
        say("no_v2", "true");
        return;
    };
    let plan = CgroupPlan {
        groups: vec![GroupPlan {
            version: Version::V2,
            parent: ours.dir.clone(),
            controllers: vec![],
            writes: vec![],
            move_self: false,
            enable: vec![],
        }],
        limits: vec![],
        stale_scan: vec![],
        swap: cgroup::Swap::NotApplicable,
    };
    let cg = Cgroup::create(&plan).unwrap();
    say("dirs", dirs_json(&cg.created_dirs()));
    let leaf = cg.leaves()[0].to_path_buf();
    say("has_kill", leaf.join("cgroup.kill").exists());
    let name = leaf.file_name().unwrap().to_string_lossy().into_owned();
    // The child checks its own membership, then leaves sleepers behind.
    let marker = std::env::var("SHELLCAGE_CGROUP_MARKER").unwrap();
    let script = format!(
        "grep -q '^0::.*/{name}$' /proc/self/cgroup || exit 3; sleep 300 & sleep 300 & exit 0"
    );
    let child = run_child(&cg, &script, &marker, Duration::from_secs(10));
    say("status", status_text(&child.status));
    say(
        "procs_left",
        std::fs::read_to_string(leaf.join("cgroup.procs"))
            .unwrap()
            .split_whitespace()
            .count(),
    );
    say(
        "removed",
        match cg.remove() {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        },
    );
}

/// Our v2 cgroup holds only us (the guard-like group the test made): the
/// module moves us into a supervisor child, the command runs in a sibling
/// leaf, and removal puts us back where we were.
fn case_v2_move() {
    let before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let layout = cgroup::detect_host();
    let ours = layout.v2.as_ref().unwrap().ours.as_ref().unwrap().clone();
    say("procs_before", ours.procs.len());
    let plan = CgroupPlan {
        groups: vec![GroupPlan {
            version: Version::V2,
            parent: ours.dir.clone(),
            controllers: vec![],
            writes: vec![],
            move_self: true,
            enable: vec![],
        }],
        limits: vec![],
        stale_scan: vec![],
        swap: cgroup::Swap::NotApplicable,
    };
    let cg = Cgroup::create(&plan).unwrap();
    say("dirs", dirs_json(&cg.created_dirs()));
    let during = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    say(
        "self_during",
        during.lines().find(|l| l.starts_with("0::")).unwrap(),
    );
    let marker = std::env::var("SHELLCAGE_CGROUP_MARKER").unwrap();
    let name = cg.leaves()[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let child = run_child(
        &cg,
        &format!("grep -q '^0::.*/{name}$' /proc/self/cgroup || exit 3"),
        &marker,
        Duration::from_secs(10),
    );
    say("status", status_text(&child.status));
    say(
        "removed",
        match cg.remove() {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        },
    );
    let after = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    say("self_restored", after == before);
}

/// What this identity can get.
fn case_unprivileged() {
    let layout = cgroup::detect_host();
    let euid = nix::unistd::geteuid().as_raw();
    say("layout", serde_json::to_string(&layout.kind).unwrap());
    let r = req(Some(64 << 20), Some(50), Some(500));
    let plan = cgroup::describe(&r, &layout, euid);
    match refusal(&plan) {
        None => say("plan_groups", plan.groups.len()),
        Some(why) => say("refused", why),
    }
    say("best_effort_groups", plan.groups.len());
    for l in plan.not_enforced() {
        say(
            "not_enforced",
            format!("{}: {}", l.limit, l.reason.as_deref().unwrap_or("")),
        );
    }
    let cg = Cgroup::create(&plan).unwrap();
    say("created", cg.created_dirs().len());
}

// ---------------------------------------------------------------- tests

/// A guard for the bombs, or a skip (fail in CI) saying why there is none.
fn root_guard(pids: u64, memory: u64) -> Option<Guard> {
    if !is_root() {
        return None;
    }
    let g = Guard::new(pids, memory);
    require(
        g.is_some(),
        "writable v1 pids and memory hierarchies for the guard group (root)",
    );
    g
}

fn assert_gone(r: &Report) {
    let dirs: Vec<PathBuf> = serde_json::from_str(r.get("dirs")).unwrap();
    assert!(!dirs.is_empty(), "{r:#?}");
    for d in dirs {
        assert!(!d.exists(), "{} left behind: {r:#?}", d.display());
    }
}

#[test]
fn fork_bomb_stops_at_the_process_limit() {
    let Some(guard) = root_guard(200, 1 << 30) else {
        return unprivileged_expectation();
    };
    let m = marker();
    let start = Instant::now();
    let r = helper(
        "fork-bomb",
        Some(&guard),
        &[("SHELLCAGE_CGROUP_MARKER", &m)],
    );
    eprintln!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(0), "{r:#?}");
    let peak: u64 = r.get("peak_pids").parse().unwrap();
    let v: cgroup::Verdict = serde_json::from_str(r.get("verdict")).unwrap();
    // Control: the bomb really ran into the limit.
    assert!(v.forks_refused > 0, "{r:#?}");
    assert!(peak > 10 && peak <= 50, "peak {peak}: {r:#?}");
    assert_eq!(
        r.get("message"),
        format!(
            "process limit 50 reached: {} fork(s) refused",
            v.forks_refused
        )
    );
    assert_eq!(r.get("removed"), "ok");
    assert_gone(&r);
    // The host: nothing of the bomb is left, the guard is empty, we can fork.
    std::thread::sleep(Duration::from_millis(100));
    assert!(host_pids_with(&m).is_empty(), "bomb processes survived");
    assert!(guard.empty());
    assert!(Command::new("true").status().unwrap().success());
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn memory_bomb_is_oom_killed_and_the_verdict_says_memory() {
    let Some(guard) = root_guard(200, 512 << 20) else {
        return unprivileged_expectation();
    };
    let m = marker();
    let r = helper(
        "memory-bomb",
        Some(&guard),
        &[("SHELLCAGE_CGROUP_MARKER", &m)],
    );
    eprintln!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(0), "{r:#?}");
    assert_eq!(r.get("status"), "signal:9", "{r:#?}");
    let v: cgroup::Verdict = serde_json::from_str(r.get("verdict")).unwrap();
    assert!(v.oom_kills >= 1, "{r:#?}");
    let ended: Vec<Ended> = serde_json::from_str(r.get("ended")).unwrap();
    assert_eq!(ended, [Ended::MemoryLimit(64 << 20)]);
    assert_eq!(r.get("message"), "killed: memory limit 64 MiB reached");
    if let Some(peak) = v.memory_peak {
        assert!(peak <= 64 << 20, "peak {peak}");
    }
    assert_eq!(r.get("removed"), "ok");
    assert_gone(&r);
    // The guard's own limit (512 MiB) was never reached: ours held.
    let guard_fail: u64 = guard
        .dirs
        .iter()
        .find(|d| d.join("memory.failcnt").exists())
        .map(|d| {
            std::fs::read_to_string(d.join("memory.failcnt"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .unwrap();
    assert_eq!(guard_fail, 0);
}

#[test]
fn cpu_limit_throttles() {
    let Some(guard) = root_guard(200, 1 << 30) else {
        return unprivileged_expectation();
    };
    let start = std::time::Instant::now();
    let r = helper("cpu", Some(&guard), &[]);
    let wall = start.elapsed();
    assert_eq!(r.code, Some(0), "{r:#?}");
    assert_eq!(r.get("status"), "exit:0", "{r:#?}");
    let v: cgroup::Verdict = serde_json::from_str(r.get("verdict")).unwrap();
    // 0.4 s of CPU at 0.2 cores takes 2 s: without the limit it takes 0.4 s
    // on an idle core. Load only makes it slower, so the bound holds there.
    assert!(
        wall >= Duration::from_millis(1500),
        "0.4 s of CPU took only {wall:?}: not capped at 0.2 cores: {r:#?}"
    );
    // The kernel says it throttled the group (how much depends on how much
    // of a core the loop got between throttles: less on a busy machine).
    let throttled = v.cpu_throttled_us.expect("cpu.stat throttled time");
    assert!(throttled > 0, "never throttled: {r:#?}");
    assert!(v.ended().is_empty());
    assert_eq!(r.get("removed"), "ok");
    assert_gone(&r);
}

#[test]
fn groups_are_removed_on_normal_exit_kill_and_error_paths() {
    let Some(guard) = root_guard(200, 1 << 30) else {
        return unprivileged_expectation();
    };
    let r = helper("normal", Some(&guard), &[]);
    assert_eq!(r.get("status"), "exit:0", "{r:#?}");
    assert_eq!(r.get("removed"), "ok");
    assert_gone(&r);

    let m = marker();
    let r = helper("kill", Some(&guard), &[("SHELLCAGE_CGROUP_MARKER", &m)]);
    assert_eq!(
        r.get("status"),
        "running",
        "the supervisor gave up first: {r:#?}"
    );
    assert_eq!(r.get("removed"), "ok", "{r:#?}");
    assert_gone(&r);
    std::thread::sleep(Duration::from_millis(100));
    assert!(host_pids_with(&m).is_empty(), "processes survived removal");

    let r = helper("fork-drop", Some(&guard), &[]);
    assert_eq!(r.get("after_child_drop"), "true", "{r:#?}");
    assert_eq!(r.get("removed"), "ok");
    assert_gone(&r);

    let r = helper("attach-error", Some(&guard), &[]);
    if r.lines.get("attach").map(String::as_str) == Some("ok") {
        // No v2 leaf: nothing for the supervisor to move.
        assert_ne!(r.get("v1_leaves"), "0", "{r:#?}");
    } else {
        assert!(r.get("attach_error").contains("No such process"), "{r:#?}");
    }
    if r.get("v1_leaves") != "0" {
        assert!(
            r.get("join_error").contains("cannot move the sandbox into")
                && r.get("join_error").contains("/tasks"),
            "{r:#?}"
        );
        assert!(r.get("join_status").contains("125"), "{r:#?}");
        assert_eq!(r.get("child_ran"), "false", "{r:#?}");
    }
    assert_gone(&r);

    // create() fails on the last group: the parents are as before.
    let r = helper("create-error", Some(&guard), &[]);
    assert!(r.get("create_error").contains("not-a-pid"), "{r:#?}");
    let parents: Vec<PathBuf> = serde_json::from_str(r.get("dirs")).unwrap();
    assert!(
        parents.len() >= 2,
        "several hierarchies make this a half-way failure: {r:#?}"
    );
    // Only this helper's names: other cases may run in the same parents now.
    let prefix = format!("shellcage-{}-", r.get("pid"));
    for p in parents {
        let left: Vec<_> = std::fs::read_dir(&p)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .collect();
        assert!(left.is_empty(), "left in {}: {left:?}", p.display());
    }
    assert!(guard.empty());
}

#[test]
fn v2_child_starts_in_its_leaf_with_clone_into_cgroup() {
    if !is_root() {
        return unprivileged_expectation();
    }
    let layout = cgroup::detect_host();
    let writable = layout
        .v2
        .as_ref()
        .and_then(|h| h.ours.as_ref().ok())
        .is_some_and(|o| o.writable);
    if !require(writable, "a writable cgroup v2 hierarchy (root)") {
        return;
    }
    let m = marker();
    let r = helper("v2-clone", None, &[("SHELLCAGE_CGROUP_MARKER", &m)]);
    eprintln!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.get("placement"), "clone3");
    assert_eq!(
        r.get("status"),
        "exit:0",
        "the child was not in its leaf: {r:#?}"
    );
    assert_eq!(
        r.get("procs_left"),
        "2",
        "the sleepers run in the leaf: {r:#?}"
    );
    assert_eq!(r.get("removed"), "ok", "{r:#?}");
    assert_gone(&r);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        host_pids_with(&m).is_empty(),
        "sleepers survived cgroup.kill"
    );
}

#[test]
fn v2_moves_only_itself_into_a_child_and_back() {
    if !is_root() {
        return unprivileged_expectation();
    }
    let layout = cgroup::detect_host();
    let Some(ours) = layout.v2.as_ref().and_then(|h| h.ours.as_ref().ok()) else {
        require(false, "a cgroup v2 hierarchy (root)");
        return;
    };
    // A group of the helper's own, below the test's cgroup, like the scope
    // systemd-run --scope would give it.
    let own = ours.dir.join(format!("shellcage-test-{}", marker()));
    std::fs::create_dir(&own).unwrap();
    let script = format!(
        "echo $$ > '{}/cgroup.procs' || exit 99; exec \"$@\"",
        own.display()
    );
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("/bin/sh")
        .args(["-c", &script, "sh"])
        .arg(&exe)
        .args([HELPER_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, "v2-move")
        .env("SHELLCAGE_CGROUP_MARKER", marker())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let get = |k: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("CG {k} ")))
            .unwrap_or_else(|| panic!("no {k}: {stdout} {}", String::from_utf8_lossy(&out.stderr)))
            .to_string()
    };
    let own_name = own.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(get("procs_before"), "1", "{stdout}");
    assert!(
        get("self_during").ends_with(&format!(
            "/{own_name}/shellcage-{}-supervisor",
            get_pid(&stdout)
        )),
        "{stdout}"
    );
    assert_eq!(get("status"), "exit:0", "{stdout}");
    assert_eq!(get("removed"), "ok", "{stdout}");
    assert_eq!(get("self_restored"), "true", "{stdout}");
    let left: Vec<_> = std::fs::read_dir(&own)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    for _ in 0..100 {
        if std::fs::remove_dir(&own).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!own.exists());
}

/// The helper's pid, from the supervisor directory it reported.
fn get_pid(stdout: &str) -> String {
    let dirs = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CG dirs "))
        .unwrap();
    let dirs: Vec<PathBuf> = serde_json::from_str(dirs).unwrap();
    let sup = dirs
        .iter()
        .find_map(|d| {
            d.file_name()?
                .to_str()?
                .strip_suffix("-supervisor")
                .map(String::from)
        })
        .unwrap();
    sup.trim_start_matches("shellcage-").to_string()
}

/// As an unprivileged user on this kind of host (v1 controllers, root's):
/// "not available" with the right hint, and nothing created. As root: the
/// same host gives the limits.
fn unprivileged_expectation() {
    let layout = cgroup::detect_host();
    let r = helper("unprivileged", None, &[]);
    eprintln!("{}", r.stdout);
    let v1_only = layout
        .v1
        .iter()
        .any(|h| h.controllers.iter().any(|c| c == "pids"));
    if is_root() {
        assert!(r.get("plan_groups").parse::<usize>().unwrap() > 0, "{r:#?}");
        return;
    }
    if v1_only {
        assert!(
            r.get("refused").contains("is not writable by uid"),
            "{r:#?}"
        );
        assert!(
            r.get("refused")
                .contains("cgroup v1 hierarchies belong to root"),
            "{r:#?}"
        );
        assert_eq!(r.get("best_effort_groups"), "0");
        assert_eq!(r.get("created"), "0");
        assert!(r.lines.contains_key("not_enforced"));
    } else {
        // cgroup v2: what we get depends on the delegation of our cgroup;
        // either a plan or a refusal naming the fix.
        if let Some(refused) = r.lines.get("refused") {
            assert!(
                refused.contains("systemd-run --user --scope -p Delegate=yes"),
                "{r:#?}"
            );
        }
    }
}

#[test]
fn unprivileged_user_gets_not_available_and_nothing_is_created() {
    // Runs for real as the CI's unprivileged user; as root it checks that the
    // same host gives root the limits.
    let before = snapshot_dirs();
    unprivileged_expectation();
    if !is_root() {
        assert_eq!(before, snapshot_dirs(), "a cgroup directory was created");
    }
}

/// Directories named shellcage-* in our own cgroups (the places the module
/// could create something).
fn snapshot_dirs() -> Vec<PathBuf> {
    let layout = cgroup::detect_host();
    let mut out = Vec::new();
    for h in layout.v1.iter().chain(layout.v2.iter()) {
        if let Ok(o) = &h.ours {
            if let Ok(rd) = std::fs::read_dir(&o.dir) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with("shellcage-") {
                        out.push(e.path());
                    }
                }
            }
        }
    }
    out.sort();
    out
}

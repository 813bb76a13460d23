//! Pure tests on simulated hosts: a temporary root with `proc/self/cgroup`,
//! `proc/self/mountinfo`, `proc/swaps` and cgroup directories, read by the
//! same [`detect`] the real host uses, then [`describe`]d.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

const PID: i32 = 4242;

/// A simulated host.
struct Sim {
    dir: tempfile::TempDir,
}

impl Sim {
    fn new(proc_cgroup: &str, mountinfo: &str) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/self")).unwrap();
        std::fs::write(dir.path().join("proc/self/cgroup"), proc_cgroup).unwrap();
        std::fs::write(dir.path().join("proc/self/mountinfo"), mountinfo).unwrap();
        std::fs::write(
            dir.path().join("proc/swaps"),
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
        )
        .unwrap();
        Sim { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn swap_on(&self) {
        std::fs::write(
            self.root().join("proc/swaps"),
            "Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1048572 0 -2\n",
        )
        .unwrap();
    }

    /// A cgroup directory at host path `path` with interface files.
    fn cg(&self, path: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.root().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    fn layout(&self, access: &dyn Access) -> Layout {
        detect(self.root(), PID, access)
    }
}

fn me() -> SimAccess {
    SimAccess {
        uid: nix::unistd::geteuid().as_raw(),
        gids: vec![],
    }
}

/// Someone who owns none of the simulated files.
fn stranger() -> SimAccess {
    SimAccess {
        uid: nix::unistd::geteuid().as_raw().wrapping_add(12345),
        gids: vec![],
    }
}

fn req() -> LimitRequest {
    LimitRequest {
        memory: Some(4 << 30),
        processes: Some(512),
        cpu_millis: Some(2000),
    }
}

/// The limits a plan cannot enforce, as the run's refusal names them when
/// all are required (`plan::plan` builds its refusal the same way): every
/// `LIMIT: reason`, and the first fix.
struct Unenforced {
    reason: String,
    hint: String,
}

impl std::fmt::Display for Unenforced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (hint: {})", self.reason, self.hint)
    }
}

fn unenforced(plan: &CgroupPlan) -> Unenforced {
    let missing: Vec<&LimitStatus> = plan.not_enforced().collect();
    assert!(!missing.is_empty(), "every limit is enforced: {plan:?}");
    Unenforced {
        reason: missing
            .iter()
            .map(|l| format!("{}: {}", l.limit, l.reason.as_deref().unwrap()))
            .collect::<Vec<_>>()
            .join("; "),
        hint: missing[0].hint.clone().unwrap(),
    }
}

const V2_MOUNTINFO: &str = "\
24 1 0:22 / / rw,relatime - ext4 /dev/sda1 rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

const SCOPE: &str = "/user.slice/user-1000.slice/user@1000.service/app.slice/run-r0a1b2c3.scope";

/// cgroup v2 with a scope of our own (systemd-run --user --scope -p Delegate=yes).
fn v2_delegated(procs: &str, controllers: &str) -> Sim {
    let sim = Sim::new(&format!("0::{SCOPE}\n"), V2_MOUNTINFO);
    sim.cg(
        &format!("/sys/fs/cgroup{SCOPE}"),
        &[
            ("cgroup.type", "domain\n"),
            ("cgroup.controllers", controllers),
            ("cgroup.subtree_control", "\n"),
            ("cgroup.procs", procs),
            ("memory.swap.max", "max\n"),
            ("cgroup.kill", ""),
        ],
    );
    sim
}

#[test]
fn v2_delegated_scope_moves_only_shellcage_and_enables_controllers() {
    let sim = v2_delegated("4242\n", "cpu memory pids\n");
    let layout = sim.layout(&me());
    assert_eq!(layout.kind, LayoutKind::V2);
    let plan = describe(&req(), &layout, 1000);
    assert_eq!(plan.groups.len(), 1);
    let g = &plan.groups[0];
    assert_eq!(g.version, Version::V2);
    assert_eq!(
        g.parent,
        sim.root()
            .join(format!("sys/fs/cgroup{SCOPE}").trim_start_matches('/'))
    );
    assert!(
        g.move_self,
        "the scope holds shellcage: it must move into a child"
    );
    assert_eq!(g.enable, ["memory", "pids", "cpu"]);
    let writes: Vec<(&str, &str)> = g
        .writes
        .iter()
        .map(|w| (w.file.as_str(), w.value.as_str()))
        .collect();
    assert_eq!(
        writes,
        [
            ("memory.max", "4294967296"),
            ("memory.swap.max", "0"),
            ("memory.oom.group", "1"),
            ("pids.max", "512"),
            ("cpu.max", "200000 100000"),
        ]
    );
    assert_eq!(plan.swap, Swap::Capped);
    assert!(plan.not_enforced().next().is_none());
    assert_eq!(
        plan.limits[0].mechanism.as_deref(),
        Some("cgroup v2 memory.max")
    );
}

#[test]
fn v2_not_delegated_refuses_with_the_systemd_run_fix() {
    let sim = v2_delegated("4242\n", "cpu memory pids\n");
    let layout = sim.layout(&stranger());
    let refusal = unenforced(&describe(&req(), &layout, 1000));
    assert!(
        refusal.reason.contains("is not delegated to uid 1000"),
        "{refusal}"
    );
    assert!(refusal.reason.contains("memory limit 4 GiB"), "{refusal}");
    assert!(refusal.reason.contains("process limit 512"), "{refusal}");
    assert!(refusal.reason.contains("cpu limit 2 cores"), "{refusal}");
    assert_eq!(
        refusal.hint,
        "run it in a cgroup of its own with the controllers delegated: systemd-run --user --scope -p Delegate=yes shellcage …"
    );
    assert!(refusal.to_string().ends_with("(hint: run it in a cgroup of its own with the controllers delegated: systemd-run --user --scope -p Delegate=yes shellcage …)"));
    // Best effort: nothing to create, every limit reported as not enforced.
    let plan = describe(&req(), &layout, 1000);
    assert!(plan.groups.is_empty());
    assert_eq!(plan.not_enforced().count(), 3);
    assert!(
        plan.limits
            .iter()
            .all(|l| l.hint.as_deref().unwrap().contains("Delegate=yes"))
    );
}

#[test]
fn v2_cgroup_shared_with_other_processes_is_not_used() {
    // A terminal's scope: the shell and the terminal are in it too.
    let sim = v2_delegated("100\n101\n4242\n", "cpu memory pids\n");
    let layout = sim.layout(&me());
    let refusal = unenforced(&describe(&req(), &layout, 1000));
    assert!(
        refusal.reason.contains("also holds 2 other process(es)"),
        "{refusal}"
    );
    assert!(
        refusal
            .hint
            .contains("systemd-run --user --scope -p Delegate=yes")
    );
}

#[test]
fn v2_missing_controller_is_named_and_best_effort_keeps_the_others() {
    let sim = v2_delegated("4242\n", "memory pids\n");
    let layout = sim.layout(&me());
    let refusal = unenforced(&describe(&req(), &layout, 1000));
    assert!(
        refusal
            .reason
            .contains("the cpu controller is not available in cgroup")
            && refusal.reason.contains("(cgroup.controllers: memory pids)"),
        "{refusal}"
    );
    assert!(
        refusal.hint.contains("Delegate=cpu memory pids"),
        "{refusal}"
    );
    let plan = describe(&req(), &layout, 1000);
    assert_eq!(plan.groups.len(), 1);
    assert_eq!(plan.groups[0].enable, ["memory", "pids"]);
    let missing: Vec<_> = plan.not_enforced().map(|l| l.limit).collect();
    assert_eq!(missing, [Limit::Cpu(2000)]);
}

#[test]
fn v2_subtree_control_not_writable_is_not_delegated() {
    let sim = v2_delegated("4242\n", "cpu memory pids\n");
    let file = sim
        .root()
        .join(format!("sys/fs/cgroup{SCOPE}/cgroup.subtree_control").trim_start_matches('/'));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let layout = sim.layout(&me());
    let err = unenforced(&describe(&req(), &layout, 1000));
    assert!(err.reason.contains("not delegated"), "{err}");
}

#[test]
fn v2_real_root_needs_no_move() {
    // Root on a host without systemd: the hierarchy's root (no cgroup.type)
    // may hold processes and still give controllers to children.
    let sim = Sim::new("0::/\n", V2_MOUNTINFO);
    sim.cg(
        "/sys/fs/cgroup",
        &[
            ("cgroup.controllers", "cpuset cpu io memory pids\n"),
            ("cgroup.subtree_control", "memory pids\n"),
            ("cgroup.procs", "1\n2\n4242\n"),
        ],
    );
    let layout = sim.layout(&me());
    let cpu_and_memory = LimitRequest {
        cpu_millis: None,
        ..req()
    };
    let plan = describe(&cpu_and_memory, &layout, 0);
    let g = &plan.groups[0];
    assert!(!g.move_self);
    assert!(g.enable.is_empty());
    assert_eq!(plan.swap, Swap::Capped, "checked again in the leaf");
    // cpu is not enabled in the root: that would change the whole host.
    let err = unenforced(&describe(&req(), &layout, 0));
    assert!(err.reason.contains("cpu limit 2 cores: the cpu controller is not enabled in the root cgroup's cgroup.subtree_control"), "{err}");
    assert_eq!(
        err.hint,
        "enable it once for the host: echo +cpu > /sys/fs/cgroup/cgroup.subtree_control"
    );
}

/// This machine's layout: v1 memory, pids, cpu controllers, a v2 hierarchy
/// without them, and our memory cgroup below a parent's.
const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/4c00
2:cpuacct:/
1:cpu:/
0::/
";

fn hybrid() -> Sim {
    let sim = Sim::new(HYBRID_CGROUP, HYBRID_MOUNTINFO);
    sim.cg(
        "/sys/fs/cgroup/memory/process_api/4c00",
        &[
            ("cgroup.procs", "4242\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
        ],
    );
    sim.cg("/sys/fs/cgroup/pids", &[("cgroup.procs", "1\n4242\n")]);
    sim.cg("/sys/fs/cgroup/cpu", &[("cgroup.procs", "1\n4242\n")]);
    sim.cg("/sys/fs/cgroup/cpuacct", &[("cgroup.procs", "1\n4242\n")]);
    sim.cg(
        "/sys/fs/cgroup/unified",
        &[
            ("cgroup.controllers", "hugetlb\n"),
            ("cgroup.subtree_control", ""),
            ("cgroup.procs", "1\n4242\n"),
        ],
    );
    sim
}

#[test]
fn hybrid_uses_the_v1_controllers_below_our_own_cgroups() {
    let sim = hybrid();
    let layout = sim.layout(&me());
    assert_eq!(layout.kind, LayoutKind::Hybrid);
    assert_eq!(
        layout.v1.len(),
        3,
        "cpu, memory, pids; neither cpuacct nor name=systemd"
    );
    let plan = describe(&req(), &layout, 0);
    let parents: Vec<(Version, PathBuf, Vec<Controller>)> = plan
        .groups
        .iter()
        .map(|g| (g.version, g.parent.clone(), g.controllers.clone()))
        .collect();
    let r = sim.root();
    assert_eq!(
        parents,
        [
            (
                Version::V1,
                r.join("sys/fs/cgroup/memory/process_api/4c00"),
                vec![Controller::Memory]
            ),
            (
                Version::V1,
                r.join("sys/fs/cgroup/pids"),
                vec![Controller::Pids]
            ),
            (
                Version::V1,
                r.join("sys/fs/cgroup/cpu"),
                vec![Controller::Cpu]
            ),
        ]
    );
    assert!(
        plan.groups
            .iter()
            .all(|g| !g.move_self && g.enable.is_empty())
    );
    let files: Vec<&str> = plan
        .groups
        .iter()
        .flat_map(|g| g.writes.iter().map(|w| w.file.as_str()))
        .collect();
    assert_eq!(
        files,
        [
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "pids.max",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us"
        ]
    );
    assert_eq!(plan.groups[2].writes[1].value, "200000");
    assert_eq!(plan.swap, Swap::Capped);
}

#[test]
fn hybrid_as_unprivileged_user_reports_root_only_and_creates_nothing() {
    let sim = hybrid();
    let layout = sim.layout(&stranger());
    let refusal = unenforced(&describe(&req(), &layout, 1001));
    assert!(
        refusal.reason.contains("is not writable by uid 1001"),
        "{refusal}"
    );
    assert!(
        refusal
            .hint
            .contains("cgroup v1 hierarchies belong to root"),
        "{refusal}"
    );
    let plan = describe(&req(), &layout, 1001);
    assert!(plan.groups.is_empty(), "never half-create");
    // Applying the empty plan touches nothing.
    let before = list_tree(sim.root());
    let cg = Cgroup::create(&plan).unwrap();
    assert!(cg.created_dirs().is_empty());
    cg.remove().unwrap();
    assert_eq!(before, list_tree(sim.root()));
}

#[test]
fn one_unusable_hierarchy_is_decided_before_anything_is_created() {
    let sim = hybrid();
    std::fs::set_permissions(
        sim.root().join("sys/fs/cgroup/pids"),
        std::fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    let layout = sim.layout(&me());
    let err = unenforced(&describe(&req(), &layout, 0));
    assert!(err.reason.starts_with("process limit 512: "), "{err}");
    let plan = describe(&req(), &layout, 0);
    let ctrls: Vec<_> = plan
        .groups
        .iter()
        .flat_map(|g| g.controllers.clone())
        .collect();
    assert_eq!(ctrls, [Controller::Memory, Controller::Cpu]);
}

#[test]
fn pure_v1_with_comounted_cpu_and_no_swap_accounting() {
    let mountinfo = "\
25 24 0:23 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
26 24 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
27 24 0:25 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
";
    let sim = Sim::new(
        "4:pids:/user.slice\n3:memory:/user.slice\n2:cpu,cpuacct:/user.slice\n",
        mountinfo,
    );
    sim.cg(
        "/sys/fs/cgroup/cpu,cpuacct/user.slice",
        &[("cgroup.procs", "4242\n")],
    );
    sim.cg(
        "/sys/fs/cgroup/memory/user.slice",
        &[("cgroup.procs", "4242\n")],
    );
    sim.cg(
        "/sys/fs/cgroup/pids/user.slice",
        &[("cgroup.procs", "4242\n")],
    );
    sim.swap_on();
    let layout = sim.layout(&me());
    assert_eq!(layout.kind, LayoutKind::V1);
    let plan = describe(&req(), &layout, 0);
    assert_eq!(
        plan.groups[2].parent,
        sim.root().join("sys/fs/cgroup/cpu,cpuacct/user.slice")
    );
    match &plan.swap {
        Swap::NotCapped(why) => assert!(why.contains("swapaccount=1"), "{why}"),
        other => panic!("expected swap not capped, got {other:?}"),
    }
}

#[test]
fn no_cgroup_filesystem() {
    let sim = Sim::new("", "24 1 0:22 / / rw - ext4 /dev/sda1 rw\n");
    let layout = sim.layout(&me());
    assert_eq!(layout.kind, LayoutKind::None);
    let err = unenforced(&describe(&req(), &layout, 0));
    assert!(
        err.reason.contains("no cgroup filesystem is mounted"),
        "{err}"
    );
    assert!(err.hint.contains("mount cgroup2"), "{err}");
}

#[test]
fn container_without_cgroup_namespace_sees_only_its_subtree() {
    // Docker with a bind of the container's own subtree at /sys/fs/cgroup.
    let mountinfo = "30 24 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
    let sim = Sim::new("0::/docker/abc\n", mountinfo);
    sim.cg(
        "/sys/fs/cgroup",
        &[
            ("cgroup.type", "domain\n"),
            ("cgroup.controllers", "memory pids\n"),
            ("cgroup.subtree_control", ""),
            ("cgroup.procs", "1\n4242\n"),
        ],
    );
    let layout = sim.layout(&me());
    let ours = layout.v2.as_ref().unwrap().ours.as_ref().unwrap();
    assert_eq!(ours.dir, sim.root().join("sys/fs/cgroup"));
    let err = unenforced(&describe(&req(), &layout, 0));
    assert!(err.reason.contains("1 other process"), "{err}");

    // Our cgroup outside the mounted subtree, or outside our namespace.
    let sim = Sim::new("0::/elsewhere\n", mountinfo);
    let layout = sim.layout(&me());
    let why = layout.v2.as_ref().unwrap().ours.as_ref().unwrap_err();
    assert!(why.contains("not inside the mounted part"), "{why}");
    let sim = Sim::new("0::/../../system.slice\n", V2_MOUNTINFO);
    let why = sim.layout(&me()).v2.unwrap().ours.unwrap_err();
    assert!(why.contains("outside our cgroup namespace"), "{why}");
}

#[test]
fn mountinfo_escapes_and_options() {
    let mounts = detect::parse_mountinfo(
        "35 31 0:32 / /sys/fs/my\\040cgroups/memory rw,relatime shared:9 master:2 - cgroup cgroup rw,memory,clone_children\n\
         36 31 0:33 / /x rw - cgroup cgroup rw,xattr,name=systemd\n",
    );
    assert_eq!(mounts[0].point, PathBuf::from("/sys/fs/my cgroups/memory"));
    assert_eq!(mounts[0].controllers, ["memory"]);
    assert!(mounts[1].controllers.is_empty());
}

#[test]
fn empty_request_is_an_empty_plan() {
    let sim = hybrid();
    let none = LimitRequest::default();
    let plan = describe(&none, &sim.layout(&stranger()), 1000);
    assert!(plan.groups.is_empty() && plan.limits.is_empty());
    assert_eq!(plan.swap, Swap::NotApplicable);
}

#[test]
fn cpu_values() {
    assert_eq!(format_cpu(2000), "2");
    assert_eq!(format_cpu(500), "0.5");
    assert_eq!(format_cpu(1250), "1.25");
    assert_eq!(cpu_quota_us(10), 1000, "the kernel's minimum quota");
}

#[test]
fn byte_display() {
    assert_eq!(format_bytes(4 << 30), "4 GiB");
    assert_eq!(format_bytes(64 << 20), "64 MiB");
    assert_eq!(format_bytes(1536 << 20), "1536 MiB");
    assert_eq!(format_bytes(1000), "1000 bytes");
}

#[test]
fn verdict_messages() {
    let mut v = Verdict {
        memory_limit: Some(4 << 30),
        oom_kills: 1,
        memory_limit_hit: true,
        process_limit: Some(512),
        ..Verdict::default()
    };
    assert_eq!(v.ended(), [Ended::MemoryLimit(4 << 30)]);
    assert_eq!(
        v.ended()[0].to_string(),
        "killed: memory limit 4 GiB reached"
    );
    v.forks_refused = 3;
    assert_eq!(
        v.ended()[1].to_string(),
        "process limit 512 reached: 3 fork(s) refused"
    );
    v.process_peak = Some(512);
    assert_eq!(
        v.ended()[1],
        Ended::ProcessLimit {
            limit: 512,
            refused: 3
        }
    );
    // Refused below our limit: an enclosing group's limit, not blamed on ours.
    v.process_peak = Some(128);
    assert_eq!(
        v.ended()[1].to_string(),
        "3 fork(s) refused by an enclosing cgroup's process limit (the host's, below the sandbox's 512)"
    );
    v.process_peak = None;
    // An OOM kill without our limit being reached is not blamed on it.
    v.memory_limit_hit = false;
    assert_eq!(v.ended()[0], Ended::OutOfMemory);
    // Reaching the memory limit without a kill (reclaim) ends nothing.
    let v = Verdict {
        memory_limit: Some(1 << 30),
        memory_limit_hit: true,
        ..Verdict::default()
    };
    assert!(v.ended().is_empty());
}

/// Every path below `root`, for "nothing was created" checks.
fn list_tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

//! Applying a [`CgroupPlan`]: create the groups, place the sandbox, read what
//! happened, and remove every directory created, on every exit path.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::{CgroupPlan, Controller, GroupPlan, Limit, LimitStatus, Swap, Version, format_bytes};
use crate::sys::{self, SysError};

/// How long the processes left in a leaf may take to die after SIGKILL, and
/// the kernel to let the directory go, before removal reports failure.
const KILL_TIMEOUT: Duration = Duration::from_secs(3);
const RMDIR_TIMEOUT: Duration = Duration::from_secs(3);

/// Leaves created by this process: the second part of their names.
static SEQ: AtomicU32 = AtomicU32::new(0);

/// A group left behind by a supervisor that was killed (SIGKILL, a crash)
/// is removed by a later run once it is at least this old and its lock is
/// free: the lock is taken right after `mkdir`, so a group younger than this
/// may be one another run has just made.
const STALE_AGE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cgroup {} still holds processes {pids:?} {}s after SIGKILL (hint: a process stuck in the kernel, state D; the directory is left behind)",
        path.display(),
        KILL_TIMEOUT.as_secs()
    )]
    Busy { path: PathBuf, pids: Vec<i32> },
}

fn io_err(op: impl Into<String>, path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    let op = op.into();
    move |source| CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Write `value` to an existing cgroup interface file in one `write(2)` (the
/// kernel parses each write on its own; nothing is created on a miss).
fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

fn read_pids(path: &Path) -> io::Result<Vec<i32>> {
    Ok(std::fs::read_to_string(path)?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// A flat-keyed interface file (`KEY VALUE` lines) as numbers; missing file or
/// key reads as absent.
fn flat_keyed(path: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// One leaf this process created.
#[derive(Debug)]
struct Group {
    version: Version,
    leaf: PathBuf,
    controllers: Vec<Controller>,
    /// The leaf's directory, holding its lock (`flock`) for as long as this
    /// process lives: how a later run tells a live group from one left by a
    /// killed supervisor. On v2 also the target of `clone3(CLONE_INTO_CGROUP)`.
    fd: Option<OwnedFd>,
}

/// What was done to our own v2 cgroup to make room for a limited leaf.
#[derive(Debug)]
struct Base {
    parent: PathBuf,
    /// `parent/shellcage-<pid>-supervisor`, created by us.
    supervisor: Option<PathBuf>,
    /// Its directory, locked like a leaf's.
    lock: Option<OwnedFd>,
    /// We moved ourselves into `supervisor`.
    moved: bool,
    /// Controllers we added to `parent/cgroup.subtree_control`.
    enabled: Vec<String>,
}

/// The cgroups of one run. Dropping it removes them (see [`Cgroup::remove`]).
#[derive(Debug)]
pub struct Cgroup {
    groups: Vec<Group>,
    bases: Vec<Base>,
    limits: Vec<LimitStatus>,
    swap: Swap,
    /// Optional settings that did not apply (older kernels).
    notes: Vec<String>,
    /// The process that created the groups: a forked child that drops its
    /// copy of this value must not tear down the parent's groups.
    owner: u32,
    done: bool,
}

impl Cgroup {
    /// Create the groups of `plan` and set their limits. On any error
    /// everything created so far is removed again (and, on v2, shellcage is
    /// back in its own cgroup) before the error is returned. An empty plan
    /// creates nothing.
    ///
    /// Call it single-threaded when the plan moves shellcage itself (v2): a
    /// move takes all threads, but a thread created meanwhile could race it.
    pub fn create(plan: &CgroupPlan) -> Result<Cgroup, CgroupError> {
        let mut cg = Cgroup {
            groups: Vec::new(),
            bases: Vec::new(),
            limits: plan.limits.clone(),
            swap: plan.swap.clone(),
            notes: Vec::new(),
            owner: std::process::id(),
            done: plan.groups.is_empty(),
        };
        if plan.groups.is_empty() {
            return Ok(cg);
        }
        let pid = cg.owner;
        let name = format!("shellcage-{pid}-{}", SEQ.fetch_add(1, Ordering::Relaxed));
        for (version, dir) in &plan.stale_scan {
            remove_stale(*version, dir);
        }
        for g in &plan.groups {
            if g.version == Version::V2 && (g.move_self || !g.enable.is_empty()) {
                cg.prepare_v2(g, pid)?;
            }
            cg.make_leaf(g, &name)?;
        }
        tracing::debug!(groups = ?cg.leaves(), "cgroups created");
        Ok(cg)
    }

    /// v2: move ourselves out of the way (into a child of our cgroup) and
    /// give the controllers to the children.
    fn prepare_v2(&mut self, g: &GroupPlan, pid: u32) -> Result<(), CgroupError> {
        self.bases.push(Base {
            parent: g.parent.clone(),
            supervisor: None,
            lock: None,
            moved: false,
            enabled: Vec::new(),
        });
        let base = self.bases.last_mut().expect("just pushed");
        if g.move_self {
            let sup = g.parent.join(format!("shellcage-{pid}-supervisor"));
            match std::fs::create_dir(&sup) {
                Ok(()) => {}
                // Left by an earlier run of a process with our pid (younger
                // than STALE_AGE): ours now, unless someone holds it.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create cgroup", &sup)(e)),
            }
            base.supervisor = Some(sup.clone());
            base.lock = Some(open_locked(&sup)?);
            // "0": the writing process itself, whatever pid namespace we are in.
            let procs = sup.join("cgroup.procs");
            write_file(&procs, "0").map_err(io_err("move shellcage into", &procs))?;
            base.moved = true;
        }
        if !g.enable.is_empty() {
            let value: Vec<String> = g.enable.iter().map(|c| format!("+{c}")).collect();
            let file = g.parent.join("cgroup.subtree_control");
            write_file(&file, &value.join(" "))
                .map_err(io_err(format!("write '{}' to", value.join(" ")), &file))?;
            base.enabled = g.enable.clone();
        }
        Ok(())
    }

    fn make_leaf(&mut self, g: &GroupPlan, name: &str) -> Result<(), CgroupError> {
        let leaf = g.parent.join(name);
        std::fs::create_dir(&leaf).map_err(io_err("create cgroup", &leaf))?;
        self.groups.push(Group {
            version: g.version,
            leaf: leaf.clone(),
            controllers: g.controllers.clone(),
            fd: None,
        });
        let fd = open_locked(&leaf)?;
        self.groups.last_mut().expect("just pushed").fd = Some(fd);
        for w in &g.writes {
            let file = leaf.join(&w.file);
            match write_file(&file, &w.value) {
                Ok(()) => {}
                Err(e) if !w.required => {
                    let note = format!("{} = {}: {e}", w.file, w.value);
                    tracing::debug!(%note, "optional cgroup setting not applied");
                    let swap_file = w.file.contains("swap") || w.file.contains("memsw");
                    if swap_file && self.swap == Swap::Capped {
                        self.swap = if super::detect::swap_on(Path::new("/")) {
                            Swap::NotCapped(format!("cannot set {note}"))
                        } else {
                            Swap::NoSwap
                        };
                    }
                    self.notes.push(note);
                }
                Err(e) => {
                    return Err(io_err(
                        format!("write {} = {:?} to", w.file, w.value),
                        &file,
                    )(e));
                }
            }
        }
        Ok(())
    }

    /// The leaf directories (one per hierarchy), for reports and tests.
    pub fn leaves(&self) -> Vec<&Path> {
        self.groups.iter().map(|g| g.leaf.as_path()).collect()
    }

    /// Every directory this run created (leaves and the v2 supervisor group).
    pub fn created_dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.groups.iter().map(|g| g.leaf.clone()).collect();
        out.extend(self.bases.iter().filter_map(|b| b.supervisor.clone()));
        out
    }

    /// The requested limits and how each is enforced.
    pub fn limits(&self) -> &[LimitStatus] {
        &self.limits
    }

    /// Whether swap is capped, as found when the leaf was set up.
    pub fn swap(&self) -> &Swap {
        &self.swap
    }

    /// [`CgroupPlan::support`] as created: an optional setting the kernel
    /// refused (swap) shows here.
    pub fn support(&self) -> Vec<crate::probe::CgroupLimit> {
        super::support(&self.limits, &self.swap)
    }

    /// Optional settings the kernel did not take.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The v2 leaf's directory when the sandbox can be started directly in it
    /// with `clone3(CLONE_INTO_CGROUP)` ([`sys::clone_into_cgroup`]): exactly
    /// one group, on v2. Otherwise (v1, or nothing to place) use [`attach`](Self::attach).
    pub fn clone_target(&self) -> Option<BorrowedFd<'_>> {
        match self.groups.as_slice() {
            [g] if g.version == Version::V2 => g.fd.as_ref().map(|f| f.as_fd()),
            _ => None,
        }
    }

    /// Move process `pid` (with all its threads) into every v2 leaf; the v1
    /// leaves the process joins itself ([`StartGate::enter`]). For the clone3
    /// fallback on v2: the process must not have run anything yet (it waits on
    /// the [`StartGate`] of [`start_gate`](Self::start_gate)), so that all it
    /// starts is counted.
    pub fn attach(&self, pid: Pid) -> Result<(), CgroupError> {
        for g in self.groups.iter().filter(|g| g.version == Version::V2) {
            let procs = g.leaf.join("cgroup.procs");
            write_file(&procs, &pid.to_string())
                .map_err(io_err(format!("move process {pid} into"), &procs))?;
        }
        Ok(())
    }

    /// What a sandbox init that was not cloned into its leaf waits on before
    /// it runs anything: the supervisor's word that it is in the v2 leaves
    /// ([`attach`](Self::attach)), and the v1 leaves' `tasks` files, opened
    /// here, that it writes itself into.
    ///
    /// Why the init moves itself on v1: a write of another pid (or of a whole
    /// thread group, `cgroup.procs`) takes the kernel's global thread-group
    /// lock for writing, which waits for an RCU grace period; on an idle
    /// machine that was 13–27 ms per write here, against 0.06 ms for a single
    /// thread writing `0` (itself) into `tasks`, which takes no such lock. The
    /// init is single-threaded then (just cloned or forked), so the thread is
    /// the whole process, and everything it starts later is born inside. The
    /// files are opened here, outside the sandbox's namespaces: the kernel
    /// checks the opener's credentials (kernels from 5.16; before, the
    /// writer's, which are the same user).
    pub fn start_gate(&self) -> Result<StartGate, CgroupError> {
        let mut own = Vec::new();
        for g in self.groups.iter().filter(|g| g.version == Version::V1) {
            let tasks = g.leaf.join("tasks");
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&tasks)
                .map_err(io_err("open", &tasks))?;
            own.push((OwnedFd::from(f), tasks));
        }
        let pipe = match self.groups.iter().find(|g| g.version == Version::V2) {
            Some(g) => Some(sys::pipe_cloexec().map_err(|e| {
                io_err("make the start gate for", &g.leaf)(io::Error::from(e.errno))
            })?),
            None => None,
        };
        Ok(StartGate { pipe, own })
    }

    /// Which limits the run reached. Read it after the sandbox has ended and
    /// before [`remove`](Self::remove).
    pub fn verdict(&self) -> Verdict {
        let mut v = Verdict::default();
        for l in self.limits.iter().filter(|l| l.mechanism.is_some()) {
            match l.limit {
                Limit::Memory(b) => v.memory_limit = Some(b),
                Limit::Processes(n) => v.process_limit = Some(n),
                Limit::Cpu(m) => v.cpu_millis = Some(m),
            }
        }
        for g in &self.groups {
            for c in &g.controllers {
                read_counters(&mut v, *c, g.version, &g.leaf);
            }
        }
        v
    }

    /// Kill whatever is left in the leaves, remove them, and undo the v2
    /// preparation. Every step is attempted; the first failure is returned
    /// (and what it left behind is named in it).
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), CgroupError> {
        if self.done || std::process::id() != self.owner {
            self.done = true;
            return Ok(());
        }
        self.done = true;
        let mut first: Option<CgroupError> = None;
        while let Some(g) = self.groups.pop() {
            drop(g.fd);
            if let Err(e) = kill_all(g.version, &g.leaf).and_then(|()| rmdir_retry(&g.leaf)) {
                tracing::debug!(%e, "cgroup removal failed");
                first.get_or_insert(e);
            }
        }
        while let Some(b) = self.bases.pop() {
            if let Err(e) = undo_base(&b) {
                tracing::debug!(%e, "cgroup v2 restore failed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::warn!("cgroup left behind: {e}");
        }
    }
}

fn open_dir(dir: &Path) -> Result<OwnedFd, CgroupError> {
    nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| io_err("open cgroup", dir)(io::Error::from(e)))
}

/// Open a group directory this run made and take its lock.
fn open_locked(dir: &Path) -> Result<OwnedFd, CgroupError> {
    let fd = open_dir(dir)?;
    match sys::try_lock_exclusive(fd.as_fd()) {
        Ok(true) => Ok(fd),
        Ok(false) => Err(io_err("lock cgroup", dir)(io::Error::new(
            io::ErrorKind::WouldBlock,
            "another process holds it",
        ))),
        Err(e) => Err(io_err("lock cgroup", dir)(io::Error::from(e))),
    }
}

/// `shellcage-<pid>-…`: a name this module gives its groups.
fn ours_by_name(name: &str) -> bool {
    name.strip_prefix("shellcage-")
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(pid, rest)| {
            !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty()
        })
}

/// Remove the groups in `parent` that a killed supervisor left behind: named
/// by this module, older than [`STALE_AGE`], and not locked (every live run
/// holds its groups' locks, whatever its pid namespace). What is still in one
/// is killed first, as the run's own removal would have. Best effort: a group
/// that cannot be removed now is left for a later run.
pub(super) fn remove_stale(version: Version, parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_str().is_some_and(ours_by_name) {
            continue;
        }
        let dir = e.path();
        let old = e
            .metadata()
            .ok()
            .filter(|m| m.is_dir())
            .and_then(|m| m.modified().ok())
            .is_some_and(|t| now.duration_since(t).is_ok_and(|age| age >= STALE_AGE));
        if !old {
            continue;
        }
        let Ok(fd) = open_dir(&dir) else { continue };
        if sys::try_lock_exclusive(fd.as_fd()) != Ok(true) {
            continue;
        }
        let removed = kill_all(version, &dir).and_then(|()| rmdir_retry(&dir));
        tracing::debug!(dir = %dir.display(), ?removed, "stale cgroup of a dead supervisor");
    }
}

/// Disable the controllers we enabled, move back into our own cgroup, remove
/// the supervisor group: our cgroup is as it was found.
fn undo_base(b: &Base) -> Result<(), CgroupError> {
    let mut first = None;
    if !b.enabled.is_empty() {
        let value: Vec<String> = b.enabled.iter().map(|c| format!("-{c}")).collect();
        let file = b.parent.join("cgroup.subtree_control");
        if let Err(e) = write_file(&file, &value.join(" ")) {
            first = Some(io_err(format!("write '{}' to", value.join(" ")), &file)(e));
        }
    }
    if b.moved {
        let procs = b.parent.join("cgroup.procs");
        if let Err(e) = write_file(&procs, "0") {
            // Still in the supervisor group: it cannot be removed either.
            return Err(first.unwrap_or_else(|| io_err("move shellcage back into", &procs)(e)));
        }
    }
    if let Some(sup) = &b.supervisor {
        if let Err(e) = rmdir_retry(sup) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// SIGKILL every process in `leaf` and wait until it is empty.
///
/// v2 ≥ 5.14 has `cgroup.kill` (atomic against forks); otherwise v2 freezes the
/// group first (≥ 5.2) so nothing forks between reading and killing, and v1
/// repeats the kill until nothing is left (a pids limit bounds a fork bomb).
fn kill_all(version: Version, leaf: &Path) -> Result<(), CgroupError> {
    let procs = leaf.join("cgroup.procs");
    if version == Version::V2 {
        let kill = leaf.join("cgroup.kill");
        let freeze = leaf.join("cgroup.freeze");
        if !(kill.exists() && write_file(&kill, "1").is_ok()) && freeze.exists() {
            let _ = write_file(&freeze, "1");
        }
    }
    let me = std::process::id() as i32;
    let deadline = Instant::now() + KILL_TIMEOUT;
    let mut pause = Duration::from_micros(100);
    loop {
        let pids: Vec<i32> = match read_pids(&procs) {
            Ok(p) => p.into_iter().filter(|&p| p != me).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("read", &procs)(e)),
        };
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::Busy {
                path: leaf.to_path_buf(),
                pids,
            });
        }
        signal_members(&procs, &pids);
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// SIGKILL the processes `pids` read from `procs`, never a process that
/// reused one of their pids: each is pinned with a pidfd, then checked to be
/// still listed, then signalled through the pidfd.
fn signal_members(procs: &Path, pids: &[i32]) {
    let pinned: Vec<(i32, Result<OwnedFd, SysError>)> = pids
        .iter()
        .map(|&p| (p, sys::pidfd_open(Pid::from_raw(p))))
        .collect();
    let listed: HashSet<i32> = read_pids(procs).unwrap_or_default().into_iter().collect();
    for (pid, fd) in pinned {
        if !listed.contains(&pid) {
            continue;
        }
        match fd {
            Ok(fd) => {
                let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
            }
            // Kernel < 5.3: no pidfds. The listing just checked is the guard.
            Err(e) if e.errno == nix::errno::Errno::ENOSYS => {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            }
            Err(_) => {} // ESRCH: already gone.
        }
    }
}

/// `rmdir`, retried while the kernel still counts exiting tasks (EBUSY).
fn rmdir_retry(dir: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + RMDIR_TIMEOUT;
    let mut pause = Duration::from_micros(100);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(io_err("remove cgroup", dir)(e)),
        }
    }
}

fn read_counters(v: &mut Verdict, c: Controller, version: Version, leaf: &Path) {
    match (c, version) {
        (Controller::Memory, Version::V2) => {
            let ev = flat_keyed(&leaf.join("memory.events"));
            let get = |k: &str| ev.get(k).copied().unwrap_or(0);
            v.oom_kills = get("oom_kill").max(get("oom_group_kill"));
            v.memory_limit_hit = get("max") > 0 || get("oom") > 0;
            v.memory_peak = read_u64(&leaf.join("memory.peak"));
        }
        (Controller::Memory, Version::V1) => {
            let oom = flat_keyed(&leaf.join("memory.oom_control"));
            v.oom_kills = oom.get("oom_kill").copied().unwrap_or(0);
            v.memory_peak = read_u64(&leaf.join("memory.max_usage_in_bytes"));
            // The failure counters are not enough: with memsw at the same
            // limit the memsw counter fails first, and recent kernels keep
            // no failcnt for it. A peak at the limit (within the last MiB of
            // charge batching) says the same.
            let failed = ["memory.failcnt", "memory.memsw.failcnt"]
                .iter()
                .any(|f| read_u64(&leaf.join(f)).unwrap_or(0) > 0);
            let peak = v
                .memory_peak
                .max(read_u64(&leaf.join("memory.memsw.max_usage_in_bytes")))
                .unwrap_or(0);
            let at_limit = v
                .memory_limit
                .is_some_and(|l| peak.saturating_add(1 << 20) >= l);
            v.memory_limit_hit = failed || at_limit;
        }
        (Controller::Pids, _) => {
            let ev = flat_keyed(&leaf.join("pids.events"));
            v.forks_refused = ev.get("max").copied().unwrap_or(0);
            // v1 counts a refused fork in the forking group's pids.events
            // whichever limit refused it (ours or an enclosing group's): the
            // peak tells them apart (pids.peak: Linux ≥ 6.1 on v1 and v2).
            v.process_peak = read_u64(&leaf.join("pids.peak"));
        }
        (Controller::Cpu, Version::V2) => {
            let st = flat_keyed(&leaf.join("cpu.stat"));
            v.cpu_throttled_us = st.get("throttled_usec").copied();
        }
        (Controller::Cpu, Version::V1) => {
            let st = flat_keyed(&leaf.join("cpu.stat"));
            v.cpu_throttled_us = st.get("throttled_time").map(|ns| ns / 1000);
        }
    }
}

/// What the limits did during the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub memory_limit: Option<u64>,
    /// Processes the kernel's OOM killer killed in the sandbox.
    pub oom_kills: u64,
    /// Memory use reached the sandbox's own limit at least once.
    pub memory_limit_hit: bool,
    /// Peak memory use, where the kernel reports it (v2 ≥ 5.19, v1).
    pub memory_peak: Option<u64>,
    pub process_limit: Option<u64>,
    /// Forks and clones refused because the process limit was reached.
    pub forks_refused: u64,
    /// Most processes and threads at once, where the kernel reports it.
    pub process_peak: Option<u64>,
    pub cpu_millis: Option<u32>,
    /// Time the sandbox spent throttled by its CPU limit.
    pub cpu_throttled_us: Option<u64>,
}

/// A limit that ended (or cut short) the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "limit")]
pub enum Ended {
    /// The OOM killer acted at the sandbox's memory limit.
    MemoryLimit(u64),
    /// The OOM killer acted although the sandbox's own limit was not reached
    /// (the host or an enclosing cgroup ran out).
    OutOfMemory,
    /// Forks were refused at the process limit.
    ProcessLimit { limit: u64, refused: u64 },
    /// Forks were refused below the sandbox's process limit: an enclosing
    /// cgroup's limit (the host's) was reached.
    EnclosingProcessLimit { limit: u64, refused: u64 },
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::MemoryLimit(b) => write!(f, "killed: memory limit {} reached", format_bytes(*b)),
            Ended::OutOfMemory => write!(
                f,
                "killed by the kernel's OOM killer: the host or an enclosing cgroup ran out of memory (not the sandbox's limit)"
            ),
            Ended::ProcessLimit { limit, refused } => write!(
                f,
                "process limit {limit} reached: {refused} fork(s) refused"
            ),
            Ended::EnclosingProcessLimit { limit, refused } => write!(
                f,
                "{refused} fork(s) refused by an enclosing cgroup's process limit (the host's, below the sandbox's {limit})"
            ),
        }
    }
}

impl Verdict {
    /// The limits that ended or cut short the run, memory first.
    pub fn ended(&self) -> Vec<Ended> {
        let mut out = Vec::new();
        if self.oom_kills > 0 {
            out.push(match self.memory_limit {
                Some(b) if self.memory_limit_hit => Ended::MemoryLimit(b),
                _ => Ended::OutOfMemory,
            });
        }
        if let (Some(limit), true) = (self.process_limit, self.forks_refused > 0) {
            let refused = self.forks_refused;
            out.push(match self.process_peak {
                Some(peak) if peak < limit => Ended::EnclosingProcessLimit { limit, refused },
                _ => Ended::ProcessLimit { limit, refused },
            });
        }
        out
    }
}

/// Holds the sandbox init until it is in every leaf (v1, and the clone3
/// fallback on v2): made by [`Cgroup::start_gate`].
pub struct StartGate {
    /// Supervisor → child, when a v2 leaf is joined by the supervisor.
    pipe: Option<(OwnedFd, OwnedFd)>,
    /// The v1 leaves' `tasks` files, which the child writes itself into.
    own: Vec<(OwnedFd, PathBuf)>,
}

/// The byte that releases the child; end of file means "give up".
const GO: u8 = b'1';

/// Why a sandbox init could not enter its leaves.
#[derive(Debug)]
pub enum GateError {
    /// The supervisor closed the gate (it reports why): exit quietly.
    GaveUp,
    /// Our own move into a v1 leaf failed.
    Join(String),
}

impl StartGate {
    /// Child side, first thing after the clone (single-threaded, nothing run
    /// yet): join the v1 leaves, then wait for the supervisor's word on the v2
    /// ones. On an error the child must exit without running anything.
    pub fn enter(self) -> Result<(), GateError> {
        for (fd, path) in &self.own {
            // "0": the writing thread itself, whatever pid namespace it is in.
            if let Err(e) = nix::unistd::write(fd, b"0") {
                return Err(GateError::Join(format!(
                    "cannot move the sandbox into {}: {e}",
                    path.display()
                )));
            }
        }
        drop(self.own);
        let Some((read, write)) = self.pipe else {
            return Ok(());
        };
        drop(write);
        let mut byte = [0u8; 1];
        loop {
            match nix::unistd::read(read.as_fd(), &mut byte) {
                Ok(1) if byte[0] == GO => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                _ => return Err(GateError::GaveUp),
            }
        }
    }

    /// Supervisor side: the child is placed in the v2 leaves (or there are
    /// none), let it run.
    pub fn release(self) -> Result<(), SysError> {
        drop(self.own);
        let Some((read, write)) = self.pipe else {
            return Ok(());
        };
        drop(read);
        loop {
            match nix::unistd::write(write.as_fd(), &[GO]) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(SysError::new("write", "cgroup start gate", e)),
            }
        }
    }
}

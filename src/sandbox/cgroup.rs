//! cgroup limits: memory, processes and CPU for one sandbox, enforced by a
//! leaf cgroup created for the run below the cgroup shellcage already runs in.
//!
//! Describe, then apply:
//! [`detect`] reads where this process sits (pure over a root directory) →
//! [`describe`] decides, for a [`LimitRequest`], which limits each hierarchy
//! can enforce, and why not the others (the plan refuses a run whose
//! `required` limit cannot be enforced, see `plan::plan`) →
//! [`Cgroup::create`] builds the groups of the [`CgroupPlan`] →
//! [`Cgroup::clone_target`] (v2: `clone3(CLONE_INTO_CGROUP)`) or
//! [`Cgroup::attach`] (v1, or v2 on kernels without clone3) places the sandbox
//! before its command runs → [`Cgroup::verdict`] says which limit ended the
//! run → [`Cgroup::remove`] (also on drop) kills what is left and removes
//! every directory it created.
//!
//! # What moves where
//!
//! Let `X` be our cgroup in a hierarchy (from `/proc/self/cgroup`). Nothing
//! ever moves out of `X` or to a cgroup that is not below it, so every limit
//! the host put on `X` (or above) keeps holding for shellcage and the sandbox.
//!
//! - **cgroup v1** (per controller hierarchy, e.g. `memory`, `pids`, `cpu`):
//!   shellcage stays in `X`; the leaf `X/shellcage-<pid>-<n>` gets the
//!   limits, and the sandbox init, before it runs anything, writes itself
//!   into the leaf's `tasks` file, opened for it by the supervisor (see
//!   [`Cgroup::start_gate`] for why not the supervisor into `cgroup.procs`).
//!   v1 allows processes in inner nodes, so nothing else moves.
//! - **cgroup v2**: controllers can be given to children only by a cgroup
//!   with no processes of its own (the no-internal-process rule; the real root
//!   is exempt). So when `X` is not the root, `X` must hold shellcage alone:
//!   shellcage moves itself (and only itself) into
//!   `X/shellcage-<pid>-supervisor`, enables the controllers in
//!   `X/cgroup.subtree_control`, and the sandbox starts in the sibling leaf
//!   `X/shellcage-<pid>-<n>` (`CLONE_INTO_CGROUP`, which also makes the leaf the
//!   root of the sandbox's cgroup namespace). When `X` holds any other process
//!   the limits are not available here (moving others is not ours to do): the
//!   fix is a cgroup of its own, `systemd-run --user --scope -p Delegate=yes
//!   shellcage …`. [`Cgroup::remove`] undoes it all in reverse: leaf removed,
//!   the controllers shellcage enabled disabled again, shellcage back in `X`,
//!   the supervisor directory removed, so `X` is as it was found. When `X` is
//!   the hierarchy's real root nothing moves, but the controllers must already
//!   be enabled there: changing the root's `cgroup.subtree_control` would
//!   change every cgroup of the host, so shellcage never does.
//!
//! Names start with `shellcage-` and our pid, so two shellcage processes in one
//! cgroup never collide and a leftover names its owner.

mod apply;
mod detect;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::policy::Resource;
use crate::probe::{CgroupLimit, Gap};

pub use apply::{Cgroup, CgroupError, Ended, GateError, StartGate, Verdict};
pub use detect::{
    Access, Hierarchy, Layout, LayoutKind, OurCgroup, RealAccess, SimAccess, Version, detect,
    detect_host,
};

/// A resource controller shellcage uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    /// The kernel's name for it (v1 mount option, v2 `cgroup.controllers` entry).
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

/// The limits asked for (from the profile and the command line). Whether
/// each must hold is the policy's business (`policy::Limits::requirement`),
/// decided by the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LimitRequest {
    /// Bytes of memory (RAM; swap is capped at zero where the kernel can).
    pub memory: Option<u64>,
    /// Processes and threads at once.
    pub processes: Option<u64>,
    /// CPU in thousandths of a core.
    pub cpu_millis: Option<u32>,
}

impl LimitRequest {
    /// The cgroup limits of `limits`.
    pub fn of(limits: &crate::policy::Limits) -> LimitRequest {
        LimitRequest {
            memory: limits.memory,
            processes: limits.processes,
            cpu_millis: limits.cpu_millis,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.processes.is_none() && self.cpu_millis.is_none()
    }
}

/// One limit with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "limit", content = "value")]
pub enum Limit {
    Memory(u64),
    Processes(u64),
    Cpu(u32),
}

impl Limit {
    /// The policy's name for what it limits.
    pub fn resource(self) -> Resource {
        match self {
            Limit::Memory(_) => Resource::Memory,
            Limit::Processes(_) => Resource::Processes,
            Limit::Cpu(_) => Resource::Cpu,
        }
    }

    pub fn controller(self) -> Controller {
        match self {
            Limit::Memory(_) => Controller::Memory,
            Limit::Processes(_) => Controller::Pids,
            Limit::Cpu(_) => Controller::Cpu,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Memory(b) => write!(f, "memory limit {}", format_bytes(*b)),
            Limit::Processes(n) => write!(f, "process limit {n}"),
            Limit::Cpu(m) => write!(
                f,
                "cpu limit {} core{}",
                format_cpu(*m),
                if *m == 1000 { "" } else { "s" }
            ),
        }
    }
}

/// How one requested limit is (or is not) enforced on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitStatus {
    #[serde(flatten)]
    pub limit: Limit,
    /// The interface file that enforces it (`cgroup v1 memory.limit_in_bytes`),
    /// `None` when it is not enforced.
    pub mechanism: Option<String>,
    /// Why not, and the fix.
    pub reason: Option<String>,
    pub hint: Option<String>,
}

/// Whether swap is capped along with memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "swap", content = "reason")]
pub enum Swap {
    /// No memory limit was asked for.
    NotApplicable,
    /// Capped at zero (`memory.swap.max = 0` / `memory.memsw.limit_in_bytes`).
    Capped,
    /// Not capped, but no swap device is active (`/proc/swaps`).
    NoSwap,
    /// The memory limit holds for RAM only: the command may page out past it.
    NotCapped(String),
}

/// A file written in the leaf, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Write {
    pub file: String,
    pub value: String,
    /// A failed optional write (a file older kernels lack) is noted, not fatal.
    pub required: bool,
}

/// What to do in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupPlan {
    pub version: Version,
    /// Our cgroup's directory in this hierarchy: the leaf is created in it.
    pub parent: PathBuf,
    pub controllers: Vec<Controller>,
    pub writes: Vec<Write>,
    /// v2 only: shellcage moves itself into `parent/shellcage-<pid>-supervisor`
    /// first (the no-internal-process rule).
    pub move_self: bool,
    /// v2 only: controllers to add to `parent/cgroup.subtree_control`
    /// (removed again afterwards).
    pub enable: Vec<String>,
}

/// The description of the run's cgroups: plain data, no effect until
/// [`Cgroup::create`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupPlan {
    pub groups: Vec<GroupPlan>,
    /// One entry per requested limit.
    pub limits: Vec<LimitStatus>,
    pub swap: Swap,
    /// Our writable cgroup in every hierarchy: where [`Cgroup::create`]
    /// removes the groups killed supervisors left behind (in all of them, so
    /// a leftover memory group goes even when this run only limits processes).
    pub stale_scan: Vec<(Version, PathBuf)>,
}

impl CgroupPlan {
    /// The limits that are not enforced (best-effort runs report them).
    pub fn not_enforced(&self) -> impl Iterator<Item = &LimitStatus> {
        self.limits.iter().filter(|l| l.mechanism.is_none())
    }

    /// What the plan (`plan::plan`) needs to know: see [`support`].
    pub fn support(&self) -> Vec<CgroupLimit> {
        support(&self.limits, &self.swap)
    }

    /// No limit asked for: nothing to create.
    pub fn none() -> CgroupPlan {
        CgroupPlan {
            groups: Vec::new(),
            limits: Vec::new(),
            swap: Swap::NotApplicable,
            stale_scan: Vec::new(),
        }
    }
}

/// Per limit, what holds it here, and what does not hold: the limit, or swap
/// beyond the memory limit when swap is on and cannot be capped.
pub fn support(limits: &[LimitStatus], swap: &Swap) -> Vec<CgroupLimit> {
    limits
        .iter()
        .map(|l| {
            let gap = match (&l.reason, swap, l.limit) {
                (Some(reason), _, _) => Some(Gap {
                    reason: reason.clone(),
                    hint: l.hint.clone().unwrap_or_default(),
                }),
                (None, Swap::NotCapped(why), Limit::Memory(_)) => Some(Gap {
                    reason: format!("swap is on and not capped with it: {why}"),
                    hint: SWAP_HINT.into(),
                }),
                _ => None,
            };
            CgroupLimit {
                resource: l.limit.resource(),
                limit: l.limit.to_string(),
                mechanism: l.mechanism.clone(),
                gap,
            }
        })
        .collect()
}

/// The cgroup plan for a policy's limits on this host: the host's layout is
/// read only when a memory, process or CPU limit is asked for.
pub fn plan_for(limits: &crate::policy::Limits) -> CgroupPlan {
    let req = LimitRequest::of(limits);
    if req.is_empty() {
        return CgroupPlan::none();
    }
    describe(&req, &detect_host(), nix::unistd::geteuid().as_raw())
}

/// The fix for a memory limit that swap can get around.
pub const SWAP_HINT: &str =
    "turn swap off (swapoff -a), or enable swap accounting (boot with swapaccount=1)";

/// CFS period used for CPU limits, in microseconds (the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;

/// `2000` → `"2"`, `500` → `"0.5"`.
pub fn format_cpu(millis: u32) -> String {
    let (int, frac) = (millis / 1000, millis % 1000);
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:03}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// `4 << 30` → `"4 GiB"`; other sizes in the largest unit that divides them.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (size, unit) in UNITS {
        if bytes >= size && bytes % size == 0 {
            return format!("{} {unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}

/// The fix for "no cgroup of our own with the controllers delegated".
fn scope_hint(euid: u32) -> String {
    if euid == 0 {
        "run it in a cgroup of its own: systemd-run --scope -p Delegate=yes shellcage …".into()
    } else {
        "run it in a cgroup of its own with the controllers delegated: systemd-run --user --scope -p Delegate=yes shellcage …".into()
    }
}

/// Where one controller's limit can be set, or why it cannot.
struct Found<'a> {
    hierarchy: &'a Hierarchy,
    ours: &'a OurCgroup,
    move_self: bool,
    enable: bool,
}

struct Missing {
    reason: String,
    hint: String,
}

fn find_v1<'a>(c: Controller, layout: &'a Layout, euid: u32) -> Option<Result<Found<'a>, Missing>> {
    let h = layout
        .v1
        .iter()
        .find(|h| h.controllers.iter().any(|n| n == c.name()))?;
    let v1_hint = || {
        if euid == 0 {
            "check the mounts in /proc/self/mountinfo (our cgroup must be visible below the mount)"
                .to_string()
        } else {
            "cgroup v1 hierarchies belong to root: run as root, or use a cgroup v2 host with systemd-run --user --scope -p Delegate=yes shellcage …".to_string()
        }
    };
    Some(match &h.ours {
        Err(why) => Err(Missing {
            reason: format!(
                "cgroup v1 {} hierarchy at {}: {why}",
                c.name(),
                h.mount_point.display()
            ),
            hint: v1_hint(),
        }),
        Ok(ours) if !ours.writable => Err(Missing {
            reason: format!(
                "cgroup v1 {} hierarchy: {} is not writable by uid {euid}",
                c.name(),
                ours.dir.display()
            ),
            hint: v1_hint(),
        }),
        Ok(ours) => Ok(Found {
            hierarchy: h,
            ours,
            move_self: false,
            enable: false,
        }),
    })
}

fn find_v2<'a>(c: Controller, layout: &'a Layout, euid: u32) -> Result<Found<'a>, Missing> {
    let none = |reason: String| Missing {
        reason,
        hint: scope_hint(euid),
    };
    let Some(h) = &layout.v2 else {
        return Err(match layout.kind {
            LayoutKind::None => Missing {
                reason: "no cgroup filesystem is mounted".into(),
                hint: "mount cgroup2 at /sys/fs/cgroup (or run shellcage where one is)".into(),
            },
            _ => none(format!(
                "no mounted cgroup hierarchy has the {} controller",
                c.name()
            )),
        });
    };
    let ours = h
        .ours
        .as_ref()
        .map_err(|why| none(format!("cgroup v2 at {}: {why}", h.mount_point.display())))?;
    if !ours.controllers.iter().any(|n| n == c.name()) {
        let offered = if ours.controllers.is_empty() {
            "none".to_string()
        } else {
            ours.controllers.join(" ")
        };
        let hint = if euid == 0 {
            scope_hint(euid)
        } else {
            format!(
                "have the user manager delegate it (sudo systemctl edit user@.service: [Service] Delegate=cpu memory pids), then {}",
                scope_hint(euid)
            )
        };
        return Err(Missing {
            reason: format!(
                "the {} controller is not available in cgroup {} (cgroup.controllers: {offered})",
                c.name(),
                ours.path
            ),
            hint,
        });
    }
    if !ours.writable {
        return Err(none(format!(
            "cgroup {} is not delegated to uid {euid} (cannot write {})",
            ours.path,
            ours.dir.display()
        )));
    }
    let others = ours.procs.iter().filter(|&&p| p != layout.self_pid).count();
    if !ours.is_root && others > 0 {
        return Err(none(format!(
            "cgroup {} also holds {others} other process(es): cgroup v2 gives controllers only to the children of a cgroup without processes, and shellcage moves no process but itself",
            ours.path
        )));
    }
    let enable = !ours.subtree_control.iter().any(|n| n == c.name());
    if ours.is_root && enable {
        // Enabling a controller in the root changes it for every cgroup of
        // the host: an administrator's decision, not a side effect of a run.
        return Err(Missing {
            reason: format!(
                "the {} controller is not enabled in the root cgroup's cgroup.subtree_control",
                c.name()
            ),
            hint: format!(
                "enable it once for the host: echo +{} > {}",
                c.name(),
                h.mount_point.join("cgroup.subtree_control").display()
            ),
        });
    }
    Ok(Found {
        hierarchy: h,
        ours,
        move_self: !ours.is_root && ours.procs.contains(&layout.self_pid),
        enable,
    })
}

/// The interface files that set `limit` in `version`.
fn writes_for(limit: Limit, version: Version) -> Vec<Write> {
    let w = |file: &str, value: String, required: bool| Write {
        file: file.into(),
        value,
        required,
    };
    match (limit, version) {
        (Limit::Memory(b), Version::V2) => vec![
            w("memory.max", b.to_string(), true),
            w("memory.swap.max", "0".into(), false),
            w("memory.oom.group", "1".into(), false),
        ],
        (Limit::Memory(b), Version::V1) => vec![
            w("memory.limit_in_bytes", b.to_string(), true),
            w("memory.memsw.limit_in_bytes", b.to_string(), false),
        ],
        (Limit::Processes(n), _) => vec![w("pids.max", n.to_string(), true)],
        (Limit::Cpu(m), Version::V2) => vec![w(
            "cpu.max",
            format!("{} {CPU_PERIOD_US}", cpu_quota_us(m)),
            true,
        )],
        (Limit::Cpu(m), Version::V1) => vec![
            w("cpu.cfs_period_us", CPU_PERIOD_US.to_string(), true),
            w("cpu.cfs_quota_us", cpu_quota_us(m).to_string(), true),
        ],
    }
}

fn cpu_quota_us(millis: u32) -> u64 {
    u64::from(millis) * CPU_PERIOD_US / 1000
}

/// Whether swap will be capped with the memory limit, as far as the layout
/// tells (creation checks again in the leaf).
fn swap_status(layout: &Layout, found: &Found<'_>) -> Swap {
    let has = |f: &str| found.ours.files.contains(f);
    let capped = match found.hierarchy.version {
        Version::V1 => has("memory.memsw.limit_in_bytes"),
        // The root has no memory.* files; the leaf will tell.
        Version::V2 => found.ours.is_root || has("memory.swap.max"),
    };
    if capped {
        Swap::Capped
    } else if !layout.swap_active {
        Swap::NoSwap
    } else {
        Swap::NotCapped(match found.hierarchy.version {
            Version::V1 => "memory.memsw.limit_in_bytes is missing: swap accounting is off (boot with swapaccount=1)".into(),
            Version::V2 => "memory.swap.max is missing: swap accounting is off".into(),
        })
    }
}

/// Decide which limits of `req` this layout enforces and how: a plan for
/// those it can, whose [`CgroupPlan::limits`] also say, for each it cannot,
/// why and the fix. An empty request is an empty plan (no cgroup at all).
pub fn describe(req: &LimitRequest, layout: &Layout, euid: u32) -> CgroupPlan {
    let wanted: Vec<Limit> = [
        req.memory.map(Limit::Memory),
        req.processes.map(Limit::Processes),
        req.cpu_millis.map(Limit::Cpu),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut plan = CgroupPlan::none();
    plan.stale_scan = layout
        .v1
        .iter()
        .chain(layout.v2.as_ref())
        .filter_map(|h| h.ours.as_ref().ok().map(|o| (h.version, o)))
        .filter(|(_, o)| o.writable)
        .map(|(v, o)| (v, o.dir.clone()))
        .collect();
    for limit in wanted {
        let c = limit.controller();
        let found = find_v1(c, layout, euid).unwrap_or_else(|| find_v2(c, layout, euid));
        let found = match found {
            Ok(f) => f,
            Err(m) => {
                plan.limits.push(LimitStatus {
                    limit,
                    mechanism: None,
                    reason: Some(m.reason),
                    hint: Some(m.hint),
                });
                continue;
            }
        };
        let version = found.hierarchy.version;
        let writes = writes_for(limit, version);
        plan.limits.push(LimitStatus {
            limit,
            mechanism: Some(format!(
                "cgroup {} {}",
                match version {
                    Version::V1 => "v1",
                    Version::V2 => "v2",
                },
                writes
                    .iter()
                    .filter(|w| w.required)
                    .map(|w| w.file.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
            reason: None,
            hint: None,
        });
        if let Limit::Memory(_) = limit {
            plan.swap = swap_status(layout, &found);
        }
        let group = match plan
            .groups
            .iter_mut()
            .find(|g| g.parent == found.ours.dir && g.version == version)
        {
            Some(g) => g,
            None => {
                plan.groups.push(GroupPlan {
                    version,
                    parent: found.ours.dir.clone(),
                    controllers: Vec::new(),
                    writes: Vec::new(),
                    move_self: found.move_self,
                    enable: Vec::new(),
                });
                plan.groups.last_mut().expect("just pushed")
            }
        };
        group.controllers.push(c);
        group.writes.extend(writes);
        if found.enable {
            group.enable.push(c.name().to_string());
        }
    }
    plan
}

//! Where this process sits in the cgroup hierarchies, read from
//! `/proc/self/cgroup` and `/proc/self/mountinfo` below a root directory (`/` on
//! a real host, a temporary tree in the tests).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// cgroup v1 (one hierarchy per controller set) or v2 (the unified hierarchy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

/// The host's layout, for `doctor` and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayoutKind {
    /// Only the unified hierarchy is mounted (or only it has controllers).
    V2,
    /// v1 controller hierarchies and a v2 hierarchy side by side.
    Hybrid,
    /// v1 controller hierarchies only.
    V1,
    /// No cgroup filesystem mounted.
    None,
}

/// Decides whether this process may write a cgroup file or create a
/// directory: the kernel's own answer on a real host, a rule over owners and
/// modes on a simulated tree (where the test may run as root).
pub trait Access {
    fn writable(&self, path: &Path) -> bool;
}

/// `faccessat(path, W_OK, AT_EACCESS)`: the kernel's answer for our
/// effective ids and capabilities (user namespaces included).
pub struct RealAccess;

impl Access for RealAccess {
    fn writable(&self, path: &Path) -> bool {
        nix::unistd::faccessat(
            nix::fcntl::AT_FDCWD,
            path,
            nix::unistd::AccessFlags::W_OK,
            nix::fcntl::AtFlags::AT_EACCESS,
        )
        .is_ok()
    }
}

/// Permission bits as an unprivileged process with `uid` and `gids` would see
/// them (no capabilities): for simulated trees.
pub struct SimAccess {
    pub uid: u32,
    pub gids: Vec<u32>,
}

impl Access for SimAccess {
    fn writable(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        let mode = meta.mode();
        if meta.uid() == self.uid {
            mode & 0o200 != 0
        } else if self.gids.contains(&meta.gid()) {
            mode & 0o020 != 0
        } else {
            mode & 0o002 != 0
        }
    }
}

/// Our own cgroup in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OurCgroup {
    /// The path `/proc/self/cgroup` gives (relative to our cgroup namespace).
    pub path: String,
    /// Its directory (below the detection root).
    pub dir: PathBuf,
    /// We may create a directory in it and write its `cgroup.procs` (v2: and
    /// its `cgroup.subtree_control`).
    pub writable: bool,
    /// v2: `cgroup.type` is missing, so this is the hierarchy's real root, which
    /// may hold processes and still give controllers to children.
    pub is_root: bool,
    /// v2: the controllers this cgroup can give its children (`cgroup.controllers`).
    pub controllers: Vec<String>,
    /// v2: the controllers it gives them now (`cgroup.subtree_control`).
    pub subtree_control: Vec<String>,
    /// v2: the processes in it (`cgroup.procs`; not read in the root).
    pub procs: Vec<i32>,
    /// The interface files present in the directory that decide what can be
    /// enforced (swap caps).
    pub files: BTreeSet<String>,
}

/// One mounted cgroup hierarchy that matters to us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hierarchy {
    pub version: Version,
    /// Where it is mounted (host path, as mountinfo gives it).
    pub mount_point: PathBuf,
    /// v1: the controllers bound to it (its mount's super options); v2: those
    /// our cgroup offers its children (`cgroup.controllers`).
    pub controllers: Vec<String>,
    /// Our cgroup in it, or why it cannot be reached.
    pub ours: Result<OurCgroup, String>,
}

/// What the limits can be built from on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    pub kind: LayoutKind,
    /// v1 hierarchies with the memory, pids or cpu controller (others, and
    /// named ones such as `name=systemd`, are left out).
    pub v1: Vec<Hierarchy>,
    /// The unified hierarchy, when mounted.
    pub v2: Option<Hierarchy>,
    /// Our pid as the kernel numbers it where the cgroup files are read.
    pub self_pid: i32,
    /// Swap is on (`/proc/swaps` lists a device): a memory limit without a swap
    /// cap lets the command page out past it.
    pub swap_active: bool,
}

/// Files checked in our cgroup's directory: their presence says whether swap
/// can be capped.
const PROBED_FILES: [&str; 3] = [
    "memory.memsw.limit_in_bytes",
    "memory.swap.max",
    "cgroup.kill",
];

/// One line of `/proc/self/mountinfo` that mounts a cgroup filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    pub version: Version,
    /// The subtree of the hierarchy that is mounted (field 4).
    pub root: String,
    pub point: PathBuf,
    /// v1: the controllers in the super options.
    pub controllers: Vec<String>,
}

/// Undo mountinfo's octal escapes (`\040` for a space …).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let oct = field.get(i + 1..i + 4).unwrap_or("");
        if bytes[i] == b'\\' && oct.len() == 3 && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup mounts in a mountinfo text, in order.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 5 || fields.len() < sep + 4 {
            continue;
        }
        let version = match fields[sep + 1] {
            "cgroup2" => Version::V2,
            "cgroup" => Version::V1,
            _ => continue,
        };
        let controllers = match version {
            Version::V2 => Vec::new(),
            Version::V1 => fields[sep + 3]
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                .filter(|o| is_v1_controller(o))
                .map(String::from)
                .collect(),
        };
        out.push(CgroupMount {
            version,
            root: unescape(fields[3]),
            point: PathBuf::from(unescape(fields[4])),
            controllers,
        });
    }
    out
}

/// Super options of a v1 cgroup mount that name controllers (the rest are
/// mount flags such as `noprefix`, `clone_children`, `xattr`).
fn is_v1_controller(opt: &str) -> bool {
    matches!(
        opt,
        "cpu"
            | "cpuacct"
            | "cpuset"
            | "memory"
            | "devices"
            | "freezer"
            | "net_cls"
            | "net_prio"
            | "blkio"
            | "perf_event"
            | "hugetlb"
            | "pids"
            | "rdma"
            | "misc"
    )
}

/// One line of `/proc/self/cgroup`: `ID:CONTROLLERS:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Membership {
    /// `0` with no controllers is the unified (v2) hierarchy.
    pub v2: bool,
    /// v1: the controllers of the hierarchy (named ones such as
    /// `name=systemd` left out).
    pub controllers: BTreeSet<String>,
    pub path: String,
}

pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let id = parts.next()?;
            let ctrls = parts.next()?;
            let path = parts.next()?;
            Some(Membership {
                v2: id == "0" && ctrls.is_empty(),
                controllers: ctrls
                    .split(',')
                    .filter(|c| !c.is_empty() && !c.contains('='))
                    .map(String::from)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// The part of `path` below the mount's `root`, or why it is outside it.
pub(crate) fn relative_to_mount(path: &str, root: &str) -> Result<String, String> {
    if path.split('/').any(|c| c == "..") {
        return Err(format!(
            "our cgroup {path} lies outside our cgroup namespace"
        ));
    }
    if root == "/" {
        return Ok(path.trim_start_matches('/').to_string());
    }
    match path.strip_prefix(root) {
        Some("") => Ok(String::new()),
        Some(rest) if rest.starts_with('/') => Ok(rest.trim_start_matches('/').to_string()),
        _ => Err(format!(
            "our cgroup {path} is not inside the mounted part of the hierarchy ({root})"
        )),
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn words(text: Option<String>) -> Vec<String> {
    text.map(|t| t.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// `root` joined with an absolute host path.
fn under(root: &Path, abs: &Path) -> PathBuf {
    root.join(abs.strip_prefix("/").unwrap_or(abs))
}

/// Our cgroup in one mounted hierarchy.
fn our_cgroup(
    root: &Path,
    mount: &CgroupMount,
    path: &str,
    access: &dyn Access,
) -> Result<OurCgroup, String> {
    let rel = relative_to_mount(path, &mount.root)?;
    let mut dir = under(root, &mount.point);
    if !rel.is_empty() {
        dir.push(&rel);
    }
    if !dir.is_dir() {
        return Err(format!("{} does not exist", dir.display()));
    }
    let v2 = mount.version == Version::V2;
    let writable = access.writable(&dir)
        && access.writable(&dir.join("cgroup.procs"))
        && (!v2 || access.writable(&dir.join("cgroup.subtree_control")));
    let files = PROBED_FILES
        .iter()
        .filter(|f| dir.join(f).exists())
        .map(|f| f.to_string())
        .collect();
    let (is_root, controllers, subtree_control, procs) = if v2 {
        let is_root = !dir.join("cgroup.type").exists();
        (
            is_root,
            words(read(&dir.join("cgroup.controllers"))),
            words(read(&dir.join("cgroup.subtree_control"))),
            // The root may hold every process of the host, and is exempt
            // from the rule the list is needed for: not read there.
            if is_root {
                Vec::new()
            } else {
                words(read(&dir.join("cgroup.procs")))
                    .iter()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            },
        )
    } else {
        (false, Vec::new(), Vec::new(), Vec::new())
    };
    Ok(OurCgroup {
        path: path.to_string(),
        dir,
        writable,
        is_root,
        controllers,
        subtree_control,
        procs,
        files,
    })
}

/// Read the layout below `root`: `root/proc/self/{cgroup,mountinfo}`,
/// `root/proc/swaps`, and our cgroups' directories under the mount points.
/// `self_pid` is this process's pid as `cgroup.procs` lists it.
pub fn detect(root: &Path, self_pid: i32, access: &dyn Access) -> Layout {
    let mounts = parse_mountinfo(&read(&root.join("proc/self/mountinfo")).unwrap_or_default());
    let membership = parse_proc_cgroup(&read(&root.join("proc/self/cgroup")).unwrap_or_default());
    // v1: the line whose controllers are exactly the mount's (co-mounted
    // ones such as cpu,cpuacct appear together on one line).
    let path_for = |version: Version, ctrls: &[String]| -> Option<String> {
        let want: BTreeSet<String> = ctrls.iter().cloned().collect();
        membership
            .iter()
            .find(|m| match version {
                Version::V2 => m.v2,
                Version::V1 => !m.v2 && !m.controllers.is_empty() && m.controllers == want,
            })
            .map(|m| m.path.clone())
    };
    let mut v1: Vec<Hierarchy> = Vec::new();
    let mut v2: Option<Hierarchy> = None;
    for mount in &mounts {
        match mount.version {
            // Only the hierarchies of the controllers shellcage uses.
            Version::V1
                if !mount
                    .controllers
                    .iter()
                    .any(|c| matches!(c.as_str(), "memory" | "pids" | "cpu")) =>
            {
                continue;
            }
            Version::V1 => {
                if v1
                    .iter()
                    .any(|h| h.controllers == mount.controllers && h.ours.is_ok())
                {
                    continue;
                }
                let ours = match path_for(Version::V1, &mount.controllers) {
                    Some(p) => our_cgroup(root, mount, &p, access),
                    None => Err(format!(
                        "/proc/self/cgroup has no line for {}",
                        mount.controllers.join(",")
                    )),
                };
                // A later mount of the same hierarchy may show our cgroup.
                v1.retain(|h| h.controllers != mount.controllers);
                v1.push(Hierarchy {
                    version: Version::V1,
                    mount_point: mount.point.clone(),
                    controllers: mount.controllers.clone(),
                    ours,
                });
            }
            Version::V2 => {
                if v2.as_ref().is_some_and(|h| h.ours.is_ok()) {
                    continue;
                }
                let ours = match path_for(Version::V2, &[]) {
                    Some(p) => our_cgroup(root, mount, &p, access),
                    None => Err("/proc/self/cgroup has no 0:: line".to_string()),
                };
                let controllers = ours
                    .as_ref()
                    .map(|o| o.controllers.clone())
                    .unwrap_or_default();
                v2 = Some(Hierarchy {
                    version: Version::V2,
                    mount_point: mount.point.clone(),
                    controllers,
                    ours,
                });
            }
        }
    }
    let kind = match (v1.is_empty(), v2.is_some()) {
        (true, true) => LayoutKind::V2,
        (false, true) => LayoutKind::Hybrid,
        (false, false) => LayoutKind::V1,
        (true, false) => LayoutKind::None,
    };
    let swap_active = swap_on(root);
    Layout {
        kind,
        v1,
        v2,
        self_pid,
        swap_active,
    }
}

/// A swap device or file is active (`root/proc/swaps` lists one).
pub(super) fn swap_on(root: &Path) -> bool {
    read(&root.join("proc/swaps"))
        .map(|t| t.lines().skip(1).any(|l| !l.trim().is_empty()))
        .unwrap_or(false)
}

/// The layout of this host, for this process.
pub fn detect_host() -> Layout {
    detect(Path::new("/"), std::process::id() as i32, &RealAccess)
}

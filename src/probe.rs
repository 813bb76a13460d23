//! Kernel features: what this machine can enforce.
//!
//! The launch path only reads what is one syscall away (the Landlock ABI);
//! user-namespace support is learned by trying (a failed clone), and the rest
//! (sysctls, container detection, a trial user namespace) is for `doctor`, the
//! entrypoint and error hints. What is found is carried as data ([`Features`])
//! into `plan`, which decides from it and never probes again.

use serde::Serialize;

use crate::policy::Resource;

/// The host uid and gid that 0 of a sandbox started by root is mapped to.
///
/// Not 65534 (`nobody`): host daemons run as nobody, and a host process with
/// the sandbox's uid could signal or ptrace its processes and reach its files
/// through `/proc/PID/root`; files owned by nobody would be the sandbox's own.
/// This id is in the range systemd documents as unused (1879048192 to
/// 2147352575: above the ids handed to containers, below the "foreign" range
/// and below 2^31, which some tools read as signed), so no account, process
/// or file has it; `doctor` says when /etc/passwd or /etc/group does name it.
pub const MAPPED_ROOT: u32 = 2_000_000_000;
// Not nobody, below 2^31, outside systemd's container and "foreign" ranges.
const _: () =
    assert!(MAPPED_ROOT != 65534 && MAPPED_ROOT > 1_879_048_191 && MAPPED_ROOT < 2_147_352_576);

/// Who runs shellcage, as far as the sandbox's view of the host goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Caller {
    /// A user other than root: the sandbox has that user's id.
    #[default]
    User,
    /// Root of the host (effective uid 0 in the initial user namespace).
    HostRoot,
    /// Uid 0 of a user namespace that is not the host's (a rootless
    /// container): it cannot make id-mapped mounts of the host's filesystems,
    /// so its sandbox keeps that namespace's root.
    NamespaceRoot,
    /// Root of the host without CAP_SYS_ADMIN, CAP_SETUID or CAP_SETGID (a
    /// container that drops them, as Docker does by default): it cannot write
    /// another id's map or make id-mapped mounts either.
    RootWithoutCapabilities,
}

impl Caller {
    /// Effective uid 0 is root of the host when this process sits in the
    /// initial user namespace, whose uid map (and only its) is the identity
    /// over every id. Read only when the effective uid is 0.
    pub fn detect() -> Caller {
        if !nix::unistd::geteuid().is_root() {
            return Caller::User;
        }
        match std::fs::read_to_string("/proc/self/uid_map") {
            Ok(map) if Caller::is_initial_map(&map) => {
                use caps::{CapSet, Capability};
                let held = |c| caps::has_cap(None, CapSet::Effective, c).unwrap_or(false);
                if [
                    Capability::CAP_SYS_ADMIN,
                    Capability::CAP_SETUID,
                    Capability::CAP_SETGID,
                ]
                .into_iter()
                .all(held)
                {
                    Caller::HostRoot
                } else {
                    Caller::RootWithoutCapabilities
                }
            }
            _ => Caller::NamespaceRoot,
        }
    }

    fn is_initial_map(map: &str) -> bool {
        let fields: Vec<&str> = map.split_whitespace().collect();
        fields == ["0", "0", "4294967295"]
    }
}

/// Whether user namespaces can be created here, as far as is known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Userns {
    /// Not tried: the launch path learns the answer from its own clone.
    #[default]
    Untried,
    /// A clone with `CLONE_NEWUSER` worked.
    Works,
    /// It failed: what is missing (`cannot create user namespace: …`) and the
    /// most likely fix (see [`Features::userns_hint`]).
    Fails { missing: String, hint: String },
}

/// What the kernel offers, as far as shellcage needs to know.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Features {
    /// Landlock ABI version, 0 when unavailable.
    pub landlock_abi: u32,
    /// A seccomp filter exists for this architecture.
    pub arch_supported: bool,
    #[serde(skip)]
    pub userns: Userns,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu ≥ 23.10), when present.
    pub apparmor_restrict_userns: Option<bool>,
    /// `user.max_user_namespaces`, when readable.
    pub max_user_namespaces: Option<u64>,
    /// `kernel.unprivileged_userns_clone` (Debian/older Ubuntu patch), when present.
    pub unprivileged_userns_clone: Option<bool>,
    /// Signs of running inside a container (/.dockerenv, /run/.containerenv, container=).
    pub in_container: bool,
    /// The running kernel's version, when it was read (the launch path reads
    /// it only for an overlay workspace, which needs Linux 5.11).
    pub kernel: Option<KernelVersion>,
    /// RLIMIT_NPROC set in a new user namespace counts only that namespace's
    /// processes (Linux ≥ 5.14 counts rlimits per user namespace) and binds
    /// this user (uid 0 is exempt). Before 5.14 it counted every process of
    /// the user on the host.
    pub nproc_per_userns: bool,
    /// Who runs shellcage: root of the host is mapped to an unprivileged id
    /// in the namespaces tier (see `sandbox::rootview`).
    pub caller: Caller,
    /// How the host's cgroups can hold each memory, process or CPU limit the
    /// policy asks for; filled from `sandbox::cgroup::describe` by the launch
    /// path and `doctor` (only when such a limit is asked for).
    #[serde(skip)]
    pub cgroup_limits: Vec<CgroupLimit>,
}

/// How one requested cgroup limit can be held on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupLimit {
    pub resource: Resource,
    /// As users read it: `memory limit 4 GiB`.
    pub limit: String,
    /// The interface files that hold it (`cgroup v1 memory.limit_in_bytes`),
    /// when it holds at all.
    pub mechanism: Option<String>,
    /// What does not hold, and the fix: the whole limit (no mechanism) or a
    /// part of it (swap not capped with the memory limit).
    pub gap: Option<Gap>,
}

/// A limit, or part of one, that the host cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub reason: String,
    pub hint: String,
}

/// A kernel release (`uname -r`) and the version numbers at its start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelVersion {
    pub release: String,
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    /// `5.15.0-91-generic` → 5.15; an unreadable release is 0.0.
    pub fn parse(release: &str) -> KernelVersion {
        let mut nums = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().unwrap_or(0));
        KernelVersion {
            release: release.to_string(),
            major: nums.next().unwrap_or(0),
            minor: nums.next().unwrap_or(0),
        }
    }

    /// At least `major.minor`?
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// The running kernel (`/proc/sys/kernel/osrelease`). Debug builds take
    /// `SHELLCAGE_TEST_KERNEL_RELEASE` instead, so tests can play an older
    /// kernel (it can only make shellcage refuse more).
    pub fn running() -> KernelVersion {
        #[cfg(debug_assertions)]
        if let Some(r) = std::env::var_os("SHELLCAGE_TEST_KERNEL_RELEASE") {
            return KernelVersion::parse(&r.to_string_lossy());
        }
        KernelVersion::parse(&kernel_release())
    }
}

/// Whether shellcage has a seccomp filter for the architecture it was built for.
pub const ARCH_SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

impl Features {
    /// The cheap probe used on every launch: one syscall.
    pub fn for_launch() -> Features {
        Features {
            landlock_abi: crate::sys::landlock_abi_version().unwrap_or(0),
            arch_supported: ARCH_SUPPORTED,
            caller: Caller::detect(),
            nproc_per_userns: !nix::unistd::geteuid().is_root()
                && kernel_version(&kernel_release()).is_some_and(|v| v >= (5, 14)),
            ..Features::default()
        }
    }

    /// The full probe for `doctor` and for error hints.
    pub fn detect() -> Features {
        let mut f = Features::for_launch();
        f.kernel = Some(KernelVersion::running());
        f.apparmor_restrict_userns =
            read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").map(|v| v != 0);
        f.max_user_namespaces = read_sysctl("/proc/sys/user/max_user_namespaces");
        f.unprivileged_userns_clone =
            read_sysctl("/proc/sys/kernel/unprivileged_userns_clone").map(|v| v != 0);
        f.in_container = std::path::Path::new("/.dockerenv").exists()
            || std::path::Path::new("/run/.containerenv").exists()
            || std::env::var_os("container").is_some();
        f
    }

    /// Record a user namespace trial's result ([`userns_trial`]): a failure
    /// says `user namespaces are not available`, with the hint.
    pub fn with_trial(mut self, trial: Result<(), nix::errno::Errno>) -> Features {
        self.userns = match trial {
            Ok(()) => Userns::Works,
            Err(_) => Userns::Fails {
                missing: "user namespaces are not available".into(),
                hint: self.userns_hint(),
            },
        };
        self
    }

    /// The most likely reason user namespaces fail here, and the fix: the
    /// first of [`crate::apparmor::diagnose`]'s blockers (the exact command:
    /// `sudo /usr/local/bin/shellcage setup apparmor` for Ubuntu's AppArmor
    /// restriction), else what the container tells.
    pub fn userns_hint(&self) -> String {
        let blocker = crate::apparmor::diagnose_host()
            .ok()
            .and_then(|d| d.blockers.into_iter().next());
        self.userns_hint_with(blocker.as_ref())
    }

    /// [`Features::userns_hint`] given the first blocker found.
    pub fn userns_hint_with(&self, blocker: Option<&crate::apparmor::Blocker>) -> String {
        let f = if self.apparmor_restrict_userns.is_none() && self.max_user_namespaces.is_none() {
            Features::detect()
        } else {
            self.clone()
        };
        if let Some(b) = blocker {
            format!(
                "{}: {}, or run with --tier auto (the container tier: Landlock + seccomp only; tier = \"auto\" in a profile); see 'shellcage doctor'",
                b.setting, b.fix
            )
        } else if f.max_user_namespaces == Some(0) {
            "user.max_user_namespaces=0: raise it with sysctl, or run with --tier auto (tier = \"auto\" in a profile); see 'shellcage doctor'".into()
        } else if f.unprivileged_userns_clone == Some(false) {
            "kernel.unprivileged_userns_clone=0: set it to 1, or run with --tier auto (tier = \"auto\" in a profile); see 'shellcage doctor'".into()
        } else if f.in_container {
            "running in a container whose seccomp profile refuses namespaces: run with --tier auto (the container tier) or give the container a profile that allows unshare; see 'shellcage doctor'".into()
        } else {
            "see 'shellcage doctor'; --tier auto falls back to the container tier (Landlock and seccomp only)".into()
        }
    }
}

/// Ubuntu's AppArmor restriction, when it stops this (unprivileged,
/// unconfined) process from using user namespaces: known before any clone
/// (see [`crate::apparmor::restriction`]), so the full tier refuses and
/// `auto` takes the container tier with the exact fix in the message.
pub fn userns_restricted(root: &std::path::Path, euid: u32) -> Option<Userns> {
    let b = crate::apparmor::restriction(root, euid, || crate::apparmor::current_exe().ok())?;
    Some(Userns::Fails {
        missing: format!("user namespaces are restricted: {} ({})", b.setting, b.why),
        hint: format!("{}{OR_AUTO}", b.fix),
    })
}

/// How a user-namespace hint ends: the other way to run.
pub const OR_AUTO: &str =
    ", or --tier auto for the container tier (Landlock + seccomp only); see 'shellcage doctor'";

/// `"6.18.0-1-amd64"` → `(6, 18)`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn read_sysctl(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Try to create a user namespace: clone a child with `CLONE_NEWUSER` that
/// exits at once. The answer `run` would get (for `doctor`; the launch path
/// learns it from its own clone instead).
pub fn userns_trial() -> Result<(), nix::errno::Errno> {
    match crate::sys::clone_process(libc::CLONE_NEWUSER) {
        Ok(crate::sys::Forked::Child) => crate::sys::exit_now(0),
        Ok(crate::sys::Forked::Parent { child }) => {
            let _ = nix::sys::wait::waitpid(child, None);
            Ok(())
        }
        Err(e) => Err(e.errno),
    }
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// seccomp as this process sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SeccompStatus {
    /// The kernel supports seccomp filters (`/proc/sys/kernel/seccomp` exists).
    pub filters_supported: bool,
    /// Filters already installed on this process (by a container runtime,
    /// bwrap, systemd …): ours stacks on top of them.
    pub inherited_filters: Option<u32>,
}

pub fn seccomp_status() -> SeccompStatus {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    SeccompStatus {
        filters_supported: std::path::Path::new("/proc/sys/kernel/seccomp/actions_avail").exists(),
        inherited_filters: field("Seccomp_filters:"),
    }
}

/// What each Landlock ABI version adds (kernel release in parentheses).
pub const LANDLOCK_LEVELS: [(u32, &str); 9] = [
    (1, "filesystem access control (5.13)"),
    (2, "file reparenting across directories: rename/link (5.19)"),
    (3, "truncate (6.2)"),
    (4, "TCP bind/connect (6.7)"),
    (5, "ioctl on device files (6.10)"),
    (6, "abstract unix socket and signal scopes (6.12)"),
    (7, "audit logging flags (6.15)"),
    (8, "ruleset applied to all threads (TSYNC)"),
    (9, "connect(2) to pathname unix sockets (RESOLVE_UNIX)"),
];

/// Which container marker was found, if any.
pub fn container_marker() -> Option<String> {
    if std::path::Path::new("/.dockerenv").exists() {
        return Some("/.dockerenv".into());
    }
    if std::path::Path::new("/run/.containerenv").exists() {
        return Some("/run/.containerenv".into());
    }
    if let Some(v) = std::env::var_os("container") {
        return Some(format!("container={}", v.to_string_lossy()));
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Some("KUBERNETES_SERVICE_HOST".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::Caller;

    #[test]
    fn only_the_identity_map_over_every_id_is_the_hosts() {
        assert!(Caller::is_initial_map("         0          0 4294967295\n"));
        assert!(!Caller::is_initial_map(
            "         0       1000          1\n"
        ));
        assert!(!Caller::is_initial_map("0 0 65536\n"));
        assert!(!Caller::is_initial_map("0 0 1\n1 100000 65536\n"));
    }
}

//! Kernel features: what this machine can enforce.
//!
//! The launch path only reads what is one syscall away (the Landlock ABI);
//! user-namespace support is learned by trying (a failed clone), and the rest
//! (sysctls, container detection, a trial user namespace) is for `doctor`.

use serde::Serialize;

/// What the kernel offers, as far as shellcage needs to know.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Features {
    /// Landlock ABI version, 0 when unavailable.
    pub landlock_abi: u32,
    /// A seccomp filter exists for this architecture.
    pub arch_supported: bool,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu ≥ 23.10), when present.
    pub apparmor_restrict_userns: Option<bool>,
    /// `user.max_user_namespaces`, when readable.
    pub max_user_namespaces: Option<u64>,
    /// `kernel.unprivileged_userns_clone` (Debian/older Ubuntu patch), when present.
    pub unprivileged_userns_clone: Option<bool>,
    /// Signs of running inside a container (/.dockerenv, /run/.containerenv, container=).
    pub in_container: bool,
}

/// Whether shellcage has a seccomp filter for the architecture it was built for.
pub const ARCH_SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

impl Features {
    /// The cheap probe used on every launch: one syscall.
    pub fn for_launch() -> Features {
        Features {
            landlock_abi: crate::sandbox::landlock::abi(),
            arch_supported: ARCH_SUPPORTED,
            ..Features::default()
        }
    }

    /// The full probe for `doctor` and for error hints.
    pub fn detect() -> Features {
        let mut f = Features::for_launch();
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

    /// The most likely reason user namespaces fail here, and the fix.
    pub fn userns_hint(&self) -> String {
        let f = if self.apparmor_restrict_userns.is_none() && self.max_user_namespaces.is_none() {
            Features::detect()
        } else {
            self.clone()
        };
        if f.apparmor_restrict_userns == Some(true) {
            "kernel.apparmor_restrict_unprivileged_userns=1: add an AppArmor profile allowing userns for shellcage, or run with --tier auto (tier = \"auto\" in a profile); see 'shellcage doctor'".into()
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

/// cgroup v2 delegation: can we create child cgroups (memory/pids limits)?
#[derive(Debug, Clone, Serialize)]
pub struct CgroupStatus {
    /// cgroup v2 is mounted at /sys/fs/cgroup.
    pub v2: bool,
    /// Our cgroup directory.
    pub path: Option<std::path::PathBuf>,
    /// We may write to it (create sub-cgroups).
    pub writable: bool,
    /// Controllers available in it.
    pub controllers: Vec<String>,
}

pub fn cgroup_status() -> CgroupStatus {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let v2 = root.join("cgroup.controllers").exists();
    let rel = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| p.trim().to_string()))
        });
    let path = rel
        .filter(|_| v2)
        .map(|r| root.join(r.trim_start_matches('/')));
    let writable = path
        .as_ref()
        .is_some_and(|p| nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok());
    let controllers = path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p.join("cgroup.controllers")).ok())
        .map(|t| t.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    CgroupStatus {
        v2,
        path,
        writable,
        controllers,
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

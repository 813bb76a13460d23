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

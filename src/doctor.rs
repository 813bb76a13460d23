//! `shellcage doctor`: what this kernel supports, which guarantees hold here
//! for a profile (per tier), which tier a run would use, and how to fix what
//! is missing.
//!
//! Exit codes: 0 when `shellcage run` with this profile (and tier) would run
//! here; 1 when it would refuse (exit 125); 125 when doctor itself fails (the
//! profile cannot be loaded).

use std::io::Write;

use serde::Serialize;

use crate::cli::{RunOpts, TierArg};
use crate::launch;
use crate::plan::{self, Enforcement, Status, Tier};
use crate::policy::TierChoice;
use crate::probe::{self, CgroupStatus, Features, SeccompStatus};

#[derive(Debug, Serialize)]
struct LandlockLevel {
    abi: u32,
    adds: &'static str,
    available: bool,
}

#[derive(Debug, Serialize)]
struct UserNs {
    /// A trial clone with CLONE_NEWUSER worked.
    works: bool,
    /// Its errno when it failed.
    error: Option<String>,
    apparmor_restrict_unprivileged_userns: Option<bool>,
    max_user_namespaces: Option<u64>,
    unprivileged_userns_clone: Option<bool>,
    container: Option<String>,
}

#[derive(Debug, Serialize)]
struct TierReport {
    tier: Tier,
    /// Whether this tier can be used here (the namespaces tier needs user namespaces).
    available: bool,
    /// The plan for this tier, or why it is refused.
    enforcement: Option<Vec<Enforcement>>,
    refusal: Option<String>,
}

#[derive(Debug, Serialize)]
struct Doctor {
    shellcage: &'static str,
    kernel: String,
    arch: &'static str,
    seccomp_arch_supported: bool,
    landlock_abi: u32,
    landlock_levels: Vec<LandlockLevel>,
    user_namespaces: UserNs,
    seccomp: SeccompStatus,
    cgroup: CgroupStatus,
    profile: String,
    profile_source: String,
    tier_choice: TierChoice,
    /// The tier `shellcage run` would use here; `None` when it would refuse.
    run_uses: Option<Tier>,
    run_refusal: Option<String>,
    tiers: Vec<TierReport>,
    hints: Vec<String>,
}

fn tier_report(
    policy: &crate::policy::Policy,
    features: &Features,
    tier: Tier,
    available: bool,
) -> TierReport {
    let mut p = policy.clone();
    p.tier = match tier {
        Tier::Namespaces => TierChoice::Full,
        Tier::Container => TierChoice::Container,
    };
    match plan::plan(&p, features, tier == Tier::Namespaces) {
        Ok(plan) => TierReport {
            tier,
            available,
            enforcement: Some(plan.enforcement),
            refusal: None,
        },
        Err(e) => TierReport {
            tier,
            available: false,
            enforcement: None,
            refusal: Some(e.to_string()),
        },
    }
}

fn hints(d: &Doctor, features: &Features) -> Vec<String> {
    let mut h = Vec::new();
    if !d.user_namespaces.works {
        h.push(format!("user namespaces: {}", features.userns_hint()));
        if d.user_namespaces.container.is_some() {
            h.push("in Docker: `docker run --security-opt seccomp=unconfined` (or a seccomp profile allowing clone/unshare with CLONE_NEWUSER) enables the namespaces tier; in Kubernetes: a pod securityContext with seccompProfile Unconfined (and procMount Unmasked for a fresh /proc)".into());
        }
    }
    if d.landlock_abi == 0 {
        h.push("landlock: needs Linux 5.13+ with CONFIG_SECURITY_LANDLOCK=y and 'landlock' in the lsm= boot parameter; the container tier cannot run without it".into());
    } else if d.landlock_abi < 4 {
        h.push(format!(
            "landlock abi {}: TCP rules need abi 4 (Linux 6.7); seccomp still refuses inet sockets in the container tier",
            d.landlock_abi
        ));
    }
    if d.landlock_abi > 0 && d.landlock_abi < 6 {
        h.push("landlock abi < 6: no abstract unix socket or signal scopes (Linux 6.12)".into());
    }
    if d.landlock_abi < 9 {
        h.push("container tier: pathname unix sockets stay reachable (landlock abi 9 adds RESOLVE_UNIX); do not mount docker.sock, the D-Bus session bus or an ssh-agent socket into a container that runs agents".into());
    }
    if !d.seccomp_arch_supported {
        h.push(format!(
            "architecture {}: shellcage has seccomp filters for x86_64 and aarch64 only",
            d.arch
        ));
    }
    if !d.cgroup.writable {
        h.push("cgroup v2 not delegated: memory/pids limits are not available (rlimits and the timeout still apply); systemd-run --user --scope -p Delegate=yes shellcage … delegates one".into());
    }
    h
}

/// Run the doctor; returns the exit code.
pub fn run(json: bool, profile: &str, tier: Option<TierArg>) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir()?;
    let policy = launch::build_policy(
        &RunOpts {
            profile: Some(profile.to_string()),
            tier,
            ..RunOpts::default()
        },
        &cwd,
    )?;
    let features = Features::detect();
    let trial = probe::userns_trial();
    let tiers = vec![
        tier_report(&policy, &features, Tier::Namespaces, trial.is_ok()),
        tier_report(&policy, &features, Tier::Container, true),
    ];
    let would = plan::plan(
        &policy,
        &features,
        trial.is_ok() && policy.tier != TierChoice::Container,
    );
    let mut d = Doctor {
        shellcage: env!("CARGO_PKG_VERSION"),
        kernel: probe::kernel_release(),
        arch: std::env::consts::ARCH,
        seccomp_arch_supported: features.arch_supported,
        landlock_abi: features.landlock_abi,
        landlock_levels: probe::LANDLOCK_LEVELS
            .iter()
            .map(|&(abi, adds)| LandlockLevel {
                abi,
                adds,
                available: features.landlock_abi >= abi,
            })
            .collect(),
        user_namespaces: UserNs {
            works: trial.is_ok(),
            error: trial.err().map(|e| e.to_string()),
            apparmor_restrict_unprivileged_userns: features.apparmor_restrict_userns,
            max_user_namespaces: features.max_user_namespaces,
            unprivileged_userns_clone: features.unprivileged_userns_clone,
            container: probe::container_marker(),
        },
        seccomp: probe::seccomp_status(),
        cgroup: probe::cgroup_status(),
        profile: policy.profile.clone(),
        profile_source: policy.source.clone(),
        tier_choice: policy.tier,
        run_uses: would.as_ref().ok().map(|p| p.tier),
        run_refusal: would.as_ref().err().map(|e| e.to_string()),
        tiers,
        hints: Vec::new(),
    };
    d.hints = hints(&d, &features);
    let code = if d.run_uses.is_some() { 0 } else { 1 };
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&d)?);
    } else {
        let _ = out.write_all(human(&d).as_bytes());
    }
    Ok(code)
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "absent".to_string(), |v| v.to_string())
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Full => "full",
        Status::Partial => "partial",
        Status::NotEnforced => "NOT ENFORCED",
        Status::Waived => "waived",
    }
}

fn human(d: &Doctor) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "shellcage {} doctor", d.shellcage);
    let _ = writeln!(
        s,
        "kernel          {} {} (seccomp filter for this arch: {})",
        d.kernel,
        d.arch,
        if d.seccomp_arch_supported {
            "yes"
        } else {
            "NO"
        }
    );
    let _ = writeln!(s, "landlock        abi {}", d.landlock_abi);
    for l in &d.landlock_levels {
        let _ = writeln!(
            s,
            "  [{}] abi {}  {}",
            if l.available { "x" } else { " " },
            l.abi,
            l.adds
        );
    }
    let u = &d.user_namespaces;
    let _ = writeln!(
        s,
        "user namespaces {}",
        if u.works {
            "work (trial clone with CLONE_NEWUSER succeeded)".to_string()
        } else {
            format!(
                "FAIL (trial clone with CLONE_NEWUSER: {})",
                u.error.as_deref().unwrap_or("?")
            )
        }
    );
    let _ = writeln!(
        s,
        "  kernel.apparmor_restrict_unprivileged_userns={}  user.max_user_namespaces={}  kernel.unprivileged_userns_clone={}  container: {}",
        opt(&u.apparmor_restrict_unprivileged_userns.map(u8::from)),
        opt(&u.max_user_namespaces),
        opt(&u.unprivileged_userns_clone.map(u8::from)),
        u.container.as_deref().unwrap_or("no")
    );
    let _ = writeln!(
        s,
        "seccomp         filters {}; inherited filters on this process: {}",
        if d.seccomp.filters_supported {
            "supported"
        } else {
            "NOT supported"
        },
        opt(&d.seccomp.inherited_filters)
    );
    let _ = writeln!(
        s,
        "cgroup v2       {}",
        match (&d.cgroup.path, d.cgroup.v2) {
            (Some(p), true) => format!(
                "{} ({}; controllers: {})",
                p.display(),
                if d.cgroup.writable {
                    "writable: delegated"
                } else {
                    "not writable: not delegated"
                },
                if d.cgroup.controllers.is_empty() {
                    "none".into()
                } else {
                    d.cgroup.controllers.join(" ")
                }
            ),
            _ => "not mounted (cgroup v1 or none)".into(),
        }
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "profile {} ({}), tier = {}",
        d.profile,
        d.profile_source,
        match d.tier_choice {
            TierChoice::Full => "full",
            TierChoice::Auto => "auto",
            TierChoice::Container => "container",
        }
    );
    match (&d.run_uses, &d.run_refusal) {
        (Some(t), _) => {
            let _ = writeln!(s, "a run here uses the {} tier", tier_name(*t));
        }
        (None, Some(r)) => {
            let _ = writeln!(s, "a run here is REFUSED (exit 125): {r}");
        }
        _ => {}
    }
    for t in &d.tiers {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{} tier{}:",
            tier_name(t.tier),
            if t.available {
                ""
            } else {
                " (NOT AVAILABLE HERE: user namespaces fail)"
            }
        );
        if let Some(r) = &t.refusal {
            let _ = writeln!(s, "  refused: {r}");
        }
        for e in t.enforcement.iter().flatten() {
            let name = serde_json::to_value(e.guarantee)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {:<22} {:<13} {}",
                name,
                status_word(e.status),
                e.mechanisms.join("; ")
            );
            if let Some(n) = &e.note {
                let _ = writeln!(s, "  {:<22} {:<13} ({n})", "", "");
            }
        }
    }
    if !d.hints.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "how to fix:");
        for h in &d.hints {
            let _ = writeln!(s, "  - {h}");
        }
    }
    s
}

fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Namespaces => "namespaces",
        Tier::Container => "container",
    }
}

//! `shellcage doctor`: what this kernel supports, which guarantees hold here
//! for a profile (per tier), which tier a run would use, and how to fix what
//! is missing.
//!
//! Exit codes: 0 when `shellcage run` with this profile (and tier) would run
//! here; 1 when it would refuse (exit 125); 125 when doctor itself fails (the
//! profile cannot be loaded).

use std::io::Write;
use std::os::fd::AsRawFd;

use serde::Serialize;

use crate::cli::RunOpts;
use crate::plan::{self, Enforcement, Strength, Tier};
use crate::policy::TierChoice;
use crate::probe::{self, CgroupLimit, Features, SeccompStatus, Userns};
use crate::request::Request;
use crate::sandbox::cgroup::{self, LayoutKind, LimitRequest, Swap, Version};
use crate::sandbox::devices::GpuNodes;
use crate::sandbox::landlock::{self, Enforced, LandlockSpec, LandlockStatus};
use crate::sandbox::report::{self, Decoder, Message};
use crate::sys;

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

/// What the host's cgroups offer the memory, process and CPU limits.
#[derive(Debug, Serialize)]
struct Cgroups {
    layout: LayoutKind,
    /// Our cgroup in each hierarchy with memory, pids or cpu (and v2's).
    hierarchies: Vec<HierarchyLine>,
    /// What `--memory`, `--processes` and `--cpu` would get from a cgroup
    /// here (processes are also held by RLIMIT_NPROC in the namespaces tier).
    limits: Vec<CgroupLimit>,
    /// Whether swap would be capped with a memory limit.
    swap: Swap,
    /// RLIMIT_NPROC holds the process limit in the namespaces tier (Linux ≥
    /// 5.14, not root).
    processes_by_rlimit: bool,
}

#[derive(Debug, Serialize)]
struct HierarchyLine {
    version: Version,
    mount_point: std::path::PathBuf,
    controllers: Vec<String>,
    /// Our cgroup's directory, or why it cannot be used.
    cgroup: Result<std::path::PathBuf, String>,
    writable: bool,
}

fn cgroups(features: &Features) -> Cgroups {
    let layout = cgroup::detect_host();
    // Representative values: only what holds each limit is shown.
    let every = LimitRequest {
        memory: Some(1 << 30),
        processes: Some(1024),
        cpu_millis: Some(1000),
    };
    let plan = cgroup::describe(&every, &layout, nix::unistd::geteuid().as_raw());
    Cgroups {
        layout: layout.kind,
        hierarchies: layout
            .v1
            .iter()
            .chain(layout.v2.as_ref())
            .map(|h| HierarchyLine {
                version: h.version,
                mount_point: h.mount_point.clone(),
                controllers: h.controllers.clone(),
                cgroup: h.ours.as_ref().map(|o| o.dir.clone()).map_err(Clone::clone),
                writable: h.ours.as_ref().is_ok_and(|o| o.writable),
            })
            .collect(),
        limits: plan.support(),
        swap: plan.swap,
        processes_by_rlimit: features.nproc_per_userns,
    }
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
    /// What a ruleset like a run's got from this kernel (applied in a child).
    landlock_trial: Option<LandlockStatus>,
    landlock_trial_error: Option<String>,
    user_namespaces: UserNs,
    seccomp: SeccompStatus,
    cgroup: Cgroups,
    /// The host's GPU device nodes: what `--gpu` / `[devices] gpu = true` would bind.
    gpu_devices: GpuNodes,
    /// The profile's `[devices] gpu`.
    profile_gpu: bool,
    profile: String,
    profile_source: String,
    tier_choice: TierChoice,
    /// The tier `shellcage run` would use here; `None` when it would refuse.
    run_uses: Option<Tier>,
    run_refusal: Option<String>,
    /// The managed floor file in force, if any (`shellcage policy show`).
    managed_floor: Option<String>,
    tiers: Vec<TierReport>,
    /// `safe.bareRepository` in the user's global git config (`None`: unset,
    /// git's default `all`).
    git_safe_bare_repository: Option<String>,
    /// This user's sessions that answer (`shellcage session list`).
    sessions: Vec<crate::session::Info>,
    hints: Vec<String>,
}

fn tier_report(
    policy: &crate::policy::Policy,
    features: &Features,
    tier: Tier,
    available: bool,
) -> TierReport {
    let mut p = policy.clone();
    p.tier = tier.choice();
    // The namespaces tier's table as if user namespaces worked (`available`
    // says whether they do).
    let mut f = features.clone();
    if tier == Tier::Namespaces {
        f.userns = Userns::Works;
    }
    match plan::plan(&p, &f) {
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
    if !d
        .git_safe_bare_repository
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("explicit"))
    {
        h.push("git: `git config --global safe.bareRepository explicit` makes your git ignore bare repositories it finds by itself: a directory a command made in the workspace (HEAD, objects, refs, config) can then never run that config's programs, even while the command still runs (see SECURITY.md, git repositories the command makes)".into());
    }
    h.extend(root_hints(features.caller));
    let mut seen = Vec::new();
    for l in &d.cgroup.limits {
        if let Some(g) = l.gap.as_ref().filter(|g| !seen.contains(&&g.hint)) {
            seen.push(&g.hint);
            h.push(format!(
                "cgroup limits ({}): {}",
                d.cgroup
                    .limits
                    .iter()
                    .filter(|o| o.gap.as_ref().is_some_and(|og| og.hint == g.hint))
                    .map(|o| o.resource.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                g.hint
            ));
        }
    }
    h
}

/// Run as root: what the sandbox's mapping of root needs, and whether the
/// id it maps root to is free here (an account or group with that id would
/// own, or be, what the sandbox is).
fn root_hints(caller: probe::Caller) -> Vec<String> {
    use crate::sandbox::rootview::MAPPED_ROOT;
    match caller {
        probe::Caller::User => vec![],
        probe::Caller::HostRoot => {
            let mut h = vec![format!(
                "run as root: the namespaces tier maps the sandbox's uid and gid 0 to {MAPPED_ROOT} (files only root may read stay closed, as for any user) and binds the workspace, home binds and writable paths through id-mapped mounts, which need ext4, xfs, btrfs or tmpfs (a run with one elsewhere is refused); the container tier cannot do this: there, hide root-only files in the profile"
            )];
            for (file, what) in [("/etc/passwd", "user"), ("/etc/group", "group")] {
                if id_named_in(file, MAPPED_ROOT) {
                    h.push(format!(
                        "{file} has a {what} with id {MAPPED_ROOT}, which a sandbox started by root uses for its root: remove it or give it another id"
                    ));
                }
            }
            h
        }
        probe::Caller::NamespaceRoot => vec![
            "run as root of a user namespace that is not the host's (a rootless container): the sandbox keeps that root, so files only it may read in the visible trees are readable inside; hide them in the profile, or run shellcage as an unprivileged user".into(),
        ],
        probe::Caller::RootWithoutCapabilities => vec![
            "run as root without CAP_SYS_ADMIN, CAP_SETUID and CAP_SETGID (a container that drops them): the sandbox cannot map root to an unprivileged id, so files only root may read in the visible trees are readable inside; run shellcage as an unprivileged user (recommended), or give the container those capabilities".into(),
        ],
    }
}

/// Does a line of the colon-separated database `file` have `id` in its third field?
fn id_named_in(file: &str, id: u32) -> bool {
    let id = id.to_string();
    std::fs::read_to_string(file).is_ok_and(|text| {
        text.lines()
            .any(|l| l.split(':').nth(2).is_some_and(|f| f == id))
    })
}

/// Run the doctor; returns the exit code.
pub fn run(json: bool, profile: &str, tier: Option<TierChoice>) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir()?;
    let opts = RunOpts {
        profile: Some(profile.to_string()),
        tier,
        ..RunOpts::default()
    };
    let req = Request::new(&opts, &cwd)?;
    let managed_floor = req
        .floor
        .as_ref()
        .map(|(f, _)| f.file.display().to_string());
    let policy = req.policy;
    let trial = probe::userns_trial();
    let mut features = Features::detect().with_trial(trial);
    // Ubuntu's AppArmor restriction: a trial clone may succeed where the
    // sandbox's first mount would fail, so the restriction decides.
    let restricted =
        probe::userns_restricted(std::path::Path::new("/"), nix::unistd::geteuid().as_raw());
    let userns_error = match (restricted, trial) {
        (Some(u), _) => {
            let why = match &u {
                probe::Userns::Fails { missing, .. } => missing.clone(),
                _ => String::new(),
            };
            features.userns = u;
            Some(why)
        }
        (None, Err(e)) => Some(format!("trial clone with CLONE_NEWUSER: {e}")),
        (None, Ok(())) => None,
    };
    let trial = match userns_error {
        Some(_) => trial.and(Err(nix::errno::Errno::EACCES)),
        None => trial,
    };
    features.cgroup_limits = cgroup::plan_for(&policy.limits).support();
    let tiers = vec![
        tier_report(&policy, &features, Tier::Namespaces, trial.is_ok()),
        tier_report(&policy, &features, Tier::Container, true),
    ];
    let would = plan::plan(&policy, &features);
    let landlock = landlock_trial();
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
        landlock_trial: landlock.as_ref().ok().copied(),
        landlock_trial_error: landlock.err(),
        user_namespaces: UserNs {
            works: trial.is_ok(),
            error: userns_error,
            apparmor_restrict_unprivileged_userns: features.apparmor_restrict_userns,
            max_user_namespaces: features.max_user_namespaces,
            unprivileged_userns_clone: features.unprivileged_userns_clone,
            container: probe::container_marker(),
        },
        seccomp: probe::seccomp_status(),
        cgroup: cgroups(&features),
        gpu_devices: crate::sandbox::devices::scan_gpu(),
        profile_gpu: policy.devices.gpu,
        profile: policy.profile.clone(),
        profile_source: policy.source.clone(),
        tier_choice: policy.tier,
        run_uses: would.as_ref().ok().map(|p| p.tier),
        run_refusal: would.as_ref().err().map(|e| e.to_string()),
        managed_floor,
        tiers,
        git_safe_bare_repository: crate::git::global_value(b"safe.barerepository")
            .map(|v| String::from_utf8_lossy(&v).into_owned()),
        sessions: crate::session::list(),
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

fn status_word(s: Strength) -> &'static str {
    match s {
        Strength::Full => "full",
        Strength::Partial => "partial",
        Strength::NotEnforced => "NOT ENFORCED",
        Strength::Waived => "waived",
    }
}

fn human(d: &Doctor) -> String {
    let mut s = String::new();
    kernel_lines(&mut s, d);
    plan_lines(&mut s, d);
    s.push_str(&format!(
        "\nsessions        {} running for this user (shellcage session list)\n",
        d.sessions.len()
    ));
    for x in &d.sessions {
        s.push_str(&format!(
            "  {}  pid {}  {}  profile {}\n",
            x.key,
            x.pid,
            x.workspace.display(),
            x.profile
        ));
    }
    if !d.hints.is_empty() {
        s.push_str("\nhow to fix:\n");
        for h in &d.hints {
            s.push_str(&format!("  - {h}\n"));
        }
    }
    s
}

fn word(e: Enforced) -> &'static str {
    match e {
        Enforced::Full => "full",
        Enforced::Partial => "partial",
        Enforced::No => "no",
    }
}

/// What this machine offers.
fn kernel_lines(s: &mut String, d: &Doctor) {
    use std::fmt::Write as _;
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
    let _ = match (&d.landlock_trial, &d.landlock_trial_error) {
        (Some(t), _) => writeln!(
            s,
            "  a run's ruleset here: {} enforced (filesystem {}, tcp {}, scopes {})",
            t.ruleset.map_or("not", |r| match r {
                Enforced::Full => "fully",
                Enforced::Partial => "partly",
                Enforced::No => "not",
            }),
            word(t.filesystem),
            word(t.tcp),
            word(t.scopes)
        ),
        (None, Some(e)) => writeln!(s, "  a run's ruleset here: FAILED ({e})"),
        (None, None) => Ok(()),
    };
    let u = &d.user_namespaces;
    let _ = writeln!(
        s,
        "user namespaces {}",
        if u.works {
            "work (trial clone with CLONE_NEWUSER succeeded)".to_string()
        } else {
            format!("FAIL ({})", u.error.as_deref().unwrap_or("?"))
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
    cgroup_lines(s, &d.cgroup);
    gpu_lines(s, &d.gpu_devices, d.profile_gpu);
}

/// The GPU nodes `--gpu` would bind, and what under those names it would not.
fn gpu_lines(s: &mut String, g: &GpuNodes, profile_gpu: bool) {
    use std::fmt::Write as _;
    let asked = if profile_gpu {
        "the profile sets [devices] gpu = true"
    } else {
        "exposed only with --gpu or [devices] gpu = true"
    };
    if g.nodes.is_empty() {
        let _ = writeln!(
            s,
            "gpu devices     none ({} hold no character device): --gpu refuses here",
            crate::sandbox::devices::GPU_PATTERNS
        );
    } else {
        let _ = writeln!(s, "gpu devices     {} nodes ({asked})", g.nodes.len());
        for n in &g.nodes {
            let _ = writeln!(s, "  {:<30} {}:{}", n.path.display(), n.major, n.minor);
        }
        for l in &g.links {
            let _ = writeln!(s, "  {:<30} -> {}", l.path.display(), l.target.display());
        }
    }
    for k in &g.skipped {
        let _ = writeln!(s, "  {:<30} not exposed: {}", k.path.display(), k.why);
    }
}

fn cgroup_lines(s: &mut String, c: &Cgroups) {
    use std::fmt::Write as _;
    let kind = match c.layout {
        LayoutKind::V2 => "v2",
        LayoutKind::Hybrid => "hybrid (v1 controllers beside v2)",
        LayoutKind::V1 => "v1",
        LayoutKind::None => "none mounted",
    };
    let _ = writeln!(s, "cgroups         {kind}");
    for h in &c.hierarchies {
        let v = match h.version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        };
        let where_ = match &h.cgroup {
            Ok(dir) => format!(
                "{} ({})",
                dir.display(),
                if h.writable {
                    "writable"
                } else {
                    "not writable"
                }
            ),
            Err(why) => format!("UNUSABLE: {why}"),
        };
        let _ = writeln!(
            s,
            "  {v} {:<18} {where_}",
            if h.controllers.is_empty() {
                "(no controllers)".to_string()
            } else {
                h.controllers.join(",")
            }
        );
    }
    for l in &c.limits {
        let held = match (&l.mechanism, &l.gap) {
            (Some(m), None) => m.clone(),
            (Some(m), Some(g)) => format!("{m}, but {}", g.reason),
            (None, Some(g)) => format!("NOT AVAILABLE: {}", g.reason),
            (None, None) => "NOT AVAILABLE".into(),
        };
        let rlimit = if l.resource == crate::policy::Resource::Processes && c.processes_by_rlimit {
            "; namespaces tier: also RLIMIT_NPROC in the sandbox's user namespace"
        } else {
            ""
        };
        let _ = writeln!(s, "  --{:<10} {held}{rlimit}", l.resource.name());
    }
    let swap = match &c.swap {
        Swap::Capped => "capped at zero with a memory limit".to_string(),
        Swap::NoSwap => "not capped, but no swap is active".to_string(),
        Swap::NotCapped(why) => format!("NOT CAPPED with a memory limit: {why}"),
        Swap::NotApplicable => "no memory limit available".to_string(),
    };
    let _ = writeln!(s, "  swap         {swap}");
}

/// The profile, the tier a run would use, and each tier's enforcement table.
fn plan_lines(s: &mut String, d: &Doctor) {
    use std::fmt::Write as _;
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "git safe.bareRepository: {}",
        d.git_safe_bare_repository
            .as_deref()
            .unwrap_or("unset (all)")
    );
    let _ = writeln!(
        s,
        "profile {} ({}), tier = {}",
        d.profile,
        d.profile_source,
        d.tier_choice.name()
    );
    let _ = match &d.managed_floor {
        Some(f) => writeln!(
            s,
            "managed floor {f} is in force: it was applied to this profile (see 'shellcage policy show')"
        ),
        None => writeln!(
            s,
            "managed floor: none ({} does not exist)",
            crate::profile::managed::DEFAULT_PATH
        ),
    };
    match (&d.run_uses, &d.run_refusal) {
        (Some(t), _) => {
            let _ = writeln!(s, "a run here uses the {} tier", t.name());
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
            t.tier.name(),
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
            let _ = writeln!(
                s,
                "  {:<22} {:<13} {}",
                e.guarantee.id(),
                status_word(e.status),
                e.mechanisms.join("; ")
            );
            if let Some(n) = &e.note {
                let _ = writeln!(s, "  {:<22} {:<13} ({n})", "", "");
            }
        }
    }
}

/// Apply a ruleset with a run's TCP and scope rights (and no path allowed
/// back) in a child process, and return what the kernel enforced: the status
/// a run's command process would report here.
fn landlock_trial() -> Result<LandlockStatus, String> {
    let spec = LandlockSpec {
        deny_tcp: true,
        tcp_connect: vec![],
        tcp_bind: vec![],
        scopes: true,
        ..LandlockSpec::default()
    };
    let (read, write) = sys::pipe_cloexec().map_err(|e| e.to_string())?;
    match sys::fork_process().map_err(|e| e.to_string())? {
        sys::Forked::Child => {
            drop(read);
            let message = match landlock::apply(&spec) {
                Ok(status) => Message::Landlock(status),
                Err(e) => Message::Error(e.to_string()),
            };
            report::send(write.as_raw_fd(), &message);
            sys::exit_now(0)
        }
        sys::Forked::Parent { child } => {
            drop(write);
            let mut decoder = Decoder::default();
            let mut file = std::fs::File::from(read);
            let mut bytes = Vec::new();
            let _ = std::io::Read::read_to_end(&mut file, &mut bytes);
            let _ = nix::sys::wait::waitpid(child, None);
            decoder.push(&bytes);
            match decoder.finish().into_iter().next() {
                Some(Message::Landlock(status)) => Ok(status),
                Some(Message::Error(e)) => Err(e),
                _ => Err("the trial process reported nothing".into()),
            }
        }
    }
}

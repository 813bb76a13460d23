//! Policy + kernel features → Plan: which mechanism enforces each guarantee,
//! or a refusal naming what is missing.
//!
//! Pure data in, pure data out: no syscall, no file read (the caller probes the
//! kernel, see [`crate::probe`]), unit tested without privileges. The rows of
//! the enforcement table are data ([`NAMESPACES`], [`CONTAINER`]), written
//! like the design's table: one row per guarantee, its mechanisms, and the
//! rule that says how strongly it holds given what this kernel offers.

use serde::Serialize;

use crate::policy::{Access, NetMode, Policy, Requirement, Resource, TierChoice};
use crate::probe::{Features, Gap, Userns};

/// The guarantees of the design's contract, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    FilesystemView,
    SecretsHidden,
    ProtectedPaths,
    NoNetwork,
    HostIpc,
    Processes,
    NoPrivilege,
    KernelSurface,
    CleanEnvironment,
    NoTerminalInjection,
    Limits,
    NothingOutlives,
    ReversibleWorkspace,
}

/// Each guarantee's identifier (JSON, the entrypoint's line) and its name
/// (refusals: `cannot enforce 'filesystem view'`).
const GUARANTEES: [(Guarantee, &str, &str); 13] = [
    (
        Guarantee::FilesystemView,
        "filesystem_view",
        "filesystem view",
    ),
    (Guarantee::SecretsHidden, "secrets_hidden", "secrets hidden"),
    (
        Guarantee::ProtectedPaths,
        "protected_paths",
        "protected paths",
    ),
    (Guarantee::NoNetwork, "no_network", "no network egress"),
    (Guarantee::HostIpc, "host_ipc", "host ipc unreachable"),
    (
        Guarantee::Processes,
        "processes",
        "host processes invisible",
    ),
    (Guarantee::NoPrivilege, "no_privilege", "no privilege"),
    (
        Guarantee::KernelSurface,
        "kernel_surface",
        "kernel attack surface",
    ),
    (
        Guarantee::CleanEnvironment,
        "clean_environment",
        "clean environment",
    ),
    (
        Guarantee::NoTerminalInjection,
        "no_terminal_injection",
        "no terminal injection",
    ),
    (Guarantee::Limits, "limits", "bounded resources"),
    (
        Guarantee::NothingOutlives,
        "nothing_outlives",
        "nothing outlives the command",
    ),
    (
        Guarantee::ReversibleWorkspace,
        "reversible_workspace",
        "reversible workspace",
    ),
];

impl Guarantee {
    pub const ALL: [Guarantee; 13] = {
        let mut all = [Guarantee::FilesystemView; 13];
        let mut i = 0;
        while i < 13 {
            all[i] = GUARANTEES[i].0;
            i += 1;
        }
        all
    };

    fn entry(self) -> &'static (Guarantee, &'static str, &'static str) {
        // GUARANTEES lists every variant in declaration order.
        &GUARANTEES[self as usize]
    }

    /// The identifier, e.g. `filesystem_view`.
    pub fn id(self) -> &'static str {
        self.entry().1
    }

    /// The name in sentences, e.g. `filesystem view`.
    pub fn name(self) -> &'static str {
        self.entry().2
    }
}

impl std::fmt::Display for Guarantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Guarantee {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// How strongly a guarantee holds on this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// Every mechanism the design lists for it is in place.
    Full,
    /// The primary mechanism holds; a second layer is missing on this kernel.
    Partial,
    /// Not enforced on this tier (only allowed when the profile does not require it).
    NotEnforced,
    /// The profile chose not to have it (e.g. `network = "host"`).
    Waived,
}

/// One row of the "who enforced what" table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enforcement {
    pub guarantee: Guarantee,
    pub status: Strength,
    pub mechanisms: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Which set of mechanisms a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// user, mount, pid, net, ipc, uts namespaces + Landlock + seccomp.
    Namespaces,
    /// No namespaces: Landlock + seccomp + no_new_privs (containers, AppArmor userns restriction).
    Container,
}

impl Tier {
    /// As shown to users (`doctor`, the entrypoint's line).
    pub fn name(self) -> &'static str {
        match self {
            Tier::Namespaces => "namespaces",
            Tier::Container => "container",
        }
    }

    /// The choice that asks for exactly this tier (`SHELLCAGE_TIER` exported by
    /// the entrypoint: `full` when namespaces work, so a later change fails closed).
    pub fn choice(self) -> TierChoice {
        match self {
            Tier::Namespaces => TierChoice::Full,
            Tier::Container => TierChoice::Container,
        }
    }
}

/// The mechanism choice for one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub tier: Tier,
    /// Create a network namespace (false only for `network = "host"`).
    pub new_netns: bool,
    /// Landlock ABI used (0 = none).
    pub landlock_abi: u32,
    /// Landlock must be enforced: the command must not run without it (the
    /// profile requires it, or the container tier has nothing else). Decided
    /// here only; the sandbox's Landlock step reads it.
    pub landlock_required: bool,
    /// Apply Landlock TCP bind/connect denial.
    pub landlock_tcp: bool,
    /// Apply the Landlock abstract-unix-socket and signal scopes.
    pub landlock_scopes: bool,
    /// Let seccomp allow AF_INET/AF_INET6 sockets.
    pub seccomp_allow_inet: bool,
    /// Set RLIMIT_NPROC to the process limit in the sandbox (namespaces tier
    /// on Linux ≥ 5.14, where it counts the sandbox's user namespace only).
    pub rlimit_nproc: bool,
    /// Run shellcage's allowlist proxy (network mode `proxy`): its listeners inside the
    /// network namespace, the proxy process outside.
    pub proxy: bool,
    pub enforcement: Vec<Enforcement>,
}

/// Why a run cannot go ahead: one guarantee, the missing mechanism, the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot enforce '{guarantee}': {missing} (hint: {hint})")]
pub struct Refusal {
    pub guarantee: Guarantee,
    pub missing: String,
    pub hint: String,
}

const LANDLOCK_HINT: &str = "enable Landlock (CONFIG_SECURITY_LANDLOCK=y and 'landlock' in the lsm= boot parameter), or set [landlock] mode = \"best-effort\" in the profile; see 'shellcage doctor'";

/// Choose mechanisms for `policy` on a kernel with `features`.
///
/// `features.userns` says whether namespaces can be created here: the launch
/// path plans with [`Userns::Untried`] (it learns the answer from its clone)
/// and plans again with [`Userns::Fails`] when that clone fails; `doctor` and
/// the entrypoint try one first.
pub fn plan(policy: &Policy, features: &Features) -> Result<Plan, Refusal> {
    if !features.arch_supported {
        return Err(Refusal {
            guarantee: Guarantee::KernelSurface,
            missing: format!(
                "no seccomp filter for architecture {}",
                std::env::consts::ARCH
            ),
            hint: "shellcage supports x86_64 and aarch64".into(),
        });
    }
    let tier = choose_tier(policy.tier, &features.userns)?;
    let abi = features.landlock_abi;
    let landlock_required = policy.landlock == Requirement::Required || tier == Tier::Container;
    if abi == 0 && landlock_required {
        let missing = if tier == Tier::Container {
            "Landlock is not available and the container tier has no other filesystem isolation"
        } else {
            "Landlock is not available on this kernel"
        };
        return Err(Refusal {
            guarantee: Guarantee::FilesystemView,
            missing: missing.into(),
            hint: LANDLOCK_HINT.into(),
        });
    }
    if policy.workspace_layer.is_some() {
        overlay_possible(tier, features)?;
    }
    if tier == Tier::Container && (policy.network == NetMode::Proxy || !policy.publish.is_empty()) {
        let what = if policy.network == NetMode::Proxy {
            "network mode proxy"
        } else {
            "--publish"
        };
        return Err(Refusal {
            guarantee: Guarantee::NoNetwork,
            missing: format!(
                "{what} needs a network namespace, and the container tier has none (without one, nothing would keep the command from connecting around the proxy; Landlock's TCP rules name ports, not addresses)"
            ),
            hint: "run where user namespaces work (see 'shellcage doctor'), or use --net none"
                .into(),
        });
    }
    let facts = Facts::new(policy, tier, abi);
    let table: &[Row] = match tier {
        Tier::Namespaces => &NAMESPACES,
        Tier::Container => &CONTAINER,
    };
    let rlimit_nproc =
        tier == Tier::Namespaces && features.nproc_per_userns && policy.limits.processes.is_some();
    let mut enforcement: Vec<Enforcement> = table.iter().map(|row| row.evaluate(&facts)).collect();
    if let Some(row) = enforcement
        .iter_mut()
        .find(|e| e.guarantee == Guarantee::Limits)
    {
        add_cgroup_limits(row, policy, features, rlimit_nproc)?;
    }
    if policy.devices.gpu {
        add_gpu(&mut enforcement, tier, abi);
    }
    Ok(Plan {
        tier,
        new_netns: tier == Tier::Namespaces && facts.net_isolated,
        landlock_abi: abi,
        landlock_required,
        landlock_tcp: facts.landlock_tcp,
        landlock_scopes: facts.landlock_scopes,
        // Without a network namespace the socket-family filter is what keeps
        // the command off the network (seccomp refuses inet sockets altogether,
        // so TCP and UDP stay denied on a kernel without Landlock TCP rules).
        seccomp_allow_inet: !(tier == Tier::Container && facts.net_isolated),
        rlimit_nproc,
        proxy: facts.network == NetMode::Proxy,
        enforcement,
    })
}

/// The oldest kernel that mounts overlayfs in a user namespace (with `userxattr`).
pub const OVERLAY_KERNEL: (u32, u32) = (5, 11);

/// An overlay workspace needs the mount namespace of the namespaces tier and
/// overlayfs in a user namespace (Linux 5.11); it never falls back to writing
/// the host. (Whether the mount works is known only when it is tried: the
/// sandbox's init names what failed.)
fn overlay_possible(tier: Tier, features: &Features) -> Result<(), Refusal> {
    let refuse = |missing: String, hint: &str| Refusal {
        guarantee: Guarantee::ReversibleWorkspace,
        missing,
        hint: hint.into(),
    };
    if tier == Tier::Container {
        return Err(refuse(
            "the container tier has no mount namespace to mount the workspace's overlay layer in"
                .into(),
            "run where user namespaces work (see 'shellcage doctor'), or without --overlay (workspace = \"write\")",
        ));
    }
    let (major, minor) = OVERLAY_KERNEL;
    match &features.kernel {
        Some(k) if !k.at_least(major, minor) => Err(refuse(
            format!(
                "overlayfs in a user namespace needs Linux {major}.{minor} or later; this kernel is {}",
                k.release
            ),
            "upgrade the kernel, or run without --overlay (workspace = \"write\")",
        )),
        _ => Ok(()),
    }
}

/// The memory, process and CPU limits on the "bounded resources" row: each
/// one asked for, with what holds it here (the run's cgroup, as found by the
/// caller in `features.cgroup_limits`; for processes also RLIMIT_NPROC).
/// One that cannot be held is refused when it is required, and leaves the row
/// partial, with the reason in its note, when it is best-effort.
fn add_cgroup_limits(
    row: &mut Enforcement,
    policy: &Policy,
    features: &Features,
    rlimit_nproc: bool,
) -> Result<(), Refusal> {
    let limits = &policy.limits;
    let asked = [
        (Resource::Memory, limits.memory.is_some()),
        (Resource::Processes, limits.processes.is_some()),
        (Resource::Cpu, limits.cpu_millis.is_some()),
    ];
    // A limit the caller did not look up is not trusted to hold.
    let unprobed = Gap {
        reason: "the host's cgroups were not examined".into(),
        hint: "see 'shellcage doctor'".into(),
    };
    let mut refused: Vec<(String, &Gap)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for (resource, _) in asked.iter().filter(|(_, a)| *a) {
        let found = features
            .cgroup_limits
            .iter()
            .find(|c| c.resource == *resource);
        let limit = found.map_or_else(|| format!("{} limit", resource.name()), |c| c.limit.clone());
        let mechanism = found.and_then(|c| c.mechanism.as_ref());
        if let Some(m) = mechanism {
            row.mechanisms.push(format!("{m} ({limit})"));
        }
        // RLIMIT_NPROC holds the whole process limit on its own.
        let nproc = *resource == Resource::Processes && rlimit_nproc;
        if nproc {
            row.mechanisms.push(format!(
                "RLIMIT_NPROC in the sandbox's user namespace ({limit})"
            ));
        }
        let gap = match found {
            None => &unprobed,
            Some(_) if nproc => continue,
            Some(c) => match &c.gap {
                Some(g) => g,
                None => continue,
            },
        };
        if limits.requirement(*resource) == Requirement::Required {
            refused.push((limit, gap));
        } else {
            let how = if mechanism.is_some() {
                "partly enforced"
            } else {
                "not enforced"
            };
            notes.push(format!(
                "{how}: {limit}: {} (hint: {})",
                gap.reason, gap.hint
            ));
        }
    }
    if let Some((_, first)) = refused.first() {
        return Err(Refusal {
            guarantee: Guarantee::Limits,
            missing: refused
                .iter()
                .map(|(l, g)| format!("{l}: {}", g.reason))
                .collect::<Vec<_>>()
                .join("; "),
            hint: first.hint.clone(),
        });
    }
    if !notes.is_empty() {
        row.status = Strength::Partial;
        let mut all: Vec<String> = row.note.take().into_iter().collect();
        all.extend(notes);
        row.note = Some(all.join("; "));
    }
    Ok(())
}

/// `[devices] gpu`: the filesystem view gains the GPU nodes (bound, and held
/// by Landlock to exactly those paths), and the kernel attack surface gains
/// the drivers' ioctl interfaces, so that row is partial (see SECURITY.md).
fn add_gpu(enforcement: &mut [Enforcement], tier: Tier, abi: u32) {
    let rights = if abi >= 5 {
        "read, write and ioctl"
    } else {
        "read and write (ioctl is not checked below abi 5)"
    };
    for row in enforcement.iter_mut() {
        match row.guarantee {
            Guarantee::FilesystemView => {
                if tier == Tier::Namespaces {
                    row.mechanisms.push(
                        "the host's GPU device nodes bound into /dev ([devices] gpu; listed in the report)"
                            .into(),
                    );
                }
                if abi > 0 {
                    row.mechanisms.push(format!(
                        "landlock (abi {abi}) {rights} on exactly the GPU device nodes"
                    ));
                }
            }
            Guarantee::KernelSurface => {
                row.status = Strength::Partial;
                row.note = Some(
                    "[devices] gpu: the GPU drivers' ioctl interfaces (DRM, NVIDIA) are reachable; seccomp does not filter their requests"
                        .into(),
                );
            }
            _ => {}
        }
    }
}

/// The tier a choice gets, given what is known about user namespaces.
fn choose_tier(choice: TierChoice, userns: &Userns) -> Result<Tier, Refusal> {
    match (choice, userns) {
        (TierChoice::Container, _) => Ok(Tier::Container),
        (_, Userns::Untried | Userns::Works) => Ok(Tier::Namespaces),
        (TierChoice::Auto, Userns::Fails { .. }) => Ok(Tier::Container),
        (TierChoice::Full, Userns::Fails { missing, hint }) => Err(Refusal {
            guarantee: Guarantee::FilesystemView,
            missing: missing.clone(),
            hint: hint.clone(),
        }),
    }
}

/// What the rules of the table look at, computed once.
struct Facts {
    abi: u32,
    /// Not `network = "host"`.
    net_isolated: bool,
    network: NetMode,
    landlock_tcp: bool,
    landlock_scopes: bool,
    /// The workspace is read-only, or the profile lists protected paths.
    protect_listed: bool,
    /// The workspace is an overlay layer.
    overlay: bool,
    /// `--publish` ports.
    publish: bool,
}

impl Facts {
    fn new(policy: &Policy, tier: Tier, abi: u32) -> Facts {
        let net_isolated = policy.network != NetMode::Host;
        Facts {
            abi,
            net_isolated,
            network: policy.network,
            // In the namespaces tier `loopback` allows TCP on the private
            // loopback; without a network namespace nothing is private. In `proxy` mode
            // the rules allow the proxy's listener ports only.
            landlock_tcp: abi >= 4
                && (matches!(policy.network, NetMode::None | NetMode::Proxy)
                    || (tier == Tier::Container && net_isolated)),
            landlock_scopes: abi >= 6,
            protect_listed: policy.workspace_access == Access::Read || !policy.protect.is_empty(),
            overlay: policy.workspace_layer.is_some(),
            publish: !policy.publish.is_empty(),
        }
    }
}

/// A condition on [`Facts`].
#[derive(Clone, Copy)]
enum When {
    Always,
    /// Landlock is available (any ABI).
    Landlock,
    /// Landlock denies TCP bind/connect on this run.
    LandlockTcp,
    /// Landlock denies TCP bind/connect, no port excepted (no proxy, nothing published).
    LandlockTcpAll,
    /// Landlock allows TCP on the proxy's or the published ports only.
    LandlockTcpPorts,
    /// Network mode `proxy`.
    Proxy,
    /// An isolated network without the proxy.
    NoProxy,
    /// `--publish`.
    Publish,
    /// Landlock scopes abstract unix sockets and signals (ABI ≥ 6).
    Scopes,
    /// Not `network = "host"`.
    NetIsolated,
    /// `network = "host"`.
    HostNetwork,
    /// Isolated network and Landlock scopes.
    NetIsolatedWithScopes,
    /// Every TCP layer `network` asks for is in place (Landlock TCP, or
    /// `loopback`, which does not want it).
    TcpLayers,
    /// See [`Facts::protect_listed`].
    ProtectListed,
    /// The workspace is an overlay layer.
    Overlay,
}

impl When {
    fn holds(self, f: &Facts) -> bool {
        match self {
            When::Always => true,
            When::Landlock => f.abi > 0,
            When::LandlockTcp => f.landlock_tcp,
            When::LandlockTcpAll => f.landlock_tcp && !f.publish && f.network != NetMode::Proxy,
            When::LandlockTcpPorts => f.landlock_tcp && (f.publish || f.network == NetMode::Proxy),
            When::Proxy => f.network == NetMode::Proxy,
            When::NoProxy => f.network != NetMode::Proxy,
            When::Publish => f.publish,
            When::Scopes => f.landlock_scopes,
            When::NetIsolated => f.net_isolated,
            When::HostNetwork => !f.net_isolated,
            When::NetIsolatedWithScopes => f.net_isolated && f.landlock_scopes,
            When::TcpLayers => f.landlock_tcp || f.network == NetMode::Loopback,
            When::ProtectListed => f.protect_listed,
            When::Overlay => f.overlay,
        }
    }
}

/// How a row's strength follows from the facts.
#[derive(Clone, Copy)]
enum Rule {
    Always(Strength),
    /// Full when the second layer is there, else partial.
    SecondLayer(When),
    /// The first strength when the condition holds, else the second.
    If(When, Strength, Strength),
}

/// One mechanism of a row, listed when its condition holds. `Landlock` texts
/// are shown as `landlock (abi N) TEXT`.
#[derive(Clone, Copy)]
enum Mech {
    Plain(&'static str, When),
    Landlock(&'static str, When),
}

/// One row of the design's table for one tier.
struct Row {
    guarantee: Guarantee,
    rule: Rule,
    mechanisms: &'static [Mech],
    note: Option<&'static str>,
    /// `network = "host"` waives this guarantee (the row then lists nothing).
    waived_by_host_network: bool,
}

impl Row {
    fn evaluate(&self, f: &Facts) -> Enforcement {
        if self.waived_by_host_network && !f.net_isolated {
            return Enforcement {
                guarantee: self.guarantee,
                status: Strength::Waived,
                mechanisms: vec![],
                note: Some("network = host".into()),
            };
        }
        let status = match self.rule {
            Rule::Always(s) => s,
            Rule::SecondLayer(w) if w.holds(f) => Strength::Full,
            Rule::SecondLayer(_) => Strength::Partial,
            Rule::If(w, yes, no) => {
                if w.holds(f) {
                    yes
                } else {
                    no
                }
            }
        };
        let mechanisms = self
            .mechanisms
            .iter()
            .filter_map(|m| match *m {
                Mech::Plain(text, w) => w.holds(f).then(|| text.to_string()),
                Mech::Landlock(text, w) => w
                    .holds(f)
                    .then(|| format!("landlock (abi {}) {text}", f.abi)),
            })
            .collect();
        Enforcement {
            guarantee: self.guarantee,
            status,
            mechanisms,
            note: self.note.map(String::from),
        }
    }
}

use Mech::{Landlock as Ll, Plain};
use When::Always as A;

/// Rows of every tier that are the same in both.
const KERNEL_SURFACE: Row = Row {
    guarantee: Guarantee::KernelSurface,
    rule: Rule::Always(Strength::Full),
    mechanisms: &[Plain("seccomp filter (arch checked, x32 refused)", A)],
    note: None,
    waived_by_host_network: false,
};
const CLEAN_ENVIRONMENT: Row = Row {
    guarantee: Guarantee::CleanEnvironment,
    rule: Rule::Always(Strength::Full),
    mechanisms: &[Plain(
        "environment allowlist; secret-looking names dropped",
        A,
    )],
    note: None,
    waived_by_host_network: false,
};
const NO_TERMINAL_INJECTION: Row = Row {
    guarantee: Guarantee::NoTerminalInjection,
    rule: Rule::Always(Strength::Full),
    mechanisms: &[
        Plain("setsid", A),
        Plain("seccomp denies TIOCSTI/TIOCLINUX", A),
    ],
    note: None,
    waived_by_host_network: false,
};

/// The namespaces tier.
const NAMESPACES: [Row; 13] = [
    Row {
        guarantee: Guarantee::FilesystemView,
        rule: Rule::SecondLayer(When::Landlock),
        mechanisms: &[
            Plain("mount namespace + pivot_root", A),
            Ll("filesystem allowlist", When::Landlock),
        ],
        note: None,
        waived_by_host_network: false,
    },
    Row {
        guarantee: Guarantee::SecretsHidden,
        rule: Rule::Always(Strength::Full),
        mechanisms: &[Plain("not mounted, or masked by a read-only bind", A)],
        note: Some("landlock cannot carve secrets out of a visible tree; masks do"),
        waived_by_host_network: false,
    },
    Row {
        guarantee: Guarantee::ProtectedPaths,
        rule: Rule::If(When::ProtectListed, Strength::Full, Strength::Waived),
        mechanisms: &[Plain(
            "read-only bind mounts (placeholders when missing, removed at exit)",
            A,
        )],
        note: None,
        waived_by_host_network: false,
    },
    Row {
        guarantee: Guarantee::NoNetwork,
        rule: Rule::SecondLayer(When::TcpLayers),
        mechanisms: &[
            Plain("network namespace (loopback only)", When::NoProxy),
            Plain(
                "network namespace (loopback and the proxy's listeners only)",
                When::Proxy,
            ),
            Plain(
                "egress only through shellcage's allowlist proxy: a separate process in the host's namespace (no filesystem, seccomp allowlist, no capabilities) that resolves names itself and refuses private addresses",
                When::Proxy,
            ),
            Plain(
                "published ports forwarded from the host's loopback by shellcage",
                When::Publish,
            ),
            Plain("seccomp socket families", A),
            Ll("tcp bind/connect denied", When::LandlockTcpAll),
            Ll(
                "tcp bind/connect only on the proxy's and published ports",
                When::LandlockTcpPorts,
            ),
        ],
        note: None,
        waived_by_host_network: true,
    },
    Row {
        guarantee: Guarantee::HostIpc,
        rule: Rule::SecondLayer(When::NetIsolatedWithScopes),
        mechanisms: &[
            Plain("network namespace (abstract sockets)", When::NetIsolated),
            Plain(
                "no network namespace: abstract sockets shared",
                When::HostNetwork,
            ),
            Plain("ipc namespace", A),
            Plain("host sockets not mounted", A),
            Ll("abstract unix socket scope", When::Scopes),
        ],
        note: None,
        waived_by_host_network: false,
    },
    Row {
        guarantee: Guarantee::Processes,
        rule: Rule::SecondLayer(When::Scopes),
        mechanisms: &[
            Plain("pid namespace + fresh /proc", A),
            Plain("seccomp denies ptrace", A),
            Ll("signal scope", When::Scopes),
        ],
        note: None,
        waived_by_host_network: false,
    },
    Row {
        guarantee: Guarantee::NoPrivilege,
        rule: Rule::Always(Strength::Full),
        mechanisms: &[
            Plain("user namespace", A),
            Plain("all capability sets cleared", A),
            Plain("no_new_privs", A),
            Plain("seccomp deny list", A),
        ],
        note: None,
        waived_by_host_network: false,
    },
    KERNEL_SURFACE,
    CLEAN_ENVIRONMENT,
    NO_TERMINAL_INJECTION,
    Row {
        guarantee: Guarantee::Limits,
        rule: Rule::Always(Strength::Full),
        mechanisms: &[
            Plain("rlimits (core, nofile, fsize)", A),
            Plain("size-capped tmpfs /tmp and $HOME", A),
        ],
        note: None,
        waived_by_host_network: false,
    },
    Row {
        guarantee: Guarantee::NothingOutlives,
        rule: Rule::Always(Strength::Full),
        mechanisms: &[
            Plain("pid namespace init kills all on exit", A),
            Plain("PDEATHSIG", A),
        ],
        note: None,
        waived_by_host_network: false,
    },
    Row {
        guarantee: Guarantee::ReversibleWorkspace,
        rule: Rule::If(When::Overlay, Strength::Full, Strength::Waived),
        mechanisms: &[Plain(
            "overlayfs layer in the sandbox's user and mount namespace (the host workspace changes only by 'shellcage apply')",
            When::Overlay,
        )],
        note: None,
        waived_by_host_network: false,
    },
];

/// The container tier: Landlock, seccomp and no_new_privs, no namespaces.
const CONTAINER: [Row; 13] = [
    Row {
        guarantee: Guarantee::FilesystemView,
        rule: Rule::Always(Strength::Partial),
        mechanisms: &[
            Ll("filesystem allowlist", A),
            Plain(
                "per-run $HOME and $TMPDIR (created and removed by the supervisor)",
                A,
            ),
        ],
        note: Some(
            "paths outside the allowlist still exist (stat and path walks work) but cannot be read or written; /tmp is the host's, shared read-write",
        ),
        waived_by_host_network: false,
    },
    Row {
        guarantee: Guarantee::SecretsHidden,
        rule: Rule::Always(Strength::Partial),
        mechanisms: &[Ll(
            "hidden paths left out of the allowlist (read-only trees granted entry by entry)",
            A,
        )],
        note: Some(
            ".env files in the workspace stay readable; a hidden path inside a writable tree refuses to run",
        ),
        waived_by_host_network: false,
    },
    Row {
        guarantee: Guarantee::ProtectedPaths,
        rule: Rule::Always(Strength::NotEnforced),
        mechanisms: &[],
        note: Some("landlock cannot make a subpath of a writable tree read-only"),
        waived_by_host_network: false,
    },
    Row {
        guarantee: Guarantee::NoNetwork,
        rule: Rule::Always(Strength::Full),
        mechanisms: &[
            Plain("seccomp refuses AF_INET/AF_INET6 sockets", A),
            Ll("tcp bind/connect denied", When::LandlockTcp),
        ],
        note: None,
        waived_by_host_network: true,
    },
    Row {
        guarantee: Guarantee::HostIpc,
        rule: Rule::If(When::Scopes, Strength::Partial, Strength::NotEnforced),
        mechanisms: &[Ll("abstract unix socket scope", When::Scopes)],
        note: Some(
            "pathname unix sockets (docker.sock, D-Bus, ssh-agent, the systemd user manager) stay reachable: landlock below abi 9 does not check connect(2); no ipc namespace",
        ),
        waived_by_host_network: false,
    },
    Row {
        guarantee: Guarantee::Processes,
        rule: Rule::Always(Strength::Partial),
        mechanisms: &[
            Plain("seccomp denies ptrace", A),
            Plain(
                "landlock: /proc/PID/environ, mem and ptrace of outside processes refused",
                A,
            ),
            Ll("signal scope", When::Scopes),
        ],
        note: Some("no pid namespace: host processes are visible in /proc (cmdline, status)"),
        waived_by_host_network: false,
    },
    Row {
        guarantee: Guarantee::NoPrivilege,
        rule: Rule::Always(Strength::Full),
        mechanisms: &[
            Plain("no_new_privs", A),
            Plain("capability sets cleared", A),
            Plain("seccomp deny list", A),
        ],
        note: None,
        waived_by_host_network: false,
    },
    KERNEL_SURFACE,
    CLEAN_ENVIRONMENT,
    NO_TERMINAL_INJECTION,
    Row {
        guarantee: Guarantee::Limits,
        rule: Rule::Always(Strength::Full),
        mechanisms: &[Plain("rlimits (core, nofile, fsize)", A)],
        note: Some(
            "no tmpfs caps: $HOME and $TMPDIR live on the host's temp filesystem, bounded only by file_size per file",
        ),
        waived_by_host_network: false,
    },
    Row {
        guarantee: Guarantee::NothingOutlives,
        rule: Rule::Always(Strength::Partial),
        mechanisms: &[
            Plain("child subreaper: every descendant killed on exit", A),
            Plain("PDEATHSIG", A),
        ],
        note: Some(
            "if shellcage itself is SIGKILLed, descendants that left the process group survive; processes started through a reachable daemon are not descendants",
        ),
        waived_by_host_network: false,
    },
    Row {
        guarantee: Guarantee::ReversibleWorkspace,
        rule: Rule::If(When::Overlay, Strength::NotEnforced, Strength::Waived),
        mechanisms: &[],
        note: Some("no mount namespace: an overlay workspace refuses to run"),
        waived_by_host_network: false,
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::*;
    use crate::probe::CgroupLimit;
    use std::path::{Path, PathBuf};

    /// [`Policy::for_tests`] with `.git/hooks` protected.
    pub(crate) fn policy() -> Policy {
        let mut p = Policy::for_tests(Path::new("/w"), Path::new("/home/u"));
        p.protect = vec![PathBuf::from(".git/hooks")];
        p
    }

    fn features(abi: u32) -> Features {
        Features {
            landlock_abi: abi,
            arch_supported: true,
            ..Features::default()
        }
    }

    /// `f` after a failed user namespace clone.
    fn no_userns(mut f: Features) -> Features {
        f.userns = Userns::Fails {
            missing: "user namespaces are not available".into(),
            hint: "a hint".into(),
        };
        f
    }

    fn status(p: &Plan, g: Guarantee) -> Strength {
        p.enforcement
            .iter()
            .find(|e| e.guarantee == g)
            .unwrap()
            .status
    }

    #[test]
    fn guarantee_table_follows_the_declaration() {
        for (i, (g, id, name)) in GUARANTEES.iter().enumerate() {
            assert_eq!(*g as usize, i, "{id}");
            assert_eq!((g.id(), g.name()), (*id, *name));
            assert_eq!(serde_json::to_value(g).unwrap(), *id);
        }
        assert_eq!(NAMESPACES.map(|r| r.guarantee), Guarantee::ALL);
        assert_eq!(CONTAINER.map(|r| r.guarantee), Guarantee::ALL);
    }

    #[test]
    fn full_kernel_enforces_everything() {
        let mut pol = policy();
        pol.workspace_layer = Some("default".into());
        let p = plan(&pol, &features(7)).unwrap();
        assert_eq!(p.tier, Tier::Namespaces);
        assert!(p.new_netns && p.landlock_tcp && p.landlock_scopes && p.seccomp_allow_inet);
        for g in Guarantee::ALL {
            assert_eq!(status(&p, g), Strength::Full, "{g:?}");
        }
    }

    #[test]
    fn gpu_adds_its_nodes_to_the_view_and_its_drivers_to_the_surface() {
        let mut pol = policy();
        let without = plan(&pol, &features(7)).unwrap();
        assert_eq!(status(&without, Guarantee::KernelSurface), Strength::Full);
        pol.devices.gpu = true;
        let p = plan(&pol, &features(7)).unwrap();
        let row = |p: &Plan, g: Guarantee| {
            p.enforcement
                .iter()
                .find(|e| e.guarantee == g)
                .unwrap()
                .clone()
        };
        assert_eq!(status(&p, Guarantee::KernelSurface), Strength::Partial);
        assert!(
            row(&p, Guarantee::KernelSurface)
                .note
                .unwrap()
                .contains("ioctl")
        );
        let fs = row(&p, Guarantee::FilesystemView);
        assert_eq!(fs.status, Strength::Full);
        assert!(
            fs.mechanisms
                .iter()
                .any(|m| m.contains("GPU device nodes bound")),
            "{fs:?}"
        );
        assert!(
            fs.mechanisms
                .iter()
                .any(|m| m
                    == "landlock (abi 7) read, write and ioctl on exactly the GPU device nodes"),
            "{fs:?}"
        );
        // Below abi 5 Landlock cannot check ioctl: said so.
        let old = plan(&pol, &features(4)).unwrap();
        assert!(
            row(&old, Guarantee::FilesystemView)
                .mechanisms
                .iter()
                .any(|m| m.contains("ioctl is not checked below abi 5"))
        );
        // The container tier: Landlock alone.
        let mut c = pol.clone();
        c.tier = TierChoice::Container;
        let p = plan(&c, &features(7)).unwrap();
        let fs = row(&p, Guarantee::FilesystemView);
        assert!(
            !fs.mechanisms.iter().any(|m| m.contains("bound into /dev")),
            "{fs:?}"
        );
        assert!(
            fs.mechanisms
                .iter()
                .any(|m| m.contains("ioctl on exactly the GPU device nodes")),
            "{fs:?}"
        );
        assert_eq!(status(&p, Guarantee::KernelSurface), Strength::Partial);
    }

    #[test]
    fn old_landlock_is_partial_not_refused() {
        let p = plan(&policy(), &features(1)).unwrap();
        assert!(!p.landlock_tcp && !p.landlock_scopes);
        assert_eq!(status(&p, Guarantee::NoNetwork), Strength::Partial);
        assert_eq!(status(&p, Guarantee::FilesystemView), Strength::Full);
    }

    #[test]
    fn required_landlock_missing_refuses() {
        let err = plan(&policy(), &features(0)).unwrap_err();
        assert!(
            err.to_string().contains("Landlock is not available"),
            "{err}"
        );
        let mut pol = policy();
        pol.landlock = Requirement::BestEffort;
        let p = plan(&pol, &features(0)).unwrap();
        assert_eq!(status(&p, Guarantee::FilesystemView), Strength::Partial);
    }

    #[test]
    fn full_tier_without_userns_refuses_and_auto_falls_back() {
        let err = plan(&policy(), &no_userns(features(7))).unwrap_err();
        assert!(err.to_string().contains("user namespaces"), "{err}");
        let mut pol = policy();
        pol.tier = TierChoice::Auto;
        let p = plan(&pol, &no_userns(features(7))).unwrap();
        assert_eq!(p.tier, Tier::Container);
        assert!(!p.seccomp_allow_inet && !p.new_netns);
        assert_eq!(status(&p, Guarantee::ProtectedPaths), Strength::NotEnforced);
    }

    #[test]
    fn an_overlay_workspace_needs_the_namespaces_tier_and_linux_5_11() {
        use crate::probe::KernelVersion;
        let p = plan(&policy(), &features(7)).unwrap();
        assert_eq!(status(&p, Guarantee::ReversibleWorkspace), Strength::Waived);
        let mut pol = policy();
        pol.workspace_layer = Some("default".into());
        let mut f = features(7);
        f.kernel = Some(KernelVersion::parse("5.11.0"));
        let p = plan(&pol, &f).unwrap();
        assert_eq!(status(&p, Guarantee::ReversibleWorkspace), Strength::Full);
        // Kernel not read (the launch path reads it only for overlays): no refusal here.
        assert!(plan(&pol, &features(7)).is_ok());
        f.kernel = Some(KernelVersion::parse("5.10.0-28-amd64"));
        let err = plan(&pol, &f).unwrap_err();
        assert_eq!(err.guarantee, Guarantee::ReversibleWorkspace);
        assert!(
            err.missing.contains("Linux 5.11") && err.missing.contains("5.10.0-28-amd64"),
            "{err}"
        );
        assert!(err.hint.contains("--overlay"), "{err}");
        // The container tier, chosen or fallen back to: refused, never the host.
        for (tier, feats) in [
            (TierChoice::Container, features(7)),
            (TierChoice::Auto, no_userns(features(7))),
        ] {
            pol.tier = tier;
            let err = plan(&pol, &feats).unwrap_err();
            assert_eq!(err.guarantee, Guarantee::ReversibleWorkspace);
            assert!(
                err.to_string()
                    .contains("container tier has no mount namespace"),
                "{err}"
            );
        }
        assert_eq!(
            KernelVersion::parse("6.18.44-fc"),
            KernelVersion {
                release: "6.18.44-fc".into(),
                major: 6,
                minor: 18
            }
        );
        assert!(!KernelVersion::parse("garbage").at_least(5, 11));
    }

    #[test]
    fn unsupported_arch_refuses() {
        let f = Features {
            landlock_abi: 7,
            arch_supported: false,
            ..Features::default()
        };
        assert!(plan(&policy(), &f).is_err());
    }

    #[test]
    fn host_network_is_waived_and_loopback_skips_landlock_tcp() {
        let mut pol = policy();
        pol.network = NetMode::Host;
        let p = plan(&pol, &features(7)).unwrap();
        assert!(!p.new_netns && !p.landlock_tcp);
        assert_eq!(status(&p, Guarantee::NoNetwork), Strength::Waived);
        pol.network = NetMode::Loopback;
        let p = plan(&pol, &features(7)).unwrap();
        assert!(p.new_netns && !p.landlock_tcp);
        assert_eq!(status(&p, Guarantee::NoNetwork), Strength::Full);
    }

    fn cgroup(
        resource: Resource,
        limit: &str,
        mechanism: Option<&str>,
        gap: Option<&str>,
    ) -> CgroupLimit {
        CgroupLimit {
            resource,
            limit: limit.into(),
            mechanism: mechanism.map(String::from),
            gap: gap.map(|r| Gap {
                reason: r.into(),
                hint: format!("fix {limit}"),
            }),
        }
    }

    fn limits_row(p: &Plan) -> &Enforcement {
        p.enforcement
            .iter()
            .find(|e| e.guarantee == Guarantee::Limits)
            .unwrap()
    }

    #[test]
    fn cgroup_limits_are_named_on_the_limits_row() {
        let mut pol = policy();
        pol.limits.memory = Some(4 << 30);
        pol.limits.processes = Some(512);
        let mut f = features(7);
        f.cgroup_limits = vec![
            cgroup(
                Resource::Memory,
                "memory limit 4 GiB",
                Some("cgroup v1 memory.limit_in_bytes"),
                None,
            ),
            cgroup(
                Resource::Processes,
                "process limit 512",
                Some("cgroup v1 pids.max"),
                None,
            ),
        ];
        let p = plan(&pol, &f).unwrap();
        let row = limits_row(&p);
        assert_eq!(row.status, Strength::Full);
        assert!(
            row.mechanisms
                .contains(&"cgroup v1 memory.limit_in_bytes (memory limit 4 GiB)".to_string()),
            "{row:?}"
        );
        assert!(
            row.mechanisms
                .contains(&"cgroup v1 pids.max (process limit 512)".to_string()),
            "{row:?}"
        );
        assert!(!p.rlimit_nproc, "root, or a kernel before 5.14");
    }

    #[test]
    fn a_required_limit_that_cannot_hold_refuses_naming_each() {
        let mut pol = policy();
        pol.limits.memory = Some(64 << 20);
        pol.limits.cpu_millis = Some(500);
        let mut f = features(7);
        f.cgroup_limits = vec![
            cgroup(
                Resource::Memory,
                "memory limit 64 MiB",
                None,
                Some("not writable by uid 1001"),
            ),
            cgroup(
                Resource::Cpu,
                "cpu limit 0.5 cores",
                None,
                Some("no cpu controller"),
            ),
        ];
        let err = plan(&pol, &f).unwrap_err();
        assert_eq!(err.guarantee, Guarantee::Limits);
        assert_eq!(
            err.to_string(),
            "cannot enforce 'bounded resources': memory limit 64 MiB: not writable by uid 1001; cpu limit 0.5 cores: no cpu controller (hint: fix memory limit 64 MiB)"
        );
        // Best effort: the run goes ahead, the row is partial and says why.
        pol.limits.mode = Requirement::BestEffort;
        let p = plan(&pol, &f).unwrap();
        let row = limits_row(&p);
        assert_eq!(row.status, Strength::Partial);
        let note = row.note.as_deref().unwrap();
        assert!(note.contains("not enforced: memory limit 64 MiB: not writable by uid 1001 (hint: fix memory limit 64 MiB)"), "{note}");
        assert!(note.contains("not enforced: cpu limit 0.5 cores"), "{note}");
        // A flag makes its own limit required again, the profile's stay best effort.
        pol.limits.from_command_line = vec![Resource::Cpu];
        let err = plan(&pol, &f).unwrap_err().to_string();
        assert!(
            err.contains("cpu limit 0.5 cores: no cpu controller") && !err.contains("memory"),
            "{err}"
        );
    }

    #[test]
    fn processes_are_held_by_rlimit_nproc_in_the_sandboxs_user_namespace() {
        let mut pol = policy();
        pol.limits.processes = Some(4096);
        let mut f = features(7);
        f.nproc_per_userns = true;
        f.cgroup_limits = vec![cgroup(
            Resource::Processes,
            "process limit 4096",
            None,
            Some("v1 belongs to root"),
        )];
        let p = plan(&pol, &f).unwrap();
        assert!(p.rlimit_nproc);
        let row = limits_row(&p);
        assert_eq!(row.status, Strength::Full, "{row:?}");
        assert_eq!(
            row.mechanisms.last().unwrap(),
            "RLIMIT_NPROC in the sandbox's user namespace (process limit 4096)"
        );
        // The container tier has no user namespace of its own: RLIMIT_NPROC
        // would count the user's every process, so only a cgroup holds it.
        pol.tier = TierChoice::Container;
        let err = plan(&pol, &f).unwrap_err().to_string();
        assert!(
            err.contains("process limit 4096: v1 belongs to root"),
            "{err}"
        );
        pol.limits.mode = Requirement::BestEffort;
        let p = plan(&pol, &f).unwrap();
        assert!(!p.rlimit_nproc);
        assert_eq!(limits_row(&p).status, Strength::Partial);
    }

    #[test]
    fn swap_beyond_a_memory_limit_is_a_gap() {
        let mut pol = policy();
        pol.limits.memory = Some(1 << 30);
        let mut f = features(7);
        f.cgroup_limits = vec![cgroup(
            Resource::Memory,
            "memory limit 1 GiB",
            Some("cgroup v1 memory.limit_in_bytes"),
            Some("swap is on and not capped with it: swap accounting is off"),
        )];
        let err = plan(&pol, &f).unwrap_err().to_string();
        assert!(err.contains("memory limit 1 GiB: swap is on"), "{err}");
        pol.limits.mode = Requirement::BestEffort;
        let p = plan(&pol, &f).unwrap();
        let row = limits_row(&p);
        assert_eq!(row.status, Strength::Partial);
        assert!(
            row.note
                .as_deref()
                .unwrap()
                .starts_with("partly enforced: memory limit 1 GiB"),
            "{row:?}"
        );
        assert!(
            row.mechanisms
                .iter()
                .any(|m| m.starts_with("cgroup v1 memory.limit_in_bytes"))
        );
    }

    #[test]
    fn a_limit_nobody_looked_up_is_not_trusted() {
        let mut pol = policy();
        pol.limits.cpu_millis = Some(1000);
        let err = plan(&pol, &features(7)).unwrap_err().to_string();
        assert!(
            err.contains("cpu limit: the host's cgroups were not examined"),
            "{err}"
        );
    }

    #[test]
    fn proxy_mode_keeps_the_namespace_and_landlock_ports() {
        let mut pol = policy();
        pol.network = NetMode::Proxy;
        let p = plan(&pol, &features(7)).unwrap();
        assert!(p.new_netns && p.landlock_tcp && p.proxy && p.seccomp_allow_inet);
        assert_eq!(status(&p, Guarantee::NoNetwork), Strength::Full);
        let row = p
            .enforcement
            .iter()
            .find(|e| e.guarantee == Guarantee::NoNetwork)
            .unwrap();
        assert!(
            row.mechanisms.iter().any(|m| m.contains("allowlist proxy")),
            "{row:?}"
        );
        assert!(
            row.mechanisms
                .iter()
                .any(|m| m.ends_with("tcp bind/connect only on the proxy's and published ports")),
            "{row:?}"
        );
        let p = plan(&pol, &features(3)).unwrap();
        assert_eq!(status(&p, Guarantee::NoNetwork), Strength::Partial);
        // No network namespace, no proxy: the container tier refuses, naming why.
        pol.tier = TierChoice::Auto;
        let err = plan(&pol, &no_userns(features(7))).unwrap_err();
        assert_eq!(err.guarantee, Guarantee::NoNetwork);
        assert!(err.missing.contains("needs a network namespace"), "{err}");
        pol.network = NetMode::None;
        pol.publish = vec![Publish {
            host: "127.0.0.1".parse().unwrap(),
            port: 8080,
            sandbox_port: 8080,
        }];
        let err = plan(&pol, &no_userns(features(7))).unwrap_err();
        assert!(err.missing.starts_with("--publish needs"), "{err}");
        let p = plan(&pol, &features(7)).unwrap();
        assert!(!p.proxy && p.landlock_tcp);
    }
}

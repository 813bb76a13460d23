//! Policy + kernel features → Plan: which mechanism enforces each guarantee,
//! or a refusal naming what is missing.
//!
//! Pure data in, pure data out: unit tested without privileges.

use serde::Serialize;

use crate::policy::{Access, NetMode, Policy, Requirement, TierChoice};
use crate::probe::Features;

/// The guarantees of the design's contract, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
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
}

impl Guarantee {
    pub const ALL: [Guarantee; 12] = [
        Guarantee::FilesystemView,
        Guarantee::SecretsHidden,
        Guarantee::ProtectedPaths,
        Guarantee::NoNetwork,
        Guarantee::HostIpc,
        Guarantee::Processes,
        Guarantee::NoPrivilege,
        Guarantee::KernelSurface,
        Guarantee::CleanEnvironment,
        Guarantee::NoTerminalInjection,
        Guarantee::Limits,
        Guarantee::NothingOutlives,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Guarantee::FilesystemView => "filesystem view",
            Guarantee::SecretsHidden => "secrets hidden",
            Guarantee::ProtectedPaths => "protected paths",
            Guarantee::NoNetwork => "no network egress",
            Guarantee::HostIpc => "host ipc unreachable",
            Guarantee::Processes => "host processes invisible",
            Guarantee::NoPrivilege => "no privilege",
            Guarantee::KernelSurface => "kernel attack surface",
            Guarantee::CleanEnvironment => "clean environment",
            Guarantee::NoTerminalInjection => "no terminal injection",
            Guarantee::Limits => "bounded resources",
            Guarantee::NothingOutlives => "nothing outlives the command",
        }
    }
}

/// How strongly a guarantee holds on this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
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
    pub status: Status,
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

/// The mechanism choice for one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub tier: Tier,
    /// Create a network namespace (false only for `network = "host"`).
    pub new_netns: bool,
    /// Landlock ABI used (0 = none).
    pub landlock_abi: u32,
    /// Apply Landlock TCP bind/connect denial.
    pub landlock_tcp: bool,
    /// Apply the Landlock abstract-unix-socket and signal scopes.
    pub landlock_scopes: bool,
    /// Let seccomp allow AF_INET/AF_INET6 sockets.
    pub seccomp_allow_inet: bool,
    pub enforcement: Vec<Enforcement>,
}

/// Why a run cannot go ahead: one guarantee, the missing mechanism, the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot enforce '{guarantee}': {missing} (hint: {hint})")]
pub struct Refusal {
    pub guarantee: &'static str,
    pub missing: String,
    pub hint: String,
}

const LANDLOCK_HINT: &str = "enable Landlock (CONFIG_SECURITY_LANDLOCK=y and 'landlock' in the lsm= boot parameter), or set [landlock] mode = \"best-effort\" in the profile; see 'shellcage doctor'";

/// Choose mechanisms for `policy` on a kernel with `features`.
///
/// `userns_ok` says whether namespaces can be created here (false after a
/// failed attempt, or when the profile asks for the container tier).
pub fn plan(policy: &Policy, features: &Features, userns_ok: bool) -> Result<Plan, Refusal> {
    if !features.arch_supported {
        return Err(Refusal {
            guarantee: Guarantee::KernelSurface.name(),
            missing: format!(
                "no seccomp filter for architecture {}",
                std::env::consts::ARCH
            ),
            hint: "shellcage supports x86_64 and aarch64".into(),
        });
    }
    let tier = match (policy.tier, userns_ok) {
        (TierChoice::Container, _) => Tier::Container,
        (_, true) => Tier::Namespaces,
        (TierChoice::Auto, false) => Tier::Container,
        (TierChoice::Full, false) => {
            return Err(Refusal {
                guarantee: Guarantee::FilesystemView.name(),
                missing: "user namespaces are not available".into(),
                hint: features.userns_hint(),
            });
        }
    };
    let abi = features.landlock_abi;
    let landlock_required = policy.landlock == Requirement::Required || tier == Tier::Container;
    if abi == 0 && landlock_required {
        let missing = if tier == Tier::Container {
            "Landlock is not available and the container tier has no other filesystem isolation"
        } else {
            "Landlock is not available on this kernel"
        };
        return Err(Refusal {
            guarantee: Guarantee::FilesystemView.name(),
            missing: missing.into(),
            hint: LANDLOCK_HINT.into(),
        });
    }
    let net_isolated = policy.network != NetMode::Host;
    let landlock_tcp =
        abi >= 4 && (policy.network == NetMode::None || (tier == Tier::Container && net_isolated));
    let landlock_scopes = abi >= 6;
    let seccomp_allow_inet = !(tier == Tier::Container && net_isolated);
    if tier == Tier::Container && net_isolated && abi < 4 {
        // seccomp refuses inet sockets altogether here, so TCP and UDP are still
        // denied; Landlock TCP would only be a second layer.
        tracing::debug!(
            abi,
            "landlock tcp rules unavailable in container tier; seccomp socket filter only"
        );
    }

    let ll = |what: &str| format!("landlock (abi {abi}) {what}");
    let mut rows = Vec::new();
    let mut push = |guarantee, status, mechanisms: Vec<String>, note: Option<String>| {
        rows.push(Enforcement {
            guarantee,
            status,
            mechanisms,
            note,
        });
    };
    let second = |present: bool| {
        if present {
            Status::Full
        } else {
            Status::Partial
        }
    };

    match tier {
        Tier::Namespaces => {
            push(
                Guarantee::FilesystemView,
                second(abi > 0),
                with(
                    vec!["mount namespace + pivot_root".into()],
                    abi > 0,
                    ll("filesystem allowlist"),
                ),
                None,
            );
            push(
                Guarantee::SecretsHidden,
                Status::Full,
                vec!["not mounted, or masked by a read-only bind".into()],
                Some("landlock cannot carve secrets out of a visible tree; masks do".into()),
            );
            let protect_status =
                if policy.workspace_access == Access::Read || !policy.protect.is_empty() {
                    Status::Full
                } else {
                    Status::Waived
                };
            push(
                Guarantee::ProtectedPaths,
                protect_status,
                vec!["read-only bind mounts (placeholders when missing, removed at exit)".into()],
                None,
            );
            if net_isolated {
                let mut m = vec![
                    "network namespace (loopback only)".into(),
                    "seccomp socket families".into(),
                ];
                if landlock_tcp {
                    m.push(ll("tcp bind/connect denied"));
                }
                let status = if policy.network == NetMode::None {
                    second(landlock_tcp)
                } else {
                    Status::Full
                };
                push(Guarantee::NoNetwork, status, m, None);
            } else {
                push(
                    Guarantee::NoNetwork,
                    Status::Waived,
                    vec![],
                    Some("network = host".into()),
                );
            }
            push(
                Guarantee::HostIpc,
                if net_isolated {
                    second(landlock_scopes)
                } else {
                    Status::Partial
                },
                with(
                    vec![
                        if net_isolated {
                            "network namespace (abstract sockets)"
                        } else {
                            "no network namespace: abstract sockets shared"
                        }
                        .into(),
                        "ipc namespace".into(),
                        "host sockets not mounted".into(),
                    ],
                    landlock_scopes,
                    ll("abstract unix socket scope"),
                ),
                None,
            );
            push(
                Guarantee::Processes,
                second(landlock_scopes),
                with(
                    vec![
                        "pid namespace + fresh /proc".into(),
                        "seccomp denies ptrace".into(),
                    ],
                    landlock_scopes,
                    ll("signal scope"),
                ),
                None,
            );
            push(
                Guarantee::NoPrivilege,
                Status::Full,
                vec![
                    "user namespace".into(),
                    "all capability sets cleared".into(),
                    "no_new_privs".into(),
                    "seccomp deny list".into(),
                ],
                None,
            );
        }
        Tier::Container => {
            push(
                Guarantee::FilesystemView,
                Status::Partial,
                vec![
                    ll("filesystem allowlist"),
                    "per-run $HOME and $TMPDIR (created and removed by the supervisor)".into(),
                ],
                Some(
                    "paths outside the allowlist still exist (stat and path walks work) but cannot be read or written; /tmp is the host's, shared read-write"
                        .into(),
                ),
            );
            push(
                Guarantee::SecretsHidden,
                Status::Partial,
                vec![ll(
                    "hidden paths left out of the allowlist (read-only trees granted entry by entry)",
                )],
                Some(
                    ".env files in the workspace stay readable; a hidden path inside a writable tree refuses to run"
                        .into(),
                ),
            );
            push(
                Guarantee::ProtectedPaths,
                Status::NotEnforced,
                vec![],
                Some("landlock cannot make a subpath of a writable tree read-only".into()),
            );
            if net_isolated {
                push(
                    Guarantee::NoNetwork,
                    Status::Full,
                    with(
                        vec!["seccomp refuses AF_INET/AF_INET6 sockets".into()],
                        landlock_tcp,
                        ll("tcp bind/connect denied"),
                    ),
                    None,
                );
            } else {
                push(
                    Guarantee::NoNetwork,
                    Status::Waived,
                    vec![],
                    Some("network = host".into()),
                );
            }
            push(
                Guarantee::HostIpc,
                if landlock_scopes {
                    Status::Partial
                } else {
                    Status::NotEnforced
                },
                with(vec![], landlock_scopes, ll("abstract unix socket scope")),
                Some(
                    "pathname unix sockets (docker.sock, D-Bus, ssh-agent, the systemd user manager) stay reachable: landlock below abi 9 does not check connect(2); no ipc namespace"
                        .into(),
                ),
            );
            push(
                Guarantee::Processes,
                Status::Partial,
                with(
                    vec![
                        "seccomp denies ptrace".into(),
                        "landlock: /proc/PID/environ, mem and ptrace of outside processes refused"
                            .into(),
                    ],
                    landlock_scopes,
                    ll("signal scope"),
                ),
                Some(
                    "no pid namespace: host processes are visible in /proc (cmdline, status)"
                        .into(),
                ),
            );
            push(
                Guarantee::NoPrivilege,
                Status::Full,
                vec![
                    "no_new_privs".into(),
                    "capability sets cleared".into(),
                    "seccomp deny list".into(),
                ],
                None,
            );
        }
    }
    push(
        Guarantee::KernelSurface,
        Status::Full,
        vec!["seccomp filter (arch checked, x32 refused)".into()],
        None,
    );
    push(
        Guarantee::CleanEnvironment,
        Status::Full,
        vec!["environment allowlist; secret-looking names dropped".into()],
        None,
    );
    push(
        Guarantee::NoTerminalInjection,
        Status::Full,
        vec!["setsid".into(), "seccomp denies TIOCSTI/TIOCLINUX".into()],
        None,
    );
    push(
        Guarantee::Limits,
        Status::Full,
        with(
            vec!["rlimits (core, nofile, fsize)".into()],
            tier == Tier::Namespaces,
            "size-capped tmpfs /tmp and $HOME".into(),
        ),
        (tier == Tier::Container).then(|| {
            "no tmpfs caps: $HOME and $TMPDIR live on the host's temp filesystem, bounded only by file_size per file".into()
        }),
    );
    push(
        Guarantee::NothingOutlives,
        if tier == Tier::Namespaces {
            Status::Full
        } else {
            Status::Partial
        },
        match tier {
            Tier::Namespaces => vec![
                "pid namespace init kills all on exit".into(),
                "PDEATHSIG".into(),
            ],
            Tier::Container => vec![
                "child subreaper: every descendant killed on exit".into(),
                "PDEATHSIG".into(),
            ],
        },
        (tier == Tier::Container).then(|| {
            "if shellcage itself is SIGKILLed, descendants that left the process group survive; processes started through a reachable daemon are not descendants".into()
        }),
    );
    Ok(Plan {
        tier,
        new_netns: tier == Tier::Namespaces && net_isolated,
        landlock_abi: abi,
        landlock_tcp,
        landlock_scopes,
        seccomp_allow_inet,
        enforcement: rows,
    })
}

fn with(mut v: Vec<String>, cond: bool, extra: String) -> Vec<String> {
    if cond {
        v.push(extra);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::*;
    use std::path::PathBuf;

    pub(crate) fn policy() -> Policy {
        Policy {
            profile: "test".into(),
            source: "test".into(),
            profile_chain: ProfileChain::default(),
            tier: TierChoice::Full,
            workspace: PathBuf::from("/w"),
            workspace_access: Access::Write,
            home: PathBuf::from("/home/u"),
            paths: vec![],
            hide: vec![],
            protect: vec![PathBuf::from(".git/hooks")],
            env_files: EnvFileScan {
                enabled: false,
                max_depth: 0,
                skip_dirs: vec![],
                allow_names: vec![],
                max_dirs: 0,
            },
            network: NetMode::None,
            landlock: Requirement::Required,
            env: EnvPolicy {
                pass: vec![],
                set: Default::default(),
                explicit: vec![],
            },
            limits: Limits {
                timeout: None,
                open_files: 1024,
                file_size: 1 << 30,
                processes: None,
                tmp_size: 1 << 20,
                home_size: 1 << 20,
            },
            shell: vec![],
            report: false,
            audit: None,
        }
    }

    fn features(abi: u32) -> Features {
        Features {
            landlock_abi: abi,
            arch_supported: true,
            ..Features::default()
        }
    }

    fn status(p: &Plan, g: Guarantee) -> Status {
        p.enforcement
            .iter()
            .find(|e| e.guarantee == g)
            .unwrap()
            .status
    }

    #[test]
    fn full_kernel_enforces_everything() {
        let p = plan(&policy(), &features(7), true).unwrap();
        assert_eq!(p.tier, Tier::Namespaces);
        assert!(p.new_netns && p.landlock_tcp && p.landlock_scopes && p.seccomp_allow_inet);
        for g in Guarantee::ALL {
            assert_eq!(status(&p, g), Status::Full, "{g:?}");
        }
    }

    #[test]
    fn old_landlock_is_partial_not_refused() {
        let p = plan(&policy(), &features(1), true).unwrap();
        assert!(!p.landlock_tcp && !p.landlock_scopes);
        assert_eq!(status(&p, Guarantee::NoNetwork), Status::Partial);
        assert_eq!(status(&p, Guarantee::FilesystemView), Status::Full);
    }

    #[test]
    fn required_landlock_missing_refuses() {
        let err = plan(&policy(), &features(0), true).unwrap_err();
        assert!(
            err.to_string().contains("Landlock is not available"),
            "{err}"
        );
        let mut pol = policy();
        pol.landlock = Requirement::BestEffort;
        let p = plan(&pol, &features(0), true).unwrap();
        assert_eq!(status(&p, Guarantee::FilesystemView), Status::Partial);
    }

    #[test]
    fn full_tier_without_userns_refuses_and_auto_falls_back() {
        let err = plan(&policy(), &features(7), false).unwrap_err();
        assert!(err.to_string().contains("user namespaces"), "{err}");
        let mut pol = policy();
        pol.tier = TierChoice::Auto;
        let p = plan(&pol, &features(7), false).unwrap();
        assert_eq!(p.tier, Tier::Container);
        assert!(!p.seccomp_allow_inet && !p.new_netns);
        assert_eq!(status(&p, Guarantee::ProtectedPaths), Status::NotEnforced);
    }

    #[test]
    fn unsupported_arch_refuses() {
        let f = Features {
            landlock_abi: 7,
            arch_supported: false,
            ..Features::default()
        };
        assert!(plan(&policy(), &f, true).is_err());
    }

    #[test]
    fn host_network_is_waived_and_loopback_skips_landlock_tcp() {
        let mut pol = policy();
        pol.network = NetMode::Host;
        let p = plan(&pol, &features(7), true).unwrap();
        assert!(!p.new_netns && !p.landlock_tcp);
        assert_eq!(status(&p, Guarantee::NoNetwork), Status::Waived);
        pol.network = NetMode::Loopback;
        let p = plan(&pol, &features(7), true).unwrap();
        assert!(p.new_netns && !p.landlock_tcp);
        assert_eq!(status(&p, Guarantee::NoNetwork), Status::Full);
    }
}

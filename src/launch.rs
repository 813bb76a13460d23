//! One run, validate then act: a validated [`Request`] → [`Plan`] (pure) →
//! [`SandboxSpec`] (described on the host) → spawn → supervise → cleanup →
//! messages, JSON report and audit record.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::audit::{AuditError, AuditLog, Record};
use crate::net::summary::SummaryReport;
use crate::notice;
use crate::overlay::hold::{self, Held, HoldError};
use crate::overlay::{LayerProfile, Store};
use crate::plan::{self, Plan, Tier};
use crate::policy::{HideRule, NetMode, Policy, TierChoice};
use crate::probe::{Features, Gap, KernelVersion, Userns};
use crate::request::{self, Request, RequestError};
use crate::sandbox::cgroup::{self, CgroupPlan};
use crate::sandbox::configs::Configs;
use crate::sandbox::devices::GpuNodes;
use crate::sandbox::env::EnvOutcome;
use crate::sandbox::home::{self, HomeUse};
use crate::sandbox::landlock::LandlockStatus;
use crate::sandbox::mount::{AfterRun, EnvScan, LayerDirs};
use crate::sandbox::proxy::{self, ProxyConfig, ProxyError, ProxyOutcome, ProxyProcess};
use crate::sandbox::spawn::{self, SpawnError, Spawned};
use crate::sandbox::spec::LimitsOutcome;
use crate::sandbox::{self, DescribeError, SandboxSpec};
use crate::supervise::{self, Outcome, Relay, SignalGuard, Status};

/// Errors before anything runs: all exit 125.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Refused(#[from] plan::Refusal),
    #[error(transparent)]
    Describe(#[from] DescribeError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error(transparent)]
    Sys(#[from] crate::sys::SysError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Layer(#[from] HoldError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

/// The JSON report (`--report json`).
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub shellcage: &'static str,
    pub profile: &'a str,
    pub profile_source: &'a str,
    pub profile_hash: String,
    pub tier: Tier,
    pub workspace: &'a Path,
    /// The overlay layer the workspace's writes went to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<&'a str>,
    pub argv: &'a [String],
    pub network: NetMode,
    pub enforcement: &'a [plan::Enforcement],
    /// What Landlock enforced, as the sandbox reported it (absent when the
    /// command did not get that far).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub landlock: Option<&'a LandlockStatus>,
    pub environment: &'a EnvOutcome,
    pub env_files: Option<&'a EnvScan>,
    /// Tool config files and what the sandbox shows of each (a sanitised
    /// copy, the file as it is, or nothing).
    pub configs: &'a Configs,
    /// What of the sandbox home was kept (`home = "persistent"`).
    pub home: &'a HomeUse,
    /// Network mode `proxy`: what the proxy allowed and refused, per destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<&'a SummaryReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<&'a str>,
    /// The run's cgroups: each limit and what held it, and what they saw
    /// (absent when the run had none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<&'a LimitsOutcome>,
    /// The host devices exposed (`[devices] gpu`; absent when not asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<ReportDevices<'a>>,
    /// What the exit step did in the workspace (repositories checked and
    /// neutralised, placeholders, merge-back), absent when nothing.
    #[serde(skip_serializing_if = "AfterRun::is_quiet")]
    pub after_run: &'a AfterRun,
    /// The session the command ran in (absent for a cold run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<&'a SessionUse>,
    pub outcome: &'a Outcome,
}

/// The report's `devices`: the GPU nodes bound (and recreated links, and
/// what was skipped under the searched names).
#[derive(Debug, Serialize)]
pub struct ReportDevices<'a> {
    pub gpu: &'a GpuNodes,
}

/// A sandbox that was started, and what the report says about how.
struct Started {
    spec: SandboxSpec,
    env: EnvOutcome,
    /// Why the container tier is used instead of the namespaces tier.
    fallback: Option<String>,
    spawned: Spawned,
    /// The proxy process (network mode `proxy`, `--publish`).
    proxy: Option<ProxyProcess>,
    /// The terminal relay (the caller's stdin is its terminal).
    relay: Option<Relay>,
}

/// Run the request; returns shellcage's exit code. Errors mean nothing ran.
pub fn run(mut req: Request) -> Result<i32, LaunchError> {
    let start = req.started;
    // The one floor rule that needs the sandbox's secret-name test (the rest
    // were applied in Request::new).
    if let Some((floor, _)) = &req.floor {
        floor
            .check_env_secrets(&req.policy, crate::sandbox::env::is_secret_name)
            .map_err(RequestError::from)?;
    }
    tracing::debug!(target: "shellcage::timing", "policy built {}", start.elapsed().as_micros());
    // Opened (created) before the run, so it exists to be masked in the sandbox.
    let audit = match &req.policy.audit {
        Some(path) => Some(AuditLog::open(path)?),
        None => None,
    };
    if let Some(log) = &audit {
        req.policy.hide.push(HideRule {
            pattern: log.path().to_path_buf(),
        });
    }
    let mut features = Features::for_launch();
    if req.policy.workspace_layer.is_some() {
        features.kernel = Some(KernelVersion::running());
    }
    if req.policy.tier != TierChoice::Container {
        // Ubuntu's AppArmor restriction is known before any clone (where it
        // applies the clone may even succeed, and only the sandbox's first
        // mount fail): the full tier refuses with the fix, auto falls back.
        if let Some(u) = crate::probe::userns_restricted(
            std::path::Path::new("/"),
            nix::unistd::geteuid().as_raw(),
        ) {
            features.userns = u;
        }
    }
    // Limits that need a cgroup: the host's layout is read once, here.
    let cgroups = cgroup::plan_for(&req.policy.limits);
    features.cgroup_limits = cgroups.support();
    let plan = plan::plan(&req.policy, &features)?;
    if let Some(log) = &audit {
        log.refuse_if_reachable(&req.policy, plan.tier)?;
    }
    // Held (locked) for the sandbox's whole life; released when dropped.
    let layer = match hold_layer(&mut req) {
        Ok(l) => l,
        Err(LaunchError::Layer(e @ HoldError::Timeout(..))) => {
            crate::say!("shellcage: {e}");
            return Ok(124);
        }
        Err(e) => return Err(e),
    };
    let signals = SignalGuard::block()?;
    let user = request::user_name();
    let mut started = start_sandbox(
        &req,
        plan,
        &mut features,
        &cgroups,
        audit.as_ref(),
        &user,
        layer.as_ref(),
    )?;
    if let Some(why) = &started.spec.home_unavailable {
        home_notice(&req.policy, why);
    }
    let outcome = supervise::supervise(
        started.spawned.child,
        started.spawned.report,
        &signals,
        req.policy.limits.timeout,
        start,
        started.spec.plan.tier == Tier::Container,
        started.relay.as_mut(),
    );
    drop(started.relay.take());
    tracing::debug!(target: "shellcage::timing", "sandbox exited {}", start.elapsed().as_micros());
    let limits = started.spec.end_limits();
    let network = started.proxy.map(ProxyProcess::finish);
    tracing::debug!(target: "shellcage::timing", "proxy finished {}", start.elapsed().as_micros());
    let after_run = started.spec.cleanup();
    let home_use = match started.spec.home.take() {
        Some(kept) => home::after_run(kept),
        None => HomeUse::fresh(
            req.policy.home_mode,
            started.spec.home_unavailable.as_deref(),
        ),
    };
    tracing::debug!(target: "shellcage::timing", "cleaned up {}", start.elapsed().as_micros());
    if req.interactive {
        let _ = nix::unistd::tcsetpgrp(std::io::stdin(), nix::unistd::getpgrp());
    }
    drop(signals);
    let done = Done {
        spec: &started.spec,
        env: &started.env,
        fallback: started.fallback.as_deref(),
        outcome: &outcome,
        limits: limits.as_ref(),
        network: network.as_ref(),
        after_run: &after_run,
        home: &home_use,
        session: None,
    };
    conclude(&req, &done, audit, &user);
    drop(layer);
    Ok(outcome.exit_code)
}

/// What one run ended with, for [`conclude`].
pub(crate) struct Done<'a> {
    pub spec: &'a SandboxSpec,
    pub env: &'a EnvOutcome,
    pub fallback: Option<&'a str>,
    pub outcome: &'a Outcome,
    pub limits: Option<&'a LimitsOutcome>,
    pub network: Option<&'a ProxyOutcome>,
    pub after_run: &'a AfterRun,
    pub home: &'a HomeUse,
    pub session: Option<&'a SessionUse>,
}

/// What the report says about the session a command ran in (see the `session` module).
#[derive(Debug, Clone, Serialize)]
pub struct SessionUse {
    /// The session's id (the start of its key).
    pub id: String,
    /// The server's pid.
    pub server: i32,
    /// What the session keeps between commands.
    pub shared: &'static [&'static str],
    /// `.env` files masked for this command on top of the session's root (made, or
    /// made again, since the session started).
    pub masked_since_start: usize,
}

/// After the sandbox has ended: what shellcage says on stderr, the JSON report and the
/// audit record (a cold run and a session's command alike).
pub(crate) fn conclude(req: &Request, done: &Done<'_>, audit: Option<AuditLog>, user: &str) {
    let outcome = done.outcome;
    if let Some(why) = done.network.and_then(|n| proxy_failure(n, outcome)) {
        crate::say!("shellcage: {why}");
    }
    tell(&req.policy, outcome, done.limits);
    let lookups = outcome.lookups.as_ref().map(|l| l.summary());
    let egress = done
        .network
        .and_then(|n| tell_network(n, outcome))
        .or(lookups.as_ref());
    closing_hint(req, outcome);
    let (spec, env) = (done.spec, done.env);
    if req.policy.report {
        let report = Report {
            shellcage: env!("CARGO_PKG_VERSION"),
            profile: &req.policy.profile,
            profile_source: &req.policy.source,
            profile_hash: req.policy.profile_chain.hash(),
            tier: spec.plan.tier,
            workspace: &req.policy.workspace,
            layer: req.policy.workspace_layer.as_deref(),
            argv: &req.argv,
            network: req.policy.network,
            enforcement: &spec.plan.enforcement,
            landlock: outcome.landlock.as_ref(),
            environment: env,
            env_files: spec.mounts.as_ref().map(|m| &m.env_scan),
            configs: &spec.configs,
            home: done.home,
            egress,
            fallback: done.fallback,
            limits: done.limits,
            devices: spec.devices.as_ref().map(|gpu| ReportDevices { gpu }),
            after_run: done.after_run,
            session: done.session,
            outcome,
        };
        write_report(&report, req.report_file.as_deref());
    }
    if let Some(log) = audit {
        let mut record = Record::of_run(&req.policy, &spec.plan, &req.argv, outcome, user);
        record.network = egress.cloned();
        record.after_run = (!done.after_run.is_quiet()).then(|| done.after_run.clone());
        if let Err(e) = log.append(record) {
            crate::say!("shellcage: {e}");
        }
    }
}

/// An overlay workspace: begin (or open) its layer, recording the profile,
/// and hold it (waiting while another command has it mounted); the layer
/// store is masked wherever a visible tree would show it.
pub fn hold_layer(req: &mut Request) -> Result<Option<Held>, LaunchError> {
    let Some(name) = req.policy.workspace_layer.clone() else {
        return Ok(None);
    };
    let store = Store::from_env(&req.policy.home);
    let profile = layer_profile(req);
    let deadline = req.policy.limits.timeout.map(|t| (req.started, t));
    let held = hold::hold(&store, &req.policy.workspace, &name, &profile, deadline)?;
    req.policy.hide.push(HideRule {
        pattern: hold::store_root(&store),
    });
    Ok(Some(held))
}

/// What an overlay layer records of the profile it began with: what `apply` loads
/// again (a built-in by name, a file by its full path).
pub fn layer_profile(req: &Request) -> LayerProfile {
    LayerProfile {
        name: if req.policy.source.starts_with("builtin:") {
            req.profile_arg.clone()
        } else {
            req.policy.source.clone()
        },
        source: req.policy.source.clone(),
    }
}

/// Describe and spawn the sandbox `plan` asks for. When user namespaces turn
/// out not to work here, plan again knowing it: the `full` tier refuses, `auto`
/// falls back to the container tier (and says so).
fn start_sandbox(
    req: &Request,
    plan: Plan,
    features: &mut Features,
    cgroups: &CgroupPlan,
    audit: Option<&AuditLog>,
    user: &str,
    layer: Option<&Held>,
) -> Result<Started, LaunchError> {
    let dirs = layer.map(|l| &l.dirs);
    let lock = layer.map(Held::lock_fd);
    let policy_file = crate::explain::policy_file_json(req);
    let command = sandbox::Command {
        argv: &req.argv_c,
        cwd: &req.cwd,
        interactive: req.interactive,
        user,
        policy_file: Some((
            Path::new(crate::explain::POLICY_FILE),
            policy_file.as_bytes(),
        )),
    };
    // User namespaces known not to work before any clone (AppArmor): auto
    // has planned the container tier, and says so as it would after a clone.
    let known = match (&features.userns, plan.tier, req.policy.tier) {
        (Userns::Fails { missing, hint }, Tier::Container, TierChoice::Auto) => {
            let fix = hint.strip_suffix(crate::probe::OR_AUTO).unwrap_or(hint);
            let msg = fallback_message(missing, Some(fix));
            crate::say!("shellcage: {msg}");
            Some(msg)
        }
        _ => None,
    };
    let (mut spec, env) = describe_sandbox(req, plan, features, cgroups, &command, dirs)?;
    spec.layer_lock = lock;
    tracing::debug!(target: "shellcage::timing", "launch prepared {}", req.started.elapsed().as_micros());
    let unreadable = spec
        .mounts
        .as_ref()
        .map_or(&[][..], |m| &m.env_scan.unreadable[..]);
    notices(
        &req.policy,
        &env,
        &spec.configs,
        unreadable,
        spec.devices.as_ref(),
    );
    let proxy = start_proxy(&req.policy, &mut spec).inspect_err(|_| {
        spec.cleanup();
    })?;
    let relay = own_terminal(&mut spec);
    let err = match spawn_with(&mut spec, proxy.is_some()) {
        Ok(spawned) => {
            return Ok(Started {
                spec,
                env,
                fallback: known,
                spawned,
                proxy,
                relay,
            });
        }
        Err(SpawnError::Namespaces(err)) => {
            if let Some(p) = proxy {
                p.kill();
            }
            err
        }
        Err(e) => {
            if let Some(p) = proxy {
                p.kill();
            }
            spec.cleanup();
            return Err(e.into());
        }
    };
    spec.cleanup();
    features.userns = Userns::Fails {
        missing: format!(
            "cannot create user namespace: {}{}",
            err.errno.desc().to_lowercase(),
            if err.errno == nix::errno::Errno::ENOSPC {
                " (the user namespace limit of this namespace is 0 or reached)"
            } else {
                ""
            }
        ),
        hint: features.userns_hint(),
    };
    let plan = plan::plan(&req.policy, features)?;
    if let Some(log) = audit {
        log.refuse_if_reachable(&req.policy, plan.tier)?;
    }
    let msg = fallback_message(&err.to_string(), None);
    crate::say!("shellcage: {msg}");
    let (mut spec, env) = describe_sandbox(req, plan, features, cgroups, &command, dirs)?;
    spec.layer_lock = lock;
    let proxy = start_proxy(&req.policy, &mut spec).inspect_err(|_| {
        spec.cleanup();
    })?;
    let relay = own_terminal(&mut spec);
    let spawned = spawn_with(&mut spec, proxy.is_some()).inspect_err(|_| {
        spec.cleanup();
    });
    let spawned = match spawned {
        Ok(s) => s,
        Err(e) => {
            if let Some(p) = proxy {
                p.kill();
            }
            return Err(e.into());
        }
    };
    Ok(Started {
        spec,
        env,
        fallback: Some(msg),
        spawned,
        proxy,
        relay,
    })
}

/// When the caller's stdin is its terminal: the command gets a pty of its own, which the
/// supervisor relays (`supervise::relay`). Nothing is done otherwise (one `isatty`).
fn own_terminal(spec: &mut SandboxSpec) -> Option<Relay> {
    let (relay, terminal) = supervise::relay::prepare(spec.plan.tier)?;
    spec.command.terminal = Some(terminal);
    Some(relay)
}

/// The lines before the command starts, each at most once per workspace and
/// profile (while what it names stays the same): variables a rule would have
/// passed but that were dropped, config files that stay hidden, directories
/// the `.env` scan could not read (hidden whole).
pub(crate) fn notices(
    policy: &Policy,
    env: &EnvOutcome,
    configs: &Configs,
    unreadable: &[PathBuf],
    gpu: Option<&GpuNodes>,
) {
    // The runtime directory is made only when there is something to say: a
    // run with no notice leaves nothing on the host.
    let seen = std::cell::OnceCell::new();
    let once = |kind: &str, names: &[String]| {
        seen.get_or_init(|| notice::runtime_dir().ok().map(|d| notice::Seen::new(&d)))
            .as_ref()
            .is_none_or(|s| s.first_time(kind, &policy.workspace, &policy.profile, names))
    };
    if let Some(line) = notice::env_dropped_line(&env.dropped_secret, &env.dropped_value) {
        let mut names = env.dropped_secret.clone();
        names.extend(env.dropped_value.iter().cloned());
        if once("env", &names) {
            crate::say!("{line}");
        }
    }
    if !unreadable.is_empty() {
        let names: Vec<String> = unreadable
            .iter()
            .map(|d| {
                let rel = d.strip_prefix(&policy.workspace).unwrap_or(d);
                if rel.as_os_str().is_empty() {
                    "."
                } else {
                    rel.to_str().unwrap_or("?")
                }
                .to_string()
            })
            .collect();
        if once("env-unreadable", &names) {
            crate::say!("{}", notice::unreadable_line(&names));
        }
    }
    let hidden = configs.hidden_lines(&policy.home);
    if !hidden.is_empty() && once("configs", &hidden) {
        for line in hidden {
            crate::say!("{line}");
        }
    }
    // `--gpu` refused already; a profile's `gpu = true` runs without one.
    if gpu.is_some_and(|g| g.nodes.is_empty()) && once("gpu-absent", &[]) {
        crate::say!(
            "shellcage: [devices] gpu = true, but this host has no GPU device node ({}): the command runs without one",
            crate::sandbox::devices::GPU_PATTERNS
        );
    }
}

/// The persistent home could not be kept (the command runs, with a fresh
/// home): said once per workspace and profile while the reason stays.
fn home_notice(policy: &Policy, why: &str) {
    let first = notice::runtime_dir()
        .ok()
        .map(|d| notice::Seen::new(&d))
        .is_none_or(|s| {
            s.first_time(
                "home",
                &policy.workspace,
                &policy.profile,
                &[why.to_string()],
            )
        });
    if first {
        crate::say!("shellcage: the sandbox home is fresh for this run, nothing is kept: {why}");
    }
}

/// The one line `auto` says when it takes the container tier; `fix`: how
/// to get the namespaces tier, when known.
fn fallback_message(why: &str, fix: Option<&str>) -> String {
    let fix = fix
        .map(|f| format!("; for the namespaces tier: {f}"))
        .unwrap_or_default();
    format!(
        "user namespaces unavailable ({why}); running in the container tier (Landlock + seccomp; not enforced: protected paths, private /tmp, pid isolation; see 'shellcage doctor'){fix}"
    )
}

/// [`sandbox::describe`], with the run's cgroups settled: when the kernel
/// refuses what the host's layout promised (creating a group, or capping
/// swap), the limits concerned are not enforced, so the run is planned again
/// knowing it (a required one is then refused; a best-effort one reported).
fn describe_sandbox(
    req: &Request,
    plan: Plan,
    features: &mut Features,
    cgroups: &CgroupPlan,
    command: &sandbox::Command<'_>,
    layer: Option<&LayerDirs>,
) -> Result<(SandboxSpec, EnvOutcome), LaunchError> {
    match sandbox::describe(&req.policy, plan, command, cgroups, layer) {
        Ok((mut spec, env)) => {
            let created = spec.cgroup.as_ref().map(|c| c.support());
            if let Some(found) = created.filter(|f| *f != features.cgroup_limits) {
                features.cgroup_limits = found;
                match plan::plan(&req.policy, features) {
                    Ok(plan) => spec.plan = plan,
                    Err(refusal) => {
                        spec.cleanup();
                        return Err(refusal.into());
                    }
                }
            }
            Ok((spec, env))
        }
        Err(DescribeError::Cgroup(e)) => {
            tracing::debug!(%e, "the run's cgroups could not be created");
            for c in &mut features.cgroup_limits {
                if c.mechanism.take().is_some() {
                    c.gap = Some(Gap {
                        reason: e.to_string(),
                        hint: "see 'shellcage doctor'".into(),
                    });
                }
            }
            let plan = plan::plan(&req.policy, features)?;
            Ok(sandbox::describe(
                &req.policy,
                plan,
                command,
                &CgroupPlan::none(),
                layer,
            )?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Fork the proxy process when the sandbox has network pieces (proxy mode, `--publish`):
/// before the sandbox, so it locks itself down while the sandbox is built. The init's end
/// of its channel goes into the spec.
fn start_proxy(
    policy: &Policy,
    spec: &mut SandboxSpec,
) -> Result<Option<ProxyProcess>, LaunchError> {
    start_proxy_for(policy, spec, false)
}

/// Start the proxy process `spec`'s network asks for (network mode `proxy`, or published
/// ports), its channel put in `spec` for the init; `queries`: a session's, which answers
/// its handlers' queries for the summary so far.
pub(crate) fn start_proxy_for(
    policy: &Policy,
    spec: &mut SandboxSpec,
    queries: bool,
) -> Result<Option<ProxyProcess>, LaunchError> {
    let Some(net) = spec.net.as_mut() else {
        return Ok(None);
    };
    let rules = match net.proxy {
        Some(_) => {
            let e = &policy.egress;
            Some(
                crate::net::rules::RuleSet::new(&e.allow, &e.deny, &e.allow_private)
                    .map_err(|e| sandbox::DescribeError::Network(e.to_string()))?,
            )
        }
        None => None,
    };
    let publish = proxy::bind_published(&policy.publish)?;
    let (process, init_end) = proxy::start(ProxyConfig {
        rules,
        publish,
        landlock_required: spec.plan.landlock_required,
        queries,
    })?;
    net.channel = Some(init_end);
    tracing::debug!(pid = process.pid.as_raw(), "network proxy started");
    Ok(Some(process))
}

/// Spawn, then close the supervisor's copy of the init's end of the proxy channel (the
/// proxy then sees the end of the channel when the init is gone) and of the pty's channel.
fn spawn_with(spec: &mut SandboxSpec, has_proxy: bool) -> Result<Spawned, SpawnError> {
    let spawned = spawn::spawn(spec);
    // The sandbox's end of the pty channel (or the slave) is the sandbox's alone.
    spec.command.terminal = None;
    if has_proxy {
        if let Some(net) = spec.net.as_mut() {
            net.channel = None;
        }
    }
    spawned
}

/// Why the proxy could not start, when that is why nothing ran.
fn proxy_failure<'a>(network: &'a ProxyOutcome, outcome: &Outcome) -> Option<&'a str> {
    let stopped_by_it = matches!(outcome.status, Status::NotStarted(_))
        && outcome.errors.iter().any(|e| e.contains("network proxy"));
    match (&network.summary, &network.error) {
        (None, Some(why)) if stopped_by_it => Some(why),
        _ => None,
    }
}

/// The proxy's exit line (what was blocked), or why it has no summary when the command
/// ran; the summary for the report and the audit record.
fn tell_network<'a>(network: &'a ProxyOutcome, outcome: &Outcome) -> Option<&'a SummaryReport> {
    match (&network.summary, &network.error) {
        (Some(summary), _) => {
            if let Some(line) = summary.exit_line() {
                crate::say!("{line}");
            }
            Some(summary)
        }
        (None, Some(why)) if !matches!(outcome.status, Status::NotStarted(_)) => {
            crate::say!("shellcage: {why}");
            None
        }
        (None, _) => None,
    }
}

/// The one closing line after a failing command on a terminal, naming what the sandbox
/// itself refused (network mode `none`: the name lookups it answered). Never from the
/// command's output.
fn closing_hint(req: &Request, outcome: &Outcome) {
    use std::io::IsTerminal;
    let started = !matches!(outcome.status, Status::NotStarted(_) | Status::TimedOut);
    let stderr_tty = std::io::stderr().is_terminal();
    if outcome.exit_code == 0 || !started || !stderr_tty {
        return;
    }
    let (names, total): (Vec<(String, u64)>, u64) = match &outcome.lookups {
        Some(record) => (
            (record.names.iter())
                .map(|n| (n.name.clone(), n.count))
                .collect(),
            record.total,
        ),
        None => (Vec::new(), 0),
    };
    // Without a refused lookup: the paths the command's own words name that the sandbox
    // hides, does not show or protects (judged as `shellcage explain` would).
    let paths = if total == 0 {
        let view = crate::explain::view_of_request(req);
        let judge = crate::explain::Judge::new(&view);
        crate::explain::named_paths(&judge, &req.argv, &req.cwd, &req.policy.home)
    } else {
        Vec::new()
    };
    let end = notice::RunEnd {
        code: outcome.exit_code,
        started,
        stderr_tty,
        network: req.policy.network.name(),
        lookups: &names,
        lookups_total: total,
        paths: &paths,
    };
    if let Some(line) = notice::closing_hint(&end) {
        crate::say!("{line}");
    }
}

/// What the user must hear about the run on stderr.
fn tell(policy: &Policy, outcome: &Outcome, limits: Option<&LimitsOutcome>) {
    for e in &outcome.errors {
        crate::say!("shellcage: {e}");
    }
    if let Some(l) = limits {
        for ended in &l.ended {
            crate::say!("shellcage: {ended}");
        }
        if let Some(e) = &l.removal_error {
            crate::say!("shellcage: {e}");
        }
    }
    if outcome.status == Status::TimedOut {
        let t = policy.limits.timeout.unwrap_or_default();
        crate::say!("shellcage: timeout after {:?}: the sandbox was killed", t);
    }
    if let Status::Signaled(31) = outcome.status {
        crate::say!(
            "shellcage: the command was killed by SIGSYS: seccomp refused a system call from a foreign ABI"
        );
    }
}

fn write_report(report: &Report<'_>, file: Option<&Path>) {
    let Ok(json) = serde_json::to_string(report) else {
        return;
    };
    match file {
        Some(path) => {
            if let Err(e) = std::fs::write(path, format!("{json}\n")) {
                crate::say!("shellcage: cannot write report {}: {e}", path.display());
            }
        }
        None => crate::say!("{json}"),
    }
}

//! One run, end to end: options → Policy → Plan → Launch → spawn → supervise
//! → cleanup → report. Each step is a plain function of the previous value.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde::Serialize;

use crate::cli::{NetArg, RunOpts, TierArg};
use crate::plan::{self, Plan, Tier};
use crate::policy::{Access, NetMode, PathRule, Policy, TierChoice};
use crate::probe::Features;
use crate::profile::{self, LoadContext};
use crate::sandbox::contained::{self, Allowlist, RunDir};
use crate::sandbox::env::{self, EnvOutcome, Fixed};
use crate::sandbox::landlock::LandlockSpec;
use crate::sandbox::mount::{self, DEV_NODES, EnvScan, MountPlan};
use crate::sandbox::seccomp::{self, SeccompSpec};
use crate::sandbox::spawn::{self, SpawnError};
use crate::sandbox::{Launch, init};
use crate::supervise::{self, Outcome};

/// Errors before anything runs: all exit 125.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Profile(#[from] profile::ProfileError),
    #[error(transparent)]
    Refused(#[from] plan::Refusal),
    #[error(transparent)]
    Mount(#[from] mount::MountError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error(transparent)]
    Sys(#[from] crate::sys::SysError),
    #[error(transparent)]
    Contained(#[from] contained::ContainedError),
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    Invalid(String),
}

/// What the caller asked for.
pub struct Request {
    pub opts: RunOpts,
    pub argv: Vec<String>,
    /// An interactive shell on a terminal (`shellcage sh` without `-c`).
    pub interactive: bool,
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
    pub argv: &'a [String],
    pub network: NetMode,
    pub enforcement: &'a [plan::Enforcement],
    pub environment: &'a EnvOutcome,
    pub env_files: Option<&'a EnvScan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<&'a str>,
    pub outcome: &'a Outcome,
}

/// The caller's home directory ($HOME, else the password database).
pub fn home_dir() -> Result<PathBuf, LaunchError> {
    if let Some(h) = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute())
    {
        return Ok(h);
    }
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
        .ok_or_else(|| {
            LaunchError::Invalid("cannot find the home directory (hint: set HOME)".into())
        })
}

/// The workspace: the flag, else $SHELLCAGE_WORKSPACE, else the top of the git
/// work tree holding `cwd`, else `cwd`.
pub fn resolve_workspace(flag: Option<&Path>, cwd: &Path) -> Result<PathBuf, LaunchError> {
    let (given, what) = match flag {
        Some(p) => (Some(p.to_path_buf()), "--workspace"),
        None => (
            std::env::var_os("SHELLCAGE_WORKSPACE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            "SHELLCAGE_WORKSPACE",
        ),
    };
    let chosen = match given {
        Some(p) => {
            let canon = std::fs::canonicalize(&p).map_err(|e| {
                LaunchError::Invalid(format!(
                    "{what} {}: {}",
                    p.display(),
                    e.to_string().to_lowercase()
                ))
            })?;
            if !canon.is_dir() {
                return Err(LaunchError::Invalid(format!(
                    "{what} {}: not a directory",
                    p.display()
                )));
            }
            canon
        }
        None => cwd
            .ancestors()
            .find(|d| d.join(".git").exists())
            .unwrap_or(cwd)
            .to_path_buf(),
    };
    Ok(chosen)
}

/// `full`, `auto` or `container`.
pub fn parse_tier(v: &str) -> Option<TierChoice> {
    match v {
        "full" => Some(TierChoice::Full),
        "auto" => Some(TierChoice::Auto),
        "container" => Some(TierChoice::Container),
        _ => None,
    }
}

fn absolute(p: &Path, cwd: &Path, flag: &str) -> Result<PathBuf, LaunchError> {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    std::fs::canonicalize(&joined).map_err(|e| {
        LaunchError::Invalid(format!(
            "{flag} {}: {}",
            p.display(),
            e.to_string().to_lowercase()
        ))
    })
}

/// Load the profile and apply the command-line additions.
pub fn build_policy(opts: &RunOpts, cwd: &Path) -> Result<Policy, LaunchError> {
    let home = home_dir()?;
    let workspace = resolve_workspace(opts.workspace.as_deref(), cwd)?;
    let name = opts
        .profile
        .clone()
        .or_else(|| {
            std::env::var("SHELLCAGE_PROFILE")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .unwrap_or_else(|| "dev".into());
    let ctx = LoadContext {
        user_dir: Some(home.join(".config/shellcage/profiles")),
        home,
        workspace,
    };
    let mut policy = profile::load(&name, &ctx)?;
    // A workspace inside a hidden path (an agent that `cd`s into ~/.ssh and
    // gets its workspace from the directory) would make the secret writable.
    if let Some(h) = policy
        .hide
        .iter()
        .find(|h| crate::policy::pattern_covers(&h.pattern, &policy.workspace))
    {
        return Err(LaunchError::Invalid(format!(
            "workspace {} is hidden by the profile ({}) (hint: run from the project directory or pass --workspace)",
            policy.workspace.display(),
            h.pattern.display()
        )));
    }
    for (list, access, flag) in [
        (&opts.read, Access::Read, "--read"),
        (&opts.write, Access::Write, "--write"),
    ] {
        for p in list {
            let path = absolute(p, cwd, flag)?;
            if let Some(h) = policy
                .hide
                .iter()
                .find(|h| crate::policy::pattern_covers(&h.pattern, &path))
            {
                return Err(LaunchError::Invalid(format!(
                    "{flag} {}: hidden by the profile ({})",
                    p.display(),
                    h.pattern.display()
                )));
            }
            policy.paths.push(PathRule {
                path,
                access,
                optional: false,
            });
        }
    }
    if let Some(net) = opts.net {
        policy.network = match net {
            NetArg::None => NetMode::None,
            NetArg::Loopback => NetMode::Loopback,
            NetArg::Host => NetMode::Host,
        };
    }
    policy.tier = match opts.tier {
        Some(TierArg::Full) => TierChoice::Full,
        Some(TierArg::Auto) => TierChoice::Auto,
        Some(TierArg::Container) => TierChoice::Container,
        None => match std::env::var("SHELLCAGE_TIER").ok().as_deref() {
            None | Some("") => policy.tier,
            Some(v) => parse_tier(v).ok_or_else(|| {
                LaunchError::Invalid(format!(
                    "SHELLCAGE_TIER={v}: unknown tier (expected full, auto or container)"
                ))
            })?,
        },
    };
    for spec in &opts.env {
        let (name, value) = match spec.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (spec.as_str(), None),
        };
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || name.as_bytes()[0].is_ascii_digit()
        {
            return Err(LaunchError::Invalid(format!(
                "--env {spec}: invalid variable name '{name}'"
            )));
        }
        policy.env.explicit.push((name.to_string(), value));
    }
    if let Some(t) = &opts.timeout {
        let d = profile::parse_duration(t)
            .map_err(|e| LaunchError::Invalid(format!("--timeout {t}: {e}")))?;
        policy.limits.timeout = Some(d);
    }
    if opts.report.is_some() || opts.report_file.is_some() {
        policy.report = true;
    }
    if let Some(file) = &opts.audit {
        policy.audit = Some(cwd.join(file));
    }
    Ok(policy)
}

fn landlock_spec(
    policy: &Policy,
    plan: &Plan,
    mounts: Option<&MountPlan>,
    allow: Option<&Allowlist>,
) -> LandlockSpec {
    let (list, read, write) = match (mounts, allow) {
        // In the namespaces tier `/` is our own tmpfs holding only what is visible.
        (Some(m), _) => (
            vec![PathBuf::from("/")],
            m.visible.read.clone(),
            m.visible.write.clone(),
        ),
        (None, Some(a)) => (a.list.clone(), a.read.clone(), a.write.clone()),
        (None, None) => (vec![], vec![], vec![]),
    };
    let mut dev_rw: Vec<PathBuf> = DEV_NODES
        .iter()
        .map(|n| Path::new("/dev").join(n))
        .collect();
    dev_rw.push(PathBuf::from("/dev/pts"));
    LandlockSpec {
        list,
        read,
        write,
        dev_rw,
        proc_path: Some(PathBuf::from("/proc")),
        deny_tcp: plan.landlock_tcp,
        scopes: plan.landlock_scopes,
        required: plan.landlock_abi > 0
            && (policy.landlock == crate::policy::Requirement::Required
                || plan.tier == Tier::Container),
    }
}

/// Where the command starts: the caller's directory when the sandbox shows it.
fn sandbox_cwd(policy: &Policy, cwd: &Path) -> PathBuf {
    let visible = cwd.starts_with(&policy.workspace)
        || policy
            .paths
            .iter()
            .any(|r| cwd.starts_with(&r.path) && r.path.exists());
    if visible {
        cwd.to_path_buf()
    } else {
        policy.workspace.clone()
    }
}

fn user_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| nix::unistd::getuid().to_string())
}

fn prepare(
    policy: &Policy,
    plan: Plan,
    req: &Request,
    cwd: &Path,
) -> Result<(Launch, EnvOutcome), LaunchError> {
    let mounts = match plan.tier {
        Tier::Namespaces => Some(mount::describe(policy)?),
        Tier::Container => None,
    };
    let run_cwd = match plan.tier {
        Tier::Namespaces => sandbox_cwd(policy, cwd),
        Tier::Container => cwd.to_path_buf(),
    };
    let argv = req
        .argv
        .iter()
        .map(|a| {
            CString::new(a.as_bytes())
                .map_err(|_| LaunchError::Invalid(format!("argument contains a NUL byte: {a:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let seccomp = seccomp::build(&SeccompSpec {
        allow_inet: plan.seccomp_allow_inet,
    })?;
    // Container tier: a fresh $HOME and $TMPDIR per run (no private tmpfs
    // without a mount namespace), and the Landlock allowlist that replaces the
    // mount namespace's view.
    let (run_dir, allow) = match plan.tier {
        Tier::Namespaces => (None, None),
        Tier::Container => {
            let run = RunDir::create(policy)?;
            match contained::allowlist(policy, &run.root) {
                Ok(a) => (Some(run), Some(a)),
                Err(e) => {
                    run.remove();
                    return Err(e.into());
                }
            }
        }
    };
    let user = user_name();
    let shell = policy.shell_path().map(Path::to_path_buf);
    let mut env = env::build(
        &policy.env,
        std::env::vars_os(),
        &Fixed {
            home: run_dir.as_ref().map_or(&policy.home, |r| &r.home),
            user: &user,
            pwd: &run_cwd,
            profile: &policy.profile,
            shell: shell.as_deref(),
        },
    );
    if let Some(run) = &run_dir {
        env.vars
            .insert("TMPDIR".into(), run.tmp.display().to_string());
    }
    let landlock = landlock_spec(policy, &plan, mounts.as_ref(), allow.as_ref());
    let launch = Launch {
        mounts,
        argv,
        envp: env.to_cstrings(),
        path: env.vars.get("PATH").cloned().unwrap_or_default(),
        cwd: run_cwd,
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        hostname: "shellcage",
        seccomp,
        landlock,
        limits: policy.limits.clone(),
        interactive: req.interactive,
        timing: tracing::enabled!(tracing::Level::DEBUG).then(Instant::now),
        plan,
        run_dir,
    };
    Ok((launch, env))
}

/// Signals the supervisor handles itself (forwarded into the sandbox).
fn supervised_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in init::FORWARDED {
        set.add(s);
    }
    set
}

/// Run the request; returns shellcage's exit code. Errors mean nothing ran.
pub fn run(req: Request) -> Result<i32, LaunchError> {
    let start = Instant::now();
    let cwd = std::env::current_dir()
        .map_err(|e| LaunchError::Invalid(format!("cannot read the current directory: {e}")))?;
    let mut policy = build_policy(&req.opts, &cwd)?;
    tracing::debug!(target: "shellcage::timing", "policy built {}", start.elapsed().as_micros());
    if req.argv.is_empty() {
        return Err(LaunchError::Invalid("no command given".into()));
    }
    // Opened (created) before the run, so it exists to be masked in the sandbox.
    let audit = match &policy.audit {
        Some(path) => Some(crate::audit::AuditLog::open(path)?),
        None => None,
    };
    if let Some(log) = &audit {
        policy.hide.push(crate::policy::HideRule {
            pattern: log.path().to_path_buf(),
        });
    }
    let features = Features::for_launch();
    let plan = plan::plan(&policy, &features, policy.tier != TierChoice::Container)?;
    audit_hidden(&policy, &plan, audit.as_ref())?;

    // Block the supervised signals before the clone: the init inherits the
    // mask (it waits for them synchronously) and we read them from a signalfd.
    let set = supervised_signals();
    let mut block = set;
    block.add(Signal::SIGTTOU);
    block.add(Signal::SIGTTIN);
    let mut old_mask = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut old_mask))
        .map_err(|e| crate::sys::SysError::new("sigprocmask", "supervisor", e))?;
    let signals = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| crate::sys::SysError::new("signalfd", "supervisor", e))?;

    let (mut launch, mut env_out) = prepare(&policy, plan, &req, &cwd)?;
    tracing::debug!(target: "shellcage::timing", "launch prepared {}", start.elapsed().as_micros());
    let mut fallback = None;
    let spawned = match spawn::spawn(&launch) {
        Ok(s) => s,
        Err(SpawnError::Namespaces(err)) if policy.tier == TierChoice::Auto => {
            cleanup(&launch);
            let plan = plan::plan(&policy, &features, false)?;
            audit_hidden(&policy, &plan, audit.as_ref())?;
            let msg = format!(
                "user namespaces unavailable ({err}); running in the container tier (Landlock + seccomp; not enforced: protected paths, private /tmp, pid isolation; see 'shellcage doctor')"
            );
            say(format_args!("shellcage: {msg}"));
            fallback = Some(msg);
            (launch, env_out) = prepare(&policy, plan, &req, &cwd)?;
            spawn::spawn(&launch).inspect_err(|_| cleanup(&launch))?
        }
        Err(SpawnError::Namespaces(err)) => {
            cleanup(&launch);
            return Err(LaunchError::Refused(plan::Refusal {
                guarantee: plan::Guarantee::FilesystemView.name(),
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
            }));
        }
        Err(e) => {
            cleanup(&launch);
            return Err(e.into());
        }
    };
    let outcome = supervise::supervise(
        spawned.child,
        spawned.report,
        &signals,
        policy.limits.timeout,
        start,
        launch.plan.tier == Tier::Container,
    );
    tracing::debug!(target: "shellcage::timing", "sandbox exited {}", start.elapsed().as_micros());
    cleanup(&launch);
    tracing::debug!(target: "shellcage::timing", "cleaned up {}", start.elapsed().as_micros());
    if req.interactive {
        let _ = nix::unistd::tcsetpgrp(std::io::stdin(), nix::unistd::getpgrp());
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);

    for e in &outcome.errors {
        say(format_args!("shellcage: {e}"));
    }
    if outcome.status == supervise::Status::TimedOut {
        let t = policy.limits.timeout.unwrap_or_default();
        say(format_args!(
            "shellcage: timeout after {:?}: the sandbox was killed",
            t
        ));
    }
    if let supervise::Status::Signaled(31) = outcome.status {
        say(format_args!(
            "shellcage: the command was killed by SIGSYS: seccomp refused a system call from a foreign ABI"
        ));
    }
    if policy.report {
        let report = Report {
            shellcage: env!("CARGO_PKG_VERSION"),
            profile: &policy.profile,
            profile_source: &policy.source,
            profile_hash: policy.profile_chain.hash(),
            tier: launch.plan.tier,
            workspace: &policy.workspace,
            argv: &req.argv,
            network: policy.network,
            enforcement: &launch.plan.enforcement,
            environment: &env_out,
            env_files: launch.mounts.as_ref().map(|m| &m.env_scan),
            fallback: fallback.as_deref(),
            outcome: &outcome,
        };
        write_report(&report, req.opts.report_file.as_deref());
    }
    if let Some(log) = audit {
        let record = crate::audit::Record {
            time: crate::audit::now_rfc3339(),
            user: user_name(),
            uid: nix::unistd::getuid().as_raw(),
            workspace: policy.workspace.clone(),
            argv: req.argv.clone(),
            profile: policy.profile.clone(),
            profile_hash: policy.profile_chain.hash(),
            tier: serde_json::to_value(launch.plan.tier).unwrap_or_default(),
            enforcement: serde_json::to_value(&launch.plan.enforcement).unwrap_or_default(),
            status: serde_json::to_value(&outcome.status).unwrap_or_default(),
            exit_code: outcome.exit_code,
            duration_ms: outcome.duration_ms,
            timeout: outcome.status == supervise::Status::TimedOut,
            prev: String::new(),
        };
        if let Err(e) = log.append(record) {
            eprintln!("shellcage: {e}");
        }
    }
    Ok(outcome.exit_code)
}

/// Refuse an audit log the sandbox could reach: in any tier one inside a
/// writable tree (it could be moved or replaced around its mask), and in the
/// container tier (which cannot mask single files) one inside any visible tree.
fn audit_hidden(
    policy: &Policy,
    plan: &Plan,
    audit: Option<&crate::audit::AuditLog>,
) -> Result<(), LaunchError> {
    let Some(log) = audit else { return Ok(()) };
    let path = log.path();
    // In any tier, a log in a tree the command can write could be renamed,
    // replaced or redirected around its mask between runs: refuse it.
    let writable = (policy.workspace_access == Access::Write
        && path.starts_with(&policy.workspace))
        || policy
            .paths
            .iter()
            .any(|r| r.access == Access::Write && path.starts_with(&r.path));
    if writable {
        return Err(LaunchError::Invalid(format!(
            "audit log {} lies inside a tree the sandbox can write (hint: keep the audit log outside the workspace and the --write paths)",
            path.display()
        )));
    }
    if plan.tier != Tier::Container {
        return Ok(()); // masked by the mount plan (policy.hide)
    }
    let visible = path.starts_with(&policy.workspace)
        || path.starts_with("/tmp")
        || path.starts_with("/dev")
        || policy.paths.iter().any(|r| path.starts_with(&r.path));
    if visible {
        return Err(LaunchError::Invalid(format!(
            "audit log {} lies inside a tree the sandbox can see, and the container tier cannot hide single files (hint: put the audit log outside the workspace and the profile's paths)",
            path.display()
        )));
    }
    Ok(())
}

fn cleanup(launch: &Launch) {
    if let Some(m) = &launch.mounts {
        mount::cleanup(m);
    }
    if let Some(run) = &launch.run_dir {
        run.remove();
    }
}

fn write_report(report: &Report<'_>, file: Option<&Path>) {
    let Ok(json) = serde_json::to_string(report) else {
        return;
    };
    match file {
        Some(path) => {
            if let Err(e) = std::fs::write(path, format!("{json}\n")) {
                say(format_args!(
                    "shellcage: cannot write report {}: {e}",
                    path.display()
                ));
            }
        }
        None => say(format_args!("{json}")),
    }
}

/// Print one line on stderr, ignoring errors: a closed or broken stderr is
/// not an error (`eprintln!` panics on EPIPE, which turned the command's
/// status into 101).
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

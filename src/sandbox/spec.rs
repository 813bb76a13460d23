//! Describing one sandbox on the host: Policy + Plan → [`SandboxSpec`], every
//! value the sandbox processes need, computed before any namespace exists (so
//! nothing on the child side reads host state).
//!
//! The steps here that change the host are the mount plan's protected paths
//! (placeholders), in the container tier the per-run directory, and the
//! run's cgroups (memory, process and CPU limits);
//! [`SandboxSpec::cleanup`] undoes them all, and a failing [`describe`] has
//! undone them before it returns.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::cgroup::{Cgroup, CgroupError, CgroupPlan, LimitStatus, Swap, Verdict};
use super::configs::{self, Configs};
use super::container_tier::{self, Allowlist, ContainerTierError, RunDir};
use super::devices::{self, GpuNodes};
use super::env::{self, EnvOutcome, Fixed};
use super::envrules;
use super::home::{self, Attached, HomeError};
use super::landlock::LandlockSpec;
use super::lookups;
use super::mount::{self, DEV_NODES, LayerDirs, MountError, MountPlan};
use super::net::{self, Listening, NetSpec};
use super::pyenv;
use super::rootview;
use super::seccomp::{self, SeccompError, SeccompSpec};
use crate::net::rules::RuleSet;
use crate::plan::{Plan, Tier};
use crate::policy::{HideRule, HomeMode, Limits, NetMode, Policy};

/// Everything the sandbox processes need: the sandbox itself (namespaces,
/// root, Landlock rules, seccomp program, limits: what a warm sandbox would
/// keep for many commands), and the one command to run in it.
pub struct SandboxSpec {
    pub plan: Plan,
    /// The mount plan (namespaces tier); `None` in the container tier.
    pub mounts: Option<MountPlan>,
    pub uid: u32,
    pub gid: u32,
    /// Started by root (namespaces tier): the host id that uid and gid 0 of
    /// the sandbox are, its writable trees id-mapped (see [`rootview`]).
    pub mapped_root: Option<u32>,
    pub hostname: &'static str,
    pub seccomp: seccompiler::BpfProgram,
    pub landlock: LandlockSpec,
    pub limits: Limits,
    /// Container tier: the per-run directory holding `$HOME` and `$TMPDIR`,
    /// removed after the run.
    pub run_dir: Option<RunDir>,
    /// The lock of an overlay workspace's layer (held by the caller): the
    /// init keeps its copy open until the sandbox is gone (the command never
    /// has it: close-on-exec).
    pub layer_lock: Option<std::os::fd::RawFd>,
    /// The tool config files found, and what the sandbox shows of each.
    pub configs: Configs,
    /// The kept part of the home (`home = "persistent"`, namespaces tier),
    /// locked while the run lasts; [`home::after_run`] measures it.
    pub home: Option<Attached>,
    /// Why the persistent home could not be kept here (the run has a fresh one).
    pub home_unavailable: Option<String>,
    /// The run's cgroups (`None` when no limit needs one), created below the
    /// cgroups shellcage runs in; the sandbox is placed in them by `spawn`
    /// before its first step, and they are removed by [`SandboxSpec::end_limits`]
    /// or [`SandboxSpec::cleanup`] (or on drop).
    pub cgroup: Option<Cgroup>,
    /// The proxy's listeners and published ports (network mode `proxy`, `--publish`).
    pub net: Option<NetSpec>,
    /// The host's GPU nodes the sandbox gets (`[devices] gpu`; `None` when
    /// not asked for, empty when the host has none).
    pub devices: Option<GpuNodes>,
    /// Network mode `none` in a network namespace: the init answers name lookups itself,
    /// at once, and records the names ([`super::lookups`]).
    pub lookups: bool,
    /// A session's template (see the `session` module): the socket the init sends its
    /// namespaces on, instead of running a command.
    pub template: Option<std::os::fd::RawFd>,
    /// What the mount plan's steps added to or changed in the environment (the kept
    /// home, pyenv, proxy variables): a session's later commands get the same on top of
    /// their own environment.
    pub env_delta: Vec<(String, String)>,
    /// A session's template: the mounts its root has (each command's copy must have
    /// them all; 0 otherwise).
    pub warm_mounts: usize,
    pub command: CommandSpec,
}

/// The run's cgroup limits (the report's `limits`): each limit and what held
/// it, and what the groups saw, read after the sandbox ended.
#[derive(Debug, serde::Serialize)]
pub struct LimitsOutcome {
    pub requested: Vec<LimitStatus>,
    pub swap: Swap,
    /// Optional settings the kernel did not take.
    pub notes: Vec<String>,
    pub verdict: Verdict,
    /// The limits that ended or cut short the command, as said on stderr.
    pub ended: Vec<String>,
    /// The groups could not all be removed (the error names what is left).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removal_error: Option<String>,
}

/// The command's own part of a [`SandboxSpec`].
pub struct CommandSpec {
    /// `argv[0]` is looked up in the sandbox's PATH.
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// The sandbox's PATH, for the lookup of `argv[0]`.
    pub path: String,
    /// Working directory inside the sandbox.
    pub cwd: PathBuf,
    /// An interactive shell on a terminal: keep the controlling terminal
    /// (foreground process group) instead of `setsid`, when the command has no
    /// pty of its own ([`CommandSpec::terminal`]).
    pub interactive: bool,
    /// The command's own pty, relayed to the caller's terminal by the supervisor (set by
    /// the supervisor after [`describe`], when the caller's stdin is its terminal; see
    /// [`super::terminal`]).
    pub terminal: Option<super::terminal::TerminalSpec>,
    /// When set (`-v`), the sandbox reports phase timestamps (µs since this
    /// instant) over the report pipe ([`super::report::Message::Phase`]).
    pub timing: Option<Instant>,
}

/// Why a sandbox could not be described (nothing ran; exit 125).
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    ContainerTier(#[from] ContainerTierError),
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("cannot set up the run's cgroup limits: {0}")]
    Cgroup(#[from] CgroupError),
    /// The network lists or published ports cannot be arranged (nothing ran).
    #[error("{0}")]
    Network(String),
    /// `--gpu` on a host without any GPU device node (nothing ran).
    #[error(
        "--gpu: this host has no GPU device node (none of {} is a character device); nothing ran (hint: check that the driver is loaded: ls -l /dev/dri /dev/nvidia*, nvidia-smi; or drop --gpu)",
        super::devices::GPU_PATTERNS
    )]
    NoGpu,
}

/// What the command is and how it starts.
pub struct Command<'a> {
    pub argv: &'a [CString],
    /// The caller's working directory.
    pub cwd: &'a Path,
    pub interactive: bool,
    /// The caller's user name (`USER`, `LOGNAME`).
    pub user: &'a str,
    /// The policy in force as a file (`explain`'s view: paths and rules, no
    /// contents), and where the sandbox shows it, read-only.
    pub policy_file: Option<(&'a Path, &'a [u8])>,
}

/// Describe the sandbox for `policy` as `plan` says: the seccomp program, the
/// mount plan or the container tier's allowlist and per-run directory, the
/// environment, the Landlock rules, and the cgroups of `cgroups` (created
/// last, so nothing else is left to undo when that fails). `layer`: the
/// overlay workspace's layer (held by the caller for the sandbox's life).
pub fn describe(
    policy: &Policy,
    plan: Plan,
    command: &Command<'_>,
    cgroups: &CgroupPlan,
    layer: Option<&LayerDirs>,
) -> Result<(SandboxSpec, EnvOutcome), DescribeError> {
    describe_with(policy, plan, command, cgroups, layer, None)
}

/// The environment a command gets from the caller's environment `host`, before the
/// mount plan's steps (see [`SandboxSpec::env_delta`]), and its working directory.
pub fn command_env(
    policy: &Policy,
    plan: &Plan,
    command: &Command<'_>,
    host: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> (EnvOutcome, PathBuf) {
    let cwd = match plan.tier {
        Tier::Namespaces => sandbox_cwd(policy, command.cwd),
        Tier::Container => command.cwd.to_path_buf(),
    };
    let shell = policy.shell_path().map(Path::to_path_buf);
    let mut env = env::build(
        &policy.env,
        host,
        &Fixed {
            home: &policy.home,
            user: command.user,
            pwd: &cwd,
            profile: &policy.profile,
            shell: shell.as_deref(),
        },
    );
    if policy.network == NetMode::None {
        env.no_network_defaults = envrules::add_no_network_defaults(&mut env.vars);
    }
    (env, cwd)
}

/// [`describe`], with the `.env` files already found (`scan`: a session's index, which
/// has no depth limit) instead of the mount plan's own scan.
pub fn describe_with(
    policy: &Policy,
    plan: Plan,
    command: &Command<'_>,
    cgroups: &CgroupPlan,
    layer: Option<&LayerDirs>,
    scan: Option<mount::EnvScan>,
) -> Result<(SandboxSpec, EnvOutcome), DescribeError> {
    let seccomp = seccomp::build(&SeccompSpec {
        allow_inet: plan.seccomp_allow_inet,
    })?;
    let net = net_spec(policy, &plan)?;
    let gpu = gpu_nodes(policy)?;
    let (mut env, cwd) = command_env(policy, &plan, command, std::env::vars_os());
    let env_base = env.vars.clone();
    let (mut kept, mut unavailable) = (None, None);
    let (mounts, run_dir, allow, configs) = match plan.tier {
        Tier::Namespaces => {
            let mut m = mount::prepare_scanned(policy, layer, scan)?;
            let configs = configs::apply(&mut m, &policy.home, &env.vars);
            pyenv::apply(&mut m, &policy.home, &mut env.vars);
            if policy.home_mode == HomeMode::Persistent {
                match home::attach(&mut m, policy, &mut env.vars) {
                    Ok(a) => kept = Some(a),
                    Err(e) if e.unavailable() => unavailable = Some(e.to_string()),
                    Err(e) => {
                        mount::cleanup(&m);
                        return Err(e.into());
                    }
                }
            }
            if let Some((at, bytes)) = command.policy_file {
                // Information for the command (`shellcage explain` inside),
                // not a guarantee: a path the plan cannot take goes unshown.
                if let Err(e) = m.add_file(at, bytes.to_vec(), 0o444) {
                    tracing::warn!("policy file not shown in the sandbox: {e}");
                }
            }
            if net.as_ref().is_some_and(|n| n.proxy.is_some()) {
                add_resolver_files(&mut m, PROXY_FILES, "proxy", "the proxy's resolver")
                    .inspect_err(|_| {
                        mount::cleanup(&m);
                    })?;
            }
            if answers_lookups(policy, &plan) {
                // Not a guarantee: without it a lookup fails as it did before (later,
                // with a musl resolver). Only where the sandbox reads resolv.conf: a
                // host without one makes resolvers ask 127.0.0.1, the responder already.
                if let Err(e) =
                    add_resolver_files(&mut m, NONE_FILES, "none", "the sandbox's own answers")
                {
                    tracing::warn!("{e}");
                }
            }
            if let Some(g) = &gpu {
                m.add_devices(g);
            }
            (Some(m), None, None, configs)
        }
        // A fresh $HOME and $TMPDIR per run (no private tmpfs without a mount
        // namespace), and the Landlock allowlist that replaces the mount
        // namespace's view; config files with a secret are left out of it.
        Tier::Container => {
            let run = RunDir::create(policy)?;
            let mut p = policy.clone();
            for path in configs::container_hides(&policy.home, &env.vars) {
                p.hide.push(HideRule { pattern: path });
            }
            match container_tier::allowlist(&p, &run.root) {
                Ok(a) => (None, Some(run), Some(a), Configs::default()),
                Err(e) => {
                    run.remove();
                    return Err(e.into());
                }
            }
        }
    };
    if let Some(run) = &run_dir {
        pyenv::apply_in_dir(&run.tmp, &policy.home, &mut env.vars);
        for (k, v) in [("HOME", &run.home), ("TMPDIR", &run.tmp)] {
            if !env.explicit.iter().any(|e| e == k) {
                env.vars.insert(k.into(), v.display().to_string());
            }
        }
    }
    if let Some(l) = net.as_ref().and_then(|n| n.proxy.as_ref()) {
        for (name, value) in net::proxy_env(l.explicit) {
            env.vars.insert(name.into(), value);
        }
    }
    let mut landlock = landlock_spec(&plan, mounts.as_ref(), allow.as_ref(), gpu.as_ref());
    if let Some(n) = &net {
        landlock.tcp_connect = n.proxy.iter().flat_map(Listening::ports).collect();
        landlock.tcp_connect.extend(&n.publish);
        landlock.tcp_bind = n.publish.clone();
    }
    let uid = nix::unistd::geteuid().as_raw();
    let mut mounts = mounts;
    let mapped_root = match mounts.as_mut() {
        Some(m) if plan.map_root => {
            m.idmapped = rootview::trees(m, &policy.workspace, &policy.home);
            if m.idmapped.len() > crate::sys::MAX_PASSED_FDS {
                mount::cleanup(m);
                return Err(MountError::Invalid(format!(
                    "{} writable trees, more than the {} a sandbox started by root can bind id-mapped (hint: fewer --write paths)",
                    m.idmapped.len(),
                    crate::sys::MAX_PASSED_FDS
                ))
                .into());
            }
            Some(rootview::MAPPED_ROOT)
        }
        _ => None,
    };
    let lookups = answers_lookups(policy, &plan);
    let env_delta = env
        .vars
        .iter()
        .filter(|(k, v)| env_base.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut spec = SandboxSpec {
        template: None,
        env_delta,
        warm_mounts: 0,
        mounts,
        mapped_root,
        uid,
        gid: nix::unistd::getegid().as_raw(),
        hostname: "shellcage",
        seccomp,
        landlock,
        limits: policy.limits.clone(),
        plan,
        run_dir,
        layer_lock: None,
        configs,
        home: kept,
        home_unavailable: unavailable,
        cgroup: None,
        lookups,
        net,
        devices: gpu,
        command: CommandSpec {
            argv: command.argv.to_vec(),
            envp: env.to_cstrings(),
            path: env.vars.get("PATH").cloned().unwrap_or_default(),
            cwd,
            interactive: command.interactive,
            terminal: None,
            timing: tracing::enabled!(tracing::Level::DEBUG).then(Instant::now),
        },
    };
    if !cgroups.groups.is_empty() {
        match Cgroup::create(cgroups) {
            Ok(cg) => spec.cgroup = Some(cg),
            Err(e) => {
                spec.cleanup();
                return Err(e.into());
            }
        }
    }
    Ok((spec, env))
}

impl SandboxSpec {
    /// After the sandbox has ended: what its cgroups saw, then remove them
    /// (killing anything left in them). `None` without cgroups.
    pub fn end_limits(&mut self) -> Option<LimitsOutcome> {
        let (outcome, cg) = self.end_limits_kept()?;
        Some(LimitsOutcome {
            removal_error: cg.remove().err().map(|e| e.to_string()),
            ..outcome
        })
    }

    /// [`end_limits`](Self::end_limits) without removing the cgroups: a session's
    /// command removes them after its client has heard the end (removing a cgroup
    /// waits for the kernel's cgroup lock, which another command's start may hold for
    /// a grace period). Their removal error is then not in the report.
    pub fn end_limits_kept(&mut self) -> Option<(LimitsOutcome, crate::sandbox::cgroup::Cgroup)> {
        let cg = self.cgroup.take()?;
        let verdict = cg.verdict();
        let outcome = LimitsOutcome {
            requested: cg.limits().to_vec(),
            swap: cg.swap().clone(),
            notes: cg.notes().to_vec(),
            ended: verdict.ended().iter().map(|e| e.to_string()).collect(),
            verdict,
            removal_error: None,
        };
        Some((outcome, cg))
    }

    /// Undo what [`describe`] did on the host: placeholders, the per-run
    /// directory, the cgroups; and check what the run left in the workspace.
    /// Called on every exit path once the spec exists; returns what the
    /// exit step did (for the report).
    pub fn cleanup(&mut self) -> mount::AfterRun {
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.remove() {
                crate::say!("shellcage: {e}");
            }
        }
        let after = self.mounts.as_ref().map(mount::cleanup).unwrap_or_default();
        if let Some(run) = &self.run_dir {
            run.remove();
        }
        after
    }
}

/// The host's GPU nodes when the policy asks for them: `--gpu` on a host
/// without any refuses; a profile's `gpu = true` runs without (launch says so).
fn gpu_nodes(policy: &Policy) -> Result<Option<GpuNodes>, DescribeError> {
    if !policy.devices.gpu {
        return Ok(None);
    }
    let found = devices::scan_gpu();
    for s in &found.skipped {
        tracing::debug!(path = %s.path.display(), why = s.why, "device not exposed");
    }
    if found.nodes.is_empty() && policy.devices.gpu_from_command_line {
        return Err(DescribeError::NoGpu);
    }
    Ok(Some(found))
}

/// The Landlock rules for the sandbox's view. Devices get read, write and
/// ioctl on exactly their own paths: the basic nodes, /dev/pts, and the GPU
/// nodes of `gpu` (never /dev as a whole: in the container tier the host's
/// whole /dev is there).
fn landlock_spec(
    plan: &Plan,
    mounts: Option<&MountPlan>,
    allow: Option<&Allowlist>,
    gpu: Option<&GpuNodes>,
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
    dev_rw.extend(
        gpu.iter()
            .flat_map(|g| g.nodes.iter().map(|n| n.path.clone())),
    );
    LandlockSpec {
        list,
        read,
        write,
        dev_rw,
        proc_path: Some(PathBuf::from("/proc")),
        deny_tcp: plan.landlock_tcp,
        tcp_connect: vec![],
        tcp_bind: vec![],
        scopes: plan.landlock_scopes,
        required: plan.landlock_required,
    }
}

/// The network pieces `plan` asks for: the proxy's listeners (the explicit port chosen clear
/// of every other listener and published port), and the published ports inside, which
/// must not be one of the proxy's.
fn net_spec(policy: &Policy, plan: &Plan) -> Result<Option<NetSpec>, DescribeError> {
    let publish: Vec<u16> = policy.publish.iter().map(|p| p.sandbox_port).collect();
    if !plan.proxy && publish.is_empty() {
        return Ok(None);
    }
    let proxy = if plan.proxy {
        let e = &policy.egress;
        let rules = RuleSet::new(&e.allow, &e.deny, &e.allow_private)
            .map_err(|e| DescribeError::Network(e.to_string()))?;
        let transparent: Vec<u16> = rules
            .ports()
            .into_iter()
            .filter(|&p| p != net::DNS_PORT)
            .collect();
        let mut taken = transparent.clone();
        taken.extend(&publish);
        let range = crate::net::engine::TRANSPARENT_RANGE;
        let std::net::IpAddr::V4(base) = range.addr() else {
            return Err(DescribeError::Network(
                "the transparent range must be IPv4".into(),
            ));
        };
        Some(Listening {
            explicit: net::explicit_port(&taken),
            transparent,
            range: (base, range.prefix_len()),
        })
    } else {
        None
    };
    if let Some(l) = &proxy {
        if let Some(p) = publish.iter().find(|p| l.ports().contains(p)) {
            return Err(DescribeError::Network(format!(
                "--publish: port {p} inside the sandbox is one of the proxy's listeners ({}) (hint: publish another sandbox port, e.g. --publish {p}:{})",
                l.ports()
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                p.saturating_add(8000).max(1024),
            )));
        }
    }
    Ok(Some(NetSpec {
        proxy,
        publish,
        channel: None,
    }))
}

/// Network mode `none` in the namespaces tier: the init answers name lookups
/// ([`super::lookups`]). The container tier has no namespace of its own to answer in (its
/// seccomp filter refuses inet sockets: lookups fail at once there).
fn answers_lookups(policy: &Policy, plan: &Plan) -> bool {
    policy.network == NetMode::None && plan.new_netns
}

/// The files that point resolvers at the proxy's resolver (mode `proxy`) and at the
/// init's answers (mode `none`, where `/etc/hosts` stays the host's: loopback names).
const PROXY_FILES: &[(&str, &str)] = &[
    ("/etc/resolv.conf", net::RESOLV_CONF),
    ("/etc/hosts", net::HOSTS),
];
const NONE_FILES: &[(&str, &str)] = &[("/etc/resolv.conf", lookups::RESOLV_CONF)];

/// Names resolve inside the sandbox's own namespace: generated, read-only resolv.conf
/// (and in proxy mode hosts) files show where the sandbox reads `/etc/resolv.conf` and
/// `/etc/hosts` ([`link_target`]). Without a host file there is nothing to cover (glibc,
/// musl and Go then default to 127.0.0.1, which is the resolver too). In proxy mode a plan
/// that cannot show them refuses the run (names would not resolve, and the command would
/// fail far from the cause).
fn add_resolver_files(
    m: &mut MountPlan,
    files: &[(&str, &str)],
    mode: &str,
    resolver: &str,
) -> Result<(), DescribeError> {
    for (path, text) in files {
        let Some(at) = link_target(Path::new(path)) else {
            continue;
        };
        m.add_file(&at, text.as_bytes().to_vec(), 0o444)
            .map_err(|e| {
                DescribeError::Network(format!(
                    "network mode {mode}: cannot point {path} at {resolver}: {e} (hint: make {path} a plain file or a symlink into /run)"
                ))
            })?;
    }
    Ok(())
}

/// The file that `path` names once its symlinks are followed, lexically (the target may
/// not exist on the host: systemd-resolved's stub file when the service is down, or a
/// file under /run, which the sandbox does not show; the generated copy is then placed
/// there, under the sandbox's own root). Directories on the way are canonicalised on the
/// host (`/var/run` → `/run`), as the sandbox shows them at the same paths. `None`: the
/// path does not exist at all, or the chain is longer than 8 links.
fn link_target(path: &Path) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..8 {
        let meta = std::fs::symlink_metadata(&p);
        let is_link = meta.as_ref().is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            return (meta.is_ok() || p != path).then_some(p);
        }
        let target = std::fs::read_link(&p).ok()?;
        let parent = p.parent().unwrap_or(Path::new("/"));
        let joined = if target.is_absolute() {
            target
        } else {
            parent.join(target)
        };
        p = lexical(&joined);
        if let (Some(dir), Some(name)) = (p.parent(), p.file_name()) {
            if let Ok(real) = std::fs::canonicalize(dir) {
                p = real.join(name);
            }
        }
    }
    None
}

/// `..` and `.` removed without touching the filesystem.
fn lexical(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_rules_name_exactly_the_nodes_never_dev() {
        let policy = Policy::for_tests(Path::new("/w"), Path::new("/home/u"));
        let features = crate::probe::Features {
            landlock_abi: 7,
            arch_supported: true,
            ..Default::default()
        };
        let plan = crate::plan::plan(&policy, &features).unwrap();
        let gpu = GpuNodes {
            nodes: vec![devices::DeviceNode {
                path: PathBuf::from("/dev/dri/renderD128"),
                major: 226,
                minor: 128,
            }],
            links: vec![devices::DeviceLink {
                path: PathBuf::from("/dev/dri/by-path/pci-render"),
                target: PathBuf::from("../renderD128"),
            }],
            skipped: vec![],
        };
        let basic: Vec<PathBuf> = landlock_spec(&plan, None, None, None).dev_rw;
        assert_eq!(basic.len(), DEV_NODES.len() + 1, "{basic:?}");
        let with = landlock_spec(&plan, None, None, Some(&gpu)).dev_rw;
        let mut want = basic.clone();
        want.push(PathBuf::from("/dev/dri/renderD128"));
        assert_eq!(with, want);
        assert!(
            !with
                .iter()
                .any(|p| p == Path::new("/dev") || p == Path::new("/dev/dri"))
        );
    }

    #[test]
    fn link_target_follows_relative_absolute_and_dangling_links() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let etc = root.join("etc");
        let run = root.join("run/systemd/resolve");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        // A plain file is its own target; a missing one has none.
        std::fs::write(etc.join("hosts"), "x").unwrap();
        assert_eq!(link_target(&etc.join("hosts")), Some(etc.join("hosts")));
        assert_eq!(link_target(&etc.join("nothing")), None);
        // Relative, through `..`, to a file that does not exist (resolved is down).
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", etc.join("r"))
            .unwrap();
        assert_eq!(
            link_target(&etc.join("r")),
            Some(run.join("stub-resolv.conf"))
        );
        // A chain: absolute link to a link.
        std::os::unix::fs::symlink(etc.join("r"), etc.join("chain")).unwrap();
        assert_eq!(
            link_target(&etc.join("chain")),
            Some(run.join("stub-resolv.conf"))
        );
        // A directory symlink on the way is canonicalised (/var/run -> /run).
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink(root.join("run"), root.join("var/run")).unwrap();
        std::os::unix::fs::symlink(
            root.join("var/run/systemd/resolve/stub-resolv.conf"),
            etc.join("via"),
        )
        .unwrap();
        assert_eq!(
            link_target(&etc.join("via")),
            Some(run.join("stub-resolv.conf"))
        );
        // A loop has no target.
        std::os::unix::fs::symlink(etc.join("b"), etc.join("a")).unwrap();
        std::os::unix::fs::symlink(etc.join("a"), etc.join("b")).unwrap();
        assert_eq!(link_target(&etc.join("a")), None);
    }
}

//! Landlock: the second layer behind the mount namespace, plus TCP and IPC scoping.
//!
//! [`apply`] restricts the *calling thread* (and everything it later forks or execs) with
//! one Landlock ruleset built from a [`LandlockSpec`]:
//!
//! - filesystem: every right this module knows is *handled* (denied by default); the
//!   spec's paths get rules that allow some of them back beneath each path;
//! - TCP: with `deny_tcp`, `bind(2)` and `connect(2)` on TCP sockets are handled and no
//!   port is allowed, so both fail with `EACCES` (ABI ≥ 4). This is reported as partial:
//!   MPTCP sockets and TCP Fast Open get past it (see [`LandlockStatus::expected`]);
//! - scopes: with `scopes`, connecting to abstract unix sockets and sending signals to
//!   processes outside the sandbox's Landlock domain fail with `EPERM` (ABI ≥ 6).
//!
//! The kernel may be older than the rights we ask for: the ruleset is built best-effort
//! (the crate's [`CompatLevel::BestEffort`] drops what the kernel does not know), and
//! [`LandlockStatus`] says per guarantee what was enforced. Only the ABI 1 filesystem
//! rights are a hard requirement when [`LandlockSpec::required`] is set.
//!
//! Landlock only adds restrictions: a rule can allow rights beneath a directory, never
//! deny a subpath of an allowed tree. Carving protected paths out of a writable workspace
//! is the mount layer's job (read-only binds).
//!
//! The ruleset applies to the calling thread only. Call [`apply`] in the single-threaded
//! command process, after file descriptors are closed (an fd opened before
//! `landlock_restrict_self` keeps its access) and just before seccomp and `execve`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope, make_bitflags,
};
use nix::errno::Errno;

use crate::sys;

/// The newest Landlock ABI whose access rights and scopes we request.
///
/// ABI 7 (audit log flags) and ABI 8 (`LANDLOCK_RESTRICT_SELF_TSYNC`) add no access
/// rights; the kernel defaults for them are kept. ABI 9 adds
/// `LANDLOCK_ACCESS_FS_RESOLVE_UNIX` (connecting to pathname unix sockets); it is not
/// requested until it has been tested on a kernel that has it. Raising this constant is a
/// deliberate change: re-read the kernel's Landlock changelog and test on that ABI first.
const RIGHTS_ABI: ABI = ABI::V6;

/// The rights the kernel accepts on a rule whose path is not a directory.
/// (A directory-only right on a file rule is `EINVAL`.)
const FILE_RIGHTS: BitFlags<AccessFs> =
    make_bitflags!(AccessFs::{ReadFile | WriteFile | Execute | Truncate | IoctlDev});

/// What to allow back once every filesystem right is denied. Paths that do not exist are
/// skipped (that only narrows access).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LandlockSpec {
    /// Directory listing only (`ReadDir`) beneath these paths: lets `ls /` work
    /// without granting reads of the files below.
    pub list: Vec<PathBuf>,
    /// Read and execute beneath these paths (`ReadFile`, `ReadDir`, `Execute`).
    pub read: Vec<PathBuf>,
    /// Every filesystem right we handle, beneath these paths.
    pub write: Vec<PathBuf>,
    /// Device files (`/dev/null`, `/dev/tty` …): `ReadFile`, `WriteFile`, `IoctlDev`.
    pub dev_rw: Vec<PathBuf>,
    /// The sandbox's `/proc`: read, execute and `WriteFile` (e.g. `/proc/self/fd/1`).
    pub proc_path: Option<PathBuf>,
    /// Deny TCP `bind(2)` and `connect(2)` (ABI ≥ 4; best-effort below). Not all TCP:
    /// see [`LandlockStatus::expected`].
    pub deny_tcp: bool,
    /// With `deny_tcp`: ports `connect(2)` may still reach (the proxy's listeners; the
    /// proxy's own destination ports). Landlock names ports, not addresses.
    #[serde(default)]
    pub tcp_connect: Vec<u16>,
    /// With `deny_tcp`: ports `bind(2)` may still take (published ports).
    #[serde(default)]
    pub tcp_bind: Vec<u16>,
    /// Scope abstract unix sockets and signals to the sandbox (ABI ≥ 6; best-effort below).
    pub scopes: bool,
    /// Fail when the kernel cannot enforce the filesystem rules at all.
    pub required: bool,
}

/// How much of one guarantee Landlock enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforced {
    /// Everything the guarantee needs, as far as Landlock can see it.
    Full,
    /// Some of it: the kernel lacks rights added by later ABIs, or Landlock itself
    /// cannot cover the whole guarantee (TCP).
    Partial,
    /// Nothing (not requested, or not supported by the kernel).
    No,
}

/// What [`apply`] enforced, per guarantee. The command process sends it to the
/// supervisor (`sandbox::report`), so the report states what this run got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LandlockStatus {
    /// The kernel's Landlock ABI version; 0 when Landlock is unavailable.
    pub abi: u32,
    /// The kernel's answer for the whole ruleset (the crate's `RulesetStatus`:
    /// every requested right enforced, some, or none); `None` in an
    /// expectation ([`LandlockStatus::expected`]), which has not asked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruleset: Option<Enforced>,
    pub filesystem: Enforced,
    pub tcp: Enforced,
    pub scopes: Enforced,
}

impl LandlockStatus {
    /// What [`apply`] enforces for `spec` on a kernel with Landlock ABI `abi`.
    ///
    /// Filesystem is partial below ABI 5: no `IoctlDev` (ABI 5), no `Truncate` (ABI 3) and
    /// no `Refer` (ABI 2; without it the kernel refuses every cross-directory rename or
    /// link, which is stricter, not weaker).
    pub fn expected(abi: u32, spec: &LandlockSpec) -> Self {
        let filesystem = match abi {
            0 => Enforced::No,
            1..=4 => Enforced::Partial,
            _ => Enforced::Full,
        };
        // Never Full: Landlock's TCP rights only see bind(2)/connect(2) on IPPROTO_TCP
        // sockets. An IPPROTO_MPTCP socket connects to any plain TCP listener unchecked
        // (landlock-lsm/linux#54, open), and sendto(MSG_FASTOPEN) opens a TCP connection
        // without connect(2) (landlock-lsm/linux#41, fixed in 7.2-rc4 and marked for
        // stable; both measured on 6.18). "No TCP egress" needs the network namespace or
        // a seccomp filter on socket(2) as well.
        let tcp = if spec.deny_tcp && abi >= 4 {
            Enforced::Partial
        } else {
            Enforced::No
        };
        let scopes = if spec.scopes && abi >= 6 {
            Enforced::Full
        } else {
            Enforced::No
        };
        LandlockStatus {
            abi,
            ruleset: None,
            filesystem,
            tcp,
            scopes,
        }
    }

    fn none(abi: u32) -> Self {
        LandlockStatus {
            abi,
            ruleset: Some(Enforced::No),
            filesystem: Enforced::No,
            tcp: Enforced::No,
            scopes: Enforced::No,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error(
        "landlock is not available on this kernel: landlock_create_ruleset => {errno} (hint: {hint})"
    )]
    Unavailable { errno: Errno, hint: &'static str },
    #[error(
        "landlock rules were not enforced by this kernel (hint: Linux 5.13 or later with landlock enabled is needed; see 'shellcage doctor')"
    )]
    NotEnforced,
    #[error("landlock rule for {}: cannot open", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("landlock rule for {}: cannot stat", path.display())]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("landlock rule for {}", path.display())]
    Rule {
        path: PathBuf,
        #[source]
        source: landlock::RulesetError,
    },
    #[error("cannot build the landlock ruleset")]
    Ruleset(#[source] landlock::RulesetError),
    #[error("landlock_restrict_self failed")]
    RestrictSelf(#[source] landlock::RulesetError),
}

fn unavailable_hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EOPNOTSUPP => {
            "landlock is built in but disabled: add 'landlock' to the lsm= boot parameter; see 'shellcage doctor'"
        }
        Errno::ENOSYS => {
            "Linux 5.13 or later built with CONFIG_SECURITY_LANDLOCK is needed, and no seccomp filter (e.g. a container runtime's) may block the landlock syscalls; see 'shellcage doctor'"
        }
        _ => "see 'shellcage doctor'",
    }
}

fn read_rights() -> BitFlags<AccessFs> {
    AccessFs::from_read(RIGHTS_ABI)
}

fn all_rights() -> BitFlags<AccessFs> {
    AccessFs::from_all(RIGHTS_ABI)
}

fn dev_rights() -> BitFlags<AccessFs> {
    make_bitflags!(AccessFs::{ReadFile | WriteFile | IoctlDev})
}

fn proc_rights() -> BitFlags<AccessFs> {
    read_rights() | AccessFs::WriteFile
}

/// The rights a rule may carry on this inode: directory rights are dropped on anything
/// that is not a directory (the kernel would refuse the rule with `EINVAL`). Done here
/// rather than by the crate so that the crate does not count it as partial enforcement.
fn rights_for_inode(rights: BitFlags<AccessFs>, is_dir: bool) -> BitFlags<AccessFs> {
    if is_dir { rights } else { rights & FILE_RIGHTS }
}

/// Every (path, rights) pair of the spec, in a fixed order.
fn rules(spec: &LandlockSpec) -> Vec<(&Path, BitFlags<AccessFs>)> {
    let list = spec
        .list
        .iter()
        .map(|p| (p.as_path(), BitFlags::from(AccessFs::ReadDir)));
    let read = spec.read.iter().map(|p| (p.as_path(), read_rights()));
    let write = spec.write.iter().map(|p| (p.as_path(), all_rights()));
    let dev = spec.dev_rw.iter().map(|p| (p.as_path(), dev_rights()));
    let proc = spec.proc_path.iter().map(|p| (p.as_path(), proc_rights()));
    list.chain(read)
        .chain(write)
        .chain(dev)
        .chain(proc)
        .collect()
}

/// Opens `path` with `O_PATH` (no read permission needed, nothing is read), following
/// symlinks: the rule attaches to the inode the path resolves to now. `Ok(None)` when the
/// path does not exist.
fn open_rule_target(path: &Path) -> Result<Option<(File, bool)>, LandlockError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            tracing::debug!(path = %path.display(), "landlock: path does not exist, no rule");
            return Ok(None);
        }
        Err(source) => {
            return Err(LandlockError::Open {
                path: path.to_owned(),
                source,
            });
        }
    };
    let is_dir = file
        .metadata()
        .map_err(|source| LandlockError::Stat {
            path: path.to_owned(),
            source,
        })?
        .is_dir();
    Ok(Some((file, is_dir)))
}

fn add_rules(
    mut ruleset: RulesetCreated,
    spec: &LandlockSpec,
) -> Result<RulesetCreated, LandlockError> {
    for (path, rights) in rules(spec) {
        let Some((file, is_dir)) = open_rule_target(path)? else {
            continue;
        };
        let rule = PathBeneath::new(file, rights_for_inode(rights, is_dir));
        ruleset = ruleset
            .add_rule(rule)
            .inspect_err(
                |err| tracing::debug!(?err, path = %path.display(), "landlock_add_rule failed"),
            )
            .map_err(|source| LandlockError::Rule {
                path: path.to_owned(),
                source,
            })?;
    }
    Ok(ruleset)
}

/// The TCP ports `spec` excepts from `deny_tcp` (dropped by the crate, best-effort, on a
/// kernel without Landlock TCP: there TCP is not handled at all).
fn add_port_rules(
    mut ruleset: RulesetCreated,
    spec: &LandlockSpec,
) -> Result<RulesetCreated, LandlockError> {
    if !spec.deny_tcp {
        return Ok(ruleset);
    }
    let mut ports: Vec<(u16, BitFlags<AccessNet>)> = Vec::new();
    for (list, right) in [
        (&spec.tcp_connect, AccessNet::ConnectTcp),
        (&spec.tcp_bind, AccessNet::BindTcp),
    ] {
        for &port in list {
            match ports.iter_mut().find(|(p, _)| *p == port) {
                Some((_, rights)) => *rights |= right,
                None => ports.push((port, right.into())),
            }
        }
    }
    for (port, rights) in ports {
        ruleset = ruleset
            .add_rule(NetPort::new(port, rights))
            .map_err(|source| LandlockError::Rule {
                path: PathBuf::from(format!("tcp port {port}")),
                source,
            })?;
    }
    Ok(ruleset)
}

/// Restricts the calling thread with `spec` and reports what was enforced.
///
/// With `spec.required`, a kernel without Landlock is an error and nothing is changed.
/// Without it, such a kernel yields a status of all [`Enforced::No`].
pub fn apply(spec: &LandlockSpec) -> Result<LandlockStatus, LandlockError> {
    prepare(spec)?.restrict(spec)
}

/// A ruleset built from a spec and not yet enforced ([`prepare`]): a session's
/// pre-started sandbox builds it before its command comes, and the command's process
/// enforces it on itself ([`Prepared::restrict`]), as [`apply`] does in one step.
pub struct Prepared {
    created: Option<(landlock::RulesetCreated, u32)>,
}

impl Prepared {
    /// Restrict the calling thread with the prepared ruleset and report what was
    /// enforced (see [`apply`]).
    pub fn restrict(self, spec: &LandlockSpec) -> Result<LandlockStatus, LandlockError> {
        let Some((created, abi)) = self.created else {
            return Ok(LandlockStatus::none(0));
        };
        let restricted = created
            .restrict_self()
            .inspect_err(|err| tracing::debug!(?err, "landlock_restrict_self failed"))
            .map_err(LandlockError::RestrictSelf)?;

        if restricted.ruleset == RulesetStatus::NotEnforced {
            if spec.required {
                return Err(LandlockError::NotEnforced);
            }
            return Ok(LandlockStatus::none(abi));
        }
        let status = LandlockStatus {
            ruleset: Some(match restricted.ruleset {
                RulesetStatus::FullyEnforced => Enforced::Full,
                RulesetStatus::PartiallyEnforced => Enforced::Partial,
                RulesetStatus::NotEnforced => Enforced::No,
            }),
            ..LandlockStatus::expected(abi, spec)
        };
        tracing::debug!(?status, crate_status = ?restricted.ruleset, "landlock applied");
        Ok(status)
    }
}

/// Build `spec`'s ruleset (its rules' paths opened now) without enforcing it.
pub fn prepare(spec: &LandlockSpec) -> Result<Prepared, LandlockError> {
    let abi = match sys::landlock_abi_version() {
        Ok(abi) if abi > 0 => abi,
        Ok(_) | Err(_) if !spec.required => {
            tracing::debug!("landlock unavailable and not required: not applied");
            return Ok(Prepared { created: None });
        }
        Ok(_) => {
            return Err(LandlockError::Unavailable {
                errno: Errno::UnknownErrno,
                hint: unavailable_hint(Errno::UnknownErrno),
            });
        }
        Err(errno) => {
            return Err(LandlockError::Unavailable {
                errno,
                hint: unavailable_hint(errno),
            });
        }
    };

    // ABI 1 filesystem rights are the part a required spec cannot do without; every later
    // right, TCP and the scopes are taken when the kernel has them.
    let base_level = if spec.required {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    let mut ruleset = Ruleset::default()
        .set_compatibility(base_level)
        .handle_access(AccessFs::from_all(ABI::V1))
        .map_err(LandlockError::Ruleset)?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all_rights())
        .map_err(LandlockError::Ruleset)?;
    if spec.deny_tcp {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(RIGHTS_ABI))
            .map_err(LandlockError::Ruleset)?;
    }
    if spec.scopes {
        ruleset = ruleset
            .scope(Scope::from_all(RIGHTS_ABI))
            .map_err(LandlockError::Ruleset)?;
    }
    let created = ruleset.create().map_err(LandlockError::Ruleset)?;
    let created = add_rules(created, spec)?;
    let created = add_port_rules(created, spec)?;
    Ok(Prepared {
        created: Some((created, abi)),
    })
}

#[cfg(test)]
mod tests;

//! The validated, mechanism-neutral description of a sandbox.
//!
//! A `Policy` says *what* must hold (which paths are visible and how, which
//! variables pass, whether the network exists, the limits); it never says how.
//! `plan.rs` turns it into mechanisms. Every path in a `Policy` is absolute and
//! already expanded (`~`, `{workspace}`); every value has been validated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// How a path is made visible inside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Visible, read-only.
    Read,
    /// Visible, readable and writable.
    Write,
}

/// One host path that appears inside the sandbox at the same location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathRule {
    pub path: PathBuf,
    pub access: Access,
    /// Skipped silently when the path does not exist on the host (system
    /// directories, toolchains). Paths given on the command line are required.
    pub optional: bool,
}

/// A path that must not be readable inside the sandbox even when it lies
/// inside a visible tree. The last component may contain `*` wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HideRule {
    pub pattern: PathBuf,
}

/// How the sandbox reaches the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// A new network namespace with only loopback; TCP bind/connect also denied
    /// by Landlock where the kernel supports it.
    None,
    /// Like `None`, but TCP on the private loopback is allowed (test servers).
    Loopback,
    /// The host's network. Only by explicit choice.
    Host,
}

/// Which isolation tier a profile accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TierChoice {
    /// Namespaces are required: refuse to run without them.
    Full,
    /// Use namespaces; fall back to the container tier (Landlock + seccomp)
    /// when they are unavailable, and say so.
    Auto,
    /// Never create namespaces: Landlock + seccomp only.
    Container,
}

/// Whether a second-layer mechanism must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Requirement {
    Required,
    BestEffort,
}

/// `.env` / `.env.*` files in the workspace are hidden; this bounds the scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvFileScan {
    pub enabled: bool,
    /// Directory depth below the workspace root that is scanned (0 = root only).
    pub max_depth: usize,
    /// Directory names never descended into (node_modules, target, .git …).
    pub skip_dirs: Vec<String>,
    /// File names that match `.env.*` but are templates, left visible.
    pub allow_names: Vec<String>,
    /// Upper bound on directories read; the scan stops (and the report says
    /// so) when it is reached.
    pub max_dirs: usize,
}

/// Which variables reach the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvPolicy {
    /// Names (with `*` wildcards) passed from the caller when set.
    pub pass: Vec<String>,
    /// Variables set to fixed values.
    pub set: BTreeMap<String, String>,
    /// `--env NAME[=VALUE]` from the command line: passes even secret-looking
    /// names (the report lists them).
    pub explicit: Vec<(String, Option<String>)>,
}

/// Resource limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    #[serde(serialize_with = "ser_opt_duration")]
    pub timeout: Option<Duration>,
    /// RLIMIT_NOFILE (soft and hard).
    pub open_files: u64,
    /// RLIMIT_FSIZE in bytes.
    pub file_size: u64,
    /// RLIMIT_NPROC, when set (counted per user; see README).
    pub processes: Option<u64>,
    /// Size cap of the private /tmp tmpfs, in bytes.
    pub tmp_size: u64,
    /// Size cap of the private $HOME tmpfs, in bytes.
    pub home_size: u64,
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// The validated sandbox description. Built by `profile::load` and the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Profile name (`dev`, or the file stem of a user profile).
    pub profile: String,
    /// Where the profile came from: `builtin:dev` or a file path.
    pub source: String,
    /// SHA-256 (hex) of the profile chain's text, for the report and the audit log.
    pub profile_hash: String,
    pub tier: TierChoice,
    /// Absolute, canonical workspace directory.
    pub workspace: PathBuf,
    pub workspace_access: Access,
    /// The caller's home directory; a private tmpfs is mounted there.
    pub home: PathBuf,
    /// Visible paths other than the workspace, /tmp, $HOME, /dev, /proc.
    pub paths: Vec<PathRule>,
    /// Masked paths (secrets) inside visible trees.
    pub hide: Vec<HideRule>,
    /// Workspace-relative paths that stay read-only (created as masks when missing).
    pub protect: Vec<PathBuf>,
    pub env_files: EnvFileScan,
    pub network: NetMode,
    pub landlock: Requirement,
    pub env: EnvPolicy,
    pub limits: Limits,
    /// Shell candidates, first existing wins (`shellcage sh`).
    pub shell: Vec<PathBuf>,
    /// Print a JSON report after the run (the `ci` profile turns it on).
    pub report: bool,
    /// Append a hash-chained JSON line per run to this file (`--audit`,
    /// `[audit] file`); never visible inside the sandbox.
    pub audit: Option<PathBuf>,
}

impl Policy {
    /// The shell used by `shellcage sh`: the first candidate that exists.
    pub fn shell_path(&self) -> Option<&Path> {
        self.shell.iter().map(PathBuf::as_path).find(|p| p.exists())
    }
}

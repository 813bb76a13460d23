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
    /// The profile chain's texts; its SHA-256 identifies the profile in the
    /// report and the audit log (serialized as `profile_hash`).
    #[serde(rename = "profile_hash")]
    pub profile_chain: ProfileChain,
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

/// The texts of a profile chain, `(id, text)` from the loaded profile to its
/// root. Its hash is computed only when asked for: most runs need neither the
/// report nor the audit log, and hashing the built-ins is about 0.5M
/// instructions on every launch otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChain(pub Vec<(String, String)>);

impl ProfileChain {
    /// SHA-256 (hex) over the length-prefixed ids and texts, so distinct chains
    /// cannot hash the same.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for (id, text) in &self.0 {
            for part in [id.as_bytes(), text.as_bytes()] {
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl Serialize for ProfileChain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hash())
    }
}

/// `*` matches any run of bytes; every other byte matches itself. Backtracks
/// to the last `*` only: at worst O(pattern × name), never exponential.
/// Used for hide patterns, environment names and globs alike.
pub fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// A hide pattern split once into its parent and its last component (the
/// only one that may hold `*`), for matching many paths against it.
#[derive(Debug, Clone, Copy)]
pub struct HideMatcher<'a> {
    parent: &'a [u8],
    last: &'a [u8],
}

impl<'a> HideMatcher<'a> {
    pub fn new(pattern: &'a Path) -> Option<Self> {
        let (parent, last) = (pattern.parent()?, pattern.file_name()?);
        Some(HideMatcher {
            parent: parent.as_os_str().as_encoded_bytes(),
            last: last.as_encoded_bytes(),
        })
    }

    /// Is `path` the hidden path or below it? Both paths are clean (absolute,
    /// no `.`/`..`, no repeated or trailing `/`: profile paths are validated,
    /// the others canonical), so a byte-wise walk is exact and allocation-free.
    pub fn covers(&self, path: &Path) -> bool {
        let path = path.as_os_str().as_encoded_bytes();
        let rest = if self.parent == b"/" {
            path.strip_prefix(b"/")
        } else {
            path.strip_prefix(self.parent)
                .and_then(|r| r.strip_prefix(b"/"))
        };
        let Some(rest) = rest else { return false };
        let component = rest.split(|&b| b == b'/').next().unwrap_or_default();
        !component.is_empty() && wildcard_match(self.last, component)
    }
}

/// Does the hide `pattern` cover `path` (see [`HideMatcher::covers`])?
pub fn pattern_covers(pattern: &Path, path: &Path) -> bool {
    HideMatcher::new(pattern).is_some_and(|m| m.covers(path))
}

impl Policy {
    /// The shell used by `shellcage sh`: the first candidate that exists.
    pub fn shell_path(&self) -> Option<&Path> {
        self.shell.iter().map(PathBuf::as_path).find(|p| p.exists())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let m = |p: &str, t: &str| wildcard_match(p.as_bytes(), t.as_bytes());
        assert!(m("*key*", "ssh_host_rsa_key"));
        assert!(m("*key*", "ssh_host_rsa_key.pub"));
        assert!(!m("*key*", "moduli"));
        assert!(m("credentials*", "credentials.toml"));
        assert!(m("*", ""));
        assert!(!m("a*b", "acbx"));
        assert!(m("a*b*c", "axxbyyc"));
    }

    #[test]
    fn hide_patterns_cover_the_path_and_below() {
        let c = |pat: &str, path: &str| pattern_covers(Path::new(pat), Path::new(path));
        assert!(c("/h/.ssh", "/h/.ssh"));
        assert!(c("/h/.ssh", "/h/.ssh/id_ed25519"));
        assert!(!c("/h/.ssh", "/h/.sshx"));
        assert!(!c("/h/.ssh", "/h"));
        assert!(c("/etc/ssh/*key*", "/etc/ssh/ssh_host_rsa_key"));
        assert!(!c("/etc/ssh/*key*", "/etc/ssh/moduli"));
        assert!(c("/.env", "/.env"));
        assert!(!c("/", "/etc"));
    }
}

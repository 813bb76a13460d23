//! The validated, mechanism-neutral description of a sandbox.
//!
//! A `Policy` says *what* must hold (which paths are visible and how, which
//! variables pass, whether the network exists, the limits); it never says how.
//! `plan.rs` turns it into mechanisms. Every path in a `Policy` is absolute and
//! already expanded (`~`, `{workspace}`); every value has been validated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a path is made visible inside the sandbox (`filesystem.workspace` in a
/// profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Visible, read-only.
    Read,
    /// Visible, readable and writable.
    Write,
}

/// How the workspace is made visible (`filesystem.workspace`): read-only,
/// read-write, or read-write on a copy-on-write layer (`overlay`: writes land
/// in the layer; the host workspace is unchanged until `shellcage apply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceMode {
    Read,
    Write,
    Overlay,
}

impl WorkspaceMode {
    /// What the sandbox may do in the workspace (an overlay is writable inside).
    pub fn access(self) -> Access {
        match self {
            WorkspaceMode::Read => Access::Read,
            WorkspaceMode::Write | WorkspaceMode::Overlay => Access::Write,
        }
    }
}

/// The layer used when `--layer` does not name one.
pub const DEFAULT_LAYER: &str = "default";

/// Layer names (`--layer`): up to 64 letters, digits, `-`, `_` and `.`,
/// starting with a letter or digit (they name a directory of the layer store).
pub fn is_valid_layer_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The rule [`is_valid_layer_name`] checks, for error messages.
pub const LAYER_NAME_RULE: &str =
    "use up to 64 letters, digits, '-', '_' and '.', starting with a letter or digit";

/// What the sandbox's `$HOME` is (`[filesystem] home` in a profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HomeMode {
    /// A private tmpfs per run, plus the caches and user installs of this
    /// workspace and profile, kept in shellcage's state directory between runs.
    Persistent,
    /// A private tmpfs per run; nothing is kept.
    Fresh,
}

/// Whether commands run in a session (a warm sandbox per workspace and policy, see
/// the `session` module) or cold (`session` in a profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    /// The first command starts a session; later ones with the same policy use it.
    Auto,
    /// Every command builds its sandbox from scratch.
    Off,
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

/// How the sandbox reaches the network (`[network] mode`, `--net`):
///
/// - `None`: a new network namespace with only loopback; TCP bind/connect also
///   denied by Landlock where the kernel supports it;
/// - `Loopback`: like `None`, but TCP on the private loopback is allowed (test
///   servers);
/// - `Proxy`: like `None`, plus shellcage's allowlist proxy: its listeners are
///   the only things inside the namespace the command can connect to, and the
///   proxy (outside, in the host's namespace) reaches the hosts of [`Egress`];
/// - `Host`: the host's network. Only by explicit choice.
///
/// (The variants carry no doc comments: clap would print them in `--help`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    None,
    Loopback,
    Proxy,
    Host,
}

impl NetMode {
    /// The name as written in profiles and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NetMode::None => "none",
            NetMode::Loopback => "loopback",
            NetMode::Proxy => "proxy",
            NetMode::Host => "host",
        }
    }
}

/// What the proxy lets out (`[network] allow`, `deny`, `allow_private`,
/// `--allow-host`), each entry validated by the proxy's own rule parser and
/// kept as written (the proxy parses them again when it starts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Egress {
    /// `pkgs.example.org`, `*.example.net`, `git.example.com:22`, `10.1.2.3` …
    pub allow: Vec<String>,
    /// Same forms; a deny entry wins over every allow entry.
    pub deny: Vec<String>,
    /// CIDR blocks of private or special addresses the proxy may still connect to.
    pub allow_private: Vec<String>,
}

/// `--publish [HOST_ADDR:]PORT[:SANDBOX_PORT]`: a server inside the sandbox
/// reached from the host's loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Publish {
    /// A loopback address of the host (127.0.0.1 by default).
    pub host: std::net::IpAddr,
    pub port: u16,
    /// The port inside the sandbox (default: `port`).
    pub sandbox_port: u16,
}

/// Which isolation tier a run accepts (`tier` in a profile, `--tier`,
/// `SHELLCAGE_TIER`). The variants' doc comments are `--help` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TierChoice {
    /// Namespaces required: refuse (exit 125) where user namespaces fail.
    Full,
    /// Namespaces when possible, else the container tier (said on stderr and in the report).
    Auto,
    /// Landlock + seccomp only, no namespaces.
    Container,
}

impl TierChoice {
    /// The name as written in profiles and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TierChoice::Full => "full",
            TierChoice::Auto => "auto",
            TierChoice::Container => "container",
        }
    }

    /// `full`, `auto` or `container` (the value of `SHELLCAGE_TIER`).
    pub fn from_name(name: &str) -> Option<TierChoice> {
        [TierChoice::Full, TierChoice::Auto, TierChoice::Container]
            .into_iter()
            .find(|t| t.name() == name)
    }
}

/// Whether a mechanism must be present (`[landlock] mode`; cgroup limits): `Required` refuses
/// the run (exit 125) without it, `BestEffort` runs and reports what was not enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Requirement {
    Required,
    BestEffort,
}

/// `.env` / `.env.*` files in the workspace are hidden; this bounds the scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvFileScan {
    pub enabled: bool,
    /// Directory depth below the workspace root that is scanned (0 = root
    /// only); a deeper directory refuses the run.
    pub max_depth: usize,
    /// Directory names never descended into (node_modules, target, .git …).
    pub skip_dirs: Vec<String>,
    /// File names that match `.env.*` but are templates, left visible.
    pub allow_names: Vec<String>,
    /// Upper bound on directories read; more refuses the run (the scan never
    /// ends early with files left visible).
    pub max_dirs: usize,
}

/// Host devices shown in the sandbox's own /dev besides the basic nodes
/// (`[devices]` in a profile, `--gpu`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Devices {
    /// The GPU device nodes the host has (`/dev/nvidia*`, `/dev/nvidia-caps/*`,
    /// `/dev/dri/*`; character devices only), read-write with `ioctl(2)`: the
    /// drivers' whole ioctl interface becomes reachable (see SECURITY.md).
    pub gpu: bool,
    /// `--gpu` was given: a host without any GPU node refuses the run (an
    /// explicit request must not pass unnoticed); a profile's `gpu = true`
    /// runs without one and says so.
    pub gpu_from_command_line: bool,
}

/// Which variables reach the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvPolicy {
    /// Names (with `*` wildcards) passed from the caller when set.
    pub pass: Vec<String>,
    /// Variables set to fixed values.
    pub set: BTreeMap<String, String>,
    /// Pass the common tools' settings by the built-in rules
    /// (`sandbox::envrules`), unless their values look like credentials.
    pub tools: bool,
    /// `--env NAME[=VALUE]` from the command line: passes even secret-looking
    /// names (the report lists them).
    pub explicit: Vec<(String, Option<String>)>,
}

/// One of the limits a cgroup holds for the whole sandbox (`[limits]
/// memory`, `processes`, `cpu`; `--memory`, `--processes`, `--cpu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Memory,
    Processes,
    Cpu,
}

impl Resource {
    /// The profile key and flag name (`memory`, `processes`, `cpu`).
    pub fn name(self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::Processes => "processes",
            Resource::Cpu => "cpu",
        }
    }
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
    /// Processes and threads of the sandbox at once: the run's cgroup
    /// (`pids.max`), and RLIMIT_NPROC in the namespaces tier (counted in the
    /// sandbox's own user namespace since Linux 5.14).
    pub processes: Option<u64>,
    /// Memory of the whole sandbox in bytes (the run's cgroup: `memory.max`,
    /// swap capped at zero where the kernel can).
    pub memory: Option<u64>,
    /// CPU time of the whole sandbox, in thousandths of a core (`cpu.max`).
    pub cpu_millis: Option<u32>,
    /// `[limits] mode`: whether `processes`, `memory` and `cpu` must be
    /// enforced (`required`: no usable cgroup refuses the run) or are
    /// enforced where the host allows and reported (`best-effort`).
    pub mode: Requirement,
    /// The limits given on the command line (`--memory`, `--processes`,
    /// `--cpu`): required whatever `mode` says (an explicit request must not
    /// fail open).
    pub from_command_line: Vec<Resource>,
    /// Size cap of the private /tmp tmpfs, in bytes.
    pub tmp_size: u64,
    /// Size cap of the private $HOME tmpfs, in bytes.
    pub home_size: u64,
    /// Disk space the persistent home may keep between runs, in bytes
    /// (checked after each run; see `sandbox::home`).
    pub kept_home_size: u64,
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// The validated sandbox description. Built by `profile::load_with` from the
/// profile's layers and the command line's (see `request`).
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
    /// Read-only or read-write inside (`Write` for an overlay workspace).
    pub workspace_access: Access,
    /// `filesystem.workspace = "overlay"` (or `--overlay`, `--layer`): the
    /// layer the workspace's writes go to; `None` when they reach the host.
    pub workspace_layer: Option<String>,
    /// The caller's home directory; a private tmpfs is mounted there.
    pub home: PathBuf,
    /// Whether caches and user installs last between runs.
    pub home_mode: HomeMode,
    /// Visible paths other than the workspace, /tmp, $HOME, /dev, /proc.
    pub paths: Vec<PathRule>,
    /// Masked paths (secrets) inside visible trees.
    pub hide: Vec<HideRule>,
    /// Workspace-relative paths that stay read-only (created as masks when missing).
    pub protect: Vec<PathBuf>,
    pub env_files: EnvFileScan,
    pub network: NetMode,
    /// What the proxy lets out (used in `proxy` mode only).
    pub egress: Egress,
    /// Ports published to the host's loopback (every mode but `host`).
    pub publish: Vec<Publish>,
    pub landlock: Requirement,
    /// Host devices bound into the sandbox's /dev (`[devices]`, `--gpu`).
    pub devices: Devices,
    pub env: EnvPolicy,
    pub limits: Limits,
    /// Shell candidates, first existing wins (`shellcage sh`).
    pub shell: Vec<PathBuf>,
    /// Print a JSON report after the run (the `ci` profile turns it on).
    pub report: bool,
    /// Append a hash-chained JSON line per run to this file (`--audit`,
    /// `[audit] file`); never visible inside the sandbox.
    pub audit: Option<PathBuf>,
    /// `session`: whether commands run in a session.
    pub session: SessionMode,
    /// `session_idle`: a session ends after this long without a command.
    pub session_idle: std::time::Duration,
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
/// Is this `filesystem.protect` entry a name pattern (`*.code-workspace`)?
/// Patterns are single names at the workspace root (the profile refuses
/// others).
pub fn is_protect_pattern(entry: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    entry.as_os_str().as_bytes().contains(&b'*')
}

/// Does the `filesystem.protect` entry `entry` cover the workspace-relative
/// path `rel` (the path itself or something below it)? A pattern covers
/// every root entry whose name matches it.
pub fn protect_covers(entry: &Path, rel: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    if !is_protect_pattern(entry) {
        return rel.starts_with(entry);
    }
    match rel.components().next() {
        Some(std::path::Component::Normal(first)) => {
            wildcard_match(entry.as_os_str().as_bytes(), first.as_bytes())
        }
        _ => false,
    }
}

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

impl Limits {
    /// Whether the limit on `r` must hold for the run to start.
    pub fn requirement(&self, r: Resource) -> Requirement {
        if self.from_command_line.contains(&r) {
            Requirement::Required
        } else {
            self.mode
        }
    }
}

impl Policy {
    /// The shell used by `shellcage sh`: the first candidate that exists.
    pub fn shell_path(&self) -> Option<&Path> {
        self.shell.iter().map(PathBuf::as_path).find(|p| p.exists())
    }

    /// A policy for unit tests: `workspace` writable, `home`, nothing else
    /// visible, hidden or protected, no `.env` scan.
    #[cfg(test)]
    pub(crate) fn for_tests(workspace: &Path, home: &Path) -> Policy {
        Policy {
            profile: "test".into(),
            source: "test".into(),
            profile_chain: ProfileChain::default(),
            tier: TierChoice::Full,
            workspace: workspace.to_path_buf(),
            workspace_access: Access::Write,
            workspace_layer: None,
            home: home.to_path_buf(),
            home_mode: HomeMode::Fresh,
            paths: vec![],
            hide: vec![],
            protect: vec![],
            env_files: EnvFileScan {
                enabled: false,
                max_depth: 0,
                skip_dirs: vec![],
                allow_names: vec![],
                max_dirs: 0,
            },
            network: NetMode::None,
            egress: Egress::default(),
            publish: vec![],
            landlock: Requirement::Required,
            devices: Devices::default(),
            env: EnvPolicy {
                pass: vec![],
                set: BTreeMap::new(),
                tools: true,
                explicit: vec![],
            },
            limits: Limits {
                timeout: None,
                open_files: 1024,
                file_size: 1 << 30,
                processes: None,
                memory: None,
                cpu_millis: None,
                mode: Requirement::Required,
                from_command_line: vec![],
                tmp_size: 1 << 20,
                home_size: 1 << 20,
                kept_home_size: 1 << 30,
            },
            shell: vec![],
            report: false,
            audit: None,
            session: SessionMode::Off,
            session_idle: std::time::Duration::from_secs(600),
        }
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

//! The managed floor: `/etc/shellcage/managed.toml`, set by an administrator,
//! read on every run and merged after everything else (profiles, flags,
//! `SHELLCAGE_*`). It can only tighten: it adds hidden and protected paths,
//! sets a timeout and an audit log, and refuses (exit 125, naming its key and
//! value) a run that would go past one of its limits.
//!
//! The file is trusted only when it and every directory above it are owned by
//! root and not writable by anyone else (a world-writable sticky directory
//! owned by root, like /tmp, is accepted: others cannot replace root's entry
//! in it). Otherwise nothing runs. Its path is fixed at build time
//! (`SHELLCAGE_MANAGED_PATH`); at run time `SHELLCAGE_MANAGED` may name
//! another file only when the caller is root, so a user cannot point shellcage
//! at an empty floor. A missing file at the built-in path means no floor; a
//! file that exists but cannot be read refuses the run.
//!
//! Keys (every one optional; see README "Managed floor"):
//! `version = 1`, `hide`, `protect`, `network_modes`, `allow_hosts`,
//! `deny_hosts`, `allow_private`, `tiers`, `workspace_modes`, `write_roots`, `env_pass`,
//! `max_timeout`, `audit`, `profiles`, `landlock`, `env_files`, `devices`.

mod check;
mod show;

#[cfg(test)]
mod tests;

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;
use serde::Deserialize;
use toml::Spanned;

use crate::net::rules::Rule;
use crate::policy::{NetMode, TierChoice};

pub use check::{Applied, Asked, workspace_mode};
pub use show::render;

/// Where the floor is read from unless root says otherwise.
pub const DEFAULT_PATH: &str = match option_env!("SHELLCAGE_MANAGED_PATH") {
    Some(p) => p,
    None => "/etc/shellcage/managed.toml",
};

/// Names another floor file; honoured only when the caller is root.
pub const ENV: &str = "SHELLCAGE_MANAGED";

/// Largest floor file read.
const MAX_BYTES: u64 = 1 << 20;

/// Workspace modes a floor may allow (`overlay`: writes land in a layer).
pub const WORKSPACE_MODES: [&str; 3] = ["read", "write", "overlay"];

/// Device classes a floor may allow (`[devices]` keys of a profile).
pub const DEVICE_CLASSES: [&str; 1] = ["gpu"];

#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    /// The file (or a directory above it) could be changed by someone else.
    #[error("managed floor {file}: {why}; nothing runs (hint: {hint})")]
    Untrusted {
        file: String,
        why: String,
        hint: String,
    },
    #[error("cannot read managed floor {file}: {err}; nothing runs (hint: {hint})")]
    Read {
        file: String,
        err: String,
        hint: &'static str,
    },
    /// TOML syntax, unknown keys, wrong types; `message` names the line.
    #[error("invalid managed floor {file}: {message}; nothing runs")]
    Syntax { file: String, message: String },
    #[error("invalid managed floor {location}: {key} = {value}: {reason}; nothing runs")]
    Invalid {
        location: String,
        key: &'static str,
        value: String,
        reason: String,
    },
    /// The run would go past the floor.
    #[error(
        "refused by the managed floor {location}: {key} = {value}: {what}; nothing ran (hint: {hint})"
    )]
    Loosens {
        location: String,
        key: &'static str,
        value: String,
        what: String,
        hint: String,
    },
}

/// One key's value, and where it was written.
#[derive(Debug, Clone)]
pub struct Item<T> {
    pub value: T,
    /// Line in the floor file.
    pub line: usize,
    /// The value as written (TOML), for messages.
    pub written: String,
}

/// A validated floor.
#[derive(Debug, Clone, Default)]
pub struct Floor {
    /// The file it was read from.
    pub file: PathBuf,
    /// Why that file: the built-in path or `SHELLCAGE_MANAGED`.
    pub chosen_by: &'static str,
    /// Hide patterns as written (`~`, `{workspace}`, absolute; `*` in the
    /// last component), expanded for each run.
    pub hide: Option<Item<Vec<String>>>,
    /// Workspace-relative paths, protected in every profile.
    pub protect: Option<Item<Vec<PathBuf>>>,
    pub network_modes: Option<Item<Vec<NetMode>>>,
    /// The widest allowlist: every allow entry of a run must lie inside one.
    pub allow_hosts: Option<Item<Vec<Rule>>>,
    /// Added to every run's deny list (entries as written).
    pub deny_hosts: Option<Item<Vec<String>>>,
    /// The widest `[network] allow_private` a run may have (with `allow_hosts`
    /// set and this unset, none).
    pub allow_private: Option<Item<Vec<crate::net::addr::Cidr>>>,
    /// `full` and/or `container`; `auto` is narrowed to what is allowed.
    pub tiers: Option<Item<Vec<TierChoice>>>,
    /// Some of [`WORKSPACE_MODES`].
    pub workspace_modes: Option<Item<Vec<String>>>,
    /// Absolute or `~` (the password database's home, never $HOME).
    pub write_roots: Option<Item<Vec<String>>>,
    /// Names (with `*`) that `--env` may pass; unset: any but secret names.
    pub env_pass: Option<Item<Vec<String>>>,
    pub max_timeout: Option<Item<Duration>>,
    /// The log every run appends to (absolute; root-owned, append-only).
    pub audit: Option<Item<PathBuf>>,
    /// Built-in names or absolute paths of root-owned profile files.
    pub profiles: Option<Item<Vec<String>>>,
    /// `landlock = "required"`: a profile may not make Landlock best-effort.
    pub landlock: Option<Item<()>>,
    /// `env_files = "required"`: a profile may not turn the `.env` scan off.
    pub env_files: Option<Item<()>>,
    /// The host devices a run may expose (some of [`DEVICE_CLASSES`]); `[]`
    /// forbids them all. Unset: whatever the profile or flag asks.
    pub devices: Option<Item<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: Spanned<i64>,
    hide: Option<Spanned<Vec<Spanned<String>>>>,
    protect: Option<Spanned<Vec<Spanned<String>>>>,
    network_modes: Option<Spanned<Vec<Spanned<String>>>>,
    allow_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    deny_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    allow_private: Option<Spanned<Vec<Spanned<String>>>>,
    tiers: Option<Spanned<Vec<Spanned<String>>>>,
    workspace_modes: Option<Spanned<Vec<Spanned<String>>>>,
    write_roots: Option<Spanned<Vec<Spanned<String>>>>,
    env_pass: Option<Spanned<Vec<Spanned<String>>>>,
    max_timeout: Option<Spanned<String>>,
    audit: Option<Spanned<String>>,
    profiles: Option<Spanned<Vec<Spanned<String>>>>,
    landlock: Option<Spanned<String>>,
    env_files: Option<Spanned<String>>,
    devices: Option<Spanned<Vec<Spanned<String>>>>,
}

/// The floor file to read and why: `SHELLCAGE_MANAGED` when the caller is
/// root (real and effective uid 0) and it is set, else [`DEFAULT_PATH`].
pub fn location() -> (PathBuf, &'static str) {
    let root = nix::unistd::getuid().is_root() && nix::unistd::geteuid().is_root();
    match std::env::var_os(ENV).filter(|v| !v.is_empty() && root) {
        Some(p) => (PathBuf::from(p), ENV),
        None => (PathBuf::from(DEFAULT_PATH), "the built-in path"),
    }
}

/// The floor in force, if any. A missing file at the built-in path means no
/// floor; anything else that goes wrong refuses.
pub fn load() -> Result<Option<Floor>, FloorError> {
    let (path, chosen_by) = location();
    let shown = path.display().to_string();
    if !path.is_absolute() {
        return Err(FloorError::Read {
            file: shown,
            err: "not an absolute path".into(),
            hint: "set SHELLCAGE_MANAGED to an absolute path",
        });
    }
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && chosen_by != ENV => {
            // Only "absent" if the directory above could be listed: a parent
            // we cannot search makes every name look missing.
            return match path.parent().map(std::fs::read_dir) {
                Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(read_err(&shown, &e))
                }
                _ => Ok(None),
            };
        }
        Err(e) => return Err(read_err(&shown, &e)),
        Ok(_) => {}
    }
    let text = read_trusted(&path)?;
    let mut floor = parse(&text, &shown)?;
    floor.file = path;
    floor.chosen_by = chosen_by;
    Ok(Some(floor))
}

fn read_err(file: &str, e: &std::io::Error) -> FloorError {
    FloorError::Read {
        file: file.to_owned(),
        err: e.to_string().to_lowercase(),
        hint: "as root: make it and its directories readable by everyone (chmod 644 the file, 755 the directories)",
    }
}

/// Checks that only root can change `path` (and everything above it), then
/// reads it from the descriptor it checked.
fn read_trusted(path: &Path) -> Result<String, FloorError> {
    let shown = path.display().to_string();
    trusted(path, &shown)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path.canonicalize().map_err(|e| read_err(&shown, &e))?)
        .map_err(|e| read_err(&shown, &e))?;
    let meta = file.metadata().map_err(|e| read_err(&shown, &e))?;
    if let Some((why, hint)) = not_roots(&meta, path, false) {
        return Err(FloorError::Untrusted {
            file: shown,
            why,
            hint,
        });
    }
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_err(&shown, &e))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(FloorError::Syntax {
            file: shown,
            message: format!("larger than {MAX_BYTES} bytes"),
        });
    }
    String::from_utf8(bytes).map_err(|_| FloorError::Syntax {
        file: shown,
        message: "not valid UTF-8".into(),
    })
}

/// `path` (a file) and every directory above it, as written and as resolved,
/// are owned by root and not writable by group or others. `file` names the
/// floor in errors.
pub(crate) fn trusted(path: &Path, file: &str) -> Result<(), FloorError> {
    match who_else_can_change(path, true) {
        Ok(None) => Ok(()),
        Ok(Some((why, hint))) => Err(FloorError::Untrusted {
            file: file.to_owned(),
            why,
            hint,
        }),
        Err(e) => Err(read_err(file, &e)),
    }
}

/// Why someone other than root could change or replace `path`, if they could
/// (with the fix): a directory above it (as written or resolved), or the file
/// itself when `file_mode` (an audit log is meant to be writable by users).
pub(crate) fn who_else_can_change(
    path: &Path,
    file_mode: bool,
) -> std::io::Result<Option<(String, String)>> {
    let canonical = path.canonicalize()?;
    let mut dirs: Vec<PathBuf> = path.ancestors().skip(1).map(Path::to_path_buf).collect();
    dirs.extend(canonical.ancestors().skip(1).map(Path::to_path_buf));
    dirs.sort();
    dirs.dedup();
    for dir in dirs.iter().filter(|d| !d.as_os_str().is_empty()) {
        if let Some(bad) = not_roots(&std::fs::metadata(dir)?, dir, true) {
            return Ok(Some(bad));
        }
    }
    let meta = std::fs::metadata(&canonical)?;
    if !meta.is_file() {
        return Ok(Some((
            format!("{} is not a regular file", canonical.display()),
            "as root: make it a regular file".into(),
        )));
    }
    if meta.uid() != 0 || file_mode {
        return Ok(not_roots(&meta, &canonical, false));
    }
    Ok(None)
}

/// Why `meta` (of `name`) is not root's alone, with the fix.
fn not_roots(meta: &std::fs::Metadata, name: &Path, dir: bool) -> Option<(String, String)> {
    let what = if dir { "directory" } else { "file" };
    let name = name.display();
    if meta.uid() != 0 {
        return Some((
            format!("{what} {name} is owned by uid {}, not root", meta.uid()),
            format!("as root: chown root {name} && chmod go-w {name}"),
        ));
    }
    let sticky = dir && meta.mode() & 0o1000 != 0;
    if meta.mode() & 0o022 != 0 && !sticky {
        let by = if meta.mode() & 0o002 != 0 {
            "everyone"
        } else {
            "its group"
        };
        return Some((
            format!(
                "{what} {name} is writable by {by} (mode {:04o})",
                meta.mode() & 0o7777
            ),
            format!("as root: chmod go-w {name}"),
        ));
    }
    None
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

struct Parser<'a> {
    text: &'a str,
    file: &'a str,
}

impl Parser<'_> {
    fn invalid(&self, key: &'static str, s: &Spanned<String>, reason: &str) -> FloorError {
        FloorError::Invalid {
            location: format!("{}:{}", self.file, line_of(self.text, s.span().start)),
            key,
            value: format!("{:?}", s.get_ref()),
            reason: reason.to_owned(),
        }
    }

    /// A list key, each entry checked by `each`.
    fn list<T>(
        &self,
        key: &'static str,
        raw: Option<Spanned<Vec<Spanned<String>>>>,
        each: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Item<Vec<T>>>, FloorError> {
        let Some(raw) = raw else { return Ok(None) };
        let line = line_of(self.text, raw.span().start);
        let written = format!(
            "[{}]",
            raw.get_ref()
                .iter()
                .map(|s| format!("{:?}", s.get_ref()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut value = Vec::new();
        for s in raw.get_ref() {
            value.push(each(s.get_ref()).map_err(|r| self.invalid(key, s, &r))?);
        }
        Ok(Some(Item {
            value,
            line,
            written,
        }))
    }

    fn scalar<T>(
        &self,
        key: &'static str,
        raw: Option<Spanned<String>>,
        check: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Item<T>>, FloorError> {
        let Some(raw) = raw else { return Ok(None) };
        let value = check(raw.get_ref()).map_err(|r| self.invalid(key, &raw, &r))?;
        Ok(Some(Item {
            value,
            line: line_of(self.text, raw.span().start),
            written: format!("{:?}", raw.get_ref()),
        }))
    }
}

/// Parses and validates a floor's text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Floor, FloorError> {
    let raw: Raw = toml::from_str(text).map_err(|e| FloorError::Syntax {
        file: file.to_owned(),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    if *raw.version.get_ref() != 1 {
        return Err(FloorError::Invalid {
            location: format!("{file}:{}", line_of(text, raw.version.span().start)),
            key: "version",
            value: raw.version.get_ref().to_string(),
            reason: "this shellcage reads version 1".into(),
        });
    }
    let p = Parser { text, file };
    let required = |v: &str| match v {
        "required" => Ok(()),
        _ => Err("the only value is \"required\"".to_string()),
    };
    let floor = Floor {
        file: PathBuf::from(file),
        chosen_by: "",
        hide: p.list("hide", raw.hide, |v| hide_pattern(v).map(|_| v.to_owned()))?,
        protect: p.list("protect", raw.protect, relative)?,
        network_modes: nonempty(file, "network_modes", p.list("network_modes", raw.network_modes, |v| {
            NetMode::from_str(v, false).map_err(|_| format!("unknown network mode (expected {})", net_names()))
        })?)?,
        allow_hosts: p.list("allow_hosts", raw.allow_hosts, |v| {
            Rule::parse("allow", v).map_err(|e| e.to_string())
        })?,
        deny_hosts: p.list("deny_hosts", raw.deny_hosts, |v| {
            Rule::parse("deny", v).map(|_| v.to_owned()).map_err(|e| e.to_string())
        })?,
        allow_private: p.list("allow_private", raw.allow_private, |v| {
            v.parse::<crate::net::addr::Cidr>().map_err(|e| e.to_string())
        })?,
        tiers: nonempty(file, "tiers", p.list("tiers", raw.tiers, |v| match TierChoice::from_name(v) {
            Some(t @ (TierChoice::Full | TierChoice::Container)) => Ok(t),
            Some(TierChoice::Auto) => Err("list the tiers a run may use: full, container (auto is narrowed to them)".into()),
            None => Err("unknown tier (expected full or container)".into()),
        })?)?,
        workspace_modes: nonempty(file, "workspace_modes", p.list("workspace_modes", raw.workspace_modes, |v| {
            if WORKSPACE_MODES.contains(&v) {
                Ok(v.to_owned())
            } else {
                Err(format!("unknown workspace mode (expected {})", WORKSPACE_MODES.join(", ")))
            }
        })?)?,
        write_roots: p.list("write_roots", raw.write_roots, |v| {
            if v.starts_with('{') {
                return Err("{workspace} is not a root: the workspace is checked against the roots".into());
            }
            clean_absolute(v, Some(Path::new("/home/x"))).map(|_| v.to_owned())
        })?,
        env_pass: p.list("env_pass", raw.env_pass, |v| {
            let ok = !v.is_empty()
                && !v.starts_with(|c: char| c.is_ascii_digit())
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'*');
            if !ok {
                Err("invalid variable name: use A-Z, a-z, 0-9, _ and the wildcard *".into())
            } else if v.bytes().all(|b| b == b'*') {
                Err("would let --env pass every variable, secrets included; list names".into())
            } else {
                Ok(v.to_owned())
            }
        })?,
        max_timeout: p.scalar("max_timeout", raw.max_timeout, |v| {
            match super::parse_duration(v)? {
                d if d.is_zero() => Err("must be longer than 0".into()),
                d => Ok(d),
            }
        })?,
        audit: p.scalar("audit", raw.audit, |v| clean_absolute(v, None))?,
        profiles: nonempty(file, "profiles", p.list("profiles", raw.profiles, |v| {
            if v.starts_with('/') {
                clean_absolute(v, None).map(|_| v.to_owned())
            } else if super::builtin_text(v).is_some() {
                Ok(v.to_owned())
            } else {
                Err(format!(
                    "not a built-in profile ({}) or an absolute path to a root-owned profile file",
                    super::builtin_names().join(", ")
                ))
            }
        })?)?,
        landlock: p.scalar("landlock", raw.landlock, required)?,
        env_files: p.scalar("env_files", raw.env_files, required)?,
        // Empty is meaningful here (no device at all), so no `nonempty`.
        devices: p.list("devices", raw.devices, |v| {
            if DEVICE_CLASSES.contains(&v) {
                Ok(v.to_owned())
            } else {
                Err(format!(
                    "unknown device class (expected {}; [] allows none)",
                    DEVICE_CLASSES.join(", ")
                ))
            }
        })?,
    };
    Ok(floor)
}

/// An empty `network_modes`, `tiers`, `workspace_modes` or `profiles` would
/// refuse every run: almost certainly a mistake, said as one.
fn nonempty<T>(
    file: &str,
    key: &'static str,
    item: Option<Item<Vec<T>>>,
) -> Result<Option<Item<Vec<T>>>, FloorError> {
    match item {
        Some(i) if i.value.is_empty() => Err(FloorError::Invalid {
            location: format!("{file}:{}", i.line),
            key,
            value: "[]".into(),
            reason: "would refuse every run; remove the key to leave it to the profiles".into(),
        }),
        other => Ok(other),
    }
}

fn net_names() -> String {
    NetMode::value_variants()
        .iter()
        .filter_map(|m| m.to_possible_value().map(|v| v.get_name().to_owned()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The name of a network mode as written in profiles.
pub fn net_name(mode: NetMode) -> String {
    mode.to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// A clean absolute path; with `home`, `~` and `~/…` expand to it.
pub(crate) fn clean_absolute(raw: &str, home: Option<&Path>) -> Result<PathBuf, String> {
    if raw.contains('\0') {
        return Err("a path cannot contain a NUL byte".into());
    }
    let joined = match (raw.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            format!("{}/{rest}", home.display())
        }
        (Some(_), Some(_)) => {
            return Err("~user is not supported; use ~ or an absolute path".into());
        }
        (Some(_), None) => return Err("must be an absolute path".into()),
        (None, _) => raw.to_owned(),
    };
    if !joined.starts_with('/') {
        return Err(format!(
            "must be absolute (start with /{})",
            if home.is_some() { " or ~" } else { "" }
        ));
    }
    let mut clean = PathBuf::from("/");
    for c in Path::new(&joined).components() {
        match c {
            Component::Normal(part) => clean.push(part),
            Component::RootDir | Component::CurDir => {}
            _ => return Err("'..' is not allowed in paths".into()),
        }
    }
    Ok(clean)
}

/// A hide pattern: `~`, `{workspace}` or absolute, `*` in the last component only.
fn hide_pattern(raw: &str) -> Result<PathBuf, String> {
    let raw = match raw.strip_prefix("{workspace}") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("/w{rest}"),
        _ if raw.starts_with('{') => {
            return Err("unknown placeholder; the only one is {workspace}".into());
        }
        _ => raw.to_owned(),
    };
    let path = clean_absolute(&raw, Some(Path::new("/home/x")))?;
    if path == Path::new("/") {
        return Err("cannot hide the root directory".into());
    }
    if path
        .parent()
        .is_some_and(|p| p.as_os_str().as_encoded_bytes().contains(&b'*'))
    {
        return Err("'*' is only allowed in the last path component".into());
    }
    Ok(path)
}

/// A workspace-relative path (`protect`).
fn relative(raw: &str) -> Result<PathBuf, String> {
    if raw.contains('\0') || raw.contains('*') {
        return Err("no NUL bytes or wildcards in protected paths".into());
    }
    if raw.starts_with('/') || raw.starts_with('~') || raw.starts_with('{') {
        return Err("must be relative to the workspace (e.g. \".github/workflows\")".into());
    }
    let mut clean = PathBuf::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            _ => return Err("'..' is not allowed in paths".into()),
        }
    }
    if clean.as_os_str().is_empty() {
        return Err("must name a path inside the workspace".into());
    }
    Ok(clean)
}

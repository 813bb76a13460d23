//! One parsed profile file → a validated `Layer`.
//!
//! A layer holds only what its file says (every field optional); merging the
//! layers of an `extends` chain and checking that nothing is missing happen in
//! `merge.rs`. All checks that need only one file happen here, so an error names
//! the file, line, key and value where the bad value was written.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::schema::{RawAccess, RawNetMode, RawProfile, RawRequirement, RawTier};
use super::{LoadContext, ProfileError, units};
use crate::policy::{Access, NetMode, Requirement, TierChoice};

/// Where a value was written, for error messages raised after merging.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    /// `file:line`.
    pub location: String,
    /// Dotted key, e.g. `filesystem.read[2]`.
    pub key: String,
    /// The value as written: a string quoted and escaped, a number plain.
    pub value: String,
}

impl Origin {
    pub fn invalid(&self, reason: impl Into<String>) -> ProfileError {
        ProfileError::Invalid {
            location: self.location.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
            reason: reason.into(),
        }
    }
}

/// A value and where it was written.
#[derive(Debug, Clone)]
pub(super) struct Entry<T> {
    pub value: T,
    pub origin: Origin,
}

/// The validated content of one profile file. `None` / empty = not set here.
#[derive(Debug, Default)]
pub(super) struct Layer {
    pub extends: Option<Entry<String>>,
    pub description: Option<String>,
    pub tier: Option<TierChoice>,
    pub workspace: Option<Access>,
    pub read: Vec<Entry<PathBuf>>,
    pub write: Vec<Entry<PathBuf>>,
    pub hide: Vec<Entry<PathBuf>>,
    pub protect: Vec<PathBuf>,
    pub env_files_enabled: Option<bool>,
    pub env_files_max_depth: Option<usize>,
    pub env_files_max_dirs: Option<usize>,
    pub env_files_skip_dirs: Vec<String>,
    pub env_files_allow: Vec<String>,
    pub network: Option<NetMode>,
    pub landlock: Option<Requirement>,
    pub env_pass: Vec<String>,
    pub env_set: BTreeMap<String, String>,
    /// `Some(None)`: `timeout = "none"` removes an inherited timeout.
    pub timeout: Option<Option<Duration>>,
    pub open_files: Option<u64>,
    pub processes: Option<u64>,
    pub file_size: Option<u64>,
    pub tmp_size: Option<u64>,
    pub home_size: Option<u64>,
    pub shell: Option<Vec<PathBuf>>,
    pub report: Option<bool>,
    /// `[audit] file`: the hash-chained audit log (absolute, expanded).
    pub audit: Option<PathBuf>,
}

/// Deepest `.env` scan accepted; deeper is almost certainly a mistake.
const MAX_ENV_SCAN_DEPTH: u64 = 64;
/// Largest `.env` scan budget accepted, in directories.
const MAX_ENV_SCAN_DIRS: u64 = 1_000_000;
/// The kernel's default `fs.nr_open`: RLIMIT_NOFILE cannot exceed it.
const MAX_OPEN_FILES: u64 = 1 << 20;

/// Checks every value of one file. `file` names it in errors (`builtin:dev` or
/// a path); `text` is its content, used to turn spans into line numbers.
pub(super) fn layer(
    raw: RawProfile,
    file: &str,
    text: &str,
    ctx: &LoadContext,
) -> Result<Layer, ProfileError> {
    let newlines = text
        .bytes()
        .enumerate()
        .filter(|&(_, b)| b == b'\n')
        .map(|(i, _)| i)
        .collect();
    let v = Validator {
        file,
        text,
        ctx,
        newlines,
    };
    let mut layer = Layer::default();

    let version = *raw.version.get_ref();
    if version != 1 {
        return Err(v
            .origin("version", &raw.version, version)
            .invalid("unsupported profile version (this shellcage reads version 1)"));
    }
    if let Some(extends) = &raw.extends {
        let origin = v.origin("extends", extends, extends.get_ref());
        let name = extends.get_ref();
        if super::is_path(name) {
            return Err(origin.invalid("extends takes a profile name, not a path"));
        }
        if !super::is_valid_name(name) {
            return Err(origin.invalid(super::NAME_RULE));
        }
        layer.extends = Some(Entry {
            value: name.to_owned(),
            origin,
        });
    }
    if let Some(description) = &raw.description {
        let text = description.get_ref();
        if text.chars().any(char::is_control) {
            return Err(v
                .origin("description", description, text)
                .invalid("must not contain control characters"));
        }
        layer.description = Some(text.clone());
    }
    layer.tier = raw.tier.map(|t| match t {
        RawTier::Full => TierChoice::Full,
        RawTier::Auto => TierChoice::Auto,
        RawTier::Container => TierChoice::Container,
    });

    let fs = raw.filesystem;
    layer.workspace = fs.workspace.map(|a| match a {
        RawAccess::Read => Access::Read,
        RawAccess::Write => Access::Write,
    });
    for (list, key, out) in [
        (&fs.read, "filesystem.read", &mut layer.read),
        (&fs.write, "filesystem.write", &mut layer.write),
    ] {
        for (i, item) in list.iter().enumerate() {
            let origin = v.origin(&format!("{key}[{i}]"), item, item.get_ref());
            let path = v.path_rule(item.get_ref(), &origin)?;
            out.push(Entry {
                value: path,
                origin,
            });
        }
    }
    for (i, item) in fs.hide.iter().enumerate() {
        let origin = v.origin(
            &format!("filesystem.hide[{i}]"),
            item,
            item.get_ref().clone(),
        );
        let pattern = v.hide_pattern(item.get_ref(), &origin)?;
        layer.hide.push(Entry {
            value: pattern,
            origin,
        });
    }
    for (i, item) in fs.protect.iter().enumerate() {
        let origin = v.origin(
            &format!("filesystem.protect[{i}]"),
            item,
            item.get_ref().clone(),
        );
        layer.protect.push(relative_path(item.get_ref(), &origin)?);
    }

    let scan = fs.env_files;
    layer.env_files_enabled = scan.enabled;
    if let Some(depth) = &scan.max_depth {
        let origin = v.origin("filesystem.env_files.max_depth", depth, depth.get_ref());
        if *depth.get_ref() > MAX_ENV_SCAN_DEPTH {
            return Err(origin.invalid(format!("must be at most {MAX_ENV_SCAN_DEPTH}")));
        }
        layer.env_files_max_depth = Some(to_usize(*depth.get_ref(), &origin)?);
    }
    if let Some(dirs) = &scan.max_dirs {
        let origin = v.origin("filesystem.env_files.max_dirs", dirs, dirs.get_ref());
        if !(1..=MAX_ENV_SCAN_DIRS).contains(dirs.get_ref()) {
            return Err(origin.invalid(format!("must be between 1 and {MAX_ENV_SCAN_DIRS}")));
        }
        layer.env_files_max_dirs = Some(to_usize(*dirs.get_ref(), &origin)?);
    }
    for (list, key, out) in [
        (
            &scan.skip_dirs,
            "filesystem.env_files.skip_dirs",
            &mut layer.env_files_skip_dirs,
        ),
        (
            &scan.allow,
            "filesystem.env_files.allow",
            &mut layer.env_files_allow,
        ),
    ] {
        for (i, item) in list.iter().enumerate() {
            let origin = v.origin(&format!("{key}[{i}]"), item, item.get_ref());
            out.push(file_name(item.get_ref(), &origin)?);
        }
    }

    layer.network = raw.network.mode.map(|m| match m {
        RawNetMode::None => NetMode::None,
        RawNetMode::Loopback => NetMode::Loopback,
        RawNetMode::Host => NetMode::Host,
    });
    layer.landlock = raw.landlock.mode.map(|m| match m {
        RawRequirement::Required => Requirement::Required,
        RawRequirement::BestEffort => Requirement::BestEffort,
    });

    for (i, item) in raw.env.pass.iter().enumerate() {
        let origin = v.origin(&format!("env.pass[{i}]"), item, item.get_ref());
        layer.env_pass.push(env_pattern(item.get_ref(), &origin)?);
    }
    for (name, value) in &raw.env.set {
        let origin = v.origin(&format!("env.set.{name}"), value, value.get_ref());
        if !is_env_name(name, false) {
            return Err(origin.invalid(format!(
                "invalid variable name {name:?}: use A-Z, a-z, 0-9 and _, not starting with a digit"
            )));
        }
        if value.get_ref().contains('\0') {
            return Err(origin.invalid("a variable value cannot contain a NUL byte"));
        }
        layer.env_set.insert(name.clone(), value.get_ref().clone());
    }

    let limits = raw.limits;
    if let Some(timeout) = &limits.timeout {
        let origin = v.origin("limits.timeout", timeout, timeout.get_ref());
        let text = timeout.get_ref();
        layer.timeout = Some(if text == "none" {
            None
        } else {
            let d = units::parse_duration(text).map_err(|e| origin.invalid(e))?;
            if d.is_zero() {
                return Err(
                    origin.invalid("must be greater than zero (use \"none\" for no timeout)")
                );
            }
            Some(d)
        });
    }
    if let Some(n) = &limits.open_files {
        let origin = v.origin("limits.open_files", n, n.get_ref());
        if !(1..=MAX_OPEN_FILES).contains(n.get_ref()) {
            return Err(origin.invalid(format!(
                "must be between 1 and {MAX_OPEN_FILES} (the kernel's default fs.nr_open)"
            )));
        }
        layer.open_files = Some(*n.get_ref());
    }
    if let Some(n) = &limits.processes {
        let origin = v.origin("limits.processes", n, n.get_ref());
        if *n.get_ref() == 0 {
            return Err(origin.invalid("must be greater than zero (leave it out for no limit)"));
        }
        layer.processes = Some(*n.get_ref());
    }
    for (item, key, out) in [
        (&limits.file_size, "limits.file_size", &mut layer.file_size),
        (&limits.tmp_size, "limits.tmp_size", &mut layer.tmp_size),
        (&limits.home_size, "limits.home_size", &mut layer.home_size),
    ] {
        if let Some(item) = item {
            let origin = v.origin(key, item, item.get_ref());
            let size = units::parse_size(item.get_ref()).map_err(|e| origin.invalid(e))?;
            if size == 0 {
                return Err(origin.invalid("must be greater than zero"));
            }
            *out = Some(size);
        }
    }

    if let Some(candidates) = &raw.shell.candidates {
        let mut shells = Vec::with_capacity(candidates.len());
        for (i, item) in candidates.iter().enumerate() {
            let origin = v.origin(
                &format!("shell.candidates[{i}]"),
                item,
                item.get_ref().clone(),
            );
            if item.get_ref().contains('*') {
                return Err(origin.invalid("wildcards are only allowed in filesystem.hide"));
            }
            shells.push(v.expand(item.get_ref(), &origin)?);
        }
        if shells.is_empty() {
            return Err(v
                .origin_of_table("shell.candidates", "[]")
                .invalid("must list at least one shell"));
        }
        layer.shell = Some(shells);
    }
    layer.report = raw.report.enabled;
    if let Some(file) = &raw.audit.file {
        let origin = v.origin("audit.file", file, file.get_ref());
        if file.get_ref().contains('*') {
            return Err(origin.invalid("wildcards are only allowed in filesystem.hide"));
        }
        layer.audit = Some(v.expand(file.get_ref(), &origin)?);
    }
    Ok(layer)
}

struct Validator<'a> {
    file: &'a str,
    text: &'a str,
    ctx: &'a LoadContext,
    /// Byte offsets of every '\n' in `text`: a line number is one binary search.
    newlines: Vec<usize>,
}

impl Validator<'_> {
    /// `value` is shown with `{:?}`: strings quoted and escaped, numbers plain.
    fn origin<T>(&self, key: &str, spanned: &Spanned<T>, value: impl std::fmt::Debug) -> Origin {
        let start = spanned.span().start.min(self.text.len());
        let line = self.newlines.partition_point(|&nl| nl < start) + 1;
        let location = format!("{}:{line}", self.file);
        Origin {
            location,
            key: key.to_owned(),
            value: format!("{value:?}"),
        }
    }

    /// For values without a span of their own (an empty list): the file only.
    fn origin_of_table(&self, key: &str, value: &str) -> Origin {
        Origin {
            location: self.file.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    /// Expands `~` and `{workspace}` and checks the result is a clean absolute path.
    fn expand(&self, raw: &str, origin: &Origin) -> Result<PathBuf, ProfileError> {
        if raw.is_empty() {
            return Err(origin.invalid("empty path"));
        }
        if raw.contains('\0') {
            return Err(origin.invalid("a path cannot contain a NUL byte"));
        }
        let joined: OsString = if let Some(rest) = prefixed(raw, "~") {
            join_str(&self.ctx.home, rest)
        } else if let Some(rest) = prefixed(raw, "{workspace}") {
            join_str(&self.ctx.workspace, rest)
        } else if raw.starts_with('~') {
            return Err(origin.invalid("~user is not supported; use ~ or an absolute path"));
        } else if raw.starts_with('{') {
            return Err(origin.invalid("unknown placeholder; the only one is {workspace}"));
        } else {
            raw.into()
        };
        let path = Path::new(&joined);
        if !path.has_root() {
            return Err(origin.invalid("must be absolute (start with /, ~ or {workspace})"));
        }
        let mut clean = PathBuf::from("/");
        for component in path.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(origin.invalid("'..' is not allowed in paths"));
                }
                Component::Normal(part) => clean.push(part),
                Component::Prefix(_) => return Err(origin.invalid("not a Unix path")),
            }
        }
        Ok(clean)
    }

    /// A `filesystem.read` / `filesystem.write` entry.
    fn path_rule(&self, raw: &str, origin: &Origin) -> Result<PathBuf, ProfileError> {
        if raw.contains('*') {
            return Err(origin.invalid("wildcards are only allowed in filesystem.hide"));
        }
        let path = self.expand(raw, origin)?;
        if path == Path::new("/") {
            return Err(origin.invalid(
                "would expose the whole host filesystem; list the directories needed instead",
            ));
        }
        let implicit: [(&Path, &str); 4] = [
            (&self.ctx.home, "$HOME is a private tmpfs"),
            (
                &self.ctx.workspace,
                "the workspace is set by filesystem.workspace",
            ),
            (Path::new("/tmp"), "/tmp is a private tmpfs"),
            (Path::new("/proc"), "/proc is the sandbox's own"),
        ];
        for (implicit_path, why) in implicit {
            if path == implicit_path {
                return Err(origin.invalid(format!("is mounted implicitly ({why})")));
            }
        }
        if path == Path::new("/dev") {
            return Err(origin.invalid(
                "is mounted implicitly (a minimal /dev); list single devices such as /dev/kvm instead",
            ));
        }
        Ok(path)
    }

    /// A `filesystem.hide` entry: `*` is allowed in the last component only.
    fn hide_pattern(&self, raw: &str, origin: &Origin) -> Result<PathBuf, ProfileError> {
        let path = self.expand(raw, origin)?;
        if path == Path::new("/") {
            return Err(origin.invalid("cannot hide the root directory"));
        }
        let mut parent = path.clone();
        parent.pop();
        if parent.as_os_str().as_encoded_bytes().contains(&b'*') {
            return Err(origin.invalid("'*' is only allowed in the last path component"));
        }
        Ok(path)
    }
}

/// `rest` after `prefix` when `raw` is exactly `prefix` or `prefix/...`.
fn prefixed<'a>(raw: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = raw.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// `base` + `rest` as strings. `Path::join` would discard `base` when `rest`
/// is absolute, which is exactly what `rest` looks like here.
fn join_str(base: &Path, rest: &str) -> OsString {
    let mut joined = base.as_os_str().to_owned();
    joined.push("/");
    joined.push(rest);
    joined
}

/// A workspace-relative `filesystem.protect` entry.
fn relative_path(raw: &str, origin: &Origin) -> Result<PathBuf, ProfileError> {
    if raw.contains('\0') {
        return Err(origin.invalid("a path cannot contain a NUL byte"));
    }
    if raw.contains('*') {
        return Err(origin.invalid("wildcards are only allowed in filesystem.hide"));
    }
    let path = Path::new(raw);
    if path.has_root() || raw.starts_with('~') || raw.starts_with('{') {
        return Err(origin.invalid("must be relative to the workspace (e.g. \".git/hooks\")"));
    }
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            _ => return Err(origin.invalid("'..' is not allowed in paths")),
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(origin.invalid("must name a path inside the workspace, not the workspace"));
    }
    Ok(clean)
}

/// A bare file or directory name (`skip_dirs`, `allow`).
fn file_name(raw: &str, origin: &Origin) -> Result<String, ProfileError> {
    if raw.is_empty() || raw == "." || raw == ".." || raw.contains('/') || raw.contains('\0') {
        return Err(origin.invalid("must be a single file or directory name"));
    }
    Ok(raw.to_owned())
}

fn env_pattern(raw: &str, origin: &Origin) -> Result<String, ProfileError> {
    if !is_env_name(raw, true) {
        return Err(origin.invalid(
            "invalid variable name: use A-Z, a-z, 0-9, _ and the wildcard *, not starting with a digit",
        ));
    }
    if raw.bytes().all(|b| b == b'*') {
        return Err(origin
            .invalid("would pass the whole environment; list the variables the command needs"));
    }
    Ok(raw.to_owned())
}

/// `[A-Za-z_][A-Za-z0-9_]*`, with `*` also allowed anywhere when `wildcard`.
pub(super) fn is_env_name(name: &str, wildcard: bool) -> bool {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || (wildcard && b == b'*');
    match name.as_bytes() {
        [] => false,
        [first, ..] if first.is_ascii_digit() => false,
        bytes => bytes.iter().all(|&b| ok(b)),
    }
}

fn to_usize(n: u64, origin: &Origin) -> Result<usize, ProfileError> {
    usize::try_from(n).map_err(|_| origin.invalid("too large for this platform"))
}

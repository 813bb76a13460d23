//! One parsed profile file, or the command line → a validated `Layer`.
//!
//! A layer holds only what its source says (every field optional); merging
//! the layers (the `extends` chain, then the command line) and checking that
//! nothing is missing happen in `merge.rs`. All checks that need only one
//! layer happen here, so an error names the file, line, key and value where
//! the bad value was written, or the flag.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::schema::{RawEnv, RawEnvFiles, RawFilesystem, RawLimits, RawNetwork, RawProfile};
use super::{LoadContext, ProfileError, units};
use crate::policy::{HomeMode, NetMode, Publish, Requirement, Resource, TierChoice, WorkspaceMode};

/// Where a value was written, for error messages raised after merging.
#[derive(Debug, Clone)]
pub(super) enum Origin {
    /// A profile file.
    File {
        /// `file:line`.
        location: String,
        /// Dotted key, e.g. `filesystem.read[2]`.
        key: String,
        /// The value as written: a string quoted and escaped, a number plain.
        value: String,
    },
    /// The command line: the flag and its value as given (`--read`, `src`).
    Flag { flag: &'static str, value: String },
}

impl Origin {
    pub fn invalid(&self, reason: impl Into<String>) -> ProfileError {
        match self {
            Origin::File {
                location,
                key,
                value,
            } => ProfileError::Invalid {
                location: location.clone(),
                key: key.clone(),
                value: value.clone(),
                reason: reason.into(),
            },
            Origin::Flag { flag, value } => ProfileError::Flag {
                flag,
                value: value.clone(),
                reason: reason.into(),
            },
        }
    }

    /// The error for a visible path (written here) that `hide` covers: hide
    /// always wins, and saying so beats a rule that silently does nothing.
    pub fn hidden_by(&self, hide: &Entry<PathBuf>) -> ProfileError {
        match (self, &hide.origin) {
            (
                Origin::File { .. },
                Origin::File {
                    location,
                    key,
                    value,
                },
            ) => self.invalid(format!(
                "hidden by {key} = {value} ({location}); hide always wins, remove one of the two"
            )),
            _ => self.invalid(format!("hidden by the profile ({})", hide.value.display())),
        }
    }
}

/// A value and where it was written.
#[derive(Debug, Clone)]
pub(super) struct Entry<T> {
    pub value: T,
    pub origin: Origin,
}

/// Where a layer comes from, which decides how it merges (see `merge.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum LayerKind {
    /// A profile file of the `extends` chain (built-in or user).
    #[default]
    Profile,
    /// The command line (`--read`, `--net`, `--tier` …; `SHELLCAGE_TIER`),
    /// merged after the chain.
    CommandLine,
}

/// The validated content of one layer: a profile file, or the command line.
/// `None` / empty = not set here.
#[derive(Debug, Default)]
pub(super) struct Layer {
    pub kind: LayerKind,
    pub extends: Option<Entry<String>>,
    pub description: Option<String>,
    pub tier: Option<TierChoice>,
    pub session: Option<crate::policy::SessionMode>,
    pub session_idle: Option<std::time::Duration>,
    pub workspace: Option<WorkspaceMode>,
    /// `--layer NAME` (command line only; validated).
    pub layer_name: Option<String>,
    pub home: Option<HomeMode>,
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
    /// `network.allow` / `--allow-host`, `network.deny`, `network.allow_private`:
    /// entries as written, each checked by the proxy's rule parser.
    pub net_allow: Vec<Entry<String>>,
    pub net_deny: Vec<Entry<String>>,
    pub net_allow_private: Vec<Entry<String>>,
    /// `--publish` (command line only).
    pub publish: Vec<Entry<Publish>>,
    pub landlock: Option<Requirement>,
    /// `[devices] gpu`; `--gpu` on the command line.
    pub gpu: Option<bool>,
    pub env_pass: Vec<String>,
    pub env_set: BTreeMap<String, String>,
    pub env_tools: Option<bool>,
    /// `--env NAME[=VALUE]` (command line only).
    pub env_explicit: Vec<(String, Option<String>)>,
    /// `Some(None)`: `timeout = "none"` removes an inherited timeout.
    pub timeout: Option<Option<Duration>>,
    pub open_files: Option<u64>,
    /// `Some(None)`: `--processes none` lifts an inherited limit.
    pub processes: Option<Option<u64>>,
    /// `Some(None)`: `memory = "none"` removes an inherited limit.
    pub memory: Option<Option<u64>>,
    /// `Some(None)`: `cpu = "none"` removes an inherited limit.
    pub cpu_millis: Option<Option<u32>>,
    /// `[limits] mode`.
    pub limits_mode: Option<Requirement>,
    /// `--memory`, `--processes`, `--cpu` (command line only): required.
    pub limits_from_command_line: Vec<Resource>,
    pub file_size: Option<u64>,
    pub tmp_size: Option<u64>,
    pub home_size: Option<u64>,
    pub kept_home_size: Option<u64>,
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
/// The largest `pid_max` the kernel accepts (PID_MAX_LIMIT on 64-bit).
const MAX_PROCESSES: u64 = 1 << 22;
/// The smallest memory limit: the sandbox's init and a shell need a few MiB.
const MIN_MEMORY: u64 = 8 << 20;

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
    v.top_level(&raw, &mut layer)?;
    v.filesystem(&raw.filesystem, &mut layer)?;
    v.env_files(&raw.filesystem.env_files, &mut layer)?;
    v.network(&raw.network, &mut layer)?;
    layer.landlock = raw.landlock.mode;
    layer.gpu = raw.devices.gpu;
    v.env(&raw.env, &mut layer)?;
    v.limits(&raw.limits, &mut layer)?;
    v.shell_report_audit(&raw, &mut layer)?;
    Ok(layer)
}

/// The command line's additions as a layer: the same entries as a profile's,
/// with errors that name the flag.
pub(super) fn command_line(cli: &super::CommandLine) -> Result<Layer, ProfileError> {
    let mut layer = Layer {
        kind: LayerKind::CommandLine,
        tier: cli.tier,
        network: cli.network,
        home: cli.home,
        report: cli.report.then_some(true),
        audit: cli.audit.clone(),
        gpu: cli.gpu.then_some(true),
        ..Layer::default()
    };
    if cli.overlay || cli.layer.is_some() {
        layer.workspace = Some(WorkspaceMode::Overlay);
    }
    if let Some(name) = &cli.layer {
        if !crate::policy::is_valid_layer_name(name) {
            let origin = Origin::Flag {
                flag: "--layer",
                value: name.clone(),
            };
            return Err(origin.invalid(format!(
                "invalid layer name: {}",
                crate::policy::LAYER_NAME_RULE
            )));
        }
        layer.layer_name = Some(name.clone());
    }
    for (list, flag, out) in [
        (&cli.read, "--read", &mut layer.read),
        (&cli.write, "--write", &mut layer.write),
    ] {
        for (shown, path) in list {
            out.push(Entry {
                value: path.clone(),
                origin: Origin::Flag {
                    flag,
                    value: shown.clone(),
                },
            });
        }
    }
    for spec in &cli.env {
        let (name, value) = match spec.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (spec.as_str(), None),
        };
        if !is_env_name(name, false) {
            let origin = Origin::Flag {
                flag: "--env",
                value: spec.clone(),
            };
            return Err(origin.invalid(format!("invalid variable name '{name}'")));
        }
        layer.env_explicit.push((name.to_string(), value));
    }
    for name in &cli.allow_host {
        let origin = Origin::Flag {
            flag: "--allow-host",
            value: name.clone(),
        };
        net_entry(NetList::Allow, name, &origin)?;
        layer.net_allow.push(Entry {
            value: name.clone(),
            origin,
        });
    }
    for spec in &cli.publish {
        let origin = Origin::Flag {
            flag: "--publish",
            value: spec.clone(),
        };
        let publish = parse_publish(spec).map_err(|e| origin.invalid(e))?;
        if let Some(other) = layer.publish.iter().find(|p| p.value.port == publish.port) {
            return Err(origin.invalid(format!(
                "host port {} is already published (by --publish {})",
                publish.port,
                match &other.origin {
                    Origin::Flag { value, .. } | Origin::File { value, .. } => value,
                }
            )));
        }
        layer.publish.push(Entry {
            value: publish,
            origin,
        });
    }
    if let Some(t) = &cli.timeout {
        let origin = Origin::Flag {
            flag: "--timeout",
            value: t.clone(),
        };
        let d = units::parse_duration(t).map_err(|e| origin.invalid(e))?;
        layer.timeout = Some(Some(d));
    }
    command_line_limits(cli, &mut layer)?;
    Ok(layer)
}

/// `--memory`, `--cpu`, `--processes`: each one given is required.
fn command_line_limits(cli: &super::CommandLine, layer: &mut Layer) -> Result<(), ProfileError> {
    let flag = |flag: &'static str, value: &String| Origin::Flag {
        flag,
        value: value.clone(),
    };
    if let Some(v) = &cli.memory {
        layer.memory = Some(memory_limit(v).map_err(|e| flag("--memory", v).invalid(e))?);
    }
    if let Some(v) = &cli.cpu {
        layer.cpu_millis = Some(cpu_limit(v).map_err(|e| flag("--cpu", v).invalid(e))?);
    }
    if let Some(v) = &cli.processes {
        layer.processes = Some(if v == "none" {
            None
        } else {
            let n = v
                .parse::<u64>()
                .map_err(|_| "expected a whole number of processes, or none".to_string())
                .and_then(process_limit)
                .map_err(|e| flag("--processes", v).invalid(e))?;
            Some(n)
        });
    }
    for (given, r) in [
        (
            cli.memory.is_some() && layer.memory != Some(None),
            Resource::Memory,
        ),
        (
            cli.cpu.is_some() && layer.cpu_millis != Some(None),
            Resource::Cpu,
        ),
        (
            cli.processes.is_some() && layer.processes != Some(None),
            Resource::Processes,
        ),
    ] {
        if given {
            layer.limits_from_command_line.push(r);
        }
    }
    Ok(())
}

/// `"4G"` or `"none"` (no limit).
fn memory_limit(text: &str) -> Result<Option<u64>, String> {
    if text == "none" {
        return Ok(None);
    }
    let size = units::parse_size(text)?;
    if size < MIN_MEMORY {
        return Err(
            "must be at least 8M: the sandbox's init and shell need a few MiB (\"none\" for no limit)"
                .to_string(),
        );
    }
    Ok(Some(size))
}

/// `"2"`, `"0.5"` cores, or `"none"` (no limit).
fn cpu_limit(text: &str) -> Result<Option<u32>, String> {
    if text == "none" {
        return Ok(None);
    }
    units::parse_cpu(text).map(Some)
}

fn process_limit(n: u64) -> Result<u64, String> {
    if n == 0 {
        return Err("must be greater than zero (leave it out for no limit)".into());
    }
    if n > MAX_PROCESSES {
        return Err(format!(
            "must be at most {MAX_PROCESSES} (the kernel's largest pid_max)"
        ));
    }
    Ok(n)
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
        Origin::File {
            location,
            key: key.to_owned(),
            value: format!("{value:?}"),
        }
    }

    /// For values without a span of their own (an empty list): the file only.
    fn origin_of_table(&self, key: &str, value: &str) -> Origin {
        Origin::File {
            location: self.file.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    /// `version`, `extends`, `description`, `tier`.
    fn top_level(&self, raw: &RawProfile, layer: &mut Layer) -> Result<(), ProfileError> {
        let version = *raw.version.get_ref();
        if version != 1 {
            return Err(self
                .origin("version", &raw.version, version)
                .invalid("unsupported profile version (this shellcage reads version 1)"));
        }
        if let Some(extends) = &raw.extends {
            let origin = self.origin("extends", extends, extends.get_ref());
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
                return Err(self
                    .origin("description", description, text)
                    .invalid("must not contain control characters"));
            }
            layer.description = Some(text.clone());
        }
        layer.tier = raw.tier;
        layer.session = raw.session;
        if let Some(idle) = &raw.session_idle {
            let text = idle.get_ref();
            let d = super::units::parse_duration(text)
                .map_err(|why| self.origin("session_idle", idle, text).invalid(&why))?;
            if d.is_zero() {
                return Err(self.origin("session_idle", idle, text).invalid(
                    "must be longer than 0 (to run every command cold: session = \"off\")",
                ));
            }
            layer.session_idle = Some(d);
        }
        Ok(())
    }

    /// `[filesystem]`: workspace, read, write, hide, protect.
    fn filesystem(&self, fs: &RawFilesystem, layer: &mut Layer) -> Result<(), ProfileError> {
        layer.workspace = fs.workspace;
        layer.home = fs.home;
        for (list, key, out) in [
            (&fs.read, "filesystem.read", &mut layer.read),
            (&fs.write, "filesystem.write", &mut layer.write),
        ] {
            for (i, item) in list.iter().enumerate() {
                let origin = self.origin(&format!("{key}[{i}]"), item, item.get_ref());
                let path = self.path_rule(item.get_ref(), &origin)?;
                out.push(Entry {
                    value: path,
                    origin,
                });
            }
        }
        for (i, item) in fs.hide.iter().enumerate() {
            let origin = self.origin(
                &format!("filesystem.hide[{i}]"),
                item,
                item.get_ref().clone(),
            );
            let pattern = self.hide_pattern(item.get_ref(), &origin)?;
            layer.hide.push(Entry {
                value: pattern,
                origin,
            });
        }
        for (i, item) in fs.protect.iter().enumerate() {
            let origin = self.origin(
                &format!("filesystem.protect[{i}]"),
                item,
                item.get_ref().clone(),
            );
            layer.protect.push(relative_path(item.get_ref(), &origin)?);
        }
        Ok(())
    }

    /// `[network]`: the mode and the proxy's lists.
    fn network(&self, net: &RawNetwork, layer: &mut Layer) -> Result<(), ProfileError> {
        layer.network = net.mode;
        for (list, items, out) in [
            (NetList::Allow, &net.allow, &mut layer.net_allow),
            (NetList::Deny, &net.deny, &mut layer.net_deny),
            (
                NetList::AllowPrivate,
                &net.allow_private,
                &mut layer.net_allow_private,
            ),
        ] {
            for (i, item) in items.iter().enumerate() {
                let key = format!("network.{}[{i}]", list.key());
                let origin = self.origin(&key, item, item.get_ref());
                net_entry(list, item.get_ref(), &origin)?;
                out.push(Entry {
                    value: item.get_ref().clone(),
                    origin,
                });
            }
        }
        Ok(())
    }

    /// `[filesystem.env_files]`: the bounds of the `.env` scan.
    fn env_files(&self, scan: &RawEnvFiles, layer: &mut Layer) -> Result<(), ProfileError> {
        layer.env_files_enabled = scan.enabled;
        if let Some(depth) = &scan.max_depth {
            let origin = self.origin("filesystem.env_files.max_depth", depth, depth.get_ref());
            if *depth.get_ref() > MAX_ENV_SCAN_DEPTH {
                return Err(origin.invalid(format!("must be at most {MAX_ENV_SCAN_DEPTH}")));
            }
            layer.env_files_max_depth = Some(to_usize(*depth.get_ref(), &origin)?);
        }
        if let Some(dirs) = &scan.max_dirs {
            let origin = self.origin("filesystem.env_files.max_dirs", dirs, dirs.get_ref());
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
                let origin = self.origin(&format!("{key}[{i}]"), item, item.get_ref());
                out.push(file_name(item.get_ref(), &origin)?);
            }
        }
        Ok(())
    }

    /// `[env]`: pass and set.
    fn env(&self, env: &RawEnv, layer: &mut Layer) -> Result<(), ProfileError> {
        layer.env_tools = env.tools;
        for (i, item) in env.pass.iter().enumerate() {
            let origin = self.origin(&format!("env.pass[{i}]"), item, item.get_ref());
            layer.env_pass.push(env_pattern(item.get_ref(), &origin)?);
        }
        for (name, value) in &env.set {
            let origin = self.origin(&format!("env.set.{name}"), value, value.get_ref());
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
        Ok(())
    }

    /// `[limits]`.
    fn limits(&self, limits: &RawLimits, layer: &mut Layer) -> Result<(), ProfileError> {
        if let Some(timeout) = &limits.timeout {
            let origin = self.origin("limits.timeout", timeout, timeout.get_ref());
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
            let origin = self.origin("limits.open_files", n, n.get_ref());
            if !(1..=MAX_OPEN_FILES).contains(n.get_ref()) {
                return Err(origin.invalid(format!(
                    "must be between 1 and {MAX_OPEN_FILES} (the kernel's default fs.nr_open)"
                )));
            }
            layer.open_files = Some(*n.get_ref());
        }
        if let Some(n) = &limits.processes {
            let origin = self.origin("limits.processes", n, n.get_ref());
            layer.processes = Some(Some(
                process_limit(*n.get_ref()).map_err(|e| origin.invalid(e))?,
            ));
        }
        if let Some(m) = &limits.memory {
            let origin = self.origin("limits.memory", m, m.get_ref());
            layer.memory = Some(memory_limit(m.get_ref()).map_err(|e| origin.invalid(e))?);
        }
        if let Some(c) = &limits.cpu {
            let origin = self.origin("limits.cpu", c, c.get_ref());
            layer.cpu_millis = Some(cpu_limit(c.get_ref()).map_err(|e| origin.invalid(e))?);
        }
        layer.limits_mode = limits.mode;
        for (item, key, out) in [
            (&limits.file_size, "limits.file_size", &mut layer.file_size),
            (&limits.tmp_size, "limits.tmp_size", &mut layer.tmp_size),
            (&limits.home_size, "limits.home_size", &mut layer.home_size),
            (
                &limits.kept_home_size,
                "limits.kept_home_size",
                &mut layer.kept_home_size,
            ),
        ] {
            if let Some(item) = item {
                let origin = self.origin(key, item, item.get_ref());
                let size = units::parse_size(item.get_ref()).map_err(|e| origin.invalid(e))?;
                if size == 0 {
                    return Err(origin.invalid("must be greater than zero"));
                }
                *out = Some(size);
            }
        }
        Ok(())
    }

    /// `[shell]`, `[report]`, `[audit]`.
    fn shell_report_audit(&self, raw: &RawProfile, layer: &mut Layer) -> Result<(), ProfileError> {
        if let Some(candidates) = &raw.shell.candidates {
            let mut shells = Vec::with_capacity(candidates.len());
            for (i, item) in candidates.iter().enumerate() {
                let origin = self.origin(
                    &format!("shell.candidates[{i}]"),
                    item,
                    item.get_ref().clone(),
                );
                if item.get_ref().contains('*') {
                    return Err(origin.invalid("wildcards are only allowed in filesystem.hide"));
                }
                shells.push(self.expand(item.get_ref(), &origin)?);
            }
            if shells.is_empty() {
                return Err(self
                    .origin_of_table("shell.candidates", "[]")
                    .invalid("must list at least one shell"));
            }
            layer.shell = Some(shells);
        }
        layer.report = raw.report.enabled;
        if let Some(file) = &raw.audit.file {
            let origin = self.origin("audit.file", file, file.get_ref());
            if file.get_ref().contains('*') {
                return Err(origin.invalid("wildcards are only allowed in filesystem.hide"));
            }
            layer.audit = Some(self.expand(file.get_ref(), &origin)?);
        }
        Ok(())
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
    if raw.contains('*') && (raw.contains('/') || raw.bytes().all(|b| b == b'*' || b == b'.')) {
        return Err(origin.invalid(
            "a wildcard in filesystem.protect may only be part of one name at the workspace root (e.g. \"*.code-workspace\")",
        ));
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

/// The proxy's three lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NetList {
    Allow,
    Deny,
    AllowPrivate,
}

impl NetList {
    fn key(self) -> &'static str {
        match self {
            NetList::Allow => "allow",
            NetList::Deny => "deny",
            NetList::AllowPrivate => "allow_private",
        }
    }
}

/// One entry checked by the proxy's own parser (the one that enforces it), so an entry
/// that validates here is one the proxy understands.
fn net_entry(list: NetList, text: &str, origin: &Origin) -> Result<(), ProfileError> {
    use crate::net::rules::{Rule, RuleError};
    let why = match list {
        NetList::AllowPrivate => match text.parse::<crate::net::addr::Cidr>() {
            Ok(_) => return Ok(()),
            Err(e) => format!(
                "{} (write an address block like 10.1.2.0/24 or fd00::/8)",
                e.why
            ),
        },
        NetList::Allow | NetList::Deny => match Rule::parse(list.key(), text) {
            Ok(_) => return Ok(()),
            Err(RuleError::Entry { why, .. }) => why,
            Err(e) => e.to_string(),
        },
    };
    Err(origin.invalid(why))
}

/// `[HOST_ADDR:]PORT[:SANDBOX_PORT]`; HOST_ADDR is a loopback address (IPv6 in brackets).
pub(super) fn parse_publish(text: &str) -> Result<Publish, String> {
    use std::net::{IpAddr, Ipv4Addr};
    let port = |p: &str, what: &str| {
        crate::net::rules::parse_port(p).ok_or_else(|| format!("{what} must be a port 1-65535"))
    };
    let (host, rest) = if let Some(v6) = text.strip_prefix('[') {
        let (addr, rest) = v6
            .split_once("]:")
            .ok_or("write an IPv6 address as [ADDR]:PORT")?;
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
        (Some(ip), rest)
    } else {
        match text.split_once(':') {
            Some((first, rest)) if first.contains('.') => {
                let ip: IpAddr = first
                    .parse()
                    .map_err(|_| format!("{first:?} is not an IP address"))?;
                (Some(ip), rest)
            }
            _ => (None, text),
        }
    };
    let (host_port, sandbox_port) = match rest.split_once(':') {
        Some((a, b)) => (port(a, "PORT")?, port(b, "SANDBOX_PORT")?),
        None => {
            let p = port(rest, "PORT")?;
            (p, p)
        }
    };
    let host = host.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    if !host.is_loopback() {
        return Err(format!(
            "{host} is not a loopback address: a published port is reachable from this host only (127.0.0.1, ::1)"
        ));
    }
    Ok(Publish {
        host,
        port: host_port,
        sandbox_port,
    })
}

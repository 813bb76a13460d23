//! TOML profiles → [`Policy`].
//!
//! A profile is found by name (a built-in, or `NAME.toml` in the user profile
//! directory) or by path, parsed into the raw schema (`schema.rs`, unknown keys
//! are errors), validated file by file (`validate.rs`), and the layers are
//! merged into one `Policy` (`merge.rs`). The format and the merge rules are
//! documented for users at the top of `profiles/dev.toml`.
//!
//! The layers, in merge order: the `extends` chain from its root to the
//! profile asked for, then the command line ([`CommandLine`]). Every layer is
//! validated and merged by the same code, so a check (hide wins over a
//! visible path, variable names, durations) exists once.
//!
//! Lookup rules, chosen so that what runs is what the user asked for:
//! - a value containing `/` or ending in `.toml` is a path; anything else a name;
//! - a user profile may not share a built-in's name: that is an error, never a
//!   silent shadowing (rename it);
//! - built-ins extend only built-ins;
//! - a profile is never read from the workspace implicitly, and a name that
//!   resolves to a file inside the workspace is refused, because the sandboxed
//!   command can write there. A path given explicitly is the user's choice.

pub mod managed;
mod merge;
mod schema;
pub mod units;
mod validate;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::policy::{NetMode, Policy, ProfileChain, TierChoice};

pub use units::{CPU_MIN_MILLIS, parse_cpu, parse_duration, parse_size};

/// Where names are resolved and paths expanded.
#[derive(Debug, Clone)]
pub struct LoadContext {
    /// The caller's home directory (absolute): `~` in profiles.
    pub home: PathBuf,
    /// The workspace (absolute, canonical): `{workspace}` in profiles.
    pub workspace: PathBuf,
    /// User profiles, usually `~/.config/shellcage/profiles`.
    pub user_dir: Option<PathBuf>,
}

/// What the command line adds to a profile: one more layer, merged after the
/// `extends` chain. Paths are given canonical (they must exist); the rest as
/// typed, and validated like a profile's values.
#[derive(Debug, Clone, Default)]
pub struct CommandLine {
    /// `--read`: each path as given (for errors) and canonical.
    pub read: Vec<(String, PathBuf)>,
    /// `--write`, likewise.
    pub write: Vec<(String, PathBuf)>,
    /// `--net`.
    pub network: Option<NetMode>,
    /// `--home`.
    pub home: Option<crate::policy::HomeMode>,
    /// `--allow-host`, as given (checked like `network.allow` entries).
    pub allow_host: Vec<String>,
    /// `--publish`, as given.
    pub publish: Vec<String>,
    /// `--tier`, else `SHELLCAGE_TIER`.
    pub tier: Option<TierChoice>,
    /// `--env NAME[=VALUE]`, as given.
    pub env: Vec<String>,
    /// `--timeout`, as given.
    pub timeout: Option<String>,
    /// `--memory`, `--cpu`, `--processes`, as given.
    pub memory: Option<String>,
    pub cpu: Option<String>,
    pub processes: Option<String>,
    /// `--report` or `--report-file` was given.
    pub report: bool,
    /// `--audit` (absolute).
    pub audit: Option<PathBuf>,
    /// `--overlay`: the workspace is a copy-on-write layer.
    pub overlay: bool,
    /// `--layer NAME` (implies `--overlay`), as given.
    pub layer: Option<String>,
    /// `--gpu`: expose the host's GPU device nodes (required to find one).
    pub gpu: bool,
}

/// One entry of [`list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileInfo {
    pub name: String,
    /// `builtin:NAME` or the file path.
    pub source: String,
    pub description: Option<String>,
    /// Why the profile cannot be loaded, if it cannot.
    pub problem: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {file}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read profile {file}: not a regular file")]
    NotAFile { file: String },
    #[error("cannot read profile {file}: larger than {MAX_PROFILE_BYTES} bytes")]
    TooLarge { file: String },
    /// TOML syntax, unknown keys, wrong types; `message` includes the line.
    #[error("invalid profile {file}: {message}")]
    Syntax { file: String, message: String },
    /// `location` is `file:line`; `value` is quoted and escaped when a string.
    #[error("invalid profile {location}: {key} = {value}: {reason}")]
    Invalid {
        location: String,
        key: String,
        value: String,
        reason: String,
    },
    /// A command-line value: the flag and the value as given.
    #[error("{flag} {value}: {reason}")]
    Flag {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "invalid profile {file}: {key} is not set (hint: set it, or add extends = \"dev\" to start from the default profile)"
    )]
    Missing { file: String, key: String },
    #[error("invalid profile name {name:?}: {NAME_RULE}")]
    BadName { name: String },
    #[error("no profile named {name:?} (built-in profiles: {builtins}; user profiles: {user_dir})")]
    NotFound {
        name: String,
        builtins: String,
        user_dir: String,
    },
    #[error(
        "user profile {file} has the name of the built-in profile {name:?} (hint: rename it, e.g. to my-{name}.toml)"
    )]
    ShadowsBuiltin { name: String, file: String },
    #[error(
        "refusing to load profile {file} by name: it is inside the workspace {workspace}, where sandboxed commands can write (hint: pass its path explicitly if you trust it)"
    )]
    InWorkspace { file: String, workspace: String },
    #[error("profile inheritance cycle: {chain}")]
    Cycle { chain: String },
    #[error("profile chain longer than {MAX_CHAIN} profiles: {chain}")]
    TooDeep { chain: String },
    #[error("cannot load profiles: {what} must be an absolute path, not {path:?}")]
    Context { what: &'static str, path: PathBuf },
}

/// Most profiles in one `extends` chain, the loaded one included.
pub const MAX_CHAIN: usize = 8;
/// Largest profile file read; a profile is a few kilobytes.
const MAX_PROFILE_BYTES: u64 = 1 << 20;
const NAME_RULE: &str = "use letters, digits, '-', '_' and '.', starting with a letter or digit (a path needs a '/' or a .toml suffix)";

const BUILTINS: [(&str, &str); 3] = [
    ("dev", include_str!("../../profiles/dev.toml")),
    ("readonly", include_str!("../../profiles/readonly.toml")),
    ("ci", include_str!("../../profiles/ci.toml")),
];
const BUILTIN_NAMES: [&str; 3] = [BUILTINS[0].0, BUILTINS[1].0, BUILTINS[2].0];

/// The built-in profile names, the default (`dev`) first.
pub fn builtin_names() -> &'static [&'static str] {
    &BUILTIN_NAMES
}

/// The embedded text of a built-in profile.
pub fn builtin_text(name: &str) -> Option<&'static str> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Loads a profile by name or path and builds the validated policy.
pub fn load(name_or_path: &str, ctx: &LoadContext) -> Result<Policy, ProfileError> {
    load_with(name_or_path, ctx, None)
}

/// [`load`], with the command line's layer merged last.
pub fn load_with(
    name_or_path: &str,
    ctx: &LoadContext,
    command_line: Option<&CommandLine>,
) -> Result<Policy, ProfileError> {
    for (what, path) in [("home", &ctx.home), ("workspace", &ctx.workspace)] {
        if !path.is_absolute() {
            return Err(ProfileError::Context {
                what,
                path: path.clone(),
            });
        }
    }
    let first = if is_path(name_or_path) {
        read_file(Path::new(name_or_path))?
    } else {
        resolve_name(name_or_path, ctx, false)?
    };
    load_chain(first, ctx, command_line).map(|(policy, _)| policy)
}

/// The built-in profiles, then the user profiles (sorted), each with its
/// description or the reason it cannot be loaded.
pub fn list(ctx: &LoadContext) -> Vec<ProfileInfo> {
    let mut out: Vec<ProfileInfo> = BUILTINS
        .iter()
        .map(|(name, _)| {
            let loaded = load_chain(builtin(name), ctx, None);
            ProfileInfo {
                name: (*name).to_owned(),
                source: format!("builtin:{name}"),
                description: loaded.as_ref().ok().and_then(|(_, d)| d.clone()),
                problem: loaded.err().map(|e| e.to_string()),
            }
        })
        .collect();
    let Some(dir) = &ctx.user_dir else {
        return out;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for path in files {
        let name = stem(&path);
        let loaded = if is_valid_name(&name) {
            resolve_name(&name, ctx, false).and_then(|first| load_chain(first, ctx, None))
        } else {
            Err(ProfileError::BadName { name: name.clone() })
        };
        out.push(ProfileInfo {
            name,
            source: path.display().to_string(),
            description: loaded.as_ref().ok().and_then(|(_, d)| d.clone()),
            problem: loaded.err().map(|e| e.to_string()),
        });
    }
    out
}

/// One profile's text and where it came from.
struct Source {
    name: String,
    /// `builtin:NAME` or the canonical file path: names the file in errors,
    /// identifies it for cycle detection, and goes into the hash.
    id: String,
    text: String,
    builtin: bool,
}

fn builtin(name: &'static str) -> Source {
    Source {
        name: name.to_owned(),
        id: format!("builtin:{name}"),
        text: builtin_text(name).unwrap_or_default().to_owned(),
        builtin: true,
    }
}

/// Follows `extends` from `first` to the root, then merges the chain (root
/// first) and the command line. Returns the policy and the first profile's
/// description.
fn load_chain(
    first: Source,
    ctx: &LoadContext,
    command_line: Option<&CommandLine>,
) -> Result<(Policy, Option<String>), ProfileError> {
    let mut sources = vec![first];
    let mut layers = Vec::new();
    loop {
        let current = sources.last().expect("the chain starts with one profile");
        let raw: schema::RawProfile =
            toml::from_str(&current.text).map_err(|e| ProfileError::Syntax {
                file: current.id.clone(),
                message: escape_controls(e.to_string().trim_end()),
            })?;
        let layer = validate::layer(raw, &current.id, &current.text, ctx)?;
        let parent = layer.extends.as_ref().map(|e| e.value.clone());
        let builtin_only = current.builtin;
        layers.push(layer);
        let Some(parent) = parent else { break };
        let chain = |last: &str| {
            sources
                .iter()
                .map(|s| s.id.as_str())
                .chain([last])
                .collect::<Vec<_>>()
                .join(" -> ")
        };
        if sources.len() == MAX_CHAIN {
            return Err(ProfileError::TooDeep {
                chain: chain(&parent),
            });
        }
        let next = resolve_name(&parent, ctx, builtin_only)?;
        if sources.iter().any(|s| s.id == next.id) {
            return Err(ProfileError::Cycle {
                chain: chain(&next.id),
            });
        }
        sources.push(next);
    }

    let profile_chain = ProfileChain(
        sources
            .iter()
            .map(|source| (source.id.clone(), source.text.clone()))
            .collect(),
    );

    layers.reverse();
    let description = layers.last().and_then(|l| l.description.clone());
    if let Some(cli) = command_line {
        layers.push(validate::command_line(cli)?);
    }
    let root = sources.last().map(|s| s.id.clone()).unwrap_or_default();
    let first = &sources[0];
    let policy = merge::build(
        &layers,
        &root,
        merge::Identity {
            profile: first.name.clone(),
            source: first.id.clone(),
            profile_chain,
            home: ctx.home.clone(),
            workspace: ctx.workspace.clone(),
        },
    )?;
    Ok((policy, description))
}

/// A built-in, or `NAME.toml` in the user directory (unless `builtin_only`).
fn resolve_name(name: &str, ctx: &LoadContext, builtin_only: bool) -> Result<Source, ProfileError> {
    if !is_valid_name(name) {
        return Err(ProfileError::BadName {
            name: name.to_owned(),
        });
    }
    let builtin_name = BUILTIN_NAMES.iter().find(|n| **n == name).copied();
    let user_file = match (&ctx.user_dir, builtin_only) {
        (Some(dir), false) => Some(dir.join(format!("{name}.toml"))),
        _ => None,
    }
    .filter(|p| p.symlink_metadata().is_ok());

    match (builtin_name, user_file) {
        (Some(name), Some(file)) => Err(ProfileError::ShadowsBuiltin {
            name: name.to_owned(),
            file: file.display().to_string(),
        }),
        (Some(name), None) => Ok(builtin(name)),
        (None, Some(file)) => {
            let source = read_file(&file)?;
            let workspace = ctx
                .workspace
                .canonicalize()
                .unwrap_or_else(|_| ctx.workspace.clone());
            if Path::new(&source.id).starts_with(&workspace) {
                return Err(ProfileError::InWorkspace {
                    file: source.id,
                    workspace: workspace.display().to_string(),
                });
            }
            Ok(source)
        }
        (None, None) => Err(ProfileError::NotFound {
            name: name.to_owned(),
            builtins: BUILTIN_NAMES.join(", "),
            user_dir: match (&ctx.user_dir, builtin_only) {
                (_, true) => "not searched for built-ins".to_owned(),
                (Some(dir), false) => dir.display().to_string(),
                (None, false) => "none".to_owned(),
            },
        }),
    }
}

/// Reads a profile file: a regular file, at most `MAX_PROFILE_BYTES`, UTF-8.
fn read_file(path: &Path) -> Result<Source, ProfileError> {
    let shown = path.display().to_string();
    let read_err = |source| ProfileError::Read {
        file: shown.clone(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    if !file.metadata().map_err(read_err)?.is_file() {
        return Err(ProfileError::NotAFile { file: shown });
    }
    let id = path.canonicalize().map_err(read_err)?.display().to_string();
    let mut bytes = Vec::new();
    file.take(MAX_PROFILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_PROFILE_BYTES {
        return Err(ProfileError::TooLarge { file: id });
    }
    let text = String::from_utf8(bytes).map_err(|_| ProfileError::Syntax {
        file: id.clone(),
        message: "not valid UTF-8".to_owned(),
    })?;
    Ok(Source {
        name: stem(path),
        id,
        text,
        builtin: false,
    })
}

/// The TOML error quotes the offending line; escape control characters (other
/// than newlines) so a hostile profile cannot drive the user's terminal.
fn escape_controls(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() && c != '\n' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A value with a `/` or a `.toml` suffix is a path, anything else a name.
fn is_path(value: &str) -> bool {
    value.contains('/') || value.ends_with(".toml")
}

fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

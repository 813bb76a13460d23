//! Tool config files with a secret in them (`~/.npmrc` with an `_authToken`,
//! `~/.cargo/config.toml` with a registry `token`, `~/.gitconfig` with a
//! `[url "https://TOKEN@host/"]`): the sandbox shows a sanitised copy
//! ([`super::sanitize`]) read-only where the tool looks, never the original.
//!
//! Host side, before the sandbox starts: each place of
//! [`sanitize::LOCATIONS`] is expanded with the sandbox's environment
//! (`CARGO_HOME`, `npm_config_userconfig`, `PIP_CONFIG_FILE` pass into it),
//! plus npm's and git's own prefixes found on the sandbox's PATH, plus the
//! files a gitconfig includes. An existing regular file there is read and
//! sanitised, then, by how the mount plan shows its path:
//!
//! | the sandbox shows the path          | copy has removals | no removals | cannot sanitise |
//! |-------------------------------------|-------------------|-------------|-----------------|
//! | through a read-only bind            | copy over it      | as it is    | masked          |
//! | masked (a `hide` rule)              | copy replaces mask| copy        | stays masked    |
//! | in the sandbox's own home (tmpfs)   | copy              | copy        | absent          |
//! | through a writable bind, nowhere    | left alone (the profile's choice)                 |
//!
//! The container tier has no mount namespace: a file with removals or one
//! that cannot be sanitised is kept out of the Landlock allowlist instead
//! (the tool then runs without it).
//!
//! What was removed is in the report (file, line, key and reason: never a
//! value); a file that stays hidden is named on stderr once per workspace
//! and profile.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::mount::{MountPlan, Shown};
use super::sanitize::{self, Format, LOCATIONS, SanitizeError, Sanitized};

/// How deep gitconfig includes are followed (git's own limit is 10).
const MAX_INCLUDE_DEPTH: usize = 10;

/// One config file the sandbox would show, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub format: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    #[serde(skip)]
    text: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "shown", rename_all = "snake_case")]
pub enum Verdict {
    /// The sanitised copy is shown; `removed` lists what it lacks.
    Copy { removed: Vec<RemovedEntry> },
    /// Shown as it is (nothing to remove, and the sandbox shows it anyway).
    Unchanged,
    /// Hidden: it could not be sanitised.
    Hidden { reason: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct RemovedEntry {
    pub line: usize,
    pub key: String,
    pub why: String,
}

/// The config files found for one launch.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Configs {
    pub files: Vec<ConfigFile>,
}

/// Where the sandbox's tools look, as host paths, with their formats.
/// `home` is the sandbox's `$HOME` path, `vars` its environment.
pub fn candidates(home: &Path, vars: &BTreeMap<String, String>) -> Vec<(PathBuf, Format)> {
    let var = |name: &str| {
        vars.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| v.starts_with('/'))
    };
    // The default places and the ones the variables name: a command can
    // read the default file whatever the variable says.
    let dirs = |name: &str, default: PathBuf| -> Vec<PathBuf> {
        let mut v = vec![default];
        v.extend(var(name).map(PathBuf::from).filter(|p| p != &v[0]));
        v
    };
    let xdg = dirs("XDG_CONFIG_HOME", home.join(".config"));
    let cargo_home = dirs("CARGO_HOME", home.join(".cargo"));
    let path = vars.get("PATH").map_or("", String::as_str);
    let npm_prefix: Vec<PathBuf> = var("NPM_CONFIG_PREFIX")
        .map(PathBuf::from)
        .into_iter()
        .chain(prefix_of("node", path))
        .collect();
    let git_prefix: Vec<PathBuf> = prefix_of("git", path).into_iter().collect();
    let venv: Vec<PathBuf> = var("VIRTUAL_ENV").map(PathBuf::from).into_iter().collect();
    let homes = [home.to_path_buf()];
    let mut out = Vec::new();
    for loc in LOCATIONS {
        let (bases, rest): (&[PathBuf], &str) = match loc.path.split_once('/') {
            Some(("~", rest)) => (&homes, rest),
            Some(("$XDG_CONFIG_HOME", rest)) => (&xdg, rest),
            Some(("$CARGO_HOME", rest)) => (&cargo_home, rest),
            Some(("$VIRTUAL_ENV", rest)) => (&venv, rest),
            Some(("$PREFIX", rest)) => (&npm_prefix, rest),
            Some(("$NPM_DIR", rest)) => (&npm_prefix, rest),
            Some(("$GIT_PREFIX", rest)) => (&git_prefix, rest),
            _ => (&[][..], loc.path),
        };
        let mut paths: Vec<PathBuf> = if loc.path.starts_with('/') {
            vec![PathBuf::from(loc.path)]
        } else if loc.path.starts_with("$NPM_DIR/") {
            bases
                .iter()
                .map(|b| b.join("lib/node_modules/npm").join(rest))
                .collect()
        } else {
            bases.iter().map(|b| b.join(rest)).collect()
        };
        // A variable that names the file itself (not CARGO_HOME, a directory).
        paths.extend(
            loc.env
                .filter(|e| *e != "CARGO_HOME" && *e != "YARN_RC_FILENAME")
                .and_then(var)
                .map(PathBuf::from),
        );
        for p in paths {
            if !out.iter().any(|(q, _)| q == &p) {
                out.push((p, loc.format));
            }
        }
    }
    out
}

/// `dirname(dirname(realpath(prog)))` for the first `prog` on `path`
/// (`/usr/bin/node` → `/usr`).
fn prefix_of(prog: &str, path: &str) -> Option<PathBuf> {
    let found = path
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())?;
    let real = std::fs::canonicalize(found).ok()?;
    Some(real.parent()?.parent()?.to_path_buf())
}

/// Read a host config file: a regular file (a FIFO or device never blocks
/// the launch), at most [`sanitize::MAX_SIZE`] + 1 bytes.
fn read_config(path: &Path) -> Option<Result<Vec<u8>, SanitizeError>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = Vec::new();
    match f.take(sanitize::MAX_SIZE as u64 + 1).read_to_end(&mut buf) {
        Ok(_) if buf.len() > sanitize::MAX_SIZE => Some(Err(SanitizeError::TooLarge)),
        Ok(_) => Some(Ok(buf)),
        Err(_) => None,
    }
}

/// Where the sandbox would show `path`, following a symlink the plan
/// recreates or that lies under a bind to its target; `None` when the
/// sandbox does not show it in a way a copy can replace.
fn sandbox_target(plan: &MountPlan, path: &Path) -> Option<(PathBuf, Shown)> {
    let shown = plan.shows(path);
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if shown == Shown::Symlink || (is_link && matches!(shown, Shown::Bound { .. })) {
        let real = std::fs::canonicalize(path).ok()?;
        return match plan.shows(&real) {
            s @ (Shown::Bound { readonly: true } | Shown::Masked) => Some((real, s)),
            _ => None,
        };
    }
    match shown {
        Shown::Bound { readonly: true } | Shown::Masked | Shown::Own => {
            Some((path.to_path_buf(), shown))
        }
        _ => None,
    }
}

/// Find, sanitise and place the config files for a namespaces-tier launch.
pub fn apply(plan: &mut MountPlan, home: &Path, vars: &BTreeMap<String, String>) -> Configs {
    let mut out = Configs::default();
    let mut queue: Vec<(PathBuf, Format, usize)> = candidates(home, vars)
        .into_iter()
        .map(|(p, f)| (p, f, 0))
        .collect();
    let mut seen: Vec<PathBuf> = Vec::new();
    while let Some((path, format, depth)) = queue.pop() {
        let Some((at, shown)) = sandbox_target(plan, &path) else {
            continue;
        };
        if seen.contains(&at) {
            continue;
        }
        seen.push(at.clone());
        let Some(read) = read_config(&path) else {
            continue;
        };
        let result = read.and_then(|bytes| sanitize::sanitize(format, &bytes));
        if let Ok(s) = &result
            && format == Format::GitConfig
            && depth < MAX_INCLUDE_DEPTH
        {
            for inc in includes(&s.includes, &path, home) {
                queue.push((inc, Format::GitConfig, depth + 1));
            }
        }
        let file = judge(&path, format, result, shown);
        match (&file.verdict, file.text.as_ref()) {
            (Verdict::Copy { .. }, Some(text))
                if plan
                    .add_file(&at, text.clone().into_bytes(), 0o444)
                    .is_err() =>
            {
                // The copy cannot be placed: never show the original.
                plan.add_mask(&at);
                out.files.push(ConfigFile {
                    verdict: Verdict::Hidden {
                        reason: "the copy cannot be placed there".into(),
                    },
                    text: None,
                    ..file
                });
                continue;
            }
            (Verdict::Hidden { .. }, _) => plan.add_mask(&at),
            _ => {}
        }
        out.files.push(ConfigFile { text: None, ..file });
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The verdict for one file, by the table in the module doc.
fn judge(
    path: &Path,
    format: Format,
    result: Result<Sanitized, SanitizeError>,
    shown: Shown,
) -> ConfigFile {
    let (verdict, text) = match result {
        Ok(s) if s.removed.is_empty() && matches!(shown, Shown::Bound { .. }) => {
            (Verdict::Unchanged, None)
        }
        Ok(s) => (
            Verdict::Copy {
                removed: s
                    .removed
                    .iter()
                    .map(|r| RemovedEntry {
                        line: r.line,
                        key: r.key.clone(),
                        why: r.why.to_string(),
                    })
                    .collect(),
            },
            Some(s.text),
        ),
        Err(e) => (
            Verdict::Hidden {
                reason: e.to_string(),
            },
            None,
        ),
    };
    ConfigFile {
        path: path.to_path_buf(),
        format: format.to_string(),
        verdict,
        text,
    }
}

/// The files a gitconfig's `include.path` values name, as git resolves
/// them: `~/` from the home, relative paths from the including file's
/// directory.
fn includes(raw: &[String], file: &Path, home: &Path) -> Vec<PathBuf> {
    raw.iter()
        .filter_map(|p| {
            let p = p.trim();
            if let Some(rest) = p.strip_prefix("~/") {
                Some(home.join(rest))
            } else if p.starts_with('/') {
                Some(PathBuf::from(p))
            } else if p.is_empty() || p.starts_with('~') {
                None
            } else {
                Some(file.parent()?.join(p))
            }
        })
        .collect()
}

/// Container tier: the config files (with the host home) that must not be
/// readable: those with something to remove, and those that cannot be
/// sanitised. They become hide rules for the Landlock allowlist.
pub fn container_hides(home: &Path, vars: &BTreeMap<String, String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut queue: Vec<(PathBuf, Format, usize)> = candidates(home, vars)
        .into_iter()
        .map(|(p, f)| (p, f, 0))
        .collect();
    while let Some((path, format, depth)) = queue.pop() {
        let Some(read) = read_config(&path) else {
            continue;
        };
        match read.and_then(|b| sanitize::sanitize(format, &b)) {
            Ok(s) => {
                if format == Format::GitConfig && depth < MAX_INCLUDE_DEPTH {
                    for inc in includes(&s.includes, &path, home) {
                        queue.push((inc, Format::GitConfig, depth + 1));
                    }
                }
                if !s.removed.is_empty() {
                    out.push(path);
                }
            }
            Err(_) => out.push(path),
        }
    }
    out
}

impl Configs {
    /// One stderr line per file that stays hidden (path and reason; never
    /// its content), for the caller to print once per session.
    pub fn hidden_lines(&self, home: &Path) -> Vec<String> {
        self.files
            .iter()
            .filter_map(|f| match &f.verdict {
                Verdict::Hidden { reason } => Some(format!(
                    "shellcage: {} stays hidden: {reason} (hint: fix the file; a setting you need can be passed as a variable with --env NAME)",
                    tilde(&f.path, home)
                )),
                _ => None,
            })
            .collect()
    }
}

fn tilde(p: &Path, home: &Path) -> String {
    match p.strip_prefix(home) {
        Ok(rest) => format!("~/{}", rest.display()),
        Err(_) => p.display().to_string(),
    }
}

#[cfg(test)]
mod tests;

//! Sanitised copies of tool config files that hold a secret next to useful
//! settings (`~/.npmrc` with `fund=false` and an `_authToken`): the copy keeps
//! everything byte for byte, comments included, except the credential
//! entries, which are removed (or, for a URL, lose only their user:password).
//!
//! Fail closed: a file that does not parse in its format, is not UTF-8, is
//! larger than [`MAX_SIZE`], or still holds something credential-looking
//! after sanitising gives an error with the reason (line numbers and key
//! names, never values), and phase 2 keeps such a file hidden.
//!
//! | format      | removed                                                            |
//! |-------------|--------------------------------------------------------------------|
//! | npmrc       | `//host/:*` scoped keys (`_authToken`, `_auth`, `_password`,        |
//! |             | `username`, `certfile`, `keyfile` …), `_*` keys, `username`, `key`, |
//! |             | `otp`, secret-looking names (`*token*`, `*auth*` …)                |
//! | pip.conf    | `keyring-provider`, secret-looking names                           |
//! | .pypirc     | `username`, `password`, secret-looking names                       |
//! | cargo       | `token`, `credential-provider`, `global-credential-providers`,     |
//! |             | `[credential-alias]`, secret-looking names                         |
//! | uv.toml     | `keyring-provider`, secret-looking names                           |
//! | gitconfig   | `[credential]` and `[credential "…"]` sections, sections whose URL  |
//! |             | carries userinfo (`[url "https://TOKEN@host/"]`), `http.extraHeader`, |
//! |             | keys named `*pass*`/`*token*`/`*secret*` (`sendemail.smtpPass`)      |
//! | .yarnrc.yml | `npmAuthToken`, `npmAuthIdent`, secret-looking names, at any depth  |
//! |             | (`npmRegistries."//host".npmAuthToken`, `npmScopes.x.npmAuthToken`) |
//!
//! In every format: a value that looks like a credential ([`credential`]) is
//! removed with its entry, except a URL whose only credential is its
//! userinfo, which is kept with the userinfo cut (`https://u:p@h/` →
//! `https://h/`); a comment that looks like one is removed. Afterwards every
//! line of the copy is checked again, and no removed value may appear in it.

mod gitconfig;
mod ini;
mod toml;
mod yaml;

use std::fmt;

use super::credential::{self, Finding};

/// Where a tool reads a user- or system-level config file, for phase 2 to
/// bind the sanitised copy over (`~` is the home, `$X` a variable or a
/// value the tool derives; `env` names the variable that replaces the path).
/// Project files inside the workspace (`.npmrc`, `.cargo/config.toml`,
/// `uv.toml` …) are the project's own and are not listed.
#[derive(Debug, Clone, Copy)]
pub struct Location {
    pub tool: &'static str,
    pub path: &'static str,
    pub env: Option<&'static str>,
    pub format: Format,
}

const fn loc(
    tool: &'static str,
    path: &'static str,
    env: Option<&'static str>,
    format: Format,
) -> Location {
    Location {
        tool,
        path,
        env,
        format,
    }
}

#[rustfmt::skip]
pub const LOCATIONS: &[Location] = &[
    loc("npm",  "~/.npmrc",                   Some("NPM_CONFIG_USERCONFIG"), Format::Npmrc),
    loc("npm",  "$PREFIX/etc/npmrc",          Some("NPM_CONFIG_GLOBALCONFIG"), Format::Npmrc),
    loc("npm",  "$NPM_DIR/npmrc",             None, Format::Npmrc),
    loc("pnpm", "$XDG_CONFIG_HOME/pnpm/rc",   None, Format::Npmrc),
    loc("yarn", "~/.yarnrc.yml",              Some("YARN_RC_FILENAME"), Format::YarnRc),
    loc("pip",  "$XDG_CONFIG_HOME/pip/pip.conf", Some("PIP_CONFIG_FILE"), Format::PipConf),
    loc("pip",  "~/.pip/pip.conf",            Some("PIP_CONFIG_FILE"), Format::PipConf),
    loc("pip",  "/etc/pip.conf",              None, Format::PipConf),
    loc("pip",  "/etc/xdg/pip/pip.conf",      None, Format::PipConf),
    loc("pip",  "$VIRTUAL_ENV/pip.conf",      None, Format::PipConf),
    loc("twine", "~/.pypirc",                 None, Format::Pypirc),
    loc("cargo", "$CARGO_HOME/config.toml",   Some("CARGO_HOME"), Format::CargoConfig),
    loc("cargo", "$CARGO_HOME/config",        Some("CARGO_HOME"), Format::CargoConfig),
    loc("uv",   "$XDG_CONFIG_HOME/uv/uv.toml", Some("UV_CONFIG_FILE"), Format::UvToml),
    loc("uv",   "/etc/xdg/uv/uv.toml",        None, Format::UvToml),
    loc("uv",   "/etc/uv/uv.toml",            None, Format::UvToml),
    loc("git",  "~/.gitconfig",               Some("GIT_CONFIG_GLOBAL"), Format::GitConfig),
    loc("git",  "$XDG_CONFIG_HOME/git/config", None, Format::GitConfig),
    loc("git",  "/etc/gitconfig",             Some("GIT_CONFIG_SYSTEM"), Format::GitConfig),
    loc("git",  "$GIT_PREFIX/etc/gitconfig",  Some("GIT_CONFIG_SYSTEM"), Format::GitConfig),
];

/// The format of a config file, by its path (for files a profile names).
pub fn format_of(path: &std::path::Path) -> Option<Format> {
    let name = path.file_name()?.to_str()?;
    let parent = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str());
    Some(match (parent, name) {
        (_, ".npmrc" | "npmrc") | (Some("pnpm"), "rc") => Format::Npmrc,
        (_, "pip.conf" | "pip.ini") => Format::PipConf,
        (_, ".pypirc") => Format::Pypirc,
        (Some(".cargo"), "config.toml" | "config") => Format::CargoConfig,
        (_, "uv.toml") => Format::UvToml,
        (_, ".gitconfig" | "gitconfig") | (Some("git"), "config") => Format::GitConfig,
        (_, ".yarnrc.yml") => Format::YarnRc,
        _ => return None,
    })
}

/// Files larger than this are not sanitised (and stay hidden).
pub const MAX_SIZE: usize = 1 << 20;

/// A supported config format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Npmrc,
    PipConf,
    Pypirc,
    CargoConfig,
    UvToml,
    GitConfig,
    YarnRc,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Npmrc => "npmrc",
            Format::PipConf => "pip.conf",
            Format::Pypirc => ".pypirc",
            Format::CargoConfig => "cargo config",
            Format::UvToml => "uv.toml",
            Format::GitConfig => "gitconfig",
            Format::YarnRc => ".yarnrc.yml",
        })
    }
}

/// Why an entry was removed or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The key (or section) holds credentials by its name.
    Key,
    /// The value looked like a credential.
    Value(Finding),
    /// A URL's user:password was cut; the entry was kept.
    Userinfo,
    /// A comment looked like it held a credential.
    Comment,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Key => f.write_str("credential key"),
            Why::Value(k) => write!(f, "credential value ({k})"),
            Why::Userinfo => f.write_str("user:password cut from a URL"),
            Why::Comment => f.write_str("comment with a credential"),
        }
    }
}

/// One removed or changed entry: where and why, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// 1-based line in the original file.
    pub line: usize,
    /// The key, as a dotted path where the format nests (`registries.x.token`).
    pub key: String,
    pub why: Why,
}

/// The sanitised copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sanitized {
    pub text: String,
    pub removed: Vec<Removed>,
    /// Other files this one makes the tool read (gitconfig `include.path`,
    /// `includeIf.*.path`), as written: not sanitised here.
    pub includes: Vec<String>,
}

/// Why no copy can be exposed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SanitizeError {
    #[error("cannot parse as {format}: line {line}: {what}")]
    Parse {
        format: Format,
        line: usize,
        what: String,
    },
    #[error("not UTF-8 text")]
    NotText,
    #[error("larger than {MAX_SIZE} bytes")]
    TooLarge,
    #[error("line {line} still looks like it holds a credential ({finding}) after sanitising")]
    Residual { line: usize, finding: Finding },
    #[error("a removed credential still appears elsewhere in the file")]
    Leak,
}

/// What a format sanitiser hands back: the copy, what it removed, and the
/// removed secret strings (checked against the copy, then dropped).
#[derive(Default)]
pub(crate) struct Work {
    pub removed: Vec<Removed>,
    pub secrets: Vec<String>,
    pub includes: Vec<String>,
}

impl Work {
    /// Record a removal. `secret`: the removed value, when it is a secret
    /// (a token, a password) rather than a name (a user name, a helper), so
    /// the copy is checked not to hold it anywhere else.
    pub(crate) fn remove(
        &mut self,
        line: usize,
        key: impl Into<String>,
        why: Why,
        secret: Option<&str>,
    ) {
        self.removed.push(Removed {
            line,
            key: key.into(),
            why,
        });
        if let Some(v) = secret {
            self.secret(v);
        }
    }

    /// Remember `value` (and its URL userinfo parts) to check the copy
    /// against. Short values (`true`, `1`) are not checked: they would match
    /// anywhere.
    pub(crate) fn secret(&mut self, value: &str) {
        let v = value.trim().trim_matches(|c| c == '"' || c == '\'');
        if v.len() >= 6 {
            self.secrets.push(v.to_string());
        }
        for r in credential::url_userinfo_spans(v) {
            let info = &v[r.start..r.end - 1];
            for part in std::iter::once(info).chain(info.split(':')) {
                if part.len() >= 6 {
                    self.secrets.push(part.to_string());
                }
            }
        }
    }
}

/// What the verdict on one entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep,
    /// Keep the entry with its URLs' userinfo cut.
    Strip,
    Remove(Why),
}

/// The verdict on a value, given whether its key is credential-named.
pub(crate) fn judge(key_is_secret: bool, key: &str, value: &str) -> Verdict {
    if key_is_secret {
        return Verdict::Remove(Why::Key);
    }
    let keylike = credential::keylike_name(key);
    match credential::find(value, keylike) {
        None => Verdict::Keep,
        Some(Finding::UrlUserinfo) => {
            match credential::find(&credential::strip_url_userinfo(value), keylike) {
                None => Verdict::Strip,
                Some(k) => Verdict::Remove(Why::Value(k)),
            }
        }
        Some(k) => Verdict::Remove(Why::Value(k)),
    }
}

/// Is `key` (a config key, any separators) secret-looking by the
/// environment's name rules?
pub(crate) fn secret_key_name(key: &str) -> bool {
    let env_like: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    super::env::is_secret_name(&env_like)
}

/// The sanitised copy of `text` in `format`.
pub fn sanitize(format: Format, bytes: &[u8]) -> Result<Sanitized, SanitizeError> {
    if bytes.len() > MAX_SIZE {
        return Err(SanitizeError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| SanitizeError::NotText)?;
    let mut work = Work::default();
    let copy = match format {
        Format::Npmrc => ini::sanitize(ini::Dialect::Npm, text, &mut work),
        Format::PipConf => ini::sanitize(ini::Dialect::Pip, text, &mut work),
        Format::Pypirc => ini::sanitize(ini::Dialect::Pypi, text, &mut work),
        Format::CargoConfig => toml::sanitize(toml::Dialect::Cargo, text, &mut work),
        Format::UvToml => toml::sanitize(toml::Dialect::Uv, text, &mut work),
        Format::GitConfig => gitconfig::sanitize(text, &mut work),
        Format::YarnRc => yaml::sanitize(text, &mut work),
    }
    .map_err(|(line, what)| SanitizeError::Parse { format, line, what })?;
    check(&copy, &work)?;
    Ok(Sanitized {
        text: copy,
        removed: work.removed,
        includes: work.includes,
    })
}

/// The copy's last line of defence: no line looks like a credential, no
/// removed value appears anywhere.
fn check(copy: &str, work: &Work) -> Result<(), SanitizeError> {
    for (i, line) in copy.lines().enumerate() {
        if let Some(finding) = credential::find(line, false) {
            return Err(SanitizeError::Residual {
                line: i + 1,
                finding,
            });
        }
    }
    if work.secrets.iter().any(|s| copy.contains(s.as_str())) {
        return Err(SanitizeError::Leak);
    }
    Ok(())
}

/// Physical lines of `text` with their line ending, numbered from 1.
pub(crate) fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_inclusive('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l))
}

/// `line` without its line ending.
pub(crate) fn body(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

#[cfg(test)]
mod tests;

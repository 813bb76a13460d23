//! INI-style files: npm's `.npmrc` (npm's `ini` parser: `key=value`, bare
//! `key`, `;`/`#` comments, no continuation lines) and Python's configparser
//! files `pip.conf`/`pip.ini` and `.pypirc` (`key = value` or `key: value`,
//! indented continuation lines, a section before any option).

use super::{Verdict, Why, Work, body, judge, lines, secret_key_name};
use crate::sandbox::credential;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Npm,
    Pip,
    Pypi,
}

/// Keys removed by name, per dialect (lower-case, `_` and `-` equal for pip).
fn key_is_secret(d: Dialect, key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let by_name = match d {
        // Scoped (`//host/:…`) keys are per-registry auth and TLS settings;
        // npm's underscore keys are its credentials.
        Dialect::Npm => {
            k.starts_with("//")
                || k.starts_with('_')
                || matches!(k.as_str(), "username" | "key" | "otp" | "email")
        }
        Dialect::Pip => matches!(k.replace('_', "-").as_str(), "keyring-provider"),
        Dialect::Pypi => matches!(k.as_str(), "username" | "password"),
    };
    by_name || secret_key_name(&k)
}

/// Keys whose removed value is a name, not a secret (not checked against
/// the rest of the copy).
fn names_only(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    let last = k.rsplit(':').next().unwrap_or(&k);
    matches!(
        last,
        "username"
            | "email"
            | "keyring-provider"
            | "keyring_provider"
            | "always-auth"
            | "certfile"
            | "keyfile"
    )
}

/// One option: its key, the original line numbers it spans and their text.
struct Entry<'a> {
    key: String,
    first: usize,
    lines: Vec<&'a str>,
    value: String,
}

/// Split `line` (no line ending) into key and value at the first delimiter.
fn split_option(d: Dialect, line: &str) -> Option<(String, String)> {
    let at = match d {
        Dialect::Npm => line.find('='),
        Dialect::Pip | Dialect::Pypi => line.find(['=', ':']),
    };
    match at {
        Some(i) => Some((
            line[..i].trim().to_string(),
            line[i + 1..].trim().to_string(),
        )),
        // npm: a bare key is `key=true`; configparser refuses it.
        None if d == Dialect::Npm => Some((line.trim().to_string(), String::new())),
        None => None,
    }
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

fn is_comment(t: &str) -> bool {
    t.starts_with('#') || t.starts_with(';')
}

pub(super) fn sanitize(d: Dialect, text: &str, work: &mut Work) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut section: Option<String> = None;
    let mut entry: Option<Entry<'_>> = None;
    for (n, line) in lines(text) {
        let b = body(line);
        let t = b.trim();
        let indented = b.starts_with([' ', '\t']);
        // configparser: an indented non-empty line continues the option above.
        if d != Dialect::Npm && indented && !t.is_empty() && !is_comment(t) {
            if let Some(e) = entry.as_mut() {
                e.lines.push(line);
                e.value.push('\n');
                e.value.push_str(t);
                continue;
            }
        }
        if let Some(e) = entry.take() {
            emit(d, e, section.as_deref(), work, &mut out);
        }
        if t.is_empty() {
            out.push_str(line);
        } else if is_comment(t) {
            match credential::find(t, false) {
                Some(_) => work.remove(n, "comment", Why::Comment, Some(t)),
                None => out.push_str(line),
            }
        } else if t.starts_with('[') && t.ends_with(']') && t.len() > 2 {
            section = Some(t[1..t.len() - 1].trim().to_string());
            out.push_str(line);
        } else {
            if d != Dialect::Npm && section.is_none() {
                return Err((n, "an option before the first [section]".into()));
            }
            let Some((key, value)) = split_option(d, t) else {
                return Err((n, "neither a [section], an option nor a comment".into()));
            };
            if key.is_empty() {
                return Err((n, "an option without a name".into()));
            }
            entry = Some(Entry {
                key,
                first: n,
                lines: vec![line],
                value,
            });
        }
    }
    if let Some(e) = entry.take() {
        emit(d, e, section.as_deref(), work, &mut out);
    }
    Ok(out)
}

fn emit(d: Dialect, e: Entry<'_>, section: Option<&str>, work: &mut Work, out: &mut String) {
    let key = unquote(&e.key);
    let shown = match section {
        Some(s) if d != Dialect::Npm => format!("{s}.{key}"),
        _ => key.to_string(),
    };
    match judge(key_is_secret(d, key), key, &e.value) {
        Verdict::Keep => e.lines.iter().for_each(|l| out.push_str(l)),
        Verdict::Strip => {
            work.removed.push(super::Removed {
                line: e.first,
                key: shown,
                why: Why::Userinfo,
            });
            work.secret(&e.value);
            for l in &e.lines {
                out.push_str(&credential::strip_url_userinfo(l));
            }
        }
        Verdict::Remove(why) => {
            let secret = (why != Why::Key || !names_only(key)).then_some(e.value.as_str());
            work.remove(e.first, shown, why, secret);
        }
    }
}

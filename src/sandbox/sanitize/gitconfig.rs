//! git's config format (git-config(1) "CONFIGURATION FILE"): `[section]`,
//! `[section "subsection"]` (`\"` and `\\` escapes), the old
//! `[section.subsection]`; `name = value` or a bare `name` (true); values
//! with `"…"` quoting, `\` escapes, `#`/`;` comments outside quotes and a
//! trailing `\` that continues the value on the next line.
//!
//! What git would refuse ("bad config line") is refused here too, and so is
//! what git accepts but this parser does not model: a key on the same line
//! as its section header.

use super::{Verdict, Why, Work, body, judge, lines};
use crate::sandbox::credential;

/// One logical entry: a key with its value, over one or more physical lines.
struct Entry<'a> {
    key: String,
    first: usize,
    lines: Vec<&'a str>,
    value: String,
}

/// Does a section (by name and subsection) hold credentials as a whole?
fn section_is_secret(name: &str, sub: Option<&str>) -> bool {
    name == "credential" || sub.is_some_and(|s| credential::url_userinfo_spans(s).next().is_some())
}

/// Is `section.key` a credential by name? (`key` lower-case.)
fn key_is_secret(section: &str, key: &str) -> bool {
    (section == "http" && key == "extraheader")
        || key.contains("pass")
        || key.contains("token")
        || key.contains("secret")
}

/// Parse a section header at the start of `t` (already trimmed). Returns
/// the lower-cased name and the subsection.
fn header(t: &str) -> Result<(String, Option<String>), String> {
    let inner = &t[1..];
    let close = |rest: &str| -> Result<(), String> {
        let rest = rest.trim_start();
        if rest.is_empty() || rest.starts_with(['#', ';']) {
            Ok(())
        } else {
            Err("text after a section header".into())
        }
    };
    if let Some(q) = inner.find('"') {
        let name = inner[..q].trim();
        let mut sub = String::new();
        let mut chars = inner[q + 1..].char_indices();
        loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, c)) => sub.push(c),
                    None => return Err("unterminated subsection".into()),
                },
                Some((i, '"')) => {
                    let after = &inner[q + 1 + i + 1..];
                    let Some(after) = after.strip_prefix(']') else {
                        return Err("expected ] after the subsection".into());
                    };
                    close(after)?;
                    break;
                }
                Some((_, c)) => sub.push(c),
                None => return Err("unterminated subsection".into()),
            }
        }
        valid_name(name)?;
        return Ok((name.to_ascii_lowercase(), Some(sub)));
    }
    let Some(end) = inner.find(']') else {
        return Err("unterminated section header".into());
    };
    close(&inner[end + 1..])?;
    let full = inner[..end].trim();
    let (name, sub) = match full.split_once('.') {
        Some((n, s)) => (n, Some(s.to_ascii_lowercase())),
        None => (full, None),
    };
    valid_name(name)?;
    Ok((name.to_ascii_lowercase(), sub))
}

fn valid_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        Ok(())
    } else {
        Err("invalid section name".into())
    }
}

/// Parse the value part of one physical line into `value`; returns whether
/// it continues on the next line and whether a quote is still open.
fn value_part(s: &str, value: &mut String, mut quoted: bool) -> Result<(bool, bool), String> {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                None => return Ok((true, quoted)),
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('b') => {
                    value.pop();
                }
                Some(c @ ('"' | '\\')) => value.push(c),
                Some(_) => return Err("invalid escape in a value".into()),
            },
            '"' => quoted = !quoted,
            '#' | ';' if !quoted => break,
            c => value.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote in a value".into());
    }
    Ok((false, quoted))
}

pub(super) fn sanitize(text: &str, work: &mut Work) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    // (name, subsection, whole section dropped)
    let mut section: Option<(String, Option<String>, bool)> = None;
    let mut entry: Option<Entry<'_>> = None;
    // A value continued by a trailing `\`, and whether a quote is open.
    let (mut continues, mut quoted) = (false, false);
    for (n, line) in lines(text) {
        let b = body(line);
        if continues {
            let e = entry.as_mut().expect("a continued entry");
            e.lines.push(line);
            (continues, quoted) = value_part(b, &mut e.value, quoted).map_err(|w| (n, w))?;
            continue;
        }
        if let Some(e) = entry.take() {
            emit(e, section.as_ref(), work, &mut out);
        }
        let t = b.trim_start();
        if t.is_empty() {
            out.push_str(line);
            continue;
        }
        if t.starts_with(['#', ';']) {
            match credential::find(t, false) {
                Some(_) => work.remove(n, "comment", Why::Comment, Some(t)),
                None if section.as_ref().is_some_and(|s| s.2) => {}
                None => out.push_str(line),
            }
            continue;
        }
        if t.starts_with('[') {
            let (name, sub) = header(t).map_err(|w| (n, w))?;
            let drop = section_is_secret(&name, sub.as_deref());
            if drop {
                let shown = match &sub {
                    Some(_) => format!("{name}.<subsection>"),
                    None => name.clone(),
                };
                let secret = sub
                    .as_deref()
                    .filter(|s| credential::url_userinfo_spans(s).next().is_some());
                work.remove(n, shown, Why::Key, secret);
            } else {
                out.push_str(line);
            }
            section = Some((name, sub, drop));
            continue;
        }
        if section.is_none() {
            return Err((n, "a key before the first [section]".into()));
        }
        let key_len = t
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-')
            .count();
        if key_len == 0 || !t.as_bytes()[0].is_ascii_alphabetic() {
            return Err((n, "invalid key name".into()));
        }
        let key = t[..key_len].to_ascii_lowercase();
        let rest = t[key_len..].trim_start();
        let mut value = String::new();
        if let Some(v) = rest.strip_prefix('=') {
            (continues, quoted) =
                value_part(v.trim_start(), &mut value, false).map_err(|w| (n, w))?;
        } else if !(rest.is_empty() || rest.starts_with(['#', ';'])) {
            return Err((n, "expected = after the key".into()));
        }
        entry = Some(Entry {
            key,
            first: n,
            lines: vec![line],
            value,
        });
    }
    if continues {
        return Err((
            text.lines().count(),
            "a value continued past the end of the file".into(),
        ));
    }
    if let Some(e) = entry.take() {
        emit(e, section.as_ref(), work, &mut out);
    }
    Ok(out)
}

fn emit(
    e: Entry<'_>,
    section: Option<&(String, Option<String>, bool)>,
    work: &mut Work,
    out: &mut String,
) {
    let Some((name, sub, dropped)) = section else {
        return;
    };
    let shown = match sub {
        Some(_) => format!("{name}.<subsection>.{}", e.key),
        None => format!("{name}.{}", e.key),
    };
    if *dropped {
        // The whole section is gone; its values are secrets only by their
        // look (a helper command or a user name is not).
        let secret = credential::find(&e.value, true).map(|_| e.value.as_str());
        if let Some(v) = secret {
            work.secret(v);
        }
        return;
    }
    if (name == "include" || name == "includeif") && e.key == "path" {
        work.includes.push(e.value.clone());
    }
    let verdict = judge(key_is_secret(name, &e.key), &e.key, &e.value);
    match verdict {
        Verdict::Keep => e.lines.iter().for_each(|l| out.push_str(l)),
        // A continued value with a URL to cut: remove it whole instead.
        Verdict::Strip if e.lines.len() == 1 => {
            work.removed.push(super::Removed {
                line: e.first,
                key: shown,
                why: Why::Userinfo,
            });
            work.secret(&e.value);
            out.push_str(&credential::strip_url_userinfo(e.lines[0]));
        }
        Verdict::Strip => work.remove(
            e.first,
            shown,
            Why::Value(credential::Finding::UrlUserinfo),
            Some(&e.value),
        ),
        Verdict::Remove(why) => work.remove(e.first, shown, why, Some(&e.value)),
    }
}

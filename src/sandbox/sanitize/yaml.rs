//! `.yarnrc.yml`: the block-style YAML subset yarn writes and documents —
//! nested `key: value` mappings by indentation, `- item` sequences, plain or
//! quoted scalars, `#` comments, and `|`/`>` block scalars. Anything else
//! (flow collections `{…}`/`[…]`, anchors, aliases, tags, several
//! documents) is refused rather than guessed at.

use super::{Verdict, Why, Work, body, judge, lines, secret_key_name};
use crate::sandbox::credential;

/// yarn's credential settings, at any depth (`npmScopes.x.npmAuthToken`,
/// `npmRegistries."//host".npmAuthIdent`).
fn key_is_secret(key: &str) -> bool {
    matches!(key, "npmAuthToken" | "npmAuthIdent" | "npmPassword") || secret_key_name(key)
}

/// Split a mapping line's text (after the indent) into key and the rest.
fn split_key(t: &str) -> Result<Option<(String, &str)>, String> {
    let (key, rest) = if let Some(q) = t.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let Some(end) = t[1..].find(q) else {
            return Err("unterminated quoted key".into());
        };
        (t[1..=end].to_string(), &t[end + 2..])
    } else {
        match t
            .find(": ")
            .or_else(|| t.strip_suffix(':').map(|s| s.len()))
        {
            Some(i) => (t[..i].to_string(), &t[i..]),
            None => return Ok(None),
        }
    };
    let Some(rest) = rest.strip_prefix(':') else {
        return Ok(None);
    };
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return Ok(None);
    }
    Ok(Some((key, rest.trim())))
}

/// The scalar in `rest` without a trailing comment and without quotes.
fn scalar(rest: &str) -> Result<String, String> {
    let r = rest.trim();
    if let Some(q) = r.chars().next().filter(|c| *c == '"' || *c == '\'') {
        return match r[1..].find(q) {
            Some(end) => Ok(r[1..=end].to_string()),
            None => Err("unterminated quoted value".into()),
        };
    }
    let cut = r.find(" #").unwrap_or(r.len());
    Ok(r[..cut].trim_end().to_string())
}

fn refuse_special(rest: &str) -> Result<(), String> {
    match rest.trim().chars().next() {
        Some('{' | '[') => Err("flow collections are not supported".into()),
        Some('&' | '*') => Err("anchors and aliases are not supported".into()),
        Some('!') => Err("tags are not supported".into()),
        _ => Ok(()),
    }
}

/// A line removed because an ancestor key was: everything indented deeper.
struct Dropping {
    indent: usize,
}

pub(super) fn sanitize(text: &str, work: &mut Work) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut dropping: Option<Dropping> = None;
    // A block scalar's owner: (indent of its key, key path, first line, kept lines).
    let mut block: Option<(usize, String, usize, Vec<&str>, String)> = None;
    for (n, line) in lines(text) {
        let b = body(line);
        let t = b.trim_start();
        let indent = b.len() - t.len();
        if b.contains('\t') && b[..indent].contains('\t') {
            return Err((n, "tabs in indentation".into()));
        }
        if let Some((bi, _, _, kept, content)) = block.as_mut() {
            if t.is_empty() || indent > *bi {
                kept.push(line);
                content.push_str(t);
                content.push('\n');
                continue;
            }
            let (_, key, first, kept, content) = block.take().expect("block");
            flush_block(&key, first, &kept, &content, work, &mut out);
        }
        if let Some(d) = &dropping {
            if t.is_empty() || indent > d.indent {
                continue;
            }
            dropping = None;
        }
        if t.is_empty() {
            out.push_str(line);
            continue;
        }
        if t.starts_with('#') {
            match credential::find(t, false) {
                Some(_) => work.remove(n, "comment", Why::Comment, Some(t)),
                None => out.push_str(line),
            }
            continue;
        }
        if t == "---" || t == "..." || t.starts_with("%") {
            return Err((
                n,
                "several documents or directives are not supported".into(),
            ));
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        // A sequence item: `- scalar` or `- key: value`.
        let (item_indent, t) = match t.strip_prefix("- ").or_else(|| (t == "-").then_some("")) {
            Some(rest) => (indent + 2, rest.trim_start()),
            None => (indent, t),
        };
        let Some((key, rest)) = split_key(t).map_err(|w| (n, w))? else {
            // A plain sequence scalar (or a continuation we do not model).
            if item_indent == indent {
                return Err((n, "neither `key: value`, `- item` nor a comment".into()));
            }
            refuse_special(t).map_err(|w| (n, w))?;
            let v = scalar(t).map_err(|w| (n, w))?;
            let path = path_of(&stack, "-");
            emit(&path, "-", n, line, &v, work, &mut out);
            continue;
        };
        refuse_special(rest).map_err(|w| (n, w))?;
        let path = path_of(&stack, &key);
        if key_is_secret(&key) {
            work.remove(n, path, Why::Key, Some(&scalar(rest).unwrap_or_default()));
            // Its block goes with it; when it opens a sequence item (`- key:`),
            // the rest of the item too.
            dropping = Some(Dropping { indent });
            continue;
        }
        if rest.starts_with(['|', '>']) {
            block = Some((item_indent, path, n, vec![line], String::new()));
            stack.push((item_indent, key));
            continue;
        }
        if rest.is_empty() {
            out.push_str(line);
            stack.push((item_indent, key));
            continue;
        }
        let v = scalar(rest).map_err(|w| (n, w))?;
        emit(&path, &key, n, line, &v, work, &mut out);
    }
    if let Some((_, key, first, kept, content)) = block.take() {
        flush_block(&key, first, &kept, &content, work, &mut out);
    }
    Ok(out)
}

fn path_of(stack: &[(usize, String)], key: &str) -> String {
    let mut p: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
    p.push(key);
    p.join(".")
}

fn emit(path: &str, key: &str, n: usize, line: &str, v: &str, work: &mut Work, out: &mut String) {
    match judge(false, key, v) {
        Verdict::Keep => out.push_str(line),
        Verdict::Strip => {
            work.removed.push(super::Removed {
                line: n,
                key: path.to_string(),
                why: Why::Userinfo,
            });
            work.secret(v);
            out.push_str(&credential::strip_url_userinfo(line));
        }
        Verdict::Remove(why) => work.remove(n, path, why, Some(v)),
    }
}

fn flush_block(
    path: &str,
    first: usize,
    kept: &[&str],
    content: &str,
    work: &mut Work,
    out: &mut String,
) {
    let key = path.rsplit('.').next().unwrap_or(path);
    match judge(false, key, content) {
        Verdict::Keep => kept.iter().for_each(|l| out.push_str(l)),
        verdict @ (Verdict::Strip | Verdict::Remove(_)) => {
            let why = match verdict {
                Verdict::Remove(why) => why,
                _ => Why::Value(credential::Finding::UrlUserinfo),
            };
            work.remove(first, path, why, Some(content));
            // Remember each line too: the block's lines are what could leak.
            for l in content.lines() {
                work.secret(l);
            }
        }
    }
}

//! TOML config files: cargo's `config.toml` (and the extension-less
//! `config`) and uv's `uv.toml`. Parsed with toml_edit, which keeps the
//! formatting and comments of everything that is not removed; decided on
//! the parsed document (with spans, for line numbers), then applied to an
//! editable one.

use toml_edit::{Document, Item, TableLike, Value};

use super::{Verdict, Why, Work, judge, secret_key_name};
use crate::sandbox::credential::{self, Finding};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Cargo,
    Uv,
}

fn key_is_secret(d: Dialect, key: &str) -> bool {
    let by_name = match d {
        Dialect::Cargo => matches!(
            key,
            "token"
                | "secret-key"
                | "secret-key-subject"
                | "credential-provider"
                | "global-credential-providers"
                | "credential-alias"
        ),
        Dialect::Uv => matches!(key, "keyring-provider" | "password" | "token"),
    };
    by_name || secret_key_name(key)
}

/// Removed keys whose values name a program or a user, not a secret.
fn names_only(key: &str) -> bool {
    matches!(
        key,
        "credential-provider"
            | "global-credential-providers"
            | "credential-alias"
            | "keyring-provider"
            | "username"
    )
}

/// A step from a table to a child: a key, or an element of an array of tables.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Aot(usize),
}

#[derive(Debug)]
enum Edit {
    Remove,
    /// Cut the userinfo of the string (or of these array elements).
    Strip(Option<Vec<usize>>),
}

#[derive(Debug)]
struct Action {
    parent: Vec<Seg>,
    key: String,
    edit: Edit,
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> usize {
    span.map_or(0, |s| {
        text[..s.start.min(text.len())].matches('\n').count() + 1
    })
}

fn shown(parent: &[Seg], key: &str) -> String {
    let mut s: Vec<String> = parent
        .iter()
        .map(|p| match p {
            Seg::Key(k) => k.clone(),
            Seg::Aot(i) => format!("[{i}]"),
        })
        .collect();
    s.push(key.to_string());
    s.join(".")
}

pub(super) fn sanitize(d: Dialect, text: &str, work: &mut Work) -> Result<String, (usize, String)> {
    let doc =
        Document::parse(text).map_err(|e| (line_of(text, e.span()), e.message().to_string()))?;
    let mut actions = Vec::new();
    walk(d, text, doc.as_table(), &mut Vec::new(), &mut actions, work);
    let mut doc = doc.into_mut();
    for a in actions {
        let Some(t) = table_at(doc.as_table_mut(), &a.parent) else {
            return Err((0, format!("cannot edit {}", shown(&a.parent, &a.key))));
        };
        match a.edit {
            Edit::Remove => {
                t.remove(&a.key);
            }
            Edit::Strip(elems) => {
                let Some(v) = t.get_mut(&a.key).and_then(Item::as_value_mut) else {
                    return Err((0, format!("cannot edit {}", shown(&a.parent, &a.key))));
                };
                match (v, elems) {
                    (v @ Value::String(_), None) => strip(v),
                    (Value::Array(arr), Some(idx)) => {
                        for i in idx {
                            if let Some(e) = arr.get_mut(i) {
                                strip(e);
                            }
                        }
                    }
                    _ => return Err((0, format!("cannot edit {}", shown(&a.parent, &a.key)))),
                }
            }
        }
    }
    Ok(doc.to_string())
}

/// Replace a string value by itself without URL userinfo, keeping its decor.
fn strip(v: &mut Value) {
    if let Value::String(s) = v {
        let new = credential::strip_url_userinfo(s.value());
        let decor = s.decor().clone();
        let mut nv = Value::from(new);
        *nv.decor_mut() = decor;
        *v = nv;
    }
}

fn table_at<'a>(root: &'a mut dyn TableLike, path: &[Seg]) -> Option<&'a mut dyn TableLike> {
    match path {
        [] => Some(root),
        [Seg::Key(k), Seg::Aot(i), rest @ ..] => {
            let t = root.get_mut(k)?.as_array_of_tables_mut()?.get_mut(*i)?;
            table_at(t, rest)
        }
        [Seg::Key(k), rest @ ..] => table_at(root.get_mut(k)?.as_table_like_mut()?, rest),
        [Seg::Aot(_), ..] => None,
    }
}

fn walk(
    d: Dialect,
    text: &str,
    t: &dyn TableLike,
    path: &mut Vec<Seg>,
    out: &mut Vec<Action>,
    work: &mut Work,
) {
    for (k, item) in t.iter() {
        let line = line_of(text, t.key(k).and_then(|k| k.span()));
        let name = shown(path, k);
        let act = |edit| Action {
            parent: path.clone(),
            key: k.to_string(),
            edit,
        };
        if key_is_secret(d, k) {
            let secret = item.as_str().filter(|_| !names_only(k));
            work.remove(line, name, Why::Key, secret);
            out.push(act(Edit::Remove));
            continue;
        }
        match item {
            Item::Value(Value::String(s)) => match judge(false, k, s.value()) {
                Verdict::Keep => {}
                Verdict::Strip => {
                    work.removed.push(super::Removed {
                        line,
                        key: name,
                        why: Why::Userinfo,
                    });
                    work.secret(s.value());
                    out.push(act(Edit::Strip(None)));
                }
                Verdict::Remove(why) => {
                    work.remove(line, name, why, Some(s.value()));
                    out.push(act(Edit::Remove));
                }
            },
            Item::Value(Value::Array(arr)) => {
                let mut strips = Vec::new();
                let mut remove = None;
                for (i, e) in arr.iter().enumerate() {
                    let verdict = match e {
                        Value::String(s) => judge(false, k, s.value()),
                        // Tables inside arrays: any credential removes the key.
                        Value::InlineTable(it) => inline_verdict(d, k, it),
                        _ => Verdict::Keep,
                    };
                    match verdict {
                        Verdict::Keep => {}
                        Verdict::Strip if matches!(e, Value::String(_)) => strips.push(i),
                        Verdict::Strip => {
                            remove = remove.or(Some(Why::Value(Finding::UrlUserinfo)))
                        }
                        Verdict::Remove(why) => remove = remove.or(Some(why)),
                    }
                    if let Value::String(s) = e {
                        if verdict != Verdict::Keep {
                            work.secret(s.value());
                        }
                    }
                }
                if let Some(why) = remove {
                    work.remove(line, name, why, None);
                    out.push(act(Edit::Remove));
                } else if !strips.is_empty() {
                    work.removed.push(super::Removed {
                        line,
                        key: name,
                        why: Why::Userinfo,
                    });
                    out.push(act(Edit::Strip(Some(strips))));
                }
            }
            Item::Value(Value::InlineTable(it)) => {
                path.push(Seg::Key(k.to_string()));
                walk(d, text, it, path, out, work);
                path.pop();
            }
            Item::Table(sub) => {
                path.push(Seg::Key(k.to_string()));
                walk(d, text, sub, path, out, work);
                path.pop();
            }
            Item::ArrayOfTables(aot) => {
                for (i, sub) in aot.iter().enumerate() {
                    path.push(Seg::Key(k.to_string()));
                    path.push(Seg::Aot(i));
                    walk(d, text, sub, path, out, work);
                    path.pop();
                    path.pop();
                }
            }
            _ => {}
        }
    }
}

/// The verdict on an inline table inside an array (worst of its strings).
fn inline_verdict(d: Dialect, key: &str, it: &toml_edit::InlineTable) -> Verdict {
    let mut worst = Verdict::Keep;
    for (k, v) in it.iter() {
        let v = if key_is_secret(d, k) {
            Verdict::Remove(Why::Key)
        } else {
            match v {
                Value::String(s) => judge(false, key, s.value()),
                Value::InlineTable(inner) => inline_verdict(d, k, inner),
                Value::Array(arr) => arr
                    .iter()
                    .filter_map(|e| e.as_str())
                    .map(|s| judge(false, k, s))
                    .find(|v| *v != Verdict::Keep)
                    .map_or(Verdict::Keep, |_| {
                        Verdict::Remove(Why::Value(Finding::UrlUserinfo))
                    }),
                _ => Verdict::Keep,
            }
        };
        worst = match (worst, v) {
            (Verdict::Remove(w), _) | (_, Verdict::Remove(w)) => Verdict::Remove(w),
            (Verdict::Strip, _) | (_, Verdict::Strip) => Verdict::Strip,
            _ => Verdict::Keep,
        };
    }
    worst
}

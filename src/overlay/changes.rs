//! From scan entries to what `shellcage changes` prints: per-file statuses like
//! `git status --short`, renames, unified diffs, and JSON.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::OverlayError;
use super::fs::{self, Kind, Node};
use super::scan::Entry;

/// Files larger than this are not diffed or hashed for rename detection.
const MAX_DIFF_BYTES: u64 = 8 << 20;
const MAX_RENAME_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    #[serde(rename = "A")]
    Added,
    #[serde(rename = "M")]
    Modified,
    #[serde(rename = "D")]
    Deleted,
    #[serde(rename = "R")]
    Renamed,
    #[serde(rename = "T")]
    TypeChanged,
}

impl Status {
    pub fn letter(self) -> char {
        match self {
            Status::Added => 'A',
            Status::Modified => 'M',
            Status::Deleted => 'D',
            Status::Renamed => 'R',
            Status::TypeChanged => 'T',
        }
    }
}

/// One line of `changes`.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub status: Status,
    #[serde(serialize_with = "ser_path")]
    pub path: PathBuf,
    /// The old path of a rename.
    #[serde(
        serialize_with = "ser_opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub from: Option<PathBuf>,
    pub kind_before: Option<Kind>,
    pub kind_after: Option<Kind>,
    /// git-style mode words (`100644`, `100755`, `120000`, `040000`).
    #[serde(serialize_with = "ser_mode")]
    pub mode_before: Option<u32>,
    #[serde(serialize_with = "ser_mode")]
    pub mode_after: Option<u32>,
    /// Permission bits, so setuid and the like are visible.
    #[serde(serialize_with = "ser_mode")]
    pub perm_before: Option<u32>,
    #[serde(serialize_with = "ser_mode")]
    pub perm_after: Option<u32>,
    pub content_changed: bool,
    pub size_after: Option<u64>,
    /// Why `apply` will not take it.
    pub problem: Option<String>,
}

impl Change {
    fn of(status: Status, path: &Path, before: Option<&Node>, after: Option<&Node>) -> Change {
        Change {
            status,
            path: path.to_path_buf(),
            from: None,
            kind_before: before.map(|n| n.kind),
            kind_after: after.map(|n| n.kind),
            mode_before: before.map(Node::git_mode),
            mode_after: after.map(Node::git_mode),
            perm_before: before.map(|n| n.perm),
            perm_after: after.map(|n| n.perm),
            // A deleted file's bytes are gone; a new one's are all new.
            content_changed: before.is_none() || after.is_none(),
            size_after: after.map(|n| n.size),
            problem: None,
        }
    }

    /// Only the permission bits changed (no content, no type).
    pub fn mode_only(&self) -> bool {
        self.status == Status::Modified && !self.content_changed
    }
}

fn ser_path<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&display_bytes(p.as_os_str().as_bytes(), false))
}
fn ser_opt_path<S: serde::Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => ser_path(p, s),
        None => s.serialize_none(),
    }
}
fn ser_mode<S: serde::Serializer>(m: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.serialize_str(&format!("{m:06o}")),
        None => s.serialize_none(),
    }
}

/// The per-file changes of a scan, sorted by path, renames paired.
pub fn changes(
    entries: &[Entry],
    upper: &Path,
    workspace: &Path,
) -> Result<Vec<Change>, OverlayError> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match (&e.host, &e.layer) {
            (Some(h), None) => {
                if h.kind == Kind::Dir {
                    push_dir_deletion(&mut out, e, h);
                } else {
                    out.push(Change::of(Status::Deleted, &e.path, Some(h), None));
                }
            }
            (None, Some(l)) => {
                // A new directory is shown through its files; an empty one by itself.
                // Entries are in pre-order: a child, if any, comes next.
                let has_children = entries
                    .get(i + 1)
                    .is_some_and(|c| c.path.starts_with(&e.path) && c.layer.is_some());
                if l.kind != Kind::Dir || !has_children {
                    let mut c = Change::of(Status::Added, &e.path, None, Some(l));
                    c.content_changed = l.kind != Kind::Dir;
                    c.problem = e.problem.clone();
                    out.push(c);
                }
            }
            (Some(h), Some(l)) if h.kind != l.kind => {
                if h.kind == Kind::Dir {
                    push_dir_deletion(&mut out, e, h);
                    let mut c = Change::of(Status::Added, &e.path, None, Some(l));
                    c.content_changed = true;
                    c.problem = e.problem.clone();
                    out.push(c);
                } else {
                    let mut c = Change::of(Status::TypeChanged, &e.path, Some(h), Some(l));
                    c.content_changed = true;
                    c.problem = e.problem.clone();
                    out.push(c);
                }
            }
            (Some(h), Some(l)) if e.is_change() || e.problem.is_some() => {
                let mut c = Change::of(Status::Modified, &e.path, Some(h), Some(l));
                c.content_changed = match l.kind {
                    Kind::File => e.content_changed,
                    Kind::Symlink => e.target != e.host_target,
                    _ => false,
                };
                c.problem = e.problem.clone();
                out.push(c);
            }
            _ => {}
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    pair_renames(&mut out, upper, workspace)?;
    Ok(out)
}

fn push_dir_deletion(out: &mut Vec<Change>, e: &Entry, h: &Node) {
    // `below` is in pre-order: a directory is a leaf unless the next entry is inside it.
    let leaves: Vec<&(PathBuf, Node)> = e
        .below
        .iter()
        .enumerate()
        .filter(|(i, (p, n))| {
            n.kind != Kind::Dir || !e.below.get(i + 1).is_some_and(|(q, _)| q.starts_with(p))
        })
        .map(|(_, x)| x)
        .collect();
    if leaves.is_empty() {
        out.push(Change::of(Status::Deleted, &e.path, Some(h), None));
    }
    for (p, n) in leaves {
        out.push(Change::of(Status::Deleted, p, Some(n), None));
    }
}

/// Pair a deleted and an added file (or symlink) with the same bytes as a rename.
fn pair_renames(out: &mut Vec<Change>, upper: &Path, workspace: &Path) -> Result<(), OverlayError> {
    let candidates = |st: Status, out: &Vec<Change>| -> Vec<usize> {
        (0..out.len())
            .filter(|&i| {
                let c = &out[i];
                let (kind, size) = match st {
                    Status::Deleted => (c.kind_before, None),
                    _ => (c.kind_after, c.size_after),
                };
                c.status == st
                    && c.problem.is_none()
                    && matches!(kind, Some(Kind::File | Kind::Symlink))
                    && size.is_none_or(|s| s > 0 && s <= MAX_RENAME_BYTES)
            })
            .collect()
    };
    let added = candidates(Status::Added, out);
    if added.is_empty() {
        return Ok(());
    }
    let deleted = candidates(Status::Deleted, out);
    let mut host =
        fs::Tree::open(workspace).map_err(|e| OverlayError::io("cannot open", workspace, e))?;
    let mut up = fs::Tree::open(upper).map_err(|e| OverlayError::io("cannot open", upper, e))?;
    let mut by_key: HashMap<(Option<Kind>, [u8; 32]), Vec<usize>> = HashMap::new();
    for &i in &deleted {
        if let Some(h) = digest(&mut host, &out[i].path, out[i].kind_before)? {
            by_key.entry((out[i].kind_before, h)).or_default().push(i);
        }
    }
    let mut gone = Vec::new();
    for &i in &added {
        let Some(h) = digest(&mut up, &out[i].path, out[i].kind_after)? else {
            continue;
        };
        if let Some(list) = by_key.get_mut(&(out[i].kind_after, h)) {
            if !list.is_empty() {
                let d = list.remove(0);
                let from = out[d].path.clone();
                let before = (out[d].kind_before, out[d].mode_before, out[d].perm_before);
                let c = &mut out[i];
                c.status = Status::Renamed;
                c.from = Some(from);
                (c.kind_before, c.mode_before, c.perm_before) = before;
                c.content_changed = false;
                gone.push(d);
            }
        }
    }
    gone.sort_unstable();
    for d in gone.into_iter().rev() {
        out.remove(d);
    }
    Ok(())
}

/// SHA-256 of a file's bytes or a symlink's target (bounded; `None` if too big or gone).
fn digest(
    tree: &mut fs::Tree,
    rel: &Path,
    kind: Option<Kind>,
) -> Result<Option<[u8; 32]>, OverlayError> {
    let (parent, name) = fs::split(rel).map_err(|e| OverlayError::io("cannot read", rel, e))?;
    let dir = match tree.dir(parent) {
        Ok(d) => d,
        Err(e) if fs::is_not_there(&e) => return Ok(None),
        Err(e) => return Err(OverlayError::io("cannot open", parent, e)),
    };
    let bytes = match kind {
        Some(Kind::Symlink) => fs::readlink_at(dir, name).map(|t| t.as_bytes().to_vec()),
        _ => fs::open_file_at(dir, name, None)
            .and_then(|mut f| fs::read_limited(&mut f, MAX_RENAME_BYTES)),
    };
    match bytes {
        Ok(b) => Ok(Some(Sha256::digest(&b).into())),
        Err(e) if fs::is_not_there(&e) => Ok(None),
        Err(e) => Err(OverlayError::io("cannot read", rel, e)),
    }
}

/// A path for a terminal: printable UTF-8 as is; control characters (C0, C1,
/// DEL), Unicode format characters (bidi overrides, zero-width), backslash and
/// quotes escaped; any escape puts the whole name in double quotes, as git does.
pub fn display_bytes(b: &[u8], quote: bool) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for chunk in b.utf8_chunks() {
        for ch in chunk.valid().chars() {
            match ch {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '"' | '\\' if quote => {
                    out.push('\\');
                    out.push(ch);
                }
                c if is_unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => {
                    out.push(c);
                    continue;
                }
            }
            escaped = true;
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
            escaped = true;
        }
    }
    if escaped && quote {
        format!("\"{out}\"")
    } else {
        out
    }
}

fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2069 | 0xfeff | 0x061c | 0x00ad)
}

/// A path for a terminal (quoted when escaped).
pub fn show(p: &Path) -> String {
    display_bytes(p.as_os_str().as_bytes(), true)
}

/// `git status --short`-like lines.
pub fn write_status(out: &mut dyn Write, changes: &[Change]) -> std::io::Result<()> {
    for c in changes {
        let mut line = format!("{}  ", c.status.letter());
        if let Some(from) = &c.from {
            line.push_str(&format!("{} -> ", show(from)));
        }
        line.push_str(&show(&c.path));
        if c.kind_after == Some(Kind::Dir) {
            line.push('/');
        }
        let mut notes = Vec::new();
        if c.status == Status::TypeChanged {
            notes.push(format!(
                "{} -> {}",
                c.kind_before.map_or("?", Kind::name),
                c.kind_after.map_or("?", Kind::name)
            ));
        }
        if let (Some(b), Some(a)) = (c.perm_before, c.perm_after) {
            if b != a && c.kind_before == c.kind_after {
                notes.push(format!("mode {b:o} -> {a:o}"));
            }
        } else if let Some(a) = c.perm_after.filter(|a| a & 0o7000 != 0) {
            notes.push(format!("mode {a:o}"));
        }
        if let Some(p) = &c.problem {
            notes.push(format!("not applied: {p}"));
        }
        if !notes.is_empty() {
            line.push_str(&format!("  ({})", notes.join("; ")));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Unified diffs (binary and large files named, not dumped; control
/// characters in the content escaped so a diff cannot drive the terminal).
pub fn write_diff(
    out: &mut dyn Write,
    changes: &[Change],
    upper: &Path,
    workspace: &Path,
) -> Result<(), OverlayError> {
    let mut host =
        fs::Tree::open(workspace).map_err(|e| OverlayError::io("cannot open", workspace, e))?;
    let mut up = fs::Tree::open(upper).map_err(|e| OverlayError::io("cannot open", upper, e))?;
    let w = |e: std::io::Error| OverlayError::io("cannot write", Path::new("stdout"), e);
    for c in changes {
        if c.problem.is_some()
            || (c.mode_only() && c.from.is_none() && c.kind_after != Some(Kind::File))
        {
            continue;
        }
        let old_path = c.from.as_deref().unwrap_or(&c.path);
        let a = format!(
            "a/{}",
            display_bytes(old_path.as_os_str().as_bytes(), false)
        );
        let b = format!("b/{}", display_bytes(c.path.as_os_str().as_bytes(), false));
        writeln!(out, "diff --git {a} {b}").map_err(w)?;
        match (c.mode_before, c.mode_after) {
            (None, Some(m)) => writeln!(out, "new file mode {m:06o}").map_err(w)?,
            (Some(m), None) => writeln!(out, "deleted file mode {m:06o}").map_err(w)?,
            (Some(x), Some(y)) if x != y => {
                writeln!(out, "old mode {x:06o}\nnew mode {y:06o}").map_err(w)?;
            }
            _ => {}
        }
        if let Some(from) = &c.from {
            writeln!(
                out,
                "rename from {}\nrename to {}",
                show(from),
                show(&c.path)
            )
            .map_err(w)?;
        }
        if !c.content_changed {
            continue;
        }
        let old = content(&mut host, old_path, c.kind_before)?;
        let new = content(&mut up, &c.path, c.kind_after)?;
        let (label_a, label_b) = (
            if c.kind_before.is_some() {
                a.clone()
            } else {
                "/dev/null".into()
            },
            if c.kind_after.is_some() {
                b.clone()
            } else {
                "/dev/null".into()
            },
        );
        match (&old, &new) {
            (Content::Text(x), Content::Text(y)) => {
                let diff = similar::TextDiff::from_lines(x.as_str(), y.as_str());
                let text = diff
                    .unified_diff()
                    .context_radius(3)
                    .header(&label_a, &label_b)
                    .to_string();
                out.write_all(escape_controls(&text).as_bytes())
                    .map_err(w)?;
                if !text.ends_with('\n') && !text.is_empty() {
                    writeln!(out).map_err(w)?;
                }
            }
            (Content::Large(n), _) | (_, Content::Large(n)) => {
                writeln!(
                    out,
                    "Large file ({n} bytes), not shown: {label_a} and {label_b} differ"
                )
                .map_err(w)?;
            }
            _ => writeln!(out, "Binary files {label_a} and {label_b} differ").map_err(w)?,
        }
    }
    Ok(())
}

enum Content {
    Text(String),
    Binary,
    Large(u64),
}

fn content(tree: &mut fs::Tree, rel: &Path, kind: Option<Kind>) -> Result<Content, OverlayError> {
    let Some(kind) = kind else {
        return Ok(Content::Text(String::new()));
    };
    let err = |e: std::io::Error| OverlayError::io("cannot read", rel, e);
    let (parent, name) = fs::split(rel).map_err(err)?;
    let dir = tree.dir(parent).map_err(err)?;
    let bytes = match kind {
        Kind::Symlink => fs::readlink_at(dir, name).map_err(err)?.as_bytes().to_vec(),
        Kind::File => {
            let mut f: File = fs::open_file_at(dir, name, None).map_err(err)?;
            let size = fs::stat_fd(f.as_fd()).map_err(err)?.size;
            if size > MAX_DIFF_BYTES {
                return Ok(Content::Large(size));
            }
            fs::read_limited(&mut f, MAX_DIFF_BYTES).map_err(err)?
        }
        _ => return Ok(Content::Text(String::new())),
    };
    if bytes[..bytes.len().min(8000)].contains(&0) {
        return Ok(Content::Binary);
    }
    Ok(String::from_utf8(bytes).map_or(Content::Binary, Content::Text))
}

/// Escape control characters other than newline and tab.
fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c != '\n' && c != '\t' && is_unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_for_terminals() {
        assert_eq!(display_bytes(b"src/main.rs", true), "src/main.rs");
        assert_eq!(display_bytes("caf\u{e9}".as_bytes(), true), "caf\u{e9}");
        assert_eq!(display_bytes(b"a\nb", true), "\"a\\nb\"");
        assert_eq!(display_bytes(b"\x1b[2J", true), "\"\\u{1b}[2J\"");
        assert_eq!(
            display_bytes("x\u{202e}y".as_bytes(), true),
            "\"x\\u{202e}y\""
        );
        assert_eq!(display_bytes(b"\xff", true), "\"\\xff\"");
        assert_eq!(
            display_bytes(b"q\"b\\", true),
            "\"q\\\"b\\\\\"",
            "quotes and backslashes are quoted, as git does"
        );
        assert_eq!(display_bytes(b"q\"\n", true), "\"q\\\"\\n\"");
        assert_eq!(
            display_bytes("\u{85}".as_bytes(), false),
            "\\u{85}",
            "C1 controls too"
        );
    }

    #[test]
    fn diff_content_cannot_drive_the_terminal() {
        assert_eq!(
            escape_controls("+a\x1b]0;x\x07\tb\n"),
            "+a\\u{1b}]0;x\\u{7}\tb\n"
        );
    }
}

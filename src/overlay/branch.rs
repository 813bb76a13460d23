//! `shellcage apply --branch NAME`: the layer's changes as one commit on a new
//! branch, made with git plumbing only, so the user's working tree, index,
//! HEAD and current branch are never touched:
//!
//! blobs from the layer (`git fast-import`, fed from descriptors we opened
//! without following links) → a temporary index (`GIT_INDEX_FILE`, in the
//! layer's directory) read from the base commit and updated with
//! `update-index --index-info` → `write-tree` → `commit-tree -p BASE` →
//! `update-ref refs/heads/NAME COMMIT 0000…` (creates, never moves a branch).
//!
//! What goes in: changed tracked files, and new files git does not ignore.
//! Never anything inside a `.git` directory, a protected path, a submodule,
//! or a layer entry with a problem (device, fifo, redirect …).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::OverlayError;
use super::fs::{self, Kind, Tree};
use super::scan::{self, Entry};
use super::store::Layer;
use super::{git, rules};

/// Largest file committed (a layer can hold a huge sparse file).
const MAX_BLOB: u64 = 1 << 30;

pub struct BranchReport {
    pub commit: String,
    pub base: String,
    pub files: usize,
    pub skipped: Vec<(PathBuf, String)>,
}

fn run(mut c: Command, input: Option<&[u8]>, what: &str) -> Result<Vec<u8>, OverlayError> {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    if input.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut child = c.spawn().map_err(|e| {
        OverlayError::Git(format!("cannot run git {what}: {e} (hint: install git)"))
    })?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(data)
            .map_err(|e| OverlayError::Git(format!("git {what}: cannot write its input: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| OverlayError::Git(format!("git {what}: {e}")))?;
    if !out.status.success() {
        return Err(OverlayError::Git(format!(
            "git {what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8_lossy(&b).trim().to_string()
}

/// What to put in the commit.
struct Wanted {
    writes: Vec<(PathBuf, u32, Entry)>,
    deletes: Vec<PathBuf>,
    skipped: Vec<(PathBuf, String)>,
}

fn in_git_dir(p: &Path) -> bool {
    p.components()
        .any(|c| c.as_os_str().as_bytes().eq_ignore_ascii_case(b".git"))
}

fn wanted(entries: &[Entry], protected: &[PathBuf], tracked: &HashMap<Vec<u8>, String>) -> Wanted {
    let mut w = Wanted {
        writes: Vec::new(),
        deletes: Vec::new(),
        skipped: Vec::new(),
    };
    let gitlinks: Vec<PathBuf> = tracked
        .iter()
        .filter(|(_, m)| m.as_str() == "160000")
        .map(|(p, _)| PathBuf::from(OsStr::from_bytes(p)))
        .collect();
    let mut git_internal = 0usize;
    let mut consider = |p: &Path, w: &mut Wanted| -> bool {
        if in_git_dir(p) {
            git_internal += 1;
            return false;
        }
        if let Some(q) = rules::protected_at(p, protected) {
            w.skipped
                .push((p.into(), format!("protected path {}", q.display())));
            return false;
        }
        if gitlinks.iter().any(|g| p.starts_with(g)) {
            w.skipped.push((p.into(), "inside a submodule".into()));
            return false;
        }
        true
    };
    for e in entries {
        if !e.is_change() {
            continue;
        }
        if let Some(problem) = &e.problem {
            w.skipped.push((e.path.clone(), problem.clone()));
            continue;
        }
        let host_leaf = e.host.is_some_and(|h| h.kind != Kind::Dir);
        let layer_leaf = e
            .layer
            .filter(|l| matches!(l.kind, Kind::File | Kind::Symlink));
        if host_leaf && layer_leaf.is_none() && consider(&e.path, &mut w) {
            w.deletes.push(e.path.clone());
        }
        for (p, n) in &e.below {
            if n.kind != Kind::Dir && consider(p, &mut w) {
                w.deletes.push(p.clone());
            }
        }
        if let Some(l) = layer_leaf {
            if l.size > MAX_BLOB {
                w.skipped
                    .push((e.path.clone(), format!("larger than {MAX_BLOB} bytes")));
            } else if consider(&e.path, &mut w) {
                let mode = if l.kind == Kind::Symlink {
                    0o120000
                } else {
                    l.git_mode()
                };
                w.writes.push((e.path.clone(), mode, e.clone()));
            }
        }
    }
    if git_internal > 0 {
        w.skipped.push((
            PathBuf::from(".git"),
            format!("{git_internal} paths inside git directories are never committed"),
        ));
    }
    w.deletes
        .retain(|p| tracked.contains_key(p.as_os_str().as_bytes()));
    w
}

/// Commit the layer's changes onto a new branch `name` whose parent is the
/// commit the layer began from.
pub fn commit_branch(
    layer: &Layer,
    name: &str,
    protected: &[PathBuf],
    audit: Option<&Path>,
) -> Result<BranchReport, OverlayError> {
    let _lock = layer.lock()?;
    let ws = layer.meta.workspace.clone();
    let base = layer.meta.base_commit.clone().ok_or_else(|| {
        OverlayError::Git("the layer has no base commit: the workspace was not a git repository with a commit when the layer began (hint: use `shellcage apply`)".into())
    })?;
    if name.starts_with('-')
        || run(
            git_cmd(&ws, &["check-ref-format", "--branch", name]),
            None,
            "check-ref-format",
        )
        .is_err()
    {
        return Err(OverlayError::Git(format!("invalid branch name {name:?}")));
    }
    let refname = format!("refs/heads/{name}");
    if git_cmd(&ws, &["show-ref", "--verify", "--quiet", &refname])
        .status()
        .is_ok_and(|s| s.success())
    {
        return Err(OverlayError::Git(format!(
            "branch {name} already exists (hint: choose another name; shellcage never moves a branch)"
        )));
    }
    run(
        git_cmd(&ws, &["cat-file", "-e", &format!("{base}^{{commit}}")]),
        None,
        "cat-file",
    )
    .map_err(|_| {
        OverlayError::Git(format!(
            "the layer's base commit {base} is not in the repository"
        ))
    })?;
    let zeros = match text(run(
        git_cmd(&ws, &["rev-parse", "--show-object-format"]),
        None,
        "rev-parse",
    )?)
    .as_str()
    {
        "sha256" => "0".repeat(64),
        _ => "0".repeat(40),
    };
    let tracked = ls_tree(&ws, &base)?;
    let entries = scan::scan(&layer.upper(), &ws)?;
    let mut w = wanted(&entries, protected, &tracked);
    drop_ignored(&ws, &mut w, &tracked)?;
    if w.writes.is_empty() && w.deletes.is_empty() {
        return Err(OverlayError::Git(
            "the layer has no changes to tracked or new files: nothing to commit".into(),
        ));
    }
    let shas = write_blobs(layer, &ws, &w.writes)?;
    let tree = build_tree(layer, &ws, &base, &zeros, &w, &shas)?;
    let message = message(layer, &base, audit)?;
    let commit = text(run(
        git_cmd(&ws, &["commit-tree", &tree, "-p", &base, "-F", "-"]),
        Some(message.as_bytes()),
        "commit-tree",
    )?);
    run(
        git_cmd(
            &ws,
            &[
                "update-ref",
                "-m",
                "shellcage apply --branch",
                &refname,
                &commit,
                &zeros,
            ],
        ),
        None,
        "update-ref",
    )?;
    Ok(BranchReport {
        commit,
        base,
        files: w.writes.len() + w.deletes.len(),
        skipped: w.skipped,
    })
}

/// The base commit's tree with the changes, through a temporary index.
fn build_tree(
    layer: &Layer,
    ws: &Path,
    base: &str,
    zeros: &str,
    w: &Wanted,
    shas: &[String],
) -> Result<String, OverlayError> {
    let index = layer
        .dir
        .join(format!("branch.index.{}", std::process::id()));
    let _cleanup = RemoveOnDrop(index.clone());
    let with_index = |args: &[&str]| {
        let mut c = git_cmd(ws, args);
        c.env("GIT_INDEX_FILE", &index);
        c
    };
    run(with_index(&["read-tree", base]), None, "read-tree")?;
    let mut info = Vec::new();
    for p in &w.deletes {
        info.extend_from_slice(format!("0 {zeros}\t").as_bytes());
        info.extend_from_slice(p.as_os_str().as_bytes());
        info.push(0);
    }
    run(
        with_index(&["update-index", "-z", "--index-info"]),
        Some(&info),
        "update-index",
    )?;
    let mut info = Vec::new();
    for ((p, mode, _), sha) in w.writes.iter().zip(shas) {
        info.extend_from_slice(format!("{mode:06o} {sha}\t").as_bytes());
        info.extend_from_slice(p.as_os_str().as_bytes());
        info.push(0);
    }
    run(
        with_index(&["update-index", "-z", "--index-info"]),
        Some(&info),
        "update-index",
    )?;
    Ok(text(run(with_index(&["write-tree"]), None, "write-tree")?))
}

struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("lock"));
    }
}

fn git_cmd(ws: &Path, args: &[&str]) -> Command {
    let mut c = git::command(ws);
    c.args(args);
    c
}

/// path → mode of every entry in the base commit's tree.
fn ls_tree(ws: &Path, base: &str) -> Result<HashMap<Vec<u8>, String>, OverlayError> {
    let out = run(
        git_cmd(ws, &["ls-tree", "-r", "-z", "--full-tree", base]),
        None,
        "ls-tree",
    )?;
    let mut map = HashMap::new();
    for rec in out.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        // "<mode> <type> <sha>\t<path>"
        let Some(tab) = rec.iter().position(|&b| b == b'\t') else {
            continue;
        };
        let mode = String::from_utf8_lossy(rec.split(|&b| b == b' ').next().unwrap_or_default())
            .into_owned();
        map.insert(rec[tab + 1..].to_vec(), mode);
    }
    Ok(map)
}

/// New (untracked) files that git ignores stay out of the commit.
fn drop_ignored(
    ws: &Path,
    w: &mut Wanted,
    tracked: &HashMap<Vec<u8>, String>,
) -> Result<(), OverlayError> {
    let mut input = Vec::new();
    for (p, _, _) in &w.writes {
        if !tracked.contains_key(p.as_os_str().as_bytes()) {
            input.extend_from_slice(p.as_os_str().as_bytes());
            input.push(0);
        }
    }
    if input.is_empty() {
        return Ok(());
    }
    let mut c = git_cmd(ws, &["check-ignore", "-z", "--stdin", "--no-index"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .map_err(|e| OverlayError::Git(format!("cannot run git check-ignore: {e}")))?;
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .map_err(|e| OverlayError::Git(format!("git check-ignore: {e}")))?;
    let _ = writer.join();
    // 0: some ignored, 1: none ignored, anything else: an error.
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(OverlayError::Git(format!(
            "git check-ignore failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let ignored: std::collections::HashSet<&[u8]> = out
        .stdout
        .split(|&b| b == 0)
        .filter(|r| !r.is_empty())
        .collect();
    w.writes
        .retain(|(p, _, _)| !ignored.contains(p.as_os_str().as_bytes()));
    Ok(())
}

/// Store each file's bytes (or link target) as a blob; their ids in order.
fn write_blobs(
    layer: &Layer,
    ws: &Path,
    writes: &[(PathBuf, u32, Entry)],
) -> Result<Vec<String>, OverlayError> {
    let marks = layer
        .dir
        .join(format!("branch.marks.{}", std::process::id()));
    let _cleanup = RemoveOnDrop(marks.clone());
    let mut c = git_cmd(ws, &["fast-import", "--quiet"]);
    c.arg(format!("--export-marks={}", marks.display()));
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .map_err(|e| OverlayError::Git(format!("cannot run git fast-import: {e}")))?;
    let mut stdin = child.stdin.take().unwrap();
    let mut upper = Tree::open(&layer.upper())
        .map_err(|e| OverlayError::io("cannot open", &layer.upper(), e))?;
    let feed = (|| -> Result<(), OverlayError> {
        let werr = |e: std::io::Error| {
            OverlayError::Git(format!("git fast-import: cannot write its input: {e}"))
        };
        for (i, (p, _, e)) in writes.iter().enumerate() {
            let l = e.layer.expect("a written entry has a layer node");
            let (parent, name) =
                fs::split(p).map_err(|er| OverlayError::io("cannot read", p, er))?;
            let d = upper
                .dir(parent)
                .map_err(|er| OverlayError::io("cannot open layer directory", parent, er))?;
            if l.kind == Kind::Symlink {
                let t = fs::readlink_at(d, name)
                    .map_err(|er| OverlayError::io("cannot read layer link", p, er))?;
                write!(stdin, "blob\nmark :{}\ndata {}\n", i + 1, t.len()).map_err(werr)?;
                stdin.write_all(t.as_bytes()).map_err(werr)?;
            } else {
                let f = fs::open_file_at(d, name, Some(l.ino))
                    .map_err(|er| OverlayError::io("cannot open layer file", p, er))?;
                write!(stdin, "blob\nmark :{}\ndata {}\n", i + 1, l.size).map_err(werr)?;
                let n = std::io::copy(&mut f.take(l.size), &mut stdin).map_err(werr)?;
                if n != l.size {
                    return Err(OverlayError::Git(format!(
                        "layer file {} changed size while being read",
                        p.display()
                    )));
                }
            }
            stdin.write_all(b"\n").map_err(werr)?;
        }
        Ok(())
    })();
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| OverlayError::Git(format!("git fast-import: {e}")))?;
    feed?;
    if !out.status.success() {
        return Err(OverlayError::Git(format!(
            "git fast-import failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text =
        std::fs::read_to_string(&marks).map_err(|e| OverlayError::io("cannot read", &marks, e))?;
    let mut by_mark: HashMap<usize, String> = HashMap::new();
    for line in text.lines() {
        if let Some((m, sha)) = line.strip_prefix(':').and_then(|l| l.split_once(' ')) {
            if let Ok(m) = m.parse() {
                by_mark.insert(m, sha.to_string());
            }
        }
    }
    (1..=writes.len())
        .map(|m| {
            by_mark.remove(&m).ok_or_else(|| {
                OverlayError::Git(format!("git fast-import gave no id for blob {m}"))
            })
        })
        .collect()
}

/// The commit message: where it came from, and the commands from the audit log.
fn message(layer: &Layer, base: &str, audit: Option<&Path>) -> Result<String, OverlayError> {
    let mut m = format!(
        "shellcage: changes from layer '{}'\n\nCommitted by shellcage {} from the copy-on-write layer '{}' of\n{}, begun {} on commit {}.\n",
        layer.name(),
        env!("CARGO_PKG_VERSION"),
        layer.name(),
        layer.meta.workspace.display(),
        layer.meta.begun,
        base
    );
    let Some(audit) = audit else {
        m.push_str("\nNo audit log was given, so the commands are not listed.\n");
        return Ok(m);
    };
    let records =
        crate::audit::tail(audit, usize::MAX).map_err(|e| OverlayError::Invalid(e.to_string()))?;
    let mine: Vec<_> = records
        .iter()
        .filter(|r| r.workspace == layer.meta.workspace && r.time >= layer.meta.begun)
        .collect();
    m.push_str(&format!(
        "\nCommands run in the workspace since the layer began (audit log {}):\n",
        audit.display()
    ));
    if mine.is_empty() {
        m.push_str("  (none recorded)\n");
    }
    for r in mine {
        let argv = r.command_line();
        m.push_str(&format!(
            "  {}  exit {}  {}\n",
            r.time,
            r.exit_code,
            super::changes::display_bytes(argv.as_bytes(), false)
        ));
    }
    Ok(m)
}

//! Neutralising the repositories a run made or changed, so that the host's
//! git runs nothing the sandbox chose.
//!
//! Given the [`Inventory`] of a writable root before the run and after it,
//! for every git directory (and lookalike) whose files are new or changed:
//!
//! - `config` / `config.worktree`: the changes the [`NESTED`] policy refuses
//!   are undone (the file keeps its pre-run content plus the allowed changes:
//!   a cloned repository keeps its remote and branches); a file that cannot be
//!   read is put back as it was, or moved aside if it is new;
//! - `commondir`: removed (or put back) unless it is the `worktrees/<id>`
//!   layout `git worktree add` makes, pointing at a repository in the root;
//! - `hooks/*` (except `*.sample`), or `hooks` made a link: renamed
//!   `<name>.shellcage-disabled`;
//! - `.git` files and links whose target leaves the root: renamed
//!   `.git.shellcage-disabled`.
//!
//! "Changed" is decided by [`Stamp`] (device, inode, ctime): the sandbox
//! cannot forge a ctime, so a file with the stamp it had before the run is
//! the file the user had.

use super::config::display_key;
use super::files::{move_aside, replace_locked};
use super::merge::merge;
use super::policy::{Context, NESTED};
use super::repo::{GitDirFiles, Inventory, Snap, Stamp, common_dir};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

pub const DISABLED: &str = ".shellcage-disabled";

/// What neutralising did, one entry per file touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Refused keys taken out of a config file; allowed ones kept.
    CleanedConfig {
        path: PathBuf,
        refused: Vec<Vec<u8>>,
    },
    /// A config that cannot be read as git config, put back as it was.
    RestoredConfig { path: PathBuf, why: String },
    /// A new unreadable config, a hook, `hooks` or a `.git` link renamed.
    MovedAside {
        path: PathBuf,
        to: PathBuf,
        why: &'static str,
    },
    /// A `commondir` the run made, removed (or put back as it was).
    RemovedCommondir { path: PathBuf },
    /// Something that had to be done and failed: the report says so.
    Failed { path: PathBuf, err: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub actions: Vec<Action>,
    /// Directories the scan could not read (repositories in them were not checked).
    pub unreadable: Vec<(PathBuf, String)>,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.unreadable.is_empty()
    }

    /// Lines for stderr (paths relative to `root`, keys without values).
    pub fn lines(&self, root: &Path) -> Vec<String> {
        let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
        let mut out: Vec<String> = self
            .actions
            .iter()
            .map(|a| match a {
                Action::CleanedConfig { path, refused } => format!(
                    "shellcage: git: removed {} from {} (made or changed in the sandbox; these keys run programs or read files)",
                    refused.iter().map(|k| display_key(k)).collect::<Vec<_>>().join(", "),
                    rel(path)
                ),
                Action::RestoredConfig { path, why } => {
                    format!("shellcage: git: restored {} as it was before the run ({why})", rel(path))
                }
                Action::MovedAside { path, to, why } => format!(
                    "shellcage: git: disabled {} ({why}; now {})",
                    rel(path),
                    to.file_name().unwrap_or_default().to_string_lossy()
                ),
                Action::RemovedCommondir { path } => format!(
                    "shellcage: git: removed {} made in the sandbox (it pointed git at another repository)",
                    rel(path)
                ),
                Action::Failed { path, err } => format!(
                    "shellcage: warning: git: could not neutralise {}: {err} (hint: check it before running git there)",
                    rel(path)
                ),
            })
            .collect();
        for (dir, err) in &self.unreadable {
            out.push(format!(
                "shellcage: warning: git: could not check {} for repositories: {err} (hint: do not run git there before checking its .git)",
                rel(dir)
            ));
        }
        out
    }
}

/// Is `now` new or different from `then` (recorded by `before`)? Same
/// content (kept for configs, commondir and links) or a trusted equal stamp
/// means unchanged.
fn changed(before: &Inventory, now: Option<&Snap>, then: Option<&Snap>) -> bool {
    match (now, then) {
        (Some(n), Some(t)) => {
            let same_text = n.text.is_some() && n.text == t.text && n.stamp.mode == t.stamp.mode;
            !same_text && !before.unchanged(&t.stamp, &n.stamp)
        }
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// `path` with `..` and `.` resolved without touching the filesystem.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Does `path` stay inside `root`, as written and as the filesystem resolves
/// it now (the deepest existing ancestor, canonicalised, plus the rest)?
pub fn stays_inside(path: &Path, root: &Path) -> bool {
    let lex = lexical(path);
    if !lex.starts_with(root) {
        return false;
    }
    let mut existing = lex.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut full = real;
            full.extend(rest.iter().rev());
            return lexical(&full).starts_with(root);
        }
        match (existing.file_name().map(OsStr::to_owned), existing.pop()) {
            (Some(name), true) => rest.push(name),
            _ => return false,
        }
    }
}

/// Undo what a run did to the repositories under `after.root`.
pub fn neutralise(before: &Inventory, after: &Inventory) -> Report {
    let mut report = Report {
        actions: Vec::new(),
        unreadable: after.unreadable.clone(),
    };
    let empty = GitDirFiles::default();
    for (dir, now) in &after.git_dirs {
        let then = before.git_dirs.get(dir).unwrap_or(&empty);
        for (name, n, t) in [
            ("config", &now.config, &then.config),
            (
                "config.worktree",
                &now.config_worktree,
                &then.config_worktree,
            ),
        ] {
            if changed(before, n.as_ref(), t.as_ref()) {
                let ctx = Context {
                    git_dir: Some(dir.clone()),
                    workspace: Some(after.root.clone()),
                    ..Context::default()
                };
                clean_config(&dir.join(name), n.as_ref(), t.as_ref(), &ctx, &mut report);
            }
        }
        if changed(before, now.commondir.as_ref(), then.commondir.as_ref()) {
            check_commondir(
                dir,
                now.commondir.as_ref(),
                then.commondir.as_ref(),
                &after.root,
                &mut report,
            );
        }
        disable_hooks(before, dir, now, then, &mut report);
    }
    for (path, now) in &after.links {
        let then = before.links.get(path);
        // A link the run made or changed, or one whose target it moved
        // outside (a directory on the way replaced by a link), unless it
        // pointed outside before (the workspace is a linked worktree).
        let suspect = changed(before, Some(&now.snap), then.map(|t| &t.snap))
            || then.is_some_and(|t| t.inside);
        let git_reads_it = now.target.is_some() || now.snap.stamp.is_symlink();
        if suspect && git_reads_it && !now.inside {
            disable(
                path.clone(),
                "a .git link pointing outside the workspace, made or redirected in the sandbox",
                &mut report,
            );
        }
    }
    report
}

fn clean_config(
    path: &Path,
    now: Option<&Snap>,
    then: Option<&Snap>,
    ctx: &Context,
    report: &mut Report,
) {
    let base = then.and_then(|t| t.text.clone());
    let put_back = |why: String, report: &mut Report| {
        let result = match &base {
            Some(text) => replace_locked(path, text).map(|()| Action::RestoredConfig {
                path: path.into(),
                why,
            }),
            None => move_aside(path, DISABLED)
                .map(|to| Action::MovedAside {
                    path: path.into(),
                    to,
                    why: "a config git may read, made in the sandbox and not readable as one",
                })
                .map_err(|err| super::files::FileError::Write {
                    path: path.into(),
                    err,
                }),
        };
        report
            .actions
            .push(result.unwrap_or_else(|e| Action::Failed {
                path: path.into(),
                err: e.to_string(),
            }));
    };
    let Some(text) = now
        .and_then(|n| n.text.as_ref())
        .filter(|_| !now.is_some_and(|n| n.stamp.is_symlink()))
    else {
        put_back("not a regular file of at most 1 MiB".into(), report);
        return;
    };
    let base_text = base.clone().unwrap_or_default();
    match merge(&base_text, &base_text, text, &NESTED, ctx) {
        Ok(m) if m.refused.is_empty() => {}
        Ok(m) => {
            let refused = m.refused.into_iter().map(|(k, _)| k).collect();
            report.actions.push(match replace_locked(path, &m.text) {
                Ok(()) => Action::CleanedConfig {
                    path: path.into(),
                    refused,
                },
                Err(e) => Action::Failed {
                    path: path.into(),
                    err: e.to_string(),
                },
            });
        }
        Err(e) => put_back(e.to_string(), report),
    }
}

fn check_commondir(
    dir: &Path,
    now: Option<&Snap>,
    then: Option<&Snap>,
    root: &Path,
    report: &mut Report,
) {
    let path = dir.join("commondir");
    let regular = now.is_some_and(|n| n.stamp.mode & libc::S_IFMT == libc::S_IFREG);
    // `git worktree add` makes <common>/worktrees/<id>/commondir = "../..".
    let worktree_layout = dir
        .parent()
        .filter(|p| p.file_name() == Some(OsStr::new("worktrees")));
    if let (true, Some(worktrees)) = (regular, worktree_layout) {
        let common = worktrees.parent().map(Path::to_path_buf);
        if let (Ok(target), Some(common)) = (common_dir(dir), common) {
            if std::fs::canonicalize(&common).is_ok_and(|c| c == target)
                && stays_inside(&target, root)
            {
                return;
            }
        }
    }
    let result = match then.and_then(|t| t.text.as_ref()) {
        Some(text) => replace_locked(&path, text).map_err(|e| e.to_string()),
        None => std::fs::remove_file(&path).map_err(|e| e.to_string()),
    };
    report.actions.push(match result {
        Ok(()) => Action::RemovedCommondir { path },
        Err(err) => Action::Failed { path, err },
    });
}

fn disable(path: PathBuf, why: &'static str, report: &mut Report) {
    report.actions.push(match move_aside(&path, DISABLED) {
        Ok(to) => Action::MovedAside { path, to, why },
        Err(e) => Action::Failed {
            path,
            err: e.to_string(),
        },
    });
}

fn disable_hooks(
    before: &Inventory,
    dir: &Path,
    now: &GitDirFiles,
    then: &GitDirFiles,
    report: &mut Report,
) {
    let hooks = dir.join("hooks");
    let Some(stamp) = now.hooks else { return };
    let same = |t: Option<&Stamp>, n: &Stamp| t.is_some_and(|t| before.unchanged(t, n));
    if Stamp::is_symlink(&stamp) {
        if !same(then.hooks.as_ref(), &stamp) {
            disable(hooks, "a hooks link made in the sandbox", report);
        }
        return;
    }
    for (name, st) in &now.hook_files {
        let inert =
            name.as_bytes().ends_with(b".sample") || name.as_bytes().ends_with(DISABLED.as_bytes());
        if !inert && !same(then.hook_files.get(name), st) {
            disable(
                hooks.join(name),
                "a hook made or changed in the sandbox",
                report,
            );
        }
    }
}

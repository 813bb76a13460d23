//! `shellcage apply`: make the host workspace equal to the merged view.
//!
//! Order of work, each step safe to repeat:
//! 1. lock the layer; remove temporary files a killed apply left (the journal);
//! 2. scan the layer against the host *as it is now*: what an interrupted apply
//!    already did is no longer a difference, so a rerun only does the rest;
//! 3. decide per entry: apply, or skip (a problem entry, a protected path, a
//!    git file that runs code); refuse, naming each path, when the host copy
//!    changed since the layer began (ctime at or after the layer's stamp),
//!    unless `force`;
//! 4. apply in pre-order: deletions, directories (mode set last), files and
//!    symlinks each through a temporary name and a rename in its directory;
//! 5. `syncfs` the workspace, then remove what was applied from the layer
//!    (children first); a layer left empty starts over (new stamp, base commit).
//!
//! Every host path is reached from the workspace's descriptor one component
//! at a time with `O_NOFOLLOW`: a symlink on the host is replaced, never walked.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::OverlayError;
use super::fs::{self, Kind, Tree};
use super::rules;
use super::scan::{self, Entry};
use super::store::Layer;

/// Prefix of the temporary names apply creates on the host.
pub const TMP_PREFIX: &str = ".shellcage-apply-";

/// Where `.git/config` goes when the layer changed it. The default (none) is
/// to skip it and say so; a merger over `crate::git::merge::merge` (the key
/// policy `MERGE_BACK`: only keys that cannot run code) is not wired yet.
pub trait GitConfigMerge {
    /// The new host `.git/config` from the host's current one and the layer's.
    fn merge(&self, host: Option<&[u8]>, layer: &[u8]) -> Result<Vec<u8>, String>;
}

/// What to apply and how.
#[derive(Default)]
pub struct ApplyOptions<'a> {
    pub dry_run: bool,
    pub force: bool,
    /// Workspace-relative paths to apply (empty: everything).
    pub select: Vec<PathBuf>,
    /// Workspace-relative protected paths (from the profile): never written.
    pub protected: Vec<PathBuf>,
    pub git_config: Option<&'a dyn GitConfigMerge>,
}

/// What an apply did (or, with `dry_run`, would do).
#[derive(Debug, Default, serde::Serialize)]
pub struct ApplyReport {
    pub dry_run: bool,
    /// `(letter, path)`: D, A (new), M (replaced), T (type changed), m (mode only).
    pub applied: Vec<(char, PathBuf)>,
    /// Layer entries not applied, with the reason; they stay in the layer.
    pub skipped: Vec<(PathBuf, String)>,
    /// Protected host paths kept although the layer deletes their parent.
    pub kept: Vec<PathBuf>,
    /// Files written without their setuid/setgid/sticky bits.
    pub stripped: Vec<(PathBuf, u32)>,
    /// Host paths changed since the layer began (refused unless `force`).
    pub conflicts: Vec<(PathBuf, String)>,
    /// The layer holds nothing any more and starts over.
    pub layer_empty: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The entry is applied as a whole.
    Full,
    /// Only an ancestor of a selected path: make sure the directory exists.
    Ancestor,
    Out,
}

/// Apply `layer` to its workspace.
pub fn apply(layer: &mut Layer, opts: &ApplyOptions<'_>) -> Result<ApplyReport, OverlayError> {
    let _lock = layer.lock()?;
    let ws = layer.meta.workspace.clone();
    if !opts.dry_run {
        clean_journal(layer, &ws)?;
    }
    let entries = scan::scan(&layer.upper(), &ws)?;
    let mut host = Tree::open(&ws).map_err(|e| OverlayError::io("cannot open", &ws, e))?;
    let mut report = ApplyReport {
        dry_run: opts.dry_run,
        ..ApplyReport::default()
    };
    let plan = decide(&entries, opts, layer, &mut host, &mut report)?;
    if !report.conflicts.is_empty() && !opts.force {
        return Err(OverlayError::Conflicts(
            report
                .conflicts
                .iter()
                .map(|(p, why)| format!("{}: {why}", super::changes::show(p)))
                .collect(),
        ));
    }
    let mut run = Run {
        host,
        upper: Tree::open(&layer.upper())
            .map_err(|e| OverlayError::io("cannot open", &layer.upper(), e))?,
        ws: ws.clone(),
        journal: None,
        journal_path: layer.journal(),
        tmp_count: 0,
        actions: 0,
        dry: opts.dry_run,
        protected: &opts.protected,
        git_config: opts.git_config,
        dir_modes: Vec::new(),
    };
    for (e, step) in entries.iter().zip(&plan) {
        if let Step::Do(scope) = step {
            run.entry(e, *scope, &opts.select, &mut report)?;
        }
    }
    if opts.dry_run {
        return Ok(report);
    }
    run.finish_dirs()?;
    nix::unistd::syncfs(run.host.root.as_fd())
        .map_err(|e| OverlayError::io("cannot sync", &ws, e.into()))?;
    clear_applied(&entries, &plan, &mut run.upper, &report)?;
    drop(run.journal.take());
    let _ = std::fs::remove_file(layer.journal());
    let mut up = fs::open_dir(&layer.upper())
        .map_err(|e| OverlayError::io("cannot open", &layer.upper(), e))?;
    if fs::list(&mut up)
        .map_err(|e| OverlayError::io("cannot read", &layer.upper(), e))?
        .is_empty()
    {
        layer.restart()?;
        report.layer_empty = true;
    }
    Ok(report)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Do(Scope),
    /// Already equal on the host (nothing to do, remove from the layer).
    Equal,
    Skip,
    Out,
}

fn scope_of(path: &Path, select: &[PathBuf]) -> Scope {
    if select.is_empty() || select.iter().any(|s| path.starts_with(s)) {
        Scope::Full
    } else if select.iter().any(|s| s.starts_with(path)) {
        Scope::Ancestor
    } else {
        Scope::Out
    }
}

/// Per entry: do, skip (with the reason in the report), or leave alone; and the conflicts.
fn decide(
    entries: &[Entry],
    opts: &ApplyOptions<'_>,
    layer: &Layer,
    host: &mut Tree,
    report: &mut ApplyReport,
) -> Result<Vec<Step>, OverlayError> {
    let t0 = layer.meta.begun_ctime;
    let in_layer: HashMap<&Path, bool> = entries
        .iter()
        .map(|e| (e.path.as_path(), e.layer.is_some()))
        .collect();
    let mut skipped_dirs: Vec<&Path> = Vec::new();
    let mut plan = Vec::with_capacity(entries.len());
    for e in entries {
        let scope = scope_of(&e.path, &opts.select);
        if scope == Scope::Out {
            plan.push(Step::Out);
            continue;
        }
        let skip = if let Some(p) = skipped_dirs.iter().find(|d| e.path.starts_with(d)) {
            Some(format!(
                "inside {}, which is not applied",
                super::changes::show(p)
            ))
        } else {
            skip_reason(e, opts, host, &in_layer)
        };
        if let Some(why) = skip {
            if e.layer.is_some_and(|l| l.kind == Kind::Dir) {
                skipped_dirs.push(&e.path);
            }
            if e.is_change() || e.problem.is_some() {
                report.skipped.push((e.path.clone(), why));
            }
            plan.push(Step::Skip);
            continue;
        }
        if !e.is_change() {
            plan.push(if scope == Scope::Full {
                Step::Equal
            } else {
                Step::Out
            });
            continue;
        }
        conflicts_of(e, scope, t0, &opts.select, report);
        plan.push(Step::Do(scope));
    }
    Ok(plan)
}

fn changed_since(n: &fs::Node, t0: (i64, i64)) -> bool {
    n.ctime >= t0
}

/// Host nodes this entry's apply removes or overwrites that changed since T0.
fn conflicts_of(
    e: &Entry,
    scope: Scope,
    t0: (i64, i64),
    select: &[PathBuf],
    report: &mut ApplyReport,
) {
    let Some(h) = e.host else { return };
    let layer_dir = e.layer.is_some_and(|l| l.kind == Kind::Dir);
    if h.kind == Kind::Dir && layer_dir {
        return; // at most a mode change: nothing of the host's is lost
    }
    if e.layer.is_some() && !layer_dir && scope != Scope::Full {
        return; // not selected: nothing is done to it
    }
    // A directory replacing a host file removes it whatever the selection.
    if h.kind != Kind::Dir && (scope == Scope::Full || layer_dir) && changed_since(&h, t0) {
        report.conflicts.push((
            e.path.clone(),
            "changed on the host since the layer began".into(),
        ));
    }
    for (p, n) in &e.below {
        if n.kind != Kind::Dir && changed_since(n, t0) && scope_of(p, select) == Scope::Full {
            report.conflicts.push((
                p.clone(),
                format!(
                    "changed on the host since the layer began (the layer removes {})",
                    super::changes::show(&e.path)
                ),
            ));
        }
    }
}

fn skip_reason(
    e: &Entry,
    opts: &ApplyOptions<'_>,
    host: &mut Tree,
    in_layer: &HashMap<&Path, bool>,
) -> Option<String> {
    if let Some(p) = &e.problem {
        return Some(p.clone());
    }
    let Some(l) = e.layer else {
        return None; // deletions: protected paths below are kept, not a skip
    };
    let is_git_config = e.path == Path::new(".git/config") && l.kind == Kind::File;
    if is_git_config && opts.git_config.is_some() {
        return None;
    }
    if let Some(q) = rules::protected_at(&e.path, &opts.protected) {
        if e.is_change() {
            return Some(format!(
                "protected path {} (profile)",
                super::changes::show(q)
            ));
        }
    }
    if e.host.is_some_and(|h| h.kind == Kind::Dir) && l.kind != Kind::Dir {
        for q in rules::protected_below(&e.path, &opts.protected) {
            if host.stat(q).ok().flatten().is_some() {
                return Some(format!(
                    "replacing it would remove the protected path {}",
                    super::changes::show(q)
                ));
            }
        }
    }
    let mut shaped = |dir: &Path| {
        ["HEAD", "objects", "refs"].iter().all(|n| {
            let p = dir.join(n);
            in_layer
                .get(p.as_path())
                .copied()
                .unwrap_or_else(|| host.stat(&p).ok().flatten().is_some())
        })
    };
    if e.is_change() {
        if let Some(why) = rules::git_refusal(&e.path, l.kind, &mut shaped) {
            return Some(if is_git_config {
                format!(
                    "{why}; review it in the layer (safe keys can be merged once shellcage's git config merge is wired in)"
                )
            } else {
                why
            });
        }
    }
    None
}

struct Run<'a> {
    host: Tree,
    upper: Tree,
    ws: PathBuf,
    journal: Option<File>,
    journal_path: PathBuf,
    tmp_count: u64,
    actions: u64,
    dry: bool,
    protected: &'a [PathBuf],
    git_config: Option<&'a dyn GitConfigMerge>,
    /// Directories whose final mode is set after their contents (deepest last in the list).
    dir_modes: Vec<(PathBuf, u32)>,
}

impl Run<'_> {
    fn herr(&self, what: &'static str, rel: &Path, e: io::Error) -> OverlayError {
        OverlayError::io(what, &self.ws.join(rel), e)
    }

    fn entry(
        &mut self,
        e: &Entry,
        scope: Scope,
        select: &[PathBuf],
        report: &mut ApplyReport,
    ) -> Result<(), OverlayError> {
        let path = &e.path;
        match (e.host, e.layer) {
            (Some(_), None) => {
                if scope == Scope::Full {
                    self.delete(path, report)?;
                    report.applied.push(('D', path.clone()));
                } else {
                    for s in select.iter().filter(|s| s.starts_with(path)) {
                        self.delete(s, report)?;
                        report.applied.push(('D', s.clone()));
                    }
                }
            }
            (h, Some(l)) if l.kind == Kind::Dir => {
                let host_dir = h.is_some_and(|h| h.kind == Kind::Dir);
                if h.is_some() && !host_dir {
                    self.delete(path, report)?;
                }
                if !host_dir {
                    self.mkdir(path)?;
                    // `join("")` adds the trailing slash a directory is shown with.
                    let shown = path.join("");
                    report
                        .applied
                        .push((if h.is_some() { 'T' } else { 'A' }, shown));
                    self.dir_modes.push((path.clone(), l.perm & 0o1777));
                } else if scope == Scope::Full && h.is_some_and(|h| h.perm != l.perm) {
                    report.applied.push(('m', path.join("")));
                    self.dir_modes.push((path.clone(), l.perm & 0o1777));
                }
            }
            (h, Some(l)) => {
                if scope != Scope::Full {
                    return Ok(());
                }
                if h.is_some_and(|h| h.kind == Kind::Dir) {
                    self.delete(path, report)?;
                }
                if l.kind == Kind::Symlink {
                    self.write_link(path, e.target.as_deref().unwrap_or_default())?;
                } else if path == Path::new(".git/config") && self.git_config.is_some() {
                    self.merge_git_config(path, &l)?;
                } else {
                    self.write_file(path, &l, report)?;
                }
                let letter = match h {
                    None => 'A',
                    Some(h) if h.kind != l.kind => 'T',
                    Some(_) if l.kind == Kind::File && !e.content_changed => 'm',
                    Some(_) => 'M',
                };
                report.applied.push((letter, path.clone()));
            }
            (None, None) => {}
        }
        Ok(())
    }

    fn tick(&mut self) {
        self.actions += 1;
        test_hook("SHELLCAGE_TEST_APPLY_KILL_AFTER", self.actions);
    }

    /// Remove a host path and everything below it, keeping protected paths.
    fn delete(&mut self, rel: &Path, report: &mut ApplyReport) -> Result<(), OverlayError> {
        if self.dry {
            for q in rules::protected_below(rel, self.protected) {
                if self.host.stat(q).ok().flatten().is_some() {
                    report.kept.push(q.clone());
                }
            }
            return Ok(());
        }
        let (parent, name) = fs::split(rel).map_err(|e| self.herr("cannot remove", rel, e))?;
        let below = rules::protected_below(rel, self.protected);
        let protected: Vec<PathBuf> = below.into_iter().cloned().collect();
        let dir = self
            .host
            .dir(parent)
            .map_err(|e| OverlayError::io("cannot open", &self.ws.join(parent), e))?;
        let dir = fs::dup_fd(dir)
            .map_err(|e| OverlayError::io("cannot open", &self.ws.join(parent), e))?;
        self.host.forget();
        remove_keeping(dir.as_fd(), name, rel, &protected, &mut report.kept)
            .map_err(|e| self.herr("cannot remove", rel, e))?;
        self.tick();
        Ok(())
    }

    fn mkdir(&mut self, rel: &Path) -> Result<(), OverlayError> {
        if self.dry {
            return Ok(());
        }
        let (parent, name) = fs::split(rel).map_err(|e| self.herr("cannot create", rel, e))?;
        let ws = self.ws.clone();
        let dir = self
            .host
            .dir(parent)
            .map_err(|e| OverlayError::io("cannot open", &ws.join(parent), e))?;
        match nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(self.herr("cannot create", rel, e.into())),
        }
        Ok(())
    }

    /// The open layer file at `rel`, checked to be the inode the scan saw.
    fn layer_file(&mut self, rel: &Path, ino: u64) -> Result<File, OverlayError> {
        let (parent, name) = fs::split(rel).map_err(|e| self.herr("cannot read", rel, e))?;
        let d = self
            .upper
            .dir(parent)
            .map_err(|e| OverlayError::io("cannot open layer directory", parent, e))?;
        fs::open_file_at(d, name, Some(ino))
            .map_err(|e| OverlayError::io("cannot open layer file", rel, e))
    }

    fn write_file(
        &mut self,
        rel: &Path,
        l: &fs::Node,
        report: &mut ApplyReport,
    ) -> Result<(), OverlayError> {
        let perm = l.perm & 0o777;
        if l.perm & 0o7000 != 0 {
            report.stripped.push((rel.to_path_buf(), l.perm));
        }
        if self.dry {
            return Ok(());
        }
        let src = self.layer_file(rel, l.ino)?;
        self.replace_with(rel, |dir, tmp| {
            let out = create_tmp(dir, tmp)?;
            copy_sparse(&src, &out, l.size)?;
            nix::sys::stat::fchmod(out.as_fd(), Mode::from_bits_truncate(perm))?;
            Ok(())
        })
    }

    fn merge_git_config(&mut self, rel: &Path, l: &fs::Node) -> Result<(), OverlayError> {
        if self.dry {
            return Ok(());
        }
        let mut src = self.layer_file(rel, l.ino)?;
        let layer_bytes = fs::read_limited(&mut src, 1 << 20)
            .map_err(|e| OverlayError::io("cannot read layer file", rel, e))?;
        let host_bytes = match self.host.dir(Path::new(".git")) {
            Ok(d) => match fs::open_file_at(d, OsStr::new("config"), None) {
                Ok(mut f) => Some(
                    fs::read_limited(&mut f, 1 << 20)
                        .map_err(|e| self.herr("cannot read", rel, e))?,
                ),
                Err(e) if fs::is_not_there(&e) => None,
                Err(e) => return Err(self.herr("cannot read", rel, e)),
            },
            Err(e) => return Err(self.herr("cannot open", Path::new(".git"), e)),
        };
        let merged = self
            .git_config
            .expect("merger present")
            .merge(host_bytes.as_deref(), &layer_bytes)
            .map_err(|why| OverlayError::Invalid(format!("cannot merge .git/config: {why}")))?;
        self.replace_with(rel, |dir, tmp| {
            let mut out = create_tmp(dir, tmp)?;
            out.write_all(&merged)?;
            nix::sys::stat::fchmod(out.as_fd(), Mode::from_bits_truncate(0o644))?;
            Ok(())
        })
    }

    fn write_link(&mut self, rel: &Path, target: &OsStr) -> Result<(), OverlayError> {
        if self.dry {
            return Ok(());
        }
        self.replace_with(rel, |dir, tmp| {
            Ok(nix::unistd::symlinkat(target, dir, tmp)?)
        })
    }

    /// Make `tmp` with `make` in the host parent of `rel`, then rename it over `rel`.
    fn replace_with(
        &mut self,
        rel: &Path,
        make: impl FnOnce(BorrowedFd<'_>, &OsStr) -> io::Result<()>,
    ) -> Result<(), OverlayError> {
        let (parent, name) = fs::split(rel).map_err(|e| self.herr("cannot write", rel, e))?;
        self.tmp_count += 1;
        let tmp = OsString::from(format!(
            "{TMP_PREFIX}{}-{}",
            std::process::id(),
            self.tmp_count
        ));
        self.journal_tmp(&parent.join(&tmp))?;
        let ws = self.ws.clone();
        let dir = self
            .host
            .dir(parent)
            .map_err(|e| OverlayError::io("cannot open", &ws.join(parent), e))?;
        let n = self.tmp_count;
        let result = make(dir, &tmp).and_then(|()| {
            test_hook("SHELLCAGE_TEST_APPLY_KILL_IN_TMP", n);
            Ok(nix::fcntl::renameat(dir, tmp.as_os_str(), dir, name)?)
        });
        if let Err(e) = result {
            let _ = fs::unlink_at(dir, &tmp, false);
            return Err(OverlayError::io("cannot write", &ws.join(rel), e));
        }
        self.tick();
        Ok(())
    }

    /// Note a temporary name before creating it, so a killed apply's leftovers
    /// are removed by the next one.
    fn journal_tmp(&mut self, rel: &Path) -> Result<(), OverlayError> {
        if self.journal.is_none() {
            let f = File::options()
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&self.journal_path)
                .map_err(|e| OverlayError::io("cannot open", &self.journal_path, e))?;
            self.journal = Some(f);
        }
        let line = format!("tmp {}\n", hex(rel.as_os_str().as_bytes()));
        self.journal
            .as_mut()
            .unwrap()
            .write_all(line.as_bytes())
            .map_err(|e| OverlayError::io("cannot write", &self.journal_path, e))
    }

    /// Directory modes, deepest first (a read-only directory gets its mode
    /// after its contents were written).
    fn finish_dirs(&mut self) -> Result<(), OverlayError> {
        let mut modes = std::mem::take(&mut self.dir_modes);
        modes.sort_by(|a, b| b.0.cmp(&a.0));
        for (rel, mode) in modes {
            let (parent, name) = fs::split(&rel).map_err(|e| self.herr("cannot chmod", &rel, e))?;
            let ws = self.ws.clone();
            let d = self
                .host
                .dir(parent)
                .map_err(|e| OverlayError::io("cannot open", &ws.join(parent), e))?;
            let sub = fs::open_dir_at(d, name)
                .map_err(|e| OverlayError::io("cannot open", &ws.join(&rel), e))?;
            nix::sys::stat::fchmod(sub.as_fd(), Mode::from_bits_truncate(mode))
                .map_err(|e| OverlayError::io("cannot chmod", &ws.join(&rel), e.into()))?;
        }
        Ok(())
    }
}

/// Test hook (debug builds only): die at the `n`th step named by `var`, as a
/// crash or `kill -9` would, so the tests can prove a rerun completes.
fn test_hook(var: &str, n: u64) {
    #[cfg(debug_assertions)]
    if std::env::var(var).ok().and_then(|v| v.parse().ok()) == Some(n) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(debug_assertions))]
    let _ = (var, n);
}

fn create_tmp(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    let fd = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    Ok(File::from(fd))
}

/// Copy `size` bytes, keeping holes: only the data extents are written
/// (SEEK_DATA/SEEK_HOLE), so a huge sparse file stays sparse on the host.
fn copy_sparse(src: &File, dst: &File, size: u64) -> io::Result<()> {
    use nix::unistd::{Whence, lseek};
    let mut buf = vec![0u8; 1 << 20];
    let mut off: i64 = 0;
    let size_i = i64::try_from(size).map_err(|_| io::Error::other("file too large"))?;
    while off < size_i {
        let data = match lseek(src.as_fd(), off, Whence::SeekData) {
            Ok(d) => d,
            Err(Errno::ENXIO) => break,
            Err(Errno::EINVAL) if off == 0 => 0, // no SEEK_DATA here: copy everything
            Err(e) => return Err(e.into()),
        };
        let end = match lseek(src.as_fd(), data, Whence::SeekHole) {
            Ok(h) => h.min(size_i),
            Err(_) => size_i,
        };
        let mut pos = data;
        while pos < end {
            let want = ((end - pos) as usize).min(buf.len());
            let n = src.read_at(&mut buf[..want], pos as u64)?;
            if n == 0 {
                break;
            }
            dst.write_all_at(&buf[..n], pos as u64)?;
            pos += n as i64;
        }
        off = end.max(off + 1);
    }
    dst.set_len(size)
}

/// Remove `name` below `dir` (workspace path `rel`), keeping `protected` paths
/// and their parents; the kept ones are added to `kept`.
fn remove_keeping(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    rel: &Path,
    protected: &[PathBuf],
    kept: &mut Vec<PathBuf>,
) -> io::Result<()> {
    if protected.iter().any(|q| q.as_path() == rel) {
        if fs::stat_at(dir, name)?.is_some() {
            kept.push(rel.to_path_buf());
        }
        return Ok(());
    }
    if !protected.iter().any(|q| q.starts_with(rel)) {
        return fs::remove_tree_at(dir, name);
    }
    match fs::stat_at(dir, name)? {
        Some(n) if n.kind == Kind::Dir => {}
        Some(_) => return fs::unlink_at(dir, name, false),
        None => return Ok(()),
    }
    let mut sub = fs::open_dir_at(dir, name)?;
    for child in fs::list(&mut sub)? {
        remove_keeping(sub.as_fd(), &child, &rel.join(&child), protected, kept)?;
    }
    match nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOTEMPTY | Errno::EEXIST | Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Remove what was applied from the upper directory, children first. A
/// directory stays when something inside it stays (skipped, not selected).
fn clear_applied(
    entries: &[Entry],
    plan: &[Step],
    upper: &mut Tree,
    report: &ApplyReport,
) -> Result<(), OverlayError> {
    let mut keep: HashSet<PathBuf> = HashSet::new();
    for (e, s) in entries.iter().zip(plan) {
        let done = matches!(s, Step::Do(Scope::Full) | Step::Equal);
        if !done {
            for a in e.path.ancestors().skip(1) {
                keep.insert(a.to_path_buf());
            }
            keep.insert(e.path.clone());
        }
    }
    for k in &report.kept {
        for a in k.ancestors() {
            keep.insert(a.to_path_buf());
        }
    }
    for (e, s) in entries.iter().zip(plan).rev() {
        if !matches!(s, Step::Do(Scope::Full) | Step::Equal)
            || keep.contains(&e.path) && e.layer.is_some_and(|l| l.kind == Kind::Dir)
        {
            continue;
        }
        if keep.contains(&e.path) && e.layer.is_none() {
            continue; // a deletion that kept a protected path stays recorded
        }
        let (parent, name) =
            fs::split(&e.path).map_err(|er| OverlayError::io("cannot clean layer", &e.path, er))?;
        let d = match upper.dir(parent) {
            Ok(d) => d,
            Err(er) if fs::is_not_there(&er) => continue,
            Err(er) => return Err(OverlayError::io("cannot clean layer", parent, er)),
        };
        let is_dir = fs::stat_at(d, name)
            .map_err(|er| OverlayError::io("cannot clean layer", &e.path, er))?
            .is_some_and(|n| n.kind == Kind::Dir);
        match nix::unistd::unlinkat(
            d,
            name,
            if is_dir {
                nix::unistd::UnlinkatFlags::RemoveDir
            } else {
                nix::unistd::UnlinkatFlags::NoRemoveDir
            },
        ) {
            Ok(()) | Err(Errno::ENOENT | Errno::ENOTEMPTY | Errno::EEXIST) => {}
            Err(er) => return Err(OverlayError::io("cannot clean layer", &e.path, er.into())),
        }
        upper.forget();
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Remove the temporary files a killed apply left on the host.
fn clean_journal(layer: &Layer, ws: &Path) -> Result<(), OverlayError> {
    let path = layer.journal();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(OverlayError::io("cannot read", &path, e)),
    };
    let mut host = Tree::open(ws).map_err(|e| OverlayError::io("cannot open", ws, e))?;
    for line in text.lines() {
        let Some(rel) = line
            .strip_prefix("tmp ")
            .and_then(unhex)
            .map(|b| PathBuf::from(OsStr::from_bytes(&b)))
        else {
            continue;
        };
        let ok_name = rel
            .file_name()
            .is_some_and(|n| n.as_bytes().starts_with(TMP_PREFIX.as_bytes()));
        if !ok_name || !fs::is_clean_relative(&rel) {
            continue;
        }
        let (parent, name) =
            fs::split(&rel).map_err(|e| OverlayError::io("cannot clean", &rel, e))?;
        match host.dir(parent) {
            Ok(d) => {
                if fs::stat_at(d, name)
                    .ok()
                    .flatten()
                    .is_some_and(|n| n.kind != Kind::Dir)
                {
                    fs::unlink_at(d, name, false)
                        .map_err(|e| OverlayError::io("cannot remove", &ws.join(&rel), e))?;
                }
            }
            Err(e) if fs::is_not_there(&e) => {}
            Err(e) => return Err(OverlayError::io("cannot open", &ws.join(parent), e)),
        }
    }
    std::fs::remove_file(&path).map_err(|e| OverlayError::io("cannot remove", &path, e))
}

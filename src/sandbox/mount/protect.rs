//! Protected paths inside a writable workspace (`.git/hooks`, `.envrc` …):
//! the half of the mount plan that writes to the host.
//!
//! Each protected path is bound read-only over itself for the run. One that is
//! missing cannot be bound, so its topmost missing ancestor gets a
//! *placeholder* on the host for the run's duration (see [`place`]); the
//! mount then holds it, and nothing can be created at or below it. Concurrent
//! runs in one workspace share a lock on the workspace directory, and the
//! placeholders are removed only by the last run to leave ([`cleanup`]);
//! placeholders a SIGKILLed run left behind are taken over by the next.
//!
//! [`prepare`] and [`cleanup`] are the whole life cycle, so a long-lived
//! caller (a session) can make the placeholders once and remove them at its
//! end.

mod git;
mod place;

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::SFlag;
use serde::Serialize;

use super::{MountError, Node};
use crate::policy::{Access, Policy};

pub use git::{EXCLUDE_FILE, PrivateConfig};
pub use place::LINK_TARGET;
use place::{Placer, Shape};

/// Files in `.git` that redirect git's configuration (and so its hooks and
/// `core.fsmonitor`) elsewhere: `commondir` points at another git directory,
/// `config.worktree` is read when `extensions.worktreeConfig` is set. Held for
/// the whole run: present ones read-only, missing ones by a placeholder.
const GIT_REDIRECTS: [&str; 2] = [".git/commondir", ".git/config.worktree"];

/// What protecting the workspace did on the host, and what to undo at exit.
#[derive(Debug, Default, Serialize)]
pub struct Protection {
    /// Paths held by a mount for the run, and what each is.
    #[serde(skip)]
    pub protected: Vec<(PathBuf, Node)>,
    /// Placeholders this run made or took over (removed at exit).
    pub placeholders: Vec<PathBuf>,
    /// Private copies of git config files the sandbox sees instead (merged
    /// back at exit).
    #[serde(skip)]
    pub git: Vec<PrivateConfig>,
    /// The exclude file naming the placeholders, for git inside (see
    /// [`EXCLUDE_FILE`]); only with a private copy of the root's config.
    #[serde(skip)]
    pub exclude: Option<Vec<u8>>,
    /// The protect list's root-level name patterns (`None` without any) and
    /// the root names that matched them at the start.
    #[serde(skip)]
    pub patterns: Option<Vec<PathBuf>>,
    #[serde(skip)]
    pub matched: Vec<std::ffi::OsString>,
    /// When the run began (a coarse clock tick), if the workspace's
    /// repositories are checked at exit (see [`check_repositories`]).
    #[serde(skip)]
    pub git_check_since: Option<(i64, i64)>,
    /// The placeholders' maker, holding the workspace lock (shared) while
    /// they may exist.
    #[serde(skip)]
    placer: Option<Placer>,
}

impl Protection {
    /// Does this run hold the workspace lock (only while protecting a
    /// writable workspace)?
    pub fn holds_lock(&self) -> bool {
        self.placer.is_some()
    }

    /// Protected paths without placeholders or a lock (unit tests of the plan).
    #[cfg(test)]
    pub fn for_tests(protected: Vec<(PathBuf, Node)>) -> Protection {
        Protection {
            protected,
            ..Protection::default()
        }
    }
}

/// A name a session's commands hold again, each for its own run: a placeholder the
/// session's template was built with (see [`Protection::release_placeholders`]).
#[derive(Debug, Clone)]
pub struct Hold {
    pub path: PathBuf,
    shape: Shape,
}

impl Protection {
    /// For a session (see the `session` module), once its template is built: the
    /// placeholders made for it are removed again (unless another run still uses them)
    /// and the workspace lock is let go, so that between commands the host's tree has
    /// none of them (the user's `git status`, an editor making `.vscode`). Each command
    /// holds them again for its own run ([`hold_for_command`]). Returns them.
    pub fn release_placeholders(&mut self) -> Vec<Hold> {
        let Some(placer) = &mut self.placer else {
            return Vec::new();
        };
        let holds: Vec<Hold> = (placer.made.iter())
            .map(|m| Hold {
                path: m.path.clone(),
                // What a run makes for that name today (older shapes are adopted only).
                shape: if m.shape == Shape::Dot {
                    Shape::Dot
                } else {
                    Shape::Link
                },
            })
            .collect();
        for copy in &mut self.git {
            copy.for_session();
        }
        if placer.last_out() {
            for (path, err) in placer.remove_all() {
                tracing::warn!(path = %path.display(), %err, "placeholder not removed");
            }
            for copy in &self.git {
                if let Err(err) = copy.remove_copy(placer) {
                    tracing::warn!(path = %copy.private.display(), %err, "git config copy not removed");
                }
            }
        }
        placer.forget_made();
        self.placeholders.clear();
        self.protected
            .retain(|(p, _)| !holds.iter().any(|h| h.path == *p));
        holds
    }
}

/// The placeholders and git config copies one command of a session holds for its run
/// (see [`hold_for_command`]); [`CommandHolds::finish`] removes them when it is the last
/// run to use the workspace.
#[derive(Debug)]
pub struct CommandHolds {
    placer: Placer,
    /// What the command's init binds read-only over itself.
    pub paths: Vec<PathBuf>,
    /// What each git config copy held when the command started (what it changes in
    /// them is merged when it ends, see [`after_command`]).
    pub git_before: Vec<Option<Vec<u8>>>,
}

impl CommandHolds {
    /// The command has ended: remove the placeholders and the git config copies `git` if
    /// no other run uses them (lines for stderr about any that could not be removed).
    pub fn finish(mut self, git: &[PrivateConfig]) -> Vec<String> {
        if !self.placer.last_out() {
            return Vec::new();
        }
        let mut lines: Vec<String> = (self.placer.remove_all().into_iter())
            .map(|(path, err)| {
                format!(
                    "shellcage: warning: placeholder {} not removed: {err}",
                    path.display()
                )
            })
            .collect();
        for copy in git {
            if let Err(err) = copy.remove_copy(&mut self.placer) {
                lines.push(format!(
                    "shellcage: warning: {} not removed: {err}",
                    copy.private.display()
                ));
            }
        }
        lines
    }
}

/// A session's command: take the workspace lock (shared), put each of the session's
/// placeholders in place again (made, or taken over from a concurrent run), and its git
/// config copies `git` (see [`PrivateConfig::for_command`]). `Err` when a name is
/// something else now (the host made it meanwhile) or cannot be reached, or a copy
/// cannot be made: the session's plan no longer fits the tree, and the command runs
/// cold.
pub fn hold_for_command(
    ws: &Path,
    holds: &[Hold],
    git: &[PrivateConfig],
) -> Result<CommandHolds, MountError> {
    let mut placer = Placer::open(ws)?;
    let umask = Umask::clear();
    let result = holds.iter().try_for_each(|h| hold_one(&mut placer, ws, h));
    drop(umask);
    let mut git_before = Vec::new();
    let result = result.and_then(|()| {
        for copy in git {
            let text = copy.for_command(&mut placer).map_err(|e| {
                MountError::Invalid(format!(
                    "cannot make the session's copy {}: {e}",
                    copy.private.display()
                ))
            })?;
            git_before.push(Some(text));
        }
        Ok(())
    });
    let out = CommandHolds {
        placer,
        paths: holds.iter().map(|h| h.path.clone()).collect(),
        git_before,
    };
    if let Err(e) = result {
        let _ = out.finish(git);
        return Err(e);
    }
    Ok(out)
}

fn hold_one(placer: &mut Placer, ws: &Path, hold: &Hold) -> Result<(), MountError> {
    let changed = |why: String| {
        MountError::Invalid(format!(
            "{}: {why} since the session started",
            hold.path.display()
        ))
    };
    let rel = hold
        .path
        .strip_prefix(ws)
        .map_err(|_| changed("outside the workspace".into()))?;
    let names: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let Some((last, parents)) = names.split_last() else {
        return Err(changed("not a name".into()));
    };
    let mut dir = 0;
    for name in parents {
        dir = placer
            .open_dir(dir, name)
            .map_err(|e| changed(format!("its directory changed ({e})")))?;
    }
    for _ in 0..2 {
        match placer.stat(dir, last) {
            Err(Errno::ENOENT) => match placer.make(dir, last, hold.shape) {
                Ok(true) => return Ok(()),
                // Made by a concurrent run (or the host) meanwhile: look again.
                Ok(false) => continue,
                Err(err) => {
                    return Err(MountError::Io {
                        what: "cannot create placeholder",
                        path: hold.path.clone(),
                        err,
                    });
                }
            },
            Ok(st) => {
                return match placer.shape_of(dir, last, &st) {
                    Some(shape) => {
                        placer.adopt(dir, last, &st, shape);
                        Ok(())
                    }
                    None => Err(changed("made on the host".into())),
                };
            }
            Err(e) => return Err(changed(format!("cannot be read ({e})"))),
        }
    }
    Err(changed("made on the host".into()))
}

pub(super) fn add(protected: &mut Vec<(PathBuf, Node)>, path: PathBuf, node: Node) {
    if !protected.iter().any(|(p, _)| p == &path) {
        protected.push((path, node));
    }
}

/// Sets the umask to 0 for its lifetime: a placeholder's mode is part of its
/// marker, so the umask must not clear bits of it.
struct Umask(nix::sys::stat::Mode);

impl Umask {
    fn clear() -> Umask {
        Umask(nix::sys::stat::umask(nix::sys::stat::Mode::empty()))
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        nix::sys::stat::umask(self.0);
    }
}

/// Lock the workspace, refuse what a mount cannot hold, and find (creating
/// placeholders where needed) every path to hold for the run. Nothing to do
/// for a read-only workspace or an empty protect list.
pub fn prepare(policy: &Policy) -> Result<Protection, MountError> {
    prepare_with(policy, true)
}

/// [`prepare`] for the paths of an overlay workspace that the host's tree
/// decides (`layer::protect`): placeholders and read-only mounts, but no
/// private copy of `.git/config` merged back at exit and no check of the
/// host's repositories at exit (the command's writes go to the layer; `apply`
/// keeps git's code-execution files off the host).
pub(super) fn prepare_for_overlay(policy: &Policy) -> Result<Protection, MountError> {
    prepare_with(policy, false)
}

fn prepare_with(policy: &Policy, host_writes: bool) -> Result<Protection, MountError> {
    let ws = &policy.workspace;
    let mut out = Protection::default();
    if policy.workspace_access != Access::Write || policy.protect.is_empty() {
        return Ok(out);
    }
    if host_writes && policy.protect.iter().any(|r| r == Path::new(".git/config")) {
        out.git_check_since = Some(crate::git::repo::tick_start());
    }
    let mut placer = Placer::open(ws)?;
    let mut protected = Vec::new();
    let umask = Umask::clear();
    let patterns: Vec<PathBuf> = (policy.protect.iter())
        .filter(|p| crate::policy::is_protect_pattern(p))
        .cloned()
        .collect();
    // (An overlay workspace's new matches are in the layer, which apply
    // keeps them out of: nothing to rename on the host at exit.)
    out.patterns = (host_writes && !patterns.is_empty()).then_some(patterns);
    let result = protect_all(policy, &mut placer, &mut protected).and_then(|matched| {
        out.matched = matched;
        if host_writes {
            private_configs(policy, &placer, &mut protected, &mut out)
        } else {
            Ok(())
        }
    });
    drop(umask);
    out.placeholders = placer.made.iter().map(|m| m.path.clone()).collect();
    if let Some(root) = out.git.iter().find(|g| g.host == ws.join(".git/config")) {
        out.exclude = Some(root.exclude_file(ws, out.placeholders.iter().map(PathBuf::as_path)));
    }
    out.protected = protected;
    out.placer = Some(placer);
    if let Err(e) = result {
        // Nothing ran: undo this run's placeholders (if no other run uses them).
        cleanup(&out);
        return Err(e);
    }
    Ok(out)
}

fn protect_all(
    policy: &Policy,
    placer: &mut Placer,
    protected: &mut Vec<(PathBuf, Node)>,
) -> Result<Vec<std::ffi::OsString>, MountError> {
    let ws = &policy.workspace;
    let (patterns, plain): (Vec<&PathBuf>, Vec<&PathBuf>) = policy
        .protect
        .iter()
        .partition(|p| crate::policy::is_protect_pattern(p));
    let plain: Vec<PathBuf> = plain.into_iter().cloned().collect();
    let mut list: Vec<&Path> = plain.iter().map(PathBuf::as_path).collect();
    // Root-level name patterns (`*.code-workspace`): what matches now is held
    // like any protected path; what the run adds is moved aside at exit.
    let matched = if patterns.is_empty() {
        Vec::new()
    } else {
        root_matches(ws, &patterns)?
    };
    list.extend(matched.iter().map(Path::new));
    // git also takes configuration from these files: held like `.git/config`
    // when the workspace has a git directory.
    let git_dir = placer
        .stat(0, OsStr::new(".git"))
        .is_ok_and(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits());
    let git_protected = policy.protect.iter().any(|r| r == Path::new(".git/config"));
    if git_dir && git_protected {
        for rel in GIT_REDIRECTS {
            check_git_redirect(ws, placer, rel)?;
            list.push(Path::new(rel));
        }
    }
    if git_protected {
        list.extend(bare_guard(placer).map(Path::new));
    }
    let writable: Vec<&Path> = (policy.paths.iter())
        .filter(|r| r.access == Access::Write)
        .map(|r| r.path.as_path())
        .collect();
    for rel in list {
        protect_path(placer, rel, &writable, protected)?;
    }
    Ok(matched)
}

/// The names at the workspace root that match one of the protect list's
/// `patterns`.
fn root_matches(ws: &Path, patterns: &[&PathBuf]) -> Result<Vec<std::ffi::OsString>, MountError> {
    use std::os::unix::ffi::OsStrExt;
    let rd = std::fs::read_dir(ws).map_err(|err| MountError::Io {
        what: "cannot read",
        path: ws.to_path_buf(),
        err,
    })?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|err| MountError::Io {
            what: "cannot read",
            path: ws.to_path_buf(),
            err,
        })?;
        let name = entry.file_name();
        let hit = patterns
            .iter()
            .any(|p| crate::policy::protect_covers(p, Path::new(&name)));
        // Not our own names (a pattern like `*.json` would match `.mcp.json`'s
        // placeholder: that is held anyway).
        if hit && !name.as_bytes().ends_with(DISABLED_SUFFIX.as_bytes()) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// What a name the run added that matches a protect pattern is renamed to.
const DISABLED_SUFFIX: &str = ".shellcage-disabled";

/// At exit: root entries matching a protect pattern that were not there at
/// the start (the run made them) are renamed `<name>.shellcage-disabled`
/// (reversible), so the editor that would run them never sees them. Lines
/// for stderr, and whether every new match was found and renamed.
fn disable_new_matches(protection: &Protection, ws: &Path) -> (Vec<String>, bool) {
    let Some(patterns) = &protection.patterns else {
        return (Vec::new(), true);
    };
    let refs: Vec<&PathBuf> = patterns.iter().collect();
    let Ok(now) = root_matches(ws, &refs) else {
        let line = format!(
            "shellcage: warning: could not check {} for new files matching protected patterns (hint: look for *.code-workspace and the like before opening it)",
            ws.display()
        );
        return (vec![line], false);
    };
    let mut lines = Vec::new();
    let mut complete = true;
    for name in now {
        if protection.matched.contains(&name) {
            continue;
        }
        let path = ws.join(&name);
        match crate::git::files::move_aside(&path, DISABLED_SUFFIX) {
            Ok(to) => lines.push(format!(
                "shellcage: disabled {} (made in the sandbox; it matches the protected pattern of an editor's configuration; now {})",
                name.to_string_lossy(),
                to.file_name().unwrap_or_default().to_string_lossy()
            )),
            Err(e) => {
                complete = false;
                lines.push(format!(
                    "shellcage: warning: {} was made in the sandbox and matches a protected pattern, but could not be renamed: {e} (hint: remove it before opening the project)",
                    path.display()
                ));
            }
        }
    }
    (lines, complete)
}

/// The workspace's `.git/config`, when it is held and is a regular file: a
/// private copy for the sandbox instead of a read-only mount (see [`git`]).
fn private_configs(
    policy: &Policy,
    placer: &Placer,
    protected: &mut Vec<(PathBuf, Node)>,
    out: &mut Protection,
) -> Result<(), MountError> {
    let config = policy.workspace.join(".git/config");
    if !protected
        .iter()
        .any(|(p, n)| *p == config && *n == Node::File)
    {
        return Ok(());
    }
    let Some(git) = placer.find_dir(&policy.workspace.join(".git")) else {
        return Ok(());
    };
    let copy = git::private_copy(
        placer,
        git,
        &git::exclude_injection(),
        crate::git::policy::MERGE_BACK,
    )
    .map_err(|err| MountError::Io {
        what: "cannot make a private copy of",
        path: config.clone(),
        err,
    })?;
    if let Some(copy) = copy {
        protected.retain(|(p, _)| *p != config);
        out.git.push(copy);
    }
    Ok(())
}

/// A git redirect file that exists must be a regular file (git follows a
/// link; a directory makes git die): anything else is refused.
fn check_git_redirect(ws: &Path, placer: &mut Placer, rel: &str) -> Result<(), MountError> {
    let git = placer
        .open_dir(0, OsStr::new(".git"))
        .map_err(|e| MountError::Io {
            what: "cannot open",
            path: ws.join(".git"),
            err: e,
        })?;
    let name = Path::new(rel).file_name().unwrap_or_default();
    match placer.stat(git, name) {
        Err(_) => Ok(()),
        Ok(st) if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits() => Ok(()),
        Ok(st) if placer.shape_of(git, name, &st).is_some() => Ok(()),
        Ok(_) => Err(MountError::Invalid(format!(
            "{} is not a regular file (hint: remove it; git reads it as configuration)",
            ws.join(rel).display()
        ))),
    }
}

/// The shape of the placeholder for the missing last component of `rel`
/// (or a missing directory above it).
fn shape_for(rel: &Path, last: bool) -> Shape {
    if last && rel == Path::new(".git/commondir") {
        Shape::Dot
    } else {
        Shape::Link
    }
}

/// The name at the workspace root that keeps the root itself from being a
/// git directory for the run: git takes a directory as one (also as a bare
/// repository, when `.git` is missing or invalid) only if it has `HEAD`,
/// `objects` and `refs` (setup.c `is_git_directory`, checked with
/// access(X_OK), which a placeholder link to nowhere fails). `refs` when it
/// is missing (a `HEAD` placeholder would make `git log HEAD` ambiguous),
/// else `objects`; `None` when both exist as the project's own entries (the
/// exit check then covers the root, see SECURITY.md).
fn bare_guard(placer: &Placer) -> Option<&'static str> {
    ["refs", "objects"].into_iter().find(|name| {
        let name = OsStr::new(name);
        match placer.stat(0, name) {
            Err(Errno::ENOENT) => true,
            Ok(st) => placer.shape_of(0, name, &st).is_some(),
            Err(_) => false,
        }
    })
}

/// Protect `ws/rel`: itself when it exists, else its topmost missing ancestor
/// (a new placeholder), a file ancestor, or the placeholder it lies in.
fn protect_one(
    placer: &mut Placer,
    rel: &Path,
    protected: &mut Vec<(PathBuf, Node)>,
) -> Result<Walk, MountError> {
    let full = placer.dir_path(0).join(rel);
    // Already inside a protected directory (e.g. `.git/config` below a
    // protected `.git`): covered.
    if protected
        .iter()
        .any(|(p, node)| *node == Node::Dir && full.starts_with(p) && &full != p)
    {
        return Ok(Walk::Done);
    }
    let names: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut dir = 0;
    let mut i = 0;
    let mut retried = false;
    while i < names.len() {
        let (name, last) = (names[i], i + 1 == names.len());
        let path = placer.dir_path(dir).join(name);
        let io_err = |err| MountError::Io {
            what: "cannot protect",
            path: path.clone(),
            err,
        };
        let st = match placer.stat(dir, name) {
            Ok(st) => st,
            Err(Errno::ENOENT) => {
                let shape = shape_for(rel, last);
                match placer.make(dir, name, shape) {
                    Ok(true) => {
                        add(protected, path, shape.node());
                        return Ok(Walk::Done);
                    }
                    // Made by a concurrent run (or the host) meanwhile: look again.
                    Ok(false) if !retried => {
                        retried = true;
                        continue;
                    }
                    Ok(false) => return Err(io_err(std::io::Error::from_raw_os_error(17))),
                    Err(e) => {
                        return Err(MountError::Io {
                            what: "cannot create placeholder",
                            path,
                            err: e,
                        });
                    }
                }
            }
            Err(e) => return Err(io_err(std::io::Error::from_raw_os_error(e as i32))),
        };
        let kind = st.st_mode & SFlag::S_IFMT.bits();
        if let Some(shape) = placer.shape_of(dir, name, &st) {
            // Left by a run that was SIGKILLed, or held by a concurrent one.
            placer.adopt(dir, name, &st, shape);
            add(protected, path, shape.node());
            return Ok(Walk::Done);
        }
        if kind == SFlag::S_IFDIR.bits() && !last {
            dir = placer.open_dir(dir, name).map_err(io_err)?;
            i += 1;
            continue;
        }
        if kind == SFlag::S_IFLNK.bits() {
            // The link itself is held (it cannot be removed or retargeted);
            // where it leads is the caller's to protect.
            add(protected, path.clone(), Node::Link);
            let rest = names[i + 1..].iter().map(|n| n.to_os_string()).collect();
            return Ok(Walk::Link { at: path, rest });
        }
        let node = if kind == SFlag::S_IFDIR.bits() {
            Node::Dir
        } else {
            // A file, or a file ancestor (`.git` in a git worktree or
            // submodule names the git directory): nothing can be created
            // below it, so protecting it covers the rest.
            Node::File
        };
        add(protected, path, node);
        return Ok(Walk::Done);
    }
    Ok(Walk::Done)
}

/// What [`protect_one`] met on the way.
enum Walk {
    Done,
    /// A symlink at `at` (held), with the components still to walk below it.
    Link {
        at: PathBuf,
        rest: Vec<std::ffi::OsString>,
    },
}

/// How many symlinks one protected path may pass through (the kernel's
/// limit for a path lookup).
const MAX_LINKS: usize = 40;

/// Protect `rel` and, when it is or passes through a symlink (a repository
/// with `.claude -> tools/claude-config`), every link on the way (held as
/// itself, so it cannot be removed or retargeted) and what it leads to:
/// protected too when inside the workspace; when outside, the sandbox sees
/// it read-only or not at all, unless it lies in a writable path
/// (`writable`), which cannot be held: refused.
fn protect_path(
    placer: &mut Placer,
    rel: &Path,
    writable: &[&Path],
    protected: &mut Vec<(PathBuf, Node)>,
) -> Result<(), MountError> {
    let ws = placer.dir_path(0).to_path_buf();
    let mut next = rel.to_path_buf();
    for _ in 0..MAX_LINKS {
        let Walk::Link { at, rest } = protect_one(placer, &next, protected)? else {
            return Ok(());
        };
        let (links, end) = resolve_link(&at, &rest).map_err(|err| MountError::Io {
            what: "cannot resolve the protected symlink",
            path: at.clone(),
            err,
        })?;
        for link in links.into_iter().filter(|l| l.starts_with(&ws)) {
            add(protected, link, Node::Link);
        }
        match end.strip_prefix(&ws) {
            Ok(r) if !r.as_os_str().is_empty() => next = r.to_path_buf(),
            Ok(_) => {
                return Err(MountError::Invalid(format!(
                    "protected path {} is a symlink to the workspace itself, which cannot be protected (hint: replace the link with the real file or directory)",
                    ws.join(rel).display()
                )));
            }
            Err(_) if writable.iter().any(|w| end.starts_with(w)) => {
                return Err(MountError::Invalid(format!(
                    "protected path {} is a symlink to {}, which the sandbox can write (hint: remove that --write path, or replace the link with the real file or directory)",
                    ws.join(rel).display(),
                    end.display()
                )));
            }
            // Outside: read-only or invisible inside; the link is held.
            Err(_) => return Ok(()),
        }
    }
    Err(MountError::Invalid(format!(
        "protected path {} passes through more than {MAX_LINKS} symlinks (hint: replace the links with the real file or directory)",
        ws.join(rel).display()
    )))
}

/// Where the symlink `at` with `rest` below it leads, resolved the way the
/// kernel does (component by component, `..` after what a link resolved
/// to), and the further symlinks met on the way. A missing component ends
/// the walk there (its placeholder then holds everything below).
fn resolve_link(
    at: &Path,
    rest: &[std::ffi::OsString],
) -> std::io::Result<(Vec<PathBuf>, PathBuf)> {
    use std::collections::VecDeque;
    let mut cur = at.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut queue: VecDeque<std::ffi::OsString> = VecDeque::new();
    let splice = |queue: &mut VecDeque<_>, cur: &mut PathBuf, link: &Path| -> std::io::Result<()> {
        let target = std::fs::read_link(link)?;
        if target.is_absolute() {
            *cur = PathBuf::from("/");
        }
        for c in target.components().rev() {
            match c {
                Component::Normal(n) => queue.push_front(n.to_os_string()),
                Component::ParentDir => queue.push_front("..".into()),
                _ => {}
            }
        }
        Ok(())
    };
    queue.extend(rest.iter().cloned());
    splice(&mut queue, &mut cur, at)?;
    let mut links = Vec::new();
    while let Some(comp) = queue.pop_front() {
        if comp == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&comp);
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                if links.len() >= MAX_LINKS {
                    return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
                }
                splice(&mut queue, &mut cur, &next)?;
                links.push(next);
            }
            Ok(_) => cur = next,
            // Missing: a placeholder there holds everything below it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                cur = next;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((links, cur))
}

/// What the exit step did on the host (said on stderr as it happens, and
/// kept for `--report json` and the audit record, so that a check cut short
/// is on record and not only in a terminal's scrollback).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct AfterRun {
    /// Every exit-time protection was carried out: the repository check
    /// (see `repositories`) and the renaming of new files matching a
    /// protected pattern. `false`: something the command made may still be
    /// live for the host's tools; the notes say what.
    #[serde(default = "yes")]
    pub complete: bool,
    /// The check of the repositories the run made or changed (absent when
    /// the run had no writable workspace to check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<RepoCheck>,
    /// Every line said about the workspace at exit, as on stderr.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl AfterRun {
    /// Nothing was said and nothing was cut short.
    pub fn is_quiet(&self) -> bool {
        self.notes.is_empty() && self.complete
    }

    pub fn say(&mut self, line: String) {
        crate::say!("{line}");
        let line = line.strip_prefix("shellcage: ").unwrap_or(&line).to_owned();
        self.notes.push(line);
    }
}

impl Default for AfterRun {
    fn default() -> AfterRun {
        AfterRun {
            complete: true,
            repositories: None,
            notes: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// The exit-time repository check (see [`check_repositories`]).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RepoCheck {
    /// Every directory of the workspace was read and every change that had
    /// to be undone was undone. `false`: some repository may still hold
    /// what the command wrote (the notes say where).
    pub complete: bool,
    pub directories_read: usize,
    /// Files changed back, removed or moved aside.
    pub neutralised: usize,
}

/// Remove the placeholders of every run that has finished with this
/// workspace, if no other run is using it. Called by the supervisor on every
/// exit path (normal, signal, error).
pub fn cleanup(protection: &Protection) -> AfterRun {
    let mut after = AfterRun::default();
    let Some(placer) = &protection.placer else {
        return after;
    };
    let ws = placer.dir_path(0);
    for copy in &protection.git {
        let shown = copy.host.strip_prefix(ws).unwrap_or(&copy.host);
        if let Some(line) = copy.finish(shown) {
            after.say(line);
        }
    }
    if placer.last_out() {
        for (path, err) in placer.remove_all() {
            // The user should hear about a stray entry we leave in their tree.
            after.say(format!(
                "shellcage: warning: placeholder {} not removed: {err}",
                path.display()
            ));
        }
    } else {
        tracing::debug!("another sandbox uses the workspace; leaving placeholders to it");
    }
    let (lines, patterns_done) = disable_new_matches(protection, ws);
    for line in lines {
        after.say(line);
    }
    after.complete &= patterns_done;
    if let Some(since) = protection.git_check_since {
        let (check, lines) = check_repositories(ws, since);
        for line in lines {
            after.say(line);
        }
        after.complete &= check.complete;
        after.repositories = Some(check);
    }
    after
}

/// A session's command has ended (see the `session` module): the exit step for what it
/// may have left in the workspace (what it changed in the git config copies since
/// `git_before`, merged as at a run's end; new root files matching a protected pattern;
/// repositories made or changed since `since`, the command's start). The copies and
/// placeholders are removed by [`CommandHolds::finish`] when no other run uses them.
pub fn after_command(
    protection: &Protection,
    since: (i64, i64),
    git_before: &[Option<Vec<u8>>],
) -> AfterRun {
    let mut after = AfterRun::default();
    let Some(placer) = &protection.placer else {
        return after;
    };
    let ws = placer.dir_path(0);
    for (i, copy) in protection.git.iter().enumerate() {
        let shown = copy.host.strip_prefix(ws).unwrap_or(&copy.host);
        let prev = git_before.get(i).and_then(|p| p.as_deref());
        if let Some(line) = copy.merge_command(shown, prev) {
            after.say(line);
        }
    }
    let (lines, patterns_done) = disable_new_matches(protection, ws);
    for line in lines {
        after.say(line);
    }
    after.complete &= patterns_done;
    if protection.git_check_since.is_some() {
        let (check, lines) = check_repositories(ws, since);
        for line in lines {
            after.say(line);
        }
        after.complete &= check.complete;
        after.repositories = Some(check);
    }
    after
}

/// The exit step for repositories the run made or changed anywhere in the
/// workspace (issue 8, item 1): one walk of the whole tree (no depth or count
/// limit, no directory skipped) finds every directory git would take as a
/// repository (and lookalikes); what in them is newer than the run's start
/// (by ctime, which the sandbox cannot set) is neutralised: config keys that
/// run programs or read files removed, new hooks and `commondir`s disabled,
/// `.git` links leaving the workspace disabled (see [`crate::git::neutralise`]).
/// The workspace's own `.git` is skipped: its config, hooks, `commondir` and
/// `config.worktree` were held for the whole run (what changed there is the
/// merge-back's), and so are this or a concurrent run's placeholders.
/// Returns what was done and the lines for stderr.
pub fn check_repositories(ws: &Path, since: (i64, i64)) -> (RepoCheck, Vec<String>) {
    use crate::git::neutralise::Action;
    use crate::git::repo::Inventory;
    let mut after = match Inventory::scan(ws) {
        Ok(inv) => inv,
        Err(e) => {
            let check = RepoCheck {
                complete: false,
                directories_read: 0,
                neutralised: 0,
            };
            return (
                check,
                vec![format!(
                    "shellcage: warning: git: could not check {} for repositories the command made: {e} (hint: do not run git there before checking it)",
                    ws.display()
                )],
            );
        }
    };
    // Not judged at all (a stamp from just before the run would look new).
    let own = after.root.join(".git");
    after.git_dirs.remove(&own);
    after.links.retain(|path, link| {
        let ours = link.snap.stamp.is_symlink()
            && link.snap.text.as_deref() == Some(LINK_TARGET.as_bytes());
        *path != own && !ours
    });
    let before = after.before_run(since);
    let report = crate::git::neutralise::neutralise(&before, &after);
    tracing::debug!(
        dirs = after.dirs_read,
        actions = report.actions.len(),
        "repositories checked"
    );
    let failed = report
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Failed { .. }))
        .count();
    let check = RepoCheck {
        complete: failed == 0 && report.unreadable.is_empty(),
        directories_read: after.dirs_read,
        neutralised: report.actions.len() - failed,
    };
    (check, report.lines(&after.root))
}

#[cfg(test)]
mod tests;

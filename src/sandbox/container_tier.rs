//! The container tier's own pieces: no namespaces, so the filesystem view is a
//! Landlock allowlist alone, `$HOME` is a fresh per-run directory, and the
//! supervisor (a child subreaper) kills every descendant at the end.
//!
//! Landlock can only allow rights beneath a path, never carve a subpath out of
//! an allowed tree. So a secret the profile hides (`/etc/shadow`,
//! `~/.cargo/credentials`) is kept out by *not granting its parent*: a
//! read-only tree that holds a hidden path is replaced by rules for each of its
//! entries except the hidden ones ([`allowlist`]). This works for read-only
//! trees (their entries are fixed at launch; files created there later are not
//! readable). It cannot work for writable trees (a rule per entry would forbid
//! creating files), so a hidden path that exists inside a writable tree is a
//! refusal ([`ContainerTierError::SecretInWritableTree`]).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use crate::policy::{Access, HideRule, Policy};
use crate::policy::{pattern_covers, wildcard_match};

#[derive(Debug, thiserror::Error)]
pub enum ContainerTierError {
    #[error(
        "cannot enforce 'secrets hidden' in the container tier: {secret} lies inside the writable tree {tree}, and Landlock cannot hide a path inside a granted tree (hint: choose a workspace that does not contain it, or run where user namespaces work; see 'shellcage doctor')"
    )]
    SecretInWritableTree { secret: PathBuf, tree: PathBuf },
    #[error("cannot create the per-run home directory in {}: {source}", dir.display())]
    RunDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The Landlock allowlist of the container tier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    /// Directories whose entries are granted one by one: listing them is
    /// allowed (names only), reading what is not granted is not.
    pub list: Vec<PathBuf>,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    /// Hidden paths that exist and were left out of the allowlist.
    pub hidden: Vec<PathBuf>,
}

/// Canonical parent + last component (which may hold `*`) of each hide rule
/// whose parent exists; the others hide nothing on this host.
fn canonical_hides(hide: &[HideRule]) -> Vec<PathBuf> {
    hide.iter()
        .filter_map(|h| {
            let parent = std::fs::canonicalize(h.pattern.parent()?).ok()?;
            Some(parent.join(h.pattern.file_name()?))
        })
        .collect()
}

/// Does a hidden pattern match an existing entry strictly beneath `dir` (or
/// `dir` itself)?
fn holds_hidden(dir: &Path, hides: &[PathBuf]) -> Option<PathBuf> {
    for h in hides {
        let (Some(parent), Some(name)) = (h.parent(), h.file_name()) else {
            continue;
        };
        if !parent.starts_with(dir) && !pattern_covers(h, dir) {
            continue;
        }
        let name = name.as_encoded_bytes();
        let Ok(rd) = std::fs::read_dir(parent) else {
            continue;
        };
        if let Some(e) = rd
            .filter_map(Result::ok)
            .find(|e| wildcard_match(name, e.file_name().as_encoded_bytes()))
        {
            return Some(e.path());
        }
    }
    None
}

/// Grant `root` read-only, or, when a hidden path lies beneath it, each of its
/// entries except the hidden ones (recursively). Symlinked entries get no rule:
/// Landlock checks the object a path resolves to, so they work exactly when
/// their target is granted.
fn expand_read(root: &Path, hides: &[PathBuf], out: &mut Allowlist, depth: usize) {
    let inside = hides
        .iter()
        .any(|h| h.parent().is_some_and(|p| p.starts_with(root)));
    if !inside {
        out.read.push(root.to_path_buf());
        return;
    }
    // Hide patterns have at most a few components below a granted root; the
    // bound only guards against a pathological profile.
    if depth > 8 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(root) else {
        // Unreadable: grant nothing (narrower, never wider).
        return;
    };
    out.list.push(root.to_path_buf());
    for entry in rd.filter_map(Result::ok) {
        let path = entry.path();
        if hides.iter().any(|h| pattern_covers(h, &path)) {
            out.hidden.push(path);
            continue;
        }
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_symlink() {
            continue;
        }
        if ft.is_dir() {
            expand_read(&path, hides, out, depth + 1);
        } else {
            out.read.push(path);
        }
    }
}

/// The container tier's allowlist for `policy`: the profile's paths, the
/// workspace, `/tmp` (shared with the host) and the per-run directory.
pub fn allowlist(policy: &Policy, run_dir: &Path) -> Result<Allowlist, ContainerTierError> {
    let hides = canonical_hides(&policy.hide);
    let mut read_roots = Vec::new();
    let mut write_roots = vec![PathBuf::from("/tmp"), run_dir.to_path_buf()];
    let rules = policy
        .paths
        .iter()
        .map(|r| (&r.path, r.access))
        .chain(std::iter::once((
            &policy.workspace,
            policy.workspace_access,
        )));
    for (path, access) in rules {
        let Ok(canon) = std::fs::canonicalize(path) else {
            continue;
        };
        match access {
            Access::Read => read_roots.push(canon),
            Access::Write => write_roots.push(canon),
        }
    }
    for tree in &write_roots {
        if let Some(secret) = holds_hidden(tree, &hides) {
            return Err(ContainerTierError::SecretInWritableTree {
                secret,
                tree: tree.clone(),
            });
        }
    }
    let mut out = Allowlist {
        write: write_roots,
        ..Allowlist::default()
    };
    for root in &read_roots {
        expand_read(root, &hides, &mut out, 0);
    }
    out.read.sort();
    out.read.dedup();
    out.list.sort();
    out.list.dedup();
    Ok(out)
}

/// A fresh directory per run: `home/` becomes `$HOME`, `tmp/` `$TMPDIR`.
/// Created by the supervisor (mode 0700) and removed after the run.
#[derive(Debug)]
pub struct RunDir {
    pub root: PathBuf,
    pub home: PathBuf,
    pub tmp: PathBuf,
}

impl RunDir {
    /// Create it under the system temp dir. Toolchains the profile shows from
    /// the real home (`~/.cargo`, `~/.rustup` …) get a symlink at the same
    /// relative place, so `$HOME/.cargo` still resolves (and Landlock checks
    /// the real path, which is granted read-only).
    pub fn create(policy: &Policy) -> Result<RunDir, ContainerTierError> {
        let base = std::env::temp_dir();
        let err = |source| ContainerTierError::RunDir {
            dir: base.clone(),
            source,
        };
        let root = nix::unistd::mkdtemp(&base.join("shellcage-run-XXXXXX"))
            .map_err(|e| err(std::io::Error::from(e)))?;
        let run = RunDir {
            home: root.join("home"),
            tmp: root.join("tmp"),
            root,
        };
        let mut b = std::fs::DirBuilder::new();
        b.mode(0o700);
        b.create(&run.home).map_err(err)?;
        b.create(&run.tmp).map_err(err)?;
        let mut links: Vec<&Path> = policy
            .paths
            .iter()
            .filter(|r| r.path != policy.home && r.path.exists())
            .filter_map(|r| r.path.strip_prefix(&policy.home).ok())
            .collect();
        links.sort();
        'each: for rel in links {
            let mut at = run.home.clone();
            let comps: Vec<_> = rel.components().collect();
            for (i, c) in comps.iter().enumerate() {
                at.push(c);
                let meta = std::fs::symlink_metadata(&at);
                if i + 1 == comps.len() {
                    if meta.is_err() {
                        let _ = std::os::unix::fs::symlink(policy.home.join(rel), &at);
                    }
                } else {
                    match meta {
                        // Inside an earlier symlink: creating here would write
                        // into the real home.
                        Ok(m) if !m.is_dir() => continue 'each,
                        Ok(_) => {}
                        Err(_) => {
                            if b.create(&at).is_err() {
                                continue 'each;
                            }
                        }
                    }
                }
            }
        }
        Ok(run)
    }

    /// Remove the directory and everything the command left in it. Directories
    /// the command made unwritable are made writable first.
    pub fn remove(&self) {
        if std::fs::remove_dir_all(&self.root).is_ok() {
            return;
        }
        fn unlock(dir: &Path) {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.filter_map(Result::ok) {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        unlock(&e.path());
                    }
                }
            }
        }
        unlock(&self.root);
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            tracing::debug!(%e, dir = %self.root.display(), "cannot remove the per-run directory");
        }
    }
}

/// Make the supervisor a child subreaper: descendants orphaned by the command
/// (`setsid -f`, double forks) are reparented to it instead of to the host's
/// init, so [`kill_descendants`] can find them.
pub fn become_subreaper() -> Result<(), crate::sys::SysError> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| crate::sys::SysError::new("prctl(PR_SET_CHILD_SUBREAPER)", "supervisor", e))
}

fn children() -> Vec<Pid> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.filter_map(Result::ok) {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .map(Pid::from_raw),
            );
        }
    }
    out
}

/// Kill and reap every descendant of the supervisor. Each killed process's
/// own children are reparented to us (we are a subreaper), so repeating until
/// no child is left reaches the whole tree, however it forked.
pub fn kill_descendants() -> usize {
    let mut killed = 0;
    for _round in 0..10_000 {
        let kids = children();
        if kids.is_empty() {
            break;
        }
        for pid in kids {
            if kill(pid, Signal::SIGKILL).is_ok() {
                killed += 1;
            }
            let _ = waitpid(pid, Some(WaitPidFlag::__WALL));
        }
    }
    // Zombies that were reparented and already dead.
    while let Ok(s) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if s == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hide(p: &Path) -> HideRule {
        HideRule {
            pattern: p.to_path_buf(),
        }
    }

    #[test]
    fn read_tree_with_a_secret_is_granted_entry_by_entry() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        std::fs::create_dir_all(root.join("ssh")).unwrap();
        std::fs::write(root.join("passwd"), "x").unwrap();
        std::fs::write(root.join("shadow"), "x").unwrap();
        std::fs::write(root.join("ssh/host_key"), "x").unwrap();
        std::fs::write(root.join("ssh/config"), "x").unwrap();
        std::fs::create_dir(root.join("other")).unwrap();
        std::os::unix::fs::symlink(root.join("shadow"), root.join("link")).unwrap();
        let hides = canonical_hides(&[hide(&root.join("shadow")), hide(&root.join("ssh/*key*"))]);
        let mut out = Allowlist::default();
        expand_read(&root, &hides, &mut out, 0);
        out.read.sort();
        assert_eq!(
            out.read,
            vec![
                root.join("other"),
                root.join("passwd"),
                root.join("ssh/config")
            ]
        );
        assert_eq!(out.list, vec![root.clone(), root.join("ssh")]);
        assert!(out.hidden.contains(&root.join("shadow")));
        assert!(out.hidden.contains(&root.join("ssh/host_key")));
    }

    #[test]
    fn tree_without_secrets_is_one_rule() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let mut out = Allowlist::default();
        expand_read(
            &root,
            &canonical_hides(&[hide(Path::new("/etc/shadow"))]),
            &mut out,
            0,
        );
        assert_eq!(out.read, vec![root]);
        assert!(out.list.is_empty());
    }

    #[test]
    fn existing_secret_in_a_writable_tree_is_found() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        std::fs::create_dir(root.join(".ssh")).unwrap();
        let hides = canonical_hides(&[hide(&root.join(".ssh")), hide(&root.join(".aws"))]);
        assert_eq!(holds_hidden(&root, &hides), Some(root.join(".ssh")));
        let hides = canonical_hides(&[hide(&root.join(".aws"))]);
        assert_eq!(holds_hidden(&root, &hides), None);
    }
}

//! A private `.git/config` for the run (issue 13, item 2).
//!
//! git inside must be able to write its configuration (`git config`, `git
//! remote add`, `git submodule add`, `git push -u` …) while the host's file
//! stays protected. So the sandbox gets a private copy, next to the real one
//! in the same git directory (`config.shellcage.<pid>`, so relative
//! `include.path`s resolve the same), and inside the sandbox `.git/config` is
//! a symlink to it, mounted over the host's file: git's lock-and-rename
//! follows the link and replaces the copy; the mounted name itself cannot be
//! removed, renamed or replaced. At exit the copy is merged into the host
//! file key by key ([`crate::git::merge`]): keys that only name things
//! (`user.*`, `remote.*.url`, `branch.*.merge` …) are applied, keys that make
//! git run a program or read another file are refused and named on stderr;
//! a key the host changed meanwhile keeps the host's value.
//!
//! The copy also names the run's placeholders in `core.excludesFile` (a file
//! of the sandbox's own read-only root), so git inside never sees them as new
//! files (`git add -A` commits none of them).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::place::Placer;
use crate::git::config::{Config, MAX_CONFIG_SIZE};
use crate::git::merge::merge_into_file;
use crate::git::policy::{Context, Policy as KeyPolicy};

/// Where the exclude file for the placeholders is, inside the sandbox (in its
/// own root tmpfs, read-only after setup; never on the host).
pub const EXCLUDE_FILE: &str = "/run/shellcage/git/exclude";

/// A private copy of one git config file for the run.
#[derive(Debug)]
pub struct PrivateConfig {
    /// The host's file (held for the run by the symlink mount).
    pub host: PathBuf,
    /// The copy the sandbox writes, in the same directory.
    pub private: PathBuf,
    /// What the copy held at the start (the merge's base).
    base: Vec<u8>,
    /// How much of `base` is the host file's text (the rest was appended).
    host_len: usize,
    policy: KeyPolicy,
    git_dir: PathBuf,
    workspace: PathBuf,
    /// A session's copy: made for each command that finds none and removed by the last
    /// one out ([`for_command`](Self::for_command)); each command merges its own changes.
    session: bool,
}

/// The name of this run's copy of `config`.
fn private_name() -> String {
    format!("config.shellcage.{}", std::process::id())
}

/// Make a private copy of `git/config` (`git` an open git directory of the
/// placer), with `extra` appended. `None` when the host file is not a
/// regular file git and this reader both read (too large, a syntax error):
/// then it is only held read-only, as before.
pub fn private_copy(
    placer: &Placer,
    git: usize,
    extra: &[u8],
    policy: KeyPolicy,
) -> Result<Option<PrivateConfig>, std::io::Error> {
    let dir = placer.dir_path(git).to_path_buf();
    let host = dir.join("config");
    let Some(text) = read_config(placer, git)? else {
        return Ok(None);
    };
    if Config::parse(&text).is_err() {
        tracing::debug!(path = %host.display(), "config not readable as git config; held read-only");
        return Ok(None);
    }
    let mut base = text;
    if !base.is_empty() && !base.ends_with(b"\n") {
        base.push(b'\n');
    }
    let host_len = base.len();
    base.extend_from_slice(extra);
    let name = private_name();
    let fd = placer.fd_of(git);
    let create = || {
        nix::fcntl::openat(
            fd,
            name.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
    };
    let file = match create() {
        // Left by a run of the same pid that was killed: ours to replace.
        Err(Errno::EEXIST) => {
            let _ =
                nix::unistd::unlinkat(fd, name.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
            create()
        }
        r => r,
    }
    .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    std::fs::File::from(file).write_all(&base)?;
    Ok(Some(PrivateConfig {
        host,
        private: dir.join(name),
        base,
        host_len,
        policy,
        git_dir: dir,
        workspace: placer.dir_path(0).to_path_buf(),
        session: false,
    }))
}

/// The host's `config` in the open git directory `git`, if it is a regular
/// file of at most [`MAX_CONFIG_SIZE`] bytes.
fn read_config(placer: &Placer, git: usize) -> Result<Option<Vec<u8>>, std::io::Error> {
    read_regular_at(placer, git, "config")
}

/// The file `name` in the open directory `dir`, if it is a regular file of at most
/// [`MAX_CONFIG_SIZE`] bytes (a link is not followed, a FIFO not waited on).
fn read_regular_at(
    placer: &Placer,
    dir: usize,
    name: &str,
) -> Result<Option<Vec<u8>>, std::io::Error> {
    let fd = match nix::fcntl::openat(
        placer.fd_of(dir),
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ELOOP) => return Ok(None),
        Err(e) => return Err(std::io::Error::from_raw_os_error(e as i32)),
    };
    let f = std::fs::File::from(fd);
    let meta = f.metadata()?;
    if !meta.is_file() || meta.len() > MAX_CONFIG_SIZE as u64 {
        return Ok(None);
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    use std::io::Read;
    f.take(MAX_CONFIG_SIZE as u64 + 1).read_to_end(&mut buf)?;
    Ok((buf.len() <= MAX_CONFIG_SIZE).then_some(buf))
}

/// The lines appended to the root repository's copy: the exclude file.
pub fn exclude_injection() -> Vec<u8> {
    format!(
        "# shellcage: this run's placeholders for missing protected paths are not files of the project\n[core]\n\texcludesFile = {EXCLUDE_FILE}\n"
    )
    .into_bytes()
}

/// The exclude file's text: one anchored pattern per placeholder outside
/// `.git` (workspace-relative), special characters escaped.
pub fn exclude_patterns<'a>(ws: &Path, placeholders: impl Iterator<Item = &'a Path>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in placeholders {
        let Ok(rel) = p.strip_prefix(ws) else {
            continue;
        };
        if rel.starts_with(".git") {
            continue;
        }
        out.push(b'/');
        for &b in rel.as_os_str().as_bytes() {
            if matches!(b, b'*' | b'?' | b'[' | b'\\' | b'!' | b'#' | b' ') {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'\n');
    }
    out
}

/// The patterns git would read through `core.excludesFile` without the copy's
/// own value, which replaces it (a repository's key wins over the user's):
/// the repository's value, else the user's global one, else git's default
/// `$XDG_CONFIG_HOME/git/ignore`. Carried into the exclude file, so the
/// user's own ignores still apply inside. Includes are not followed; a file
/// that is missing, not regular or over 1 MiB contributes nothing.
fn user_excludes(repo_text: &[u8]) -> Vec<u8> {
    const KEY: &[u8] = b"core.excludesfile";
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let value = crate::git::last_value(repo_text, KEY).or_else(|| crate::git::global_value(KEY));
    let path = match value {
        Some(v) => {
            let v = Path::new(std::ffi::OsStr::from_bytes(&v));
            match (v.strip_prefix("~/"), &home) {
                (Ok(rest), Some(h)) => h.join(rest),
                _ => v.to_path_buf(),
            }
        }
        None => match crate::git::xdg_config_home() {
            Some(x) => x.join("git/ignore"),
            None => return Vec::new(),
        },
    };
    if !path.is_absolute() {
        return Vec::new();
    }
    let mut text = crate::git::files::read_regular(&path, MAX_CONFIG_SIZE)
        .ok()
        .flatten()
        .unwrap_or_default();
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    text
}

impl PrivateConfig {
    /// The copy's file name in its git directory.
    fn name(&self) -> String {
        self.private
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// From now on a session's: between its commands the copy is not in the host's tree.
    pub fn for_session(&mut self) {
        self.session = true;
    }

    /// The copy's git directory, opened in `placer` name by name from the workspace,
    /// following no link.
    pub fn open_dir(&self, placer: &mut Placer) -> Result<usize, std::io::Error> {
        let rel = self
            .git_dir
            .strip_prefix(&self.workspace)
            .map_err(|_| std::io::Error::other("the git directory is outside the workspace"))?;
        let mut at = 0;
        for c in rel.components() {
            match c {
                std::path::Component::Normal(n) => at = placer.open_dir(at, n)?,
                _ => return Err(std::io::Error::other("not a plain relative path")),
            }
        }
        Ok(at)
    }

    /// A session's command is about to start, holding the workspace lock (shared) in
    /// `placer`: what the copy holds now, its merge's starting point. When no other
    /// command of the session has it (between commands it is not in the host's tree),
    /// it is made again from the host file as it is now, so a change made on the host
    /// between commands is what the command sees. `Err` (the host file is not a config
    /// git and this reader both read, or the copy is not a regular file): the command
    /// runs cold.
    pub fn for_command(&self, placer: &mut Placer) -> Result<Vec<u8>, std::io::Error> {
        let dir = self.open_dir(placer)?;
        let name = self.name();
        if let Some(text) = read_regular_at(placer, dir, &name)? {
            return Ok(text);
        }
        if nix::sys::stat::fstatat(
            placer.fd_of(dir),
            name.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .is_ok()
        {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file of at most {MAX_CONFIG_SIZE} bytes",
                self.private.display()
            )));
        }
        let Some(mut text) = read_config(placer, dir)? else {
            return Err(std::io::Error::other(format!(
                "{} is no longer a regular file",
                self.host.display()
            )));
        };
        if Config::parse(&text).is_err() {
            return Err(std::io::Error::other(format!(
                "{} no longer reads as git config",
                self.host.display()
            )));
        }
        if !text.is_empty() && !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        text.extend_from_slice(&self.base[self.host_len..]);
        let fd = nix::fcntl::openat(
            placer.fd_of(dir),
            name.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
        std::fs::File::from(fd).write_all(&text)?;
        Ok(text)
    }

    /// Remove a session's copy (its last command has ended, or its template is built),
    /// through `placer` (holding the workspace lock, exclusive).
    pub fn remove_copy(&self, placer: &mut Placer) -> Result<(), std::io::Error> {
        let dir = self.open_dir(placer)?;
        match nix::unistd::unlinkat(
            placer.fd_of(dir),
            self.name().as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(std::io::Error::from_raw_os_error(e as i32)),
        }
    }

    /// The exclude file for this (root) config's copy: the user's own
    /// excludes (see [`user_excludes`]), then one pattern per placeholder.
    pub fn exclude_file<'a>(
        &self,
        ws: &Path,
        placeholders: impl Iterator<Item = &'a Path>,
    ) -> Vec<u8> {
        let mut out = user_excludes(&self.base[..self.host_len]);
        out.extend(exclude_patterns(ws, placeholders));
        out
    }

    /// A session's command has ended: merge what it changed in the copy since `prev`
    /// (see [`crate::git::merge::merge_since`]); the copy stays. One line, names only.
    pub fn merge_command(&self, display: &Path, prev: Option<&[u8]>) -> Option<String> {
        let prev = prev.unwrap_or(&self.base);
        let now = crate::git::files::read_regular(&self.private, MAX_CONFIG_SIZE);
        if now.as_ref().is_ok_and(|t| t.as_deref() == Some(prev)) {
            return None;
        }
        let ctx = Context {
            existing_remotes: Vec::new(),
            git_dir: Some(self.git_dir.clone()),
            workspace: Some(self.workspace.clone()),
        };
        match crate::git::merge::merge_command_into_file(
            &self.host,
            &self.base,
            prev,
            &self.private,
            &self.policy,
            &ctx,
        ) {
            Ok(m) => m.summary(&display.display().to_string()),
            Err(e) => Some(format!(
                "shellcage: {}: nothing merged: {e}",
                display.display()
            )),
        }
    }

    /// Merge the sandbox's copy into the host file, remove the copy, and say
    /// what happened (one line, names only). Called once, after the run. A session's
    /// copy is only removed (each command merged its own changes when it ended).
    pub fn finish(&self, display: &Path) -> Option<String> {
        if self.session {
            if let Err(e) = std::fs::remove_file(&self.private) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    crate::say!(
                        "shellcage: warning: {} not removed: {e}",
                        self.private.display()
                    );
                }
            }
            return None;
        }
        let ctx = Context {
            existing_remotes: Vec::new(),
            git_dir: Some(self.git_dir.clone()),
            workspace: Some(self.workspace.clone()),
        };
        // Unchanged (the common case): no lock taken on the host file at all.
        let unchanged = crate::git::files::read_regular(&self.private, MAX_CONFIG_SIZE)
            .is_ok_and(|t| t.as_deref() == Some(&self.base[..]));
        let result = if unchanged {
            Ok(None)
        } else {
            merge_into_file(&self.host, &self.base, &self.private, &self.policy, &ctx).map(Some)
        };
        let line = match result {
            Ok(None) => None,
            Ok(Some(m)) => m.summary(&display.display().to_string()),
            Err(e) => Some(format!(
                "shellcage: {}: nothing merged: {e}",
                display.display()
            )),
        };
        if let Err(e) = std::fs::remove_file(&self.private) {
            if e.kind() != std::io::ErrorKind::NotFound {
                crate::say!(
                    "shellcage: warning: {} not removed: {e}",
                    self.private.display()
                );
            }
        }
        line
    }
}

//! The scan for `.env` / `.env.*` files in the workspace, which are masked.
//!
//! Kept on its own: the scan's limits and what they mean for the run are
//! decided here, and [`scan`] is the only entry point the mount plan uses (a
//! session index can call it again for a subtree).
//!
//! The scan fails closed: it never leaves a file visible because it stopped.
//! - **Bounds refuse.** More than `max_dirs` directories or a directory deeper
//!   than `max_depth` is an error naming the directory and the fix (the run
//!   exits 125), never a silently shorter scan. A command that fills the
//!   workspace with directories makes the next run refuse, not miss a file.
//! - **Unreadable directories are masked whole.** A directory the caller cannot
//!   list (`chmod 000` by a previous command, which the next one could undo) is
//!   hidden behind an empty read-only directory for the run and listed in
//!   [`EnvScan::unreadable`]. Masking rather than refusing: its content is
//!   unreachable either way, and a refusal would let one `chmod` stop every later
//!   run. Any other error reading a directory refuses.
//! - **Links named `.env*` are masked** (the link itself, without following it;
//!   the file it leads to as well when that is in the workspace, see
//!   `describe::finish`).
//! - Directories are opened relative to their parent with `O_NOFOLLOW`: a
//!   directory swapped for a symlink during the scan is an error, not a walk
//!   outside the workspace.

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use serde::Serialize;

use crate::policy::EnvFileScan;

/// What the scan for `.env` files found. It always covers the whole workspace
/// (less `skip_dirs`): there is no partial result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EnvScan {
    pub dirs_read: usize,
    /// `.env` / `.env.*` files and symbolic links with such names, masked.
    pub hidden: Vec<PathBuf>,
    /// Files in the workspace that a hidden link leads to, masked too.
    pub link_targets: Vec<PathBuf>,
    /// Directories the scan could not read, masked whole.
    pub unreadable: Vec<PathBuf>,
    /// Of `hidden`, the symbolic links (their targets are looked at by the plan).
    #[serde(skip)]
    pub links: Vec<PathBuf>,
}

/// Why the scan refused: the run does not start.
#[derive(Debug, thiserror::Error)]
pub enum EnvScanError {
    #[error(
        "the .env scan of {ws} stopped at {dir}: more than {max} directories (filesystem.env_files.max_dirs){largest} (hint: add the name of a large directory that holds no secrets to filesystem.env_files.skip_dirs, raise max_dirs, or set filesystem.env_files.enabled = false)"
    )]
    TooMany {
        ws: PathBuf,
        dir: PathBuf,
        max: usize,
        largest: String,
    },
    #[error(
        "the .env scan of {ws} stopped at {dir}: deeper than {max} levels (filesystem.env_files.max_depth) (hint: add the directory's name to filesystem.env_files.skip_dirs, or raise max_depth)"
    )]
    TooDeep {
        ws: PathBuf,
        dir: PathBuf,
        max: usize,
    },
    #[error(
        "the .env scan cannot read {dir}: {err} (hint: a .env file in it would stay visible; fix or remove the directory, or add its name to filesystem.env_files.skip_dirs)"
    )]
    Read { dir: PathBuf, err: Errno },
}

/// Scan the workspace `ws` as `cfg` bounds it.
pub fn scan(ws: &Path, cfg: &EnvFileScan) -> Result<EnvScan, EnvScanError> {
    scan_inner(ws, cfg, None)
}

/// [`scan`], calling `on_dir` with each directory before it is listed (a session's
/// index watches it there, so that nothing made in it after the listing is missed).
pub fn scan_watched(
    ws: &Path,
    cfg: &EnvFileScan,
    on_dir: &mut dyn FnMut(&Path),
) -> Result<EnvScan, EnvScanError> {
    scan_inner(ws, cfg, Some(on_dir))
}

fn scan_inner<'a>(
    ws: &'a Path,
    cfg: &'a EnvFileScan,
    on_dir: Option<&'a mut dyn FnMut(&Path)>,
) -> Result<EnvScan, EnvScanError> {
    let mut w = Walk {
        ws,
        cfg,
        out: EnvScan::default(),
        per_top: Vec::new(),
        on_dir,
    };
    let root = Dir::open(
        ws,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    );
    match root {
        Ok(dir) => w.dir(dir, ws, 0, None)?,
        Err(Errno::EACCES | Errno::EPERM) => w.out.unreadable.push(ws.to_path_buf()),
        Err(err) => {
            return Err(EnvScanError::Read {
                dir: ws.to_path_buf(),
                err,
            });
        }
    }
    Ok(w.out)
}

pub fn is_env_file(name: &[u8], allow: &[String]) -> bool {
    (name == b".env" || name.starts_with(b".env.")) && !allow.iter().any(|a| a.as_bytes() == name)
}

struct Walk<'a> {
    ws: &'a Path,
    cfg: &'a EnvFileScan,
    out: EnvScan,
    /// Directories read below each top-level directory, for naming the largest
    /// when `max_dirs` is hit.
    per_top: Vec<(std::ffi::OsString, usize)>,
    on_dir: Option<&'a mut dyn FnMut(&Path)>,
}

impl Walk<'_> {
    /// Read `dir` (open, at `path`, `level` below the root; `top` is the index
    /// in `per_top` of the top-level directory holding it) and everything below.
    /// Uses d_type (fstatat only where the filesystem gives none).
    fn dir(
        &mut self,
        mut dir: Dir,
        path: &Path,
        level: usize,
        top: Option<usize>,
    ) -> Result<(), EnvScanError> {
        if self.out.dirs_read >= self.cfg.max_dirs {
            return Err(self.too_many(path));
        }
        self.out.dirs_read += 1;
        if let Some(f) = self.on_dir.as_mut() {
            f(path);
        }
        if let Some(t) = top {
            self.per_top[t].1 += 1;
        }
        // Listed first, then looked at: fstatat/openat borrow the directory.
        let mut listed = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|err| EnvScanError::Read {
                dir: path.to_path_buf(),
                err,
            })?;
            let name = entry.file_name().to_owned();
            if name.as_bytes() != b"." && name.as_bytes() != b".." {
                listed.push((name, entry.file_type()));
            }
        }
        let fd = dir.as_fd();
        let mut subdirs = Vec::new();
        for (cname, kind) in listed {
            let kind = match kind {
                Some(k) => k,
                None => match nix::sys::stat::fstatat(
                    fd,
                    cname.as_c_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                ) {
                    Ok(st) => type_of(st.st_mode),
                    // Gone since the listing: nothing left to hide.
                    Err(Errno::ENOENT) => continue,
                    Err(err) => {
                        return Err(EnvScanError::Read {
                            dir: path.join(std::ffi::OsStr::from_bytes(cname.as_bytes())),
                            err,
                        });
                    }
                },
            };
            let name = std::ffi::OsStr::from_bytes(cname.as_bytes()).to_os_string();
            match kind {
                Type::File | Type::Symlink
                    if is_env_file(name.as_bytes(), &self.cfg.allow_names) =>
                {
                    let p = path.join(&name);
                    if kind == Type::Symlink {
                        self.out.links.push(p.clone());
                    }
                    self.out.hidden.push(p);
                }
                Type::Directory
                    if !self
                        .cfg
                        .skip_dirs
                        .iter()
                        .any(|s| s.as_bytes() == name.as_bytes()) =>
                {
                    subdirs.push(name);
                }
                _ => {}
            }
        }
        for name in subdirs {
            let sub = path.join(&name);
            if level >= self.cfg.max_depth {
                return Err(EnvScanError::TooDeep {
                    ws: self.ws.to_path_buf(),
                    dir: sub,
                    max: self.cfg.max_depth,
                });
            }
            let top = top.or_else(|| {
                self.per_top.push((name.clone(), 0));
                Some(self.per_top.len() - 1)
            });
            match Dir::openat(
                fd,
                name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(d) => self.dir(d, &sub, level + 1, top)?,
                Err(Errno::EACCES | Errno::EPERM) => self.out.unreadable.push(sub),
                // Removed since the listing: nothing left to hide.
                Err(Errno::ENOENT) => {}
                Err(err) => return Err(EnvScanError::Read { dir: sub, err }),
            }
        }
        Ok(())
    }

    fn too_many(&self, at: &Path) -> EnvScanError {
        let largest = self
            .per_top
            .iter()
            .max_by_key(|(_, n)| *n)
            .map(|(name, n)| format!("; the largest part: {} ({n})", self.ws.join(name).display()))
            .unwrap_or_default();
        EnvScanError::TooMany {
            ws: self.ws.to_path_buf(),
            dir: at.to_path_buf(),
            max: self.cfg.max_dirs,
            largest,
        }
    }
}

fn type_of(mode: libc::mode_t) -> Type {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => Type::Directory,
        libc::S_IFLNK => Type::Symlink,
        libc::S_IFREG => Type::File,
        libc::S_IFIFO => Type::Fifo,
        libc::S_IFSOCK => Type::Socket,
        libc::S_IFCHR => Type::CharacterDevice,
        _ => Type::BlockDevice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn cfg(max_depth: usize, max_dirs: usize) -> EnvFileScan {
        EnvFileScan {
            enabled: true,
            max_depth,
            skip_dirs: vec!["node_modules".into()],
            allow_names: vec![".env.example".into()],
            max_dirs,
        }
    }

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let ws = fs::canonicalize(t.path()).unwrap();
        for d in ["a/b/c/d/e/f", "node_modules/x", "z"] {
            fs::create_dir_all(ws.join(d)).unwrap();
        }
        for f in [
            ".env",
            "a/b/c/d/e/f/.env.local",
            "node_modules/x/.env",
            ".env.example",
        ] {
            fs::write(ws.join(f), "s").unwrap();
        }
        (t, ws)
    }

    fn sorted(mut v: Vec<PathBuf>, ws: &Path) -> Vec<String> {
        v.sort();
        v.iter()
            .map(|p| p.strip_prefix(ws).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn env_file_names() {
        let allow = vec![".env.example".to_string()];
        assert!(is_env_file(b".env", &allow));
        assert!(is_env_file(b".env.local", &allow));
        assert!(!is_env_file(b".env.example", &allow));
        assert!(!is_env_file(b".environment", &allow));
        assert!(!is_env_file(b"x.env", &allow));
    }

    #[test]
    fn whole_tree_less_skipped_dirs() {
        let (_t, ws) = tree();
        let s = scan(&ws, &cfg(64, 100)).unwrap();
        assert_eq!(sorted(s.hidden, &ws), [".env", "a/b/c/d/e/f/.env.local"]);
        // root, a … f, z
        assert_eq!(s.dirs_read, 8);
        assert!(s.unreadable.is_empty() && s.links.is_empty());
    }

    #[test]
    fn bounds_refuse_and_name_the_directory() {
        let (_t, ws) = tree();
        let e = scan(&ws, &cfg(3, 100)).unwrap_err().to_string();
        assert!(
            e.contains(&format!("stopped at {}", ws.join("a/b/c/d").display())),
            "{e}"
        );
        assert!(e.contains("filesystem.env_files.max_depth"), "{e}");
        let e = scan(&ws, &cfg(64, 4)).unwrap_err().to_string();
        assert!(e.contains("more than 4 directories"), "{e}");
        assert!(
            e.contains(&format!("the largest part: {}", ws.join("a").display())),
            "{e}"
        );
        assert!(e.contains("skip_dirs"), "{e}");
    }

    #[test]
    fn links_named_env_are_hidden_not_followed() {
        let (_t, ws) = tree();
        fs::create_dir(ws.join("cfg")).unwrap();
        fs::write(ws.join("cfg/production"), "s").unwrap();
        std::os::unix::fs::symlink("../cfg/production", ws.join("z/.env")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", ws.join("z/.env.dangling")).unwrap();
        // A link to a directory is not descended into.
        std::os::unix::fs::symlink(ws.join("a"), ws.join("z/loop")).unwrap();
        let s = scan(&ws, &cfg(64, 100)).unwrap();
        assert_eq!(sorted(s.links, &ws), ["z/.env", "z/.env.dangling"]);
        assert_eq!(s.hidden.len(), 4);
        assert_eq!(s.dirs_read, 9);
    }

    #[test]
    fn unreadable_directories_are_listed() {
        if nix::unistd::geteuid().is_root() {
            // root reads any directory (CAP_DAC_READ_SEARCH): nothing to test.
            return;
        }
        let (_t, ws) = tree();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(ws.join("a/b"), fs::Permissions::from_mode(0o000)).unwrap();
        let s = scan(&ws, &cfg(64, 100));
        fs::set_permissions(ws.join("a/b"), fs::Permissions::from_mode(0o755)).unwrap();
        let s = s.unwrap();
        assert_eq!(sorted(s.unreadable, &ws), ["a/b"]);
    }
}

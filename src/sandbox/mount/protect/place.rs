//! Placeholders: what holds a missing protected name in place for a run.
//!
//! A mount needs something to mount on, so a protected name that is missing
//! gets a placeholder on the host, which the sandbox then sees through a
//! read-only mount (it cannot be written, removed, renamed or replaced).
//!
//! Most placeholders are **hard links of one dangling symlink** per run
//! ([`LINK_TARGET`], under `/proc/0`, which never exists): read through, the
//! name looks absent to every tool (ENOENT), inside the sandbox and on the
//! host; nothing can be created through it, and no file is written anywhere.
//! Only the first costs an inode; each further name is one `linkat`, and
//! removing one is one `unlinkat` (an empty directory, the old placeholder,
//! costs an inode each and its removal frees a block: ~0.1–3 ms per name on
//! ext4 with `discard`, measured). Two names need a real file, because git
//! reads it: `.git/commondir` ([`Shape::Dot`], a regular file containing
//! `.`: git dies on a missing target, and `.` names the git directory
//! itself, so nothing changes). Older versions made empty 0444 files
//! ([`Shape::Empty`]) and 0555 directories; those are adopted and removed.
//!
//! The shape is the marker: cleanup removes only an entry that is still the
//! inode this run made or adopted, and a run adopts only entries of these
//! shapes (left by a concurrent run or a SIGKILLed one).

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

use super::super::MountError;
use crate::sys::SysError;

/// Where every link placeholder points: `/proc/0` never exists (pid 0 is not
/// listed), on the host or in the sandbox's own /proc, and nobody can create
/// anything in /proc.
pub const LINK_TARGET: &str = "/proc/0/shellcage-placeholder";

/// The mode of the file placeholders; the old directory placeholders had 0555.
const FILE_MODE: u32 = 0o444;
const LEGACY_DIR_MODE: u32 = 0o555;
/// The content of a `commondir` placeholder.
const DOT: &[u8] = b".\n";

/// What a placeholder is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A symlink to [`LINK_TARGET`] (a hard link of the run's one symlink).
    Link,
    /// A regular 0444 file containing `.\n` (`.git/commondir`).
    Dot,
    /// An empty regular 0444 file (made by older versions for file-like
    /// names; adopted and removed).
    Empty,
    /// An empty 0555 directory, made by older versions (adopted and removed).
    LegacyDir,
}

impl Shape {
    /// The mount that holds it: a symlink must be mounted as itself.
    pub fn node(self) -> super::super::Node {
        use super::super::Node;
        match self {
            Shape::Link => Node::Link,
            Shape::Dot | Shape::Empty => Node::File,
            Shape::LegacyDir => Node::Dir,
        }
    }
}

impl Shape {
    /// Does the (lstat) metadata `st` still look like this shape? (Type,
    /// mode and size only: no read.)
    fn fits(self, st: &FileStat) -> bool {
        let (kind, mode) = (file_type(st), st.st_mode & 0o7777);
        match self {
            Shape::Link => kind == SFlag::S_IFLNK && st.st_size == LINK_TARGET.len() as i64,
            Shape::Dot => {
                kind == SFlag::S_IFREG && mode == FILE_MODE && st.st_size == DOT.len() as i64
            }
            Shape::Empty => kind == SFlag::S_IFREG && mode == FILE_MODE && st.st_size == 0,
            Shape::LegacyDir => kind == SFlag::S_IFDIR && mode == LEGACY_DIR_MODE,
        }
    }
}

/// A placeholder this run made or adopted: removed at exit if it is still
/// the same inode.
#[derive(Debug)]
pub struct Made {
    pub path: PathBuf,
    /// Index of its directory in [`Placer::dirs`].
    dir: usize,
    name: OsString,
    dev: u64,
    ino: u64,
    pub shape: Shape,
}

/// Makes and removes placeholders, with `*at` calls on open directories of
/// the workspace (opened once each, never through a symlink). Holds the
/// workspace's shared lock while placeholders may exist.
#[derive(Debug)]
pub struct Placer {
    /// The workspace directory, locked shared (see [`Placer::last_out`]).
    lock: Flock<OwnedFd>,
    /// Open directories below it (path, descriptor); index 0 is the
    /// workspace itself, whose descriptor is the lock's.
    dirs: Vec<(PathBuf, Option<OwnedFd>)>,
    pub made: Vec<Made>,
    /// An existing placeholder of each linkable shape, to link new ones to.
    link_source: Option<usize>,
    dot_source: Option<usize>,
}

fn io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

impl Placer {
    /// Open and lock (shared) the workspace directory `ws`.
    pub fn open(ws: &Path) -> Result<Placer, MountError> {
        let fd = nix::fcntl::open(
            ws,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SysError::new("open", ws.display(), e))?;
        let lock = Flock::lock(fd, FlockArg::LockShared)
            .map_err(|(_, e)| SysError::new("flock", ws.display(), e))?;
        Ok(Placer {
            lock,
            dirs: vec![(ws.to_path_buf(), None)],
            made: Vec::new(),
            link_source: None,
            dot_source: None,
        })
    }

    pub fn fd_of(&self, dir: usize) -> BorrowedFd<'_> {
        match &self.dirs[dir].1 {
            Some(fd) => fd.as_fd(),
            None => self.lock.as_fd(),
        }
    }

    /// Let go of the placeholders made or adopted so far (they were removed, or are
    /// another run's now) and of the workspace lock (a session between commands).
    pub fn forget_made(&mut self) {
        self.made.clear();
        self.link_source = None;
        self.dot_source = None;
        // SAFETY: flock(2) on a descriptor this placer owns; LOCK_UN only releases.
        unsafe { libc::flock(self.lock.as_raw_fd(), libc::LOCK_UN) };
    }

    /// Is this run the last one using the workspace? (Upgrades the lock to
    /// exclusive if so: called once, as the run ends.)
    pub fn last_out(&self) -> bool {
        self.lock.relock(FlockArg::LockExclusiveNonblock).is_ok()
    }

    /// The open directory `path` (inside the workspace, reached from an
    /// already open one by `name`, not following a symlink).
    pub fn open_dir(&mut self, parent: usize, name: &OsStr) -> std::io::Result<usize> {
        let path = self.dirs[parent].0.join(name);
        if let Some(i) = self.dirs.iter().position(|(p, _)| *p == path) {
            return Ok(i);
        }
        let fd = nix::fcntl::openat(
            self.fd_of(parent),
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(io)?;
        self.dirs.push((path, Some(fd)));
        Ok(self.dirs.len() - 1)
    }

    /// The index of the open directory `path`, if it was opened.
    pub fn find_dir(&self, path: &Path) -> Option<usize> {
        self.dirs.iter().position(|(p, _)| p == path)
    }

    pub fn dir_path(&self, dir: usize) -> &Path {
        &self.dirs[dir].0
    }

    pub fn stat(&self, dir: usize, name: &OsStr) -> Result<FileStat, Errno> {
        nix::sys::stat::fstatat(self.fd_of(dir), name, AtFlags::AT_SYMLINK_NOFOLLOW)
    }

    /// Which placeholder shape `name` (already stat'ed) has, if any.
    pub fn shape_of(&self, dir: usize, name: &OsStr, st: &FileStat) -> Option<Shape> {
        let fd = self.fd_of(dir);
        let mode = st.st_mode & 0o7777;
        match file_type(st) {
            SFlag::S_IFLNK => nix::fcntl::readlinkat(fd, name)
                .ok()
                .filter(|t| t.as_bytes() == LINK_TARGET.as_bytes())
                .map(|_| Shape::Link),
            SFlag::S_IFREG if mode == FILE_MODE && st.st_size == 0 => Some(Shape::Empty),
            SFlag::S_IFREG if mode == FILE_MODE && st.st_size == DOT.len() as i64 => {
                let f = nix::fcntl::openat(
                    fd,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .ok()?;
                let mut buf = [0u8; 4];
                let n = nix::unistd::read(&f, &mut buf).ok()?;
                (buf[..n] == *DOT).then_some(Shape::Dot)
            }
            SFlag::S_IFDIR if mode == LEGACY_DIR_MODE => {
                // Only an empty one: a real directory of that mode is not ours.
                let path = self.dirs[dir].0.join(name);
                let empty = std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none());
                empty.then_some(Shape::LegacyDir)
            }
            _ => None,
        }
    }

    /// Take over a placeholder left by a concurrent or killed run.
    pub fn adopt(&mut self, dir: usize, name: &OsStr, st: &FileStat, shape: Shape) {
        let path = self.dirs[dir].0.join(name);
        if self.made.iter().any(|m| m.path == path) {
            return;
        }
        self.made.push(Made {
            path,
            dir,
            name: name.to_os_string(),
            dev: st.st_dev,
            ino: st.st_ino,
            shape,
        });
        let i = self.made.len() - 1;
        match shape {
            Shape::Link => {
                self.link_source.get_or_insert(i);
            }
            Shape::Dot => {
                self.dot_source.get_or_insert(i);
            }
            Shape::Empty | Shape::LegacyDir => {}
        }
    }

    /// Make a placeholder of `shape` at `name` in `dir`. The caller has set
    /// the umask to 0 (the mode is part of the marker). `Ok(false)`: the name
    /// exists already (made by a concurrent run meanwhile, or by the host);
    /// the caller looks at it again.
    pub fn make(&mut self, dir: usize, name: &OsStr, shape: Shape) -> std::io::Result<bool> {
        let to = self.fd_of(dir);
        let source = match shape {
            Shape::Link => self.link_source,
            Shape::Dot => self.dot_source,
            Shape::Empty | Shape::LegacyDir => None,
        };
        let made = match source {
            // One more name for an inode this run already holds: no new inode.
            Some(i) => {
                let src = &self.made[i];
                let from = self.fd_of(src.dir);
                match nix::unistd::linkat(from, src.name.as_os_str(), to, name, AtFlags::empty()) {
                    Ok(()) => Ok((src.dev, src.ino)),
                    Err(e) => Err(e),
                }
            }
            None => self.create(dir, name, shape),
        };
        let (dev, ino) = match made {
            Ok(id) => id,
            Err(Errno::EEXIST) => return Ok(false),
            Err(e) => return Err(io(e)),
        };
        let path = self.dirs[dir].0.join(name);
        self.made.push(Made {
            path,
            dir,
            name: name.to_os_string(),
            dev,
            ino,
            shape,
        });
        let i = self.made.len() - 1;
        match shape {
            Shape::Link => {
                self.link_source.get_or_insert(i);
            }
            Shape::Dot => {
                self.dot_source.get_or_insert(i);
            }
            Shape::Empty | Shape::LegacyDir => {}
        }
        Ok(true)
    }

    /// A new inode of `shape`: (dev, ino).
    fn create(&self, dir: usize, name: &OsStr, shape: Shape) -> Result<(u64, u64), Errno> {
        let fd = self.fd_of(dir);
        match shape {
            Shape::Link => {
                nix::unistd::symlinkat(LINK_TARGET, fd, name)?;
                let st = nix::sys::stat::fstatat(fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
                Ok((st.st_dev, st.st_ino))
            }
            Shape::Dot | Shape::Empty => {
                let f = nix::fcntl::openat(
                    fd,
                    name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(FILE_MODE),
                )?;
                if shape == Shape::Dot {
                    let n = nix::unistd::write(&f, DOT)?;
                    if n != DOT.len() {
                        return Err(Errno::EIO);
                    }
                }
                let st = nix::sys::stat::fstat(&f)?;
                Ok((st.st_dev, st.st_ino))
            }
            Shape::LegacyDir => Err(Errno::EINVAL),
        }
    }

    /// Remove every placeholder that is still the inode made or adopted
    /// (deepest first); what the host put there meanwhile is left alone.
    /// Returns the ones that could not be removed, with the reason.
    pub fn remove_all(&self) -> Vec<(PathBuf, std::io::Error)> {
        let mut order: Vec<&Made> = self.made.iter().collect();
        order.sort_by_key(|m| std::cmp::Reverse(m.path.components().count()));
        let mut failed = Vec::new();
        for m in order {
            let fd = self.fd_of(m.dir);
            let Ok(st) =
                nix::sys::stat::fstatat(fd, m.name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            // Same inode, and still of its shape (a freed inode number is
            // reused at once: a file the host made in its place may have it).
            if (st.st_dev, st.st_ino) != (m.dev, m.ino) || !m.shape.fits(&st) {
                continue;
            }
            let flag = if m.shape == Shape::LegacyDir {
                nix::unistd::UnlinkatFlags::RemoveDir
            } else {
                nix::unistd::UnlinkatFlags::NoRemoveDir
            };
            if let Err(e) = nix::unistd::unlinkat(fd, m.name.as_os_str(), flag) {
                failed.push((m.path.clone(), io(e)));
            }
        }
        failed
    }
}

//! Directory-descriptor file operations for the layer and the host workspace.
//!
//! Nothing here follows a symbolic link: every path is opened one component at
//! a time below a directory descriptor with `O_NOFOLLOW`, so a name planted in
//! the layer (or a symlink on the host, such as `a -> /etc`) can never lead
//! outside the tree it was opened in.

use std::ffi::{CStr, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

/// The type of a node, from `lstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
            Kind::CharDev => "character device",
            Kind::BlockDev => "block device",
        }
    }
}

/// What `lstat` says about one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub perm: u32,
    pub size: u64,
    /// Allocated bytes (`st_blocks * 512`): a sparse file is large but small here.
    pub allocated: u64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub rdev: u64,
    pub uid: u32,
    /// Inode change time (seconds, nanoseconds).
    pub ctime: (i64, i64),
}

impl Node {
    pub fn from_stat(st: &FileStat) -> Node {
        let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let kind = match fmt {
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFLNK => Kind::Symlink,
            SFlag::S_IFIFO => Kind::Fifo,
            SFlag::S_IFSOCK => Kind::Socket,
            SFlag::S_IFCHR => Kind::CharDev,
            SFlag::S_IFBLK => Kind::BlockDev,
            _ => Kind::File,
        };
        Node {
            kind,
            perm: st.st_mode & 0o7777,
            size: st.st_size.max(0) as u64,
            allocated: (st.st_blocks.max(0) as u64).saturating_mul(512),
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
            rdev: st.st_rdev,
            uid: st.st_uid,
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    /// An overlayfs whiteout in its classic form: a character device 0/0.
    pub fn is_device_whiteout(&self) -> bool {
        self.kind == Kind::CharDev && self.rdev == 0
    }

    /// git's mode word: 040000, 100644, 100755, 120000, or the raw type bits.
    pub fn git_mode(&self) -> u32 {
        match self.kind {
            Kind::Dir => 0o040000,
            Kind::Symlink => 0o120000,
            Kind::File if self.perm & 0o111 != 0 => 0o100755,
            Kind::File => 0o100644,
            Kind::Fifo => 0o010000 | self.perm,
            Kind::Socket => 0o140000 | self.perm,
            Kind::CharDev => 0o020000 | self.perm,
            Kind::BlockDev => 0o060000 | self.perm,
        }
    }
}

/// `lstat` of `name` in `dir`; `None` when it does not exist.
pub fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Node>> {
    match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Node::from_stat(&st))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `fstat` of an open descriptor.
pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Node> {
    Ok(Node::from_stat(&nix::sys::stat::fstat(fd)?))
}

/// Open the directory `name` below `dir`, refusing a symlink (`ELOOP`/`ENOTDIR`).
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Dir> {
    Ok(Dir::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Open a directory by absolute path (the roots: the workspace, the layer).
pub fn open_dir(path: &Path) -> io::Result<Dir> {
    Ok(Dir::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// The names in a directory, sorted bytewise, without `.` and `..`.
pub fn list(dir: &mut Dir) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Open the regular file `name` below `dir` for reading: no symlink, no fifo
/// (`O_NONBLOCK` so a swapped-in fifo cannot hang us), and still the inode `ino`.
pub fn open_file_at(dir: BorrowedFd<'_>, name: &OsStr, ino: Option<u64>) -> io::Result<File> {
    let fd = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let node = stat_fd(fd.as_fd())?;
    if node.kind != Kind::File || ino.is_some_and(|i| i != node.ino) {
        return Err(io::Error::other("file changed while it was being read"));
    }
    Ok(File::from(fd))
}

/// The target of the symlink `name` below `dir`.
pub fn readlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OsString> {
    Ok(nix::fcntl::readlinkat(dir, name)?)
}

/// An extended attribute of an open file or directory.
pub fn xattr(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    crate::sys::fgetxattr(fd, name).map_err(io::Error::from)
}

/// Do two open files have the same bytes? (`size` is both files' size.)
pub fn same_content(a: &mut File, b: &mut File) -> io::Result<bool> {
    let mut ba = vec![0u8; 64 << 10];
    let mut bb = vec![0u8; 64 << 10];
    loop {
        let na = read_full(a, &mut ba)?;
        let nb = read_full(b, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

/// Read until `buf` is full or the file ends.
pub fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Read at most `limit` bytes of a file (for diffs and rename detection).
pub fn read_limited(f: &mut File, limit: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    f.take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// A relative path is made only of normal components (no `..`, `.`, root).
pub fn is_clean_relative(p: &Path) -> bool {
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// A tree opened at its root; paths below it are walked one component at a
/// time without following symlinks. The last parent opened is cached, since
/// paths arrive in sorted order and siblings share a parent.
pub struct Tree {
    pub root: Dir,
    cache: Option<(PathBuf, Dir)>,
}

impl Tree {
    pub fn open(root: &Path) -> io::Result<Tree> {
        Ok(Tree {
            root: open_dir(root)?,
            cache: None,
        })
    }

    /// The directory `rel` (relative, clean) below the root; `ENOTDIR`/`ELOOP`
    /// when a component is not a real directory.
    pub fn dir(&mut self, rel: &Path) -> io::Result<BorrowedFd<'_>> {
        if rel.as_os_str().is_empty() {
            return Ok(self.root.as_fd());
        }
        let hit = matches!(&self.cache, Some((p, _)) if p == rel);
        if !hit {
            if !is_clean_relative(rel) {
                return Err(io::Error::other(format!(
                    "not a clean relative path: {}",
                    rel.display()
                )));
            }
            let mut cur: Option<Dir> = None;
            for comp in rel.components() {
                let next = {
                    let base = cur.as_ref().map_or(self.root.as_fd(), |d| d.as_fd());
                    open_dir_at(base, comp.as_os_str())?
                };
                cur = Some(next);
            }
            self.cache = cur.map(|d| (rel.to_path_buf(), d));
        }
        Ok(self.cache.as_ref().map(|(_, d)| d.as_fd()).unwrap())
    }

    /// Forget the cached parent (after it may have been removed or replaced).
    pub fn forget(&mut self) {
        self.cache = None;
    }

    /// `lstat` of `rel` below the root; `None` when it, or a parent, is missing
    /// or a parent is not a real directory (a symlink is not walked through).
    pub fn stat(&mut self, rel: &Path) -> io::Result<Option<Node>> {
        let (parent, name) = split(rel)?;
        match self.dir(parent) {
            Ok(d) => stat_at(d, name),
            Err(e) if is_not_there(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `(parent, name)` of a clean relative path.
pub fn split(rel: &Path) -> io::Result<(&Path, &OsStr)> {
    match (rel.parent(), rel.file_name()) {
        (Some(p), Some(n)) => Ok((p, n)),
        _ => Err(io::Error::other(format!(
            "not a clean relative path: {}",
            rel.display()
        ))),
    }
}

/// The errors that mean "that path is not (or no longer) a directory here".
pub fn is_not_there(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP)
    )
}

/// Remove `name` below `dir` and everything under it, never following a
/// symlink. Directories we own but cannot write (mode 0555, overlayfs's
/// `work/work` at 000) are made writable first. Missing is success.
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let Some(node) = stat_at(dir, name)? else {
        return Ok(());
    };
    if node.kind != Kind::Dir {
        return unlink_at(dir, name, false);
    }
    let mut sub = match open_dir_at(dir, name) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            make_owner_rwx(dir, name)?;
            open_dir_at(dir, name)?
        }
        Err(e) => return Err(e),
    };
    if node.perm & 0o700 != 0o700 {
        make_owner_rwx(dir, name)?;
    }
    for child in list(&mut sub)? {
        remove_tree_at(sub.as_fd(), &child)?;
    }
    unlink_at(dir, name, true)
}

/// `unlinkat`, `AT_REMOVEDIR` for directories; missing is success.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr, is_dir: bool) -> io::Result<()> {
    let flag = if is_dir {
        nix::unistd::UnlinkatFlags::RemoveDir
    } else {
        nix::unistd::UnlinkatFlags::NoRemoveDir
    };
    match nix::unistd::unlinkat(dir, name, flag) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// chmod u+rwx on a directory we just `lstat`ed as a directory (the layer is
/// locked, so nothing swaps it for a symlink meanwhile; fchmodat cannot take
/// AT_SYMLINK_NOFOLLOW on kernels before 6.6).
fn make_owner_rwx(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match stat_at(dir, name)? {
        Some(n) if n.kind == Kind::Dir => Ok(nix::sys::stat::fchmodat(
            dir,
            name,
            Mode::from_bits_truncate(n.perm | 0o700),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?),
        _ => Ok(()),
    }
}

/// A second, owned handle on a descriptor.
pub fn dup_fd(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(nix::unistd::dup(fd)?)
}

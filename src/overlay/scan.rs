//! Reading an overlayfs upper directory against the host workspace (its lower).
//!
//! The upper directory is read exactly as overlayfs, mounted unprivileged with
//! `userxattr`, leaves it and interprets it (Linux 6.x, checked by experiment):
//! - a whiteout is a character device 0/0 (overlayfs shares one inode for all of
//!   them, so their link count is high), or a zero-size regular file carrying
//!   `user.overlay.whiteout` (the kernel treats that as a whiteout on lookup);
//! - a directory with `user.overlay.opaque` = `y` hides everything below it in the
//!   lower layer (`x` only marks a directory holding xattr whiteouts);
//!   the kernel ignores the flag on the upper root;
//! - `user.overlay.redirect` is never created with `userxattr` (the mount forces
//!   `redirect_dir=nofollow`, so `mv dir` gets EXDEV and tools copy), and a planted
//!   one makes the kernel refuse the directory (EPERM): reported, not applied;
//! - everything else is the merged view's content at that path.
//!
//! The result is a list of [`Entry`]s, one per path where the merged view and
//! the host differ structurally, sorted so that a directory comes before what
//! is inside it. Nothing in the upper directory is trusted: names are bytes,
//! nothing is followed, and oddities (devices, fifos, hard links to elsewhere,
//! mount points) are entries with a `problem`, which `apply` never takes.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::dir::Dir;

use super::OverlayError;
use super::fs::{self, Kind, Node};

/// Deepest directory nesting read (two descriptors are open per level).
pub const MAX_DEPTH: usize = 256;

const OPAQUE: &CStr = c"user.overlay.opaque";
const REDIRECT: &CStr = c"user.overlay.redirect";
const WHITEOUT: &CStr = c"user.overlay.whiteout";
use std::ffi::CStr;

/// One path where the merged view differs from the host.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Workspace-relative path (clean: only normal components).
    pub path: PathBuf,
    /// The host's node at this path (`lstat` below the workspace, no symlink walked).
    pub host: Option<Node>,
    /// The merged view's node from the upper directory; `None`: deleted.
    pub layer: Option<Node>,
    /// Symlink targets (layer, host).
    pub target: Option<OsString>,
    pub host_target: Option<OsString>,
    /// An opaque directory: host entries below it that the layer lacks are deleted
    /// (they appear as their own deletion entries).
    pub opaque: bool,
    /// Regular file whose bytes differ from the host's (or host is not a file).
    pub content_changed: bool,
    /// When a host directory goes away (deleted, or replaced by a non-directory):
    /// everything below it, parents first.
    pub below: Vec<(PathBuf, Node)>,
    /// Why `apply` will not take this entry (device, fifo, redirect …).
    pub problem: Option<String>,
}

impl Entry {
    fn new(path: PathBuf, host: Option<Node>, layer: Option<Node>) -> Entry {
        Entry {
            path,
            host,
            layer,
            target: None,
            host_target: None,
            opaque: false,
            content_changed: false,
            below: Vec::new(),
            problem: None,
        }
    }

    /// Does the merged view differ from the host here (beyond what children show)?
    pub fn is_change(&self) -> bool {
        match (&self.host, &self.layer) {
            (None, None) => false,
            (Some(h), Some(l)) if h.kind == l.kind => match l.kind {
                Kind::Dir => h.perm != l.perm,
                Kind::File => self.content_changed || h.perm != l.perm,
                Kind::Symlink => self.target != self.host_target,
                _ => true,
            },
            _ => true,
        }
    }
}

/// Read the upper directory `upper` against the host workspace `workspace`.
pub fn scan(upper: &Path, workspace: &Path) -> Result<Vec<Entry>, OverlayError> {
    let mut up = fs::open_dir(upper).map_err(|e| OverlayError::io("cannot open", upper, e))?;
    let host =
        fs::open_dir(workspace).map_err(|e| OverlayError::io("cannot open", workspace, e))?;
    let dev = fs::stat_fd(up.as_fd())
        .map_err(|e| OverlayError::io("cannot stat", upper, e))?
        .dev;
    let mut w = Walker {
        upper: upper.to_path_buf(),
        workspace: workspace.to_path_buf(),
        dev,
        out: Vec::new(),
    };
    w.dir(&mut up, Some(&host), Path::new(""), false, 0)?;
    let mut out = w.out;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    mark_foreign_hardlinks(&mut out);
    Ok(out)
}

struct Walker {
    upper: PathBuf,
    workspace: PathBuf,
    dev: u64,
    out: Vec<Entry>,
}

impl Walker {
    fn up_err(&self, what: &'static str, rel: &Path, e: std::io::Error) -> OverlayError {
        let hint = if e.raw_os_error() == Some(libc::EACCES) {
            " (hint: the sandboxed command made it unreadable; run as the same user, or `chmod -R u+rwX` the layer's upper directory)"
        } else {
            ""
        };
        OverlayError::Invalid(format!(
            "layer entry {}: {what}: {}{hint}",
            self.upper.join(rel).display(),
            e.to_string().to_lowercase()
        ))
    }

    fn host_err(&self, rel: &Path, e: std::io::Error) -> OverlayError {
        OverlayError::io("cannot read", &self.workspace.join(rel), e)
    }

    fn dir(
        &mut self,
        up: &mut Dir,
        host: Option<&Dir>,
        rel: &Path,
        opaque: bool,
        depth: usize,
    ) -> Result<(), OverlayError> {
        if depth > MAX_DEPTH {
            return Err(OverlayError::Invalid(format!(
                "layer entry {}: nested deeper than {MAX_DEPTH} directories",
                self.upper.join(rel).display()
            )));
        }
        let names = fs::list(up).map_err(|e| self.up_err("cannot list", rel, e))?;
        for name in &names {
            self.one(up, host, rel, name, depth)?;
        }
        if let (true, Some(h)) = (opaque, host) {
            // Everything on the host below an opaque directory that the layer
            // does not have is gone from the merged view.
            let mut hdir =
                fs::open_dir_at(h.as_fd(), OsStr::new(".")).map_err(|e| self.host_err(rel, e))?;
            for name in fs::list(&mut hdir).map_err(|e| self.host_err(rel, e))? {
                if names.binary_search(&name).is_err() {
                    let node = fs::stat_at(h.as_fd(), &name).map_err(|e| self.host_err(rel, e))?;
                    if let Some(node) = node {
                        self.deleted(h.as_fd(), rel.join(&name), node)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn one(
        &mut self,
        up: &Dir,
        host: Option<&Dir>,
        rel: &Path,
        name: &OsStr,
        depth: usize,
    ) -> Result<(), OverlayError> {
        let path = rel.join(name);
        let Some(unode) =
            fs::stat_at(up.as_fd(), name).map_err(|e| self.up_err("cannot stat", &path, e))?
        else {
            return Err(self.up_err(
                "vanished while being read",
                &path,
                std::io::Error::from_raw_os_error(libc::ENOENT),
            ));
        };
        let hnode = match host {
            Some(h) => fs::stat_at(h.as_fd(), name).map_err(|e| self.host_err(&path, e))?,
            None => None,
        };
        if unode.dev != self.dev {
            let mut e = Entry::new(path, hnode, Some(unode));
            e.problem = Some("a mount point inside the layer".into());
            self.out.push(e);
            return Ok(());
        }
        if self.is_whiteout(up, name, &unode, &path)? {
            if let (Some(h), Some(hn)) = (host, hnode) {
                self.deleted(h.as_fd(), path, hn)?;
            }
            return Ok(());
        }
        let mut e = Entry::new(path.clone(), hnode, Some(unode));
        if let (Some(h), Some(hn)) = (host, hnode) {
            if hn.kind == Kind::Dir && unode.kind != Kind::Dir {
                e.below = self.host_below(h.as_fd(), &path)?;
            }
            if hn.kind == Kind::Symlink {
                e.host_target =
                    Some(fs::readlink_at(h.as_fd(), name).map_err(|er| self.host_err(&path, er))?);
            }
        }
        match unode.kind {
            Kind::Dir => return self.subdir(up, host, e, name, depth),
            Kind::Symlink => {
                e.target = Some(
                    fs::readlink_at(up.as_fd(), name)
                        .map_err(|er| self.up_err("cannot read link", &path, er))?,
                );
            }
            Kind::File => e.content_changed = self.differs(up, host, name, &unode, hnode, &path)?,
            k => {
                e.problem = Some(format!("a {}: never applied to the host", k.name()));
            }
        }
        self.out.push(e);
        Ok(())
    }

    fn subdir(
        &mut self,
        up: &Dir,
        host: Option<&Dir>,
        mut e: Entry,
        name: &OsStr,
        depth: usize,
    ) -> Result<(), OverlayError> {
        let path = e.path.clone();
        let mut sub = fs::open_dir_at(up.as_fd(), name)
            .map_err(|er| self.up_err("cannot open", &path, er))?;
        let xa = |attr: &CStr| fs::xattr(sub.as_fd(), attr);
        if let Some(target) =
            xa(REDIRECT).map_err(|er| self.up_err("cannot read xattr", &path, er))?
        {
            e.problem = Some(format!(
                "an overlay redirect to {:?}, which the kernel does not follow for unprivileged mounts: never applied",
                String::from_utf8_lossy(&target)
            ));
            self.out.push(e);
            return Ok(());
        }
        e.opaque = xa(OPAQUE)
            .map_err(|er| self.up_err("cannot read xattr", &path, er))?
            .is_some_and(|v| v == b"y");
        let host_sub = match (host, e.host) {
            (Some(h), Some(hn)) if hn.kind == Kind::Dir => {
                Some(fs::open_dir_at(h.as_fd(), name).map_err(|er| self.host_err(&path, er))?)
            }
            _ => None,
        };
        let opaque = e.opaque;
        self.out.push(e);
        self.dir(&mut sub, host_sub.as_ref(), &path, opaque, depth + 1)
    }

    fn is_whiteout(
        &self,
        up: &Dir,
        name: &OsStr,
        n: &Node,
        path: &Path,
    ) -> Result<bool, OverlayError> {
        if n.is_device_whiteout() {
            return Ok(true);
        }
        if n.kind != Kind::File || n.size != 0 {
            return Ok(false);
        }
        let f = fs::open_file_at(up.as_fd(), name, Some(n.ino))
            .map_err(|e| self.up_err("cannot open", path, e))?;
        Ok(fs::xattr(f.as_fd(), WHITEOUT)
            .map_err(|e| self.up_err("cannot read xattr", path, e))?
            .is_some())
    }

    /// Do the layer's bytes differ from the host file's?
    fn differs(
        &self,
        up: &Dir,
        host: Option<&Dir>,
        name: &OsStr,
        unode: &Node,
        hnode: Option<Node>,
        path: &Path,
    ) -> Result<bool, OverlayError> {
        let (Some(h), Some(hn)) = (host, hnode) else {
            return Ok(true);
        };
        if hn.kind != Kind::File || hn.size != unode.size {
            return Ok(true);
        }
        let mut a = fs::open_file_at(up.as_fd(), name, Some(unode.ino))
            .map_err(|e| self.up_err("cannot open", path, e))?;
        let mut b =
            fs::open_file_at(h.as_fd(), name, Some(hn.ino)).map_err(|e| self.host_err(path, e))?;
        Ok(!fs::same_content(&mut a, &mut b).map_err(|e| self.up_err("cannot read", path, e))?)
    }

    /// A host node gone from the merged view.
    fn deleted(
        &mut self,
        parent: BorrowedFd<'_>,
        path: PathBuf,
        node: Node,
    ) -> Result<(), OverlayError> {
        let mut e = Entry::new(path.clone(), Some(node), None);
        if node.kind == Kind::Dir {
            e.below = self.host_below(parent, &path)?;
        }
        if node.kind == Kind::Symlink {
            let name = path.file_name().unwrap_or_default();
            e.host_target =
                Some(fs::readlink_at(parent, name).map_err(|er| self.host_err(&path, er))?);
        }
        self.out.push(e);
        Ok(())
    }

    /// Everything below the host directory `path` (child of `parent`), parents first.
    fn host_below(
        &self,
        parent: BorrowedFd<'_>,
        path: &Path,
    ) -> Result<Vec<(PathBuf, Node)>, OverlayError> {
        fn walk(
            d: &mut Dir,
            rel: &Path,
            out: &mut Vec<(PathBuf, Node)>,
            depth: usize,
        ) -> std::io::Result<()> {
            if depth > MAX_DEPTH {
                return Err(std::io::Error::other("nested too deep"));
            }
            for name in fs::list(d)? {
                let Some(n) = fs::stat_at(d.as_fd(), &name)? else {
                    continue;
                };
                let p = rel.join(&name);
                out.push((p.clone(), n));
                if n.kind == Kind::Dir {
                    let mut sub = fs::open_dir_at(d.as_fd(), &name)?;
                    walk(&mut sub, &p, out, depth + 1)?;
                }
            }
            Ok(())
        }
        let name = path.file_name().unwrap_or_default();
        let mut out = Vec::new();
        let mut d = fs::open_dir_at(parent, name).map_err(|e| self.host_err(path, e))?;
        walk(&mut d, path, &mut out, 0).map_err(|e| self.host_err(path, e))?;
        Ok(out)
    }
}

/// A regular file of the layer with more links than the layer holds has a
/// name outside the layer: copying it would copy something the sandbox never
/// wrote. (Copy-up gives a fresh inode; `ln` inside the sandbox links within
/// the upper directory; the whiteouts' shared inode is not a file.)
fn mark_foreign_hardlinks(entries: &mut [Entry]) {
    let mut count: HashMap<(u64, u64), u64> = HashMap::new();
    for e in entries.iter() {
        if let Some(l) = &e.layer {
            if l.kind == Kind::File && l.nlink > 1 {
                *count.entry((l.dev, l.ino)).or_default() += 1;
            }
        }
    }
    for e in entries.iter_mut() {
        if let Some(l) = &e.layer {
            if l.kind == Kind::File
                && l.nlink > 1
                && count.get(&(l.dev, l.ino)).copied().unwrap_or(0) < l.nlink
                && e.problem.is_none()
            {
                e.problem = Some(format!(
                    "a hard link with {} names, some outside the layer: never applied",
                    l.nlink
                ));
            }
        }
    }
}

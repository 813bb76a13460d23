//! Root's view: a sandbox started by root sees the system as an unprivileged
//! user would (issue 8, item 5).
//!
//! Without this, uid 0 inside the sandbox's user namespace is uid 0 outside,
//! and the init's capabilities in that namespace include DAC override over
//! every inode owned by uid 0: a `0600` key under `/etc`, bound read-only, is
//! readable. So when the caller is root (namespaces tier), the sandbox's user
//! namespace maps its 0 to [`MAPPED_ROOT`], an id no host process or file
//! uses, for uid and gid alike, and its supplementary groups are emptied.
//! Host files owned by root are then owned by the overflow id inside, and only
//! their "other" permission bits apply: what an unprivileged user sees.
//!
//! The trees the sandbox must keep as root's own (the workspace, every
//! writable bind such as the kept home, an overlay workspace's layer) are
//! bound through id-mapped mounts whose map is the same `0 MAPPED_ROOT 1`:
//! on-disk uid 0 is shown as [`MAPPED_ROOT`], which is 0 inside, and what the
//! sandbox creates there is stored as uid 0, as before. An id-mapped mount
//! can only be made by a process with CAP_SYS_ADMIN in the filesystem's user
//! namespace (the host's), from a detached mount: so the supervisor, after the
//! clone, writes the child's id maps, clones each tree (`open_tree`), maps it
//! with the child's user namespace (`mount_setattr(MOUNT_ATTR_IDMAP)`) and
//! passes the detached mounts over a socket; the child, blocked until then,
//! attaches them (`move_mount`) in its own mount namespace ([`super::mount`]).
//!
//! A writable tree whose filesystem cannot be id-mapped refuses the run (exit
//! 125, naming the path and the fix): it is never bound plainly, which would
//! make it unwritable or leave uid 0 unmapped. A read-only one is then passed
//! as a plain clone: the sandbox sees it as an unprivileged user would.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::Pid;

use super::mount::{IdmappedTree, MountPlan, Op};
use crate::sys::{self, IdMap, SysError};

pub use crate::probe::MAPPED_ROOT;

/// Why the sandbox could not be given root's view (nothing ran; exit 125).
#[derive(Debug, thiserror::Error)]
pub enum RootViewError {
    #[error(
        "cannot enforce 'no privilege': {path} cannot be bound through an id-mapped mount ({errno}): {why}; a sandbox started by root sees the system as an unprivileged user and keeps its writable trees root's own only through id-mapped mounts (hint: put it on ext4, xfs, btrfs or tmpfs (the kept home and overlay layers: set XDG_STATE_HOME to a directory there), or run shellcage as an unprivileged user)"
    )]
    Idmap {
        path: PathBuf,
        errno: Errno,
        why: String,
    },
    #[error("cannot give the sandbox its id maps: {0}")]
    Sys(#[from] SysError),
}

/// The host trees of `plan` the sandbox must keep as root's own, in bind
/// order: the caller's own files, as any user has them in their sandbox: the
/// workspace (also read-only: its owner reads its own `0600` files), every
/// bind from the caller's home (`~/.cargo`, `~/.gitconfig` …: root's home is
/// `0700`, so an unprivileged view could not even reach them; the hidden
/// paths in them are masked as always), every writable bind, and an overlay
/// workspace's lower tree and layer (its upper and work directories must sit
/// on one mount, so their common parent). Everything else (`/usr`, `/etc` …)
/// is seen as an unprivileged user sees it.
pub fn trees(plan: &MountPlan, workspace: &Path, home: &Path) -> Vec<IdmappedTree> {
    let mut out: Vec<IdmappedTree> = Vec::new();
    let mut add = |path: &Path, readonly: bool, dir: bool| {
        if !out.iter().any(|t| t.path == path) {
            out.push(IdmappedTree {
                path: path.to_path_buf(),
                readonly,
                dir,
            });
        }
    };
    for op in &plan.ops {
        match op {
            Op::Bind {
                src, readonly, dir, ..
            } if !*readonly || src == workspace || src.starts_with(home) => {
                add(src, *readonly, *dir);
            }
            Op::Overlay {
                lower, upper, work, ..
            } => {
                add(lower, true, true);
                let layer = common_parent(upper, work);
                add(&layer, false, true);
            }
            _ => {}
        }
    }
    out
}

/// The deepest directory holding both `a` and `b`.
fn common_parent(a: &Path, b: &Path) -> PathBuf {
    let mut p = a.to_path_buf();
    while !b.starts_with(&p) {
        if !p.pop() {
            break;
        }
    }
    p
}

fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .unwrap_or_else(|_| std::ffi::CString::from(c"/nonexistent"))
}

/// Supervisor side, right after the clone: write `child`'s id maps (`0 id 1`
/// for uids and gids; setgroups stays allowed, so that the child can empty
/// its supplementary groups), make each of `trees` an id-mapped detached
/// mount with the child's user namespace (nosuid, nodev; read-only where
/// asked), and send them to the child over `sock`, in order. The child waits
/// for that message before anything else.
pub fn give(
    child: Pid,
    id: u32,
    trees: &[IdmappedTree],
    sock: &UnixStream,
) -> Result<(), RootViewError> {
    let map = format!("0 {id} 1\n");
    sys::write_id_map(child, IdMap::Uid, &map)?;
    sys::write_id_map(child, IdMap::Gid, &map)?;
    let ns_path = format!("/proc/{child}/ns/user");
    let userns = std::fs::File::open(&ns_path).map_err(|e| {
        SysError::new(
            "open",
            &ns_path,
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    let mut mounts: Vec<OwnedFd> = Vec::with_capacity(trees.len());
    for t in trees {
        let refused = |errno: Errno| RootViewError::Idmap {
            path: t.path.clone(),
            errno,
            why: why(errno, &t.path),
        };
        // Not following a final symlink: a tree swapped for a link to /etc
        // since it was described must not become root's own.
        let tree =
            sys::open_tree_clone(&cpath(&t.path), true, true).map_err(|e| refused(e.errno))?;
        let mut extra = sys::MOUNT_NOSUID_NODEV;
        if t.readonly {
            extra |= sys::MOUNT_RDONLY;
        }
        match sys::mount_setattr_idmap(tree.as_fd(), userns.as_fd(), true, extra) {
            Ok(()) => {}
            // A read-only tree on a filesystem without id-mapped mounts (a
            // toolchain in root's home on a container's overlayfs): shown as
            // it is, the unprivileged view of it, which is all the guarantee
            // asks. The clone is still ours, so root's 0700 home above it
            // need not be entered by the sandbox.
            Err(e) if t.readonly && e.errno == Errno::EINVAL => {
                tracing::debug!(path = %t.path.display(), "no id-mapped mount here; bound with the unprivileged view");
                sys::detached_tree_attrs(tree.as_fd(), extra).map_err(|e| refused(e.errno))?;
            }
            Err(e) => return Err(refused(e.errno)),
        }
        mounts.push(tree);
    }
    let fds: Vec<BorrowedFd<'_>> = mounts.iter().map(AsFd::as_fd).collect();
    sys::send_fds(sock.as_fd(), b"R", &fds)?;
    Ok(())
}

/// What a refused id-mapped mount of `path` means.
fn why(errno: Errno, path: &Path) -> String {
    match errno {
        Errno::EINVAL => format!(
            "its filesystem{}, or one mounted below it, does not support id-mapped mounts",
            fs_name(path).map(|n| format!(" ({n})")).unwrap_or_default()
        ),
        Errno::ENOSYS => "this kernel has no mount_setattr(2) (Linux 5.12 or later)".into(),
        Errno::EPERM => {
            "the kernel refused (a filesystem mounted in another user namespace, or a security module)".into()
        }
        Errno::ELOOP => "it is a symlink now".into(),
        e => e.desc().to_lowercase(),
    }
}

/// The filesystem type of `path`, by its magic number (the common ones).
fn fs_name(path: &Path) -> Option<&'static str> {
    const KNOWN: [(u32, &str); 9] = [
        (0x8584_58f6, "ramfs"),
        (0x6969, "nfs"),
        (0x6573_5546, "fuse"),
        (0x0102_1997, "9p"),
        (0x794c_7630, "overlayfs"),
        (0xff53_4d42, "cifs"),
        (0x5346_544e, "ntfs"),
        (0x4d44, "vfat"),
        (0x2fc1_2fc1, "zfs"),
    ];
    let raw = nix::sys::statfs::statfs(path).ok()?.filesystem_type().0;
    // The magic is 32 bits wide; the field is a signed word.
    let magic = raw as u32;
    KNOWN.iter().find(|(m, _)| *m == magic).map(|(_, n)| *n)
}

/// Child side, before its first mount: wait for the supervisor's message
/// (the id maps are written once it comes), take the `expected` id-mapped
/// trees, and become the namespace's 0 (until then the child still has the
/// host's uid 0, which the maps do not contain) with no supplementary groups
/// (root's group 0 would otherwise still open files of group root). `None` when the supervisor gave up (it
/// says why).
pub fn receive(sock: &UnixStream, expected: usize) -> Result<Option<Vec<OwnedFd>>, SysError> {
    let mut byte = [0u8; 1];
    let (n, fds) = sys::recv_fds(sock.as_fd(), &mut byte)?;
    if n == 0 {
        return Ok(None);
    }
    if byte != *b"R" || fds.len() != expected {
        return Err(SysError::new(
            "recvmsg",
            format!(
                "id-mapped trees ({} received, {expected} expected)",
                fds.len()
            ),
            Errno::EBADMSG,
        ));
    }
    sys::become_namespace_root()?;
    Ok(Some(fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::mount::VisiblePaths;

    fn plan(ops: Vec<Op>) -> MountPlan {
        MountPlan {
            ops,
            visible: VisiblePaths::default(),
            env_scan: Default::default(),
            idmapped: Vec::new(),
            protection: Default::default(),
        }
    }

    fn bind(src: &str, readonly: bool, dir: bool) -> Op {
        Op::Bind {
            src: src.into(),
            at: src.into(),
            readonly,
            dir,
        }
    }

    fn tree(path: &str, readonly: bool, dir: bool) -> IdmappedTree {
        IdmappedTree {
            path: path.into(),
            readonly,
            dir,
        }
    }

    #[test]
    fn the_callers_own_trees_are_id_mapped_and_the_system_trees_are_not() {
        let p = plan(vec![
            bind("/usr", true, true),
            bind("/etc", true, true),
            bind("/root/.cargo", true, true),
            bind("/root/.gitconfig", true, false),
            bind("/srv/cache", false, true),
            bind("/w", false, true),
            Op::Pin {
                at: "/w/.git".into(),
            },
            bind("/root/.local/state/shellcage/homes/x/cache", false, true),
        ]);
        assert_eq!(
            trees(&p, Path::new("/w"), Path::new("/root")),
            [
                tree("/root/.cargo", true, true),
                tree("/root/.gitconfig", true, false),
                tree("/srv/cache", false, true),
                tree("/w", false, true),
                tree("/root/.local/state/shellcage/homes/x/cache", false, true),
            ]
        );
    }

    #[test]
    fn a_read_only_workspace_is_id_mapped_read_only() {
        let p = plan(vec![bind("/opt", true, true), bind("/w", true, true)]);
        assert_eq!(
            trees(&p, Path::new("/w"), Path::new("/home/u")),
            [tree("/w", true, true)]
        );
    }

    #[test]
    fn an_overlay_workspace_maps_its_lower_tree_and_its_layer_once() {
        let p = plan(vec![Op::Overlay {
            lower: "/w".into(),
            upper: "/s/layers/w/default/upper".into(),
            work: "/s/layers/w/default/work".into(),
            at: "/w".into(),
        }]);
        assert_eq!(
            trees(&p, Path::new("/w"), Path::new("/root")),
            [
                tree("/w", true, true),
                tree("/s/layers/w/default", false, true)
            ]
        );
    }

    #[test]
    fn the_common_parent_of_two_layer_directories() {
        assert_eq!(
            common_parent(Path::new("/s/l/upper"), Path::new("/s/l/work")),
            Path::new("/s/l")
        );
        assert_eq!(
            common_parent(Path::new("/a/b"), Path::new("/c")),
            Path::new("/")
        );
    }
}

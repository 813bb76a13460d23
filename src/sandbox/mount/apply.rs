//! Building the new root from a [`MountPlan`]: runs in the sandbox init (pid 1,
//! in its own user and mount namespaces), reads nothing of the host that the
//! plan does not name, and only executes the plan's operations in order.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::{DEV_NODES, MountError, MountPlan, Node, Op, depth, io_err};
use crate::sandbox::devices::{DeviceLink, DeviceNode, GpuNodes};
use crate::sys::{self, SysError};

const BASE: &str = "/tmp";
const OLD: &str = "/oldroot";
const NEW: &str = "/newroot";
/// Masks live in a directory of the scratch root that is made read-only
/// once: a bind copies its source's mount flags, so each mask is one mount.
const MASKS: &str = "/masks";
const MASK_FILE: &str = "/masks/file";
const MASK_DIR: &str = "/masks/dir";
/// A read-only view of the workspace, staged once; protected paths are bound
/// from it (read-only by inheritance, one mount each).
const WS_RO: &str = "/ws-ro";
/// An overlay workspace's merged view, mounted here first (while the old
/// root is still writable: overlayfs refuses an upper directory on a
/// read-only mount, and keeps a private copy of the mounts it is given).
const OVL: &str = "/ovl";

/// The id-mapped trees of a sandbox started by root, each attached at its
/// index here (`/idmap/0` …) and bound from there.
const IDMAP: &str = "/idmap";

/// Generated files ([`Op::File`]) are written here, in a tmpfs of their own
/// that is made read-only before any of them is bound into the new root.
const FILES: &str = "/files";

/// What `apply_op` carries from one operation to the next.
#[derive(Default)]
struct State {
    ws_staged: bool,
    /// The index of the next [`Op::File`] in `FILES`.
    next_file: usize,
    /// An overlay workspace: its path; its merged view is at [`OVL`].
    merged: Option<PathBuf>,
    /// Host trees bound through id-mapped mounts (see
    /// [`crate::sandbox::rootview`]), and where each is attached.
    idmapped: Vec<(PathBuf, PathBuf)>,
}

impl State {
    /// Where the sandbox's `path` comes from: under the old root, or, inside
    /// an overlay workspace, from the merged view, or inside an id-mapped
    /// tree, from its mount (the deepest one holding it).
    fn source(&self, path: &Path) -> PathBuf {
        match &self.merged {
            Some(ws) if path.starts_with(ws) => {
                Path::new(OVL).join(path.strip_prefix(ws).unwrap_or(Path::new("")))
            }
            _ => self
                .idmapped
                .iter()
                .filter(|(host, _)| path.starts_with(host))
                .max_by_key(|(host, _)| depth(host))
                .map(|(host, at)| match path.strip_prefix(host) {
                    // Not `at.join("")`: a trailing slash would not name a file.
                    Ok(rel) if !rel.as_os_str().is_empty() => at.join(rel),
                    _ => at.clone(),
                })
                .unwrap_or_else(|| under(OLD, path)),
        }
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_else(|_| CString::from(c"/nonexistent"))
}

fn under(prefix: &str, p: &Path) -> PathBuf {
    let rel = p.strip_prefix("/").unwrap_or(p);
    Path::new(prefix).join(rel)
}

fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SysError> {
    nix::mount::mount(src, target, fstype, flags, data).map_err(|e| {
        let obj = match src {
            Some(s) if flags.contains(MsFlags::MS_BIND) => {
                format!("{} -> {}", s.display(), target.display())
            }
            _ => target.display().to_string(),
        };
        SysError::new("mount", obj, e)
    })
}

fn mkdir_p(p: &Path) -> Result<(), MountError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .map_err(io_err("mkdir", p))
}

fn ensure_mountpoint(at: &Path, dir: bool) -> Result<(), MountError> {
    if std::fs::symlink_metadata(at).is_ok() {
        return Ok(());
    }
    if dir {
        mkdir_p(at)
    } else {
        if let Some(parent) = at.parent() {
            mkdir_p(parent)?;
        }
        std::fs::File::create(at)
            .map(drop)
            .map_err(io_err("create mountpoint", at))
    }
}

/// Bind `src` (under the old root, which `apply` has made read-only, nosuid
/// and nodev) at `at`. A bind copies its source's flags, so a read-only bind is
/// one mount; a writable one clears the read-only flag again, unless the host
/// itself has the tree read-only (then it stays so, as on the host).
fn bind(src: &Path, at: &Path, readonly: bool, dir: bool) -> Result<(), MountError> {
    ensure_mountpoint(at, dir)?;
    mount(
        Some(src),
        at,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    if !readonly {
        match sys::make_tree_writable(&cpath(at)) {
            Err(e) if e.errno == nix::errno::Errno::EPERM => {
                tracing::debug!(path = %at.display(), "read-only on the host; stays read-only");
            }
            other => other?,
        }
    }
    Ok(())
}

/// Mount the symlink `src` itself over the symlink `at` (neither followed):
/// the link at `at` cannot be removed, renamed or replaced for the run.
/// open_tree + move_mount; before Linux 5.2, mount(2) on the /proc/self/fd
/// magic links of O_PATH descriptors (proc is the host's, under the old root).
fn bind_link(src: &Path, at: &Path) -> Result<(), MountError> {
    match sys::open_tree_clone(&cpath(src), false, true) {
        Ok(tree) => Ok(sys::move_mount_to(
            std::os::fd::AsFd::as_fd(&tree),
            &cpath(at),
        )?),
        Err(e) if e.errno == nix::errno::Errno::ENOSYS => {
            use nix::fcntl::OFlag;
            use std::os::fd::AsRawFd;
            let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let open = |p: &Path| {
                nix::fcntl::open(p, flags, nix::sys::stat::Mode::empty())
                    .map_err(|e| SysError::new("open(O_PATH)", p.display(), e))
            };
            let (from, to) = (open(src)?, open(at)?);
            let fd_path = |fd: &std::os::fd::OwnedFd| {
                Path::new(OLD).join(format!("proc/self/fd/{}", fd.as_raw_fd()))
            };
            mount(
                Some(&fd_path(&from)),
                &fd_path(&to),
                None,
                MsFlags::MS_BIND,
                None,
            )?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn tmpfs(at: &Path, size: u64, mode: u32) -> Result<(), MountError> {
    mkdir_p(at)?;
    let data = format!("size={size},mode={mode:o}");
    mount(
        Some(Path::new("tmpfs")),
        at,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&data),
    )?;
    Ok(())
}

fn remount_ro(at: &Path) -> Result<(), SysError> {
    mount(
        None,
        at,
        None,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None,
    )
}

fn setup_dev(shm_size: u64, nodes: &[DeviceNode], links: &[DeviceLink]) -> Result<(), MountError> {
    let dev = Path::new(NEW).join("dev");
    tmpfs(&dev, 1 << 16, 0o755)?;
    for node in DEV_NODES {
        let at = dev.join(node);
        std::fs::File::create(&at).map_err(io_err("create", &at))?;
        let src = Path::new(OLD).join("dev").join(node);
        mount(Some(&src), &at, None, MsFlags::MS_BIND, None)?;
    }
    for node in nodes {
        bind_device(&dev, node)?;
    }
    for link in links {
        let at = dev.join(GpuNodes::relative(&link.path));
        if let Some(parent) = at.parent() {
            mkdir_p(parent)?;
        }
        std::os::unix::fs::symlink(&link.target, &at).map_err(io_err("symlink", &at))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let at = dev.join(name);
        std::os::unix::fs::symlink(target, &at).map_err(io_err("symlink", &at))?;
    }
    let pts = dev.join("pts");
    mkdir_p(&pts)?;
    // A private devpts so tools that need a pseudo-terminal (script, expect,
    // python's pty tests) work; not a guarantee, so its absence is not fatal.
    if let Err(err) = mount(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    ) {
        tracing::debug!(%err, "devpts not mounted");
    }
    tmpfs(&dev.join("shm"), shm_size, 0o1777)?;
    remount_ro(&dev)?;
    Ok(())
}

/// Bind the host's device node `node` into the sandbox's `dev`, then check
/// that what got mounted is still the character device the host side found
/// (a bind follows a symlink: a node swapped since then stops the run).
fn bind_device(dev: &Path, node: &DeviceNode) -> Result<(), MountError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let rel = GpuNodes::relative(&node.path);
    let at = dev.join(rel);
    if let Some(parent) = at.parent() {
        mkdir_p(parent)?;
    }
    std::fs::File::create(&at).map_err(io_err("create", &at))?;
    let src = Path::new(OLD).join("dev").join(rel);
    mount(Some(&src), &at, None, MsFlags::MS_BIND, None)?;
    let meta = std::fs::symlink_metadata(&at).map_err(io_err("stat", &at))?;
    let rdev = meta.rdev();
    let same = meta.file_type().is_char_device()
        && nix::sys::stat::major(rdev) as u32 == node.major
        && nix::sys::stat::minor(rdev) as u32 == node.minor;
    if !same {
        return Err(MountError::Invalid(format!(
            "device {}: no longer the character device {}:{} found before the run; nothing ran",
            node.path.display(),
            node.major,
            node.minor
        )));
    }
    Ok(())
}

fn setup_proc() -> Result<(), MountError> {
    let proc = Path::new(NEW).join("proc");
    mkdir_p(&proc)?;
    mount(
        Some(Path::new("proc")),
        &proc,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    // /proc/sysrq-trigger needs CAP_SYS_ADMIN in the initial user namespace,
    // so it is not re-bound; /proc/sys holds sysctls of our own namespaces.
    let sys = proc.join("sys");
    if std::fs::symlink_metadata(&sys).is_ok() {
        mount(
            Some(&sys),
            &sys,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        remount_ro(&sys)?;
    }
    Ok(())
}

/// overlayfs options take `,` as the separator and `:` between lower
/// layers, both escaped with `\\`.
fn overlay_path(p: &Path) -> String {
    let mut out = String::new();
    for ch in p.to_string_lossy().chars() {
        if matches!(ch, '\\' | ',' | ':') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The options of an overlay workspace's mount: `userxattr` (the only way
/// without privilege, Linux 5.11), never redirects, an index or metacopy
/// (the layer reader in `overlay::scan` knows exactly this format), and
/// `volatile`: no sync of the upper filesystem at unmount or on fsync, which
/// costs milliseconds per command (see `overlay::hold` for what a crash means).
pub fn overlay_options(lower: &Path, upper: &Path, work: &Path) -> String {
    format!(
        "lowerdir={},upperdir={},workdir={},userxattr,redirect_dir=nofollow,index=off,metacopy=off,volatile",
        overlay_path(lower),
        overlay_path(upper),
        overlay_path(work)
    )
}

/// Mount the overlay workspace at [`OVL`] from `lower`, `upper` and `work`
/// as the scratch root sees them (under the old root or an id-mapped tree);
/// `upper` the host path, for messages.
fn mount_overlay(
    (lower, upper, work): (&Path, &Path, &Path),
    host_upper: &Path,
) -> Result<(), MountError> {
    let opts = overlay_options(lower, upper, work);
    let upper = host_upper;
    #[cfg(debug_assertions)]
    if let Some(errno) = std::env::var("SHELLCAGE_TEST_OVERLAY_ERRNO")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Err(overlay_refused(nix::errno::Errno::from_raw(errno), upper));
    }
    nix::mount::mount(
        Some("overlay"),
        OVL,
        Some("overlay"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|e| overlay_refused(e, upper))
}

/// What a refused overlay mount means, and the fix.
fn overlay_refused(errno: nix::errno::Errno, upper: &Path) -> MountError {
    use nix::errno::Errno;
    let (why, hint) = match errno {
        Errno::ENODEV => (
            "this kernel has no overlayfs".to_string(),
            "load the overlay module (CONFIG_OVERLAY_FS), or run without --overlay".to_string(),
        ),
        Errno::EPERM | Errno::EACCES => (
            "the kernel does not let a user namespace mount overlayfs (Linux 5.11 or later, not restricted by a security module)".into(),
            "upgrade the kernel or allow it, or run without --overlay".into(),
        ),
        Errno::EINVAL => (
            format!(
                "overlayfs refused the layer: a kernel without 'userxattr' (before 5.11), a layer directory {} on a filesystem that cannot hold an upper layer (overlayfs, NFS, FUSE), or a workspace stacked too deep",
                upper.display()
            ),
            "set XDG_STATE_HOME to a directory on ext4, xfs, btrfs or tmpfs, or run without --overlay".into(),
        ),
        e => (
            format!("mount overlay: {}", e.desc().to_lowercase()),
            "run without --overlay; see 'shellcage doctor'".into(),
        ),
    };
    MountError::Invalid(format!(
        "cannot enforce 'reversible workspace': the workspace's overlay layer did not mount ({errno}): {why} (hint: {hint}); nothing ran and the host workspace is unchanged"
    ))
}

/// Build the new root from `plan` and pivot into it. Runs as pid 1 of the
/// sandbox with full capabilities in its own user namespace. `idmapped`: the
/// detached id-mapped mounts of `plan.idmapped`, in its order (a sandbox
/// started by root; none otherwise).
pub fn apply(plan: &MountPlan, idmapped: Vec<OwnedFd>) -> Result<(), MountError> {
    if idmapped.len() != plan.idmapped.len() {
        return Err(MountError::Invalid(format!(
            "{} id-mapped trees received, {} planned",
            idmapped.len(),
            plan.idmapped.len()
        )));
    }
    // Nothing we do here may propagate back to the host.
    mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    // A scratch tmpfs over /tmp becomes the temporary root, so every host path
    // (including ones under /tmp) stays reachable under /oldroot.
    let base = Path::new(BASE);
    mount(
        Some(Path::new("tmpfs")),
        base,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=65536,mode=0755"),
    )?;
    std::env::set_current_dir(base).map_err(io_err("chdir", base))?;
    for d in [
        "newroot", "oldroot", "masks", "ws-ro", "files", "ovl", "idmap",
    ] {
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(d)
            .map_err(io_err("mkdir", Path::new(d)))?;
    }
    sys::create_placeholder_file(Path::new("masks/file"), 0)
        .map_err(io_err("create", Path::new(MASK_FILE)))?;
    std::fs::DirBuilder::new()
        .mode(0o000)
        .create("masks/dir")
        .map_err(io_err("mkdir", Path::new(MASK_DIR)))?;
    nix::unistd::pivot_root(".", "oldroot").map_err(|e| SysError::new("pivot_root", BASE, e))?;
    std::env::set_current_dir("/").map_err(io_err("chdir", Path::new("/")))?;

    let new = Path::new(NEW);
    mount(
        Some(Path::new("tmpfs")),
        new,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=1048576,mode=0755"),
    )?;

    let masks = Path::new(MASKS);
    mount(Some(masks), masks, None, MsFlags::MS_BIND, None)?;
    remount_ro(masks)?;
    write_files(plan)?;

    // /dev and /proc first: the device binds must not be nodev, and a new proc
    // mount must be made while the host's proc is visible as it is.
    let (special, rest): (Vec<&Op>, Vec<&Op>) = plan
        .ops
        .iter()
        .partition(|op| matches!(op, Op::Dev { .. } | Op::Proc));
    let mut state = State::default();
    for (i, (tree, mount)) in plan.idmapped.iter().zip(idmapped).enumerate() {
        let at = Path::new(IDMAP).join(i.to_string());
        ensure_mountpoint(&at, tree.dir)?;
        sys::move_mount_to(mount.as_fd(), &cpath(&at))?;
        state.idmapped.push((tree.path.clone(), at));
    }
    for op in special {
        apply_op(op, &mut state)
            .inspect_err(|err| tracing::debug!(%err, ?op, "mount step failed"))?;
    }
    if let Some(Op::Overlay {
        lower,
        upper,
        work,
        at,
    }) = plan.ops.iter().find(|op| matches!(op, Op::Overlay { .. }))
    {
        let (l, u, w) = (state.source(lower), state.source(upper), state.source(work));
        mount_overlay((&l, &u, &w), upper)?;
        state.merged = Some(at.clone());
    }
    // Then the whole old root read-only, nosuid, nodev in one call (our copy of
    // the host's mounts; the host is not affected): every bind from it inherits
    // those flags, so each read-only bind is a single mount.
    sys::make_tree_attrs(&cpath(Path::new(OLD)), true, true)?;
    for op in rest {
        apply_op(op, &mut state)
            .inspect_err(|err| tracing::debug!(%err, ?op, "mount step failed"))?;
    }

    remount_ro(new)?;
    std::env::set_current_dir(new).map_err(io_err("chdir", new))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| SysError::new("pivot_root", NEW, e))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| SysError::new("umount2", "old root", e))?;
    std::env::set_current_dir("/").map_err(io_err("chdir", Path::new("/")))?;
    Ok(())
}

/// Write the plan's generated files into a tmpfs at [`FILES`] (sized to
/// hold them) and make it read-only. Nothing to do without any.
fn write_files(plan: &MountPlan) -> Result<(), MountError> {
    let files: Vec<(&[u8], u32)> = plan
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::File { bytes, mode, .. } => Some((bytes.as_slice(), *mode)),
            _ => None,
        })
        .collect();
    if files.is_empty() {
        return Ok(());
    }
    let size: u64 = files
        .iter()
        .map(|(b, _)| (b.len() as u64).div_ceil(4096) * 4096 + 4096)
        .sum::<u64>()
        + 65536;
    let dir = Path::new(FILES);
    mount(
        Some(Path::new("tmpfs")),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("size={size},mode=0755")),
    )?;
    for (i, (bytes, mode)) in files.iter().enumerate() {
        let path = dir.join(i.to_string());
        std::fs::write(&path, bytes).map_err(io_err("write", &path))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(*mode))
            .map_err(io_err("chmod", &path))?;
    }
    remount_ro(dir)?;
    Ok(())
}

/// Bind the next generated file at `at` (a sandbox path). The path must not
/// pass through a symlink (the host side checked the same): the copy shows
/// exactly where it was planned, or the run stops.
fn bind_file(at: &Path, state: &mut State) -> Result<(), MountError> {
    let target = under(NEW, at);
    let src = Path::new(FILES).join(state.next_file.to_string());
    state.next_file += 1;
    ensure_mountpoint(&target, false)?;
    let real = std::fs::canonicalize(&target).map_err(io_err("resolve", &target))?;
    if real != target || !std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_file()) {
        return Err(MountError::Invalid(format!(
            "generated file {}: the path is not a plain file in the sandbox",
            at.display()
        )));
    }
    // Read-only, nosuid, nodev by inheritance from the FILES mount.
    mount(Some(&src), &target, None, MsFlags::MS_BIND, None)?;
    Ok(())
}

fn apply_op(op: &Op, state: &mut State) -> Result<(), MountError> {
    match op {
        Op::Tmpfs { at, size, mode } => tmpfs(&under(NEW, at), *size, *mode),
        Op::Bind {
            src,
            at,
            readonly,
            dir,
        } => bind(&state.source(src), &under(NEW, at), *readonly, *dir),
        Op::Symlink { target, at } => {
            let at = under(NEW, at);
            if let Some(parent) = at.parent() {
                mkdir_p(parent)?;
            }
            std::os::unix::fs::symlink(target, &at).map_err(io_err("symlink", &at))
        }
        Op::Mask { at, dir: true } => {
            // Read-only by inheritance from the read-only MASKS mount.
            mount(
                Some(Path::new(MASK_DIR)),
                &under(NEW, at),
                None,
                MsFlags::MS_BIND,
                None,
            )?;
            Ok(())
        }
        Op::Mask { at, dir: false } => {
            // A file mask covers what is at `at` without following a final
            // symlink: a `.env` that is a link is masked itself (its target,
            // when visible, has a mask of its own), and a file swapped for a
            // link since the plan cannot move the mask elsewhere. The clone of
            // the MASKS bind keeps its read-only flag.
            sys::mount_symlink_over(Path::new(MASK_FILE), &under(NEW, at))?;
            Ok(())
        }
        Op::Pin { at } => bind(&state.source(at), &under(NEW, at), false, true),
        // The merged view (mounted at OVL by `apply`) takes the workspace's place.
        Op::Overlay { at, .. } => bind(Path::new(OVL), &under(NEW, at), false, true),
        Op::Protect { ws, at, node } => {
            let staging = Path::new(WS_RO);
            if !state.ws_staged {
                mount(
                    Some(&state.source(ws)),
                    staging,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )?;
                sys::make_tree_attrs(&cpath(staging), true, true)?;
                state.ws_staged = true;
            }
            let rel = at.strip_prefix(ws).map_err(|_| {
                MountError::Invalid(format!(
                    "protected path {} is outside the workspace",
                    at.display()
                ))
            })?;
            let target = under(NEW, at);
            if *node == Node::Link {
                return bind_link(&staging.join(rel), &target);
            }
            ensure_mountpoint(&target, *node == Node::Dir)?;
            // Read-only (and nosuid, nodev) by inheritance from the staged view.
            mount(
                Some(&staging.join(rel)),
                &target,
                None,
                MsFlags::MS_BIND,
                None,
            )?;
            Ok(())
        }
        Op::Redirect { at, private } => {
            // The link lives in the scratch root (never on the host); its
            // target is the copy's path as the sandbox sees it.
            let links = Path::new("/links");
            if std::fs::symlink_metadata(links).is_err() {
                mkdir_p(links)?;
            }
            let n = std::fs::read_dir(links).map(|d| d.count()).unwrap_or(0);
            let link = links.join(n.to_string());
            std::os::unix::fs::symlink(private, &link).map_err(io_err("symlink", &link))?;
            bind_link(&link, &under(NEW, at))
        }
        Op::Dev {
            shm_size,
            nodes,
            links,
        } => setup_dev(*shm_size, nodes, links),
        Op::Proc => setup_proc(),
        Op::File { at, .. } => bind_file(at, state),
    }
}

/// A session's command, in its private copy of the session's mount namespace (see the
/// `session` module): mask the `.env` files and unreadable directories `masks` that the
/// session's root does not mask (made, or deleted and made again, since it was built:
/// `(path, is a directory)`; a path gone meanwhile has nothing to hide).
///
/// The masks come from a small read-only tmpfs mounted over `/proc` for the moment
/// (nothing of the root is writable by us, and nothing there would be hidden), which
/// is detached again afterwards.
pub fn mask_for_command(masks: &[(PathBuf, bool)]) -> Result<(), MountError> {
    if masks.is_empty() {
        return Ok(());
    }
    let proc = Path::new("/proc");
    mount(
        Some(Path::new("tmpfs")),
        proc,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=4096,mode=0755"),
    )?;
    let (file, dir) = (proc.join("file"), proc.join("dir"));
    sys::create_placeholder_file(&file, 0).map_err(io_err("create", &file))?;
    std::fs::DirBuilder::new()
        .mode(0o000)
        .create(&dir)
        .map_err(io_err("mkdir", &dir))?;
    mount(
        None,
        proc,
        None,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        Some("size=4096,mode=0755"),
    )?;
    for (at, is_dir) in masks {
        let done = if *is_dir {
            mount(Some(&dir), at, None, MsFlags::MS_BIND, None)
        } else {
            sys::mount_symlink_over(&file, at)
        };
        match done {
            Ok(()) => {}
            Err(e) if e.errno == nix::errno::Errno::ENOENT => {}
            Err(e) => return Err(e.into()),
        }
    }
    nix::mount::umount2(proc, MntFlags::MNT_DETACH)
        .map_err(|e| SysError::new("umount2", "/proc (masks)", e))?;
    Ok(())
}

/// A session's command, in its private copy of the session's mount namespace: bind each
/// of `paths` (the placeholders its handler put in place on the host for this command,
/// see [`super::hold_for_command`]) read-only over itself, a final symlink not followed,
/// as a cold run's protected paths are.
pub fn hold_placeholders(paths: &[PathBuf]) -> Result<(), MountError> {
    for p in paths {
        let c = cpath(p);
        let tree = sys::open_tree_clone(&c, false, true)?;
        sys::detached_tree_attrs(tree.as_fd(), sys::MOUNT_RDONLY | sys::MOUNT_NOSUID_NODEV)?;
        sys::move_mount_to(tree.as_fd(), &c)?;
    }
    Ok(())
}

/// A session's command: its own `/proc` (its pid namespace is new), over the session's,
/// which stays mounted below: the kernel lets a user namespace mount a proc only while
/// a fully visible one is there.
pub fn mount_own_proc() -> Result<(), MountError> {
    let proc = Path::new("/proc");
    mount(
        Some(Path::new("proc")),
        proc,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    let sys_dir = proc.join("sys");
    if std::fs::symlink_metadata(&sys_dir).is_ok() {
        mount(
            Some(&sys_dir),
            &sys_dir,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        remount_ro(&sys_dir)?;
    }
    Ok(())
}

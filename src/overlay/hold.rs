//! Holding a layer for a sandbox that mounts it (`run --overlay`; a session
//! holds it once for all its commands).
//!
//! overlayfs must never have two mounts of one upper directory at once (the
//! kernel only warns: the result is undefined), so whoever mounts a layer
//! holds its lock (the same one `apply` and `discard` take) for the whole
//! life of the mount: a second command on the layer waits, and says so.
//!
//! The mount is `volatile` (see `sandbox::mount`'s options): the kernel then
//! leaves `work/work/incompat/volatile` behind and refuses the next mount
//! while it is there. It is removed here, under the lock, before the next
//! mount. When the machine restarted since the layer was last mounted, its
//! last writes may not have reached the disk: that is said once.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use super::OverlayError;
use super::store::{Layer, LayerProfile, Store, lock_file};
use crate::sandbox::mount::LayerDirs;

/// A layer held for mounting: its directories, and its lock until dropped.
pub struct Held {
    pub layer: Layer,
    pub dirs: LayerDirs,
    lock: Flock<File>,
}

impl Held {
    /// The lock's descriptor: the sandbox's init keeps a copy, so the lock
    /// outlives a killed supervisor until the sandbox is gone too.
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.lock.as_raw_fd()
    }
}

/// Why a layer could not be held in time.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error(transparent)]
    Layer(#[from] OverlayError),
    #[error("timeout after {0:?} waiting for layer {1:?} (another command is using it)")]
    Timeout(Duration, String),
}

const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Begin (or open) layer `name` of `workspace`, recording `profile` in a new
/// one, and take its lock, waiting (and saying so on stderr) while another
/// command holds it, until `deadline` if there is one.
pub fn hold(
    store: &Store,
    workspace: &Path,
    name: &str,
    profile: &LayerProfile,
    deadline: Option<(Instant, Duration)>,
) -> Result<Held, HoldError> {
    let layer = Layer::begin_with(store, workspace, name, Some(profile))?;
    let lock = lock(&layer, deadline)?;
    check_upper_fs(&layer.upper())?;
    clear_volatile(&layer)?;
    let dirs = LayerDirs {
        name: name.to_string(),
        upper: layer.upper(),
        work: layer.work(),
    };
    Ok(Held { layer, dirs, lock })
}

fn lock(layer: &Layer, deadline: Option<(Instant, Duration)>) -> Result<Flock<File>, HoldError> {
    let path = layer.dir.join("lock");
    let mut file = lock_file(&layer.dir)?;
    let mut said = false;
    let mut asked = Instant::now();
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => file = f,
            Err((_, e)) => return Err(OverlayError::io("cannot lock", &path, e.into()).into()),
        }
        // A session that holds the layer between its commands is asked to end once its
        // running ones have (else it would keep the layer until its idle time); asked
        // again every 200 ms, for one that started (or wrote its description) since.
        if asked.elapsed() >= Duration::from_millis(200) || !said {
            super::release(&layer.dir, super::Release::AfterCommands);
            asked = Instant::now();
        }
        if !said {
            crate::say!(
                "shellcage: waiting for layer {:?}: another command is using it (one mount of a layer at a time)",
                layer.name()
            );
            said = true;
        }
        if let Some((start, limit)) = deadline {
            if start.elapsed() >= limit {
                return Err(HoldError::Timeout(limit, layer.name().to_string()));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An upper directory on overlayfs or NFS cannot be mounted: say so before
/// trying (the kernel's EINVAL would not name the reason).
fn check_upper_fs(upper: &Path) -> Result<(), OverlayError> {
    use nix::sys::statfs::{NFS_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC, statfs};
    let st = statfs(upper).map_err(|e| OverlayError::io("cannot statfs", upper, e.into()))?;
    let name = match st.filesystem_type() {
        t if t == OVERLAYFS_SUPER_MAGIC => "overlayfs",
        t if t == NFS_SUPER_MAGIC => "NFS",
        _ => return Ok(()),
    };
    Err(OverlayError::Invalid(format!(
        "the layer directory {} is on {name}, which cannot hold an overlay upper layer (hint: set XDG_STATE_HOME to a directory on ext4, xfs, btrfs or tmpfs)",
        upper.display()
    )))
}

fn read_small(path: &Path) -> Option<String> {
    let mut s = String::new();
    File::open(path)
        .ok()?
        .take(256)
        .read_to_string(&mut s)
        .ok()?;
    Some(s.trim().to_string())
}

/// Remove the kernel's scratch directory `work/work` with the `volatile`
/// marker in it (under the lock: no mount of this layer exists; the kernel
/// makes a new one at every mount), and note the boot it was last mounted in.
fn clear_volatile(layer: &Layer) -> Result<(), OverlayError> {
    use std::os::unix::fs::PermissionsExt;
    let work = layer.work();
    let inner = work.join("work");
    let boot_file = layer.dir.join("boot_id");
    let boot = read_small(Path::new(BOOT_ID)).unwrap_or_default();
    let last = read_small(&boot_file);
    if let Ok(m) = std::fs::symlink_metadata(&inner) {
        // The kernel makes it mode 000: open it up (ours; a private,
        // locked directory) to see the marker as a non-root user.
        if m.is_dir() && m.permissions().mode() & 0o700 != 0o700 {
            std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| OverlayError::io("cannot open up", &inner, e))?;
        }
        let volatile = std::fs::symlink_metadata(inner.join("incompat/volatile")).is_ok();
        if volatile && last.as_deref() != Some(boot.as_str()) {
            crate::say!(
                "shellcage: warning: the machine restarted while layer {:?} was in use: its last writes may not have reached the disk (review with 'shellcage changes --layer {}')",
                layer.name(),
                layer.name()
            );
        }
        let wdir =
            super::fs::open_dir(&work).map_err(|e| OverlayError::io("cannot open", &work, e))?;
        super::fs::remove_tree_at(
            std::os::fd::AsFd::as_fd(&wdir),
            std::ffi::OsStr::new("work"),
        )
        .map_err(|e| OverlayError::io("cannot clean", &inner, e))?;
    }
    if last.as_deref() != Some(boot.as_str()) {
        super::store::write_atomic(&boot_file, format!("{boot}\n").as_bytes())?;
    }
    Ok(())
}

/// The store directory to keep out of the sandbox's view.
pub fn store_root(store: &Store) -> PathBuf {
    store.root.clone()
}

//! The mount namespace: a new root built from a tmpfs, bind mounts of the
//! allowed host paths (at the same paths), masks over secrets, and read-only
//! binds over protected workspace paths.
//!
//! [`prepare`] runs in the supervisor before any namespace exists and yields a
//! [`MountPlan`], a list of operations:
//! - `describe` reads the host (lstat, readdir, globs) and writes nothing;
//! - `protect` handles protected paths in a writable workspace, the one step
//!   that writes to the host (placeholders, removed by [`cleanup`]);
//! - `env_scan` finds the `.env` files to mask;
//! - `layer` does the same in the merged view of an overlay workspace.
//!
//! `apply` runs in the sandbox init and only executes the plan's operations.

mod apply;
mod describe;
mod env_scan;
mod layer;
mod protect;

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::policy::Policy;
use crate::sandbox::devices::{DeviceLink, DeviceNode, GpuNodes};
use crate::sys::SysError;

pub use apply::{apply, hold_placeholders, mask_for_command, mount_own_proc};
pub use env_scan::EnvScan;
pub use env_scan::{is_env_file, scan_watched};
pub use layer::LayerDirs;
pub use protect::{
    AfterRun, CommandHolds, Hold, PrivateConfig, Protection, RepoCheck, hold_for_command,
};

/// Device nodes bound from the host into the sandbox's /dev.
pub const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Sys(#[from] SysError),
    /// `err` is not named `source`: the message already ends with it, and a
    /// source would print it twice under `{:#}`.
    #[error("{what} {path}: {err}")]
    Io {
        what: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    EnvScan(#[from] env_scan::EnvScanError),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MountError + use<> {
    let path = path.to_path_buf();
    move |err| MountError::Io { what, path, err }
}

/// One step of building the sandbox root. Paths in `at` are sandbox paths
/// (equal to the host paths they show); `src` are host paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Tmpfs {
        at: PathBuf,
        size: u64,
        mode: u32,
    },
    Bind {
        src: PathBuf,
        at: PathBuf,
        readonly: bool,
        dir: bool,
    },
    Symlink {
        target: PathBuf,
        at: PathBuf,
    },
    /// Writable bind of a workspace directory over itself: a mount point
    /// cannot be renamed or removed (EBUSY), so the directories above a
    /// protected or masked path stay where they are (`mv .git x` would
    /// otherwise carry the read-only binds away and let a new `.git` in).
    Pin {
        at: PathBuf,
    },
    /// The workspace as an overlay: `lower` (the host workspace) under the
    /// layer's `upper` and `work` directories (host paths), mounted at `at`.
    /// Pins and protected paths inside it are bound from the merged view.
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        at: PathBuf,
    },
    /// Read-only bind of a path inside the workspace over itself (protected
    /// paths); `ws` is the workspace, staged read-only once for all of them.
    /// A symlink is mounted as itself (never followed).
    Protect {
        ws: PathBuf,
        at: PathBuf,
        node: Node,
    },
    Mask {
        at: PathBuf,
        dir: bool,
    },
    /// A symlink to `private` mounted over the workspace file `at` (a git
    /// config the sandbox gets a private copy of): git's writes follow the
    /// link to the copy; the name itself cannot be removed or replaced.
    Redirect {
        at: PathBuf,
        private: PathBuf,
    },
    /// The sandbox's own /dev: the basic [`DEV_NODES`], and the host devices
    /// the profile asks for (`[devices] gpu`, added by
    /// [`MountPlan::add_devices`]): `nodes` bound one by one, `links` made as
    /// the same symlinks.
    Dev {
        shm_size: u64,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        nodes: Vec<DeviceNode>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        links: Vec<DeviceLink>,
    },
    Proc,
    /// A small file generated on the host side (a sanitised config copy, a
    /// hook, resolv.conf), shown read-only at `at`. The init writes it into a
    /// private tmpfs that is then made read-only, and binds it there; nothing
    /// is written to the host. Added with [`MountPlan::add_file`].
    File {
        at: PathBuf,
        #[serde(rename = "len", serialize_with = "bytes_len")]
        bytes: Vec<u8>,
        mode: u32,
    },
}

fn bytes_len<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(b.len() as u64)
}

impl Op {
    /// Where in the sandbox the operation acts.
    pub fn at(&self) -> &Path {
        match self {
            Op::Tmpfs { at, .. }
            | Op::Bind { at, .. }
            | Op::Symlink { at, .. }
            | Op::Mask { at, .. }
            | Op::Redirect { at, .. }
            | Op::Pin { at }
            | Op::Overlay { at, .. }
            | Op::Protect { at, .. }
            | Op::File { at, .. } => at,
            Op::Dev { .. } => Path::new("/dev"),
            Op::Proc => Path::new("/proc"),
        }
    }
}

/// What a protected path is on the host, which decides how it is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    Dir,
    File,
    /// A symlink (mounted as itself: the link cannot be replaced).
    Link,
}

/// Paths as the Landlock layer sees them inside the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VisiblePaths {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
}

/// A host tree a sandbox started by root binds through an id-mapped mount
/// (see [`crate::sandbox::rootview`]): every operation whose source lies
/// under `path` takes it from that mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdmappedTree {
    pub path: PathBuf,
    pub readonly: bool,
    /// A directory (else a file).
    pub dir: bool,
}

/// Everything `apply` needs, computed on the host side.
#[derive(Debug, Serialize)]
pub struct MountPlan {
    pub ops: Vec<Op>,
    pub visible: VisiblePaths,
    pub env_scan: EnvScan,
    /// The trees the supervisor passes as id-mapped mounts, in this order
    /// (a sandbox started by root; empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub idmapped: Vec<IdmappedTree>,
    /// What protecting the workspace did on the host (undone by [`cleanup`]).
    #[serde(flatten)]
    pub protection: Protection,
}

fn depth(p: &Path) -> usize {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

/// The mount plan for `policy`: the binds (nothing written yet, so a missing
/// path fails cleanly), then the protected paths (placeholders created), then
/// the masks. With `layer`, the workspace is an overlay of the host
/// workspace under that layer, and everything inside it is found in the
/// merged view.
pub fn prepare(policy: &Policy, layer: Option<&LayerDirs>) -> Result<MountPlan, MountError> {
    prepare_scanned(policy, layer, None)
}

/// [`prepare`] with the `.env` files already found (`scan`, a session's index).
pub fn prepare_scanned(
    policy: &Policy,
    layer: Option<&LayerDirs>,
    scan: Option<EnvScan>,
) -> Result<MountPlan, MountError> {
    let mut binds = describe::binds(policy)?;
    // Before anything is written to the host: a scan that refuses leaves
    // nothing to undo.
    let env_scan = match (policy.env_files.enabled, layer, scan) {
        (false, _, _) => EnvScan::default(),
        (true, None, Some(found)) => found,
        (true, None, None) => env_scan::scan(&policy.workspace, &policy.env_files)?,
        (true, Some(l), _) => layer::env_scan(&policy.workspace, &l.upper, &policy.env_files)?,
    };
    let protection = match layer {
        None => protect::prepare(policy)?,
        Some(l) => {
            layer::make_overlay(policy, l, &mut binds)?;
            layer::protect(policy, l)?
        }
    };
    Ok(describe::finish(policy, binds, protection, env_scan))
}

/// Generated files larger than this are refused (they live in memory, in the
/// plan and in the sandbox's tmpfs).
pub const MAX_FILE: usize = 1 << 20;

/// How the sandbox shows a host path, by the innermost operation over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Through a bind of the host (read-only or writable).
    Bound { readonly: bool },
    /// Masked (a hidden file or directory).
    Masked,
    /// Not the host's: under one of the sandbox's own tmpfs mounts (home,
    /// /tmp) or a generated file.
    Own,
    /// Behind a symlink the plan recreates (the path resolves elsewhere).
    Symlink,
    /// Nowhere: outside every bind and tmpfs.
    Absent,
    /// In /dev, /proc, or a protected/pinned workspace path.
    Special,
}

impl MountPlan {
    /// How the sandbox shows `path` (a host path, equal to the sandbox path).
    pub fn shows(&self, path: &Path) -> Shown {
        let inner = self
            .ops
            .iter()
            .filter(|op| path.starts_with(op.at()))
            .max_by_key(|op| depth(op.at()));
        match inner {
            Some(Op::Bind { readonly, .. }) => Shown::Bound {
                readonly: *readonly,
            },
            Some(Op::Mask { .. }) => Shown::Masked,
            Some(Op::Tmpfs { .. } | Op::File { .. }) => Shown::Own,
            Some(Op::Symlink { .. }) => Shown::Symlink,
            None => Shown::Absent,
            Some(_) => Shown::Special,
        }
    }

    /// Bind the host device nodes `found` into the sandbox's /dev (and make
    /// its links), besides the basic nodes.
    pub fn add_devices(&mut self, found: &GpuNodes) {
        for op in &mut self.ops {
            if let Op::Dev { nodes, links, .. } = op {
                nodes.extend(found.nodes.iter().cloned());
                links.extend(found.links.iter().cloned());
            }
        }
    }

    /// Mask an existing file the sandbox would show (a config file that
    /// cannot be sanitised). Only for a file under a bind.
    pub fn add_mask(&mut self, at: &Path) {
        if matches!(self.shows(at), Shown::Bound { .. })
            && std::fs::symlink_metadata(at).is_ok_and(|m| m.is_file())
        {
            self.ops.push(Op::Mask {
                at: at.to_path_buf(),
                dir: false,
            });
        }
    }

    /// Show `bytes` read-only at `at` in the sandbox (see [`Op::File`]). `at`
    /// must be absolute and normal, and its mountpoint must be makeable
    /// without touching the host: either an existing regular file (not a
    /// symlink) under a read-only bind, which the copy then covers, or a path
    /// under one of the sandbox's own tmpfs mounts or the new root itself and
    /// under no bind. A path under a writable bind (the workspace, a
    /// persistent home) is refused: the mountpoint would be a host file the
    /// command can swap. A later file at the same path replaces the earlier.
    pub fn add_file(&mut self, at: &Path, bytes: Vec<u8>, mode: u32) -> Result<(), MountError> {
        let bad = |why: &str| {
            Err(MountError::Invalid(format!(
                "generated file {}: {why}",
                at.display()
            )))
        };
        if !at.is_absolute()
            || at
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
            || depth(at) == 0
        {
            return bad("not an absolute, normal path");
        }
        if bytes.len() > MAX_FILE {
            return bad("larger than 1 MiB");
        }
        // The innermost bind or tmpfs that contains `at` decides where the
        // mountpoint lives; a mask of exactly `at` is replaced by the file.
        let inside = |op: &&Op| at.starts_with(op.at()) && !matches!(op, Op::File { .. });
        let outer = self
            .ops
            .iter()
            .filter(inside)
            .filter(|op| !matches!(op, Op::Mask { at: m, dir: false } if m == at))
            .max_by_key(|op| depth(op.at()));
        match outer {
            Some(Op::Bind { readonly: true, .. }) => match std::fs::symlink_metadata(at) {
                Ok(m) if m.file_type().is_file() => {}
                Ok(_) => return bad("not a regular file on the host"),
                Err(_) => return bad("missing under a read-only bind"),
            },
            Some(Op::Tmpfs { .. }) | None => {}
            Some(Op::Mask { .. }) => return bad("inside a hidden directory"),
            Some(Op::Symlink { .. }) => return bad("behind a symlink"),
            Some(_) => return bad("under a writable or special mount"),
        }
        self.ops.retain(|op| {
            !(op.at() == at && matches!(op, Op::File { .. } | Op::Mask { dir: false, .. }))
        });
        self.ops.push(Op::File {
            at: at.to_path_buf(),
            bytes,
            mode: mode & 0o555,
        });
        if !self.visible.read.iter().any(|p| p == at) {
            self.visible.read.push(at.to_path_buf());
        }
        Ok(())
    }
}

/// Undo what [`prepare`] did on the host. Called by the supervisor on every
/// exit path (normal, signal, error).
pub fn after_command(
    plan: &MountPlan,
    since: (i64, i64),
    git_before: &[Option<Vec<u8>>],
) -> protect::AfterRun {
    protect::after_command(&plan.protection, since, git_before)
}

/// Undo what the plan did on the host, and the exit step (see [`protect::cleanup`]).
pub fn cleanup(plan: &MountPlan) -> protect::AfterRun {
    protect::cleanup(&plan.protection)
}

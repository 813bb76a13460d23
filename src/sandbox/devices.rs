//! Host devices a profile asks for (`[devices] gpu = true`, `--gpu`): which
//! nodes of the host's `/dev` the sandbox gets. Read on the host, before any
//! namespace exists; nothing here writes.
//!
//! The GPU nodes are found by name and type, never by following a link:
//! - `/dev/nvidia*` (`nvidia0`, `nvidiactl`, `nvidia-uvm`, `nvidia-modeset` …)
//!   and `/dev/nvidia-caps/*` (MIG capability nodes), character devices only;
//! - `/dev/dri/*` (DRM: `cardN` primary nodes, `renderDN` render nodes),
//!   character devices only, and the symlinks of `/dev/dri/by-path` whose
//!   target, taken as text, names one of those nodes (`../card0`): they are
//!   recreated as the same symlinks inside, so nothing is resolved on the host.
//!
//! Anything else under those names (a block device, a socket, a regular file,
//! a symlink at the top, a link leading elsewhere, a deeper directory) is
//! skipped and listed with the reason. The rest of `/dev` is never looked at.
//! The mount step binds exactly [`GpuNodes::nodes`] (checking each bind is still
//! the character device found here), and Landlock allows read, write and
//! `ioctl(2)` on exactly those paths.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

/// The names searched, for messages.
pub const GPU_PATTERNS: &str = "/dev/nvidia*, /dev/nvidia-caps/*, /dev/dri/*";

/// One character device node the sandbox gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceNode {
    /// Its path, the same on the host and in the sandbox (`/dev/dri/renderD128`).
    pub path: PathBuf,
    pub major: u32,
    pub minor: u32,
}

/// A symlink recreated in the sandbox's /dev (`/dev/dri/by-path/…-render`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceLink {
    pub path: PathBuf,
    /// The link's text, as on the host (`../renderD128`).
    pub target: PathBuf,
}

/// An entry under the searched names that is not exposed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub why: &'static str,
}

/// What a run with `[devices] gpu = true` exposes (the report's `devices.gpu`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GpuNodes {
    pub nodes: Vec<DeviceNode>,
    pub links: Vec<DeviceLink>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

impl GpuNodes {
    /// The node's path relative to `/dev` (`dri/card0`), for the mount step.
    pub fn relative(path: &Path) -> &Path {
        path.strip_prefix("/dev").unwrap_or(path)
    }
}

/// The host's GPU nodes (see the module comment).
pub fn scan_gpu() -> GpuNodes {
    scan_gpu_in(Path::new("/dev"))
}

/// [`scan_gpu`] with `dev` read in place of `/dev` (tests); the paths found
/// are named as under `/dev`.
pub fn scan_gpu_in(dev: &Path) -> GpuNodes {
    let mut out = GpuNodes::default();
    let shown = |rel: &Path| Path::new("/dev").join(rel);
    let mut top: Vec<_> = match std::fs::read_dir(dev) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| n.as_encoded_bytes().starts_with(b"nvidia"))
            .collect(),
        Err(_) => Vec::new(),
    };
    top.sort();
    for name in top {
        let rel = PathBuf::from(&name);
        if name == "nvidia-caps" {
            scan_dir(dev, &rel, &mut out, false);
        } else {
            add_node(dev, &rel, &mut out);
        }
    }
    if std::fs::symlink_metadata(dev.join("dri")).is_ok() {
        scan_dir(dev, Path::new("dri"), &mut out, true);
    }
    out.skipped.iter_mut().for_each(|s| s.path = shown(&s.path));
    out
}

/// `rel` (below `dev`) if it is a character device.
fn add_node(dev: &Path, rel: &Path, out: &mut GpuNodes) {
    let why = match std::fs::symlink_metadata(dev.join(rel)) {
        Ok(m) if m.file_type().is_char_device() => {
            let rdev = m.rdev();
            out.nodes.push(DeviceNode {
                path: Path::new("/dev").join(rel),
                major: nix::sys::stat::major(rdev) as u32,
                minor: nix::sys::stat::minor(rdev) as u32,
            });
            return;
        }
        Ok(m) if m.file_type().is_block_device() => "a block device",
        Ok(m) if m.file_type().is_symlink() => "a symlink (only nodes are bound)",
        Ok(m) if m.is_dir() => "a directory",
        Ok(_) => "not a character device",
        Err(_) => "cannot be read",
    };
    out.skipped.push(Skipped {
        path: rel.to_path_buf(),
        why,
    });
}

/// The entries of the directory `rel` (below `dev`, not a symlink): its
/// character devices, and with `links` the symlinks of its `by-path`.
fn scan_dir(dev: &Path, rel: &Path, out: &mut GpuNodes, links: bool) {
    let dir = dev.join(rel);
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(m) => {
            let why = if m.file_type().is_symlink() {
                "a symlink (only nodes are bound)"
            } else {
                "not a directory"
            };
            out.skipped.push(Skipped {
                path: rel.to_path_buf(),
                why,
            });
            return;
        }
        Err(_) => return,
    }
    let mut names: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.file_name()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    let mut subdirs = Vec::new();
    for name in names {
        let child = rel.join(&name);
        if links
            && name == "by-path"
            && std::fs::symlink_metadata(dev.join(&child)).is_ok_and(|m| m.is_dir())
        {
            subdirs.push(child);
        } else {
            add_node(dev, &child, out);
        }
    }
    for by_path in subdirs {
        add_links(dev, rel, &by_path, out);
    }
}

/// The symlinks of `by_path` (below `dev`) whose text leads, without leaving
/// `parent`, to a node already found there.
fn add_links(dev: &Path, parent: &Path, by_path: &Path, out: &mut GpuNodes) {
    let mut names: Vec<_> = match std::fs::read_dir(dev.join(by_path)) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.file_name()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    for name in names {
        let rel = by_path.join(&name);
        let target = std::fs::read_link(dev.join(&rel)).ok();
        let leads_to = target.as_deref().and_then(|t| sibling_of(parent, t));
        let exposed = leads_to.is_some_and(|node| {
            let node = Path::new("/dev").join(node);
            out.nodes.iter().any(|n| n.path == node)
        });
        match (target, exposed) {
            (Some(target), true) => out.links.push(DeviceLink {
                path: Path::new("/dev").join(&rel),
                target,
            }),
            (Some(_), false) => out.skipped.push(Skipped {
                path: rel,
                why: "a link that does not lead to an exposed node",
            }),
            (None, _) => out.skipped.push(Skipped {
                path: rel,
                why: "not a symlink",
            }),
        }
    }
}

/// `../NAME` (exactly one level up, one plain name) → `parent/NAME`.
fn sibling_of(parent: &Path, target: &Path) -> Option<PathBuf> {
    let mut c = target.components();
    match (c.next(), c.next(), c.next()) {
        (Some(Component::ParentDir), Some(Component::Normal(name)), None) => {
            Some(parent.join(name))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;

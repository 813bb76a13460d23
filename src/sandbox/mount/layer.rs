//! An overlay workspace (`workspace = "overlay"`): the host side of its
//! mount plan.
//!
//! The sandbox sees the *merged* view: the host workspace (overlayfs's lower
//! layer) under the layer's upper directory. Protected paths, `.env` masks,
//! hide masks and pins must hold in that view, so they are found here by
//! reading the two trees the way overlayfs reads them with `userxattr`: a
//! whiteout (a 0/0 character device, or an empty file with
//! `user.overlay.whiteout`) deletes, an opaque directory (`user.overlay.opaque
//! = y`) hides the host's entries below it, a non-directory in the layer ends
//! the path, and redirects are never followed. Nothing here writes to the
//! layer: a placeholder for a missing protected path is made on the host, as
//! for a plain workspace, where the merged view shows the host's tree; where
//! only the layer could hold one, the run is refused.

use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::describe::Binds;
use super::env_scan::{self, EnvScan};
use super::protect::{self, Protection};
use super::{MountError, Node, Op};
use crate::policy::{Access, EnvFileScan, Policy};

/// The layer a workspace's writes go to: host paths of its overlayfs upper
/// and work directories (outside every tree the sandbox sees).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerDirs {
    /// The layer's name (messages).
    pub name: String,
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// What an entry of the merged view is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

impl Kind {
    fn of(m: &std::fs::Metadata) -> Kind {
        let t = m.file_type();
        if t.is_dir() {
            Kind::Dir
        } else if t.is_file() {
            Kind::File
        } else if t.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Other
        }
    }
}

/// What the merged view shows at a workspace-relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// The host's tree alone decides from here on: the layer holds nothing on
    /// the way that changes it (only directories merged with the host's).
    Host,
    /// The layer's entry at `at` (the path itself, or a non-directory above
    /// it that ends the path), of this kind.
    Layer { at: PathBuf, kind: Kind },
    /// Absent because of the layer at `at`: deleted there, or below a
    /// directory that exists only in the layer (or hides the host's).
    Gone { at: PathBuf, layer_only_dir: bool },
}

/// An overlayfs whiteout in an upper directory.
fn is_whiteout(path: &Path, m: &std::fs::Metadata) -> bool {
    let t = m.file_type();
    (t.is_char_device() && m.rdev() == 0)
        || (t.is_file() && m.len() == 0 && xattr(path, c"user.overlay.whiteout").is_some())
}

fn is_opaque(path: &Path) -> bool {
    xattr(path, c"user.overlay.opaque").is_some_and(|v| v == b"y")
}

/// The value of extended attribute `name` of `path` (not followed).
fn xattr(path: &Path, name: &std::ffi::CStr) -> Option<Vec<u8>> {
    let f = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    crate::sys::fgetxattr(f.as_fd(), name).ok().flatten()
}

/// Look `rel` (workspace-relative, clean) up in the merged view of `ws`
/// under `upper`, as overlayfs does.
pub fn lookup(ws: &Path, upper: &Path, rel: &Path) -> Merged {
    let comps: Vec<&std::ffi::OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut prefix = PathBuf::new();
    // The host has a directory at `prefix` that the merged view shows.
    let mut host = true;
    for (i, name) in comps.iter().enumerate() {
        prefix.push(name);
        let last = i + 1 == comps.len();
        let up = upper.join(&prefix);
        match std::fs::symlink_metadata(&up) {
            Ok(m) if is_whiteout(&up, &m) => {
                return Merged::Gone {
                    at: prefix,
                    layer_only_dir: false,
                };
            }
            Ok(m) if m.is_dir() => {
                if last {
                    return Merged::Layer {
                        at: prefix,
                        kind: Kind::Dir,
                    };
                }
                host = host
                    && !is_opaque(&up)
                    && std::fs::symlink_metadata(ws.join(&prefix)).is_ok_and(|h| h.is_dir());
            }
            Ok(m) => {
                return Merged::Layer {
                    at: prefix,
                    kind: Kind::of(&m),
                };
            }
            Err(_) if host => return Merged::Host,
            Err(_) => {
                return Merged::Gone {
                    at: prefix,
                    layer_only_dir: true,
                };
            }
        }
    }
    Merged::Host
}

/// The workspace becomes the overlay: refuse anything else that would show
/// host paths inside it (a `--read`/`--write` path or a symlink target there
/// would be bound over the merged view; a write path would reach the host).
pub fn make_overlay(policy: &Policy, layer: &LayerDirs, b: &mut Binds) -> Result<(), MountError> {
    let ws = &policy.workspace;
    if let Some(inside) = b
        .binds
        .iter()
        .map(|(p, _, _)| p)
        .chain(b.tree.iter().filter_map(|op| match op {
            Op::Symlink { at, .. } => Some(at),
            _ => None,
        }))
        .find(|p| p.starts_with(ws) && *p != ws)
    {
        return Err(MountError::Invalid(format!(
            "{} is inside the overlay workspace {}: a path of its own there would bypass the layer (hint: drop that --read/--write path or profile entry; the whole workspace is visible and writable in the layer)",
            inside.display(),
            ws.display()
        )));
    }
    for op in &mut b.tree {
        if let Op::Bind { src, at, .. } = op {
            if at == ws {
                *op = Op::Overlay {
                    lower: src.clone(),
                    upper: layer.upper.clone(),
                    work: layer.work.clone(),
                    at: ws.clone(),
                };
                break;
            }
        }
    }
    b.layer = Some(layer.clone());
    Ok(())
}

/// Protected paths of an overlay workspace, found in the merged view. Where
/// the host's tree decides the path, exactly as for a plain workspace (a
/// placeholder on the host, held by a read-only mount; git's redirect files
/// too), without the private `.git/config` copy merged back at exit; where
/// the layer holds it, a read-only mount of the merged path. What no mount
/// can hold (a symlink the layer made, a path the layer deleted, or one
/// below a directory only the layer has) refuses the run.
pub fn protect(policy: &Policy, layer: &LayerDirs) -> Result<Protection, MountError> {
    let ws = &policy.workspace;
    if policy.workspace_access != Access::Write || policy.protect.is_empty() {
        return Ok(Protection::default());
    }
    let mut host = Vec::new();
    let mut held: Vec<(PathBuf, Node)> = Vec::new();
    for rel in &policy.protect {
        match lookup(ws, &layer.upper, rel) {
            Merged::Host => host.push(rel.clone()),
            Merged::Layer { kind, at } => held.push(held_in_layer(ws, layer, rel, kind, &at)?),
            Merged::Gone { at, layer_only_dir } => {
                return Err(gone(ws, layer, rel, &at, layer_only_dir));
            }
        }
    }
    let mut host_policy = policy.clone();
    host_policy.protect = host;
    let mut out = protect::prepare_for_overlay(&host_policy)?;
    for (path, node) in held {
        let covered = out
            .protected
            .iter()
            .any(|(p, n)| *n == Node::Dir && path.starts_with(p) && path != *p);
        if !covered {
            protect::add(&mut out.protected, path, node);
        }
    }
    Ok(out)
}

/// A protected path the layer holds (itself, or a file above it such as
/// `.git` as a file): mounted read-only from the merged view.
fn held_in_layer(
    ws: &Path,
    layer: &LayerDirs,
    rel: &Path,
    kind: Kind,
    at: &Path,
) -> Result<(PathBuf, Node), MountError> {
    let node = match kind {
        Kind::Dir => Node::Dir,
        Kind::File | Kind::Other => Node::File,
        Kind::Symlink => {
            return Err(MountError::Invalid(format!(
                "protected path {} is a symlink in layer {:?} ({} there), which a read-only mount cannot hold (hint: `shellcage discard --layer {}`, or apply the layer first)",
                ws.join(at).display(),
                layer.name,
                rel.display(),
                layer.name
            )));
        }
    };
    Ok((ws.join(at), node))
}

fn gone(ws: &Path, layer: &LayerDirs, rel: &Path, at: &Path, layer_only_dir: bool) -> MountError {
    MountError::Invalid(format!(
        "protected path {} cannot be held read-only in layer {:?}: {} (hint: review with `shellcage changes --layer {}`, then `apply` or `discard` the layer)",
        ws.join(rel).display(),
        layer.name,
        if layer_only_dir {
            format!(
                "{} exists only in the layer, so no placeholder can be made for it on the host",
                ws.join(at.parent().unwrap_or(at)).display()
            )
        } else {
            format!("{} was deleted in the layer", ws.join(at).display())
        },
        layer.name
    ))
}

/// The `.env` files of the merged view: the scan of the host workspace and
/// the scan of the layer (each fails closed as `env_scan::scan` does), kept
/// where the merged view shows them; directories either scan could not read
/// are masked whole.
pub fn env_scan(ws: &Path, upper: &Path, cfg: &EnvFileScan) -> Result<EnvScan, MountError> {
    let host = env_scan::scan(ws, cfg)?;
    let layer = env_scan::scan(upper, cfg)?;
    let shown_host = |p: &PathBuf| {
        p.strip_prefix(ws)
            .is_ok_and(|rel| lookup(ws, upper, rel) == Merged::Host)
    };
    // A layer entry at its workspace path, when the merged view shows it.
    let shown_layer = |p: &PathBuf, dir: bool| -> Option<PathBuf> {
        let rel = p.strip_prefix(upper).ok()?;
        match lookup(ws, upper, rel) {
            Merged::Layer { at, kind } if at == rel => {
                let ok = if dir {
                    kind == Kind::Dir
                } else {
                    matches!(kind, Kind::File | Kind::Symlink)
                };
                ok.then(|| ws.join(rel))
            }
            _ => None,
        }
    };
    let mut out = EnvScan {
        dirs_read: host.dirs_read + layer.dirs_read,
        ..EnvScan::default()
    };
    let merge = |host_list: Vec<PathBuf>, layer_list: Vec<PathBuf>, dir: bool| {
        let mut v: Vec<PathBuf> = host_list.into_iter().filter(|p| shown_host(p)).collect();
        for p in layer_list.iter().filter_map(|p| shown_layer(p, dir)) {
            if !v.contains(&p) {
                v.push(p);
            }
        }
        v
    };
    out.hidden = merge(host.hidden, layer.hidden, false);
    out.links = merge(host.links, layer.links, false);
    out.unreadable = merge(host.unreadable, layer.unreadable, true);
    Ok(out)
}

/// A hidden path inside an overlay workspace, as the merged view shows it:
/// `Some(is a directory)` to mask it, `None` when there is nothing to mask
/// (absent, or a symlink the layer made: a link holds no secret).
pub fn masked_kind(ws: &Path, upper: &Path, path: &Path) -> Option<bool> {
    let rel = path.strip_prefix(ws).ok()?;
    match lookup(ws, upper, rel) {
        Merged::Host => std::fs::metadata(path).ok().map(|m| m.is_dir()),
        Merged::Layer { at, kind } if at == rel => match kind {
            Kind::Dir => Some(true),
            Kind::File | Kind::Other => Some(false),
            Kind::Symlink => None,
        },
        Merged::Layer { .. } | Merged::Gone { .. } => None,
    }
}

/// Candidates for a hide pattern inside an overlay workspace: the host's
/// matches and the layer's (at their workspace paths).
pub fn hide_candidates(
    ws: &Path,
    upper: &Path,
    pattern: &Path,
    expand: impl Fn(&Path) -> Vec<PathBuf>,
) -> Vec<PathBuf> {
    let mut out = expand(pattern);
    if let Ok(rel) = pattern.strip_prefix(ws) {
        for p in expand(&upper.join(rel)) {
            if let Ok(r) = p.strip_prefix(upper) {
                let p = ws.join(r);
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;

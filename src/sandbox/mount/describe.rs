//! The host side of the mount plan: reads the host (lstat, readlink, readdir,
//! globs) and writes nothing. [`binds`] is the root's skeleton and the bind
//! mounts; [`finish`] adds the read-only binds over protected paths (found by
//! `protect`), the masks over secrets and `.env` files, and the pins.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::env_scan::EnvScan;
use super::layer::{self, LayerDirs};
use super::protect::Protection;
use super::{MountError, MountPlan, Op, VisiblePaths, depth, io_err};
use crate::policy::{Access, PathRule, Policy, wildcard_match};

/// The first half of a mount plan: every operation but the masks.
#[derive(Debug)]
pub struct Binds {
    pub(super) tree: Vec<Op>,
    /// (path, access, is a directory), in bind order.
    pub(super) binds: Vec<(PathBuf, Access, bool)>,
    visible: VisiblePaths,
    /// An overlay workspace's layer (set by `layer::make_overlay`).
    pub(super) layer: Option<LayerDirs>,
}

fn is_within(p: &Path, root: &Path) -> bool {
    p.starts_with(root)
}

/// A later rule for the same path wins (the command line comes after the
/// profile).
fn add_bind(binds: &mut Vec<(PathBuf, Access, bool)>, path: PathBuf, access: Access, dir: bool) {
    binds.retain(|(p, _, _)| p != &path);
    binds.push((path, access, dir));
}

/// The private tmpfs mounts, /dev, /proc, and a bind for every visible path:
/// the profile's paths, then the workspace.
pub fn binds(policy: &Policy) -> Result<Binds, MountError> {
    let ws = &policy.workspace;
    let home = &policy.home;
    if depth(ws) == 0 || is_within(home, ws) {
        return Err(MountError::Invalid(format!(
            "workspace {} contains the home directory {} (hint: pass --workspace with a project directory)",
            ws.display(),
            home.display()
        )));
    }
    let mut tree: Vec<Op> = vec![
        Op::Tmpfs {
            at: PathBuf::from("/tmp"),
            size: policy.limits.tmp_size,
            mode: 0o1777,
        },
        Op::Tmpfs {
            at: home.clone(),
            size: policy.limits.home_size,
            mode: 0o700,
        },
        Op::Dev {
            shm_size: policy.limits.tmp_size,
            nodes: Vec::new(),
            links: Vec::new(),
        },
        Op::Proc,
    ];
    let mut visible = VisiblePaths::default();
    visible.write.push(PathBuf::from("/tmp"));
    visible.write.push(home.clone());
    visible.write.push(PathBuf::from("/dev/shm"));

    // (path, access, is a directory): the kind comes from the lstat each
    // rule gets anyway, so no path is stat'ed twice on the launch path.
    let mut binds: Vec<(PathBuf, Access, bool)> = Vec::new();
    for rule in &policy.paths {
        bind_rule(rule, &policy.paths, &mut tree, &mut binds)?;
    }
    add_bind(&mut binds, ws.clone(), policy.workspace_access, true);
    for (path, access, dir) in &binds {
        tree.push(Op::Bind {
            src: path.clone(),
            at: path.clone(),
            readonly: *access == Access::Read,
            dir: *dir,
        });
        match access {
            Access::Read => visible.read.push(path.clone()),
            Access::Write => visible.write.push(path.clone()),
        }
    }
    // Parents before children; at equal depth the order above (tmpfs first).
    tree.sort_by_key(|op| depth(op.at()));
    Ok(Binds {
        tree,
        binds,
        visible,
        layer: None,
    })
}

/// One visible path: a bind, or for a symlink the same link in the sandbox
/// and a bind of its target (unless that is visible anyway). A missing
/// optional path is skipped; a missing required one is an error.
fn bind_rule(
    rule: &PathRule,
    rules: &[PathRule],
    tree: &mut Vec<Op>,
    binds: &mut Vec<(PathBuf, Access, bool)>,
) -> Result<(), MountError> {
    match std::fs::symlink_metadata(&rule.path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = std::fs::read_link(&rule.path).map_err(io_err("readlink", &rule.path))?;
            match std::fs::canonicalize(&rule.path) {
                Ok(canon) => {
                    tree.push(Op::Symlink {
                        target,
                        at: rule.path.clone(),
                    });
                    if !binds.iter().any(|(p, _, _)| is_within(&canon, p))
                        && !is_system_symlink_target(&canon, rules)
                    {
                        let dir = canon.is_dir();
                        add_bind(binds, canon, rule.access, dir);
                    }
                    Ok(())
                }
                Err(_) if rule.optional => Ok(()),
                Err(e) => Err(MountError::Io {
                    what: "cannot resolve",
                    path: rule.path.clone(),
                    err: e,
                }),
            }
        }
        Ok(meta) => {
            add_bind(binds, rule.path.clone(), rule.access, meta.is_dir());
            Ok(())
        }
        Err(_) if rule.optional => Ok(()),
        Err(e) => Err(MountError::Io {
            what: "cannot read",
            path: rule.path.clone(),
            err: e,
        }),
    }
}

/// Is `canon` already visible because a rule's directory is (a /bin → usr/bin
/// symlink needs no bind of its own when /usr is bound)?
fn is_system_symlink_target(canon: &Path, rules: &[PathRule]) -> bool {
    rules.iter().any(|r| {
        is_within(canon, &r.path) && std::fs::symlink_metadata(&r.path).is_ok_and(|m| m.is_dir())
    })
}

/// The whole plan: `binds`, the read-only binds over `protection`'s paths,
/// masks over hidden paths and `.env` files inside visible trees, and pins
/// of the workspace directories above them.
pub fn finish(policy: &Policy, b: Binds, protection: Protection, env_scan: EnvScan) -> MountPlan {
    let ws = &policy.workspace;
    let Binds {
        mut tree,
        binds,
        visible,
        layer,
    } = b;
    let upper = layer.as_ref().map(|l| l.upper.as_path());
    let bound = |p: &Path| binds.iter().any(|(b, _, _)| is_within(p, b));
    let mut masks: Vec<Op> = protection
        .protected
        .iter()
        .map(|(path, node)| Op::Protect {
            ws: ws.clone(),
            at: path.clone(),
            node: *node,
        })
        .collect();
    masks.extend(protection.git.iter().map(|g| Op::Redirect {
        at: g.host.clone(),
        private: g.private.clone(),
    }));

    // Secrets inside visible trees.
    for rule in &policy.hide {
        let found = match upper {
            Some(up) => layer::hide_candidates(ws, up, &rule.pattern, expand_glob),
            None => expand_glob(&rule.pattern),
        };
        for found in found {
            if let Some(up) = upper.filter(|_| found.starts_with(ws)) {
                // Inside an overlay workspace: what the merged view shows.
                if let Some(dir) = layer::masked_kind(ws, up, &found) {
                    if !masks.iter().any(|m| m.at() == found) {
                        masks.push(Op::Mask { at: found, dir });
                    }
                }
                continue;
            }
            let (path, meta) = match std::fs::symlink_metadata(&found) {
                Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(&found) {
                    Ok(c) => match std::fs::metadata(&c) {
                        Ok(m) => (c, m),
                        Err(_) => continue,
                    },
                    Err(_) => continue,
                },
                Ok(m) => (found, m),
                Err(_) => continue,
            };
            if bound(&path) && !masks.iter().any(|m| m.at() == path) {
                masks.push(Op::Mask {
                    at: path,
                    dir: meta.is_dir(),
                });
            }
        }
    }

    // `.env` files in the workspace (the scan's result), and the workspace
    // files that `.env` links lead to: a link masked alone would leave its
    // secret readable under the target's name. Targets outside the workspace
    // are either not visible or part of a tree the sandbox shows by design
    // (a hostile link to /usr/bin/env must not blank it for later runs).
    let mut env_scan = env_scan;
    for f in &env_scan.hidden {
        masks.push(Op::Mask {
            at: f.clone(),
            dir: false,
        });
    }
    for link in &env_scan.links {
        let Ok(target) = std::fs::canonicalize(link) else {
            continue;
        };
        if target.starts_with(ws)
            && std::fs::metadata(&target).is_ok_and(|m| m.is_file())
            && !masks.iter().any(|m| m.at() == target)
        {
            masks.push(Op::Mask {
                at: target.clone(),
                dir: false,
            });
            env_scan.link_targets.push(target);
        }
    }
    for d in &env_scan.unreadable {
        masks.push(Op::Mask {
            at: d.clone(),
            dir: true,
        });
    }

    if policy.workspace_access == Access::Write {
        tree.extend(pins(ws, &masks, upper.is_some()));
        tree.sort_by_key(|op| depth(op.at()));
    }
    tree.extend(masks);
    let exclude = protection.exclude.clone();
    let mut plan = MountPlan {
        ops: tree,
        visible,
        env_scan,
        protection,
    };
    if let Some(content) = exclude {
        // Names the placeholders for git inside (see protect::EXCLUDE_FILE).
        if let Err(err) = plan.add_file(Path::new(super::protect::EXCLUDE_FILE), content, 0o444) {
            tracing::debug!(%err, "no exclude file for the placeholders");
        }
    }
    plan
}

/// Pin the workspace directories above every protected or masked path, so
/// none of them can be moved away during the run (see [`Op::Pin`]).
/// In an overlay workspace (`merged`) every directory above a protected or
/// masked path exists in the merged view, where they were found.
fn pins(ws: &Path, masks: &[Op], merged: bool) -> Vec<Op> {
    let mut pins: Vec<PathBuf> = Vec::new();
    for op in masks {
        let at = match op {
            Op::Protect { at, .. } | Op::Mask { at, .. } | Op::Redirect { at, .. } => at,
            _ => continue,
        };
        for a in at.ancestors().skip(1) {
            if a == ws || !a.starts_with(ws) {
                break;
            }
            if !pins.iter().any(|p| p == a)
                && (merged || std::fs::symlink_metadata(a).is_ok_and(|m| m.is_dir()))
            {
                pins.push(a.to_path_buf());
            }
        }
    }
    pins.into_iter().map(|at| Op::Pin { at }).collect()
}

/// Expand `*` wildcards in the last component of `pattern`.
fn expand_glob(pattern: &Path) -> Vec<PathBuf> {
    let Some(name) = pattern.file_name() else {
        return vec![];
    };
    let name = name.as_bytes();
    if !name.contains(&b'*') {
        return vec![pattern.to_path_buf()];
    }
    let parent = pattern.parent().unwrap_or(Path::new("/"));
    let Ok(rd) = std::fs::read_dir(parent) else {
        return vec![];
    };
    rd.filter_map(Result::ok)
        .filter(|e| wildcard_match(name, e.file_name().as_bytes()))
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests;

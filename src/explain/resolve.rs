//! Resolving a path the way the kernel would, for judging an agent's file
//! tool call before it happens.
//!
//! An agent's tool gets a string (`~/x`, `../y`, `a/link/../z`). Which host
//! file it touches depends on who normalises it: a Node-style `path.resolve`
//! folds `..` lexically before any system call, the kernel applies `..` to the
//! real parent after following a symlink. The two can name different files
//! (`ws/link/../secret` where `link -> ~/.ssh/keys`), so both are judged and
//! the stricter answer wins. A write through a final symlink may follow the
//! link (open) or replace it (write-then-rename): both the target and the link
//! itself are judged.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while resolving one path (Linux's limit is 40).
const MAX_LINKS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("empty path")]
    Empty,
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
    #[error("path {0:?}: ~user is not supported")]
    TildeUser(String),
    #[error("path {0:?}: more than {MAX_LINKS} symlinks (a loop?)")]
    Loop(String),
}

/// More than [`MAX_LINKS`] symlinks on the way (or one that cannot be read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLoop;

/// The host paths a tool call on one path string may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The string as given, `~` expanded and made absolute against `cwd`.
    pub given: PathBuf,
    /// Every path to judge: the kernel's reading of `given`, the kernel's
    /// reading of its lexical normalisation, and for a final symlink the link
    /// itself (its parent resolved). Deduplicated, the kernel's first.
    pub candidates: Vec<PathBuf>,
}

impl Resolved {
    /// The kernel's reading of the path as given (the first candidate).
    pub fn primary(&self) -> &Path {
        &self.candidates[0]
    }
}

/// Resolve `raw` relative to `cwd`, with `~` as `home`.
pub fn resolve(raw: &str, cwd: &Path, home: &Path) -> Result<Resolved, ResolveError> {
    if raw.is_empty() {
        return Err(ResolveError::Empty);
    }
    if raw.contains('\0') {
        return Err(ResolveError::Nul(raw.into()));
    }
    let given = if raw == "~" {
        home.to_path_buf()
    } else if let Some(rest) = raw.strip_prefix("~/") {
        home.join(rest)
    } else if raw.starts_with('~') {
        return Err(ResolveError::TildeUser(raw.into()));
    } else {
        cwd.join(raw)
    };
    let lexical = lexical_normal(&given);
    let mut candidates = Vec::with_capacity(3);
    for p in [&given, &lexical] {
        let (real, _) = kernel_walk(p).map_err(|LinkLoop| ResolveError::Loop(raw.into()))?;
        push_unique(&mut candidates, real);
        // The link itself, when the last component is a symlink.
        if let (Some(parent), Some(name)) = (p.parent(), p.file_name()) {
            let (parent_real, _) =
                kernel_walk(parent).map_err(|LinkLoop| ResolveError::Loop(raw.into()))?;
            let link = parent_real.join(name);
            if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
                push_unique(&mut candidates, link);
            }
        }
    }
    Ok(Resolved { given, candidates })
}

fn push_unique(v: &mut Vec<PathBuf>, p: PathBuf) {
    if !v.contains(&p) {
        v.push(p);
    }
}

/// `.` dropped, `..` popping the previous component, as `path.resolve` does.
pub fn lexical_normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Walk `p` component by component as the kernel does: a symlink is replaced
/// by its target (absolute targets restart at `/`), `..` pops the real
/// parent. Components that do not exist are appended as they are (and `..`
/// after them pops them again: nothing below a missing directory can be a
/// link). Returns the path and whether every component existed. `Err` on a
/// symlink loop.
pub fn kernel_walk(p: &Path) -> Result<(PathBuf, bool), LinkLoop> {
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, p);
    let mut out = PathBuf::from("/");
    let mut links = 0;
    let mut exists = true;
    while let Some(c) = todo.pop() {
        if c == ".." {
            out.pop();
            continue;
        }
        if c == "." || c.is_empty() {
            continue;
        }
        let next = out.join(&c);
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() && exists => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(LinkLoop);
                }
                let target = std::fs::read_link(&next).map_err(|_| LinkLoop)?;
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                push_components(&mut todo, &target);
            }
            Ok(_) if exists => out = next,
            _ => {
                exists = false;
                out = next;
            }
        }
    }
    Ok((out, exists))
}

/// Push the components of `p` onto the stack so that the first is on top.
fn push_components(stack: &mut Vec<OsString>, p: &Path) {
    let parts: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    stack.extend(parts.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn r(raw: &str, cwd: &Path, home: &Path) -> Vec<PathBuf> {
        resolve(raw, cwd, home).unwrap().candidates
    }

    #[test]
    fn relative_tilde_and_dots() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("ws/sub")).unwrap();
        let ws = root.join("ws");
        assert_eq!(r("a.txt", &ws, &root), vec![ws.join("a.txt")]);
        assert_eq!(r("./sub/../b", &ws, &root), vec![ws.join("b")]);
        assert_eq!(r("~/.ssh/id", &ws, &root), vec![root.join(".ssh/id")]);
        assert_eq!(r("~", &ws, &root), vec![root.clone()]);
        assert_eq!(
            r("/x/../../etc//passwd", &ws, &root),
            vec![PathBuf::from("/etc/passwd")]
        );
        assert!(matches!(
            resolve("~bob/x", &ws, &root),
            Err(ResolveError::TildeUser(_))
        ));
        assert!(matches!(resolve("", &ws, &root), Err(ResolveError::Empty)));
        assert!(matches!(
            resolve("a\0b", &ws, &root),
            Err(ResolveError::Nul(_))
        ));
    }

    #[test]
    fn symlink_then_dotdot_gives_both_readings() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("ws")).unwrap();
        std::fs::create_dir_all(root.join("home/.ssh/keys")).unwrap();
        symlink(root.join("home/.ssh/keys"), root.join("ws/link")).unwrap();
        let ws = root.join("ws");
        // Kernel: link -> home/.ssh/keys, then .. -> home/.ssh. Lexical: ws/id.
        let c = r("link/../id", &ws, &root);
        assert_eq!(c, vec![root.join("home/.ssh/id"), ws.join("id")]);
    }

    #[test]
    fn final_symlink_judged_as_target_and_link() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("ws")).unwrap();
        std::fs::write(root.join("secret"), "x").unwrap();
        symlink("../secret", root.join("ws/l")).unwrap();
        let c = r("l", &root.join("ws"), &root);
        assert_eq!(c, vec![root.join("secret"), root.join("ws/l")]);
    }

    #[test]
    fn relative_symlink_chains_and_loops() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("a/b", root.join("l1")).unwrap();
        symlink("l1/../b", root.join("l2")).unwrap(); // l1 -> a/b, .. -> a, then b
        assert_eq!(r("l2/f", &root, &root)[0], root.join("a/b/f"));
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert!(matches!(
            resolve("loop1/x", &root, &root),
            Err(ResolveError::Loop(_))
        ));
    }

    #[test]
    fn missing_components_are_kept() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let (p, exists) = kernel_walk(&root.join("no/such/../file")).unwrap();
        assert_eq!(p, root.join("no/file"));
        assert!(!exists);
    }
}

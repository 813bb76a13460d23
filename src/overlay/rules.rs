//! What `apply` never writes to the host: the profile's protected paths, and
//! git files that would run code or point git elsewhere on the user's next
//! git command outside the sandbox.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::fs::Kind;

/// The protected path `path` is at or below, if any.
pub fn protected_at<'a>(path: &Path, protected: &'a [PathBuf]) -> Option<&'a PathBuf> {
    protected
        .iter()
        .find(|q| crate::policy::protect_covers(q, path))
}

/// Protected paths strictly below `path`.
pub fn protected_below<'a>(path: &Path, protected: &'a [PathBuf]) -> Vec<&'a PathBuf> {
    protected
        .iter()
        .filter(|q| {
            !crate::policy::is_protect_pattern(q) && q.starts_with(path) && q.as_path() != path
        })
        .collect()
}

fn comps(path: &Path) -> Vec<&OsStr> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect()
}

fn is(name: &OsStr, word: &str) -> bool {
    name.as_bytes().eq_ignore_ascii_case(word.as_bytes())
}

/// The reason a path inside a git directory (`rest` = the components below
/// it) must not be written, if it must not.
fn gitdir_rule(rest: &[&OsStr]) -> Option<&'static str> {
    let first = rest.first()?;
    if is(first, "hooks") {
        return Some("git hooks run programs on the host");
    }
    if is(first, "worktrees") || is(first, "modules") {
        return Some(
            "a worktree's or submodule's git directory (its config and hooks run on the host)",
        );
    }
    if rest.len() == 1 && (is(first, "config") || is(first, "config.worktree")) {
        return Some(
            "git config can run programs on the host (core.fsmonitor, core.hooksPath, aliases, filters)",
        );
    }
    if is(first, "rebase-merge") || is(first, "rebase-apply") || is(first, "sequencer") {
        return Some(
            "an interrupted rebase's todo list runs its `exec` lines on the user's next `git rebase --continue`",
        );
    }
    if rest.len() == 1 && is(first, "commondir") {
        return Some("commondir points git at another repository");
    }
    if rest.len() == 3
        && is(first, "objects")
        && is(rest[1], "info")
        && (is(rest[2], "alternates") || is(rest[2], "http-alternates"))
    {
        return Some("object alternates point git at another object store");
    }
    None
}

/// Why writing `path` (as a `kind`) would plant a git redirect or code that
/// runs on the host, if it would. `looks_like_gitdir(dir)` says whether a
/// directory of the merged view has a repository's shape (HEAD, objects/,
/// refs/), which git accepts as a bare repository when the user `cd`s there.
pub fn git_refusal(
    path: &Path,
    kind: Kind,
    looks_like_gitdir: &mut dyn FnMut(&Path) -> bool,
) -> Option<String> {
    let c = comps(path);
    for i in 0..c.len() {
        let rest = &c[i + 1..];
        if is(c[i], ".git") {
            if rest.is_empty() && kind != Kind::Dir {
                return Some(format!(
                    "a .git {} makes git use another repository, whose config and hooks run on the host",
                    kind.name()
                ));
            }
            if let Some(why) = gitdir_rule(rest) {
                return Some(why.to_string());
            }
        }
    }
    // Bare-repository shapes anywhere (checked only when a rule would apply).
    for i in 0..c.len() {
        if let Some(why) = gitdir_rule(&c[i..]) {
            let dir: PathBuf = c[..i].iter().collect();
            if looks_like_gitdir(&dir) {
                return Some(format!("{why} (the directory has a repository's shape)"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(p: &str, kind: Kind, bare: bool) -> Option<String> {
        git_refusal(Path::new(p), kind, &mut |_| bare)
    }

    #[test]
    fn git_internals_that_run_code_are_refused() {
        for p in [
            ".git/config",
            ".git/hooks/pre-commit",
            ".git/hooks",
            ".git/commondir",
            ".git/config.worktree",
            ".git/worktrees/x/commondir",
            ".git/modules/sub/config",
            ".git/objects/info/alternates",
            ".git/rebase-merge/git-rebase-todo",
            ".git/sequencer/todo",
            "sub/.git/config",
            "sub/.GIT/hooks/post-checkout",
            "a/.git/b/.git/config",
        ] {
            assert!(refuse(p, Kind::File, false).is_some(), "{p}");
        }
        assert!(
            refuse(".git", Kind::File, false)
                .unwrap()
                .contains("another repository")
        );
        assert!(refuse("sub/.git", Kind::Symlink, false).is_some());
    }

    #[test]
    fn ordinary_git_data_and_files_pass() {
        for p in [
            ".git/objects/ab/cdef",
            ".git/refs/heads/main",
            ".git/HEAD",
            ".git/index",
            ".git/logs/HEAD",
            ".git/info/exclude",
            "src/config",
            "config",
            "docs/hooks/readme.md",
            ".gitignore",
            ".github/workflows/ci.yml",
        ] {
            assert_eq!(refuse(p, Kind::File, false), None, "{p}");
        }
        assert_eq!(refuse(".git", Kind::Dir, false), None);
        assert_eq!(refuse("sub/.git", Kind::Dir, false), None);
    }

    #[test]
    fn bare_repository_shapes_are_refused_only_when_shaped() {
        assert!(refuse("evil.git/config", Kind::File, true).is_some());
        assert!(refuse("evil/hooks/post-checkout", Kind::File, true).is_some());
        assert_eq!(refuse("evil/config", Kind::File, false), None);
    }

    #[test]
    fn protected_matching_is_by_component() {
        let prot = vec![PathBuf::from(".git/hooks"), PathBuf::from(".vscode")];
        assert!(protected_at(Path::new(".vscode/settings.json"), &prot).is_some());
        assert!(protected_at(Path::new(".vscode"), &prot).is_some());
        assert!(protected_at(Path::new(".vscode2"), &prot).is_none());
        assert_eq!(protected_below(Path::new(".git"), &prot).len(), 1);
        assert!(protected_below(Path::new(".git/hooks"), &prot).is_empty());
        // A root-level name pattern covers matching root entries only.
        let prot = vec![PathBuf::from("*.code-workspace")];
        assert!(protected_at(Path::new("a.code-workspace"), &prot).is_some());
        assert!(protected_at(Path::new("sub/a.code-workspace"), &prot).is_none());
        assert!(protected_at(Path::new("a.code-workspace.bak"), &prot).is_none());
        assert!(protected_below(Path::new(""), &prot).is_empty());
    }
}

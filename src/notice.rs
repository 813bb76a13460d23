//! One-line notices shellcage prints on stderr around a run, formatted here
//! and printed by the launch path (`say!`):
//!
//! - [`env_dropped_line`]: the variables a profile or tool rule would have
//!   passed but that were refused (names only, never values), at most once
//!   per workspace+profile for the same set of names ([`Seen`]);
//! - [`closing_hint`]: after a failing command whose stderr is a terminal,
//!   what the sandbox *knows* it refused (a name lookup its resolver answered,
//!   a protected path whose change it discarded). Never guessed from the
//!   command's output.
//!
//! Both print only what shellcage decided, with text from the sandbox (DNS
//! names, paths) reduced to a safe character set: a hostile command must not
//! be able to write escape sequences or a fake `shellcage:` line through them.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Names shown before "and N more".
const MAX_NAMES: usize = 8;
/// Longest name shown (longer ones are cut, with `…`).
const MAX_NAME_LEN: usize = 64;

/// `name` with every byte outside `[A-Za-z0-9._:/@+=-]` shown as `?`, cut to
/// [`MAX_NAME_LEN`] characters.
pub fn safe_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(MAX_NAME_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._:/@+=-".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    if name.chars().count() > MAX_NAME_LEN {
        out.push('…');
    }
    out
}

/// Directories of the workspace the `.env` scan could not read (relative
/// names), hidden whole for the run.
pub fn unreadable_line(dirs: &[String]) -> String {
    format!(
        "shellcage: hidden for this run, since the .env scan cannot read them: {} (make them readable to see them inside)",
        list(dirs)
    )
}

/// `a, b, c and 3 more`: sorted, deduplicated, made safe.
fn list(names: &[String]) -> String {
    let mut v: Vec<String> = names.iter().map(|n| safe_name(n)).collect();
    v.sort();
    v.dedup();
    let more = v.len().saturating_sub(MAX_NAMES);
    v.truncate(MAX_NAMES);
    let mut s = v.join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

/// The line naming the variables that were not passed, or `None` when
/// nothing was dropped (the quiet default).
///
/// `secret_names`: refused by name (`*TOKEN*`, the tool table's `Never` rows);
/// `credential_values`: a tool setting whose value looked like a credential.
pub fn env_dropped_line(secret_names: &[String], credential_values: &[String]) -> Option<String> {
    let mut parts = Vec::new();
    if !secret_names.is_empty() {
        parts.push(format!("{} (secret-looking names)", list(secret_names)));
    }
    if !credential_values.is_empty() {
        parts.push(format!(
            "{} (the value looks like a credential)",
            list(credential_values)
        ));
    }
    if parts.is_empty() {
        return None;
    }
    Some(format!(
        "shellcage: not passed into the sandbox: {} (hint: pass one with --env NAME)",
        parts.join("; ")
    ))
}

/// The private runtime directory: `$XDG_RUNTIME_DIR/shellcage`, else
/// `/tmp/shellcage-UID`; created 0700, and refused unless it is a real
/// directory owned by us and closed to others (no one else can plant files
/// or symlinks in it).
pub fn runtime_dir() -> std::io::Result<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    runtime_dir_in(xdg, &std::env::temp_dir(), uid)
}

/// [`runtime_dir`] with its inputs given.
fn runtime_dir_in(xdg: Option<PathBuf>, tmp: &Path, uid: u32) -> std::io::Result<PathBuf> {
    let dir = xdg
        .filter(|p| p.is_absolute() && p.is_dir())
        .map(|p| p.join("shellcage"))
        .unwrap_or_else(|| tmp.join(format!("shellcage-{uid}")));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{}: not a private directory of uid {uid}", dir.display()),
        ));
    }
    Ok(dir)
}

/// "Shown already?" markers for once-per-session notices, one small file per
/// (notice, workspace, profile) under a private directory, holding a digest
/// of what was last shown.
pub struct Seen {
    dir: PathBuf,
}

impl Seen {
    /// Markers under `runtime/notices` (see [`runtime_dir`]).
    pub fn new(runtime: &Path) -> Self {
        Seen {
            dir: runtime.join("notices"),
        }
    }

    fn hex(parts: &[&[u8]]) -> String {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Should the notice `kind` about `names` be shown for this workspace and
    /// profile? True the first time and whenever the set of names changed;
    /// records it. Any error reading or writing the marker answers true: a
    /// repeated line is better than a lost one.
    pub fn first_time(
        &self,
        kind: &str,
        workspace: &Path,
        profile: &str,
        names: &[String],
    ) -> bool {
        let key = Self::hex(&[
            kind.as_bytes(),
            workspace.as_os_str().as_encoded_bytes(),
            profile.as_bytes(),
        ]);
        let mut sorted: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        sorted.sort();
        sorted.dedup();
        let digest = Self::hex(&sorted);
        let path = self.dir.join(&key[..32]);
        if std::fs::read_to_string(&path).is_ok_and(|d| d == digest) {
            return false;
        }
        if let Err(err) = self.write(&path, &digest) {
            tracing::debug!(?err, path = %path.display(), "notice marker not written");
        }
        true
    }

    fn write(&self, path: &Path, digest: &str) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&self.dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(digest.as_bytes())?;
        drop(f);
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

/// Something the sandbox refused and knows it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A name lookup answered NXDOMAIN by shellcage's resolver (network mode
    /// `none`, or a name the proxy's allowlist does not hold).
    Lookup { name: String },
    /// A change to a protected path that shellcage saw and discarded (the
    /// private `.git/config` merge-back, the overlay's apply).
    ProtectedChange { path: String },
}

/// What the closing hint needs to know about the run.
pub struct RunEnd<'a> {
    /// The command's exit status as shellcage will return it.
    pub code: i32,
    /// Is shellcage's stderr a terminal?
    pub stderr_tty: bool,
    /// The profile's network mode, as the user writes it (`none`, `loopback` …).
    pub network: &'a str,
    pub refused: &'a [Refusal],
}

/// The closing hint line, or `None`: only for a failing command (not
/// shellcage's own 124/125), only on a terminal, only when the sandbox
/// recorded a refusal.
pub fn closing_hint(end: &RunEnd<'_>) -> Option<String> {
    if end.code == 0 || end.code == 124 || end.code == 125 || !end.stderr_tty {
        return None;
    }
    let names = |want: fn(&Refusal) -> Option<&String>| -> Vec<String> {
        end.refused.iter().filter_map(want).cloned().collect()
    };
    let lookups = names(|r| match r {
        Refusal::Lookup { name } => Some(name),
        _ => None,
    });
    let changes = names(|r| match r {
        Refusal::ProtectedChange { path } => Some(path),
        _ => None,
    });
    let mut what = Vec::new();
    let mut hints = Vec::new();
    if !lookups.is_empty() {
        what.push(format!(
            "{} of {} (network mode {})",
            plural(lookups.len(), "name lookup"),
            short_list(&lookups),
            safe_name(end.network)
        ));
        hints.push("--net host for a command you trust, or a profile that allows the host");
    }
    if !changes.is_empty() {
        what.push(format!(
            "{} to {} (protected)",
            plural(changes.len(), "change"),
            short_list(&changes)
        ));
        hints.push("make the change outside the sandbox");
    }
    if what.is_empty() {
        return None;
    }
    Some(format!(
        "shellcage: the sandbox refused {} (hint: {})",
        what.join("; "),
        hints.join("; ")
    ))
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("a {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Up to three names, then "…".
fn short_list(names: &[String]) -> String {
    let mut v: Vec<String> = names.iter().map(|n| safe_name(n)).collect();
    v.sort();
    v.dedup();
    let more = v.len() > 3;
    v.truncate(3);
    let mut s = v.join(", ");
    if more {
        s.push_str(", …");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn env_line() {
        assert_eq!(env_dropped_line(&[], &[]), None);
        assert_eq!(
            env_dropped_line(
                &s(&["NPM_CONFIG__AUTH", "GITHUB_TOKEN"]),
                &s(&["PIP_INDEX_URL"])
            )
            .unwrap(),
            "shellcage: not passed into the sandbox: GITHUB_TOKEN, NPM_CONFIG__AUTH (secret-looking names); \
             PIP_INDEX_URL (the value looks like a credential) (hint: pass one with --env NAME)"
        );
        let many: Vec<String> = (0..11).map(|i| format!("V{i:02}_TOKEN")).collect();
        let line = env_dropped_line(&many, &[]).unwrap();
        assert!(line.contains("V07_TOKEN and 3 more"), "{line}");
        assert!(!line.contains("V08_TOKEN"), "{line}");
    }

    #[test]
    fn names_cannot_inject_text() {
        let evil = "X\x1b[2J\nshellcage: all fine\r";
        let line = env_dropped_line(&[evil.to_string()], &[]).unwrap();
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert!(!line.contains("shellcage: all"), "{line}");
        let long = "a".repeat(500);
        assert!(safe_name(&long).chars().count() <= MAX_NAME_LEN + 1);
    }

    #[test]
    fn seen_once_per_workspace_profile_and_name_set() {
        let d = tempfile::tempdir().unwrap();
        let seen = Seen::new(d.path());
        let (ws, other) = (Path::new("/w/a"), Path::new("/w/b"));
        let names = s(&["A_TOKEN", "B"]);
        assert!(seen.first_time("env", ws, "dev", &names));
        assert!(!seen.first_time("env", ws, "dev", &s(&["B", "A_TOKEN", "B"])));
        assert!(seen.first_time("env", other, "dev", &names));
        assert!(seen.first_time("env", ws, "ci", &names));
        assert!(seen.first_time("env", ws, "dev", &s(&["A_TOKEN"])));
        assert!(!seen.first_time("env", ws, "dev", &s(&["A_TOKEN"])));
        // The markers are private.
        let meta = std::fs::metadata(d.path().join("notices")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
    }

    #[test]
    fn seen_says_yes_when_it_cannot_record() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("notices"), "a file, not a directory").unwrap();
        let seen = Seen::new(d.path());
        let n = s(&["X"]);
        assert!(seen.first_time("env", Path::new("/w"), "dev", &n));
        assert!(seen.first_time("env", Path::new("/w"), "dev", &n));
    }

    #[test]
    fn runtime_dir_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let uid = nix::unistd::getuid().as_raw();
        let d = tempfile::tempdir().unwrap();
        // Fresh: created 0700 under XDG_RUNTIME_DIR.
        let dir = runtime_dir_in(Some(d.path().into()), Path::new("/nonexistent"), uid).unwrap();
        assert_eq!(dir, d.path().join("shellcage"));
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        // No XDG_RUNTIME_DIR: /tmp/shellcage-UID.
        let t = tempfile::tempdir().unwrap();
        let dir = runtime_dir_in(None, t.path(), uid).unwrap();
        assert_eq!(dir, t.path().join(format!("shellcage-{uid}")));
        // Someone else's making: open to others, or a symlink to elsewhere.
        let open = tempfile::tempdir().unwrap();
        std::fs::create_dir(open.path().join(format!("shellcage-{uid}"))).unwrap();
        std::fs::set_permissions(
            open.path().join(format!("shellcage-{uid}")),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert!(runtime_dir_in(None, open.path(), uid).is_err());
        let link = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(d.path(), link.path().join(format!("shellcage-{uid}"))).unwrap();
        assert!(runtime_dir_in(None, link.path(), uid).is_err());
    }

    fn end<'a>(code: i32, tty: bool, refused: &'a [Refusal]) -> RunEnd<'a> {
        RunEnd {
            code,
            stderr_tty: tty,
            network: "none",
            refused,
        }
    }

    #[test]
    fn closing_hint_only_when_known_failing_and_on_a_terminal() {
        let r = vec![
            Refusal::Lookup {
                name: "index.crates.io".into(),
            },
            Refusal::Lookup {
                name: "static.crates.io".into(),
            },
            Refusal::Lookup {
                name: "index.crates.io".into(),
            },
        ];
        assert_eq!(
            closing_hint(&end(101, true, &r)).unwrap(),
            "shellcage: the sandbox refused 3 name lookups of index.crates.io, static.crates.io \
             (network mode none) (hint: --net host for a command you trust, or a profile that allows the host)"
        );
        assert_eq!(closing_hint(&end(0, true, &r)), None);
        assert_eq!(closing_hint(&end(1, false, &r)), None);
        assert_eq!(closing_hint(&end(125, true, &r)), None);
        assert_eq!(closing_hint(&end(124, true, &r)), None);
        assert_eq!(closing_hint(&end(1, true, &[])), None);
        let both = [
            Refusal::Lookup {
                name: "example.org".into(),
            },
            Refusal::ProtectedChange {
                path: ".git/config core.hooksPath".into(),
            },
        ];
        let line = closing_hint(&end(128 + 15, true, &both)).unwrap();
        assert!(line.contains("a name lookup of example.org"), "{line}");
        assert!(
            line.contains("a change to .git/config?core.hooksPath (protected)"),
            "{line}"
        );
    }

    #[test]
    fn closing_hint_names_from_the_sandbox_are_made_safe() {
        // A hostile command picks the names its resolver queries.
        let r = [Refusal::Lookup {
            name: "\x1b]0;owned\x07.example.org".into(),
        }];
        let line = closing_hint(&end(1, true, &r)).unwrap();
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
    }
}

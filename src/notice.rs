//! One-line notices shellcage prints on stderr around a run, formatted here
//! and printed by the launch path (`say!`):
//!
//! - [`env_dropped_line`]: the variables a profile or tool rule would have
//!   passed but that were refused (names only, never values), at most once
//!   per workspace+profile for the same set of names ([`Seen`]);
//! - [`closing_hint`]: after a failing command whose stderr is a terminal,
//!   what the sandbox *knows* it refused: the name lookups it answered itself
//!   in network mode `none`. Never guessed from the command's output. (A write
//!   to a protected path is refused by the kernel, EROFS on a read-only bind or
//!   EACCES from Landlock, with no event shellcage can see; refused `.git/config`
//!   keys have their own line when they are merged back.)
//!
//! Both print only what shellcage decided, with text from the sandbox (DNS
//! names) reduced to a safe character set: a hostile command must not
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

/// Where [`runtime_dir`] is, without making or checking it.
pub fn runtime_dir_path() -> PathBuf {
    let uid = nix::unistd::getuid().as_raw();
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .map(|p| p.join("shellcage"))
        .unwrap_or_else(|| std::env::temp_dir().join(format!("shellcage-{uid}")))
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

/// What the closing hint needs to know about the run.
pub struct RunEnd<'a> {
    /// The command's exit status as shellcage will return it.
    pub code: i32,
    /// Did the command run to its end (not refused before it started, not timed out)?
    pub started: bool,
    /// Is shellcage's stderr (the command's) a terminal?
    pub stderr_tty: bool,
    /// The profile's network mode, as the user writes it (`none`).
    pub network: &'a str,
    /// The name lookups the sandbox answered itself (refused), with their counts, and
    /// the count of all of them (names beyond the list included).
    pub lookups: &'a [(String, u64)],
    pub lookups_total: u64,
    /// Paths the command's own words name that the sandbox hides, does not show or
    /// protects (`PATH is absent (rule)`; see `explain::named_paths`).
    pub paths: &'a [String],
}

/// Names the closing hint shows before "and N more".
const HINT_NAMES: usize = 4;

/// The closing hint line, or `None`: only for a failing command that ran (not
/// shellcage's own 124/125), only on a terminal, only when the sandbox refused a lookup.
///
/// `shellcage: the sandbox has no network (mode none): refused name lookups: a.example ×3
/// (hint: --net proxy --allow-host a.example, or network.mode = "proxy" with
/// network.allow in the profile)`
pub fn closing_hint(end: &RunEnd<'_>) -> Option<String> {
    if end.code == 0 || !end.started || !end.stderr_tty {
        return None;
    }
    if end.lookups_total == 0 {
        return paths_hint(end.paths);
    }
    let mut names: Vec<(String, u64)> = end
        .lookups
        .iter()
        .map(|(n, c)| (safe_name(n), *c))
        .collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let shown: Vec<String> = names
        .iter()
        .take(HINT_NAMES)
        .map(|(n, c)| match c {
            1 => n.clone(),
            c => format!("{n} \u{d7}{c}"),
        })
        .collect();
    let shown_count = names
        .iter()
        .take(HINT_NAMES)
        .map(|(_, c)| *c)
        .fold(0, u64::saturating_add);
    let mut list = shown.join(", ");
    let more = end.lookups_total.saturating_sub(shown_count);
    if more > 0 {
        if !list.is_empty() {
            list.push_str(", ");
        }
        list.push_str(&format!(
            "and {more} more lookup{}",
            if more == 1 { "" } else { "s" }
        ));
    }
    // The most asked-for name that is a host name (not a cut or escaped one).
    let host = |n: &str| {
        n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    };
    let first = names
        .iter()
        .map(|(n, _)| n.as_str())
        .find(|n| host(n))
        .unwrap_or("HOST");
    Some(format!(
        "shellcage: the sandbox has no network (mode {}): refused name lookups: {list} \
         (hint: --net proxy --allow-host {first}, or network.mode = \"proxy\" with network.allow in the profile)",
        safe_name(end.network)
    ))
}

/// The closing hint for a failing command that named paths the sandbox hides, does not
/// show or protects (a `git clone` of a directory outside says the repository "does not
/// exist"; a write to a protected file says "read-only file system" or "no such file").
///
/// `shellcage: the command names paths the sandbox does not show or keeps read-only:
/// /srv/repo is absent (not listed in the profile, so not visible inside) (hint: …)`
fn paths_hint(paths: &[String]) -> Option<String> {
    if paths.is_empty() {
        return None;
    }
    // Printable ASCII only, bounded: a path in the command's words may hold anything,
    // and this goes to a terminal.
    let list: Vec<String> = (paths.iter())
        .map(|p| {
            (p.chars().take(400))
                .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
                .collect()
        })
        .collect();
    Some(format!(
        "shellcage: the command names paths the sandbox does not show or keeps read-only: {} \
         (hint: --read PATH or --write PATH shows an absent path; hidden and protected ones are the profile's rules, which `shellcage explain PATH` names)",
        list.join("; ")
    ))
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

    fn end<'a>(code: i32, tty: bool, lookups: &'a [(String, u64)], total: u64) -> RunEnd<'a> {
        RunEnd {
            code,
            started: true,
            stderr_tty: tty,
            network: "none",
            lookups,
            lookups_total: total,
            paths: &[],
        }
    }

    #[test]
    fn the_paths_hint_names_them_printably_and_only_for_a_failure_on_a_terminal() {
        let paths = vec![
            "/srv/repo is absent (not listed in the profile, so not visible inside)".to_string(),
            "/w/.git/hooks/x\u{1b}]0;evil\u{7} is protected (filesystem.protect)".to_string(),
        ];
        let mut e = end(1, true, &[], 0);
        e.paths = &paths;
        let line = closing_hint(&e).unwrap();
        assert!(
            line.starts_with("shellcage: the command names paths the sandbox does not show or keeps read-only: /srv/repo is absent (not listed in the profile, so not visible inside); /w/.git/hooks/x?]0;evil? is protected"),
            "{line}"
        );
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert!(
            line.ends_with("which `shellcage explain PATH` names)"),
            "{line}"
        );
        e.code = 0;
        assert_eq!(closing_hint(&e), None);
        e.code = 1;
        e.stderr_tty = false;
        assert_eq!(closing_hint(&e), None);
        e.stderr_tty = true;
        e.paths = &[];
        assert_eq!(closing_hint(&e), None, "control: nothing named");
    }

    #[test]
    fn closing_hint_only_when_known_failing_and_on_a_terminal() {
        let r = vec![
            ("index.crates.example".to_string(), 3),
            ("static.crates.example".to_string(), 1),
        ];
        assert_eq!(
            closing_hint(&end(101, true, &r, 4)).unwrap(),
            "shellcage: the sandbox has no network (mode none): refused name lookups: \
             index.crates.example \u{d7}3, static.crates.example (hint: --net proxy --allow-host \
             index.crates.example, or network.mode = \"proxy\" with network.allow in the profile)"
        );
        assert_eq!(closing_hint(&end(0, true, &r, 4)), None);
        assert_eq!(closing_hint(&end(1, false, &r, 4)), None);
        assert_eq!(closing_hint(&end(1, true, &[], 0)), None);
        let mut not_run = end(125, true, &r, 4);
        not_run.started = false;
        assert_eq!(closing_hint(&not_run), None);
        // Killed by a signal: the command ran and failed.
        assert!(closing_hint(&end(128 + 15, true, &r, 4)).is_some());
    }

    #[test]
    fn closing_hint_is_one_bounded_line_whatever_the_names() {
        // A hostile command picks the names its resolver queries.
        let evil: Vec<(String, u64)> = (0..20)
            .map(|i| {
                (
                    format!("\x1b]0;owned\x07\n{i}{}.example", "a".repeat(300)),
                    1000,
                )
            })
            .collect();
        let line = closing_hint(&end(1, true, &evil, u64::MAX)).unwrap();
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert!(
            line.contains("--allow-host HOST,"),
            "no escaped name as advice: {line}"
        );
        assert!(line.len() < 1000, "{}", line.len());
        assert!(
            line.contains(&format!("and {} more lookups", u64::MAX - 4000)),
            "{line}"
        );
        let mixed = [
            ("?x1b.example".to_string(), 9),
            ("b.example".to_string(), 1),
        ];
        let line = closing_hint(&end(1, true, &mixed, 10)).unwrap();
        assert!(line.contains("--allow-host b.example,"), "{line}");
        // Names beyond the kept list only counted.
        let line = closing_hint(&end(1, true, &[], 5)).unwrap();
        assert!(
            line.contains("lookups: and 5 more lookups (hint: --net proxy --allow-host HOST"),
            "{line}"
        );
    }
}

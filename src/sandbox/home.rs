//! The kept part of the sandbox home (`[filesystem] home = "persistent"`).
//!
//! `$HOME` in the sandbox is always a fresh tmpfs: dotfiles a command writes
//! (`~/.bashrc`, `~/.profile`, `~/.npmrc` …) are gone after the run, and the
//! sanitised config copies are generated per run, never kept. What is kept are
//! the directories of [`KEPT`] — caches and user installs — each a writable
//! bind of a directory in shellcage's state directory:
//!
//! ```text
//! $XDG_STATE_HOME/shellcage/homes/       (else ~/.local/state/...)    0700
//!   myproj-3f2a…c1/                      one per workspace: name + 16 hex of SHA-256(path)
//!     dev-9b0e…77/                       one per profile AND privileges (see `key`)
//!       meta.json  lock  size            written by shellcage only (never visible inside)
//!       cache/ npm/ cargo/ user/         the kept directories (visible inside, writable)
//! ```
//!
//! What a hostile command can do with it, and why that is contained:
//! - plant code that a later run executes (`user/lib/python*/site-packages/x.pth`,
//!   a `bin/` program): only runs with the *same* workspace, profile and
//!   privileges see that home — the key hashes the network mode, visible and
//!   writable paths, hidden and protected paths, the environment rules and
//!   the `--env` names, so `--net host`, `--write ~/x` or a wider profile get
//!   another home; another workspace never sees it;
//! - plant something the host runs: nothing on the host reads these
//!   directories (they are not the host's `~/.cache`; shellcage itself only
//!   measures and deletes them, never following symlinks); the binds are
//!   nosuid and nodev;
//! - reach other homes: the store must not be visible in the sandbox (refused
//!   otherwise); the command sees only the inside of its kept directories,
//!   whose mountpoints it cannot move (EBUSY);
//! - fill the disk: the size is measured after a run (at most every
//!   [`MEASURE_EVERY`]: walking a large npm cache costs about 1 ms per 1,000
//!   entries); over `[limits] kept_home_size` the caches are cleared, and a
//!   home still over it (user installs) is refused at the next launch until
//!   `shellcage home reset`. So the bound holds between runs, checked at most
//!   that late; one run can write more before it is measured.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::mount::{MountPlan, Op, Shown};
use crate::policy::{EnvFileScan, HideRule, NetMode, PathRule, Policy, Requirement, TierChoice};

/// One kept directory: where the sandbox sees it (relative to `$HOME`), its
/// name in the store, whether it is a cache (cleared first when the home is
/// over its limit), and why it is kept.
pub struct Kept {
    pub at: &'static str,
    pub dir: &'static str,
    pub cache: bool,
    pub why: &'static str,
}

/// Where user installs go (`PYTHONUSERBASE`, `CARGO_INSTALL_ROOT`), relative
/// to `$HOME`; its `bin/` is appended to PATH.
pub const INSTALLS: &str = ".shellcage";

#[rustfmt::skip]
pub const KEPT: &[Kept] = &[
    Kept { at: ".cache",   dir: "cache", cache: true,  why: "XDG cache: pip, uv, pre-commit, go-build, node-gyp" },
    Kept { at: ".npm",     dir: "npm",   cache: true,  why: "npm's cache (_cacache) and npx" },
    Kept { at: ".cargo",   dir: "cargo", cache: true,  why: "cargo's home where the host's is not shown: registry and git caches" },
    Kept { at: INSTALLS,   dir: "user",  cache: false, why: "user installs: pip install --user, cargo install; bin/ is on PATH" },
];

/// Set where unset (any case), pointing into [`INSTALLS`].
const INSTALL_VARS: [&str; 2] = ["PYTHONUSERBASE", "CARGO_INSTALL_ROOT"];

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("{what} {path}: {err} (hint: {hint})")]
    Io {
        what: &'static str,
        path: PathBuf,
        err: std::io::Error,
        hint: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
}

impl HomeError {
    /// The store cannot be created here (a read-only or foreign home, as in
    /// some containers): the run goes on with a fresh home, which keeps
    /// nothing and weakens nothing. Anything else (an unsafe directory, a
    /// visible store, a home over its limit) refuses the run.
    pub fn unavailable(&self) -> bool {
        matches!(
            self,
            HomeError::Io {
                what: "cannot create",
                ..
            }
        )
    }
}

const HINT_FRESH: &str = "--home fresh, or home = \"fresh\" in the profile";

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + use<> {
    let path = path.to_path_buf();
    move |err| HomeError::Io {
        what,
        path,
        err,
        hint: HINT_FRESH,
    }
}

/// `$XDG_STATE_HOME/shellcage/homes` when that is absolute, else
/// `HOME/.local/state/shellcage/homes`.
pub fn store_root(home: &Path) -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home.join(".local/state"))
        .join("shellcage/homes")
}

/// A readable name (at most 32 safe characters) and 16 hex of SHA-256.
fn named(name: &str, key: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest: String = Sha256::digest(key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let base: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(32)
        .collect();
    let base = base.trim_start_matches('.');
    let base = if base.is_empty() { "x" } else { base };
    format!("{base}-{}", &digest[..16])
}

/// The directory of a workspace's homes.
pub fn workspace_dir(root: &Path, workspace: &Path) -> PathBuf {
    let name = workspace
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    root.join(named(&name, workspace.as_os_str().as_bytes()))
}

/// Everything that decides what a command in the sandbox may reach: two
/// policies share a home only when all of it is equal (see the module doc).
#[derive(Serialize)]
struct Privileges<'a> {
    profile: &'a str,
    workspace: &'a Path,
    workspace_access: crate::policy::Access,
    tier: TierChoice,
    paths: &'a [PathRule],
    hide: Vec<&'a HideRule>,
    protect: &'a [PathBuf],
    env_files: &'a EnvFileScan,
    network: NetMode,
    landlock: Requirement,
    env_pass: &'a [String],
    env_set: &'a BTreeMap<String, String>,
    env_tools: bool,
    /// Names only: a value given with `--env` does not change what is reachable.
    env_explicit: Vec<&'a str>,
}

/// The home of `policy`'s workspace, profile and privileges.
pub fn home_dir(root: &Path, policy: &Policy) -> PathBuf {
    // What shellcage itself hides in its private runtime directory (a session's
    // sockets, hidden in sessions only) decides nothing a command may reach: a warm and
    // a cold run of one policy share their home.
    let runtime = crate::notice::runtime_dir_path();
    let hide: Vec<&HideRule> = (policy.hide.iter())
        .filter(|h| !h.pattern.starts_with(&runtime))
        .collect();
    let key = serde_json::to_vec(&Privileges {
        profile: &policy.profile,
        workspace: &policy.workspace,
        workspace_access: policy.workspace_access,
        tier: policy.tier,
        paths: &policy.paths,
        hide,
        protect: &policy.protect,
        env_files: &policy.env_files,
        network: policy.network,
        landlock: policy.landlock,
        env_pass: &policy.env.pass,
        env_set: &policy.env.set,
        env_tools: policy.env.tools,
        env_explicit: policy
            .env
            .explicit
            .iter()
            .map(|(n, _)| n.as_str())
            .collect(),
    })
    .unwrap_or_default();
    workspace_dir(root, &policy.workspace).join(named(&policy.profile, &key))
}

/// What a home records about itself (`meta.json`), for `shellcage home list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub workspace: PathBuf,
    pub profile: String,
    pub network: NetMode,
}

/// A home in use by one run: shared lock held until dropped.
#[derive(Debug)]
pub struct Attached {
    pub dir: PathBuf,
    /// Sandbox paths bound from the home.
    pub kept: Vec<PathBuf>,
    pub limit: u64,
    lock: Flock<File>,
}

/// What the report says about the home.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HomeUse {
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    pub kept: Vec<PathBuf>,
    /// Disk space the home takes (allocated bytes), as last measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Measured after this run (else `bytes` is from a run less than
    /// [`MEASURE_EVERY`] ago).
    pub measured: bool,
    /// The caches were cleared after the run (the home was over its limit).
    pub cleared: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_fresh: Option<String>,
}

impl HomeUse {
    /// Nothing kept: the profile says `fresh`, or the tier has no mount
    /// namespace to bind the kept directories in.
    pub fn fresh(mode: crate::policy::HomeMode, unavailable: Option<&str>) -> HomeUse {
        let why = match unavailable {
            Some(why) => Some(why.to_string()),
            None => (mode == crate::policy::HomeMode::Persistent)
                .then(|| "the container tier keeps nothing (no mount namespace)".to_string()),
        };
        HomeUse {
            mode: "fresh",
            why_fresh: why,
            ..HomeUse::default()
        }
    }
}

/// Why `path` is not a real directory owned by us and writable by nobody
/// else (`None`: it is). Shared with the overlay store's layer directories.
pub(crate) fn private_dir_problem(path: &Path) -> std::io::Result<Option<String>> {
    let md = std::fs::symlink_metadata(path)?;
    let me = nix::unistd::geteuid().as_raw();
    Ok(if !md.file_type().is_dir() {
        Some("not a directory (a symlink?)".to_string())
    } else if md.uid() != me {
        Some(format!("owned by uid {}, not {me}", md.uid()))
    } else if md.mode() & 0o022 != 0 {
        Some(format!(
            "writable by others (mode {:o})",
            md.mode() & 0o7777
        ))
    } else {
        None
    })
}

/// A real directory owned by us, writable by nobody else; created 0700.
fn private_dir(path: &Path) -> Result<(), HomeError> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("cannot create", path)(e)),
    }
    match private_dir_problem(path).map_err(io("cannot stat", path))? {
        Some(why) => Err(HomeError::Invalid(format!(
            "unsafe sandbox home directory {}: {why} (hint: remove it; shellcage recreates it 0700)",
            path.display()
        ))),
        None => Ok(()),
    }
}

fn open_lock(dir: &Path) -> Result<File, HomeError> {
    let path = dir.join("lock");
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io("cannot open", &path))
}

/// The size recorded after the last run, if any.
fn recorded_size(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("size")).ok()?;
    text.trim().parse().ok()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Refuse a store the sandbox would show: through it, a command would reach
/// the homes of other workspaces and profiles.
fn check_hidden(root: &Path, policy: &Policy) -> Result<(), HomeError> {
    let canon = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let visible = std::iter::once(&policy.workspace).chain(policy.paths.iter().map(|r| &r.path));
    for p in visible {
        if [root, &canon]
            .iter()
            .any(|r| r.starts_with(p) || p.starts_with(r))
        {
            return Err(HomeError::Invalid(format!(
                "the sandbox homes directory {} would be visible in the sandbox (through {}): other workspaces' homes would be reachable (hint: {HINT_FRESH}, or set XDG_STATE_HOME elsewhere)",
                root.display(),
                p.display()
            )));
        }
    }
    Ok(())
}

/// Bind the kept directories of `policy`'s home into the mount plan `m`, and
/// point user installs into it (in `vars`, where unset). Namespaces tier only.
pub fn attach(
    m: &mut MountPlan,
    policy: &Policy,
    vars: &mut BTreeMap<String, String>,
) -> Result<Attached, HomeError> {
    let root = store_root(&policy.home);
    check_hidden(&root, policy)?;
    if let Some(parent) = root.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io("cannot create", parent))?;
    }
    let dir = home_dir(&root, policy);
    for d in [&root, &workspace_dir(&root, &policy.workspace), &dir] {
        private_dir(d)?;
    }
    let lock = Flock::lock(open_lock(&dir)?, FlockArg::LockShared).map_err(|(_, e)| {
        HomeError::Invalid(format!("cannot lock {}: {e}", dir.join("lock").display()))
    })?;
    let limit = policy.limits.kept_home_size;
    if let Some(size) = recorded_size(&dir).filter(|s| *s > limit) {
        return Err(HomeError::Invalid(format!(
            "the kept sandbox home {} holds {}, over its limit of {} (limits.kept_home_size; its caches are already cleared) (hint: shellcage home reset, or raise the limit)",
            dir.display(),
            mib(size),
            mib(limit)
        )));
    }
    let meta = dir.join("meta.json");
    if std::fs::symlink_metadata(&meta).is_err() {
        let text = serde_json::to_vec(&Meta {
            workspace: policy.workspace.clone(),
            profile: policy.profile.clone(),
            network: policy.network,
        })
        .unwrap_or_default();
        write_new(&meta, &text)?;
    }
    let mut kept = Vec::new();
    for k in KEPT {
        let at = policy.home.join(k.at);
        // Only where the sandbox would show its own tmpfs: a host directory
        // bound there (the host's ~/.cargo) stays what it is, and nothing of
        // the host is mixed into what is kept.
        let clear = m.shows(&at) == Shown::Own && !m.ops.iter().any(|op| op.at().starts_with(&at));
        if !clear {
            continue;
        }
        let src = dir.join(k.dir);
        private_dir(&src)?;
        m.ops.push(Op::Bind {
            src,
            at: at.clone(),
            readonly: false,
            dir: true,
        });
        m.visible.write.push(at.clone());
        kept.push(at);
    }
    let installs = policy.home.join(INSTALLS);
    if kept.contains(&installs) {
        for name in INSTALL_VARS {
            if !vars.keys().any(|k| k.eq_ignore_ascii_case(name)) {
                vars.insert(name.into(), installs.display().to_string());
            }
        }
        let bin = installs.join("bin").display().to_string();
        let path = vars.entry("PATH".into()).or_default();
        if !path.split(':').any(|p| p == bin) {
            if !path.is_empty() {
                path.push(':');
            }
            path.push_str(&bin);
        }
    }
    Ok(Attached {
        dir,
        kept,
        limit,
        lock,
    })
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io("cannot write", path))?;
    f.write_all(bytes).map_err(io("cannot write", path))
}

/// Allocated bytes below `dir`, not following symlinks; stops counting after
/// `cap` entries (then the size is at least what was counted).
pub fn usage(dir: &Path, cap: u64) -> u64 {
    fn walk(d: &mut nix::dir::Dir, acc: &mut (u64, u64), cap: u64) {
        let Ok(names) = tree::list(d) else { return };
        for n in names {
            if acc.1 >= cap {
                return;
            }
            let fd = std::os::fd::AsFd::as_fd(d);
            let Ok(Some(node)) = tree::stat_at(fd, &n) else {
                continue;
            };
            acc.0 += node.allocated;
            acc.1 += 1;
            if node.dir {
                if let Ok(mut sub) = tree::open_dir_at(fd, &n) {
                    walk(&mut sub, acc, cap);
                }
            }
        }
    }
    let mut acc = (0, 0);
    if let Ok(mut d) = tree::open_dir(dir) {
        walk(&mut d, &mut acc, cap);
    }
    acc.0
}

/// A home is measured after a run when its last measurement is older than
/// this (or missing).
pub const MEASURE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Entries counted at most per measurement (a few hundred ms on a slow disk).
const USAGE_CAP: u64 = 1_000_000;

/// Empty `dir` (not following symlinks), keeping the directory itself.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    let mut d = tree::open_dir(dir)?;
    for name in tree::list(&mut d)? {
        tree::remove_tree_at(std::os::fd::AsFd::as_fd(&d), &name)?;
    }
    Ok(())
}

/// A session's command: the kept home as last measured (the session holds it; it is
/// measured when a cold run ends).
pub fn in_session(a: &Attached) -> HomeUse {
    HomeUse {
        mode: "persistent",
        dir: Some(a.dir.clone()),
        kept: a.kept.clone(),
        bytes: recorded_size(&a.dir),
        measured: false,
        cleared: false,
        why_fresh: None,
    }
}

/// Was the home measured less than [`MEASURE_EVERY`] ago (its `size` file's age)?
fn measured_recently(size_file: &Path) -> bool {
    std::fs::symlink_metadata(size_file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < MEASURE_EVERY)
}

/// A session's command has ended: measure the home as a run's end does (at most every
/// [`MEASURE_EVERY`]), but never clear it here (the session's other commands may be
/// using it). Over its limit: `true`, and the caller ends the session, whose end clears
/// the caches ([`after_run`]) when no run holds the home.
pub fn after_session_command(a: &Attached) -> (HomeUse, bool) {
    let size_file = a.dir.join("size");
    let recent = measured_recently(&size_file);
    let mut used = in_session(a);
    let bytes = match (recent, used.bytes) {
        (true, Some(b)) => b,
        _ => {
            let b = KEPT
                .iter()
                .map(|k| usage(&a.dir.join(k.dir), USAGE_CAP))
                .sum::<u64>();
            if let Err(e) = write_new(&size_file, format!("{b}\n").as_bytes()) {
                crate::say!("shellcage: {e}");
            }
            used.measured = true;
            b
        }
    };
    used.bytes = Some(bytes);
    let over = bytes > a.limit;
    if over {
        crate::say!(
            "shellcage: the kept sandbox home {} holds {}, over its limit of {}: the session ends, and its caches are cleared when it has",
            a.dir.display(),
            mib(bytes),
            mib(a.limit)
        );
    }
    (used, over)
}

/// After the run (every process of the sandbox is gone): measure the home,
/// clear its caches when it is over the limit and no other run uses it, and
/// record the size for the next launch.
pub fn after_run(a: Attached) -> HomeUse {
    let size_file = a.dir.join("size");
    let recent = measured_recently(&size_file);
    // (Recorded over the limit, by a session's command: measured again, and cleared.)
    if let (true, Some(bytes)) = (recent, recorded_size(&a.dir).filter(|&b| b <= a.limit)) {
        return HomeUse {
            mode: "persistent",
            dir: Some(a.dir),
            kept: a.kept,
            bytes: Some(bytes),
            measured: false,
            cleared: false,
            why_fresh: None,
        };
    }
    let measure = || {
        KEPT.iter()
            .map(|k| usage(&a.dir.join(k.dir), USAGE_CAP))
            .sum::<u64>()
    };
    let mut bytes = measure();
    let mut cleared = false;
    let lock = a.lock;
    if bytes > a.limit {
        // Exclusive only when no other run holds the home.
        match Flock::relock(&lock, FlockArg::LockExclusiveNonblock) {
            Ok(()) => {
                for k in KEPT.iter().filter(|k| k.cache) {
                    let d = a.dir.join(k.dir);
                    if let Err(e) = empty_dir(&d) {
                        crate::say!("shellcage: cannot clear {}: {e}", d.display());
                    }
                }
                cleared = true;
                let before = bytes;
                bytes = measure();
                crate::say!(
                    "shellcage: the kept sandbox home {} held {}, over its limit of {}: its caches were cleared ({} left)",
                    a.dir.display(),
                    mib(before),
                    mib(a.limit),
                    mib(bytes)
                );
            }
            Err(_) => tracing::debug!("home in use by another run; not cleared"),
        }
    }
    if let Err(e) = write_new(&size_file, format!("{bytes}\n").as_bytes()) {
        crate::say!("shellcage: {e}");
    }
    drop(lock);
    HomeUse {
        mode: "persistent",
        dir: Some(a.dir),
        kept: a.kept,
        bytes: Some(bytes),
        measured: true,
        cleared,
        why_fresh: None,
    }
}

/// One home as `shellcage home list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub dir: PathBuf,
    pub meta: Option<Meta>,
    pub bytes: u64,
}

/// The homes of `workspace` (all of them when `None`).
pub fn list(root: &Path, workspace: Option<&Path>) -> Result<Vec<Listed>, HomeError> {
    let ws_dirs: Vec<PathBuf> = match workspace {
        Some(ws) => vec![workspace_dir(root, ws)],
        None => match std::fs::read_dir(root) {
            Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(io("cannot read", root)(e)),
        },
    };
    let mut out = Vec::new();
    for ws in ws_dirs {
        let Ok(rd) = std::fs::read_dir(&ws) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let dir = e.path();
            if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let meta = std::fs::read(dir.join("meta.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let bytes = KEPT
                .iter()
                .map(|k| usage(&dir.join(k.dir), USAGE_CAP))
                .sum();
            out.push(Listed { dir, meta, bytes });
        }
    }
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(out)
}

/// Remove `homes` (from [`list`]); a home in use by a running sandbox is
/// refused. Never follows a symlink the sandbox left.
pub fn reset(homes: &[Listed]) -> Result<(), HomeError> {
    for h in homes {
        let lock = Flock::lock(open_lock(&h.dir)?, FlockArg::LockExclusiveNonblock).map_err(
            |_| {
                HomeError::Invalid(format!(
                    "the sandbox home {} is in use by a running sandbox or a command of a session (hint: retry when it has ended)",
                    h.dir.display()
                ))
            },
        )?;
        let parent = h.dir.parent().unwrap_or(Path::new("/"));
        let name = h.dir.file_name().unwrap_or_default();
        let pdir = tree::open_dir(parent).map_err(io("cannot open", parent))?;
        let removed = tree::remove_tree_at(std::os::fd::AsFd::as_fd(&pdir), name);
        drop(lock);
        removed.map_err(io("cannot remove", &h.dir))?;
        // The workspace's directory goes when its last home does.
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}

/// Directory walks by descriptor (`*at` calls, no symlink ever followed),
/// for trees the sandbox wrote. Only while the home is locked exclusively or
/// no sandbox of it runs.
mod tree {
    use std::ffi::{OsStr, OsString};
    use std::io;
    use std::os::fd::{AsFd, BorrowedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use nix::dir::Dir;
    use nix::errno::Errno;
    use nix::fcntl::{AtFlags, OFlag};
    use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmodat, fstatat};
    use nix::unistd::{UnlinkatFlags, unlinkat};

    pub struct Node {
        pub dir: bool,
        pub perm: u32,
        pub allocated: u64,
    }

    pub fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Node>> {
        match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Node {
                dir: SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR,
                perm: st.st_mode & 0o7777,
                allocated: (st.st_blocks.max(0) as u64).saturating_mul(512),
            })),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    const FLAGS: OFlag = OFlag::O_RDONLY
        .union(OFlag::O_DIRECTORY)
        .union(OFlag::O_NOFOLLOW)
        .union(OFlag::O_CLOEXEC);

    pub fn open_dir(path: &Path) -> io::Result<Dir> {
        Ok(Dir::open(path, FLAGS, Mode::empty())?)
    }

    pub fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Dir> {
        Ok(Dir::openat(dir, name, FLAGS, Mode::empty())?)
    }

    pub fn list(dir: &mut Dir) -> io::Result<Vec<OsString>> {
        let mut names = Vec::new();
        for entry in dir.iter() {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(&name).to_os_string());
            }
        }
        Ok(names)
    }

    /// Remove `name` below `dir` and everything under it; a directory the
    /// command made unreadable is made u+rwx first (it was just `lstat`ed as
    /// a directory, and nothing of the sandbox runs to swap it).
    pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        let Some(node) = stat_at(dir, name)? else {
            return Ok(());
        };
        if !node.dir {
            return match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(e.into()),
            };
        }
        if node.perm & 0o700 != 0o700 {
            fchmodat(
                dir,
                name,
                Mode::from_bits_truncate(node.perm | 0o700),
                FchmodatFlags::FollowSymlink,
            )?;
        }
        let mut sub = open_dir_at(dir, name)?;
        for child in list(&mut sub)? {
            remove_tree_at(sub.as_fd(), &child)?;
        }
        match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests;

//! The mount namespace: a new root built from a tmpfs, bind mounts of the
//! allowed host paths (at the same paths), masks over secrets, and read-only
//! binds over protected workspace paths.
//!
//! `describe` runs in the supervisor before any namespace exists: it reads the
//! host (stat, readdir, glob) and produces a [`MountPlan`], a list of
//! operations. `apply` runs in the sandbox init and only executes that list.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::mount::{MntFlags, MsFlags};
use serde::Serialize;

use crate::policy::{Access, Policy, wildcard_match};
use crate::sys::{self, SysError};

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
    /// Read-only bind of a path inside the workspace over itself (protected
    /// paths); `ws` is the workspace, staged read-only once for all of them.
    Protect {
        ws: PathBuf,
        at: PathBuf,
        dir: bool,
    },
    Mask {
        at: PathBuf,
        dir: bool,
    },
    Dev {
        shm_size: u64,
    },
    Proc,
}

impl Op {
    fn at(&self) -> &Path {
        match self {
            Op::Tmpfs { at, .. }
            | Op::Bind { at, .. }
            | Op::Symlink { at, .. }
            | Op::Mask { at, .. }
            | Op::Pin { at }
            | Op::Protect { at, .. } => at,
            Op::Dev { .. } => Path::new("/dev"),
            Op::Proc => Path::new("/proc"),
        }
    }
}

/// Paths as the Landlock layer sees them inside the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VisiblePaths {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
}

/// What the scan for `.env` files did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EnvScan {
    pub dirs_read: usize,
    pub hidden: Vec<PathBuf>,
    /// The scan hit `max_dirs` before finishing.
    pub truncated: bool,
}

/// Everything `apply` needs, computed on the host side.
#[derive(Debug, Serialize)]
pub struct MountPlan {
    pub ops: Vec<Op>,
    pub visible: VisiblePaths,
    pub env_scan: EnvScan,
    /// Placeholders this run created on the host (removed at exit).
    pub placeholders: Vec<PathBuf>,
    /// Files that redirect git's configuration (`.git/commondir` …) and were
    /// absent at the start: one created in the sandbox is removed at exit.
    pub must_stay_absent: Vec<PathBuf>,
    /// Shared lock on the workspace directory while placeholders may exist.
    #[serde(skip)]
    pub workspace_lock: Option<Flock<std::fs::File>>,
}

/// Files in `.git` that redirect git's configuration (and so its hooks and
/// `core.fsmonitor`) elsewhere: `commondir` points at another git directory,
/// `config.worktree` is read when `extensions.worktreeConfig` is set.
const GIT_REDIRECTS: [&str; 2] = ["commondir", "config.worktree"];

/// Modes of the placeholders made for missing protected paths: empty and
/// read-only (quiet for `git status`, which warns on unreadable directories).
/// Cleanup removes only entries of exactly this shape.
const PLACEHOLDER_DIR_MODE: u32 = 0o555;
const PLACEHOLDER_FILE_MODE: u32 = 0o444;

fn is_placeholder(meta: &std::fs::Metadata) -> bool {
    let mode = meta.permissions().mode() & 0o7777;
    (meta.is_dir() && mode == PLACEHOLDER_DIR_MODE)
        || (meta.is_file() && meta.len() == 0 && mode == PLACEHOLDER_FILE_MODE)
}

fn depth(p: &Path) -> usize {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

fn is_within(p: &Path, root: &Path) -> bool {
    p.starts_with(root)
}

/// Build the mount plan for `policy`.
pub fn describe(policy: &Policy) -> Result<MountPlan, MountError> {
    let ws = &policy.workspace;
    let home = &policy.home;
    if depth(ws) == 0 || is_within(home, ws) {
        return Err(MountError::Invalid(format!(
            "workspace {} contains the home directory {} (hint: pass --workspace with a project directory)",
            ws.display(),
            home.display()
        )));
    }
    let ws_access = policy.workspace_access;
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
        },
        Op::Proc,
    ];
    let mut visible = VisiblePaths::default();
    visible.write.push(PathBuf::from("/tmp"));
    visible.write.push(home.clone());
    visible.write.push(PathBuf::from("/dev/shm"));

    // Binds: the profile's paths, then the workspace. A later rule for the
    // same path wins (the command line comes after the profile).
    // (path, access, is a directory): the kind comes from the lstat each
    // rule gets anyway, so no path is stat'ed twice on the launch path.
    let mut binds: Vec<(PathBuf, Access, bool)> = Vec::new();
    fn add_bind(
        binds: &mut Vec<(PathBuf, Access, bool)>,
        path: PathBuf,
        access: Access,
        dir: bool,
    ) {
        binds.retain(|(p, _, _)| p != &path);
        binds.push((path, access, dir));
    }
    for rule in &policy.paths {
        match std::fs::symlink_metadata(&rule.path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target =
                    std::fs::read_link(&rule.path).map_err(io_err("readlink", &rule.path))?;
                match std::fs::canonicalize(&rule.path) {
                    Ok(canon) => {
                        tree.push(Op::Symlink {
                            target,
                            at: rule.path.clone(),
                        });
                        if !binds.iter().any(|(p, _, _)| is_within(&canon, p))
                            && !is_system_symlink_target(&canon, &policy.paths)
                        {
                            let dir = canon.is_dir();
                            add_bind(&mut binds, canon, rule.access, dir);
                        }
                    }
                    Err(_) if rule.optional => continue,
                    Err(e) => {
                        return Err(MountError::Io {
                            what: "cannot resolve",
                            path: rule.path.clone(),
                            err: e,
                        });
                    }
                }
            }
            Ok(meta) => add_bind(&mut binds, rule.path.clone(), rule.access, meta.is_dir()),
            Err(_) if rule.optional => continue,
            Err(e) => {
                return Err(MountError::Io {
                    what: "cannot read",
                    path: rule.path.clone(),
                    err: e,
                });
            }
        }
    }
    add_bind(&mut binds, ws.clone(), ws_access, true);
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

    let bound = |p: &Path| binds.iter().any(|(b, _, _)| is_within(p, b));
    let mut masks: Vec<Op> = Vec::new();

    // Protected paths: read-only over themselves; placeholders when missing.
    let mut placeholders = Vec::new();
    let mut must_stay_absent = Vec::new();
    let mut workspace_lock = None;
    if ws_access == Access::Write && !policy.protect.is_empty() {
        let dir = std::fs::File::open(ws).map_err(io_err("cannot open workspace", ws))?;
        let lock = Flock::lock(dir, FlockArg::LockShared)
            .map_err(|(_, e)| SysError::new("flock", ws.display(), e))?;
        workspace_lock = Some(lock);
        // A protected path, or a workspace directory above it, that is a
        // symlink cannot be held in place by a mount (mounts follow links):
        // refuse rather than run unprotected.
        for rel in &policy.protect {
            let mut p = ws.clone();
            for comp in rel.components() {
                p.push(comp);
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(MountError::Invalid(format!(
                            "protected path {} is a symlink, which a read-only mount cannot hold (hint: replace the link with the real file or directory, or remove it)",
                            p.display()
                        )));
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        let mut protected: Vec<(PathBuf, bool)> = Vec::new();
        // git also takes configuration from these files when they exist: protect
        // them when present; a placeholder would break git, so one created in
        // the sandbox is removed at exit instead (MountPlan::must_stay_absent).
        if policy.protect.iter().any(|r| r == Path::new(".git/config")) && ws.join(".git").is_dir()
        {
            for name in GIT_REDIRECTS {
                let p = ws.join(".git").join(name);
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_file() => protected.push((p, false)),
                    Ok(_) => {
                        return Err(MountError::Invalid(format!(
                            "{} is not a regular file (hint: remove it; git reads it as configuration)",
                            p.display()
                        )));
                    }
                    Err(_) => must_stay_absent.push(p),
                }
            }
        }
        for rel in &policy.protect {
            let full = ws.join(rel);
            // Already inside a protected directory (e.g. `.git/config` below the
            // `.git` placeholder made for `.git/hooks`): covered, and creating
            // a placeholder inside the read-only placeholder would fail.
            if protected
                .iter()
                .any(|(p, dir)| *dir && full.starts_with(p) && &full != p)
            {
                continue;
            }
            let target = match std::fs::symlink_metadata(&full) {
                Ok(meta) if meta.file_type().is_symlink() => match std::fs::canonicalize(&full) {
                    // A symlink: protect what it points to, when that is writable here.
                    Ok(canon) if is_within(&canon, ws) => Some((canon.clone(), canon.is_dir())),
                    _ => None,
                },
                Ok(meta) => {
                    // Left by a run that was SIGKILLed, or held by a concurrent one.
                    if is_placeholder(&meta) {
                        placeholders.push(full.clone());
                    }
                    Some((full.clone(), meta.is_dir()))
                }
                Err(_) => {
                    // Protect the topmost missing ancestor, so nothing below it can be created.
                    let mut top = ws.clone();
                    let mut blocker = None;
                    for comp in rel.components() {
                        top.push(comp);
                        match std::fs::symlink_metadata(&top) {
                            Err(_) => break,
                            // An ancestor that is a file (`.git` in a git worktree or
                            // submodule): nothing can be created below it, so protect the
                            // file itself (it names the git directory).
                            Ok(m) if !m.is_dir() && top != full => {
                                blocker = Some(top.clone());
                                break;
                            }
                            Ok(_) => {}
                        }
                    }
                    if let Some(file) = blocker {
                        if !protected.iter().any(|(p, _)| p == &file) {
                            protected.push((file, false));
                        }
                        continue;
                    }
                    // Inside a placeholder directory (made for an earlier protected
                    // path, by this run or a concurrent one): nothing can be created in
                    // it (mode 0555, and as non-root not even by us), and protecting the
                    // placeholder itself covers this path.
                    if let Some(parent) = top.parent().filter(|p| *p != ws.as_path()) {
                        if std::fs::symlink_metadata(parent).is_ok_and(|m| is_placeholder(&m)) {
                            let t = (parent.to_path_buf(), true);
                            placeholders.push(t.0.clone());
                            if !protected.iter().any(|(p, _)| p == &t.0) {
                                protected.push(t);
                            }
                            continue;
                        }
                    }
                    // Inside a placeholder directory (this run's or a concurrent
                    // one's) nothing can be created without CAP_DAC_OVERRIDE (it is
                    // 0555), and nothing needs to be: protecting the placeholder
                    // protects everything below it.
                    if let Some(parent) = top.parent().filter(|p| *p != ws.as_path()) {
                        if std::fs::symlink_metadata(parent).is_ok_and(|m| is_placeholder(&m)) {
                            let t = (parent.to_path_buf(), true);
                            if !protected.iter().any(|(p, _)| p == &t.0) {
                                protected.push(t);
                            }
                            continue;
                        }
                    }
                    let as_file = top == full && looks_like_file(&full);
                    // The mode is the marker, so the umask must not clear bits of it.
                    let old_umask = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
                    let created = if as_file {
                        sys::create_placeholder_file(&top, PLACEHOLDER_FILE_MODE)
                    } else {
                        std::fs::DirBuilder::new()
                            .mode(PLACEHOLDER_DIR_MODE)
                            .create(&top)
                    };
                    nix::sys::stat::umask(old_umask);
                    match created {
                        // A concurrent run may have created it first: a placeholder too.
                        Ok(()) => placeholders.push(top.clone()),
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                            placeholders.push(top.clone())
                        }
                        Err(e) => {
                            let plan = MountPlan {
                                ops: vec![],
                                visible: VisiblePaths::default(),
                                env_scan: EnvScan::default(),
                                placeholders,
                                must_stay_absent: Vec::new(),
                                workspace_lock,
                            };
                            cleanup(&plan);
                            return Err(MountError::Io {
                                what: "cannot create placeholder",
                                path: top,
                                err: e,
                            });
                        }
                    }
                    Some((top.clone(), !as_file))
                }
            };
            if let Some(t) = target {
                if !protected.iter().any(|(p, _)| p == &t.0) {
                    protected.push(t);
                }
            }
        }
        for (path, dir) in protected {
            masks.push(Op::Protect {
                ws: ws.clone(),
                at: path,
                dir,
            });
        }
    }

    // Secrets inside visible trees.
    for rule in &policy.hide {
        for found in expand_glob(&rule.pattern) {
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

    // `.env` files in the workspace.
    let mut env_scan = EnvScan::default();
    if policy.env_files.enabled {
        scan_env_files(ws, 0, policy, &mut env_scan);
        for f in &env_scan.hidden {
            masks.push(Op::Mask {
                at: f.clone(),
                dir: false,
            });
        }
    }

    // Pin the workspace directories above every protected or masked path, so
    // none of them can be moved away during the run (see Op::Pin).
    if ws_access == Access::Write {
        let mut pins: Vec<PathBuf> = Vec::new();
        for op in &masks {
            let at = match op {
                Op::Protect { at, .. } | Op::Mask { at, .. } => at,
                _ => continue,
            };
            for a in at.ancestors().skip(1) {
                if a == ws.as_path() || !a.starts_with(ws) {
                    break;
                }
                if !pins.iter().any(|p| p == a)
                    && std::fs::symlink_metadata(a).is_ok_and(|m| m.is_dir())
                {
                    pins.push(a.to_path_buf());
                }
            }
        }
        tree.extend(pins.into_iter().map(|at| Op::Pin { at }));
        tree.sort_by_key(|op| depth(op.at()));
    }
    tree.extend(masks);
    Ok(MountPlan {
        ops: tree,
        visible,
        env_scan,
        placeholders,
        must_stay_absent,
        workspace_lock,
    })
}

/// Is `canon` already visible because a rule's directory is (a /bin → usr/bin
/// symlink needs no bind of its own when /usr is bound)?
fn is_system_symlink_target(canon: &Path, rules: &[crate::policy::PathRule]) -> bool {
    rules.iter().any(|r| {
        is_within(canon, &r.path) && std::fs::symlink_metadata(&r.path).is_ok_and(|m| m.is_dir())
    })
}

/// File-like protected names get a file placeholder; the rest a directory.
fn looks_like_file(p: &Path) -> bool {
    let name = p.file_name().map(OsStr::as_bytes).unwrap_or_default();
    name == b".envrc"
        || name == b"config"
        || [".json", ".toml", ".yaml", ".yml"]
            .iter()
            .any(|ext| name.ends_with(ext.as_bytes()))
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

fn is_env_file(name: &[u8], allow: &[String]) -> bool {
    (name == b".env" || name.starts_with(b".env.")) && !allow.iter().any(|a| a.as_bytes() == name)
}

/// Depth-bounded readdir walk; uses d_type only (no stat per entry).
fn scan_env_files(dir: &Path, level: usize, policy: &Policy, out: &mut EnvScan) {
    let cfg = &policy.env_files;
    if out.dirs_read >= cfg.max_dirs {
        out.truncated = true;
        return;
    }
    out.dirs_read += 1;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut subdirs = Vec::new();
    for entry in rd.filter_map(Result::ok) {
        let Ok(ft) = entry.file_type() else { continue };
        let name = entry.file_name();
        if ft.is_file() && is_env_file(name.as_bytes(), &cfg.allow_names) {
            out.hidden.push(entry.path());
        } else if ft.is_dir()
            && level < cfg.max_depth
            && !cfg
                .skip_dirs
                .iter()
                .any(|s| s.as_bytes() == name.as_bytes())
        {
            subdirs.push(entry.path());
        }
    }
    for sub in subdirs {
        scan_env_files(&sub, level + 1, policy, out);
    }
}

/// Remove the placeholders of every run that has finished with this
/// workspace, if no other run is using it. Called by the supervisor on every
/// exit path (normal, signal, error).
pub fn cleanup(plan: &MountPlan) {
    for p in &plan.must_stay_absent {
        if std::fs::symlink_metadata(p).is_ok() {
            match std::fs::remove_file(p) {
                Ok(()) => eprintln!(
                    "shellcage: removed {} created in the sandbox (git would read it as configuration)",
                    p.display()
                ),
                Err(e) => eprintln!(
                    "shellcage: warning: {} was created in the sandbox and could not be removed: {e}",
                    p.display()
                ),
            }
        }
    }
    let Some(lock) = &plan.workspace_lock else {
        return;
    };
    // Upgrade to exclusive only if nobody else holds the workspace.
    if lock.relock(FlockArg::LockExclusiveNonblock).is_err() {
        tracing::debug!("another sandbox uses the workspace; leaving placeholders to it");
        return;
    }
    let mut candidates: Vec<&PathBuf> = plan.placeholders.iter().collect();
    // Deepest first, so a placeholder directory is empty by the time it is checked.
    candidates.sort_by_key(|p| std::cmp::Reverse(depth(p)));
    candidates.dedup();
    for p in candidates {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            continue;
        };
        if !is_placeholder(&meta) {
            continue;
        }
        let res = if meta.is_dir() {
            std::fs::remove_dir(p)
        } else {
            std::fs::remove_file(p)
        };
        if let Err(err) = res {
            // The user should hear about a stray entry we leave in their tree.
            eprintln!(
                "shellcage: warning: placeholder {} not removed: {err}",
                p.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// apply: runs in the sandbox init (pid 1, new user + mount namespace).

const BASE: &str = "/tmp";
const OLD: &str = "/oldroot";
const NEW: &str = "/newroot";
/// Masks live in a directory of the scratch root that is made read-only
/// once: a bind copies its source's mount flags, so each mask is one mount.
const MASKS: &str = "/masks";
const MASK_FILE: &str = "/masks/file";
const MASK_DIR: &str = "/masks/dir";
/// A read-only view of the workspace, staged once; protected paths are bound
/// from it (read-only by inheritance, one mount each).
const WS_RO: &str = "/ws-ro";

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_else(|_| CString::from(c"/nonexistent"))
}

fn under(prefix: &str, p: &Path) -> PathBuf {
    let rel = p.strip_prefix("/").unwrap_or(p);
    Path::new(prefix).join(rel)
}

fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SysError> {
    nix::mount::mount(src, target, fstype, flags, data).map_err(|e| {
        let obj = match src {
            Some(s) if flags.contains(MsFlags::MS_BIND) => {
                format!("{} -> {}", s.display(), target.display())
            }
            _ => target.display().to_string(),
        };
        SysError::new("mount", obj, e)
    })
}

fn mkdir_p(p: &Path) -> Result<(), MountError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .map_err(io_err("mkdir", p))
}

fn ensure_mountpoint(at: &Path, dir: bool) -> Result<(), MountError> {
    if std::fs::symlink_metadata(at).is_ok() {
        return Ok(());
    }
    if dir {
        mkdir_p(at)
    } else {
        if let Some(parent) = at.parent() {
            mkdir_p(parent)?;
        }
        std::fs::File::create(at)
            .map(drop)
            .map_err(io_err("create mountpoint", at))
    }
}

/// Bind `src` (under the old root, which `apply` has made read-only, nosuid
/// and nodev) at `at`. A bind copies its source's flags, so a read-only bind is
/// one mount; a writable one clears the read-only flag again, unless the host
/// itself has the tree read-only (then it stays so, as on the host).
fn bind(src: &Path, at: &Path, readonly: bool, dir: bool) -> Result<(), MountError> {
    ensure_mountpoint(at, dir)?;
    mount(
        Some(src),
        at,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    if !readonly {
        match sys::make_tree_writable(&cpath(at)) {
            Err(e) if e.errno == nix::errno::Errno::EPERM => {
                tracing::debug!(path = %at.display(), "read-only on the host; stays read-only");
            }
            other => other?,
        }
    }
    Ok(())
}

fn tmpfs(at: &Path, size: u64, mode: u32) -> Result<(), MountError> {
    mkdir_p(at)?;
    let data = format!("size={size},mode={mode:o}");
    mount(
        Some(Path::new("tmpfs")),
        at,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&data),
    )?;
    Ok(())
}

fn remount_ro(at: &Path) -> Result<(), SysError> {
    mount(
        None,
        at,
        None,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None,
    )
}

fn setup_dev(shm_size: u64) -> Result<(), MountError> {
    let dev = Path::new(NEW).join("dev");
    tmpfs(&dev, 1 << 16, 0o755)?;
    for node in DEV_NODES {
        let at = dev.join(node);
        std::fs::File::create(&at).map_err(io_err("create", &at))?;
        let src = Path::new(OLD).join("dev").join(node);
        mount(Some(&src), &at, None, MsFlags::MS_BIND, None)?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let at = dev.join(name);
        std::os::unix::fs::symlink(target, &at).map_err(io_err("symlink", &at))?;
    }
    let pts = dev.join("pts");
    mkdir_p(&pts)?;
    // A private devpts so tools that need a pseudo-terminal (script, expect,
    // python's pty tests) work; not a guarantee, so its absence is not fatal.
    if let Err(err) = mount(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    ) {
        tracing::debug!(%err, "devpts not mounted");
    }
    tmpfs(&dev.join("shm"), shm_size, 0o1777)?;
    remount_ro(&dev)?;
    Ok(())
}

fn setup_proc() -> Result<(), MountError> {
    let proc = Path::new(NEW).join("proc");
    mkdir_p(&proc)?;
    mount(
        Some(Path::new("proc")),
        &proc,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    // /proc/sysrq-trigger needs CAP_SYS_ADMIN in the initial user namespace,
    // so it is not re-bound; /proc/sys holds sysctls of our own namespaces.
    let sys = proc.join("sys");
    if std::fs::symlink_metadata(&sys).is_ok() {
        mount(
            Some(&sys),
            &sys,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        remount_ro(&sys)?;
    }
    Ok(())
}

/// Build the new root from `plan` and pivot into it. Runs as pid 1 of the
/// sandbox with full capabilities in its own user namespace.
pub fn apply(plan: &MountPlan) -> Result<(), MountError> {
    // Nothing we do here may propagate back to the host.
    mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    // A scratch tmpfs over /tmp becomes the temporary root, so every host path
    // (including ones under /tmp) stays reachable under /oldroot.
    let base = Path::new(BASE);
    mount(
        Some(Path::new("tmpfs")),
        base,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=65536,mode=0755"),
    )?;
    std::env::set_current_dir(base).map_err(io_err("chdir", base))?;
    for d in ["newroot", "oldroot", "masks", "ws-ro"] {
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(d)
            .map_err(io_err("mkdir", Path::new(d)))?;
    }
    sys::create_placeholder_file(Path::new("masks/file"), 0)
        .map_err(io_err("create", Path::new(MASK_FILE)))?;
    std::fs::DirBuilder::new()
        .mode(0o000)
        .create("masks/dir")
        .map_err(io_err("mkdir", Path::new(MASK_DIR)))?;
    nix::unistd::pivot_root(".", "oldroot").map_err(|e| SysError::new("pivot_root", BASE, e))?;
    std::env::set_current_dir("/").map_err(io_err("chdir", Path::new("/")))?;

    let new = Path::new(NEW);
    mount(
        Some(Path::new("tmpfs")),
        new,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=1048576,mode=0755"),
    )?;

    let masks = Path::new(MASKS);
    mount(Some(masks), masks, None, MsFlags::MS_BIND, None)?;
    remount_ro(masks)?;

    // /dev and /proc first: the device binds must not be nodev, and a new proc
    // mount must be made while the host's proc is visible as it is.
    let (special, rest): (Vec<&Op>, Vec<&Op>) = plan
        .ops
        .iter()
        .partition(|op| matches!(op, Op::Dev { .. } | Op::Proc));
    let mut ws_staged = false;
    for op in special {
        apply_op(op, &mut ws_staged)
            .inspect_err(|err| tracing::debug!(%err, ?op, "mount step failed"))?;
    }
    // Then the whole old root read-only, nosuid, nodev in one call (our copy of
    // the host's mounts; the host is not affected): every bind from it inherits
    // those flags, so each read-only bind is a single mount.
    sys::make_tree_attrs(&cpath(Path::new(OLD)), true, true)?;
    for op in rest {
        apply_op(op, &mut ws_staged)
            .inspect_err(|err| tracing::debug!(%err, ?op, "mount step failed"))?;
    }

    remount_ro(new)?;
    std::env::set_current_dir(new).map_err(io_err("chdir", new))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| SysError::new("pivot_root", NEW, e))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| SysError::new("umount2", "old root", e))?;
    std::env::set_current_dir("/").map_err(io_err("chdir", Path::new("/")))?;
    Ok(())
}

fn apply_op(op: &Op, ws_staged: &mut bool) -> Result<(), MountError> {
    match op {
        Op::Tmpfs { at, size, mode } => tmpfs(&under(NEW, at), *size, *mode),
        Op::Bind {
            src,
            at,
            readonly,
            dir,
        } => bind(&under(OLD, src), &under(NEW, at), *readonly, *dir),
        Op::Symlink { target, at } => {
            let at = under(NEW, at);
            if let Some(parent) = at.parent() {
                mkdir_p(parent)?;
            }
            std::os::unix::fs::symlink(target, &at).map_err(io_err("symlink", &at))
        }
        Op::Mask { at, dir } => {
            let at = under(NEW, at);
            let src = Path::new(if *dir { MASK_DIR } else { MASK_FILE });
            // Read-only by inheritance from the read-only MASKS mount.
            mount(Some(src), &at, None, MsFlags::MS_BIND, None)?;
            Ok(())
        }
        Op::Pin { at } => bind(&under(OLD, at), &under(NEW, at), false, true),
        Op::Protect { ws, at, dir } => {
            let staging = Path::new(WS_RO);
            if !*ws_staged {
                mount(
                    Some(&under(OLD, ws)),
                    staging,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )?;
                sys::make_tree_attrs(&cpath(staging), true, true)?;
                *ws_staged = true;
            }
            let rel = at.strip_prefix(ws).map_err(|_| {
                MountError::Invalid(format!(
                    "protected path {} is outside the workspace",
                    at.display()
                ))
            })?;
            let target = under(NEW, at);
            ensure_mountpoint(&target, *dir)?;
            // Read-only (and nosuid, nodev) by inheritance from the staged view.
            mount(
                Some(&staging.join(rel)),
                &target,
                None,
                MsFlags::MS_BIND,
                None,
            )?;
            Ok(())
        }
        Op::Dev { shm_size } => setup_dev(*shm_size),
        Op::Proc => setup_proc(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_names() {
        let allow = vec![".env.example".to_string()];
        assert!(is_env_file(b".env", &allow));
        assert!(is_env_file(b".env.local", &allow));
        assert!(!is_env_file(b".env.example", &allow));
        assert!(!is_env_file(b".environment", &allow));
        assert!(!is_env_file(b"x.env", &allow));
    }

    #[test]
    fn file_like_placeholders() {
        assert!(looks_like_file(Path::new("/w/.envrc")));
        assert!(looks_like_file(Path::new("/w/.mcp.json")));
        assert!(looks_like_file(Path::new("/w/.git/config")));
        assert!(!looks_like_file(Path::new("/w/.vscode")));
        assert!(!looks_like_file(Path::new("/w/.git/hooks")));
    }
}

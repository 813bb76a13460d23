//! Where layers live: `$XDG_STATE_HOME/shellcage/layers/<workspace>/<layer>/`.
//!
//! ```text
//! layers/                       0700
//!   myproj-3f2a…c1/             one per workspace: readable name + 16 hex of SHA-256(path)
//!     default/                  one per layer (`--layer NAME`)
//!       meta.json               workspace, begin time, base commit, version
//!       begun                   empty file; its ctime is the layer's start (T0)
//!       lock                    flock: apply/discard (and, phase 2, a mount) hold it
//!       upper/  work/           overlayfs upperdir and workdir
//!       apply.journal           temporary names an apply created (cleanup on rerun)
//! ```
//! Every directory is created 0700 and checked after creation: a real
//! directory (not a symlink), owned by us, writable by nobody else.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::OverlayError;

/// Default layer name.
pub use crate::policy::DEFAULT_LAYER;
const META: &str = "meta.json";
const MAX_META_BYTES: u64 = 64 << 10;

/// The layers root for this user.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

/// What a layer records about itself (`meta.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub format: u32,
    pub workspace: PathBuf,
    pub layer: String,
    /// RFC 3339 UTC: when the layer began (or was last emptied by `apply`).
    pub begun: String,
    /// ctime of the `begun` stamp file (seconds, nanoseconds): host files whose
    /// ctime is at or after it changed during the layer's life.
    pub begun_ctime: (i64, i64),
    /// The commit HEAD pointed to when the layer began (git workspaces).
    pub base_commit: Option<String>,
    pub shellcage_version: String,
    /// The profile the layer began with (`run --overlay`): `apply` keeps its
    /// protected paths off the host unless `-p` names another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<LayerProfile>,
}

/// A profile as a layer records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LayerProfile {
    /// As asked for (`dev`, or a file): what `apply` loads again.
    pub name: String,
    /// Where it came from (`builtin:dev`, a path).
    pub source: String,
}

/// One layer of one workspace.
#[derive(Debug, Clone)]
pub struct Layer {
    pub dir: PathBuf,
    pub meta: Meta,
}

/// An exclusive hold on a layer (released on drop).
pub struct LayerLock {
    _lock: Flock<File>,
}

impl Store {
    /// `$XDG_STATE_HOME/shellcage/layers` when that is absolute, else
    /// `HOME/.local/state/shellcage/layers`.
    pub fn from_env(home: &Path) -> Store {
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(".local/state"));
        Store {
            root: base.join("shellcage/layers"),
        }
    }

    /// The directory of a workspace's layers: `<basename>-<16 hex>`.
    pub fn workspace_dir(&self, workspace: &Path) -> PathBuf {
        let digest = crate::audit::sha256_hex(workspace.as_os_str().as_bytes());
        let base: String = workspace
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into())
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(32)
            .collect();
        let base = base.trim_start_matches('.');
        let base = if base.is_empty() { "ws" } else { base };
        self.root.join(format!("{base}-{}", &digest[..16]))
    }

    /// Refuse a store inside the workspace (the sandbox would see it through
    /// the lower layer) or a workspace inside the store.
    fn check_apart(&self, workspace: &Path) -> Result<(), OverlayError> {
        let root = canonical_prefix(&self.root);
        if root.starts_with(workspace) || workspace.starts_with(&root) {
            return Err(OverlayError::Invalid(format!(
                "the layer directory {} and the workspace {} overlap (hint: set XDG_STATE_HOME to a directory outside the workspace)",
                self.root.display(),
                workspace.display()
            )));
        }
        Ok(())
    }
}

/// The longest existing prefix of `p`, canonicalized, plus the rest.
fn canonical_prefix(p: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut cur = p.to_path_buf();
    loop {
        if let Ok(c) = std::fs::canonicalize(&cur) {
            return missing.iter().rev().fold(c, |acc, m: &PathBuf| acc.join(m));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(PathBuf::from(name));
                cur = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

/// Layer names: like profile names, short and path-free.
pub fn validate_name(name: &str) -> Result<(), OverlayError> {
    if crate::policy::is_valid_layer_name(name) {
        Ok(())
    } else {
        Err(OverlayError::Invalid(format!(
            "invalid layer name {name:?}: {}",
            crate::policy::LAYER_NAME_RULE
        )))
    }
}

/// mkdir 0700 (existing is fine), then check it is ours and private.
fn private_dir(path: &Path) -> Result<(), OverlayError> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(OverlayError::io("cannot create", path, e)),
    }
    check_private(path)
}

fn check_private(path: &Path) -> Result<(), OverlayError> {
    let why = crate::sandbox::home::private_dir_problem(path)
        .map_err(|e| OverlayError::io("cannot stat", path, e))?;
    match why {
        Some(why) => Err(OverlayError::Invalid(format!(
            "unsafe layer directory {}: {why} (hint: remove it; shellcage recreates it 0700)",
            path.display()
        ))),
        None => Ok(()),
    }
}

/// The commit HEAD points to, when `workspace` is a git work tree with commits.
pub fn head_commit(workspace: &Path) -> Option<String> {
    let out = super::git::command(workspace)
        .args(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
        .output()
        .ok()?;
    let sha = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && sha.bytes().all(|b| b.is_ascii_hexdigit()) && sha.len() >= 40)
        .then_some(sha)
}

impl Layer {
    /// Create the layer (or open it when it exists). `workspace` must be canonical.
    pub fn begin(store: &Store, workspace: &Path, name: &str) -> Result<Layer, OverlayError> {
        Layer::begin_with(store, workspace, name, None)
    }

    /// [`Layer::begin`], recording `profile` in a layer it creates
    /// (`run --overlay` calls this before mounting).
    pub fn begin_with(
        store: &Store,
        workspace: &Path,
        name: &str,
        profile: Option<&LayerProfile>,
    ) -> Result<Layer, OverlayError> {
        validate_name(name)?;
        store.check_apart(workspace)?;
        if workspace.to_str().is_none() {
            return Err(OverlayError::Invalid(format!(
                "workspace {} is not valid UTF-8: overlay layers need a UTF-8 path",
                workspace.display()
            )));
        }
        let mut chain = Vec::new();
        let mut cur = store.root.clone();
        while !cur.exists() {
            chain.push(cur.clone());
            if !cur.pop() {
                break;
            }
        }
        for dir in chain.iter().rev() {
            private_dir(dir)?;
        }
        // Ours too: whoever can write it could swap `layers` between checks.
        if let Some(parent) = store.root.parent() {
            check_private(parent)?;
        }
        check_private(&store.root)?;
        let ws_dir = store.workspace_dir(workspace);
        private_dir(&ws_dir)?;
        let dir = ws_dir.join(name);
        private_dir(&dir)?;
        for sub in ["upper", "work"] {
            private_dir(&dir.join(sub))?;
        }
        // The merged view's root shows the upper root's mode: give it the
        // workspace's (never group/other-writable; `dir` above stays 0700).
        let ws_mode = std::fs::metadata(workspace)
            .map_err(|e| OverlayError::io("cannot stat", workspace, e))?
            .mode();
        std::fs::set_permissions(
            dir.join("upper"),
            std::fs::Permissions::from_mode((ws_mode & 0o755) | 0o700),
        )
        .map_err(|e| OverlayError::io("cannot chmod", &dir.join("upper"), e))?;
        // The lock exists from the start, so taking it (even for a dry run)
        // changes nothing in the layer.
        lock_file(&dir)?;
        match Layer::read(&dir) {
            Ok(layer) => {
                layer.check_workspace(workspace)?;
                Ok(layer)
            }
            Err(OverlayError::NoLayer { .. }) => {
                let meta = Layer::stamp(&dir, workspace, name, profile.cloned())?;
                Ok(Layer { dir, meta })
            }
            Err(e) => Err(e),
        }
    }

    /// Open an existing layer of `workspace`.
    pub fn open(store: &Store, workspace: &Path, name: &str) -> Result<Layer, OverlayError> {
        validate_name(name)?;
        let dir = store.workspace_dir(workspace).join(name);
        if std::fs::symlink_metadata(&dir).is_err() {
            return Err(OverlayError::NoLayer {
                name: name.into(),
                workspace: workspace.to_path_buf(),
            });
        }
        let parent = store.root.parent().unwrap_or(&store.root).to_path_buf();
        for d in [
            &parent,
            &store.root,
            &dir,
            &dir.join("upper"),
            &dir.join("work"),
        ] {
            check_private(d)?;
        }
        let layer = Layer::read(&dir)?;
        layer.check_workspace(workspace)?;
        Ok(layer)
    }

    fn check_workspace(&self, workspace: &Path) -> Result<(), OverlayError> {
        if self.meta.workspace != workspace {
            return Err(OverlayError::Invalid(format!(
                "layer {} belongs to workspace {}, not {}",
                self.dir.display(),
                self.meta.workspace.display(),
                workspace.display()
            )));
        }
        Ok(())
    }

    fn read(dir: &Path) -> Result<Layer, OverlayError> {
        let path = dir.join(META);
        let file = match File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OverlayError::NoLayer {
                    name: dir.file_name().unwrap_or_default().to_string_lossy().into(),
                    workspace: PathBuf::new(),
                });
            }
            Err(e) => return Err(OverlayError::io("cannot open", &path, e)),
        };
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_META_BYTES), &mut text)
            .map_err(|e| OverlayError::io("cannot read", &path, e))?;
        let meta: Meta = serde_json::from_slice(&text).map_err(|e| {
            OverlayError::Invalid(format!("layer metadata {}: {e}", path.display()))
        })?;
        if meta.format != 1 {
            return Err(OverlayError::Invalid(format!(
                "layer metadata {}: format {} is not supported by this shellcage",
                path.display(),
                meta.format
            )));
        }
        Ok(Layer {
            dir: dir.to_path_buf(),
            meta,
        })
    }

    /// Write a fresh `begun` stamp and `meta.json` (atomically).
    fn stamp(
        dir: &Path,
        workspace: &Path,
        name: &str,
        profile: Option<LayerProfile>,
    ) -> Result<Meta, OverlayError> {
        let stamp = dir.join("begun");
        let tmp = dir.join(format!(".begun.{}", std::process::id()));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| OverlayError::io("cannot create", &tmp, e))?;
        let md = f
            .metadata()
            .map_err(|e| OverlayError::io("cannot stat", &tmp, e))?;
        std::fs::rename(&tmp, &stamp).map_err(|e| OverlayError::io("cannot rename", &tmp, e))?;
        let meta = Meta {
            format: 1,
            workspace: workspace.to_path_buf(),
            layer: name.to_string(),
            begun: crate::audit::now_rfc3339(),
            begun_ctime: (md.ctime(), md.ctime_nsec()),
            base_commit: head_commit(workspace),
            shellcage_version: env!("CARGO_PKG_VERSION").to_string(),
            profile,
        };
        write_atomic(&dir.join(META), &serde_json::to_vec_pretty(&meta).unwrap())?;
        Ok(meta)
    }

    /// After a complete apply: the layer starts over from the host's new state.
    pub fn restart(&mut self) -> Result<(), OverlayError> {
        let work = self.work();
        let wdir =
            super::fs::open_dir(&work).map_err(|e| OverlayError::io("cannot open", &work, e))?;
        let mut wdir = wdir;
        for name in
            super::fs::list(&mut wdir).map_err(|e| OverlayError::io("cannot read", &work, e))?
        {
            super::fs::remove_tree_at(std::os::fd::AsFd::as_fd(&wdir), &name)
                .map_err(|e| OverlayError::io("cannot clean", &work.join(&name), e))?;
        }
        let profile = self.meta.profile.take();
        self.meta = Layer::stamp(
            &self.dir,
            &self.meta.workspace,
            &self.meta.layer.clone(),
            profile,
        )?;
        Ok(())
    }

    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn name(&self) -> &str {
        &self.meta.layer
    }
    pub fn journal(&self) -> PathBuf {
        self.dir.join("apply.journal")
    }

    /// Take the layer's lock without waiting: `apply` and `discard` must not
    /// run while a sandbox has the layer mounted (phase 2 holds the same lock).
    /// An idle session that holds the layer (mounted between its commands) is asked to
    /// end, and given up to 2 s to let it go; one that runs a command keeps it.
    pub fn lock(&self) -> Result<LayerLock, OverlayError> {
        use std::time::{Duration, Instant};
        let path = self.dir.join("lock");
        let mut file = lock_file(&self.dir)?;
        let mut until: Option<Instant> = None;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(LayerLock { _lock: lock }),
                Err((f, nix::errno::Errno::EWOULDBLOCK)) => file = f,
                Err((_, e)) => return Err(OverlayError::io("cannot lock", &path, e.into())),
            }
            let deadline = match until {
                Some(d) => d,
                None => {
                    let asked = super::release(&self.dir, super::Release::IfIdle);
                    if asked == 0 {
                        // No session holds it now, but one may have held it at our try:
                        // a session lets the layer go before it removes its description,
                        // so one that ended in between has let it go. Once more, then it
                        // is a command's (or another apply's): refused at once.
                        until = Some(Instant::now());
                        continue;
                    }
                    *until.insert(Instant::now() + Duration::from_secs(2))
                }
            };
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(OverlayError::Busy {
            name: self.meta.layer.clone(),
        })
    }

    /// Remove the layer: renamed away first (so it vanishes at once), then deleted.
    pub fn discard(self) -> Result<(), OverlayError> {
        let _lock = self.lock()?;
        let parent = self.dir.parent().unwrap_or(Path::new("/")).to_path_buf();
        let grave = parent.join(format!(
            ".discard-{}-{}",
            self.meta.layer,
            std::process::id()
        ));
        std::fs::rename(&self.dir, &grave)
            .map_err(|e| OverlayError::io("cannot rename", &self.dir, e))?;
        remove_all(&grave)?;
        // Leftovers of an interrupted discard.
        if let Ok(rd) = std::fs::read_dir(&parent) {
            for e in rd.flatten() {
                if e.file_name().as_bytes().starts_with(b".discard-") {
                    let _ = remove_all(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&parent);
        Ok(())
    }
}

pub(super) fn lock_file(dir: &Path) -> Result<File, OverlayError> {
    let path = dir.join("lock");
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| OverlayError::io("cannot open", &path, e))
}

fn remove_all(path: &Path) -> Result<(), OverlayError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let pdir =
        super::fs::open_dir(parent).map_err(|e| OverlayError::io("cannot open", parent, e))?;
    super::fs::remove_tree_at(
        std::os::fd::AsFd::as_fd(&pdir),
        path.file_name().unwrap_or_default(),
    )
    .map_err(|e| OverlayError::io("cannot remove", path, e))
}

/// Write `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OverlayError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| OverlayError::io("cannot create", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| OverlayError::io("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| OverlayError::io("cannot rename", &tmp, e))
}

/// A layer as listed by `changes --list`.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    pub name: String,
    pub begun: String,
    pub base_commit: Option<String>,
    /// Disk space the upper directory takes (allocated blocks).
    pub bytes: u64,
    /// Entries in the upper directory (files, directories, whiteouts).
    pub entries: u64,
    /// Why the layer cannot be read, if it cannot.
    pub problem: Option<String>,
}

/// The layers of `workspace`, by name.
pub fn list_layers(store: &Store, workspace: &Path) -> Result<Vec<LayerInfo>, OverlayError> {
    let ws_dir = store.workspace_dir(workspace);
    let rd = match std::fs::read_dir(&ws_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(OverlayError::io("cannot read", &ws_dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| OverlayError::io("cannot read", &ws_dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if validate_name(&name).is_err() {
            continue;
        }
        match Layer::open(store, workspace, &name) {
            Ok(layer) => {
                let (bytes, entries) = usage(&layer.upper());
                out.push(LayerInfo {
                    name,
                    begun: layer.meta.begun.clone(),
                    base_commit: layer.meta.base_commit.clone(),
                    bytes,
                    entries,
                    problem: None,
                });
            }
            Err(e) => out.push(LayerInfo {
                name,
                begun: String::new(),
                base_commit: None,
                bytes: 0,
                entries: 0,
                problem: Some(e.to_string()),
            }),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// (allocated bytes, entries) below a directory, not following symlinks.
fn usage(dir: &Path) -> (u64, u64) {
    fn walk(d: &mut nix::dir::Dir, acc: &mut (u64, u64)) {
        let Ok(names) = super::fs::list(d) else {
            return;
        };
        for n in names {
            let fd = std::os::fd::AsFd::as_fd(d);
            let Ok(Some(node)) = super::fs::stat_at(fd, &n) else {
                continue;
            };
            acc.0 += node.allocated;
            acc.1 += 1;
            if node.kind == super::fs::Kind::Dir {
                if let Ok(mut sub) = super::fs::open_dir_at(fd, &n) {
                    walk(&mut sub, acc);
                }
            }
        }
    }
    let mut acc = (0, 0);
    if let Ok(mut d) = super::fs::open_dir(dir) {
        walk(&mut d, &mut acc);
    }
    acc
}

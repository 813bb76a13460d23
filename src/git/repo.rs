//! Which directories git on the host would take as a repository, by git's
//! own rules (setup.c: `is_git_directory`, `validate_headref`,
//! `get_common_dir_noenv`, `read_gitfile_gently`, `repo_discovery_find_dir`),
//! and an inventory of the files in them that make git run programs or read
//! other files: `config`, `config.worktree`, `commondir`, `hooks/`, and the
//! `.git` files and links that point git elsewhere.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::config::MAX_CONFIG_SIZE;

/// git cannot run in, or reach by path, a directory whose absolute path is
/// this long or longer (getcwd(2) and every path syscall fail with
/// ENAMETOOLONG), so the scan does not descend there.
pub const PATH_MAX: usize = 4096;

/// What git makes of a directory as a candidate git directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitDir {
    /// `is_git_directory` is true: git uses it.
    Yes,
    No,
    /// It has a `commondir` git cannot read: git dies on it (runs nothing).
    Broken,
}

/// setup.c `validate_headref`: HEAD is a symlink into `refs/`, a symbolic
/// ref `ref: refs/…`, or starts with a full hex object id.
pub fn head_is_valid(head: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(head) else {
        return false;
    };
    if meta.file_type().is_symlink() {
        return std::fs::read_link(head)
            .is_ok_and(|t| t.as_os_str().as_bytes().starts_with(b"refs/"));
    }
    // O_NONBLOCK: git would hang on a FIFO named HEAD; we must not.
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(head)
    else {
        return false;
    };
    let mut buf = Vec::with_capacity(255);
    if f.take(255).read_to_end(&mut buf).is_err() {
        return false;
    }
    if let Some(rest) = buf.strip_prefix(b"ref:") {
        let blanks = rest
            .iter()
            .take_while(|&&b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        if rest[blanks..].starts_with(b"refs/") {
            return true;
        }
    }
    let hex = |n: usize| buf.len() >= n && buf[..n].iter().all(u8::is_ascii_hexdigit);
    hex(64) || hex(40)
}

/// git dies on this git directory: its `commondir` exists but cannot be read,
/// is empty, or names a path that does not resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokenCommondir;

/// The common directory of `git_dir` (get_common_dir_noenv): itself, or what
/// its `commondir` file names.
pub fn common_dir(git_dir: &Path) -> Result<PathBuf, BrokenCommondir> {
    let file = git_dir.join("commondir");
    if std::fs::symlink_metadata(&file).is_err() {
        return Ok(git_dir.to_path_buf());
    }
    let data = std::fs::read(&file).map_err(|_| BrokenCommondir)?;
    if data.is_empty() {
        return Err(BrokenCommondir);
    }
    let mut end = data.len();
    while end > 0 && matches!(data[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    let target = Path::new(std::ffi::OsStr::from_bytes(&data[..end]));
    let joined = if target.is_absolute() {
        target.to_path_buf()
    } else {
        let mut p = git_dir.as_os_str().to_owned();
        p.push("/");
        p.push(target);
        PathBuf::from(p)
    };
    // strbuf_realpath with die_on_error: the last component may be missing.
    match std::fs::canonicalize(&joined) {
        Ok(p) => Ok(p),
        Err(_) => {
            let (Some(parent), Some(name)) = (joined.parent(), joined.file_name()) else {
                return Err(BrokenCommondir);
            };
            std::fs::canonicalize(parent)
                .map(|p| p.join(name))
                .map_err(|_| BrokenCommondir)
        }
    }
}

fn executable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// setup.c `is_git_directory`: a valid HEAD, and `objects` and `refs` in the
/// common directory that the caller may search (access X_OK, as git checks).
pub fn is_git_dir(dir: &Path) -> GitDir {
    if !head_is_valid(&dir.join("HEAD")) {
        return GitDir::No;
    }
    let Ok(common) = common_dir(dir) else {
        return GitDir::Broken;
    };
    if executable(&common.join("objects")) && executable(&common.join("refs")) {
        GitDir::Yes
    } else {
        GitDir::No
    }
}

/// Why `read_gitfile` found no git directory (setup.c READ_GITFILE_ERR_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitfileError {
    Missing,
    IsDir,
    /// git dies on these during discovery (stat failed, not a regular file,
    /// too large, unreadable, not `gitdir: `, no path, not a repository).
    Fatal,
}

/// setup.c `read_gitfile_gently`: the git directory a `.git` file names.
pub fn read_gitfile(path: &Path) -> Result<PathBuf, GitfileError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            return Err(GitfileError::Missing);
        }
        Err(_) => return Err(GitfileError::Fatal),
    };
    if meta.is_dir() {
        return Err(GitfileError::IsDir);
    }
    if !meta.is_file() || meta.len() > 1 << 20 {
        return Err(GitfileError::Fatal);
    }
    let buf = std::fs::read(path).map_err(|_| GitfileError::Fatal)?;
    let Some(rest) = buf.strip_prefix(b"gitdir: ") else {
        return Err(GitfileError::Fatal);
    };
    let mut end = rest.len();
    while end > 0 && matches!(rest[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    if end == 0 {
        return Err(GitfileError::Fatal);
    }
    let dir = Path::new(std::ffi::OsStr::from_bytes(&rest[..end]));
    let dir = match path.parent() {
        Some(parent) if !dir.is_absolute() => parent.join(dir),
        _ => dir.to_path_buf(),
    };
    if is_git_dir(&dir) != GitDir::Yes {
        return Err(GitfileError::Fatal);
    }
    std::fs::canonicalize(&dir).map_err(|_| GitfileError::Fatal)
}

/// What discovery from a directory finds (setup.c `repo_discovery_find_dir`,
/// without GIT_DIR, GIT_CEILING_DIRECTORIES or ownership checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// `dir/.git` (directory, or a file or link naming one), found in `at`.
    DotGit { at: PathBuf, git_dir: PathBuf },
    /// `at` itself is a bare repository.
    Bare { at: PathBuf },
    /// A bare repository refused by `safe.bareRepository=explicit`.
    DisallowedBare { at: PathBuf },
    /// git dies (an invalid `.git` file, a broken commondir).
    Fatal { at: PathBuf },
    /// No repository up to `/` or the filesystem boundary.
    None,
}

/// Where git run in `start` (absolute, no symlinks) would find its repository.
pub fn discover(start: &Path, bare_explicit: bool) -> Discovery {
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    let first_dev = dev(start);
    let mut dir = start.to_path_buf();
    loop {
        let dotgit = dir.join(".git");
        match read_gitfile(&dotgit) {
            Ok(git_dir) => return Discovery::DotGit { at: dir, git_dir },
            Err(GitfileError::IsDir) => match is_git_dir(&dotgit) {
                GitDir::Yes => {
                    return Discovery::DotGit {
                        at: dir,
                        git_dir: dotgit,
                    };
                }
                GitDir::Broken => return Discovery::Fatal { at: dir },
                GitDir::No => {}
            },
            Err(GitfileError::Missing) => {}
            Err(GitfileError::Fatal) => return Discovery::Fatal { at: dir },
        }
        match is_git_dir(&dir) {
            GitDir::Yes => {
                let implicit = dir.ends_with(".git")
                    || dir.to_string_lossy().contains("/.git/worktrees/")
                    || dir.to_string_lossy().contains("/.git/modules/");
                if bare_explicit && !implicit {
                    return Discovery::DisallowedBare { at: dir };
                }
                return Discovery::Bare { at: dir };
            }
            GitDir::Broken => return Discovery::Fatal { at: dir },
            GitDir::No => {}
        }
        if !dir.pop() || dev(&dir) != first_dev {
            return Discovery::None;
        }
    }
}

/// Identity and change time of a file as `lstat` reports it. The sandbox can
/// set a file's mtime but not its ctime, and a file it replaces has a new
/// inode: equal stamps mean the same, unchanged file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub ctime: (i64, i64),
    pub size: u64,
    pub mode: u32,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            size: meta.size(),
            mode: meta.mode(),
        }
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }
}

/// A file with its content when small enough to keep (config files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub stamp: Stamp,
    pub text: Option<Vec<u8>>,
}

/// The files of one git directory that can make git run something.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitDirFiles {
    pub kind: Option<GitDirKindTag>,
    pub config: Option<Snap>,
    pub config_worktree: Option<Snap>,
    pub commondir: Option<Snap>,
    /// `hooks` itself (a directory, or a link the sandbox may have made).
    pub hooks: Option<Stamp>,
    pub hook_files: BTreeMap<OsString, Stamp>,
}

/// Why a directory is in the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitDirKindTag {
    /// git uses it (`is_git_directory`).
    Repo,
    /// git dies on it (broken commondir).
    Broken,
    /// Not a repository now, but shaped like one (HEAD and config, or a
    /// `.git` directory with a config): checked too, so that a difference
    /// between this code and git cannot hide one.
    Lookalike,
}

/// A `.git` file or symlink, and whether what it points to is inside the
/// scanned root (as written and as resolved at scan time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub snap: Snap,
    pub target: Option<PathBuf>,
    pub inside: bool,
}

/// Where a `.git` file (`gitdir: X`) or symlink points, relative to its
/// directory; `None` for a file git would not read as a gitfile.
pub fn link_target(path: &Path, snap: &Snap) -> Option<PathBuf> {
    let parent = path.parent()?;
    let text = snap.text.as_ref()?;
    if snap.stamp.is_symlink() {
        return Some(parent.join(std::ffi::OsStr::from_bytes(text)));
    }
    let rest = text.strip_prefix(b"gitdir: ")?;
    let end = rest
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    Some(parent.join(std::ffi::OsStr::from_bytes(&rest[..end])))
}

/// Every git directory and `.git` link under a root, with what matters in them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub root: PathBuf,
    pub git_dirs: BTreeMap<PathBuf, GitDirFiles>,
    /// `.git` entries that are files or symlinks (gitfiles, links to a git dir).
    pub links: BTreeMap<PathBuf, Link>,
    /// Directories the scan could not read, with the error.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Every directory walked, for [`Inventory::rescan`].
    pub dirs: std::collections::HashMap<PathBuf, DirRecord>,
    /// Directories actually read (the others were known unchanged).
    pub dirs_read: usize,
    /// Stamps with a ctime from this time on are not trusted as unchanged
    /// (see [`Inventory::unchanged`]).
    pub started: (i64, i64),
}

fn snap(path: &Path, keep_text: bool) -> Option<Snap> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let text = if keep_text && meta.is_file() && meta.len() <= MAX_CONFIG_SIZE as u64 {
        super::files::read_regular(path, MAX_CONFIG_SIZE)
            .ok()
            .flatten()
    } else if meta.file_type().is_symlink() {
        std::fs::read_link(path)
            .ok()
            .map(|t| t.into_os_string().into_vec())
    } else {
        None
    };
    Some(Snap {
        stamp: Stamp::of(&meta),
        text,
    })
}

use std::os::unix::ffi::OsStringExt;

fn git_dir_files(dir: &Path, kind: GitDirKindTag) -> GitDirFiles {
    let mut files = GitDirFiles {
        kind: Some(kind),
        config: snap(&dir.join("config"), true),
        config_worktree: snap(&dir.join("config.worktree"), true),
        commondir: snap(&dir.join("commondir"), true),
        ..GitDirFiles::default()
    };
    let hooks = dir.join("hooks");
    if let Ok(meta) = std::fs::symlink_metadata(&hooks) {
        files.hooks = Some(Stamp::of(&meta));
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&hooks) {
                for e in rd.flatten() {
                    if let Ok(m) = std::fs::symlink_metadata(e.path()) {
                        files.hook_files.insert(e.file_name(), Stamp::of(&m));
                    }
                }
            }
        }
    }
    files
}

/// What a directory held when it was read: enough to skip reading it again
/// while its stamp has not moved (no entry added, removed or renamed in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirRecord {
    pub stamp: Stamp,
    pub subdirs: Vec<OsString>,
    pub has_head: bool,
    pub has_config: bool,
    /// A `.git` entry that is not a directory.
    pub dotgit_link: bool,
}

fn read_record(dir: &Path, stamp: Stamp) -> std::io::Result<DirRecord> {
    let mut rec = DirRecord {
        stamp,
        subdirs: Vec::new(),
        has_head: false,
        has_config: false,
        dotgit_link: false,
    };
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let Ok(ft) = entry.file_type() else { continue };
        let name = entry.file_name();
        match name.as_bytes() {
            b"HEAD" => rec.has_head = true,
            b"config" => rec.has_config = true,
            b".git" if !ft.is_dir() => rec.dotgit_link = true,
            _ => {}
        }
        if ft.is_dir() {
            rec.subdirs.push(name);
        }
    }
    Ok(rec)
}

/// A time no later than the start of the coarse clock tick we are in: file
/// timestamps come from the coarse realtime clock, which lags the fine one by
/// at most one tick (10 ms at HZ=100); 20 ms leaves a margin.
pub fn tick_start() -> (i64, i64) {
    let now = std::time::SystemTime::now() - std::time::Duration::from_millis(20);
    match now.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, i64::from(d.subsec_nanos())),
        Err(_) => (i64::MIN, 0),
    }
}

impl Inventory {
    /// Walk `root` (not following symlinks, every directory, however deep,
    /// down to PATH_MAX) and record every git directory and `.git` link.
    pub fn scan(root: &Path) -> std::io::Result<Inventory> {
        Self::walk(root, None)
    }

    /// The same as [`Inventory::scan`] of `prev.root`, reading again only the
    /// directories whose stamp moved since `prev` (the others are taken from
    /// `prev`'s records; files in git directories are always looked at).
    pub fn rescan(prev: &Inventory) -> std::io::Result<Inventory> {
        Self::walk(&prev.root, Some(prev))
    }

    /// Is `now` the file `then` recorded by this inventory? Equal stamps are
    /// trusted only for a ctime older than the clock tick the scan started
    /// in: a change made later in that same tick would keep the ctime.
    pub fn unchanged(&self, then: &Stamp, now: &Stamp) -> bool {
        then == now && then.ctime < self.started
    }

    fn walk(root: &Path, prev: Option<&Inventory>) -> std::io::Result<Inventory> {
        let root = std::fs::canonicalize(root)?;
        let mut inv = Inventory {
            root: root.clone(),
            started: tick_start(),
            ..Inventory::default()
        };
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let meta = match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => m,
                // Removed or replaced meanwhile (by the host: the sandbox is gone).
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    inv.unreadable.push((dir, e.to_string()));
                    continue;
                }
            };
            let stamp = Stamp::of(&meta);
            let known =
                prev.and_then(|p| p.dirs.get(&dir).filter(|r| p.unchanged(&r.stamp, &stamp)));
            let rec = match known {
                Some(r) => r.clone(),
                None => match read_record(&dir, stamp) {
                    Ok(r) => {
                        inv.dirs_read += 1;
                        r
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        inv.unreadable.push((dir, e.to_string()));
                        continue;
                    }
                },
            };
            for sub in &rec.subdirs {
                let path = dir.join(sub);
                if path.as_os_str().len() < PATH_MAX - 1 {
                    stack.push(path);
                }
            }
            if rec.dotgit_link {
                inv.add_link(dir.join(".git"));
            }
            let named_dotgit = dir.file_name().is_some_and(|n| n == ".git");
            let kind = if rec.has_head {
                match is_git_dir(&dir) {
                    GitDir::Yes => Some(GitDirKindTag::Repo),
                    GitDir::Broken => Some(GitDirKindTag::Broken),
                    GitDir::No if rec.has_config => Some(GitDirKindTag::Lookalike),
                    GitDir::No => None,
                }
            } else if named_dotgit && rec.has_config {
                Some(GitDirKindTag::Lookalike)
            } else {
                None
            };
            if let Some(kind) = kind {
                inv.git_dirs.insert(dir.clone(), git_dir_files(&dir, kind));
            }
            inv.dirs.insert(dir, rec);
        }
        Ok(inv)
    }

    /// What this inventory (a scan made after a run) says was there before
    /// the run, which began at `since` (a [`tick_start`]), as far as ctimes
    /// tell: only the files, hooks and links whose ctime is older. The
    /// sandbox cannot set a ctime, so what it made or changed is missing
    /// here, and [`super::neutralise::neutralise`] of (this, `self`) treats
    /// it as new; what is older counts as the user's. One walk at exit, none
    /// at the start; the price is that a changed file's pre-run content is
    /// unknown (a changed config keeps only its allowed keys).
    pub fn before_run(&self, since: (i64, i64)) -> Inventory {
        let old = |st: &Stamp| st.ctime < since;
        let snap = |s: &Option<Snap>| s.clone().filter(|s| old(&s.stamp));
        let git_dirs = self
            .git_dirs
            .iter()
            .map(|(dir, f)| {
                let files = GitDirFiles {
                    kind: f.kind,
                    config: snap(&f.config),
                    config_worktree: snap(&f.config_worktree),
                    commondir: snap(&f.commondir),
                    hooks: f.hooks.filter(old),
                    hook_files: f
                        .hook_files
                        .iter()
                        .filter(|(_, st)| old(st))
                        .map(|(n, st)| (n.clone(), *st))
                        .collect(),
                };
                (dir.clone(), files)
            })
            .collect();
        let links = self
            .links
            .iter()
            .filter(|(_, l)| old(&l.snap.stamp))
            .map(|(p, l)| (p.clone(), l.clone()))
            .collect();
        Inventory {
            root: self.root.clone(),
            git_dirs,
            links,
            started: since,
            ..Inventory::default()
        }
    }

    fn add_link(&mut self, path: PathBuf) {
        if let Some(snap) = snap(&path, true) {
            let target = link_target(&path, &snap);
            let inside = target
                .as_deref()
                .is_some_and(|t| super::neutralise::stays_inside(t, &self.root));
            self.links.insert(
                path,
                Link {
                    snap,
                    target,
                    inside,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn repo_shape(d: &Path) {
        fs::create_dir_all(d.join("objects")).unwrap();
        fs::create_dir_all(d.join("refs")).unwrap();
        fs::write(d.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    }

    #[test]
    fn head_rules() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path().join("HEAD");
        for (content, ok) in [
            ("ref: refs/heads/main\n", true),
            ("ref:\t refs/x", true),
            ("ref: heads/main", false),
            ("0123456789abcdef0123456789abcdef01234567\n", true),
            ("0123456789ABCDEF0123456789abcdef01234567", true),
            ("0123456789abcdef0123456789abcdef0123456", false),
            ("", false),
            ("ref:\x0crefs/x", false),
        ] {
            fs::write(&h, content).unwrap();
            assert_eq!(head_is_valid(&h), ok, "{content:?}");
        }
        fs::remove_file(&h).unwrap();
        std::os::unix::fs::symlink("refs/heads/main", &h).unwrap();
        assert!(head_is_valid(&h));
        fs::remove_file(&h).unwrap();
        std::os::unix::fs::symlink("../x", &h).unwrap();
        assert!(!head_is_valid(&h));
    }

    #[test]
    fn git_dir_rules() {
        let d = tempfile::tempdir().unwrap();
        let g = d.path().join("g");
        repo_shape(&g);
        assert_eq!(is_git_dir(&g), GitDir::Yes);
        fs::write(g.join("commondir"), "").unwrap();
        assert_eq!(is_git_dir(&g), GitDir::Broken);
        fs::write(g.join("commondir"), ".\n").unwrap();
        assert_eq!(is_git_dir(&g), GitDir::Yes);
        fs::write(g.join("commondir"), "../nowhere").unwrap();
        assert_eq!(is_git_dir(&g), GitDir::No);
        fs::remove_file(g.join("commondir")).unwrap();
        fs::remove_dir(g.join("refs")).unwrap();
        assert_eq!(is_git_dir(&g), GitDir::No);
    }

    #[test]
    fn scan_finds_repositories_links_and_lookalikes() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path();
        repo_shape(&ws.join(".git"));
        repo_shape(&ws.join("a/b/.git"));
        fs::write(ws.join("a/b/.git/config"), "").unwrap();
        fs::create_dir_all(ws.join("a/b/.git/hooks")).unwrap();
        fs::write(ws.join("a/b/.git/hooks/pre-commit"), "#!/bin/sh\n").unwrap();
        fs::create_dir_all(ws.join("c")).unwrap();
        fs::write(ws.join("c/.git"), "gitdir: ../a/b/.git\n").unwrap();
        fs::create_dir_all(ws.join("look")).unwrap();
        fs::write(ws.join("look/HEAD"), "garbage").unwrap();
        fs::write(ws.join("look/config"), "[core]\n").unwrap();
        let inv = Inventory::scan(ws).unwrap();
        let root = fs::canonicalize(ws).unwrap();
        let kinds: Vec<_> = inv
            .git_dirs
            .iter()
            .map(|(p, f)| {
                (
                    p.strip_prefix(&root).unwrap().to_path_buf(),
                    f.kind.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (PathBuf::from(".git"), GitDirKindTag::Repo),
                (PathBuf::from("a/b/.git"), GitDirKindTag::Repo),
                (PathBuf::from("look"), GitDirKindTag::Lookalike),
            ]
        );
        let nested = &inv.git_dirs[&root.join("a/b/.git")];
        assert!(
            nested
                .hook_files
                .contains_key(std::ffi::OsStr::new("pre-commit"))
        );
        assert_eq!(
            nested.config.as_ref().unwrap().text.as_deref(),
            Some(&b""[..])
        );
        assert!(inv.links.contains_key(&root.join("c/.git")));
        assert_eq!(
            discover(&root.join("c"), true),
            Discovery::DotGit {
                at: root.join("c"),
                git_dir: root.join("a/b/.git")
            }
        );
    }
}

//! Reading and replacing git's files on the host without following links
//! the sandbox may have planted, with git's own lock protocol.

use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{path} is not a regular file")]
    NotRegular { path: PathBuf },
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: usize },
    #[error("cannot write {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
    #[error(
        "{path}.lock exists (hint: another git process is writing it; retry, or remove the lock if none is)"
    )]
    Locked { path: PathBuf },
}

/// The content of a regular file, `None` if it does not exist. A symlink, a
/// FIFO, a device or a directory is an error (opened with O_NOFOLLOW and
/// O_NONBLOCK, so nothing blocks and no link is followed).
pub fn read_regular(path: &Path, max: usize) -> Result<Option<Vec<u8>>, FileError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let f = match f {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(FileError::NotRegular { path: path.into() });
        }
        Err(err) => {
            return Err(FileError::Read {
                path: path.into(),
                err,
            });
        }
    };
    let read_err = |err| FileError::Read {
        path: path.into(),
        err,
    };
    let meta = f.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular { path: path.into() });
    }
    if meta.len() > max as u64 {
        return Err(FileError::TooLarge {
            path: path.into(),
            max,
        });
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.take(max as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() > max {
        return Err(FileError::TooLarge {
            path: path.into(),
            max,
        });
    }
    Ok(Some(buf))
}

fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Replace `path` with `text` the way git does: write `path.lock` (created
/// exclusively, so a concurrent git waits or fails instead of racing), then
/// rename it over `path`. Mode and owner of the old file are kept; a new file
/// gets 0644.
pub fn replace_locked(path: &Path, text: &[u8]) -> Result<(), FileError> {
    update_locked(path, |_| Ok(Some(text.to_vec()))).map(drop)
}

/// Take git's lock on `path`, read it (`None` if absent), and let `f` decide
/// the new content: `Some` is written and renamed over `path`, `None` leaves
/// it alone. Returns whether it was written.
pub fn update_locked<E: From<FileError>>(
    path: &Path,
    f: impl FnOnce(Option<Vec<u8>>) -> Result<Option<Vec<u8>>, E>,
) -> Result<bool, E> {
    let lock = lock_path(path);
    let write_err = |err| FileError::Write {
        path: path.into(),
        err,
    };
    let mut attempts = 0;
    let mut file = loop {
        let r = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock);
        match r {
            Ok(f) => break f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(FileError::Locked { path: path.into() }.into());
            }
            Err(err) => return Err(write_err(err).into()),
        }
    };
    let drop_lock = |e: E| {
        let _ = std::fs::remove_file(&lock);
        e
    };
    let current = read_regular(path, MAX_FILE).map_err(|e| drop_lock(e.into()))?;
    let Some(text) = f(current).map_err(drop_lock)? else {
        let _ = std::fs::remove_file(&lock);
        return Ok(false);
    };
    let result = (|| {
        if let Ok(m) = std::fs::symlink_metadata(path) {
            file.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
            if nix::unistd::geteuid().is_root() {
                std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()))?;
            }
        }
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&lock, path)
    })();
    result.map_err(|err| drop_lock(write_err(err).into()))?;
    Ok(true)
}

/// The largest file [`update_locked`] reads (git's config limit here).
const MAX_FILE: usize = super::config::MAX_CONFIG_SIZE;

/// Rename `path` to `path<suffix>` (or `path<suffix>.N`), never replacing
/// anything. Returns the new name.
pub fn move_aside(path: &Path, suffix: &str) -> std::io::Result<PathBuf> {
    for n in 0..100 {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        if n > 0 {
            s.push(format!(".{n}"));
        }
        let to = PathBuf::from(s);
        match renameat2(AT_FDCWD, path, AT_FDCWD, &to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(to),
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{}{suffix}.* all taken", path.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_refuses_links_fifos_and_big_files() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("config");
        assert!(read_regular(&f, 10).unwrap().is_none());
        std::fs::write(&f, b"[a]b=1\n").unwrap();
        assert_eq!(read_regular(&f, 10).unwrap().unwrap(), b"[a]b=1\n");
        assert!(matches!(
            read_regular(&f, 3),
            Err(FileError::TooLarge { .. })
        ));
        let l = d.path().join("link");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        assert!(matches!(
            read_regular(&l, 10),
            Err(FileError::NotRegular { .. })
        ));
        let p = d.path().join("fifo");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(
            read_regular(&p, 10),
            Err(FileError::NotRegular { .. })
        ));
    }

    #[test]
    fn replace_keeps_mode_and_honours_git_locks() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("config");
        std::fs::write(&f, b"old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        replace_locked(&f, b"new").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        std::fs::write(d.path().join("config.lock"), b"").unwrap();
        assert!(matches!(
            replace_locked(&f, b"x"),
            Err(FileError::Locked { .. })
        ));
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
    }

    #[test]
    fn move_aside_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pre-commit");
        std::fs::write(&f, b"1").unwrap();
        std::fs::write(d.path().join("pre-commit.off"), b"0").unwrap();
        let to = move_aside(&f, ".off").unwrap();
        assert_eq!(to, d.path().join("pre-commit.off.1"));
        assert_eq!(
            std::fs::read(d.path().join("pre-commit.off")).unwrap(),
            b"0"
        );
    }
}

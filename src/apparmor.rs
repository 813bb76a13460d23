//! Ubuntu's AppArmor restriction of unprivileged user namespaces (23.10 and
//! later, on by default since 24.04), the other reasons user namespaces fail,
//! and `shellcage setup apparmor`.
//!
//! With `kernel.apparmor_restrict_unprivileged_userns = 1` an unprivileged
//! process may create a user namespace only when its AppArmor profile grants
//! `userns`. Unconfined programs get a namespace without capabilities (or none
//! at all), so the namespaces tier cannot build its sandbox. The fix Ubuntu
//! documents is a profile for the program's path that confines nothing
//! (`flags=(unconfined)`) and grants `userns,`, in the form of the profiles
//! AppArmor 4.0 ships for such programs (`/etc/apparmor.d/chrome` and others).
//!
//! [`diagnose`] (pure over a root directory, for `doctor`) names what blocks
//! user namespaces here, each with the exact fix; [`render_profile`] writes the
//! profile for a binary's real path; [`install`] writes it atomically into
//! `/etc/apparmor.d` and loads it with `apparmor_parser -r`, restoring what was
//! there if loading fails.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where AppArmor profiles live.
pub const PROFILE_DIR: &str = "/etc/apparmor.d";

#[derive(Debug, thiserror::Error)]
pub enum AppArmorError {
    #[error("setup apparmor: cannot find the shellcage binary's real path: {0}")]
    Exe(std::io::Error),
    #[error(
        "setup apparmor: the path {path} contains {ch:?}, which AppArmor reads as part of a pattern (hint: install shellcage under a plain path such as /usr/local/bin/shellcage)"
    )]
    BadPath { path: String, ch: char },
    #[error(
        "setup apparmor: writing {} needs root (hint: {}; or --print to see the profile)",
        target.display(),
        command
    )]
    NotRoot { target: PathBuf, command: String },
    #[error(
        "setup apparmor: apparmor_parser not found in PATH, /usr/sbin or /sbin; nothing was written (hint: install the apparmor package)"
    )]
    NoParser,
    #[error(
        "setup apparmor: {} does not exist: AppArmor's userspace is not installed; nothing was written (hint: install the apparmor package)",
        .0.display()
    )]
    NoProfileDir(PathBuf),
    #[error("setup apparmor: cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "setup apparmor: {parser} -r {} failed: {output}; {restored}",
        path.display()
    )]
    Load {
        parser: String,
        path: PathBuf,
        output: String,
        restored: String,
    },
}

/// Characters allowed in the binary's path: AppArmor treats `* ? [ ] { } ^ @`,
/// quotes, backslashes and `#` specially, and control characters are never a
/// good idea. A space is allowed (the path is quoted then).
fn check_path(path: &str) -> Result<(), AppArmorError> {
    if let Some(ch) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/._-+~ ".contains(*c)))
    {
        return Err(AppArmorError::BadPath {
            path: path.to_string(),
            ch,
        });
    }
    if !path.starts_with('/') {
        return Err(AppArmorError::BadPath {
            path: path.to_string(),
            ch: path.chars().next().unwrap_or(' '),
        });
    }
    Ok(())
}

/// The profile's name, which is also its file name in `/etc/apparmor.d` and
/// in `local/`: the path with `/` turned into `.` (AppArmor's own convention,
/// `usr.sbin.cupsd`), so that two installed copies get two profiles.
pub fn profile_name(exe: &Path) -> String {
    exe.to_string_lossy()
        .trim_start_matches('/')
        .replace('/', ".")
        .replace(' ', "_")
}

/// The profile text for the binary at `exe` (an absolute, canonical path).
pub fn render_profile(exe: &Path) -> Result<String, AppArmorError> {
    let path = exe.to_string_lossy();
    check_path(&path)?;
    let name = profile_name(exe);
    let attach = if path.contains(' ') {
        format!("\"{path}\"")
    } else {
        path.to_string()
    };
    Ok(format!(
        "# AppArmor profile for shellcage at {path}, written by 'shellcage setup apparmor'.
#
# It confines nothing (flags=(unconfined)): it exists only to grant the
# creation of user namespaces (userns), which Ubuntu 23.10 and later deny to
# programs without such a profile (kernel.apparmor_restrict_unprivileged_userns=1).
# shellcage builds its sandbox in user namespaces; every command it runs is
# then confined by shellcage's own layers (seccomp forbids new namespaces).
# Remove this file and run 'apparmor_parser -R' on it to undo.

abi <abi/4.0>,
include <tunables/global>

profile {name} {attach} flags=(unconfined) {{
  userns,

  # Site-specific additions and overrides. See local/README for details.
  include if exists <local/{name}>
}}
"
    ))
}

/// The command that installs the profile, as `doctor` prints it.
pub fn setup_command(exe: &Path) -> String {
    let path = exe.to_string_lossy();
    let path = if path.contains(' ') {
        format!("'{path}'")
    } else {
        path.into_owned()
    };
    format!("sudo {path} setup apparmor")
}

/// One reason user namespaces fail here, with the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    /// The setting, as `sysctl` names it with its value.
    pub setting: String,
    pub why: String,
    /// The exact command (or edit) that lifts it.
    pub fix: String,
}

/// What the kernel's settings say about user namespaces for this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsernsDiagnosis {
    /// AppArmor is the active LSM (`/sys/kernel/security/apparmor` or
    /// `/sys/module/apparmor/parameters/enabled` = Y).
    pub apparmor_enabled: bool,
    /// `kernel.apparmor_restrict_unprivileged_userns`, when present (Ubuntu).
    pub apparmor_restrict: Option<bool>,
    /// Our AppArmor label (`/proc/self/attr/apparmor/current`).
    pub apparmor_label: Option<String>,
    /// This process runs under the profile [`render_profile`] writes.
    pub confined_by_our_profile: bool,
    /// `kernel.unprivileged_userns_clone`, when present (Debian's patch).
    pub unprivileged_userns_clone: Option<bool>,
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// In the order to fix them.
    pub blockers: Vec<Blocker>,
}

fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end_matches(['\n', '\0']).trim().to_string())
}

fn read_num(path: &Path) -> Option<u64> {
    read_trim(path)?.parse().ok()
}

/// What blocks user namespaces for a process with effective uid `euid`
/// running the binary `exe`, read below `root` (`/` on a host): the sysctls
/// under `proc/sys`, AppArmor's state under `sys/`, and our label under
/// `proc/self/attr`. Root is not subject to the AppArmor restriction nor to
/// `unprivileged_userns_clone`; `max_user_namespaces = 0` stops everyone.
pub fn diagnose(root: &Path, euid: u32, exe: &Path) -> UsernsDiagnosis {
    let at = |p: &str| root.join(p);
    let apparmor_enabled = at("sys/kernel/security/apparmor").is_dir()
        || read_trim(&at("sys/module/apparmor/parameters/enabled")).as_deref() == Some("Y");
    let apparmor_restrict =
        read_num(&at("proc/sys/kernel/apparmor_restrict_unprivileged_userns")).map(|v| v != 0);
    let apparmor_label = read_trim(&at("proc/self/attr/apparmor/current"))
        .or_else(|| read_trim(&at("proc/self/attr/current")))
        .filter(|l| !l.is_empty());
    let name = profile_name(exe);
    // "NAME (unconfined)": the mode follows the name after a space.
    let confined_by_our_profile = apparmor_label
        .as_deref()
        .is_some_and(|l| l.split(" (").next() == Some(name.as_str()));
    let unprivileged_userns_clone =
        read_num(&at("proc/sys/kernel/unprivileged_userns_clone")).map(|v| v != 0);
    let max_user_namespaces = read_num(&at("proc/sys/user/max_user_namespaces"));
    let mut blockers = Vec::new();
    if max_user_namespaces == Some(0) {
        blockers.push(Blocker {
            setting: "user.max_user_namespaces=0".into(),
            why: "no process may create a user namespace".into(),
            fix: "sudo sysctl -w user.max_user_namespaces=16384 (and the same line without 'sysctl -w' in /etc/sysctl.d/90-shellcage.conf to keep it)".into(),
        });
    }
    if euid != 0 && unprivileged_userns_clone == Some(false) {
        blockers.push(Blocker {
            setting: "kernel.unprivileged_userns_clone=0".into(),
            why: "unprivileged users may not create user namespaces".into(),
            fix: "sudo sysctl -w kernel.unprivileged_userns_clone=1 (and kernel.unprivileged_userns_clone=1 in /etc/sysctl.d/90-shellcage.conf to keep it)".into(),
        });
    }
    if euid != 0 && apparmor_enabled && apparmor_restrict == Some(true) && !confined_by_our_profile
    {
        blockers.push(Blocker {
            setting: "kernel.apparmor_restrict_unprivileged_userns=1".into(),
            why: format!(
                "AppArmor lets only programs whose profile grants userns create user namespaces, and {} has none loaded",
                exe.display()
            ),
            fix: setup_command(exe),
        });
    }
    UsernsDiagnosis {
        apparmor_enabled,
        apparmor_restrict,
        apparmor_label,
        confined_by_our_profile,
        unprivileged_userns_clone,
        max_user_namespaces,
        blockers,
    }
}

/// The AppArmor restriction on user namespaces, when it stops this process
/// (Ubuntu ≥ 23.10): checked before any clone, because where Ubuntu ships
/// its `unprivileged_userns` profile (24.04) the clone succeeds and only the
/// first mount in the new namespace fails, with no capability left to use.
/// One sysctl read when the restriction is off or absent (every other
/// host), nothing for root. `None` also when AppArmor is not enabled or this
/// process runs under any profile (ours grants userns; another may: its
/// clone tells). `exe` is asked only when the restriction applies.
pub fn restriction(
    root: &Path,
    euid: u32,
    exe: impl FnOnce() -> Option<PathBuf>,
) -> Option<Blocker> {
    if euid == 0 {
        return None;
    }
    let at = |p: &str| root.join(p);
    if read_num(&at("proc/sys/kernel/apparmor_restrict_unprivileged_userns")).unwrap_or(0) == 0 {
        return None;
    }
    let label = read_trim(&at("proc/self/attr/apparmor/current"))
        .or_else(|| read_trim(&at("proc/self/attr/current")))
        .filter(|l| !l.is_empty());
    if label.is_some_and(|l| l != "unconfined") {
        return None;
    }
    let exe = exe()?;
    diagnose(root, euid, &exe)
        .blockers
        .into_iter()
        .find(|b| b.setting.starts_with("kernel.apparmor_restrict"))
}

/// [`diagnose`] for this host, this process and its binary.
pub fn diagnose_host() -> Result<UsernsDiagnosis, AppArmorError> {
    Ok(diagnose(
        Path::new("/"),
        nix::unistd::geteuid().as_raw(),
        &current_exe()?,
    ))
}

/// The running binary's real path (symlinks such as `shellcage-sh` resolved:
/// AppArmor attaches profiles by the path the kernel executed).
pub fn current_exe() -> Result<PathBuf, AppArmorError> {
    std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(AppArmorError::Exe)
}

/// `apparmor_parser` on PATH, else in /usr/sbin or /sbin (not on a user's
/// PATH on Debian and Ubuntu).
pub fn find_parser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join("apparmor_parser"))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Where and how to install: the system's by default, a temporary directory
/// and a fake parser in the tests.
pub struct Installer {
    pub dir: PathBuf,
    pub parser: Option<PathBuf>,
    pub euid: u32,
}

impl Installer {
    pub fn system() -> Installer {
        Installer {
            dir: PathBuf::from(PROFILE_DIR),
            parser: find_parser(),
            euid: nix::unistd::geteuid().as_raw(),
        }
    }
}

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub path: PathBuf,
    pub parser: PathBuf,
    /// A profile file was there before (now replaced).
    pub replaced: bool,
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> AppArmorError + 'a {
    move |source| AppArmorError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Write `text` to `path` atomically: a temporary file in the same directory,
/// fsync, rename over, fsync the directory. Mode 0644, like the profiles the
/// package ships.
fn write_atomic(path: &Path, text: &str) -> Result<(), AppArmorError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.shellcage-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        // The umask must not narrow what every reader of the policy needs.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_err("chmod", &tmp))?;
        f.write_all(text.as_bytes())
            .map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err("rename into", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

/// Write the profile for `exe` into `inst.dir` and load it. Nothing is
/// written unless we are root and the parser exists; when loading fails the
/// previous file is put back (or the new one removed), so the host is as it was.
pub fn install(exe: &Path, inst: &Installer) -> Result<Installed, AppArmorError> {
    let text = render_profile(exe)?;
    let path = inst.dir.join(profile_name(exe));
    if inst.euid != 0 {
        return Err(AppArmorError::NotRoot {
            target: path,
            command: setup_command(exe),
        });
    }
    let parser = inst.parser.clone().ok_or(AppArmorError::NoParser)?;
    if !inst.dir.is_dir() {
        return Err(AppArmorError::NoProfileDir(inst.dir.clone()));
    }
    let previous = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    write_atomic(&path, &text)?;
    let out = std::process::Command::new(&parser)
        .arg("-r")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .output();
    let failure = match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "{} ({})",
            String::from_utf8_lossy(&o.stderr).trim(),
            o.status
        )),
        Err(e) => Some(e.to_string()),
    };
    let Some(output) = failure else {
        return Ok(Installed {
            path,
            parser,
            replaced: previous.is_some(),
        });
    };
    let restored = match &previous {
        Some(old) => match write_atomic(&path, old) {
            Ok(()) => format!("the previous {} was put back", path.display()),
            Err(e) => format!("and putting the previous file back failed too: {e}"),
        },
        None => match std::fs::remove_file(&path) {
            Ok(()) => format!("{} was removed again", path.display()),
            Err(e) => format!("and removing {} failed too: {e}", path.display()),
        },
    };
    Err(AppArmorError::Load {
        parser: parser.display().to_string(),
        path,
        output,
        restored,
    })
}

#[cfg(test)]
mod tests;

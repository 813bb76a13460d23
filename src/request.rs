//! Command line + environment + profile → one validated [`Request`], before
//! anything touches the kernel or the host.
//!
//! What is decided here, once: the home directory, the workspace (`--workspace`,
//! else `SHELLCAGE_WORKSPACE`, else the git work tree holding the current
//! directory, else the current directory), the profile asked for (`--profile`,
//! else `SHELLCAGE_PROFILE`, else `dev`), the tier (`--tier`, else
//! `SHELLCAGE_TIER`, else the profile's), and the command line's additions
//! (`--read`, `--write`, `--net`, `--allow-host`, `--publish`, `--env`, `--timeout`,
//! `--memory`, `--cpu`, `--processes`, `--report`, `--audit`, `--overlay`, `--layer`),
//! which become the last layer of the profile ([`profile::CommandLine`]) and
//! are checked by the same code as the profile's own values.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cli::RunOpts;
use crate::policy::{Policy, TierChoice, pattern_covers};
use crate::profile::{self, CommandLine, LoadContext, ProfileError};

/// The default profile.
pub const DEFAULT_PROFILE: &str = "dev";

/// Bad input: nothing ran (exit 125).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Floor(#[from] crate::profile::managed::FloorError),
    #[error("{0}")]
    Invalid(String),
}

/// One validated request.
#[derive(Debug, Clone)]
pub struct Request {
    /// When shellcage started working on it (the run's duration and timeout
    /// count from here).
    pub started: Instant,
    /// The profile with the command line merged in.
    pub policy: Policy,
    /// The profile as asked for (`--profile`, `SHELLCAGE_PROFILE`, `dev`): what
    /// the entrypoint passes on to the agent's commands.
    pub profile_arg: String,
    /// The caller's working directory.
    pub cwd: PathBuf,
    /// The command (empty until [`Request::command`]).
    pub argv: Vec<String>,
    /// `argv` for `execve`.
    pub argv_c: Vec<CString>,
    /// An interactive shell on a terminal (`shellcage sh` without `-c`).
    pub interactive: bool,
    /// `--report-file`.
    pub report_file: Option<PathBuf>,
    /// The managed floor in force (already applied to `policy`), and what it changed.
    pub floor: Option<(
        crate::profile::managed::Floor,
        crate::profile::managed::Applied,
    )>,
    /// The options it was built from (which rules came from flags).
    pub opts: RunOpts,
}

impl Request {
    /// Everything but the command: enough for `doctor`, `profile show`, the
    /// entrypoint, and for `sh` to find the profile's shell.
    pub fn new(opts: &RunOpts, cwd: &Path) -> Result<Request, RequestError> {
        let started = Instant::now();
        let workspace = resolve_workspace(opts.workspace.as_deref(), cwd)?;
        let home = home_dir()?;
        let profile_arg = opts
            .profile
            .clone()
            .or_else(|| env_var("SHELLCAGE_PROFILE"))
            .unwrap_or_else(|| DEFAULT_PROFILE.into());
        let command_line = command_line(opts, cwd)?;
        let ctx = LoadContext {
            user_dir: Some(home.join(".config/shellcage/profiles")),
            home,
            workspace,
        };
        let floor = crate::profile::managed::load()?;
        let mut policy = profile::load_with(&profile_arg, &ctx, Some(&command_line))?;
        // The floor last, over every layer (built-ins, user profiles, flags,
        // SHELLCAGE_*): the one place a run is checked against it.
        let floor = match floor {
            Some(f) => {
                let asked = asked(opts, &command_line, &policy.workspace);
                let applied = f.apply(&mut policy, &asked)?;
                Some((f, applied))
            }
            None => None,
        };
        // A workspace inside a hidden path (an agent that `cd`s into ~/.ssh and
        // gets its workspace from the directory) would make the secret writable.
        if let Some(h) = policy
            .hide
            .iter()
            .find(|h| pattern_covers(&h.pattern, &policy.workspace))
        {
            return Err(RequestError::Invalid(format!(
                "workspace {} is hidden by the profile ({}) (hint: run from the project directory or pass --workspace)",
                policy.workspace.display(),
                h.pattern.display()
            )));
        }
        Ok(Request {
            started,
            policy,
            profile_arg,
            cwd: cwd.to_path_buf(),
            argv: Vec::new(),
            argv_c: Vec::new(),
            interactive: false,
            report_file: opts.report_file.clone(),
            floor,
            opts: opts.clone(),
        })
    }

    /// The command to run.
    pub fn command(
        mut self,
        argv: Vec<String>,
        interactive: bool,
    ) -> Result<Request, RequestError> {
        if argv.is_empty() {
            return Err(RequestError::Invalid("no command given".into()));
        }
        self.argv_c = argv
            .iter()
            .map(|a| {
                CString::new(a.as_bytes()).map_err(|_| {
                    RequestError::Invalid(format!("argument contains a NUL byte: {a:?}"))
                })
            })
            .collect::<Result<_, _>>()?;
        self.argv = argv;
        self.interactive = interactive;
        Ok(self)
    }
}

/// Where the run's values came from, for the floor's messages.
fn asked(opts: &RunOpts, cli: &CommandLine, workspace: &Path) -> crate::profile::managed::Asked {
    let from = |flag: Option<String>, flag_name: &str, env: &str| match flag {
        Some(v) => Some(format!("{flag_name} {v}")),
        None => env_var(env).map(|v| format!("{env}={v}")),
    };
    crate::profile::managed::Asked {
        profile: from(opts.profile.clone(), "--profile", "SHELLCAGE_PROFILE")
            .unwrap_or_else(|| format!("the default profile {DEFAULT_PROFILE}")),
        tier: from(
            opts.tier.map(|t| t.name().to_owned()),
            "--tier",
            "SHELLCAGE_TIER",
        ),
        net: opts
            .net
            .map(|m| format!("--net {}", crate::profile::managed::net_name(m))),
        timeout: opts.timeout.as_ref().map(|t| format!("--timeout {t}")),
        audit: opts
            .audit
            .as_ref()
            .map(|a| format!("--audit {}", a.display())),
        workspace: from(
            opts.workspace.as_ref().map(|w| w.display().to_string()),
            "--workspace",
            "SHELLCAGE_WORKSPACE",
        )
        .unwrap_or_else(|| format!("{}, found from the current directory", workspace.display())),
        flags: cli
            .read
            .iter()
            .map(|(shown, canon)| (canon.clone(), format!("--read {shown}")))
            .chain(
                cli.write
                    .iter()
                    .map(|(shown, canon)| (canon.clone(), format!("--write {shown}"))),
            )
            .collect(),
        allow_host: opts.allow_host.clone(),
        gpu: opts.gpu,
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The current directory, or an error saying it cannot be read.
pub fn current_dir() -> Result<PathBuf, RequestError> {
    std::env::current_dir()
        .map_err(|e| RequestError::Invalid(format!("cannot read the current directory: {e}")))
}

/// The caller's home directory ($HOME, else the password database).
pub fn home_dir() -> Result<PathBuf, RequestError> {
    if let Some(h) = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute())
    {
        return Ok(h);
    }
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
        .ok_or_else(|| {
            RequestError::Invalid("cannot find the home directory (hint: set HOME)".into())
        })
}

/// The caller's user name ($USER, else the password database, else the uid).
pub fn user_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| nix::unistd::getuid().to_string())
}

/// The workspace: the flag, else $SHELLCAGE_WORKSPACE, else the top of the git
/// work tree holding `cwd` (searched below the home directory only), else
/// `cwd`. Refused ([`check_workspace`]): the home directory or a directory
/// containing it, always; a directory inside a dot-directory of the home
/// (`~/.config`, `~/.local/share/...`) unless `--workspace` names it.
pub fn resolve_workspace(flag: Option<&Path>, cwd: &Path) -> Result<PathBuf, RequestError> {
    let home = Home::of(home_dir()?);
    let (given, what) = match flag {
        Some(p) => (Some(p.to_path_buf()), "--workspace"),
        None => (
            std::env::var_os("SHELLCAGE_WORKSPACE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            "SHELLCAGE_WORKSPACE",
        ),
    };
    let Some(p) = given else {
        // A repository at the home itself (dotfiles) does not make the home the
        // workspace of every project below it.
        let ws = cwd
            .ancestors()
            .take_while(|d| !home.is_within(d))
            .find(|d| d.join(".git").exists())
            .unwrap_or(cwd)
            .to_path_buf();
        check_workspace(&ws, &home, false)?;
        return Ok(ws);
    };
    let canon = std::fs::canonicalize(&p).map_err(|e| {
        RequestError::Invalid(format!(
            "{what} {}: {}",
            p.display(),
            e.to_string().to_lowercase()
        ))
    })?;
    if !canon.is_dir() {
        return Err(RequestError::Invalid(format!(
            "{what} {}: not a directory",
            p.display()
        )));
    }
    check_workspace(&canon, &home, what == "--workspace")?;
    Ok(canon)
}

/// The home directory as given ($HOME) and resolved (symlinks followed), for
/// comparing with workspaces, which are resolved.
#[derive(Debug, Clone)]
pub struct Home {
    given: PathBuf,
    canon: PathBuf,
}

impl Home {
    pub fn of(given: PathBuf) -> Home {
        let canon = std::fs::canonicalize(&given).unwrap_or_else(|_| given.clone());
        Home { given, canon }
    }

    /// Is the home `dir` or below it?
    fn is_within(&self, dir: &Path) -> bool {
        self.given.starts_with(dir) || self.canon.starts_with(dir)
    }

    /// The dot-directory of the home that holds `ws` (`~/.config`), if any.
    fn dot_dir_holding(&self, ws: &Path) -> Option<PathBuf> {
        [&self.given, &self.canon].into_iter().find_map(|h| {
            let first = ws.strip_prefix(h).ok()?.components().next()?;
            first
                .as_os_str()
                .as_encoded_bytes()
                .starts_with(b".")
                .then(|| h.join(first))
        })
    }
}

/// A workspace the command may write must not be the user's home or hold it
/// (shell rc files, `~/.ssh`, every configuration), nor, unless the user named
/// it with `--workspace` (`named`), lie in a dot-directory of the home: with
/// the current directory `~/.config` the command could otherwise create
/// `~/.config/systemd/user/x.service` or `~/.config/autostart/x.desktop`.
pub fn check_workspace(ws: &Path, home: &Home, named: bool) -> Result<(), RequestError> {
    if home.is_within(ws) {
        let what = if ws == home.given || ws == home.canon {
            "is your home directory".to_string()
        } else {
            format!("contains your home directory {}", home.given.display())
        };
        return Err(RequestError::Invalid(format!(
            "workspace {} {what}: the command could change every configuration file of yours (hint: run from a project directory, or pass --workspace DIR)",
            ws.display()
        )));
    }
    if !named {
        if let Some(dot) = home.dot_dir_holding(ws) {
            return Err(RequestError::Invalid(format!(
                "workspace {} is inside {}, a configuration directory of your home: programs outside the sandbox read what the command would write there (hint: run from a project directory, or pass --workspace {} to use it anyway)",
                ws.display(),
                dot.display(),
                ws.display()
            )));
        }
    }
    Ok(())
}

/// The command line's layer. Paths must exist (they are resolved against
/// `cwd`); the other values are checked when the layer is merged.
fn command_line(opts: &RunOpts, cwd: &Path) -> Result<CommandLine, RequestError> {
    let mut cli = CommandLine {
        network: opts.net,
        home: opts.home,
        allow_host: opts.allow_host.clone(),
        publish: opts.publish.clone(),
        env: opts.env.clone(),
        timeout: opts.timeout.clone(),
        memory: opts.memory.clone(),
        cpu: opts.cpu.clone(),
        processes: opts.processes.clone(),
        report: opts.report.is_some() || opts.report_file.is_some(),
        audit: opts.audit.as_ref().map(|f| cwd.join(f)),
        overlay: opts.overlay,
        layer: opts.layer.clone(),
        gpu: opts.gpu,
        ..CommandLine::default()
    };
    for (list, flag, out) in [
        (&opts.read, "--read", &mut cli.read),
        (&opts.write, "--write", &mut cli.write),
    ] {
        for p in list {
            let joined = if p.is_absolute() {
                p.to_path_buf()
            } else {
                cwd.join(p)
            };
            let canon = std::fs::canonicalize(&joined).map_err(|e| {
                RequestError::Invalid(format!(
                    "{flag} {}: {}",
                    p.display(),
                    e.to_string().to_lowercase()
                ))
            })?;
            out.push((p.display().to_string(), canon));
        }
    }
    cli.tier = match opts.tier {
        Some(tier) => Some(tier),
        None => match env_var("SHELLCAGE_TIER") {
            None => None,
            Some(v) => Some(TierChoice::from_name(&v).ok_or_else(|| {
                RequestError::Invalid(format!(
                    "SHELLCAGE_TIER={v}: unknown tier (expected full, auto or container)"
                ))
            })?),
        },
    };
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(ws: &Path, home: &Home, named: bool) -> String {
        check_workspace(ws, home, named).unwrap_err().to_string()
    }

    #[test]
    fn workspace_is_not_the_home_or_above_it() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let home = Home::of(root.join("u"));
        for named in [false, true] {
            assert!(err(&root.join("u"), &home, named).contains("is your home directory"));
            assert!(err(&root, &home, named).contains("contains your home directory"));
            assert!(err(Path::new("/"), &home, named).contains("contains your home"));
        }
        assert!(check_workspace(&root.join("u/proj"), &home, false).is_ok());
        assert!(check_workspace(&root.join("other"), &home, false).is_ok());
    }

    #[test]
    fn dot_directories_of_the_home_only_when_named() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let home = Home::of(root.join("u"));
        for rel in [".config", ".config/nvim", ".local/share/x"] {
            let ws = root.join("u").join(rel);
            let e = err(&ws, &home, false);
            assert!(e.contains("a configuration directory of your home"), "{e}");
            assert!(e.contains("pass --workspace"), "{e}");
            assert!(check_workspace(&ws, &home, true).is_ok());
        }
        // A dot-directory deeper in a project is the project's.
        assert!(check_workspace(&root.join("u/proj/.hidden"), &home, false).is_ok());
    }

    #[test]
    fn home_given_through_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        std::fs::create_dir_all(root.join("real/u/.config")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        let home = Home::of(root.join("link/u"));
        assert!(err(&root.join("real/u"), &home, true).contains("is your home directory"));
        assert!(err(&root.join("real/u/.config"), &home, false).contains("configuration"));
    }
}

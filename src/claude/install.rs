//! `shellcage install claude-code`: write the hook (and optionally the shell
//! prefix) into a Claude Code settings file, merging with what is there.
//!
//! Keys as read in `@anthropic-ai/claude-code` 2.1.332:
//! - `hooks.<Event>[] = {matcher, hooks: [{type: "command", command}]}`;
//! - `env.CLAUDE_CODE_SHELL_PREFIX`: a program path, run as `PREFIX 'LINE'`
//!   for Bash, Monitor, stdio MCP servers and hooks;
//! - managed settings: `/etc/claude-code/managed-settings.json` (plus the
//!   `managed-settings.d/` drop-ins); `allowManagedHooksOnly: true` runs only
//!   managed hooks (user, project and plugin hooks are ignored), and a user's
//!   `disableAllHooks` then keeps the managed ones; managed `env` wins over
//!   every other settings file.
//!
//! Merging: unrelated keys and other hooks are kept, in their order; our own
//! entries (any `… hook claude-code` command of a shellcage binary) are
//! replaced, so running it twice changes nothing. The file is written
//! atomically (a temporary file in the same directory, then rename); a
//! malformed file is an error naming it, and is left as it is.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::{PREFIX_LINK, sh_quote_if_needed};

/// Where settings live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    Project,
    Managed,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Project => "project",
            Scope::Managed => "managed",
        }
    }
}

/// The managed settings file on Linux.
pub const MANAGED_FILE: &str = "/etc/claude-code/managed-settings.json";

/// Hook events we answer, with their matchers.
const EVENTS: [(&str, &str); 3] = [
    ("PreToolUse", "*"),
    ("PostToolUse", "Bash|Monitor"),
    ("PostToolUseFailure", "Bash|Monitor"),
];

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot read settings file {file}: {err}")]
    Read { file: PathBuf, err: std::io::Error },
    #[error(
        "settings file {file} is not valid JSON ({err}); not touching it (hint: fix or remove it, then run again)"
    )]
    Malformed { file: PathBuf, err: String },
    #[error("settings file {file}: {what}; not touching it")]
    Shape { file: PathBuf, what: String },
    #[error("cannot write settings file {file}: {err}{hint}")]
    Write {
        file: PathBuf,
        err: std::io::Error,
        hint: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
}

/// What to install.
#[derive(Debug, Clone)]
pub struct Install {
    pub scope: Scope,
    pub file: PathBuf,
    /// The shellcage binary the settings name (absolute).
    pub exe: PathBuf,
    /// Also set CLAUDE_CODE_SHELL_PREFIX to `exe`'s `shellcage-prefix` link.
    pub prefix: bool,
    pub profile: Option<String>,
}

impl Install {
    /// `'/usr/local/bin/shellcage' hook claude-code [--profile P]`.
    pub fn hook_command(&self) -> String {
        let mut s = sh_quote_if_needed(&self.exe.to_string_lossy());
        s.push_str(" hook claude-code");
        if let Some(p) = &self.profile {
            s.push_str(" --profile ");
            s.push_str(&sh_quote_if_needed(p));
        }
        s
    }

    /// The prefix path: `shellcage-prefix` next to the binary.
    pub fn prefix_path(&self) -> PathBuf {
        self.exe.with_file_name(PREFIX_LINK)
    }
}

/// The settings file of `scope`.
pub fn settings_path(scope: Scope, home: &Path, workspace: &Path) -> PathBuf {
    match scope {
        Scope::User => std::env::var_os("CLAUDE_CONFIG_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".claude"))
            .join("settings.json"),
        Scope::Project => workspace.join(".claude/settings.json"),
        Scope::Managed => PathBuf::from(MANAGED_FILE),
    }
}

/// Is `command` a hook entry of ours (`<shellcage binary> hook claude-code …`)?
fn is_ours(command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    words.len() >= 3 && words[1] == "hook" && words[2] == "claude-code"
}

/// Read `file` as a JSON object; a missing or empty file is `{}`.
pub fn read_settings(file: &Path) -> Result<Map<String, Value>, InstallError> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(err) => {
            return Err(InstallError::Read {
                file: file.into(),
                err,
            });
        }
    };
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(InstallError::Shape {
            file: file.into(),
            what: "the top level is not a JSON object".into(),
        }),
        Err(e) => Err(InstallError::Malformed {
            file: file.into(),
            err: e.to_string(),
        }),
    }
}

/// A JSON object under `key`, created when missing; `Err` if it is something else.
fn object_at<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
    file: &Path,
) -> Result<&'a mut Map<String, Value>, InstallError> {
    let v = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    v.as_object_mut().ok_or_else(|| InstallError::Shape {
        file: file.into(),
        what: format!("\"{key}\" is not an object"),
    })
}

/// Drop our entries from every hook list, and matcher groups left empty.
fn remove_ours(hooks: &mut Map<String, Value>, file: &Path) -> Result<(), InstallError> {
    for (event, groups) in hooks.iter_mut() {
        let Some(groups) = groups.as_array_mut() else {
            return Err(InstallError::Shape {
                file: file.into(),
                what: format!("hooks.{event} is not a list"),
            });
        };
        for g in groups.iter_mut() {
            if let Some(list) = g.get_mut("hooks").and_then(Value::as_array_mut) {
                list.retain(|h| {
                    !h.get("command")
                        .and_then(Value::as_str)
                        .is_some_and(is_ours)
                });
            }
        }
        groups.retain(|g| {
            g.get("hooks")
                .and_then(Value::as_array)
                .is_none_or(|l| !l.is_empty())
        });
    }
    hooks.retain(|_, g| g.as_array().is_none_or(|a| !a.is_empty()));
    Ok(())
}

/// `settings` with our hook (and prefix) merged in.
pub fn merge(
    mut settings: Map<String, Value>,
    inst: &Install,
) -> Result<Map<String, Value>, InstallError> {
    let file = &inst.file;
    {
        let hooks = object_at(&mut settings, "hooks", file)?;
        remove_ours(hooks, file)?;
        for (event, matcher) in EVENTS {
            let groups = hooks
                .entry(event.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(a) = groups.as_array_mut() {
                a.push(json!({
                    "matcher": matcher,
                    "hooks": [{"type": "command", "command": inst.hook_command()}],
                }));
            }
        }
    }
    let env = object_at(&mut settings, "env", file)?;
    let prefix = inst.prefix_path().to_string_lossy().into_owned();
    let ours = |v: &Value| {
        v.as_str().is_some_and(|s| {
            s.contains("shellcage") && (s.ends_with(PREFIX_LINK) || s.ends_with("--prefix"))
        })
    };
    if inst.prefix {
        env.insert("CLAUDE_CODE_SHELL_PREFIX".into(), Value::String(prefix));
    } else if env.get("CLAUDE_CODE_SHELL_PREFIX").is_some_and(ours) {
        env.remove("CLAUDE_CODE_SHELL_PREFIX");
    }
    if inst.scope == Scope::Managed {
        // Pinned here, project and user settings cannot point the sandbox at
        // another profile, workspace or tier through `env`.
        let profile = inst.profile.clone().unwrap_or_else(|| "dev".into());
        env.insert("SHELLCAGE_PROFILE".into(), Value::String(profile));
        env.insert("SHELLCAGE_WORKSPACE".into(), Value::String(String::new()));
        env.insert("SHELLCAGE_TIER".into(), Value::String(String::new()));
    } else if let Some(p) = &inst.profile {
        env.insert("SHELLCAGE_PROFILE".into(), Value::String(p.clone()));
    }
    if env.is_empty() {
        settings.remove("env");
    }
    if inst.scope == Scope::Managed {
        // Only managed hooks run: a project's or user's own PreToolUse hook
        // could otherwise answer with an updatedInput of its own, outside
        // the sandbox.
        settings.insert("allowManagedHooksOnly".into(), Value::Bool(true));
    }
    Ok(settings)
}

/// Write `settings` to `file` atomically, keeping an existing file's mode.
pub fn write_settings(
    file: &Path,
    settings: &Map<String, Value>,
    scope: Scope,
) -> Result<(), InstallError> {
    let target = match std::fs::symlink_metadata(file) {
        // A settings file kept elsewhere (dotfiles): write the file it names.
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(file).map_err(|err| InstallError::Write {
                file: file.into(),
                err,
                hint: " (hint: the settings file is a dangling symlink)",
            })?
        }
        _ => file.to_path_buf(),
    };
    let werr = |err: std::io::Error| {
        let hint = if err.kind() == std::io::ErrorKind::PermissionDenied && scope == Scope::Managed
        {
            " (hint: managed settings are root's: run it with sudo)"
        } else {
            ""
        };
        InstallError::Write {
            file: target.clone(),
            err,
            hint,
        }
    };
    let dir = target.parent().unwrap_or(Path::new("/"));
    let dir_mode = if scope == Scope::Managed {
        0o755
    } else {
        0o700
    };
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), dir_mode)
        .create(dir)
        .map_err(werr)?;
    let mode = std::fs::metadata(&target)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(if scope == Scope::Managed {
            0o644
        } else {
            0o600
        });
    let mut text = serde_json::to_string_pretty(&Value::Object(settings.clone()))
        .map_err(|e| InstallError::Invalid(format!("cannot encode settings: {e}")))?;
    text.push('\n');
    let (tmp_path, mut tmp) = create_temp(dir).map_err(werr)?;
    let written = tmp
        .write_all(text.as_bytes())
        .and_then(|()| tmp.sync_all())
        .and_then(|()| std::fs::set_permissions(&tmp_path, std::fs::Permissions::from_mode(mode)))
        .and_then(|()| std::fs::rename(&tmp_path, &target));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(werr(e));
    }
    Ok(())
}

/// A new file `.settings.shellcage-<pid>-<n>` in `dir` (0600, O_EXCL, no symlink followed).
fn create_temp(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut last = None;
    for n in 0..16u32 {
        let p = dir.join(format!(
            ".settings.shellcage-{}-{:x}",
            std::process::id(),
            nanos ^ n
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)
        {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary name left")))
}

/// Install: read, merge, write. Returns the merged settings.
pub fn install(inst: &Install) -> Result<Map<String, Value>, InstallError> {
    if !inst.exe.is_absolute() {
        return Err(InstallError::Invalid(format!(
            "the shellcage binary {} is not an absolute path",
            inst.exe.display()
        )));
    }
    if let Some(p) = inst
        .profile
        .as_deref()
        .filter(|p| !super::is_profile_name(p))
    {
        return Err(InstallError::Invalid(format!(
            "--profile {p}: give a profile name, not a path (Claude Code passes it on as SHELLCAGE_PROFILE, which is taken by name only; put the file in ~/.config/shellcage/profiles/)"
        )));
    }
    if inst.prefix {
        check_prefix_link(&inst.prefix_path(), &inst.exe)?;
    }
    let before = read_settings(&inst.file)?;
    let after = merge(before.clone(), inst)?;
    if after != before || !inst.file.exists() {
        write_settings(&inst.file, &after, inst.scope)?;
    }
    Ok(after)
}

/// The prefix link must exist and lead to this binary: create it when
/// missing, refuse when something else has the name.
fn check_prefix_link(link: &Path, exe: &Path) -> Result<(), InstallError> {
    match std::fs::canonicalize(link) {
        Ok(real) if std::fs::canonicalize(exe).is_ok_and(|e| e == real) => Ok(()),
        Ok(real) => Err(InstallError::Invalid(format!(
            "{} exists and is not this shellcage (it leads to {}); not installing the prefix",
            link.display(),
            real.display()
        ))),
        Err(_) if std::fs::symlink_metadata(link).is_ok() => Err(InstallError::Invalid(format!(
            "{} is a dangling link; remove it and run again",
            link.display()
        ))),
        Err(_) => std::os::unix::fs::symlink(exe.file_name().unwrap_or_default(), link).map_err(|e| {
            InstallError::Invalid(format!(
                "cannot create the prefix link {}: {e} (hint: ln -s {} {} as a user who may write there)",
                link.display(),
                exe.display(),
                link.display()
            ))
        }),
    }
}

/// One line per scope: what is installed there.
pub fn check(files: &[(Scope, PathBuf)]) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut any = false;
    for (scope, file) in files {
        let settings = match read_settings(file) {
            Ok(s) => s,
            Err(e) => {
                lines.push(format!("{:<8} {}: {e}", scope.name(), file.display()));
                continue;
            }
        };
        let mut parts = Vec::new();
        let hooks = settings.get("hooks").and_then(Value::as_object);
        for (event, _) in EVENTS {
            let cmds: Vec<String> = hooks
                .and_then(|h| h.get(event))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|g| {
                    let m = g.get("matcher").and_then(Value::as_str).unwrap_or("");
                    let ours = g
                        .get("hooks")?
                        .as_array()?
                        .iter()
                        .filter_map(|h| h.get("command")?.as_str())
                        .find(|c| is_ours(c))?;
                    Some(format!("{event}[{m}] {ours}{}", missing_note(ours)))
                })
                .collect();
            parts.extend(cmds);
        }
        let env = settings.get("env").and_then(Value::as_object);
        if let Some(p) = env
            .and_then(|e| e.get("CLAUDE_CODE_SHELL_PREFIX"))
            .and_then(Value::as_str)
        {
            parts.push(format!("CLAUDE_CODE_SHELL_PREFIX={p}{}", missing_note(p)));
        }
        if let Some(p) = env
            .and_then(|e| e.get("SHELLCAGE_PROFILE"))
            .and_then(Value::as_str)
        {
            parts.push(format!("SHELLCAGE_PROFILE={p}"));
        }
        if settings.get("allowManagedHooksOnly") == Some(&Value::Bool(true)) {
            parts.push("allowManagedHooksOnly".into());
        }
        let ours = parts
            .iter()
            .any(|p| p.contains("claude-code") || p.starts_with("CLAUDE_CODE_SHELL_PREFIX"));
        any |= ours;
        let what = if parts.is_empty() {
            "not installed".to_string()
        } else {
            parts.join(", ")
        };
        lines.push(format!("{:<8} {}: {what}", scope.name(), file.display()));
    }
    (lines, any)
}

/// ` (MISSING: …)` when the program a setting names does not exist.
fn missing_note(command: &str) -> String {
    let program = command
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_matches('\'');
    if Path::new(program).is_absolute() && !Path::new(program).exists() {
        format!(" (MISSING: {program} does not exist)")
    } else {
        String::new()
    }
}

/// `shellcage install claude-code …`: the lines to print and the exit status
/// (for `--check`: installed in the scope asked about, or anywhere).
pub fn run(opts: &crate::cli::InstallOpts) -> Result<(Vec<String>, bool), String> {
    let home = crate::explain::home_dir()?;
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    let workspace = crate::explain::load_view(&crate::cli::RunOpts::default(), &cwd)?.workspace;
    let scope = if opts.managed {
        Scope::Managed
    } else if opts.project {
        Scope::Project
    } else {
        Scope::User
    };
    if opts.check {
        let asked = opts.user || opts.project || opts.managed || opts.settings_file.is_some();
        let files: Vec<(Scope, PathBuf)> = match &opts.settings_file {
            Some(f) => vec![(scope, f.clone())],
            None => [Scope::User, Scope::Project, Scope::Managed]
                .into_iter()
                .filter(|s| !asked || *s == scope)
                .map(|s| (s, settings_path(s, &home, &workspace)))
                .collect(),
        };
        return Ok(check(&files));
    }
    let exe = match &opts.bin {
        Some(b) => std::path::absolute(b).map_err(|e| format!("--bin {}: {e}", b.display()))?,
        None => {
            std::env::current_exe().map_err(|e| format!("cannot find the shellcage binary: {e}"))?
        }
    };
    if !exe.is_file() {
        return Err(format!(
            "the shellcage binary {} does not exist",
            exe.display()
        ));
    }
    let inst = Install {
        scope,
        file: opts
            .settings_file
            .clone()
            .unwrap_or_else(|| settings_path(scope, &home, &workspace)),
        exe,
        prefix: opts.prefix,
        profile: opts.profile.clone(),
    };
    install(&inst).map_err(|e| e.to_string())?;
    let mut lines = vec![format!(
        "{} settings {}: hook '{}' for PreToolUse (every tool), PostToolUse and PostToolUseFailure (Bash|Monitor)",
        scope.name(),
        inst.file.display(),
        inst.hook_command()
    )];
    if inst.prefix {
        lines.push(format!(
            "  CLAUDE_CODE_SHELL_PREFIX={}: Bash, Monitor, stdio MCP servers and hooks run in the sandbox; the hook judges the file tools",
            inst.prefix_path().display()
        ));
    }
    match scope {
        Scope::Managed => lines.push(
            "  allowManagedHooksOnly: only managed hooks run; SHELLCAGE_PROFILE, SHELLCAGE_WORKSPACE and SHELLCAGE_TIER are pinned".into(),
        ),
        Scope::Project => lines.push(format!(
            "  note: the file names {}; commit it only if everyone has shellcage there",
            inst.exe.display()
        )),
        Scope::User => {}
    }
    lines.push("  restart Claude Code to load it; `shellcage install claude-code --check` shows what is installed".into());
    Ok((lines, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(file: &Path, scope: Scope, prefix: bool) -> Install {
        Install {
            scope,
            file: file.to_path_buf(),
            exe: PathBuf::from("/opt/sc/shellcage"),
            prefix,
            profile: None,
        }
    }

    #[test]
    fn merges_keeps_other_keys_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("settings.json");
        std::fs::write(
            &f,
            r#"{"model": "x", "permissions": {"allow": ["Bash(npm test:*)"]},
 "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [
   {"type": "command", "command": "/usr/local/bin/shellcage hook claude-code"},
   {"type": "command", "command": "/home/u/bin/lint-hook"}]}],
   "Stop": [{"hooks": [{"type": "command", "command": "notify"}]}]},
 "env": {"FOO": "1"}}"#,
        )
        .unwrap();
        let i = inst(&f, Scope::User, false);
        let once = merge(read_settings(&f).unwrap(), &i).unwrap();
        let twice = merge(once.clone(), &i).unwrap();
        assert_eq!(once, twice);
        let keys: Vec<&String> = once.keys().collect();
        assert_eq!(keys, ["model", "permissions", "hooks", "env"], "order kept");
        let pre = once["hooks"]["PreToolUse"].as_array().unwrap();
        assert_eq!(pre.len(), 2);
        assert_eq!(pre[0]["hooks"][0]["command"], "/home/u/bin/lint-hook");
        assert_eq!(pre[1]["matcher"], "*");
        assert_eq!(
            pre[1]["hooks"][0]["command"],
            "/opt/sc/shellcage hook claude-code"
        );
        assert_eq!(once["hooks"]["Stop"][0]["hooks"][0]["command"], "notify");
        assert_eq!(once["hooks"]["PostToolUse"][0]["matcher"], "Bash|Monitor");
        assert_eq!(once["env"], json!({"FOO": "1"}));
    }

    #[test]
    fn prefix_and_managed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("managed-settings.json");
        let mut i = inst(&f, Scope::Managed, true);
        i.profile = Some("ci".into());
        let m = merge(Map::new(), &i).unwrap();
        assert_eq!(
            m["env"]["CLAUDE_CODE_SHELL_PREFIX"],
            "/opt/sc/shellcage-prefix"
        );
        assert_eq!(m["env"]["SHELLCAGE_PROFILE"], "ci");
        assert_eq!(m["env"]["SHELLCAGE_WORKSPACE"], "");
        assert_eq!(m["allowManagedHooksOnly"], true);
        assert_eq!(
            m["hooks"]["PreToolUse"][0]["hooks"][0]["command"],
            "/opt/sc/shellcage hook claude-code --profile ci"
        );
        // Back to hook mode: our prefix goes, a foreign one would stay.
        let i = inst(&f, Scope::User, false);
        let back = merge(m, &i).unwrap();
        assert!(back["env"].get("CLAUDE_CODE_SHELL_PREFIX").is_none());
    }

    #[test]
    fn malformed_files_are_errors_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("settings.json");
        for bad in ["{\"hooks\": ", "[1]", "{\"hooks\": []}", "{\"env\": 3}"] {
            std::fs::write(&f, bad).unwrap();
            let mut i = inst(&f, Scope::User, false);
            i.exe = std::env::current_exe().unwrap();
            let err = install(&i).unwrap_err().to_string();
            assert!(err.contains(&f.display().to_string()), "{bad}: {err}");
            assert_eq!(std::fs::read_to_string(&f).unwrap(), bad, "untouched");
        }
    }

    #[test]
    fn atomic_write_keeps_mode_and_follows_a_symlinked_file() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles-settings.json");
        std::fs::write(&real, "{\"a\": 1}").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("settings.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut i = inst(&link, Scope::User, false);
        i.exe = std::env::current_exe().unwrap();
        install(&i).unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&real).unwrap()).unwrap();
        assert_eq!(v["a"], 1);
        assert!(v["hooks"]["PreToolUse"].is_array());
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 2, "no temporary file left");
        let (lines, any) = check(&[(Scope::User, link.clone())]);
        assert!(any, "{lines:?}");
        assert!(lines[0].contains("PreToolUse[*]"), "{lines:?}");
    }

    #[test]
    fn examples_are_what_install_writes() {
        let exe = PathBuf::from("/usr/local/bin/shellcage");
        for (text, scope, prefix) in [
            (
                include_str!("../../examples/claude-code/settings.json"),
                Scope::User,
                false,
            ),
            (
                include_str!("../../examples/claude-code/settings-prefix.json"),
                Scope::User,
                true,
            ),
            (
                include_str!("../../examples/claude-code/managed-settings.json"),
                Scope::Managed,
                false,
            ),
        ] {
            let i = Install {
                scope,
                file: PathBuf::from("/x"),
                exe: exe.clone(),
                prefix,
                profile: None,
            };
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                Value::Object(merge(Map::new(), &i).unwrap()),
                want,
                "{text}"
            );
        }
    }
}

//! Claude Code integration: the shell prefix, and (in submodules) the hook
//! and the installer.
//!
//! Protocol as checked in `@anthropic-ai/claude-code` 2.1.332 (the native
//! linux-x64 build, whose bundled JavaScript was read, and driven end to end
//! in `tests/claude_code_e2e.rs`):
//!
//! - **Hook** (see [`hook`]). stdin is `{"session_id", "transcript_path",
//!   "cwd", "permission_mode", "hook_event_name", "tool_name", "tool_input",
//!   "tool_use_id", …}`; PostToolUse adds `tool_response`, PostToolUseFailure
//!   (a command that exited non-zero) `error`. Exit 0 with
//!   `{"hookSpecificOutput": {"hookEventName", "updatedInput" | "permissionDecision",
//!   "permissionDecisionReason" | "additionalContext"}}`; exit 2 blocks the call
//!   and shows stderr to the model.
//! - **Shell prefix.** With `CLAUDE_CODE_SHELL_PREFIX` set, Claude Code builds
//!   `source SNAPSHOT 2>/dev/null || true && { \builtin shopt -u extglob || … } … && eval 'CMD' < /dev/null && pwd -P >| $TMP/claude-XXXX-cwd`
//!   for Bash and Monitor and runs `PREFIX 'THAT LINE'`; when the prefix
//!   contains ` -`, the text before the last ` -` is quoted as ONE word and
//!   the rest left as is (`shellcage --prefix` works there). Hooks get the
//!   same treatment (`PREFIX 'HOOK COMMAND'`). Stdio MCP servers are spawned
//!   with the prefix as the program and one argument, the quoted command line:
//!   there the prefix must be a plain path, hence [`PREFIX_LINK`]. The
//!   snapshot lives in `$CLAUDE_CONFIG_DIR` or `~/.claude`, under
//!   `shell-snapshots/`; the cwd file is `$CLAUDE_CODE_TMPDIR` (else the temp
//!   dir) `/claude-<4 hex>-cwd`, read and deleted by Claude Code afterwards.

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::cli::RunOpts;

pub mod hook;
pub mod install;

/// The link name that makes the binary behave as `shellcage --prefix`:
/// Claude Code runs `CLAUDE_CODE_SHELL_PREFIX` as one program name for stdio
/// MCP servers, so the prefix must be a plain path.
pub const PREFIX_LINK: &str = "shellcage-prefix";

/// POSIX shell quoting lives with the shell-argument parser (audit and overlay use it too).
pub use crate::cli::{sh_quote, sh_quote_if_needed};

/// The command the hook puts in place of `original`.
pub fn wrap_command(exe: &Path, workspace: Option<&Path>, original: &str) -> String {
    wrap_command_with(exe, workspace, &RunOpts::default(), original)
}

/// The command the hook puts in place of `original`, passing on the hook's
/// own options so that the sandbox gets the policy the hook judged by.
pub fn wrap_command_with(
    exe: &Path,
    workspace: Option<&Path>,
    opts: &RunOpts,
    original: &str,
) -> String {
    let mut out = sh_quote(&exe.to_string_lossy());
    out.push_str(" sh");
    for flag in run_flags(opts) {
        out.push(' ');
        out.push_str(&sh_quote_if_needed(&flag));
    }
    if let Some(ws) = workspace {
        out.push_str(" --workspace ");
        out.push_str(&sh_quote(&ws.to_string_lossy()));
    }
    out.push_str(" -c ");
    out.push_str(&sh_quote(original));
    out
}

/// `opts` as command-line flags (all but `--workspace`, which the caller sets).
pub fn run_flags(opts: &RunOpts) -> Vec<String> {
    use clap::ValueEnum;
    let mut out: Vec<String> = Vec::new();
    if opts.overlay {
        out.push("--overlay".into());
    }
    if opts.gpu {
        out.push("--gpu".into());
    }
    let mut push = |flag: &str, value: String| {
        out.push(flag.into());
        out.push(value);
    };
    if let Some(p) = &opts.profile {
        push("--profile", p.clone());
    }
    if let Some(l) = &opts.layer {
        push("--layer", l.clone());
    }
    for p in &opts.read {
        push("--read", p.display().to_string());
    }
    for p in &opts.write {
        push("--write", p.display().to_string());
    }
    if let Some(v) = opts.net.and_then(|n| n.to_possible_value()) {
        push("--net", v.get_name().into());
    }
    if let Some(v) = opts.tier.and_then(|t| t.to_possible_value()) {
        push("--tier", v.get_name().into());
    }
    for e in &opts.env {
        push("--env", e.clone());
    }
    if let Some(t) = &opts.timeout {
        push("--timeout", t.clone());
    }
    if let Some(a) = &opts.audit {
        push("--audit", a.display().to_string());
    }
    out
}

/// Parse one shell word at the start of `s` (bare characters, `'…'`, `"…"`
/// without expansions, backslash escapes); returns it and the rest.
fn shell_word(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    let mut any = false;
    while let Some(&(i, c)) = chars.peek() {
        match c {
            '\'' => {
                chars.next();
                loop {
                    let (_, c) = chars.next()?;
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '"' => {
                chars.next();
                loop {
                    let (_, c) = chars.next()?;
                    match c {
                        '"' => break,
                        '$' | '`' | '\\' => return None,
                        c => out.push(c),
                    }
                }
            }
            '\\' => {
                chars.next();
                out.push(chars.next()?.1);
            }
            c if c.is_whitespace() || ";&|<>()$`".contains(c) => {
                return any.then(|| (out, &s[i..]));
            }
            c => {
                chars.next();
                out.push(c);
            }
        }
        any = true;
    }
    any.then_some((out, ""))
}

/// The cwd file a Claude Code command line ends with (`… && pwd -P >| FILE`).
pub fn cwd_file_of(cmdline: &str) -> Option<PathBuf> {
    const MARK: &str = "&& pwd -P >| ";
    let at = cmdline.rfind(MARK)?;
    let (word, rest) = shell_word(&cmdline[at + MARK.len()..])?;
    if !rest.trim().is_empty() {
        return None;
    }
    Some(PathBuf::from(word))
}

/// The words of a plain command line (no expansions, redirections or
/// operators), or `None`.
pub fn plain_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let (w, r) = shell_word(rest)?;
        words.push(w);
        let trimmed = r.trim_start();
        if trimmed.len() == r.len() && !r.is_empty() {
            return None; // an operator or `$` right after a word
        }
        rest = trimmed;
    }
    Some(words)
}

/// Is `line` exactly the hook command `shellcage install` writes, naming this
/// binary (`EXE hook claude-code [--profile NAME]`)? Then the prefix runs it
/// directly: the hook only reads JSON and answers, and it must see the host's
/// files to judge them. Returns the hook's options. Any other line (another
/// program, other options, shell syntax) is sandboxed like every command.
pub fn own_hook_line(line: &str) -> Option<RunOpts> {
    let words = plain_words(line)?;
    let exe = std::fs::canonicalize(std::env::current_exe().ok()?).ok()?;
    let first = std::fs::canonicalize(words.first()?).ok()?;
    if first != exe || words.get(1..3)? != ["hook", "claude-code"] {
        return None;
    }
    match &words[3..] {
        [] => Some(RunOpts::default()),
        [flag, name] if flag == "--profile" || flag == "-p" => Some(RunOpts {
            profile: Some(name.clone()),
            ..RunOpts::default()
        }),
        _ => None,
    }
}

/// Check the `SHELLCAGE_*` environment of a run that Claude Code started
/// (the prefix, the hook). That environment comes from Claude Code's
/// settings, where a repository's own `.claude/settings.json` or an MCP
/// server's `env` in its `.mcp.json` can set it: it may pick a profile by
/// name and narrow the workspace, never load a profile from a path (the path
/// could be in the repository) or widen the workspace beyond the repository.
pub fn check_agent_env(cwd: &Path) -> Result<(), String> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    if let Some(p) = var("SHELLCAGE_PROFILE") {
        if !is_profile_name(&p) {
            return Err(format!(
                "SHELLCAGE_PROFILE={p}: for commands Claude Code starts, a profile is taken by name only: a path could point into the repository, which the agent and the repository's author can write (hint: put the file in ~/.config/shellcage/profiles/ and set its name)"
            ));
        }
    }
    if let Some(w) = var("SHELLCAGE_WORKSPACE") {
        let cwd = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
        let top = cwd
            .ancestors()
            .find(|d| d.join(".git").exists())
            .unwrap_or(&cwd)
            .to_path_buf();
        let ws = std::fs::canonicalize(&w).unwrap_or_else(|_| PathBuf::from(&w));
        if !(cwd.starts_with(&ws) && ws.starts_with(&top)) {
            return Err(format!(
                "SHELLCAGE_WORKSPACE={w}: for commands Claude Code starts, the workspace can only be narrowed, to a directory between the repository top {} and the current directory {} (hint: unset it)",
                top.display(),
                cwd.display()
            ));
        }
    }
    Ok(())
}

/// A profile name, not a path (`/` or a `.toml` suffix makes a path).
pub fn is_profile_name(p: &str) -> bool {
    !p.contains('/') && !p.ends_with(".toml")
}

/// `claude-<hex>-cwd`, the only name the prefix makes writable.
fn is_cwd_file_name(name: &str) -> bool {
    name.strip_prefix("claude-")
        .and_then(|r| r.strip_suffix("-cwd"))
        .is_some_and(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Where Claude Code puts its cwd files: `$CLAUDE_CODE_TMPDIR`, else the temp dir.
pub fn claude_tmpdir() -> PathBuf {
    std::env::var_os("CLAUDE_CODE_TMPDIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Claude Code's shell snapshots: `$CLAUDE_CONFIG_DIR` or `~/.claude`, then `shell-snapshots`.
pub fn snapshot_dir(home: &Path) -> PathBuf {
    std::env::var_os("CLAUDE_CONFIG_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".claude"))
        .join("shell-snapshots")
}

/// The cwd file, made on the host before the run so that it can be bound
/// writable into the sandbox's private /tmp. Removed again when the command
/// did not write it (the command line failed before `pwd`), as if it never ran.
#[derive(Debug)]
pub struct CwdFile {
    pub path: PathBuf,
    created: bool,
}

impl CwdFile {
    /// Checks the path Claude Code asked for and creates it (0600, no symlinks).
    pub fn prepare(requested: &Path, tmpdir: &Path) -> Result<CwdFile, String> {
        let name = requested
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| is_cwd_file_name(n))
            .ok_or_else(|| {
                format!(
                    "prefix: cwd file {} is not named claude-<hex>-cwd",
                    requested.display()
                )
            })?;
        let parent = requested.parent().unwrap_or(Path::new("/"));
        let (Ok(parent), Ok(tmp)) = (std::fs::canonicalize(parent), std::fs::canonicalize(tmpdir))
        else {
            return Err(format!(
                "prefix: cwd file {}: its directory does not exist",
                requested.display()
            ));
        };
        if parent != tmp {
            return Err(format!(
                "prefix: cwd file {} is not in Claude Code's temp directory {} (hint: set CLAUDE_CODE_TMPDIR the same for both)",
                requested.display(),
                tmp.display()
            ));
        }
        let path = parent.join(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(_) => Ok(CwdFile {
                path,
                created: true,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let meta = std::fs::symlink_metadata(&path)
                    .map_err(|e| format!("prefix: cwd file {}: {e}", path.display()))?;
                if !meta.file_type().is_file()
                    || meta.nlink() != 1
                    || meta.uid() != nix::unistd::geteuid().as_raw()
                {
                    return Err(format!(
                        "prefix: cwd file {} exists and is not a plain file of ours; refusing to bind it",
                        path.display()
                    ));
                }
                Ok(CwdFile {
                    path,
                    created: false,
                })
            }
            Err(e) => Err(format!(
                "prefix: cannot create cwd file {}: {e}",
                path.display()
            )),
        }
    }

    /// After the run: drop the file again when the command never wrote it.
    pub fn finish(self) {
        if self.created && std::fs::metadata(&self.path).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Undo `sh_quote` the way a POSIX shell reads a word.
    fn unquote(s: &str) -> Option<String> {
        let (w, rest) = shell_word(s)?;
        rest.is_empty().then_some(w)
    }

    #[test]
    fn quoting_examples() {
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a'b"), "'a'\\''b'");
        assert_eq!(sh_quote_if_needed("ls"), "ls");
        assert_eq!(sh_quote_if_needed("a b"), "'a b'");
    }

    proptest! {
        #[test]
        fn quote_inverts(s in "[^\u{0}]*") {
            prop_assert_eq!(unquote(&sh_quote(&s)), Some(s));
        }
    }

    #[test]
    fn profile_names_not_paths() {
        assert!(is_profile_name("dev") && is_profile_name("my-ci"));
        assert!(
            !is_profile_name("./p.toml")
                && !is_profile_name("/etc/p")
                && !is_profile_name("x.toml")
        );
    }

    #[test]
    fn plain_words_and_own_hook_line() {
        assert_eq!(
            plain_words("'/a b/shellcage' hook claude-code"),
            Some(vec![
                "/a b/shellcage".into(),
                "hook".into(),
                "claude-code".into()
            ])
        );
        assert_eq!(plain_words("a;b"), None);
        assert_eq!(plain_words("a $(id)"), None);
        assert_eq!(plain_words("a >x"), None);
        let exe = std::env::current_exe().unwrap();
        let q = sh_quote(&exe.to_string_lossy());
        assert!(
            own_hook_line(&format!("{q} hook claude-code")).is_some_and(|o| o.profile.is_none())
        );
        let p = own_hook_line(&format!("{q} hook claude-code --profile ci")).unwrap();
        assert_eq!(p.profile.as_deref(), Some("ci"));
        for other in [
            format!("{q} hook claude-code --write /"),
            format!("{q} hook claude-code; id"),
            format!("{q} run -- id"),
            "/bin/true hook claude-code".to_string(),
        ] {
            assert!(own_hook_line(&other).is_none(), "{other}");
        }
    }

    #[test]
    fn cwd_file_from_real_shapes() {
        // Shape of Claude Code 2.1.197's command line (see the module docs).
        let line = "source /root/.claude/shell-snapshots/snapshot-bash-1732190000000-ab12cd.sh 2>/dev/null || true && { shopt -u extglob || setopt NO_EXTENDED_GLOB NO_BARE_GLOB_QUAL; } >/dev/null 2>&1 || true && eval 'cd sub && echo \"pwd -P >| /etc/x\"' < /dev/null && pwd -P >| /tmp/claude-3f9a-cwd";
        assert_eq!(cwd_file_of(line), Some("/tmp/claude-3f9a-cwd".into()));
        // 2.1.332's shape.
        let line = "source /h/.claude/shell-snapshots/snapshot-bash-1796159321675-miczxc.sh 2>/dev/null || true && { \\builtin shopt -u extglob || \\builtin setopt NO_EXTENDED_GLOB NO_BARE_GLOB_QUAL NO_BRACE_CCL NO_MAGIC_EQUAL_SUBST NO_RC_QUOTES NO_EQUALS; } >/dev/null 2>&1 || true && { \\builtin unalias -- 'which'; \\builtin unset -f -- 'which'; } >/dev/null 2>&1 || true && eval 'echo hi && cd sub' < /dev/null && pwd -P >| /tmp/claude-a3a7-cwd";
        assert_eq!(cwd_file_of(line), Some("/tmp/claude-a3a7-cwd".into()));
        let quoted = "eval 'x' && pwd -P >| '/tmp/my dir/claude-00ff-cwd'";
        assert_eq!(
            cwd_file_of(quoted),
            Some("/tmp/my dir/claude-00ff-cwd".into())
        );
        assert_eq!(cwd_file_of("eval 'x' && pwd -P >| /tmp/a; rm -rf /"), None);
        assert_eq!(cwd_file_of("echo hi"), None);
        assert!(is_cwd_file_name("claude-3f9a-cwd"));
        assert!(!is_cwd_file_name("claude--cwd"));
        assert!(!is_cwd_file_name(".bashrc"));
    }

    #[test]
    fn cwd_file_must_be_in_tmpdir_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path();
        let err = CwdFile::prepare(&tmp.join("notes.txt"), tmp).unwrap_err();
        assert!(err.contains("claude-<hex>-cwd"), "{err}");
        let other = tempfile::tempdir().unwrap();
        let err = CwdFile::prepare(&other.path().join("claude-1-cwd"), tmp).unwrap_err();
        assert!(err.contains("temp directory"), "{err}");
        std::os::unix::fs::symlink("/etc/passwd", tmp.join("claude-2-cwd")).unwrap();
        let err = CwdFile::prepare(&tmp.join("claude-2-cwd"), tmp).unwrap_err();
        assert!(err.contains("not a plain file"), "{err}");
        let f = CwdFile::prepare(&tmp.join("claude-3-cwd"), tmp).unwrap();
        assert!(f.path.exists());
        f.finish();
        assert!(!tmp.join("claude-3-cwd").exists(), "unwritten file removed");
    }
}

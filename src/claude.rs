//! Claude Code integration: the PreToolUse hook and the shell prefix.
//!
//! Protocol as checked in `@anthropic-ai/claude-code` 2.1.197 (the native
//! linux-x64 build, whose bundled JavaScript was read):
//!
//! - **PreToolUse hook.** stdin is `{"session_id", "transcript_path", "cwd",
//!   "permission_mode", "hook_event_name": "PreToolUse", "tool_name",
//!   "tool_input", "tool_use_id"}`. Exit 0 with
//!   `{"hookSpecificOutput": {"hookEventName": "PreToolUse", "updatedInput": {…}}}`
//!   replaces the tool input; without `permissionDecision` the normal permission
//!   flow still runs (we do not approve anything). Exit 2 blocks the call and
//!   shows stderr to the model. The Bash tool input is `{command, timeout?,
//!   description?, run_in_background?, dangerouslyDisableSandbox?}`.
//! - **Shell prefix.** With `CLAUDE_CODE_SHELL_PREFIX` set, Claude Code builds
//!   `source SNAPSHOT 2>/dev/null || true && … && eval 'CMD' < /dev/null && pwd -P >| /tmp/claude-XXXX-cwd`
//!   and runs `bash -c [-l] "PREFIX 'THAT LINE'"`. When the prefix contains
//!   ` -`, the text before the last ` -` is quoted as ONE word and the rest is
//!   left as is: so `shellcage --prefix` works, `shellcage prefix` does not
//!   (it would look for a program named "shellcage prefix"). The snapshot lives
//!   in `$CLAUDE_CONFIG_DIR` or `~/.claude`, under `shell-snapshots/`; the cwd
//!   file is `$CLAUDE_CODE_TMPDIR` (else the temp dir) `/claude-<4 hex>-cwd`,
//!   read and deleted by Claude Code after the command.

use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Quote `s` as one POSIX shell word: `'…'` with each `'` written `'\''`.
pub fn sh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        if ch == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(ch);
        }
    }
    out.push('\'');
    out
}

/// `s` as is when it is made of characters no shell treats specially, else quoted.
pub fn sh_quote_if_needed(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=@+,-%".contains(&b))
    {
        s.to_string()
    } else {
        sh_quote(s)
    }
}

/// The command the hook puts in place of `original`.
pub fn wrap_command(exe: &Path, workspace: Option<&Path>, original: &str) -> String {
    let mut out = sh_quote(&exe.to_string_lossy());
    out.push_str(" sh");
    if let Some(ws) = workspace {
        out.push_str(" --workspace ");
        out.push_str(&sh_quote(&ws.to_string_lossy()));
    }
    out.push_str(" -c ");
    out.push_str(&sh_quote(original));
    out
}

/// Answer one PreToolUse event. `Ok(None)`: not ours, let it pass untouched.
/// `Err`: block the call (exit 2) with this reason.
pub fn hook_answer(
    input: &[u8],
    exe: &Path,
    workspace: Option<&Path>,
) -> Result<Option<Value>, String> {
    let event: Value = serde_json::from_slice(input)
        .map_err(|e| format!("hook input is not JSON ({e}); blocking the tool call"))?;
    let event = event
        .as_object()
        .ok_or("hook input is not a JSON object; blocking the tool call")?;
    match event.get("hook_event_name").and_then(Value::as_str) {
        Some("PreToolUse") => {}
        other => {
            return Err(format!(
                "expected a PreToolUse event, got hook_event_name {other:?} (hint: register 'shellcage hook claude-code' under hooks.PreToolUse)"
            ));
        }
    }
    let tool = event
        .get("tool_name")
        .and_then(Value::as_str)
        .ok_or("PreToolUse event without a string tool_name; blocking the tool call")?;
    if tool != "Bash" {
        return Ok(None);
    }
    let input = event
        .get("tool_input")
        .and_then(Value::as_object)
        .ok_or("Bash tool_input is not an object; blocking the tool call")?;
    let command = input
        .get("command")
        .and_then(Value::as_str)
        .ok_or("Bash tool_input.command is missing or not a string; blocking the tool call")?;
    if command.contains('\0') {
        return Err("Bash command contains a NUL byte; blocking the tool call".into());
    }
    let mut updated: Map<String, Value> = input.clone();
    updated.insert(
        "command".into(),
        Value::String(wrap_command(exe, workspace, command)),
    );
    Ok(Some(serde_json::json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "updatedInput": Value::Object(updated),
        }
    })))
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
    fn hook_rewrites_bash_and_keeps_fields() {
        let ev = serde_json::json!({
            "session_id": "s", "transcript_path": "/t", "cwd": "/w",
            "permission_mode": "default", "hook_event_name": "PreToolUse",
            "tool_name": "Bash", "tool_use_id": "toolu_1",
            "tool_input": {"command": "echo 'hi'", "timeout": 1000,
                "description": "say hi", "run_in_background": false}
        });
        let out = hook_answer(
            ev.to_string().as_bytes(),
            Path::new("/opt/sc/shellcage"),
            Some(Path::new("/w")),
        )
        .unwrap()
        .unwrap();
        let hso = &out["hookSpecificOutput"];
        assert_eq!(hso["hookEventName"], "PreToolUse");
        assert!(hso.get("permissionDecision").is_none(), "never approves");
        let ui = hso["updatedInput"].as_object().unwrap();
        assert_eq!(
            ui["command"],
            "'/opt/sc/shellcage' sh --workspace '/w' -c 'echo '\\''hi'\\'''"
        );
        assert_eq!(ui["timeout"], 1000);
        assert_eq!(ui["description"], "say hi");
        assert_eq!(ui["run_in_background"], false);
        assert_eq!(ui.len(), 4);
    }

    #[test]
    fn hook_passes_other_tools_and_blocks_garbage() {
        let exe = Path::new("/x/shellcage");
        let ev = r#"{"hook_event_name":"PreToolUse","tool_name":"Read","tool_input":{"file_path":"/etc/passwd"}}"#;
        assert_eq!(hook_answer(ev.as_bytes(), exe, None), Ok(None));
        for bad in [
            "",
            "not json",
            "[]",
            r#"{"hook_event_name":"PostToolUse","tool_name":"Bash","tool_input":{"command":"x"}}"#,
            r#"{"tool_name":"Bash","tool_input":{"command":"x"}}"#,
            r#"{"hook_event_name":"PreToolUse","tool_input":{"command":"x"}}"#,
            r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":"x"}"#,
            r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{}}"#,
            r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":7}}"#,
            r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"a\u0000b"}}"#,
        ] {
            assert!(hook_answer(bad.as_bytes(), exe, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn cwd_file_from_real_shapes() {
        // Shape of Claude Code 2.1.197's command line (see the module docs).
        let line = "source /root/.claude/shell-snapshots/snapshot-bash-1732190000000-ab12cd.sh 2>/dev/null || true && { shopt -u extglob || setopt NO_EXTENDED_GLOB NO_BARE_GLOB_QUAL; } >/dev/null 2>&1 || true && eval 'cd sub && echo \"pwd -P >| /etc/x\"' < /dev/null && pwd -P >| /tmp/claude-3f9a-cwd";
        assert_eq!(cwd_file_of(line), Some("/tmp/claude-3f9a-cwd".into()));
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

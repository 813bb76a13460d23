//! Claude Code integration without Claude Code: the hook's quoting and the
//! prefix's command line, in the shapes of @anthropic-ai/claude-code 2.1.197
//! and 2.1.332 (see src/claude/mod.rs). tests/claude_code_e2e.rs drives the
//! real package.
#[macro_use]
mod common;
use common::*;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use proptest::prelude::*;

/// Run `shellcage hook claude-code` on `event`; (exit code, stdout, stderr).
fn hook(event: &str, project: Option<&Path>) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(["hook", "claude-code"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("CLAUDE_PROJECT_DIR");
    if let Some(p) = project {
        c.env("CLAUDE_PROJECT_DIR", p);
    }
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    (o.status.code().unwrap(), stdout(&o), stderr(&o))
}

fn bash_event(command: &str) -> String {
    serde_json::json!({
        "session_id": "0b7c1c9e-1111-4222-8333-944445555666",
        "transcript_path": "/home/u/.claude/projects/p/0b7c1c9e.jsonl",
        "cwd": "/w",
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": command, "description": "d", "timeout": 120000},
        "tool_use_id": "toolu_01"
    })
    .to_string()
}

fn rewritten(command: &str, project: Option<&Path>) -> String {
    let (code, out, err) = hook(&bash_event(command), project);
    assert_eq!(code, 0, "hook failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ui = &v["hookSpecificOutput"]["updatedInput"];
    assert_eq!(ui["description"], "d");
    assert_eq!(ui["timeout"], 120000);
    ui["command"].as_str().unwrap().to_string()
}

/// What a real shell parses out of `line` as the last argument.
fn last_word_by(shell: &str, line: &str) -> Vec<u8> {
    let script = format!("set -- {line}\nshift $(($# - 1))\nprintf %s \"$1\"");
    let o = Command::new(shell)
        .args(["-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{shell}: {}", stderr(&o));
    o.stdout
}

/// Strings an agent might send: quotes, escapes, heredocs, $'…', unicode, control chars.
fn tricky() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("'".to_string()),
        Just("'\\''".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("$'\\x41\\n'".to_string()),
        Just("$(id)".to_string()),
        Just("`id`".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("cat <<'EOF'\nx $y\nEOF\n".to_string()),
        Just("héllo ✓ 日本 🦀".to_string()),
        Just("${HOME:-x}".to_string()),
        Just(" ; && || | > < * ? [ ] ~ # ! ".to_string()),
        "[^\u{0}]{0,12}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The rewritten command, parsed by /bin/sh and by bash, hands exactly the
    /// original string to `shellcage sh -c`.
    #[test]
    fn hook_quoting_survives_real_shells(s in tricky()) {
        let line = rewritten(&s, Some(Path::new("/proj dir/it's")));
        let exe = bin().canonicalize().unwrap();
        let q = |x: &str| format!("'{}'", x.replace('\'', "'\\''"));
        let head = format!(
            "{} sh --workspace {} -c ",
            q(&exe.to_string_lossy()),
            q("/proj dir/it's")
        );
        prop_assert!(line.starts_with(&head), "{}", line);
        for shell in ["/bin/sh", "/bin/bash"] {
            prop_assert_eq!(last_word_by(shell, &line), s.as_bytes().to_vec());
        }
    }
}

#[test]
fn very_long_command_survives() {
    let s: String = "a'b\"c\n$x ✓ ".repeat(8_000); // ~100 KB
    let line = rewritten(&s, None);
    assert_eq!(last_word_by("/bin/sh", &line), s.as_bytes());
}

#[test]
fn other_tools_pass_untouched_and_garbage_blocks() {
    let read = r#"{"session_id":"s","transcript_path":"/t","cwd":"/w","permission_mode":"default","hook_event_name":"PreToolUse","tool_name":"Read","tool_input":{"file_path":"/etc/passwd"},"tool_use_id":"t"}"#;
    assert_eq!(hook(read, None), (0, String::new(), String::new()));
    for bad in [
        "",
        "{",
        r#"{"hook_event_name":"Stop","tool_name":"Bash","tool_input":{"command":"id"}}"#,
        r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"cmd":"id"}}"#,
        r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"a\u0000b"}}"#,
    ] {
        let (code, out, err) = hook(bad, None);
        assert_eq!(code, 2, "must block: {bad}");
        assert!(out.is_empty(), "no answer on stdout when blocking: {out}");
        assert!(
            err.starts_with("shellcage hook: "),
            "reason on stderr: {err}"
        );
    }
}

/// End to end: the hook's command, run by bash as Claude Code would, makes
/// the sandboxed bash receive exactly the original string ($BASH_EXECUTION_STRING).
#[test]
fn sandbox_receives_exactly_the_original() {
    needs_sandbox!();
    let ws = Workspace::new();
    let cases = [
        "it's \"quoted\" \\ back\\slash",
        "$'\\x72m -rf /' `id` $(id) ${HOME}",
        "héllo ✓ 日本 🦀\ttab\r\nCRLF",
        "cat <<EOF\n$HOME\nEOF\necho '''",
        &"x'y\"z ".repeat(5_000),
    ];
    for (i, body) in cases.iter().enumerate() {
        let delim = canary();
        let original = format!(
            ": <<'{delim}'\n{body}\n{delim}\nprintf %s \"$BASH_EXECUTION_STRING\" > captured-{i}"
        );
        let line = rewritten(&original, Some(ws.path()));
        let o = Command::new("/bin/bash")
            .args(["-c", &line])
            .current_dir(ws.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "case {i}: {}", stderr(&o));
        let got = std::fs::read(ws.path().join(format!("captured-{i}"))).unwrap();
        assert_eq!(got, original.as_bytes(), "case {i}");
    }
}

/// Claude Code's `Qa` quoting (shell-quote style, `'"'"'` for a quote).
fn claude_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=@+,-".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\"'\"'"))
    }
}

struct PrefixCase {
    ws: Workspace,
    config: tempfile::TempDir,
    tmp: tempfile::TempDir,
    snapshot: std::path::PathBuf,
    secret: String,
}

fn prefix_case() -> PrefixCase {
    let ws = Workspace::new();
    std::fs::create_dir(ws.path().join("sub")).unwrap();
    let config = tempfile::tempdir().unwrap();
    let snaps = config.path().join("shell-snapshots");
    std::fs::create_dir(&snaps).unwrap();
    let snapshot = snaps.join("snapshot-bash-1732190000000-ab12cd.sh");
    std::fs::write(
        &snapshot,
        "# Snapshot file\nunalias -a 2>/dev/null || true\nfrom_snapshot() { echo from-snapshot; }\nexport SNAP_VAR=42\n",
    )
    .unwrap();
    let secret = canary();
    std::fs::write(
        config.path().join(".credentials.json"),
        format!("{{\"token\":\"{secret}\"}}"),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    PrefixCase {
        ws,
        config,
        tmp,
        snapshot,
        secret,
    }
}

/// Claude Code 2.1.197's command line for `cmd` (buildExecCommand), wrapped by
/// the prefix as W4n does, run as `bash -c LINE`.
fn run_prefixed(c: &PrefixCase, cmd: &str, id: &str) -> std::process::Output {
    let cwd_file = c.tmp.path().join(format!("claude-{id}-cwd"));
    let inner = [
        format!(
            "source {} 2>/dev/null || true",
            claude_quote(&c.snapshot.to_string_lossy())
        ),
        "{ shopt -u extglob || setopt NO_EXTENDED_GLOB NO_BARE_GLOB_QUAL; } >/dev/null 2>&1 || true"
            .to_string(),
        format!("eval {} < /dev/null", claude_quote(cmd)),
        format!("pwd -P >| {}", claude_quote(&cwd_file.to_string_lossy())),
    ]
    .join(" && ");
    // CLAUDE_CODE_SHELL_PREFIX="<bin> --prefix": the part before the last " -"
    // is quoted as one word, the rest kept as is.
    let outer = format!(
        "{} --prefix {}",
        claude_quote(&bin().to_string_lossy()),
        claude_quote(&inner)
    );
    Command::new("/bin/bash")
        .args(["-c", &outer])
        .current_dir(c.ws.path())
        .env("CLAUDE_CONFIG_DIR", c.config.path())
        .env("CLAUDE_CODE_TMPDIR", c.tmp.path())
        .env("SHELLCAGE_WORKSPACE", c.ws.path())
        .env("GIT_EDITOR", "true")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn prefix_keeps_snapshot_and_cd_hides_the_rest() {
    needs_sandbox!();
    let c = prefix_case();
    let cred = c.config.path().join(".credentials.json");
    let cmd = format!(
        "from_snapshot; echo \"var=$SNAP_VAR editor=$GIT_EDITOR\"; cat {} && echo LEAKED; echo \"listing: $(ls -A {} | tr '\\n' ' ')\"; cd sub",
        claude_quote(&cred.to_string_lossy()),
        claude_quote(&c.config.path().to_string_lossy())
    );
    let o = run_prefixed(&c, &cmd, "3f9a");
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert!(out.contains("from-snapshot\nvar=42 editor=true\n"), "{out}");
    assert!(!out.contains("LEAKED") && !out.contains(&c.secret), "{out}");
    assert!(
        out.contains("listing: shell-snapshots \n"),
        "only shell-snapshots is visible in the config dir: {out}"
    );
    // The cd persisted: the host's cwd file names the subdirectory.
    let cwd_file = c.tmp.path().join("claude-3f9a-cwd");
    let written = std::fs::read_to_string(&cwd_file).unwrap();
    assert_eq!(
        written.trim(),
        c.ws.path()
            .join("sub")
            .canonicalize()
            .unwrap()
            .to_str()
            .unwrap()
    );
    // The snapshot stays unmodified (read-only inside).
    let before = std::fs::read(&c.snapshot).unwrap();
    let o = run_prefixed(
        &c,
        &format!(
            "echo x >> {} && echo WROTE",
            claude_quote(&c.snapshot.to_string_lossy())
        ),
        "3f9b",
    );
    assert!(!stdout(&o).contains("WROTE"), "{}", stdout(&o));
    assert_eq!(std::fs::read(&c.snapshot).unwrap(), before);
}

#[test]
fn prefix_failed_command_leaves_no_cwd_file() {
    needs_sandbox!();
    let c = prefix_case();
    let o = run_prefixed(&c, "cd sub && exit 7", "00aa");
    assert_eq!(o.status.code(), Some(7), "stderr: {}", stderr(&o));
    assert!(
        !c.tmp.path().join("claude-00aa-cwd").exists(),
        "as without shellcage: no pwd ran, no file"
    );
}

#[test]
fn prefix_refuses_a_cwd_file_outside_claudes_tmpdir() {
    let c = prefix_case();
    let target = c.ws.write("claude-1234-cwd", "keep");
    let line = format!("eval 'true' && pwd -P >| {}", target.display());
    let o = Command::new(bin())
        .args(["--prefix", &line])
        .current_dir(c.ws.path())
        .env("CLAUDE_CODE_TMPDIR", c.tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("temp directory"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
}

/// A repository's `.claude/settings.json` (or an MCP server's `env` in its
/// `.mcp.json`) sets the environment of what Claude Code starts: it must not
/// be able to load a profile from a path or widen the workspace.
#[test]
fn agent_environment_cannot_loosen_the_sandbox() {
    let ws = Workspace::git();
    ws.write(
        "loose.toml",
        "version = 1\nextends = \"dev\"\n[network]\nmode = \"host\"\n",
    );
    std::fs::create_dir(ws.path().join("sub")).unwrap();
    let link = ws.path().join("shellcage-prefix");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let marker = ws.path().join("ran");
    let line = format!("touch {}", marker.display());
    let parent = ws.path().parent().unwrap().to_path_buf();
    for (name, value) in [
        (
            "SHELLCAGE_PROFILE",
            ws.path().join("loose.toml").display().to_string(),
        ),
        ("SHELLCAGE_PROFILE", "./loose.toml".to_string()),
        ("SHELLCAGE_WORKSPACE", parent.display().to_string()),
        ("SHELLCAGE_WORKSPACE", "/".to_string()),
    ] {
        let o = Command::new(&link)
            .arg(&line)
            .current_dir(ws.path().join("sub"))
            .env(name, &value)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(125), "{name}={value}: {}", stderr(&o));
        assert!(stderr(&o).contains(name), "{}", stderr(&o));
        assert!(!marker.exists(), "{name}={value}: the command ran");
        let mut c = Command::new(bin());
        c.args(["hook", "claude-code"])
            .env("CLAUDE_PROJECT_DIR", ws.path().join("sub"))
            .env(name, &value)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(bash_event("id").as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(2),
            "hook with {name}={value}: {}",
            stdout(&o)
        );
        assert!(stderr(&o).contains(name), "{}", stderr(&o));
    }
    // Narrowing is fine: the repository top or a directory below it.
    needs_sandbox!();
    let o = Command::new(&link)
        .arg(&line)
        .current_dir(ws.path().join("sub"))
        .env("SHELLCAGE_WORKSPACE", ws.path())
        .env("SHELLCAGE_PROFILE", "dev")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(marker.exists());
}

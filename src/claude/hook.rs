//! `shellcage hook claude-code`: Claude Code's PreToolUse, PostToolUse and
//! PostToolUseFailure hook, judged by the same policy as the sandbox.
//!
//! Tool names and input fields as in `@anthropic-ai/claude-code` 2.1.332
//! (the tool list a real `claude -p` sends, and `sdk-tools.d.ts`; fixtures in
//! `tests/fixtures/claude-code/2.1.332/`). Older names (`MultiEdit`, `LS`)
//! are kept: a hook must not let an older Claude Code through.
//!
//! - Shell tools (`Bash`, `Monitor`): the command is rewritten to run in the
//!   sandbox (`updatedInput`), unless Claude Code already runs every command
//!   line through our `shellcage-prefix` (then rewriting would nest sandboxes).
//! - File tools: the path is resolved like the kernel ([`explain::resolve`])
//!   and judged ([`explain::Judge`]); reading needs a path the sandbox shows,
//!   writing one the sandbox could write. A denial is
//!   `permissionDecision: "deny"` with the rule in `permissionDecisionReason`.
//! - `Grep` over a visible directory passes with the hidden files' names
//!   added to its `glob` as exclusions; `Glob` lists names only and passes.
//! - `WebFetch` (and `Monitor`'s WebSocket) are made by Claude Code itself on
//!   the host: allowed only when the profile reaches the host's network.
//! - Any field that looks like a path and that we do not know is judged as a
//!   write (fail closed: we cannot tell what the tool does with it).
//! - PostToolUse(Failure) of a shell tool: one line of `additionalContext`
//!   when the output names a path or host the policy hides, protects or
//!   refuses (the verdict comes from the policy; the output only supplies
//!   the candidates).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::cli::RunOpts;
use crate::explain::{self, Finding, Judge, Verdict, ViewAccess, url_host};

/// One hook event, as Claude Code sends it on stdin.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub tool: String,
    pub input: Map<String, Value>,
    /// The session's current directory (relative paths are relative to it).
    pub cwd: Option<PathBuf>,
    pub session_id: Option<String>,
    pub transcript_path: Option<PathBuf>,
    /// PostToolUse: the tool's result.
    pub response: Option<Value>,
    /// PostToolUseFailure: the error text.
    pub error: Option<String>,
}

/// Parse the event; `Err` blocks the tool call (exit 2) with the reason.
pub fn parse_event(input: &[u8]) -> Result<Event, String> {
    let v: Value = serde_json::from_slice(input)
        .map_err(|e| format!("hook input is not JSON ({e}); blocking the tool call"))?;
    let o = v
        .as_object()
        .ok_or("hook input is not a JSON object; blocking the tool call")?;
    let name = match o.get("hook_event_name").and_then(Value::as_str) {
        Some(n @ ("PreToolUse" | "PostToolUse" | "PostToolUseFailure")) => n.to_string(),
        other => {
            return Err(format!(
                "expected a PreToolUse, PostToolUse or PostToolUseFailure event, got hook_event_name {other:?} (hint: register 'shellcage hook claude-code' under hooks.PreToolUse; see 'shellcage install claude-code')"
            ));
        }
    };
    let tool = o
        .get("tool_name")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{name} event without a string tool_name; blocking the tool call"))?
        .to_string();
    let input = o
        .get("tool_input")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("{tool} tool_input is not an object; blocking the tool call"))?
        .clone();
    let path = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    Ok(Event {
        name,
        tool,
        input,
        cwd: path("cwd"),
        session_id: o
            .get("session_id")
            .and_then(Value::as_str)
            .map(String::from),
        transcript_path: path("transcript_path"),
        response: o.get("tool_response").cloned(),
        error: o.get("error").and_then(Value::as_str).map(String::from),
    })
}

/// What the hook prints.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Exit 0, no output: Claude Code goes on as usual.
    Pass,
    /// Exit 0 with this JSON on stdout.
    Json(Value),
    /// Exit 2, this reason on stderr: Claude Code blocks the call.
    Block(String),
}

/// Claude Code's own files that its tools may touch although no sandboxed
/// command could (tool results it saved, its task output, plans).
#[derive(Debug, Clone)]
pub struct ClaudeFiles {
    /// `$CLAUDE_CONFIG_DIR`, else `~/.claude` (canonical when it exists).
    pub config: PathBuf,
    /// `$CLAUDE_CODE_TMPDIR`, else the temp dir (canonical when it exists).
    pub tmp: PathBuf,
    pub uid: u32,
}

/// Everything the hook needs besides the event.
pub struct Context<'a> {
    /// The shellcage binary, for the rewritten shell commands.
    pub exe: &'a Path,
    /// The options the hook was given, passed on to `shellcage sh`.
    pub opts: &'a RunOpts,
    pub judge: &'a Judge<'a>,
    pub home: &'a Path,
    /// False when CLAUDE_CODE_SHELL_PREFIX already is our prefix.
    pub rewrite_shell: bool,
    pub claude: &'a ClaudeFiles,
}

/// Read the event, build the policy the sandbox would get for this project,
/// and answer. Everything that goes wrong blocks the call.
pub fn handle(input: &[u8], opts: &RunOpts) -> Answer {
    let ev = match parse_event(input) {
        Ok(ev) => ev,
        Err(reason) => return Answer::Block(reason),
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            return Answer::Block(format!(
                "cannot find the shellcage binary: {e}; blocking the tool call"
            ));
        }
    };
    let home = match explain::home_dir() {
        Ok(h) => h,
        Err(e) => return Answer::Block(format!("{e}; blocking the tool call")),
    };
    // Claude Code gives hooks the project root; the workspace is found from
    // it as everywhere else (the top of its git work tree), so `.git` is in.
    let project = std::env::var_os("CLAUDE_PROJECT_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| ev.cwd.clone())
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("/"));
    let project = std::fs::canonicalize(&project).unwrap_or(project);
    if let Err(e) = super::check_agent_env(&project) {
        return Answer::Block(format!("{e}; blocking the tool call"));
    }
    // Inside a sandbox (a hook started through the prefix), the policy in force.
    let view = match explain::cli::policy_in_force(opts, &project).map(|(v, _)| v) {
        Ok(v) => v,
        Err(e) => {
            return Answer::Block(format!(
                "cannot build the sandbox policy for {}: {e}; blocking the tool call",
                project.display()
            ));
        }
    };
    let judge = Judge::new(&view);
    let claude = ClaudeFiles::from_env(&home);
    let cx = Context {
        exe: &exe,
        opts,
        judge: &judge,
        home: &home,
        rewrite_shell: !prefix_is_ours(&exe),
        claude: &claude,
    };
    answer(&ev, &cx)
}

impl ClaudeFiles {
    /// Where this Claude Code keeps its files (from its environment).
    pub fn from_env(home: &Path) -> ClaudeFiles {
        let canon = |p: PathBuf| std::fs::canonicalize(&p).unwrap_or(p);
        let config = std::env::var_os("CLAUDE_CONFIG_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(".claude"));
        ClaudeFiles {
            config: canon(config),
            tmp: canon(super::claude_tmpdir()),
            uid: nix::unistd::getuid().as_raw(),
        }
    }
}

/// Does Claude Code already run every command line through this shellcage
/// (`CLAUDE_CODE_SHELL_PREFIX` = our `shellcage-prefix`, or `shellcage
/// --prefix`)? Then the hook must not wrap shell commands a second time.
/// Anything else (unset, another program, our binary with another option)
/// means the commands are not sandboxed unless the hook wraps them.
pub fn prefix_is_ours(exe: &Path) -> bool {
    let Some(value) = std::env::var_os("CLAUDE_CODE_SHELL_PREFIX") else {
        return false;
    };
    let value = value.to_string_lossy().trim().to_string();
    let (program, rest) = match value.rfind(" -") {
        Some(at) => (&value[..at], value[at + 1..].trim()),
        None => (value.as_str(), ""),
    };
    let program = Path::new(program);
    let same = |a: &Path, b: &Path| matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y);
    let named = |n: &str| program.file_name().is_some_and(|f| f == n);
    program.is_absolute()
        && same(program, exe)
        && ((rest.is_empty() && named(super::PREFIX_LINK))
            || (rest == "--prefix" && !named(super::PREFIX_LINK)))
}

/// Answer one event.
pub fn answer(ev: &Event, cx: &Context<'_>) -> Answer {
    match ev.name.as_str() {
        "PreToolUse" => pre_tool_use(ev, cx),
        _ => post_tool_use(ev, cx),
    }
}

/// What a tool does with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// A shell command line to sandbox.
    Command,
    Read,
    Write,
    /// Glob/Grep/LS search root (default: cwd).
    SearchRoot,
    /// Glob's pattern: its fixed leading directories extend the root.
    GlobPattern,
    /// Grep's file filter: exclusions are appended.
    GrepGlob,
    /// A URL Claude Code fetches itself.
    Url,
    /// A WebSocket `{url}` object (Monitor).
    WsUrl,
    /// Not a path, or harmless.
    Ignore,
}

use Use::*;

/// The tools Claude Code 2.1.332 offers (plus older names), with each known
/// field. Fields not listed are scanned for paths (see `path_like`).
const TOOLS: &[(&str, &[(&str, Use)])] = &[
    (
        "Bash",
        &[
            ("command", Command),
            ("timeout", Ignore),
            ("description", Ignore),
            ("run_in_background", Ignore),
            ("dangerouslyDisableSandbox", Ignore),
        ],
    ),
    (
        "Monitor",
        &[
            ("command", Command),
            ("ws", WsUrl),
            ("description", Ignore),
            ("timeout_ms", Ignore),
            ("persistent", Ignore),
        ],
    ),
    (
        "Read",
        &[
            ("file_path", Read),
            ("offset", Ignore),
            ("limit", Ignore),
            ("pages", Ignore),
            ("allow_large", Ignore),
        ],
    ),
    ("Write", &[("file_path", Write), ("content", Ignore)]),
    (
        "Edit",
        &[
            ("file_path", Write),
            ("old_string", Ignore),
            ("new_string", Ignore),
            ("replace_all", Ignore),
        ],
    ),
    ("MultiEdit", &[("file_path", Write), ("edits", Ignore)]),
    (
        "NotebookEdit",
        &[
            ("notebook_path", Write),
            ("cell_id", Ignore),
            ("new_source", Ignore),
            ("cell_type", Ignore),
            ("edit_mode", Ignore),
        ],
    ),
    ("Glob", &[("pattern", GlobPattern), ("path", SearchRoot)]),
    (
        "Grep",
        &[
            ("pattern", Ignore),
            ("path", SearchRoot),
            ("glob", GrepGlob),
            ("output_mode", Ignore),
            ("-B", Ignore),
            ("-A", Ignore),
            ("-C", Ignore),
            ("context", Ignore),
            ("-n", Ignore),
            ("-i", Ignore),
            ("-o", Ignore),
            ("type", Ignore),
            ("head_limit", Ignore),
            ("offset", Ignore),
            ("multiline", Ignore),
        ],
    ),
    ("LS", &[("path", SearchRoot), ("ignore", Ignore)]),
    (
        "WebFetch",
        &[("url", Url), ("prompt", Ignore), ("offset", Ignore)],
    ),
    // Searched by the model provider's servers, not from this machine.
    (
        "WebSearch",
        &[
            ("query", Ignore),
            ("allowed_domains", Ignore),
            ("blocked_domains", Ignore),
        ],
    ),
    // Claude Code's own bookkeeping and agents: no host path, no command.
    // (Subagents' tool calls come through this hook one by one.)
    (
        "Agent",
        &[
            ("description", Ignore),
            ("prompt", Ignore),
            ("subagent_type", Ignore),
            ("model", Ignore),
            ("effort", Ignore),
            ("run_in_background", Ignore),
            ("name", Ignore),
            ("team_name", Ignore),
            ("mode", Ignore),
            ("isolation", Ignore),
        ],
    ),
    (
        "Task",
        &[
            ("description", Ignore),
            ("prompt", Ignore),
            ("subagent_type", Ignore),
        ],
    ),
    (
        "ListAgents",
        &[("channel", Ignore), ("q", Ignore), ("cursor", Ignore)],
    ),
    ("ReportFindings", &[("level", Ignore), ("findings", Ignore)]),
    (
        "ScheduleWakeup",
        &[
            ("delaySeconds", Ignore),
            ("reason", Ignore),
            ("prompt", Ignore),
            ("stop", Ignore),
            ("noop", Ignore),
        ],
    ),
    ("Skill", &[("skill", Ignore), ("args", Ignore)]),
    ("ToolSearch", &[("query", Ignore), ("max_results", Ignore)]),
    (
        "Workflow",
        &[
            ("script", Ignore),
            ("scriptPath", Read),
            ("name", Ignore),
            ("description", Ignore),
            ("title", Ignore),
            ("args", Ignore),
            ("resumeFromRunId", Ignore),
        ],
    ),
    ("DeferredToolPlaceholder", &[]),
    ("TodoWrite", &[("todos", Ignore)]),
    ("TaskStop", &[("task_id", Ignore), ("shell_id", Ignore)]),
    ("CronList", &[]),
    (
        "CronCreate",
        &[
            ("cron", Ignore),
            ("prompt", Ignore),
            ("recurring", Ignore),
            ("durable", Ignore),
        ],
    ),
    (
        "SendMessage",
        &[
            ("to", Ignore),
            ("summary", Ignore),
            ("message", Ignore),
            ("notify_when_idle", Ignore),
        ],
    ),
    ("CronDelete", &[("id", Ignore)]),
    ("EnterPlanMode", &[]),
    (
        "ExitPlanMode",
        &[("allowedPrompts", Ignore), ("plan", Ignore)],
    ),
    ("AskUserQuestion", &[("questions", Ignore)]),
    ("EnterWorktree", &[("name", Ignore), ("path", SearchRoot)]),
    (
        "ExitWorktree",
        &[("action", Ignore), ("discard_changes", Ignore)],
    ),
];

fn deny(reason: String) -> Answer {
    Answer::Json(json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": reason,
        }
    }))
}

const RETRY: &str = "a command in the sandbox could not do it either, so retrying or rephrasing will not help; the user can change the profile (see `shellcage explain PATH`)";
/// [`RETRY`] for a rule of the administrator's managed floor.
const RETRY_MANAGED: &str = "a command in the sandbox could not do it either, so retrying or rephrasing will not help; it is a rule of the administrator's managed floor, which the user cannot change either (see `shellcage policy show`)";

/// What to tell the model after `rule` refused: retrying will not help, and who can change it.
fn retry_hint(rule: &str) -> &'static str {
    if rule.starts_with("managed ") || rule.contains(": managed ") {
        RETRY_MANAGED
    } else {
        RETRY
    }
}

/// Fields without which a tool call is malformed (Claude Code's schemas).
const REQUIRED: &[(&str, &str)] = &[
    ("Bash", "command"),
    ("Read", "file_path"),
    ("Write", "file_path"),
    ("Edit", "file_path"),
    ("MultiEdit", "file_path"),
    ("NotebookEdit", "notebook_path"),
    ("Glob", "pattern"),
    ("Grep", "pattern"),
    ("WebFetch", "url"),
];

fn pre_tool_use(ev: &Event, cx: &Context<'_>) -> Answer {
    for (tool, key) in REQUIRED {
        if ev.tool == *tool && !ev.input.get(*key).is_some_and(Value::is_string) {
            return Answer::Block(format!(
                "{tool} tool_input.{key} is missing or not a string; blocking the tool call"
            ));
        }
    }
    if ev.tool == "Monitor" && !ev.input.contains_key("command") && !ev.input.contains_key("ws") {
        return Answer::Block("Monitor has neither command nor ws; blocking the tool call".into());
    }
    let known = TOOLS.iter().find(|(n, _)| *n == ev.tool).map(|(_, f)| *f);
    let mut updated = ev.input.clone();
    let mut changed = false;
    for (key, value) in &ev.input {
        let usage = known
            .and_then(|fields| fields.iter().find(|(k, _)| k == key))
            .map(|(_, u)| *u);
        let result = match usage {
            Some(u) => field(ev, cx, key, value, u, &mut updated, &mut changed),
            None => unknown_field(ev, cx, key, value),
        };
        if let Err(a) = result {
            return a;
        }
    }
    // Glob with only a pattern, Grep/LS without a path: the root is the cwd.
    if known.is_some_and(|f| f.iter().any(|(_, u)| *u == SearchRoot))
        && !ev.input.contains_key("path")
    {
        if let Err(a) = search_root(ev, cx, None, &mut updated, &mut changed) {
            return a;
        }
    }
    if changed {
        Answer::Json(json!({
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "updatedInput": Value::Object(updated),
            }
        }))
    } else {
        Answer::Pass
    }
}

fn field(
    ev: &Event,
    cx: &Context<'_>,
    key: &str,
    value: &Value,
    usage: Use,
    updated: &mut Map<String, Value>,
    changed: &mut bool,
) -> Result<(), Answer> {
    let text = || {
        value.as_str().ok_or_else(|| {
            deny(format!(
                "shellcage: {}.{key} is not a string; refusing the call",
                ev.tool
            ))
        })
    };
    match usage {
        Ignore => Ok(()),
        Command => {
            let cmd = text()?;
            if cmd.contains('\0') {
                return Err(Answer::Block(format!(
                    "{} command contains a NUL byte; blocking the tool call",
                    ev.tool
                )));
            }
            if cx.rewrite_shell {
                let ws = &cx.judge.view.workspace;
                let line = super::wrap_command_with(cx.exe, Some(ws), cx.opts, cmd);
                updated.insert(key.into(), Value::String(line));
                *changed = true;
            }
            Ok(())
        }
        Read | Write => {
            let want = if usage == Read {
                ViewAccess::Read
            } else {
                ViewAccess::Write
            };
            check_path(ev, cx, key, text()?, want)
        }
        SearchRoot => search_root(ev, cx, Some(text()?), updated, changed),
        GlobPattern => glob_pattern(ev, cx, text()?),
        GrepGlob => Ok(()), // extended in search_root, once the root is known
        Url => check_url(ev, cx, key, text()?),
        WsUrl => {
            let url = value
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| deny(format!("shellcage: {}.{key}.url is missing", ev.tool)))?;
            check_url(ev, cx, key, url)
        }
    }
}

/// The host paths `raw` may touch, or a denial naming the problem.
fn resolved(ev: &Event, cx: &Context<'_>, key: &str, raw: &str) -> Result<Vec<PathBuf>, Answer> {
    let cwd = match (&ev.cwd, raw.starts_with('/') || raw.starts_with('~')) {
        (Some(c), _) => c.clone(),
        (None, true) => PathBuf::from("/"),
        (None, false) => {
            return Err(deny(format!(
                "shellcage: {}.{key} {raw:?} is relative and the event has no cwd; refusing the call",
                ev.tool
            )));
        }
    };
    explain::resolve(raw, &cwd, cx.home)
        .map(|r| r.candidates)
        .map_err(|e| {
            deny(format!(
                "shellcage: {}.{key}: {e}; refusing the call",
                ev.tool
            ))
        })
}

/// Deny unless every reading of `raw` is readable (or writable) inside.
fn check_path(
    ev: &Event,
    cx: &Context<'_>,
    key: &str,
    raw: &str,
    want: ViewAccess,
) -> Result<(), Answer> {
    for p in resolved(ev, cx, key, raw)? {
        overlay_write(ev, cx, &p, want)?;
        if let Some(allowed) = claude_file(ev, cx.claude, &p) {
            if want == ViewAccess::Read || allowed == ViewAccess::Write {
                continue;
            }
        }
        let f = cx.judge.path(&p);
        let ok = match want {
            ViewAccess::Read => f.verdict.readable(),
            ViewAccess::Write => f.verdict.writable(),
        } && !f.is_env_file();
        if !ok {
            let verb = if want == ViewAccess::Read {
                "reading"
            } else {
                "writing"
            };
            let rule = cx.judge.describe(&f);
            return Err(deny(format!(
                "shellcage: {} refused, {verb} {}: {rule}; {}",
                ev.tool,
                p.display(),
                retry_hint(&rule)
            )));
        }
    }
    Ok(())
}

/// An overlay workspace: Claude Code's file tools run outside the sandbox, so
/// their writes would reach the host workspace behind the layer's back.
fn overlay_write(ev: &Event, cx: &Context<'_>, p: &Path, want: ViewAccess) -> Result<(), Answer> {
    let view = &cx.judge.view;
    match &view.workspace_layer {
        Some(layer) if want == ViewAccess::Write && p.starts_with(&view.workspace) => {
            Err(deny(format!(
                "shellcage: {} refused, writing {}: the workspace is an overlay (layer {layer:?}): the agent's writes go to the layer and the host workspace changes only by `shellcage apply`, but this tool runs outside the sandbox and would write the host directly. Make the change with a shell command instead (it runs in the layer), or run the whole agent inside: `shellcage run --overlay -- claude` (its API host must be allowed through the network proxy).",
                ev.tool,
                p.display()
            )))
        }
        _ => Ok(()),
    }
}

/// Glob/Grep/LS root: it must be visible; Grep leaves out hidden files.
fn search_root(
    ev: &Event,
    cx: &Context<'_>,
    raw: Option<&str>,
    updated: &mut Map<String, Value>,
    changed: &mut bool,
) -> Result<(), Answer> {
    let raw = raw.unwrap_or(".");
    check_path(ev, cx, "path", raw, ViewAccess::Read)?;
    if ev.tool != "Grep" {
        return Ok(());
    }
    for root in resolved(ev, cx, "path", raw)? {
        if !root.is_dir() {
            continue;
        }
        let globs = cx.judge.excluded_below(&root).map_err(|f| {
            deny(format!(
                "shellcage: Grep over {} refused: the sandbox shows it only in part ({}); search a narrower directory",
                root.display(),
                cx.judge.describe(&f)
            ))
        })?;
        if globs.is_empty() {
            continue;
        }
        let mut glob = ev
            .input
            .get("glob")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_string();
        for g in globs {
            if !glob.split_whitespace().any(|w| w == g) {
                if !glob.is_empty() {
                    glob.push(' ');
                }
                glob.push_str(&g);
            }
        }
        updated.insert("glob".into(), Value::String(glob));
        *changed = true;
    }
    Ok(())
}

/// Glob's pattern may start with fixed directories (`/etc/*`, `../x/**`):
/// the search starts there, so that is judged as the root too.
fn glob_pattern(ev: &Event, cx: &Context<'_>, pattern: &str) -> Result<(), Answer> {
    let fixed: Vec<&str> = pattern
        .split('/')
        .take_while(|c| !c.contains(['*', '?', '[', '{']))
        .collect();
    let fixed = fixed.join("/");
    if fixed.is_empty() && !pattern.starts_with('/') {
        return Ok(());
    }
    let base = ev
        .input
        .get("path")
        .and_then(Value::as_str)
        .map(|p| p.trim_end_matches('/').to_string());
    let joined = match base {
        Some(b) if !fixed.starts_with('/') && !fixed.starts_with('~') => format!("{b}/{fixed}"),
        _ if fixed.is_empty() => "/".into(),
        _ => fixed,
    };
    check_path(ev, cx, "pattern", &joined, ViewAccess::Read)
}

fn check_url(ev: &Event, cx: &Context<'_>, key: &str, url: &str) -> Result<(), Answer> {
    let Some(host) = url_host(url) else {
        return Err(deny(format!(
            "shellcage: {}.{key} {url:?} has no host shellcage can judge; refusing the call",
            ev.tool
        )));
    };
    let f = cx.judge.host_from_outside(&host);
    if f.verdict == Verdict::Allowed {
        return Ok(());
    }
    Err(deny(format!(
        "shellcage: {} refused, connecting to {host}: {}; Claude Code would connect from outside the sandbox, which the profile does not allow; {RETRY}",
        ev.tool,
        cx.judge.describe(&f)
    )))
}

/// A field we do not know: if it (or anything inside it) looks like a path,
/// judge it as a write, since we cannot tell what the tool does with it.
fn unknown_field(ev: &Event, cx: &Context<'_>, key: &str, value: &Value) -> Result<(), Answer> {
    let mut found = Vec::new();
    path_like(key, value, &mut found, 0);
    for raw in found {
        match check_path(ev, cx, key, &raw, ViewAccess::Write) {
            Ok(()) => {}
            Err(Answer::Json(mut v)) => {
                let reason = &mut v["hookSpecificOutput"]["permissionDecisionReason"];
                if let Some(r) = reason.as_str() {
                    *reason = Value::String(format!(
                        "{r} (shellcage does not know what {} does with its field {key:?}, so it allows a path there only where the sandbox could write)",
                        ev.tool
                    ));
                }
                return Err(Answer::Json(v));
            }
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

/// Strings that look like paths: any string under a path-ish key, or one
/// that starts like a path.
fn path_like(key: &str, value: &Value, out: &mut Vec<String>, level: usize) {
    if level > 16 {
        out.push("/".into()); // absurdly deep: judged, and refused
        return;
    }
    match value {
        Value::String(s) => {
            let k = key.to_ascii_lowercase();
            let by_key = ["path", "file", "dir", "cwd", "root", "folder"]
                .iter()
                .any(|w| k.contains(w));
            let by_value =
                ["/", "~/", "./", "../"].iter().any(|p| s.starts_with(p)) || s == "~" || s == "..";
            if (by_key || by_value) && !s.is_empty() && !s.contains('\n') {
                out.push(s.clone());
            }
        }
        Value::Array(a) => a.iter().for_each(|v| path_like(key, v, out, level + 1)),
        Value::Object(o) => o.iter().for_each(|(k, v)| path_like(k, v, out, level + 1)),
        _ => {}
    }
}

/// Claude Code's own files: tool results it saved for this session, its
/// task output and memory (read), its plan files (read and write).
fn claude_file(ev: &Event, files: &ClaudeFiles, p: &Path) -> Option<ViewAccess> {
    // Plan files: Markdown that Claude Code shows the user for approval.
    if p.parent() == Some(files.config.join("plans").as_path())
        && p.extension().is_some_and(|e| e == "md")
    {
        return Some(ViewAccess::Write);
    }
    let session = ev
        .session_id
        .as_deref()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))?;
    let projects = files.config.join("projects");
    if let Some(dir) = ev
        .transcript_path
        .as_deref()
        .and_then(Path::parent)
        .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf()))
        .filter(|d| d.parent() == Some(projects.as_path()))
    {
        if p.starts_with(dir.join(session)) || p.starts_with(dir.join("memory")) {
            return Some(ViewAccess::Read);
        }
    }
    let tasks = files.tmp.join(format!("claude-{}", files.uid));
    let rel = p.strip_prefix(&tasks).ok()?;
    let mut comps = rel.components();
    let (_project, s) = (comps.next()?, comps.next()?);
    (s.as_os_str() == session).then_some(ViewAccess::Read)
}

// ---------------------------------------------------------------------------
// PostToolUse / PostToolUseFailure: tell the model it was the sandbox.

/// Output lines worth reading for paths: the errors a sandboxed command sees.
const PATH_ERRORS: [&str; 7] = [
    "no such file or directory",
    "permission denied",
    "read-only file system",
    "operation not permitted",
    "cannot open",
    "not found",
    "cannot access",
];
const WRITE_ERRORS: [&str; 3] = [
    "permission denied",
    "read-only file system",
    "operation not permitted",
];
const NET_ERRORS: [&str; 10] = [
    "resolve",
    "name resolution",
    "network is unreachable",
    "connection refused",
    "could not connect",
    "failed to connect",
    "getaddrinfo",
    "enotfound",
    "eai_again",
    "enetunreach",
];

/// Most items in the one context line.
const MAX_ITEMS: usize = 3;

fn post_tool_use(ev: &Event, cx: &Context<'_>) -> Answer {
    if !matches!(ev.tool.as_str(), "Bash" | "Monitor") {
        return Answer::Pass;
    }
    let mut text = String::new();
    if let Some(r) = &ev.response {
        for k in ["stdout", "stderr"] {
            if let Some(s) = r.get(k).and_then(Value::as_str) {
                text.push_str(s);
                text.push('\n');
            }
        }
    }
    if let Some(e) = &ev.error {
        text.push_str(e);
    }
    let items = sandbox_findings(&text, ev, cx);
    if items.is_empty() {
        return Answer::Pass;
    }
    let line = format!(
        "shellcage: this command ran in a sandbox, and its policy (profile {:?}) is why: {}. Retrying or rephrasing will not help, the kernel refuses it however the command is written; tell the user, who can change the profile (`shellcage explain PATH` names the rule) or run the step outside the sandbox.",
        cx.judge.view.profile,
        items.join("; ")
    );
    Answer::Json(json!({
        "hookSpecificOutput": {
            "hookEventName": ev.name,
            "additionalContext": line,
        }
    }))
}

/// `PATH is hidden (rule)` for each path or host in an error line that the
/// policy hides, protects, leaves out or refuses.
fn sandbox_findings(text: &str, ev: &Event, cx: &Context<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let cwd = ev
        .cwd
        .clone()
        .unwrap_or_else(|| cx.judge.view.workspace.clone());
    for line in text.lines().take(2000) {
        let lower = line.to_ascii_lowercase();
        if PATH_ERRORS.iter().any(|m| lower.contains(m)) {
            let write_error = WRITE_ERRORS.iter().any(|m| lower.contains(m));
            for tok in explain::path_tokens(line) {
                if let Some(item) = path_item(&tok, &cwd, write_error, cx) {
                    if !out.contains(&item) {
                        out.push(item);
                    }
                }
            }
        }
        if NET_ERRORS.iter().any(|m| lower.contains(m)) {
            for host in host_tokens(line) {
                let f = cx.judge.host(&host);
                if f.verdict == Verdict::Refused {
                    let item = format!("{host} is {}", refused_text(cx.judge, &f));
                    if !out.contains(&item) {
                        out.push(item);
                    }
                }
            }
        }
        if out.len() >= MAX_ITEMS {
            out.truncate(MAX_ITEMS);
            break;
        }
    }
    out
}

fn refused_text(j: &Judge<'_>, f: &Finding) -> String {
    format!("{} ({})", f.verdict.name(), j.rule_text(&f.rule))
}

fn path_item(tok: &str, cwd: &Path, write_error: bool, cx: &Context<'_>) -> Option<String> {
    explain::path_item(cx.judge, tok, cwd, cx.home, write_error)
}

/// Hosts named in a network error: URLs, `host='X'`, `host: X`, `hostname X`.
fn host_tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in line.split_whitespace() {
        let w = word.trim_matches(|c: char| "'\"`,;()[]<>".contains(c));
        if let Some(h) = url_host(w) {
            out.push(h);
        }
    }
    let lower = line.to_ascii_lowercase();
    for marker in ["host='", "host=\"", "host: ", "hostname ", "host "] {
        let mut rest = lower.as_str();
        while let Some(at) = rest.find(marker) {
            rest = &rest[at + marker.len()..];
            let h: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(*c))
                .collect();
            let h = match h.strip_prefix('[') {
                Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or_default()),
                None => h.split(':').next().unwrap_or_default().to_string(),
            };
            let h = h.trim_end_matches('.').to_string();
            if h.contains('.') && !out.contains(&h) {
                out.push(h);
            }
        }
    }
    out.truncate(8);
    out
}

#[cfg(test)]
mod tests;

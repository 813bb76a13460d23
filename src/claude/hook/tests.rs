//! The hook against real Claude Code 2.1.332 events (tests/fixtures) and the
//! built-in `dev` profile on a temporary home and workspace.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;
use crate::explain::{PolicyView, view_of};
use crate::profile::{LoadContext, load};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            "../../../tests/fixtures/claude-code/2.1.332/",
            $name
        ))
    };
}

const SESSION: &str = "772a0852-966e-45aa-94d1-29d736de66ff";

struct T {
    _dir: tempfile::TempDir,
    home: PathBuf,
    ws: PathBuf,
    view: PolicyView,
    files: ClaudeFiles,
}

fn setup() -> T {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let home = root.join("home");
    let ws = root.join("project");
    for d in [
        "home/.ssh",
        "home/.claude/plans",
        "project/.git/hooks",
        "project/sub",
        "project/a/b/c/d/e",
        "tmp",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(home.join(".ssh/id_ed25519"), "KEY").unwrap();
    std::fs::write(home.join(".bashrc"), "").unwrap();
    std::fs::write(ws.join(".env"), "A=1").unwrap();
    std::fs::write(ws.join("a/b/c/d/e/.env"), "B=2").unwrap();
    std::fs::write(ws.join("b.txt"), "edited").unwrap();
    let policy = load(
        "dev",
        &LoadContext {
            home: home.clone(),
            workspace: ws.clone(),
            user_dir: None,
        },
    )
    .unwrap();
    let view = view_of(&policy, &RunOpts::default());
    let files = ClaudeFiles {
        config: home.join(".claude"),
        tmp: root.join("tmp"),
        uid: 1000,
    };
    T {
        _dir: dir,
        home,
        ws,
        view,
        files,
    }
}

impl T {
    /// A fixture with the capture machine's paths replaced by ours.
    fn event(&self, text: &str) -> String {
        text.replace("/home/user/project", &self.ws.to_string_lossy())
            .replace("/home/user", &self.home.to_string_lossy())
    }

    fn run_with(&self, event: &str, rewrite_shell: bool) -> Answer {
        let judge = Judge::new(&self.view);
        let opts = RunOpts::default();
        let cx = Context {
            exe: Path::new("/opt/sc/shellcage"),
            opts: &opts,
            judge: &judge,
            home: &self.home,
            rewrite_shell,
            claude: &self.files,
        };
        match parse_event(event.as_bytes()) {
            Ok(ev) => answer(&ev, &cx),
            Err(e) => Answer::Block(e),
        }
    }

    fn run(&self, event: &str) -> Answer {
        self.run_with(event, true)
    }

    /// A PreToolUse event for `tool` with `input`, cwd = the workspace.
    fn pre(&self, tool: &str, input: Value) -> String {
        json!({
            "session_id": SESSION,
            "transcript_path": self.home.join(format!(".claude/projects/-p/{SESSION}.jsonl")),
            "cwd": self.ws,
            "permission_mode": "default",
            "hook_event_name": "PreToolUse",
            "tool_name": tool,
            "tool_input": input,
            "tool_use_id": "toolu_1"
        })
        .to_string()
    }
}

fn denial(a: &Answer) -> Option<String> {
    match a {
        Answer::Json(v) if v["hookSpecificOutput"]["permissionDecision"] == "deny" => Some(
            v["hookSpecificOutput"]["permissionDecisionReason"]
                .as_str()
                .unwrap()
                .to_string(),
        ),
        _ => None,
    }
}

fn updated(a: &Answer) -> &Value {
    match a {
        Answer::Json(v) => &v["hookSpecificOutput"]["updatedInput"],
        other => panic!("expected updatedInput, got {other:?}"),
    }
}

#[test]
fn every_tool_field_of_the_package_is_known() {
    // Schema drift in a new Claude Code shows up here: a field we do not know
    // would be judged as a path, a tool we do not know scanned for paths.
    for text in [fixture!("tools.json"), fixture!("tools-default.json")] {
        let tools: Vec<Value> = serde_json::from_str(text).unwrap();
        for t in tools {
            let name = t["name"].as_str().unwrap();
            let fields = TOOLS
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("tool {name} is not in TOOLS"))
                .1;
            let props = t["input_schema"]["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for key in props.keys() {
                assert!(
                    fields.iter().any(|(k, _)| k == key),
                    "{name}.{key} is not in TOOLS"
                );
            }
        }
    }
}

#[test]
fn real_events_of_each_tool() {
    let t = setup();
    std::fs::write(t.ws.join("nb.ipynb"), "{}").unwrap();
    // Bash and Monitor: rewritten into the sandbox, other fields kept.
    let a = t.run(&t.event(fixture!("pre-Bash.json")));
    let ui = updated(&a);
    assert_eq!(
        ui["command"],
        format!(
            "'/opt/sc/shellcage' sh --workspace '{}' -c 'cat ~/.ssh/id_ed25519'",
            t.ws.display()
        )
    );
    assert_eq!(ui["description"], "Show the key");
    let a = t.run(&t.event(fixture!("pre-Monitor.json")));
    assert!(
        updated(&a)["command"]
            .as_str()
            .unwrap()
            .contains(" sh --workspace ")
    );
    assert_eq!(updated(&a)["timeout_ms"], 2000);
    // In prefix mode the shell tools pass untouched.
    assert_eq!(
        t.run_with(&t.event(fixture!("pre-Bash.json")), false),
        Answer::Pass
    );
    // File tools in the workspace pass.
    for f in [
        fixture!("pre-Read.json"),
        fixture!("pre-Edit.json"),
        fixture!("pre-NotebookEdit.json"),
        fixture!("pre-Glob.json"),
        fixture!("pre-WebSearch.json"),
    ] {
        assert_eq!(t.run(&t.event(f)), Answer::Pass, "{f}");
    }
    // Write .git/hooks/pre-commit: protected.
    let reason = denial(&t.run(&t.event(fixture!("pre-Write.json")))).unwrap();
    assert!(
        reason.contains("protected: filesystem.protect \".git/hooks\""),
        "{reason}"
    );
    assert!(reason.contains("retrying"), "{reason}");
    // Grep (relative path "sub"): passes with the .env files left out.
    let a = t.run(&t.event(fixture!("pre-Grep.json")));
    assert_eq!(updated(&a)["glob"], "*.txt !.env !.env.*");
    assert_eq!(updated(&a)["path"], "sub");
    // WebFetch with no network.
    let reason = denial(&t.run(&t.event(fixture!("pre-WebFetch.json")))).unwrap();
    assert!(
        reason.contains("example.com") && reason.contains("no network inside"),
        "{reason}"
    );
}

#[test]
fn reads_resolve_like_the_kernel() {
    let t = setup();
    symlink(t.home.join(".ssh"), t.ws.join("keys")).unwrap();
    let read = |p: &str| t.run(&t.pre("Read", json!({"file_path": p})));
    let key = denial(&read("~/.ssh/id_ed25519")).unwrap();
    assert!(
        key.contains("hidden: filesystem.hide \"~/.ssh\" (profiles/dev.toml (built-in):"),
        "{key}"
    );
    assert!(denial(&read("keys/id_ed25519")).unwrap().contains("hidden"));
    assert!(denial(&read("sub/../keys/../.ssh/id_ed25519")).is_some());
    assert!(denial(&read("../../../../../../../etc/shadow")).is_some());
    assert!(denial(&read(".env")).unwrap().contains(".env file"));
    assert!(
        denial(&read("a/b/c/d/e/f/g/.env"))
            .unwrap()
            .contains(".env file in the workspace")
    );
    assert!(
        denial(&read("node_modules/x/.env"))
            .unwrap()
            .contains("NOT masked")
    );
    assert!(
        denial(&read("/tmp/elsewhere.txt"))
            .unwrap()
            .contains("own empty /tmp")
    );
    assert!(
        denial(&read("~/.bashrc"))
            .unwrap()
            .contains("own empty home")
    );
    assert!(
        denial(&read("/proc/self/environ"))
            .unwrap()
            .contains("/proc")
    );
    assert!(denial(&read("~root/x")).unwrap().contains("~user"));
    assert_eq!(read("/etc/passwd"), Answer::Pass);
    assert_eq!(read("b.txt"), Answer::Pass);
    assert_eq!(read(".env.example"), Answer::Pass);
}

#[test]
fn writes_only_where_the_sandbox_could() {
    let t = setup();
    symlink("/etc/passwd", t.ws.join("passwd-link")).unwrap();
    let write = |p: &str| t.run(&t.pre("Write", json!({"file_path": p, "content": "x"})));
    assert_eq!(write("src/new.rs"), Answer::Pass);
    for (p, why) in [
        (".env", ".env file"),
        (".env.production", ".env file"),
        ("a/b/c/d/e/.env", ".env file"),
        (".claude/settings.json", "\".claude\""),
        (".git/config", "\".git/config\""),
        (".git/hooks/pre-commit", "\".git/hooks\""),
        (".mcp.json", "\".mcp.json\""),
        ("~/.bashrc", "own empty home"),
        ("/tmp/x", "own empty /tmp"),
        ("/etc/hosts", "read-only"),
        ("passwd-link", "read-only"),
        ("/srv/x", "not listed"),
    ] {
        let reason = denial(&write(p)).unwrap_or_else(|| panic!("{p} allowed"));
        assert!(reason.contains(why), "{p}: {reason}");
    }
    let edit = t.pre(
        "Edit",
        json!({"file_path": t.ws.join(".claude/settings.json"), "old_string": "a", "new_string": "b"}),
    );
    assert!(denial(&t.run(&edit)).is_some());
    let nb = t.pre(
        "NotebookEdit",
        json!({"notebook_path": "~/nb.ipynb", "new_source": "x"}),
    );
    assert!(denial(&t.run(&nb)).is_some());
    let old = t.pre("MultiEdit", json!({"file_path": ".envrc", "edits": []}));
    assert!(denial(&t.run(&old)).is_some());
}

#[test]
fn file_tools_are_denied_in_an_overlay_workspace() {
    let mut t = setup();
    t.view.workspace_layer = Some("default".into());
    let reason_of = |tool: &str, input: Value| denial(&t.run(&t.pre(tool, input)));
    for (tool, input) in [
        ("Write", json!({"file_path": "src/new.rs", "content": "x"})),
        (
            "Edit",
            json!({"file_path": t.ws.join("b.txt"), "old_string": "e", "new_string": "f"}),
        ),
        ("MultiEdit", json!({"file_path": "b.txt", "edits": []})),
        (
            "NotebookEdit",
            json!({"notebook_path": "nb.ipynb", "new_source": "x"}),
        ),
    ] {
        let reason = reason_of(tool, input).unwrap_or_else(|| panic!("{tool} allowed"));
        assert!(
            reason.contains("overlay")
                && reason.contains("shellcage apply")
                && reason.contains("shellcage run --overlay -- claude"),
            "{tool}: {reason}"
        );
    }
    // Control: reading the workspace, and Claude Code's own files, still pass.
    assert_eq!(
        t.run(&t.pre("Read", json!({"file_path": "b.txt"}))),
        Answer::Pass
    );
    let plan = t.home.join(".claude/plans/p.md");
    assert_eq!(
        t.run(&t.pre("Write", json!({"file_path": plan, "content": "x"}))),
        Answer::Pass
    );
}

#[test]
fn claude_codes_own_files() {
    let t = setup();
    let c = &t.files.config;
    let session_dir = c.join(format!("projects/-p/{SESSION}/tool-results"));
    std::fs::create_dir_all(&session_dir).unwrap();
    let read = |p: &Path| t.run(&t.pre("Read", json!({"file_path": p})));
    assert_eq!(read(&session_dir.join("out.txt")), Answer::Pass);
    assert_eq!(read(&c.join("projects/-p/memory/MEMORY.md")), Answer::Pass);
    assert!(denial(&read(&c.join("projects/-p/other-session/x"))).is_some());
    assert!(denial(&read(&c.join("settings.json"))).is_some());
    let task = t
        .files
        .tmp
        .join(format!("claude-1000/-p/{SESSION}/tasks/b1.output"));
    assert_eq!(read(&task), Answer::Pass);
    let other = t.files.tmp.join("claude-1000/-p/another/tasks/b1.output");
    assert!(denial(&read(&other)).is_some());
    let write = |p: &Path| t.run(&t.pre("Write", json!({"file_path": p, "content": "x"})));
    assert_eq!(write(&c.join("plans/plan.md")), Answer::Pass);
    assert!(denial(&write(&c.join("plans/evil.sh"))).is_some());
    assert!(denial(&write(&c.join("projects/-p/memory/MEMORY.md"))).is_some());
    assert!(denial(&write(&session_dir.join("out.txt"))).is_some());
    assert!(denial(&write(&c.join("settings.json"))).is_some());
}

#[test]
fn searches() {
    let t = setup();
    let grep = |input: Value| t.run(&t.pre("Grep", input));
    let a = grep(json!({"pattern": "x"}));
    assert_eq!(updated(&a)["glob"], "!.env !.env.*");
    let a = grep(json!({"pattern": "x", "glob": "{a,b}.rs !.env"}));
    assert_eq!(updated(&a)["glob"], "{a,b}.rs !.env !.env.*");
    let a = grep(json!({"pattern": "x", "path": "/etc"}));
    let g = updated(&a)["glob"].as_str().unwrap().to_string();
    assert!(g.contains("!shadow") && g.contains("!*key*"), "{g}");
    assert_eq!(grep(json!({"pattern": "x", "path": "/usr"})), Answer::Pass);
    assert!(denial(&grep(json!({"pattern": "x", "path": "/"}))).is_some());
    assert!(denial(&grep(json!({"pattern": "x", "path": "~"}))).is_some());
    assert!(denial(&grep(json!({"pattern": "x", "path": ".env"}))).is_some());
    let glob = |input: Value| t.run(&t.pre("Glob", input));
    assert_eq!(glob(json!({"pattern": "**/*.rs"})), Answer::Pass);
    assert!(denial(&glob(json!({"pattern": "~/.ssh/*"}))).is_some());
    assert!(denial(&glob(json!({"pattern": "/tmp/**"}))).is_some());
    assert!(denial(&glob(json!({"pattern": "../../**", "path": "sub"}))).is_some());
    assert!(denial(&glob(json!({"pattern": "*", "path": "~/.ssh"}))).is_some());
    assert_eq!(glob(json!({"pattern": "/etc/*.conf"})), Answer::Pass);
}

#[test]
fn unknown_tools_and_fields_fail_closed() {
    let t = setup();
    let mcp = |input: Value| t.run(&t.pre("mcp__fs__read_file", input));
    let r = denial(&mcp(json!({"path": "~/.ssh/id_ed25519"}))).unwrap();
    assert!(
        r.contains("does not know what mcp__fs__read_file does"),
        "{r}"
    );
    assert!(
        denial(&mcp(json!({"target": "/etc/passwd"}))).is_some(),
        "by value"
    );
    assert!(denial(&mcp(json!({"opts": {"files": ["ok.txt", "/etc/hosts"]}}))).is_some());
    assert_eq!(
        mcp(json!({"path": "src/lib.rs", "query": "/not a path\nreally"})),
        Answer::Pass
    );
    assert_eq!(mcp(json!({"query": "hello"})), Answer::Pass);
    // Known tools: free text is not a path; an unexpected field is.
    let agent = t.pre(
        "Agent",
        json!({"description": "d", "prompt": "/review the code"}),
    );
    assert_eq!(t.run(&agent), Answer::Pass);
    let read = t.pre(
        "Read",
        json!({"file_path": "b.txt", "extra_path": "/etc/hosts"}),
    );
    assert!(denial(&t.run(&read)).is_some());
    // Malformed: a denial or a block, never a pass.
    let bad = t.pre("Read", json!({"file_path": 7}));
    assert!(matches!(t.run(&bad), Answer::Block(r) if r.contains("not a string")));
    let bad = t.pre("Bash", json!({"cmd": "id"}));
    assert!(matches!(t.run(&bad), Answer::Block(_)));
    let bad = t.pre("Glob", json!({"pattern": "*", "path": 3}));
    assert!(denial(&t.run(&bad)).unwrap().contains("not a string"));
    let bad = t.pre("Bash", json!({"command": "a\u{0}b"}));
    assert!(matches!(t.run(&bad), Answer::Block(_)));
    let no_cwd =
        r#"{"hook_event_name":"PreToolUse","tool_name":"Read","tool_input":{"file_path":"b.txt"}}"#;
    assert!(denial(&t.run(no_cwd)).unwrap().contains("no cwd"));
    for bad in [
        "",
        "[]",
        r#"{"hook_event_name":"Stop","tool_name":"Bash","tool_input":{}}"#,
        r#"{"hook_event_name":"PreToolUse","tool_input":{}}"#,
        r#"{"hook_event_name":"PreToolUse","tool_name":"Read","tool_input":"x"}"#,
    ] {
        assert!(matches!(t.run(bad), Answer::Block(_)), "{bad}");
    }
    let ws = t.pre(
        "Monitor",
        json!({"description": "d", "timeout_ms": 1, "ws": {"url": "wss://example.org/x"}}),
    );
    assert!(denial(&t.run(&ws)).unwrap().contains("example.org"));
}

fn context(a: &Answer) -> Option<String> {
    match a {
        Answer::Json(v) => v["hookSpecificOutput"]["additionalContext"]
            .as_str()
            .map(String::from),
        _ => None,
    }
}

#[test]
fn post_tool_use_says_it_was_the_sandbox() {
    let t = setup();
    // The real failure event: `cat ~/.ssh/id_ed25519` → No such file.
    let a = t.run(&t.event(fixture!("post-failure-Bash.json")));
    let line = context(&a).expect("context line");
    assert!(line.contains("id_ed25519 is hidden"), "{line}");
    assert!(line.contains("\"~/.ssh\""), "{line}");
    assert!(line.contains("Retrying") && !line.contains('\n'), "{line}");
    match &a {
        Answer::Json(v) => assert_eq!(
            v["hookSpecificOutput"]["hookEventName"],
            "PostToolUseFailure"
        ),
        _ => unreachable!(),
    }
    assert_eq!(t.run(&t.event(fixture!("post-Bash.json"))), Answer::Pass);
    assert_eq!(t.run(&t.event(fixture!("post-Monitor.json"))), Answer::Pass);
    let post = |stdout: &str, stderr: &str| {
        let ev = json!({
            "session_id": SESSION, "cwd": t.ws, "hook_event_name": "PostToolUse",
            "tool_name": "Bash", "tool_input": {"command": "x"},
            "tool_response": {"stdout": stdout, "stderr": stderr, "interrupted": false},
        });
        context(&t.run(&ev.to_string()))
    };
    let l = post("", "bash: .git/hooks/pre-commit: Read-only file system").unwrap();
    assert!(l.contains("pre-commit is protected"), "{l}");
    let l = post("curl: (6) Could not resolve host: registry.example.org", "").unwrap();
    assert!(l.contains("registry.example.org is refused"), "{l}");
    let l = post("", "cat: .env: No such file or directory").unwrap();
    assert!(l.contains(".env is hidden"), "{l}");
    // Not the sandbox: the file does not exist on the host either, or is visible.
    assert_eq!(
        post("", "cat: /home/nobody/missing: No such file or directory"),
        None
    );
    assert_eq!(post("", "cat: b.txt: Permission denied"), None);
    assert_eq!(post("ls ~/.ssh: fine", ""), None, "no error on the line");
    // Other tools' results are not looked at.
    let ev = json!({"cwd": t.ws, "hook_event_name": "PostToolUse", "tool_name": "Read",
        "tool_input": {"file_path": "x"}, "tool_response": {"stderr": "cat: .env: No such file"}});
    assert_eq!(t.run(&ev.to_string()), Answer::Pass);
}

#[test]
fn url_hosts() {
    assert_eq!(
        url_host("https://Example.com/x?y"),
        Some("example.com".into())
    );
    assert_eq!(
        url_host("http://u:p@h.example:8080/"),
        Some("h.example".into())
    );
    assert_eq!(url_host("http://[::1]:80/"), Some("[::1]".into()));
    assert_eq!(url_host("wss://a.b"), Some("a.b".into()));
    assert_eq!(url_host("example.com"), None);
    assert_eq!(url_host("http:///x"), None);
    assert_eq!(url_host("://x"), None);
}

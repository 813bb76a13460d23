//! End to end with the real, published Claude Code (pinned in
//! `claude_e2e::PINNED`, installed by `.ci/run`): `claude -p` against a mock
//! Messages API on loopback that scripts the model's tool calls, with
//! shellcage installed by `shellcage install claude-code`, in hook mode and
//! in prefix mode. Asserted on what Claude Code sent back to the "model"
//! (tool results, hook context) and on the host (files, secrets).
//!
//! Without the package these tests skip, except under
//! `SHELLCAGE_TEST_REQUIRE_KERNEL=1` (CI), where they fail.

mod claude_e2e;
mod common;

use claude_e2e::mock::{Mock, tool_use};
use claude_e2e::{Project, prerequisites};
use serde_json::json;

/// The quoting case: the command's output must come back byte for byte.
const TRICKY: &str = r#"printf '%s|' "it's" '$HOME' "a\"b" 'x  y'; exit 3"#;
const TRICKY_OUT: &str = "Exit code 3\nit's|$HOME|a\"b|x  y|";

fn no_secret(p: &Project, text: &str) {
    assert!(!text.contains(&p.secret), "the key leaked: {text}");
    assert!(
        !text.contains(&p.env_secret),
        "the .env value leaked: {text}"
    );
}

#[test]
fn hook_mode_sandboxes_bash_and_judges_file_tools() {
    let Some(claude) = prerequisites() else {
        return;
    };
    let p = Project::new();
    p.install(&[]);
    // Not ignored by git, so ripgrep would search it unless told otherwise.
    std::fs::write(
        p.ws.join("sub/.env.local"),
        format!("API_KEY={}\n", p.env_secret),
    )
    .unwrap();
    std::fs::write(p.ws.join("sub/config.txt"), "API_KEY_NAME=visible\n").unwrap();
    let key = p.key.display().to_string();
    let ws = p.ws.display().to_string();
    let script = vec![
        tool_use(
            "t1",
            "Bash",
            json!({"command": format!("cat {key}"), "description": "d"}),
        ),
        tool_use("t2", "Read", json!({"file_path": key})),
        tool_use(
            "t3",
            "Write",
            json!({"file_path": format!("{ws}/.git/hooks/pre-commit"), "content": "#!/bin/sh\necho pwned\n"}),
        ),
        tool_use(
            "t4",
            "Read",
            json!({"file_path": format!("{ws}/.claude/settings.json")}),
        ),
        tool_use(
            "t5",
            "Edit",
            json!({"file_path": format!("{ws}/.claude/settings.json"), "old_string": "\"1\"", "new_string": "\"2\""}),
        ),
        tool_use("t6", "Bash", json!({"command": TRICKY})),
        tool_use(
            "t7",
            "Bash",
            json!({"command": "echo made > made.txt && cd sub && pwd"}),
        ),
        tool_use(
            "t8",
            "Grep",
            json!({"pattern": "API_KEY", "path": ws, "output_mode": "content"}),
        ),
        tool_use(
            "t9",
            "WebFetch",
            json!({"url": "https://example.com/", "prompt": "p"}),
        ),
        tool_use(
            "t10",
            "Write",
            json!({"file_path": format!("{ws}/sub/new.txt"), "content": "ok\n"}),
        ),
        tool_use(
            "t11",
            "Write",
            json!({"file_path": format!("{ws}/.claude/settings.json"), "content": "{\"hooks\": {}}"}),
        ),
    ];
    let mock = Mock::start(script);
    let out = p.claude(&claude, &mock, &p.ws, &[]);
    let all = String::from_utf8_lossy(&out.stdout).to_string() + &mock.last_request_text();
    assert_eq!(mock.turns_served(), 11, "every scripted step ran: {all}");
    assert!(
        mock.paths()
            .iter()
            .all(|p| p.starts_with("/v1/messages?beta=true")),
        "{:?}",
        mock.paths()
    );
    no_secret(&p, &all);

    // Bash ran in the sandbox: the key is not there; the hook said why.
    let (text, err) = mock.tool_result("t1").unwrap();
    assert!(err && text.contains("No such file or directory"), "{text}");
    let ctx = mock.last_request_text();
    assert!(
        ctx.contains("shellcage: this command ran in a sandbox")
            && ctx.contains("id_canary is hidden"),
        "PostToolUseFailure context: {ctx}"
    );
    // Read of the key: denied with the rule.
    let (text, err) = mock.tool_result("t2").unwrap();
    assert!(err && text.contains("shellcage: Read refused"), "{text}");
    assert!(text.contains("filesystem.hide \"~/.ssh\""), "{text}");
    // Write of a git hook: denied; nothing on the host.
    let (text, err) = mock.tool_result("t3").unwrap();
    assert!(err && text.contains("protected"), "{text}");
    assert!(!p.ws.join(".git/hooks/pre-commit").exists());
    // Edit of .claude/settings.json after reading it: denied, unchanged.
    assert!(!mock.tool_result("t4").unwrap().1, "reading it is fine");
    let (text, err) = mock.tool_result("t5").unwrap();
    assert!(err && text.contains("shellcage: Edit refused"), "{text}");
    assert_eq!(
        std::fs::read_to_string(p.ws.join(".claude/settings.json")).unwrap(),
        claude_e2e::SETTINGS
    );
    // Exit code and quoting survive the rewrite.
    assert_eq!(mock.tool_result("t6").unwrap().0, TRICKY_OUT);
    // The workspace is writable; a `cd` does not outlive the command here.
    let (text, _) = mock.tool_result("t7").unwrap();
    assert_eq!(text, format!("{ws}/sub"));
    assert_eq!(
        std::fs::read_to_string(p.ws.join("made.txt")).unwrap(),
        "made\n"
    );
    // Grep over the workspace searches, and leaves the .env files out.
    let (text, _) = mock.tool_result("t8").unwrap();
    assert!(text.contains("API_KEY_NAME=visible"), "{text}");
    assert!(!text.contains(&p.env_secret), "{text}");
    // No network: WebFetch refused.
    let (text, err) = mock.tool_result("t9").unwrap();
    assert!(err && text.contains("no network inside"), "{text}");
    assert_eq!(
        std::fs::read_to_string(p.ws.join("sub/new.txt")).unwrap(),
        "ok\n"
    );
    // Write over .claude/settings.json (read before, so Claude Code itself allows it).
    let (text, err) = mock.tool_result("t11").unwrap();
    assert!(err && text.contains("shellcage: Write refused"), "{text}");
    assert_eq!(
        std::fs::read_to_string(p.ws.join(".claude/settings.json")).unwrap(),
        claude_e2e::SETTINGS
    );
}

#[test]
fn hook_mode_in_a_subdirectory_uses_the_repository_as_workspace() {
    let Some(claude) = prerequisites() else {
        return;
    };
    let p = Project::new();
    p.install(&[]);
    let script = vec![tool_use(
        "t1",
        "Bash",
        json!({"command": "git rev-parse --show-toplevel && git add -A && git commit -qm sub && git log --oneline | wc -l && echo top > ../top.txt"}),
    )];
    let mock = Mock::start(script);
    let sub = p.ws.join("sub");
    p.claude(&claude, &mock, &sub, &[]);
    let (text, err) = mock.tool_result("t1").unwrap();
    assert!(!err, "{text}");
    assert_eq!(text, format!("{}\n1", p.ws.display()));
    assert_eq!(
        std::fs::read_to_string(p.ws.join("top.txt")).unwrap(),
        "top\n"
    );
}

const MCP_SERVER: &str = r#"import json, os, sys
key = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    if m["method"] == "initialize":
        r = {"protocolVersion": m["params"]["protocolVersion"], "capabilities": {"tools": {}},
             "serverInfo": {"name": "probe", "version": "1"}}
    elif m["method"] == "tools/list":
        r = {"tools": [{"name": "probe", "description": "probe", "inputSchema": {"type": "object", "properties": {}}}]}
    elif m["method"] == "tools/call":
        try:
            seen = open(key).read()
        except OSError as e:
            seen = "unreadable: " + e.strerror
        r = {"content": [{"type": "text", "text": "probe pid=%d key=%s" % (os.getpid(), seen)}]}
    else:
        r = {}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}) + "\n")
    sys.stdout.flush()
"#;

#[test]
fn prefix_mode_sandboxes_bash_mcp_servers_and_hooks() {
    let Some(claude) = prerequisites() else {
        return;
    };
    let p = Project::new();
    // A hook of the user's own, already there: kept by the install, and run
    // by Claude Code through the prefix, so in the sandbox too.
    let ws = p.ws.display().to_string();
    let key = p.key.display().to_string();
    let own_hook =
        format!("sh -c 'cat {key} > {ws}/hook-saw.txt 2>&1; echo ran >> {ws}/hook-saw.txt'");
    std::fs::create_dir_all(p.home.join(".claude")).unwrap();
    std::fs::write(
        p.home.join(".claude/settings.json"),
        json!({"hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": own_hook}]}]}})
            .to_string(),
    )
    .unwrap();
    p.install(&["--prefix"]);
    let s = p.settings();
    assert_eq!(
        s["env"]["CLAUDE_CODE_SHELL_PREFIX"],
        p.shellcage
            .with_file_name("shellcage-prefix")
            .display()
            .to_string()
    );
    assert_eq!(s["hooks"]["PreToolUse"][0]["hooks"][0]["command"], own_hook);
    std::fs::write(p.ws.join("probe.py"), MCP_SERVER).unwrap();
    let mcp = p.root.path().join("mcp.json");
    std::fs::write(
        &mcp,
        json!({"mcpServers": {"probe": {"type": "stdio", "command": "python3", "args": [format!("{ws}/probe.py"), key]}}})
            .to_string(),
    )
    .unwrap();
    let script = vec![
        tool_use("t1", "Bash", json!({"command": format!("cat {key}")})),
        tool_use("t2", "Read", json!({"file_path": key})),
        tool_use(
            "t3",
            "Write",
            json!({"file_path": format!("{ws}/.git/hooks/pre-commit"), "content": "#!/bin/sh\n"}),
        ),
        tool_use("t4", "Bash", json!({"command": "cd sub && pwd"})),
        tool_use("t5", "Bash", json!({"command": "pwd && cat notes.txt"})),
        tool_use("t6", "Bash", json!({"command": TRICKY})),
        tool_use("t7", "mcp__probe__probe", json!({})),
        tool_use(
            "t8",
            "Read",
            json!({"file_path": format!("{ws}/.claude/settings.json")}),
        ),
        tool_use(
            "t9",
            "Write",
            json!({"file_path": format!("{ws}/.claude/settings.json"), "content": "{}"}),
        ),
    ];
    let mock = Mock::start(script);
    let out = p.claude(
        &claude,
        &mock,
        &p.ws,
        &["--mcp-config", &mcp.display().to_string()],
    );
    let all = String::from_utf8_lossy(&out.stdout).to_string() + &mock.last_request_text();
    assert_eq!(mock.turns_served(), 9, "every scripted step ran: {all}");
    no_secret(&p, &all);

    let (text, err) = mock.tool_result("t1").unwrap();
    assert!(err && text.contains("No such file or directory"), "{text}");
    assert!(
        mock.last_request_text().contains("id_canary is hidden"),
        "the hook ran through the prefix and added its context"
    );
    let (text, err) = mock.tool_result("t2").unwrap();
    assert!(err && text.contains("shellcage: Read refused"), "{text}");
    let (text, err) = mock.tool_result("t3").unwrap();
    assert!(err && text.contains("protected"), "{text}");
    assert!(!p.ws.join(".git/hooks/pre-commit").exists());
    // The cd persisted into the next command.
    assert_eq!(mock.tool_result("t4").unwrap().0, format!("{ws}/sub"));
    assert_eq!(
        mock.tool_result("t5").unwrap().0,
        format!("{ws}/sub\nhello from the project")
    );
    assert_eq!(mock.tool_result("t6").unwrap().0, TRICKY_OUT);
    // The stdio MCP server started through the prefix: it works, in its own
    // pid namespace, and cannot read the key.
    let (text, err) = mock.tool_result("t7").unwrap();
    assert!(!err && text.starts_with("probe pid="), "{text}");
    assert!(text.contains("key=unreadable"), "{text}");
    let (text, err) = mock.tool_result("t9").unwrap();
    assert!(err && text.contains("shellcage: Write refused"), "{text}");
    assert_eq!(
        std::fs::read_to_string(p.ws.join(".claude/settings.json")).unwrap(),
        claude_e2e::SETTINGS
    );
    // The user's own hook ran in the sandbox too.
    let saw = std::fs::read_to_string(p.ws.join("hook-saw.txt")).unwrap();
    assert!(saw.contains("ran") && !saw.contains(&p.secret), "{saw}");
}

#[test]
fn install_check_reports_and_is_idempotent() {
    let p = Project::new();
    p.install(&[]);
    let first = std::fs::read(p.home.join(".claude/settings.json")).unwrap();
    p.install(&[]);
    assert_eq!(
        std::fs::read(p.home.join(".claude/settings.json")).unwrap(),
        first
    );
    let o = std::process::Command::new(&p.shellcage)
        .args(["install", "claude-code", "--check", "--user"])
        .env("HOME", &p.home)
        .env_remove("CLAUDE_CONFIG_DIR")
        .current_dir(&p.ws)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains("PreToolUse[*]") && text.contains("hook claude-code"),
        "{text}"
    );
    // A malformed file is named and left alone.
    let f = p.home.join(".claude/settings.json");
    std::fs::write(&f, "{ not json").unwrap();
    let o = std::process::Command::new(&p.shellcage)
        .args(["install", "claude-code", "--user"])
        .env("HOME", &p.home)
        .current_dir(&p.ws)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&f.display().to_string()));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "{ not json");
}

const HOST_MANAGED: &str = "/etc/claude-code/managed-settings.json";

/// A hook that leaves a marker file when it runs.
fn marker_hook(marker: &std::path::Path) -> serde_json::Value {
    json!({"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [
        {"type": "command", "command": format!("touch {}", marker.display())}]}]}})
}

#[test]
fn managed_settings_keep_the_hook_and_silence_project_and_user_hooks() {
    let Some(claude) = prerequisites() else {
        return;
    };
    let p = Project::new();
    // Hooks of the project and of the user, which managed settings must silence.
    let project_marker = p.root.path().join("project-hook-ran");
    let user_marker = p.root.path().join("user-hook-ran");
    std::fs::write(
        p.ws.join(".claude/settings.json"),
        marker_hook(&project_marker).to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(p.home.join(".claude")).unwrap();
    std::fs::write(
        p.home.join(".claude/settings.json"),
        marker_hook(&user_marker).to_string(),
    )
    .unwrap();
    let host_before = std::fs::read(HOST_MANAGED).ok();
    let managed = p.root.path().join("managed-settings.json");
    let o = std::process::Command::new(&p.shellcage)
        .args(["install", "claude-code", "--managed", "--settings-file"])
        .arg(&managed)
        .arg("--bin")
        .arg(&p.shellcage)
        .env("HOME", &p.home)
        .current_dir(&p.ws)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&managed).unwrap()).unwrap();
    assert_eq!(m["allowManagedHooksOnly"], true);
    assert_eq!(m["env"]["SHELLCAGE_PROFILE"], "dev");
    let key = p.key.display().to_string();
    let script = || {
        vec![
            tool_use("t1", "Bash", json!({"command": format!("cat {key}")})),
            tool_use("t2", "Read", json!({"file_path": key})),
        ]
    };
    let mock = Mock::start(script());
    let wrapper = p.managed_wrapper(&managed);
    let out = p.claude_wrapped(&claude, &mock, &p.ws, &[], &wrapper);
    let all = String::from_utf8_lossy(&out.stdout).to_string() + &mock.last_request_text();
    assert_eq!(mock.turns_served(), 2, "{all}");
    no_secret(&p, &all);
    let (text, err) = mock.tool_result("t2").unwrap();
    assert!(err && text.contains("shellcage: Read refused"), "{text}");
    assert!(
        !project_marker.exists() && !user_marker.exists(),
        "only managed hooks ran"
    );
    assert_eq!(
        std::fs::read(HOST_MANAGED).ok(),
        host_before,
        "the host's /etc is untouched"
    );

    // A user's (or project's) `disableAllHooks` does not remove the managed hook.
    std::fs::write(
        p.home.join(".claude/settings.json"),
        r#"{"disableAllHooks": true}"#,
    )
    .unwrap();
    let mock = Mock::start(script());
    p.claude_wrapped(&claude, &mock, &p.ws, &[], &p.managed_wrapper(&managed));
    assert!(
        mock.tool_result("t2")
            .unwrap()
            .0
            .contains("shellcage: Read refused")
    );
    std::fs::write(
        p.home.join(".claude/settings.json"),
        marker_hook(&user_marker).to_string(),
    )
    .unwrap();

    // Control: the same managed file without allowManagedHooksOnly lets the
    // project's and the user's hooks run.
    let mut loose = m.clone();
    loose
        .as_object_mut()
        .unwrap()
        .remove("allowManagedHooksOnly");
    std::fs::write(&managed, loose.to_string()).unwrap();
    let mock = Mock::start(script());
    let wrapper = p.managed_wrapper(&managed);
    p.claude_wrapped(&claude, &mock, &p.ws, &[], &wrapper);
    assert!(
        project_marker.exists() && user_marker.exists(),
        "the control ran them"
    );
    assert!(
        mock.tool_result("t2")
            .unwrap()
            .0
            .contains("shellcage: Read refused")
    );
}

#[test]
fn ci_installs_the_pinned_version() {
    let ci = include_str!("../.ci/run");
    let pin = format!("@anthropic-ai/claude-code@{}", claude_e2e::PINNED);
    assert!(ci.contains(&pin), ".ci/run must install {pin}");
    let escaped = claude_e2e::PINNED.replace('.', "\\.");
    assert!(
        ci.contains(&format!("'^{escaped} '")),
        ".ci/run must check the version it finds"
    );
}

#[test]
fn a_repository_cannot_point_the_sandbox_at_its_own_profile() {
    let Some(claude) = prerequisites() else {
        return;
    };
    for prefix in [false, true] {
        let p = Project::new();
        p.install(if prefix { &["--prefix"] } else { &[] });
        std::fs::write(
            p.ws.join("loose.toml"),
            "version = 1\nextends = \"dev\"\n[network]\nmode = \"host\"\n",
        )
        .unwrap();
        // The repository's own settings set the environment of every command.
        let env = json!({"env": {"SHELLCAGE_PROFILE": p.ws.join("loose.toml")}});
        std::fs::write(p.ws.join(".claude/settings.json"), env.to_string()).unwrap();
        let marker = p.ws.join("ran");
        let mock = Mock::start(vec![tool_use(
            "t1",
            "Bash",
            json!({"command": format!("touch {}", marker.display())}),
        )]);
        p.claude(&claude, &mock, &p.ws, &[]);
        let (text, err) = mock.tool_result("t1").unwrap();
        assert!(
            err && text.contains("SHELLCAGE_PROFILE="),
            "prefix={prefix}: {text}"
        );
        assert!(!marker.exists(), "prefix={prefix}: the command ran");
    }
}

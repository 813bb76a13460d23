//! A day of real work (issue 13): tool settings in the environment reach the
//! real tools inside the sandbox, credentials in them do not.
#[macro_use]
mod common;
use common::*;

#[test]
fn tool_settings_reach_npm_and_credentials_do_not() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let c = canary();
    let cache = ws.path().join("npm-cache");
    let mut cmd = shellcage(
        Some(home.path()),
        &[
            "run",
            "--workspace",
            ws.path().to_str().unwrap(),
            "--report",
            "json",
            "--",
            "sh",
            "-c",
            "npm config get cache; npm config get fund; env",
        ],
    );
    cmd.current_dir(ws.path())
        .env("npm_config_cache", &cache)
        .env("npm_config_fund", "false")
        .env("PIP_FIND_LINKS", "/opt/wheels")
        .env("CARGO_TARGET_DIR", ws.path().join("tgt"))
        // Credentials in tool settings: by name, by npm key, by value.
        .env("NPM_CONFIG__AUTH", format!("{c}A"))
        .env("CARGO_REGISTRIES_CORP_TOKEN", format!("{c}B"))
        .env(
            "PIP_INDEX_URL",
            format!("https://user:{c}C@pypi.example.org/simple"),
        )
        .env("MAVEN_OPTS", format!("-Drepo.password={c}D"));
    let out = cmd.output().unwrap();
    expect_code(&out, 0);
    let text = stdout(&out);
    let mut lines = text.lines();
    // npm itself read both settings (today: dropped, npm shows its defaults).
    assert_eq!(lines.next(), Some(cache.to_str().unwrap()), "{text}");
    assert_eq!(lines.next(), Some("false"), "{text}");
    for want in [
        "PIP_FIND_LINKS=/opt/wheels".to_string(),
        format!("CARGO_TARGET_DIR={}", ws.path().join("tgt").display()),
    ] {
        assert!(text.lines().any(|l| l == want), "{want} missing:\n{text}");
    }
    // No credential inside, none in the report: names only.
    assert!(!text.contains(&c), "{text}");
    let err = stderr(&out);
    assert!(!err.contains(&c), "{err}");
    for name in [
        "NPM_CONFIG__AUTH",
        "CARGO_REGISTRIES_CORP_TOKEN",
        "PIP_INDEX_URL",
        "MAVEN_OPTS",
    ] {
        assert!(
            !text.contains(&format!("{name}=")),
            "{name} passed:\n{text}"
        );
        assert!(err.contains(name), "report does not name {name}:\n{err}");
    }
}

/// pyenv's pip hook rehashes after `pip install`; the shims are read-only in
/// the sandbox. shellcage puts its exec hook on PYENV_HOOK_PATH (a generated
/// read-only file), so pip is quiet and keeps its exit status; with the
/// variable emptied inside (the control), pyenv complains and the status is 1.
#[test]
fn pip_install_through_pyenv_is_quiet_and_succeeds() {
    needs_sandbox!();
    let root = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_default()
        .join(".pyenv");
    if !root.join("shims/pip").exists() {
        // As the unprivileged CI user the pyenv under /root is unreachable.
        assert!(
            !is_root() || !std::path::Path::new("/root/.pyenv").exists(),
            "pyenv must be usable as root"
        );
        eprintln!("SKIP: no pyenv with pip for this user");
        return;
    }
    let ws = Workspace::new();
    tiny_wheel(ws.path());
    let run = |prefix: &str| {
        let script = format!(
            "{prefix}pip install -q --no-index --find-links ./wheels --target ./t tinypkg-sc; echo rc=$?; test -f t/tinypkg_sc/__init__.py && echo installed; rm -rf t"
        );
        let mut c = shellcage(
            None,
            &[
                "run",
                "--workspace",
                ws.path().to_str().unwrap(),
                "--",
                "sh",
                "-c",
                &script,
            ],
        );
        c.current_dir(ws.path()).env(
            "PATH",
            format!(
                "{}:{}",
                root.join("shims").display(),
                std::env::var("PATH").unwrap()
            ),
        );
        c.output().unwrap()
    };
    let fixed = run("");
    expect_code(&fixed, 0);
    assert_eq!(stdout(&fixed), "rc=0\ninstalled\n", "{}", stderr(&fixed));
    assert!(!stderr(&fixed).contains("rehash"), "{}", stderr(&fixed));
    // The control: without the hook, pip installs but pyenv's wrapper
    // complains and fails.
    let control = run("PYENV_HOOK_PATH= ");
    assert_eq!(
        stdout(&control),
        "rc=1\ninstalled\n",
        "{}",
        stderr(&control)
    );
    assert!(
        stderr(&control).contains("cannot rehash"),
        "{}",
        stderr(&control)
    );
    // The shims were never writable.
    assert!(!root.join("shims/tinysc").exists());
}

/// A pure-Python wheel with one console script, built by hand (no network,
/// no build backend): ws/wheels/tinypkg_sc-0.1-py3-none-any.whl.
fn tiny_wheel(ws: &std::path::Path) -> std::path::PathBuf {
    let script = r#"
import base64, hashlib, sys, zipfile
files = {
    "tinypkg_sc/__init__.py": b"X = 1\n",
    "tinypkg_sc-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg-sc\nVersion: 0.1\n",
    "tinypkg_sc-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    "tinypkg_sc-0.1.dist-info/entry_points.txt": b"[console_scripts]\ntinysc = tinypkg_sc:X\n",
}
rows = []
for name, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    rows.append(f"{name},sha256={digest},{len(data)}")
rows.append("tinypkg_sc-0.1.dist-info/RECORD,,")
files["tinypkg_sc-0.1.dist-info/RECORD"] = ("\n".join(rows) + "\n").encode()
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
"#;
    std::fs::create_dir_all(ws.join("wheels")).unwrap();
    let out = ws.join("wheels/tinypkg_sc-0.1-py3-none-any.whl");
    let st = std::process::Command::new(PY)
        .args(["-c", script])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    out
}

/// Network mode none: the tools' retry loops only delay a failure that
/// cannot change. shellcage sets the no-network defaults where they are unset,
/// so cargo, pip and npm give up after the first failed lookup (and the report
/// names what was set); the control sets cargo's retries by hand, which the
/// defaults never override, and shows cargo retrying.
#[test]
fn no_network_defaults_stop_the_retry_loops() {
    needs_sandbox!();
    let cargo_ok = std::process::Command::new("cargo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !cargo_ok {
        assert!(!is_root(), "cargo must be usable as root");
        eprintln!("SKIP: cargo not usable as this user");
        return;
    }
    let ws = Workspace::new();
    ws.write(
        "Cargo.toml",
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    ws.write("src/main.rs", "fn main() {}\n");
    let run = |extra: &[&str], script: &str| {
        let mut args = vec![
            "run",
            "--workspace",
            ws.path().to_str().unwrap(),
            "--timeout",
            "150s",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        let mut c = shellcage(None, &args);
        c.current_dir(ws.path());
        c.output().unwrap()
    };
    let out = run(
        &["--report", "json"],
        "cargo add serde; echo cargo=$?; \
         pip download -q --no-deps -d ./dl six; echo pip=$?; \
         npm view left-pad --loglevel=http; echo npm=$?",
    );
    let (so, se) = (stdout(&out), stderr(&out));
    for tool in ["cargo", "pip", "npm"] {
        assert!(
            so.contains(&format!("{tool}=")) && !so.contains(&format!("{tool}=0")),
            "{tool} did not fail:\n{so}\n{se}"
        );
    }
    // The retry loops' own words: none of them ran.
    for retry in [
        "spurious network error",
        "Retrying (Retry(",
        "attempt 2 failed",
    ] {
        assert!(!se.contains(retry), "{retry:?} in:\n{se}");
    }
    assert!(
        se.contains(
            r#""no_network_defaults":["CARGO_NET_RETRY","PIP_RETRIES","npm_config_fetch_retries"]"#
        ),
        "{se}"
    );
    // The control: a value the caller set wins, and cargo retries (and waits).
    let control = run(&["--env", "CARGO_NET_RETRY=1"], "cargo add serde");
    assert!(
        stderr(&control).contains("spurious network error"),
        "{}",
        stderr(&control)
    );
}

/// `home = "persistent"` (dev): what `pip install --user`, `cargo install`
/// and npm's cache write lasts to the next run of the same workspace and
/// profile, dotfiles do not. The control (`--home fresh`, what every run got
/// before) keeps nothing, and `cargo install` fails there on the read-only
/// ~/.cargo.
#[test]
fn kept_home_keeps_user_installs_and_caches() {
    needs_sandbox!();
    let cargo = std::process::Command::new("cargo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(cargo || !is_root(), "cargo must be usable as root");
    let ws = Workspace::new();
    tiny_wheel(ws.path());
    ws.write(
        "tool/Cargo.toml",
        "[package]\nname = \"sc-tiny-tool\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[workspace]\n",
    );
    ws.write(
        "tool/src/main.rs",
        "fn main() { println!(\"tiny-tool-ran\"); }\n",
    );
    ws.write(
        "pkg/package.json",
        r#"{"name":"sc-tiny","version":"1.0.0"}"#,
    );
    let run = |extra: &[&str], script: &str| {
        let mut args = vec!["run", "--workspace", ws.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        let mut c = shellcage(None, &args);
        c.current_dir(ws.path());
        c.output().unwrap()
    };
    let install = format!(
        "PIP_BREAK_SYSTEM_PACKAGES=1 {PY} -m pip install -q --user --no-index --find-links ./wheels tinypkg-sc; echo pip=$?; \
         {} \
         (cd pkg && npm pack -q >/dev/null && npm cache add ./sc-tiny-1.0.0.tgz); echo npm=$?; \
         echo planted > ~/.dotfile",
        if cargo {
            "cargo install -q --offline --path tool --target-dir ./target; echo cargo=$?;"
        } else {
            ""
        }
    );
    let check = format!(
        "{PY} -c 'import tinypkg_sc; print(\"import\", tinypkg_sc.X)'; command -v tinysc; \
         {} npm cache verify | grep Content; cat ~/.dotfile 2>/dev/null || echo no-dotfile",
        if cargo { "sc-tiny-tool;" } else { "" }
    );
    let first = run(&[], &install);
    let so = stdout(&first);
    for tool in ["pip", "npm"].iter().chain(cargo.then_some(&"cargo")) {
        assert!(
            so.contains(&format!("{tool}=0")),
            "{tool}:\n{so}\n{}",
            stderr(&first)
        );
    }
    let home = std::env::var("HOME").unwrap();
    let second = run(&[], &check);
    let so = stdout(&second);
    assert!(so.contains("import 1\n"), "{so}\n{}", stderr(&second));
    assert!(
        so.contains(&format!("{home}/.shellcage/bin/tinysc\n")),
        "{so}"
    );
    assert!(so.contains("Content verified: 1 "), "{so}");
    assert!(!cargo || so.contains("tiny-tool-ran\n"), "{so}");
    assert!(so.contains("no-dotfile\n"), "dotfiles are not kept: {so}");
    // The host's own home got none of it.
    assert!(!std::path::Path::new(&home).join(".shellcage").exists());

    // The control: a fresh home keeps nothing; cargo install cannot write.
    let control = run(&["--home", "fresh"], &check);
    let so = stdout(&control);
    assert!(!so.contains("import 1") && !so.contains("tinysc\n"), "{so}");
    assert!(so.contains("Content verified: 0 "), "{so}");
    if cargo {
        assert!(!so.contains("tiny-tool-ran"), "{so}");
        let failed = run(
            &["--home", "fresh"],
            "cargo install -q --offline --path tool --target-dir ./target2",
        );
        assert_ne!(failed.status.code(), Some(0));
        assert!(
            stderr(&failed).contains("Read-only file system"),
            "{}",
            stderr(&failed)
        );
    }
    // `shellcage home reset` removes it; the next run starts empty.
    let mut reset = shellcage(None, &["home", "reset", ws.path().to_str().unwrap()]);
    let out = reset.output().unwrap();
    expect_code(&out, 0);
    assert!(
        stdout(&out).contains("removed 1 kept sandbox home"),
        "{}",
        stdout(&out)
    );
    let after = run(&[], &check);
    assert!(
        stdout(&after).contains("Content verified: 0 "),
        "{}",
        stdout(&after)
    );
}

/// A static musl program that resolves its argument with musl's own resolver
/// (which sends from an unconnected UDP socket and so never sees "port
/// unreachable": it waits out its 5 s timeout when nobody answers).
const MUSL_GAI: &str = r#"
#include <netdb.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(argv[1], "443", &hints, &res);
    if (rc != 0) { printf("getaddrinfo: %d\n", rc); return 2; }
    printf("resolved\n");
    return 0;
}
"#;

/// `DIR/gai-musl`, built with musl-gcc (Debian's musl-tools; .ci/run installs it).
fn musl_client(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let src = dir.join("gai.c");
    let out = dir.join("gai-musl");
    std::fs::write(&src, MUSL_GAI).unwrap();
    let built = std::process::Command::new("musl-gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    require(
        built,
        "musl-gcc (Debian package musl-tools) for a musl resolver client",
    )
    .then_some(out)
}

/// `shellcage run [extra] -- sh -c SCRIPT` in `ws`: the output and how long it took.
fn timed(ws: &Workspace, extra: &[&str], script: &str) -> (std::process::Output, f64) {
    let t = std::time::Instant::now();
    let out = run_sh(ws, extra, script);
    (out, t.elapsed().as_secs_f64())
}

/// Network mode none (issue 13, item 7): a name lookup fails at once, with
/// every resolver: glibc (getent, Python, curl) and musl, whose resolver would
/// otherwise wait 5 s for an answer that never comes. The answer is "no such
/// name" from the sandbox itself (EAI_NONAME, -2), not a network error
/// (EAI_AGAIN, -3, what glibc said before), and the report names each name.
/// Control: in `--net loopback` nobody answers, and the musl client waits its
/// timeout out (so the time bound below would see one).
#[test]
fn name_lookups_fail_at_once_in_mode_none() {
    needs_sandbox!();
    let ws = Workspace::new();
    let musl = musl_client(ws.path());
    let mut clients = vec![
        (
            "getent",
            "getent hosts getent.lookup.example; echo rc=$?".to_string(),
            "rc=2",
        ),
        (
            "python",
            format!(
                "{PY} -c 'import socket\ntry: socket.getaddrinfo(\"python.lookup.example\", 443)\nexcept socket.gaierror as e: print(\"gaierror\", e.errno)'"
            ),
            "gaierror -2",
        ),
        (
            "curl",
            "curl -sS https://curl.lookup.example/; echo rc=$?".to_string(),
            "rc=6",
        ),
    ];
    if musl.is_some() {
        clients.push((
            "musl",
            "./gai-musl musl.lookup.example".to_string(),
            "getaddrinfo: -2",
        ));
    }
    let report = ws.path().join("report.json");
    let report_arg = report.to_str().unwrap();
    let mut names = Vec::new();
    for (client, script, want) in &clients {
        let (out, secs) = timed(
            &ws,
            &["--report", "json", "--report-file", report_arg],
            script,
        );
        let (so, se) = (stdout(&out), stderr(&out));
        // Generous: a resolver timeout is 5 s; the figures are in scripts/bench.
        assert!(secs < 3.0, "{client}: {secs:.2} s\n{so}\n{se}");
        assert!(so.contains(want), "{client}: want {want:?}\n{so}\n{se}");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let name = format!("{client}.lookup.example");
        let egress = &json["egress"];
        let listed = egress["destinations"]
            .as_array()
            .unwrap_or_else(|| panic!("{client}: no egress in the report: {json}"))
            .iter()
            .find(|d| d["host"] == name.as_str())
            .unwrap_or_else(|| panic!("{client}: {name} not in {egress}"));
        assert_eq!(listed["decision"], "blocked", "{egress}");
        assert_eq!(listed["via"], "dns", "{egress}");
        assert_eq!(listed["reason"], "network mode none", "{egress}");
        assert!(egress["blocked"].as_u64().unwrap() >= 1, "{egress}");
        names.push(name);
    }
    // The audit record has the same shape, in its `network` field.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let (out, _) = timed(
        &ws,
        &["--audit", log.to_str().unwrap()],
        "getent hosts audit.lookup.example",
    );
    expect_code(&out, 2);
    let text = std::fs::read_to_string(&log).unwrap();
    let record: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let network = &record["network"];
    assert_eq!(
        network["destinations"][0]["host"], "audit.lookup.example",
        "{record}"
    );
    assert_eq!(
        network["destinations"][0]["reason"], "network mode none",
        "{record}"
    );
    // No lookup, no egress entry.
    let (out, _) = timed(
        &ws,
        &["--report", "json", "--report-file", report_arg],
        "true",
    );
    expect_code(&out, 0);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(json.get("egress").is_none(), "{json}");
    if musl.is_some() {
        let (out, secs) = timed(
            &ws,
            &["--net", "loopback"],
            "./gai-musl control.lookup.example",
        );
        assert!(
            secs >= 4.0 && stdout(&out).contains("getaddrinfo: -3"),
            "control: the musl client should wait out its timeout without an answer: {secs:.2} s {out:?}"
        );
    }
}

/// The closing hint (issue 13, item 7): after a failing command on a
/// terminal, one line names the lookups the sandbox refused and how to allow
/// the host; never when the command succeeded, never when stderr is not a
/// terminal, never without a refused lookup (the control: a failing command
/// alone gets no line). The command's own output is passed through untouched.
#[test]
fn the_closing_hint_names_refused_lookups_once_on_a_terminal() {
    needs_sandbox!();
    let ws = Workspace::new();
    let bin = bin().display().to_string();
    let wsp = ws.path().to_str().unwrap().to_string();
    let hint = "shellcage: the sandbox has no network (mode none): refused name lookups: tty.lookup.example";
    let path = format!("PATH={}", std::env::var("PATH").unwrap_or_default());
    let home = format!("HOME={}", std::env::var("HOME").unwrap_or_default());
    // A clean environment: no other notice (dropped variables) on the terminal.
    let env = ["env", "-i", path.as_str(), home.as_str(), "LANG=C.UTF-8"];
    let on_tty = |script: &str| {
        let mut argv = env.to_vec();
        argv.extend([
            bin.as_str(),
            "run",
            "--workspace",
            &wsp,
            "--",
            "sh",
            "-c",
            script,
        ]);
        under_pty(ws.path(), &argv)
    };
    let script =
        "printf 'out-1\\n'; getent hosts tty.lookup.example; printf 'err-1\\n' >&2; exit 3";
    let shown = on_tty(script);
    assert_eq!(shown.matches(hint).count(), 1, "{shown:?}");
    let line = shown.lines().find(|l| l.starts_with(hint)).unwrap();
    assert!(
        line.contains("(hint: --net proxy --allow-host tty.lookup.example, or network.mode = \"proxy\" with network.allow in the profile)"),
        "{line}"
    );
    assert_eq!(shown.matches("shellcage:").count(), 1, "{shown:?}");
    assert!(shown.starts_with("out-1\nerr-1\n"), "{shown:?}");
    assert!(
        shown.trim_end().ends_with(line),
        "the hint closes the run: {shown:?}"
    );
    // The command succeeded: nothing to explain.
    let shown = on_tty("getent hosts tty.lookup.example; exit 0");
    assert!(!shown.contains("shellcage:"), "{shown:?}");
    // Control: a failure with no refused lookup gets no line.
    let shown = on_tty("printf 'out-2\\n'; exit 3");
    assert_eq!(shown, "out-2\n");
    // stdout on the terminal, stderr not: no line, on either.
    let err = ws.path().join("err.txt");
    let mut argv = env.to_vec();
    let script = format!(
        "'{bin}' run --workspace '{wsp}' -- sh -c 'printf out-3; getent hosts tty.lookup.example; exit 3' 2>'{}'",
        err.display()
    );
    argv.extend(["sh", "-c", &script]);
    let shown = under_pty(ws.path(), &argv);
    assert_eq!(shown, "out-3");
    let logged = std::fs::read_to_string(&err).unwrap();
    assert!(!logged.contains("refused name lookups"), "{logged}");
    // Pipes: the bytes the command wrote, exactly, and no line.
    let out = run_sh(
        &ws,
        &[],
        "printf 'a\\0b\\033[0m\\n'; getent hosts tty.lookup.example; exit 3",
    );
    expect_code(&out, 3);
    assert_eq!(out.stdout, b"a\0b\x1b[0m\n");
    assert!(!stderr(&out).contains("shellcage:"), "{}", stderr(&out));
}

/// The closing hint without a refused lookup (issue 13, item 7): a failing command on a
/// terminal whose own words name a path the sandbox does not show (a `git clone` of a
/// repository outside, which git calls "does not exist") or protects (a write to
/// `.git/hooks`) gets one line naming the path, its verdict and the rule. Judged from
/// the command's arguments and the policy, never from its output. Controls: the same
/// clone with `--read` of the repository succeeds and gets no line; a failing command
/// naming only visible paths gets none.
#[test]
fn the_closing_hint_names_paths_the_sandbox_does_not_show_or_protects() {
    needs_sandbox!();
    let ws = Workspace::new();
    let outside = tempfile::tempdir().unwrap();
    let repo = outside.path().join("other-repo");
    let git = |dir: &std::path::Path, args: &[&str]| {
        let st = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "T")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "T")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(st.status.success(), "git {args:?}: {st:?}");
    };
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("f"), "x\n").unwrap();
    git(&repo, &["add", "f"]);
    git(&repo, &["commit", "-qm", "one"]);
    git(ws.path(), &["init", "-q"]);
    let bin = bin().display().to_string();
    let wsp = ws.path().to_str().unwrap().to_string();
    let repo_s = repo.to_str().unwrap().to_string();
    let path = format!("PATH={}", std::env::var("PATH").unwrap_or_default());
    let home = format!("HOME={}", std::env::var("HOME").unwrap_or_default());
    let env = ["env", "-i", path.as_str(), home.as_str(), "LANG=C.UTF-8"];
    let on_tty = |extra: &[&str], script: &str| {
        let mut argv = env.to_vec();
        argv.extend([bin.as_str(), "run", "--workspace", &wsp]);
        argv.extend(extra);
        argv.extend(["--", "sh", "-c", script]);
        under_pty(ws.path(), &argv)
    };
    let lead = "shellcage: the command names paths the sandbox does not show or keeps read-only: ";
    let clone = format!("git clone -q {repo_s} copy");
    let shown = on_tty(&[], &clone);
    assert!(
        shown.contains("does not exist"),
        "git's own words: {shown:?}"
    );
    let line = shown
        .lines()
        .find(|l| l.starts_with(lead))
        .unwrap_or_else(|| panic!("{shown:?}"));
    assert!(line.contains(&format!("{repo_s} is absent (")), "{line}");
    assert_eq!(
        shown.matches("shellcage:").count(),
        1,
        "one line: {shown:?}"
    );
    assert!(
        shown.trim_end().ends_with(line),
        "it closes the run: {shown:?}"
    );
    // A write to a protected path.
    let shown = on_tty(&[], "echo x > .git/hooks/pre-commit");
    let line = shown
        .lines()
        .find(|l| l.starts_with(lead))
        .unwrap_or_else(|| panic!("{shown:?}"));
    assert!(
        line.contains(&format!(
            "{wsp}/.git/hooks/pre-commit is protected (filesystem.protect"
        )),
        "{line}"
    );
    assert!(!ws.path().join(".git/hooks/pre-commit").exists());
    // Controls: shown, the clone works and nothing is said; a failure naming only
    // visible paths says nothing.
    // (--write: a tree bound writable stays its owner's inside when root started the
    // sandbox, so git does not call it another user's; see "Started by root".)
    let shown = on_tty(&["--write", &repo_s], &clone);
    assert!(!shown.contains("shellcage:"), "{shown:?}");
    assert!(
        ws.path().join("copy/f").exists(),
        "control: the clone ran: {shown:?}"
    );
    let shown = on_tty(&[], "ls ./no-such-file copy/f; exit 3");
    assert!(!shown.contains("shellcage:"), "{shown:?}");
}

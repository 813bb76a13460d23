//! shellcage's git config reader and merge, checked against git itself.
//!
//! 1. Differential: on random files (valid and broken, with every corner of
//!    the syntax), `Config::parse` agrees with `git config --file F --list -z
//!    --no-includes` on success or failure and on every key and value.
//! 2. Merge: for random host/sandbox pairs full of disguised dangerous keys,
//!    git's own reading of the merged file has exactly the host's values for
//!    every refused key and the sandbox's values for every allowed change.
//!
//! `SHELLCAGE_TEST_GIT` picks the git binary (default: `git` on PATH);
//! `PROPTEST_CASES` the number of cases. Without git the tests fail in CI
//! (`CI` set) and are skipped with a message elsewhere.

use proptest::prelude::*;
use shellcage::git::config::{Config, Value, ValueMap};
use shellcage::git::merge::{MergeError, merge};
use shellcage::git::policy::{Context, MERGE_BACK, NESTED, Policy};
use std::io::Write;
use std::process::Command;

type Entries = Vec<(Vec<u8>, Value)>;

fn git_bin() -> String {
    std::env::var("SHELLCAGE_TEST_GIT").unwrap_or_else(|_| "git".into())
}

fn have_git() -> bool {
    let ok = Command::new(git_bin())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            (std::env::var_os("CI").is_none()
                && std::env::var_os("SHELLCAGE_TEST_REQUIRE_KERNEL").is_none()),
            "git is required in CI and under SHELLCAGE_TEST_REQUIRE_KERNEL"
        );
        eprintln!("skipping: no git ({})", git_bin());
    }
    ok
}

/// git's reading of `text`: `Err` when git refuses the file.
fn git_list(text: &[u8]) -> Result<Entries, String> {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text).unwrap();
    f.flush().unwrap();
    let out = Command::new(git_bin())
        .env_clear()
        .env(
            "SHELLCAGE_SESSION",
            std::env::var_os("SHELLCAGE_SESSION").unwrap_or_else(|| "off".into()),
        )
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["config", "--file"])
        .arg(f.path())
        .args(["--list", "-z", "--no-includes"])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut v = out.stdout;
    if v.last() == Some(&0) {
        v.pop();
    }
    if v.is_empty() {
        return Ok(Vec::new());
    }
    Ok(v.split(|&b| b == 0)
        .map(|rec| match rec.iter().position(|&b| b == b'\n') {
            Some(i) => (rec[..i].to_vec(), Some(rec[i + 1..].to_vec())),
            None => (rec.to_vec(), None),
        })
        .collect())
}

fn to_map(entries: &Entries) -> ValueMap {
    let mut m = ValueMap::new();
    for (k, v) in entries {
        m.entry(k.clone()).or_default().push(v.clone());
    }
    m
}

fn ours(text: &[u8]) -> Result<Entries, String> {
    Config::parse(text)
        .map(|c| c.entries.into_iter().map(|e| (e.key, e.value)).collect())
        .map_err(|e| e.to_string())
}

// ---- generators -----------------------------------------------------------

/// Tokens that exercise every branch of git's parser, valid or not.
fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "[",
        "]",
        "\"",
        "\\",
        "\n",
        "\r\n",
        "\r",
        " ",
        "\t",
        "#",
        ";",
        "=",
        ".",
        "-",
        "_",
        "a",
        "Z",
        "k",
        "1",
        "core",
        "Core",
        "remote",
        "url",
        "FSMonitor",
        "\u{feff}",
        "\\\n",
        "\\t",
        "\\n",
        "\\b",
        "\\\"",
        "\\\\",
        "\\q",
        "ü",
        "\x0b",
        "\x7f",
        "'",
        "[core]\n",
        "[remote \"o\"]\n",
        "[Remote.O]\n",
        "[a \"x\\\"y\"]",
        "[ \"s\"]",
        "[.]",
        "key = value\n",
        "k=\"v # x\" ; c\n",
        "flag\n",
        "k = a\\\n b\n",
        "[x]k\n",
    ])
}

fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(token(), 0..30).prop_map(|t| t.concat().into_bytes())
}

/// Mostly valid files: structured lines with random spelling.
fn line() -> impl Strategy<Value = String> {
    let ident = "[a-zA-Z][a-zA-Z0-9-]{0,6}";
    let sub = prop::collection::vec(
        prop::sample::select(vec![
            "a", "B", ".", " ", "\\\"", "\\\\", "\\x", "/", ":", "\t", "#", ";", "]", "ü",
        ]),
        0..6,
    )
    .prop_map(|v| v.concat());
    let header = (ident, prop::option::of(sub), "[ \t]{0,2}", prop::bool::ANY).prop_map(
        |(s, sub, ws, deprecated)| match (sub, deprecated) {
            (Some(sub), false) => format!("[{s}{ws} \"{sub}\"]"),
            (Some(_), true) => format!("[{s}.x{ws}]"),
            (None, _) => format!("[{s}]"),
        },
    );
    let vtok = prop::sample::select(vec![
        "v", "V", " ", "\t", "\"", "\\\"", "\\\\", "\\n", "\\t", "\\b", "\\\n", "#", ";", "x y",
        "=", "ü", "\r", "'", "[", "]",
    ]);
    let value = prop::collection::vec(vtok, 0..8).prop_map(|v| v.concat());
    let entry = ("[ \t]{0,2}", ident, "[ \t]{0,2}", prop::option::of(value)).prop_map(
        |(a, k, b, v)| match v {
            Some(v) => format!("{a}{k}{b}={v}"),
            None => format!("{a}{k}{b}"),
        },
    );
    prop_oneof![
        3 => header,
        6 => entry,
        1 => "[#;][ a-z\\\\]{0,8}".prop_map(String::from),
        1 => Just(String::new()),
    ]
}

fn structured() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(line(), 0..12),
        prop::sample::select(vec!["\n", "\r\n"]),
        prop::bool::ANY,
    )
        .prop_map(|(lines, nl, final_nl)| {
            let mut s = lines.join(nl);
            if final_nl {
                s.push_str(nl);
            }
            s.into_bytes()
        })
}

/// git before 2.45 (commit f0b8944430) turned every unquoted whitespace
/// character inside a value into a space; the reader follows 2.45 and later.
/// Against an older git, compare with tab and CR mapped to space.
fn git_squashes_whitespace() -> bool {
    static OLD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OLD.get_or_init(old_git)
}

fn old_git() -> bool {
    let out = Command::new(git_bin()).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    let mut nums = v
        .split_whitespace()
        .nth(2)
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    (major, minor) < (2, 45)
}

fn squash(entries: Entries) -> Entries {
    let sq = |v: Vec<u8>| {
        v.into_iter()
            .map(|b| if b == b'\t' || b == b'\r' { b' ' } else { b })
            .collect()
    };
    entries.into_iter().map(|(k, v)| (k, v.map(sq))).collect()
}

fn differential(text: &[u8]) -> Result<(), TestCaseError> {
    let (mut g, mut o) = (git_list(text), ours(text));
    if git_squashes_whitespace() {
        g = g.map(squash);
        o = o.map(squash);
    }
    match (&g, &o) {
        (Ok(g), Ok(o)) => prop_assert_eq!(g, o, "text {:?}", String::from_utf8_lossy(text)),
        (Err(_), Err(_)) => {}
        _ => prop_assert!(
            false,
            "git {:?} vs ours {:?} on {:?}",
            g,
            o,
            String::from_utf8_lossy(text)
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn reader_agrees_with_git_on_structured_files(text in structured()) {
        if !have_git() { return Ok(()); }
        differential(&text)?;
    }

    #[test]
    fn reader_agrees_with_git_on_token_soup(text in noise()) {
        if !have_git() { return Ok(()); }
        differential(&text)?;
    }
}

// ---- merge ------------------------------------------------------------------

/// A key as written: the header spelling and the name spelling both vary.
#[derive(Debug, Clone)]
struct Item {
    header: &'static str,
    name: &'static str,
    value: Option<&'static str>,
}

fn item() -> impl Strategy<Value = Item> {
    let header = prop::sample::select(vec![
        "[core]",
        "[Core]",
        "[core \"x\"]",
        "[core.x]",
        "[CORE.X]",
        "[remote \"origin\"]",
        "[remote \"up\"]",
        "[Remote \"up\"]",
        "[remote.up]",
        "[remote \"Up\"]",
        "[user]",
        "[alias]",
        "[include]",
        "[includeIf \"gitdir:/\"]",
        "[url \"ext::sh\"]",
        "[submodule \"s\"]",
        "[branch \"main\"]",
        "[credential]",
        "[filter \"f\"]",
        "[remote \"-x\"]",
        "[init]",
        "[push]",
    ]);
    let name = prop::sample::select(vec![
        "fsmonitor",
        "FSMonitor",
        "hooksPath",
        "url",
        "URL",
        "pushurl",
        "fetch",
        "name",
        "email",
        "path",
        "st",
        "insteadOf",
        "update",
        "remote",
        "merge",
        "helper",
        "clean",
        "uploadpack",
        "bare",
        "defaultBranch",
        "default",
        "active",
    ]);
    let value = prop::option::of(prop::sample::select(vec![
        "https://example.com/x.git",
        "https://example.org/evil.git",
        "ext::sh -c x",
        "-oProxyCommand=x",
        "x",
        "a b",
        "with # hash",
        "q\"q",
        "back\\slash",
        "true",
        "",
        " lead",
        "trail ",
        "+refs/heads/*:refs/remotes/up/*",
        "refs/heads/main",
        "simple",
        "../sub",
        "tab\there",
        "nl\nhere",
    ]));
    (header, name, value).prop_map(|(header, name, value)| Item {
        header,
        name,
        value,
    })
}

/// Keys the merge allows, spelled in several ways, so changes get applied.
fn allowed_item() -> impl Strategy<Value = Item> {
    prop::sample::select(vec![
        ("[user]", "name", Some("x")),
        ("[User]", "Email", Some("e@example.com")),
        ("[remote \"up\"]", "url", Some("https://example.com/x.git")),
        ("[remote.up]", "url", Some("https://example.com/y.git")),
        (
            "[remote \"up\"]",
            "fetch",
            Some("+refs/heads/*:refs/remotes/up/*"),
        ),
        (
            "[remote \"Up\"]",
            "pushurl",
            Some("ssh://git@example.com/x.git"),
        ),
        ("[branch \"main\"]", "remote", Some("up")),
        ("[branch \"main\"]", "merge", Some("refs/heads/main")),
        ("[submodule \"s\"]", "url", Some("../sub")),
        ("[submodule \"s\"]", "active", None),
        ("[init]", "defaultBranch", Some("main")),
        ("[push]", "default", Some("simple")),
        ("[core]", "bare", Some("false")),
    ])
    .prop_map(|(header, name, value)| Item {
        header,
        name,
        value,
    })
}

fn any_item() -> impl Strategy<Value = Item> {
    prop_oneof![2 => item(), 1 => allowed_item()]
}

/// Write `items` in git syntax, with random layout choices in `style`.
fn render(items: &[Item], style: &[u8]) -> Vec<u8> {
    let mut out = String::new();
    let mut last_header = "";
    for (i, it) in items.iter().enumerate() {
        let s = style.get(i).copied().unwrap_or(0);
        if it.header != last_header || s % 7 == 0 {
            out.push_str(it.header);
            out.push_str(if s % 5 == 0 { " " } else { "\n" });
            last_header = it.header;
        }
        let name = if s % 3 == 0 {
            it.name.to_ascii_uppercase()
        } else {
            it.name.to_string()
        };
        match it.value {
            None => out.push_str(&format!("\t{name}\n")),
            Some(v) => {
                let mut q = String::from("\"");
                for c in v.chars() {
                    match c {
                        '"' => q.push_str("\\\""),
                        '\\' => q.push_str("\\\\"),
                        '\n' => q.push_str("\\n"),
                        '\t' => q.push_str("\\t"),
                        c => q.push(c),
                    }
                }
                q.push('"');
                if s % 4 == 1 && q.len() > 3 {
                    // continuation line in the middle of the value
                    let mid = q.char_indices().nth(2).map_or(1, |(i, _)| i);
                    if !q[..mid].ends_with('\\') {
                        q.insert_str(mid, "\\\n");
                    }
                }
                let comment = if s % 6 == 2 { " # note" } else { "" };
                out.push_str(&format!("\t{name} = {q}{comment}\n"));
            }
        }
    }
    out.into_bytes()
}

/// The merge's promise, checked with git as the reader of all three files.
fn check_merge(base: &[u8], sandbox: &[u8], policy: &Policy) -> Result<(), TestCaseError> {
    let (Ok(gb), Ok(gs)) = (git_list(base), git_list(sandbox)) else {
        return Ok(()); // the renderer only makes valid files; nothing to check otherwise
    };
    let (gb, gs) = (to_map(&gb), to_map(&gs));
    let result = match merge(base, base, sandbox, policy, &Context::default()) {
        Ok(r) => r,
        Err(MergeError::Verify) => return Err(TestCaseError::fail("merge failed to verify")),
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "merge error {e} on files git reads"
            )));
        }
    };
    let gr = git_list(&result.text)
        .map_err(|e| TestCaseError::fail(format!("git cannot read the result: {e}")))?;
    let gr = to_map(&gr);
    let ctx = Context::default().with_remotes_of(&gb);
    let none = Vec::new();
    let keys: std::collections::BTreeSet<_> = gb.keys().chain(gs.keys()).chain(gr.keys()).collect();
    for k in keys {
        let (b, s, r) = (
            gb.get(k).unwrap_or(&none),
            gs.get(k).unwrap_or(&none),
            gr.get(k).unwrap_or(&none),
        );
        let allowed = policy.judge(k, b, s, &ctx).is_ok();
        if policy.rule(k).is_none() || !allowed {
            prop_assert_eq!(
                r,
                b,
                "refused key {} changed on the host",
                String::from_utf8_lossy(k)
            );
        } else {
            prop_assert_eq!(
                r,
                s,
                "allowed change of {} not applied",
                String::from_utf8_lossy(k)
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn no_refused_key_reaches_the_host_and_allowed_changes_do(
        base in prop::collection::vec(any_item(), 0..10),
        keep in prop::collection::vec(prop::bool::ANY, 10),
        added in prop::collection::vec(any_item(), 0..10),
        style_a in prop::collection::vec(any::<u8>(), 20),
        style_b in prop::collection::vec(any::<u8>(), 20),
        nested in prop::bool::ANY,
    ) {
        if !have_git() { return Ok(()); }
        let mut fin: Vec<Item> = base.iter().zip(&keep).filter(|(_, k)| **k).map(|(i, _)| i.clone()).collect();
        fin.extend(added);
        let policy = if nested { NESTED } else { MERGE_BACK };
        check_merge(&render(&base, &style_a), &render(&fin, &style_b), &policy)?;
    }
}

#[test]
fn merge_examples_read_by_git() {
    if !have_git() {
        return;
    }
    let base = b"[core]\n\tbare = false\n[remote \"origin\"]\n\turl = https://example.com/o.git\n";
    let sandbox = b"[core]\n\tbare = false\n\tFSMonitor = \"touch /tmp/x\"\n[Core \"x\"]\nfsmonitor = y\n[remote \"origin\"]\n\turl = https://example.com/o.git\n[remote \"up\"]\n\turl = https://example.com/u.git\n[include]\npath=/tmp/p\n";
    let r = merge(base, base, sandbox, &MERGE_BACK, &Context::default()).unwrap();
    let got = to_map(&git_list(&r.text).unwrap());
    assert!(got.contains_key(&b"remote.up.url"[..]));
    assert!(!got.contains_key(&b"core.fsmonitor"[..]));
    assert!(!got.contains_key(&b"core.x.fsmonitor"[..]));
    assert!(!got.contains_key(&b"include.path"[..]));
    assert_eq!(r.refused.len(), 3, "{:?}", r.refused);
}

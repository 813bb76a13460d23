use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::policy::{Access, HomeMode, NetMode, PathRule, Requirement, Resource, TierChoice};

/// A home, a workspace inside it and a user profile directory, all temporary.
struct Fixture {
    _dir: tempfile::TempDir,
    ctx: LoadContext,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let home = root.join("home");
        let workspace = home.join("project");
        let user_dir = home.join(".config/shellcage/profiles");
        fs::create_dir_all(&workspace).unwrap();
        fs::create_dir_all(&user_dir).unwrap();
        Fixture {
            _dir: dir,
            ctx: LoadContext {
                home,
                workspace,
                user_dir: Some(user_dir),
            },
        }
    }

    /// Writes a user profile and returns its path.
    fn user(&self, name: &str, text: &str) -> PathBuf {
        let path = self
            .ctx
            .user_dir
            .as_ref()
            .unwrap()
            .join(format!("{name}.toml"));
        fs::write(&path, text).unwrap();
        path
    }

    fn load(&self, name: &str) -> Result<Policy, ProfileError> {
        load(name, &self.ctx)
    }

    /// Loads `text` as a user profile named `t` and returns the error message.
    fn error(&self, text: &str) -> String {
        self.user("t", text);
        match self.load("t") {
            Ok(_) => panic!("profile loaded but should not have:\n{text}"),
            Err(e) => e.to_string(),
        }
    }
}

fn assert_contains(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} does not contain {part:?}"
        );
    }
}

// ---- built-ins -------------------------------------------------------------------------

#[test]
fn every_builtin_loads() {
    let f = Fixture::new();
    for name in builtin_names() {
        let policy = f.load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(policy.profile, *name);
        assert_eq!(policy.source, format!("builtin:{name}"));
        assert_eq!(policy.profile_chain.hash().len(), 64);
        assert!(builtin_text(name).is_some());
    }
    assert_eq!(builtin_names()[0], "dev");
    assert!(builtin_text("nope").is_none());
}

#[test]
fn dev_profile_contents() {
    let f = Fixture::new();
    let p = f.load("dev").unwrap();
    let home = &f.ctx.home;
    assert_eq!(p.tier, TierChoice::Full);
    assert_eq!(p.workspace, f.ctx.workspace);
    assert_eq!(p.home, *home);
    assert_eq!(p.workspace_access, Access::Write);
    assert_eq!(p.network, NetMode::None);
    assert_eq!(p.landlock, Requirement::Required);
    assert!(p.paths.iter().all(|r| r.optional));
    assert!(p.paths.iter().all(|r| r.access == Access::Read));
    for path in ["/usr", "/etc", "/lib64", "/nix/store"] {
        assert!(p.paths.iter().any(|r| r.path == Path::new(path)), "{path}");
    }
    for path in [".cargo", ".rustup", "go/pkg/mod", ".gitconfig"] {
        assert!(p.paths.iter().any(|r| r.path == home.join(path)), "{path}");
    }
    let hidden = |p: &Policy, s: &Path| p.hide.iter().any(|h| h.pattern == s);
    assert!(hidden(&p, &home.join(".ssh")));
    assert!(hidden(&p, &home.join(".cargo/credentials.toml")));
    assert!(hidden(&p, Path::new("/etc/ssh/*key*")));
    assert!(hidden(&p, Path::new("/etc/shadow")));
    let protect: Vec<_> = p.protect.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(
        protect,
        [
            ".git/hooks",
            ".git/config",
            ".envrc",
            ".vscode",
            ".idea",
            ".claude",
            ".codex",
            ".cursor",
            ".mcp.json",
            ".devcontainer",
            ".devcontainer.json",
            ".zed",
            ".helix",
            "*.code-workspace",
            ".nvim.lua",
            ".nvimrc",
            ".exrc",
            ".dir-locals.el",
            ".gemini",
            ".qwen",
            ".continue",
            ".roo",
            ".kilocode",
            ".kilo",
            ".clinerules",
            ".windsurf",
            ".kiro",
            ".amazonq",
            ".opencode",
            ".aider.conf.yml",
            ".continuerc.json",
            ".roomodes",
            "kilo.jsonc",
            "opencode.json",
            "opencode.jsonc",
            "crush.json",
            ".crush.json",
            ".pre-commit-config.yaml",
            ".husky",
            ".yarnrc.yml",
            ".yarnrc",
            ".npmrc",
            ".pnpmfile.cjs",
            "lefthook.yml",
            ".lefthook.yml",
            "lefthook-local.yml",
            ".lefthook-local.yml",
            ".cargo/config.toml",
            ".cargo/config",
            "mise.toml",
            ".mise.toml",
            ".mise",
            "mise.local.toml",
            ".mise.local.toml",
            ".tool-versions",
        ]
    );
    assert!(p.env_files.enabled);
    assert_eq!(p.env_files.max_depth, 64);
    assert_eq!(p.env_files.max_dirs, 100_000);
    assert!(p.env_files.skip_dirs.iter().any(|d| d == "node_modules"));
    assert!(p.env_files.allow_names.iter().any(|d| d == ".env.example"));
    assert_eq!(
        p.env.pass,
        [
            "PATH",
            "LANG",
            "LC_*",
            "TERM",
            "COLORTERM",
            "NO_COLOR",
            "TZ"
        ]
    );
    assert!(p.env.set.is_empty());
    assert!(p.env.explicit.is_empty());
    assert_eq!(p.limits.timeout, None);
    assert_eq!(p.limits.open_files, 65536);
    assert_eq!(p.limits.file_size, 16 << 30);
    assert_eq!(p.limits.tmp_size, 2 << 30);
    assert_eq!(p.limits.home_size, 1 << 30);
    assert_eq!(p.limits.kept_home_size, 4 << 30);
    assert_eq!(p.home_mode, HomeMode::Persistent);
    // A fork bomb stops at 4096 wherever the host can hold it (see dev.toml).
    assert_eq!(p.limits.processes, Some(4096));
    assert_eq!((p.limits.memory, p.limits.cpu_millis), (None, None));
    assert_eq!(p.limits.mode, Requirement::BestEffort);
    assert!(p.limits.from_command_line.is_empty());
    assert_eq!(
        p.shell,
        [
            PathBuf::from("/bin/bash"),
            "/usr/bin/bash".into(),
            "/bin/sh".into()
        ]
    );
    assert!(!p.report);
}

#[test]
fn readonly_and_ci_differ_from_dev_only_where_they_say() {
    let f = Fixture::new();
    let dev = f.load("dev").unwrap();
    let same_as_dev = |mut p: Policy| {
        p.profile = dev.profile.clone();
        p.source = dev.source.clone();
        p.profile_chain = dev.profile_chain.clone();
        p
    };
    let mut readonly = same_as_dev(f.load("readonly").unwrap());
    assert_eq!(readonly.workspace_access, Access::Read);
    readonly.workspace_access = Access::Write;
    assert_eq!(readonly, dev);

    let mut ci = same_as_dev(f.load("ci").unwrap());
    assert_eq!(ci.limits.timeout, Some(Duration::from_secs(30 * 60)));
    assert_eq!(ci.limits.memory, Some(8 << 30));
    assert!(ci.report);
    assert_eq!(ci.home_mode, HomeMode::Fresh);
    ci.limits.timeout = None;
    ci.limits.memory = None;
    ci.report = false;
    ci.home_mode = HomeMode::Persistent;
    assert_eq!(ci.session, crate::policy::SessionMode::Off);
    ci.session = crate::policy::SessionMode::Auto;
    assert_eq!(ci, dev);
}

#[test]
fn every_builtin_rule_line_is_commented() {
    // Every value line in a built-in profile sits under a comment: walking up
    // from it, a comment comes before a blank line or a table header.
    for name in builtin_names() {
        let lines: Vec<&str> = builtin_text(name).unwrap().lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
                continue;
            }
            // Not rules: the format version and the text shown by the profile list.
            // A multi-line list's brackets: its entries are checked one by one.
            if line == "]" || line.ends_with("= [") {
                continue;
            }
            // Not rules: the format version and the text shown by the profile list.
            if line == "version = 1" || line.starts_with("description = ") {
                continue;
            }
            let commented = lines[..i]
                .iter()
                .rev()
                .map(|l| l.trim())
                .take_while(|l| !l.is_empty() && !l.starts_with('['))
                .any(|l| l.starts_with('#'));
            assert!(
                commented,
                "{name}.toml line {}: {line:?} has no comment",
                i + 1
            );
        }
    }
}

#[test]
fn hash_depends_on_the_chain() {
    let f = Fixture::new();
    let dev = f.load("dev").unwrap().profile_chain.hash();
    assert_eq!(dev, f.load("dev").unwrap().profile_chain.hash());
    assert_ne!(dev, f.load("readonly").unwrap().profile_chain.hash());
    f.user("mine", "version = 1\nextends = \"dev\"\n");
    let mine = f.load("mine").unwrap();
    assert_ne!(dev, mine.profile_chain.hash());
    assert_eq!(mine.profile, "mine");
    assert!(mine.source.ends_with("/mine.toml"), "{}", mine.source);
}

// ---- units -----------------------------------------------------------------------------

#[test]
fn durations() {
    let ok = [
        ("30", 30_000),
        ("0", 0),
        ("90s", 90_000),
        ("10m", 600_000),
        ("1h", 3_600_000),
        ("1h30m", 5_400_000),
        ("500ms", 500),
        ("1m500ms", 60_500),
        ("2d", 172_800_000),
        ("1d2h3m4s5ms", 93_784_005),
    ];
    for (text, ms) in ok {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_millis(ms)),
            "{text}"
        );
    }
    let bad = [
        "",
        "10x",
        "-1s",
        "1.5h",
        " 1s",
        "1s ",
        "s",
        "1h1h",
        "30m1h",
        "1H",
        "ms",
        "1s500",
        "99999999999999999999",
        "18446744073709551615d",
    ];
    for text in bad {
        assert!(parse_duration(text).is_err(), "{text:?} parsed");
    }
}

#[test]
fn sizes() {
    let ok = [
        ("1024", 1024),
        ("0", 0),
        ("64K", 64 << 10),
        ("64k", 64 << 10),
        ("512M", 512 << 20),
        ("2G", 2 << 30),
        ("1T", 1 << 40),
    ];
    for (text, n) in ok {
        assert_eq!(parse_size(text), Ok(n), "{text}");
    }
    for text in [
        "",
        "12Q",
        "G",
        "-1",
        "1.5G",
        "1 G",
        "1GB",
        "16777216T",
        "99999999999999999999",
    ] {
        assert!(parse_size(text).is_err(), "{text:?} parsed");
    }
}

// ---- expansion and merging -------------------------------------------------------------

#[test]
fn expansion() {
    let f = Fixture::new();
    f.user(
        "x",
        r#"version = 1
extends = "dev"
[filesystem]
read = ["~/tools", "~//etc/../", "{workspace}/../x"]
"#,
    );
    // `..` is refused even when it would stay inside home.
    assert_contains(
        &f.load("x").unwrap_err().to_string(),
        &["filesystem.read[1]", "'..'"],
    );

    f.user(
        "x",
        r#"version = 1
extends = "dev"
[filesystem]
read = ["~/tools", "~//srv/./data/", "/srv//other"]
write = ["{workspace}/build-cache"]
hide = ["{workspace}/secrets", "~/private"]
"#,
    );
    let p = f.load("x").unwrap();
    let home = &f.ctx.home;
    let has = |path: &Path, access| p.paths.iter().any(|r| r.path == path && r.access == access);
    assert!(has(&home.join("tools"), Access::Read));
    // `~//srv` stays under home: it is not the host's /srv.
    assert!(has(&home.join("srv/data"), Access::Read));
    assert!(has(Path::new("/srv/other"), Access::Read));
    assert!(has(&f.ctx.workspace.join("build-cache"), Access::Write));
    assert!(
        p.hide
            .iter()
            .any(|h| h.pattern == f.ctx.workspace.join("secrets"))
    );
    assert!(p.hide.iter().any(|h| h.pattern == home.join("private")));

    // Hiding all of home conflicts with dev's toolchains in it.
    f.user(
        "x",
        "version = 1\nextends = \"dev\"\n[filesystem]\nhide = [\"~\"]\n",
    );
    let e = f.load("x").unwrap_err().to_string();
    assert_contains(
        &e,
        &[
            "builtin:dev:",
            "filesystem.read[",
            "x.toml:4",
            "filesystem.hide[0] = \"~\"",
        ],
    );
}

#[test]
fn child_lists_append_and_cannot_unhide() {
    let f = Fixture::new();
    f.user(
        "child",
        r#"version = 1
extends = "dev"
description = "child"
[filesystem]
read = ["/srv/data", "/usr"]
hide = []
protect = [".github/workflows"]
[filesystem.env_files]
skip_dirs = ["bazel-out"]
[env]
pass = ["EDITOR"]
set = { A = "1" }
[shell]
candidates = ["/bin/zsh"]
"#,
    );
    let dev = f.load("dev").unwrap();
    let p = f.load("child").unwrap();
    assert_eq!(p.hide, dev.hide);
    assert_eq!(p.paths.len(), dev.paths.len() + 1, "/usr is not duplicated");
    assert_eq!(p.paths[..dev.paths.len()], dev.paths[..]);
    assert_eq!(p.protect.last().unwrap(), Path::new(".github/workflows"));
    assert_eq!(p.protect.len(), dev.protect.len() + 1);
    assert_eq!(p.env_files.skip_dirs.last().unwrap(), "bazel-out");
    assert_eq!(p.env.pass.last().unwrap(), "EDITOR");
    assert_eq!(p.shell, [PathBuf::from("/bin/zsh")]);

    // Grandchild: env.set merges by key, scalars override, "none" clears a timeout.
    f.user(
        "grandchild",
        r#"version = 1
extends = "child"
tier = "auto"
[env]
set = { A = "2", B = "3" }
[filesystem]
write = ["/srv/data"]
[limits]
timeout = "none"
"#,
    );
    let g = f.load("grandchild").unwrap();
    assert_eq!(g.tier, TierChoice::Auto);
    assert_eq!(g.env.set.get("A").map(String::as_str), Some("2"));
    assert_eq!(g.env.set.get("B").map(String::as_str), Some("3"));
    let data = g
        .paths
        .iter()
        .find(|r| r.path == Path::new("/srv/data"))
        .unwrap();
    assert_eq!(data.access, Access::Write, "read + write = write");
    assert_eq!(g.limits.timeout, None);

    f.user(
        "ci-child",
        "version = 1\nextends = \"ci\"\n[limits]\ntimeout = \"none\"\n",
    );
    assert_eq!(f.load("ci-child").unwrap().limits.timeout, None);
}

#[test]
fn visible_path_under_hide_is_an_error() {
    let f = Fixture::new();
    let e = f.error("version = 1\nextends = \"dev\"\n[filesystem]\nread = [\"~/.ssh/config\"]\n");
    assert_contains(
        &e,
        &[
            "t.toml:4",
            "filesystem.read[0]",
            "\"~/.ssh/config\"",
            "filesystem.hide",
            "\"~/.ssh\"",
            "builtin:dev:",
        ],
    );
    let e = f.error(
        "version = 1\nextends = \"dev\"\n[filesystem]\nwrite = [\"/etc/ssh/ssh_host_rsa_key\"]\n",
    );
    assert_contains(&e, &["filesystem.write[0]", "/etc/ssh/*key*"]);
}

#[test]
fn standalone_profile_must_set_every_scalar() {
    let f = Fixture::new();
    let e = f.error("version = 1\n");
    assert_contains(&e, &["t.toml", "tier is not set", "extends = \"dev\""]);
    // Everything set: loads, with empty lists.
    f.user(
        "min",
        r#"version = 1
tier = "container"
[filesystem]
workspace = "read"
[filesystem.env_files]
enabled = false
[network]
mode = "loopback"
[landlock]
mode = "best-effort"
[limits]
open_files = 1024
file_size = "1G"
tmp_size = "64M"
home_size = "64M"
processes = 512
[shell]
candidates = ["/bin/sh"]
"#,
    );
    let p = f.load("min").unwrap();
    assert_eq!(p.tier, TierChoice::Container);
    assert_eq!(p.network, NetMode::Loopback);
    assert_eq!(p.landlock, Requirement::BestEffort);
    assert!(p.paths.is_empty() && p.hide.is_empty() && p.protect.is_empty());
    assert!(!p.env_files.enabled);
    assert_eq!(p.limits.processes, Some(512));
    // A child of it that turns the scan on must say how deep.
    f.user(
        "min2",
        "version = 1\nextends = \"min\"\n[filesystem.env_files]\nenabled = true\n",
    );
    assert_contains(
        &f.load("min2").unwrap_err().to_string(),
        &["min.toml", "filesystem.env_files.max_depth is not set"],
    );
}

// ---- errors: every kind names the file, the key and the value ---------------------------

#[test]
fn syntax_and_schema_errors_name_file_and_line() {
    let f = Fixture::new();
    let cases: &[(&str, &[&str])] = &[
        (
            "version = 1\nextends = \"dev\"\n[filesystem]\nreed = []\n",
            &["t.toml", "line 4", "reed"],
        ),
        (
            "version = 1\nextends = \"dev\"\nbogus = 1\n",
            &["line 3", "bogus"],
        ),
        (
            "version = 1\nextends = \"dev\"\n[network]\nmode = \"wifi\"\n",
            &["line 4", "wifi"],
        ),
        (
            "version = 1\nextends = \"dev\"\n[limits]\ntimeout = 30\n",
            &["line 4", "string"],
        ),
        (
            "version = 1\nextends = \"dev\"\n[limits]\nopen_files = -1\n",
            &["line 4"],
        ),
        ("extends = \"dev\"\n", &["t.toml", "version"]),
        (
            "version = 1\nextends = \"dev\"\n[filesystem\n",
            &["t.toml", "line 3"],
        ),
    ];
    for (text, parts) in cases {
        assert_contains(&f.error(text), parts);
    }
}

#[test]
fn syntax_errors_escape_control_characters() {
    let f = Fixture::new();
    let e = f.error("version = 1\nextends = \"dev\"\n\x1b[2J = 1\n");
    assert!(!e.contains('\x1b'), "{e:?}");
    assert_contains(&e, &["\\u{1b}", "line 3"]);
}

#[test]
fn value_errors_name_file_line_key_and_value() {
    let f = Fixture::new();
    let cases: &[(&str, &[&str])] = &[
        ("version = 2\n", &["t.toml:1", "version = 2:", "version 1"]),
        (
            "[limits]\ntimeout = \"10x\"\n",
            &["t.toml:5", "limits.timeout = \"10x\"", "unknown unit"],
        ),
        (
            "[limits]\ntimeout = \"-1s\"\n",
            &["limits.timeout = \"-1s\""],
        ),
        (
            "[limits]\ntimeout = \"\"\n",
            &["limits.timeout = \"\"", "empty"],
        ),
        (
            "[limits]\ntimeout = \"0s\"\n",
            &["limits.timeout", "greater than zero"],
        ),
        (
            "[limits]\ntmp_size = \"12Q\"\n",
            &["limits.tmp_size = \"12Q\""],
        ),
        (
            "[limits]\nfile_size = \"0\"\n",
            &["limits.file_size", "greater than zero"],
        ),
        ("[limits]\nopen_files = 0\n", &["limits.open_files = 0:"]),
        ("[limits]\nprocesses = 0\n", &["limits.processes"]),
        (
            "[limits]\nprocesses = 5000000\n",
            &["limits.processes = 5000000", "pid_max"],
        ),
        (
            "[limits]\nmemory = \"1M\"\n",
            &["limits.memory = \"1M\"", "at least 8M"],
        ),
        (
            "[limits]\nmemory = \"4GB\"\n",
            &["limits.memory = \"4GB\"", "suffix"],
        ),
        (
            "[limits]\ncpu = \"0.001\"\n",
            &["limits.cpu = \"0.001\"", "0.01 cores"],
        ),
        (
            "[limits]\ncpu = \"two\"\n",
            &["limits.cpu = \"two\"", "cores such as"],
        ),
        (
            "[filesystem]\nread = [\"/a\", \"relative/x\"]\n",
            &["filesystem.read[1] = \"relative/x\"", "absolute"],
        ),
        (
            "[filesystem]\nread = [\"/a/../b\"]\n",
            &["filesystem.read[0]", "'..'"],
        ),
        (
            "[filesystem]\nread = [\"\"]\n",
            &["filesystem.read[0] = \"\"", "empty"],
        ),
        ("[filesystem]\nread = [\"~bob/x\"]\n", &["~user"]),
        ("[filesystem]\nread = [\"{home}/x\"]\n", &["placeholder"]),
        (
            "[filesystem]\nread = [\"/usr/lib/python3*\"]\n",
            &["filesystem.read[0]", "wildcards"],
        ),
        (
            "[filesystem]\nread = [\"/\"]\n",
            &["filesystem.read[0] = \"/\"", "whole host"],
        ),
        (
            "[filesystem]\nwrite = [\"~\"]\n",
            &["filesystem.write[0] = \"~\"", "implicitly"],
        ),
        ("[filesystem]\nwrite = [\"{workspace}\"]\n", &["implicitly"]),
        ("[filesystem]\nread = [\"/tmp\"]\n", &["implicitly"]),
        ("[filesystem]\nread = [\"/dev\"]\n", &["implicitly"]),
        ("[filesystem]\nread = [\"/a\\u0000b\"]\n", &["NUL"]),
        (
            "[filesystem]\nhide = [\"/etc/*/key\"]\n",
            &["filesystem.hide[0] = \"/etc/*/key\"", "last path component"],
        ),
        (
            "[filesystem]\nhide = [\"/\"]\n",
            &["filesystem.hide[0]", "root"],
        ),
        (
            "[filesystem]\nprotect = [\"/abs\"]\n",
            &["filesystem.protect[0] = \"/abs\"", "relative"],
        ),
        (
            "[filesystem]\nprotect = [\"a/../../b\"]\n",
            &["filesystem.protect[0]", "'..'"],
        ),
        (
            "[filesystem]\nprotect = [\".\"]\n",
            &["filesystem.protect[0]", "not the workspace"],
        ),
        ("[filesystem]\nprotect = [\"~/.x\"]\n", &["relative"]),
        (
            "[filesystem]\nprotect = [\"a/*.json\"]\n",
            &["filesystem.protect[0]", "one name at the workspace root"],
        ),
        (
            "[filesystem]\nprotect = [\"*\"]\n",
            &["filesystem.protect[0]", "one name at the workspace root"],
        ),
        (
            "[filesystem.env_files]\nskip_dirs = [\"a/b\"]\n",
            &["filesystem.env_files.skip_dirs[0] = \"a/b\""],
        ),
        (
            "[filesystem.env_files]\nallow = [\"..\"]\n",
            &["filesystem.env_files.allow[0]"],
        ),
        (
            "[filesystem.env_files]\nmax_depth = 65\n",
            &["filesystem.env_files.max_depth = 65:"],
        ),
        (
            "[filesystem.env_files]\nmax_dirs = 0\n",
            &["filesystem.env_files.max_dirs"],
        ),
        (
            "[env]\npass = [\"PATH\", \"BAD-NAME\"]\n",
            &["env.pass[1] = \"BAD-NAME\""],
        ),
        ("[env]\npass = [\"1X\"]\n", &["env.pass[0]"]),
        (
            "[env]\npass = [\"*\"]\n",
            &["env.pass[0] = \"*\"", "whole environment"],
        ),
        (
            "[env]\nset = { \"A B\" = \"x\" }\n",
            &["env.set.A B", "invalid variable name"],
        ),
        ("[env]\nset = { A = \"x\\u0000\" }\n", &["env.set.A", "NUL"]),
        (
            "[shell]\ncandidates = []\n",
            &["shell.candidates", "at least one"],
        ),
        (
            "[shell]\ncandidates = [\"sh\"]\n",
            &["shell.candidates[0] = \"sh\"", "absolute"],
        ),
        (
            "version = 1\ndescription = \"a\\u001b[2Jb\"\n",
            &["t.toml:2", "description", "control characters"],
        ),
    ];
    for (rest, parts) in cases {
        let text = if rest.starts_with("version") {
            rest.to_string()
        } else {
            format!("version = 1\nextends = \"dev\"\ndescription = \"x\"\n{rest}")
        };
        let e = f.error(&text);
        assert!(e.starts_with("invalid profile "), "{e}");
        assert!(e.contains("t.toml"), "{e}");
        assert_contains(&e, parts);
    }
}

#[test]
fn lookup_errors() {
    let f = Fixture::new();
    let e = f.load("nope").unwrap_err().to_string();
    assert_contains(
        &e,
        &["no profile named \"nope\"", "dev, readonly, ci", "profiles"],
    );
    let e = f.load("-x").unwrap_err().to_string();
    assert_contains(&e, &["invalid profile name \"-x\""]);

    // extends takes a name.
    let e = f.error("version = 1\nextends = \"../dev.toml\"\n");
    assert_contains(&e, &["t.toml:2", "extends = \"../dev.toml\"", "not a path"]);
    let e = f.error("version = 1\nextends = \"missing\"\n");
    assert_contains(&e, &["no profile named \"missing\""]);

    // A user profile cannot silently shadow a built-in.
    f.user("dev", "version = 1\n");
    let e = f.load("dev").unwrap_err().to_string();
    assert_contains(&e, &["dev.toml", "built-in profile \"dev\"", "rename"]);
    // ... but built-ins extend built-ins only, so readonly still loads.
    f.load("readonly").unwrap();
    fs::remove_file(f.ctx.user_dir.as_ref().unwrap().join("dev.toml")).unwrap();

    // Reading problems.
    let e = f.load("/nonexistent/p.toml").unwrap_err();
    assert!(matches!(e, ProfileError::Read { .. }), "{e}");
    assert_contains(&e.to_string(), &["cannot read profile /nonexistent/p.toml"]);
    let dir = f.ctx.home.join("dir.toml");
    fs::create_dir(&dir).unwrap();
    let e = f.load(dir.to_str().unwrap()).unwrap_err().to_string();
    assert_contains(&e, &["dir.toml", "not a regular file"]);
    let big = f.ctx.home.join("big.toml");
    fs::write(&big, vec![b'#'; (MAX_PROFILE_BYTES + 1) as usize]).unwrap();
    let e = f.load(big.to_str().unwrap()).unwrap_err().to_string();
    assert_contains(&e, &["big.toml", "larger than"]);
    let bin = f.ctx.home.join("bin.toml");
    fs::write(&bin, [0xff, 0xfe]).unwrap();
    let e = f.load(bin.to_str().unwrap()).unwrap_err().to_string();
    assert_contains(&e, &["bin.toml", "UTF-8"]);

    let bad_ctx = LoadContext {
        home: "relative".into(),
        ..f.ctx.clone()
    };
    let e = load("dev", &bad_ctx).unwrap_err().to_string();
    assert_contains(&e, &["home must be an absolute path", "relative"]);
}

#[test]
fn cycles_and_depth() {
    let f = Fixture::new();
    f.user("a", "version = 1\nextends = \"b\"\n");
    f.user("b", "version = 1\nextends = \"a\"\n");
    let e = f.load("a").unwrap_err().to_string();
    assert_contains(&e, &["cycle", "a.toml -> ", "b.toml -> ", "a.toml"]);
    f.user("self", "version = 1\nextends = \"self\"\n");
    assert_contains(&f.load("self").unwrap_err().to_string(), &["cycle"]);

    // p0 extends p1 ... p(n-1) extends dev: n + 1 profiles.
    let chain = |n: usize| {
        for i in 0..n {
            let parent = if i + 1 == n {
                "dev".to_owned()
            } else {
                format!("p{}", i + 1)
            };
            f.user(
                &format!("p{i}"),
                &format!("version = 1\nextends = \"{parent}\"\n"),
            );
        }
        f.load("p0")
    };
    chain(MAX_CHAIN - 1).unwrap();
    let e = chain(MAX_CHAIN).unwrap_err().to_string();
    assert_contains(&e, &["longer than 8", "p0.toml", "-> dev"]);
}

#[test]
fn profiles_in_the_workspace_are_not_found_by_name() {
    let f = Fixture::new();
    // The user profile directory is inside the workspace (e.g. workspace = $HOME).
    let ctx = LoadContext {
        user_dir: Some(f.ctx.workspace.join("profiles")),
        ..f.ctx.clone()
    };
    fs::create_dir(ctx.user_dir.as_ref().unwrap()).unwrap();
    let path = ctx.user_dir.as_ref().unwrap().join("team.toml");
    fs::write(&path, "version = 1\nextends = \"dev\"\n").unwrap();
    let e = load("team", &ctx).unwrap_err().to_string();
    assert_contains(
        &e,
        &[
            "refusing to load profile",
            "team.toml",
            "inside the workspace",
            "hint",
        ],
    );
    // An explicit path is the user's choice.
    let p = load(path.to_str().unwrap(), &ctx).unwrap();
    assert_eq!(p.profile, "team");

    // A symlink from outside into the workspace is resolved before the check.
    let outside = f.ctx.home.join("linked");
    fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&path, outside.join("team.toml")).unwrap();
    let ctx = LoadContext {
        user_dir: Some(outside),
        ..f.ctx.clone()
    };
    assert_contains(
        &load("team", &ctx).unwrap_err().to_string(),
        &["inside the workspace"],
    );
}

#[test]
fn list_shows_builtins_then_user_profiles() {
    let f = Fixture::new();
    f.user(
        "zeta",
        "version = 1\nextends = \"dev\"\ndescription = \"mine\"\n",
    );
    f.user("alpha", "version = 1\nextends = \"dev\"\nbad = 1\n");
    f.user("ci", "version = 1\n");
    let infos = list(&f.ctx);
    let names: Vec<_> = infos.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["dev", "readonly", "ci", "alpha", "ci", "zeta"]);
    assert!(
        infos[..3]
            .iter()
            .all(|i| i.problem.is_none() && i.description.is_some())
    );
    assert_eq!(infos[0].source, "builtin:dev");
    assert!(infos[3].problem.as_ref().unwrap().contains("bad"));
    assert!(infos[4].problem.as_ref().unwrap().contains("built-in"));
    assert_eq!(infos[5].description.as_deref(), Some("mine"));
    assert!(infos[5].source.ends_with("zeta.toml"));

    let no_dir = LoadContext {
        user_dir: None,
        ..f.ctx.clone()
    };
    assert_eq!(list(&no_dir).len(), 3);
}

#[test]
fn wildcards() {
    use super::merge::is_hidden;
    let hidden = |path: &str, pattern: &str| is_hidden(Path::new(path), Path::new(pattern));
    assert!(hidden("/etc/ssh/ssh_host_rsa_key", "/etc/ssh/*key*"));
    assert!(hidden("/etc/ssh/ssh_host_rsa_key.pub", "/etc/ssh/*key*"));
    assert!(hidden("/etc/ssh/key", "/etc/ssh/*key*"));
    assert!(!hidden("/etc/ssh/sshd_config", "/etc/ssh/*key*"));
    assert!(hidden("/h/.ssh", "/h/.ssh"));
    assert!(hidden("/h/.ssh/config", "/h/.ssh"));
    assert!(!hidden("/h", "/h/.ssh"));
    assert!(!hidden("/h/.sshx", "/h/.ssh"));
    assert!(hidden("/a/b", "/a/*"));
    assert!(hidden("/a/x.env.y", "/a/*.env*"));
    assert!(!hidden("/a/x.en", "/a/*.env*"));
}

// ---- properties ------------------------------------------------------------------------

/// Fragments that make random input look like profiles, so the generator
/// reaches validation and merging, not only the TOML parser.
fn tomlish() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("version = 1\n".to_owned()),
        Just("extends = \"dev\"\n".to_owned()),
        Just("extends = \"t\"\n".to_owned()),
        Just("[filesystem]\n".to_owned()),
        Just("[filesystem.env_files]\n".to_owned()),
        Just("[limits]\n".to_owned()),
        Just("[env]\n".to_owned()),
        Just("[shell]\n".to_owned()),
        "(read|write|hide|protect|pass|skip_dirs|allow|candidates) = \\[\"[~/{}a-z.*]{0,12}\"\\]\n",
        "(timeout|file_size|tmp_size|home_size|tier|mode|workspace) = \"[0-9a-zA-Z.-]{0,8}\"\n",
        "(open_files|processes|max_depth|max_dirs|version) = -?[0-9]{1,20}\n",
        "set = \\{ [A-Z_]{1,4} = \"[a-z]{0,4}\" \\}\n",
        any::<String>(),
    ];
    prop::collection::vec(fragment, 0..12).prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn load_never_panics(text in tomlish()) {
        let f = Fixture::new();
        f.user("t", &text);
        let _ = f.load("t");
    }

    #[test]
    fn load_of_arbitrary_text_never_panics(text in any::<String>()) {
        let f = Fixture::new();
        f.user("t", &text);
        let _ = f.load("t");
    }

    #[test]
    fn parse_duration_never_panics(text in any::<String>()) {
        let _ = parse_duration(&text);
    }

    #[test]
    fn parse_duration_unitish_never_panics(text in "[0-9dhmsx]{0,24}") {
        let _ = parse_duration(&text);
    }

    #[test]
    fn parse_size_never_panics(text in any::<String>()) {
        let _ = parse_size(&text);
    }

    #[test]
    fn durations_round_trip(h in 0u64..1000, m in 0u64..60, s in 0u64..60) {
        let d = parse_duration(&format!("{h}h{m}m{s}s")).unwrap();
        prop_assert_eq!(d, Duration::from_secs(h * 3600 + m * 60 + s));
        prop_assert_eq!(parse_duration(&s.to_string()).unwrap(), Duration::from_secs(s));
    }

    #[test]
    fn sizes_round_trip(n in 0u64..(1 << 20)) {
        prop_assert_eq!(parse_size(&format!("{n}M")).unwrap(), n << 20);
        prop_assert_eq!(parse_size(&n.to_string()).unwrap(), n);
    }
}

#[test]
fn audit_file_key() {
    let f = Fixture::new();
    assert_eq!(f.load("dev").unwrap().audit, None, "off by default");
    f.user(
        "audited",
        "version = 1\nextends = \"dev\"\n[audit]\nfile = \"~/.local/state/shellcage/audit.jsonl\"\n",
    );
    assert_eq!(
        f.load("audited").unwrap().audit,
        Some(f.ctx.home.join(".local/state/shellcage/audit.jsonl"))
    );
    let err = f.error("version = 1\nextends = \"dev\"\n[audit]\nfile = \"relative.jsonl\"\n");
    assert_contains(&err, &["audit.file", "relative.jsonl", "absolute"]);
    let err = f.error("version = 1\nextends = \"dev\"\n[audit]\npath = \"/x\"\n");
    assert_contains(&err, &["path"]);
}

#[test]
fn home_key() {
    let f = Fixture::new();
    f.user(
        "fresh",
        "version = 1\nextends = \"dev\"\n[filesystem]\nhome = \"fresh\"\n[limits]\nkept_home_size = \"64M\"\n",
    );
    let p = f.load("fresh").unwrap();
    assert_eq!(p.home_mode, HomeMode::Fresh);
    assert_eq!(p.limits.kept_home_size, 64 << 20);
    let err = f.error("version = 1\nextends = \"dev\"\n[filesystem]\nhome = \"kept\"\n");
    assert_contains(&err, &["home", "kept"]);
    let err = f.error("version = 1\nextends = \"dev\"\n[limits]\nkept_home_size = \"0\"\n");
    assert_contains(&err, &["limits.kept_home_size", "greater than zero"]);
}

#[test]
fn devices_gpu_key_and_flag() {
    let f = Fixture::new();
    for name in builtin_names() {
        let p = f.load(name).unwrap();
        assert!(!p.devices.gpu, "{name}: off in every built-in");
    }
    f.user(
        "gpu",
        "version = 1\nextends = \"dev\"\n[devices]\ngpu = true\n",
    );
    let p = f.load("gpu").unwrap();
    assert!(p.devices.gpu && !p.devices.gpu_from_command_line);
    // A child turns it off again (a scalar: the later layer wins).
    f.user(
        "nogpu",
        "version = 1\nextends = \"gpu\"\n[devices]\ngpu = false\n",
    );
    assert!(!f.load("nogpu").unwrap().devices.gpu);
    // --gpu over a profile that says false; marked as the command line's.
    let cli = CommandLine {
        gpu: true,
        ..CommandLine::default()
    };
    let p = load_with("nogpu", &f.ctx, Some(&cli)).unwrap();
    assert!(p.devices.gpu && p.devices.gpu_from_command_line);
    // No --gpu: the profile decides.
    let p = load_with("gpu", &f.ctx, Some(&CommandLine::default())).unwrap();
    assert!(p.devices.gpu && !p.devices.gpu_from_command_line);
    // Unknown keys and wrong types name the line.
    assert_contains(
        &f.error("version = 1\nextends = \"dev\"\n[devices]\nkvm = true\n"),
        &["kvm", "line 4"],
    );
    assert_contains(
        &f.error("version = 1\nextends = \"dev\"\n[devices]\ngpu = \"yes\"\n"),
        &["gpu", "line 4"],
    );
}

#[test]
fn cgroup_limits_and_their_mode() {
    let f = Fixture::new();
    f.user(
        "capped",
        "version = 1\nextends = \"dev\"\n[limits]\nmemory = \"4G\"\ncpu = \"0.5\"\nmode = \"required\"\n",
    );
    let p = f.load("capped").unwrap();
    assert_eq!(p.limits.memory, Some(4 << 30));
    assert_eq!(p.limits.cpu_millis, Some(500));
    assert_eq!(p.limits.processes, Some(4096), "inherited from dev");
    for r in [Resource::Memory, Resource::Cpu, Resource::Processes] {
        assert_eq!(p.limits.requirement(r), Requirement::Required);
    }
    // "none" removes an inherited cap; the mode is inherited like any key.
    f.user(
        "uncapped",
        "version = 1\nextends = \"capped\"\n[limits]\nmemory = \"none\"\ncpu = \"none\"\n",
    );
    let p = f.load("uncapped").unwrap();
    assert_eq!((p.limits.memory, p.limits.cpu_millis), (None, None));
    assert_eq!(p.limits.mode, Requirement::Required);
    // A mode that is not one of the two is refused with the line.
    assert_contains(
        &f.error("version = 1\nextends = \"dev\"\n[limits]\nmode = \"strict\"\n"),
        &["line 4", "strict"],
    );
}

#[test]
fn limit_flags_are_checked_and_required() {
    let f = Fixture::new();
    let flags = |memory: Option<&str>, cpu: Option<&str>, processes: Option<&str>| CommandLine {
        memory: memory.map(String::from),
        cpu: cpu.map(String::from),
        processes: processes.map(String::from),
        ..CommandLine::default()
    };
    let p = load_with(
        "dev",
        &f.ctx,
        Some(&flags(Some("1G"), Some("2"), Some("64"))),
    )
    .unwrap();
    assert_eq!(
        (p.limits.memory, p.limits.cpu_millis, p.limits.processes),
        (Some(1 << 30), Some(2000), Some(64))
    );
    assert_eq!(
        p.limits.from_command_line,
        [Resource::Memory, Resource::Cpu, Resource::Processes]
    );
    // --memory none lifts the profile's cap and requires nothing; so does
    // --processes none (the TOML key takes numbers only).
    let p = load_with("ci", &f.ctx, Some(&flags(Some("none"), None, Some("none")))).unwrap();
    assert_eq!((p.limits.memory, p.limits.processes), (None, None));
    assert!(p.limits.from_command_line.is_empty());
    for (cli, parts) in [
        (
            flags(Some("lots"), None, None),
            ["--memory lots", "invalid size"],
        ),
        (flags(None, Some("0"), None), ["--cpu 0", "0.01 cores"]),
        (
            flags(None, None, Some("-1")),
            ["--processes -1", "whole number"],
        ),
        (
            flags(None, None, Some("0")),
            ["--processes 0", "greater than zero"],
        ),
    ] {
        let e = load_with("dev", &f.ctx, Some(&cli))
            .unwrap_err()
            .to_string();
        assert_contains(&e, &parts);
    }
}

#[test]
fn cpu_values() {
    assert_eq!(parse_cpu("2"), Ok(2000));
    assert_eq!(parse_cpu("0.5"), Ok(500));
    assert_eq!(parse_cpu(".25"), Ok(250));
    assert_eq!(parse_cpu("1.125"), Ok(1125));
    assert_eq!(parse_cpu("0.01"), Ok(CPU_MIN_MILLIS));
    for bad in [
        "", ".", "1.", "-1", "1e3", "0", "0.001", "1.0001", "2 ", "4097", "x",
    ] {
        assert!(parse_cpu(bad).is_err(), "{bad:?} accepted");
    }
    assert!(parse_cpu("0.005").unwrap_err().contains("0.01"));
}

#[test]
fn env_tools_key() {
    let f = Fixture::new();
    assert!(
        f.load("dev").unwrap().env.tools,
        "dev passes the tools' settings"
    );
    f.user(
        "notools",
        "version = 1\nextends = \"dev\"\n[env]\ntools = false\n",
    );
    assert!(!f.load("notools").unwrap().env.tools);
    let err = f.error("version = 1\nextends = \"dev\"\n[env]\ntools = \"yes\"\n");
    assert_contains(&err, &["tools"]);
}

// ---- the command line as the last layer ------------------------------------------------

#[test]
fn the_command_line_is_merged_last() {
    let f = Fixture::new();
    let tools = f.ctx.workspace.parent().unwrap().join("tools");
    fs::create_dir_all(&tools).unwrap();
    let cli = CommandLine {
        read: vec![("../tools".into(), tools.clone())],
        write: vec![("/usr".into(), PathBuf::from("/usr"))],
        network: Some(NetMode::Loopback),
        home: Some(HomeMode::Fresh),
        tier: Some(TierChoice::Auto),
        env: vec!["FOO=bar".into(), "TERM".into()],
        timeout: Some("90s".into()),
        memory: Some("4G".into()),
        cpu: None,
        processes: None,
        report: true,
        audit: Some(PathBuf::from("/var/log/a.jsonl")),
        ..CommandLine::default()
    };
    let p = load_with("readonly", &f.ctx, Some(&cli)).unwrap();
    let base = f.load("readonly").unwrap();
    assert_eq!(
        (p.network, p.tier, p.report),
        (NetMode::Loopback, TierChoice::Auto, true)
    );
    assert_eq!(p.limits.timeout, Some(Duration::from_secs(90)));
    assert_eq!(
        (base.home_mode, p.home_mode),
        (HomeMode::Persistent, HomeMode::Fresh)
    );
    // A limit from the command line is required, the profile's keep its mode.
    assert_eq!(p.limits.memory, Some(4 << 30));
    assert_eq!(
        p.limits.requirement(Resource::Memory),
        Requirement::Required
    );
    assert_eq!(
        p.limits.requirement(Resource::Processes),
        Requirement::BestEffort
    );
    assert_eq!(p.audit, Some(PathBuf::from("/var/log/a.jsonl")));
    assert_eq!(
        p.env.explicit,
        vec![("FOO".into(), Some("bar".into())), ("TERM".into(), None)]
    );
    // The profile's paths first, unchanged; then the command line's, required.
    assert_eq!(p.paths[..base.paths.len()], base.paths[..]);
    assert_eq!(
        p.paths[base.paths.len()..],
        [
            PathRule {
                path: tools,
                access: Access::Read,
                optional: false,
            },
            PathRule {
                path: PathBuf::from("/usr"),
                access: Access::Write,
                optional: false,
            },
        ]
    );
    // The rest is the profile's.
    assert_eq!(
        (p.hide, p.protect, p.shell),
        (base.hide, base.protect, base.shell)
    );
}

#[test]
fn command_line_values_are_checked_like_a_profiles() {
    let f = Fixture::new();
    let err = |cli: CommandLine| {
        load_with("dev", &f.ctx, Some(&cli))
            .unwrap_err()
            .to_string()
    };
    let ssh = f.ctx.home.join(".ssh");
    let msg = err(CommandLine {
        read: vec![("~/.ssh".into(), ssh.clone())],
        ..CommandLine::default()
    });
    assert_eq!(
        msg,
        format!("--read ~/.ssh: hidden by the profile ({})", ssh.display())
    );
    let msg = err(CommandLine {
        write: vec![("k".into(), ssh.join("id_ed25519"))],
        ..CommandLine::default()
    });
    assert!(
        msg.starts_with("--write k: hidden by the profile ("),
        "{msg}"
    );
    assert_eq!(
        err(CommandLine {
            env: vec!["1BAD=x".into()],
            ..CommandLine::default()
        }),
        "--env 1BAD=x: invalid variable name '1BAD'"
    );
    assert_contains(
        &err(CommandLine {
            timeout: Some("10q".into()),
            ..CommandLine::default()
        }),
        &["--timeout 10q: ", "unknown unit"],
    );
}

#[test]
fn workspace_overlay_in_a_profile_and_on_the_command_line() {
    let f = Fixture::new();
    let dev = f.load("dev").unwrap();
    assert_eq!(dev.workspace_layer, None);
    // The profile key.
    f.user(
        "ov",
        "version = 1\nextends = \"dev\"\n[filesystem]\nworkspace = \"overlay\"\n",
    );
    let p = f.load("ov").unwrap();
    assert_eq!(p.workspace_access, Access::Write);
    assert_eq!(p.workspace_layer.as_deref(), Some("default"));
    // --overlay over a read-only profile; --layer names the layer and implies it.
    for (cli, want) in [
        (
            CommandLine {
                overlay: true,
                ..CommandLine::default()
            },
            "default",
        ),
        (
            CommandLine {
                layer: Some("try-2".into()),
                ..CommandLine::default()
            },
            "try-2",
        ),
    ] {
        let p = load_with("readonly", &f.ctx, Some(&cli)).unwrap();
        assert_eq!(p.workspace_access, Access::Write);
        assert_eq!(p.workspace_layer.as_deref(), Some(want));
    }
    let p = load_with(
        "ov",
        &f.ctx,
        Some(&CommandLine {
            layer: Some("b".into()),
            ..CommandLine::default()
        }),
    )
    .unwrap();
    assert_eq!(p.workspace_layer.as_deref(), Some("b"));
    // Bad values name the file and line, or the flag.
    assert_contains(
        &f.error("version = 1\nextends = \"dev\"\n[filesystem]\nworkspace = \"overlayfs\"\n"),
        &["t.toml", "line 4", "overlayfs", "overlay"],
    );
    let msg = load_with(
        "dev",
        &f.ctx,
        Some(&CommandLine {
            layer: Some("../x".into()),
            ..CommandLine::default()
        }),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        msg,
        "--layer ../x: invalid layer name: use up to 64 letters, digits, '-', '_' and '.', starting with a letter or digit"
    );
}

#[test]
fn required_keys_come_from_the_profile_not_the_command_line() {
    let f = Fixture::new();
    let text = builtin_text("dev").unwrap().replace("tier = \"full\"", "");
    f.user("notier", &text);
    let cli = CommandLine {
        tier: Some(TierChoice::Full),
        ..CommandLine::default()
    };
    let msg = load_with("notier", &f.ctx, Some(&cli))
        .unwrap_err()
        .to_string();
    assert_contains(&msg, &["tier is not set"]);
}

// ---- [network]: the proxy's lists, --allow-host, --publish --------------------------------

#[test]
fn network_lists_are_checked_by_the_proxys_parser_with_file_and_line() {
    let f = Fixture::new();
    f.user(
        "px",
        "version = 1\nextends = \"dev\"\n[network]\nmode = \"proxy\"\nallow = [\"pkgs.example.org\", \"*.example.net\", \"git.example.com:22\"]\ndeny = [\"uploads.example.net\"]\nallow_private = [\"10.1.2.0/24\"]\n",
    );
    let p = f.load("px").unwrap();
    assert_eq!(p.network, NetMode::Proxy);
    assert_eq!(
        p.egress.allow,
        ["pkgs.example.org", "*.example.net", "git.example.com:22"]
    );
    assert_eq!(p.egress.deny, ["uploads.example.net"]);
    assert_eq!(p.egress.allow_private, ["10.1.2.0/24"]);
    let head = "version = 1\nextends = \"dev\"\n[network]\nmode = \"proxy\"\n";
    for (body, parts) in [
        (
            "allow = [\"ok.example\",\n  \"*.com\"]\n",
            &[
                "t.toml:6",
                "network.allow[1] = \"*.com\"",
                "at least two labels",
            ][..],
        ),
        ("allow = [\"a.example:0\"]\n", &["t.toml:5", "port must be"]),
        (
            "deny = [\"ex ample.org\"]\n",
            &["network.deny[0]", "only letters"],
        ),
        (
            "allow_private = [\"10.1.2.3/24\"]\n",
            &["network.allow_private[0]", "host bits", "10.1.2.0/24"],
        ),
        ("allow = [\"::1\"]\n", &["more than one ':'"]),
    ] {
        assert_contains(&f.error(&format!("{head}{body}")), parts);
    }
    // An allow list in a profile whose mode is not proxy would do nothing: refused.
    assert_contains(
        &f.error("version = 1\nextends = \"dev\"\n[network]\nallow = [\"a.example\"]\n"),
        &[
            "t.toml:4",
            "network.allow[0]",
            "only in network mode \"proxy\"",
            "mode here is \"none\"",
        ],
    );
    // A child may turn a proxy parent's network off; the parent's list stays, unused.
    f.user(
        "off",
        "version = 1\nextends = \"px\"\n[network]\nmode = \"none\"\n",
    );
    assert_eq!(f.load("off").unwrap().network, NetMode::None);
}

#[test]
fn allow_host_switches_none_to_proxy_and_refuses_other_modes() {
    let f = Fixture::new();
    let cli = |net: Option<NetMode>, hosts: &[&str]| CommandLine {
        network: net,
        allow_host: hosts.iter().map(|h| h.to_string()).collect(),
        ..CommandLine::default()
    };
    let p = load_with(
        "dev",
        &f.ctx,
        Some(&cli(None, &["a.example", "*.b.example:8443"])),
    )
    .unwrap();
    assert_eq!(p.network, NetMode::Proxy);
    assert_eq!(p.egress.allow, ["a.example", "*.b.example:8443"]);
    let p = load_with(
        "dev",
        &f.ctx,
        Some(&cli(Some(NetMode::Proxy), &["a.example"])),
    )
    .unwrap();
    assert_eq!(p.network, NetMode::Proxy);
    let e = load_with(
        "dev",
        &f.ctx,
        Some(&cli(Some(NetMode::Host), &["a.example"])),
    )
    .unwrap_err()
    .to_string();
    assert_contains(&e, &["--allow-host a.example", "not --net host"]);
    f.user(
        "lo",
        "version = 1\nextends = \"dev\"\n[network]\nmode = \"loopback\"\n",
    );
    let e = load_with("lo", &f.ctx, Some(&cli(None, &["a.example"])))
        .unwrap_err()
        .to_string();
    assert_contains(&e, &["profile's mode is loopback", "--net proxy"]);
    let e = load_with("dev", &f.ctx, Some(&cli(None, &["bad host"])))
        .unwrap_err()
        .to_string();
    assert_contains(&e, &["--allow-host bad host", "only letters"]);
    // Without --allow-host, --net proxy alone: the proxy with an empty list (all refused).
    let p = load_with("dev", &f.ctx, Some(&cli(Some(NetMode::Proxy), &[]))).unwrap();
    assert_eq!((p.network, p.egress.allow.len()), (NetMode::Proxy, 0));
}

#[test]
fn publish_specs() {
    use super::validate::parse_publish;
    let p = |s: &str| parse_publish(s).map(|p| (p.host.to_string(), p.port, p.sandbox_port));
    assert_eq!(p("8080"), Ok(("127.0.0.1".into(), 8080, 8080)));
    assert_eq!(p("8080:3000"), Ok(("127.0.0.1".into(), 8080, 3000)));
    assert_eq!(p("127.0.0.2:8080"), Ok(("127.0.0.2".into(), 8080, 8080)));
    assert_eq!(p("127.0.0.1:9000:80"), Ok(("127.0.0.1".into(), 9000, 80)));
    assert_eq!(p("[::1]:8080:81"), Ok(("::1".into(), 8080, 81)));
    for (bad, why) in [
        ("0.0.0.0:8080", "not a loopback address"),
        ("192.168.1.5:8080", "not a loopback address"),
        ("0", "PORT must be a port"),
        ("8080:0", "SANDBOX_PORT must be"),
        ("x", "PORT must be"),
        ("[::1]8080", "[ADDR]:PORT"),
        ("1.2.3:80", "not an IP address"),
        ("80:80:80", "SANDBOX_PORT must be"),
    ] {
        let e = parse_publish(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
    let f = Fixture::new();
    let cli = |net: Option<NetMode>, publish: &[&str]| CommandLine {
        network: net,
        publish: publish.iter().map(|h| h.to_string()).collect(),
        ..CommandLine::default()
    };
    let pol = load_with("dev", &f.ctx, Some(&cli(None, &["8080", "9000:80"]))).unwrap();
    assert_eq!(pol.publish.len(), 2);
    assert_eq!(pol.network, NetMode::None);
    let e = load_with(
        "dev",
        &f.ctx,
        Some(&cli(None, &["8080", "127.0.0.1:8080:81"])),
    )
    .unwrap_err()
    .to_string();
    assert_contains(&e, &["--publish 127.0.0.1:8080:81", "already published"]);
    let e = load_with("dev", &f.ctx, Some(&cli(Some(NetMode::Host), &["8080"])))
        .unwrap_err()
        .to_string();
    assert_contains(&e, &["--publish 8080", "nothing to publish"]);
}

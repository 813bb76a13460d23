//! The judge against the real built-in `dev` profile, on a temporary home and
//! workspace laid out like a user's.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::*;
use crate::cli::RunOpts;
use crate::profile::{LoadContext, load};

struct Fixture {
    _dir: tempfile::TempDir,
    home: PathBuf,
    ws: PathBuf,
    view: PolicyView,
}

fn fixture_with(profile_text: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let home = root.join("home");
    let ws = root.join("proj");
    for d in [
        "home/.ssh",
        "home/.cargo/bin",
        "proj/.git/hooks",
        "proj/src",
        "proj/a/b/c/d/e",
        "proj/node_modules/x",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(home.join(".ssh/id_ed25519"), "KEY").unwrap();
    std::fs::write(home.join(".cargo/credentials.toml"), "TOKEN").unwrap();
    std::fs::write(ws.join(".env"), "A=1").unwrap();
    let name = match profile_text {
        Some(text) => {
            let p = root.join("custom.toml");
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        }
        None => "dev".into(),
    };
    let ctx = LoadContext {
        home: home.clone(),
        workspace: ws.clone(),
        user_dir: None,
    };
    let policy = load(&name, &ctx).unwrap();
    let view = view_of(&policy, &RunOpts::default());
    Fixture {
        _dir: dir,
        home,
        ws,
        view,
    }
}

fn fixture() -> Fixture {
    fixture_with(None)
}

fn verdict(j: &Judge<'_>, p: &Path) -> Verdict {
    j.path(p).verdict
}

#[test]
fn workspace_protected_and_env_files() {
    let f = fixture();
    let j = Judge::new(&f.view);
    assert_eq!(verdict(&j, &f.ws.join("src/main.rs")), Verdict::Writable);
    assert_eq!(verdict(&j, &f.ws.join("new/dir/file")), Verdict::Writable);
    for p in [
        ".git/hooks/pre-commit",
        ".git/config",
        ".git/commondir",
        ".claude/settings.json",
        ".mcp.json",
        ".envrc",
        ".vscode/tasks.json",
        "new.code-workspace",
    ] {
        let found = j.path(&f.ws.join(p));
        assert_eq!(found.verdict, Verdict::Protected, "{p}");
        assert!(
            j.describe(&found).contains("dev.toml (built-in):"),
            "{p}: {}",
            j.describe(&found)
        );
    }
    assert_eq!(verdict(&j, &f.ws.join(".git/HEAD")), Verdict::Writable);
    // A root-level pattern covers root names only.
    assert_eq!(
        verdict(&j, &f.ws.join("src/x.code-workspace")),
        Verdict::Writable
    );
    let env = j.path(&f.ws.join(".env"));
    assert_eq!(
        env,
        Finding::new(Verdict::Hidden, Rule::EnvFile { scanned: true })
    );
    assert_eq!(verdict(&j, &f.ws.join("src/.env.local")), Verdict::Hidden);
    assert_eq!(verdict(&j, &f.ws.join(".env.example")), Verdict::Writable);
    // The scan covers any depth; a skipped directory is visible inside, and said so.
    assert_eq!(verdict(&j, &f.ws.join("a/b/c/d/e/f/.env")), Verdict::Hidden);
    for p in ["node_modules/x/.env", "a/target/.env"] {
        let found = j.path(&f.ws.join(p));
        assert_eq!(found.rule, Rule::EnvFile { scanned: false }, "{p}");
        assert!(found.is_env_file());
        assert!(j.describe(&found).contains("NOT masked"), "{p}");
    }
}

#[test]
fn home_tmp_system_and_devices() {
    let f = fixture();
    let j = Judge::new(&f.view);
    let key = j.path(&f.home.join(".ssh/id_ed25519"));
    assert_eq!(key.verdict, Verdict::Hidden);
    let text = j.describe(&key);
    assert!(
        text.starts_with("hidden: filesystem.hide \"~/.ssh\" (profiles/dev.toml (built-in):"),
        "{text}"
    );
    assert_eq!(
        verdict(&j, &f.home.join(".cargo/credentials.toml")),
        Verdict::Hidden
    );
    assert_eq!(
        verdict(&j, &f.home.join(".cargo/bin/cargo")),
        Verdict::ReadOnly
    );
    let notes = j.path(&f.home.join("notes.txt"));
    assert_eq!(notes, Finding::new(Verdict::Absent, Rule::PrivateHome));
    assert_eq!(
        j.path(Path::new("/tmp/elsewhere")),
        Finding::new(Verdict::Absent, Rule::PrivateTmp)
    );
    assert_eq!(verdict(&j, Path::new("/etc/passwd")), Verdict::ReadOnly);
    assert_eq!(verdict(&j, Path::new("/etc/shadow")), Verdict::Hidden);
    assert_eq!(
        verdict(&j, Path::new("/etc/ssh/ssh_host_ed25519_key")),
        Verdict::Hidden
    );
    assert_eq!(
        j.path(Path::new("/proc/self/environ")),
        Finding::new(Verdict::Absent, Rule::PrivateProc)
    );
    assert_eq!(verdict(&j, Path::new("/dev/null")), Verdict::Writable);
    assert_eq!(verdict(&j, Path::new("/dev/sda")), Verdict::Absent);
    assert_eq!(verdict(&j, Path::new("/dev/shm/x")), Verdict::Absent);
    assert_eq!(
        j.path(Path::new("/srv/data")),
        Finding::new(Verdict::Absent, Rule::NotListed)
    );
}

#[test]
fn symlinks_dotdot_and_relative_paths_resolve_first() {
    let f = fixture();
    let j = Judge::new(&f.view);
    symlink(f.home.join(".ssh"), f.ws.join("keys")).unwrap();
    symlink("src", f.ws.join("code")).unwrap();
    let judge_all = |raw: &str| -> Vec<Verdict> {
        let r = resolve(raw, &f.ws.join("src"), &f.home).unwrap();
        r.candidates.iter().map(|c| verdict(&j, c)).collect()
    };
    // ../keys/id_ed25519 from src: through the link into ~/.ssh.
    assert!(judge_all("../keys/id_ed25519").contains(&Verdict::Hidden));
    // keys/../.env: the kernel lands in ~/.env (home: absent), lexically ws/.env (hidden).
    let v = judge_all("../keys/../.env");
    assert!(
        v.contains(&Verdict::Hidden) && v.contains(&Verdict::Absent),
        "{v:?}"
    );
    assert_eq!(judge_all("../code/lib.rs"), vec![Verdict::Writable]);
    assert_eq!(judge_all("~/.ssh/id_ed25519"), vec![Verdict::Hidden]);
    assert_eq!(
        judge_all("../../../../../../etc/shadow"),
        vec![Verdict::Hidden]
    );
    // A symlinked protected path is protected at its target too.
    std::fs::create_dir_all(f.ws.join("real-hooks")).unwrap();
    std::fs::remove_dir(f.ws.join(".git/hooks")).unwrap();
    symlink(f.ws.join("real-hooks"), f.ws.join(".git/hooks")).unwrap();
    let j2 = Judge::new(&f.view);
    assert_eq!(
        verdict(&j2, &f.ws.join("real-hooks/pre-commit")),
        Verdict::Protected
    );
}

#[test]
fn git_file_as_worktree_marker_is_protected() {
    let f = fixture();
    std::fs::remove_dir_all(f.ws.join(".git")).unwrap();
    std::fs::write(f.ws.join(".git"), "gitdir: /elsewhere\n").unwrap();
    let j = Judge::new(&f.view);
    assert_eq!(verdict(&j, &f.ws.join(".git")), Verdict::Protected);
}

#[test]
fn search_roots_and_exclusions() {
    let f = fixture();
    let j = Judge::new(&f.view);
    assert_eq!(
        j.excluded_below(&f.ws).unwrap(),
        vec!["!.env".to_string(), "!.env.*".to_string()]
    );
    let cargo = j.excluded_below(&f.home.join(".cargo")).unwrap();
    assert!(
        cargo.contains(&"!credentials.toml".to_string()),
        "{cargo:?}"
    );
    let etc = j.excluded_below(Path::new("/etc")).unwrap();
    assert!(etc.contains(&"!shadow".to_string()) && etc.contains(&"!*key*".to_string()));
    assert_eq!(
        j.excluded_below(Path::new("/")).unwrap_err().rule,
        Rule::PrivateTmp
    );
}

#[test]
fn hosts_by_network_mode() {
    let f = fixture();
    let j = Judge::new(&f.view);
    let r = j.host("registry.example.org");
    assert_eq!(r.verdict, Verdict::Refused);
    assert!(
        j.describe(&r).contains("network.mode \"none\""),
        "{}",
        j.describe(&r)
    );
    assert!(j.describe(&r).contains("dev.toml (built-in):"));
    let mut lo = f.view.clone();
    lo.network.mode = ViewNet::Loopback;
    let j = Judge::new(&lo);
    assert_eq!(j.host("127.0.0.1").verdict, Verdict::Allowed);
    assert_eq!(j.host("[::1]").verdict, Verdict::Allowed);
    assert_eq!(j.host("example.org").verdict, Verdict::Refused);
    assert_eq!(j.host_from_outside("localhost").verdict, Verdict::Refused);
    let mut proxy = f.view.clone();
    proxy.network.allow_hosts = vec!["*.example.org".into()];
    let j = Judge::new(&proxy);
    assert_eq!(
        j.host_from_outside("pkg.example.org").verdict,
        Verdict::Allowed
    );
    assert_eq!(j.host_from_outside("example.net").verdict, Verdict::Refused);
    // In proxy mode the proxy's own rules judge, ports included, with the fix named.
    proxy.network.mode = ViewNet::Proxy;
    proxy.network.deny_hosts = vec!["up.example.org".into()];
    let j = Judge::new(&proxy);
    assert_eq!(j.host("pkg.example.org:443").verdict, Verdict::Allowed);
    assert_eq!(j.host("127.0.0.1:8080").verdict, Verdict::Refused);
    let port = j.host("pkg.example.org:22");
    assert_eq!(port.verdict, Verdict::Refused);
    assert!(
        j.describe(&port)
            .contains("fix: --allow-host pkg.example.org:22"),
        "{}",
        j.describe(&port)
    );
    let other = j.host("example.net");
    assert!(
        j.describe(&other)
            .contains("fix: --allow-host example.net or"),
        "{}",
        j.describe(&other)
    );
    assert_eq!(
        j.host("up.example.org").rule,
        Rule::DenyHost("up.example.org".into())
    );
    let mut host = f.view.clone();
    host.network.mode = ViewNet::Host;
    assert_eq!(
        Judge::new(&host).host_from_outside("example.net").verdict,
        Verdict::Allowed
    );
}

#[test]
fn user_profile_rules_name_their_file_and_line() {
    let text = "version = 1\nextends = \"dev\"\n[filesystem]\nhide = [\"{workspace}/secrets\"]\nprotect = [\"Makefile\"]\n";
    let f = fixture_with(Some(text));
    let j = Judge::new(&f.view);
    let s = j.path(&f.ws.join("secrets/db.txt"));
    assert_eq!(s.verdict, Verdict::Hidden);
    assert!(
        j.describe(&s).contains("custom.toml:4"),
        "{}",
        j.describe(&s)
    );
    let m = j.path(&f.ws.join("Makefile"));
    assert_eq!(m.verdict, Verdict::Protected);
    assert!(
        j.describe(&m).contains("custom.toml:5"),
        "{}",
        j.describe(&m)
    );
}

#[test]
fn policy_file_round_trips_and_names_no_contents() {
    let f = fixture();
    let json = f.view.to_json();
    assert!(!json.contains("KEY") && !json.contains("TOKEN") && !json.contains("A=1"));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.json");
    std::fs::write(&p, &json).unwrap();
    assert_eq!(PolicyView::read(&p).unwrap(), f.view);
    std::fs::write(&p, json.replace("\"format\": 1", "\"format\": 9")).unwrap();
    assert!(PolicyView::read(&p).unwrap_err().contains("format 9"));
}

#[test]
fn gpu_nodes_are_writable_devices_and_the_rest_of_dev_is_not() {
    let mut f = fixture();
    f.view.gpu_nodes = vec!["dri/renderD128".into(), "nvidia0".into()];
    let j = Judge::new(&f.view);
    let node = j.path(Path::new("/dev/dri/renderD128"));
    assert_eq!(node, Finding::new(Verdict::Writable, Rule::GpuNode));
    assert!(
        j.describe(&node).contains("[devices] gpu"),
        "{}",
        j.describe(&node)
    );
    assert_eq!(
        j.path(Path::new("/dev/nvidia0")),
        Finding::new(Verdict::Writable, Rule::GpuNode)
    );
    for other in ["/dev/mem", "/dev/dri/card0", "/dev/sda"] {
        assert_eq!(
            j.path(Path::new(other)),
            Finding::new(Verdict::Absent, Rule::PrivateDev),
            "{other}"
        );
    }
    // Without [devices] gpu the view names none (and the file omits the key).
    let plain = fixture();
    assert!(plain.view.gpu_nodes.is_empty());
    assert!(!plain.view.to_json().contains("gpu_nodes"));
}

//! The config-file table on temporary directories: no privilege, nothing
//! mounted, the mount plan and the copies looked at.

use std::os::unix::fs::symlink;

use super::*;
use crate::policy::{Access, HideRule, PathRule, Policy};
use crate::sandbox::mount::{self, Op};

const TOKEN: &str = "cio_FAKEtoken0123456789abcdefABCDEF";

struct Root {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        let path = std::fs::canonicalize(dir.path()).unwrap();
        for d in ["ws", "home"] {
            std::fs::create_dir(path.join(d)).unwrap();
        }
        Root { _dir: dir, path }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
    fn home(&self) -> PathBuf {
        self.p("home")
    }
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.p(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
    /// A dev-like policy: home a tmpfs, `~/.cargo` and `~/.gitconfig` read-only,
    /// `~/.config` writable, `~/.npmrc` hidden.
    fn policy(&self) -> Policy {
        let mut p = Policy::for_tests(&self.p("ws"), &self.home());
        let rule = |rel: &str, access| PathRule {
            path: self.p(rel),
            access,
            optional: true,
        };
        p.paths = vec![
            rule("home/.cargo", Access::Read),
            rule("home/.gitconfig", Access::Read),
            rule("home/.config", Access::Write),
        ];
        p.hide = vec![HideRule {
            pattern: self.p("home/.npmrc"),
        }];
        p
    }
}

fn vars() -> BTreeMap<String, String> {
    BTreeMap::from([("PATH".to_string(), "/nonexistent".to_string())])
}

fn file_at<'a>(plan: &'a MountPlan, at: &Path) -> Option<&'a str> {
    plan.ops.iter().find_map(|op| match op {
        Op::File { at: a, bytes, .. } if a == at => std::str::from_utf8(bytes).ok(),
        _ => None,
    })
}

fn masked(plan: &MountPlan, at: &Path) -> bool {
    plan.ops
        .iter()
        .any(|op| matches!(op, Op::Mask { at: a, .. } if a == at))
}

fn verdict<'a>(c: &'a Configs, path: &Path) -> &'a Verdict {
    &c.files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{} not found in {c:?}", path.display()))
        .verdict
}

#[test]
fn the_sandbox_shows_copies_without_tokens_where_the_tools_look() {
    let r = Root::new();
    // Visible read-only with a token: the leak of today, now a copy.
    let cargo = r.write(
        "home/.cargo/config.toml",
        &format!("[build]\njobs = 2\n[registries.corp]\nindex = \"sparse+https://example.org/\"\ntoken = \"{TOKEN}\"\n"),
    );
    // Through a dotfile symlink: the copy goes over the target the sandbox binds.
    let real_git = r.write(
        "home/dotfiles/gitconfig",
        &format!("[user]\n\tname = A\n[url \"https://{TOKEN}@git.example.org/\"]\n\tinsteadOf = https://git.example.org/\n[include]\n\tpath = ~/.gitconfig.local\n"),
    );
    symlink(&real_git, r.p("home/.gitconfig")).unwrap();
    // Included, in the sandbox's own home: a copy appears where git looks.
    let local = r.write(
        "home/.gitconfig.local",
        &format!(
            "[http]\n\textraHeader = Authorization: Bearer {TOKEN}\n[core]\n\tautocrlf = input\n"
        ),
    );
    // Hidden whole today: its settings come back, its token does not.
    let npmrc = r.write(
        "home/.npmrc",
        &format!("fund=false\n//registry.example.org/:_authToken={TOKEN}\n"),
    );
    let pol = r.policy();
    let mut plan = mount::prepare(&pol, None).unwrap();
    let got = apply(&mut plan, &r.home(), &vars());

    let copy = file_at(&plan, &cargo).expect("cargo copy");
    assert!(
        copy.contains("jobs = 2") && copy.contains("sparse+https"),
        "{copy}"
    );
    let git = file_at(&plan, &real_git).expect("gitconfig copy at the link's target");
    assert!(
        git.contains("name = A") && git.contains("path = ~/.gitconfig.local"),
        "{git}"
    );
    let inc = file_at(&plan, &local).expect("included file copy");
    assert!(inc.contains("autocrlf = input"), "{inc}");
    let npm = file_at(&plan, &npmrc).expect("npmrc copy");
    assert_eq!(npm, "fund=false\n");
    let link = r.p("home/.gitconfig");
    for (at, tool, text) in [
        (&cargo, &cargo, copy),
        (&real_git, &link, git),
        (&local, &local, inc),
        (&npmrc, &npmrc, npm),
    ] {
        assert!(!text.contains(TOKEN), "{}: {text}", at.display());
        assert!(plan.visible.read.contains(at));
        assert!(matches!(verdict(&got, tool), Verdict::Copy { removed } if !removed.is_empty()));
    }
    // The report names keys, never values.
    let json = serde_json::to_string(&got).unwrap();
    assert!(
        !json.contains(TOKEN) && json.contains("registries.corp.token"),
        "{json}"
    );
}

#[test]
fn a_file_that_cannot_be_sanitised_stays_hidden_and_a_clean_one_as_it_is() {
    let r = Root::new();
    // Not TOML: masked, whatever it holds.
    let bad = r.write("home/.cargo/config", &format!("token = {TOKEN}\n[[[\n"));
    let clean = r.write("home/.cargo/config.toml", "[build]\njobs = 2\n");
    // Under a writable bind: the profile's choice, left alone.
    let pip = r.write(
        "home/.config/pip/pip.conf",
        &format!("[global]\nindex-url = https://u:{TOKEN}@example.org/simple\n"),
    );
    let pol = r.policy();
    let mut plan = mount::prepare(&pol, None).unwrap();
    let got = apply(&mut plan, &r.home(), &vars());
    assert!(masked(&plan, &bad));
    assert!(matches!(verdict(&got, &bad), Verdict::Hidden { .. }));
    let lines = got.hidden_lines(&r.home());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("~/.cargo/config stays hidden: cannot parse as cargo config"),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains(TOKEN));
    assert!(file_at(&plan, &clean).is_none() && !masked(&plan, &clean));
    assert!(matches!(verdict(&got, &clean), Verdict::Unchanged));
    assert!(file_at(&plan, &pip).is_none() && !masked(&plan, &pip));
}

#[test]
fn candidates_follow_the_sandbox_environment() {
    let home = Path::new("/h");
    let mut v = vars();
    v.insert("CARGO_HOME".into(), "/opt/cargo".into());
    v.insert("npm_config_userconfig".into(), "/w/npmrc".into());
    v.insert("PIP_CONFIG_FILE".into(), "relative/pip.conf".into());
    let c = candidates(home, &v);
    let has = |p: &str| c.iter().any(|(q, _)| q == Path::new(p));
    // Both the place the variable names and the default one: a command can
    // read either.
    assert!(has("/opt/cargo/config.toml") && has("/h/.cargo/config.toml"));
    assert!(has("/w/npmrc") && has("/h/.npmrc"));
    assert!(has("/h/.config/pip/pip.conf") && has("/etc/pip.conf") && has("/etc/gitconfig"));
    // A relative path is not a place the sandbox can cover.
    assert!(!c.iter().any(|(q, _)| q.is_relative()));
}

#[test]
fn container_tier_hides_files_with_a_secret() {
    let r = Root::new();
    let cargo = r.write(
        "home/.cargo/config.toml",
        &format!("[registries.corp]\ntoken = \"{TOKEN}\"\n"),
    );
    let clean = r.write("home/.gitconfig", "[user]\n\tname = A\n");
    let hides = container_hides(&r.home(), &vars());
    assert!(hides.contains(&cargo));
    assert!(!hides.contains(&clean));
}

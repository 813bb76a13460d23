//! git on the host (issue 8, items 1–2; issue 13, item 2): a repository the
//! command creates or changes must not make the user's git run a program,
//! neither while the command still runs (the user, an IDE or a shell prompt
//! runs `git status` meanwhile) nor afterwards.
//!
//! The payload is always the same: a configuration whose `core.fsmonitor`
//! creates a marker file in the fake home (which the sandbox cannot see, so
//! it cannot make the marker itself). Each case runs the attack in the
//! sandbox and the host's `git status` where the user would; the control runs
//! the same attack on the host and must see the marker.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// The marker file the payload creates (in the fake home: invisible inside).
fn marker(c: &Ctx) -> PathBuf {
    c.home().join("FSMONITOR-RAN")
}

/// A git configuration whose fsmonitor runs the marker command; `worktree`
/// is the `core.worktree` line's value when the repository is bare-shaped.
fn evil_config(c: &Ctx, worktree: Option<&str>) -> String {
    let mut s = String::from("[core]\n\trepositoryformatversion = 0\n");
    if let Some(w) = worktree {
        s.push_str(&format!("\tbare = false\n\tworktree = {w}\n"));
    }
    s.push_str(&format!(
        "\tfsmonitor = \"touch {}; false\"\n",
        marker(c).display()
    ));
    s
}

/// `git init` of the workspace with one commit (on the host).
fn init_repo(c: &Ctx) {
    let script = "git init -q && git -c user.name=t -c user.email=t@example.com commit -q --allow-empty -m init";
    let out = c.host(script);
    assert_eq!(out.code, Some(0), "{out:?}");
}

/// The host's git in DIR (relative to the workspace), as the user would run
/// it; returns whether the payload ran (and removes the marker).
fn host_git_ran(c: &Ctx, dir: &str) -> bool {
    let _ = Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(c.ws.path().join(dir))
        .env("HOME", c.home())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let ran = marker(c).exists();
    let _ = std::fs::remove_file(marker(c));
    ran
}

/// The command `script` in the sandbox, held open after it (until the test
/// creates `.go`), so the host can look while it still runs.
struct During {
    child: Child,
    ws: PathBuf,
}

impl During {
    fn start(c: &Ctx, script: &str) -> During {
        During::start_with(c, &[], script)
    }

    fn start_with(c: &Ctx, extra: &[&str], script: &str) -> During {
        let full = format!(
            "{script}\ntouch .ready; i=0; while [ ! -e .go ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done"
        );
        let child = c
            .sc_cmd(extra, &["/bin/sh", "-c", &full])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let ready = c.ws.path().join(".ready");
        assert!(
            wait_for(Duration::from_secs(20), || ready.exists()),
            "the sandboxed command did not get ready"
        );
        During {
            child,
            ws: c.ws.path().to_path_buf(),
        }
    }

    /// Let the command end; its output.
    fn finish(self) -> Out {
        std::fs::write(self.ws.join(".go"), "").unwrap();
        let out = Out::from_output(self.child.wait_with_output().unwrap());
        let _ = std::fs::remove_file(self.ws.join(".go"));
        let _ = std::fs::remove_file(self.ws.join(".ready"));
        out
    }
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

// Issue 8, item 2: `.git/commondir` names another git directory whose config
// (and hooks) git then uses. Before, a commondir made in the sandbox was
// removed only at exit, so the host's git obeyed it while the command ran
// (this case failed on main: the marker appeared during the run). Now a
// placeholder (a file containing ".") holds the name for the whole run.
attack!(git_commondir_held_during_the_run, "git", |c| {
    init_repo(&c);
    let plant = format!(
        "mkdir -p evil/objects evil/refs && printf '{}' > evil/config && echo \"$PWD/evil\" > .git/commondir; echo planted=$?",
        evil_config(&c, Some(&c.ws.path().display().to_string())).replace('\n', "\\n")
    );
    let run = During::start(&c, &plant);
    let ran_during = host_git_ran(&c, ".");
    let inside = run.finish();
    c.seen(&format!(
        "{}; host git during the run: {}",
        inside.stdout.trim(),
        if ran_during { "RAN" } else { "not redirected" }
    ));
    assert!(inside.stdout.contains("planted="), "{inside:?}");
    assert!(!inside.stdout.contains("planted=0"), "{inside:?}");
    assert!(
        !ran_during,
        "the host's git followed .git/commondir during the run"
    );
    assert!(
        !exists(&c.ws.path().join(".git/commondir")),
        "left after the run"
    );
    assert!(!host_git_ran(&c, "."), "after the run");
    // Control: planted on the host, the host's git follows it.
    let control = c.host(&plant);
    assert!(control.stdout.contains("planted=0"), "{control:?}");
    assert!(
        host_git_ran(&c, "."),
        "control: git did not follow commondir"
    );
});

// Issue 8, item 2: `.git/config.worktree` is read when the repository has
// `extensions.worktreeConfig`. Made in the sandbox it was live for the host's
// git until the exit (failed on main); now a placeholder holds it.
attack!(git_config_worktree_held_during_the_run, "git", |c| {
    init_repo(&c);
    let setup = c.host(
        "git config core.repositoryformatversion 1 && git config extensions.worktreeConfig true",
    );
    assert_eq!(setup.code, Some(0), "{setup:?}");
    let plant = format!(
        "printf '{}' > .git/config.worktree; echo planted=$?",
        evil_config(&c, None).replace('\n', "\\n")
    );
    let run = During::start(&c, &plant);
    let ran_during = host_git_ran(&c, ".");
    let inside = run.finish();
    c.seen(&format!(
        "{}; host git during the run: {}",
        inside.stdout.trim(),
        if ran_during { "RAN" } else { "not redirected" }
    ));
    assert!(!inside.stdout.contains("planted=0"), "{inside:?}");
    assert!(
        !ran_during,
        "the host's git read .git/config.worktree during the run"
    );
    assert!(!exists(&c.ws.path().join(".git/config.worktree")));
    // Control.
    let control = c.host(&plant);
    assert!(control.stdout.contains("planted=0"), "{control:?}");
    assert!(
        host_git_ran(&c, "."),
        "control: git did not read config.worktree"
    );
});

// Real work next to the placeholders: with `commondir` and `config.worktree`
// held, git inside still commits, branches, stashes and adds worktrees.
attack!(git_work_with_the_redirects_held, "git", |c| {
    init_repo(&c);
    let script = "set -e; g='git -c user.name=t -c user.email=t@example.com'
        echo a > a.txt; $g add a.txt; $g commit -qm a
        $g checkout -qb topic; echo b > b.txt; $g add b.txt; $g commit -qm b
        echo dirty >> a.txt; $g stash -q; $g stash pop -q; $g checkout -q a.txt
        $g checkout -q -; $g merge -q --no-edit topic
        $g worktree add -q ../wt-$$ topic 2>/dev/null || $g worktree add -q wt topic
        $g log --oneline | wc -l; $g rev-parse --git-common-dir";
    let out = c.sc(&[], script);
    c.seen(out.stdout.trim());
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("3\n"), "{out:?}");
    let log = c.host("git log --oneline topic | wc -l");
    assert_eq!(log.stdout.trim(), "3", "{log:?}");
});

/// Make the workspace root a bare-shaped repository (HEAD, objects, refs and
/// a config whose fsmonitor runs the marker), after invalidating `.git` if
/// there is one (deleting `.git/HEAD` is allowed). Prints `refs=<status>`.
fn root_as_bare_script(c: &Ctx) -> String {
    format!(
        "rm -f .git/HEAD; echo 'ref: refs/heads/main' > HEAD; mkdir -p objects; mkdir -p refs; echo refs=$?; printf '{}' > config",
        evil_config(c, Some(&c.ws.path().display().to_string())).replace('\n', "\\n")
    )
}

fn root_as_bare(c: &Ctx) {
    let plant = root_as_bare_script(c);
    let run = During::start(c, &plant);
    let ran_during = host_git_ran(c, ".");
    let inside = run.finish();
    let ran_after = host_git_ran(c, ".");
    c.seen(&format!(
        "{}; host git during the run: {}, after: {}",
        inside.stdout.trim(),
        if ran_during {
            "RAN"
        } else {
            "not a repository"
        },
        if ran_after { "RAN" } else { "not a repository" }
    ));
    assert!(inside.stdout.contains("refs="), "{inside:?}");
    assert!(!inside.stdout.contains("refs=0"), "{inside:?}");
    assert!(
        !ran_during,
        "the workspace root was a repository during the run"
    );
    assert!(
        !ran_after,
        "the workspace root was a repository after the run"
    );
    // Control: planted on the host, the host's git takes the root as a
    // repository and runs the fsmonitor.
    let control = c.host(&plant);
    assert!(control.stdout.contains("refs=0"), "{control:?}");
    assert!(
        host_git_ran(c, "."),
        "control: the root was not a repository"
    );
}

// Issue 8, item 1: `.git/HEAD` deleted (allowed), then HEAD, objects/, refs/
// and a config with core.fsmonitor at the workspace root: the host's git took
// the root itself as a bare repository and ran the command (failed on main:
// the marker appeared during the run and after). Now the root's `refs` is
// held by a placeholder for the whole run.
attack!(git_root_as_bare_repository, "git", |c| {
    init_repo(&c);
    root_as_bare(&c);
});

// The same in a workspace that has no `.git` at all (git used to ignore the
// empty placeholder and take the directory itself as a repository).
attack!(git_root_as_bare_without_dot_git, "git", |c| {
    root_as_bare(&c);
});

// Issue 14, section 4: `git add -A && git commit` inside committed the
// placeholders of missing protected files (`.envrc`, `.mcp.json`), so the
// host's `git status` afterwards showed them deleted (failed on main). Now
// git inside reads an exclude file naming them.
attack!(git_placeholders_are_not_committed, "git", |c| {
    init_repo(&c);
    // The user's own global ignores keep applying inside.
    let ignore = c.home().join(".config/git/ignore");
    std::fs::create_dir_all(ignore.parent().unwrap()).unwrap();
    std::fs::write(&ignore, "*.user-ignored\n").unwrap();
    std::fs::remove_file(c.ws.path().join(".probe.py")).unwrap();
    let script = "set -e; g='git -c user.name=t -c user.email=t@example.com'
        echo x > real.txt; echo y > a.user-ignored
        $g add -A; $g commit -qm work; git show --name-only --format= HEAD";
    let out = c.sc(&[], script);
    c.seen(&format!(
        "committed: {}",
        out.stdout.trim().replace('\n', " ")
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "real.txt", "{out:?}");
    // Nothing of the placeholders on the host afterwards (the fake home's
    // global ignore hides a.user-ignored there too).
    let status = c.host("git status --porcelain");
    assert_eq!(status.stdout.trim(), "", "{status:?}");
    // Control: a placeholder-shaped link made on the host is committed by
    // the same commands (so the check above can see a committed placeholder).
    let control = c.host(
        "ln -s /proc/0/shellcage-placeholder .envrc && git -c user.name=t -c user.email=t@example.com add -A && git -c user.name=t -c user.email=t@example.com commit -qm c && git show --name-only --format= HEAD",
    );
    assert!(control.stdout.contains(".envrc"), "{control:?}");
});

// Issue 8, item 2, the other half: with `commondir` and `config.worktree`
// held (and `refs` at the root), the user's own git on the host keeps
// working while the command runs.
attack!(git_host_works_during_the_run, "git", |c| {
    init_repo(&c);
    let run = During::start(&c, "echo started");
    let host = c.host(
        "git status --porcelain; echo status=$?; git log --oneline | wc -l; git -c user.name=t -c user.email=t@example.com commit -q --allow-empty -m during; echo commit=$?; git rev-parse --git-common-dir",
    );
    let inside = run.finish();
    c.seen(&host.stdout.trim().replace('\n', " "));
    assert_eq!(inside.code, Some(0), "{inside:?}");
    assert!(host.stdout.contains("status=0"), "{host:?}");
    assert!(host.stdout.contains("commit=0"), "{host:?}");
    // The placeholders are untracked entries for the host's git meanwhile
    // (the exclude file is the sandbox's); nothing else is.
    assert!(host.stderr.is_empty(), "{host:?}");
    let log = c.host("git log --oneline | wc -l");
    assert_eq!(log.stdout.trim(), "2", "{log:?}");
});

/// Plant a repository in `dir` of the workspace whose configuration (in
/// git's mixed-case spelling) runs the marker: `kind` is `nested` (a `.git`
/// directory, with a pre-commit hook too), `bare` (a bare-shaped directory)
/// or `gitfile` (a `.git` file naming a bare-shaped directory outside the
/// workspace, in the fake home). Prints `planted=0` on success.
fn nested_script(c: &Ctx, kind: &str, dir: &str) -> String {
    let cfg = format!(
        "[Core]\\n\\tFSMonitor = \"touch {}; false\"\\n",
        marker(c).display()
    );
    let body = match kind {
        "nested" => format!(
            "git init -q {dir} && printf '{cfg}' >> {dir}/.git/config && printf '#!/bin/sh\\ntouch {m}\\n' > {dir}/.git/hooks/pre-commit && chmod +x {dir}/.git/hooks/pre-commit",
            m = marker(c).display()
        ),
        "bare" => format!(
            "mkdir -p {dir}/objects {dir}/refs && echo 'ref: refs/heads/main' > {dir}/HEAD && printf '[core]\\n\\trepositoryformatversion = 0\\n\\tbare = false\\n\\tworktree = .\\n{cfg}' > {dir}/config"
        ),
        _ => {
            let out = c.home().join("outside-git");
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(out.join("objects")).unwrap();
            std::fs::create_dir_all(out.join("refs")).unwrap();
            std::fs::write(out.join("HEAD"), "ref: refs/heads/main\n").unwrap();
            std::fs::write(
                out.join("config"),
                format!(
                    "[core]\n\tfsmonitor = \"touch {}; false\"\n",
                    marker(c).display()
                ),
            )
            .unwrap();
            format!(
                "mkdir -p {dir} && echo 'gitdir: {}' > {dir}/.git",
                out.display()
            )
        }
    };
    format!("{body}; echo planted=$?")
}

/// A repository made during the run in a subdirectory is a repository for
/// the host's git in that directory after the run: neutralised at exit.
fn nested_case(c: &Ctx, kind: &str) {
    init_repo(c);
    let script = nested_script(c, kind, "sub");
    let inside = c.sc(&[], &script);
    let ran = host_git_ran(c, "sub");
    c.seen(&format!(
        "{}; host git in sub after the run: {}",
        inside.all().trim().replace('\n', " "),
        if ran { "RAN" } else { "nothing ran" }
    ));
    assert!(inside.stdout.contains("planted=0"), "{inside:?}");
    assert!(
        !ran,
        "the host's git ran the command of a repository made in the sandbox"
    );
    assert!(
        inside.stderr.contains("shellcage: git: "),
        "not named: {inside:?}"
    );
    if kind == "nested" {
        let commit = c.host("cd sub && git -c user.name=t -c user.email=t@example.com commit -q --allow-empty -m x; echo commit=$?");
        assert!(commit.stdout.contains("commit=0"), "{commit:?}");
        assert!(!marker(c).exists(), "the hook made in the sandbox ran");
    }
    // Control: the same planted on the host is obeyed by the host's git.
    let _ = std::fs::remove_dir_all(c.ws.path().join("sub"));
    let control = c.host(&script);
    assert!(control.stdout.contains("planted=0"), "{control:?}");
    assert!(host_git_ran(c, "sub"), "control: nothing ran");
}

// Issue 8, item 1: a repository made inside (git init + a config whose
// fsmonitor, in `[Core] FSMonitor` spelling, runs a command, and a hook):
// the host's git in that directory ran it after the run (failed on main).
// Now the exit check removes the key and disables the hook, and says so.
attack!(git_nested_repository_made_in_the_run, "git", |c| {
    nested_case(&c, "nested");
});

// The same with a bare-shaped directory (HEAD, objects, refs, config).
attack!(git_bare_shaped_directory_made_in_the_run, "git", |c| {
    nested_case(&c, "bare");
});

// The same with a `.git` file naming a repository outside the workspace.
attack!(git_gitfile_to_outside_made_in_the_run, "git", |c| {
    nested_case(&c, "gitfile");
});

// Real work: repositories the user had before the run keep their own
// configuration (aliases, hooks) untouched; a clone made inside keeps its
// remote; git submodule and worktree layouts are left as git made them.
attack!(git_repositories_of_the_user_are_left_alone, "git", |c| {
    init_repo(&c);
    let own = c.host(
        "git init -q mine && cd mine && git config alias.st status && printf '#!/bin/sh\\ntrue\\n' > .git/hooks/pre-push && chmod +x .git/hooks/pre-push && cd .. && git init -q --bare origin.git",
    );
    assert_eq!(own.code, Some(0), "{own:?}");
    let before = std::fs::read(c.ws.path().join("mine/.git/config")).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let out = c.sc(
        &[],
        "set -e; git clone -q origin.git clone 2>/dev/null; git -C clone config remote.origin.url; git -C mine log 2>/dev/null | wc -l",
    );
    c.seen(&out.all().trim().replace('\n', " "));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.stderr.contains("shellcage: git:"), "{out:?}");
    assert_eq!(
        std::fs::read(c.ws.path().join("mine/.git/config")).unwrap(),
        before
    );
    assert!(c.ws.path().join("mine/.git/hooks/pre-push").exists());
    let url = c.host("git -C clone config remote.origin.url");
    assert!(url.stdout.trim().ends_with("origin.git"), "{url:?}");
});

// Issue 13, item 2: `git config`, `git remote add` and `git submodule add`
// work inside (they failed with EBUSY on the read-only `.git/config`); at
// exit the keys that only name things reach the host file, the rest are
// refused and named, and an existing remote cannot be pointed elsewhere.
attack!(git_config_merge_back, "git", |c| {
    init_repo(&c);
    let setup = c.host("git remote add origin https://example.com/orig.git");
    assert_eq!(setup.code, Some(0), "{setup:?}");
    let script = "set -e; g='git -c user.name=t -c user.email=t@example.com'
        git config user.name sandboxed; git config alias.x '!id'; git config core.sshCommand 'touch x'
        git remote add up https://example.com/up.git
        git remote set-url origin https://evil.example/x.git
        git init -q src; $g -C src commit -q --allow-empty -m s
        git -c protocol.file.allow=always submodule add -q \"$PWD/src\" sm
        $g commit -qm sm; git config user.name";
    let out = c.sc(&[], script);
    c.seen(&out.all().trim().replace('\n', " "));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("sandboxed"), "{out:?}");
    let host = |key: &str| {
        c.host(&format!("git config --get {key}"))
            .stdout
            .trim()
            .to_string()
    };
    assert_eq!(host("user.name"), "sandboxed");
    assert_eq!(host("remote.up.url"), "https://example.com/up.git");
    assert!(host("submodule.sm.url").ends_with("/src"));
    assert_eq!(host("remote.origin.url"), "https://example.com/orig.git");
    assert_eq!(host("alias.x"), "");
    assert_eq!(host("core.sshcommand"), "");
    assert!(
        out.stderr
            .contains("refused remote.origin.url (changes an existing remote)"),
        "{out:?}"
    );
    assert!(out.stderr.contains("alias.x"), "{out:?}");
    let sub = c.host("git submodule status");
    assert!(sub.stdout.contains(" sm "), "{sub:?}");
    // Control: on the host the same commands write the refused keys.
    let control =
        c.host("git config alias.x '!id' && git remote set-url origin https://evil.example/x.git");
    assert_eq!(control.code, Some(0), "{control:?}");
    assert_eq!(host("alias.x"), "!id");
});

/// The `after_run.repositories` object of a `--report-file` report.
fn repo_check(report: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(report).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["after_run"]["repositories"].clone()
}

// The exit check cut short must be on record, not only a line in a terminal:
// a command hides the repository it planted from the check (as a user:
// `chmod 000` on the directory above it; as root, who reads anything, the
// planted config is made immutable on the host meanwhile, as anything the
// check cannot change would be). Before, the run's JSON report and audit
// record said nothing (only a warning on stderr): the report said the run
// was clean. Now `after_run.repositories.complete` is false and the notes
// name the path. Control: the same repository, not hidden, is checked
// completely and neutralised.
attack!(
    git_repository_hidden_from_the_exit_check_is_on_record,
    "git",
    |c| {
        init_repo(&c);
        let root = nix::unistd::geteuid().is_root();
        let inner = nested_script(&c, "bare", "sub");
        let plant = format!("(mkdir deep && cd deep && {inner})");
        let report = c.ws.path().join("..").join(format!(
            "report-{}.json",
            c.ws.path().file_name().unwrap().to_string_lossy()
        ));
        let report_arg = report.display().to_string();
        let config = c.ws.path().join("deep/sub/config");
        let hidden = if root {
            let run = During::start_with(&c, &["--report-file", &report_arg], &plant);
            let chattr = Command::new("chattr").arg("+i").arg(&config).status();
            let out = run.finish();
            let _ = Command::new("chattr").arg("-i").arg(&config).status();
            assert!(chattr.is_ok_and(|s| s.success()), "chattr +i {config:?}");
            out
        } else {
            let out = c.sc(
                &["--report-file", &report_arg],
                &format!("(mkdir deep && cd deep && {inner} && chmod 000 .)"),
            );
            let _ = std::fs::set_permissions(
                c.ws.path().join("deep"),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            );
            out
        };
        assert!(hidden.stdout.contains("planted=0"), "{hidden:?}");
        let check = repo_check(&report);
        assert_eq!(check["complete"], false, "{check}");
        let all: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(all["after_run"]["complete"], false, "{all}");
        c.seen(&format!(
            "hidden from the exit check: {}",
            hidden
                .stderr
                .lines()
                .find(|l| l.contains("could not"))
                .unwrap_or("NOT SAID")
        ));
        assert!(
            hidden.stderr.contains("shellcage: warning: git: could not"),
            "{hidden:?}"
        );
        // Control: not hidden, the check is complete and neutralises it.
        let _ = std::fs::remove_dir_all(c.ws.path().join("deep"));
        let out = c.sc(&["--report-file", &report_arg], &plant);
        assert!(out.stdout.contains("planted=0"), "{out:?}");
        let check = repo_check(&report);
        let _ = std::fs::remove_file(&report);
        assert_eq!(check["complete"], true, "{check}");
        assert!(check["neutralised"].as_u64() >= Some(1), "{check}");
        assert!(
            !host_git_ran(&c, "deep/sub"),
            "control: the check missed it"
        );
    }
);

// The same for the root-name patterns (`*.code-workspace`: an editor runs its
// folder-open tasks): a match the command made that cannot be renamed at exit
// (as a user: the workspace root made read-only; as root: the file made
// immutable on the host meanwhile) leaves `after_run.complete` false, with the
// path in the notes. Control: not held, it is renamed and the run complete.
attack!(
    pattern_match_kept_from_the_exit_step_is_on_record,
    "persistence",
    |c| {
        let root = nix::unistd::geteuid().is_root();
        let report = c.ws.path().join("..").join(format!(
            "report-{}.json",
            c.ws.path().file_name().unwrap().to_string_lossy()
        ));
        let report_arg = report.display().to_string();
        let file = c.ws.path().join("evil.code-workspace");
        let plant = "echo '{}' > evil.code-workspace; echo planted=$?";
        let out = if root {
            let run = During::start_with(&c, &["--report-file", &report_arg], plant);
            let chattr = Command::new("chattr").arg("+i").arg(&file).status();
            let out = run.finish();
            let _ = Command::new("chattr").arg("-i").arg(&file).status();
            assert!(chattr.is_ok_and(|s| s.success()), "chattr +i {file:?}");
            out
        } else {
            let out = c.sc(
                &["--report-file", &report_arg],
                &format!("{plant}; chmod 555 ."),
            );
            let _ = std::fs::set_permissions(
                c.ws.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            );
            out
        };
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        c.seen(&format!(
            "kept from the exit step: complete={}",
            v["after_run"]["complete"]
        ));
        assert!(out.stdout.contains("planted=0"), "{out:?}");
        assert_eq!(v["after_run"]["complete"], false, "{v}");
        assert!(out.stderr.contains("could not be renamed"), "{out:?}");
        // Control: not held, the exit step renames it and the run is complete.
        let _ = std::fs::remove_file(&file);
        let out = c.sc(&["--report-file", &report_arg], plant);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        let _ = std::fs::remove_file(&report);
        assert!(out.stdout.contains("planted=0"), "{out:?}");
        assert!(!file.exists(), "control: not renamed");
        assert_eq!(v["after_run"]["complete"], true, "{v}");
    }
);

//! The copy-on-write layer, host side: `shellcage changes`, `apply`,
//! `discard` on upper directories made by real overlayfs mounts (see
//! overlay/harness.rs). Each test checks the host tree by hash: untouched
//! while the layer is used, equal to the merged view after `apply`.

mod common;
#[path = "overlay/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::path::Path;

use harness::*;

/// Paths the `dev` profile protects that a fresh `git init` creates.
const GIT_PROTECTED: &[&str] = &[".git/config", ".git/hooks"];

/// Apply the whole layer, then the host must equal the merged view (ignoring `skip`).
#[track_caller]
fn apply_and_compare(f: &Fixture, layer: &str, skip: &[&str]) {
    let merged = f.merged_copy(layer);
    let want = tree_without(&merged, skip);
    let out = f.sc(&["apply", "--layer", layer]);
    assert_eq!(
        code(&out),
        Some(0),
        "apply: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_same(
        &tree_without(&f.ws, skip),
        &want,
        "host after apply vs merged view",
    );
    assert_eq!(
        f.changes(&["--layer", layer]),
        "",
        "the layer is empty after a full apply"
    );
}

#[test]
fn rm_rf_everything_leaves_the_host_intact_and_is_listed() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git(
        "mkdir -p src/deep && echo a > src/a.rs && echo d > src/deep/d.rs && echo r > README",
    );
    let before = tree(&f.ws);
    f.in_layer("default", "rm -rf -- * .[!.]* && test -z \"$(ls -A)\"");
    assert_same(&before, &tree(&f.ws), "host after rm -rf in the layer");
    let out = f.changes(&[]);
    for p in [
        "README",
        "src/a.rs",
        "src/deep/d.rs",
        ".git/HEAD",
        ".git/config",
    ] {
        assert!(
            out.lines().any(|l| l == format!("D  {p}")),
            "{p} not listed as deleted:\n{out}"
        );
    }
    assert!(
        out.lines().all(|l| l.starts_with("D  ")),
        "only deletions:\n{out}"
    );
    // Apply: everything goes except the profile's protected git paths, which are kept.
    let merged = f.merged_copy("default");
    let applied = f.sc(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied.stderr));
    assert!(
        text(&applied.stderr).contains("kept protected path .git/hooks"),
        "{}",
        text(&applied.stderr)
    );
    assert_same(
        &tree_without(&f.ws, &[".git"]),
        &tree(&merged),
        "host after apply",
    );
    let left: Vec<String> = tree(&f.ws).into_keys().collect();
    assert!(
        left.iter()
            .all(|p| p == ".git" || GIT_PROTECTED.iter().any(|g| p.starts_with(g))),
        "{left:?}"
    );
}

#[test]
fn git_clean_and_reset_hard_are_reversible() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git(
        "echo 'target/' > .gitignore && echo v1 > tracked.txt && mkdir target && echo o > target/out",
    );
    f.host("echo wip >> tracked.txt && echo scratch > untracked.txt");
    let before = tree(&f.ws);
    f.in_layer("default", "git clean -fdx -q && git reset -q --hard");
    assert_same(
        &before,
        &tree(&f.ws),
        "host after git clean/reset in the layer",
    );
    let out = lines(&f.changes(&[]));
    assert!(out.contains(&"D  untracked.txt".into()), "{out:?}");
    assert!(out.contains(&"D  target/out".into()), "{out:?}");
    assert!(out.contains(&"M  tracked.txt".into()), "{out:?}");
    apply_and_compare(&f, "default", &[]);
    let st = f.host("git status --porcelain --ignored");
    assert_eq!(
        text(&st.stdout),
        "",
        "the host is clean like the merged view was"
    );
}

#[test]
fn renames_binary_symlinks_modes_and_recreated_files() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git(
        "mkdir -p lib/sub && echo one > lib/one.rs && echo two > lib/sub/two.rs && echo moved > old.txt \
         && printf 'bin\\000ary' > blob.bin && ln -s old.txt link && echo run > run.sh \
         && echo same > same.txt && echo diff > redo.txt",
    );
    let before = tree(&f.ws);
    f.in_layer(
        "default",
        "mv old.txt new.txt && mv lib library && printf 'bin\\000ary2' > blob.bin && ln -sfn new.txt link \
         && chmod 755 run.sh && rm same.txt && echo same > same.txt && rm redo.txt && echo again > redo.txt",
    );
    assert_same(&before, &tree(&f.ws), "host after the run");
    let out = lines(&f.changes(&[]));
    let want = [
        "M  blob.bin",
        "M  link",
        "M  redo.txt",
        "M  run.sh  (mode 644 -> 755)",
        "R  lib/one.rs -> library/one.rs",
        "R  lib/sub/two.rs -> library/sub/two.rs",
        "R  old.txt -> new.txt",
    ];
    assert_eq!(
        out,
        want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "same.txt recreated identically is no change"
    );
    let diff = f.changes(&["--diff"]);
    assert!(
        diff.contains("Binary files a/blob.bin and b/blob.bin differ"),
        "{diff}"
    );
    assert!(diff.contains("-diff\n+again"), "{diff}");
    assert!(diff.contains("old mode 100644\nnew mode 100755"), "{diff}");
    assert!(
        !diff.contains("ary2"),
        "binary content is not dumped: {diff}"
    );
    apply_and_compare(&f, "default", &[]);
}

#[test]
fn type_changes_both_ways() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git(
        "echo f > f2d && mkdir d2f && echo x > d2f/x && echo s > f2l && mkdir keep && echo k > keep/k",
    );
    let before = tree(&f.ws);
    f.in_layer(
        "default",
        "rm f2d && mkdir f2d && echo in > f2d/in && rm -r d2f && echo now-a-file > d2f && rm f2l && ln -s keep f2l",
    );
    assert_same(&before, &tree(&f.ws), "host after the run");
    let out = lines(&f.changes(&[]));
    assert!(
        out.contains(&"T  f2d/  (file -> directory)".into()),
        "{out:?}"
    );
    assert!(out.contains(&"A  f2d/in".into()), "{out:?}");
    assert!(
        out.contains(&"D  d2f/x".into()) && out.contains(&"A  d2f".into()),
        "{out:?}"
    );
    assert!(out.contains(&"T  f2l  (file -> symlink)".into()), "{out:?}");
    apply_and_compare(&f, "default", &[]);
}

#[test]
fn git_commits_made_in_the_layer_reach_the_host_on_apply() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a.txt");
    let head = text(&f.host("git rev-parse HEAD").stdout);
    let before = tree(&f.ws);
    f.in_layer("default", "echo 2 > a.txt && git add a.txt && git commit -qm 'agent change' && git checkout -qb topic");
    assert_same(&before, &tree(&f.ws), "host after commits in the layer");
    assert_eq!(
        text(&f.host("git rev-parse HEAD").stdout),
        head,
        "host HEAD unchanged"
    );
    let out = f.changes(&[]);
    assert!(
        out.contains("M  a.txt") && out.contains("M  .git/HEAD"),
        "{out}"
    );
    apply_and_compare(&f, "default", &[]);
    let log = text(
        &f.host("git log --format=%s -1 && git branch --show-current && git status --porcelain")
            .stdout,
    );
    assert_eq!(log, "agent change\ntopic\n");
}

#[test]
fn dry_run_changes_nothing() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a && mkdir d && echo 2 > d/b");
    f.in_layer("default", "echo x > a && rm -r d && echo n > n");
    let host = tree(&f.ws);
    let layer = tree(&f.state);
    let out = f.sc(&["apply", "--dry-run"]);
    let stdout = ok(&out);
    assert_eq!(
        lines(&stdout),
        vec!["A  n", "D  d", "M  a"],
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("dry run: nothing changed"));
    assert_same(&host, &tree(&f.ws), "host after --dry-run");
    assert_same(&layer, &tree(&f.state), "layer after --dry-run");
}

#[test]
fn host_edits_during_the_layer_are_refused_and_named() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a && echo 1 > other && mkdir d && echo 1 > d/old");
    f.in_layer("default", "echo layer > a && rm -r d");
    f.host("echo user > a && echo user > d/new && echo user > other");
    let host = tree(&f.ws);
    let out = f.sc(&["apply"]);
    assert_eq!(code(&out), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("refusing to apply: 2 paths changed on the host"),
        "{err}"
    );
    assert!(err.contains("\n  a: changed on the host"), "{err}");
    assert!(err.contains("\n  d/new: changed on the host"), "{err}");
    assert!(
        !err.contains("other"),
        "a host edit the layer does not touch is no conflict: {err}"
    );
    assert_same(&host, &tree(&f.ws), "nothing applied after a refusal");
    // --force overwrites, and says so.
    let out = f.sc(&["apply", "--force"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("overwrote a (--force)"));
    assert_eq!(std::fs::read_to_string(f.ws.join("a")).unwrap(), "layer\n");
    assert!(!f.ws.join("d").exists());
    assert_eq!(
        std::fs::read_to_string(f.ws.join("other")).unwrap(),
        "user\n"
    );
}

#[test]
fn host_edits_before_the_layer_began_are_no_conflict() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    f.host("echo edited-before > a");
    f.begin("default");
    f.in_layer("default", "echo layer > a");
    ok(&f.sc(&["apply"]));
    assert_eq!(std::fs::read_to_string(f.ws.join("a")).unwrap(), "layer\n");
}

fn many_files_layer(f: &Fixture, n: usize) {
    f.in_layer(
        "default",
        &format!("mkdir -p gen && i=0; while [ $i -lt {n} ]; do echo $i > gen/f$i; i=$((i+1)); done && rm -r old && echo changed > keep.txt"),
    );
}

#[test]
fn an_apply_killed_half_way_completes_when_run_again() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("mkdir old && echo o > old/o && echo k > keep.txt");
    many_files_layer(&f, 60);
    let merged = tree(&f.merged_copy("default"));
    // Killed after 25 files were written, and killed with a temporary file half made.
    for (var, n) in [
        ("SHELLCAGE_TEST_APPLY_KILL_AFTER", "25"),
        ("SHELLCAGE_TEST_APPLY_KILL_IN_TMP", "12"),
    ] {
        let out = f.sc_env(&["apply"], &[(var, n)]);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(9), "{var}: {}", text(&out.stderr));
    }
    let partial = tree(&f.ws);
    assert!(
        partial.keys().any(|k| k.starts_with("gen/")),
        "the killed apply got some way"
    );
    assert!(
        partial.keys().any(|k| k.contains(".shellcage-apply-")),
        "a temporary file was left: {:?}",
        partial
            .keys()
            .filter(|k| k.starts_with("gen/."))
            .collect::<Vec<_>>()
    );
    let out = f.sc(&["apply"]);
    assert_eq!(code(&out), Some(0), "rerun: {}", text(&out.stderr));
    assert_same(&tree(&f.ws), &merged, "host after the rerun vs merged view");
    assert_eq!(f.changes(&[]), "");
}

#[test]
fn apply_paths_applies_only_those() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("mkdir src docs && echo 1 > src/a && echo 1 > docs/d && echo 1 > top");
    f.in_layer(
        "default",
        "echo 2 > src/a && echo 2 > docs/d && echo new > src/new && rm top",
    );
    let out = f.sc(&["apply", "src"]);
    assert_eq!(lines(&ok(&out)), vec!["A  src/new", "M  src/a"]);
    assert_eq!(
        lines(&f.changes(&[])),
        vec!["D  top", "M  docs/d"],
        "the rest stays in the layer"
    );
    assert_eq!(std::fs::read_to_string(f.ws.join("docs/d")).unwrap(), "1\n");
    apply_and_compare(&f, "default", &[]);
}

#[test]
fn the_layer_is_reusable_after_a_full_apply() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    f.in_layer("default", "echo 2 > a");
    apply_and_compare(&f, "default", &[]);
    let list = f.changes(&["--list"]);
    assert!(
        list.starts_with("default") && list.contains(" 0 entries"),
        "{list}"
    );
    f.in_layer("default", "echo 3 > b && cat a > seen");
    assert_eq!(lines(&f.changes(&[])), vec!["A  b", "A  seen"]);
    assert_eq!(std::fs::read_to_string(f.ws.join("a")).unwrap(), "2\n");
}

#[test]
fn two_layers_alternately_then_discard_one() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo base > x");
    let before = tree(&f.ws);
    f.in_layer("one", "echo 1 > x");
    f.in_layer("two", "echo 2 > y && cat x > seen-by-two");
    f.in_layer("one", "echo more >> x && echo 1 > z");
    assert_same(&before, &tree(&f.ws), "host untouched by both layers");
    assert_eq!(lines(&f.changes(&["--layer", "one"])), vec!["A  z", "M  x"]);
    assert_eq!(
        lines(&f.changes(&["--layer", "two"])),
        vec!["A  seen-by-two", "A  y"]
    );
    let list = f.changes(&["--list"]);
    assert!(list.contains("one ") && list.contains("two "), "{list}");
    let json: serde_json::Value = serde_json::from_str(&f.changes(&["--list", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    ok(&f.sc(&["discard", "--layer", "one"]));
    let list = f.changes(&["--list"]);
    assert!(!list.contains("one ") && list.contains("two "), "{list}");
    let gone = f.sc(&["changes", "--layer", "one"]);
    assert_eq!(code(&gone), Some(125));
    assert!(
        text(&gone.stderr).contains("no layer \"one\""),
        "{}",
        text(&gone.stderr)
    );
    assert_eq!(
        lines(&f.changes(&["--layer", "two"])),
        vec!["A  seen-by-two", "A  y"]
    );
    assert_eq!(std::fs::read_to_string(f.ws.join("x")).unwrap(), "base\n");
    assert_same(&before, &tree(&f.ws), "discard does not touch the host");
}

#[test]
fn layers_live_in_private_state_directories() {
    if !overlay_available() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::git("echo 1 > a");
    let l = f.begin("default");
    assert!(!l.dir.starts_with(&f.ws));
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&l.upper()),
        mode(&f.ws),
        "the merged root looks like the workspace"
    );
    let mut p = l.dir.clone();
    while p != f.state {
        let mode = std::fs::symlink_metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", p.display());
        p.pop();
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["workspace"], f.ws.to_str().unwrap());
    assert_eq!(
        meta["base_commit"].as_str().unwrap(),
        text(&f.host("git rev-parse HEAD").stdout).trim()
    );
    assert_eq!(meta["shellcage_version"], env!("CARGO_PKG_VERSION"));
    // Bad names are refused before anything is created.
    for bad in ["../x", ".hidden", "a/b", "", "x\ny"] {
        let out = f.sc(&["changes", "--layer", bad]);
        assert_eq!(code(&out), Some(125), "{bad:?}");
        assert!(
            text(&out.stderr).contains("invalid layer name"),
            "{}",
            text(&out.stderr)
        );
    }
    // A state directory inside the workspace is refused.
    let inside = shellcage::overlay::Store {
        root: f.ws.join(".state/shellcage/layers"),
    };
    let e = shellcage::overlay::Layer::begin(&inside, &f.ws, "default").unwrap_err();
    assert!(e.to_string().contains("overlap"), "{e}");
    assert!(!f.ws.join(".state").exists());
}

#[test]
fn changes_json_names_every_change() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a && echo 1 > b");
    f.in_layer("default", "echo 2 > a && rm b && chmod 700 a");
    let v: serde_json::Value = serde_json::from_str(&f.changes(&["--json"])).unwrap();
    let changes = v["changes"].as_array().unwrap();
    let by: BTreeMap<&str, &serde_json::Value> = changes
        .iter()
        .map(|c| (c["path"].as_str().unwrap(), c))
        .collect();
    assert_eq!(by["a"]["status"], "M");
    assert_eq!(by["a"]["content_changed"], true);
    assert_eq!(by["a"]["perm_after"], "000700");
    assert_eq!(by["b"]["status"], "D");
    assert_eq!(v["layer"], "default");
    assert!(v["base_commit"].is_string());
}

#[test]
fn a_thousand_changed_files_are_listed_exactly() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("mkdir old && echo o > old/o && echo k > keep.txt");
    many_files_layer(&f, 1000);
    let out = f.changes(&[]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("A  gen/f")).count(),
        1000
    );
    assert_eq!(out.lines().count(), 1002, "1000 new, 1 deleted, 1 modified");
    let _ = Path::new("");
}

/// The user's view of their repository: status, HEAD, branch, index bytes.
fn git_state(f: &Fixture) -> (String, Vec<u8>) {
    let s = text(&f.host("git status --porcelain --untracked-files=all && git rev-parse HEAD && git symbolic-ref HEAD").stdout);
    (s, std::fs::read(f.ws.join(".git/index")).unwrap())
}

#[test]
fn apply_branch_commits_the_changes_without_touching_the_work_tree() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git(
        "echo 'target/' > .gitignore && echo 1 > a && echo 1 > gone && mkdir d && echo 1 > d/x && echo run > run.sh",
    );
    let base = text(&f.host("git rev-parse HEAD").stdout)
        .trim()
        .to_string();
    f.in_layer(
        "default",
        "echo 2 > a && rm gone && echo new > d/new && mkdir target && echo out > target/o && chmod 755 run.sh \
         && ln -s a link && git add -A && git commit -qm inside && echo hook > .git/hooks/post-commit",
    );
    // The user works on meanwhile: an unrelated uncommitted edit.
    f.host("echo mine > mine.txt");
    let state = git_state(&f);
    let host = tree(&f.ws);
    // An audit record of a command in this workspace, written by the real writer.
    let audit = f.tmp.path().join("audit.jsonl");
    let rec = shellcage::audit::Record {
        time: shellcage::audit::now_rfc3339(),
        user: "u".into(),
        uid: 1,
        workspace: f.ws.clone(),
        argv: vec!["sh".into(), "-c".into(), "echo 2 > a".into()],
        profile: "dev".into(),
        profile_hash: "x".into(),
        tier: serde_json::Value::Null,
        enforcement: serde_json::Value::Null,
        status: serde_json::json!({"kind": "exited", "value": 0}),
        exit_code: 0,
        duration_ms: 5,
        timeout: false,
        network: None,
        after_run: None,
        prev: String::new(),
    };
    shellcage::audit::AuditLog::open(&audit)
        .unwrap()
        .append(rec)
        .unwrap();
    let out = f.sc(&[
        "apply",
        "--branch",
        "agent/fix-42",
        "--audit",
        audit.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        git_state(&f),
        state,
        "status, HEAD, current branch and index unchanged"
    );
    let after: BTreeMap<_, _> = tree(&f.ws)
        .into_iter()
        .filter(|(k, _)| !k.starts_with(".git/"))
        .collect();
    let before: BTreeMap<_, _> = host
        .into_iter()
        .filter(|(k, _)| !k.starts_with(".git/"))
        .collect();
    assert_same(&before, &after, "working tree unchanged");
    let parent = text(&f.host("git rev-parse agent/fix-42^").stdout)
        .trim()
        .to_string();
    assert_eq!(
        parent, base,
        "the parent is the commit the layer began from"
    );
    let files = text(
        &f.host(&format!("git diff --name-status {base} agent/fix-42"))
            .stdout,
    );
    assert_eq!(
        lines(&files),
        vec!["A\td/new", "A\tlink", "D\tgone", "M\ta", "M\trun.sh"],
        "no ignored files, no .git internals"
    );
    let show = text(
        &f.host("git show agent/fix-42:a && git ls-tree agent/fix-42 run.sh link")
            .stdout,
    );
    assert!(
        show.starts_with("2\n") && show.contains("100755 blob") && show.contains("120000 blob"),
        "{show}"
    );
    let msg = text(&f.host("git log -1 --format=%B agent/fix-42").stdout);
    assert!(
        msg.starts_with("shellcage: changes from layer 'default'"),
        "{msg}"
    );
    assert!(msg.contains("exit 0  sh -c 'echo 2 > a'"), "{msg}");
    // The branch exists now: refused, and nothing moves.
    let again = f.sc(&["apply", "--branch", "agent/fix-42"]);
    assert_eq!(code(&again), Some(125));
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    assert!(f.changes(&[]).contains("M  a"), "the layer is kept");
    // Bad names are refused.
    let bad = f.sc(&["apply", "--branch", "-x"]);
    assert_eq!(code(&bad), Some(125), "{}", text(&bad.stderr));
    let bad = f.sc(&["apply", "--branch", "a..b"]);
    assert!(
        text(&bad.stderr).contains("invalid branch name"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn a_selected_path_below_a_type_change_still_checks_the_host_file() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a && echo 1 > b");
    f.in_layer("default", "rm a && mkdir a && echo x > a/x && echo 2 > b");
    f.host("echo user-edit > a");
    let out = f.sc(&["apply", "a/x"]);
    assert_eq!(code(&out), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("\n  a: changed on the host"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(f.ws.join("a")).unwrap(),
        "user-edit\n"
    );
    let out = f.sc(&["apply", "/etc/passwd"]);
    assert_eq!(code(&out), Some(125));
    assert!(
        text(&out.stderr).contains("is outside the workspace"),
        "{}",
        text(&out.stderr)
    );
    // Control: selecting only b applies b.
    assert_eq!(lines(&ok(&f.sc(&["apply", "b"]))), vec!["M  b"]);
}

/// The GitConfigMerge hook (for src/git/merge.rs): a merger sees the host's and the layer's
/// `.git/config` and its result is what lands on the host.
#[test]
fn a_git_config_merger_decides_what_reaches_dot_git_config() {
    if !overlay_available() {
        return;
    }
    struct KeepHostAddMarker;
    impl shellcage::overlay::GitConfigMerge for KeepHostAddMarker {
        fn merge(&self, host: Option<&[u8]>, layer: &[u8]) -> Result<Vec<u8>, String> {
            assert!(String::from_utf8_lossy(layer).contains("fsmonitor"));
            let mut out = host.unwrap_or_default().to_vec();
            out.extend_from_slice(b"[shellcage]\n\tmerged = true\n");
            Ok(out)
        }
    }
    let f = Fixture::git("echo 1 > a");
    let host_config = std::fs::read(f.ws.join(".git/config")).unwrap();
    f.in_layer(
        "default",
        "git config core.fsmonitor 'touch /tmp/x' && echo 2 > a",
    );
    let mut layer = shellcage::overlay::Layer::open(&f.store(), &f.ws, "default").unwrap();
    let merger = KeepHostAddMarker;
    let opts = shellcage::overlay::ApplyOptions {
        git_config: Some(&merger),
        ..Default::default()
    };
    let report = shellcage::overlay::apply::apply(&mut layer, &opts).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let now = std::fs::read(f.ws.join(".git/config")).unwrap();
    assert!(now.starts_with(&host_config) && now.ends_with(b"[shellcage]\n\tmerged = true\n"));
    assert!(!String::from_utf8_lossy(&now).contains("fsmonitor"));
    assert!(report.layer_empty);
}

#[test]
fn apply_and_discard_refuse_a_layer_in_use() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    f.in_layer("default", "echo 2 > a");
    let l = f.begin("default");
    // What a running sandbox (phase 2) holds while the layer is mounted.
    let file = std::fs::File::open(l.dir.join("lock")).unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    for args in [&["apply"][..], &["discard"], &["apply", "--branch", "x"]] {
        let out = f.sc(args);
        assert_eq!(code(&out), Some(125), "{args:?}");
        assert!(
            text(&out.stderr).contains("is in use"),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(std::fs::read_to_string(f.ws.join("a")).unwrap(), "1\n");
    drop(held);
    ok(&f.sc(&["apply"]));
    assert_eq!(
        std::fs::read_to_string(f.ws.join("a")).unwrap(),
        "2\n",
        "control"
    );
}

//! The audit log: one hash-chained line per run, safe under concurrency,
//! invisible and unwritable inside the sandbox.
#[macro_use]
mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn verify(path: &Path) -> (i32, String) {
    let o = Command::new(bin())
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap();
    (o.status.code().unwrap(), stdout(&o))
}

#[test]
fn records_runs_and_detects_tampering() {
    needs_sandbox!();
    let ws = Workspace::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let a = ["--audit", log.to_str().unwrap()];
    assert_eq!(run_sh(&ws, &a, "exit 3").status.code(), Some(3));
    assert_eq!(run_sh(&ws, &a, "kill -KILL $$").status.code(), Some(137));
    let o = cmd(
        &ws,
        &[&a[..], &["--timeout", "1s"]].concat(),
        &["sleep", "30"],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(124));

    let recs = lines(&log);
    assert_eq!(recs.len(), 3);
    let r = &recs[0];
    assert_eq!(r["argv"], serde_json::json!(["sh", "-c", "exit 3"]));
    assert_eq!(r["exit_code"], 3);
    assert_eq!(
        r["status"],
        serde_json::json!({"kind": "exited", "value": 3})
    );
    assert_eq!(r["timeout"], false);
    assert_eq!(r["profile"], "dev");
    assert_eq!(r["profile_hash"].as_str().unwrap().len(), 64);
    assert_eq!(
        r["workspace"],
        ws.path().canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(r["uid"], nix::unistd::getuid().as_raw());
    let time = r["time"].as_str().unwrap();
    assert!(
        time.len() == 20 && time.ends_with('Z') && &time[10..11] == "T",
        "{time}"
    );
    assert!(
        r["enforcement"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["guarantee"] == "no_network")
    );
    assert_eq!(
        recs[1]["status"],
        serde_json::json!({"kind": "signaled", "value": 9})
    );
    assert_eq!(recs[2]["timeout"], true);
    assert_eq!(recs[2]["exit_code"], 124);

    let (code, out) = verify(&log);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 good lines"), "{out}");

    let tail = Command::new(bin())
        .args(["audit", "tail", "-n", "2"])
        .arg(&log)
        .output()
        .unwrap();
    let t = stdout(&tail);
    assert_eq!(t.lines().count(), 2, "{t}");
    assert!(
        t.contains("signal 9") && t.contains("timeout") && t.contains("sleep 30"),
        "{t}"
    );

    // Edit the first record's exit code: line 2 no longer chains.
    let text = std::fs::read_to_string(&log).unwrap();
    let edited = text.replacen("\"exit_code\":3", "\"exit_code\":0", 1);
    assert_ne!(edited, text);
    std::fs::write(&log, &edited).unwrap();
    let (code, out) = verify(&log);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 2"), "{out}");
    // Delete the middle record instead.
    let mut l: Vec<&str> = text.lines().collect();
    l.remove(1);
    std::fs::write(&log, l.join("\n") + "\n").unwrap();
    let (code, out) = verify(&log);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 2"), "{out}");
}

/// 200 sandboxes append at once: every run is there once, the chain holds.
#[test]
fn two_hundred_concurrent_writers() {
    needs_sandbox!();
    let ws = Workspace::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let children: Vec<_> = (0..200)
        .map(|i| {
            cmd(
                &ws,
                &["--audit", log.to_str().unwrap()],
                &["true", &format!("w{i}")],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let recs = lines(&log);
    assert_eq!(recs.len(), 200);
    let mut seen: Vec<String> = recs
        .iter()
        .map(|r| r["argv"][1].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    let mut want: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
    want.sort();
    assert_eq!(seen, want);
    let (code, out) = verify(&log);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("200 good lines"), "{out}");
}

/// In a writable tree (the workspace) the log is refused: the command could
/// move or replace it around its mask between runs. Nothing runs.
#[test]
fn audit_file_in_the_workspace_is_refused() {
    needs_sandbox!();
    let ws = Workspace::new();
    let log = ws.path().join("audit.jsonl");
    let o = run_sh(&ws, &["--audit", log.to_str().unwrap()], "touch ran");
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("audit log"), "{}", stderr(&o));
    assert!(!ws.path().join("ran").exists(), "the command ran");
}

/// In a read-only tree the log is masked: the command can neither read nor
/// change it, and the host copy stays intact.
#[test]
fn audit_file_is_invisible_inside() {
    needs_sandbox!();
    let ws = Workspace::new();
    let secret = canary();
    let ro = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let log_ro = ro.path().join("audit.jsonl");
    for (extra, path) in [(vec!["--read", ro.path().to_str().unwrap()], &log_ro)] {
        let mut args = extra.clone();
        args.extend(["--audit", path.to_str().unwrap()]);
        let script = format!(
            "p='{}'; cat \"$p\" && echo READ; echo '{secret}' >> \"$p\" && echo WROTE; rm -f \"$p\" && echo REMOVED; mv \"$p\" \"$p.x\" && echo MOVED; true",
            path.display()
        );
        let o = run_sh(&ws, &args, &script);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        for word in ["READ", "WROTE", "REMOVED", "MOVED"] {
            assert!(!out.contains(word), "{word} in {out}");
        }
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.lines().all(|l| l != secret),
            "the sandbox appended: {text}"
        );
        assert_eq!(text.lines().count(), 1, "exactly our record: {text}");
        assert_eq!(verify(path).0, 0);
    }
}

/// The container tier cannot mask single files: an audit log inside a visible
/// tree is refused before anything runs.
#[test]
fn container_tier_refuses_a_visible_audit_log() {
    let ws = Workspace::new();
    let profile = ws.write(
        "container.toml",
        "version = 1\nextends = \"dev\"\ntier = \"container\"\n",
    );
    let log = ws.path().join("audit.jsonl");
    let marker = ws.path().join("ran");
    let o = cmd(
        &ws,
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--audit",
            log.to_str().unwrap(),
        ],
        &["touch", marker.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("audit log"), "{}", stderr(&o));
    assert!(!marker.exists(), "nothing ran");
}

/// The command of examples/ci/github-actions.yml: the task runs with the `ci`
/// profile, and both artifacts (audit log, report) exist and agree.
#[test]
fn ci_example_command_line() {
    needs_sandbox!();
    let yml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci/github-actions.yml"),
    )
    .unwrap();
    assert!(
        yml.contains("shellcage run --profile ci"),
        "example changed: update this test"
    );
    let ws = Workspace::new();
    let task = ws.write("task.sh", "#!/bin/sh\necho task-ran > out.txt\n");
    std::fs::set_permissions(&task, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let art = tempfile::tempdir().unwrap();
    let (audit, report) = (
        art.path().join("audit.jsonl"),
        art.path().join("report.json"),
    );
    let o = Command::new(bin())
        .args(["run", "--profile", "ci", "--audit"])
        .arg(&audit)
        .args(["--report", "json", "--report-file"])
        .arg(&report)
        .args(["--", "./task.sh"])
        .current_dir(ws.path())
        .env("SHELLCAGE_WORKSPACE", ws.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out.txt")).unwrap(),
        "task-ran\n"
    );
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let rec = &lines(&audit)[0];
    assert_eq!(rec["profile"], "ci");
    assert_eq!(rec["profile_hash"], rep["profile_hash"]);
    assert_eq!(rec["enforcement"], rep["enforcement"]);
    assert_eq!(verify(&audit).0, 0);
}

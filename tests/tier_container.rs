//! The container tier (`--tier container`) on this host: what it enforces
//! without namespaces. One shellcage process per case.
mod common;
mod tier;

use common::*;
use tier::{Secret, path_str};

fn landlock() -> bool {
    let out = std::process::Command::new(bin())
        .args(["doctor", "--json", "--tier", "container"])
        .output()
        .unwrap();
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    require(
        d["landlock_abi"].as_u64().unwrap_or(0) >= 1,
        "landlock (the container tier needs it)",
    )
}

fn alive_with(pid: i32, mark: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(mark))
}

#[test]
fn nothing_outlives_the_command_even_in_a_new_session() {
    if !landlock() {
        return;
    }
    let ws = Workspace::new();
    let mark = canary();
    // Two escapes: a new session (setsid -f) and a double fork under nohup.
    // Each writes its pid before sleeping; the command waits for both.
    let script = format!(
        "setsid -f sh -c 'echo $$ > a; sleep 300; echo {mark}' </dev/null >/dev/null 2>&1
         (nohup sh -c 'echo $$ > b; sleep 300; echo {mark}' </dev/null >/dev/null 2>&1 &)
         i=0; while [ ! -s a ] || [ ! -s b ]; do i=$((i+1)); [ $i -gt 500 ] && exit 9; sleep 0.01; done"
    );
    let out = run_sh(&ws, &["--tier", "container"], &script);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for f in ["a", "b"] {
        let pid: i32 = std::fs::read_to_string(ws.path().join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            !alive_with(pid, &mark),
            "{f}: pid {pid} outlived the command"
        );
    }
}

#[test]
fn home_is_a_fresh_per_run_directory_removed_afterwards() {
    if !landlock() {
        return;
    }
    let ws = Workspace::new();
    let out = run_sh(
        &ws,
        &["--tier", "container"],
        "mkdir -p \"$HOME/.cache/t\" && echo x > \"$HOME/.cache/t/f\" && echo \"$HOME\" && echo \"$TMPDIR\" && touch \"$TMPDIR/t\"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let o = stdout(&out);
    let mut lines = o.lines();
    let home = std::path::PathBuf::from(lines.next().unwrap());
    let tmp = std::path::PathBuf::from(lines.next().unwrap());
    assert!(home.starts_with(std::env::temp_dir()), "{}", home.display());
    assert!(tmp.starts_with(std::env::temp_dir()), "{}", tmp.display());
    assert!(
        !home.exists() && !tmp.exists(),
        "per-run directory left behind"
    );
}

#[test]
fn the_supervisor_environment_is_not_readable() {
    if !landlock() {
        return;
    }
    let ws = Workspace::new();
    let mark = canary();
    let out = cmd(
        &ws,
        &["--tier", "container"],
        &["sh", "-c", "cat /proc/$PPID/environ; echo rc=$?"],
    )
    .env("SHELLCAGE_TEST_SECRET", &mark)
    .output()
    .unwrap();
    let o = stdout(&out);
    assert!(o.contains("rc=1"), "{o}");
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(!o.contains(&mark), "{o}");
}

#[test]
fn a_hidden_path_inside_a_read_only_tree_is_left_out() {
    if !landlock() {
        return;
    }
    let ws = Workspace::new();
    let secret = Secret::new();
    let tree = secret.dir.path();
    std::fs::write(tree.join("visible.txt"), "visible\n").unwrap();
    let prof_dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let prof = prof_dir.path().join("p.toml");
    std::fs::write(
        &prof,
        format!(
            "version = 1\nextends = \"dev\"\n[filesystem]\nread = [\"{t}\"]\nhide = [\"{t}/id_*\"]\n",
            t = path_str(tree)
        ),
    )
    .unwrap();
    let out = run_sh(
        &ws,
        &["--tier", "container", "--profile", path_str(&prof)],
        &format!(
            "cat {t}/visible.txt; cat {s}; echo rc=$?; ls {t}",
            t = path_str(tree),
            s = path_str(&secret.path)
        ),
    );
    let o = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(o.starts_with("visible\n"), "{o}");
    assert!(o.contains("rc=1"), "{o}");
    assert!(!o.contains(&secret.text), "{o}");
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_hidden_path_inside_a_writable_tree_refuses_to_run() {
    if !landlock() {
        return;
    }
    let ws = Workspace::new();
    ws.write(".private/key", "k");
    let prof_dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let prof = prof_dir.path().join("p.toml");
    std::fs::write(
        &prof,
        "version = 1\nextends = \"dev\"\n[filesystem]\nhide = [\"{workspace}/.private\"]\n",
    )
    .unwrap();
    let out = cmd(
        &ws,
        &["--tier", "container", "--profile", path_str(&prof)],
        &["touch", "ran"],
    )
    .output()
    .unwrap();
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{e}");
    assert!(e.contains("lies inside the writable tree"), "{e}");
    assert!(!ws.path().join("ran").exists());
}

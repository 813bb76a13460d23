//! The agent entry points: `shellcage sh -c`, the `shellcage-sh` symlink with
//! the argument forms agents use, and how the workspace is chosen
//! (--workspace, SHELLCAGE_WORKSPACE, the git top level from a subdirectory).
use crate::common::*;
use std::path::Path;

/// A `shellcage-sh` symlink to the binary under test, in its own temp dir.
fn shell_link() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let link = dir.path().join("shellcage-sh");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    (dir, link)
}

fn via_link(ws: &Workspace, home: &Home, args: &[&str]) -> std::process::Output {
    let (_dir, link) = shell_link();
    std::process::Command::new(&link)
        .args(args)
        .env_clear()
        .env(
            "SHELLCAGE_SESSION",
            std::env::var_os("SHELLCAGE_SESSION").unwrap_or_else(|| "off".into()),
        )
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8")
        .env("HOME", home.path())
        .current_dir(ws.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn sh_subcommand_runs_a_line_in_the_sandbox() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let ws_s = ws.path().to_str().unwrap();
    let out = shellcage(
        Some(home.path()),
        &[
            "sh",
            "--workspace",
            ws_s,
            "-c",
            "echo $SHELLCAGE:$(hostname); [[ 1 == 1 ]] && echo bash; echo x > made",
        ],
    )
    .output()
    .unwrap();
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "1:shellcage\nbash\n", "{}", stderr(&out));
    assert!(ws.path().join("made").exists());
}

#[test]
fn symlink_accepts_agent_shell_forms() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    for args in [
        vec!["-c", "echo $SHELLCAGE $(hostname)"],
        vec!["-lc", "echo $SHELLCAGE $(hostname)"],
        vec!["-l", "-c", "echo $SHELLCAGE $(hostname)"],
    ] {
        let out = via_link(&ws, &home, &args);
        expect_code(&out, 0);
        assert_eq!(stdout(&out), "1 shellcage\n", "{args:?}: {}", stderr(&out));
    }
    // Positional parameters after the string: $0, $1, $2.
    let out = via_link(
        &ws,
        &home,
        &["-c", "echo \"$0|$1|$2\"", "zero", "one", "two words"],
    );
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "zero|one|two words\n");
    // -e stops at the first failure, -x traces.
    let out = via_link(&ws, &home, &["-e", "-x", "-c", "echo a; false; echo b"]);
    expect_code(&out, 1);
    assert_eq!(stdout(&out), "a\n");
    assert!(stderr(&out).contains("+ false"), "{}", stderr(&out));
    // The exit status passes through, and it is the sandbox that ran it.
    let out = via_link(&ws, &home, &["-c", "echo x > /usr/x 2>/dev/null; exit 3"]);
    expect_code(&out, 3);
    assert!(!Path::new("/usr/x").exists());
    // An unsupported form is a setup error, and nothing runs.
    let out = via_link(&ws, &home, &["-Q", "-c", "touch ran"]);
    expect_code(&out, 125);
    assert!(!ws.path().join("ran").exists());
}

#[test]
fn workspace_flag_and_environment_variable() {
    needs_sandbox!();
    let (ws, other, home) = (Workspace::new(), Workspace::new(), Home::new());
    // --workspace: writable even though the cwd is elsewhere.
    let out = shellcage(
        Some(home.path()),
        &[
            "run",
            "--workspace",
            ws.path().to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "pwd; echo a > a",
        ],
    )
    .current_dir(other.path())
    .output()
    .unwrap();
    expect_code(&out, 0);
    assert_eq!(stdout(&out), format!("{}\n", ws.path().display()));
    assert!(ws.path().join("a").exists());
    assert!(!other.path().join("a").exists());
    // SHELLCAGE_WORKSPACE does the same.
    let out = shellcage(
        Some(home.path()),
        &["run", "--", "sh", "-c", "pwd; echo b > b"],
    )
    .env("SHELLCAGE_WORKSPACE", ws.path())
    .current_dir(other.path())
    .output()
    .unwrap();
    expect_code(&out, 0);
    assert!(ws.path().join("b").exists());
    // The other directory is not visible at all.
    let out = shellcage(
        Some(home.path()),
        &[
            "run",
            "--",
            "sh",
            "-c",
            &format!("test -e {} && echo VISIBLE; true", other.path().display()),
        ],
    )
    .env("SHELLCAGE_WORKSPACE", ws.path())
    .current_dir(ws.path())
    .output()
    .unwrap();
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "");
}

#[test]
fn git_top_level_is_found_from_a_subdirectory() {
    needs_sandbox!();
    let (ws, home) = (Workspace::git(), Home::new());
    let sub = ws.path().join("crates/a");
    std::fs::create_dir_all(&sub).unwrap();
    let out = shellcage(
        Some(home.path()),
        &[
            "run",
            "--",
            "sh",
            "-c",
            "pwd; echo top > ../../top.txt; echo here > here.txt",
        ],
    )
    .current_dir(&sub)
    .output()
    .unwrap();
    expect_code(&out, 0);
    // The command starts in the subdirectory, and the whole project is writable.
    assert_eq!(stdout(&out), format!("{}\n", sub.display()));
    assert!(ws.path().join("top.txt").exists());
    assert!(sub.join("here.txt").exists());
}

#[test]
fn read_and_write_flags_add_paths() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let (r, w) = (Workspace::new(), Workspace::new());
    let c = canary();
    r.write("data", &c);
    let script = format!(
        "cat {r}/data; echo x > {r}/new 2>/dev/null || echo read-only; echo y > {w}/new && echo wrote",
        r = r.path().display(),
        w = w.path().display()
    );
    let out = run_in(
        &ws,
        &home,
        &[
            "--read",
            r.path().to_str().unwrap(),
            "--write",
            w.path().to_str().unwrap(),
        ],
        &script,
    );
    expect_code(&out, 0);
    assert_eq!(stdout(&out), format!("{c}read-only\nwrote\n"));
    assert!(!r.path().join("new").exists());
    assert_eq!(
        std::fs::read_to_string(w.path().join("new")).unwrap(),
        "y\n"
    );
    // A hidden path cannot be added back.
    let ssh = home.write(".ssh/id_ed25519", &c);
    let out = run_in(
        &ws,
        &home,
        &["--read", ssh.to_str().unwrap()],
        "cat ~/.ssh/id_ed25519",
    );
    expect_code(&out, 125);
    assert!(
        stderr(&out).contains("hidden by the profile"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains(&c));
}

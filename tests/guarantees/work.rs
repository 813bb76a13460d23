//! Real work next to the attacks: the sandbox must not get in the way of
//! git, a C compiler, python, node and an offline cargo build.
use crate::common::*;
use std::process::Command;

fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn git_add_and_commit() {
    needs_sandbox!();
    let (ws, home) = (Workspace::git(), Home::new());
    ws.write("src/main.c", "int main(void) { return 0; }\n");
    let out = run_in(
        &ws,
        &home,
        &[],
        "git add -A && git -c user.name=t -c user.email=t@example.com commit -qm 'from the sandbox' && git log --oneline | wc -l && git status --porcelain",
    );
    expect_code(&out, 0);
    // `git status` is clean inside: the placeholders for the missing
    // protected paths do not show up as untracked files.
    assert_eq!(stdout(&out), "1\n", "{}", stderr(&out));
    let log = Command::new("git")
        .args(["log", "--format=%s"])
        .current_dir(ws.path())
        .output()
        .unwrap();
    assert_eq!(stdout(&log), "from the sandbox\n");
}

#[test]
fn c_compile_and_run() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    ws.write(
        "hello.c",
        "#include <stdio.h>\nint main(void) { puts(\"hello from c\"); return 0; }\n",
    );
    let out = run_in(&ws, &home, &[], "cc -o hello hello.c && ./hello");
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "hello from c\n", "{}", stderr(&out));
    assert!(ws.path().join("hello").exists());
}

#[test]
fn python_and_node() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(
        &ws,
        &home,
        &[],
        &format!(
            "{PY} -c 'import json, sqlite3; print(json.dumps(sqlite3.connect(\":memory:\").execute(\"select 6*7\").fetchone()))'"
        ),
    );
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "[42]\n", "{}", stderr(&out));
    // node is a prerequisite of the machine this suite targets, like git and cc.
    assert!(have("node"), "node not found on PATH");
    let out = run_in(
        &ws,
        &home,
        &[],
        "node -e 'require(\"fs\").writeFileSync(\"n.txt\", String(6*7)); console.log(require(\"os\").hostname())'",
    );
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "shellcage\n", "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("n.txt")).unwrap(),
        "42"
    );
}

#[test]
fn cargo_build_offline() {
    needs_sandbox!();
    // Uses the real home: cargo and rustup live in ~/.cargo and ~/.rustup,
    // which the dev profile shows read-only.
    let cargo_ok = Command::new("cargo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !cargo_ok {
        // As an unprivileged CI user the toolchain under /root is unreachable;
        // only then is this skipped (root always has it on this machine).
        assert!(!is_root(), "cargo must be usable as root");
        eprintln!("SKIP: cargo not usable as this user");
        return;
    }
    let ws = Workspace::new();
    ws.write(
        "Cargo.toml",
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    ws.write(
        "src/main.rs",
        "fn main() { println!(\"built in the sandbox\"); }\n",
    );
    let out = shellcage(
        None,
        &[
            "run",
            "--workspace",
            ws.path().to_str().unwrap(),
            "--",
            "cargo",
            "run",
            "--offline",
            "-q",
        ],
    )
    .current_dir(ws.path())
    .output()
    .unwrap();
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "built in the sandbox\n", "{}", stderr(&out));
    assert!(ws.path().join("target/debug/tiny").exists());
}

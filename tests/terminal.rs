//! The command's own terminal (issue 13 item 5): on a terminal, the command gets a pty of
//! the sandbox's devpts, relayed by the supervisor. Every case runs shellcage on a real
//! pseudo-terminal (tests/attacks/ptydrive.py plays the person at the terminal) and
//! asserts what that terminal saw: output, exit status, and its settings afterwards.

#[macro_use]
mod common;

use std::path::Path;

use common::{PY, Workspace, bin};

const DRIVER: &str = include_str!("attacks/ptydrive.py");

/// What the terminal saw (see ptydrive.py).
struct Seen {
    v: serde_json::Value,
}

impl Seen {
    fn status(&self) -> i64 {
        self.v["status"].as_i64().unwrap_or(i64::MIN)
    }
    fn output(&self) -> &str {
        self.v["output"].as_str().unwrap_or("")
    }
    fn num(&self, key: &str) -> f64 {
        self.v[key].as_f64().unwrap_or(f64::NAN)
    }
    /// The terminal's settings are as before the run.
    fn restored(&self) -> bool {
        self.v["termios_before"] == self.v["termios_after"]
    }
    /// For assertion messages: the figures and the start of the output.
    fn brief(&self) -> String {
        let out: String = self.output().chars().take(600).collect();
        format!(
            "status {} failed_step {} timed_out {} exited_at {} cpu {} length {} output {out:?}",
            self.v["status"],
            self.v["failed_step"],
            self.v["timed_out"],
            self.v["exited_at"],
            self.v["cpu"],
            self.v["length"]
        )
    }
    fn completed(&self) -> bool {
        self.v["failed_step"].is_null() && self.v["timed_out"] == false
    }
}

fn drive(ws: &Workspace, argv: &[&str], extra: serde_json::Value) -> Seen {
    let driver = ws.path().join(".ptydrive.py");
    std::fs::write(&driver, DRIVER).unwrap();
    let mut spec = serde_json::json!({ "argv": argv, "rows": 33, "cols": 101, "timeout": 60 });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let o = std::process::Command::new(PY)
        .arg(&driver)
        .arg(spec.to_string())
        .current_dir(ws.path())
        .env_remove("SHELLCAGE_PROFILE")
        .env_remove("SHELLCAGE_WORKSPACE")
        .output()
        .unwrap();
    let text = common::stdout(&o);
    let line = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("ptydrive: {o:?}"));
    Seen {
        v: serde_json::from_str(line).unwrap_or_else(|e| panic!("ptydrive: {e}: {o:?}")),
    }
}

fn sc<'a>(ws: &'a Workspace, args: &[&'a str]) -> Vec<&'a str> {
    let b: &'static str = Box::leak(bin().display().to_string().into_boxed_str());
    let w: &'a str = ws.path().to_str().unwrap();
    let mut v = vec![b, args[0], "--workspace", w];
    v.extend_from_slice(&args[1..]);
    v
}

#[test]
fn the_terminal_inside_is_a_pty_whose_name_exists_there() {
    needs_sandbox!();
    let ws = Workspace::new();
    let script = "t=$(tty); echo \"T=$t\"; test -t 0 && echo yes; stty size; test -c \"$t\" && echo exists; ls /dev/pts";
    let s = drive(&ws, &sc(&ws, &["sh", "-c", script]), serde_json::json!({}));
    let out = s.output();
    assert_eq!(s.status(), 0, "{out:?}");
    assert!(out.contains("T=/dev/pts/0\r\n"), "{out:?}");
    assert!(
        out.contains("yes\r\n") && out.contains("33 101\r\n"),
        "{out:?}"
    );
    assert!(out.contains("exists\r\n"), "{out:?}");
    assert!(s.restored());
    // Control: without a terminal on stdin the same line says so (the check can fail).
    let o = common::run_sh(&ws, &[], script);
    assert!(common::stdout(&o).contains("T=not a tty"), "{o:?}");
}

#[test]
fn an_interactive_shell_works_over_the_pty() {
    needs_sandbox!();
    let ws = Workspace::new();
    let prompt = "[$#] $";
    let steps = serde_json::json!([
        {"expect": prompt},
        {"send": "echo hi$((40+2))\n"}, {"expect": "hi42"}, {"expect": prompt},
        // ^C interrupts the foreground job; the shell survives.
        {"send": "sleep 100\n"}, {"sleep": 0.5}, {"send": "\u{3}"}, {"expect": prompt},
        {"send": "echo alive\n"}, {"expect": "alive"}, {"expect": prompt},
        // ^Z stops it: job control through the pty's line discipline.
        {"send": "sleep 100\n"}, {"sleep": 0.5}, {"send": "\u{1a}"}, {"expect": "Stopped"},
        {"expect": prompt}, {"send": "kill -9 %1\n"}, {"expect": prompt},
        // A new window size reaches the shell (SIGWINCH through the pty).
        {"resize": [40, 120]}, {"sleep": 0.3}, {"send": "stty size\n"}, {"expect": "40 120"},
        {"expect": prompt}, {"send": "exit 3\n"}
    ]);
    let s = drive(
        &ws,
        &sc(&ws, &["sh"]),
        serde_json::json!({ "steps": steps }),
    );
    assert!(s.completed(), "{}", s.brief());
    assert_eq!(s.status(), 3, "{}", s.brief());
    assert!(s.restored(), "terminal settings changed: {}", s.brief());
}

#[test]
fn the_terminal_is_restored_after_a_sigkill_and_after_ctrl_c() {
    needs_sandbox!();
    let ws = Workspace::new();
    let wreck = "stty raw -echo -icanon; kill -9 $$";
    let s = drive(&ws, &sc(&ws, &["sh", "-c", wreck]), serde_json::json!({}));
    assert_eq!(s.status(), 128 + 9, "{}", s.brief());
    assert!(s.restored(), "{}", s.brief());
    // Control: the same command on the terminal itself leaves it changed.
    let bare = drive(&ws, &["sh", "-c", wreck], serde_json::json!({}));
    assert!(
        !bare.restored(),
        "the control changed nothing: {}",
        bare.brief()
    );

    let steps = serde_json::json!([{"sleep": 1.0}, {"send": "\u{3}"}]);
    let s = drive(
        &ws,
        &sc(&ws, &["sh", "-c", "sleep 100"]),
        serde_json::json!({ "steps": steps }),
    );
    assert_eq!(s.status(), 130, "{}", s.brief());
    assert!(s.restored(), "{}", s.brief());
}

#[test]
fn an_output_flood_arrives_complete_in_bounded_memory() {
    needs_sandbox!();
    let ws = Workspace::new();
    // The terminal reads nothing for the first 2 s (the command could write far more
    // than the bound meanwhile), then everything.
    let s = drive(
        &ws,
        &sc(&ws, &["sh", "-c", "yes | head -c 10M"]),
        serde_json::json!({ "steps": [{"pause": 2.0}] }),
    );
    let lines = 10 * 1024 * 1024 / 2;
    assert_eq!(s.status(), 0, "{}", s.brief());
    assert_eq!(s.num("count_y") as usize, lines);
    // "y\n" becomes "y\r\n" on the way out (the caller's onlcr, copied to the pty).
    assert_eq!(s.num("length") as usize, 3 * lines);
    // The driver's own memory is in this figure (it forked shellcage); an unbounded
    // relay would have held most of the 10 MiB (15 MiB on the terminal) written
    // during the pause.
    assert!(
        s.num("maxrss_kb") < 24_000.0,
        "maxrss {} KiB",
        s.num("maxrss_kb")
    );
    assert!(s.restored());
}

#[test]
fn a_terminal_that_takes_nothing_does_not_hold_up_the_timeout() {
    needs_sandbox!();
    let ws = Workspace::new();
    // A ticker writes the workspace every 0.1 s while `yes` floods a terminal that reads
    // nothing for 8 s: the ticks must stop at the 2 s timeout (the relay never blocks the
    // supervisor), long before the terminal reads again. (shellcage's own closing line
    // then waits for the terminal, as any program's output would.)
    let started = std::time::SystemTime::now();
    let s = drive(
        &ws,
        &sc(
            &ws,
            &[
                "sh",
                "--timeout",
                "2s",
                "-c",
                "while :; do : > tick; sleep 0.1; done & yes",
            ],
        ),
        serde_json::json!({ "steps": [{"pause": 8.0}] }),
    );
    assert_eq!(s.status(), 124, "{}", s.brief());
    let last = std::fs::metadata(ws.path().join("tick"))
        .unwrap()
        .modified()
        .unwrap();
    let after = last.duration_since(started).unwrap();
    assert!(
        after.as_secs_f64() < 6.0,
        "ticks until {after:?}: {}",
        s.brief()
    );
    assert!(
        s.num("exited_at") >= 7.5,
        "the control: the terminal was stuck {}",
        s.brief()
    );
    assert!(s.num("cpu") < 2.0, "a busy loop? {}", s.brief());
    assert!(s.restored());
}

#[test]
fn what_the_command_does_with_its_pty_ends_with_it() {
    needs_sandbox!();
    let ws = Workspace::new();
    // Processes left holding the pty (background, own session, /dev/tty) are killed
    // with the sandbox: the relay ends, nothing is left on the host.
    let m = common::sleep_marker();
    let script = format!(
        "sleep {m} & setsid sleep {m} </dev/tty >/dev/tty 2>&1 & (exec 0<&- 1>&- 2>&-; sleep {m}) & echo started; exit 4"
    );
    let s = drive(
        &ws,
        &sc(&ws, &["sh", "-c", &script]),
        serde_json::json!({ "timeout": 30 }),
    );
    assert_eq!(s.status(), 4, "{}", s.brief());
    assert!(s.output().contains("started"), "{}", s.brief());
    assert!(common::host_pids_with(&m).is_empty());
    assert!(s.restored());

    // The command closes its terminal early.
    let s = drive(
        &ws,
        &sc(&ws, &["sh", "-c", "exec 0<&- 1>&- 2>&-; sleep 0.5; exit 6"]),
        serde_json::json!({}),
    );
    assert_eq!(s.status(), 6, "{}", s.brief());
    assert!(s.restored());

    // The command never reads what is typed: 1 MiB of input, bounded, then its status.
    let s = drive(
        &ws,
        &sc(&ws, &["sh", "-c", "sleep 3; exit 7"]),
        serde_json::json!({ "steps": [{"input": 1 << 20, "within": 2.5}] }),
    );
    assert_eq!(s.status(), 7, "{}", s.brief());
    assert!(s.num("maxrss_kb") < 24_000.0, "{}", s.brief());
    // Waiting for a pty that takes nothing is not a busy loop (it would burn ~3 s).
    assert!(s.num("cpu") < 1.0, "cpu {}", s.brief());
    assert!(s.restored());
}

#[test]
fn only_the_fds_that_are_the_terminal_get_the_pty() {
    needs_sandbox!();
    let ws = Workspace::new();
    let file = ws.path().join("out.txt");
    let s = drive(
        &ws,
        &sc(
            &ws,
            &[
                "sh",
                "-c",
                "tty; test -t 1 || echo not-a-tty-1; test -t 2 && echo tty-2 >&2",
            ],
        ),
        serde_json::json!({ "stdout": file }),
    );
    assert_eq!(s.status(), 0, "{}", s.brief());
    // Written straight to the file: no \r from the pty on the way.
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "/dev/pts/0\nnot-a-tty-1\n"
    );
    assert!(s.output().contains("tty-2\r\n"), "{}", s.brief());
}

#[test]
fn the_container_tier_relays_a_host_pty() {
    needs_sandbox!();
    if !Path::new("/dev/ptmx").exists() {
        return;
    }
    let ws = Workspace::new();
    let s = drive(
        &ws,
        &sc(
            &ws,
            &[
                "run",
                "--tier",
                "container",
                "--",
                "sh",
                "-c",
                "tty; test -t 0 && echo yes; stty size",
            ],
        ),
        serde_json::json!({}),
    );
    let out = s.output();
    assert_eq!(s.status(), 0, "{out:?}");
    assert!(
        out.contains("/dev/pts/") && out.contains("yes\r\n33 101\r\n"),
        "{out:?}"
    );
    assert!(s.restored());
}

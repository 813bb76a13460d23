//! Guarantee 11 (limits): no core dumps, file-size and open-file limits, the
//! /tmp size cap, and --timeout killing the whole sandbox with exit 124.
use crate::common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn core_dumps_are_off_and_rlimits_set() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(
        &ws,
        &home,
        &[],
        "grep -E '^Max (core file size|file size|open files) ' /proc/self/limits | tr -s ' '",
    );
    expect_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("Max core file size 0 0 bytes"), "{text}");
    // file_size = "16G" in the dev profile (soft limit).
    assert!(
        text.contains(&format!("Max file size {} ", 16u64 << 30)),
        "{text}"
    );
    // open_files = 65536, or the hard limit when that is lower.
    let host_hard: u64 = std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok())
        .unwrap_or(65536);
    let want = host_hard.min(65536);
    assert!(
        text.contains(&format!("Max open files {want} ")),
        "{text} (host hard limit {host_hard})"
    );
}

#[test]
fn tmp_size_cap_gives_enospc() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    // A user profile (found by name in ~/.config/shellcage/profiles) that
    // extends dev with a tiny /tmp.
    home.write(
        ".config/shellcage/profiles/small-tmp.toml",
        "version = 1\nextends = \"dev\"\n[limits]\ntmp_size = \"8M\"\n",
    );
    let out = run_in(
        &ws,
        &home,
        &["--profile", "small-tmp"],
        &format!(
            "{PY} -c 'import errno\nf = open(\"/tmp/fill\", \"wb\")\ntry:\n  for _ in range(16): f.write(b\"x\" * (1 << 20)); f.flush()\n  print(\"wrote 16M\")\nexcept OSError as e:\n  print(\"errno\", e.errno)'; echo $SHELLCAGE_PROFILE; stat -f -c '%b %S' /tmp"
        ),
    );
    expect_code(&out, 0);
    let text = stdout(&out);
    assert!(text.starts_with("errno 28\nsmall-tmp\n"), "{text}");
    let (blocks, size) = text.lines().nth(2).unwrap().split_once(' ').unwrap();
    let bytes: u64 = blocks.parse::<u64>().unwrap() * size.parse::<u64>().unwrap();
    assert_eq!(bytes, 8 << 20, "{text}");
}

#[test]
fn timeout_kills_the_whole_sandbox_with_124() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let m = sleep_marker();
    let script = format!("setsid -f sleep {m}; sleep {m} & sleep 30");
    let mut args = vec![
        "run",
        "--workspace",
        ws.path().to_str().unwrap(),
        "--timeout",
        "1s",
    ];
    args.extend_from_slice(&["--", "sh", "-c", &script]);
    let start = Instant::now();
    let child = shellcage(Some(home.path()), &args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The marker processes really run before the timeout fires.
    assert!(wait_for(Duration::from_secs(1), || host_pids_with(&m)
        .len()
        == 2));
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    expect_code(&out, 124);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(took >= Duration::from_millis(900), "took {took:?}");
    assert!(stderr(&out).contains("timeout"), "{}", stderr(&out));
    assert!(
        wait_for(Duration::from_secs(1), || host_pids_with(&m).is_empty()),
        "children survived the timeout: {:?}",
        host_pids_with(&m)
    );
}

//! Host activity (issue 8, item 8): what the host does must not be observable from inside.
//! A watch on a read-only system directory is an inotify watch on the host's own inodes
//! when that directory is a bind mount, so it sees every program the host runs from it.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::*;

/// The host runs /usr/bin/tac (a program the probe itself never runs) while a watch on
/// /usr/bin is in place; returns the names the watch saw events for.
fn watch_usr_bin(c: &Ctx, inside: bool) -> String {
    let name = if inside { ".ready-in" } else { ".ready-host" };
    let ready = c.ws.path().join(name);
    let args = [PY, ".probe.py", "watch", "/usr/bin", "2", name];
    let mut cmd = if inside {
        c.sc_cmd(&[], &args)
    } else {
        c.host_cmd(&args)
    };
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || ready.exists()),
        "the watch was never set"
    );
    let ran = std::process::Command::new("/usr/bin/tac")
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(ran.success());
    Out::from_output(child.wait_with_output().unwrap()).result()
}

/// Issue 8 item 8, decided: a documented limit (SECURITY.md, "Host activity seen through
/// the system trees"), not prevented. The read-only system trees are bind mounts of the
/// host's directories, so a watch inside sees the names of the host's accesses there
/// (never contents). This case asserts exactly that documented behaviour, so a change
/// (the overlays of holes-a's plan) must update it and SECURITY.md together. Control:
/// the same watch on the host.
#[test]
fn activity_inotify_on_system_dir_is_the_documented_limit() {
    let Some(c) = Ctx::new(
        "activity_inotify_on_system_dir_is_the_documented_limit",
        "processes",
    ) else {
        return;
    };
    let inside = watch_usr_bin(&c, true);
    c.seen(&format!("documented limit: {inside}"));
    assert!(inside.starts_with("OK"), "{inside}");
    assert!(
        inside.split_whitespace().any(|n| n == "tac"),
        "the watch inside no longer sees the host run tac: update SECURITY.md (host activity) and this case: {inside}"
    );
    // Control: the same watch on the host sees it.
    let host = watch_usr_bin(&c, false);
    assert!(
        host.split_whitespace().any(|n| n == "tac"),
        "control: {host}"
    );
}

/// What the decision keeps working: file watchers in the workspace (dev servers, test
/// runners, IDE helpers run by the agent) see the command's own changes and the host's
/// (the workspace is shared both ways by design). Control: a watch on a directory whose
/// files nobody touches sees nothing.
#[test]
fn activity_inotify_in_the_workspace_works() {
    let Some(c) = Ctx::new("activity_inotify_in_the_workspace_works", "processes") else {
        return;
    };
    std::fs::create_dir(c.ws.path().join("src")).unwrap();
    std::fs::create_dir(c.ws.path().join("quiet")).unwrap();
    let script = format!(
        "{PY} .probe.py watch src 3 .ready-ws > .watch-out & \
         {PY} .probe.py watch quiet 3 .ready-quiet > .quiet-out & \
         while [ ! -e .ready-ws ] || [ ! -e .ready-quiet ]; do sleep 0.05; done; \
         echo x > src/inside.rs; touch .go; \
         while [ ! -e src/host.rs ]; do sleep 0.05; done; wait; cat .watch-out .quiet-out"
    );
    let child = c
        .sc_cmd(&[], &["/bin/sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || c.ws.path().join(".go").exists()),
        "the watches were never set"
    );
    std::fs::write(c.ws.path().join("src/host.rs"), "y").unwrap();
    let out = Out::from_output(child.wait_with_output().unwrap());
    c.seen(out.stdout.trim());
    let mut lines = out.stdout.lines().filter(|l| l.starts_with("OK"));
    let ws = lines.next().unwrap_or_default();
    let quiet = lines.next().unwrap_or_default();
    assert!(ws.split_whitespace().any(|n| n == "inside.rs"), "{out:?}");
    assert!(ws.split_whitespace().any(|n| n == "host.rs"), "{out:?}");
    assert_eq!(quiet.trim(), "OK", "{out:?}");
}

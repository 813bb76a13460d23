//! Root's view (issue 8, item 5): a sandbox started by root sees the system as
//! an unprivileged user, yet its own trees (workspace, kept home, `--write`
//! paths, an overlay layer) stay root's: work goes on as before and what it
//! makes belongs to root on the host. A tree that cannot be id-mapped refuses
//! the run. The same tests pass as an unprivileged user, whose sandbox is
//! unchanged (its own id inside and out).
use crate::common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// The caller's uid and gid, which files made inside must have on the host.
fn me() -> (u32, u32) {
    (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    )
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

#[test]
fn work_in_the_callers_trees_stays_the_callers() {
    needs_sandbox!();
    let (ws, home) = (Workspace::git(), Home::new());
    let extra = tempfile::tempdir().unwrap();
    let extra_path = extra.path().to_str().unwrap().to_string();
    ws.write("hello.c", "int main(void) { return 0; }\n");
    let script = format!(
        "set -e
        cc -o hello hello.c && ./hello
        git add hello.c && git -c user.name=t -c user.email=t@example.com commit -qm c
        mkdir -p sub && echo x > sub/f && chmod 600 sub/f && chown \"$(id -u):$(id -g)\" sub/f
        ln -s f sub/link
        echo h > \"$HOME/in-home\" && cat \"$HOME/in-home\"
        echo t > /tmp/in-tmp && cat /tmp/in-tmp
        echo c > \"$HOME/.cache/kept\"
        echo w > {extra_path}/written
        id -u; id -g
        stat -c '%u:%g %a' sub/f"
    );
    let out = run_in(&ws, &home, &["--write", &extra_path], &script);
    expect_code(&out, 0);
    let (uid, gid) = me();
    // Inside, the caller's own id (0 for root, not an overflow id).
    assert_eq!(
        stdout(&out),
        format!("h\nt\n{uid}\n{gid}\n{uid}:{gid} 600\n"),
        "{}",
        stderr(&out)
    );
    for made in [
        ws.path().join("hello"),
        ws.path().join("sub"),
        ws.path().join("sub/f"),
        ws.path().join("sub/link"),
        extra.path().join("written"),
    ] {
        assert_eq!(owner(&made), (uid, gid), "{}", made.display());
    }
    assert_eq!(
        std::fs::symlink_metadata(ws.path().join("sub/f"))
            .unwrap()
            .mode()
            & 0o7777,
        0o600
    );
    let log = Command::new("git")
        .args(["log", "--format=%s"])
        .current_dir(ws.path())
        .output()
        .unwrap();
    assert_eq!(stdout(&log), "c\n");
    // The kept home (dev profile: home = "persistent") is the caller's too.
    let kept = Command::new("find")
        .args([home.path().to_str().unwrap(), "-name", "kept", "-newer"])
        .arg(ws.path().join("hello.c"))
        .output()
        .unwrap();
    let kept = stdout(&kept);
    let kept = kept
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no kept file"));
    assert_eq!(owner(Path::new(kept)), (uid, gid), "{kept}");
}

#[test]
fn an_overlay_workspace_applies_the_callers_files() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    ws.write("old.txt", "old\n");
    let out = run_in(
        &ws,
        &home,
        &["--overlay"],
        "echo new > new.txt && echo more >> old.txt && chmod 640 new.txt && cat old.txt",
    );
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "old\nmore\n");
    assert!(!ws.path().join("new.txt").exists(), "the host is unchanged");
    let apply = shellcage(
        Some(home.path()),
        &["apply", "--workspace", ws.path().to_str().unwrap()],
    )
    .current_dir(ws.path())
    .output()
    .unwrap();
    expect_code(&apply, 0);
    let new = ws.path().join("new.txt");
    assert_eq!(std::fs::read_to_string(&new).unwrap(), "new\n");
    assert_eq!(owner(&new), me());
    assert_eq!(std::fs::metadata(&new).unwrap().mode() & 0o777, 0o640);
}

/// A ramfs has no id-mapped mounts (a real filesystem without them, like NFS,
/// 9p or most FUSE servers).
struct Ramfs(tempfile::TempDir);

impl Ramfs {
    fn mount() -> Ramfs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "ramfs", "ramfs"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount -t ramfs");
        Ramfs(dir)
    }
}

impl Drop for Ramfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn root_refuses_a_workspace_that_cannot_be_id_mapped() {
    needs_sandbox!();
    if !is_root() {
        // Nothing is id-mapped for an unprivileged caller: its sandbox runs
        // on any filesystem (its own id inside and out), as before.
        let (ws, home) = (Workspace::new(), Home::new());
        let out = run_in(&ws, &home, &[], "echo ran > ran");
        expect_code(&out, 0);
        assert!(ws.path().join("ran").exists());
        return;
    }
    let ram = Ramfs::mount();
    let ws = ram.0.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let home = Home::new();
    let mut c = shellcage(
        Some(home.path()),
        &[
            "run",
            "--workspace",
            ws.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "echo ran > ran",
        ],
    );
    let out = c.current_dir(&ws).output().unwrap();
    expect_code(&out, 125);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot enforce 'no privilege': {} cannot be bound through an id-mapped mount",
            ws.display()
        )) && err.contains("(ramfs)")
            && err.contains("hint: put it on ext4"),
        "{err}"
    );
    // Nothing ran, and nothing of the run is left in the workspace.
    assert_eq!(std::fs::read_dir(&ws).unwrap().count(), 0);
}

#[test]
fn root_of_a_user_namespace_keeps_its_root_and_says_so() {
    needs_sandbox!();
    // `unshare -Ur`: uid 0 of a user namespace that is not the host's (as in
    // a rootless container), which cannot make id-mapped mounts of the host's
    // filesystems. The run works, and the report does not call it full.
    let unshare = Command::new("unshare").args(["-Ur", "true"]).status();
    if !require(unshare.is_ok_and(|s| s.success()), "unshare -Ur") {
        return;
    }
    let (ws, home) = (Workspace::new(), Home::new());
    let mut c = Command::new("unshare");
    c.args(["-Ur", "--"])
        .arg(bin())
        .args(["run", "--report", "json", "--workspace"])
        .arg(ws.path())
        .args(["--", "sh", "-c", "echo ran > ran; id -u"])
        .env("HOME", home.path())
        .current_dir(ws.path());
    let out = c.output().unwrap();
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "0\n");
    let report = stderr(&out);
    let json: serde_json::Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    let row = json["enforcement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["guarantee"] == "no_privilege")
        .unwrap();
    assert_eq!(row["status"], "partial", "{row}");
    assert!(
        row["note"].as_str().unwrap().contains("not the host's"),
        "{row}"
    );
}

#[test]
fn the_report_names_the_mapping_for_root() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(&ws, &home, &["--report", "json"], "true");
    expect_code(&out, 0);
    let json: serde_json::Value =
        serde_json::from_str(stderr(&out).lines().last().unwrap()).unwrap();
    let row = json["enforcement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["guarantee"] == "no_privilege")
        .unwrap();
    assert_eq!(row["status"], "full", "{row}");
    let mapped = row["mechanisms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m.as_str().unwrap().contains("mapped to 2000000000"));
    assert_eq!(mapped, is_root(), "{row}");
}

#[test]
fn a_read_only_tree_without_id_mapped_mounts_is_seen_unprivileged() {
    needs_sandbox!();
    // Root, a read-only workspace on a ramfs: it cannot be id-mapped, so it is
    // shown as it is, the view an unprivileged user has of root's files (the
    // run goes ahead). An unprivileged caller reads its own 0600 file.
    let ram = is_root().then(Ramfs::mount);
    let scratch = tempfile::tempdir().unwrap();
    let ws = match &ram {
        Some(r) => r.0.path().join("ws"),
        None => scratch.path().join("ws"),
    };
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("public"), "public\n").unwrap();
    std::fs::write(ws.join("own.key"), "own\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ws.join("own.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    if let Some(r) = &ram {
        std::fs::set_permissions(r.0.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let home = Home::new();
    let out = shellcage(
        Some(home.path()),
        &[
            "run",
            "--profile",
            "readonly",
            "--workspace",
            ws.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "cat public; cat own.key; echo rc=$?",
        ],
    )
    .current_dir(&ws)
    .output()
    .unwrap();
    expect_code(&out, 0);
    let want = if is_root() {
        "public\nrc=1\n"
    } else {
        "public\nown\nrc=0\n"
    };
    assert_eq!(stdout(&out), want, "{}", stderr(&out));
}

#[test]
fn root_without_cap_sys_admin_keeps_its_root_and_says_so() {
    needs_sandbox!();
    if !is_root() {
        // Not root: nothing to drop; the sandbox is the caller's own id, and
        // that is covered by the_report_names_the_mapping_for_root.
        return;
    }
    // A container that drops CAP_SYS_ADMIN (Docker's default set): no
    // id-mapped mounts, so no mapping; the run works and is not called full.
    let (ws, home) = (Workspace::new(), Home::new());
    let out = Command::new("setpriv")
        .args(["--bounding-set", "-sys_admin", "--"])
        .arg(bin())
        .args(["run", "--report", "json", "--workspace"])
        .arg(ws.path())
        .args(["--", "sh", "-c", "echo ran > ran; id -u"])
        .env("HOME", home.path())
        .current_dir(ws.path())
        .output()
        .unwrap();
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "0\n");
    assert_eq!(owner(&ws.path().join("ran")), (0, 0));
    let json: serde_json::Value =
        serde_json::from_str(stderr(&out).lines().last().unwrap()).unwrap();
    let row = json["enforcement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["guarantee"] == "no_privilege")
        .unwrap();
    assert_eq!(row["status"], "partial", "{row}");
    assert!(
        row["note"]
            .as_str()
            .unwrap()
            .contains("without CAP_SYS_ADMIN"),
        "{row}"
    );
}

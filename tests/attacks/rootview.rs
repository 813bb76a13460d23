//! Root's view (issue 8, item 5): started by root, the sandbox sees the system
//! trees as an unprivileged user would. Files only root may read, outside the
//! fixed hide list, stay closed: owner-only, group-root-only, or behind a
//! directory only root may enter; reached directly or through a link in the
//! workspace. World-readable files next to them stay readable (the control
//! inside), and root on the host reads them all (the control outside).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::harness::*;

/// A directory under /etc holding the case's files, removed on drop.
struct EtcDir(PathBuf);

impl EtcDir {
    fn new(c: &Ctx) -> EtcDir {
        let tag = c
            .canary
            .to_lowercase()
            .replace(|ch: char| !ch.is_ascii_alphanumeric(), "");
        let dir = PathBuf::from(format!("/etc/shellcage-attack-{tag}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        EtcDir(dir)
    }

    /// A file of `text` at REL with `mode`, owned by root:root.
    fn file(&self, rel: &str, text: &str, mode: u32) -> String {
        let p = self.0.join(rel);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.display().to_string()
    }

    fn dir(&self, rel: &str, mode: u32) {
        let p = self.0.join(rel);
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

impl Drop for EtcDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Root-only files the host already has under /etc (and the sandbox binds).
const HOST_ROOT_ONLY: [&str; 3] = [
    "/etc/default/cacerts",
    "/etc/ssl/private/ssl-cert-snakeoil.key",
    "/etc/.pwd.lock",
];

attack!(rootview_root_only_files_under_etc, "secrets", |c| {
    if !crate::common::is_root() {
        return unprivileged_view(&c);
    }
    let etc = EtcDir::new(&c);
    let secret = format!("secret {}\n", c.canary);
    let owner_only = etc.file("key.pem", &secret, 0o600);
    let group_root = etc.file("group.conf", &secret, 0o640);
    etc.dir("private", 0o700);
    let behind_dir = etc.file("private/token", &secret, 0o644);
    let public = etc.file("public.conf", "public\n", 0o644);
    // A link in the workspace leads to the same file: resolved in the
    // sandbox's (unprivileged) view of /etc, not the workspace's.
    std::os::unix::fs::symlink(&owner_only, c.ws.path().join("key-link")).unwrap();

    let mut seen = Vec::new();
    for path in [owner_only.as_str(), &group_root, &behind_dir, "key-link"] {
        let out = c.probe_sc(&[], &["read", path]);
        c.assert_no_canary(&out);
        seen.push(assert_errno(&out, &["EACCES"]));
        // Control: root on the host reads it.
        c.assert_control_leaks(&c.probe_host(&["read", path]));
    }
    // Control inside: the world-readable file next to them is readable.
    let out = c.probe_sc(&[], &["read", &public]);
    assert_eq!(out.result(), "OK public ", "{out:?}");
    // The host's own root-only files, outside the hide list.
    for path in HOST_ROOT_ONLY.iter().filter(|p| Path::new(p).exists()) {
        let out = c.probe_sc(&[], &["read", path]);
        seen.push(format!("{path}: {}", assert_errno(&out, &["EACCES"])));
        assert_ok(&c.probe_host(&["read", path]));
    }
    // A hard link into the workspace would give the file the workspace's
    // (root's) view: refused across mounts.
    let link = c.sc(&[], &format!("ln {owner_only} hard-link; echo rc=$?"));
    assert!(!link.stdout.contains("rc=0"), "{link:?}");
    assert!(!c.ws.path().join("hard-link").exists());
    seen.push(format!("ln: {}", link.stderr.trim()));
    // Root's group is gone too, and cannot be taken back.
    let groups = c.sc(
        &[],
        &format!(
            "grep ^Groups: /proc/self/status; {PY} -c 'import os; os.setgroups([0])'; echo rc=$?"
        ),
    );
    assert_eq!(
        groups.stdout.lines().next().map(str::trim),
        Some("Groups:"),
        "{groups:?}"
    );
    assert!(!groups.stdout.contains("rc=0"), "{groups:?}");
    c.seen(&seen.join("; "));
});

/// Run by an unprivileged user, the sandbox has that user's id: a root-only
/// file of the host stays as closed as on the host.
fn unprivileged_view(c: &Ctx) {
    let Some(path) = HOST_ROOT_ONLY.iter().find(|p| Path::new(p).exists()) else {
        crate::common::require(false, "a root-only file under /etc");
        return;
    };
    let host = c.probe_host(&["read", path]);
    assert_errno(&host, &["EACCES"]);
    let out = c.probe_sc(&[], &["read", path]);
    c.seen(&assert_errno(&out, &["EACCES"]));
}

attack!(
    rootview_root_owned_workspace_stays_roots_own,
    "secrets",
    |c| {
        // The workspace is the caller's own tree: its owner-only files stay
        // readable and writable inside, whoever the caller is, and what the
        // command creates there belongs to the caller on the host.
        let own = c.ws.write("own.key", "mine\n");
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = c.sc(
        &[],
        "cat own.key && echo more >> own.key && mkdir -p d && echo x > d/new && chmod 600 d/new && ls -n d/new",
    );
        assert_eq!(out.code, Some(0), "{out:?}");
        c.seen(out.stdout.lines().next().unwrap_or(""));
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(c.ws.path().join("d/new")).unwrap();
        assert_eq!(meta.uid(), nix::unistd::getuid().as_raw());
        assert_eq!(meta.gid(), nix::unistd::getgid().as_raw());
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(std::fs::read_to_string(&own).unwrap(), "mine\nmore\n");
        // Inside, the owner is the sandbox's own uid (0 for root), not an
        // overflow id.
        let uid = nix::unistd::getuid().as_raw();
        assert!(
            out.stdout.contains(&format!(" {uid} ")),
            "owner inside: {out:?}"
        );
    }
);

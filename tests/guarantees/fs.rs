//! Guarantee 1 (filesystem view) of the `dev` profile: system dirs read-only,
//! workspace read-write, private /tmp and $HOME, home toolchains read-only,
//! fresh /proc, a minimal /dev, and nothing else of the host.
use crate::common::*;

#[test]
fn system_dirs_are_read_only() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let name = canary();
    let script = format!(
        r#"for d in /usr /usr/bin /etc /bin /sbin /lib /opt; do
             [ -d "$d" ] || continue
             if ( : > "$d/{name}" ) 2>/dev/null; then echo "WROTE $d"; fi
             {py} -c 'import os,sys
try: os.open(sys.argv[1], os.O_WRONLY|os.O_CREAT)
except OSError as e: print("errno", sys.argv[1], e.errno)' "$d/{name}"
           done"#,
        py = PY
    );
    let out = run_in(&ws, &home, &[], &script);
    expect_code(&out, 0);
    let text = stdout(&out);
    assert!(!text.contains("WROTE"), "{text}");
    // EROFS (30) from the read-only bind; EACCES (13) would be Landlock's answer.
    for d in ["/usr", "/usr/bin", "/etc"] {
        let line = format!("errno {d}/{name} ");
        let errno = text
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no answer for {d}: {text}"));
        assert!(errno == "30" || errno == "13", "{d}: errno {errno}");
        assert!(!std::path::Path::new(d).join(&name).exists());
    }
}

#[test]
fn workspace_is_writable_and_writes_reach_the_host() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let c = canary();
    let out = run_in(
        &ws,
        &home,
        &[],
        &format!("mkdir -p sub/dir && echo {c} > sub/dir/f && echo {c} > top && rm -f gone"),
    );
    expect_code(&out, 0);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("sub/dir/f")).unwrap(),
        format!("{c}\n")
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("top")).unwrap(),
        format!("{c}\n")
    );
}

#[test]
fn tmp_is_private() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    // A file the host has in /tmp is not visible inside …
    let host_file = tempfile::NamedTempFile::new_in(std::env::temp_dir()).unwrap();
    std::fs::write(host_file.path(), canary()).unwrap();
    let name = canary();
    let out = run_in(
        &ws,
        &home,
        &[],
        &format!(
            "test -e {host} && echo HOST_VISIBLE; echo x > /tmp/{name} && cat /tmp/{name}; stat -f -c %T /tmp",
            host = host_file.path().display()
        ),
    );
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "x\ntmpfs\n", "{}", stderr(&out));
    // … and a file written there does not reach the host's /tmp.
    assert!(!std::path::Path::new("/tmp").join(&name).exists());
    assert!(!std::env::temp_dir().join(&name).exists());
}

#[test]
fn home_is_private_and_empty_except_toolchains() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let c = canary();
    home.write("notes.txt", &c);
    home.write(".bash_history", &c);
    home.write(".config/some-app/settings", &c);
    home.write(".cargo/bin/fake-tool", "#!/bin/sh\necho tool-ran\n");
    std::fs::set_permissions(
        home.path().join(".cargo/bin/fake-tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    home.write(".cargo/config.toml", "[build]\n");
    let out = run_in(
        &ws,
        &home,
        &[],
        r#"echo "home=$HOME"; stat -f -c %T "$HOME"; ls -A "$HOME"; ls -A "$HOME/.cargo";
           "$HOME/.cargo/bin/fake-tool";
           ( echo x > "$HOME/.cargo/new" ) 2>/dev/null && echo CARGO_WRITABLE;
           echo cache > "$HOME/written-inside" && echo home-writable"#,
    );
    expect_code(&out, 0);
    let text = stdout(&out);
    // The toolchain the profile shows, and the kept directories of the
    // persistent home (dev), empty on a workspace's first run.
    let expected = format!(
        "home={}\ntmpfs\n.cache\n.cargo\n.npm\n.shellcage\nbin\nconfig.toml\ntool-ran\nhome-writable\n",
        home.path().display()
    );
    assert_eq!(text, expected, "{}", stderr(&out));
    assert!(!text.contains(&c));
    // Host side: nothing written inside reached the real home directory.
    assert!(!home.path().join("written-inside").exists());
    assert!(!home.path().join(".cargo/new").exists());
    assert_eq!(
        std::fs::read_to_string(home.path().join("notes.txt")).unwrap(),
        c
    );
}

#[test]
fn proc_is_fresh() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(
        &ws,
        &home,
        &[],
        "for p in /proc/[0-9]*; do echo ${p#/proc/}; done; readlink /proc/self/ns/pid",
    );
    expect_code(&out, 0);
    let text = stdout(&out);
    let pids: Vec<u32> = text.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(pids.contains(&1), "{text}");
    assert!(pids.len() <= 5, "{text}");
    assert!(pids.iter().all(|p| *p < 100), "{text}");
    // The test's own pid is a host pid the sandbox must not see.
    let host_ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert!(!text.contains(&*host_ns.to_string_lossy()), "{text}");
}

#[test]
fn dev_holds_only_the_listed_nodes() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(
        &ws,
        &home,
        &[],
        "ls -A /dev | tr '\\n' ' '; echo; head -c 4 /dev/zero | od -An -tx1; echo hi > /dev/null && echo null-ok",
    );
    expect_code(&out, 0);
    let text = stdout(&out);
    let mut lines = text.lines();
    let mut names: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    names.sort();
    let mut want = vec![
        "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty",
        "urandom", "zero",
    ];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(lines.next().unwrap().trim(), "00 00 00 00");
    assert_eq!(lines.next(), Some("null-ok"));
}

#[test]
fn everything_else_on_the_host_is_absent() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    // Another directory of the test user's, next to the workspace on the host.
    let other = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    std::fs::write(other.path().join("f"), "x").unwrap();
    let mut probes = vec![
        "/srv".to_string(),
        "/mnt".into(),
        "/var".into(),
        "/home".into(),
        "/boot".into(),
        "/sys".into(),
        // /run is the sandbox's own, holding only the policy file (below).
        "/run/user".into(),
        "/run/systemd".into(),
        "/run/dbus".into(),
        "/media".into(),
        "/root".into(),
        other.path().display().to_string(),
    ];
    probes.retain(|p| std::path::Path::new(p) != home.path());
    let script = probes
        .iter()
        .map(|p| format!("test -e {p} && echo PRESENT {p}; "))
        .collect::<String>()
        + "echo RUN $(ls -A /run) $(ls -A /run/shellcage); ls /";
    let out = run_in(&ws, &home, &[], &script);
    expect_code(&out, 0);
    let text = stdout(&out);
    assert!(!text.contains("PRESENT"), "{text}");
    assert!(
        text.lines().any(|l| l == "RUN shellcage policy.json"),
        "/run holds only the policy in force: {text}"
    );
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("RUN "))
        .map(|l| format!("{l}\n"))
        .collect();
    // The root holds only system dirs and the sandbox's own mount points.
    for name in text.lines() {
        assert!(
            [
                "bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "opt", "nix",
                "snap", "dev", "proc", "tmp", "run"
            ]
            .contains(&name),
            "unexpected /{name} in the sandbox root:\n{text}"
        );
    }
}

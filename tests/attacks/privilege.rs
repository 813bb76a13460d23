//! Privilege: no way back to capabilities, new namespaces, mounts, or the
//! kernel interfaces the seccomp filter removes.

use crate::harness::*;

/// A syscall probe: refused inside with an errno from WANT; on the host the
/// same probe works (as root; otherwise it must at least reach the kernel).
fn sys_case(c: &Ctx, args: &[&str], want: &[&str]) {
    let out = c.probe_sc(&[], args);
    let r = assert_errno(&out, want);
    c.seen(&r);
    assert_ok_if_root(&c.probe_host(args));
}

/// Like `sys_case`, but the control runs in a throwaway user (and mount/net)
/// namespace on the host, where the call is allowed without real privilege.
fn ns_case(c: &Ctx, unshare: &[&str], args: &[&str]) {
    let out = c.probe_sc(&[], args);
    let r = assert_errno(&out, &["EPERM"]);
    c.seen(&r);
    let mut argv = vec!["unshare"];
    argv.extend_from_slice(unshare);
    argv.extend_from_slice(&[PY, ".probe.py"]);
    argv.extend_from_slice(args);
    let o = c.host_cmd(&argv).output().unwrap();
    assert_ok(&Out::from_output(o));
}

attack!(priv_unshare_user, "privilege", |c| {
    let out = c.sc(&[], "unshare -Ur id -u; echo rc=$?");
    c.seen(out.all().trim());
    assert!(out.stderr.contains("Operation not permitted"), "{out:?}");
    assert!(!out.stdout.contains("rc=0"));
    let control = c.host("unshare -Ur id -u");
    assert_eq!(control.stdout.trim(), "0", "{control:?}");
});

attack!(priv_unshare_user_syscall, "privilege", |c| {
    sys_case(&c, &["unshare-user"], &["EPERM"])
});

attack!(priv_clone3_newuser, "privilege", |c| {
    sys_case(&c, &["clone3-newuser"], &["ENOSYS", "EPERM"])
});

attack!(priv_mount_tmpfs, "privilege", |c| {
    ns_case(&c, &["-rm"], &["mount"])
});
attack!(priv_chroot, "privilege", |c| {
    ns_case(&c, &["-r"], &["chroot"])
});
attack!(priv_setns_own_netns, "privilege", |c| {
    ns_case(&c, &["-rn"], &["setns", "/proc/self/ns/net"])
});

attack!(priv_nsenter_pid1, "privilege", |c| {
    let out = c.sc(&[], "nsenter -t 1 -m -u -n true; echo rc=$?");
    c.seen(out.all().trim());
    assert!(!out.stdout.contains("rc=0"), "{out:?}");
    // Control: nsenter works where setns is allowed (own namespaces, root or a
    // throwaway user namespace).
    let control = c.host("unshare -rn sh -c 'nsenter -t $$ -n true'; echo rc=$?");
    assert!(control.stdout.contains("rc=0"), "{control:?}");
});

attack!(priv_setuid_binary_su, "privilege", |c| {
    if !crate::common::require(std::path::Path::new("/usr/bin/su").exists(), "/usr/bin/su") {
        return;
    }
    let uid = nix::unistd::getuid().as_raw();
    let out = c.sc(
        &[],
        "su root -c 'grep -E \"^(Uid|CapEff)\" /proc/self/status' </dev/null; echo rc=$?",
    );
    c.seen(out.all().trim());
    // Either su fails, or what it runs has no capability and the same uid.
    if out.stdout.contains("CapEff") {
        assert!(out.stdout.contains("CapEff:\t0000000000000000"), "{out:?}");
        assert!(out.stdout.contains(&format!("Uid:\t{uid}\t")), "{out:?}");
    } else {
        assert!(!out.stdout.contains("rc=0"), "{out:?}");
    }
    if crate::common::is_root() {
        let control = c.host("su root -c 'grep CapEff /proc/self/status'");
        assert!(
            !control.stdout.contains("CapEff:\t0000000000000000"),
            "{control:?}"
        );
    }
});

attack!(priv_capabilities_and_no_new_privs, "privilege", |c| {
    let out = c.probe_sc(&[], &["status"]);
    let r = assert_ok(&out);
    c.seen(&r);
    for f in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(r.contains(&format!("{f}=0000000000000000")), "{f}: {r}");
    }
    assert!(r.contains("NoNewPrivs=1") && r.contains("Seccomp=2"), "{r}");
    // Control: the host process has a non-empty bounding set.
    let control = assert_ok(&c.probe_host(&["status"]));
    assert!(!control.contains("CapBnd=0000000000000000"), "{control}");
});

attack!(priv_keyctl, "privilege", |c| {
    sys_case(&c, &["keyctl"], &["EPERM"])
});
attack!(priv_bpf, "privilege", |c| {
    sys_case(&c, &["bpf"], &["EPERM"])
});
attack!(priv_perf_event_open, "privilege", |c| {
    sys_case(&c, &["perf"], &["EPERM", "EACCES"])
});
attack!(priv_userfaultfd, "privilege", |c| {
    sys_case(&c, &["userfaultfd"], &["EPERM"])
});
attack!(priv_io_uring_setup, "privilege", |c| {
    sys_case(&c, &["io-uring"], &["EPERM", "ENOSYS"])
});
attack!(priv_open_by_handle_at, "privilege", |c| {
    sys_case(&c, &["open-by-handle"], &["EPERM"])
});
attack!(priv_personality, "privilege", |c| {
    sys_case(&c, &["personality"], &["EPERM"])
});

/// Build abi.c into the workspace with the system compiler.
#[cfg(target_arch = "x86_64")]
fn build_abi(c: &Ctx) -> bool {
    std::fs::write(c.ws.path().join("abi.c"), include_str!("abi.c")).unwrap();
    let ok = std::process::Command::new("cc")
        .args(["-O0", "-o", "abi", "abi.c"])
        .current_dir(c.ws.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    crate::common::require(ok, "a C compiler (cc)")
}

#[cfg(target_arch = "x86_64")]
attack!(priv_x32_abi, "privilege", |c| {
    if !build_abi(&c) {
        return;
    }
    let out = Out::from_output(c.sc_cmd(&[], &["./abi", "x32"]).output().unwrap());
    let r = assert_errno(&out, &["EPERM"]);
    c.seen(&r);
    // Control: on the host the call reaches the kernel (OK with x32 support,
    // ENOSYS without): never the filter's EPERM.
    let control = Out::from_output(c.host_cmd(&["./abi", "x32"]).output().unwrap());
    let cr = control.result();
    assert!(cr.starts_with("OK") || cr == "ERR ENOSYS", "{control:?}");
});

#[cfg(target_arch = "x86_64")]
attack!(priv_int80_i386_abi, "privilege", |c| {
    if !build_abi(&c) {
        return;
    }
    let out = Out::from_output(c.sc_cmd(&[], &["./abi", "int80"]).output().unwrap());
    c.seen(&format!("code={:?} {}", out.code, out.stderr.trim()));
    // Killed by SIGSYS (128 + 31); shellcage reports it.
    assert_eq!(out.code, Some(159), "{out:?}");
    let control = Out::from_output(c.host_cmd(&["./abi", "int80"]).output().unwrap());
    if !crate::common::require(control.result().starts_with("OK"), "ia32 emulation") {
        return;
    }
});

//! Guarantees 6 (no privilege: capabilities, no_new_privs, user/IPC/UTS
//! namespaces) and 7 (seccomp): a C probe built by the test reports the errno
//! of each refused system call from inside the sandbox.
use crate::common::*;

#[test]
fn no_capabilities_and_no_new_privs() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(
        &ws,
        &home,
        &[],
        "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status",
    );
    expect_code(&out, 0);
    let text = stdout(&out);
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let v = field(&text, &format!("{cap}:")).unwrap_or_else(|| panic!("{cap} missing: {text}"));
        assert_eq!(v, "0000000000000000", "{cap}");
    }
    assert_eq!(field(&text, "NoNewPrivs:"), Some("1"));
}

#[test]
fn own_user_ipc_and_uts_namespaces() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(
        &ws,
        &home,
        &[],
        "hostname; for n in user ipc uts pid mnt net; do readlink /proc/self/ns/$n; done",
    );
    expect_code(&out, 0);
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("shellcage"));
    for (n, inside) in ["user", "ipc", "uts", "pid", "mnt", "net"]
        .iter()
        .zip(lines)
    {
        let host = std::fs::read_link(format!("/proc/self/ns/{n}")).unwrap();
        assert!(inside.starts_with(&format!("{n}:[")), "{inside}");
        assert_ne!(inside, host.to_string_lossy(), "{n} namespace shared");
    }
    // The host's hostname is unchanged.
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host_name.trim(), "shellcage");
}

/// Each line: `NAME ERRNO` (0 when the call succeeded).
const PROBE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

static void r(const char *name, long rc) { printf("%s %d\n", name, rc < 0 ? errno : 0); }

int main(void) {
    char c = 'x';
    /* Arguments are chosen so that, without the filter, the kernel would
       answer differently (success, EFAULT, EINVAL, EBADF or ENOTTY). */
    errno = 0; r("ptrace", syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0));
    errno = 0; r("unshare_user", syscall(SYS_unshare, CLONE_NEWUSER));
    errno = 0; r("unshare_net", syscall(SYS_unshare, CLONE_NEWNET));
    errno = 0; r("mount", syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, 0));
    errno = 0; r("bpf", syscall(SYS_bpf, 0, 0, 0));
    errno = 0; r("keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0, 0, 0));
    errno = 0; r("add_key", syscall(SYS_add_key, "user", "x", "y", 1, -3));
    errno = 0; r("perf_event_open", syscall(SYS_perf_event_open, 0, 0, -1, -1, 0));
    errno = 0; r("userfaultfd", syscall(SYS_userfaultfd, 1 /* UFFD_USER_MODE_ONLY */));
    errno = 0; r("io_uring_setup", syscall(SYS_io_uring_setup, 1, 0));
    errno = 0; r("setns", syscall(SYS_setns, -1, 0));
    errno = 0; r("process_vm_readv", syscall(SYS_process_vm_readv, getpid(), 0, 0, 0, 0, 0));
    errno = 0; r("chroot", syscall(SYS_chroot, "/"));
    errno = 0; r("pivot_root", syscall(SYS_pivot_root, 0, 0));
    errno = 0; r("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, 0, 0));
    errno = 0; r("clone3", syscall(SYS_clone3, 0, 0));
    errno = 0; r("tiocsti", ioctl(0, TIOCSTI, &c));
    errno = 0; r("personality_rie", syscall(SYS_personality, READ_IMPLIES_EXEC));
    errno = 0; r("personality_query", syscall(SYS_personality, 0xffffffff));
    errno = 0; r("getpid", syscall(SYS_getpid));
    return 0;
}
"#;

#[test]
fn seccomp_refuses_the_listed_system_calls() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let exe = ws.path().join("probe");
    cc(PROBE, &exe);
    // stdin is /dev/null: TIOCSTI would get ENOTTY without the filter.
    let out = run_in(&ws, &home, &[], "./probe");
    expect_code(&out, 0);
    let text = stdout(&out);
    const EPERM: &str = "1";
    const ENOSYS: &str = "38";
    for name in [
        "ptrace",
        "unshare_user",
        "unshare_net",
        "mount",
        "bpf",
        "keyctl",
        "add_key",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "setns",
        "process_vm_readv",
        "chroot",
        "pivot_root",
        "open_by_handle_at",
        "tiocsti",
        "personality_rie",
    ] {
        assert_eq!(field(&text, name), Some(EPERM), "{name}:\n{text}");
    }
    assert_eq!(field(&text, "clone3"), Some(ENOSYS), "{text}");
    // The controls: harmless calls still work.
    assert_eq!(field(&text, "personality_query"), Some("0"), "{text}");
    assert_eq!(field(&text, "getpid"), Some("0"), "{text}");
}

#[test]
fn seccomp_does_not_break_threads_or_fork() {
    needs_sandbox!();
    // clone3 → ENOSYS must make libc fall back to clone for threads and fork.
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(
        &ws,
        &home,
        &[],
        &format!(
            "{PY} -c 'import threading, os\nt = threading.Thread(target=print, args=(\"thread\",)); t.start(); t.join()\npid = os.fork()\nif pid == 0: os._exit(7)\nprint(\"child\", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))'"
        ),
    );
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "thread\nchild 7\n", "{}", stderr(&out));
}

//! seccomp: the deny-list filter, installed last, just before `execve`.
//!
//! Model: every syscall is allowed unless a rule below matches it. The filter is the second
//! layer for "no privilege", "host processes untouchable", "no network egress" and "no
//! terminal injection", and the only layer for "no kernel attack surface beyond need" and
//! "no setuid or setgid file left on the host" (the workspace is `nosuid` only inside).
//!
//! The program is built from four parts:
//!
//! 1. a hand-written prologue: a syscall from another ABI (i386 on x86_64, arm32 on aarch64)
//!    kills the process; on x86_64 an x32 syscall (number with bit 30 set) fails with EPERM;
//! 2. a dispatch: a balanced binary search over the syscall numbers that have rules; any
//!    other number is allowed within about ten instructions, number `i` of the sorted list
//!    jumps to entry `i` of
//! 3. a table, one instruction per such number: `RET ERRNO` for a syscall refused whatever
//!    its arguments, else a jump to
//! 4. its block: the syscall's argument rules compiled by seccompiler on their own (its
//!    architecture check removed), answering the rule's errno (EPERM, EAFNOSUPPORT, ENOSYS)
//!    when a rule matches and ALLOW otherwise.
//!
//! A block starts by reloading the syscall number and only ever returns, so it depends on
//! nothing before it; each syscall has rules for one errno only. [`build`] checks both facts
//! and fails closed if a seccompiler update ever changed them. A syscall with rules reaches
//! its verdict in at most ~45 instructions (openat: 30), so hot calls such as openat, ioctl
//! and socket pay little for being filtered.
//!
//! [`build`] is pure (the same spec gives the same program), so it can be cached.

use seccompiler::BpfProgram;

/// What the filter should allow that differs between tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompSpec {
    /// Allow AF_INET / AF_INET6 sockets. False in a tier without a network namespace, where
    /// the socket-family filter is what keeps the command off the network.
    pub allow_inet: bool,
}

/// Errors from building or installing the filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "cannot build seccomp filter: unsupported architecture {arch} (supported: x86_64, aarch64 little-endian)"
    )]
    UnsupportedArchitecture { arch: &'static str },
    #[error("cannot build seccomp filter: {0}")]
    Compile(#[from] seccompiler::BackendError),
    #[error(
        "cannot build seccomp filter: {0} (a seccompiler change broke an assumption of shellcage; refusing to run)"
    )]
    UnexpectedProgram(&'static str),
    #[error(
        "cannot install seccomp filter: no_new_privs is not set (hint: set PR_SET_NO_NEW_PRIVS before installing the filter)"
    )]
    NoNewPrivs,
    #[error("cannot install seccomp filter: prctl(PR_GET_NO_NEW_PRIVS) => {0}")]
    GetNoNewPrivs(#[source] nix::errno::Errno),
    #[error(
        "cannot install seccomp filter: seccomp(SECCOMP_SET_MODE_FILTER, {len} instructions) => {errno}"
    )]
    Install {
        len: usize,
        #[source]
        errno: nix::errno::Errno,
    },
}

#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
))]
mod program;
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
))]
mod proxy;

/// The proxy process's allowlist filter (two programs, installed in order with
/// [`install`]); see `seccomp/proxy.rs`.
pub fn build_proxy() -> Result<Vec<BpfProgram>, SeccompError> {
    #[cfg(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_endian = "little")
    ))]
    return Ok(proxy::build()?.into());
    #[allow(unreachable_code)]
    Err(SeccompError::UnsupportedArchitecture {
        arch: std::env::consts::ARCH,
    })
}

/// Builds the filter for `spec`. Pure: no syscalls, same output for the same input.
/// On an architecture other than x86_64 and little-endian aarch64 it refuses, and the caller
/// must not run the command.
pub fn build(spec: &SeccompSpec) -> Result<BpfProgram, SeccompError> {
    #[cfg(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_endian = "little")
    ))]
    return program::build(spec);
    #[allow(unreachable_code)]
    {
        let _ = spec;
        Err(SeccompError::UnsupportedArchitecture {
            arch: std::env::consts::ARCH,
        })
    }
}

/// Syscalls refused (EPERM) when they would give a file the set-user-ID or set-group-ID bit:
/// the chmod family and mknod for a mode with S_ISUID or S_ISGID, the open family when it
/// creates a file with such a mode. Empty where [`build`] refuses.
pub fn setid_syscalls() -> Vec<&'static str> {
    #[cfg(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_endian = "little")
    ))]
    return program::setid_syscalls();
    #[allow(unreachable_code)]
    Vec::new()
}

/// Installs `prog` on the calling thread. The caller must have set no_new_privs: this
/// function checks it and refuses otherwise, rather than relying on the kernel's EACCES (which
/// a caller holding CAP_SYS_ADMIN would not get). Fails closed: any error means the command
/// must not run.
pub fn install(prog: &BpfProgram) -> Result<(), SeccompError> {
    if !nix::sys::prctl::get_no_new_privs().map_err(SeccompError::GetNoNewPrivs)? {
        return Err(SeccompError::NoNewPrivs);
    }
    crate::sys::seccomp_set_mode_filter(prog)
        .inspect_err(|err| tracing::debug!(?err, len = prog.len(), "seccomp install failed"))
        .map_err(|errno| SeccompError::Install {
            len: prog.len(),
            errno,
        })
}

/// Behaviour under a real filter: one child process per case (style.md #8).
#[cfg(test)]
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
))]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const PROBE_ENV: &str = "SHELLCAGE_SECCOMP_PROBE";
    const PROBE_TEST: &str = "sandbox::seccomp::tests::probe_child_entry";

    /// Runs `mode` of `probe_child_entry` in a fresh copy of this test binary.
    fn run_probe(mode: &str) -> std::process::Output {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([PROBE_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(PROBE_ENV, mode)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    fn errno_name(result: Result<(), nix::errno::Errno>) -> String {
        match result {
            Ok(()) => "ok".to_string(),
            Err(errno) => format!("{errno:?}"),
        }
    }

    /// Not a test on its own: the entry point of the child processes started by the tests
    /// below. Does nothing unless SHELLCAGE_SECCOMP_PROBE is set.
    #[test]
    fn probe_child_entry() {
        let Ok(mode) = std::env::var(PROBE_ENV) else {
            return;
        };
        // libtest has printed "test … " without a newline; start the report on a fresh line.
        println!();
        let prog = build(&SeccompSpec { allow_inet: true }).unwrap();
        if mode == "no-nnp" {
            // Must refuse before calling seccomp(2): this process has CAP_SYS_ADMIN when the
            // tests run as root, so the kernel alone would have accepted the filter.
            let result = install(&prog);
            println!(
                "probe install {}",
                if matches!(result, Err(SeccompError::NoNewPrivs)) {
                    "refused"
                } else {
                    "accepted"
                }
            );
            std::process::exit(0);
        }
        nix::sys::prctl::set_no_new_privs().unwrap();
        install(&prog).unwrap();
        match mode.as_str() {
            "calls" => probe_calls(),
            #[cfg(target_arch = "x86_64")]
            "i386" => {
                let pid = crate::sys::seccomp_probes::i386_getpid();
                println!("probe i386 survived {pid}");
            }
            other => panic!("unknown probe mode {other}"),
        }
        std::process::exit(0);
    }

    fn probe_calls() {
        use crate::sys::seccomp_probes as p;
        use nix::sched::{CloneFlags, unshare};
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
        use std::os::fd::AsFd;

        let report = |name: &str, result: String| println!("probe {name} {result}");
        let sock = |family| {
            errno_name(socket(family, SockType::Stream, SockFlag::empty(), None).map(drop))
        };
        let devnull = std::fs::File::open("/dev/null").unwrap();

        report("ptrace", errno_name(p::ptrace_traceme()));
        report(
            "unshare-newuser",
            errno_name(unshare(CloneFlags::CLONE_NEWUSER)),
        );
        report("unshare-fs", errno_name(unshare(CloneFlags::CLONE_FS)));
        report("clone3", errno_name(p::clone3_null()));
        let tiocsti = program::TIOCSTI | 0x1_0000_0000;
        report(
            "ioctl-tiocsti-high",
            errno_name(p::ioctl_byte(devnull.as_fd(), tiocsti)),
        );
        report(
            "ioctl-tcgets",
            // TCGETS = 0x5401 on x86_64 and aarch64 (asm-generic/ioctls.h).
            errno_name(p::ioctl_byte(devnull.as_fd(), 0x5401)),
        );
        report("socket-vsock", sock(AddressFamily::Vsock));
        report("socket-unix", sock(AddressFamily::Unix));
        report(
            "personality-rie",
            errno_name(p::personality(0x040_0000).map(drop)),
        );
        report(
            "personality-query",
            errno_name(p::personality(0xffff_ffff).map(drop)),
        );
        let mount = nix::mount::mount(
            Some("none"),
            "/nonexistent-shellcage-probe",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
        report("mount", errno_name(mount));
        let pid = nix::unistd::getpid().as_raw();
        report("getpid", if pid > 0 { "ok" } else { "bad" }.to_string());
        let open = std::fs::File::open("/proc/self/status");
        report(
            "open",
            if open.is_ok() { "ok" } else { "failed" }.to_string(),
        );
        #[cfg(target_arch = "x86_64")]
        report("x32-getpid", errno_name(p::x32_getpid().map(drop)));
        probe_setid(&report);
    }

    /// Setuid and setgid modes on a file of a fresh temporary directory.
    fn probe_setid(report: &dyn Fn(&str, String)) {
        use nix::fcntl::{OFlag, open};
        use nix::sys::stat::{Mode, fchmod};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let creat = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
        let setuid = Mode::from_bits_truncate(0o4755);
        let create = |mode| open(&path, creat, mode).map(drop);
        report("open-creat-setuid", errno_name(create(setuid)));
        report(
            "open-creat-plain",
            errno_name(create(Mode::from_bits_truncate(0o755))),
        );
        let file = std::fs::File::open(&path).unwrap();
        report("fchmod-setuid", errno_name(fchmod(&file, setuid)));
        let setgid = Mode::from_bits_truncate(0o2755);
        report("fchmod-setgid", errno_name(fchmod(&file, setgid)));
        report(
            "fchmod-plain",
            errno_name(fchmod(&file, Mode::from_bits_truncate(0o700))),
        );
    }

    fn probe_results(output: &std::process::Output) -> BTreeMap<String, String> {
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout
            .lines()
            .filter_map(|line| line.strip_prefix("probe "))
            .filter_map(|rest| rest.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filter_enforced_in_child() {
        let output = run_probe("calls");
        assert!(output.status.success(), "probe child failed: {output:?}");
        let results = probe_results(&output);
        let mut expected = vec![
            ("ptrace", "EPERM"),
            ("unshare-newuser", "EPERM"),
            ("unshare-fs", "ok"),
            ("clone3", "ENOSYS"),
            ("ioctl-tiocsti-high", "EPERM"),
            // /dev/null is not a tty: the request reached the kernel.
            ("ioctl-tcgets", "ENOTTY"),
            ("socket-vsock", "EAFNOSUPPORT"),
            ("socket-unix", "ok"),
            ("personality-rie", "EPERM"),
            ("personality-query", "ok"),
            ("mount", "EPERM"),
            ("getpid", "ok"),
            ("open", "ok"),
            ("open-creat-setuid", "EPERM"),
            ("open-creat-plain", "ok"),
            ("fchmod-setuid", "EPERM"),
            ("fchmod-setgid", "EPERM"),
            ("fchmod-plain", "ok"),
        ];
        if cfg!(target_arch = "x86_64") {
            expected.push(("x32-getpid", "EPERM"));
        }
        for (name, want) in expected {
            assert_eq!(
                results.get(name).map(String::as_str),
                Some(want),
                "{name}: {output:?}"
            );
        }
    }

    #[test]
    fn install_refuses_without_no_new_privs() {
        let output = run_probe("no-nnp");
        assert!(output.status.success(), "probe child failed: {output:?}");
        assert_eq!(
            probe_results(&output).get("install").map(String::as_str),
            Some("refused")
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn i386_syscall_kills_the_process() {
        use std::os::unix::process::ExitStatusExt;
        let output = run_probe("i386");
        match output.status.signal() {
            Some(libc::SIGSYS) => {}
            // No ia32 emulation in this kernel: `int 0x80` faults before seccomp runs.
            Some(libc::SIGSEGV) if std::env::var_os("SHELLCAGE_TEST_REQUIRE_KERNEL").is_none() => {
                eprintln!("skipped: kernel without ia32 emulation");
            }
            _ => panic!("expected SIGSYS, got {output:?}"),
        }
    }
}

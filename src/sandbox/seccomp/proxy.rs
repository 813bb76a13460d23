//! The proxy process's filter: an allowlist (everything else fails with EPERM), unlike the
//! command's deny list. The proxy is the one way out of a `proxy` sandbox and it parses
//! what the sandbox sends, so it keeps only the system calls of its own code (threads,
//! sockets, splice) and of the C library's name lookup (getaddrinfo: reading /etc/hosts
//! and resolv.conf, loading NSS modules, UDP and TCP to the host's resolver).
//!
//! Not allowed, among others: execve and execveat (nothing else can run), process
//! creation (clone only with CLONE_THREAD; clone3 is ENOSYS, see [`build`]), ptrace, mount,
//! namespaces, bind/listen (its listeners come ready-made), kill beyond its own threads,
//! ioctl other than FIONBIO/FIONREAD, prctl other than naming threads.
//!
//! Two programs, because one seccompiler filter has one action for a match and one for a
//! mismatch: `clone3 → ENOSYS` so that glibc falls back to clone(2), whose flags the
//! allowlist can check, then the allowlist (mismatch → EPERM; it refuses seccomp(2), so it
//! comes last). The kernel applies the strictest answer of the two.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as ArgLen, SeccompCmpOp as Op,
    SeccompCondition as Cond, SeccompFilter, SeccompRule,
};

use super::SeccompError;
use super::program::TARGET_ARCH;

/// Allowed whatever the arguments. (Files are Landlock's job: the proxy's ruleset lets it
/// read the resolver's files only.)
const ALWAYS: &[(&str, libc::c_long)] = &[
    // memory
    ("brk", libc::SYS_brk),
    ("mmap", libc::SYS_mmap),
    ("munmap", libc::SYS_munmap),
    ("mprotect", libc::SYS_mprotect),
    ("mremap", libc::SYS_mremap),
    ("madvise", libc::SYS_madvise),
    // threads, time, signals of its own
    ("futex", libc::SYS_futex),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("rseq", libc::SYS_rseq),
    ("set_tid_address", libc::SYS_set_tid_address),
    ("gettid", libc::SYS_gettid),
    ("getpid", libc::SYS_getpid),
    ("sched_yield", libc::SYS_sched_yield),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("restart_syscall", libc::SYS_restart_syscall),
    ("nanosleep", libc::SYS_nanosleep),
    ("clock_nanosleep", libc::SYS_clock_nanosleep),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("getrandom", libc::SYS_getrandom),
    ("prlimit64", libc::SYS_prlimit64),
    ("getuid", libc::SYS_getuid),
    ("geteuid", libc::SYS_geteuid),
    ("getgid", libc::SYS_getgid),
    ("getegid", libc::SYS_getegid),
    ("uname", libc::SYS_uname),
    // descriptors and files (Landlock decides which files)
    ("read", libc::SYS_read),
    ("pread64", libc::SYS_pread64),
    ("readv", libc::SYS_readv),
    ("write", libc::SYS_write),
    ("writev", libc::SYS_writev),
    ("close", libc::SYS_close),
    ("openat", libc::SYS_openat),
    ("newfstatat", libc::SYS_newfstatat),
    ("fstat", libc::SYS_fstat),
    ("statx", libc::SYS_statx),
    ("lseek", libc::SYS_lseek),
    ("fcntl", libc::SYS_fcntl),
    ("faccessat", libc::SYS_faccessat),
    ("faccessat2", libc::SYS_faccessat2),
    ("pipe2", libc::SYS_pipe2),
    ("splice", libc::SYS_splice),
    ("ppoll", libc::SYS_ppoll),
    ("pselect6", libc::SYS_pselect6),
    // sockets (their families are checked below)
    ("connect", libc::SYS_connect),
    ("accept4", libc::SYS_accept4),
    ("accept", libc::SYS_accept),
    ("setsockopt", libc::SYS_setsockopt),
    ("getsockopt", libc::SYS_getsockopt),
    ("getsockname", libc::SYS_getsockname),
    ("getpeername", libc::SYS_getpeername),
    ("shutdown", libc::SYS_shutdown),
    ("sendto", libc::SYS_sendto),
    ("recvfrom", libc::SYS_recvfrom),
    ("sendmsg", libc::SYS_sendmsg),
    ("recvmsg", libc::SYS_recvmsg),
    ("sendmmsg", libc::SYS_sendmmsg),
    ("recvmmsg", libc::SYS_recvmmsg),
    // glibc's resolver binds its UDP socket to a random port on some versions.
    ("bind", libc::SYS_bind),
];

/// The older x86_64 names glibc still uses there.
#[cfg(target_arch = "x86_64")]
const ALWAYS_X86_64: &[(&str, libc::c_long)] = &[
    ("open", libc::SYS_open),
    ("stat", libc::SYS_stat),
    ("lstat", libc::SYS_lstat),
    ("access", libc::SYS_access),
    ("poll", libc::SYS_poll),
    ("select", libc::SYS_select),
    ("getrlimit", libc::SYS_getrlimit),
    ("arch_prctl", libc::SYS_arch_prctl),
];
#[cfg(not(target_arch = "x86_64"))]
const ALWAYS_X86_64: &[(&str, libc::c_long)] = &[];

const FIONREAD: u64 = 0x541B;
const FIONBIO: u64 = 0x5421;
const PR_SET_NAME: u64 = 15;
const PR_GET_NAME: u64 = 16;
/// Read by `seccomp::install` before the second program.
const PR_GET_NO_NEW_PRIVS: u64 = 39;
/// glibc ≥ 2.38 names thread stacks with `PR_SET_VMA_ANON_NAME`.
const PR_SET_VMA: u64 = 0x5356_4d41;

fn eq(arg: u8, value: u64) -> Result<SeccompRule, SeccompError> {
    // Dword: the kernel reads these arguments as ints (truncates), so high bits the caller
    // sets must not change the comparison.
    Ok(SeccompRule::new(vec![Cond::new(
        arg,
        ArgLen::Dword,
        Op::Eq,
        value,
    )?])?)
}

/// The allowlist's rules: (syscall, rules); an empty list allows every call.
fn allowlist() -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALWAYS
        .iter()
        .chain(ALWAYS_X86_64)
        .map(|&(_, nr)| (nr, Vec::new()))
        .collect();
    let families = [
        libc::AF_INET,
        libc::AF_INET6,
        // nscd, systemd-resolved's varlink socket (NSS modules)
        libc::AF_UNIX,
        // getaddrinfo's AI_ADDRCONFIG check (RTM_GETADDR)
        libc::AF_NETLINK,
    ];
    rules.insert(
        libc::SYS_socket,
        families
            .iter()
            .map(|&f| eq(0, f as u64))
            .collect::<Result<_, _>>()?,
    );
    rules.insert(libc::SYS_ioctl, vec![eq(1, FIONREAD)?, eq(1, FIONBIO)?]);
    rules.insert(
        libc::SYS_prctl,
        vec![
            eq(0, PR_SET_NAME)?,
            eq(0, PR_GET_NAME)?,
            eq(0, PR_SET_VMA)?,
            eq(0, PR_GET_NO_NEW_PRIVS)?,
        ],
    );
    // Threads only: clone must carry CLONE_THREAD (a thread of this process, never a new
    // one: nothing the proxy starts can outlive it).
    let thread = libc::CLONE_THREAD as u64;
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![Cond::new(
            0,
            ArgLen::Dword,
            Op::MaskedEq(thread),
            thread,
        )?])?],
    );
    // Left to the second program (ENOSYS); allowed here.
    rules.insert(libc::SYS_clone3, Vec::new());
    // Signals to its own threads only (a panic's abort): tgkill(its pid, …).
    rules.insert(libc::SYS_tgkill, vec![eq(0, std::process::id() as u64)?]);
    Ok(rules)
}

/// The proxy's two programs, to install in this order (after no_new_privs): `clone3 →
/// ENOSYS` first, because the allowlist refuses seccomp(2) itself. Built in the proxy
/// process, since the tgkill rule names its pid.
pub fn build() -> Result<[BpfProgram; 2], SeccompError> {
    let allow: BpfProgram = SeccompFilter::new(
        allowlist()?,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        TARGET_ARCH,
    )?
    .try_into()?;
    let clone3: BpfProgram = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        TARGET_ARCH,
    )?
    .try_into()?;
    Ok([clone3, allow])
}

/// The names of the syscalls allowed unconditionally.
#[cfg(test)]
pub fn allowed_names() -> Vec<&'static str> {
    ALWAYS
        .iter()
        .chain(ALWAYS_X86_64)
        .map(|(name, _)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_builds_and_leaves_out_exec_and_processes() {
        let [clone3, allow] = build().unwrap();
        assert!(!allow.is_empty() && !clone3.is_empty());
        let names = allowed_names();
        for forbidden in [
            "execve",
            "execveat",
            "fork",
            "vfork",
            "ptrace",
            "mount",
            "unshare",
            "setns",
            "kill",
            "listen",
            "socketpair",
            "chmod",
            "unlink",
            "memfd_create",
        ] {
            assert!(
                !names.contains(&forbidden),
                "{forbidden} must not be allowed"
            );
        }
        let rules = allowlist().unwrap();
        for nr in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_kill,
        ] {
            assert!(!rules.contains_key(&nr));
        }
    }
}

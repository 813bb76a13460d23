//! The BPF program of the filter (see the parent module for its layout), for the
//! architectures shellcage supports.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as ArgLen, SeccompCmpOp as Op,
    SeccompCondition as Cond, SeccompFilter, SeccompRule, TargetArch, sock_filter,
};

use super::{SeccompError, SeccompSpec};

// Return values of a seccomp filter, from <linux/seccomp.h>.
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

// Classic BPF opcodes, from <linux/bpf_common.h>.
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const BPF_JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

// AUDIT_ARCH_* from <linux/audit.h>: EM_* | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_NATIVE: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
const AUDIT_ARCH_NATIVE: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// x32 syscalls are x86_64 syscalls (same AUDIT_ARCH) whose number has this bit set.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// ioctl requests from <asm-generic/ioctls.h>, the same on x86_64 and aarch64. Our own
// constants because libc types them differently per C library (c_ulong or c_int).
pub(super) const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541c;

const EPERM: u32 = libc::EPERM as u32;
const EAFNOSUPPORT: u32 = libc::EAFNOSUPPORT as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;

/// Every CLONE_NEW* flag. Creating any namespace is refused: the sandbox already sits in its
/// own namespaces, and a fresh user namespace would hand the command a full capability set
/// over new namespaces, which is the kernel attack surface this filter exists to shrink.
const CLONE_NEW_FLAGS: [u64; 8] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    0x80, // CLONE_NEWTIME (Linux 5.6; not in every libc)
];

/// Syscalls refused with EPERM whatever their arguments, each with the reason.
const DENIED: &[(&str, libc::c_long)] = &[
    // Reading or writing another process's memory and registers; also a classic escape path.
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    // Copies a file descriptor out of another process (ptrace-attach power without ptrace).
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    // Loading a new kernel or kernel modules.
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    // eBPF: large, frequently exploited kernel surface; no build tool needs it.
    ("bpf", libc::SYS_bpf),
    // Performance counters: side channels and a long history of kernel bugs.
    ("perf_event_open", libc::SYS_perf_event_open),
    // Lets an exploit stall the kernel mid-copy to win races (classic exploitation primitive).
    ("userfaultfd", libc::SYS_userfaultfd),
    // The kernel keyring is not namespaced: it could reach the user's host keys.
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    // io_uring performs syscalls-by-proxy that this filter never sees, and has a long CVE list.
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    // Changing the filesystem view the sandbox built (old and new mount APIs).
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    // Joining another namespace (e.g. through a leaked /proc/<pid>/ns fd).
    ("setns", libc::SYS_setns),
    // Opens any inode on a filesystem by handle, bypassing the mount view (the "shocker"
    // container escape). name_to_handle_at only reads a handle and stays allowed.
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    // Host-wide administration: accounting, swap, reboot, clock, kernel log, disk quotas.
    ("acct", libc::SYS_acct),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("syslog", libc::SYS_syslog),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    // Raw I/O port access (x86 only).
    #[cfg(target_arch = "x86_64")]
    ("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    ("ioperm", libc::SYS_ioperm),
    // Obsolete profiling interface (removed in Linux 6.10); no user needs it.
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    // Hangs up the current terminal: another process's session could be disrupted.
    ("vhangup", libc::SYS_vhangup),
    // Removed kernel interfaces: deny so a kernel that still has them is not reachable.
    ("nfsservctl", libc::SYS_nfsservctl),
    #[cfg(target_arch = "x86_64")]
    ("uselib", libc::SYS_uselib),
    #[cfg(target_arch = "x86_64")]
    ("_sysctl", libc::SYS__sysctl),
    // fanotify: since Linux 5.13 partly unprivileged, and a surface no build or test tool
    // needs (file watchers use inotify). EPERM is what unprivileged callers got before 5.13,
    // so programs already handle it.
    ("fanotify_init", libc::SYS_fanotify_init),
];

/// Names of the syscalls the filter refuses whatever their arguments (EPERM, or ENOSYS for
/// clone3), for the run report and `shellcage doctor`.
pub(super) fn denied_syscalls() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = DENIED.iter().map(|(name, _)| *name).collect();
    names.push("clone3");
    names
}

#[cfg(target_arch = "x86_64")]
const TARGET_ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const TARGET_ARCH: TargetArch = TargetArch::aarch64;

fn cond(arg: u8, op: Op, value: u64) -> Result<Cond, SeccompError> {
    // Dword: compare the low 32 bits only. Every argument filtered here is an `int` or is
    // truncated to 32 bits by the kernel (ioctl's cmd, clone's flags), so high bits set by the
    // caller must not make a request slip past the comparison.
    Ok(Cond::new(arg, ArgLen::Dword, op, value)?)
}

fn rule(conditions: Vec<Cond>) -> Result<SeccompRule, SeccompError> {
    Ok(SeccompRule::new(conditions)?)
}

/// One rule per flag: matches when `flags & flag != 0`. (Rules are OR-ed.)
fn any_flag_rules(arg: u8, flags: &[u64]) -> Result<Vec<SeccompRule>, SeccompError> {
    flags
        .iter()
        .map(|&flag| rule(vec![cond(arg, Op::MaskedEq(flag), flag)?]))
        .collect()
}

/// Syscalls answered with EPERM.
fn eperm_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&(_, nr)| (nr, Vec::new())).collect();

    // New namespaces (see CLONE_NEW_FLAGS); unshare(CLONE_FS), unshare(CLONE_FILES) … stay.
    rules.insert(libc::SYS_unshare, any_flag_rules(0, &CLONE_NEW_FLAGS)?);
    // clone's flags are arg 0 on x86_64 and aarch64. CLONE_NEWTIME is left out: in clone its
    // bit lies in the exit-signal byte (CSIGNAL), so clone cannot request a time namespace.
    rules.insert(libc::SYS_clone, any_flag_rules(0, &CLONE_NEW_FLAGS[..7])?);
    // Only PER_LINUX (0) and the query 0xffffffff: other personas change kernel behaviour
    // (READ_IMPLIES_EXEC makes reads executable, ADDR_NO_RANDOMIZE disables ASLR).
    rules.insert(
        libc::SYS_personality,
        vec![rule(vec![
            cond(0, Op::Ne, 0)?,
            cond(0, Op::Ne, 0xffff_ffff)?,
        ])?],
    );
    // Pushing characters into a terminal's input queue (TIOCSTI) or driving the Linux console
    // (TIOCLINUX): both let a command type into whoever reads the terminal next.
    rules.insert(
        libc::SYS_ioctl,
        vec![
            rule(vec![cond(1, Op::Eq, TIOCSTI)?])?,
            rule(vec![cond(1, Op::Eq, TIOCLINUX)?])?,
        ],
    );
    Ok(rules)
}

/// Syscalls answered with EAFNOSUPPORT: socket families outside the allowlist (AF_VSOCK
/// reaches the hypervisor host, AF_PACKET raw frames, AF_BLUETOOTH, AF_ALG … kernel surface).
fn eafnosupport_rules(spec: &SeccompSpec) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let mut allowed = vec![libc::AF_UNIX, libc::AF_NETLINK];
    if spec.allow_inet {
        allowed.extend([libc::AF_INET, libc::AF_INET6]);
    }
    let family_rule = || -> Result<Vec<SeccompRule>, SeccompError> {
        // All conditions of one rule must hold: "family is none of the allowed ones".
        let conditions = allowed
            .iter()
            .map(|&family| cond(0, Op::Ne, family as u64))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(vec![rule(conditions)?])
    };
    Ok(BTreeMap::from([
        (libc::SYS_socket, family_rule()?),
        (libc::SYS_socketpair, family_rule()?),
    ]))
}

/// Syscalls answered with ENOSYS.
fn enosys_rules() -> BTreeMap<i64, Vec<SeccompRule>> {
    // clone3 passes its flags in a struct that BPF cannot read, so its CLONE_NEW* flags could
    // not be checked; ENOSYS makes glibc and musl fall back to clone, which is checked.
    BTreeMap::from([(libc::SYS_clone3, Vec::new())])
}

const fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The hand-written start of the program: architecture check, then (x86_64) the x32 check.
/// Self-contained: it only returns or falls through to the instruction after it.
fn prologue() -> Vec<sock_filter> {
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        // Native ABI: skip the kill. Anything else (i386 `int 0x80`, arm32 compat) is killed:
        // syscall numbers mean different things there, so no rule below would apply.
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_NATIVE, 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
    ];
    #[cfg(target_arch = "x86_64")]
    prog.extend([
        stmt(BPF_LD_W_ABS, DATA_NR),
        // x32 shares AUDIT_ARCH_X86_64 and marks its calls with bit 30 of the number, so the
        // numbers below would not match them. Refuse every number >= the x32 bit.
        jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, RET_ERRNO | EPERM),
    ]);
    prog
}

/// A balanced binary search over the syscall numbers that have rules (`keys`,
/// sorted). A number without rules returns ALLOW after about log2(keys)
/// comparisons; one with rules falls through to the segments that follow.
///
/// Why: the kernel emulates the filter for every syscall number when it is
/// installed, to cache the ones that are always allowed, so the install costs
/// in proportion to how far an allowed number walks. seccompiler's segments are
/// linear chains (~400 instructions: ~390 us to install here); with this
/// dispatch in front, the ~90% of numbers without rules stop within ~10.
fn dispatch(keys: &[u32]) -> Result<Vec<sock_filter>, SeccompError> {
    enum Node {
        Insn(sock_filter),
        /// `jeq k`: to the first instruction after the dispatch, else next.
        ToRules(u32),
    }
    fn emit(keys: &[u32], out: &mut Vec<Node>) -> Result<(), SeccompError> {
        if keys.len() <= 4 {
            out.extend(keys.iter().map(|&k| Node::ToRules(k)));
            out.push(Node::Insn(stmt(BPF_RET_K, RET_ALLOW)));
            return Ok(());
        }
        let mid = keys.len() / 2;
        let split = out.len();
        out.push(Node::Insn(stmt(BPF_RET_K, 0))); // patched below
        emit(&keys[..mid], out)?;
        let right = u8::try_from(out.len() - split - 1)
            .map_err(|_| SeccompError::UnexpectedProgram("dispatch jump too long"))?;
        // nr >= keys[mid]: to the right half, else fall into the left half.
        out[split] = Node::Insn(jump(BPF_JMP_JGE_K, keys[mid], right, 0));
        emit(&keys[mid..], out)
    }
    let mut nodes = vec![Node::Insn(stmt(BPF_LD_W_ABS, DATA_NR))];
    emit(keys, &mut nodes)?;
    let len = nodes.len();
    nodes
        .into_iter()
        .enumerate()
        .map(|(pc, node)| match node {
            Node::Insn(insn) => Ok(insn),
            Node::ToRules(k) => u8::try_from(len - pc - 1)
                .map(|to_end| jump(BPF_JMP_JEQ_K, k, to_end, 0))
                .map_err(|_| SeccompError::UnexpectedProgram("dispatch jump too long")),
        })
        .collect()
}

/// Compiles one segment with seccompiler and removes its architecture check (the prologue
/// has done it), after checking that it looks as expected.
fn segment(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: u32,
    arch: TargetArch,
) -> Result<Vec<sock_filter>, SeccompError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno),
        arch,
    )?;
    let mut prog: BpfProgram = filter.try_into()?;
    let expected_head = [
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_NATIVE, 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, DATA_NR),
    ];
    if !prog.starts_with(&expected_head) {
        return Err(SeccompError::UnexpectedProgram(
            "compiled segment does not start with the architecture check and a load of the syscall number",
        ));
    }
    prog.drain(..3);
    if prog.last() != Some(&stmt(BPF_RET_K, RET_ALLOW)) {
        return Err(SeccompError::UnexpectedProgram(
            "compiled segment does not end with RET ALLOW",
        ));
    }
    Ok(prog)
}

/// Builds the filter for `spec`. Pure: no syscalls, same output for the same input.
pub(super) fn build(spec: &SeccompSpec) -> Result<BpfProgram, SeccompError> {
    let arch = TARGET_ARCH;
    let (eperm, eafnosupport, enosys) = (eperm_rules()?, eafnosupport_rules(spec)?, enosys_rules());
    let mut keys: Vec<u32> = eperm
        .keys()
        .chain(eafnosupport.keys())
        .chain(enosys.keys())
        .map(|&nr| {
            u32::try_from(nr)
                .map_err(|_| SeccompError::UnexpectedProgram("negative syscall number"))
        })
        .collect::<Result<_, _>>()?;
    keys.sort_unstable();
    keys.dedup();
    let segments = [
        segment(eperm, EPERM, arch)?,
        segment(eafnosupport, EAFNOSUPPORT, arch)?,
        segment(enosys, ENOSYS, arch)?,
    ];
    let last = segments.len() - 1;
    let mut prog = prologue();
    prog.extend(dispatch(&keys)?);
    for (index, mut seg) in segments.into_iter().enumerate() {
        if index != last {
            let len = seg.len();
            for (pc, insn) in seg.iter_mut().enumerate() {
                // With Errno as the match action, RET ALLOW is only ever "no rule matched".
                if *insn == stmt(BPF_RET_K, RET_ALLOW) {
                    // Offset from the next instruction to the first one after this segment.
                    let skip = u32::try_from(len - pc - 1)
                        .map_err(|_| SeccompError::UnexpectedProgram("segment too long"))?;
                    *insn = stmt(BPF_JMP_JA, skip);
                }
            }
        }
        prog.extend(seg);
    }
    // The kernel's limit (BPF_MAXINSNS).
    if prog.len() > 4096 {
        return Err(SeccompError::UnexpectedProgram(
            "filter longer than 4096 instructions",
        ));
    }
    Ok(prog)
}

#[cfg(test)]
// libc's ioctl constants are c_ulong on glibc and c_int elsewhere: keep the casts.
#[allow(clippy::unnecessary_cast)]
mod tests {
    use super::*;

    const BPF_ALU_AND_K: u16 = 0x04 | 0x50;

    /// Fake `struct seccomp_data` for the interpreter below.
    struct Call {
        arch: u32,
        nr: u32,
        args: [u64; 6],
    }

    fn call(nr: libc::c_long, args: &[u64]) -> Call {
        let mut all = [0u64; 6];
        all[..args.len()].copy_from_slice(args);
        Call {
            arch: AUDIT_ARCH_NATIVE,
            nr: nr as u32,
            args: all,
        }
    }

    /// A classic-BPF interpreter for the instructions our filter uses, run the way the kernel
    /// runs a seccomp filter (forward jumps only, must end in RET). Panics on anything else,
    /// so a program it accepts is also well-formed.
    fn run(prog: &[sock_filter], call: &Call) -> u32 {
        let load = |offset: u32| -> u32 {
            match offset {
                0 => call.nr,
                4 => call.arch,
                16..=63 if offset % 4 == 0 => {
                    let arg = call.args[((offset - 16) / 8) as usize];
                    // Little-endian: the low half sits at the lower offset.
                    if offset % 8 == 0 {
                        arg as u32
                    } else {
                        (arg >> 32) as u32
                    }
                }
                _ => panic!("load from unexpected seccomp_data offset {offset}"),
            }
        };
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        loop {
            let insn = &prog[pc];
            pc += 1;
            match insn.code {
                BPF_LD_W_ABS => acc = load(insn.k),
                BPF_ALU_AND_K => acc &= insn.k,
                BPF_JMP_JA => pc += insn.k as usize,
                BPF_JMP_JEQ_K | BPF_JMP_JGE_K | 0x25 => {
                    let taken = match insn.code {
                        BPF_JMP_JEQ_K => acc == insn.k,
                        BPF_JMP_JGE_K => acc >= insn.k,
                        _ => acc > insn.k,
                    };
                    pc += usize::from(if taken { insn.jt } else { insn.jf });
                }
                BPF_RET_K => return insn.k,
                code => panic!("unexpected BPF opcode {code:#x} at {}", pc - 1),
            }
            assert!(pc < prog.len(), "jump past the end of the program");
        }
    }

    fn inet() -> BpfProgram {
        build(&SeccompSpec { allow_inet: true }).unwrap()
    }

    const ALLOW: u32 = RET_ALLOW;
    const DENY_EPERM: u32 = RET_ERRNO | EPERM;

    #[test]
    fn build_succeeds_and_fits() {
        for allow_inet in [true, false] {
            let prog = build(&SeccompSpec { allow_inet }).unwrap();
            assert!(!prog.is_empty() && prog.len() <= 4096);
            assert_eq!(prog.last(), Some(&stmt(BPF_RET_K, RET_ALLOW)));
        }
    }

    #[test]
    fn ioctl_constants_match_libc() {
        assert_eq!(TIOCSTI, libc::TIOCSTI as u64);
        assert_eq!(TIOCLINUX, libc::TIOCLINUX as u64);
    }

    #[test]
    fn build_is_deterministic() {
        assert_eq!(inet(), inet());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn prologue_checks_arch_then_x32() {
        let expected = [
            sock_filter {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 4,
            },
            sock_filter {
                code: 0x15,
                jt: 1,
                jf: 0,
                k: 0xc000_003e,
            },
            sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0x8000_0000,
            },
            sock_filter {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 0,
            },
            sock_filter {
                code: 0x35,
                jt: 0,
                jf: 1,
                k: 0x4000_0000,
            },
            sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0x0005_0001,
            },
        ];
        assert_eq!(prologue(), expected);
        assert!(inet().starts_with(&expected));
    }

    #[cfg(target_arch = "aarch64")]
    #[test]
    fn prologue_checks_arch() {
        let expected = [
            sock_filter {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 4,
            },
            sock_filter {
                code: 0x15,
                jt: 1,
                jf: 0,
                k: 0xc000_00b7,
            },
            sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0x8000_0000,
            },
        ];
        assert_eq!(prologue(), expected);
        assert!(inet().starts_with(&expected));
    }

    #[test]
    fn only_the_last_segment_allows() {
        let prog = inet();
        let allows = prog
            .iter()
            .filter(|i| **i == stmt(BPF_RET_K, RET_ALLOW))
            .count();
        // Every RET ALLOW left in the program belongs to the last (ENOSYS) segment: those of
        // the earlier segments have all become jumps to the next segment.
        let enosys = segment(enosys_rules(), ENOSYS, TARGET_ARCH).unwrap();
        let last_allows = enosys
            .iter()
            .filter(|i| **i == stmt(BPF_RET_K, RET_ALLOW))
            .count();
        let dispatch_allows = dispatch(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
            .unwrap()
            .iter()
            .filter(|i| **i == stmt(BPF_RET_K, RET_ALLOW))
            .count();
        assert!(dispatch_allows > 0);
        let in_dispatch = prog_dispatch_allows(&prog);
        assert_eq!(allows, last_allows + in_dispatch);
    }

    /// RET ALLOW instructions of the dispatch (between the prologue and the first segment).
    fn prog_dispatch_allows(prog: &[sock_filter]) -> usize {
        let start = prologue().len();
        let keys = dispatch_keys();
        let len = dispatch(&keys).unwrap().len();
        prog[start..start + len]
            .iter()
            .filter(|i| **i == stmt(BPF_RET_K, RET_ALLOW))
            .count()
    }

    fn dispatch_keys() -> Vec<u32> {
        let spec = SeccompSpec { allow_inet: true };
        let mut keys: Vec<u32> = eperm_rules()
            .unwrap()
            .keys()
            .chain(eafnosupport_rules(&spec).unwrap().keys())
            .chain(enosys_rules().keys())
            .map(|&nr| nr as u32)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Instructions executed for `call`: what the kernel's install-time
    /// emulation walks for each syscall number.
    fn steps(prog: &[sock_filter], call: &Call) -> usize {
        let mut pc = 0usize;
        let mut n = 0;
        let mut acc: u32 = 0;
        loop {
            let insn = &prog[pc];
            n += 1;
            pc += 1;
            match insn.code {
                BPF_LD_W_ABS => {
                    acc = if insn.k == 0 {
                        call.nr
                    } else if insn.k == 4 {
                        call.arch
                    } else {
                        0
                    }
                }
                BPF_JMP_JA => pc += insn.k as usize,
                BPF_JMP_JEQ_K => pc += usize::from(if acc == insn.k { insn.jt } else { insn.jf }),
                BPF_JMP_JGE_K => pc += usize::from(if acc >= insn.k { insn.jt } else { insn.jf }),
                BPF_RET_K => return n,
                _ => return n, // argument checks: only reached for numbers with rules
            }
        }
    }

    #[test]
    fn syscalls_without_rules_are_allowed_within_a_few_instructions() {
        let prog = inet();
        let keys = dispatch_keys();
        let mut worst = 0;
        for nr in 0..600u32 {
            if keys.contains(&nr) {
                continue;
            }
            let c = call(nr as libc::c_long, &[]);
            assert_eq!(run(&prog, &c), ALLOW, "nr {nr}");
            worst = worst.max(steps(&prog, &c));
        }
        assert!(worst <= 20, "an allowed syscall walks {worst} instructions");
    }

    #[test]
    fn dispatch_sends_exactly_the_rule_numbers_onward() {
        let keys = dispatch_keys();
        let d = dispatch(&keys).unwrap();
        let mut with_end = d.clone();
        with_end.push(stmt(BPF_RET_K, 0xdead));
        for nr in 0..600u32 {
            let got = run(&with_end, &call(nr as libc::c_long, &[]));
            let want = if keys.contains(&nr) { 0xdead } else { ALLOW };
            assert_eq!(got, want, "nr {nr}");
        }
    }

    #[test]
    fn other_abi_is_killed() {
        let prog = inet();
        let mut c = call(libc::SYS_getpid, &[]);
        c.arch = 0x4000_0003; // AUDIT_ARCH_I386
        assert_eq!(run(&prog, &c), RET_KILL_PROCESS);
        c.arch = 0x4000_0028; // AUDIT_ARCH_ARM
        assert_eq!(run(&prog, &c), RET_KILL_PROCESS);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_is_refused() {
        let prog = inet();
        let getpid = call(0x4000_0000 | libc::SYS_getpid, &[]);
        assert_eq!(run(&prog, &getpid), DENY_EPERM);
        // x32's own numbers for ptrace etc. (512+) too.
        assert_eq!(run(&prog, &call(0x4000_0000 | 521, &[])), DENY_EPERM);
        assert_eq!(run(&prog, &call(-1, &[])), DENY_EPERM);
    }

    #[test]
    fn every_denied_syscall_is_eperm_and_ordinary_ones_pass() {
        let prog = inet();
        for &(name, nr) in DENIED {
            assert_eq!(run(&prog, &call(nr, &[])), DENY_EPERM, "{name}");
        }
        for nr in [
            libc::SYS_getpid,
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_name_to_handle_at,
            libc::SYS_seccomp,
        ] {
            assert_eq!(run(&prog, &call(nr, &[1, 2, 3])), ALLOW, "syscall {nr}");
        }
        assert_eq!(run(&prog, &call(libc::SYS_clone3, &[])), RET_ERRNO | ENOSYS);
    }

    #[test]
    fn namespaces_cannot_be_created() {
        let prog = inet();
        for flag in CLONE_NEW_FLAGS {
            let unshare = call(libc::SYS_unshare, &[flag | libc::CLONE_FS as u64]);
            assert_eq!(run(&prog, &unshare), DENY_EPERM, "unshare {flag:#x}");
        }
        for flag in &CLONE_NEW_FLAGS[..7] {
            let sigchld = libc::SIGCHLD as u64;
            assert_eq!(
                run(&prog, &call(libc::SYS_clone, &[flag | sigchld])),
                DENY_EPERM
            );
        }
        let fs = libc::CLONE_FS as u64;
        assert_eq!(run(&prog, &call(libc::SYS_unshare, &[fs])), ALLOW);
        // What fork() and pthread_create() pass.
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        assert_eq!(run(&prog, &call(libc::SYS_clone, &[thread])), ALLOW);
        let fork = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64;
        assert_eq!(run(&prog, &call(libc::SYS_clone, &[fork])), ALLOW);
    }

    #[test]
    fn personality_only_linux_or_query() {
        let prog = inet();
        assert_eq!(run(&prog, &call(libc::SYS_personality, &[0])), ALLOW);
        assert_eq!(
            run(&prog, &call(libc::SYS_personality, &[0xffff_ffff])),
            ALLOW
        );
        for persona in [0x040_0000, 0x004_0000, 0x0008, 1 << 32 | 0x40_0000] {
            assert_eq!(
                run(&prog, &call(libc::SYS_personality, &[persona])),
                DENY_EPERM
            );
        }
    }

    #[test]
    fn terminal_injection_ioctls_refused_whatever_the_high_bits() {
        let prog = inet();
        for request in [TIOCSTI, TIOCLINUX] {
            for high in [0u64, 1 << 32, 0xffff_ffff << 32] {
                let c = call(libc::SYS_ioctl, &[0, request | high, 0]);
                assert_eq!(run(&prog, &c), DENY_EPERM, "{:#x}", request | high);
            }
        }
        let tcgets = call(libc::SYS_ioctl, &[0, libc::TCGETS as u64, 0]);
        assert_eq!(run(&prog, &tcgets), ALLOW);
    }

    #[test]
    fn socket_families() {
        let eafnosupport = RET_ERRNO | EAFNOSUPPORT;
        for allow_inet in [true, false] {
            let prog = build(&SeccompSpec { allow_inet }).unwrap();
            for nr in [libc::SYS_socket, libc::SYS_socketpair] {
                let family = |f: libc::c_int| run(&prog, &call(nr, &[f as u64, 1, 0]));
                assert_eq!(family(libc::AF_UNIX), ALLOW);
                assert_eq!(family(libc::AF_NETLINK), ALLOW);
                for f in [
                    libc::AF_VSOCK,
                    libc::AF_PACKET,
                    libc::AF_BLUETOOTH,
                    libc::AF_ALG,
                ] {
                    assert_eq!(family(f), eafnosupport, "family {f}");
                }
                let inet = if allow_inet { ALLOW } else { eafnosupport };
                assert_eq!(family(libc::AF_INET), inet);
                assert_eq!(family(libc::AF_INET6), inet);
                // The kernel reads an int: high bits do not make AF_VSOCK allowed.
                let high = (1u64 << 32) | libc::AF_VSOCK as u64;
                assert_eq!(run(&prog, &call(nr, &[high, 1, 0])), eafnosupport);
            }
        }
    }

    /// A segment's "no match" jump must land on the next segment's reload of the syscall
    /// number: if it skipped it, an argument loaded by the previous segment would be compared
    /// against syscall numbers. Provoke that with arguments equal to later segments' numbers.
    #[test]
    fn loaded_arguments_do_not_leak_into_the_next_segment() {
        let prog = inet();
        for later in [libc::SYS_socket, libc::SYS_socketpair, libc::SYS_clone3] {
            let v = later as u64;
            assert_eq!(
                run(&prog, &call(libc::SYS_ioctl, &[v, v, v])),
                ALLOW,
                "{later}"
            );
            let socket = call(libc::SYS_socket, &[libc::AF_UNIX as u64, v, v]);
            assert_eq!(run(&prog, &socket), ALLOW, "{later}");
        }
    }

    #[test]
    fn segments_cover_disjoint_syscalls() {
        let eperm = eperm_rules().unwrap();
        let afn = eafnosupport_rules(&SeccompSpec { allow_inet: true }).unwrap();
        let enosys = enosys_rules();
        for nr in afn.keys().chain(enosys.keys()) {
            assert!(!eperm.contains_key(nr), "syscall {nr} in two segments");
        }
        assert_eq!(denied_syscalls().len(), DENIED.len() + 1);
    }
}

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

/// The set-user-ID and set-group-ID mode bits (<sys/stat.h>). No file the command creates or
/// changes may carry them on the host: the workspace is `nosuid` inside the sandbox, but not
/// on the host, where a setuid-root binary left by a command run as root would be a local
/// root shell for any user.
const SETID_BITS: [u64; 2] = [libc::S_ISUID as u64, libc::S_ISGID as u64];

/// The open flags that make the kernel use the mode argument: O_CREAT, and the bit of
/// O_TMPFILE that is not O_DIRECTORY (the kernel tests that bit alone).
const CREATE_FLAGS: [u64; 2] = [
    libc::O_CREAT as u64,
    (libc::O_TMPFILE & !libc::O_DIRECTORY) as u64,
];

/// fchmodat2 (Linux 6.6): the same number on x86_64 and aarch64 (syscall numbers from 424 on
/// are shared by every architecture). Not in every libc crate target, so defined here.
const SYS_FCHMODAT2: libc::c_long = 452;

/// Syscalls whose mode argument (index) sets a file's mode: refused (EPERM) when that mode
/// carries S_ISUID or S_ISGID. mknod is here because it creates regular files too
/// (`mknod(path, S_IFREG | 04755, 0)`). mkdir is not: the kernel drops both bits from
/// mkdir's mode (a new directory gets S_ISGID only by inheriting it from its parent).
const SETID_MODE_CALLS: &[(&str, libc::c_long, u8)] = &[
    #[cfg(target_arch = "x86_64")]
    ("chmod", libc::SYS_chmod, 1),
    ("fchmod", libc::SYS_fchmod, 1),
    ("fchmodat", libc::SYS_fchmodat, 2),
    ("fchmodat2", SYS_FCHMODAT2, 2),
    #[cfg(target_arch = "x86_64")]
    ("creat", libc::SYS_creat, 1),
    #[cfg(target_arch = "x86_64")]
    ("mknod", libc::SYS_mknod, 1),
    ("mknodat", libc::SYS_mknodat, 2),
];

/// Open calls (flags index, mode index): refused (EPERM) when they create a file (O_CREAT or
/// O_TMPFILE) with S_ISUID or S_ISGID in the mode. Without those flags the kernel ignores the
/// mode, so nothing is refused. openat2 reads its mode from a struct BPF cannot see: it is
/// answered ENOSYS (see `enosys_rules`).
const SETID_OPEN_CALLS: &[(&str, libc::c_long, u8, u8)] = &[
    #[cfg(target_arch = "x86_64")]
    ("open", libc::SYS_open, 1, 2),
    ("openat", libc::SYS_openat, 2, 3),
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
/// clone3 and openat2).
#[cfg(test)]
fn denied_syscalls() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = DENIED.iter().map(|(name, _)| *name).collect();
    names.extend(["clone3", "openat2"]);
    names
}

/// Names of the syscalls refused when they would give a file S_ISUID or S_ISGID.
pub(super) fn setid_syscalls() -> Vec<&'static str> {
    SETID_MODE_CALLS
        .iter()
        .map(|(name, ..)| *name)
        .chain(SETID_OPEN_CALLS.iter().map(|(name, ..)| *name))
        .collect()
}

#[cfg(target_arch = "x86_64")]
pub(super) const TARGET_ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
pub(super) const TARGET_ARCH: TargetArch = TargetArch::aarch64;

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

/// Matches when the mode argument `mode` carries S_ISUID or S_ISGID (low 32 bits, masked, so
/// high bits set by the caller cannot hide them; the kernel truncates the mode to 16 bits).
fn setid_mode_rules(mode: u8) -> Result<Vec<SeccompRule>, SeccompError> {
    any_flag_rules(mode, &SETID_BITS)
}

/// Matches when `flags` has O_CREAT or O_TMPFILE and `mode` carries S_ISUID or S_ISGID.
fn setid_open_rules(flags: u8, mode: u8) -> Result<Vec<SeccompRule>, SeccompError> {
    let mut rules = Vec::new();
    for create in CREATE_FLAGS {
        for bit in SETID_BITS {
            rules.push(rule(vec![
                cond(flags, Op::MaskedEq(create), create)?,
                cond(mode, Op::MaskedEq(bit), bit)?,
            ])?);
        }
    }
    Ok(rules)
}

/// Syscalls answered with EPERM.
fn eperm_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&(_, nr)| (nr, Vec::new())).collect();

    // Setuid and setgid files (see SETID_BITS): every call that sets a file's mode.
    for &(_, nr, mode) in SETID_MODE_CALLS {
        rules.insert(nr, setid_mode_rules(mode)?);
    }
    for &(_, nr, flags, mode) in SETID_OPEN_CALLS {
        rules.insert(nr, setid_open_rules(flags, mode)?);
    }

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
    // openat2 (Linux 5.6) likewise passes its mode in a struct (`struct open_how`), so a
    // setuid mode could not be seen. glibc and musl have no openat2 wrapper and never call it
    // themselves; the programs that do (systemd, libpathrs, Go's and Rust's path-safe
    // crates) treat ENOSYS as "kernel older than 5.6" and fall back to openat, which is
    // checked.
    BTreeMap::from([
        (libc::SYS_clone3, Vec::new()),
        (libc::SYS_openat2, Vec::new()),
    ])
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
    // Only x86_64 appends to it (the x32 check).
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
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

/// A balanced binary search over the syscall numbers that have rules (`keys`, sorted). A
/// number without rules returns ALLOW after about log2(keys) comparisons; `keys[i]` jumps to
/// entry `i` of the table that directly follows the dispatch.
///
/// Why: the kernel emulates the filter for every syscall number when it is installed, to
/// cache the ones that are always allowed, so the install costs in proportion to how far an
/// allowed number walks (~90% of numbers stop within ~10 instructions here). And a number
/// with rules (openat, ioctl, socket … hot in builds) reaches its own rules in as many steps,
/// instead of walking a chain of every number with rules (seccompiler's layout: openat
/// walked 125 instructions through it).
fn dispatch(keys: &[u32]) -> Result<Vec<sock_filter>, SeccompError> {
    enum Node {
        Insn(sock_filter),
        /// `jeq k`: to entry `index` of the table after the dispatch, else next.
        ToEntry(u32, usize),
    }
    fn emit(keys: &[u32], first: usize, out: &mut Vec<Node>) -> Result<(), SeccompError> {
        if keys.len() <= 4 {
            out.extend(
                keys.iter()
                    .enumerate()
                    .map(|(i, &k)| Node::ToEntry(k, first + i)),
            );
            out.push(Node::Insn(stmt(BPF_RET_K, RET_ALLOW)));
            return Ok(());
        }
        let mid = keys.len() / 2;
        let split = out.len();
        out.push(Node::Insn(stmt(BPF_RET_K, 0))); // patched below
        emit(&keys[..mid], first, out)?;
        let right = u8::try_from(out.len() - split - 1)
            .map_err(|_| SeccompError::UnexpectedProgram("dispatch jump too long"))?;
        // nr >= keys[mid]: to the right half, else fall into the left half.
        out[split] = Node::Insn(jump(BPF_JMP_JGE_K, keys[mid], right, 0));
        emit(&keys[mid..], first + mid, out)
    }
    let mut nodes = vec![Node::Insn(stmt(BPF_LD_W_ABS, DATA_NR))];
    emit(keys, 0, &mut nodes)?;
    let len = nodes.len();
    nodes
        .into_iter()
        .enumerate()
        .map(|(pc, node)| match node {
            Node::Insn(insn) => Ok(insn),
            Node::ToEntry(k, index) => u8::try_from(len - pc - 1 + index)
                .map(|offset| jump(BPF_JMP_JEQ_K, k, offset, 0))
                .map_err(|_| SeccompError::UnexpectedProgram("dispatch jump too long")),
        })
        .collect()
}

/// Compiles the rules of one syscall with seccompiler (`errno` when a rule matches, ALLOW
/// otherwise) and removes its architecture check (the prologue has done it), after checking
/// that it looks as expected: it starts by loading the syscall number, so it does not depend
/// on the accumulator, and it ends with RET ALLOW. seccompiler's jumps are relative and stay
/// inside what it compiled, so the block only ever returns: it is self-contained.
fn block(
    nr: u32,
    rules: Vec<SeccompRule>,
    errno: u32,
    arch: TargetArch,
) -> Result<Vec<sock_filter>, SeccompError> {
    let filter = SeccompFilter::new(
        BTreeMap::from([(i64::from(nr), rules)]),
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
            "compiled block does not start with the architecture check and a load of the syscall number",
        ));
    }
    prog.drain(..3);
    if prog.last() != Some(&stmt(BPF_RET_K, RET_ALLOW)) {
        return Err(SeccompError::UnexpectedProgram(
            "compiled block does not end with RET ALLOW",
        ));
    }
    Ok(prog)
}

/// Every syscall number with rules, once, with the errno its rules answer. Refuses a number
/// that has rules for two errnos: its block could give only one of them.
type RuleTable = BTreeMap<u32, (u32, Vec<SeccompRule>)>;

fn rule_table(spec: &SeccompSpec) -> Result<RuleTable, SeccompError> {
    let mut table = RuleTable::new();
    for (errno, rules) in [
        (EPERM, eperm_rules()?),
        (EAFNOSUPPORT, eafnosupport_rules(spec)?),
        (ENOSYS, enosys_rules()),
    ] {
        for (nr, rules) in rules {
            let nr = u32::try_from(nr)
                .map_err(|_| SeccompError::UnexpectedProgram("negative syscall number"))?;
            if table.insert(nr, (errno, rules)).is_some() {
                return Err(SeccompError::UnexpectedProgram(
                    "a syscall has rules for two errnos",
                ));
            }
        }
    }
    Ok(table)
}

/// Builds the filter for `spec`. Pure: no syscalls, same output for the same input.
///
/// Layout: prologue, dispatch, then one table entry per syscall number with rules (in
/// number order) — `RET ERRNO` for a syscall refused whatever its arguments, else a jump to
/// its block — then the blocks.
pub(super) fn build(spec: &SeccompSpec) -> Result<BpfProgram, SeccompError> {
    let table = rule_table(spec)?;
    let keys: Vec<u32> = table.keys().copied().collect();
    let mut entries = Vec::with_capacity(keys.len());
    let mut blocks = Vec::new();
    for (index, (nr, (errno, rules))) in table.into_iter().enumerate() {
        if rules.is_empty() {
            entries.push(stmt(BPF_RET_K, RET_ERRNO | errno));
            continue;
        }
        // From the instruction after this entry to the first one of the block.
        let offset = u32::try_from(keys.len() - index - 1 + blocks.len())
            .map_err(|_| SeccompError::UnexpectedProgram("block table too long"))?;
        entries.push(stmt(BPF_JMP_JA, offset));
        blocks.extend(block(nr, rules, errno, TARGET_ARCH)?);
    }
    let mut prog = prologue();
    prog.extend(dispatch(&keys)?);
    prog.extend(entries);
    prog.extend(blocks);
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
        run_counted(prog, call).0
    }

    /// [`run`], also returning how many instructions were executed.
    fn run_counted(prog: &[sock_filter], call: &Call) -> (u32, usize) {
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
        let mut steps = 0;
        loop {
            let insn = &prog[pc];
            pc += 1;
            steps += 1;
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
                BPF_RET_K => return (insn.k, steps),
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

    fn dispatch_keys() -> Vec<u32> {
        rule_table(&SeccompSpec { allow_inet: true })
            .unwrap()
            .keys()
            .copied()
            .collect()
    }

    /// Entry `i` of the table sends `keys[i]` to its own verdict: `RET ERRNO` for a syscall
    /// without argument rules, else a jump to a block that reloads the syscall number and
    /// checks it is `keys[i]`.
    #[test]
    fn each_entry_leads_to_its_own_syscall() {
        let prog = inet();
        let keys = dispatch_keys();
        let table = rule_table(&SeccompSpec { allow_inet: true }).unwrap();
        let start = prologue().len() + dispatch(&keys).unwrap().len();
        for (i, (&nr, (errno, rules))) in table.iter().enumerate() {
            let entry = &prog[start + i];
            if rules.is_empty() {
                assert_eq!(*entry, stmt(BPF_RET_K, RET_ERRNO | errno), "{nr}");
                continue;
            }
            assert_eq!(entry.code, BPF_JMP_JA, "{nr}");
            let target = start + i + 1 + entry.k as usize;
            assert!(target >= start + keys.len(), "{nr}: jump into the table");
            assert_eq!(prog[target], stmt(BPF_LD_W_ABS, DATA_NR), "{nr}");
            assert_eq!(prog[target + 1].code, BPF_JMP_JEQ_K, "{nr}");
            assert_eq!(prog[target + 1].k, nr, "{nr}");
        }
    }

    /// Instructions executed for `call` by numbers without rules: what the kernel's
    /// install-time emulation walks for each syscall number.
    fn steps(prog: &[sock_filter], call: &Call) -> usize {
        run_counted(prog, call).1
    }

    #[test]
    fn syscalls_with_rules_reach_their_verdict_quickly() {
        let prog = inet();
        let mut worst = (0, 0);
        for nr in dispatch_keys() {
            // All-ones arguments match the most conditions of a rule before its verdict.
            for args in [[0u64; 6], [u64::MAX; 6]] {
                let n = steps(&prog, &call(nr as libc::c_long, &args));
                worst = worst.max((n, nr));
            }
        }
        assert!(
            worst.0 <= 50,
            "syscall {} walks {} instructions",
            worst.1,
            worst.0
        );
        let openat = call(libc::SYS_openat, &[0, 0, libc::O_RDONLY as u64, 0]);
        assert!(steps(&prog, &openat) <= 32, "{}", steps(&prog, &openat));
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
    fn dispatch_sends_each_rule_number_to_its_entry() {
        let keys = dispatch_keys();
        let mut prog = dispatch(&keys).unwrap();
        // A table whose entry i returns 0x1000 + i.
        prog.extend((0..keys.len() as u32).map(|i| stmt(BPF_RET_K, 0x1000 + i)));
        for nr in 0..600u32 {
            let got = run(&prog, &call(nr as libc::c_long, &[]));
            let want = match keys.iter().position(|&k| k == nr) {
                Some(i) => 0x1000 + i as u32,
                None => ALLOW,
            };
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

    /// `[devices] gpu` needs the drivers' own requests to pass: the filter refuses only
    /// TIOCSTI and TIOCLINUX, so DRM ('d') and NVIDIA ('F') requests reach the driver.
    #[test]
    fn gpu_driver_ioctls_pass() {
        // _IOC(dir, type, nr, size) on x86_64 and aarch64 (asm-generic/ioctl.h).
        let ioc =
            |dir: u64, ty: u8, nr: u64, size: u64| dir << 30 | size << 16 | (ty as u64) << 8 | nr;
        let (w, r) = (1u64, 2u64);
        let requests = [
            // DRM_IOCTL_VERSION, DRM_IOCTL_GET_CAP, DRM_IOCTL_PRIME_HANDLE_TO_FD.
            ioc(r | w, b'd', 0x00, 64),
            ioc(r | w, b'd', 0x0c, 16),
            ioc(r | w, b'd', 0x2d, 12),
            // DRM_IOCTL_I915_GETPARAM and an amdgpu command submission (driver range).
            ioc(r | w, b'd', 0x46, 16),
            ioc(r | w, b'd', 0x44, 24),
            // NVIDIA's escape calls: NV_ESC_CARD_INFO, NV_ESC_RM_ALLOC, UVM_INITIALIZE.
            ioc(r | w, b'F', 200, 0),
            ioc(r | w, b'F', 0x2b, 48),
        ];
        let prog = inet();
        for request in requests {
            let c = call(libc::SYS_ioctl, &[3, request, 0]);
            assert_eq!(run(&prog, &c), ALLOW, "{request:#x}");
        }
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

    #[test]
    fn fchmodat2_number_matches_libc() {
        #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
        assert_eq!(SYS_FCHMODAT2, libc::SYS_fchmodat2);
        // Numbers from 424 on are the same on every architecture (asm-generic and x86 tables).
        assert_eq!(SYS_FCHMODAT2, libc::SYS_openat2 + 15);
    }

    const SUID: u64 = 0o4000;
    const SGID: u64 = 0o2000;

    #[test]
    fn setid_modes_refused_by_every_mode_call() {
        let prog = inet();
        for &(name, nr, arg) in SETID_MODE_CALLS {
            let with_mode = |mode: u64| {
                let mut args = [3u64, 0, 0, 0];
                args[usize::from(arg)] = mode;
                run(&prog, &call(nr, &args))
            };
            for mode in [
                SUID | 0o755,
                SGID | 0o755,
                SUID | SGID | 0o777,
                SUID,
                // mknod's mode carries the file type.
                libc::S_IFREG as u64 | SUID | 0o755,
                // High bits cannot hide the flags (the kernel truncates the mode).
                (1 << 32) | SUID | 0o755,
                (0xffff_ffff << 32) | SGID,
                0xffff_ffff_ffff_ffff,
            ] {
                assert_eq!(with_mode(mode), DENY_EPERM, "{name} {mode:#o}");
            }
            for mode in [
                0o755,
                0o644,
                0o1777,
                0o777,
                0,
                0xffff_ffff_0000_0000 | 0o755,
            ] {
                assert_eq!(with_mode(mode), ALLOW, "{name} {mode:#o}");
            }
        }
    }

    #[test]
    fn setid_modes_refused_only_when_open_creates() {
        let prog = inet();
        let creat = libc::O_CREAT as u64 | libc::O_WRONLY as u64;
        let tmpfile = libc::O_TMPFILE as u64 | libc::O_RDWR as u64;
        for &(name, nr, flags_arg, mode_arg) in SETID_OPEN_CALLS {
            let open = |flags: u64, mode: u64| {
                let mut args = [3u64, 0, 0, 0];
                args[usize::from(flags_arg)] = flags;
                args[usize::from(mode_arg)] = mode;
                run(&prog, &call(nr, &args))
            };
            for flags in [
                creat,
                creat | libc::O_EXCL as u64,
                tmpfile,
                creat | (1 << 40),
            ] {
                for mode in [SUID | 0o755, SGID | 0o644, (1 << 33) | SUID] {
                    assert_eq!(open(flags, mode), DENY_EPERM, "{name} {flags:#x} {mode:#o}");
                }
                assert_eq!(open(flags, 0o755), ALLOW, "{name} {flags:#x}");
                assert_eq!(open(flags, 0o1777), ALLOW, "{name} {flags:#x}");
            }
            // Without O_CREAT or O_TMPFILE the kernel ignores the mode.
            for flags in [0, libc::O_RDWR as u64, libc::O_DIRECTORY as u64] {
                assert_eq!(open(flags, SUID | 0o755), ALLOW, "{name} {flags:#x}");
            }
        }
        assert_eq!(
            run(&prog, &call(libc::SYS_openat2, &[3, 0, 0, 24])),
            RET_ERRNO | ENOSYS
        );
    }

    /// Arguments equal to other syscalls' numbers do not change a verdict: a block compares
    /// the number it reloaded, not what an earlier load left in the accumulator.
    #[test]
    fn loaded_arguments_do_not_change_the_verdict() {
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
    fn each_syscall_has_rules_for_one_errno() {
        let eperm = eperm_rules().unwrap();
        let afn = eafnosupport_rules(&SeccompSpec { allow_inet: true }).unwrap();
        let enosys = enosys_rules();
        for nr in afn.keys().chain(enosys.keys()) {
            assert!(!eperm.contains_key(nr), "syscall {nr} with two errnos");
        }
        // rule_table refuses what this test checks, so build fails closed if it ever changes.
        assert!(rule_table(&SeccompSpec { allow_inet: false }).is_ok());
        assert_eq!(denied_syscalls().len(), DENIED.len() + 2);
        for &(name, nr, _) in SETID_MODE_CALLS {
            assert!(
                !afn.contains_key(&nr) && !enosys.contains_key(&nr),
                "{name}"
            );
            assert!(!DENIED.iter().any(|&(_, d)| d == nr), "{name}");
        }
    }
}

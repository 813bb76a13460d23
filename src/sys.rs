//! The only home of `unsafe` and raw syscalls.
//!
//! Each wrapper is safe to call, names the syscall and its object in its error,
//! and carries a `// SAFETY:` line on every `unsafe` block.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// A failed syscall: which call, on what, and the errno.
#[derive(Debug, thiserror::Error)]
#[error("{call}({object}) => {errno}")]
pub struct SysError {
    pub call: &'static str,
    pub object: String,
    pub errno: nix::errno::Errno,
}

impl SysError {
    pub fn new(
        call: &'static str,
        object: impl std::fmt::Display,
        errno: nix::errno::Errno,
    ) -> Self {
        SysError {
            call,
            object: object.to_string(),
            errno,
        }
    }
    pub fn last(call: &'static str, object: impl std::fmt::Display) -> Self {
        Self::new(call, object, nix::errno::Errno::last())
    }
}

/// Result of [`clone_process`].
pub enum Forked {
    Parent { child: nix::unistd::Pid },
    Child,
}

/// `clone(2)` with `flags | SIGCHLD` and no new stack: fork-like semantics, but
/// the child starts in the namespaces named by `flags`.
///
/// Must only be called while the process is single-threaded (shellcage's
/// supervisor is); the child may then allocate freely.
pub fn clone_process(flags: libc::c_int) -> Result<Forked, SysError> {
    // SAFETY: raw clone without CLONE_VM and without a new stack behaves like
    // fork(2): the child gets a copy of the address space and returns 0 here.
    // The caller guarantees the process is single-threaded, so no lock can be
    // held by another thread at the time of the copy. No pointer arguments are
    // passed (all zero), so nothing is written by the kernel into our memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match ret {
        -1 => Err(SysError::last("clone", format!("{:#x}", flags))),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            child: nix::unistd::Pid::from_raw(pid as libc::pid_t),
        }),
    }
}

/// `fork(2)`; single-threaded callers only (the sandbox init is).
pub fn fork_process() -> Result<Forked, SysError> {
    // SAFETY: the sandbox init that calls this is single-threaded (it was
    // created by clone without threads), so the child may run arbitrary code.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Forked::Parent { child }),
        Ok(nix::unistd::ForkResult::Child) => Ok(Forked::Child),
        Err(e) => Err(SysError::new("fork", "sandbox command", e)),
    }
}

/// `close_range(first, last, 0)`, falling back to a close loop on kernels
/// older than 5.9.
pub fn close_range(first: u32, last: u32) {
    if first > last {
        return;
    }
    // SAFETY: close_range only closes descriptors of this process; callers
    // ensure no live Rust object owns a descriptor in the range.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if ret == 0 {
        return;
    }
    let max = nix::unistd::sysconf(nix::unistd::SysconfVar::OPEN_MAX)
        .ok()
        .flatten()
        .unwrap_or(65536)
        .min(1 << 20) as u32;
    for fd in first..=last.min(max) {
        // SAFETY: see above: closing descriptors nobody in this process owns.
        unsafe { libc::close(fd as RawFd) };
    }
}

/// Close every descriptor >= 3 except those in `keep`.
pub fn close_fds_except(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|&&fd| fd >= 3)
        .map(|&fd| fd as u32)
        .collect();
    keep.sort_unstable();
    let mut next = 3u32;
    for fd in keep {
        if fd > next {
            close_range(next, fd - 1);
        }
        next = fd + 1;
    }
    close_range(next, u32::MAX);
}

const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
const AT_RECURSIVE: libc::c_uint = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(path, AT_RECURSIVE, {RDONLY?, NOSUID, NODEV?})`: make a whole
/// mounted tree read-only (and nosuid/nodev) in one call (Linux ≥ 5.12).
pub fn make_tree_attrs(path: &CStr, readonly: bool, nodev: bool) -> Result<(), SysError> {
    let mut set = MOUNT_ATTR_NOSUID;
    if readonly {
        set |= MOUNT_ATTR_RDONLY;
    }
    if nodev {
        set |= MOUNT_ATTR_NODEV;
    }
    tree_attrs(path, set, 0)
}

/// `mount_setattr(path, AT_RECURSIVE, {NOSUID, NODEV}, clear RDONLY)`: a
/// writable tree bound from a source made read-only by us. EPERM when the
/// source's read-only flag is locked (read-only on the host itself).
pub fn make_tree_writable(path: &CStr) -> Result<(), SysError> {
    tree_attrs(
        path,
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        MOUNT_ATTR_RDONLY,
    )
}

fn tree_attrs(path: &CStr, set: u64, clear: u64) -> Result<(), SysError> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is a valid NUL-terminated string and `attr` a properly
    // sized, initialised struct that outlives the call; the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(SysError::last("mount_setattr", path.to_string_lossy()))
    }
}

/// Bring the loopback interface of the caller's network namespace up and
/// return a descriptor of that namespace (`SIOCGSKNS` on the socket used).
pub fn loopback_up_netns_fd() -> Result<OwnedFd, SysError> {
    let sock = loopback_up_socket()?;
    const SIOCGSKNS: libc::c_ulong = 0x894C;
    // SAFETY: SIOCGSKNS takes no argument and returns a new descriptor (opened
    // close-on-exec by the kernel) for the socket's network namespace.
    let fd = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGSKNS as _) };
    if fd < 0 {
        return Err(SysError::last("ioctl", "SIOCGSKNS"));
    }
    // SAFETY: the kernel just returned this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Bring the loopback interface up (`SIOCGIFFLAGS`/`SIOCSIFFLAGS`).
fn loopback_up_socket() -> Result<OwnedFd, SysError> {
    // SAFETY: plain socket(2) call; the returned descriptor is immediately owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(SysError::last("socket", "AF_INET for lo"));
    }
    // SAFETY: fd is a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags of the named interface into `req`,
    // which is a valid, writable ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(SysError::last("ioctl", "SIOCGIFFLAGS lo"));
    }
    // SAFETY: the union field ifru_flags is the one SIOCGIFFLAGS filled in.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads `req`, a valid ifreq naming "lo".
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(SysError::last("ioctl", "SIOCSIFFLAGS lo"));
    }
    Ok(sock)
}

/// Reset every catchable signal to its default disposition (ignored signals
/// survive execve; the Rust runtime ignores SIGPIPE).
pub fn reset_signal_dispositions() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL involves no handler code and no memory
        // owned by Rust; invalid signal numbers just return EINVAL.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// `pipe2(O_CLOEXEC)`.
pub fn pipe_cloexec() -> Result<(OwnedFd, OwnedFd), SysError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SysError::new("pipe2", "report pipe", e))
}

/// Write all of `buf` to a raw descriptor, ignoring errors (used for the
/// report pipe from processes that are about to exit).
pub fn write_all_raw(fd: RawFd, buf: &[u8]) {
    // SAFETY: the caller owns `fd` for the duration of the call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut off = 0;
    while off < buf.len() {
        match nix::unistd::write(fd, &buf[off..]) {
            Ok(0) => return,
            Ok(n) => off += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// Terminate immediately without running destructors or atexit handlers (for
/// forked children).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust-managed state.
    unsafe { libc::_exit(code) }
}

/// `execve(path, argv, envp)`; returns only on error.
pub fn execve(path: &CStr, argv: &[&CStr], envp: &[&CStr]) -> nix::errno::Errno {
    match nix::unistd::execve(path, argv, envp) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Is `fd` a terminal (`isatty`)?
pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Create an empty file with `mode` (O_EXCL, not following symlinks): masks
/// and placeholders. The caller sets the umask when exact bits matter.
pub fn create_placeholder_file(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map(drop)
}

/// Has the read end of the pipe whose write end is `fd` been closed? (poll
/// reports POLLERR on a write end whose reader is gone.)
pub fn pipe_reader_gone(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid, initialised pollfd; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// `pidfd_open(pid, 0)` (Linux ≥ 5.3): a descriptor that polls readable when
/// the process exits.
pub fn pidfd_open(pid: nix::unistd::Pid) -> Result<OwnedFd, SysError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0u32) };
    if ret < 0 {
        return Err(SysError::last("pidfd_open", pid));
    }
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// Borrow a raw descriptor that the caller keeps open for `'static` use
/// within a process that is about to exec or exit.
pub fn borrow_fd(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: callers pass descriptors they own and never close while borrowed.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

// --- seccomp ---

/// `struct sock_fprog` from `<linux/filter.h>`: the program handed to `seccomp(2)`.
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const seccompiler::sock_filter,
}

// seccompiler's `sock_filter` is `#[repr(C)]` with the kernel's field order; check its size too,
// since the kernel reads `len * 8` bytes from `filter`.
const _: () = assert!(std::mem::size_of::<seccompiler::sock_filter>() == 8);

/// `seccomp(SECCOMP_SET_MODE_FILTER, 0, prog)`: attach `filter` to the calling thread.
///
/// No `SECCOMP_FILTER_FLAG_TSYNC`: the filter is installed by the thread that then calls
/// `execve`, and `execve` ends every other thread of the process.
/// The kernel refuses (EACCES) unless no_new_privs is set or the caller has CAP_SYS_ADMIN.
pub fn seccomp_set_mode_filter(
    filter: &[seccompiler::sock_filter],
) -> Result<(), nix::errno::Errno> {
    let len = match u16::try_from(filter.len()) {
        Ok(0) | Err(_) => return Err(nix::errno::Errno::EINVAL),
        Ok(len) => len,
    };
    let prog = SockFprog {
        len,
        filter: filter.as_ptr(),
    };
    // SAFETY: `prog` points at `len` initialised instructions of `filter`, which outlives the
    // call; the kernel copies the program (copy_from_user) and keeps no pointer to our memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &prog as *const SockFprog,
        )
    };
    nix::errno::Errno::result(rc).map(drop)
}

// --- landlock ---

/// `LANDLOCK_CREATE_RULESET_VERSION` from `<linux/landlock.h>`: ask for the ABI version.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1 << 0;

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`: the Landlock ABI
/// version of the running kernel. One syscall, no file descriptor is created.
///
/// `ENOSYS` means the kernel (or a seccomp filter above us) does not know the syscall;
/// `EOPNOTSUPP` means Landlock is built in but not enabled at boot.
pub fn landlock_abi_version() -> Result<u32, nix::errno::Errno> {
    // SAFETY: with a null attribute pointer, size 0 and the VERSION flag the kernel reads
    // and writes no user memory; it only returns a number or an error.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0_usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret < 0 {
        return Err(nix::errno::Errno::last());
    }
    // The kernel returns a small positive version; anything else is treated as "none".
    Ok(u32::try_from(ret).unwrap_or(0))
}

/// Raw syscalls used only by the seccomp tests, in a child process that has installed the
/// filter: each one is called with arguments that the kernel rejects or that touch nothing
/// outside the child, so a broken filter cannot harm the host running the tests.
#[cfg(test)]
pub(crate) mod seccomp_probes {
    use nix::errno::Errno;
    use std::os::fd::{AsRawFd, BorrowedFd};

    /// `ptrace(PTRACE_TRACEME)`.
    pub fn ptrace_traceme() -> Result<(), Errno> {
        // SAFETY: PTRACE_TRACEME takes no pointers; at worst the child becomes traceable by its
        // parent (the test runner), which never attaches.
        let rc = unsafe {
            libc::ptrace(
                libc::PTRACE_TRACEME,
                0,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )
        };
        Errno::result(rc).map(drop)
    }

    /// `clone3(NULL, 0)`: without a filter the kernel answers EINVAL (size too small) before
    /// reading the pointer.
    pub fn clone3_null() -> Result<(), Errno> {
        // SAFETY: a size of 0 makes the kernel fail before dereferencing the NULL pointer.
        let rc =
            unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<libc::c_void>(), 0usize) };
        Errno::result(rc).map(drop)
    }

    /// `ioctl(fd, request, &byte)` with the full 64-bit `request` passed to the kernel.
    pub fn ioctl_byte(fd: BorrowedFd<'_>, request: u64) -> Result<(), Errno> {
        let byte: u8 = b'x';
        // SAFETY: the only pointer is to a live local byte, which is what TIOCSTI reads; the
        // tests pass a non-tty fd, so without a filter the kernel answers ENOTTY.
        let rc =
            unsafe { libc::syscall(libc::SYS_ioctl, fd.as_raw_fd(), request, &byte as *const u8) };
        Errno::result(rc).map(drop)
    }

    /// `personality(persona)`, returning the previous persona.
    pub fn personality(persona: u64) -> Result<i64, Errno> {
        // SAFETY: personality takes no pointers; it changes only this (child) process.
        let rc = unsafe { libc::syscall(libc::SYS_personality, persona) };
        Errno::result(rc)
    }

    /// getpid through the x32 ABI (syscall number with bit 30 set).
    #[cfg(target_arch = "x86_64")]
    pub fn x32_getpid() -> Result<i64, Errno> {
        // SAFETY: getpid takes no arguments; on a kernel without x32 it is ENOSYS.
        let rc = unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) };
        Errno::result(rc)
    }

    /// getpid (i386 number 20) through the i386 ABI entry `int 0x80`.
    #[cfg(target_arch = "x86_64")]
    pub fn i386_getpid() -> i64 {
        let mut rax: i64 = 20;
        // SAFETY: i386 getpid reads no memory and takes no arguments; `int 0x80` clobbers at
        // most r8-r11 besides rax, which are declared. Without ia32 emulation it raises SIGSEGV.
        unsafe {
            std::arch::asm!(
                "int 0x80",
                inout("rax") rax,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                options(nostack)
            );
        }
        rax
    }
}

//! The only home of `unsafe` and raw syscalls.
//!
//! Each wrapper is safe to call, names the syscall and its object in its error,
//! and carries a `// SAFETY:` line on every `unsafe` block.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
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
/// The descriptors open in this process (from `/proc/self/fd`; empty if it cannot be read).
pub fn open_fds() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

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
/// For [`mount_setattr_idmap`]'s `extra`: nosuid and nodev.
pub const MOUNT_NOSUID_NODEV: u64 = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
/// For [`mount_setattr_idmap`]'s `extra`: read-only.
pub const MOUNT_RDONLY: u64 = MOUNT_ATTR_RDONLY;
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
/// return a descriptor of that namespace (`SIOCGSKNS` on the socket used),
/// and that socket (an unbound `AF_INET` datagram socket, close-on-exec).
pub fn loopback_up_netns_fd() -> Result<(OwnedFd, OwnedFd), SysError> {
    let sock = loopback_up_socket()?;
    const SIOCGSKNS: libc::c_ulong = 0x894C;
    // SAFETY: SIOCGSKNS takes no argument and returns a new descriptor (opened
    // close-on-exec by the kernel) for the socket's network namespace.
    let fd = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGSKNS as _) };
    if fd < 0 {
        return Err(SysError::last("ioctl", "SIOCGSKNS"));
    }
    // SAFETY: the kernel just returned this descriptor; nobody else owns it.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, sock))
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

/// `FS_APPEND_FL` (`chattr +a`): the file can only be opened for appending.
pub const FS_APPEND_FL: u32 = 0x20;

/// The inode flags of an open file (`FS_IOC_GETFLAGS`, what `lsattr` shows).
pub fn inode_flags(fd: BorrowedFd<'_>) -> Result<u32, nix::errno::Errno> {
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer, which points
    // to a live, properly aligned c_int; the descriptor is borrowed and open.
    let ret = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::FS_IOC_GETFLAGS,
            &mut flags as *mut libc::c_int,
        )
    };
    if ret == -1 {
        return Err(nix::errno::Errno::last());
    }
    Ok(flags as u32)
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

// --- terminals (the pty relay, supervise/relay.rs and sandbox/terminal.rs) ---

/// A new pseudo-terminal pair of the devpts instance that `ptmx` belongs to (inside the
/// sandbox, its private one): the master, unlocked (`TIOCSPTLCK`), and the slave, opened
/// through the master (`TIOCGPTPEER`, no path lookup, so no other instance's slave can be
/// substituted). Both are close-on-exec and neither becomes a controlling terminal.
pub fn open_pty(ptmx: &Path) -> Result<(OwnedFd, OwnedFd), SysError> {
    use nix::fcntl::OFlag;
    let master = nix::fcntl::open(
        ptmx,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| SysError::new("open", ptmx.display(), e))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int through the pointer, which is live for the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(SysError::last("ioctl(TIOCSPTLCK)", ptmx.display()));
    }
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes its open flags by value and returns a new descriptor.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if fd < 0 {
        return Err(SysError::last("ioctl(TIOCGPTPEER)", ptmx.display()));
    }
    // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((master, slave))
}

/// `ioctl(fd, TIOCSCTTY, 0)`: make the terminal `fd` the controlling terminal of the
/// caller, which must be a session leader without one.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> Result<(), SysError> {
    // SAFETY: TIOCSCTTY takes an int by value (0: never steal from another session).
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(SysError::last("ioctl(TIOCSCTTY)", fd.as_raw_fd()));
    }
    Ok(())
}

/// The window size of the terminal `fd` (`TIOCGWINSZ`).
pub fn window_size(fd: BorrowedFd<'_>) -> Result<libc::winsize, SysError> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize through the pointer, which is live
    // and writable for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } < 0 {
        return Err(SysError::last("ioctl(TIOCGWINSZ)", fd.as_raw_fd()));
    }
    Ok(ws)
}

/// Set the window size of the terminal `fd` (`TIOCSWINSZ`; on a pty master it is the
/// slave's, and the slave's foreground process group gets SIGWINCH when it changes).
pub fn set_window_size(fd: BorrowedFd<'_>, ws: &libc::winsize) -> Result<(), SysError> {
    // SAFETY: TIOCSWINSZ reads one struct winsize through the pointer, live for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws) } < 0 {
        return Err(SysError::last("ioctl(TIOCSWINSZ)", fd.as_raw_fd()));
    }
    Ok(())
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

/// Mount the symlink `link` itself (not what it points to) over `target`, a
/// regular file or a symlink, in this mount namespace. The mount point cannot
/// be unlinked, renamed or replaced (EBUSY) while the mount exists, and the
/// link cannot be rewritten, so a path can be made to point somewhere else for
/// a whole run (`.git/config` -> a private copy git may rewrite).
///
/// open_tree(AT_SYMLINK_NOFOLLOW | OPEN_TREE_CLONE) + move_mount onto an
/// O_PATH|O_NOFOLLOW descriptor of `target` (neither end is followed); where
/// the new mount API is missing or filtered (ENOSYS, EPERM), the same through
/// mount(2) MS_BIND on /proc/self/fd magic links, which name the symlinks
/// themselves.
pub fn mount_symlink_over(link: &Path, target: &Path) -> Result<(), SysError> {
    match mount_symlink_over_new_api(link, target) {
        Err(e)
            if matches!(
                e.errno,
                nix::errno::Errno::ENOSYS | nix::errno::Errno::EPERM
            ) =>
        {
            mount_symlink_over_legacy(link, target)
        }
        r => r,
    }
}

fn open_path_nofollow(p: &Path) -> Result<OwnedFd, SysError> {
    use nix::fcntl::{OFlag, open};
    open(
        p,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| SysError::new("open(O_PATH|O_NOFOLLOW)", p.display(), e))
}

/// [`mount_symlink_over`] through open_tree(2) and move_mount(2) only.
pub fn mount_symlink_over_new_api(link: &Path, target: &Path) -> Result<(), SysError> {
    use std::os::unix::ffi::OsStrExt;
    let c_link = std::ffi::CString::new(link.as_os_str().as_bytes())
        .map_err(|_| SysError::new("open_tree", link.display(), nix::errno::Errno::EINVAL))?;
    let to = open_path_nofollow(target)?;
    let tree = open_tree_clone(&c_link, false, true)?;
    // The descriptor itself is the mount point (MOVE_MOUNT_T_EMPTY_PATH): not followed.
    move_mount_raw(
        tree.as_fd(),
        to.as_raw_fd(),
        c"",
        libc::MOVE_MOUNT_T_EMPTY_PATH,
        target.display(),
    )
}

/// [`mount_symlink_over`] through mount(2) MS_BIND only (kernels before 5.2).
pub fn mount_symlink_over_legacy(link: &Path, target: &Path) -> Result<(), SysError> {
    let from = open_path_nofollow(link)?;
    let to = open_path_nofollow(target)?;
    let from_p = format!("/proc/self/fd/{}", from.as_raw_fd());
    let to_p = format!("/proc/self/fd/{}", to.as_raw_fd());
    nix::mount::mount(
        Some(from_p.as_str()),
        to_p.as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        SysError::new(
            "mount(MS_BIND)",
            format!("{} on {}", link.display(), target.display()),
            e,
        )
    })
}

// --- network proxy (src/net) ---

/// `splice(2)` between two descriptors (one of them a pipe), `SPLICE_F_MOVE`, plus
/// `SPLICE_F_MORE` when `more` (more data follows: the socket may coalesce). Blocking
/// follows the descriptors: a socket's `SO_RCVTIMEO`/`SO_SNDTIMEO` apply and end the call
/// with `EAGAIN`.
pub fn splice(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    len: usize,
    more: bool,
) -> io::Result<usize> {
    let mut flags = libc::SPLICE_F_MOVE;
    if more {
        flags |= libc::SPLICE_F_MORE;
    }
    // SAFETY: both descriptors are borrowed for the call; null offsets mean "use and
    // advance the file position" (required for pipes and sockets); no user memory is passed.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Ignore `SIGPIPE` in this process: writing or splicing into a socket whose peer is gone
/// must fail with `EPIPE`, not kill the proxy (`splice` has no `MSG_NOSIGNAL`).
pub fn ignore_sigpipe() {
    // SAFETY: SIG_IGN runs no handler code; it only changes this process's disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// The loopback interface's index: the kernel creates `lo` first in every network
/// namespace and fixes its index (`LOOPBACK_IFINDEX`).
const LOOPBACK_IFINDEX: u32 = 1;

/// An `RTM_NEWROUTE` request for `local NET/LEN dev lo table local` (what
/// `ip route add local NET/LEN dev lo` sends): every address of the block becomes local,
/// so a socket bound to 0.0.0.0 accepts connections to any of them.
pub fn local_route_message(net: std::net::Ipv4Addr, len: u8, seq: u32) -> Vec<u8> {
    const RTM_NEWROUTE: u16 = 24;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_ACK: u16 = 0x4;
    const NLM_F_EXCL: u16 = 0x200;
    const NLM_F_CREATE: u16 = 0x400;
    const RT_TABLE_LOCAL: u8 = 255;
    const RTPROT_STATIC: u8 = 4;
    const RT_SCOPE_HOST: u8 = 254;
    const RTN_LOCAL: u8 = 2;
    const RTA_DST: u16 = 1;
    const RTA_OIF: u16 = 4;
    let mut attrs = Vec::new();
    let mut attr = |kind: u16, payload: &[u8]| {
        attrs.extend_from_slice(&(4 + payload.len() as u16).to_ne_bytes());
        attrs.extend_from_slice(&kind.to_ne_bytes());
        attrs.extend_from_slice(payload);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
    };
    attr(RTA_DST, &net.octets());
    attr(RTA_OIF, &LOOPBACK_IFINDEX.to_ne_bytes());
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    let mut rtmsg = vec![
        libc::AF_INET as u8,
        len,
        0,
        0,
        RT_TABLE_LOCAL,
        RTPROT_STATIC,
    ];
    rtmsg.extend_from_slice(&[RT_SCOPE_HOST, RTN_LOCAL]);
    rtmsg.extend_from_slice(&0u32.to_ne_bytes());
    let total = 16 + rtmsg.len() + attrs.len();
    let mut msg = Vec::with_capacity(total);
    msg.extend_from_slice(&(total as u32).to_ne_bytes());
    msg.extend_from_slice(&RTM_NEWROUTE.to_ne_bytes());
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE;
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&rtmsg);
    msg.extend_from_slice(&attrs);
    msg
}

/// Add `local NET/LEN dev lo` to the local routing table of the caller's network
/// namespace over rtnetlink, and wait for the kernel's acknowledgement. Needs
/// CAP_NET_ADMIN in the namespace's owning user namespace.
pub fn add_local_route_v4(net: std::net::Ipv4Addr, len: u8) -> Result<(), SysError> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
        socket,
    };
    let object = format!("local {net}/{len} dev lo");
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| SysError::new("socket", "AF_NETLINK NETLINK_ROUTE", e))?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))
        .map_err(|e| SysError::new("bind", "AF_NETLINK", e))?;
    let msg = local_route_message(net, len, 1);
    send(fd.as_raw_fd(), &msg, MsgFlags::empty())
        .map_err(|e| SysError::new("send", format!("RTM_NEWROUTE {object}"), e))?;
    let mut buf = [0u8; 1024];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())
        .map_err(|e| SysError::new("recv", format!("RTM_NEWROUTE {object}"), e))?;
    // An acknowledgement is an NLMSG_ERROR (type 2) whose error field is 0 or -errno.
    const NLMSG_ERROR: u16 = 2;
    if n < 20 || u16::from_ne_bytes([buf[4], buf[5]]) != NLMSG_ERROR {
        return Err(SysError::new(
            "recv",
            format!("RTM_NEWROUTE {object}: no ack"),
            nix::errno::Errno::EPROTO,
        ));
    }
    match i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]) {
        0 => Ok(()),
        e => Err(SysError::new(
            "RTM_NEWROUTE",
            object,
            nix::errno::Errno::from_raw(-e),
        )),
    }
}

/// Send `data` and the descriptors `fds` (SCM_RIGHTS) over a Unix socket.
pub fn send_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), SysError> {
    use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let iov = [io::IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(&raw)];
    sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(|e| SysError::new("sendmsg", "SCM_RIGHTS", e))?;
    Ok(())
}

/// The most descriptors one [`recv_fds`] accepts.
pub const MAX_PASSED_FDS: usize = 64;

/// Receive data and descriptors sent by [`send_fds`]; descriptors arrive close-on-exec.
/// A truncated control message (more than [`MAX_PASSED_FDS`]) is an error, and whatever
/// did arrive is closed.
pub fn recv_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(usize, Vec<OwnedFd>), SysError> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg};
    let mut space = nix::cmsg_space!([RawFd; MAX_PASSED_FDS]);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| SysError::new("recvmsg", "SCM_RIGHTS", e))?;
    let mut fds = Vec::new();
    for cmsg in msg
        .cmsgs()
        .map_err(|e| SysError::new("recvmsg", "SCM_RIGHTS", e))?
    {
        if let ControlMessageOwned::ScmRights(list) = cmsg {
            for fd in list {
                // SAFETY: the kernel installed this descriptor in our table for this
                // message; nothing else in the process knows or owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(SysError::new(
            "recvmsg",
            "SCM_RIGHTS (truncated)",
            nix::errno::Errno::EMSGSIZE,
        ));
    }
    Ok((msg.bytes, fds))
}

/// libc's own `inet_aton`, the oracle for the proxy's IP literal parser in its tests.
#[cfg(test)]
pub(crate) fn libc_inet_aton(text: &str) -> Option<std::net::Ipv4Addr> {
    unsafe extern "C" {
        fn inet_aton(cp: *const libc::c_char, inp: *mut libc::in_addr) -> libc::c_int;
    }
    let c = std::ffi::CString::new(text).ok()?;
    let mut out = libc::in_addr { s_addr: 0 };
    // SAFETY: `c` is NUL-terminated and outlives the call; `out` is a valid, writable
    // in_addr that inet_aton fills in.
    let ok = unsafe { inet_aton(c.as_ptr(), &mut out) };
    (ok != 0).then(|| std::net::Ipv4Addr::from(u32::from_be(out.s_addr)))
}

// --- extended attributes (the overlay layer's whiteouts, opaque dirs, redirects) ---

/// `fgetxattr(fd, name)`: the attribute's value, `None` when the file has no such
/// attribute (`ENODATA`) or the filesystem has no xattrs (`ENOTSUP`). Values longer
/// than 4 KiB are an error (`ERANGE`): overlayfs's own values are short.
pub fn fgetxattr(fd: BorrowedFd<'_>, name: &CStr) -> Result<Option<Vec<u8>>, nix::errno::Errno> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: `name` is NUL-terminated and `buf` is a live, writable buffer of the
    // length passed; the kernel writes at most that many bytes into it.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast::<libc::c_void>(),
            buf.len(),
        )
    };
    if n < 0 {
        return match nix::errno::Errno::last() {
            nix::errno::Errno::ENODATA | nix::errno::Errno::EOPNOTSUPP => Ok(None),
            e => Err(e),
        };
    }
    buf.truncate(n as usize);
    Ok(Some(buf))
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

// --- detached mounts, id maps, descriptor passing (issue 8, item 5: root mapped to nobody) ---
//
// The supervisor, when run as root, maps the sandbox's uid 0 to an unprivileged host id and
// hands the sandbox its workspace as an id-mapped mount: made here with the new mount API
// (open_tree, mount_setattr with MOUNT_ATTR_IDMAP), passed over a Unix socket (SCM_RIGHTS)
// and attached inside with move_mount.

/// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC [| AT_RECURSIVE])`: a
/// detached bind mount of `path` (with its submounts when `recursive`), which nothing can
/// see until it is attached with [`move_mount_to`]. With `nofollow` a final symlink is
/// not followed: the mount is the symlink itself (AT_SYMLINK_NOFOLLOW).
pub fn open_tree_clone(path: &CStr, recursive: bool, nofollow: bool) -> Result<OwnedFd, SysError> {
    let mut flags = libc::OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    if nofollow {
        flags |= libc::AT_SYMLINK_NOFOLLOW as libc::c_uint;
    }
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call; open_tree
    // reads it and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(SysError::last("open_tree", path.to_string_lossy()));
    }
    // SAFETY: the kernel just returned this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `mount_setattr(mount, "", AT_EMPTY_PATH [| AT_RECURSIVE], {MOUNT_ATTR_IDMAP, userns})`:
/// make the detached mount `mount` (from [`open_tree_clone`]) show and store ownership
/// through the id maps of the user namespace `userns` (an open `/proc/PID/ns/user`). Needs
/// CAP_SYS_ADMIN in the initial user namespace (the filesystem must have been mounted
/// there), a namespace with both its uid and gid maps written, and a filesystem that
/// supports id-mapped mounts (EINVAL otherwise, also for any submount with `recursive`).
/// `extra`: further attributes set in the same call ([`MOUNT_NOSUID_NODEV`], with
/// [`MOUNT_RDONLY`]).
pub fn mount_setattr_idmap(
    mount: BorrowedFd<'_>,
    userns: BorrowedFd<'_>,
    recursive: bool,
    extra: u64,
) -> Result<(), SysError> {
    let attr = MountAttr {
        attr_set: libc::MOUNT_ATTR_IDMAP | extra,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: the empty path is a valid NUL-terminated string, `attr` a properly sized,
    // initialised struct; both outlive the call and the kernel only reads them. The two
    // descriptors are borrowed, so they stay open for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(SysError::last("mount_setattr", "MOUNT_ATTR_IDMAP"))
    }
}

/// `mount_setattr(mount, "", AT_EMPTY_PATH | AT_RECURSIVE, {set})`: mount flags
/// ([`MOUNT_NOSUID_NODEV`], [`MOUNT_RDONLY`]) on a whole detached tree (from
/// [`open_tree_clone`]), without an id mapping.
pub fn detached_tree_attrs(mount: BorrowedFd<'_>, set: u64) -> Result<(), SysError> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the empty path is a valid NUL-terminated string, `attr` a properly sized,
    // initialised struct; both outlive the call and the kernel only reads them. The
    // descriptor is borrowed, so it stays open for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(SysError::last("mount_setattr", "detached tree"))
    }
}

/// `move_mount(mount, "", AT_FDCWD, to, MOVE_MOUNT_F_EMPTY_PATH)`: attach the detached mount
/// `mount` at `to` in the caller's mount namespace. A final symlink in `to` is not followed
/// (no MOVE_MOUNT_T_SYMLINKS): mounting over a symlink covers the link itself.
pub fn move_mount_to(mount: BorrowedFd<'_>, to: &CStr) -> Result<(), SysError> {
    move_mount_raw(mount, libc::AT_FDCWD, to, 0, to.to_string_lossy())
}

/// `move_mount(mount, "", to_dir, to, MOVE_MOUNT_F_EMPTY_PATH | to_flags)`: the one call
/// site of move_mount(2); `object` names the mount point in the error.
fn move_mount_raw(
    mount: BorrowedFd<'_>,
    to_dir: RawFd,
    to: &CStr,
    to_flags: libc::c_uint,
    object: impl std::fmt::Display,
) -> Result<(), SysError> {
    // SAFETY: both strings are valid and NUL-terminated and outlive the call; the borrowed
    // descriptor and `to_dir` (AT_FDCWD or a descriptor the caller keeps open) stay open for
    // its duration. move_mount only reads its arguments.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount.as_raw_fd(),
            c"".as_ptr(),
            to_dir,
            to.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | to_flags,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(SysError::last("move_mount", object))
    }
}

/// Which id map of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMap {
    Uid,
    Gid,
}

/// Write `map` (lines of "inside outside count") to `/proc/PID/uid_map` or `gid_map` of
/// another process, which must sit in a user namespace whose maps are not written yet. The
/// caller needs the capabilities of the namespace's parent (CAP_SETUID/CAP_SETGID) to map
/// any id other than its own, and a gid map written by a privileged caller leaves setgroups
/// allowed. One write, as the kernel requires.
pub fn write_id_map(pid: nix::unistd::Pid, which: IdMap, map: &str) -> Result<(), SysError> {
    use std::io::Write;
    let name = match which {
        IdMap::Uid => "uid_map",
        IdMap::Gid => "gid_map",
    };
    let path = format!("/proc/{pid}/{name}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(map.as_bytes()))
        .map_err(|e| {
            SysError::new(
                "write",
                &path,
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })
}

/// In a user namespace whose maps were just written by another process: become its
/// uid and gid 0 (`setresgid(0, 0, 0)`, `setresuid(0, 0, 0)`) with no supplementary
/// groups (`setgroups(0, NULL)`). The calling thread's credentials keep the ids it was
/// cloned with until then, which the maps may not contain. Raw syscalls for the calling
/// thread only (libc's wrappers would signal every thread to do the same, which a
/// process made by a raw clone cannot rely on); a process this thread forks afterwards
/// inherits the new credentials. Needs CAP_SETUID and CAP_SETGID in the namespace, a
/// gid map, and setgroups allowed there; the capabilities are kept (0 of the namespace
/// is its root).
pub fn become_namespace_root() -> Result<(), SysError> {
    // SAFETY: a size of 0 with a null list is the documented way to empty the list;
    // the kernel reads nothing through the pointer.
    let ret =
        unsafe { libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) };
    if ret != 0 {
        return Err(SysError::last("setgroups", "[]"));
    }
    // SAFETY: plain integer arguments; no memory is passed.
    let ret = unsafe { libc::syscall(libc::SYS_setresgid, 0u32, 0u32, 0u32) };
    if ret != 0 {
        return Err(SysError::last("setresgid", "0"));
    }
    // SAFETY: plain integer arguments; no memory is passed.
    let ret = unsafe { libc::syscall(libc::SYS_setresuid, 0u32, 0u32, 0u32) };
    if ret != 0 {
        return Err(SysError::last("setresuid", "0"));
    }
    Ok(())
}

/// Receive exactly one descriptor and one byte of payload, sent by [`send_fds`] (opened
/// close-on-exec). EOF or a message without exactly one descriptor is an error (EBADMSG);
/// extra descriptors are closed.
pub fn recv_fd(sock: BorrowedFd<'_>) -> Result<OwnedFd, SysError> {
    let mut byte = [0u8; 1];
    let (n, mut received) = recv_fds(sock, &mut byte)?;
    if n != 1 || received.len() != 1 {
        return Err(SysError::new(
            "recvmsg",
            format!("SCM_RIGHTS ({} descriptors)", received.len()),
            nix::errno::Errno::EBADMSG,
        ));
    }
    Ok(received.remove(0))
}

#[cfg(test)]
mod mount_api_tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    const CHILD_ENV: &str = "SHELLCAGE_SYS_MOUNT_CHILD";

    #[test]
    fn a_descriptor_passes_over_a_socket() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (read, write) = pipe_cloexec().unwrap();
        send_fds(a.as_fd(), b"F", &[write.as_fd()]).unwrap();
        drop(write);
        let got = recv_fd(b.as_fd()).unwrap();
        std::fs::File::from(got).write_all(b"through").unwrap();
        let mut text = String::new();
        std::fs::File::from(read).read_to_string(&mut text).unwrap();
        assert_eq!(text, "through");
    }

    #[test]
    fn recv_fd_refuses_a_message_without_a_descriptor() {
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.write_all(b"F").unwrap();
        let e = recv_fd(b.as_fd()).unwrap_err();
        assert_eq!(e.errno, nix::errno::Errno::EBADMSG);
        drop(a);
        // End of stream: no message at all.
        assert_eq!(
            recv_fd(b.as_fd()).unwrap_err().errno,
            nix::errno::Errno::EBADMSG
        );
    }

    /// Skip (print why) unless SHELLCAGE_TEST_REQUIRE_KERNEL is set, then fail.
    fn require(ok: bool, what: &str) -> bool {
        if !ok && std::env::var_os("SHELLCAGE_TEST_REQUIRE_KERNEL").is_some() {
            panic!("required kernel feature missing: {what}");
        }
        if !ok {
            eprintln!("SKIP: {what}");
        }
        ok
    }

    /// `unshare --user sleep 30` once it sits in its new user namespace; killed on drop.
    struct Sleeper(std::process::Child);

    impl Sleeper {
        fn spawn() -> Option<Sleeper> {
            let child = std::process::Command::new("unshare")
                .args(["--user", "sleep", "30"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .spawn()
                .ok()?;
            let sleeper = Sleeper(child);
            let ours = std::fs::read_link("/proc/self/ns/user").unwrap();
            for _ in 0..200 {
                let theirs = std::fs::read_link(format!("/proc/{}/ns/user", sleeper.0.id()));
                if theirs.is_ok_and(|t| t != ours) {
                    return Some(sleeper);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            None
        }
        fn pid(&self) -> nix::unistd::Pid {
            nix::unistd::Pid::from_raw(self.0.id() as i32)
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn id_map_of_another_process() {
        let Some(child) = Sleeper::spawn() else {
            require(false, "a user namespace (unshare --user)");
            return;
        };
        let pid = child.pid();
        let uid = nix::unistd::getuid().as_raw();
        // Root maps the namespace's 0 to nobody; anyone else may map only its own uid.
        let outside = if uid == 0 { 65534 } else { uid };
        let map = format!("0 {outside} 1\n");
        write_id_map(pid, IdMap::Uid, &map).unwrap();
        let written = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
        assert_eq!(
            written.split_whitespace().collect::<Vec<_>>(),
            ["0", &outside.to_string(), "1"]
        );
        // Written once: a second write is refused.
        let again = write_id_map(pid, IdMap::Uid, &map).unwrap_err();
        assert_eq!(again.errno, nix::errno::Errno::EPERM);
        if uid == 0 {
            // A privileged writer leaves setgroups allowed.
            write_id_map(pid, IdMap::Gid, "0 65534 1\n").unwrap();
            let setgroups = std::fs::read_to_string(format!("/proc/{pid}/setgroups")).unwrap();
            assert_eq!(setgroups.trim(), "allow");
        }
    }

    /// Runs `id_mapped_mount_in_child` in a copy of this test binary in a mount namespace
    /// of its own (`unshare -m`; with `-r` too when not root), so the mounts it makes touch
    /// nothing of the host.
    #[test]
    fn id_mapped_mount_and_move_mount() {
        let root = nix::unistd::getuid().is_root();
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("unshare")
            .args([if root { "-m" } else { "-rm" }, "--propagation", "private"])
            .arg(exe)
            .args([
                "sys::mount_api_tests::id_mapped_mount_in_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, if root { "root" } else { "user" })
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !require(
            out.status.success() || stdout.contains("child"),
            "unshare -m",
        ) {
            return;
        }
        assert!(out.status.success(), "{out:?}");
        assert!(stdout.contains("child ok"), "{out:?}");
        // Id-mapped mounts need the filesystem's superblock in the initial user namespace,
        // so only real root can make them; the unprivileged run checks the rest.
        assert_eq!(stdout.contains("idmap ok"), root, "{out:?}");
    }

    /// Not a test on its own: the body of `id_mapped_mount_and_move_mount`.
    #[test]
    fn id_mapped_mount_in_child() {
        let Ok(mode) = std::env::var(CHILD_ENV) else {
            return;
        };
        // Real root (uid 0 of the initial user namespace), not root of `unshare -r`.
        let real_root = mode == "root";
        println!();
        let dir = tempfile::tempdir().unwrap();
        let (fs, seen, link) = (
            dir.path().join("fs"),
            dir.path().join("seen"),
            dir.path().join("link"),
        );
        for d in [&fs, &seen] {
            std::fs::create_dir(d).unwrap();
        }
        // A tmpfs of our own, one file: as real root its superblock belongs to the initial
        // user namespace, which id-mapped mounts require.
        nix::mount::mount(
            Some("tmpfs"),
            &fs,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        std::fs::write(fs.join("f"), "x").unwrap();
        let owner = std::fs::metadata(fs.join("f")).unwrap().uid();
        let cstr = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let tree = open_tree_clone(&cstr(&fs), true, false).unwrap();
        if real_root {
            // A user namespace mapping its 0 to nobody: on-disk 0 is seen (and stored) as
            // 65534 through the mount.
            let sleeper = Sleeper::spawn().expect("a user namespace");
            write_id_map(sleeper.pid(), IdMap::Uid, "0 65534 1\n").unwrap();
            // Both maps, or mount_setattr answers EINVAL.
            write_id_map(sleeper.pid(), IdMap::Gid, "0 65534 1\n").unwrap();
            let userns = std::fs::File::open(format!("/proc/{}/ns/user", sleeper.pid())).unwrap();
            mount_setattr_idmap(tree.as_fd(), userns.as_fd(), true, 0).unwrap();
            drop(sleeper);
            // Detached, yet usable through its descriptor.
            let via_fd = nix::sys::stat::fstatat(&tree, "f", nix::fcntl::AtFlags::empty()).unwrap();
            assert_eq!(
                (owner, via_fd.st_uid),
                (0, 65534),
                "owner through the id-mapped mount"
            );
            println!("idmap ok");
        }
        move_mount_to(tree.as_fd(), &cstr(&seen)).unwrap();
        let expected = if real_root { 65534 } else { owner };
        assert_eq!(std::fs::metadata(seen.join("f")).unwrap().uid(), expected);
        assert_eq!(std::fs::read_to_string(seen.join("f")).unwrap(), "x");
        // A file mounted over a symlink covers the link itself, not its target.
        std::os::unix::fs::symlink("seen/f", &link).unwrap();
        std::fs::write(dir.path().join("mask"), "").unwrap();
        let mask = open_tree_clone(&cstr(&dir.path().join("mask")), false, false).unwrap();
        move_mount_to(mask.as_fd(), &cstr(&link)).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "");
        assert_eq!(std::fs::read_to_string(seen.join("f")).unwrap(), "x");
        // open_tree with nofollow takes the symlink itself as the mount.
        let link2 = dir.path().join("link2");
        std::os::unix::fs::symlink("elsewhere", &link2).unwrap();
        let l = open_tree_clone(&cstr(&link2), false, true).unwrap();
        let st = nix::sys::stat::fstatat(&l, "", nix::fcntl::AtFlags::AT_EMPTY_PATH).unwrap();
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFLNK);
        println!("child ok");
    }
}

// --- cgroups ---

/// `CLONE_INTO_CGROUP` from `<linux/sched.h>` (Linux ≥ 5.7; clone3 only).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` from `<linux/sched.h>`, up to and including `cgroup`
/// (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const _: () = assert!(std::mem::size_of::<CloneArgs>() == 88);

/// `clone3({flags | CLONE_INTO_CGROUP, exit_signal = SIGCHLD, cgroup})`: like
/// [`clone_process`], but the child starts in the cgroup v2 directory `cgroup`
/// (and, with `CLONE_NEWCGROUP`, that cgroup is the root of its new cgroup
/// namespace). ENOSYS (kernel < 5.3, or a seccomp filter above us), E2BIG or
/// EINVAL (kernel < 5.7) mean the caller must fall back to `clone` + moving
/// the child by writing its pid to `cgroup.procs`.
///
/// Must only be called while the process is single-threaded, as [`clone_process`].
pub fn clone_into_cgroup(flags: libc::c_int, cgroup: BorrowedFd<'_>) -> Result<Forked, SysError> {
    let args = CloneArgs {
        // The namespace bits of `flags` are plain bit flags; sign extension of a
        // c_int is avoided by going through u32.
        flags: u64::from(flags as u32) | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM and with no stack behaves like fork(2): the
    // child gets a copy of the address space and returns 0 here. The caller
    // guarantees the process is single-threaded, so no lock is held by another
    // thread at the time of the copy. `args` is a fully initialised struct of the
    // size passed, which the kernel only reads; pidfd/child_tid/parent_tid are 0,
    // so the kernel writes nothing into our memory; `cgroup` is a descriptor the
    // caller keeps open for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(SysError::last(
            "clone3",
            format!("{:#x} into cgroup fd {}", flags, cgroup.as_raw_fd()),
        )),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            child: nix::unistd::Pid::from_raw(pid as libc::pid_t),
        }),
    }
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)` (Linux ≥ 5.1): signal exactly the
/// process the descriptor refers to, never a later process that reused its pid.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> Result<(), nix::errno::Errno> {
    // SAFETY: the siginfo pointer is NULL (the kernel builds a default one) and
    // no other pointer is passed; `pidfd` is a live descriptor owned by the caller.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    nix::errno::Errno::result(ret).map(drop)
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: `Ok(true)` when this open file description
/// now holds the exclusive lock, `Ok(false)` when another one holds it. The
/// lock lasts until every descriptor of the description is closed (a forked
/// copy closing its descriptor does not release it); there is no unlock here.
pub fn try_lock_exclusive(fd: BorrowedFd<'_>) -> Result<bool, nix::errno::Errno> {
    // SAFETY: flock takes a descriptor the caller keeps open and an operation
    // flag; it touches no memory of ours.
    let ret = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    match nix::errno::Errno::result(ret) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

//! The only home of `unsafe` and raw syscalls.

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

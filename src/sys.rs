//! The only home of `unsafe` and raw syscalls.

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

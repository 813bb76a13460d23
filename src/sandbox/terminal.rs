//! The command's terminal: when the caller's stdin is a terminal, the command gets a
//! pseudo-terminal of its own instead (namespaces tier: from the sandbox's private devpts,
//! so its name `/dev/pts/N` exists inside; container tier: from the host's), as its
//! controlling terminal on the fds that were the caller's terminal. The supervisor holds
//! the master and relays bytes between it and the caller's terminal
//! (`supervise::relay`). The caller's terminal itself never reaches the command: the init
//! replaces it on those fds before the command exists, and nothing it sends to the slave
//! (TIOCSTI, TIOCSWINSZ, TCSETS …) can reach the caller's terminal.
//!
//! What the supervisor decides and the sandbox applies is a [`TerminalSpec`]; see
//! README "Terminals" for the rule.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::termios::{SetArg, Termios, tcsetattr};

use crate::sys::{self, SysError};

/// Where the command's pty comes from.
pub enum PtySource {
    /// Namespaces tier: the init opens `/dev/ptmx` once the root is built and sends the
    /// master out over this socket (the init's end of a socket pair).
    Inside(OwnedFd),
    /// Container tier: the supervisor opened the pair on the host; this is the slave.
    Slave(OwnedFd),
}

/// The command's terminal, decided by the supervisor before the spawn.
pub struct TerminalSpec {
    /// Which of the fds 0, 1, 2 are the caller's terminal (fd 0 always is): they get the
    /// slave instead.
    pub fds: Vec<RawFd>,
    /// The caller's terminal settings and window size, copied to the slave before the
    /// command starts.
    pub termios: Termios,
    pub winsize: libc::winsize,
    pub source: PtySource,
}

/// In the init, once the root is built: open a pty of the sandbox's devpts, give it the
/// caller's settings and size, and send the master to the supervisor. Returns the slave,
/// for [`attach`]. On an error nothing has changed (the command then gets the caller's
/// terminal as before, in the caller's session or none).
pub fn open_inside(t: &TerminalSpec) -> Result<OwnedFd, SysError> {
    let PtySource::Inside(channel) = &t.source else {
        return Err(SysError::new(
            "pty",
            "no channel to the supervisor",
            nix::errno::Errno::EBADF,
        ));
    };
    let (master, slave) = sys::open_pty(Path::new("/dev/ptmx"))?;
    configure(&slave, t)?;
    sys::send_fds(channel.as_fd(), b"pty", &[master.as_fd()])?;
    Ok(slave)
}

/// Copy the caller's settings and window size to a new slave.
pub fn configure(slave: &OwnedFd, t: &TerminalSpec) -> Result<(), SysError> {
    tcsetattr(slave, SetArg::TCSANOW, &t.termios)
        .map_err(|e| SysError::new("tcsetattr", "the sandbox's pty", e))?;
    sys::set_window_size(slave.as_fd(), &t.winsize)
}

/// Put `slave` on the fds of [`TerminalSpec::fds`], replacing the caller's terminal
/// there (the caller closes `slave` itself). Returns the first of them (the fd the command
/// makes its controlling terminal).
pub fn attach(t: &TerminalSpec, slave: impl AsFd) -> Result<RawFd, SysError> {
    for &fd in &t.fds {
        let done = match fd {
            0 => nix::unistd::dup2_stdin(slave.as_fd()),
            1 => nix::unistd::dup2_stdout(slave.as_fd()),
            _ => nix::unistd::dup2_stderr(slave.as_fd()),
        };
        done.map_err(|e| SysError::new("dup2", format_args!("pty onto fd {fd}"), e))?;
    }
    Ok(t.fds.first().copied().unwrap_or(0))
}

//! The session socket's messages: JSON, one per `SOCK_SEQPACKET` packet (so a message
//! is never split or merged), with descriptors passed as `SCM_RIGHTS`.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sys::{self, SysError};

/// The largest message: a command's request carries its environment.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// What a client asks: run this command (its stdin, stdout and stderr come with it).
#[derive(Debug, Serialize, Deserialize)]
pub struct CommandRequest {
    /// The session it expects (a server with another key refuses).
    pub key: String,
    pub argv: Vec<String>,
    /// The caller's working directory (host path).
    pub cwd: PathBuf,
    /// The caller's environment (the UTF-8 entries; the others are dropped, as in a
    /// cold run).
    pub env: Vec<(String, String)>,
    /// `--report-file`.
    pub report_file: Option<PathBuf>,
    /// A JSON report after the run (`--report json`, `[report]`): not part of the
    /// session's key, an output choice.
    pub report: bool,
}

/// What the server sends a spare handler: the command, and the masks the index asks for
/// now (with the connection, stdin, stdout and stderr).
#[derive(Debug, Serialize, Deserialize)]
pub struct SpareRequest {
    pub request: CommandRequest,
    pub masks: Vec<(PathBuf, bool)>,
}

/// What the server (its handler for the command) answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The command's sandbox is started; the handler's pidfd comes with it (the client
    /// sends the signals it gets there).
    Started { handler: i32 },
    /// The command ended: shellcage's exit code.
    Exit { code: i32 },
    /// Nothing ran: the client runs the command cold (the reason is for `-v`).
    Cold { why: String },
}

/// Send `msg` (and `fds`) as one packet.
pub fn send<T: Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fds: &[BorrowedFd<'_>],
) -> Result<(), SysError> {
    let bytes = serde_json::to_vec(msg)
        .map_err(|_| SysError::new("session message", "encode", nix::errno::Errno::EINVAL))?;
    if bytes.len() > MAX_MESSAGE {
        return Err(SysError::new(
            "session message",
            format!("{} bytes", bytes.len()),
            nix::errno::Errno::EMSGSIZE,
        ));
    }
    if fds.is_empty() {
        loop {
            match nix::sys::socket::send(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                &bytes,
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(SysError::new("send", "session socket", e)),
            }
        }
    }
    sys::send_fds(sock, &bytes, fds)
}

/// Receive one packet: `None` at EOF (the other end closed).
pub fn recv<T: for<'de> Deserialize<'de>>(
    sock: BorrowedFd<'_>,
) -> Result<Option<(T, Vec<OwnedFd>)>, SysError> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let (n, fds) = loop {
        match sys::recv_fds(sock, &mut buf) {
            Err(e) if e.errno == nix::errno::Errno::EINTR => continue,
            other => break other?,
        }
    };
    if n == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..n])
        .map_err(|_| SysError::new("session message", "decode", nix::errno::Errno::EBADMSG))?;
    Ok(Some((msg, fds)))
}

//! Supervisor side: clone the sandbox init into its namespaces.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::unistd::Pid;

use super::{Launch, init};
use crate::plan::Tier;
use crate::sys::{self, Forked, SysError};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The kernel refused the namespaces (EPERM, ENOSPC, EINVAL, EUSERS …).
    #[error("cannot create user namespace: {0}")]
    Namespaces(SysError),
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// A started sandbox: the init's pid and the read end of its report pipe.
pub struct Spawned {
    pub child: Pid,
    pub report: OwnedFd,
}

/// The namespaces of the namespaces tier.
fn clone_flags(launch: &Launch) -> libc::c_int {
    match launch.plan.tier {
        Tier::Namespaces => {
            let f = libc::CLONE_NEWUSER
                | libc::CLONE_NEWNS
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWCGROUP;
            // No CLONE_NEWNET here: the init creates the network namespace on a
            // second thread while it builds the mounts (see init::run_init).
            f
        }
        Tier::Container => 0,
    }
}

/// Start the sandbox. The caller has blocked the signals it supervises, and is
/// single-threaded.
pub fn spawn(launch: &Launch) -> Result<Spawned, SpawnError> {
    let (read, write) = sys::pipe_cloexec()?;
    let flags = clone_flags(launch);
    if launch.plan.tier == Tier::Container {
        // No pid namespace: orphans must come back to us to be killed.
        super::contained::become_subreaper()?;
    }
    match sys::clone_process(flags) {
        Ok(Forked::Child) => {
            drop(read);
            let fd = write.as_raw_fd();
            match launch.plan.tier {
                Tier::Namespaces => init::run_init(launch, fd),
                Tier::Container => init::run_contained(launch, fd),
            }
        }
        Ok(Forked::Parent { child }) => Ok(Spawned {
            child,
            report: read,
        }),
        Err(e)
            if flags != 0
                && matches!(
                    e.errno,
                    nix::errno::Errno::EPERM
                        | nix::errno::Errno::ENOSPC
                        | nix::errno::Errno::EINVAL
                        | nix::errno::Errno::EUSERS
                        | nix::errno::Errno::EACCES
                ) =>
        {
            Err(SpawnError::Namespaces(e))
        }
        Err(e) => Err(SpawnError::Sys(e)),
    }
}

//! Supervisor side: clone the sandbox init into its namespaces.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::unistd::Pid;

use nix::errno::Errno;

use super::cgroup::{Cgroup, CgroupError};
use super::rootview::{self, RootViewError};
use super::{SandboxSpec, init};
use crate::plan::Tier;
use crate::sys::{self, Forked, SysError};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The kernel refused the namespaces (EPERM, ENOSPC, EINVAL, EUSERS …).
    #[error("cannot create user namespace: {0}")]
    Namespaces(SysError),
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("cannot place the sandbox in its cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    RootView(#[from] RootViewError),
}

/// A started sandbox: the init's pid and the read end of its report pipe.
pub struct Spawned {
    pub child: Pid,
    pub report: OwnedFd,
}

/// The namespaces of the namespaces tier.
fn clone_flags(spec: &SandboxSpec) -> libc::c_int {
    match spec.plan.tier {
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
///
/// With cgroups the sandbox is inside them before it does anything: on cgroup
/// v2 it is cloned straight into its leaf (`clone3(CLONE_INTO_CGROUP)`, which
/// also makes the leaf the root of its cgroup namespace); otherwise (v1, or a
/// kernel or seccomp filter without clone3) it first enters every leaf
/// ([`Cgroup::start_gate`]: v1 by itself, v2 moved by the supervisor), and
/// then unshares its cgroup namespace itself.
pub fn spawn(spec: &SandboxSpec) -> Result<Spawned, SpawnError> {
    let (read, write) = sys::pipe_cloexec()?;
    // A sandbox started by root: the channel its id-mapped trees come on.
    let root = match (spec.mapped_root, spec.plan.tier) {
        (Some(_), Tier::Namespaces) => {
            Some(std::os::unix::net::UnixStream::pair().map_err(|e| {
                SysError::new(
                    "socketpair",
                    "id-mapped trees",
                    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                )
            })?)
        }
        _ => None,
    };
    let mut flags = clone_flags(spec);
    if spec.plan.tier == Tier::Container {
        // No pid namespace: orphans must come back to us to be killed.
        super::container_tier::become_subreaper()?;
    }
    let into = spec.cgroup.as_ref().and_then(|c| c.clone_target());
    let direct = into.and_then(|fd| match sys::clone_into_cgroup(flags, fd) {
        // Kernel < 5.7 (E2BIG, EINVAL), or clone3 refused by a seccomp
        // filter above us (ENOSYS): clone, then move the child.
        Err(e) if matches!(e.errno, Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL) => {
            tracing::debug!(%e, "clone3 into the cgroup refused; moving the child instead");
            None
        }
        other => Some(other),
    });
    let (forked, gate) = match direct {
        Some(forked) => (forked, None),
        None => {
            let gate = spec.cgroup.as_ref().map(Cgroup::start_gate).transpose()?;
            if gate.is_some() {
                // The init enters its cgroup namespace once it is in its leaf.
                flags &= !libc::CLONE_NEWCGROUP;
            }
            (sys::clone_process(flags), gate)
        }
    };
    match forked {
        Ok(Forked::Child) => {
            drop(read);
            // Only the child's end: EOF when the supervisor gives up.
            let root = root.map(|(_, child_end)| child_end);
            let fd = write.as_raw_fd();
            match spec.plan.tier {
                Tier::Namespaces => init::run_init(spec, fd, gate, root),
                Tier::Container => init::run_container_tier(spec, fd, gate),
            }
        }
        Ok(Forked::Parent { child }) => {
            if let (Some(gate), Some(cg)) = (gate, &spec.cgroup) {
                if let Err(e) = cg.attach(child) {
                    // The closed gate tells the child to exit without running anything.
                    drop(gate);
                    let _ = nix::sys::wait::waitpid(child, None);
                    return Err(e.into());
                }
                gate.release()?;
            }
            if let (Some(id), Some((ours, theirs))) = (spec.mapped_root, root) {
                drop(theirs);
                let trees = spec.mounts.as_ref().map_or(&[][..], |m| &m.idmapped[..]);
                let given = std::time::Instant::now();
                let result = rootview::give(child, id, trees, &ours);
                tracing::debug!(
                    target: "shellcage::timing",
                    trees = trees.len(),
                    "root's view given in {} µs",
                    given.elapsed().as_micros()
                );
                if let Err(e) = result {
                    // Our end closed: the child exits without running anything.
                    drop(ours);
                    let _ = nix::sys::wait::waitpid(child, None);
                    return Err(e.into());
                }
            }
            Ok(Spawned {
                child,
                report: read,
            })
        }
        Err(e)
            if flags != 0
                && matches!(
                    e.errno,
                    Errno::EPERM | Errno::ENOSPC | Errno::EINVAL | Errno::EUSERS | Errno::EACCES
                ) =>
        {
            Err(SpawnError::Namespaces(e))
        }
        Err(e) => Err(SpawnError::Sys(e)),
    }
}

//! Resource limits (rlimits). tmpfs size caps are set by the mount module,
//! the wall-clock timeout by the supervisor, and the whole sandbox's memory,
//! processes and CPU by its cgroup (`cgroup`).

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::policy::Limits;

#[derive(Debug, thiserror::Error)]
#[error("setrlimit({resource}, {value}) => {errno}")]
pub struct LimitError {
    resource: &'static str,
    value: u64,
    errno: nix::errno::Errno,
}

/// Lower (never raise) a limit: both soft and hard become min(want, hard).
fn lower(resource: Resource, name: &'static str, want: u64) -> Result<(), LimitError> {
    let (_, hard) = getrlimit(resource).map_err(|errno| LimitError {
        resource: name,
        value: want,
        errno,
    })?;
    let value = want.min(hard);
    setrlimit(resource, value, value).map_err(|errno| LimitError {
        resource: name,
        value,
        errno,
    })
}

/// Apply the profile's limits to the calling process (inherited by the
/// command). `nproc`: also RLIMIT_NPROC = the process limit (the plan decides:
/// only where it counts the sandbox's own user namespace).
pub fn apply(limits: &Limits, nproc: bool) -> Result<(), LimitError> {
    // No core dumps: a crashing tool must not write its memory (and any secret
    // it held) into the workspace.
    lower(Resource::RLIMIT_CORE, "RLIMIT_CORE", 0)?;
    lower(Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE", limits.open_files)?;
    lower(Resource::RLIMIT_FSIZE, "RLIMIT_FSIZE", limits.file_size)?;
    if let (Some(n), true) = (limits.processes, nproc) {
        lower(Resource::RLIMIT_NPROC, "RLIMIT_NPROC", n)?;
    }
    Ok(())
}

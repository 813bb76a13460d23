//! Capabilities and no_new_privs: the command keeps no privilege at all.

use caps::CapSet;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot clear the {set} capability set: {source}")]
    Caps {
        set: &'static str,
        source: caps::errors::CapsError,
    },
    #[error("prctl(PR_SET_NO_NEW_PRIVS) => {0}")]
    NoNewPrivs(nix::errno::Errno),
}

/// Clear the bounding, ambient, inheritable, effective and permitted sets, then
/// set no_new_privs. The bounding set goes first: dropping it needs
/// CAP_SETPCAP, which the later steps remove.
pub fn drop_all() -> Result<(), PrivilegeError> {
    for (set, name) in [
        (CapSet::Bounding, "bounding"),
        (CapSet::Ambient, "ambient"),
        (CapSet::Inheritable, "inheritable"),
        (CapSet::Effective, "effective"),
        (CapSet::Permitted, "permitted"),
    ] {
        if let Err(source) = caps::clear(None, set) {
            // Without namespaces (container tier) an unprivileged caller cannot
            // drop the bounding set (CAP_SETPCAP). With no capability permitted
            // and no_new_privs set below, execve cannot gain any, so the
            // bounding set has nothing left to bound.
            let nothing_held = caps::read(None, CapSet::Permitted).is_ok_and(|p| p.is_empty());
            if matches!(set, CapSet::Bounding) && nothing_held {
                tracing::debug!(%source, "bounding set kept: no capability held");
                continue;
            }
            return Err(PrivilegeError::Caps { set: name, source });
        }
    }
    nix::sys::prctl::set_no_new_privs().map_err(PrivilegeError::NoNewPrivs)
}

/// For a process that never executes another program (the sandbox's init once the
/// command is forked): clear the sets it holds (effective, permitted, inheritable; the
/// kernel then clears the ambient set, a subset of both) and set no_new_privs. The bounding set is left: it only limits
/// what an `execve` could gain, and dropping it costs one prctl per capability.
pub fn drop_held() -> Result<(), PrivilegeError> {
    for (set, name) in [
        (CapSet::Inheritable, "inheritable"),
        (CapSet::Effective, "effective"),
        (CapSet::Permitted, "permitted"),
    ] {
        caps::clear(None, set).map_err(|source| PrivilegeError::Caps { set: name, source })?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(PrivilegeError::NoNewPrivs)
}

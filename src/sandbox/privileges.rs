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
        // Without CAP_SETPCAP (an unprivileged caller in the container tier:
        // no user namespace) the bounding set cannot be cleared, and need not
        // be: it only limits what execve can grant, and under no_new_privs
        // execve grants nothing.
        if matches!(set, CapSet::Bounding)
            && !caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP)
                .unwrap_or(true)
        {
            continue;
        }
        caps::clear(None, set).map_err(|source| PrivilegeError::Caps { set: name, source })?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(PrivilegeError::NoNewPrivs)
}

//! shellcage: run one command inside a Linux sandbox built from kernel mechanisms.
//!
//! The data flow (see README "Architecture"): argv → [`cli`] →
//! [`request::Request`] (the profile's layers and the command line's, merged
//! by [`profile`] into a [`policy::Policy`]) → [`plan::Plan`] (with the
//! [`probe`]'s kernel features) → [`sandbox::SandboxSpec`] (described on the
//! host) → spawn, applied in the sandbox → [`supervise`], driven by [`launch`].

pub mod apparmor;
pub mod audit;
pub mod claude;
pub mod cli;
pub mod doctor;
pub mod entrypoint;
pub mod explain;
pub mod git;
pub mod launch;
pub mod net;
pub mod notice;
pub mod overlay;
pub mod plan;
pub mod policy;
pub mod probe;
pub mod profile;
pub mod request;
pub mod sandbox;
pub mod say;
pub mod session;
pub mod supervise;
pub mod sys;

#[cfg(test)]
mod layering;

//! shellcage: run one command inside a Linux sandbox built from kernel mechanisms.
//!
//! The data flow (see README "Architecture"): argv → [`cli`] → [`profile`] →
//! [`policy::Policy`] → [`probe`] → [`plan::Plan`] → [`sandbox`] (apply) →
//! [`supervise`], driven by [`launch`].

pub mod audit;
pub mod claude;
pub mod cli;
pub mod doctor;
pub mod entrypoint;
pub mod launch;
pub mod plan;
pub mod policy;
pub mod probe;
pub mod profile;
pub mod sandbox;
pub mod supervise;
pub mod sys;

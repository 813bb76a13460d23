//! Applying a `Plan`: one module per kernel mechanism.

pub mod landlock;
pub mod seccomp;

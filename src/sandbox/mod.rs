//! Describing and applying a `Plan`: one module per kernel mechanism, the
//! description of one sandbox (`spec`, on the host), and the two processes
//! that apply it (`spawn` in the supervisor, `init` inside the sandbox), which
//! talk over the report pipe (`report`).

pub mod cgroup;
pub mod configs;
pub mod container_tier;
pub mod credential;
pub mod devices;
pub mod env;
pub mod envrules;
pub mod home;
pub mod init;
pub mod landlock;
pub mod limits;
pub mod lookups;
pub mod mount;
pub mod net;
pub mod privileges;
pub mod proxy;
pub mod pyenv;
pub mod report;
pub mod rootview;
pub mod sanitize;
pub mod seccomp;
pub mod spawn;
pub mod spec;
pub mod terminal;

pub use spec::{
    Command, CommandSpec, DescribeError, SandboxSpec, command_env, describe, describe_with,
};

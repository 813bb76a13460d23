//! The guarantees of the `dev` profile and the command line, one module per
//! guarantee (the README's numbered list): each test runs the real shellcage
//! binary, one process per case, and asserts the kernel's answer and the
//! host-side effect. A test that needs the namespaces starts with
//! `needs_sandbox!()` (a failure, not a skip, under
//! `SHELLCAGE_TEST_REQUIRE_KERNEL`).

#[macro_use]
mod common;

#[path = "guarantees/cgroups.rs"]
mod cgroups;
#[path = "guarantees/cli.rs"]
mod cli;
#[path = "guarantees/env.rs"]
mod env;
#[path = "guarantees/fds.rs"]
mod fds;
#[path = "guarantees/fs.rs"]
mod fs;
#[path = "guarantees/limits.rs"]
mod limits;
#[path = "guarantees/net.rs"]
mod net;
#[path = "guarantees/privilege.rs"]
mod privilege;
#[path = "guarantees/process.rs"]
mod process;
#[path = "guarantees/protect.rs"]
mod protect;
#[path = "guarantees/rootview.rs"]
mod rootview;
#[path = "guarantees/secrets.rs"]
mod secrets;
#[path = "guarantees/shell.rs"]
mod shell;
#[path = "guarantees/work.rs"]
mod work;

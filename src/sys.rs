//! The only home of `unsafe` and raw syscalls.

//! seccomp filter (owned by the seccomp work item).

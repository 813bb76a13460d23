//! TOML profiles → `Policy` (owned by the profile work item).

//! Landlock rules (owned by the landlock work item).

//! Running git on the host for the layer: never a hook, never fsmonitor, no
//! pager, no prompt, and no repository location inherited from the caller's
//! environment (the workspace's own repository is used).

use std::path::Path;
use std::process::{Command, Stdio};

/// Variables that would point git at another repository, index or object store.
const LOCATION_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_QUARANTINE_PATH",
    "GIT_REPLACE_REF_BASE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_GRAFT_FILE",
    "GIT_SHALLOW_FILE",
    "GIT_EXTERNAL_DIFF",
    "GIT_EXEC_PATH",
];

/// `git -C workspace` with hooks and fsmonitor off, no pager, no prompt.
pub fn command(workspace: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("--no-pager")
        .arg("-C")
        .arg(workspace)
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.untrackedCache=false",
            "-c",
            "diff.external=",
            "-c",
            "commit.gpgSign=false",
        ])
        .env("GIT_PAGER", "cat")
        .env("PAGER", "cat")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_EDITOR", "true")
        .stdin(Stdio::null());
    for v in LOCATION_VARS {
        c.env_remove(v);
    }
    c
}

//! The copy-on-write workspace layer, host side: where layers live
//! ([`store`]), reading one (`scan`, `changes`), and bringing it to the host
//! (`apply`, `branch`) or dropping it (`Layer::discard`).
//!
//! A layer is an overlayfs upper directory (plus its workdir and metadata)
//! kept under the user's state directory, never inside the workspace. The
//! sandbox mounts it over the host workspace (`sandbox::mount`, while
//! [`hold`] keeps the layer locked); everything here reads the upper
//! directory directly on the host, and treats its contents as written by a
//! hostile command: names are bytes, links are not followed, odd node types
//! are reported and never applied.

pub mod apply;
pub mod branch;
pub mod changes;
pub mod cmd;
pub mod fs;
pub mod git;
pub mod hold;
pub mod rules;
pub mod scan;
pub mod store;

pub use apply::{ApplyOptions, ApplyReport, GitConfigMerge};
pub use store::{DEFAULT_LAYER, Layer, LayerProfile, Store};

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How a session that holds a layer (mounted between its commands) is asked to let it
/// go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Only when no command runs in it (`apply`, `discard`: they refuse a layer in use).
    IfIdle,
    /// Once its running commands have ended (a cold command on the layer, which waits).
    AfterCommands,
}

/// Asks the sessions holding the layer at a directory to let it go; returns how many
/// were asked. Sessions are built above this module, so `main` sets it
/// ([`on_release`]); unset, no session is asked (and a held layer stays busy).
pub type ReleaseHook = fn(&Path, Release) -> usize;

static RELEASE: OnceLock<ReleaseHook> = OnceLock::new();

/// Set how sessions are asked to let a layer go (once, at start).
pub fn on_release(hook: ReleaseHook) {
    let _ = RELEASE.set(hook);
}

fn release(dir: &Path, how: Release) -> usize {
    RELEASE.get().map_or(0, |hook| hook(dir, how))
}

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("{what} {}: {}", path.display(), lower(source))]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "no layer {name:?} for workspace {} (hint: `shellcage changes --list` shows this workspace's layers)",
        workspace.display()
    )]
    NoLayer { name: String, workspace: PathBuf },
    #[error(
        "layer {name:?} is in use by a running sandbox or another apply (hint: wait until it finishes)"
    )]
    Busy { name: String },
    #[error(
        "refusing to apply: {} changed on the host since the layer began:\n  {}\n(hint: review with `shellcage changes --diff`; `--force` overwrites them)",
        plural(.0.len(), "path"),
        .0.join("\n  ")
    )]
    Conflicts(Vec<String>),
    #[error("{0}")]
    Git(String),
}

impl OverlayError {
    pub fn io(what: &'static str, path: &Path, source: std::io::Error) -> OverlayError {
        OverlayError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

fn lower(e: &std::io::Error) -> String {
    let s = e.to_string();
    // "Permission denied (os error 13)" → "permission denied (os error 13)"
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

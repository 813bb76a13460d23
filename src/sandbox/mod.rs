//! Applying a `Plan`: one module per kernel mechanism, and the two processes
//! that apply them (`spawn` in the supervisor, `init` inside the sandbox).

pub mod contained;
pub mod env;
pub mod init;
pub mod landlock;
pub mod limits;
pub mod mount;
pub mod privileges;
pub mod seccomp;
pub mod spawn;

use std::ffi::CString;
use std::path::PathBuf;

use crate::plan::Plan;
use crate::policy::Limits;

/// Everything the sandbox processes need, computed by the supervisor before
/// any namespace exists (so nothing on the child side reads host state).
pub struct Launch {
    pub plan: Plan,
    /// The mount plan (namespaces tier); `None` in the container tier.
    pub mounts: Option<mount::MountPlan>,
    /// The command; `argv[0]` is looked up in the sandbox's PATH.
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// The sandbox's PATH, for the lookup of `argv[0]`.
    pub path: String,
    /// Working directory inside the sandbox.
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub hostname: &'static str,
    pub seccomp: seccompiler::BpfProgram,
    pub landlock: landlock::LandlockSpec,
    pub limits: Limits,
    /// An interactive shell on a terminal: keep the controlling terminal
    /// (foreground process group) instead of `setsid`.
    pub interactive: bool,
    /// When set (`-v`), the sandbox reports phase timestamps (µs since this
    /// instant) over the report pipe as `T <phase> <micros>` lines.
    pub timing: Option<std::time::Instant>,
    /// Container tier: the per-run directory holding `$HOME` and `$TMPDIR`,
    /// removed after the run.
    pub run_dir: Option<contained::RunDir>,
}

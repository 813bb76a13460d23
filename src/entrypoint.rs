//! `shellcage entrypoint [--profile P] [--workspace W] [--tier T] -- CMD…`:
//! the devcontainer entrypoint.
//!
//! It checks once which tier works here, prints one line saying what is
//! enforced, and then *replaces itself* with CMD (the agent), outside the
//! sandbox, with:
//!
//! - `SHELL` = a `shellcage-sh` symlink, so every shell command the agent runs
//!   goes through `shellcage sh -c …` into the sandbox;
//! - `SHELLCAGE_PROFILE`, `SHELLCAGE_WORKSPACE`: the profile and workspace those
//!   commands use;
//! - `SHELLCAGE_TIER`: the tier found (`full` when namespaces work, so a later
//!   change fails closed; `container` otherwise, so each command does not retry
//!   a clone that cannot work and print the fallback line again).
//!
//! The `shellcage-sh` symlink: used where it exists next to the binary (the
//! recommended install, see examples/devcontainer/Dockerfile); else created
//! there when that directory is writable; else created in a private runtime
//! directory (`$XDG_RUNTIME_DIR/shellcage`, or `/tmp/shellcage-UID`, mode 0700
//! and owned by us, checked).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

use crate::cli::RunOpts;
use crate::plan::{self, Strength};
use crate::policy::TierChoice;
use crate::probe::{self, Features};
use crate::request::Request;

/// The one line printed before CMD starts.
pub fn summary(profile: &str, plan: &plan::Plan) -> String {
    let names = |want: Strength| {
        plan.enforcement
            .iter()
            .filter(|e| e.status == want)
            .map(|e| e.guarantee.id())
            .collect::<Vec<_>>()
    };
    let tier = plan.tier.name();
    let mut line =
        format!("shellcage: agent shell commands run in the {tier} tier (profile {profile})");
    for (label, st) in [
        ("not enforced", Strength::NotEnforced),
        ("partial", Strength::Partial),
        ("waived", Strength::Waived),
    ] {
        let n = names(st);
        if !n.is_empty() {
            line.push_str(&format!("; {label}: {}", n.join(", ")));
        }
    }
    line.push_str("; details: shellcage doctor");
    line
}

fn points_to(link: &Path, exe: &Path) -> bool {
    std::fs::canonicalize(link).is_ok_and(|t| t == exe)
}

/// Find or create a `shellcage-sh` that runs this binary.
pub fn shell_link(exe: &Path) -> anyhow::Result<PathBuf> {
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("cannot find the directory of {}", exe.display()))?;
    let beside = dir.join("shellcage-sh");
    if points_to(&beside, exe) {
        return Ok(beside);
    }
    if std::fs::symlink_metadata(&beside).is_err()
        && std::os::unix::fs::symlink(exe, &beside).is_ok()
    {
        return Ok(beside);
    }
    let runtime = crate::notice::runtime_dir().map_err(|e| {
        anyhow!(
            "{e} (hint: remove it, or install a shellcage-sh symlink next to {})",
            exe.display()
        )
    })?;
    let link = runtime.join("shellcage-sh");
    if points_to(&link, exe) {
        return Ok(link);
    }
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(exe, &link)
        .with_context(|| format!("cannot create the symlink {}", link.display()))?;
    Ok(link)
}

/// Check the tier, print the summary line, then exec `command`. Returns only
/// on failure (the exit code).
pub fn run(
    profile: Option<String>,
    workspace: Option<PathBuf>,
    tier: TierChoice,
    command: &[String],
) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir()?;
    let opts = RunOpts {
        profile,
        workspace,
        tier: Some(tier),
        ..RunOpts::default()
    };
    let req = Request::new(&opts, &cwd)?;
    let policy = &req.policy;
    let mut features = Features::detect();
    if policy.tier != TierChoice::Container {
        features = features.with_trial(probe::userns_trial());
        let euid = nix::unistd::geteuid().as_raw();
        if let Some(u) = probe::userns_restricted(std::path::Path::new("/"), euid) {
            features.userns = u;
        }
    }
    features.cgroup_limits = crate::sandbox::cgroup::plan_for(&policy.limits).support();
    let plan = plan::plan(policy, &features)?;
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("cannot find the shellcage binary")?;
    let sh = shell_link(&exe)?;
    crate::say!("{}", summary(&policy.profile, &plan));
    let err = std::process::Command::new(&command[0])
        .args(&command[1..])
        .env("SHELL", &sh)
        .env("SHELLCAGE_PROFILE", &req.profile_arg)
        .env("SHELLCAGE_WORKSPACE", &policy.workspace)
        .env("SHELLCAGE_TIER", plan.tier.choice().name())
        .exec();
    crate::say!(
        "shellcage: entrypoint: cannot execute {}: {err}",
        command[0]
    );
    Ok(if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

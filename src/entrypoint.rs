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

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};

use crate::cli::{RunOpts, TierArg};
use crate::launch;
use crate::plan::{self, Status, Tier};
use crate::policy::TierChoice;
use crate::probe::{self, Features};

/// The one line printed before CMD starts.
pub fn summary(profile: &str, plan: &plan::Plan) -> String {
    let names = |want: Status| {
        plan.enforcement
            .iter()
            .filter(|e| e.status == want)
            .filter_map(|e| serde_json::to_value(e.guarantee).ok())
            .filter_map(|v| v.as_str().map(String::from))
            .collect::<Vec<_>>()
    };
    let tier = match plan.tier {
        Tier::Namespaces => "namespaces",
        Tier::Container => "container",
    };
    let mut line =
        format!("shellcage: agent shell commands run in the {tier} tier (profile {profile})");
    for (label, st) in [
        ("not enforced", Status::NotEnforced),
        ("partial", Status::Partial),
        ("waived", Status::Waived),
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
    let uid = nix::unistd::getuid().as_raw();
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .map(|p| p.join("shellcage"))
        .unwrap_or_else(|| std::env::temp_dir().join(format!("shellcage-{uid}")));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&runtime);
    let meta = std::fs::symlink_metadata(&runtime)
        .with_context(|| format!("cannot create {}", runtime.display()))?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        bail!(
            "{}: not a private directory of uid {uid} (hint: remove it, or install a shellcage-sh symlink next to {})",
            runtime.display(),
            exe.display()
        );
    }
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
    tier: TierArg,
    command: &[String],
) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir()?;
    let opts = RunOpts {
        profile: profile.clone(),
        workspace,
        tier: Some(tier),
        ..RunOpts::default()
    };
    let policy = launch::build_policy(&opts, &cwd)?;
    let features = Features::detect();
    let userns_ok = policy.tier != TierChoice::Container && probe::userns_trial().is_ok();
    let plan = plan::plan(&policy, &features, userns_ok)?;
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("cannot find the shellcage binary")?;
    let sh = shell_link(&exe)?;
    let profile_arg = profile
        .or_else(|| {
            std::env::var("SHELLCAGE_PROFILE")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .unwrap_or_else(|| "dev".into());
    eprintln!("{}", summary(&policy.profile, &plan));
    let err = std::process::Command::new(&command[0])
        .args(&command[1..])
        .env("SHELL", &sh)
        .env("SHELLCAGE_PROFILE", &profile_arg)
        .env("SHELLCAGE_WORKSPACE", &policy.workspace)
        .env(
            "SHELLCAGE_TIER",
            match plan.tier {
                Tier::Namespaces => "full",
                Tier::Container => "container",
            },
        )
        .exec();
    eprintln!(
        "shellcage: entrypoint: cannot execute {}: {err}",
        command[0]
    );
    Ok(if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

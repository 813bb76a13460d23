//! The raw profile schema: what a TOML file may contain, before validation.
//!
//! Every struct denies unknown keys, so a misspelt key is an error with its line
//! instead of a silently ignored rule. Strings that become paths, names, sizes or
//! durations are kept with their span so validation errors can name the line.
//! The enums are `policy`'s own (an unknown variant is a serde error naming
//! the choices). Nothing else here is trusted; `validate.rs` turns it into a
//! `Layer`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::policy::{HomeMode, NetMode, Requirement, SessionMode, TierChoice, WorkspaceMode};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub version: Spanned<i64>,
    pub extends: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub tier: Option<TierChoice>,
    pub session: Option<SessionMode>,
    pub session_idle: Option<Spanned<String>>,
    #[serde(default)]
    pub filesystem: RawFilesystem,
    #[serde(default)]
    pub network: RawNetwork,
    #[serde(default)]
    pub landlock: RawLandlock,
    #[serde(default)]
    pub devices: RawDevices,
    #[serde(default)]
    pub env: RawEnv,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub shell: RawShell,
    #[serde(default)]
    pub report: RawReport,
    #[serde(default)]
    pub audit: RawAudit,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilesystem {
    pub workspace: Option<WorkspaceMode>,
    pub home: Option<HomeMode>,
    #[serde(default)]
    pub read: Vec<Spanned<String>>,
    #[serde(default)]
    pub write: Vec<Spanned<String>>,
    #[serde(default)]
    pub hide: Vec<Spanned<String>>,
    #[serde(default)]
    pub protect: Vec<Spanned<String>>,
    #[serde(default)]
    pub env_files: RawEnvFiles,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvFiles {
    pub enabled: Option<bool>,
    pub max_depth: Option<Spanned<u64>>,
    pub max_dirs: Option<Spanned<u64>>,
    #[serde(default)]
    pub skip_dirs: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub mode: Option<NetMode>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_private: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLandlock {
    pub mode: Option<Requirement>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevices {
    pub gpu: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnv {
    #[serde(default)]
    pub pass: Vec<Spanned<String>>,
    #[serde(default)]
    pub set: BTreeMap<String, Spanned<String>>,
    pub tools: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub timeout: Option<Spanned<String>>,
    pub open_files: Option<Spanned<u64>>,
    pub processes: Option<Spanned<u64>>,
    pub memory: Option<Spanned<String>>,
    pub cpu: Option<Spanned<String>>,
    pub mode: Option<Requirement>,
    pub file_size: Option<Spanned<String>>,
    pub tmp_size: Option<Spanned<String>>,
    pub home_size: Option<Spanned<String>>,
    pub kept_home_size: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShell {
    pub candidates: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReport {
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub file: Option<Spanned<String>>,
}

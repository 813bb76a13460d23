//! The policy as the judge reads it: which paths are visible and how, what is
//! hidden or protected, the network mode, and where each rule is written.
//!
//! It names paths and never contents (no environment values, no file data),
//! so it can be shown inside the sandbox as a read-only file
//! ([`POLICY_FILE`]): `shellcage explain` reads it there, where the profile
//! files themselves are not visible.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::RunOpts;
use crate::policy::{Access, NetMode, Policy, TierChoice};

use super::origin::{Locator, Place};

/// Where the sandbox shows the policy in force (bound read-only by the mount
/// plan; see `policy_file_json`).
pub const POLICY_FILE: &str = "/run/shellcage/policy.json";
/// Format version of the policy file.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewAccess {
    Read,
    Write,
}

impl From<Access> for ViewAccess {
    fn from(a: Access) -> Self {
        match a {
            Access::Read => ViewAccess::Read,
            Access::Write => ViewAccess::Write,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewNet {
    None,
    Loopback,
    Proxy,
    Host,
}

/// Where a rule comes from: the profile entry (`key`, `raw` text, `at` =
/// file:line), or the command line (`key` = `--write` …, `at` absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSource {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub at: Option<String>,
}

impl RuleSource {
    fn place(p: Place) -> RuleSource {
        RuleSource {
            key: p.key,
            raw: Some(p.raw),
            at: Some(p.at),
        }
    }
    fn key(k: &str) -> RuleSource {
        RuleSource {
            key: k.into(),
            raw: None,
            at: None,
        }
    }
    /// `filesystem.hide "~/.ssh" (profiles/dev.toml (built-in):141)`.
    pub fn describe(&self) -> String {
        let mut s = self.key.clone();
        if let Some(raw) = &self.raw {
            s.push_str(&format!(" {raw:?}"));
        }
        if let Some(at) = &self.at {
            s.push_str(&format!(" ({at})"));
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewPath {
    pub path: PathBuf,
    pub access: ViewAccess,
    /// Skipped when missing on the host (profile entries); required otherwise.
    pub optional: bool,
    pub from: RuleSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewHide {
    /// Absolute; `*` only in the last component.
    pub pattern: PathBuf,
    pub from: RuleSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewProtect {
    /// Workspace-relative.
    pub path: PathBuf,
    pub from: RuleSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewEnvFiles {
    pub enabled: bool,
    pub max_depth: usize,
    pub skip_dirs: Vec<String>,
    pub allow_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewNetwork {
    pub mode: ViewNet,
    pub from: RuleSource,
    /// Hosts the proxy lets through (`network.allow`, `--allow-host`; proxy mode only).
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// `network.deny` (proxy mode only).
    #[serde(default)]
    pub deny_hosts: Vec<String>,
    /// `network.allow_private` (proxy mode only).
    #[serde(default)]
    pub allow_private: Vec<String>,
}

/// The judge's input; also the content of [`POLICY_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    pub format: u32,
    pub profile: String,
    pub source: String,
    /// `full`, `auto` or `container` as chosen (the judge describes the
    /// namespaces tier; the container tier enforces less, see README).
    pub tier: String,
    pub workspace: PathBuf,
    pub workspace_access: ViewAccess,
    /// An overlay workspace: the layer its writes go to (the host workspace
    /// changes only by `shellcage apply`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_layer: Option<String>,
    /// The host home: a private tmpfs inside.
    pub home: PathBuf,
    pub paths: Vec<ViewPath>,
    pub hide: Vec<ViewHide>,
    pub protect: Vec<ViewProtect>,
    pub env_files: ViewEnvFiles,
    pub network: ViewNetwork,
    /// Device nodes of the host bound into the sandbox's own /dev.
    pub dev_nodes: Vec<String>,
    /// The host's GPU nodes bound there too (`[devices] gpu`), and the
    /// links to them made there, below /dev (`dri/renderD128`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_nodes: Vec<String>,
}

impl PolicyView {
    /// Build the view of `policy`; `cli` tells which rules came from the
    /// command line; `dev_nodes` are the sandbox's device nodes.
    pub fn new(policy: &Policy, cli: &RunOpts, dev_nodes: &[&str]) -> PolicyView {
        let loc = Locator::new(&policy.profile_chain.0, &policy.home, &policy.workspace);
        let paths = policy
            .paths
            .iter()
            .map(|r| {
                let flag = match r.access {
                    Access::Read => "--read",
                    Access::Write => "--write",
                };
                let key = match r.access {
                    Access::Read => "filesystem.read",
                    Access::Write => "filesystem.write",
                };
                let from = if !r.optional {
                    RuleSource::key(flag)
                } else {
                    loc.path_entry(key, &r.path)
                        .or_else(|| loc.path_entry("filesystem.read", &r.path))
                        .map(RuleSource::place)
                        .unwrap_or_else(|| RuleSource::key(key))
                };
                ViewPath {
                    path: r.path.clone(),
                    access: r.access.into(),
                    optional: r.optional,
                    from,
                }
            })
            .collect();
        let mut hide: Vec<ViewHide> = policy
            .hide
            .iter()
            .map(|h| ViewHide {
                pattern: h.pattern.clone(),
                from: loc
                    .path_entry("filesystem.hide", &h.pattern)
                    .map(RuleSource::place)
                    .unwrap_or_else(|| RuleSource::key("filesystem.hide")),
            })
            .collect();
        if let Some(audit) = &policy.audit {
            hide.push(ViewHide {
                pattern: audit.clone(),
                from: RuleSource::key("audit log (never visible inside)"),
            });
        }
        let protect = policy
            .protect
            .iter()
            .map(|p| ViewProtect {
                path: p.clone(),
                from: loc
                    .protect_entry(p)
                    .map(RuleSource::place)
                    .unwrap_or_else(|| RuleSource::key("filesystem.protect")),
            })
            .collect();
        let mode = match policy.network {
            NetMode::None => ViewNet::None,
            NetMode::Loopback => ViewNet::Loopback,
            NetMode::Proxy => ViewNet::Proxy,
            NetMode::Host => ViewNet::Host,
        };
        let proxy = policy.network == NetMode::Proxy;
        let egress = |list: &Vec<String>| if proxy { list.clone() } else { Vec::new() };
        let net_from = if cli.net.is_some() {
            RuleSource::key("--net")
        } else if proxy && !cli.allow_host.is_empty() {
            RuleSource::key("--allow-host")
        } else {
            loc.scalar("network.mode")
                .map(RuleSource::place)
                .unwrap_or_else(|| RuleSource::key("network.mode"))
        };
        PolicyView {
            format: FORMAT,
            profile: policy.profile.clone(),
            source: policy.source.clone(),
            tier: match policy.tier {
                TierChoice::Full => "full",
                TierChoice::Auto => "auto",
                TierChoice::Container => "container",
            }
            .into(),
            workspace: policy.workspace.clone(),
            workspace_access: policy.workspace_access.into(),
            workspace_layer: policy.workspace_layer.clone(),
            home: policy.home.clone(),
            paths,
            hide,
            protect,
            env_files: ViewEnvFiles {
                enabled: policy.env_files.enabled,
                max_depth: policy.env_files.max_depth,
                skip_dirs: policy.env_files.skip_dirs.clone(),
                allow_names: policy.env_files.allow_names.clone(),
            },
            network: ViewNetwork {
                mode,
                from: net_from,
                allow_hosts: egress(&policy.egress.allow),
                deny_hosts: egress(&policy.egress.deny),
                allow_private: egress(&policy.egress.allow_private),
            },
            dev_nodes: dev_nodes.iter().map(|s| s.to_string()).collect(),
            gpu_nodes: Vec::new(),
        }
    }

    /// The policy file's content.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Read a policy file (inside the sandbox).
    pub fn read(path: &Path) -> Result<PolicyView, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read policy file {}: {e}", path.display()))?;
        let view: PolicyView = serde_json::from_str(&text)
            .map_err(|e| format!("policy file {} is not valid: {e}", path.display()))?;
        if view.format != FORMAT {
            return Err(format!(
                "policy file {} has format {} (this shellcage reads {FORMAT})",
                path.display(),
                view.format
            ));
        }
        Ok(view)
    }
}

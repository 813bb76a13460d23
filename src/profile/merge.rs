//! The layers (the `extends` chain, root first, then the command line) → one
//! `Policy`.
//!
//! Rules (documented for users in `profiles/dev.toml`):
//! - scalars: the later layer's value wins (a child over its parent, the
//!   command line over the profile); a required scalar must be set by the
//!   profile chain itself;
//! - lists (`read`, `write`, `hide`, `protect`, `skip_dirs`, `allow`, `env.pass`):
//!   the child's entries are appended, duplicates dropped; nothing can be removed,
//!   so a child cannot un-hide a secret or un-protect a path;
//! - `env.set`: merged by name, the child's value wins;
//! - `shell.candidates`: the child's list replaces the parent's (an ordered preference);
//! - the command line's `--read`/`--write` paths are appended after the
//!   profile's, required to exist; the mount layer takes the last rule for a
//!   path.
//!
//! Then the checks that need every layer: every required scalar is set
//! somewhere, and no visible path is hidden (hide always wins; saying so beats
//! a rule that silently does nothing).
//!
//! A layer that may only tighten (a managed floor) would be one more
//! [`LayerKind`], merged last with its own scalar rule (the stricter value
//! wins) instead of "the later wins".

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::ProfileError;
use super::validate::{Entry, Layer, LayerKind};
use crate::policy::{
    Access, DEFAULT_LAYER, Devices, Egress, EnvFileScan, EnvPolicy, HideMatcher, HideRule,
    HomeMode, Limits, NetMode, PathRule, Policy, ProfileChain, Publish, Requirement, WorkspaceMode,
};

/// Who the policy is for and where it came from; filled in by `load`.
pub(super) struct Identity {
    pub profile: String,
    pub source: String,
    pub profile_chain: ProfileChain,
    pub home: PathBuf,
    pub workspace: PathBuf,
}

/// `[limits] kept_home_size` when no profile sets it.
pub const DEFAULT_KEPT_HOME_SIZE: u64 = 4 << 30;

/// The layers being merged, and the profile that must set required keys.
struct Layers<'a> {
    all: &'a [Layer],
    root_file: &'a str,
}

impl Layers<'_> {
    /// The value of the last layer that sets it.
    fn last<T: Clone>(&self, get: impl Fn(&Layer) -> Option<T>) -> Option<T> {
        self.all.iter().rev().find_map(get)
    }

    /// Like [`Layers::last`], for a key the profile chain must set.
    fn required<T: Clone>(
        &self,
        key: &str,
        get: impl Fn(&Layer) -> Option<T>,
    ) -> Result<T, ProfileError> {
        let in_chain = self
            .all
            .iter()
            .any(|l| l.kind == LayerKind::Profile && get(l).is_some());
        match self.last(get) {
            Some(v) if in_chain => Ok(v),
            _ => Err(ProfileError::Missing {
                file: self.root_file.to_owned(),
                key: key.to_owned(),
            }),
        }
    }

    /// Every layer's entries, root first, without duplicates.
    fn appended<T: Clone + PartialEq>(&self, get: impl Fn(&Layer) -> &[T]) -> Vec<T> {
        let mut out: Vec<T> = Vec::new();
        for item in self.all.iter().flat_map(get) {
            if !out.contains(item) {
                out.push(item.clone());
            }
        }
        out
    }

    /// Like `appended`, comparing paths as bytes: `PathBuf`'s `==` walks
    /// components, which dominated profile loading. Paths here are clean, so
    /// byte equality is path equality.
    fn appended_paths<T: Clone>(
        &self,
        get: impl Fn(&Layer) -> Vec<T>,
        bytes: fn(&T) -> &[u8],
    ) -> Vec<T> {
        let mut out: Vec<T> = Vec::new();
        for item in self.all.iter().flat_map(get) {
            if !out.iter().any(|o| bytes(o) == bytes(&item)) {
                out.push(item);
            }
        }
        out
    }
}

#[allow(clippy::ptr_arg)] // must be fn(&T) with T = PathBuf
fn path_bytes(p: &PathBuf) -> &[u8] {
    p.as_os_str().as_encoded_bytes()
}

fn hide_bytes(h: &HideRule) -> &[u8] {
    h.pattern.as_os_str().as_encoded_bytes()
}

/// Merges `layers` (root first) and builds the policy. `root_file` is the
/// profile without `extends`, named when a required key is missing.
pub(super) fn build(
    layers: &[Layer],
    root_file: &str,
    id: Identity,
) -> Result<Policy, ProfileError> {
    let l = Layers {
        all: layers,
        root_file,
    };
    let tier = l.required("tier", |l| l.tier)?;
    let workspace_mode = l.required("filesystem.workspace", |l| l.workspace)?;
    let workspace_layer = (workspace_mode == WorkspaceMode::Overlay).then(|| {
        l.last(|l| l.layer_name.clone())
            .unwrap_or_else(|| DEFAULT_LAYER.to_string())
    });
    let network = l.required("network.mode", |l| l.network)?;
    let (network, egress, publish) = network_rules(&l, network)?;
    let landlock = l.required("landlock.mode", |l| l.landlock)?;
    let shell = l.required("shell.candidates", |l| l.shell.clone())?;
    let env_files = env_files(&l)?;
    let env = env(&l);
    let limits = limits(&l)?;
    let paths = paths(layers)?;
    let hide = l.appended_paths(
        |l| {
            l.hide
                .iter()
                .map(|e| HideRule {
                    pattern: e.value.clone(),
                })
                .collect()
        },
        hide_bytes,
    );
    Ok(Policy {
        profile: id.profile,
        source: id.source,
        profile_chain: id.profile_chain,
        tier,
        workspace: id.workspace,
        workspace_access: workspace_mode.access(),
        workspace_layer,
        home: id.home,
        home_mode: l.last(|l| l.home).unwrap_or(HomeMode::Fresh),
        paths,
        hide,
        protect: l.appended_paths(|l| l.protect.clone(), path_bytes),
        env_files,
        network,
        egress,
        publish,
        landlock,
        devices: Devices {
            // Optional, off unless a layer turns it on; the last layer wins.
            gpu: l.last(|l| l.gpu).unwrap_or(false),
            gpu_from_command_line: l
                .all
                .iter()
                .any(|l| l.kind == LayerKind::CommandLine && l.gpu == Some(true)),
        },
        env,
        limits,
        shell,
        report: l.last(|l| l.report).unwrap_or(false),
        audit: l.last(|l| l.audit.clone()),
        // Optional: cold unless a layer asks for sessions; the last layer wins.
        session: l
            .last(|l| l.session)
            .unwrap_or(crate::policy::SessionMode::Off),
        session_idle: l
            .last(|l| l.session_idle)
            .unwrap_or(std::time::Duration::from_secs(600)),
    })
}

/// `[filesystem.env_files]`: the bounds are required only when the scan is on.
fn env_files(l: &Layers<'_>) -> Result<EnvFileScan, ProfileError> {
    let enabled = l.required("filesystem.env_files.enabled", |l| l.env_files_enabled)?;
    let (max_depth, max_dirs) = if enabled {
        (
            l.required("filesystem.env_files.max_depth", |l| l.env_files_max_depth)?,
            l.required("filesystem.env_files.max_dirs", |l| l.env_files_max_dirs)?,
        )
    } else {
        (
            l.last(|l| l.env_files_max_depth).unwrap_or(0),
            l.last(|l| l.env_files_max_dirs).unwrap_or(0),
        )
    };
    Ok(EnvFileScan {
        enabled,
        max_depth,
        skip_dirs: l.appended(|l| &l.env_files_skip_dirs),
        allow_names: l.appended(|l| &l.env_files_allow),
        max_dirs,
    })
}

/// `[env]` and `--env`.
fn env(l: &Layers<'_>) -> EnvPolicy {
    let mut set = BTreeMap::new();
    for layer in l.all {
        set.extend(layer.env_set.clone());
    }
    EnvPolicy {
        pass: l.appended(|l| &l.env_pass),
        set,
        tools: l.last(|l| l.env_tools).unwrap_or(true),
        explicit: l.all.iter().flat_map(|l| l.env_explicit.clone()).collect(),
    }
}

/// `[network]`, `--allow-host`, `--publish`: the lists appended (duplicates dropped), and
/// the mode `--allow-host` implies.
///
/// - `--allow-host` switches `none` to `proxy`; with `--net` or a profile mode other than
///   `none` or `proxy` it is an error (it would do nothing);
/// - a profile layer that adds `allow` entries while its mode (its own, else inherited) is
///   not `proxy` is an error naming the entry: such a list would silently do nothing;
/// - `--publish` needs a network namespace: an error with `host`.
fn network_rules(
    l: &Layers<'_>,
    merged: NetMode,
) -> Result<(NetMode, Egress, Vec<Publish>), ProfileError> {
    let cli = l.all.iter().find(|l| l.kind == LayerKind::CommandLine);
    let mut chain_mode = None;
    for layer in l.all.iter().filter(|l| l.kind == LayerKind::Profile) {
        chain_mode = layer.network.or(chain_mode);
        let mode = chain_mode.unwrap_or(NetMode::None);
        if let (Some(first), false) = (layer.net_allow.first(), mode == NetMode::Proxy) {
            return Err(first.origin.invalid(format!(
                "network.allow takes effect only in network mode \"proxy\" (the mode here is \"{}\"; hint: set network.mode = \"proxy\")",
                mode.name()
            )));
        }
    }
    let mut mode = merged;
    if let Some(first) = cli.and_then(|c| c.net_allow.first()) {
        mode = match (cli.and_then(|c| c.network), merged) {
            (Some(NetMode::Proxy), _) | (None, NetMode::None | NetMode::Proxy) => NetMode::Proxy,
            (Some(m), _) => {
                return Err(first.origin.invalid(format!(
                    "needs network mode proxy, not --net {} (hint: drop --net, or use --net proxy)",
                    m.name()
                )));
            }
            (None, m) => {
                return Err(first.origin.invalid(format!(
                    "needs network mode proxy; the profile's mode is {} (hint: add --net proxy)",
                    m.name()
                )));
            }
        };
    }
    let publish: Vec<Publish> = l
        .all
        .iter()
        .flat_map(|l| &l.publish)
        .map(|e| e.value)
        .collect();
    if let (Some(first), NetMode::Host) = (l.all.iter().flat_map(|l| &l.publish).next(), mode) {
        return Err(first.origin.invalid(
            "network mode host shares the host's network: there is nothing to publish (hint: drop --publish, or use another mode)",
        ));
    }
    let strings = |get: fn(&Layer) -> &Vec<Entry<String>>| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in l.all.iter().flat_map(get) {
            if !out.contains(&e.value) {
                out.push(e.value.clone());
            }
        }
        out
    };
    let egress = Egress {
        allow: strings(|l| &l.net_allow),
        deny: strings(|l| &l.net_deny),
        allow_private: strings(|l| &l.net_allow_private),
    };
    Ok((mode, egress, publish))
}

/// `[limits]`, `--timeout`, `--memory`, `--cpu`, `--processes`.
fn limits(l: &Layers<'_>) -> Result<Limits, ProfileError> {
    Ok(Limits {
        timeout: l.last(|l| l.timeout).flatten(),
        open_files: l.required("limits.open_files", |l| l.open_files)?,
        file_size: l.required("limits.file_size", |l| l.file_size)?,
        processes: l.last(|l| l.processes).flatten(),
        memory: l.last(|l| l.memory).flatten(),
        cpu_millis: l.last(|l| l.cpu_millis).flatten(),
        // Unset anywhere: the limits a profile asks for must hold.
        mode: l.last(|l| l.limits_mode).unwrap_or(Requirement::Required),
        from_command_line: l.appended(|l| &l.limits_from_command_line),
        tmp_size: l.required("limits.tmp_size", |l| l.tmp_size)?,
        home_size: l.required("limits.home_size", |l| l.home_size)?,
        kept_home_size: l
            .last(|l| l.kept_home_size)
            .unwrap_or(DEFAULT_KEPT_HOME_SIZE),
    })
}

/// The visible paths. The profile chain's: one rule per path, writable when
/// any layer lists it in `write`, skipped when missing on the host. Then the
/// command line's, in order, each required to exist. No visible path may be
/// hidden by any layer.
fn paths(layers: &[Layer]) -> Result<Vec<PathRule>, ProfileError> {
    // Split each hide pattern once.
    let hide: Vec<(&Entry<PathBuf>, HideMatcher<'_>)> = layers
        .iter()
        .flat_map(|l| &l.hide)
        .filter_map(|h| Some((h, HideMatcher::new(&h.value)?)))
        .collect();
    let mut paths: Vec<PathRule> = Vec::new();
    for kind in [LayerKind::Profile, LayerKind::CommandLine] {
        let of_kind = || layers.iter().filter(move |l| l.kind == kind);
        let rules = of_kind()
            .flat_map(|l| l.read.iter().map(|e| (e, Access::Read)))
            .chain(of_kind().flat_map(|l| l.write.iter().map(|e| (e, Access::Write))));
        for (entry, access) in rules {
            if let Some((h, _)) = hide.iter().find(|(_, m)| m.covers(&entry.value)) {
                return Err(entry.origin.hidden_by(h));
            }
            let existing = paths
                .iter_mut()
                .find(|r| r.optional && r.path.as_os_str() == entry.value.as_os_str());
            match (kind, existing) {
                // Listed in both read and write by the profile chain: writable.
                (LayerKind::Profile, Some(existing)) => {
                    if access == Access::Write {
                        existing.access = Access::Write;
                    }
                }
                (LayerKind::Profile, None) => paths.push(PathRule {
                    path: entry.value.clone(),
                    access,
                    optional: true,
                }),
                (LayerKind::CommandLine, _) => paths.push(PathRule {
                    path: entry.value.clone(),
                    access,
                    optional: false,
                }),
            }
        }
    }
    Ok(paths)
}

/// Whether `path` is `pattern` or lies below it (tests).
#[cfg(test)]
pub(super) fn is_hidden(path: &std::path::Path, pattern: &std::path::Path) -> bool {
    crate::policy::pattern_covers(pattern, path)
}

//! The layers of an `extends` chain → one `Policy`.
//!
//! Rules (documented for users in `profiles/dev.toml`):
//! - scalars: the child's value wins;
//! - lists (`read`, `write`, `hide`, `protect`, `skip_dirs`, `allow`, `env.pass`):
//!   the child's entries are appended, duplicates dropped; nothing can be removed,
//!   so a child cannot un-hide a secret or un-protect a path;
//! - `env.set`: merged by name, the child's value wins;
//! - `shell.candidates`: the child's list replaces the parent's (an ordered preference).
//!
//! Then the checks that need the whole chain: every required scalar is set
//! somewhere, and no visible path is hidden (hide always wins; saying so beats
//! a rule that silently does nothing).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::ProfileError;
use super::validate::{Entry, Layer};
use crate::policy::{
    Access, EnvFileScan, EnvPolicy, HideMatcher, HideRule, Limits, PathRule, Policy, ProfileChain,
    Requirement,
};

/// Who the policy is for and where it came from; filled in by `load`.
pub(super) struct Identity {
    pub profile: String,
    pub source: String,
    pub profile_chain: ProfileChain,
    pub home: PathBuf,
    pub workspace: PathBuf,
}

/// Merges `layers` (root first) and builds the policy. `root_file` is the
/// profile without `extends`, named when a required key is missing.
pub(super) fn build(
    layers: &[Layer],
    root_file: &str,
    id: Identity,
) -> Result<Policy, ProfileError> {
    let missing = |key: &str| ProfileError::Missing {
        file: root_file.to_owned(),
        key: key.to_owned(),
    };
    // The last layer (the most derived) that sets the value.
    macro_rules! scalar {
        ($field:ident, $key:expr) => {
            layers
                .iter()
                .rev()
                .find_map(|l| l.$field.clone())
                .ok_or_else(|| missing($key))
        };
    }
    macro_rules! optional {
        ($field:ident) => {
            layers.iter().rev().find_map(|l| l.$field.clone())
        };
    }
    // Every layer's entries, root first, without duplicates.
    /// Like `appended`, comparing paths as bytes: `PathBuf`'s `==` walks
    /// components, which dominated profile loading. Paths here are clean, so
    /// byte equality is path equality.
    fn appended_paths<T: Clone>(
        lists: impl Iterator<Item = Vec<T>>,
        bytes: fn(&T) -> &[u8],
    ) -> Vec<T> {
        let mut out: Vec<T> = Vec::new();
        for item in lists.flatten() {
            if !out.iter().any(|o| bytes(o) == bytes(&item)) {
                out.push(item);
            }
        }
        out
    }
    #[allow(clippy::ptr_arg)] // must be fn(&T) with T = PathBuf
    fn path_bytes(p: &PathBuf) -> &[u8] {
        p.as_os_str().as_encoded_bytes()
    }
    fn hide_bytes(h: &HideRule) -> &[u8] {
        h.pattern.as_os_str().as_encoded_bytes()
    }

    fn appended<T: Clone + PartialEq>(lists: impl Iterator<Item = Vec<T>>) -> Vec<T> {
        let mut out: Vec<T> = Vec::new();
        for item in lists.flatten() {
            if !out.contains(&item) {
                out.push(item);
            }
        }
        out
    }

    let tier = scalar!(tier, "tier")?;
    let workspace_access = scalar!(workspace, "filesystem.workspace")?;
    let network = scalar!(network, "network.mode")?;
    let landlock: Requirement = scalar!(landlock, "landlock.mode")?;
    let shell = scalar!(shell, "shell.candidates")?;

    let enabled = scalar!(env_files_enabled, "filesystem.env_files.enabled")?;
    let (max_depth, max_dirs) = if enabled {
        (
            scalar!(env_files_max_depth, "filesystem.env_files.max_depth")?,
            scalar!(env_files_max_dirs, "filesystem.env_files.max_dirs")?,
        )
    } else {
        (
            optional!(env_files_max_depth).unwrap_or(0),
            optional!(env_files_max_dirs).unwrap_or(0),
        )
    };
    let env_files = EnvFileScan {
        enabled,
        max_depth,
        skip_dirs: appended(layers.iter().map(|l| l.env_files_skip_dirs.clone())),
        allow_names: appended(layers.iter().map(|l| l.env_files_allow.clone())),
        max_dirs,
    };

    let mut set = BTreeMap::new();
    for layer in layers {
        set.extend(layer.env_set.clone());
    }
    let env = EnvPolicy {
        pass: appended(layers.iter().map(|l| l.env_pass.clone())),
        set,
        explicit: Vec::new(),
    };

    let limits = Limits {
        timeout: optional!(timeout).flatten(),
        open_files: scalar!(open_files, "limits.open_files")?,
        file_size: scalar!(file_size, "limits.file_size")?,
        processes: optional!(processes),
        tmp_size: scalar!(tmp_size, "limits.tmp_size")?,
        home_size: scalar!(home_size, "limits.home_size")?,
    };

    let hide: Vec<&Entry<PathBuf>> = layers.iter().flat_map(|l| &l.hide).collect();
    let mut paths: Vec<PathRule> = Vec::new();
    let rules = layers
        .iter()
        .flat_map(|l| l.read.iter().map(|e| (e, Access::Read)))
        .chain(
            layers
                .iter()
                .flat_map(|l| l.write.iter().map(|e| (e, Access::Write))),
        );
    // Split each hide pattern once.
    let hide_split: Vec<_> = hide
        .iter()
        .filter_map(|h| Some((h, HideMatcher::new(&h.value)?)))
        .collect();
    for (entry, access) in rules {
        if let Some((h, _)) = hide_split.iter().find(|(_, m)| m.covers(&entry.value)) {
            return Err(entry.origin.invalid(format!(
                "hidden by {} = {} ({}); hide always wins, remove one of the two",
                h.origin.key, h.origin.value, h.origin.location
            )));
        }
        match paths
            .iter_mut()
            .find(|r| r.path.as_os_str() == entry.value.as_os_str())
        {
            // Listed in both read and write: writable.
            Some(existing) => {
                if access == Access::Write {
                    existing.access = Access::Write;
                }
            }
            None => paths.push(PathRule {
                path: entry.value.clone(),
                access,
                optional: true,
            }),
        }
    }
    let hide = appended_paths(
        layers.iter().map(|l| {
            l.hide
                .iter()
                .map(|e| HideRule {
                    pattern: e.value.clone(),
                })
                .collect()
        }),
        hide_bytes,
    );

    Ok(Policy {
        profile: id.profile,
        source: id.source,
        profile_chain: id.profile_chain,
        tier,
        workspace: id.workspace,
        workspace_access,
        home: id.home,
        paths,
        hide,
        protect: appended_paths(layers.iter().map(|l| l.protect.clone()), path_bytes),
        env_files,
        network,
        landlock,
        env,
        limits,
        shell,
        report: optional!(report).unwrap_or(false),
        audit: optional!(audit),
    })
}

/// Whether `path` is `pattern` or lies below it (tests).
#[cfg(test)]
pub(super) fn is_hidden(path: &std::path::Path, pattern: &std::path::Path) -> bool {
    crate::policy::pattern_covers(pattern, path)
}

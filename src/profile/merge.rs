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
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::ProfileError;
use super::validate::{Entry, Layer};
use crate::policy::{
    Access, EnvFileScan, EnvPolicy, HideRule, Limits, PathRule, Policy, Requirement,
};

/// Who the policy is for and where it came from; filled in by `load`.
pub(super) struct Identity {
    pub profile: String,
    pub source: String,
    pub profile_hash: String,
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
    for (entry, access) in rules {
        if let Some(h) = hide.iter().find(|h| is_hidden(&entry.value, &h.value)) {
            return Err(entry.origin.invalid(format!(
                "hidden by {} = {} ({}); hide always wins, remove one of the two",
                h.origin.key, h.origin.value, h.origin.location
            )));
        }
        match paths.iter_mut().find(|r| r.path == entry.value) {
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
    let hide = appended(layers.iter().map(|l| {
        l.hide
            .iter()
            .map(|e| HideRule {
                pattern: e.value.clone(),
            })
            .collect()
    }));

    Ok(Policy {
        profile: id.profile,
        source: id.source,
        profile_hash: id.profile_hash,
        tier,
        workspace: id.workspace,
        workspace_access,
        home: id.home,
        paths,
        hide,
        protect: appended(layers.iter().map(|l| l.protect.clone())),
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

/// Whether `path` is `pattern` or lies below it. Only the pattern's last
/// component may contain `*`, which matches any run of bytes.
pub(super) fn is_hidden(path: &Path, pattern: &Path) -> bool {
    let mut path = path.components();
    let pattern: Vec<_> = pattern.components().collect();
    let Some((last, parents)) = pattern.split_last() else {
        return false;
    };
    for parent in parents {
        if path.next() != Some(*parent) {
            return false;
        }
    }
    match path.next() {
        Some(component) => wildcard_match(
            last.as_os_str().as_encoded_bytes(),
            OsStr::as_encoded_bytes(component.as_os_str()),
        ),
        None => false,
    }
}

/// `*` matches any run of bytes; every other byte matches itself. Backtracks
/// to the last `*` only: at worst O(pattern × name), never exponential.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

//! The floor applied to one run's merged policy: tighten what can be
//! tightened (hide, protect, timeout, audit log, `auto` tier), refuse what
//! would go past it. The policy reaching here already holds every layer
//! (built-ins, user profiles, flags, `SHELLCAGE_*`), so this is the one place
//! a run is checked.

use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Floor, FloorError, Item, net_name};
use crate::policy::{
    Access, HideRule, NetMode, Policy, Requirement, TierChoice, pattern_covers, wildcard_match,
};

/// Where the run's values came from, to name them when one is refused.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    /// `--profile NAME`, `SHELLCAGE_PROFILE=NAME` or `the default profile dev`.
    pub profile: String,
    /// `--tier T` or `SHELLCAGE_TIER=T` (else the profile's).
    pub tier: Option<String>,
    /// `--net M`.
    pub net: Option<String>,
    /// `--timeout T`.
    pub timeout: Option<String>,
    /// `--audit FILE`.
    pub audit: Option<String>,
    /// `--workspace DIR`, `SHELLCAGE_WORKSPACE=DIR`, or how it was found.
    pub workspace: String,
    /// `--read`/`--write` paths: canonical path and the flag as typed.
    pub flags: Vec<(PathBuf, String)>,
    /// `--allow-host` entries as typed.
    pub allow_host: Vec<String>,
    /// `--gpu` was given.
    pub gpu: bool,
}

/// What the floor changed in a run (for `policy show` and `-v`).
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// One line per tightening: `tier auto -> full (tiers, line 7)`.
    pub notes: Vec<String>,
}

impl Floor {
    fn location(&self, line: usize) -> String {
        format!("{}:{line}", self.file.display())
    }

    fn loosens<T>(
        &self,
        key: &'static str,
        item: &Item<T>,
        what: String,
        hint: impl Into<String>,
    ) -> FloorError {
        FloorError::Loosens {
            location: self.location(item.line),
            key,
            value: item.written.clone(),
            what,
            hint: hint.into(),
        }
    }

    /// Checks and tightens `policy` (see the module comment).
    pub fn apply(&self, policy: &mut Policy, asked: &Asked) -> Result<Applied, FloorError> {
        let mut applied = Applied::default();
        self.check_profiles(policy, asked)?;
        self.check_tier(policy, asked, &mut applied)?;
        self.check_network(policy, asked)?;
        self.check_egress(policy, asked)?;
        self.check_workspace_mode(policy, asked)?;
        self.check_write_roots(policy, asked)?;
        self.check_env(policy)?;
        self.check_timeout(policy, asked, &mut applied)?;
        self.check_requirements(policy)?;
        self.check_devices(policy, asked)?;
        self.add_hide_protect(policy, asked, &mut applied)?;
        self.set_audit(policy, asked, &mut applied)?;
        Ok(applied)
    }

    fn profile_of(policy: &Policy) -> String {
        format!("profile {}", policy.source)
    }

    fn check_profiles(&self, policy: &Policy, asked: &Asked) -> Result<(), FloorError> {
        let Some(item) = &self.profiles else {
            return Ok(());
        };
        let chain = &policy.profile_chain.0;
        let ids: Vec<&str> = if chain.is_empty() {
            vec![policy.source.as_str()]
        } else {
            chain.iter().map(|(id, _)| id.as_str()).collect()
        };
        for (i, id) in ids.iter().enumerate() {
            let builtin = id.strip_prefix("builtin:");
            let listed = item.value.iter().find(|e| match builtin {
                Some(name) => *e == name,
                None => {
                    e.starts_with('/')
                        && Path::new(e)
                            .canonicalize()
                            .is_ok_and(|c| c == Path::new(id))
                }
            });
            match listed {
                Some(entry) if builtin.is_none() => {
                    // A listed file someone else can edit is no limit at all.
                    match super::who_else_can_change(Path::new(entry), true) {
                        Ok(None) => {}
                        Ok(Some((why, hint))) => {
                            return Err(self.loosens(
                                "profiles",
                                item,
                                format!("the listed profile can be changed by others: {why}"),
                                hint,
                            ));
                        }
                        Err(e) => {
                            return Err(self.loosens(
                                "profiles",
                                item,
                                format!("cannot check the listed profile {entry}: {e}"),
                                "check the path",
                            ));
                        }
                    }
                }
                Some(_) => {}
                None if i > 0 && builtin.is_some() => {}
                None => {
                    let what = if i == 0 {
                        format!("{} ({}) is not one of them", id, asked.profile)
                    } else {
                        format!("{} extends {id}, which is not one of them", ids[0])
                    };
                    return Err(self.loosens(
                        "profiles",
                        item,
                        what,
                        "use one of the listed profiles (see 'shellcage policy show')",
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_tier(
        &self,
        policy: &mut Policy,
        asked: &Asked,
        applied: &mut Applied,
    ) -> Result<(), FloorError> {
        let Some(item) = &self.tiers else {
            return Ok(());
        };
        let allows = |t| item.value.contains(&t);
        match policy.tier {
            TierChoice::Auto if allows(TierChoice::Full) && allows(TierChoice::Container) => {}
            TierChoice::Auto => {
                let to = if allows(TierChoice::Full) {
                    TierChoice::Full
                } else {
                    TierChoice::Container
                };
                policy.tier = to;
                applied.notes.push(format!(
                    "tier auto -> {} (tiers, line {})",
                    to.name(),
                    item.line
                ));
            }
            t if allows(t) => {}
            t => {
                let from = asked
                    .tier
                    .clone()
                    .unwrap_or_else(|| format!("{} tier", Self::profile_of(policy)));
                return Err(self.loosens(
                    "tiers",
                    item,
                    format!("tier {} ({from}) is not one of them", t.name()),
                    format!(
                        "drop --tier/SHELLCAGE_TIER or use {}",
                        item.value
                            .iter()
                            .map(|t| t.name())
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_network(&self, policy: &Policy, asked: &Asked) -> Result<(), FloorError> {
        let from = || {
            asked
                .net
                .clone()
                .unwrap_or_else(|| format!("{} network.mode", Self::profile_of(policy)))
        };
        if let Some(item) = &self.network_modes {
            if !item.value.contains(&policy.network) {
                return Err(self.loosens(
                    "network_modes",
                    item,
                    format!(
                        "network mode {} ({}) is not one of them",
                        net_name(policy.network),
                        from()
                    ),
                    format!(
                        "use --net {}",
                        item.value
                            .iter()
                            .map(|m| net_name(*m))
                            .collect::<Vec<_>>()
                            .join(" or --net ")
                    ),
                ));
            }
        }
        // The host's network reaches every host: no allowlist or denylist holds.
        if policy.network == NetMode::Host {
            let key = match (&self.allow_hosts, &self.deny_hosts) {
                (Some(i), _) => Some(("allow_hosts", i.line, i.written.clone())),
                (None, Some(i)) if !i.value.is_empty() => {
                    Some(("deny_hosts", i.line, i.written.clone()))
                }
                _ => None,
            };
            if let Some((key, line, written)) = key {
                return Err(FloorError::Loosens {
                    location: self.location(line),
                    key,
                    value: written,
                    what: format!(
                        "network mode host ({}) reaches every host, past that list",
                        from()
                    ),
                    hint: "use --net none, or reach the hosts you need through the proxy".into(),
                });
            }
        }
        Ok(())
    }

    /// Every allow entry of the run must lie inside one of `allow_hosts`.
    /// (The run's allow list is the proxy's `[network] allow` + `--allow-host`;
    /// `allowed` lists them as (entry, where from).)
    pub(crate) fn check_allow_entries(
        &self,
        allowed: &[(String, String)],
    ) -> Result<(), FloorError> {
        let Some(item) = &self.allow_hosts else {
            return Ok(());
        };
        for (entry, from) in allowed {
            let covered = crate::net::rules::Rule::parse("allow", entry)
                .is_ok_and(|r| item.value.iter().any(|widest| widest.covers(&r)));
            if !covered {
                return Err(self.loosens(
                    "allow_hosts",
                    item,
                    format!("{entry} ({from}) is not inside it"),
                    "allow only hosts the administrator listed (see 'shellcage policy show')",
                ));
            }
        }
        Ok(())
    }

    /// The proxy's lists (`[network] allow`, `deny`, `allow_private`,
    /// `--allow-host`): allow entries inside `allow_hosts`, private blocks
    /// inside `allow_private`, `deny_hosts` added.
    fn check_egress(&self, policy: &mut Policy, asked: &Asked) -> Result<(), FloorError> {
        let from = |e: &str| {
            if asked.allow_host.iter().any(|h| h == e) {
                format!("--allow-host {e}")
            } else {
                format!("{} network.allow", Self::profile_of(policy))
            }
        };
        let allowed: Vec<(String, String)> = policy
            .egress
            .allow
            .iter()
            .map(|e| (e.clone(), from(e)))
            .collect();
        self.check_allow_entries(&allowed)?;
        let bound = match (&self.allow_private, &self.allow_hosts) {
            (Some(widest), _) => Some(("allow_private", widest.line, widest.written.clone())),
            (None, Some(item)) => Some(("allow_hosts", item.line, item.written.clone())),
            (None, None) => None,
        };
        if let Some((key, line, written)) = bound {
            for block in &policy.egress.allow_private {
                let inside = block.parse::<crate::net::addr::Cidr>().is_ok_and(|b| {
                    self.allow_private.as_ref().is_some_and(|widest| {
                        widest
                            .value
                            .iter()
                            .any(|w| w.contains(b.addr()) && w.prefix_len() <= b.prefix_len())
                    })
                });
                if !inside {
                    let what = format!(
                        "{} network.allow_private {block} would let allowed names reach private addresses the floor does not list",
                        Self::profile_of(policy)
                    );
                    return Err(FloorError::Loosens {
                        location: self.location(line),
                        key,
                        value: written,
                        what,
                        hint: "use blocks inside the managed allow_private (the administrator lists them)".into(),
                    });
                }
            }
        }
        if let Some(item) = &self.deny_hosts {
            for d in &item.value {
                if !policy.egress.deny.contains(d) {
                    policy.egress.deny.push(d.clone());
                }
            }
        }
        Ok(())
    }

    fn check_workspace_mode(&self, policy: &Policy, asked: &Asked) -> Result<(), FloorError> {
        let Some(item) = &self.workspace_modes else {
            return Ok(());
        };
        let mode = workspace_mode(policy);
        if !item.value.iter().any(|m| m == mode) {
            return Err(self.loosens(
                "workspace_modes",
                item,
                format!("workspace mode {mode} ({} filesystem.workspace; workspace {}) is not one of them", Self::profile_of(policy), asked.workspace),
                format!("use a profile whose filesystem.workspace is {}", item.value.join(" or ")),
            ));
        }
        Ok(())
    }

    fn check_write_roots(&self, policy: &Policy, asked: &Asked) -> Result<(), FloorError> {
        let Some(item) = &self.write_roots else {
            return Ok(());
        };
        let home = password_home();
        let roots: Vec<PathBuf> = item
            .value
            .iter()
            .filter_map(|r| {
                super::clean_absolute(r, home.as_deref().or(Some(Path::new("/nonexistent")))).ok()
            })
            .map(|r| resolved(&r))
            .collect();
        let inside = |p: &Path| {
            let real = resolved(p);
            roots.iter().any(|r| real.starts_with(r))
        };
        let hint = format!("write only below {}", item.value.join(", "));
        for rule in policy.paths.iter().filter(|r| r.access == Access::Write) {
            if !inside(&rule.path) {
                let from = asked
                    .flags
                    .iter()
                    .find(|(p, f)| p == &rule.path && f.starts_with("--write"))
                    .map(|(_, f)| f.clone())
                    .unwrap_or_else(|| {
                        format!(
                            "{} filesystem.write {}",
                            Self::profile_of(policy),
                            rule.path.display()
                        )
                    });
                return Err(self.loosens(
                    "write_roots",
                    item,
                    format!("{from} is outside them"),
                    hint,
                ));
            }
        }
        if workspace_mode(policy) == "write" && !inside(&policy.workspace) {
            return Err(self.loosens(
                "write_roots",
                item,
                format!(
                    "the writable workspace {} ({}) is outside them",
                    policy.workspace.display(),
                    asked.workspace
                ),
                format!("{hint}, or use a read-only or overlay workspace"),
            ));
        }
        Ok(())
    }

    fn check_env(&self, policy: &Policy) -> Result<(), FloorError> {
        let Some(item) = &self.env_pass else {
            return Ok(());
        };
        for (name, _) in &policy.env.explicit {
            if !item
                .value
                .iter()
                .any(|p| wildcard_match(p.as_bytes(), name.as_bytes()))
            {
                return Err(self.loosens(
                    "env_pass",
                    item,
                    format!("--env {name} is not one of them"),
                    "pass only the listed names",
                ));
            }
        }
        Ok(())
    }

    /// Without `env_pass`, `--env` may pass no secret-looking name
    /// (`is_secret` is the sandbox's own test, which this layer cannot
    /// import: the launch calls this before anything starts).
    pub fn check_env_secrets(
        &self,
        policy: &Policy,
        is_secret: fn(&str) -> bool,
    ) -> Result<(), FloorError> {
        if self.env_pass.is_some() {
            return Ok(());
        }
        match policy.env.explicit.iter().find(|(n, _)| is_secret(n)) {
            Some((name, _)) => Err(FloorError::Loosens {
                location: self.file.display().to_string(),
                key: "env_pass",
                value: "(not set)".into(),
                what: format!(
                    "--env {name}: with a managed floor, --env passes no secret-looking name unless env_pass lists it"
                ),
                hint: "ask the administrator to add it to env_pass".into(),
            }),
            None => Ok(()),
        }
    }

    fn check_timeout(
        &self,
        policy: &mut Policy,
        asked: &Asked,
        applied: &mut Applied,
    ) -> Result<(), FloorError> {
        let Some(item) = &self.max_timeout else {
            return Ok(());
        };
        match policy.limits.timeout {
            None => {
                policy.limits.timeout = Some(item.value);
                applied.notes.push(format!(
                    "timeout {} (max_timeout, line {}; the profile set none)",
                    item.written, item.line
                ));
            }
            Some(t) if t > item.value => {
                let from = asked
                    .timeout
                    .clone()
                    .unwrap_or_else(|| format!("{} limits.timeout", Self::profile_of(policy)));
                return Err(self.loosens(
                    "max_timeout",
                    item,
                    format!("a timeout of {}s ({from}) is longer", t.as_secs()),
                    format!("use --timeout {} or less", item.written.trim_matches('"')),
                ));
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn check_requirements(&self, policy: &Policy) -> Result<(), FloorError> {
        if let Some(item) = &self.landlock {
            if policy.landlock == Requirement::BestEffort {
                return Err(self.loosens(
                    "landlock",
                    item,
                    format!(
                        "{} sets landlock.mode = \"best-effort\"",
                        Self::profile_of(policy)
                    ),
                    "use a profile with landlock.mode = \"required\"",
                ));
            }
        }
        if let Some(item) = &self.env_files {
            if !policy.env_files.enabled {
                return Err(self.loosens(
                    "env_files",
                    item,
                    format!(
                        "{} turns the .env scan off (filesystem.env_files.enabled = false)",
                        Self::profile_of(policy)
                    ),
                    "use a profile that keeps filesystem.env_files enabled",
                ));
            }
        }
        Ok(())
    }

    /// A device class the run exposes must be one the floor lists (a flag
    /// cannot go past it any more than a profile can).
    fn check_devices(&self, policy: &Policy, asked: &Asked) -> Result<(), FloorError> {
        let Some(item) = &self.devices else {
            return Ok(());
        };
        if policy.devices.gpu && !item.value.iter().any(|d| d == "gpu") {
            let from = if asked.gpu {
                "--gpu".to_string()
            } else {
                format!("{} devices.gpu = true", Self::profile_of(policy))
            };
            return Err(self.loosens(
                "devices",
                item,
                format!("{from} would expose the host's GPU device nodes, and gpu is not listed"),
                "drop --gpu, or use a profile without [devices] gpu = true",
            ));
        }
        Ok(())
    }

    fn add_hide_protect(
        &self,
        policy: &mut Policy,
        asked: &Asked,
        applied: &mut Applied,
    ) -> Result<(), FloorError> {
        if let Some(item) = &self.hide {
            let patterns: Vec<PathBuf> = self
                .hide_patterns(policy)
                .into_iter()
                .map(|(p, _)| p)
                .collect();
            for pattern in patterns {
                if pattern_covers(&pattern, &policy.workspace) {
                    return Err(self.loosens(
                        "hide",
                        item,
                        format!(
                            "the workspace {} ({}) is hidden by {}",
                            policy.workspace.display(),
                            asked.workspace,
                            pattern.display()
                        ),
                        "run from a project directory outside the hidden paths",
                    ));
                }
                let mut refused = None;
                policy.paths.retain(|rule| {
                    if !pattern_covers(&pattern, &rule.path) {
                        return true;
                    }
                    if let Some((_, flag)) = asked.flags.iter().find(|(p, _)| *p == rule.path) {
                        refused.get_or_insert_with(|| flag.clone());
                        return true;
                    }
                    applied.notes.push(format!(
                        "{} not mounted: hidden by {} (hide, line {})",
                        rule.path.display(),
                        pattern.display(),
                        item.line
                    ));
                    false
                });
                if let Some(flag) = refused {
                    return Err(self.loosens(
                        "hide",
                        item,
                        format!("{flag} is hidden by {}", pattern.display()),
                        "do not pass hidden paths",
                    ));
                }
                if !policy.hide.iter().any(|h| h.pattern == pattern) {
                    policy.hide.push(HideRule { pattern });
                }
            }
        }
        if let Some(item) = &self.protect {
            for p in &item.value {
                if !policy.protect.contains(p) {
                    policy.protect.push(p.clone());
                }
            }
        }
        Ok(())
    }

    fn set_audit(
        &self,
        policy: &mut Policy,
        asked: &Asked,
        applied: &mut Applied,
    ) -> Result<(), FloorError> {
        let Some(item) = &self.audit else {
            return Ok(());
        };
        match &policy.audit {
            Some(other) if *other != item.value => {
                let from = asked
                    .audit
                    .clone()
                    .unwrap_or_else(|| format!("{} audit.file", Self::profile_of(policy)));
                return Err(self.loosens(
                    "audit",
                    item,
                    format!("{from} would log this run elsewhere"),
                    "drop --audit / [audit] file: every run is logged to the managed log (read it with 'shellcage audit tail')",
                ));
            }
            _ => {}
        }
        self.check_audit_file(item)?;
        policy.audit = Some(item.value.clone());
        applied.notes.push(format!(
            "audit {} (audit, line {})",
            item.value.display(),
            item.line
        ));
        Ok(())
    }

    /// The managed log exists, only root can replace it, it is append-only,
    /// and this user can append to it.
    fn check_audit_file(&self, item: &Item<PathBuf>) -> Result<(), FloorError> {
        let path = &item.value;
        let shown = path.display().to_string();
        let bad = |what: String, hint: String| self.loosens("audit", item, what, hint);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => bad(
                    format!("the log {shown} does not exist"),
                    format!("as root: install -m 0666 /dev/null {shown} && chattr +a {shown} (see README \"Managed floor\")"),
                ),
                _ => bad(
                    format!("cannot open the log {shown} to append: {}", e.to_string().to_lowercase()),
                    "the administrator lets your users read and append to it (mode 0666, or 0660 and a group they are in)".into(),
                ),
            })?;
        let meta = file
            .metadata()
            .map_err(|e| bad(format!("cannot stat {shown}: {e}"), "check the file".into()))?;
        if !meta.is_file() || meta.uid() != 0 {
            return Err(bad(
                format!(
                    "the log {shown} is not a regular file owned by root (uid {})",
                    meta.uid()
                ),
                format!("as root: chown root {shown}"),
            ));
        }
        match super::who_else_can_change(path, false) {
            Ok(None) => {}
            Ok(Some((why, hint))) => {
                return Err(bad(format!("the log could be replaced: {why}"), hint));
            }
            Err(e) => {
                return Err(bad(
                    format!("cannot check the log's directories: {e}"),
                    "check the path".into(),
                ));
            }
        }
        let flags = crate::sys::inode_flags(file.as_fd()).map_err(|e| {
            bad(
                format!(
                    "cannot read the inode flags of {shown}: {}",
                    e.desc().to_lowercase()
                ),
                "keep the log on a file system that supports chattr +a (ext4, xfs, btrfs, tmpfs)"
                    .into(),
            )
        })?;
        if flags & crate::sys::FS_APPEND_FL == 0 {
            return Err(bad(
                format!("the log {shown} is not append-only"),
                format!("as root: chattr +a {shown}"),
            ));
        }
        Ok(())
    }
}

impl Floor {
    /// The managed hide patterns as expanded for `policy`, each with the
    /// entry as written (`~` is both $HOME and the password database's home).
    pub fn hide_patterns(&self, policy: &Policy) -> Vec<(PathBuf, String)> {
        let Some(item) = &self.hide else {
            return Vec::new();
        };
        let mut homes = vec![policy.home.clone()];
        if let Some(h) = password_home().filter(|h| *h != policy.home) {
            homes.push(h);
        }
        let mut out: Vec<(PathBuf, String)> = Vec::new();
        for raw in &item.value {
            let expanded = match raw.strip_prefix("{workspace}") {
                Some(rest) => format!("{}{rest}", policy.workspace.display()),
                None => raw.clone(),
            };
            for home in &homes {
                if let Ok(p) = super::clean_absolute(&expanded, Some(home)) {
                    if !out.iter().any(|(q, _)| *q == p) {
                        out.push((p, raw.clone()));
                    }
                }
            }
        }
        out
    }
}

/// `read`, `write` or `overlay`: how the run sees its workspace.
pub fn workspace_mode(policy: &Policy) -> &'static str {
    match (policy.workspace_access, &policy.workspace_layer) {
        (_, Some(_)) => "overlay",
        (Access::Read, None) => "read",
        (Access::Write, None) => "write",
    }
}

/// The caller's home from the password database ($HOME is the caller's to set).
fn password_home() -> Option<PathBuf> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
}

/// `p` with symlinks resolved as far as it exists (a missing tail is kept as
/// written): what a mount of it would reach.
fn resolved(p: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut cur = p.to_path_buf();
    loop {
        if let Ok(c) = cur.canonicalize() {
            let mut out = c;
            for m in missing.iter().rev() {
                out.push(m);
            }
            return out;
        }
        match (cur.file_name().map(|n| n.to_owned()), cur.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name);
                cur = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

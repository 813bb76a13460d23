//! What the sandbox does with a path or a host, and which rule says so.
//!
//! The judge models the view a command gets in the namespaces tier, as the
//! mount plan builds it: the profile's paths and the workspace bound at their
//! own locations (the deepest mount wins), a private /tmp, $HOME, /dev and
//! /proc, masks over hidden paths and `.env` files, read-only binds over
//! protected paths. Paths are judged after resolving them like the kernel
//! ([`resolve`]). The same judge answers `shellcage explain`, the Claude Code
//! hook (file tools, WebFetch) and its PostToolUse context line, so they
//! cannot disagree.

mod adapter;
pub mod cli;
mod origin;
pub mod resolve;
mod view;

use std::path::{Path, PathBuf};

pub use adapter::{
    error_chain, home_dir, load_policy, load_view, policy_file_json, view_of, view_of_request,
};
pub use resolve::{ResolveError, Resolved, resolve};
pub use view::{POLICY_FILE, PolicyView, RuleSource, ViewAccess, ViewNet};

use crate::net::host::Host;
use crate::net::rules::{ListRefusal, RuleSet, split_host_port};
use crate::policy::HideMatcher;

/// The allow entry that would let `host:port` through (the port left out when it is one
/// of the default ports).
fn allow_entry(host: &Host, port: u16) -> String {
    if crate::net::rules::DEFAULT_PORTS.contains(&port) {
        host.to_string()
    } else {
        format!("{host}:{port}")
    }
}

/// What the sandbox does with a path or a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Masked: a command cannot read it.
    Hidden,
    /// In the writable workspace but bound read-only.
    Protected,
    ReadOnly,
    Writable,
    /// Not visible inside (not listed, or the sandbox's own /tmp, $HOME …).
    Absent,
    /// A host the command can reach.
    Allowed,
    /// A host the command cannot reach.
    Refused,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Hidden => "hidden",
            Verdict::Protected => "protected",
            Verdict::ReadOnly => "read-only",
            Verdict::Writable => "writable",
            Verdict::Absent => "absent",
            Verdict::Allowed => "allowed",
            Verdict::Refused => "refused",
        }
    }
    /// Can a command inside read the path?
    pub fn readable(self) -> bool {
        matches!(
            self,
            Verdict::Protected | Verdict::ReadOnly | Verdict::Writable
        )
    }
    pub fn writable(self) -> bool {
        self == Verdict::Writable
    }
}

/// The rule behind a verdict. Indices point into the [`PolicyView`]'s lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Hide(usize),
    /// A `.env` / `.env.*` file in the workspace; `scanned`: outside the
    /// scan's skipped directories (and within its depth; deeper refuses the
    /// run), so masked.
    EnvFile {
        scanned: bool,
    },
    Protect(usize),
    /// `.git/commondir`, `.git/config.worktree`: protected with `.git/config`.
    GitRedirect(usize),
    Path(usize),
    Workspace,
    PrivateTmp,
    PrivateHome,
    PrivateDev,
    PrivateProc,
    DevNode,
    /// One of the host's GPU nodes (`[devices] gpu`).
    GpuNode,
    NotListed,
    /// The network mode decides.
    Network,
    /// The sandbox's own loopback (network mode `loopback`).
    Loopback,
    /// Allowed by this proxy allowlist entry (as the proxy normalises it).
    AllowHost(String),
    /// Refused by this proxy deny entry.
    DenyHost(String),
    /// An IP literal the allowlist names, but in a private or special block that
    /// `allow_private` does not list.
    PrivateAddress(String),
    /// Network mode proxy: no allow entry names this host (`HOST:PORT` as judged).
    NotAllowed(String),
    /// Network mode proxy: allowed on other ports only (`HOST:PORT`, the ports allowed).
    PortNotAllowed(String, Vec<u16>),
}

/// A verdict with its rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub verdict: Verdict,
    pub rule: Rule,
}

impl Finding {
    fn new(verdict: Verdict, rule: Rule) -> Finding {
        Finding { verdict, rule }
    }
    /// A `.env` file in the workspace, masked or not.
    pub fn is_env_file(&self) -> bool {
        matches!(self.rule, Rule::EnvFile { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mount {
    Bind(usize),
    Workspace,
    Tmp,
    Home,
    Dev,
    Proc,
}

/// The judge for one policy view.
#[derive(Debug)]
pub struct Judge<'a> {
    pub view: &'a PolicyView,
    /// (mount point, what is mounted), in mount order.
    mounts: Vec<(PathBuf, Mount)>,
    /// Protected host paths with their rule (empty unless the workspace is writable).
    protected: Vec<(PathBuf, Rule)>,
    /// Hide patterns with symlinked parents resolved, beside the originals.
    hide_real: Vec<(PathBuf, usize)>,
}

fn canonical_or(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn depth(p: &Path) -> usize {
    p.components().count()
}

impl<'a> Judge<'a> {
    pub fn new(view: &'a PolicyView) -> Judge<'a> {
        let mut mounts = vec![
            (PathBuf::from("/tmp"), Mount::Tmp),
            (canonical_or(&view.home), Mount::Home),
            (PathBuf::from("/dev"), Mount::Dev),
            (PathBuf::from("/proc"), Mount::Proc),
        ];
        for (i, r) in view.paths.iter().enumerate() {
            match std::fs::canonicalize(&r.path) {
                Ok(c) => mounts.push((c, Mount::Bind(i))),
                Err(_) if r.optional => {}
                Err(_) => mounts.push((r.path.clone(), Mount::Bind(i))),
            }
        }
        mounts.push((view.workspace.clone(), Mount::Workspace));
        let mut hide_real = Vec::new();
        for (i, h) in view.hide.iter().enumerate() {
            let (Some(parent), Some(last)) = (h.pattern.parent(), h.pattern.file_name()) else {
                continue;
            };
            let real_parent = canonical_or(parent);
            if real_parent != parent {
                hide_real.push((real_parent.join(last), i));
            }
            if !last.as_encoded_bytes().contains(&b'*') {
                if let Ok(real) = std::fs::canonicalize(&h.pattern) {
                    if real != h.pattern {
                        hide_real.push((real, i));
                    }
                }
            }
        }
        Judge {
            view,
            mounts,
            protected: protected_paths(view),
            hide_real,
        }
    }

    /// The mount that shows `p` inside: the deepest covering one, the later
    /// at equal depth (as the mount plan stacks them).
    fn mount_of(&self, p: &Path) -> Option<Mount> {
        self.mounts
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| p.starts_with(at))
            .max_by_key(|(i, (at, _))| (depth(at), *i))
            .map(|(_, (_, m))| *m)
    }

    fn hide_rule(&self, p: &Path) -> Option<usize> {
        let direct = self
            .view
            .hide
            .iter()
            .position(|h| HideMatcher::new(&h.pattern).is_some_and(|m| m.covers(p)));
        direct.or_else(|| {
            self.hide_real
                .iter()
                .find(|(pat, _)| HideMatcher::new(pat).is_some_and(|m| m.covers(p)))
                .map(|(_, i)| *i)
        })
    }

    /// The root-level name pattern of the protect list (`*.code-workspace`)
    /// that covers `p`, if any (only in a writable workspace).
    fn protect_pattern(&self, p: &Path) -> Option<usize> {
        if self.view.workspace_access != ViewAccess::Write {
            return None;
        }
        let rel = p.strip_prefix(&self.view.workspace).ok()?;
        self.view.protect.iter().position(|e| {
            crate::policy::is_protect_pattern(&e.path)
                && crate::policy::protect_covers(&e.path, rel)
        })
    }

    /// Judge one resolved, absolute host path (see [`resolve`]).
    pub fn path(&self, p: &Path) -> Finding {
        if let Some(i) = self.hide_rule(p) {
            return Finding::new(Verdict::Hidden, Rule::Hide(i));
        }
        let Some(mount) = self.mount_of(p) else {
            return Finding::new(Verdict::Absent, Rule::NotListed);
        };
        let access = match mount {
            Mount::Tmp => return Finding::new(Verdict::Absent, Rule::PrivateTmp),
            Mount::Home => return Finding::new(Verdict::Absent, Rule::PrivateHome),
            Mount::Proc => return Finding::new(Verdict::Absent, Rule::PrivateProc),
            Mount::Dev => {
                let node = p.strip_prefix("/dev").ok().and_then(|r| r.to_str());
                return match node {
                    Some(n) if self.view.dev_nodes.iter().any(|d| d == n) => {
                        Finding::new(Verdict::Writable, Rule::DevNode)
                    }
                    Some(n) if self.view.gpu_nodes.iter().any(|d| d == n) => {
                        Finding::new(Verdict::Writable, Rule::GpuNode)
                    }
                    _ => Finding::new(Verdict::Absent, Rule::PrivateDev),
                };
            }
            Mount::Bind(i) => (self.view.paths[i].access, Rule::Path(i)),
            Mount::Workspace => (self.view.workspace_access, Rule::Workspace),
        };
        let env = self.env_file(p);
        if env == Some(true) {
            return Finding::new(Verdict::Hidden, Rule::EnvFile { scanned: true });
        }
        if let Some((_, rule)) = self.protected.iter().find(|(at, _)| p.starts_with(at)) {
            return Finding::new(Verdict::Protected, rule.clone());
        }
        if let Some(i) = self.protect_pattern(p) {
            return Finding::new(Verdict::Protected, Rule::Protect(i));
        }
        let verdict = match access.0 {
            ViewAccess::Read => Verdict::ReadOnly,
            ViewAccess::Write => Verdict::Writable,
        };
        match env {
            Some(false) => Finding::new(verdict, Rule::EnvFile { scanned: false }),
            _ => Finding::new(verdict, access.1),
        }
    }

    /// `Some(scanned)` when `p` is a `.env` file in the workspace.
    fn env_file(&self, p: &Path) -> Option<bool> {
        let cfg = &self.view.env_files;
        let rel = p.strip_prefix(&self.view.workspace).ok()?;
        let name = rel.file_name()?.as_encoded_bytes();
        let is_env = name == b".env" || name.starts_with(b".env.");
        if !cfg.enabled || !is_env || cfg.allow_names.iter().any(|a| a.as_bytes() == name) {
            return None;
        }
        let dirs: Vec<_> = rel
            .parent()
            .into_iter()
            .flat_map(Path::components)
            .collect();
        let skipped = dirs
            .iter()
            .any(|d| cfg.skip_dirs.iter().any(|s| s.as_str() == d.as_os_str()));
        Some(dirs.len() <= cfg.max_depth && !skipped)
    }

    /// Judge a host a command inside the sandbox connects to.
    pub fn host(&self, host: &str) -> Finding {
        if let Some(f) = self.allowlisted(host) {
            return f;
        }
        match self.view.network.mode {
            ViewNet::Host => Finding::new(Verdict::Allowed, Rule::Network),
            ViewNet::Proxy => Finding::new(Verdict::Refused, Rule::Network),
            ViewNet::Loopback if is_loopback(split_host_port(host).map_or(host, |(h, _)| h)) => {
                Finding::new(Verdict::Allowed, Rule::Loopback)
            }
            ViewNet::Loopback | ViewNet::None => Finding::new(Verdict::Refused, Rule::Network),
        }
    }

    /// Judge a host that a process *outside* the sandbox (Claude Code's
    /// WebFetch) would connect to on the agent's behalf: only a mode that
    /// reaches the host's network lets it through; the sandbox's private
    /// loopback is not the host's.
    pub fn host_from_outside(&self, host: &str) -> Finding {
        let f = self.host(host);
        if f.rule == Rule::Loopback {
            return Finding::new(Verdict::Refused, Rule::Network);
        }
        f
    }

    /// The proxy's lists, judged by the proxy's own rules (`HOST[:PORT]`, port 443 when
    /// none is given). `None` when no entry names the host.
    fn allowlisted(&self, host: &str) -> Option<Finding> {
        let net = &self.view.network;
        let proxy = net.mode == ViewNet::Proxy;
        if !proxy && net.allow_hosts.is_empty() && net.deny_hosts.is_empty() {
            return None;
        }
        let rules = RuleSet::new(&net.allow_hosts, &net.deny_hosts, &net.allow_private).ok()?;
        let (name, port) = split_host_port(host).ok()?;
        let port = match port {
            Some(p) => crate::net::rules::parse_port(p)?,
            None => 443,
        };
        let parsed = Host::parse(name).ok()?;
        match rules.check(&parsed, port) {
            Ok(rule) => match parsed {
                Host::Ip(ip) if rules.addresses().check(ip).is_err() => Some(Finding::new(
                    Verdict::Refused,
                    Rule::PrivateAddress(ip.to_string()),
                )),
                _ => Some(Finding::new(Verdict::Allowed, Rule::AllowHost(rule))),
            },
            Err(ListRefusal::Denied { rule }) => {
                Some(Finding::new(Verdict::Refused, Rule::DenyHost(rule)))
            }
            Err(ListRefusal::NotInAllowlist) if proxy => Some(Finding::new(
                Verdict::Refused,
                Rule::NotAllowed(allow_entry(&parsed, port)),
            )),
            Err(ListRefusal::PortNotAllowed { allowed }) if proxy => Some(Finding::new(
                Verdict::Refused,
                Rule::PortNotAllowed(allow_entry(&parsed, port), allowed),
            )),
            Err(_) => None,
        }
    }

    /// Files below a visible directory `root` that a recursive search must
    /// leave out, as ripgrep `--glob` exclusions (`!NAME`, matched at any
    /// depth: stricter than the masks, never looser). `Err` when the sandbox
    /// shows `root` in pieces a search cannot follow (a private /tmp or
    /// $HOME below it): search a narrower directory.
    pub fn excluded_below(&self, root: &Path) -> Result<Vec<String>, Finding> {
        for (at, m) in &self.mounts {
            let private = match m {
                Mount::Tmp => Some(Rule::PrivateTmp),
                Mount::Home => Some(Rule::PrivateHome),
                Mount::Dev => Some(Rule::PrivateDev),
                Mount::Proc => Some(Rule::PrivateProc),
                _ => None,
            };
            if let Some(rule) = private {
                if at.starts_with(root) && at != root {
                    return Err(Finding::new(Verdict::Absent, rule));
                }
            }
        }
        let mut globs: Vec<String> = Vec::new();
        let mut add = |g: String| {
            if !globs.contains(&g) {
                globs.push(g);
            }
        };
        let patterns = self
            .view
            .hide
            .iter()
            .map(|h| h.pattern.as_path())
            .chain(self.hide_real.iter().map(|(p, _)| p.as_path()));
        for pat in patterns {
            if pat.starts_with(root) && pat != root {
                if let Some(last) = pat.file_name() {
                    add(format!("!{}", last.to_string_lossy()));
                }
            }
        }
        let ws = &self.view.workspace;
        if self.view.env_files.enabled && (ws.starts_with(root) || root.starts_with(ws)) {
            add("!.env".into());
            add("!.env.*".into());
        }
        Ok(globs)
    }

    /// One line naming the rule: `filesystem.hide "~/.ssh" (profiles/dev.toml (built-in):141)`.
    pub fn rule_text(&self, rule: &Rule) -> String {
        let v = self.view;
        match rule {
            Rule::Hide(i) => v.hide[*i].from.describe(),
            Rule::EnvFile { scanned: true } => {
                "a .env file in the workspace (filesystem.env_files)".into()
            }
            Rule::EnvFile { scanned: false } => format!(
                "a .env file in a directory the sandbox's scan skips (filesystem.env_files.skip_dirs), so NOT masked inside (a directory deeper than max_depth = {} refuses the run)",
                v.env_files.max_depth
            ),
            Rule::Protect(i) => v.protect[*i].from.describe(),
            Rule::GitRedirect(i) => format!(
                "git reads it as configuration; protected with {}",
                v.protect[*i].from.describe()
            ),
            Rule::Path(i) => v.paths[*i].from.describe(),
            Rule::Workspace => format!("the workspace {}", v.workspace.display()),
            Rule::PrivateTmp => {
                "the sandbox has its own empty /tmp; the host's is not visible".into()
            }
            Rule::PrivateHome => format!(
                "the sandbox has its own empty home {}; only what the profile lists is bound into it",
                v.home.display()
            ),
            Rule::PrivateDev => "the sandbox has its own /dev with a few device nodes".into(),
            Rule::PrivateProc => {
                "the sandbox has its own /proc; the host's processes are not visible".into()
            }
            Rule::DevNode => "a device node bound into the sandbox's /dev".into(),
            Rule::GpuNode => {
                "a GPU device node of the host, bound read-write with ioctl ([devices] gpu, --gpu)"
                    .into()
            }
            Rule::NotListed => "not listed in the profile, so not visible inside".into(),
            Rule::Network => {
                let what = match v.network.mode {
                    ViewNet::None => "no network inside",
                    ViewNet::Loopback => "only the sandbox's own loopback",
                    ViewNet::Host => "the host's network",
                    ViewNet::Proxy => {
                        "only the hosts of network.allow (ports 80 and 443 unless named), through shellcage's proxy"
                    }
                };
                let from = &v.network.from;
                if from.raw.is_some() {
                    format!("{what}: {}", from.describe())
                } else {
                    format!("{what}: {} {:?}", from.describe(), net_name(v.network.mode))
                }
            }
            Rule::Loopback => {
                "the sandbox's own private loopback (network.mode \"loopback\")".into()
            }
            Rule::AllowHost(rule) => format!("network.allow {rule:?}, through shellcage's proxy"),
            Rule::DenyHost(rule) => format!("network.deny {rule:?} (deny wins over allow)"),
            Rule::NotAllowed(target) => format!(
                "not in the proxy's allowlist (network mode proxy, {}; fix: --allow-host {target} or [network] allow = [{target:?}])",
                v.network.from.describe()
            ),
            Rule::PortNotAllowed(target, allowed) => format!(
                "port not allowed (allowed: {}; fix: --allow-host {target} or [network] allow = [{target:?}])",
                allowed
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Rule::PrivateAddress(ip) => format!(
                "{ip} is a private or special address the proxy refuses unless network.allow_private lists it"
            ),
        }
    }

    /// `hidden: filesystem.hide "~/.ssh" (profiles/dev.toml (built-in):141)`.
    pub fn describe(&self, f: &Finding) -> String {
        format!("{}: {}", f.verdict.name(), self.rule_text(&f.rule))
    }
}

/// Words of `line` that look like paths (`/x`, `~/x`, `./x`, `a/b`, `.env`).
pub fn path_tokens(line: &str) -> Vec<String> {
    line.split(|c: char| c.is_whitespace() || "'\"`,;:()[]{}<>=|&".contains(c))
        .map(|t| t.trim_end_matches(['.', '!', '?']))
        .filter(|t| {
            t.len() > 1
                && !t.contains("://")
                && (t.starts_with('/')
                    || t.starts_with("~/")
                    || t.contains('/')
                    || (t.starts_with('.') && t.len() > 2 && !t.starts_with("..")))
        })
        .map(String::from)
        .take(16)
        .collect()
}

/// `PATH is absent (rule)` when the path `tok` names (relative to `cwd`, `~` as `home`)
/// exists on the host but the sandbox hides it or does not show it, or is protected
/// (when `protected` counts: a write was refused, or may have been).
pub fn path_item(
    judge: &Judge<'_>,
    tok: &str,
    cwd: &Path,
    home: &Path,
    protected: bool,
) -> Option<String> {
    let r = resolve(tok, cwd, home).ok()?;
    let exists = r
        .candidates
        .iter()
        .any(|p| std::fs::symlink_metadata(p).is_ok());
    for p in &r.candidates {
        let f = judge.path(p);
        let noteworthy = match f.verdict {
            Verdict::Hidden | Verdict::Absent => exists,
            Verdict::Protected => protected,
            _ => false,
        };
        if noteworthy {
            return Some(format!(
                "{} is {} ({})",
                p.display(),
                f.verdict.name(),
                judge.rule_text(&f.rule)
            ));
        }
    }
    None
}

/// How many paths [`named_paths`] lists.
const NAMED_PATHS: usize = 4;

/// The paths a command's own words name (its arguments, and the words of a script it is
/// given, e.g. `sh -c '…'`) that exist on the host but are hidden or not shown in the
/// sandbox, or are protected: for the closing hint after a failing command (shellcage
/// never reads the command's output to guess).
pub fn named_paths(judge: &Judge<'_>, argv: &[String], cwd: &Path, home: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in argv.iter().skip(1) {
        for tok in path_tokens(word) {
            if let Some(item) = path_item(judge, &tok, cwd, home, true) {
                if !out.contains(&item) {
                    out.push(item);
                }
            }
            if out.len() >= NAMED_PATHS {
                return out;
            }
        }
    }
    out
}

pub fn net_name(m: ViewNet) -> &'static str {
    match m {
        ViewNet::None => "none",
        ViewNet::Loopback => "loopback",
        ViewNet::Proxy => "proxy",
        ViewNet::Host => "host",
    }
}

/// `localhost`, 127.0.0.0/8 and ::1.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The protected host paths, as the mount plan protects them: each entry,
/// its in-workspace symlink target, an existing non-directory ancestor
/// (`.git` as a file), and git's redirect files with `.git/config`.
fn protected_paths(view: &PolicyView) -> Vec<(PathBuf, Rule)> {
    let mut out = Vec::new();
    if view.workspace_access != ViewAccess::Write {
        return out;
    }
    let ws = &view.workspace;
    for (i, p) in view.protect.iter().enumerate() {
        if crate::policy::is_protect_pattern(&p.path) {
            continue; // see Judge::protect_pattern
        }
        let full = ws.join(&p.path);
        out.push((full.clone(), Rule::Protect(i)));
        if let Ok(canon) = std::fs::canonicalize(&full) {
            if canon != full && canon.starts_with(ws) {
                out.push((canon, Rule::Protect(i)));
            }
        }
        let mut at = ws.clone();
        for comp in p.path.components() {
            at.push(comp);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if !m.is_dir() && at != full => {
                    out.push((at.clone(), Rule::Protect(i)));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if p.path == Path::new(".git/config") {
            for name in ["commondir", "config.worktree"] {
                out.push((ws.join(".git").join(name), Rule::GitRedirect(i)));
            }
        }
    }
    out
}

/// The host of `scheme://[user@]host[:port]/…`.
pub fn url_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
    {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        format!("[{}]", v6.split(']').next()?)
    } else {
        hostport.split(':').next()?.to_string()
    };
    (!host.is_empty() && host != "[]").then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;

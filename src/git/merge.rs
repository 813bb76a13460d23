//! Merging a sandbox's configuration changes into a host file, key by key.
//!
//! Three texts: `base` (the host file when the run started, which the
//! sandbox got a private copy of), `sandbox` (that copy when the run ended)
//! and `current` (the host file now; usually `base`, unless something on the
//! host changed it during the run). Every key whose values differ between
//! `base` and `sandbox` is one change; the policy allows or refuses it whole.
//! Allowed changes are applied to `current` by editing only the lines of those
//! keys; everything else in `current` stays byte for byte.
//!
//! Nothing of the sandbox's text is ever copied: its file is only read, and
//! what is written is this module's own rendering of allowed keys and values
//! ([`format_entry`], [`format_header`]). So a difference between this reader
//! and git's can at worst lose an allowed change; it cannot carry a refused
//! key through. The result is read back and compared with the intended key
//! set before it is returned ([`MergeError::Verify`]).

use super::config::{
    Config, ParseError, Value, ValueMap, display_key, format_entry, format_header, split_key,
};
use super::policy::{Context, Policy, Refusal};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// The new host text (equal to `current` when nothing was applied).
    pub text: Vec<u8>,
    /// Keys whose change was applied.
    pub applied: Vec<Vec<u8>>,
    /// Keys whose change was refused, with the reason.
    pub refused: Vec<(Vec<u8>, Refusal)>,
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("cannot read the config as it was before the run: {0}")]
    Base(ParseError),
    #[error("cannot read the host's config: {0}")]
    Current(ParseError),
    #[error("cannot read the sandbox's config: {0}")]
    Sandbox(ParseError),
    #[error("the merged config does not read back as intended (a bug; nothing merged)")]
    Verify,
    #[error(transparent)]
    File(#[from] super::files::FileError),
    #[error("the sandbox's copy of the config is gone (nothing merged)")]
    NoSandboxCopy,
}

/// The supervisor's exit step for one config file: merge the sandbox's
/// private copy (read without following links, at most 1 MiB) into the host
/// file `host`, under git's lock on it, re-reading the host file under the
/// lock so a concurrent change on the host is never lost. `base` is the host
/// file's content when the private copy was made. The host file is written
/// only when a change was applied.
pub fn merge_into_file(
    host: &std::path::Path,
    base: &[u8],
    private_copy: &std::path::Path,
    policy: &Policy,
    ctx: &Context,
) -> Result<Merge, MergeError> {
    merge_file_with(host, private_copy, |current, sandbox| {
        merge(base, current, sandbox, policy, ctx)
    })
}

/// [`merge_into_file`] for a session's command: [`merge_since`] `prev`.
pub fn merge_command_into_file(
    host: &std::path::Path,
    base: &[u8],
    prev: &[u8],
    private_copy: &std::path::Path,
    policy: &Policy,
    ctx: &Context,
) -> Result<Merge, MergeError> {
    merge_file_with(host, private_copy, |current, sandbox| {
        merge_since(base, prev, current, sandbox, policy, ctx)
    })
}

/// Read the private copy, then under git's lock on `host` merge it (`how`: the host's
/// current text, the copy's) and write the result when a change was applied.
fn merge_file_with(
    host: &std::path::Path,
    private_copy: &std::path::Path,
    how: impl Fn(&[u8], &[u8]) -> Result<Merge, MergeError>,
) -> Result<Merge, MergeError> {
    let sandbox = super::files::read_regular(private_copy, super::config::MAX_CONFIG_SIZE)?
        .ok_or(MergeError::NoSandboxCopy)?;
    let mut outcome = None;
    super::files::update_locked(host, |current: Option<Vec<u8>>| {
        let m = how(current.as_deref().unwrap_or_default(), &sandbox)?;
        let write = (!m.is_noop()).then(|| m.text.clone());
        outcome = Some(m);
        Ok::<_, MergeError>(write)
    })?;
    outcome.ok_or(MergeError::Verify)
}

impl Merge {
    pub fn is_noop(&self) -> bool {
        self.applied.is_empty()
    }

    /// One line for stderr naming keys only (values may hold secrets), or
    /// `None` when there is nothing to say.
    pub fn summary(&self, file: &str) -> Option<String> {
        if self.applied.is_empty() && self.refused.is_empty() {
            return None;
        }
        let names = |keys: &mut dyn Iterator<Item = &Vec<u8>>| {
            keys.map(|k| display_key(k)).collect::<Vec<_>>().join(", ")
        };
        let mut parts = Vec::new();
        if !self.applied.is_empty() {
            parts.push(format!("merged {}", names(&mut self.applied.iter())));
        }
        let mut by_reason: BTreeMap<String, Vec<&Vec<u8>>> = BTreeMap::new();
        for (k, why) in &self.refused {
            by_reason.entry(why.to_string()).or_default().push(k);
        }
        for (why, keys) in by_reason {
            parts.push(format!("refused {} ({why})", names(&mut keys.into_iter())));
        }
        Some(format!("shellcage: {file}: {}", parts.join("; ")))
    }
}

/// Apply the changes from `base` to `sandbox` that `policy` allows onto
/// `current`.
pub fn merge(
    base: &[u8],
    current: &[u8],
    sandbox: &[u8],
    policy: &Policy,
    ctx: &Context,
) -> Result<Merge, MergeError> {
    let base_map = Config::parse(base).map_err(MergeError::Base)?.values();
    merge_maps(base_map, None, current, sandbox, policy, ctx)
}

/// A session's command ended (its copy lives as long as the session): merge what this
/// command changed in the copy, `prev` being the copy when it started. Only keys whose
/// values differ between `prev` and `sandbox` are judged (what earlier commands changed
/// was merged or refused, and said, then). `prev` is the sandbox's own text, so it is
/// never taken as what the host had: a key's base is the host's current value where
/// `prev` agrees with it (unchanged, or merged by an earlier command), else `base`,
/// the host file when the session started (a key the host changed meanwhile is then
/// refused as changed on the host, as in a single run).
pub fn merge_since(
    base: &[u8],
    prev: &[u8],
    current: &[u8],
    sandbox: &[u8],
    policy: &Policy,
    ctx: &Context,
) -> Result<Merge, MergeError> {
    let orig = Config::parse(base).map_err(MergeError::Base)?.values();
    let prev_map = Config::parse(prev).map_err(MergeError::Sandbox)?.values();
    let cur_map = Config::parse(current)
        .map_err(MergeError::Current)?
        .values();
    let mut base_map = ValueMap::new();
    let keys: BTreeSet<&Vec<u8>> = orig
        .keys()
        .chain(prev_map.keys())
        .chain(cur_map.keys())
        .collect();
    for k in keys {
        let (p, c) = (prev_map.get(k), cur_map.get(k));
        let v = if p == c { c } else { orig.get(k) };
        if let Some(v) = v {
            base_map.insert(k.clone(), v.clone());
        }
    }
    merge_maps(base_map, Some(&prev_map), current, sandbox, policy, ctx)
}

/// [`merge`] from a parsed base; with `prev`, only the keys `sandbox` changed since.
fn merge_maps(
    base_map: ValueMap,
    prev: Option<&ValueMap>,
    current: &[u8],
    sandbox: &[u8],
    policy: &Policy,
    ctx: &Context,
) -> Result<Merge, MergeError> {
    let cur_cfg = Config::parse(current).map_err(MergeError::Current)?;
    let cur_map = cur_cfg.values();
    let sandbox_cfg = Config::parse(sandbox).map_err(MergeError::Sandbox)?;
    let sandbox_map = sandbox_cfg.values();
    // A remote is existing if the base or the host has it now.
    let ctx = ctx
        .clone()
        .with_remotes_of(&base_map)
        .with_remotes_of(&cur_map);

    let none: Vec<Value> = Vec::new();
    // In the order the sandbox's file has them, then the ones it dropped.
    let mut seen = BTreeSet::new();
    let keys: Vec<&Vec<u8>> = sandbox_cfg
        .entries
        .iter()
        .map(|e| &e.key)
        .chain(base_map.keys())
        .chain(prev.into_iter().flat_map(|p| p.keys()))
        .filter(|k| seen.insert(*k))
        .collect();
    let (mut applied, mut refused) = (Vec::new(), Vec::new());
    let mut changes: Vec<(Vec<u8>, Vec<Value>)> = Vec::new();
    for key in keys {
        let before = base_map.get(key).unwrap_or(&none);
        let after = sandbox_map.get(key).unwrap_or(&none);
        let now = cur_map.get(key).unwrap_or(&none);
        if prev.is_some_and(|p| p.get(key).unwrap_or(&none) == after) {
            continue;
        }
        if before == after || now == after {
            continue;
        }
        let verdict = if now != before {
            Err(Refusal::ChangedOnHost)
        } else {
            policy.judge(key, before, after, &ctx)
        };
        match verdict {
            Ok(()) => {
                applied.push(key.clone());
                changes.push((key.clone(), after.clone()));
            }
            Err(why) => refused.push((key.clone(), why)),
        }
    }
    if changes.is_empty() {
        let text = current.to_vec();
        return Ok(Merge {
            text,
            applied,
            refused,
        });
    }
    let text = edit(current, &cur_cfg, &changes).ok_or(MergeError::Verify)?;
    let mut expected: ValueMap = cur_map;
    for (k, vals) in &changes {
        if vals.is_empty() {
            expected.remove(k);
        } else {
            expected.insert(k.clone(), vals.clone());
        }
    }
    match Config::parse(&text) {
        Ok(cfg) if cfg.values() == expected => Ok(Merge {
            text,
            applied,
            refused,
        }),
        _ => Err(MergeError::Verify),
    }
}

/// Is `text[from..]` up to the end of its line only blanks or a comment?
/// Returns the offset just after that line's newline (or the end).
fn rest_of_line_is_blank(text: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < text.len() && matches!(text[i], b' ' | b'\t' | b'\r') {
        i += 1;
    }
    if i < text.len() && matches!(text[i], b'#' | b';') {
        while i < text.len() && text[i] != b'\n' {
            i += 1;
        }
    }
    match text.get(i) {
        None => Some(i),
        Some(b'\n') => Some(i + 1),
        Some(_) => None,
    }
}

fn at_line_start(text: &[u8], pos: usize) -> bool {
    pos == 0 || text[pos - 1] == b'\n'
}

fn at_line_end(text: &[u8], end: usize) -> bool {
    end == text.len() || (end > 0 && text[end - 1] == b'\n')
}

/// Replace the entries of the changed keys in `text` by the new values:
/// delete their lines (and a section header left empty), insert the new ones
/// after the last line of the last header of their section, or in a new
/// section at the end. `None` if a new key cannot be written.
fn edit(text: &[u8], cfg: &Config, changes: &[(Vec<u8>, Vec<Value>)]) -> Option<Vec<u8>> {
    let deleted: Vec<bool> = cfg
        .entries
        .iter()
        .map(|e| changes.iter().any(|(k, _)| *k == e.key))
        .collect();
    // New lines grouped by section prefix (`remote.up`), in first-seen order.
    let mut groups: Vec<(&[u8], Vec<u8>)> = Vec::new();
    for (key, vals) in changes {
        let parts = split_key(key)?;
        let prefix = &key[..key.len() - parts.name.len() - 1];
        let at = match groups.iter().position(|(p, _)| *p == prefix) {
            Some(i) => i,
            None => {
                groups.push((prefix, Vec::new()));
                groups.len() - 1
            }
        };
        let lines = &mut groups[at].1;
        for v in vals {
            lines.extend(format_entry(parts.name, v.as_deref()).ok()?);
        }
    }
    let mut inserts: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut anchors = BTreeSet::new();
    let mut tail = Vec::new();
    for (prefix, lines) in groups {
        if lines.is_empty() {
            continue;
        }
        match cfg.headers.iter().rposition(|h| h.prefix == prefix) {
            Some(h) => {
                anchors.insert(h);
                let last_kept = cfg
                    .entries
                    .iter()
                    .zip(&deleted)
                    .filter(|(e, d)| e.header == Some(h) && !**d)
                    .map(|(e, _)| e.span.end)
                    .max();
                let pos = last_kept.unwrap_or(cfg.headers[h].span.end);
                let mut ins = Vec::new();
                let pos = if at_line_start(text, pos) {
                    pos
                } else if let Some(next) = rest_of_line_is_blank(text, pos) {
                    if !at_line_start(text, next) {
                        ins.push(b'\n');
                    }
                    next
                } else {
                    ins.push(b'\n');
                    pos
                };
                ins.extend(lines);
                inserts.push((pos, ins));
            }
            None => {
                let parts = split_key(&[prefix, b".x"].concat())?.to_owned_parts();
                tail.extend(format_header(&parts.0, parts.1.as_deref()).ok()?);
                tail.extend(lines);
            }
        }
    }
    if !tail.is_empty() {
        let mut ins = Vec::new();
        if !at_line_start(text, text.len()) {
            ins.push(b'\n');
        }
        ins.extend(tail);
        inserts.push((text.len(), ins));
    }
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for (e, d) in cfg.entries.iter().zip(&deleted) {
        if *d {
            ranges.push(e.span.clone());
        }
    }
    for (h, header) in cfg.headers.iter().enumerate() {
        let mut own = cfg
            .entries
            .iter()
            .zip(&deleted)
            .filter(|(e, _)| e.header == Some(h));
        let emptied = own.clone().next().is_some() && own.all(|(_, d)| *d);
        if emptied && !anchors.contains(&h) {
            let end = rest_of_line_is_blank(text, header.span.end).unwrap_or(header.span.end);
            ranges.push(header.span.start..end);
        }
    }
    Some(splice(text, ranges, inserts))
}

/// Delete `ranges` (widened to whole lines where they are alone on them) and
/// insert `inserts`, in one pass.
fn splice(
    text: &[u8],
    mut ranges: Vec<Range<usize>>,
    mut inserts: Vec<(usize, Vec<u8>)>,
) -> Vec<u8> {
    for r in &mut ranges {
        // The blanks before a range that runs to the end of its line go too.
        if at_line_end(text, r.end) {
            while r.start > 0 && matches!(text[r.start - 1], b' ' | b'\t') {
                r.start -= 1;
            }
        }
    }
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    inserts.sort_by_key(|(p, _)| *p);
    let mut out = Vec::with_capacity(text.len() + 256);
    let (mut pos, mut ins) = (0, inserts.into_iter().peekable());
    for r in merged {
        while let Some((p, b)) = ins.next_if(|(p, _)| *p <= r.start) {
            out.extend_from_slice(&text[pos..p]);
            pos = p;
            out.extend(b);
        }
        out.extend_from_slice(&text[pos..r.start]);
        pos = r.end;
        // An insertion inside a deleted range goes where the range ended.
        while let Some((_, b)) = ins.next_if(|(p, _)| *p < r.end) {
            out.extend(b);
        }
    }
    for (p, b) in ins {
        out.extend_from_slice(&text[pos..p.max(pos)]);
        pos = p.max(pos);
        out.extend(b);
    }
    out.extend_from_slice(&text[pos..]);
    out
}

impl super::config::KeyParts<'_> {
    fn to_owned_parts(self) -> (Vec<u8>, Option<Vec<u8>>) {
        (self.section.to_vec(), self.subsection.map(<[u8]>::to_vec))
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;
    use crate::git::policy::MERGE_BACK;

    const HOST: &str =
        "[remote \"origin\"]\n\turl = https://example.com/o.git\n[user]\n\tname = t\n";

    fn step(base: &str, prev: &str, cur: &str, sandbox: &str) -> Merge {
        merge_since(
            base.as_bytes(),
            prev.as_bytes(),
            cur.as_bytes(),
            sandbox.as_bytes(),
            &MERGE_BACK,
            &Context::default(),
        )
        .unwrap()
    }

    fn keys(v: &[Vec<u8>]) -> Vec<String> {
        v.iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    #[test]
    fn each_command_merges_only_its_own_changes() {
        // Command 1: user.name applied, an alias refused.
        let c1 = format!("{HOST}[alias]\n\tx = !id\n").replace("name = t", "name = a");
        let m1 = step(HOST, HOST, HOST, &c1);
        assert_eq!(keys(&m1.applied), ["user.name"]);
        assert_eq!(m1.refused.len(), 1);
        let host1 = String::from_utf8(m1.text).unwrap();
        // Command 2 changes user.name again: applied (the host's value is ours, not a
        // change on the host), and the alias is not judged (or said) again.
        let c2 = c1.replace("name = a", "name = b");
        let m2 = step(HOST, &c1, &host1, &c2);
        assert_eq!(keys(&m2.applied), ["user.name"]);
        assert!(m2.refused.is_empty(), "{:?}", m2.refused);
        assert!(String::from_utf8_lossy(&m2.text).contains("name = b"));
        // Command 3 changes nothing: nothing said.
        let host2 = String::from_utf8(m2.text).unwrap();
        let m3 = step(HOST, &c2, &host2, &c2);
        assert!(m3.applied.is_empty() && m3.refused.is_empty());
    }

    #[test]
    fn a_copy_that_lost_a_remote_the_host_has_cannot_add_to_it() {
        // The copy has no "origin" (whatever an earlier command did) while the host
        // still has it: a push URL for "origin" changes the host's existing remote.
        let prev = "[user]\n\tname = t\n";
        let c2 = format!("{prev}[remote \"origin\"]\n\tpushurl = https://evil.example/x.git\n");
        let m = step(HOST, prev, HOST, &c2);
        assert!(m.applied.is_empty(), "{:?}", keys(&m.applied));
        assert_eq!(m.refused.len(), 1);
        assert!(!String::from_utf8_lossy(&m.text).contains("evil"));
        // Also for a remote the host added after the session started.
        let host = format!("{HOST}[remote \"new\"]\n\turl = https://example.com/n.git\n");
        let c3 = format!("{HOST}[remote \"new\"]\n\tpushurl = https://evil.example/x.git\n");
        let m = step(HOST, HOST, &host, &c3);
        assert!(m.applied.is_empty(), "{:?}", keys(&m.applied));
    }

    #[test]
    fn a_change_on_the_host_between_commands_is_kept() {
        let c1 = HOST.replace("name = t", "name = a");
        let host = HOST.replace("name = t", "name = user-set");
        let m = step(HOST, HOST, &host, &c1);
        assert!(m.applied.is_empty());
        assert!(String::from_utf8_lossy(&m.text).contains("name = user-set"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::policy::{MERGE_BACK, NESTED};

    fn m(base: &str, sandbox: &str) -> Merge {
        merge(
            base.as_bytes(),
            base.as_bytes(),
            sandbox.as_bytes(),
            &MERGE_BACK,
            &Context::default(),
        )
        .unwrap()
    }

    fn text(m: &Merge) -> &str {
        std::str::from_utf8(&m.text).unwrap()
    }

    const BASE: &str = "[core]\n\trepositoryformatversion = 0\n\tbare = false\n# the origin\n[remote \"origin\"]\n\turl = https://example.com/o.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n";

    #[test]
    fn remote_add_appends_a_section_and_keeps_the_rest() {
        let sandbox = format!(
            "{BASE}[remote \"up\"]\n\turl = https://example.com/u.git\n\tfetch = +refs/heads/*:refs/remotes/up/*\n[core]\n\tfsmonitor = evil\n"
        );
        let r = m(BASE, &sandbox);
        assert_eq!(
            text(&r),
            format!(
                "{BASE}[remote \"up\"]\n\turl = https://example.com/u.git\n\tfetch = +refs/heads/*:refs/remotes/up/*\n"
            )
        );
        assert_eq!(
            r.refused,
            vec![(b"core.fsmonitor".to_vec(), Refusal::NotAllowed)]
        );
        assert_eq!(
            r.summary(".git/config").unwrap(),
            "shellcage: .git/config: merged remote.up.url, remote.up.fetch; refused core.fsmonitor (not allowed)"
        );
    }

    #[test]
    fn remote_remove_removes_the_section() {
        let r = m(
            BASE,
            "[core]\n\trepositoryformatversion = 0\n\tbare = false\n",
        );
        assert_eq!(
            text(&r),
            "[core]\n\trepositoryformatversion = 0\n\tbare = false\n# the origin\n"
        );
        assert!(r.refused.is_empty());
    }

    #[test]
    fn set_in_existing_section_goes_after_its_last_line() {
        let base = "[user]\n\tname = a\n[core]\n\tbare = false\n";
        let r = m(
            base,
            "[user]\n\tname = b\n\temail = e@example.com\n[core]\n\tbare = false\n",
        );
        assert_eq!(
            text(&r),
            "[user]\n\tname = b\n\temail = e@example.com\n[core]\n\tbare = false\n"
        );
    }

    #[test]
    fn refused_keys_in_every_disguise() {
        for sandbox in [
            "[Core]\n\tFSMonitor = evil\n",
            "[core]\n\tfsmonitor\n",
            "[core.x]\n\tfsmonitor = evil\n",
            "[include]\n\tpath = /tmp/x\n",
            "[includeIf \"gitdir:/\"]\n\tpath = /tmp/x\n",
            "[alias]\n\tst = !sh\n",
            "[url \"ext::sh\"]\n\tinsteadOf = https://\n",
            "[remote \"up\"]\n\turl = ext::sh -c evil\n",
            "[remote \"up\"]\n\tuploadpack = evil\n",
            "[submodule \"s\"]\n\tupdate = !evil\n",
            "[remote \"origin\"]\n\turl = https://example.org/evil.git\n",
        ] {
            let r = m(BASE, &format!("{BASE}{sandbox}"));
            assert_eq!(text(&r), BASE, "{sandbox:?}");
            assert!(!r.refused.is_empty(), "{sandbox:?}");
        }
    }

    #[test]
    fn header_and_entry_on_one_line_and_no_trailing_newline() {
        let base = "[user] name = a";
        let r = m(base, "[user] name = b");
        assert_eq!(text(&r), "[user]\n\tname = b\n");
        let r = m("[core]bare=false", "[core]bare=false\n[user]\nname=x");
        assert_eq!(text(&r), "[core]bare=false\n[user]\n\tname = x\n");
        let r = m("[user] # me\n", "[user]\n\tname = x\n");
        assert_eq!(text(&r), "[user] # me\n\tname = x\n");
    }

    #[test]
    fn host_change_during_the_run_wins() {
        let base = b"[user]\n\tname = a\n";
        let current = b"[user]\n\tname = host\n";
        let r = merge(
            base,
            current,
            b"[user]\n\tname = sandbox\n",
            &MERGE_BACK,
            &Context::default(),
        )
        .unwrap();
        assert_eq!(r.text, current);
        assert_eq!(
            r.refused,
            vec![(b"user.name".to_vec(), Refusal::ChangedOnHost)]
        );
    }

    #[test]
    fn unreadable_sandbox_config_merges_nothing() {
        let err = merge(b"", b"", b"[core\n", &MERGE_BACK, &Context::default()).unwrap_err();
        assert!(
            matches!(err, MergeError::Sandbox(ParseError::Syntax { line: 2 })),
            "{err:?}"
        );
    }

    #[test]
    fn merge_into_file_applies_under_the_lock() {
        let d = tempfile::tempdir().unwrap();
        let (host, copy) = (d.path().join("config"), d.path().join("copy"));
        std::fs::write(&host, BASE).unwrap();
        std::fs::write(
            &copy,
            format!("{BASE}[remote \"up\"]\n\turl = /srv/u\n[alias]\n\tx = !sh\n"),
        )
        .unwrap();
        let r = merge_into_file(
            &host,
            BASE.as_bytes(),
            &copy,
            &MERGE_BACK,
            &Context::default(),
        )
        .unwrap();
        assert_eq!(r.refused.len(), 1);
        assert_eq!(
            std::fs::read_to_string(&host).unwrap(),
            format!("{BASE}[remote \"up\"]\n\turl = /srv/u\n")
        );
        assert!(!d.path().join("config.lock").exists());
        std::fs::remove_file(&copy).unwrap();
        std::os::unix::fs::symlink(&host, &copy).unwrap();
        let err = merge_into_file(
            &host,
            BASE.as_bytes(),
            &copy,
            &MERGE_BACK,
            &Context::default(),
        );
        assert!(matches!(err, Err(MergeError::File(_))), "{err:?}");
        std::fs::remove_file(&copy).unwrap();
        let err = merge_into_file(
            &host,
            BASE.as_bytes(),
            &copy,
            &MERGE_BACK,
            &Context::default(),
        );
        assert!(matches!(err, Err(MergeError::NoSandboxCopy)));
    }

    #[test]
    fn nested_policy_keeps_a_clone_usable() {
        let clone = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n\tfsmonitor = evil\n[remote \"origin\"]\n\turl = https://example.com/x.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n[branch \"main\"]\n\tremote = origin\n\tmerge = refs/heads/main\n[alias]\n\tx = !evil\n";
        let r = merge(b"", b"", clone.as_bytes(), &NESTED, &Context::default()).unwrap();
        let got = Config::parse(&r.text).unwrap().values();
        assert!(got.contains_key(&b"remote.origin.url"[..]));
        assert!(got.contains_key(&b"core.bare"[..]));
        assert!(!got.contains_key(&b"core.fsmonitor"[..]));
        assert!(!got.contains_key(&b"alias.x"[..]));
        assert_eq!(r.refused.len(), 2);
    }
}

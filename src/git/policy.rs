//! Which configuration keys may cross from a sandbox to the host.
//!
//! Default deny: a key is allowed only if a row below names it, and only with
//! a value its row accepts. Everything else is refused, whatever its case or
//! syntax, because the rows match the flat key git itself compares
//! (`Core.FSMonitor`, `[core "x"] fsmonitor` and `[core.x] fsmonitor` are
//! `core.fsmonitor`, `core.x.fsmonitor` and `core.x.fsmonitor`). The tests
//! below list every key git documents as running a program, reading or
//! writing another file, or redirecting where git connects to, and check
//! each is refused.

use super::config::{Value, split_key};
use std::path::{Component, Path, PathBuf};

/// Does the row need a subsection (`remote.<name>.url`) or forbid one?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    None,
    Any,
}

/// What a value must look like. Every check also refuses control characters
/// and a leading `-` (option injection), except where a row lists exact
/// values (`--tags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Free text (a person's name, a description).
    Text,
    /// A remote, branch or ref name.
    Name,
    /// A repository URL git fetches from or pushes to (see [`url_is_safe`]).
    Url,
    /// A refspec (`+refs/heads/*:refs/remotes/o/*`, `^refs/x`).
    Refspec,
    /// true/false/yes/no/on/off/1/0, or no value.
    Bool,
    /// Exactly one of these (lower-case compare), or a boolean if `bool`.
    OneOf(&'static [&'static str], bool),
    /// A path that must stay inside the workspace (`core.worktree` of a
    /// repository made in it), relative to the git directory.
    InsideWorkspace,
}

/// Extra condition on the change as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    None,
    /// The remote must not exist in the host's file: adding a remote is
    /// allowed, pointing an existing one (`origin`) somewhere else is not
    /// (the next `git push` would go there). Removing values is allowed.
    NewRemoteOnly,
}

#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub section: &'static str,
    pub sub: Sub,
    pub name: &'static str,
    pub check: Check,
    pub guard: Guard,
}

const fn r(section: &'static str, sub: Sub, name: &'static str, check: Check) -> Rule {
    Rule {
        section,
        sub,
        name,
        check,
        guard: Guard::None,
    }
}

const fn g(section: &'static str, name: &'static str, check: Check, guard: Guard) -> Rule {
    Rule {
        section,
        sub: Sub::Any,
        name,
        check,
        guard,
    }
}

use Check::*;
use Sub::{Any, None as No};

const REBASE: Check = OneOf(&["merges", "interactive", "i", "m"], true);

/// Keys that only name things: merged from a sandbox's private copy of
/// `.git/config` into the host's file.
#[rustfmt::skip]
pub const MERGE: &[Rule] = &[
    // identity
    r("user", No, "name", Text),                r("user", No, "email", Text),
    r("author", No, "name", Text),              r("author", No, "email", Text),
    r("committer", No, "name", Text),           r("committer", No, "email", Text),
    // remotes (git remote add/rename/remove/set-url)
    g("remote", "url", Url, Guard::NewRemoteOnly),
    g("remote", "pushurl", Url, Guard::NewRemoteOnly),
    r("remote", Any, "fetch", Refspec),         r("remote", Any, "push", Refspec),
    r("remote", Any, "tagopt", OneOf(&["--tags", "--no-tags"], false)),
    r("remote", Any, "prune", Bool),            r("remote", Any, "prunetags", Bool),
    r("remote", Any, "skipdefaultupdate", Bool), r("remote", Any, "skipfetchall", Bool),
    r("remote", No, "pushdefault", Name),
    // branches (git branch -u, git push -u, git checkout -b --track)
    r("branch", Any, "remote", Name),           r("branch", Any, "pushremote", Name),
    r("branch", Any, "merge", Name),            r("branch", Any, "rebase", REBASE),
    r("branch", Any, "description", Text),
    // submodules (git submodule add/init/deinit)
    r("submodule", Any, "url", Url),            r("submodule", Any, "active", Bool),
    r("submodule", Any, "branch", Name),
    r("submodule", Any, "fetchrecursesubmodules", OneOf(&["on-demand"], true)),
    r("submodule", Any, "ignore", OneOf(&["none", "untracked", "dirty", "all"], false)),
    r("submodule", No, "active", Text),
    // plain behaviour switches with closed value sets
    r("init", No, "defaultbranch", Name),
    r("pull", No, "rebase", REBASE),            r("pull", No, "ff", OneOf(&["only"], true)),
    r("push", No, "default", OneOf(&["nothing", "current", "upstream", "tracking", "simple", "matching"], false)),
    r("push", No, "autosetupremote", Bool),
    r("fetch", No, "prune", Bool),              r("fetch", No, "prunetags", Bool),
];

/// What `git init`/`git clone`/`git submodule` write into a new repository
/// that runs nothing: kept (with [`MERGE`]) when a repository made or changed
/// in the workspace is neutralised, so it stays usable.
#[rustfmt::skip]
pub const REPO_FORMAT: &[Rule] = &[
    r("core", No, "repositoryformatversion", OneOf(&["0", "1"], false)),
    r("core", No, "bare", Bool),                r("core", No, "filemode", Bool),
    r("core", No, "logallrefupdates", OneOf(&["always"], true)),
    r("core", No, "ignorecase", Bool),          r("core", No, "precomposeunicode", Bool),
    r("core", No, "symlinks", Bool),
    // a submodule's git dir names its working tree (.git/modules/x: ../../../x)
    r("core", No, "worktree", InsideWorkspace),
    r("extensions", No, "objectformat", OneOf(&["sha1", "sha256"], false)),
    // a format name only: `reftable://<path>` would store refs elsewhere
    r("extensions", No, "refstorage", OneOf(&["files", "reftable"], false)),
];

/// A set of tables: the merge-back uses [`MERGE_BACK`], neutralising a
/// repository made in the workspace uses [`NESTED`].
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub tables: &'static [&'static [Rule]],
}

pub const MERGE_BACK: Policy = Policy { tables: &[MERGE] };
pub const NESTED: Policy = Policy {
    tables: &[MERGE, REPO_FORMAT],
};

/// What a check needs to know about where the file lives.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Remote names (`remote.<name>.*` subsections) in the host's file.
    pub existing_remotes: Vec<Vec<u8>>,
    /// The git directory the file belongs to and the workspace, for
    /// [`Check::InsideWorkspace`]; without them such keys are refused.
    pub git_dir: Option<PathBuf>,
    pub workspace: Option<PathBuf>,
}

impl Context {
    /// Remotes named in `base` (the host's file before the run).
    pub fn with_remotes_of(mut self, base: &super::config::ValueMap) -> Self {
        for key in base.keys() {
            if let Some(p) = split_key(key) {
                if p.section == b"remote" {
                    if let Some(sub) = p.subsection {
                        if !self.existing_remotes.iter().any(|r| r == sub) {
                            self.existing_remotes.push(sub.to_vec());
                        }
                    }
                }
            }
        }
        self
    }
}

/// Why a change was refused (for the report; values are never printed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not on the allowlist: may run a program, read a file or redirect git.
    NotAllowed,
    /// On the allowlist, but a value is not of the allowed form.
    BadValue,
    /// The subsection has control characters or starts with `-`.
    BadSubsection,
    /// Would point an existing remote somewhere else.
    ExistingRemote,
    /// The host's file changed the same key during the run.
    ChangedOnHost,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::NotAllowed => "not allowed",
            Refusal::BadValue => "value not allowed",
            Refusal::BadSubsection => "name not allowed",
            Refusal::ExistingRemote => "changes an existing remote",
            Refusal::ChangedOnHost => "changed on the host meanwhile",
        })
    }
}

impl Policy {
    pub fn rule(&self, key: &[u8]) -> Option<&'static Rule> {
        let p = split_key(key)?;
        self.tables.iter().flat_map(|t| t.iter()).find(|r| {
            r.section.as_bytes() == p.section
                && r.name.as_bytes() == p.name
                && (r.sub == Sub::Any) == p.subsection.is_some()
        })
    }

    /// May `key` go from `before` (the host's values) to `after`?
    pub fn judge(
        &self,
        key: &[u8],
        before: &[Value],
        after: &[Value],
        ctx: &Context,
    ) -> Result<(), Refusal> {
        let rule = self.rule(key).ok_or(Refusal::NotAllowed)?;
        let parts = split_key(key).ok_or(Refusal::NotAllowed)?;
        if let Some(sub) = parts.subsection {
            if sub.is_empty() || sub[0] == b'-' || sub.iter().any(|&b| b < 0x20 || b == 0x7f) {
                return Err(Refusal::BadSubsection);
            }
        }
        for v in after {
            if !value_ok(rule.check, v.as_deref(), ctx) {
                return Err(Refusal::BadValue);
            }
        }
        if rule.guard == Guard::NewRemoteOnly {
            let remote = parts.subsection.unwrap_or_default();
            let exists = ctx.existing_remotes.iter().any(|r| r == remote);
            if exists && after.iter().any(|v| !before.contains(v)) {
                return Err(Refusal::ExistingRemote);
            }
        }
        Ok(())
    }
}

const MAX_VALUE: usize = 4096;

fn value_ok(check: Check, v: Option<&[u8]>, ctx: &Context) -> bool {
    let Some(v) = v else {
        return matches!(check, Bool | OneOf(_, true));
    };
    if v.len() > MAX_VALUE || v.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return false;
    }
    if let OneOf(words, also_bool) = check {
        return words.iter().any(|w| v.eq_ignore_ascii_case(w.as_bytes()))
            || (also_bool && is_bool(v));
    }
    if v.first() == Some(&b'-') {
        return false;
    }
    match check {
        Text => true,
        Name => !v.is_empty() && !v.contains(&b' '),
        Refspec => !v.is_empty() && !v.contains(&b' '),
        Bool => is_bool(v),
        Url => url_is_safe(v),
        InsideWorkspace => inside_workspace(v, ctx),
        OneOf(..) => unreachable!("handled above"),
    }
}

fn is_bool(v: &[u8]) -> bool {
    ["true", "false", "yes", "no", "on", "off", "1", "0"]
        .iter()
        .any(|w| v.eq_ignore_ascii_case(w.as_bytes()))
}

/// A URL git may use without running anything but its own transports:
/// `https`, `http`, `ssh` (`git+ssh`, `ssh+git`), `git` and `file` URLs,
/// scp-like `host:path` and local paths. Refused: `<helper>::<address>`
/// (`ext::sh -c …` runs a command, `fd::`), any other `scheme://` (git runs
/// `git-remote-<scheme>` from PATH), and a user or host starting with `-`.
pub fn url_is_safe(v: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(v) else {
        return false;
    };
    if s.is_empty() || s.starts_with('-') {
        return false;
    }
    // transport.c: scheme characters directly followed by "::" name a remote helper.
    let scheme_len = s
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'))
        .count();
    if scheme_len > 0 && s[scheme_len..].starts_with("::") {
        return false;
    }
    if let Some((scheme, rest)) = s.split_once("://") {
        let known = ["https", "http", "ssh", "git+ssh", "ssh+git", "git", "file"];
        if !known.iter().any(|k| scheme.eq_ignore_ascii_case(k)) {
            return false;
        }
        let authority = rest.split('/').next().unwrap_or("");
        let host = authority.rsplit('@').next().unwrap_or("");
        return !authority.starts_with('-') && !host.starts_with('-');
    }
    // scp-like [user@]host:path (a colon before any slash), or a local path.
    if let Some(colon) = s.find(':') {
        if !s[..colon].contains('/') {
            let host = s[..colon].rsplit('@').next().unwrap_or("");
            return !host.starts_with('-');
        }
    }
    true
}

/// Does `v`, taken relative to the git directory, stay inside the workspace?
/// Judged on the path as written and, where it exists, as resolved.
fn inside_workspace(v: &[u8], ctx: &Context) -> bool {
    let (Some(git_dir), Some(ws)) = (&ctx.git_dir, &ctx.workspace) else {
        return false;
    };
    let Ok(s) = std::str::from_utf8(v) else {
        return false;
    };
    let joined = git_dir.join(s);
    let mut lexical = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    let real = std::fs::canonicalize(&joined).unwrap_or_else(|_| lexical.clone());
    let ws_real = std::fs::canonicalize(ws).unwrap_or_else(|_| ws.clone());
    lexical.starts_with(ws) && real.starts_with(Path::new(&ws_real))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(policy: &Policy, key: &str, value: Option<&str>) -> bool {
        let after = [value.map(|v| v.as_bytes().to_vec())];
        policy
            .judge(key.as_bytes(), &[], &after, &Context::default())
            .is_ok()
    }

    /// Keys git documents (Documentation/config/*.adoc, 2026 master) as
    /// running a program, reading or writing a file, changing where git
    /// connects, or changing what git trusts. `<x>` stands for any
    /// subsection. Each must be refused by both policies.
    const DANGEROUS: &[&str] = &[
        // core: programs, files, hooks, other directories
        "core.fsmonitor",
        "core.hookspath",
        "core.sshcommand",
        "core.pager",
        "core.editor",
        "core.askpass",
        "core.gitproxy",
        "core.attributesfile",
        "core.excludesfile",
        "core.alternaterefscommand",
        "core.sharedrepository",
        "core.untrackedcache",
        "core.fsmonitorhookversion",
        "core.packedgitwindowsize",
        "core.createobject",
        "core.x.fsmonitor",
        "core.worktree",
        // includes
        "include.path",
        "includeif.gitdir:/x/.path",
        "includeif.onbranch:main.path",
        "includeif.hasconfig:remote.*.url:x.path",
        // aliases (`!cmd`) and config-based hooks
        "alias.st",
        "alias.x.command",
        "hook.x.command",
        "hook.x.event",
        // drivers and filters
        "filter.x.clean",
        "filter.x.smudge",
        "filter.x.process",
        "filter.x.required",
        "diff.x.textconv",
        "diff.x.command",
        "diff.external",
        "diff.tool",
        "diff.guitool",
        "merge.x.driver",
        "merge.tool",
        "merge.guitool",
        "interactive.difffilter",
        "difftool.x.cmd",
        "difftool.x.path",
        "mergetool.x.cmd",
        "mergetool.x.path",
        "guitool.x.cmd",
        "man.x.cmd",
        "man.x.path",
        "browser.x.cmd",
        "browser.x.path",
        "web.browser",
        "instaweb.httpd",
        "instaweb.browser",
        "help.browser",
        // credentials, signing
        "credential.helper",
        "credential.https://example.com.helper",
        "credential.usehttppath",
        "gpg.program",
        "gpg.ssh.program",
        "gpg.x509.program",
        "gpg.openpgp.program",
        "gpg.ssh.defaultkeycommand",
        "gpg.ssh.allowedsignersfile",
        "gpg.format",
        "user.signingkey",
        "commit.gpgsign",
        "tag.gpgsign",
        "push.gpgsign",
        // editors and pagers
        "sequence.editor",
        "pager.log",
        "pager.x",
        "color.pager",
        // files read or written
        "commit.template",
        "blame.ignorerevsfile",
        "fsck.skiplist",
        "mailmap.file",
        "mailmap.blob",
        "http.cookiefile",
        "http.sslcert",
        "http.sslkey",
        "http.sslcainfo",
        "http.sslcapath",
        "http.proxysslcert",
        "http.proxysslkey",
        "http.proxysslcainfo",
        "attr.tree",
        "init.templatedir",
        "gitcvs.logfile",
        "gitcvs.dbname",
        "gitcvs.dbdriver",
        "sendemail.smtpserver",
        "sendemail.aliasesfile",
        "sendemail.tocmd",
        "sendemail.cccmd",
        "sendemail.x.smtpserver",
        "imap.tunnel",
        "trailer.x.command",
        "trailer.x.cmd",
        "notes.displayref",
        "notes.rewriteref",
        // where git connects, what it sends, transports
        "url.https://example.com/.insteadof",
        "url.x.pushinsteadof",
        "http.proxy",
        "http.x.proxy",
        "http.extraheader",
        "https.proxy",
        "remote.x.proxy",
        "remote.x.uploadpack",
        "remote.x.receivepack",
        "remote.x.vcs",
        "remote.x.mirror",
        "remote.x.promisor",
        "remote.x.partialclonefilter",
        "remote.x.serveroption",
        "remote.x.proxyauthmethod",
        "protocol.allow",
        "protocol.ext.allow",
        "protocol.file.allow",
        "ssh.variant",
        "transfer.fsckobjects",
        "transfer.hiderefs",
        "transfer.credentialsinurl",
        "uploadpack.packobjectshook",
        "uploadpack.hiderefs",
        "receive.procreceiverefs",
        "receive.denycurrentbranch",
        "fetch.negotiationalgorithm",
        "submodule.x.update",
        "submodule.x.gitdir",
        "submodule.recurse",
        "fetch.recursesubmodules",
        "branch.x.mergeoptions",
        // what git trusts, repository format, background work
        "safe.directory",
        "safe.barerepository",
        "extensions.worktreeconfig",
        "extensions.partialclone",
        "extensions.preciousobjects",
        "extensions.submodulepathconfig",
        "gc.recentobjectshook",
        "gc.auto",
        "maintenance.auto",
        "maintenance.strategy",
        "maintenance.x.schedule",
        "help.autocorrect",
        "worktree.guessremote",
        "lfs.url",
        "lfs.x.access",
    ];

    #[test]
    fn every_dangerous_key_is_refused() {
        let values = [
            Some(&b"x"[..]),
            Some(b"true"),
            Some(b"/tmp"),
            Some(b"../x"),
            None,
        ];
        for key in DANGEROUS {
            // The parser lower-cases section and name: `Core.FSMonitor` is this key.
            assert_eq!(key.to_ascii_lowercase(), *key);
            for policy in [MERGE_BACK, NESTED] {
                for v in values {
                    let after = [v.map(<[u8]>::to_vec)];
                    let verdict = policy.judge(key.as_bytes(), &[], &after, &Context::default());
                    assert!(verdict.is_err(), "{key} = {v:?} must be refused");
                }
            }
        }
    }

    #[test]
    fn allowed_rows_name_documented_keys_without_dangerous_overlap() {
        for rule in MERGE.iter().chain(REPO_FORMAT) {
            assert!(rule.section.bytes().all(|b| b.is_ascii_lowercase()));
            assert!(
                rule.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-')
            );
        }
    }

    #[test]
    fn subsection_and_shape_matter() {
        assert!(ok(
            &MERGE_BACK,
            "remote.up.url",
            Some("https://example.com/r.git")
        ));
        assert!(!ok(
            &MERGE_BACK,
            "remote.url",
            Some("https://example.com/r.git")
        ));
        assert!(!ok(&MERGE_BACK, "user.x.name", Some("n")));
        assert!(!ok(&MERGE_BACK, "remote.-x.url", Some("/r")));
        assert!(!ok(&MERGE_BACK, "remote.a\u{1}b.url", Some("/r")));
        assert!(!ok(&MERGE_BACK, "core.bare", Some("true")));
        assert!(ok(&NESTED, "core.bare", Some("true")));
        assert!(!ok(&NESTED, "core.worktree", Some("..")), "needs a context");
    }

    #[test]
    fn values_that_smuggle_execution() {
        for bad in [
            "ext::sh -c touch% /tmp/x",
            "EXT::x",
            "fd::3",
            "foo::https://example.com/x",
            "evil://example.com/x",
            "ssh://-oProxyCommand=x/y",
            "ssh://user@-oProxyCommand=x/y",
            "-oProxyCommand=x:y",
            "-u",
            "https://example.com/\nx",
            "https://example.com/\tx",
            "",
        ] {
            assert!(!ok(&MERGE_BACK, "remote.up.url", Some(bad)), "{bad:?}");
            assert!(!ok(&MERGE_BACK, "submodule.s.url", Some(bad)), "{bad:?}");
        }
        for good in [
            "https://example.com/r.git",
            "ssh://git@example.com/r.git",
            "git@example.com:r.git",
            "file:///srv/r.git",
            "../sibling",
            "/srv/r.git",
            "https://[::1]:8080/r.git",
        ] {
            assert!(ok(&MERGE_BACK, "remote.up.url", Some(good)), "{good:?}");
        }
        assert!(!ok(&MERGE_BACK, "remote.up.url", None));
        assert!(ok(&MERGE_BACK, "remote.up.tagopt", Some("--no-tags")));
        assert!(!ok(
            &MERGE_BACK,
            "remote.up.tagopt",
            Some("--upload-pack=x")
        ));
        assert!(!ok(&MERGE_BACK, "branch.main.merge", Some("--x")));
        assert!(!ok(&MERGE_BACK, "user.name", Some("a\nb")));
        assert!(ok(&MERGE_BACK, "user.name", Some("Jürgen Ö")));
        assert!(ok(&MERGE_BACK, "fetch.prune", None));
        assert!(!ok(&MERGE_BACK, "fetch.prune", Some("sometimes")));
        assert!(ok(&NESTED, "extensions.refstorage", Some("reftable")));
        assert!(!ok(
            &NESTED,
            "extensions.refstorage",
            Some("reftable:///elsewhere")
        ));
    }

    #[test]
    fn existing_remote_cannot_be_redirected() {
        let ctx = Context {
            existing_remotes: vec![b"origin".to_vec()],
            ..Context::default()
        };
        let old = vec![Some(b"https://example.com/a".to_vec())];
        let new = vec![Some(b"https://example.org/evil".to_vec())];
        let key = b"remote.origin.url";
        assert_eq!(
            MERGE_BACK.judge(key, &old, &new, &ctx),
            Err(Refusal::ExistingRemote)
        );
        assert_eq!(
            MERGE_BACK.judge(b"remote.origin.pushurl", &[], &new, &ctx),
            Err(Refusal::ExistingRemote)
        );
        assert_eq!(
            MERGE_BACK.judge(key, &old, &[], &ctx),
            Ok(()),
            "removal is fine"
        );
        assert_eq!(MERGE_BACK.judge(b"remote.new.url", &[], &new, &ctx), Ok(()));
    }

    #[test]
    fn worktree_must_stay_inside_the_workspace() {
        let ws = tempfile::tempdir().unwrap();
        let gd = ws.path().join(".git/modules/sub");
        std::fs::create_dir_all(&gd).unwrap();
        std::fs::create_dir(ws.path().join("sub")).unwrap();
        let ctx = Context {
            git_dir: Some(gd),
            workspace: Some(ws.path().to_path_buf()),
            ..Context::default()
        };
        let judge =
            |v: &str| NESTED.judge(b"core.worktree", &[], &[Some(v.as_bytes().to_vec())], &ctx);
        assert_eq!(judge("../../../sub"), Ok(()));
        assert_eq!(judge("../../../.."), Err(Refusal::BadValue));
        assert_eq!(judge("/etc"), Err(Refusal::BadValue));
        std::os::unix::fs::symlink("/etc", ws.path().join("out")).unwrap();
        assert_eq!(judge("../../../out"), Err(Refusal::BadValue));
    }
}

//! The scrubbed environment: an allowlist of names, the tool settings of
//! [`super::envrules`], fixed values, and a refusal of secret-looking names
//! and credential-looking values that only `--env NAME` can override.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

use super::credential;
use super::envrules::{self, Rule};
use crate::policy::EnvPolicy;
use crate::policy::wildcard_match;

/// Names that look like credentials or that change how programs load code.
/// Matched case-insensitively against the whole name.
const SECRET_PATTERNS: &[&str] = &[
    "*TOKEN*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*CREDENTIAL*",
    "*API_KEY*",
    "*APIKEY*",
    "*PRIVATE_KEY*",
    "*ACCESS_KEY*",
    "*_AUTH",
    "*_AUTH_*",
    "AUTH_*",
    "*SESSION_KEY*",
    "*COOKIE*",
    "AWS_*",
    "AZURE_*",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GCLOUD_*",
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "GPG_*",
    "GNUPGHOME",
    "DBUS_*",
    "KUBECONFIG",
    "DOCKER_*",
    "XAUTHORITY",
    "LD_*",
    "*_PAT",
    "VAULT_*",
    "CLAUDE_CODE_OAUTH*",
];

/// Does `name` look like it carries a secret (or loader control)?
pub fn is_secret_name(name: &str) -> bool {
    let h = name.as_bytes();
    // `*X*` patterns: from each byte of the name, only those whose X starts
    // with it (a table built at compile time); the others one by one.
    let contains = h.iter().enumerate().any(|(i, c)| {
        let mut mask = CONTAINS_FIRST[c.to_ascii_uppercase() as usize];
        while mask != 0 {
            let k = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let p = SECRET_PATTERNS[k].as_bytes();
            let inner = &p[1..p.len() - 1];
            if h.len() - i >= inner.len() && h[i..i + inner.len()].eq_ignore_ascii_case(inner) {
                return true;
            }
        }
        false
    });
    if contains {
        return true;
    }
    // Patterns with a literal first byte: only those starting like the name.
    let mut mask = h
        .first()
        .map_or(0, |c| LITERAL_FIRST[c.to_ascii_uppercase() as usize]);
    while mask != 0 {
        let k = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        if pattern_match_ci(SECRET_PATTERNS[k], name) {
            return true;
        }
    }
    // The rest: `*X` suffixes.
    SECRET_PATTERNS
        .iter()
        .filter(|p| p.starts_with('*') && !is_contains_shape(p.as_bytes()))
        .any(|p| pattern_match_ci(p, name))
}

/// For each byte, a bit per pattern of [`SECRET_PATTERNS`] that starts with it.
const LITERAL_FIRST: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut k = 0;
    while k < SECRET_PATTERNS.len() {
        let p = SECRET_PATTERNS[k].as_bytes();
        if p[0] != b'*' {
            t[p[0] as usize] |= 1 << k;
        }
        k += 1;
    }
    t
};

const fn is_contains_shape(p: &[u8]) -> bool {
    p.len() > 2 && p[0] == b'*' && p[p.len() - 1] == b'*'
}

/// For each byte, a bit per `*X*` pattern of [`SECRET_PATTERNS`] whose X
/// starts with that byte.
const CONTAINS_FIRST: [u64; 256] = {
    assert!(SECRET_PATTERNS.len() <= 64);
    let mut t = [0u64; 256];
    let mut k = 0;
    while k < SECRET_PATTERNS.len() {
        let p = SECRET_PATTERNS[k].as_bytes();
        if is_contains_shape(p) {
            t[p[1] as usize] |= 1 << k;
        }
        k += 1;
    }
    t
};

/// `wildcard_match` of an upper-case pattern against `name` in any case,
/// with the common shapes (`*X*`, `X*`, `*X`, `X`) as plain byte tests and no
/// allocation: this runs for every variable of the caller on every launch.
pub(crate) fn pattern_match_ci(p: &str, name: &str) -> bool {
    let (p, h) = (p.as_bytes(), name.as_bytes());
    let lead = p.first() == Some(&b'*');
    let trail = p.len() > 1 && p.last() == Some(&b'*');
    let inner = &p[usize::from(lead)..p.len() - usize::from(trail)];
    // (A plain loop: `contains` is a memchr call, costly on these short slices.)
    #[allow(clippy::manual_contains)]
    if inner.iter().any(|&c| c == b'*') {
        return wildcard_match(p, name.to_ascii_uppercase().as_bytes());
    }
    let n = inner.len();
    if h.len() < n {
        return false;
    }
    match (lead, trail) {
        (true, true) => {
            n == 0
                || (0..=h.len() - n).any(|i| {
                    h[i].eq_ignore_ascii_case(&inner[0]) && h[i..i + n].eq_ignore_ascii_case(inner)
                })
        }
        (false, true) => h[..n].eq_ignore_ascii_case(inner),
        (true, false) => h[h.len() - n..].eq_ignore_ascii_case(inner),
        (false, false) => h.eq_ignore_ascii_case(inner),
    }
}

/// Values shellcage sets itself.
pub struct Fixed<'a> {
    pub home: &'a Path,
    pub user: &'a str,
    pub pwd: &'a Path,
    pub profile: &'a str,
    pub shell: Option<&'a Path>,
}

/// The environment the command gets, and what the report says about it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EnvOutcome {
    #[serde(skip)]
    pub vars: BTreeMap<String, String>,
    /// Names passed from the caller by the allowlist.
    pub passed: Vec<String>,
    /// Secret-looking names the allowlist or a tool rule matched but that
    /// were dropped (including the tool table's `Never` rows).
    pub dropped_secret: Vec<String>,
    /// Names the allowlist or a tool rule passes whose value looked like a
    /// credential (names only; the value is never kept).
    pub dropped_value: Vec<String>,
    /// Names passed or set by `--env` on the command line.
    pub explicit: Vec<String>,
    /// Set by shellcage because the network mode is `none` and they were
    /// unset ([`super::envrules::NO_NETWORK_DEFAULTS`]).
    pub no_network_defaults: Vec<&'static str>,
}

impl EnvOutcome {
    pub fn to_cstrings(&self) -> Vec<CString> {
        self.vars
            .iter()
            .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
            .collect()
    }
}

/// Build the command's environment from the caller's.
pub fn build(
    policy: &EnvPolicy,
    host: impl IntoIterator<Item = (OsString, OsString)>,
    fixed: &Fixed<'_>,
) -> EnvOutcome {
    let host: BTreeMap<String, String> = host
        .into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let mut out = EnvOutcome::default();
    for (name, value) in &host {
        let listed = policy
            .pass
            .iter()
            .any(|p| wildcard_match(p.as_bytes(), name.as_bytes()));
        // The table's `Never` rows apply to every name, listed or not; its
        // `Pass` rows only with `[env] tools` on.
        let rule = envrules::rule(name).map(|(r, _)| r);
        let by_rule = policy.tools && rule.is_some();
        if !listed && !by_rule {
            continue;
        }
        if rule == Some(Rule::Never) || is_secret_name(name) {
            out.dropped_secret.push(name.clone());
            continue;
        }
        if credential::looks_like_credential(value, credential::keylike_name(name)) {
            out.dropped_value.push(name.clone());
            continue;
        }
        out.vars.insert(name.clone(), value.clone());
        out.passed.push(name.clone());
    }
    for (name, value) in &policy.set {
        if is_secret_name(name) {
            out.dropped_secret.push(name.clone());
            continue;
        }
        out.vars.insert(name.clone(), value.clone());
    }
    out.vars
        .entry("PATH".into())
        .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
    out.vars
        .insert("HOME".into(), fixed.home.display().to_string());
    out.vars.insert("USER".into(), fixed.user.to_string());
    out.vars.insert("LOGNAME".into(), fixed.user.to_string());
    out.vars
        .insert("PWD".into(), fixed.pwd.display().to_string());
    out.vars.insert("TMPDIR".into(), "/tmp".into());
    out.vars.insert("SHELLCAGE".into(), "1".into());
    out.vars
        .insert("SHELLCAGE_PROFILE".into(), fixed.profile.to_string());
    if let Some(shell) = fixed.shell {
        out.vars.insert("SHELL".into(), shell.display().to_string());
    }
    // The command line is the user's own decision, secret-looking or not.
    for (name, value) in &policy.explicit {
        let value = match value {
            Some(v) => Some(v.clone()),
            None => host.get(name).cloned(),
        };
        if let Some(v) = value {
            out.vars.insert(name.clone(), v);
            out.explicit.push(name.clone());
        }
    }
    out
}

/// Look up `name` in PATH-style `path` and return the candidates to try, in order.
pub fn search_path(name: &str, path: &str) -> Vec<CString> {
    if name.contains('/') {
        return CString::new(name).into_iter().collect();
    }
    path.split(':')
        .map(|dir| if dir.is_empty() { "." } else { dir })
        .filter_map(|dir| {
            let mut full = Vec::from(Path::new(dir).as_os_str().as_bytes());
            full.push(b'/');
            full.extend_from_slice(name.as_bytes());
            CString::new(full).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pol(pass: &[&str]) -> EnvPolicy {
        EnvPolicy {
            tools: true,
            pass: pass.iter().map(|s| s.to_string()).collect(),
            set: Default::default(),
            explicit: vec![],
        }
    }

    fn host(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn fixed() -> Fixed<'static> {
        Fixed {
            home: Path::new("/home/u"),
            user: "u",
            pwd: Path::new("/w"),
            profile: "dev",
            shell: None,
        }
    }

    #[test]
    fn secret_names() {
        for n in [
            "GITHUB_TOKEN",
            "aws_secret_access_key",
            "AWS_PROFILE",
            "OPENAI_API_KEY",
            "SSH_AUTH_SOCK",
            "LD_PRELOAD",
            "DBUS_SESSION_BUS_ADDRESS",
            "NPM_TOKEN",
            "MY_PASSWORD",
            "DOCKER_HOST",
            "KUBECONFIG",
            "GPG_AGENT_INFO",
            "BASIC_AUTH",
            "XAUTHORITY",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in [
            "PATH",
            "LANG",
            "LC_ALL",
            "TERM",
            "GIT_AUTHOR_NAME",
            "HOME",
            "AUTHOR",
            "CARGO_HOME",
            "RUSTUP_HOME",
        ] {
            assert!(!is_secret_name(n), "{n}");
        }
    }

    #[test]
    fn pattern_shapes_agree_with_the_wildcard_matcher() {
        let patterns = SECRET_PATTERNS.iter().chain(
            crate::sandbox::envrules::TOOL_RULES
                .iter()
                .map(|(p, _, _)| p),
        );
        for p in patterns {
            for name in [
                "GITHUB_TOKEN",
                "github_token",
                "TOKEN",
                "AUTH_X",
                "X_AUTH",
                "X_AUTH_Y",
                "AWS",
                "aws_",
                "LD_PRELOAD",
                "OLD_X",
                "A",
                "",
                "npm_config_https_proxy",
                "NPM_CONFIG_//H/:_AUTH",
                "GOPATH",
                "YARN_PROXY",
                "PIP_X",
                "CC",
                "ADO_PAT",
            ] {
                assert_eq!(
                    pattern_match_ci(p, name),
                    wildcard_match(p.as_bytes(), name.to_ascii_uppercase().as_bytes()),
                    "{p} {name}"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn secret_names_match_the_table_literally(name in "[A-Za-z_]{0,6}(TOKEN|SECRET|AUTH|AWS_|LD_|_PAT|KEY|X)?[A-Za-z_]{0,6}") {
            let plain = SECRET_PATTERNS
                .iter()
                .any(|p| wildcard_match(p.as_bytes(), name.to_ascii_uppercase().as_bytes()));
            proptest::prop_assert_eq!(is_secret_name(&name), plain, "{}", name);
        }
    }

    #[test]
    fn allowlist_and_secret_refusal() {
        let mut p = pol(&["PATH", "LC_*", "*"]);
        p.set.insert("EDITOR".into(), "true".into());
        let out = build(
            &p,
            host(&[
                ("PATH", "/bin"),
                ("LC_ALL", "C"),
                ("GITHUB_TOKEN", "x"),
                ("LD_PRELOAD", "/evil.so"),
            ]),
            &fixed(),
        );
        assert_eq!(out.vars["PATH"], "/bin");
        assert_eq!(out.vars["LC_ALL"], "C");
        assert_eq!(out.vars["EDITOR"], "true");
        assert!(!out.vars.contains_key("GITHUB_TOKEN") && !out.vars.contains_key("LD_PRELOAD"));
        assert_eq!(
            out.dropped_secret,
            vec!["GITHUB_TOKEN".to_string(), "LD_PRELOAD".to_string()]
        );
        assert_eq!(out.vars["SHELLCAGE"], "1");
        assert_eq!(out.vars["HOME"], "/home/u");
        assert_eq!(out.vars["TMPDIR"], "/tmp");
    }

    #[test]
    fn not_listed_is_not_passed() {
        let out = build(&pol(&["PATH"]), host(&[("FOO", "1")]), &fixed());
        assert!(!out.vars.contains_key("FOO"));
    }

    #[test]
    fn explicit_env_passes_secrets_and_sets_values() {
        let mut p = pol(&[]);
        p.explicit = vec![
            ("GITHUB_TOKEN".into(), None),
            ("X".into(), Some("1".into())),
            ("ABSENT".into(), None),
        ];
        let out = build(&p, host(&[("GITHUB_TOKEN", "t")]), &fixed());
        assert_eq!(out.vars["GITHUB_TOKEN"], "t");
        assert_eq!(out.vars["X"], "1");
        assert!(!out.vars.contains_key("ABSENT"));
        assert_eq!(
            out.explicit,
            vec!["GITHUB_TOKEN".to_string(), "X".to_string()]
        );
    }

    #[test]
    fn tool_settings_pass_unless_they_carry_a_credential() {
        let out = build(
            &pol(&["PATH"]),
            host(&[
                ("npm_config_cache", "/w/.npm-cache"),
                ("PIP_FIND_LINKS", "/opt/wheels"),
                ("CARGO_HOME", "/home/u/.cargo"),
                ("GOFLAGS", "-mod=mod"),
                (
                    "PIP_INDEX_URL",
                    "https://me:hunter2@pypi.example.org/simple",
                ),
                (
                    "UV_INDEX",
                    "corp=https://ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789@example.com/",
                ),
                ("MAVEN_OPTS", "-Drepo.password=hunter2"),
                ("NPM_CONFIG__AUTH", "dXNlcjpwYXNz"),
                ("npm_config_//registry.example.org/:_authToken", "abc"),
                ("CARGO_REGISTRIES_CORP_TOKEN", "abc"),
                ("GOOGLE_CLOUD_PROJECT", "p"),
                ("HOSTNAME", "h"),
            ]),
            &fixed(),
        );
        for (k, v) in [
            ("npm_config_cache", "/w/.npm-cache"),
            ("PIP_FIND_LINKS", "/opt/wheels"),
            ("CARGO_HOME", "/home/u/.cargo"),
            ("GOFLAGS", "-mod=mod"),
        ] {
            assert_eq!(out.vars.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert_eq!(
            out.dropped_value,
            ["MAVEN_OPTS", "PIP_INDEX_URL", "UV_INDEX"]
        );
        assert_eq!(
            out.dropped_secret,
            [
                "CARGO_REGISTRIES_CORP_TOKEN",
                "NPM_CONFIG__AUTH",
                "npm_config_//registry.example.org/:_authToken"
            ]
        );
        // Not a tool setting and not listed: not passed, and not reported either.
        for k in ["GOOGLE_CLOUD_PROJECT", "HOSTNAME"] {
            assert!(!out.vars.contains_key(k));
        }
        assert!(
            !out.vars
                .values()
                .any(|v| v.contains("hunter2") || v.contains("ghp_"))
        );
    }

    #[test]
    fn tools_off_passes_only_the_listed_names_and_keeps_the_never_rows() {
        let mut p = pol(&["PATH", "npm_config_*"]);
        p.tools = false;
        let out = build(
            &p,
            host(&[
                ("PATH", "/usr/bin"),
                ("PIP_FIND_LINKS", "/opt/wheels"),
                ("npm_config_cache", "/w/.npm-cache"),
                ("npm_config__authToken", "abc"),
                ("CARGO_HOME", "/home/u/.cargo"),
            ]),
            &fixed(),
        );
        assert_eq!(out.passed, ["PATH", "npm_config_cache"]);
        assert_eq!(out.dropped_secret, ["npm_config__authToken"]);
        for k in ["PIP_FIND_LINKS", "CARGO_HOME", "npm_config__authToken"] {
            assert!(!out.vars.contains_key(k), "{k}");
        }
    }

    #[test]
    fn explicit_env_passes_a_credential_looking_value() {
        let mut p = pol(&[]);
        p.explicit = vec![("PIP_INDEX_URL".into(), None)];
        let url = "https://me:hunter2@pypi.example.org/simple";
        let out = build(&p, host(&[("PIP_INDEX_URL", url)]), &fixed());
        assert_eq!(out.vars["PIP_INDEX_URL"], url);
        assert_eq!(out.explicit, ["PIP_INDEX_URL"]);
    }

    #[test]
    fn fixed_values_win_over_tool_settings() {
        // TMPDIR and HOME are shellcage's even if a family or the profile passes them.
        let out = build(
            &pol(&["*"]),
            host(&[("HOME", "/host/home"), ("TMPDIR", "/host/tmp")]),
            &fixed(),
        );
        assert_eq!(out.vars["HOME"], "/home/u");
        assert_eq!(out.vars["TMPDIR"], "/tmp");
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// A family name, and a position for a random token in its value.
        fn case() -> impl Strategy<Value = (String, String, String)> {
            let names = proptest::sample::select(vec![
                "npm_config_registry",
                "PIP_EXTRA_INDEX_URL",
                "UV_INDEX",
                "CARGO_REGISTRIES_CORP_INDEX",
                "GOPROXY",
                "NODE_OPTIONS",
                "MAVEN_OPTS",
                "RUSTFLAGS",
                "CC",
            ]);
            // Positions a rule recognises by structure or format; a bare
            // random token is found by the entropy backstop only most of
            // the time (credential.rs), so it is not promised here.
            let tok = any::<u64>().prop_map(|s| crate::sandbox::credential::tests::token(s, 40));
            let shape = proptest::sample::select(vec![
                "https://user:{t}@host.example.org/simple",
                "https://{t}@host.example.org/",
                "ghp_{t}",
                "--flag --x=glpat-{t}",
                "-Dsome.password={t}",
                "https://host.example.org/simple?token={t}",
                "Bearer {t}",
            ]);
            (names, tok, shape)
                .prop_map(|(n, t, s)| (n.to_string(), t.clone(), s.replace("{t}", &t)))
        }

        proptest! {
            #[test]
            fn a_token_in_a_tool_setting_never_reaches_the_command((name, tok, value) in case()) {
                let out = build(&pol(&[]), host(&[(&name, &value)]), &fixed());
                prop_assert!(!out.vars.values().any(|v| v.contains(&tok)), "{} = {}", name, value);
                prop_assert_eq!(out.dropped_value, vec![name]);
            }
        }
    }

    #[test]
    fn path_search() {
        assert_eq!(
            search_path("/bin/true", "/x"),
            vec![CString::new("/bin/true").unwrap()]
        );
        assert_eq!(
            search_path("ls", "/a::/b"),
            vec![c"/a/ls".to_owned(), c"./ls".to_owned(), c"/b/ls".to_owned()]
        );
    }
}

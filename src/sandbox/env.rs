//! The scrubbed environment: an allowlist of names, fixed values, and a
//! refusal of secret-looking names that only `--env NAME` can override.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

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
    "NPM_CONFIG_*",
    "VAULT_*",
    "CLAUDE_CODE_OAUTH*",
];

/// Does `name` look like it carries a secret (or loader control)?
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_PATTERNS
        .iter()
        .any(|p| wildcard_match(p.as_bytes(), upper.as_bytes()))
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
    /// Secret-looking names the allowlist matched but that were dropped.
    pub dropped_secret: Vec<String>,
    /// Names passed or set by `--env` on the command line.
    pub explicit: Vec<String>,
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
        if !policy
            .pass
            .iter()
            .any(|p| wildcard_match(p.as_bytes(), name.as_bytes()))
        {
            continue;
        }
        if is_secret_name(name) {
            out.dropped_secret.push(name.clone());
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

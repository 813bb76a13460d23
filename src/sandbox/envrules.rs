//! Tool settings in the environment: which configuration variables of the
//! common developer tools pass into the sandbox, and which never do.
//!
//! The table below is the whole rule set; names are matched
//! case-insensitively (npm reads `npm_config_*` in any case), `*` matches any
//! run of characters, and the first matching row wins. On top of it, in
//! [`super::env::build`]:
//!
//! 1. a name that looks like a secret (`*TOKEN*`, `*PASSWORD*`, `AWS_*`,
//!    `LD_*` … in `env.rs`) is never passed, whatever the table or profile say;
//! 2. a `Pass` name is still dropped when its value looks like a credential
//!    ([`super::credential`]: URL userinfo, token formats, `password=` …);
//! 3. only `--env NAME` overrides 1 and 2 (the user's explicit decision).
//!
//! Paths in values pass unchanged. The filesystem view is the one place that
//! decides what a path reaches: a path into a hidden place shows the mask
//! (an empty directory, an empty file, or a sanitised copy of a config file),
//! one outside the view does not exist, and a variable cannot widen the view.
//! Dropping such variables would silently move the tool to its default
//! location instead (`CARGO_HOME`, `PIP_CONFIG_FILE`), which is worse than
//! letting it fail on the path it was given.
//!
//! Values that run code (`NODE_OPTIONS=--require …`, `RUSTC_WRAPPER`,
//! `PYTHONSTARTUP`, `CC`) pass: the code runs inside the sandbox, confined like
//! any command, and the user set it on the host for every run anyway.

use super::env::pattern_match_ci;
#[cfg(test)]
use crate::policy::wildcard_match;

/// What happens to a variable of the host's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A tool setting: passed unless its value looks like a credential.
    Pass,
    /// Never passed, even when the profile's `env.pass` matches it.
    Never,
}

use Rule::{Never, Pass};

/// (pattern, rule, why). First match wins: the `Never` rows of a family come
/// before its `Pass` row.
#[rustfmt::skip]
pub const TOOL_RULES: &[(&str, Rule, &str)] = &[
    // npm, yarn, pnpm
    ("NPM_CONFIG_//*",           Never, "per-registry settings: _authToken, _auth, _password, certfile/keyfile"),
    ("NPM_CONFIG__*",            Never, "underscore keys are npm's credentials: _auth, _authToken, _password"),
    ("NPM_CONFIG_KEY",           Never, "the client TLS private key itself (PEM in the value)"),
    ("NPM_CONFIG_OTP",           Never, "a one-time password"),
    ("NPM_CONFIG_*PROXY",        Never, "a host-side proxy the sandbox cannot reach; network modes set their own"),
    ("NPM_CONFIG_*",             Pass,  "npm (and yarn 1, pnpm) settings: cache, registry, offline, fund, audit"),
    ("YARN_*PROXY",              Never, "a host-side proxy the sandbox cannot reach"),
    ("YARN_*",                   Pass,  "yarn settings: cache folder, registry server, immutable installs"),
    ("PNPM_*",                   Pass,  "pnpm home and settings"),
    ("COREPACK_*",               Pass,  "corepack: package manager versions and home"),
    // Python: pip, uv, the interpreter, environments
    ("PIP_PROXY",                Never, "a host-side proxy the sandbox cannot reach"),
    ("PIP_*",                    Pass,  "pip settings: find-links, index-url, cache, no-index, timeout"),
    ("UV_*",                     Pass,  "uv settings: index, find-links, cache dir, python, offline"),
    ("PYTHON*",                  Pass,  "interpreter settings: PYTHONPATH, PYTHONDONTWRITEBYTECODE, PYTHONUNBUFFERED"),
    ("VIRTUAL_ENV",              Pass,  "the active virtualenv (its bin/ is usually first on PATH)"),
    ("VIRTUAL_ENV_PROMPT",       Pass,  "the active virtualenv's prompt name"),
    ("PYENV_*",                  Pass,  "pyenv: root, version, shell"),
    ("CONDA_*",                  Pass,  "conda: active environment and prefix"),
    ("POETRY_*",                 Pass,  "poetry settings (its *_PASSWORD/*_TOKEN_* names are refused as secrets)"),
    ("PIPX_*",                   Pass,  "pipx home and bin dir"),
    // Rust
    ("CARGO_HTTP_PROXY",         Never, "a host-side proxy the sandbox cannot reach"),
    ("CARGO_*",                  Pass,  "cargo settings: home, target dir, jobs, offline, registries' index URLs"),
    ("RUSTUP_*",                 Pass,  "rustup: home, toolchain, dist server"),
    ("RUSTFLAGS",                Pass,  "rustc flags for every crate"),
    ("RUSTDOCFLAGS",             Pass,  "rustdoc flags"),
    ("RUSTC_WRAPPER",            Pass,  "a compiler wrapper such as sccache"),
    ("RUSTC_WORKSPACE_WRAPPER",  Pass,  "a compiler wrapper for workspace members"),
    ("RUST_BACKTRACE",           Pass,  "backtraces on panic"),
    ("RUST_LOG",                 Pass,  "log filter of Rust programs"),
    ("RUST_TEST_THREADS",        Pass,  "test harness threads"),
    ("RUST_MIN_STACK",           Pass,  "thread stack size"),
    // Go (the variables of `go help environment`; GO* alone would pass GOOGLE_*)
    ("GOAUTH",                   Never, "go's credential command for module downloads"),
    ("GOPATH",                   Pass,  "go workspace and module cache"),
    ("GOROOT",                   Pass,  "go toolchain"),
    ("GOBIN",                    Pass,  "go install target"),
    ("GOCACHE",                  Pass,  "go build cache"),
    ("GOMODCACHE",               Pass,  "go module cache"),
    ("GOENV",                    Pass,  "go env file"),
    ("GOFLAGS",                  Pass,  "default go flags"),
    ("GOPROXY",                  Pass,  "module proxy list"),
    ("GOPRIVATE",                Pass,  "private module patterns"),
    ("GONOPROXY",                Pass,  "modules fetched directly"),
    ("GONOSUMDB",                Pass,  "modules not checked against the checksum database"),
    ("GOSUMDB",                  Pass,  "checksum database"),
    ("GOINSECURE",               Pass,  "modules fetched without TLS checks"),
    ("GOVCS",                    Pass,  "allowed version control systems"),
    ("GOTOOLCHAIN",              Pass,  "toolchain selection (local avoids downloads)"),
    ("GOWORK",                   Pass,  "workspace file"),
    ("GOOS",                     Pass,  "target OS"),
    ("GOARCH",                   Pass,  "target architecture"),
    ("GOAMD64",                  Pass,  "target microarchitecture"),
    ("GOARM",                    Pass,  "target microarchitecture"),
    ("GOARM64",                  Pass,  "target microarchitecture"),
    ("GO386",                    Pass,  "target microarchitecture"),
    ("GOEXPERIMENT",             Pass,  "toolchain experiments"),
    ("GODEBUG",                  Pass,  "runtime debug settings"),
    ("GOTMPDIR",                 Pass,  "go's temporary directory"),
    ("GOGC",                     Pass,  "garbage collector target"),
    ("GOMEMLIMIT",               Pass,  "soft memory limit"),
    ("GOMAXPROCS",               Pass,  "parallelism"),
    ("GOTRACEBACK",              Pass,  "traceback detail"),
    ("GO111MODULE",              Pass,  "module mode"),
    ("CGO_*",                    Pass,  "cgo: enabled, CFLAGS, LDFLAGS"),
    // Node and other JavaScript runtimes
    ("NODE_*",                   Pass,  "NODE_OPTIONS, NODE_PATH, NODE_EXTRA_CA_CERTS, NODE_ENV (--require code runs inside the sandbox)"),
    ("NVM_*",                    Pass,  "nvm: dir and current version"),
    ("VOLTA_HOME",               Pass,  "volta's toolchain home"),
    ("BUN_INSTALL",              Pass,  "bun's install dir"),
    ("DENO_*",                   Pass,  "deno dir and settings"),
    // Java
    ("JAVA_HOME",                Pass,  "the JDK"),
    ("JAVA_TOOL_OPTIONS",        Pass,  "JVM options (agents run inside the sandbox)"),
    ("JDK_JAVA_OPTIONS",         Pass,  "java launcher options"),
    ("MAVEN_OPTS",               Pass,  "maven JVM options"),
    ("MAVEN_ARGS",               Pass,  "maven arguments"),
    ("MAVEN_HOME",               Pass,  "maven install"),
    ("M2_HOME",                  Pass,  "maven install (old name)"),
    ("GRADLE_OPTS",              Pass,  "gradle JVM options"),
    ("GRADLE_USER_HOME",         Pass,  "gradle's cache and settings dir"),
    ("GRADLE_HOME",              Pass,  "gradle install"),
    ("SDKMAN_*",                 Pass,  "sdkman: dir and candidates"),
    // Compilers, build systems, editors
    ("CC",                       Pass,  "C compiler"),
    ("CXX",                      Pass,  "C++ compiler"),
    ("CPP",                      Pass,  "C preprocessor"),
    ("AR",                       Pass,  "archiver"),
    ("CFLAGS",                   Pass,  "C compiler flags"),
    ("CXXFLAGS",                 Pass,  "C++ compiler flags"),
    ("CPPFLAGS",                 Pass,  "preprocessor flags"),
    ("LDFLAGS",                  Pass,  "linker flags"),
    ("LDLIBS",                   Pass,  "linker libraries"),
    ("PKG_CONFIG_PATH",          Pass,  "pkg-config search path"),
    ("PKG_CONFIG_LIBDIR",        Pass,  "pkg-config search path"),
    ("PKG_CONFIG_SYSROOT_DIR",   Pass,  "pkg-config sysroot"),
    ("MAKEFLAGS",                Pass,  "make flags such as -j"),
    ("CMAKE_GENERATOR",          Pass,  "cmake generator"),
    ("CMAKE_BUILD_PARALLEL_LEVEL", Pass, "cmake parallelism"),
    ("SOURCE_DATE_EPOCH",        Pass,  "reproducible build timestamp"),
    ("EDITOR",                   Pass,  "editor for commit messages and edits"),
    ("VISUAL",                   Pass,  "editor"),
    ("PAGER",                    Pass,  "pager"),
    ("MANPAGER",                 Pass,  "pager for man"),
    ("LESS",                     Pass,  "less options"),
    ("GIT_AUTHOR_NAME",          Pass,  "commit identity"),
    ("GIT_AUTHOR_EMAIL",         Pass,  "commit identity"),
    ("GIT_COMMITTER_NAME",       Pass,  "commit identity"),
    ("GIT_COMMITTER_EMAIL",      Pass,  "commit identity"),
    ("GIT_EDITOR",               Pass,  "git's editor"),
    ("GIT_PAGER",                Pass,  "git's pager"),
    // Output and automation
    ("CI",                       Pass,  "tools switch to non-interactive output in CI"),
    ("DEBIAN_FRONTEND",          Pass,  "non-interactive package tools"),
    ("FORCE_COLOR",              Pass,  "colour output"),
    ("CLICOLOR",                 Pass,  "colour output"),
    ("CLICOLOR_FORCE",           Pass,  "colour output"),
    // TLS trust: corporate CA bundles (paths, public certificates)
    ("SSL_CERT_FILE",            Pass,  "CA bundle for OpenSSL-based tools"),
    ("SSL_CERT_DIR",             Pass,  "CA directory for OpenSSL-based tools"),
    ("REQUESTS_CA_BUNDLE",       Pass,  "CA bundle for Python requests"),
    ("CURL_CA_BUNDLE",           Pass,  "CA bundle for curl"),
    ("GIT_SSL_CAINFO",           Pass,  "CA bundle for git"),
];

/// Set when the network mode is `none` and the variable is not already set
/// (from the caller, the profile or `--env`): with no network, the tools'
/// retry loops only delay the failure. Measured in an empty network
/// namespace (notes/daywork.md): `cargo add` 10.8 s → 0.03 s, `pip download`
/// 8.9 s → 0.6 s, `npm view` 71 s → 0.4 s. The lookup itself already fails at
/// once for glibc-based tools; they retry any lookup failure.
#[rustfmt::skip]
pub const NO_NETWORK_DEFAULTS: &[(&str, &str, &str)] = &[
    ("CARGO_NET_RETRY",          "0", "cargo retries 'spurious' network errors 3 times with backoff"),
    ("PIP_RETRIES",              "0", "pip retries 5 times with backoff"),
    ("npm_config_fetch_retries", "0", "npm retries twice, waiting 10 s then 60 s"),
];

/// Add [`NO_NETWORK_DEFAULTS`] to `vars` where the name (any case) is unset.
pub fn add_no_network_defaults(
    vars: &mut std::collections::BTreeMap<String, String>,
) -> Vec<&'static str> {
    let mut added = Vec::new();
    for (name, value, _) in NO_NETWORK_DEFAULTS {
        if !vars.keys().any(|k| k.eq_ignore_ascii_case(name)) {
            vars.insert(name.to_string(), value.to_string());
            added.push(*name);
        }
    }
    added
}

/// The first row of [`TOOL_RULES`] matching `name`, if any.
pub fn rule(name: &str) -> Option<(Rule, &'static str)> {
    // Every pattern starts with a literal: only the rows starting with the
    // name's first byte are tried, in table order (this runs for each of the
    // caller's variables on every launch).
    let mut rows = ROWS_BY_FIRST[name.as_bytes().first()?.to_ascii_uppercase() as usize];
    while rows != 0 {
        let i = rows.trailing_zeros() as usize;
        rows &= rows - 1;
        let (p, r, why) = TOOL_RULES[i];
        if pattern_match_ci(p, name) {
            return Some((r, why));
        }
    }
    None
}

/// For each byte, a bit per row of [`TOOL_RULES`] whose pattern starts with it.
const ROWS_BY_FIRST: [u128; 256] = {
    assert!(TOOL_RULES.len() <= 128);
    let mut t = [0u128; 256];
    let mut i = 0;
    while i < TOOL_RULES.len() {
        t[TOOL_RULES[i].0.as_bytes()[0] as usize] |= 1 << i;
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str) -> Option<Rule> {
        rule(name).map(|(r, _)| r)
    }

    #[test]
    fn families() {
        for n in [
            "npm_config_cache",
            "NPM_CONFIG_REGISTRY",
            "npm_config_@myorg:registry",
            "YARN_CACHE_FOLDER",
            "PNPM_HOME",
            "PIP_FIND_LINKS",
            "UV_INDEX_URL",
            "PYTHONPATH",
            "VIRTUAL_ENV",
            "PYENV_ROOT",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "RUSTUP_TOOLCHAIN",
            "RUSTFLAGS",
            "GOPATH",
            "GOFLAGS",
            "GOPROXY",
            "GOTOOLCHAIN",
            "CGO_ENABLED",
            "NODE_OPTIONS",
            "NODE_EXTRA_CA_CERTS",
            "JAVA_HOME",
            "MAVEN_OPTS",
            "EDITOR",
            "CC",
            "MAKEFLAGS",
            "CI",
            "SSL_CERT_FILE",
        ] {
            assert_eq!(r(n), Some(Pass), "{n}");
        }
        for n in [
            "npm_config_//registry.example.org/:_authToken",
            "NPM_CONFIG__AUTH",
            "npm_config__password",
            "npm_config_key",
            "npm_config_otp",
            "npm_config_https_proxy",
            "PIP_PROXY",
            "GOAUTH",
        ] {
            assert_eq!(r(n), Some(Never), "{n}");
        }
        for n in [
            "GOOGLE_CLOUD_PROJECT",
            "HOSTNAME",
            "GIT_DIR",
            "GIT_CONFIG_GLOBAL",
            "HTTPS_PROXY",
            "LD",
            "DATABASE_URL",
        ] {
            assert_eq!(r(n), None, "{n}");
        }
    }

    #[test]
    fn no_network_defaults_never_override() {
        let mut vars = std::collections::BTreeMap::new();
        vars.insert("NPM_CONFIG_FETCH_RETRIES".to_string(), "5".to_string());
        vars.insert("PIP_RETRIES".to_string(), "2".to_string());
        assert_eq!(add_no_network_defaults(&mut vars), ["CARGO_NET_RETRY"]);
        assert_eq!(vars["CARGO_NET_RETRY"], "0");
        assert_eq!(vars["PIP_RETRIES"], "2");
        assert_eq!(vars["NPM_CONFIG_FETCH_RETRIES"], "5");
        assert!(!vars.contains_key("npm_config_fetch_retries"));
        // Each default is a tool setting the table itself would pass.
        for (n, _, _) in NO_NETWORK_DEFAULTS {
            assert_eq!(rule(n).map(|r| r.0), Some(Pass), "{n}");
        }
    }

    #[test]
    fn table_is_well_formed() {
        for (i, (p, _, why)) in TOOL_RULES.iter().enumerate() {
            assert_eq!(
                *p,
                p.to_ascii_uppercase(),
                "row {i}: patterns are upper-case"
            );
            assert!(!why.is_empty(), "row {i}: {p} says why");
            // A Never row after a Pass row that already matches it would be dead.
            let shadowed = TOOL_RULES[..i]
                .iter()
                .any(|(q, _, _)| wildcard_match(q.as_bytes(), p.replace('*', "X").as_bytes()));
            assert!(!shadowed, "row {i}: {p} is shadowed by an earlier row");
        }
    }
}

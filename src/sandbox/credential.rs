//! Does a value look like a credential? One set of rules shared by the
//! environment (a tool setting whose value carries a secret is not passed) and
//! the config-file sanitiser (an entry whose value carries one is removed).
//!
//! The rules, in the order they are tried (a value is a credential when any
//! rule finds one anywhere in it):
//!
//! | rule          | finds                                                          |
//! |---------------|----------------------------------------------------------------|
//! | `url`         | `scheme://user:password@host` (any non-empty password), or a   |
//! |               | user-only userinfo that is itself token-like (`https://TOKEN@`) |
//! | `prefix`      | a known token format at a word start: `ghp_` `gho_` `ghu_`      |
//! |               | `ghs_` `ghr_` `github_pat_` `glpat-` `glrt-` `gldt-` `xox?-`    |
//! |               | `xapp-` `sk-` `sk_live_` `sk_test_` `rk_live_` `AKIA` `ASIA`    |
//! |               | `AIza` `npm_` `pypi-` `cio` `hf_` `dop_v1_` `shpat_` `shpss_`    |
//! |               | `AGE-SECRET-KEY-`, each followed by enough token characters     |
//! | `private-key` | `-----BEGIN … PRIVATE KEY`                                     |
//! | `jwt`         | `eyJ…​.eyJ…​.…` (a JSON web token)                               |
//! | `auth-header` | `Bearer TOKEN` / `Basic BASE64`                                |
//! | `key=value`   | `password=`, `passwd=`, `secret=`, `token=`, `apikey=`,         |
//! |               | `api_key=`, `access_key=` … with a non-empty value (`-Dx.token=v`, |
//! |               | `?access_token=v`, `--password=v`)                             |
//! | `entropy`     | a run of ≥ 24 token characters mixing upper, lower and digits   |
//! |               | whose character classes alternate like random text: Shannon     |
//! |               | entropy ≥ 3.8 bits/char and mean class run ≤ 2.3, or ≥ 4.6 bits  |
//! |               | and ≤ 2.8 (random base62 ~1.6, CamelCase words ≥ 3); for         |
//! |               | key-like names (`*KEY*`, `*SALT*`, `*SIGN*`, `*_PAT`) already ≥ 16 |
//! |               | characters, two character classes and ≥ 3.3 bits/char           |
//!
//! Accepted false positives (dropped although harmless; `--env NAME` passes
//! them): a long random-looking identifier (a base62 cache key in a path
//! component, a 24-character mixed-case build id), a UUID or hex digest in a
//! key-like name, a flag that sets a property named `*token*`/`*password*`.
//! The entropy rule is a backstop, not a detector: it misses random base62
//! tokens at about 4% for 24 characters, 1% for 32, 0.2% for 40 and none
//! for 64 (simulated, 100k each), which the prefix, URL and key rules and the
//! secret-name refusal are there to catch.
//! Accepted false negatives: a short or dictionary-word password outside a URL
//! or `key=value` form (`hunter2`), a user name alone in a URL (`git@`,
//! `__token__@`), hex digests in ordinary names (build ids, commit hashes).

use std::fmt;

/// Which rule found a credential (never the credential itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    UrlUserinfo,
    TokenPrefix,
    PrivateKey,
    Jwt,
    AuthHeader,
    KeyValue,
    Entropy,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Finding::UrlUserinfo => "url",
            Finding::TokenPrefix => "prefix",
            Finding::PrivateKey => "private-key",
            Finding::Jwt => "jwt",
            Finding::AuthHeader => "auth-header",
            Finding::KeyValue => "key=value",
            Finding::Entropy => "entropy",
        })
    }
}

/// Known token formats: prefix (matched at a word start, case-sensitive) and
/// the least number of token characters that must follow it.
const PREFIXES: &[(&str, usize)] = &[
    ("ghp_", 30),
    ("gho_", 30),
    ("ghu_", 30),
    ("ghs_", 30),
    ("ghr_", 30),
    ("github_pat_", 22),
    ("glpat-", 20),
    ("glrt-", 20),
    ("gldt-", 20),
    ("xoxa-", 10),
    ("xoxb-", 10),
    ("xoxp-", 10),
    ("xoxr-", 10),
    ("xoxs-", 10),
    ("xapp-", 10),
    ("sk-", 32),
    ("sk_live_", 16),
    ("sk_test_", 16),
    ("rk_live_", 16),
    ("AKIA", 16),
    ("ASIA", 16),
    ("AIza", 30),
    ("npm_", 30),
    ("pypi-", 40),
    ("cio", 30),
    ("hf_", 30),
    ("dop_v1_", 40),
    ("shpat_", 30),
    ("shpss_", 30),
    ("AGE-SECRET-KEY-", 20),
];

/// Which bytes start a known token format (checked before the prefixes).
const PREFIX_FIRST: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < PREFIXES.len() {
        t[PREFIXES[i].0.as_bytes()[0] as usize] = true;
        i += 1;
    }
    t
};

/// Words that, followed by `=` or `:` and a value, name a secret.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "access_key",
    "accesskey",
    "private_key",
];

/// Characters of a token run (base64, base64url, base62 and their padding).
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-')
}

/// Token characters without `/`, so a path splits into its components.
fn is_run_char(b: u8) -> bool {
    is_token_char(b) && b != b'/'
}

/// Is `name` key-like (its value is expected to be key material)?
pub fn keylike_name(name: &str) -> bool {
    let h = name.as_bytes();
    let has = |w: &[u8]| h.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w));
    has(b"KEY")
        || has(b"SALT")
        || has(b"SIGN")
        || (h.len() >= 4 && h[h.len() - 4..].eq_ignore_ascii_case(b"_PAT"))
}

/// The first credential found in `value`, if any. `keylike` lowers the
/// entropy threshold (see [`keylike_name`]).
pub fn find(value: &str, keylike: bool) -> Option<Finding> {
    let b = value.as_bytes();
    if url_userinfo_spans(value).next().is_some() {
        return Some(Finding::UrlUserinfo);
    }
    if has_prefix_token(b) {
        return Some(Finding::TokenPrefix);
    }
    if value.contains("-----BEGIN") && value.contains("PRIVATE KEY") {
        return Some(Finding::PrivateKey);
    }
    if has_jwt(b) {
        return Some(Finding::Jwt);
    }
    if has_auth_header(b) {
        return Some(Finding::AuthHeader);
    }
    if has_secret_key_value(b) {
        return Some(Finding::KeyValue);
    }
    if has_high_entropy_run(b, keylike) {
        return Some(Finding::Entropy);
    }
    None
}

/// Shorthand: does `value` look like a credential?
pub fn looks_like_credential(value: &str, keylike: bool) -> bool {
    find(value, keylike).is_some()
}

/// Byte ranges of the userinfo (including the trailing `@`) of every URL in
/// `s` whose userinfo is a credential (see the `url` rule).
pub fn url_userinfo_spans(s: &str) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let b = s.as_bytes();
    let mut from = 0;
    std::iter::from_fn(move || {
        while let Some(off) = s[from..].find("://") {
            let start = from + off + 3;
            let end = b[start..]
                .iter()
                .position(|&c| {
                    matches!(
                        c,
                        b'/' | b'?' | b'#' | b',' | b';' | b'"' | b'\'' | b'|' | b'<' | b'>'
                    ) || c.is_ascii_whitespace()
                })
                .map_or(b.len(), |p| start + p);
            from = start;
            let Some(at) = s[start..end].rfind('@') else {
                continue;
            };
            let info = &s[start..start + at];
            let secret = match info.split_once(':') {
                Some((_, pass)) => !pass.is_empty(),
                None => token_like_user(info),
            };
            if secret {
                from = start + at + 1;
                return Some(start..start + at + 1);
            }
        }
        None
    })
}

/// A user name that is really a token (`https://ghp_…@host`).
fn token_like_user(user: &str) -> bool {
    let b = user.as_bytes();
    has_prefix_token(b)
        || has_high_entropy_run(b, true)
        || (b.len() >= 24 && b.iter().all(|&c| is_token_char(c)))
}

/// `s` with the credential userinfo of every URL removed
/// (`https://u:p@host/x` → `https://host/x`); everything else unchanged.
pub fn strip_url_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for r in url_userinfo_spans(s) {
        out.push_str(&s[last..r.start]);
        last = r.end;
    }
    out.push_str(&s[last..]);
    out
}

fn word_start(b: &[u8], i: usize) -> bool {
    i == 0 || !b[i - 1].is_ascii_alphanumeric()
}

fn run_len(b: &[u8], from: usize, f: fn(u8) -> bool) -> usize {
    b[from..].iter().take_while(|&&c| f(c)).count()
}

fn has_prefix_token(b: &[u8]) -> bool {
    (0..b.len())
        .filter(|&i| PREFIX_FIRST[b[i] as usize] && word_start(b, i))
        .any(|i| {
            PREFIXES.iter().any(|(p, min)| {
                p.as_bytes()[0] == b[i]
                    && b[i..].starts_with(p.as_bytes())
                    && run_len(b, i + p.len(), is_run_char) >= *min
            })
        })
}

fn has_jwt(b: &[u8]) -> bool {
    b.windows(3).enumerate().any(|(i, w)| {
        if w != b"eyJ" || !word_start(b, i) {
            return false;
        }
        let seg = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
        let first = run_len(b, i, seg);
        let j = i + first;
        first >= 10 && j < b.len() && b[j] == b'.' && run_len(b, j + 1, seg) >= 10
    })
}

fn has_auth_header(b: &[u8]) -> bool {
    // `Bearer x` / `Basic x`: a word, one space, a token; found from the space.
    b.iter()
        .enumerate()
        .filter(|(_, c)| **c == b' ')
        .any(|(sp, _)| {
            ["bearer", "basic"].iter().any(|w| {
                sp >= w.len()
                    && b[sp - w.len()..sp].eq_ignore_ascii_case(w.as_bytes())
                    && word_start(b, sp - w.len())
                    && run_len(b, sp + 1, |c| is_token_char(c) || c == b'.' || c == b'~') >= 12
            })
        })
}

fn has_secret_key_value(b: &[u8]) -> bool {
    // From each `=`/`:` back over the key name (`-Dsonar.token=`: `token`;
    // `token.path=`: `path`), which must contain a secret word; the value
    // must be there and not a path or a URL's `://`.
    let key_char = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-';
    b.iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, b'=' | b':'))
        .any(|(j, _)| {
            let start = j - b[..j].iter().rev().take_while(|c| key_char(c)).count();
            let key = &b[start..j];
            let rest = &b[j + 1..];
            key.len() >= 5
                && !rest.is_empty()
                && !rest[0].is_ascii_whitespace()
                && !rest.starts_with(b"/")
                && SECRET_WORDS.iter().any(|w| {
                    key.windows(w.len())
                        .any(|x| x.eq_ignore_ascii_case(w.as_bytes()))
                })
        })
}

/// Shannon entropy of `s`, in bits per character.
pub fn entropy(s: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &c in s {
        counts[c as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Mean length of the runs of one character class (lower, upper, digit)
/// among the alphanumerics of `s`: about 1.6 for random base62, 3 and more
/// for CamelCase words.
fn mean_class_run(s: &[u8]) -> f64 {
    let class = |c: u8| (c.is_ascii_uppercase() as u8) | ((c.is_ascii_digit() as u8) << 1);
    let alnum: Vec<u8> = s
        .iter()
        .copied()
        .filter(u8::is_ascii_alphanumeric)
        .collect();
    let runs = 1 + alnum
        .windows(2)
        .filter(|w| class(w[0]) != class(w[1]))
        .count();
    alnum.len() as f64 / runs as f64
}

fn has_high_entropy_run(b: &[u8], keylike: bool) -> bool {
    b.split(|&c| !is_run_char(c)).any(|run| {
        let classes = [
            run.iter().any(u8::is_ascii_lowercase),
            run.iter().any(u8::is_ascii_uppercase),
            run.iter().any(u8::is_ascii_digit),
        ];
        let n_classes = classes.iter().filter(|&&c| c).count();
        if keylike {
            run.len() >= 16 && n_classes >= 2 && entropy(run) >= 3.3
        } else {
            // Random text: classes alternate (mean run ~1.6) and, the longer
            // the run, the higher its entropy; CamelCase words have runs ≥ 3
            // and stay near 4.1 bits.
            run.len() >= 24 && n_classes == 3 && {
                let (h, m) = (entropy(run), mean_class_run(run));
                (h >= 3.8 && m <= 2.3) || (h >= 4.6 && m <= 2.8)
            }
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn urls() {
        for v in [
            "https://user:hunter2@registry.example.org/simple",
            "http://u:p@proxy.example.com:3128",
            "https://oauth2:abc@git.example.com/x.git",
            "https://example.org/a https://x:y@example.net/b",
            "name=https://me:pw@example.org/simple",
            "sparse+https://tok:en@example.org/index/",
            "https://ghp_0123456789abcdefghijABCDEFGHIJ0123456789@example.com/",
        ] {
            assert_eq!(find(v, false), Some(Finding::UrlUserinfo), "{v}");
        }
        for v in [
            "https://example.org/simple",
            "ssh://git@example.com/x.git",
            "https://__token__@example.org/",
            "https://user:@example.org/",
            "https://example.org/@scope/pkg",
            "git@example.com:org/repo.git",
            "https://example.org/path?x=a@b",
        ] {
            assert_eq!(find(v, false), None, "{v}");
        }
        assert_eq!(
            strip_url_userinfo("a https://u:p@h.example/x, http://v:q@i.example b"),
            "a https://h.example/x, http://i.example b"
        );
        assert_eq!(strip_url_userinfo("ssh://git@h/x"), "ssh://git@h/x");
    }

    #[test]
    fn token_formats() {
        for v in [
            "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            "x github_pat_11ABCDEFG0123456789_abcdefghijklmnop y",
            "glpat-abcdefghij0123456789",
            "xoxb-1234567890-abcdef",
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789",
            "AKIAIOSFODNN7EXAMPLE",
            "npm_abcdefghijklmnopqrstuvwxyz0123456789",
            "pypi-AgEIcHlwaS5vcmcCJGFiY2RlZmdoLWlqa2wtbW5vcC1xcnN0",
            "cioAbCdEfGhIjKlMnOpQrStUvWxYz012345",
        ] {
            assert_eq!(find(v, false), Some(Finding::TokenPrefix), "{v}");
        }
        assert_eq!(
            find("-----BEGIN OPENSSH PRIVATE KEY-----\\nabc", false),
            Some(Finding::PrivateKey)
        );
        assert_eq!(
            find(
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig",
                false
            ),
            Some(Finding::Jwt)
        );
        assert_eq!(
            find("Authorization: Bearer abcdef0123456789", false),
            Some(Finding::AuthHeader)
        );
        // Word boundaries and lengths: not tokens.
        for v in [
            "task-runner",
            "risk-assessment",
            "/opt/sk-learn/bin",
            "AKIA",
            "mask-ghp_",
            "ciotest",
            "npm_config_cache",
        ] {
            assert_eq!(find(v, false), None, "{v}");
        }
    }

    #[test]
    fn key_values() {
        for v in [
            "-Drepo.password=hunter2",
            "-Dsonar.token=abc",
            "https://example.org/simple?access_token=xyz",
            "--password=x",
            "-DmavenPassword=abc",
            "db_secret:abc",
        ] {
            assert_eq!(find(v, false), Some(Finding::KeyValue), "{v}");
        }
        for v in [
            "--require=./password-reset.js",
            "-Dtoken.file=/run/x",
            "password=",
            "token: value with space",
            "--max-old-space-size=4096",
            "-Xmx2g -Dorg.gradle.jvmargs=-Xmx2g",
            "secret=/path/to/file",
        ] {
            assert_eq!(find(v, false), None, "{v}");
        }
    }

    #[test]
    fn entropy_rule() {
        // Random-looking base62: found; long words and identifiers: not.
        assert_eq!(
            find("Zx9Lq2Wm8Rt4Yp6Vn3Bk7Hd1Fs5Gj0Ac", false),
            Some(Finding::Entropy)
        );
        for v in [
            "AbstractSingletonProxyFactoryBean2",
            "XMLHttpRequestEventTargetPrototype2Handler",
            "MyApp-V2-Production-Build-1234-Release",
            "0123456789abcdef0123456789abcdef01234567",
            "550e8400-e29b-41d4-a716-446655440000",
            "/home/user/.local/share/virtualenvs/project-AbC123dEf/bin",
            "/root/.cargo/bin:/root/.pyenv/shims:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
            "xterm-256color",
            "en_US.UTF-8",
        ] {
            assert_eq!(find(v, false), None, "{v}");
        }
        // Key-like names: hex keys and UUIDs are found (accepted).
        assert!(looks_like_credential(
            "0123456789abcdef0123456789abcdef",
            true
        ));
        assert!(looks_like_credential(
            "550e8400-e29b-41d4-a716-446655440000",
            true
        ));
        assert!(!looks_like_credential("subprocess", true));
        assert!(!looks_like_credential("/home/u/.ssh/client.key", true));
        assert!(keylike_name("UV_SIGNING_KEY") && keylike_name("ADO_PAT"));
        assert!(!keylike_name("PIP_INDEX_URL"));
    }

    /// A random base62 token of `n` characters from a seed (shrinking
    /// changes the seed, never the randomness of the token).
    pub(crate) fn token(seed: u64, n: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut x = seed | 1;
        let mut t = String::from("Aa0");
        while t.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t.push(ALPHABET[(x % 62) as usize] as char);
        }
        t
    }

    proptest! {
        #[test]
        fn random_tokens_are_found(seed in any::<u64>(), pre in "[a-z/:. =-]{0,12}") {
            let v = format!("{pre}{}", token(seed, 64));
            prop_assert!(looks_like_credential(&v, false), "{}", v);
        }

        #[test]
        fn passwords_in_urls_are_found_and_stripped(pw in "[A-Za-z0-9%!~*]{1,20}", user in "[a-z]{1,8}") {
            let v = format!("https://{user}:{pw}@registry.example.org/simple");
            prop_assert_eq!(find(&v, false), Some(Finding::UrlUserinfo));
            let s = strip_url_userinfo(&v);
            prop_assert_eq!(s, "https://registry.example.org/simple");
        }

        #[test]
        fn plain_paths_and_words_pass(parts in proptest::collection::vec("[a-z][a-z0-9_.-]{0,15}", 1..8)) {
            let v = format!("/{}", parts.join("/"));
            prop_assert!(!looks_like_credential(&v, false), "{}", v);
        }
    }
}

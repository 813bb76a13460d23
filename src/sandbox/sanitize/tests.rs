use super::*;
use proptest::prelude::*;

fn ok(f: Format, text: &str) -> Sanitized {
    match sanitize(f, text.as_bytes()) {
        Ok(s) => s,
        Err(e) => panic!("{f}: {e}\n{text}"),
    }
}

fn keys(s: &Sanitized) -> Vec<String> {
    s.removed.iter().map(|r| r.key.clone()).collect()
}

const T: &str = "Zx9Lq2Wm8Rt4Yp6Vn3Bk7Hd1Fs5Gj0AcQe";
const P: &str = "Pw7hunterQ2";

#[test]
fn npmrc() {
    let text = format!(
        "; user npmrc\n\
         fund=false\n\
         audit=false\n\
         nodedir=/opt/node\n\
         save-exact\n\
         //registry.example.org/:_authToken={T}\n\
         //npm.example.com/:_password=\"{P}\"\n\
         //npm.example.com/:username=bob\n\
         _auth={T}\n\
         registry=https://bob:{P}@registry.example.org/\n\
         @corp:registry=https://npm.example.com/\n\
         email=bob@example.org\n\
         # old token {T}\n\
         cache=/home/u/.npm\n"
    );
    let s = ok(Format::Npmrc, &text);
    assert_eq!(
        s.text,
        "; user npmrc\nfund=false\naudit=false\nnodedir=/opt/node\nsave-exact\n\
         registry=https://registry.example.org/\n@corp:registry=https://npm.example.com/\ncache=/home/u/.npm\n"
    );
    assert_eq!(
        keys(&s),
        [
            "//registry.example.org/:_authToken",
            "//npm.example.com/:_password",
            "//npm.example.com/:username",
            "_auth",
            "registry",
            "email",
            "comment"
        ]
    );
    assert_eq!(s.removed[4].why, Why::Userinfo);
    assert_eq!(s.removed[4].line, 10);
}

#[test]
fn pip_conf_and_pypirc() {
    let text = format!(
        "[global]\n\
         index-url = https://bob:{P}@pypi.example.org/simple\n\
         extra-index-url =\n    https://a.example.org/simple\n    https://u:{P}@b.example.org/simple\n\
         timeout: 60\n\
         keyring-provider = subprocess\n\
         # a comment\n\
         [install]\n\
         find-links = /opt/wheels\n"
    );
    let s = ok(Format::PipConf, &text);
    assert_eq!(
        s.text,
        "[global]\nindex-url = https://pypi.example.org/simple\nextra-index-url =\n    https://a.example.org/simple\n    \
         https://b.example.org/simple\ntimeout: 60\n# a comment\n[install]\nfind-links = /opt/wheels\n"
    );
    assert_eq!(
        keys(&s),
        [
            "global.index-url",
            "global.extra-index-url",
            "global.keyring-provider"
        ]
    );

    let text = format!(
        "[distutils]\nindex-servers =\n    pypi\n    corp\n\n[pypi]\nusername = __token__\npassword = pypi-{T}{T}\n\n\
         [corp]\nrepository = https://u:{P}@corp.example.org/\nusername = bob\npassword = {P}\n"
    );
    let s = ok(Format::Pypirc, &text);
    assert_eq!(
        s.text,
        "[distutils]\nindex-servers =\n    pypi\n    corp\n\n[pypi]\n\n[corp]\nrepository = https://corp.example.org/\n"
    );
}

#[test]
fn cargo_config() {
    let text = format!(
        "# cargo config\n\
         [build]\njobs = 4 # parallel\n\n\
         [registry]\ntoken = \"{T}\"\nglobal-credential-providers = [\"cargo:token\"]\n\n\
         [registries.corp]\nindex = \"sparse+https://u:{P}@corp.example.org/index/\"\ntoken = \"{T}\"\n\
         credential-provider = \"cargo:libsecret\"\n\n\
         [credential-alias]\nmine = [\"/usr/bin/cred\", \"--flag\"]\n\n\
         [http]\nproxy = \"http://u:{P}@proxy.example.com:3128\"\n\n\
         [net]\ngit-fetch-with-cli = true\n"
    );
    let s = ok(Format::CargoConfig, &text);
    assert!(
        s.text
            .starts_with("# cargo config\n[build]\njobs = 4 # parallel\n"),
        "{}",
        s.text
    );
    assert!(
        s.text
            .contains("index = \"sparse+https://corp.example.org/index/\"\n"),
        "{}",
        s.text
    );
    assert!(
        s.text.contains("[net]\ngit-fetch-with-cli = true\n"),
        "{}",
        s.text
    );
    for gone in [
        "token",
        "credential-provider",
        "credential-alias",
        "cred",
        P,
        T,
    ] {
        assert!(!s.text.contains(gone), "{gone} in\n{}", s.text);
    }
    assert_eq!(
        s.removed
            .iter()
            .find(|r| r.key == "registry.token")
            .unwrap()
            .line,
        6
    );
    // Dotted keys and inline tables.
    let s = ok(
        Format::CargoConfig,
        &format!(
            "registries.x.token = \"{T}\"\nregistries.x.index = \"https://x.example.org/\"\nregistry = {{ token = \"{T}\" }}\n"
        ),
    );
    assert!(!s.text.contains(T), "{}", s.text);
    assert!(s.text.contains("registries.x.index"), "{}", s.text);
}

#[test]
fn uv_toml() {
    let text = format!(
        "index-url = \"https://u:{P}@pypi.example.org/simple\"\nkeyring-provider = \"subprocess\"\ncache-dir = \"/tmp/uv\"\n\n\
         [[index]]\nname = \"corp\"\nurl = \"https://ghp_{T}@corp.example.org/simple\"\n\n\
         [pip]\nextra-index-url = [\"https://a.example.org/simple\", \"https://u:{P}@b.example.org/simple\"]\n"
    );
    let s = ok(Format::UvToml, &text);
    assert!(
        s.text
            .contains("index-url = \"https://pypi.example.org/simple\""),
        "{}",
        s.text
    );
    assert!(
        s.text
            .contains("[[index]]\nname = \"corp\"\nurl = \"https://corp.example.org/simple\""),
        "{}",
        s.text
    );
    assert!(
        s.text
            .contains("\"https://a.example.org/simple\", \"https://b.example.org/simple\""),
        "{}",
        s.text
    );
    assert!(
        !s.text.contains("keyring") && !s.text.contains(P) && !s.text.contains(T),
        "{}",
        s.text
    );
}

#[test]
fn gitconfig() {
    let text = format!(
        "[user]\n\tname = Ann Example\n\temail = ann@example.org\n\
         [credential]\n\thelper = store\n\t# how it logs in\n\
         [credential \"https://example.org\"]\n\tusername = bob\n\
         [url \"https://ghp_{T}@git.example.com/\"]\n\tinsteadOf = https://git.example.com/\n\
         [http \"https://example.org/\"]\n\textraHeader = Authorization: Bearer {T}\n\
         [sendemail]\n\tsmtpserver = mail.example.org\n\tsmtpPass = {P}\n\
         [remote \"origin\"]\n\turl = https://u:{P}@example.org/r.git\n\
         [alias]\n\tst = status # short\n\tlg = \"log \\\n --oneline\"\n\
         [include]\n\tpath = ~/.gitconfig.local\n\
         [core]\n\teditor = vim\n"
    );
    let s = ok(Format::GitConfig, &text);
    assert_eq!(
        s.text,
        "[user]\n\tname = Ann Example\n\temail = ann@example.org\n\
         [http \"https://example.org/\"]\n[sendemail]\n\tsmtpserver = mail.example.org\n\
         [remote \"origin\"]\n\turl = https://example.org/r.git\n\
         [alias]\n\tst = status # short\n\tlg = \"log \\\n --oneline\"\n\
         [include]\n\tpath = ~/.gitconfig.local\n[core]\n\teditor = vim\n"
    );
    assert_eq!(s.includes, ["~/.gitconfig.local"]);
    assert!(
        keys(&s).contains(&"http.<subsection>.extraheader".to_string()),
        "{:?}",
        keys(&s)
    );
}

#[test]
fn yarnrc() {
    let text = format!(
        "# yarn settings\n\
         enableTelemetry: false\n\
         npmRegistryServer: \"https://u:{P}@registry.example.org\"\n\
         npmAuthToken: {T}\n\
         npmScopes:\n  corp:\n    npmAuthToken: \"{T}\"\n    npmRegistryServer: https://corp.example.org\n\
         npmRegistries:\n  \"//registry.example.org\":\n    npmAuthIdent: \"u:{P}\"\n    npmAlwaysAuth: true\n\
         plugins:\n  - path: .yarn/plugins/x.cjs\n    spec: \"@yarnpkg/plugin-x\"\n\
         yarnPath: .yarn/releases/yarn-4.cjs\n"
    );
    let s = ok(Format::YarnRc, &text);
    assert_eq!(
        s.text,
        "# yarn settings\nenableTelemetry: false\nnpmRegistryServer: \"https://registry.example.org\"\n\
         npmScopes:\n  corp:\n    npmRegistryServer: https://corp.example.org\n\
         npmRegistries:\n  \"//registry.example.org\":\n    npmAlwaysAuth: true\n\
         plugins:\n  - path: .yarn/plugins/x.cjs\n    spec: \"@yarnpkg/plugin-x\"\nyarnPath: .yarn/releases/yarn-4.cjs\n"
    );
    assert!(
        keys(&s).contains(&"npmScopes.corp.npmAuthToken".to_string()),
        "{:?}",
        keys(&s)
    );
}

#[test]
fn formats_by_path() {
    use std::path::Path;
    for (p, f) in [
        ("/home/u/.npmrc", Some(Format::Npmrc)),
        ("/usr/etc/npmrc", Some(Format::Npmrc)),
        ("/home/u/.config/pnpm/rc", Some(Format::Npmrc)),
        ("/home/u/.config/pip/pip.conf", Some(Format::PipConf)),
        ("/home/u/.pypirc", Some(Format::Pypirc)),
        ("/home/u/.cargo/config", Some(Format::CargoConfig)),
        ("/home/u/.cargo/config.toml", Some(Format::CargoConfig)),
        ("/home/u/.config/uv/uv.toml", Some(Format::UvToml)),
        ("/home/u/.config/git/config", Some(Format::GitConfig)),
        ("/etc/gitconfig", Some(Format::GitConfig)),
        ("/home/u/.yarnrc.yml", Some(Format::YarnRc)),
        ("/home/u/project/config", None),
        ("/home/u/.docker/config.json", None),
    ] {
        assert_eq!(format_of(Path::new(p)), f, "{p}");
    }
    for l in LOCATIONS {
        if !l.path.starts_with('$') {
            assert_eq!(format_of(Path::new(l.path)), Some(l.format), "{}", l.path);
        }
    }
}

#[test]
fn files_without_credentials_are_copied_byte_for_byte() {
    for (f, text) in [
        (Format::Npmrc, "fund=false\r\n; c\r\naudit=false"),
        (
            Format::PipConf,
            "[global]\ntimeout = 60\nindex-url = https://pypi.example.org/simple\n",
        ),
        (
            Format::CargoConfig,
            "# c\n[build]\njobs = 4   # x\n[target.x86_64-unknown-linux-gnu]\nlinker = \"clang\"\n",
        ),
        (
            Format::UvToml,
            "native-tls = true\n[[index]]\nurl = \"https://x.example.org/simple\"\n",
        ),
        (
            Format::GitConfig,
            "[core]\n\tpager = less -R\n[diff \"x\"]\n\ttextconv = cat\n",
        ),
        (
            Format::YarnRc,
            "nodeLinker: node-modules\n\nenableGlobalCache: true\n",
        ),
    ] {
        let s = ok(f, text);
        assert_eq!(s.text, text, "{f}");
        assert!(s.removed.is_empty(), "{f}: {:?}", s.removed);
    }
}

#[test]
fn fails_closed() {
    let cases: &[(Format, &[u8])] = &[
        (Format::PipConf, b"index-url = https://x.example.org/\n"),
        (Format::PipConf, b"[global]\njust words\n"),
        (Format::Pypirc, b"[pypi]\nusername\n"),
        (Format::CargoConfig, b"[registry\ntoken = \"x\"\n"),
        (Format::UvToml, b"index-url = \n"),
        (Format::GitConfig, b"name = x\n"),
        (Format::GitConfig, b"[user]\n\tname = \"unterminated\n"),
        (Format::GitConfig, b"[user] name = x\n"),
        (Format::GitConfig, b"[user]\n\t9name = x\n"),
        (
            Format::YarnRc,
            b"npmScopes: { corp: { npmAuthToken: x } }\n",
        ),
        (Format::YarnRc, b"base: &b\n  x: 1\n"),
        (Format::YarnRc, b"---\na: 1\n"),
        (Format::Npmrc, b"fund=\xff\n"),
    ];
    for (f, text) in cases {
        let err = sanitize(*f, text).unwrap_err();
        assert!(
            matches!(err, SanitizeError::Parse { .. } | SanitizeError::NotText),
            "{f} {:?}: {err}",
            String::from_utf8_lossy(text)
        );
    }
    assert_eq!(
        sanitize(Format::Npmrc, &vec![b'a'; MAX_SIZE + 1]),
        Err(SanitizeError::TooLarge)
    );
    // A token left where the format sanitiser does not look (a TOML comment).
    let err = sanitize(
        Format::CargoConfig,
        format!("# {T}\n[build]\njobs = 1\n").as_bytes(),
    )
    .unwrap_err();
    assert!(
        matches!(err, SanitizeError::Residual { line: 1, .. }),
        "{err}"
    );
    // A removed password repeated in an innocent-looking comment.
    let err = sanitize(
        Format::Npmrc,
        b"_password=hunter22\n; hunter22 is the old one\n",
    )
    .unwrap_err();
    assert_eq!(err, SanitizeError::Leak);
    // The error names the line and what failed, never a value.
    let err = sanitize(
        Format::GitConfig,
        format!("[user]\n\tname = \"{T}\n").as_bytes(),
    )
    .unwrap_err();
    assert!(!err.to_string().contains(T), "{err}");
    assert!(err.to_string().contains("line 2"), "{err}");
}

// ---- property tests: random credentials in every supported position -------------------

/// A random-looking token from a seed: shrinking changes the seed, never
/// the token's randomness (a shrunk `aaaa…` token is not a credential any
/// rule could recognise in free text, such as a comment).
fn token(seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seed | 1;
    let mut t = String::from("Aa0");
    while t.len() < 36 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t.push(ALPHABET[(x % 62) as usize] as char);
    }
    t
}

/// A token (three character classes, high entropy) and a low-entropy
/// password (found by position only: URL userinfo, password keys). In
/// comments, where only the look of a string can tell, the generated
/// tokens carry a known prefix (`ghp_`, `glpat-`, `npm_`): a bare random
/// token there is found by the entropy backstop only most of the time.
fn secrets() -> impl Strategy<Value = (String, String)> {
    (any::<u64>().prop_map(token), "Pw[0-9][a-z]{3,10}[0-9]")
}

/// Which positions the generated file uses.
fn mask() -> impl Strategy<Value = Vec<bool>> {
    proptest::collection::vec(any::<bool>(), 12)
}

fn pick(mask: &[bool], lines: &[String]) -> String {
    lines
        .iter()
        .zip(mask.iter().cycle())
        .filter(|(_, on)| **on)
        .map(|(l, _)| l.as_str())
        .collect()
}

fn npmrc_with(t: &str, p: &str, m: &[bool]) -> String {
    let mut lines = vec![
        format!("//registry.example.org/:_authToken={t}\n"),
        format!("//npm.example.com/:_auth=\"{t}\"\n"),
        format!("//npm.example.com/:_password={p}\n"),
        format!("_authToken={t}\n"),
        format!("_password = {p}\n"),
        format!("registry=https://bob:{p}@registry.example.org/\n"),
        format!("@corp:registry=https://{t}@npm.example.com/\n"),
        format!("https-proxy=http://u:{p}@proxy.example.com:3128\n"),
        format!("otp={t}\n"),
        format!("key=\"-----BEGIN PRIVATE KEY-----\\n{t}\\n-----END PRIVATE KEY-----\"\n"),
        format!("; token ghp_{t}\n"),
        format!("NPM_CONFIG_X_TOKEN={t}\n"),
    ];
    let mut s = pick(m, &lines);
    lines.clear();
    s.push_str("fund=false\naudit=false\n");
    s
}

fn pip_with(t: &str, p: &str, m: &[bool]) -> String {
    let lines = vec![
        format!("index-url = https://bob:{p}@pypi.example.org/simple\n"),
        format!(
            "extra-index-url =\n    https://a.example.org/simple\n    https://u:{p}@b.example.org/simple\n"
        ),
        format!("find-links: https://{t}@wheels.example.org/\n"),
        format!("proxy = http://u:{p}@proxy.example.org:3128\n"),
        format!("# ghp_{t}\n"),
        format!("client-token = {t}\n"),
    ];
    format!(
        "[global]\ntimeout = 60\n{}[install]\nno-cache-dir = true\n",
        pick(m, &lines)
    )
}

fn pypirc_with(t: &str, p: &str, m: &[bool]) -> String {
    let lines = vec![
        "username = __token__\n".to_string(),
        format!("password = pypi-{t}\n"),
        format!("repository = https://u:{p}@upload.example.org/legacy/\n"),
        format!("password: {p}\n"),
    ];
    format!(
        "[distutils]\nindex-servers =\n    pypi\n[pypi]\n{}",
        pick(m, &lines)
    )
}

fn cargo_with(t: &str, p: &str, m: &[bool]) -> String {
    let reg = vec![
        format!("token = \"{t}\"\n"),
        format!("secret-key = \"k3.secret.{t}\"\n"),
        "credential-provider = \"cargo:libsecret\"\n".to_string(),
        format!("index = \"sparse+https://u:{p}@corp.example.org/index/\"\n"),
    ];
    let top = vec![
        format!("registries.dotted.token = \"{t}\"\n"),
        format!("inline = {{ token = \"{t}\", index = \"https://x.example.org/\" }}\n"),
    ];
    format!(
        "{}[build]\njobs = 2 # a comment\n[registry]\n{}global-credential-providers = [\"cargo:token\", \"/bin/x --t {t}\"]\n\
         [registries.corp]\n{}[http]\nproxy = \"http://u:{p}@proxy.example.com\"\n[credential-alias]\nx = [\"/bin/cred\", \"{t}\"]\n",
        pick(&m[6..], &top),
        pick(m, &reg),
        pick(&m[3..], &reg),
    )
}

fn uv_with(t: &str, p: &str, m: &[bool]) -> String {
    let lines = vec![
        format!("index-url = \"https://u:{p}@pypi.example.org/simple\"\n"),
        format!("extra-index-url = [\"https://a.example.org/\", \"https://{t}@b.example.org/\"]\n"),
        "keyring-provider = \"subprocess\"\n".to_string(),
        format!("publish-url = \"https://__token__:{t}@upload.example.org/\"\n"),
    ];
    format!(
        "{}cache-dir = \"/tmp/uv\"\n[[index]]\nname = \"corp\"\nurl = \"https://u:{p}@corp.example.org/simple\"\n",
        pick(m, &lines)
    )
}

fn gitconfig_with(t: &str, p: &str, m: &[bool]) -> String {
    let lines = vec![
        format!("[credential]\n\thelper = store\n\tusername = {t}\n"),
        format!(
            "[credential \"https://example.org\"]\n\thelper = \"!f() {{ echo password={p}; }}; f\"\n"
        ),
        format!("[url \"https://{t}@git.example.com/\"]\n\tinsteadOf = https://git.example.com/\n"),
        format!(
            "[url \"https://u:{p}@git.example.net/\"]\n\tpushInsteadOf = https://git.example.net/\n"
        ),
        format!("[http \"https://example.org/\"]\n\textraHeader = Authorization: Basic {t}\n"),
        format!("[http]\n\textraheader = \"PRIVATE-TOKEN: {p}\"\n"),
        format!("[sendemail]\n\tsmtpPass = {p}\n"),
        format!("[remote \"origin\"]\n\turl = https://x:{p}@example.org/r.git\n"),
        format!("[github]\n\toauth-token = {t}\n"),
        format!("# glpat-{t}\n"),
    ];
    format!(
        "[user]\n\tname = Ann\n{}[core]\n\teditor = vi\n",
        pick(m, &lines)
    )
}

fn yarnrc_with(t: &str, p: &str, m: &[bool]) -> String {
    let lines = vec![
        format!("npmAuthToken: {t}\n"),
        format!("npmAuthIdent: \"u:{p}\"\n"),
        format!("npmRegistryServer: \"https://u:{p}@registry.example.org\"\n"),
        format!("npmScopes:\n  corp:\n    npmAuthToken: \"{t}\"\n    npmAlwaysAuth: true\n"),
        format!("npmRegistries:\n  \"//r.example.org\":\n    npmAuthIdent: u:{p}\n"),
        format!("httpsProxy: http://u:{p}@proxy.example.org\n"),
        format!("# npm_{t}\n"),
        format!("unsafeHttpWhitelist:\n  - \"https://{t}@x.example.org\"\n"),
    ];
    format!(
        "enableTelemetry: false\n{}nodeLinker: pnp\n",
        pick(m, &lines)
    )
}

type Gen = fn(&str, &str, &[bool]) -> String;

const GENS: &[(Format, Gen)] = &[
    (Format::Npmrc, npmrc_with),
    (Format::PipConf, pip_with),
    (Format::Pypirc, pypirc_with),
    (Format::CargoConfig, cargo_with),
    (Format::UvToml, uv_with),
    (Format::GitConfig, gitconfig_with),
    (Format::YarnRc, yarnrc_with),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No credential from the original ever appears in the copy, the copy
    /// exists (every generated file parses), and the harmless settings survive.
    #[test]
    fn no_credential_reaches_the_copy((t, p) in secrets(), m in mask(), which in 0..GENS.len()) {
        let (f, make) = GENS[which];
        let text = make(&t, &p, &m);
        match sanitize(f, text.as_bytes()) {
            Ok(s) => {
                prop_assert!(!s.text.contains(&t), "{f}: token in copy\n{text}\n---\n{}", s.text);
                prop_assert!(!s.text.contains(&p), "{f}: password in copy\n{text}\n---\n{}", s.text);
                for keep in ["fund=false", "timeout = 60", "jobs = 2", "cache-dir", "name = Ann", "nodeLinker: pnp", "[pypi]"] {
                    prop_assert!(!text.contains(keep) || s.text.contains(keep), "{f}: lost {keep}\n{}", s.text);
                }
            }
            Err(e) => prop_assert!(false, "{f}: {e}\n{text}"),
        }
    }

    /// Files without credentials come back unchanged.
    #[test]
    fn clean_files_are_unchanged(
        vals in proptest::collection::vec("[a-z][a-z0-9./-]{0,20}", 1..6),
        comment in "[a-zA-Z ,.]{0,30}",
    ) {
        let npm: String = vals.iter().enumerate().map(|(i, v)| format!("k{i}={v}\n")).collect();
        let ini = format!("[global]\n# {comment}\n{}", vals.iter().enumerate().map(|(i, v)| format!("k{i} = {v}\n")).collect::<String>());
        let toml = format!("# {comment}\n{}", vals.iter().enumerate().map(|(i, v)| format!("k{i} = \"{v}\"\n")).collect::<String>());
        let git = format!("[core]\n\t# {comment}\n{}", vals.iter().enumerate().map(|(i, v)| format!("\tk{i} = {v}\n")).collect::<String>());
        let yaml = format!("# {comment}\n{}", vals.iter().enumerate().map(|(i, v)| format!("k{i}: {v}\n")).collect::<String>());
        for (f, text) in [(Format::Npmrc, &npm), (Format::PipConf, &ini), (Format::CargoConfig, &toml), (Format::UvToml, &toml), (Format::GitConfig, &git), (Format::YarnRc, &yaml)] {
            let s = sanitize(f, text.as_bytes());
            prop_assert_eq!(s.as_ref().map(|s| s.text.as_str()), Ok(text.as_str()), "{}", f);
        }
    }
}

proptest! {
    /// Whatever the bytes, the sanitiser answers (a copy or a reason) and
    /// never panics: phase 2 runs it on every launch.
    #[test]
    fn never_panics(text in "(\\PC|[\\[\\]\"'=:#;\\\\{}&*|>\\- \t\n]){0,200}", which in 0..GENS.len()) {
        let _ = sanitize(GENS[which].0, text.as_bytes());
    }

    #[test]
    fn never_panics_on_near_valid_lines(
        lines in proptest::collection::vec("[ \t]{0,4}(\\[|\\[\"|-|- |#|;|//|\")?[a-zA-Z_:/.@\"]{0,12}([=:]| = |: )?[\"']?[a-zA-Z0-9:/@.\"\\\\]{0,16}\\]?", 0..12),
        which in 0..GENS.len(),
    ) {
        let _ = sanitize(GENS[which].0, lines.join("\n").as_bytes());
    }
}

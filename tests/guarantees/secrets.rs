//! Guarantee 2 (secrets hidden, even inside visible trees): home secrets,
//! system secrets, and `.env` files in the workspace (depth 0..=4; VCS,
//! dependency and build directories skipped; templates allowed).
use crate::common::*;

/// Home secrets the dev profile hides; each file holds its own canary.
const HOME_SECRETS: &[&str] = &[
    ".ssh/id_ed25519",
    ".ssh/config",
    ".aws/credentials",
    ".cargo/credentials.toml",
    ".cargo/credentials",
    ".gnupg/private-keys-v1.d/key",
    ".config/gh/hosts.yml",
    ".config/gcloud/credentials.db",
    ".kube/config",
    ".docker/config.json",
    ".netrc",
    ".git-credentials",
    ".pypirc",
];

#[test]
fn home_secrets_are_unreadable_and_never_leak() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let tag = canary();
    for (i, rel) in HOME_SECRETS.iter().enumerate() {
        home.write(rel, &format!("{tag}_{i}\n"));
    }
    // ~/.cargo is a visible toolchain: its secrets must be masked inside it.
    home.write(".cargo/config.toml", "[net]\noffline = true\n");
    // ~/.npmrc is shown as a sanitised copy: its settings pass, its token
    // never does.
    let npmrc = format!("fund=false\n//registry.example.org/:_authToken={tag}_npm\n");
    home.write(".npmrc", &npmrc);
    let mut script = String::new();
    for rel in HOME_SECRETS {
        script.push_str(&format!(
            "if cat \"$HOME/{rel}\" 2>/dev/null; then echo \"READ {rel}\"; fi\n"
        ));
    }
    // Search everything the sandbox shows except the big system trees (which
    // hold no canary: the canaries live only in the fake home).
    script.push_str(
        "cat \"$HOME/.cargo/config.toml\" >/dev/null && echo cargo-config-visible\n\
         grep -qx fund=false \"$HOME/.npmrc\" || echo npmrc-setting-missing\n\
         grep -rsl --exclude-dir=proc --exclude-dir=usr --exclude-dir=lib --exclude-dir=lib64 \
           --exclude-dir=lib32 --exclude-dir=bin --exclude-dir=sbin --exclude-dir=opt \
           --exclude-dir=snap --exclude-dir=nix",
    );
    script.push_str(&format!(" {tag} / ; echo grep=$?\n"));
    let out = run_in(&ws, &home, &[], &script);
    expect_code(&out, 0);
    let text = stdout(&out);
    assert!(!text.contains("READ "), "{text}");
    assert!(!text.contains(&tag), "canary leaked:\n{text}");
    assert!(
        !stderr(&out).contains(&tag),
        "canary leaked:\n{}",
        stderr(&out)
    );
    assert!(text.contains("cargo-config-visible\n"), "{text}");
    // grep searched and matched nothing: -l prints no file name, and the status
    // is 1 (no match) or 2 (no match, and the masked files were unreadable).
    assert!(
        text == "cargo-config-visible\ngrep=1\n" || text == "cargo-config-visible\ngrep=2\n",
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(home.path().join(".npmrc")).unwrap(),
        npmrc
    );
    // Host side: the secrets are untouched.
    for (i, rel) in HOME_SECRETS.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(home.path().join(rel)).unwrap(),
            format!("{tag}_{i}\n")
        );
    }
}

#[test]
fn system_secrets_are_hidden() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let out = run_in(
        &ws,
        &home,
        &[],
        "for f in /etc/shadow /etc/gshadow /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_rsa_key; do
           [ -e \"$f\" ] || continue
           if n=$(cat \"$f\" 2>/dev/null | wc -c) && [ \"$n\" -gt 0 ]; then echo \"READ $f\"; fi
           echo checked $f
         done
         ls /etc/ssl/private 2>/dev/null | wc -l",
    );
    expect_code(&out, 0);
    let text = stdout(&out);
    assert!(!text.contains("READ"), "{text}");
    if std::path::Path::new("/etc/shadow").exists() {
        assert!(text.contains("checked /etc/shadow"), "{text}");
    }
    assert!(text.ends_with("0\n"), "{text}");
}

#[test]
fn env_files_in_the_workspace_are_hidden_as_documented() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let c = canary();
    // Hidden: .env and .env.* at any depth (a deeper tree than max_depth = 64
    // refuses the run), and links with those names.
    let hidden = [
        ".env",
        ".env.local",
        "a/b/c/.env",
        "a/b/c/.env.local",
        "apps/web/.env.production",
        "d1/d2/d3/d4/.env",
        "d1/d2/d3/d4/d5/d6/d7/d8/.env",
    ];
    // Visible, as documented in profiles/dev.toml: templates (allow list) and
    // files below skipped directories (node_modules, target, .venv …).
    // Asserting them keeps the documentation honest.
    let visible = [
        ".env.example",
        "a/b/c/.env.sample",
        "node_modules/pkg/.env",
        "target/debug/.env",
        ".venv/lib/.env",
        "not.env",
    ];
    for f in hidden.iter().chain(visible.iter()) {
        ws.write(f, &format!("{c} {f}\n"));
    }
    let mut script = String::new();
    for f in hidden.iter().chain(visible.iter()) {
        script.push_str(&format!("cat {f} 2>/dev/null || echo DENIED {f}\n"));
    }
    let out = run_in(&ws, &home, &["--report", "json"], &script);
    expect_code(&out, 0);
    let text = stdout(&out);
    for f in hidden {
        assert!(text.contains(&format!("DENIED {f}\n")), "{f}: {text}");
        assert!(!text.contains(&format!("{c} {f}\n")), "{f} leaked: {text}");
        // Host side: the file is still there, unchanged.
        assert_eq!(
            std::fs::read_to_string(ws.path().join(f)).unwrap(),
            format!("{c} {f}\n")
        );
    }
    for f in visible {
        assert!(text.contains(&format!("{c} {f}\n")), "{f}: {text}");
    }
    // The report names exactly the hidden files.
    let report = stderr(&out);
    let json: serde_json::Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    let mut listed: Vec<String> = json["env_files"]["hidden"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut want: Vec<String> = hidden
        .iter()
        .map(|f| ws.path().join(f).display().to_string())
        .collect();
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(json["env_files"]["unreadable"], serde_json::json!([]));
}

/// The scan on a generated 50,000-file tree: correct, and its cost printed
/// (not asserted; `scripts/bench-env-scan` measures it with hyperfine).
#[test]
fn env_scan_on_a_50000_file_tree() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let c = canary();
    // 500 directories × 100 files, in a tree 4 levels deep: 10 × 10 × 5 dirs.
    // The files are hard links of one empty file: to readdir they are regular
    // files like any other, and linking is ~40× faster than creating here.
    let seed = home.write("seed", "");
    let mut n = 0;
    for a in 0..10 {
        for b in 0..10 {
            for d in 0..5 {
                let dir = ws.path().join(format!("m{a}/p{b}/src{d}"));
                std::fs::create_dir_all(&dir).unwrap();
                for f in 0..100 {
                    std::fs::hard_link(&seed, dir.join(format!("f{f}.rs"))).unwrap();
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 50_000);
    let secrets = [
        ".env",
        "m3/.env.local",
        "m9/p9/.env",
        "m5/p5/src4/.env.test",
    ];
    for s in secrets {
        ws.write(s, &c);
    }
    let script: String = secrets
        .iter()
        .map(|s| format!("cat {s} 2>/dev/null; "))
        .collect();
    let t = std::time::Instant::now();
    let out = run_in(&ws, &home, &["--report", "json"], &script);
    let with_scan = t.elapsed();
    // The same run on an empty workspace, for comparison.
    let empty = Workspace::new();
    let t = std::time::Instant::now();
    let base = run_in(&empty, &home, &[], "true");
    let without = t.elapsed();
    expect_code(&base, 0);
    assert!(!stdout(&out).contains(&c), "{}", stdout(&out));
    let json: serde_json::Value =
        serde_json::from_str(stderr(&out).lines().last().unwrap()).unwrap();
    assert_eq!(json["env_files"]["hidden"].as_array().unwrap().len(), 4);
    // 1 + 10 + 100 + 500 directories (the scan runs before the placeholders of
    // missing protected paths are made).
    assert_eq!(json["env_files"]["dirs_read"], 611);
    eprintln!(
        "env scan, 50,000 files in 611 dirs: run took {with_scan:?} (empty workspace: {without:?})"
    );
}

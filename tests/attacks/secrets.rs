//! Secrets: the default profile's hidden paths must not be readable, however
//! they are reached (directly, by search, by symlink, /proc, inherited fds).

use crate::harness::*;

/// Plant the canary at HOME/REL; the sandbox read must fail with an errno
/// (or read an empty mask) and the host read (control) must see it.
fn hidden_home_file(c: &Ctx, rel: &str) {
    c.plant_secret(rel);
    let path = format!("{}/{rel}", c.home().display());
    let out = c.probe_sc(&[], &["read", &path]);
    let control = c.probe_host(&["read", &path]);
    c.seen(&out.result());
    c.assert_no_canary(&out);
    let r = out.result();
    assert!(
        r == "OK " || r.starts_with("ERR ENOENT") || r.starts_with("ERR EACCES"),
        "{r}"
    );
    c.assert_control_leaks(&control);
}

macro_rules! hidden_home {
    ($($name:ident => $rel:literal,)*) => {$(
        attack!($name, "secrets", |c| { hidden_home_file(&c, $rel); });
    )*};
}

// Every file-level secret of the default profile under $HOME (directories get a
// typical file inside). $HOME is a private tmpfs, so most are simply absent.
hidden_home! {
    secret_ssh_private_key => ".ssh/id_ed25519",
    secret_aws_credentials => ".aws/credentials",
    secret_azure_tokens => ".azure/msal_token_cache.json",
    secret_gcloud_credentials => ".config/gcloud/application_default_credentials.json",
    secret_gnupg_private_keys => ".gnupg/private-keys-v1.d/key.key",
    secret_gh_token => ".config/gh/hosts.yml",
    secret_kube_config => ".kube/config",
    secret_docker_auth => ".docker/config.json",
    secret_netrc => ".netrc",
    secret_git_credentials => ".git-credentials",
    secret_npmrc_token => ".npmrc",
    secret_pypirc => ".pypirc",
    secret_vault_token => ".vault-token",
    secret_claude_credentials => ".claude/.credentials.json",
    secret_password_store => ".password-store/email.gpg",
    // ~/.cargo is visible read-only (toolchains); its tokens are masked inside it.
    secret_cargo_credentials_in_visible_tree => ".cargo/credentials.toml",
    secret_cargo_credentials_legacy_in_visible_tree => ".cargo/credentials",
}

/// A host-only secret under /etc: the sandbox sees no byte of it.
fn hidden_etc(c: &Ctx, path: &str) {
    let host = std::fs::metadata(path);
    if !crate::common::require(
        host.as_ref()
            .map(|m| m.len() > 0 || m.is_dir())
            .unwrap_or(false),
        &format!("{path} present on the host"),
    ) {
        return;
    }
    let out = c.sc(
        &[],
        &format!("if [ -d {path} ]; then ls -A {path}; else wc -c < {path}; fi"),
    );
    c.seen(&format!(
        "code={:?} {}{}",
        out.code,
        out.stdout.trim(),
        out.stderr.trim()
    ));
    let s = out.stdout.trim();
    // A file shows up empty (0 bytes) or not at all; a directory is empty.
    assert!(s.is_empty() || s == "0", "{out:?}");
    // Control: the host's copy is not empty (as root its content is readable).
    if let Ok(text) = std::fs::read_to_string(path) {
        assert!(!text.is_empty());
        let out = c.sc(&[], &format!("cat {path}; ls -A {path}"));
        for line in text.lines().filter(|l| l.len() > 8) {
            assert!(!out.all().contains(line), "leaked {line:?}");
        }
    }
}

attack!(secret_etc_shadow, "secrets", |c| {
    hidden_etc(&c, "/etc/shadow")
});
attack!(secret_etc_gshadow, "secrets", |c| {
    hidden_etc(&c, "/etc/gshadow")
});
attack!(secret_etc_ssl_private, "secrets", |c| {
    hidden_etc(&c, "/etc/ssl/private")
});

attack!(secret_dotenv_in_workspace, "secrets", |c| {
    let text = format!("API_KEY={}\n", c.canary);
    c.ws.write(".env", &text);
    c.ws.write("apps/web/.env.local", &text);
    let a = c.probe_sc(&[], &["read", ".env"]);
    let b = c.probe_sc(&[], &["read", "apps/web/.env.local"]);
    c.seen(&format!("{} / {}", a.result(), b.result()));
    for o in [&a, &b] {
        c.assert_no_canary(o);
        let r = o.result();
        assert!(r == "OK " || r.starts_with("ERR "), "{r}");
    }
    c.assert_control_leaks(&c.probe_host(&["read", "apps/web/.env.local"]));
});

/// Plant the canary in many secret places for the search cases.
fn plant_everywhere(c: &Ctx) {
    for rel in [
        ".ssh/id_ed25519",
        ".aws/credentials",
        ".netrc",
        ".cargo/credentials.toml",
        ".kube/config",
    ] {
        c.plant_secret(rel);
    }
    c.ws.write(".env", &format!("TOKEN={}\n", c.canary));
}

attack!(secret_grep_whole_tree, "secrets", |c| {
    plant_everywhere(&c);
    // The whole visible tree but /usr (5 GB of read-only system files, no
    // secrets) and the pseudo-filesystems.
    let script = "grep -rIh --exclude-dir=usr --exclude-dir=proc --exclude-dir=sys \
                  CANARY_ / 2>/dev/null; echo done";
    let out = c.sc(&["--timeout", "120s"], script);
    c.seen(&format!(
        "code={:?} matches={}",
        out.code,
        out.stdout.lines().count() - 1
    ));
    assert!(out.stdout.ends_with("done\n"), "{out:?}");
    c.assert_no_canary(&out);
    let control = c.host(&format!(
        "grep -rIh CANARY_ \"$HOME\" {}",
        c.ws.path().display()
    ));
    c.assert_control_leaks(&control);
});

attack!(secret_find_by_name, "secrets", |c| {
    plant_everywhere(&c);
    let script = "find / -xdev \\( -path /proc -o -path /usr -o -path /sys \\) -prune -o \
                  -type f \\( -name 'id_*' -o -name credentials -o -name 'credentials.toml' \
                  -o -name .netrc -o -name config -o -name .env \\) -print -exec cat {} + \
                  2>/dev/null; echo done";
    let out = c.sc(&["--timeout", "120s"], script);
    c.seen(&format!("code={:?} {}", out.code, out.stdout.trim()));
    assert!(out.stdout.ends_with("done\n"), "{out:?}");
    c.assert_no_canary(&out);
    let control = c.host(&format!(
        "find \"$HOME\" {} -type f -exec cat {{}} +",
        c.ws.path().display()
    ));
    c.assert_control_leaks(&control);
});

attack!(secret_symlink_made_inside, "secrets", |c| {
    c.plant_secret(".ssh/id_ed25519");
    // Links made in the workspace (the control then runs in the same place).
    let script = "ln -sf \"$HOME/.ssh/id_ed25519\" k && cat k; \
                  ln -sfn \"$HOME/.ssh\" d && cat d/id_ed25519; echo rc=$?";
    let out = c.sc(&[], script);
    c.seen(out.all().trim());
    c.assert_no_canary(&out);
    assert!(out.stderr.contains("No such file or directory"), "{out:?}");
    c.assert_control_leaks(&c.host(script));
});

attack!(secret_symlink_planted_in_workspace, "secrets", |c| {
    let key = c.plant_secret(".ssh/id_ed25519");
    std::os::unix::fs::symlink(&key, c.ws.path().join("key")).unwrap();
    std::os::unix::fs::symlink(key.parent().unwrap(), c.ws.path().join("sshdir")).unwrap();
    let a = c.probe_sc(&[], &["read", "key"]);
    let b = c.probe_sc(&[], &["read", "sshdir/id_ed25519"]);
    c.seen(&format!("{} / {}", a.result(), b.result()));
    for o in [&a, &b] {
        c.assert_no_canary(o);
        assert_errno(o, &["ENOENT", "EACCES"]);
    }
    c.assert_control_leaks(&c.probe_host(&["read", "key"]));
});

attack!(secret_proc_self_root, "secrets", |c| {
    c.plant_secret(".ssh/id_ed25519");
    let a = c.probe_sc(
        &[],
        &[
            "read",
            &format!("/proc/self/root{}/.ssh/id_ed25519", c.home().display()),
        ],
    );
    let b = c.probe_sc(
        &[],
        &[
            "read",
            &format!("/proc/1/root{}/.ssh/id_ed25519", c.home().display()),
        ],
    );
    c.seen(&format!("{} / {}", a.result(), b.result()));
    for o in [&a, &b] {
        c.assert_no_canary(o);
        assert_errno(o, &["ENOENT", "EACCES"]);
    }
    c.assert_control_leaks(&c.probe_host(&[
        "read",
        &format!("/proc/self/root{}/.ssh/id_ed25519", c.home().display()),
    ]));
});

/// `exec 3<secret 4<~/.ssh; exec PREFIX python3 probe ARGS`.
fn with_fds(c: &Ctx, prefix: &str, args: &str) -> Out {
    let script = format!(
        "exec 3<\"$HOME/.ssh/id_ed25519\" 4<\"$HOME/.ssh\"; exec {prefix} {PY} .probe.py {args}"
    );
    let o = c.host_cmd(&["/bin/sh", "-c", &script]).output().unwrap();
    Out::from_output(o)
}

fn sc_prefix(c: &Ctx) -> String {
    format!(
        "{} run --workspace {} --",
        crate::common::bin().display(),
        c.ws.path().display()
    )
}

attack!(secret_inherited_fd3_on_file, "secrets", |c| {
    c.plant_secret(".ssh/id_ed25519");
    let out = with_fds(&c, &sc_prefix(&c), "readfd 3");
    c.seen(&out.result());
    c.assert_no_canary(&out);
    assert_errno(&out, &["EBADF"]);
    c.assert_control_leaks(&with_fds(&c, "", "readfd 3"));
});

attack!(secret_inherited_fd4_on_ssh_dir, "secrets", |c| {
    c.plant_secret(".ssh/id_ed25519");
    let out = with_fds(&c, &sc_prefix(&c), "dirfd 4 id_ed25519");
    c.seen(&out.result());
    c.assert_no_canary(&out);
    assert_errno(&out, &["EBADF"]);
    c.assert_control_leaks(&with_fds(&c, "", "dirfd 4 id_ed25519"));
});

attack!(secret_proc_1_and_ppid_environ, "secrets", |c| {
    // The canary is in shellcage's own environment under a harmless name.
    c.env.push(("SC_ATTACK_VALUE".into(), c.canary.clone()));
    let script = "for p in 1 $PPID; do tr '\\0' '\\n' < /proc/$p/environ; done; \
                  for e in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $e; done; echo done";
    let out = c.sc(&[], script);
    c.seen(&format!(
        "code={:?} {}",
        out.code,
        out.stderr.lines().next().unwrap_or("")
    ));
    c.assert_no_canary(&out);
    assert!(out.stdout.ends_with("done\n"), "{out:?}");
    // Control: a child reading its parent's environment sees the variable.
    let control = c.host("sh -c 'tr \"\\0\" \"\\n\" < /proc/$PPID/environ'");
    c.assert_control_leaks(&control);
});

attack!(secret_host_processes_in_proc, "secrets", |c| {
    // A host process with the canary on its command line.
    // One process (no child left behind when it is killed).
    let mut victim = std::process::Command::new(PY)
        .args(["-c", "import time; time.sleep(300)", &c.canary])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = victim.id();
    let script = format!(
        "ls /proc | grep -c '^[0-9]'; cat /proc/{pid}/cmdline; \
         for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done"
    );
    let out = c.sc(&[], &script);
    let control = c.host(&format!("tr '\\0' ' ' < /proc/{pid}/cmdline"));
    let _ = victim.kill();
    let _ = victim.wait();
    c.seen(&format!(
        "visible pids={} {}",
        out.stdout.lines().next().unwrap_or("?"),
        out.stderr.trim()
    ));
    c.assert_no_canary(&out);
    assert!(out.stderr.contains("No such file or directory"), "{out:?}");
    c.assert_control_leaks(&control);
});

// Review finding: moving the directory of a masked nested `.env` into a
// skipped directory (node_modules) would unmask it in the next run. The
// directories above a mask are pinned, so the move fails.
attack!(secret_env_move_parent_dir, "secrets", |c| {
    let env =
        c.ws.write("apps/web/.env", &format!("TOKEN={}\n", c.canary));
    let first = c.sc(
        &[],
        "mkdir -p node_modules && mv apps node_modules/apps-hidden; echo mv=$?",
    );
    c.seen(first.all().trim());
    c.assert_no_canary(&first);
    assert!(
        first.all().contains("Device or resource busy"),
        "{}",
        first.all()
    );
    let second = c.sc(&[], "cat node_modules/apps-hidden/web/.env apps/web/.env");
    c.assert_no_canary(&second);
    assert!(env.exists(), "the .env moved on the host");
    // Control: on the host the move works and the file is readable there.
    let control = c.host("mkdir -p node_modules && mv apps node_modules/apps-hidden && cat node_modules/apps-hidden/web/.env");
    c.assert_control_leaks(&control);
});

// Review finding: an agent whose workspace follows its `cd` (shell-prefix or
// SHELL integrations) could make ~/.ssh its writable workspace. A workspace
// inside a hidden path is refused before anything runs.
attack!(secret_workspace_inside_hidden_path, "secrets", |c| {
    let key = c.plant_secret(".ssh/id_ed25519");
    let ssh = key.parent().unwrap().to_path_buf();
    // No --workspace: the workspace comes from the directory, as it does for
    // an agent shell started in the directory it `cd`ed into (refused as a
    // dot-directory of the home, or as hidden); named with --workspace it is
    // still refused: the profile hides it.
    let mut seen = Vec::new();
    for named in [false, true] {
        let mut cmd = std::process::Command::new(crate::common::bin());
        cmd.arg("run");
        if named {
            cmd.arg("--workspace").arg(&ssh);
        }
        let out = Out::from_output(
            cmd.args(["--", "/bin/sh", "-c", "cat id_ed25519"])
                .current_dir(&ssh)
                .env("HOME", c.home())
                .env_remove("SHELLCAGE_WORKSPACE")
                .env_remove("SHELLCAGE_PROFILE")
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap(),
        );
        seen.push(out.result());
        c.assert_no_canary(&out);
        assert_eq!(out.code, Some(125), "{}", out.all());
        let why = if named {
            "hidden by the profile"
        } else {
            "configuration directory of your home"
        };
        assert!(out.all().contains(why), "{}", out.all());
    }
    c.seen(&seen.join(" / "));
    // Control: the same read on the host sees the key.
    let control = c.host(&format!("cat {}", key.display()));
    c.assert_control_leaks(&control);
});

// Issue 13 item 4: tool config files the default profile shows (or used to
// hide whole) hold tokens next to settings. The sandbox shows a sanitised
// copy: the settings are there, the token is not, however the file is read
// (cat, the tool itself, a dotfile symlink, an include). Before, dev showed
// ~/.cargo and ~/.gitconfig read-only, tokens included.

/// Plant `text` (with `{c}` for the canary) at each `(rel, text)`, run
/// `script` inside and on the host: inside, every `want` line shows and the
/// canary does not; the host control sees the canary.
fn sanitised_copy(c: &Ctx, files: &[(&str, &str)], script: &str, want: &[&str]) -> Out {
    for (rel, text) in files {
        c.plant(rel, &text.replace("{c}", &c.canary));
    }
    let out = c.sc(&[], script);
    c.seen(&format!("code={:?} {}", out.code, out.stdout.trim()));
    c.assert_no_canary(&out);
    for w in want {
        assert!(
            out.stdout.lines().any(|l| l.trim() == *w),
            "{w:?} missing: {out:?}"
        );
    }
    c.assert_control_leaks(&c.host(script));
    out
}

attack!(secret_cargo_config_token_in_visible_tree, "secrets", |c| {
    sanitised_copy(
        &c,
        &[(
            ".cargo/config.toml",
            "[build]\njobs = 3\n[registries.corp]\nindex = \"sparse+https://cargo.example.org/\"\ntoken = \"{c}\"\n[registry]\nglobal-credential-providers = [\"cargo:token\"]\n",
        )],
        "cat ~/.cargo/config.toml; cat ~/.cargo/config.toml~ 2>/dev/null; grep -r . ~/.cargo 2>/dev/null",
        &["jobs = 3"],
    );
});

attack!(
    secret_cargo_config_legacy_unparseable_is_hidden,
    "secrets",
    |c| {
        // Not TOML at all: no copy can be trusted, so it stays hidden, and
        // stderr says so (the path and why, never the content).
        let first = sanitised_copy(
            &c,
            &[(".cargo/config", "token = {c}\n[[[broken\n")],
            "cat ~/.cargo/config",
            &[],
        );
        assert!(
            first
                .stderr
                .contains("~/.cargo/config stays hidden: cannot parse as cargo config"),
            "{first:?}"
        );
        // Once per workspace and profile; the report has it every time.
        let out = c.sc(&["--report", "json"], "true");
        assert!(!out.stderr.contains("stays hidden"), "{out:?}");
        assert!(out.stderr.contains("\"shown\":\"hidden\""), "{out:?}");
        c.assert_no_canary(&out);
    }
);

attack!(secret_gitconfig_url_token, "secrets", |c| {
    sanitised_copy(
        &c,
        &[(
            ".gitconfig",
            "[user]\n\tname = Sandbox Tester\n[url \"https://me:{c}@git.example.org/\"]\n\tinsteadOf = https://git.example.org/\n[http \"https://git.example.org/\"]\n\textraHeader = Authorization: Bearer {c}\n[credential]\n\thelper = store --file ~/.{c}\n",
        )],
        "cat ~/.gitconfig; git config --global --list; git config --get user.name",
        &["Sandbox Tester"],
    );
});

attack!(
    secret_gitconfig_through_symlink_and_include,
    "secrets",
    |c| {
        // A dotfile manager's symlink, and a token in an included file that the
        // profile does not show at all: git inside reads copies of both.
        c.plant(
            "dotfiles/gitconfig",
            "[user]\n\tname = Linked Tester\n[include]\n\tpath = ~/.gitconfig.local\n",
        );
        std::os::unix::fs::symlink(
            c.home().join("dotfiles/gitconfig"),
            c.home().join(".gitconfig"),
        )
        .unwrap();
        sanitised_copy(
            &c,
            &[(
                ".gitconfig.local",
                "[core]\n\tautocrlf = input\n[url \"https://x:{c}@git.example.org/\"]\n\tinsteadOf = https://git.example.org/\n",
            )],
            "git config --get user.name; git config --get core.autocrlf; git config --list --show-origin; cat ~/.gitconfig.local",
            &["Linked Tester", "input"],
        );
    }
);

attack!(secret_npmrc_token_settings_pass, "secrets", |c| {
    // Hidden whole before: its settings now reach npm, its token does not.
    sanitised_copy(
        &c,
        &[(
            ".npmrc",
            "fund=false\naudit=false\n//registry.example.org/:_authToken={c}\n_auth={c}\n",
        )],
        "npm config get fund; npm config get audit; cat ~/.npmrc; npm config list 2>&1",
        &["false"],
    );
});

attack!(secret_pip_conf_named_by_variable, "secrets", |c| {
    // PIP_CONFIG_FILE passes (a tool setting); the file it names sits in a
    // tree the profile shows read-only.
    let conf = c.plant(
        "conf/pip.conf",
        &format!(
            "[global]\nindex-url = https://me:{}@pypi.example.org/simple\ntimeout = 7\n",
            c.canary
        ),
    );
    let dir = conf.parent().unwrap().to_str().unwrap().to_string();
    let mut c = c;
    c.env
        .push(("PIP_CONFIG_FILE".into(), conf.display().to_string()));
    let script = format!(
        "cat {0}; python3 -m pip config list 2>/dev/null",
        conf.display()
    );
    let out = c.sc(&["--read", &dir], &script);
    c.seen(&format!("code={:?} {}", out.code, out.stdout.trim()));
    c.assert_no_canary(&out);
    assert!(out.stdout.contains("timeout = 7"), "{out:?}");
    assert!(
        out.stdout.contains("https://pypi.example.org/simple"),
        "{out:?}"
    );
    c.assert_control_leaks(&c.host(&script));
});

attack!(secret_sanitised_copy_is_read_only, "secrets", |c| {
    // The copy cannot be edited, replaced, moved or unmounted from inside
    // (so nothing planted there reaches the next run, and the host file is
    // never touched).
    let npmrc = c.plant(
        ".npmrc",
        &format!(
            "fund=false\n//registry.example.org/:_authToken={}\n",
            c.canary
        ),
    );
    let before = std::fs::read_to_string(&npmrc).unwrap();
    let out = c.sc(
        &[],
        "echo 'registry=http://evil.example/' >> ~/.npmrc; rm -f ~/.npmrc; mv ~/.npmrc ~/x; \
         umount ~/.npmrc; chmod 666 ~/.npmrc; cat ~/.npmrc",
    );
    c.seen(&format!("code={:?} {}", out.code, out.stdout.trim()));
    c.assert_no_canary(&out);
    assert_eq!(out.stdout, "fund=false\n", "{out:?}");
    assert_eq!(std::fs::read_to_string(&npmrc).unwrap(), before);
});

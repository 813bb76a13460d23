//! Environment: secrets in variables, loader and shell hooks never reach the command.

use crate::harness::*;

/// Set NAME=<canary> on shellcage; `env` inside must not show it; the host
/// `env` (control) does.
fn var_case(c: &mut Ctx, names: &[&str]) {
    for n in names {
        c.env.push((n.to_string(), c.canary.clone()));
    }
    let out = c.sc(&[], "env; echo done");
    let passed: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| out.stdout.contains(&format!("{n}=")))
        .collect();
    c.seen(&format!(
        "{} of {} passed: {passed:?}",
        passed.len(),
        names.len()
    ));
    assert!(out.stdout.ends_with("done\n"), "{out:?}");
    c.assert_no_canary(&out);
    c.assert_control_leaks(&c.host("env"));
}

attack!(env_secret_named_variables, "environment", |c| {
    var_case(
        &mut c,
        &[
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "GITHUB_TOKEN",
            "GH_TOKEN",
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "NPM_TOKEN",
            "DATABASE_URL",
            "VAULT_TOKEN",
            "MY_SERVICE_PASSWORD",
        ],
    )
});

attack!(env_secret_in_passed_pattern, "environment", |c| {
    // LC_* is passed by the dev profile: a secret-looking name under it is not.
    var_case(&mut c, &["LC_API_TOKEN", "LC_SECRET", "LC_PASSWORD"])
});

attack!(env_ld_preload, "environment", |c| {
    // A real library (harmless for shellcage itself), so a leak is visible as
    // the variable inside, not as a loader error.
    let lib = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/aarch64-linux-gnu/libm.so.6",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .unwrap_or("/usr/lib/libm.so.6");
    for n in ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"] {
        c.env.push((n.into(), lib.into()));
    }
    let out = c.sc(&[], "env | grep '^LD_' ; echo done");
    c.seen(&format!(
        "LD_* inside: {:?}",
        out.stdout.trim_end_matches("done\n")
    ));
    assert_eq!(out.stdout, "done\n", "{out:?}");
    let control = c.host("env | grep '^LD_PRELOAD'");
    assert!(control.stdout.contains(lib));
});

attack!(env_bash_env_hook, "environment", |c| {
    // BASH_ENV/ENV name a file bash/sh run at start: a hook into every shell.
    let hook = c.ws.write("hook.sh", &format!("echo {}\n", c.canary));
    c.env.push(("BASH_ENV".into(), hook.display().to_string()));
    c.env.push(("ENV".into(), hook.display().to_string()));
    let out = Out::from_output(c.sc_cmd(&[], &["bash", "-c", "echo ran"]).output().unwrap());
    c.seen(out.all().trim());
    assert_eq!(out.stdout, "ran\n", "{out:?}");
    c.assert_no_canary(&out);
    c.assert_control_leaks(&Out::from_output(
        c.host_cmd(&["bash", "-c", "echo ran"]).output().unwrap(),
    ));
});

attack!(env_caller_ssh_auth_sock, "environment", |c| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    c.env
        .push(("SSH_AUTH_SOCK".into(), path.display().to_string()));
    let script = "echo \"sock=${SSH_AUTH_SOCK}\"; test -S \"$SSH_AUTH_SOCK\"; echo rc=$?";
    let out = c.sc(&[], script);
    c.seen(out.stdout.lines().next().unwrap_or(""));
    assert!(out.stdout.starts_with("sock=\n"), "{out:?}");
    assert!(!out.stdout.contains(&path.display().to_string()));
    let control = c.host(script);
    assert!(control.stdout.contains(&path.display().to_string()));
});

attack!(env_credential_in_tool_setting, "environment", |c| {
    // Tool settings pass by the built-in rules (issue 13); a credential in
    // one must not: by npm key, by secret-looking name, by the look of the
    // value (URL userinfo, a token as URL user, a password= flag).
    let k = c.canary.clone();
    for (n, v) in [
        (
            "PIP_INDEX_URL",
            format!("https://user:{k}@pypi.example.org/simple"),
        ),
        ("GOPROXY", format!("https://u:{k}@proxy.example.org,direct")),
        (
            "UV_INDEX",
            format!("corp=https://ghp_{k}{k}@uv.example.org/simple"),
        ),
        ("npm_config_//registry.example.org/:_authToken", k.clone()),
        ("NPM_CONFIG__AUTH", k.clone()),
        ("CARGO_REGISTRIES_CORP_TOKEN", k.clone()),
        ("MAVEN_OPTS", format!("-Drepo.password={k}")),
        ("npm_config_cache", "/tmp/npm-cache-passes".to_string()),
    ] {
        c.env.push((n.to_string(), v));
    }
    let out = c.sc(&[], "env; echo done");
    let passed = out
        .stdout
        .contains("npm_config_cache=/tmp/npm-cache-passes");
    c.seen(&format!(
        "credentials refused, tool setting passed: {passed}"
    ));
    assert!(out.stdout.ends_with("done\n"), "{out:?}");
    assert!(passed, "{out:?}");
    c.assert_no_canary(&out);
    c.assert_control_leaks(&c.host("env"));
});

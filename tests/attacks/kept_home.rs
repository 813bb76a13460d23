//! The kept sandbox home (`home = "persistent"`): what a hostile command
//! writes into it must not reach a run with more privileges, another
//! workspace, the host, or the other homes; shellcage never writes a secret
//! into it and never follows what the command left there.

use std::path::{Path, PathBuf};

use crate::harness::*;

/// The store under the fake home (XDG_STATE_HOME pinned for the case).
fn pin_store(c: &mut Ctx) -> PathBuf {
    let state = c.home().join("state");
    c.env
        .push(("XDG_STATE_HOME".into(), state.display().to_string()));
    state.join("shellcage/homes")
}

/// The kept directories `sub` of every home in the store.
fn kept_dirs(store: &Path, sub: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for ws in std::fs::read_dir(store).into_iter().flatten().flatten() {
        for h in std::fs::read_dir(ws.path()).into_iter().flatten().flatten() {
            out.push(h.path().join(sub));
        }
    }
    out
}

const PLANT: &str = "mkdir -p ~/.shellcage/bin && printf '#!/bin/sh\\necho PLANTED-RAN\\n' > ~/.shellcage/bin/sc-planted && chmod +x ~/.shellcage/bin/sc-planted && echo planted > ~/.cache/sc-marker && echo ok";
const LOOK: &str = "sc-planted 2>&1; cat ~/.cache/sc-marker 2>&1; true";

// A program planted on PATH by a run with network mode none does not exist
// for a run with `--net loopback` (or any other privileges): that run gets
// another home. Control: the next run with the same privileges runs it.
attack!(
    kept_home_plant_for_a_more_privileged_run,
    "persistence",
    |c| {
        pin_store(&mut c);
        assert_eq!(c.sc(&[], PLANT).stdout.trim(), "ok");
        for wider in [
            &["--net", "loopback"][..],
            &["--env", "HOME_SHARED_TOKEN=x"],
            &["--write", "/tmp"],
        ] {
            let out = c.sc(wider, LOOK);
            c.seen(&format!(
                "{wider:?}: {}",
                out.all().trim().replace('\n', " | ")
            ));
            assert!(
                !out.all().contains("PLANTED-RAN"),
                "{wider:?}: {}",
                out.all()
            );
            assert!(
                !out.stdout.lines().any(|l| l == "planted"),
                "{wider:?}: {}",
                out.all()
            );
        }
        let control = c.sc(&[], LOOK);
        assert!(control.stdout.contains("PLANTED-RAN"), "{}", control.all());
        assert!(
            control.stdout.lines().any(|l| l == "planted"),
            "{}",
            control.all()
        );
    }
);

// Another workspace of the same user and profile gets another home.
attack!(kept_home_plant_for_another_workspace, "persistence", |c| {
    pin_store(&mut c);
    assert_eq!(c.sc(&[], PLANT).stdout.trim(), "ok");
    let other = crate::common::Workspace::new();
    let out = c.sc(&["--workspace", other.path().to_str().unwrap()], LOOK);
    c.seen(&out.all().trim().replace('\n', " | "));
    assert!(!out.all().contains("PLANTED-RAN"), "{}", out.all());
    assert!(!out.stdout.lines().any(|l| l == "planted"), "{}", out.all());
    let control = c.sc(&[], LOOK);
    assert!(control.stdout.contains("PLANTED-RAN"), "{}", control.all());
});

// A symlink left in the kept cache pointing at a host secret shows nothing
// in the next run (it resolves in the sandbox's view), and `home reset`
// removes the link, not its target. Control: on the host the link is live.
attack!(kept_home_symlink_to_a_host_secret, "persistence", |c| {
    let store = pin_store(&mut c);
    let secret = c.plant_secret(".ssh/id_ed25519");
    let out = c.sc(
        &[],
        &format!("ln -s {} ~/.cache/sc-key && echo ok", secret.display()),
    );
    assert_eq!(out.stdout.trim(), "ok", "{}", out.all());
    let out = c.sc(&[], "cat ~/.cache/sc-key; echo rc=$?");
    c.seen(&out.all().trim().replace('\n', " | "));
    c.assert_no_canary(&out);
    assert!(out.stdout.contains("rc=1"), "{}", out.all());
    let link = kept_dirs(&store, "cache/sc-key");
    assert_eq!(link.len(), 1, "{link:?}");
    let control = c.host(&format!("cat {}", link[0].display()));
    c.assert_control_leaks(&control);
    let reset = c.host_cmd(&[crate::common::bin().to_str().unwrap(), "home", "reset"]);
    let o = Out::from_output({ reset }.output().unwrap());
    assert_eq!(o.code, Some(0), "{}", o.all());
    assert!(!link[0].exists() && std::fs::symlink_metadata(&link[0]).is_err());
    assert!(read_opt(&secret).is_some_and(|b| String::from_utf8_lossy(&b).contains(&c.canary)));
});

// The store (every workspace's homes, their lock, size and meta files) is not
// in the sandbox's view. Control: it exists on the host.
attack!(kept_home_store_is_invisible, "persistence", |c| {
    let store = pin_store(&mut c);
    assert_eq!(c.sc(&[], PLANT).stdout.trim(), "ok");
    let meta = kept_dirs(&store, "meta.json");
    assert_eq!(meta.len(), 1, "{meta:?}");
    let meta = meta[0].display().to_string();
    let out = c.probe_sc(&[], &["read", &meta]);
    let r = assert_errno(&out, &["ENOENT"]);
    c.seen(&r);
    let out = c.sc(&[], &format!("ls {} 2>&1; echo rc=$?", store.display()));
    assert!(out.stdout.contains("rc=2"), "{}", out.all());
    let control = c.probe_host(&["read", &meta]);
    assert_ok(&control);
});

// shellcage writes no secret into the kept home: the token of ~/.npmrc (shown
// inside as a sanitised copy) and a `--env` secret never appear in the
// store's files after runs that read them. Control: the token is on the host
// and the `--env` value reached the command.
attack!(kept_home_holds_no_secret_shellcage_wrote, "secrets", |c| {
    let store = pin_store(&mut c);
    c.plant(
        ".npmrc",
        &format!(
            "fund=false\n//registry.example.org/:_authToken={}\n",
            c.canary
        ),
    );
    let out = c.sc(
        &["--env", &format!("SC_TOKEN={}", c.canary)],
        "npm config get fund; test -n \"$SC_TOKEN\" && echo env-seen; cat ~/.npmrc >/dev/null; ls ~/.cache >/dev/null",
    );
    assert!(
        out.stdout.contains("false") && out.stdout.contains("env-seen"),
        "{}",
        out.all()
    );
    let hits = c.host(&format!("grep -rl {} {} ; true", c.canary, store.display()));
    c.seen(&format!("grep in the store: {:?}", hits.stdout.trim()));
    assert_eq!(hits.stdout.trim(), "", "secret in the store");
    let control = c.host(&format!("grep -h {} ~/.npmrc", c.canary));
    c.assert_control_leaks(&control);
});

/// Make the last measurement of every home old enough for the next run to
/// measure again (a home is measured at most every 30 s).
fn age_measurements(store: &Path) {
    for size in kept_dirs(store, "size") {
        let st = std::process::Command::new("touch")
            .args(["-d", "-1 min"])
            .arg(&size)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

// Filling the kept home is bounded between runs: over `kept_home_size` the
// caches are cleared after the run (and the user is told); user installs
// alone over it refuse the next run (exit 125, nothing runs) until
// `shellcage home reset`. Control: under the limit the cache stays; and a
// home measured less than 30 s ago is not measured again (so the fill is
// found by the next measurement, not this one).
attack!(kept_home_fill_is_bounded, "resources", |c| {
    let store = pin_store(&mut c);
    let profile = c.plant(
        "small.toml",
        "version = 1\nextends = \"dev\"\n[limits]\nkept_home_size = \"1M\"\n",
    );
    let p = ["-p", profile.to_str().unwrap()];
    let fill = |dir: &str, mib: u32| {
        format!(
            "mkdir -p {dir} && head -c {}M /dev/urandom > {dir}/blob && echo filled",
            mib
        )
    };
    let small = c.sc(&p, &fill("~/.cache", 0));
    assert!(small.stdout.contains("filled"), "{}", small.all());
    let control = c.sc(&p, "ls ~/.cache");
    assert!(
        control.stdout.contains("blob"),
        "control: {}",
        control.all()
    );
    let unmeasured = c.sc(&p, &fill("~/.cache", 3));
    assert!(
        !unmeasured.stderr.contains("cleared"),
        "{}",
        unmeasured.all()
    );
    assert!(kept_dirs(&store, "cache/blob").iter().all(|b| b.exists()));
    age_measurements(&store);
    let big = c.sc(&p, "true");
    c.seen(&big.stderr.trim().replace('\n', " | "));
    // In a session the command's end measures the home; over the limit the session
    // ends, and its end clears the caches (never while a command may use them).
    let warm = big.stderr.contains("the session ends");
    assert!(
        big.stderr.contains("its caches were cleared")
            || (warm && big.stderr.contains("over its limit")),
        "{}",
        big.all()
    );
    assert!(
        crate::harness::wait_for(
            std::time::Duration::from_secs(if warm { 10 } else { 0 }),
            || { kept_dirs(&store, "cache/blob").iter().all(|b| !b.exists()) }
        ),
        "the caches were not cleared"
    );
    if warm {
        // The ended session is gone (its end measured the home) before the next step.
        assert!(crate::harness::wait_for(
            std::time::Duration::from_secs(10),
            || {
                let st = c.host_cmd(&[crate::common::bin().to_str().unwrap(), "session", "status"]);
                Out::from_output({ st }.output().unwrap()).code == Some(1)
            }
        ));
    }
    age_measurements(&store);
    let installs = c.sc(&p, &fill("~/.shellcage", 3));
    assert_eq!(installs.code, Some(0), "{}", installs.all());
    let refused = c.sc(&p, "echo RAN");
    c.seen(&refused.stderr.trim().replace('\n', " | "));
    assert_eq!(
        refused.code,
        Some(125),
        "{} / installs: {}",
        refused.all(),
        installs.all()
    );
    assert!(!refused.stdout.contains("RAN"));
    assert!(
        refused.stderr.contains("kept_home_size"),
        "{}",
        refused.all()
    );
    let reset = c.host_cmd(&[crate::common::bin().to_str().unwrap(), "home", "reset"]);
    assert_eq!(Out::from_output({ reset }.output().unwrap()).code, Some(0));
    assert!(c.sc(&p, "echo RAN").stdout.contains("RAN"));
});

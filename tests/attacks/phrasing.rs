//! Phrasing: however the read of a hidden secret is written, it fails the same
//! way as the plain `cat` (same exit status, same error), because the kernel
//! decides, not a parser.

use crate::harness::*;

const PLAIN: &str = "cat \"$HOME/.ssh/id_ed25519\"";

/// The canonical error text of a failed read (tool prefixes stripped).
fn error_kind(out: &Out) -> &'static str {
    let e = out.all();
    if e.contains("No such file or directory") || e.contains("ENOENT") {
        "ENOENT"
    } else if e.contains("Permission denied") || e.contains("EACCES") {
        "EACCES"
    } else {
        "other"
    }
}

/// The agent's shell is bash: run the phrasing with `bash -c`.
fn bash_sc(c: &Ctx, script: &str) -> Out {
    Out::from_output(c.sc_cmd(&[], &["bash", "-c", script]).output().unwrap())
}

fn phrasing_case(c: &Ctx, script: &str) {
    c.plant_secret(".ssh/id_ed25519");
    let plain = bash_sc(c, PLAIN);
    let out = bash_sc(c, script);
    c.seen(&format!(
        "code={:?} {} (plain: code={:?} {})",
        out.code,
        error_kind(&out),
        plain.code,
        error_kind(&plain)
    ));
    c.assert_no_canary(&out);
    c.assert_no_canary(&plain);
    assert_ne!(plain.code, Some(0));
    assert_ne!(error_kind(&plain), "other", "{plain:?}");
    assert_eq!(error_kind(&out), error_kind(&plain), "{out:?}");
    assert_ne!(out.code, Some(0), "{out:?}");
    // Control: the same phrasing on the host reads the secret.
    c.assert_control_leaks(&Out::from_output(
        c.host_cmd(&["bash", "-c", script]).output().unwrap(),
    ));
}

attack!(phrase_plain_cat, "phrasing", |c| {
    phrasing_case(&c, PLAIN)
});
attack!(phrase_bash_ansi_c_escapes, "phrasing", |c| {
    phrasing_case(&c, "bash -c $'\\x63at \"$HOME/.ssh/id_ed25519\"'")
});
attack!(phrase_base64_to_sh, "phrasing", |c| {
    use std::io::Write;
    let mut enc = std::process::Command::new("base64")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    enc.stdin
        .take()
        .unwrap()
        .write_all(PLAIN.as_bytes())
        .unwrap();
    let b64 = String::from_utf8(enc.wait_with_output().unwrap().stdout).unwrap();
    phrasing_case(&c, &format!("echo {} | base64 -d | sh", b64.trim()))
});
attack!(phrase_python3, "phrasing", |c| {
    phrasing_case(
        &c,
        "python3 -c 'import os; print(open(os.environ[\"HOME\"] + \"/.ssh/id_ed25519\").read())'",
    )
});
attack!(phrase_perl, "phrasing", |c| {
    phrasing_case(
        &c,
        "perl -e 'open(F, \"<\", \"$ENV{HOME}/.ssh/id_ed25519\") or die \"$!\\n\"; print <F>'",
    )
});
attack!(phrase_long_true_chain, "phrasing", |c| {
    let chain = format!("{}{PLAIN}", "true && ".repeat(50));
    phrasing_case(&c, &chain)
});
attack!(phrase_eval_and_xargs, "phrasing", |c| {
    phrasing_case(
        &c,
        "eval \"$(printf '%s' 'c' 'a' 't')\" \"$HOME/.ssh/id_ed25519\" || \
         echo \"$HOME/.ssh/id_ed25519\" | xargs cat",
    )
});

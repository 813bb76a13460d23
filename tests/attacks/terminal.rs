//! Terminal injection: a command on the user's terminal must not push bytes
//! into its input queue (TIOCSTI) or drive the console (TIOCLINUX).

use crate::harness::*;

const PTYRUN: &str = include_str!("ptyrun.py");

/// Run ARGV under a real pseudo-terminal; (output, pending input) as text.
fn under_pty(c: &Ctx, argv: &[&str]) -> (String, String) {
    std::fs::write(c.ws.path().join(".ptyrun.py"), PTYRUN).unwrap();
    let mut full = vec![PY, ".ptyrun.py"];
    full.extend_from_slice(argv);
    let o = c.host_cmd(&full).output().unwrap();
    let text = crate::common::stdout(&o);
    let field = |k: &str| {
        let hex = text
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("ptyrun failed: {o:?}"))
            .trim()
            .to_string();
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field("OUTPUT "), field("PENDING "))
}

/// TIOCSTI with `request` on the command's fd 0, or (`via_tty`) on its controlling
/// terminal opened as /dev/tty. The command's terminal is its own pty (relayed): even a
/// TIOCSTI the kernel accepted would land in that pty's input, never in the caller's.
fn tiocsti_case(c: &Ctx, request: &str, via_tty: bool) {
    let payload = format!("echo {}", &c.canary[7..]);
    let bin = crate::common::bin().display().to_string();
    let ws = c.ws.path().display().to_string();
    let line = format!("exec 3<>/dev/tty && exec {PY} .probe.py tiocsti 3 {request} \"$0\"");
    let probe: Vec<&str> = if via_tty {
        vec!["/bin/sh", "-c", &line, &payload]
    } else {
        vec![PY, ".probe.py", "tiocsti", "0", request, &payload]
    };
    let mut argv = vec![bin.as_str(), "run", "--workspace", &ws, "--"];
    argv.extend_from_slice(&probe);
    let (output, pending) = under_pty(c, &argv);
    let result = output
        .lines()
        .find(|l| l.starts_with("OK") || l.starts_with("ERR"))
        .unwrap_or("")
        .trim()
        .to_string();
    c.seen(&format!("{result}; pending input {:?}", pending));
    assert!(
        result.starts_with("ERR EPERM") || result.starts_with("ERR EIO"),
        "{output:?}"
    );
    assert!(
        pending.is_empty(),
        "injected into the host terminal: {pending:?}"
    );
    // Control: the same probe on the host terminal injects the payload
    // (allowed with dev.tty.legacy_tiocsti=1 or CAP_SYS_ADMIN).
    let legacy = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .map(|s| s.trim() == "1")
        .unwrap_or(true);
    let (out2, pending2) = under_pty(c, &probe);
    if legacy || crate::common::is_root() {
        assert!(
            pending2.contains(&payload),
            "control injected nothing: {out2:?}"
        );
    } else {
        assert!(out2.contains("ERR EIO"), "control probe broken: {out2:?}");
    }
}

attack!(term_tiocsti, "terminal", |c| {
    tiocsti_case(&c, "0x5412", false)
});
attack!(term_tiocsti_high_bits, "terminal", |c| {
    // The kernel compares only the low 32 bits of the request.
    tiocsti_case(&c, "0xdead00005412", false)
});
attack!(term_tiocsti_via_dev_tty, "terminal", |c| {
    tiocsti_case(&c, "0x5412", true)
});

attack!(term_caller_terminal_not_inside, "terminal", |c| {
    // The caller's terminal never reaches the sandbox: every terminal the command holds
    // (fds 0-2, and /dev/tty, its controlling terminal) is a pty of the sandbox's own
    // devpts, not the caller's.
    use std::os::unix::fs::MetadataExt;
    let host_pts = std::fs::metadata("/dev/pts").unwrap().dev().to_string();
    let bin = crate::common::bin().display().to_string();
    let ws = c.ws.path().display().to_string();
    let fields = |out: &str| -> Vec<(String, String)> {
        let line = out.lines().find(|l| l.starts_with("OK ")).unwrap_or("");
        line[line.len().min(3)..]
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let argv = [
        bin.as_str(),
        "run",
        "--workspace",
        &ws,
        "--",
        PY,
        ".probe.py",
        "ttydevs",
    ];
    let (output, pending) = under_pty(&c, &argv);
    let seen = fields(&output);
    c.seen(&format!("{}; host devpts {host_pts}", output.trim()));
    let get = |k: &str| seen.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let inside = get("pts").unwrap_or_else(|| panic!("{output:?}"));
    assert_ne!(inside, host_pts, "{output:?}");
    for k in ["fd0", "fd1", "fd2"] {
        assert_eq!(get(k).as_deref(), Some(inside.as_str()), "{k}: {output:?}");
    }
    // /dev/tty is fd 0's terminal (the same session), so the sandbox's pty too.
    assert!(
        get("ttysid").is_some_and(|s| s.parse::<i32>().is_ok()),
        "{output:?}"
    );
    assert_eq!(get("ttysid"), get("fd0sid"), "{output:?}");
    assert!(pending.is_empty());
    // Control: the probe on the caller's terminal itself sees the host's devpts there.
    let (out2, _) = under_pty(&c, &[PY, ".probe.py", "ttydevs"]);
    let host = fields(&out2);
    assert!(
        host.iter().any(|(k, v)| k == "fd0" && *v == host_pts),
        "control probe broken: {out2:?}"
    );
});

attack!(term_tioclinux, "terminal", |c| {
    let bin = crate::common::bin().display().to_string();
    let ws = c.ws.path().display().to_string();
    let (output, pending) = under_pty(
        &c,
        &[
            &bin,
            "run",
            "--workspace",
            &ws,
            "--",
            PY,
            ".probe.py",
            "ioctl",
            "0",
            "0x541c",
        ],
    );
    c.seen(&format!("{}; pending {:?}", output.trim(), pending));
    assert!(output.contains("ERR EPERM"), "{output:?}");
    assert!(pending.is_empty());
    // Control: on the host the request reaches the tty driver (a pty is not a
    // console, so it answers with its own error, not EPERM).
    let (out2, _) = under_pty(&c, &[PY, ".probe.py", "ioctl", "0", "0x541c"]);
    assert!(
        out2.contains("ERR ") && !out2.contains("ERR EPERM"),
        "{out2:?}"
    );
});

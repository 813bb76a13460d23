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

fn tiocsti_case(c: &Ctx, request: &str) {
    let payload = format!("echo {}", &c.canary[7..]);
    let bin = crate::common::bin().display().to_string();
    let ws = c.ws.path().display().to_string();
    let (output, pending) = under_pty(
        c,
        &[
            &bin,
            "run",
            "--workspace",
            &ws,
            "--",
            PY,
            ".probe.py",
            "tiocsti",
            "0",
            request,
            &payload,
        ],
    );
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
    let (out2, pending2) = under_pty(c, &[PY, ".probe.py", "tiocsti", "0", request, &payload]);
    if legacy || crate::common::is_root() {
        assert!(
            pending2.contains(&payload),
            "control injected nothing: {out2:?}"
        );
    } else {
        assert!(out2.contains("ERR EIO"), "control probe broken: {out2:?}");
    }
}

attack!(term_tiocsti, "terminal", |c| { tiocsti_case(&c, "0x5412") });
attack!(term_tiocsti_high_bits, "terminal", |c| {
    // The kernel compares only the low 32 bits of the request.
    tiocsti_case(&c, "0xdead00005412")
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

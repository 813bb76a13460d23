//! Guarantee 10 (file descriptors): only 0, 1 and 2 reach the command.
use crate::common::*;
use std::process::Command;

#[test]
fn inherited_descriptors_are_closed() {
    needs_sandbox!();
    let (ws, home) = (Workspace::new(), Home::new());
    let c = canary();
    let secret = home.write("secret.txt", &c);
    // The caller opens fd 3 on a secret and fd 4 on a directory, without
    // close-on-exec, then execs shellcage.
    let inner = "ls /proc/self/fd | tr '\\n' ' '; echo; cat /dev/fd/3; echo status=$?; ls /dev/fd/4/; echo status=$?";
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "exec 3<\"$1\" 4<\"$2\"; ls /proc/self/fd >/dev/null; exec \"$3\" run --workspace \"$4\" -- sh -c \"$5\"",
        )
        .arg("sh")
        .arg(&secret)
        .arg(home.path())
        .arg(bin())
        .arg(ws.path())
        .arg(inner)
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    expect_code(&out, 0);
    let text = stdout(&out);
    let fds: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    // 0 1 2 and the directory `ls` itself opened.
    assert_eq!(&fds[..3], &["0", "1", "2"], "{text}");
    assert!(fds.len() <= 4, "{text}");
    assert!(!text.contains(&c), "{text}");
    assert!(!stderr(&out).contains(&c));
    assert_eq!(text.matches("status=0").count(), 0, "{text}");
}

#[test]
fn the_control_really_passes_descriptors() {
    // Without shellcage the same shell line does pass fd 3: the test above
    // would notice a leak.
    let home = Home::new();
    let c = canary();
    let secret = home.write("secret.txt", &c);
    let out = Command::new("sh")
        .arg("-c")
        .arg("exec 3<\"$1\"; exec sh -c 'cat /dev/fd/3'")
        .arg("sh")
        .arg(&secret)
        .output()
        .unwrap();
    assert_eq!(stdout(&out), c);
}

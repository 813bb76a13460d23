//! Inside the sandbox: pid 1 (sets up the namespaces' view, then reaps and
//! forwards signals) and the command process (drops everything, then execs).
//!
//! Both report to the supervisor over the report pipe, one line per message:
//! `E <text>` an error that stopped the launch, `X <code>` the command exited,
//! `S <signal>` the command was killed by a signal.

use std::os::fd::RawFd;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{Launch, landlock, limits, mount, privileges, seccomp};
use crate::sys::{self, Forked};

/// Signals the init forwards to the command's process group.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Exit codes of the design.
pub const EXIT_SETUP: i32 = 125;
pub const EXIT_NOEXEC: i32 = 126;
pub const EXIT_NOTFOUND: i32 = 127;

/// `-v` phase timing: one `T` line, only when timing is on.
fn mark(launch: &Launch, fd: RawFd, phase: &str) {
    if let Some(start) = launch.timing {
        report(fd, 'T', &format!("{phase} {}", start.elapsed().as_micros()));
    }
}

fn report(fd: RawFd, kind: char, text: &str) {
    let line = format!("{kind} {}\n", text.replace('\n', " "));
    sys::write_all_raw(fd, line.as_bytes());
}

fn fail(fd: RawFd, code: i32, err: impl std::fmt::Display) -> ! {
    report(fd, 'E', &err.to_string());
    sys::exit_now(code)
}

fn write_id_maps(uid: u32, gid: u32) -> Result<(), crate::sys::SysError> {
    use std::io::Write;
    let write = |path: &str, text: String| -> Result<(), crate::sys::SysError> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| {
                crate::sys::SysError::new(
                    "write",
                    path,
                    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                )
            })
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("{uid} {uid} 1\n"))?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1\n"))?;
    Ok(())
}

/// pid 1 of the sandbox. Never returns.
pub fn run_init(launch: &Launch, report_fd: RawFd) -> ! {
    // Die with the supervisor; close the race where it died before this line.
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || sys::pipe_reader_gone(report_fd)
    {
        sys::exit_now(EXIT_SETUP);
    }
    mark(launch, report_fd, "init started");
    // The network namespace (about a third of the namespace cost) is created,
    // with loopback up, on a second thread while this one builds the mounts;
    // it is joined before the command exists. Until then the init alone is in
    // the host's network namespace, and does no networking.
    let netns = launch.plan.new_netns.then(|| {
        std::thread::Builder::new().stack_size(64 * 1024).spawn(
            || -> Result<std::os::fd::OwnedFd, crate::sys::SysError> {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| crate::sys::SysError::new("unshare", "CLONE_NEWNET", e))?;
                sys::loopback_up_netns_fd()
            },
        )
    });
    if let Err(e) = write_id_maps(launch.uid, launch.gid) {
        fail(
            report_fd,
            EXIT_SETUP,
            format_args!("cannot map user ids: {e}"),
        );
    }
    mark(launch, report_fd, "id maps written");
    // Not dumpable: the command (same uid) cannot read /proc/1/environ, /proc/1/mem or ptrace us.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        fail(
            report_fd,
            EXIT_SETUP,
            format_args!("prctl(PR_SET_DUMPABLE, 0) => {e}"),
        );
    }
    if !launch.interactive {
        // Out of the caller's session: terminal signals reach the supervisor only.
        let _ = nix::unistd::setsid();
    }
    if let Some(mounts) = &launch.mounts {
        if let Err(e) = mount::apply(mounts) {
            fail(
                report_fd,
                EXIT_SETUP,
                format_args!("cannot build the sandbox filesystem: {e}"),
            );
        }
    }
    if let Err(e) = nix::unistd::sethostname(launch.hostname) {
        fail(
            report_fd,
            EXIT_SETUP,
            format_args!("sethostname({}) => {e}", launch.hostname),
        );
    }
    mark(launch, report_fd, "root built");
    if let Some(thread) = netns {
        let joined = match thread {
            Ok(handle) => handle.join().unwrap_or_else(|_| {
                Err(crate::sys::SysError::new(
                    "thread",
                    "network namespace",
                    nix::errno::Errno::EINVAL,
                ))
            }),
            Err(e) => Err(crate::sys::SysError::new(
                "thread",
                "network namespace",
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            )),
        };
        // Single-threaded again from here on (the command is forked below).
        let entered = joined.and_then(|fd| {
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| crate::sys::SysError::new("setns", "CLONE_NEWNET", e))
        });
        if let Err(e) = entered {
            fail(
                report_fd,
                EXIT_SETUP,
                format_args!("cannot create the network namespace: {e}"),
            );
        }
    }
    mark(launch, report_fd, "network up");
    sys::close_fds_except(&[0, 1, 2, report_fd]);
    let mut blocked = SigSet::empty();
    blocked.add(Signal::SIGCHLD);
    for s in FORWARDED {
        blocked.add(s);
    }
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None) {
        fail(
            report_fd,
            EXIT_SETUP,
            format_args!("sigprocmask(SIG_BLOCK) in the init => {e}"),
        );
    }
    let child = match sys::fork_process() {
        Ok(Forked::Child) => exec_command(launch, report_fd),
        Ok(Forked::Parent { child }) => child,
        Err(e) => fail(report_fd, EXIT_SETUP, e),
    };
    reap_until(child, &blocked, report_fd)
}

/// Reap every child; forward signals to the command's process group; when the
/// command itself ends, report its status and exit (the kernel then kills
/// everything left in the pid namespace).
fn reap_until(command: Pid, waited: &SigSet, report_fd: RawFd) -> ! {
    loop {
        match waited.wait() {
            Ok(Signal::SIGCHLD) => loop {
                match waitpid(
                    Pid::from_raw(-1),
                    Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
                ) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == command => {
                        finish(report_fd, 'X', code, code)
                    }
                    Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                        finish(report_fd, 'S', sig as i32, 128 + sig as i32)
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            },
            Ok(sig) => {
                // Until the command's setsid its process group does not exist
                // (ESRCH) and the signal would be lost; then signal the command
                // itself: it keeps the signal pending (blocked) until just
                // before execve.
                if kill(Pid::from_raw(-command.as_raw()), sig) == Err(nix::errno::Errno::ESRCH) {
                    let _ = kill(command, sig);
                }
            }
            Err(_) => continue,
        }
    }
}

/// The command has ended: kill everything left in the pid namespace, reap it
/// all (orphans are our children), and only then report the status and exit.
/// So when the supervisor reads the status, no process of the sandbox is
/// left; it need not wait for the kernel to finish tearing the namespaces
/// down after our exit (about 1.5 ms, mostly unmounting).
fn finish(report_fd: RawFd, kind: char, value: i32, code: i32) -> ! {
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    // Until ECHILD: nothing left.
    while let Ok(_) | Err(nix::errno::Errno::EINTR) =
        waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL))
    {}
    report(report_fd, kind, &value.to_string());
    sys::exit_now(code)
}

/// The command process: drop everything, then exec. Never returns.
pub fn exec_command(launch: &Launch, report_fd: RawFd) -> ! {
    mark(launch, report_fd, "command forked");
    if let Err(e) = prepare_command(launch, report_fd) {
        fail(report_fd, EXIT_SETUP, e);
    }
    let name = launch.argv[0].to_string_lossy().into_owned();
    let argv: Vec<&std::ffi::CStr> = launch.argv.iter().map(|a| a.as_c_str()).collect();
    let envp: Vec<&std::ffi::CStr> = launch.envp.iter().map(|a| a.as_c_str()).collect();
    sys::reset_signal_dispositions();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let mut denied = None;
    for candidate in super::env::search_path(&name, &launch.path) {
        match sys::execve(&candidate, &argv, &envp) {
            nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP => {
                continue;
            }
            nix::errno::Errno::EACCES => {
                denied.get_or_insert(candidate);
            }
            errno => fail(
                report_fd,
                EXIT_NOEXEC,
                format_args!(
                    "cannot execute {}: {}",
                    candidate.to_string_lossy(),
                    errno.desc().to_lowercase()
                ),
            ),
        }
    }
    match denied {
        Some(path) => fail(
            report_fd,
            EXIT_NOEXEC,
            format_args!(
                "cannot execute {}: permission denied",
                path.to_string_lossy()
            ),
        ),
        None => fail(
            report_fd,
            EXIT_NOTFOUND,
            format_args!("command not found: {name}"),
        ),
    }
}

#[derive(Debug, thiserror::Error)]
enum CommandSetupError {
    #[error("setsid => {0}")]
    Session(nix::errno::Errno),
    #[error("{0}")]
    Limits(#[from] limits::LimitError),
    #[error("chdir({path}) => {source}")]
    Chdir {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Privileges(#[from] privileges::PrivilegeError),
    #[error("{0}")]
    Landlock(#[from] landlock::LandlockError),
    #[error("{0}")]
    Seccomp(#[from] seccomp::SeccompError),
}

/// The design's order: setsid → rlimits → close fds → chdir → drop caps →
/// no_new_privs → Landlock → seccomp (last, so the steps before it may use
/// any syscall).
fn prepare_command(launch: &Launch, report_fd: RawFd) -> Result<(), CommandSetupError> {
    if launch.interactive {
        // Own process group in the terminal's foreground (job control works;
        // TIOCSTI is refused by seccomp).
        let me = nix::unistd::getpid();
        let _ = nix::unistd::setpgid(me, me);
        let _ = nix::unistd::tcsetpgrp(std::io::stdin(), me);
    } else {
        nix::unistd::setsid().map_err(CommandSetupError::Session)?;
    }
    limits::apply(&launch.limits)?;
    std::env::set_current_dir(&launch.cwd).map_err(|source| CommandSetupError::Chdir {
        path: launch.cwd.display().to_string(),
        source,
    })?;
    privileges::drop_all()?;
    mark(launch, report_fd, "privileges dropped");
    landlock::apply(&launch.landlock)?;
    mark(launch, report_fd, "landlock applied");
    seccomp::install(&launch.seccomp)?;
    mark(launch, report_fd, "seccomp installed (exec next)");
    Ok(())
}

/// Container tier: no namespaces. The supervisor's child becomes the command
/// directly (the supervisor kills its process group at the end).
pub fn run_contained(launch: &Launch, report_fd: RawFd) -> ! {
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || sys::pipe_reader_gone(report_fd)
    {
        sys::exit_now(EXIT_SETUP);
    }
    sys::close_fds_except(&[0, 1, 2, report_fd]);
    exec_command(launch, report_fd)
}

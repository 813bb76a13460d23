//! The terminal relay, supervisor side: bytes between the caller's terminal and the
//! master of the command's own pty (see `sandbox::terminal`).
//!
//! The relay starts only when fd 0 is a terminal whose foreground process group is ours
//! (not for agents, which have no terminal: then nothing here runs but one `isatty`).
//! The caller's terminal is put in raw mode once the master has arrived (its line
//! discipline is the pty's now: ^C, ^Z, echo, erase happen inside) and its settings are
//! restored on every way out of the relay: the end of the run, an error, a panic (a hook;
//! the release build aborts on panics, so no destructor would run). Only SIGKILL of
//! shellcage itself leaves the terminal raw (`stty sane` or `reset` repairs it).
//!
//! Never blocking, never unbounded: both ends are non-blocking (the caller's terminal
//! through an open file description of our own, so the caller's shell and its other
//! jobs never see O_NONBLOCK); each direction has one fixed buffer, and a side is read
//! only when the buffer towards the other side is empty, so a command that floods output
//! or stops reading input is slowed down by the kernel's own flow control, and the
//! supervisor keeps serving signals and the timeout meanwhile.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

use crate::plan::Tier;
use crate::sandbox::terminal::{PtySource, TerminalSpec};
use crate::sys;

/// Output (the command → the caller's terminal): one read of the master returns at most
/// the line discipline's 4 KiB; a few reads fill this before one write.
const OUTPUT_BUFFER: usize = 64 * 1024;
/// Input (what the user types, or pastes).
const INPUT_BUFFER: usize = 4 * 1024;
/// After the sandbox ended: output still in the pty is written out until the master says
/// the slave is closed; this long without any progress ends it (only a slave held open
/// outside the sandbox, or a caller's terminal that takes nothing, can cause it), and the
/// drain never takes longer than [`DRAIN_MAX`].
const DRAIN_IDLE: Duration = Duration::from_millis(500);
const DRAIN_MAX: Duration = Duration::from_secs(5);

/// The settings to restore from the panic hook: (the caller's terminal, its settings).
static RESTORE: Mutex<Option<(RawFd, Termios)>> = Mutex::new(None);

/// One direction's buffer: filled only when empty, then written out.
struct Chunk {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Chunk {
    fn new(size: usize) -> Chunk {
        Chunk {
            buf: vec![0; size].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Read from `fd` until the buffer is full or `fd` has nothing more (the buffer must
    /// be empty). `Ok(false)`: the end of `fd` (EOF, EIO: the other side is gone).
    fn fill(&mut self, fd: BorrowedFd<'_>) -> Result<bool, Errno> {
        self.start = 0;
        self.end = 0;
        while self.end < self.buf.len() {
            match nix::unistd::read(fd, &mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => self.end += n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(Errno::EIO) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Write as much as `fd` takes now. Returns how many bytes went.
    fn flush(&mut self, fd: BorrowedFd<'_>) -> Result<usize, Errno> {
        let mut sent = 0;
        while !self.is_empty() {
            match nix::unistd::write(fd, &self.buf[self.start..self.end]) {
                Ok(n) => {
                    self.start += n;
                    sent += n;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}

/// The relay of one run.
pub struct Relay {
    /// The caller's terminal, opened again through `/proc/self/fd/0`: an open file
    /// description of our own, non-blocking.
    tty: OwnedFd,
    /// The caller's settings, restored at the end.
    saved: Termios,
    /// Namespaces tier: where the master comes from, until it has.
    channel: Option<OwnedFd>,
    master: Option<OwnedFd>,
    raw: bool,
    to_master: Chunk,
    to_tty: Chunk,
    /// The caller's terminal still gives input.
    input_open: bool,
    /// The master still gives output (the slave is open somewhere).
    output_open: bool,
    /// Writing to the caller's terminal failed (hung up): output is read and dropped.
    tty_gone: bool,
}

/// Which of the relay's descriptors a poll entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Channel,
    Tty,
    Master,
}

/// Decide whether this run's command gets its own pty, relayed: fd 0 is a terminal and
/// we are its foreground process group (a run in the background, or with stdin
/// redirected, keeps the launch as it was). Fds 1 and 2 get the pty too when they are
/// the same terminal. `None` when anything needed is missing (then the command gets the
/// caller's fds as they are, as without a relay).
pub fn prepare(tier: Tier) -> Option<(Relay, TerminalSpec)> {
    if !sys::is_tty(0) {
        return None;
    }
    let stdin = std::io::stdin();
    let fg = nix::unistd::tcgetpgrp(stdin.as_fd()).ok()?;
    if fg != nix::unistd::getpgrp() {
        return None;
    }
    let saved = tcgetattr(stdin.as_fd()).ok()?;
    let winsize = sys::window_size(stdin.as_fd()).ok()?;
    let rdev = nix::sys::stat::fstat(stdin.as_fd()).ok()?.st_rdev;
    let same = |fd: BorrowedFd<'_>| {
        sys::is_tty(fd.as_raw_fd()) && nix::sys::stat::fstat(fd).is_ok_and(|s| s.st_rdev == rdev)
    };
    let mut fds = vec![0];
    if same(std::io::stdout().as_fd()) {
        fds.push(1);
    }
    if same(std::io::stderr().as_fd()) {
        fds.push(2);
    }
    let tty = nix::fcntl::open(
        "/proc/self/fd/0",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .inspect_err(|e| tracing::debug!(%e, "cannot open the terminal again: no relay"))
    .ok()?;
    if !nix::sys::stat::fstat(tty.as_fd()).is_ok_and(|s| s.st_rdev == rdev) {
        return None;
    }
    let (channel, master, source) = match tier {
        Tier::Namespaces => {
            use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
            let (ours, theirs) = socketpair(
                AddressFamily::Unix,
                SockType::SeqPacket,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .ok()?;
            (Some(ours), None, PtySource::Inside(theirs))
        }
        Tier::Container => {
            let (master, slave) = sys::open_pty(std::path::Path::new("/dev/ptmx"))
                .inspect_err(|e| tracing::debug!(%e, "no pty: no relay"))
                .ok()?;
            (None, Some(master), PtySource::Slave(slave))
        }
    };
    let spec = TerminalSpec {
        fds,
        termios: saved.clone(),
        winsize,
        source,
    };
    if let (Some(_), PtySource::Slave(slave)) = (&master, &spec.source) {
        crate::sandbox::terminal::configure(slave, &spec).ok()?;
    }
    let relay = Relay {
        tty,
        saved,
        channel,
        master,
        raw: false,
        to_master: Chunk::new(INPUT_BUFFER),
        to_tty: Chunk::new(OUTPUT_BUFFER),
        input_open: true,
        output_open: true,
        tty_gone: false,
    };
    Some((relay, spec))
}

impl Relay {
    /// At the start of supervision: a master already here (container tier) starts the
    /// relay now.
    pub fn start(&mut self) {
        if self.master.is_some() {
            self.begin();
        }
    }

    /// The master is here: non-blocking, the caller's terminal raw, the size as it is now.
    fn begin(&mut self) {
        let Some(master) = &self.master else { return };
        if let Err(e) = set_nonblocking(master.as_fd()) {
            tracing::debug!(%e, "pty master: O_NONBLOCK");
        }
        let mut raw = self.saved.clone();
        cfmakeraw(&mut raw);
        *RESTORE.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((self.tty.as_raw_fd(), self.saved.clone()));
        install_panic_hook();
        match tcsetattr(self.tty.as_fd(), SetArg::TCSANOW, &raw) {
            Ok(()) => self.raw = true,
            Err(e) => tracing::debug!(%e, "cannot make the terminal raw"),
        }
        self.window_changed();
    }

    /// Is the relay running (the master is here)?
    pub fn active(&self) -> bool {
        self.master.is_some()
    }

    /// The descriptors to poll now and for what.
    pub fn interest(&self) -> Vec<(BorrowedFd<'_>, PollFlags, Side)> {
        let mut out = Vec::with_capacity(3);
        if let Some(c) = &self.channel {
            out.push((c.as_fd(), PollFlags::POLLIN, Side::Channel));
        }
        let Some(master) = &self.master else {
            return out;
        };
        let mut tty = PollFlags::empty();
        if self.input_open && self.to_master.is_empty() {
            tty |= PollFlags::POLLIN;
        }
        if !self.to_tty.is_empty() {
            tty |= PollFlags::POLLOUT;
        }
        if !tty.is_empty() {
            out.push((self.tty.as_fd(), tty, Side::Tty));
        }
        let mut m = PollFlags::empty();
        if self.output_open && self.to_tty.is_empty() {
            m |= PollFlags::POLLIN;
        }
        if !self.to_master.is_empty() {
            m |= PollFlags::POLLOUT;
        }
        if !m.is_empty() {
            out.push((master.as_fd(), m, Side::Master));
        }
        out
    }

    /// One of [`Relay::interest`]'s descriptors is ready.
    pub fn ready(&mut self, side: Side) {
        match side {
            Side::Channel => self.receive_master(),
            Side::Tty | Side::Master => {
                self.pump();
            }
        }
    }

    fn receive_master(&mut self) {
        let Some(channel) = self.channel.take() else {
            return;
        };
        let mut buf = [0u8; 8];
        match sys::recv_fds(channel.as_fd(), &mut buf) {
            Ok((_, mut fds)) if fds.len() == 1 => {
                self.master = fds.pop();
                self.begin();
            }
            // The sandbox made no pty (the command has the caller's terminal), or it
            // ended before: no relay.
            Ok(_) => tracing::debug!("no pty from the sandbox: no relay"),
            Err(e) => tracing::debug!(%e, "no pty from the sandbox: no relay"),
        }
    }

    /// Move what can move now, without blocking. Returns how many bytes moved.
    fn pump(&mut self) -> usize {
        let Some(master) = &self.master else { return 0 };
        let mut moved = 0;
        if self.input_open && self.to_master.is_empty() {
            match self.to_master.fill(self.tty.as_fd()) {
                Ok(open) => self.input_open = open,
                Err(_) => self.input_open = false,
            }
        }
        if !self.to_master.is_empty() {
            match self.to_master.flush(master.as_fd()) {
                Ok(n) => moved += n,
                // The slave is closed everywhere: the input has nowhere to go.
                Err(_) => {
                    self.to_master.clear();
                    self.input_open = false;
                }
            }
        }
        if self.output_open && self.to_tty.is_empty() {
            match self.to_tty.fill(master.as_fd()) {
                Ok(open) => self.output_open = open,
                Err(_) => self.output_open = false,
            }
        }
        if !self.to_tty.is_empty() {
            if self.tty_gone {
                moved += self.to_tty.end - self.to_tty.start;
                self.to_tty.clear();
            } else {
                match self.to_tty.flush(self.tty.as_fd()) {
                    Ok(n) => moved += n,
                    Err(_) => {
                        self.tty_gone = true;
                        self.to_tty.clear();
                    }
                }
            }
        }
        moved
    }

    /// SIGWINCH: the caller's terminal changed size; the slave takes it (and its
    /// foreground process group gets SIGWINCH from the kernel).
    pub fn window_changed(&self) {
        let Some(master) = &self.master else { return };
        if let Ok(ws) = sys::window_size(self.tty.as_fd()) {
            let _ = sys::set_window_size(master.as_fd(), &ws);
        }
    }

    /// The sandbox is over: write out what the pty still holds, then restore the
    /// caller's terminal.
    pub fn finish(&mut self) {
        if self.master.is_some() {
            self.drain();
        }
        self.restore();
    }

    fn drain(&mut self) {
        self.input_open = false;
        self.to_master.clear();
        let start = Instant::now();
        let mut last = start;
        loop {
            if self.pump() > 0 {
                last = Instant::now();
            }
            if !self.output_open && self.to_tty.is_empty() {
                return;
            }
            let now = Instant::now();
            if now.duration_since(last) >= DRAIN_IDLE || now.duration_since(start) >= DRAIN_MAX {
                tracing::debug!("terminal relay: output left in the pty dropped");
                return;
            }
            let interest = self.interest();
            let mut fds: Vec<PollFd<'_>> = interest
                .iter()
                .map(|(fd, flags, _)| PollFd::new(*fd, *flags))
                .collect();
            if fds.is_empty() {
                return;
            }
            let wait = DRAIN_IDLE.saturating_sub(now.duration_since(last));
            let wait = PollTimeout::try_from(wait).unwrap_or(PollTimeout::NONE);
            let _ = poll(&mut fds, wait);
        }
    }

    fn restore(&mut self) {
        if self.raw {
            self.raw = false;
            if let Err(e) = tcsetattr(self.tty.as_fd(), SetArg::TCSANOW, &self.saved) {
                tracing::debug!(%e, "cannot restore the terminal's settings");
            }
        }
        *RESTORE.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.restore();
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

/// A panic while the terminal is raw restores it first (once per process).
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(mut saved) = RESTORE.try_lock() {
                if let Some((fd, termios)) = saved.take() {
                    let _ = tcsetattr(sys::borrow_fd(fd), SetArg::TCSANOW, &termios);
                }
            }
            previous(info);
        }));
    });
}

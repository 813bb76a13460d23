//! Moving bytes between the sandbox's connection and the destination: `splice(2)` through
//! a pipe in each direction (no copy through user space), a thread per direction with
//! blocking I/O, half-close passed on, and one idle timeout for the pair: the connection
//! is cut when nothing moved either way for that long.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys;

/// How much one splice call asks for.
const CHUNK: usize = 1024 * 1024;
/// A direction that moved this much is a bulk transfer: its pipe grows to [`BULK_PIPE`]
/// (less CPU per byte than the default 64 KiB). Only then: pipes are charged to the
/// user's pipe quota (`fs.pipe-user-pages-soft`, 64 MiB by default) at their full size,
/// and a few hundred idle connections with 1 MiB pipes would exhaust it.
const BULK_AFTER: u64 = 4 * 1024 * 1024;
const BULK_PIPE: i32 = 1024 * 1024;
/// Stack of the second thread of a relay (it only splices).
const RELAY_STACK: usize = 64 * 1024;

/// A connected pair and what both directions share.
pub(crate) struct Pair {
    pub client: TcpStream,
    pub upstream: TcpStream,
    start: Instant,
    /// Milliseconds since `start` at the last byte moved.
    last: AtomicU64,
    idle: Duration,
    /// Set for one-request HTTP: when the response ends, the client side is done too.
    pub close_client_after_response: AtomicBool,
    pub bytes_out: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Its bytes are in the summary (set under the summary's lock when the relay ends):
    /// until then a summary taken meanwhile adds them as they are (a session's
    /// commands are reported from such summaries, see `Engine::summary`).
    pub counted: AtomicBool,
}

impl Pair {
    /// Set both sockets' timeouts to a tick of the idle timeout (blocked calls wake up to
    /// check it).
    pub fn new(client: TcpStream, upstream: TcpStream, idle: Duration) -> io::Result<Pair> {
        let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(2));
        for s in [&client, &upstream] {
            s.set_read_timeout(Some(tick))?;
            s.set_write_timeout(Some(tick))?;
            let _ = s.set_nodelay(true);
        }
        Ok(Pair {
            client,
            upstream,
            start: Instant::now(),
            last: AtomicU64::new(0),
            idle,
            close_client_after_response: AtomicBool::new(false),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            counted: AtomicBool::new(false),
        })
    }

    pub fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    fn expired(&self) -> bool {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last) >= self.idle
    }

    /// Cut both connections (wakes every blocked call on them).
    pub fn abort(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }

    /// A read on `from` that waits through ticks until data, EOF, an error or the idle
    /// timeout.
    pub fn read(&self, mut from: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match from.read(buf) {
                Ok(n) => {
                    self.touch();
                    return Ok(n);
                }
                Err(e) if self.retry(&e)? => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Write all of `buf` to `to`, waiting through ticks.
    pub fn write_all(&self, mut to: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match to.write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    self.touch();
                }
                Err(e) if self.retry(&e)? => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Is `e` a tick or an interruption (retry), the idle timeout (error), or real?
    fn retry(&self, e: &io::Error) -> io::Result<bool> {
        match e.kind() {
            io::ErrorKind::Interrupted => Ok(true),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut if self.expired() => Err(
                io::Error::new(io::ErrorKind::TimedOut, "relay idle timeout"),
            ),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(true),
            _ => Ok(false),
        }
    }

    /// Move bytes from `from` to `to` until EOF on `from`, or `limit` bytes; counts into
    /// `counter`.
    pub fn pump(
        &self,
        from: &TcpStream,
        to: &TcpStream,
        limit: Option<u64>,
        counter: &AtomicU64,
    ) -> io::Result<()> {
        match pipe() {
            Ok((r, w)) => match self.splice_pump(from, to, limit, counter, &r, &w) {
                Err(e)
                    if e.raw_os_error() == Some(libc::EINVAL)
                        && counter.load(Ordering::Relaxed) == 0 =>
                {
                    self.copy_pump(from, to, limit, counter)
                }
                other => other,
            },
            Err(_) => self.copy_pump(from, to, limit, counter),
        }
    }

    fn splice_pump(
        &self,
        from: &TcpStream,
        to: &TcpStream,
        limit: Option<u64>,
        counter: &AtomicU64,
        r: &OwnedFd,
        w: &OwnedFd,
    ) -> io::Result<()> {
        let mut moved: u64 = 0;
        let mut grown = false;
        loop {
            let want = match limit {
                Some(l) if moved >= l => return Ok(()),
                Some(l) => ((l - moved) as usize).min(CHUNK),
                None => CHUNK,
            };
            if !grown && moved >= BULK_AFTER {
                grown = true;
                // Best effort: over the quota the pipe keeps its size.
                let _ = nix::fcntl::fcntl(w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(BULK_PIPE));
            }
            let n = match sys::splice(from.as_fd(), w.as_fd(), want, false) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if self.retry(&e)? => continue,
                Err(e) => return Err(e),
            };
            self.touch();
            let mut left = n;
            while left > 0 {
                match sys::splice(r.as_fd(), to.as_fd(), left, false) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(m) => {
                        left -= m;
                        counter.fetch_add(m as u64, Ordering::Relaxed);
                        self.touch();
                    }
                    Err(e) if self.retry(&e)? => continue,
                    Err(e) => return Err(e),
                }
            }
            moved += n as u64;
        }
    }

    fn copy_pump(
        &self,
        from: &TcpStream,
        to: &TcpStream,
        limit: Option<u64>,
        counter: &AtomicU64,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut moved: u64 = 0;
        loop {
            let want = match limit {
                Some(l) if moved >= l => return Ok(()),
                Some(l) => ((l - moved) as usize).min(buf.len()),
                None => buf.len(),
            };
            let n = self.read(from, &mut buf[..want])?;
            if n == 0 {
                return Ok(());
            }
            self.write_all(to, &buf[..n])?;
            counter.fetch_add(n as u64, Ordering::Relaxed);
            moved += n as u64;
        }
    }

    /// Run the two directions: `up` (sandbox to destination, given by the caller) on this
    /// thread, the response direction (a plain pump) on a second one. A direction that ends
    /// cleanly half-closes its destination; an error cuts both.
    pub fn run<F: FnOnce(&Pair) -> io::Result<()> + Send>(&self, up: F) {
        std::thread::scope(|s| {
            let down = std::thread::Builder::new()
                .name("net-relay".into())
                .stack_size(RELAY_STACK)
                .spawn_scoped(s, || {
                    match self.pump(&self.upstream, &self.client, None, &self.bytes_in) {
                        Ok(()) if self.close_client_after_response.load(Ordering::SeqCst) => {
                            let _ = self.client.shutdown(Shutdown::Both);
                        }
                        Ok(()) => {
                            let _ = self.client.shutdown(Shutdown::Write);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "relay: response direction ended");
                            self.abort();
                        }
                    }
                });
            if down.is_err() {
                tracing::warn!("relay: cannot start a thread; connection cut");
                self.abort();
                return;
            }
            match up(self) {
                Ok(()) => {
                    let _ = self.upstream.shutdown(Shutdown::Write);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "relay: request direction ended");
                    self.abort();
                }
            }
        });
    }

    /// Read and drop what the client sends until it closes (after a one-request HTTP
    /// exchange: nothing more is forwarded).
    pub fn drain_client(&self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        while self.read(&self.client, &mut buf)? > 0 {}
        Ok(())
    }

    pub fn add_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Relay two connected streams both ways until both directions end (or nothing moves for
/// `idle`); no checks. For `--publish`, whose ends are a host client and a server inside.
pub fn relay_both_ways(a: TcpStream, b: TcpStream, idle: Duration) {
    let Ok(pair) = Pair::new(a, b, idle) else {
        return;
    };
    pair.run(|p| p.pump(&p.client, &p.upstream, None, &p.bytes_out));
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    sys::pipe_cloexec().map_err(|e| io::Error::from_raw_os_error(e.errno as i32))
}

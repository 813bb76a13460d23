# Run a command on a fresh pseudo-terminal as its controlling terminal, then
# report what is waiting in the terminal's *input* queue: bytes there would be
# read by the user's shell as if typed. Prints "OUTPUT <hex>" and "PENDING <hex>".
import fcntl, os, select, sys, termios, tty

master, slave = os.openpty()
tty.setraw(slave)  # no line discipline: pending bytes are readable at once
pid = os.fork()
if pid == 0:
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.execvp(sys.argv[1], sys.argv[1:])
out = b""
while True:
    r, _, _ = select.select([master], [], [], 0.1)
    if r:
        try:
            out += os.read(master, 65536)
        except OSError:
            pass
    done, _ = os.waitpid(pid, os.WNOHANG)
    if done:
        break
# What the command wrote between the last read and its exit is still queued (we hold the
# slave open, so the master never reads EOF): drain it.
while select.select([master], [], [], 0)[0]:
    try:
        chunk = os.read(master, 65536)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
fl = fcntl.fcntl(slave, fcntl.F_GETFL)
fcntl.fcntl(slave, fcntl.F_SETFL, fl | os.O_NONBLOCK)
pending = b""
try:
    pending = os.read(slave, 65536)
except BlockingIOError:
    pass
print("OUTPUT", out.hex())
print("PENDING", pending.hex())

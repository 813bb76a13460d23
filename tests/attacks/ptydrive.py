# Drive a program on a fresh pseudo-terminal the way a person at a terminal would, and
# report what the terminal saw. argv[1] is a JSON object:
#   argv      the program and its arguments (run as the pty's session leader, foreground)
#   rows/cols the window size before the start
#   steps     in order: {"expect": REGEX} wait until the output since the last expect
#             matches (10 s), {"send": TEXT}, {"sleep": S}, {"resize": [ROWS, COLS]},
#             {"pause": S} (read no output for S seconds), {"input": N} (write N bytes of
#             input without blocking the driver, while reading output)
#   timeout   the whole run; then the program is killed with SIGKILL
#   stdout    optional file for the program's fd 1 instead of the pty
# Prints one JSON line: status (exit code, or -signal), output (the first 64 KiB, latin-1),
# length and count_y of all output, termios before/after (tcgetattr of the pty, as the
# caller's terminal), maxrss_kb and cpu (user + system seconds) of the program and what it
# waited for (wait4), exited_at (seconds after the start,
# as seen at the first look after the exit), timed_out, failed_step.
import fcntl, json, os, re, select, signal, struct, sys, termios, time

spec = json.loads(sys.argv[1])
master, slave = os.openpty()
fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", spec.get("rows", 24), spec.get("cols", 80), 0, 0))
before = termios.tcgetattr(slave)
pid = os.fork()
if pid == 0:
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if spec.get("stdout"):
        out = os.open(spec["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
    os.execvp(spec["argv"][0], spec["argv"])
fl = fcntl.fcntl(master, fcntl.F_GETFL)
fcntl.fcntl(master, fcntl.F_SETFL, fl | os.O_NONBLOCK)

head = bytearray()
length = 0
count_y = 0
window = bytearray()  # output since the last expect
status = None
maxrss = 0
cpu = None
started = time.monotonic()
exited_at = None
deadline = time.monotonic() + spec.get("timeout", 60)
timed_out = False
failed = None


def reap(block=False):
    global status, maxrss, exited_at, cpu
    if status is not None:
        return True
    p, st, ru = os.wait4(pid, 0 if block else os.WNOHANG)
    if p == 0:
        return False
    status = os.waitstatus_to_exitcode(st)
    maxrss = ru.ru_maxrss
    cpu = ru.ru_utime + ru.ru_stime
    exited_at = time.monotonic() - started
    return True


def read_some(wait):
    global length, count_y
    r, _, _ = select.select([master], [], [], wait)
    if not r:
        return False
    try:
        data = os.read(master, 1 << 16)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:  # EIO: no slave left
        return False
    length += len(data)
    count_y += data.count(b"y")
    if len(head) < 1 << 16:
        head.extend(data[: (1 << 16) - len(head)])
    window.extend(data[-(1 << 16):])
    del window[: max(0, len(window) - (1 << 16))]
    return True


for i, step in enumerate(spec.get("steps", [])):
    if "expect" in step:
        pat = re.compile(step["expect"].encode("latin-1"))
        limit = time.monotonic() + step.get("within", 10)
        while not (m := pat.search(window)):
            if time.monotonic() > limit or (reap() and not read_some(0.2)):
                failed = i
                break
            read_some(0.05)
        if failed is not None:
            break
        del window[: m.end()]
    elif "send" in step:
        os.write(master, step["send"].encode("latin-1"))
    elif "sleep" in step:
        end = time.monotonic() + step["sleep"]
        while time.monotonic() < end:
            read_some(0.05)
    elif "pause" in step:
        end = time.monotonic() + step["pause"]
        while time.monotonic() < end:
            reap()
            time.sleep(0.05)
    elif "resize" in step:
        rows, cols = step["resize"]
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    elif "input" in step:
        left = step["input"]
        limit = time.monotonic() + step.get("within", 10)
        while left > 0 and time.monotonic() < limit and not reap():
            _, w, _ = select.select([], [master], [], 0.05)
            if w:
                try:
                    left -= os.write(master, b"a" * min(left, 4096))
                except (BlockingIOError, OSError):
                    pass
            read_some(0)
        # Input the program never read stays queued; drop it so the pty does not
        # keep the writer waiting.
        termios.tcflush(slave, termios.TCIFLUSH)

while not reap():
    if time.monotonic() > deadline:
        timed_out = True
        os.kill(pid, signal.SIGKILL)
        reap(block=True)
        break
    read_some(0.05)
while read_some(0.1):
    pass
after = termios.tcgetattr(slave)
print(json.dumps({
    "status": status,
    "output": head.decode("latin-1"),
    "length": length,
    "count_y": count_y,
    "termios_before": [x if not isinstance(x, list) else [c if isinstance(c, int) else c.hex() for c in x] for x in before],
    "termios_after": [x if not isinstance(x, list) else [c if isinstance(c, int) else c.hex() for c in x] for x in after],
    "maxrss_kb": maxrss,
    "cpu": cpu,
    "exited_at": exited_at,
    "timed_out": timed_out,
    "failed_step": failed,
}))

# Attack probe: one subcommand per attempt, one result line on stdout:
#   "OK <detail>"  the attempt succeeded (the detail may hold data it read)
#   "ERR <ENAME>"  the kernel refused it with that errno
# Used both inside `shellcage run` and directly on the host (the control).
import ctypes, errno, os, platform, socket, struct, sys

NR = {
    "x86_64": dict(ptrace=101, personality=135, chroot=161, mount=165, keyctl=250,
                   unshare=272, perf_event_open=298, open_by_handle_at=304, setns=308,
                   process_vm_readv=310, bpf=321, userfaultfd=323, io_uring_setup=425,
                   clone3=435, chmod=90, fchmod=91, fchmodat=268, fchmodat2=452, open=2,
                   openat=257, creat=85, mknod=133, mknodat=259, openat2=437, setxattr=188),
    "aarch64": dict(ptrace=117, personality=92, chroot=51, mount=40, keyctl=219,
                    unshare=97, perf_event_open=241, open_by_handle_at=265, setns=268,
                    process_vm_readv=270, bpf=280, userfaultfd=282, io_uring_setup=425,
                    clone3=435, fchmod=52, fchmodat=53, fchmodat2=452, openat=56,
                    mknodat=33, openat2=437, setxattr=5),
}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def ok(detail=""):
    print("OK", detail)
    sys.exit(0)


def err(e):
    print("ERR", errno.errorcode.get(e, str(e)))
    sys.exit(0)


def sys_call(name, *args):
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    r = libc.syscall(NR[name], *args)
    if r < 0:
        err(ctypes.get_errno())
    return r


def guard(f):
    try:
        f()
    except OSError as e:
        err(e.errno)


def cmd_read(path):
    with open(path, "rb") as f:
        ok(f.read(4096).decode("latin-1").replace("\n", " "))


def cmd_append(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")
    ok("wrote " + path)


def cmd_create(path, text):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")
    ok("wrote " + path)


def cmd_readfd(fd):
    fd = int(fd)
    ok(os.read(fd, 4096).decode("latin-1").replace("\n", " "))


def cmd_dirfd(fd, name):
    # An inherited directory fd: open a file relative to it (openat).
    f = os.open(name, os.O_RDONLY, dir_fd=int(fd))
    ok(os.read(f, 4096).decode("latin-1").replace("\n", " "))


def cmd_tcp(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((host, int(port)))
    except socket.timeout:
        err(errno.ETIMEDOUT)
    s.sendall(b"probe\n")
    ok("connected")


def cmd_udp(host, port, payload="probe"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.sendto(payload.encode(), (host, int(port)))
    ok("sent")


def cmd_dns(host, port):
    # A real DNS query for example.com, type A.
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in "example.com".split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(q, (host, int(port)))
    ok("sent")


def cmd_unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b"probe\n")
    ok("connected")


def cmd_abstract(name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("\0" + name)
    s.sendall(b"probe\n")
    ok("connected")


def cmd_socket(family, type_, proto="0"):
    s = socket.socket(int(family), int(type_), int(proto))
    ok("created fd %d" % s.fileno())


def cmd_kill(pid, sig):
    os.kill(int(pid), int(sig))
    ok("signalled")


def cmd_ptrace_attach(pid):
    sys_call("ptrace", 16, int(pid), 0, 0)  # PTRACE_ATTACH
    ok("attached")


def cmd_ptrace_child():
    # Trace our own child: allowed on any host (no Yama restriction on descendants).
    pid = os.fork()
    if pid == 0:
        import time
        time.sleep(5)
        os._exit(0)
    try:
        sys_call("ptrace", 16, pid, 0, 0)
        ok("attached")
    finally:
        os.kill(pid, 9)


def cmd_vm_read(pid, addr):
    buf = ctypes.create_string_buffer(8)
    local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
    remote = (ctypes.c_void_p * 2)(int(addr, 16), 8)
    sys_call("process_vm_readv", int(pid), local, 1, remote, 1, 0)
    ok("read " + buf.raw.hex())


def cmd_vm_read_child():
    pid = os.fork()
    if pid == 0:
        import time
        time.sleep(5)
        os._exit(0)
    buf = ctypes.create_string_buffer(8)
    src = ctypes.create_string_buffer(b"childmem")
    local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
    remote = (ctypes.c_void_p * 2)(ctypes.addressof(src), 8)
    try:
        sys_call("process_vm_readv", pid, local, 1, remote, 1, 0)
        ok("read " + buf.raw.decode())
    finally:
        os.kill(pid, 9)


def cmd_unshare_user():
    sys_call("unshare", 0x10000000)  # CLONE_NEWUSER
    ok("new user namespace")


def cmd_clone3_newuser():
    # struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls
    args = struct.pack("<8Q", 0x10000000, 0, 0, 0, 17, 0, 0, 0)
    buf = ctypes.create_string_buffer(args)
    r = sys_call("clone3", buf, len(args))
    if r == 0:
        os._exit(0)
    os.waitpid(r, 0)
    ok("cloned %d" % r)


def cmd_mount():
    os.makedirs("/tmp/mnt-probe", exist_ok=True)
    sys_call("mount", b"none", b"/tmp/mnt-probe", b"tmpfs", 0, 0)
    ok("mounted")


def cmd_chroot():
    sys_call("chroot", b"/tmp")
    ok("chrooted")


def cmd_setns(path):
    fd = os.open(path, os.O_RDONLY)
    sys_call("setns", fd, 0)
    ok("joined " + path)


def cmd_keyctl():
    # KEYCTL_GET_KEYRING_ID(KEY_SPEC_SESSION_KEYRING, create=1)
    r = sys_call("keyctl", 0, -3, 1)
    ok("keyring %d" % r)


def cmd_bpf():
    # BPF_MAP_CREATE, array map with one 4-byte entry.
    attr = ctypes.create_string_buffer(struct.pack("<IIII", 2, 4, 4, 1) + b"\0" * 112)
    r = sys_call("bpf", 0, attr, 128)
    ok("map fd %d" % r)


def cmd_perf():
    # PERF_TYPE_SOFTWARE / PERF_COUNT_SW_CPU_CLOCK, this process, user space only.
    attr = bytearray(128)
    struct.pack_into("<IIQ", attr, 0, 1, 128, 0)
    struct.pack_into("<Q", attr, 40, 1 << 5 | 1 << 6)  # exclude_kernel | exclude_hv
    buf = ctypes.create_string_buffer(bytes(attr))
    r = sys_call("perf_event_open", buf, 0, -1, -1, 0)
    ok("perf fd %d" % r)


def cmd_userfaultfd():
    r = sys_call("userfaultfd", 0o2000000 | 1)  # O_CLOEXEC | UFFD_USER_MODE_ONLY
    ok("uffd %d" % r)


def cmd_io_uring():
    params = ctypes.create_string_buffer(120)
    r = sys_call("io_uring_setup", 4, params)
    ok("ring fd %d" % r)


def cmd_open_by_handle():
    # A handle for "/" then open it back: the shocker primitive.
    libc.name_to_handle_at.restype = ctypes.c_int
    buf = ctypes.create_string_buffer(struct.pack("<Ii", 128, 0) + b"\0" * 128)
    mnt = ctypes.c_int()
    if libc.name_to_handle_at(-100, b"/", buf, ctypes.byref(mnt), 0) < 0:
        err(ctypes.get_errno())
    fd = os.open("/", os.O_RDONLY)
    r = sys_call("open_by_handle_at", fd, buf, 0)
    ok("opened fd %d" % r)


def cmd_personality():
    r = sys_call("personality", 0x0400000)  # READ_IMPLIES_EXEC
    ok("persona was %#x" % r)


AT_FDCWD = -100
O_WRONLY, O_RDWR, O_CREAT, O_EXCL = 0o1, 0o2, 0o100, 0o200
O_TMPFILE = 0o20000000 | os.O_DIRECTORY


def cmd_setid(call, path, mode="0o6755"):
    # Give PATH the setuid and setgid bits through one system call, by number (no libc
    # wrapper in between). The chmod family works on an existing plain file (made here);
    # the others create PATH. "-high" variants set bit 32 of the mode argument.
    mode = int(mode, 0)
    p = path.encode()
    if call.endswith("-high"):
        call, mode = call[:-5], mode | 1 << 32
    if call in ("chmod", "fchmod", "fchmodat", "fchmodat2"):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o755))
    if call == "chmod":
        sys_call("chmod", p, mode)
    elif call == "fchmod":
        sys_call("fchmod", os.open(path, os.O_RDONLY), mode)
    elif call == "fchmodat":
        sys_call("fchmodat", AT_FDCWD, p, mode)
    elif call == "fchmodat2":
        sys_call("fchmodat2", AT_FDCWD, p, mode, 0)
    elif call == "open":
        sys_call("open", p, O_CREAT | O_EXCL | O_WRONLY, mode)
    elif call == "openat":
        sys_call("openat", AT_FDCWD, p, O_CREAT | O_EXCL | O_WRONLY, mode)
    elif call == "creat":
        sys_call("creat", p, mode)
    elif call == "mknod":
        sys_call("mknod", p, 0o100000 | mode, 0)  # S_IFREG
    elif call == "mknodat":
        sys_call("mknodat", AT_FDCWD, p, 0o100000 | mode, 0)
    elif call == "tmpfile":
        # An unnamed file in the directory, then given PATH as its name.
        d = os.path.dirname(os.path.abspath(path)).encode()
        fd = sys_call("openat", AT_FDCWD, d, O_TMPFILE | O_RDWR, mode)
        # linkat(AT_SYMLINK_FOLLOW): os.link would call link(2), which does not follow.
        if libc.linkat(AT_FDCWD, b"/proc/self/fd/%d" % fd, AT_FDCWD, p, 0x400) < 0:
            err(ctypes.get_errno())
    elif call == "openat2":
        # struct open_how { u64 flags; u64 mode; u64 resolve; }
        how = ctypes.create_string_buffer(struct.pack("<QQQ", O_CREAT | O_EXCL | O_WRONLY,
                                                      mode, 0))
        sys_call("openat2", AT_FDCWD, p, how, 24)
    else:
        raise SystemExit("unknown call " + call)
    st = os.stat(path)
    ok("mode %o" % st.st_mode)


def cmd_setcap(path):
    # A file capability (CAP_NET_RAW, effective) in security.capability, format v2:
    # magic_etc (revision 2 | effective), then permitted/inheritable for caps 0-31 and 32-63.
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o755))
    value = struct.pack("<IIIII", 0x02000000 | 1, 1 << 13, 0, 0, 0)
    sys_call("setxattr", path.encode(), b"security.capability", value, len(value), 0)
    ok("capability set")


def cmd_watch(d, secs, ready):
    # inotify on directory D for SECS seconds (READY is created once the watch is set):
    # "OK <name> <name> …" with the names of the entries events were seen for.
    import select, time
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0 or libc.inotify_add_watch(fd, d.encode(), 0xfff) < 0:  # IN_ALL_EVENTS
        err(ctypes.get_errno())
    open(ready, "w").close()
    end, names = time.time() + float(secs), set()
    while time.time() < end:
        if not select.select([fd], [], [], max(0, end - time.time()))[0]:
            break
        buf, off = os.read(fd, 65536), 0
        while off < len(buf):
            _, _, _, ln = struct.unpack_from("iIII", buf, off)
            names.add(buf[off + 16: off + 16 + ln].rstrip(b"\0").decode())
            off += 16 + ln
    ok(" ".join(sorted(names)))


def cmd_status():
    with open("/proc/self/status") as f:
        fields = dict(l.split(":", 1) for l in f if ":" in l)
    ok(" ".join("%s=%s" % (k, fields[k].strip()) for k in
                ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")))


def cmd_ioctl(fd, request):
    libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_char_p]
    c = ctypes.create_string_buffer(b"\x0c")  # for TIOCLINUX: subcode 12 (get shift state)
    if int(request, 16) & 0xffffffff == 0x5412:
        c = ctypes.create_string_buffer(b"X")
    if libc.ioctl(int(fd), int(request, 16), c) < 0:
        err(ctypes.get_errno())
    ok("ioctl done")


def cmd_tiocsti(fd, request, text):
    libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_char_p]
    for ch in text.encode():
        if libc.ioctl(int(fd), int(request, 16), bytes([ch])) < 0:
            err(ctypes.get_errno())
    ok("injected")


def cmd_ttydevs():
    # The devpts instance (st_dev) of every terminal the process holds on fds 0-2 and of
    # the instance mounted at /dev/pts here; the session of the controlling terminal
    # (/dev/tty, TIOCGSID = 0x5429) and of fd 0's terminal: equal when fd 0 is the controlling one.
    import fcntl
    seen = []
    for fd in (0, 1, 2):
        if os.isatty(fd):
            seen.append("fd%d=%d" % (fd, os.fstat(fd).st_dev))
    def sid(fd):
        return struct.unpack("i", fcntl.ioctl(fd, 0x5429, b"\0" * 4))[0]
    try:
        t = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        seen.append("ttysid=%d fd0sid=%d" % (sid(t), sid(0)))
    except OSError as e:
        seen.append("ttysid=" + errno.errorcode.get(e.errno, "?"))
    seen.append("pts=%d" % os.stat("/dev/pts").st_dev)
    ok(" ".join(seen))


if __name__ == "__main__":
    name, args = sys.argv[1].replace("-", "_"), sys.argv[2:]
    guard(lambda: globals()["cmd_" + name](*args))

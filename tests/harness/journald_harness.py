"""A real systemd-journald for tests and benchmarks, in a private mount
namespace, and the few journal helpers they share: journald's native
protocol (encoding an entry), reading entries back (journalctl -o export,
binary-safe and never truncated), and a bounded wait for entries to appear.

This machine has no journald running (PID 1 is not systemd), so a test
re-executes itself under `unshare -m --propagation private` (in_private_namespace)
and mounts tmpfs over /run/systemd, /run/log and /var/log/journal there: the
host's journal directories and sockets are never touched, and everything
the namespace held is gone when its last process exits.

Debian's /lib/systemd/systemd-journald takes a journal namespace as its only
argument: `systemd-journald NAME` listens on /run/systemd/journal.NAME/socket
and writes /var/log/journal/MACHINE-ID.NAME, which `journalctl --namespace=NAME`
reads.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

JOURNALD = "/lib/systemd/systemd-journald"
MESSAGE_ID = "7d5b1c3c9a0e4f4e8b2a6c1d0f3e5a71"  # secmsgd's "message received"
INNER_ENV = "SECMSG_JOURNAL_INNER"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def skip(why):
    print("SKIP:", why)
    sys.exit(77)


def in_private_namespace():
    """Call first in main.  Outside: checks what is needed (else exit 77),
    runs this same script with the same arguments in a private mount
    namespace and exits with its status.  Inside: mounts the tmpfs
    directories and returns."""
    if os.environ.get(INNER_ENV):
        for path in ("/run/systemd", "/run/log", "/var/log/journal"):
            os.makedirs(path, exist_ok=True)
            subprocess.run(["mount", "-t", "tmpfs", "tmpfs", path], check=True)
        return
    if os.geteuid() != 0:
        skip("needs root for a private mount namespace")
    for tool in ("unshare", "journalctl", "mount"):
        if not shutil.which(tool):
            skip(tool + " not found")
    if not os.path.exists(JOURNALD):
        skip(JOURNALD + " not found")
    env = dict(os.environ, **{INNER_ENV: "1"})
    r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                        os.path.abspath(sys.argv[0])] + sys.argv[1:], env=env)
    sys.exit(r.returncode)


def socket_path(namespace=None):
    return "/run/systemd/journal%s/socket" % ("." + namespace if namespace else "")


def reachable(path):
    """True when a datagram socket can connect to path (someone listens)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Journald:
    """One systemd-journald (default journal or a namespace), optionally
    pinned to a CPU.  Use as a context manager; start() may be called again
    after kill()."""

    def __init__(self, namespace=None, cpu=None):
        self.namespace = namespace
        self.cpu = cpu
        self.proc = None
        self.socket = socket_path(namespace)

    def start(self, timeout=10):
        argv = [JOURNALD] + ([self.namespace] if self.namespace else [])
        if self.cpu is not None:
            argv = ["taskset", "-c", str(self.cpu)] + argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("journald exited with %d at start" % self.proc.returncode)
            if reachable(self.socket):  # a stale socket file of a killed one refuses
                return self
            time.sleep(0.02)
        raise RuntimeError("journald did not listen on %s within %d s" % (self.socket, timeout))

    @property
    def pid(self):
        return self.proc.pid  # taskset execs journald: the same process

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def kill(self):
        """SIGKILL and reap: its socket file stays, but nobody listens."""
        self.proc.kill()
        self.proc.wait(10)

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ------------------------------------------------------------ native protocol

def append_field(out, name, value):
    """journald's native protocol: NAME=value, or the binary-safe form."""
    if isinstance(value, str):
        value = value.encode()
    if b"\n" in value:
        append_binary_field(out, name, value)
    else:
        out += name.encode() + b"=" + value + b"\n"


def append_binary_field(out, name, value):
    out += name.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"


def encode_entry(fields, binary=()):
    """One native-protocol datagram from [(name, value)]; names in `binary`
    always in the binary-safe form."""
    out = bytearray()
    for name, value in fields:
        (append_binary_field if name in binary else append_field)(out, name, value)
    return bytes(out)


# ------------------------------------------------------------------ reading

def parse_export(data):
    """journalctl -o export output -> [{name: bytes}] (a name repeated in one
    entry keeps its last value)."""
    entries, cur, i = [], {}, 0
    while i < len(data):
        if data[i:i + 1] == b"\n":  # blank line: end of an entry
            entries.append(cur)
            cur = {}
            i += 1
            continue
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            i = nl + 1
        else:
            name = line
            n, = struct.unpack("<Q", data[nl + 1:nl + 9])
            value = data[nl + 9:nl + 9 + n]
            i = nl + 9 + n + 1
        cur[name.decode()] = value
    if cur:
        entries.append(cur)
    return entries


def entries(matches, namespace=None, timeout=30):
    """Every entry matching all of `matches` (["FIELD=value", ...]), as
    {name: bytes}, oldest first."""
    argv = ["journalctl", "-o", "export", "--no-pager", "--all"]
    if namespace:
        argv.append("--namespace=" + namespace)
    r = subprocess.run(argv + list(matches), capture_output=True, timeout=timeout)
    return parse_export(r.stdout)


def wait_entries(matches, count, namespace=None, timeout=10):
    """Polls until at least `count` entries match (or the timeout); returns them."""
    deadline = time.monotonic() + timeout
    while True:
        got = entries(matches, namespace)
        if len(got) >= count or time.monotonic() >= deadline:
            return got
        time.sleep(0.1)


def ack_id(note):
    """The SECMSG_ID named by an ACK note "recorded id=<id>" (None if not)."""
    prefix = "recorded id="
    return note[len(prefix):] if note.startswith(prefix) else None


# ------------------------------------------------------- answers and records

class Answer:
    """The server's answer to one MSG: kind "ack" (id from the note) or
    "error" (code, reason), and when it arrived (time.monotonic())."""

    def __init__(self, seq, kind, id=None, code=None, reason="", at=0.0):
        self.seq, self.kind, self.id, self.code, self.reason, self.at = seq, kind, id, code, reason, at

    def __repr__(self):
        return "<%d %s %s>" % (self.seq, self.kind, self.id if self.kind == "ack" else (self.code, self.reason))


def read_answers(client, count, timeout):
    """Reads up to `count` answers (ACK or ERROR frames), each within
    `timeout` seconds of the previous one; stops early on a timeout or a
    close.  ACKs are checked against what was sent (seq and SHA-256)."""
    import hashlib
    import ssl
    from secmsg_harness import ACK, ERROR, ProtocolViolation, parse_ack, parse_error
    out = []
    client.tls.settimeout(timeout)
    while len(out) < count:
        try:
            f = client.read_frame()
        except (socket.timeout, ssl.SSLError, ConnectionResetError):
            break
        if f is None:
            break
        ftype, _, p = f
        now = time.monotonic()
        if ftype == ACK:
            seq, digest, note = parse_ack(p)
            if digest != hashlib.sha256(client.sent[seq]).digest():
                raise ProtocolViolation("ACK %d: wrong digest" % seq)
            out.append(Answer(seq, "ack", id=ack_id(note), at=now))
        elif ftype == ERROR:
            code, ref, reason = parse_error(p)
            out.append(Answer(ref, "error", code=code, reason=reason, at=now))
        else:
            raise ProtocolViolation("frame type %d from the server" % ftype)
    return out


def exchange(client, payloads, timeout=10):
    """Sends every payload pipelined, then reads as many answers."""
    for p in payloads:
        client.send(p)
    return read_answers(client, len(payloads), timeout)


def check_ack_iff_entry(client, answers, namespace=None, timeout=10):
    """ACK <=> entry for one connection's answers: every ACKed message is in
    the journal exactly once (SECMSG_ID from the ACK note), byte for byte;
    every message answered ERROR 6 is not there at all.  Returns failures."""
    import hashlib
    acks = [a for a in answers if a.kind == "ack"]
    if not acks:
        return ["no ACK on this connection: nothing to find in the journal"]
    prefix = acks[0].id.rsplit("-", 1)[0]
    by_id = {}
    deadline = time.monotonic() + timeout
    while True:
        by_id = {}
        for e in entries(["MESSAGE_ID=" + MESSAGE_ID], namespace):
            i = e.get("SECMSG_ID", b"").decode()
            if i.startswith(prefix + "-"):
                by_id.setdefault(i, []).append(e)
        if all(a.id in by_id for a in acks) or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    failures = []
    for a in answers:
        want = prefix + "-%d" % a.seq
        got = by_id.get(want, [])
        if a.kind == "ack":
            if a.id != want:
                failures.append("seq %d: ACK note id %s, expected %s" % (a.seq, a.id, want))
            if len(got) != 1:
                failures.append("seq %d: ACKed, %d journal entries with SECMSG_ID=%s" % (a.seq, len(got), want))
                continue
            e = got[0]
            p = client.sent[a.seq]
            if (e.get("SECMSG_PAYLOAD") != p or e.get("SECMSG_SEQ") != str(a.seq).encode()
                    or e.get("SECMSG_SHA256") != hashlib.sha256(p).hexdigest().encode()
                    or e.get("SECMSG_BYTES") != str(len(p)).encode()):
                failures.append("seq %d: journal entry differs from the message" % a.seq)
        elif a.code == 6 and got:
            failures.append("seq %d: answered ERROR 6 (not recorded) but %d entries are in the journal"
                            % (a.seq, len(got)))
    return failures


def kinds(answers):
    """Answers in one word: A per ACK, E<code> per ERROR."""
    return "".join("A" if a.kind == "ack" else "E%d" % a.code for a in answers)


def run_cases(cases, doc, setup=None):
    """main() of a test of named cases: argv names the cases (default: all;
    an unknown name prints `doc`), `setup` runs first (e.g.
    in_private_namespace); each case returns its failures.  Returns the
    exit status."""
    names = sys.argv[1:] or list(cases)
    if any(n not in cases for n in names):
        print(doc)
        return 2
    if setup:
        setup()
    failures = []
    for name in names:
        t0 = time.monotonic()
        got = cases[name]()
        print("%s: %s in %.1f s" % (name, "FAIL" if got else "ok", time.monotonic() - t0))
        failures += ["%s: %s" % (name, f) for f in got]
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0

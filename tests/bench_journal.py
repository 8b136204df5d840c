#!/usr/bin/python3
"""Recording benchmark: messages per second that secmsgd records into one
real systemd-journald, next to what that journald ingests from a bare
native-protocol sender of the same entries, in the same run.

journald runs in a private mount namespace (tests/harness/journald_harness.py;
rate limiting off in a drop-in there), pinned to CPU 1; secmsgd and the
generator share CPU 0.  The generator is the Python harness's protocol
code with every frame sealed before the measured period (unique 64-byte
payloads; 4 connections pipelining up to 256 MSGs each; ACKs counted by
size then all decrypted and checked afterwards), so that during the period
it only moves bytes.  The bare sender writes secmsgd-shaped entries (the
same fields: MESSAGE, SECMSG_PAYLOAD binary, SECMSG_SHA256, SECMSG_BYTES,
SECMSG_PEER, SECMSG_CONN, SECMSG_SEQ, SECMSG_ID, MESSAGE_ID, PRIORITY,
SYSLOG_IDENTIFIER; unique payloads) over its own blocking AF_UNIX datagram
socket as fast as journald takes them.

Printed per run: entries/s, journald CPU per entry (utime+stime of its
/proc/PID/stat over the period), secmsgd CPU per message, how busy each CPU
was (/proc/stat), the ratio secmsgd/bare (target >= 0.85).  Then the same
with secmsgd writing to a journal namespace (a second journald, `NAME`),
against the bare sender on that namespace's socket.

  sudo tests/bench_journal.py --secmsgd build/daemon/secmsgd [--seconds 5]
  (meson test -C build --benchmark journal)

Exit 77 when not root or without unshare/journald/taskset.
"""
import argparse
import hashlib
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "harness"))
import journald_harness as jh  # noqa: E402
from secmsg_harness import ACK, MSG, Daemon, open_frame, parse_ack, seal  # noqa: E402

CONNECTIONS = 4
WINDOW = 256
CHUNK = 64
ACK_FRAME = 158  # an ACK of seq < 10^9 ("recorded id=<32 hex>-<seq>") is 4 + 58 + 96 bytes
NAMESPACE = "secmsgbench"


def cpu_times():
    """{cpu: (busy, total)} jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *vals = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                v = [int(x) for x in vals[:8]]
                out[int(name[3:])] = (sum(v) - v[3] - v[4], sum(v))
    return out


def busy(before, after):
    return {c: (after[c][0] - before[c][0]) / max(1, after[c][1] - before[c][1]) for c in after if c in before}


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / jh.CLK_TCK


def bare_entries(n, tag):
    """n secmsgd-shaped native-protocol datagrams with unique payloads."""
    conn_id = os.urandom(16).hex()
    out = []
    for seq in range(n):
        p = os.urandom(64)
        out.append(jh.encode_entry([
            ("MESSAGE", p.hex()[:100]), ("SECMSG_PAYLOAD", p), ("SECMSG_SHA256", hashlib.sha256(p).hexdigest()),
            ("SECMSG_BYTES", "64"), ("SECMSG_PEER", "127.0.0.1:40000"), ("SECMSG_CONN", "1"),
            ("SECMSG_SEQ", str(seq)), ("SECMSG_ID", "%s-%d" % (conn_id, seq)), ("MESSAGE_ID", tag),
            ("PRIORITY", "6"), ("SYSLOG_IDENTIFIER", "secmsgd")], binary=("SECMSG_PAYLOAD",)))
    return out


def measure(journald, counter, seconds, warmup, extra_pid=None):
    """Samples counter() (entries so far), journald's and extra_pid's CPU and
    /proc/stat over `seconds` after `warmup`."""
    time.sleep(warmup)
    c0, j0, x0, s0, t0 = counter(), journald.cpu_seconds(), proc_cpu(extra_pid) if extra_pid else 0, \
        cpu_times(), time.monotonic()
    time.sleep(seconds)
    c1, j1, x1, s1, t1 = counter(), journald.cpu_seconds(), proc_cpu(extra_pid) if extra_pid else 0, \
        cpu_times(), time.monotonic()
    n = c1 - c0
    return {"rate": n / (t1 - t0), "journald_us": (j1 - j0) / n * 1e6 if n else None,
            "secmsgd_us": (x1 - x0) / n * 1e6 if n and extra_pid else None,
            "busy": busy(s0, s1), "n": n}


def run_bare(journald, seconds, warmup, expected_rate):
    entries = bare_entries(int(expected_rate * (seconds + warmup) * 1.5) + 20000, "0" * 32)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.connect(journald.socket)
    sent = [0]
    stop = threading.Event()

    def send():
        for e in entries:
            if stop.is_set():
                return
            s.send(e)
            sent[0] += 1

    t = threading.Thread(target=send, daemon=True)
    t.start()
    r = measure(journald, lambda: sent[0], seconds, warmup)
    stop.set()
    t.join(10)
    s.close()
    if sent[0] >= len(entries):
        r["note"] = "ran out of entries (raise the estimate)"
    return r


class Flow(threading.Thread):
    """One connection: pre-sealed MSGs, pipelined up to WINDOW, ACKs counted by size."""

    def __init__(self, d, frames):
        super().__init__(daemon=True)
        self.c = d.client(timeout=20)
        self.frames = frames
        self.sent = 0
        self.received = bytearray()
        self.stop = threading.Event()

    def acked(self):
        return len(self.received) // ACK_FRAME

    def run(self):
        tls = self.c.tls
        while not self.stop.is_set():
            if self.sent < len(self.frames) and self.sent - self.acked() <= WINDOW - CHUNK:
                tls.sendall(b"".join(self.frames[self.sent:self.sent + CHUNK]))
                self.sent += min(CHUNK, len(self.frames) - self.sent)
                continue
            if self.acked() >= len(self.frames):
                return
            data = tls.recv(65536)
            if not data:
                return
            self.received += data

    def check(self):
        """Every frame received is the right ACK (tag, seq, digest)."""
        buf = bytes(self.received[:self.acked() * ACK_FRAME])
        for i in range(len(buf) // ACK_FRAME):
            ftype, seq, p = open_frame(self.c.keys, buf[i * ACK_FRAME:(i + 1) * ACK_FRAME])
            acked, digest, note = parse_ack(p)
            if ftype != ACK or seq != i or acked != i or not note.startswith("recorded id="):
                return "frame %d is not the ACK of MSG %d" % (i, i)
        return None


def run_secmsgd(binary, journald, namespace, seconds, warmup, expected_rate):
    args = ["--record-timeout", "30"] + (["--journal-namespace", namespace] if namespace else [])
    with Daemon(binary=binary, record="journal", args=args, wrapper=["taskset", "-c", "0"]) as d:
        per = int(expected_rate * (seconds + warmup) * 1.4 / CONNECTIONS) + 5000
        flows = []
        for _ in range(CONNECTIONS):
            f = Flow(d, [])
            f.frames = [seal(f.c.keys, MSG, seq, os.urandom(64)) for seq in range(per)]
            flows.append(f)
        for f in flows:
            f.start()
        r = measure(journald, lambda: sum(f.acked() for f in flows), seconds, warmup, extra_pid=d.proc.pid)
        for f in flows:
            f.stop.set()
        for f in flows:
            f.join(20)
        bad = [e for e in (f.check() for f in flows) if e]
        if bad:
            r["note"] = "; ".join(bad)
        if any(f.acked() >= len(f.frames) for f in flows):
            r["note"] = "a connection ran out of frames (raise the estimate)"
        for f in flows:
            f.c.close()
    return r


def fmt_busy(b):
    return " ".join("cpu%d %.0f%%" % (c, 100 * v) for c, v in sorted(b.items()))


def row(label, r):
    return "%-34s %9.0f/s  journald %5.1f us/entry  secmsgd %s  %s%s" % (
        label, r["rate"], r["journald_us"] or 0,
        "%5.1f us/msg" % r["secmsgd_us"] if r["secmsgd_us"] else "     -      ",
        fmt_busy(r["busy"]), ("  [" + r["note"] + "]") if r.get("note") else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--secmsgd", default=os.environ.get("SECMSGD", "build/daemon/secmsgd"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=2)
    opts = ap.parse_args()
    if os.cpu_count() < 2:
        jh.skip("needs two CPUs (journald on one of its own)")
    jh.in_private_namespace()
    os.sched_setaffinity(0, {0})  # the generator and the bare sender share CPU 0 with secmsgd
    for conf in ("journald.conf.d", "journald@%s.conf.d" % NAMESPACE):
        os.makedirs("/run/systemd/" + conf, exist_ok=True)
        with open("/run/systemd/%s/bench.conf" % conf, "w") as f:
            f.write("[Journal]\nRateLimitBurst=0\n")
    binary = os.path.abspath(opts.secmsgd)
    results = {}
    # A namespace's journald exits once idle (systemd socket-activates it
    # again; nothing does here): one is started for each run.
    with jh.Journald(cpu=1) as jd:
        estimate = 60000
        for rep in range(opts.reps):
            for label, ns in (("default", None), ("namespace " + NAMESPACE, NAMESPACE)):
                journald = jh.Journald(NAMESPACE, cpu=1).start() if ns else jd
                try:
                    bare = run_bare(journald, opts.seconds, opts.warmup, estimate)
                    estimate = max(estimate, bare["rate"])
                    ours = run_secmsgd(binary, journald, ns, opts.seconds, opts.warmup, estimate)
                finally:
                    if ns:
                        journald.stop()
                results.setdefault(label, []).append((bare, ours))
                print("rep %d %s" % (rep + 1, label))
                print("  " + row("bare native-protocol sender", bare))
                print("  " + row("secmsgd --record journal", ours))
                print("  ratio secmsgd/bare %.2f" % (ours["rate"] / bare["rate"]))
                sys.stdout.flush()
    print("\nmedians over %d runs (journald on CPU 1; secmsgd and the generator on CPU 0):" % opts.reps)
    for label, runs in results.items():
        med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        b = med([x[0]["rate"] for x in runs])
        o = med([x[1]["rate"] for x in runs])
        print("  %-22s bare %8.0f/s (journald %.1f us/entry)  secmsgd %8.0f/s (journald %.1f us/entry, "
              "secmsgd %.1f us/msg)  ratio %.2f" % (
                  label, b, med([x[0]["journald_us"] for x in runs]), o,
                  med([x[1]["journald_us"] for x in runs]), med([x[1]["secmsgd_us"] for x in runs]), o / b))
    return 0


if __name__ == "__main__":
    sys.exit(main())

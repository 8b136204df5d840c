#!/usr/bin/python3
"""Hostile load: every pattern of an attacker without the PSK at once,
against the real secmsgd, while a well-behaved client measures its round
trips and the daemon's RSS is sampled.

Attackers (each kind in a process of its own, reconnecting when closed):
  partial   TLS, then a maximum length prefix and one more byte in a later
            record, held (5 bytes that once pinned a whole frame)
  nearly    TLS, then a maximum length prefix and 60 KiB of its body, held
            (real partial input: the --max-partial-input budget sheds them)
  dribble   TLS, then a frame one byte per second (--frame-timeout ends it)
  keyupdate two keyupdate-flood programs: TLS 1.3 KeyUpdate(update_requested)
            streamed, never reading (closed as abusive)
  junk      TCP, random bytes instead of a ClientHello, again and again
  tcp       TCP connections that never send a byte (--handshake-timeout)

Fails when the client's round trip exceeds the bound at the 99th
percentile, or the daemon's RSS exceeds what secmsgd(8) states for the
connections it holds ("Worst case": per connection 32 KiB with the tuned
wolfSSL build, 96 KiB with Debian's libwolfssl, plus the partial-input
budget), or when a message of the client goes unrecorded.
Prints the figures.

  test_hostile.py [--seconds 15]      (SECMSGD, KEYUPDATE_FLOOD from the environment)
"""
import argparse
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from secmsg_harness import Daemon, built_with_asan, tls_context  # noqa: E402

MAX_FRAME = 65610            # largest frame length at the default --max-payload
# secmsgd(8), "Worst case": memory per connection without the key, by the
# wolfSSL build (Debian's libwolfssl allocates its record buffers whole).
PER_CONNECTION_KIB = {"tuned": 32, "system": 96}
PARTIAL_BUDGET = 8 << 20     # --max-partial-input of this test
COUNTS = {"partial": 150, "nearly": 200, "dribble": 40, "junk": 4, "tcp": 150}


UNDER_ASAN = built_with_asan()
SLOW = 3 if UNDER_ASAN else 1


# ------------------------------------------------------------------ attackers

def tls_connect(port, cafile):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return tls_context(cafile).wrap_socket(s, server_hostname="localhost")


def hold(conn, seconds):
    """Waits until the server closes conn or time is up; True if it closed."""
    conn.settimeout(seconds)
    try:
        return conn.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


def attacker(kind, port, cafile, seconds, count):
    """One kind of attacker: `count` connections, each reconnecting when the
    server ends it, until `seconds` have passed.  Prints how many
    connections it opened and how many the server closed."""
    end = time.time() + seconds
    opened = closed = 0
    lock = threading.Lock()

    def one():
        nonlocal opened, closed
        while time.time() < end:
            left = end - time.time()
            try:
                if kind == "tcp":
                    c = socket.create_connection(("127.0.0.1", port), timeout=10)
                elif kind == "junk":
                    c = socket.create_connection(("127.0.0.1", port), timeout=10)
                    c.sendall(os.urandom(1024))
                else:
                    c = tls_connect(port, cafile)
                with lock:
                    opened += 1
                if kind == "partial":
                    c.sendall(struct.pack(">I", MAX_FRAME))
                    time.sleep(0.05)
                    c.sendall(b"\x01")  # a later TLS record
                elif kind == "nearly":
                    c.sendall(struct.pack(">I", MAX_FRAME) + os.urandom(60 * 1024))
                if kind == "dribble":
                    frame = struct.pack(">I", MAX_FRAME) + os.urandom(MAX_FRAME)
                    gone = False
                    for b in frame:
                        if time.time() >= end:
                            break
                        c.sendall(bytes([b]))
                        if hold(c, min(1.0, max(0.01, end - time.time()))):
                            gone = True
                            break
                else:
                    gone = hold(c, max(0.01, left))
                with lock:
                    closed += gone
                c.close()
            except OSError:
                with lock:
                    closed += 1
            # A pause before the next try: a holder comes back, but this is
            # not a handshake flood (which costs a full handshake per try,
            # a different attack; secmsgd(8) says what bounds it).
            time.sleep(0.05 if kind == "junk" else 1.0)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
        time.sleep(0.002)
    for t in threads:
        t.join(seconds + 30)
    print("%s opened %d closed-by-server %d" % (kind, opened, closed), flush=True)


# ----------------------------------------------------------------------- test

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def lower_priority():
    """Attackers run at nice 10: on two cores their own TLS work would
    otherwise delay the measuring client, which is not what is measured."""
    os.nice(10)


def wolfssl_build():
    """"tuned" or "system": the wolfSSL build that secmsgd --version names."""
    out = subprocess.run([os.environ.get("SECMSGD", "secmsgd"), "--version"],
                         capture_output=True, text=True).stdout
    return "system" if "(system" in out else "tuned"


def cpu_seconds(pid):
    """utime + stime of a process (/proc/PID/stat), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_connections(pid):
    """Sockets the daemon holds (listeners included)."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--attacker", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--cafile", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--only", help="one kind of attacker (and no keyupdate unless named)")
    a = ap.parse_args()
    if a.attacker:
        attacker(a.attacker, a.port, a.cafile, a.seconds, a.count)
        return 0

    flood = os.environ.get("KEYUPDATE_FLOOD", "keyupdate-flood")
    per_connection = PER_CONNECTION_KIB[wolfssl_build()]
    args = ["--max-partial-input", str(PARTIAL_BUDGET), "--frame-timeout", "5",
            "--handshake-timeout", "3"]
    failures = []
    with Daemon(args=args) as d:
        pid = d.proc.pid
        # The well-behaved client connects first: it holds the key.
        good = d.client(timeout=10 * SLOW)
        for i in range(20):
            good.send(b"warm-up %d" % i)
            good.expect_ack(i)
        base_rss = rss_kib(pid)

        procs = []
        for kind, count in COUNTS.items():
            if a.only and kind != a.only:
                continue
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "--attacker", kind, "--port", str(d.port),
                 "--cafile", d.cafile, "--seconds", str(a.seconds), "--count", str(count)],
                stdout=subprocess.PIPE, text=True, preexec_fn=lower_priority))
        for _ in range(2 if not a.only or a.only == "keyupdate" else 0):
            procs.append(subprocess.Popen([flood, "--port", str(d.port), "--seconds", str(a.seconds)],
                                          stdout=subprocess.PIPE, text=True,
                                          preexec_fn=lower_priority))

        samples = []  # (rss KiB, sockets held)
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    samples.append((rss_kib(pid), open_connections(pid)))
                except OSError:
                    pass
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        time.sleep(1.0)  # let the attack build up
        cpu_before, t_before = cpu_seconds(pid), time.time()
        rtts = []
        end = time.time() + a.seconds - 2
        seq = good.tx_seq
        while time.time() < end:
            t = time.perf_counter()
            good.send(b"message %d while under attack" % seq)
            good.expect_ack(seq)
            rtts.append((time.perf_counter() - t) * 1000)
            seq += 1
            time.sleep(0.01)
        cpu_share = (cpu_seconds(pid) - cpu_before) / (time.time() - t_before)
        stop.set()
        sampler.join()

        reports = []
        for p in procs:
            try:
                out, _ = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            reports.append(out.strip())
        good.close()
        # Every message of the good client recorded, exactly once.
        recorded = [r for r in d.recorded()]
        log = d.log()

    rtts.sort()
    p50 = statistics.median(rtts)
    p99 = rtts[int(len(rtts) * 0.99) - 1]
    worst = rtts[-1]
    peak_rss, peak_socks = max(samples) if samples else (0, 0)
    most_socks = max(s for _, s in samples) if samples else 0
    # secmsgd(8): per connection at most PER_CONNECTION_KIB, plus the partial budget.
    rss_bound = base_rss + most_socks * per_connection + PARTIAL_BUDGET // 1024
    print("round trips: %d, median %.2f ms, p99 %.2f ms, worst %.2f ms" % (len(rtts), p50, p99, worst))
    print("RSS: %d KiB before, peak %d KiB (%.1f KiB per socket held at the peak, %d sockets; "
          "at most %d sockets); bound %d KiB" % (
              base_rss, peak_rss, (peak_rss - base_rss) / max(1, peak_socks), peak_socks,
              most_socks, rss_bound))
    for r in reports:
        print("attacker: " + r)
    print("secmsgd CPU: %.0f%% of one core over the attack; log: %d lines, %d bytes" % (
        cpu_share * 100, log.count("\n"), len(log)))

    closed = {}  # attacker kind -> connections the server ended
    for r in reports:
        f = r.split()
        if f and f[0] == "keyupdate-flood":
            closed["keyupdate"] = closed.get("keyupdate", 0) + int(f[2]) - 1
        elif len(f) == 5:
            closed[f[0]] = int(f[4])
    if len(rtts) < 100:
        failures.append("only %d round trips" % len(rtts))
    if p99 > 100 * SLOW:
        failures.append("p99 round trip %.1f ms > %d ms" % (p99, 100 * SLOW))
    if not UNDER_ASAN and peak_rss > rss_bound:
        failures.append("peak RSS %d KiB > bound %d KiB" % (peak_rss, rss_bound))
    if len(recorded) != seq:
        failures.append("%d messages sent, %d recorded" % (seq, len(recorded)))
    # Each bound did its work (the attackers saw their connections end).
    for kind, what in (("partial", "--frame-timeout"), ("nearly", "--max-partial-input"),
                       ("dribble", "--frame-timeout"), ("tcp", "--handshake-timeout"),
                       ("keyupdate", "the KeyUpdate rate"), ("junk", "the TLS failure")):
        if a.only in (None, kind) and not closed.get(kind):
            failures.append("no %s connection was ended by %s" % (kind, what))
    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

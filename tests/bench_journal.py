#!/usr/bin/python3
"""Recording benchmark: messages per second that secmsgd records into one
real systemd-journald, next to what that journald ingests from a bare
native-protocol sender of the same entries, in the same run.

journald runs in a private mount namespace (tests/harness/journald_harness.py;
rate limiting off in a drop-in there, as the unit's LogRateLimitIntervalSec=0
does), pinned to CPU 1; secmsgd and the generator share CPU 0.  On a shared
machine "a core of its own" needs more than pinning: this script, journald
and secmsgd run at nice -20 (--nice) in a session of their own (the
kernel's autogroup nice), so other jobs on those cores get what is left
over.  The load of the other jobs still changes from second to second, so
the two senders take turns feeding one journald: slices of --slice
seconds, --slices for each, alternating, each measured after a settling
time and followed by a pause in which journald empties its queue.  Each
run gets a fresh journald writing fresh journal files (on the disk, in a
directory under /var/tmp bind-mounted on /var/log/journal; --tmpfs keeps
them in memory), so no run inherits the previous one's full hash tables.
journald's datagram queue (net.unix.max_dgram_qlen) is set to 512, as
systemd sets it when it boots as PID 1, in a network namespace of the
benchmark's own (--dgram-qlen; this machine's is 10).

The generator is the Python harness's protocol code with every frame
sealed before the measured period (4 connections pipelining up to 256 MSGs
each; ACKs counted by size, then all decrypted and checked afterwards), so
that during the period it only moves bytes.  Payloads are unique, 64
printable bytes (hex), so that secmsgd's MESSAGE is the payload itself and
the bare sender can write exactly the entry secmsgd writes: MESSAGE,
SECMSG_PAYLOAD (binary form), SECMSG_SHA256, SECMSG_BYTES, SECMSG_PEER,
SECMSG_CONN, SECMSG_SEQ, SECMSG_ID, MESSAGE_ID, PRIORITY,
SYSLOG_IDENTIFIER, over its own blocking AF_UNIX datagram socket, as fast
as journald takes them (see BareSender).

Printed per run (the slices of each sender added up): entries/s; journald
CPU per entry (and entries per journald wakeup) and secmsgd CPU per
message (utime+stime of /proc/PID/stat over the period); how much of its
core each process used (journald, secmsgd, this script: generator or bare
sender), and which core was full (a process or the pair on CPU 0 at 90% or
more of its core; "neither" means other jobs took the rest); the ratio
secmsgd/bare (target >= 0.85).  Then the same into a journal namespace (a
second journald, NAME, configured with the shipped
systemd/journald@secmsgd.conf), with the bare sender on that namespace's
socket.  At the end: medians over the repetitions, with the spread
(lowest to highest).

With --instances N (N >= 2), instead: three setups, each of its own
secmsgd processes and generator connections (--connections, default 8),
taking turns in the same way (the order rotated from slice to slice): 1
secmsgd recording into the system journal's journald; N secmsgd sharing
one address and port with --reuse-port, all recording into that same
journald; N secmsgd with --reuse-port, each recording into a journal
namespace of its own (NAME-1..N, each with the shipped configuration and
its own journald: what LogNamespace=secmsgd-%i gives each secmsgd@ unit).
Nothing is pinned, as in a deployment: the scheduler places every process.
Printed per setup: recorded (acknowledged) messages/s, each instance's
CPU per message and share of the messages (and how many of the
connections the kernel gave it), each journald's CPU per entry and how
much of a core it used, how busy each core was (/proc/stat, every process
on the machine) and what was full (a journald at 90% of a core or more,
else the cores 90% busy or more); the ratios to the single instance of the
same repetition; medians at the end.

  sudo tests/bench_journal.py --secmsgd build/daemon/secmsgd [--reps 3] [--slices 6]
  sudo tests/bench_journal.py --secmsgd build/daemon/secmsgd --instances 2
  (meson test -C build --benchmark journal; --benchmark journal-instances)

Exit 77 when not root or without unshare/journald/taskset.
"""
import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "harness"))
sys.path.insert(0, HERE)
import journald_harness as jh  # noqa: E402
from bench_reuseport import holds_socket, tcp_sockets, wait_listening  # noqa: E402
from secmsg_harness import ACK, MSG, Daemon, ProtocolViolation, open_frame, parse_ack, seal  # noqa: E402

SHIPPED_NAMESPACE_CONF = os.path.join(HERE, "..", "systemd", "journald@secmsgd.conf")
CONNECTIONS = 4
WINDOW = 256
CHUNK = 64
ACK_FRAME = 158  # an ACK of seq < 10^9 ("recorded id=<32 hex>-<seq>") is 4 + 58 + 96 bytes
NAMESPACE = "secmsgbench"
SETTLE = 0.3  # seconds after a sender starts before its slice is measured
DRAIN = 0.3   # seconds after it stops, for journald to empty its queue


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
    """utime + stime of a process (all its threads), in seconds."""
    with open("/proc/%s/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / jh.CLK_TCK


def sleeps(pid):
    """How often a process went to sleep (voluntary context switches)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def payload():
    """64 unique printable bytes: secmsgd's MESSAGE is then the payload as it is."""
    return os.urandom(32).hex().encode()


def bare_entries(n):
    """n native-protocol datagrams shaped exactly like secmsgd's entries, as
    from CONNECTIONS connections taking turns (so that SECMSG_PEER,
    SECMSG_CONN and SECMSG_SEQ repeat as often as in secmsgd's)."""
    conns = [(c + 1, "127.0.0.1:%d" % (40000 + c), os.urandom(16).hex()) for c in range(CONNECTIONS)]
    out = []
    for i in range(n):
        conn, peer, conn_id = conns[i % CONNECTIONS]
        seq = i // CONNECTIONS
        p = payload()
        out.append(jh.encode_entry([
            ("MESSAGE", p), ("SECMSG_PAYLOAD", p), ("SECMSG_SHA256", hashlib.sha256(p).hexdigest()),
            ("SECMSG_BYTES", str(len(p))), ("SECMSG_PEER", peer), ("SECMSG_CONN", str(conn)),
            ("SECMSG_SEQ", str(seq)), ("SECMSG_ID", "%s-%d" % (conn_id, seq)), ("MESSAGE_ID", jh.MESSAGE_ID),
            ("PRIORITY", "6"), ("SYSLOG_IDENTIFIER", "secmsgd")], binary=("SECMSG_PAYLOAD",)))
    return out


class Sample:
    """Counters at one moment: entries so far, CPU seconds of journald,
    secmsgd and this script, journald's sleeps, /proc/stat."""

    def __init__(self, count, journald, secmsgd_pid):
        self.count = count
        self.journald = journald.cpu_seconds()
        self.secmsgd = proc_cpu(secmsgd_pid)
        self.script = proc_cpu("self")
        self.sleeps = sleeps(journald.pid)
        self.cpus = cpu_times()
        self.at = time.monotonic()


class Tally:
    """One sender's slices added up."""

    def __init__(self):
        self.n = self.wall = self.journald = self.secmsgd = self.script = self.sleeps = 0
        self.busy = []

    def add(self, s0, s1):
        self.n += s1.count - s0.count
        self.wall += s1.at - s0.at
        self.journald += s1.journald - s0.journald
        self.secmsgd += s1.secmsgd - s0.secmsgd
        self.script += s1.script - s0.script
        self.sleeps += s1.sleeps - s0.sleeps
        self.busy.append(busy(s0.cpus, s1.cpus))

    def result(self, with_secmsgd):
        n, wall = max(1, self.n), max(1e-9, self.wall)
        use = {"journald": self.journald / wall, "secmsgd": self.secmsgd / wall if with_secmsgd else 0.0,
               "script": self.script / wall}
        return {"rate": self.n / wall, "n": self.n, "journald_us": self.journald / n * 1e6,
                "secmsgd_us": self.secmsgd / n * 1e6 if with_secmsgd else None,
                "entries_per_wakeup": self.n / max(1, self.sleeps), "use": use,
                "busy": {c: sum(b[c] for b in self.busy) / len(self.busy) for c in self.busy[0]},
                "full": full_core(use, with_secmsgd)}


def full_core(use, with_secmsgd):
    """Which core was the limit: journald's (CPU 1), or CPU 0 (secmsgd and
    this script together), at 90% or more of a core; else "neither"."""
    cpu0 = use["script"] + (use["secmsgd"] if with_secmsgd else 0)
    if use["journald"] >= 0.9:
        return "journald (cpu1)"
    if cpu0 >= 0.9:
        return "cpu0 (%s)" % ("secmsgd %.0f%% + generator %.0f%%" % (100 * use["secmsgd"], 100 * use["script"])
                              if with_secmsgd else "bare sender")
    return "neither"


class BareSender(threading.Thread):
    """Pre-built entries over a blocking datagram socket connected to
    journald's, while `go` is set.  With the default send buffer the
    sender waits for room in it, and the kernel wakes it once half of it is
    free: for dozens of datagrams at a time.  (A send buffer larger than
    journald's queue, as libsystemd sets, makes it wait on the queue
    instead, woken for every datagram journald reads; that costs journald
    about a third more CPU per entry here, so it would flatter secmsgd.)"""

    def __init__(self, journald, count):
        super().__init__(daemon=True)
        self.entries = bare_entries(count)
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.connect(journald.socket)
        self.go = threading.Event()
        self.stop = threading.Event()
        self.sent = 0

    def run(self):
        while not self.stop.is_set() and self.sent < len(self.entries):
            if not self.go.is_set():
                self.go.wait(0.05)
                continue
            self.s.send(self.entries[self.sent])
            self.sent += 1

    def count(self):
        return self.sent

    def done(self):
        return self.sent >= len(self.entries)


class Flow(threading.Thread):
    """One connection: pre-sealed MSGs, pipelined up to WINDOW while `go` is
    set, ACKs counted by size."""

    def __init__(self, d, count, go):
        super().__init__(daemon=True)
        self.c = d.client(timeout=20)
        self.local_port = self.c.tls.getsockname()[1]
        self.frames = [seal(self.c.keys, MSG, seq, payload()) for seq in range(count)]
        self.go = go
        self.sent = 0
        self.received = bytearray()
        self.stop = threading.Event()

    def acked(self):
        return len(self.received) // ACK_FRAME

    def run(self):
        tls = self.c.tls
        while not self.stop.is_set():
            if self.go.is_set() and self.sent < len(self.frames) and self.sent - self.acked() <= WINDOW - CHUNK:
                tls.sendall(b"".join(self.frames[self.sent:self.sent + CHUNK]))
                self.sent += min(CHUNK, len(self.frames) - self.sent)
                continue
            if self.acked() >= self.sent:  # nothing in flight
                if self.sent >= len(self.frames):
                    return
                self.go.wait(0.05)
                continue
            data = tls.recv(65536)
            if not data:
                return
            self.received += data

    def check(self):
        """Every frame received is the right ACK (tag, seq, note)."""
        buf = bytes(self.received[:self.acked() * ACK_FRAME])
        for i in range(len(buf) // ACK_FRAME):
            try:
                ftype, seq, p = open_frame(self.c.keys, buf[i * ACK_FRAME:(i + 1) * ACK_FRAME])
            except ProtocolViolation as e:  # for example an ERROR frame: another size
                return "frame %d of %d: %s" % (i, len(buf) // ACK_FRAME, e)
            acked, digest, note = parse_ack(p)
            if ftype != ACK or seq != i or acked != i or not note.startswith("recorded id="):
                return "frame %d is not the ACK of MSG %d" % (i, i)
        return None


def run_interleaved(binary, namespace, opts, expected_rate):
    """One fresh journald; the bare sender and secmsgd take turns feeding it,
    `opts.slices` slices of `opts.slice` seconds each, so that both meet the
    same machine load.  Each slice is measured after a settling time and
    followed by a pause in which the sender's backlog drains."""
    journald = fresh_journald(namespace)
    args = ["--record-timeout", "30"] + (["--journal-namespace", namespace] if namespace else [])
    # Each sender runs for its slices and their settling times only.
    total = expected_rate * (opts.slice + SETTLE) * opts.slices * 1.3 + 20000
    tallies = {"bare": Tally(), "secmsgd": Tally()}
    notes = []
    try:
        with Daemon(binary=binary, record="journal", args=args, wrapper=["taskset", "-c", "0"]) as d:
            go = threading.Event()
            flows = [Flow(d, int(total / CONNECTIONS), go) for _ in range(CONNECTIONS)]
            bare = BareSender(journald, int(total))
            senders = {"bare": (bare, bare.go, bare.count),
                       "secmsgd": (None, go, lambda: sum(f.acked() for f in flows))}
            for t in flows + [bare]:
                t.start()
            for i in range(opts.slices):
                for who in (("bare", "secmsgd") if i % 2 == 0 else ("secmsgd", "bare")):
                    _, switch, count = senders[who]
                    switch.set()
                    time.sleep(SETTLE)
                    s0 = Sample(count(), journald, d.proc.pid)
                    time.sleep(opts.slice)
                    s1 = Sample(count(), journald, d.proc.pid)
                    switch.clear()
                    tallies[who].add(s0, s1)
                    time.sleep(DRAIN)
            for t in flows + [bare]:
                t.stop.set()
            for t in flows + [bare]:
                t.join(20)
            notes += [e for e in (f.check() for f in flows) if e]
            if any(f.acked() >= len(f.frames) for f in flows) or bare.done():
                notes.append("a sender ran out of entries (raise the estimate)")
            for f in flows:
                f.c.close()
    finally:
        journald.stop()
    out = {who: t.result(who == "secmsgd") for who, t in tallies.items()}
    if notes:
        out["secmsgd"]["note"] = "; ".join(notes)
    return out["bare"], out["secmsgd"]


# ------------------------------------------------------------ --instances N

class Setup:
    """One way of running secmsgd in the instances mode: `n` instances on one
    port (each with --reuse-port when n > 1, sharing one set of
    credentials), instance k recording into journalds[k % len(journalds)];
    `connections` generator connections, each told which instance the
    kernel gave it."""

    def __init__(self, label, binary, n, journalds, connections, total):
        self.label, self.journalds, self.n = label, journalds, n
        self.daemons = []
        for k in range(n):
            ns = journalds[k % len(journalds)].namespace
            args = (["--record-timeout", "30"] + (["--reuse-port"] if n > 1 else [])
                    + (["--journal-namespace", ns] if ns else []))
            d = Daemon(binary=binary, record="journal", args=args,
                       port=self.daemons[0].port if self.daemons else None)
            if self.daemons:  # the first one's credentials, so any connection fits any instance
                d.creds, d.psk, d.cafile = self.daemons[0].creds, self.daemons[0].psk, self.daemons[0].cafile
            self.daemons.append(d.start(wait=False))
        self.go = threading.Event()
        self.flows = []
        try:
            self.wait_listening()
            # The instances do not serve their connections alike (some get
            # several times the mean), so each gets more than its part.
            self.flows = [Flow(self.daemons[0], int(1.5 * total / connections), self.go)
                          for _ in range(connections)]
            self.owner = [self.owner_of(f) for f in self.flows]
        except BaseException:
            self.kill()
            raise
        self.tally = GroupTally()

    def kill(self):
        """After a failure: SIGKILL, then the daemons' own clean-up (their directories)."""
        for d in self.daemons:
            if d.proc and d.proc.poll() is None:
                d.proc.kill()
                d.__exit__(None, None, None)

    def wait_listening(self):
        """Until each instance holds a listening socket of its own on the port."""
        try:
            dead = wait_listening(self.daemons[0].port, [d.proc for d in self.daemons], 30)
        except TimeoutError as e:
            raise RuntimeError("%s: %s" % (self.label, e))
        for d in self.daemons:
            if d.proc is dead:
                raise RuntimeError("secmsgd exited at start:\n" + d.log())

    def owner_of(self, flow):
        """The index of the instance that accepted the flow's connection."""
        inodes = tcp_sockets(self.daemons[0].port, peer_port=flow.local_port)
        for k, d in enumerate(self.daemons):
            if holds_socket(d.proc.pid, inodes):
                return k
        raise RuntimeError("%s: no instance holds the connection from port %d" % (self.label, flow.local_port))

    def counts(self):
        """Messages acknowledged so far, per instance."""
        out = [0] * self.n
        for f, k in zip(self.flows, self.owner):
            out[k] += f.acked()
        return out

    def sample(self):
        return GroupSample(self.counts, [d.proc.pid for d in self.daemons], self.journalds)

    def finish(self):
        """Stops the flows and the instances; problems seen, if any."""
        for f in self.flows:
            f.stop.set()
        for f in self.flows:
            f.join(20)
        notes = [e for e in (f.check() for f in self.flows) if e]
        out = sum(f.acked() >= len(f.frames) for f in self.flows)
        if out:  # the others still fill the journald; more than half out would not
            notes.append("%d of %d connections ran out of messages%s" % (
                out, len(self.flows), " (raise the estimate)" if 2 * out > len(self.flows) else ""))
        for f in self.flows:
            f.c.close()
        for d in self.daemons:
            d.__exit__(None, None, None)
        return notes


class GroupSample:
    """Counters at one moment: messages per instance, CPU seconds of each
    instance, each journald and this script, /proc/stat."""

    def __init__(self, counts, secmsgd_pids, journalds):
        self.counts = counts()
        self.secmsgd = [proc_cpu(pid) for pid in secmsgd_pids]
        self.journald = [j.cpu_seconds() for j in journalds]
        self.script = proc_cpu("self")
        self.cpus = cpu_times()
        self.at = time.monotonic()


class GroupTally:
    """One setup's slices added up."""

    def __init__(self):
        self.wall = self.script = 0
        self.counts = self.secmsgd = self.journald = None
        self.busy = []

    def add(self, s0, s1):
        def plus(acc, a, b):
            return [x + (y1 - y0) for x, y0, y1 in zip(acc or [0] * len(a), a, b)]
        self.counts = plus(self.counts, s0.counts, s1.counts)
        self.secmsgd = plus(self.secmsgd, s0.secmsgd, s1.secmsgd)
        self.journald = plus(self.journald, s0.journald, s1.journald)
        self.wall += s1.at - s0.at
        self.script += s1.script - s0.script
        self.busy.append(busy(s0.cpus, s1.cpus))

    def result(self, n_journalds):
        wall, total = max(1e-9, self.wall), max(1, sum(self.counts))
        # journald j takes the entries of instances j, j + n_journalds, ...
        entries = [max(1, sum(self.counts[j::n_journalds])) for j in range(n_journalds)]
        use = {"journald": [c / wall for c in self.journald], "secmsgd": [c / wall for c in self.secmsgd],
               "generator": self.script / wall}
        cores = {c: sum(b[c] for b in self.busy) / len(self.busy) for c in self.busy[0]}
        return {"rate": sum(self.counts) / wall, "share": [c / total for c in self.counts],
                "secmsgd_us": [cpu / max(1, c) * 1e6 for cpu, c in zip(self.secmsgd, self.counts)],
                "journald_us": [cpu / e * 1e6 for cpu, e in zip(self.journald, entries)],
                "use": use, "busy": cores, "full": full_cores(use, cores)}


def full_cores(use, cores):
    """What was full: a journald at 90% or more of a core; else the cores
    90% or more busy (/proc/stat: every process, this benchmark's and the
    machine's other jobs); else "neither"."""
    full = ["journald %d" % (j + 1) for j, u in enumerate(use["journald"]) if u >= 0.9]
    full = full or ["cpu%d" % c for c, b in sorted(cores.items()) if b >= 0.9]
    return " and ".join(full) if full else "neither"


def run_instances(binary, n, opts, estimates):
    """One repetition of the instances mode: fresh journalds (the system
    journal's, and one namespace per instance), the three setups (1
    instance; n instances into the one journald; n instances, each into its
    own namespace), taking turns in slices as the senders of the default
    mode do, the order rotated from slice to slice."""
    clear_journal_files()
    journalds, setups, streams = [], [], []
    try:
        shared = jh.Journald().start()
        journalds.append(shared)
        own = []
        for k in range(n):
            own.append(jh.Journald("%s-%d" % (NAMESPACE, k + 1)).start())
            journalds.append(own[-1])
            streams.append(keep_alive(own[-1]))
        plan = ((INSTANCE_LABELS[0], 1, [shared]), (INSTANCE_LABELS[1] % n, n, [shared]),
                (INSTANCE_LABELS[2] % (n, n), n, own))
        for label, count, js in plan:
            total = estimates.get(label, 30000 * len(js)) * (opts.slice + SETTLE) * opts.slices * 1.3 + 20000
            setups.append(Setup(label, binary, count, js, opts.connections, total))
        for st in setups:
            for f in st.flows:
                f.start()
        for i in range(opts.slices):
            for st in setups[i % len(setups):] + setups[:i % len(setups)]:
                st.go.set()
                time.sleep(SETTLE)
                s0 = st.sample()
                time.sleep(opts.slice)
                s1 = st.sample()
                st.go.clear()
                st.tally.add(s0, s1)
                time.sleep(DRAIN)
        out = {}
        for st in setups:
            notes = st.finish()
            out[st.label] = st.tally.result(len(st.journalds))
            out[st.label]["connections"] = [st.owner.count(k) for k in range(st.n)]
            if notes:
                out[st.label]["note"] = "; ".join(notes)
        return out
    finally:
        for st in setups:
            st.kill()
        for x in streams:
            x.close()
        for j in journalds:
            j.stop()


def keep_alive(journald):
    """A log stream to a namespace's journald, held open: such a journald
    exits after 30 s without one (in a unit, the daemon's own standard error
    is that stream), and setting up the generator takes longer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.path.join(os.path.dirname(journald.socket), "stdout"))
    s.sendall(b"secmsgbench\n\n6\n0\n0\n0\n0\n")  # identifier, unit, priority, prefix, forwards
    return s


INSTANCE_LABELS = ("1 instance, 1 journald", "%d instances, 1 journald", "%d instances, %d journalds")


def each(xs, fmt):
    return ", ".join(fmt % x for x in xs)


def instances_row(label, r):
    return ("%-27s %7.0f/s  secmsgd %s us/msg (shares %s; connections %s)  journald %s us/entry"
            "  of a core: journald %s, secmsgd %s, generator %.0f%%  full: %s  (/proc/stat: %s)%s") % (
        label, r["rate"], each(r["secmsgd_us"], "%.1f"), each([100 * x for x in r["share"]], "%.0f%%"),
        each(r["connections"], "%d"), each(r["journald_us"], "%.1f"),
        each([100 * u for u in r["use"]["journald"]], "%.0f%%"),
        each([100 * u for u in r["use"]["secmsgd"]], "%.0f%%"), 100 * r["use"]["generator"], r["full"],
        " ".join("cpu%d %.0f%%" % (c, 100 * v) for c, v in sorted(r["busy"].items())),
        ("  [" + r["note"] + "]") if r.get("note") else "")


def instances_summary(runs, labels):
    base = labels[0]
    for label in labels:
        rs = [r[label] for r in runs]
        print("  %s:" % label)
        print("    recorded msg/s      %s" % spread([r["rate"] for r in rs], "%.0f"))
        if label != base:
            print("    ratio to (%s)  %s" % (base, spread([r[label]["rate"] / r[base]["rate"] for r in runs], "%.2f")))
        for k in range(len(rs[0]["secmsgd_us"])):
            print("    secmsgd %d           %s us/msg, share %s" % (
                k + 1, spread([r["secmsgd_us"][k] for r in rs], "%.1f"), spread([r["share"][k] for r in rs], "%.2f")))
        for j in range(len(rs[0]["journald_us"])):
            print("    journald %d          %s us/entry, %s of a core" % (
                j + 1, spread([r["journald_us"][j] for r in rs], "%.1f"),
                spread([100 * r["use"]["journald"][j] for r in rs], "%.0f%%")))
        for c in sorted(rs[0]["busy"]):
            print("    cpu%d busy           %s" % (c, spread([100 * r["busy"][c] for r in rs], "%.0f%%")))
        print("    full: %s" % ", ".join(r["full"] for r in rs))


def private_network(qlen):
    """A network namespace of this script's own (loopback up), where
    net.unix.max_dgram_qlen, journald's datagram queue, can be set as
    systemd sets it when it boots as PID 1 (512) without touching the
    machine's.  Must run before any thread is started."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        jh.skip("unshare(CLONE_NEWNET): " + os.strerror(ctypes.get_errno()))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with open("/proc/sys/net/unix/max_dgram_qlen", "w") as f:
        f.write(str(qlen))


def give_priority(nice):
    """This script, and every process it starts, at `nice` against the
    machine's other jobs.  With sched_autogroup (the kernel's default), a
    process's nice counts only within its session's group, and each session
    (a shell, a build) is one group: so this script starts a session of its
    own and sets the group's nice (/proc/self/autogroup), and its own."""
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
    except OSError:
        pass  # no autogroup: the process nice below is what counts
    os.setpriority(os.PRIO_PROCESS, 0, nice)


def fresh_journald(namespace):
    """A new journald (pinned to CPU 1) on empty journal files."""
    clear_journal_files()
    return jh.Journald(namespace, cpu=1).start()


def clear_journal_files():
    for name in os.listdir("/var/log/journal"):
        shutil.rmtree(os.path.join("/var/log/journal", name), ignore_errors=True)


def configure(journal_dir, namespaces):
    """journald.conf drop-ins inside the private namespace (the shipped one
    for each journal namespace), and where the journal files go."""
    drop_ins = {"journald.conf.d": "[Journal]\nRateLimitBurst=0\n"}
    with open(SHIPPED_NAMESPACE_CONF) as f:
        shipped = f.read()
    for name in namespaces:
        drop_ins["journald@%s.conf.d" % name] = shipped
    for conf, text in drop_ins.items():
        os.makedirs("/run/systemd/" + conf, exist_ok=True)
        with open("/run/systemd/%s/bench.conf" % conf, "w") as f:
            f.write(text)
    if journal_dir:
        subprocess.run(["mount", "--bind", journal_dir, "/var/log/journal"], check=True)


def fmt_use(r):
    return " ".join("%s %.0f%%" % (k, 100 * v) for k, v in r["use"].items() if v or k != "secmsgd")


def row(label, r):
    return ("%-28s %7.0f/s  journald %5.1f us/entry (%.0f per wakeup)  secmsgd %s  of a core: %s  full: %s"
            "  (/proc/stat: %s)%s") % (
        label, r["rate"], r["journald_us"] or 0, r["entries_per_wakeup"],
        "%5.1f us/msg" % r["secmsgd_us"] if r["secmsgd_us"] else "   -        ",
        fmt_use(r), r["full"], " ".join("cpu%d %.0f%%" % (c, 100 * v) for c, v in sorted(r["busy"].items())),
        ("  [" + r["note"] + "]") if r.get("note") else "")


def spread(xs, fmt):
    xs = sorted(xs)
    return (fmt + " (" + fmt + " to " + fmt + ")") % (xs[len(xs) // 2], xs[0], xs[-1])


def summary(label, runs):
    bare = [b for b, _ in runs]
    ours = [o for _, o in runs]
    print("  %s:" % label)
    print("    secmsgd/bare rate   %s" % spread([o["rate"] / b["rate"] for b, o in runs], "%.2f"))
    print("    bare sender         %s entries/s, journald %s us/entry" % (
        spread([b["rate"] for b in bare], "%.0f"), spread([b["journald_us"] for b in bare], "%.1f")))
    print("    secmsgd             %s msg/s, journald %s us/entry, secmsgd %s us/msg" % (
        spread([o["rate"] for o in ours], "%.0f"), spread([o["journald_us"] for o in ours], "%.1f"),
        spread([o["secmsgd_us"] for o in ours], "%.1f")))
    print("    journald CPU per entry, secmsgd/bare  %s" % spread(
        [o["journald_us"] / b["journald_us"] for b, o in runs], "%.2f"))
    print("    full core: bare %s; secmsgd %s" % (
        ", ".join(b["full"] for b in bare), ", ".join(o["full"] for o in ours)))


def instances_main(binary, opts):
    n = opts.instances
    print("journal files on %s; nothing pinned; secmsgd, journald and the generator at nice %d "
          "(their own autogroup); net.unix.max_dgram_qlen %d; %d generator connections per setup" % (
              "tmpfs" if opts.tmpfs else "the disk", opts.nice, opts.dgram_qlen, opts.connections))
    labels = (INSTANCE_LABELS[0], INSTANCE_LABELS[1] % n, INSTANCE_LABELS[2] % (n, n))
    estimates, runs = {}, []
    for rep in range(opts.reps):
        out = run_instances(binary, n, opts, estimates)
        runs.append(out)
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        print("rep %d (load average %s)" % (rep + 1, load))
        for label in labels:
            estimates[label] = max(estimates.get(label, 0), out[label]["rate"])
            print("  " + instances_row(label, out[label]))
        print("  ratios to (%s): %s" % (labels[0], ", ".join(
            "%s %.2f" % (label, out[label]["rate"] / out[labels[0]]["rate"]) for label in labels[1:])))
        sys.stdout.flush()
    print("\nmedian (lowest to highest) over %d runs; the system journal's journald for the first two, "
          "namespaces %s-1..%d for the last:" % (opts.reps, NAMESPACE, n))
    instances_summary(runs, labels)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--secmsgd", default=os.environ.get("SECMSGD", "build/daemon/secmsgd"))
    ap.add_argument("--slice", type=float, default=1.0, help="seconds per measured slice (default 1)")
    ap.add_argument("--slices", type=int, default=6, help="slices per sender and run (default 6)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--nice", type=int, default=-20, help="niceness of this script and what it starts (default -20)")
    ap.add_argument("--dgram-qlen", type=int, default=512,
                    help="net.unix.max_dgram_qlen (default 512, as systemd sets it at boot)")
    ap.add_argument("--tmpfs", action="store_true", help="journal files in memory, not on the disk")
    ap.add_argument("--instances", type=int, default=0, metavar="N",
                    help="instead: 1 secmsgd, N with --reuse-port into one journald, and N each into "
                         "a journal namespace of its own (nothing pinned)")
    ap.add_argument("--connections", type=int, default=8,
                    help="generator connections per setup with --instances (default 8)")
    opts = ap.parse_args()
    if os.cpu_count() < 2:
        jh.skip("needs two CPUs (journald on one of its own)")
    if not shutil.which("taskset"):
        jh.skip("taskset not found")
    if not shutil.which("ip"):
        jh.skip("ip not found")
    jh.in_private_namespace()
    private_network(opts.dgram_qlen)
    # The generator and the bare sender share CPU 0 with secmsgd; the
    # threads started from here inherit the niceness.  With --instances
    # nothing is pinned: the scheduler places the processes, as on a
    # machine running secmsgd@N.
    if not opts.instances:
        os.sched_setaffinity(0, {0})
    give_priority(opts.nice)
    journal_dir = None if opts.tmpfs else tempfile.mkdtemp(prefix="secmsg-bench-journal-", dir="/var/tmp")
    binary = os.path.abspath(opts.secmsgd)
    results = {}
    try:
        configure(journal_dir, [NAMESPACE] + ["%s-%d" % (NAMESPACE, k + 1) for k in range(opts.instances)])
        if opts.instances:
            return instances_main(binary, opts)
        print("journal files on %s; journald, secmsgd and the generator at nice %d (their own autogroup); "
              "net.unix.max_dgram_qlen %d" % ("tmpfs" if opts.tmpfs else "the disk (" + journal_dir + ")",
                                              opts.nice, opts.dgram_qlen))
        estimate = 40000
        for rep in range(opts.reps):
            for label, ns in (("default journal", None), ("namespace " + NAMESPACE, NAMESPACE)):
                bare, ours = run_interleaved(binary, ns, opts, estimate)
                estimate = max(estimate, bare["rate"], ours["rate"])
                results.setdefault(label, []).append((bare, ours))
                print("rep %d %s" % (rep + 1, label))
                print("  " + row("bare native-protocol sender", bare))
                print("  " + row("secmsgd --record journal", ours))
                print("  ratio secmsgd/bare %.2f" % (ours["rate"] / bare["rate"]))
                sys.stdout.flush()
    finally:
        if journal_dir:
            subprocess.run(["umount", "/var/log/journal"])
            shutil.rmtree(journal_dir, ignore_errors=True)
    print("\nmedian (lowest to highest) over %d runs; journald on CPU 1, secmsgd and the generator on CPU 0:"
          % opts.reps)
    for label, runs in results.items():
        summary(label, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

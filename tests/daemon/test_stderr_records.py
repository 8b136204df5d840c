#!/usr/bin/python3
"""--record stderr when stderr is slow, full or failing: the real secmsgd,
its fd 2 a pipe (or /dev/full) that this test holds the other end of.

  test_stderr_records.py CASE      CASE: slow, unread, full (default: all)

  slow    a pipe whose write end is O_NONBLOCK (set by the parent before the
          daemon starts: the description is shared) and a slow reader; lines
          larger than PIPE_BUF, so the daemon must finish partial writes;
          other connections opening and closing meanwhile add log lines
  unread  a pipe nobody reads for a while: new connections still complete
          their handshake at once; messages beyond the pipe's capacity wait and
          get ERROR 6 after --record-timeout; once the reader reads, recording
          resumes and every ACKed message's line is there
  full    /dev/full: every message gets ERROR 6, none is ACKed, the daemon
          stays up and serves new connections
  shared  a heavy connection (1,500 messages pipelined) fills an unread
          pipe, four more send 300 each, then the pipe is read slower than
          they send: while all five have messages to record, none is
          starved and none takes over (by the order of the lines: the heavy
          one at most twice the others' mean, the four within 20%)

In every case, over everything the pipe carried: each line is whole and is
either a record line (the harness's MESSAGE_LINE, its payload matching its
size and SHA-256) or a log line ("secmsgd: ..."), never a cut or two glued
together; ACK <=> line: every ACKed message has exactly one line, with its
id (the ACK note's) and its exact payload; a message answered ERROR 6 has
none (the lines of `unread` fit in PIPE_BUF, so none can be half written when
its deadline passes).

In `shared` the heavy connection records about 1.4 times as many as each
other while all five wait (runs of six against their one): a connection
has one record queued at a time, and the first one served after each
drain takes the room the drain left.  One message per connection per turn
would make it 1.0, but one ACK per send and a loop pass per message
doubled secmsgd's CPU per recorded message (bench_journal, 5.6 against
10.8 us) for the same rate; not done.

On the code before the recorder rework (bc1a0c5^), stderr was written with
blocking stdio: `slow` loses or cuts lines on EAGAIN yet ACKs them, `unread`
blocks the whole loop (the second handshake times out) and `full` ACKs
messages whose line went nowhere.
"""

import fcntl
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from secmsg_harness import MESSAGE_LINE, Daemon, built_with_asan, unescape  # noqa: E402
from journald_harness import exchange, kinds, read_answers, run_cases  # noqa: E402

LOG_LINE = re.compile(rb"^secmsgd: [^\n]*$")


class StderrDaemon(Daemon):
    """secmsgd --record stderr with fd 2 on the given descriptor."""

    def __init__(self, stderr_fd, args=()):
        super().__init__(record="stderr", args=args, stderr_path="/dev/null")
        self.stderr_fd = stderr_fd

    def start(self, wait=True):
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "JOURNAL_STREAM")}
        self.logf = open(os.devnull, "ab")  # what Daemon.stop() closes
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr_fd, env=env)
        if wait:
            self.wait_listening()
        return self


class Reader(threading.Thread):
    """Reads a pipe `chunk` bytes at a time, `delay` seconds apart, once
    `go` is set; until EOF or `stop_at` (time.monotonic())."""

    def __init__(self, fd, chunk=65536, delay=0.0, go=True):
        super().__init__(daemon=True)
        self.fd, self.chunk, self.delay = fd, chunk, delay
        self.go = threading.Event()
        if go:
            self.go.set()
        self.data = bytearray()
        self.stop_at = time.monotonic() + 120

    def run(self):
        self.go.wait(120)
        os.set_blocking(self.fd, False)
        while time.monotonic() < self.stop_at:
            try:
                b = os.read(self.fd, self.chunk)
            except BlockingIOError:
                time.sleep(0.005)
                continue
            if not b:
                return
            self.data += b
            if self.delay:
                time.sleep(self.delay)

    def finish(self, timeout=20):
        self.go.set()
        self.stop_at = min(self.stop_at, time.monotonic() + timeout)
        self.join(timeout + 1)
        return bytes(self.data)


def text_payloads(tag, n, size):
    """Printable payloads (no escaping: the line is about size + 200 bytes)."""
    return [(b"%s %d " % (tag, i) + os.urandom(size).hex().encode())[:size] for i in range(n)]


def check_lines(data, clients):
    """Failures of the whole-line and ACK <=> line rules over `data` (all the
    pipe carried); clients: [(client, answers)]."""
    failures = []
    if data and not data.endswith(b"\n"):
        failures.append("output ends inside a line: %r" % data[-80:])
    records = {}
    lines = data.split(b"\n")[:-1]
    for n, line in enumerate(lines):
        if line.startswith(b"message "):
            m = MESSAGE_LINE.match(line.decode("utf-8", "replace"))
            if not m:
                failures.append("line %d: a cut or glued record line: %r" % (n, line[:120]))
                continue
            p = unescape(m["text"])
            if len(p) != int(m["bytes"]) or not m["id"].endswith("-" + m["seq"]):
                failures.append("line %d: record line inconsistent: %r" % (n, line[:120]))
            records.setdefault(m["id"], []).append(p)
        elif not LOG_LINE.match(line) or b"message conn=" in line:
            failures.append("line %d: neither a record line nor a whole log line: %r" % (n, line[:160]))
    for c, answers in clients:
        acks = [a for a in answers if a.kind == "ack"]
        prefix = acks[0].id.rsplit("-", 1)[0] if acks else None
        for a in answers:
            if a.kind == "ack":
                got = records.get(a.id, [])
                if len(got) != 1 or got[0] != c.sent[a.seq]:
                    failures.append("ACKed %s: %d lines%s" % (a.id, len(got), " (payload differs)" if got else ""))
            elif a.code == 6 and prefix and records.get(prefix + "-%d" % a.seq):
                failures.append("seq %d answered ERROR 6 but its line was written" % a.seq)
    if os.environ.get("SECMSG_SHOW_LOG"):
        print("\n".join(l.decode(errors="replace")[:160] for l in lines if not l.startswith(b"message ")))
    if not failures:
        print("  %d lines: %d record lines, %d log lines, all whole" %
              (len(lines), sum(len(v) for v in records.values()), len(lines) - sum(len(v) for v in records.values())))
    return failures



def stopped(rc, reader, clients):
    """After the daemon stopped: its exit status, then check_lines over all
    the pipe carried."""
    failures = [] if rc == 0 else ["secmsgd exited with %s" % rc]
    return failures + check_lines(reader.finish(), clients)


def case_slow():
    failures = []
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
    reader = Reader(r, chunk=4096, delay=0.01)  # about 400 KB/s
    reader.start()
    d = StderrDaemon(w).start()
    os.close(w)
    clients = []
    try:
        c = d.client()
        mixed = text_payloads(b"slow", 120, 6000) + [os.urandom(3000) for _ in range(20)]
        for p in mixed:
            c.send(p)
        # Log lines meanwhile (the summary lines of authenticated connections
        # are not rate-limited): connections that record one message each.
        for i in range(15):
            o = d.client()
            one = exchange(o, [b"other %d" % i])
            clients.append((o, one))
            if kinds(one) != "A":
                failures.append("other connection %d: %s, expected an ACK" % (i, kinds(one)))
            o.close()
        answers = read_answers(c, len(mixed), 10)
        clients.append((c, answers))
        if kinds(answers) != "A" * len(mixed):
            failures.append("answers %s, expected %d ACKs" % (kinds(answers), len(mixed)))
        c.close()
    finally:
        rc = d.stop()
    return failures + stopped(rc, reader, clients)


def case_unread():
    failures = []
    timeout = 1.0
    r, w = os.pipe()
    reader = Reader(r, go=False)
    reader.start()
    d = StderrDaemon(w, args=["--record-timeout", str(timeout)]).start()
    os.close(w)
    clients = []
    try:
        a = d.client()
        # 3000-byte lines (under PIPE_BUF: each written whole or not at
        # all): the 64 KiB pipe holds about 16 of them.
        t_sent = time.monotonic()
        for p in text_payloads(b"unread", 22, 2900):
            a.send(p)
        first = read_answers(a, 22, 0.5)  # the ACKs of what fits, then a stall
        t0 = time.monotonic()
        b = d.client()
        handshake = time.monotonic() - t0
        if handshake >= 1.0:
            failures.append("pipe full: a new client's handshake took %.2f s" % handshake)
        b_answers = exchange(b, text_payloads(b"late client", 1, 2900), timeout + 2)
        first += read_answers(a, 22 - len(first), timeout + 2)
        acked = [x for x in first if x.kind == "ack"]
        if not acked or len(acked) == 22 or first[len(acked)].kind != "error" or first[len(acked)].code != 6:
            failures.append("pipe full: answers %s, expected ACKs then ERROR 6" % kinds(first))
        late = [x for x in first if x.kind == "error"]
        if late and late[0].at - t_sent < 0.8 * timeout:
            failures.append("pipe full: ERROR 6 after %.2f s, before --record-timeout %g s"
                            % (late[0].at - t_sent, timeout))
        if kinds(b_answers) != "E6":
            failures.append("pipe full: the new client's message got %s, expected ERROR 6" % kinds(b_answers))
        reader.go.set()
        more = exchange(a, text_payloads(b"read again", 5, 2900), 5)
        if kinds(more) != "AAAAA":
            failures.append("reader reading again: %s, expected 5 ACKs" % kinds(more))
        clients += [(a, first + more), (b, b_answers)]
        print("unread: %s | new client handshake %.3f s, %s | after reading %s"
              % (kinds(first), handshake, kinds(b_answers), kinds(more)))
        a.close()
        b.close()
    finally:
        rc = d.stop()
    return failures + stopped(rc, reader, clients)


def case_full():
    failures = []
    with open("/dev/full", "wb") as full:
        d = StderrDaemon(full.fileno()).start()
    try:
        for n in range(2):  # and again on a new connection: the daemon is still there
            c = d.client()
            answers = exchange(c, [b"nowhere %d" % i for i in range(5)])
            if kinds(answers) != "E6" * 5:
                failures.append("connection %d: %s, expected 5 x ERROR 6" % (n, kinds(answers)))
            elif "No space" not in answers[0].reason:
                failures.append("ERROR 6 reason does not say ENOSPC: %s" % answers[0].reason)
            c.close()
        if d.proc.poll() is not None:
            failures.append("secmsgd exited (%s) with stderr on /dev/full" % d.proc.returncode)
        print("full: %s" % kinds(answers))
    finally:
        rc = d.stop()
    if rc is None or rc < 0:
        failures.append("secmsgd ended by signal %s" % rc)
    return failures


def case_shared():
    if built_with_asan(os.environ.get("SECMSGD")):
        # Then the daemon, not the pipe, is the slowest part: the recorder is
        # not what the connections share (seen: uneven shares in CI's ASan run).
        print("shared: skipped under AddressSanitizer (the recorder is not the bottleneck)")
        sys.exit(77)
    failures = []
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
    reader = Reader(r, chunk=4096, delay=0.002, go=False)  # then slower than the daemon
    reader.start()
    d = StderrDaemon(w, args=["--record-timeout", "60"]).start()
    os.close(w)
    # While nobody reads, a first connection fills the pipe; four more
    # send theirs; then the pipe is read, slower than they send.
    n, count, heavy = 4, 300, 1500
    clients = [d.client() for _ in range(n + 1)]
    answers = [None] * (n + 1)

    def run(k):
        answers[k] = exchange(clients[k], text_payloads(b"shared %d" % k, heavy if k == 0 else count, 200), 60)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n + 1)]
    try:
        threads[0].start()
        time.sleep(0.5)
        for t in threads[1:]:
            t.start()
        time.sleep(0.5)
        reader.go.set()
        for t in threads:
            t.join(90)
        for k, a in enumerate(answers):
            want = heavy if k == 0 else count
            if a is None or kinds(a) != "A" * want:
                failures.append("connection %d: %s, expected %d ACKs" % (k, kinds(a or [])[:40], want))
        for c in clients:
            c.close()
    finally:
        rc = d.stop()
    failures += stopped(rc, reader, list(zip(clients, [a or [] for a in answers])))
    data = reader.finish()  # the reader has ended: what it read
    # The record lines are in the order of recording.  From the first line
    # of the four to the last line of the first of them to be done, each
    # of the five recorded a fair share: none starved, none took over.
    order = [MESSAGE_LINE.match(l.decode("utf-8", "replace"))["id"].rsplit("-", 1)[0]
             for l in data.split(b"\n") if l.startswith(b"message ")]
    if len(order) == heavy + n * count:
        first = order[0]  # the heavy connection's, written before the others came
        four = [i for i, conn in enumerate(order) if conn != first]
        last = {order[i]: i for i in four}  # each of the four's last line
        window = order[four[0]:min(last.values()) + 1]
        share = {conn: window.count(conn) for conn in set(window)}
        others = [share.get(conn, 0) for conn in last]
        ratio = share.get(first, 0) / (sum(others) / n)
        print("shared: while all five had messages to record, the heavy connection recorded %d, "
              "the four %s: %.1f times their mean" % (share.get(first, 0), sorted(others), ratio))
        if len(last) != n or ratio > 2 or min(others) < 0.8 * max(others):
            failures.append("connections did not share the recorder: %d for the heavy "
                            "connection against %s" % (share.get(first, 0), sorted(others)))
    return failures


CASES = {"slow": case_slow, "unread": case_unread, "full": case_full, "shared": case_shared}


if __name__ == "__main__":
    sys.exit(run_cases(CASES, __doc__))

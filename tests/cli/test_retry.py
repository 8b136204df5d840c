#!/usr/bin/python3
"""Black-box tests of the client that does not give up (secmsg --retry-for):
the real secmsg against the real secmsgd over real sockets, the daemon
killed, restarted, unable to record, or gone for good.

Run one class:  SECMSG=build/cli/secmsg SECMSGD=build/daemon/secmsgd \\
                    python3 tests/cli/test_retry.py TestRestarts
"""

import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from secmsg_harness import MESSAGE_LINE, Daemon, free_port, make_credentials, unescape  # noqa: E402
import client_harness as ch  # noqa: E402

EX_OK, EX_TEMPFAIL, EX_PROTOCOL, EX_NOPERM, EX_UNAVAILABLE = 0, 75, 76, 77, 69
RETRY_LINE = re.compile(r"(?m)^secmsg: .*: trying again in [0-9.]+ s \(giving up in")


def kill_and_restart(d, down=1.0, stop_first=0.0):
    """SIGKILL, `down` seconds with nothing listening, then the same daemon
    (port, credentials, log file) again.  With stop_first, SIGSTOP that
    long before: the client's messages are then surely in flight."""
    if stop_first:
        d.proc.send_signal(signal.SIGSTOP)
        time.sleep(stop_first)
    d.proc.kill()
    d.proc.wait()
    d.logf.close()
    time.sleep(down)
    d.start()


def records(text):
    """[((daemon run, conn), payload)] of the --record stderr lines in
    `text` (a log that restarts append to); a line cut by SIGKILL matches no
    MESSAGE_LINE and is left out."""
    out = []
    run = 0
    for line in text.split("\n"):
        if re.match(r"secmsgd: secmsgd \S+ listening on ", line):
            run += 1
        m = MESSAGE_LINE.match(line)
        if m:
            out.append(((run, int(m["conn"])), unescape(m["text"])))
    return out


class Client:
    """secmsg in pipe mode with its standard input a pipe the test writes."""

    def __init__(self, args, env):
        self.proc = subprocess.Popen(ch.command(args), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def feed(self, lines, pace=0.0, batch=1):
        """Writes `lines` (batch at a time, `pace` seconds apart) in a
        thread, then closes the pipe."""
        def write():
            try:
                for i in range(0, len(lines), batch):
                    self.proc.stdin.write(b"".join(l + b"\n" for l in lines[i:i + batch]))
                    self.proc.stdin.flush()
                    time.sleep(pace)
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        self.writer = threading.Thread(target=write, daemon=True)
        self.writer.start()

    def read_stderr_until(self, text, timeout):
        """Standard error as read until `text` appears in it (or the
        timeout, or its end), decoded; finish() returns the rest."""
        got = b""
        deadline = time.monotonic() + timeout
        fd = self.proc.stderr.fileno()
        while text not in got and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            got += chunk
        return got.decode(errors="replace")

    def finish(self, timeout=120):
        """(exit status, stderr text), once the input is all written."""
        try:
            if getattr(self, "writer", None):
                self.writer.join(timeout)  # communicate() would close the input under it
            if self.proc.stdin and self.proc.stdin.closed:
                self.proc.stdin = None  # closed here: nothing for communicate() to flush
            _, err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, err.decode(errors="replace")


class RetryTest(unittest.TestCase):
    def setUp(self):
        self.env = ch.clean_env()
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.__exit__(None, None, None)

    def daemon(self, **kw):
        d = Daemon(**kw)
        self.daemons.append(d)
        return d.start()

    def piping(self, d, args, lines):
        """A client of `d` that has sent `lines` (its input still open),
        once the last one is recorded."""
        c = Client(ch.trust_args(d) + list(args), self.env)
        c.proc.stdin.write(b"".join(l + b"\n" for l in lines))
        c.proc.stdin.flush()
        self.assertTrue(d.wait_log(re.escape(lines[-1].decode())), d.log()[-2000:])
        return c

    def wait_records(self, d, n, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(records(d.log())) >= n:
                return
            time.sleep(0.02)
        self.fail("fewer than %d records after %d s:\n%s" % (n, timeout, d.log()[-2000:]))


class TestRestarts(RetryTest):
    def test_5000_lines_through_two_sigkills_and_restarts(self):
        d = self.daemon()
        lines = [b"retry line %05d" % i for i in range(5000)]
        c = Client(ch.trust_args(d), self.env)
        c.feed(lines, pace=0.01, batch=10)  # about 1,000 lines a second
        self.wait_records(d, 1000)
        kill_and_restart(d, stop_first=0.3)
        self.wait_records(d, 3000)
        kill_and_restart(d, stop_first=0.3)
        status, err = c.finish()
        self.assertEqual(status, EX_OK, err[-3000:])
        self.assertIn("5000 of 5000 messages acknowledged", err)
        # Each kill found messages in flight, and they were sent again.
        self.assertGreaterEqual(len(re.findall(r"(?m)^secmsg: .*; [1-9]\d* messages? not "
                                               r"acknowledged .*: trying again", err)), 2, err)

        got = records(d.log())
        payloads = [p for _, p in got]
        missing = [l for l in lines if l not in set(payloads)]
        self.assertEqual(missing, [], "lines never recorded")
        # Within each connection, in input order: what is sent again comes
        # first, then the rest.
        by_conn = {}
        for conn, p in got:
            by_conn.setdefault(conn, []).append(int(p.split()[-1]))
        runs = [v for v in by_conn.values()]
        for v in runs:
            self.assertEqual(v, sorted(v), "out of order on one connection")
        print("\n  %d records for %d lines (%d recorded twice) over %d connections; "
              "%d retry lines" % (len(payloads), len(lines), len(payloads) - len(set(payloads)),
                                  len(by_conn), len(RETRY_LINE.findall(err))), file=sys.stderr)

    def test_daemon_stopped_is_waited_for_and_then_gets_the_rest(self):
        # SIGTERM: ERROR 7 after every message fully received is recorded.
        d = self.daemon()
        c = self.piping(d, [], [b"before %d" % i for i in range(100)])
        d.stop()
        d.start()
        c.feed([b"after %d" % i for i in range(100)])
        status, err = c.finish()
        self.assertEqual(status, EX_OK, err)
        self.assertIn("200 of 200 messages acknowledged", err)
        self.assertRegex(err, "shutting down|closed the connection")
        rec = [p for _, p in records(d.log())]
        self.assertEqual(sorted(set(rec)), sorted([b"before %d" % i for i in range(100)] +
                                                  [b"after %d" % i for i in range(100)]))


class TestNotRecorded(RetryTest):
    def test_error_6_is_retried_until_recording_works_again(self):
        # The daemon's stderr is a FIFO that nobody reads at first: once its
        # 64 KiB are full, messages wait --record-timeout and get ERROR 6.
        fifo = os.path.join(tempfile.mkdtemp(prefix="secmsg-fifo-"), "stderr")
        os.mkfifo(fifo)
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        # 3000-byte lines: about 16 fit; the daemon answers each of the rest in
        # turn, --record-timeout apart.
        d = self.daemon(stderr_path=fifo, args=["--record-timeout", "0.3"])
        lines = [b"unrecorded %02d " % i + b"x" * 3000 for i in range(25)]
        c = Client(ch.trust_args(d) + ["-v"], self.env)
        c.feed(lines)
        # Until the client has been refused (ERROR 6) at least twice.
        err = b""
        deadline = time.monotonic() + 60
        while len(re.findall(rb"did not record", err)) < 2 and time.monotonic() < deadline:
            chunk = os.read(c.proc.stderr.fileno(), 65536)
            if not chunk:
                break
            err += chunk
        self.assertGreaterEqual(len(re.findall(rb"did not record", err)), 2, err.decode())
        # Now the pipe is read: recording resumes.
        data = bytearray()
        done = threading.Event()

        def read():
            os.set_blocking(rfd, True)
            while not done.is_set():
                b = os.read(rfd, 65536)
                if not b:
                    return
                data.extend(b)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        status, rest = c.finish(timeout=90)
        err = err.decode(errors="replace") + rest
        if os.environ.get("SECMSG_SHOW_CLIENT"):
            print(err, file=sys.stderr)
        self.assertEqual(status, EX_OK, err[-3000:])
        self.assertIn("25 of 25 messages acknowledged", err)
        self.assertIn("NOT recorded by the server (ERROR 6", err)  # -v: per message
        d.stop()
        done.set()
        reader.join(10)
        os.close(rfd)
        rec = [p for _, p in records(bytes(data).decode(errors="replace"))]
        self.assertEqual(sorted(set(rec)), sorted(lines))


class TestNoRetry(RetryTest):
    """What cannot pass is not retried: the existing status, at once."""

    def assertNoRetry(self, args, status, want):
        d = self.daemon()
        start = time.monotonic()
        r = ch.run(ch.trust_args(d) + list(args), env=self.env)
        took = time.monotonic() - start
        err = r.stderr.decode(errors="replace")
        self.assertEqual(r.returncode, status, err)
        self.assertIn(want, err)
        self.assertIsNone(RETRY_LINE.search(err), err)
        self.assertLess(took, 5, "took %.1f s" % took)
        d.stop()
        # One connection from the client (the other is the harness's probe).
        probe = r"closed: tls -, in 0 frames 0 bytes, out 0 frames 0 bytes, [^,]*, reason client-closed$"
        closed = [l for l in re.findall(r"(?m)^secmsgd: conn \d+ .*closed.*$", d.log())
                  if not re.search(probe, l)]
        self.assertEqual(len(closed), 1, d.log())
        self.assertEqual(records(d.log()), [])

    def test_wrong_psk(self):
        other = tempfile.mkdtemp(prefix="secmsg-other-")
        make_credentials(other)
        self.assertNoRetry(["--psk-file", os.path.join(other, "psk"), "-m", "x"], EX_PROTOCOL,
                           "authentication")

    def test_wrong_psk_in_pipe_mode(self):
        other = tempfile.mkdtemp(prefix="secmsg-other-")
        make_credentials(other)
        d = self.daemon()
        c = Client(ch.trust_args(d) + ["--psk-file", os.path.join(other, "psk")], self.env)
        c.feed([b"a", b"b", b"c"])
        status, err = c.finish(timeout=20)
        self.assertEqual(status, EX_PROTOCOL, err)
        self.assertIsNone(RETRY_LINE.search(err), err)

    def test_wrong_pin(self):
        other = tempfile.mkdtemp(prefix="secmsg-other-")
        make_credentials(other)
        self.assertNoRetry(["--pin", ch.pin_of(os.path.join(other, "tls.crt")), "-m", "x"],
                           EX_NOPERM, "does not match --pin")

    def test_untrusted_certificate(self):
        other = tempfile.mkdtemp(prefix="secmsg-other-")
        make_credentials(other)
        self.assertNoRetry(["--ca-file", os.path.join(other, "tls.crt"), "-m", "x"],
                           EX_NOPERM, "not trusted")

    def test_host_that_does_not_exist(self):
        r = ch.run(["--host", "no-such-host.invalid", "--insecure", "--psk-file",
                    os.path.join(self.daemon().creds, "psk"), "-m", "x"], env=self.env)
        self.assertEqual(r.returncode, EX_UNAVAILABLE, r.stderr)
        self.assertIsNone(RETRY_LINE.search(r.stderr.decode()), r.stderr)


class TestGivingUp(RetryTest):
    def test_retry_for_0_exits_at_the_first_failure(self):
        d = self.daemon()
        c = self.piping(d, ["--retry-for", "0"], [b"first %d" % i for i in range(50)])
        start = time.monotonic()
        kill_and_restart(d, down=0)
        status, err = c.finish(timeout=30)  # its input still open
        self.assertEqual(status, EX_TEMPFAIL, err)
        self.assertLess(time.monotonic() - start, 5)
        self.assertIsNone(RETRY_LINE.search(err), err)
        self.assertIn("closed the connection", err)
        self.assertIn("50 of 50 messages acknowledged", err)

    def test_retry_for_0_from_the_config_file(self):
        home = tempfile.mkdtemp(prefix="secmsg-home-")
        os.makedirs(os.path.join(home, ".config", "secmsg"))
        with open(os.path.join(home, ".config", "secmsg", "config"), "w") as f:
            f.write("retry-for = 0\n")
        d = self.daemon()
        r = ch.run(ch.trust_args(d) + ["--port", str(free_port()), "-m", "x"],
                   env=ch.clean_env(home))
        self.assertEqual(r.returncode, EX_UNAVAILABLE, r.stderr)
        self.assertIsNone(RETRY_LINE.search(r.stderr.decode()), r.stderr)

    def test_daemon_that_never_comes_back(self):
        d = self.daemon()
        c = self.piping(d, ["--retry-for", "3"], [b"kept %d" % i for i in range(10)])
        d.proc.kill()
        d.proc.wait()
        # The client sees the idle connection end before it reads more: wait
        # for it to say so, or the new lines may race the end of the stream
        # (then they go out on the dead connection and are retried as
        # unacknowledged, a path test_5000_lines... covers).
        early = c.read_stderr_until(b"connecting again for the next one", timeout=20)
        start = time.monotonic()
        c.proc.stdin.write(b"lost 1\nlost 2\n")
        c.proc.stdin.close()
        status, err = c.finish(timeout=30)
        err = early + err
        took = time.monotonic() - start
        self.assertEqual(status, EX_TEMPFAIL, err)
        self.assertGreaterEqual(took, 2.9, err)
        self.assertLess(took, 6, err)
        # The connection was idle when it was lost: the next line reconnects,
        # and waits for its ACK before reading more.
        self.assertIn("every message sent was acknowledged: connecting again for the next one", err)
        self.assertRegex(err, r"gave up after trying for 3[0-9.]* s \(--retry-for\): cannot connect")
        self.assertIn("1 message not acknowledged (line 11)", err)
        self.assertGreaterEqual(len(RETRY_LINE.findall(err)), 3, err)  # 0.25, 0.5, 1, ... s
        self.assertIn("10 of 11 messages acknowledged", err)

    def test_nothing_listening_from_the_start(self):
        start = time.monotonic()
        r = ch.run(["--port", str(free_port()), "--insecure", "--psk-file",
                    os.path.join(self.daemon().creds, "psk"), "--retry-for", "2", "-m", "x"],
                   env=self.env)
        took = time.monotonic() - start
        err = r.stderr.decode()
        self.assertEqual(r.returncode, EX_TEMPFAIL, err)
        self.assertGreaterEqual(took, 1.9, err)
        self.assertLess(took, 5, err)
        self.assertIn("Connection refused", err)
        self.assertIn("gave up after", err)

    def test_one_shot_waits_for_a_daemon_that_starts_late(self):
        port = free_port()
        creds = tempfile.mkdtemp(prefix="secmsg-late-")
        d = Daemon(port=port, workdir=creds)
        self.daemons.append(d)
        c = subprocess.Popen(ch.command(ch.trust_args(d) + ["-m", "early bird"]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        first = c.stderr.readline().decode()  # refused at least once before the daemon starts
        self.assertRegex(first, "Connection refused.*trying again")
        d.start()
        out, err = c.communicate(timeout=30)
        self.assertEqual(c.returncode, EX_OK, first + err.decode())
        self.assertRegex(out.decode(), r"^seq 0: recorded")
        self.assertTrue(d.wait_log("early bird"))


class TestInteractiveRetry(RetryTest):
    def test_idle_server_restart_then_the_next_message_reconnects(self):
        d = self.daemon()
        t = ch.Terminal(ch.trust_args(d), env=self.env)
        try:
            t.read_until(b"> ")
            t.type(b"one\n")
            t.read_until(b"[ack seq 0]")
            d.stop()  # SIGTERM: ERROR 7 while nothing is in flight
            t.read_until(b"connecting again for the next one")
            t.read_until(b"> ")
            d.start()
            t.type(b"two\n")
            self.assertIn("[ack seq 0] recorded", t.read_until(b"> ", timeout=20))
            t.type(b"exit\n")
            self.assertEqual(t.wait(), EX_OK, t.screen.decode(errors="replace"))
        finally:
            t.close()
        self.assertTrue(d.wait_log('text="two"'))
        self.assertEqual([p for _, p in records(d.log())], [b"one", b"two"])


if __name__ == "__main__":
    unittest.main()

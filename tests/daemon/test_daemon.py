#!/usr/bin/python3
"""Black-box tests of secmsgd: the real binary over real sockets, driven by
the independent Python implementation in tests/harness/secmsg_harness.py.

Run one class:   SECMSGD=build/daemon/secmsgd python3 test_daemon.py TestBasics
Under valgrind:  SECMSGD_WRAPPER="valgrind --error-exitcode=99 -q" ...
"""

import hashlib
import os
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from secmsg_harness import (ACK, ERROR, MSG, NO_SEQ, Client, Daemon, Keys,  # noqa: E402
                            ProtocolViolation, built_with_asan, make_credentials, seal,
                            tls_context)

UNDER_VALGRIND = "valgrind" in os.environ.get("SECMSGD_WRAPPER", "")


UNDER_ASAN = built_with_asan()
SLOW = 6 if UNDER_VALGRIND else 2 if UNDER_ASAN else 1  # time scale for bounds
MEMORY_TOOL = UNDER_VALGRIND or UNDER_ASAN  # RSS figures mean nothing under them


class DaemonTest(unittest.TestCase):
    """Each test gets its own daemon; it must exit 0 (valgrind: no errors)."""

    args = ()
    record = "stderr"

    def start_daemon(self, **kw):
        kw.setdefault("args", self.args)
        kw.setdefault("record", self.record)
        d = Daemon(**kw)
        d.start()
        self.daemons.append(d)
        return d

    def setUp(self):
        self.daemons = []
        self.d = self.start_daemon()

    def tearDown(self):
        try:
            for d in self.daemons:
                if d.proc and d.proc.poll() is None:
                    rc = d.stop(timeout=30 * SLOW)
                else:
                    rc = d.proc.returncode if d.proc else 0
                    d.logf.close()
                if d.expect_rc is not None:
                    self.assertEqual(rc, d.expect_rc, "secmsgd exit status; log:\n" + d.log()[-4000:])
        finally:
            if not os.environ.get("SECMSG_KEEP_TEST_DIRS"):
                for d in self.daemons:
                    shutil.rmtree(d.dir, ignore_errors=True)


Daemon.expect_rc = 0


def raw_frame_with_length(length, filler=b"\0"):
    return struct.pack(">I", length) + filler * 8


class TestBasics(DaemonTest):
    def test_one_message_recorded_then_acked(self):
        c = self.d.client()
        payload = b"hello \xe2\x9c\x93 world\n\x00\x01binary\xff"
        c.send(payload)
        self.assertRegex(c.expect_ack(0), r"^recorded id=[0-9a-f]{32}-0$")
        rec = self.d.recorded()
        self.assertEqual(len(rec), 1)
        self.assertEqual(rec[0][1:], (0, payload))
        self.assertEqual(c.tls.version(), "TLSv1.3")
        self.assertEqual(c.tls.selected_alpn_protocol(), "secmsg/1")
        c.close()
        # One summary line per connection, with its counts and reason.
        self.assertTrue(self.d.wait_log(r"closed: tls TLSv1\.3 \S+, in 1 frames \d+ bytes, out 1 frames "
                                        r"\d+ bytes, duration \d+\.\d{3}s, reason client-closed"),
                        self.d.log())

    def test_sizes_and_empty_message(self):
        c = self.d.client()
        sizes = [0, 1, 15, 16, 17, 4096, 65536]
        payloads = [os.urandom(n) for n in sizes]
        for p in payloads:
            c.send(p)
        for i in range(len(sizes)):
            c.expect_ack(i)
        self.assertEqual([r[2] for r in self.d.recorded()], payloads)

    def test_pipelining_many_before_reading(self):
        c = self.d.client()
        n = 2000
        frames = b"".join(c.frame_for(b"msg %d" % i, seq=i) for i in range(n))
        for i in range(n):
            c.sent[i] = b"msg %d" % i
        c.tx_seq = n
        c.send_raw(frames)  # every frame in as few writes as possible
        for i in range(n):
            c.expect_ack(i)
        self.assertEqual(len(self.d.recorded()), n)

    def test_concurrent_clients(self):
        errors = []
        n_clients, n_msgs = 16, 100

        def run(k):
            try:
                c = self.d.client()
                for i in range(n_msgs):
                    c.send(b"client %d message %d" % (k, i))
                    if i % 10 == 9:  # a window of 10 in flight
                        for j in range(i - 9, i + 1):
                            c.expect_ack(j)
                c.close()
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        threads = [threading.Thread(target=run, args=(k,)) for k in range(n_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        rec = self.d.recorded()
        self.assertEqual(len(rec), n_clients * n_msgs)
        self.assertEqual(len({r[0] for r in rec}), n_clients)

    def test_a_thousand_connections_at_once(self):
        """One thread, one epoll: many clients open together, each served."""
        import resource
        n = 1000 if not MEMORY_TOOL else 200
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < n + 100:
            self.skipTest("RLIMIT_NOFILE too low")
        # The daemon inherits the raised limit from this process.
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * n)), hard))
        d = self.start_daemon()
        rss0 = d.rss_kib()
        clients = [d.client() for _ in range(n)]
        for k, c in enumerate(clients):
            c.send(b"from client %d" % k)
        for c in clients:
            c.expect_ack(0)
        rss = d.rss_kib()
        self.assertEqual(len(d.recorded()), n)
        for c in clients:
            c.close()
        self.assertTrue(d.wait_log(r"reason client-closed", count=n, timeout=30 * SLOW))
        print("\n%d TLS connections open: RSS %d -> %d KiB (%.1f KiB each)"
              % (n, rss0, rss, (rss - rss0) / n), file=sys.stderr)

    def test_one_byte_at_a_time(self):
        c = self.d.client()
        c.tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frame = c.frame_for(b"dribbled")
        c.sent[0] = b"dribbled"
        c.tx_seq = 1
        for b in frame:
            c.send_raw(bytes([b]))  # one TLS record per byte
            time.sleep(0.001)
        c.expect_ack(0)
        self.assertEqual(self.d.recorded()[0][2], b"dribbled")

    def test_session_ticket_resumption(self):
        ctx = tls_context(self.d.cafile)
        c = Client(self.d.port, self.d.cafile, self.d.psk, ctx=ctx)
        c.send(b"first")
        c.expect_ack(0)  # the ticket arrived before the ACK
        session = c.tls.session
        self.assertTrue(session.has_ticket)
        c.close()
        c = Client(self.d.port, self.d.cafile, self.d.psk, ctx=ctx, session=session)
        self.assertTrue(c.tls.session_reused)
        c.send(b"resumed")
        c.expect_ack(0)

    def test_ed25519_certificate(self):
        d = self.start_daemon(key_type="ed25519")
        c = d.client()
        c.send(b"over an Ed25519 certificate")
        c.expect_ack(0)

    def test_alpn_other_protocol_refused_none_accepted(self):
        ctx = tls_context(self.d.cafile, alpn=("http/1.1",))
        with self.assertRaises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            c = Client(self.d.port, self.d.cafile, self.d.psk, ctx=ctx)
            c.send(b"x")
            c.expect_ack(0)
        c = Client(self.d.port, self.d.cafile, self.d.psk, ctx=tls_context(self.d.cafile, alpn=()))
        c.send(b"no alpn")
        c.expect_ack(0)
        self.assertIsNone(c.tls.selected_alpn_protocol())

    def test_tls12_only_client_refused_by_default(self):
        ctx = tls_context(self.d.cafile, max_version=ssl.TLSVersion.TLSv1_2)
        with self.assertRaises((ssl.SSLError, ConnectionResetError)):
            Client(self.d.port, self.d.cafile, self.d.psk, ctx=ctx)
        self.assertTrue(self.d.wait_log(r"TLS handshake failed"))
        # Still serving.
        c = self.d.client()
        c.send(b"after")
        c.expect_ack(0)

    def test_tls12_allowed_with_min_version(self):
        d = self.start_daemon(args=["--tls-min-version", "1.2"])
        ctx = tls_context(d.cafile, max_version=ssl.TLSVersion.TLSv1_2)
        c = Client(d.port, d.cafile, d.psk, ctx=ctx)
        self.assertEqual(c.tls.version(), "TLSv1.2")
        name, _, _ = c.tls.cipher()
        self.assertTrue(name.startswith("ECDHE-"), name)
        self.assertTrue("GCM" in name or "CHACHA20" in name, name)
        c.send(b"over TLS 1.2")
        c.expect_ack(0)
        # Even then, no CBC or static-RSA suites.
        ctx = tls_context(d.cafile, max_version=ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:AES128-GCM-SHA256")
        with self.assertRaises((ssl.SSLError, ConnectionResetError)):
            Client(d.port, d.cafile, d.psk, ctx=ctx)

    def test_garbage_and_plain_http_on_the_tls_port(self):
        # (Random bytes behind an invalid record type: random bytes alone may
        # look like the start of a long record, and wait for the timeout.)
        for junk in (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", b"\0" * 5 + os.urandom(4096),
                     b"\x16\x03\x01\x00\x05hello"):
            s = socket.create_connection(("127.0.0.1", self.d.port), timeout=10)
            s.sendall(junk)
            s.settimeout(10)
            try:
                while s.recv(4096):
                    pass  # maybe an alert, then the close
            except ConnectionResetError:
                pass
            s.close()
        self.assertTrue(self.d.wait_log(r"reason tls-failed", count=3), self.d.log())
        c = self.d.client()
        c.send(b"still serving")
        c.expect_ack(0)

    def test_ipv6_dual_stack_and_several_listeners(self):
        from secmsg_harness import free_port
        port2, port3 = free_port(), free_port()
        d = self.start_daemon(args=["--listen", "[::]:%d" % port2, "--listen", "127.0.0.1:%d" % port3],
                              port=port2)
        for host, port in (("127.0.0.1", port2), ("::1", port2), ("127.0.0.1", port3)):
            c = Client(port, d.cafile, d.psk, host=host)
            c.send(b"via " + host.encode())
            c.expect_ack(0)
            c.close()
        rec = d.recorded()
        self.assertTrue(any(r[2] == b"via ::1" for r in rec))
        self.assertTrue(d.wait_log(r"peer \[::1\]:\d+ closed"))
        self.assertTrue(d.wait_log(r"peer 127\.0\.0\.1:\d+ closed"), d.log())

    def test_socket_activation(self):
        from secmsg_harness import free_port
        port = free_port()
        d = Daemon(args=self.args, record=self.record, port=port)
        cmd = ["systemd-socket-activate", "-l", "127.0.0.1:%d" % port] + d.command()
        # --port is ignored under socket activation; the activator owns the socket.
        d.wrapper = []
        d.command = lambda: cmd
        d.start(wait=False)
        self.daemons.append(d)
        time.sleep(0.3)
        c = d.client(timeout=10 * SLOW)  # the first connection starts secmsgd (under valgrind: slowly)
        c.send(b"activated")
        c.expect_ack(0)
        self.assertTrue(d.wait_log(r"listening on 127\.0\.0\.1:%d \(socket activation\)" % port), d.log())


class TestErrors(DaemonTest):
    args = ("--max-payload", "1024")

    def expect_fatal(self, c, code, ref=None):
        got, got_ref, reason = c.expect_error()
        self.assertEqual(got, code, reason)
        if ref is not None:
            self.assertEqual(got_ref, ref)
        self.assertTrue(c.expect_close(), "server did not close after ERROR %d" % code)
        return reason

    def test_error_1_bad_length(self):
        c = self.d.client()
        c.send(b"good")
        c.expect_ack(0)
        c.send_raw(raw_frame_with_length(75))  # not 58 + 16k
        self.expect_fatal(c, 1, NO_SEQ)
        self.assertTrue(self.d.wait_log(r"malformed frame \(ERROR 1\)"))
        self.assertTrue(self.d.wait_log(r"reason protocol-error"))

    def test_error_1_bad_padding_under_a_valid_tag(self):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        import hmac
        c = self.d.client()
        k = c.keys
        iv = os.urandom(16)
        block = b"A" * 15 + b"\x07"  # claims 7 bytes of padding, which are not 0x07
        enc = Cipher(algorithms.AES(k.enc), modes.CBC(iv)).encryptor()
        ct = enc.update(block) + enc.finalize()
        body = struct.pack(">BBQ", 1, MSG, 0) + iv + ct
        head = struct.pack(">I", len(body) + 32) + body
        c.send_raw(head + hmac.new(k.mac, head, hashlib.sha256).digest())
        self.expect_fatal(c, 1)

    def test_error_2_bad_tag(self):
        c = self.d.client()
        f = bytearray(c.frame_for(b"tampered"))
        f[40] ^= 0x01
        c.send_raw(bytes(f))
        self.expect_fatal(c, 2, NO_SEQ)
        self.assertEqual(self.d.recorded(), [])

    def test_error_2_wrong_psk(self):
        c = Client(self.d.port, self.d.cafile, os.urandom(32))
        c.send(b"wrong key")
        # The reply is sealed under the server's key: the client cannot open it.
        with self.assertRaises(ProtocolViolation):
            c.read_frame()

    def test_error_3_sequence(self):
        c = self.d.client()
        c.send(b"zero")
        c.expect_ack(0)
        c.send_raw(seal(c.keys, MSG, 5, b"skipped ahead"))
        self.expect_fatal(c, 3)
        c = self.d.client()
        c.send_raw(seal(c.keys, MSG, 0, b"a"))
        c.send_raw(seal(c.keys, MSG, 0, b"replayed"))
        f = c.read_frame()
        self.assertEqual(f[0], ACK)
        self.expect_fatal(c, 3)

    def test_error_4_version_and_type(self):
        c = self.d.client()
        c.send_raw(seal(c.keys, MSG, 0, b"v2", version=2))
        self.expect_fatal(c, 4)
        c = self.d.client()
        c.send_raw(seal(c.keys, ACK, 0, b"\0" * 40))
        self.expect_fatal(c, 4)

    def test_error_5_too_large(self):
        c = self.d.client()
        c.send(os.urandom(1024))  # exactly the maximum is fine
        c.expect_ack(0)
        c.send(os.urandom(1030))  # same length field as 1024, caught after opening
        self.expect_fatal(c, 5, 1)
        c = self.d.client()
        c.send_raw(struct.pack(">I", 58 + 16 * 4096))  # judged from the length alone
        self.expect_fatal(c, 5, NO_SEQ)
        c = self.d.client()
        c.send_raw(struct.pack(">I", 58 + 16 * 268435450))  # 4 GiB announced costs nothing
        self.expect_fatal(c, 5)
        self.assertEqual(len(self.d.recorded()), 1)

    def test_error_6_not_recorded_connection_stays_open(self):
        d = self.start_daemon(stderr_path="/dev/full")  # every write to stderr fails
        c = d.client()
        for i in range(3):
            c.send(b"cannot be recorded %d" % i)
        for i in range(3):
            code, ref, reason = c.expect_error()
            self.assertEqual((code, ref), (6, i), reason)
        c.send(b"still open")
        self.assertEqual(c.expect_error()[:2], (6, 3))

    def test_abrupt_disconnects_mid_frame(self):
        for how in ("fin", "rst", "tcp-fin"):
            c = self.d.client()
            f = c.frame_for(b"x" * 500)
            c.send_raw(f[:200])
            time.sleep(0.05)
            if how == "rst":
                c.tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.tls.close()
            elif how == "tcp-fin":
                c.tls.shutdown(socket.SHUT_RDWR)
                c.tls.close()
            else:  # close_notify in the middle of a frame
                try:
                    c.tls.unwrap()
                except (ssl.SSLError, OSError):
                    pass
                c.close()
        self.assertTrue(self.d.wait_log(r"reason client-gone-mid-frame", count=3), self.d.log())
        c = self.d.client()
        c.send(b"after the abrupt ones")
        c.expect_ack(0)
        self.assertEqual([r[2] for r in self.d.recorded()], [b"after the abrupt ones"])


class TestLimits(DaemonTest):
    args = ("--handshake-timeout", str(0.5 * SLOW), "--idle-timeout", str(1.0 * SLOW),
            "--max-connections", "4")

    def test_handshake_timeout(self):
        s = socket.create_connection(("127.0.0.1", self.d.port))
        t0 = time.time()
        s.settimeout(10 * SLOW)
        self.assertEqual(s.recv(100), b"")
        took = time.time() - t0
        self.assertGreater(took, 0.3 * SLOW)
        self.assertLess(took, 3 * SLOW)
        self.assertTrue(self.d.wait_log(r"reason handshake-timeout"))

    def test_idle_timeout(self):
        c = self.d.client()
        c.send(b"then silence")
        c.expect_ack(0)
        t0 = time.time()
        self.assertTrue(c.expect_close(timeout=10 * SLOW))
        took = time.time() - t0
        self.assertGreater(took, 0.5 * SLOW)
        self.assertLess(took, 4 * SLOW)
        self.assertTrue(self.d.wait_log(r"reason idle-timeout"))

    def test_activity_keeps_a_connection_open(self):
        c = self.d.client()
        for i in range(6):
            c.send(b"tick %d" % i)
            c.expect_ack(i)
            time.sleep(0.4 * SLOW)  # 2.4 s in all, idle timeout 1 s

    def test_max_connections(self):
        clients = [self.d.client() for _ in range(4)]
        for c in clients:
            c.send(b"hi")
            c.expect_ack(0)
        with self.assertRaises((ssl.SSLError, ConnectionResetError, OSError)):
            extra = self.d.client(timeout=5 * SLOW)
            extra.send(b"over the limit")
            extra.expect_ack(0)
        self.assertTrue(self.d.wait_log(r"--max-connections 4 reached"))
        clients.pop().close()
        time.sleep(0.2)
        deadline = time.time() + 5 * SLOW
        while True:  # the slot frees once the server has seen the close
            try:
                c = self.d.client()
                c.send(b"after one left")
                c.expect_ack(0)
                break
            except (ssl.SSLError, OSError, ProtocolViolation):
                if time.time() > deadline:
                    raise
                time.sleep(0.1)


class TestBackpressure(DaemonTest):
    def test_client_that_never_reads_acks(self):
        """Input pauses at the output bound, memory stays bounded, others are
        served; once the client reads, every ACK arrives in order."""
        rss0 = self.d.rss_kib()
        slow = self.d.client()
        slow.tls.settimeout(None)
        payload = b"p" * 16  # small MSGs, so the ACKs outweigh them
        n = 200000
        sent = [0]

        def flood():
            try:
                batch = 500
                for start in range(0, n, batch):
                    data = b"".join(slow.frame_for(payload, seq=i) for i in range(start, start + batch))
                    slow.send_raw(data)
                    sent[0] = start + batch
            except OSError:
                pass

        t = threading.Thread(target=flood, daemon=True)
        t.start()

        def handled():  # MSGs the daemon has taken in (recorded) so far
            return self.d.log().count("message conn=%d " % conn_id)

        conn_id = 2  # the harness's readiness probe was connection 1
        # Input pauses: the count of handled MSGs stops growing while the
        # flood is still unsent (kernel buffers absorb a few MB first).
        last, stable_since, deadline = -1, time.time(), time.time() + 30 * SLOW
        while time.time() < deadline:
            now = handled()
            if now != last:
                last, stable_since = now, time.time()
            elif time.time() - stable_since > 1.0 * SLOW:
                break
            time.sleep(0.1)
        paused_at = handled()
        self.assertGreater(paused_at, 0)
        self.assertLess(paused_at, n, "the daemon never paused this client's input")
        self.assertLess(sent[0], n, "the flood was never slowed down")
        # Others keep being served promptly.
        other = self.d.client()
        for i in range(50):
            t0 = time.time()
            other.send(b"other %d" % i)
            other.expect_ack(i)
            self.assertLess(time.time() - t0, 2 * SLOW)
        rss = self.d.rss_kib()
        if not MEMORY_TOOL:  # valgrind's and ASan's own bookkeeping grows
            self.assertLess(rss - rss0, 16 * 1024, "daemon RSS grew from %d to %d KiB" % (rss0, rss))
        self.assertEqual(handled(), paused_at, "input was not paused")
        # Now read: the ACKs come in order, and the paused input resumes.
        for i in range(n):
            slow.sent[i] = payload
        for i in range(n):
            slow.expect_ack(i)
        t.join(60)
        self.assertEqual(sent[0], n)
        if not MEMORY_TOOL:
            self.assertLess(self.d.rss_kib() - rss0, 16 * 1024)


    def test_fairness_under_a_flood(self):
        """A client streaming as fast as it can does not starve another one:
        the loop bounds work per connection per pass and comes back."""
        flood = self.d.client()
        n = 30000
        data = b"".join(flood.frame_for(b"f" * 32, seq=i) for i in range(n))
        for i in range(n):
            flood.sent[i] = b"f" * 32
        done = []

        def reader():
            for i in range(n):
                flood.expect_ack(i)
            done.append(True)

        r = threading.Thread(target=reader, daemon=True)
        w = threading.Thread(target=flood.send_raw, args=(data,), daemon=True)
        r.start()
        w.start()
        other = self.d.client()
        worst = 0.0
        for i in range(30):
            t0 = time.time()
            other.send(b"interactive %d" % i)
            other.expect_ack(i)
            worst = max(worst, time.time() - t0)
            time.sleep(0.02)
        self.assertLess(worst, 1.0 * SLOW, "an interactive client waited %.3f s" % worst)
        r.join(120 * SLOW)
        self.assertEqual(done, [True])


class TestSignals(DaemonTest):
    args = ("--shutdown-timeout", str(5 * SLOW))

    def test_sigterm_drains(self):
        busy = self.d.client()
        idle = self.d.client()
        idle.send(b"early")
        idle.expect_ack(0)
        n = 3000
        busy.send_raw(b"".join(busy.frame_for(b"drain %d" % i, seq=i) for i in range(n)))
        for i in range(n):
            busy.sent[i] = b"drain %d" % i
        half = busy.frame_for(b"never finished" * 20, seq=n)[:100]
        busy.send_raw(half)  # a partial frame: not fully received, not acked
        t0 = time.time()
        self.d.signal(signal.SIGTERM)
        for i in range(n):
            busy.expect_ack(i)
        code, ref, _ = busy.expect_error()
        self.assertEqual((code, ref), (7, NO_SEQ))
        self.assertTrue(busy.expect_close())
        self.assertEqual(idle.expect_error()[:2], (7, NO_SEQ))
        self.assertTrue(idle.expect_close())
        self.assertEqual(self.d.proc.wait(10 * SLOW), 0)
        self.assertLess(time.time() - t0, 5 * SLOW)
        self.assertEqual(len(self.d.recorded()), n + 1)
        self.assertIn("shutting down on SIGTERM", self.d.log())

    def test_sigterm_bound_with_a_client_that_does_not_read(self):
        d = self.start_daemon(args=["--shutdown-timeout", str(1 * SLOW)])
        c = d.client()
        c.send_raw(b"".join(c.frame_for(b"x" * 16, seq=i) for i in range(100000 // 10)))
        time.sleep(0.5)
        t0 = time.time()
        d.signal(signal.SIGINT)
        self.assertEqual(d.proc.wait(10 * SLOW), 0)
        self.assertLess(time.time() - t0, 4 * SLOW)

    def test_sighup_reload_new_connections_only(self):
        d = self.d
        old = d.client()
        old.send(b"before reload")
        old.expect_ack(0)
        old_psk, old_ca = d.psk, open(d.cafile, "rb").read()
        new_psk = make_credentials(d.creds, "ed25519")
        d.signal(signal.SIGHUP)
        self.assertTrue(d.wait_log(r"reloaded certificate"), d.log())
        # The open connection keeps its PSK.
        old.send(b"old connection, old key")
        old.expect_ack(1)
        # New connections get the new certificate and PSK.
        c = Client(d.port, d.cafile, new_psk)
        c.send(b"new connection, new key")
        c.expect_ack(0)
        c.close()
        oldca = os.path.join(d.dir, "old.crt")
        with open(oldca, "wb") as f:
            f.write(old_ca)
        with self.assertRaises(ssl.SSLError):  # the old certificate is gone for new clients
            Client(d.port, oldca, old_psk)
        stale = Client(d.port, d.cafile, old_psk)
        stale.send(b"new connection, old key")
        with self.assertRaises(ProtocolViolation):  # ERROR 2 sealed under the new key
            stale.read_frame()
        # A failed reload keeps what there is and says why.
        with open(os.path.join(d.creds, "tls.key"), "wb") as f:
            f.write(b"not a key\n")
        d.signal(signal.SIGHUP)
        self.assertTrue(d.wait_log(r"reload failed, keeping the previous credentials: .*tls\.key"), d.log())
        c = Client(d.port, d.cafile, new_psk)
        c.send(b"after a failed reload")
        c.expect_ack(0)


class TestOperations(DaemonTest):
    """sd_notify, the log format under a journal stream, idle CPU, EMFILE."""

    def test_sd_notify_ready_status_watchdog_reloading_stopping(self):
        path = os.path.join(self.d.dir, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(10 * SLOW)
        d = self.start_daemon(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "300000"})
        seen = []

        def wait_for(pred, what):
            deadline = time.time() + 10 * SLOW
            while time.time() < deadline:
                for m in seen:
                    if pred(m):
                        return m
                try:
                    seen.append(sock.recv(4096).decode())
                except socket.timeout:
                    break
            self.fail("no %s notification; got %r" % (what, seen))

        wait_for(lambda m: "READY=1" in m, "READY")
        wait_for(lambda m: m == "WATCHDOG=1", "WATCHDOG")
        c = d.client()
        c.send(b"counted")
        c.expect_ack(0)
        wait_for(lambda m: "STATUS=1 connections, 1 messages recorded" in m, "STATUS")
        seen.clear()
        d.signal(signal.SIGHUP)
        wait_for(lambda m: "RELOADING=1" in m, "RELOADING")
        wait_for(lambda m: "READY=1" in m, "READY after reload")
        d.signal(signal.SIGTERM)
        wait_for(lambda m: "STOPPING=1" in m, "STOPPING")
        self.assertEqual(d.proc.wait(10 * SLOW), 0)

    def test_journal_stream_priority_prefixes(self):
        log_path = os.path.join(self.d.dir, "journal-stream.log")
        open(log_path, "wb").close()
        st = os.stat(log_path)
        d = self.start_daemon(stderr_path=log_path,
                              env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
        c = d.client()
        c.send(b"x")
        c.expect_ack(0)
        c.close()
        self.assertTrue(d.wait_log(r"^<6>conn 1 peer .* closed: "), d.log())
        self.assertTrue(re.search(r"^<5>secmsgd .* listening on ", d.log(), re.M), d.log())

    @unittest.skipIf(UNDER_VALGRIND, "valgrind's own scheduler wakes up")
    def test_idle_daemon_sleeps(self):
        c = self.d.client()
        c.send(b"then idle")
        c.expect_ack(0)
        time.sleep(0.3)

        def switches():
            with open("/proc/%d/status" % self.d.proc.pid) as f:
                return sum(int(l.split()[1]) for l in f if "ctxt_switches" in l)

        before = switches()
        time.sleep(2)
        self.assertLessEqual(switches() - before, 1, "an idle daemon woke up")

    @unittest.skipIf(UNDER_VALGRIND, "valgrind needs file descriptors of its own")
    def test_emfile_pauses_accepting_without_spinning(self):
        d = self.start_daemon(wrapper=["prlimit", "--nofile=24:24"], args=["--handshake-timeout", "3"])
        raw = []
        for _ in range(40):
            raw.append(socket.create_connection(("127.0.0.1", d.port)))
        self.assertTrue(d.wait_log(r"(Too many open files|cannot set up a connection).*; pausing new "
                                   r"connections"), d.log())

        def cpu_ticks():
            with open("/proc/%d/stat" % d.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])

        t0 = cpu_ticks()
        time.sleep(1)
        self.assertLess(cpu_ticks() - t0, 20, "the loop spins on EMFILE")
        for s in raw:
            s.close()
        deadline = time.time() + 15
        while True:
            try:
                c = d.client(timeout=5)
                c.send(b"after EMFILE")
                c.expect_ack(0)
                break
            except (OSError, ProtocolViolation):
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        # Once per episode: every pause line is followed by a recovery line,
        # not repeated on each retry (every 250 ms).
        pauses = len(re.findall(r"pausing new connections", d.log()))
        resumes = len(re.findall(r"accepting new connections again", d.log()))
        self.assertIn(pauses - resumes, (0, 1), d.log())
        self.assertLessEqual(pauses, 5, d.log())


class TestConfig(unittest.TestCase):
    binary = os.environ.get("SECMSGD", "secmsgd")

    def run_daemon(self, *args, env=None):
        e = dict(os.environ)
        e.pop("CREDENTIALS_DIRECTORY", None)
        e.pop("STATE_DIRECTORY", None)
        e.update(env or {})
        return subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=60, env=e)

    def setUp(self):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="secmsgd-config-")
        make_credentials(self.dir)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def creds(self):
        return ["--cert", self.dir + "/tls.crt", "--key", self.dir + "/tls.key",
                "--psk-file", self.dir + "/psk"]

    def test_check_config_ok_and_credentials_directory(self):
        r = self.run_daemon("--check-config", "--record", "stderr", *self.creds())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration OK", r.stdout)
        r = self.run_daemon("--check-config", "--record", "none", env={"CREDENTIALS_DIRECTORY": self.dir})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(self.dir + "/tls.crt", r.stdout)

    def test_unknown_key_in_config_file_is_an_error(self):
        conf = self.dir + "/secmsgd.conf"
        with open(conf, "w") as f:
            f.write("record = none\nmax-conections = 5\n")  # misspelt
        r = self.run_daemon("--config", conf, "--check-config", *self.creds())
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("max-conections", r.stderr)
        with open(conf, "w") as f:
            f.write("record = none\nmax-connections = 5\n")
        r = self.run_daemon("--config", conf, "--check-config", *self.creds())
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_credentials_file_by_file_credentials_then_state_directory(self):
        state, creds = self.dir + "/state", self.dir + "/creds"
        make_credentials(state)
        os.makedirs(creds)
        shutil.copy(self.dir + "/psk", creds + "/psk")  # only the PSK is provided
        os.chmod(creds + "/psk", 0o600)
        env = {"CREDENTIALS_DIRECTORY": creds, "STATE_DIRECTORY": state}
        r = self.run_daemon("--check-config", "--record", "none", env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("certificate %s/tls.crt, key %s/tls.key, PSK %s/psk" % (state, state, creds), r.stdout)
        r = self.run_daemon("--check-config", "--record", "none", "--cert", self.dir + "/tls.crt",
                            "--key", self.dir + "/tls.key", env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("certificate %s/tls.crt" % self.dir, r.stdout)
        r = self.run_daemon("--check-config", env={"STATE_DIRECTORY": self.dir + "/empty"})
        self.assertEqual(r.returncode, 78)
        self.assertIn("no --cert given", r.stderr)

    def test_check_config_catches_mismatched_key_and_bad_psk(self):
        other = self.dir + "/other"
        make_credentials(other)
        r = self.run_daemon("--check-config", "--cert", self.dir + "/tls.crt", "--key", other + "/tls.key",
                            "--psk-file", self.dir + "/psk")
        self.assertEqual(r.returncode, 78)
        self.assertIn("does not match", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        os.chmod(self.dir + "/psk", 0o644)
        r = self.run_daemon("--check-config", *self.creds())
        self.assertEqual(r.returncode, 78)
        self.assertIn("psk", r.stderr)

    def test_missing_credentials_and_bad_options(self):
        r = self.run_daemon("--check-config")
        self.assertEqual(r.returncode, 78)
        self.assertIn("--init-credentials", r.stderr)
        r = self.run_daemon("--record", "syslog", *self.creds())
        self.assertEqual(r.returncode, 64)
        r = self.run_daemon("--check-config", "--max-payload", str(32 << 20), *self.creds())
        self.assertEqual(r.returncode, 78)
        r = self.run_daemon("--check-config", "--tls-ciphers", "AES128-SHA", *self.creds())
        self.assertEqual(r.returncode, 78)
        self.assertIn("not allowed", r.stderr)

    def test_record_journal_explicit_fails_clearly_when_unreachable(self):
        if os.path.exists("/run/systemd/journal/socket"):
            self.skipTest("a journal is running here")
        r = self.run_daemon("--check-config", "--record", "journal", *self.creds())
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("journal is not reachable", r.stderr)
        r = self.run_daemon("--check-config", *self.creds())  # default: falls back
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("recording to stderr", r.stdout)

    def test_config_file_and_command_line_wins(self):
        conf = self.dir + "/secmsgd.conf"
        with open(conf, "w") as f:
            f.write('cert = "%s/tls.crt"\nkey = "%s/tls.key"\npsk-file = "%s/psk"\n'
                    'record = "none"\nmax-payload = 99999999\n' % (self.dir, self.dir, self.dir))
        r = self.run_daemon("--config", conf, "--check-config")
        self.assertEqual(r.returncode, 78, r.stderr)  # max-payload from the file is checked
        r = self.run_daemon("--config", conf, "--check-config", "--max-payload", "4096")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("recording to none", r.stdout)
        r = self.run_daemon("--config", self.dir + "/missing.conf", "--check-config")
        self.assertNotEqual(r.returncode, 0)

    def test_init_credentials_then_serve(self):
        cdir = os.path.join(self.dir, "state")
        r = self.run_daemon("--init-credentials", cdir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("sha256:", r.stdout)
        for name in ("tls.key", "tls.crt", "psk"):
            self.assertTrue(os.path.exists(os.path.join(cdir, name)), name)
        self.assertEqual(os.stat(os.path.join(cdir, "psk")).st_mode & 0o077, 0)
        before = open(os.path.join(cdir, "tls.crt"), "rb").read()
        r = self.run_daemon("--init-credentials", cdir, "--key-type", "ed25519")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(open(os.path.join(cdir, "tls.crt"), "rb").read(), before)  # never overwrites
        r = self.run_daemon("--check-config", env={"CREDENTIALS_DIRECTORY": cdir})
        self.assertEqual(r.returncode, 0, r.stderr)
        # Served for real, verified against the generated certificate.
        import base64
        from secmsg_harness import free_port
        port = free_port()
        e = dict(os.environ, CREDENTIALS_DIRECTORY=cdir)
        p = subprocess.Popen([self.binary, "--port", str(port), "--record", "none"], env=e,
                             stderr=subprocess.PIPE)
        try:
            psk = base64.b64decode(open(os.path.join(cdir, "psk")).read())
            deadline = time.time() + 30 * SLOW
            while True:
                try:
                    c = Client(port, os.path.join(cdir, "tls.crt"), psk)
                    break
                except ConnectionRefusedError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.05)
            c.send(b"with generated credentials")
            c.expect_ack(0)
            c.close()
        finally:
            p.terminate()
            self.assertEqual(p.wait(30 * SLOW), 0)
            p.stderr.close()

    def test_version_and_help(self):
        r = self.run_daemon("--version")
        self.assertEqual(r.returncode, 0)
        self.assertIn("secmsgd", r.stdout)
        r = self.run_daemon("--help")
        self.assertEqual(r.returncode, 0)
        for opt in ("--listen", "--psk-file", "--record", "--idle-timeout", "--check-config"):
            self.assertIn(opt, r.stdout)


if __name__ == "__main__":
    import warnings
    warnings.simplefilter("ignore", ResourceWarning)
    unittest.main(verbosity=2, warnings="ignore")

#!/usr/bin/python3
"""secmsgd --proxy-protocol-from: the PROXY protocol v2 header before TLS,
through the real binary over real sockets.

  test_proxy_protocol.py TestProxyProtocol   headers written here (an independent
                                             encoder of HAProxy's spec)
  test_proxy_protocol.py TestHAProxy         Debian's haproxy itself, started on
                                             loopback with send-proxy-v2 and health
                                             checks, in front of secmsgd; exit 77
                                             (skipped) when haproxy is not installed

The header's source is the recorded peer (stderr record peer=, the log
lines' peer), the balancer's address is via= (SECMSG_VIA); a header from an
address not listed is refused as a protocol error; a missing, malformed,
truncated or slow header from a listed address closes that connection with
one log line and the daemon serves everyone else; LOCAL keeps the
connection's own address; health checks (LOCAL, then a reset) leave no line.
"""

import ipaddress
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from secmsg_harness import (MESSAGE_LINE, MSG, Client, Daemon, Keys, free_port, seal,  # noqa: E402
                            tls_context)

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
UNDER_VALGRIND = "valgrind" in os.environ.get("SECMSGD_WRAPPER", "")
SLOW = 6 if UNDER_VALGRIND else 1


def proxy_v2(src, dst, tlvs=b"", ver_cmd=0x21, family=None):
    """A PROXY protocol v2 header for TCP from src to dst ((address, port))."""
    a, b = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    if a.version != b.version:  # one family for both, as balancers write it
        a, b = (ipaddress.IPv6Address("::ffff:%s" % x) if x.version == 4 else x for x in (a, b))
    if family is None:
        family = 0x11 if a.version == 4 else 0x21
    block = a.packed + b.packed + struct.pack(">HH", src[1], dst[1]) + tlvs
    return SIGNATURE + bytes([ver_cmd, family]) + struct.pack(">H", len(block)) + block


def local_v2(block=b""):
    """A LOCAL header (what HAProxy's health checks send)."""
    return SIGNATURE + bytes([0x20, 0x00]) + struct.pack(">H", len(block)) + block


def tlv(kind, value):
    return bytes([kind]) + struct.pack(">H", len(value)) + value


def records(d):
    return [m for m in map(MESSAGE_LINE.match, d.log().split("\n")) if m]


def summary_lines(d):
    return re.findall(r"^secmsgd: conn \d+ peer .* closed: .*$", d.log(), re.M)


class ProxyTest(unittest.TestCase):
    proxy_from = ("127.0.0.1",)
    extra_args = ()

    def setUp(self):
        args = []
        for block in self.proxy_from:
            args += ["--proxy-protocol-from", block]
        self.d = Daemon(args=args + list(self.extra_args))
        self.d.start()
        self.addCleanup(self.stop_daemon)  # also when a subclass's setUp fails

    def stop_daemon(self):
        rc = self.d.stop(timeout=30 * SLOW)
        log = self.d.log()
        if not os.environ.get("SECMSG_KEEP_TEST_DIRS"):
            shutil.rmtree(self.d.dir, ignore_errors=True)
        self.assertEqual(rc, 0, "secmsgd exit status; log:\n" + log[-4000:])

    def proxied(self, header):
        return self.d.client(preamble=header)

    def send_one(self, client, payload=b"hello"):
        seq = client.send(payload)
        client.expect_ack(seq)
        client.close()

    def assert_other_clients_fine(self):
        """A well-behaved proxied client is still served."""
        c = self.proxied(proxy_v2(("198.51.100.9", 999), ("127.0.0.1", self.d.port)))
        self.send_one(c, b"still fine")
        self.assertTrue(self.d.wait_log(r"peer=198\.51\.100\.9:999 via=127\.0\.0\.1:\d+ .*"
                                        r"text=\"still fine\"$"), self.d.log())


class TestProxyProtocol(ProxyTest):

    def test_header_source_is_the_peer_and_the_balancer_is_via(self):
        cases = [
            (("192.0.2.7", 4711), b"", "192.0.2.7:4711"),
            (("2001:db8::7", 1), b"", "[2001:db8::7]:1"),
            # TLVs as HAProxy's proxy-v2-options add them: ALPN, unique-id, NOOP.
            (("203.0.113.5", 65535), tlv(0x01, b"secmsg/1") + tlv(0x05, b"id-42") + tlv(0x04, b""),
             "203.0.113.5:65535"),
        ]
        for i, (src, tlvs, shown) in enumerate(cases):
            c = self.proxied(proxy_v2(src, ("127.0.0.1", self.d.port), tlvs))
            via = "127.0.0.1:%d" % c.tls.getsockname()[1]
            self.send_one(c, b"message %d" % i)
            self.assertTrue(self.d.wait_log(r"text=\"message %d\"$" % i), self.d.log())
            self.assertTrue(self.d.wait_log(r"^secmsgd: conn \d+ peer %s via %s closed: tls TLSv1\.3 "
                                            % (re.escape(shown), re.escape(via))), self.d.log())
            m = [r for r in records(self.d) if r["text"] == "message %d" % i][0]
            self.assertEqual(m["peer"], shown)
            self.assertEqual(m["via"], via)

    def test_header_and_client_hello_in_one_segment(self):
        """The daemon reads exactly the header: the ClientHello sent right
        behind it, in the same write, reaches TLS whole."""
        sock = socket.create_connection(("127.0.0.1", self.d.port), timeout=10)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = tls_context(self.d.cafile).wrap_bio(incoming, outgoing, server_hostname="localhost")
        with self.assertRaises(ssl.SSLWantReadError):
            tls.do_handshake()
        sock.sendall(proxy_v2(("192.0.2.8", 8), ("127.0.0.1", self.d.port)) + outgoing.read())
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(65536)
                self.assertTrue(data, "closed during the handshake:\n" + self.d.log())
                incoming.write(data)
        tls.write(seal(Keys(self.d.psk), MSG, 0, b"one segment"))
        sock.sendall(outgoing.read())
        self.assertTrue(self.d.wait_log(r"peer=192\.0\.2\.8:8 via=127\.0\.0\.1:\d+ .*"
                                        r"text=\"one segment\"$"), self.d.log())
        sock.close()

    def test_dribbled_header(self):
        header = proxy_v2(("192.0.2.9", 9), ("127.0.0.1", self.d.port))
        sock = socket.create_connection(("127.0.0.1", self.d.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(header)):
            sock.sendall(header[i:i + 1])
            time.sleep(0.01)
        tls = tls_context(self.d.cafile).wrap_socket(sock, server_hostname="localhost")
        tls.sendall(seal(Keys(self.d.psk), MSG, 0, b"dribbled"))
        self.assertTrue(self.d.wait_log(r"peer=192\.0\.2\.9:9 via=127\.0\.0\.1:\d+ .*text=\"dribbled\"$"),
                        self.d.log())
        tls.close()

    def test_local_keeps_the_connection_address(self):
        c = self.proxied(local_v2())
        own = "127.0.0.1:%d" % c.tls.getsockname()[1]
        self.send_one(c, b"local")
        self.assertTrue(self.d.wait_log(r"text=\"local\"$"), self.d.log())
        m = [r for r in records(self.d) if r["text"] == "local"][0]
        self.assertEqual(m["peer"], own)
        self.assertIsNone(m["via"])
        # LOCAL with addresses and TLVs: all of it skipped.
        c = self.proxied(local_v2(bytes(12) + tlv(0x04, b"pad")))
        self.send_one(c, b"local 2")
        self.assertTrue(self.d.wait_log(r"peer=127\.0\.0\.1:\d+ key=[0-9a-f]{16} seq=0 .*text=\"local 2\"$"), self.d.log())

    def test_health_checks_leave_no_line(self):
        """LOCAL then close or reset, and connect-and-close, as balancers
        check a server: no log line for any of them."""
        before = len(summary_lines(self.d))
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", self.d.port))
            if i % 4 == 0:
                s.sendall(local_v2())
            elif i % 4 == 1:
                s.sendall(local_v2())
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            elif i % 4 == 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        self.assert_other_clients_fine()
        self.assertTrue(self.d.wait_log(r"^secmsgd: conn \d+ peer 198\.51\.100\.9:999 via .* closed:"), self.d.log())
        self.assertEqual(len(summary_lines(self.d)), before + 1, self.d.log())

    def test_missing_header_from_a_listed_address(self):
        with self.assertRaises((ssl.SSLError, OSError)):
            self.d.client().send(b"no header")
        self.assertTrue(self.d.wait_log(
            r"^secmsgd: conn \d+ peer 127\.0\.0\.1:\d+ closed: before TLS \(PROXY protocol header expected\), "
            r"in 1 bytes, duration \d+\.\d{3}s, reason proxy-header: no PROXY protocol v2 header: "
            r"the first bytes are not its signature \(it began with TLS: does the balancer send the "
            r"header, HAProxy's send-proxy-v2\?\)$"), self.d.log())
        self.assert_other_clients_fine()

    def test_malformed_headers(self):
        port = self.d.port
        cases = [
            (proxy_v2(("192.0.2.1", 1), ("127.0.0.1", port), ver_cmd=0x31),
             r"reason proxy-header: PROXY protocol header of a version other than 2"),
            (proxy_v2(("192.0.2.1", 1), ("127.0.0.1", port), family=0x12),
             r"reason proxy-header: .* other than TCP over IPv4 or IPv6"),
            (SIGNATURE + b"\x21\x11\xff\xff" + bytes(100),
             r"in 16 bytes, .*reason proxy-header: PROXY protocol v2 header longer than 1040 bytes"),
            (proxy_v2(("192.0.2.1", 1), ("127.0.0.1", port), tlvs=b"\x01\x00\x09x"),
             r"reason proxy-header: PROXY protocol v2 header with a TLV that runs past its end"),
            (b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n", r"in 1 bytes, .*reason proxy-header: no PROXY"),
        ]
        for header, pattern in cases:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(header)
            s.settimeout(5 * SLOW)
            try:
                while s.recv(4096):  # the daemon closes it
                    pass
            except ConnectionResetError:
                pass
            s.close()
            self.assertTrue(self.d.wait_log(pattern), pattern + "\n" + self.d.log())
        self.assert_other_clients_fine()

    def test_truncated_header(self):
        header = proxy_v2(("192.0.2.1", 1), ("127.0.0.1", self.d.port))
        for cut in (5, 16, 20, len(header) - 1):
            s = socket.create_connection(("127.0.0.1", self.d.port))
            s.sendall(header[:cut])
            time.sleep(0.05)
            s.close()
            self.assertTrue(self.d.wait_log(r"in %d bytes, duration \S+, reason client-closed: closed "
                                            r"inside the PROXY protocol v2 header$" % cut), self.d.log())
        self.assert_other_clients_fine()

    def test_shutdown_with_a_header_half_read(self):
        s = socket.create_connection(("127.0.0.1", self.d.port))
        s.sendall(SIGNATURE[:5])
        time.sleep(0.1)  # read by the daemon
        t0 = time.monotonic()
        self.assertEqual(self.d.stop(timeout=30 * SLOW), 0)
        self.assertLess(time.monotonic() - t0, 3 * SLOW)  # not the 5 s shutdown bound
        self.assertRegex(self.d.log(), r"in 5 bytes, duration \S+, reason server-shutdown: the server is "
                                       r"shutting down\n")
        s.close()


class TestSlowHeader(ProxyTest):
    extra_args = ("--handshake-timeout", "1")

    def test_slow_header_times_out_and_others_are_served(self):
        header = proxy_v2(("192.0.2.1", 1), ("127.0.0.1", self.d.port))
        slow = socket.create_connection(("127.0.0.1", self.d.port))
        slow.sendall(header[:10])
        t0 = time.monotonic()
        self.assert_other_clients_fine()  # while the slow one waits
        slow.settimeout(10 * SLOW)
        self.assertEqual(slow.recv(1), b"")  # closed by the daemon
        self.assertLess(time.monotonic() - t0, 5 * SLOW)
        self.assertTrue(self.d.wait_log(r"in 10 bytes, duration 1\.\d{3}s, reason handshake-timeout: "
                                        r"PROXY protocol v2 header not complete within the handshake "
                                        r"timeout$"), self.d.log())
        slow.close()

    def test_the_timeout_covers_header_and_tls_handshake_together(self):
        header = proxy_v2(("192.0.2.1", 1), ("127.0.0.1", self.d.port))
        s = socket.create_connection(("127.0.0.1", self.d.port))
        s.sendall(header)
        time.sleep(0.6)
        s.sendall(b"\x16\x03\x01")  # the start of a ClientHello, never finished
        t0 = time.monotonic()
        s.settimeout(10 * SLOW)
        self.assertEqual(s.recv(1), b"")
        self.assertLess(time.monotonic() - t0, 0.9 * SLOW)  # the 1 s ran from the connect
        self.assertTrue(self.d.wait_log(r"^secmsgd: conn \d+ peer 192\.0\.2\.1:1 via 127\.0\.0\.1:\d+ closed: .*"
                                        r"duration 1\.\d{3}s, reason handshake-timeout"), self.d.log())
        s.close()


class TestNotListed(ProxyTest):
    proxy_from = ("10.0.0.0/8", "2001:db8::/32")

    def test_header_from_an_address_not_listed_is_refused(self):
        with self.assertRaises((ssl.SSLError, OSError)):
            c = self.proxied(proxy_v2(("192.0.2.7", 4711), ("127.0.0.1", self.d.port)))
            c.send(b"spoofed")
            c.expect_ack(0)
        self.assertTrue(self.d.wait_log(r"^secmsgd: conn \d+ peer 127\.0\.0\.1:\d+ closed: tls -, .*reason tls-failed: "
                                        r"TLS handshake failed: a PROXY protocol v2 header, from an address "
                                        r"not in --proxy-protocol-from$"), self.d.log())
        self.assertNotIn("192.0.2.7", self.d.log())
        # Without a header: an ordinary client, its own address recorded.
        c = self.d.client()
        own = "127.0.0.1:%d" % c.tls.getsockname()[1]
        self.send_one(c, b"direct")
        self.assertTrue(self.d.wait_log(r"peer=%s key=[0-9a-f]{16} seq=0 .*text=\"direct\"$" % re.escape(own)), self.d.log())
        self.assertTrue(self.d.wait_log(r"listening on .*; PROXY protocol v2 header required from "
                                        r"10\.0\.0\.0/8, 2001:db8::/32; "), self.d.log())


    def test_config_file_lists_blocks_and_bad_ones_are_refused(self):
        creds = self.d.creds
        conf = os.path.join(self.d.dir, "secmsgd.conf")

        def check(lines):
            with open(conf, "w") as f:
                f.write('cert = "%s/tls.crt"\nkey = "%s/tls.key"\npsk-file = "%s/psk"\n'
                        % (creds, creds, creds) + lines)
            return subprocess.run([self.d.binary, "--config", conf, "--check-config"],
                                  capture_output=True, text=True, timeout=60)
        r = check('proxy-protocol-from = ["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"]\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("PROXY protocol v2 header required from 127.0.0.1/32, 10.0.0.0/8, 2001:db8::/32",
                      r.stdout)
        for bad, why in [("10.0.0.1/8", "address bits set past the prefix (the block is 10.0.0.0/8)"),
                         ("192.0.2.0/33", "the prefix length must be 0 to 32"),
                         ("lb.example", "expected ADDRESS/PREFIX with an IPv4 or IPv6 address")]:
            r = check('proxy-protocol-from = "%s"\n' % bad)
            self.assertEqual(r.returncode, 78, r.stderr)
            self.assertIn("--proxy-protocol-from: invalid address block '%s': %s" % (bad, why), r.stderr)


class TestHAProxy(ProxyTest):
    """HAProxy on 127.0.0.1 relays to secmsgd from 127.0.0.2 (its `source`),
    the only address listed, with send-proxy-v2 and health checks every
    100 ms."""
    proxy_from = ("127.0.0.2",)

    def setUp(self):
        super().setUp()
        self.hdir = tempfile.mkdtemp(prefix="secmsg-haproxy-")
        self.front = free_port()
        cfg = os.path.join(self.hdir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n"
                    "    maxconn 200\n"
                    "defaults\n"
                    "    mode tcp\n"
                    "    timeout connect 5s\n"
                    "    timeout client 30s\n"
                    "    timeout server 30s\n"
                    "listen secmsg\n"
                    "    bind 127.0.0.1:%d\n"
                    "    server secmsgd 127.0.0.1:%d send-proxy-v2 source 127.0.0.2 check inter 100ms\n"
                    % (self.front, self.d.port))
        self.hlog = open(os.path.join(self.hdir, "haproxy.log"), "wb")
        self.haproxy = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdin=subprocess.DEVNULL,
                                        stdout=self.hlog, stderr=self.hlog)
        self.addCleanup(self.stop_haproxy)
        deadline = time.time() + 10 * SLOW
        while True:
            self.assertIsNone(self.haproxy.poll(), "haproxy exited:\n" + self.haproxy_log())
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.front)) == 0:
                    break
            self.assertLess(time.time(), deadline, "haproxy not listening:\n" + self.haproxy_log())
            time.sleep(0.05)

    def stop_haproxy(self):
        try:
            self.haproxy.terminate()
            try:
                self.haproxy.wait(10)
            except subprocess.TimeoutExpired:
                self.haproxy.kill()
                self.haproxy.wait()
            self.hlog.close()
        finally:
            shutil.rmtree(self.hdir, ignore_errors=True)

    def haproxy_log(self):
        with open(os.path.join(self.hdir, "haproxy.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def test_through_haproxy(self):
        clients = []
        for i in range(3):
            c = Client(self.front, self.d.cafile, self.d.psk)
            clients.append((c, "127.0.0.1:%d" % c.tls.getsockname()[1]))
            for k in range(2):
                c.expect_ack(c.send(b"via haproxy %d.%d" % (i, k)))
        for c, _ in clients:
            c.close()
        time.sleep(1.0)  # about ten health checks
        self.assertTrue(self.d.wait_log(r"text=\"via haproxy 2\.1\"$"), self.d.log())
        got = {r["text"]: r for r in records(self.d)}
        for i, (_, peer) in enumerate(clients):
            for k in range(2):
                r = got["via haproxy %d.%d" % (i, k)]
                self.assertEqual(r["peer"], peer)  # the client, as HAProxy saw it
                self.assertRegex(r["via"], r"^127\.0\.0\.2:\d+$")  # HAProxy's outgoing address
        for _, peer in clients:
            self.assertTrue(self.d.wait_log(r"^secmsgd: conn \d+ peer %s via 127\.0\.0\.2:\d+ closed: tls TLSv1\.3 "
                                            % re.escape(peer)), self.d.log())
        # Health checks (LOCAL, then a reset) reached the daemon and left no line.
        self.assertNotRegex(self.d.log(), r"peer 127\.0\.0\.2:\d+ closed")
        self.assertEqual(self.d.stop(timeout=30 * SLOW), 0)
        served = int(re.search(r"stopped: (\d+) connections served", self.d.log())[1])
        self.assertGreaterEqual(served, 3 + 5, self.d.log())
        self.assertNotIn("is DOWN", self.haproxy_log())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "TestHAProxy" and not shutil.which("haproxy"):
        print("haproxy is not installed (Debian: apt-get install haproxy): skipped")
        sys.exit(77)
    unittest.main(verbosity=2, warnings="ignore")

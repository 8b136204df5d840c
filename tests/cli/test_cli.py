#!/usr/bin/python3
"""Black-box tests of the secmsg client: the real binary against the real
secmsgd (tests/harness/secmsg_harness.Daemon), over real sockets.

Run one class:  SECMSG=build/cli/secmsg SECMSGD=build/daemon/secmsgd \\
                    python3 tests/cli/test_cli.py TestModes
"""

import hashlib
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from secmsg_harness import (ACK, ERROR, Daemon, Keys, free_port,  # noqa: E402
                            make_credentials, open_frame, seal)
import client_harness as ch  # noqa: E402

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_UNAVAILABLE = 0, 64, 65, 66, 69
EX_TEMPFAIL, EX_PROTOCOL, EX_NOPERM = 75, 76, 77


class ClientTest(unittest.TestCase):
    """Each test gets a fresh daemon (stopped at the end) and a clean home."""

    daemon_args = ()

    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="secmsg-home-")
        self.env = ch.clean_env(self.home)
        self.daemons = []
        self.d = self.start_daemon()

    def start_daemon(self, **kw):
        kw.setdefault("args", self.daemon_args)
        d = Daemon(**kw)
        d.start()
        self.daemons.append(d)
        return d

    def tearDown(self):
        for d in self.daemons:
            d.__exit__(None, None, None)

    def secmsg(self, *args, input=b"", env=None, daemon=None):
        d = daemon or self.d
        return ch.run(ch.trust_args(d) + list(args), input=input, env=env or self.env)

    def assertStatus(self, r, status):
        self.assertEqual(r.returncode, status,
                         "exit status; stderr:\n" + r.stderr.decode(errors="replace"))

    def recorded(self, d=None):
        return [p for (_, _, p) in (d or self.d).recorded()]


class TestModes(ClientTest):
    def test_one_shot_messages_are_acknowledged_and_recorded(self):
        r = self.secmsg("-m", "hello", "-m", "world")
        self.assertStatus(r, EX_OK)
        lines = r.stdout.decode().splitlines()
        self.assertEqual(len(lines), 2, lines)
        for seq, line in enumerate(lines):  # the daemon's note: "recorded id=..."
            self.assertRegex(line, r"^seq %d: recorded( id=[0-9a-f]{32}-\d+)?$" % seq)
        self.assertTrue(self.d.wait_log("text=\"world\""))
        self.assertEqual(self.recorded(), [b"hello", b"world"])

    def test_pipe_mode_sends_each_line_and_summarises(self):
        r = self.secmsg(input=b"one\ntwo\n\nlast without newline")
        self.assertStatus(r, EX_OK)
        self.assertEqual(r.stdout, b"")
        self.assertIn(b"4 of 4 messages acknowledged", r.stderr)
        self.assertTrue(self.d.wait_log("without newline"))
        self.assertEqual(self.recorded(), [b"one", b"two", b"", b"last without newline"])

    def test_quiet_pipe_mode_prints_nothing(self):
        r = self.secmsg("--quiet", input=b"a\nb\n")
        self.assertStatus(r, EX_OK)
        self.assertEqual((r.stdout, r.stderr), (b"", b""))

    def test_whole_input_is_one_binary_message(self):
        data = bytes(range(256)) * 40 + b"\n\x00\r\n"
        r = self.secmsg("--whole", input=data)
        self.assertStatus(r, EX_OK)
        self.assertIn(b"1 of 1 messages acknowledged (%d bytes)" % len(data), r.stderr)
        self.assertTrue(self.d.wait_log("bytes=%d " % len(data)))
        self.assertEqual(self.recorded(), [data])

    def test_ten_thousand_lines_through_one_connection_in_order(self):
        lines = [b"line %05d" % i for i in range(10000)]
        r = self.secmsg(input=b"\n".join(lines) + b"\n")
        self.assertStatus(r, EX_OK)
        self.assertIn(b"10000 of 10000 messages acknowledged", r.stderr)
        self.assertTrue(self.d.wait_log("line 09999"))
        rec = self.d.recorded()
        self.assertEqual([p for (_, _, p) in rec], lines)
        self.assertEqual({c for (c, _, _) in rec}, {rec[0][0]}, "one connection")
        self.assertEqual([s for (_, s, _) in rec], list(range(10000)))

    def test_window_of_one_still_delivers_everything(self):
        r = self.secmsg("--window", "1", input=b"".join(b"%d\n" % i for i in range(200)))
        self.assertStatus(r, EX_OK)
        self.assertIn(b"200 of 200", r.stderr)

    def test_verbose_reports_tls_1_3_x25519_and_alpn(self):
        r = self.secmsg("-v", "-m", "x")
        self.assertStatus(r, EX_OK)
        err = r.stderr.decode()
        self.assertIn("TLSv1.3", err)
        self.assertIn("X25519", err)
        self.assertIn("ALPN secmsg/1", err)
        self.assertIn(ch.pin_of(self.d.cafile), err)

    def test_psk_file_from_the_environment(self):
        env = ch.clean_env(self.home, SECMSG_PSK_FILE=os.path.join(self.d.creds, "psk"))
        r = ch.run(["--port", str(self.d.port), "--ca-file", self.d.cafile, "-m", "env"], env=env)
        self.assertStatus(r, EX_OK)
        # The variable wins over the configuration file, the command line over both.
        conf_dir = os.path.join(self.home, ".config", "secmsg")
        os.makedirs(conf_dir)
        with open(os.path.join(conf_dir, "config"), "w") as f:
            f.write("psk-file = /nonexistent/from-config\n")
        r = ch.run(["--port", str(self.d.port), "--ca-file", self.d.cafile, "-m", "env"], env=env)
        self.assertStatus(r, EX_OK)
        r = ch.run(["--port", str(self.d.port), "--ca-file", self.d.cafile, "-m", "env",
                    "--psk-file", "/nonexistent/from-command-line"], env=env)
        self.assertStatus(r, EX_NOINPUT)
        self.assertIn(b"from-command-line", r.stderr)
        del env["SECMSG_PSK_FILE"]
        r = ch.run(["--port", str(self.d.port), "--ca-file", self.d.cafile, "-m", "x"], env=env)
        self.assertStatus(r, EX_NOINPUT)
        self.assertIn(b"from-config", r.stderr)

    def test_defaults_from_the_config_file_and_the_command_line_wins(self):
        conf_dir = os.path.join(self.home, ".config", "secmsg")
        os.makedirs(conf_dir)
        with open(os.path.join(conf_dir, "config"), "w") as f:
            f.write("# defaults\nhost = 127.0.0.1\nport = %d\npsk-file = %s\n"
                    "ca-file = %s\nserver-name = localhost\n"
                    % (self.d.port, os.path.join(self.d.creds, "psk"), self.d.cafile))
        r = ch.run(["-m", "from config"], env=self.env)
        self.assertStatus(r, EX_OK)
        # The command line wins: a port nobody listens on fails.
        r = ch.run(["--port", str(free_port()), "-m", "x", "--connect-timeout", "5",
                    "--retry-for", "0"], env=self.env)
        self.assertStatus(r, EX_UNAVAILABLE)
        # XDG_CONFIG_HOME is honoured, and an unknown key is a usage error.
        other = tempfile.mkdtemp(prefix="secmsg-xdg-")
        os.makedirs(os.path.join(other, "secmsg"))
        with open(os.path.join(other, "secmsg", "config"), "w") as f:
            f.write("colour = blue\n")
        r = ch.run(["-m", "x"], env=dict(self.env, XDG_CONFIG_HOME=other))
        self.assertStatus(r, EX_USAGE)
        self.assertIn(b"config:1: unknown key", r.stderr)


class TestIPv6(ClientTest):
    daemon_args = ()

    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="secmsg-home-")
        self.env = ch.clean_env(self.home)
        self.daemons = []
        port = free_port()
        d = Daemon(args=["--listen", "[::1]:%d" % port], port=port)
        d.connect_host = "::1"
        d.start()
        self.daemons.append(d)
        self.d = d

    def test_ipv6_literal_with_and_without_brackets(self):
        for host in ("::1", "[::1]"):
            r = self.secmsg("--host", host, "-m", "six")
            self.assertStatus(r, EX_OK)
        # The certificate's IPv6 address is what is checked: another fails.
        r = self.secmsg("--host", "::1", "--server-name", "::2", "-m", "x")
        self.assertStatus(r, EX_NOPERM)


class TestTrust(ClientTest):
    def test_untrusted_certificate_is_rejected_with_advice(self):
        psk = os.path.join(self.d.creds, "psk")
        r = ch.run(["--port", str(self.d.port), "--psk-file", psk, "-m", "x"], env=self.env)
        self.assertStatus(r, EX_NOPERM)
        self.assertIn(b"--ca-file", r.stderr)
        self.assertIn(b"--pin", r.stderr)
        self.assertEqual(self.recorded(), [])

    def test_wrong_server_name_is_rejected(self):
        r = self.secmsg("--server-name", "elsewhere.example", "-m", "x")
        self.assertStatus(r, EX_NOPERM)
        self.assertIn(b"elsewhere.example", r.stderr)
        r = self.secmsg("--server-name", "localhost", "-m", "x")
        self.assertStatus(r, EX_OK)

    def test_right_pin_is_accepted_without_a_ca(self):
        psk = os.path.join(self.d.creds, "psk")
        r = ch.run(["--port", str(self.d.port), "--psk-file", psk, "--pin",
                    ch.pin_of(self.d.cafile), "--server-name", "any.example", "-m", "pinned"],
                   env=self.env)
        self.assertStatus(r, EX_OK)

    def test_wrong_pin_is_rejected_even_with_a_trusting_ca(self):
        other = tempfile.mkdtemp(prefix="secmsg-other-")
        make_credentials(other)
        r = self.secmsg("--pin", ch.pin_of(os.path.join(other, "tls.crt")), "-m", "x")
        self.assertStatus(r, EX_NOPERM)
        self.assertIn(b"does not match --pin", r.stderr)
        self.assertEqual(self.recorded(), [])

    def test_malformed_pin_is_a_usage_error(self):
        r = self.secmsg("--pin", "sha256:tooshort", "-m", "x")
        self.assertStatus(r, EX_USAGE)

    def test_verbose_names_the_server_key_in_every_trust_mode(self):
        # The key is taken during the handshake by the client's verify
        # callback, which must see the certificate whatever the trust mode.
        psk = os.path.join(self.d.creds, "psk")
        key = ch.pin_of(self.d.cafile)
        for trust in (["--ca-file", self.d.cafile], ["--pin", key], ["--insecure"]):
            r = ch.run(["--port", str(self.d.port), "--psk-file", psk, "-v"] + trust + ["-m", "x"],
                       env=self.env)
            self.assertStatus(r, EX_OK)
            self.assertIn("server key " + key + "\n", r.stderr.decode())

    def test_insecure_connects_and_warns_every_time(self):
        psk = os.path.join(self.d.creds, "psk")
        for name in ("127.0.0.1", "wrong.example"):  # no name check either
            r = ch.run(["--port", str(self.d.port), "--psk-file", psk, "--insecure",
                        "--server-name", name, "-m", "x"], env=self.env)
            self.assertStatus(r, EX_OK)
            self.assertIn(b"warning: --insecure", r.stderr)


class TestExitStatus(ClientTest):
    # --retry-for 0: the first failure ends the run, with its own status.
    def test_nothing_listening_is_unavailable(self):
        port = free_port()
        r = self.secmsg("--port", str(port), "-m", "x", "--retry-for", "0")
        self.assertStatus(r, EX_UNAVAILABLE)
        self.assertIn(b"cannot connect to 127.0.0.1:%d" % port, r.stderr)
        self.assertIn(b"Connection refused", r.stderr)

    def test_silent_server_times_out_per_connect_timeout(self):
        # The kernel completes the TCP handshake; nobody ever answers TLS.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        try:
            start = time.monotonic()
            r = self.secmsg("--port", str(listener.getsockname()[1]), "--connect-timeout", "1",
                            "--retry-for", "0", "-m", "x")
            took = time.monotonic() - start
        finally:
            listener.close()
        self.assertStatus(r, EX_UNAVAILABLE)
        self.assertIn(b"timed out (see --connect-timeout)", r.stderr)
        self.assertGreaterEqual(took, 0.9)

    def test_unresolvable_host_is_unavailable(self):
        r = self.secmsg("--host", "no-such-host.invalid", "-m", "x")
        self.assertStatus(r, EX_UNAVAILABLE)

    def test_wrong_psk_is_a_protocol_error(self):
        other = tempfile.mkdtemp(prefix="secmsg-other-")
        make_credentials(other)
        r = self.secmsg("--psk-file", os.path.join(other, "psk"), "-m", "x")
        self.assertStatus(r, EX_PROTOCOL)
        self.assertIn(b"authentication", r.stderr)
        self.assertIn(b"--psk-file", r.stderr)
        self.assertEqual(self.recorded(), [])

    def test_oversize_message_is_refused_by_the_server(self):
        r = self.secmsg("--whole", input=b"x" * 70000)
        self.assertStatus(r, EX_PROTOCOL)
        self.assertIn(b"ERROR 5", r.stderr)

    def test_daemon_stopped_mid_pipe_is_a_temporary_failure(self):
        p = subprocess.Popen(ch.command(ch.trust_args(self.d) + ["--retry-for", "0"]),
                             stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        try:
            p.stdin.write(b"".join(b"before %d\n" % i for i in range(100)))
            p.stdin.flush()
            self.assertTrue(self.d.wait_log("before 99"), self.d.log()[-2000:])
            self.d.signal(signal.SIGTERM)
            p.wait(timeout=30)  # with its input still open: more may come
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, EX_TEMPFAIL, err.decode(errors="replace"))
        self.assertRegex(err.decode(), "shutting down|closed the connection")
        self.assertIn(b"100 of 100 messages acknowledged", err)

    def test_not_recorded_is_a_temporary_failure_naming_the_message(self):
        # The daemon records to stderr, here /dev/full: recording fails.
        d = self.start_daemon(record="stderr", stderr_path="/dev/full")
        r = self.secmsg("-m", "lost", "--retry-for", "0", daemon=d)
        self.assertStatus(r, EX_TEMPFAIL)
        self.assertIn(b"message 1 (-m)", r.stderr)
        self.assertIn(b"NOT recorded", r.stderr)

    def test_no_acknowledgement_in_time_is_a_temporary_failure(self):
        p = subprocess.Popen(ch.command(ch.trust_args(self.d) + ["--timeout", "1",
                                                                 "--retry-for", "0"]),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self.env)
        try:
            p.stdin.write(b"first\n")
            p.stdin.flush()
            self.assertTrue(self.d.wait_log("first"))
            time.sleep(0.2)
            self.d.signal(signal.SIGSTOP)
            try:
                p.stdin.write(b"second\n")
                p.stdin.flush()
                out, err = p.communicate(timeout=20)
            finally:
                self.d.signal(signal.SIGCONT)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, EX_TEMPFAIL, err.decode(errors="replace"))
        self.assertIn(b"--timeout", err)

    def test_missing_psk_file(self):
        r = self.secmsg("--psk-file", "/nonexistent/psk", "-m", "x")
        self.assertStatus(r, EX_NOINPUT)
        self.assertIn(b"/nonexistent/psk", r.stderr)

    def test_psk_file_readable_by_others_is_refused(self):
        path = os.path.join(self.home, "psk")
        with open(os.path.join(self.d.creds, "psk"), "rb") as f, open(path, "wb") as g:
            g.write(f.read())
        os.chmod(path, 0o644)
        r = self.secmsg("--psk-file", path, "-m", "x")
        self.assertStatus(r, EX_NOINPUT)
        self.assertEqual(self.recorded(), [])

    def test_no_psk_at_all_is_a_usage_error(self):
        r = ch.run(["--port", str(self.d.port), "--ca-file", self.d.cafile, "-m", "x"],
                   env=self.env)
        self.assertStatus(r, EX_USAGE)
        self.assertIn(b"--psk-file", r.stderr)

    def test_missing_ca_file(self):
        r = self.secmsg("--ca-file", "/nonexistent/ca.pem", "-m", "x")
        self.assertStatus(r, EX_NOINPUT)

    def test_usage_errors(self):
        for args in (["--no-such-option"], ["--port", "70000", "-m", "x"],
                     ["--whole", "-m", "x"], ["--insecure", "--pin", ch.pin_of(self.d.cafile)]):
            r = self.secmsg(*args)
            self.assertStatus(r, EX_USAGE)

    def test_help_and_version(self):
        r = ch.run(["--help"], env=self.env)
        self.assertStatus(r, EX_OK)
        self.assertIn(b"--psk-file", r.stdout)
        r = ch.run(["--version"], env=self.env)
        self.assertStatus(r, EX_OK)
        self.assertRegex(r.stdout.decode(), r"^secmsg \d+\.\d+\.\d+ \(wolfSSL")


class TestInteractive(ClientTest):
    def test_typed_messages_are_acknowledged_and_exit_quits(self):
        t = ch.Terminal(ch.trust_args(self.d), env=self.env)
        try:
            t.read_until(b"> ")
            t.type(b"hello there\n")
            screen = t.read_until(b"> ")
            self.assertIn("[ack seq 0] recorded", screen)
            t.type(b"\n")  # an empty line sends nothing
            t.read_until(b"> ")
            t.type(b"second\n")
            self.assertIn("[ack seq 1] recorded", t.read_until(b"> "))
            t.type(b"exit\n")
            self.assertEqual(t.wait(), EX_OK, t.screen.decode(errors="replace"))
        finally:
            t.close()
        self.assertTrue(self.d.wait_log("second"))
        self.assertEqual(self.recorded(), [b"hello there", b"second"])

    def test_end_of_input_quits(self):
        t = ch.Terminal(ch.trust_args(self.d), env=self.env)
        try:
            t.read_until(b"> ")
            t.type(b"bye\n")
            t.read_until(b"[ack seq 0]")
            t.read_until(b"> ")
            t.type(b"\x04")  # Ctrl-D
            self.assertEqual(t.wait(), EX_OK)
        finally:
            t.close()

    def test_server_shutdown_while_idle_is_reported(self):
        t = ch.Terminal(ch.trust_args(self.d) + ["--retry-for", "0"], env=self.env)
        try:
            t.read_until(b"> ")
            self.d.signal(signal.SIGTERM)
            self.assertEqual(t.wait(), EX_TEMPFAIL)
            self.assertRegex(t.screen.decode(errors="replace"), "shutting down|closed")
        finally:
            t.close()


class LyingServer:
    """A TLS server speaking secmsg/1 from Python (the harness's codec) that
    answers the first MSG with whatever reply() builds."""

    def __init__(self, reply):
        self.dir = tempfile.mkdtemp(prefix="secmsg-liar-")
        self.keys = Keys(make_credentials(self.dir))
        self.cafile = os.path.join(self.dir, "tls.crt")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cafile, os.path.join(self.dir, "tls.key"))
        ctx.set_alpn_protocols(["secmsg/1"])
        self.ctx, self.reply = ctx, reply
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(20)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.listener.accept()
        with self.ctx.wrap_socket(conn, server_side=True) as tls:
            buf = b""
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                buf += tls.recv(65536)
            _, seq, msg = open_frame(self.keys, buf[:4 + struct.unpack(">I", buf[:4])[0]])
            tls.sendall(self.reply(self.keys, seq, msg))
            time.sleep(0.5)

    def args(self):
        return ["--port", str(self.port), "--ca-file", self.cafile,
                "--psk-file", os.path.join(self.dir, "psk")]


class AgainstLyingServer(unittest.TestCase):
    def run_against(self, reply):
        server = LyingServer(reply)  # serves one connection: no retrying
        r = ch.run(server.args() + ["-m", "pay 10 EUR", "--retry-for", "0"])
        server.thread.join(10)
        server.listener.close()
        return r


class TestLyingServer(AgainstLyingServer):
    """A server that lies in its ACK is caught (the check itself is tested in
    tests/cli/test_client_session.cpp; this is the same through the binary)."""

    def test_ack_with_the_digest_of_another_message(self):
        def reply(keys, seq, msg):
            return seal(keys, ACK, 0, struct.pack(">Q", seq) +
                        hashlib.sha256(b"pay 1000 EUR").digest() + b"recorded")
        r = self.run_against(reply)
        self.assertEqual(r.returncode, EX_PROTOCOL, r.stderr)
        self.assertIn(b"digest", r.stderr)

    def test_ack_for_another_seq(self):
        def reply(keys, seq, msg):
            return seal(keys, ACK, 0, struct.pack(">Q", seq + 1) +
                        hashlib.sha256(msg).digest() + b"recorded")
        r = self.run_against(reply)
        self.assertEqual(r.returncode, EX_PROTOCOL, r.stderr)

    def test_honest_ack_is_accepted(self):
        def reply(keys, seq, msg):
            return seal(keys, ACK, 0, struct.pack(">Q", seq) +
                        hashlib.sha256(msg).digest() + b"fine")
        r = self.run_against(reply)
        self.assertEqual(r.returncode, EX_OK, r.stderr)
        self.assertEqual(r.stdout, b"seq 0: fine\n")

    def test_error_frames_are_reported_with_code_and_reason(self):
        def reply(keys, seq, msg):
            return seal(keys, ERROR, 0, struct.pack(">HQ", 4, 2**64 - 1) + b"version says no")
        r = self.run_against(reply)
        self.assertEqual(r.returncode, EX_PROTOCOL, r.stderr)
        self.assertIn(b"ERROR 4", r.stderr)
        self.assertIn(b"version says no", r.stderr)


# What a hostile server (anyone holding the PSK) writes into its notes and
# reasons: a window title, a screen clear, colours, a raw C1 CSI, U+009B as
# UTF-8, a bare CR; and the escaped form the client must show instead.
HOSTILE = b"\x1b]0;owned\x07\x1b[2J\x1b[31mred\r\x9b6n\xc2\x9bok \xc3\xa9"
HOSTILE_SHOWN = b"\\x1b]0;owned\\x07\\x1b[2J\\x1b[31mred\\r\\x9b6n\\xc2\\x9bok \xc3\xa9"


class TestHostileServer(AgainstLyingServer):
    """Everything the server writes reaches the terminal escaped: control
    characters (C0, DEL, C1) and invalid UTF-8 as \\xHH, valid UTF-8 as it is."""

    def assertEscaped(self, r, where):
        out = r.stdout + r.stderr
        for c in list(range(0x00, 0x20)) + [0x7f] + list(range(0x80, 0xa0)):
            if c != 0x0a:
                self.assertNotIn(bytes([c]), out.replace(b"\xc2\x9b", b""),
                                 "raw control byte %#x in the output" % c)
        self.assertNotIn(b"\xc2\x9b", out, "raw U+009B in the output")
        self.assertIn(HOSTILE_SHOWN, where)

    def test_ack_note_is_escaped(self):
        def reply(keys, seq, msg):
            return seal(keys, ACK, 0, struct.pack(">Q", seq) + hashlib.sha256(msg).digest() + HOSTILE)
        r = self.run_against(reply)
        self.assertEqual(r.returncode, EX_OK, r.stderr)
        self.assertEscaped(r, r.stdout)

    def test_error_reason_is_escaped(self):
        def reply(keys, seq, msg):
            return seal(keys, ERROR, 0, struct.pack(">HQ", 4, 2**64 - 1) + HOSTILE)
        r = self.run_against(reply)
        self.assertEqual(r.returncode, EX_PROTOCOL, r.stderr)
        self.assertIn(b"ERROR 4", r.stderr)
        self.assertEscaped(r, r.stderr)

    def test_not_recorded_reason_is_escaped(self):
        def reply(keys, seq, msg):
            return seal(keys, ERROR, 0, struct.pack(">HQ", 6, seq) + HOSTILE)
        r = self.run_against(reply)
        self.assertEqual(r.returncode, EX_TEMPFAIL, r.stderr)
        self.assertIn(b"NOT recorded", r.stderr)
        self.assertEscaped(r, r.stderr)


# Runs a command in a fresh, small process and writes the child's peak RSS
# (ru_maxrss, KiB) to the file argv[1].  The kernel carries a process's peak
# over exec and counts what it inherited at fork, so the child must not be
# forked from this test process, which is larger than the client.
MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(args, stdin, env):
    """Runs secmsg with stdin from a file; returns (status, stdout, stderr,
    its peak RSS in KiB)."""
    with tempfile.NamedTemporaryFile() as rss:
        r = subprocess.run([sys.executable, "-S", "-c", MEASURE, rss.name] + ch.command(args),
                           stdin=stdin, capture_output=True, env=env, timeout=300)
        with open(rss.name) as f:
            peak = int(f.read() or 0)
        return r.returncode, r.stdout, r.stderr, peak


@unittest.skipIf(os.environ.get("SECMSG_WRAPPER"), "measures the client's own memory")
class TestMemory(ClientTest):
    """The client's memory is bounded whatever the input."""

    def input_file(self, size=None, lines=None):
        f = tempfile.TemporaryFile()
        if size is not None:
            chunk = b"z" * (1 << 20)
            for _ in range(size >> 20):
                f.write(chunk)
        else:
            for start in range(0, lines, 10000):
                f.write(b"".join(b"m%07d\n" % i for i in range(start, min(lines, start + 10000))))
        f.seek(0)
        return f

    def test_whole_refuses_input_above_16_mib_as_it_reads_and_sends_nothing(self):
        with self.input_file(size=20 << 20) as f:
            status, _, err, rss = run_measured(ch.trust_args(self.d) + ["--whole"], f, self.env)
        self.assertEqual(status, EX_DATAERR, err)
        self.assertIn(b"larger than 16777216 bytes", err)
        self.assertIn(b"nothing was sent", err)
        # Reading stops one byte past 16 MiB: what is held is that, plus the
        # program itself (a few MiB); reading all 20 MB would exceed this.
        self.assertLess(rss, 28 * 1024, "peak RSS %d KiB" % rss)
        # Not even a connection: no TLS session appears in the daemon's log.
        self.assertFalse(self.d.wait_log(r"closed: tls TLSv", timeout=1), self.d.log())
        self.assertEqual(self.recorded(), [])

    def test_pipe_mode_keeps_nothing_per_acknowledged_message(self):
        d = self.start_daemon(record="none")
        rss = {}
        for n in (20000, 1000000):
            with self.input_file(lines=n) as f:
                status, _, err, rss[n] = run_measured(ch.trust_args(d), f, self.env)
            self.assertEqual(status, EX_OK, err)
            self.assertIn(b"%d of %d messages acknowledged" % (n, n), err)
        # 980,000 more messages, the same memory: 8 bytes kept per message
        # would be 7.5 MiB more.
        self.assertLess(rss[1000000] - rss[20000], 3 * 1024, rss)


class TestClientHello(unittest.TestCase):
    """What the client offers, read off the wire by a plain TCP listener."""

    def test_offers_tls_1_3_alpn_and_an_x25519_key_share_first(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        home = tempfile.mkdtemp(prefix="secmsg-home-")
        creds = os.path.join(home, "creds")
        make_credentials(creds)
        p = subprocess.Popen(ch.command(["--port", str(port), "--insecure",
                                         "--psk-file", os.path.join(creds, "psk"), "-m", "x",
                                         "--connect-timeout", "5", "--retry-for", "0"]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=ch.clean_env(home))
        try:
            ext = ch.read_client_hello(listener)
        finally:
            listener.close()
            p.communicate(timeout=30)
        self.assertEqual(p.returncode, EX_UNAVAILABLE, "closed during the handshake")
        self.assertEqual(ch.key_share_groups(ext[51])[0], 0x001d, "X25519 first")
        self.assertEqual(ch.alpn_protocols(ext[16]), ["secmsg/1"])
        versions = ext[43][1:]
        self.assertEqual([versions[i:i + 2] for i in range(0, len(versions), 2)], [b"\x03\x04"])

    def test_a_server_that_does_not_speak_tls_is_a_protocol_error(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(20)
        home = tempfile.mkdtemp(prefix="secmsg-home-")
        make_credentials(os.path.join(home, "creds"))
        p = subprocess.Popen(ch.command(["--port", str(listener.getsockname()[1]), "--insecure",
                                         "--psk-file", os.path.join(home, "creds", "psk"),
                                         "-m", "x"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=ch.clean_env(home))
        try:
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            _, err = p.communicate(timeout=30)
            conn.close()
        finally:
            listener.close()
        self.assertEqual(p.returncode, EX_PROTOCOL, err)
        self.assertIn(b"TLS handshake", err)


if __name__ == "__main__":
    unittest.main()

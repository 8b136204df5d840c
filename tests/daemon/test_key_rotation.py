#!/usr/bin/python3
"""Black-box tests of key rotation: a PSK file with several keys on the
server, clients each holding one of them (the real secmsg binary, and the
harness's independent client), every record naming the key its connection
used (key=, SECMSG_KEY) as the fingerprint the daemon logged at start; a key
added, then removed, with SIGHUP in between (new connections only); nine
keys, or one key twice, refused with a clear error.

Fingerprints are computed here independently: the first 8 bytes, in hex, of
SHA-256("secmsg/1 key fingerprint" || PSK).

Run: SECMSGD=build/daemon/secmsgd SECMSG=build/cli/secmsg python3 test_key_rotation.py
"""

import base64
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from secmsg_harness import MESSAGE_LINE, NO_SEQ, Client, Daemon, Keys  # noqa: E402
import client_harness as ch  # noqa: E402

EX_OK, EX_PROTOCOL, EX_CONFIG = 0, 76, 78


def fingerprint(psk):
    return hashlib.sha256(b"secmsg/1 key fingerprint" + psk).hexdigest()[:16]


def write_psk_file(path, psks):
    """One base64 key per line, mode 0600, replaced atomically."""
    tmp = path + ".new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(b"".join(base64.b64encode(k) + b"\n" for k in psks))
    os.rename(tmp, path)
    return path


class KeyRotationTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="secmsg-keys-")
        self.old, self.new = os.urandom(32), os.urandom(32)
        self.d = Daemon()
        self.server_psk = os.path.join(self.d.creds, "psk")
        self.client_files = 0
        self.env = ch.clean_env(home=os.path.join(self.work, "home"))

    def tearDown(self):
        self.d.stop()
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.d.dir, ignore_errors=True)

    def serve(self, psks):
        write_psk_file(self.server_psk, psks)
        self.d.start()

    def reload(self, psks):
        """Rewrites the server's PSK file and waits for the reload's log line."""
        write_psk_file(self.server_psk, psks)
        before = self.d.log().count("reloaded certificate")
        self.d.signal(signal.SIGHUP)
        self.assertTrue(self.d.wait_log(r"reloaded certificate", count=before + 1), self.d.log())
        return self.d.log().split("reloaded certificate")[-1].split("\n")[0]

    def client_file(self, *psks):
        """A client's PSK file holding these keys, in this order."""
        self.client_files += 1
        return write_psk_file(os.path.join(self.work, "client-%d.psk" % self.client_files), psks)

    def secmsg(self, psk_file, *messages):
        args = ["--port", str(self.d.port), "--ca-file", self.d.cafile, "--psk-file", psk_file]
        for m in messages:
            args += ["-m", m]
        return ch.run(args, env=self.env, timeout=60)

    def assertStatus(self, r, status):
        self.assertEqual(r.returncode, status, "stderr: " + r.stderr.decode(errors="replace"))

    def logged_fingerprints(self, line):
        m = re.search(r"PSK (?:\S+ )?\((\d+) keys?: ([0-9a-f, ]+)\)", line)
        self.assertIsNotNone(m, line)
        fps = m.group(2).split(", ")
        self.assertEqual(int(m.group(1)), len(fps))
        return fps

    def start_line(self):
        m = re.search(r"^.*listening on .*$", self.d.log(), re.M)
        self.assertIsNotNone(m, self.d.log())
        return m.group(0)

    def keys_by_text(self):
        """{payload text: key=} of every --record stderr line."""
        out = {}
        for line in self.d.log().split("\n"):
            m = MESSAGE_LINE.match(line)
            if m:
                out[m["text"]] = m["key"]
        return out

    def wait_recorded(self, text):
        self.assertTrue(self.d.wait_log('text="%s"' % re.escape(text)), self.d.log())

    def refused_with_error_2(self, psk):
        """A harness client on `psk` gets ERROR 2 and the connection closes.
        The ERROR is sealed under the server's first key (the server cannot
        know the client's), so it is read here with that key."""
        with open(self.server_psk, "rb") as f:
            first = base64.b64decode(f.readline())
        c = Client(self.d.port, self.d.cafile, psk)
        try:
            c.send(b"under a key the server does not hold")
            c.keys = Keys(first)
            code, ref, reason = c.expect_error()
            self.assertEqual((code, ref), (2, NO_SEQ), reason)
            self.assertTrue(c.expect_close())
        finally:
            c.close()


class TestTwoKeys(KeyRotationTest):
    def test_clients_on_each_key_are_recorded_with_its_fingerprint(self):
        self.serve([self.old, self.new])
        fps = self.logged_fingerprints(self.start_line())
        self.assertEqual(fps, [fingerprint(self.old), fingerprint(self.new)])

        r = self.secmsg(self.client_file(self.old), "on the old key")
        self.assertStatus(r, EX_OK)
        r = self.secmsg(self.client_file(self.new), "on the new key")
        self.assertStatus(r, EX_OK)
        c = Client(self.d.port, self.d.cafile, self.new)  # the independent implementation
        for i in range(3):
            c.send(b"harness %d on the new key" % i)
            c.expect_ack(i)
        c.close()
        self.wait_recorded("harness 2 on the new key")

        keys = self.keys_by_text()
        self.assertEqual(keys["on the old key"], fps[0])
        self.assertEqual(keys["on the new key"], fps[1])
        for i in range(3):
            self.assertEqual(keys["harness %d on the new key" % i], fps[1])
        self.assertNotEqual(fps[0], fps[1])

    def test_a_client_seals_with_the_first_key_of_its_file(self):
        self.serve([self.old, self.new])
        r = self.secmsg(self.client_file(self.new, self.old), "first line is the new key")
        self.assertStatus(r, EX_OK)
        r = self.secmsg(self.client_file(self.old, self.new), "first line is the old key")
        self.assertStatus(r, EX_OK)
        self.wait_recorded("first line is the old key")
        keys = self.keys_by_text()
        self.assertEqual(keys["first line is the new key"], fingerprint(self.new))
        self.assertEqual(keys["first line is the old key"], fingerprint(self.old))

    def test_check_config_prints_the_fingerprints(self):
        write_psk_file(self.server_psk, [self.old, self.new])
        r = subprocess.run(self.d.command() + ["--check-config"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration OK", r.stdout)
        self.assertEqual(self.logged_fingerprints(r.stdout),
                         [fingerprint(self.old), fingerprint(self.new)])


class TestRotation(KeyRotationTest):
    def test_add_move_remove(self):
        """The procedure of secmsgd(8): add the new key, reload, move the
        clients, see nobody on the old one, remove it, reload."""
        self.serve([self.old])
        old_file, new_file = self.client_file(self.old), self.client_file(self.new)
        self.assertStatus(self.secmsg(old_file, "before the rotation"), EX_OK)
        r = self.secmsg(new_file, "too early on the new key")
        self.assertStatus(r, EX_PROTOCOL)
        self.assertIn(b"authentication", r.stderr)

        line = self.reload([self.old, self.new])
        self.assertEqual(self.logged_fingerprints(line), [fingerprint(self.old), fingerprint(self.new)])
        self.assertStatus(self.secmsg(old_file, "old key, both held"), EX_OK)
        self.assertStatus(self.secmsg(new_file, "new key, both held"), EX_OK)

        # A connection opened on the old key before its removal keeps it.
        lingering = Client(self.d.port, self.d.cafile, self.old)
        lingering.send(b"old key, opened before the removal")
        lingering.expect_ack(0)

        line = self.reload([self.new])
        self.assertEqual(self.logged_fingerprints(line), [fingerprint(self.new)])
        r = self.secmsg(old_file, "old key after its removal")
        self.assertStatus(r, EX_PROTOCOL)
        self.assertIn(b"authentication", r.stderr)
        self.refused_with_error_2(self.old)
        self.assertStatus(self.secmsg(new_file, "new key after the removal"), EX_OK)

        lingering.send(b"old key, still the same connection")
        lingering.expect_ack(1)
        lingering.close()
        self.wait_recorded("old key, still the same connection")

        keys = self.keys_by_text()
        self.assertEqual(keys["before the rotation"], fingerprint(self.old))
        self.assertEqual(keys["old key, both held"], fingerprint(self.old))
        self.assertEqual(keys["new key, both held"], fingerprint(self.new))
        self.assertEqual(keys["new key after the removal"], fingerprint(self.new))
        self.assertEqual(keys["old key, opened before the removal"], fingerprint(self.old))
        self.assertEqual(keys["old key, still the same connection"], fingerprint(self.old))
        self.assertNotIn("old key after its removal", keys)
        self.assertNotIn("too early on the new key", keys)
        self.assertNotIn("under a key the server does not hold", keys)


class TestRefusedFiles(KeyRotationTest):
    def run_check(self, psks=None, text=None):
        if text is None:
            write_psk_file(self.server_psk, psks)
        else:
            fd = os.open(self.server_psk, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(text)
        return subprocess.run(self.d.command() + ["--check-config"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)

    def assertRefused(self, r, message):
        self.assertEqual(r.returncode, EX_CONFIG, r.stderr)
        self.assertIn(message, r.stderr)

    def test_nine_keys_are_refused_eight_accepted(self):
        keys = [os.urandom(32) for _ in range(9)]
        self.assertRefused(self.run_check(keys),
                           "PSK file %s has 9 lines: it may hold at most 8 keys, one per line"
                           % self.server_psk)
        r = self.run_check(keys[:8])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.logged_fingerprints(r.stdout), [fingerprint(k) for k in keys[:8]])
        # At start too (not only in --check-config).
        write_psk_file(self.server_psk, keys)
        r = subprocess.run(self.d.command(), stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=60)
        self.assertRefused(r, "has 9 lines: it may hold at most 8 keys")

    def test_nine_keys_on_sighup_keep_the_previous_keys(self):
        self.serve([self.old])
        write_psk_file(self.server_psk, [self.old] + [os.urandom(32) for _ in range(8)])
        self.d.signal(signal.SIGHUP)
        self.assertTrue(self.d.wait_log(r"reload failed, keeping the previous credentials: PSK file "
                                        r"\S+ has 9 lines"), self.d.log())
        self.assertStatus(self.secmsg(self.client_file(self.old), "still served"), EX_OK)

    def test_bad_lines_are_named(self):
        valid = base64.b64encode(self.old) + b"\n"
        other = base64.b64encode(self.new) + b"\n"
        cases = [
            (valid + other + valid, "line 3 holds the same key as line 1"),
            (valid + b"\n" + other, "line 2 is empty: blank lines are not allowed"),
            (valid + b"# the new key\n" + other, "line 2: comments are not allowed"),
            (valid + other[:-1] + b"\r\n", "line 2 ends with a carriage return"),
            (valid + other[:20] + b"\n", "line 2: not a secmsg key"),
        ]
        for text, message in cases:
            with self.subTest(message=message):
                self.assertRefused(self.run_check(text=text),
                                   "PSK file %s %s" % (self.server_psk, message))


if __name__ == "__main__":
    unittest.main()

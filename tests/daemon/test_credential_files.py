#!/usr/bin/python3
"""Black-box tests of how secmsgd opens its credential files: a FIFO (or a
key others can read, or a file another user owns) is refused at once with a
clear message and exit status 78, at start, in --check-config, and on
SIGHUP (where the loop keeps serving with the old credentials);
--init-credentials refuses a directory others can write.

Run: SECMSGD=build/daemon/secmsgd python3 test_credential_files.py
"""

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from secmsg_harness import Daemon  # noqa: E402

EXIT_CONFIG = 78
PROMPT = 10  # seconds: far more than a refusal takes, far less than a hang


def fifo_instead_of(path):
    os.unlink(path)
    os.mkfifo(path, 0o600)


class CredentialFileTest(unittest.TestCase):
    def setUp(self):
        self.fresh_daemon()

    def fresh_daemon(self):
        """A daemon with its own credentials in self.d.creds, not started."""
        self.d = Daemon()
        self.addCleanup(shutil.rmtree, self.d.dir, True)

    def run_daemon(self, *extra):
        """Runs secmsgd to completion; a hang is a failure, not a stuck test."""
        try:
            return subprocess.run(self.d.command() + list(extra), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=PROMPT)
        except subprocess.TimeoutExpired:
            self.fail("secmsgd did not exit within %d s (blocked opening a credential file?)" % PROMPT)

    def expect_refusal(self, result, *fragments):
        self.assertEqual(result.returncode, EXIT_CONFIG, result.stderr)
        for f in fragments:
            self.assertIn(f, result.stderr)

    def test_fifo_at_start_and_in_check_config(self):
        for name, label in (("psk", "PSK file"), ("tls.key", "private key file"),
                            ("tls.crt", "certificate file")):
            with self.subTest(name=name):
                self.fresh_daemon()
                path = os.path.join(self.d.creds, name)
                fifo_instead_of(path)
                message = "%s %s is a FIFO, not a regular file" % (label, path)
                self.expect_refusal(self.run_daemon(), message)
                self.expect_refusal(self.run_daemon("--check-config"), message)

    def test_key_others_can_read_is_refused(self):
        key = os.path.join(self.d.creds, "tls.key")
        os.chmod(key, 0o644)
        self.expect_refusal(self.run_daemon("--check-config"),
                            "private key file %s has mode 0644" % key, "chmod 600 %s" % key)
        os.chmod(key, 0o600)
        crt = os.path.join(self.d.creds, "tls.crt")
        os.chmod(crt, 0o644)  # a certificate may be public
        r = self.run_daemon("--check-config")
        self.assertEqual(r.returncode, 0, r.stderr)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to give a file to another user")
    def test_psk_owned_by_another_user_is_refused(self):
        psk = os.path.join(self.d.creds, "psk")
        os.chown(psk, 65534, 65534)
        self.expect_refusal(self.run_daemon("--check-config"),
                            "PSK file %s is owned by uid 65534" % psk, "chown root %s" % psk)

    def test_sighup_with_a_fifo_psk_keeps_serving(self):
        d = self.d
        d.start()
        try:
            fifo_instead_of(os.path.join(d.creds, "psk"))
            d.signal(signal.SIGHUP)
            self.assertTrue(d.wait_log(r"reload failed, keeping the previous credentials: "
                                       r"PSK file .*/psk is a FIFO", timeout=PROMPT), d.log())
            started = time.monotonic()
            c = d.client(timeout=PROMPT)
            c.send(b"served after a reload that found a FIFO")
            c.expect_ack(0)
            c.close()
            self.assertLess(time.monotonic() - started, PROMPT)
            # SIGTERM is still handled by the loop: a clean exit.
            self.assertEqual(d.stop(timeout=PROMPT), 0, d.log())
        finally:
            if d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()

    def test_init_credentials_refuses_a_directory_others_can_write(self):
        shared = os.path.join(self.d.dir, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o1777)  # like /tmp
        r = subprocess.run([self.d.binary, "--init-credentials", shared], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
        self.expect_refusal(r, "credentials directory %s has mode 1777, writable by others" % shared,
                            "chmod go-w %s" % shared)
        self.assertEqual(os.listdir(shared), [])
        os.chmod(shared, 0o700)
        r = subprocess.run([self.d.binary, "--init-credentials", shared], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("valid until", r.stdout)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(shared, "tls.key")).st_mode), 0o600)


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/python3
"""Client identities (mutual TLS): the real secmsgd with --client-ca and
--allow-client, real TLS clients: Python's ssl module (an implementation
outside this codebase) and the real secmsg binary with --cert/--key and
--init-identity.  Certificates, among them a CA made for the test, come from
python3-cryptography; pins are computed with it too.

  TestCA        a CA alone: its client accepted and named (client= in the
                record line and in the summary line), another CA's client, a
                self-signed one and one without a certificate refused with a
                TLS alert and one log line naming why; no session ticket
  TestNames     a name allowlist with the CA: the named client only; a name
                without --client-ca is refused at start (exit 78)
  TestPins      a pin allowlist without a CA: a self-signed client by its key
  TestReload    the allowlist in secmsgd.conf, changed and reloaded on SIGHUP:
                the client allowed before is refused after and the reverse;
                an open connection keeps going
  TestClient    secmsg --init-identity (files, modes, pin, idempotent, unsafe
                directory refused), --cert/--key accepted and refused (exit 77)
  TestJournal   SECMSG_CLIENT and SECMSG_CLIENT_PIN in a real journald's entry
                (root only; skipped otherwise)
"""

import base64
import datetime
import hashlib
import os
import re
import shutil
import signal
import ssl
import stat
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from secmsg_harness import Client, tls_context  # noqa: E402
import secmsg_harness  # noqa: E402
import journald_harness as jh  # noqa: E402
import client_harness as ch  # noqa: E402
from client_harness import pin_of as pin_of_file  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

NOW = datetime.datetime.now(datetime.timezone.utc)
REFUSED = re.compile(r"alert|certificate|EOF|reset", re.I)


def pin_of_key(key):
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


class Identities:
    """A CA, another CA, and client certificates in a temporary directory:
    alice and bob (signed by the CA, DNS names), foreign (another CA's,
    named alice), mallory (self-signed, named alice), selfie and selfie2
    (self-signed, for pins)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="secmsg-mtls-")
        self.pins = {}
        ca_key, ca = self.ca("test client CA")
        other_key, _ = self.ca("other CA", save=False)
        self.client("alice", "alice.example.com", ca_key, "test client CA")
        self.client("bob", "bob.example.com", ca_key, "test client CA")
        self.client("foreign", "alice.example.com", other_key, "other CA")
        self.client("mallory", "alice.example.com", None, None)
        self.client("selfie", None, None, None)
        self.client("selfie2", None, None, None)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, stem, cert, key):
        with open(self.path(stem + ".crt"), "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(self.path(stem + ".key"), os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))

    def ca(self, cn, save=True):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOW - datetime.timedelta(hours=1))
                .not_valid_after(NOW + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
                .sign(key, hashes.SHA256()))
        if save:
            self.write("ca", cert, key)
        return key, cert

    def client(self, stem, dns, issuer_key, issuer_cn):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)])
        issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]) if issuer_cn else subject
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(NOW - datetime.timedelta(hours=1))
             .not_valid_after(NOW + datetime.timedelta(days=2))
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False))
        if dns:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), False)
        self.write(stem, b.sign(issuer_key or key, hashes.SHA256()), key)
        self.pins[stem] = pin_of_key(key)

    def context(self, daemon, stem):
        ctx = tls_context(daemon.cafile)
        if stem:
            ctx.load_cert_chain(self.path(stem + ".crt"), self.path(stem + ".key"))
        return ctx

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


IDS = None


class Daemon(secmsg_harness.Daemon):
    """The harness's daemon, whose exit status must be 0 (under valgrind:
    no memory error, no definite leak)."""

    def __exit__(self, *exc):
        rc = self.stop()
        log = self.log()
        super().__exit__(*exc)
        if exc[0] is None and rc != 0:
            raise AssertionError("secmsgd exited with %s:\n%s" % (rc, log))


def setUpModule():
    global IDS
    IDS = Identities()


def tearDownModule():
    IDS.cleanup()


def local_port(client):
    return client.tls.getsockname()[1]


class Base(unittest.TestCase):
    def accepted(self, d, stem, payload=b"hello"):
        """Sends one message as `stem` and checks its ACK; returns the client."""
        c = Client(d.port, d.cafile, d.psk, ctx=IDS.context(d, stem))
        seq = c.send(payload + b" from " + stem.encode())
        c.expect_ack(seq)
        return c

    def refused(self, d, stem):
        """Connects as `stem` (None: no certificate): the server must end
        the connection with a TLS alert before any ACK; returns the client's
        local port (its peer in the log)."""
        try:
            c = Client(d.port, d.cafile, d.psk, ctx=IDS.context(d, stem))
        except (ssl.SSLError, ConnectionResetError) as e:  # TLS 1.2 would say it here
            self.assertRegex(str(e), REFUSED)
            return None
        port = local_port(c)
        with self.assertRaises((ssl.SSLError, ConnectionResetError, BrokenPipeError)) as cm:
            c.send(b"should not be recorded")
            c.expect_ack(0)
        self.assertRegex(str(cm.exception), REFUSED)
        c.close()
        return port

    def record_lines(self, d):
        return [line for line in d.log().split("\n") if line.startswith("message ")]

    def wait_summary(self, d, port, pattern):
        self.assertTrue(d.wait_log(r"peer 127\.0\.0\.1:%d closed:.*%s" % (port, pattern)), d.log())


class TestCA(Base):
    def test_ca_alone(self):
        with Daemon(args=["--client-ca", IDS.path("ca.crt")]) as d:
            c = self.accepted(d, "alice")
            port = local_port(c)
            c.close()
            self.wait_summary(d, port, r"reason client-closed, client=alice\.example\.com$")
            lines = self.record_lines(d)
            self.assertEqual(len(lines), 1, d.log())
            self.assertIn(" client=alice.example.com ", lines[0])

            for stem, why in [("foreign", "does not chain to a client CA"),
                              ("mallory", "does not chain to a client CA"),
                              (None, "the client presented no certificate")]:
                port = self.refused(d, stem)
                if port is not None:
                    self.wait_summary(d, port, r"reason tls-failed: TLS handshake failed: .*" + re.escape(why))
                if stem:
                    self.assertTrue(d.wait_log(re.escape(IDS.pins[stem]) + ".* does not chain"), d.log())
            self.assertEqual(len(self.record_lines(d)), 1, d.log())
            self.assertIn("client certificates required (CA %s)" % IDS.path("ca.crt"), d.log())

    def test_no_session_ticket(self):
        """A resumed session would show no certificate: none is offered."""
        def has_ticket(c):
            time.sleep(0.2)  # tickets come after the handshake: let them arrive
            c.tls.setblocking(False)
            try:
                c.tls.recv(1)
            except (ssl.SSLWantReadError, BlockingIOError):
                pass
            session = c.tls.session
            c.close()
            return session is not None and session.has_ticket

        with Daemon(args=["--client-ca", IDS.path("ca.crt")]) as d:
            self.assertFalse(has_ticket(self.accepted(d, "alice")))
        with Daemon() as d:  # without mutual TLS tickets are issued as before
            c = d.client()
            c.expect_ack(c.send(b"x"))
            self.assertTrue(has_ticket(c))


class TestNames(Base):
    def test_name_allowlist(self):
        with Daemon(args=["--client-ca", IDS.path("ca.crt"), "--allow-client", "bob.example.com"]) as d:
            self.accepted(d, "bob").close()
            port = self.refused(d, "alice")
            if port is not None:
                self.wait_summary(d, port, r"client key %s \(names alice\.example\.com\) matches no allowed client"
                                  % re.escape(IDS.pins["alice"]))
            self.refused(d, "foreign")
            self.refused(d, None)
            lines = self.record_lines(d)
            self.assertEqual(len(lines), 1, d.log())
            self.assertIn(" client=bob.example.com ", lines[0])

    def test_name_without_ca_is_a_configuration_error(self):
        d = Daemon(args=["--allow-client", "alice.example.com"])
        try:
            d.start(wait=False)
            rc = d.proc.wait(30)
            self.assertEqual(rc, 78, d.log())
            self.assertIn("only a CA can vouch for", d.log())
        finally:
            d.stop()
            shutil.rmtree(d.dir, ignore_errors=True)
        for bad in ["sha256:nope", "*.example.com"]:
            d = Daemon(args=["--allow-client", bad, "--check-config"])
            try:
                d.start(wait=False)
                self.assertEqual(d.proc.wait(30), 78, d.log())
                self.assertIn("allowed client " + bad, d.log())
                self.assertIn("(--allow-client", d.log())  # secmsgd names its option
            finally:
                d.stop()
                shutil.rmtree(d.dir, ignore_errors=True)


class TestPins(Base):
    def test_pin_allowlist(self):
        pin = IDS.pins["selfie"]
        with Daemon(args=["--allow-client", pin, "--allow-client", IDS.pins["bob"]]) as d:
            c = self.accepted(d, "selfie")
            port = local_port(c)
            c.close()
            self.accepted(d, "bob").close()  # a CA-signed certificate, allowed by its key
            self.wait_summary(d, port, r", client=" + re.escape(pin) + "$")
            self.refused(d, "selfie2")
            self.refused(d, "mallory")
            self.refused(d, None)
            lines = self.record_lines(d)
            self.assertEqual(len(lines), 2, d.log())
            self.assertIn(" client=" + pin + " ", lines[0])
            self.assertTrue(d.wait_log(re.escape(IDS.pins["selfie2"]) + r" \(no subjectAltName\) matches no"),
                            d.log())


class TestReload(Base):
    def test_allowlist_reloaded_on_sighup(self):
        conf_dir = tempfile.mkdtemp(prefix="secmsgd-conf-")
        conf = os.path.join(conf_dir, "secmsgd.conf")
        try:
            with open(conf, "w") as f:
                f.write('allow-client = ["%s"]\n' % IDS.pins["selfie"])
            with Daemon(args=["--config", conf]) as d:
                kept = self.accepted(d, "selfie")
                self.refused(d, "selfie2")
                with open(conf, "w") as f:
                    f.write('client-ca = "%s"\nallow-client = ["%s", "alice.example.com"]\n'
                            % (IDS.path("ca.crt"), IDS.pins["selfie2"]))
                d.signal(signal.SIGHUP)
                self.assertTrue(d.wait_log(r"reloaded .*client certificates required \(CA .*\), 2 allowed"),
                                d.log())
                self.refused(d, "selfie")  # allowed before, refused after
                self.accepted(d, "alice").close()  # by name, now that there is a CA
                # selfie2 is self-signed: with a CA now required, its pin alone is not enough
                self.refused(d, "selfie2")
                # the connection made before the reload keeps its identity and goes on
                kept.expect_ack(kept.send(b"still here"))
                kept.close()
                with open(conf, "w") as f:
                    f.write('allow-client = ["%s"]\n' % IDS.pins["selfie2"])
                d.signal(signal.SIGHUP)
                self.assertTrue(d.wait_log(r"reloaded .*1 allowed", count=1), d.log())
                self.accepted(d, "selfie2").close()  # refused before, allowed after
                self.refused(d, "alice")
                # a broken configuration keeps the previous policy
                with open(conf, "w") as f:
                    f.write('allow-client = ["not a name"]\n')
                d.signal(signal.SIGHUP)
                self.assertTrue(d.wait_log(r"reload failed, keeping the previous credentials: "
                                           r"allowed client not a name: .*\(--allow-client"), d.log())
                self.accepted(d, "selfie2").close()
                clients = [re.search(r" client=(\S+)", line).group(1) for line in self.record_lines(d)]
                self.assertEqual(clients, [IDS.pins["selfie"], "alice.example.com", IDS.pins["selfie"],
                                           IDS.pins["selfie2"], IDS.pins["selfie2"]], d.log())
        finally:
            shutil.rmtree(conf_dir, ignore_errors=True)


def secmsg(args):
    return ch.run(args)


class TestClient(Base):
    def test_init_identity_and_cert_key(self):
        top = tempfile.mkdtemp(prefix="secmsg-identity-")
        try:
            ident = os.path.join(top, "id")
            r = secmsg(["--init-identity", ident])
            self.assertEqual(r.returncode, 0, r.stderr)
            out = r.stdout.decode()
            key, crt = os.path.join(ident, "client.key"), os.path.join(ident, "client.crt")
            self.assertEqual(stat.S_IMODE(os.stat(ident).st_mode), 0o700)
            self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
            self.assertEqual(stat.S_IMODE(os.stat(crt).st_mode), 0o644)
            pin = pin_of_file(crt)
            self.assertIn("--allow-client " + pin + "\n", out)
            self.assertIn("secmsg --cert %s --key %s" % (crt, key), out)
            with open(crt, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            self.assertEqual(list(eku), [ExtendedKeyUsageOID.CLIENT_AUTH])
            self.assertIsInstance(cert.public_key(), ec.EllipticCurvePublicKey)
            # idempotent: same pin, nothing created
            r = secmsg(["--init-identity", ident])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("identity already present, nothing created", r.stdout.decode())
            self.assertIn(pin, r.stdout.decode())
            # Ed25519 on request
            r = secmsg(["--init-identity", os.path.join(top, "ed"), "--key-type", "ed25519"])
            self.assertEqual(r.returncode, 0, r.stderr)
            ed_crt = os.path.join(top, "ed", "client.crt")
            # a directory others can write is refused
            unsafe = os.path.join(top, "unsafe")
            os.mkdir(unsafe)
            os.chmod(unsafe, 0o777)
            r = secmsg(["--init-identity", unsafe])
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(unsafe, r.stderr.decode())
            self.assertFalse(os.path.exists(os.path.join(unsafe, "client.key")))

            with Daemon(args=["--allow-client", pin, "--allow-client", pin_of_file(ed_crt)]) as d:
                base = ["--port", str(d.port), "--ca-file", d.cafile, "--psk-file",
                        os.path.join(d.creds, "psk")]
                r = secmsg(base + ["--cert", crt, "--key", key, "-m", "from the identity"])
                self.assertEqual(r.returncode, 0, r.stderr + d.log().encode())
                r = secmsg(base + ["--cert", ed_crt, "--key", os.path.join(top, "ed", "client.key"),
                                   "-m", "from the ed25519 identity"])
                self.assertEqual(r.returncode, 0, r.stderr + d.log().encode())
                # another key, no key at all: refused, exit 77, never recorded
                for extra in (["--cert", IDS.path("selfie.crt"), "--key", IDS.path("selfie.key")], []):
                    r = secmsg(base + extra + ["-m", "refused"])
                    self.assertEqual(r.returncode, 77, r.stderr)
                    self.assertIn(b"refused this client", r.stderr)
                lines = self.record_lines(d)
                self.assertEqual(len(lines), 2, d.log())
                self.assertIn(" client=" + pin + " ", lines[0])
                # a key others can read, a key of another certificate, half a pair
                os.chmod(key, 0o644)
                r = secmsg(base + ["--cert", crt, "--key", key, "-m", "x"])
                self.assertEqual(r.returncode, 66, r.stderr)
                self.assertIn(b"chmod 600", r.stderr)
                os.chmod(key, 0o600)
                r = secmsg(base + ["--cert", crt, "--key", IDS.path("selfie.key"), "-m", "x"])
                self.assertEqual(r.returncode, 66, r.stderr)
                self.assertIn(b"does not belong to certificate", r.stderr)
                r = secmsg(base + ["--cert", crt, "-m", "x"])
                self.assertEqual(r.returncode, 66, r.stderr)
                self.assertIn(b"--cert and --key go together", r.stderr)
        finally:
            shutil.rmtree(top, ignore_errors=True)


class TestJournal(Base):
    """Run alone (argv TestJournal): main() moves it into a private mount
    namespace with its own journald first (journald_harness)."""

    def test_client_fields_in_the_journal(self):
        if not os.environ.get(jh.INNER_ENV):
            self.skipTest("run as `test_client_certs.py TestJournal` (a private journald)")
        with jh.Journald():
            with Daemon(record="journal", args=["--client-ca", IDS.path("ca.crt")]) as d:
                c = self.accepted(d, "alice", b"journal")
                peer = "127.0.0.1:%d" % local_port(c)
                c.close()
            with Daemon(record="journal") as plain:
                c = plain.client()
                c.expect_ack(c.send(b"no identity"))
                plain_peer = "127.0.0.1:%d" % local_port(c)
                c.close()
            got = jh.wait_entries(["SECMSG_PEER=" + peer], 1)
            self.assertEqual(len(got), 1)
            self.assertEqual(got[0].get("SECMSG_CLIENT"), b"alice.example.com")
            self.assertEqual(got[0].get("SECMSG_CLIENT_PIN"), IDS.pins["alice"].encode())
            got = jh.wait_entries(["SECMSG_PEER=" + plain_peer], 1)
            self.assertEqual(len(got), 1)
            self.assertNotIn("SECMSG_CLIENT", got[0])
            self.assertNotIn("SECMSG_CLIENT_PIN", got[0])


if __name__ == "__main__":
    if "TestJournal" in sys.argv[1:]:
        jh.in_private_namespace()  # outside: re-runs this inside and exits (77 without root)
    unittest.main()

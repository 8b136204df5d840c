"""Helpers for black-box tests of the secmsg client: running the binary with a
clean environment, driving it through a pseudo-terminal, computing pins with
python3-cryptography, and reading a TLS ClientHello off a plain TCP socket.
The daemon side comes from secmsg_harness.Daemon."""

import base64
import hashlib
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def secmsg_binary():
    return os.environ.get("SECMSG", "secmsg")


def command(args):
    """The command line that runs secmsg with args, under $SECMSG_WRAPPER
    (e.g. valgrind) when set."""
    return os.environ.get("SECMSG_WRAPPER", "").split() + [secmsg_binary()] + list(args)


def clean_env(home=None, **extra):
    """The environment for a client run: no user configuration, no PSK
    variable, unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECMSG_")}
    home = home or tempfile.mkdtemp(prefix="secmsg-home-")
    env["HOME"] = home
    env["XDG_CONFIG_HOME"] = os.path.join(home, ".config")
    env.update(extra)
    return env


def trust_args(daemon):
    """Options that make the client trust and reach `daemon`."""
    return ["--port", str(daemon.port), "--ca-file", daemon.cafile,
            "--psk-file", os.path.join(daemon.creds, "psk")]


def run(args, input=b"", env=None, timeout=120):
    """Runs secmsg with args; returns the CompletedProcess (bytes)."""
    return subprocess.run(command(args), input=input, capture_output=True,
                          env=env or clean_env(), timeout=timeout)


def pin_of(cert_path):
    """sha256:BASE64 of the SubjectPublicKeyInfo of a PEM certificate,
    computed independently of the project's code."""
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


class Terminal:
    """secmsg on a pseudo-terminal: its stdin, stdout and stderr are the
    terminal, as when a person runs it."""

    def __init__(self, args, env=None):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(command(args), stdin=slave, stdout=slave,
                                     stderr=slave, env=env or clean_env(),
                                     start_new_session=True)
        os.close(slave)
        self.screen = b""
        self.pos = 0  # output before this was matched by read_until

    def read_until(self, pattern, timeout=10):
        """Reads output until `pattern` (bytes) appears after the previous
        match; returns the text from the previous match to the end of this
        one.  Raises AssertionError on timeout or end of output."""
        deadline = time.time() + timeout
        while pattern not in self.screen[self.pos:]:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("no %r on the terminal; it shows:\n%s" %
                                     (pattern, self.screen.decode(errors="replace")))
            r, _, _ = select.select([self.master], [], [], left)
            if not r:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO: the other side is closed
                data = b""
            if not data:
                raise AssertionError("terminal closed before %r; it shows:\n%s" %
                                     (pattern, self.screen.decode(errors="replace")))
            self.screen += data
        start = self.pos
        self.pos = self.screen.index(pattern, self.pos) + len(pattern)
        return self.screen[start:self.pos].decode(errors="replace")

    def type(self, text):
        os.write(self.master, text)

    def wait(self, timeout=10):
        """Exit status; reads the rest of the output meanwhile."""
        deadline = time.time() + timeout
        while self.proc.poll() is None and time.time() < deadline:
            r, _, _ = select.select([self.master], [], [], 0.1)
            if r:
                try:
                    self.screen += os.read(self.master, 4096)
                except OSError:
                    pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            raise AssertionError("secmsg did not exit; terminal:\n" +
                                 self.screen.decode(errors="replace"))
        return self.proc.returncode

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def read_client_hello(listener, timeout=10):
    """Accepts one connection on a plain TCP listener and returns the
    ClientHello's extensions as {type: bytes}, then closes it."""
    listener.settimeout(timeout)
    conn, _ = listener.accept()
    conn.settimeout(timeout)
    data = b""
    try:
        while len(data) < 5 or len(data) < 5 + struct.unpack(">H", data[3:5])[0]:
            chunk = conn.recv(65536)
            if not chunk:
                raise AssertionError("connection closed inside the ClientHello")
            data += chunk
    finally:
        conn.close()
    assert data[0] == 22, "not a TLS handshake record"
    body = data[5:5 + struct.unpack(">H", data[3:5])[0]]
    assert body[0] == 1, "not a ClientHello"
    p = 4 + 2 + 32                       # handshake header, legacy_version, random
    p += 1 + body[p]                     # legacy_session_id
    p += 2 + struct.unpack(">H", body[p:p + 2])[0]  # cipher_suites
    p += 1 + body[p]                     # legacy_compression_methods
    end = p + 2 + struct.unpack(">H", body[p:p + 2])[0]
    p += 2
    ext = {}
    while p < end:
        t, n = struct.unpack(">HH", body[p:p + 4])
        ext[t] = body[p + 4:p + 4 + n]
        p += 4 + n
    return ext


def key_share_groups(ext_data):
    """The groups of the key_share extension's entries, in order."""
    n = struct.unpack(">H", ext_data[:2])[0]
    p, out = 2, []
    while p < 2 + n:
        group, klen = struct.unpack(">HH", ext_data[p:p + 4])
        out.append(group)
        p += 4 + klen
    return out


def alpn_protocols(ext_data):
    n = struct.unpack(">H", ext_data[:2])[0]
    p, out = 2, []
    while p < 2 + n:
        ln = ext_data[p]
        out.append(ext_data[p + 1:p + 1 + ln].decode())
        p += 1 + ln
    return out

"""Black-box test harness for secmsgd: an independent implementation of the
secmsg/1 wire protocol (Python's ssl module for TLS, python3-cryptography for
HKDF, AES-256-CBC and HMAC-SHA-256), throwaway credentials, and a wrapper
that runs the real daemon on a free port.

Nothing here uses the project's C++ code, so a test passing against it also
shows that the daemon interoperates with a second implementation of the spec.
"""

import base64
import datetime
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

MSG, ACK, ERROR = 1, 2, 3
NO_SEQ = 2**64 - 1
ALPN = "secmsg/1"


# ---------------------------------------------------------------- credentials

def make_credentials(directory, key_type="ecdsa", psk=None):
    """Writes tls.crt, tls.key (PEM, SAN localhost/127.0.0.1/::1) and psk
    (mode 0600) into directory; returns the 32 PSK bytes."""
    import ipaddress
    os.makedirs(directory, exist_ok=True)
    if key_type == "ed25519":
        key, algo = ed25519.Ed25519PrivateKey.generate(), None
    else:
        key, algo = ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, algo))
    with open(os.path.join(directory, "tls.crt"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(os.path.join(directory, "tls.key"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    psk = psk if psk is not None else os.urandom(32)
    fd = os.open(os.path.join(directory, "psk"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(psk) + b"\n")
    return psk


# ------------------------------------------------------------------- protocol

class Keys:
    """enc_key and mac_key of a PSK (HKDF-SHA-256, empty salt)."""

    def __init__(self, psk):
        def hkdf(info):
            return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=info).derive(psk)
        self.enc = hkdf(b"secmsg/1 aes-256-cbc")
        self.mac = hkdf(b"secmsg/1 hmac-sha256")


def seal(keys, ftype, seq, plaintext, iv=None, version=1):
    """One complete frame, length field included."""
    iv = iv if iv is not None else os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.AES(keys.enc), modes.CBC(iv)).encryptor()
    ct = enc.update(padded) + enc.finalize()
    body = struct.pack(">BBQ", version, ftype, seq) + iv + ct
    head = struct.pack(">I", len(body) + 32) + body
    return head + hmac.new(keys.mac, head, hashlib.sha256).digest()


class ProtocolViolation(Exception):
    pass


def open_frame(keys, frame):
    """Checks the tag, returns (type, seq, plaintext); raises ProtocolViolation."""
    if len(frame) < 78:
        raise ProtocolViolation("frame too short")
    body, tag = frame[:-32], frame[-32:]
    if not hmac.compare_digest(hmac.new(keys.mac, body, hashlib.sha256).digest(), tag):
        raise ProtocolViolation("bad tag")
    version, ftype, seq = struct.unpack(">BBQ", frame[4:14])
    if version != 1:
        raise ProtocolViolation("bad version")
    dec = Cipher(algorithms.AES(keys.enc), modes.CBC(frame[14:30])).decryptor()
    padded = dec.update(frame[30:-32]) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return ftype, seq, unpadder.update(padded) + unpadder.finalize()


def parse_ack(p):
    seq, = struct.unpack(">Q", p[:8])
    return seq, p[8:40], p[40:].decode()


def parse_error(p):
    code, ref = struct.unpack(">HQ", p[:10])
    return code, ref, p[10:].decode()


# --------------------------------------------------------------------- client

def tls_context(cafile, alpn=(ALPN,), max_version=None, min_version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if max_version:
        ctx.maximum_version = max_version
    if min_version:
        ctx.minimum_version = min_version
    return ctx


class Client:
    """A secmsg/1 client over TLS: sends MSGs, reads and checks ACKs."""

    def __init__(self, port, cafile, psk, host="127.0.0.1", timeout=10, ctx=None, session=None,
                 preamble=b""):
        """preamble: bytes sent before TLS (a PROXY protocol header)."""
        self.keys = Keys(psk)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.sendall(preamble)
        self.tls = (ctx or tls_context(cafile)).wrap_socket(self.sock, server_hostname="localhost",
                                                            session=session)
        self.tx_seq = 0
        self.rx_seq = 0
        self.buf = b""
        self.sent = {}  # seq -> payload

    def frame_for(self, payload, seq=None):
        seq = self.tx_seq if seq is None else seq
        return seal(self.keys, MSG, seq, payload)

    def send(self, payload):
        seq = self.tx_seq
        self.tls.sendall(self.frame_for(payload))
        self.sent[seq] = payload
        self.tx_seq += 1
        return seq

    def send_raw(self, data):
        self.tls.sendall(data)

    def read_frame(self):
        """(type, seq, plaintext) of the next frame; None on a clean close."""
        while True:
            if len(self.buf) >= 4:
                n, = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    frame, self.buf = self.buf[:4 + n], self.buf[4 + n:]
                    ftype, seq, p = open_frame(self.keys, frame)
                    if seq != self.rx_seq:
                        raise ProtocolViolation("server seq %d, expected %d" % (seq, self.rx_seq))
                    self.rx_seq += 1
                    return ftype, seq, p
            data = self.tls.recv(65536)
            if not data:
                if self.buf:
                    raise ProtocolViolation("connection closed inside a frame")
                return None
            self.buf += data

    def expect_ack(self, seq):
        """Reads the next frame and checks it is the right ACK for seq."""
        f = self.read_frame()
        if f is None:
            raise ProtocolViolation("closed while waiting for the ACK of %d" % seq)
        ftype, _, p = f
        if ftype == ERROR:
            raise ProtocolViolation("ERROR %r instead of ACK %d" % (parse_error(p), seq))
        acked, digest, note = parse_ack(p)
        if acked != seq or digest != hashlib.sha256(self.sent[seq]).digest():
            raise ProtocolViolation("ACK mismatch for %d" % seq)
        return note

    def expect_error(self):
        f = self.read_frame()
        if f is None:
            raise ProtocolViolation("closed without an ERROR frame")
        ftype, _, p = f
        if ftype != ERROR:
            raise ProtocolViolation("expected ERROR, got type %d" % ftype)
        return parse_error(p)

    def expect_close(self, timeout=10):
        """True when the server closes (close_notify or FIN) within timeout."""
        self.tls.settimeout(timeout)
        try:
            return self.read_frame() is None
        except (ssl.SSLError, ConnectionResetError, OSError):
            return True

    def close(self):
        try:
            self.tls.close()
        except OSError:
            pass


# --------------------------------------------------------------------- daemon

def built_with_asan(binary=None):
    """True when the secmsgd under test ($SECMSGD) is built with AddressSanitizer."""
    try:
        with open(binary or os.environ.get("SECMSGD", ""), "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# A --record stderr line; via, client and key appear only when known.
MESSAGE_LINE = re.compile(
    r"^message conn=(?P<conn>\d+) id=(?P<id>[0-9a-f]{32}-\d+) peer=(?P<peer>\S+)"
    r"(?: via=(?P<via>\S+))?(?: client=(?P<client>\S+))?(?: key=(?P<key>\S+))?"
    r" seq=(?P<seq>\d+) bytes=(?P<bytes>\d+) sha256=(?P<sha256>[0-9a-f]{64})"
    r" text=\"(?P<text>.*)\"$")


def unescape(text):
    """Inverse of the daemon's escape_payload (full, untruncated form)."""
    out = bytearray()
    i = 0
    b = text.encode()
    while i < len(b):
        c = b[i]
        if c == 0x5C:  # backslash
            n = b[i + 1]
            if n == ord("x"):
                out.append(int(b[i + 2:i + 4], 16))
                i += 4
                continue
            out += {ord("n"): b"\n", ord("t"): b"\t", ord("r"): b"\r",
                    ord("\\"): b"\\", ord('"'): b'"'}[n]
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


class Daemon:
    """The real secmsgd on a free port, with throwaway credentials, its
    stderr in a file.  Use as a context manager."""

    def __init__(self, binary=None, args=(), key_type="ecdsa", record="stderr", port=None,
                 stderr_path=None, wrapper=(), env=None, workdir=None):
        self.binary = binary or os.environ.get("SECMSGD", "secmsgd")
        self.dir = workdir or tempfile.mkdtemp(prefix="secmsgd-test-")
        self.own_dir = workdir is None
        self.creds = os.path.join(self.dir, "creds")
        self.psk = make_credentials(self.creds, key_type)
        self.cafile = os.path.join(self.creds, "tls.crt")
        self.port = port or free_port()
        self.log_path = stderr_path or os.path.join(self.dir, "stderr.log")
        self.args = list(args)
        self.record = record
        self.wrapper = list(wrapper) or os.environ.get("SECMSGD_WRAPPER", "").split()
        self.env = env
        self.proc = None
        self.connect_host = "127.0.0.1"

    def command(self):
        cmd = self.wrapper + [self.binary, "--port", str(self.port),
                              "--cert", os.path.join(self.creds, "tls.crt"),
                              "--key", os.path.join(self.creds, "tls.key"),
                              "--psk-file", os.path.join(self.creds, "psk")]
        if self.record:
            cmd += ["--record", self.record]
        return cmd + self.args

    def start(self, wait=True):
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("LISTEN_FDS", None)
        env.pop("JOURNAL_STREAM", None)
        env.update(self.env or {})
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, env=env)
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout=60):
        """Waits until the port accepts TCP connections (the daemon binds
        before it reports ready; valgrind makes that slow)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("secmsgd exited with %d:\n%s" % (self.proc.returncode, self.log()))
            try:
                socket.create_connection((self.connect_host, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("secmsgd did not start:\n" + self.log())

    def client(self, **kw):
        return Client(self.port, self.cafile, self.psk, **kw)

    def log(self):
        if self.log_path.startswith("/dev/"):
            return ""
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, pattern, timeout=10, count=1):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(re.findall(pattern, self.log(), re.M)) >= count:
                return True
            time.sleep(0.02)
        return False

    def recorded(self):
        """[(conn, seq, payload bytes)] from --record stderr lines, checked
        against their own SHA-256."""
        out = []
        for line in self.log().split("\n"):  # not splitlines(): payloads may hold U+2028
            m = MESSAGE_LINE.match(line)
            if m:
                payload = unescape(m["text"])
                assert len(payload) == int(m["bytes"]), line[:200]
                assert hashlib.sha256(payload).hexdigest() == m["sha256"], line[:200]
                assert m["id"].endswith("-" + m["seq"]), line[:200]
                out.append((int(m["conn"]), int(m["seq"]), payload))
        return out

    def signal(self, sig):
        self.proc.send_signal(sig)

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, timeout=20):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.logf.close()
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if self.own_dir and not os.environ.get("SECMSG_KEEP_TEST_DIRS"):
            shutil.rmtree(self.dir, ignore_errors=True)

#!/usr/bin/python3
"""Checks of the reference deployment in deploy/, with the real Debian tools.

    check_deploy.py haproxy     DEPLOYDIR
    check_deploy.py journal-tls DEPLOYDIR

haproxy:     `haproxy -c` accepts deploy/haproxy.cfg without a warning; then
             a copy of it, its addresses moved to loopback, runs in the
             foreground against a listener standing in for a receiver: the
             health checks must carry a PROXY v2 LOCAL header and end with a
             clean close (what secmsgd closes without logging), and a
             client's connection through the frontend must begin with a
             PROXY v2 header naming that client's address and port.
journal-tls: deploy/make-certs.sh makes a CA, a collector and a receiver
             certificate; systemd-journal-upload sends a journal entry to
             systemd-journal-remote over HTTPS with them (loopback), and
             fails against a collector certificate from another CA.
Exit status: 0 passed, 1 failed, 77 skipped (the Debian package is not
installed: haproxy, systemd-journal-remote).
"""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
JOURNAL_UPLOAD = "/lib/systemd/systemd-journal-upload"


class Failed(Exception):
    pass


def ok(what):
    print(f"ok: {what}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------
# HAProxy

def loopback_copy(cfg, frontend, receiver):
    """deploy/haproxy.cfg for an unprivileged foreground run on loopback:
    without the lines that need root or the system's log socket, its bind
    on `frontend`, one server at `receiver`."""
    out, servers = [], 0
    for line in cfg.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("chroot", "user", "group", "daemon", "stats") or \
                line.startswith("    log /dev/log"):
            continue
        if word == "maxconn":
            line = "    maxconn 100"
        elif word == "bind":
            line = f"    bind 127.0.0.1:{frontend}"
        elif word == "server":
            servers += 1
            if servers > 1:
                continue
            line = re.sub(r"^(\s*server\s+\S+\s+)\S+", rf"\g<1>127.0.0.1:{receiver}", line)
        out.append(line)
    return "\n".join(out) + "\n"


def read_connection(conn):
    """Everything the peer sends until it closes: (bytes, 'FIN' or 'RST')."""
    data = b""
    conn.settimeout(5)
    try:
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                return data, "FIN"
            data += chunk
            if data.endswith(b"client-hello"):
                return data, "open"
    except ConnectionResetError:
        return data, "RST"


def check_haproxy(deploy):
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if not haproxy:
        print("skipped: haproxy is not installed (apt-get install haproxy)")
        return 77
    cfg_path = os.path.join(deploy, "haproxy.cfg")
    r = subprocess.run([haproxy, "-c", "-f", cfg_path], capture_output=True, text=True)
    out = (r.stdout + r.stderr).strip()
    print(out)
    if r.returncode != 0 or re.search(r"\[(WARNING|ALERT)\]", out):
        raise Failed(f"haproxy -c -f {cfg_path} reports problems (above)")
    ok("haproxy -c accepts deploy/haproxy.cfg without a warning")

    with tempfile.TemporaryDirectory(prefix="secmsg-haproxy-") as tmp, \
            socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(10)
        frontend = free_port()
        cfg = os.path.join(tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(loopback_copy(open(cfg_path).read(), frontend, listener.getsockname()[1]))
        proc = subprocess.Popen([haproxy, "-db", "-f", cfg], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            # Two health checks (inter 2s): each a LOCAL header, then FIN.
            for n in (1, 2):
                conn, _ = listener.accept()
                with conn:
                    data, end = read_connection(conn)
                local = SIGNATURE + b"\x20\x00\x00\x00"
                if data != local or end != "FIN":
                    raise Failed(f"health check {n} sent {data.hex()} then {end}, not a "
                                 f"PROXY v2 LOCAL header ({local.hex()}) then FIN")
                ok(f"health check {n}: a PROXY v2 LOCAL header (16 bytes), then a clean close")
            # A client through the frontend: its address in a PROXY header.
            # (Health checks go on meanwhile: the client's is the connection
            # that is not one.)
            with socket.create_connection(("127.0.0.1", frontend), timeout=5) as client:
                client.sendall(b"client-hello")
                port = client.getsockname()[1]
                for _ in range(5):
                    conn, _ = listener.accept()
                    with conn:
                        data, _ = read_connection(conn)
                    if data != SIGNATURE + b"\x20\x00\x00\x00":
                        break
            want = SIGNATURE + b"\x21\x11\x00\x0c" + socket.inet_aton("127.0.0.1") + \
                socket.inet_aton("127.0.0.1") + struct.pack("!HH", port, frontend)
            if not data.startswith(want) or not data.endswith(b"client-hello"):
                raise Failed(f"a client's connection arrived as {data.hex()}, not "
                             f"{want.hex()} followed by its bytes")
            ok(f"a client's connection begins with PROXY v2 naming it (127.0.0.1:{port})")
        finally:
            stop(proc)
    return 0


# ---------------------------------------------------------------------------
# systemd-journal-upload to systemd-journal-remote over TLS

def make_certs(deploy, out, *names):
    r = subprocess.run(["sh", os.path.join(deploy, "make-certs.sh"), out, *names],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise Failed(f"make-certs.sh {' '.join(names)} failed: {r.stderr.strip()}")


def start_collector(certs, out):
    """systemd-journal-remote on a free loopback port, with make-certs.sh's
    collector certificate for 127.0.0.1 (certs/127.0.0.1/), writing one file
    per sending host into out; returns (process, URL) once it accepts
    connections."""
    port = free_port()
    collector = os.path.join(certs, "127.0.0.1")
    remote = subprocess.Popen(
        [JOURNAL_REMOTE, f"--listen-https=127.0.0.1:{port}", "--split-mode=host",
         f"--key={collector}/journal-remote.key", f"--cert={collector}/journal-remote.crt",
         f"--output={out}/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    return remote, f"https://127.0.0.1:{port}"


def upload(journal, url, certs, trust):
    return subprocess.run([JOURNAL_UPLOAD, "--follow=no", "--url", url,
                           "--key", f"{certs}/journal-upload.key",
                           "--cert", f"{certs}/journal-upload.crt",
                           "--trust", trust, "--file", journal],
                          capture_output=True, text=True, timeout=30)


def check_journal_tls(deploy):
    if not (os.access(JOURNAL_REMOTE, os.X_OK) and os.access(JOURNAL_UPLOAD, os.X_OK)):
        print("skipped: systemd-journal-remote is not installed "
              "(apt-get install systemd-journal-remote)")
        return 77
    with tempfile.TemporaryDirectory(prefix="secmsg-journal-tls-") as tmp:
        certs, other = os.path.join(tmp, "certs"), os.path.join(tmp, "other")
        make_certs(deploy, certs, "127.0.0.1", "receiver-a")
        make_certs(deploy, other, "127.0.0.1")
        ok("make-certs.sh made a CA, a collector and a receiver certificate")

        # One entry to upload, in a journal file of its own.
        journal = os.path.join(tmp, "in.journal")
        marker = f"secmsg deploy check {os.getpid()}"
        entry = f"__REALTIME_TIMESTAMP={int(time.time() * 1e6)}\nMESSAGE={marker}\n\n"
        subprocess.run([JOURNAL_REMOTE, "-o", journal, "-"], input=entry, text=True,
                       check=True, capture_output=True)

        out = os.path.join(tmp, "remote")
        os.mkdir(out)
        remote, url = start_collector(certs, out)
        try:
            r = upload(journal, url, f"{certs}/receiver-a", f"{other}/ca.crt")
            if r.returncode == 0:
                raise Failed("systemd-journal-upload trusted a collector certificate "
                             "that the CA it was given did not sign")
            ok(f"the upload refuses a collector whose certificate another CA signed "
               f"({r.stderr.strip().splitlines()[0]})")
            r = upload(journal, url, f"{certs}/receiver-a", f"{certs}/receiver-a/ca.crt")
            if r.returncode != 0:
                raise Failed(f"systemd-journal-upload failed: {r.stderr.strip()}")
        finally:
            stop(remote)
        r = subprocess.run(["journalctl", "-D", out, "-o", "cat", "--no-pager"],
                           capture_output=True, text=True)
        if marker not in r.stdout.splitlines():
            raise Failed(f"the uploaded entry is not in the collector's journal "
                         f"({sorted(os.listdir(out))}: {r.stdout.strip()!r:.200})")
        ok(f"the entry went over TLS into the collector's journal ({', '.join(os.listdir(out))})")
    return 0


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("haproxy", "journal-tls"):
        print(__doc__, file=sys.stderr)
        return 64
    what, deploy = sys.argv[1:]
    try:
        return (check_haproxy if what == "haproxy" else check_journal_tls)(deploy)
    except (Failed, subprocess.TimeoutExpired, socket.timeout) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""secmsgd recording into a real systemd-journald.

This machine has no journald running (PID 1 is not systemd), so the test
starts Debian's own /lib/systemd/systemd-journald inside a private mount
namespace (unshare -m), over tmpfs mounts of /run/systemd/journal,
/run/log and /var/log/journal: the host's journal directories and sockets
are never touched.  It then runs secmsgd (--record journal, and the
default, which must pick the journal once it is reachable), sends messages
through the independent Python client, and reads the entries back with
journalctl -o json: exact payload bytes (binary, multi-line, empty, 64 KiB),
SHA-256, size, peer, connection, sequence, MESSAGE_ID, PRIORITY.

Exit 77 (meson: skipped) when not root or without unshare/journald.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from secmsg_harness import Daemon  # noqa: E402

JOURNALD = "/lib/systemd/systemd-journald"
MESSAGE_ID = "7d5b1c3c9a0e4f4e8b2a6c1d0f3e5a71"


def skip(why):
    print("SKIP:", why)
    sys.exit(77)


def outer():
    if os.geteuid() != 0:
        skip("needs root for a private mount namespace")
    for tool in ("unshare", "journalctl"):
        if not shutil.which(tool):
            skip(tool + " not found")
    if not os.path.exists(JOURNALD):
        skip(JOURNALD + " not found")
    env = dict(os.environ, SECMSG_JOURNAL_INNER="1")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                        os.path.abspath(__file__)], env=env)
    sys.exit(r.returncode)


def mount_tmpfs(path):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", path], check=True)


def field_bytes(entry, name):
    v = entry[name]
    if isinstance(v, list):  # journalctl -o json writes binary data as byte arrays
        return bytes(v)
    return v.encode()


def inner():
    for path in ("/run/systemd/journal", "/run/log", "/var/log/journal"):
        mount_tmpfs(path)
    journald = subprocess.Popen([JOURNALD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.exists("/run/systemd/journal/socket"):
                break
            time.sleep(0.05)
        else:
            print("FAIL: journald did not create its socket")
            return 1
        failures = []
        payloads = [b"hello journal", b"line one\nline two\n", b"", b"\x00\x01\xff binary \xfe\n\x00",
                    os.urandom(65536), "caf\u00e9 \u2713".encode()]
        for mode in (["--record", "journal"], []):
            with Daemon(record=None, args=mode) as d:
                if "recording to journal" not in d.log():
                    failures.append("%s: not recording to the journal: %s" % (mode, d.log()))
                    continue
                c = d.client()
                for p in payloads:
                    c.send(p)
                for i in range(len(payloads)):
                    c.expect_ack(i)
                peer = "127.0.0.1:%d" % c.tls.getsockname()[1]
                c.close()
            entries = []
            for _ in range(50):
                out = subprocess.run(["journalctl", "-o", "json", "--all", "--no-pager", "MESSAGE_ID=" + MESSAGE_ID,
                                      "SECMSG_PEER=" + peer],
                                     capture_output=True, text=True).stdout
                entries = [json.loads(line) for line in out.splitlines() if line.strip()]
                if len(entries) >= len(payloads):
                    break
                time.sleep(0.1)
            if len(entries) != len(payloads):
                failures.append("%s: %d journal entries for %d messages" % (mode, len(entries), len(payloads)))
                continue
            for seq, (p, e) in enumerate(zip(payloads, entries)):
                got = field_bytes(e, "SECMSG_PAYLOAD") if "SECMSG_PAYLOAD" in e else None
                checks = {
                    "payload": got == p,
                    "sha256": e.get("SECMSG_SHA256") == hashlib.sha256(p).hexdigest(),
                    "bytes": e.get("SECMSG_BYTES") == str(len(p)),
                    "seq": e.get("SECMSG_SEQ") == str(seq),
                    "conn": e.get("SECMSG_CONN", "").isdigit(),
                    "priority": e.get("PRIORITY") == "6",
                    "message": isinstance(e.get("MESSAGE"), str) and "\n" not in e["MESSAGE"]
                               and len(e["MESSAGE"]) <= 240,
                }
                bad = [k for k, ok in checks.items() if not ok]
                if bad:
                    failures.append("%s seq %d: wrong %s in %r" % (mode, seq, bad,
                                                                  {k: v for k, v in e.items() if k != "SECMSG_PAYLOAD"}))
            print("%s: %d entries checked" % (mode or "default", len(entries)))
        for f in failures:
            print("FAIL:", f)
        return 1 if failures else 0
    finally:
        journald.terminate()
        journald.wait(10)


if __name__ == "__main__":
    if os.environ.get("SECMSG_JOURNAL_INNER"):
        sys.exit(inner())
    outer()

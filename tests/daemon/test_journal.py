#!/usr/bin/python3
"""secmsgd recording into a real systemd-journald.

Each case starts Debian's own /lib/systemd/systemd-journald in a private
mount namespace (tests/harness/journald_harness.py: tmpfs over the journal
directories, the host's are never touched), runs the real secmsgd, sends
messages through the independent Python client and reads the entries back
with journalctl.  ACK <=> entry throughout: an ACKed message is in the
journal exactly once, byte for byte (counted by SECMSG_ID, the id the ACK
note names); a message answered ERROR 6 is not there.

  test_journal.py CASE      CASE: basics, gone, stopped, large, namespace (default: all)

  basics     payloads of every kind (binary, multi-line, empty, 64 KiB, UTF-8) with
             --record journal and with the default (which must pick the journal)
  gone       journald SIGKILLed mid-stream (its socket file stays: ECONNREFUSED),
             then its socket file removed (ENOENT): ERROR 6, no ACK; journald back:
             ACKs again on the same connection.  The socket file alone removed
             while journald runs: still recorded (the socket is connected)
  stopped    journald SIGSTOPped under a pipelining client: a new client's
             handshake still takes well under a second, SIGTERM ends the daemon
             within --shutdown-timeout, and after SIGCONT every ACKed message is
             in the journal exactly once
  large      a 16 MiB message (memfd path), binary, empty and multi-line ones read
             back with journalctl -o json / -o export, `journalctl SECMSG_ID=ID`
  namespace  --journal-namespace into a second journald (`systemd-journald NAME`),
             read back with journalctl --namespace=NAME, absent from the default

Each case fails on the code before the recorder rework (bc1a0c5^), which
called sd_journal_sendv(): that ACKs a message sent to a journald that is
gone (libsystemd ignores a missing or refusing socket), blocks the whole loop
while journald is stopped (no handshake, no SIGTERM handling), wrote no
SECMSG_ID and had no --journal-namespace.

Exit 77 (meson: skipped) when not root or without unshare/journald.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from secmsg_harness import Daemon  # noqa: E402
import journald_harness as jh  # noqa: E402
from journald_harness import Journald, check_ack_iff_entry, exchange, kinds, read_answers, run_cases  # noqa: E402


def field_bytes(entry, name):
    v = entry[name]
    if isinstance(v, list):  # journalctl -o json writes binary data as byte arrays
        return bytes(v)
    return v.encode()


def json_entries(matches, namespace=None):
    argv = ["journalctl", "-o", "json", "--all", "--no-pager"]
    if namespace:
        argv.append("--namespace=" + namespace)
    out = subprocess.run(argv + matches, capture_output=True, text=True, timeout=30).stdout
    return [json.loads(line) for line in out.split("\n") if line.strip()]  # not splitlines(): U+2028



# ---------------------------------------------------------------- the cases

def case_basics():
    failures = []
    payloads = [b"hello journal", b"line one\nline two\n", b"", b"\x00\x01\xff binary \xfe\n\x00",
                os.urandom(65536), "caf\u00e9 \u2713".encode()]
    with Journald():
        for mode in (["--record", "journal"], []):
            with Daemon(record=None, args=mode) as d:
                # The port takes connections as soon as it listens, a moment
                # before the start line is written (seen under ASan).
                if not d.wait_log("recording to journal"):
                    failures.append("%s: not recording to the journal: %s" % (mode, d.log()))
                    continue
                c = d.client()
                for p in payloads:
                    c.send(p)
                for i in range(len(payloads)):
                    c.expect_ack(i)
                peer = "127.0.0.1:%d" % c.tls.getsockname()[1]
                c.close()
            found = []
            for _ in range(50):
                found = json_entries(["MESSAGE_ID=" + jh.MESSAGE_ID, "SECMSG_PEER=" + peer])
                if len(found) >= len(payloads):
                    break
                time.sleep(0.1)
            if len(found) != len(payloads):
                failures.append("%s: %d journal entries for %d messages" % (mode, len(found), len(payloads)))
                continue
            for seq, (p, e) in enumerate(zip(payloads, found)):
                got = field_bytes(e, "SECMSG_PAYLOAD") if "SECMSG_PAYLOAD" in e else None
                checks = {
                    "payload": got == p,
                    "sha256": e.get("SECMSG_SHA256") == hashlib.sha256(p).hexdigest(),
                    "bytes": e.get("SECMSG_BYTES") == str(len(p)),
                    "seq": e.get("SECMSG_SEQ") == str(seq),
                    "conn": e.get("SECMSG_CONN", "").isdigit(),
                    "id": e.get("SECMSG_ID", "").endswith("-%d" % seq),
                    "priority": e.get("PRIORITY") == "6",
                    "message": isinstance(e.get("MESSAGE"), str) and "\n" not in e["MESSAGE"]
                               and len(e["MESSAGE"]) <= 240,
                }
                bad = [k for k, ok in checks.items() if not ok]
                if bad:
                    failures.append("%s seq %d: wrong %s in %r" % (mode, seq, bad,
                                                                  {k: v for k, v in e.items() if k != "SECMSG_PAYLOAD"}))
            print("%s: %d entries checked" % (mode or "default", len(found)))
    return failures


def payloads(tag, n, size=100):
    return [b"%s %d " % (tag, i) + os.urandom(size) for i in range(n)]


def case_gone():
    failures = []
    jd = Journald().start()
    try:
        with Daemon(record="journal") as d:
            c = d.client()
            answers = exchange(c, payloads(b"before", 5))
            if kinds(answers) != "A" * 5:
                failures.append("journald up: %s, expected 5 ACKs" % kinds(answers))
            # Everything ACKed so far is in the journal before the kill:
            # SIGKILL would lose what still sits in journald's socket queue.
            jh.wait_entries(["SECMSG_ID=" + answers[-1].id], 1)
            jd.kill()
            down = exchange(c, payloads(b"killed", 4))       # the connected socket: ECONNREFUSED
            time.sleep(0.3)                                   # past the 200 ms reconnect bound:
            down += exchange(c, payloads(b"refused", 1))      # connect() to a dead socket file
            os.unlink(jd.socket)
            time.sleep(0.3)
            down += exchange(c, payloads(b"nofile", 1))      # connect(): ENOENT
            if kinds(down) != "E6" * 6:
                failures.append("journald gone: answers %s, expected 6 x ERROR 6" % kinds(down))
            reasons = " | ".join(a.reason for a in down)
            for why in ("refused", "No such file"):
                if why not in reasons:
                    failures.append("journald gone: no ERROR 6 reason says %r: %s" % (why, reasons))
            jd.start()
            back = []
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:               # the next reconnect is at most 200 ms away
                back += exchange(c, payloads(b"retry", 1))
                if back and back[-1].kind == "ack":
                    break
                time.sleep(0.1)
            if not back or back[-1].kind != "ack":
                failures.append("journald back: no ACK on the same connection within 5 s: %s" % kinds(back))
            more = exchange(c, payloads(b"after", 5))
            if kinds(more) != "A" * 5:
                failures.append("journald back: %s, expected 5 ACKs" % kinds(more))
            failures += ["kill/restart: " + f for f in check_ack_iff_entry(c, answers + down + back + more)]
            c.close()
            print("kill/restart: %s | %s | %s | %s" % (kinds(answers), kinds(down), kinds(back), kinds(more)))

        # Only the socket file goes: the daemon's socket stays connected to
        # the journald that still runs, so recording goes on.
        with Daemon(record="journal") as d:
            c = d.client()
            answers = exchange(c, payloads(b"linked", 3))
            os.unlink(jd.socket)
            answers += exchange(c, payloads(b"unlinked", 5))
            time.sleep(0.3)
            answers += exchange(c, payloads(b"unlinked later", 3))
            if kinds(answers) != "A" * 11:
                failures.append("socket file removed, journald running: %s, expected 11 ACKs" % kinds(answers))
            failures += ["socket file removed: " + f for f in check_ack_iff_entry(c, answers)]
            c.close()
            print("socket file removed: %s" % kinds(answers))
    finally:
        jd.stop()
    return failures


def case_stopped():
    failures = []
    shutdown = 4.0
    with Journald() as jd:
        d = Daemon(record="journal", args=["--shutdown-timeout", str(shutdown), "--record-timeout", "30"]).start()
        try:
            a = d.client()
            first = exchange(a, payloads(b"running", 3))
            jh.wait_entries(["SECMSG_ID=" + first[-1].id], 1)
            jd.pause()
            for p in payloads(b"stopped", 60, 300):
                a.send(p)
            # journald's socket takes net.unix.max_dgram_qlen datagrams, then
            # the daemon's queue holds one of this connection's, then it waits.
            stalled = read_answers(a, 60, 1.5)
            if not stalled or len(stalled) >= 60:
                failures.append("journald stopped: %d of 60 answered, expected a stall" % len(stalled))
            t0 = time.monotonic()
            b = d.client()  # TCP connect and the whole TLS handshake
            handshake = time.monotonic() - t0
            if handshake >= 1.0:
                failures.append("journald stopped: a new client's handshake took %.2f s" % handshake)
            b.send(b"late client")
            t_term = time.monotonic()
            d.signal(signal.SIGTERM)
            rest = read_answers(a, 60, shutdown + 3)
            b_answers = read_answers(b, 1, shutdown + 3)
            try:
                rc = d.proc.wait(shutdown + 5)
            except subprocess.TimeoutExpired:
                rc = None
            took = time.monotonic() - t_term
            if rc != 0 or took > shutdown + 1.5:
                failures.append("SIGTERM: exit %s after %.2f s (--shutdown-timeout %g)" % (rc, took, shutdown))
            e6 = [x for x in rest + b_answers if x.kind == "error" and x.code == 6]
            if not e6:
                failures.append("SIGTERM: no waiting message got ERROR 6: %s" % kinds(rest + b_answers))
            elif not (0.3 * shutdown <= e6[0].at - t_term <= shutdown):
                failures.append("SIGTERM: first ERROR 6 after %.2f s, expected about half of %g s"
                                % (e6[0].at - t_term, shutdown))
            print("stopped: %d answered before the stall (%s), handshake %.3f s, after SIGTERM %s + B %s, "
                  "exit in %.2f s" % (len(stalled), kinds(stalled), handshake, kinds(rest), kinds(b_answers), took))
        finally:
            d.stop()
        jd.resume()
        failures += ["after SIGCONT: " + f for f in check_ack_iff_entry(a, first + stalled + rest, timeout=15)]
    return failures


def case_large():
    failures = []
    big = os.urandom(16 << 20)
    small = [b"\x00\x01\xff binary \xfe\x00", b"", b"one\ntwo\n\nfour\n", b"\n", b"NAME=value\nX=\x00y",
             b"tab\there \xc3\xa9 \xe2\x80\xa8 sep"]
    with Journald(), Daemon(record="journal", args=["--max-payload", str(16 << 20)]) as d:
        c = d.client(timeout=60)
        answers = exchange(c, [big] + small, timeout=60)
        if kinds(answers) != "A" * (1 + len(small)):
            failures.append("answers %s, expected %d ACKs" % (kinds(answers), 1 + len(small)))
            return failures
        failures += check_ack_iff_entry(c, answers, timeout=20)
        for a in answers:
            p = c.sent[a.seq]
            found = jh.entries(["SECMSG_ID=" + a.id])  # export: binary-safe, never truncated
            if len(found) != 1:
                failures.append("journalctl SECMSG_ID=%s: %d entries" % (a.id, len(found)))
                continue
            e = found[0]
            if e.get("SECMSG_ID") != a.id.encode() or e.get("SECMSG_PAYLOAD") != p:
                failures.append("seq %d (%d bytes): entry differs (id %r)" % (a.seq, len(p), e.get("SECMSG_ID")))
            if len(p) > 65536:
                continue  # -o json would print 16 Mi numbers
            js = json_entries(["SECMSG_ID=" + a.id])
            if len(js) != 1 or field_bytes(js[0], "SECMSG_PAYLOAD") != p or js[0].get("SECMSG_ID") != a.id \
                    or "\n" in js[0].get("MESSAGE", "\n"):
                failures.append("seq %d: journalctl -o json: %r" % (a.seq, js[:1]))
        print("large: %s, 16 MiB entry and %d small ones read back" % (kinds(answers), len(small)))
    return failures


def case_namespace():
    failures = []
    ns = "secmsgtest"
    with Journald(), Journald(ns) as nsd:
        if not os.path.exists("/run/systemd/journal.%s/socket" % ns):
            failures.append("systemd-journald %s made no /run/systemd/journal.%s/socket" % (ns, ns))
        with Daemon(record="journal", args=["--journal-namespace", ns]) as d:
            c = d.client()
            answers = exchange(c, payloads(b"namespaced", 4) + [b"multi\nline"])
            if kinds(answers) != "A" * 5:
                failures.append("answers %s, expected 5 ACKs" % kinds(answers))
                return failures
            failures += check_ack_iff_entry(c, answers, namespace=ns)
            for a in answers:
                js = json_entries(["SECMSG_ID=" + a.id], namespace=ns)
                if len(js) != 1 or js[0].get("_NAMESPACE") != ns:
                    failures.append("journalctl --namespace=%s SECMSG_ID=%s: %r" % (ns, a.id, js))
                if jh.entries(["SECMSG_ID=" + a.id]):
                    failures.append("SECMSG_ID=%s is in the default journal too" % a.id)
            c.close()
        nsd.stop()
        # The namespace's journald gone at start: --record journal refuses to start.
        os.unlink(nsd.socket)
        try:
            with Daemon(record="journal", args=["--journal-namespace", ns]) as d:
                failures.append("started with --record journal and no journald for the namespace: " + d.log())
        except RuntimeError as e:
            if "journal" not in str(e):
                failures.append("no journald for the namespace: unclear error: %s" % e)
        print("namespace: %s into %s" % (kinds(answers), ns))
    return failures


CASES = {"basics": case_basics, "gone": case_gone, "stopped": case_stopped, "large": case_large,
         "namespace": case_namespace}


if __name__ == "__main__":
    sys.exit(run_cases(CASES, __doc__, jh.in_private_namespace))

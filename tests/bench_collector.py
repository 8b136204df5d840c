#!/usr/bin/python3
"""The collector's ceiling: systemd-journal-remote receiving secmsgd's records.

    tests/bench_collector.py [--entries N] [--runs R] [--deploy DIR]

Makes a journal file of N entries shaped like secmsgd's records (the same
fields, unique 64-byte payloads, as journald stores them with their trusted
fields), then R times: starts systemd-journal-remote on loopback with
deploy/'s TLS setup (make-certs.sh's certificates, --split-mode=host) and
has systemd-journal-upload send it the file, as a receiver does.  Prints,
per run and as the median: entries per second (wall time of the upload) and
the CPU time per entry of journal-remote and of journal-upload
(/proc/PID/stat of each).  journal-remote is one process: its CPU per entry
is the ceiling of one collector (1 / that, per core).  Debian 12 packages:
systemd-journal-remote, openssl.
"""

import argparse
import hashlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "system"))
from check_deploy import JOURNAL_REMOTE, JOURNAL_UPLOAD, start_collector  # noqa: E402

MESSAGE_ID = "7d5b1c3c9a0e4f4e8b2a6c1d0f3e5a71"


def export_entries(n):
    """n entries in the journal export format, fields as a receiver's journal
    holds them for secmsgd@1."""
    boot = secrets.token_hex(16)
    daemon = secrets.token_hex(16)
    now = int(time.time() * 1e6)
    out = []
    for i in range(n):
        payload = secrets.token_hex(32)
        fields = {
            "__REALTIME_TIMESTAMP": str(now + i),
            "__MONOTONIC_TIMESTAMP": str(1000000 + i),
            "_BOOT_ID": boot,
            "_HOSTNAME": "receiver-a",
            "_TRANSPORT": "journal",
            "_PID": "95", "_UID": "61234", "_GID": "61234", "_COMM": "secmsgd",
            "_SYSTEMD_UNIT": "secmsgd@1.service",
            "PRIORITY": "6",
            "SYSLOG_IDENTIFIER": "secmsgd",
            "MESSAGE_ID": MESSAGE_ID,
            "MESSAGE": f"message from 192.0.2.1:40000 (64 bytes): {payload}",
            "SECMSG_PAYLOAD": payload,
            "SECMSG_SHA256": hashlib.sha256(payload.encode()).hexdigest(),
            "SECMSG_BYTES": "64",
            "SECMSG_PEER": f"192.0.2.1:{40000 + i % 4}",
            "SECMSG_VIA": "192.0.2.10:51000",
            "SECMSG_CONN": str(1 + i % 4),
            "SECMSG_ID": f"{daemon}-{i + 1}",
        }
        out.append("".join(f"{k}={v}\n" for k, v in fields.items()) + "\n")
    return "".join(out)


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(tmp, journal, certs, n):
    """(entries/s, journal-remote's and journal-upload's CPU µs per entry) of
    one upload of the journal directory to a fresh collector."""
    out = tempfile.mkdtemp(dir=tmp)
    remote, url = start_collector(certs, out)
    try:
        remote_before = cpu_seconds(remote.pid)
        receiver = os.path.join(certs, "receiver-a")
        started = time.monotonic()
        upload = subprocess.Popen(
            [JOURNAL_UPLOAD, "--follow=no", f"--url={url}",
             f"--key={receiver}/journal-upload.key", f"--cert={receiver}/journal-upload.crt",
             f"--trust={receiver}/ca.crt", f"--directory={journal}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(upload.pid, 0)
        upload.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        remote_cpu = cpu_seconds(remote.pid) - remote_before
        if upload.returncode != 0:
            sys.exit(f"systemd-journal-upload failed: {upload.stderr.read().decode()}")
    finally:
        remote.terminate()
        remote.wait()
    got = subprocess.run(["journalctl", "-D", out, "--no-pager", "-o", "cat",
                          f"MESSAGE_ID={MESSAGE_ID}"], capture_output=True, text=True).stdout
    count = len(got.splitlines())
    if count != n:
        sys.exit(f"the collector stored {count} entries of {n}")
    return n / wall, remote_cpu / n * 1e6, (usage.ru_utime + usage.ru_stime) / n * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=200000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--deploy", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "deploy"))
    args = ap.parse_args()
    if not (os.access(JOURNAL_REMOTE, os.X_OK) and os.access(JOURNAL_UPLOAD, os.X_OK)):
        print("skipped: apt-get install systemd-journal-remote")
        return 77
    with tempfile.TemporaryDirectory(prefix="secmsg-bench-collector-") as tmp:
        certs = os.path.join(tmp, "certs")
        subprocess.run(["sh", os.path.join(args.deploy, "make-certs.sh"), certs,
                        "127.0.0.1", "receiver-a"], check=True, capture_output=True)
        # A directory: journal-remote rotates a large file into several.
        journal = os.path.join(tmp, "receiver")
        os.mkdir(journal)
        subprocess.run([JOURNAL_REMOTE, "-o", os.path.join(journal, "receiver.journal"), "-"],
                       check=True,
                       input=export_entries(args.entries).encode(), capture_output=True)
        print(f"{args.entries} secmsgd-shaped entries, journal-upload -> journal-remote "
              f"over HTTPS on loopback, {args.runs} runs")
        results = []
        for i in range(args.runs):
            rate, remote_us, upload_us = one_run(tmp, journal, certs, args.entries)
            results.append((rate, remote_us, upload_us))
            print(f"  run {i + 1}: {rate:,.0f} entries/s; CPU per entry: journal-remote "
                  f"{remote_us:.1f} us, journal-upload {upload_us:.1f} us", flush=True)
        med = [statistics.median(r[k] for r in results) for k in range(3)]
        print(f"median: {med[0]:,.0f} entries/s; CPU per entry: journal-remote "
              f"{med[1]:.1f} us (at most {1e6 / med[1]:,.0f} entries/s per core), "
              f"journal-upload {med[2]:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())

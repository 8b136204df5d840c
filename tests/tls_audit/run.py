#!/usr/bin/env python3
"""TLS audit of the real secmsgd with testssl.sh (Debian's testssl package).

Starts secmsgd on loopback with credentials from its own --init-credentials
(self-signed certificate, ECDSA P-256 by default), once with its default TLS
configuration (TLS 1.3 only) and once with --tls-min-version 1.2, and runs
testssl against each: protocols (-p), cipher categories (-s), server
preferences (-P), server defaults (-S, the certificate) and vulnerabilities
(-U).  Fails on any finding of severity MEDIUM or above in protocols,
ciphers, server preferences or vulnerabilities.  Certificate findings that
follow from a self-signed certificate pinned by its clients (no chain of
trust, no revocation information, no CT, ...) are listed as expected, not
failures; any other certificate finding of MEDIUM or above fails too.

Exit 0 clean, 1 findings (or secmsgd/testssl trouble), 77 without testssl.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from secmsg_harness import free_port  # noqa: E402

FAILING = {"MEDIUM", "HIGH", "CRITICAL"}
# testssl checks (section serverDefaults) whose "could not run" warning is
# printed but does not fail the audit: they are about features, not
# weaknesses, and testssl's way of running them is timing-dependent here.
INCONCLUSIVE = {
    # Two `openssl s_client </dev/null` runs, the second resuming the
    # first's session: with TLS 1.3 the ticket comes after the handshake and
    # s_client may exit before it arrives or as the server's reply to its
    # close_notify comes back; one run in several gives "connect problem" or
    # "test failed" (seen at random in both configurations, under load;
    # sixty such pairs by hand, one after the other, all resumed).
    "sessionresumption_ticket": "resumption is a feature, not a finding; testssl's check is timing-dependent with TLS 1.3 tickets",
    "sessionresumption_ID": "the same check, by session ID (none in TLS 1.3)",
}
AUDITED = ("protocols", "ciphers", "serverPreferences", "vulnerabilities")
# testssl's certificate findings (section serverDefaults, ids without the
# " <cert#N>" suffix) that a self-signed certificate pinned by its clients
# raises by design, with why that is fine here.
EXPECTED_CERT = {
    "cert_chain_of_trust": "self-signed: clients pin it (secmsg --pin) or trust it as their CA file",
    "cert_trust": "no public name: clients connect by address and check the pin or CA file",
    "cert_commonName_wo_SNI": "no SNI: testssl connects by IP address",
    "cert_caIssuers": "no issuer to fetch: self-signed",
    "cert_crlDistributionPoints": "no CRL: a pinned key is revoked by changing the pin",
    "cert_ocspURL": "no OCSP responder: self-signed",
    "cert_revocation": "no CRL or OCSP: a pinned key is revoked by changing the pin",
    "OCSP_stapling": "nothing to staple without an OCSP responder",
    "cert_mustStapleExtension": "nothing to staple",
    "certificate_transparency": "not logged: not a public certificate",
    "DNS_CAArecord": "no DNS name: loopback",
    "cert_validityPeriod": "long-lived: rotated by the operator, not by a public CA's rules",
    "cert_extlifeSpan": "long-lived: rotated by the operator, not by a public CA's rules",
    "cert_expirationStatus": "see cert_validityPeriod",
    "cert_notAfter": "see cert_validityPeriod",
}
RUNS = (("default (TLS 1.3 only)", []), ("--tls-min-version 1.2", ["--tls-min-version", "1.2"]))


def wait_listening(proc, port, log, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("secmsgd exited with %d:\n%s" % (proc.returncode, open(log).read()))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("secmsgd did not start listening on port %d" % port)


def findings(path):
    """{section: [finding]} from testssl's --jsonfile-pretty output."""
    with open(path) as f:
        doc = json.load(f)
    out = {}
    for result in doc.get("scanResult", []):
        for section, items in result.items():
            if isinstance(items, list):
                out.setdefault(section, []).extend(i for i in items if isinstance(i, dict))
    return out


def audit(name, testssl, secmsgd, creds, extra, work, timeout):
    """Runs testssl against one secmsgd; returns (failures, expected)."""
    port = free_port()
    log = os.path.join(work, "secmsgd-%d.log" % port)
    cmd = [secmsgd, "--port", str(port), "--record", "none",
           "--cert", os.path.join(creds, "tls.crt"), "--key", os.path.join(creds, "tls.key"),
           "--psk-file", os.path.join(creds, "psk")] + extra
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "JOURNAL_STREAM")}
    with open(log, "wb") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env)
    try:
        wait_listening(proc, port, log)
        out = os.path.join(work, "testssl-%d.json" % port)
        tcmd = [testssl, "--quiet", "--warnings", "off", "--color", "0", "--nodns", "none",
                "--jsonfile-pretty", out, "-p", "-s", "-P", "-S", "-U",
                "127.0.0.1:%d" % port]
        started = time.time()
        r = subprocess.run(tcmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, cwd=work)
        took = time.time() - started
        with open(os.path.join(work, "testssl-%d.txt" % port), "wb") as f:
            f.write(r.stdout)
        if not os.path.exists(out):
            raise RuntimeError("testssl wrote no JSON (exit %d):\n%s" %
                               (r.returncode, r.stdout.decode(errors="replace")[-3000:]))
        res = findings(out)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.returncode not in (0, -15):
        raise RuntimeError("secmsgd exited with %d after the scan:\n%s" %
                           (proc.returncode, open(log).read()[-3000:]))

    failures, expected, inconclusive = [], [], []
    for section, items in res.items():
        for i in items:
            sev = i.get("severity", "")
            line = "%s %s [%s]: %s" % (section, i.get("id"), sev, i.get("finding"))
            base = str(i.get("id", "")).split(" ")[0]
            if section == "serverDefaults" and base in EXPECTED_CERT and sev not in ("OK", "INFO"):
                expected.append(line + "  -- expected: " + EXPECTED_CERT[base])
            elif sev in FAILING and (section in AUDITED or section == "serverDefaults"):
                failures.append(line)
            elif sev == "WARN" and section == "serverDefaults" and base in INCONCLUSIVE:
                inconclusive.append(line + "  -- " + INCONCLUSIVE[base])
            elif sev in ("FATAL", "ERROR") or (sev == "WARN" and section != "scanProblem"):
                # testssl could not finish a check: an audit that did not run
                failures.append(line + "  (testssl could not run this check)")
    print("== %s: testssl %.0f s, %d findings" % (name, took, sum(map(len, res.values()))))
    for section in AUDITED + ("serverDefaults",):
        for i in res.get(section, []):
            if i.get("severity") not in ("OK", "INFO"):
                print("   %s %s [%s]: %s" % (section, i.get("id"), i.get("severity"), i.get("finding")))
    return failures, expected, inconclusive


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--secmsgd", required=True, help="the secmsgd binary")
    ap.add_argument("--testssl", default=shutil.which("testssl") or shutil.which("testssl.sh"),
                    help="testssl.sh (default: testssl on PATH)")
    ap.add_argument("--key-type", default="ecdsa", choices=("ecdsa", "ed25519"))
    ap.add_argument("--keep", metavar="DIR", help="keep the logs and JSON reports in DIR")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per testssl run")
    a = ap.parse_args()
    if not a.testssl:
        print("tls-audit: testssl not installed (Debian: apt-get install testssl.sh): skipped")
        return 77

    work = a.keep or tempfile.mkdtemp(prefix="secmsg-tls-audit-")
    os.makedirs(work, exist_ok=True)
    creds = os.path.join(work, "creds")
    subprocess.run([a.secmsgd, "--init-credentials", creds, "--key-type", a.key_type],
                   check=True, stdout=subprocess.DEVNULL)
    failed = False
    try:
        for name, extra in RUNS:
            failures, expected, inconclusive = audit(name, a.testssl, a.secmsgd, creds, extra, work,
                                                     a.timeout)
            for line in expected:
                print("   expected  " + line)
            for line in inconclusive:
                print("   inconclusive  " + line)
            for line in failures:
                print("   FAILURE   " + line)
            failed = failed or bool(failures)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("tls-audit: %s" % ("FAILED: findings of MEDIUM or above (above)" if failed else
                             "no finding of MEDIUM or above in protocols, ciphers, "
                             "server preferences or vulnerabilities"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

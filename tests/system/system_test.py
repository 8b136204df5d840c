#!/usr/bin/python3
"""System test: the installed secmsg under a real systemd, booted in a container.

    system_test.py --meson MESON --builddir BUILD --cache DIR [--boot-only]

$SECMSG_SYSTEST_CACHE, when set, replaces --cache (to share the root file
system between build directories).

Installs the build (meson install into a staging DESTDIR), boots Debian with
systemd as PID 1 (container.py), copies the installation in, and checks what
issue 6 promises: `systemctl start secmsgd` works with nothing else done,
first-start credentials, messages (text, multi-line, binary) sent by the
installed client and verified against the generated certificate, each one in
the journal with its exact payload and fields, reload, a clean stop, and
socket activation.  Then issue 13's instances: secmsgd@1 and secmsgd@2
started at once on fresh state share one set of credentials made once by
secmsgd-init, both listen on the port and share 200 connections, each
message recorded once, one stops and the other serves on, and
secmsgd-instances.target starts and stops them.  On failure it prints the
container's journal.
--boot-only boots and checks the container machinery alone.

Exit status: 0 passed, 1 failed, 77 skipped (not root).
"""

import argparse
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from container import (Container, ContainerError, cached_rootfs,  # noqa: E402
                       remove_stale_cgroups)

NAME_PREFIX = "secmsg-systest-"

STATE_DIR = "/var/lib/secmsgd"
NAMESPACE = "secmsgd"  # the unit's LogNamespace=
CLIENT_PSK = "/root/secmsg.psk"
PORT = 8443


class CheckFailed(Exception):
    """The software under test did not do what it should."""


def expect(condition, what):
    if not condition:
        raise CheckFailed(what)
    print(f"ok: {what}", flush=True)


def fingerprint(tree):
    """(path, size, mtime) of every entry below tree: any change shows."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in [""] + sorted(filenames) + dirnames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_mode}\n".encode())
    return digest.hexdigest()


def staged_install(meson, builddir, destdir):
    """meson install of the build into destdir; returns (sbindir, bindir,
    docdir) as installed."""
    subprocess.run([meson, "install", "-C", builddir, "--no-rebuild", "--quiet",
                    "--destdir", destdir], check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run([meson, "introspect", "--buildoptions", builddir],
                         check=True, capture_output=True, text=True).stdout
    opts = {o["name"]: o["value"] for o in json.loads(out)}
    return (os.path.join(opts["prefix"], opts["sbindir"]),
            os.path.join(opts["prefix"], opts["bindir"]),
            os.path.join(opts["prefix"], opts["datadir"], "doc", "secmsg"))


def journal_field(entry, name):
    """A journal JSON field as bytes: journald writes text as a string, binary
    data as an array of byte values, and a field present several times as an
    array of those (refused here: each field must appear once)."""
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list) and all(isinstance(b, int) for b in value):
        return bytes(value)
    raise CheckFailed(f"journal field {name} appears more than once: {value!r:.200}")


class ServiceChecks:
    """The checks of the installed service, in the order a person would do them."""

    def __init__(self, container, sbindir, bindir, docdir):
        self.c = container
        self.example_config = os.path.join(docdir, "secmsgd.conf.example")
        self.daemon = os.path.join(sbindir, "secmsgd")
        self.client = os.path.join(bindir, "secmsg")
        self.sent = []          # every message sent and acknowledged, in order
        self.tag = secrets.token_hex(4)

    # -- helpers ------------------------------------------------------------

    def systemctl(self, *args, check=True):
        return self.c.run(["systemctl", *args], check=check)

    def prop(self, unit, name):
        return self.systemctl("show", unit, "-p", name, "--value").stdout.strip()

    def send(self, messages, whole=False, host="127.0.0.1", trust=None,
             psk=CLIENT_PSK, expect_status=0, quiet=False, port=PORT):
        """Sends messages with the installed client (pipe mode: one per line,
        or all of stdin as one with --whole) and requires the exit status
        expect_status; messages count as sent only when that is 0."""
        trust = trust or ["--ca-file", f"{STATE_DIR}/tls.crt"]
        argv = [self.client, "--host", host, "--port", str(port),
                "--psk-file", psk, *trust]
        if whole:
            argv.append("--whole")
            (data,) = messages
        else:
            data = b"".join(m + b"\n" for m in messages)
        r = self.c.run(argv, input=data, check=False, binary=True, timeout=120)
        if r.returncode != expect_status:
            raise CheckFailed(f"{' '.join(argv)} exited with {r.returncode}, not "
                              f"{expect_status}: {r.stderr.decode(errors='replace').strip()}")
        if expect_status != 0:
            print(f"ok: the client is refused as it should be (exit {r.returncode}: "
                  f"{r.stderr.decode(errors='replace').strip()})", flush=True)
            return
        self.sent.extend(messages)
        if not quiet:
            print(f"ok: client sent {len(messages)} message(s) "
                  f"({'--whole' if whole else 'lines'}, {host}, {trust[0]}), "
                  f"all acknowledged", flush=True)

    def journalctl(self, *args, namespace=NAMESPACE):
        """journalctl's output, by default of the service's journal namespace
        (LogNamespace=), after its journald has written out everything it has
        received (an ACK can arrive before journald has stored the entry that
        preceded it)."""
        ns = [f"--namespace={namespace}"] if namespace else []
        self.c.run(["journalctl", "--sync", *ns], check=False)
        return self.c.run(["journalctl", "--no-pager", *ns, *args]).stdout

    def recorded(self, unit="secmsgd.service", namespace=NAMESPACE):
        """The journal entries of unit (a glob may name several) that record
        a message, in the given journal namespace (secmsgd.service's own by
        default; the instances record into the system journal: None)."""
        out = self.journalctl("-u", unit, "-o", "json", "--all", namespace=namespace)
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [e for e in entries if "SECMSG_PAYLOAD" in e]

    def logged_pins(self):
        """Every pin secmsgd-init.service reported, oldest first (one line
        per run)."""
        # secmsgd-init.service has no LogNamespace=: the system journal.
        log = self.journalctl("-u", "secmsgd-init.service", "-o", "cat", namespace=None)
        return re.findall(r"pin for clients: (sha256:[A-Za-z0-9+/]{43}=)", log)

    def init_created(self, name):
        """How many times secmsgd-init.service reported creating STATE_DIR/name."""
        # secmsgd-init.service has no LogNamespace=: the system journal.
        log = self.journalctl("-u", "secmsgd-init.service", "-o", "cat", namespace=None)
        return len(re.findall(rf"^created {re.escape(STATE_DIR)}/{name}$", log, re.M))

    def expect_active(self, unit="secmsgd.service"):
        state = self.systemctl("is-active", unit, check=False).stdout.strip()
        expect(state == "active", f"{unit} is active (is-active says {state!r})")

    # -- the checks ---------------------------------------------------------

    def run_all(self):
        self.start()
        self.first_start_credentials()
        self.messages()
        self.journal_records()
        self.reload()
        self.burst()
        self.stop()
        self.socket_activation()
        self.administrator_credentials()
        self.configuration_file()
        self.watchdog()
        self.no_restarts()
        InstanceChecks(self).run_all()

    def start(self):
        self.systemctl("daemon-reload")
        r = self.systemctl("start", "secmsgd.service", check=False)
        expect(r.returncode == 0, "systemctl start secmsgd succeeds "
               f"{r.stderr.strip()}".strip())
        self.expect_active()

    def first_start_credentials(self):
        real = self.c.run(["readlink", "-f", STATE_DIR]).stdout.strip()
        expect(real == "/var/lib/private/secmsgd",
               f"the state directory is DynamicUser's private one ({real})")
        for name, mode in (("tls.key", "600"), ("psk", "600"), ("tls.crt", None)):
            r = self.c.run(["stat", "-c", "%a %u", f"{STATE_DIR}/{name}"], check=False)
            expect(r.returncode == 0, f"first start created {STATE_DIR}/{name}")
            got_mode, owner = r.stdout.split()
            expect(owner != "0", f"{name} belongs to the service's dynamic user "
                   f"(uid {owner})")
            if mode:
                expect(got_mode == mode, f"{name} has mode {mode} ({got_mode})")
        # The client refuses a PSK file anyone but its owner could read; give
        # root its own copy of the daemon's generated PSK.
        self.c.run(["install", "-m", "600", f"{STATE_DIR}/psk", CLIENT_PSK])

    def messages(self):
        self.send([f"hello from the system test {self.tag}".encode(),
                   f"second line, UTF-8: \u00e9\u00e8 \u2713 {self.tag}".encode()])
        self.send([f"multi-line {self.tag}\nline two\n\nline four, no newline".encode()],
                  whole=True)
        self.send([bytes(range(256)) + self.tag.encode()], whole=True)
        # The certificate's pin, as the first start printed it, works too.
        pins = self.logged_pins()
        expect(bool(pins), "the first start logged the certificate's pin "
               "(journalctl -u secmsgd-init)")
        self.send([f"verified by pin {self.tag}".encode()], trust=["--pin", pins[0]])

    def journal_records(self):
        entries = self.recorded()
        ids = set()
        for message in self.sent:
            found = [e for e in entries if journal_field(e, "SECMSG_PAYLOAD") == message]
            expect(len(found) == 1, f"the journal has the message {message[:40]!r} "
                   f"exactly once ({len(found)} entries)")
            e = found[0]
            digest = (journal_field(e, "SECMSG_SHA256") or b"").decode().lower()
            expect(digest == hashlib.sha256(message).hexdigest(),
                   "  SECMSG_SHA256 is the SHA-256 of the exact bytes")
            expect(journal_field(e, "SECMSG_BYTES") == str(len(message)).encode(),
                   f"  SECMSG_BYTES is {len(message)}")
            peer = (journal_field(e, "SECMSG_PEER") or b"").decode()
            expect(re.fullmatch(r"(127\.0\.0\.1|\[::1\]):\d+", peer) is not None,
                   f"  SECMSG_PEER is the client's address ({peer})")
            mid = (journal_field(e, "MESSAGE_ID") or b"").decode()
            expect(re.fullmatch(r"[0-9a-f]{32}", mid) is not None,
                   f"  MESSAGE_ID is a 128-bit id ({mid})")
            ids.add(mid)
        expect(len(ids) == 1, "every message has the same MESSAGE_ID")
        mid = ids.pop()
        listed = self.journalctl(f"MESSAGE_ID={mid}", "-o", "json", "--all").splitlines()
        expect(len(listed) == len(self.sent),
               f"journalctl --namespace={NAMESPACE} MESSAGE_ID={mid} lists every message "
               f"({len(listed)})")
        # The namespace keeps the records apart from the system journal;
        # --namespace='*' shows both.
        default = self.journalctl(f"MESSAGE_ID={mid}", "-o", "json", "--all", namespace=None)
        expect(not default.strip(), "the system journal holds none of the records")
        both = self.journalctl(f"MESSAGE_ID={mid}", "-o", "json", "--all", namespace="*")
        expect(len(both.splitlines()) == len(self.sent),
               "journalctl --namespace='*' finds every record")
        self.expect_active(f"systemd-journald@{NAMESPACE}.service")
        conf = self.c.run(["systemd-analyze", "cat-config", f"systemd/journald@{NAMESPACE}.conf"],
                          check=False).stdout
        expect("SyncIntervalSec=1s" in conf,
               f"the installed journald@{NAMESPACE}.conf drop-in is in effect")
        # A record found by the SECMSG_ID that an ACK names (secmsg -v).
        e = entries[-1]
        rid = (journal_field(e, "SECMSG_ID") or b"").decode()
        expect(re.fullmatch(r"[0-9a-f]{32}-\d+", rid) is not None, f"SECMSG_ID is ID-SEQ ({rid})")
        one = self.journalctl(f"SECMSG_ID={rid}", "-o", "json", "--all").splitlines()
        expect(len(one) == 1, f"journalctl SECMSG_ID={rid} finds exactly that record")

    def reload(self):
        """systemctl reload (SIGHUP) keeps the same process serving, and a
        new certificate and key in the state directory reach new clients."""
        pid = self.prop("secmsgd.service", "MainPID")
        # As on a minimal Debian: no procps, so no /bin/kill to reload with.
        r = self.c.run(["sh", "-c", "test ! -e /bin/kill && test ! -e /usr/bin/kill"], check=False)
        expect(r.returncode == 0, "the container has no /bin/kill (procps is not installed)")
        r = self.systemctl("reload", "secmsgd.service", check=False)
        expect(r.returncode == 0, f"systemctl reload secmsgd succeeds {r.stderr.strip()}")
        self.expect_active()
        expect(self.prop("secmsgd.service", "MainPID") == pid,
               "the same process still serves after the reload")
        self.send([f"after reload {self.tag}".encode()])

        # Rotate: a new certificate and key, owned like the old ones.
        self.c.run(["cp", f"{STATE_DIR}/tls.crt", "/root/old.crt"])
        r = self.c.run([self.daemon, "--init-credentials", "/root/rotated"])
        pins = re.findall(r"sha256:[A-Za-z0-9+/]{43}=", r.stdout + r.stderr)
        owner = self.c.run(["stat", "-c", "%u", f"{STATE_DIR}/tls.key"]).stdout.strip()
        for name in ("tls.crt", "tls.key"):
            self.c.run(["install", "-o", owner, "-m", "600", f"/root/rotated/{name}",
                        f"{STATE_DIR}/{name}"])
        self.systemctl("reload", "secmsgd.service")
        # ExecReload= only sends SIGHUP (systemd 252 has no Type=notify-reload):
        # the daemon finishes reloading a moment later.
        for _ in range(50):
            r = self.c.run([self.client, "--port", str(PORT), "--psk-file", CLIENT_PSK,
                            "--pin", pins[0], "-q", "-m", f"rotated {self.tag}"],
                           check=False)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        expect(r.returncode == 0, f"after a reload, new clients get the new certificate "
               f"(exit {r.returncode}: {r.stderr.strip()})")
        self.sent.append(f"rotated {self.tag}".encode())
        self.send([b"trusting the old certificate"], expect_status=77,
                  trust=["--ca-file", "/root/old.crt"])
        expect(self.prop("secmsgd.service", "MainPID") == pid,
               "still the same process after the second reload")

    def stop(self):
        self.no_restarts()
        r = self.systemctl("stop", "secmsgd.service", check=False)
        expect(r.returncode == 0, "systemctl stop secmsgd succeeds")
        result = self.prop("secmsgd.service", "Result")
        expect(result == "success", f"the stop ends with Result=success ({result})")
        state = self.prop("secmsgd.service", "ActiveState")
        expect(state == "inactive", f"secmsgd is inactive after stop ({state})")
        status = self.prop("secmsgd.service", "ExecMainStatus")
        expect(status == "0", f"secmsgd exited with status 0 ({status})")

    def socket_activation(self):
        self.systemctl("start", "secmsgd.socket")
        self.expect_active("secmsgd.socket")
        state = self.prop("secmsgd.service", "ActiveState")
        expect(state == "inactive", f"the service waits for a first connection ({state})")
        before = len(self.recorded())
        self.send([f"socket-activated {self.tag}".encode()])
        self.expect_active()
        self.send([f"socket-activated over IPv6 {self.tag}".encode()], host="::1")
        expect(len(self.recorded()) == before + 2,
               "the socket-activated service recorded both messages")
        r = self.systemctl("stop", "secmsgd.socket", "secmsgd.service", check=False)
        expect(r.returncode == 0, "stopping the socket and the service succeeds")
        result = self.prop("secmsgd.service", "Result")
        expect(result == "success", f"Result=success after socket activation ({result})")

    def burst(self):
        """A burst through one connection, every message in the journal.

        journald's default rate limit (RateLimitBurst=10000 per 30 s, scaled
        up with free disk space) would drop messages past it without a word;
        the unit turns it off for secmsgd, which is checked first."""
        limit = self.prop("secmsgd.service", "LogRateLimitIntervalUSec")
        expect(limit == "0", f"journald does not rate-limit secmsgd "
               f"(LogRateLimitIntervalUSec={limit})")
        count = 12000
        before = len(self.recorded())
        started = time.monotonic()
        self.send([f"burst {i} {self.tag}".encode() for i in range(count)], quiet=True)
        took = time.monotonic() - started
        got = len(self.recorded()) - before
        expect(got == count, f"all {count} messages of a burst are in the journal "
               f"({got}; sent and acknowledged in {took:.1f} s)")

    def administrator_credentials(self):
        """Credentials in /etc/credstore (LoadCredential=) win over the
        generated ones."""
        admin = "/root/admin-credentials"
        r = self.c.run([self.daemon, "--init-credentials", admin])
        out = r.stdout + r.stderr
        pins = re.findall(r"sha256:[A-Za-z0-9+/]{43}=", out)
        expect(len(pins) == 1, f"--init-credentials printed the new pin ({pins})")
        self.c.run(["install", "-d", "-m", "700", "/etc/credstore"])
        for src, dst in (("tls.crt", "tls.crt"), ("tls.key", "tls.key"), ("psk", "psk")):
            self.c.run(["install", "-m", "600", f"{admin}/{src}",
                        f"/etc/credstore/secmsgd.{dst}"])
        self.systemctl("restart", "secmsgd.service")
        self.expect_active()
        self.send([f"with the administrator's credentials {self.tag}".encode()],
                  trust=["--pin", pins[0]], psk=f"{admin}/psk")
        self.send([b"with the generated ones"], expect_status=77)
        for name in ("tls.crt", "tls.key", "psk"):
            self.c.run(["rm", f"/etc/credstore/secmsgd.{name}"])
        self.systemctl("stop", "secmsgd.service")

    def configuration_file(self):
        """/etc/secmsgd/secmsgd.conf (ConfigurationDirectory=), made from the
        installed example, is what the service reads."""
        conf = "/etc/secmsgd/secmsgd.conf"
        self.c.run(["cp", self.example_config, conf])
        self.c.run(["sh", "-c", f"echo 'port = 9443' >> {conf}"])
        self.systemctl("restart", "secmsgd.service")
        self.expect_active()
        self.send([f"on the port from secmsgd.conf {self.tag}".encode()], port=9443)
        self.c.run(["rm", conf])
        self.systemctl("stop", "secmsgd.service")

    def watchdog(self):
        """With a 2 s watchdog (a runtime drop-in), the daemon keeps pinging
        and is never killed for silence."""
        dropin = "/run/systemd/system/secmsgd.service.d"
        self.c.run(["mkdir", "-p", dropin])
        self.c.run(["sh", "-c", f"printf '[Service]\\nWatchdogSec=2s\\n' > {dropin}/watchdog.conf"])
        self.systemctl("daemon-reload")
        self.systemctl("start", "secmsgd.service")
        first = int(self.prop("secmsgd.service", "WatchdogTimestampMonotonic") or 0)
        time.sleep(5)
        self.expect_active()
        last = int(self.prop("secmsgd.service", "WatchdogTimestampMonotonic") or 0)
        expect(last > first, f"the daemon keeps sending WATCHDOG=1 "
               f"(last ping at {first} us, then at {last} us)")
        self.systemctl("stop", "secmsgd.service")
        self.c.run(["rm", "-r", dropin])
        self.systemctl("daemon-reload")
        result = self.prop("secmsgd.service", "Result")
        expect(result == "success", f"Result=success after the watchdog run ({result})")

    def no_restarts(self):
        n = self.prop("secmsgd.service", "NRestarts")
        expect(n == "0", f"systemd never had to restart secmsgd (NRestarts={n})")


class InstanceChecks:
    """secmsgd@.service: instances sharing one port (SO_REUSEPORT) and one
    state directory whose credentials secmsgd-init.service made once."""

    INSTANCES = ("secmsgd@1.service", "secmsgd@2.service")
    CONNECTIONS = 200

    def __init__(self, service_checks):
        self.s = service_checks
        self.c = service_checks.c
        self.tag = service_checks.tag

    def run_all(self):
        self.fresh_start_together()
        self.both_listen()
        self.connections_shared()
        self.one_stops_the_other_serves()
        self.target()

    def fresh_start_together(self):
        """With no credentials yet, two instances started at the same moment
        by two systemctl processes: one creation, one pin, both serve it."""
        for unit in ("secmsgd.socket", "secmsgd.service"):
            state = self.s.prop(unit, "ActiveState")
            expect(state == "inactive", f"{unit} is stopped before the instances start ({state})")
        self.c.run(["rm", "-rf", "/var/lib/private/secmsgd", STATE_DIR])
        names = ("tls.key", "tls.crt", "psk")
        before = {n: self.s.init_created(n) for n in names}
        pins_before = len(self.s.logged_pins())
        # Two transactions, not one: each systemctl queues its own start job
        # for secmsgd-init.service, and systemd has to merge them.
        r = self.c.run(["sh", "-c",
                        "systemctl start secmsgd@1 & one=$!; systemctl start secmsgd@2; "
                        "two=$?; wait $one; exit $(($? | two))"], check=False)
        expect(r.returncode == 0, f"systemctl start secmsgd@1 and secmsgd@2 at once succeed "
               f"{r.stderr.strip()}".strip())
        for unit in self.INSTANCES:
            self.s.expect_active(unit)
        made = {n: self.s.init_created(n) - before[n] for n in names}
        expect(made == {n: 1 for n in names}, f"secmsgd-init.service created one key, "
               f"one certificate and one PSK for both ({made})")
        # One run when the second start job merged into the first one's; a
        # second run (a start queued after the first run ended) finds the
        # files and creates nothing: either way, one pin.
        pins = self.s.logged_pins()[pins_before:]
        expect(len(set(pins)) == 1, f"secmsgd-init.service logged one pin, in "
               f"{len(pins)} run(s) ({sorted(set(pins))})")
        self.pin = pins[0]
        files = self.c.run(["ls", "-A", STATE_DIR]).stdout.split()
        expect(sorted(files) == ["psk", "tls.crt", "tls.key"],
               f"the shared state directory holds one key, certificate and PSK ({files})")
        result = self.s.prop("secmsgd-init.service", "Result")
        state = self.s.prop("secmsgd-init.service", "ActiveState")
        expect(result == "success" and state == "inactive",
               f"secmsgd-init.service ran and is done (Result={result}, {state})")
        uids = {self.c.run(["stat", "-c", "%u", f"/proc/{self.s.prop(u, 'MainPID')}"]).stdout.strip()
                for u in self.INSTANCES}
        owner = self.c.run(["stat", "-c", "%u", f"{STATE_DIR}/tls.key"]).stdout.strip()
        expect(uids == {owner}, f"both instances run as the dynamic user that owns the "
               f"credentials (uid {owner}; instances: {sorted(uids)})")
        self.c.run(["install", "-m", "600", f"{STATE_DIR}/psk", CLIENT_PSK])

    def listening_inodes(self):
        """Inodes of the TCP sockets listening on PORT (IPv4 and IPv6)."""
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in self.c.run(["cat", table]).stdout.splitlines()[1:]:
                f = line.split()
                if f[1].endswith(f":{PORT:04X}") and f[3] == "0A":
                    inodes.add(f[9])
        return inodes

    def sockets_of(self, unit):
        pid = self.s.prop(unit, "MainPID")
        out = self.c.run(["find", f"/proc/{pid}/fd", "-type", "l", "-lname", "socket:*",
                          "-printf", "%l\n"]).stdout
        return set(re.findall(r"socket:\[(\d+)\]", out))

    def both_listen(self):
        listening = self.listening_inodes()
        for unit in self.INSTANCES:
            own = self.sockets_of(unit) & listening
            expect(bool(own), f"{unit} has its own socket listening on port {PORT} "
                   f"({len(own)} of {len(listening)})")
        expect(len(listening) == len(self.INSTANCES),
               f"two sockets listen on port {PORT}, one per instance ({len(listening)})")

    def send_each(self, prefix, count, trust):
        """count messages, one connection each (one client run each)."""
        script = (f'i=0; while [ $i -lt {count} ]; do '
                  f'"$0" --port {PORT} --psk-file {CLIENT_PSK} {trust} -q '
                  f'-m "{prefix} $i {self.tag}" || exit 1; i=$((i + 1)); done')
        r = self.c.run(["sh", "-c", script, self.s.client], check=False, timeout=300)
        expect(r.returncode == 0, f"{count} clients, one connection each, all acknowledged "
               f"{r.stderr.strip()}".strip())
        return [f"{prefix} {i} {self.tag}".encode() for i in range(count)]

    def counts(self, sent):
        """{unit: messages of `sent` it recorded}; fails unless each is
        recorded exactly once over all instances."""
        per_unit = {u: 0 for u in self.INSTANCES}
        by_payload = {}
        for e in self.s.recorded("secmsgd@*.service", namespace=None):
            by_payload.setdefault(journal_field(e, "SECMSG_PAYLOAD"), []).append(e)
        for message in sent:
            found = by_payload.get(message, [])
            if len(found) != 1:
                raise CheckFailed(f"the message {message!r} is in the journal "
                                  f"{len(found)} times, not once")
            per_unit[found[0].get("_SYSTEMD_UNIT")] += 1
        print(f"ok: every one of the {len(sent)} messages is recorded exactly once", flush=True)
        return per_unit

    def connections_shared(self):
        sent = self.send_each("shared", self.CONNECTIONS, f"--pin {self.pin}")
        per_unit = self.counts(sent)
        # The kernel picks an instance per connection by a hash of its
        # addresses and ports: a fair coin per connection.  Under a tenth of
        # 200 for one of two is more than 11 standard deviations off.
        for unit, n in per_unit.items():
            expect(n >= self.CONNECTIONS // 10, f"{unit} served a share: {n} of "
                   f"{self.CONNECTIONS} connections")

    def one_stops_the_other_serves(self):
        first, second = self.INSTANCES
        r = self.s.systemctl("stop", first, check=False)
        result = self.s.prop(first, "Result")
        expect(r.returncode == 0 and result == "success",
               f"systemctl stop {first} succeeds (Result={result})")
        self.s.expect_active(second)
        expect(len(self.listening_inodes()) == 1, f"one socket still listens on port {PORT}")
        sent = self.send_each("after-stop", 50, f"--ca-file {STATE_DIR}/tls.crt")
        per_unit = self.counts(sent)
        expect(per_unit[second] == 50, f"{second} alone serves every new connection "
               f"({per_unit})")
        n = self.s.prop(second, "NRestarts")
        expect(n == "0", f"{second} was never restarted (NRestarts={n})")

    def target(self):
        """systemctl enable secmsgd@N enables secmsgd-instances.target (Also=),
        which starts and stops the enabled instances together."""
        self.s.systemctl("enable", *self.INSTANCES)
        state = self.s.systemctl("is-enabled", "secmsgd-instances.target",
                                 check=False).stdout.strip()
        expect(state == "enabled", f"enabling the instances enabled the target ({state})")
        self.s.systemctl("start", "secmsgd-instances.target")
        for unit in self.INSTANCES:
            self.s.expect_active(unit)
        self.s.systemctl("stop", "secmsgd-instances.target")
        for unit in self.INSTANCES:
            state = self.s.prop(unit, "ActiveState")
            result = self.s.prop(unit, "Result")
            expect(state == "inactive" and result == "success",
                   f"stopping the target stopped {unit} cleanly ({state}, Result={result})")
        self.s.systemctl("disable", *self.INSTANCES)


def abridged(text, head=150, tail=400):
    """text, or its first and last lines when it is long (a burst of
    recorded messages would otherwise bury the start-up and the failure)."""
    lines = text.splitlines()
    if len(lines) <= head + tail:
        return text
    return "\n".join(lines[:head] + [f"... {len(lines) - head - tail} lines left out ..."]
                     + lines[-tail:])


def boot_checks(c):
    state = c.run(["systemctl", "is-system-running"], check=False).stdout.strip()
    expect(state in ("running", "degraded"), f"systemd runs as PID 1 ({state})")
    pid1 = c.run(["cat", "/proc/1/comm"]).stdout.strip()
    expect(pid1 == "systemd", f"PID 1 in the container is systemd ({pid1})")
    r = c.run(["journalctl", "--boot", "-n", "1", "--no-pager"], check=False)
    expect(r.returncode == 0 and r.stdout.strip() != "", "journald records the boot")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meson", required=True)
    ap.add_argument("--builddir", required=True)
    ap.add_argument("--cache", required=True, help="directory for the cached root file system")
    ap.add_argument("--boot-only", action="store_true")
    args = ap.parse_args()

    if os.geteuid() != 0:
        print("skipped: the system test boots a container and needs root")
        return 77
    missing = [t for t in ("debootstrap", "systemd-nspawn", "nsenter") if not shutil.which(t)]
    if missing:
        print(f"FAIL: {', '.join(missing)} not found: "
              f"apt-get install systemd-container debootstrap", file=sys.stderr)
        return 1

    # A timeout (meson test sends SIGTERM) still powers the container off and
    # removes what it left: SystemExit unwinds through the with-blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("FAIL: terminated (timeout?)"))
    failed = None
    with tempfile.TemporaryDirectory(prefix="secmsg-system-") as tmp:
        try:
            rootfs = cached_rootfs(os.environ.get("SECMSG_SYSTEST_CACHE") or args.cache)
            before = fingerprint(rootfs)
            if not args.boot_only:
                staging = os.path.join(tmp, "staging")
                installed = staged_install(args.meson, args.builddir, staging)
            remove_stale_cgroups(NAME_PREFIX)
            with Container(rootfs, f"{NAME_PREFIX}{os.getpid()}") as c:
                try:
                    boot_checks(c)
                    if not args.boot_only:
                        c.install_tree(staging)
                        ServiceChecks(c, *installed).run_all()
                except (CheckFailed, ContainerError, subprocess.TimeoutExpired) as e:
                    failed = e
                    print("\n===== the container's journal =====")
                    print(abridged(c.journal()))
                    print("===== end of the container's journal =====\n")
            expect(True, "the container left no process, mount or cgroup behind")
            expect(fingerprint(rootfs) == before,
                   "the cached root file system is unchanged")
        except (CheckFailed, ContainerError) as e:
            if failed:
                print(f"FAIL: {e}", file=sys.stderr)
            failed = failed or e
    if failed:
        print(f"FAIL: {failed}", file=sys.stderr)
        return 1
    print("system test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

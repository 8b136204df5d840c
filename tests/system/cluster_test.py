#!/usr/bin/python3
"""Cluster test: deploy/'s reference deployment, proven in four containers.

    cluster_test.py --meson MESON --builddir BUILD --cache DIR

$SECMSG_SYSTEST_CACHE, when set, replaces --cache (to share the root file
system between build directories).

Boots, each with systemd as PID 1 (container.py), a balancer (Debian's
HAProxy with deploy/haproxy.cfg), two receivers (the installed secmsgd@1
with deploy/receiver/'s configuration: PROXY protocol from the balancer
only, systemd-journal-upload to the collector over TLS with make-certs.sh's
certificates) and a collector (systemd-journal-remote with
deploy/collector/'s configuration), at deploy/'s own addresses from
192.0.2.0/24 (RFC 5737).  They are joined by a bridge in a network namespace
of the test's own, where the clients run: no address of it exists anywhere
else and no packet leaves it.

CLIENTS clients (secmsg in pipe mode, --retry-for) send MESSAGES lines in
all through the balancer, in three parts.  While the second is written,
receiver A's secmsgd is stopped (systemctl stop); then the collector's
journal-remote is stopped and A started again; while the third is written,
receiver B's secmsgd is killed (SIGKILL; systemd restarts it); the collector
comes back once the clients are done.  Then: every client acknowledged all
its lines, before the collector had them; in the collector's journal, every
message each client saw acknowledged, byte for byte, under the SECMSG_ID its
acknowledgement named, with the client's real address as SECMSG_PEER, the
balancer's as SECMSG_VIA and the receiver's host name; both receivers took a
share; every record in each receiver's own journal reached the collector
(the uploads failed while it was away and resumed from their cursors);
nothing there that was not sent; no health check in secmsgd's log.  Then
nothing may be left behind: processes, mounts, cgroups, namespaces, network
links.  Prints the counts (sent, acknowledged, central, duplicates).  On
failure it prints every container's journal.

Exit status: 0 passed, 1 failed, 77 skipped (not root).
"""

import argparse
import contextlib
import ctypes
import glob
import hashlib
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from container import (Container, ContainerError, cached_rootfs,  # noqa: E402
                       remove_stale_cgroups)
from system_test import (CheckFailed, abridged, expect, fingerprint,  # noqa: E402
                         journal_field, staged_install)

NAME_PREFIX = "secmsg-cluster-"
# The packages the containers need beyond the system test's (a root file
# system of its own, cached beside that one).
EXTRA_PACKAGES = ("haproxy", "systemd-journal-remote")

# deploy/'s placeholder addresses, used as they are: the files go in unedited.
BALANCER = "192.0.2.10"
RECEIVERS = ("192.0.2.11", "192.0.2.12")
COLLECTOR = "192.0.2.20"
COLLECTOR_NAME = "collector.example.net"    # deploy/receiver/journal-upload.conf's URL=
CLIENT = "192.0.2.1"                         # the bridge: where the clients run
PREFIX_LEN = 24
BRIDGE = "secmsg-br"
PORT = 8443
MESSAGE_ID = "7d5b1c3c9a0e4f4e8b2a6c1d0f3e5a71"   # secmsgd's records
REMOTE_DIR = "/var/log/journal/remote"

CLIENTS = 4
MESSAGES = 3000          # over all clients
RETRY_FOR = 60
CREDSTORE = "/etc/credstore"
CLIENT_TIMEOUT = 180     # the clients' whole run, at most
CENTRAL_TIMEOUT = 120    # for the last records to reach the collector

CLONE_NEWNET = 0x40000000


def log(text):
    print(f"[cluster] {text}", flush=True)


def sh(*argv, check=True, **kw):
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, **kw)


def links(netns_fd=None):
    """Names of the network links of this namespace, or of the one netns_fd is."""
    prefix = ["nsenter", f"--net=/proc/self/fd/{netns_fd}"] if netns_fd is not None else []
    out = subprocess.run(prefix + ["ip", "-o", "link", "show"], check=True,
                         capture_output=True, text=True,
                         pass_fds=(netns_fd,) if netns_fd is not None else ()).stdout
    return sorted(re.findall(r"^\d+: ([^:@]+)", out, re.M))


def enter_own_network_namespace():
    """Moves this process (single-threaded) into a new network namespace:
    what it creates there, and every container's link to it, exists only
    while the test runs and is never routed anywhere."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise ContainerError(f"unshare(CLONE_NEWNET): {os.strerror(err)}")
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "address", "add", f"{CLIENT}/{PREFIX_LEN}", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")


def processes_in(inodes):
    """[(pid, kind)] of every process (but this one) in one of the
    namespaces {kind: inode}."""
    found = []
    for path in glob.glob("/proc/[0-9]*"):
        pid = int(path[6:])
        if pid == os.getpid():
            continue
        for kind, inode in inodes.items():
            try:
                if os.stat(f"{path}/ns/{kind}").st_ino == inode:
                    found.append((pid, kind))
            except OSError:
                pass
    return found


class Node:
    """One container on the bridge: its address, its link's name on our side."""

    def __init__(self, role, address, rootfs, pid_tag, tmp):
        self.role = role
        self.address = address
        self.hostif = f"cl-{role}"[:15]
        name = f"{NAME_PREFIX}{pid_tag}-{role}"
        # The root file system's /etc/hostname is debootstrap's (the build
        # machine's name), which systemd would set at boot: each container
        # gets its machine name as host name instead (journald's _HOSTNAME).
        hostname = os.path.join(tmp, f"{role}.hostname")
        with open(hostname, "w") as f:
            f.write(name + "\n")
        self.container = Container(
            rootfs, name,
            network=("--private-network", f"--network-veth-extra={self.hostif}:eth0"),
            options=(f"--bind-ro={hostname}:/etc/hostname",))

    @property
    def name(self):
        return self.container.name

    def up(self):
        c = self.container
        sh("ip", "link", "set", self.hostif, "master", BRIDGE, "up")
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "address", "add", f"{self.address}/{PREFIX_LEN}", "dev", "eth0"],
                     ["ip", "link", "set", "eth0", "up"]):
            sh("nsenter", "--target", str(c.pid), "--net", *argv)
        self.namespaces = c.namespaces()

    def run(self, *argv, **kw):
        return self.container.run(list(argv), **kw)

    def systemctl(self, *args, check=True):
        return self.run("systemctl", *args, check=check)

    def prop(self, unit, name):
        return self.systemctl("show", unit, "-p", name, "--value").stdout.strip()

    def expect_active(self, unit, within=0):
        """Requires unit active, waiting up to `within` seconds for it."""
        deadline = time.monotonic() + within
        while True:
            state = self.systemctl("is-active", unit, check=False).stdout.strip()
            if state == "active" or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        expect(state == "active", f"{self.role}: {unit} is active ({state})")

    def put(self, src, dst, mode="644"):
        """Copies a host file into the container (dst's directory made)."""
        with open(src, "rb") as f:
            data = f.read()
        self.run("install", "-D", "-m", mode, "/dev/stdin", dst, input=data, binary=True)

    def journal_json(self, *args, directory=None):
        where = ["-D", directory] if directory else []
        if not directory:
            self.run("journalctl", "--sync", check=False)
        r = self.run("journalctl", "--no-pager", "-o", "json", "--all", *where, *args,
                     binary=True, check=False, timeout=120)
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


class Client:
    """secmsg in pipe mode, its input written by a thread, its
    acknowledgements (-v: 'seq N: recorded id=ID', in input order) read by
    another."""

    def __init__(self, argv, lines):
        self.lines = lines
        self.acks = []
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.err = b""
        self.err_reader = threading.Thread(target=self._read_err, daemon=True)
        self.err_reader.start()

    def _read(self):
        for line in self.proc.stdout:
            m = re.match(rb"seq \d+: recorded id=(\S+)", line)
            if m:
                self.acks.append(m.group(1).decode())

    def _read_err(self):
        self.err = self.proc.stderr.read()

    def write(self, lines, batch=1, pace=0.0):
        for i in range(0, len(lines), batch):
            self.proc.stdin.write(b"".join(l + b"\n" for l in lines[i:i + batch]))
            self.proc.stdin.flush()
            if pace:
                time.sleep(pace)

    def close(self):
        self.proc.stdin.close()

    def finish(self, deadline):
        try:
            self.proc.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(10)
        self.err_reader.join(10)
        return self.proc.returncode

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def message_lines(tag, client, count):
    """count distinct lines, varied: UTF-8, control and high bytes, some long."""
    out = []
    for i in range(count):
        line = f"{tag} client {client} message {i}".encode()
        if i % 7 == 0:
            line += " UTF-8: \u00e9\u00e8 \u2713".encode()
        if i % 11 == 0:
            line += b" bytes: \x01\x02\t\x7f\x80\xfe\xff"
        if i % 97 == 0:
            line += b" " + secrets.token_hex(1500).encode()
        out.append(line)
    return out


class Cluster:
    def __init__(self, rootfs, staging, installed, deploy, tmp):
        self.deploy = deploy
        self.tmp = tmp
        self.staging = staging
        self.sbindir, self.bindir, _ = installed
        tag = os.getpid()
        self.balancer = Node("balancer", BALANCER, rootfs, tag, tmp)
        self.receivers = [Node(f"receiver-{x}", a, rootfs, tag, tmp)
                          for x, a in zip("ab", RECEIVERS)]
        self.collector = Node("collector", COLLECTOR, rootfs, tag, tmp)
        self.nodes = [self.collector, *self.receivers, self.balancer]
        self.tag = secrets.token_hex(4)
        self.counts = {}

    # -- set-up ---------------------------------------------------------------

    def credentials(self):
        """secmsgd's credentials, the same for both receivers, and the
        journal link's certificates (deploy/make-certs.sh)."""
        creds = os.path.join(self.tmp, "creds")
        daemon = os.path.join(self.staging, self.sbindir.lstrip("/"), "secmsgd")
        r = sh(daemon, "--init-credentials", creds)
        self.pin = re.findall(r"sha256:[A-Za-z0-9+/]{43}=", r.stdout + r.stderr)[0]
        self.creds = creds
        self.client = os.path.join(self.staging, self.bindir.lstrip("/"), "secmsg")
        self.certs = os.path.join(self.tmp, "certs")
        sh("sh", os.path.join(self.deploy, "make-certs.sh"), self.certs, COLLECTOR_NAME,
           *[r.name for r in self.receivers])

    def boot(self, stack):
        for node in self.nodes:
            stack.enter_context(node.container)
            node.up()
        expect(True, f"booted {len(self.nodes)} containers, each with systemd as PID 1, "
               f"on bridge {BRIDGE} ({CLIENT}/{PREFIX_LEN}) in the test's own network namespace")

    def setup_collector(self):
        c, d = self.collector, os.path.join(self.deploy, "collector")
        mine = os.path.join(self.certs, COLLECTOR_NAME)
        c.put(f"{mine}/journal-remote.key", f"{CREDSTORE}/journal-remote.key", "600")
        c.put(f"{mine}/journal-remote.crt", f"{CREDSTORE}/journal-remote.crt", "600")
        c.put(f"{d}/journal-remote.conf", "/etc/systemd/journal-remote.conf.d/secmsg.conf")
        for unit in ("systemd-journal-remote.service", "systemd-journal-remote.socket"):
            c.put(f"{d}/{unit}.d/secmsg.conf", f"/etc/systemd/system/{unit}.d/secmsg.conf")
        c.systemctl("daemon-reload")
        c.systemctl("enable", "--now", "systemd-journal-remote.socket")
        c.expect_active("systemd-journal-remote.socket")
        # Only the receivers may upload (IPAddressAllow= on the socket): from
        # the clients' address the collector does not answer.  systemd's
        # address filter is a cgroup BPF program, which needs the unified
        # cgroup hierarchy: a container on a host with hybrid cgroups (as
        # these machines are) has none, and the filter is silently off.
        fs = c.run("stat", "-f", "-c", "%T", "/sys/fs/cgroup").stdout.strip()
        if fs != "cgroup2fs":
            log(f"not checked: IPAddressAllow= on the collector's socket (the container's "
                f"/sys/fs/cgroup is {fs}, not the unified hierarchy)")
            return
        try:
            with socket.create_connection((COLLECTOR, 19532), timeout=2):
                answered = True
        except OSError:
            answered = False
        expect(not answered, f"the collector's port 19532 does not answer {CLIENT}, "
               f"not a receiver (IPAddressAllow=)")

    def setup_receiver(self, r):
        r.container.install_tree(self.staging)
        for name in ("tls.crt", "tls.key", "psk"):
            r.put(os.path.join(self.creds, name), f"{CREDSTORE}/secmsgd.{name}", "600")
        d = os.path.join(self.deploy, "receiver")
        r.put(f"{d}/secmsgd.conf", "/etc/secmsgd/secmsgd.conf")
        mine = os.path.join(self.certs, r.name)
        for src, dst in (("journal-upload.key", "journal-upload.key"),
                         ("journal-upload.crt", "journal-upload.crt"),
                         ("ca.crt", "journal-upload-ca.crt")):
            r.put(f"{mine}/{src}", f"{CREDSTORE}/{dst}", "600")
        r.put(f"{d}/journal-upload.conf", "/etc/systemd/journal-upload.conf.d/secmsg.conf")
        r.put(f"{d}/systemd-journal-upload.service.d/secmsg.conf",
              "/etc/systemd/system/systemd-journal-upload.service.d/secmsg.conf")
        r.run("sh", "-c", f"echo '{COLLECTOR} {COLLECTOR_NAME}' >> /etc/hosts")
        r.systemctl("daemon-reload")
        r.systemctl("enable", "--now", "secmsgd@1.service", "systemd-journal-upload.service")
        r.expect_active("secmsgd@1.service")
        r.expect_active("systemd-journal-upload.service")

    def haproxy_servers(self):
        """{server: status} from HAProxy's stats socket (reached through the
        balancer's root: a unix socket is not in a network namespace)."""
        path = f"/proc/{self.balancer.container.pid}/root/run/haproxy/admin.sock"
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        out = {}
        lines = data.decode().splitlines()
        head = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(head, line.split(",")))
            if row.get("pxname") == "secmsgd_receivers" and row.get("svname") not in \
                    ("BACKEND", "FRONTEND", None):
                out[row["svname"]] = row["status"]
        return out

    def wait_servers(self, want, timeout=30):
        deadline = time.monotonic() + timeout
        got = {}
        while time.monotonic() < deadline:
            try:
                got = self.haproxy_servers()
            except OSError as e:
                got = {"stats socket": str(e)}
            if all(got.get(k, "").startswith(v) for k, v in want.items()):
                return got
            time.sleep(0.5)
        raise CheckFailed(f"HAProxy's servers are not {want} after {timeout} s ({got})")

    def setup_balancer(self):
        b = self.balancer
        b.put(os.path.join(self.deploy, "haproxy.cfg"), "/etc/haproxy/haproxy.cfg")
        # deploy/'s maxconn 20000 needs 40042 open files, which a real
        # Debian host's systemd allows (hard limit 524288).  A container's
        # systemd has the hard limit of whoever started it, and cannot raise
        # it (nspawn takes CAP_SYS_RESOURCE away); when that is too low for
        # HAProxy, the test's balancer takes fewer connections at once (-n,
        # which wins over the configuration's maxconn): the file itself goes
        # in unedited.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < 2 * 20000 + 100:
            n = (hard - 100) // 2
            b.run("sh", "-c", "echo 'EXTRAOPTS=\"-S /run/haproxy-master.sock "
                  f"-n {n}\"' >> /etc/default/haproxy")
            log(f"HAProxy: maxconn {n} (-n), for this machine's open file limit ({hard})")
        b.run("haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg")
        b.systemctl("restart", "haproxy.service")
        b.expect_active("haproxy.service")
        got = self.wait_servers({"receiver-a": "UP", "receiver-b": "UP"})
        expect(True, f"HAProxy's health checks see both receivers up ({got})")

    def setup(self, stack):
        self.credentials()
        self.boot(stack)
        self.setup_collector()
        for r in self.receivers:
            self.setup_receiver(r)
        self.setup_balancer()

    # -- the load ---------------------------------------------------------------

    def send(self):
        """CLIENTS clients at once, their lines in three parts.  While the
        second is being written, receiver A's secmsgd is stopped (the
        administrator's way: it answers what it has, then ERROR 7); A is
        started again; while the third is being written, receiver B's
        secmsgd is killed (SIGKILL: acknowledgements lost in flight) and
        systemd restarts it."""
        per = MESSAGES // CLIENTS
        # stdbuf: each acknowledgement as soon as it is shown (secmsg's
        # standard output is a pipe here, block-buffered otherwise).
        argv = ["stdbuf", "-oL", self.client, "--host", BALANCER, "--port", str(PORT),
                "--psk-file", os.path.join(self.creds, "psk"), "--pin", self.pin,
                "--retry-for", str(RETRY_FOR), "-v"]
        self.clients = [Client(argv, message_lines(self.tag, i, per)) for i in range(CLIENTS)]
        a, b = self.receivers
        started = time.monotonic()
        self.deadline = started + CLIENT_TIMEOUT
        third = per // 3
        try:
            for c in self.clients:
                c.write(c.lines[:third], batch=50)
            self.wait_acks(third, "the first part")
            self.during(third, 2 * third, a, "stop", "stopped (systemctl stop)")
            self.wait_acks(2 * third, "the second part")
            self.wait_servers({"receiver-a": "DOWN", "receiver-b": "UP"})
            expect(True, "HAProxy marked receiver-a down, receiver-b stays up")
            # The collector goes away until the clients are done: the
            # receivers acknowledge regardless, their uploads fail and are
            # restarted (deploy/'s drop-in) until it is back.
            self.collector.systemctl("stop", "systemd-journal-remote.socket",
                                     "systemd-journal-remote.service")
            expect(True, "collector: systemd-journal-remote stopped")
            a.systemctl("start", "secmsgd@1.service")
            self.wait_servers({"receiver-a": "UP", "receiver-b": "UP"})
            expect(True, "receiver-a started again: HAProxy sees it up")
            self.during(2 * third, per, b, "kill", "killed (SIGKILL)", close=True)
            codes = [c.finish(self.deadline) for c in self.clients]
        finally:
            for c in self.clients:
                c.stop()
        self.counts["in the central journal when the clients were done"] = len(self.central())
        self.collector.systemctl("start", "systemd-journal-remote.socket")
        self.collector.expect_active("systemd-journal-remote.socket")
        took = time.monotonic() - started
        for i, (c, code) in enumerate(zip(self.clients, codes)):
            print(f"  client {i}: exit {code}, {len(c.acks)} acknowledgements shown", flush=True)
            for line in c.err.decode(errors="replace").splitlines():
                if not line.startswith("secmsg: connected"):
                    print(f"    {line}", flush=True)
        retried = sum(b"connected again" in c.err for c in self.clients)
        self.counts["sent"] = sum(len(c.lines) for c in self.clients)
        self.counts["acknowledged"] = sum(len(c.acks) for c in self.clients)
        expect(all(code == 0 for code in codes),
               f"every client exits 0: all {self.counts['acknowledged']} of "
               f"{self.counts['sent']} lines acknowledged in {took:.1f} s "
               f"({retried} client(s) connected again and resent)")
        expect(retried >= 1, "at least one client lost its receiver and connected again")
        for c in self.clients:
            if len(c.acks) != len(c.lines):
                raise CheckFailed(f"a client exited 0 with {len(c.acks)} acknowledgements "
                                  f"shown for {len(c.lines)} lines")
        # Restart=on-failure, 100 ms after the kill (the clients may have
        # finished on receiver A before that).
        b.expect_active("secmsgd@1.service", within=10)
        restarts = b.prop("secmsgd@1.service", "NRestarts")
        expect(restarts == "1", f"receiver-b: systemd restarted the killed secmsgd@1 once "
               f"(NRestarts={restarts})")

    def wait_acks(self, count, what):
        """Until every client has shown count acknowledgements."""
        while any(len(c.acks) < count for c in self.clients):
            if time.monotonic() > self.deadline or any(c.proc.poll() is not None
                                                       for c in self.clients):
                raise CheckFailed(f"{what} was not acknowledged "
                                  f"({[len(c.acks) for c in self.clients]} of {count} each)")
            time.sleep(0.05)
        expect(True, f"{CLIENTS} clients: {what} acknowledged through the balancer "
               f"({count} lines each)")

    def during(self, first, last, receiver, how, what, close=False):
        """Writes lines [first, last) of every client, 5 lines every 10 ms,
        and 0.3 s in stops or kills the receiver's secmsgd."""
        def write(c):
            c.write(c.lines[first:last], batch=5, pace=0.01)
            if close:
                c.close()
        writers = [threading.Thread(target=write, args=(c,), daemon=True) for c in self.clients]
        for w in writers:
            w.start()
        time.sleep(0.3)
        so_far = sum(len(c.acks) for c in self.clients)
        if how == "stop":
            r = receiver.systemctl("stop", "secmsgd@1.service", check=False)
        else:
            r = receiver.systemctl("kill", "--signal=SIGKILL", "secmsgd@1.service", check=False)
        expect(r.returncode == 0, f"{receiver.role}: secmsgd@1 {what} while lines are "
               f"being written ({so_far} of {MESSAGES} acknowledged so far)")
        self.counts[f"acknowledged when {receiver.role} was {what.split()[0]}"] = so_far
        for w in writers:
            w.join(max(1, self.deadline - time.monotonic()))

    # -- the checks ---------------------------------------------------------------

    def ours(self, entries):
        prefix = self.tag.encode() + b" "
        return [e for e in entries
                if (journal_field(e, "SECMSG_PAYLOAD") or b"").startswith(prefix)]

    def central(self):
        return self.ours(self.collector.journal_json(f"MESSAGE_ID={MESSAGE_ID}",
                                                     directory=REMOTE_DIR))

    def check(self):
        acked = {}          # SECMSG_ID -> the line it acknowledged
        for c in self.clients:
            for rid, line in zip(c.acks, c.lines):
                acked[rid] = line
        expect(len(acked) == self.counts["acknowledged"],
               f"every acknowledgement named a record of its own ({len(acked)} ids)")

        deadline = time.monotonic() + CENTRAL_TIMEOUT
        started = time.monotonic()
        while True:
            entries = self.central()
            ids = {journal_field(e, "SECMSG_ID").decode() for e in entries}
            missing = [rid for rid in acked if rid not in ids]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(1)
        expect(not missing, f"the collector's journal holds every acknowledged record "
               f"(after {time.monotonic() - started:.0f} s; {len(missing)} missing"
               f"{', e.g. ' + missing[0] if missing else ''})")
        early = self.counts["in the central journal when the clients were done"]
        expect(early < len(acked), f"the clients had every acknowledgement before the "
               f"collector had the records ({early} of {len(acked)} there then)")
        for r in self.receivers:
            n = int(r.prop("systemd-journal-upload.service", "NRestarts") or 0)
            expect(n >= 1, f"{r.role}: systemd-journal-upload failed while the collector "
                   f"was away and was restarted ({n} restarts), resuming from its cursor")
            self.counts[f"journal-upload restarts on {r.role}"] = n

        by_id = {}
        for e in entries:
            by_id.setdefault(journal_field(e, "SECMSG_ID").decode(), []).append(e)
        hosts = {r.name for r in self.receivers}
        per_host = {h: 0 for h in hosts}
        for rid, line in acked.items():
            e = by_id[rid][0]
            host = (journal_field(e, "_HOSTNAME") or b"").decode()
            peer = (journal_field(e, "SECMSG_PEER") or b"").decode()
            via = (journal_field(e, "SECMSG_VIA") or b"").decode()
            problems = []
            if journal_field(e, "SECMSG_PAYLOAD") != line:
                problems.append("payload differs")
            if journal_field(e, "SECMSG_SHA256").decode().lower() != \
                    hashlib.sha256(line).hexdigest():
                problems.append("SECMSG_SHA256 differs")
            if not re.fullmatch(rf"{re.escape(CLIENT)}:\d+", peer):
                problems.append(f"SECMSG_PEER={peer}")
            if not re.fullmatch(rf"{re.escape(BALANCER)}:\d+", via):
                problems.append(f"SECMSG_VIA={via}")
            if host not in hosts:
                problems.append(f"_HOSTNAME={host}")
            if problems:
                raise CheckFailed(f"record {rid} of {line[:60]!r}: {', '.join(problems)}")
            per_host[host] += 1
        expect(True, f"each of the {len(acked)} acknowledged messages is there byte for byte "
               f"(SECMSG_PAYLOAD, SECMSG_SHA256), SECMSG_PEER the client's {CLIENT}, "
               f"SECMSG_VIA the balancer's {BALANCER}, _HOSTNAME a receiver's")
        share = len(acked) // 20
        for host, n in sorted(per_host.items()):
            expect(n >= share, f"{host} took a share: {n} of {len(acked)} acknowledged")
        self.counts["acknowledged by receiver"] = per_host

        # Each receiver's own records all reached the collector, under its name:
        # for receiver A also those recorded before the stop whose
        # acknowledgement was lost with the connection (the client resent them).
        for r in self.receivers:
            local = self.ours(r.journal_json("_SYSTEMD_UNIT=secmsgd@1.service",
                                             f"MESSAGE_ID={MESSAGE_ID}"))
            lost = [journal_field(e, "SECMSG_ID").decode() for e in local
                    if journal_field(e, "SECMSG_ID").decode() not in by_id]
            wrong = [rid for rid in (journal_field(e, "SECMSG_ID").decode() for e in local)
                     if rid in by_id and (journal_field(by_id[rid][0], "_HOSTNAME") or b"")
                     .decode() != r.name]
            expect(not lost and not wrong,
                   f"all {len(local)} records in {r.role}'s own journal are in the collector's, "
                   f"under its host name ({len(lost)} missing, {len(wrong)} under another)")
            self.counts[f"recorded on {r.role}"] = len(local)

        # HAProxy checked each receiver every 2 s all along: secmsgd logged
        # none of those checks, but the client connections that ended (not
        # those a SIGKILL cut), with the balancer as "via".
        via = 0
        for r in self.receivers:
            out = r.run("journalctl", "--no-pager", "-o", "cat", "-u", "secmsgd@1.service",
                        timeout=120).stdout.splitlines()
            checks = [l for l in out if f"peer {BALANCER}:" in l]
            expect(not checks, f"{r.role}: secmsgd logged none of HAProxy's health checks "
                   f"({len(checks)} lines about {BALANCER} itself)")
            via += sum(bool(re.search(rf"peer {re.escape(CLIENT)}:\d+ via "
                                      rf"{re.escape(BALANCER)}:\d+", l)) for l in out)
        expect(via > 0, f"secmsgd logged client connections as from {CLIENT} via "
               f"{BALANCER} ({via} lines)")

        sent = {l for c in self.clients for l in c.lines}
        payloads = {}
        for e in entries:
            payloads.setdefault(journal_field(e, "SECMSG_PAYLOAD"), set()).add(
                journal_field(e, "SECMSG_ID").decode())
        strangers = [p for p in payloads if p not in sent]
        expect(not strangers, f"the collector holds no message that was not sent "
               f"({len(strangers)})")
        twice_recorded = sum(len(ids) - 1 for ids in payloads.values())
        twice_uploaded = sum(len(v) - 1 for v in by_id.values())
        self.counts["in the central journal"] = len(entries)
        self.counts["distinct messages there"] = len(payloads)
        self.counts["recorded twice (sent again after a stop or kill)"] = twice_recorded
        self.counts["uploaded twice (same record)"] = twice_uploaded
        expect(len(payloads) == len(sent), f"every one of the {len(sent)} messages sent is "
               f"in the central journal ({len(payloads)} distinct)")

    def report(self):
        print("counts:", flush=True)
        for k, v in self.counts.items():
            print(f"  {k}: {v}", flush=True)

    def journals(self):
        for node in self.nodes:
            print(f"\n===== {node.role}'s journal ({node.name}) =====")
            print(abridged(node.container.journal()))
        print("===== end of the containers' journals =====\n", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meson", required=True)
    ap.add_argument("--builddir", required=True)
    ap.add_argument("--cache", required=True, help="directory for the cached root file system")
    ap.add_argument("--deploy", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy"))
    args = ap.parse_args()

    if os.geteuid() != 0:
        print("skipped: the cluster test boots containers and needs root")
        return 77
    missing = [t for t in ("debootstrap", "systemd-nspawn", "nsenter", "ip", "openssl")
               if not shutil.which(t)]
    if missing:
        print(f"FAIL: {', '.join(missing)} not found: apt-get install systemd-container "
              f"debootstrap iproute2 openssl", file=sys.stderr)
        return 1

    signal.signal(signal.SIGTERM, lambda *_: sys.exit("FAIL: terminated (timeout?)"))
    failed = None
    started = time.monotonic()
    host_netns = os.open("/proc/self/ns/net", os.O_RDONLY)
    host_links = links()
    cluster = None
    with tempfile.TemporaryDirectory(prefix="secmsg-cluster-") as tmp:
        try:
            rootfs = cached_rootfs(os.environ.get("SECMSG_SYSTEST_CACHE") or args.cache,
                                   EXTRA_PACKAGES)
            before = fingerprint(rootfs)
            staging = os.path.join(tmp, "staging")
            installed = staged_install(args.meson, args.builddir, staging)
            remove_stale_cgroups(NAME_PREFIX)
            enter_own_network_namespace()
            own_netns = os.stat("/proc/self/ns/net").st_ino
            cluster = Cluster(rootfs, staging, installed, os.path.abspath(args.deploy), tmp)
            with contextlib.ExitStack() as stack:
                try:
                    cluster.setup(stack)
                    cluster.send()
                    cluster.check()
                except (CheckFailed, ContainerError, subprocess.TimeoutExpired,
                        subprocess.CalledProcessError, OSError) as e:
                    failed = e
                    if isinstance(e, subprocess.CalledProcessError):
                        print(f"{e.cmd}: {e.stdout}{e.stderr}")
                    cluster.journals()
            # A container that never booted (an earlier one failed) has
            # only its empty work directory.
            for node in cluster.nodes:
                if node.container.nspawn is None:
                    shutil.rmtree(node.container.workdir, ignore_errors=True)
            # The containers are gone: nothing of theirs may remain.
            expect(True, "the containers left no process, mount or cgroup behind")
            stray = processes_in({"net": own_netns})
            for node in cluster.nodes:
                stray += processes_in(getattr(node, "namespaces", {}))
            expect(not stray, f"no process is left in the containers' namespaces or the "
                   f"test's network namespace ({stray[:5]})")
            left = [l for l in links() if l not in ("lo", BRIDGE)]
            expect(not left, f"no container's link is left ({left})")
            sh("ip", "link", "delete", BRIDGE)
            expect(links() == ["lo"], f"the test's network namespace holds only lo ({links()})")
            ours = [l for l in links(host_netns) if l not in host_links and
                    (l == BRIDGE or l.startswith("cl-"))]
            expect(not ours, f"the machine's own network namespace has none of the "
                   f"test's links ({ours})")
            expect(fingerprint(rootfs) == before, "the cached root file system is unchanged")
        except (CheckFailed, ContainerError, subprocess.CalledProcessError) as e:
            if isinstance(e, subprocess.CalledProcessError):
                print(f"{e.cmd}: {e.stdout}{e.stderr}")
            if failed:
                print(f"FAIL: {e}", file=sys.stderr)
            failed = failed or e
    if cluster is not None:
        cluster.report()
    print(f"cluster test took {time.monotonic() - started:.0f} s", flush=True)
    if failed:
        print(f"FAIL: {failed}", file=sys.stderr)
        return 1
    print("cluster test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

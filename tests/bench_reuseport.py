#!/usr/bin/python3
"""--reuse-port: several secmsgd on one port share its connections.

Starts --instances secmsgd processes (default 2) on one free loopback port,
each with --reuse-port and recording off, drives them with bench-load (the
load benchmark's generator: loops of connect, full TLS 1.3 handshake, one
message and its ACK, close), then stops them with SIGTERM.  For each
instance it prints the connections it served (from its closing "stopped: N
connections served" line), its share of them, and its CPU time per
connection (/proc/PID/stat utime + stime over the measured period); then
the same workload against one instance alone, for the total rate (a fair
comparison only on an otherwise quiet machine).  Unpinned, N instances and
the generator share the cores, and on two cores CPU per connection rises
with the contention; --pin puts every instance on CPU 0 and the generator
on CPU 1, so that N instances share the core one instance has alone.

The kernel picks an instance per connection by a hash of its addresses and
ports, so the shares are fair within binomial noise: the script reports
how far each share is from 1/N in standard deviations, and exits 1 if an
instance got no connection or a share is off by more than 5 standard
deviations (over a few thousand connections, a few per cent of 1/N).
--smoke (the test suite's run): one second, no comparison with one
instance alone.

  tests/bench_reuseport.py --secmsgd build/daemon/secmsgd --generator build/tests/bench-load
"""
import argparse
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_load  # noqa: E402  (credentials, generator runner, port picking)

SERVED = re.compile(r"stopped: (\d+) connections served")


class Instance(bench_load.Server):
    """One secmsgd listening with --reuse-port on a shared port."""

    def __init__(self, index, of, argv, workdir):
        super().__init__("secmsgd-%d-of-%d" % (index, of), lambda port: argv, [], workdir, ours=True)
        self.index = index
        self.log_path = os.path.join(workdir, self.label + ".log")

    def start_on(self, port):
        """Starts it; no connection is made to see it listen (it would count as served)."""
        self.port = port
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv_fn(port), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log,
                                     preexec_fn=bench_load.raise_nofile)

    def served(self):
        """After stop(): the connections its closing line says it served, else None."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            m = SERVED.findall(f.read())
        return int(m[-1]) if m else None


def holds_socket(pid, inodes):
    """True when process pid holds one of the sockets `inodes` ({"socket:[INODE]"})."""
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) in inodes:
                return True
        except OSError:
            pass
    return False


def tcp_sockets(port, peer_port=None):
    """{"socket:[INODE]"} of the IPv4 TCP sockets on 127.0.0.1:port: the
    listening ones, or with peer_port the one connected to that port."""
    want = "0100007F:%04X" % port
    out = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] != want:
                continue
            if (fields[3] == "0A" if peer_port is None  # TCP_LISTEN
                    else fields[2] == "0100007F:%04X" % peer_port):
                out.add("socket:[%s]" % fields[9])
    return out


def wait_listening(port, procs, timeout):
    """Until each process of `procs` (Popen) holds a listening socket of its
    own on the port; no connection is made to see it (it would count as
    served, and reach any one of them).  Returns None, or the first process
    that exited meanwhile; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                return p
        inodes = tcp_sockets(port)
        if all(holds_socket(p.pid, inodes) for p in procs):
            return None
        time.sleep(0.05)
    raise TimeoutError("the instances did not listen on port %d within %d s" % (port, timeout))


def run(a, gen, cred, work, n):
    """n instances on one port, one generator run; per-instance figures."""
    port = bench_load.free_port()
    argv = (["taskset", "-c", "0"] if a.pin else []) + [
            a.secmsgd, "--reuse-port", "--host", "127.0.0.1", "--port", str(port),
            "--cert", cred["cert"], "--key", cred["key"], "--psk-file", cred["psk"],
            "--record", "none", "--max-connections", "20000"]
    instances = [Instance(k, n, argv, work) for k in range(n)]
    try:
        for i in instances:
            i.start_on(port)
        try:
            dead = wait_listening(port, [i.proc for i in instances], 15)
        except TimeoutError as e:
            sys.exit("bench_reuseport.py: %s" % e)
        for i in instances:
            if i.proc is dead:
                sys.exit("bench_reuseport.py: secmsgd %d exited at start: %s" % (i.index, i.log_tail()))
        cpu0 = {}

        def on_line(line, _):
            if line == "begin":
                for i in instances:
                    cpu0[i.index] = i.cpu_seconds()

        class Target:  # what Generator.run needs of a server
            pass
        target = Target()
        target.port = port
        r, = gen.run(target, [["--mode", "handshake", "--connections", str(a.connections), "--size", "64",
                               "--seconds", str(a.seconds)]], on_line, timeout=a.seconds + 90)
        cpu = {i.index: i.cpu_seconds() - cpu0.get(i.index, 0) for i in instances}
        for i in instances:
            if not i.alive():
                sys.exit("bench_reuseport.py: secmsgd %d died under load: %s" % (i.index, i.log_tail()))
    finally:
        for i in instances:
            i.stop()  # SIGTERM: it logs its closing line
    served = {i.index: i.served() for i in instances}
    for k, c in served.items():
        if c is None:
            sys.exit("bench_reuseport.py: secmsgd %d left no 'connections served' line" % k)
    return r, served, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--secmsgd", required=True)
    ap.add_argument("--generator", required=True, help="path of bench-load")
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--connections", type=int, default=8, help="concurrent handshake loops")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--pin", action="store_true",
                    help="every instance on CPU 0, the generator on CPU 1: N instances share the "
                         "core one has alone, so CPU per connection compares without the cores' "
                         "contention (needs 2 CPUs and taskset)")
    ap.add_argument("--smoke", action="store_true",
                    help="a 1-second run and the fairness check only (for the test suite)")
    ap.add_argument("--key-type", choices=("ed25519", "ecdsa"), default="ed25519",
                    help="the server certificate's key, as in bench_load.py")
    a = ap.parse_args()
    if a.smoke:
        a.seconds = 1.0
    a.secmsgd = os.path.abspath(a.secmsgd)
    for p in (a.secmsgd, a.generator):
        if not os.access(p, os.X_OK):
            sys.exit("bench_reuseport.py: %s is not an executable" % p)

    work = tempfile.mkdtemp(prefix="secmsg-reuseport-")
    try:
        cred = bench_load.make_credentials(work, a.key_type)
        gen = bench_load.Generator(os.path.abspath(a.generator),
                                   [["taskset", "-c", "1"] if a.pin else []], cred)  # one process
        n = a.instances
        print("secmsgd --reuse-port: %d instances on one port, %d handshake loops (connect, TLS 1.3, "
              "one 64 B message, close) for %.0f s; %d CPUs" % (n, a.connections, a.seconds,
                                                                  len(os.sched_getaffinity(0))))
        r, served, cpu = run(a, gen, cred, work, n)
        total = sum(served.values())
        # Connections counted by the instances include the generator's
        # warm-up and the few open at the end; the generator's own count
        # is the measured period.
        print("\n%-10s %12s %8s %10s %14s" % ("instance", "connections", "share", "off by", "CPU ms/conn"))
        sigma = math.sqrt(total * (1 / n) * (1 - 1 / n)) if total else 0
        worst = 0.0  # largest distance from a fair share, in standard deviations
        for k in sorted(served):
            c = served[k]
            off = (c - total / n) / sigma if sigma else 0.0
            worst = max(worst, abs(off))
            print("%-10s %12d %7.1f%% %9.1fσ %14s" % (
                "secmsgd %d" % k, c, 100 * c / total if total else 0, off,
                "%.3f" % (cpu[k] / c * 1e3) if c else "-"))
        rate_n = r["connections_completed"] / r["seconds"]
        print("%-10s %12d   (generator: %.0f connections/s over %.1f s)" % ("total", total, rate_n, r["seconds"]))

        fair = total and all(c > 0 for c in served.values()) and worst <= 5
        if not fair:
            print("FAIL: the connections were not shared fairly")
            return 1
        if a.smoke:
            return 0
        r1, served1, cpu1 = run(a, gen, cred, work, 1)
        rate_1 = r1["connections_completed"] / r1["seconds"]
        c1 = served1[0]
        print("\none instance alone: %d connections, %.0f connections/s, %.3f CPU ms/conn; "
              "%d instances: %.2fx its rate" % (c1, rate_1, cpu1[0] / c1 * 1e3 if c1 else 0, n,
                                                  rate_n / rate_1 if rate_1 else 0))
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        print("(load average %s: on a machine busy with other work, more processes also get a "
              "larger share of the CPUs, so the rate ratio is only meaningful when it is quiet; "
              "the shares and CPU per connection are not affected)" % load)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

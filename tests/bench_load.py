#!/usr/bin/python3
"""Load benchmark: secmsgd against the reference peers, in one run.

Makes throwaway credentials (ECDSA P-256 certificate and key with
python3-cryptography, a random PSK), starts every server on a free loopback
port with recording off, drives the same workloads against each with the same
generator (bench-load, built from the project's own client code), samples each
server's CPU time (/proc/PID/stat) and memory (/proc/PID/status VmRSS, VmHWM),
and prints one table of absolute figures and ratios secmsgd/peer.  Each
workload runs --reps times per server, interleaved across servers so that the
machine's noise falls on all of them alike; the table shows medians.

Workloads:
  small-1     64 connections, each with 1 message of 64 B in flight
  small-64    16 connections, each pipelining 64 messages of 64 B
  large       4 connections, each pipelining 8 messages of 16 KiB
  handshake   32 concurrent loops of: connect, full TLS 1.3 handshake, one
              message and its ACK, close
  idle        a fresh server per repetition; connections that each sent one
              message stay open; RSS growth per connection between 16 open
              connections and each step (default 1000 and 9000; the steps
              after the first only in the first --idle-full-reps runs)

Every rate comes with the server's CPU per operation (its own utime+stime
from /proc/PID/stat over the measured period, divided by the operations), and
with how busy each side's core was: on two cores the generator's core
saturates before secmsgd's, so secmsgd's rates are lower bounds and its CPU
per operation is the figure to compare.  With --crypto-bench (bench-crypto,
the same build), each CPU figure is also set against the crypto floor of its
operation: what the cryptography alone costs on that build.

With two or more CPUs the servers are pinned to CPU 0 and the generators to
the other CPUs (taskset); --generators N runs N generator processes that
share the workload's connections, for machines where one generator process
is the ceiling.  The servers' open-file limit is raised to the hard limit.

  tests/bench_load.py --generator build/tests/bench-load --secmsgd build/daemon/secmsgd
  (meson test -C build --benchmark runs exactly that)
"""
import argparse
import base64
import datetime
import json
import os
import resource
import secrets
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PEERS_DIR = "/work/shared/peers"
CLK_TCK = os.sysconf("SC_CLK_TCK")
IDLE_BASE = 16  # open connections at the idle baseline sample

# name: (generator mode, connections, window, message size, what one
# operation is, the bench-crypto figure that is its crypto floor)
WORKLOADS = {
    "small-1": ("throughput", 64, 1, 64, "message", "msg_floor_64"),
    "small-64": ("throughput", 16, 64, 64, "message", "msg_floor_64"),
    "large": ("large", 4, 8, 16384, "message", "msg_floor_16k"),
    "handshake": ("handshake", 32, 1, 64, "handshake", "handshake_floor_{key}"),
}


def generator_args(workload, share, parts):
    """bench-load's arguments for one of `parts` generator processes (share
    is its index): the workload's connections split as evenly as they go."""
    mode, conns, window, size, _, _ = WORKLOADS[workload]
    mine = conns // parts + (1 if share < conns % parts else 0)
    return ["--mode", mode, "--connections", str(max(mine, 1)), "--window", str(window),
            "--size", str(size)]


class BenchFail(Exception):
    """One server or workload could not be measured; the reason is one line."""


def make_credentials(d, key_type):
    """Writes cert.pem, key.pem (key_type "ed25519" or "ecdsa": P-256; SAN
    localhost/127.0.0.1) and psk (mode 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.x509.oid import NameOID
    import ipaddress

    if key_type == "ed25519":
        key, digest = ed25519.Ed25519PrivateKey.generate(), None
    else:
        key, digest = ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, digest))
    paths = {k: os.path.join(d, f) for k, f in (("cert", "cert.pem"), ("key", "key.pem"), ("psk", "psk"))}
    with open(paths["cert"], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    for path, data in ((paths["key"], key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())),
            (paths["psk"], base64.b64encode(secrets.token_bytes(32)) + b"\n")):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return paths


def cpu_times(cpus):
    """{cpu: (busy, total)} jiffies from /proc/stat, for the given CPU numbers."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *vals = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                v = [int(x) for x in vals]
                idle = v[3] + v[4]  # idle, iowait
                out[int(name[3:])] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


def busy_share(before, after, cpu):
    """Fraction of the time a CPU was busy (any process) between two cpu_times samples."""
    if cpu not in before or cpu not in after:
        return None
    db = after[cpu][0] - before[cpu][0]
    dt = after[cpu][1] - before[cpu][1]
    return db / dt if dt > 0 else None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile():
    """preexec_fn: the server may open as many files as the hard limit allows."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Server:
    """One server under test: how to start it, its process, and /proc samples."""

    def __init__(self, label, argv_fn, pin, workdir, ours=False):
        self.label = label
        self.ours = ours        # a secmsgd build (ratios are ours/peer)
        self.argv_fn = argv_fn  # port -> argv
        self.pin = pin          # taskset prefix ([] when not pinning)
        self.workdir = workdir
        self.proc = None
        self.port = None
        self.log = None

    def start(self):
        self.port = free_port()
        self.log = open(os.path.join(self.workdir, self.label + ".log"), "ab")
        self.proc = subprocess.Popen(self.pin + self.argv_fn(self.port), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log,
                                     preexec_fn=raise_nofile)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchFail("%s exited at start with status %d: %s"
                                % (self.label, self.proc.returncode, self.log_tail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BenchFail("%s did not listen on port %d within 15 s" % (self.label, self.port))

    def log_tail(self):
        self.log.flush()
        with open(self.log.name, "rb") as f:
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def memory_kib(self):
        """(VmRSS, VmHWM) in KiB."""
        got = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    got[k] = int(v.split()[0])
        return got["VmRSS"], got["VmHWM"]

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()


class Generator:
    """Runs bench-load against a server, one process or several side by side,
    reacting to their progress lines."""

    def __init__(self, path, pins, cred):
        self.path = path
        self.pins = pins  # one taskset prefix per generator process ([] when not pinning)
        self.cred = cred

    def run(self, server, args_list, on_line, timeout):
        """Starts one process per entry of args_list (the i-th pinned like
        pins[i % len(pins)]); on_line(line, process) for each line that is not
        a result; returns the list of their results."""
        procs = []
        sel = selectors.DefaultSelector()
        results = {}
        try:
            for i, args in enumerate(args_list):
                argv = (self.pins[i % len(self.pins)] + [self.path, "--port", str(server.port),
                                                          "--psk-file", self.cred["psk"]] + args)
                p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
                procs.append(p)
                sel.register(p.stdout, selectors.EVENT_READ, p)
            deadline = time.monotonic() + timeout
            open_streams = len(procs)
            while open_streams and len(results) < len(procs):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchFail("generator timed out after %d s" % timeout)
                for key, _ in sel.select(left):
                    p = key.data
                    line = p.stdout.readline()
                    if not line:
                        sel.unregister(p.stdout)
                        open_streams -= 1
                        continue
                    line = line.strip()
                    if line.startswith("result "):
                        results[p.pid] = json.loads(line[len("result "):])
                    else:
                        on_line(line, p)
        finally:
            sel.close()
            errors = []
            for p in procs:
                if p.pid not in results and p.poll() is None:
                    p.kill()
                try:
                    p.stdin.close()
                except OSError:
                    pass
                err = p.stderr.read().strip()
                p.wait()
                if p.pid not in results or p.returncode != 0:
                    errors.append(err.splitlines()[-1] if err else
                                  "generator exited with status %s" % p.returncode)
        if errors:
            raise BenchFail(errors[0])
        return [results[p.pid] for p in procs]


def measure_load(gen, server, workload, seconds, cpus, warmup, parts):
    """One run of a streaming or handshake workload with `parts` generator
    processes; figures for the table.  cpus: (server CPU, generator CPUs...),
    to see how busy each was in total.  The measured period runs from the
    first generator's "begin" to the end of the last one."""
    marks = {}

    def on_line(line, _):
        if line == "begin" and "cpu0" not in marks:
            marks["cpu0"] = server.cpu_seconds()
            marks["stat0"] = cpu_times(cpus)

    args = [generator_args(workload, i, parts) + ["--seconds", str(seconds), "--warmup", str(warmup)]
            for i in range(parts)]
    rs = gen.run(server, args, on_line, timeout=seconds + 90)
    cpu = server.cpu_seconds() - marks["cpu0"]
    stat1 = cpu_times(cpus)
    wall = max(r["seconds"] for r in rs)
    gen_cpu = sum(r["generator_cpu_seconds"] for r in rs)
    gen_busy = [busy_share(marks["stat0"], stat1, c) for c in cpus[1:]]
    gen_busy = [b for b in gen_busy if b is not None]
    out = {"wall": wall, "server_cpu": cpu, "gen_busy": gen_cpu / wall / max(len(cpus) - 1, 1),
           "server_share": cpu / wall,
           "server_cpu_busy": busy_share(marks["stat0"], stat1, cpus[0]),
           "gen_cpu_busy": max(gen_busy) if gen_busy else None,
           "cipher": rs[0]["cipher"], "tls": rs[0]["tls_version"]}
    ops = sum(r["connections_completed"] if WORKLOADS[workload][4] == "handshake" else r["messages"]
              for r in rs)
    out["ops_per_s"] = ops / wall
    out["cpu_us_per_op"] = cpu / ops * 1e6 if ops else None
    if WORKLOADS[workload][0] == "large":
        out["mb_per_s"] = sum(r["bytes"] for r in rs) / wall / 1e6
    if not server.alive():
        raise BenchFail("%s died during the %s workload: %s" % (server.label, workload, server.log_tail()))
    return out


def measure_idle(gen, server, steps):
    """RSS growth per idle connection (KiB) at each step, from a fresh server."""
    samples = {}

    def on_line(line, p):
        if line.startswith("idle "):
            n = int(line.split()[1])
            time.sleep(0.3)  # let the last handshakes' garbage settle
            samples[n] = server.memory_kib()[0]
            p.stdin.write("\n")
            p.stdin.flush()

    gen.run(server, [["--mode", "idle", "--idle-steps", ",".join(str(s) for s in [IDLE_BASE] + steps)]],
            on_line, timeout=300)
    base = samples[IDLE_BASE]
    return {n: (samples[n] - base) / (n - IDLE_BASE) for n in steps}


def measure_held(gen, server, held, seconds, cpus, warmup, parts, workload="small-64"):
    """The workload's figures while another generator process holds `held`
    idle connections open on the same server (they each sent one message)."""
    got = {}

    def on_line(line, p):
        if line.startswith("idle "):
            if int(line.split()[1]) == held:
                time.sleep(0.3)
                got["r"] = measure_load(gen, server, workload, seconds, cpus, warmup, parts)
            p.stdin.write("\n")
            p.stdin.flush()

    gen.run(server, [["--mode", "idle", "--idle-steps", "%d,%d" % (IDLE_BASE, held)]], on_line,
            timeout=300 + seconds)
    return got["r"]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=3):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return "{:,.0f}".format(v)
    return "{:.{}g}".format(v, digits)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--generator", required=True, help="path of bench-load")
    ap.add_argument("--secmsgd", action="append", default=[],
                    help="secmsgd binary, or LABEL=PATH (shown as secmsgd-LABEL); repeatable, "
                         "e.g. tuned=BUILD1/daemon/secmsgd system=BUILD2/daemon/secmsgd")
    ap.add_argument("--secmsgd-arg", action="append", default=[], help="extra argument for secmsgd")
    ap.add_argument("--peers-dir", default=PEERS_DIR, help="where node-secmsgd.mjs and python-threaded-secmsgd.py are")
    ap.add_argument("--skip", action="append", default=[], help="server label to leave out (node, python)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="measured period of each run")
    ap.add_argument("--idle-steps", default="1000,9000")
    ap.add_argument("--idle-full-reps", type=int, default=1,
                    help="repetitions that go past the first idle step (the rest stop there: "
                         "thousands of handshakes against the threaded peer take half a minute)")
    ap.add_argument("--workloads", default=",".join(list(WORKLOADS) + ["held", "idle"]))
    ap.add_argument("--held", type=int, default=9000,
                    help="workload 'held': small-64 while this many idle connections are held open")
    ap.add_argument("--generators", type=int, default=1,
                    help="generator processes per streaming or handshake run, sharing its connections "
                         "(pinned round-robin to the CPUs other than the server's)")
    ap.add_argument("--key-type", choices=["ed25519", "ecdsa"], default="ed25519",
                    help="the servers' certificate key (default ed25519)")
    ap.add_argument("--crypto-bench", action="append", default=[],
                    help="bench-crypto of a secmsgd build, or LABEL=PATH for the --secmsgd of that label "
                         "(repeatable): prints each CPU figure against its crypto floor on that build")
    ap.add_argument("--json", help="also write every sample to this file")
    ap.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each streaming run")
    ap.add_argument("--smoke", action="store_true",
                    help="a quick check that every workload runs against secmsgd (one short run each, "
                         "no peers); fails unless each one moved messages; for meson test")
    a = ap.parse_args()
    if a.smoke:
        a.reps, a.seconds, a.warmup, a.idle_steps, a.idle_full_reps, a.held = 1, 0.3, 0.1, "100", 1, 100
        a.crypto_bench = []
        a.skip += ["node", "python"]

    steps = [int(s) for s in a.idle_steps.split(",")]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and any(n + 100 > hard for n in steps):
        print("note: the open-file hard limit (%d) leaves out idle steps %s" % (hard, [n for n in steps if n + 100 > hard]))
        steps = [n for n in steps if n + 100 <= hard]
        if not steps:
            a.workloads = ",".join(w for w in a.workloads.split(",") if w != "idle")
    workloads = a.workloads.split(",")
    ncpu = len(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    pinned = ncpu >= 2 and taskset is not None
    cpus = sorted(os.sched_getaffinity(0))
    server_pin = [taskset, "-c", str(cpus[0])] if pinned else []
    gen_pins = [[taskset, "-c", str(c)] for c in cpus[1:]] if pinned else [[]]
    gen_cpus = tuple(cpus[1:]) if pinned else (cpus[0],)
    unknown = [w for w in a.workloads.split(",") if w not in WORKLOADS and w not in ("held", "idle")]
    if unknown:
        sys.exit("bench_load.py: unknown workload %s (known: %s, held, idle)" % (unknown, ", ".join(WORKLOADS)))
    floors = {}  # secmsgd label ("" for any) -> {bench-crypto figure: value, "build": description}
    for spec in a.crypto_bench:
        label, _, path = spec.rpartition("=")
        if label and not label.startswith("secmsgd"):
            label = "secmsgd-" + label
        out = subprocess.run([path, "--tsv"], capture_output=True, text=True, check=True).stdout
        figures = {}
        for line in out.splitlines():
            k, _, v = line.partition("\t")
            figures[k] = v if k == "build" else float(v)
        floors[label] = figures

    if not os.access(a.generator, os.X_OK):
        sys.exit("bench_load.py: generator %s is not an executable (build it: ninja -C BUILD tests/bench-load)"
                 % a.generator)
    work = tempfile.mkdtemp(prefix="secmsg-bench-")
    cred = make_credentials(work, a.key_type)
    gen = Generator(os.path.abspath(a.generator), gen_pins, cred)

    notes = []
    servers = []
    for spec in a.secmsgd:
        label, _, path = spec.rpartition("=")
        if not label:
            label = "secmsgd"
        elif not label.startswith("secmsgd"):
            label = "secmsgd-" + label
        path = os.path.abspath(path)
        if not os.access(path, os.X_OK):
            notes.append("%s: %s is not built, left out" % (label, path))
            continue
        servers.append(Server(label, lambda port, path=path: [
            path, "--host", "127.0.0.1", "--port", str(port), "--cert", cred["cert"], "--key", cred["key"],
            "--psk-file", cred["psk"], "--record", "none", "--max-connections", "20000"] + a.secmsgd_arg,
            server_pin, work, ours=True))
    node = shutil.which("node")
    peers = [("node", os.path.join(a.peers_dir, "node-secmsgd.mjs"), [node] if node else None),
             ("python", os.path.join(a.peers_dir, "python-threaded-secmsgd.py"), ["/usr/bin/python3"])]
    for label, script, interp in peers:
        if label in a.skip:
            continue
        if not os.path.exists(script) or interp is None:
            notes.append("%s: %s or its interpreter is missing, left out" % (label, script))
            continue
        servers.append(Server(label, lambda port, script=script, interp=interp: interp + [
            script, "--host", "127.0.0.1", "--port", str(port), "--cert", cred["cert"], "--key", cred["key"],
            "--psk", cred["psk"], "--record", "none"], server_pin, work))
    if not servers:
        shutil.rmtree(work, ignore_errors=True)
        sys.exit("bench_load.py: no server to measure")

    started = time.monotonic()
    samples = {s.label: {w: [] for w in workloads} for s in servers}
    failed = {}  # (label, workload) -> reason
    peak = {}

    def log(msg):
        print("[%5.1fs] %s" % (time.monotonic() - started, msg), file=sys.stderr, flush=True)

    print("secmsg load benchmark, %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    print("%d CPUs; %s; %d generator process(es); %s certificate" % (
        ncpu, "servers pinned to CPU %d, generators to CPU %s (taskset)" % (cpus[0], ",".join(map(str, gen_cpus)))
        if pinned else "no pinning (fewer than 2 CPUs or no taskset): figures are rougher",
        a.generators, a.key_type))
    sys.stdout.flush()
    try:
        load = [w for w in workloads if w in WORKLOADS]
        if load:
            live = []
            for s in servers:
                try:
                    s.start()
                    live.append(s)
                except BenchFail as e:
                    for w in load:
                        failed[(s.label, w)] = str(e)
            for rep in range(a.reps):
                for w in load:
                    for s in live:
                        if (s.label, w) in failed:
                            continue
                        if not s.alive():
                            failed[(s.label, w)] = "%s had died before this workload" % s.label
                            continue
                        try:
                            r = measure_load(gen, s, w, a.seconds, (cpus[0],) + gen_cpus, a.warmup,
                                             a.generators)
                            samples[s.label][w].append(r)
                            log("rep %d %-10s %-16s %s" % (rep + 1, w, s.label, {k: round(v, 3) if isinstance(v, float) else v
                                                                              for k, v in r.items()}))
                        except BenchFail as e:
                            failed[(s.label, w)] = str(e)
                            log("rep %d %-10s %-16s FAILED: %s" % (rep + 1, w, s.label, e))
            for s in live:
                if s.alive():
                    peak[s.label] = s.memory_kib()[1]
                s.stop()
        # Workloads that need a fresh server for every repetition.
        fresh = {
            "held": lambda s, rep: measure_held(gen, s, a.held, a.seconds, (cpus[0],) + gen_cpus,
                                                a.warmup, a.generators),
            "idle": lambda s, rep: measure_idle(gen, s, steps if rep < a.idle_full_reps else steps[:1]),
        }
        for w in (w for w in fresh if w in workloads):
            for rep in range(a.reps):
                for s in servers:
                    if (s.label, w) in failed:
                        continue
                    try:
                        s.start()
                        r = fresh[w](s, rep)
                        samples[s.label][w].append(r)
                        log("rep %d %-10s %-16s %s" % (rep + 1, w, s.label, {k: round(v, 3) if isinstance(v, float) else v
                                                                          for k, v in r.items()}))
                    except BenchFail as e:
                        failed[(s.label, w)] = str(e)
                        log("rep %d %-10s %-16s FAILED: %s" % (rep + 1, w, s.label, e))
                    finally:
                        s.stop()
    finally:
        for s in servers:
            s.stop()

    # The table: medians, and ratios of each secmsgd against each peer.
    def med(label, w, key):
        return median([r.get(key) for r in samples[label].get(w, [])])

    def busy(label, w):
        """How busy the generator's CPU was in total (generator and anything else)."""
        return median([r.get("gen_cpu_busy") for r in samples[label].get(w, [])])

    rows = []  # (metric, unit, better, workload, {label: value})
    for w in workloads:
        if w not in WORKLOADS:
            continue
        mode, conns, window, size, op, _ = WORKLOADS[w]
        what = ("%s: %d loops of connect, handshake, 1 message, close" % (w, conns) if op == "handshake"
                else "%s: %d conn x %d in flight, %s" % (w, conns, window,
                                                        "%d KiB" % (size // 1024) if size >= 1024 else "%d B" % size))
        rows.append((what, "conn/s" if op == "handshake" else "msg/s", "higher", w,
                     {s.label: med(s.label, w, "ops_per_s") for s in servers}))
        rows.append(("  server CPU per " + op, "us", "lower", w,
                     {s.label: med(s.label, w, "cpu_us_per_op") for s in servers}))
        rows.append(("  busy: server core / generator core", "%", "info", w,
                     {s.label: (med(s.label, w, "server_cpu_busy"), busy(s.label, w)) for s in servers}))
    if "held" in workloads:
        rows.append(("held: small-64 with %d idle connections open" % a.held, "msg/s", "higher", "held",
                     {s.label: med(s.label, "held", "ops_per_s") for s in servers}))
        rows.append(("  server CPU per message", "us", "lower", "held",
                     {s.label: med(s.label, "held", "cpu_us_per_op") for s in servers}))
        if "small-64" in workloads:
            rows.append(("  server CPU per message, held / not held", "ratio", "info-ratio", "held",
                         {s.label: (med(s.label, "held", "cpu_us_per_op") / med(s.label, "small-64", "cpu_us_per_op")
                                    if med(s.label, "held", "cpu_us_per_op") and med(s.label, "small-64", "cpu_us_per_op")
                                    else None) for s in servers}))
    if "idle" in workloads:
        for n in steps:
            runs = a.reps if n == steps[0] else min(a.reps, a.idle_full_reps)
            rows.append(("idle memory, %d connections%s" % (n, "" if runs == a.reps else " (%d run)" % runs),
                         "KiB/conn", "lower", "idle",
                         {s.label: median([r.get(n) for r in samples[s.label]["idle"]]) for s in servers}))
    if load:
        rows.append(("peak RSS over the load runs (VmHWM)", "MiB", "lower", None,
                     {s.label: peak[s.label] / 1024 if s.label in peak else None for s in servers}))

    ours = [s.label for s in servers if s.ours]
    theirs = [s.label for s in servers if not s.ours]
    pairs = [(o, t) for o in ours for t in theirs]
    labels = [s.label for s in servers]
    head = ["metric", "unit"] + labels + ["%s vs %s" % (o, t) for o, t in pairs]
    table = [head]
    for metric, unit, better, w, vals in rows:
        cells = [metric, unit]
        for lab in labels:
            v = vals.get(lab)
            if better == "info":
                sv, gv = v if v else (None, None)
                cells.append("%s/%s" % ("-" if sv is None else "%.0f" % (100 * sv),
                                        "-" if gv is None else "%.0f" % (100 * gv)))
            else:
                cells.append(fmt(v))
        for o, t in pairs:
            vo, vt = vals.get(o), vals.get(t)
            if better.startswith("info") or vo in (None, 0) or vt in (None, 0):
                cells.append("" if better.startswith("info") else "-")
            else:
                # How many times better secmsgd is: ours/peer for rates,
                # peer/ours for CPU and memory.
                cells.append("%.2f" % (vo / vt if better == "higher" else vt / vo))
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    print()
    print("median of %d runs per figure, %.3g s measured per run; 'A vs B' is how many times better A "
          "is than B (rates: A/B; CPU and memory: B/A); busy: how busy each core was in total, "
          "anything on it included" % (a.reps, a.seconds))
    for r in table:
        print("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip())
    print()
    suites = {}
    for lab in labels:
        for w in WORKLOADS:
            for r in samples[lab].get(w, []):
                suites.setdefault(lab, "%s %s" % (r["tls"], r["cipher"]))
    if suites:
        print("negotiated: " + "; ".join("%s %s" % kv for kv in suites.items()))
    print("generator: %s, same binary and client code against every server" % gen.path)
    for lab in labels:
        for w in WORKLOADS:
            full = [("server" if (r.get("server_cpu_busy") or 0) >= 0.9 else None,
                     "generator" if (r.get("gen_cpu_busy") or 0) >= 0.9 else None)
                    for r in samples[lab].get(w, [])]
            sides = sorted({x for pair in full for x in pair if x})
            if sides:
                print("full core (at least 90%% busy), %s %s: %s" % (lab, w, " and ".join(sides)))
    if floors:
        print()
        print("crypto floor (bench-crypto, CPU time): what the cryptography alone costs per operation "
              "on the build, and secmsgd's server CPU per operation against it")
        for lab in ours:
            figures = floors.get(lab) or floors.get("")
            if not figures:
                continue
            print("  %s: %s" % (lab, figures.get("build", "?")))
            for w in workloads:
                if w not in WORKLOADS:
                    continue
                floor = figures.get(WORKLOADS[w][5].format(key=a.key_type))
                v = med(lab, w, "cpu_us_per_op")
                if floor and v:
                    print("    %-10s floor %8.2f us  secmsgd %8.2f us  %5.1fx the floor" % (w, floor, v, v / floor))
    runs = [r for lab in labels for w in WORKLOADS for r in samples[lab].get(w, [])]
    if runs:
        others0 = median([r["server_cpu_busy"] - r["server_share"] for r in runs if r.get("server_cpu_busy") is not None])
        others1 = median([r["gen_cpu_busy"] - r["gen_busy"] for r in runs if r.get("gen_cpu_busy") is not None])
        if others0 is not None and others1 is not None and pinned:
            print("other processes on this machine used a median %.0f%% of CPU %d and %.0f%% of CPU %d during the runs"
                  % (100 * max(others0, 0), cpus[0], 100 * max(others1, 0), cpus[1]))
    for (lab, w), why in sorted(failed.items()):
        print("FAILED %s %s: %s" % (lab, w, why))
    for n in notes:
        print("note: " + n)
    print("total %.0f s" % (time.monotonic() - started))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"samples": samples, "failed": {"%s %s" % k: v for k, v in failed.items()},
                       "peak_kib": peak, "notes": notes}, f, indent=1, default=str)
    if a.smoke:
        for s in servers:
            for w in workloads:
                got = samples[s.label][w]
                if w == "idle":
                    moved = bool(got)
                else:
                    moved = bool(got) and (got[0].get("ops_per_s") or 0) > 0
                if not moved and (s.label, w) not in failed:
                    failed[(s.label, w)] = "no messages acknowledged"
                    print("FAILED %s %s: no messages acknowledged" % (s.label, w))
        if not servers or not any(s.ours for s in servers):
            print("FAILED: no secmsgd to check")
            return 1
    if failed:
        print("server logs kept in " + work)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

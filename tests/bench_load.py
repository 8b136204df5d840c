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
  throughput  50 connections, each pipelining 64 messages of 64 B
  large       10 connections, each pipelining 8 messages of 64 KiB
  handshake   8 concurrent loops of: connect, full TLS 1.3 handshake, one
              message and its ACK, close
  idle        a fresh server per repetition; connections that each sent one
              message stay open; RSS growth per connection between 16 open
              connections and each step (default 1000 and 5000; the steps
              after the first only in the first --idle-full-reps runs)

With two or more CPUs the servers are pinned to CPU 0 and the generator to
CPU 1 (taskset).  The servers' open-file limit is raised to the hard limit.

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

WORKLOADS = {
    # name: generator arguments (besides --seconds)
    "throughput": ["--mode", "throughput", "--connections", "50", "--window", "64", "--size", "64"],
    "large": ["--mode", "large", "--connections", "10", "--window", "8", "--size", "65536"],
    "handshake": ["--mode", "handshake", "--connections", "8", "--size", "64"],
}


class BenchFail(Exception):
    """One server or workload could not be measured; the reason is one line."""


def make_credentials(d):
    """Writes cert.pem, key.pem (ECDSA P-256, SAN localhost/127.0.0.1) and psk (mode 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
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
            .sign(key, hashes.SHA256()))
    paths = {k: os.path.join(d, f) for k, f in (("cert", "cert.pem"), ("key", "key.pem"), ("psk", "psk"))}
    with open(paths["cert"], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    for path, data in ((paths["key"], key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
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
    """Runs bench-load once against a server, reacting to its progress lines."""

    def __init__(self, path, pin, cred):
        self.path = path
        self.pin = pin
        self.cred = cred

    def run(self, server, args, on_line, timeout):
        argv = self.pin + [self.path, "--port", str(server.port), "--psk-file", self.cred["psk"]] + args
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, bufsize=1)
        result = None
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            while result is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchFail("generator timed out after %d s" % timeout)
                if not sel.select(left):
                    continue
                line = p.stdout.readline()
                if not line:
                    break
                line = line.strip()
                if line.startswith("result "):
                    result = json.loads(line[len("result "):])
                else:
                    on_line(line, p)
        finally:
            sel.close()
            if result is None and p.poll() is None:
                p.kill()
            try:
                p.stdin.close()
            except OSError:
                pass
            err = p.stderr.read().strip()
            p.wait()
        if result is None or p.returncode != 0:
            raise BenchFail(err.splitlines()[-1] if err else "generator exited with status %s" % p.returncode)
        return result


def measure_load(gen, server, workload, seconds, cpus, warmup):
    """One run of a streaming or handshake workload; figures for the table.
    cpus: (server CPU, generator CPU), to see how busy each was in total."""
    marks = {}

    def on_line(line, _):
        if line == "begin":
            marks["cpu0"] = server.cpu_seconds()
            marks["stat0"] = cpu_times(cpus)

    r = gen.run(server, WORKLOADS[workload] + ["--seconds", str(seconds), "--warmup", str(warmup)],
                on_line, timeout=seconds + 90)
    cpu = server.cpu_seconds() - marks["cpu0"]
    stat1 = cpu_times(cpus)
    out = {"wall": r["seconds"], "server_cpu": cpu, "gen_busy": r["generator_cpu_seconds"] / r["seconds"],
           "server_share": cpu / r["seconds"],
           "server_cpu_busy": busy_share(marks["stat0"], stat1, cpus[0]),
           "gen_cpu_busy": busy_share(marks["stat0"], stat1, cpus[-1]),
           "cipher": r["cipher"], "tls": r["tls_version"]}
    if workload == "throughput":
        out["msgs_per_s"] = r["messages"] / r["seconds"]
        out["cpu_per_100k"] = cpu / r["messages"] * 1e5 if r["messages"] else None
    elif workload == "large":
        out["mb_per_s"] = r["bytes"] / r["seconds"] / 1e6
        out["cpu_per_gb"] = cpu / r["bytes"] * 1e9 if r["bytes"] else None
    else:
        out["conn_per_s"] = r["connections_completed"] / r["seconds"]
        out["cpu_ms_per_conn"] = cpu / r["connections_completed"] * 1e3 if r["connections_completed"] else None
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

    gen.run(server, ["--mode", "idle", "--idle-steps", ",".join(str(s) for s in [IDLE_BASE] + steps)],
            on_line, timeout=300)
    base = samples[IDLE_BASE]
    return {n: (samples[n] - base) / (n - IDLE_BASE) for n in steps}


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
    ap.add_argument("--idle-steps", default="1000,5000")
    ap.add_argument("--idle-full-reps", type=int, default=1,
                    help="repetitions that go past the first idle step (the rest stop there: "
                         "thousands of handshakes against the threaded peer take half a minute)")
    ap.add_argument("--workloads", default="throughput,large,handshake,idle")
    ap.add_argument("--json", help="also write every sample to this file")
    ap.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each streaming run")
    ap.add_argument("--smoke", action="store_true",
                    help="a quick check that every workload runs against secmsgd (one short run each, "
                         "no peers); fails unless each one moved messages; for meson test")
    a = ap.parse_args()
    if a.smoke:
        a.reps, a.seconds, a.warmup, a.idle_steps, a.idle_full_reps = 1, 0.3, 0.1, "100", 1
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
    gen_pin = [taskset, "-c", str(cpus[1])] if pinned else []

    if not os.access(a.generator, os.X_OK):
        sys.exit("bench_load.py: generator %s is not an executable (build it: ninja -C BUILD tests/bench-load)"
                 % a.generator)
    work = tempfile.mkdtemp(prefix="secmsg-bench-")
    cred = make_credentials(work)
    gen = Generator(os.path.abspath(a.generator), gen_pin, cred)

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
    print("%d CPUs; %s" % (ncpu, "servers pinned to CPU %d, generator to CPU %d (taskset)" % (cpus[0], cpus[1])
                           if pinned else "no pinning (fewer than 2 CPUs or no taskset): figures are rougher"))
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
                            r = measure_load(gen, s, w, a.seconds, (cpus[0], cpus[1] if pinned else cpus[0]),
                                             a.warmup)
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
        if "idle" in workloads:
            for rep in range(a.reps):
                for s in servers:
                    if (s.label, "idle") in failed:
                        continue
                    try:
                        s.start()
                        r = measure_idle(gen, s, steps if rep < a.idle_full_reps else steps[:1])
                        samples[s.label]["idle"].append(r)
                        log("rep %d idle       %-16s %s" % (rep + 1, s.label, {k: round(v, 2) for k, v in r.items()}))
                    except BenchFail as e:
                        failed[(s.label, "idle")] = str(e)
                        log("rep %d idle       %-16s FAILED: %s" % (rep + 1, s.label, e))
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
    if "throughput" in workloads:
        rows.append(("throughput, 64 B, 50 conn x window 64", "msg/s", "higher", "throughput",
                     {s.label: med(s.label, "throughput", "msgs_per_s") for s in servers}))
        rows.append(("  server CPU per 100k messages", "CPU-s", "lower", "throughput",
                     {s.label: med(s.label, "throughput", "cpu_per_100k") for s in servers}))
    if "large" in workloads:
        rows.append(("large, 64 KiB, 10 conn x window 8", "MB/s", "higher", "large",
                     {s.label: med(s.label, "large", "mb_per_s") for s in servers}))
        rows.append(("  server CPU per GB", "CPU-s", "lower", "large",
                     {s.label: med(s.label, "large", "cpu_per_gb") for s in servers}))
    if "handshake" in workloads:
        rows.append(("handshakes, 8 loops (connect..close)", "conn/s", "higher", "handshake",
                     {s.label: med(s.label, "handshake", "conn_per_s") for s in servers}))
        rows.append(("  server CPU per connection", "CPU-ms", "lower", "handshake",
                     {s.label: med(s.label, "handshake", "cpu_ms_per_conn") for s in servers}))
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
    head = ["metric", "unit"] + labels + ["%s/%s" % p for p in pairs]
    table = [head]
    for metric, unit, better, w, vals in rows:
        cells = [metric, unit]
        for lab in labels:
            v = vals.get(lab)
            mark = "*" if (better == "higher" and w in WORKLOADS and v is not None
                           and (busy(lab, w) or 0) >= 0.9) else ""
            cells.append(fmt(v) + mark)
        for o, t in pairs:
            vo, vt = vals.get(o), vals.get(t)
            cells.append("%.2f" % (vo / vt) if vo is not None and vt not in (None, 0) else "-")
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    print()
    print("median of %d runs per figure, %.3g s measured per run; ratios are secmsgd/peer "
          "(above 1 is better for msg/s, MB/s, conn/s; below 1 for CPU and memory)" % (a.reps, a.seconds))
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
    runs = [r for lab in labels for w in WORKLOADS for r in samples[lab].get(w, [])]
    if runs:
        others0 = median([r["server_cpu_busy"] - r["server_share"] for r in runs if r.get("server_cpu_busy") is not None])
        others1 = median([r["gen_cpu_busy"] - r["gen_busy"] for r in runs if r.get("gen_cpu_busy") is not None])
        if others0 is not None and others1 is not None and pinned:
            print("other processes on this machine used a median %.0f%% of CPU %d and %.0f%% of CPU %d during the runs"
                  % (100 * max(others0, 0), cpus[0], 100 * max(others1, 0), cpus[1]))
    print("* the generator's CPU was at least 90% busy (generator plus other processes): "
          "that figure may be limited by the generator, not the server")
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
                    key = {"throughput": "msgs_per_s", "large": "mb_per_s", "handshake": "conn_per_s"}[w]
                    moved = bool(got) and (got[0].get(key) or 0) > 0
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

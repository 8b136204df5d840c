"""A real systemd, booted as PID 1 in a throwaway container, for system tests.

    rootfs = cached_rootfs(cache_dir)          # debootstrap once, reuse after
    with Container(rootfs, name) as c:         # boots; always cleans up
        c.run(["systemctl", "start", "foo"])   # a command inside, via nsenter
        c.install_tree(staging_dir)            # copy files into the container

The cached root file system is never modified: the container runs on a
throwaway overlay (systemd-nspawn --volatile=overlay).

Facts about these machines the code relies on (measured, see issue 6): PID 1
of the host is not systemd and cgroups are hybrid (v1 controllers, the
name=systemd hierarchy, a cgroup2 hierarchy at /sys/fs/cgroup/unified).
systemd-nspawn -b then works with --register=no --keep-unit (no machined, no
system bus); with --keep-unit it puts the container in payload/ and itself in
supervisor/ below its own cgroup and leaves both behind, so the nspawn process
is started in a cgroup of its own in every hierarchy that systemd uses, and
those are removed after it exits.  machinectl and systemd-run -M do not work:
commands run in the container through nsenter(1) into its PID 1.
"""

import fcntl
import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SUITE = "bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
# systemd as PID 1, and what the installed secmsg binaries need at run time
# (libwolfssl35 only for -Dwolfssl=system builds).  Not procps: a minimal
# Debian has no /bin/kill, and the system test shows that `systemctl reload`
# works without it (secmsgd.service's ExecReload= uses the shell's kill).
PACKAGES = ("systemd", "systemd-sysv", "dbus",
            "libsodium23", "libwolfssl35", "libsystemd0", "libstdc++6")

# Where systemd keeps the cgroup trees that nspawn reads its own place from.
CGROUP_ROOTS = ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified")

# Inside the container, commands get this environment and nothing of ours.
CONTAINER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}

BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def log(text):
    print(f"[container] {text}", flush=True)


class ContainerError(Exception):
    """Something about the container itself (not the software under test)."""


# ---------------------------------------------------------------------------
# The cached root file system

def debian_mirror():
    """The machine's own Debian mirror for SUITE, from /etc/apt/sources.list*."""
    files = glob.glob("/etc/apt/sources.list") + \
        sorted(glob.glob("/etc/apt/sources.list.d/*.list")) + \
        sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    for path in files:
        try:
            text = open(path, encoding="utf-8").read()
        except OSError:
            continue
        if path.endswith(".sources"):
            # deb822: blank-line separated stanzas of "Key: value".
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                if "deb" in fields.get("Types", "").split() and \
                        SUITE in fields.get("Suites", "").split() and \
                        "main" in fields.get("Components", "").split():
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
                if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE \
                        and "main" in words[3:]:
                    return words[1]
    return FALLBACK_MIRROR


def unmount_below(path):
    """Unmounts everything mounted at or below path, deepest first."""
    path = os.path.realpath(path)
    targets = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target == path or target.startswith(path + "/"):
                targets.append(target)
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


def remove_tree(path):
    """rm -rf that never follows a leftover mount out of path."""
    if os.path.lexists(path):
        unmount_below(path)
        subprocess.run(["rm", "-rf", "--one-file-system", path], check=True)


def cached_rootfs(cache_dir, extra=()):
    """A minimal Debian SUITE with systemd, PACKAGES and the extra packages,
    made once per package set (each set is a root file system of its own:
    one without extras is the same as before extras existed).

    debootstrap runs into a scratch directory that is renamed into place only
    when complete, under a lock, so an interrupted run is never mistaken for
    a cache and two runs never build it at once."""
    packages = PACKAGES + tuple(p for p in extra if p not in PACKAGES)
    key = hashlib.sha256(" ".join((SUITE,) + packages).encode()).hexdigest()[:12]
    rootfs = os.path.join(cache_dir, f"{SUITE}-{key}")
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(os.path.join(rootfs, "usr/lib/systemd/systemd")):
            return rootfs
        scratch = rootfs + ".partial"
        remove_tree(scratch)
        mirror = debian_mirror()
        log(f"creating the container root file system with debootstrap from "
            f"{mirror} (about a minute, once)")
        started = time.monotonic()
        r = subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=" + ",".join(packages),
             SUITE, scratch, mirror],
            stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stdout.write(r.stdout[-4000:] + r.stderr[-4000:])
            remove_tree(scratch)
            raise ContainerError(f"debootstrap of {SUITE} from {mirror} failed "
                                 f"(exit {r.returncode}); its output is above")
        unmount_below(scratch)
        os.rename(scratch, rootfs)
        log(f"root file system ready in {time.monotonic() - started:.0f} s: {rootfs}")
        return rootfs


# ---------------------------------------------------------------------------
# The container

def remove_stale_cgroups(prefix):
    """Removes empty cgroup trees named prefix* that an interrupted earlier
    run left behind (one that still holds a process is left alone)."""
    for root in CGROUP_ROOTS:
        for top in glob.glob(os.path.join(root, prefix + "*")):
            busy = False
            for dirpath, _, _ in os.walk(top):
                try:
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        busy = busy or bool(f.read().strip())
                except OSError:
                    pass
            if busy:
                continue
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
            log(f"removed a stale cgroup tree: {top}")


class Container:
    """A booted container: systemd-nspawn -b on a volatile overlay of rootfs.

    Entering the with-block boots it and waits until systemd reports the
    system running (or degraded); leaving it powers the container off and
    removes every process, mount and cgroup it left, then checks that none
    is left.  Cleanup runs whatever happened inside the block."""

    def __init__(self, rootfs, name, network=("--private-network",), options=()):
        """network: systemd-nspawn's network options; by default a network
        namespace of its own with loopback only.  options: more of its
        options (--rlimit=, --bind-ro=, ...)."""
        self.rootfs = rootfs
        self.name = name
        self.network = list(network)
        self.options = list(options)
        self.workdir = tempfile.mkdtemp(prefix=f"{name}-")
        self.console_log = os.path.join(self.workdir, "console.log")
        self.nspawn = None      # subprocess.Popen of systemd-nspawn
        self.pid = None         # the container's PID 1, as the host sees it
        self.cgroups = [os.path.join(root, name) for root in CGROUP_ROOTS
                        if os.path.isdir(root)]

    # -- lifecycle ----------------------------------------------------------

    def __enter__(self):
        try:
            self._boot()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def _enter_own_cgroups(self):
        """Runs in the forked child before exec: the nspawn process's own cgroups."""
        for cg in self.cgroups:
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def _boot(self):
        for cg in self.cgroups:
            if os.path.exists(cg):
                raise ContainerError(f"cgroup {cg} already exists: is another "
                                     f"run going on, or did one leave it behind?")
            os.mkdir(cg)
        cmd = ["systemd-nspawn", "--quiet", "--boot",
               "--directory", self.rootfs, "--volatile=overlay",
               "--machine", self.name, "--register=no", "--keep-unit",
               *self.network, *self.options, "--link-journal=no",
               "--console=read-only"]
        log(f"booting: {' '.join(cmd)}")
        console = open(self.console_log, "wb")
        self.nspawn = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                       stdout=console, stderr=subprocess.STDOUT,
                                       preexec_fn=self._enter_own_cgroups)
        console.close()
        started = time.monotonic()
        deadline = started + BOOT_TIMEOUT
        state = "no PID 1 yet"
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise ContainerError(f"systemd-nspawn exited with status "
                                     f"{self.nspawn.returncode} while booting:\n"
                                     + self.console_text())
            if self.pid is None:
                self.pid = self._find_pid1()
            if self.pid is not None:
                r = self.run(["systemctl", "is-system-running"], check=False,
                             timeout=10)
                state = r.stdout.strip() or r.stderr.strip()
                if state in ("running", "degraded"):
                    log(f"booted in {time.monotonic() - started:.1f} s "
                        f"(PID 1 is host pid {self.pid}, system {state})")
                    if state == "degraded":
                        log("failed units: " + self.run(
                            ["systemctl", "--failed", "--no-legend"],
                            check=False).stdout.strip())
                    return
            time.sleep(0.2)
        raise ContainerError(f"the container did not finish booting in "
                             f"{BOOT_TIMEOUT:.0f} s (last state: {state})")

    def _find_pid1(self):
        """The container's systemd: the child of the nspawn process running systemd."""
        for children in glob.glob(f"/proc/{self.nspawn.pid}/task/*/children"):
            try:
                pids = open(children).read().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    exe = os.readlink(f"/proc/{pid}/exe")
                except OSError:
                    continue
                if exe.endswith("/systemd"):
                    return int(pid)
        return None

    def cleanup(self):
        """Powers the container off and removes all it left; raises if anything remains."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            # systemd-nspawn turns SIGTERM into an orderly shutdown of PID 1.
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log("container did not power off in time: killing it")
                self._kill_cgroups()
                self.nspawn.kill()
                self.nspawn.wait()
        self._kill_cgroups()
        leftovers = []
        for cg in self.cgroups:
            if os.path.isdir(cg):
                # Depth first: a cgroup directory goes only once it is empty.
                for dirpath, _, _ in sorted(os.walk(cg), key=lambda w: -len(w[0])):
                    try:
                        os.rmdir(dirpath)
                    except OSError as e:
                        leftovers.append(f"cgroup {dirpath}: {e.strerror}")
        unmount_below(self.workdir)
        for line in open("/proc/self/mountinfo", encoding="utf-8"):
            target = line.split()[4]
            if self.name in target or target.startswith(self.workdir):
                leftovers.append(f"mount {target}")
        propagate = f"/run/systemd/nspawn/propagate/{self.name}"
        if os.path.isdir(propagate):
            os.rmdir(propagate)
        if leftovers:
            raise ContainerError("left behind after the container stopped: "
                                 + "; ".join(leftovers))
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _kill_cgroups(self):
        """SIGKILLs whatever still runs in the container's cgroups, and waits."""
        for _ in range(50):
            pids = self.processes()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        raise ContainerError(f"processes survived SIGKILL: {sorted(self.processes())}")

    def processes(self):
        """Every pid in the container's cgroups, in any hierarchy."""
        pids = set()
        for cg in self.cgroups:
            for dirpath, _, _ in os.walk(cg):
                try:
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        pids.update(int(p) for p in f.read().split())
                except OSError:
                    pass
        return pids

    def namespaces(self):
        """{kind: inode} of PID 1's namespaces (net, mnt, pid, ...): after
        cleanup no process may be left in any of them."""
        out = {}
        for kind in ("net", "mnt", "pid", "uts", "ipc", "cgroup"):
            try:
                out[kind] = os.stat(f"/proc/{self.pid}/ns/{kind}").st_ino
            except OSError:
                pass
        return out

    # -- using it -----------------------------------------------------------

    def run(self, argv, input=None, check=True, timeout=60, binary=False):
        """Runs argv inside the container (all its namespaces, its root, its env).

        Returns the CompletedProcess (text unless binary); with check, raises
        ContainerError showing the output when the exit status is not 0."""
        cmd = ["nsenter", "--target", str(self.pid), "--all",
               "env", "-i"] + [f"{k}={v}" for k, v in CONTAINER_ENV.items()] + list(argv)
        r = subprocess.run(cmd, input=input, capture_output=True,
                           text=not binary, timeout=timeout,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and r.returncode != 0:
            out = r.stdout if not binary else r.stdout.decode(errors="replace")
            err = r.stderr if not binary else r.stderr.decode(errors="replace")
            raise ContainerError(f"in the container, {' '.join(argv)} exited with "
                                 f"{r.returncode}:\n{out}{err}")
        return r

    def install_tree(self, tree):
        """Copies the contents of a DESTDIR tree over the container's root.

        Existing directories (and directory symlinks such as /lib -> usr/lib)
        keep their owner, mode and kind; the cached root file system is not
        touched because the container's root is an overlay."""
        top = sorted(os.listdir(tree))
        pack = subprocess.Popen(["tar", "-C", tree, "-cf", "-", *top],
                                stdout=subprocess.PIPE)
        unpack = subprocess.run(
            ["nsenter", "--target", str(self.pid), "--all",
             "tar", "-C", "/", "-xf", "-", "--keep-directory-symlink",
             "--no-overwrite-dir"],
            stdin=pack.stdout, capture_output=True, text=True)
        pack.stdout.close()
        if pack.wait() != 0 or unpack.returncode != 0:
            raise ContainerError(f"copying {tree} into the container failed: "
                                 f"{unpack.stderr.strip()}")

    def journal(self):
        """The container's whole journal of this boot, every namespace
        interleaved, for failure reports."""
        try:
            return self.run(["journalctl", "--boot", "--no-pager", "--all", "--namespace=*",
                             "-o", "short-precise"], check=False).stdout
        except Exception as e:  # noqa: BLE001 - a report must not hide the failure
            return f"(could not read the container's journal: {e})"

    def console_text(self):
        try:
            return open(self.console_log, errors="replace").read()[-4000:]
        except OSError:
            return "(no console output)"

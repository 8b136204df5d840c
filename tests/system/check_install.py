#!/usr/bin/python3
"""Checks on what `meson install` produces, run against a real DESTDIR install.

    check_install.py layout   MESON BUILDDIR UNITDIR
    check_install.py verify   MESON BUILDDIR UNITDIR
    check_install.py security MESON BUILDDIR UNITDIR

layout:   every file the issue names is where it belongs under DESTDIR
          (sbindir, bindir, the systemd unit directory, the journal
          namespace's journald drop-in next to it, man sections, the
          example configuration in the documentation directory).
verify:   `systemd-analyze verify` passes on the installed units, with the
          installed daemon and man pages (paths rewritten into the DESTDIR).
security: `systemd-analyze security --offline=yes` rates each installed
          service (secmsgd.service, an instance of secmsgd@.service and
          secmsgd-init.service) 2.0 or lower, and every item it still marks
          exposed is explained in a comment of that unit.
Each exits 0 on success, 1 with a one-line reason per problem otherwise.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

MAX_EXPOSURE = 2.0
UNITS = ("secmsgd.service", "secmsgd.socket", "secmsgd@.service",
         "secmsgd-init.service", "secmsgd-instances.target")
# The services rated by `systemd-analyze security`: file name, and the unit
# name it is analysed as (a template only as one of its instances).
SERVICES = (("secmsgd.service", "secmsgd.service"),
            ("secmsgd@.service", "secmsgd@1.service"),
            ("secmsgd-init.service", "secmsgd-init.service"))
MAN_PAGES = ("man8/secmsgd.8", "man1/secmsg.1", "man5/secmsgd.conf.5",
             "man7/secmsg-protocol.7")


def build_options(meson, builddir):
    """The configured directory options, as meson resolved them."""
    out = subprocess.run([meson, "introspect", "--buildoptions", builddir],
                         check=True, capture_output=True, text=True).stdout
    return {o["name"]: o["value"] for o in json.loads(out)}


def install(meson, builddir, destdir):
    subprocess.run([meson, "install", "-C", builddir, "--no-rebuild",
                    "--quiet", "--destdir", destdir], check=True)


def under(destdir, path):
    return os.path.join(destdir, path.lstrip("/"))


def installed_dirs(opts, unitdir):
    prefix = opts["prefix"]

    def resolve(d):
        return d if os.path.isabs(d) else os.path.join(prefix, d)
    return {
        "sbindir": resolve(opts["sbindir"]),
        "bindir": resolve(opts["bindir"]),
        "mandir": resolve(opts["mandir"]),
        "docdir": os.path.join(resolve(opts["datadir"]), "doc", "secmsg"),
        "unitdir": unitdir,
    }


def check_layout(destdir, dirs):
    problems = []

    def need(path, executable=False):
        full = under(destdir, path)
        if not os.path.isfile(full):
            problems.append(f"missing after meson install: {path}")
        elif executable and not os.access(full, os.X_OK):
            problems.append(f"not executable: {path}")

    need(os.path.join(dirs["sbindir"], "secmsgd"), executable=True)
    need(os.path.join(dirs["bindir"], "secmsg"), executable=True)
    for unit in UNITS:
        need(os.path.join(dirs["unitdir"], unit))
    for page in MAN_PAGES:
        need(os.path.join(dirs["mandir"], page))
    need(os.path.join(dirs["docdir"], "secmsgd.conf.example"))
    # The journal namespace's journald drop-in (LogNamespace=secmsgd).
    need(os.path.join(os.path.dirname(dirs["unitdir"]), "journald@secmsgd.conf.d", "10-secmsgd.conf"))

    daemon = os.path.join(dirs["sbindir"], "secmsgd")
    for unit, _ in SERVICES:
        service = under(destdir, os.path.join(dirs["unitdir"], unit))
        if os.path.isfile(service):
            text = open(service, encoding="utf-8").read()
            m = re.search(r"^ExecStart=(\S+)", text, re.M)
            if not m or m.group(1) != daemon:
                problems.append(f"ExecStart= of the installed {unit} does not run {daemon}")
    return problems


def staged_units(destdir, dirs, workdir, names=None):
    """Copies of the installed units whose absolute paths point into DESTDIR:
    each unit of UNITS under its own name, or {file: name} as names says
    (a template is verified and rated as one of its instances)."""
    daemon = os.path.join(dirs["sbindir"], "secmsgd")
    paths = []
    for unit, name in (names or {u: u for u in UNITS}).items():
        text = open(under(destdir, os.path.join(dirs["unitdir"], unit)),
                    encoding="utf-8").read()
        text = text.replace(daemon, under(destdir, daemon))
        path = os.path.join(workdir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        paths.append(path)
    return paths


def staged_as_instances(destdir, dirs, workdir):
    """staged_units() with the template as its instance secmsgd@1.service."""
    names = {u: u for u in UNITS}
    names.update(dict(SERVICES))
    return staged_units(destdir, dirs, workdir, names)


def check_verify(destdir, dirs, workdir):
    units = staged_as_instances(destdir, dirs, workdir)
    env = dict(os.environ, MANPATH=under(destdir, dirs["mandir"]))
    r = subprocess.run(["systemd-analyze", "verify", "--man=yes", *units],
                       capture_output=True, text=True, env=env)
    output = (r.stdout + r.stderr).strip()
    if output:
        print(output)
    if r.returncode != 0 or output:
        return ["systemd-analyze verify reported problems (above)"]
    return []


def rate(service):
    """Problems with one staged service's `systemd-analyze security` rating."""
    name = os.path.basename(service)
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", service],
                       capture_output=True, text=True)
    print(r.stdout + r.stderr)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    if not m:
        return [f"systemd-analyze security printed no exposure level for {name}"]
    level = float(m.group(1))
    print(f"{name}: exposure level {level} (must be <= {MAX_EXPOSURE})")
    problems = []
    if level > MAX_EXPOSURE:
        problems.append(f"{name}: exposure level {level} is above {MAX_EXPOSURE}")
    # Every item still exposed (marked with a cross) must be justified in a
    # comment of the unit: its setting's name has to appear in one.
    comments = "\n".join(line for line in open(service, encoding="utf-8")
                         if line.lstrip().startswith("#"))
    for item in re.findall(r"^\s*\u2717 (\S+)", r.stdout, re.M):
        setting = re.split(r"[=~]", item)[0]
        if setting not in comments:
            problems.append(f"exposed item {item} is not explained in a comment "
                            f"of {name}")
    return problems


def check_security(destdir, dirs, workdir):
    problems = []
    for service in staged_units(destdir, dirs, workdir, dict(SERVICES)):
        problems += rate(service)
    return problems


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("layout", "verify", "security"):
        print(__doc__, file=sys.stderr)
        return 64
    what, meson, builddir, unitdir = sys.argv[1:]
    dirs = installed_dirs(build_options(meson, builddir), unitdir)
    with tempfile.TemporaryDirectory(prefix="secmsg-install-") as tmp:
        destdir = os.path.join(tmp, "dest")
        workdir = os.path.join(tmp, "work")
        os.mkdir(workdir)
        install(meson, builddir, destdir)
        if what == "layout":
            problems = check_layout(destdir, dirs)
        elif what == "verify":
            problems = check_verify(destdir, dirs, workdir)
        else:
            problems = check_security(destdir, dirs, workdir)
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    if not problems:
        print(f"{what}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Fetch the source of Debian's `wolfssl` source package into a cache.

Usage: fetch_source.py CACHE_DIR SUITE

Uses `apt-get source` with a private sources list, state and cache inside
CACHE_DIR: nothing of the machine's apt configuration is changed.  The
`deb-src` entries are made from the machine's own `deb` entries
(/etc/apt/sources.list, /etc/apt/sources.list.d/*.list and the deb822
/etc/apt/sources.list.d/*.sources).  SUITE is a Debian codename (bookworm,
trixie, sid):
  - the release the machine runs (VERSION_CODENAME in /etc/os-release): the
    entries are taken as they are;
  - another one: only the entries for the machine's release are kept (its
    mirror, keyring and components), their suites renamed: CODENAME becomes
    SUITE and CODENAME-updates / -security become SUITE-updates / -security
    (sid has neither, so they are dropped for it).
apt-get then picks the newest `wolfssl` source among them, and dpkg-source
applies Debian's patches; `autoreconf -fi` makes its configure script, as
Debian's build does.

When CACHE_DIR already holds an unpacked source for SUITE, nothing is
fetched: the cache is kept until the build directory is wiped (or CACHE_DIR
removed), and a new build directory fetches Debian's current source.  Another
SUITE replaces the cached source.

Prints three lines on success:  srcdir=ABSOLUTE_PATH, version=DEBIAN_VERSION
and suite=SUITE.  On failure prints one reason on stderr and exits 1.
"""

import getpass
import glob
import os
import re
import shutil
import subprocess
import sys

PACKAGE = 'wolfssl'
READY = 'READY'  # marker file in CACHE_DIR/src: "<dirname> <version> <suite>"


class FetchError(Exception):
    pass


def deb822_stanzas(text):
    """Splits a deb822 file into stanzas (lists of lines, comments dropped)."""
    stanzas, cur = [], []
    for line in text.splitlines():
        if line.startswith('#'):
            continue
        if not line.strip():
            if cur:
                stanzas.append(cur)
                cur = []
            continue
        cur.append(line)
    if cur:
        stanzas.append(cur)
    return stanzas


def machine_codename():
    """The codename of the Debian release the machine runs ('' if unknown)."""
    try:
        with open('/etc/os-release', encoding='utf-8') as f:
            for line in f:
                key, _, value = line.strip().partition('=')
                if key == 'VERSION_CODENAME':
                    return value.strip('"\'')
    except OSError:
        pass
    return ''


class SuiteMap:
    """Renames the machine's suites to the wanted release's.

    With `wanted` equal to the machine's codename (or no codename known)
    every suite is kept as it is.  Otherwise CODENAME and CODENAME-POCKET
    become WANTED and WANTED-POCKET; sid keeps no pocket; any other suite
    (a third-party repository for the machine's release) is dropped."""

    def __init__(self, machine, wanted):
        self.machine, self.wanted = machine, wanted
        self.identity = not machine or machine == wanted

    def __call__(self, suite):
        if self.identity:
            return suite
        if suite == self.machine:
            return self.wanted
        if suite.startswith(self.machine + '-') and self.wanted not in ('sid', 'unstable'):
            return self.wanted + suite[len(self.machine):]
        return None


def deb822_to_src(text, suites):
    """deb822 stanzas with Types: deb, rewritten as Types: deb-src, their
    Suites renamed by `suites` (a stanza left with none is dropped)."""
    out = []
    for stanza in deb822_stanzas(text):
        fields = {}
        for line in stanza:
            m = re.match(r'([A-Za-z0-9-]+)\s*:(.*)$', line)
            if m and not line[0].isspace():
                fields[m.group(1).lower()] = m.group(2).strip()
        if 'deb' not in fields.get('types', '').split():
            continue
        if fields.get('enabled', 'yes').lower() in ('no', 'false', '0'):
            continue
        renamed = [r for r in (suites(x) for x in fields.get('suites', '').split()) if r]
        if not renamed:
            continue
        lines = []
        for line in stanza:
            if re.match(r'Types\s*:', line, re.IGNORECASE):
                lines.append('Types: deb-src')
            elif re.match(r'Suites\s*:', line, re.IGNORECASE):
                lines.append('Suites: ' + ' '.join(dict.fromkeys(renamed)))
            else:
                lines.append(line)
        out.append('\n'.join(lines))
    return out


def oneline_to_src(text, suites):
    """One-line `deb` entries rewritten as `deb-src`, their suite renamed by
    `suites` (an entry whose suite it drops is dropped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('#'):
            continue
        line = re.sub(r'\s#.*$', '', line)  # a trailing comment
        # deb [OPTIONS] URI SUITE COMPONENT...
        m = re.match(r'deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)(.*)$', line)
        if not m:
            continue
        suite = suites(m.group(3))
        if suite:
            out.append(f'deb-src {m.group(1) or ""}{m.group(2)} {suite}{m.group(4)}')
    return out


def write_private_sources(apt_dir, wanted):
    """Writes the private sources list for suite `wanted`; returns how many
    entries it has."""
    suites = SuiteMap(machine_codename(), wanted)
    oneline, stanzas = [], []
    main = '/etc/apt/sources.list'
    if os.path.isfile(main):
        with open(main, encoding='utf-8', errors='replace') as f:
            oneline += oneline_to_src(f.read(), suites)
    for path in sorted(glob.glob('/etc/apt/sources.list.d/*.list')):
        with open(path, encoding='utf-8', errors='replace') as f:
            oneline += oneline_to_src(f.read(), suites)
    for path in sorted(glob.glob('/etc/apt/sources.list.d/*.sources')):
        with open(path, encoding='utf-8', errors='replace') as f:
            stanzas += deb822_to_src(f.read(), suites)
    parts = os.path.join(apt_dir, 'sources.list.d')
    os.makedirs(parts, exist_ok=True)
    for old in glob.glob(os.path.join(parts, '*')):
        os.remove(old)
    with open(os.path.join(apt_dir, 'sources.list'), 'w', encoding='utf-8') as f:
        f.write('# made from the machine\'s deb entries by subprojects/wolfssl-tuned/fetch_source.py\n')
        f.writelines(line + '\n' for line in dict.fromkeys(oneline))
    with open(os.path.join(parts, 'machine.sources'), 'w', encoding='utf-8') as f:
        f.write('\n\n'.join(stanzas) + ('\n' if stanzas else ''))
    return len(oneline) + len(stanzas)


def apt_options(apt_dir):
    state = os.path.join(apt_dir, 'state')
    cache = os.path.join(apt_dir, 'cache')
    for d in (os.path.join(state, 'lists', 'partial'), os.path.join(cache, 'archives', 'partial')):
        os.makedirs(d, exist_ok=True)
    opts = {
        'Dir::Etc::SourceList': os.path.join(apt_dir, 'sources.list'),
        'Dir::Etc::SourceParts': os.path.join(apt_dir, 'sources.list.d'),
        'Dir::State': state,
        'Dir::State::Lists': os.path.join(state, 'lists'),
        'Dir::Cache': cache,
        'Dir::Cache::pkgcache': '',
        'Dir::Cache::srcpkgcache': '',
        # The files land in our own directories: no need to hand them to _apt.
        'APT::Sandbox::User': getpass.getuser(),
        'Acquire::Languages': 'none',
    }
    args = []
    for k, v in opts.items():
        args += ['-o', f'{k}={v}']
    return args


def run(cmd, cwd=None):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, env=dict(os.environ, LC_ALL='C.UTF-8'))
    return p.returncode, p.stdout


def tail(text, n=8):
    lines = [l for l in text.splitlines() if l.strip()]
    return '\n  '.join(lines[-n:])


def cached(src_root, suite):
    try:
        with open(os.path.join(src_root, READY), encoding='utf-8') as f:
            fields = f.read().split()
    except OSError:
        return None
    if len(fields) == 2:  # written before suites were chosen: the machine's own
        fields.append(machine_codename())
    if len(fields) != 3 or fields[2] != suite:
        return None
    name, version = fields[0], fields[1]
    path = os.path.join(src_root, name)
    if os.path.isfile(os.path.join(path, 'configure')):
        return path, version
    return None


def fetch(cache_dir, suite):
    src_root = os.path.join(cache_dir, 'src')
    hit = cached(src_root, suite)
    if hit:
        return hit

    for tool, pkg in (('apt-get', 'apt'), ('dpkg-source', 'dpkg-dev'), ('autoreconf', 'autoconf'),
                      ('aclocal', 'automake'), ('libtoolize', 'libtool')):
        if not shutil.which(tool):
            raise FetchError(f'{tool} not found: the tuned build needs it (Debian package {pkg})')

    apt_dir = os.path.join(cache_dir, 'apt')
    os.makedirs(apt_dir, exist_ok=True)
    if write_private_sources(apt_dir, suite) == 0:
        codename = machine_codename() or 'unknown'
        raise FetchError(f'no `deb` entry for the machine\'s release ({codename}) found in '
                         '/etc/apt/sources.list or /etc/apt/sources.list.d/ to derive a '
                         f'`deb-src` entry for {suite} from')
    opts = apt_options(apt_dir)

    rc, out = run(['apt-get', '-q'] + opts + ['update'])
    # A third-party repository without sources may fail; what counts is
    # whether Debian's source package can then be found.
    update_log = out

    tmp = src_root + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    rc, out = run(['apt-get', '-q'] + opts + ['source', '--only-source', PACKAGE], cwd=tmp)
    if rc != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        update_errors = [l.strip() for l in update_log.splitlines()
                         if l.startswith(('E:', 'W:', 'Err:'))]
        if update_errors:
            raise FetchError('downloading the Debian archive\'s source indexes failed '
                             '(is the archive reachable from here?):\n  '
                             + '\n  '.join(update_errors[:6]) + '\n  then: ' + tail(out, 1))
        raise FetchError(f'`apt-get source {PACKAGE}` ({suite}) failed:\n  {tail(out)}')

    dirs = [d for d in os.listdir(tmp)
            if os.path.isfile(os.path.join(tmp, d, 'configure.ac'))]
    dscs = glob.glob(os.path.join(tmp, f'{PACKAGE}_*.dsc'))
    if len(dirs) != 1 or len(dscs) != 1:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f'`apt-get source {PACKAGE}` did not leave one unpacked source:\n  {tail(out)}')
    version = os.path.basename(dscs[0])[len(PACKAGE) + 1:-len('.dsc')]
    # Debian's source has no generated configure (dh_autoreconf makes it).
    rc, out = run(['autoreconf', '-f', '-i'], cwd=os.path.join(tmp, dirs[0]))
    if rc != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f'`autoreconf -fi` failed in the wolfssl source:\n  {tail(out)}')
    with open(os.path.join(tmp, READY), 'w', encoding='utf-8') as f:
        f.write(f'{dirs[0]} {version} {suite}\n')

    shutil.rmtree(src_root, ignore_errors=True)
    os.rename(tmp, src_root)
    return os.path.join(src_root, dirs[0]), version


def main():
    if len(sys.argv) != 3 or not re.fullmatch(r'[a-z][a-z0-9-]*', sys.argv[2]):
        print(__doc__, file=sys.stderr)
        return 2
    cache_dir, suite = os.path.abspath(sys.argv[1]), sys.argv[2]
    try:
        srcdir, version = fetch(cache_dir, suite)
    except FetchError as e:
        print(e, file=sys.stderr)
        return 1
    except OSError as e:
        print(f'cannot prepare {cache_dir}: {e}', file=sys.stderr)
        return 1
    print(f'srcdir={srcdir}')
    print(f'version={version}')
    print(f'suite={suite}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

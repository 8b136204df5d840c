#!/usr/bin/env python3
"""Configure and build the tuned static wolfSSL, out of tree.

  build_wolfssl.py configure SRCDIR WORKDIR -- CONFIGURE_ARGS...
      (meson setup) runs SRCDIR/configure in WORKDIR/build, unless it already
      ran there with the same SRCDIR and arguments.  This makes the generated
      wolfssl/options.h exist before anything is compiled; it only changes
      when the configuration does, and then everything that includes it is
      recompiled.

  build_wolfssl.py make SRCDIR WORKDIR OUT_LIB DEPFILE -- CONFIGURE_ARGS...
      (ninja) configures if needed, runs make, and copies libwolfssl.a to
      OUT_LIB when its content changed.  DEPFILE lists the wolfSSL sources,
      so an edited or newer source tree is rebuilt.

Output goes to WORKDIR/configure.log and WORKDIR/make.log; on failure the
tail of the log is printed.
"""

import filecmp
import os
import shutil
import subprocess
import sys


def log_tail(path, n=30):
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return ''.join(f.readlines()[-n:])
    except OSError:
        return ''


def step(name, cmd, cwd, log):
    with open(log, 'a', encoding='utf-8') as f:
        f.write(f'\n$ {" ".join(cmd)}\n')
        f.flush()
        rc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL).returncode
    if rc != 0:
        sys.stderr.write(log_tail(log))
        sys.stderr.write(f'\nwolfSSL {name} failed (exit {rc}); full log: {log}\n')
        sys.exit(1)


def configure(srcdir, workdir, args):
    build = os.path.join(workdir, 'build')
    log = os.path.join(workdir, 'configure.log')
    stamp = os.path.join(build, 'secmsg-configure-args')
    wanted = '\n'.join([srcdir] + args) + '\n'
    try:
        with open(stamp, encoding='utf-8') as f:
            if f.read() == wanted and os.path.exists(os.path.join(build, 'config.status')):
                return
    except OSError:
        pass
    shutil.rmtree(build, ignore_errors=True)
    os.makedirs(build)
    with open(log, 'w', encoding='utf-8') as f:
        f.write(f'wolfSSL from {srcdir}\n')
    step('configure', [os.path.join(srcdir, 'configure')] + args, build, log)
    with open(stamp, 'w', encoding='utf-8') as f:
        f.write(wanted)


def copy_if_changed(src, dst):
    if os.path.exists(dst) and filecmp.cmp(src, dst, shallow=False):
        return  # left alone: ninja's restat then keeps dependents from relinking
    tmp = dst + '.tmp'
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def write_depfile(path, target, srcdir):
    deps = [os.path.join(srcdir, 'configure'), os.path.join(srcdir, 'Makefile.in')]
    for sub in ('src', os.path.join('wolfcrypt', 'src'), 'wolfssl'):
        for dirpath, dirnames, filenames in os.walk(os.path.join(srcdir, sub)):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(('.c', '.h', '.S', '.i', '.am', '.in')):
                    deps.append(os.path.join(dirpath, name))
    with open(path, 'w', encoding='utf-8') as f:
        f.write(target.replace(' ', '\\ ') + ':')
        for d in deps:
            f.write(' \\\n  ' + d.replace(' ', '\\ '))
        f.write('\n')


def main(argv):
    try:
        sep = argv.index('--')
    except ValueError:
        sep = -1
    mode = argv[1] if len(argv) > 1 else ''
    fixed = {'configure': 4, 'make': 6}.get(mode)
    if fixed is None or sep != fixed:
        sys.stderr.write(__doc__)
        return 2
    paths = [os.path.abspath(a) for a in argv[2:sep]]
    args = argv[sep + 1:]
    srcdir, workdir = paths[0], paths[1]
    os.makedirs(workdir, exist_ok=True)
    configure(srcdir, workdir, args)
    if mode == 'configure':
        return 0

    out_lib, depfile = paths[2], paths[3]
    build = os.path.join(workdir, 'build')
    log = os.path.join(workdir, 'make.log')
    with open(log, 'w', encoding='utf-8') as f:
        f.write(f'wolfSSL from {srcdir}\n')
    step('build', ['make', f'-j{os.cpu_count() or 1}', 'src/libwolfssl.la'], build, log)
    copy_if_changed(os.path.join(build, 'src', '.libs', 'libwolfssl.a'), out_lib)
    write_depfile(depfile, out_lib, srcdir)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))

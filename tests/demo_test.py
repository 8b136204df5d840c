#!/usr/bin/python3
"""The README's demo, run for real: tests/demo.sh BUILD_DIR with the client
on a pseudo-terminal (a person typing) and again with stdin from a pipe.

Checks that the prompt appears, that a typed message is acknowledged on
screen and recorded in the daemon's log, that `exit` ends the demo with
status 0, and that the daemon is gone afterwards.

usage: demo_test.py DEMO_SH BUILD_DIR
"""

import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time

DEMO, BUILD = sys.argv[1], os.path.abspath(sys.argv[2])
LOG = os.path.join(BUILD, 'demo-secmsgd.log')
ACK = re.compile(rb'(?i)\back(nowledged)?\b')
failures = []


def check(cond, what):
    print(('ok:   ' if cond else 'FAIL: ') + what)
    if not cond:
        failures.append(what)
    return cond


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def daemon_pid(output):
    m = re.search(rb'secmsgd \(pid (\d+)\) listens', output)
    return int(m.group(1)) if m else None


def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().split()[2] != 'Z'
    except FileNotFoundError:
        return False


def env():
    e = dict(os.environ)
    e['SECMSG_DEMO_PORT'] = str(free_port())
    return e


def read_until(fd, proc, pattern, seconds, buf):
    """Reads the pty into buf until pattern matches (returns True) or time runs out."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pattern.search(buf[0]):
            return True
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:  # the other side closed
                data = b''
            if not data and proc.poll() is not None:
                break
            buf[0] += data
    return bool(pattern.search(buf[0]))


def stop(proc, pid):
    """Ends a demo that did not end by itself: SIGTERM lets its trap stop the
    daemon; whatever is left is killed."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the client and the script: its trap stops the daemon
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if pid is not None and alive(pid):
        os.kill(pid, signal.SIGKILL)


def interactive():
    print('# interactive, on a pseudo-terminal')
    master, slave = pty.openpty()
    proc = subprocess.Popen([DEMO, BUILD], stdin=slave, stdout=slave, stderr=slave,
                            env=env(), start_new_session=True)
    os.close(slave)
    buf = [b'']
    pid = None
    try:
        check(read_until(master, proc, re.compile(rb'type a message'), 20, buf),
              'the demo starts the daemon and says how to use it')
        pid = daemon_pid(buf[0])
        check(pid is not None and alive(pid), 'the daemon runs in the background')
        check(read_until(master, proc, re.compile(rb'> ?$|> ?\x1b|\$ ?$'), 10, buf),
              'the client shows a prompt')
        message = b'hello from the demo test %d' % os.getpid()
        os.write(master, message + b'\r')
        check(read_until(master, proc, ACK, 10, buf), 'the typed message is acknowledged on screen')
        os.write(master, b'exit\r')
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            rc = None
        read_until(master, proc, re.compile(rb'stopped'), 2, buf)
        check(rc == 0, 'exit ends the demo with status 0 (got %r)' % rc)
        check(pid is not None and not alive(pid), 'the daemon is stopped when the client exits')
        with open(LOG, 'rb') as f:
            check(message in f.read(), 'the daemon recorded the message in ' + LOG)
    finally:
        stop(proc, pid)
        os.close(master)
        sys.stdout.write('--- demo output ---\n%s\n---\n' % buf[0].decode('utf-8', 'replace'))


def piped():
    print('# stdin from a pipe')
    message = b'piped through the demo %d' % os.getpid()
    try:
        p = subprocess.run([DEMO, BUILD], input=message + b'\n', capture_output=True,
                           env=env(), timeout=60, start_new_session=True)
    except subprocess.TimeoutExpired as e:
        check(False, 'the piped demo ends by itself (timed out)')
        print(e.stdout, e.stderr)
        return
    out = p.stdout + p.stderr
    check(p.returncode == 0, 'the piped demo exits 0 (got %d)' % p.returncode)
    pid = daemon_pid(out)
    check(pid is not None and not alive(pid), 'the daemon is stopped afterwards')
    with open(LOG, 'rb') as f:
        check(message in f.read(), 'the daemon recorded the piped message')
    if failures:
        sys.stdout.write('--- demo output ---\n%s\n---\n' % out.decode('utf-8', 'replace'))


interactive()
piped()
print('%d failure(s)' % len(failures))
sys.exit(1 if failures else 0)

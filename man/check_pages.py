#!/usr/bin/python3
"""The manual pages against the real binaries: every option that `--help`
lists is documented (and no option is documented that does not exist), the
defaults `--help` shows are the ones the pages and the example configuration
give, the client's exit statuses are the ones in secmsg(1), and the
journal's MESSAGE_ID in secmsgd(8) is the daemon's.

usage: check_pages.py SECMSGD SECMSG MAN_DIR RECORDER_HPP
"""

import os
import re
import subprocess
import sys
import tempfile

secmsgd, secmsg, man_dir, recorder_hpp = sys.argv[1:5]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print('FAIL: ' + what)
    return cond


def read(name):
    with open(os.path.join(man_dir, name), encoding='utf-8') as f:
        return f.read()


def help_options(binary):
    """{long option: default shown by --help, or None}, and the whole text"""
    out = subprocess.run([binary, '--help'], capture_output=True, text=True, check=True).stdout
    blocks = []  # [signature, description]
    for line in out.splitlines():
        m = re.match(r'\s+((?:-\w,)?--[a-z0-9-]+.*)$', line)
        if m:
            sig, desc = (m.group(1).split('  ', 1) + [''])[:2]
            blocks.append([sig.strip(), desc])
        elif blocks and line.startswith('    '):
            blocks[-1][1] += ' ' + line.strip()
    opts = {}
    for sig, desc in blocks:
        name = re.match(r'(?:-\w,)?--([a-z0-9-]+)', sig).group(1)
        # CLI11 shows a captured default at the end of the signature: TYPE=VALUE.
        d = re.search(r'=(\S+)$', sig)
        default = d.group(1) if d else None
        # Otherwise the description may say "(default VALUE)".
        d2 = re.search(r'\(default:? ([0-9][0-9.:]*)[);]', desc)
        if default is None and d2:
            default = d2.group(1)
        opts[name] = default
    return opts, out


def page_items(page):
    """{long option: text of its .It entry up to the next .It} for `.It Fl ...` entries."""
    items = {}
    parts = re.split(r'(?m)^\.It ', page)
    for part in parts[1:]:
        m = re.match(r'Fl (?:\w , )?-([a-z0-9-]+)', part)
        if m:
            items[m.group(1)] = part
    return items


def section(page, name):
    m = re.search(r'(?ms)^\.Sh %s\n(.*?)(?=^\.Sh |\Z)' % re.escape(name), page)
    return m.group(1) if m else ''


ignored = {'help', 'version'}

# secmsgd(8)
opts, _ = help_options(secmsgd)
page = read('secmsgd.8')
items = page_items(page)
for name, default in opts.items():
    if name in ignored:
        continue
    if check(name in items, 'secmsgd --%s is not documented in secmsgd.8' % name):
        if default and name != 'config':
            check(re.search(r'Default:(\s|\n)+(\.Ql |\.Cm )?%s\b' % re.escape(default), items[name]) is not None,
                  'secmsgd.8 does not give the default %s of --%s' % (default, name))
for name in items:
    check(name in opts, 'secmsgd.8 documents --%s, which secmsgd does not have' % name)
if 'config' in opts and 'config' in items:
    check(opts['config'] in items['config'],
          'secmsgd.8 does not give the default configuration file %s' % opts['config'])

# secmsgd.conf(5) and the example configuration: every option with a value
# that makes sense in a file.
not_in_file = ignored | {'config', 'check-config', 'init-credentials', 'key-type'}
conf = read('secmsgd.conf.5')
conf_items = set(re.findall(r'(?m)^\.It Cm ([a-z0-9-]+)', conf))
example = read('secmsgd.conf.example')
example_items = dict(re.findall(r'(?m)^# ([a-z0-9-]+) = (.*)$', example))
for name, default in opts.items():
    if name in not_in_file:
        continue
    check(name in conf_items, 'secmsgd.conf.5 does not describe %s' % name)
    if check(name in example_items, 'secmsgd.conf.example does not show %s' % name) and default:
        shown = example_items[name].strip().strip('"')
        check(shown == default, 'secmsgd.conf.example shows %s = %s, the default is %s' % (name, shown, default))
for name in conf_items | set(example_items):
    check(name in opts, 'the configuration documents %s, which secmsgd does not have' % name)

# The example configuration, uncommented, is a configuration secmsgd
# accepts; and a value in it is really applied (a bad one is refused).
with tempfile.TemporaryDirectory() as tmp:
    creds = os.path.join(tmp, 'creds')
    subprocess.run([secmsgd, '--init-credentials', creds], check=True, capture_output=True)
    lines = []
    for key, value in re.findall(r'(?m)^# ([a-z0-9-]+) = (.*)$', example):
        if key in ('cert', 'key'):
            value = '"%s/tls.%s"' % (creds, 'crt' if key == 'cert' else 'key')
        elif key == 'psk-file':
            value = '"%s/psk"' % creds
        elif key == 'client-ca':
            value = '"%s/tls.crt"' % creds  # any readable PEM certificate
        elif key == 'record':
            value = '"stderr"'  # the journal may be unreachable where the tests run
        lines.append('%s = %s' % (key, value))
    conf_file = os.path.join(tmp, 'secmsgd.conf')

    def check_config(text):
        with open(conf_file, 'w') as f:
            f.write(text)
        return subprocess.run([secmsgd, '--config', conf_file, '--check-config'],
                              capture_output=True, text=True)

    r = check_config('\n'.join(lines) + '\n')
    check(r.returncode == 0, 'secmsgd --check-config refuses the uncommented example: %s' % r.stderr.strip())
    r = check_config('\n'.join(re.sub(r'^max-payload = .*', 'max-payload = 99999999', l) for l in lines) + '\n')
    check(r.returncode == 78, 'secmsgd --check-config accepts max-payload = 99999999 from the file')

# MESSAGE_ID
with open(recorder_hpp, encoding='utf-8') as f:
    mid = re.search(r'message_id = "([0-9a-f]{32})"', f.read())
if check(mid is not None, 'no message_id found in ' + recorder_hpp):
    check(mid.group(1) in page, 'secmsgd.8 does not give MESSAGE_ID %s' % mid.group(1))

# secmsg(1)
opts, text = help_options(secmsg)
page = read('secmsg.1')
items = page_items(page)
for name, default in opts.items():
    if name in ignored:
        continue
    if check(name in items, 'secmsg --%s is not documented in secmsg.1' % name) and default:
        check(re.search(r'Default:(\s|\n)+%s\b' % re.escape(default), items[name]) is not None,
              'secmsg.1 does not give the default %s of --%s' % (default, name))
for name in items:
    check(name in opts, 'secmsg.1 documents --%s, which secmsg does not have' % name)
codes_help = set(re.findall(r'\b(\d+) [a-z]', text.split('Usage:')[0]))
codes_page = set(re.findall(r'(?m)^\.It (\d+)$', section(page, 'EXIT STATUS')))
check(codes_help and codes_help == codes_page,
      'exit statuses: secmsg --help says %s, secmsg.1 says %s' % (sorted(codes_help), sorted(codes_page)))

print('%d problem(s)' % len(failures))
sys.exit(1 if failures else 0)

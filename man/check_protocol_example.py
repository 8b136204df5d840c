#!/usr/bin/python3
"""The worked example of secmsg-protocol(7), recomputed from the page's own
rules with python3-cryptography: the PSK file, the derived keys, and both
frames (length, header, ciphertext, tag) must be exactly what the page shows.
The numbers the page states in words (the smallest and the largest default
length, the size of a PSK file, the lengths in the example) are recomputed
too, and with the path of lib/proto/protocol.hpp the page's defaults must be the
code's.

usage: check_protocol_example.py secmsg-protocol.7 [protocol.hpp]
"""

import base64
import hashlib
import hmac
import re
import struct
import sys

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

page = open(sys.argv[1], encoding='utf-8').read()
example = page[page.index('.Sh EXAMPLES'):page.index('.Sh SEE ALSO')]
blocks = re.findall(r'(?ms)^\.Bd -literal -offset indent\n(.*?)^\.Ed', example)
failures = []


def check(cond, what):
    print(('ok:   ' if cond else 'FAIL: ') + what)
    if not cond:
        failures.append(what)


def fields(block):
    """'name hex' lines, continuation lines (hex only) appended to the last name."""
    out, last = {}, None
    for line in block.splitlines():
        parts = line.split()
        if not parts:
            continue
        if re.fullmatch(r'[0-9a-f]+', parts[0]) and last:
            out[last] += parts[0]
        else:
            last = parts[0]
            out[last] = parts[1]
    return out


psk = bytes(range(32))
check(blocks[0].strip() == base64.b64encode(psk).decode(), 'the PSK file is base64 of 00..1f')
m = re.search(r'its fingerprint is ([0-9a-f]+),', example)
check(m is not None and m.group(1) == hashlib.sha256(b'secmsg/1 key fingerprint' + psk).hexdigest()[:16],
      'the fingerprint is the first 8 bytes of SHA-256("secmsg/1 key fingerprint" || PSK)')


def hkdf(info):
    return HKDF(hashes.SHA256(), 32, None, info.encode()).derive(psk)


enc_key, mac_key = hkdf('secmsg/1 aes-256-cbc'), hkdf('secmsg/1 hmac-sha256')
keys = fields(blocks[1])
check(keys.get('enc_key') == enc_key.hex(), 'enc_key is HKDF-SHA-256(PSK, "secmsg/1 aes-256-cbc")')
check(keys.get('mac_key') == mac_key.hex(), 'mac_key is HKDF-SHA-256(PSK, "secmsg/1 hmac-sha256")')


def seal(frame_type, seq, iv, plaintext):
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).encryptor()
    ct = enc.update(padded) + enc.finalize()
    head = struct.pack('>IBBQ', 58 + len(ct), 1, frame_type, seq)
    tag = hmac.new(mac_key, head + iv + ct, hashlib.sha256).digest()
    return {'length': head[0:4].hex(), 'version': head[4:5].hex(), 'type': head[5:6].hex(),
            'seq': head[6:14].hex(), 'iv': iv.hex(), 'ciphertext': ct.hex(), 'tag': tag.hex()}


def same(shown, computed, what):
    for name, value in computed.items():
        check(shown.get(name) == value, '%s: %s' % (what, name))


same(fields(blocks[2]), seal(1, 0, bytes(range(0xa0, 0xb0)), b'hello'), 'the MSG frame')
ack_payload = struct.pack('>Q', 0) + hashlib.sha256(b'hello').digest() + b'recorded'
check(''.join(blocks[3].split()) == ack_payload.hex(), 'the ACK payload is acked_seq || SHA-256 || note')
same(fields(blocks[4]), seal(2, 0, bytes(range(0xb0, 0xc0)), ack_payload), 'the ACK frame')



# ------------------------------------------------- the numbers given in words

words = ' '.join(re.sub(r'(?m)^\.(?:Va|Ql|Sy|Em|No) ', '', page).split())


def stated(pattern, what):
    """The numbers (decimal, or hex where the group is named h...) that the
    page's text gives at `pattern`; None (a failure) when it is not there."""
    m = re.search(pattern, words)
    check(m is not None, 'the page states ' + what)
    if not m:
        return None
    return [int(v, 16 if k.startswith('h') else 10) for k, v in m.groupdict().items()]


def length_for(payload_bytes):
    """The length field of a frame carrying that many payload bytes."""
    return 58 + 16 * (payload_bytes // 16 + 1)


v = stated(r'padding, (?P<n>\d+) characters\)', 'the size of a PSK file')
if v:
    check(v[0] == len(base64.b64encode(psk)), 'a PSK file line has %d characters' % len(base64.b64encode(psk)))

v = stated(r'The smallest frame therefore has length (?P<a>\d+) and occupies (?P<b>\d+) bytes',
           'the smallest frame')
if v:
    check(v == [length_for(0), length_for(0) + 4], 'the smallest frame has length %d and occupies %d bytes'
          % (length_for(0), length_for(0) + 4))
v = stated(r'a length below (?P<a>\d+), or such that', 'the smallest length')
if v:
    check(v[0] == length_for(0), 'a length below %d is malformed' % length_for(0))

check('above 58 + 16 \\(mu (max_payload / 16 + 1)' in words,
      'the page gives the largest length as 58 + 16 * (max_payload / 16 + 1)')
v = stated(r'max_payload is the largest message the server accepts, (?P<a>\d+) bytes unless configured '
           r'otherwise \(at most (?P<b>\d+) MiB\), so by default the largest acceptable length is (?P<c>\d+)\.',
           'the default max_payload, its bound and the largest default length')
if v:
    default_max, bound_mib, largest = v
    check(largest == length_for(default_max),
          'the largest default length is 58 + 16 * (%d / 16 + 1) = %d (the page says %d)'
          % (default_max, length_for(default_max), largest))
    if len(sys.argv) > 2:
        code = open(sys.argv[2], encoding='utf-8').read()

        def constant(name):
            m = re.search(r'\b%s = ([0-9u* ]+);' % name, code)
            value = 1
            for factor in m.group(1).replace('u', '').split('*'):
                value *= int(factor)
            return value
        check(default_max == constant('default_max_payload'),
              "the default max_payload is protocol.hpp's default_max_payload")
        check(bound_mib << 20 == constant('max_max_payload'),
              "the bound on max_payload is protocol.hpp's max_max_payload")
        check(length_for(0) == constant('min_length'), "the smallest length is protocol.hpp's min_length")

m = re.search(r'A PSK file holds one to (\w+) of them', words)
check(m is not None, 'the page states how many keys a PSK file may hold')
if m and len(sys.argv) > 2:
    numbers = ['one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten']
    shown = numbers.index(m.group(1)) + 1 if m.group(1) in numbers else None
    check(re.search(r'\bmax_psk_keys = %s;' % shown, open(sys.argv[2], encoding='utf-8').read()) is not None,
          "a PSK file holds at most protocol.hpp's max_psk_keys keys")

# The worked example's own arithmetic.
ct = len(seal(1, 0, bytes(16), b'hello')['ciphertext']) // 2
v = stated(r'so length is 58 \+ (?P<a>\d+) = (?P<b>\d+) \(hex (?P<hc>[0-9a-f]+)\) and the frame has '
           r'(?P<d>\d+) bytes', 'the length of the MSG frame')
if v:
    check(v == [ct, 58 + ct, 58 + ct, 62 + ct],
          'the MSG frame: length 58 + %d = %d (hex %x), %d bytes' % (ct, 58 + ct, 58 + ct, 62 + ct))
ct = len(seal(2, 0, bytes(16), ack_payload)['ciphertext']) // 2
v = stated(r'These (?P<a>\d+) bytes are a multiple of 16, so PKCS#7 adds a full block and the '
           r'ciphertext has (?P<b>\d+) bytes; length is 58 \+ (?P<c>\d+) = (?P<d>\d+) \(hex (?P<he>[0-9a-f]+)\)',
           'the length of the ACK frame')
if v:
    check(v == [len(ack_payload), ct, ct, 58 + ct, 58 + ct] and len(ack_payload) % 16 == 0,
          'the ACK frame: %d payload bytes, ciphertext %d bytes, length 58 + %d = %d'
          % (len(ack_payload), ct, ct, 58 + ct))

print('%d failure(s)' % len(failures))
sys.exit(1 if failures else 0)

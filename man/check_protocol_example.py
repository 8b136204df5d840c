#!/usr/bin/python3
"""The worked example of secmsg-protocol(7), recomputed from the page's own
rules with python3-cryptography: the PSK file, the derived keys, and both
frames (length, header, ciphertext, tag) must be exactly what the page shows.

usage: check_protocol_example.py secmsg-protocol.7
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

print('%d failure(s)' % len(failures))
sys.exit(1 if failures else 0)

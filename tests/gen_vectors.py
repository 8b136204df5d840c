#!/usr/bin/python3
"""Known-answer vectors for secmsg/1, computed with python3-cryptography (an
implementation outside this codebase).  Run once; its output is committed as
vectors.txt and the C++ unit tests check lib/ against it byte for byte:

    /usr/bin/python3 tests/gen_vectors.py > tests/vectors.txt
"""
import hashlib
import hmac
import struct

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def hkdf(ikm, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ikm)


def seal(enc, mac, ftype, seq, iv, pt):
    p = padding.PKCS7(128).padder()
    padded = p.update(pt) + p.finalize()
    e = Cipher(algorithms.AES(enc), modes.CBC(iv)).encryptor()
    ct = e.update(padded) + e.finalize()
    head = struct.pack(">IBBQ", 58 + len(ct), 1, ftype, seq) + iv + ct
    return head + hmac.new(mac, head, hashlib.sha256).digest()


def main():
    print("# secmsg/1 known-answer vectors from python3-cryptography (tests/gen_vectors.py)")
    print("# psk <hex>: every following line is under that PSK")
    for psk in (bytes(range(32)), bytes.fromhex("ff" * 32)):
        enc = hkdf(psk, b"secmsg/1 aes-256-cbc")
        mac = hkdf(psk, b"secmsg/1 hmac-sha256")
        print("psk", psk.hex())
        print("enc_key", enc.hex())
        print("mac_key", mac.hex())
        cases = [
            (1, 0, b""),
            (1, 1, b"a"),
            (1, 2, b"hello, secmsg"),
            (1, 3, bytes(range(15))),
            (1, 4, bytes(range(16))),
            (1, 5, bytes(range(17))),
            (1, 2**64 - 2, bytes(range(256)) * 3),
            (2, 0, struct.pack(">Q", 7) + hashlib.sha256(b"x").digest() + b"received 1 bytes"),
            (3, 9, struct.pack(">HQ", 6, 2**64 - 1) + b"journal unavailable"),
        ]
        for n, (ftype, seq, pt) in enumerate(cases):
            iv = hashlib.sha256(b"iv %d" % n).digest()[:16]
            print("frame", ftype, seq, iv.hex(), pt.hex() or "-", seal(enc, mac, ftype, seq, iv, pt).hex())


if __name__ == "__main__":
    main()

"""twemproxy's key hash functions, bit for bit (src/hashkit/nc_*.c in nutcracker).

Each takes the key's bytes and returns an unsigned 32-bit value. Several of the
C functions read the key through `const char *`, which is signed on x86 (the
Debian amd64 package we test against): a byte >= 0x80 is sign-extended before it
is mixed in. We reproduce that, because
`cache locate` must agree with the proxy for every key, not just ASCII ones.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF

HashFn = Callable[[bytes], int]

_FNV64_INIT = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
_FNV32_INIT = 2166136261
_FNV32_PRIME = 16777619


# (uint32_t)(char)byte and (uint64_t)(char)byte, as tables: sign-extended like the C code
# does where char is signed. Tables rather than calls: the loops below run per key byte.
_SX32 = tuple(b | 0xFFFFFF00 if b & 0x80 else b for b in range(256))
_SX64 = tuple(b | 0xFFFFFFFFFFFFFF00 if b & 0x80 else b for b in range(256))


def one_at_a_time(key: bytes) -> int:
    value = 0
    for byte in key:
        value = (value + _SX32[byte]) & M32
        value = (value + (value << 10)) & M32
        value ^= value >> 6
    value = (value + (value << 3)) & M32
    value ^= value >> 11
    return (value + (value << 15)) & M32


def md5(key: bytes) -> int:
    return int.from_bytes(hashlib.md5(key).digest()[:4], "little")


def _crc16_table() -> tuple[int, ...]:
    # CRC-16/XMODEM (polynomial 0x1021, not reflected), the table nutcracker 0.5.0 ships.
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


_CRC16 = _crc16_table()


def crc16(key: bytes) -> int:
    # nutcracker 0.5.0 keeps the running value in 32 bits and never masks it to 16:
    # long keys keep their high bits. Later upstream code differs; the packaged proxy is truth.
    crc = 0
    for byte in key:
        crc = ((crc << 8) & M32) ^ _CRC16[((crc >> 8) ^ byte) & 0xFF]
    return crc


def crc32(key: bytes) -> int:
    # libmemcached's variant: the top half of the standard CRC-32, masked to 15 bits.
    return (zlib.crc32(key) >> 16) & 0x7FFF


def crc32a(key: bytes) -> int:
    return zlib.crc32(key) & M32


def fnv1_64(key: bytes) -> int:
    value = _FNV64_INIT
    for byte in key:
        value = ((value * _FNV64_PRIME) & M64) ^ _SX64[byte]
    return value & M32


def fnv1a_64(key: bytes) -> int:
    # twemproxy truncates the 64-bit constants and computes in 32 bits.
    value = _FNV64_INIT & M32
    prime = _FNV64_PRIME & M32
    for byte in key:
        value = ((value ^ _SX32[byte]) * prime) & M32
    return value


def fnv1_32(key: bytes) -> int:
    value = _FNV32_INIT
    for byte in key:
        value = ((value * _FNV32_PRIME) & M32) ^ _SX32[byte]
    return value


def fnv1a_32(key: bytes) -> int:
    value = _FNV32_INIT
    for byte in key:
        value = ((value ^ _SX32[byte]) * _FNV32_PRIME) & M32
    return value


def hsieh(key: bytes) -> int:
    if not key:
        return 0
    value = 0
    rem = len(key) & 3
    pos = 0
    for _ in range(len(key) >> 2):
        value = (value + (key[pos] | key[pos + 1] << 8)) & M32
        tmp = (((key[pos + 2] | key[pos + 3] << 8) << 11) ^ value) & M32
        value = ((value << 16) ^ tmp) & M32
        pos += 4
        value = (value + (value >> 11)) & M32
    if rem == 3:
        value = (value + (key[pos] | key[pos + 1] << 8)) & M32
        value ^= (value << 16) & M32
        value ^= (_SX32[key[pos + 2]] << 18) & M32
        value = (value + (value >> 11)) & M32
    elif rem == 2:
        value = (value + (key[pos] | key[pos + 1] << 8)) & M32
        value ^= (value << 11) & M32
        value = (value + (value >> 17)) & M32
    elif rem == 1:
        value = (value + key[pos]) & M32
        value ^= (value << 10) & M32
        value = (value + (value >> 1)) & M32
    value ^= (value << 3) & M32
    value = (value + (value >> 5)) & M32
    value ^= (value << 4) & M32
    value = (value + (value >> 17)) & M32
    value ^= (value << 25) & M32
    return (value + (value >> 6)) & M32


def murmur(key: bytes) -> int:
    m = 0x5BD1E995
    length = len(key)
    value = ((0xDEADBEEF * length) & M32) ^ (length & M32)
    pos = 0
    while length - pos >= 4:
        k = int.from_bytes(key[pos : pos + 4], "little")
        k = (k * m) & M32
        k ^= k >> 24
        k = (k * m) & M32
        value = (value * m) & M32
        value ^= k
        pos += 4
    tail = length - pos
    if tail == 3:
        value ^= key[pos + 2] << 16
    if tail >= 2:
        value ^= key[pos + 1] << 8
    if tail >= 1:
        value ^= key[pos]
        value = (value * m) & M32
    value ^= value >> 13
    value = (value * m) & M32
    return value ^ (value >> 15)


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & M32


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    for shift_a, shift_b, shift_c in ((4, 6, 8), (16, 19, 4)):
        a = ((a - c) & M32) ^ _rot(c, shift_a)
        c = (c + b) & M32
        b = ((b - a) & M32) ^ _rot(a, shift_b)
        a = (a + c) & M32
        c = ((c - b) & M32) ^ _rot(b, shift_c)
        b = (b + a) & M32
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c = ((c ^ b) - _rot(b, 14)) & M32
    a = ((a ^ c) - _rot(c, 11)) & M32
    b = ((b ^ a) - _rot(a, 25)) & M32
    c = ((c ^ b) - _rot(b, 16)) & M32
    a = ((a ^ c) - _rot(c, 4)) & M32
    b = ((b ^ a) - _rot(a, 14)) & M32
    return ((c ^ b) - _rot(b, 24)) & M32


def jenkins(key: bytes) -> int:
    # lookup3 hashlittle; the C code's aligned word reads give the same sums as this byte path.
    length = len(key)
    a = b = c = (0xDEADBEEF + length + 13) & M32
    if length == 0:
        return c
    pos = 0
    while length - pos > 12:
        a = (a + int.from_bytes(key[pos : pos + 4], "little")) & M32
        b = (b + int.from_bytes(key[pos + 4 : pos + 8], "little")) & M32
        c = (c + int.from_bytes(key[pos + 8 : pos + 12], "little")) & M32
        a, b, c = _mix(a, b, c)
        pos += 12
    last = key[pos:] + bytes(12 - (length - pos))
    a = (a + int.from_bytes(last[0:4], "little")) & M32
    b = (b + int.from_bytes(last[4:8], "little")) & M32
    c = (c + int.from_bytes(last[8:12], "little")) & M32
    return _final(a, b, c)


HASHES: dict[str, HashFn] = {
    "one_at_a_time": one_at_a_time,
    "md5": md5,
    "crc16": crc16,
    "crc32": crc32,
    "crc32a": crc32a,
    "fnv1_64": fnv1_64,
    "fnv1a_64": fnv1a_64,
    "fnv1_32": fnv1_32,
    "fnv1a_32": fnv1a_32,
    "hsieh": hsieh,
    "murmur": murmur,
    "jenkins": jenkins,
}

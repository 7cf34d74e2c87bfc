"""SHA-256 and base32 for the lab's daemons, without hashlib and base64.

kube-proxy's chain names and MetalLB's choice of the announcing node are SHA-256 digests.
hashlib gives them through OpenSSL, whose library costs each process that loads it about
0.6 MiB of its own memory; CPython's built-in module computes the same digest for a few KiB.
kube-proxy's names are the base32 of the digest: base64 would load re, struct and binascii
for it (about 0.05 MiB). The node processes, which name kube-proxy's chains, run in every lab
(docs/performance.md, the lab at rest).
"""
from __future__ import annotations

try:  # CPython 3.11
    from _sha256 import sha256 as _sha256
except ImportError:  # pragma: no cover - CPython 3.12 and later, or another Python
    try:
        from _sha2 import sha256 as _sha256
    except ImportError:
        from hashlib import sha256 as _sha256


def sha256(data: bytes) -> bytes:
    """The SHA-256 digest of DATA."""
    return _sha256(data).digest()


BASE32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648's
_BASE32_PADDING = {0: 0, 1: 1, 2: 3, 3: 4, 4: 6}  # zero bytes added to make whole 5-byte groups -> "=" shown


def base32(data: bytes) -> str:
    """DATA in base32, as base64.b32encode writes it (RFC 4648: its alphabet, "=" padding)."""
    added = -len(data) % 5
    number = int.from_bytes(data + bytes(added), "big")
    count = (len(data) + added) * 8 // 5
    text = "".join(BASE32_ALPHABET[(number >> (5 * i)) & 31] for i in range(count - 1, -1, -1))
    padding = _BASE32_PADDING[added]
    return text[:count - padding] + "=" * padding

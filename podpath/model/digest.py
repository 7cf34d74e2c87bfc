"""SHA-256 for the lab's daemons, without hashlib.

kube-proxy's chain names and MetalLB's choice of the announcing node are SHA-256 digests.
hashlib gives them through OpenSSL, whose library costs each process that loads it about
0.6 MiB of its own memory; CPython's built-in module computes the same digest for a few KiB.
The node processes, which name kube-proxy's chains, run in every lab (docs/performance.md, the
lab at rest).
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

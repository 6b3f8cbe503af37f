"""Signs checkpoints with HMAC-SHA256 so a tampered or foreign one is refused before loading.

A checkpoint holds a pickled model, and unpickling runs code: with a key set, only bytes signed
under it are ever unpickled.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(key: bytes, meta: bytes, state: bytes) -> str:
    """The hex HMAC-SHA256 of a checkpoint's metadata and state under ``key``.

    >>> sign(b"k", b"{}", b"x") == sign(b"k", b"{}", b"x") != sign(b"other", b"{}", b"x")
    True
    """
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(len(meta).to_bytes(8, "big"))  # length-prefixed: no shifting bytes between parts
    mac.update(meta)
    mac.update(state)
    return mac.hexdigest()


def verify(key: bytes, meta: bytes, state: bytes, signature: str) -> bool:
    """Whether ``signature`` is the signature of ``meta`` and ``state`` under ``key``.

    >>> s = sign(b"k", b"{}", b"x")
    >>> verify(b"k", b"{}", b"x", s), verify(b"k", b"{}", b"y", s)
    (True, False)
    """
    return hmac.compare_digest(sign(key, meta, state), signature)

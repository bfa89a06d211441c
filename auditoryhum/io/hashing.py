"""Digests of files' bytes: the one place a file is hashed.

Two digests, for two jobs:

- :func:`file_digest`, BLAKE2b-128: the content fingerprint the run manifest, the resume
  journals and the atomic writer compare (fast; never written where another tool reads it);
- :func:`file_sha256`, SHA-256: where the digest is published or checked against a published
  one (the sweep's decision file, the bundled model's weights).

Both read the file in 1 MiB pieces, so memory stays bounded for any file size.
"""

import hashlib
from typing import Optional

# Content fingerprints read files in pieces of this size (bounded memory for any clip size).
_CHUNK = 1 << 20


def _hexdigest(path: str, digest) -> str:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: str) -> Optional[str]:
    """A digest of the bytes of ``path`` (BLAKE2b, 128 bits, hex), or ``None`` when it cannot be read.

    How a resumed run or the run manifest recognises an unchanged file: a clip swapped for
    another one of the same size and modification time has another digest and is redone.
    Hashing runs at several hundred MB/s, which is little next to decoding the clip and
    running a model on it.
    """
    try:
        return _hexdigest(path, hashlib.blake2b(digest_size=16))
    except OSError:
        return None


def file_sha256(path: str) -> str:
    """Hex SHA-256 of the bytes of ``path``. Raises ``OSError`` when it cannot be read."""
    return _hexdigest(path, hashlib.sha256())

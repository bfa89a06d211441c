"""The persistent cache of arrays that do not depend on k: t-SNE layouts, spectral embeddings, Ward trees.

Clustering the same rows at another k (or drawing the same rows again) recomputes nothing
that k does not change. Each entry is keyed by a digest of what determines it:

* the input rows exactly (dtype, shape and bytes),
* the kind of array and its parameters (the recipe's t-SNE or spectral settings),
* the versions of numpy, scipy and scikit-learn (an upgrade may change the numbers).

Layout: ``<root>/arrays/<kind>/<key>.npy``, ``<root>`` being the cache folder of the other
caches (:func:`auditoryhum.io.text_cache.default_cache_dir`, i.e. ``$XDG_CACHE_HOME/auditoryhum``
or ``~/.cache/auditoryhum``). An entry is one NPY file whose first 64 bytes, before the NPY
data, hold a header: a magic tag, the entry's key and the SHA-256 of the NPY bytes. On read the
key and the digest are checked; a truncated, corrupt or foreign entry is never trusted: it is
reported once, recomputed and rewritten. Entries are written atomically
(:func:`auditoryhum.io.atomic.atomic_write`), so concurrent runs only ever see whole entries;
two runs computing the same entry write the same bytes.
"""

import contextlib
import functools
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Union

import numpy as np

from auditoryhum.io.atomic import atomic_write

_MAGIC = b"AHUMARR1"  # 8 bytes
_KEY_BYTES = 24  # the first 24 bytes of the key digest, stored
_HEADER = len(_MAGIC) + _KEY_BYTES + 32
CACHE_SUBDIR = "arrays"
# Part of every key: bump when what an entry holds changes meaning.
_FORMAT_VERSION = 1


@functools.lru_cache(maxsize=1)
def _library_versions() -> str:
    # From the installed metadata: a warm run need not import scipy or scikit-learn at all.
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("scipy", "scikit-learn"):
        try:
            found.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            found.append(f"{name}=absent")
    return ";".join([f"numpy={np.__version__}", *found])


def rows_digest(rows: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order): equal digests, equal arrays."""
    rows = np.ascontiguousarray(rows)
    digest = hashlib.sha256()
    digest.update(f"{rows.dtype.str}|{rows.shape}|".encode("ascii"))
    digest.update(memoryview(rows).cast("B"))
    return digest.hexdigest()


class ArrayCache:
    """Arrays keyed by (kind, input digest, parameters), stored under ``root/arrays/kind/``.

    Parameters
    ----------
    root : str or Path, optional
        Cache folder; default :func:`auditoryhum.io.text_cache.default_cache_dir`.
    enabled : bool, default True
        ``False``: every :meth:`get_or_compute` computes and nothing is read or written.

    Attributes
    ----------
    notes : list of str
        One line per entry that was found corrupt or stale and recomputed.
    hits, misses : int
        Entries read back, and entries computed.
    """

    def __init__(self, root: Optional[Union[str, Path]] = None, enabled: bool = True):
        if root is None:
            from auditoryhum.io.text_cache import default_cache_dir

            root = default_cache_dir()
        self.root = Path(root) / CACHE_SUBDIR
        self.enabled = enabled
        self.notes: List[str] = []
        self.hits = 0
        self.misses = 0
        self._digests = None  # id -> (array, digest) inside remembering_digests()

    @contextlib.contextmanager
    def remembering_digests(self):
        """Within this block, the digest of a read-only array is computed once.

        One clustering keys its Ward tree, t-SNE layout, distances and silhouette by the same
        input rows: hashing 44 MB of rows four times costs a tenth of a second. The caller
        promises that no read-only array passed in here changes while the block runs (the
        clustering stage makes its loaded rows read-only and never writes them); writeable
        arrays are hashed every time. The arrays are held until the block ends, so an id is
        never reused for another array inside it.
        """
        self._digests = {}
        try:
            yield self
        finally:
            self._digests = None

    def digest(self, rows: np.ndarray) -> str:
        """:func:`rows_digest` of ``rows``, remembered for read-only arrays inside
        :meth:`remembering_digests`."""
        rows = np.asarray(rows)
        memo = self._digests
        if memo is None or rows.flags.writeable:
            return rows_digest(rows)
        found = memo.get(id(rows))
        if found is None or found[0] is not rows:
            found = memo[id(rows)] = (rows, rows_digest(rows))
        return found[1]

    def key(self, kind: str, rows_digest_hex: str, params: Mapping) -> str:
        """The hex key of one entry (kind, input digest, parameters, library versions)."""
        text = json.dumps({"format": _FORMAT_VERSION, "kind": kind, "rows": rows_digest_hex, "params": params,
                           "libs": _library_versions()},
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key[:40]}.npy"

    def get(self, kind: str, key: str) -> Optional[np.ndarray]:
        """The stored array, or ``None`` when absent, corrupt or stale (noted once)."""
        path = self.path(kind, key)
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.notes.append(f"cache entry {path} is unreadable ({exc.strerror or exc}); recomputed")
            return None
        head, body = blob[:_HEADER], blob[_HEADER:]
        if (len(head) != _HEADER or head[: len(_MAGIC)] != _MAGIC
                or head[len(_MAGIC): len(_MAGIC) + _KEY_BYTES] != bytes.fromhex(key)[:_KEY_BYTES]
                or head[len(_MAGIC) + _KEY_BYTES:] != hashlib.sha256(body).digest()):
            self.notes.append(f"cache entry {path} is corrupt or stale (digest mismatch); recomputed")
            return None
        try:
            return np.load(io.BytesIO(body), allow_pickle=False)
        except Exception:  # a digest match with unreadable NPY bytes: written by something else
            self.notes.append(f"cache entry {path} is not a readable array; recomputed")
            return None

    def put(self, kind: str, key: str, array: np.ndarray) -> None:
        """Store ``array`` atomically; a cache that cannot be written is noted, never fatal."""
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        body = buffer.getvalue()
        head = _MAGIC + bytes.fromhex(key)[:_KEY_BYTES] + hashlib.sha256(body).digest()
        path = self.path(kind, key)
        try:
            with atomic_write(path, "wb") as f:
                f.write(head)
                f.write(body)
        except Exception as exc:  # UserError from atomic_write (read-only or full disk) or OSError
            self.notes.append(f"could not write the cache entry {path} ({str(exc).splitlines()[0]}); "
                              f"the result is correct but will be recomputed next time")

    def get_or_compute(self, kind: str, rows_digest_hex: str, params: Mapping,
                       compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array of (kind, rows, params), computing and storing it when absent."""
        if not self.enabled:
            self.misses += 1
            return compute()
        key = self.key(kind, rows_digest_hex, params)
        found = self.get(kind, key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        array = compute()
        self.put(kind, key, array)
        return array


def open_cache(cache_dir: Optional[Union[str, os.PathLike]] = None, no_cache: bool = False) -> ArrayCache:
    """The cache of the ``cache_dir`` / ``no_cache`` options (``None``: the default folder)."""
    return ArrayCache(cache_dir, enabled=not no_cache)

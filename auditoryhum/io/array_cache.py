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

The cache is bounded: after each write, when its entries add up to more than
:data:`auditoryhum.defaults.ARRAY_CACHE_MAX_BYTES` (4 GiB; ``$AUDITORYHUM_CACHE_MAX_SIZE``
overrides it, ``none`` for no limit), the least recently used ones (by modification time,
which a read refreshes) are removed, with one note. Only files this cache wrote are ever
removed: named ``<40 hex digits>.npy`` and starting with its header. ``auditoryhum cache``
shows, prunes and clears it (:mod:`auditoryhum.io.cache_folder`).
"""

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Iterator, List, Mapping, Optional, Union

import numpy as np

from auditoryhum.defaults import ARRAY_CACHE_MAX_BYTES, ARRAY_CACHE_MAX_SIZE_ENV
from auditoryhum.io.atomic import PARTIAL_SUFFIX, atomic_write

_MAGIC = b"AHUMARR1"  # 8 bytes
_KEY_BYTES = 24  # the first 24 bytes of the key digest, stored
_HEADER = len(_MAGIC) + _KEY_BYTES + 32
CACHE_SUBDIR = "arrays"
# Part of every key: bump when what an entry holds changes meaning.
_FORMAT_VERSION = 1
#: The file name of an entry (:meth:`ArrayCache.path`).
ENTRY_NAME = re.compile(r"[0-9a-f]{40}\.npy")
# The temporary file of an entry's atomic write (atomic.partial_prefix + mkstemp's part).
_PARTIAL_NAME = re.compile(r"\.[0-9a-f]{40}\.npy\.[A-Za-z0-9_]+" + re.escape(PARTIAL_SUFFIX))
#: A temporary file this old belongs to a write that was killed, not to one in progress.
STALE_PARTIAL_S = 3600.0
_FROM_ENV = object()


@dataclass(frozen=True)
class CacheEntry:
    """One entry of the array cache: its file, kind, size in bytes and last use (written or read)."""

    path: Path
    kind: str
    size: int
    used: float


def size_text(n_bytes: float) -> str:
    """``n_bytes`` for people: ``512 B``, ``3.2 MiB``, ``4.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError  # unreachable


def max_bytes_from_env() -> Optional[int]:
    """The array cache's size limit: ``$AUDITORYHUM_CACHE_MAX_SIZE`` when set, else
    :data:`~auditoryhum.defaults.ARRAY_CACHE_MAX_BYTES`; ``None`` means no limit.

    Raises :class:`~auditoryhum.errors.UserError` naming the variable when it is not a size.
    """
    raw = os.environ.get(ARRAY_CACHE_MAX_SIZE_ENV, "").strip()
    if not raw:
        return ARRAY_CACHE_MAX_BYTES
    if raw.lower() in ("none", "unlimited"):
        return None
    from auditoryhum.errors import ParameterError, UserError
    from auditoryhum.validation import byte_size

    try:
        return byte_size(raw, ARRAY_CACHE_MAX_SIZE_ENV)
    except ParameterError:
        raise UserError(f"${ARRAY_CACHE_MAX_SIZE_ENV}={raw!r} is not a size: set it to e.g. 20G or 500M, "
                        f"or to none for no limit") from None


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
    max_bytes : int or None, optional
        Size limit kept after each write (see the module docstring); ``None``: no limit.
        Default: :func:`max_bytes_from_env`.

    Attributes
    ----------
    notes : list of str
        One line per entry that was found corrupt or stale and recomputed, and one per write
        that removed old entries to stay under the limit.
    hits, misses : int
        Entries read back, and entries computed.
    """

    def __init__(self, root: Optional[Union[str, Path]] = None, enabled: bool = True,
                 max_bytes: Optional[int] = _FROM_ENV):  # type: ignore[assignment]
        if root is None:
            from auditoryhum.io.text_cache import default_cache_dir

            root = default_cache_dir()
        self.root = Path(root) / CACHE_SUBDIR
        self.enabled = enabled
        self.max_bytes = (max_bytes_from_env() if enabled else None) if max_bytes is _FROM_ENV else max_bytes
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
            array = np.load(io.BytesIO(body), allow_pickle=False)
        except Exception:  # a digest match with unreadable NPY bytes: written by something else
            self.notes.append(f"cache entry {path} is not a readable array; recomputed")
            return None
        # A read is a use: the size limit removes the entries least recently used, not written.
        with contextlib.suppress(OSError):  # a read-only cache is still read
            os.utime(path)
        return array

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
            return
        if self.max_bytes is not None:
            self._keep_under(self.max_bytes, path)

    def _keep_under(self, max_bytes: int, written: Path) -> None:
        # The sizes alone first (one stat per file): only a cache over its limit is listed in full.
        if self._total_bytes() <= max_bytes:
            return
        removed = self.prune(max_bytes, keep={written})
        if removed:
            self.notes.append(
                f"the array cache {self.root} went over its {size_text(max_bytes)} limit: removed the "
                f"{len(removed)} least recently used entr{'y' if len(removed) == 1 else 'ies'} "
                f"({size_text(sum(e.size for e in removed))}); ${ARRAY_CACHE_MAX_SIZE_ENV} sets the limit")

    def _files(self, name: "re.Pattern") -> Iterator[os.DirEntry]:
        """The files of every kind's folder whose name matches ``name`` (links never followed).

        A folder or file that cannot be read, or that another run removes meanwhile, is passed
        over: the cache only saves time, so looking at it never fails a run.
        """
        try:
            folders = [e for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False)]
        except OSError:  # no cache yet, a file in its place, or unreadable
            return
        for folder in folders:
            try:
                candidates = list(os.scandir(folder.path))
            except OSError:
                continue
            for entry in candidates:
                with contextlib.suppress(OSError):
                    if name.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                        yield entry

    def _total_bytes(self) -> int:
        total = 0
        for entry in self._files(ENTRY_NAME):
            with contextlib.suppress(OSError):
                total += entry.stat(follow_symlinks=False).st_size
        return total

    def entries(self) -> List[CacheEntry]:
        """Every entry of the cache, least recently used first.

        An entry is a regular file named like one (:data:`ENTRY_NAME`) in a kind's folder that
        starts with this cache's header: nothing else in the folder is ever listed or removed.
        """
        found = []
        for entry in self._files(ENTRY_NAME):
            try:
                stat = entry.stat(follow_symlinks=False)
                with open(entry.path, "rb") as f:
                    head = f.read(len(_MAGIC))
            except OSError:  # removed meanwhile by another run, or unreadable: not ours to judge
                continue
            if head == _MAGIC:
                found.append(CacheEntry(Path(entry.path), Path(entry.path).parent.name, stat.st_size, stat.st_mtime))
        found.sort(key=lambda e: (e.used, str(e.path)))
        return found

    def stale_partials(self, older_than_s: float = STALE_PARTIAL_S) -> List[Path]:
        """Temporary files of entry writes that never finished (a killed run), older than ``older_than_s``."""
        cutoff = time.time() - older_than_s
        found = []
        for entry in self._files(_PARTIAL_NAME):
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    found.append(Path(entry.path))
        return sorted(found)

    def prune(self, max_bytes: int, keep: Collection[Path] = (), dry_run: bool = False) -> List[CacheEntry]:
        """Remove the least recently used entries until the rest add up to at most ``max_bytes``.

        ``keep``: entries never removed (the one just written). Stale temporary files of killed
        writes are removed too. Returns the entries removed (with ``dry_run``: that would be).
        Safe while other runs use the cache: a run that finds an entry gone recomputes it.
        """
        entries = self.entries()
        total = sum(e.size for e in entries)
        removed = []
        for entry in entries:
            if total <= max_bytes:
                break
            if entry.path in keep:
                continue
            if not dry_run:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:  # another run removed it first
                    pass
                except OSError:
                    continue
            total -= entry.size
            removed.append(entry)
        if not dry_run:
            for path in self.stale_partials():
                with contextlib.suppress(OSError):
                    os.unlink(path)
        return removed

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

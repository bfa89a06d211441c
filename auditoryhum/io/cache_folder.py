"""The cache folder as a whole: what it holds, and making it smaller (``auditoryhum cache``).

The folder (``--cache_dir``; default :func:`auditoryhum.io.text_cache.default_cache_dir`) holds
two caches, both of results that are recomputed when missing:

* the array cache (:mod:`auditoryhum.io.array_cache`) under ``arrays/<kind>/``: t-SNE layouts,
  spectral embeddings, Ward trees, distances, silhouettes, k-means labels. It keeps itself under
  its size limit after every write; :func:`prune` applies another limit on demand.
* text embeddings (:mod:`auditoryhum.io.text_cache`) under ``<namespace>/<model identity>/``:
  one row per distinct label and model, small, merged as they accumulate.

Only files these caches wrote are counted or removed (their exact file names; array entries also
their header), so a mistyped ``--cache_dir`` pointing at a folder of the user's own removes
nothing. Removing is safe while other runs use the folder: a run that finds an entry gone
recomputes it.
"""

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from auditoryhum.io.array_cache import CACHE_SUBDIR, ArrayCache, CacheEntry, max_bytes_from_env

# text_cache's shard names: shard-<20-digit ns time>-<pid>-<8 hex>.npz, in <namespace>/<32 hex>/.
_SHARD_NAME = re.compile(r"shard-\d{20}-\d+-[0-9a-f]{8}\.npz")
_IDENTITY_NAME = re.compile(r"[0-9a-f]{32}")

PathLike = Union[str, os.PathLike]


@dataclass
class CacheSummary:
    """What a cache folder holds.

    Attributes
    ----------
    root : Path
        The folder.
    arrays : dict
        Array-cache kind -> (entries, bytes).
    text : dict
        Text-embedding ``namespace/identity`` -> (shards, bytes).
    stale_partials : int
        Temporary files of array writes that a killed run left (removed by any prune).
    max_bytes : int or None
        The array cache's size limit (``None``: none).
    """

    root: Path
    arrays: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    text: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    stale_partials: int = 0
    max_bytes: Optional[int] = None

    @property
    def array_bytes(self) -> int:
        return sum(size for _, size in self.arrays.values())

    @property
    def text_bytes(self) -> int:
        return sum(size for _, size in self.text.values())


def _root(cache_dir: Optional[PathLike]) -> Path:
    from auditoryhum.io.text_cache import default_cache_dir

    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def _text_shards(root: Path) -> List[Tuple[str, Path, int]]:
    """(``namespace/identity``, path, bytes) of every text-embedding shard under ``root``."""
    found = []
    with contextlib.suppress(OSError):
        for namespace in os.scandir(root):
            if namespace.name == CACHE_SUBDIR or not namespace.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                for identity in os.scandir(namespace.path):
                    if not (_IDENTITY_NAME.fullmatch(identity.name) and identity.is_dir(follow_symlinks=False)):
                        continue
                    with contextlib.suppress(OSError):
                        for shard in os.scandir(identity.path):
                            if _SHARD_NAME.fullmatch(shard.name) and shard.is_file(follow_symlinks=False):
                                with contextlib.suppress(OSError):
                                    found.append((f"{namespace.name}/{identity.name}", Path(shard.path),
                                                  shard.stat(follow_symlinks=False).st_size))
    return sorted(found, key=lambda t: str(t[1]))


def summarise(cache_dir: Optional[PathLike] = None) -> CacheSummary:
    """What the cache folder holds, by kind (see :class:`CacheSummary`)."""
    root = _root(cache_dir)
    arrays = ArrayCache(root, max_bytes=None)
    summary = CacheSummary(root=root, max_bytes=max_bytes_from_env())
    for entry in arrays.entries():
        count, size = summary.arrays.get(entry.kind, (0, 0))
        summary.arrays[entry.kind] = (count + 1, size + entry.size)
    for name, _, size in _text_shards(root):
        count, total = summary.text.get(name, (0, 0))
        summary.text[name] = (count + 1, total + size)
    summary.stale_partials = len(arrays.stale_partials())
    return summary


def prune(max_bytes: int, cache_dir: Optional[PathLike] = None, dry_run: bool = False) -> List[CacheEntry]:
    """Remove the least recently used array entries until the array cache holds at most
    ``max_bytes`` (``0``: all of them); return what was (with ``dry_run``: would be) removed."""
    from auditoryhum.validation import byte_size

    max_bytes = byte_size(max_bytes, "max_bytes")
    return ArrayCache(_root(cache_dir), max_bytes=None).prune(max_bytes, dry_run=dry_run)


def clear(cache_dir: Optional[PathLike] = None, dry_run: bool = False) -> Tuple[List[CacheEntry], List[Path]]:
    """Remove every array entry and every text-embedding shard; return both lists (with
    ``dry_run``: what would be removed). Folders and anything else in them are left."""
    root = _root(cache_dir)
    removed_arrays = ArrayCache(root, max_bytes=None).prune(0, dry_run=dry_run)
    removed_shards = []
    for _, path, _ in _text_shards(root):
        if not dry_run:
            try:
                os.unlink(path)
            except FileNotFoundError:  # merged away by a concurrent run
                pass
            except OSError:
                continue
        removed_shards.append(path)
    return removed_arrays, removed_shards

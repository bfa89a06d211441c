"""The persistent cache of text embeddings, keyed by (model identity, text).

Labels repeat across clips, datasets and reruns (a merged label file differs from the
MLLM's only on annotated lines), so an embedding once computed is kept on disk and reused.

Layout: ``<root>/<namespace>/<model identity>/shard-*.npz``. Each shard holds the texts (as
UTF-8 JSON bytes, so any text round-trips exactly) and one float32 row per text. A run only
ever *adds* a shard, written atomically under a name no other run uses, so concurrent runs
never see a half-written shard and never overwrite each other. When a folder holds many
shards, a run merges them into one new shard and then deletes the ones it merged; a run
reading at the same moment may find a shard gone and simply recomputes what it held.

The model identity is :func:`auditoryhum.models.identity.identity_digest` of the model's
:func:`~auditoryhum.models.identity.model_identity` (the rule the run manifest and the journals
use: the names, sizes and modification times of the folder's files), so retrained or replaced
weights give a new identity and never a stale embedding.
"""

import contextlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from auditoryhum.console import warn
from auditoryhum.errors import UserError
from auditoryhum.io.atomic import atomic_write

SHARD_PREFIX = "shard-"
SHARD_SUFFIX = ".npz"
# Merge the shards of one model once there are more than this many (one is added per run
# that encodes anything new).
COMPACT_ABOVE = 16


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/auditoryhum``, or ``~/.cache/auditoryhum`` when that is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "auditoryhum"


class TextEmbeddingCache:
    """Text embeddings of one model, stored under ``root/namespace/identity``.

    Parameters
    ----------
    root : str or Path
        Cache root (see :func:`default_cache_dir`).
    namespace : str
        What kind of embedding, e.g. ``"clap-text"``: models of different kinds never share rows.
    identity : str
        The model identity (:func:`auditoryhum.models.identity.identity_digest`).
    dim : int or None
        Expected row width; shards with rows of another width are ignored. ``None``: the
        width of the first readable shard.

    Problems with the cache (unwritable folder, unreadable shard) are warnings, never
    errors: the cache only saves time.
    """

    def __init__(self, root: Union[str, Path], namespace: str, identity: str, dim: Optional[int] = None):
        self.folder = Path(root) / namespace / identity
        self.dim = dim
        self._write_failed = False

    def _shards(self) -> List[Path]:
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        except OSError as exc:
            warn(f"text-embedding cache {self.folder} cannot be read ({exc.strerror or exc}); embedding without it")
            return []
        return sorted(self.folder / n for n in names if n.startswith(SHARD_PREFIX) and n.endswith(SHARD_SUFFIX))

    def _read_shard(self, path: Path):
        """``(texts, rows)`` of one shard, or ``None`` when it vanished or is unusable."""
        try:
            with np.load(path, allow_pickle=False) as data:
                texts = json.loads(bytes(data["texts"]).decode("utf-8"))
                rows = np.asarray(data["rows"], dtype=np.float32)
        except FileNotFoundError:
            return None  # merged away by a concurrent run
        except Exception as exc:  # a foreign or damaged file: numpy/zip/json raise many types
            warn(f"ignoring unreadable text-embedding cache file {path} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
            return None
        if not isinstance(texts, list) or rows.ndim != 2 or rows.shape[0] != len(texts):
            warn(f"ignoring malformed text-embedding cache file {path}")
            return None
        if self.dim is None:
            self.dim = rows.shape[1]
        if rows.shape[1] != self.dim:
            return None
        return texts, rows

    def lookup(self, texts: Sequence[str]) -> Dict[str, np.ndarray]:
        """The cached rows of those ``texts`` that are in the cache (text -> float32 row)."""
        wanted = set(texts)
        found: Dict[str, np.ndarray] = {}
        shards = self._shards()
        for path in shards:
            shard = self._read_shard(path)
            if shard is None:
                continue
            for text, row in zip(*shard):
                if text in wanted and text not in found:
                    found[text] = row
        if len(shards) > COMPACT_ABOVE:
            self._compact(shards)
        return found

    def add(self, texts: Sequence[str], rows: np.ndarray) -> None:
        """Store ``rows`` (one per text) as a new shard. A failure to write is a warning."""
        rows = np.asarray(rows, dtype=np.float32)
        if len(texts) == 0 or self._write_failed:
            return
        if rows.shape[0] != len(texts) or not np.all(np.isfinite(rows)):
            raise ValueError("cache rows must be finite, one per text")
        self._write_shard(list(texts), rows)

    def _write_shard(self, texts: List[str], rows: np.ndarray) -> bool:
        # Time first so shards list in creation order; the random part keeps names unique
        # across concurrent runs.
        name = f"{SHARD_PREFIX}{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}{SHARD_SUFFIX}"
        encoded = np.frombuffer(json.dumps(texts, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
        try:
            with atomic_write(self.folder / name, "wb") as f:
                np.savez(f, texts=encoded, rows=rows)
        except (UserError, OSError) as exc:
            self._write_failed = True
            warn(f"cannot write the text-embedding cache in {self.folder} ({exc}); carrying on without caching")
            return False
        return True

    def _compact(self, shards: List[Path]) -> None:
        """Merge ``shards`` into one new shard, then delete them (safe against concurrent runs)."""
        texts: List[str] = []
        rows: List[np.ndarray] = []
        seen = set()
        merged = []
        for path in shards:
            shard = self._read_shard(path)
            if shard is None:
                continue
            merged.append(path)
            for text, row in zip(*shard):
                if text not in seen:
                    seen.add(text)
                    texts.append(text)
                    rows.append(row)
        if not texts or not self._write_shard(texts, np.stack(rows)):
            return
        for path in merged:
            with contextlib.suppress(OSError):
                os.unlink(path)

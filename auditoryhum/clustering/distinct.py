"""Distinct rows with their multiplicities: how a clustering input of millions of rows fits.

Kept labels repeat: U distinct labels (hundreds to tens of thousands) stand for N clips, so the
rows of a label embedding are U distinct rows, each repeated. Everything the taxonomy computes
(the Ward tree, the silhouette, the plots) depends on the rows only through the distinct rows
and their counts, so a 2,000,000-row input is read once, block by block, and never held whole.

Rows are compared by value: ``-0.0`` equals ``0.0``; rows that are NaN throughout stand for clips
without a label and are set aside (the mask); any other NaN or inf is damage and an error.
"""

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from auditoryhum.errors import UserError

#: Fixed odd multipliers of the row hash (any fixed odd numbers do; collisions are checked).
_HASH_SEED = 20260219


@dataclass
class DistinctRows:
    """A clustering input as its distinct rows.

    Attributes
    ----------
    rows : ndarray of shape (U, n_features)
        The distinct rows, in order of first occurrence (float32 stays float32; integers
        become float64).
    inverse : ndarray of shape (n_kept,)
        For each row with a label, in input order, the index of its distinct row.
    counts : ndarray of shape (U,)
        How many rows each distinct row stands for.
    first : ndarray of shape (U,)
        Index (among the rows with a label) of each distinct row's first occurrence.
    mask : ndarray of bool, shape (n_rows,)
        True for the rows with a label (False: all-NaN rows, clips without a label).
    """

    rows: np.ndarray
    inverse: np.ndarray
    counts: np.ndarray
    first: np.ndarray
    mask: np.ndarray

    @property
    def n_rows(self) -> int:
        """Rows with a label (the rows clustered)."""
        return int(self.inverse.shape[0])

    @property
    def n_distinct(self) -> int:
        return int(self.rows.shape[0])

    @property
    def n_missing(self) -> int:
        return int(self.mask.shape[0] - self.inverse.shape[0])

    def expand(self) -> np.ndarray:
        """All rows with a label, in input order (N x n_features: only where that fits)."""
        return self.rows[self.inverse]


def _hash_rows(block: np.ndarray, multipliers: np.ndarray) -> np.ndarray:
    words = block.view(np.uint32 if block.dtype.itemsize == 4 else np.uint64).astype(np.uint64)
    # A weighted sum of the row's words modulo 2^64 (numpy's unsigned arithmetic wraps): rows
    # that differ in one word always differ here, since the multipliers are odd.
    words *= multipliers[: words.shape[1]]
    return words.sum(axis=1, dtype=np.uint64)


class _Collector:
    """Adds blocks of rows one after another; finds each row's distinct row exactly."""

    def __init__(self, n_features: int, dtype):
        rng = np.random.default_rng(_HASH_SEED)
        width = n_features * (2 if np.dtype(dtype).itemsize == 8 else 1)
        self.multipliers = rng.integers(0, 2**63, size=max(width, 1), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.dtype = np.dtype(dtype)
        self.by_hash: Dict[int, int] = {}
        self.by_bytes: Dict[bytes, int] = {}  # rows whose hash is another row's (checked, rare)
        self.buffer = np.zeros((16, n_features), dtype=self.dtype)  # grows by doubling
        self.n_distinct = 0
        self.first: List[int] = []
        self.inverse: List[np.ndarray] = []
        self.n_kept = 0

    @property
    def rows(self) -> np.ndarray:
        return self.buffer[: self.n_distinct]

    def _add_distinct(self, row: np.ndarray, position: int) -> int:
        if self.n_distinct == self.buffer.shape[0]:
            grown = np.zeros((2 * self.buffer.shape[0], self.buffer.shape[1]), dtype=self.dtype)
            grown[: self.n_distinct] = self.buffer
            self.buffer = grown
        self.buffer[self.n_distinct] = row
        self.first.append(position)
        self.n_distinct += 1
        return self.n_distinct - 1

    def add(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        block += self.dtype.type(0)  # -0.0 -> 0.0 (they are the same value)
        m = block.shape[0]
        if m == 0:
            return
        hashes = _hash_rows(block, self.multipliers)
        unique, first_in_block, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        mapped = np.empty(unique.shape[0], dtype=np.intp)
        # New rows are numbered in order of first occurrence.
        by_position = np.argsort(first_in_block, kind="stable")
        for j, h, i in zip(by_position.tolist(), unique[by_position].tolist(), first_in_block[by_position].tolist()):
            index = self.by_hash.get(h)
            if index is None:
                index = self._add_distinct(block[i], self.n_kept + i)
                self.by_hash[h] = index
            mapped[j] = index
        index = mapped[inverse.reshape(-1)]
        same = np.all(block == self.rows[index], axis=1)
        for i in np.flatnonzero(~same).tolist():
            # Two different rows with one hash: settled by their bytes.
            key = block[i].tobytes()
            found = self.by_bytes.get(key)
            if found is None:
                found = self._add_distinct(block[i], self.n_kept + i)
                self.by_bytes[key] = found
            index[i] = found
        self.inverse.append(index)
        self.n_kept += m

    def result(self, mask: np.ndarray) -> DistinctRows:
        inverse = np.concatenate(self.inverse) if self.inverse else np.zeros(0, dtype=np.intp)
        counts = np.bincount(inverse, minlength=self.rows.shape[0]).astype(np.int64)
        return DistinctRows(self.rows.copy(), inverse, counts, np.asarray(self.first, dtype=np.int64), mask)


def distinct_rows_of_blocks(blocks: Iterable[Tuple[int, np.ndarray]], n_rows: int, n_features: int, dtype,
                            source: str = "the data") -> DistinctRows:
    """:class:`DistinctRows` of the rows given as ``(start, block)`` pairs in order.

    Memory: the distinct rows, 8 bytes per row for the inverse, and one block.
    """
    dtype = np.dtype(dtype)
    work_dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
    collector = _Collector(n_features, work_dtype)
    mask = np.ones(n_rows, dtype=bool)
    damaged: List[int] = []
    n_damaged = 0
    for start, block in blocks:
        if block.dtype.kind == "f":
            finite = np.all(np.isfinite(block), axis=1)
            if not finite.all():
                suspect = np.flatnonzero(~finite)
                missing = np.all(np.isnan(block[suspect]), axis=1) if block.shape[1] else np.ones(suspect.size, bool)
                bad = suspect[~missing]
                n_damaged += bad.size
                damaged.extend((start + bad[: max(0, 10 - len(damaged))]).tolist())
                mask[start + suspect[missing]] = False
                block = block[finite]
        collector.add(block)
    if n_damaged:
        shown = ", ".join(str(i + 1) for i in damaged[:10]) + (" ..." if n_damaged > 10 else "")
        raise UserError(
            f"{source}: {n_damaged} of {n_rows} rows hold NaN or inf (rows {shown}, 1-based), "
            f"usually clips that failed to decode; fix or remove those clips and recompute the features"
        )
    return collector.result(mask)


def find_distinct_rows(X: np.ndarray, source: str = "the data", block_rows: Optional[int] = None) -> DistinctRows:
    """:class:`DistinctRows` of an array already in memory (or memory-mapped).

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
        One row per clip; all-NaN rows are clips without a label (left out, ``mask`` False).
    source : str
        How messages name the rows.
    block_rows : int, optional
        Rows hashed per block (default: about 64 MB of rows).

    Returns
    -------
    DistinctRows
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise UserError(f"{source} must be a 2-D array (one row per clip); got shape {X.shape}")
    if block_rows is None:
        block_rows = max(1, (64 * 2**20) // max(1, X.shape[1] * X.dtype.itemsize))
    blocks = ((s, np.array(X[s:s + block_rows])) for s in range(0, X.shape[0], block_rows))
    return distinct_rows_of_blocks(blocks, X.shape[0], X.shape[1], X.dtype, source)


def read_distinct_rows(path: str) -> DistinctRows:
    """:class:`DistinctRows` of a 2-D ``.npy`` file, read block by block (never whole)."""
    from auditoryhum.io.artefacts import iter_matrix_rows, matrix_header

    (n, d), dtype, _, _ = matrix_header(path)
    return distinct_rows_of_blocks(iter_matrix_rows(path), n, d, dtype, path)

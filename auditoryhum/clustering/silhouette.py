"""The mean euclidean silhouette, bit for bit what scikit-learn computes, without importing it.

``sklearn.metrics.silhouette_score(X, labels)`` is the number every clustering command prints
(``Silhouette Score <x>``). Importing scikit-learn costs about 2.5 s on a small machine, more
than the silhouette itself at the paper's sizes, and a clustering at a new k on a warm cache
needs nothing else from it. This module repeats scikit-learn's arithmetic (version 1.9) with
numpy alone: the same operations in the same order on arrays of the same shapes, so the same
BLAS calls and the same roundings. The tests compare it with scikit-learn on single-chunk and
chunked inputs, float32 and float64, duplicates and singleton clusters.

What scikit-learn does (``silhouette_samples`` over ``pairwise_distances_chunked``):

1. Labels are encoded 0..L-1 (sorted distinct values) and counted.
2. Rows are cut into chunks of ``working_memory`` (1024 MiB) / (8 N bytes) rows. A single
   chunk is the whole array, and ``euclidean_distances(X, X)`` then takes its symmetric
   shortcuts (the product ``X @ X.T``, the upper blocks mirrored, the diagonal set to 0).
3. Distances: float64 input ``-2 X.Y^T + |x|^2 + |y|^2``; float32 input the same on float64
   copies of blocks of rows and columns (block size from a 10 %-more-memory rule), rounded to
   float32. Then clipped at 0, self-distances set to 0, square root.
4. Per row: ``np.bincount`` of its distances by cluster (a float64 sum in index order), stored
   in the distances' dtype; the own cluster's sum taken out; the others divided by their sizes
   and the minimum taken.
5. ``a = own sum / (size - 1)``, ``s = (b - a) / max(a, b)``, NaN (a one-row cluster) -> 0, and
   the mean over all rows.

:func:`silhouette_score_distinct` is a faster route for inputs with many repeated rows (label
embeddings: one row per clip, few distinct labels) that gives the same bits.
"""

import math
from typing import Iterator, Optional

import numpy as np

#: scikit-learn's default ``working_memory`` (MiB), which sizes the row chunks.
WORKING_MEMORY_MIB = 1024


def _batches(n: int, size: int) -> Iterator[slice]:
    """``sklearn.utils.gen_batches(n, size)``: consecutive slices of ``size``, the last shorter."""
    start = 0
    for _ in range(n // size):
        yield slice(start, start + size)
        start += size
    if start < n:
        yield slice(start, n)


def chunk_rows(n_rows: int, n_columns: int, working_memory_mib: float = WORKING_MEMORY_MIB) -> int:
    """Rows per chunk of an ``(n_rows, n_columns)`` distance matrix (``get_chunk_n_rows``)."""
    rows = int(working_memory_mib * (2**20) // (8 * n_columns))
    return max(1, min(rows, n_rows))


def _row_norms_squared(X: np.ndarray) -> np.ndarray:
    # sklearn.utils.extmath.row_norms(X, squared=True) for dense arrays.
    return np.einsum("ij,ij->i", X, X)


def _upcast_block_size(n_x: int, n_y: int, n_features: int) -> int:
    # scikit-learn allows 10 % more memory than X, Y and the distance matrix take (at least
    # 10 MiB), in 8-byte words, and solves x^2 + 2 k x = M for the block size x.
    maxmem = max(((n_x + n_y) * n_features + n_x * n_y) / 10, 10 * 2**17)
    tmp = 2 * n_features
    return max(int((-tmp + math.sqrt(tmp**2 + 4 * maxmem)) / 2), 1)


def euclidean_distances(X: np.ndarray, Y: Optional[np.ndarray] = None) -> np.ndarray:
    """``sklearn.metrics.pairwise.euclidean_distances(X, Y)`` for dense float32 or float64 arrays.

    ``Y=None`` (or ``Y is X``) is the symmetric case: the diagonal is exactly 0 and, for
    float32, the lower blocks are mirrored from the upper ones, as scikit-learn does.

    Returns
    -------
    ndarray of shape (len(X), len(Y))
        float32 when both inputs are float32, else float64.
    """
    if Y is None:
        Y = X
    same = Y is X
    if X.dtype == np.float32 and Y.dtype == np.float32:
        n_x, n_y = X.shape[0], Y.shape[0]
        distances = np.empty((n_x, n_y), dtype=np.float32)
        size = _upcast_block_size(n_x, n_y, X.shape[1])
        for i, xs in enumerate(_batches(n_x, size)):
            X_block = X[xs, :].astype(np.float64)
            XX_block = _row_norms_squared(X_block)[:, None]
            for j, ys in enumerate(_batches(n_y, size)):
                if same and j < i:
                    d = distances[ys, xs].T
                else:
                    Y_block = Y[ys, :].astype(np.float64)
                    YY_block = _row_norms_squared(Y_block)[None, :]
                    d = -2 * (X_block @ Y_block.T)
                    d += XX_block
                    d += YY_block
                distances[xs, ys] = d.astype(np.float32, copy=False)
    else:
        X = X if X.dtype == np.float64 else X.astype(np.float64)
        if same:
            Y = X
        elif Y.dtype != np.float64:
            Y = Y.astype(np.float64)
        XX = _row_norms_squared(X)[:, None]
        YY = XX.T if same else _row_norms_squared(Y)[None, :]
        distances = -2 * (X @ Y.T)
        distances += XX
        distances += YY
    np.maximum(distances, 0, out=distances)
    if same:
        np.fill_diagonal(distances, 0, wrap=False)
    np.sqrt(distances, out=distances)
    return distances


def _as_float(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    return X


def encode_labels(labels) -> np.ndarray:
    """Labels as 0..L-1 in the order of their sorted distinct values (``LabelEncoder``)."""
    _, encoded = np.unique(np.asarray(labels), return_inverse=True)
    return encoded.reshape(-1).astype(np.intp)


#: Elements per call of :func:`_sums_by_cluster` (its index array takes 8 bytes each).
SUMS_STEP_ELEMENTS = 4 * 2**20


def _sums_by_cluster(D: np.ndarray, labels: np.ndarray, n_labels: int) -> np.ndarray:
    """Each row of ``D`` summed by label: ``np.bincount(labels, weights=row, minlength=n_labels)``
    for every row, as a float64 array of shape (rows, n_labels).

    A few rows at a time in one ``np.bincount`` over (row, label) pairs: it adds the weights in
    the order they come, so each (row, label) sum is the same sequence of float64 additions as
    a bincount of that row alone, the same bits, without a Python step per row (which, beside
    the plot's thread, would wait for the interpreter lock at every row).
    """
    n_rows, n = D.shape
    sums = np.empty((n_rows, n_labels), dtype=np.float64)
    step = max(1, SUMS_STEP_ELEMENTS // max(n, 1))
    pairs = (np.arange(min(step, n_rows))[:, None] * n_labels + labels[None, :]).ravel()
    for lo in range(0, n_rows, step):
        hi = min(n_rows, lo + step)
        rows = hi - lo
        sums[lo:hi] = np.bincount(pairs[:rows * n], weights=D[lo:hi].ravel(),
                                  minlength=rows * n_labels).reshape(rows, n_labels)
    return sums


def _reduce(D_chunk: np.ndarray, start: int, labels: np.ndarray, label_freqs: np.ndarray):
    # scikit-learn's _silhouette_reduce for dense chunks.
    n_chunk = D_chunk.shape[0]
    n_labels = len(label_freqs)
    cluster_distances = np.zeros((n_chunk, n_labels), dtype=D_chunk.dtype)
    cluster_distances += _sums_by_cluster(D_chunk, labels, n_labels)
    return _own_and_nearest(cluster_distances, labels[start:start + n_chunk], label_freqs)


def _own_and_nearest(cluster_distances: np.ndarray, chunk_labels: np.ndarray, label_freqs: np.ndarray):
    """The end of scikit-learn's reduction: each row's sum over its own cluster, and its mean
    distance to the nearest other cluster (``cluster_distances`` is modified)."""
    intra_index = (np.arange(cluster_distances.shape[0]), chunk_labels)
    intra = cluster_distances[intra_index]
    cluster_distances[intra_index] = np.inf
    cluster_distances /= label_freqs
    return intra, cluster_distances.min(axis=1)


#: Size of one block of float64 distances (:func:`_reduce_float64_in_blocks`): 8 MiB, small
#: enough for the element-wise passes to stay near the processor, large enough that each numpy
#: call does milliseconds of work (the silhouette shares the interpreter with the plot's thread).
FLOAT64_BLOCK_BYTES = 8 * 2**20


def _row_blocks(n_rows: int, size: int) -> Iterator[slice]:
    """Consecutive slices of ``size`` rows, none of a single row unless ``n_rows`` is 1 (a
    one-row product is a matrix-vector call in BLAS, whose roundings differ): a one-row
    remainder joins the block before it."""
    starts = list(range(0, n_rows, size))
    if len(starts) > 1 and n_rows - starts[-1] == 1:
        starts.pop()
    for i, start in enumerate(starts):
        yield slice(start, starts[i + 1] if i + 1 < len(starts) else n_rows)


def _reduce_float64_in_blocks(X: np.ndarray, sl: slice, labels: np.ndarray, label_freqs: np.ndarray):
    """:func:`_reduce` of scikit-learn's distance chunk ``sl`` of float64 rows of at most two
    columns (the 2-D spectral embedding), without building the chunk.

    scikit-learn builds the whole chunk (up to ``working_memory``, 1 GiB, and a temporary copy
    of it) and then reduces it row by row. Here the same distances are made a few dozen rows at
    a time in one reused buffer, with the same operations in the same order: the product of
    those rows with all rows, ``* -2``, ``+ |x|^2`` (the chunk's norms), ``+ |y|^2``, clipped at
    0, self-distances 0, square root. With one or two columns an element of a BLAS product of
    two or more rows is one rounded product and one fused multiply-add whichever kernel
    computes it, so it has the same bits wherever its rows sit, also in the symmetric product
    scikit-learn takes for a single chunk (checked against scikit-learn by the tests). With
    more columns that is not so: the kernels at the edges of a product sum in another order.
    A single row is a matrix-vector product in BLAS, rounded differently, so no block has one
    row unless scikit-learn's chunk has.
    """
    n = X.shape[0]
    n_chunk = sl.stop - sl.start
    n_labels = len(label_freqs)
    XX = _row_norms_squared(X[sl])
    YY = XX if n_chunk == n else _row_norms_squared(X)
    cluster_distances = np.zeros((n_chunk, n_labels), dtype=np.float64)
    size = max(2, int(FLOAT64_BLOCK_BYTES // (8 * n)))
    buffer = np.empty((size + 1, n), dtype=np.float64)  # +1: a one-row remainder joins a block
    for block in _row_blocks(n_chunk, size):
        rows = block.stop - block.start
        D = np.matmul(X[sl.start + block.start:sl.start + block.stop], X.T, out=buffer[:rows])
        D *= -2
        D += XX[block, None]
        D += YY[None, :]
        np.maximum(D, 0, out=D)
        D[np.arange(rows), sl.start + block.start + np.arange(rows)] = 0
        np.sqrt(D, out=D)
        cluster_distances[block] += _sums_by_cluster(D, labels, n_labels)
    return _own_and_nearest(cluster_distances, labels[sl], label_freqs)


def _finish(intra: np.ndarray, inter: np.ndarray, labels: np.ndarray, label_freqs: np.ndarray) -> np.ndarray:
    # The end of silhouette_samples: a / (size - 1), (b - a) / max(a, b), NaN -> 0.
    denom = (label_freqs - 1).take(labels, mode="clip")
    with np.errstate(divide="ignore", invalid="ignore"):
        intra /= denom
    samples = inter - intra
    with np.errstate(divide="ignore", invalid="ignore"):
        samples /= np.maximum(intra, inter)
    return np.nan_to_num(samples)


def silhouette_samples(X: np.ndarray, labels, working_memory_mib: float = WORKING_MEMORY_MIB) -> np.ndarray:
    """Per-row euclidean silhouette, ``sklearn.metrics.silhouette_samples(X, labels)`` bit for bit.

    Parameters
    ----------
    X : ndarray of shape (N, D)
        Dense rows (float32 stays float32; other dtypes are computed in float64).
    labels : array-like of shape (N,)
        Any labels; 2 <= distinct labels <= N - 1 (not checked here: see
        :func:`auditoryhum.clustering.silhouette`).
    working_memory_mib : float, default 1024
        scikit-learn's ``working_memory`` setting, which decides the row chunks.

    Returns
    -------
    ndarray of shape (N,)
        In the dtype of the distances (float32 for float32 rows).
    """
    X = _as_float(X)
    labels = encode_labels(labels)
    label_freqs = np.bincount(labels)
    n = X.shape[0]
    intra_parts, inter_parts = [], []
    for sl in _batches(n, chunk_rows(n, n, working_memory_mib)):
        if X.dtype == np.float64 and X.shape[1] <= 2:
            intra, inter = _reduce_float64_in_blocks(X, sl, labels, label_freqs)
        else:
            # The whole array as one chunk takes scikit-learn's symmetric path (X is Y).
            whole = sl.start == 0 and sl.stop == n
            D_chunk = euclidean_distances(X) if whole else euclidean_distances(X[sl], X)
            D_chunk.flat[sl.start::n + 1] = 0
            intra, inter = _reduce(D_chunk, sl.start, labels, label_freqs)
            del D_chunk
        intra_parts.append(intra)
        inter_parts.append(inter)
    return _finish(np.concatenate(intra_parts), np.concatenate(inter_parts), labels, label_freqs)


def silhouette_score(X: np.ndarray, labels, working_memory_mib: float = WORKING_MEMORY_MIB, cache=None) -> float:
    """Mean euclidean silhouette, ``sklearn.metrics.silhouette_score(X, labels)`` bit for bit.

    Uses :func:`silhouette_score_distinct` where it applies (the same bits, faster; ``cache``
    keeps its distance matrix), else :func:`silhouette_samples`.
    """
    fast = silhouette_score_distinct(X, labels, working_memory_mib, cache=cache)
    if fast is not None:
        return fast
    return float(np.mean(silhouette_samples(X, labels, working_memory_mib)))


# Below this many rows the plain route is fast enough; above, the distinct-row route pays off
# when the rows repeat (at most this share distinct).
DISTINCT_MIN_ROWS = 4000
DISTINCT_MAX_SHARE = 0.25
# The distinct rows' distances to all rows do not depend on the clustering: with a cache they
# are kept per input up to this size (37 MB at the paper's N = 14,400 and U = 639).
DISTANCES_CACHE_MAX_BYTES = 256 * 2**20


def silhouette_score_distinct(space: np.ndarray, labels, working_memory_mib: float = WORKING_MEMORY_MIB,
                              min_rows: int = DISTINCT_MIN_ROWS, cache=None) -> Optional[float]:
    """:func:`silhouette_score` from the distances of the distinct rows to all rows, or ``None``
    when this route does not apply.

    In the chunked route every row's distances come from a block product of float64 copies,
    and copies of one row get the same bits wherever they sit; so the distances are computed
    once per distinct row and each copy's own-cluster sum is the same ordered sum without its
    own position. It applies to float32 rows that are chunked (more than one chunk: a single
    chunk takes the symmetric shortcuts, whose rounding differs), repeat (at most a quarter
    distinct), and whose copies all share one cluster (copies in different clusters see each
    other at rounding noise, which then decides their silhouette).

    ``cache`` (an :class:`~auditoryhum.io.array_cache.ArrayCache`) keeps the distance matrix of
    the distinct rows (it depends on the rows only) when it is at most
    :data:`DISTANCES_CACHE_MAX_BYTES`, so another k of the same input skips the products.
    """
    X = np.asarray(space)
    n = X.shape[0]
    # float32 only: float64 rows are multiplied in place, where the rounding noise between
    # copies of a row depends on their positions.
    if n < min_rows or X.dtype != np.float32 or X.ndim != 2:
        return None
    if chunk_rows(n, n, working_memory_mib) >= n:
        return None
    X = np.ascontiguousarray(X)
    as_bytes = X.view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(as_bytes, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_distinct = first.shape[0]
    if n_distinct > DISTINCT_MAX_SHARE * n:
        return None
    enc = encode_labels(labels)
    first_label = np.full(n_distinct, -1, dtype=np.intp)
    first_label[inverse[::-1]] = enc[::-1]
    if not np.array_equal(first_label[inverse], enc):
        return None
    freqs = np.bincount(enc)
    n_labels = freqs.shape[0]
    dt = X.dtype
    members = [np.flatnonzero(enc == c) for c in range(n_labels)]
    position = np.empty(n, dtype=np.intp)  # index of each row within its cluster's member list
    for idx in members:
        position[idx] = np.arange(idx.shape[0])
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(n_distinct + 1))

    block = max(1, int((128 * 2**20) // (8 * n)))

    def distance_blocks():
        """``(lo, hi, D)``: the distances of distinct rows lo..hi-1 to all rows."""
        for lo in range(0, n_distinct, block):
            hi = min(n_distinct, lo + block)
            yield lo, hi, euclidean_distances(X[first[lo:hi]], X)

    blocks = distance_blocks()
    if cache is not None and n_distinct * n * dt.itemsize <= DISTANCES_CACHE_MAX_BYTES:
        whole = cache.get_or_compute("distinct-distances", cache.digest(X), {"route": "euclidean-upcast"},
                                     lambda: np.concatenate([D for _, _, D in distance_blocks()]))
        if whole.shape == (n_distinct, n) and whole.dtype == dt:
            blocks = iter([(0, n_distinct, whole)])

    base = np.empty((n_distinct, n_labels), dtype=dt)
    intra = np.empty(n, dtype=dt)
    for lo, hi, D in blocks:
        # Per distinct row, its distances summed by cluster: one bincount over (row, cluster)
        # pairs, which adds each row's distances in index order as a bincount per row does.
        sums = _sums_by_cluster(D, enc, n_labels)
        # scikit-learn adds the float64 sums into zeros of the distances' dtype: one rounding.
        base[lo:hi] = sums
        rows = np.arange(hi - lo)
        clusters = enc[first[lo:hi]]  # every copy of a row is in one cluster (checked above)
        # A zeroed self-distance adds nothing: each copy's own-cluster sum is the row's sum.
        self_zero = D[rows, first[lo:hi]] == 0
        copies = order[bounds[lo]:bounds[hi]]
        of_row = inverse[copies] - lo
        take = self_zero[of_row]
        intra[copies[take]] = sums[of_row[take], clusters[of_row[take]]]
        for r in np.flatnonzero(~self_zero):
            u = lo + r
            row = D[r]
            mine = order[bounds[u]:bounds[u + 1]]
            c = clusters[r]
            # Each copy's ordered sum over its cluster without its own position: one row per
            # copy, cumsum along the rows (add.accumulate is sequential, as np.bincount's sum).
            w = row[members[c]].astype(np.float64)
            own = np.empty(mine.shape[0])
            step_rows = max(1, int(2**22 // max(w.shape[0], 1)))
            for a in range(0, mine.shape[0], step_rows):
                part = mine[a:a + step_rows]
                block_w = np.broadcast_to(w, (part.shape[0], w.shape[0])).copy()
                block_w[np.arange(part.shape[0]), position[part]] = 0.0
                own[a:a + step_rows] = np.cumsum(block_w, axis=1)[:, -1]
            one = np.zeros(mine.shape[0], dtype=dt)
            one += own
            intra[mine] = one
        del D, sums
    # The rest exactly as scikit-learn's reduction and silhouette_samples, on all rows.
    inter = np.empty(n, dtype=dt)
    step = max(1, int((64 * 2**20) // (max(n_labels, 1) * dt.itemsize)))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        cd = base[inverse[lo:hi]]
        cd[np.arange(hi - lo), enc[lo:hi]] = np.inf
        cd /= freqs
        inter[lo:hi] = cd.min(axis=1)
    return float(np.mean(_finish(intra, inter, enc, freqs)))


# ---------------------------------------------------------------------------------------
# distinct rows with multiplicities (the sweep, and clusterings above 20,000 rows)

#: Rows of the distance matrix computed per BLAS call: bounds the float64 temporaries.
BLOCK_ROWS = 2048


def sklearn_distances_transposed(rows: np.ndarray, float32: bool) -> np.ndarray:
    """Euclidean distances between ``rows`` computed as scikit-learn's silhouette computes them.

    scikit-learn uses ``|x|^2 - 2 x.y + |y|^2`` (float32 input: in float64, rounded to float32
    before the square root). Entry ``[v, u]`` of the returned float64 array is the distance
    from row ``u`` to row ``v``, so that a cluster's summed distances are a contiguous row
    slice. The diagonal holds the distance scikit-learn computes between two *different*
    copies of a row (0 or rounding noise of order 1e-8), which is what duplicates see.
    """
    V = np.ascontiguousarray(rows, dtype=np.float64)
    norms = np.einsum("ij,ij->i", V, V)  # sklearn.utils.extmath.row_norms(V, squared=True)
    n = V.shape[0]
    out = np.empty((n, n), dtype=np.float64)
    for start in range(0, n, BLOCK_ROWS):
        stop = min(n, start + BLOCK_ROWS)
        d = -2 * (V[start:stop] @ V.T)  # d[v, u] = -2 <v, u>
        d += norms[np.newaxis, :]  # + |u|^2 first: scikit-learn adds the row's own norm first
        d += norms[start:stop, np.newaxis]
        if float32:
            d = d.astype(np.float32)
        np.maximum(d, 0, out=d)
        np.sqrt(d, out=d)
        out[start:stop] = d
    return out


def silhouette_dtype(X: np.ndarray):
    # scikit-learn keeps float32 distances for float32 input and uses float64 otherwise.
    return np.float32 if X.dtype == np.float32 else np.float64


def finish_silhouette(intra_sum, own_count, inter, dt) -> np.ndarray:
    """Per-row silhouette from summed intra-cluster distances, in scikit-learn's arithmetic."""
    intra = np.asarray(intra_sum).astype(dt)
    # A one-row cluster has no intra-cluster distances (scikit-learn: 0 / 0, then 0); the
    # running sums can leave rounding residue there instead of an exact 0.
    intra[own_count == 1] = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        intra /= own_count - 1
        s = inter - intra
        s /= np.maximum(intra, inter)
    return np.nan_to_num(s)


def cluster_means(sums, counts, dt):
    """``sum / count`` per cluster in scikit-learn's arithmetic (sums rounded to ``dt`` first);
    inf for clusters with no rows."""
    with np.errstate(divide="ignore", invalid="ignore"):
        means = (np.asarray(sums).astype(dt) / counts).astype(dt, copy=False)
    return np.where(np.asarray(counts) == 0, dt(np.inf), means)


def partition_silhouette(
    dist_t: np.ndarray, inverse: np.ndarray, counts: np.ndarray, labels: np.ndarray, dt
) -> Optional[float]:
    """Mean silhouette of ``labels`` from the distinct-row distances ``dist_t`` (see
    :func:`sklearn_distances_transposed`), in scikit-learn's arithmetic.

    Returns nan when fewer than 2 or more than N - 1 labels are used, and ``None`` when some
    identical rows carry different labels (the caller then uses scikit-learn directly).
    """
    from scipy import sparse

    n_distinct = counts.shape[0]
    first = np.full(n_distinct, -1, dtype=np.intp)
    first[inverse[::-1]] = np.arange(inverse.shape[0])[::-1]
    group_labels = labels[first]
    if not np.array_equal(group_labels[inverse], labels):
        return None
    values, group_labels = np.unique(group_labels, return_inverse=True)
    n_labels = values.shape[0]
    if n_labels < 2 or n_labels > inverse.shape[0] - 1:
        return math.nan
    members = sparse.csr_matrix(
        (counts.astype(np.float64), (group_labels, np.arange(n_distinct))), shape=(n_labels, n_distinct)
    )
    sums = members @ dist_t  # sums[c, u]
    cluster_size = np.bincount(group_labels, weights=counts, minlength=n_labels)
    r = np.arange(n_distinct)
    intra_sum = sums[group_labels, r] - np.diagonal(dist_t)
    means = cluster_means(sums, cluster_size[:, None], dt)
    means[group_labels, r] = np.inf
    inter = means.min(axis=0)
    s = finish_silhouette(intra_sum, cluster_size[group_labels], inter, dt)
    return float(np.mean(s.astype(dt, copy=False)[inverse]))

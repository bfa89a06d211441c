"""The Ward tree: scipy's linkage as scikit-learn builds it, and its cuts.

Shared by the single-k clustering (:mod:`auditoryhum.clustering.algorithms`) and the k sweep
(:mod:`auditoryhum.clustering.k_sweep`): one tree per input, computed on the distinct rows and expanded
(bit-identical to ``pdist`` of all rows), kept in the array cache.
"""

import heapq
from typing import List, Optional, Tuple

import numpy as np


def distinct_rows(X: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows of ``X``, the index of each row's distinct row, and each one's count.

    ``-0.0`` and ``0.0`` count as the same value (they are at distance 0).
    """
    clean = np.ascontiguousarray(X + X.dtype.type(0))
    # Rows compared as raw bytes (one memcmp per comparison): equal bytes = equal values here,
    # since there is no NaN and -0.0 is gone.
    as_bytes = clean.view(np.dtype((np.void, clean.dtype.itemsize * clean.shape[1]))).reshape(-1)
    _, first, inverse, counts = np.unique(as_bytes, return_index=True, return_inverse=True, return_counts=True)
    return clean[first], inverse.reshape(-1).astype(np.intp), counts.astype(np.int64)


def ward_linkage(X: np.ndarray, distinct: Optional[np.ndarray] = None, inverse: Optional[np.ndarray] = None) -> np.ndarray:
    """scipy's Ward linkage matrix of the rows of ``X``: the tree scikit-learn builds.

    scikit-learn's ``AgglomerativeClustering(linkage="ward")`` calls
    ``scipy.cluster.hierarchy.ward(X)``, i.e. ``linkage(pdist(X), "ward")``. With duplicate
    rows, ``pdist`` is evaluated on the ``distinct`` rows only and expanded through
    ``inverse``: pdist's value for a pair depends only on the two rows, so the expanded
    condensed matrix is bit-identical to ``pdist(X)`` (the tests check this).
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist, squareform

    n = X.shape[0]
    if distinct is None or distinct.shape[0] == n:
        condensed = pdist(X, metric="euclidean")
    else:
        square = squareform(pdist(distinct, metric="euclidean"))
        condensed = np.empty(n * (n - 1) // 2, dtype=np.float64)
        pos = 0
        for i in range(n - 1):
            m = n - 1 - i
            # mode="clip": the indices are valid by construction, and the default mode="raise"
            # buffers every call that writes to ``out`` (5x slower at N = 14,400).
            np.take(square[inverse[i]], inverse[i + 1 :], out=condensed[pos : pos + m], mode="clip")
            pos += m
        del square
    Z = linkage(condensed, method="ward")
    del condensed
    return Z


def ward_tree(X: np.ndarray, cache=None) -> np.ndarray:
    """scipy's Ward linkage matrix of the rows: the tree ``AgglomerativeClustering(linkage="ward")`` builds.

    Distances are computed on the distinct rows and expanded (bit-identical to ``pdist(X)``;
    see :func:`ward_linkage`). ``cache`` keeps the tree per input.
    """
    def compute():
        distinct, inverse, _ = distinct_rows(X)
        return ward_linkage(X, distinct, inverse)

    if cache is None:
        return compute()
    return cache.get_or_compute("ward-tree", cache.digest(X), {"method": "ward", "metric": "euclidean"}, compute)


def ward_labels(Z: np.ndarray, k: int, leaf_keys: Optional[np.ndarray] = None) -> np.ndarray:
    """The labels ``AgglomerativeClustering(n_clusters=k, linkage="ward")`` gives for the tree ``Z``.

    The cut undoes the last ``k - 1`` merges and numbers the clusters as scikit-learn does:
    the order of the final heap of cluster roots (largest node id first out).

    ``leaf_keys`` (for a tree of distinct rows, :func:`ward_linkage_counts`) are the node ids
    the leaves have in the tree of all rows (:func:`distinct_leaf_keys`); internal nodes then
    rank above every leaf in merge order, as in that tree. Labels are per leaf of ``Z``.
    """
    children = Z[:, :2].astype(np.intp)
    n = children.shape[0] + 1
    if leaf_keys is None:
        key = np.arange(2 * n - 1, dtype=np.int64)
    else:
        base = int(np.max(leaf_keys)) + 1
        key = np.concatenate([np.asarray(leaf_keys, dtype=np.int64), base + np.arange(n - 1, dtype=np.int64)])
    node_of_key = {int(key[-1]): 2 * n - 2}
    nodes = [-int(key[-1])]
    for _ in range(k - 1):
        these = children[node_of_key[-nodes[0]] - n]
        for child in (int(these[0]), int(these[1])):
            node_of_key[int(key[child])] = child
        heapq.heappush(nodes, -int(key[these[0]]))
        heapq.heappushpop(nodes, -int(key[these[1]]))
    # Leaves of every node as a contiguous range of a depth-first order (iterative, no recursion).
    size = np.ones(2 * n - 1, dtype=np.intp)
    for j in range(n - 1):
        size[n + j] = size[children[j, 0]] + size[children[j, 1]]
    start = np.zeros(2 * n - 1, dtype=np.intp)
    for j in range(n - 2, -1, -1):
        a, b = children[j]
        start[a] = start[n + j]
        start[b] = start[n + j] + size[a]
    order = np.empty(n, dtype=np.intp)
    order[start[:n]] = np.arange(n)
    labels = np.zeros(n, dtype=np.int64)
    for i, node in enumerate(nodes):
        node = node_of_key[-node]
        labels[order[start[node]: start[node] + size[node]]] = i
    return labels


def distinct_leaf_keys(first_row: np.ndarray, counts: np.ndarray, n_rows: int) -> np.ndarray:
    """Node ids of the distinct rows' leaves in the tree of all ``n_rows`` rows, for the heap
    numbering of :func:`ward_labels`.

    A row that occurs once is leaf ``first_row`` there, as in scikit-learn. A repeated row is
    the root of its zero-height merges, an id from ``n_rows`` on; scipy's order of those
    merges depends on its nearest-neighbour chain, so here they are ranked by first
    occurrence: cluster ids can differ from scikit-learn's only in the order of clusters that
    are each one repeated row, never in the partition.
    """
    counts = np.asarray(counts)
    keys = np.asarray(first_row, dtype=np.int64).copy()
    repeated = np.flatnonzero(counts > 1)
    keys[repeated[np.argsort(keys[repeated], kind="stable")]] = n_rows + np.arange(repeated.size)
    return keys


def ward_cut(Z: np.ndarray, k: int) -> np.ndarray:
    """Cluster of every row when the tree ``Z`` is cut into ``k`` clusters, as scikit-learn
    cuts it (undo the last ``k - 1`` merges). Labels are numbered by first appearance."""
    n = Z.shape[0] + 1
    parent = np.arange(2 * n - 1)
    children = Z[: n - k, :2].astype(np.intp)
    for t, (a, b) in enumerate(children):
        parent[a] = n + t
        parent[b] = n + t
    # Pointer doubling up to the cut (the nodes created by the first n - k merges).
    while True:
        up = parent[parent]
        if np.array_equal(up, parent):
            break
        parent = up
    _, labels = np.unique(parent[:n], return_inverse=True)
    first = {}
    return np.array([first.setdefault(x, len(first)) for x in labels.tolist()], dtype=np.int64)


# ---------------------------------------------------------------------------------------
# Ward on distinct rows with multiplicities (any number of rows)

#: Up to this many rows, Ward runs on all rows (scipy's tree, the very one scikit-learn builds:
#: its condensed float64 distances take 8 N^2 bytes while the tree is built, 3.2 GB here).
#: Above, it runs on the distinct rows with their counts (:func:`ward_linkage_counts`).
WARD_ALL_ROWS_MAX = 20_000


def ward_route(n_rows: int, n_distinct: int) -> str:
    """Which Ward tree a clustering of ``n_rows`` rows (``n_distinct`` distinct) builds.

    ``"all-rows"``: scipy's linkage of every row (:func:`ward_tree`), bit-identical to
    scikit-learn's tree and cluster ids; ``"distinct"``: :func:`ward_linkage_counts` on the
    distinct rows, the same partitions (identical rows merge at height 0 before anything else,
    and above that Ward depends only on cluster sizes and centroids) in O(U^2) memory.
    The one place that decides; every Ward caller asks it.
    """
    # Without duplicates (n_distinct == n_rows) both routes build the same tree; above the limit
    # the counts route still saves the condensed matrix's second copy.
    return "all-rows" if n_rows <= WARD_ALL_ROWS_MAX else "distinct"


def ward_counts_memory_bytes(n_distinct: int) -> int:
    """Peak bytes of :func:`ward_linkage_counts`: the square float64 distance matrix, a block of
    rows while it is built (32 MiB) and row-sized temporaries per update."""
    return int(8 * n_distinct * n_distinct + 2 * 32 * 2**20 + 64 * n_distinct)


def _ward_update(d_xi, d_yi, d_xy, size_x, size_y, size_i):
    # The Lance-Williams update for Ward exactly as scipy writes it (same operations in the
    # same order): from the same distances, the same tree, bit for bit.
    t = 1.0 / (size_x + size_y + size_i)
    return np.sqrt((size_i + size_x) * t * d_xi * d_xi + (size_i + size_y) * t * d_yi * d_yi - size_i * t * d_xy * d_xy)


def ward_linkage_counts(rows: np.ndarray, counts: np.ndarray, progress=None) -> np.ndarray:
    """Ward linkage of distinct ``rows``, row ``u`` standing for ``counts[u]`` identical rows.

    Parameters
    ----------
    rows : ndarray of shape (U, n_features)
        Distinct rows (no two equal).
    counts : ndarray of shape (U,)
        Multiplicity of each row (positive integers).

    Returns
    -------
    Z : ndarray of shape (U - 1, 4)
        A linkage matrix in scipy's format (children, height, size with the counts): the tree
        that scipy's ``linkage(pdist(X), "ward")`` builds on the full rows ``X`` above its
        zero-height merges of identical rows. Two groups of identical rows at euclidean
        distance ``d`` start at Ward distance ``sqrt(2 a b / (a + b)) d``; merges follow scipy's
        nearest-neighbour chain with scipy's tie rule (the lowest index, the chain's previous
        element first) and its update formula, then sorted by height (stable) and numbered as
        scipy numbers them. With all counts 1 the merges are scipy's and the heights agree to
        rounding (distances come from a matrix product, not pdist's loop); on small-integer
        rows, where both are exact, the whole matrix is bit-identical.
    """
    rows = np.asarray(rows, dtype=np.float64)
    size = np.asarray(counts, dtype=np.float64).copy()
    n = rows.shape[0]
    if n < 2:
        return np.zeros((0, 4))
    # The square matrix is built a block of rows at a time (pdist + squareform held 12 U^2 bytes,
    # the scaling's outer products 16 U^2 more): the peak is the matrix itself, 8 U^2 bytes.
    # Distances come from one matrix product per block, |x - y|^2 = |x|^2 + |y|^2 - 2 x.y in
    # float64 (pdist's loop without BLAS took 40 of 52 s at U = 10,000 x 768); the rounding this
    # leaves is far below the gaps between distinct label embeddings.
    D = np.empty((n, n))
    block = max(1, (32 * 2**20) // (8 * n))
    weighted = bool(np.any(size != 1))
    norms = np.einsum("ij,ij->i", rows, rows)
    for start in range(0, n, block):
        stop = min(n, start + block)
        part = D[start:stop]
        np.matmul(rows[start:stop], rows.T, out=part)
        part *= -2.0
        part += norms[start:stop, np.newaxis]
        part += norms
        np.maximum(part, 0.0, out=part)
        np.sqrt(part, out=part)
        if weighted:
            a = size[start:stop, np.newaxis]
            D[start:stop] *= np.sqrt(2.0 * a * size / (a + size))
    np.fill_diagonal(D, np.inf)
    merges = np.empty((n - 1, 4))
    chain: List[int] = []
    next_active = 0  # lowest index that may still be active
    active = np.ones(n, dtype=bool)
    merged = np.zeros(n, dtype=bool)
    for k in range(n - 1):
        if not chain:
            while not active[next_active]:
                next_active += 1
            chain.append(next_active)
        while True:
            x = chain[-1]
            row = D[x]
            # Merged-away clusters are marked in the row when it is read (a column write per
            # merge would touch a page per row: most of the time at U = 20,000).
            np.putmask(row, merged, np.inf)
            if len(chain) > 1:
                y = chain[-2]
                current = row[y]
            else:
                y = -1
                current = np.inf
            i = int(np.argmin(row))  # the lowest index among the minima, as scipy's strict '<' scan
            if row[i] < current:
                y = i
            if len(chain) > 1 and y == chain[-2]:
                break
            chain.append(y)
        chain.pop()
        chain.pop()
        if x > y:
            x, y = y, x
        nx, ny = size[x], size[y]
        merges[k] = (x, y, D[x, y], nx + ny)
        d_xy = D[x, y]
        size[x] = 0.0
        size[y] = nx + ny
        active[x] = False
        merged[x] = True
        # The update over every index at once (merged ones and y itself set to inf after): one
        # contiguous row write and one strided column write, no index arrays.
        with np.errstate(invalid="ignore", divide="ignore"):
            new = _ward_update(D[x], D[y], d_xy, nx, ny, size)
        new[merged] = np.inf
        new[y] = np.inf
        D[y] = new
        D[:, y] = new
        if progress is not None:
            progress(k + 1)
    del D
    order = np.argsort(merges[:, 2], kind="mergesort")
    merges = merges[order]
    return _relabel(merges, n)


def _relabel(merges: np.ndarray, n: int) -> np.ndarray:
    """scipy's numbering of a sorted merge list: positions -> node ids (union-find)."""
    node_of = np.arange(n)  # current node id of the cluster held at each position
    Z = merges.copy()
    for i in range(n - 1):
        a, b = node_of[int(merges[i, 0])], node_of[int(merges[i, 1])]
        if a > b:
            a, b = b, a
        Z[i, 0], Z[i, 1] = a, b
        node_of[int(merges[i, 1])] = n + i
        node_of[int(merges[i, 0])] = n + i
    return Z


def ward_tree_counts(rows: np.ndarray, counts: np.ndarray, cache=None) -> np.ndarray:
    """:func:`ward_linkage_counts`, kept in the array cache per (distinct rows, counts)."""
    if cache is None:
        return ward_linkage_counts(rows, counts)
    from auditoryhum.io.array_cache import rows_digest

    key = cache.digest(rows) + rows_digest(np.asarray(counts, dtype=np.int64))
    return cache.get_or_compute("ward-tree-counts", key, {"method": "ward", "metric": "euclidean"},
                                lambda: ward_linkage_counts(rows, counts))

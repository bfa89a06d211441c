"""The Ward tree: scipy's linkage as scikit-learn builds it, and its cuts.

Shared by the single-k clustering (:mod:`auditoryhum.clustering.algorithms`) and the k sweep
(:mod:`auditoryhum.clustering.k_sweep`): one tree per input, computed on the distinct rows and expanded
(bit-identical to ``pdist`` of all rows), kept in the array cache.
"""

import heapq
from typing import Optional, Tuple

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


def ward_labels(Z: np.ndarray, k: int) -> np.ndarray:
    """The labels ``AgglomerativeClustering(n_clusters=k, linkage="ward")`` gives for the tree ``Z``.

    The cut undoes the last ``k - 1`` merges and numbers the clusters as scikit-learn does:
    the order of the final heap of cluster roots (largest node id first out).
    """
    children = Z[:, :2].astype(np.intp)
    n = children.shape[0] + 1
    nodes = [-(int(max(children[-1])) + 1)]
    for _ in range(k - 1):
        these = children[-nodes[0] - n]
        heapq.heappush(nodes, -int(these[0]))
        heapq.heappushpop(nodes, -int(these[1]))
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
        node = -node
        labels[order[start[node]: start[node] + size[node]]] = i
    return labels


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

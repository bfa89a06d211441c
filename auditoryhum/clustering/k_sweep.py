"""The k sweep: the silhouette of every k in one process, the penalised choice of k, the lambda path.

Pure computation on arrays: no files, no flags. The published recipe runs one clustering
process per k; here the work that does not depend on k is done once.

Agglomerative (Ward)
    One tree for every k: scipy's Ward linkage of the rows, which is the tree
    ``AgglomerativeClustering(linkage="ward")`` itself builds (scikit-learn calls
    ``scipy.cluster.hierarchy.ward``), cut the way scikit-learn cuts it (undo the last merges).
    Going from k to k + 1 splits one cluster in two, so each row's summed distance to each
    cluster is updated for the two new clusters only: the smaller child is summed directly,
    the larger one is the parent minus the smaller.
Duplicate rows
    Label embeddings repeat (one row per clip, few distinct labels). Identical rows are at
    distance 0, so Ward merges all of them before anything else, and up to k = D (the number
    of distinct rows) every cluster is a union of whole groups of identical rows; all
    members of a group have the same silhouette term. The sweep then works on the D distinct
    rows with their multiplicities. Above D the cut splits groups of identical rows: a member
    of a split group has silhouette 0 (its nearest other cluster is a copy of itself), every
    other point keeps its value at k = D; this is evaluated exactly too.
Agreement with scikit-learn
    Every silhouette reproduces ``sklearn.metrics.silhouette_score(X, labels)`` on the
    partition the single-k script produces, including its arithmetic: distances as
    scikit-learn's euclidean path computes them (``|x|^2 + |y|^2 - 2 x.y``, which leaves
    rounding noise of ~1e-8 between identical rows), per-cluster sums rounded to the input's
    dtype (float32 stays float32) and the final mean taken over all rows in their order.
Spectral + Ward (``spec_ag``)
    The 2-D spectral embedding is computed once; its Ward tree is cut at every k exactly as
    for ``ag`` (the silhouette is measured in the embedding).
k-means and spectral
    Partitions are not nested, so every k is fitted exactly as the single-k scripts fit it
    (the spectral embedding is computed once; it does not depend on k); the silhouette of
    each partition comes from the distinct-row distance matrix computed once.
"""

import math
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from auditoryhum import recipe
from auditoryhum.clustering.algorithms import (KMEANS_PARAMS, SEED, all_identical, check_scale, identical_warning,
                                               spectral_embedding, validate_rows)
from auditoryhum.clustering.ward import WARD_ALL_ROWS_MAX, distinct_rows, ward_cut, ward_linkage, ward_tree  # noqa: F401  (re-exported)
from auditoryhum.clustering.silhouette import (BLOCK_ROWS, finish_silhouette, partition_silhouette,
                                                silhouette_dtype, sklearn_distances_transposed)
from auditoryhum.errors import ParameterError, UserError
from auditoryhum.errors import MentionError, mention
from auditoryhum.io.artefacts import DECISION_FORMAT, DECISION_VERSION

#: Provisional default of the granularity penalty lambda in ``adjusted(k) = silhouette(k) - lambda * k``.
#: The paper ties lambda to AIC; its exact formula is not published.
DEFAULT_PENALTY = recipe.SWEEP_PENALTY
DEFAULT_K_MIN = recipe.SWEEP_K_MIN
DEFAULT_K_MAX = recipe.SWEEP_K_MAX
ALGORITHMS = ("ag", "kmeans", "spectral", "spec_ag")
_GIB = 2.0**30
#: Below WARD_ALL_ROWS_MAX rows, the Ward sweep takes rows one by one instead of as groups of
#: identical rows when more than this share of them is distinct (a few chance copies). Not
#: silhouette.DISTINCT_MAX_SHARE, which decides a different route of the single-k silhouette.
ROW_BY_ROW_DISTINCT_SHARE = 0.5


@dataclass
class SweepResult:
    """Per-k scores of one sweep (arrays aligned with ``ks``; nan where a score is undefined).

    ``silhouette`` is the mean silhouette (on the ``sample`` when one was drawn);
    ``calinski_harabasz`` and ``davies_bouldin`` follow scikit-learn's definitions and
    conventions (1.0 and 0.0 when every cluster has zero dispersion); ``singletons`` counts
    clusters of exactly one row.
    """

    algorithm: str
    ks: np.ndarray
    silhouette: np.ndarray
    calinski_harabasz: np.ndarray
    davies_bouldin: np.ndarray
    singletons: np.ndarray
    n_rows: int
    n_distinct: int
    sample: Optional[int] = None
    notes: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    #: Rows of the silhouette sample (ag with ``sample``; k-means and spectral draw one per k).
    sample_rows: Optional[np.ndarray] = None
    #: Which Ward tree was built (:func:`~auditoryhum.clustering.ward.ward_route`); None for the others.
    route: Optional[str] = None

    def _replace_algorithm(self, algorithm: str) -> "SweepResult":
        self.algorithm = algorithm
        return self


@dataclass(frozen=True)
class PathStep:
    """One k of the lambda path: ``k`` maximises ``silhouette - lambda * k`` for every lambda in
    ``[lambda_low, lambda_high]`` (``lambda_high`` is inf for the smallest k). A k that only
    ties with its neighbours at one lambda has ``lambda_low == lambda_high``."""

    k: int
    silhouette: float
    lambda_low: float
    lambda_high: float


# ---------------------------------------------------------------------------------------
# the penalty


def adjusted_scores(ks: Sequence[int], silhouette: Sequence[float], penalty: float) -> np.ndarray:
    """``silhouette(k) - penalty * k`` (nan where the silhouette is nan)."""
    ks = np.asarray(ks, dtype=np.float64)
    return np.asarray(silhouette, dtype=np.float64) - float(penalty) * ks


def choose_k(ks: Sequence[int], silhouette: Sequence[float], penalty: float) -> Optional[int]:
    """The k maximising ``silhouette(k) - penalty * k``; ties go to the smallest k.

    Compared in exact rational arithmetic, so the choice agrees with :func:`lambda_path` even
    at a breakpoint. ``None`` when no silhouette is defined.
    """
    lam = Fraction(float(penalty))
    best_k, best = None, None
    for k, s in zip(ks, silhouette):
        if not math.isfinite(s):
            continue
        value = Fraction(float(s)) - lam * int(k)
        if best is None or value > best:
            best_k, best = int(k), value
    return best_k


def lambda_path(ks: Sequence[int], silhouette: Sequence[float]) -> List[PathStep]:
    """Every k that maximises ``silhouette(k) - lambda * k`` for some ``lambda >= 0``.

    These are the points of the upper concave hull of ``(k, silhouette(k))`` from the smallest
    k up to the silhouette maximum. A hull vertex is optimal for lambda between the slopes of
    its two hull edges; a point lying exactly on a hull edge (or tying with the maximum) is
    optimal only at that edge's slope and is listed with a one-point interval. Hull tests use
    exact rational arithmetic on the float values; nan silhouettes are skipped.

    Returns
    -------
    steps : list of PathStep
        Sorted by k ascending (lambda descending).
    """
    points = [(int(k), Fraction(float(s))) for k, s in zip(ks, silhouette) if math.isfinite(s)]
    points.sort()
    if not points:
        return []

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    hull: List[Tuple[int, Fraction]] = []
    for p in points:
        # Pop collinear points too: the hull keeps strict vertices only.
        while len(hull) >= 2 and cross(hull[-2], hull[-1], p) >= 0:
            hull.pop()
        hull.append(p)

    def slope(a, b):
        return (b[1] - a[1]) / (b[0] - a[0])

    steps: List[PathStep] = []
    upper = None  # lambda above which the previous vertex wins; None = +inf
    for i, vertex in enumerate(hull):
        if upper is not None and upper < 0:
            break
        lower = slope(vertex, hull[i + 1]) if i + 1 < len(hull) else None
        low = max(lower, Fraction(0)) if lower is not None else Fraction(0)
        steps.append(PathStep(vertex[0], float(vertex[1]), float(low), math.inf if upper is None else float(upper)))
        if lower is None or lower < 0:
            break
        # Points exactly on the edge to the next vertex tie with both ends at lambda = lower.
        nxt = hull[i + 1]
        for p in points:
            if vertex[0] < p[0] < nxt[0] and cross(vertex, nxt, p) == 0:
                steps.append(PathStep(p[0], float(p[1]), float(lower), float(lower)))
        upper = lower
    steps.sort(key=lambda s: s.k)
    return steps


# ---------------------------------------------------------------------------------------
# memory


def ward_memory_bytes(n_rows: int, n_distinct: int, n_silhouette_rows: int, n_k: int, route: str = "all-rows") -> int:
    """Peak bytes of :func:`sweep_ward` (beyond the input): the larger of the tree phase and the
    silhouette phase (square distance matrix of the distinct rows, its permuted copy, and the
    per-cluster sums).

    The tree phase of the ``all-rows`` route holds the condensed float64 distances of all rows
    twice while scipy builds the tree; the ``distinct`` route holds the square matrix of the
    distinct rows (:func:`~auditoryhum.clustering.ward.ward_counts_memory_bytes`).
    """
    from auditoryhum.clustering.ward import ward_counts_memory_bytes

    if route == "distinct":
        tree = ward_counts_memory_bytes(n_distinct)
    else:
        condensed = 8 * n_rows * (n_rows - 1) // 2
        tree = 2 * condensed
        if n_distinct < n_rows:
            tree = max(tree, condensed + 8 * n_distinct * n_distinct)
    r = n_silhouette_rows
    silhouette = 16 * r * r + 8 * r * (n_k + 1) + 16 * min(r, BLOCK_ROWS) * r + 24 * n_rows
    return int(max(tree, silhouette))


def refit_memory_bytes(n_distinct: int, n_k: int) -> int:
    """Peak bytes of the silhouette part of :func:`sweep_refit`."""
    r = n_distinct
    return int(8 * r * r + 16 * min(r, BLOCK_ROWS) * r + 24 * r * max(n_k, 2))


def largest_ward_rows(budget_bytes: float) -> int:
    """Largest N whose exact Ward tree (two condensed float64 matrices, 8 N^2 bytes) fits."""
    return int(math.isqrt(max(int(budget_bytes), 0) // 8))


def _gib(nbytes: float) -> str:
    return f"{nbytes / _GIB:.1f} GiB"


# ---------------------------------------------------------------------------------------
# distances and distinct rows


# ---------------------------------------------------------------------------------------
# the Ward tree


@dataclass
class _GroupTree:
    """The Ward tree above the merges of identical rows, on the D groups of identical rows.

    Groups are numbered ``0..D-1`` and laid out in ``order`` (a depth-first leaf order), so
    every node covers a contiguous range of positions ``[start, start + size)``; internal
    node ``D + j`` is the j-th merge above the duplicate merges.
    """

    children: np.ndarray  # (D-1, 2) group-level node ids
    start: np.ndarray  # per group-level node, first position
    size: np.ndarray  # per group-level node, number of groups
    order: np.ndarray  # position -> group
    zero_groups: np.ndarray  # per duplicate merge (in merge order), the group it belongs to
    zero_children: np.ndarray  # (N-D, 2) row-level node ids of the duplicate merges


def _layout(mapped: np.ndarray, n_distinct: int):
    """Sizes, first positions and the depth-first leaf order of a group-level tree."""
    n_nodes = 2 * n_distinct - 1
    size = np.ones(n_nodes, dtype=np.intp)
    for j, (a, b) in enumerate(mapped):
        size[n_distinct + j] = size[a] + size[b]
    start = np.zeros(n_nodes, dtype=np.intp)
    for j in range(n_distinct - 2, -1, -1):
        a, b = mapped[j]
        node = n_distinct + j
        start[a] = start[node]
        start[b] = start[node] + size[a]
    order = np.empty(n_distinct, dtype=np.intp)
    order[start[:n_distinct]] = np.arange(n_distinct)
    return size, start, order


def _group_tree(Z: np.ndarray, inverse: np.ndarray, n_distinct: int) -> Optional[_GroupTree]:
    """Split the tree of all rows into the merges of identical rows and the tree above them.

    Returns ``None`` if the first ``N - D`` merges are not exactly the merges of identical
    rows (only possible when distinct rows are at distance 0 in floating point).
    """
    n = inverse.shape[0]
    n_zero = n - n_distinct
    children = Z[:, :2].astype(np.intp)
    node_group = np.full(2 * n - 1, -1, dtype=np.intp)
    node_group[:n] = inverse
    for t in range(n_zero):
        ga, gb = node_group[children[t, 0]], node_group[children[t, 1]]
        if ga != gb or ga < 0:
            return None
        node_group[n + t] = ga
    upper = children[n_zero:]
    below = upper < n + n_zero
    mapped = np.where(below, node_group[np.where(below, upper, 0)], upper - (n + n_zero) + n_distinct)
    size, start, order = _layout(mapped, n_distinct)
    return _GroupTree(mapped, start, size, order, node_group[n : n + n_zero].copy(), children[:n_zero].copy())


def _counts_tree(Z: np.ndarray, n_distinct: int) -> _GroupTree:
    """The group tree of a linkage built on the distinct rows (:func:`ward_linkage_counts`)."""
    mapped = Z[:, :2].astype(np.intp)
    size, start, order = _layout(mapped, n_distinct)
    empty = np.zeros((0, 2), dtype=np.intp)
    return _GroupTree(mapped, start, size, order, np.zeros(0, dtype=np.intp), empty)


def _stratified_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Row indices of a sample of ``size`` rows, each cluster represented in proportion to its
    size (largest remainders), drawn without replacement with a seeded generator; sorted."""
    rng = np.random.default_rng(seed)
    clusters, counts = np.unique(labels, return_counts=True)
    quota = counts * size / labels.shape[0]
    take = np.floor(quota).astype(np.int64)
    short = size - int(take.sum())
    if short > 0:
        take[np.argsort(-(quota - take), kind="stable")[:short]] += 1
    chosen = []
    for c, m in zip(clusters, take):
        if m:
            members = np.flatnonzero(labels == c)
            chosen.append(rng.choice(members, size=int(m), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.intp)


def _check_range(k_min: int, k_max: int, n_rows: int) -> None:
    if n_rows < 3:
        raise UserError(f"the data has {n_rows} rows; a k sweep needs at least 3 (k from 2 to rows - 1)")
    if k_min < 2:
        raise ParameterError("k_min", f"must be at least 2, got {k_min}")
    if k_min > k_max:
        raise MentionError(f"{mention('k_min')} {k_min} is larger than {mention('k_max')} {k_max}; choose k_min <= k_max")
    if k_max > n_rows - 1:
        raise ParameterError("k_max", f"{k_max} is not smaller than the number of rows ({n_rows}); choose k_max <= {n_rows - 1}")


def _check_sample(sample: Optional[int], n_rows: int, k_max: Optional[int] = None) -> Optional[int]:
    """The sample size to use (``None``: all rows), refusing one too small for the k range."""
    if sample is None:
        return None
    if sample < 3:
        raise ParameterError("sample", f"must be at least 3 rows, got {sample}")
    if sample >= n_rows:
        return None
    if k_max is not None and sample <= k_max:
        raise MentionError(
            f"{mention('sample')} {sample} is not larger than {mention('k_max')} {k_max}: the silhouette of k clusters "
            f"needs more than k sampled rows; choose a larger sample or a smaller k_max")
    return sample


def sweep_ward(
    X,
    k_min: int = DEFAULT_K_MIN,
    k_max: int = DEFAULT_K_MAX,
    sample: Optional[int] = None,
    seed: int = SEED,
    memory_budget: Optional[float] = None,
    cache=None,
) -> SweepResult:
    """Silhouette, Calinski-Harabasz, Davies-Bouldin and singleton count of the Ward partition
    at every k in ``[k_min, k_max]``, from one tree.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features), or DistinctRows
        The rows, as the single-k script clusters them (float32 stays float32), or their
        distinct rows with counts (:class:`~auditoryhum.clustering.distinct.DistinctRows`, how
        an input of millions of rows is given).
    k_min, k_max : int
        The range of k; ``2 <= k_min <= k_max <= n_rows - 1``. Above
        :data:`~auditoryhum.clustering.ward.WARD_ALL_ROWS_MAX` rows the tree is built on the
        distinct rows and k stops at their number (a note says so).
    sample : int or None
        Compute the silhouette on a stratified sample of this many rows (each cluster at the
        largest swept k represented in proportion), seeded by ``seed``. Approximate; the other
        scores stay exact. Sweeps with a sample stop at the number of distinct rows.
    memory_budget : float or None
        Bytes the sweep may use; raise :class:`UserError` naming what would fit instead of
        running out of memory.
    cache : ArrayCache, optional
        Where the Ward tree of these rows is kept.

    Returns
    -------
    SweepResult
    """
    from auditoryhum.clustering.distinct import DistinctRows, find_distinct_rows
    from auditoryhum.clustering.ward import ward_route, ward_tree_counts

    if isinstance(X, DistinctRows):
        groups = X
        X = None
        check_scale(groups.rows, "the data", n_rows=groups.n_rows)
    else:
        X = validate_rows(X)
        groups = find_distinct_rows(X)
    n = groups.n_rows
    _check_range(k_min, k_max, n)
    sample = _check_sample(sample, n, k_max)
    dt = silhouette_dtype(groups.rows)
    notes: List[str] = []
    warns: List[str] = []

    distinct, inverse, counts = groups.rows, groups.inverse, groups.counts
    n_distinct = distinct.shape[0]
    route = ward_route(n, n_distinct)
    if sample is not None and k_min > n_distinct:
        raise UserError(
            f"with --sample, k must stay at or below the number of distinct rows ({n_distinct}); --k_min is {k_min}"
        )
    if route == "distinct" and k_min > n_distinct:
        raise UserError(
            f"the {n} rows hold {n_distinct} distinct rows: Ward on the distinct rows has at most {n_distinct} "
            f"clusters; choose k_min <= {n_distinct}")
    if (sample is not None or route == "distinct") and k_max > n_distinct:
        why = "with --sample" if sample is not None else f"above {WARD_ALL_ROWS_MAX} rows (Ward on the distinct rows)"
        notes.append(f"{why} the sweep stops at k = {n_distinct}, the number of distinct rows")
        k_max = n_distinct
    k_hi = min(k_max, n_distinct)
    if memory_budget is not None:
        rows = n_distinct if sample is None else min(sample, n_distinct)
        need = ward_memory_bytes(n, n_distinct, rows, k_hi, route)
        if need > memory_budget:
            tree_need = ward_memory_bytes(n, n_distinct, 0, 0, route)
            if tree_need > memory_budget:
                if route == "distinct":
                    fit = math.isqrt(max(int(memory_budget), 0) // 8)
                    raise UserError(
                        f"Ward clustering of {n_distinct} distinct rows needs about {_gib(tree_need)} (their square "
                        f"float64 distance matrix) but about {_gib(memory_budget)} is available: at most {fit} distinct "
                        f"rows fit; cluster fewer distinct rows (e.g. merge rare labels) or use a machine with more memory")
                raise UserError(
                    f"exact Ward clustering of {n} rows needs about {_gib(tree_need)} (condensed float64 distance "
                    f"matrix, held twice while the tree is built) but about {_gib(memory_budget)} is available: "
                    f"at most {largest_ward_rows(memory_budget)} rows fit; cluster fewer rows or use a machine with "
                    f"more memory (--sample only shrinks the silhouette part)"
                )
            raise UserError(
                f"the silhouette of {rows} distinct rows needs about {_gib(need)} but about "
                f"{_gib(memory_budget)} is available; use --sample M (e.g. --sample "
                f"{max(3, math.isqrt(int(memory_budget) // 16))}) for an approximate silhouette on a stratified sample"
            )

    tree = None
    Z = None
    if route == "all-rows":
        Z = ward_tree(X if X is not None else groups.expand(), cache)
        tree = _group_tree(Z, inverse, n_distinct)
        few_copies = n_distinct < n and n_distinct > ROW_BY_ROW_DISTINCT_SHARE * n
        if tree is None or few_copies:
            if tree is None:
                # Distinct rows at distance 0 (underflow): work row by row, which is always exact.
                notes.append("some distinct rows are at distance 0; the sweep treats every row separately")
            # With few copies (a spectral embedding where two points coincide) rows are taken one
            # by one too: scikit-learn's distance between two copies is rounding noise that, on
            # some BLAS kernels, depends on where the copies sit; row by row it is that very noise.
            X = X if X is not None else groups.expand()
            groups = DistinctRows(X, np.arange(n), np.ones(n, dtype=np.int64), np.arange(n), groups.mask)
            distinct, inverse, counts = groups.rows, groups.inverse, groups.counts
            n_distinct = n
            k_hi = min(k_max, n_distinct)
            tree = _group_tree(Z, inverse, n_distinct)
    else:
        notes.append(f"{n} rows, {n_distinct} distinct: Ward on the distinct rows with their counts (the partitions "
                     f"of Ward on all rows, without its {_gib(16 * (n * (n - 1) // 2))} of distances)")
        tree = _counts_tree(ward_tree_counts(distinct, counts, cache), n_distinct)
    if k_max > n_distinct >= 2:
        notes.append(
            f"only {n_distinct} distinct rows: for k > {n_distinct} the tree splits groups of identical rows, "
            f"whose members then score 0"
        )
    if n_distinct == 1:
        warns.append(identical_warning(n))

    ks = np.arange(k_min, k_max + 1)
    sil = np.full(ks.shape, np.nan)
    ch = np.full(ks.shape, np.nan)
    db = np.full(ks.shape, np.nan)
    singles = np.zeros(ks.shape, dtype=np.int64)

    order = tree.order
    w = counts[order].astype(np.float64)  # multiplicity per position
    rows_f = np.asarray(distinct, dtype=np.float64)[order]
    pos_of_group = np.empty(n_distinct, dtype=np.intp)
    pos_of_group[order] = np.arange(n_distinct)
    point_pos = pos_of_group[inverse]  # position of every row's group

    # Silhouette rows: all positions, or those drawn into the sample (with sample counts).
    if sample is None:
        sample_rows = np.arange(n)
    else:
        cut_labels = np.zeros(n_distinct, dtype=np.intp)
        _replay_cut(tree, n_distinct, k_hi, cut_labels)
        sample_rows = _stratified_sample(cut_labels[point_pos], sample, seed)
    ws_full = np.bincount(point_pos[sample_rows], minlength=n_distinct).astype(np.float64)
    sel = np.flatnonzero(ws_full > 0)
    compressed = np.concatenate([[0], np.cumsum(ws_full > 0)])  # position range -> silhouette-row range
    ws = ws_full[sel]
    sample_point_row = (compressed[:-1])[point_pos[sample_rows]]  # silhouette row of each sampled point

    state = _WardState(
        rows_f=rows_f,
        w=w,
        n_total=float(n),
        dist_t=_distances_in_position_order(distinct, order[sel], dt == np.float32),
        ws=ws,
        compressed=compressed,
        k_cap=k_hi,
        dt=dt,
    )
    s_rows = None
    if n_distinct >= 2:
        for k in range(1, k_hi + 1):
            if k > 1:
                j = n_distinct - k  # the merge undone going from k - 1 to k
                state.split(n_distinct + j, tree.children[j], tree.start, tree.size)
            if k >= k_min:
                i = k - k_min
                s_rows = state.silhouette_rows()
                sil[i] = _mean_or_nan(s_rows, sample_point_row, state.n_nonempty(), len(sample_rows), dt)
                ch[i], db[i] = state.ch_db(k)
                singles[i] = state.singletons
        if k_hi == n_distinct and k_max > n_distinct:
            if s_rows is None or k_min > n_distinct:
                s_rows = state.silhouette_rows()
            _above_distinct(tree, Z, n, n_distinct, k_min, k_max, s_rows, sel, sample_point_row, w, dt, sil, ch, db, singles)
    else:
        _above_distinct(tree, Z, n, 1, k_min, k_max, None, sel, sample_point_row, w, dt, sil, ch, db, singles)
    rows_used = None if sample is None else sample_rows
    result = SweepResult("ag", ks, sil, ch, db, singles, n, n_distinct, sample, notes, warns, rows_used)
    result.route = route
    return result


def _distances_in_position_order(distinct: np.ndarray, groups_in_position_order: np.ndarray, float32: bool) -> np.ndarray:
    """The silhouette distances between the distinct rows, laid out in the tree's position order.

    They are computed with the rows in their input order (first occurrence), the order in which
    the single-k command computes them, and then permuted: each distance has the same bits as
    there on every BLAS kernel (a product computed in another row order can round differently,
    which decided the silhouette of near-identical rows of a spectral embedding).
    """
    g = np.asarray(groups_in_position_order)
    if g.shape[0] == distinct.shape[0] and np.array_equal(g, np.arange(g.shape[0])):
        return sklearn_distances_transposed(distinct, float32)
    used = np.sort(g)
    full = sklearn_distances_transposed(np.asarray(distinct)[used], float32)
    where = np.searchsorted(used, g)
    out = np.take(full, where, axis=0)
    del full
    return np.take(out, where, axis=1)


def _mean_or_nan(s_rows, point_row, n_nonempty, n_points, dt) -> float:
    # scikit-learn defines the silhouette for 2 <= labels <= rows - 1; its mean runs over the
    # rows in their order and in their dtype (float32 accumulates in float32).
    if n_nonempty < 2 or n_nonempty > n_points - 1:
        return math.nan
    return float(np.mean(s_rows.astype(dt, copy=False)[point_row]))


def _replay_cut(tree: _GroupTree, n_distinct: int, k: int, labels_by_position: np.ndarray) -> None:
    """Fill ``labels_by_position`` with the cluster of every position at k clusters."""
    labels_by_position[:] = 0
    for kk in range(2, k + 1):
        j = n_distinct - kk
        b = tree.children[j][1]
        labels_by_position[tree.start[b] : tree.start[b] + tree.size[b]] = kk - 1


def _above_distinct(tree, Z, n, n_distinct, k_min, k_max, s_rows, sel, point_row, w, dt, sil, ch, db, singles):
    """Scores for k above the number of distinct rows (every cluster holds identical rows).

    Undoing the last merges of identical rows splits their groups; a member of a split group
    has silhouette 0, every other row keeps its value at k = D. Calinski-Harabasz is 1.0 and
    Davies-Bouldin 0.0 (scikit-learn's values when no cluster has any dispersion).
    """
    n_zero = n - n_distinct
    pos_of_group = np.empty(n_distinct, dtype=np.intp)
    pos_of_group[tree.order] = np.arange(n_distinct)
    split = np.zeros(n_distinct, dtype=bool)  # by position
    singletons = int(np.count_nonzero(w == 1))
    sizes = np.concatenate([np.ones(n), Z[:, 3]])
    row_of_position = np.full(n_distinct, -1, dtype=np.intp)
    row_of_position[sel] = np.arange(sel.size)
    for k in range(n_distinct + 1, k_max + 1):
        t = n_zero - (k - n_distinct)  # the duplicate merge undone going from k - 1 to k
        split[pos_of_group[tree.zero_groups[t]]] = True
        a, b = tree.zero_children[t]
        singletons += int(sizes[a] == 1) + int(sizes[b] == 1)
        if k < k_min:
            continue
        i = k - k_min
        singles[i] = singletons
        if n_distinct < 2:
            continue  # identical rows only: nothing is defined
        values = np.where(split[sel], 0.0, s_rows).astype(dt)
        sil[i] = float(np.mean(values[point_row]))
        ch[i] = 1.0
        db[i] = 0.0


class _WardState:
    """Per-cluster sums while the tree is split from 1 cluster to ``k_cap`` clusters.

    Cluster slots: the larger child keeps its parent's slot, the smaller gets a new one.
    Silhouette rows are the distinct rows (those in the sample with ``--sample``).
    """

    def __init__(self, rows_f, w, n_total, dist_t, ws, compressed, k_cap, dt):
        self.rows_f = rows_f
        self.w = w
        self.n_total = n_total
        self.dist_t = dist_t
        self.eps = np.diagonal(dist_t).copy()  # distance between two copies of a row
        self.ws = ws
        self.compressed = compressed
        self.dt = dt
        r = ws.shape[0]
        dim = rows_f.shape[1]
        self.k = 1
        self.sums = np.zeros((k_cap, r))  # sums[c, u]: summed distance from row u to cluster c
        self.sums[0] = ws @ dist_t
        self.n_sil = np.zeros(k_cap)
        self.n_sil[0] = ws.sum()
        self.own = np.zeros(r, dtype=np.intp)
        self.inter = np.full(r, np.inf, dtype=dt)  # mean distance to the nearest other cluster
        self.inter_slot = np.full(r, -1, dtype=np.intp)
        self.slot_of_node = {}
        self.count = np.zeros(k_cap)
        self.centroid = np.zeros((k_cap, dim))
        self.within = np.zeros(k_cap)  # within-cluster sum of squares
        self.spread = np.zeros(k_cap)  # mean distance to the centroid (Davies-Bouldin)
        self.between = np.zeros(k_cap)  # count * |centroid - mean|^2 (Calinski-Harabasz)
        self.centroid_dist = np.zeros((k_cap, k_cap))
        self.mean = (w @ rows_f) / w.sum()
        self._describe(0, 0, rows_f.shape[0])
        self.singletons = int(self.count[0] == 1)

    def _describe(self, slot, lo, hi):
        w = self.w[lo:hi]
        n = w.sum()
        self.count[slot] = n
        if hi - lo == 1:
            # One distinct row: its copies are the centroid exactly, with no dispersion.
            c = self.rows_f[lo]
            self.within[slot] = 0.0
            self.spread[slot] = 0.0
        else:
            block = self.rows_f[lo:hi]
            c = (w @ block) / n
            diff = block - c
            sq = np.einsum("ij,ij->i", diff, diff)
            self.within[slot] = w @ sq
            self.spread[slot] = (w @ np.sqrt(sq)) / n
        self.centroid[slot] = c
        g = c - self.mean
        self.between[slot] = n * (g @ g)

    def _mean_to(self, slot):
        n = self.n_sil[slot]
        if n == 0:
            return np.full(self.ws.shape[0], np.inf, dtype=self.dt)
        return (self.sums[slot].astype(self.dt) / np.float64(n)).astype(self.dt, copy=False)

    def split(self, node, children, start, size):
        parent = self.slot_of_node.get(node, 0)
        a, b = children
        ra = (start[a], start[a] + size[a])
        rb = (start[b], start[b] + size[b])
        ca = (self.compressed[ra[0]], self.compressed[ra[1]])
        cb = (self.compressed[rb[0]], self.compressed[rb[1]])
        # The child with fewer silhouette rows is summed directly; the other is the remainder.
        if ca[1] - ca[0] > cb[1] - cb[0]:
            a, b, ra, rb, ca, cb = b, a, rb, ra, cb, ca
        new = self.k
        self.slot_of_node[a] = new
        self.slot_of_node[b] = parent
        lo, hi = ca
        # Both children are summed directly: the parent's sum minus the smaller child's loses
        # every digit of a small distance next to a huge one (one row scaled by 1e17 gave
        # silhouettes outside [-1, 1]).
        self.sums[new] = self.ws[lo:hi] @ self.dist_t[lo:hi]
        self.sums[parent] = self.ws[cb[0]:cb[1]] @ self.dist_t[cb[0]:cb[1]]
        self.n_sil[new] = self.ws[lo:hi].sum()
        self.n_sil[parent] = self.ws[cb[0]:cb[1]].sum()
        self.own[lo:hi] = new

        # Nearest other cluster: rows outside the parent see two new candidates (one of them
        # no farther than the parent was); rows inside see their sibling.
        m_parent = self._mean_to(parent)
        m_new = self._mean_to(new)
        best_new = m_new < m_parent
        cand = np.where(best_new, m_new, m_parent)
        cand_slot = np.where(best_new, new, parent)
        inside = np.zeros(self.ws.shape[0], dtype=bool)
        inside[min(ca[0], cb[0]) : max(ca[1], cb[1])] = True
        was_parent = (self.inter_slot == parent) & ~inside
        improve = (cand < self.inter) & ~inside
        upd = was_parent | improve
        self.inter[upd] = cand[upd]
        self.inter_slot[upd] = cand_slot[upd]
        small_rows = slice(lo, hi)
        big_rows = slice(cb[0], cb[1])
        for rows, sib, m_sib in ((small_rows, parent, m_parent), (big_rows, new, m_new)):
            better = m_sib[rows] < self.inter[rows]
            idx = np.flatnonzero(better) + rows.start
            self.inter[idx] = m_sib[idx]
            self.inter_slot[idx] = sib

        # Diagnostics: both children described directly from their rows.
        was_single = int(self.count[parent] == 1)
        self._describe(new, *ra)
        self._describe(parent, *rb)
        self.singletons += int(self.count[new] == 1) + int(self.count[parent] == 1) - was_single
        k1 = self.k + 1
        for slot in (new, parent):
            d = np.sqrt(((self.centroid[:k1] - self.centroid[slot]) ** 2).sum(axis=1))
            self.centroid_dist[slot, :k1] = d
            self.centroid_dist[:k1, slot] = d
        self.k = k1

    def n_nonempty(self) -> int:
        return int(np.count_nonzero(self.n_sil[: self.k] > 0))

    def silhouette_rows(self) -> np.ndarray:
        """Silhouette of every silhouette row at the current k, in scikit-learn's arithmetic."""
        r = np.arange(self.ws.shape[0])
        intra_sum = self.sums[self.own, r] - self.eps  # a row is not its own neighbour
        own_count = self.n_sil[self.own]
        return finish_silhouette(intra_sum, own_count, self.inter, self.dt)

    def ch_db(self, k) -> Tuple[float, float]:
        within = self.within[:k].sum()
        between = self.between[:k].sum()
        ch = 1.0 if within == 0.0 else float(between * (self.n_total - k) / (within * (k - 1.0)))
        spread = self.spread[:k]
        cd = self.centroid_dist[:k, :k].copy()
        # np.allclose(x, 0) as scikit-learn tests it (atol 1e-8), without its temporaries.
        if np.all(np.abs(spread) <= 1e-8) or np.all(np.abs(cd) <= 1e-8):
            return ch, 0.0
        cd[cd == 0] = np.inf
        combined = spread[:, None] + spread[None, :]
        return ch, float(np.mean(np.max(combined / cd, axis=1)))


# ---------------------------------------------------------------------------------------
# k-means and spectral: one fit per k


def sweep_refit(
    algorithm: str,
    X: np.ndarray,
    k_min: int = DEFAULT_K_MIN,
    k_max: int = DEFAULT_K_MAX,
    sample: Optional[int] = None,
    seed: int = SEED,
    memory_budget: Optional[float] = None,
    progress: Optional[Callable[[Iterable[int]], Iterable[int]]] = None,
    cache=None,
) -> SweepResult:
    """Scores of k-means or spectral clustering at every k, each k fitted as the single-k
    script fits it (``KMeans(init="k-means++", max_iter=300, random_state=100)`` on the rows,
    or on the 2-D spectral embedding, which is computed once).

    The silhouette is measured in the clustered space (the embedding for spectral). With
    ``sample``, it is computed by scikit-learn on a stratified sample of each k's clusters
    (approximate). ``progress`` wraps the loop over k (e.g. a progress bar).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    from auditoryhum.clustering.distinct import DistinctRows

    if algorithm not in ("kmeans", "spectral"):
        raise ValueError(f"sweep_refit handles kmeans and spectral, not {algorithm!r}")
    if isinstance(X, DistinctRows):
        if algorithm != "kmeans":
            raise ValueError("the spectral sweep needs every row")
        return _sweep_kmeans_weighted(X, k_min, k_max, memory_budget, progress, cache)
    X = validate_rows(X)
    n = X.shape[0]
    _check_range(k_min, k_max, n)
    sample = _check_sample(sample, n, k_max)
    notes: List[str] = []
    warns: List[str] = []
    if all_identical(X):
        # Nothing to cluster: no fit can give a meaningful score (the spectral embedding of
        # identical rows is arbitrary and once gave a silhouette of 0.77).
        ks = np.arange(k_min, k_max + 1)
        nan = np.full(ks.shape, np.nan)
        return SweepResult(algorithm, ks, nan, nan.copy(), nan.copy(), np.zeros(ks.shape, dtype=np.int64), n, 1,
                           sample, notes, [identical_warning(n)])
    if algorithm == "spectral":
        space = spectral_embedding(X, notes, cache)
    else:
        space = X
    dt = silhouette_dtype(space)
    distinct, inverse, counts = distinct_rows(space)
    n_distinct = distinct.shape[0]
    n_k = k_max - k_min + 1
    if sample is None and memory_budget is not None:
        need = refit_memory_bytes(n_distinct, n_k)
        if need > memory_budget:
            raise UserError(
                f"the silhouette of {n_distinct} distinct rows needs about {_gib(need)} but about "
                f"{_gib(memory_budget)} is available (at most {math.isqrt(int(memory_budget) // 8)} distinct rows "
                f"fit); use --sample M (e.g. --sample {max(3, math.isqrt(int(memory_budget) // 16))}) for an "
                f"approximate silhouette on a stratified sample"
            )
    dist_t = sklearn_distances_transposed(distinct, dt == np.float32) if sample is None else None

    ks = np.arange(k_min, k_max + 1)
    sil = np.full(ks.shape, np.nan)
    ch = np.full(ks.shape, np.nan)
    db = np.full(ks.shape, np.nan)
    singles = np.zeros(ks.shape, dtype=np.int64)
    fewer: List[int] = []
    fallback = 0
    loop = progress(range(k_min, k_max + 1)) if progress else range(k_min, k_max + 1)
    for k in loop:
        with warnings.catch_warnings():
            # Duplicate rows make k-means find fewer clusters than asked: reported once below.
            warnings.simplefilter("ignore")
            labels = KMeans(n_clusters=k, **KMEANS_PARAMS).fit_predict(space).astype(np.int64)
        i = k - k_min
        used, sizes = np.unique(labels, return_counts=True)
        if used.size < k:
            fewer.append(k)
        singles[i] = int(np.count_nonzero(sizes == 1))
        if used.size < 2:
            continue
        if sample is not None:
            rows = _stratified_sample(labels, sample, seed)
            if np.unique(labels[rows]).size >= 2:
                sil[i] = float(silhouette_score(space[rows], labels[rows]))
        else:
            value = partition_silhouette(dist_t, inverse, counts, labels, dt)
            if value is None:
                fallback += 1
                value = float(silhouette_score(space, labels))
            sil[i] = value
        ch[i] = float(calinski_harabasz_score(space, labels))
        db[i] = float(davies_bouldin_score(space, labels))
    if fewer:
        warns.append(_fewer_clusters_warning(fewer))
    if fallback:
        notes.append(f"{fallback} partition(s) split identical rows; their silhouette was computed by scikit-learn directly")
    return SweepResult(algorithm, ks, sil, ch, db, singles, n, n_distinct, sample, notes, warns)


def _fewer_clusters_warning(fewer: Sequence[int]) -> str:
    return (f"k-means found fewer distinct clusters than asked for {len(fewer)} value(s) of k "
            f"(from k = {fewer[0]}; duplicate rows); their scores are those of the clusters found")


def weighted_ch_db(rows: np.ndarray, counts: np.ndarray, labels: np.ndarray, n_rows: int) -> Tuple[float, float]:
    """Calinski-Harabasz and Davies-Bouldin of ``labels`` (one per distinct row) over all rows,
    each distinct row standing for ``counts`` copies; scikit-learn's definitions and conventions."""
    rows = np.asarray(rows, dtype=np.float64)
    w = np.asarray(counts, dtype=np.float64)
    values, labels = np.unique(labels, return_inverse=True)
    k = values.shape[0]
    size = np.bincount(labels, weights=w, minlength=k)
    centroid = np.zeros((k, rows.shape[1]))
    np.add.at(centroid, labels, rows * w[:, None])
    centroid /= size[:, None]
    mean = (w @ rows) / w.sum()
    diff = rows - centroid[labels]
    sq = np.einsum("ij,ij->i", diff, diff)
    within = float(w @ sq)
    between = float(size @ ((centroid - mean) ** 2).sum(axis=1))
    ch = 1.0 if within == 0.0 else between * (n_rows - k) / (within * (k - 1.0))
    spread = np.bincount(labels, weights=w * np.sqrt(sq), minlength=k) / size
    cd = np.sqrt(((centroid[:, None, :] - centroid[None, :, :]) ** 2).sum(axis=2))
    if np.all(np.abs(spread) <= 1e-8) or np.all(np.abs(cd) <= 1e-8):
        return float(ch), 0.0
    cd[cd == 0] = np.inf
    return float(ch), float(np.mean(np.max((spread[:, None] + spread[None, :]) / cd, axis=1)))


def _sweep_kmeans_weighted(groups, k_min, k_max, memory_budget, progress, cache) -> SweepResult:
    """The k-means sweep on distinct rows with their counts as sample weights (large inputs)."""
    from auditoryhum.clustering.algorithms import WEIGHTED_KMEANS_NOTE, kmeans

    n, n_distinct = groups.n_rows, groups.n_distinct
    _check_range(k_min, k_max, n)
    notes: List[str] = [WEIGHTED_KMEANS_NOTE]
    if k_max > n_distinct:
        if k_min > n_distinct:
            raise UserError(f"the {n} rows hold {n_distinct} distinct rows; k-means on them finds at most "
                            f"{n_distinct} clusters: choose k_min <= {n_distinct}")
        notes.append(f"the sweep stops at k = {n_distinct}, the number of distinct rows")
        k_max = n_distinct
    dt = silhouette_dtype(groups.rows)
    if memory_budget is not None:
        need = refit_memory_bytes(n_distinct, k_max - k_min + 1)
        if need > memory_budget:
            raise UserError(f"the silhouette of {n_distinct} distinct rows needs about {_gib(need)} but about "
                            f"{_gib(memory_budget)} is available; cluster fewer distinct rows")
    dist_t = sklearn_distances_transposed(groups.rows, dt == np.float32)
    ks = np.arange(k_min, k_max + 1)
    sil = np.full(ks.shape, np.nan)
    ch = np.full(ks.shape, np.nan)
    db = np.full(ks.shape, np.nan)
    singles = np.zeros(ks.shape, dtype=np.int64)
    fewer: List[int] = []
    loop = progress(range(k_min, k_max + 1)) if progress else range(k_min, k_max + 1)
    for k in loop:
        fitted = kmeans(groups, k, cache)
        labels_d = np.zeros(n_distinct, dtype=np.int64)
        labels_d[groups.inverse] = fitted.labels
        i = k - k_min
        used, dense = np.unique(labels_d, return_inverse=True)
        singles[i] = int(np.count_nonzero(np.bincount(dense, weights=groups.counts) == 1))
        if used.size < k:
            fewer.append(k)
        if used.size < 2:
            continue
        sil[i] = partition_silhouette(dist_t, groups.inverse, groups.counts, fitted.labels, dt)
        ch[i], db[i] = weighted_ch_db(groups.rows, groups.counts, labels_d, n)
    warns: List[str] = []
    if fewer:
        warns.append(_fewer_clusters_warning(fewer))
    return SweepResult("kmeans", ks, sil, ch, db, singles, n, n_distinct, None, notes, warns)


def sweep(
    algorithm: str,
    X: np.ndarray,
    k_min: int = DEFAULT_K_MIN,
    k_max: int = DEFAULT_K_MAX,
    sample: Optional[int] = None,
    seed: int = SEED,
    memory_budget: Optional[float] = None,
    progress=None,
    cache=None,
) -> SweepResult:
    """Dispatch: :func:`sweep_ward` for ``ag`` (and for ``spec_ag`` on the 2-D spectral
    embedding), :func:`sweep_refit` for ``kmeans``/``spectral``."""
    from auditoryhum.clustering.algorithms import check_neighbour_graph_rows
    from auditoryhum.clustering.distinct import DistinctRows

    if algorithm not in ALGORITHMS:
        raise ParameterError("algorithm", f"must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    if isinstance(X, DistinctRows) and algorithm in ("spectral", "spec_ag"):
        check_neighbour_graph_rows(X.n_rows, algorithm)
        X = X.expand()
    if algorithm == "ag":
        return sweep_ward(X, k_min, k_max, sample=sample, seed=seed, memory_budget=memory_budget, cache=cache)
    if algorithm == "spec_ag":
        X = validate_rows(X)
        _check_range(k_min, k_max, X.shape[0])
        _check_sample(sample, X.shape[0], k_max)
        if all_identical(X):
            return sweep_refit("spectral", X, k_min, k_max, sample=sample, seed=seed)._replace_algorithm("spec_ag")
        notes: List[str] = []
        embedding = np.ascontiguousarray(spectral_embedding(X, notes, cache))
        result = sweep_ward(embedding, k_min, k_max, sample=sample, seed=seed, memory_budget=memory_budget, cache=cache)
        result.algorithm = "spec_ag"
        result.notes[:0] = notes
        return result
    return sweep_refit(algorithm, X, k_min, k_max, sample=sample, seed=seed, memory_budget=memory_budget,
                       progress=progress, cache=cache)


# ---------------------------------------------------------------------------------------
# the decision beside the sweep table (the file itself: auditoryhum.io.artefacts.write_decision)

#: What the decision file says about how k was chosen.
DECISION_RULE = ("chosen_k maximises adjusted(k) = silhouette(k) - penalty * k over the swept k, compared in exact "
                 "rational arithmetic on the float values; ties go to the smallest k")


def _finite_or_none(x) -> Optional[float]:
    x = float(x)
    return x if math.isfinite(x) else None


def decision_document(result: SweepResult, penalty: float, chosen: Optional[int], path: Sequence[PathStep],
                      table_sha256: str, table_name: str, n_no_label: int = 0) -> dict:
    """The JSON document recording a sweep's decision (its format:
    :func:`auditoryhum.io.artefacts.write_decision`)."""
    adjusted = adjusted_scores(result.ks, result.silhouette, penalty)
    best_k = best = None
    if np.any(np.isfinite(result.silhouette)):
        i = int(np.nanargmax(result.silhouette))
        best_k, best = int(result.ks[i]), float(result.silhouette[i])
    chosen_sil = chosen_adj = None
    if chosen is not None:
        i = int(np.flatnonzero(result.ks == chosen)[0])
        chosen_sil, chosen_adj = float(result.silhouette[i]), float(adjusted[i])
    return {
        "format": DECISION_FORMAT,
        "version": DECISION_VERSION,
        "sweep_csv": table_name,
        "sweep_csv_sha256": table_sha256,
        "algorithm": result.algorithm,
        "k_min": int(result.ks[0]),
        "k_max": int(result.ks[-1]),
        "n_rows": int(result.n_rows) + int(n_no_label),
        "n_no_label": int(n_no_label),
        "n_distinct": int(result.n_distinct),
        "sample": None if result.sample is None else int(result.sample),
        "penalty": float(penalty),
        "rule": DECISION_RULE,
        "chosen_k": chosen,
        "chosen_silhouette": chosen_sil,
        "chosen_adjusted": chosen_adj,
        "silhouette_max_k": best_k,
        "silhouette_max": best,
        "lambda_path": [
            {"k": int(s.k), "silhouette": float(s.silhouette), "lambda_low": float(s.lambda_low),
             "lambda_high": _finite_or_none(s.lambda_high)}
            for s in path
        ],
    }

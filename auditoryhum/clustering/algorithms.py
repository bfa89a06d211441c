"""The five clustering algorithms with the paper's hyper-parameters, and the silhouette.

Pure computation on arrays: no files, no flags. Each algorithm returns a
:class:`ClusterResult` holding the labels and the space in which the silhouette is measured
(the raw rows, or the 2-D spectral embedding for ``spectral`` and ``spec_ag``).

Work that does not depend on k (the t-SNE layout, the spectral embedding, the Ward tree) can
come from an :class:`auditoryhum.io.array_cache.ArrayCache` (``cache=``); the labels,
silhouettes and layouts are the same bits with and without it.

Rows without a label
    A clip whose kept label is empty has a NaN row in the sentence embeddings. Such rows are
    left out of clustering, the silhouette and the sweep (:func:`split_missing`) and get the
    cluster id :data:`NO_LABEL_CLUSTER` (-2) in the written ids; HDBSCAN noise stays -1.
Degenerate input
    Rows whose squared distances overflow the input's float type (e.g. float32 rows near
    1e30) are refused in one line (:func:`check_scale`); when all rows are identical there is
    nothing to cluster: the labels are still written but the silhouette is undefined (nan),
    said in one warning, for every algorithm and the sweep alike (:func:`all_identical`).
"""

import warnings
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from auditoryhum.defaults import OPENTSNE_FFT_MIN_ROWS, OPENTSNE_OPTIONS, TSNE_METHODS
from auditoryhum.errors import ParameterError, UserError
from auditoryhum.recipe import HDBSCAN_PARAMS, KMEANS_PARAMS, SEED, SPECTRAL_EMBEDDING_PARAMS, TSNE_PARAMS  # noqa: F401
from auditoryhum.validation import one_of

#: Cluster id written for a row without a label (an all-NaN row: a clip whose kept label is
#: empty). Never a real cluster, never noise (HDBSCAN's -1).
from auditoryhum.io.artefacts import NO_LABEL_CLUSTER  # noqa: E402  (the cluster-id format's reserved id)
from auditoryhum.clustering.ward import ward_labels, ward_tree  # noqa: E402,F401  (re-exported)

#: openTSNE's run closest to the published one (``tsne_2d(..., method="opentsne")``): the recipe's
#: t-SNE settings in openTSNE's names, with the toolkit's openTSNE options
#: (:data:`auditoryhum.defaults.OPENTSNE_OPTIONS`); the negative gradient is chosen per input.
OPENTSNE_PARAMS = {
    "n_components": TSNE_PARAMS["n_components"],
    "perplexity": TSNE_PARAMS["perplexity"],
    "early_exaggeration": TSNE_PARAMS["early_exaggeration"],
    "n_iter": TSNE_PARAMS["max_iter"] - OPENTSNE_OPTIONS["early_exaggeration_iter"],
    "learning_rate": TSNE_PARAMS["learning_rate"],
    "initialization": TSNE_PARAMS["init"],
    "random_state": TSNE_PARAMS["random_state"],
    "metric": TSNE_PARAMS["metric"],
    **OPENTSNE_OPTIONS,
}

ALGORITHM_NAMES = {
    "kmeans": "k-means",
    "ag": "Agglomerative (Ward)",
    "spectral": "Spectral",
    "spec_ag": "Spectral + Ward",
    "hdbscan": "HDBSCAN",
}
#: Algorithms that take a number of clusters k.
K_ALGORITHMS = ("kmeans", "ag", "spectral", "spec_ag")


@dataclass
class ClusterResult:
    """Labels of one clustering, the data its silhouette is computed on, and notes for the user."""

    algorithm: str
    labels: np.ndarray
    space: np.ndarray
    requested_k: Optional[int] = None
    warnings: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def n_clusters(self) -> int:
        """Clusters found, not counting HDBSCAN noise (-1) or rows without a label (-2)."""
        return int(np.unique(self.labels[self.labels >= 0]).size)

    @property
    def n_noise(self) -> int:
        """HDBSCAN noise points (id -1)."""
        return int(np.count_nonzero(self.labels == -1))


# ---------------------------------------------------------------------------------------
# checking the rows


def validate_rows(X: np.ndarray, source: str = "the data") -> np.ndarray:
    """Check a feature matrix is 2-D, finite, not overflowing, and has at least 2 rows; return it as float."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise UserError(f"{source} must be a 2-D array (one row per clip); got shape {X.shape}")
    if X.shape[0] < 2:
        raise UserError(f"{source} has {X.shape[0]} row(s); clustering needs at least 2")
    if X.shape[1] < 1:
        raise UserError(f"{source} has rows of length 0")
    if not np.all(np.isfinite(X)):
        raise UserError(f"{source} holds NaN or inf values; clustering needs finite rows")
    X = X if X.dtype.kind == "f" else X.astype(np.float64)
    check_scale(X, source)
    return X


def check_scale(X: np.ndarray, source: str = "the data", n_rows: Optional[int] = None) -> None:
    """Refuse rows whose squared distances would overflow their float type.

    Every algorithm and the silhouette work with squared euclidean distances (k-means and the
    silhouette in the input's precision). Two rows of squared norm ``s`` are at squared distance
    at most ``4 s``, and sums over clusters add up to ``N`` of them; beyond the type's largest
    value the results are inf/NaN and every score meaningless (float32 rows near 1e30 gave a
    silhouette of 0.0 and a "chosen k").
    """
    dt = np.float32 if X.dtype == np.float32 else np.float64
    if not X.size:
        return
    n_rows = X.shape[0] if n_rows is None else n_rows
    limit = float(np.finfo(dt).max)
    with np.errstate(over="ignore", invalid="ignore"):
        big = max(float(np.max(X)), -float(np.min(X)))
        # A squared norm is at most D * big**2: when even that bound is safe (as for any
        # embedding of moderate scale), the exact norms (a float64 copy of X) are not needed.
        if np.isfinite(big) and 4.0 * X.shape[1] * big * big * n_rows <= limit:
            return
        wide = X.astype(np.float64)
        squared = float(np.max(np.einsum("ij,ij->i", wide, wide)))
    if not np.isfinite(squared) or 4.0 * squared * n_rows > limit:
        raise UserError(
            f"{source} holds values up to {big:.3g}: squared distances between its rows overflow {np.dtype(dt).name} "
            f"(largest {limit:.3g}), so no clustering score would be meaningful; rescale the rows "
            f"(e.g. divide by {big:.3g}) and cluster again"
        )


def split_missing(X: np.ndarray, source: str = "the data") -> Tuple[np.ndarray, np.ndarray]:
    """The rows that have a label, and the mask of them.

    A row that is NaN throughout stands for a clip without a label (``features_st`` writes one
    for an empty kept label); it is left out. A row with only some NaN or any inf is damage,
    not a missing label: :class:`UserError` listing the rows (1-based).

    Returns
    -------
    kept : ndarray of shape (n_kept, n_features)
    mask : ndarray of bool, shape (n_rows,)
        True for the kept rows.
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.dtype.kind != "f":
        return X, np.ones(X.shape[0] if X.ndim else 0, dtype=bool)
    finite_rows = np.all(np.isfinite(X), axis=1)
    if finite_rows.all():
        return X, finite_rows
    # Only the rows that are not finite can be missing labels or damage.
    missing = np.zeros(X.shape[0], dtype=bool)
    suspect = np.flatnonzero(~finite_rows)
    if X.shape[1]:
        missing[suspect] = np.all(np.isnan(X[suspect]), axis=1)
    damaged = np.flatnonzero(~finite_rows & ~missing)
    if damaged.size:
        shown = ", ".join(str(i + 1) for i in damaged[:10]) + (" ..." if damaged.size > 10 else "")
        raise UserError(
            f"{source}: {damaged.size} of {X.shape[0]} rows hold NaN or inf (rows {shown}, 1-based), "
            f"usually clips that failed to decode; fix or remove those clips and recompute the features"
        )
    if not missing.any():
        return X, ~missing
    return X[~missing], ~missing


def read_input(cluster_npy: str):
    """The rows of a clustering input file, as :func:`~auditoryhum.clustering.rows.cluster_rows`
    takes them.

    Up to :data:`~auditoryhum.clustering.ward.WARD_ALL_ROWS_MAX` rows: the array (all rows;
    integer rows as float64). Above: its
    :class:`~auditoryhum.clustering.distinct.DistinctRows`, read block by block (a 2,000,000-row
    file is never held whole, nor copied to float64). Bad files give one line naming the file.
    """
    from auditoryhum.clustering.distinct import read_distinct_rows
    from auditoryhum.io.artefacts import load_matrix, matrix_header

    (n, _), _, _, _ = matrix_header(cluster_npy)
    if n > _ward_all_rows_max():
        return read_distinct_rows(cluster_npy)
    return load_matrix(cluster_npy, require_finite=False)


def n_rows_of(X) -> int:
    """Rows of an array or of :class:`~auditoryhum.clustering.distinct.DistinctRows`."""
    from auditoryhum.clustering.distinct import DistinctRows

    return X.n_rows if isinstance(X, DistinctRows) else int(np.asarray(X).shape[0])


def missing_note(n_missing: int, n_rows: int) -> str:
    """The one note about rows without a label."""
    return (f"{n_missing} of {n_rows} rows are NaN (clips without a label): left out of clustering and the "
            f"silhouette, cluster id {NO_LABEL_CLUSTER}")


def expand_labels(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Labels of the kept rows placed back among all rows, :data:`NO_LABEL_CLUSTER` elsewhere."""
    out = np.full(mask.shape[0], NO_LABEL_CLUSTER, dtype=np.int64)
    out[mask] = labels
    return out


def all_identical(X: np.ndarray) -> bool:
    """True when every row equals the first (nothing to cluster: the silhouette is undefined)."""
    return bool(X.shape[0] > 0 and np.all(X == X[0]))


def identical_warning(n_rows: int) -> str:
    """The one warning for all-identical rows, the same for every algorithm and the sweep."""
    return f"all {n_rows} rows are identical: there is nothing to cluster and the silhouette is undefined (nan)"


def check_k(k: int, n_rows: int, param: str = "n_clusters") -> None:
    """Refuse a k outside ``1 <= k < n_rows`` (:class:`ParameterError` naming ``param``)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ParameterError(param, f"must be a whole number, got {k!r}")
    if k < 1:
        raise ParameterError(param, f"must be at least 1, got {k}")
    if k >= n_rows:
        raise ParameterError(
            param,
            f"{k} is not smaller than the number of rows ({n_rows}); "
            f"choose k <= {n_rows - 1} (every row its own cluster has no silhouette)",
        )


def _run_quietly(fit, notes: List[str], said_by_us: Tuple[str, ...] = ()):
    """Run an estimator, turning its library warnings into one-line notes for the user.

    Warnings whose text starts with one of ``said_by_us`` are dropped: the toolkit says the same
    thing itself, in its own words, whether or not the result came from the cache.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit()
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, FutureWarning, PendingDeprecationWarning)):
            continue
        message = str(w.message).strip().splitlines()[0]
        if message.startswith(said_by_us):
            continue
        if message not in notes:
            notes.append(message)
    return result


def _distinct_found(result: ClusterResult) -> None:
    k = result.requested_k
    found = result.n_clusters
    if k is not None and found < k:
        result.warnings.append(f"asked for {k} clusters but only {found} distinct clusters were found (duplicate rows)")


# ---------------------------------------------------------------------------------------
# what does not depend on k


def spectral_embedding(X: np.ndarray, notes: Optional[List[str]] = None, cache=None) -> np.ndarray:
    """The paper's 2-D spectral embedding (30-nearest-neighbour graph, seed 100).

    With 30 rows or fewer the neighbourhood is lowered to N - 1 (the reference crashes).
    ``cache`` (an :class:`~auditoryhum.io.array_cache.ArrayCache`) keeps the embedding per input.
    """
    notes = [] if notes is None else notes
    params = dict(SPECTRAL_EMBEDDING_PARAMS)
    n = X.shape[0]
    if n < params["n_components"] + 2:
        # The eigen-solver needs more rows than components + 1 (scikit-learn raises a TypeError).
        raise UserError(
            f"the data has {n} rows; the {params['n_components']}-D spectral embedding needs at least "
            f"{params['n_components'] + 2}: use Ward (ag) or k-means for so few rows"
        )
    if params["n_neighbors"] >= n:
        params["n_neighbors"] = max(1, n - 1)
        notes.append(f"only {n} rows: spectral embedding uses n_neighbors={params['n_neighbors']} instead of 30")

    def compute():
        from sklearn.manifold import SpectralEmbedding

        return _run_quietly(lambda: SpectralEmbedding(**params).fit_transform(X), notes)

    if cache is None:
        return compute()
    return cache.get_or_compute("spectral-embedding", cache.digest(X), params, compute)


def tsne_2d(X: np.ndarray, notes: Optional[List[str]] = None, cache=None, method: str = "sklearn") -> np.ndarray:
    """The t-SNE projection of the rows for the cluster plots.

    Parameters
    ----------
    X : ndarray of shape (N, D)
        The rows (clips with a label).
    notes : list of str, optional
        Receives one-line notes (a lowered perplexity, the estimator's warnings).
    cache : ArrayCache, optional
        Keeps the layout per input and method (it does not depend on the clustering).
    method : {"sklearn", "opentsne"}, default "sklearn"
        ``sklearn``: the paper's scikit-learn TSNE (:data:`auditoryhum.recipe.TSNE_PARAMS`:
        perplexity 35, 500 iterations, random init, seed 100), the published plots.
        ``opentsne``: openTSNE's FFT-accelerated t-SNE with the closest settings
        (:data:`OPENTSNE_PARAMS`); a different layout of the same rows,
        faster at large N; needs the ``fast-tsne`` extra.

    Returns
    -------
    ndarray of shape (N, 2)
        float32 (scikit-learn) or float64 (openTSNE), the same bits on every run.

    Notes
    -----
    scikit-learn needs perplexity < N, openTSNE perplexity <= (N - 1) / 3; with fewer rows it is
    lowered to (N - 1) / 3 and a note added. openTSNE uses Barnes-Hut below
    :data:`~auditoryhum.defaults.OPENTSNE_FFT_MIN_ROWS` rows, its FFT interpolation from there.
    """
    one_of(method, TSNE_METHODS, "tsne")
    notes = [] if notes is None else notes
    params = dict(TSNE_PARAMS if method == "sklearn" else OPENTSNE_PARAMS)
    n = X.shape[0]
    if method == "opentsne":
        params["negative_gradient_method"] = "fft" if n >= OPENTSNE_FFT_MIN_ROWS else "bh"
        # openTSNE searches int(3 * perplexity) neighbours and needs perplexity <= (N - 1) / 3
        # (it would lower it itself, on its log); scikit-learn needs perplexity < N.
        too_high = 3 * params["perplexity"] > n - 1
    else:
        too_high = params["perplexity"] >= n
    if too_high:
        params["perplexity"] = max((n - 1) / 3.0, 1e-3)
        notes.append(f"only {n} rows: t-SNE perplexity lowered from 35 to {params['perplexity']:.3g}")

    if method == "sklearn":
        def compute():
            from sklearn.manifold import TSNE

            return _run_quietly(lambda: TSNE(**params).fit_transform(X), notes)

        # The key of the published layout is the one it always had (caches stay valid).
        kind, key_params = "tsne", params
    else:
        from importlib.metadata import PackageNotFoundError, version

        try:
            # The key names openTSNE's version (an upgrade may move the points); asking the
            # metadata costs nothing, where importing openTSNE costs seconds a cache hit never pays.
            opentsne_version = version("openTSNE")
        except PackageNotFoundError:
            raise _opentsne_missing() from None

        def compute():
            try:
                from openTSNE import TSNE as OpenTSNE
            except ImportError:
                raise _opentsne_missing() from None
            # openTSNE's optimiser works in float64 on C-ordered rows.
            rows = np.ascontiguousarray(X, dtype=np.float64)
            return _run_quietly(lambda: np.asarray(OpenTSNE(**params).fit(rows)), notes)

        kind, key_params = "tsne-opentsne", {**params, "opentsne": opentsne_version}

    if cache is None:
        return compute()
    return cache.get_or_compute(kind, cache.digest(X), key_params, compute)


def _opentsne_missing() -> UserError:
    return UserError('t-SNE method "opentsne" needs openTSNE: pip install "auditoryhum[fast-tsne]", '
                     'or use the default method "sklearn"')


# ---------------------------------------------------------------------------------------
# the algorithms


def _kmeans_labels(space: np.ndarray, k: int, notes: List[str], cache=None) -> np.ndarray:
    """The paper's seeded k-means on ``space``; with ``cache``, kept per (space, k): the fit is
    deterministic, so a rerun at a known k reads the labels back."""
    def compute():
        from sklearn.cluster import KMeans

        # scikit-learn's "Number of distinct clusters (f) found smaller than n_clusters (k)" is
        # what _distinct_found says on every run (a cached fit never warns).
        return _run_quietly(lambda: KMeans(n_clusters=k, **KMEANS_PARAMS).fit_predict(space), notes,
                            said_by_us=("Number of distinct clusters",)).astype(np.int64)

    if cache is None:
        return compute()
    return cache.get_or_compute("kmeans-labels", cache.digest(np.ascontiguousarray(space)), {"n_clusters": int(k), **KMEANS_PARAMS},
                                compute)


def kmeans(X, k: int, cache=None) -> ClusterResult:
    """``KMeans(init="k-means++", max_iter=300, random_state=100)`` on the raw rows.

    Given :class:`~auditoryhum.clustering.distinct.DistinctRows` (large inputs), k-means runs
    on the distinct rows with their counts as ``sample_weight``: the same objective (every copy
    of a row lies at its row), though k-means++ then draws its seeds from another random
    stream than on the expanded rows, so the partition can differ from the published one's
    (a note says so).
    """
    from auditoryhum.clustering.distinct import DistinctRows

    if isinstance(X, DistinctRows):
        return _kmeans_weighted(X, k, cache)
    X = validate_rows(X)
    check_k(k, X.shape[0])
    notes: List[str] = []
    labels = _kmeans_labels(X, k, notes, cache)
    result = ClusterResult("kmeans", labels.astype(np.int64), X, k, notes)
    _distinct_found(result)
    return result


def agglomerative(X, k: int, cache=None) -> ClusterResult:
    """``AgglomerativeClustering(metric="euclidean", linkage="ward")`` on the raw rows.

    ``X`` is the rows, or their :class:`~auditoryhum.clustering.distinct.DistinctRows` (how
    millions of rows are given). Up to :data:`~auditoryhum.clustering.ward.WARD_ALL_ROWS_MAX`
    rows the tree is scikit-learn's own (scipy's Ward linkage of every row), cut and numbered
    as scikit-learn does; above, it is Ward on the distinct rows with their counts (the same
    partition; see :func:`~auditoryhum.clustering.ward.ward_route`), and k can be at most the
    number of distinct rows. With ``cache`` the tree is built once per input.
    """
    from auditoryhum.clustering.distinct import DistinctRows
    from auditoryhum.clustering.ward import distinct_leaf_keys, ward_route, ward_tree_counts

    groups = X if isinstance(X, DistinctRows) else None
    n = groups.n_rows if groups is not None else np.asarray(X).shape[0]
    if groups is None:
        X = validate_rows(X)
    check_k(k, n)
    if groups is None and n <= _ward_all_rows_max():
        Z = ward_tree(X, cache)
        return ClusterResult("ag", ward_labels(Z, k), X, k, [])
    if groups is None:
        from auditoryhum.clustering.distinct import find_distinct_rows

        groups = find_distinct_rows(X)
    if ward_route(groups.n_rows, groups.n_distinct) == "all-rows":
        rows = groups.expand()
        return ClusterResult("ag", ward_labels(ward_tree(rows, cache), k), rows, k, [])
    check_scale(groups.rows, "the data", n_rows=groups.n_rows)
    if k > groups.n_distinct:
        raise ParameterError(
            "n_clusters",
            f"{k} is more than the {groups.n_distinct} distinct rows of the {groups.n_rows} rows; Ward on the "
            f"distinct rows (above {_ward_all_rows_max()} rows) has at most {groups.n_distinct} clusters")
    Z = ward_tree_counts(groups.rows, groups.counts, cache)
    keys = distinct_leaf_keys(groups.first, groups.counts, groups.n_rows)
    labels = ward_labels(Z, k, keys)[groups.inverse]
    note = (f"{groups.n_rows} rows, {groups.n_distinct} distinct: Ward on the distinct rows with their counts (the "
            f"partition of Ward on all rows; cluster ids follow scikit-learn's numbering)")
    return ClusterResult("ag", labels, groups, k, [], [note])


def _ward_all_rows_max() -> int:
    from auditoryhum.clustering import ward

    return ward.WARD_ALL_ROWS_MAX


def _kmeans_weighted(groups, k: int, cache=None) -> ClusterResult:
    check_scale(groups.rows, "the data", n_rows=groups.n_rows)
    check_k(k, groups.n_rows)
    notes: List[str] = [WEIGHTED_KMEANS_NOTE]
    if k > groups.n_distinct:
        raise ParameterError("n_clusters", f"{k} is more than the {groups.n_distinct} distinct rows; k-means "
                                           f"cannot find more clusters than distinct rows")

    def compute():
        from sklearn.cluster import KMeans

        model = KMeans(n_clusters=k, **KMEANS_PARAMS)
        return _run_quietly(lambda: model.fit_predict(groups.rows, sample_weight=groups.counts.astype(np.float64)),
                            notes, said_by_us=("Number of distinct clusters",)).astype(np.int64)

    if cache is None:
        labels = compute()
    else:
        from auditoryhum.io.array_cache import rows_digest

        key = cache.digest(groups.rows) + rows_digest(groups.counts.astype(np.int64))
        labels = cache.get_or_compute("kmeans-labels-weighted", key, {"n_clusters": int(k), **KMEANS_PARAMS}, compute)
    result = ClusterResult("kmeans", labels[groups.inverse], groups, k, [], notes)
    _distinct_found(result)
    return result


#: Said once when k-means runs on distinct rows with counts.
WEIGHTED_KMEANS_NOTE = ("k-means ran on the distinct rows with their counts as sample weights (the same objective; "
                        "k-means++ draws its seeds from another random stream than on all rows)")

#: Above this many rows the spectral embedding (a 30-nearest-neighbour graph of every row) and
#: HDBSCAN are refused: their cost grows as N^2 (days at a million rows of 768 values).
NEIGHBOUR_GRAPH_MAX_ROWS = 200_000


def check_neighbour_graph_rows(n_rows: int, algorithm: str) -> None:
    """Refuse spectral / spec_ag / HDBSCAN on more rows than their neighbour search can take."""
    if n_rows > NEIGHBOUR_GRAPH_MAX_ROWS:
        raise UserError(
            f"{ALGORITHM_NAMES[algorithm]} needs the nearest neighbours of every one of the {n_rows} rows (time growing "
            f"as N^2); at most {NEIGHBOUR_GRAPH_MAX_ROWS} rows are accepted: cluster a sample of the clips, or use "
            f"Ward (ag) or k-means, which work on the distinct rows at any N")


def spectral(X: np.ndarray, k: int, cache=None) -> ClusterResult:
    """2-D spectral embedding, then the paper's k-means on it; silhouette in the embedding."""
    X = validate_rows(X)
    check_k(k, X.shape[0])
    notes: List[str] = []
    embedding = spectral_embedding(X, notes, cache)
    labels = _kmeans_labels(embedding, k, notes, cache)
    result = ClusterResult("spectral", labels.astype(np.int64), embedding, k, notes)
    _distinct_found(result)
    return result


def spectral_ward(X: np.ndarray, k: int, cache=None) -> ClusterResult:
    """The 2-D spectral embedding of :func:`spectral`, then Ward agglomerative clustering in it.

    The method's later revision (``cluster_spec_ag.py``): ``SpectralEmbedding(n_components=2,
    affinity="nearest_neighbors", n_neighbors=30, random_state=100)`` then
    ``AgglomerativeClustering(n_clusters=k, linkage="ward")`` on the embedding; the silhouette
    is measured in the embedding.
    """
    X = validate_rows(X)
    check_k(k, X.shape[0])
    notes: List[str] = []
    embedding = spectral_embedding(X, notes, cache)
    Z = ward_tree(np.ascontiguousarray(embedding), cache)
    result = ClusterResult("spec_ag", ward_labels(Z, k), embedding, k, notes)
    return result


def hdbscan(X: np.ndarray, min_cluster_size: int, cache=None) -> ClusterResult:
    """``HDBSCAN(min_cluster_size, min_samples=2, cluster_selection_epsilon=0.0001)``; noise is -1.

    A result where every point is noise is an error: there are no clusters to report.
    """
    from sklearn.cluster import HDBSCAN

    X = validate_rows(X)
    if isinstance(min_cluster_size, bool) or not isinstance(min_cluster_size, (int, np.integer)):
        raise ParameterError("min_cluster_size", f"must be a whole number, got {min_cluster_size!r}")
    if min_cluster_size < 2:
        raise ParameterError("min_cluster_size", f"must be at least 2, got {min_cluster_size}")
    if min_cluster_size > X.shape[0]:
        raise ParameterError(
            "min_cluster_size",
            f"{min_cluster_size} is larger than the number of rows ({X.shape[0]}); choose at most {X.shape[0]}",
        )
    notes: List[str] = []
    model = HDBSCAN(min_cluster_size=min_cluster_size, copy=True, **HDBSCAN_PARAMS)
    labels = _run_quietly(lambda: model.fit_predict(X), notes).astype(np.int64)
    result = ClusterResult("hdbscan", labels, X, None, notes)
    if result.n_clusters == 0:
        from auditoryhum.errors import MentionError, mention

        raise MentionError(
            f"HDBSCAN labelled all {X.shape[0]} points as noise (min_cluster_size={min_cluster_size}); "
            f"no clusters to write: lower {mention('min_cluster_size')}"
        )
    return result


def cluster(algorithm: str, X: np.ndarray, n_clusters: Optional[int] = None, min_cluster_size: Optional[int] = None,
            cache=None) -> ClusterResult:
    """Dispatch to one algorithm by its short name (``kmeans``, ``ag``, ``spectral``, ``spec_ag``, ``hdbscan``).

    ``X`` may be :class:`~auditoryhum.clustering.distinct.DistinctRows`: Ward and k-means work
    on them directly; spectral, spec_ag and HDBSCAN need every row and take them expanded, up
    to :data:`NEIGHBOUR_GRAPH_MAX_ROWS` rows.
    """
    from auditoryhum.clustering.distinct import DistinctRows

    if isinstance(X, DistinctRows) and algorithm in ("spectral", "spec_ag", "hdbscan"):
        check_neighbour_graph_rows(X.n_rows, algorithm)
        X = X.expand()
    if algorithm == "hdbscan":
        return hdbscan(X, min_cluster_size, cache)
    functions = {"kmeans": kmeans, "ag": agglomerative, "spectral": spectral, "spec_ag": spectral_ward}
    if algorithm not in functions:
        raise ParameterError("algorithm", f"must be one of {', '.join(ALGORITHM_NAMES)}, got {algorithm!r}")
    return functions[algorithm](X, n_clusters, cache)


# ---------------------------------------------------------------------------------------
# the silhouette


def silhouette(space: np.ndarray, labels: np.ndarray, cache=None) -> Optional[float]:
    """Mean euclidean silhouette, exactly ``sklearn.metrics.silhouette_score(space, labels)``,
    or ``None`` when undefined.

    The silhouette needs between 2 and N - 1 distinct labels. HDBSCAN noise (-1) counts as
    one label, as in the reference pipeline. The value comes from
    :func:`auditoryhum.clustering.silhouette.silhouette_score` (scikit-learn's arithmetic with numpy alone,
    and from the distinct rows where they repeat). With ``cache``, the value of one
    (space, labels) pair is kept, so re-running a clustering does not recompute it.
    """
    from auditoryhum.clustering.distinct import DistinctRows

    labels = np.asarray(labels)
    n_labels = np.unique(labels).size
    if n_labels < 2 or n_labels > len(labels) - 1:
        return None
    if isinstance(space, DistinctRows):
        return silhouette_of_groups(space, labels, cache)

    def compute():
        from auditoryhum.clustering.silhouette import silhouette_score

        return np.array([silhouette_score(space, labels, cache=cache)], dtype=np.float64)

    if cache is None:
        return float(compute()[0])
    from auditoryhum.io.array_cache import rows_digest

    key = cache.digest(space) + rows_digest(labels.astype(np.int64))
    return float(cache.get_or_compute("silhouette", key, {"metric": "euclidean"}, compute)[0])


def silhouette_memory_bytes(n_distinct: int, n_labels: int) -> int:
    """Peak bytes of :func:`silhouette_of_groups`: the square float64 distances of the distinct
    rows and the per-cluster sums."""
    return int(8 * n_distinct * n_distinct + 3 * 8 * n_distinct * n_labels)


def silhouette_of_groups(groups, labels: np.ndarray, cache=None) -> Optional[float]:
    """Mean silhouette of ``labels`` (one per row) over all rows, from their distinct rows.

    Every copy of a distinct row has the same silhouette when all copies share a cluster, so
    the mean over N rows is the count-weighted mean over the U distinct rows: O(U^2) memory
    and time at any N. Distances are scikit-learn's (``|x|^2 + |y|^2 - 2 x.y``, with the
    rounding noise it leaves between copies of a row).
    """
    from auditoryhum.clustering.silhouette import partition_silhouette, sklearn_distances_transposed

    dt = np.float32 if groups.rows.dtype == np.float32 else np.float64
    dist_t = sklearn_distances_transposed(groups.rows, dt == np.float32)
    value = partition_silhouette(dist_t, groups.inverse, groups.counts, np.asarray(labels), dt)
    if value is None:
        raise UserError("copies of one row were put in different clusters; the silhouette over distinct rows is "
                        "undefined there")
    return None if value != value else float(value)


def clustering_memory_bytes(algorithm: str, n_rows: int, n_distinct: int, k: Optional[int]) -> int:
    """Peak bytes a single-k clustering of ``n_rows`` rows (``n_distinct`` distinct) allocates
    beyond its input: the Ward tree's distances and the silhouette's (other algorithms: the
    silhouette's only; their own state is linear in N)."""
    from auditoryhum.clustering.silhouette import WORKING_MEMORY_MIB
    from auditoryhum.clustering.ward import ward_counts_memory_bytes, ward_route

    silhouette = WORKING_MEMORY_MIB * 2**20 if n_rows <= _ward_all_rows_max() else \
        silhouette_memory_bytes(n_distinct, k or 2)
    if algorithm != "ag":
        return int(silhouette)
    if ward_route(n_rows, n_distinct) == "all-rows":
        tree = 16 * (n_rows * (n_rows - 1) // 2)  # condensed float64 distances, held twice by scipy
    else:
        tree = ward_counts_memory_bytes(n_distinct)
    return int(max(tree, silhouette))


def check_clustering_fits(algorithm: str, X, k: Optional[int], budget: Optional[float]) -> None:
    """Stop in one line, before allocating, when the clustering cannot fit in ``budget`` bytes."""
    from auditoryhum.clustering.distinct import DistinctRows
    from auditoryhum.clustering.memory import check_fits

    if isinstance(X, DistinctRows):
        n, u = X.n_rows, X.n_distinct
    else:
        n = u = int(np.asarray(X).shape[0])
    need = clustering_memory_bytes(algorithm, n, u, k)
    if n <= _ward_all_rows_max():
        fix = "use a machine with more memory"
    else:
        fit = int((max(budget or 0, 0) / 8) ** 0.5)
        fix = (f"at most about {fit} distinct rows fit: cluster fewer distinct rows (e.g. merge rare labels) "
               f"or use a machine with more memory")
    what = f"{ALGORITHM_NAMES.get(algorithm, algorithm)} clustering of {n} rows ({u} distinct)"
    check_fits(need, budget, what, fix)

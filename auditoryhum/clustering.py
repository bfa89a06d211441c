"""The four clustering algorithms with the paper's hyper-parameters, and the silhouette.

Pure computation on arrays: no files, no flags. Each algorithm returns a
:class:`ClusterResult` holding the labels and the space in which the silhouette is measured
(the raw rows, or the 2-D spectral embedding for spectral clustering).
"""

import warnings
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from auditoryhum.errors import UserError

SEED = 100
KMEANS_PARAMS = dict(init="k-means++", max_iter=300, random_state=SEED)
SPECTRAL_EMBEDDING_PARAMS = dict(n_components=2, affinity="nearest_neighbors", n_neighbors=30, random_state=SEED)
HDBSCAN_PARAMS = dict(min_samples=2, cluster_selection_epsilon=0.0001)
TSNE_PARAMS = dict(
    n_components=2,
    perplexity=35.0,
    early_exaggeration=12.0,
    learning_rate="auto",
    max_iter=500,
    n_iter_without_progress=100,
    metric="euclidean",
    init="random",
    random_state=SEED,
)

ALGORITHM_NAMES = {
    "kmeans": "k-means",
    "ag": "Agglomerative (Ward)",
    "spectral": "Spectral",
    "hdbscan": "HDBSCAN",
}


@dataclass
class ClusterResult:
    """Labels of one clustering, the data its silhouette is computed on, and notes for the user."""

    algorithm: str
    labels: np.ndarray
    space: np.ndarray
    requested_k: Optional[int] = None
    warnings: List[str] = field(default_factory=list)

    @property
    def n_clusters(self) -> int:
        """Clusters found, not counting HDBSCAN noise (-1)."""
        return int(np.unique(self.labels[self.labels >= 0]).size)

    @property
    def n_noise(self) -> int:
        return int(np.count_nonzero(self.labels < 0))


def validate_rows(X: np.ndarray, source: str = "the data") -> np.ndarray:
    """Check a feature matrix is 2-D, finite, and has at least 2 rows; return it as float."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise UserError(f"{source} must be a 2-D array (one row per clip); got shape {X.shape}")
    if X.shape[0] < 2:
        raise UserError(f"{source} has {X.shape[0]} row(s); clustering needs at least 2")
    if X.shape[1] < 1:
        raise UserError(f"{source} has rows of length 0")
    if not np.all(np.isfinite(X)):
        raise UserError(f"{source} holds NaN or inf values; clustering needs finite rows")
    return X if X.dtype.kind == "f" else X.astype(np.float64)


def check_k(k: int, n_rows: int, flag: str = "--n_clusters") -> None:
    if k < 1:
        raise UserError(f"{flag} must be at least 1, got {k}")
    if k >= n_rows:
        raise UserError(
            f"{flag} {k} is not smaller than the number of rows ({n_rows}); "
            f"choose k <= {n_rows - 1} (every row its own cluster has no silhouette)"
        )


def _run_quietly(fit, notes: List[str]):
    """Run an estimator, turning its library warnings into one-line notes for the user."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit()
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, FutureWarning, PendingDeprecationWarning)):
            continue
        message = str(w.message).strip().splitlines()[0]
        if message not in notes:
            notes.append(message)
    return result


def _distinct_found(result: ClusterResult) -> None:
    k = result.requested_k
    found = result.n_clusters
    if k is not None and found < k:
        result.warnings.append(f"asked for {k} clusters but only {found} distinct clusters were found (duplicate rows)")


def kmeans(X: np.ndarray, k: int) -> ClusterResult:
    """``KMeans(init="k-means++", max_iter=300, random_state=100)`` on the raw rows."""
    from sklearn.cluster import KMeans

    X = validate_rows(X)
    check_k(k, X.shape[0])
    notes: List[str] = []
    labels = _run_quietly(lambda: KMeans(n_clusters=k, **KMEANS_PARAMS).fit_predict(X), notes)
    result = ClusterResult("kmeans", labels.astype(np.int64), X, k, notes)
    _distinct_found(result)
    return result


def agglomerative(X: np.ndarray, k: int) -> ClusterResult:
    """``AgglomerativeClustering(metric="euclidean", linkage="ward")`` on the raw rows."""
    from sklearn.cluster import AgglomerativeClustering

    X = validate_rows(X)
    check_k(k, X.shape[0])
    notes: List[str] = []
    model = AgglomerativeClustering(n_clusters=k, metric="euclidean", linkage="ward")
    labels = _run_quietly(lambda: model.fit_predict(X), notes)
    return ClusterResult("ag", labels.astype(np.int64), X, k, notes)


def spectral_embedding(X: np.ndarray, notes: Optional[List[str]] = None) -> np.ndarray:
    """The paper's 2-D spectral embedding (30-nearest-neighbour graph, seed 100).

    With 30 rows or fewer the neighbourhood is lowered to N - 1 (the reference crashes).
    """
    from sklearn.manifold import SpectralEmbedding

    notes = [] if notes is None else notes
    params = dict(SPECTRAL_EMBEDDING_PARAMS)
    n = X.shape[0]
    if params["n_neighbors"] >= n:
        params["n_neighbors"] = max(1, n - 1)
        notes.append(f"only {n} rows: spectral embedding uses n_neighbors={params['n_neighbors']} instead of 30")
    return _run_quietly(lambda: SpectralEmbedding(**params).fit_transform(X), notes)


def spectral(X: np.ndarray, k: int) -> ClusterResult:
    """2-D spectral embedding, then the paper's k-means on it; silhouette in the embedding."""
    from sklearn.cluster import KMeans

    X = validate_rows(X)
    check_k(k, X.shape[0])
    notes: List[str] = []
    embedding = spectral_embedding(X, notes)
    labels = _run_quietly(lambda: KMeans(n_clusters=k, **KMEANS_PARAMS).fit_predict(embedding), notes)
    result = ClusterResult("spectral", labels.astype(np.int64), embedding, k, notes)
    _distinct_found(result)
    return result


def hdbscan(X: np.ndarray, min_cluster_size: int) -> ClusterResult:
    """``HDBSCAN(min_cluster_size, min_samples=2, cluster_selection_epsilon=0.0001)``; noise is -1.

    A result where every point is noise is an error: there are no clusters to report.
    """
    from sklearn.cluster import HDBSCAN

    X = validate_rows(X)
    if min_cluster_size < 2:
        raise UserError(f"--min_cluster_size must be at least 2, got {min_cluster_size}")
    if min_cluster_size > X.shape[0]:
        raise UserError(
            f"--min_cluster_size {min_cluster_size} is larger than the number of rows ({X.shape[0]}); "
            f"choose at most {X.shape[0]}"
        )
    notes: List[str] = []
    model = HDBSCAN(min_cluster_size=min_cluster_size, copy=True, **HDBSCAN_PARAMS)
    labels = _run_quietly(lambda: model.fit_predict(X), notes).astype(np.int64)
    result = ClusterResult("hdbscan", labels, X, None, notes)
    if result.n_clusters == 0:
        raise UserError(
            f"HDBSCAN labelled all {X.shape[0]} points as noise (min_cluster_size={min_cluster_size}); "
            f"no clusters to write: lower --min_cluster_size"
        )
    return result


def silhouette(space: np.ndarray, labels: np.ndarray) -> Optional[float]:
    """Mean euclidean silhouette (``sklearn.metrics.silhouette_score``), or ``None`` when undefined.

    The silhouette needs between 2 and N - 1 distinct labels. HDBSCAN noise (-1) counts as
    one label, as in the reference pipeline.
    """
    from sklearn.metrics import silhouette_score

    n_labels = np.unique(labels).size
    if n_labels < 2 or n_labels > len(labels) - 1:
        return None
    return float(silhouette_score(space, labels, metric="euclidean"))


def tsne_2d(X: np.ndarray, notes: Optional[List[str]] = None) -> np.ndarray:
    """The paper's t-SNE projection for plots (perplexity 35, 500 iterations, random init, seed 100).

    t-SNE needs perplexity < N; with fewer rows it is lowered to (N - 1) / 3 and a note added.
    """
    from sklearn.manifold import TSNE

    notes = [] if notes is None else notes
    params = dict(TSNE_PARAMS)
    n = X.shape[0]
    if params["perplexity"] >= n:
        params["perplexity"] = max((n - 1) / 3.0, 1e-3)
        notes.append(f"only {n} rows: t-SNE perplexity lowered from 35 to {params['perplexity']:.3g}")
    return _run_quietly(lambda: TSNE(**params).fit_transform(X), notes)


def cluster(algorithm: str, X: np.ndarray, n_clusters: Optional[int] = None, min_cluster_size: Optional[int] = None) -> ClusterResult:
    """Dispatch to one algorithm by its short name (``kmeans``, ``ag``, ``spectral``, ``hdbscan``)."""
    if algorithm == "hdbscan":
        return hdbscan(X, min_cluster_size)
    functions = {"kmeans": kmeans, "ag": agglomerative, "spectral": spectral}
    return functions[algorithm](X, n_clusters)

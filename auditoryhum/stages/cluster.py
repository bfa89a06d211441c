"""Clustering stage: one clustering of the rows of an .npy file (cluster_*.py).

Top level is light: numpy and scikit-learn are imported inside :func:`cluster`.
"""

from dataclasses import dataclass, field
from typing import List, Optional

from auditoryhum import defaults
from auditoryhum.stages._base import NotedResult
from auditoryhum.validation import path_args

#: The clustering algorithms by short name (``auditoryhum.clustering.algorithms.ALGORITHM_NAMES``).
ALGORITHMS = ("kmeans", "ag", "spectral", "spec_ag", "hdbscan")
#: The t-SNE implementations of the plot (:data:`auditoryhum.defaults.TSNE_METHODS`).
TSNE_METHODS = defaults.TSNE_METHODS
DEFAULT_TSNE_METHOD = defaults.DEFAULT_TSNE_METHOD


@dataclass
class ClusterStageResult(NotedResult):
    """What :func:`cluster` wrote and found.

    Attributes
    ----------
    algorithm : str
    silhouette : float or None
        The mean silhouette (``Silhouette Score`` line), ``None`` when undefined.
    n_clusters : int
        Clusters found (HDBSCAN noise and rows without a label not counted).
    n_noise : int
        HDBSCAN noise points (id -1).
    n_no_label : int
        Rows without a label (all-NaN rows), id :data:`auditoryhum.clustering.algorithms.NO_LABEL_CLUSTER` (-2).
    n_rows : int
        Rows of the input, all of them (the length of the written id file).
    labels : list of int
        The written ids, one per row.
    notes, warnings : list of str
        What was said on stderr (``note:`` and ``warning:`` lines).
    """

    algorithm: str = ""
    silhouette: Optional[float] = None
    n_clusters: int = 0
    n_noise: int = 0
    n_no_label: int = 0
    n_rows: int = 0
    labels: List[int] = field(default_factory=list)


def cluster(cluster_npy: str, label_csv: str, png_plot: Optional[str] = None, *, algorithm: str = "ag",
            n_clusters: Optional[int] = None, min_cluster_size: Optional[int] = None,
            cache_dir: Optional[str] = None, no_cache: bool = False,
            tsne: str = DEFAULT_TSNE_METHOD) -> ClusterStageResult:
    """Cluster the rows of ``cluster_npy`` with the paper's hyper-parameters; write the ids and the t-SNE plot.

    Parameters
    ----------
    cluster_npy : str
        Input .npy of shape (N, D), one row per clip. All-NaN rows (clips without a label) are
        left out and get id -2 (:data:`auditoryhum.clustering.algorithms.NO_LABEL_CLUSTER`), with one note.
    label_csv : str
        Output: N lines, one integer cluster id per row (HDBSCAN noise -1, no label -2).
    png_plot : str, optional
        Output: t-SNE scatter (the raw rows that have a label, coloured by cluster), 12x12 in PNG.
        ``None``: no plot (and no t-SNE).
    algorithm : {"kmeans", "ag", "spectral", "spec_ag", "hdbscan"}, default "ag"
        ``spectral`` and ``spec_ag`` cluster the 2-D spectral embedding (k-means, Ward) and
        measure the silhouette there; the others use the raw rows.
    n_clusters : int
        k, ``1 <= k < rows`` (every algorithm but ``hdbscan``).
    min_cluster_size : int
        HDBSCAN's minimum cluster size, ``2 <= m <= rows`` (``hdbscan`` only).
    cache_dir : str, optional
        Cache of the t-SNE layout, the spectral embedding and the Ward tree (default
        ``$XDG_CACHE_HOME/auditoryhum``, else ``~/.cache/auditoryhum``; see
        :mod:`auditoryhum.io.array_cache`). The results are the same bits with and without it.
    no_cache : bool, default False
        Neither read nor write the cache.
    tsne : {"sklearn", "opentsne"}, default "sklearn"
        The t-SNE of the plot (:func:`auditoryhum.clustering.algorithms.tsne_2d`). ``sklearn``: the paper's
        scikit-learn TSNE, the published plots. ``opentsne``: openTSNE (the ``fast-tsne`` extra),
        faster at large N, a different layout of the same points. It changes only the plot: the
        ids and the silhouette are the same with both. Cached apart, per method.

    Returns
    -------
    ClusterStageResult
        ``outputs`` maps ``label_csv`` and ``png_plot`` to the files written.
    """
    from auditoryhum.validation import one_of

    path_args(cluster_npy=cluster_npy, label_csv=label_csv, png_plot=png_plot, optional=("png_plot",))
    one_of(algorithm, ALGORITHMS, "algorithm")
    one_of(tsne, TSNE_METHODS, "tsne")
    from auditoryhum.io.guard import guard_stage

    with guard_stage(inputs={"cluster_npy": cluster_npy},
                     outputs={k: v for k, v in (("label_csv", label_csv), ("png_plot", png_plot)) if v},
                     holder=f"cluster-{algorithm}"):
        return _cluster(cluster_npy, label_csv, png_plot, algorithm, n_clusters, min_cluster_size, cache_dir, no_cache,
                        tsne)


def _cluster(cluster_npy, label_csv, png_plot, algorithm, n_clusters, min_cluster_size, cache_dir, no_cache, tsne):
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from auditoryhum.clustering import algorithms as cl
    from auditoryhum.clustering.distinct import DistinctRows
    from auditoryhum.clustering.memory import memory_budget
    from auditoryhum.errors import ParameterError
    from auditoryhum.io.array_cache import open_cache
    from auditoryhum.io.artefacts import write_cluster_ids
    from auditoryhum.plots import cluster_plot_title, save_cluster_scatter

    if algorithm == "hdbscan":
        if min_cluster_size is None:
            raise ParameterError("min_cluster_size", "is required for HDBSCAN")
    elif n_clusters is None:
        raise ParameterError("n_clusters", f"is required for {cl.ALGORITHM_NAMES[algorithm]}")
    result = ClusterStageResult(algorithm=algorithm)

    say_note, say_warning = result.say_note, result.say_warning
    X, mask = cl.load_input(cluster_npy)
    groups = X if isinstance(X, DistinctRows) else None
    n_kept = cl.n_rows_of(X)
    n_missing = int(np.count_nonzero(~mask))
    if n_missing:
        say_note(cl.missing_note(n_missing, mask.shape[0]))
    if n_kept < 2:
        from auditoryhum.errors import UserError

        raise UserError(f"{cluster_npy} has {n_kept} row(s){' with a label' if n_missing else ''}; "
                        f"clustering needs at least 2")
    cl.check_clustering_fits(algorithm, X, n_clusters, memory_budget())
    cache = open_cache(cache_dir, no_cache)
    # The rows are this stage's own and never written: read-only, they are hashed once for all
    # the cache keys (tree, layout, distances, silhouette) of this clustering.
    (groups.rows if groups is not None else X).flags.writeable = False
    # The silhouette (numpy and BLAS, which release the GIL) is computed on a second thread
    # while the plot is drawn (matplotlib: Python on this one); the value is the same.
    with cache.remembering_digests(), ThreadPoolExecutor(max_workers=1) as pool:
        fitted = cl.cluster(algorithm, X, n_clusters=n_clusters, min_cluster_size=min_cluster_size, cache=cache)
        identical = groups.n_distinct == 1 if groups is not None else cl.all_identical(X)
        if identical:
            # One line for the cause; the estimators' own complaints about it would only repeat it.
            say_warning(cl.identical_warning(n_kept))
        else:
            for message in fitted.warnings:
                say_warning(message)
        for message in fitted.notes:
            say_note(message)
        labels = cl.expand_labels(fitted.labels, mask)
        pending = None if identical else pool.submit(cl.silhouette, fitted.space, fitted.labels, cache)
        # Labels first: they are the result; the plot is a view of it.
        write_cluster_ids(label_csv, labels)
        result.outputs["label_csv"] = label_csv
        if png_plot:
            tsne_notes: List[str] = []
            title = cluster_plot_title(cl.ALGORITHM_NAMES[algorithm], fitted.requested_k, fitted.n_clusters,
                                       fitted.n_noise)
            if groups is None:
                points = cl.tsne_2d(X, tsne_notes, cache, method=tsne)
                save_cluster_scatter(points, fitted.labels, title, png_plot)
            else:
                # Two million points are neither computable nor readable in a t-SNE: the distinct
                # rows are drawn, each with a marker area by how many rows it stands for.
                points = cl.tsne_2d(groups.rows, tsne_notes, cache, method=tsne)
                per_distinct = np.empty(groups.n_distinct, dtype=np.int64)
                per_distinct[groups.inverse] = fitted.labels
                title += f" ({groups.n_distinct} distinct rows of {groups.n_rows}; marker area by count)"
                save_cluster_scatter(points, per_distinct, title, png_plot, counts=groups.counts)
            for message in tsne_notes:
                say_note(message)
            result.outputs["png_plot"] = png_plot
        score = None if pending is None else pending.result()
    for message in cache.notes:
        say_note(message)
    if score is None and not identical:
        say_warning(
            f"the clustering has {len(set(fitted.labels.tolist()))} distinct label(s) over {len(fitted.labels)} rows, "
            f"so the silhouette is undefined; the labels and plot were still written"
        )
    result.silhouette = score
    result.n_clusters = fitted.n_clusters
    result.n_noise = fitted.n_noise
    result.n_no_label = n_missing
    result.n_rows = int(mask.shape[0])
    result.labels = labels.tolist()
    return result

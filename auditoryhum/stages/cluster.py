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
    import numpy as np

    from auditoryhum.clustering import algorithms as cl
    from auditoryhum.clustering.distinct import DistinctRows
    from auditoryhum.clustering.rows import cluster_rows
    from auditoryhum.io.array_cache import open_cache
    from auditoryhum.io.artefacts import write_cluster_ids
    from auditoryhum.plots import cluster_plot_title, save_cluster_scatter

    result = ClusterStageResult(algorithm=algorithm)
    rows = cl.read_input(cluster_npy)
    cache = open_cache(cache_dir, no_cache)
    said = 0

    def say_so_far(clustering):
        nonlocal said
        for kind, text in clustering.messages[said:]:
            (result.say_note if kind == "note" else result.say_warning)(text)
        said = len(clustering.messages)

    def write(clustering):
        # Labels first: they are the result; the plot is a view of it (drawn while the
        # silhouette is computed on the other thread).
        say_so_far(clustering)
        write_cluster_ids(label_csv, clustering.labels)
        result.outputs["label_csv"] = label_csv
        if not png_plot:
            return
        fitted = clustering.fit
        kept = clustering.rows
        tsne_notes: List[str] = []
        title = cluster_plot_title(cl.ALGORITHM_NAMES[algorithm], fitted.requested_k, fitted.n_clusters,
                                   fitted.n_noise)
        if isinstance(kept, DistinctRows):
            # Two million points are neither computable nor readable in a t-SNE: the distinct
            # rows are drawn, each with a marker area by how many rows it stands for.
            points = cl.tsne_2d(kept.rows, tsne_notes, cache, method=tsne)
            per_distinct = np.empty(kept.n_distinct, dtype=np.int64)
            per_distinct[kept.inverse[::-1]] = fitted.labels[::-1]  # each row's first copy
            title += f" ({kept.n_distinct} distinct rows of {kept.n_rows}; marker area by count)"
            save_cluster_scatter(points, per_distinct, title, png_plot, counts=kept.counts)
        else:
            points = cl.tsne_2d(kept, tsne_notes, cache, method=tsne)
            save_cluster_scatter(points, fitted.labels, title, png_plot)
        for message in tsne_notes:
            result.say_note(message)
        result.outputs["png_plot"] = png_plot

    with cache.remembering_digests():
        clustering = cluster_rows(rows, algorithm, n_clusters, min_cluster_size=min_cluster_size, cache=cache,
                                  source=cluster_npy, while_scoring=write)
    for message in cache.notes:
        result.say_note(message)
    say_so_far(clustering)
    result.silhouette = clustering.silhouette
    result.n_clusters = clustering.n_clusters
    result.n_noise = clustering.n_noise
    result.n_no_label = clustering.n_no_label
    result.n_rows = int(clustering.labels.shape[0])
    result.labels = clustering.labels.tolist()
    return result

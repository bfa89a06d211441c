"""The array-level clustering API: numpy rows in, ids, silhouettes and the choice of k out.

For notebooks, the way scikit-learn and librosa work on arrays: :func:`cluster_rows` and
:func:`sweep_rows` take the rows themselves (or their
:class:`~auditoryhum.clustering.distinct.DistinctRows`), write no file (the array cache aside),
and give the numbers the scripts print: ``cluster_*.py`` and ``cluster_sweep.py`` call these two
functions and only add reading the ``.npy``, writing the ids and tables, and the plots.

Rows that are NaN throughout stand for clips without a label: they are left out and get id -2
(:data:`~auditoryhum.io.artefacts.NO_LABEL_CLUSTER`), as in the files.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple, Union

import numpy as np

from auditoryhum import recipe
from auditoryhum.clustering import algorithms as cl
from auditoryhum.clustering.distinct import DistinctRows
from auditoryhum.errors import MentionError, ParameterError, UserError, mention


@dataclass
class RowsClustering:
    """One clustering of rows (:func:`cluster_rows`).

    Attributes
    ----------
    labels : ndarray of shape (n_rows,)
        Cluster id of every row: 0.., -1 HDBSCAN noise, -2 a row without a label (all NaN).
    silhouette : float or None
        The mean silhouette over the rows with a label (``Silhouette Score``), None when undefined.
    algorithm : str
    n_clusters, n_noise, n_no_label : int
    fit : ClusterResult
        The fit on the rows with a label (its ``space`` is where the silhouette is measured).
    rows : ndarray or DistinctRows
        The rows with a label that were clustered.
    messages : list of (kind, text)
        What the scripts print as ``note:`` and ``warning:`` lines, in order (``notes`` and
        ``warnings`` list each kind).
    """

    labels: np.ndarray
    silhouette: Optional[float]
    algorithm: str
    n_clusters: int
    n_noise: int
    n_no_label: int
    fit: "cl.ClusterResult"
    #: The rows with a label that were clustered (an array, or DistinctRows).
    rows: object = None
    #: ``("note" | "warning", text)`` in the order the scripts print them.
    messages: List[Tuple[str, str]] = field(default_factory=list)

    @property
    def notes(self) -> List[str]:
        return [text for kind, text in self.messages if kind == "note"]

    @property
    def warnings(self) -> List[str]:
        return [text for kind, text in self.messages if kind == "warning"]


@dataclass
class RowsSweep:
    """A k sweep of rows (:func:`sweep_rows`): the table, the chosen k and the lambda path.

    Attributes
    ----------
    ks, silhouette, adjusted, calinski_harabasz, davies_bouldin, singletons : ndarray
        The table's columns (nan where a score is undefined).
    chosen_k : int or None
        The k maximising ``silhouette - penalty * k`` (None: no silhouette is defined).
    penalty : float
    lambda_path : list of PathStep
        Every k that is optimal for some penalty, with its interval of penalties.
    result : SweepResult
        The per-k scores as computed (route, sample, counts).
    n_no_label : int
    notes, warnings : list of str
    rows, mask, k_max
        The rows with a label, their mask among all rows, the largest k asked (lowered below
        the number of rows).
    """

    ks: np.ndarray
    silhouette: np.ndarray
    adjusted: np.ndarray
    calinski_harabasz: np.ndarray
    davies_bouldin: np.ndarray
    singletons: np.ndarray
    chosen_k: Optional[int]
    penalty: float
    lambda_path: list
    result: object
    n_no_label: int
    notes: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    #: The rows with a label that were swept (an array, or DistinctRows), the mask of them, and
    #: the largest k asked for after lowering it below the number of rows.
    rows: object = None
    mask: Optional[np.ndarray] = None
    k_max: int = 0


def _with_a_label(rows, source: str):
    """``(rows with a label, mask)``: DistinctRows carry their mask; arrays are split here."""
    if isinstance(rows, DistinctRows):
        return rows, rows.mask
    X = np.asarray(rows)
    if X.ndim != 2:
        raise UserError(f"{source} must be a 2-D array (one row per clip); got shape {X.shape}")
    if X.dtype.kind not in "fiu":
        raise UserError(f"{source} holds {X.dtype} values; expected numbers")
    kept, mask = cl.split_missing(X, source)
    if kept.dtype.kind != "f":
        kept = kept.astype(np.float64)
    return kept, mask


def cluster_rows(rows: Union[np.ndarray, DistinctRows], algorithm: str = "ag", n_clusters: Optional[int] = None, *,
                 min_cluster_size: Optional[int] = None, cache=None, memory_budget="auto",
                 source: str = "the data", while_scoring: Optional[Callable[[RowsClustering], None]] = None
                 ) -> RowsClustering:
    """Cluster ``rows`` with the paper's hyper-parameters: what ``cluster_<algorithm>.py`` computes.

    Parameters
    ----------
    rows : ndarray of shape (n_rows, n_features), or DistinctRows
        One row per clip; all-NaN rows are clips without a label (id -2).
    algorithm : {"ag", "kmeans", "spectral", "spec_ag", "hdbscan"}
    n_clusters : int
        k (every algorithm but HDBSCAN).
    min_cluster_size : int
        HDBSCAN's minimum cluster size.
    cache : ArrayCache, optional
        Keeps what does not depend on k (trees, embeddings, layouts) between calls.
    memory_budget : "auto", float or None
        Bytes the clustering may use (``"auto"``: 85 % of what is available); a clustering that
        cannot fit is refused in one line before it allocates.
    source : str
        How messages name the rows (the scripts pass the file name).
    while_scoring : callable, optional
        Called with the result (silhouette not yet set) while the silhouette is computed on a
        second thread (the scripts write the ids and draw the plot then).

    Returns
    -------
    RowsClustering
    """
    from auditoryhum.clustering.memory import memory_budget as planned_budget
    from auditoryhum.validation import one_of

    one_of(algorithm, tuple(cl.ALGORITHM_NAMES), "algorithm")
    if algorithm == "hdbscan":
        if min_cluster_size is None:
            raise ParameterError("min_cluster_size", "is required for HDBSCAN")
    elif n_clusters is None:
        raise ParameterError("n_clusters", f"is required for {cl.ALGORITHM_NAMES[algorithm]}")
    X, mask = _with_a_label(rows, source)
    n_kept = cl.n_rows_of(X)
    n_missing = int(mask.shape[0] - n_kept)
    said: List[Tuple[str, str]] = []
    if n_missing:
        said.append(("note", cl.missing_note(n_missing, mask.shape[0])))
    if n_kept < 2:
        raise UserError(f"{source} has {n_kept} row(s){' with a label' if n_missing else ''}; clustering needs at least 2")
    cl.check_clustering_fits(algorithm, X, n_clusters, planned_budget(memory_budget))
    groups = X if isinstance(X, DistinctRows) else None
    # The rows are never written here: read-only, they are hashed once for every cache key.
    (groups.rows if groups is not None else X).flags.writeable = False
    fitted = cl.cluster(algorithm, X, n_clusters=n_clusters, min_cluster_size=min_cluster_size, cache=cache)
    identical = groups.n_distinct == 1 if groups is not None else cl.all_identical(X)
    if identical:
        # One line for the cause; the estimators' own complaints about it would only repeat it.
        said.append(("warning", cl.identical_warning(n_kept)))
    else:
        said.extend(("warning", message) for message in fitted.warnings)
    said.extend(("note", message) for message in fitted.notes)
    result = RowsClustering(cl.expand_labels(fitted.labels, mask), None, algorithm, fitted.n_clusters,
                            fitted.n_noise, n_missing, fitted, X, said)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # numpy and BLAS release the GIL: the silhouette runs while the caller draws (Python).
        pending = None if identical else pool.submit(cl.silhouette, fitted.space, fitted.labels, cache)
        if while_scoring is not None:
            while_scoring(result)
        result.silhouette = None if pending is None else pending.result()
    if result.silhouette is None and not identical:
        said.append(("warning",
                     f"the clustering has {len(set(fitted.labels.tolist()))} distinct label(s) over "
                     f"{len(fitted.labels)} rows, so the silhouette is undefined; the labels and plot were still written"))
    return result


def sweep_rows(rows: Union[np.ndarray, DistinctRows], algorithm: str = "ag", *, k_min: int = recipe.SWEEP_K_MIN,
               k_max: int = recipe.SWEEP_K_MAX, penalty: float = recipe.SWEEP_PENALTY, sample: Optional[int] = None,
               memory_budget="auto", cache=None, progress=None, source: str = "the data") -> RowsSweep:
    """Every k's scores and the penalised choice of k: what ``cluster_sweep.py`` computes.

    Parameters
    ----------
    rows : ndarray of shape (n_rows, n_features), or DistinctRows
        One row per clip; all-NaN rows are left out.
    algorithm : {"ag", "kmeans", "spectral", "spec_ag"}
    k_min, k_max : int
        The range of k (``k_max`` is lowered to rows - 1 with a note).
    penalty : float
        lambda of ``adjusted(k) = silhouette(k) - lambda * k``.
    sample : int, optional
        Silhouette on a stratified sample of this many rows (approximate).
    memory_budget : "auto", float or None
        Bytes the sweep may use (``"auto"``: 85 % of what is available).
    cache : ArrayCache, optional
    progress : callable, optional
        Wraps the loop over k of k-means and spectral (e.g. a progress bar).

    Returns
    -------
    RowsSweep
    """
    from auditoryhum.clustering import k_sweep as sw
    from auditoryhum.clustering.memory import memory_budget as planned_budget
    from auditoryhum.validation import one_of

    one_of(algorithm, sw.ALGORITHMS, "algorithm")
    X, mask = _with_a_label(rows, source)
    n = cl.n_rows_of(X)
    n_missing = int(mask.shape[0] - n)
    notes: List[str] = []
    if n_missing:
        notes.append(cl.missing_note(n_missing, mask.shape[0]))
    what = "rows with a label" if n_missing else "rows"
    if n < 3:
        raise UserError(f"{source} has {n} row(s){' with a label' if n_missing else ''}; "
                        f"a k sweep needs at least 3 (k from 2 to rows - 1)")
    if k_min > n - 1:
        raise ParameterError("k_min", f"{k_min} is not smaller than the number of {what} ({n}) in {source}; "
                                      f"choose k_min <= {n - 1}")
    if k_max > n - 1:
        notes.append(f"k_max {k_max} lowered to {n - 1}: {source} has {n} {what} and k must stay below that")
        k_max = n - 1
    if k_min < 2:
        raise ParameterError("k_min", f"must be at least 2, got {k_min}")
    if k_min > k_max:
        raise MentionError(f"{mention('k_min')} {k_min} is larger than {mention('k_max')} {k_max}; "
                           f"choose k_min <= k_max (and below the {n} {what})")
    if sample is not None and sample < n:
        notes.append(f"silhouette on a stratified sample of {sample} rows (seed {recipe.SEED}): approximate")
    swept = sw.sweep(algorithm, X, k_min, k_max, sample=sample, memory_budget=planned_budget(memory_budget),
                     progress=progress, cache=cache)
    adjusted = sw.adjusted_scores(swept.ks, swept.silhouette, penalty)
    chosen = sw.choose_k(swept.ks, swept.silhouette, penalty)
    path = sw.lambda_path(swept.ks, swept.silhouette)
    return RowsSweep(swept.ks, swept.silhouette, adjusted, swept.calinski_harabasz, swept.davies_bouldin,
                     swept.singletons, chosen, penalty, path, swept, n_missing, notes + list(swept.notes),
                     list(swept.warnings), X, mask, k_max)

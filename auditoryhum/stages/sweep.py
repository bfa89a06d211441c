"""The k sweep stage (cluster_sweep.py): every k's silhouette in one process, the penalised
choice of k, the lambda path, and the decision recorded beside the table.

Top level is light: numpy and scikit-learn are imported inside :func:`sweep`.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Union

from auditoryhum import recipe
from auditoryhum.stages._base import NotedResult
from auditoryhum.validation import path_args

ALGORITHMS = ("ag", "kmeans", "spectral", "spec_ag")


@dataclass
class SweepStageResult(NotedResult):
    """What :func:`sweep` wrote and decided.

    Attributes
    ----------
    algorithm : str
    ks, silhouette, adjusted : list
        The swept k and their scores (nan where undefined), as in the table.
    chosen_k : int or None
        The k of the highest adjusted score (``None``: no silhouette is defined).
    chosen_silhouette, chosen_adjusted : float or None
    silhouette_max_k : int or None
        The k of the highest silhouette, and ``silhouette_max`` its value.
    penalty : float
    lambda_path : list of auditoryhum.clustering.k_sweep.PathStep
        Every k optimal for some lambda >= 0.
    k_max : int
        The largest k swept (``k_max`` lowered to rows - 1 when larger).
    n_no_label : int
        All-NaN rows left out (id -2 in ``label_csv``).
    decision : dict
        The document written to ``outputs["decision_json"]`` (:func:`auditoryhum.io.artefacts.write_decision`).
    notes, warnings : list of str
    """

    algorithm: str = ""
    ks: List[int] = field(default_factory=list)
    silhouette: List[float] = field(default_factory=list)
    adjusted: List[float] = field(default_factory=list)
    chosen_k: Optional[int] = None
    chosen_silhouette: Optional[float] = None
    chosen_adjusted: Optional[float] = None
    silhouette_max_k: Optional[int] = None
    silhouette_max: Optional[float] = None
    penalty: float = recipe.SWEEP_PENALTY
    lambda_path: list = field(default_factory=list)
    k_max: int = 0
    n_no_label: int = 0
    decision: dict = field(default_factory=dict)


def sweep(cluster_npy: str, sweep_csv: str, png_plot: Optional[str] = None, label_csv: Optional[str] = None, *,
          algorithm: str = "ag", k_min: int = recipe.SWEEP_K_MIN, k_max: int = recipe.SWEEP_K_MAX,
          penalty: float = recipe.SWEEP_PENALTY, sample: Optional[int] = None,
          memory_budget: Union[str, float, None] = "auto", cache_dir: Optional[str] = None,
          no_cache: bool = False, progress: bool = True) -> SweepStageResult:
    """Sweep k over ``[k_min, k_max]``, choose k, write the table, its decision file and optionally the plot and ids.

    Parameters
    ----------
    cluster_npy : str
        Input .npy of shape (N, D). All-NaN rows (clips without a label) are left out of the
        sweep, with one note; in ``label_csv`` they get id -2.
    sweep_csv : str
        Output: ``k,silhouette,adjusted,calinski_harabasz,davies_bouldin,singletons``, one row per k.
        Beside it, the decision file ``<sweep_csv minus .csv>_decision.json``
        (:func:`auditoryhum.io.artefacts.decision_path`; format in :func:`auditoryhum.io.artefacts.write_decision`).
    png_plot : str, optional
        Output: silhouette and adjusted score against k, the chosen k marked (12x6 in PNG).
    label_csv : str, optional
        Output: the cluster ids at the chosen k, exactly as the single-k command writes them.
    algorithm : {"ag", "kmeans", "spectral", "spec_ag"}, default "ag"
        ``ag`` and ``spec_ag``: one Ward tree (on the rows / on the 2-D spectral embedding) cut
        at every k; ``kmeans`` and ``spectral``: one fit per k as the single-k commands fit it.
    k_min, k_max : int, default 2 and 840 (:mod:`auditoryhum.recipe`)
        ``k_max`` above rows - 1 is lowered to it with a note.
    penalty : float, default 0.001
        lambda in ``adjusted(k) = silhouette(k) - lambda k``, finite and >= 0 (provisional: the
        paper's AIC-tied formula is not published; the lambda path lists every defensible k).
    sample : int, optional
        Approximate silhouette on a stratified sample of this many rows (seed 100); must be
        larger than ``k_max``.
    memory_budget : "auto", float or None, default "auto"
        Bytes the sweep may plan to use ("auto": 85 % of MemAvailable; None: no limit); a sweep
        that would not fit stops before the work with the largest size that fits.
    cache_dir, no_cache
        The cache of the Ward tree and the spectral embedding (:mod:`auditoryhum.io.array_cache`).
    progress : bool, default True
        Show a progress bar over k (k-means, spectral) where bars are shown at all.

    Returns
    -------
    SweepStageResult
        ``outputs`` maps ``sweep_csv``, ``decision_json`` and, when given, ``png_plot`` and
        ``label_csv`` to the files written.
    """
    from auditoryhum.io.artefacts import decision_path
    from auditoryhum.validation import finite_non_negative, one_of, optional_positive_int, positive_int

    path_args(cluster_npy=cluster_npy, sweep_csv=sweep_csv, png_plot=png_plot, label_csv=label_csv,
              optional=("png_plot", "label_csv"))
    one_of(algorithm, ALGORITHMS, "algorithm")
    k_min = positive_int(k_min, "k_min")
    k_max = positive_int(k_max, "k_max")
    penalty = finite_non_negative(penalty, "penalty")
    sample = optional_positive_int(sample, "sample")
    from auditoryhum.io.guard import guard_stage

    outputs = {"sweep_csv": [sweep_csv, decision_path(sweep_csv)]}
    outputs.update({k: v for k, v in (("png_plot", png_plot), ("label_csv", label_csv)) if v})
    with guard_stage(inputs={"cluster_npy": cluster_npy}, outputs=outputs, holder=f"sweep-{algorithm}"):
        return _sweep(cluster_npy, sweep_csv, png_plot, label_csv, algorithm, k_min, k_max, penalty, sample,
                      memory_budget, cache_dir, no_cache, progress)


def _sweep(cluster_npy, sweep_csv, png_plot, label_csv, algorithm, k_min, k_max, penalty, sample, memory_budget,
           cache_dir, no_cache, show_progress):
    import os

    from auditoryhum.clustering import algorithms as cl
    from auditoryhum.clustering import k_sweep as sw
    from auditoryhum.clustering.rows import sweep_rows
    from auditoryhum.console import progress
    from auditoryhum.errors import UserError
    from auditoryhum.io.array_cache import open_cache
    from auditoryhum.io.artefacts import write_cluster_ids, write_decision, write_sweep_csv
    from auditoryhum.io.hashing import file_sha256
    from auditoryhum.plots import save_sweep_plot

    result = SweepStageResult(algorithm=algorithm, penalty=penalty)
    cache = open_cache(cache_dir, no_cache)

    def bar(iterable):
        if not show_progress:
            return iterable
        return progress(iterable, desc=f"{algorithm} k sweep", unit="k")

    table = sweep_rows(cl.read_input(cluster_npy), algorithm, k_min=k_min, k_max=k_max, penalty=penalty,
                       sample=sample, memory_budget=memory_budget, cache=cache, progress=bar, source=cluster_npy)
    for message in table.notes:
        result.say_note(message)
    for message in table.warnings:
        result.say_warning(message)
    result.n_no_label = n_missing = table.n_no_label
    result.k_max = table.k_max
    swept, mask = table.result, table.mask
    adjusted, chosen, path = table.adjusted, table.chosen_k, table.lambda_path
    write_sweep_csv(sweep_csv, [swept.ks, swept.silhouette, adjusted, swept.calinski_harabasz,
                                swept.davies_bouldin, swept.singletons])
    result.outputs["sweep_csv"] = sweep_csv
    document = sw.decision_document(swept, penalty, chosen, path, file_sha256(sweep_csv),
                                    os.path.basename(sweep_csv), n_missing)
    result.outputs["decision_json"] = write_decision(sweep_csv, document)
    result.decision = document
    if chosen is not None and label_csv:
        labelled = cl.cluster(algorithm, table.rows, n_clusters=chosen, cache=cache)
        for message in labelled.warnings:
            result.say_warning(message)
        write_cluster_ids(label_csv, cl.expand_labels(labelled.labels, mask))
        result.outputs["label_csv"] = label_csv
    if png_plot:
        title = f"{cl.ALGORITHM_NAMES[algorithm]}: silhouette sweep, k = {swept.ks[0]}..{swept.ks[-1]}"
        if swept.sample:
            title += f" (sample of {swept.sample})"
        save_sweep_plot(swept.ks, swept.silhouette, adjusted, chosen, penalty, title, png_plot)
        result.outputs["png_plot"] = png_plot
    for message in cache.notes:
        result.say_note(message)

    result.ks = [int(k) for k in swept.ks]
    result.silhouette = [float(s) for s in swept.silhouette]
    result.adjusted = [float(a) for a in adjusted]
    result.chosen_k = chosen
    result.chosen_silhouette = document["chosen_silhouette"]
    result.chosen_adjusted = document["chosen_adjusted"]
    result.silhouette_max_k = document["silhouette_max_k"]
    result.silhouette_max = document["silhouette_max"]
    result.lambda_path = path
    if chosen is None and label_csv:
        raise UserError(f"no k could be chosen, so {label_csv} was not written; the sweep table {sweep_csv} was")
    return result

"""The report stage (report.py): one self-contained HTML page of a run from whatever of its artefacts exist.

Top level is light: numpy and matplotlib are imported inside :func:`report`.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from auditoryhum.stages._base import StageResult

@dataclass
class ReportStageResult(StageResult):
    """What :func:`report` wrote.

    Attributes
    ----------
    shown, missing : list of str
        Section keys shown, and not shown (an input not given or not readable); together, every
        section of ``auditoryhum.report.SECTIONS`` in page order.
    problems : dict of str to list of str
        Per section, why something could not be shown (also printed as warnings).
    chosen_k : int or None
        The sweep's chosen k as its decision file records it (``None`` without one).
    """

    shown: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    problems: Dict[str, List[str]] = field(default_factory=dict)
    chosen_k: Optional[int] = None


def report(html: str, *, title: Optional[str] = None, top_label_scores_csv: Optional[str] = None,
           selection_csv: Optional[str] = None, scores_with_human_csv: Optional[str] = None,
           annotations: Optional[str] = None, sweep_csv: Optional[str] = None, cluster_csv: Optional[str] = None,
           taxonomy_csv: Optional[str] = None, tsne_png: Optional[str] = None,
           run_log: Optional[str] = None, run_manifest: Optional[str] = None) -> ReportStageResult:
    """Write one self-contained HTML report of a run from the artefacts given.

    Every input is optional: the page shows what it is given and says what is missing or
    unreadable (each such problem is also printed as a ``warning:`` line).

    Parameters
    ----------
    html : str
        Output: the page (one file; clip players refer to the audio relative to its folder).
    title : str, optional
        Page title (default "AuditoryHuM run report").
    top_label_scores_csv : str, optional
        Scores file (``features_clap_text``): histogram with the review threshold, mean, NaN count.
    selection_csv : str, optional
        Review selection (``util_select_review``): the worst clips with players.
    scores_with_human_csv, annotations : str, optional
        Scores made from the merged labels, and the human annotations: the score boost.
    sweep_csv : str, optional
        k-sweep table (``cluster_sweep``); the chosen k, penalty and silhouette maximum come from
        its decision file ``<sweep_csv minus .csv>_decision.json``: the report never decides k
        itself, and says so for a table without one.
    cluster_csv : str, optional
        Cluster ids: the cluster table (label counts need ``top_label_scores_csv``).
    taxonomy_csv : str, optional
        Composite labels (``composite_label``).
    tsne_png : str, optional
        A t-SNE plot, embedded as drawn.
    run_log : str, optional
        Run log (JSON lines) listing the commands, versions and seeds.
    run_manifest : str, optional
        The ``manifest.json`` of the ``auditoryhum run`` that made the artefacts: linked from the
        page, not read (it records finish times, and the page stays the same bytes for the same
        inputs).

    Returns
    -------
    ReportStageResult
        ``outputs["html"]`` is the page.
    """
    from auditoryhum.io.guard import guard_stage
    from auditoryhum.validation import path_args

    given = dict(top_label_scores_csv=top_label_scores_csv, selection_csv=selection_csv,
                 scores_with_human_csv=scores_with_human_csv, annotations=annotations, sweep_csv=sweep_csv,
                 cluster_csv=cluster_csv, taxonomy_csv=taxonomy_csv, tsne_png=tsne_png, run_log=run_log)
    path_args(html=html, run_manifest=run_manifest, **given, optional=(*given, "run_manifest"))
    inputs = {k: v for k, v in given.items() if v}  # the manifest is only linked: no input of the guard
    if sweep_csv:
        from auditoryhum.io.artefacts import decision_path

        inputs["sweep_csv"] = [sweep_csv, decision_path(sweep_csv)]
    with guard_stage(inputs=inputs, outputs={"html": html}, holder="report"):
        from auditoryhum.console import warn
        from auditoryhum.report import SECTIONS, ReportInputs, gather, write_report

        data = gather(ReportInputs(**given, run_manifest=run_manifest), html)
        result = ReportStageResult()
        for key, _ in SECTIONS:
            for message in data.problems.get(key, []):
                warn(message)
        write_report(html, data, title)
        result.outputs["html"] = html
        result.shown = [key for key, _ in SECTIONS if data.shown(key)]
        result.missing = [key for key, _ in SECTIONS if not data.shown(key)]
        result.problems = {k: list(v) for k, v in data.problems.items()}
        result.chosen_k = data.sweep.chosen_k if data.sweep is not None else None
        return result

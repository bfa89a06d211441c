"""The run report: one self-contained HTML page of a run, built from whatever artefacts exist.

:func:`gather` reads the artefacts it is given (the CLAP scores file, the review selection,
the annotations and the scores with human input, the k-sweep table, the cluster ids, the
composite-label taxonomy, the t-SNE plot, the run log) into a :class:`ReportData`; an
artefact that is missing or unreadable becomes a problem shown in its section, never a
failed report. :func:`render_report` turns that into HTML with one pure ``render_*`` function
per section, and :func:`write_report` writes it atomically.

The page has no script and makes no network request: figures are PNGs embedded as ``data:``
URLs, the style sheet is inline and allowed by its hash in a Content-Security-Policy that
forbids everything else except the clips' audio, which is referenced by paths relative to the
page (so the page and the audio can be moved together). All text from the artefacts is
HTML-escaped.

The template and style sheet are package data in ``auditoryhum/assets/``.
"""

import base64
import html
import json
import math
import os
import re
import shlex
from dataclasses import dataclass, field
from importlib import resources
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from auditoryhum.composite import cluster_label_stats
from auditoryhum.errors import UserError
from auditoryhum.hitl import ScoreBoost, is_annotated, score_boost, select_for_review
from auditoryhum.io import artefacts as af
from auditoryhum.io.atomic import write_text
from auditoryhum.review_page import audio_src, csp_hash
from auditoryhum.run_log import RunLog, read_run_log

DEFAULT_TITLE = "AuditoryHuM run report"
_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")
# Players that read their clip's header when the page opens; the rest load when played.
_PRELOAD_FIRST = 20
# Longest per-clip table of annotated clips; the figures above it always cover every clip.
_MAX_ANNOTATED_ROWS = 500
_TOP_LABELS = 5

#: Sections in page order: (id, heading).
SECTIONS = (
    ("scores", "CLAP scores"),
    ("selection", "Worst clips (review selection)"),
    ("boost", "Human in the loop: score boost"),
    ("sweep", "Choosing k: silhouette sweep"),
    ("tsne", "t-SNE plot"),
    ("clusters", "Clusters and composite labels"),
    ("runs", "Run manifest: commands, versions, seeds"),
)


@dataclass
class ReportInputs:
    """Paths of the artefacts to report on (``None``: not given)."""

    top_label_scores_csv: Optional[str] = None
    selection_csv: Optional[str] = None
    scores_with_human_csv: Optional[str] = None
    annotations: Optional[str] = None
    sweep_csv: Optional[str] = None
    cluster_csv: Optional[str] = None
    taxonomy_csv: Optional[str] = None
    tsne_png: Optional[str] = None
    run_log: Optional[str] = None
    #: ``auditoryhum run``'s manifest.json: only named (linked), never read, so the page's bytes
    #: do not depend on the stages' finish times it records.
    run_manifest: Optional[str] = None


@dataclass
class ScoresData:
    """The scores file, and the review threshold marked on its histogram."""

    path: str
    rows: List[af.ScoreRow]
    threshold: Optional[float]  # highest score that is (or would be) reviewed
    threshold_rule: str  # plain text: where the threshold comes from

    @property
    def scores(self) -> np.ndarray:
        return np.asarray([r.score for r in self.rows], dtype=np.float64)

    @property
    def finite(self) -> np.ndarray:
        s = self.scores
        return s[np.isfinite(s)]

    @property
    def n_nan(self) -> int:
        return len(self.rows) - int(self.finite.size)

    @property
    def mean(self) -> float:
        """Mean of the scores that are numbers (as ``features_clap_text.py`` prints it); nan if none."""
        finite = self.finite
        return float(np.mean(finite)) if finite.size else math.nan

    @property
    def n_at_or_below_threshold(self) -> int:
        return 0 if self.threshold is None else int(np.count_nonzero(self.finite <= self.threshold))


@dataclass
class SelectionData:
    """The review selection, each clip's player source relative to the page, and how many clips' audio was not found."""

    path: str
    rows: List[af.SelectionRow]
    sources: List[str]
    n_missing_audio: int = 0


@dataclass
class AnnotatedClip:
    """One clip with a human annotation: its labels and scores before and after (when known)."""

    line: int  # 1-based
    annotation: str
    path: Optional[str] = None
    label_before: Optional[str] = None
    label_after: Optional[str] = None
    score_before: Optional[float] = None
    score_after: Optional[float] = None


@dataclass
class BoostData:
    """The annotations, and the score boost when the scores with human input are known."""

    annotations_path: str
    n_lines: int
    clips: List[AnnotatedClip]
    boost: Optional[ScoreBoost] = None
    with_human_path: Optional[str] = None


@dataclass
class SweepData:
    """The k-sweep table and the decision the sweep recorded beside it
    (``<table minus .csv>_decision.json``, :func:`auditoryhum.io.artefacts.read_decision`).

    The report never decides k itself: without a decision file (a table from an older
    ``cluster_sweep.py``) ``chosen_k``, ``best_silhouette_k`` and ``penalty`` are ``None`` and
    ``decision_problem`` says why.
    """

    path: str
    ks: np.ndarray
    silhouette: np.ndarray
    adjusted: np.ndarray
    chosen_k: Optional[int]
    best_silhouette_k: Optional[int]
    penalty: Optional[float]  # the sweep's lambda, from its decision file
    decision: Optional[dict] = None
    decision_problem: Optional[str] = None

    def at(self, k: int) -> Tuple[float, float]:
        i = int(np.flatnonzero(self.ks == k)[0])
        return float(self.silhouette[i]), float(self.adjusted[i])


@dataclass
class ClusterRow:
    """One cluster of the table."""

    cluster: int
    size: Optional[int]  # None: known only from the taxonomy
    composite_label: Optional[str] = None
    top_labels: Optional[List[Tuple[str, int]]] = None  # from the cluster ids + scores file
    n_distinct: Optional[int] = None
    taxonomy_top_labels: Optional[str] = None  # as the taxonomy wrote them


@dataclass
class ClustersData:
    """The cluster table, built from the cluster ids, the scores file's labels and the taxonomy (each optional)."""

    rows: List[ClusterRow]
    n_clips: Optional[int] = None
    n_labels: Optional[int] = None
    n_shared_labels: Optional[int] = None
    has_labels: bool = False
    has_taxonomy: bool = False


@dataclass
class ReportData:
    """Everything the report shows; ``problems[section]`` lists what could not be shown and why."""

    inputs: ReportInputs
    page_path: str
    scores: Optional[ScoresData] = None
    selection: Optional[SelectionData] = None
    boost: Optional[BoostData] = None
    sweep: Optional[SweepData] = None
    tsne: Optional[af.PngImage] = None
    clusters: Optional[ClustersData] = None
    run_log: Optional[RunLog] = None
    problems: Dict[str, List[str]] = field(default_factory=dict)
    made_by: str = ""
    # The toolkit's own version, git commit and parameters. Never the time or the library versions:
    # those differ between a run and its resumed rerun (which imported other libraries), and the
    # page must be the same bytes for the same inputs. The run log and run's manifest record them.
    toolkit: dict = field(default_factory=dict)

    def problem(self, section: str, message: str) -> None:
        self.problems.setdefault(section, []).append(message)

    def shown(self, section: str) -> bool:
        if section == "runs":
            return self.run_log is not None or bool(self.inputs.run_manifest)
        return getattr(self, section) is not None


# ---------------------------------------------------------------------------------------
# computations on the artefacts (pure)


def review_threshold(scores: Sequence[float], selection: Optional[Sequence[af.SelectionRow]] = None) -> Tuple[Optional[float], str]:
    """The review threshold to mark on the score histogram, and where it comes from.

    With a review selection: the highest score in it (every clip at or below it was
    reviewed, up to ties). Without one: the highest score ``util_select_review.py`` selects
    by default (the lowest 1 %). ``None`` when no selected clip has a score.

    Parameters
    ----------
    scores : sequence of float
        Every clip's score, NaN where it has none.
    selection : sequence of SelectionRow, optional

    Returns
    -------
    threshold : float or None
    rule : str
    """
    if selection is not None:
        scored = [r.score for r in selection if not math.isnan(r.score)]
        if not scored:
            return None, "the review selection holds no clip with a score"
        return max(scored), f"the highest score in the review selection ({len(scored)} scored clips selected)"
    pick = select_for_review(list(scores))
    chosen = [scores[i] for i in pick.scored_rows]
    if not chosen:
        return None, "no clip has a score"
    return max(chosen), f"{pick.rule}, as util_select_review.py selects by default"


# ---------------------------------------------------------------------------------------
# gathering the artefacts


def _attempt(report: ReportData, section: str, read):
    try:
        return read()
    except UserError as exc:
        report.problem(section, str(exc))
        return None


def gather(inputs: ReportInputs, page_path: str) -> ReportData:
    """Read every artefact named in ``inputs`` that can be read; record why the others cannot.

    Parameters
    ----------
    inputs : ReportInputs
    page_path : str
        Where the report will be written (clip players get paths relative to its folder).

    Returns
    -------
    report : ReportData
    """
    from auditoryhum import run_log as rl

    report = ReportData(inputs, page_path)
    from auditoryhum import __version__

    report.made_by = rl.current_shell_line()
    report.toolkit = {"versions": {"auditoryhum": __version__}, "git_commit": rl.git_commit(),
                      "parameters": rl.toolkit_parameters()}
    page_dir = os.path.dirname(os.path.abspath(page_path))

    score_rows = None
    if inputs.top_label_scores_csv:
        score_rows = _attempt(report, "scores", lambda: af.read_scores(inputs.top_label_scores_csv))
        if score_rows is not None and not score_rows:
            report.problem("scores", f"scores file {inputs.top_label_scores_csv} is empty")
            score_rows = None

    selection_rows = None
    if inputs.selection_csv:
        selection_rows = _attempt(report, "selection", lambda: af.read_selection(inputs.selection_csv))
        if selection_rows is not None:
            missing = sum(1 for r in selection_rows if not os.path.isfile(r.path))
            sources = [audio_src(r.path, page_dir) for r in selection_rows]
            report.selection = SelectionData(inputs.selection_csv, selection_rows, sources, missing)
            if missing:
                report.problem(
                    "selection",
                    f"{missing} of {len(selection_rows)} clips' audio files are not found from the current folder "
                    f"(first: {next(r.path for r in selection_rows if not os.path.isfile(r.path))}); their players "
                    f"will not play. Make the report from the folder the selection's paths are relative to.",
                )
            if score_rows is not None:
                for r in selection_rows:
                    if not 1 <= r.line <= len(score_rows) or score_rows[r.line - 1].path != r.path:
                        report.problem(
                            "selection",
                            f"selection file {inputs.selection_csv} was not made from scores file "
                            f"{inputs.top_label_scores_csv}: its line {r.line} ({r.path}) is not that line of the scores file",
                        )
                        break

    if score_rows is not None:
        threshold, rule = review_threshold([r.score for r in score_rows], selection_rows)
        report.scores = ScoresData(inputs.top_label_scores_csv, score_rows, threshold, rule)

    _gather_boost(report, score_rows)
    _gather_sweep(report)
    if inputs.tsne_png:
        report.tsne = _attempt(report, "tsne", lambda: af.read_png(inputs.tsne_png))
    _gather_clusters(report, score_rows)
    if inputs.run_log:
        report.run_log = _attempt(report, "runs", lambda: read_run_log(inputs.run_log))
        if report.run_log is not None and report.run_log.bad_lines:
            bad = report.run_log.bad_lines
            report.problem(
                "runs",
                f"run log {inputs.run_log}: {len(bad)} line(s) are not run records and were skipped "
                f"(line {', '.join(map(str, bad[:10]))}{' ...' if len(bad) > 10 else ''})",
            )
    return report


def _gather_boost(report: ReportData, score_rows: Optional[List[af.ScoreRow]]) -> None:
    inputs = report.inputs
    if not inputs.annotations:
        if inputs.scores_with_human_csv:
            report.problem("boost", "--scores_with_human_csv needs --annotations (which clips were annotated) to compute the score boost")
        return
    lines = _attempt(report, "boost", lambda: af.read_annotations(inputs.annotations))
    if lines is None:
        return
    if score_rows is not None:
        try:
            af.check_aligned(
                f"scores file {inputs.top_label_scores_csv}", len(score_rows), f"annotations file {inputs.annotations}", len(lines), b_may_be_shorter=True
            )
        except UserError as exc:
            report.problem("boost", str(exc))
            return
    with_rows = None
    if inputs.scores_with_human_csv:
        with_rows = _attempt(report, "boost", lambda: af.read_scores(inputs.scores_with_human_csv))
        if with_rows is not None and score_rows is None:
            report.problem("boost", "the score boost also needs --top_label_scores_csv (the scores without human input)")
            with_rows = None
        if with_rows is not None:
            try:
                af.check_aligned(
                    f"scores file {inputs.top_label_scores_csv}", len(score_rows), f"scores file {inputs.scores_with_human_csv}", len(with_rows)
                )
            except UserError as exc:
                report.problem("boost", str(exc))
                with_rows = None
    clips = []
    for i, line in enumerate(lines):
        if not is_annotated(line):
            continue
        clip = AnnotatedClip(i + 1, line.strip())
        if score_rows is not None:
            clip.path, clip.label_before, clip.score_before = score_rows[i].path, score_rows[i].label, score_rows[i].score
        if with_rows is not None:
            clip.label_after, clip.score_after = with_rows[i].label, with_rows[i].score
        clips.append(clip)
    boost = None
    if with_rows is not None:
        boost = score_boost([r.score for r in score_rows], [r.score for r in with_rows], lines)
    report.boost = BoostData(inputs.annotations, len(lines), clips, boost, inputs.scores_with_human_csv if with_rows is not None else None)


def _gather_sweep(report: ReportData) -> None:
    path = report.inputs.sweep_csv
    if not path:
        return
    table = _attempt(report, "sweep", lambda: af.read_sweep_csv(path))
    if table is None:
        return
    if table["k"].size == 0:
        report.problem("sweep", f"sweep table {path} holds no rows")
        return
    ks, sil, adj = table["k"], table["silhouette"], table["adjusted"]
    from auditoryhum.io.artefacts import read_decision

    decision, why = read_decision(path)
    chosen = best = penalty = None
    if decision is not None:
        chosen, best, penalty = decision.get("chosen_k"), decision.get("silhouette_max_k"), decision.get("penalty")
        if any(k is not None and k not in set(ks.tolist()) for k in (chosen, best)):
            decision, why = None, f"the decision file of {path} names a k that is not in the table: the chosen k is not shown"
            chosen = best = penalty = None
    if why:
        report.problem("sweep", why)
    report.sweep = SweepData(path, ks, sil, adj, chosen, best, penalty, decision, why)


def _gather_clusters(report: ReportData, score_rows: Optional[List[af.ScoreRow]]) -> None:
    inputs = report.inputs
    ids = None
    if inputs.cluster_csv:
        ids = _attempt(report, "clusters", lambda: af.read_cluster_ids(inputs.cluster_csv))
        if ids is not None and ids.size == 0:
            report.problem("clusters", f"cluster-id file {inputs.cluster_csv} is empty")
            ids = None
    taxonomy = None
    if inputs.taxonomy_csv:
        taxonomy = _attempt(report, "clusters", lambda: af.read_taxonomy_csv(inputs.taxonomy_csv))
    if ids is None and taxonomy is None:
        return
    by_cluster = {t.cluster: t for t in taxonomy} if taxonomy is not None else {}
    if ids is None:
        rows = [ClusterRow(t.cluster, t.n_clips, t.composite_label, None, None, t.top_labels) for t in sorted(taxonomy, key=lambda t: t.cluster)]
        report.clusters = ClustersData(rows, has_taxonomy=True)
        return

    labels = None
    if score_rows is not None:
        try:
            af.check_aligned(f"scores file {inputs.top_label_scores_csv}", len(score_rows), f"cluster-id file {inputs.cluster_csv}", len(ids))
            labels = [r.label for r in score_rows]
        except UserError as exc:
            report.problem("clusters", f"{exc}; the table shows cluster sizes only")
    clusters, sizes = np.unique(ids, return_counts=True)
    stats = cluster_label_stats(ids.tolist(), labels) if labels is not None else None
    rows = []
    for c, size in zip(clusters.tolist(), sizes.tolist()):
        row = ClusterRow(int(c), int(size))
        if stats is not None:
            # clips without a label (id -2, or an empty kept label) are in no distribution
            distribution = stats.per_cluster.get(int(c), [])
            row.top_labels = distribution[:_TOP_LABELS]
            row.n_distinct = len(distribution)
        if c in by_cluster:
            t = by_cluster[c]
            row.composite_label = t.composite_label
            row.taxonomy_top_labels = t.top_labels
        rows.append(row)
    data = ClustersData(rows, int(ids.size), has_labels=stats is not None, has_taxonomy=taxonomy is not None)
    if stats is not None:
        data.n_labels = len(stats.clusters_per_label)
        data.n_shared_labels = stats.n_shared_labels
    report.clusters = data

    if taxonomy is not None:
        present = set(clusters.tolist())
        unknown = sorted(set(by_cluster) - present)
        unnamed = [c for c in clusters.tolist() if c not in by_cluster and c >= 0]
        wrong_size = [t.cluster for t in taxonomy if t.cluster in present and t.n_clips != int(sizes[clusters.tolist().index(t.cluster)])]
        if unknown or unnamed or wrong_size:
            parts = []
            if unknown:
                parts.append(f"clusters {_few(unknown)} are not in the cluster-id file")
            if unnamed:
                parts.append(f"clusters {_few(unnamed)} have no composite label")
            if wrong_size:
                parts.append(f"clusters {_few(wrong_size)} have another size there")
            report.problem(
                "clusters",
                f"taxonomy file {inputs.taxonomy_csv} does not match cluster-id file {inputs.cluster_csv}: "
                + "; ".join(parts)
                + " (was it made from another clustering?)",
            )


def _few(values: Sequence[int], limit: int = 8) -> str:
    return ", ".join(map(str, values[:limit])) + (" ..." if len(values) > limit else "")


# ---------------------------------------------------------------------------------------
# rendering (pure: data in, HTML out)


def _e(text: object) -> str:
    """Escape text for HTML; a lone surrogate (an undecodable file name) becomes '?'."""
    return html.escape(str(text).encode("utf-8", "replace").decode("utf-8"), quote=True)


def _num(value: Optional[float], digits: int = 4, sign: bool = False) -> str:
    if value is None or math.isnan(value):
        return "nan"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _label(text: Optional[str]) -> str:
    if text is None:
        return '<span class="none">unknown</span>'
    return _e(text) if text.strip() else '<span class="none">(no label)</span>'


def _figure(key: str, name: str, value_html: str, raw: object = None, note: str = "") -> str:
    """One key figure: ``<div><dt>name</dt><dd id="fig-key" data-value="raw">value</dd></div>``."""
    data = f' data-value="{_e(raw)}"' if raw is not None else ""
    note_html = f' <span class="fig-note">{note}</span>' if note else ""
    return f'<div class="fig"><dt>{_e(name)}</dt><dd id="fig-{key}"{data}>{value_html}{note_html}</dd></div>'


def _figures(items: Sequence[str]) -> str:
    return f'<dl class="figures">{"".join(items)}</dl>' if items else ""


def _png_size(data: bytes) -> Tuple[int, int]:
    if data[:8] != af.PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _img(data: bytes, alt: str, key: str) -> str:
    width, height = _png_size(data)
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<figure class="plot"><img id="img-{key}" src="data:image/png;base64,{encoded}" width="{width}" '
        f'height="{height}" alt="{_e(alt)}"><figcaption>{_e(alt)}</figcaption></figure>'
    )


def _missing(flags: str, what: str) -> str:
    return f'<p class="missing">Not given: {flags} ({_e(what)}).</p>'


def _flag(name: str) -> str:
    return f"<code>{name}</code>"


def _source(*paths: Optional[str]) -> str:
    shown = [f"<code>{_e(p)}</code>" for p in paths if p]
    return f'<p class="source">From {", ".join(shown)}.</p>' if shown else ""


def render_scores(report: ReportData) -> str:
    """The CLAP scores: how many clips, how many without a score, the mean, and the histogram with the review threshold."""
    data = report.scores
    if data is None:
        if report.inputs.top_label_scores_csv:
            return ""
        return _missing(_flag("--top_label_scores_csv"), "the scores file from features_clap_text.py: rows i, path, label, score")
    finite = data.finite
    n = len(data.rows)
    items = [
        _figure("clips", "Clips", str(n), n),
        _figure("scored", "Clips with a score", str(finite.size), int(finite.size)),
        _figure("nan", "Clips with score nan", str(data.n_nan), data.n_nan, "no usable label; left out of the mean"),
        _figure("mean", "Mean score", _num(data.mean), repr(data.mean)),
    ]
    if finite.size:
        items += [
            _figure("min", "Lowest", _num(float(finite.min())), repr(float(finite.min()))),
            _figure("median", "Median", _num(float(np.median(finite))), repr(float(np.median(finite)))),
            _figure("max", "Highest", _num(float(finite.max())), repr(float(finite.max()))),
        ]
    if data.threshold is not None:
        items.append(
            _figure("threshold", "Review threshold", _num(data.threshold), repr(data.threshold), f"{data.n_at_or_below_threshold} clips at or below it")
        )
    body = [_source(data.path), _figures(items)]
    if not finite.size:
        body.append(
            f'<p class="empty">No clip has a score: all {n} are nan (no usable label, or the scores were not computed), '
            f"so there is no histogram.</p>"
        )
    else:
        from auditoryhum.plots import png_bytes, save_score_histogram

        label = f"review threshold {data.threshold:.4f}" if data.threshold is not None else ""
        png = png_bytes(save_score_histogram, finite, data.threshold, label, f"CLAP scores of {finite.size} clips")
        body.append(_img(png, f"Histogram of the CLAP scores of the {finite.size} scored clips", "scores"))
        body.append(f'<p class="explain">Review threshold: {_e(data.threshold_rule)}.</p>')
    return "".join(body)


def render_selection(report: ReportData) -> str:
    """The review selection, worst first, each clip with a player, its kept label, score and candidates."""
    data = report.selection
    if data is None:
        if report.inputs.selection_csv:
            return ""
        return _missing(_flag("--selection_csv"), "the review selection from util_select_review.py")
    rows = data.rows
    n_nan = sum(1 for r in rows if math.isnan(r.score))
    items = [_figure("selected", "Clips selected", str(len(rows)), len(rows)), _figure("selected-nan", "of them with no usable label", str(n_nan), n_nan)]
    body = [_source(data.path), _figures(items)]
    if not rows:
        body.append('<p class="empty">The selection is empty.</p>')
        return "".join(body)
    trs = []
    for rank, (row, src) in enumerate(zip(rows, data.sources), start=1):
        preload = "metadata" if rank <= _PRELOAD_FIRST else "none"
        score_class = "num nan" if math.isnan(row.score) else "num"
        trs.append(
            f'<tr data-line="{row.line}"><td class="num">{rank}</td><td class="num">{row.line}</td>'
            f'<td><audio controls preload="{preload}" src="{_e(src)}" aria-label="Clip on line {row.line}"></audio>'
            f'<div class="path">{_e(row.path)}</div></td>'
            f"<td>{_label(row.label)}</td>"
            f'<td class="{score_class}" title="{_e(repr(row.score))}">{_num(row.score)}</td>'
            f'<td class="candidates">{_e(row.candidates) if row.candidates.strip() else _label("")}</td></tr>'
        )
    body.append(
        '<div class="table-wrap"><table id="selection-table"><thead><tr><th scope="col">#</th><th scope="col">Line</th>'
        '<th scope="col">Clip</th><th scope="col">Kept label</th><th scope="col">Score</th>'
        f'<th scope="col">Model&rsquo;s candidates</th></tr></thead><tbody>{"".join(trs)}</tbody></table></div>'
    )
    return "".join(body)


def render_boost(report: ReportData) -> str:
    """The annotated clips and the mean score over them before and after the human annotations."""
    data = report.boost
    inputs = report.inputs
    if data is None:
        if inputs.annotations:
            return ""
        return _missing(
            f"{_flag('--annotations')} and {_flag('--scores_with_human_csv')}",
            "the human annotations, and the scores file made from the labels merged with them",
        )
    items = [_figure("annotated", "Clips annotated", str(len(data.clips)), len(data.clips), f"of {data.n_lines} lines")]
    boost = data.boost
    if boost is not None:
        items += [
            _figure("boost-used", "Annotated clips with both scores", str(boost.n_used), boost.n_used),
            _figure("boost-before", "Mean score, model labels", _num(boost.mean_without), repr(boost.mean_without)),
            _figure("boost-after", "Mean score, with human labels", _num(boost.mean_with), repr(boost.mean_with)),
            _figure("boost-diff", "Score boost", _num(boost.difference, sign=True), repr(boost.difference)),
        ]
    body = [_source(data.annotations_path, data.with_human_path), _figures(items)]
    if boost is None and not inputs.scores_with_human_csv:
        body.append(
            f'<p class="missing">No score boost: give {_flag("--scores_with_human_csv")} (the scores file '
            f"features_clap_text.py makes from the labels merged with these annotations) and "
            f"{_flag('--top_label_scores_csv')}.</p>"
        )
    elif boost is not None and boost.n_used < boost.n_annotated:
        body.append(f'<p class="explain">{boost.n_annotated - boost.n_used} annotated clips have score nan before or after and are left out of both means.</p>')
    if not data.clips:
        body.append('<p class="empty">The annotations file has no non-blank line.</p>')
        return "".join(body)
    trs = []
    for clip in data.clips[:_MAX_ANNOTATED_ROWS]:
        change = None
        if clip.score_before is not None and clip.score_after is not None:
            change = clip.score_after - clip.score_before
        trs.append(
            f'<tr data-line="{clip.line}"><td class="num">{clip.line}</td>'
            f'<td class="path">{_e(clip.path) if clip.path else _label(None)}</td>'
            f"<td>{_e(clip.annotation)}</td><td>{_label(clip.label_before)}</td><td>{_label(clip.label_after)}</td>"
            f'<td class="num">{_num(clip.score_before) if clip.score_before is not None else "&ndash;"}</td>'
            f'<td class="num">{_num(clip.score_after) if clip.score_after is not None else "&ndash;"}</td>'
            f'<td class="num">{_num(change, sign=True) if change is not None else "&ndash;"}</td></tr>'
        )
    more = ""
    if len(data.clips) > _MAX_ANNOTATED_ROWS:
        more = f'<p class="explain">The first {_MAX_ANNOTATED_ROWS} of {len(data.clips)} annotated clips are listed; the figures above cover all of them.</p>'
    body.append(
        '<div class="table-wrap"><table id="boost-table"><thead><tr><th scope="col">Line</th><th scope="col">Clip</th>'
        '<th scope="col">Human annotation</th><th scope="col">Kept label before</th><th scope="col">Kept label after</th>'
        '<th scope="col">Score before</th><th scope="col">Score after</th><th scope="col">Change</th></tr></thead>'
        f"<tbody>{''.join(trs)}</tbody></table></div>{more}"
    )
    return "".join(body)


def render_sweep(report: ReportData) -> str:
    """The silhouette and adjusted curves against k, with the chosen k (highest adjusted score)."""
    data = report.sweep
    if data is None:
        if report.inputs.sweep_csv:
            return ""
        return _missing(_flag("--sweep_csv"), "the k-sweep table from cluster_sweep.py")
    items = [_figure("k-range", "k swept", f"{int(data.ks.min())} to {int(data.ks.max())}", f"{int(data.ks.min())}-{int(data.ks.max())}")]
    if data.chosen_k is not None:
        sil, adj = data.at(data.chosen_k)
        items += [
            _figure("chosen-k", "Chosen k", str(data.chosen_k), data.chosen_k, "highest adjusted score (recorded by the sweep)"),
            _figure("chosen-silhouette", "Silhouette at chosen k", _num(sil), repr(sil)),
            _figure("chosen-adjusted", "Adjusted score at chosen k", _num(adj), repr(adj)),
        ]
    if data.best_silhouette_k is not None:
        best_sil, _ = data.at(data.best_silhouette_k)
        items.append(_figure("best-k", "Highest silhouette at k", str(data.best_silhouette_k), data.best_silhouette_k, f"silhouette {_num(best_sil)}"))
    if data.penalty is not None:
        items.append(_figure("penalty", "Penalty \u03bb", f"{data.penalty:g}", repr(data.penalty), "adjusted = silhouette &minus; &lambda; k"))
    body = [_source(data.path), _figures(items)]
    if data.decision_problem:
        body.append(f'<p class="empty">{html.escape(data.decision_problem)}</p>')
    elif data.chosen_k is None:
        body.append('<p class="empty">No k has a defined score, so none is chosen and there is no plot.</p>')
        return "".join(body)
    if not np.any(np.isfinite(data.silhouette)):
        return "".join(body)
    from auditoryhum.plots import png_bytes, save_sweep_plot

    title = f"Silhouette sweep, k = {int(data.ks.min())}..{int(data.ks.max())}"
    penalty = data.penalty if data.penalty is not None else math.nan
    png = png_bytes(save_sweep_plot, data.ks, data.silhouette, data.adjusted, data.chosen_k, penalty, title)
    body.append(_img(png, f"Silhouette and adjusted score against k; chosen k = {data.chosen_k}", "sweep"))
    return "".join(body)


def render_tsne(report: ReportData) -> str:
    """The t-SNE scatter of a clustering, embedded as it was drawn."""
    image = report.tsne
    if image is None:
        if report.inputs.tsne_png:
            return ""
        return _missing(_flag("--tsne_png"), "the --png_plot of a cluster_*.py run")
    return _source(report.inputs.tsne_png) + _img(image.data, f"t-SNE plot ({image.width} x {image.height} px)", "tsne")


def _top_labels_html(labels: Sequence[Tuple[str, int]], n_distinct: int) -> str:
    parts = [f'<li>{_label(text)} <span class="count">({count})</span></li>' for text, count in labels]
    more = f'<li class="more">+ {n_distinct - len(labels)} more</li>' if n_distinct > len(labels) else ""
    return f'<ul class="top-labels">{"".join(parts)}{more}</ul>'


def _bar(share: float) -> str:
    # An inline SVG (no style attribute, which the page's policy would block).
    width = max(0.0, min(100.0, 100.0 * share))
    return f'<svg class="bar" viewBox="0 0 100 8" width="100" height="8" aria-hidden="true"><rect class="bar-bg" width="100" height="8"></rect><rect class="bar-fg" width="{width:.2f}" height="8"></rect></svg>'


def render_clusters(report: ReportData) -> str:
    """The cluster table: size, composite label (with a taxonomy) and top labels with counts (with the scores file)."""
    data = report.clusters
    inputs = report.inputs
    if data is None:
        if inputs.cluster_csv or inputs.taxonomy_csv:
            return ""
        return _missing(
            f"{_flag('--cluster_csv')} (and {_flag('--top_label_scores_csv')} for the labels, {_flag('--taxonomy_csv')} for composite labels)",
            "the cluster ids from cluster_*.py",
        )
    rows = data.rows
    n_noise = next((r.size for r in rows if r.cluster == -1), 0) or 0
    # -2: clips without a label (auditoryhum.clustering.algorithms.NO_LABEL_CLUSTER), left out of clustering.
    n_no_label = next((r.size for r in rows if r.cluster == -2), 0) or 0
    n_clusters = sum(1 for r in rows if r.cluster >= 0)
    items = [_figure("n-clusters", "Clusters", str(n_clusters), n_clusters)]
    if data.n_clips is not None:
        items.insert(0, _figure("cluster-clips", "Clips", str(data.n_clips), data.n_clips))
    if n_noise:
        items.append(_figure("noise", "Noise clips (HDBSCAN -1)", str(n_noise), n_noise))
    if n_no_label:
        items.append(_figure("no-label", "Clips without a label (-2, not clustered)", str(n_no_label), n_no_label))
    if data.n_labels is not None:
        items += [
            _figure("n-labels", "Distinct labels", str(data.n_labels), data.n_labels),
            _figure("shared-labels", "Labels in more than one cluster", str(data.n_shared_labels), data.n_shared_labels),
        ]
    body = [_source(inputs.cluster_csv, inputs.top_label_scores_csv if data.has_labels else None, inputs.taxonomy_csv if data.has_taxonomy else None), _figures(items)]
    notes = []
    if not data.has_taxonomy:
        notes.append(f"no composite labels: give {_flag('--taxonomy_csv')} from composite_label.py")
    if not data.has_labels and inputs.cluster_csv:
        notes.append(f"no label counts: give {_flag('--top_label_scores_csv')}, the scores file the clustered labels came from")
    if notes:
        body.append(f'<p class="missing">{"; ".join(n[0].upper() + n[1:] for n in notes)}.</p>')
    trs = []
    for row in rows:
        name = {-1: "noise", -2: "no label"}.get(row.cluster, str(row.cluster))
        share = (row.size / data.n_clips) if (row.size is not None and data.n_clips) else None
        composite = _e(row.composite_label) if row.composite_label else '<span class="none">&ndash;</span>'
        if row.top_labels is not None:
            top = _top_labels_html(row.top_labels, row.n_distinct or 0)
        elif row.taxonomy_top_labels:
            top = _e(row.taxonomy_top_labels)
        else:
            top = '<span class="none">&ndash;</span>'
        share_html = f"{100 * share:.1f} % {_bar(share)}" if share is not None else "&ndash;"
        trs.append(
            f'<tr data-cluster="{row.cluster}"><th scope="row" class="num">{name}</th>'
            f'<td class="num size">{row.size if row.size is not None else "&ndash;"}</td><td class="share">{share_html}</td>'
            f'<td class="composite">{composite}</td><td>{top}</td>'
            f'<td class="num">{row.n_distinct if row.n_distinct is not None else "&ndash;"}</td></tr>'
        )
    body.append(
        '<div class="table-wrap"><table id="cluster-table"><thead><tr><th scope="col">Cluster</th><th scope="col">Clips</th>'
        '<th scope="col">Share</th><th scope="col">Composite label</th><th scope="col">Top labels (clips)</th>'
        f'<th scope="col">Distinct labels</th></tr></thead><tbody>{"".join(trs)}</tbody></table></div>'
    )
    return "".join(body)


def command_listing(entries: Sequence[dict]) -> str:
    """The runs of a run log as a POSIX shell listing: a comment per run (time, exit code,
    duration), a ``cd`` where the working folder changes, then the command; a failed command
    is kept as a comment, so pasting the listing repeats the successful runs.

    Parameters
    ----------
    entries : sequence of dict
        Run-log records, in order.

    Returns
    -------
    text : str
    """
    lines = []
    cwd = None
    for number, entry in enumerate(entries, start=1):
        code = entry.get("exit_code")
        duration = entry.get("duration_s")
        when = entry.get("started", "?")
        took = f", {duration:.1f} s" if isinstance(duration, (int, float)) else ""
        status = "ok" if code == 0 else f"FAILED, exit {code}"
        lines.append(f"# {number}. {when}  {entry['command']}  ({status}{took})")
        if entry.get("cwd") and entry["cwd"] != cwd:
            cwd = entry["cwd"]
            lines.append(shlex.join(["cd", cwd]))
        shell = entry.get("shell") or shlex.join(entry["argv"])
        lines.append(shell if code == 0 else f"# {shell}")
    return "\n".join(lines) + ("\n" if lines else "")


def _distinct(values: Sequence[object]) -> List[Tuple[str, List[int]]]:
    """Distinct JSON values with the 1-based runs that recorded each, in order of first appearance."""
    seen: Dict[str, List[int]] = {}
    for number, value in enumerate(values, start=1):
        if value is None:
            continue
        key = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        seen.setdefault(key, []).append(number)
    return list(seen.items())


def _runs_text(numbers: Sequence[int], total: int) -> str:
    if len(numbers) == total:
        return "all runs"
    return "run" + ("s " if len(numbers) > 1 else " ") + _few(list(numbers))


def _versions_table(rows: List[Tuple[str, List[Tuple[str, List[int]]]]], total: int) -> str:
    trs = []
    for name, values in rows:
        cells = "<br>".join(
            f"<code>{_e(v)}</code>" + ("" if len(runs) == total else f' <span class="fig-note">({_runs_text(runs, total)})</span>') for v, runs in values
        )
        trs.append(f'<tr><th scope="row">{_e(name)}</th><td>{cells}</td></tr>')
    return f'<table class="versions"><tbody>{"".join(trs)}</tbody></table>'


def _parameters_html(parameters: dict) -> str:
    return f'<pre class="params">{_e(json.dumps(parameters, indent=2, sort_keys=True))}</pre>'


def render_runs(report: ReportData) -> str:
    """The run manifest: the commands in order as a shell listing, the versions and the fixed seeds and hyper-parameters."""
    log = report.run_log
    toolkit = report.toolkit
    if log is None:
        if report.inputs.run_log:
            intro = ""
        elif report.inputs.run_manifest:
            href = _e(audio_src(report.inputs.run_manifest, os.path.dirname(os.path.abspath(report.page_path))))
            intro = (
                f'<p class="source">This run is recorded in its manifest <a href="{href}"><code>'
                f"{_e(os.path.basename(report.inputs.run_manifest))}</code></a>: each stage of "
                f"<code>auditoryhum run</code> with its options, the content fingerprints of its inputs and "
                f"outputs, its finish time and the library versions.</p>"
            )
        else:
            intro = (
                f'<p class="missing">Not given: {_flag("--run_log")}. Set the environment variable '
                f"<code>AUDITORYHUM_RUN_LOG=run_log.jsonl</code> before running the commands: each then appends "
                f"one line (command, exit code, versions, seeds), and this report lists them.</p>"
            )
        versions = [(k, [(v, [1])]) for k, v in toolkit.get("versions", {}).items()]
        if toolkit.get("git_commit"):
            versions.append(("git commit", [(toolkit["git_commit"], [1])]))
        return (
            intro
            + "<h3>The toolkit that made this report</h3>"
            + _versions_table(versions, 1)
            + "<p>The time and the versions of Python and the libraries are not on this page, so that the same "
              "inputs give the same page, byte for byte: the run log records them for each command, and "
              "<code>auditoryhum run</code> for each stage in its <code>manifest.json</code>.</p>"
            + "<h3>Fixed seeds and hyper-parameters</h3>"
            + _parameters_html(toolkit.get("parameters", {}))
        )
    entries = log.entries
    n = len(entries)
    failed = [i for i, e in enumerate(entries, start=1) if e.get("exit_code") != 0]
    items = [
        _figure("runs", "Commands recorded", str(n), n),
        _figure("runs-failed", "Failed", str(len(failed)), len(failed), f"runs {_few(failed)}" if failed else ""),
    ]
    body = [_source(log.path), _figures(items)]
    if not entries:
        body.append('<p class="empty">The run log holds no runs.</p>')
        return "".join(body)
    body.append(
        "<h3>Commands</h3><p class=\"explain\">In the order they ran; paste into a POSIX shell to repeat them "
        "(failed runs are kept as comments).</p>"
        f'<pre class="listing" id="listing">{_e(command_listing(entries))}</pre>'
    )
    trs = []
    for number, e in enumerate(entries, start=1):
        code = e.get("exit_code")
        duration = e.get("duration_s")
        trs.append(
            f'<tr class="{"ok" if code == 0 else "failed"}"><td class="num">{number}</td><td>{_e(e["command"])}</td>'
            f'<td>{_e(e.get("started", "?"))}</td>'
            f'<td class="num">{_e(f"{duration:.1f} s") if isinstance(duration, (int, float)) else "?"}</td>'
            f'<td class="num">{_e(code)}</td></tr>'
        )
    body.append(
        '<div class="table-wrap"><table id="runs-table"><thead><tr><th scope="col">#</th><th scope="col">Command</th>'
        '<th scope="col">Started (UTC)</th><th scope="col">Took</th><th scope="col">Exit code</th></tr></thead>'
        f'<tbody>{"".join(trs)}</tbody></table></div>'
    )
    names: List[str] = []
    for e in entries:
        for name in (e.get("versions") or {}):
            if name not in names:
                names.append(name)
    version_rows = [(name, _distinct([(e.get("versions") or {}).get(name) for e in entries])) for name in names]
    version_rows.append(("git commit", _distinct([e.get("git_commit") for e in entries])))
    version_rows.append(("platform", _distinct([e.get("platform") for e in entries])))
    version_rows = [(name, values) for name, values in version_rows if values]
    body.append(
        "<h3>Versions</h3><p class=\"explain\">As each run recorded them; model libraries are recorded only by the runs that loaded them.</p>"
        + _versions_table(version_rows, n)
    )
    parameters = _distinct([e.get("parameters") for e in entries])
    body.append("<h3>Fixed seeds and hyper-parameters</h3>")
    if not parameters:
        body.append('<p class="empty">The runs recorded none.</p>')
    for key, runs in parameters:
        if len(parameters) > 1:
            body.append(f'<p class="explain">Recorded by {_runs_text(runs, n)}:</p>')
        body.append(_parameters_html(json.loads(key)))
    return "".join(body)


_RENDERERS = {
    "scores": render_scores,
    "selection": render_selection,
    "boost": render_boost,
    "sweep": render_sweep,
    "tsne": render_tsne,
    "clusters": render_clusters,
    "runs": render_runs,
}


def render_summary(report: ReportData) -> str:
    """The key numbers of every section at the top, each linking to its section."""
    items = []
    if report.scores is not None:
        s = report.scores
        if s.finite.size:
            items.append(f'<li><a href="#scores">Mean CLAP score</a> <strong>{_num(s.mean)}</strong> over {s.finite.size} of {len(s.rows)} clips ({s.n_nan} nan)</li>')
        else:
            items.append(f'<li><a href="#scores">CLAP scores</a> <strong>none</strong>: all {len(s.rows)} clips have score nan</li>')
    if report.selection is not None:
        items.append(f'<li><a href="#selection">Clips selected for review</a> <strong>{len(report.selection.rows)}</strong></li>')
    if report.boost is not None:
        b = report.boost
        if b.boost is not None:
            items.append(
                f'<li><a href="#boost">Score boost from human labels</a> <strong>{_num(b.boost.difference, sign=True)}</strong> '
                f"({_num(b.boost.mean_without)} &rarr; {_num(b.boost.mean_with)} over {b.boost.n_used} clips)</li>"
            )
        else:
            items.append(f'<li><a href="#boost">Clips annotated by a person</a> <strong>{len(b.clips)}</strong></li>')
    if report.sweep is not None and report.sweep.chosen_k is not None:
        items.append(f'<li><a href="#sweep">Chosen k</a> <strong>{report.sweep.chosen_k}</strong></li>')
    if report.clusters is not None:
        n_clusters = sum(1 for r in report.clusters.rows if r.cluster >= 0)
        named = sum(1 for r in report.clusters.rows if r.composite_label)
        extra = f", {named} with a composite label" if report.clusters.has_taxonomy else ""
        items.append(f'<li><a href="#clusters">Clusters</a> <strong>{n_clusters}</strong>{extra}</li>')
    if report.run_log is not None:
        items.append(f'<li><a href="#runs">Commands recorded</a> <strong>{len(report.run_log.entries)}</strong></li>')
    not_given = [title for key, title in SECTIONS if not report.shown(key) and key not in report.problems]
    problems = [title for key, title in SECTIONS if key in report.problems]
    parts = [f'<ul class="glance">{"".join(items)}</ul>' if items else '<p class="empty">No artefact was given or readable.</p>']
    if problems:
        parts.append(f'<p class="problem">With problems (see the section): {_e(", ".join(problems))}.</p>')
    if not_given:
        parts.append(f'<p class="missing">Not given: {_e(", ".join(not_given))}.</p>')
    return f'<section id="summary" class="section" aria-labelledby="summary-title"><h2 id="summary-title">At a glance</h2>{"".join(parts)}</section>'


def _asset(name: str) -> str:
    return resources.files("auditoryhum").joinpath("assets", name).read_text(encoding="utf-8")


def render_report(report: ReportData, title: Optional[str] = None) -> str:
    """The whole report page for ``report``.

    Parameters
    ----------
    report : ReportData
        From :func:`gather`.
    title : str, optional
        Default :data:`DEFAULT_TITLE`.

    Returns
    -------
    html : str
    """
    css = _asset("report.css")
    if "</style" in css.lower():
        raise ValueError("report css asset must not contain </style")
    csp = "; ".join(
        [
            "default-src 'none'",
            f"style-src {csp_hash(css)}",
            "img-src data:",
            # file: for a report opened from disk, 'self' for the same folder served over http.
            "media-src 'self' file:",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    sections = []
    toc = []
    for key, heading in SECTIONS:
        problems = "".join(f'<p class="problem" role="note">{_e(p)}</p>' for p in report.problems.get(key, []))
        state = "shown" if report.shown(key) else ("problem" if key in report.problems else "missing")
        sections.append(
            f'<section id="{key}" class="section {state}" aria-labelledby="{key}-title">'
            f'<h2 id="{key}-title">{_e(heading)}</h2>{problems}{_RENDERERS[key](report)}</section>'
        )
        toc.append(f'<li class="{state}"><a href="#{key}">{_e(heading)}</a></li>')
    toolkit = report.toolkit
    commit = toolkit.get("git_commit")
    version = toolkit.get("versions", {}).get("auditoryhum", "?")
    made = f"Made by AuditoryHuM {_e(version)}" + (f" (git commit <code>{_e(commit[:12])}</code>)" if commit else "") + "."
    footer = f'<p>Made with: <code class="made-by">{_e(report.made_by)}</code></p>' if report.made_by else ""
    values = {
        "csp": _e(csp),
        "title": _e(title or DEFAULT_TITLE),
        "made": made,
        "toc": "".join(toc),
        "summary": render_summary(report),
        "sections": "\n".join(sections),
        "footer": footer,
        "css": css,
    }
    # One pass over the template: substituted text is never scanned for placeholders again.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _asset("report.html"))


def write_report(page_path: str, report: ReportData, title: Optional[str] = None) -> None:
    """Render the report (see :func:`render_report`) and write it atomically to ``page_path``."""
    write_text(page_path, render_report(report, title))

"""Human in the loop: review selection, merging annotations, and the score boost they bring."""

import math
from dataclasses import dataclass, field
from typing import Any, List, Optional

from auditoryhum.stages._base import MentionError, StageResult, guarded, mention


@dataclass
class ReviewResult(StageResult):
    """What :func:`select_review` picked and wrote.

    Attributes
    ----------
    selected : list of SelectionRow
        The selected clips, worst first (``line`` is 1-based), as in the selection CSV.
    n_clips : int
        Rows of the scores file.
    summary : str
        One sentence saying what was selected and by which rule (also on the review page).
    parts : list of str
        The pieces of that sentence: ``"<n> with no usable label"``, ``"<n> with <rule>, scores ..."``.
    n_ties_left_out : int
        Unselected clips whose score equals the cut-off.
    cutoff : float
        The last selected score (NaN when no scored clip was selected).
    """

    selected: List[Any] = field(default_factory=list)
    n_clips: int = 0
    summary: str = ""
    parts: List[str] = field(default_factory=list)
    n_ties_left_out: int = 0
    cutoff: float = math.nan


def _format_range(low: float, high: float) -> str:
    return f"{low:.6g}" if low == high else f"{low:.6g} to {high:.6g}"


def select_review(top_label_scores_csv: str, text_label_csv: str, *, fraction: Optional[float] = None,
                  threshold: Optional[float] = None, count: Optional[int] = None,
                  selection_csv: Optional[str] = None, html: Optional[str] = None) -> ReviewResult:
    """Pick the worst-scored clips for human review; write a selection CSV and/or the review page.

    Parameters
    ----------
    top_label_scores_csv : str
        Scores file (rows ``<i>, <path>, <label>, <score>``).
    text_label_csv : str
        The label file it was made from; its lines are shown as each clip's candidates.
    fraction, threshold, count : optional
        At most one: the ``ceil(N x fraction)`` lowest scores (default: the paper's 0.01), every
        score <= ``threshold``, or the ``count`` lowest. Clips with no usable label (NaN) are
        always selected, first.
    selection_csv : str, optional
        Output: header ``line,path,label,score,candidates``, the selected clips worst first.
    html : str, optional
        Output: the self-contained review page (audio paths relative to it).
        At least one of ``selection_csv`` and ``html`` is required.
    """
    from auditoryhum.errors import ParameterError
    from auditoryhum.validation import fraction as check_fraction, path_args, positive_int

    path_args(top_label_scores_csv=top_label_scores_csv, text_label_csv=text_label_csv, selection_csv=selection_csv,
              html=html, optional=("selection_csv", "html"))
    given = [n for n, v in (("fraction", fraction), ("threshold", threshold), ("count", count)) if v is not None]
    if len(given) > 1:
        raise ParameterError(given[1], f"cannot be given with {given[0]}; choose one rule")
    if fraction is not None:
        fraction = check_fraction(fraction, "fraction")
    if count is not None:
        count = positive_int(count, "count")
    if threshold is not None:
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            raise ParameterError("threshold", f"must be a number, got {threshold!r}") from None
        if math.isnan(threshold):
            raise ParameterError("threshold", "must be a number, not nan")
    if not selection_csv and not html:
        raise MentionError(f"nothing to write; give {mention('selection_csv')}, {mention('html')} or both")
    with guarded("select_review", {"top_label_scores_csv": top_label_scores_csv, "text_label_csv": text_label_csv},
                 {"selection_csv": selection_csv, "html": html}):
        return _select(top_label_scores_csv, text_label_csv, fraction, threshold, count, selection_csv, html)


def _select(scores_path, labels_path, fraction, threshold, count, selection_csv, html) -> ReviewResult:
    import os

    from auditoryhum.console import note, warn
    from auditoryhum.errors import UserError
    from auditoryhum.hitl import select_for_review
    from auditoryhum.io.artefacts import SelectionRow, check_aligned, read_label_file, read_scores, write_selection

    score_rows = read_scores(scores_path)
    label_lines = read_label_file(labels_path)
    if not score_rows:
        raise UserError(f"scores file {scores_path} is empty; there are no clips to select from")
    check_aligned(f"scores file {scores_path}", len(score_rows), f"label file {labels_path}", len(label_lines))
    for number, row in enumerate(score_rows, start=1):
        if row.index != number:
            warn(f"scores file {scores_path} line {number} has index {row.index}; "
                 f"the selection uses line numbers, which the label and annotations files align to")
            break

    pick = select_for_review([r.score for r in score_rows], fraction=fraction, threshold=threshold, count=count)
    selected = [SelectionRow(i + 1, score_rows[i].path, score_rows[i].label, score_rows[i].score, label_lines[i])
                for i in pick.rows]
    scored = [score_rows[i].score for i in pick.scored_rows]
    parts = []
    if pick.n_unscored:
        parts.append(f"{pick.n_unscored} with no usable label")
    parts.append(f"{pick.n_scored_selected} with {pick.rule}" + (f", scores {_format_range(scored[0], scored[-1])}" if scored else ""))
    summary = f"{len(selected)} of {pick.n_clips} clips selected for review, worst first: " + "; ".join(parts) + "."
    cutoff = scored[-1] if scored else math.nan
    if not selected:
        warn("no clips were selected; the outputs list none")
    outputs = {}
    if selection_csv:
        write_selection(selection_csv, selected)
        outputs["selection_csv"] = str(selection_csv)
        note(f"selection -> {selection_csv}")
    if html:
        from auditoryhum.review_page import write_review_page

        missing = [r.path for r in selected if not os.path.isfile(r.path)]
        if missing:
            warn(f"{len(missing)} of {len(selected)} selected clips' audio files are not found from the current folder "
                 f"(first: {missing[0]}); their players on the page will not play. Run from the folder the scores "
                 f"file's paths are relative to.")
        write_review_page(html, selected, pick.n_clips, summary, f"Scores file: {scores_path}. Label file: {labels_path}.")
        outputs["html"] = str(html)
        note(f"review page -> {html} (keep it where it is relative to the audio, or move both together)")
    return ReviewResult(outputs=outputs, selected=selected, n_clips=pick.n_clips, summary=summary, parts=parts,
                        n_ties_left_out=pick.n_ties_left_out, cutoff=cutoff)


@dataclass
class MergeResult(StageResult):
    """What :func:`merge_labels` wrote: ``lines`` (the merged file), ``n_replaced`` (lines taken
    from the annotations) and ``n_lines``."""

    lines: List[str] = field(default_factory=list)
    n_replaced: int = 0
    n_lines: int = 0


def merge_labels(csv1: str, csv2: str, csv3: str) -> MergeResult:
    """Merge human annotations into MLLM labels: line i of ``csv3`` is the annotation if any, else the label.

    Parameters
    ----------
    csv1 : str
        MLLM label file, one line per clip.
    csv2 : str
        Human annotations, line-aligned, blank = none; may be shorter.
    csv3 : str
        Output label file (as many lines as ``csv1``); must differ from both inputs.
    """
    from auditoryhum.validation import path_args

    path_args(csv1=csv1, csv2=csv2, csv3=csv3)
    with guarded("merge", {"csv1": csv1, "csv2": csv2}, {"csv3": csv3}):
        from auditoryhum.hitl import is_annotated, merge_labels as merge
        from auditoryhum.io.artefacts import check_aligned, read_annotations, read_label_file, write_lines

        model_lines = read_label_file(csv1)
        human_lines = read_annotations(csv2)
        check_aligned(f"label file {csv1}", len(model_lines), f"annotations file {csv2}", len(human_lines), b_may_be_shorter=True)
        merged = merge(model_lines, human_lines)
        write_lines(csv3, merged)
    return MergeResult(outputs={"csv3": str(csv3)}, lines=merged, n_lines=len(model_lines),
                       n_replaced=sum(1 for line in human_lines if is_annotated(line)))


@dataclass
class BoostResult(StageResult):
    """The mean score of the annotated clips without and with human input (:func:`score_boost`).

    ``n_annotated`` annotated lines, ``n_used`` of them with both scores (not NaN), and
    ``difference = mean_with - mean_without``.
    """

    mean_without: float = math.nan
    mean_with: float = math.nan
    difference: float = math.nan
    n_annotated: int = 0
    n_used: int = 0

    @property
    def report(self) -> str:
        """What ``util_score_boost.py`` prints (the published three lines)."""
        return f"Difference scores MLLM vs MLLM + human\n{self.mean_without}\n{self.mean_with}\n"


def score_boost(csv1: str, csv2: str, csv3: str) -> BoostResult:
    """Mean CLAP score of the annotated clips from the MLLM labels alone and merged with annotations.

    Parameters
    ----------
    csv1 : str
        Scores file from the MLLM labels alone.
    csv2 : str
        Scores file from the merged labels (same clips, same order).
    csv3 : str
        The annotations file (blank line = not annotated; may be shorter). Nothing is written.

    Raises
    ------
    UserError
        When ``csv1`` and ``csv2`` differ in length, or name different clips in one row (the
        first such row, with both paths), or ``csv3`` is longer or has no annotation.
    """
    from auditoryhum.validation import path_args

    path_args(csv1=csv1, csv2=csv2, csv3=csv3)
    with guarded("score_boost", {"csv1": csv1, "csv2": csv2, "csv3": csv3}, {}):
        from auditoryhum.console import warn
        from auditoryhum.errors import UserError
        from auditoryhum.hitl import score_boost as boost_of
        from auditoryhum.io.artefacts import check_aligned, check_same_clips, read_annotations, read_scores

        without = read_scores(csv1)
        with_human = read_scores(csv2)
        annotations = read_annotations(csv3)
        # Paired row by row: the counts must agree and, where both rows name a clip, the clips too.
        check_same_clips(f"scores file {csv1}", without, f"scores file {csv2}", with_human)
        check_aligned(f"scores file {csv1}", len(without), f"annotations file {csv3}", len(annotations), b_may_be_shorter=True)
        boost = boost_of([r.score for r in without], [r.score for r in with_human], annotations)
        if boost.n_annotated == 0:
            raise UserError(f"annotations file {csv3} has no non-blank line; there is nothing to compare")
        if boost.n_used < boost.n_annotated:
            warn(f"{boost.n_annotated - boost.n_used} annotated rows have a nan score and are left out of both means")
    return BoostResult(mean_without=boost.mean_without, mean_with=boost.mean_with, difference=boost.difference,
                       n_annotated=boost.n_annotated, n_used=boost.n_used)

"""Human in the loop: choosing the clips to review, merging human annotations into model labels, and measuring the score boost."""

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence


def is_annotated(line: str) -> bool:
    """An annotation line counts when it holds anything but whitespace."""
    return bool(line.strip())


def merge_labels(model_lines: Sequence[str], human_lines: Sequence[str]) -> List[str]:
    """Line *i* of the result is ``human_lines[i]`` when non-blank, else ``model_lines[i]``.

    ``human_lines`` may be shorter than ``model_lines`` (annotations end at the last annotated clip).
    """
    if len(human_lines) > len(model_lines):
        raise ValueError("human_lines must not be longer than model_lines")
    merged = list(model_lines)
    for i, line in enumerate(human_lines):
        if is_annotated(line):
            merged[i] = line
    return merged


@dataclass
class ScoreBoost:
    """Mean score over the annotated clips, without and with the human annotations."""

    n_annotated: int
    n_used: int  # annotated rows where both scores are numbers
    mean_without: float
    mean_with: float

    @property
    def difference(self) -> float:
        return self.mean_with - self.mean_without


def score_boost(scores_without: Sequence[float], scores_with: Sequence[float], annotations: Sequence[str]) -> ScoreBoost:
    """Compare the mean score of the annotated rows before and after human input.

    Rows where either score is NaN (no usable label) are left out of both means, so the two
    means are over the same clips.
    """
    rows = [i for i, line in enumerate(annotations) if is_annotated(line)]
    used = [i for i in rows if not (math.isnan(scores_without[i]) or math.isnan(scores_with[i]))]
    if not used:
        return ScoreBoost(len(rows), 0, math.nan, math.nan)
    import numpy as np

    mean_without = float(np.mean([scores_without[i] for i in used]))
    mean_with = float(np.mean([scores_with[i] for i in used]))
    return ScoreBoost(len(rows), len(used), mean_without, mean_with)


# ---------------------------------------------------------------------------------------
# choosing the clips a person reviews

from auditoryhum.recipe import REVIEW_FRACTION as DEFAULT_REVIEW_FRACTION  # noqa: E402


def count_for_fraction(n_clips: int, fraction: float) -> int:
    """How many scored clips ``--fraction`` selects: ``ceil(n_clips * fraction)``.

    Rounding up means at least that share of the clips is reviewed, and any positive fraction
    of a non-empty file selects at least one clip (1 % of 1000 clips is 10, of 150 is 2, of
    50 is 1). The product is rounded to 9 decimals first so that binary floating point does
    not push an exact product up by one (``100 * 0.07`` is ``7.000000000000001``).

    Parameters
    ----------
    n_clips : int >= 0
        Rows in the scores file (every clip, scored or not).
    fraction : float in (0, 1]

    Returns
    -------
    count : int
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if n_clips < 0:
        raise ValueError("n_clips must be >= 0")
    return math.ceil(round(n_clips * fraction, 9))


@dataclass(frozen=True)
class ReviewPick:
    """The clips chosen for review, as 0-based row indices, worst first.

    ``rows`` lists first every row whose score is NaN (no usable label; always selected, in
    file order), then the selected scored rows by ascending score, equal scores in file order.
    """

    rows: List[int]
    n_clips: int
    n_unscored: int  # NaN rows, all of them in ``rows``
    n_scored_selected: int
    rule: str  # how the scored rows were chosen, to follow "<n> with ...", e.g. "score <= 0.1"
    n_ties_left_out: int  # unselected scored rows whose score equals the last selected one

    @property
    def scored_rows(self) -> List[int]:
        return self.rows[self.n_unscored:]


def select_for_review(
    scores: Sequence[float],
    fraction: Optional[float] = None,
    threshold: Optional[float] = None,
    count: Optional[int] = None,
) -> ReviewPick:
    """Pick the clips whose kept label fits the audio worst.

    Exactly one of ``fraction``, ``threshold`` and ``count`` may be given; none means
    ``fraction=DEFAULT_REVIEW_FRACTION``.

    * ``fraction``: the ``count_for_fraction(len(scores), fraction)`` lowest-scored clips.
    * ``threshold``: every clip with ``score <= threshold``.
    * ``count``: the ``count`` lowest-scored clips (all scored clips when there are fewer).

    Clips with score NaN (no usable label) are selected in addition, whatever the rule, and
    listed first. Equal scores are ordered by row, so where a cut falls inside a run of equal
    scores the earlier rows are taken; ``n_ties_left_out`` says how many equal ones were not.

    Parameters
    ----------
    scores : sequence of float
        One score per clip, in file order.
    fraction : float in (0, 1], optional
    threshold : float, optional
        Must not be NaN.
    count : int >= 0, optional

    Returns
    -------
    pick : ReviewPick
    """
    given = [name for name, value in (("fraction", fraction), ("threshold", threshold), ("count", count)) if value is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of fraction, threshold and count (got {', '.join(given)})")
    n_clips = len(scores)
    unscored = [i for i, s in enumerate(scores) if math.isnan(s)]
    ranked = sorted((i for i, s in enumerate(scores) if not math.isnan(s)), key=lambda i: (scores[i], i))
    if threshold is not None:
        if math.isnan(threshold):
            raise ValueError("threshold must be a number, not NaN")
        chosen = [i for i in ranked if scores[i] <= threshold]
        rule = f"score <= {threshold:g}"
    else:
        if count is not None:
            if count < 0:
                raise ValueError(f"count must be >= 0, got {count}")
            wanted = count
            rule = f"the {count} lowest scores"
        else:
            fraction = DEFAULT_REVIEW_FRACTION if fraction is None else fraction
            wanted = count_for_fraction(n_clips, fraction)
            rule = f"the lowest {fraction * 100:g} % of scores (ceil({n_clips} x {fraction:g}) = {wanted})"
        chosen = ranked[:wanted]
    ties = 0
    if chosen and len(chosen) < len(ranked):
        cut = scores[chosen[-1]]
        ties = sum(1 for i in ranked[len(chosen):] if scores[i] == cut)
    return ReviewPick(unscored + chosen, n_clips, len(unscored), len(chosen), rule, ties)

"""Human in the loop: merging human annotations into model labels, and measuring the score boost."""

import math
from dataclasses import dataclass
from typing import List, Sequence


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

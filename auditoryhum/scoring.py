"""CLAP label-audio alignment: the score of every candidate label, and the top label per clip.

Pure computation on embeddings already made (no files, no models). The published rule
(docs/spec.md, features_clap_text.py): the score of a candidate is the cosine similarity between the
clip's audio embedding and the candidate's text embedding; the best candidate is kept, the
first one on ties. A clip without a usable candidate, or whose audio embedding is missing
(a NaN row from a clip that failed to decode), keeps the empty label and a NaN score, which
:func:`mean_score` leaves out.
"""

import math
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

# Norms are clamped to this before dividing, as torch.nn.functional.cosine_similarity does,
# so an all-zero embedding scores 0 instead of raising.
_EPS = 1e-8


@dataclass(frozen=True)
class TopLabel:
    """The kept candidate of one clip and its cosine score (``""`` and NaN when there is none)."""

    label: str
    score: float


NO_LABEL = TopLabel("", math.nan)


def cosine_similarities(audio_row: np.ndarray, text_rows: np.ndarray) -> np.ndarray:
    """Cosine similarity of one audio embedding (D,) with each text embedding (T, D): shape (T,).

    Computed in float64, so that the ranking of close candidates does not depend on float32
    rounding.
    """
    a = np.asarray(audio_row, dtype=np.float64)
    t = np.asarray(text_rows, dtype=np.float64)
    a_norm = max(float(np.linalg.norm(a)), _EPS)
    t_norm = np.maximum(np.linalg.norm(t, axis=1), _EPS)
    return (t @ a) / (t_norm * a_norm)


def keep_best(candidates: Sequence[str], scores: np.ndarray) -> TopLabel:
    """The candidate with the highest score, the first one on ties; :data:`NO_LABEL` when empty."""
    if len(candidates) == 0:
        return NO_LABEL
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(candidates):
        raise ValueError(f"{len(candidates)} candidates but {len(scores)} scores")
    if not np.all(np.isfinite(scores)):
        return NO_LABEL
    best = int(np.argmax(scores))  # argmax returns the first maximum
    return TopLabel(candidates[best], float(scores[best]))


def top_labels(
    audio_rows: np.ndarray,
    clip_candidates: Sequence[Sequence[str]],
    text_index: dict,
    text_rows: np.ndarray,
) -> List[TopLabel]:
    """The kept label and score of every clip.

    Parameters
    ----------
    audio_rows : np.ndarray, shape (N, D)
        Audio embedding of each clip (a NaN row: no embedding, the clip gets :data:`NO_LABEL`).
    clip_candidates : sequence of N sequences of str
        The cleaned candidates of each clip, in label-file order (may be empty).
    text_index : dict
        Candidate text -> its row in ``text_rows``.
    text_rows : np.ndarray, shape (T, D)
        Text embedding of each distinct candidate.

    Returns
    -------
    list of TopLabel
        One per clip, in clip order.
    """
    if len(audio_rows) != len(clip_candidates):
        raise ValueError(f"{len(audio_rows)} audio rows but {len(clip_candidates)} candidate lists")
    result = []
    for row, candidates in zip(audio_rows, clip_candidates):
        if not candidates or not np.all(np.isfinite(row)):
            result.append(NO_LABEL)
            continue
        rows = text_rows[[text_index[c] for c in candidates]]
        result.append(keep_best(candidates, cosine_similarities(row, rows)))
    return result


def mean_score(scores: Sequence[float]) -> float:
    """Mean of the scores that are not NaN (NaN when there are none)."""
    kept = [s for s in scores if not math.isnan(s)]
    return float(np.mean(kept)) if kept else math.nan

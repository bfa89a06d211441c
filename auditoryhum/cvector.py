"""Class vectors (the method's later revision): each clip's CLAP alignment with every kept label.

Pure computation on embeddings already made (no files, no models). A clip's class vector is
the cosine similarity between its CLAP audio embedding and the CLAP text embedding of each
distinct label kept in a scores file, columns in sorted label order; the (N, U) matrix is
then clustered like any other feature file. See docs/revision-2.md.

Policy for missing pieces, consistent with the scoring stage (:mod:`auditoryhum.scoring`):

* the empty label (a clip that had no usable candidate, score NaN) is not a class: it gets no
  column; such a clip still has its audio embedding, so its row is computed like any other;
* a clip whose audio embedding is missing (a NaN row, a clip that failed to decode) gets a
  NaN row, so the file stays line-aligned with the clips; clustering refuses NaN rows with a
  message naming them, as it does for the audio embeddings themselves.
"""

from typing import List, Sequence

import numpy as np

from auditoryhum.scoring import _EPS


def class_labels(kept_labels: Sequence[str]) -> List[str]:
    """The columns of the class vectors: the distinct non-empty kept labels, sorted.

    Sorted by Python's default string order (code points), as the reference script sorts its
    ``list(set(labels))``; the empty label is left out (see the module docstring).

    >>> class_labels(["wind noise", "birds chirping", "", "wind noise"])
    ['birds chirping', 'wind noise']
    """
    return sorted({label for label in kept_labels if label != ""})


def class_vector_matrix(audio_rows: np.ndarray, text_rows: np.ndarray) -> np.ndarray:
    """Cosine similarity of every audio row with every text row: shape (N, U), float32.

    Parameters
    ----------
    audio_rows : np.ndarray, shape (N, D)
        CLAP audio embedding of each clip; a row holding NaN or inf gives a NaN row.
    text_rows : np.ndarray, shape (U, D)
        CLAP text embedding of each class label, in column order.

    Returns
    -------
    np.ndarray, shape (N, U), float32
        Computed in float64 with norms clamped to 1e-8 as :func:`auditoryhum.scoring.cosine_similarities`
        does (so entry ``[i, j]`` is that function's score of label ``j`` for clip ``i``), then
        stored as float32 like the other feature files.
    """
    a = np.asarray(audio_rows, dtype=np.float64)
    t = np.asarray(text_rows, dtype=np.float64)
    if a.ndim != 2 or t.ndim != 2:
        raise ValueError(f"audio_rows and text_rows must be 2-D, got shapes {a.shape} and {t.shape}")
    if t.shape[0] and a.shape[1] != t.shape[1]:
        raise ValueError(f"audio rows are {a.shape[1]}-d but text rows are {t.shape[1]}-d")
    finite = np.all(np.isfinite(a), axis=1)
    out = np.full((a.shape[0], t.shape[0]), np.nan, dtype=np.float64)
    good = a[finite]
    a_norm = np.maximum(np.linalg.norm(good, axis=1), _EPS)
    t_norm = np.maximum(np.linalg.norm(t, axis=1), _EPS)
    out[finite] = (good @ t.T) / np.outer(a_norm, t_norm)
    return out.astype(np.float32)

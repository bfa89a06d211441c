"""Hand-crafted audio features (no neural model): the MFCC baseline of the paper.

Neural embeddings (AST, Qwen2-Audio, Gemma-3n, CLAP, sentence-transformers) live in
:mod:`auditoryhum.models`.
"""

from dataclasses import dataclass, field
from typing import List, Sequence

import numpy as np

from auditoryhum.io.audio import AudioDecodeError, load_audio
from auditoryhum.console import progress

from auditoryhum.recipe import MFCC_PARAMS, MFCC_SAMPLING_RATE  # noqa: F401


def mfcc_vector(y: np.ndarray, sr: int = MFCC_SAMPLING_RATE) -> np.ndarray:
    """Mean over frames of librosa's 20 MFCCs (n_fft 2048, hop 512, window 2048): shape (20,)."""
    import librosa

    return librosa.feature.mfcc(y=y, sr=sr, **MFCC_PARAMS).mean(axis=1)


@dataclass
class FeatureTable:
    """One row per clip; rows of clips that failed are NaN and listed in ``failures``."""

    rows: np.ndarray
    failures: List[str] = field(default_factory=list)


def mfcc_features(paths: Sequence[str]) -> FeatureTable:
    """MFCC vector of every clip, in the given order, shape (N, 20) float32.

    A clip that cannot be decoded gets a NaN row and a message in ``failures``; the others
    are computed regardless, so one bad clip never costs a long run.
    """
    rows = np.full((len(paths), MFCC_PARAMS["n_mfcc"]), np.nan, dtype=np.float32)
    failures = []
    for i, path in enumerate(progress(paths, desc="MFCC", total=len(paths))):
        try:
            y, sr = load_audio(path, MFCC_SAMPLING_RATE)
        except AudioDecodeError as exc:
            failures.append(str(exc))
            continue
        rows[i] = mfcc_vector(y, sr)
    return FeatureTable(rows, failures)

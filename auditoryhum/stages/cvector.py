"""The class-vector stage (``features_cvector.py``): CLAP alignment of every clip with every kept label.

Reads a scores file (``features_clap_text.py``), embeds its distinct kept labels with the CLAP
text tower through the per-(model, text) cache the scoring stage fills (so a run after scoring
usually encodes nothing), takes the clips' CLAP audio embeddings from ``clap_npy`` or computes
them exactly as ``features_clap.py`` does, and writes the (N, U) cosine matrix and its columns
file. The arithmetic and the policy for empty labels and NaN audio rows are in
:mod:`auditoryhum.cvector`.
"""

import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

from auditoryhum.defaults import CLAP_TEXT_BATCH_SIZE
from auditoryhum.stages._base import StageResult, expand_clips
from auditoryhum.validation import path_args

HOLDER = "features-cvector"


@dataclass
class CvectorResult(StageResult):
    """What :func:`class_vectors` did.

    Attributes
    ----------
    labels : list of str
        The columns, in order (also written, one per line, to ``outputs["cvector_labels"]``).
    shape : tuple of int
        ``(N, U)`` of the matrix written to ``outputs["cvector_npy"]``.
    audio_reused : bool
        The audio rows came from ``clap_npy`` (else they were computed).
    text_encoded, text_cached : int
        Labels run through the text encoder in this call, and found in the cache.
    no_audio : list of str
        Paths of the clips whose audio row is NaN (their class-vector row is NaN).
    """

    labels: List[str] = field(default_factory=list)
    shape: Tuple[int, int] = (0, 0)
    audio_reused: bool = False
    text_encoded: int = 0
    text_cached: int = 0
    no_audio: List[str] = field(default_factory=list)


def labels_path(cvector_npy: str) -> str:
    """The columns file of ``cvector_npy``: its path minus ``.npy``, plus ``_labels.txt``.

    >>> labels_path("out/advance_cvector.npy")
    'out/advance_cvector_labels.txt'
    """
    stem = cvector_npy[:-4] if cvector_npy.endswith(".npy") else cvector_npy
    return stem + "_labels.txt"


def _check_scores_match_clips(scores_csv: str, rows, paths: Sequence[str]) -> None:
    from auditoryhum.errors import UserError
    from auditoryhum.io.artefacts import check_aligned

    check_aligned("--filedir (clips)", len(paths), f"scores file {scores_csv} (rows)", len(rows))
    for number, (row, path) in enumerate(zip(rows, paths), start=1):
        # Compared by file name: the scores file may have been written from another folder.
        if os.path.basename(row.path) != os.path.basename(path):
            raise UserError(
                f"scores file {scores_csv} line {number} is for {row.path!r} but clip {number} of --filedir is "
                f"{path!r}; score the same clips (same glob) with features_clap_text.py first"
            )


def class_vectors(
    filedir_or_paths: Union[str, Sequence[str]],
    *,
    clap_model: str,
    scores_csv: str,
    cvector_npy: str,
    clap_npy: Optional[str] = None,
    device: str = "auto",
    batch_size: Optional[int] = None,
    cache_dir: Optional[str] = None,
    no_cache: bool = False,
) -> CvectorResult:
    """Write each clip's class vector: its CLAP cosine with every distinct kept label of ``scores_csv``.

    Parameters
    ----------
    filedir_or_paths : str or sequence of str
        A glob of the clips (``--filedir``, sorted like every stage), or the paths in row order.
    clap_model : str
        CLAP checkpoint (``ClapModel``): folder or hub id; the one that scored ``scores_csv``.
    scores_csv : str
        Scores file (``<i>, <path>, <label>, <score>``), one row per clip in clip order.
    cvector_npy : str
        Output: float32 array (N, U), entry ``[i, j]`` the cosine of clip ``i``'s audio embedding
        with label ``j``'s text embedding. Beside it, atomically too, the columns file
        :func:`labels_path` (``<cvector_npy minus .npy>_labels.txt``): label ``j`` on line ``j + 1``.
    clap_npy : str, optional
        CLAP audio embeddings already made by ``features_clap.py`` with ``clap_model`` (N rows);
        without it they are computed the same way (deterministic per clip), so the rows are equal.
    device : {"auto", "cuda", "mps", "cpu"}, default "auto"
    batch_size : int, optional
        Clips per audio forward pass (default 32 on CUDA, 8 otherwise) and labels per text
        forward pass (default 64); results do not depend on it.
    cache_dir : str, optional
        Text-embedding cache folder (default ``$XDG_CACHE_HOME/auditoryhum``, else ``~/.cache/auditoryhum``).
    no_cache : bool, default False
        Neither read nor write the text-embedding cache.

    Returns
    -------
    CvectorResult
        ``outputs`` has ``cvector_npy`` and ``cvector_labels``; ``failures`` one message per clip
        whose audio could not be embedded (its row is NaN).

    Raises
    ------
    UserError
        Misaligned inputs (clip count, file names, ``clap_npy`` rows), a scores file that keeps
        no label, or embeddings of different widths.
    """
    import numpy as np

    from auditoryhum.console import note, progress_enabled, warn
    from auditoryhum.cvector import class_labels, class_vector_matrix
    from auditoryhum.errors import UserError
    from auditoryhum.io.artefacts import MATRIX_CHUNK_BYTES, MatrixWriter, check_aligned, load_matrix, read_scores, write_lines
    from auditoryhum.io.guard import guard_stage
    from auditoryhum.validation import one_of, optional_positive_int

    one_of(device, ("auto", "cuda", "mps", "cpu"), "device")
    batch_size = optional_positive_int(batch_size, "batch_size")
    path_args(clap_model=clap_model, scores_csv=scores_csv, cvector_npy=cvector_npy, clap_npy=clap_npy,
              optional=("clap_npy",))
    paths, _ = expand_clips(filedir_or_paths, "filedir_or_paths")
    columns_txt = labels_path(cvector_npy)
    inputs = {"filedir": paths, "scores_csv": scores_csv, "clap_npy": clap_npy}
    outputs = {"cvector_npy": cvector_npy, "cvector_labels": columns_txt}

    with guard_stage(inputs=inputs, outputs=outputs, holder=HOLDER):
        rows = read_scores(scores_csv)
        _check_scores_match_clips(scores_csv, rows, paths)
        labels = class_labels([r.label for r in rows])
        if not labels:
            raise UserError(
                f"scores file {scores_csv} keeps no label (every clip's label is empty); "
                f"there is nothing to make class vectors of"
            )

        audio = None
        if clap_npy is not None:
            # Memory-mapped: only the block being turned into class vectors is read.
            audio = load_matrix(clap_npy, require_finite=False, mmap=True)
            check_aligned("--filedir (clips)", len(paths), f"--clap_npy {clap_npy} (rows)", audio.shape[0])

        # The model is loaded only for what is missing: the audio rows, or labels not in the cache.
        from auditoryhum.models.audio_embed import ClapAudioEmbedder, default_batch_size, embed_clips
        from auditoryhum.models.device import resolve_device
        from auditoryhum.models.text_embed import (
            CLAP_TEXT_NAMESPACE,
            ClapTextEncoder,
            clap_model_identity,
            embed_distinct_cached,
        )

        ClapAudioEmbedder.check(clap_model, "--clap_model")
        resolved = []

        def _device():
            if not resolved:
                resolved.append(resolve_device(device))
                note(f"device {resolved[0]}")
            return resolved[0]

        def encode(texts):
            encoder = ClapTextEncoder.load(clap_model, _device())
            return encoder.encode(texts, batch_size or CLAP_TEXT_BATCH_SIZE, show_progress=progress_enabled())

        cache = None
        if not no_cache:
            from auditoryhum.io.text_cache import TextEmbeddingCache, default_cache_dir

            cache = TextEmbeddingCache(cache_dir or default_cache_dir(), CLAP_TEXT_NAMESPACE, clap_model_identity(clap_model))
        text = embed_distinct_cached(labels, encode, cache)
        note(f"{len(labels)} class labels: {text.encoded} encoded, {text.cached} from the cache")

        failures: List[str] = []
        if audio is None:
            embedder = ClapAudioEmbedder.load(clap_model, _device())
            table = embed_clips(paths, embedder, batch_size or default_batch_size(_device()))
            audio, failures = table.rows, list(table.failures)
        if audio.shape[1] != text.rows.shape[1]:
            raise UserError(
                f"--clap_npy {clap_npy} holds {audio.shape[1]}-d rows but --clap_model {clap_model} gives "
                f"{text.rows.shape[1]}-d text embeddings; make the audio embeddings with the same CLAP model"
            )

        # Written block by block: (N, U) float32 is 40 GB at 2,000,000 clips and 5,000 labels.
        n_clips, n_labels = int(audio.shape[0]), len(labels)
        block = max(1, MATRIX_CHUNK_BYTES // (8 * max(n_labels, 1)))
        no_audio = []
        with MatrixWriter(cvector_npy, (n_clips, n_labels), np.float32) as writer:
            for start in range(0, n_clips, block):
                part = class_vector_matrix(audio[start:start + block], text.rows)
                bad = np.flatnonzero(~np.all(np.isfinite(part), axis=1)) if n_labels else []
                no_audio.extend(paths[start + int(i)] for i in bad)
                writer.write(part)
        if no_audio and clap_npy is not None:
            # Computed rows that failed are reported as failures; reused NaN rows only warn, as scoring does.
            has = "clip has" if len(no_audio) == 1 else "clips have"
            warn(f"{len(no_audio)} {has} no audio embedding (NaN row in --clap_npy {clap_npy}); class vector NaN")
        write_lines(columns_txt, labels)

    return CvectorResult(
        outputs=dict(outputs),
        failures=failures,
        labels=labels,
        shape=(n_clips, n_labels),
        audio_reused=clap_npy is not None,
        text_encoded=text.encoded,
        text_cached=text.cached,
        no_audio=no_audio,
    )

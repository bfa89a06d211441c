"""CLAP label scoring: keep each clip's best candidate label by audio-text cosine similarity.

Top level is light: numpy and the CLAP text encoder are imported inside :func:`score_labels`.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Union

from auditoryhum.defaults import CLAP_TEXT_BATCH_SIZE  # candidate texts per CLAP text forward pass
from auditoryhum.recipe import LABEL_WORD_LIMIT
from auditoryhum.stages._base import StageResult, as_parameter, expand_clips, guarded, local_model, mention

# A warning names at most this many clips; the rest are counted.
_MAX_NAMED = 10


@dataclass
class ScoreResult(StageResult):
    """What :func:`score_labels` wrote and found.

    Attributes
    ----------
    mean_score : float
        Mean kept score over the clips that have one (NaN when none has), as the script prints it.
    labels, scores : list
        The kept label (``""`` when none) and its cosine score (NaN) of every clip, in clip order.
    paths : list of str
        The clips, in row order.
    n_distinct, n_encoded, n_cached : int
        Distinct candidate texts; how many were encoded now and how many came from the cache.
    no_candidate, no_audio : list of str
        Clips without a usable candidate label, and clips whose audio row is NaN.
    """

    mean_score: float = float("nan")
    labels: List[str] = field(default_factory=list)
    scores: List[float] = field(default_factory=list)
    paths: List[str] = field(default_factory=list)
    n_distinct: int = 0
    n_encoded: int = 0
    n_cached: int = 0
    no_candidate: List[str] = field(default_factory=list)
    no_audio: List[str] = field(default_factory=list)


def _clips(n: int) -> str:
    return f"{n} clip has" if n == 1 else f"{n} clips have"


def _named(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:_MAX_NAMED])
    return shown + (f" and {len(paths) - _MAX_NAMED} more" if len(paths) > _MAX_NAMED else "")


def score_labels(filedir: Union[str, Sequence[str]], clap_model: str, clap_npy: str, text_label_csv: str,
                 top_label_scores_csv: str, *, device: str = "auto", batch_size: int = CLAP_TEXT_BATCH_SIZE,
                 cache_dir: Optional[str] = None, no_cache: bool = False, label_limit: int = LABEL_WORD_LIMIT,
                 candidates: str = "split") -> ScoreResult:
    """Score every candidate label of every clip with CLAP and keep the best one per clip.

    The published rule: a candidate (cut to its first two words) scores the cosine similarity
    of the clip's CLAP audio embedding and its CLAP text embedding; the best is kept, the first
    on ties. A clip with no usable candidate or a NaN audio row keeps ``""`` and NaN. The word
    limit and what a candidate is are options of the method's later revision (``label_limit``,
    ``candidates``: :func:`auditoryhum.labels.split_candidates`).

    Parameters
    ----------
    filedir : str or sequence of str
        A glob of the clips (sorted) or the clip paths: the paths written in the scores file.
    clap_model : str
        CLAP folder or hub id: the one that made ``clap_npy``.
    clap_npy : str
        Audio embeddings, shape (N, D), one row per clip (``embed_audio(kind="clap")``).
    text_label_csv : str
        Label file: one line of comma-separated candidates per clip.
    top_label_scores_csv : str
        Output: rows ``<i>, <path>, <label>, <score>`` (1-based ``i``).
    device : str
        ``"auto"``, ``"cuda"``, ``"mps"`` or ``"cpu"``.
    batch_size : int
        Candidate texts per forward pass (default 64).
    cache_dir : str, optional
        Text-embedding cache (default ``$XDG_CACHE_HOME/auditoryhum``, else ``~/.cache/auditoryhum``);
        a rerun on known labels loads no model.
    no_cache : bool
        Neither read nor write the cache.
    label_limit : int, default 2
        Words kept per candidate (the published rule: 2); 0 keeps the whole candidate (the
        revision's setting for a dataset's own labels and for captions).
    candidates : {"split", "line"}, default "split"
        ``split``: every comma-separated part of a line is a candidate (published); ``line``:
        the whole line is one candidate (a caption, a class name that holds commas).
    """
    from auditoryhum.models.device import DEVICE_CHOICES
    from auditoryhum.validation import one_of, path_args, positive_int

    path_args(clap_model=clap_model, clap_npy=clap_npy, text_label_csv=text_label_csv,
              top_label_scores_csv=top_label_scores_csv)
    one_of(device, DEVICE_CHOICES, "device")
    batch_size = positive_int(batch_size, "batch_size")
    label_limit, candidates = _candidate_options(label_limit, candidates, "features_clap_text")
    paths, clips = expand_clips(filedir)
    with guarded("features_clap_text",
                 {"filedir": paths, "clap_model": local_model(clap_model), "clap_npy": clap_npy, "text_label_csv": text_label_csv},
                 {"top_label_scores_csv": top_label_scores_csv}):
        import numpy as np

        from auditoryhum.console import note, progress_enabled, warn
        from auditoryhum.errors import UserError
        from auditoryhum.io.artefacts import ScoreRow, check_aligned, load_matrix, read_label_file, write_scores
        from auditoryhum.io.text_cache import TextEmbeddingCache, default_cache_dir
        from auditoryhum.labels import split_candidates
        from auditoryhum.models.loader import check_model_type
        from auditoryhum.models.text_embed import (CLAP_TEXT_NAMESPACE, ClapTextEncoder, clap_model_identity,
                                                   embed_distinct_cached, unique_texts)
        from auditoryhum.scoring import mean_score, top_labels

        lines = read_label_file(text_label_csv)
        check_aligned(clips, len(paths), f"label file {text_label_csv}", len(lines))
        audio = load_matrix(clap_npy, require_finite=False)
        check_aligned(clips, len(paths), f"{mention('clap_npy')} {clap_npy} (rows)", audio.shape[0])
        if audio.dtype.kind != "f":
            audio = audio.astype(np.float32)

        per_clip = [split_candidates(line, label_limit, candidates) for line in lines]
        distinct, _ = unique_texts([c for clip in per_clip for c in clip])
        with as_parameter("clap_model"):
            check_model_type(clap_model, "clap_model", ("clap",), "a CLAP model")

        def encode(texts):
            # Loaded only if some candidate is not cached: a rerun on known labels needs no model.
            from auditoryhum.models.device import resolve_device

            resolved = resolve_device(device)
            note(f"device {resolved}")
            with as_parameter("clap_model"):
                encoder = ClapTextEncoder.load(clap_model, resolved)
            return encoder.encode(texts, batch_size, show_progress=progress_enabled())

        cache = None
        if not no_cache:
            with as_parameter("clap_model"):
                identity = clap_model_identity(clap_model, "clap_model")
            cache = TextEmbeddingCache(cache_dir or default_cache_dir(), CLAP_TEXT_NAMESPACE, identity)
        text = embed_distinct_cached(distinct, encode, cache)
        note(f"{len(distinct)} distinct candidate texts for {len(lines)} clips: "
             f"{text.encoded} encoded, {text.cached} from the cache")
        if distinct and text.rows.shape[1] != audio.shape[1]:
            raise UserError(
                f"audio embeddings {clap_npy} hold {audio.shape[1]}-d rows but CLAP model {clap_model} gives "
                f"{text.rows.shape[1]}-d text embeddings; make the audio embeddings with the same CLAP model")

        kept = top_labels(audio, per_clip, {t: i for i, t in enumerate(distinct)}, text.rows)
        no_candidate = [p for p, c in zip(paths, per_clip) if not c]
        no_audio = [p for p, c, row in zip(paths, per_clip, audio) if c and not np.all(np.isfinite(row))]
        if no_candidate:
            warn(f"{_clips(len(no_candidate))} no usable candidate label (empty label, score nan): {_named(no_candidate)}")
        if no_audio:
            warn(f"{_clips(len(no_audio))} no audio embedding (NaN row in {clap_npy}; empty label, score nan): "
                 f"{_named(no_audio)}")
        write_scores(top_label_scores_csv,
                     [ScoreRow(i, p, k.label, k.score) for i, (p, k) in enumerate(zip(paths, kept), start=1)])
    return ScoreResult(outputs={"top_label_scores_csv": str(top_label_scores_csv)},
                       mean_score=mean_score([k.score for k in kept]), labels=[k.label for k in kept],
                       scores=[k.score for k in kept], paths=list(paths), n_distinct=len(distinct),
                       n_encoded=text.encoded, n_cached=text.cached, no_candidate=no_candidate, no_audio=no_audio)


def _candidate_options(label_limit: int, candidates: str, stage: str):
    """Checked ``(label_limit, candidates)``, noted in the run log under ``stage``."""
    from auditoryhum.labels import check_candidate_mode, check_label_limit
    from auditoryhum.run_log import record_settings

    label_limit, candidates = check_label_limit(label_limit), check_candidate_mode(candidates)
    record_settings(stage, {"label_limit": label_limit, "candidates": candidates})
    return label_limit, candidates


def keep_first_labels(filedir: Union[str, Sequence[str]], text_label_csv: str, top_label_scores_csv: str, *,
                      label_limit: int = LABEL_WORD_LIMIT, candidates: str = "split") -> ScoreResult:
    """The kept label of every clip without a CLAP model: its first usable candidate, score NaN.

    What ``auditoryhum run`` does when no ``clap_model`` is given: the label file's candidates are
    cleaned by the published rule (:func:`auditoryhum.labels.split_candidates`) and the first one
    is kept; the score is ``nan`` (no score is ever invented). A clip with no usable candidate
    keeps ``""``. The output has the scores file's format, so every later stage reads it as usual.

    Parameters
    ----------
    filedir : str or sequence of str
        A glob of the clips (sorted) or the clip paths: the paths written in the scores file.
    text_label_csv : str
        Label file: one line of comma-separated candidates per clip.
    top_label_scores_csv : str
        Output: rows ``<i>, <path>, <label>, nan`` (1-based ``i``).
    label_limit, candidates
        As :func:`score_labels` (defaults: the published rule).
    """
    from auditoryhum.validation import path_args

    path_args(text_label_csv=text_label_csv, top_label_scores_csv=top_label_scores_csv)
    label_limit, candidates = _candidate_options(label_limit, candidates, "keep_first_labels")
    paths, clips = expand_clips(filedir)
    with guarded("keep_first_labels", {"filedir": paths, "text_label_csv": text_label_csv},
                 {"top_label_scores_csv": top_label_scores_csv}):
        from auditoryhum.console import warn
        from auditoryhum.io.artefacts import ScoreRow, check_aligned, read_label_file, write_scores
        from auditoryhum.labels import split_candidates

        lines = read_label_file(text_label_csv)
        check_aligned(clips, len(paths), f"label file {text_label_csv}", len(lines))
        kept = [(split_candidates(line, label_limit, candidates) or [""])[0] for line in lines]
        no_candidate = [p for p, label in zip(paths, kept) if not label]
        if no_candidate:
            warn(f"{_clips(len(no_candidate))} no usable candidate label (empty label, score nan): {_named(no_candidate)}")
        nan = float("nan")
        write_scores(top_label_scores_csv, [ScoreRow(i, p, label, nan) for i, (p, label) in enumerate(zip(paths, kept), start=1)])
    return ScoreResult(outputs={"top_label_scores_csv": str(top_label_scores_csv)}, labels=kept,
                       scores=[nan] * len(kept), paths=list(paths), n_distinct=len(set(kept) - {""}),
                       no_candidate=no_candidate)

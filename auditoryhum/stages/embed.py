"""Embedding stages: one row per clip (MFCC, AST, CLAP audio, an audio LLM's tower) or per label
(sentence embeddings). Top level is light: numpy and the models are imported inside the functions.
"""

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Union

from auditoryhum.defaults import ST_BATCH_SIZE  # labels per forward pass of the sentence model
from auditoryhum.stages._base import StageResult, as_parameter, check_precision, expand_clips, guarded, local_model
from auditoryhum.validation import path_args

#: The audio models :func:`embed_audio` runs.
AUDIO_KINDS = ("ast", "clap")
#: The families whose audio tower :func:`embed_tower` runs.
TOWER_FAMILIES = ("qwen2a", "gemma3n")


@dataclass
class EmbedResult(StageResult):
    """What an embedding stage wrote.

    Attributes
    ----------
    rows : numpy.ndarray, shape (N, D), float32
        The rows saved (NaN for an item that failed), in input order.
    paths : list of str
        The clips (or, for sentence embeddings, the scores file's paths), in row order.
    """

    rows: Any = None
    paths: List[str] = field(default_factory=list)


def embed_mfcc(filedir: Union[str, Sequence[str]], mfcc_npy: str) -> EmbedResult:
    """Mean MFCC vector of every clip (librosa, 20 coefficients, the recipe's frames), saved as .npy.

    Parameters
    ----------
    filedir : str or sequence of str
        A glob of the clips (expanded, sorted) or the clip paths in order.
    mfcc_npy : str
        Output .npy, shape (N, 20) float32, rows in clip order; a clip that cannot be decoded
        gets a NaN row and a failure message.
    """
    paths, _ = expand_clips(filedir)
    path_args(mfcc_npy=mfcc_npy)
    with guarded("features_mfcc", {"filedir": paths}, {"mfcc_npy": mfcc_npy}):
        from auditoryhum.features import mfcc_features
        from auditoryhum.io.artefacts import save_matrix

        table = mfcc_features(paths)
        save_matrix(mfcc_npy, table.rows)
    return EmbedResult(outputs={"mfcc_npy": str(mfcc_npy)}, failures=list(table.failures), rows=table.rows, paths=paths)


def embed_audio(filedir: Union[str, Sequence[str]], model: str, output_npy: str, *, kind: str,
                device: str = "auto", batch_size: Optional[int] = None, engine: str = "local", ray_address: Optional[str] = None, actors: int = 1,
                gpus_per_actor: Optional[float] = None, cpus_per_actor: Optional[float] = None, verbose: bool = False) -> EmbedResult:
    """One AST or CLAP audio embedding row per clip, saved as .npy, resumably.

    Parameters
    ----------
    filedir : str or sequence of str
        A glob of the clips or the clip paths in order.
    model : str
        AST (``ASTForAudioClassification``) or CLAP (``ClapModel``) folder or hub id.
    output_npy : str
        Output .npy, shape (N, D) float32 (AST: the classifier layer-norm output; CLAP: the
        projected audio embedding); a journal beside it resumes a killed run.
    kind : {"ast", "clap"}
    device : str
        ``"auto"``, ``"cuda"``, ``"mps"`` or ``"cpu"``.
    batch_size : int, optional
        Clips per forward pass (>= 1); default 32 on CUDA, 8 elsewhere.
    engine : {"local", "ray"}
        Where the per-clip work runs: in this process, or on a Ray cluster (an actor pool
        streamed by Ray Data; the same output bytes, journal and failure rows).
    ray_address, actors, gpus_per_actor, cpus_per_actor, verbose
        Ray options: the cluster (None: start a local instance; ``"auto"``; ``"ray://host:port"``),
        model replicas, GPUs and CPUs each replica holds (default 1 GPU when Ray sees GPUs, else
        0), and Ray's own logging. See README "Running on a cluster".
    """
    from auditoryhum.models.device import DEVICE_CHOICES
    from auditoryhum.validation import engine_options, one_of, optional_positive_int

    engine_kw = engine_options(engine, ray_address, actors, gpus_per_actor, cpus_per_actor, verbose)

    path_args(model=model, output_npy=output_npy)
    one_of(kind, AUDIO_KINDS, "kind")
    one_of(device, DEVICE_CHOICES, "device")
    batch_size = optional_positive_int(batch_size, "batch_size")
    paths, _ = expand_clips(filedir)
    with guarded(f"features_{kind}", {"filedir": paths, "model": local_model(model)}, {"output_npy": output_npy}):
        from auditoryhum.console import note
        from auditoryhum.models.audio_embed import ASTEmbedder, ClapAudioEmbedder, default_batch_size, run_clip_embeddings
        from auditoryhum.models.device import resolve_device

        loader = ASTEmbedder if kind == "ast" else ClapAudioEmbedder
        with as_parameter("model"):
            loader.check(model, "model")  # a wrong folder fails before torch is imported
        from auditoryhum.validation import worker_device

        resolved = resolve_device(worker_device(device, engine_kw))
        batch_size = batch_size or default_batch_size(resolved)
        note(f"device {resolved}, batch size {batch_size}")
        with as_parameter("model"):
            table, _ = run_clip_embeddings(loader, model, "model", resolved, paths, output_npy, batch_size, **engine_kw)
    return EmbedResult(outputs={"output_npy": str(output_npy)}, failures=list(table.failures), rows=table.rows, paths=paths)


def embed_tower(filedir: Union[str, Sequence[str]], model: str, output_npy: str, *, family: str,
                device: str = "auto", dtype: str = "auto", quantization: str = "auto",
                batch_size: Optional[int] = None, engine: str = "local", ray_address: Optional[str] = None, actors: int = 1,
                gpus_per_actor: Optional[float] = None, cpus_per_actor: Optional[float] = None, verbose: bool = False) -> EmbedResult:
    """The audio-tower embedding of every clip (Qwen2-Audio or Gemma-3n), summed over time, saved as .npy.

    Parameters
    ----------
    filedir : str or sequence of str
        A glob of the clips or the clip paths in order.
    model : str
        The family's model folder or hub id (only its audio tower is loaded).
    output_npy : str
        Output .npy, shape (N, D) float32, NaN rows for failed clips; resumable.
    family : {"qwen2a", "gemma3n"}
    device, dtype, quantization : str
        As :func:`auditoryhum.label`.
    batch_size : int, optional
        Clips per tower forward pass (>= 1); default per device (``models.tower_embed.DEFAULT_BATCH_SIZE``).
    engine : {"local", "ray"}
        Where the per-clip work runs: in this process, or on a Ray cluster (an actor pool
        streamed by Ray Data; the same output bytes, journal and failure rows).
    ray_address, actors, gpus_per_actor, cpus_per_actor, verbose
        Ray options: the cluster (None: start a local instance; ``"auto"``; ``"ray://host:port"``),
        model replicas, GPUs and CPUs each replica holds (default 1 GPU when Ray sees GPUs, else
        0), and Ray's own logging. See README "Running on a cluster".
    """
    from auditoryhum.validation import engine_options, one_of, optional_positive_int

    engine_kw = engine_options(engine, ray_address, actors, gpus_per_actor, cpus_per_actor, verbose)

    path_args(model=model, output_npy=output_npy)
    one_of(family, TOWER_FAMILIES, "family")
    batch_size = optional_positive_int(batch_size, "batch_size")
    check_precision(device, dtype, quantization)
    paths, _ = expand_clips(filedir)
    with guarded(f"features_{family}", {"filedir": paths, "model": local_model(model)}, {"output_npy": output_npy}):
        from auditoryhum.models.device import resolve_precision
        from auditoryhum.models.families import get_family
        from auditoryhum.models.loader import check_model_type, check_source
        from auditoryhum.models.tower_embed import run_tower_embeddings

        fam = get_family(family)
        with as_parameter("model"):
            check_source(model, "model")
            check_model_type(model, "model", fam.model_types, fam.what)
        from auditoryhum.validation import worker_device

        precision = resolve_precision(worker_device(device, engine_kw), dtype, quantization)
        with as_parameter("model"):
            report = run_tower_embeddings(fam, model, paths, output_npy, precision, batch_size=batch_size, **engine_kw)
    return EmbedResult(outputs={"output_npy": str(output_npy)}, failures=list(report.failures), rows=report.rows, paths=paths)


def embed_sentences(label_csv: str, st_model: str, st_npy: str, *, device: str = "auto",
                    batch_size: int = ST_BATCH_SIZE) -> EmbedResult:
    """The sentence embedding of every kept label of a scores file, saved as .npy.

    Parameters
    ----------
    label_csv : str
        Scores file (rows ``<i>, <path>, <label>, <score>``); its labels are embedded in row order.
    st_model : str
        sentence-transformers folder or hub id (the paper: all-mpnet-base-v2).
    st_npy : str
        Output .npy, shape (rows, D) float32.
    device : str
        ``"auto"``, ``"cuda"``, ``"mps"`` or ``"cpu"``.
    batch_size : int
        Labels per forward pass (default 32).
    """
    from auditoryhum.errors import UserError
    from auditoryhum.models.device import DEVICE_CHOICES
    from auditoryhum.validation import one_of, positive_int

    path_args(label_csv=label_csv, st_model=st_model, st_npy=st_npy)
    one_of(device, DEVICE_CHOICES, "device")
    batch_size = positive_int(batch_size, "batch_size")
    with guarded("features_st", {"label_csv": label_csv, "st_model": local_model(st_model)}, {"st_npy": st_npy}):
        import numpy as np

        from auditoryhum.console import note, progress_enabled
        from auditoryhum.io.artefacts import read_scores, save_rows_by_index
        from auditoryhum.models.device import resolve_device
        from auditoryhum.models.text_embed import embed_distinct_texts, load_sentence_model

        rows = read_scores(label_csv)
        if not rows:
            raise UserError(f"scores file {label_csv} has no rows")
        resolved = resolve_device(device)
        note(f"device: {resolved}")
        with as_parameter("st_model"):
            model = load_sentence_model(st_model, resolved, "st_model")
        vectors, inverse = embed_distinct_texts(model, [r.label for r in rows], batch_size,
                                                show_progress=progress_enabled())
        # Each distinct label is embedded once and the file written block by block: 2,000,000
        # rows of 768 values (6 GB) never exist in memory.
        save_rows_by_index(st_npy, vectors, inverse)
    # The rows as the file holds them, memory-mapped (read-only; nothing is read until used).
    written = np.load(st_npy, mmap_mode="r", allow_pickle=False)
    return EmbedResult(outputs={"st_npy": str(st_npy)}, rows=written, paths=[r.path for r in rows])

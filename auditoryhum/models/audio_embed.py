"""Clip embeddings from audio models: AST and CLAP (features_ast.py, features_clap.py).

* **AST** (``ASTFeatureExtractor`` + ``ASTForAudioClassification``): the clip embedding is the
  output of the classification head's layer norm (``classifier.layernorm``), captured with a
  forward hook; 768-d for the published checkpoint.
* **CLAP** (``ClapProcessor`` + ``ClapModel``): the L2-normalised projected audio embedding
  of ``ClapModel.get_audio_features``, at the feature extractor's rate (48 kHz); 512-d for
  the published checkpoints.

Every clip is loaded mono at the extractor's rate and turned into model input *on its own*,
so its input never depends on its batch neighbours; the inputs of a batch are then stacked
for one forward pass. :func:`embed_clips` drives the loop: batches, a progress bar, the next
batch decoded while the model runs, and a NaN row plus a message for a clip that cannot be
decoded. :func:`run_clip_embeddings` adds the journal (:class:`auditoryhum.io.checkpoint.RowJournal`)
that makes a killed run resume where it stopped.

CLAP determinism. The CLAP feature extractor draws random numbers: clips over 10 s are
cropped at random (both truncation modes), and with ``truncation="fusion"`` it flags one
random clip of each batch as "longer" when none is. Here each clip goes through the
extractor alone, with NumPy's generator seeded from a hash of the clip's samples: the crops
are a function of the audio, and a short clip in a fused model is always flagged "longer"
(a batch of one clip), which is what the published one-clip-at-a-time script computes. On
the CPU the forward pass also avoids kernels whose rounding depends on the batch size, so a
clip's row is bit-identical whatever the batch size and across runs.
"""

import contextlib
import hashlib
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple, Type

import numpy as np

from auditoryhum.console import progress_bar, warn
from auditoryhum.engine import (
    ROWS, Item, LocalExecutor, Prebuilt, Step, StepSpec, Task, Wording, first_line, make_executor, MatrixOutput,
    run_resumable,
)
from auditoryhum.features import FeatureTable
from auditoryhum.io.audio import AudioDecodeError, load_audio

# One finished batch: (index into the paths, row or None, failure message or None) per clip.
BatchResult = List[Tuple[int, Optional[np.ndarray], Optional[str]]]

AST_MODEL_TYPES = ("audio-spectrogram-transformer",)
CLAP_MODEL_TYPES = ("clap",)

# The CLAP feature extractor draws from NumPy's global generator: seeding and extracting must
# not interleave between threads.
_NUMPY_RNG_LOCK = threading.Lock()


def default_batch_size(device: str) -> int:
    """Clips per forward pass when ``--batch_size`` is not given: 32 on a CUDA GPU, 8 elsewhere."""
    return 32 if device == "cuda" else 8


def clip_seed(waveform: np.ndarray) -> int:
    """A 32-bit seed derived from the samples of a clip (the same clip always gets the same seed)."""
    data = np.ascontiguousarray(waveform, dtype=np.float32).tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=4).digest(), "little")


def _quiet_transformers() -> None:
    """Silence transformers' own loading bars and notices when our progress bars are off."""
    from auditoryhum.console import progress_enabled

    if not progress_enabled():
        import transformers

        transformers.utils.logging.disable_progress_bar()


@contextlib.contextmanager
def _batch_invariant_kernels(device: str):
    """On the CPU, run convolutions on PyTorch's own kernels instead of oneDNN's.

    oneDNN picks its convolution algorithm by input shape, batch size included, so a clip's
    output would change in the last bits with its batch (CLAP's feature-fusion block); the
    native kernels compute every sample alike.
    """
    if device != "cpu":
        yield
        return
    import torch

    with warnings.catch_warnings():
        # Toggling the flags re-sets oneDNN's TF32 switch, which warns on builds without Intel GPU support.
        warnings.filterwarnings("ignore", message=".*TF32 acceleration on top of oneDNN.*")
        with torch.backends.mkldnn.flags(enabled=False):
            yield


class ClipEmbedder:
    """One loaded audio model that turns clips into rows.

    Attributes
    ----------
    what : str
        Name used in messages (``"AST"``, ``"CLAP"``).
    sampling_rate : int
        Rate clips are loaded at (the feature extractor's).
    dim : int
        Width of a row.
    """

    what = "audio"
    sampling_rate = 16000
    dim = 0
    model_types: Tuple[str, ...] = ()
    model_description = "an audio model"

    @classmethod
    def check(cls, source: str, flag: str) -> None:
        """Stop in one line, before anything heavy is imported, when ``source`` is a missing
        folder or a folder holding another kind of model."""
        from auditoryhum.models.loader import check_model_type, check_source

        check_source(source, flag)
        check_model_type(source, flag, cls.model_types, cls.model_description)

    def prepare(self, waveform: np.ndarray) -> Any:
        """Model input of one clip (mono float32 at :attr:`sampling_rate`), independent of other clips."""
        raise NotImplementedError

    def embed(self, prepared: Sequence[Any]) -> np.ndarray:
        """Rows of a batch of prepared clips: float32, shape (len(prepared), :attr:`dim`)."""
        raise NotImplementedError


class ASTEmbedder(ClipEmbedder):
    """AST clip embeddings: the output of ``classifier.layernorm``, captured with a forward hook."""

    what = "AST"
    model_types = AST_MODEL_TYPES
    model_description = "an Audio Spectrogram Transformer (AST) model"

    def __init__(self, model, feature_extractor, device: str):
        self.model = model
        self.feature_extractor = feature_extractor
        self.device = device
        self.sampling_rate = int(feature_extractor.sampling_rate)
        self.dim = int(model.config.hidden_size)

    @classmethod
    def load(cls, source: str, device: str, flag: str = "--ast_model") -> "ASTEmbedder":
        """Load ``ASTForAudioClassification`` and ``ASTFeatureExtractor`` from a folder or hub id."""
        from auditoryhum.models.loader import load_pretrained, load_processor

        cls.check(source, flag)
        from transformers import ASTFeatureExtractor, ASTForAudioClassification

        _quiet_transformers()
        with warnings.catch_warnings():
            # Without torchaudio the extractor builds its filter bank in NumPy, where the lowest
            # of 128 mel filters is empty at 16 kHz: harmless, and said on every load.
            warnings.filterwarnings("ignore", message=".*mel filter has all zero values.*")
            extractor = load_processor(ASTFeatureExtractor, source, flag)
        model = load_pretrained(ASTForAudioClassification, source, flag, device=device)
        return cls(model, extractor, device)

    def prepare(self, waveform: np.ndarray) -> np.ndarray:
        features = self.feature_extractor(waveform, sampling_rate=self.sampling_rate, return_tensors="np")
        return np.asarray(features["input_values"][0], dtype=np.float32)

    def embed(self, prepared: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        captured: List[torch.Tensor] = []
        hook = self.model.classifier.layernorm.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            with torch.inference_mode():
                self.model(input_values=torch.from_numpy(np.stack(prepared)).to(self.device))
        finally:
            hook.remove()
        return captured[0].float().cpu().numpy()


class ClapAudioEmbedder(ClipEmbedder):
    """CLAP audio embeddings (``ClapModel.get_audio_features``), deterministic per clip.

    ``truncation`` is the checkpoint's (``"fusion"`` for fused towers, ``"rand_trunc"`` for
    unfused ones); a preprocessor config that contradicts the tower is corrected, with a warning.
    """

    what = "CLAP"
    model_types = CLAP_MODEL_TYPES
    model_description = "a CLAP model"

    def __init__(self, model, feature_extractor, device: str, truncation: str):
        self.model = model
        self.feature_extractor = feature_extractor
        self.device = device
        self.truncation = truncation
        self.sampling_rate = int(feature_extractor.sampling_rate)
        self.dim = int(model.config.audio_config.projection_dim)

    @classmethod
    def load(cls, source: str, device: str, flag: str = "--clap_model") -> "ClapAudioEmbedder":
        """Load ``ClapModel`` and ``ClapProcessor`` from a folder or hub id."""
        from auditoryhum.models.loader import load_pretrained, load_processor

        cls.check(source, flag)
        from transformers import ClapModel, ClapProcessor

        _quiet_transformers()
        processor = load_processor(ClapProcessor, source, flag)
        model = load_pretrained(ClapModel, source, flag, device=device)
        extractor = processor.feature_extractor
        fused = bool(model.config.audio_config.enable_fusion)
        truncation = extractor.truncation
        expected = "fusion" if fused else "rand_trunc"
        if (truncation == "fusion") != fused:
            warn(
                f"{flag} {source}: the feature extractor's truncation is {truncation!r} but the audio tower is "
                f"{'fused' if fused else 'not fused'}; using {expected!r}"
            )
            truncation = expected
        return cls(model, extractor, device, truncation)

    def prepare(self, waveform: np.ndarray) -> Tuple[np.ndarray, bool]:
        """``(input_features, is_longer)`` of one clip, with the extractor's randomness seeded by the clip."""
        with _NUMPY_RNG_LOCK:
            saved = np.random.get_state()
            np.random.seed(clip_seed(waveform))
            try:
                # One unbatched array, as the published script passes it (a list would be
                # converted to float64 first and round differently).
                features = self.feature_extractor(
                    waveform, sampling_rate=self.sampling_rate, truncation=self.truncation, return_tensors="np"
                )
            finally:
                np.random.set_state(saved)
        return np.asarray(features["input_features"][0], dtype=np.float32), bool(features["is_longer"][0][0])

    def embed(self, prepared: Sequence[Tuple[np.ndarray, bool]]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        features = torch.from_numpy(np.stack([f for f, _ in prepared])).to(self.device)
        is_longer = torch.tensor([[longer] for _, longer in prepared], dtype=torch.bool, device=self.device)
        with torch.inference_mode(), _batch_invariant_kernels(self.device):
            pooled = self.model.audio_model(input_features=features, is_longer=is_longer).pooler_output
            # get_audio_features = audio_model -> audio_projection -> L2 normalise. Projecting the
            # batch in one matrix product rounds differently for different batch sizes;
            # projecting row by row gives each clip exactly its single-clip result.
            projected = torch.cat([self.model.audio_projection(pooled[i : i + 1]) for i in range(pooled.shape[0])])
            rows = F.normalize(projected, dim=-1)
        return rows.float().cpu().numpy()


class ClipEmbedStep(Step):
    """The per-batch step of the clip embeddings: decode and prepare each clip on its own,
    then one forward pass for the batch's good clips. Payloads are clip paths."""

    def __init__(self, embedder: ClipEmbedder):
        self.embedder = embedder

    def prepare(self, paths):
        embedder = self.embedder
        out = []
        for path in paths:
            try:
                waveform, _ = load_audio(path, embedder.sampling_rate)
            except AudioDecodeError as exc:
                out.append((None, str(exc)))
                continue
            try:
                out.append((embedder.prepare(waveform), None))
            except Exception as exc:  # feature extractors raise many types on degenerate audio
                out.append((None, f"{path}: cannot compute {embedder.what} input features ({first_line(exc)})"))
        return out

    def run(self, prepared):
        good = [k for k, (_, failure) in enumerate(prepared) if failure is None]
        rows = self.embedder.embed([prepared[k][0] for k in good]) if good else []
        by_k = dict(zip(good, rows))
        return [(by_k.get(k), failure) for k, (_, failure) in enumerate(prepared)]


@dataclass
class ClipEmbedSpec(StepSpec):
    """Builds :class:`ClipEmbedStep` on a worker: loads ``embedder_class`` from ``source``."""

    embedder_class: Type[ClipEmbedder]
    source: str
    flag: str
    device: str

    def build(self) -> ClipEmbedStep:
        return ClipEmbedStep(self.embedder_class.load(self.source, self.device, flag=self.flag))

    def width(self) -> int:
        """The row width from the model's configuration (no weights loaded)."""
        import os

        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(os.path.expanduser(self.source))
        if self.embedder_class.what == "CLAP":
            return int(config.audio_config.projection_dim)
        return int(config.hidden_size)


def embed_clips(paths: Sequence[str], embedder: ClipEmbedder, batch_size: int,
                on_batch: Optional[Callable[[BatchResult], None]] = None) -> FeatureTable:
    """Embed every clip of ``paths`` in order: float32 rows, shape (N, ``embedder.dim``).

    Clips are decoded and prepared one batch ahead on a worker thread while the model runs.
    A clip that cannot be decoded or prepared gets a NaN row and a message in
    ``failures``; the others are computed regardless. ``on_batch``, when given, receives
    each finished batch (see :data:`BatchResult`) before the next one runs.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    n = len(paths)
    rows = np.full((n, embedder.dim), np.nan, dtype=np.float32)
    failures: List[str] = []
    batches = ([Task(i, None, paths[i]) for i in range(start, min(start + batch_size, n))]
               for start in range(0, n, batch_size))
    bar = progress_bar(n, desc=embedder.what)
    try:
        with LocalExecutor().stream(Prebuilt(ClipEmbedStep(embedder)), batches) as stream:
            for outcomes in stream:
                for o in outcomes:
                    if o.error is None:
                        rows[o.index] = o.value
                    else:
                        failures.append(o.error)
                if on_batch is not None:
                    on_batch([(o.index, rows[o.index] if o.error is None else None, o.error) for o in outcomes])
                bar.update(len(outcomes))
    finally:
        bar.close()
    return FeatureTable(rows, failures)


def run_clip_embeddings(embedder_class: Type[ClipEmbedder], source: str, flag: str, device: str,
                        paths: Sequence[str], output: str, batch_size: int, *, engine: str = "local",
                        ray_address: Optional[str] = None, actors: int = 1, gpus_per_actor: Optional[float] = None,
                        cpus_per_actor: Optional[float] = None, verbose: bool = False) -> Tuple[FeatureTable, int]:
    """Embed ``paths`` with the model at ``source`` and save the rows to ``output`` (.npy), resumably.

    A journal beside ``output`` is keyed on the model (folder files or hub id), the device and
    the transformers version; each finished batch is appended to it. A rerun with the same
    key embeds only the clips not yet done (or that failed, or whose content changed), and
    writes the same bytes as an uninterrupted run. The batch size is not in the key: rows do
    not depend on it (see the module docstring). The model is not loaded when every clip is done.

    Parameters
    ----------
    embedder_class : ASTEmbedder or ClapAudioEmbedder
    source : str
        Model folder or hub id, already checked with ``embedder_class.check``.
    flag : str
        The command-line flag of ``source``, for messages.
    device : str
        ``"cuda"``, ``"mps"`` or ``"cpu"``.
    paths : sequence of str
        The clips, in output row order.
    output : str
        The ``.npy`` to write (atomically); its journal is ``.<name>.journal`` beside it.
    batch_size : int
        Clips per forward pass.
    engine : {"local", "ray"}
        Who runs the model: this process, or a Ray actor pool (the same bytes either way).
    ray_address, actors, gpus_per_actor, cpus_per_actor, verbose
        Ray options (:class:`auditoryhum.engine.ray_executor.RayExecutor`); ignored by ``"local"``.

    Returns
    -------
    table : FeatureTable
        The rows as saved (NaN for failed clips) and the failure messages in row order.
    reused : int
        Clips taken from an earlier run's journal.
    """
    import os

    import transformers

    from auditoryhum.models.identity import model_identity

    executor = make_executor(engine, ray_address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor,
                             cpus_per_actor=cpus_per_actor, verbose=verbose)
    key = {
        "tool": "clip-embedding",
        "model_kind": embedder_class.what,
        "model": model_identity(source),
        "device": device,
        "transformers": transformers.__version__,
    }
    spec = ClipEmbedSpec(embedder_class, source, flag, device)
    items = [Item(os.path.abspath(p), p, path=p) for p in paths]
    write = MatrixOutput(output, spec.width)
    result = run_resumable(output, key, items, spec, write=write, batch_size=batch_size, desc=embedder_class.what,
                           executor=executor, codec=ROWS, wording=Wording(done="embedded"))
    return FeatureTable(write.rows, result.failure_list()), result.reused

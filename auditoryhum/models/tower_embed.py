"""Audio-tower embeddings of Qwen2-Audio and Gemma-3n: the tower's last hidden state summed over time.

The published recipe (docs/spec.md, features_qwen2a / features_gemma3n) runs only the audio tower
of the loaded audio LLM, one clip at a time:

* Qwen2-Audio: the Whisper feature extractor on the clip (padded or cut to 30 s, 3000 mel
  frames), ``audio_tower(input_features=...)`` without a mask, ``last_hidden_state`` summed
  over its 750 frames.
* Gemma-3n: the processor on the clip (the recipe's ``text=""`` means no text),
  ``audio_tower(audio_mel=input_features, audio_mel_mask=<all False>)`` (the tower's mask is
  True for padding, the inverse of the processor's), the first output summed over time.

Here clips are batched. A Qwen2-Audio clip's features always have the same shape, so any
clips share a batch. A Gemma-3n clip's features have as many frames as the clip (rounded up
to 128 samples) and the all-False mask makes any padding count in the sum, so only clips whose
features have the same number of frames share a batch: every row equals the one-clip result.
Rows are float32 (the published scripts convert with ``.float()``).

:class:`TowerStep` is the run engine's per-batch step (:mod:`auditoryhum.engine`): built once
per worker, it decodes the clips of a batch, groups them by feature shape and embeds each
group; :func:`run_tower_embeddings` runs it resumably with the local or the Ray executor.
"""

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from auditoryhum.console import note
from auditoryhum.engine import (
    ROWS, Item, Step, StepSpec, Wording, first_line, make_executor, raise_if_out_of_memory, MatrixOutput, run_resumable,
)
from auditoryhum.io.audio import AudioDecodeError, load_audio
from auditoryhum.models.device import Precision
from auditoryhum.validation import optional_positive_int
from auditoryhum.models.families import Family
from auditoryhum.recipe import SEED

# Clips per forward pass, per device: one definition, in auditoryhum.defaults.
from auditoryhum.defaults import TOWER_BATCH_SIZE as DEFAULT_BATCH_SIZE


def _qwen2a_features(processor, clip: np.ndarray):
    fe = processor.feature_extractor
    return fe(clip, sampling_rate=fe.sampling_rate, return_tensors="pt")["input_features"]


def _qwen2a_forward(tower, features):
    return tower(input_features=features).last_hidden_state.sum(dim=1)


def _gemma3n_features(processor, clip: np.ndarray):
    # The published scripts pass text="" (no text); transformers 5.x rejects an empty prompt
    # with audio, and without text the processor computes the same features.
    fe = processor.feature_extractor
    return processor(audio=[clip], sampling_rate=fe.sampling_rate, return_tensors="pt")["input_features"]


def _gemma3n_forward(tower, features):
    import torch

    # All False = no frame is padding (a mask of all True would mask everything).
    mask = torch.zeros(features.shape[:2], dtype=torch.bool, device=features.device)
    return tower(audio_mel=features, audio_mel_mask=mask)[0].sum(dim=1)


@dataclass(frozen=True)
class TowerRecipe:
    """How one family's tower embedding is computed: per-clip features, then a batched forward."""

    features: Callable[[Any, np.ndarray], Any]  # (processor, clip) -> tensor with a batch axis of 1
    forward: Callable[[Any, Any], Any]  # (tower, stacked features) -> (batch, hidden) tensor


TOWER_RECIPES: Dict[str, TowerRecipe] = {
    "qwen2a": TowerRecipe(_qwen2a_features, _qwen2a_forward),
    "gemma3n": TowerRecipe(_gemma3n_features, _gemma3n_forward),
}


def clip_features(family: Family, processor, clip: np.ndarray):
    """The tower input of one clip (batch axis of 1), as the family's recipe computes it."""
    return TOWER_RECIPES[family.key].features(processor, clip)


def tower_embeddings(model, family: Family, features: Sequence[Any]):
    """Sum over time of the audio tower's output for ``features`` (equal shapes), as float32 numpy rows.

    Parameters
    ----------
    model : transformers model
        A loaded model of ``family``.
    family : Family
        ``qwen2a`` or ``gemma3n``.
    features : sequence of torch.Tensor
        Per-clip tower inputs from :func:`clip_features`, all of one shape.

    Returns
    -------
    rows : np.ndarray, shape (len(features), hidden), float32
    """
    import torch

    tower = family.audio_tower(model)
    stacked = torch.cat(list(features), dim=0)
    param = next(p for p in tower.parameters() if p.is_floating_point())
    stacked = stacked.to(device=param.device, dtype=param.dtype)
    with torch.inference_mode():
        summed = TOWER_RECIPES[family.key].forward(tower, stacked)
    return summed.float().cpu().numpy()


@dataclass
class TowerReport:
    rows: np.ndarray
    failures: List[str] = field(default_factory=list)
    reused: int = 0


@dataclass
class TowerSpec(StepSpec):
    """Builds :class:`TowerStep` on a worker: the family's processor and model, loaded once."""

    family_key: str
    model_source: str
    precision: Precision
    batch_size: int
    seed = SEED  # a class constant, not a field

    def build(self) -> "TowerStep":
        from auditoryhum.models.labeller import load_family_model

        family, processor, model = load_family_model(self.family_key, self.model_source, self.precision)
        return TowerStep(model, processor, family, self.batch_size)

    def width(self) -> int:
        """The row width (the tower's hidden size) from the configuration, no weights loaded."""
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(os.path.expanduser(self.model_source))
        return int(config.audio_config.hidden_size)


class TowerStep(Step):
    """Embed a batch of clip paths: per-clip features, then one forward pass per group of
    equal-shaped features (at most ``batch_size`` each); a failing group is retried clip by clip."""

    def __init__(self, model, processor, family: Family, batch_size: int):
        self.model, self.processor, self.family, self.batch_size = model, processor, family, batch_size
        self.sampling_rate = processor.feature_extractor.sampling_rate

    def prepare(self, paths):
        out = []
        for path in paths:
            try:
                audio, _ = load_audio(path, self.sampling_rate)
            except AudioDecodeError as exc:
                out.append((path, None, str(exc)))
                continue
            out.append((path, clip_features(self.family, self.processor, audio), None))
        return out

    def run(self, prepared):
        results: List[Tuple[Optional[np.ndarray], Optional[str]]] = [(None, failure) for _, _, failure in prepared]
        groups: Dict[Tuple[int, ...], List[Tuple[int, str, Any]]] = {}
        for k, (path, features, failure) in enumerate(prepared):
            if failure is None:
                groups.setdefault(tuple(features.shape), []).append((k, path, features))
        for group in groups.values():
            for start in range(0, len(group), self.batch_size):
                for k, row, failure in self._embed(group[start:start + self.batch_size]):
                    results[k] = (row, failure)
        return results

    def _embed(self, group):
        try:
            out = tower_embeddings(self.model, self.family, [f for _, _, f in group])
            return [(k, out[j], None) for j, (k, _, _) in enumerate(group)]
        except Exception as exc:
            raise_if_out_of_memory(exc)
            if len(group) > 1:
                return [r for item in group for r in self._embed([item])]
            k, path, _ = group[0]
            return [(k, None, f"{path}: the audio tower failed on this clip ({type(exc).__name__}: {first_line(exc)})")]


def run_tower_embeddings(family: Family, model_source: str, paths: Sequence[str], output: str,
                         precision: Precision, batch_size: Optional[int] = None, *, engine: str = "local",
                         ray_address: Optional[str] = None, actors: int = 1, gpus_per_actor: Optional[float] = None,
                         cpus_per_actor: Optional[float] = None, verbose: bool = False) -> TowerReport:
    """Embed every clip of ``paths`` with ``family``'s audio tower and save the rows to ``output`` (.npy).

    One model load per worker; batches as the module docstring says; a journal beside
    ``output`` so that a killed run resumes; a clip that cannot be decoded gets a NaN row and
    is reported. ``engine`` and the Ray options are those of
    :func:`auditoryhum.models.labeller.run_labelling`.
    """
    import transformers

    from auditoryhum.models.identity import model_identity
    from auditoryhum.models.loader import check_model_type

    if family.key not in TOWER_RECIPES:
        raise ValueError(f"no tower embedding recipe for {family.title}")
    batch_size = optional_positive_int(batch_size, "batch_size") or DEFAULT_BATCH_SIZE.get(precision.device, 1)
    executor = make_executor(engine, ray_address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor,
                             cpus_per_actor=cpus_per_actor, verbose=verbose)
    note(precision.describe())
    check_model_type(model_source, family.model_flag, family.model_types, family.what)

    key = {
        "tool": "tower-embedding",
        "family": family.key,
        "model": model_identity(model_source),
        "device": precision.device,
        "dtype": precision.dtype,
        "quantization": precision.quantization,
        "transformers": transformers.__version__,
    }
    spec = TowerSpec(family.key, model_source, precision, batch_size)
    items = [Item(os.path.abspath(p), p, path=p) for p in paths]
    write = MatrixOutput(output, spec.width)
    result = run_resumable(output, key, items, spec, write=write, batch_size=batch_size, desc=f"{family.title} tower",
                           executor=executor, codec=ROWS, wording=Wording(done="embedded"))
    return TowerReport(write.rows, result.failure_list(), result.reused)

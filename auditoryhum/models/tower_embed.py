"""Audio-tower embeddings of Qwen2-Audio and Gemma-3n: the tower's last hidden state summed over time.

The published recipe (SPEC.md, features_qwen2a / features_gemma3n) runs only the audio tower
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
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from auditoryhum.console import note, progress_enabled
from auditoryhum.errors import UserError
from auditoryhum.io.audio import AudioDecodeError, load_audio
from auditoryhum.io.checkpoint import RowJournal
from auditoryhum.models.device import Precision
from auditoryhum.models.families import Family

DEFAULT_BATCH_SIZE = {"cuda": 16, "mps": 4, "cpu": 4}


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


def run_tower_embeddings(family: Family, model_source: str, paths: Sequence[str], output: str,
                         precision: Precision, batch_size: Optional[int] = None) -> TowerReport:
    """Embed every clip of ``paths`` with ``family``'s audio tower and save the rows to ``output`` (.npy).

    One model load; batches as the module docstring says; a journal beside ``output`` so that
    a killed run resumes; a clip that cannot be decoded gets a NaN row and is reported.
    """
    import transformers

    from auditoryhum.models.labeller import counter_bar, model_identity, seed_everything
    from auditoryhum.models.loader import check_model_type, load_pretrained, load_processor

    if family.key not in TOWER_RECIPES:
        raise ValueError(f"no tower embedding recipe for {family.title}")
    batch_size = batch_size or DEFAULT_BATCH_SIZE.get(precision.device, 1)
    if batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {batch_size}")
    note(precision.describe())
    seed_everything()
    check_model_type(model_source, family.model_flag, family.model_types, family.what)
    processor = load_processor(family.load_processor_class(), model_source, family.model_flag)
    sampling_rate = processor.feature_extractor.sampling_rate

    key = {
        "tool": "tower-embedding",
        "family": family.key,
        "model": model_identity(model_source),
        "device": precision.device,
        "dtype": precision.dtype,
        "quantization": precision.quantization,
        "transformers": transformers.__version__,
    }
    hidden: Optional[int] = None  # stays None when every clip comes from the journal
    bar = None

    def finish(done: List[Tuple[int, Optional[np.ndarray], Optional[str]]]) -> None:
        checkpoint.add(done)
        bar.update(len(done))

    with RowJournal(output, key, paths) as checkpoint:
        if checkpoint.pending:
            if not progress_enabled():
                transformers.utils.logging.disable_progress_bar()
            model = load_pretrained(
                family.load_class(), model_source, family.model_flag, precision.device,
                dtype=precision.torch_dtype, quantization_config=precision.quantization_config(),
            )
            hidden = _hidden_size(family, model)
            bar = counter_bar(len(checkpoint.pending), f"{family.title} tower")
            groups: Dict[Tuple[int, ...], List[Tuple[int, Any]]] = {}
            try:
                for i in checkpoint.pending:
                    try:
                        audio, _ = load_audio(paths[i], sampling_rate)
                    except AudioDecodeError as exc:
                        finish([(i, None, str(exc))])
                        continue
                    features = clip_features(family, processor, audio)
                    group = groups.setdefault(tuple(features.shape), [])
                    group.append((i, features))
                    if len(group) >= batch_size:
                        finish(_embed_group(model, family, group, paths))
                        group.clear()
                    # Many distinct clip lengths (Gemma-3n): bound the clips held in memory.
                    if sum(len(g) for g in groups.values()) > 4 * batch_size:
                        for g in groups.values():
                            if g:
                                finish(_embed_group(model, family, g, paths))
                                g.clear()
                for g in groups.values():
                    if g:
                        finish(_embed_group(model, family, g, paths))
                        g.clear()
            finally:
                bar.close()
    table, failures = checkpoint.save(hidden)
    return TowerReport(table, failures, checkpoint.reused)


def _hidden_size(family: Family, model) -> int:
    return int(family.audio_tower(model).config.hidden_size)


def _embed_group(model, family: Family, group: List[Tuple[int, Any]], paths: Sequence[str]):
    """Embed a group of equal-shaped features; a failing batch is retried clip by clip."""
    try:
        out = tower_embeddings(model, family, [f for _, f in group])
        return [(i, out[k], None) for k, (i, _) in enumerate(group)]
    except Exception as exc:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            raise UserError("the accelerator ran out of memory; rerun with a smaller --batch_size "
                            "(finished clips are kept and skipped)") from None
        if len(group) > 1:
            return [r for item in group for r in _embed_group(model, family, [item], paths)]
        i = group[0][0]
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [(i, None, f"{paths[i]}: the audio tower failed on this clip ({type(exc).__name__}: {reason})")]

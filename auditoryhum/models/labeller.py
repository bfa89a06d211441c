"""The labelling engine: one loop for every audio-LLM family of :mod:`auditoryhum.models.families`.

Load the processor and model once; label the clips in batches (greedy decoding, at most 64
new tokens, KV cache, as the published recipe); decode only the new tokens; post-process
each response with :func:`auditoryhum.labels.postprocess_response`; journal every finished
clip so that a killed run resumes; write the label file atomically at the end.

:func:`label_batch` is the model call: a pure function of the loaded model, its processor,
the family and a batch of clips and prompts, holding no state between calls. :class:`LabelStep`
wraps it as the run engine's per-batch step (:mod:`auditoryhum.engine`): built once per worker
(it loads the model), called per batch with ``(path, prompt)`` pairs, decoding the audio
itself, so that the local and the Ray executor run exactly the same code.

Batching pads the *text* on the left (``processor.tokenizer.padding_side = "left"``, set after
loading: passing ``padding_side`` to ``from_pretrained`` would left-pad the audio features
too) and pads every clip's audio with zeros as the published scripts do
(``padding="max_length"``: to the front end's full window), so a clip's features, hence its
greedy label, do not depend on its batch neighbours. For the Qwen Omni thinkers, which read
only the real frames, the padding stops one FFT window after the batch's longest clip instead
of at 300 s (:func:`trimmed_pad_length`): the same features at a fraction of the cost.
"""

import os
import re
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from auditoryhum.console import note, progress_enabled, warn
from auditoryhum.engine import Item, Step, StepSpec, TEXT, digest, first_line, make_executor, raise_if_out_of_memory, run_resumable
from auditoryhum.engine.common import seed_everything  # noqa: F401  (re-exported: the published seeding)
from auditoryhum.errors import UserError
from auditoryhum.io.artefacts import write_lines
from auditoryhum.io.audio import AudioDecodeError, load_audio
from auditoryhum.labels import postprocess_caption, postprocess_response
from auditoryhum.models.device import Precision
from auditoryhum.models.identity import model_identity
from auditoryhum.validation import optional_positive_int
from auditoryhum.models.families import PROMPT, Family

from auditoryhum.recipe import LABEL_GENERATION_SETTINGS as GENERATION_SETTINGS, SEED  # noqa: E402

# The toolkit's own defaults: one definition, in auditoryhum.defaults (the CLI reads it without NumPy).
from auditoryhum.defaults import LABELLER_BATCH_SIZE as DEFAULT_BATCH_SIZE, LONG_AUDIO_CHOICES  # noqa: E402

# Characters that end a line for Python's str.splitlines() (and for universal-newline readers)
# besides "\n", which post-processing already turned into ", ": one label must stay one line.
_OTHER_LINE_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def user_prompt(annotation: Optional[str] = None, prompt: str = PROMPT) -> str:
    """The user prompt of one clip: ``prompt`` (default the published one), plus a non-blank human hint after one space."""
    hint = (annotation or "").strip()
    return f"{prompt} {hint}" if hint else prompt


def label_line(response: str) -> str:
    """A model response as one label line: the published post-processing, then any remaining
    line-break character (a lone ``\\r``, a Unicode line separator) made a ``", "`` as well, so
    a label can never split into two lines and misalign the file."""
    return _OTHER_LINE_BREAKS.sub(", ", postprocess_response(response))


def caption_line(response: str) -> str:
    """A free caption (``--task caption``) as one line: :func:`auditoryhum.labels.postprocess_caption`,
    every line-break character counted as a line end first."""
    return postprocess_caption(_OTHER_LINE_BREAKS.sub("\n", response))


#: The output post-processing of each labelling task (``--task``).
POSTPROCESS = {"labels": label_line, "caption": caption_line}


def render_prompts(processor, family: Family, prompts: Sequence[str], audio_refs: Sequence[str]) -> List[str]:
    """The chat-templated text of each clip's conversation, ending with the generation prompt."""
    # Family.render_conversation: an empty system prompt renders no system turn at all.
    return [family.render_conversation(processor, prompt, ref) for prompt, ref in zip(prompts, audio_refs)]


def prepare_inputs(processor, family: Family, clips: Sequence[np.ndarray], prompts: Sequence[str], audio_refs: Optional[Sequence[str]] = None):
    """Model inputs for a batch: templated text (left-padded) and the clips' audio features.

    The chat template writes every special token itself (Gemma-3n's ``<bos>`` included), so the
    tokenizer is told not to add its own (which would double Gemma-3n's ``<bos>``).
    """
    if audio_refs is None:
        audio_refs = [f"clip{i}" for i in range(len(clips))]
    texts = render_prompts(processor, family, prompts, audio_refs)
    clips = [np.asarray(c, dtype=np.float32) for c in clips]
    audio_kwargs = {"padding": "max_length", "sampling_rate": processor.feature_extractor.sampling_rate}
    if family.reads_real_frames_only:
        trimmed = trimmed_pad_length(processor.feature_extractor, max(len(c) for c in clips))
        if trimmed is not None:
            audio_kwargs["max_length"] = trimmed
    return processor(
        text=texts,
        audio=clips,
        text_kwargs={"padding": True, "add_special_tokens": False},
        audio_kwargs=audio_kwargs,
        return_tensors="pt",
    )


def trimmed_pad_length(feature_extractor, longest: int) -> Optional[int]:
    """A shorter ``max_length`` for the Whisper front end of models that read only the real
    frames of a clip (the Qwen Omni thinkers take the frames ``feature_attention_mask`` marks).

    The published call pads every clip with zeros to the extractor's whole window (300 s for
    the Qwen2.5-Omni checkpoints: 30,000 mel frames, about 1 s of CPU per clip, then thrown
    away). Padding only to the batch's longest clip plus one FFT window of zeros gives every
    real frame the same samples around it (zeros after the clip), hence the same values, and the
    log-mel floor (the clip's maximum minus 8) is unchanged since padding only adds silence.
    Returns ``None`` (keep the full window) when the longest clip reaches it.
    """
    hop, n_samples = feature_extractor.hop_length, feature_extractor.n_samples
    needed = -(-(longest + feature_extractor.n_fft) // hop) * hop  # rounded up to whole frames
    return needed if needed < n_samples else None


def _to_model(inputs, model):
    # Token ids and masks keep their integer/bool dtype; audio features follow the model's dtype.
    import torch

    moved = {}
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(model.device)
            if value.is_floating_point():
                value = value.to(model.dtype)
        moved[name] = value
    return moved


def label_batch(model, processor, family: Family, clips: Sequence[np.ndarray], prompts: Sequence[str],
                audio_refs: Optional[Sequence[str]] = None, max_new_tokens: int = GENERATION_SETTINGS["max_new_tokens"],
                postprocess=label_line) -> List[str]:
    """Label one batch: greedy generation, new tokens only, published post-processing.

    Parameters
    ----------
    model : transformers model
        A loaded model of ``family`` in evaluation mode.
    processor : transformers processor
        Its processor, with ``processor.tokenizer.padding_side == "left"``.
    family : Family
        The family descriptor (system prompt, conversation template).
    clips : sequence of np.ndarray
        Mono float32 audio at ``processor.feature_extractor.sampling_rate``.
    prompts : sequence of str
        One user prompt per clip (see :func:`user_prompt`).
    audio_refs : sequence of str, optional
        Names of the clips for the conversation's audio items (not read).
    max_new_tokens : int
        At most this many generated tokens (64 in the published recipe).
    postprocess : callable
        Raw response -> output line (:data:`POSTPROCESS`; default the label line).

    Returns
    -------
    labels : list of str
        One post-processed label line per clip, in input order.
    """
    import torch

    if len(clips) != len(prompts):
        raise ValueError(f"label_batch got {len(clips)} clips but {len(prompts)} prompts")
    if processor.tokenizer.padding_side != "left":
        raise ValueError("label_batch needs processor.tokenizer.padding_side = 'left' (batched generation)")
    inputs = _to_model(prepare_inputs(processor, family, clips, prompts, audio_refs), model)
    settings = dict(GENERATION_SETTINGS, max_new_tokens=max_new_tokens)
    with torch.inference_mode():
        sequences = model.generate(**inputs, **settings)
    new_tokens = sequences[:, inputs["input_ids"].shape[1]:]
    responses = processor.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return [postprocess(r) for r in responses]


# ---------------------------------------------------------------------------------------
# the run: clips -> batches -> journal -> label file


@dataclass
class LabelReport:
    """What a labelling run did: the label lines written, and the clips that failed."""

    labels: List[str]
    failures: List[str] = field(default_factory=list)
    reused: int = 0  # clips taken from the journal of an interrupted run
    long_clips: List[str] = field(default_factory=list)


def audio_duration(path: str) -> Optional[float]:
    """Duration in seconds from the file header (no decoding), or ``None`` if unreadable."""
    import soundfile as sf

    try:
        info = sf.info(path)
    except Exception:  # unreadable files are reported when they are decoded
        return None
    return info.frames / info.samplerate if info.samplerate else None


def split_windows(audio: np.ndarray, window: int) -> List[np.ndarray]:
    """Consecutive pieces of ``window`` samples (the last one shorter): how ``--long_audio window`` reads a clip."""
    return [audio[start:start + window] for start in range(0, max(len(audio), 1), window)]


def _long_clip_message(family: Family, window: float, long_clips: List[Tuple[str, float]], mode: str) -> str:
    shown = ", ".join(f"{os.path.basename(p)} ({d:.1f} s)" for p, d in long_clips[:10])
    more = f" and {len(long_clips) - 10} more" if len(long_clips) > 10 else ""
    if mode == "window":
        what = f"each {window:g} s window is labelled and the labels are joined in order"
    else:
        what = f"only the first {window:g} s are labelled (--long_audio window labels every {window:g} s window)"
    return (
        f"{len(long_clips)} clip(s) are longer than the {window:g} s the {family.title} audio front end reads; "
        f"{what}: {shown}{more}"
    )


# ---------------------------------------------------------------------------------------
# the per-batch step and the run


def load_family_model(family_key: str, source: str, precision: Precision):
    """``(family, processor, model)`` of an audio-LLM checkpoint, loaded for ``precision``:
    what the labelling and tower-embedding steps build on each worker."""
    from auditoryhum.models.families import get_family
    from auditoryhum.models.loader import load_pretrained, load_processor

    family = get_family(family_key)
    if not progress_enabled():
        import transformers

        transformers.utils.logging.disable_progress_bar()
    processor = load_processor(family.load_processor_class(), source, family.model_flag)
    model = load_pretrained(
        family.load_class(), source, family.model_flag, precision.device,
        dtype=precision.torch_dtype, quantization_config=precision.quantization_config(),
    )
    return family, processor, model


@dataclass
class LabelSpec(StepSpec):
    """How a worker builds the labelling step: picklable (family key, model source, precision)."""

    family_key: str
    model_source: str
    precision: Precision
    batch_size: int
    cut_window_s: Optional[float] = None  # --long_audio window: label every window of this length
    system_prompt: Optional[str] = None  # --system_prompt ("" = no system turn); None: the family's
    task: str = "labels"  # --task: which POSTPROCESS
    seed = SEED  # a class constant, not a field

    def build(self) -> "LabelStep":
        family, processor, model = load_family_model(self.family_key, self.model_source, self.precision)
        if self.system_prompt is not None:
            family = replace(family, system_prompt=self.system_prompt)
        processor.tokenizer.padding_side = "left"
        return LabelStep(model, processor, family, self.batch_size, self.cut_window_s, POSTPROCESS[self.task])

    def describe(self) -> str:
        from auditoryhum.models.families import get_family

        return f"{get_family(self.family_key).title} labels"


class LabelStep(Step):
    """Label a batch of ``(path, prompt)`` payloads: decode each clip (cut into windows with
    ``--long_audio window``), run :func:`label_batch` on batches of ``batch_size`` pieces, and
    join each clip's window labels in order.

    A batch the model fails on is retried clip by clip, so only the clip that causes the error
    fails (an empty label and a message); out of memory stops the run. A clip that the front
    end neither cuts nor fits into its padded window (Qwen3-Omni) would give longer features
    than any neighbour: its pieces run in batches of their own.
    """

    def __init__(self, model, processor, family: Family, batch_size: int, cut_window_s: Optional[float] = None,
                 postprocess=label_line):
        self.model, self.processor, self.family, self.batch_size = model, processor, family, batch_size
        self.postprocess = postprocess
        self.sampling_rate = processor.feature_extractor.sampling_rate
        self.window_n = int(round(cut_window_s * self.sampling_rate)) if cut_window_s else None
        self.pad_n = int(round(family.pad_seconds(processor) * self.sampling_rate))

    def prepare(self, payloads):
        prepared = []
        for path, prompt in payloads:
            try:
                audio, _ = load_audio(path, self.sampling_rate)
            except AudioDecodeError as exc:
                prepared.append((path, prompt, None, str(exc), False))
                continue
            pieces = split_windows(audio, self.window_n) if self.window_n and len(audio) > self.window_n else [audio]
            solo = self.family.window_seconds is None and len(audio) > self.pad_n
            prepared.append((path, prompt, pieces, None, solo))
        return prepared

    def run(self, prepared):
        parts: List[List[Optional[str]]] = [[None] * len(p[2]) if p[2] is not None else [] for p in prepared]
        errors: Dict[int, str] = {k: p[3] for k, p in enumerate(prepared) if p[3] is not None}
        shared, alone = [], []
        for k, (path, prompt, pieces, _, solo) in enumerate(prepared):
            for w, piece in enumerate(pieces or []):
                (alone if solo else shared).append((k, w, piece, prompt, path))
        for group in [shared[s:s + self.batch_size] for s in range(0, len(shared), self.batch_size)] + [[x] for x in alone]:
            for (k, w, _, _, _), text in zip(group, self._label(group, errors)):
                parts[k][w] = text
        # Windows of a long clip: their labels joined in order; empty ones add nothing.
        return [("" if k in errors else ", ".join(p for p in parts[k] if p), errors.get(k)) for k in range(len(prepared))]

    def _label(self, group, errors: Dict[int, str]) -> List[str]:
        try:
            return label_batch(self.model, self.processor, self.family,
                               [g[2] for g in group], [g[3] for g in group], [g[4] for g in group],
                               postprocess=self.postprocess)
        except Exception as exc:  # a model or processor error: isolate the clip(s) that cause it
            raise_if_out_of_memory(exc)
            if len(group) > 1:
                return [text for g in group for text in self._label([g], errors)]
            k, path = group[0][0], group[0][4]
            errors[k] = f"{path}: the model failed on this clip ({type(exc).__name__}: {first_line(exc)})"
            return [""]


def run_labelling(family: Family, model_source: str, paths: Sequence[str], prompts: Sequence[str], output: str,
                  precision: Precision, batch_size: Optional[int] = None, long_audio: str = "truncate", *,
                  engine: str = "local", ray_address: Optional[str] = None, actors: int = 1,
                  gpus_per_actor: Optional[float] = None, cpus_per_actor: Optional[float] = None,
                  verbose: bool = False, task: str = "labels") -> LabelReport:
    """Label every clip of ``paths`` with ``family``'s model and write one line per clip to ``output``.

    Parameters
    ----------
    family : Family
    model_source : str
        Local folder or hub id of the checkpoint.
    paths : sequence of str
        The clips, in sorted-path order (the order of the output lines).
    prompts : sequence of str
        One user prompt per clip (:func:`user_prompt`, with the clip's hint if any).
    output : str
        The label file to write (atomically, at the end). Its journal lives beside it.
    precision : Precision
        Resolved device, dtype and quantisation.
    batch_size : int, optional
        Clips (or windows) per forward pass; default per device (:data:`DEFAULT_BATCH_SIZE`).
    long_audio : {"truncate", "window"}
        What to do with clips longer than the front end's window.
    engine : {"local", "ray"}
        Who runs the model: this process, or a Ray actor pool (same bytes either way; a run
        interrupted under one resumes under the other).
    ray_address, actors, gpus_per_actor, cpus_per_actor, verbose
        Ray options (:class:`auditoryhum.engine.ray_executor.RayExecutor`); ignored by ``"local"``.
    task : {"labels", "caption"}
        The output post-processing (:data:`POSTPROCESS`); ``family.system_prompt`` is the system
        turn sent (``""``: none). Both are part of the resume key.

    Returns
    -------
    LabelReport
        The labels written (a failed clip has an empty line) and the failures.
    """
    from auditoryhum.models.loader import check_model_type, load_processor

    if long_audio not in LONG_AUDIO_CHOICES:
        raise UserError(f"--long_audio must be one of {', '.join(LONG_AUDIO_CHOICES)}, got {long_audio!r}")
    if len(prompts) != len(paths):
        raise ValueError("run_labelling needs one prompt per clip")
    if task not in POSTPROCESS:
        raise UserError(f"--task must be one of {', '.join(POSTPROCESS)}, got {task!r}")
    batch_size = optional_positive_int(batch_size, "batch_size") or DEFAULT_BATCH_SIZE.get(precision.device, 1)
    executor = make_executor(engine, ray_address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor,
                             cpus_per_actor=cpus_per_actor, verbose=verbose)
    note(precision.describe())
    seed_everything(SEED)

    check_model_type(model_source, family.model_flag, family.model_types, family.what)
    processor = load_processor(family.load_processor_class(), model_source, family.model_flag)
    window_s = family.window_seconds(processor) if family.window_seconds else None

    long_clips = []
    if window_s is not None:
        for path in paths:
            duration = audio_duration(path)
            if duration is not None and duration > window_s:
                long_clips.append((path, duration))
    if long_clips:
        warn(_long_clip_message(family, window_s, long_clips, long_audio))

    import transformers

    key = {
        "tool": "label",
        "family": family.key,
        "model": model_identity(model_source),
        "system_prompt": family.system_prompt,
        "task": task,
        "generation": GENERATION_SETTINGS,
        "seed": SEED,
        "device": precision.device,
        "dtype": precision.dtype,
        "quantization": precision.quantization,
        "long_audio": long_audio if window_s is not None else "whole",
        "transformers": transformers.__version__,
    }
    items = [Item(os.path.abspath(p), (p, q), path=p, extra_fp=digest(q)) for p, q in zip(paths, prompts)]
    spec = LabelSpec(family.key, model_source, precision, batch_size,
                     window_s if long_audio == "window" and window_s is not None else None,
                     system_prompt=family.system_prompt, task=task)
    result = run_resumable(output, key, items, spec, executor=executor, codec=TEXT, batch_size=batch_size,
                           desc=f"{family.title} labels", write=lambda values, _: write_lines(output, _lines(values)))
    return LabelReport(
        labels=_lines(result.values),
        failures=result.failure_list(),
        reused=result.reused,
        long_clips=[p for p, _ in long_clips],
    )


def _lines(values: Sequence[Optional[str]]) -> List[str]:
    return ["" if label is None else label for label in values]

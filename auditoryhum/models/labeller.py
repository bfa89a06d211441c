"""The labelling engine: one loop for every audio-LLM family of :mod:`auditoryhum.models.families`.

Load the processor and model once; label the clips in batches (greedy decoding, at most 64
new tokens, KV cache, as the published recipe); decode only the new tokens; post-process
each response with :func:`auditoryhum.labels.postprocess_response`; journal every finished
clip so that a killed run resumes; write the label file atomically at the end.

:func:`label_batch` is the per-batch step: a pure function of the loaded model, its processor,
the family and a batch of clips and prompts, holding no state between calls, so that another
backend (several GPUs, several nodes) can drive the same step.

Batching pads the *text* on the left (``processor.tokenizer.padding_side = "left"``, set after
loading: passing ``padding_side`` to ``from_pretrained`` would left-pad the audio features
too) and pads every clip's audio with zeros as the published scripts do
(``padding="max_length"``: to the front end's full window), so a clip's features, hence its
greedy label, do not depend on its batch neighbours. For the Qwen Omni thinkers, which read
only the real frames, the padding stops one FFT window after the batch's longest clip instead
of at 300 s (:func:`trimmed_pad_length`): the same features at a fraction of the cost.
"""

import hashlib
import os
import random
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from auditoryhum.console import note, progress_enabled, warn
from auditoryhum.errors import UserError
from auditoryhum.io.artefacts import write_lines
from auditoryhum.io.audio import AudioDecodeError, load_audio
from auditoryhum.io.checkpoint import Journal, file_fingerprint
from auditoryhum.labels import postprocess_response
from auditoryhum.models.device import Precision
from auditoryhum.models.families import PROMPT, Family

SEED = 100
# Decoding of the published recipe: greedy (no sampling, one beam), at most 64 new tokens, KV
# cache. temperature=1.0 is what the published scripts pass; with do_sample=False it only
# overrides a checkpoint's own sampling temperature, whose presence would warn.
GENERATION_SETTINGS = {"max_new_tokens": 64, "do_sample": False, "num_beams": 1, "use_cache": True, "temperature": 1.0}
LONG_AUDIO_CHOICES = ("truncate", "window")
DEFAULT_BATCH_SIZE = {"cuda": 8, "mps": 2, "cpu": 2}

# Characters that end a line for Python's str.splitlines() (and for universal-newline readers)
# besides "\n", which post-processing already turned into ", ": one label must stay one line.
_OTHER_LINE_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def seed_everything(seed: int = SEED) -> None:
    """Seed Python, NumPy and torch (all devices), as the published recipe does."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def user_prompt(annotation: Optional[str] = None) -> str:
    """The user prompt of one clip: the published prompt, plus a non-blank human hint after one space."""
    hint = (annotation or "").strip()
    return f"{PROMPT} {hint}" if hint else PROMPT


def label_line(response: str) -> str:
    """A model response as one label line: the published post-processing, then any remaining
    line-break character (a lone ``\\r``, a Unicode line separator) made a ``", "`` as well, so
    a label can never split into two lines and misalign the file."""
    return _OTHER_LINE_BREAKS.sub(", ", postprocess_response(response))


def render_prompts(processor, family: Family, prompts: Sequence[str], audio_refs: Sequence[str]) -> List[str]:
    """The chat-templated text of each clip's conversation, ending with the generation prompt."""
    return [
        processor.apply_chat_template(family.build_conversation(prompt, ref), add_generation_prompt=True, tokenize=False)
        for prompt, ref in zip(prompts, audio_refs)
    ]


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
                audio_refs: Optional[Sequence[str]] = None, max_new_tokens: int = GENERATION_SETTINGS["max_new_tokens"]) -> List[str]:
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
    return [label_line(r) for r in responses]


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


def model_identity(source: str) -> Dict[str, Any]:
    """What identifies the weights behind ``source`` for the journal: a hub id, or a local
    folder's absolute path and the size and modification time of each file in it."""
    folder = os.path.expanduser(source)
    if not os.path.isdir(folder):
        return {"hub_id": source}
    files = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        fp = file_fingerprint(path)
        if fp is not None and os.path.isfile(path):
            files[name] = list(fp)
    return {"folder": os.path.abspath(folder), "files": files}


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


def _prompt_digest(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


@dataclass
class _Run:
    """The state of one labelling run shared by its steps (never by two runs)."""

    paths: Sequence[str]
    prompts: Sequence[str]
    journal: Journal
    ids: List[str]
    fingerprints: List[Any]
    labels: List[Optional[str]]
    failures: Dict[int, str] = field(default_factory=dict)
    bar: Any = None

    def finish(self, results: Sequence[Tuple[int, str, Optional[str]]]) -> None:
        """Record finished clips: one journal append (one flush and sync) per batch."""
        records = []
        for i, text, error in results:
            if error is None:
                self.labels[i] = text
            else:
                self.failures[i] = error
            records.append({"id": self.ids[i], "fp": self.fingerprints[i], "value": text if error is None else "", "error": error})
        self.journal.append(records)
        self.bar.update(len(results))


def run_labelling(family: Family, model_source: str, paths: Sequence[str], prompts: Sequence[str], output: str,
                  precision: Precision, batch_size: Optional[int] = None, long_audio: str = "truncate") -> LabelReport:
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
    batch_size = batch_size or DEFAULT_BATCH_SIZE.get(precision.device, 1)
    if batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {batch_size}")
    note(precision.describe())
    seed_everything(SEED)

    check_model_type(model_source, family.model_flag, family.model_types, family.what)
    processor = load_processor(family.load_processor_class(), model_source, family.model_flag)
    processor.tokenizer.padding_side = "left"
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
        "generation": GENERATION_SETTINGS,
        "seed": SEED,
        "device": precision.device,
        "dtype": precision.dtype,
        "quantization": precision.quantization,
        "long_audio": long_audio if window_s is not None else "whole",
        "transformers": transformers.__version__,
    }
    journal = Journal.open(output, key)
    if journal.discarded_reason:
        note(f"not resuming from the journal {journal.path}: {journal.discarded_reason}; starting over")

    run = _Run(
        paths=paths,
        prompts=prompts,
        journal=journal,
        ids=[os.path.abspath(p) for p in paths],
        fingerprints=[[list(file_fingerprint(p) or ()), _prompt_digest(q)] for p, q in zip(paths, prompts)],
        labels=[None] * len(paths),
    )
    for i, (cid, fp) in enumerate(zip(run.ids, run.fingerprints)):
        record = journal.records.get(cid)
        if record and record.get("fp") == fp and record.get("error") is None:
            run.labels[i] = record["value"]
    reused = sum(label is not None for label in run.labels)
    pending = [i for i, label in enumerate(run.labels) if label is None]
    if reused:
        note(f"resuming: {reused} of {len(paths)} clips already labelled (journal {journal.path})")

    try:
        if pending:
            _label_pending(run, pending, family, model_source, processor, precision, batch_size,
                           window_s if long_audio == "window" else None)
    except BaseException:
        if not journal.records:
            journal.remove()  # nothing worth resuming: leave no stray journal behind
        raise
    finally:
        journal.close()

    lines = ["" if label is None else label for label in run.labels]
    write_lines(output, lines)
    if run.failures:
        note(f"journal kept at {journal.path}: a rerun retries only the {len(run.failures)} failed clip(s)")
    else:
        journal.remove()
    return LabelReport(
        labels=lines,
        failures=[run.failures[i] for i in sorted(run.failures)],
        reused=reused,
        long_clips=[p for p, _ in long_clips],
    )


def _label_pending(run: _Run, pending: Sequence[int], family: Family, model_source: str, processor,
                   precision: Precision, batch_size: int, cut_window_s: Optional[float]) -> None:
    """Load the model once and label the ``pending`` clips of ``run`` in batches."""
    from auditoryhum.models.loader import load_pretrained

    if not progress_enabled():
        import transformers

        transformers.utils.logging.disable_progress_bar()
    model = load_pretrained(
        family.load_class(), model_source, family.model_flag, precision.device,
        dtype=precision.torch_dtype, quantization_config=precision.quantization_config(),
    )
    sampling_rate = processor.feature_extractor.sampling_rate
    window_n = int(round(cut_window_s * sampling_rate)) if cut_window_s else None
    pad_n = int(round(family.pad_seconds(processor) * sampling_rate))
    runner = _BatchRunner(model, processor, family, batch_size)
    run.bar = counter_bar(len(pending), f"{family.title} labels")
    try:
        for i in pending:
            try:
                audio, _ = load_audio(run.paths[i], sampling_rate)
            except AudioDecodeError as exc:
                run.finish([(i, "", str(exc))])
                continue
            pieces = split_windows(audio, window_n) if window_n and len(audio) > window_n else [audio]
            # A clip that the front end neither cuts nor fits into its padded window (Qwen3-Omni)
            # has longer features than any neighbour would: it gets a batch of its own.
            solo = family.window_seconds is None and len(audio) > pad_n
            run.finish(runner.submit(i, pieces, run.prompts[i], run.paths[i], solo))
        run.finish(runner.drain())
    finally:
        run.bar.close()


class _BatchRunner:
    """Collects clips (or their windows) into batches, runs :func:`label_batch` on each full
    batch, and hands back every clip whose windows are all labelled."""

    def __init__(self, model, processor, family: Family, batch_size: int):
        self.model, self.processor, self.family, self.batch_size = model, processor, family, batch_size
        self.queue: List[Tuple[int, int, np.ndarray, str, str]] = []  # (clip, window, audio, prompt, name)
        self.parts: Dict[int, List[Optional[str]]] = {}
        self.errors: Dict[int, str] = {}
        self.names: Dict[int, str] = {}

    def submit(self, clip: int, pieces: List[np.ndarray], prompt: str, name: str, solo: bool = False):
        """Queue a clip's pieces; run every batch that is full. ``solo`` pieces run alone at once.

        Returns ``(clip, label, error)`` for each clip finished by this call.
        """
        self.parts[clip] = [None] * len(pieces)
        self.names[clip] = name
        items = [(clip, w, piece, prompt, name) for w, piece in enumerate(pieces)]
        finished = []
        if solo:
            for item in items:
                finished += self._run([item])
            return finished
        self.queue += items
        while len(self.queue) >= self.batch_size:
            batch, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size:]
            finished += self._run(batch)
        return finished

    def drain(self):
        """Run whatever is still queued (the last, partial batch)."""
        finished = []
        while self.queue:
            batch, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size:]
            finished += self._run(batch)
        return finished

    def _run(self, batch) -> List[Tuple[int, str, Optional[str]]]:
        try:
            texts = self._label(batch)
        except _OutOfMemory:
            raise
        except Exception as exc:  # a model or processor error: isolate the clip(s) that cause it
            if len(batch) == 1:
                clip = batch[0][0]
                self.errors[clip] = f"{self.names[clip]}: the model failed on this clip ({type(exc).__name__}: {_first_line(exc)})"
                texts = [""]
            else:
                finished = []
                for item in batch:
                    finished += self._run([item])
                return finished
        finished = []
        for (clip, w, _, _, _), text in zip(batch, texts):
            parts = self.parts.get(clip)
            if parts is None:
                continue
            parts[w] = text
            if all(p is not None for p in parts):
                del self.parts[clip]
                error = self.errors.pop(clip, None)
                # Windows of a long clip: their labels joined in order; empty ones add nothing.
                joined = ", ".join(p for p in parts if p)
                finished.append((clip, joined, error))
        return finished

    def _label(self, batch) -> List[str]:
        import torch

        try:
            return label_batch(
                self.model, self.processor, self.family,
                [b[2] for b in batch], [b[3] for b in batch], [b[4] for b in batch],
            )
        except torch.cuda.OutOfMemoryError:
            raise _OutOfMemory() from None


class _OutOfMemory(UserError):
    def __init__(self):
        super().__init__(
            "the accelerator ran out of memory; rerun with a smaller --batch_size (finished clips are kept and skipped)"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def counter_bar(total: int, desc: str):
    """A progress bar updated by hand (``update(n)``, ``close()``); a silent stand-in when
    progress is off (``--quiet``, or stderr is not a terminal)."""
    if not progress_enabled():
        return _NoBar()
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="clip", file=sys.stderr, dynamic_ncols=True)

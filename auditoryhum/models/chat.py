"""Text chat generation, and the composite-labelling run that uses it.

Two backends answer a list of text prompts, each with the same system instruction:

* :class:`HFChatBackend`: any local (or hub) Hugging Face chat model, text only, through its
  chat template. A checkpoint of one of the audio-LLM families of
  :mod:`auditoryhum.models.families` (the Qwen2.5-Omni thinker of the paper, Qwen3-Omni,
  Qwen2-Audio, Gemma-3n) is loaded with that family's class and its processor's template;
  anything else with ``AutoModelForCausalLM`` and ``AutoTokenizer``. The model is loaded
  once; prompts are batched with the *text* padded on the left
  (``tokenizer.padding_side = "left"``, set after loading); decoding is greedy (no sampling,
  one beam, no repetition penalty, KV cache) after seeding everything with 100; only the new
  tokens are decoded, special tokens skipped.
* :class:`GeminiChatBackend`: a Gemini model through the robust client of
  :mod:`auditoryhum.models.gemini` (its settings, key handling, retry and error policy), one
  request per prompt (:meth:`~auditoryhum.models.gemini.GeminiLabeller.describe_text`).

:func:`run_composite_labelling` asks a backend for every cluster's composite label (the
prompt is :func:`auditoryhum.composite.cluster_prompt`) through the run engine
(:func:`auditoryhum.engine.run_resumable`), which journals every answered batch beside the
taxonomy CSV so that a killed run resumes, and writes the taxonomy CSV and the JSON document
atomically at the end.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from auditoryhum.composite import (
    COMPOSITE_SYSTEM_INSTRUCTION, NOISE_CLUSTER, NOISE_COMPOSITE_LABEL, ClusterLabelStats, CompositeResult,
    clean_composite_answer, composite_document, naming_prompt, prompt_style_for, settle_labels, taxonomy_rows,
)
from auditoryhum.console import note, progress_enabled
from auditoryhum.engine import (
    Codec, Item, Step, StepSpec, Wording, digest, first_line, raise_if_out_of_memory, run_resumable,
)
from auditoryhum.errors import UserError
from auditoryhum.io.artefacts import write_composite_json, write_taxonomy_csv
from auditoryhum.models.device import Precision
from auditoryhum.validation import optional_positive_int

from auditoryhum.recipe import SEED  # noqa: E402  (the labellers' seed)
# New tokens per composite label, and prompts per generate call (a cluster prompt is a few
# hundred tokens at most): one definition each, in auditoryhum.defaults.
from auditoryhum.defaults import CHAT_BATCH_SIZE as DEFAULT_BATCH_SIZE, CHAT_MAX_NEW_TOKENS as DEFAULT_MAX_NEW_TOKENS  # noqa: E402
# Greedy decoding whatever the checkpoint's generation_config.json says (chat checkpoints ship
# sampling settings and repetition penalties); temperature/top_p at their neutral values only
# override the checkpoint's, which would otherwise warn next to do_sample=False.
GENERATION_SETTINGS = {"do_sample": False, "num_beams": 1, "use_cache": True, "temperature": 1.0, "top_p": 1.0,
                       "repetition_penalty": 1.0}


# ---------------------------------------------------------------------------------------
# Hugging Face chat models


@dataclass
class ChatModel:
    """A loaded chat model and what renders and tokenises its conversations.

    ``template`` is the object whose ``apply_chat_template`` is used: the processor for an
    audio-LLM family (its chat template lives there), else the tokenizer. ``structured``:
    message contents are lists of ``{"type": "text", ...}`` items (processors) instead of
    strings (tokenizers). ``system_in_user``: the template has no system role, so the system
    instruction opens the user message instead.
    """

    model: Any
    tokenizer: Any
    template: Any
    structured: bool
    kind: str  # what was loaded, for messages: "Qwen2ForCausalLM", "Qwen2.5-Omni thinker", ...
    family_key: Optional[str] = None
    system_in_user: bool = False


def _read_model_type(source: str, flag: str) -> str:
    # One reader for folders, hub ids and GGUF files (whose architecture is in their header).
    from auditoryhum.models.loader import read_model_type

    return read_model_type(source, flag)


def family_of_model_type(model_type: str):
    """The audio-LLM family whose checkpoints have ``model_type`` (``None``: a plain causal LM)."""
    from auditoryhum.models.families import FAMILIES

    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    return None


def system_message_for(family_key: Optional[str], instruction: str) -> str:
    """The system message sent to a model: ``instruction``, after the Qwen identity prompt
    for the Qwen Omni families, which are trained with it and misbehave without it."""
    from auditoryhum.models.families import FAMILIES, QWEN_OMNI_SYSTEM_PROMPT

    family = FAMILIES.get(family_key) if family_key else None
    if family is not None and family.system_prompt == QWEN_OMNI_SYSTEM_PROMPT:
        return f"{QWEN_OMNI_SYSTEM_PROMPT} {instruction}"
    return instruction


def load_chat_model(source: str, precision: Precision, flag: str = "--model") -> ChatModel:
    """Load a chat model from a local folder or hub id, in evaluation mode, on ``precision``'s device.

    Raises :class:`UserError` (one line naming ``flag``) for a missing folder, a folder that
    holds no loadable model, or a model without a chat template.
    """
    import transformers

    from auditoryhum.models.loader import describe_source, load_pretrained, load_processor

    model_type = _read_model_type(source, flag)
    family = family_of_model_type(model_type)
    if family is not None:
        processor = load_processor(transformers.AutoProcessor, source, flag)
        tokenizer = processor.tokenizer
        template, structured, model_class = processor, True, family.load_class()
        if not getattr(processor, "chat_template", None):
            template = tokenizer  # an older checkpoint keeps its (multimodal) template in the tokenizer
        kind = f"{family.title} ({family.model_class})"
    else:
        tokenizer = load_processor(transformers.AutoTokenizer, source, flag)
        template, structured, model_class = tokenizer, False, transformers.AutoModelForCausalLM
        kind = ""  # the class AutoModelForCausalLM picks, known once loaded
    if not (getattr(template, "chat_template", None) or getattr(tokenizer, "chat_template", None)):
        raise UserError(
            f"{flag}: the model in {describe_source(source)} has no chat template; give an instruction-tuned (chat) model"
        )
    # Batched generation continues every prompt from its last token: pad the text on the left.
    # Set here, not in from_pretrained, which would also left-pad a processor's audio features.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError(f"{flag}: the tokenizer in {describe_source(source)} has neither a padding nor an end token")
        tokenizer.pad_token = tokenizer.eos_token
    if not progress_enabled():
        transformers.utils.logging.disable_progress_bar()
    model = load_pretrained(
        model_class, source, flag, precision.device,
        dtype=precision.torch_dtype, quantization_config=precision.quantization_config(),
    )
    kind = kind or type(model).__name__
    return ChatModel(model, tokenizer, template, structured, kind, family.key if family else None)


def _template_text(chat: ChatModel) -> str:
    template = getattr(chat.template, "chat_template", None) or getattr(chat.tokenizer, "chat_template", None) or ""
    return template if isinstance(template, str) else " ".join(map(str, dict(template).values()))


def _messages(chat: ChatModel, system: str, prompt: str) -> List[Dict[str, Any]]:
    def content(text: str):
        return [{"type": "text", "text": text}] if chat.structured else text

    if not system:  # --system_prompt "": no system turn at all, not an empty one
        return [{"role": "user", "content": content(prompt)}]
    if chat.system_in_user:
        return [{"role": "user", "content": content(f"{system}\n\n{prompt}")}]
    return [{"role": "system", "content": content(system)}, {"role": "user", "content": content(prompt)}]


def render_chat(chat: ChatModel, system: str, prompts: Sequence[str]) -> List[str]:
    """The chat-templated text of each ``(system, prompt)`` conversation, ending with the generation prompt.

    A template that rejects a system message (some have no system role) gets the system
    instruction at the start of the user message instead, for this and every later call.
    Thinking is switched off (``enable_thinking=False``) for templates that know that switch.
    """
    extra = {"enable_thinking": False} if "enable_thinking" in _template_text(chat) else {}

    def render(prompt: str) -> str:
        return chat.template.apply_chat_template(_messages(chat, system, prompt), add_generation_prompt=True,
                                                 tokenize=False, **extra)

    texts = []
    for prompt in prompts:
        try:
            texts.append(render(prompt))
        except Exception as exc:  # jinja2's TemplateError from the template's raise_exception
            if chat.system_in_user:
                raise UserError(f"the model's chat template cannot render a prompt: {first_line(exc)}") from None
            chat.system_in_user = True
            note(f"the chat template rejects a system message ({first_line(exc)}); "
                 f"the instruction opens the user message instead")
            try:
                texts.append(render(prompt))
            except Exception as exc2:
                raise UserError(f"the model's chat template cannot render a prompt: {first_line(exc2)}") from None
    return texts


def generate_batch(chat: ChatModel, system: str, prompts: Sequence[str], max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> List[str]:
    """Answer one batch of prompts: greedy generation, new tokens only, special tokens skipped.

    Parameters
    ----------
    chat : ChatModel
        From :func:`load_chat_model` (its tokenizer pads on the left).
    system : str
        The system message of every conversation.
    prompts : sequence of str
        One user message per conversation.
    max_new_tokens : int
        At most this many generated tokens per answer.

    Returns
    -------
    answers : list of str
        The raw decoded answers, in input order. An answer does not depend on the other
        prompts of its batch (left padding, attention mask).
    """
    import torch

    if chat.tokenizer.padding_side != "left":
        raise ValueError("generate_batch needs tokenizer.padding_side = 'left' (batched generation)")
    texts = render_chat(chat, system, prompts)
    # The template writes every special token itself (a <bos> included); the tokenizer must
    # not add a second one.
    inputs = chat.tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt")
    inputs = {name: value.to(chat.model.device) for name, value in inputs.items()}
    settings = dict(GENERATION_SETTINGS, max_new_tokens=max_new_tokens, pad_token_id=chat.tokenizer.pad_token_id)
    with torch.inference_mode():
        sequences = chat.model.generate(**inputs, **settings)
    new_tokens = sequences[:, inputs["input_ids"].shape[1]:]
    return chat.tokenizer.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)


class HFChatBackend:
    """Composite labels from a Hugging Face chat model (see the module docstring).

    The model is loaded by the run engine's step (:meth:`step_spec`), only when a cluster is
    left to name (a fully resumed run loads nothing), but the system message, which depends
    on the model family, is known at construction.
    """

    name = "hf"

    def __init__(self, source: str, precision: Precision, batch_size: Optional[int] = None,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, instruction: str = COMPOSITE_SYSTEM_INSTRUCTION,
                 flag: str = "--model"):
        self.source, self.precision, self.flag = source, precision, flag
        self.batch_size = optional_positive_int(batch_size, "batch_size") or DEFAULT_BATCH_SIZE.get(precision.device, 1)
        if max_new_tokens < 1:
            raise UserError(f"--max_new_tokens must be at least 1, got {max_new_tokens}")
        self.max_new_tokens = max_new_tokens
        self.family_key = getattr(family_of_model_type(_read_model_type(source, flag)), "key", None)
        self.system = system_message_for(self.family_key, instruction)
        self.chat: Optional[ChatModel] = None

    def journal_key(self) -> Dict[str, Any]:
        import transformers

        from auditoryhum.models.identity import model_identity

        return {
            "tool": "composite", "backend": self.name, "model": model_identity(self.source),
            "system": self.system, "generation": dict(GENERATION_SETTINGS, max_new_tokens=self.max_new_tokens),
            "seed": SEED, "device": self.precision.device, "dtype": self.precision.dtype,
            "quantization": self.precision.quantization, "transformers": transformers.__version__,
        }

    def describe(self) -> Dict[str, Any]:
        return {"backend": self.name, "model": self.source, "device": self.precision.device, "dtype": self.precision.dtype,
                "quantization": self.precision.quantization, "max_new_tokens": self.max_new_tokens,
                "generation": dict(GENERATION_SETTINGS, max_new_tokens=self.max_new_tokens), "seed": SEED}

    def step_spec(self) -> "HFChatSpec":
        """The engine's step spec: loads the model once, answers a batch of prompts per call."""
        return HFChatSpec(self.source, self.precision, self.flag, self.system, self.max_new_tokens, self.batch_size)


@dataclass
class HFChatSpec(StepSpec):
    """Builds :class:`HFChatStep` (picklable: the model source and the decoding)."""

    source: str
    precision: Precision
    flag: str
    system: str
    max_new_tokens: int
    batch_size: int
    seed = SEED  # a class constant, not a field

    def build(self) -> "HFChatStep":
        note(self.precision.describe())
        chat = load_chat_model(self.source, self.precision, self.flag)
        note(f"composite labels from {chat.kind}, {self.batch_size} clusters per batch")
        return HFChatStep(chat, self)


class HFChatStep(Step):
    """Answer a batch of prompts with :func:`generate_batch`; a model that cannot generate
    stops the run (every later batch would fail too)."""

    def __init__(self, chat: ChatModel, spec: HFChatSpec):
        self.chat, self.spec = chat, spec

    def run(self, prompts):
        try:
            answers = generate_batch(self.chat, self.spec.system, list(prompts), self.spec.max_new_tokens)
        except UserError:
            raise
        except Exception as exc:
            raise_if_out_of_memory(exc)
            raise UserError(f"{self.spec.flag} {self.spec.source!r}: generation failed "
                            f"({type(exc).__name__}: {first_line(exc)})") from None
        return [(text, None) for text in answers]


# ---------------------------------------------------------------------------------------
# Gemini


class GeminiChatBackend:
    """Composite labels from a Gemini model: one text request per cluster through
    :class:`auditoryhum.models.gemini.GeminiLabeller` (retries, back-off, error classes).

    A cluster whose request fails after its retries is recorded as failed and the run goes on;
    an authentication error, an unknown model, or ``max_consecutive_failures`` failures in a
    row stop the run (:class:`UserError`).
    """

    name = "gemini"

    def __init__(self, settings, instruction: str = COMPOSITE_SYSTEM_INSTRUCTION):
        self.settings = settings
        self.system = instruction

    def journal_key(self) -> Dict[str, Any]:
        from auditoryhum.models.gemini import GENERATION_CONFIG

        # Never the key or the endpoint (which only routes the same model).
        return {"tool": "composite", "backend": self.name, "model": self.settings.model,
                "system": self.system, "generation": GENERATION_CONFIG}

    def describe(self) -> Dict[str, Any]:
        from auditoryhum.models.gemini import GENERATION_CONFIG

        return {"backend": self.name, "model": self.settings.model, "generation": GENERATION_CONFIG}

    @property
    def batch_size(self) -> int:
        return 1  # one request per cluster

    @property
    def max_consecutive_failures(self) -> int:
        return self.settings.max_consecutive_failures

    def step_spec(self) -> "GeminiChatSpec":
        return GeminiChatSpec(self.settings, self.system)


@dataclass
class GeminiChatSpec(StepSpec):
    """Builds :class:`GeminiChatStep`: one client."""

    settings: Any
    system: str

    def build(self) -> "GeminiChatStep":
        from auditoryhum.models import gemini

        return GeminiChatStep(gemini.GeminiLabeller(self.settings), self)


class GeminiChatStep(Step):
    """One text request per prompt; a run-stopping failure (authentication, unknown model)
    raises :class:`UserError`, any other is that cluster's error (key scrubbed)."""

    def __init__(self, client, spec: GeminiChatSpec):
        self.client, self.spec = client, spec

    def run(self, prompts):
        from auditoryhum.models import gemini

        out = []
        for prompt in prompts:
            try:
                out.append((self.client.describe_text(prompt, self.spec.system), None))
            except gemini.CallFailed as exc:
                if exc.kind == gemini.RUN:
                    raise UserError(f"stopped: {exc.message}") from None
                out.append((None, exc.message))
            except (KeyboardInterrupt, UserError):
                raise
            except Exception as exc:  # never let an SDK message carrying the key escape unscrubbed
                out.append((None, gemini.one_line(gemini.scrub(f"unexpected {type(exc).__name__}: {exc}",
                                                                self.spec.settings.api_key))))
        return out

    def cancel(self) -> None:
        self.client.stop.set()


# ---------------------------------------------------------------------------------------
# the run: clusters -> prompts -> backend -> journal -> taxonomy CSV + JSON


@dataclass
class CompositeReport:
    """What a composite-labelling run did."""

    results: Dict[int, CompositeResult]
    failures: List[str] = field(default_factory=list)  # one message per cluster that got no label
    reused: int = 0  # clusters taken from the journal of an interrupted run
    asked: int = 0  # clusters sent to the model in this run


def _record_id(cluster: int) -> str:
    return f"cluster {cluster}"


class _CompositeCodec(Codec):
    """A cluster's value in the journal: its cleaned label and the model's raw answer."""

    def encode(self, value, error):
        label, answer = value if value is not None else ("", None)
        return {"value": label if error is None else "", "answer": answer}

    def decode(self, record):
        return record["value"], record.get("answer")


def run_composite_labelling(stats: ClusterLabelStats, backend, taxonomy_csv: str, json_path: str,
                            top_labels: int, run_info: Optional[Dict[str, Any]] = None) -> CompositeReport:
    """Name every cluster of ``stats`` with ``backend`` and write the taxonomy CSV and the JSON.

    Parameters
    ----------
    stats : ClusterLabelStats
        The clusters' label distributions (:func:`auditoryhum.composite.cluster_label_stats`).
    backend : HFChatBackend or GeminiChatBackend
        Anything with ``system``, ``batch_size``, ``journal_key()``, ``describe()`` and
        ``step_spec()`` (and optionally ``max_consecutive_failures``).
    taxonomy_csv, json_path : str
        The outputs, written atomically at the end; the journal lives beside ``taxonomy_csv``.
    top_labels : int
        Labels in each row's ``top_labels`` field.
    run_info : dict, optional
        Extra facts stored in the JSON document's ``"run"`` object (the input files).

    Returns
    -------
    CompositeReport

    Notes
    -----
    The noise cluster (-1, HDBSCAN) is not sent to the model: it is written with the label
    :data:`auditoryhum.composite.NOISE_COMPOSITE_LABEL`. A cluster whose cleaned answer is
    empty, or whose request failed, has an empty composite label, an ``error`` in the JSON,
    and is retried by a rerun (the journal is kept for it).
    """
    if top_labels < 1:
        raise UserError(f"--top_labels must be at least 1, got {top_labels}")
    clusters = [c for c in stats.per_cluster if c != NOISE_CLUSTER]
    # The paper's prompt for Gemini and the audio-LLM families; a short question for any other
    # (small, local) chat model, which answers the paper's prompt with a sentence.
    style = prompt_style_for(backend.name, getattr(backend, "family_key", None))
    prompts = [naming_prompt(stats.per_cluster[c], style) for c in clusters]
    items = [Item(_record_id(c), p, extra_fp=digest(p)) for c, p in zip(clusters, prompts)]

    def finish(index: int, answer: Optional[str], error: Optional[str]):
        label = clean_composite_answer(answer) if answer is not None else ""
        if error is None and not label:
            error = f"the answer is empty after clean-up (raw answer {answer!r:.120})"
        if error is not None:
            error = f"cluster {clusters[index]}: {error}"
        return (label, answer), error

    results: Dict[int, CompositeResult] = {}

    def write(values, failed: Dict[int, str]) -> None:
        if NOISE_CLUSTER in stats.per_cluster:
            results[NOISE_CLUSTER] = CompositeResult(NOISE_COMPOSITE_LABEL)
        for k, cluster in enumerate(clusters):
            label, answer = values[k] if values[k] is not None else ("", None)
            results[cluster] = CompositeResult(label if k not in failed else "", answer, failed.get(k))
        # Grounded (short style) and distinct names across clusters; the journal keeps each
        # cluster's own clean answer, so a resumed run settles the same names again.
        settled = settle_labels({c: r.label for c, r in results.items()}, stats, style)
        results.update({c: CompositeResult(settled[c], r.answer, r.error) for c, r in results.items()})
        run = dict(backend.describe(), **(run_info or {}))
        write_taxonomy_csv(taxonomy_csv, taxonomy_rows(stats, results, top_labels))
        write_composite_json(json_path, composite_document(stats, results, backend.system, run, top_labels,
                                                            prompts=dict(zip(clusters, prompts))))

    # A server backend keeps several requests in flight (its executor); the others run in order.
    executor = backend.executor() if hasattr(backend, "executor") else None
    outcome = run_resumable(
        taxonomy_csv, backend.journal_key(), items, backend.step_spec(), write=write, batch_size=backend.batch_size,
        executor=executor,
        desc="composite labels", codec=_CompositeCodec(), finish=finish, warn_failures=True,
        max_consecutive_failures=getattr(backend, "max_consecutive_failures", 0),
        wording=Wording(unit="clusters", done="named", retry="a rerun asks again only for the {n} failed {each}"),
    )
    failures = [results[c].error for c in sorted(results) if results[c].error]
    return CompositeReport(results, failures, outcome.reused, outcome.asked)

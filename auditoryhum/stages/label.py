"""Labelling stages: an audio LLM (four families) or a Gemini model writes one label line per clip.

Top level is light (standard library only): the models are imported inside the functions.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Union

from auditoryhum.stages._base import StageResult, as_parameter, check_precision, expand_clips, guarded, local_model

#: A human hint longer than this is refused: it is appended to the prompt, and a runaway line
#: (a pasted file) would make generation run without bound.
MAX_HINT_CHARS = 2000

#: The families :func:`label` accepts (``auditoryhum.models.families.FAMILIES``).
LABEL_FAMILIES = ("qwen2a", "qwen2_5o", "qwen3o", "gemma3n")
#: ``--task`` presets (``auditoryhum.models.labeller.POSTPROCESS``): ``labels``, the published
#: word pairs; ``caption``, the revision's free caption (its prompt, no system turn, one line).
LABEL_TASKS = ("labels", "caption")


@dataclass
class LabelResult(StageResult):
    """What a labelling stage did.

    Attributes
    ----------
    labels : list of str
        The label line written for each clip, in clip order (``""`` for a failed clip).
    paths : list of str
        The clips, in the order of the label file.
    model : str
        The model that labelled them (folder, hub id or Gemini id).
    """

    labels: List[str] = field(default_factory=list)
    paths: List[str] = field(default_factory=list)
    model: str = ""


def resolve_prompts(task: str, prompt: Optional[str], system_prompt: Optional[str], family_system: str):
    """``(prompt, system_prompt)`` a labelling run sends: the ``task``'s preset, unless given.

    ``labels``: :data:`auditoryhum.recipe.PROMPT` and ``family_system`` (the family's system
    prompt); ``caption``: :data:`auditoryhum.recipe.CAPTION_PROMPT` and ``""`` (no system turn).
    An explicit ``prompt`` or ``system_prompt`` overrides the preset (``system_prompt=""``: no
    system turn). A blank ``prompt`` raises :class:`ParameterError`.
    """
    from auditoryhum.errors import ParameterError
    from auditoryhum.recipe import CAPTION_PROMPT, PROMPT
    from auditoryhum.validation import one_of

    one_of(task, LABEL_TASKS, "task")
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ParameterError("prompt", "is empty; give the text of the user prompt (or leave it out for the task's)")
        if len(prompt) > MAX_HINT_CHARS:
            raise ParameterError("prompt", f"has {len(prompt)} characters; at most {MAX_HINT_CHARS} are accepted")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise ParameterError("system_prompt", f"must be text ('' for no system turn), got {system_prompt!r}")
    preset = (CAPTION_PROMPT, "") if task == "caption" else (PROMPT, family_system)
    return (preset[0] if prompt is None else prompt.strip(),
            preset[1] if system_prompt is None else system_prompt.strip())


def clip_prompts(paths: Sequence[str], annotations: Optional[str] = None, clips: str = "the clips",
                 prompt: Optional[str] = None) -> List[str]:
    """The user prompt of every clip: ``prompt`` (default the published one), plus its hint from ``annotations`` if any.

    Parameters
    ----------
    paths : sequence of str
        The clips, in label-file order.
    annotations : str, optional
        Human hints, one line per clip in that order (may be shorter; a blank line is no hint).
        A hint over :data:`MAX_HINT_CHARS` characters is refused.
    clips : str
        How messages name the clips.
    prompt : str, optional
        The prompt before the hint (default :data:`auditoryhum.recipe.PROMPT`).

    Returns
    -------
    list of str
        One prompt per clip.
    """
    from auditoryhum.errors import ParameterError
    from auditoryhum.io.artefacts import check_aligned, read_annotations
    from auditoryhum.models.labeller import user_prompt
    from auditoryhum.recipe import PROMPT

    hints: List[str] = []
    if annotations:
        hints = read_annotations(annotations)
        check_aligned(f"{clips} ({len(paths)} clips)", len(paths), f"annotations file {annotations}", len(hints),
                      b_may_be_shorter=True)
        for number, hint in enumerate(hints, start=1):
            if len(hint.strip()) > MAX_HINT_CHARS:
                raise ParameterError("annotations", f"file {annotations} line {number} is a hint of {len(hint.strip())} "
                                     f"characters; a hint may have at most {MAX_HINT_CHARS} (it is appended to the prompt): "
                                     f"shorten that line")
    base = PROMPT if prompt is None else prompt
    return [user_prompt(hints[i] if i < len(hints) else None, base) for i in range(len(paths))]


def label(filedir: Union[str, Sequence[str]], model: str, text_label_csv: str, *, family: str,
          annotations: Optional[str] = None, device: str = "auto", dtype: str = "auto", quantization: str = "auto",
          batch_size: Optional[int] = None, long_audio: str = "truncate", task: str = "labels",
          prompt: Optional[str] = None, system_prompt: Optional[str] = None,
          engine: str = "local", ray_address: Optional[str] = None, actors: int = 1,
          gpus_per_actor: Optional[float] = None, cpus_per_actor: Optional[float] = None, verbose: bool = False,
          server: Union[None, str, Sequence[str]] = None, concurrency: Optional[int] = None,
          format_regex: Optional[str] = None) -> LabelResult:
    """Label every clip with an audio LLM and write one line per clip to ``text_label_csv``.

    Parameters
    ----------
    filedir : str or sequence of str
        A glob of the clips (quoted on a shell; expanded and sorted) or the clip paths in order.
    model : str
        Model folder or Hugging Face hub id of ``family``.
    text_label_csv : str
        Output: one line of comma-separated candidate labels per clip, in clip order; a journal
        beside it makes a rerun resume (only failed or missing clips are labelled again).
    family : {"qwen2a", "qwen2_5o", "qwen3o", "gemma3n"}
        Which model family (prompt template, processor, system prompt).
    annotations : str, optional
        Human hints, one line per clip (may be shorter), appended to that clip's prompt.
    device, dtype, quantization : str
        ``"auto"`` or a choice of :mod:`auditoryhum.models.device`; auto quantisation is the
        paper's 4-bit NF4 where CUDA and bitsandbytes exist.
    batch_size : int, optional
        Clips per generation batch (>= 1); default per device (``models.labeller.DEFAULT_BATCH_SIZE``).
    long_audio : {"truncate", "window"}
        Clips longer than the front end's window: label the first window (the paper) or every window.
    task : {"labels", "caption"}
        ``labels`` (the published word pairs) or ``caption`` (the revision: prompt
        ``Describe the auditory scene.``, no system turn, the caption kept on one line by
        :func:`auditoryhum.labels.postprocess_caption`).
    prompt : str, optional
        User prompt instead of the task's (hints are still appended).
    system_prompt : str, optional
        System turn instead of the task's (``labels``: the family's; ``caption``: none);
        ``""`` sends no system turn. The task, prompt and system prompt are part of the resume
        key and of the run log (``settings.label``).
    engine : {"local", "ray"}
        Where the per-clip work runs: in this process, or on a Ray cluster (an actor pool
        streamed by Ray Data; the same output bytes, journal and failure rows).
    ray_address, actors, gpus_per_actor, cpus_per_actor, verbose
        Ray options: the cluster (None: start a local instance; ``"auto"``; ``"ray://host:port"``),
        model replicas, GPUs and CPUs each replica holds (default 1 GPU when Ray sees GPUs, else
        0), and Ray's own logging. See README "Running on a cluster".
    server : str or sequence of str, optional
        Send the clips to OpenAI-compatible server(s) (vLLM) instead of loading ``model``: base
        URLs (a string may hold several, comma-separated); ``model`` is then the served model's
        name. Same prompts, decoding, post-processing, journal and output bytes
        (:mod:`auditoryhum.models.server`, docs/vllm.md); the precision, batch and Ray options
        do not apply.
    concurrency : int, optional
        With ``server``: requests in flight over all servers (default
        :data:`auditoryhum.defaults.SERVER_CONCURRENCY`).
    format_regex : str, optional
        With ``server``: constrain every answer to this regular expression (vLLM structured
        output), or a preset name (``word_pairs``); default none, as the published recipe.

    Returns
    -------
    LabelResult
        ``outputs["text_label_csv"]``, the label lines, and one failure message per failed clip.
    """
    from auditoryhum.validation import engine_options, one_of, optional_positive_int

    if server is not None:
        return _label_via_server(filedir, model, text_label_csv, family=family, annotations=annotations, task=task,
                                 prompt=prompt, system_prompt=system_prompt, long_audio=long_audio, engine=engine,
                                 server=server, concurrency=concurrency, format_regex=format_regex)
    for value, param in ((concurrency, "concurrency"), (format_regex, "format_regex")):
        if value is not None:
            from auditoryhum.errors import ParameterError

            raise ParameterError(param, "applies only to labelling through a server; give server too (or leave it out)")
    engine_kw = engine_options(engine, ray_address, actors, gpus_per_actor, cpus_per_actor, verbose)

    one_of(family, LABEL_FAMILIES, "family")
    batch_size = optional_positive_int(batch_size, "batch_size")
    one_of(long_audio, ("truncate", "window"), "long_audio")
    check_precision(device, dtype, quantization)
    from auditoryhum.models.families import get_family as _get_family

    prompt, system_prompt = resolve_prompts(task, prompt, system_prompt, _get_family(family).system_prompt)
    _record(f"label ({family})", task, prompt, system_prompt)
    paths, clips = expand_clips(filedir)
    with guarded(f"label ({family})", {"filedir": paths, "annotations": annotations, "model": local_model(model)},
                 {"text_label_csv": text_label_csv}):
        from auditoryhum.models.families import get_family
        from auditoryhum.models.loader import check_model_type, check_source

        from dataclasses import replace

        fam = replace(get_family(family), system_prompt=system_prompt)
        # Parameter mistakes first: they cost nothing to find, unlike importing torch.
        with as_parameter("model"):
            check_source(model, "model")
            check_model_type(model, "model", fam.model_types, fam.what)
        prompts = clip_prompts(paths, annotations, clips, prompt)
        from auditoryhum.models.device import resolve_precision
        from auditoryhum.models.labeller import run_labelling

        from auditoryhum.validation import worker_device

        precision = resolve_precision(worker_device(device, engine_kw), dtype, quantization)
        with as_parameter("model"):
            report = run_labelling(fam, model, paths, prompts, text_label_csv, precision,
                                   batch_size=batch_size, long_audio=long_audio, task=task, **engine_kw)
    return LabelResult(outputs={"text_label_csv": str(text_label_csv)}, failures=list(report.failures),
                       labels=list(report.labels), paths=list(paths), model=model)


def _label_via_server(filedir, model: str, text_label_csv: str, *, family: str, annotations: Optional[str], task: str,
                      prompt: Optional[str], system_prompt: Optional[str], long_audio: str, engine: str, server,
                      concurrency: Optional[int], format_regex: Optional[str]) -> LabelResult:
    """:func:`label` through OpenAI-compatible server(s): the same prompts and output, the
    model work on the server (:func:`auditoryhum.models.server.run_server_labelling`)."""
    from auditoryhum.errors import ParameterError
    from auditoryhum.models.families import get_family
    from auditoryhum.models.server import run_server_labelling, server_settings
    from auditoryhum.validation import one_of

    one_of(family, LABEL_FAMILIES, "family")
    one_of(long_audio, ("truncate", "window"), "long_audio")
    if long_audio != "truncate":
        raise ParameterError("long_audio", "window is not available through a server (its audio front end decides what "
                                           "it reads of a long clip); use truncate, or label without server")
    if engine != "local":
        raise ParameterError("engine", "does not apply with server: the server batches the requests itself "
                                       "(several servers: give several URLs)")
    settings = server_settings(server, model, concurrency=concurrency, format_regex=format_regex)
    prompt, system_prompt = resolve_prompts(task, prompt, system_prompt, get_family(family).system_prompt)
    _record(f"label ({family})", task, prompt, system_prompt)
    paths, clips = expand_clips(filedir)
    with guarded(f"label ({family}, server)", {"filedir": paths, "annotations": annotations},
                 {"text_label_csv": text_label_csv}):
        prompts = clip_prompts(paths, annotations, clips, prompt)
        report = run_server_labelling(family, settings, paths, prompts, text_label_csv, system_prompt, task)
    return LabelResult(outputs={"text_label_csv": str(text_label_csv)}, failures=list(report.failures),
                       labels=list(report.labels), paths=list(paths), model=model)


def _record(stage: str, task: str, prompt: str, system_prompt: str) -> None:
    from auditoryhum.run_log import record_settings

    record_settings(stage, {"task": task, "prompt": prompt, "system_prompt": system_prompt})


# --- Gemini ---------------------------------------------------------------------------------------

def gemini_settings(model: str, *, model_param: str = "model", api_key: Optional[str] = None, base_url: Optional[str] = None,
                    max_retries: Optional[int] = None, timeout: Optional[float] = None,
                    retry_base_delay: Optional[float] = None, max_consecutive_failures: Optional[int] = None, **extra):
    """Checked ``GeminiSettings`` for ``model``; returns ``(settings, where the key came from)``.

    ``None`` options take :mod:`auditoryhum.models.gemini`'s defaults; the key comes from
    ``api_key`` or else the environment (``GOOGLE_API_KEY``, ``GEMINI_API_KEY``). Notes once
    when the key was passed directly, where other users of a shell can see it.
    """
    from auditoryhum.console import note
    from auditoryhum.models import gemini
    from auditoryhum.validation import finite_non_negative, non_negative_int

    if not model.strip():
        from auditoryhum.errors import ParameterError

        raise ParameterError(model_param, "is empty; give a Gemini model id, e.g. gemini-2.5-flash")
    max_retries = non_negative_int(gemini.DEFAULT_MAX_RETRIES if max_retries is None else max_retries, "max_retries")
    timeout = finite_non_negative(gemini.DEFAULT_TIMEOUT_S if timeout is None else timeout, "timeout")
    retry_base_delay = finite_non_negative(gemini.DEFAULT_RETRY_BASE_DELAY_S if retry_base_delay is None
                                           else retry_base_delay, "retry_base_delay")
    max_consecutive_failures = non_negative_int(gemini.DEFAULT_MAX_CONSECUTIVE_FAILURES if max_consecutive_failures is None
                                                else max_consecutive_failures, "max_consecutive_failures")
    key, key_source = gemini.resolve_api_key(api_key)
    settings = gemini.GeminiSettings(model=model.strip(), api_key=key, base_url=gemini.resolve_base_url(base_url),
                                     timeout_s=timeout, max_retries=max_retries, retry_base_delay_s=retry_base_delay,
                                     max_consecutive_failures=max_consecutive_failures, **extra)
    settings.check()
    if api_key is not None and api_key.strip():
        note("the API key was given directly (api_key), so on a command line other users can see it in the "
             "process list; GEMINI_API_KEY in the environment is safer")
    return settings, key_source


def without_key_in_errors(api_key: Optional[str], work, unit: str):
    """Run ``work()``; an unexpected exception becomes one ``UserError`` with the key scrubbed.

    SDK and HTTP-library messages may echo the request URL or headers, and so the key.
    """
    from auditoryhum.errors import UserError
    from auditoryhum.models import gemini

    try:
        return work()
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as exc:
        message = gemini.one_line(gemini.scrub(f"{type(exc).__name__}: {exc}", api_key))
        raise UserError(f"unexpected failure ({message}); finished {unit} are kept, run the same stage again to resume") from None


def label_gemini(filedir: Union[str, Sequence[str]], genai_id: str, text_label_csv: str, *,
                 annotations: Optional[str] = None, concurrency: Optional[int] = None,
                 inline_max_bytes: Optional[int] = None, api_key: Optional[str] = None, base_url: Optional[str] = None,
                 max_retries: Optional[int] = None, timeout: Optional[float] = None,
                 retry_base_delay: Optional[float] = None, max_consecutive_failures: Optional[int] = None,
                 task: str = "labels", prompt: Optional[str] = None, system_prompt: Optional[str] = None) -> LabelResult:
    """Label every clip with a Gemini model (google-genai SDK) and write one line per clip.

    Parameters
    ----------
    filedir : str or sequence of str
        A glob of the clips or the clip paths in order.
    genai_id : str
        Gemini model id, e.g. ``"gemini-2.5-flash"``.
    text_label_csv : str
        Output: one label line per clip; a journal beside it makes a rerun retry only failed clips.
    annotations : str, optional
        Human hints, one line per clip (may be shorter).
    concurrency, inline_max_bytes, max_retries, timeout, retry_base_delay, max_consecutive_failures
        Client settings; ``None`` takes :mod:`auditoryhum.models.gemini`'s defaults (1 in flight,
        12 MB inline, 6 retries, 120 s, 2 s first back-off, stop after 10 failures in a row).
    api_key, base_url : str, optional
        Key (default: ``GOOGLE_API_KEY`` / ``GEMINI_API_KEY``) and endpoint (default: the SDK's).
    task, prompt, system_prompt
        As :func:`label`; Gemini's default system instruction is none (the published call),
        a given one is sent as ``system_instruction``.

    Returns
    -------
    LabelResult
        As :func:`label`; errors never show the key.
    """
    from auditoryhum.console import note
    from auditoryhum.models import gemini
    from auditoryhum.validation import non_negative_int, positive_int

    concurrency = positive_int(gemini.DEFAULT_CONCURRENCY if concurrency is None else concurrency, "concurrency")
    inline_max_bytes = non_negative_int(gemini.INLINE_MAX_BYTES if inline_max_bytes is None else inline_max_bytes,
                                        "inline_max_bytes")
    prompt, system_prompt = resolve_prompts(task, prompt, system_prompt, "")
    settings, key_source = gemini_settings(genai_id, model_param="genai_id", api_key=api_key, base_url=base_url, max_retries=max_retries,
                                           timeout=timeout, retry_base_delay=retry_base_delay,
                                           max_consecutive_failures=max_consecutive_failures,
                                           inline_max_bytes=inline_max_bytes, concurrency=concurrency,
                                           system_prompt=system_prompt, task=task)
    _record("label (gemini)", task, prompt, system_prompt)
    paths, clips = expand_clips(filedir)
    with guarded("label (gemini)", {"filedir": paths, "annotations": annotations}, {"text_label_csv": text_label_csv}):
        prompts = clip_prompts(paths, annotations, clips, prompt)
        endpoint = f" via {settings.base_url}" if settings.base_url else ""
        note(f"labelling {len(paths)} clips with {settings.model}{endpoint} (key from {key_source}, "
             f"{settings.concurrency} in flight, up to {settings.max_retries} retries per request)")
        report = without_key_in_errors(
            settings.api_key, lambda: gemini.run_gemini_labelling(paths, prompts, text_label_csv, settings), "clips")
    return LabelResult(outputs={"text_label_csv": str(text_label_csv)}, failures=list(report.failures),
                       labels=list(report.labels), paths=list(paths), model=settings.model)

"""Composite labels: per-cluster label statistics, and a short name for every cluster from an LLM.

Top level is light: the defaults come from :mod:`auditoryhum.defaults` (standard library only).
"""

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from auditoryhum.defaults import CHAT_MAX_NEW_TOKENS, COMPOSITE_TOP_LABELS
from auditoryhum.stages._base import StageResult, as_parameter, check_precision, guarded, local_model, mention
from auditoryhum.stages.label import gemini_settings, without_key_in_errors
from auditoryhum.validation import path_args

#: Labels in each taxonomy row's top_labels field (:data:`auditoryhum.defaults.COMPOSITE_TOP_LABELS`).
DEFAULT_TOP_LABELS = COMPOSITE_TOP_LABELS
#: Longest answer of a Hugging Face chat model (:data:`auditoryhum.defaults.CHAT_MAX_NEW_TOKENS`).
DEFAULT_MAX_NEW_TOKENS = CHAT_MAX_NEW_TOKENS
BACKENDS = ("hf", "gemini")
#: ``system_prompt`` presets: ``neutral`` is the revision's system text
#: (:data:`auditoryhum.recipe.NEUTRAL_SYSTEM_PROMPT`); any other value is used verbatim.
SYSTEM_PRESETS = ("neutral",)


def resolve_system_prompt(system_prompt: Optional[str]) -> Optional[str]:
    """The system text a ``system_prompt`` option stands for: ``None`` stays ``None`` (the
    mode's default), ``"neutral"`` is the revision's text, anything else is used verbatim
    (stripped; ``""``: no system message)."""
    if system_prompt is None:
        return None
    if not isinstance(system_prompt, str):
        from auditoryhum.errors import ParameterError

        raise ParameterError("system_prompt", f"must be text, 'neutral' or '' (no system message), got {system_prompt!r}")
    if system_prompt.strip() == "neutral":
        from auditoryhum.recipe import NEUTRAL_SYSTEM_PROMPT

        return NEUTRAL_SYSTEM_PROMPT
    return system_prompt.strip()


def default_json_path(taxonomy_csv: str) -> str:
    """``taxonomy.csv`` -> ``taxonomy.json`` (a name without ``.csv`` gets ``.json`` appended)."""
    root, ext = os.path.splitext(taxonomy_csv)
    return (root if ext.lower() == ".csv" else taxonomy_csv) + ".json"


@dataclass
class CompositeStatsResult(StageResult):
    """Per-cluster label distributions (:func:`composite_stats`).

    ``stats`` is a ``ClusterLabelStats`` (``per_cluster``: cluster id -> [(label, count), ...],
    most frequent first); ``report`` is the text the script prints (one prompt per cluster).
    """

    stats: Any = None
    report: str = ""


def _read_clusters(label_csv: str, top_label_scores_csv: str):
    from auditoryhum.composite import cluster_label_stats
    from auditoryhum.io.artefacts import check_aligned, read_cluster_ids, read_scores

    cluster_ids = read_cluster_ids(label_csv)
    rows = read_scores(top_label_scores_csv)
    check_aligned(f"scores file {top_label_scores_csv}", len(rows), f"cluster-id file {label_csv}", len(cluster_ids))
    stats = cluster_label_stats(cluster_ids.tolist(), [r.label for r in rows])
    if stats.n_without_label:
        from auditoryhum.console import note

        note(f"{stats.n_without_label} of {len(rows)} clips have no label (empty kept label or cluster id -2); "
             f"they are left out of the distributions")
    return cluster_ids, stats


def composite_stats(label_csv: str, top_label_scores_csv: str) -> CompositeStatsResult:
    """Label distribution of every cluster, and the composite-label prompt of each.

    Parameters
    ----------
    label_csv : str
        Cluster-id file (one integer per line, as the cluster stages write).
    top_label_scores_csv : str
        The scores file the clustering came from (rows ``<i>, <path>, <label>, <score>``).
        Nothing is written.
    """
    path_args(label_csv=label_csv, top_label_scores_csv=top_label_scores_csv)
    with guarded("composite_stats", {"label_csv": label_csv, "top_label_scores_csv": top_label_scores_csv}, {}):
        from auditoryhum.composite import format_stats_report

        _, stats = _read_clusters(label_csv, top_label_scores_csv)
    return CompositeStatsResult(stats=stats, report=format_stats_report(stats))


@dataclass
class CompositeLabelsResult(StageResult):
    """What :func:`composite_labels` wrote.

    Attributes
    ----------
    labels : dict of int to str
        Cluster id -> composite label (``""`` for a cluster that got none; ``noise`` for -1).
    n_named, n_clusters : int
        Clusters named, of the clusters sent to the model (the noise cluster is not sent).
    has_noise : bool
        Whether the noise cluster -1 is present.
    """

    labels: Dict[int, str] = field(default_factory=dict)
    n_named: int = 0
    n_clusters: int = 0
    has_noise: bool = False


def composite_labels(label_csv: str, top_label_scores_csv: str, taxonomy_csv: str, *, model: str,
                     json: Optional[str] = None, backend: str = "hf", top_labels: int = DEFAULT_TOP_LABELS,
                     max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, device: str = "auto", dtype: str = "auto",
                     quantization: str = "auto", batch_size: Optional[int] = None, api_key: Optional[str] = None,
                     base_url: Optional[str] = None, max_retries: Optional[int] = None, timeout: Optional[float] = None,
                     retry_base_delay: Optional[float] = None,
                     max_consecutive_failures: Optional[int] = None,
                     system_prompt: Optional[str] = None, server=None,
                     concurrency: Optional[int] = None) -> CompositeLabelsResult:
    """Name every cluster with a short composite label from an LLM, resumably.

    Parameters
    ----------
    label_csv : str
        Cluster-id file (one integer per line).
    top_label_scores_csv : str
        The scores file the clustering came from.
    taxonomy_csv : str
        Output: header ``cluster,composite_label,n_clips,top_labels``, one row per cluster (ascending).
    model : str
        hf: chat model folder or hub id; gemini: model id.
    json : str, optional
        Output: every cluster's distribution, prompt, raw answer and label (default: the
        taxonomy CSV's name with ``.json``).
    backend : {"hf", "gemini"}
    top_labels : int
        Labels in each row's ``top_labels`` field (default 5).
    max_new_tokens : int
        hf: longest answer in tokens (default 32).
    device, dtype, quantization, batch_size
        hf: as :func:`auditoryhum.label` (batch: clusters per generation batch).
    api_key, base_url, max_retries, timeout, retry_base_delay, max_consecutive_failures
        gemini: as :func:`auditoryhum.label_gemini`.
    system_prompt : str, optional
        The system message instead of the toolkit's composite instruction (which a Qwen Omni
        model gets after its identity prompt): ``"neutral"`` is the revision's text
        (:data:`auditoryhum.recipe.NEUTRAL_SYSTEM_PROMPT`), any other text is sent verbatim,
        ``""`` sends none (the model's chat template may still write its own default). Part of
        the resume key and of the JSON document.
    server : str or sequence of str, optional
        Ask OpenAI-compatible server(s) (vLLM) instead of loading ``model`` (then the served
        model's name): one text request per cluster, greedy, ``max_new_tokens``; the same prompts
        and outputs (:class:`auditoryhum.models.server.ServerChatBackend`, docs/vllm.md).
    concurrency : int, optional
        With ``server``: requests in flight (default :data:`auditoryhum.defaults.SERVER_CONCURRENCY`).
    """
    from auditoryhum.errors import UserError
    from auditoryhum.validation import one_of, optional_positive_int, positive_int

    one_of(backend, BACKENDS, "backend")
    top_labels = positive_int(top_labels, "top_labels")
    max_new_tokens = positive_int(max_new_tokens, "max_new_tokens")
    batch_size = optional_positive_int(batch_size, "batch_size")
    check_precision(device, dtype, quantization)
    system = resolve_system_prompt(system_prompt)
    path_args(label_csv=label_csv, top_label_scores_csv=top_label_scores_csv, taxonomy_csv=taxonomy_csv, json=json,
              optional=("json",))
    json_path = json or default_json_path(taxonomy_csv)
    if os.path.abspath(json_path) == os.path.abspath(taxonomy_csv):
        from auditoryhum.stages._base import MentionError

        raise MentionError(f"{mention('json')} and {mention('taxonomy_csv')} are the same file ({json_path}); "
                           f"give two different names")
    with guarded("composite", {"label_csv": label_csv, "top_label_scores_csv": top_label_scores_csv,
                               "model": local_model(model) if backend == "hf" else None},
                 {"taxonomy_csv": taxonomy_csv, "json": json_path}):
        from auditoryhum.composite import COMPOSITE_SYSTEM_INSTRUCTION, NOISE_CLUSTER

        # Input mistakes first: they cost nothing to find, unlike loading a model.
        cluster_ids, stats = _read_clusters(label_csv, top_label_scores_csv)
        if not len(cluster_ids):
            raise UserError(f"cluster-id file {label_csv} is empty; run a clustering stage first")
        api_key_used = None
        if server is not None:
            from auditoryhum.errors import ParameterError
            from auditoryhum.models.server import ServerChatBackend, server_settings

            if backend != "hf":
                raise ParameterError("backend", f"{backend} does not go with server (a server is the model); leave one out")
            settings = server_settings(server, model, concurrency=concurrency)
            chat = ServerChatBackend(settings, COMPOSITE_SYSTEM_INSTRUCTION, max_new_tokens)
            api_key_used = settings.api_key
        elif concurrency is not None:
            from auditoryhum.errors import ParameterError

            raise ParameterError("concurrency", "applies only with server; give server too (or leave it out)")
        elif backend == "gemini":
            from auditoryhum.console import note
            from auditoryhum.models.chat import GeminiChatBackend

            settings, key_source = gemini_settings(model, api_key=api_key, base_url=base_url, max_retries=max_retries,
                                                   timeout=timeout, retry_base_delay=retry_base_delay,
                                                   max_consecutive_failures=max_consecutive_failures)
            endpoint = f" via {settings.base_url}" if settings.base_url else ""
            note(f"composite labels from {settings.model}{endpoint} (key from {key_source}, "
                 f"up to {settings.max_retries} retries per request)")
            chat = GeminiChatBackend(settings, COMPOSITE_SYSTEM_INSTRUCTION)
            api_key_used = settings.api_key
        else:
            from auditoryhum.models.loader import check_source

            with as_parameter("model"):
                check_source(model, "model")
            from auditoryhum.models.chat import HFChatBackend
            from auditoryhum.models.device import resolve_precision

            precision = resolve_precision(device, dtype, quantization)
            chat = HFChatBackend(model, precision, batch_size, max_new_tokens, COMPOSITE_SYSTEM_INSTRUCTION)
        if system is not None:
            # Verbatim, as the revision sends it: no Qwen identity prompt in front (the backend's
            # journal key, step and JSON document all read this attribute).
            chat.system = system
        _record_composite("composite", chat.system, max_new_tokens if backend == "hf" or server else None, None)

        from auditoryhum.models.chat import run_composite_labelling

        run_info = {"label_csv": str(label_csv), "top_label_scores_csv": str(top_label_scores_csv)}  # JSON: no Path

        def work():
            with as_parameter("model"):
                return run_composite_labelling(stats, chat, taxonomy_csv, json_path, top_labels, run_info)

        report = work() if api_key_used is None else without_key_in_errors(api_key_used, work, "clusters")
    labels = {c: r.label for c, r in report.results.items()}
    return CompositeLabelsResult(
        outputs={"taxonomy_csv": str(taxonomy_csv), "json": str(json_path)}, failures=list(report.failures),
        labels=labels, n_named=sum(1 for c, r in report.results.items() if c != NOISE_CLUSTER and r.error is None),
        n_clusters=sum(1 for c in stats.per_cluster if c != NOISE_CLUSTER), has_noise=NOISE_CLUSTER in stats.per_cluster)


def _record_composite(stage: str, system: str, max_new_tokens: Optional[int], prompt: Optional[str]) -> None:
    from auditoryhum.run_log import record_settings

    record_settings(stage, {"system_prompt": system, "max_new_tokens": max_new_tokens, "prompt": prompt})


@dataclass
class CompositePromptResult(StageResult):
    """The model's answer to one free prompt (:func:`composite_prompt`); nothing is written."""

    answer: str = ""
    system: str = ""


def composite_prompt(prompt: str, *, model: str, backend: str = "hf", system_prompt: Optional[str] = "neutral",
                     max_new_tokens: Optional[int] = None, device: str = "auto", dtype: str = "auto",
                     quantization: str = "auto", api_key: Optional[str] = None, base_url: Optional[str] = None,
                     max_retries: Optional[int] = None, timeout: Optional[float] = None,
                     retry_base_delay: Optional[float] = None) -> CompositePromptResult:
    """The chat model's answer to one prompt, as the revision's ``composite_label_qwen2_5o.py --prompt``.

    The revision names a cluster by writing its label distribution into a prompt by hand (README:
    ``Provide a short sentence to describe this set of audio samples. The frequency distribution
    of individual labels ... : human conversation, 2; ...; total samples: 1253``) and printing the
    answer. Here: seed 100, greedy decoding, at most ``max_new_tokens`` new tokens, only the new
    tokens decoded (special tokens skipped), a system message then the user message.

    Parameters
    ----------
    prompt : str
        The user message (not blank).
    model : str
        hf: chat model folder or hub id (the revision: Qwen2.5-Omni); gemini: model id.
    backend : {"hf", "gemini"}
    system_prompt : str or None, default "neutral"
        ``"neutral"``: the revision's system text (:data:`auditoryhum.recipe.NEUTRAL_SYSTEM_PROMPT`);
        other text verbatim; ``""`` or ``None``: no system message.
    max_new_tokens : int, optional
        hf: longest answer in tokens (default 64, the revision's:
        :data:`auditoryhum.recipe.REVISION_COMPOSITE_MAX_NEW_TOKENS`); gemini keeps its budget.
    device, dtype, quantization
        hf: as :func:`composite_labels`.
    api_key, base_url, max_retries, timeout, retry_base_delay
        gemini: as :func:`composite_labels`.

    Returns
    -------
    CompositePromptResult
        ``answer``: the raw decoded answer (stripped of surrounding whitespace); ``system``: the
        system text sent (``""``: none). ``outputs`` is empty.
    """
    from auditoryhum.errors import ParameterError
    from auditoryhum.recipe import REVISION_COMPOSITE_MAX_NEW_TOKENS, SEED
    from auditoryhum.validation import one_of, positive_int

    one_of(backend, BACKENDS, "backend")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ParameterError("prompt", "is empty; give the text to send to the model")
    max_new_tokens = positive_int(REVISION_COMPOSITE_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens,
                                  "max_new_tokens")
    check_precision(device, dtype, quantization)
    system = resolve_system_prompt(system_prompt) or ""
    _record_composite("composite (prompt)", system, max_new_tokens if backend == "hf" else None, prompt)
    if backend == "gemini":
        from auditoryhum.models import gemini

        settings, _ = gemini_settings(model, api_key=api_key, base_url=base_url, max_retries=max_retries,
                                      timeout=timeout, retry_base_delay=retry_base_delay)

        def ask() -> str:
            try:
                return gemini.GeminiLabeller(settings).describe_text(prompt, system or None)
            except gemini.CallFailed as exc:
                from auditoryhum.errors import UserError

                raise UserError(gemini.scrub(exc.message, settings.api_key)) from None

        return CompositePromptResult(answer=without_key_in_errors(settings.api_key, ask, "answers").strip(), system=system)
    from auditoryhum.models.loader import check_source

    with as_parameter("model"):
        check_source(model, "model")
    from auditoryhum.console import note
    from auditoryhum.engine.common import seed_everything
    from auditoryhum.models.chat import generate_batch, load_chat_model
    from auditoryhum.models.device import resolve_precision

    precision = resolve_precision(device, dtype, quantization)
    note(precision.describe())
    seed_everything(SEED)
    with as_parameter("model"):
        chat = load_chat_model(model, precision, "model")
    answer = generate_batch(chat, system, [prompt.strip()], max_new_tokens)[0]
    return CompositePromptResult(answer=answer.strip(), system=system)

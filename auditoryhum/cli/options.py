"""Argument pieces shared by several commands: defined once, so their flags and help cannot drift.

Light: no heavy import. The defaults come from :mod:`auditoryhum.defaults` (standard library
only), the one definition the model modules (which import numpy at the top) import as well.
"""

import argparse

from auditoryhum import defaults

CLIPS_HELP = "glob of the audio files, quoted (e.g. 'clips/*.wav')"


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is less than 1")
    return value


def number(text: str) -> float:
    """argparse type: any float."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def add_filedir(parser, help: str = CLIPS_HELP) -> None:
    parser.add_argument("--filedir", required=True, help=help)


def add_device(parser) -> None:
    """``--device``: the choices of :mod:`auditoryhum.models.device` (a light module)."""
    from auditoryhum.models.device import DEVICE_CHOICES

    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="default: auto (CUDA, then MPS, then CPU)")


def add_batch_size(parser, help: str, default=None) -> None:
    """``--batch_size``; its range is checked by the stage (one message for the API and the CLI)."""
    parser.add_argument("--batch_size", type=int, default=default, help=help)


def per_device(defaults) -> str:
    return ", ".join(f"{d} {n}" for d, n in defaults.items())


def add_precision_arguments(parser, batch_help: str) -> None:
    """``--device``, ``--dtype``, ``--quantization`` and ``--batch_size`` of the model commands."""
    from auditoryhum.models.device import DTYPE_CHOICES, QUANTIZATION_CHOICES

    add_device(parser)
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES,
                        help="weights dtype; auto: bfloat16 on CUDA (float16 if unsupported), float16 on MPS, float32 on CPU")
    parser.add_argument("--quantization", default="auto", choices=QUANTIZATION_CHOICES,
                        help="auto: 4-bit NF4 (double quantisation, as the paper) where CUDA and bitsandbytes exist, else none")
    add_batch_size(parser, batch_help)


def add_annotations(parser) -> None:
    from auditoryhum.stages.label import MAX_HINT_CHARS

    parser.add_argument("--annotations", default=None,
                        help=f"human hints, one line per sorted clip (may be shorter); a non-blank line is appended to "
                             f"that clip's prompt (at most {MAX_HINT_CHARS} characters)")


def add_gemini_arguments(group, unit: str) -> None:
    """The Gemini client's flags, shared by every command that talks to Gemini.

    ``unit`` names what one request is for ("clips", "clusters") in the help texts.
    """
    max_retries = defaults.GEMINI_MAX_RETRIES
    timeout = defaults.GEMINI_TIMEOUT_S
    base_delay = defaults.GEMINI_RETRY_BASE_DELAY_S
    max_failures = defaults.GEMINI_MAX_CONSECUTIVE_FAILURES
    group.add_argument("--api_key", default=None,
                       help="API key; better set GEMINI_API_KEY or GOOGLE_API_KEY (GOOGLE_API_KEY wins if both are set), "
                            "since a flag is visible to other users in the process list. Never printed")
    group.add_argument("--base_url", default=None,
                       help=f"send requests to this endpoint (gateway, proxy, regional endpoint) instead of the default; "
                            f"default: ${defaults.GEMINI_BASE_URL_ENV_VAR} if set")
    group.add_argument("--max_retries", type=int, default=max_retries,
                       help=f"retries of a request after a rate limit (429), server error (500, 502, 503, 504), timeout or "
                            f"connection error (default {max_retries}); other errors are not retried")
    group.add_argument("--timeout", type=number, default=timeout, help=f"seconds each request may take (default {timeout:g})")
    group.add_argument("--retry_base_delay", type=number, default=base_delay,
                       help=f"first back-off delay in seconds, doubled per retry up to {defaults.GEMINI_RETRY_MAX_DELAY_S:g} s, "
                            f"with jitter (default {base_delay:g}); a delay the server asks for is honoured instead "
                            f"(up to {defaults.GEMINI_SERVER_RETRY_DELAY_CAP_S:g} s)")
    group.add_argument("--max_consecutive_failures", type=int, default=max_failures,
                       help=f"stop the run when this many {unit} in a row fail after their retries (default "
                            f"{max_failures}; 0: never); a rerun resumes")


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is less than 0")
    return value


def add_candidate_arguments(parser) -> None:
    """``--label_limit`` and ``--candidates``: what a scoring candidate is (the method's later revision)."""
    from auditoryhum.labels import CANDIDATE_MODES
    from auditoryhum.recipe import LABEL_WORD_LIMIT

    parser.add_argument("--label_limit", type=non_negative_int, default=LABEL_WORD_LIMIT,
                        help=f"words kept of each candidate label (default {LABEL_WORD_LIMIT}, the published rule); "
                             f"0 keeps the whole candidate (the revision's setting for a dataset's own labels and captions)")
    parser.add_argument("--candidates", default="split", choices=CANDIDATE_MODES,
                        help="split (default): every comma-separated part of a line is a candidate; line: the whole "
                             "line is one candidate (a caption, a class name holding commas)")


def add_prompt_arguments(parser, system_default: str) -> None:
    """``--task``, ``--prompt`` and ``--system_prompt`` of the labellers (the method's later revision).

    ``system_default`` says in the help what the system turn is without the flag.
    """
    from auditoryhum.recipe import CAPTION_PROMPT, PROMPT
    from auditoryhum.stages.label import LABEL_TASKS

    parser.add_argument("--task", default="labels", choices=LABEL_TASKS,
                        help=f"labels (default): the published word-pair prompt, its system turn and the label "
                             f"post-processing (one line of comma-separated labels); caption: the revision's prompt "
                             f"{CAPTION_PROMPT!r}, no system turn, and a free caption kept as written on one line "
                             f"(its commas become semicolons, so it scores as one candidate)")
    parser.add_argument("--prompt", default=None,
                        help=f"user prompt of every clip instead of the task's (labels: {PROMPT!r}); an "
                             f"--annotations hint is still appended after one space")
    parser.add_argument("--system_prompt", default=None,
                        help=f"system turn instead of the task's (labels: {system_default}; caption: none); "
                             f"'' sends no system turn at all")


def gemini_options(args) -> dict:
    """The keyword arguments of the Gemini flags, for a stage function."""
    return {"api_key": args.api_key, "base_url": args.base_url, "max_retries": args.max_retries, "timeout": args.timeout,
            "retry_base_delay": args.retry_base_delay, "max_consecutive_failures": args.max_consecutive_failures}


def add_engine_arguments(parser) -> None:
    """``--engine {local,ray}`` and the Ray options of the per-clip model commands (README: "Running on a cluster")."""
    group = parser.add_argument_group("engine (where the per-clip work runs)")
    group.add_argument("--engine", default="local", choices=["local", "ray"],
                       help="local (default): in this process; ray: an actor pool on a Ray cluster, same output bytes")
    group.add_argument("--ray_address", default=None,
                       help="with --engine ray: default start a local Ray instance; 'auto' or 'ray://host:port' joins a cluster")
    group.add_argument("--actors", type=int, default=1, help="with --engine ray: model replicas (default 1)")
    group.add_argument("--gpus_per_actor", type=number, default=None,
                       help="with --engine ray: GPUs per replica (default 1 when Ray sees GPUs, else 0)")
    group.add_argument("--cpus_per_actor", type=number, default=None,
                       help="with --engine ray: CPUs per replica (default: what fits beside Ray Data's reading)")
    group.add_argument("--verbose", action="store_true", help="show Ray's own log output")


def engine_options(args) -> dict:
    """The keyword arguments of :func:`add_engine_arguments`' flags, for a stage function."""
    return {"engine": args.engine, "ray_address": args.ray_address, "actors": args.actors,
            "gpus_per_actor": args.gpus_per_actor, "cpus_per_actor": args.cpus_per_actor, "verbose": args.verbose}


def add_tsne_argument(parser):
    """``--tsne``: the t-SNE of the plots (scikit-learn's, the published one, by default)."""
    parser.add_argument("--tsne", choices=defaults.TSNE_METHODS, default=defaults.DEFAULT_TSNE_METHOD,
                        help="t-SNE of the plot: sklearn (default, the published plots) or opentsne (faster at large N, "
                        "a different layout; needs the fast-tsne extra: pip install \"auditoryhum[fast-tsne]\"); "
                        "ids and silhouettes are the same")


def add_server_arguments(group, unit: str, format_regex: bool = False) -> None:
    """``--server``, ``--concurrency`` (and ``--format_regex``): the model work on OpenAI-compatible
    server(s) such as vLLM (:mod:`auditoryhum.models.server`); ``unit`` names what one request is for."""
    presets = ", ".join(defaults.FORMAT_REGEX_PRESETS)
    keys = " or ".join(defaults.SERVER_API_KEY_ENV_VARS)
    group.add_argument("--server", action="append", default=None, metavar="URL",
                       help=f"send the {unit} to this OpenAI-compatible server (vLLM: python -m "
                            f"vllm.entrypoints.openai.api_server) instead of loading the model here, e.g. "
                            f"http://127.0.0.1:8000; repeat it or separate URLs with commas to use several servers "
                            f"together (each request goes to the least busy one); the model flag names the served "
                            f"model; a key, if the server needs one, is read from {keys}")
    group.add_argument("--concurrency", type=positive_int, default=None,
                       help=f"with --server: requests in flight over all servers (default {defaults.SERVER_CONCURRENCY})")
    if format_regex:
        group.add_argument("--format_regex", default=None,
                           help=f"with --server: constrain every answer to this regular expression (vLLM structured "
                                f"output), or a preset: {presets} (the paper's format "
                                f"{defaults.FORMAT_REGEX_PRESETS['word_pairs']!r}); default: free decoding, as the paper")


def server_options(args) -> dict:
    """The keyword arguments of :func:`add_server_arguments`' flags, for a stage function."""
    options = {"server": args.server, "concurrency": args.concurrency}
    if hasattr(args, "format_regex"):
        options["format_regex"] = args.format_regex
    return options

"""composite_label.py: name every cluster with a short composite label from an LLM.

For every cluster the prompt that ``composite_label_stats.py`` prints (the instruction, one
``<label>, <count>`` line per distinct label, ``Total samples: <n>``) is sent with a system
instruction asking for a short, neutral noun phrase; the answer is cleaned to one line.
Outputs: a taxonomy CSV (``cluster,composite_label,n_clips,top_labels``) and a JSON document
with every cluster's full distribution, prompt, raw answer and label. The noise cluster -1
(HDBSCAN) is not sent to the model; it is written with the composite label ``noise``.

Exit status: 0 when every cluster was named; 1 when some clusters got no label (their
composite label is empty, each is listed, and a rerun asks again only for those), and 1 with
one ``error:`` line for a problem with the inputs or flags, or a run that had to stop
(finished clusters are kept for the rerun).
"""

import argparse


def _number(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def add_arguments(parser, name):
    from auditoryhum.cli.label import add_precision_arguments
    from auditoryhum.composite import DEFAULT_TOP_LABELS
    from auditoryhum.models import gemini
    from auditoryhum.models.chat import DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS

    parser.add_argument("--label_csv", required=True, help="cluster-id file (one integer per line, as cluster_*.py write)")
    parser.add_argument("--top_label_scores_csv", required=True,
                        help="scores file the clustering came from: rows '<i>, <path>, <label>, <score>'")
    parser.add_argument("--taxonomy_csv", required=True,
                        help="output: header cluster,composite_label,n_clips,top_labels, one row per cluster (ascending)")
    parser.add_argument("--json", default=None,
                        help="output: JSON with every cluster's full label distribution, prompt, raw answer and label "
                             "(default: the taxonomy CSV's name with .json)")
    parser.add_argument("--backend", default="hf", choices=("hf", "gemini"),
                        help="hf: a local or hub Hugging Face chat model (default); gemini: a Gemini model via google-genai")
    parser.add_argument("--model", required=True,
                        help="hf: model folder or hub id (a causal chat LM such as Qwen2.5-Instruct, or the "
                             "Qwen2.5-Omni thinker of the paper); gemini: model id, e.g. gemini-2.5-flash")
    parser.add_argument("--top_labels", type=int, default=DEFAULT_TOP_LABELS,
                        help=f"labels in each row's top_labels field, most frequent first (default {DEFAULT_TOP_LABELS})")
    parser.add_argument("--max_new_tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                        help=f"hf: longest answer in tokens (default {DEFAULT_MAX_NEW_TOKENS}; only its first line is kept). "
                             f"gemini keeps the labeller's {gemini.GENERATION_CONFIG['max_output_tokens']}-token budget, "
                             f"which its thinking also spends")
    defaults = ", ".join(f"{d} {n}" for d, n in DEFAULT_BATCH_SIZE.items())
    add_precision_arguments(parser, f"hf: clusters per generation batch (default per device: {defaults})")
    group = parser.add_argument_group("gemini backend")
    group.add_argument("--api_key", default=None,
                       help="API key; better set GEMINI_API_KEY or GOOGLE_API_KEY (GOOGLE_API_KEY wins if both are set), "
                            "since a flag is visible to other users in the process list. Never printed")
    group.add_argument("--base_url", default=None,
                       help=f"send requests to this endpoint (gateway, proxy, regional endpoint) instead of the default; "
                            f"default: ${gemini.BASE_URL_ENV_VAR} if set")
    group.add_argument("--max_retries", type=int, default=gemini.DEFAULT_MAX_RETRIES,
                       help=f"retries of a request after a rate limit (429), server error (500, 502, 503, 504), timeout or "
                            f"connection error (default {gemini.DEFAULT_MAX_RETRIES}); other errors are not retried")
    group.add_argument("--timeout", type=_number, default=gemini.DEFAULT_TIMEOUT_S,
                       help=f"seconds each request may take (default {gemini.DEFAULT_TIMEOUT_S:g})")
    group.add_argument("--retry_base_delay", type=_number, default=gemini.DEFAULT_RETRY_BASE_DELAY_S,
                       help=f"first back-off delay in seconds, doubled per retry up to {gemini.RETRY_MAX_DELAY_S:g} s, with "
                            f"jitter (default {gemini.DEFAULT_RETRY_BASE_DELAY_S:g}); a delay the server asks for is honoured")
    group.add_argument("--max_consecutive_failures", type=int, default=gemini.DEFAULT_MAX_CONSECUTIVE_FAILURES,
                       help=f"stop when this many clusters in a row fail after their retries (default "
                            f"{gemini.DEFAULT_MAX_CONSECUTIVE_FAILURES}; 0: never); a rerun resumes")


def default_json_path(taxonomy_csv: str) -> str:
    """``taxonomy.csv`` -> ``taxonomy.json`` (a name without ``.csv`` gets ``.json`` appended)."""
    import os

    root, ext = os.path.splitext(taxonomy_csv)
    return (root if ext.lower() == ".csv" else taxonomy_csv) + ".json"


def _gemini_backend(args, instruction):
    from auditoryhum.console import note
    from auditoryhum.errors import UserError
    from auditoryhum.models import gemini
    from auditoryhum.models.chat import GeminiChatBackend

    if not args.model.strip():
        raise UserError("--model is empty; give a Gemini model id, e.g. --model gemini-2.5-flash")
    api_key, key_source = gemini.resolve_api_key(args.api_key)
    settings = gemini.GeminiSettings(
        model=args.model.strip(), api_key=api_key, base_url=gemini.resolve_base_url(args.base_url),
        timeout_s=args.timeout, max_retries=args.max_retries, retry_base_delay_s=args.retry_base_delay,
        max_consecutive_failures=args.max_consecutive_failures,
    )
    settings.check()
    if key_source == "--api_key":
        note("the API key was given with --api_key, which other users can see in the process list; "
             "GEMINI_API_KEY in the environment is safer")
    endpoint = f" via {settings.base_url}" if settings.base_url else ""
    note(f"composite labels from {settings.model}{endpoint} (key from {key_source}, up to {settings.max_retries} retries per request)")
    return GeminiChatBackend(settings, instruction), api_key


def run(args, name):
    import os
    import sys

    from auditoryhum.composite import COMPOSITE_SYSTEM_INSTRUCTION, NOISE_CLUSTER, cluster_label_stats
    from auditoryhum.errors import UserError
    from auditoryhum.io.artefacts import check_aligned, read_cluster_ids, read_scores

    # Flag and input mistakes first: they cost nothing to find, unlike loading a model.
    if args.top_labels < 1:
        raise UserError(f"--top_labels must be at least 1, got {args.top_labels}")
    if args.max_new_tokens < 1:
        raise UserError(f"--max_new_tokens must be at least 1, got {args.max_new_tokens}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {args.batch_size}")
    json_path = args.json or default_json_path(args.taxonomy_csv)
    if os.path.abspath(json_path) == os.path.abspath(args.taxonomy_csv):
        raise UserError(f"--json and --taxonomy_csv are the same file ({json_path}); give two different names")
    cluster_ids = read_cluster_ids(args.label_csv)
    rows = read_scores(args.top_label_scores_csv)
    check_aligned(f"scores file {args.top_label_scores_csv}", len(rows), f"cluster-id file {args.label_csv}", len(cluster_ids))
    if not len(cluster_ids):
        raise UserError(f"cluster-id file {args.label_csv} is empty; run a cluster_*.py tool first")
    stats = cluster_label_stats(cluster_ids.tolist(), [r.label for r in rows])

    api_key = None
    if args.backend == "gemini":
        backend, api_key = _gemini_backend(args, COMPOSITE_SYSTEM_INSTRUCTION)
    else:
        from auditoryhum.models.loader import check_source

        check_source(args.model, "--model")
        from auditoryhum.models.chat import HFChatBackend
        from auditoryhum.models.device import resolve_precision

        precision = resolve_precision(args.device, args.dtype, args.quantization)
        backend = HFChatBackend(args.model, precision, args.batch_size, args.max_new_tokens, COMPOSITE_SYSTEM_INSTRUCTION)

    from auditoryhum.models.chat import run_composite_labelling

    run_info = {"label_csv": args.label_csv, "top_label_scores_csv": args.top_label_scores_csv}
    try:
        report = run_composite_labelling(stats, backend, args.taxonomy_csv, json_path, args.top_labels, run_info)
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as exc:
        if api_key is None:
            raise
        from auditoryhum.models import gemini

        # Never let an SDK message carrying the key reach a traceback.
        message = gemini.one_line(gemini.scrub(f"{type(exc).__name__}: {exc}", api_key))
        raise UserError(f"unexpected failure ({message}); finished clusters are kept, rerun the same command to resume") from None

    named = sum(1 for c, r in report.results.items() if c != NOISE_CLUSTER and r.error is None)
    total = sum(1 for c in stats.per_cluster if c != NOISE_CLUSTER)
    noise = " (+ the noise cluster -1, labelled noise)" if NOISE_CLUSTER in stats.per_cluster else ""
    print(f"composite labels of {named} of {total} clusters{noise} -> {args.taxonomy_csv}, {json_path}")
    if not report.failures:
        return 0
    for message in report.failures:
        print(f"failed: {message}", file=sys.stderr)
    print(f"{len(report.failures)} of {total} clusters got no composite label; their composite_label is empty "
          f"(rerun the same command to ask again only for those)", file=sys.stderr)
    return 1

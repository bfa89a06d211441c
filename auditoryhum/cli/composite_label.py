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


def add_arguments(parser, name):
    from auditoryhum.cli.label import add_precision_arguments
    from auditoryhum.cli.label_gemini import add_gemini_arguments
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
    add_gemini_arguments(parser.add_argument_group("gemini backend"), "clusters")


def default_json_path(taxonomy_csv: str) -> str:
    """``taxonomy.csv`` -> ``taxonomy.json`` (a name without ``.csv`` gets ``.json`` appended)."""
    import os

    root, ext = os.path.splitext(taxonomy_csv)
    return (root if ext.lower() == ".csv" else taxonomy_csv) + ".json"


def _gemini_backend(args, instruction):
    from auditoryhum.cli.label_gemini import gemini_settings
    from auditoryhum.console import note
    from auditoryhum.errors import UserError
    from auditoryhum.models.chat import GeminiChatBackend

    if not args.model.strip():
        raise UserError("--model is empty; give a Gemini model id, e.g. --model gemini-2.5-flash")
    settings, key_source = gemini_settings(args, args.model.strip())
    endpoint = f" via {settings.base_url}" if settings.base_url else ""
    note(f"composite labels from {settings.model}{endpoint} (key from {key_source}, up to {settings.max_retries} retries per request)")
    return GeminiChatBackend(settings, instruction), settings.api_key


def run(args, name):
    import os

    from auditoryhum.console import report_failures
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
    def work():
        return run_composite_labelling(stats, backend, args.taxonomy_csv, json_path, args.top_labels, run_info)

    if api_key is None:
        report = work()
    else:
        from auditoryhum.cli.label_gemini import without_key_in_errors

        report = without_key_in_errors(api_key, work, "clusters")

    named = sum(1 for c, r in report.results.items() if c != NOISE_CLUSTER and r.error is None)
    total = sum(1 for c in stats.per_cluster if c != NOISE_CLUSTER)
    noise = " (+ the noise cluster -1, labelled noise)" if NOISE_CLUSTER in stats.per_cluster else ""
    print(f"composite labels of {named} of {total} clusters{noise} -> {args.taxonomy_csv}, {json_path}")
    return report_failures(report.failures, total, "they got no composite label: their composite_label is empty "
                           "(rerun the same command to ask again only for those)", unit="clusters")

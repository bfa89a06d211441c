"""composite_label.py: name every cluster with a short composite label from an LLM.

For every cluster the prompt that ``composite_label_stats.py`` prints (the instruction, one
``<label>, <count>`` line per distinct label, ``Total samples: <n>``) is sent with a system
instruction asking for a short, neutral noun phrase; the answer is cleaned to one line.
Outputs: a taxonomy CSV (``cluster,composite_label,n_clips,top_labels``) and a JSON document
with every cluster's full distribution, prompt, raw answer and label. The noise cluster -1
(HDBSCAN) is not sent to the model; it is written with the composite label ``noise``.

Free-prompt mode (the method's later revision, ``composite_label_qwen2_5o.py --prompt``):
``--prompt TEXT`` prints the model's answer to that one prompt and writes nothing; no cluster
files are read. Its defaults are the revision's: the ``neutral`` system text and at most 64 new
tokens.

Exit status: 0 when every cluster was named; 1 when some clusters got no label (their
composite label is empty, each is listed, and a rerun asks again only for those), and 1 with
one ``error:`` line for a problem with the inputs or flags, or a run that had to stop
(finished clusters are kept for the rerun).
"""

from auditoryhum.cli.options import (add_gemini_arguments, add_precision_arguments, add_server_arguments, gemini_options,
                                     per_device, server_options)
from auditoryhum.defaults import CHAT_BATCH_SIZE
from auditoryhum.recipe import GEMINI_GENERATION_CONFIG, REVISION_COMPOSITE_MAX_NEW_TOKENS
from auditoryhum.stages.composite import BACKENDS, DEFAULT_MAX_NEW_TOKENS, DEFAULT_TOP_LABELS, default_json_path  # noqa: F401


def add_arguments(parser, name):
    gemini_budget = GEMINI_GENERATION_CONFIG["max_output_tokens"]
    revision_tokens = REVISION_COMPOSITE_MAX_NEW_TOKENS
    parser.add_argument("--label_csv", default=None,
                        help="cluster-id file (one integer per line, as cluster_*.py write); required unless --prompt")
    parser.add_argument("--top_label_scores_csv", default=None,
                        help="scores file the clustering came from: rows '<i>, <path>, <label>, <score>'; required unless --prompt")
    parser.add_argument("--taxonomy_csv", default=None,
                        help="output: header cluster,composite_label,n_clips,top_labels, one row per cluster (ascending); "
                             "required unless --prompt")
    parser.add_argument("--prompt", default=None,
                        help="free-prompt mode (the revision's composite_label_qwen2_5o.py): print the model's answer to "
                             "this one prompt and write nothing; the cluster flags are not used")
    parser.add_argument("--system_prompt", default=None,
                        help="system message: 'neutral' (the revision's 'You are a neutral, objective informational "
                             "engine. ...' text) or any text, used verbatim ('' sends none); default: clusters get the "
                             "toolkit's composite instruction (after the Qwen identity prompt for Qwen Omni models), "
                             "--prompt gets neutral")
    parser.add_argument("--json", default=None,
                        help="output: JSON with every cluster's full label distribution, prompt, raw answer and label "
                             "(default: the taxonomy CSV's name with .json)")
    parser.add_argument("--backend", default="hf", choices=BACKENDS,
                        help="hf: a local or hub Hugging Face chat model (default); gemini: a Gemini model via google-genai")
    parser.add_argument("--model", required=True,
                        help="hf: model folder or hub id (a causal chat LM such as Qwen2.5-Instruct, or the "
                             "Qwen2.5-Omni thinker of the paper); gemini: model id, e.g. gemini-2.5-flash")
    parser.add_argument("--top_labels", type=int, default=DEFAULT_TOP_LABELS,
                        help=f"labels in each row's top_labels field, most frequent first (default {DEFAULT_TOP_LABELS})")
    parser.add_argument("--max_new_tokens", type=int, default=None,
                        help=f"hf: longest answer in tokens (default {DEFAULT_MAX_NEW_TOKENS} for clusters, of which only "
                             f"the first line is kept; {revision_tokens} with --prompt, as the revision). "
                             f"gemini keeps the labeller's {gemini_budget}-token budget, which its thinking also spends")
    defaults = per_device(CHAT_BATCH_SIZE)
    add_precision_arguments(parser, f"hf: clusters per generation batch (default per device: {defaults})")
    add_gemini_arguments(parser.add_argument_group("gemini backend"), "clusters")
    add_server_arguments(parser.add_argument_group("server (vLLM or another OpenAI-compatible server; docs/vllm.md)"),
                         "cluster prompts")


CLUSTER_FLAGS = ("label_csv", "top_label_scores_csv", "taxonomy_csv")


def run(args, name):
    from auditoryhum.console import report_failures
    from auditoryhum.errors import ParameterError
    from auditoryhum.stages.composite import composite_labels, composite_prompt

    if args.prompt is not None:
        if args.server:
            raise ParameterError("server", "is not available with --prompt yet; name clusters with it, or leave it out")
        given = [p for p in CLUSTER_FLAGS + ("json",) if getattr(args, p) is not None]
        if given:
            raise ParameterError(given[0], "is not used with --prompt (which prints one answer and writes nothing); "
                                           "leave one of them out")
        options = gemini_options(args)
        options.pop("max_consecutive_failures")
        result = composite_prompt(
            args.prompt, model=args.model, backend=args.backend,
            system_prompt="neutral" if args.system_prompt is None else args.system_prompt,
            max_new_tokens=args.max_new_tokens, device=args.device, dtype=args.dtype, quantization=args.quantization,
            **options)
        print(result.answer)
        return 0
    for param in CLUSTER_FLAGS:
        if getattr(args, param) is None:
            raise ParameterError(param, "is required (or give --prompt for the free-prompt mode)")
    result = composite_labels(
        args.label_csv, args.top_label_scores_csv, args.taxonomy_csv, model=args.model, json=args.json,
        backend=args.backend, top_labels=args.top_labels,
        max_new_tokens=DEFAULT_MAX_NEW_TOKENS if args.max_new_tokens is None else args.max_new_tokens,
        device=args.device, dtype=args.dtype, quantization=args.quantization, batch_size=args.batch_size,
        system_prompt=args.system_prompt, **gemini_options(args), **server_options(args))
    noise = " (+ the noise cluster -1, labelled noise)" if result.has_noise else ""
    print(f"composite labels of {result.n_named} of {result.n_clusters} clusters{noise} -> "
          f"{args.taxonomy_csv}, {result.outputs['json']}")
    return report_failures(result.failures, result.n_clusters, "they got no composite label: their composite_label is "
                           "empty (rerun the same command to ask again only for those)", unit="clusters")

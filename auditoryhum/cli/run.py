"""auditoryhum run: the whole pipeline in one resumable command (see docs/pipeline.md)."""


def add_arguments(parser, name):
    from auditoryhum.cli.options import add_device, add_engine_arguments, add_tsne_argument, positive_int
    from auditoryhum.pipeline import LABELLERS

    parser.add_argument("--config", default=None,
                        help="TOML file with the same options, one key per flag (e.g. filedir = 'clips/*.wav'); flags override it")
    parser.add_argument("--filedir", default=None, help="glob of the audio files, quoted (e.g. 'clips/*.wav')")
    parser.add_argument("--out_dir", default=None, help="folder of every artefact (fixed layout: docs/pipeline.md)")
    source = parser.add_argument_group("labels (one of)")
    source.add_argument("--text_label_csv", default=None, help="use these existing labels (one line per sorted clip)")
    source.add_argument("--labeller", default=None, choices=LABELLERS, help="label the clips with this audio LLM")
    parser.add_argument("--labeller_model", default=None,
                        help="the labeller's model: folder or hub id (Gemini: the model id, e.g. gemini-2.5-flash)")
    parser.add_argument("--resample", action="store_true", help="first convert copies of the clips to 16 kHz mono s16 (out_dir/clips_16k)")
    parser.add_argument("--clap_model", default=None,
                        help="CLAP model for scoring the labels; without it scores stay nan and review/score boost are skipped")
    parser.add_argument("--st_model", default=None,
                        help="sentence model for the kept labels (default: the bundled all-mpnet-base-v2, else all-MiniLM-L6-v2)")
    parser.add_argument("--annotations", default=None, help="human annotations (line-aligned): merge, re-score, score boost")
    parser.add_argument("--n_clusters", type=positive_int, default=None, help="k of the final clustering (default: the sweep's chosen k)")
    parser.add_argument("--penalty", type=float, default=None, help="the sweep's granularity penalty lambda (default: the recipe's)")
    add_tsne_argument(parser)
    parser.add_argument("--chat_model", default=None, help="chat model that names the clusters (folder, hub id or .gguf); optional")
    add_device(parser)
    parser.add_argument("--batch_size", type=positive_int, default=None, help="items per model batch (default: per stage and device)")
    add_engine_arguments(parser)
    served = parser.add_argument_group("servers (vLLM or another OpenAI-compatible server; docs/vllm.md)")
    served.add_argument("--server", default=None, metavar="URL[,URL...]",
                        help="label through this OpenAI-compatible server (several: comma-separated); --labeller_model "
                             "names the served model")
    served.add_argument("--chat_server", default=None, metavar="URL[,URL...]",
                        help="name the clusters through this server; --chat_model names the served model")
    served.add_argument("--concurrency", type=positive_int, default=None, help="requests in flight per server stage (default 8)")
    served.add_argument("--format_regex", default=None,
                        help="with --server: constrain the labeller's answers to this regular expression or preset (word_pairs)")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="print the plan (every stage, and whether it is up to date) and run nothing")
    # An option not given is left out of the parsed namespace instead of set to its default, so a
    # flag given at its default value (--engine local) still overrides --config's value; the
    # defaults themselves are RunOptions'. Added last: it covers every option above.
    import argparse

    for action in parser._actions:  # not set_defaults(): it would put the SUPPRESS marker itself into args
        if action.option_strings and action.dest not in ("help", "config", "dry_run"):
            action.default = argparse.SUPPRESS


def run(args, name):
    from auditoryhum.pipeline import options_from_args, run_pipeline

    options = options_from_args(args)
    return run_pipeline(options, dry_run=args.dry_run)

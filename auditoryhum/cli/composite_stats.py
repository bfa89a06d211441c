"""composite_label_stats.py: per-cluster label distributions, printed as composite-label prompts."""


def add_arguments(parser, name):
    parser.add_argument("--label_csv", required=True, help="cluster-id file (one integer per line)")
    parser.add_argument("--top_label_scores_csv", required=True, help="scores file: rows '<i>, <path>, <label>, <score>'")


def run(args, name):
    import sys

    from auditoryhum.stages.composite import composite_stats

    sys.stdout.write(composite_stats(args.label_csv, args.top_label_scores_csv).report)
    return 0

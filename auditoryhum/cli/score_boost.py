"""util_score_boost.py: mean score of the annotated clips, without and with human annotations."""


def add_arguments(parser, name):
    parser.add_argument("--csv1", required=True, help="scores file from the MLLM labels alone")
    parser.add_argument("--csv2", required=True, help="scores file from the labels merged with human annotations")
    parser.add_argument("--csv3", required=True, help="the human annotations file (blank line = not annotated)")


def run(args, name):
    import sys

    from auditoryhum.console import note
    from auditoryhum.stages.review import score_boost

    boost = score_boost(args.csv1, args.csv2, args.csv3)
    sys.stdout.write(boost.report)
    note(f"{boost.n_used} annotated clips; mean change {boost.difference:+.4f}")
    return 0

"""util_score_boost.py: mean score of the annotated clips, without and with human annotations."""


def add_arguments(parser, name):
    parser.add_argument("--csv1", required=True, help="scores file from the MLLM labels alone")
    parser.add_argument("--csv2", required=True, help="scores file from the labels merged with human annotations")
    parser.add_argument("--csv3", required=True, help="the human annotations file (blank line = not annotated)")


def run(args, name):
    from auditoryhum.console import note, warn
    from auditoryhum.errors import UserError
    from auditoryhum.hitl import score_boost
    from auditoryhum.io.artefacts import check_aligned, read_annotations, read_scores

    without = read_scores(args.csv1)
    with_human = read_scores(args.csv2)
    annotations = read_annotations(args.csv3)
    check_aligned(f"scores file {args.csv1}", len(without), f"scores file {args.csv2}", len(with_human))
    check_aligned(f"scores file {args.csv1}", len(without), f"annotations file {args.csv3}", len(annotations), b_may_be_shorter=True)
    boost = score_boost([r.score for r in without], [r.score for r in with_human], annotations)
    if boost.n_annotated == 0:
        raise UserError(f"annotations file {args.csv3} has no non-blank line; there is nothing to compare")
    if boost.n_used < boost.n_annotated:
        warn(f"{boost.n_annotated - boost.n_used} annotated rows have a nan score and are left out of both means")
    print("Difference scores MLLM vs MLLM + human")
    print(boost.mean_without)
    print(boost.mean_with)
    note(f"{boost.n_used} annotated clips; mean change {boost.difference:+.4f}")
    return 0

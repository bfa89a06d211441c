"""util_select_review.py: pick the worst-scored clips for human review; write a selection CSV and the review page."""

import argparse

from auditoryhum.cli.options import positive_int


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]; 1 % is 0.01")
    return value


def _threshold(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value:
        raise argparse.ArgumentTypeError("must be a number, not nan")
    return value


def add_arguments(parser, name):
    parser.add_argument("--top_label_scores_csv", required=True, help="scores file (rows '<i>, <path>, <label>, <score>') from features_clap_text.py")
    parser.add_argument("--text_label_csv", required=True, help="the label file the scores file was made from (one line per clip); its lines are shown as the candidates")
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument(
        "--fraction",
        type=_fraction,
        help="review the ceil(N x FRACTION) lowest-scored of the N clips (default 0.01, the paper's lowest 1 %%: "
        "10 of 1000 clips, 2 of 150; any fraction of a non-empty file selects at least one)",
    )
    rule.add_argument("--threshold", type=_threshold, help="review every clip whose score is <= THRESHOLD")
    rule.add_argument("--count", type=positive_int, help="review the COUNT lowest-scored clips")
    parser.add_argument("--selection_csv", help="output: the selected clips, worst first (header line,path,label,score,candidates; line is 1-based)")
    parser.add_argument("--html", help="output: the self-contained review page (open it in a browser from its folder; audio paths are relative to it)")
    parser.epilog = (
        "Clips with no usable label (score nan) are always selected, in addition to the rule, and listed first. "
        "Equal scores are ordered by line, so a cut inside a run of equal scores takes the earlier lines. "
        "Audio paths in the scores file are resolved from the current folder."
    )


def run(args, name):
    from auditoryhum.console import note
    from auditoryhum.stages.review import select_review

    result = select_review(args.top_label_scores_csv, args.text_label_csv, fraction=args.fraction, threshold=args.threshold,
                           count=args.count, selection_csv=args.selection_csv, html=args.html)
    print(f"Selected {len(result.selected)} of {result.n_clips} clips for review: " + "; ".join(result.parts))
    if result.n_ties_left_out:
        note(f"{result.n_ties_left_out} more clips share the cut-off score {result.cutoff:.6g} and were not selected "
             f"(equal scores go in line order); use --threshold {result.cutoff!r} to take them all")
    return 0

"""util_select_review.py: pick the worst-scored clips for human review; write a selection CSV and the review page."""

import argparse


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


def _count(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is less than 1")
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
    rule.add_argument("--count", type=_count, help="review the COUNT lowest-scored clips")
    parser.add_argument("--selection_csv", help="output: the selected clips, worst first (header line,path,label,score,candidates; line is 1-based)")
    parser.add_argument("--html", help="output: the self-contained review page (open it in a browser from its folder; audio paths are relative to it)")
    parser.epilog = (
        "Clips with no usable label (score nan) are always selected, in addition to the rule, and listed first. "
        "Equal scores are ordered by line, so a cut inside a run of equal scores takes the earlier lines. "
        "Audio paths in the scores file are resolved from the current folder."
    )


def _format_range(low, high):
    return f"{low:.6g}" if low == high else f"{low:.6g} to {high:.6g}"


def run(args, name):
    import os

    from auditoryhum.console import note, warn
    from auditoryhum.errors import UserError
    from auditoryhum.hitl import select_for_review
    from auditoryhum.io.artefacts import SelectionRow, check_aligned, read_label_file, read_scores, write_selection

    if not args.selection_csv and not args.html:
        raise UserError("nothing to write; give --selection_csv, --html or both")
    scores_path, labels_path = args.top_label_scores_csv, args.text_label_csv
    score_rows = read_scores(scores_path)
    label_lines = read_label_file(labels_path)
    if not score_rows:
        raise UserError(f"scores file {scores_path} is empty; there are no clips to select from")
    check_aligned(f"scores file {scores_path}", len(score_rows), f"label file {labels_path}", len(label_lines))
    for number, row in enumerate(score_rows, start=1):
        if row.index != number:
            warn(
                f"scores file {scores_path} line {number} has index {row.index}; "
                f"the selection uses line numbers, which the label and annotations files align to"
            )
            break

    pick = select_for_review([r.score for r in score_rows], fraction=args.fraction, threshold=args.threshold, count=args.count)
    selected = [
        SelectionRow(i + 1, score_rows[i].path, score_rows[i].label, score_rows[i].score, label_lines[i]) for i in pick.rows
    ]

    scored = [score_rows[i].score for i in pick.scored_rows]
    parts = []
    if pick.n_unscored:
        parts.append(f"{pick.n_unscored} with no usable label")
    parts.append(f"{pick.n_scored_selected} with {pick.rule}" + (f", scores {_format_range(scored[0], scored[-1])}" if scored else ""))
    summary = f"{len(selected)} of {pick.n_clips} clips selected for review, worst first: " + "; ".join(parts) + "."
    print(f"Selected {len(selected)} of {pick.n_clips} clips for review: " + "; ".join(parts))
    if pick.n_ties_left_out:
        note(
            f"{pick.n_ties_left_out} more clips share the cut-off score {scored[-1]:.6g} and were not selected "
            f"(equal scores go in line order); use --threshold {scored[-1]!r} to take them all"
        )
    if not selected:
        warn("no clips were selected; the outputs list none")

    if args.selection_csv:
        write_selection(args.selection_csv, selected)
        note(f"selection -> {args.selection_csv}")
    if args.html:
        from auditoryhum.review_page import write_review_page

        missing = [r.path for r in selected if not os.path.isfile(r.path)]
        if missing:
            warn(
                f"{len(missing)} of {len(selected)} selected clips' audio files are not found from the current folder "
                f"(first: {missing[0]}); their players on the page will not play. Run from the folder the scores "
                f"file's paths are relative to."
            )
        sources = f"Scores file: {scores_path}. Label file: {labels_path}."
        write_review_page(args.html, selected, pick.n_clips, summary, sources)
        note(f"review page -> {args.html} (keep it where it is relative to the audio, or move both together)")
    return 0

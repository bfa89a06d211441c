"""report.py: one self-contained HTML report of a run from whatever of its artefacts exist
(:func:`auditoryhum.stages.report.report`)."""

from auditoryhum.run_log import RUN_LOG_ENV


def add_arguments(parser, name):
    parser.add_argument("--html", required=True, help="output: the report (one HTML file; open it in a browser from its folder)")
    parser.add_argument("--title", help="title of the report (default: AuditoryHuM run report)")
    parser.add_argument(
        "--top_label_scores_csv",
        help="scores file from features_clap_text.py: score histogram with the review threshold, mean, nan count",
    )
    parser.add_argument("--selection_csv", help="review selection from util_select_review.py: the worst clips with players")
    parser.add_argument(
        "--scores_with_human_csv",
        help="scores file made from the labels merged with the annotations: score boost over the annotated clips "
        "(needs --annotations and --top_label_scores_csv)",
    )
    parser.add_argument("--annotations", help="human annotations file (blank line = not annotated)")
    parser.add_argument("--sweep_csv", help="k-sweep table from cluster_sweep.py: silhouette and adjusted curves; the chosen k "
                        "from its decision file (<sweep_csv minus .csv>_decision.json)")
    parser.add_argument(
        "--cluster_csv",
        help="cluster ids (one per line) from cluster_*.py: the cluster table (label counts need --top_label_scores_csv)",
    )
    parser.add_argument("--taxonomy_csv", help="taxonomy from composite_label.py (cluster,composite_label,n_clips,top_labels)")
    parser.add_argument("--tsne_png", help="t-SNE plot (the --png_plot of a cluster_*.py run), embedded as is")
    parser.add_argument(
        "--run_log",
        help=f"run log (JSON lines) to list the commands, versions and seeds from (default: ${RUN_LOG_ENV} when set; '' for none)",
    )
    parser.epilog = (
        f"Every input is optional: the report shows what it is given and says what is missing. "
        f"Set {RUN_LOG_ENV}=FILE before running the pipeline and every command appends one line to FILE. "
        f"Audio paths in the selection are resolved from the current folder and written relative to the report."
    )


def run(args, name):
    import os

    from auditoryhum.console import note
    from auditoryhum.stages.report import report

    run_log = args.run_log if args.run_log is not None else (os.environ.get(RUN_LOG_ENV) or None)
    if run_log and args.run_log is None:
        note(f"run log from ${RUN_LOG_ENV}: {run_log}")
    result = report(
        args.html, title=args.title, top_label_scores_csv=args.top_label_scores_csv, selection_csv=args.selection_csv,
        scores_with_human_csv=args.scores_with_human_csv, annotations=args.annotations, sweep_csv=args.sweep_csv,
        cluster_csv=args.cluster_csv, taxonomy_csv=args.taxonomy_csv, tsne_png=args.tsne_png, run_log=run_log,
    )
    line = f"Report {args.html}: {len(result.shown)} of {len(result.shown) + len(result.missing)} sections shown ({', '.join(result.shown) or 'none'})"
    if result.missing:
        line += f"; not shown: {', '.join(result.missing)}"
    print(line)
    return 0

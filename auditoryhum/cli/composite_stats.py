"""composite_label_stats.py: per-cluster label distributions, printed as composite-label prompts."""


def add_arguments(parser, name):
    parser.add_argument("--label_csv", required=True, help="cluster-id file (one integer per line)")
    parser.add_argument("--top_label_scores_csv", required=True, help="scores file: rows '<i>, <path>, <label>, <score>'")


def run(args, name):
    import sys

    from auditoryhum.composite import cluster_label_stats, format_stats_report
    from auditoryhum.io.artefacts import check_aligned, read_cluster_ids, read_scores

    cluster_ids = read_cluster_ids(args.label_csv)
    rows = read_scores(args.top_label_scores_csv)
    check_aligned(f"scores file {args.top_label_scores_csv}", len(rows), f"cluster-id file {args.label_csv}", len(cluster_ids))
    stats = cluster_label_stats(cluster_ids.tolist(), [r.label for r in rows])
    sys.stdout.write(format_stats_report(stats))
    return 0

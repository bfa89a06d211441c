"""auditoryhum example: generate the bundled example scene set, or summarise a finished run of it."""


def add_arguments(parser, name):
    parser.add_argument("--out_dir", default="example_output", help="folder for the example (default example_output)")
    parser.add_argument("--summarize", action="store_true",
                        help="instead of generating, summarise the clusterings found in --out_dir against the true scenes")


def run(args, name):
    if args.summarize:
        return summarize(args.out_dir)
    from auditoryhum.example import make_example

    made = make_example(args.out_dir)
    print(
        f"example: {len(made.clips)} clips of {len(set(made.scenes))} scene types in {args.out_dir}/clips; "
        f"labels {made.label_file}, kept labels {made.scores_file}, annotations {made.annotations_file}"
    )
    return 0


def summarize(out_dir):
    import glob
    import os

    from sklearn.metrics import adjusted_rand_score

    from auditoryhum.errors import UserError
    from auditoryhum.io.artefacts import read_cluster_ids, read_text_lines

    truth = read_text_lines(os.path.join(out_dir, "true_scenes.csv"), "true-scenes file")
    files = sorted(glob.glob(os.path.join(out_dir, "clusters", "*.csv")))
    if not files:
        raise UserError(f"no cluster-id files in {out_dir}/clusters; run the example first")
    print(f"{'clustering':<22} {'clusters':>8} {'noise':>6} {'ARI vs true scenes':>19}")
    for path in files:
        ids = read_cluster_ids(path)
        if len(ids) != len(truth):
            raise UserError(f"{path} has {len(ids)} lines but {len(truth)} clips")
        found = len(set(ids.tolist()) - {-1})
        noise = int((ids < 0).sum())
        name = os.path.splitext(os.path.basename(path))[0]
        print(f"{name:<22} {found:>8} {noise:>6} {adjusted_rand_score(truth, ids):>19.3f}")
    return 0

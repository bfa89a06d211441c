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
    from auditoryhum.stages.example import summarize_example

    print(f"{'clustering':<22} {'clusters':>8} {'noise':>6} {'ARI vs true scenes':>19}")
    for c in summarize_example(out_dir).clusterings:
        print(f"{c.name:<22} {c.n_clusters:>8} {c.n_noise:>6} {c.ari:>19.3f}")
    return 0

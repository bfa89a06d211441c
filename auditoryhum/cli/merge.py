"""util_merge_csv.py: line i of the output is the human annotation when there is one, else the MLLM label."""


def add_arguments(parser, name):
    parser.add_argument("--csv1", required=True, help="MLLM label file (one line per clip)")
    parser.add_argument("--csv2", required=True, help="human annotations, line-aligned, blank = none; may be shorter")
    parser.add_argument("--csv3", required=True, help="output label file")


def run(args, name):
    from auditoryhum.stages.review import merge_labels

    result = merge_labels(args.csv1, args.csv2, args.csv3)
    print(f"{result.n_replaced} of {result.n_lines} lines taken from the human annotations -> {args.csv3}")
    return 0

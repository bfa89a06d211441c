"""util_merge_csv.py: line i of the output is the human annotation when there is one, else the MLLM label."""


def add_arguments(parser, name):
    parser.add_argument("--csv1", required=True, help="MLLM label file (one line per clip)")
    parser.add_argument("--csv2", required=True, help="human annotations, line-aligned, blank = none; may be shorter")
    parser.add_argument("--csv3", required=True, help="output label file")


def run(args, name):
    from auditoryhum.hitl import is_annotated, merge_labels
    from auditoryhum.io.artefacts import check_aligned, read_annotations, read_label_file, write_lines

    model_lines = read_label_file(args.csv1)
    human_lines = read_annotations(args.csv2)
    check_aligned(f"label file {args.csv1}", len(model_lines), f"annotations file {args.csv2}", len(human_lines), b_may_be_shorter=True)
    write_lines(args.csv3, merge_labels(model_lines, human_lines))
    replaced = sum(1 for line in human_lines if is_annotated(line))
    print(f"{replaced} of {len(model_lines)} lines taken from the human annotations -> {args.csv3}")
    return 0

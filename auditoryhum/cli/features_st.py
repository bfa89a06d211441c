"""features_st.py: sentence embedding of every clip's kept label."""

from auditoryhum.cli.options import add_batch_size, add_device
from auditoryhum.defaults import ST_BATCH_SIZE


def add_arguments(parser, name):
    parser.add_argument("--st_model", required=True,
                        help="sentence-transformers model: local folder or hub id (paper: all-mpnet-base-v2)")
    parser.add_argument("--label_csv", required=True, help="scores file: rows '<i>, <path>, <label>, <score>'")
    parser.add_argument("--st_npy", required=True, help="output .npy, one row per scores-file row")
    add_device(parser)
    add_batch_size(parser, f"labels per forward pass (default {ST_BATCH_SIZE})", default=ST_BATCH_SIZE)


def run(args, name):
    from auditoryhum.stages.embed import embed_sentences

    result = embed_sentences(args.label_csv, args.st_model, args.st_npy, device=args.device, batch_size=args.batch_size)
    print(f"sentence embeddings of {len(result.paths)} labels -> {args.st_npy} shape {result.rows.shape}")
    return 0

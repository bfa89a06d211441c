"""features_st.py: sentence embedding of every clip's kept label."""


def add_arguments(parser, name):
    parser.add_argument("--st_model", required=True,
                        help="sentence-transformers model: local folder or hub id (paper: all-mpnet-base-v2)")
    parser.add_argument("--label_csv", required=True, help="scores file: rows '<i>, <path>, <label>, <score>'")
    parser.add_argument("--st_npy", required=True, help="output .npy, one row per scores-file row")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"], help="default: auto")
    parser.add_argument("--batch_size", type=int, default=32, help="labels per forward pass (default 32)")


def run(args, name):
    from auditoryhum.console import note, progress_enabled
    from auditoryhum.errors import UserError
    from auditoryhum.io.artefacts import read_scores, save_matrix
    from auditoryhum.models.device import resolve_device
    from auditoryhum.models.text_embed import embed_texts, load_sentence_model

    rows = read_scores(args.label_csv)
    if not rows:
        raise UserError(f"scores file {args.label_csv} has no rows")
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {args.batch_size}")
    device = resolve_device(args.device)
    if not args.quiet:
        note(f"device: {device}")
    model = load_sentence_model(args.st_model, device)
    vectors = embed_texts(model, [r.label for r in rows], args.batch_size, show_progress=progress_enabled())
    save_matrix(args.st_npy, vectors)
    print(f"sentence embeddings of {len(rows)} labels -> {args.st_npy} shape {vectors.shape}")
    return 0

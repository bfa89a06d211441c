"""features_cvector.py: each clip's class vector, its CLAP cosine with every label a scores file keeps."""


def add_arguments(parser, name):
    parser.add_argument("--filedir", required=True, help="glob of the audio files, quoted (e.g. 'clips/*.wav'); the clips of --scores_csv, same order")
    parser.add_argument("--clap_model", required=True, help="CLAP checkpoint (ClapModel): local folder or hub id; the one that made --scores_csv")
    parser.add_argument("--scores_csv", required=True, help="scores file from features_clap_text.py: rows '<i>, <path>, <label>, <score>'")
    parser.add_argument("--cvector_npy", required=True,
                        help="output .npy (N x U float32): cosine of each clip with each distinct kept label, columns in sorted "
                             "label order, named line by line in <cvector_npy minus .npy>_labels.txt")
    parser.add_argument("--clap_npy", default=None,
                        help="reuse these CLAP audio embeddings (features_clap.py, same --clap_model) instead of computing them; same rows either way")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"], help="default: auto")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="clips per audio forward pass (default 32 on CUDA, 8 otherwise) and labels per text pass (default 64)")
    parser.add_argument("--cache_dir", default=None,
                        help="text-embedding cache folder (default: $XDG_CACHE_HOME/auditoryhum, else ~/.cache/auditoryhum)")
    parser.add_argument("--no_cache", action="store_true", help="neither read nor write the text-embedding cache")


def run(args, name):
    from auditoryhum.console import report_failures
    from auditoryhum.errors import ParameterError, UserError
    from auditoryhum.stages.cvector import class_vectors

    try:
        result = class_vectors(
            args.filedir,
            clap_model=args.clap_model,
            scores_csv=args.scores_csv,
            cvector_npy=args.cvector_npy,
            clap_npy=args.clap_npy,
            device=args.device,
            batch_size=args.batch_size,
            cache_dir=args.cache_dir,
            no_cache=args.no_cache,
        )
    except ParameterError as exc:
        raise UserError(exc.for_flag(f"--{exc.param}")) from None
    n, u = result.shape
    print(f"Class vectors of {n} clips over {u} labels -> {result.outputs['cvector_npy']} "
          f"(columns: {result.outputs['cvector_labels']})")
    return report_failures(result.failures, n)

"""features_clap_text.py: keep each clip's best-matching label by CLAP audio-text similarity."""

from auditoryhum.cli.options import add_batch_size, add_candidate_arguments, add_device, add_filedir
from auditoryhum.stages.score import CLAP_TEXT_BATCH_SIZE


def add_arguments(parser, name):
    add_filedir(parser, "glob of the audio files, quoted (e.g. 'clips/*.wav'); gives the paths of the rows")
    parser.add_argument("--clap_model", required=True, help="CLAP checkpoint (ClapModel): local folder or hub id; the one that made --clap_npy")
    parser.add_argument("--clap_npy", required=True, help="audio embeddings from features_clap.py, one row per clip")
    parser.add_argument("--text_label_csv", required=True, help="label file: one line of comma-separated candidates per clip (a labeller's or a merged file)")
    parser.add_argument("--top_label_scores_csv", required=True, help="output: rows '<i>, <path>, <label>, <score>'")
    add_device(parser)
    add_batch_size(parser, f"candidate texts per forward pass of the text encoder (default {CLAP_TEXT_BATCH_SIZE})",
                   default=CLAP_TEXT_BATCH_SIZE)
    parser.add_argument("--cache_dir", default=None,
                        help="text-embedding cache folder (default: $XDG_CACHE_HOME/auditoryhum, else ~/.cache/auditoryhum)")
    parser.add_argument("--no_cache", action="store_true", help="neither read nor write the text-embedding cache")
    add_candidate_arguments(parser)


def run(args, name):
    from auditoryhum.stages.score import score_labels

    result = score_labels(args.filedir, args.clap_model, args.clap_npy, args.text_label_csv, args.top_label_scores_csv,
                          device=args.device, batch_size=args.batch_size, cache_dir=args.cache_dir, no_cache=args.no_cache,
                          label_limit=args.label_limit, candidates=args.candidates)
    print(f"Mean CLAP score: {result.mean_score}")
    return 0

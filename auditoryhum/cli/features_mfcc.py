"""features_mfcc.py: mean MFCC vector of every clip."""


def add_arguments(parser, name):
    parser.add_argument("--filedir", required=True, help="glob of the audio files, quoted (e.g. 'clips/*.wav')")
    parser.add_argument("--mfcc_npy", required=True, help="output .npy, shape (clips, 20), rows in sorted-path order")


def run(args, name):
    from auditoryhum.console import report_failures
    from auditoryhum.features import mfcc_features
    from auditoryhum.io.artefacts import save_matrix
    from auditoryhum.io.audio import expand_glob

    paths = expand_glob(args.filedir)
    table = mfcc_features(paths)
    save_matrix(args.mfcc_npy, table.rows)
    print(f"MFCC features of {len(paths)} clips -> {args.mfcc_npy} shape {table.rows.shape}")
    return report_failures(table.failures, len(paths))

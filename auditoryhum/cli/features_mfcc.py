"""features_mfcc.py: mean MFCC vector of every clip."""

from auditoryhum.cli.options import add_filedir


def add_arguments(parser, name):
    add_filedir(parser)
    parser.add_argument("--mfcc_npy", required=True, help="output .npy, shape (clips, 20), rows in sorted-path order")


def run(args, name):
    from auditoryhum.console import report_failures
    from auditoryhum.stages.embed import embed_mfcc

    result = embed_mfcc(args.filedir, args.mfcc_npy)
    print(f"MFCC features of {len(result.paths)} clips -> {args.mfcc_npy} shape {result.rows.shape}")
    return report_failures(result.failures, len(result.paths))

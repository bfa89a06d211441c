"""features_qwen2a.py, features_gemma3n.py: audio-tower embedding of every clip, summed over time."""

# Which family's tower each command runs, and its output flag (SPEC.md).
TOWER_OF_COMMAND = {
    "features-qwen2a": ("qwen2a", "--qwen2a_npy"),
    "features-gemma3n": ("gemma3n", "--gemma3n_npy"),
}


def add_arguments(parser, name):
    from auditoryhum.cli.label import add_precision_arguments
    from auditoryhum.models.families import get_family
    from auditoryhum.models.tower_embed import DEFAULT_BATCH_SIZE

    key, npy_flag = TOWER_OF_COMMAND[name]
    family = get_family(key)
    parser.add_argument("--filedir", required=True, help="glob of the audio files, quoted (e.g. 'clips/*.wav')")
    parser.add_argument(family.model_flag, required=True, dest=family.model_dest,
                        help=f"{family.title} model: local folder or Hugging Face hub id")
    parser.add_argument(npy_flag, required=True, dest="output_npy",
                        help="output .npy, one row per clip in sorted-path order (float32)")
    defaults = ", ".join(f"{d} {n}" for d, n in DEFAULT_BATCH_SIZE.items())
    add_precision_arguments(parser, f"clips per tower forward pass (default per device: {defaults})")


def run(args, name):
    from auditoryhum.console import report_failures
    from auditoryhum.io.audio import expand_glob
    from auditoryhum.models.device import resolve_precision
    from auditoryhum.models.families import get_family
    from auditoryhum.models.loader import check_model_type, check_source
    from auditoryhum.models.tower_embed import run_tower_embeddings

    key, _ = TOWER_OF_COMMAND[name]
    family = get_family(key)
    model_source = getattr(args, family.model_dest)
    paths = expand_glob(args.filedir)
    check_source(model_source, family.model_flag)
    check_model_type(model_source, family.model_flag, family.model_types, family.what)
    precision = resolve_precision(args.device, args.dtype, args.quantization)
    report = run_tower_embeddings(family, model_source, paths, args.output_npy, precision,
                                  batch_size=args.batch_size)
    print(f"{family.title} tower embeddings of {len(paths)} clips -> {args.output_npy} shape {report.rows.shape}")
    return report_failures(report.failures, len(paths), "their rows are NaN (rerun the same command to retry only those)")

"""features_qwen2a.py, features_gemma3n.py: audio-tower embedding of every clip, summed over time."""

from auditoryhum.cli.options import add_engine_arguments, add_filedir, add_precision_arguments, engine_options, per_device
from auditoryhum.defaults import TOWER_BATCH_SIZE

# Which family's tower each command runs, and its output flag.
TOWER_OF_COMMAND = {
    "features-qwen2a": ("qwen2a", "--qwen2a_npy"),
    "features-gemma3n": ("gemma3n", "--gemma3n_npy"),
}


def add_arguments(parser, name):
    from auditoryhum.models.families import get_family

    key, npy_flag = TOWER_OF_COMMAND[name]
    family = get_family(key)
    add_filedir(parser)
    parser.add_argument(family.model_flag, required=True, dest="model",
                        help=f"{family.title} model: local folder or Hugging Face hub id")
    parser.add_argument(npy_flag, required=True, dest="output_npy",
                        help="output .npy, one row per clip in sorted-path order (float32)")
    defaults = per_device(TOWER_BATCH_SIZE)
    add_precision_arguments(parser, f"clips per tower forward pass (default per device: {defaults})")
    add_engine_arguments(parser)


def run(args, name):
    from auditoryhum.console import report_failures
    from auditoryhum.models.families import get_family
    from auditoryhum.stages.embed import embed_tower

    key, _ = TOWER_OF_COMMAND[name]
    result = embed_tower(args.filedir, args.model, args.output_npy, family=key, device=args.device, dtype=args.dtype,
                         quantization=args.quantization, batch_size=args.batch_size, **engine_options(args))
    print(f"{get_family(key).title} tower embeddings of {len(result.paths)} clips -> {args.output_npy} shape {result.rows.shape}")
    return report_failures(result.failures, len(result.paths), "their rows are NaN (rerun the same command to retry only those)")

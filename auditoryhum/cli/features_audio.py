"""features_ast.py, features_clap.py: one embedding row per clip from an audio model."""

# command -> (model flag, output flag, what the model is, help for the model flag)
_MODEL_OF_COMMAND = {
    "features-ast": ("ast", "AST", "AST checkpoint (ASTForAudioClassification): local folder or hub id"),
    "features-clap": ("clap", "CLAP", "CLAP checkpoint (ClapModel, fused or unfused): local folder or hub id"),
}


def add_arguments(parser, name):
    key, what, model_help = _MODEL_OF_COMMAND[name]
    parser.add_argument("--filedir", required=True, help="glob of the audio files, quoted (e.g. 'clips/*.wav')")
    parser.add_argument(f"--{key}_model", required=True, help=model_help)
    parser.add_argument(f"--{key}_npy", required=True, help=f"output .npy: one {what} embedding row per clip, in sorted-path order")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"], help="default: auto")
    parser.add_argument("--batch_size", type=int, default=None, help="clips per forward pass (default: 32 on CUDA, 8 otherwise)")


def run(args, name):
    from auditoryhum.console import note, report_failures
    from auditoryhum.errors import UserError
    from auditoryhum.io.audio import expand_glob
    from auditoryhum.models.audio_embed import ASTEmbedder, ClapAudioEmbedder, default_batch_size, run_clip_embeddings
    from auditoryhum.models.device import resolve_device

    key, what, _ = _MODEL_OF_COMMAND[name]
    source = getattr(args, f"{key}_model")
    output = getattr(args, f"{key}_npy")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {args.batch_size}")
    paths = expand_glob(args.filedir)
    loader = ASTEmbedder if key == "ast" else ClapAudioEmbedder
    loader.check(source, f"--{key}_model")  # a wrong folder fails before torch is imported
    device = resolve_device(args.device)
    batch_size = args.batch_size or default_batch_size(device)
    note(f"device {device}, batch size {batch_size}")
    # Checkpointed per batch: rerunning the same command after a kill resumes where it stopped.
    table, _ = run_clip_embeddings(loader, source, f"--{key}_model", device, paths, output, batch_size)
    print(f"{what} embeddings of {len(paths)} clips -> {output} shape {table.rows.shape}")
    return report_failures(table.failures, len(paths))

"""features_ast.py, features_clap.py: one embedding row per clip from an audio model."""

from auditoryhum.cli.options import add_batch_size, add_device, add_engine_arguments, add_filedir, engine_options

# command -> (kind, what the model is, help for the model flag)
_MODEL_OF_COMMAND = {
    "features-ast": ("ast", "AST", "AST checkpoint (ASTForAudioClassification): local folder or hub id"),
    "features-clap": ("clap", "CLAP", "CLAP checkpoint (ClapModel, fused or unfused): local folder or hub id"),
}


def add_arguments(parser, name):
    kind, what, model_help = _MODEL_OF_COMMAND[name]
    add_filedir(parser)
    parser.add_argument(f"--{kind}_model", required=True, dest="model", help=model_help)
    parser.add_argument(f"--{kind}_npy", required=True, dest="output_npy",
                        help=f"output .npy: one {what} embedding row per clip, in sorted-path order")
    add_device(parser)
    add_batch_size(parser, "clips per forward pass (default: 32 on CUDA, 8 otherwise)")
    add_engine_arguments(parser)


def run(args, name):
    from auditoryhum.console import report_failures
    from auditoryhum.stages.embed import embed_audio

    kind, what, _ = _MODEL_OF_COMMAND[name]
    # Checkpointed per batch: rerunning the same command after a kill resumes where it stopped.
    result = embed_audio(args.filedir, args.model, args.output_npy, kind=kind, device=args.device, batch_size=args.batch_size,
                         **engine_options(args))
    print(f"{what} embeddings of {len(result.paths)} clips -> {args.output_npy} shape {result.rows.shape}")
    return report_failures(result.failures, len(result.paths))

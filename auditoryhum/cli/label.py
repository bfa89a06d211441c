"""label_qwen2a.py, label_qwen2_5o.py, label_qwen3o.py, label_gemma3n.py: audio-LLM scene labels, one line per clip."""

# Which family each command labels with (auditoryhum.models.families.FAMILIES).
FAMILY_OF_COMMAND = {
    "label-qwen2a": "qwen2a",
    "label-qwen2-5o": "qwen2_5o",
    "label-qwen3o": "qwen3o",
    "label-gemma3n": "gemma3n",
}


def add_precision_arguments(parser, batch_help: str) -> None:
    """``--device``, ``--dtype``, ``--quantization`` and ``--batch_size``, shared by the model commands."""
    from auditoryhum.models.device import DEVICE_CHOICES, DTYPE_CHOICES, QUANTIZATION_CHOICES

    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="default: auto (CUDA, then MPS, then CPU)")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES,
                        help="weights dtype; auto: bfloat16 on CUDA (float16 if unsupported), float16 on MPS, float32 on CPU")
    parser.add_argument("--quantization", default="auto", choices=QUANTIZATION_CHOICES,
                        help="auto: 4-bit NF4 (double quantisation, as the paper) where CUDA and bitsandbytes exist, else none")
    parser.add_argument("--batch_size", type=int, default=None, help=batch_help)


def add_arguments(parser, name):
    from auditoryhum.models.families import get_family
    from auditoryhum.models.labeller import DEFAULT_BATCH_SIZE, LONG_AUDIO_CHOICES

    family = get_family(FAMILY_OF_COMMAND[name])
    parser.add_argument("--filedir", required=True, help="glob of the audio files, quoted (e.g. 'clips/*.wav')")
    parser.add_argument(family.model_flag, required=True, dest=family.model_dest,
                        help=f"{family.title} model: local folder or Hugging Face hub id")
    parser.add_argument("--annotations", default=None,
                        help="human hints, one line per sorted clip (may be shorter); a non-blank line is appended to that clip's prompt")
    parser.add_argument("--text_label_csv", required=True, help="output label file: one line per clip, in sorted-path order")
    defaults = ", ".join(f"{d} {n}" for d, n in DEFAULT_BATCH_SIZE.items())
    add_precision_arguments(parser, f"clips per generation batch (default per device: {defaults})")
    parser.add_argument("--long_audio", default="truncate", choices=LONG_AUDIO_CHOICES,
                        help="clips longer than the front end's window (30 s for Whisper-style front ends): "
                             "truncate (label the first window, as the paper) or window (label every window, join in order)")


def run(args, name):
    from auditoryhum.console import report_failures
    from auditoryhum.io.audio import expand_glob
    from auditoryhum.models.device import resolve_precision
    from auditoryhum.models.families import get_family
    from auditoryhum.models.labeller import run_labelling
    from auditoryhum.models.loader import check_model_type, check_source

    family = get_family(FAMILY_OF_COMMAND[name])
    model_source = getattr(args, family.model_dest)
    paths = expand_glob(args.filedir)
    # Flag mistakes first: they cost nothing to find, unlike importing torch.
    check_source(model_source, family.model_flag)
    check_model_type(model_source, family.model_flag, family.model_types, family.what)
    prompts = clip_prompts(args, paths)
    precision = resolve_precision(args.device, args.dtype, args.quantization)
    report = run_labelling(
        family, model_source, paths, prompts, args.text_label_csv,
        precision, batch_size=args.batch_size, long_audio=args.long_audio,
    )
    print(f"{family.title} labels of {len(paths)} clips -> {args.text_label_csv}")
    return report_failures(report.failures, len(paths), "their label lines are empty (rerun the same command to retry only those)")


def clip_prompts(args, paths):
    """The user prompt of every clip: the published prompt, plus its ``--annotations`` hint if any.

    The annotations file is line-aligned with the sorted clips and may be shorter.
    """
    from auditoryhum.io.artefacts import check_aligned, read_annotations
    from auditoryhum.models.labeller import user_prompt

    hints = []
    if args.annotations:
        hints = read_annotations(args.annotations)
        check_aligned(f"--filedir {args.filedir!r} ({len(paths)} clips)", len(paths),
                      f"annotations file {args.annotations}", len(hints), b_may_be_shorter=True)
    return [user_prompt(hints[i] if i < len(hints) else None) for i in range(len(paths))]

"""label_qwen2a.py, label_qwen2_5o.py, label_qwen3o.py, label_gemma3n.py: audio-LLM scene labels, one line per clip."""

from auditoryhum.cli.options import (add_annotations, add_engine_arguments, add_filedir, add_precision_arguments,
                                     add_prompt_arguments, add_server_arguments, engine_options, per_device,
                                     server_options)
from auditoryhum.defaults import LABELLER_BATCH_SIZE, LONG_AUDIO_CHOICES

# Which family each command labels with (auditoryhum.models.families.FAMILIES).
FAMILY_OF_COMMAND = {
    "label-qwen2a": "qwen2a",
    "label-qwen2-5o": "qwen2_5o",
    "label-qwen3o": "qwen3o",
    "label-gemma3n": "gemma3n",
}


def add_arguments(parser, name):
    from auditoryhum.models.families import get_family

    family = get_family(FAMILY_OF_COMMAND[name])
    add_filedir(parser)
    parser.add_argument(family.model_flag, required=True, dest="model",
                        help=f"{family.title} model: local folder or Hugging Face hub id; with --server, the name the "
                             f"server serves it under")
    add_annotations(parser)
    parser.add_argument("--text_label_csv", required=True, help="output label file: one line per clip, in sorted-path order")
    defaults = per_device(LABELLER_BATCH_SIZE)
    add_precision_arguments(parser, f"clips per generation batch (default per device: {defaults})")
    parser.add_argument("--long_audio", default="truncate",
                        choices=LONG_AUDIO_CHOICES,
                        help="clips longer than the front end's window (30 s for Whisper-style front ends): "
                             "truncate (label the first window, as the paper) or window (label every window, join in order)")
    add_prompt_arguments(parser, repr(family.system_prompt))
    add_engine_arguments(parser)
    add_server_arguments(parser.add_argument_group("server (vLLM or another OpenAI-compatible server; docs/vllm.md)"),
                         "clips", format_regex=True)


def run(args, name):
    from auditoryhum.console import report_failures
    from auditoryhum.models.families import get_family
    from auditoryhum.stages.label import label

    family = FAMILY_OF_COMMAND[name]
    result = label(args.filedir, args.model, args.text_label_csv, family=family, annotations=args.annotations,
                   device=args.device, dtype=args.dtype, quantization=args.quantization, batch_size=args.batch_size,
                   long_audio=args.long_audio, task=args.task, prompt=args.prompt, system_prompt=args.system_prompt,
                   **engine_options(args), **server_options(args))
    what = "captions" if args.task == "caption" else "labels"
    print(f"{get_family(family).title} {what} of {len(result.paths)} clips -> {args.text_label_csv}")
    return report_failures(result.failures, len(result.paths),
                           "their label lines are empty (rerun the same command to retry only those)")

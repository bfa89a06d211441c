"""label_google_gen_ai_cloud.py: scene labels from a Gemini model through the google-genai SDK, one line per clip.

Exit status: 0 when every clip was labelled; 1 when some clips failed after their retries
(their lines are empty, a summary says how many, and a rerun retries only those), and 1 with
one ``error:`` line when the run stopped early: a missing, wrong or unauthorised API key, an
unknown model, or too many clips failing in a row (finished clips are kept for the rerun).
"""

from auditoryhum.cli.options import add_annotations, add_filedir, add_gemini_arguments, add_prompt_arguments, gemini_options
from auditoryhum.defaults import GEMINI_CONCURRENCY, GEMINI_INLINE_MAX_BYTES


def add_arguments(parser, name):
    inline = GEMINI_INLINE_MAX_BYTES
    concurrency = GEMINI_CONCURRENCY
    add_filedir(parser)
    parser.add_argument("--genai_id", required=True, help="Gemini model id, e.g. gemini-2.5-flash")
    add_annotations(parser)
    parser.add_argument("--text_label_csv", required=True, help="output label file: one line per clip, in sorted-path order")
    parser.add_argument("--concurrency", type=int, default=concurrency,
                        help=f"clips in flight at once (default {concurrency}); output order and resume are unaffected")
    parser.add_argument("--inline_max_bytes", type=int, default=inline,
                        help=f"clips up to this many bytes are sent inline; larger ones are uploaded with the Files API once "
                             f"and deleted afterwards (default {inline}, under the API's 20 MB request limit "
                             f"after base64; 0 uploads every clip)")
    add_prompt_arguments(parser, "none, as the published call")
    add_gemini_arguments(parser, "clips")


def run(args, name):
    from auditoryhum.console import report_failures
    from auditoryhum.stages.label import label_gemini

    result = label_gemini(args.filedir, args.genai_id, args.text_label_csv, annotations=args.annotations,
                          concurrency=args.concurrency, inline_max_bytes=args.inline_max_bytes, task=args.task, prompt=args.prompt,
                          system_prompt=args.system_prompt, **gemini_options(args))
    what = "captions" if args.task == "caption" else "labels"
    print(f"Gemini ({result.model}) {what} of {len(result.paths)} clips -> {args.text_label_csv}")
    # each failure was printed as it happened
    return report_failures(result.failures, len(result.paths),
                           "their label lines are empty (rerun the same command to retry only those)", listed=True)

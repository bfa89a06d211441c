"""label_google_gen_ai_cloud.py: scene labels from a Gemini model through the google-genai SDK, one line per clip.

Exit status: 0 when every clip was labelled; 1 when some clips failed after their retries
(their lines are empty, a summary says how many, and a rerun retries only those), and 1 with
one ``error:`` line when the run stopped early: a missing, wrong or unauthorised API key, an
unknown model, or too many clips failing in a row (finished clips are kept for the rerun).
"""

import argparse


def _number(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    return value


def add_gemini_arguments(group, unit: str) -> None:
    """The Gemini client's flags, shared by every command that talks to Gemini.

    ``unit`` names what one request is for ("clips", "clusters") in the help texts.
    """
    from auditoryhum.models import gemini

    group.add_argument("--api_key", default=None,
                       help="API key; better set GEMINI_API_KEY or GOOGLE_API_KEY (GOOGLE_API_KEY wins if both are set), "
                            "since a flag is visible to other users in the process list. Never printed")
    group.add_argument("--base_url", default=None,
                       help=f"send requests to this endpoint (gateway, proxy, regional endpoint) instead of the default; "
                            f"default: ${gemini.BASE_URL_ENV_VAR} if set")
    group.add_argument("--max_retries", type=int, default=gemini.DEFAULT_MAX_RETRIES,
                       help=f"retries of a request after a rate limit (429), server error (500, 502, 503, 504), timeout or "
                            f"connection error (default {gemini.DEFAULT_MAX_RETRIES}); other errors are not retried")
    group.add_argument("--timeout", type=_number, default=gemini.DEFAULT_TIMEOUT_S,
                       help=f"seconds each request may take (default {gemini.DEFAULT_TIMEOUT_S:g})")
    group.add_argument("--retry_base_delay", type=_number, default=gemini.DEFAULT_RETRY_BASE_DELAY_S,
                       help=f"first back-off delay in seconds, doubled per retry up to {gemini.RETRY_MAX_DELAY_S:g} s, with "
                            f"jitter (default {gemini.DEFAULT_RETRY_BASE_DELAY_S:g}); a delay the server asks for is honoured "
                            f"instead (up to {gemini.SERVER_RETRY_DELAY_CAP_S:g} s)")
    group.add_argument("--max_consecutive_failures", type=int, default=gemini.DEFAULT_MAX_CONSECUTIVE_FAILURES,
                       help=f"stop the run when this many {unit} in a row fail after their retries (default "
                            f"{gemini.DEFAULT_MAX_CONSECUTIVE_FAILURES}; 0: never); a rerun resumes")


def gemini_settings(args, model: str, **extra):
    """``GeminiSettings`` from the flags of :func:`add_gemini_arguments`, checked; returns ``(settings, key source)``.

    Warns once when the key came from the command line, where other users can see it.
    """
    from auditoryhum.console import note
    from auditoryhum.models import gemini

    api_key, key_source = gemini.resolve_api_key(args.api_key)
    settings = gemini.GeminiSettings(
        model=model,
        api_key=api_key,
        base_url=gemini.resolve_base_url(args.base_url),
        timeout_s=args.timeout,
        max_retries=args.max_retries,
        retry_base_delay_s=args.retry_base_delay,
        max_consecutive_failures=args.max_consecutive_failures,
        **extra,
    )
    settings.check()
    if key_source == "--api_key":
        note("the API key was given with --api_key, which other users can see in the process list; "
             "GEMINI_API_KEY in the environment is safer")
    return settings, key_source


def without_key_in_errors(api_key, work, unit: str):
    """Run ``work()``; an unexpected exception becomes one line with the key scrubbed, never a traceback.

    SDK and HTTP-library messages may echo the request URL or headers, and so the key.
    """
    from auditoryhum.errors import UserError
    from auditoryhum.models import gemini

    try:
        return work()
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as exc:
        message = gemini.one_line(gemini.scrub(f"{type(exc).__name__}: {exc}", api_key))
        raise UserError(f"unexpected failure ({message}); finished {unit} are kept, rerun the same command to resume") from None


def add_arguments(parser, name):
    from auditoryhum.models import gemini

    parser.add_argument("--filedir", required=True, help="glob of the audio files, quoted (e.g. 'clips/*.wav')")
    parser.add_argument("--genai_id", required=True, help="Gemini model id, e.g. gemini-2.5-flash")
    parser.add_argument("--annotations", default=None,
                        help="human hints, one line per sorted clip (may be shorter); a non-blank line is appended to that clip's prompt")
    parser.add_argument("--text_label_csv", required=True, help="output label file: one line per clip, in sorted-path order")
    parser.add_argument("--concurrency", type=int, default=gemini.DEFAULT_CONCURRENCY,
                        help=f"clips in flight at once (default {gemini.DEFAULT_CONCURRENCY}); output order and resume are unaffected")
    parser.add_argument("--inline_max_bytes", type=int, default=gemini.INLINE_MAX_BYTES,
                        help=f"clips up to this many bytes are sent inline; larger ones are uploaded with the Files API once "
                             f"and deleted afterwards (default {gemini.INLINE_MAX_BYTES}, under the API's 20 MB request limit "
                             f"after base64; 0 uploads every clip)")
    add_gemini_arguments(parser, "clips")


def run(args, name):
    from auditoryhum.cli.label import clip_prompts
    from auditoryhum.console import note, report_failures
    from auditoryhum.io.audio import expand_glob
    from auditoryhum.models import gemini

    settings, key_source = gemini_settings(
        args, args.genai_id.strip(), inline_max_bytes=args.inline_max_bytes, concurrency=args.concurrency
    )
    paths = expand_glob(args.filedir)
    prompts = clip_prompts(args, paths)
    endpoint = f" via {settings.base_url}" if settings.base_url else ""
    note(f"labelling {len(paths)} clips with {settings.model}{endpoint} (key from {key_source}, "
         f"{settings.concurrency} in flight, up to {settings.max_retries} retries per request)")
    report = without_key_in_errors(
        settings.api_key, lambda: gemini.run_gemini_labelling(paths, prompts, args.text_label_csv, settings), "clips"
    )
    print(f"Gemini ({settings.model}) labels of {len(paths)} clips -> {args.text_label_csv}")
    # each failure was printed as it happened
    return report_failures(report.failures, len(paths), "their label lines are empty (rerun the same command to retry only those)",
                           listed=True)

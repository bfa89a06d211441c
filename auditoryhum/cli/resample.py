"""util_resample.py: convert clips to one rate, channel count and sample format."""

from auditoryhum.cli.options import add_filedir
from auditoryhum.recipe import RESAMPLE_BITS, RESAMPLE_CHANNELS, RESAMPLE_RATE
from auditoryhum.defaults import BITS_CHOICES, DEFAULT_RESAMPLER, RESAMPLER_CHOICES
from auditoryhum.stages.resample import default_jobs


def add_arguments(parser, name):
    add_filedir(parser)
    parser.add_argument("--sampling_rate", type=int, default=RESAMPLE_RATE, help=f"target rate in Hz (default {RESAMPLE_RATE})")
    parser.add_argument("--bits", default=RESAMPLE_BITS, choices=BITS_CHOICES,
                        help=f"target sample format, ffmpeg names (default {RESAMPLE_BITS}); ignored for lossy Ogg/MP3 files")
    parser.add_argument("--channels", type=int, default=RESAMPLE_CHANNELS, help=f"target channel count (default {RESAMPLE_CHANNELS})")
    parser.add_argument("--output_dir", default=None,
                        help="write converted copies here (mirroring the input folders) instead of replacing the originals")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="files converted in parallel (default: min(4, CPUs))")
    parser.add_argument("--resampler", choices=RESAMPLER_CHOICES, default=DEFAULT_RESAMPLER,
                        help="ffmpeg (default): the filter of ffmpeg's default resampler, so the clips match the "
                             "published recipe's 'ffmpeg -ar -ac -sample_fmt' output (the same samples for 8/16-bit "
                             "sources); it is -1 dB at 0.9x the new Nyquist frequency, -6 dB at 0.97x and -10 dB at 1x, "
                             "so some content just above it folds back (aliasing). soxr: soxr's HQ filter, steeper: "
                             "flat to 0.93x, -53 dB at 0.99x, nothing above 1x gets through; not the recipe's audio")


def run(args, name):
    import sys

    from auditoryhum.cli import COMMANDS, build_parser, flag_of
    from auditoryhum.console import note
    from auditoryhum.stages.resample import resample

    result = resample(args.filedir, sampling_rate=args.sampling_rate, bits=args.bits, channels=args.channels,
                      output_dir=args.output_dir, jobs=args.jobs, resampler=args.resampler)
    parser = build_parser(next(c for c in COMMANDS if c.name == name))
    for o in result.outcomes:
        shown = o.shown(lambda param: flag_of(parser, param))  # parameters a message names, as this command's flags
        if o.status == "failed":
            # A failure is an error about the user's file: stderr, also under --quiet (stdout is the summary).
            print(f"failed: {shown}", file=sys.stderr, flush=True)
        elif shown:
            note(shown)
    counts = result.counts
    where = f"into {args.output_dir}" if args.output_dir else "in place"
    print(
        f"{len(result.outcomes)} files {where}: {counts['converted']} converted, {counts['unchanged']} already "
        f"{args.sampling_rate} Hz / {args.channels} ch / {args.bits}, {counts['failed']} failed (left untouched)",
        flush=True,
    )
    if counts["failed"]:
        note("failed files were not modified; fix or remove them and rerun (finished files are skipped)")
        return 1
    return 0

"""util_resample.py: convert clips to one rate, channel count and sample format."""

import os


def add_arguments(parser, name):
    parser.add_argument("--filedir", required=True, help="glob of the audio files, quoted (e.g. 'clips/*.wav')")
    parser.add_argument("--sampling_rate", type=int, default=16000, help="target rate in Hz (default 16000)")
    parser.add_argument("--bits", default="s16", choices=["u8", "s16", "s32", "flt", "dbl"],
                        help="target sample format, ffmpeg names (default s16); ignored for lossy Ogg/MP3 files")
    parser.add_argument("--channels", type=int, default=1, help="target channel count (default 1)")
    parser.add_argument("--output_dir", default=None,
                        help="write converted copies here (mirroring the input folders) instead of replacing the originals")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                        help="files converted in parallel (default: min(4, CPUs))")
    # Kept in step with auditoryhum.resample.RESAMPLERS / DEFAULT_RESAMPLER (not imported: --help stays light).
    parser.add_argument("--resampler", choices=["ffmpeg", "soxr"], default="ffmpeg",
                        help="ffmpeg (default): the filter of ffmpeg's default resampler, so the clips match the "
                             "published recipe's 'ffmpeg -ar -ac -sample_fmt' output (the same samples for 8/16-bit "
                             "sources); it is -1 dB at 0.9x the new Nyquist frequency, -6 dB at 0.97x and -10 dB at 1x, "
                             "so some content just above it folds back (aliasing). soxr: soxr's HQ filter, steeper: "
                             "flat to 0.93x, -53 dB at 0.99x, nothing above 1x gets through; not the recipe's audio")


def run(args, name):
    from auditoryhum.console import note
    from auditoryhum.errors import UserError
    from auditoryhum.io.audio import expand_glob
    from auditoryhum.resample import Target, convert_files

    target = Target(args.sampling_rate, args.channels, args.bits, args.resampler)
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    sources = expand_glob(args.filedir)
    outcomes = convert_files(sources, target, args.output_dir, jobs=args.jobs)
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("converted", "unchanged", "failed")}
    for o in outcomes:
        if o.status == "failed":
            print(f"failed: {o.message}", flush=True)
        elif o.message:
            note(o.message)
    where = f"into {args.output_dir}" if args.output_dir else "in place"
    print(
        f"{len(outcomes)} files {where}: {counts['converted']} converted, {counts['unchanged']} already "
        f"{args.sampling_rate} Hz / {args.channels} ch / {args.bits}, {counts['failed']} failed (left untouched)",
        flush=True,
    )
    if counts["failed"]:
        note("failed files were not modified; fix or remove them and rerun (finished files are skipped)")
        return 1
    return 0

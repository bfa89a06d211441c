"""features_clap_text.py: keep each clip's best-matching label by CLAP audio-text similarity."""

# A warning lists at most this many clips by name; the rest are counted.
_MAX_NAMED = 10


def add_arguments(parser, name):
    parser.add_argument("--filedir", required=True, help="glob of the audio files, quoted (e.g. 'clips/*.wav'); gives the paths of the rows")
    parser.add_argument("--clap_model", required=True, help="CLAP checkpoint (ClapModel): local folder or hub id; the one that made --clap_npy")
    parser.add_argument("--clap_npy", required=True, help="audio embeddings from features_clap.py, one row per clip")
    parser.add_argument("--text_label_csv", required=True, help="label file: one line of comma-separated candidates per clip (a labeller's or a merged file)")
    parser.add_argument("--top_label_scores_csv", required=True, help="output: rows '<i>, <path>, <label>, <score>'")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"], help="default: auto")
    parser.add_argument("--batch_size", type=int, default=64, help="candidate texts per forward pass of the text encoder (default 64)")
    parser.add_argument("--cache_dir", default=None,
                        help="text-embedding cache folder (default: $XDG_CACHE_HOME/auditoryhum, else ~/.cache/auditoryhum)")
    parser.add_argument("--no_cache", action="store_true", help="neither read nor write the text-embedding cache")


def _clips(n):
    return f"{n} clip has" if n == 1 else f"{n} clips have"


def _named(paths):
    shown = ", ".join(paths[:_MAX_NAMED])
    return shown + (f" and {len(paths) - _MAX_NAMED} more" if len(paths) > _MAX_NAMED else "")


def run(args, name):
    import numpy as np

    from auditoryhum.console import note, progress_enabled, warn
    from auditoryhum.errors import UserError
    from auditoryhum.io.artefacts import ScoreRow, check_aligned, load_matrix, read_label_file, write_scores
    from auditoryhum.io.audio import expand_glob
    from auditoryhum.io.text_cache import TextEmbeddingCache, default_cache_dir
    from auditoryhum.labels import split_candidates
    from auditoryhum.models.text_embed import (
        CLAP_TEXT_NAMESPACE,
        ClapTextEncoder,
        clap_model_identity,
        embed_distinct_cached,
        unique_texts,
    )
    from auditoryhum.scoring import mean_score, top_labels

    if args.batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {args.batch_size}")
    paths = expand_glob(args.filedir)
    lines = read_label_file(args.text_label_csv)
    clips = f"--filedir {args.filedir!r}"
    check_aligned(clips, len(paths), f"label file {args.text_label_csv}", len(lines))
    audio = load_matrix(args.clap_npy, require_finite=False)
    check_aligned(clips, len(paths), f"--clap_npy {args.clap_npy} (rows)", audio.shape[0])
    if audio.dtype.kind != "f":
        audio = audio.astype(np.float32)

    candidates = [split_candidates(line) for line in lines]
    distinct, _ = unique_texts([c for clip in candidates for c in clip])

    # Loaded only if some candidate is not cached: a rerun on known labels needs no model.
    from auditoryhum.models.loader import check_model_type

    check_model_type(args.clap_model, "--clap_model", ("clap",), "a CLAP model")
    encoder = None

    def encode(texts):
        nonlocal encoder
        from auditoryhum.models.device import resolve_device

        device = resolve_device(args.device)
        note(f"device {device}")
        encoder = ClapTextEncoder.load(args.clap_model, device)
        return encoder.encode(texts, args.batch_size, show_progress=progress_enabled())

    cache = None
    if not args.no_cache:
        root = args.cache_dir or default_cache_dir()
        cache = TextEmbeddingCache(root, CLAP_TEXT_NAMESPACE, clap_model_identity(args.clap_model))
    text = embed_distinct_cached(distinct, encode, cache)
    note(
        f"{len(distinct)} distinct candidate texts for {len(lines)} clips: "
        f"{text.encoded} encoded, {text.cached} from the cache"
    )
    if distinct and text.rows.shape[1] != audio.shape[1]:
        raise UserError(
            f"--clap_npy {args.clap_npy} holds {audio.shape[1]}-d rows but --clap_model {args.clap_model} gives "
            f"{text.rows.shape[1]}-d text embeddings; make the audio embeddings with the same CLAP model"
        )

    kept = top_labels(audio, candidates, {t: i for i, t in enumerate(distinct)}, text.rows)
    no_candidate = [p for p, c in zip(paths, candidates) if not c]
    no_audio = [p for p, c, row in zip(paths, candidates, audio) if c and not np.all(np.isfinite(row))]
    if no_candidate:
        warn(f"{_clips(len(no_candidate))} no usable candidate label (empty label, score nan): {_named(no_candidate)}")
    if no_audio:
        warn(f"{_clips(len(no_audio))} no audio embedding (NaN row in --clap_npy; empty label, score nan): {_named(no_audio)}")

    write_scores(args.top_label_scores_csv, [ScoreRow(i, p, k.label, k.score) for i, (p, k) in enumerate(zip(paths, kept), start=1)])
    print(f"Mean CLAP score: {mean_score([k.score for k in kept])}")
    return 0

"""auditoryhum cache: what the cache folder holds; prune or clear it.

Without options it lists the folder's array cache by kind (t-SNE layouts, spectral embeddings,
Ward trees, distances, silhouettes, k-means labels) and its text embeddings by model, with sizes
and the array cache's limit. ``--max_size`` removes the least recently used array entries down to
a size; ``--clear`` removes every entry of both caches. Everything removed is recomputed when
next needed (:mod:`auditoryhum.io.cache_folder`); files the caches did not write are never touched.
"""


def add_arguments(parser, name):
    parser.add_argument("--cache_dir", default=None,
                        help="the cache folder (default: $XDG_CACHE_HOME/auditoryhum, else ~/.cache/auditoryhum)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--max_size", default=None,
                        help="remove the least recently used array entries until the array cache is at most this "
                             "size (e.g. 500M, 2G; K, M, G, T are powers of 1024)")
    action.add_argument("--clear", action="store_true", help="remove every array entry and text embedding")
    parser.add_argument("--dry_run", action="store_true", help="with --max_size or --clear: only say what would be removed")


def run(args, name):
    from auditoryhum.defaults import ARRAY_CACHE_MAX_SIZE_ENV
    from auditoryhum.io import cache_folder
    from auditoryhum.io.array_cache import size_text
    from auditoryhum.validation import byte_size

    would = "would remove" if args.dry_run else "removed"
    if args.max_size is not None:
        limit = byte_size(args.max_size, "max_size")
        removed = cache_folder.prune(limit, args.cache_dir, dry_run=args.dry_run)
        print(f"{would} {len(removed)} array entr{'y' if len(removed) == 1 else 'ies'} "
              f"({size_text(sum(e.size for e in removed))}), least recently used first, to bring the array cache "
              f"to at most {size_text(limit)}")
    elif args.clear:
        arrays, shards = cache_folder.clear(args.cache_dir, dry_run=args.dry_run)
        print(f"{would} {len(arrays)} array entr{'y' if len(arrays) == 1 else 'ies'} "
              f"({size_text(sum(e.size for e in arrays))}) and {len(shards)} text-embedding shard(s)")
    summary = cache_folder.summarise(args.cache_dir)
    print(f"cache folder: {summary.root}")
    limit = "no limit" if summary.max_bytes is None else f"limit {size_text(summary.max_bytes)}"
    print(f"  array cache: {sum(n for n, _ in summary.arrays.values())} entries, {size_text(summary.array_bytes)} "
          f"({limit}; ${ARRAY_CACHE_MAX_SIZE_ENV} sets it)")
    for kind, (count, size) in sorted(summary.arrays.items()):
        print(f"    {kind}: {count} entr{'y' if count == 1 else 'ies'}, {size_text(size)}")
    if summary.stale_partials:
        print(f"    {summary.stale_partials} temporary file(s) of killed writes (removed by --max_size)")
    print(f"  text embeddings: {sum(n for n, _ in summary.text.values())} shard(s), {size_text(summary.text_bytes)}")
    for model, (count, size) in sorted(summary.text.items()):
        print(f"    {model}: {count} shard(s), {size_text(size)}")
    return 0

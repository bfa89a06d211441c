"""cluster_sweep.py: the silhouette of every k in one process, the penalised choice of k, the lambda path.

Writes the sweep table (``k,silhouette,adjusted,calinski_harabasz,davies_bouldin,singletons``),
optionally a plot of both curves and the cluster ids at the chosen k, and prints the chosen
k, its scores, the k of the silhouette maximum and the lambda path.
"""

# The defaults live here so that --help needs no numpy; tests check they equal
# auditoryhum.sweep.DEFAULT_*.
K_MIN = 2
K_MAX = 840
PENALTY = 0.001
# Share of MemAvailable the sweep plans to use: the rest is headroom for the interpreter,
# the input array and other processes.
MEMORY_SHARE = 0.85


def add_arguments(parser, name):
    parser.add_argument("--cluster_npy", required=True, help="input .npy, one row per clip")
    parser.add_argument(
        "--algorithm",
        choices=("ag", "kmeans", "spectral"),
        default="ag",
        help="ag: one Ward tree cut at every k (fast); kmeans, spectral: one fit per k as the single-k scripts do (default: ag)",
    )
    parser.add_argument("--k_min", type=int, default=K_MIN, help=f"smallest k (default {K_MIN})")
    parser.add_argument("--k_max", type=int, default=K_MAX, help=f"largest k (default {K_MAX}, lowered to rows - 1 with a note)")
    parser.add_argument(
        "--penalty",
        type=float,
        default=PENALTY,
        metavar="LAMBDA",
        help=f"lambda in adjusted(k) = silhouette(k) - lambda * k (default {PENALTY}, provisional: the paper's "
        "AIC-tied formula is not published; see the printed lambda path for every defensible k)",
    )
    parser.add_argument("--sweep_csv", required=True, help="output: k,silhouette,adjusted,calinski_harabasz,davies_bouldin,singletons per k")
    parser.add_argument("--png_plot", help="output: silhouette and adjusted score against k, chosen k marked (PNG)")
    parser.add_argument("--label_csv", help="output: cluster ids at the chosen k, exactly as the single-k script writes them")
    parser.add_argument(
        "--sample",
        type=int,
        metavar="M",
        help="approximate: silhouette on a stratified sample of M rows (seed 100), for data whose distance matrix does not fit in memory",
    )


def available_memory_bytes():
    """MemAvailable from /proc/meminfo in bytes, or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _lambda_text(step):
    import math

    if math.isinf(step.lambda_high):
        return f"lambda >= {step.lambda_low:.6g}"
    if step.lambda_low == step.lambda_high:
        return f"lambda = {step.lambda_low:.6g} only (tie)"
    return f"{step.lambda_low:.6g} <= lambda <= {step.lambda_high:.6g}"


def run(args, name):
    import math

    import numpy as np

    from auditoryhum import sweep as sw
    from auditoryhum.clustering import ALGORITHM_NAMES, cluster
    from auditoryhum.console import note, progress, warn
    from auditoryhum.errors import UserError
    from auditoryhum.io.artefacts import load_matrix, write_cluster_ids, write_sweep_csv
    from auditoryhum.plots import save_sweep_plot

    if not math.isfinite(args.penalty) or args.penalty < 0:
        raise UserError(f"--penalty must be a finite number >= 0 (a granularity penalty), got {args.penalty}")
    X = load_matrix(args.cluster_npy)
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    n = X.shape[0]
    if n < 3:
        raise UserError(f"{args.cluster_npy} has {n} row(s); a k sweep needs at least 3 (k from 2 to rows - 1)")
    if args.k_min > n - 1:
        raise UserError(f"--k_min {args.k_min} is not smaller than the number of rows ({n}) in {args.cluster_npy}; choose k_min <= {n - 1}")
    k_max = args.k_max
    if k_max > n - 1:
        note(f"--k_max {k_max} lowered to {n - 1}: {args.cluster_npy} has {n} rows and k must stay below that")
        k_max = n - 1
    if args.k_min > k_max:
        raise UserError(f"--k_min {args.k_min} is larger than --k_max {k_max}; choose k_min <= k_max (and below the {n} rows)")
    available = available_memory_bytes()
    budget = None if available is None else available * MEMORY_SHARE
    if args.sample is not None:
        note(f"silhouette on a stratified sample of {args.sample} rows (seed 100): approximate")

    def bar(iterable):
        return progress(iterable, desc=f"{args.algorithm} k sweep", total=k_max - args.k_min + 1, unit="k")

    result = sw.sweep(args.algorithm, X, args.k_min, k_max, sample=args.sample, memory_budget=budget, progress=bar)
    for message in result.notes:
        note(message)
    for message in result.warnings:
        warn(message)

    adjusted = sw.adjusted_scores(result.ks, result.silhouette, args.penalty)
    chosen = sw.choose_k(result.ks, result.silhouette, args.penalty)
    path = sw.lambda_path(result.ks, result.silhouette)
    write_sweep_csv(
        args.sweep_csv,
        [result.ks, result.silhouette, adjusted, result.calinski_harabasz, result.davies_bouldin, result.singletons],
    )
    if chosen is not None and args.label_csv:
        labelled = cluster(args.algorithm, X, n_clusters=chosen)
        for message in labelled.warnings:
            warn(message)
        write_cluster_ids(args.label_csv, labelled.labels)
    if args.png_plot:
        title = f"{ALGORITHM_NAMES[args.algorithm]}: silhouette sweep, k = {result.ks[0]}..{result.ks[-1]}"
        if result.sample:
            title += f" (sample of {result.sample})"
        save_sweep_plot(result.ks, result.silhouette, adjusted, chosen, args.penalty, title, args.png_plot)

    if chosen is None:
        print("Chosen k none (the silhouette is undefined for every k)")
        if args.label_csv:
            raise UserError(f"no k could be chosen, so {args.label_csv} was not written; the sweep table {args.sweep_csv} was")
        return 0
    i = int(np.flatnonzero(result.ks == chosen)[0])
    best = int(np.nanargmax(result.silhouette))
    print(f"Chosen k {chosen}")
    print(f"Silhouette Score {float(result.silhouette[i])!r}")
    print(f"Adjusted Score {float(adjusted[i])!r} (lambda {args.penalty:g})")
    print(f"Silhouette maximum at k {int(result.ks[best])} (Silhouette Score {float(result.silhouette[best])!r})")
    print("Lambda path: every k optimal for some lambda >= 0")
    for step in path:
        print(f"k {step.k}, Silhouette Score {step.silhouette!r}, {_lambda_text(step)}")
    return 0

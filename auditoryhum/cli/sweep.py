"""cluster_sweep.py: the silhouette of every k in one process, the penalised choice of k, the lambda path.

Parses the flags, calls :func:`auditoryhum.stages.sweep.sweep` and prints the chosen k, its
scores, the k of the silhouette maximum and the lambda path. The sweep table gets a decision
file beside it (``<sweep_csv minus .csv>_decision.json``) that the report reads.
"""

from auditoryhum.recipe import SWEEP_K_MAX as K_MAX, SWEEP_K_MIN as K_MIN, SWEEP_PENALTY as PENALTY, SEED


def add_arguments(parser, name):
    from auditoryhum.cli.cluster import add_cache_arguments

    parser.add_argument("--cluster_npy", required=True, help="input .npy, one row per clip (all-NaN rows: no label, left out)")
    parser.add_argument(
        "--algorithm",
        choices=("ag", "kmeans", "spectral", "spec_ag"),
        default="ag",
        help="ag: one Ward tree cut at every k (fast); spec_ag: the same on the 2-D spectral embedding; "
        "kmeans, spectral: one fit per k as the single-k scripts do (default: ag)",
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
    parser.add_argument("--sweep_csv", required=True, help="output: k,silhouette,adjusted,calinski_harabasz,davies_bouldin,singletons "
                        "per k, and beside it <sweep_csv minus .csv>_decision.json (chosen k, penalty, lambda path)")
    parser.add_argument("--png_plot", help="output: silhouette and adjusted score against k, chosen k marked (PNG)")
    parser.add_argument("--label_csv", help="output: cluster ids at the chosen k, exactly as the single-k script writes them")
    parser.add_argument(
        "--sample",
        type=int,
        metavar="M",
        help=f"approximate: silhouette on a stratified sample of M rows (seed {SEED}; M > k_max), for data whose "
        "distance matrix does not fit in memory",
    )
    add_cache_arguments(parser)


def _lambda_text(step):
    import math

    if math.isinf(step.lambda_high):
        return f"lambda >= {step.lambda_low:.6g}"
    if step.lambda_low == step.lambda_high:
        return f"lambda = {step.lambda_low:.6g} only (tie)"
    return f"{step.lambda_low:.6g} <= lambda <= {step.lambda_high:.6g}"


def run(args, name):
    from auditoryhum.stages.sweep import sweep

    result = sweep(
        args.cluster_npy, args.sweep_csv, args.png_plot, args.label_csv, algorithm=args.algorithm,
        k_min=args.k_min, k_max=args.k_max, penalty=args.penalty, sample=args.sample,
        cache_dir=args.cache_dir, no_cache=args.no_cache,
    )
    if result.chosen_k is None:
        print("Chosen k none (the silhouette is undefined for every k)")
        return 0
    print(f"Chosen k {result.chosen_k}")
    print(f"Silhouette Score {result.chosen_silhouette!r}")
    print(f"Adjusted Score {result.chosen_adjusted!r} (lambda {result.penalty:g})")
    print(f"Silhouette maximum at k {result.silhouette_max_k} (Silhouette Score {result.silhouette_max!r})")
    print("Lambda path: every k optimal for some lambda >= 0")
    for step in result.lambda_path:
        print(f"k {step.k}, Silhouette Score {step.silhouette!r}, {_lambda_text(step)}")
    return 0

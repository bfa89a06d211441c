"""cluster_kmeans.py, cluster_ag.py, cluster_spectral.py, cluster_spec_ag.py, cluster_hdbscan.py.

One clustering of the rows of an .npy file with the paper's hyper-parameters
(:func:`auditoryhum.stages.cluster.cluster`): writes the cluster ids, draws the t-SNE
scatter, prints ``Silhouette Score <x>``.
"""

from auditoryhum.cli.options import add_tsne_argument

ALGORITHM_OF_COMMAND = {
    "cluster-kmeans": "kmeans",
    "cluster-ag": "ag",
    "cluster-spectral": "spectral",
    "cluster-spec-ag": "spec_ag",
    "cluster-hdbscan": "hdbscan",
}


def add_cache_arguments(parser):
    """``--no_cache`` and ``--cache_dir`` of the clustering commands."""
    parser.add_argument("--cache_dir", help="cache of the t-SNE layout, spectral embedding and Ward tree "
                        "(default: $XDG_CACHE_HOME/auditoryhum, else ~/.cache/auditoryhum)")
    parser.add_argument("--no_cache", action="store_true", help="neither read nor write that cache (same results, slower)")


def add_arguments(parser, name):
    parser.add_argument("--cluster_npy", required=True, help="input .npy, one row per clip (all-NaN rows: no label, id -2)")
    if ALGORITHM_OF_COMMAND[name] == "hdbscan":
        parser.add_argument("--min_cluster_size", type=int, required=True, help="HDBSCAN minimum cluster size (>= 2)")
    else:
        parser.add_argument("--n_clusters", type=int, required=True, help="number of clusters k (1 <= k < rows)")
    parser.add_argument("--label_csv", required=True, help="output: one integer cluster id per line (HDBSCAN noise: -1, no label: -2)")
    parser.add_argument("--png_plot", required=True, help="output: t-SNE scatter of the rows coloured by cluster (PNG)")
    add_tsne_argument(parser)
    add_cache_arguments(parser)


def run(args, name):
    from auditoryhum.stages.cluster import cluster

    algorithm = ALGORITHM_OF_COMMAND[name]
    result = cluster(
        args.cluster_npy, args.label_csv, args.png_plot, algorithm=algorithm,
        n_clusters=getattr(args, "n_clusters", None), min_cluster_size=getattr(args, "min_cluster_size", None),
        cache_dir=args.cache_dir, no_cache=args.no_cache, tsne=args.tsne,
    )
    if algorithm == "hdbscan":
        n = len(result.labels) - result.n_no_label
        share = 100.0 * result.n_noise / n
        print(f"HDBSCAN found {result.n_clusters} clusters; {result.n_noise} of {n} points are noise ({share:.1f}%)")
    print("Silhouette Score nan" if result.silhouette is None else f"Silhouette Score {result.silhouette}")
    return 0

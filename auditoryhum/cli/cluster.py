"""cluster_kmeans.py, cluster_ag.py, cluster_spectral.py, cluster_hdbscan.py.

One clustering of the rows of an .npy file with the paper's hyper-parameters: writes the
cluster ids, draws the t-SNE scatter, prints ``Silhouette Score <x>``.
"""

ALGORITHM_OF_COMMAND = {
    "cluster-kmeans": "kmeans",
    "cluster-ag": "ag",
    "cluster-spectral": "spectral",
    "cluster-hdbscan": "hdbscan",
}


def add_arguments(parser, name):
    parser.add_argument("--cluster_npy", required=True, help="input .npy, one row per clip")
    if ALGORITHM_OF_COMMAND[name] == "hdbscan":
        parser.add_argument("--min_cluster_size", type=int, required=True, help="HDBSCAN minimum cluster size (>= 2)")
    else:
        parser.add_argument("--n_clusters", type=int, required=True, help="number of clusters k (1 <= k < rows)")
    parser.add_argument("--label_csv", required=True, help="output: one integer cluster id per line (HDBSCAN noise: -1)")
    parser.add_argument("--png_plot", required=True, help="output: t-SNE scatter of the rows coloured by cluster (PNG)")


def run(args, name):
    import numpy as np

    from auditoryhum.clustering import ALGORITHM_NAMES, cluster, silhouette, tsne_2d
    from auditoryhum.console import note, warn
    from auditoryhum.io.artefacts import load_matrix, write_cluster_ids
    from auditoryhum.plots import cluster_plot_title, save_cluster_scatter

    algorithm = ALGORITHM_OF_COMMAND[name]
    X = load_matrix(args.cluster_npy)
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    result = cluster(
        algorithm,
        X,
        n_clusters=getattr(args, "n_clusters", None),
        min_cluster_size=getattr(args, "min_cluster_size", None),
    )
    for message in result.warnings:
        warn(message)
    score = silhouette(result.space, result.labels)

    # Labels first: they are the result; the plot is a view of it.
    write_cluster_ids(args.label_csv, result.labels)
    tsne_notes = []
    points = tsne_2d(X, tsne_notes)
    for message in tsne_notes:
        note(message)
    title = cluster_plot_title(ALGORITHM_NAMES[algorithm], result.requested_k, result.n_clusters, result.n_noise)
    save_cluster_scatter(points, result.labels, title, args.png_plot)

    if algorithm == "hdbscan":
        share = 100.0 * result.n_noise / len(result.labels)
        print(f"HDBSCAN found {result.n_clusters} clusters; {result.n_noise} of {len(result.labels)} points are noise ({share:.1f}%)")
    if score is None:
        warn(
            f"the clustering has {len(set(result.labels.tolist()))} distinct label(s) over {len(result.labels)} rows, "
            f"so the silhouette is undefined; the labels and plot were still written"
        )
        print("Silhouette Score nan")
    else:
        print(f"Silhouette Score {score}")
    return 0

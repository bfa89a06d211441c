"""auditoryhum.clustering.silhouette against scikit-learn: the same bits on every route."""

import numpy as np
import pytest
import sklearn
from sklearn.metrics import silhouette_samples as sk_samples
from sklearn.metrics import silhouette_score as sk_score
from sklearn.metrics.pairwise import euclidean_distances as sk_euclidean

from auditoryhum.clustering import silhouette as sil


def repeated_rows(n, n_distinct, dim, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    distinct = rng.normal(size=(n_distinct, dim))
    pick = np.concatenate([np.arange(n_distinct), rng.integers(0, n_distinct, n - n_distinct)])
    rng.shuffle(pick)
    return distinct[pick].astype(dtype), pick


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 3), (7, 1), (300, 5), (1500, 40)])
def test_euclidean_distances_bitwise(dtype, shape):
    rng = np.random.default_rng(shape[0])
    X = (rng.normal(size=shape) * 3).astype(dtype)
    Y = rng.normal(size=(211, shape[1])).astype(dtype)
    np.testing.assert_array_equal(sil.euclidean_distances(X), sk_euclidean(X))
    np.testing.assert_array_equal(sil.euclidean_distances(X, Y), sk_euclidean(X, Y))
    assert sil.euclidean_distances(X).dtype == sk_euclidean(X).dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("working_memory", [1024, 1, 3])
@pytest.mark.parametrize("n_labels", [2, 7, 60])
def test_silhouette_bitwise_single_and_chunked(dtype, working_memory, n_labels):
    rng = np.random.default_rng(n_labels)
    X = rng.normal(size=(900, 6)).astype(dtype)
    X[::5] = X[1::5]  # duplicates
    labels = rng.integers(0, n_labels, 900) * 3 - 5  # non-contiguous, negative ids
    labels[0] = 999  # a one-row cluster
    with sklearn.config_context(working_memory=working_memory):
        want_samples = sk_samples(X, labels)
        want = sk_score(X, labels)
    got_samples = sil.silhouette_samples(X, labels, working_memory_mib=working_memory)
    assert got_samples.dtype == want_samples.dtype
    np.testing.assert_array_equal(got_samples, want_samples)
    assert sil.silhouette_score(X, labels, working_memory_mib=working_memory) == want


def test_two_dimensional_embedding_like_spectral():
    # The spectral stages measure the silhouette in a float64 2-D embedding.
    rng = np.random.default_rng(3)
    E = rng.normal(size=(2500, 2)) * 1e-3
    labels = (E[:, 0] > 0).astype(int) + 2 * (E[:, 1] > 0)
    for wm in (1024, 5):
        with sklearn.config_context(working_memory=wm):
            assert sil.silhouette_score(E, labels, working_memory_mib=wm) == sk_score(E, labels)


@pytest.mark.parametrize("n_columns", [1, 2])
@pytest.mark.parametrize("working_memory", [1024, 1, 0.06])
@pytest.mark.parametrize("block_bytes", [2 * 2**20, 3 * 8 * 1001])
def test_float64_embeddings_in_blocks_are_sklearns_bits(monkeypatch, n_columns, working_memory, block_bytes):
    """The 1-/2-D float64 route builds the distances a few rows at a time: the same bits as
    scikit-learn's whole chunk, for one chunk (its symmetric product), many chunks, chunks of
    one row (0.06 MiB: 7 rows per chunk, 1002 = 143 x 7 + 1) and blocks with a one-row rest."""
    monkeypatch.setattr(sil, "FLOAT64_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(n_columns)
    E = rng.normal(size=(1002, n_columns)) * 1e-3
    E[1::7] = E[3::7]  # duplicates
    labels = rng.integers(0, 9, 1002)
    labels[5] = 50  # a one-row cluster
    with sklearn.config_context(working_memory=working_memory):
        want_samples = sk_samples(E, labels)
        want = sk_score(E, labels)
    np.testing.assert_array_equal(sil.silhouette_samples(E, labels, working_memory_mib=working_memory), want_samples)
    assert sil.silhouette_score(E, labels, working_memory_mib=working_memory) == want


def test_row_blocks_never_leave_a_single_row():
    assert [(b.start, b.stop) for b in sil._row_blocks(7, 3)] == [(0, 3), (3, 7)]
    assert [(b.start, b.stop) for b in sil._row_blocks(8, 3)] == [(0, 3), (3, 6), (6, 8)]
    assert [(b.start, b.stop) for b in sil._row_blocks(1, 3)] == [(0, 1)]
    assert [(b.start, b.stop) for b in sil._row_blocks(4, 2)] == [(0, 2), (2, 4)]


def test_integer_rows_are_computed_in_float64_like_sklearn():
    rng = np.random.default_rng(4)
    X = rng.integers(0, 5, size=(200, 3))
    labels = rng.integers(0, 3, 200)
    assert sil.silhouette_score(X, labels) == sk_score(X, labels)


@pytest.mark.slow  # scikit-learn's silhouette at the paper's chunking: seconds to tens of seconds here
def test_distinct_route_taken_and_bitwise_at_the_papers_chunking():
    # 14,400 rows chunk at the default working memory: the distinct route applies.
    X, pick = repeated_rows(14400, 300, 8, seed=9)
    labels = pick % 17
    got = sil.silhouette_score_distinct(X, labels)
    assert got is not None
    assert got == sk_score(X, labels)
    assert sil.silhouette_score(X, labels) == got


@pytest.mark.slow  # scikit-learn's silhouette on every row: seconds to tens of seconds here
def test_distinct_route_steps_aside_where_it_would_differ():
    X, pick = repeated_rows(5000, 200, 4, seed=2)
    labels = pick % 5
    # single chunk
    assert sil.silhouette_score_distinct(X, labels) is None
    # copies of a row in different clusters
    split = labels.copy()
    split[np.flatnonzero(pick == pick[0])[1]] = 4 if labels[0] != 4 else 3
    assert sil.silhouette_score_distinct(X, split, working_memory_mib=8) is None
    # too many distinct rows, float64 rows
    Y = np.random.default_rng(0).normal(size=(5000, 4)).astype(np.float32)
    assert sil.silhouette_score_distinct(Y, labels, working_memory_mib=8) is None
    assert sil.silhouette_score_distinct(X.astype(np.float64), labels, working_memory_mib=8) is None
    with sklearn.config_context(working_memory=8):
        assert sil.silhouette_score(X, split, working_memory_mib=8) == sk_score(X, split)


@pytest.mark.slow
def test_a_ward_clustering_at_a_new_k_on_a_warm_cache_imports_no_sklearn(tmp_path):
    # scikit-learn's import alone costs seconds; a new k on a known input needs nothing from it.
    import subprocess
    import sys

    X, _ = repeated_rows(400, 60, 8, seed=1)
    np.save(tmp_path / "rows.npy", X)
    code = """
import sys
from auditoryhum.stages.cluster import cluster
r = cluster({npy!r}, {out!r}, {png!r}, algorithm="ag", n_clusters={k}, cache_dir={cache!r})
print(r.silhouette, "sklearn" in sys.modules)
"""
    def run(k):
        src = code.format(npy=str(tmp_path / "rows.npy"), out=str(tmp_path / f"ids{k}.csv"),
                          png=str(tmp_path / f"p{k}.png"), k=k, cache=str(tmp_path / "cache"))
        proc = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, check=True)
        value, imported = proc.stdout.split()
        return float(value), imported == "True"

    cold_value, cold_imported = run(5)
    assert cold_imported  # the first run computes the t-SNE layout with scikit-learn
    value, imported = run(7)
    assert not imported
    from sklearn.cluster import AgglomerativeClustering

    labels = AgglomerativeClustering(n_clusters=7, linkage="ward").fit_predict(X)
    assert value == sk_score(X, labels)
    assert np.loadtxt(tmp_path / "ids7.csv", dtype=int).tolist() == labels.tolist()


@pytest.mark.parametrize("k, dtype", [(3, np.float64), (40, np.float64), (1, np.float32), (25, np.float32)])
def test_the_cluster_scatter_is_the_plain_matplotlib_figure(tmp_path, k, dtype):
    # save_cluster_scatter builds each cluster's collection directly and skips matplotlib's
    # repeated autoscaling and measuring pass; the PNG must be byte for byte what the plain
    # per-cluster ax.scatter and savefig(bbox="tight") give (legend or not, float32 or 64).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from auditoryhum.plots import save_cluster_scatter

    rng = np.random.default_rng(k)
    points = (rng.normal(size=(1200, 2)) * 7).astype(dtype)
    labels = rng.integers(-1, k, 1200)
    save_cluster_scatter(points, labels, f"Agglomerative, k = {k}", str(tmp_path / "ours.png"))
    fig, ax = plt.subplots(figsize=(12, 12))
    clusters = np.unique(labels)
    cmap = plt.get_cmap("tab20" if clusters.size > 10 else "tab10")
    for j, c in enumerate(clusters):
        ax.scatter(points[labels == c, 0], points[labels == c, 1], s=36, alpha=0.85, linewidths=0,
                   color="lightgrey" if c < 0 else cmap(j % cmap.N), label="noise" if c < 0 else f"cluster {c}")
    if clusters.size <= 20:
        ax.legend(loc="best", fontsize=9, markerscale=1.5)
    ax.set_title(f"Agglomerative, k = {k}", fontsize=14)
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    fig.savefig(tmp_path / "plain.png", format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    assert (tmp_path / "ours.png").read_bytes() == (tmp_path / "plain.png").read_bytes()


@pytest.mark.slow  # full distance matrices: seconds to tens of seconds here
def test_the_distinct_rows_distances_are_cached_per_input_and_give_the_same_bits(tmp_path):
    from auditoryhum.io.array_cache import ArrayCache

    X, pick = repeated_rows(14400, 300, 8, seed=9)
    cache = ArrayCache(tmp_path)
    first = sil.silhouette_score_distinct(X, pick % 17, cache=cache)
    assert cache.misses == 1 and cache.hits == 0
    entries = list((tmp_path / "arrays" / "distinct-distances").glob("*.npy"))
    assert len(entries) == 1
    for k in (17, 5, 40):  # other clusterings of the same input read the matrix back
        got = sil.silhouette_score_distinct(X, pick % k, cache=cache)
        assert got == sk_score(X, pick % k) == sil.silhouette_score_distinct(X, pick % k), k
    assert first == sk_score(X, pick % 17)
    assert cache.misses == 1 and cache.hits == 3

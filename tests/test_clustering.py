"""Clustering: the paper's estimators exactly, and the cluster_*.py scripts end to end."""

import numpy as np
import pytest

from auditoryhum.clustering import algorithms as clustering
from auditoryhum.errors import UserError
from conftest import assert_one_line_error, run_script


def blobs(n_per=12, centres=((0, 0, 0), (10, 0, 0), (0, 10, 0)), seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    X = np.concatenate([np.asarray(c, float) + scale * rng.standard_normal((n_per, len(c))) for c in centres])
    truth = np.repeat(np.arange(len(centres)), n_per)
    return X.astype(np.float32), truth


def same_partition(a, b):
    """True when two labelings group the rows identically (up to renaming)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_estimators_match_sklearn_called_directly():
    from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
    from sklearn.manifold import SpectralEmbedding
    from sklearn.metrics import silhouette_score

    X, _ = blobs(n_per=20, seed=3, scale=2.0)
    k = 4
    km = KMeans(n_clusters=k, init="k-means++", max_iter=300, random_state=100).fit_predict(X)
    np.testing.assert_array_equal(clustering.kmeans(X, k).labels, km)
    ag = AgglomerativeClustering(n_clusters=k, metric="euclidean", linkage="ward").fit_predict(X)
    np.testing.assert_array_equal(clustering.agglomerative(X, k).labels, ag)
    emb = SpectralEmbedding(n_components=2, affinity="nearest_neighbors", n_neighbors=30, random_state=100).fit_transform(X)
    sp = KMeans(n_clusters=k, init="k-means++", max_iter=300, random_state=100).fit_predict(emb)
    result = clustering.spectral(X, k)
    np.testing.assert_array_equal(result.labels, sp)
    np.testing.assert_allclose(result.space, emb)
    assert clustering.silhouette(result.space, result.labels) == silhouette_score(emb, sp, metric="euclidean")
    hd = HDBSCAN(min_cluster_size=5, min_samples=2, cluster_selection_epsilon=0.0001, copy=True).fit_predict(X)
    np.testing.assert_array_equal(clustering.hdbscan(X, 5).labels, hd)


@pytest.mark.parametrize("algorithm", ["kmeans", "ag", "spectral"])
def test_well_separated_blobs_are_recovered(algorithm):
    X, truth = blobs(n_per=35)
    result = clustering.cluster(algorithm, X, n_clusters=3)
    assert same_partition(result.labels, truth)


def test_hdbscan_recovers_blobs_and_flags_outlier():
    X, truth = blobs(n_per=15)
    X = np.vstack([X, [[50, 50, 50]]]).astype(np.float32)
    result = clustering.hdbscan(X, 5)
    assert result.labels[-1] == -1 and result.n_noise == 1 and result.n_clusters == 3
    assert same_partition(result.labels[:-1], truth)


def test_silhouette_undefined_cases():
    X, _ = blobs(n_per=3)
    assert clustering.silhouette(X, np.zeros(len(X), int)) is None
    assert clustering.silhouette(X, np.arange(len(X))) is None


def test_errors():
    X, _ = blobs(n_per=2)
    with pytest.raises(UserError, match=r"^n_clusters 6 is not smaller than the number of rows \(6\)"):
        clustering.kmeans(X, 6)
    with pytest.raises(UserError, match="at least 1"):
        clustering.agglomerative(X, 0)
    with pytest.raises(UserError, match="clustering needs at least 2"):
        clustering.agglomerative(X[:1], 1)
    with pytest.raises(UserError, match="NaN or inf"):
        clustering.kmeans(np.array([[0.0], [np.nan], [1.0]]), 2)
    with pytest.raises(UserError, match="all 6 points as noise"):
        clustering.hdbscan(np.arange(6, dtype=float)[:, None] ** 3, 6)


def test_small_inputs_get_fallbacks_with_notes():
    X, _ = blobs(n_per=4)  # 12 rows < perplexity 35 and < 30 neighbours
    notes = []
    points = clustering.tsne_2d(X, notes)
    assert points.shape == (12, 2) and "perplexity lowered from 35" in notes[0]
    result = clustering.spectral(X, 3)
    assert any("n_neighbors=11" in n for n in result.warnings)


def test_kmeans_reports_fewer_distinct_clusters_than_asked(tmp_path):
    from auditoryhum.io.array_cache import ArrayCache

    X = np.array([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 5)
    result = clustering.kmeans(X, 3)
    assert result.n_clusters == 2
    # Said once, in the toolkit's words (scikit-learn's ConvergenceWarning saying the same is
    # dropped), and the same whether the fit ran or came from the cache.
    assert result.warnings == ["asked for 3 clusters but only 2 distinct clusters were found (duplicate rows)"]
    cache = ArrayCache(str(tmp_path / "cache"))
    cold = clustering.kmeans(X, 3, cache=cache)
    warm = clustering.kmeans(X, 3, cache=cache)
    assert cold.warnings == warm.warnings == result.warnings
    assert cold.labels.tolist() == warm.labels.tolist() == result.labels.tolist()


# --- the scripts ------------------------------------------------------------------------


@pytest.fixture
def blob_npy(tmp_path):
    X, truth = blobs(n_per=40)  # more than the spectral embedding's 30 neighbours per blob
    path = tmp_path / "x.npy"
    np.save(path, X)
    return path, X, truth


@pytest.mark.slow
@pytest.mark.parametrize("script", ["cluster_kmeans.py", "cluster_ag.py", "cluster_spectral.py"])
def test_cluster_script_end_to_end(tmp_path, blob_npy, script):
    from sklearn.metrics import silhouette_score

    path, X, truth = blob_npy
    labels_csv, png = tmp_path / "out" / "labels.csv", tmp_path / "out" / "plot.png"
    proc = run_script(script, "--cluster_npy", path, "--n_clusters", 3, "--label_csv", labels_csv, "--png_plot", png)
    assert proc.returncode == 0, proc.stderr
    labels = np.array([int(x) for x in labels_csv.read_text().splitlines()])
    assert same_partition(labels, truth)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = [line for line in proc.stdout.splitlines() if line.startswith("Silhouette Score ")]
    assert len(printed) == 1
    space = clustering.spectral(X, 3).space if script == "cluster_spectral.py" else X
    assert float(printed[0].split()[-1]) == pytest.approx(silhouette_score(space, labels), abs=1e-12)


@pytest.mark.slow
def test_hdbscan_script_reports_noise(tmp_path, blob_npy):
    path, X, truth = blob_npy
    X = np.vstack([X, [[40, 40, 40]]]).astype(np.float32)
    np.save(path, X)
    out = tmp_path / "h.csv"
    proc = run_script("cluster_hdbscan.py", "--cluster_npy", path, "--min_cluster_size", 5, "--label_csv", out, "--png_plot", tmp_path / "h.png")
    assert proc.returncode == 0, proc.stderr
    assert "HDBSCAN found 3 clusters; 1 of 121 points are noise (0.8%)" in proc.stdout
    assert out.read_text().splitlines()[-1] == "-1"
    assert (tmp_path / "h.png").exists()


@pytest.mark.slow
def test_single_label_clustering_writes_outputs_and_says_silhouette_undefined(tmp_path):
    X = np.vstack([np.zeros((8, 2)), np.ones((8, 2)) * 5])
    np.save(tmp_path / "x.npy", X)
    proc = run_script("cluster_kmeans.py", "--cluster_npy", tmp_path / "x.npy", "--n_clusters", 1,
                      "--label_csv", tmp_path / "l.csv", "--png_plot", tmp_path / "p.png")
    assert proc.returncode == 0, proc.stderr
    assert "Silhouette Score nan" in proc.stdout
    assert "silhouette is undefined" in proc.stderr
    assert (tmp_path / "l.csv").read_text() == "0\n" * 16 and (tmp_path / "p.png").exists()


@pytest.mark.slow
def test_k_not_smaller_than_rows_is_one_line_error_and_writes_nothing(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((5, 3)))
    proc = run_script("cluster_ag.py", "--cluster_npy", tmp_path / "x.npy", "--n_clusters", 5,
                      "--label_csv", tmp_path / "l.csv", "--png_plot", tmp_path / "p.png")
    assert_one_line_error(proc, "--n_clusters 5 is not smaller than the number of rows (5)")
    assert not (tmp_path / "l.csv").exists() and not (tmp_path / "p.png").exists()


@pytest.mark.slow
def test_partly_nan_rows_are_one_line_error(tmp_path):
    X = np.random.default_rng(0).standard_normal((10, 3))
    X[2, 1] = np.nan
    X[7, 0] = np.inf
    np.save(tmp_path / "x.npy", X)
    proc = run_script("cluster_spectral.py", "--cluster_npy", tmp_path / "x.npy", "--n_clusters", 2,
                      "--label_csv", tmp_path / "l.csv", "--png_plot", tmp_path / "p.png")
    assert_one_line_error(proc, "2 of 10 rows hold NaN or inf (rows 3, 8, 1-based)")
    assert not (tmp_path / "l.csv").exists()


@pytest.mark.slow
def test_all_noise_hdbscan_is_one_line_error(tmp_path):
    np.save(tmp_path / "x.npy", (np.arange(6, dtype=float) ** 3)[:, None])
    proc = run_script("cluster_hdbscan.py", "--cluster_npy", tmp_path / "x.npy", "--min_cluster_size", 6,
                      "--label_csv", tmp_path / "l.csv", "--png_plot", tmp_path / "p.png")
    assert_one_line_error(proc, "HDBSCAN labelled all 6 points as noise", "lower --min_cluster_size")
    assert not (tmp_path / "l.csv").exists()


@pytest.mark.slow
def test_too_few_rows_is_one_line_error(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3)))
    proc = run_script("cluster_kmeans.py", "--cluster_npy", tmp_path / "x.npy", "--n_clusters", 1,
                      "--label_csv", tmp_path / "l.csv", "--png_plot", tmp_path / "p.png")
    assert_one_line_error(proc, "has 1 row(s); clustering needs at least 2")


# --- rows without a label, degenerate input (issue 13 items 5, 9, 10) ---------------------


def _stage(tmp_path, algorithm, X, **options):
    from auditoryhum.stages.cluster import cluster

    np.save(tmp_path / "in.npy", X)
    key = "min_cluster_size" if algorithm == "hdbscan" else "n_clusters"
    options.setdefault(key, 3)
    return cluster(str(tmp_path / "in.npy"), str(tmp_path / "ids.csv"), None, algorithm=algorithm,
                   cache_dir=str(tmp_path / "cache"), **options)


@pytest.mark.parametrize("algorithm", ["kmeans", "ag", "spectral", "spec_ag", "hdbscan"])
def test_nan_rows_are_left_out_with_the_no_label_id(tmp_path, algorithm):
    from sklearn.metrics import silhouette_score

    X, truth = blobs(n_per=35)
    missing = [0, 17, 50, 104]
    X_nan = X.copy()
    X_nan[missing] = np.nan
    result = _stage(tmp_path, algorithm, X_nan)
    kept = np.setdiff1d(np.arange(len(X)), missing)
    alone = clustering.cluster(algorithm, X[kept], n_clusters=3, min_cluster_size=3)
    ids = np.array([int(x) for x in (tmp_path / "ids.csv").read_text().splitlines()])
    assert len(ids) == len(X) and clustering.NO_LABEL_CLUSTER == -2
    assert np.all(ids[missing] == -2)
    np.testing.assert_array_equal(ids[kept], alone.labels)  # exactly the clustering of the labelled rows
    assert result.n_no_label == 4 and result.n_rows == len(X)
    assert result.silhouette == silhouette_score(alone.space, alone.labels)
    notes = [n for n in result.notes if "NaN" in n]
    assert notes == ["4 of 105 rows are NaN (clips without a label): left out of clustering and the silhouette, cluster id -2"]


@pytest.mark.slow
def test_nan_rows_script_prints_the_published_lines(tmp_path):
    X, _ = blobs(n_per=12)
    X[[3, 30]] = np.nan
    np.save(tmp_path / "x.npy", X)
    proc = run_script("cluster_hdbscan.py", "--cluster_npy", tmp_path / "x.npy", "--min_cluster_size", 5,
                      "--label_csv", tmp_path / "l.csv", "--png_plot", tmp_path / "p.png", "--cache_dir", tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    assert "HDBSCAN found 3 clusters; 0 of 34 points are noise (0.0%)" in proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("Silhouette Score 0.")
    assert proc.stderr.count("rows are NaN") == 1
    ids = (tmp_path / "l.csv").read_text().splitlines()
    assert len(ids) == 36 and ids[3] == ids[30] == "-2"


@pytest.mark.slow
def test_all_rows_nan_is_one_line_error(tmp_path):
    np.save(tmp_path / "x.npy", np.full((5, 3), np.nan))
    proc = run_script("cluster_ag.py", "--cluster_npy", tmp_path / "x.npy", "--n_clusters", 2,
                      "--label_csv", tmp_path / "l.csv", "--png_plot", tmp_path / "p.png")
    assert_one_line_error(proc, "has 0 row(s) with a label; clustering needs at least 2")
    assert not (tmp_path / "l.csv").exists()


@pytest.mark.parametrize("algorithm", ["kmeans", "ag", "spectral", "spec_ag", "hdbscan"])
def test_overflowing_rows_are_refused_by_every_algorithm(tmp_path, algorithm):
    X, _ = blobs(n_per=12)
    with pytest.raises(UserError, match="overflow float32"):
        _stage(tmp_path, algorithm, (X * np.float32(1e30)).astype(np.float32))
    assert not (tmp_path / "ids.csv").exists()
    # The same rows in float64 fit: same clustering as the unscaled rows (Ward is scale-free).
    if algorithm == "ag":
        big = _stage(tmp_path, algorithm, X.astype(np.float64) * 1e30)
        assert big.labels == clustering.agglomerative(X.astype(np.float64), 3).labels.tolist()


@pytest.mark.slow
def test_overflow_script_is_one_line(tmp_path):
    X, _ = blobs(n_per=12)
    np.save(tmp_path / "x.npy", (X * np.float32(1e30)).astype(np.float32))
    proc = run_script("cluster_kmeans.py", "--cluster_npy", tmp_path / "x.npy", "--n_clusters", 2,
                      "--label_csv", tmp_path / "l.csv", "--png_plot", tmp_path / "p.png")
    assert_one_line_error(proc, "overflow float32", "rescale the rows")


@pytest.mark.parametrize("algorithm", ["kmeans", "ag", "spectral", "spec_ag"])
def test_identical_rows_say_so_and_give_no_silhouette(tmp_path, algorithm):
    result = _stage(tmp_path, algorithm, np.full((40, 4), 0.25, dtype=np.float32), n_clusters=2)
    assert result.silhouette is None
    assert "all 40 rows are identical: there is nothing to cluster and the silhouette is undefined (nan)" in result.warnings
    assert len((tmp_path / "ids.csv").read_text().splitlines()) == 40


@pytest.mark.slow
def test_identical_rows_script_prints_nan(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((40, 3)))
    proc = run_script("cluster_spectral.py", "--cluster_npy", tmp_path / "x.npy", "--n_clusters", 2,
                      "--label_csv", tmp_path / "l.csv", "--png_plot", tmp_path / "p.png")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "Silhouette Score nan"
    assert proc.stderr.count("rows are identical") == 1 and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 3])
def test_spectral_with_three_rows_or_fewer_is_one_line(tmp_path, n):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(n, 4)))
    for script in ("cluster_spectral.py", "cluster_spec_ag.py"):
        if script == "cluster_spec_ag.py" and not _spec_ag_registered():
            continue
        proc = run_script(script, "--cluster_npy", tmp_path / "x.npy", "--n_clusters", 1,
                          "--label_csv", tmp_path / "l.csv", "--png_plot", tmp_path / "p.png")
        assert_one_line_error(proc, f"the data has {n} rows; the 2-D spectral embedding needs at least 4")
        assert not (tmp_path / "l.csv").exists()


def test_spectral_with_four_rows_is_the_papers_recipe_with_three_neighbours(tmp_path):
    # The reference written out with scikit-learn: the 2-D embedding (the neighbourhood lowered
    # from 30 to rows - 1), the seeded k-means on it, the silhouette in the embedding.
    from sklearn.cluster import KMeans
    from sklearn.manifold import SpectralEmbedding
    from sklearn.metrics import silhouette_score

    from auditoryhum.io.artefacts import read_cluster_ids

    X = np.random.default_rng(1).normal(size=(4, 3))
    result = _stage(tmp_path, "spectral", X, n_clusters=2)
    embedding = SpectralEmbedding(n_components=2, affinity="nearest_neighbors", n_neighbors=3,
                                  random_state=100).fit_transform(X)
    ids = KMeans(n_clusters=2, init="k-means++", max_iter=300, random_state=100).fit_predict(embedding)
    assert read_cluster_ids(str(tmp_path / "ids.csv")).tolist() == ids.tolist()
    assert result.n_clusters == 2 and result.silhouette == silhouette_score(embedding, ids)
    assert "only 4 rows: spectral embedding uses n_neighbors=3 instead of 30" in result.warnings


# --- outputs over inputs (issue 13 item 1) ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("clash", ["label_csv=cluster_npy", "png_plot=cluster_npy", "label_csv=png_plot"])
def test_cluster_outputs_never_overwrite_the_input(tmp_path, clash):
    X, _ = blobs(n_per=6)
    npy = tmp_path / "x.npy"
    np.save(npy, X)
    before = npy.read_bytes()
    paths = {"cluster_npy": npy, "label_csv": tmp_path / "l.csv", "png_plot": tmp_path / "p.png"}
    out, same = clash.split("=")
    paths[out] = paths[same]
    proc = run_script("cluster_ag.py", "--cluster_npy", paths["cluster_npy"], "--n_clusters", 2,
                      "--label_csv", paths["label_csv"], "--png_plot", paths["png_plot"])
    # The guard names the later of two clashing outputs (png_plot after label_csv).
    named = {"label_csv=cluster_npy": "--label_csv", "png_plot=cluster_npy": "--png_plot", "label_csv=png_plot": "--png_plot"}
    assert_one_line_error(proc, named[clash], "same file")
    assert npy.read_bytes() == before
    assert not (tmp_path / "l.csv").exists() and not (tmp_path / "p.png").exists()


def _spec_ag_registered():
    from auditoryhum.cli import COMMANDS

    return any(c.script == "cluster_spec_ag.py" for c in COMMANDS)


# --- spectral + Ward (issue 11 item 5) --------------------------------------------------


def test_spec_ag_is_sklearn_spectral_embedding_then_ward(tmp_path):
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.manifold import SpectralEmbedding
    from sklearn.metrics import silhouette_score

    X, _ = blobs(n_per=25, seed=4, scale=2.5)
    emb = SpectralEmbedding(n_components=2, affinity="nearest_neighbors", n_neighbors=30, random_state=100).fit_transform(X)
    for k in (2, 3, 5, 11):
        ref = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(emb)
        result = _stage(tmp_path, "spec_ag", X, n_clusters=k)
        assert result.labels == ref.tolist(), k
        assert result.silhouette == silhouette_score(emb, ref), k


@pytest.mark.slow
@pytest.mark.skipif(not _spec_ag_registered(), reason="cluster-spec-ag is registered in auditoryhum/cli/__init__.py")
def test_spec_ag_script_end_to_end(tmp_path, blob_npy):
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.manifold import SpectralEmbedding
    from sklearn.metrics import silhouette_score

    path, X, truth = blob_npy
    proc = run_script("cluster_spec_ag.py", "--cluster_npy", path, "--n_clusters", 3, "--label_csv", tmp_path / "l.csv",
                      "--png_plot", tmp_path / "p.png", "--cache_dir", tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    emb = SpectralEmbedding(n_components=2, affinity="nearest_neighbors", n_neighbors=30, random_state=100).fit_transform(X)
    ref = AgglomerativeClustering(n_clusters=3, linkage="ward").fit_predict(emb)
    assert (tmp_path / "l.csv").read_text() == "".join(f"{c}\n" for c in ref)
    assert proc.stdout.splitlines()[-1] == f"Silhouette Score {silhouette_score(emb, ref)}"
    assert same_partition(ref, truth)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_overflow_check_is_exact_where_its_quick_bound_is_not():
    """check_scale's quick bound (D * max|x|^2) fails for wide sparse rows that are safe: the
    exact squared norms then decide, refusing only rows whose distances really overflow."""
    from auditoryhum.clustering.algorithms import check_scale

    X = np.zeros((4, 1000), dtype=np.float32)
    X[0, 0], X[1, 1] = 1e18, -1e18  # squared norms 1e36: 4 * 1e36 * 4 rows fits float32
    check_scale(X)
    X[0, 0] = 1e19  # 1e38: 4 * 1e38 * 4 rows does not
    with pytest.raises(UserError, match="holds values up to 1e\\+19: squared distances between its rows overflow float32"):
        check_scale(X)
    check_scale(X.astype(np.float64))

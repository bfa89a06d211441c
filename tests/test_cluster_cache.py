"""The cache of what does not depend on k (auditoryhum.io.array_cache): cached, uncached and
scikit-learn run directly give the same ids, silhouettes, layouts and plots; corrupt or stale
entries are recomputed, never trusted; a warm cache does no t-SNE, embedding or tree work."""

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.manifold import TSNE, SpectralEmbedding
from sklearn.metrics import silhouette_score

from auditoryhum.clustering import algorithms as cl
from auditoryhum.io.array_cache import ArrayCache, rows_digest
from auditoryhum.stages.cluster import cluster

from conftest import run_script


def label_rows(n_rows, n_distinct, dim=12, seed=0):
    """Label-embedding-like float32 rows: ``n_distinct`` unit vectors repeated with skewed counts."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(5, dim))
    rows = centre[rng.integers(0, 5, n_distinct)] + 0.5 * rng.normal(size=(n_distinct, dim))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    weight = rng.zipf(1.7, size=n_distinct).astype(float)
    pick = np.concatenate([np.arange(n_distinct), rng.choice(n_distinct, n_rows - n_distinct, p=weight / weight.sum())])
    rng.shuffle(pick)
    return rows[pick].astype(np.float32)


@pytest.fixture
def rows_npy(tmp_path):
    X = label_rows(64, 20)
    path = tmp_path / "x.npy"
    np.save(path, X)
    return path, X


SK_EMBEDDING = dict(n_components=2, affinity="nearest_neighbors", n_neighbors=30, random_state=100)
SK_TSNE = dict(n_components=2, perplexity=35.0, early_exaggeration=12.0, learning_rate="auto", max_iter=500,
               n_iter_without_progress=100, metric="euclidean", init="random", random_state=100)


def sklearn_direct(algorithm, X, k):
    """Labels and silhouette space exactly as the published scripts compute them."""
    if algorithm == "ag":
        return AgglomerativeClustering(n_clusters=k, metric="euclidean", linkage="ward").fit_predict(X), X
    if algorithm == "kmeans":
        return KMeans(n_clusters=k, init="k-means++", max_iter=300, random_state=100).fit_predict(X), X
    emb = SpectralEmbedding(**SK_EMBEDDING).fit_transform(X)
    if algorithm == "spectral":
        return KMeans(n_clusters=k, init="k-means++", max_iter=300, random_state=100).fit_predict(emb), emb
    return AgglomerativeClustering(n_clusters=k, metric="euclidean", linkage="ward").fit_predict(emb), emb


@pytest.mark.slow  # every algorithm cached, uncached and by scikit-learn: seconds to tens of seconds here
@pytest.mark.parametrize("algorithm", ["ag", "spectral", "spec_ag", "kmeans"])
def test_cached_uncached_and_sklearn_agree_exactly(tmp_path, rows_npy, algorithm):
    path, X = rows_npy
    cache = tmp_path / "cache"
    runs = {}
    plot = algorithm in ("ag", "spec_ag")  # the t-SNE layout does not depend on the algorithm
    for name, options in [("cold", {}), ("warm", {}), ("off", {"no_cache": True})]:
        out = tmp_path / name
        runs[name] = cluster(str(path), str(out / "ids.csv"), str(out / "plot.png") if plot else None,
                             algorithm=algorithm, n_clusters=4, cache_dir=str(cache), **options)
    for k in ((2, 4, 19, 20, 21, 40) if algorithm in ("ag", "spec_ag") else (2, 21)):
        labels, space = sklearn_direct(algorithm, X, k)
        got = cl.cluster(algorithm, X, n_clusters=k, cache=ArrayCache(cache))
        np.testing.assert_array_equal(got.labels, labels)
        assert cl.silhouette(got.space, got.labels) == silhouette_score(space, labels), k
    labels, space = sklearn_direct(algorithm, X, 4)
    for name, result in runs.items():
        assert result.labels == labels.tolist(), name
        assert result.silhouette == silhouette_score(space, labels), name
        assert (tmp_path / name / "ids.csv").read_bytes() == (tmp_path / "cold" / "ids.csv").read_bytes()
        if plot:
            assert (tmp_path / name / "plot.png").read_bytes() == (tmp_path / "cold" / "plot.png").read_bytes(), name


@pytest.mark.slow  # a t-SNE layout: seconds to tens of seconds here
def test_cached_tsne_layout_is_sklearns(tmp_path):
    X = label_rows(80, 20, seed=3)
    fresh = TSNE(**SK_TSNE).fit_transform(X)
    cache = ArrayCache(tmp_path)
    np.testing.assert_array_equal(cl.tsne_2d(X, [], cache), fresh)  # computed and stored
    np.testing.assert_array_equal(cl.tsne_2d(X, [], cache), fresh)  # read back
    assert (cache.hits, cache.misses) == (1, 1)


@pytest.mark.slow  # sweeps cold and warm: seconds to tens of seconds here
def test_warm_cache_recomputes_nothing_that_k_does_not_change(tmp_path, rows_npy, monkeypatch):
    path, X = rows_npy
    cache = str(tmp_path / "cache")
    cold = cluster(str(path), str(tmp_path / "a.csv"), str(tmp_path / "a.png"), algorithm="spec_ag", n_clusters=3,
                   cache_dir=cache)
    import scipy.cluster.hierarchy
    import sklearn.manifold

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(sklearn.manifold, "TSNE", refuse)
    monkeypatch.setattr(sklearn.manifold, "SpectralEmbedding", refuse)
    monkeypatch.setattr(scipy.cluster.hierarchy, "linkage", refuse)
    warm = cluster(str(path), str(tmp_path / "b.csv"), str(tmp_path / "b.png"), algorithm="spec_ag", n_clusters=3,
                   cache_dir=cache)
    assert warm.labels == cold.labels and warm.silhouette == cold.silhouette
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    # A new k on the warm cache: still nothing recomputed, and scikit-learn's answer.
    other = cluster(str(path), str(tmp_path / "c.csv"), None, algorithm="spec_ag", n_clusters=7, cache_dir=cache)
    monkeypatch.undo()
    labels, space = sklearn_direct("spec_ag", X, 7)
    assert other.labels == labels.tolist() and other.silhouette == silhouette_score(space, labels)


def _entries(cache_dir):
    return sorted(p for p in (cache_dir / "arrays").rglob("*.npy"))


@pytest.mark.slow  # clusterings recomputed per damaged entry: seconds to tens of seconds here
@pytest.mark.parametrize("damage", ["flip", "swap", "garbage"])
def test_corrupt_or_stale_entries_are_recomputed_with_a_note(tmp_path, rows_npy, damage):
    path, X = rows_npy
    cache_dir = tmp_path / "cache"
    first = cluster(str(path), str(tmp_path / "a.csv"), str(tmp_path / "a.png"), algorithm="spectral", n_clusters=3,
                    cache_dir=str(cache_dir))
    entries = _entries(cache_dir)
    # The spectral embedding, the t-SNE layout, and what a rerun at this k reads back: the
    # k-means labels on the embedding and the silhouette.
    assert {p.parent.name for p in entries} == {"spectral-embedding", "tsne", "kmeans-labels", "silhouette"}
    for entry in entries:
        blob = bytearray(entry.read_bytes())
        if damage == "flip":
            blob[-3] ^= 0x40
        elif damage == "truncate":
            blob = blob[: len(blob) // 2]
        elif damage == "garbage":
            blob = bytearray(b"not an array at all")
        entry.write_bytes(bytes(blob))
    if damage == "swap":  # each entry holds another's array: well formed, wrong key
        blobs = [p.read_bytes() for p in entries]
        for p, blob in zip(entries, blobs[1:] + blobs[:1]):
            p.write_bytes(blob)
    again = cluster(str(path), str(tmp_path / "b.csv"), str(tmp_path / "b.png"), algorithm="spectral", n_clusters=3,
                    cache_dir=str(cache_dir))
    assert again.labels == first.labels and again.silhouette == first.silhouette
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    flagged = [n for n in again.notes if "cache entry" in n]
    assert len(flagged) == len(entries) and all("recomputed" in n for n in flagged), again.notes
    # Rewritten: the next run finds both entries sound.
    third = cluster(str(path), str(tmp_path / "c.csv"), None, algorithm="spectral", n_clusters=3, cache_dir=str(cache_dir))
    assert not [n for n in third.notes if "cache entry" in n]


def test_keys_follow_rows_and_parameters(tmp_path):
    cache = ArrayCache(tmp_path)
    X = label_rows(40, 10)
    base = cache.key("tsne", rows_digest(X), {"perplexity": 35.0})
    assert base == cache.key("tsne", rows_digest(X.copy()), {"perplexity": 35.0})
    Y = X.copy()
    Y[3, 2] = np.nextafter(Y[3, 2], np.float32(2))  # one ulp
    assert cache.key("tsne", rows_digest(Y), {"perplexity": 35.0}) != base
    assert cache.key("tsne", rows_digest(X.astype(np.float64)), {"perplexity": 35.0}) != base
    assert cache.key("tsne", rows_digest(X), {"perplexity": 10.0}) != base
    assert cache.key("spectral-embedding", rows_digest(X), {"perplexity": 35.0}) != base


@pytest.mark.slow
def test_no_cache_writes_nothing_and_cli_flags(tmp_path, rows_npy):
    path, _ = rows_npy
    cache_dir = tmp_path / "cache"
    proc = run_script("cluster_ag.py", "--cluster_npy", path, "--n_clusters", 3, "--label_csv", tmp_path / "l.csv",
                      "--png_plot", tmp_path / "p.png", "--no_cache", "--cache_dir", cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert not cache_dir.exists()
    proc = run_script("cluster_ag.py", "--cluster_npy", path, "--n_clusters", 3, "--label_csv", tmp_path / "m.csv",
                      "--png_plot", tmp_path / "q.png", "--cache_dir", cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert {p.parent.name for p in _entries(cache_dir)} == {"ward-tree", "tsne", "silhouette"}
    assert (tmp_path / "l.csv").read_bytes() == (tmp_path / "m.csv").read_bytes()
    assert (tmp_path / "p.png").read_bytes() == (tmp_path / "q.png").read_bytes()


def test_unwritable_cache_is_a_note_not_a_failure(tmp_path, rows_npy):
    path, X = rows_npy
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    result = cluster(str(path), str(tmp_path / "a.csv"), None, algorithm="ag", n_clusters=3, cache_dir=str(blocker))
    labels, _ = sklearn_direct("ag", X, 3)
    assert result.labels == labels.tolist()
    assert any("could not write the cache entry" in n for n in result.notes)


# ---------------------------------------------------------------------------------------
# the distinct-row silhouette: bit for bit scikit-learn's


@pytest.mark.slow  # scikit-learn's silhouette on every row: seconds to tens of seconds here
def test_distinct_row_silhouette_is_bitwise_sklearns():
    import sklearn

    from auditoryhum.clustering.silhouette import silhouette_samples, silhouette_score_distinct

    X = label_rows(4200, 150, dim=16, seed=5)
    Z = cl.ward_tree(X)
    for k in (2, 9, 149, 150):
        labels = cl.ward_labels(Z, k)
        # A small working memory makes scikit-learn chunk the rows, as it does at N = 14,400.
        fast = silhouette_score_distinct(X, labels, working_memory_mib=4)
        assert fast is not None
        with sklearn.config_context(working_memory=4):
            assert fast == silhouette_score(X, labels), k
        assert fast == float(np.mean(silhouette_samples(X, labels, working_memory_mib=4))), k
        # At the default working memory this is one chunk, scikit-learn's symmetric route.
        assert cl.silhouette(X, labels) == silhouette_score(X, labels), k
    # Above the distinct count identical rows are split: the plain route is taken.
    assert silhouette_score_distinct(X, cl.ward_labels(Z, 151), working_memory_mib=4) is None
    # One chunk (the default at this size): the symmetric shortcut; not this route.
    assert silhouette_score_distinct(X, cl.ward_labels(Z, 9)) is None
    assert silhouette_score_distinct(X.astype(np.float64), cl.ward_labels(Z, 9), working_memory_mib=4) is None


def test_digests_of_read_only_rows_are_remembered_only_inside_the_block(tmp_path, monkeypatch):
    from auditoryhum.io import array_cache

    hashed = []
    real = array_cache.rows_digest
    monkeypatch.setattr(array_cache, "rows_digest", lambda rows: hashed.append(rows.shape) or real(rows))
    cache = ArrayCache(tmp_path)
    frozen = np.arange(12.0).reshape(4, 3)
    frozen.flags.writeable = False
    writeable = np.arange(12.0).reshape(4, 3)
    assert cache.digest(frozen) == cache.digest(frozen) == real(frozen)
    assert len(hashed) == 2  # outside the block: hashed every time
    with cache.remembering_digests():
        first = [cache.digest(frozen) for _ in range(3)]
        assert len(hashed) == 3  # once inside the block
        assert cache.digest(writeable) == cache.digest(writeable) == first[0]
        assert len(hashed) == 5  # a writeable array may change: hashed every time
        other = np.arange(1.0, 13.0).reshape(4, 3)
        other.flags.writeable = False
        assert cache.digest(other) != first[0]
    assert cache.digest(frozen) == first[0] and len(hashed) == 7
    assert cache._digests is None


@pytest.mark.slow  # a Ward clustering with its t-SNE plot: seconds here
def test_one_clustering_hashes_its_rows_once(tmp_path, rows_npy, monkeypatch):
    # The Ward tree, the t-SNE layout, the distances and the silhouette are all keyed by the
    # input rows; the stage hashes them once (its loaded rows are read-only).
    from auditoryhum.io import array_cache

    path, X = rows_npy
    hashed = []
    real = array_cache.rows_digest
    monkeypatch.setattr(array_cache, "rows_digest", lambda rows: hashed.append(rows.shape) or real(rows))
    got = cluster(str(path), str(tmp_path / "ids.csv"), str(tmp_path / "t.png"), algorithm="ag", n_clusters=4,
                  cache_dir=str(tmp_path / "cache"))
    assert hashed.count(X.shape) == 1, hashed
    labels = AgglomerativeClustering(n_clusters=4, linkage="ward").fit_predict(X)
    assert got.labels == labels.tolist()
    assert got.silhouette == silhouette_score(X, labels)

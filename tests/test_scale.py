"""The taxonomy at any collection size (issue 19): Ward on distinct rows with counts, the route
that decides, inputs read block by block, the sweep's numerics (issue 23 items 3 and 4), memory
refusals, and the stages on inputs above the all-rows limit."""

import numpy as np
import pytest
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import pdist
from sklearn.metrics import silhouette_score

from auditoryhum.clustering import algorithms as cl
from auditoryhum.clustering import k_sweep as sw
from auditoryhum.clustering import ward
from auditoryhum.clustering.distinct import _Collector, find_distinct_rows, read_distinct_rows
from auditoryhum.errors import UserError
from auditoryhum.io.artefacts import MatrixWriter, iter_matrix_rows, matrix_header, read_cluster_ids

from test_sweep import embeddings, integer_rows, same_partition, sklearn_ward


def zipf_rows(n_rows, n_distinct, dim=16, seed=0, singletons=5, dtype=np.float64):
    """Heavily repeated rows (Zipf counts), a few rows that occur once, shuffled."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_distinct + singletons, dim))
    counts = np.minimum(rng.zipf(1.4, size=n_distinct), 400)
    counts = np.concatenate([counts, np.ones(singletons, dtype=int)])
    X = np.repeat(base, counts, axis=0)
    rng.shuffle(X)
    return X[:n_rows].astype(dtype)


#: scikit-learn's distance between two copies of a row is rounding noise (about 1e-8 of the
#: row's norm) which, on some BLAS kernels (OpenBLAS SkylakeX), depends on where the copies sit;
#: on distinct rows one noise value stands for all copies, so silhouettes agree to this.
COPY_NOISE_TOL = 1e-9


@pytest.fixture
def small_all_rows_limit(monkeypatch):
    """Make inputs above 50 rows take the distinct route, so it can be checked against
    scikit-learn at sizes where scikit-learn runs."""
    monkeypatch.setattr(ward, "WARD_ALL_ROWS_MAX", 50)


# ---------------------------------------------------------------------------------------
# Ward on distinct rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [2, 3, 40, 700])
def test_counts_linkage_is_scipys_tree_when_counts_are_one(n, dtype):
    X = np.random.default_rng(n).normal(size=(n, 12)).astype(dtype)
    ours, scipys = ward.ward_linkage_counts(X, np.ones(n)), linkage(pdist(X), "ward")
    assert np.array_equal(ours[:, [0, 1, 3]], scipys[:, [0, 1, 3]])  # the same merges, in order
    np.testing.assert_allclose(ours[:, 2], scipys[:, 2], rtol=1e-12)  # heights to rounding


def test_counts_linkage_breaks_exact_ties_as_scipy_does():
    grid = np.array([[i, j] for i in range(7) for j in range(5)], dtype=float)
    assert np.array_equal(ward.ward_linkage_counts(grid, np.ones(len(grid))), linkage(pdist(grid), "ward"))


@pytest.mark.parametrize("make", [
    lambda: zipf_rows(3000, 300, seed=1),
    lambda: zipf_rows(2500, 120, dim=5, seed=2, singletons=40),
    lambda: embeddings(4000, 250, seed=3),
    lambda: embeddings(1500, 1500, seed=4),  # no duplicates at all
])
def test_distinct_route_gives_scikit_learns_partitions(make):
    X = make()
    groups = find_distinct_rows(X)
    Z = ward.ward_linkage_counts(groups.rows, groups.counts)
    keys = ward.distinct_leaf_keys(groups.first, groups.counts, groups.n_rows)
    full = ward.ward_tree(X)
    for k in (2, 3, 7, 30, groups.n_distinct // 2, groups.n_distinct):
        ours = ward.ward_labels(Z, k, keys)[groups.inverse]
        reference = ward.ward_labels(full, k)
        assert same_partition(ours, reference), k
        if groups.n_distinct == groups.n_rows:
            assert np.array_equal(ours, reference), k  # no duplicates: the ids too
    # the merge heights above the duplicates' zero-height merges agree to rounding
    np.testing.assert_allclose(Z[:, 2], full[-(groups.n_distinct - 1):, 2], rtol=1e-12)
    assert np.array_equal(Z[:, 3], full[-(groups.n_distinct - 1):, 3])


def test_distinct_route_with_exact_ties_follows_scipy_up_to_the_first_tie():
    # Small integers: many Ward ties. Which of two merges of equal height comes first is
    # scipy's choice on all rows (its chain order); on distinct rows another equally valid
    # merge can come first. Up to the first tie the trees agree; the tree stays monotone.
    X = integer_rows(600, 60)
    groups = find_distinct_rows(X)
    Z = ward.ward_linkage_counts(groups.rows, groups.counts)
    upper = ward.ward_tree(X)[-(groups.n_distinct - 1):]
    assert np.all(np.diff(Z[:, 2]) >= 0)
    ties = np.flatnonzero(np.isclose(np.diff(upper[:, 2]), 0, atol=1e-9 * upper[-1, 2]))
    first_tie = int(ties[0]) if ties.size else len(upper)
    assert first_tie > 0
    np.testing.assert_allclose(Z[:first_tie, 2], upper[:first_tie, 2], rtol=1e-12)


def test_route_is_decided_in_one_place():
    limit = ward.WARD_ALL_ROWS_MAX
    assert ward.ward_route(limit, 10) == "all-rows"
    assert ward.ward_route(limit + 1, 10) == "distinct"
    assert ward.ward_route(limit + 1, limit + 1) == "distinct"
    assert ward.ward_route(500, 500) == "all-rows"


def test_both_routes_agree_through_the_public_functions(small_all_rows_limit):
    X = zipf_rows(3000, 150, seed=5, dtype=np.float32)
    distinct = cl.agglomerative(X, 12)
    assert distinct.notes and "distinct rows with their counts" in distinct.notes[0]
    assert same_partition(distinct.labels, sklearn_ward(X, 12))
    value = cl.silhouette(distinct.space, distinct.labels)
    assert abs(value - silhouette_score(X, distinct.labels)) <= COPY_NOISE_TOL
    with pytest.raises(Exception, match="distinct rows"):
        cl.agglomerative(X, find_distinct_rows(X).n_distinct + 1)


# ---------------------------------------------------------------------------------------
# the sweep


def test_sweep_on_distinct_rows_equals_scikit_learn(small_all_rows_limit):
    X = zipf_rows(2000, 300, seed=6)
    n_distinct = find_distinct_rows(X).n_distinct
    result = sw.sweep("ag", X, 2, 60)
    assert result.route == "distinct" and n_distinct > 60
    assert any("Ward on the distinct rows" in note for note in result.notes)
    for k in (2, 5, 17, 40, 60):
        labels = sklearn_ward(X, k)
        assert abs(result.silhouette[k - 2] - silhouette_score(X, labels)) <= COPY_NOISE_TOL, k


def test_sweep_on_distinct_rows_stops_at_their_number(small_all_rows_limit):
    X = zipf_rows(400, 20, seed=7, singletons=0)
    n_distinct = find_distinct_rows(X).n_distinct
    result = sw.sweep("ag", X, 2, 300)
    assert result.ks[-1] == n_distinct
    assert any(f"stops at k = {n_distinct}" in note for note in result.notes)


def test_sweep_routes_agree():
    X = zipf_rows(1200, 90, seed=8)
    all_rows = sw.sweep("ag", X, 2, 80)
    ward.WARD_ALL_ROWS_MAX, saved = 10, ward.WARD_ALL_ROWS_MAX
    try:
        distinct = sw.sweep("ag", X, 2, 80)
    finally:
        ward.WARD_ALL_ROWS_MAX = saved
    assert (all_rows.route, distinct.route) == ("all-rows", "distinct")
    m = distinct.ks.shape[0]  # the distinct route stops at the number of distinct rows
    assert distinct.ks[-1] == find_distinct_rows(X).n_distinct and m > 10
    np.testing.assert_allclose(distinct.silhouette, all_rows.silhouette[:m], rtol=0, atol=1e-12)
    np.testing.assert_allclose(distinct.calinski_harabasz, all_rows.calinski_harabasz[:m], rtol=1e-9)
    np.testing.assert_allclose(distinct.davies_bouldin, all_rows.davies_bouldin[:m], rtol=1e-9)
    assert np.array_equal(distinct.singletons, all_rows.singletons[:m])


def test_sweep_silhouettes_stay_exact_next_to_a_huge_row():
    # Issue 23 item 3: one row scaled by 1e17 gave silhouettes from -7.6 to 1.19 (the parent's
    # summed distances minus the smaller child's lost every digit of the small ones).
    X = np.random.default_rng(0).normal(size=(30, 5))
    X[7] *= 1e17
    result = sw.sweep("ag", X, 2, 29)
    assert np.nanmax(result.silhouette) <= 1 and np.nanmin(result.silhouette) >= -1
    for k in range(2, 30):
        assert abs(result.silhouette[k - 2] - silhouette_score(X, sklearn_ward(X, k))) <= 1e-12, k


@pytest.mark.parametrize("seed", [4, 5])
def test_spec_ag_sweep_gives_what_the_single_k_command_gives(seed):
    # Issue 23 item 4: 200 rows, 5 blobs, 12-d; above k = 8 the sweep's silhouettes differed
    # from cluster_spec_ag.py's (-0.019 against -0.064 at k = 12 for seed 4).
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(200, n_features=12, centers=5, random_state=seed)
    result = sw.sweep("spec_ag", X, 2, 12)
    for k in range(2, 13):
        single = cl.spectral_ward(X, k)
        assert abs(result.silhouette[k - 2] - cl.silhouette(single.space, single.labels)) <= 1e-12, k


# ---------------------------------------------------------------------------------------
# distinct rows, read block by block


def test_distinct_rows_in_first_occurrence_order_across_blocks():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(300, 9)).astype(np.float32)
    X = base[rng.zipf(1.3, size=5000) % 300]
    X[10] = np.nan  # a clip without a label
    X[11, :] = 0.0
    X[12, :] = -0.0  # the same value as 0.0
    groups = find_distinct_rows(X, block_rows=97)
    kept = X[~np.isnan(X).all(axis=1)] + np.float32(0)
    assert groups.mask.sum() == 4999 and not groups.mask[10]
    assert np.array_equal(groups.expand(), kept)
    _, first = np.unique(kept.view(np.dtype((np.void, 36))).ravel(), return_index=True)
    assert np.array_equal(groups.first, np.sort(first))
    assert np.array_equal(groups.counts, np.bincount(groups.inverse))
    assert groups.inverse[10] == groups.inverse[11]  # rows 11 and 12 (10 and 11 once row 10 is out) are one row


def test_hash_collisions_are_settled_by_the_bytes():
    collector = _Collector(4, np.float64)
    collector.multipliers[:] = 1  # every permutation of a row collides
    collector.add(np.array([[1., 2, 3, 4], [2, 1, 3, 4], [1, 2, 3, 4], [4, 3, 2, 1], [2, 1, 3, 4]]))
    result = collector.result(np.ones(5, dtype=bool))
    assert result.inverse.tolist() == [0, 1, 0, 2, 1]
    assert result.rows.tolist() == [[1, 2, 3, 4], [2, 1, 3, 4], [4, 3, 2, 1]]


def test_damaged_rows_are_listed(tmp_path):
    X = np.ones((50, 3), dtype=np.float32)
    X[4, 1] = np.inf
    X[8, 0] = np.nan
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(UserError, match=r"x.npy: 2 of 50 rows hold NaN or inf \(rows 5, 9, 1-based\)"):
        read_distinct_rows(str(tmp_path / "x.npy"))


def test_matrix_files_are_read_and_written_block_by_block(tmp_path):
    X = np.random.default_rng(2).normal(size=(1001, 7)).astype(np.float32)
    np.save(tmp_path / "a.npy", X)
    with MatrixWriter(str(tmp_path / "b.npy"), X.shape, np.float32) as writer:
        for start in range(0, 1001, 100):
            writer.write(X[start:start + 100])
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()  # numpy.save's bytes
    blocks = list(iter_matrix_rows(str(tmp_path / "b.npy"), chunk_bytes=280))
    assert [start for start, _ in blocks][:3] == [0, 10, 20]
    assert np.array_equal(np.concatenate([b for _, b in blocks]), X)
    np.save(tmp_path / "f.npy", np.asfortranarray(X.astype(">f4")))
    assert np.array_equal(np.concatenate([b for _, b in iter_matrix_rows(str(tmp_path / "f.npy"), 300)]), X)
    with pytest.raises(ValueError, match="10 of 1001 rows written"):
        with MatrixWriter(str(tmp_path / "c.npy"), X.shape, np.float32) as writer:
            writer.write(X[:10])
    assert not (tmp_path / "c.npy").exists()
    (tmp_path / "t.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:500])
    with pytest.raises(UserError, match="t.npy is truncated: its header promises 1001 x 7 float32 values"):
        matrix_header(str(tmp_path / "t.npy"))


# ---------------------------------------------------------------------------------------
# the stages above the all-rows limit


def test_cluster_stage_on_a_large_input_reads_distinct_rows(tmp_path, small_all_rows_limit):
    import auditoryhum as ah

    X = zipf_rows(1500, 80, seed=9, dtype=np.float32)
    X[3] = np.nan
    np.save(tmp_path / "st.npy", X)
    result = ah.cluster(str(tmp_path / "st.npy"), str(tmp_path / "ids.csv"), str(tmp_path / "plot.png"),
                        algorithm="ag", n_clusters=9, no_cache=True)
    ids = read_cluster_ids(str(tmp_path / "ids.csv"))
    assert ids[3] == -2 and ids.shape == (1500,)
    kept = np.delete(X, 3, axis=0)
    assert same_partition(np.delete(ids, 3), sklearn_ward(kept, 9))
    assert abs(result.silhouette - silhouette_score(kept, np.delete(ids, 3))) <= 1e-6
    assert any("Ward on the distinct rows" in note for note in result.notes)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_stage_on_a_large_input(tmp_path, small_all_rows_limit):
    import auditoryhum as ah

    X = zipf_rows(1500, 80, seed=10)
    np.save(tmp_path / "st.npy", X)
    result = ah.sweep_clusters(str(tmp_path / "st.npy"), str(tmp_path / "s.csv"), label_csv=str(tmp_path / "ids.csv"),
                               k_max=40, no_cache=True)
    ids = read_cluster_ids(str(tmp_path / "ids.csv"))
    assert same_partition(ids, sklearn_ward(X, result.chosen_k))
    i = result.chosen_k - 2
    assert abs(result.silhouette[i] - silhouette_score(X, ids)) <= COPY_NOISE_TOL


def test_weighted_kmeans_on_distinct_rows_says_so(tmp_path, small_all_rows_limit):
    import auditoryhum as ah

    X = zipf_rows(900, 60, seed=11)
    np.save(tmp_path / "st.npy", X)
    result = ah.cluster(str(tmp_path / "st.npy"), str(tmp_path / "ids.csv"), algorithm="kmeans", n_clusters=5,
                        no_cache=True)
    ids = read_cluster_ids(str(tmp_path / "ids.csv"))
    assert len(set(ids.tolist())) == 5
    assert abs(result.silhouette - silhouette_score(X, ids)) <= COPY_NOISE_TOL
    assert any("sample weights" in note for note in result.notes)


def test_spectral_refuses_beyond_its_row_limit(monkeypatch):
    monkeypatch.setattr(cl, "NEIGHBOUR_GRAPH_MAX_ROWS", 100)
    groups = find_distinct_rows(zipf_rows(500, 30, seed=12))
    with pytest.raises(UserError, match="needs the nearest neighbours of every one of the 500 rows"):
        cl.cluster("spectral", groups, n_clusters=3)


def test_clustering_that_cannot_fit_stops_before_allocating(tmp_path, monkeypatch):
    import auditoryhum as ah
    from auditoryhum.clustering import memory

    X = zipf_rows(800, 50, seed=13)
    np.save(tmp_path / "st.npy", X)
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 2 * 2**20)
    with pytest.raises(UserError, match=r"Agglomerative \(Ward\) clustering of 800 rows \(800 distinct\) needs about "
                                        r"[0-9.]+ GiB but about 0.0 GiB is available; use a machine with more memory"):
        ah.cluster(str(tmp_path / "st.npy"), str(tmp_path / "ids.csv"), algorithm="ag", n_clusters=4, no_cache=True)
    assert not (tmp_path / "ids.csv").exists()


def test_embedding_rows_are_written_block_by_block_with_numpys_bytes(tmp_path):
    from auditoryhum.io.artefacts import rows_by_index, save_rows_by_index

    table = np.random.default_rng(3).normal(size=(7, 5)).astype(np.float32)
    index = np.random.default_rng(4).integers(-1, 7, size=1003)
    save_rows_by_index(str(tmp_path / "a.npy"), table, index, block_rows=64)
    np.save(tmp_path / "b.npy", rows_by_index(table, index))
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    assert np.isnan(np.load(tmp_path / "a.npy")[index == -1]).all()


# ---------------------------------------------------------------------------------------
# the array-level API: the scripts' numbers on arrays, no files


def test_cluster_rows_gives_the_scripts_numbers(tmp_path):
    import auditoryhum as ah

    X = embeddings(400, 60, seed=14)
    X[5] = np.nan
    np.save(tmp_path / "x.npy", X)
    for algorithm, k in (("ag", 7), ("kmeans", 4), ("spec_ag", 5)):
        staged = ah.cluster(str(tmp_path / "x.npy"), str(tmp_path / f"{algorithm}.csv"), algorithm=algorithm,
                            n_clusters=k, no_cache=True)
        rows = ah.cluster_rows(X, algorithm, k)
        assert np.array_equal(rows.labels, read_cluster_ids(str(tmp_path / f"{algorithm}.csv"))), algorithm
        assert rows.labels[5] == -2 and rows.n_no_label == 1
        assert rows.silhouette == staged.silhouette and rows.n_clusters == staged.n_clusters == k
        assert rows.notes[0].startswith("1 of 400 rows are NaN")
    assert list(tmp_path.iterdir()) and not any(p.name.endswith(".png") for p in tmp_path.iterdir())


def test_sweep_rows_gives_the_scripts_table(tmp_path):
    import auditoryhum as ah
    from auditoryhum.io.artefacts import read_sweep_csv

    X = embeddings(300, 50, seed=15)
    np.save(tmp_path / "x.npy", X)
    staged = ah.sweep_clusters(str(tmp_path / "x.npy"), str(tmp_path / "s.csv"), k_max=40, penalty=0.003,
                               no_cache=True)
    rows = ah.sweep_rows(X, k_max=40, penalty=0.003)
    table = read_sweep_csv(str(tmp_path / "s.csv"))
    assert rows.chosen_k == staged.chosen_k
    assert np.array_equal(rows.ks, table["k"])
    np.testing.assert_array_equal(rows.silhouette, staged.silhouette)
    assert [(p.k, p.lambda_low) for p in rows.lambda_path] == [(p.k, p.lambda_low) for p in staged.lambda_path]


def test_array_api_refuses_bad_rows_in_one_line():
    import auditoryhum as ah
    from auditoryhum.errors import ParameterError

    with pytest.raises(UserError, match=r"the data must be a 2-D array \(one row per clip\); got shape \(5,\)"):
        ah.cluster_rows(np.ones(5), "ag", 2)
    with pytest.raises(ParameterError, match="n_clusters is required for Agglomerative"):
        ah.cluster_rows(np.eye(5), "ag")
    with pytest.raises(ParameterError, match="algorithm must be one of"):
        ah.sweep_rows(np.eye(5), "ward")
    with pytest.raises(UserError, match="the data holds <U1 values; expected numbers"):
        ah.cluster_rows(np.array([["a"], ["b"]]), "ag", 1)


# ---------------------------------------------------------------------------------------
# the per-clip side: journals read back in one pass


def test_journal_is_read_back_in_blocks_last_record_wins_and_a_torn_line_is_cut(tmp_path, monkeypatch):
    from auditoryhum.io.checkpoint import Journal

    target = tmp_path / "out.txt"
    key = {"tool": "t"}
    with Journal.open(target, key) as journal:
        journal.append([{"id": "a", "value": 1}, {"id": "b", "value": 2}])
        journal.append([{"id": "a", "value": 3, "error": "boom"}, {"id": "c", "value": 4}])
    path = journal.path
    with open(path, "ab") as f:
        f.write(b'{"id": "d", "value": 5, "ru')  # a kill in mid-write
    size_before = path.stat().st_size
    monkeypatch.setattr(Journal, "READ_BLOCK_LINES", 2)
    again = Journal.open(target, key)
    assert path.stat().st_size < size_before and path.read_bytes().endswith(b"\n")
    records = list(again.iter_records())
    assert [(r["id"], r["value"]) for r in records] == [("a", 1), ("b", 2), ("a", 3), ("c", 4)]
    assert again.records["a"]["error"] == "boom" and sorted(again.records) == ["a", "b", "c"]
    again.close()
    # a damaged line inside a block costs only itself
    lines = path.read_bytes().split(b"\n")
    lines[2] = b'{"id": "b", "val'
    path.write_bytes(b"\n".join(lines))
    assert sorted(Journal.open(target, key).records) == ["a", "c"]


def test_resume_keeps_the_last_record_of_each_item(tmp_path):
    from auditoryhum.engine import TEXT, Item, run_resumable
    from auditoryhum.io.checkpoint import Journal

    class Upper:
        def prepare(self, payloads):
            return list(payloads)

        def run(self, prepared):
            return [(p.upper(), None) for p in prepared]

        def cancel(self):
            pass

        def close(self):
            pass

    class Spec:
        def build(self):
            return Upper()

    items = [Item(name, name) for name in ("x", "y", "y", "z")]  # one id given twice
    out = tmp_path / "o.txt"
    fp = None
    with Journal.open(out, {"k": 1}) as journal:
        journal.append([{"id": "x", "fp": fp, "value": "stale"}, {"id": "x", "fp": fp, "value": "X"},
                        {"id": "y", "fp": fp, "value": "Y"}, {"id": "z", "fp": fp, "value": "Z"},
                        {"id": "z", "fp": fp, "value": None, "error": "failed"}])

    def write(values, failures):
        out.write_text("\n".join(values) + "\n")

    result = run_resumable(str(out), {"k": 1}, items, Spec(), write=write, batch_size=2, desc="t", codec=TEXT)
    assert out.read_text() == "X\nY\nY\nZ\n"
    assert result.reused == 3 and result.asked == 1

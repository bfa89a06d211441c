"""The k sweep (auditoryhum.clustering.k_sweep, cluster_sweep.py): exactness against scikit-learn, the Ward
tree and its cuts, duplicate rows below and above the number of distinct rows, the lambda
path, the outputs and the one-line errors."""

import math

import numpy as np
import pytest
from scipy.cluster.hierarchy import ward
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from auditoryhum.clustering import k_sweep as sw
from auditoryhum.clustering.algorithms import kmeans as kmeans_one, spectral as spectral_one
from auditoryhum.errors import UserError
from auditoryhum.io.artefacts import read_cluster_ids, read_sweep_csv

from conftest import assert_one_line_error, run_script

TOL = 1e-9


def embeddings(n_rows, n_distinct, dim=24, centres=6, seed=0, dtype=np.float32):
    """Clustered unit vectors like sentence embeddings: ``n_distinct`` distinct rows, the rest
    exact duplicates with skewed multiplicities (as kept labels repeat), shuffled."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(centres, dim))
    rows = centre[rng.integers(0, centres, n_distinct)] + 0.5 * rng.normal(size=(n_distinct, dim))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    weight = rng.zipf(1.6, size=n_distinct).astype(float)
    pick = np.concatenate([np.arange(n_distinct), rng.choice(n_distinct, n_rows - n_distinct, p=weight / weight.sum())])
    rng.shuffle(pick)
    return rows[pick].astype(dtype)


def integer_rows(n_rows, n_distinct, dim=5, seed=1):
    """Small-integer rows: every distance and dot product is exact in floating point, so
    scikit-learn has no rounding noise between identical rows, and Ward meets many ties."""
    rng = np.random.default_rng(seed)
    distinct = np.unique(rng.integers(0, 4, size=(4 * n_distinct, dim)), axis=0)[:n_distinct]
    pick = np.concatenate([np.arange(len(distinct)), rng.integers(0, len(distinct), n_rows - len(distinct))])
    rng.shuffle(pick)
    return distinct[pick].astype(np.float64)


def sklearn_ward(X, k):
    return AgglomerativeClustering(n_clusters=k, metric="euclidean", linkage="ward").fit_predict(X)


def same_partition(a, b):
    pairs = set(zip(np.asarray(a).tolist(), np.asarray(b).tolist()))
    return len(pairs) == len(set(np.asarray(a).tolist())) == len(set(np.asarray(b).tolist()))


# ---------------------------------------------------------------------------------------
# the tree


@pytest.mark.parametrize("make", [lambda: embeddings(300, 60, dtype=np.float64), lambda: integer_rows(250, 40)])
def test_ward_tree_is_sklearns_tree_with_many_duplicates(make):
    X = make()
    distinct, inverse, counts = sw.distinct_rows(X)
    assert counts.sum() == len(X) and len(distinct) < len(X) // 3
    # pdist on distinct rows, expanded: bit-identical to scipy's ward(X), which sklearn calls.
    Z = sw.ward_linkage(X, distinct, inverse)
    assert np.array_equal(Z, ward(X))
    d = len(distinct)
    for k in (2, 3, 9, d - 1, d, d + 1, d + 20, len(X) - 1):
        assert same_partition(sw.ward_cut(Z, k), sklearn_ward(X, k)), k


def test_duplicates_merge_first_so_cut_at_d_is_the_groups():
    X = integer_rows(200, 30)
    distinct, inverse, _ = sw.distinct_rows(X)
    Z = sw.ward_linkage(X, distinct, inverse)
    d = len(distinct)
    assert np.all(Z[: len(X) - d, 2] == 0) and np.all(Z[len(X) - d :, 2] > 0)
    assert same_partition(sw.ward_cut(Z, d), inverse)


# ---------------------------------------------------------------------------------------
# exactness against silhouette_score


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_silhouette_equals_sklearn_below_and_at_distinct_count(dtype):
    X = embeddings(420, 70, dtype=dtype)
    d = len(sw.distinct_rows(X)[0])
    result = sw.sweep_ward(X, 2, d)
    assert result.n_distinct == d == 70
    assert list(result.ks) == list(range(2, d + 1))
    for k in (2, 3, 5, 17, d // 2, d - 2, d - 1, d):
        labels = sklearn_ward(X, k)
        got = result.silhouette[k - 2]
        assert abs(got - silhouette_score(X, labels)) <= TOL, k
        assert result.singletons[k - 2] == np.count_nonzero(np.bincount(labels) == 1)
        if k < d:
            assert result.calinski_harabasz[k - 2] == pytest.approx(calinski_harabasz_score(X, labels), rel=1e-6)
            assert result.davies_bouldin[k - 2] == pytest.approx(davies_bouldin_score(X, labels), rel=1e-5)


def test_silhouette_equals_sklearn_above_distinct_count():
    # Above D the cut splits groups of identical rows; with integer rows scikit-learn's
    # distances between copies are exactly 0, so its values are the exact ones.
    X = integer_rows(260, 45)
    d = len(sw.distinct_rows(X)[0])
    result = sw.sweep_ward(X, d - 3, len(X) - 1)
    assert any("distinct rows" in note for note in result.notes)
    for k in (d - 3, d, d + 1, d + 2, d + 10, d + 60, len(X) - 2, len(X) - 1):
        labels = sklearn_ward(X, k)
        i = k - result.ks[0]
        assert abs(result.silhouette[i] - silhouette_score(X, labels)) <= TOL, k
        assert result.singletons[i] == np.count_nonzero(np.bincount(labels) == 1), k
    assert np.all(result.calinski_harabasz[result.ks > d] == 1.0)
    assert np.all(result.davies_bouldin[result.ks > d] == 0.0)


def test_silhouette_equals_sklearn_all_rows_distinct():
    X = embeddings(150, 150, dim=8, dtype=np.float64)
    result = sw.sweep_ward(X, 2, 149)
    assert result.n_distinct == 150 and not result.notes
    for k in (2, 4, 31, 75, 148, 149):
        assert abs(result.silhouette[k - 2] - silhouette_score(X, sklearn_ward(X, k))) <= TOL, k


def test_all_identical_rows_give_nan_not_a_crash():
    X = np.ones((12, 3), dtype=np.float32)
    result = sw.sweep_ward(X, 2, 11)
    assert np.all(np.isnan(result.silhouette))
    assert result.warnings and "identical" in result.warnings[0]
    assert sw.choose_k(result.ks, result.silhouette, 0.001) is None
    assert sw.lambda_path(result.ks, result.silhouette) == []


def test_sample_silhouette_is_sklearns_on_the_sampled_rows():
    X = embeddings(400, 90, dtype=np.float64, seed=3)
    full = sw.sweep_ward(X, 2, 40)
    sampled = sw.sweep_ward(X, 2, 40, sample=150)
    again = sw.sweep_ward(X, 2, 40, sample=150)
    assert np.array_equal(sampled.silhouette, again.silhouette)  # seeded
    rows = sampled.sample_rows
    assert rows is not None and len(rows) == 150 and len(np.unique(rows)) == 150
    for k in (2, 7, 40):
        labels = sklearn_ward(X, k)
        assert abs(sampled.silhouette[k - 2] - silhouette_score(X[rows], labels[rows])) <= TOL
    # Stratified by cluster: close to the full silhouette, the other scores untouched.
    assert np.max(np.abs(sampled.silhouette - full.silhouette)) < 0.05
    assert np.allclose(sampled.calinski_harabasz, full.calinski_harabasz, rtol=1e-12, atol=0)


def test_stratified_sample_keeps_cluster_proportions():
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    rows = sw._stratified_sample(labels, 100, seed=100)
    assert np.array_equal(np.bincount(labels[rows]), [50, 30, 20])


def test_memory_budget_names_the_largest_n_that_fits():
    X = embeddings(300, 300, dim=4, dtype=np.float64)
    with pytest.raises(UserError) as exc:
        sw.sweep_ward(X, 2, 10, memory_budget=100_000)
    message = str(exc.value)
    assert f"at most {sw.largest_ward_rows(100_000)} rows fit" in message
    assert sw.largest_ward_rows(8 * 1000**2) == 1000
    # The tree fits but the silhouette does not: --sample is the way out.
    need_tree = sw.ward_memory_bytes(300, 300, 0, 0)
    with pytest.raises(UserError, match="--sample"):
        sw.sweep_ward(X, 2, 10, memory_budget=need_tree + 1)


# ---------------------------------------------------------------------------------------
# k-means and spectral: one fit per k


def test_kmeans_and_spectral_sweeps_equal_the_single_k_functions():
    X = embeddings(90, 40, dim=6, seed=5)
    km = sw.sweep_refit("kmeans", X, 2, 6)
    sp = sw.sweep_refit("spectral", X, 2, 6)
    for k in range(2, 7):
        one = kmeans_one(X, k)
        assert abs(km.silhouette[k - 2] - silhouette_score(one.space, one.labels)) <= TOL
        assert km.calinski_harabasz[k - 2] == calinski_harabasz_score(one.space, one.labels)
        two = spectral_one(X, k)
        assert abs(sp.silhouette[k - 2] - silhouette_score(two.space, two.labels)) <= TOL


# ---------------------------------------------------------------------------------------
# the penalty and the lambda path


def path_tuples(ks, s):
    return [(p.k, p.lambda_low, p.lambda_high) for p in sw.lambda_path(ks, s)]


def test_lambda_path_on_a_concave_curve():
    ks = [2, 3, 4, 5, 6]
    s = [0.5, 0.75, 0.875, 0.9375, 0.875]
    assert path_tuples(ks, s) == [(2, 0.25, math.inf), (3, 0.125, 0.25), (4, 0.0625, 0.125), (5, 0.0, 0.0625)]


def test_lambda_path_skips_points_under_the_hull_and_lists_ties():
    # k=3 lies under the hull; k=5 lies exactly on the edge 4-6; k=8 ties with the maximum k=7.
    ks = [2, 3, 4, 5, 6, 7, 8]
    s = [0.25, 0.25, 0.75, 0.8125, 0.875, 0.90625, 0.90625]
    assert path_tuples(ks, s) == [
        (2, 0.25, math.inf),
        (4, 0.0625, 0.25),
        (5, 0.0625, 0.0625),
        (6, 0.03125, 0.0625),
        (7, 0.0, 0.03125),
        (8, 0.0, 0.0),
    ]


def test_lambda_path_with_a_non_dyadic_curve_and_nan():
    ks = [2, 3, 4, 5]
    s = [0.1, 0.4, math.nan, 0.5]
    steps = sw.lambda_path(ks, s)
    assert [p.k for p in steps] == [2, 3, 5]
    assert steps[0].lambda_low == steps[1].lambda_high == pytest.approx(0.3, abs=1e-15)
    assert steps[1].lambda_low == steps[2].lambda_high == pytest.approx(0.05, abs=1e-15)
    # A single point: optimal for every lambda.
    assert path_tuples([7], [0.3]) == [(7, 0.0, math.inf)]


def test_choose_k_agrees_with_the_path_and_breaks_ties_to_the_smaller_k():
    ks = [2, 3, 4, 5, 6]
    s = [0.5, 0.75, 0.875, 0.9375, 0.875]
    assert sw.choose_k(ks, s, 0.0) == 5
    assert sw.choose_k(ks, s, 0.1) == 4
    assert sw.choose_k(ks, s, 0.125) == 3  # tie 3/4 at the breakpoint: the smaller k
    assert sw.choose_k(ks, s, 0.3) == 2
    for lam in np.linspace(0, 0.3, 31):
        chosen = sw.choose_k(ks, s, lam)
        step = next(p for p in sw.lambda_path(ks, s) if p.k == chosen)
        assert step.lambda_low <= lam <= step.lambda_high
    adjusted = sw.adjusted_scores(ks, s, 0.1)
    assert adjusted == pytest.approx([0.3, 0.45, 0.475, 0.4375, 0.275])


# ---------------------------------------------------------------------------------------
# the command


def test_the_command_and_the_stage_sweep_the_papers_range_by_default():
    # The values written out (k from 2 to 840, penalty 0.001): comparing two names of one constant
    # would pass whatever the constant said.
    import inspect

    from auditoryhum.cli import COMMANDS, build_parser
    from auditoryhum.stages.sweep import sweep as sweep_stage

    parser = build_parser(next(c for c in COMMANDS if c.name == "sweep"))
    args = parser.parse_args(["--cluster_npy", "x.npy", "--sweep_csv", "s.csv"])
    assert (args.k_min, args.k_max, args.penalty) == (2, 840, 0.001)
    defaults = inspect.signature(sweep_stage).parameters
    assert (defaults["k_min"].default, defaults["k_max"].default, defaults["penalty"].default) == (2, 840, 0.001)


@pytest.mark.slow
def test_cluster_sweep_writes_table_plot_and_the_single_k_labels(tmp_path):
    X = embeddings(70, 25, dim=6, seed=7)
    npy = tmp_path / "emb.npy"
    np.save(npy, X)
    table, plot, labels = tmp_path / "sweep.csv", tmp_path / "sweep.png", tmp_path / "labels.csv"
    proc = run_script(
        "cluster_sweep.py", "--cluster_npy", npy, "--sweep_csv", table, "--png_plot", plot,
        "--label_csv", labels, "--penalty", "0.002",
    )
    assert proc.returncode == 0, proc.stderr
    assert "note: k_max 840 lowered to 69" in proc.stderr
    csv = read_sweep_csv(str(table))
    assert table.read_text().splitlines()[0] == "k,silhouette,adjusted,calinski_harabasz,davies_bouldin,singletons"
    assert list(csv["k"]) == list(range(2, 70))
    for k in (2, 10, 24, 25, 26, 50, 69):
        assert abs(csv["silhouette"][k - 2] - silhouette_score(X, sklearn_ward(X, k))) <= TOL, k
    assert np.allclose(csv["adjusted"], csv["silhouette"] - 0.002 * csv["k"], rtol=0, atol=1e-15)
    chosen = int(csv["k"][np.nanargmax(csv["adjusted"])])
    out = proc.stdout.splitlines()
    assert out[0] == f"Chosen k {chosen}"
    assert out[1] == f"Silhouette Score {float(csv['silhouette'][chosen - 2])!r}"
    best = int(csv["k"][np.nanargmax(csv["silhouette"])])
    assert out[3].startswith(f"Silhouette maximum at k {best} ")
    path_lines = out[out.index("Lambda path: every k optimal for some lambda >= 0") + 1 :]
    expected = sw.lambda_path(csv["k"], csv["silhouette"])
    assert [int(line.split(",")[0].split()[1]) for line in path_lines] == [p.k for p in expected]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The label file is byte-identical to what cluster_ag.py writes for the chosen k.
    single = tmp_path / "single.csv"
    proc_one = run_script(
        "cluster_ag.py", "--cluster_npy", npy, "--n_clusters", chosen, "--label_csv", single, "--png_plot", tmp_path / "one.png"
    )
    assert proc_one.returncode == 0, proc_one.stderr
    assert labels.read_bytes() == single.read_bytes()
    assert len(np.unique(read_cluster_ids(str(labels)))) == chosen


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, script", [("kmeans", "cluster_kmeans.py"), ("spectral", "cluster_spectral.py")])
def test_cluster_sweep_refit_algorithms_match_their_single_k_scripts(tmp_path, algorithm, script):
    X = embeddings(45, 20, dim=5, seed=11)
    npy = tmp_path / "emb.npy"
    np.save(npy, X)
    table, labels = tmp_path / "sweep.csv", tmp_path / "labels.csv"
    proc = run_script(
        "cluster_sweep.py", "--cluster_npy", npy, "--algorithm", algorithm, "--k_max", "6",
        "--sweep_csv", table, "--label_csv", labels, "--penalty", "0",
    )
    assert proc.returncode == 0, proc.stderr
    csv = read_sweep_csv(str(table))
    one = {"kmeans": kmeans_one, "spectral": spectral_one}[algorithm]
    for k in range(2, 7):
        result = one(X, k)
        assert abs(csv["silhouette"][k - 2] - silhouette_score(result.space, result.labels)) <= TOL
    chosen = int(proc.stdout.splitlines()[0].split()[-1])
    assert chosen == int(csv["k"][np.nanargmax(csv["silhouette"])])
    single = tmp_path / "single.csv"
    proc_one = run_script(script, "--cluster_npy", npy, "--n_clusters", chosen, "--label_csv", single, "--png_plot", tmp_path / "p.png")
    assert proc_one.returncode == 0, proc_one.stderr
    assert labels.read_bytes() == single.read_bytes()


@pytest.mark.slow
def test_cluster_sweep_identical_rows_write_nan_and_refuse_labels(tmp_path):
    npy = tmp_path / "same.npy"
    np.save(npy, np.full((6, 3), 0.5, dtype=np.float32))
    table = tmp_path / "sweep.csv"
    proc = run_script("cluster_sweep.py", "--cluster_npy", npy, "--sweep_csv", table, "--label_csv", tmp_path / "l.csv")
    assert_one_line_error(proc, "no k could be chosen", "l.csv")
    assert "identical" in proc.stderr
    assert table.read_text().splitlines()[1:] == [f"{k},nan,nan,nan,nan,{s}" for k, s in zip(range(2, 6), read_sweep_csv(str(table))["singletons"])]
    assert not (tmp_path / "l.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "rows, flags, fragments",
    [
        (2, [], ["has 2 row(s)", "at least 3"]),
        (20, ["--k_min", "9", "--k_max", "5"], ["--k_min 9 is larger than --k_max 5"]),
        (20, ["--k_min", "1"], ["--k_min must be at least 2"]),
        (20, ["--k_min", "20"], ["--k_min 20 is not smaller than the number of rows (20)"]),
        (20, ["--penalty", "-0.1"], ["--penalty must be a finite number >= 0"]),
        (20, ["--sample", "2"], ["--sample must be at least 3"]),
    ],
)
def test_cluster_sweep_bad_flags_are_one_line_errors(tmp_path, rows, flags, fragments):
    npy = tmp_path / "x.npy"
    np.save(npy, embeddings(max(rows, 3), 3, dim=3)[:rows])
    proc = run_script("cluster_sweep.py", "--cluster_npy", npy, "--sweep_csv", tmp_path / "s.csv", *flags)
    assert_one_line_error(proc, *fragments)
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.slow
def test_cluster_sweep_nan_rows_and_missing_file(tmp_path):
    X = embeddings(20, 10, dim=3)
    X[4, 1] = np.nan
    npy = tmp_path / "nan.npy"
    np.save(npy, X)
    proc = run_script("cluster_sweep.py", "--cluster_npy", npy, "--sweep_csv", tmp_path / "s.csv")
    assert_one_line_error(proc, "NaN or inf", "rows 5")
    proc = run_script("cluster_sweep.py", "--cluster_npy", tmp_path / "missing.npy", "--sweep_csv", tmp_path / "s.csv")
    assert_one_line_error(proc, "not found", "missing.npy")


# ---------------------------------------------------------------------------------------
# the decision file (issue 9 item 4)


def test_sweep_records_its_decision_beside_the_table(tmp_path):
    import json

    from auditoryhum.io.artefacts import decision_path, read_decision
    from auditoryhum.io.hashing import file_sha256
    from auditoryhum.stages.sweep import sweep as sweep_stage

    X = embeddings(60, 20, dim=5, seed=2)
    np.save(tmp_path / "x.npy", X)
    result = sweep_stage(str(tmp_path / "x.npy"), str(tmp_path / "run.csv"), penalty=0.002, cache_dir=str(tmp_path / "c"))
    assert decision_path("a/sweep.csv") == "a/sweep_decision.json" and decision_path("t.tsv") == "t.tsv_decision.json"
    path = tmp_path / "run_decision.json"
    assert result.outputs == {"sweep_csv": str(tmp_path / "run.csv"), "decision_json": str(path)}
    doc = json.loads(path.read_text())
    csv = read_sweep_csv(str(tmp_path / "run.csv"))
    assert doc["format"] == "auditoryhum-sweep-decision" and doc["version"] == 1
    assert doc["chosen_k"] == sw.choose_k(csv["k"], csv["silhouette"], 0.002) == result.chosen_k
    assert doc["penalty"] == 0.002 and doc["algorithm"] == "ag" and (doc["k_min"], doc["k_max"]) == (2, 59)
    i = doc["chosen_k"] - 2
    assert doc["chosen_silhouette"] == csv["silhouette"][i] and doc["chosen_adjusted"] == csv["adjusted"][i]
    assert doc["silhouette_max_k"] == int(csv["k"][np.nanargmax(csv["silhouette"])])
    steps = sw.lambda_path(csv["k"], csv["silhouette"])
    assert [(s["k"], s["lambda_low"], s["lambda_high"]) for s in doc["lambda_path"]] == [
        (p.k, p.lambda_low, None if math.isinf(p.lambda_high) else p.lambda_high) for p in steps]
    assert doc["sweep_csv_sha256"] == file_sha256(str(tmp_path / "run.csv"))
    assert read_decision(str(tmp_path / "run.csv")) == (doc, None)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


# ---------------------------------------------------------------------------------------
# spectral + Ward (issue 11 item 5)


@pytest.mark.slow
def test_spec_ag_sweep_is_one_ward_tree_on_the_spectral_embedding(tmp_path):
    from sklearn.manifold import SpectralEmbedding

    X = embeddings(140, 50, dim=8, seed=9)
    emb = SpectralEmbedding(n_components=2, affinity="nearest_neighbors", n_neighbors=30, random_state=100).fit_transform(X)
    result = sw.sweep("spec_ag", X, 2, 80)
    assert result.algorithm == "spec_ag"
    for k in (2, 3, 6, 25, 49, 50, 51, 80):
        labels = sklearn_ward(emb, k)
        assert abs(result.silhouette[k - 2] - silhouette_score(emb, labels)) <= TOL, k
        assert result.calinski_harabasz[k - 2] == pytest.approx(calinski_harabasz_score(emb, labels), rel=1e-6)
    np.save(tmp_path / "x.npy", X)
    proc = run_script("cluster_sweep.py", "--cluster_npy", tmp_path / "x.npy", "--algorithm", "spec_ag", "--k_max", 12,
                      "--sweep_csv", tmp_path / "s.csv", "--label_csv", tmp_path / "l.csv", "--cache_dir", tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    chosen = int(proc.stdout.splitlines()[0].split()[-1])
    ids = read_cluster_ids(str(tmp_path / "l.csv"))
    np.testing.assert_array_equal(ids, sklearn_ward(emb, chosen))


# ---------------------------------------------------------------------------------------
# rows without a label and degenerate input (issue 13 items 5, 9, 10)


@pytest.mark.slow
def test_sweep_leaves_nan_rows_out_and_labels_them_minus_two(tmp_path):
    X = embeddings(80, 30, dim=6, seed=4)
    X_nan = X.copy().astype(np.float32)
    X_nan[[5, 6, 70]] = np.nan
    np.save(tmp_path / "x.npy", X_nan)
    proc = run_script("cluster_sweep.py", "--cluster_npy", tmp_path / "x.npy", "--k_max", 20, "--sweep_csv", tmp_path / "s.csv",
                      "--label_csv", tmp_path / "l.csv", "--no_cache")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("3 of 80 rows are NaN (clips without a label)") == 1
    kept = np.setdiff1d(np.arange(80), [5, 6, 70])
    alone = sw.sweep_ward(X[kept], 2, 20)
    csv = read_sweep_csv(str(tmp_path / "s.csv"))
    np.testing.assert_array_equal(csv["silhouette"], alone.silhouette)
    ids = read_cluster_ids(str(tmp_path / "l.csv"))
    chosen = sw.choose_k(alone.ks, alone.silhouette, sw.DEFAULT_PENALTY)
    assert len(ids) == 80 and list(ids[[5, 6, 70]]) == [-2, -2, -2]
    np.testing.assert_array_equal(ids[kept], sklearn_ward(X[kept], chosen))


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["kmeans", "spectral", "spec_ag"])
def test_identical_rows_choose_no_k_with_every_algorithm(tmp_path, algorithm):
    np.save(tmp_path / "same.npy", np.full((12, 3), 0.5, dtype=np.float32))
    proc = run_script("cluster_sweep.py", "--cluster_npy", tmp_path / "same.npy", "--algorithm", algorithm,
                      "--sweep_csv", tmp_path / "s.csv", "--no_cache")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["Chosen k none (the silhouette is undefined for every k)"]
    assert "all 12 rows are identical" in proc.stderr
    assert np.all(np.isnan(read_sweep_csv(str(tmp_path / "s.csv"))["silhouette"]))


@pytest.mark.slow
def test_overflowing_rows_are_refused_by_the_sweep(tmp_path):
    np.save(tmp_path / "x.npy", embeddings(30, 10, dim=4) * np.float32(1e30))
    for algorithm in ("ag", "spectral"):
        proc = run_script("cluster_sweep.py", "--cluster_npy", tmp_path / "x.npy", "--algorithm", algorithm,
                          "--sweep_csv", tmp_path / "s.csv")
        assert_one_line_error(proc, "overflow float32")
        assert not (tmp_path / "s.csv").exists()


@pytest.mark.slow
def test_spectral_sweep_of_three_rows_and_small_samples_are_one_line(tmp_path):
    np.save(tmp_path / "x3.npy", embeddings(3, 3, dim=4))
    for algorithm in ("spectral", "spec_ag"):
        proc = run_script("cluster_sweep.py", "--cluster_npy", tmp_path / "x3.npy", "--algorithm", algorithm,
                          "--sweep_csv", tmp_path / "s.csv")
        assert_one_line_error(proc, "the data has 3 rows; the 2-D spectral embedding needs at least 4")
    np.save(tmp_path / "x.npy", embeddings(40, 30, dim=4))
    for algorithm in ("kmeans", "spectral", "ag"):
        proc = run_script("cluster_sweep.py", "--cluster_npy", tmp_path / "x.npy", "--algorithm", algorithm,
                          "--sample", 5, "--k_max", 10, "--sweep_csv", tmp_path / "s.csv")
        assert_one_line_error(proc, "--sample 5 is not larger than --k_max 10")
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("clash", ["sweep_csv", "label_csv", "png_plot"])
def test_sweep_outputs_never_overwrite_the_input(tmp_path, clash):
    npy = tmp_path / "x.npy"
    np.save(npy, embeddings(20, 10, dim=3))
    before = npy.read_bytes()
    outputs = {"sweep_csv": tmp_path / "s.csv", "label_csv": tmp_path / "l.csv", "png_plot": tmp_path / "p.png"}
    outputs[clash] = npy
    flags = [x for name, path in outputs.items() for x in (f"--{name}", path)]
    proc = run_script("cluster_sweep.py", "--cluster_npy", npy, *flags)
    assert_one_line_error(proc, f"--{clash} is the same file as input", "cluster_npy")
    assert npy.read_bytes() == before

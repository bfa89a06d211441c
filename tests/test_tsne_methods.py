"""The t-SNE of the cluster plots: scikit-learn's (the default, the published plots, its cache key
unchanged) or openTSNE (``--tsne opentsne``, the fast-tsne extra): openTSNE's layout is the same
bits in every process and with any thread count, cached apart from scikit-learn's, and changes
only the plot (ids and silhouettes are the same)."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from auditoryhum.clustering import algorithms as cl
from auditoryhum.clustering.algorithms import OPENTSNE_PARAMS
from auditoryhum.defaults import DEFAULT_TSNE_METHOD, OPENTSNE_FFT_MIN_ROWS, TSNE_METHODS
from auditoryhum.errors import ParameterError, UserError
from auditoryhum.io.array_cache import ArrayCache, rows_digest
from auditoryhum.recipe import TSNE_PARAMS

from conftest import REPO, assert_one_line_error, run_script

N_ROWS = 300


def label_rows(n_rows=N_ROWS, n_distinct=40, dim=16, seed=0):
    """Label-embedding-like float32 rows: unit vectors near 5 topics, repeated with skewed counts."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(5, dim))
    rows = centre[rng.integers(0, 5, n_distinct)] + 0.5 * rng.normal(size=(n_distinct, dim))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    weight = 1.0 / np.arange(1, n_distinct + 1) ** 1.1
    pick = np.concatenate([np.arange(n_distinct), rng.choice(n_distinct, n_rows - n_distinct, p=weight / weight.sum())])
    rng.shuffle(pick)
    return rows[pick].astype(np.float32)


@pytest.fixture(scope="module")
def rows():
    return label_rows()


@pytest.fixture(scope="module")
def opentsne_layout(rows):
    return cl.tsne_2d(rows, method="opentsne")


def test_the_methods_and_the_published_default():
    assert TSNE_METHODS == ("sklearn", "opentsne") and DEFAULT_TSNE_METHOD == "sklearn"
    # openTSNE's settings are the recipe's where both have them: 250 exaggerated + 250 normal
    # iterations are scikit-learn's 500 (its exploration phase is 250).
    assert OPENTSNE_PARAMS["perplexity"] == TSNE_PARAMS["perplexity"] == 35.0
    assert OPENTSNE_PARAMS["early_exaggeration"] == TSNE_PARAMS["early_exaggeration"] == 12.0
    assert OPENTSNE_PARAMS["early_exaggeration_iter"] + OPENTSNE_PARAMS["n_iter"] == TSNE_PARAMS["max_iter"] == 500
    assert OPENTSNE_PARAMS["random_state"] == TSNE_PARAMS["random_state"] == 100
    assert (OPENTSNE_PARAMS["initialization"], OPENTSNE_PARAMS["metric"]) == ("random", "euclidean")
    assert OPENTSNE_PARAMS["neighbors"] == "exact" and N_ROWS < OPENTSNE_FFT_MIN_ROWS


@pytest.mark.slow  # openTSNE layout of the module's rows: seconds to tens of seconds here
def test_opentsne_layout_shape_and_values(rows, opentsne_layout):
    Y = opentsne_layout
    assert Y.shape == (N_ROWS, 2) and Y.dtype == np.float64
    assert np.isfinite(Y).all()
    # A real optimised layout, not the 1e-4-wide random start: identical rows land together,
    # far closer than the spread of the whole layout.
    spread = Y.std(axis=0).min()
    assert spread > 1.0
    _, first = np.unique(rows, axis=0, return_inverse=True)
    first = first.ravel()
    within = max(np.abs(Y[first == g] - Y[first == g].mean(axis=0)).max() for g in np.unique(first))
    assert within < 0.25 * spread, (within, spread)


@pytest.mark.slow  # openTSNE layouts in two processes: seconds to tens of seconds here
@pytest.mark.parametrize("gradient", ["bh", pytest.param("fft", marks=pytest.mark.slow)])
def test_opentsne_layout_is_the_same_bits_in_two_processes_and_with_one_thread(tmp_path, rows, gradient):
    # Both negative gradients openTSNE is given (Barnes-Hut below OPENTSNE_FFT_MIN_ROWS, FFT from
    # there), forced here on the small input through the threshold.
    threshold = 0 if gradient == "fft" else N_ROWS + 1
    np.save(tmp_path / "x.npy", rows)
    code = ("import hashlib, sys, numpy as np; import auditoryhum.clustering.algorithms as cl; "
            "cl.OPENTSNE_FFT_MIN_ROWS = int(sys.argv[2]); "
            "Y = cl.tsne_2d(np.load(sys.argv[1]), method='opentsne'); print(hashlib.sha256(Y.tobytes()).hexdigest())")
    digests = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.npy"), str(threshold)], capture_output=True,
                              text=True, timeout=120, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        digests.append(proc.stdout.strip())
    # The thread count (n_jobs=-1: every core) does not move a point: one thread, the same bits.
    from openTSNE import TSNE

    one_thread = dict(OPENTSNE_PARAMS, n_jobs=1, negative_gradient_method=gradient)
    Y1 = np.asarray(TSNE(**one_thread).fit(np.ascontiguousarray(rows, dtype=np.float64)))
    assert digests[0] == digests[1] == hashlib.sha256(Y1.tobytes()).hexdigest()


@pytest.mark.slow  # openTSNE layout of the module's rows: seconds to tens of seconds here
def test_cached_opentsne_layout_is_the_uncached_bits(tmp_path, rows, opentsne_layout):
    cache = ArrayCache(tmp_path / "cache")
    first = cl.tsne_2d(rows, cache=cache, method="opentsne")
    assert (cache.hits, cache.misses) == (0, 1)
    again = cl.tsne_2d(rows, cache=cache, method="opentsne")
    assert (cache.hits, cache.misses) == (1, 1)
    assert first.tobytes() == again.tobytes() == opentsne_layout.tobytes()
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1


@pytest.mark.slow  # scikit-learn and openTSNE layouts: seconds to tens of seconds here
def test_sklearn_default_keeps_its_key_and_the_methods_never_share_an_entry(tmp_path, rows):
    cache = ArrayCache(tmp_path / "cache")
    # A layout stored under the key every earlier version used ("tsne", the recipe's parameters)
    # is what the default reads back: existing caches stay valid.
    marker = np.arange(2 * N_ROWS, dtype=np.float32).reshape(N_ROWS, 2)
    cache.put("tsne", cache.key("tsne", rows_digest(rows), dict(TSNE_PARAMS)), marker)
    assert cl.tsne_2d(rows, cache=cache).tobytes() == marker.tobytes()
    assert cl.tsne_2d(rows, cache=cache, method="sklearn").tobytes() == marker.tobytes()
    assert (cache.hits, cache.misses) == (2, 0)
    # The same cache does not answer an openTSNE request with scikit-learn's layout.
    Y = cl.tsne_2d(rows, cache=cache, method="opentsne")
    assert (cache.hits, cache.misses) == (2, 1)
    assert Y.dtype == np.float64 and not np.array_equal(Y, marker)
    assert sorted(p.parent.name for p in (tmp_path / "cache").rglob("*.npy")) == ["tsne", "tsne-opentsne"]
    # ... nor the other way round: a fresh cache holding only openTSNE's layout computes scikit-learn's.
    other = ArrayCache(tmp_path / "other")
    cl.tsne_2d(rows, cache=other, method="opentsne")
    Ysk = cl.tsne_2d(rows, cache=other)
    assert (other.hits, other.misses) == (0, 2) and Ysk.dtype == np.float32
    from sklearn.manifold import TSNE

    assert Ysk.tobytes() == TSNE(**TSNE_PARAMS).fit_transform(rows).tobytes()


@pytest.mark.slow  # t-SNE layouts: seconds to tens of seconds here
def test_few_rows_lower_the_perplexity_for_both_methods():
    # 30 rows: below both bounds (scikit-learn: perplexity < N; openTSNE: <= (N - 1) / 3).
    X = label_rows(30, 12)
    for method in TSNE_METHODS:
        notes = []
        Y = cl.tsne_2d(X, notes, method=method)
        assert Y.shape == (30, 2) and np.isfinite(Y).all()
        assert notes == ["only 30 rows: t-SNE perplexity lowered from 35 to 9.67"], (method, notes)
    # 60 rows: enough for scikit-learn's perplexity 35, not for openTSNE's 105 neighbours.
    X = label_rows(60, 12)
    notes = []
    cl.tsne_2d(X, notes)
    assert notes == []
    cl.tsne_2d(X, notes, method="opentsne")
    assert notes == ["only 60 rows: t-SNE perplexity lowered from 35 to 19.7"]


def test_a_bad_method_names_the_parameter(tmp_path, rows):
    with pytest.raises(ParameterError, match=r"^tsne must be one of sklearn, opentsne, got 'fast'$"):
        cl.tsne_2d(rows, method="fast")
    from auditoryhum.stages.cluster import cluster

    np.save(tmp_path / "x.npy", rows)
    with pytest.raises(ParameterError) as caught:
        cluster(str(tmp_path / "x.npy"), str(tmp_path / "ids.csv"), None, algorithm="ag", n_clusters=3, tsne="fast")
    assert caught.value.param == "tsne"
    assert not (tmp_path / "ids.csv").exists()
    from auditoryhum.pipeline import RunOptions

    with pytest.raises(ParameterError, match="^tsne must be one of"):
        RunOptions(filedir="clips/*.wav", out_dir=str(tmp_path), text_label_csv="labels.csv", tsne="fast").validate()


@pytest.mark.slow  # a scikit-learn t-SNE layout: seconds here
def test_opentsne_missing_is_one_line_naming_the_fix(monkeypatch, rows):
    import importlib.metadata

    monkeypatch.setitem(sys.modules, "openTSNE", None)  # ``import openTSNE`` raises ImportError
    with pytest.raises(UserError) as caught:
        cl.tsne_2d(rows, method="opentsne")
    message = str(caught.value)
    assert "\n" not in message
    assert 'pip install "auditoryhum[fast-tsne]"' in message and '"sklearn"' in message
    # Not installed at all (no metadata): the same line, before any cache lookup.

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with pytest.raises(UserError) as caught:
        cl.tsne_2d(rows, cache=ArrayCache(None, enabled=False), method="opentsne")
    assert str(caught.value) == message
    # scikit-learn's default needs neither.
    assert cl.tsne_2d(label_rows(40, 12)).shape == (40, 2)


@pytest.mark.slow
def test_cli_tsne_flag_changes_only_the_plot(tmp_path, rows):
    np.save(tmp_path / "x.npy", rows)
    outputs = {}
    for method in TSNE_METHODS:
        proc = run_script("cluster_ag.py", "--cluster_npy", tmp_path / "x.npy", "--n_clusters", 4,
                          "--label_csv", tmp_path / f"{method}.csv", "--png_plot", tmp_path / f"{method}.png",
                          "--tsne", method, "--cache_dir", tmp_path / "cache", timeout=180)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1].startswith("Silhouette Score 0.")
        png = (tmp_path / f"{method}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        outputs[method] = (proc.stdout, (tmp_path / f"{method}.csv").read_bytes(), png)
    (sk_out, sk_ids, sk_png), (ot_out, ot_ids, ot_png) = outputs["sklearn"], outputs["opentsne"]
    assert sk_ids == ot_ids and len(sk_ids.splitlines()) == N_ROWS
    assert sk_out == ot_out  # the same Silhouette Score line
    assert sk_png != ot_png  # another layout
    assert sorted(p.parent.name for p in (tmp_path / "cache").rglob("*.npy") if p.parent.name.startswith("tsne")) == \
        ["tsne", "tsne-opentsne"]


@pytest.mark.slow
def test_cli_bad_tsne_value_is_one_line_naming_the_flag(tmp_path, rows):
    np.save(tmp_path / "x.npy", rows)
    proc = run_script("cluster_spectral.py", "--cluster_npy", tmp_path / "x.npy", "--n_clusters", 3,
                      "--label_csv", tmp_path / "ids.csv", "--png_plot", tmp_path / "p.png", "--tsne", "fast")
    assert_one_line_error(proc, "--tsne", "fast", "sklearn", "opentsne")
    assert not (tmp_path / "ids.csv").exists()


def test_auditoryhum_run_passes_tsne_to_its_cluster_step_and_keeps_old_records_valid(tmp_path, monkeypatch):
    import auditoryhum
    from auditoryhum.cli import _BY_NAME, build_parser
    from auditoryhum.pipeline import build_steps, options_from_args

    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.wav").touch()
    parser = build_parser(_BY_NAME["run"])
    common = ["--filedir", str(tmp_path / "clips" / "*.wav"), "--out_dir", str(tmp_path / "out"), "--text_label_csv", "l.csv"]
    calls = []
    monkeypatch.setattr(auditoryhum, "cluster", lambda *a, **kw: calls.append(kw), raising=False)
    for argv, expected in (([], "sklearn"), (["--tsne", "opentsne"], "opentsne")):
        options = options_from_args(parser.parse_args(common + argv)).validate()
        assert options.tsne == expected
        options.n_clusters = 3  # the final k given, so the step runs without a sweep decision
        step = next(s for s in build_steps(options) if s.name == "cluster")
        # The default stays out of the step's record: runs recorded before the option stay up to date.
        assert step.options == {"algorithm": "ag", "n_clusters": 3, **({} if expected == "sklearn" else {"tsne": expected})}
        step.run()
        assert calls[-1]["tsne"] == expected and calls[-1]["n_clusters"] == 3

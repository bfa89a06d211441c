#!/usr/bin/env python3
"""Benchmark of the k sweep (cluster_sweep.py) against the published one-process-per-k method.

On N = 5,000 x 768 clustered synthetic embeddings with many exact duplicate rows (real label
embeddings repeat: ADVANCE has 5,075 clips and 668 distinct kept labels):

(a) our sweep, k = 2..840, as a user runs it (``cluster_sweep.py`` in a fresh process, table
    and plot written);
(b) the published method: one ``cluster_ag.py`` process per k (Ward, silhouette, t-SNE,
    plot), timed at a few k spread over the range and extrapolated to all 839 values of k
    by linear interpolation of time against k;

then the ratio, an equivalence check (our silhouettes against the ``Silhouette Score`` the
single-k processes printed, and against ``sklearn.metrics.silhouette_score``), and at
N = 14,400 (TAU 2019's size, 640 distinct rows) our time and peak RSS.

Targets on the 2-core development machine: (a) <= 30 s, ratio >= 500, N = 14,400 in <= 3 min
and <= 4 GiB. Run: ``.venv/bin/python benchmarks/bench_sweep.py`` (about 3 minutes).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

K_MIN, K_MAX = 2, 840
TARGET_SWEEP_S = 30.0
TARGET_RATIO = 500.0
TARGET_BIG_S = 180.0
TARGET_BIG_GIB = 4.0


def synthetic_embeddings(n_rows, n_distinct, dim=768, centres=40, seed=0):
    """Clustered unit vectors (float32, like sentence embeddings) of which only ``n_distinct``
    are distinct; the other rows repeat them with Zipf-like multiplicities, shuffled."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(centres, dim))
    rows = centre[rng.integers(0, centres, n_distinct)] + 0.6 * rng.normal(size=(n_distinct, dim))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    weight = rng.zipf(1.6, size=n_distinct).astype(float)
    pick = np.concatenate([np.arange(n_distinct), rng.choice(n_distinct, n_rows - n_distinct, p=weight / weight.sum())])
    rng.shuffle(pick)
    return rows[pick].astype(np.float32)


def timed_run(script, *args):
    """Run a top-level script in a fresh process; return (seconds, peak RSS bytes, stdout)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(REPO / script), *map(str, args)], cwd=REPO, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed (exit {proc.returncode}):\n{stderr}")
    return seconds, usage.ru_maxrss * 1024, stdout


def read_sweep(path):
    from auditoryhum.io.artefacts import read_sweep_csv

    return read_sweep_csv(str(path))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--published-ks", default="2,211,421,630,840", help="k values timed for the per-process method")
    parser.add_argument("--skip-big", action="store_true", help="skip the N = 14,400 run")
    args = parser.parse_args()
    published_ks = sorted({int(k) for k in args.published_ks.split(",")})
    if len(published_ks) < 5:
        raise SystemExit("time the published method at 5 or more k values")

    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    from auditoryhum.clustering.memory import MEMORY_SHARE, available_memory_bytes
    from auditoryhum.clustering.k_sweep import largest_ward_rows

    print(f"machine: {os.cpu_count()} CPU cores, python {sys.version.split()[0]}")
    available = available_memory_bytes()
    if available:
        budget = available * MEMORY_SHARE
        print(
            f"memory: {available / 2**30:.1f} GiB available; the sweep plans with {MEMORY_SHARE:.0%} of it, "
            f"so exact Ward fits up to N = {largest_ward_rows(budget)} rows (8 N^2 bytes: condensed distances held twice)"
        )

    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        tmp = Path(tmp)
        X = synthetic_embeddings(5000, 670)
        npy = tmp / "emb5000.npy"
        np.save(npy, X)
        print(f"\ndata: N = {X.shape[0]} x {X.shape[1]} float32, {len(np.unique(X, axis=0))} distinct rows")

        ours_s, ours_rss, stdout = timed_run(
            "cluster_sweep.py", "--cluster_npy", npy, "--k_min", K_MIN, "--k_max", K_MAX,
            "--sweep_csv", tmp / "sweep.csv", "--png_plot", tmp / "sweep.png", "--quiet",
        )
        table = read_sweep(tmp / "sweep.csv")
        print(f"(a) our sweep, k = {K_MIN}..{K_MAX} ({len(table['k'])} values, one process): {ours_s:.1f} s, peak RSS {ours_rss / 2**30:.2f} GiB")
        print("    " + stdout.splitlines()[0] + "; " + stdout.splitlines()[3])

        per_k = []
        printed = {}
        for k in published_ks:
            seconds, _, out = timed_run(
                "cluster_ag.py", "--cluster_npy", npy, "--n_clusters", k,
                "--label_csv", tmp / f"ag_{k}.csv", "--png_plot", tmp / f"ag_{k}.png", "--quiet",
            )
            per_k.append(seconds)
            printed[k] = float(out.strip().splitlines()[-1].split()[-1])
            print(f"(b) published method, one process at k = {k}: {seconds:.1f} s")
        all_k = np.arange(K_MIN, K_MAX + 1)
        published_total = float(np.interp(all_k, published_ks, per_k).sum())
        ratio = published_total / ours_s
        print(
            f"(b) published method extrapolated to all {all_k.size} k: {published_total:.0f} s = {published_total / 3600:.2f} h "
            f"(mean {np.mean(per_k):.1f} s per process)"
        )
        print(f"ratio (b)/(a): {ratio:.0f}x")

        print("\nequivalence: our silhouette vs the single-k processes' printed score and vs silhouette_score")
        worst = 0.0
        for k in published_ks:
            ours = float(table["silhouette"][k - K_MIN])
            labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(X)
            reference = float(silhouette_score(X, labels))
            worst = max(worst, abs(ours - printed[k]), abs(ours - reference))
            print(f"  k = {k}: ours {ours!r}, cluster_ag.py {printed[k]!r}, silhouette_score {reference!r}, |diff| {abs(ours - reference):.1e}")
        print(f"  largest difference: {worst:.1e} (required <= 1e-9)")

        big_s = big_rss = None
        if not args.skip_big:
            Xb = synthetic_embeddings(14400, 640, seed=1)
            npy_b = tmp / "emb14400.npy"
            np.save(npy_b, Xb)
            del Xb
            big_s, big_rss, _ = timed_run(
                "cluster_sweep.py", "--cluster_npy", npy_b, "--k_min", K_MIN, "--k_max", K_MAX,
                "--sweep_csv", tmp / "sweep_big.csv", "--png_plot", tmp / "sweep_big.png", "--quiet",
            )
            print(f"\nN = 14400 x 768 (640 distinct rows): our sweep k = {K_MIN}..{K_MAX}: {big_s:.1f} s, peak RSS {big_rss / 2**30:.2f} GiB")

    print("\ntargets:")
    checks = [
        (f"N = 5000 sweep <= {TARGET_SWEEP_S:.0f} s", ours_s <= TARGET_SWEEP_S, f"{ours_s:.1f} s"),
        (f"ratio >= {TARGET_RATIO:.0f}x", ratio >= TARGET_RATIO, f"{ratio:.0f}x"),
        ("silhouettes within 1e-9", worst <= 1e-9, f"{worst:.1e}"),
    ]
    if big_s is not None:
        checks.append((f"N = 14400 sweep <= {TARGET_BIG_S:.0f} s", big_s <= TARGET_BIG_S, f"{big_s:.1f} s"))
        checks.append((f"N = 14400 peak RSS <= {TARGET_BIG_GIB:.0f} GiB", big_rss <= TARGET_BIG_GIB * 2**30, f"{big_rss / 2**30:.2f} GiB"))
    for name, ok, value in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {value}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

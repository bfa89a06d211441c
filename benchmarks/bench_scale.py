#!/usr/bin/env python3
"""The v1 taxonomy at collection size: how time and memory grow from 14,400 to millions of clips.

The chain a user runs after scoring (each step a fresh process of the real script):

    features_st.py (bundled all-mpnet-base-v2)  ->  cluster_sweep.py (Ward, k = 2..840)
      ->  cluster_ag.py at the chosen k (ids + t-SNE plot)  ->  composite_label_stats.py

on kept labels drawn with Zipf frequencies from U distinct word pairs (made from a list of sound
words: AudioCaps captions are not available here), at N = 14,400 (TAU 2019's size) and at
N = 1,000,000 (and 2,000,000 with ``--sizes``). For every size it prints each step's wall time and
peak RSS, the total, the cost per clip, and the ratio to the first size.

At N <= 20,000 it also runs what the published scripts run (scikit-learn's
AgglomerativeClustering on all rows and ``silhouette_score``) at the chosen k and checks that the
partition is the same and the silhouette equal. ``--fit`` measures how many distinct rows the
exact distinct-row Ward fits in this machine's memory (time and peak RSS of the tree at a few U).

Targets (issue 19), 2-core machine: N = 1,000,000, U = 5,000: <= 180 s and <= 4 GB peak RSS;
N = 2,000,000: <= 360 s.

Run: ``.venv/bin/python benchmarks/bench_scale.py`` (about 5 minutes; ``--sizes 14400,1000000,2000000``).
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

TARGETS = {1_000_000: (180.0, 4.0), 2_000_000: (360.0, None)}

SOUND_WORDS = (
    "dog bark cat meow bird chirp car engine horn siren wind rain thunder water stream river ocean wave "
    "people talking speech child laugh crowd cheer music guitar piano drum bell clock tick door knock "
    "footsteps walking running train passing plane flying helicopter motorcycle truck bus traffic street "
    "city park forest insects buzzing frog croak rooster crow cow moo sheep horse gallop applause whistle "
    "typing keyboard phone ringing alarm beeping machine humming fan vacuum cleaner dishes clinking cooking "
    "sizzling frying baby crying cough sneeze snoring breathing heartbeat fire crackling glass breaking "
    "hammer drilling saw cutting construction metal clanging paper rustling leaves wooden creaking splash"
).split()


def word_pairs(n_distinct: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    words = sorted(set(SOUND_WORDS))
    pairs = {f"{a} {b}" for a in words for b in words if a != b}
    pairs = sorted(pairs)
    if n_distinct > len(pairs):
        raise SystemExit(f"at most {len(pairs)} distinct word pairs")
    return [pairs[i] for i in rng.choice(len(pairs), n_distinct, replace=False)]


def write_scores(path: Path, n_rows: int, labels, seed: int = 1) -> int:
    """A scores file of ``n_rows`` clips whose kept labels follow a Zipf law over ``labels``."""
    rng = np.random.default_rng(seed)
    weight = 1.0 / np.arange(1, len(labels) + 1) ** 1.05
    pick = rng.choice(len(labels), n_rows, p=weight / weight.sum())
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, n_rows, 100_000):
            f.write("".join(f"{i + 1}, clips/clip_{i + 1:07d}.wav, {labels[j]}, 0.5\n"
                            for i, j in zip(range(start, min(n_rows, start + 100_000)), pick[start:start + 100_000])))
    return int(np.unique(pick).size)


def run(cmd, log, name=None):
    """Run one step; returns (seconds, peak RSS in GiB of that process)."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([str(c) for c in cmd], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed; see {log}:\n{Path(log).read_text()[-2000:]}")
    if name:
        print(f"  {name:<16} {seconds:8.1f} s   peak RSS {usage.ru_maxrss / 2**20:5.2f} GiB", flush=True)
    return seconds, usage.ru_maxrss / 2**20


def chain(folder: Path, n_rows: int, n_distinct: int, st_model: str, check_sklearn: bool):
    py = sys.executable
    scores = folder / "scores.csv"
    used = write_scores(scores, n_rows, word_pairs(n_distinct))
    print(f"\nN = {n_rows:,} clips, U = {used:,} distinct labels", flush=True)
    steps = {}
    steps["features_st"] = run([py, "features_st.py", "--label_csv", scores, "--st_model", st_model,
                                "--st_npy", folder / "st.npy", "--quiet"], folder / "st.log", "features_st")
    steps["cluster_sweep"] = run([py, "cluster_sweep.py", "--cluster_npy", folder / "st.npy", "--sweep_csv",
                                  folder / "sweep.csv", "--no_cache", "--quiet"], folder / "sweep.log", "cluster_sweep")
    import json

    chosen = json.loads((folder / "sweep_decision.json").read_text())["chosen_k"]
    steps["cluster_ag"] = run([py, "cluster_ag.py", "--cluster_npy", folder / "st.npy", "--n_clusters", chosen,
                               "--label_csv", folder / "ids.csv", "--png_plot", folder / "ag.png", "--no_cache",
                               "--quiet"], folder / "ag.log", "cluster_ag")
    steps["composite_stats"] = run([py, "composite_label_stats.py", "--label_csv", folder / "ids.csv",
                                    "--top_label_scores_csv", scores], folder / "stats.log",
                                    "composite_stats")
    check = None
    if check_sklearn:
        # In a process of its own: the benchmark's own process stays small, since a child's peak
        # RSS as the kernel reports it starts from its parent's size at the fork.
        code = ("import json, sys, time, numpy as np; from sklearn.cluster import AgglomerativeClustering;"
                "from sklearn.metrics import silhouette_score; from auditoryhum.io.artefacts import read_cluster_ids;"
                "folder, k = sys.argv[1], int(sys.argv[2]); X = np.load(folder + '/st.npy');"
                "ours = read_cluster_ids(folder + '/ids.csv'); t = time.perf_counter();"
                "ref = AgglomerativeClustering(n_clusters=k, linkage='ward').fit_predict(X);"
                "print(json.dumps({'ids': ours.tolist() == ref.tolist(), 'pairs': len(set(zip(ours.tolist(), ref.tolist()))),"
                "'ours': len(set(ours.tolist())), 'ref': len(set(ref.tolist())), 'sil': float(silhouette_score(X, ref)),"
                "'seconds': time.perf_counter() - t}))")
        out = subprocess.run([sys.executable, "-c", code, str(folder), str(chosen)], cwd=REPO, capture_output=True,
                             text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        same = got["pairs"] == got["ours"] == got["ref"]
        printed = [line for line in (folder / "ag.log").read_text().splitlines() if line.startswith("Silhouette Score")]
        sil_ours = float(printed[-1].split()[-1]) if printed else float("nan")
        check = (same, got["ids"], abs(sil_ours - got["sil"]), got["seconds"])
    return used, chosen, steps, check


def fit_distinct(sizes):
    """Time and peak RSS of the distinct-row Ward tree at a few U, each in a fresh process."""
    code = ("import numpy as np, resource, sys, time; from auditoryhum.clustering.ward import ward_linkage_counts;"
            "u=int(sys.argv[1]); rng=np.random.default_rng(0); X=rng.normal(size=(u,768)).astype(np.float32);"
            "c=rng.integers(1,50,size=u); t=time.perf_counter(); ward_linkage_counts(X,c);"
            "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/2**20)")
    rows = []
    for u in sizes:
        out = subprocess.run([sys.executable, "-c", code, str(u)], cwd=REPO, capture_output=True, text=True, check=True)
        seconds, gib = map(float, out.stdout.split())
        rows.append((u, seconds, gib))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="14400,1000000", help="comma-separated numbers of clips")
    parser.add_argument("--distinct", type=int, default=5000, help="distinct word pairs to draw labels from")
    parser.add_argument("--st_model", default=None, help="sentence model (default: the bundled all-mpnet-base-v2)")
    parser.add_argument("--fit", default="", help="comma-separated U for the distinct-row Ward memory fit, e.g. 5000,10000,20000")
    args = parser.parse_args()
    st_model = args.st_model or subprocess.run([sys.executable, "-m", "auditoryhum", "models", "--path", "sentence"],
                                               capture_output=True, text=True, check=True, cwd=REPO).stdout.strip()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(f"sentence model: {st_model}\n{os.cpu_count()} CPUs; labels from {args.distinct} distinct word pairs (Zipf)")
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix=f"bench-scale-{n}-") as tmp:
            used, chosen, steps, check = chain(Path(tmp), n, args.distinct, st_model, check_sklearn=n <= 20_000)
        total = sum(s for s, _ in steps.values())
        peak = max(g for _, g in steps.values())
        results.append((n, total))
        print(f"  chosen k = {chosen}")
        print(f"  {'total':<16} {total:8.1f} s   peak RSS {peak:5.2f} GiB   {1e6 * total / n:8.1f} us per clip")
        if check is not None:
            same, ids, diff, seconds = check
            print(f"  scikit-learn on all rows ({seconds:.0f} s): partition identical: {same}; ids identical: {ids}; "
                  f"|silhouette difference| = {diff:.2e} (printed to the script's precision)")
        target = TARGETS.get(n)
        if target:
            t_s, t_gib = target
            verdict = "met" if total <= t_s and (t_gib is None or peak <= t_gib) else "MISSED"
            print(f"  target <= {t_s:.0f} s" + (f" and <= {t_gib:.0f} GB" if t_gib else "") + f": {verdict}")
    if len(results) > 1:
        n0, t0 = results[0]
        for n, t in results[1:]:
            print(f"N = {n:,} against N = {n0:,}: {n / n0:.0f}x the clips in {t / t0:.1f}x the time")
    if args.fit:
        print("\nWard on distinct rows (768-d float32, counts 1..49), fresh process each:")
        rows = fit_distinct([int(u) for u in args.fit.split(",")])
        for u, seconds, gib in rows:
            print(f"  U = {u:>6,}: {seconds:7.1f} s, peak RSS {gib:5.2f} GiB")
        u, _, gib = rows[-1]
        per = gib / (u * u)
        budget = 24 * 0.85
        print(f"  peak grows as {per * 2**30:.1f} bytes x U^2: about {int((budget / per) ** 0.5):,} distinct rows fit "
              f"in 85 % of 24 GiB (the sweep's silhouette needs a second U x U matrix: about "
              f"{int((budget / (2 * per)) ** 0.5):,})")


if __name__ == "__main__":
    main()

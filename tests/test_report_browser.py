"""The run report in a real browser: headless Debian Chromium driven by playwright-core (npm).

A small run is made with the real tools (review selection, k sweep, agglomerative clustering
with its t-SNE plot), each recorded in a run log through ``AUDITORYHUM_RUN_LOG``; the report
is written, its folder copied elsewhere and the original deleted (so only relative audio
paths can work), and it is loaded from file://. The Node driver ``tests/browser/report_page.mjs``
reports what the browser rendered; this file asserts on it: no console errors, no request
other than the page and its audio from disk, the key numbers in the rendered text, every
image decoded with a natural size, the players loaded.

Needs ``/usr/bin/chromium`` (or ``AUDITORYHUM_CHROMIUM``), ``node`` and ``npm``; skipped, with
the reason, only when one of these cannot be found or installed (see tools/ensure_browser.sh).
"""

import shutil

import numpy as np
import pytest

from auditoryhum.io.artefacts import read_cluster_ids, read_png
from conftest import REPO, browser_or_skip, run_browser_driver, run_script, write_tone


# (clip, kept label, score, label-file line); 12 clips in three groups of four.
CLIPS = [
    ("wind_1.wav", "wind noise", "0.31", "wind noise, strong wind"),
    ("wind_2.wav", "wind noise", "0.29", "wind noise"),
    ("wind_3.wav", "strong wind", "0.05", "strong wind, <b>gusts</b>"),
    ("wind_4.wav", "wind noise", "0.4", "wind noise"),
    ("cafe_1.wav", "people talking", "0.5", "people talking, cups clinking"),
    ("cafe_2.wav", "people talking", "0.45", "people talking"),
    ("cafe 3 #\u00e9.wav", "", "nan", ""),
    ("cafe_4.wav", "cups clinking", "0.35", "cups clinking"),
    ("road_1.wav", "car horn", "0.6", "car horn"),
    ("road_2.wav", "engine idling", "0.2", "engine idling, car horn"),
    ("road_3.wav", "car horn", "0.55", "car horn"),
    ("road_4.wav", "car horn", "0.65", "car horn"),
]
# Scores after the human annotations of lines 3, 7 and 10 (line 7 had none before: left out).
ANNOTATIONS = {3: "wind gusts", 7: "cafe chatter", 10: "engine idling, car horn"}
SCORES_WITH = {3: "0.45", 7: "0.5", 10: "0.3"}


def _make_run(work, env):
    lines_scores, lines_labels, lines_with = [], [], []
    for i, (name, kept, score, candidates) in enumerate(CLIPS, start=1):
        write_tone(work / "clips" / name, seconds=1.0, freq=110.0 * i)
        lines_scores.append(f"{i}, clips/{name}, {kept}, {score}\n")
        lines_labels.append(candidates + "\n")
        lines_with.append(f"{i}, clips/{name}, {ANNOTATIONS.get(i, kept)}, {SCORES_WITH.get(i, score)}\n")
    (work / "scores.csv").write_text("".join(lines_scores), encoding="utf-8")
    (work / "labels.csv").write_text("".join(lines_labels), encoding="utf-8")
    (work / "scores_with.csv").write_text("".join(lines_with), encoding="utf-8")
    (work / "annotations.csv").write_text("".join(ANNOTATIONS.get(i, "") + "\n" for i in range(1, 11)), encoding="utf-8")
    rng = np.random.default_rng(0)
    centres = np.repeat(np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 6.0, 0.0]]), 4, axis=0)
    np.save(work / "features.npy", centres + 0.3 * rng.standard_normal(centres.shape))

    steps = [
        ("util_select_review.py", "--top_label_scores_csv", "scores.csv", "--text_label_csv", "labels.csv", "--count", "2", "--selection_csv", "selection.csv"),
        ("cluster_sweep.py", "--cluster_npy", "features.npy", "--k_max", "8", "--sweep_csv", "sweep.csv", "--png_plot", "sweep.png"),
        ("cluster_ag.py", "--cluster_npy", "features.npy", "--n_clusters", "3", "--label_csv", "clusters.csv", "--png_plot", "tsne.png"),
    ]
    for script, *args in steps:
        proc = run_script(script, *args, cwd=work, env=env)
        assert proc.returncode == 0, proc.stderr
    ids = read_cluster_ids(str(work / "clusters.csv"))
    sizes = {int(c): int(n) for c, n in zip(*np.unique(ids, return_counts=True))}
    names = {int(ids[0]): "Wind, outdoors", int(ids[4]): "Caf\u00e9 <chatter>", int(ids[8]): "Road traffic"}
    (work / "taxonomy.csv").write_text(
        "cluster,composite_label,n_clips,top_labels\n" + "".join(f'{c},"{names[c]}",{sizes[c]},x\n' for c in sorted(sizes)), encoding="utf-8"
    )
    return ids


@pytest.mark.slow  # four tool processes (clustering, t-SNE, plots) and Chromium: about 15 s
def test_report_in_headless_chromium(tmp_path):
    chromium, node = browser_or_skip()
    work = tmp_path / "made"
    env = {"AUDITORYHUM_RUN_LOG": str(work / "run_log.jsonl")}
    ids = _make_run(work, env)
    proc = run_script(
        "report.py", "--html", "report/index.html", "--title", "Browser <test> run",
        "--top_label_scores_csv", "scores.csv", "--selection_csv", "selection.csv",
        "--scores_with_human_csv", "scores_with.csv", "--annotations", "annotations.csv",
        "--sweep_csv", "sweep.csv", "--cluster_csv", "clusters.csv", "--taxonomy_csv", "taxonomy.csv",
        "--tsne_png", "tsne.png",
        cwd=work, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    assert proc.stdout.startswith("Report report/index.html: 7 of 7 sections shown")
    tsne = read_png(str(work / "tsne.png"))

    moved = tmp_path / "sent to a colleague" / "run"
    shutil.copytree(work, moved)
    shutil.rmtree(work)
    scenario = {"chromium": chromium, "page": (moved / "report" / "index.html").as_uri(), "profile_dir": str(tmp_path / "profile")}
    seen = run_browser_driver(node, "report_page.mjs", scenario, tmp_path)
    load = seen["steps"]["load"]

    # Renders: the title as text, every section shown, no script at all, nothing wider than the window.
    assert load["title"] == "Browser <test> run" and load["h1"] == "Browser <test> run"
    assert [s["id"] for s in load["sections"]] == ["summary", "scores", "selection", "boost", "sweep", "tsne", "clusters", "runs"]
    assert all(s["state"] == "shown" for s in load["sections"][1:]), load["sections"]
    assert load["scripts"] == 0 and seen["dialogs"] == []
    assert not load["overflowing"]

    # Key numbers, as rendered. Scores: 11 numbers and a nan; the selection (the 2 lowest + the nan clip) sets the threshold.
    fig = {k: v["text"] for k, v in load["figures"].items()}
    scored = [float(c[2]) for c in CLIPS if c[2] != "nan"]
    assert fig["fig-clips"] == "12" and fig["fig-nan"] == "1" and fig["fig-scored"] == "11"
    assert fig["fig-mean"] == f"{np.mean(scored):.4f}" == "0.3955"
    assert fig["fig-threshold"] == "0.2000"
    assert fig["fig-selected"] == "3" and fig["fig-selected-nan"] == "1"
    # Boost over lines 3 and 10 (line 7 has no score before): (0.05 + 0.2) / 2 -> (0.45 + 0.3) / 2
    assert (fig["fig-annotated"], fig["fig-boost-used"]) == ("3", "2")
    assert (fig["fig-boost-before"], fig["fig-boost-after"], fig["fig-boost-diff"]) == ("0.1250", "0.3750", "+0.2500")
    # Three well separated groups: the sweep chooses k = 3.
    assert fig["fig-chosen-k"] == "3" and fig["fig-penalty"] == "0.001"
    assert fig["fig-cluster-clips"] == "12" and fig["fig-n-clusters"] == "3"
    assert fig["fig-runs"] == "3" and fig["fig-runs-failed"] == "0"
    text = load["text"]
    for phrase in ("Mean CLAP score 0.3955", "Score boost from human labels +0.2500", "Chosen k 3", "Café <chatter>", "Road traffic"):
        assert phrase in text, phrase

    # Tables: worst first with players; clusters with their sizes and composite labels.
    assert [r[1] for r in load["selection_rows"]] == ["7", "3", "10"]
    assert "strong wind, <b>gusts</b>" in load["selection_rows"][1][5]
    clusters = {r[0]: r for r in load["cluster_rows"]}
    assert sorted(clusters) == ["0", "1", "2"]
    for c in ("0", "1", "2"):
        assert clusters[c][1] == "4" and clusters[c][2].startswith("33.3 %")
    assert clusters[str(ids[4])][3] == "Café <chatter>"
    assert "people talking (2)" in clusters[str(ids[4])][4]
    assert [r[0] for r in load["boost_rows"]] == ["3", "7", "10"]

    # Images decoded at their natural size: histogram, sweep curves, the t-SNE plot as drawn.
    images = {img["id"]: img for img in load["images"]}
    assert sorted(images) == ["img-scores", "img-sweep", "img-tsne"]
    for img in images.values():
        assert img["complete"] and img["width"] > 0 and img["height"] > 0 and img["shown_width"] > 0 and img["scheme"] == "data", img
    assert (images["img-tsne"]["width"], images["img-tsne"]["height"]) == (tsne.width, tsne.height)

    # Players: relative paths, percent-encoded, loaded from the moved folder.
    assert [a["src"] for a in load["audio"]] == ["../clips/cafe%203%20%23%C3%A9.wav", "../clips/wind_3.wav", "../clips/road_2.wav"]
    for audio in load["audio"]:
        assert audio["error"] is None and audio["ready"] >= 1, audio
        assert audio["duration"] == pytest.approx(1.0, abs=0.01)

    # The manifest lists the three recorded commands, runnable from the run's folder.
    listing = load["listing"].splitlines()
    commands = [line for line in listing if not line.startswith(("#", "cd "))]
    assert [c.split()[1] for c in commands] == [str(REPO / s) for s in ("util_select_review.py", "cluster_sweep.py", "cluster_ag.py")]
    assert "scikit-learn" in text and '"random_state": 100' in text

    # The table of contents links work.
    assert seen["steps"]["toc"]["hash"] == "#clusters" and abs(seen["steps"]["toc"]["top"]) <= 2

    # No errors, and no request other than the page and its audio from disk (data: images).
    assert seen["page_errors"] == []
    assert [m for m in seen["console"] if m["type"] in ("error", "warning")] == []
    assert seen["failed_requests"] == []
    schemes = {url.split(":", 1)[0] for url in seen["requests"]}
    assert schemes <= {"file", "data"}, seen["requests"]
    assert any(url.endswith("/report/index.html") for url in seen["requests"])
    # Even a script that tried could not reach the network: the page's CSP refuses it.
    csp = seen["steps"]["csp"]
    assert csp["fetch"].startswith("refused") and csp["requests_before"] == len(seen["requests"])
    assert any("Content Security Policy" in m["text"] for m in csp["console"]), csp

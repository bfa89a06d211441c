"""The run report (auditoryhum.report, report.py) and the run log (auditoryhum.run_log).

The page in a real browser is tested in test_report_browser.py.
"""

import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from auditoryhum import run_log
from auditoryhum.clustering import algorithms as clustering
from auditoryhum.io.artefacts import SelectionRow, read_taxonomy_csv, write_selection, write_sweep_csv
from auditoryhum.report import (
    ReportInputs,
    command_listing,
    gather,
    render_report,
    review_threshold,
)
from conftest import REPO, assert_one_line_error, run_script, write_tone

NAN = math.nan
# For runs that must not see a run log set in the environment of the whole test session.
NO_LOG = {"AUDITORYHUM_RUN_LOG": ""}


# --- helpers ---------------------------------------------------------------------------


class _Page(HTMLParser):
    """Collects elements' attributes and the text of elements with an id."""

    def __init__(self):
        super().__init__()
        self.tags = []  # (tag, attrs dict)
        self.text_by_id = {}
        self._open = []  # [id, depth, parts] of elements with an id being read
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag in ("img", "meta", "br", "input", "link"):
            return
        self._depth += 1
        if "id" in attrs:
            self._open.append([attrs["id"], self._depth, []])

    def handle_endtag(self, tag):
        if tag in ("img", "meta", "br", "input", "link"):
            return
        while self._open and self._open[-1][1] >= self._depth:
            ident, _, parts = self._open.pop()
            self.text_by_id[ident] = "".join(parts).strip()
        self._depth -= 1

    def handle_data(self, data):
        for entry in self._open:
            entry[2].append(data)

    def by_tag(self, tag):
        return [a for t, a in self.tags if t == tag]

    def attr_of(self, ident, name):
        return next(a.get(name) for _, a in self.tags if a.get("id") == ident)


def _parse(text):
    page = _Page()
    page.feed(text)
    page.close()
    return page


def _scores_file(path, rows):
    """rows: (path, label, score) -> a scores file (i from 1)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{i}, {p}, {label}, {score}\n" for i, (p, label, score) in enumerate(rows, start=1)]
    Path(path).write_text("".join(lines), encoding="utf-8")
    return str(path)


def _report(tmp_path, **inputs):
    html_path = str(tmp_path / "out" / "report.html")
    data = gather(ReportInputs(**{k: str(v) for k, v in inputs.items()}), html_path)
    return data, render_report(data)


SCORES = [("a.wav", "dog barking", 0.1), ("b.wav", "car horn", 0.2), ("c.wav", "rain falling", 0.3), ("d.wav", "", NAN), ("e.wav", "car horn", 0.4)]


# --- pure computations -----------------------------------------------------------------


def test_review_threshold_default_is_the_lowest_one_percent():
    scores = [0.5, 0.1, NAN, 0.3] + [0.9] * 196  # 200 clips: ceil(2) = 2 lowest scored clips
    threshold, rule = review_threshold(scores)
    assert threshold == 0.3
    assert rule.startswith("the lowest 1 % of scores (ceil(200 x 0.01) = 2)")
    assert review_threshold([NAN, NAN]) == (None, "no clip has a score")


def test_review_threshold_from_a_selection_is_its_highest_score():
    rows = [SelectionRow(3, "c.wav", "", NAN, ""), SelectionRow(1, "a.wav", "x", 0.1, "x"), SelectionRow(2, "b.wav", "y", 0.25, "y")]
    threshold, rule = review_threshold([0.1, 0.25, NAN, 0.9], rows)
    assert threshold == 0.25 and "2 scored clips" in rule
    assert review_threshold([0.1], rows[:1])[0] is None


def _sweep_table(path, ks, sil, penalty, decision=True):
    """A sweep table as cluster_sweep.py writes it, with (or, like an older sweep, without) its decision file."""
    from auditoryhum.clustering import k_sweep as sw
    from auditoryhum.io.artefacts import write_decision
    from auditoryhum.io.hashing import file_sha256

    ks = np.asarray(ks)
    sil = np.asarray(sil, dtype=float)
    n = len(ks)
    write_sweep_csv(str(path), [ks, sil, sw.adjusted_scores(ks, sil, penalty), np.ones(n), np.ones(n), np.zeros(n, dtype=int)])
    if decision:
        result = sw.SweepResult("ag", ks, sil, np.ones(n), np.ones(n), np.zeros(n, dtype=int), n_rows=100, n_distinct=100)
        doc = sw.decision_document(result, penalty, sw.choose_k(ks, sil, penalty), sw.lambda_path(ks, sil),
                                   file_sha256(str(path)), path.name)
        write_decision(str(path), doc)
    return path


def test_sweep_without_a_decision_file_is_shown_but_not_decided(tmp_path):
    ks = np.arange(2, 8)
    sil = np.array([0.25, 0.40, 0.37, 0.40, NAN, 0.10])
    table = _sweep_table(tmp_path / "old_sweep.csv", ks, sil, 0.05, decision=False)
    data, text = _report(tmp_path, sweep_csv=table)
    assert data.sweep is not None and data.sweep.chosen_k is None and data.sweep.penalty is None
    assert data.sweep.best_silhouette_k is None
    assert "no decision file" in data.problems["sweep"][0] and "old_sweep_decision.json" in data.problems["sweep"][0]
    page = _parse(text)
    assert "fig-chosen-k" not in page.text_by_id
    assert page.attr_of("img-sweep", "src").startswith("data:image/png;base64,")  # the curves are still drawn


def test_sweep_decision_for_other_table_bytes_is_not_trusted(tmp_path):
    ks = np.arange(2, 7)
    table = _sweep_table(tmp_path / "sweep.csv", ks, [0.40, 0.50, 0.54, 0.58, 0.59], 0.0)
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines[:-1]) + "\n")  # the table edited after the sweep
    data, _ = _report(tmp_path, sweep_csv=table)
    assert data.sweep.chosen_k is None
    assert "written for other contents" in data.problems["sweep"][0]


def test_sweep_decision_is_read_not_re_derived(tmp_path):
    # k = 3 and 5 tie exactly in adjusted score; the sweep's exact rule gives the smaller k.
    ks = np.arange(2, 8)
    sil = np.array([0.25, 0.5, 0.5, 0.625, NAN, 0.375])
    table = _sweep_table(tmp_path / "sweep.csv", ks, sil, 0.0625)
    data, _ = _report(tmp_path, sweep_csv=table)
    assert (data.sweep.chosen_k, data.sweep.best_silhouette_k, data.sweep.penalty) == (3, 5, 0.0625)
    assert data.sweep.decision["lambda_path"][0]["lambda_high"] is None  # the smallest k: up to infinity
    assert "sweep" not in data.problems


def test_command_listing_cds_quotes_and_comments_out_failed_runs():
    entries = [
        {"command": "merge", "argv": ["util_merge_csv.py"], "shell": "python3 util_merge_csv.py --csv1 'a b.csv'", "cwd": "/x y", "exit_code": 0, "started": "T1", "duration_s": 1.25},
        {"command": "cluster-ag", "argv": ["cluster_ag.py"], "shell": "python3 cluster_ag.py --n_clusters 99", "cwd": "/x y", "exit_code": 1, "started": "T2", "duration_s": 0.5},
        {"command": "example", "argv": ["auditoryhum", "example"], "cwd": "/z", "exit_code": 0},
    ]
    assert command_listing(entries).splitlines() == [
        "# 1. T1  merge  (ok, 1.2 s)",
        "cd '/x y'",
        "python3 util_merge_csv.py --csv1 'a b.csv'",
        "# 2. T2  cluster-ag  (FAILED, exit 1, 0.5 s)",
        "# python3 cluster_ag.py --n_clusters 99",
        "# 3. ?  example  (ok)",
        "cd /z",
        "auditoryhum example",
    ]


# --- sections --------------------------------------------------------------------------


def test_scores_section_numbers_and_histogram(tmp_path):
    scores = _scores_file(tmp_path / "scores.csv", SCORES)
    data, text = _report(tmp_path, top_label_scores_csv=scores)
    page = _parse(text)
    assert data.scores.mean == pytest.approx(0.25) and data.scores.n_nan == 1
    assert page.text_by_id["fig-clips"] == "5"
    assert page.text_by_id["fig-scored"] == "4"
    assert page.text_by_id["fig-nan"].startswith("1")
    assert page.text_by_id["fig-mean"] == "0.2500"
    assert float(page.attr_of("fig-mean", "data-value")) == pytest.approx(0.25)
    assert page.text_by_id["fig-median"] == "0.2500" and page.text_by_id["fig-max"] == "0.4000"
    # ceil(5 x 0.01) = 1: the review threshold is the lowest score
    assert page.text_by_id["fig-threshold"].startswith("0.1000") and "1 clips at or below it" in page.text_by_id["fig-threshold"]
    img = page.attr_of("img-scores", "src")
    assert img.startswith("data:image/png;base64,")
    assert int(page.attr_of("img-scores", "width")) > 0 and int(page.attr_of("img-scores", "height")) > 0
    assert data.problems == {}


def test_all_nan_scores_are_reported_without_a_histogram(tmp_path):
    scores = _scores_file(tmp_path / "scores.csv", [(f"{c}.wav", "x", "nan") for c in "abc"])
    data, text = _report(tmp_path, top_label_scores_csv=scores)
    page = _parse(text)
    assert page.text_by_id["fig-mean"] == "nan" and page.text_by_id["fig-nan"].startswith("3")
    assert "img-scores" not in text and "all 3 are nan" in text
    assert "all 3 clips have score nan" in page.text_by_id["summary"]
    assert data.scores.threshold is None


def test_selection_section_players_relative_to_the_page_and_escaped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_tone(tmp_path / "clips" / "a b#1.wav")
    write_tone(tmp_path / "clips" / "c.wav")
    rows = [
        SelectionRow(2, "clips/c.wav", "", NAN, ""),
        SelectionRow(1, "clips/a b#1.wav", "dog <b>barking</b>", 0.12, 'dog <b>barking</b>, <script>alert(1)</script> "x" & y'),
    ]
    write_selection("sel.csv", rows)
    scores = _scores_file(tmp_path / "scores.csv", [("clips/a b#1.wav", "dog <b>barking</b>", 0.12), ("clips/c.wav", "", "nan"), ("clips/z.wav", "z", 0.9)])
    data, text = _report(tmp_path, selection_csv="sel.csv", top_label_scores_csv=scores)
    page = _parse(text)
    assert [a["src"] for a in page.by_tag("audio")] == ["../clips/c.wav", "../clips/a%20b%231.wav"]
    assert [a["preload"] for a in page.by_tag("audio")] == ["metadata", "metadata"]
    assert page.text_by_id["fig-selected"] == "2"
    assert page.text_by_id["fig-selected-nan"] == "1"
    # markup in labels is shown as text, never parsed
    assert page.by_tag("script") == [] and "<b>barking</b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &quot;x&quot; &amp; y" in text
    # the threshold on the histogram comes from the selection
    assert data.scores.threshold == 0.12 and "review selection" in data.scores.threshold_rule
    assert data.problems == {}


def test_selection_from_another_scores_file_and_missing_audio_are_said(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_selection("sel.csv", [SelectionRow(1, "clips/gone.wav", "x", 0.1, "x")])
    scores = _scores_file(tmp_path / "scores.csv", [("clips/other.wav", "x", 0.1)])
    data, text = _report(tmp_path, selection_csv="sel.csv", top_label_scores_csv=scores)
    problems = data.problems["selection"]
    assert any("1 of 1 clips' audio files are not found" in p and "clips/gone.wav" in p for p in problems)
    assert any("was not made from scores file" in p for p in problems)
    assert 'class="problem"' in text


def test_boost_section_numbers(tmp_path):
    without = _scores_file(tmp_path / "without.csv", [("a.wav", "x", 0.1), ("b.wav", "y", 0.2), ("c.wav", "z", 0.3), ("d.wav", "w", 0.4)])
    with_human = _scores_file(tmp_path / "with.csv", [("a.wav", "dog barking", 0.5), ("b.wav", "y", 0.2), ("c.wav", "rain", "nan"), ("d.wav", "car horn", 0.6)])
    (tmp_path / "ann.csv").write_text("dog barking\n\nrain\ncar horn\n", encoding="utf-8")
    data, text = _report(tmp_path, top_label_scores_csv=without, scores_with_human_csv=with_human, annotations=tmp_path / "ann.csv")
    page = _parse(text)
    # rows 1, 3, 4 annotated; row 3 has no score after: left out of both means
    assert page.text_by_id["fig-annotated"].startswith("3")
    assert page.text_by_id["fig-boost-used"] == "2"
    assert page.text_by_id["fig-boost-before"] == "0.2500"
    assert page.text_by_id["fig-boost-after"] == "0.5500"
    assert page.text_by_id["fig-boost-diff"] == "+0.3000"
    assert float(page.attr_of("fig-boost-diff", "data-value")) == pytest.approx(0.3)
    assert [c.line for c in data.boost.clips] == [1, 3, 4]
    assert data.boost.clips[0].label_after == "dog barking" and data.boost.clips[0].score_after == 0.5
    assert "+0.4000" in page.text_by_id["boost-table"]  # line 1: 0.1 -> 0.5
    assert "Score boost from human labels +0.3000" in re.sub(r"\s+", " ", page.text_by_id["summary"])


def test_boost_section_without_scores_with_human_lists_the_annotations(tmp_path):
    scores = _scores_file(tmp_path / "s.csv", [("a.wav", "x", "nan"), ("b.wav", "y", "nan"), ("c.wav", "z", "nan")])
    (tmp_path / "ann.csv").write_text("\ncafe chatter, people talking\n", encoding="utf-8")  # shorter than the clips: allowed
    data, text = _report(tmp_path, top_label_scores_csv=scores, annotations=tmp_path / "ann.csv")
    page = _parse(text)
    assert page.text_by_id["fig-annotated"].startswith("1") and "of 2 lines" in page.text_by_id["fig-annotated"]
    assert "fig-boost-diff" not in text and "No score boost" in text
    assert "cafe chatter, people talking" in page.text_by_id["boost-table"]
    assert data.problems == {}


def test_boost_with_misaligned_annotations_is_a_problem_not_a_failure(tmp_path):
    scores = _scores_file(tmp_path / "s.csv", [("a.wav", "x", 0.1)])
    (tmp_path / "ann.csv").write_text("a\nb\n", encoding="utf-8")
    data, text = _report(tmp_path, top_label_scores_csv=scores, annotations=tmp_path / "ann.csv")
    assert data.boost is None
    assert "annotations file" in data.problems["boost"][0] and "has 2 lines but" in data.problems["boost"][0]
    assert data.scores is not None  # the other sections are unaffected


def test_sweep_section_chosen_k_and_plot(tmp_path):
    ks = np.arange(2, 12)
    sil = np.array([0.2, 0.3, 0.45, 0.5, 0.52, 0.51, 0.4, 0.3, 0.2, 0.1])
    _sweep_table(tmp_path / "sweep.csv", ks, sil, 0.01)
    data, text = _report(tmp_path, sweep_csv=tmp_path / "sweep.csv")
    page = _parse(text)
    # adjusted: 0.18, 0.27, 0.41, 0.45, 0.46, 0.44, ...: k = 6; the raw silhouette peaks at k = 6 too
    assert page.text_by_id["fig-chosen-k"].startswith("6")
    assert page.text_by_id["fig-chosen-silhouette"] == "0.5200"
    assert page.text_by_id["fig-chosen-adjusted"] == "0.4600"
    assert page.text_by_id["fig-best-k"].startswith("6")
    assert page.text_by_id["fig-k-range"] == "2 to 11"
    assert page.text_by_id["fig-penalty"].startswith("0.01")
    assert page.attr_of("img-sweep", "src").startswith("data:image/png;base64,")
    assert "Chosen k 6" in re.sub(r"\s+", " ", page.text_by_id["summary"])


def test_sweep_penalty_moves_the_choice(tmp_path):
    ks = np.arange(2, 7)
    sil = np.array([0.40, 0.50, 0.54, 0.58, 0.59])
    _sweep_table(tmp_path / "sweep.csv", ks, sil, 0.05)
    data, _ = _report(tmp_path, sweep_csv=tmp_path / "sweep.csv")
    assert data.sweep.chosen_k == 3 and data.sweep.best_silhouette_k == 6  # adjusted 0.30, 0.35, 0.34, 0.33, 0.29


def _cluster_artefacts(tmp_path):
    labels = ["wind noise", "wind noise", "rain", "car horn", "car horn", "car horn", "wind noise", "", "dog"]
    ids = [0, 0, 0, 1, 1, 1, 2, 2, -1]
    scores = _scores_file(tmp_path / "s.csv", [(f"{i}.wav", lab, 0.5) for i, lab in enumerate(labels)])
    (tmp_path / "ids.csv").write_text("".join(f"{c}\n" for c in ids))
    return scores, tmp_path / "ids.csv"


def test_cluster_table_sizes_top_labels_and_composite_labels(tmp_path):
    scores, ids = _cluster_artefacts(tmp_path)
    (tmp_path / "tax.csv").write_text(
        'cluster,composite_label,n_clips,top_labels\n0,"Weather: wind, rain",3,"wind noise (2), rain (1)"\n1,Car horns <honk>,3,car horn (3)\n2,Wind,2,wind noise (1)\n'
    )
    data, text = _report(tmp_path, top_label_scores_csv=scores, cluster_csv=ids, taxonomy_csv=tmp_path / "tax.csv")
    page = _parse(text)
    rows = {r.cluster: r for r in data.clusters.rows}
    assert sorted(rows) == [-1, 0, 1, 2]
    assert [rows[c].size for c in (-1, 0, 1, 2)] == [1, 3, 3, 2]
    assert rows[0].top_labels == [("wind noise", 2), ("rain", 1)]
    assert rows[2].top_labels == [("wind noise", 1)]  # the clip without a kept label is no label
    assert rows[0].composite_label == "Weather: wind, rain" and rows[-1].composite_label is None
    assert page.text_by_id["fig-cluster-clips"] == "9"
    assert page.text_by_id["fig-n-clusters"] == "3"
    assert page.text_by_id["fig-noise"] == "1"
    assert page.text_by_id["fig-n-labels"] == "4"  # wind noise, rain, car horn, dog: a blank kept label is no label
    assert page.text_by_id["fig-shared-labels"] == "1"  # wind noise is in clusters 0 and 2
    table = re.sub(r"\s+", " ", page.text_by_id["cluster-table"])
    assert "Weather: wind, rain" in table and "Car horns <honk>" in table and "wind noise (2)" in table and "car horn (3)" in table
    assert "33.3 %" in table and "(no label) (1)" not in table
    assert "<honk>" not in text  # escaped
    assert "clusters" not in data.problems


def test_cluster_table_taxonomy_mismatch_and_sizes_only(tmp_path):
    _, ids = _cluster_artefacts(tmp_path)
    (tmp_path / "tax.csv").write_text("cluster,composite_label,n_clips,top_labels\n0,A,5,x\n7,B,1,y\n")
    short = _scores_file(tmp_path / "short.csv", [("a.wav", "x", 0.1)])
    data, text = _report(tmp_path, top_label_scores_csv=short, cluster_csv=ids, taxonomy_csv=tmp_path / "tax.csv")
    problems = " | ".join(data.problems["clusters"])
    assert "has 9 lines but" in problems and "sizes only" in problems
    assert "clusters 7 are not in the cluster-id file" in problems
    assert "clusters 1, 2 have no composite label" in problems
    assert "clusters 0 have another size there" in problems
    assert [r.size for r in data.clusters.rows] == [1, 3, 3, 2] and data.clusters.rows[1].top_labels is None


def test_taxonomy_alone_makes_a_table(tmp_path):
    (tmp_path / "tax.csv").write_text('cluster,composite_label,n_clips,top_labels\r\n1,"Quoted ""label""",4,"a (2), b (2)"\r\n0,Plain,2,c (2)\r\n')
    rows = read_taxonomy_csv(str(tmp_path / "tax.csv"))
    assert [(r.cluster, r.composite_label, r.n_clips, r.top_labels) for r in rows] == [(1, 'Quoted "label"', 4, "a (2), b (2)"), (0, "Plain", 2, "c (2)")]
    data, text = _report(tmp_path, taxonomy_csv=tmp_path / "tax.csv")
    assert [r.cluster for r in data.clusters.rows] == [0, 1]
    assert "Quoted &quot;label&quot;" in text and "a (2), b (2)" in text


def test_tsne_png_is_embedded_and_a_bad_one_is_a_problem(tmp_path):
    from auditoryhum.plots import save_cluster_scatter

    save_cluster_scatter(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5]]), np.array([0, 1, 1]), "t", str(tmp_path / "t.png"))
    data, text = _report(tmp_path, tsne_png=tmp_path / "t.png")
    page = _parse(text)
    src = page.attr_of("img-tsne", "src")
    import base64

    assert base64.b64decode(src.split(",", 1)[1]) == (tmp_path / "t.png").read_bytes()
    assert (int(page.attr_of("img-tsne", "width")), int(page.attr_of("img-tsne", "height"))) == (data.tsne.width, data.tsne.height)
    (tmp_path / "bad.png").write_text("not a png")
    data, _ = _report(tmp_path, tsne_png=tmp_path / "bad.png")
    assert data.tsne is None and data.problems["tsne"] == [f"{tmp_path / 'bad.png'} is not a PNG image"]


def test_nothing_given_says_what_is_missing_and_is_self_contained(tmp_path):
    data, text = _report(tmp_path)
    page = _parse(text)
    for flag in ("--top_label_scores_csv", "--selection_csv", "--annotations", "--sweep_csv", "--tsne_png", "--cluster_csv", "--run_log"):
        assert flag in text
    assert "No artefact was given or readable" in text
    csp = next(a["content"] for a in page.by_tag("meta") if a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert page.by_tag("script") == [] and page.by_tag("link") == []
    # without a run log: the toolkit's own version and seeds; library versions and the time are
    # recorded elsewhere (issue 23 item 8: the page is the same bytes for the same inputs)
    assert "&quot;random_state&quot;: 100" in text and "scikit-learn" not in text
    assert "the run log records them for each command" in text


def test_every_url_in_a_full_report_is_data_or_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_tone(tmp_path / "a.wav")
    write_selection("sel.csv", [SelectionRow(1, "a.wav", "x", 0.1, "x")])
    scores = _scores_file(tmp_path / "s.csv", [("a.wav", "x", 0.1), ("b.wav", "y", 0.3)])
    (tmp_path / "ids.csv").write_text("0\n1\n")
    _, text = _report(tmp_path, top_label_scores_csv=scores, selection_csv="sel.csv", cluster_csv=tmp_path / "ids.csv")
    page = _parse(text)
    urls = [a[k] for _, a in page.tags for k in ("src", "href") if k in a]
    assert urls and all(u.startswith(("data:", "#", "../")) for u in urls), urls


# --- the command -----------------------------------------------------------------------


@pytest.mark.slow
def test_report_command_end_to_end_with_a_missing_artefact(tmp_path):
    scores = _scores_file(tmp_path / "s.csv", SCORES)
    proc = run_script(
        "report.py", "--html", "r/report.html", "--top_label_scores_csv", scores, "--sweep_csv", "missing.csv", "--title", "My <run>",
        cwd=tmp_path, env=NO_LOG,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Report r/report.html: 1 of 7 sections shown (scores); not shown: selection, boost, sweep, tsne, clusters, runs")
    assert "warning: sweep table not found: missing.csv" in proc.stderr
    text = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert "<title>My &lt;run&gt;</title>" in text and "sweep table not found: missing.csv" in text
    # No temporary left; the guard's lock file stays by design (auditoryhum.io.guard).
    assert not [p for p in (tmp_path / "r").iterdir() if p.name not in ("report.html", ".report.html.lock")]


@pytest.mark.slow
def test_report_command_unwritable_output_is_one_line(tmp_path):
    (tmp_path / "out.html").mkdir()
    proc = run_script("report.py", "--html", "out.html", cwd=tmp_path, env=NO_LOG)
    assert_one_line_error(proc, "out.html")


@pytest.mark.slow
def test_report_help_imports_nothing_heavy():
    code = "import sys; sys.argv=['report.py','--help']\nfrom auditoryhum.cli import main_script\ntry:\n    main_script('report.py')\nexcept SystemExit:\n    pass\nprint(sorted(m for m in ('numpy','matplotlib','torch','sklearn') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr


# --- the run log -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["x.py", "--api_key", "S3CRET", "--genai_id", "g"], ["x.py", "--api_key", "***", "--genai_id", "g"]),
        (["x.py", "--api_key=S3CRET"], ["x.py", "--api_key=***"]),
        (["x.py", "--api_k", "S3CRET"], ["x.py", "--api_k", "***"]),  # argparse abbreviation
        (["x.py", "--hf_token", "T", "--annotations", "a.csv"], ["x.py", "--hf_token", "***", "--annotations", "a.csv"]),
        (["x.py", "--a", "kept"], ["x.py", "--a", "kept"]),  # ambiguous with --annotations: not the key
        (["x.py", "--api_key"], ["x.py", "--api_key"]),
    ],
)
def test_scrub_argv(argv, expected):
    assert run_log.scrub_argv(argv) == expected


def test_shell_line_forms(tmp_path):
    cwd = str(tmp_path)
    py = str(tmp_path / ".venv" / "bin" / "python")
    assert run_log.shell_line(["cluster_ag.py", "--label_csv", "a b.csv"], py, cwd) == ".venv/bin/python cluster_ag.py --label_csv 'a b.csv'"
    assert run_log.shell_line(["/elsewhere/cluster_ag.py"], "/usr/bin/python3", cwd) == "/usr/bin/python3 /elsewhere/cluster_ag.py"
    assert run_log.shell_line([str(REPO / "auditoryhum" / "__main__.py"), "example"], "/usr/bin/python3", cwd) == "/usr/bin/python3 -m auditoryhum example"
    assert run_log.shell_line([str(tmp_path / ".venv" / "bin" / "auditoryhum"), "merge"], py, cwd) == ".venv/bin/auditoryhum merge"


def _git_head():
    if not shutil.which("git"):
        return None
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


@pytest.mark.slow
def test_a_command_appends_a_correct_line(tmp_path):
    (tmp_path / "labels.csv").write_text("a b\nc d\n")
    (tmp_path / "ann.csv").write_text("\nhuman pair\n")
    log = tmp_path / "logs" / "run_log.jsonl"
    args = ["--csv1", "labels.csv", "--csv2", "ann.csv", "--csv3", "merged.csv"]
    proc = run_script("util_merge_csv.py", *args, cwd=tmp_path, env={"AUDITORYHUM_RUN_LOG": str(log)})
    assert proc.returncode == 0, proc.stderr
    proc = run_script("util_merge_csv.py", *args, "--quiet", cwd=tmp_path, env={"AUDITORYHUM_RUN_LOG": str(log)})
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    entry = json.loads(lines[0])
    assert entry["schema"] == 1 and entry["command"] == "merge" and entry["exit_code"] == 0
    assert entry["argv"] == [str(REPO / "util_merge_csv.py"), *args]
    assert entry["cwd"] == str(tmp_path)
    assert entry["shell"].endswith(f"{REPO / 'util_merge_csv.py'} --csv1 labels.csv --csv2 ann.csv --csv3 merged.csv")
    started = datetime.fromisoformat(entry["started"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(entry["ended"].replace("Z", "+00:00"))
    assert entry["started"].endswith("Z") and started <= ended and entry["duration_s"] >= 0
    versions = entry["versions"]
    assert versions["python"] == platform.python_version()
    import auditoryhum
    import sklearn

    assert versions["auditoryhum"] == auditoryhum.__version__ and versions["numpy"] == np.__version__
    assert versions["scikit-learn"] == sklearn.__version__
    assert "torch" not in versions and "transformers" not in versions  # merge never imports them
    head = _git_head()
    if head is not None:  # a git checkout with git installed: the commit is read from .git without git
        assert entry["git_commit"] == head
    assert entry["parameters"]["seed"] == clustering.SEED == 100
    assert entry["parameters"]["tsne"] == json.loads(json.dumps(clustering.TSNE_PARAMS))
    assert entry["parameters"]["kmeans"] == clustering.KMEANS_PARAMS
    assert json.loads(lines[1])["argv"][-1] == "--quiet"


@pytest.mark.slow
def test_api_key_scrubbed_and_failing_command_logged(tmp_path):
    log = tmp_path / "run_log.jsonl"
    proc = run_script(
        "label_google_gen_ai_cloud.py", "--filedir", "nothing/*.wav", "--genai_id", "gemini-2.5-flash", "--api_key", "S3CRET-KEY", "--text_label_csv", "out.csv",
        cwd=tmp_path, env={"AUDITORYHUM_RUN_LOG": str(log)},
    )
    assert_one_line_error(proc, "nothing/*.wav")
    raw = log.read_text(encoding="utf-8")
    assert "S3CRET" not in raw
    entry = json.loads(raw)
    assert entry["command"] == "label-gemini" and entry["exit_code"] == 1
    assert entry["argv"][entry["argv"].index("--api_key") + 1] == "***"
    assert "--api_key '***'" in entry["shell"]


@pytest.mark.slow
def test_an_unwritable_log_never_breaks_the_command(tmp_path):
    (tmp_path / "labels.csv").write_text("a b\n")
    (tmp_path / "ann.csv").write_text("x y\n")
    (tmp_path / "a_file").write_text("")
    proc = run_script(
        "util_merge_csv.py", "--csv1", "labels.csv", "--csv2", "ann.csv", "--csv3", "merged.csv",
        cwd=tmp_path, env={"AUDITORYHUM_RUN_LOG": str(tmp_path / "a_file" / "log.jsonl")},
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "merged.csv").read_text() == "x y\n"
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: run not recorded in the run log")]
    assert len(warnings) == 1 and "Traceback" not in proc.stderr
    # a failing command keeps its own exit code and error line too
    proc = run_script("util_merge_csv.py", "--csv1", "missing.csv", "--csv2", "ann.csv", "--csv3", "m.csv", cwd=tmp_path, env={"AUDITORYHUM_RUN_LOG": str(tmp_path)})
    assert_one_line_error(proc, "missing.csv")


def test_recorded_logs_exceptions_and_system_exit(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("AUDITORYHUM_RUN_LOG", str(log))
    monkeypatch.setattr(sys, "argv", ["cluster_ag.py", "--api_key=zzz"])

    def crash():
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        run_log.recorded("cluster-ag", crash)
    with pytest.raises(SystemExit):
        run_log.recorded("cluster-ag", lambda: sys.exit(3))
    assert run_log.recorded("cluster-ag", lambda: 0) == 0
    entries = run_log.read_run_log(str(log)).entries
    assert [e["exit_code"] for e in entries] == [1, 3, 0]
    assert entries[0]["argv"] == ["cluster_ag.py", "--api_key=***"]
    monkeypatch.delenv("AUDITORYHUM_RUN_LOG")
    assert run_log.recorded("cluster-ag", lambda: 5) == 5
    assert len(run_log.read_run_log(str(log)).entries) == 3


@pytest.mark.slow
def test_parallel_appends_never_interleave(tmp_path):
    log = tmp_path / "log.jsonl"
    code = (
        "import sys; from auditoryhum.run_log import append_line, encode_entry\n"
        "for i in range(150):\n"
        "    append_line(sys.argv[1], encode_entry({'command': sys.argv[2], 'argv': [str(i)], 'pad': sys.argv[2] * 6000}))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(log), name], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        for name in "abcd"
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    parsed = run_log.read_run_log(str(log))
    assert parsed.bad_lines == [] and len(parsed.entries) == 600
    for name in "abcd":
        assert [e["argv"][0] for e in parsed.entries if e["command"] == name] == [str(i) for i in range(150)]


def test_read_run_log_skips_broken_lines(tmp_path):
    good = json.dumps({"command": "merge", "argv": ["util_merge_csv.py"], "exit_code": 0})
    (tmp_path / "log.jsonl").write_text(f"{good}\n{{cut short\n\n[1, 2]\n{good}\n", encoding="utf-8")
    parsed = run_log.read_run_log(str(tmp_path / "log.jsonl"))
    assert len(parsed.entries) == 2 and parsed.bad_lines == [2, 4]


@pytest.mark.slow
def test_report_lists_the_logged_commands_with_versions(tmp_path):
    (tmp_path / "labels.csv").write_text("a b\nc d\n")
    (tmp_path / "ann.csv").write_text("\nhuman pair\n")
    log = tmp_path / "run_log.jsonl"
    env = {"AUDITORYHUM_RUN_LOG": str(log)}
    assert run_script("util_merge_csv.py", "--csv1", "labels.csv", "--csv2", "ann.csv", "--csv3", "merged.csv", cwd=tmp_path, env=env).returncode == 0
    assert run_script("util_merge_csv.py", "--csv1", "nope.csv", "--csv2", "ann.csv", "--csv3", "m.csv", cwd=tmp_path, env=env).returncode == 1
    # --run_log defaults to $AUDITORYHUM_RUN_LOG; the report's own run is appended after it is written
    proc = run_script("report.py", "--html", "report.html", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"note: run log from $AUDITORYHUM_RUN_LOG: {log}" in proc.stderr
    page = _parse((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert page.text_by_id["fig-runs"] == "2"
    assert page.text_by_id["fig-runs-failed"].startswith("1")
    listing = page.text_by_id["listing"].splitlines()
    assert listing[1] == shlex.join(["cd", str(tmp_path)])
    assert listing[2].endswith("util_merge_csv.py --csv1 labels.csv --csv2 ann.csv --csv3 merged.csv")
    assert listing[4].startswith("# ") and listing[4].endswith("--csv1 nope.csv --csv2 ann.csv --csv3 m.csv")
    import sklearn

    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert f"<code>{sklearn.__version__}</code>" in text and "&quot;random_state&quot;: 100" in text
    assert [json.loads(x)["command"] for x in log.read_text().splitlines()] == ["merge", "merge", "report"]


def test_git_commit_read_from_the_git_folder(tmp_path):
    sha1, sha2 = "a" * 40, "b" * 40
    git = tmp_path / "repo" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text(sha1 + "\n")
    assert run_log.git_commit(tmp_path / "repo") == sha1
    (git / "refs" / "heads" / "main").unlink()  # after git gc: only in packed-refs
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{sha2} refs/heads/main\n")
    assert run_log.git_commit(tmp_path / "repo") == sha2
    (git / "HEAD").write_text(sha1 + "\n")  # detached
    assert run_log.git_commit(tmp_path / "repo") == sha1
    # a worktree: .git is a file naming the real folder
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text(f"gitdir: {git}\n")
    assert run_log.git_commit(tmp_path / "wt") == sha1
    assert run_log.git_commit(tmp_path / "not a repo") is None


@pytest.mark.slow
def test_report_html_never_overwrites_an_input(tmp_path):
    ks = np.arange(2, 6)
    table = _sweep_table(tmp_path / "sweep.csv", ks, [0.3, 0.5, 0.4, 0.2], 0.001)
    before = table.read_bytes()
    for target in (table, tmp_path / "sweep_decision.json"):
        proc = run_script("report.py", "--html", target, "--sweep_csv", table, cwd=tmp_path, env=NO_LOG)
        assert_one_line_error(proc, "--html is the same file as input", "sweep_csv")
    assert table.read_bytes() == before


def test_cluster_table_names_noise_and_clips_without_a_label(tmp_path):
    labels = ["wind noise", "rain", "", "car horn", "car horn", ""]
    ids = [0, 0, -2, 1, -1, -2]
    scores = _scores_file(tmp_path / "s.csv", [(f"{i}.wav", lab, 0.5) for i, lab in enumerate(labels)])
    (tmp_path / "ids.csv").write_text("".join(f"{c}\n" for c in ids))
    data, text = _report(tmp_path, cluster_csv=tmp_path / "ids.csv", top_label_scores_csv=scores)
    page = _parse(text)
    assert page.text_by_id["fig-no-label"].startswith("2") and page.text_by_id["fig-noise"].startswith("1")
    assert page.text_by_id["fig-n-clusters"].startswith("2")
    assert 'data-cluster="-2"><th scope="row" class="num">no label</th>' in text


def test_the_run_report_is_given_every_artefact_the_run_writes(tmp_path):
    # The bundled example with annotations and no CLAP model: the run writes the merged scores
    # (kept labels after the annotations), so its report shows them and links the manifest. It
    # showed "Kept label after: unknown" on every annotated clip, asked for
    # --scores_with_human_csv and said "Not given: --run_log".
    from auditoryhum.example import make_example
    from auditoryhum.io.artefacts import read_scores
    from auditoryhum.pipeline import LAYOUT, MANIFEST_NAME, RunOptions, build_steps, execute, plan_lines

    example = make_example(str(tmp_path / "example"))
    out = tmp_path / "run"
    opts = RunOptions(filedir=os.path.join(os.path.dirname(example.clips[0]), "*"), out_dir=str(out),
                      text_label_csv=example.label_file, annotations=example.annotations_file,
                      st_model="sentence-transformers/all-MiniLM-L6-v2").validate()
    steps = build_steps(opts)
    report = next(step for step in steps if step.name == "report")
    assert {role: path for role, path in report.inputs.items() if path} == {
        "top_label_scores_csv": str(out / LAYOUT["scores"]),
        "scores_with_human_csv": str(out / LAYOUT["scores_merged"]),
        "annotations": example.annotations_file,
        "sweep_csv": str(out / LAYOUT["sweep"]),
        "cluster_csv": str(out / LAYOUT["clusters"]),
        "tsne_png": str(out / LAYOUT["clusters_png"]),
        "decision_json": str(out / "sweep_decision.json"),
    }
    assert report.options == {"title": "AuditoryHuM run", "run_manifest": "manifest.json"}
    # The steps that need no model, then the report (the sweep and clusters stay missing).
    execute([step for step in steps if step.name in ("labels", "scores", "merge", "scores_merged", "report")],
            str(out), lambda line: None)
    page = (out / LAYOUT["report"]).read_text(encoding="utf-8")
    after = read_scores(str(out / LAYOUT["scores_merged"]))
    hints = open(example.annotations_file, encoding="utf-8").read().splitlines()
    annotated = [i + 1 for i, hint in enumerate(hints) if hint.strip()]
    rows = re.findall(r'<tr data-line="(\d+)"><td class="num">\d+</td><td class="path">[^<]*</td>'
                      r"<td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>", page)
    assert [int(line) for line, *_ in rows] == annotated
    assert [kept for *_, kept in rows] == [after[line - 1].label for line in annotated]
    assert [kept for *_, kept in rows] == [hints[line - 1].split(",")[0].strip() for line in annotated]
    assert "--scores_with_human_csv" not in page and "--run_log" not in page and ">unknown<" not in page
    assert f'<a href="{MANIFEST_NAME}"><code>{MANIFEST_NAME}</code></a>' in page
    glance = re.search(r'<section id="summary".*?</section>', page).group(0)
    # Only the review selection is not given (no CLAP model: the run selects nothing to review).
    assert re.findall(r'<p class="missing">([^<]*)</p>', glance) == ["Not given: Worst clips (review selection)."]
    # A run recorded before the page linked its manifest renders the page once again, nothing else
    # (the sweep and the clustering never ran here: the report's own record waits on them).
    plan = {line.name: line.state for line in plan_lines(build_steps(opts), str(out))}
    assert plan["report"] == "may run: after cluster, sweep" and plan["scores_merged"] == "up to date"
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    manifest["steps"]["report"]["options"] = {"title": "AuditoryHuM run"}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    plan = {line.name: line.state for line in plan_lines(build_steps(opts), str(out))}
    assert plan["report"] == "runs: options changed: run_manifest" and plan["merge"] == "up to date"

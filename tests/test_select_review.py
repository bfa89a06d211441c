"""Review selection (hitl.select_for_review), util_select_review.py, and the review page's HTML.

The page's behaviour in a browser is tested in test_review_page_browser.py.
"""

import base64
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from auditoryhum.hitl import count_for_fraction, select_for_review
from auditoryhum.io.artefacts import SelectionRow, read_selection, write_selection
from auditoryhum.review_page import audio_src, export_name, page_identity, render_review_page
from conftest import REPO, assert_one_line_error, run_script, write_tone

NAN = math.nan

# --- count_for_fraction ----------------------------------------------------------------


@pytest.mark.parametrize(
    "n, fraction, expected",
    [(1000, 0.01, 10), (150, 0.01, 2), (50, 0.01, 1), (1, 0.01, 1), (0, 0.01, 0), (100, 0.07, 7), (8, 0.3, 3), (10, 1.0, 10), (3, 0.5, 2)],
)
def test_count_for_fraction_rounds_up(n, fraction, expected):
    assert count_for_fraction(n, fraction) == expected


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, NAN])
def test_count_for_fraction_rejects_out_of_range(fraction):
    with pytest.raises(ValueError):
        count_for_fraction(10, fraction)


# --- select_for_review -----------------------------------------------------------------


def test_default_is_lowest_one_percent_worst_first():
    scores = [((i * 37) % 150) / 150 for i in range(150)]  # a permutation of 0..149 / 150
    pick = select_for_review(scores)
    assert pick.rows == [0, 73]  # the scores 0/150 and 1/150 (37 x 73 = 1 mod 150); ceil(1.5) = 2
    assert pick.n_clips == 150 and pick.n_unscored == 0 and pick.n_scored_selected == 2
    assert pick.rule == "the lowest 1 % of scores (ceil(150 x 0.01) = 2)"


def test_nan_rows_always_selected_first_in_addition():
    scores = [NAN, 0.3, NAN, 0.1, 0.2]
    pick = select_for_review(scores, count=1)
    assert pick.rows == [0, 2, 3] and pick.scored_rows == [3]
    assert pick.n_unscored == 2 and pick.n_scored_selected == 1
    assert select_for_review(scores, threshold=-5.0).rows == [0, 2]
    assert select_for_review(scores, fraction=0.2).rows == [0, 2, 3]  # ceil(5 x 0.2) = 1, plus the NaN rows
    assert select_for_review([NAN, NAN], fraction=0.5).rows == [0, 1]


def test_ties_go_to_the_earlier_line_and_are_counted():
    scores = [0.5, 0.1, 0.2, 0.1, 0.1, 0.9]
    pick = select_for_review(scores, count=2)
    assert pick.rows == [1, 3] and pick.n_ties_left_out == 1  # row 4 has the same 0.1
    assert select_for_review(scores, count=3).rows == [1, 3, 4]
    assert select_for_review(scores, count=3).n_ties_left_out == 0
    assert select_for_review(scores, count=4).rows == [1, 3, 4, 2]
    # the same input always gives the same answer
    assert all(select_for_review(scores, count=2).rows == [1, 3] for _ in range(5))


def test_threshold_is_inclusive_and_ordered_by_score():
    scores = [0.3, 0.25, 0.1, 0.25, 0.31, -0.2]
    pick = select_for_review(scores, threshold=0.3)
    assert pick.rows == [5, 2, 1, 3, 0]
    assert pick.rule == "score <= 0.3" and pick.n_ties_left_out == 0
    assert select_for_review(scores, threshold=-1).rows == []


def test_count_larger_than_scored_rows_takes_all():
    pick = select_for_review([0.2, NAN, 0.1], count=10)
    assert pick.rows == [1, 2, 0] and pick.n_scored_selected == 2


def test_selection_arguments_are_checked():
    with pytest.raises(ValueError, match="at most one"):
        select_for_review([0.1], count=1, threshold=0.2)
    with pytest.raises(ValueError, match="NaN"):
        select_for_review([0.1], threshold=NAN)
    with pytest.raises(ValueError):
        select_for_review([0.1], count=-1)
    assert select_for_review([]).rows == []


# --- selection CSV ---------------------------------------------------------------------


def test_selection_csv_round_trip_with_quoting(tmp_path):
    rows = [
        SelectionRow(3, "clips/c.wav", "", NAN, ""),
        SelectionRow(12, "clips/a, b.wav", 'say "hi"', 0.125, 'say "hi", dog barking'),
    ]
    path = tmp_path / "sel.csv"
    write_selection(str(path), rows)
    assert path.read_text() == (
        "line,path,label,score,candidates\n"
        "3,clips/c.wav,,nan,\n"
        '12,"clips/a, b.wav","say ""hi""",0.125,"say ""hi"", dog barking"\n'
    )
    back = read_selection(str(path))
    assert back[1] == rows[1] and back[0].line == 3 and math.isnan(back[0].score)


def test_read_selection_rejects_other_files(tmp_path):
    from auditoryhum.errors import UserError

    path = tmp_path / "x.csv"
    path.write_text("1, a.wav, dog barking, 0.1\n")
    with pytest.raises(UserError, match="must start with the header line,path,label,score,candidates"):
        read_selection(str(path))


# --- util_select_review.py ------------------------------------------------------------


def make_run(folder, scores, labels=None, kept=None, audio=False):
    """A scores file (paths clips/NNN.wav) and its label file in ``folder``; optionally real audio."""
    labels = labels if labels is not None else [f"label {i}, other {i}" for i in range(len(scores))]
    kept = kept if kept is not None else [f"label {i}" if not math.isnan(s) else "" for i, s in enumerate(scores)]
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{i + 1}, clips/{i:03d}.wav, {k}, {s}\n" for i, (k, s) in enumerate(zip(kept, scores)))
    (folder / "scores.csv").write_text(text)
    (folder / "labels.csv").write_text("".join(line + "\n" for line in labels))
    if audio:
        for i in range(len(scores)):
            write_tone(folder / "clips" / f"{i:03d}.wav", seconds=0.2)
    return folder / "scores.csv", folder / "labels.csv"


def select(cwd, *args):
    return run_script("util_select_review.py", "--top_label_scores_csv", "scores.csv", "--text_label_csv", "labels.csv", *args, cwd=cwd)


@pytest.mark.slow
def test_cli_count_writes_selection_and_prints_summary(tmp_path):
    scores = [0.4, 0.1, NAN, 0.05, 0.1, 0.1, 0.9]
    labels = ["a b, c d", 'dog "barking", car', "", "wind noise", "x y", "p q", "r s"]
    make_run(tmp_path, scores, labels, audio=True)
    proc = select(tmp_path, "--count", "2", "--selection_csv", "out/sel.csv", "--html", "out/review.html")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Selected 3 of 7 clips for review: 1 with no usable label; 2 with the 2 lowest scores, scores 0.05 to 0.1\n"
    assert "2 more clips share the cut-off score 0.1 and were not selected" in proc.stderr
    assert "use --threshold 0.1 to take them all" in proc.stderr
    assert (tmp_path / "out" / "sel.csv").read_text() == (
        "line,path,label,score,candidates\n"
        "3,clips/002.wav,,nan,\n"
        "4,clips/003.wav,label 3,0.05,wind noise\n"
        '2,clips/001.wav,label 1,0.1,"dog ""barking"", car"\n'
    )
    page = (tmp_path / "out" / "review.html").read_text()
    assert [int(n) for n in re.findall(r'data-line="(\d+)"', page)] == [3, 4, 2]
    assert 'src="../clips/002.wav"' in page
    assert "warning" not in proc.stderr  # every audio file exists


@pytest.mark.slow
def test_cli_default_fraction_and_threshold(tmp_path):
    scores = [round(0.001 * ((i * 7) % 150), 3) for i in range(150)]
    scores[40] = NAN
    make_run(tmp_path, scores)
    proc = select(tmp_path, "--selection_csv", "sel.csv")
    assert proc.returncode == 0, proc.stderr
    assert "1 with no usable label; 2 with the lowest 1 % of scores (ceil(150 x 0.01) = 2), scores 0 to 0.001" in proc.stdout
    rows = read_selection(str(tmp_path / "sel.csv"))
    assert [r.line for r in rows] == [41, 1, 44]  # NaN first, then 0.0 (line 1) and 0.001 (line 44: 7 x 43 = 1 mod 150)
    assert [r.candidates for r in rows] == ["label 40, other 40", "label 0, other 0", "label 43, other 43"]

    proc = select(tmp_path, "--threshold", "0.003", "--selection_csv", "sel.csv", "--quiet")
    assert proc.returncode == 0 and proc.stderr == ""
    assert [r.score for r in read_selection(str(tmp_path / "sel.csv"))][1:] == [0.0, 0.001, 0.002, 0.003]
    assert "4 with score <= 0.003, scores 0 to 0.003" in proc.stdout


@pytest.mark.slow
def test_cli_nothing_selected_writes_empty_outputs(tmp_path):
    make_run(tmp_path, [0.5, 0.6], audio=True)
    proc = select(tmp_path, "--threshold", "0.1", "--selection_csv", "sel.csv", "--html", "r.html")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Selected 0 of 2 clips for review: 0 with score <= 0.1\n"
    assert "no clips were selected" in proc.stderr
    assert (tmp_path / "sel.csv").read_text() == "line,path,label,score,candidates\n"
    assert "No clips were selected" in (tmp_path / "r.html").read_text()


@pytest.mark.slow
def test_cli_mismatched_lengths_is_one_line_error(tmp_path):
    make_run(tmp_path, [0.1, 0.2, 0.3], labels=["a b", "c d"])
    proc = select(tmp_path, "--selection_csv", "sel.csv")
    assert_one_line_error(proc, "label file labels.csv has 2 lines but scores file scores.csv has 3")
    assert not (tmp_path / "sel.csv").exists()


@pytest.mark.slow
def test_cli_empty_scores_file_is_one_line_error(tmp_path):
    make_run(tmp_path, [], labels=[])
    proc = select(tmp_path, "--html", "r.html")
    assert_one_line_error(proc, "scores file scores.csv is empty")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--count", "2", "--threshold", "0.1", "--selection_csv", "s.csv"], ["not allowed with argument"]),
        (["--fraction", "0", "--selection_csv", "s.csv"], ["--fraction", "not in (0, 1]"]),
        (["--fraction", "1.5", "--selection_csv", "s.csv"], ["--fraction", "not in (0, 1]"]),
        (["--count", "0", "--selection_csv", "s.csv"], ["--count", "less than 1"]),
        (["--threshold", "nan", "--selection_csv", "s.csv"], ["--threshold", "not nan"]),
        ([], ["nothing to write; give --selection_csv, --html or both"]),
    ],
)
def test_cli_bad_flags_are_one_line_errors(tmp_path, args, fragments):
    make_run(tmp_path, [0.1, 0.2])
    assert_one_line_error(select(tmp_path, *args), *fragments)


@pytest.mark.slow
def test_cli_missing_and_bad_inputs(tmp_path):
    proc = run_script("util_select_review.py", "--top_label_scores_csv", tmp_path / "none.csv", "--text_label_csv", tmp_path / "l.csv", "--html", tmp_path / "r.html")
    assert_one_line_error(proc, "scores file not found", "none.csv")
    (tmp_path / "scores.csv").write_text("1, a.wav, dog barking, high\n")
    (tmp_path / "labels.csv").write_text("dog barking\n")
    assert_one_line_error(select(tmp_path, "--html", "r.html"), "scores file scores.csv line 1: score 'high' is not a number")


@pytest.mark.slow
def test_cli_warns_about_missing_audio_and_index_mismatch(tmp_path):
    make_run(tmp_path, [0.1, 0.2])
    (tmp_path / "scores.csv").write_text("1, clips/000.wav, a, 0.1\n7, clips/001.wav, b, 0.2\n")
    proc = select(tmp_path, "--count", "1", "--html", "r.html")
    assert proc.returncode == 0, proc.stderr
    assert "scores file scores.csv line 2 has index 7; the selection uses line numbers" in proc.stderr
    assert "1 of 1 selected clips' audio files are not found from the current folder (first: clips/000.wav)" in proc.stderr


@pytest.mark.slow
def test_run_and_help_import_no_heavy_library(tmp_path):
    make_run(tmp_path, [0.3, 0.1, 0.2], audio=True)
    code = (
        "import sys, runpy\nsys.argv = sys.argv[1:]\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
        "heavy = [m for m in ('torch','transformers','sklearn','librosa','matplotlib','sentence_transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy, 'EXIT', code)"
    )
    script = str(REPO / "util_select_review.py")
    args = ["--top_label_scores_csv", "scores.csv", "--text_label_csv", "labels.csv", "--count", "1", "--html", "r.html"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code, script, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    assert "HEAVY [] EXIT 0" in proc.stdout, proc.stdout + proc.stderr
    assert (tmp_path / "r.html").exists()
    proc = run_script("util_select_review.py", "--help")
    assert proc.returncode == 0 and "ceil(N x FRACTION)" in proc.stdout and "always selected" in proc.stdout


@pytest.mark.slow
def test_auditoryhum_select_review_subcommand(tmp_path):
    make_run(tmp_path, [0.3, 0.1, 0.2])
    proc = subprocess.run(
        [sys.executable, "-m", "auditoryhum", "select-review", "--top_label_scores_csv", "scores.csv",
         "--text_label_csv", "labels.csv", "--count", "1", "--selection_csv", "sel.csv"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert proc.returncode == 0, proc.stderr
    assert [r.line for r in read_selection(str(tmp_path / "sel.csv"))] == [2]


# --- the page's HTML (structure, escaping, paths) --------------------------------------


class _Page(HTMLParser):
    """Collects the page's tags, text and inline script/style bodies."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.texts, self.scripts, self.styles, self.meta = [], [], [], [], {}
        self._in = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag in ("script", "style"):
            self._in = (tag, attrs)
        if tag == "meta" and "http-equiv" in attrs:
            self.meta[attrs["http-equiv"]] = attrs["content"]

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._in = None

    def handle_data(self, data):
        if self._in and self._in[0] == "style":
            self.styles.append(data)
        elif self._in and self._in[0] == "script":
            self.scripts.append((self._in[1].get("type"), data))
        else:
            self.texts.append(data)


HOSTILE = '</script><script>alert(1)</script> & "q" <b>'


def _rows():
    return [
        SelectionRow(2, "clips/x.wav", "", NAN, ""),
        SelectionRow(5, "clips/a&b <c>.wav", "dog barking", 0.0123456, f"dog barking loudly, {HOSTILE}"),
    ]


def test_page_escapes_all_text_and_embeds_everything(tmp_path):
    html_path = tmp_path / "review.html"
    text = render_review_page(_rows(), str(html_path), n_clips=9, summary=f"summary {HOSTILE}", sources="s & t")
    page = _Page()
    page.feed(text)
    # Exactly two scripts (the JSON data and the code) and one style: nothing injected.
    assert [t for t, _ in page.tags].count("script") == 2 and [t for t, _ in page.tags].count("style") == 1
    assert not any(t in ("b", "img", "link", "iframe") for t, _ in page.tags)
    shown = "".join(page.texts)
    assert f"summary {HOSTILE}" in shown and "clips/a&b <c>.wav" in shown
    chips = [a["data-text"] for t, a in page.tags if t == "button" and "chip" in a.get("class", "")]
    assert chips == ["dog barking loudly", HOSTILE.strip()]
    kept_chip = [a for t, a in page.tags if t == "button" and a.get("class") == "chip kept"]
    assert [a["data-text"] for a in kept_chip] == ["dog barking loudly"]  # cleaned to two words, it is the kept label
    assert "0.0123" in shown and "nan" in shown
    # No external resources of any kind.
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert not re.match(r"^[a-z]+:", value) and not value.startswith("//"), (tag, attrs)
    data = json.loads(next(body for kind, body in page.scripts if kind == "application/json"))
    assert data == {"export_name": "review_annotations.csv", "id": page_identity(_rows(), 9), "n_clips": 9}


def test_page_csp_allows_exactly_its_own_script_and_style(tmp_path):
    page = _Page()
    page.feed(render_review_page(_rows(), str(tmp_path / "r.html"), 9, "s"))
    csp = page.meta["Content-Security-Policy"]
    code = next(body for kind, body in page.scripts if kind is None)

    def digest(body):
        return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"

    assert "default-src 'none'" in csp
    assert f"script-src {digest(code)}" in csp and f"style-src {digest(page.styles[0])}" in csp


def test_audio_src_is_relative_to_the_page_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert audio_src("clips/a.wav", str(tmp_path)) == "clips/a.wav"
    assert audio_src("clips/a.wav", str(tmp_path / "out" / "pages")) == "../../clips/a.wav"
    assert audio_src(str(tmp_path / "x" / "b c#1\u00e9?.wav"), "out") == "../x/b%20c%231%C3%A9%3F.wav"
    assert audio_src("./clips/../clips/a.wav", ".") == "clips/a.wav"


def test_page_identity_and_export_name():
    rows = _rows()
    assert page_identity(rows, 9) == page_identity(list(rows), 9)
    assert page_identity(rows, 9) != page_identity(rows, 10)
    assert page_identity(rows, 9) != page_identity(rows[:1], 9)
    assert export_name("out/review run 1.html") == "review run 1_annotations.csv"


def test_only_the_first_players_preload(tmp_path):
    rows = [SelectionRow(i + 1, f"clips/{i}.wav", "a b", 0.001 * i, "a b") for i in range(60)]
    preload = re.findall(r'<audio controls preload="(\w+)"', render_review_page(rows, str(tmp_path / "r.html"), 60, "s"))
    assert preload == ["metadata"] * 50 + ["none"] * 10


# --- issue 13: the published scores format read by its exact separator ----------------------


@pytest.mark.slow
def test_published_unquoted_paths_with_commas_round_trip_to_the_review_page(tmp_path):
    from auditoryhum.io.artefacts import read_scores

    (tmp_path / "c").mkdir()
    for name in ("x,y.wav", "p, q.wav"):
        write_tone(tmp_path / "c" / name, seconds=0.2)
    (tmp_path / "scores.csv").write_text("1, c/x,y.wav, dog barking, 0.1\n2, c/p, q.wav, wind noise, 0.2\n")
    (tmp_path / "labels.csv").write_text("dog barking\nwind noise\n")
    rows = read_scores(str(tmp_path / "scores.csv"))
    assert [(r.index, r.path, r.label, r.score) for r in rows] == [
        (1, "c/x,y.wav", "dog barking", 0.1), (2, "c/p, q.wav", "wind noise", 0.2)]
    proc = select(tmp_path, "--count", "2", "--selection_csv", "sel.csv", "--html", "review.html")
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr  # both players' files are found
    page = (tmp_path / "review.html").read_text()
    assert 'src="c/x%2Cy.wav"' in page or 'src="c/x,y.wav"' in page
    assert 'src="c/p%2C%20q.wav"' in page or 'src="c/p,%20q.wav"' in page


def test_scores_fields_longer_than_the_csv_module_limit_are_read(tmp_path):
    from auditoryhum.io.artefacts import ScoreRow, read_scores, write_scores

    label = "a" * 200_000 + ", b"  # quoted on write: the CSV path of the reader
    write_scores(str(tmp_path / "s.csv"), [ScoreRow(1, "x.wav", label, 0.5)])
    assert read_scores(str(tmp_path / "s.csv"))[0].label == label
    long_candidates = "z" * 140_000 + ", y"
    write_selection(str(tmp_path / "sel.csv"), [SelectionRow(1, "x.wav", "z", 0.5, long_candidates)])
    assert read_selection(str(tmp_path / "sel.csv"))[0].candidates == long_candidates


def test_paired_scores_files_must_name_the_same_clips(tmp_path):
    from auditoryhum.errors import UserError
    from auditoryhum.io.artefacts import ScoreRow, check_same_clips

    a = [ScoreRow(i + 1, f"clips/{i}.wav", "l", 0.1) for i in range(3)]
    b = [ScoreRow(i + 1, f"./clips/{i}.wav", "l", 0.2) for i in range(3)]
    check_same_clips("scores file A", a, "scores file B", b)  # same files, spelled differently
    b[1] = ScoreRow(2, "clips/other.wav", "l", 0.2)
    with pytest.raises(UserError) as info:
        check_same_clips("scores file A", a, "scores file B", b)
    assert str(info.value) == ("scores file A and scores file B are not about the same clips: row 2 is "
                               "'clips/1.wav' in one and 'clips/other.wav' in the other; score both label "
                               "files against the same filedir")
    with pytest.raises(UserError, match="has 2 lines but scores file A has 3"):
        check_same_clips("scores file A", a, "scores file B", b[:2])


def test_cluster_ids_beyond_int64_and_npz_as_npy_are_one_line_errors(tmp_path):
    import numpy as np

    from auditoryhum.errors import UserError
    from auditoryhum.io.artefacts import load_matrix, read_cluster_ids

    (tmp_path / "ids.csv").write_text("0\n1\n9223372036854775808\n")
    with pytest.raises(UserError) as info:
        read_cluster_ids(str(tmp_path / "ids.csv"))
    assert str(info.value).startswith(f"cluster-id file {tmp_path / 'ids.csv'} line 3: cluster id "
                                      f"9223372036854775808 is out of range")
    (tmp_path / "ok.csv").write_text("-1\n9223372036854775807\n")
    assert read_cluster_ids(str(tmp_path / "ok.csv")).tolist() == [-1, 9223372036854775807]
    with open(tmp_path / "x.npy", "wb") as f:
        np.savez(f, feats=np.zeros((2, 3)))
    with pytest.raises(UserError) as info:
        load_matrix(str(tmp_path / "x.npy"))
    assert "is an .npz archive (arrays feats), not an .npy array" in str(info.value)
    assert "shape None" not in str(info.value)

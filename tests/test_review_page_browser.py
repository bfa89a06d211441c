"""The review page in a real browser: headless Debian Chromium driven by playwright-core (npm).

The page is generated with real WAV files, its folder is copied elsewhere and the original
deleted (so only relative paths can work), and it is loaded from file://. The Node driver
``tests/browser/review_page.mjs`` types, reloads, exports, imports and presses keys, and
reports what it saw; this file asserts on it and round-trips the exported annotations through
``util_merge_csv.py`` and ``util_score_boost.py``.

Needs ``/usr/bin/chromium`` (Debian package ``chromium``; another executable can be named in
``AUDITORYHUM_CHROMIUM``), ``node`` and ``npm``. ``tests/browser/node_modules`` is installed
with ``npm ci`` on first use. The test is skipped, with the reason, only when one of these
cannot be found or installed.
"""

import shutil
from pathlib import Path

import pytest

from conftest import browser_or_skip, run_browser_driver, run_script, write_tone


ODD_NAME = "odd name #1\u00e9.wav"  # a space, '#' and non-ASCII: the src must be percent-encoded
# (audio file, kept label, score, label-file line); line numbers are 1-based positions.
CLIPS = [
    ("a.wav", "dog barking", "0.31", "dog barking, car horn"),
    ("b.wav", "birds chirping", "0.12", "birds chirping, wind noise"),
    ("c.wav", "", "nan", ""),
    (ODD_NAME, "wind noise", "0.05", 'wind noise, <img src=x onerror=alert(1)>, "quoted" & more'),
    ("e.wav", "rain falling", "0.12", "rain falling"),
    ("f.wav", "people talking", "0.12", "people talking"),
    ("g.wav", "engine idling", "0.7", "engine idling"),
    ("h.wav", "footsteps walking", "0.8", "footsteps walking"),
    ("i.wav", "music playing", "0.9", "music playing"),
]


def _make_run(work):
    """Audio, a scores file and its label file in ``work`` (paths in the scores file relative to it)."""
    lines_scores, lines_labels = [], []
    for i, (name, kept, score, candidates) in enumerate(CLIPS, start=1):
        write_tone(work / "clips" / name, seconds=1.0, freq=150.0 * i)
        path = f"clips/{name}"
        lines_scores.append(f"{i}, {path}, {kept}, {score}\n")
        lines_labels.append(candidates + "\n")
    (work / "scores.csv").write_text("".join(lines_scores), encoding="utf-8")
    (work / "labels.csv").write_text("".join(lines_labels), encoding="utf-8")


@pytest.mark.slow  # starts Chromium and three tool processes (about 10 s)
def test_review_page_in_headless_chromium(tmp_path):
    chromium, node = browser_or_skip()
    work = tmp_path / "made"
    _make_run(work)
    common = ["--top_label_scores_csv", "scores.csv", "--text_label_csv", "labels.csv"]
    proc = run_script("util_select_review.py", *common, "--count", "3", "--selection_csv", "selection.csv", "--html", "review/page.html", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Selected 4 of 9 clips for review"), proc.stdout
    # A second, different review page beside the first: it must not share the first page's edits.
    proc = run_script("util_select_review.py", *common, "--count", "1", "--html", "review/other.html", cwd=work)
    assert proc.returncode == 0, proc.stderr

    # Move everything elsewhere and delete the original: only relative audio paths still work.
    moved = tmp_path / "sent to a colleague" / "run"
    shutil.copytree(work, moved)
    shutil.rmtree(work)
    out = tmp_path / "downloads"
    out.mkdir()
    bad_import = tmp_path / "too_long.csv"
    bad_import.write_text("x\n" * (len(CLIPS) + 3))
    scenario = {
        "chromium": chromium,
        "page": (moved / "review" / "page.html").as_uri(),
        "other_page": (moved / "review" / "other.html").as_uri(),
        "profile_dir": str(tmp_path / "profile"),
        "out_dir": str(out),
        # page order is 3 (nan), 4, 2, 5; typed in that order, Enter moving between boxes
        "edits": [[3, "Dog barking,  car   horn"], [2, "birds singing, wind noise & <rain>"]],
        "chip_line": 5,
        "bad_import": str(bad_import),
    }
    seen = run_browser_driver(node, "review_page.mjs", scenario, tmp_path)
    steps = seen["steps"]

    # Loaded: worst first, text shown literally (no markup injected, no dialog), players loaded.
    load = steps["load"]
    assert load["title"] == "Review: the 4 worst-scored clips"
    assert load["lines"] == [3, 4, 2, 5]
    assert load["paths"] == ["clips/c.wav", f"clips/{ODD_NAME}", "clips/b.wav", "clips/e.wav"]
    assert load["scores"] == ["nan", "0.0500", "0.1200", "0.1200"]
    assert load["kept"] == ["none (no usable candidate)", "wind noise", "birds chirping", "rain falling"]
    assert load["chips"][1] == ["wind noise", "<img src=x onerror=alert(1)>", '"quoted" & more']
    assert load["chips"][2] == ["birds chirping", "wind noise"]
    assert load["injected"] == 0 and seen["dialogs"] == []
    assert [a["src"] for a in load["audio"]][:2] == ["../clips/c.wav", "../clips/odd%20name%20%231%C3%A9.wav"]
    for audio in load["audio"]:
        assert audio["error"] is None and audio["ready"] >= 1, audio
        assert audio["duration"] == pytest.approx(1.0, abs=0.01)
    assert load["counter"] == "0"
    for documented in ("next clip", "previous clip", "play / pause", "Export annotations", "9 lines"):
        assert documented in load["keys_documented"]

    # Typing, Enter/Shift+Enter between boxes, a candidate added by click.
    typed = steps["typed"]
    assert typed[0] == {"line": 3, "active": "labels-3", "current": 3}
    assert typed[1] == {"line": 2, "active": "labels-2", "current": 2}
    assert typed[2] == {"after_shift_enter": "labels-4"}
    assert steps["chip"] == {"box": "rain falling", "active": "labels-5"}
    typed_boxes = [[3, "Dog barking,  car   horn"], [4, ""], [2, "birds singing, wind noise & <rain>"], [5, "rain falling"]]
    assert steps["before_reload"] == {"boxes": typed_boxes, "counter": "3"}
    notes = dict(steps["notes"])
    assert notes["note-3"] == ""  # two words each: nothing to say
    assert notes["note-2"] == "Scoring keeps the first two words of each label: \u201cwind noise & <rain>\u201d \u2192 \u201cwind noise\u201d."

    # Reload keeps the edits, as typed.
    assert steps["after_reload"] == {"boxes": typed_boxes, "counter": "3"}

    # Export: the whole scores file's length, normalised labels, blank elsewhere.
    export = steps["export"]
    assert export["suggested"] == "page_annotations.csv"
    assert export["url"].startswith("blob:")
    assert export["status"] == {"text": "Exported page_annotations.csv: 9 lines, 3 annotated.", "error": False}
    exported = Path(export["file"])
    expected = ["", "birds singing, wind noise & <rain>", "Dog barking, car horn", "", "rain falling", "", "", "", ""]
    assert exported.read_bytes() == ("\n".join(expected) + "\n").encode("utf-8")

    # The other page has its own storage.
    assert steps["other_page"]["boxes"] == [[3, ""], [4, ""]]

    # Cleared storage, then import: the boxes hold the exported lines, and keep them over a reload.
    assert steps["cleared"] == {"boxes": [[3, ""], [4, ""], [2, ""], [5, ""]], "counter": "0"}
    imported_boxes = [[3, "Dog barking, car horn"], [4, ""], [2, "birds singing, wind noise & <rain>"], [5, "rain falling"]]
    assert steps["imported"]["boxes"] == imported_boxes
    assert steps["imported"]["counter"] == "3"
    assert steps["imported"]["status"] == {"text": "Imported exported.csv: 3 of 4 boxes filled.", "error": False}
    assert steps["imported_reloaded"]["boxes"] == imported_boxes

    # A file with more lines than the scores file is refused; nothing changes.
    bad = steps["bad_import"]
    assert bad["boxes"] == imported_boxes
    assert bad["status"]["error"] and "too_long.csv has 12 lines but this page's scores file has 9 clips" in bad["status"]["text"]

    # Keyboard: Escape leaves the box; j/k and arrows move (clamped); Space plays and pauses; e edits.
    keys = steps["keys"]
    assert keys["after_escape"] == {"line": 3, "active": "clip-3"}
    assert (keys["after_j"], keys["after_jj"], keys["after_k"]) == (4, 2, 4)
    assert (keys["after_down"], keys["after_up"], keys["after_many_k"]) == (2, 4, 3)
    assert keys["after_space"]["paused"] is False and keys["after_space"]["time"] > 0
    assert keys["after_second_space"]["paused"] is True
    assert keys["after_e"] == "labels-3"
    assert "Cannot play" not in keys["status"]["text"]

    # No errors, and no request other than the page and its audio from disk (and the export's blob).
    assert seen["page_errors"] == []
    assert [m for m in seen["console"] if m["type"] in ("error", "warning")] == []
    schemes = {url.split(":", 1)[0] for url in seen["requests"]}
    assert schemes <= {"file", "blob"}, seen["requests"]
    assert any(url.endswith("/review/page.html") for url in seen["requests"])
    assert any(url.endswith("/clips/odd%20name%20%231%C3%A9.wav") for url in seen["requests"])
    # Even a script that tried could not reach the network: the page's CSP refuses it.
    assert steps["csp"]["fetch"].startswith("refused") and steps["csp"]["requests_before"] == len(seen["requests"])
    assert any("Content Security Policy" in m["text"] for m in steps["csp"]["console"]), steps["csp"]

    # The exported file is what util_merge_csv.py and util_score_boost.py read.
    proc = run_script("util_merge_csv.py", "--csv1", "labels.csv", "--csv2", exported, "--csv3", "merged.csv", cwd=moved)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("3 of 9 lines taken from the human annotations")
    merged = (moved / "merged.csv").read_text(encoding="utf-8").splitlines()
    labels = [c[3] for c in CLIPS]
    assert merged == [e or lab for e, lab in zip(expected, labels)]
    with_human = moved / "scores_with.csv"
    new_scores = {2: "0.5", 3: "0.4", 5: "0.6"}  # line 3 had no score before: left out of both means
    with_human.write_text("".join(f"{i}, clips/{c[0]}, x, {new_scores.get(i, c[2])}\n" for i, c in enumerate(CLIPS, start=1)))
    proc = run_script("util_score_boost.py", "--csv1", "scores.csv", "--csv2", with_human, "--csv3", exported, cwd=moved)
    assert proc.returncode == 0, proc.stderr
    out_lines = proc.stdout.splitlines()
    assert out_lines[0] == "Difference scores MLLM vs MLLM + human"
    assert float(out_lines[1]) == pytest.approx(0.12) and float(out_lines[2]) == pytest.approx(0.55)

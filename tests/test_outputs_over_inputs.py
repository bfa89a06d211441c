"""An output that is an input (or another output) of a stage is refused before any work."""

from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, run_script


# --- an output that is an input is refused before any work (issue 13 item 1) ----------------


def _refused_keeping_inputs(proc, inputs, *fragments):
    """Exit 1, one error line with every fragment, and every input byte for byte as before."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert_one_line_error(proc, *fragments)
    for path, before in inputs.items():
        assert Path(path).read_bytes() == before, path


def _snapshot(*paths):
    return {p: Path(p).read_bytes() for p in paths}


def _scores(path, n=3):
    Path(path).write_text("".join(f"{i}, c{i}.wav, label {i}, 0.{i}\n" for i in range(1, n + 1)))
    return path


@pytest.mark.slow
def test_merge_refuses_csv3_equal_to_csv1(tmp_path):
    (tmp_path / "m.csv").write_text("car horn\nrain\n")
    (tmp_path / "h.csv").write_text("birds\n")
    before = _snapshot(tmp_path / "m.csv", tmp_path / "h.csv")
    proc = run_script("util_merge_csv.py", "--csv1", tmp_path / "m.csv", "--csv2", tmp_path / "h.csv", "--csv3", tmp_path / "m.csv")
    _refused_keeping_inputs(proc, before, "--csv3 is the same file as input", "csv1")


@pytest.mark.slow
def test_label_refuses_text_label_csv_equal_to_annotations(tone_dir, tmp_path):
    hints = tmp_path / "hints.csv"
    hints.write_text("busy street\n")
    before = _snapshot(hints)
    proc = run_script("label_qwen2a.py", "--filedir", f"{tone_dir}/*.wav", "--qwen2a_model", tmp_path / "no_model",
                      "--annotations", hints, "--text_label_csv", hints)
    _refused_keeping_inputs(proc, before, "--text_label_csv is the same file as input", "annotations")


@pytest.mark.slow
def test_features_mfcc_refuses_an_output_that_is_a_clip(tone_dir):
    clip = sorted(Path(tone_dir).glob("*.wav"))[0]
    before = _snapshot(clip)
    proc = run_script("features_mfcc.py", "--filedir", f"{tone_dir}/*.wav", "--mfcc_npy", clip)
    _refused_keeping_inputs(proc, before, "--mfcc_npy is the same file as input", str(clip))


@pytest.mark.slow
def test_features_clap_text_refuses_scores_over_its_label_file(tone_dir, tmp_path):
    n = len(list(Path(tone_dir).glob("*.wav")))
    labels = tmp_path / "labels.csv"
    labels.write_text("car horn\n" * n)
    np.save(tmp_path / "clap.npy", np.ones((n, 4), dtype=np.float32))
    before = _snapshot(labels, tmp_path / "clap.npy")
    proc = run_script("features_clap_text.py", "--filedir", f"{tone_dir}/*.wav", "--clap_model", tmp_path / "no_model",
                      "--clap_npy", tmp_path / "clap.npy", "--text_label_csv", labels, "--top_label_scores_csv", labels)
    _refused_keeping_inputs(proc, before, "--top_label_scores_csv is the same file as input", "text_label_csv")
    proc = run_script("features_clap_text.py", "--filedir", f"{tone_dir}/*.wav", "--clap_model", tmp_path / "no_model",
                      "--clap_npy", tmp_path / "clap.npy", "--text_label_csv", labels,
                      "--top_label_scores_csv", tmp_path / "clap.npy")
    _refused_keeping_inputs(proc, before, "--top_label_scores_csv is the same file as input", "clap_npy")


@pytest.mark.slow
def test_select_review_refuses_outputs_over_inputs_or_each_other(tmp_path):
    scores = _scores(tmp_path / "s.csv")
    labels = tmp_path / "l.csv"
    labels.write_text("a\nb\nc\n")
    before = _snapshot(scores, labels)
    common = ["--top_label_scores_csv", scores, "--text_label_csv", labels]
    proc = run_script("util_select_review.py", *common, "--selection_csv", labels)
    _refused_keeping_inputs(proc, before, "--selection_csv is the same file as input", "text_label_csv")
    proc = run_script("util_select_review.py", *common, "--html", scores)
    _refused_keeping_inputs(proc, before, "--html is the same file as input", "top_label_scores_csv")
    proc = run_script("util_select_review.py", *common, "--selection_csv", tmp_path / "x", "--html", tmp_path / "x")
    _refused_keeping_inputs(proc, before, "--html is the same file as output", "selection_csv")
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_features_st_refuses_st_npy_equal_to_label_csv(tmp_path):
    scores = _scores(tmp_path / "s.csv")
    before = _snapshot(scores)
    proc = run_script("features_st.py", "--st_model", tmp_path / "no_model", "--label_csv", scores, "--st_npy", scores)
    _refused_keeping_inputs(proc, before, "--st_npy is the same file as input", "label_csv")


@pytest.mark.slow
def test_composite_refuses_taxonomy_over_its_inputs(tmp_path):
    scores = _scores(tmp_path / "s.csv")
    ids = tmp_path / "ids.csv"
    ids.write_text("0\n1\n0\n")
    before = _snapshot(scores, ids)
    common = ["--label_csv", ids, "--top_label_scores_csv", scores, "--model", tmp_path / "no_model"]
    proc = run_script("composite_label.py", *common, "--taxonomy_csv", ids)
    _refused_keeping_inputs(proc, before, "--taxonomy_csv is the same file as input", "label_csv")
    proc = run_script("composite_label.py", *common, "--taxonomy_csv", tmp_path / "t.csv", "--json", scores)
    _refused_keeping_inputs(proc, before, "--json is the same file as input", "top_label_scores_csv")
    proc = run_script("composite_label_stats.py", "--label_csv", ids, "--top_label_scores_csv", scores)
    assert proc.returncode == 0 and "Total samples: 2" in proc.stdout  # reads only

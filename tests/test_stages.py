"""The small stages run as a user would: the published outputs (features_mfcc, features_st,
composite_label_stats, util_merge_csv, util_score_boost) and their one-line errors."""

import numpy as np
import pytest
import soundfile as sf

from conftest import assert_one_line_error, run_script, write_tone


# --- features_mfcc.py --------------------------------------------------------------------


@pytest.mark.slow
def test_mfcc_equals_librosa_computed_directly(tmp_path):
    import librosa

    clips = tmp_path / "clips"
    write_tone(clips / "b.wav", sr=44100, seconds=1.0, freq=880, channels=2)
    write_tone(clips / "a.flac", sr=16000, seconds=0.7, freq=300, fmt="FLAC")
    out = tmp_path / "mfcc.npy"
    proc = run_script("features_mfcc.py", "--filedir", clips / "*", "--mfcc_npy", out)
    assert proc.returncode == 0, proc.stderr
    rows = np.load(out)
    assert rows.shape == (2, 20) and rows.dtype == np.float32
    for row, name in zip(rows, ["a.flac", "b.wav"]):  # sorted-path order
        y, sr = librosa.load(str(clips / name), sr=16000)
        expected = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20, n_fft=2048, hop_length=512, win_length=2048).mean(axis=1)
        np.testing.assert_allclose(row, expected, rtol=1e-6, atol=1e-5)


@pytest.mark.slow
def test_mfcc_bad_clips_get_nan_rows_and_nonzero_exit(tmp_path):
    clips = tmp_path / "clips"
    write_tone(clips / "a.wav")
    (clips / "b.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    sf.write(str(clips / "c.wav"), np.zeros(0), 16000)
    write_tone(clips / "d.wav", freq=600)
    out = tmp_path / "mfcc.npy"
    proc = run_script("features_mfcc.py", "--filedir", clips / "*.wav", "--mfcc_npy", out)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "b.wav: cannot decode audio" in proc.stderr and "c.wav: holds no audio samples" in proc.stderr
    assert "2 of 4 clips failed; their rows are NaN" in proc.stderr
    rows = np.load(out)
    assert np.isfinite(rows[[0, 3]]).all() and np.isnan(rows[[1, 2]]).all()


@pytest.mark.slow
def test_empty_glob_is_one_line_error(tmp_path):
    proc = run_script("features_mfcc.py", "--filedir", tmp_path / "*.wav", "--mfcc_npy", tmp_path / "m.npy")
    assert_one_line_error(proc, "no files match --filedir")
    assert not (tmp_path / "m.npy").exists()


# --- features_st.py ----------------------------------------------------------------------


def write_scores_file(path, labels, scores=None):
    scores = scores or [0.5] * len(labels)
    path.write_text("".join(f"{i + 1}, clips/{i:03d}.wav, {lab}, {s}\n" for i, (lab, s) in enumerate(zip(labels, scores))))


@pytest.mark.slow
def test_features_st_real_model(tmp_path, minilm_path):
    from sentence_transformers import SentenceTransformer

    labels = ["birds chirping", "car traffic", "birds chirping", "wind noise", "car traffic"]
    scores = tmp_path / "scores.csv"
    write_scores_file(scores, labels)
    out = tmp_path / "st.npy"
    proc = run_script("features_st.py", "--st_model", minilm_path, "--label_csv", scores, "--st_npy", out, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    rows = np.load(out)
    assert rows.shape == (5, 384)
    np.testing.assert_array_equal(rows[0], rows[2])  # a repeated label is embedded once
    expected = SentenceTransformer(minilm_path, device="cpu").encode(labels)
    np.testing.assert_allclose(rows, expected, atol=1e-5)
    # real embeddings: the two bird rows are closer to each other than to traffic
    assert np.linalg.norm(rows[0] - rows[2]) < np.linalg.norm(rows[0] - rows[1])


@pytest.mark.slow
def test_features_st_missing_model_folder(tmp_path):
    scores = tmp_path / "scores.csv"
    write_scores_file(scores, ["a b"])
    proc = run_script("features_st.py", "--st_model", tmp_path / "no_model", "--label_csv", scores, "--st_npy", tmp_path / "o.npy")
    assert_one_line_error(proc, "no such model folder")
    assert not (tmp_path / "o.npy").exists()


# --- composite_label_stats.py ------------------------------------------------------------


@pytest.mark.slow
def test_composite_label_stats_exact_output(tmp_path):
    labels = ["dog bark", "car horn", "dog bark", "wind noise", "car horn", "car horn", "dog bark"]
    ids = [1, 0, 1, 0, 1, 0, 0]
    scores = tmp_path / "scores.csv"
    write_scores_file(scores, labels)
    ids_file = tmp_path / "ids.csv"
    ids_file.write_text("".join(f"{i}\n" for i in ids))
    proc = run_script("composite_label_stats.py", "--label_csv", ids_file, "--top_label_scores_csv", scores)
    assert proc.returncode == 0, proc.stderr
    prompt = (
        "Provide a short sentence to describe this set of audio samples. The frequency distribution "
        "of individual labels for this set of audio samples is provided:"
    )
    expected = "\n".join([
        prompt, "car horn, 2", "dog bark, 1", "wind noise, 1", "Total samples: 4", "",
        prompt, "dog bark, 2", "car horn, 1", "Total samples: 3", "",
        "car horn, belongs to this many clusters: 2",
        "dog bark, belongs to this many clusters: 2",
        "wind noise, belongs to this many clusters: 1",
        "Total labels: 3",
        "Total labels belonging to more than 1 cluster: 2",
    ]) + "\n"
    assert proc.stdout == expected


@pytest.mark.slow
def test_composite_label_stats_length_mismatch(tmp_path):
    scores = tmp_path / "scores.csv"
    write_scores_file(scores, ["a b", "c d", "e f"])
    ids_file = tmp_path / "ids.csv"
    ids_file.write_text("0\n1\n")
    proc = run_script("composite_label_stats.py", "--label_csv", ids_file, "--top_label_scores_csv", scores)
    assert_one_line_error(proc, f"cluster-id file {ids_file} has 2 lines", f"scores file {scores} has 3")


# --- util_merge_csv.py and util_score_boost.py ------------------------------------------


@pytest.mark.slow
def test_merge_exact(tmp_path):
    (tmp_path / "mllm.csv").write_text("car traffic, road noise\nwind noise\nbirds chirping\nmusic playing\n")
    (tmp_path / "human.csv").write_text("\ngusty wind, outdoor wind\n  \n")
    out = tmp_path / "merged.csv"
    proc = run_script("util_merge_csv.py", "--csv1", tmp_path / "mllm.csv", "--csv2", tmp_path / "human.csv", "--csv3", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "car traffic, road noise\ngusty wind, outdoor wind\nbirds chirping\nmusic playing\n"
    assert "1 of 4 lines taken from the human annotations" in proc.stdout


@pytest.mark.slow
def test_merge_longer_annotations_is_error(tmp_path):
    (tmp_path / "mllm.csv").write_text("a b\n")
    (tmp_path / "human.csv").write_text("c d\ne f\n")
    proc = run_script("util_merge_csv.py", "--csv1", tmp_path / "mllm.csv", "--csv2", tmp_path / "human.csv", "--csv3", tmp_path / "o.csv")
    assert_one_line_error(proc, "has 2 lines but label file", "has 1")
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.slow
def test_merge_non_utf8_is_error(tmp_path):
    (tmp_path / "mllm.csv").write_text("a b\n")
    (tmp_path / "human.csv").write_bytes("caf\xe9\n".encode("latin-1"))
    proc = run_script("util_merge_csv.py", "--csv1", tmp_path / "mllm.csv", "--csv2", tmp_path / "human.csv", "--csv3", tmp_path / "o.csv")
    assert_one_line_error(proc, "human.csv is not UTF-8 text (byte 0xe9 on line 1)")


@pytest.mark.slow
def test_score_boost_exact(tmp_path):
    write_scores_file(tmp_path / "s1.csv", ["a b", "c d", "e f", "g h"], [0.1, 0.2, 0.3, 0.4])
    write_scores_file(tmp_path / "s2.csv", ["a b", "x y", "e f", "z w"], [0.1, 0.5, 0.3, 0.8])
    (tmp_path / "ann.csv").write_text("\nx y\n\nz w\n")
    proc = run_script("util_score_boost.py", "--csv1", tmp_path / "s1.csv", "--csv2", tmp_path / "s2.csv", "--csv3", tmp_path / "ann.csv")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Difference scores MLLM vs MLLM + human"
    assert float(lines[1]) == pytest.approx(0.3) and float(lines[2]) == pytest.approx(0.65)
    assert len(lines) == 3


@pytest.mark.slow
def test_score_boost_skips_nan_rows_in_both_means(tmp_path):
    write_scores_file(tmp_path / "s1.csv", ["a b", "c d", "e f"], [float("nan"), 0.2, 0.4])
    write_scores_file(tmp_path / "s2.csv", ["a b", "c d", "e f"], [0.9, 0.3, 0.6])
    (tmp_path / "ann.csv").write_text("x\ny\nz\n")
    proc = run_script("util_score_boost.py", "--csv1", tmp_path / "s1.csv", "--csv2", tmp_path / "s2.csv", "--csv3", tmp_path / "ann.csv")
    lines = proc.stdout.splitlines()
    assert float(lines[1]) == pytest.approx(0.3) and float(lines[2]) == pytest.approx(0.45)
    assert "1 annotated rows have a nan score" in proc.stderr


@pytest.mark.slow
def test_score_boost_mismatched_scores(tmp_path):
    write_scores_file(tmp_path / "s1.csv", ["a b", "c d"])
    write_scores_file(tmp_path / "s2.csv", ["a b"])
    (tmp_path / "ann.csv").write_text("x\n")
    proc = run_script("util_score_boost.py", "--csv1", tmp_path / "s1.csv", "--csv2", tmp_path / "s2.csv", "--csv3", tmp_path / "ann.csv")
    assert_one_line_error(proc, "s2.csv has 1 lines but scores file", "s1.csv has 2")


@pytest.mark.slow
def test_score_boost_refuses_scores_files_about_different_clips(tmp_path):
    # Issue 13 item 7: equal lengths are not enough; where both files name a clip, the clips must agree.
    s1, s2, ann = tmp_path / "s1.csv", tmp_path / "s2.csv", tmp_path / "ann.csv"
    write_scores_file(s1, ["a b", "c d", "e f", "g h"])
    s2.write_text("1, clips/000.wav, a b, 0.5\n2, ./clips/001.wav, c d, 0.5\n"  # same clip, spelled differently
                  "3, clips/other.wav, e f, 0.5\n4, clips/003.wav, g h, 0.5\n")
    ann.write_text("x\n\ny\n")
    proc = run_script("util_score_boost.py", "--csv1", s1, "--csv2", s2, "--csv3", ann)
    expected = (f"scores file {s1} and scores file {s2} are not about the same clips: row 3 is 'clips/002.wav' "
                f"in one and 'clips/other.wav' in the other; score both label files against the same --filedir")
    assert_one_line_error(proc, expected)
    assert proc.stdout == ""
    from auditoryhum.errors import ParameterError
    from auditoryhum.stages.review import score_boost

    with pytest.raises(ParameterError) as info:  # the API names the parameter, not the flag
        score_boost(str(s1), str(s2), str(ann))
    assert str(info.value) == expected.replace("--filedir", "filedir")

"""Class vectors (issue 11 item 2): auditoryhum.cvector, the class_vectors stage and features_cvector,
on tiny random CLAP models, against cosines computed directly with transformers' ClapModel."""

import argparse
import math

import numpy as np
import pytest
import soundfile as sf

from conftest import run_script, write_tone
from tiny_embed_models import TINY_PROJECTION_DIM, build_tiny_clap

# kept labels of the 4 clips (sorted-path order); the third clip had no usable candidate
KEPT = ["wind noise", "Birds chirping", "", "wind noise"]
COLUMNS = ["Birds chirping", "wind noise"]  # code-point order: upper case first


@pytest.fixture(scope="module")
def clap(tmp_path_factory):
    return str(build_tiny_clap(tmp_path_factory.mktemp("cvec_model") / "clap", fused=True))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Four short clips (under CLAP's 10 s window, so no random crop), mixed rates and channels."""
    folder = tmp_path_factory.mktemp("cvec_clips")
    write_tone(folder / "a.wav", seconds=1.0, freq=220.0)
    rng = np.random.default_rng(3)
    sf.write(str(folder / "b.wav"), 0.2 * rng.standard_normal(32000), 16000, subtype="PCM_16")
    sf.write(str(folder / "c.wav"), 0.2 * rng.standard_normal((22050, 2)), 44100, subtype="PCM_16")
    write_tone(folder / "d.wav", seconds=1.5, freq=1200.0, amplitude=0.3)
    return folder


def _paths(folder):
    return sorted(str(p) for p in folder.glob("*.wav"))


def _write_scores(path, paths, labels):
    from auditoryhum.io.artefacts import ScoreRow, write_scores

    write_scores(str(path), [ScoreRow(i, p, lab, math.nan if lab == "" else 0.5)
                             for i, (p, lab) in enumerate(zip(paths, labels), start=1)])


def _direct_cosines(model_dir, paths, labels):
    """The matrix straight from ClapModel, one clip and one text per call, cosine in NumPy."""
    import librosa
    import torch
    from transformers import ClapModel, ClapProcessor

    model = ClapModel.from_pretrained(model_dir).eval()
    processor = ClapProcessor.from_pretrained(model_dir)
    with torch.no_grad():
        audio = []
        for p in paths:
            y, _ = librosa.load(p, sr=48000)
            out = model.get_audio_features(**processor(audio=y, sampling_rate=48000, return_tensors="pt"))
            audio.append(getattr(out, "pooler_output", out)[0].numpy())
        text = []
        for t in labels:
            out = model.get_text_features(**processor(text=[t], return_tensors="pt"))
            text.append(getattr(out, "pooler_output", out)[0].numpy())
    a, t = np.stack(audio).astype(np.float64), np.stack(text).astype(np.float64)
    return (a @ t.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(t, axis=1))


# ---------------------------------------------------------------------------------------
# pure computation


def test_class_labels_sorted_distinct_without_the_empty_label():
    from auditoryhum.cvector import class_labels

    assert class_labels(KEPT) == COLUMNS
    assert class_labels(["b", "a", "B", "", "a b", "a"]) == ["B", "a", "a b", "b"]
    assert class_labels(["", ""]) == []


def test_class_vector_matrix_is_the_scoring_cosine_and_keeps_nan_rows():
    from auditoryhum.cvector import class_vector_matrix
    from auditoryhum.scoring import cosine_similarities

    rng = np.random.default_rng(0)
    audio = rng.standard_normal((5, 7)).astype(np.float32)
    audio[2] = np.nan
    audio[4] = 0.0  # all-zero embedding: clamped norm, scores 0 as in scoring
    text = rng.standard_normal((3, 7)).astype(np.float32)
    m = class_vector_matrix(audio, text)
    assert m.shape == (5, 3) and m.dtype == np.float32
    assert np.isnan(m[2]).all() and not np.isnan(np.delete(m, 2, axis=0)).any()
    for i in (0, 1, 3, 4):
        np.testing.assert_array_equal(m[i], cosine_similarities(audio[i], text).astype(np.float32))
    np.testing.assert_array_equal(m[4], 0.0)
    with pytest.raises(ValueError, match="7-d but text rows are 6-d"):
        class_vector_matrix(audio, text[:, :6])


def test_labels_path():
    from auditoryhum.stages.cvector import labels_path

    assert labels_path("x/tau2019_cvector.npy") == "x/tau2019_cvector_labels.txt"
    assert labels_path("x/cv") == "x/cv_labels.txt"


# ---------------------------------------------------------------------------------------
# the stage


@pytest.mark.slow
def test_class_vectors_equal_direct_clap_cosines_with_and_without_clap_npy(clap, clips, tmp_path):
    from auditoryhum.stages.cvector import CvectorResult, class_vectors

    paths = _paths(clips)
    scores = tmp_path / "scores.csv"
    _write_scores(scores, paths, KEPT)
    cache = tmp_path / "cache"

    out = tmp_path / "cv.npy"
    r = class_vectors(f"{clips}/*.wav", clap_model=clap, scores_csv=str(scores), cvector_npy=str(out),
                      device="cpu", batch_size=3, cache_dir=str(cache))
    assert isinstance(r, CvectorResult) and r.ok and not r.audio_reused
    assert r.labels == COLUMNS and r.shape == (4, 2)
    assert (r.text_encoded, r.text_cached) == (2, 0)
    assert r.outputs == {"cvector_npy": str(out), "cvector_labels": str(tmp_path / "cv_labels.txt")}
    assert (tmp_path / "cv_labels.txt").read_text(encoding="utf-8") == "Birds chirping\nwind noise\n"
    rows = np.load(out)
    assert rows.shape == (4, 2) and rows.dtype == np.float32
    # the clip with the empty label still has its audio, so its row is computed
    assert np.isfinite(rows).all()
    np.testing.assert_allclose(rows, _direct_cosines(clap, paths, COLUMNS), rtol=0, atol=2e-6)

    # with audio embeddings made by features_clap.py: the same rows, labels from the cache
    clap_npy = tmp_path / "clap.npy"
    proc = run_script("features_clap.py", "--filedir", f"{clips}/*.wav", "--clap_model", clap,
                      "--clap_npy", clap_npy, "--batch_size", 2, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    out2 = tmp_path / "cv2.npy"
    r2 = class_vectors(paths, clap_model=clap, scores_csv=str(scores), cvector_npy=str(out2),
                       clap_npy=str(clap_npy), device="cpu", cache_dir=str(cache))
    assert r2.audio_reused and (r2.text_encoded, r2.text_cached) == (0, 2)
    np.testing.assert_array_equal(np.load(out2), rows)
    assert (tmp_path / "cv2_labels.txt").read_text(encoding="utf-8") == "Birds chirping\nwind noise\n"


@pytest.mark.slow
def test_nan_audio_row_gives_a_nan_row_and_the_rest_unchanged(clap, clips, tmp_path, capsys):
    from auditoryhum.stages.cvector import class_vectors

    paths = _paths(clips)
    scores = tmp_path / "scores.csv"
    _write_scores(scores, paths, KEPT)
    rng = np.random.default_rng(5)
    audio = rng.standard_normal((4, TINY_PROJECTION_DIM)).astype(np.float32)
    audio[1] = np.nan
    np.save(tmp_path / "clap.npy", audio)
    r = class_vectors(paths, clap_model=clap, scores_csv=str(scores), cvector_npy=str(tmp_path / "cv.npy"),
                      clap_npy=str(tmp_path / "clap.npy"), device="cpu", no_cache=True)
    rows = np.load(tmp_path / "cv.npy")
    assert np.isnan(rows[1]).all() and np.isfinite(np.delete(rows, 1, axis=0)).all()
    assert r.no_audio == [paths[1]]
    assert "1 clip has no audio embedding (NaN row in --clap_npy" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["short", "renamed", "all_empty", "clap_rows", "clap_dim", "overwrite"])
def test_bad_inputs_stop_with_one_precise_message(problem, clap, clips, tmp_path):
    from auditoryhum.errors import UserError
    from auditoryhum.stages.cvector import class_vectors

    paths = _paths(clips)
    labels = list(KEPT)
    listed = list(paths)
    clap_npy = None
    out = tmp_path / "cv.npy"
    if problem == "short":
        listed, labels = paths[:3], KEPT[:3]
    elif problem == "renamed":
        listed = paths[:2] + [paths[2].replace("c.wav", "z.wav")] + paths[3:]
    elif problem == "all_empty":
        labels = ["", "", "", ""]
    elif problem in ("clap_rows", "clap_dim"):
        shape = (3, TINY_PROJECTION_DIM) if problem == "clap_rows" else (4, TINY_PROJECTION_DIM + 1)
        np.save(tmp_path / "clap.npy", np.ones(shape, dtype=np.float32))
        clap_npy = str(tmp_path / "clap.npy")
    scores = tmp_path / "scores.csv"
    _write_scores(scores, listed, labels)
    if problem == "overwrite":
        out = scores
    expected = {
        "short": "4",
        "renamed": "line 3 is for",
        "all_empty": "keeps no label",
        "clap_rows": "clap.npy",
        "clap_dim": f"holds {TINY_PROJECTION_DIM + 1}-d rows",
        "overwrite": "scores.csv",
    }[problem]
    with pytest.raises(UserError) as info:
        class_vectors(paths, clap_model=clap, scores_csv=str(scores), cvector_npy=str(out), clap_npy=clap_npy,
                      device="cpu", no_cache=True)
    message = str(info.value)
    assert expected in message and "\n" not in message
    if problem != "overwrite":
        assert not out.exists() and not (tmp_path / "cv_labels.txt").exists()
    else:
        assert scores.read_text().startswith("1, ")  # the input is untouched


# ---------------------------------------------------------------------------------------
# the command


def _run_command(argv):
    from auditoryhum.cli import features_cvector

    parser = argparse.ArgumentParser()
    features_cvector.add_arguments(parser, "features-cvector")
    return features_cvector.run(parser.parse_args([str(a) for a in argv]), "features-cvector")


@pytest.mark.slow
def test_command_flags_and_summary_line(clap, clips, tmp_path, capsys):
    paths = _paths(clips)
    scores = tmp_path / "scores.csv"
    _write_scores(scores, paths, KEPT)
    out = tmp_path / "advance_cvector.npy"
    code = _run_command(["--filedir", f"{clips}/*.wav", "--clap_model", clap, "--scores_csv", scores,
                         "--cvector_npy", out, "--device", "cpu", "--batch_size", 2, "--no_cache"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert f"Class vectors of 4 clips over 2 labels -> {out} (columns: {tmp_path / 'advance_cvector_labels.txt'})" in stdout
    assert np.load(out).shape == (4, 2)


@pytest.mark.slow
def test_command_bad_batch_size_names_the_flag(clap, clips, tmp_path):
    from auditoryhum.errors import UserError

    scores = tmp_path / "scores.csv"
    _write_scores(scores, _paths(clips), KEPT)
    with pytest.raises(UserError, match=r"^--batch_size must be at least 1, got 0$"):
        _run_command(["--filedir", f"{clips}/*.wav", "--clap_model", clap, "--scores_csv", scores,
                      "--cvector_npy", tmp_path / "cv.npy", "--batch_size", 0, "--no_cache"])


@pytest.mark.slow
def test_top_level_script_once_registered(clap, clips, tmp_path):
    from auditoryhum import cli

    if "features_cvector.py" not in {c.script for c in cli.COMMANDS}:
        pytest.skip("features-cvector is not registered in auditoryhum/cli/__init__.py yet")
    scores = tmp_path / "scores.csv"
    _write_scores(scores, _paths(clips), KEPT)
    proc = run_script("features_cvector.py", "--filedir", f"{clips}/*.wav", "--clap_model", clap,
                      "--scores_csv", scores, "--cvector_npy", tmp_path / "cv.npy", "--device", "cpu", "--no_cache")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cv_labels.txt").read_text() == "Birds chirping\nwind noise\n"

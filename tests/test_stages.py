"""End-to-end tests of the non-clustering scripts, run as a user would."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auditoryhum.cli import COMMANDS, build_parser
from conftest import REPO, assert_one_line_error, run_script, write_tone


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


# --- the command layer -------------------------------------------------------------------


def _flags(parser):
    return sorted(tuple(a.option_strings) for a in parser._actions)


def test_scripts_and_subcommands_share_flags():
    import argparse

    from auditoryhum import cli

    root = argparse.ArgumentParser()
    sub = root.add_subparsers()
    for command in COMMANDS:
        sp = sub.add_parser(command.name)
        cli._configure(sp, command)
        assert _flags(sp) == _flags(build_parser(command))
        if command.script:
            assert (REPO / command.script).exists(), command.script


HEAVY_MODULES = ("numpy", "torch", "transformers", "sklearn", "librosa", "matplotlib", "sentence_transformers", "scipy")


def _heavy_after(code):
    probe = code + f"\nprint('HEAVY', sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    return proc


@pytest.mark.slow
def test_help_is_fast_and_imports_no_heavy_library():
    proc = _heavy_after(
        "import sys, runpy; sys.argv=['cluster_ag.py','--help']\n"
        "try:\n    runpy.run_path('cluster_ag.py', run_name='__main__')\nexcept SystemExit: pass"
    )
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
    assert "--n_clusters" in proc.stdout


@pytest.mark.slow
def test_every_help_and_the_package_import_load_no_numpy_or_model_library():
    from auditoryhum.cli import COMMANDS

    scripts = [c.script for c in COMMANDS if c.script]
    # `auditoryhum --help` builds every subcommand's parser; then each script's --help; then the API.
    proc = _heavy_after(
        "import sys, runpy, io, contextlib\n"
        "from auditoryhum.cli import main\n"
        "sys.argv = ['auditoryhum', '--help']\n"
        "try:\n    main()\nexcept SystemExit: pass\n"
        f"for script in {scripts!r}:\n"
        "    sys.argv = [script, '--help']\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n            runpy.run_path(script, run_name='__main__')\n        except SystemExit: pass\n"
        "    assert '--' in out.getvalue(), script\n"
        "    print('HELP OK', script)\n"
        "import auditoryhum\n"
        "assert callable(auditoryhum.label) and callable(auditoryhum.score_labels)"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("HELP OK") == len(scripts), proc.stdout + proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout[-2000:] + proc.stderr


@pytest.mark.slow
def test_auditoryhum_command_runs_subcommand(tmp_path):
    (tmp_path / "a.csv").write_text("x y\n")
    (tmp_path / "b.csv").write_text("\n")
    proc = subprocess.run(
        [sys.executable, "-m", "auditoryhum", "merge", "--csv1", tmp_path / "a.csv", "--csv2", tmp_path / "b.csv", "--csv3", tmp_path / "c.csv"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "c.csv").read_text() == "x y\n"


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


# --- a parameter's error is shown under its flag, one way -------------------------------------


@pytest.mark.slow
def test_parameter_errors_name_the_flag_that_set_them(tone_dir, tmp_path):
    # dest "model" is set by --qwen2a_model: the flag comes from the parser, not from the name
    proc = run_script("label_qwen2a.py", "--filedir", f"{tone_dir}/*.wav", "--qwen2a_model", tmp_path / "no_model",
                      "--text_label_csv", tmp_path / "l.csv", "--batch_size", "0")
    assert_one_line_error(proc, "label_qwen2a.py: error: --batch_size must be at least 1, got 0")
    assert proc.returncode == 1
    proc = run_script("label_qwen2a.py", "--filedir", f"{tone_dir}/*.wav", "--qwen2a_model", tmp_path / "no_model",
                      "--text_label_csv", tmp_path / "l.csv")
    assert_one_line_error(proc, "error: --qwen2a_model ", "no such model folder")
    proc = run_script("features_clap.py", "--filedir", f"{tone_dir}/*.wav", "--clap_model", tmp_path / "no_model",
                      "--clap_npy", tmp_path / "c.npy", "--batch_size", "0")
    assert_one_line_error(proc, "error: --batch_size must be at least 1, got 0")
    proc = run_script("util_resample.py", "--filedir", f"{tone_dir}/*.wav", "--jobs", "0")
    assert_one_line_error(proc, "error: --jobs must be at least 1, got 0")


def test_flag_of_uses_the_parser_dest():
    from auditoryhum.cli import _BY_SCRIPT, build_parser, flag_of, parameter_message
    from auditoryhum.errors import ParameterError
    from auditoryhum.stages._base import MentionError, mention

    parser = build_parser(_BY_SCRIPT["features_qwen2a.py"])
    assert flag_of(parser, "model") == "--qwen2a_model" and flag_of(parser, "output_npy") == "--qwen2a_npy"
    assert flag_of(parser, "not_a_dest") == "--not_a_dest"
    assert parameter_message(ParameterError("batch_size", "must be at least 1, got 0"), parser) == \
        "--batch_size must be at least 1, got 0"
    both = MentionError(f"{mention('model')} and {mention('output_npy')} clash")
    assert str(both) == "model and output_npy clash"
    assert parameter_message(both, parser) == "--qwen2a_model and --qwen2a_npy clash"


# --- the toolkit's own defaults: one light module, the one definition ---

# defaults.py name -> the (module, name) places that take it from auditoryhum.defaults under
# their own name (aliases kept for callers): each must be the very same object, not a copy.
ALIASES = {
    "TSNE_METHODS": [("auditoryhum.clustering.algorithms", "TSNE_METHODS"), ("auditoryhum.stages.cluster", "TSNE_METHODS"),
                     ("auditoryhum.pipeline", "TSNE_METHODS")],
    "DEFAULT_TSNE_METHOD": [("auditoryhum.stages.cluster", "DEFAULT_TSNE_METHOD"), ("auditoryhum.pipeline", "DEFAULT_TSNE_METHOD")],
    "OPENTSNE_OPTIONS": [("auditoryhum.clustering.algorithms", "OPENTSNE_OPTIONS")],
    "OPENTSNE_FFT_MIN_ROWS": [("auditoryhum.clustering.algorithms", "OPENTSNE_FFT_MIN_ROWS")],
    "ARRAY_CACHE_MAX_BYTES": [("auditoryhum.io.array_cache", "ARRAY_CACHE_MAX_BYTES")],
    "ARRAY_CACHE_MAX_SIZE_ENV": [("auditoryhum.io.array_cache", "ARRAY_CACHE_MAX_SIZE_ENV")],
    "LABELLER_BATCH_SIZE": [("auditoryhum.models.labeller", "DEFAULT_BATCH_SIZE")],
    "LONG_AUDIO_CHOICES": [("auditoryhum.models.labeller", "LONG_AUDIO_CHOICES")],
    "TOWER_BATCH_SIZE": [("auditoryhum.models.tower_embed", "DEFAULT_BATCH_SIZE")],
    "CHAT_BATCH_SIZE": [("auditoryhum.models.chat", "DEFAULT_BATCH_SIZE")],
    "CHAT_MAX_NEW_TOKENS": [("auditoryhum.models.chat", "DEFAULT_MAX_NEW_TOKENS"),
                            ("auditoryhum.stages.composite", "DEFAULT_MAX_NEW_TOKENS")],
    "COMPOSITE_TOP_LABELS": [("auditoryhum.stages.composite", "DEFAULT_TOP_LABELS"),
                             ("auditoryhum.composite", "DEFAULT_TOP_LABELS")],
    "CLAP_TEXT_BATCH_SIZE": [("auditoryhum.stages.score", "CLAP_TEXT_BATCH_SIZE")],
    "ST_BATCH_SIZE": [("auditoryhum.stages.embed", "ST_BATCH_SIZE")],
    "GEMINI_INLINE_MAX_BYTES": [("auditoryhum.models.gemini", "INLINE_MAX_BYTES")],
    "GEMINI_TIMEOUT_S": [("auditoryhum.models.gemini", "DEFAULT_TIMEOUT_S")],
    "GEMINI_MAX_RETRIES": [("auditoryhum.models.gemini", "DEFAULT_MAX_RETRIES")],
    "GEMINI_RETRY_BASE_DELAY_S": [("auditoryhum.models.gemini", "DEFAULT_RETRY_BASE_DELAY_S")],
    "GEMINI_RETRY_MAX_DELAY_S": [("auditoryhum.models.gemini", "RETRY_MAX_DELAY_S")],
    "GEMINI_SERVER_RETRY_DELAY_CAP_S": [("auditoryhum.models.gemini", "SERVER_RETRY_DELAY_CAP_S")],
    "GEMINI_MAX_CONSECUTIVE_FAILURES": [("auditoryhum.models.gemini", "DEFAULT_MAX_CONSECUTIVE_FAILURES")],
    "GEMINI_CONCURRENCY": [("auditoryhum.models.gemini", "DEFAULT_CONCURRENCY")],
    "GEMINI_FILE_PROCESSING_TIMEOUT_S": [("auditoryhum.models.gemini", "FILE_PROCESSING_TIMEOUT_S")],
    "GEMINI_DELETE_ATTEMPTS": [("auditoryhum.models.gemini", "DELETE_ATTEMPTS")],
    "GEMINI_DELETE_MAX_WAIT_S": [("auditoryhum.models.gemini", "DELETE_MAX_WAIT_S")],
    "GEMINI_API_KEY_ENV_VARS": [("auditoryhum.models.gemini", "API_KEY_ENV_VARS")],
    "GEMINI_BASE_URL_ENV_VAR": [("auditoryhum.models.gemini", "BASE_URL_ENV_VAR")],
    "BITS_CHOICES": [("auditoryhum.stages.resample", "BITS_CHOICES")],
    "RESAMPLER_CHOICES": [("auditoryhum.resample", "RESAMPLERS")],
    "DEFAULT_RESAMPLER": [("auditoryhum.resample", "DEFAULT_RESAMPLER")],
}
# Defaults still defined twice (none now); each must equal ours until switched to an import.
STILL_DEFINED_TWICE = {}


def _literal_assignments(module: str) -> set:
    """Names a module binds at top level to a value of its own (``X = 5``, ``X = {...}``), as
    opposed to importing them or binding another name (``X = Y``)."""
    import ast
    import importlib.util

    origin = importlib.util.find_spec(module).origin
    tree = ast.parse(Path(origin).read_text(encoding="utf-8"), origin)
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if targets and not isinstance(node.value, (ast.Name, ast.Attribute)):
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_defaults_have_one_definition_and_every_alias_is_the_same_object():
    import importlib

    from auditoryhum import defaults

    public = sorted(n for n in vars(defaults) if n.isupper())
    assert public == sorted(ALIASES), "every default is checked, and only defaults"
    for name, places in ALIASES.items():
        ours = getattr(defaults, name)
        for module, there in places:
            theirs = getattr(importlib.import_module(module), there)
            assert theirs is ours, (name, module, there, theirs, ours)
            # Taken, not redefined: an equal literal there (``there = 5``) would drift unseen.
            assert there not in _literal_assignments(module), (name, module, there)
    for name, (module, there) in STILL_DEFINED_TWICE.items():
        theirs = getattr(importlib.import_module(module), there)
        assert theirs == getattr(defaults, name) and type(theirs) is type(getattr(defaults, name)), (name, module, there)
        assert there in _literal_assignments(module), f"{module}.{there} now imported: move it to ALIASES"
    # The paper's Gemini decoding has one definition, in the recipe, and is the client's.
    from auditoryhum import recipe
    from auditoryhum.models import gemini

    assert gemini.GENERATION_CONFIG is recipe.GEMINI_GENERATION_CONFIG
    assert recipe.GEMINI_GENERATION_CONFIG == {"max_output_tokens": 1024, "temperature": 0.0, "top_p": 1.0, "seed": 100}
    assert "GENERATION_CONFIG" not in _literal_assignments("auditoryhum.models.gemini")
    # The first line of an error: one definition (engine.common), importable from the loader too.
    from auditoryhum.engine.common import first_line
    from auditoryhum.models import loader

    assert loader.first_line is first_line
    assert loader.first_line(ValueError("bad\nmore")) == "bad" and loader.first_line(KeyError()) == "KeyError"
    # The resampler's formats are the keys of its sample-format table; the CLI offers exactly these.
    from auditoryhum.resample import SAMPLE_FORMATS

    assert tuple(SAMPLE_FORMATS) == defaults.BITS_CHOICES
    parser = build_parser(next(c for c in COMMANDS if c.name == "resample"))
    choices = {a.dest: (tuple(a.choices or ()), a.default) for a in parser._actions}
    assert choices["bits"][0] == defaults.BITS_CHOICES
    assert choices["resampler"] == (defaults.RESAMPLER_CHOICES, defaults.DEFAULT_RESAMPLER)


def test_help_texts_show_the_defaults_module_values():
    """The parsers read auditoryhum.defaults directly; their defaults and help show its values."""
    from auditoryhum import defaults

    def parser_of(name):
        return build_parser(next(c for c in COMMANDS if c.name == name))

    gemini = {a.dest: a for a in parser_of("label-gemini")._actions}
    assert gemini["max_retries"].default == defaults.GEMINI_MAX_RETRIES
    assert gemini["timeout"].default == defaults.GEMINI_TIMEOUT_S
    assert gemini["concurrency"].default == defaults.GEMINI_CONCURRENCY
    assert gemini["inline_max_bytes"].default == defaults.GEMINI_INLINE_MAX_BYTES
    assert f"${defaults.GEMINI_BASE_URL_ENV_VAR}" in gemini["base_url"].help
    label = {a.dest: a for a in parser_of("label-qwen2a")._actions}
    assert tuple(label["long_audio"].choices) == defaults.LONG_AUDIO_CHOICES
    assert "cuda 8, mps 2, cpu 2" in label["batch_size"].help
    tower = {a.dest: a for a in parser_of("features-qwen2a")._actions}
    assert "cuda 16, mps 4, cpu 4" in tower["batch_size"].help
    composite = {a.dest: a for a in parser_of("composite")._actions}
    assert composite["top_labels"].default == defaults.COMPOSITE_TOP_LABELS
    assert "1024-token budget" in composite["max_new_tokens"].help and "64 with --prompt" in composite["max_new_tokens"].help


def test_defaults_module_imports_nothing():
    import ast

    source = (REPO / "auditoryhum" / "defaults.py").read_text()
    assert not [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Import, ast.ImportFrom))]

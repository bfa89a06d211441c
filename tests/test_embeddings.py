"""AST and CLAP embeddings and CLAP label scoring: features_ast.py, features_clap.py,
features_clap_text.py end to end on tiny random models, plus the pure pieces (scoring,
text-embedding cache)."""

import json
import math
import os
import re
import shutil
import threading

import numpy as np
import pytest
import soundfile as sf

from conftest import assert_one_line_error, run_and_kill_when_journal_has, run_script, write_tone
from tiny_embed_models import TINY_AST_HIDDEN, TINY_PROJECTION_DIM, build_tiny_ast, build_tiny_clap

LONG_CLIP = "b_long.wav"  # over CLAP's 10 s window: random crops unless seeded


# ---------------------------------------------------------------------------------------
# fixtures: tiny models and audio, made once per session


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed_models")
    return {
        "clap_fused": str(build_tiny_clap(root / "clap_fused", fused=True)),
        "clap_unfused": str(build_tiny_clap(root / "clap_unfused", fused=False, seed=1)),
        "ast": str(build_tiny_ast(root / "ast")),
    }


def _write_noise(path, sr, seconds, seed, channels=1):
    rng = np.random.default_rng(seed)
    data = 0.2 * rng.standard_normal((int(sr * seconds), channels))
    sf.write(str(path), data if channels > 1 else data[:, 0], sr, subtype="PCM_16")


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """Five clips of different lengths, rates and channel counts; one is over 10 s."""
    folder = tmp_path_factory.mktemp("embed_clips")
    write_tone(folder / "a.wav", seconds=1.0, freq=220.0)
    _write_noise(folder / LONG_CLIP, 16000, 12.0, seed=1)
    write_tone(folder / "c.wav", seconds=2.5, freq=880.0)
    _write_noise(folder / "d.wav", 44100, 0.5, seed=2, channels=2)
    write_tone(folder / "e.wav", seconds=3.0, freq=3000.0, amplitude=0.2)
    return folder


@pytest.fixture(scope="session")
def clips_with_corrupt(tmp_path_factory, clips):
    """The clips above plus a zero-length file and a non-audio file in the middle of the order."""
    folder = tmp_path_factory.mktemp("embed_clips_corrupt")
    for p in clips.iterdir():
        shutil.copy(p, folder / p.name)
    sf.write(str(folder / "c0_empty.wav"), np.zeros(0), 16000)  # a valid header with no samples
    (folder / "c1_garbage.wav").write_bytes(b"this is not audio" * 10)
    return folder


def _sorted_wavs(folder):
    return sorted(str(p) for p in folder.glob("*.wav"))


@pytest.fixture(scope="session")
def fused_run(tmp_path_factory, models, clips):
    """features_clap.py on the fused tiny model, batch size 4: (completed process, npy path)."""
    out = tmp_path_factory.mktemp("fused_run") / "clap.npy"
    proc = run_script("features_clap.py", "--filedir", f"{clips}/*.wav", "--clap_model", models["clap_fused"],
                      "--clap_npy", out, "--batch_size", 4, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    return proc, out


# ---------------------------------------------------------------------------------------
# independent references: the published recipe, one clip at a time, straight from transformers


def _reference_clap_rows(model_dir, paths, seeds=None):
    import librosa
    import torch
    from transformers import ClapModel, ClapProcessor

    model = ClapModel.from_pretrained(model_dir).eval()
    processor = ClapProcessor.from_pretrained(model_dir)
    rows = []
    for i, path in enumerate(paths):
        y, _ = librosa.load(path, sr=48000)
        if seeds is not None:
            np.random.seed(seeds[i])
        inputs = processor(audio=y, sampling_rate=48000, return_tensors="pt")
        with torch.no_grad():
            rows.append(model.get_audio_features(**inputs).pooler_output[0].numpy())
    return np.stack(rows)


def _reference_text_rows(model_dir, texts):
    import torch
    from transformers import ClapModel, ClapProcessor

    model = ClapModel.from_pretrained(model_dir).eval()
    processor = ClapProcessor.from_pretrained(model_dir)
    rows = {}
    for text in texts:  # one text per call: no padding, no batching
        with torch.no_grad():
            rows[text] = model.get_text_features(**processor(text=[text], return_tensors="pt")).pooler_output[0].numpy()
    return rows


# ---------------------------------------------------------------------------------------
# features_ast.py


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
def test_features_ast_rows_are_the_classifier_layernorm_output_and_a_corrupt_clip_is_reported(models, clips_with_corrupt, tmp_path):
    import librosa
    import torch
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    out = tmp_path / "ast.npy"
    proc = run_script("features_ast.py", "--filedir", f"{clips_with_corrupt}/*.wav", "--ast_model", models["ast"],
                      "--ast_npy", out, "--batch_size", 3, "--device", "cpu")
    paths = _sorted_wavs(clips_with_corrupt)
    bad = [paths.index(str(clips_with_corrupt / n)) for n in ("c0_empty.wav", "c1_garbage.wav")]
    assert bad == [3, 4]  # in the middle of the sorted order, so later clips ran after the failures
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "c0_empty.wav" in proc.stderr and "zero-length" in proc.stderr
    assert "c1_garbage.wav" in proc.stderr and "cannot decode" in proc.stderr
    assert "2 of 7 clips failed; their rows are NaN" in proc.stderr
    assert f"AST embeddings of 7 clips -> {out} shape (7, {TINY_AST_HIDDEN})" in proc.stdout

    rows = np.load(out)
    assert rows.shape == (7, TINY_AST_HIDDEN) and rows.dtype == np.float32
    assert np.isnan(rows[bad]).all()
    good = [i for i in range(7) if i not in bad]
    assert np.isfinite(rows[good]).all()

    # Reference: the hook output computed directly, one clip at a time.
    model = ASTForAudioClassification.from_pretrained(models["ast"]).eval()
    extractor = ASTFeatureExtractor.from_pretrained(models["ast"])
    captured = []
    model.classifier.layernorm.register_forward_hook(lambda m, a, o: captured.append(o[0].detach().numpy()))
    for i in good:
        y, _ = librosa.load(paths[i], sr=16000)
        with torch.no_grad():
            model(**extractor(y, sampling_rate=16000, return_tensors="pt"))
        np.testing.assert_allclose(rows[i], captured[-1], rtol=0, atol=1e-5)
    # A layer norm with the initial affine parameters: zero mean, unit variance per row.
    np.testing.assert_allclose(rows[good].mean(axis=1), 0, atol=1e-5)


@pytest.mark.slow
def test_features_ast_wrong_and_missing_model_folder_give_one_line(models, clips, tmp_path):
    proc = run_script("features_ast.py", "--filedir", f"{clips}/*.wav", "--ast_model", models["clap_fused"], "--ast_npy", tmp_path / "x.npy")
    assert_one_line_error(proc, "--ast_model", "'clap'", "AST")
    proc = run_script("features_ast.py", "--filedir", f"{clips}/*.wav", "--ast_model", tmp_path / "no" / "such", "--ast_npy", tmp_path / "x.npy")
    assert_one_line_error(proc, "--ast_model", "no such model folder")
    assert not (tmp_path / "x.npy").exists()


# ---------------------------------------------------------------------------------------
# features_clap.py


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["clap_fused", "clap_unfused"])
def test_features_clap_matches_the_published_recipe(variant, models, clips, clips_with_corrupt, fused_run, tmp_path):
    from auditoryhum.io.audio import load_audio
    from auditoryhum.models.audio_embed import clip_seed

    if variant == "clap_fused":
        out, folder, good = fused_run[1], clips, [0, 1, 2, 3, 4]
    else:
        # The unfused run also has a zero-length and a non-audio clip in the middle.
        out, folder, good = tmp_path / "clap.npy", clips_with_corrupt, [0, 1, 2, 5, 6]
        proc = run_script("features_clap.py", "--filedir", f"{folder}/*.wav", "--clap_model", models[variant],
                          "--clap_npy", out, "--batch_size", 2, "--device", "cpu")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "c0_empty.wav" in proc.stderr and "c1_garbage.wav" in proc.stderr
        assert "2 of 7 clips failed; their rows are NaN" in proc.stderr
        assert f"CLAP embeddings of 7 clips -> {out} shape (7, {TINY_PROJECTION_DIM})" in proc.stdout
    rows = np.load(out)
    paths = _sorted_wavs(folder)
    assert rows.shape == (len(paths), TINY_PROJECTION_DIM) and rows.dtype == np.float32
    assert np.isnan(np.delete(rows, good, axis=0)).all()
    rows = rows[good]
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)

    # The published recipe processes one clip per call; for the clip over 10 s its random
    # crop is reproduced by seeding NumPy as the tool does (from the clip's samples).
    paths = [paths[i] for i in good]
    seeds = [clip_seed(load_audio(p, 48000)[0]) for p in paths]
    reference = _reference_clap_rows(models[variant], paths, seeds)
    np.testing.assert_allclose(rows, reference, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_clap_embeddings_do_not_depend_on_batch_size_or_run(models, clips, fused_run, tmp_path):
    from auditoryhum.io.audio import expand_glob
    from auditoryhum.models.audio_embed import ClapAudioEmbedder, embed_clips

    proc = run_script("features_clap.py", "--filedir", f"{clips}/*.wav", "--clap_model", models["clap_fused"],
                      "--clap_npy", tmp_path / "b1.npy", "--batch_size", 1, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    batch4 = np.load(fused_run[1])
    batch1 = np.load(tmp_path / "b1.npy")
    assert np.array_equal(batch1, batch4)  # two runs, two batch sizes: bit-identical

    embedder = ClapAudioEmbedder.load(models["clap_fused"], "cpu")
    paths = expand_glob(f"{clips}/*.wav")
    batch3 = embed_clips(paths, embedder, batch_size=3)
    assert batch3.failures == []
    assert np.array_equal(batch3.rows, batch4)
    # Reversed order puts different neighbours in every batch.
    reversed_rows = embed_clips(paths[::-1], embedder, batch_size=4).rows[::-1]
    assert np.array_equal(reversed_rows, batch4)


@pytest.mark.slow
def test_clap_randomness_that_is_fixed_is_real(models, clips):
    """Without the per-clip seed the long clip's crops vary, and a fused model's output depends on is_longer."""
    from auditoryhum.io.audio import load_audio
    from auditoryhum.models.audio_embed import ClapAudioEmbedder

    embedder = ClapAudioEmbedder.load(models["clap_fused"], "cpu")
    y, _ = load_audio(str(clips / LONG_CLIP), 48000)
    extractor = embedder.feature_extractor
    crops = set()
    for seed in range(4):
        np.random.seed(seed)
        crops.add(extractor([y], sampling_rate=48000, truncation="fusion", return_tensors="np")["input_features"].tobytes())
    assert len(crops) > 1
    assert embedder.prepare(y)[0].tobytes() == embedder.prepare(y.copy())[0].tobytes()

    short, _ = load_audio(str(clips / "a.wav"), 48000)
    features, longer = embedder.prepare(short)
    assert longer is True  # a batch of one short clip: the extractor flags it, as in the one-clip-per-call recipe
    flagged, unflagged = embedder.embed([(features, True), (features, False)])
    assert not np.allclose(flagged, unflagged, atol=1e-4)


@pytest.mark.slow
def test_features_clap_wrong_model_folder_gives_one_line(clips, tmp_path):
    proc = run_script("features_clap.py", "--filedir", f"{clips}/*.wav", "--clap_model", clips, "--clap_npy", tmp_path / "y.npy")
    assert_one_line_error(proc, "--clap_model", "config.json")
    assert not (tmp_path / "y.npy").exists()


# ---------------------------------------------------------------------------------------
# resuming features_clap.py / features_ast.py from their journal


@pytest.fixture(scope="session")
def many_clips(tmp_path_factory, clips):
    """The five clips above plus seven short tones: enough batches of one to kill a run mid-way."""
    folder = tmp_path_factory.mktemp("embed_many")
    for p in clips.iterdir():
        shutil.copy(p, folder / p.name)
    for k in range(7):
        write_tone(folder / f"t{k}.wav", seconds=0.5 + 0.25 * k, freq=300.0 + 150 * k)
    return folder


def _clap_args(folder, model, out, batch_size):
    return ["--filedir", f"{folder}/*.wav", "--clap_model", model, "--clap_npy", out,
            "--batch_size", batch_size, "--device", "cpu"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
def test_features_clap_resumes_after_a_kill_with_another_batch_size(models, many_clips, tmp_path):
    """SIGKILL a run once its journal holds finished clips; the rerun (another batch size) skips
    them and writes the same bytes as an uninterrupted run."""
    n = len(list(many_clips.glob("*.wav")))
    full = tmp_path / "full.npy"
    proc = run_script("features_clap.py", *_clap_args(many_clips, models["clap_fused"], full, 4))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / ".full.npy.journal").exists()

    out = tmp_path / "killed.npy"
    journal = tmp_path / ".killed.npy.journal"
    done = run_and_kill_when_journal_has("features_clap.py", _clap_args(many_clips, models["clap_fused"], out, 1),
                                         journal, 3)  # header + two clips
    assert not out.exists()  # the NPY is only ever written complete
    assert 2 <= done < n

    rerun = run_script("features_clap.py", *_clap_args(many_clips, models["clap_fused"], out, 3))
    assert rerun.returncode == 0, rerun.stderr
    resumed = int(re.search(rf"resuming: (\d+) of {n} clips already embedded", rerun.stderr).group(1))
    assert done <= resumed < n
    assert f"CLAP embeddings of {n} clips -> {out} shape ({n}, {TINY_PROJECTION_DIM})" in rerun.stdout
    assert out.read_bytes() == full.read_bytes()
    assert not journal.exists()


def _run_embed(kind, model, folder, out, batch_size=2):
    from auditoryhum.io.audio import expand_glob
    from auditoryhum.models.audio_embed import ASTEmbedder, ClapAudioEmbedder, run_clip_embeddings

    loader = ASTEmbedder if kind == "ast" else ClapAudioEmbedder
    return run_clip_embeddings(loader, model, f"--{kind}_model", "cpu", expand_glob(f"{folder}/*.wav"), str(out), batch_size)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
@pytest.mark.parametrize("kind", ["clap_fused", "ast"])
def test_failed_clips_are_retried_on_rerun(kind, models, clips_with_corrupt, tmp_path, capsys):
    folder = tmp_path / "clips"
    shutil.copytree(clips_with_corrupt, folder)
    out = tmp_path / "e.npy"
    journal = tmp_path / ".e.npy.journal"
    short = kind.split("_")[0]
    first, reused = _run_embed(short, models[kind], folder, out)
    assert reused == 0 and len(first.failures) == 2
    assert "c0_empty.wav" in first.failures[0] and "c1_garbage.wav" in first.failures[1]
    assert np.isnan(first.rows[[3, 4]]).all() and np.isfinite(np.delete(first.rows, [3, 4], axis=0)).all()
    assert np.array_equal(np.load(out), first.rows, equal_nan=True)
    assert journal.exists()
    assert "a rerun retries only the 2 failed clip(s)" in capsys.readouterr().err

    # Unchanged, the corrupt clips are tried again (and fail again); the others are reused.
    again, reused = _run_embed(short, models[kind], folder, out)
    assert reused == 5 and len(again.failures) == 2 and journal.exists()
    assert np.array_equal(again.rows, first.rows, equal_nan=True)

    write_tone(folder / "c0_empty.wav", seconds=1.5, freq=500.0)
    write_tone(folder / "c1_garbage.wav", seconds=0.7, freq=1200.0)
    fixed, reused = _run_embed(short, models[kind], folder, out, batch_size=3)
    assert reused == 5 and fixed.failures == []
    assert "resuming: 5 of 7 clips already embedded" in capsys.readouterr().err
    assert not journal.exists()
    fresh, _ = _run_embed(short, models[kind], folder, tmp_path / "fresh.npy")
    assert np.isfinite(fresh.rows).all()
    assert out.read_bytes() == (tmp_path / "fresh.npy").read_bytes()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
def test_a_clip_swapped_for_one_of_the_same_size_and_mtime_is_redone(models, clips_with_corrupt, tmp_path, capsys):
    """Resume fingerprints are the clip's content: same size, same modification time, other
    bytes -> the clip is embedded again (issue 13 item 4)."""
    folder = tmp_path / "clips"
    shutil.copytree(clips_with_corrupt, folder)
    write_tone(folder / "x_swap.wav", seconds=0.5, freq=300.0)
    write_tone(folder / "y_other.wav", seconds=0.5, freq=1700.0)
    out = tmp_path / "e.npy"
    first, _ = _run_embed("ast", models["ast"], folder, out)
    assert len(first.failures) == 2  # the corrupt clips keep the journal for the rerun
    paths = _sorted_wavs(folder)
    swap, other = paths.index(str(folder / "x_swap.wav")), paths.index(str(folder / "y_other.wav"))
    assert not np.array_equal(first.rows[swap], first.rows[other])

    st = os.stat(folder / "x_swap.wav")
    shutil.copyfile(folder / "y_other.wav", folder / "x_swap.wav")  # same length: same size
    os.utime(folder / "x_swap.wav", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(folder / "x_swap.wav").st_size == st.st_size
    assert os.stat(folder / "x_swap.wav").st_mtime_ns == st.st_mtime_ns
    capsys.readouterr()
    again, reused = _run_embed("ast", models["ast"], folder, out)
    assert reused == len(paths) - 3  # the swapped clip and the two corrupt ones are redone
    assert np.array_equal(again.rows[swap], first.rows[other])


@pytest.mark.slow
def test_journal_of_another_model_is_not_reused(models, clips_with_corrupt, tmp_path, capsys):
    from auditoryhum.io.checkpoint import journal_path

    out = tmp_path / "clap.npy"
    _, reused = _run_embed("clap", models["clap_fused"], clips_with_corrupt, out)
    assert reused == 0 and journal_path(out).exists()  # kept: two clips failed
    capsys.readouterr()

    other, reused = _run_embed("clap", models["clap_unfused"], clips_with_corrupt, out)
    err = capsys.readouterr().err
    assert reused == 0 and "resuming:" not in err
    assert f"not resuming from the journal {journal_path(out)}: it belongs to a run with different arguments or model" in err
    fresh, _ = _run_embed("clap", models["clap_unfused"], clips_with_corrupt, tmp_path / "fresh.npy")
    assert np.array_equal(other.rows, fresh.rows, equal_nan=True)
    assert out.read_bytes() == (tmp_path / "fresh.npy").read_bytes()
    # The journal now belongs to the unfused model's run.
    header = json.loads(journal_path(out).read_text().splitlines()[0])
    assert header["key"]["model"]["folder"] == os.path.abspath(models["clap_unfused"])
    assert header["key"]["tool"] == "clip-embedding" and header["key"]["model_kind"] == "CLAP"


# ---------------------------------------------------------------------------------------
# features_clap_text.py

LABELS = [
    "birds chirping, wind noise, birds chirping",  # a repeat inside the line: first wins ties
    "Traffic hum  , ,car horn honking loudly, dog barking",  # empty candidate, a >2-word one
    ", ,  ",  # no usable candidate
    "caf\u00e9 music, rain falling",  # non-ASCII dropped: "caf music"
    "wind noise, dog barking",
]


def _clean(line):
    from auditoryhum.labels import split_candidates

    return split_candidates(line)


@pytest.mark.slow
def test_features_clap_text_scores_and_output(models, clips, fused_run, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    out = tmp_path / "scores.csv"
    proc = run_script("features_clap_text.py", "--filedir", f"{clips}/*.wav", "--clap_model", models["clap_fused"],
                      "--clap_npy", fused_run[1], "--text_label_csv", labels, "--top_label_scores_csv", out,
                      "--cache_dir", tmp_path / "cache", "--batch_size", 3, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "1 clip has no usable candidate label" in proc.stderr and "c.wav" in proc.stderr

    paths = _sorted_wavs(clips)
    audio = np.load(fused_run[1])
    candidates = [_clean(line) for line in LABELS]
    assert candidates[1] == ["Traffic hum", "car horn", "dog barking"] and candidates[3] == ["caf music", "rain falling"]
    distinct = sorted({c for cs in candidates for c in cs})
    assert f"{len(distinct)} distinct candidate texts for 5 clips: {len(distinct)} encoded, 0 from the cache" in proc.stderr
    text = _reference_text_rows(models["clap_fused"], distinct)

    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5
    expected_scores = []
    for i, (line, path, cands) in enumerate(zip(lines, paths, candidates), start=1):
        if not cands:
            assert line == f"{i}, {path}, , nan"
            expected_scores.append(math.nan)
            continue
        m = re.fullmatch(rf"{i}, {re.escape(path)}, ([^,]*), (\S+)", line)
        assert m, line
        cosines = [float(audio[i - 1] @ text[c] / np.linalg.norm(audio[i - 1]) / np.linalg.norm(text[c])) for c in cands]
        best = int(np.argmax(cosines))
        assert m.group(1) == cands[best]
        assert float(m.group(2)) == pytest.approx(cosines[best], abs=1e-5)
        expected_scores.append(float(m.group(2)))
    mean = float(re.search(r"^Mean CLAP score: (\S+)$", proc.stdout, re.M).group(1))
    assert mean == pytest.approx(np.nanmean(expected_scores), abs=1e-12)

    # A rerun with a merged file (human labels on two lines) encodes only the new texts. Clip 2
    # also lost its audio embedding (a NaN row, as features_clap.py leaves a failed clip).
    merged = list(LABELS)
    merged[0] = "bird song, wind noise"
    merged[4] = "Children playing"
    labels.write_text("\n".join(merged) + "\n", encoding="utf-8")
    audio[1] = np.nan
    np.save(tmp_path / "clap_nan.npy", audio)
    proc = run_script("features_clap_text.py", "--filedir", f"{clips}/*.wav", "--clap_model", models["clap_fused"],
                      "--clap_npy", tmp_path / "clap_nan.npy", "--text_label_csv", labels,
                      "--top_label_scores_csv", tmp_path / "merged.csv", "--cache_dir", tmp_path / "cache", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    merged_distinct = {c for line in merged for c in _clean(line)}
    assert f"{len(merged_distinct)} distinct candidate texts for 5 clips: 2 encoded, {len(merged_distinct) - 2} from the cache" in proc.stderr
    assert "1 clip has no audio embedding" in proc.stderr and LONG_CLIP in proc.stderr
    merged_lines = (tmp_path / "merged.csv").read_text().splitlines()
    assert merged_lines[1] == f"2, {paths[1]}, , nan"
    assert merged_lines[2:4] == lines[2:4]  # unchanged lines score the same from cached rows
    assert merged_lines[4] == f"5, {paths[4]}, Children playing, {merged_lines[4].rsplit(', ', 1)[1]}"
    scores = [float(r.rsplit(", ", 1)[1]) for r in merged_lines]
    mean = float(re.search(r"Mean CLAP score: (\S+)", proc.stdout).group(1))
    assert mean == pytest.approx(np.nanmean(scores), abs=1e-12)
    assert len(list((tmp_path / "cache").glob("clap-text/*/shard-*.npz"))) == 2


def test_default_cache_dir(monkeypatch, tmp_path):
    from auditoryhum.io.text_cache import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "auditoryhum"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "auditoryhum"


@pytest.mark.slow
def test_features_clap_text_misaligned_inputs_stop_with_one_line(models, clips, fused_run, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(LABELS[:4]) + "\n", encoding="utf-8")
    common = ["--filedir", f"{clips}/*.wav", "--clap_model", models["clap_fused"], "--top_label_scores_csv", tmp_path / "s.csv"]
    proc = run_script("features_clap_text.py", *common, "--clap_npy", fused_run[1], "--text_label_csv", labels)
    assert_one_line_error(proc, str(labels), "4 lines", "--filedir", "5")

    labels.write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    np.save(tmp_path / "short.npy", np.load(fused_run[1])[:3])
    proc = run_script("features_clap_text.py", *common, "--clap_npy", tmp_path / "short.npy", "--text_label_csv", labels)
    assert_one_line_error(proc, "short.npy", "3", "--filedir", "5")

    np.save(tmp_path / "wide.npy", np.zeros((5, TINY_PROJECTION_DIM + 1), dtype=np.float32))
    proc = run_script("features_clap_text.py", *common, "--clap_npy", tmp_path / "wide.npy", "--text_label_csv", labels,
                      "--no_cache", env={"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert_one_line_error(proc, "wide.npy", f"{TINY_PROJECTION_DIM + 1}-d", f"{TINY_PROJECTION_DIM}-d")
    assert "0 from the cache" in proc.stderr
    assert not (tmp_path / "xdg" / "auditoryhum").exists()  # --no_cache: nothing written

    proc = run_script("features_clap_text.py", *common[:2], "--clap_model", models["ast"], *common[4:],
                      "--clap_npy", fused_run[1], "--text_label_csv", labels)
    assert_one_line_error(proc, "--clap_model", "not a CLAP model")
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.slow
def test_clap_text_encoder_batches_like_single_texts(models):
    from auditoryhum.models.text_embed import ClapTextEncoder

    texts = ["wind", "birds chirping", "a much longer candidate text here", "dog barking", "rain"]
    encoder = ClapTextEncoder.load(models["clap_fused"], "cpu")
    rows = encoder.encode(texts, batch_size=2)
    reference = _reference_text_rows(models["clap_fused"], texts)
    assert rows.shape == (5, TINY_PROJECTION_DIM) and rows.dtype == np.float32
    for text, row in zip(texts, rows):
        np.testing.assert_allclose(row, reference[text], rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------
# scoring (pure)


def test_keep_best_first_on_ties_and_no_candidates():
    from auditoryhum.scoring import NO_LABEL, keep_best

    assert keep_best(["a", "b", "c"], np.array([0.2, 0.7, 0.7])).label == "b"
    assert keep_best(["a", "b"], np.array([0.5, 0.5])) == keep_best(["a", "b"], np.array([0.5, 0.5]))
    assert keep_best(["a", "b"], np.array([0.5, 0.5])).label == "a"
    assert keep_best([], np.array([])) is NO_LABEL
    assert math.isnan(NO_LABEL.score) and NO_LABEL.label == ""


def test_top_labels_cosine_and_mean():
    from auditoryhum.scoring import cosine_similarities, mean_score, top_labels

    rng = np.random.default_rng(0)
    texts = ["x", "y", "z"]
    text_rows = rng.standard_normal((3, 8)).astype(np.float32)
    audio = rng.standard_normal((4, 8)).astype(np.float32)
    audio[2] = np.nan
    cands = [["x", "y", "z"], ["z"], ["x"], []]
    kept = top_labels(audio, cands, {t: i for i, t in enumerate(texts)}, text_rows)
    sims = cosine_similarities(audio[0], text_rows)
    manual = [float(audio[0].astype(float) @ t.astype(float) / np.linalg.norm(audio[0].astype(float)) / np.linalg.norm(t.astype(float))) for t in text_rows]
    np.testing.assert_allclose(sims, manual, rtol=1e-12)
    assert kept[0].label == texts[int(np.argmax(manual))] and kept[0].score == pytest.approx(max(manual), rel=1e-12)
    assert kept[1].label == "z"
    assert kept[2].label == "" and math.isnan(kept[2].score)  # NaN audio row
    assert kept[3].label == "" and math.isnan(kept[3].score)  # no candidates
    assert mean_score([k.score for k in kept]) == pytest.approx((kept[0].score + kept[1].score) / 2)
    assert math.isnan(mean_score([math.nan]))
    # A zero embedding scores 0 instead of dividing by zero.
    assert cosine_similarities(np.zeros(8), text_rows).tolist() == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------------------------------
# the text-embedding cache


def test_text_cache_round_trip_is_exact_for_any_text(tmp_path):
    from auditoryhum.io.text_cache import TextEmbeddingCache

    texts = ["plain", "caf\u00e9, \"quoted\"", "trailing nul\0", "", "line\nbreak"]
    rows = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    TextEmbeddingCache(tmp_path, "clap-text", "id1").add(texts, rows)
    found = TextEmbeddingCache(tmp_path, "clap-text", "id1").lookup(texts + ["absent", "trailing nul"])
    assert set(found) == set(texts)
    for text, row in zip(texts, rows):
        assert np.array_equal(found[text], row)
    assert TextEmbeddingCache(tmp_path, "clap-text", "id2").lookup(texts) == {}  # another model shares nothing


def test_embed_distinct_cached_encodes_only_new_texts(tmp_path):
    from auditoryhum.io.text_cache import TextEmbeddingCache
    from auditoryhum.models.text_embed import embed_distinct_cached

    calls = []

    def encode(texts):
        calls.append(list(texts))
        return np.stack([np.full(3, float(len(t)), dtype=np.float32) for t in texts])

    cache = TextEmbeddingCache(tmp_path, "clap-text", "m")
    first = embed_distinct_cached(["a", "bb", "ccc"], encode, cache)
    assert calls == [["a", "bb", "ccc"]] and (first.encoded, first.cached) == (3, 0)
    second = embed_distinct_cached(["dddd", "bb", "a", "eeeee"], encode, TextEmbeddingCache(tmp_path, "clap-text", "m"))
    assert calls[1] == ["dddd", "eeeee"] and (second.encoded, second.cached) == (2, 2)
    assert second.rows[:, 0].tolist() == [4.0, 2.0, 1.0, 5.0]
    third = embed_distinct_cached(["eeeee", "a"], encode, TextEmbeddingCache(tmp_path, "clap-text", "m"))
    assert len(calls) == 2 and third.encoded == 0  # all cached: the encoder (and its model) is never needed
    none = embed_distinct_cached(["a"], encode, None)
    assert len(calls) == 3 and none.encoded == 1
    with pytest.raises(ValueError):
        embed_distinct_cached(["a", "a"], encode, None)


def test_text_cache_concurrent_writers_and_compaction(tmp_path):
    from auditoryhum.io import text_cache
    from auditoryhum.io.text_cache import TextEmbeddingCache

    def writer(k):
        TextEmbeddingCache(tmp_path, "ns", "m").add([f"t{k}-{j}" for j in range(5)], np.full((5, 2), k, dtype=np.float32))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(text_cache.COMPACT_ABOVE + 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    folder = tmp_path / "ns" / "m"
    assert len(list(folder.glob("shard-*.npz"))) == text_cache.COMPACT_ABOVE + 4
    assert not [p for p in folder.iterdir() if not p.name.startswith("shard-")]  # no temporary files left

    wanted = [f"t{k}-{j}" for k in range(len(threads)) for j in range(5)]
    found = TextEmbeddingCache(tmp_path, "ns", "m").lookup(wanted)  # reads all, then merges them
    assert len(found) == len(wanted) and found["t7-3"].tolist() == [7.0, 7.0]
    assert len(list(folder.glob("shard-*.npz"))) == 1
    again = TextEmbeddingCache(tmp_path, "ns", "m").lookup(wanted)
    assert all(np.array_equal(again[t], found[t]) for t in wanted)


def test_text_cache_problems_are_warnings(tmp_path, capsys):
    from auditoryhum.io.text_cache import TextEmbeddingCache

    folder = tmp_path / "ns" / "m"
    folder.mkdir(parents=True)
    (folder / "shard-0-damaged.npz").write_bytes(b"not a zip")
    cache = TextEmbeddingCache(tmp_path, "ns", "m")
    assert cache.lookup(["a"]) == {}
    assert "ignoring unreadable text-embedding cache file" in capsys.readouterr().err

    blocker = tmp_path / "file"
    blocker.write_text("x")
    TextEmbeddingCache(blocker, "ns", "m").add(["a"], np.zeros((1, 2), dtype=np.float32))
    assert "cannot write the text-embedding cache" in capsys.readouterr().err


@pytest.mark.slow
def test_model_identity_changes_with_the_weights(models, tmp_path):
    from auditoryhum.errors import UserError
    from auditoryhum.models.text_embed import clap_model_identity

    copy = tmp_path / "clap"
    shutil.copytree(models["clap_fused"], copy)
    first = clap_model_identity(str(copy))
    assert clap_model_identity(str(copy)) == first
    weights = copy / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert clap_model_identity(str(copy)) != first
    second = clap_model_identity(str(copy))
    config = json.loads((copy / "config.json").read_text())
    config["logit_scale_init_value"] = 10.0
    (copy / "config.json").write_text(json.dumps(config))
    assert clap_model_identity(str(copy)) != second
    with pytest.raises(UserError, match="config.json"):
        clap_model_identity(str(tmp_path))

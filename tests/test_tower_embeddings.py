"""features_qwen2a.py and features_gemma3n.py: audio-tower embeddings summed over time.

Every row must equal what the published recipe computes for that clip alone: the tower run
directly on the clip's features (Qwen2-Audio: Whisper features, no mask; Gemma-3n: processor
features, a mask of all False), ``last_hidden_state`` / first output summed over time.

Marked ``slow``: tests that run the scripts in subprocesses (each imports torch and
transformers, about 5 s on a 2-core machine).
"""

import numpy as np
import pytest

from conftest import assert_one_line_error, run_script, write_tone
from tiny_mllm_models import tiny_model

SCRIPTS = {
    "qwen2a": ("features_qwen2a.py", "--qwen2a_model", "--qwen2a_npy"),
    "gemma3n": ("features_gemma3n.py", "--gemma3n_model", "--gemma3n_npy"),
}


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "tiny_mllm"


def _clips(folder):
    """Clips of different lengths (so Gemma-3n features differ in frames) and content."""
    for name, seconds, freq in [("a", 1.0, 220.0), ("b", 2.3, 440.0), ("c", 1.0, 660.0), ("d", 0.6, 880.0), ("e", 1.0, 330.0)]:
        write_tone(folder / f"{name}.wav", seconds=seconds, freq=freq)
    return folder


def _direct(family, folder, paths):
    """The published recipe, one clip at a time, straight on the tower (no package code)."""
    import librosa
    import torch
    from transformers import AutoProcessor, Gemma3nForConditionalGeneration, Qwen2AudioForConditionalGeneration

    processor = AutoProcessor.from_pretrained(folder)
    rows = []
    if family == "qwen2a":
        model = Qwen2AudioForConditionalGeneration.from_pretrained(folder).eval()
        for path in paths:
            y, _ = librosa.load(str(path), sr=16000, mono=True)
            inputs = processor.feature_extractor(raw_speech=y, sampling_rate=16000, return_tensors="pt")
            with torch.no_grad():
                out = model.model.audio_tower(input_features=inputs["input_features"]).last_hidden_state
            rows.append(out.sum(dim=1).float().numpy()[0])
    else:
        model = Gemma3nForConditionalGeneration.from_pretrained(folder).eval()
        for path in paths:
            y, _ = librosa.load(str(path), sr=16000, mono=True)
            inputs = processor.feature_extractor([y], sampling_rate=16000, return_tensors="pt")
            mask = torch.full(inputs["input_features_mask"].shape, False)
            with torch.no_grad():
                out = model.model.audio_tower(audio_mel=inputs["input_features"], audio_mel_mask=mask)[0]
            rows.append(out.sum(dim=1).float().numpy()[0])
    return np.stack(rows)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2a", "gemma3n"])
def test_rows_equal_the_tower_run_directly(tmp_path, tiny_base, family):
    script, model_flag, npy_flag = SCRIPTS[family]
    folder = tiny_model(tiny_base, family, "random")
    clips = _clips(tmp_path / "clips")
    out = tmp_path / f"{family}.npy"
    proc = run_script(script, "--filedir", clips / "*.wav", model_flag, folder, npy_flag, out, "--batch_size", "4")
    assert proc.returncode == 0, proc.stderr
    rows = np.load(out)
    expected = _direct(family, folder, sorted(clips.glob("*.wav")))
    assert rows.dtype == np.float32
    assert rows.shape == expected.shape == (5, 32)  # the tiny towers are 32 wide
    np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-4)
    assert np.all(np.isfinite(rows)) and np.ptp(rows[:, 0]) > 0  # clips differ
    assert "shape (5, 32)" in proc.stdout
    assert not (tmp_path / f".{family}.npy.journal").exists()


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2a", "gemma3n"])
def test_batch_size_does_not_change_rows(tmp_path, tiny_base, family):
    from auditoryhum.io.audio import expand_glob
    from auditoryhum.models.device import resolve_precision
    from auditoryhum.models.families import get_family
    from auditoryhum.models.tower_embed import run_tower_embeddings

    folder = tiny_model(tiny_base, family, "random")
    paths = expand_glob(str(_clips(tmp_path / "clips") / "*.wav"))
    one = run_tower_embeddings(get_family(family), str(folder), paths, str(tmp_path / "1.npy"), resolve_precision("cpu"), batch_size=1)
    three = run_tower_embeddings(get_family(family), str(folder), paths, str(tmp_path / "3.npy"), resolve_precision("cpu"), batch_size=3)
    np.testing.assert_allclose(one.rows, three.rows, rtol=1e-5, atol=1e-4)
    assert one.rows.shape == (5, 32)


@pytest.mark.slow
def test_corrupt_clip_gets_nan_row_then_rerun_resumes(tmp_path, tiny_base, capsys):
    from auditoryhum.io.audio import expand_glob
    from auditoryhum.models.device import resolve_precision
    from auditoryhum.models.families import get_family
    from auditoryhum.models.tower_embed import run_tower_embeddings

    folder = tiny_model(tiny_base, "qwen2a", "random")
    clips = _clips(tmp_path / "clips")
    (clips / "c.wav").write_bytes(b"not audio at all")
    paths = expand_glob(str(clips / "*.wav"))
    out = tmp_path / "q.npy"
    fam, precision = get_family("qwen2a"), resolve_precision("cpu")
    first = run_tower_embeddings(fam, str(folder), paths, str(out), precision, batch_size=2)
    assert len(first.failures) == 1 and "c.wav" in first.failures[0]
    rows = np.load(out)
    assert np.all(np.isnan(rows[2])) and np.all(np.isfinite(np.delete(rows, 2, axis=0)))
    assert (tmp_path / ".q.npy.journal").exists()

    write_tone(clips / "c.wav", seconds=1.0, freq=660.0)
    second = run_tower_embeddings(fam, str(folder), paths, str(out), precision, batch_size=2)
    assert second.reused == 4 and not second.failures
    run_tower_embeddings(fam, str(folder), paths, str(tmp_path / "fresh.npy"), precision, batch_size=2)
    assert out.read_bytes() == (tmp_path / "fresh.npy").read_bytes()  # resumed output is byte-identical
    assert not (tmp_path / ".q.npy.journal").exists()


@pytest.mark.slow
def test_corrupt_clip_script_exit_code(tmp_path, tiny_base):
    clips = _clips(tmp_path / "clips")
    (clips / "b.wav").write_bytes(b"")
    proc = run_script("features_gemma3n.py", "--filedir", clips / "*.wav", "--gemma3n_model",
                      tiny_model(tiny_base, "gemma3n", "random"), "--gemma3n_npy", tmp_path / "g.npy")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "failed:" in proc.stderr and "b.wav" in proc.stderr and "1 of 5 clips failed" in proc.stderr
    rows = np.load(tmp_path / "g.npy")
    assert rows.shape == (5, 32) and np.all(np.isnan(rows[1])) and np.isfinite(rows[0]).all()


@pytest.mark.slow
def test_missing_or_wrong_model_is_one_line_error(tmp_path, tiny_base):
    clips = _clips(tmp_path / "clips")
    proc = run_script("features_qwen2a.py", "--filedir", clips / "*.wav", "--qwen2a_model", tmp_path / "nope",
                      "--qwen2a_npy", tmp_path / "x.npy")
    assert_one_line_error(proc, "--qwen2a_model", "no such model folder")
    proc = run_script("features_gemma3n.py", "--filedir", clips / "*.wav", "--gemma3n_model",
                      tiny_model(tiny_base, "qwen2a", "random"), "--gemma3n_npy", tmp_path / "x.npy")
    assert_one_line_error(proc, "--gemma3n_model", "qwen2_audio")
    assert not (tmp_path / "x.npy").exists()

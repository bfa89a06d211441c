"""The Python API: every stage of this layer driven through ``import auditoryhum`` directly.

Tiny inputs and tiny random models (tests/tiny_*_models.py); the command-line behaviour of the
same stages is tested with subprocesses in the other files.
"""

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import auditoryhum as ah
from auditoryhum.errors import ParameterError, UserError
from conftest import write_tone


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api_clips")
    write_tone(folder / "a.wav", seconds=1.0, freq=220.0)
    write_tone(folder / "b.wav", sr=22050, seconds=0.75, freq=880.0, channels=2)
    write_tone(folder / "c.wav", seconds=1.5, freq=3000.0, amplitude=0.2)
    return folder


def _scores_file(path, rows):
    path.write_text("".join(f"{i}, {p}, {label}, {score}\n" for i, (p, label, score) in enumerate(rows, start=1)))
    return path


# --- files only ------------------------------------------------------------------------------

def test_merge_labels_writes_the_merged_file_and_counts(tmp_path):
    (tmp_path / "m.csv").write_text("car horn, engine\nbirds, wind\nrain\n")
    (tmp_path / "h.csv").write_text("\nsong thrush\n")
    result = ah.merge_labels(tmp_path / "m.csv", tmp_path / "h.csv", tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text() == "car horn, engine\nsong thrush\nrain\n"
    assert result.lines == ["car horn, engine", "song thrush", "rain"]
    assert (result.n_replaced, result.n_lines) == (1, 3)
    assert result.outputs == {"csv3": str(tmp_path / "out.csv")} and result.ok


def test_merge_labels_refuses_an_output_that_is_an_input(tmp_path):
    (tmp_path / "m.csv").write_text("a\nb\n")
    (tmp_path / "h.csv").write_text("x\n")
    with pytest.raises(ParameterError) as info:
        ah.merge_labels(tmp_path / "m.csv", tmp_path / "h.csv", tmp_path / "m.csv")
    assert info.value.param == "csv3" and "csv1" in str(info.value)
    assert (tmp_path / "m.csv").read_text() == "a\nb\n"


def test_score_boost_means_of_the_annotated_rows(tmp_path):
    without = _scores_file(tmp_path / "s1.csv", [("a.wav", "x", 0.1), ("b.wav", "y", 0.5), ("c.wav", "z", 0.3)])
    with_human = _scores_file(tmp_path / "s2.csv", [("a.wav", "x", 0.4), ("b.wav", "y", 0.5), ("c.wav", "w", 0.9)])
    (tmp_path / "h.csv").write_text("fixed\n\nfixed too\n")
    boost = ah.score_boost(without, with_human, tmp_path / "h.csv")
    assert (boost.n_annotated, boost.n_used) == (2, 2)
    assert boost.mean_without == pytest.approx(0.2) and boost.mean_with == pytest.approx(0.65)
    assert boost.difference == pytest.approx(0.45) and boost.outputs == {}


def test_select_review_picks_the_worst_and_writes_the_selection(tmp_path):
    scores = _scores_file(tmp_path / "s.csv", [("a.wav", "x", 0.3), ("b.wav", "", math.nan), ("c.wav", "z", 0.1),
                                               ("d.wav", "w", 0.2)])
    (tmp_path / "l.csv").write_text("x, q\n\nz\nw\n")
    result = ah.select_review(scores, tmp_path / "l.csv", count=2, selection_csv=tmp_path / "sel.csv")
    assert [r.line for r in result.selected] == [2, 3, 4]  # the unscored clip first, then the two lowest
    assert result.n_clips == 4 and result.cutoff == pytest.approx(0.2)
    assert result.summary.startswith("3 of 4 clips selected for review")
    lines = (tmp_path / "sel.csv").read_text().splitlines()
    assert lines[0] == "line,path,label,score,candidates" and len(lines) == 4 and lines[2].startswith("3,c.wav,z,")
    with pytest.raises(ParameterError, match="^fraction must be a number in"):
        ah.select_review(scores, tmp_path / "l.csv", fraction=0, selection_csv=tmp_path / "x.csv")
    with pytest.raises(ParameterError, match="^count cannot be given with fraction"):
        ah.select_review(scores, tmp_path / "l.csv", fraction=0.5, count=1, selection_csv=tmp_path / "x.csv")
    with pytest.raises(ParameterError, match="^nothing to write; give selection_csv, html or both$"):
        ah.select_review(scores, tmp_path / "l.csv")
    assert not (tmp_path / "x.csv").exists()


def test_composite_stats_counts_labels_per_cluster(tmp_path):
    (tmp_path / "ids.csv").write_text("0\n1\n0\n0\n")
    scores = _scores_file(tmp_path / "s.csv", [("a", "car horn", 0.1), ("b", "rain", 0.2), ("c", "car horn", 0.3),
                                               ("d", "engine", 0.4)])
    result = ah.composite_stats(tmp_path / "ids.csv", scores)
    assert result.stats.per_cluster[0] == [("car horn", 2), ("engine", 1)]
    assert result.stats.per_cluster[1] == [("rain", 1)]
    assert "car horn, 2" in result.report and "Total samples: 3" in result.report


def test_composite_labels_checks_its_options_before_reading_anything(tmp_path):
    missing = tmp_path / "no_such_ids.csv"
    with pytest.raises(ParameterError, match="^top_labels must be at least 1, got 0"):
        ah.composite_labels(missing, missing, tmp_path / "t.csv", model="m", top_labels=0)
    with pytest.raises(ParameterError, match="^batch_size must be at least 1, got 0"):
        ah.composite_labels(missing, missing, tmp_path / "t.csv", model="m", batch_size=0)
    with pytest.raises(ParameterError, match="^json and taxonomy_csv are the same file"):
        ah.composite_labels(missing, missing, tmp_path / "t.csv", model="m", json=tmp_path / "t.csv")
    with pytest.raises(ParameterError, match="^backend must be one of hf, gemini"):
        ah.composite_labels(missing, missing, tmp_path / "t.csv", model="m", backend="openai")


# --- audio, no model -------------------------------------------------------------------------

def test_resample_clips_into_a_folder(clips, tmp_path):
    result = ah.resample_clips(f"{clips}/*.wav", output_dir=tmp_path / "out", jobs=1)
    assert result.counts == {"converted": 1, "unchanged": 2, "failed": 0} and result.ok
    info = sf.info(str(tmp_path / "out" / "b.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    with pytest.raises(ParameterError, match="^jobs must be at least 1, got 0"):
        ah.resample_clips(f"{clips}/*.wav", output_dir=tmp_path / "out2", jobs=0)


def test_embed_mfcc_rows_match_the_recipe(clips, tmp_path):
    from auditoryhum.features import mfcc_vector
    from auditoryhum.io.audio import load_audio

    paths = [str(clips / n) for n in ("c.wav", "a.wav")]  # an explicit list keeps its order
    result = ah.embed_mfcc(paths, tmp_path / "m.npy")
    saved = np.load(tmp_path / "m.npy")
    assert saved.shape == (2, 20) and saved.dtype == np.float32
    y, sr = load_audio(paths[0], 16000)
    np.testing.assert_allclose(saved[0], mfcc_vector(y, sr), rtol=1e-5)
    assert result.paths == paths and np.array_equal(result.rows, saved)
    with pytest.raises(ParameterError) as info:
        ah.embed_mfcc(paths, paths[1])  # the output names a clip: refused, the clip untouched
    assert info.value.param == "mfcc_npy"
    assert sf.info(paths[1]).frames == 16000


# --- tiny models -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clap(tmp_path_factory):
    from tiny_embed_models import build_tiny_clap

    return str(build_tiny_clap(tmp_path_factory.mktemp("api_clap") / "clap", fused=False))


@pytest.mark.slow
def test_embed_audio_then_score_labels(clips, clap, tmp_path):
    from auditoryhum.models.text_embed import ClapTextEncoder
    from auditoryhum.scoring import cosine_similarities

    emb = ah.embed_audio(f"{clips}/*.wav", clap, tmp_path / "clap.npy", kind="clap", device="cpu", batch_size=2)
    rows = np.load(tmp_path / "clap.npy")
    assert rows.shape[0] == 3 and np.all(np.isfinite(rows)) and np.array_equal(emb.rows, rows)

    (tmp_path / "labels.csv").write_text("car horn, birds chirping\n\nrain falling\n")
    cache = tmp_path / "cache"
    scored = ah.score_labels(f"{clips}/*.wav", clap, tmp_path / "clap.npy", tmp_path / "labels.csv",
                             tmp_path / "scores.csv", device="cpu", cache_dir=cache)
    text = ClapTextEncoder.load(clap, "cpu").encode(["car horn", "birds chirping"], 8)
    expected = cosine_similarities(rows[0], text)
    assert scored.labels[0] == ["car horn", "birds chirping"][int(np.argmax(expected))]
    assert scored.scores[0] == pytest.approx(float(expected.max()), abs=1e-5)
    assert scored.labels[1] == "" and math.isnan(scored.scores[1]) and scored.no_candidate == [str(clips / "b.wav")]
    assert scored.mean_score == pytest.approx((scored.scores[0] + scored.scores[2]) / 2)
    assert (scored.n_distinct, scored.n_encoded, scored.n_cached) == (3, 3, 0)
    lines = (tmp_path / "scores.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[1].startswith(f"2, {clips / 'b.wav'}, ")
    again = ah.score_labels(f"{clips}/*.wav", clap, tmp_path / "clap.npy", tmp_path / "labels.csv",
                            tmp_path / "scores2.csv", device="cpu", cache_dir=cache)
    assert (again.n_encoded, again.n_cached) == (0, 3)  # from the cache: no model loaded
    assert (tmp_path / "scores2.csv").read_bytes() == (tmp_path / "scores.csv").read_bytes()

    with pytest.raises(ParameterError) as info:  # misaligned: the message names the clips parameter
        (tmp_path / "short.csv").write_text("a\n")
        ah.score_labels(f"{clips}/*.wav", clap, tmp_path / "clap.npy", tmp_path / "short.csv", tmp_path / "s3.csv",
                        device="cpu", cache_dir=cache)
    assert "filedir" in str(info.value) and "1 lines" in str(info.value)
    with pytest.raises(ParameterError, match="^kind must be one of ast, clap"):
        ah.embed_audio(f"{clips}/*.wav", clap, tmp_path / "x.npy", kind="mfcc")


@pytest.mark.slow
def test_embed_sentences_match_sentence_transformers(minilm_path, tmp_path):
    from sentence_transformers import SentenceTransformer

    scores = _scores_file(tmp_path / "s.csv", [("a.wav", "car horn", 0.1), ("b.wav", "rain falling", 0.2)])
    result = ah.embed_sentences(scores, minilm_path, tmp_path / "st.npy", device="cpu", batch_size=1)
    saved = np.load(tmp_path / "st.npy")
    direct = SentenceTransformer(minilm_path, device="cpu").encode(["car horn", "rain falling"])
    np.testing.assert_allclose(saved, direct, atol=1e-5)
    assert result.paths == ["a.wav", "b.wav"] and saved.shape == (2, direct.shape[1])
    with pytest.raises(ParameterError, match="^batch_size must be at least 1, got 0"):
        ah.embed_sentences(scores, minilm_path, tmp_path / "st2.npy", batch_size=0)


@pytest.fixture(scope="module")
def qwen2a(tmp_path_factory):
    from tiny_mllm_models import tiny_model

    return str(tiny_model(tmp_path_factory.mktemp("api_mllm"), "qwen2a", "known"))


@pytest.mark.slow
def test_label_and_embed_tower_with_a_tiny_qwen2_audio(clips, qwen2a, tmp_path):
    from tiny_mllm_models import KNOWN_LABEL

    (tmp_path / "hints.csv").write_text("\nbusy street\n")
    result = ah.label(f"{clips}/*.wav", qwen2a, tmp_path / "labels.csv", family="qwen2a", annotations=tmp_path / "hints.csv",
                      device="cpu", batch_size=2)
    assert result.labels == [KNOWN_LABEL] * 3 and result.ok
    assert (tmp_path / "labels.csv").read_text() == f"{KNOWN_LABEL}\n" * 3
    tower = ah.embed_tower(f"{clips}/*.wav", qwen2a, tmp_path / "tower.npy", family="qwen2a", device="cpu")
    saved = np.load(tmp_path / "tower.npy")
    assert saved.shape[0] == 3 and np.all(np.isfinite(saved)) and np.array_equal(tower.rows, saved)


def test_label_checks_batch_size_hints_and_paths_before_any_model_work(clips, tmp_path):
    hints = tmp_path / "hints.csv"
    hints.write_text("x" * 5000 + "\n")
    missing_model = str(tmp_path / "no_model")
    with pytest.raises(ParameterError, match="^batch_size must be at least 1, got 0"):
        ah.label(f"{clips}/*.wav", missing_model, tmp_path / "l.csv", family="qwen2a", batch_size=0)
    with pytest.raises(ParameterError, match="^family must be one of"):
        ah.label(f"{clips}/*.wav", missing_model, tmp_path / "l.csv", family="whisper")
    with pytest.raises(ParameterError) as info:
        ah.label(f"{clips}/*.wav", missing_model, hints, family="qwen2a", annotations=hints)
    assert info.value.param == "text_label_csv" and hints.read_text() == "x" * 5000 + "\n"
    with pytest.raises(ParameterError, match="^model .*no such model folder"):
        ah.label(f"{clips}/*.wav", missing_model, tmp_path / "l.csv", family="qwen2a")
    from auditoryhum.stages.label import MAX_HINT_CHARS, clip_prompts
    from auditoryhum.recipe import PROMPT

    with pytest.raises(ParameterError, match=f"^annotations file .* line 1 is a hint of 5000 characters.*{MAX_HINT_CHARS}"):
        clip_prompts(["a.wav"], str(hints))
    hints.write_text("\nbusy street\n")
    assert clip_prompts(["a.wav", "b.wav", "c.wav"], str(hints)) == [PROMPT, f"{PROMPT} busy street", PROMPT]


@pytest.mark.slow
def test_label_gemini_against_the_fake_service(clips, tmp_path, monkeypatch):
    from fake_gemini_server import FakeGemini

    key = "AIzaSy-API-test-secret-0123456789"
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", key)
    reply = lambda r: f"Scene {hashlib.sha1(r.audio or b'').hexdigest()[:6]}.\nWind-Noise!"  # noqa: E731
    with FakeGemini(api_key=key, reply=reply) as fake:
        result = ah.label_gemini(f"{clips}/*.wav", "gemini-2.5-flash", tmp_path / "g.csv", base_url=fake.base_url,
                                 retry_base_delay=0.001, max_retries=0)
    expected = [f"scene {hashlib.sha1(Path(p).read_bytes()).hexdigest()[:6]}, windnoise" for p in result.paths]
    assert result.labels == expected and result.ok and result.model == "gemini-2.5-flash"
    assert (tmp_path / "g.csv").read_text() == "".join(line + "\n" for line in expected)
    with pytest.raises(ParameterError, match="^concurrency must be at least 1"):
        ah.label_gemini(f"{clips}/*.wav", "gemini-2.5-flash", tmp_path / "g2.csv", concurrency=0)
    with pytest.raises(ParameterError, match="^genai_id is empty"):
        ah.label_gemini(f"{clips}/*.wav", " ", tmp_path / "g2.csv")


def test_every_stage_function_is_exported_and_documented():
    # The stages are found, not listed: every public function of a module of auditoryhum.stages
    # that returns a StageResult (keep_first_labels was missing from a hand list).
    import importlib
    import inspect
    import pkgutil
    import typing

    import auditoryhum.stages
    from auditoryhum.stages._base import StageResult

    stages = set()
    for info in pkgutil.iter_modules(auditoryhum.stages.__path__):
        module = importlib.import_module(f"auditoryhum.stages.{info.name}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or function.__module__ != module.__name__:
                continue
            returns = typing.get_type_hints(function).get("return")
            if inspect.isclass(returns) and issubclass(returns, StageResult):
                stages.add((module.__name__, name))
    assert len(stages) >= 18 and ("auditoryhum.stages.score", "keep_first_labels") in stages
    exported = {target: name for name, target in ah._STAGES.items()}
    assert stages <= set(exported), sorted(stages - set(exported))
    for target in stages:
        name = exported[target]
        assert name in ah.__all__ and "Parameters" in (getattr(ah, name).__doc__ or ""), name
    with pytest.raises(AttributeError):
        ah.no_such_stage  # noqa: B018


def test_a_parameter_error_is_a_value_error_and_a_user_error(tmp_path):
    assert issubclass(ParameterError, UserError) and issubclass(ParameterError, ValueError)
    with pytest.raises(ValueError) as info:
        ah.select_review(tmp_path / "scores.csv", tmp_path / "labels.csv", selection_csv=tmp_path / "sel.csv",
                         fraction=0.1, count=3)
    assert type(info.value) is ParameterError and info.value.param == "count"
    assert str(info.value) == "count cannot be given with fraction; choose one rule"
    assert not (tmp_path / "sel.csv").exists()


def test_example_summary_scores_each_clustering(tmp_path):
    from auditoryhum.stages.example import summarize_example

    (tmp_path / "true_scenes.csv").write_text("park\npark\nstreet\nstreet\n")
    (tmp_path / "clusters").mkdir()
    (tmp_path / "clusters" / "b_perfect.csv").write_text("1\n1\n0\n0\n")
    (tmp_path / "clusters" / "a_noisy.csv").write_text("0\n-1\n0\n-1\n")
    rows = summarize_example(str(tmp_path)).clusterings
    assert [(r.name, r.n_clusters, r.n_noise) for r in rows] == [("a_noisy", 1, 2), ("b_perfect", 2, 0)]
    assert rows[1].ari == pytest.approx(1.0) and rows[0].ari < 1.0

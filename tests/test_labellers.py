"""The audio-LLM labellers end to end on tiny random models of the four families.

The ``known`` tiny models answer every prompt with ``KNOWN_RESPONSE`` (see
``tests/tiny_mllm_models.py``), so the label files are checked on real strings; the ``random``
ones emit audio-dependent gibberish, which makes batch invariance, resume and annotation
effects visible.

Marked ``slow``: tests that run the scripts in subprocesses as a user would (each imports
torch and transformers, about 5 s on a 2-core machine) or label many clips with the full
64-token budget. The tiny models are built once per session (a few seconds per family) and
shared with ``test_tower_embeddings.py``.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, assert_one_line_error, run_and_kill_when_journal_has, run_script, write_tone
from tiny_mllm_models import FAMILY_KEYS, KNOWN_LABEL, KNOWN_RESPONSE, as_full_omni_checkpoint, tiny_model

SCRIPTS = {
    "qwen2a": ("label_qwen2a.py", "--qwen2a_model"),
    "qwen2_5o": ("label_qwen2_5o.py", "--qwen2_5o_model"),
    "qwen3o": ("label_qwen3o.py", "--qwen3o_model"),
    "gemma3n": ("label_gemma3n.py", "--gemma3n_model"),
}


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """Folder under the session's temp dir where the tiny models are built once and shared."""
    return tmp_path_factory.getbasetemp() / "tiny_mllm"


def _label(tmp_path, family, model, clips, out_name="labels.csv", *extra, env=None):
    script, flag = SCRIPTS[family]
    out = tmp_path / out_name
    proc = run_script(script, "--filedir", clips / "*.wav", flag, model, "--text_label_csv", out, *extra, env=env)
    return proc, out


def _run(family, model, clips, out, hints=None, batch_size=2, long_audio="truncate"):
    """run_labelling in this process (what the scripts call after parsing their flags)."""
    from auditoryhum.io.audio import expand_glob
    from auditoryhum.models.device import resolve_precision
    from auditoryhum.models.families import get_family
    from auditoryhum.models.labeller import run_labelling, user_prompt

    paths = expand_glob(str(clips / "*.wav"))
    hints = hints or []
    prompts = [user_prompt(hints[i] if i < len(hints) else None) for i in range(len(paths))]
    return run_labelling(get_family(family), str(model), paths, prompts, str(out), resolve_precision("cpu"),
                         batch_size=batch_size, long_audio=long_audio)


def _mixed_clips(folder, n=5, seed=0):
    """Clips that differ in length and content: tones, noise, a chirp (16 kHz float WAV)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        seconds = [0.6, 1.0, 2.3, 1.7, 0.9, 1.3, 2.0, 0.8][k % 8]
        t = np.arange(int(16000 * seconds)) / 16000
        if k % 3 == 0:
            y = 0.4 * np.sin(2 * np.pi * (200 + 150 * k) * t)
        elif k % 3 == 1:
            y = 0.2 * rng.standard_normal(t.size)
        else:
            y = 0.4 * np.sin(2 * np.pi * (100 + 900 * t) * t)
        sf.write(str(folder / f"clip{k:02d}.wav"), y.astype(np.float32), 16000, subtype="FLOAT")
    return folder


# ---------------------------------------------------------------------------------------
# every script end to end


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILY_KEYS)
def test_script_writes_post_processed_known_labels(tmp_path, tone_dir, tiny_base, family):
    model = tiny_model(tiny_base, family, "known")
    proc, out = _label(tmp_path, family, model, tone_dir)
    assert proc.returncode == 0, proc.stderr
    # KNOWN_RESPONSE is "Birds chirping.\nWind-Noise!": newline -> ", ", punctuation but commas
    # deleted, lower case; one line per clip in sorted order, UTF-8, final newline.
    assert out.read_bytes() == (KNOWN_LABEL + "\n").encode() * 4
    assert KNOWN_LABEL == "birds chirping, windnoise" and "\n" in KNOWN_RESPONSE
    assert "labels of 4 clips" in proc.stdout
    assert "quantization" in proc.stderr and "device cpu" in proc.stderr  # the resolved choice, said once
    assert proc.stderr.count("quantization") == 1
    assert not (tmp_path / ".labels.csv.journal").exists()  # a finished run leaves no journal


@pytest.mark.slow
@pytest.mark.parametrize("family,model_type", [("qwen2_5o", "qwen2_5_omni"), ("qwen3o", "qwen3_omni_moe")])
def test_full_omni_checkpoint_folder_is_accepted(tmp_path, tone_dir, tiny_base, family, model_type):
    """The published Omni checkpoints hold the thinker inside a composite model (config
    ``thinker_config``, weights under ``thinker.``); the labeller loads the thinker from it."""
    folder = as_full_omni_checkpoint(tiny_model(tiny_base, family, "known"), tmp_path / "full", model_type)
    report = _run(family, folder, tone_dir, tmp_path / "labels.csv")
    assert report.labels == [KNOWN_LABEL] * 4 and not report.failures


@pytest.mark.slow
def test_front_end_windows(tiny_base):
    """How much of a clip each family's front end reads, from the loaded processor."""
    from auditoryhum.models.families import get_family
    from transformers import AutoProcessor

    seconds = {}
    for family in FAMILY_KEYS:
        fam = get_family(family)
        processor = AutoProcessor.from_pretrained(tiny_model(tiny_base, family, "known"))
        seconds[family] = fam.window_seconds(processor) if fam.window_seconds else None
    # Qwen2-Audio and Gemma-3n: 30 s; Qwen2.5-Omni: its checkpoint's chunk_length (300 s, as
    # the published checkpoints); Qwen3-Omni: whole clips.
    assert seconds == {"qwen2a": 30.0, "qwen2_5o": 300.0, "qwen3o": None, "gemma3n": 30.0}


# ---------------------------------------------------------------------------------------
# batching


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILY_KEYS)
def test_batch_size_does_not_change_labels(tmp_path, tiny_base, family):
    """Greedy labels of the random model (audio-dependent gibberish) are identical for batch
    sizes 1 and 4 (left-padded text, clips of different lengths)."""
    from auditoryhum.io.audio import load_audio
    from auditoryhum.models.families import get_family
    from auditoryhum.models.labeller import label_batch, user_prompt
    from transformers import AutoProcessor

    fam = get_family(family)
    folder = tiny_model(tiny_base, family, "random")
    processor = AutoProcessor.from_pretrained(folder)
    processor.tokenizer.padding_side = "left"
    model = fam.load_class().from_pretrained(folder).eval()
    clips = [load_audio(str(p), 16000)[0] for p in sorted(_mixed_clips(tmp_path / "clips").glob("*.wav"))]
    # Prompts of different token lengths make the left padding real.
    prompts = [user_prompt(h) for h in ["", "dog barking near a busy road", "", "rain", ""]]
    one = [label_batch(model, processor, fam, [c], [p], max_new_tokens=12)[0] for c, p in zip(clips, prompts)]
    four = label_batch(model, processor, fam, clips[:4], prompts[:4], max_new_tokens=12)
    four += label_batch(model, processor, fam, clips[4:], prompts[4:], max_new_tokens=12)
    assert four == one
    assert len(set(one)) > 1, one  # the labels depend on the clip: the check is not vacuous
    assert all("\n" not in label for label in one)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2_5o", "qwen3o"])
def test_trimmed_audio_padding_gives_the_published_inputs_and_labels(tmp_path, tiny_base, family):
    """The Omni thinkers read only the real frames; padding to the batch's longest clip instead of
    the extractor's whole 300 s window leaves the token ids, the real frames and the labels
    exactly as the published call (padding="max_length" to the full window) gives them."""
    import torch
    from auditoryhum.models.families import get_family
    from auditoryhum.models.labeller import _to_model, prepare_inputs, render_prompts, user_prompt
    from transformers import AutoProcessor

    fam = get_family(family)
    folder = tiny_model(tiny_base, family, "random")
    processor = AutoProcessor.from_pretrained(folder)
    processor.tokenizer.padding_side = "left"
    model = fam.load_class().from_pretrained(folder).eval()
    rng = np.random.default_rng(3)
    clips = [(0.2 * rng.standard_normal(n)).astype(np.float32) for n in (36801, 16000, 27000)]
    prompts = [user_prompt(h) for h in ("", "two birds", "")]
    trimmed = prepare_inputs(processor, fam, clips, prompts)
    full = processor(
        text=render_prompts(processor, fam, prompts, ["a", "b", "c"]), audio=clips,
        text_kwargs={"padding": True, "add_special_tokens": False},
        audio_kwargs={"padding": "max_length", "sampling_rate": 16000}, return_tensors="pt",
    )
    assert full["input_features"].shape[-1] == 30000 and trimmed["input_features"].shape[-1] < 300
    assert torch.equal(full["input_ids"], trimmed["input_ids"])
    real = full["feature_attention_mask"].sum(-1)
    assert torch.equal(real, trimmed["feature_attention_mask"].sum(-1))
    for i, n in enumerate(real.tolist()):
        assert torch.equal(full["input_features"][i, :, :n], trimmed["input_features"][i, :, :n])
    with torch.inference_mode():
        a = model.generate(**_to_model(full, model), max_new_tokens=12, do_sample=False)
        b = model.generate(**_to_model(trimmed, model), max_new_tokens=12, do_sample=False)
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------
# resume


@pytest.mark.slow
def test_resume_after_kill_is_byte_identical(tmp_path, tiny_base):
    """SIGKILL a run once its journal holds a finished clip; the rerun skips the finished clips
    and writes the same bytes as an uninterrupted run (which also used another batch size)."""
    clips = _mixed_clips(tmp_path / "clips", n=8)
    model = tiny_model(tiny_base, "qwen2a", "random")
    full_out = tmp_path / "full.csv"
    report = _run("qwen2a", model, clips, full_out, batch_size=4)
    assert not report.failures and len(set(report.labels)) > 1

    out = tmp_path / "killed.csv"
    journal = tmp_path / ".killed.csv.journal"
    done = run_and_kill_when_journal_has(
        "label_qwen2a.py", ["--filedir", clips / "*.wav", "--qwen2a_model", model, "--text_label_csv", out, "--batch_size", "1"],
        journal, 2)  # header + one clip
    assert not out.exists()  # the label file is only ever written complete
    assert 1 <= done < 8

    rerun, _ = _label(tmp_path, "qwen2a", model, clips, "killed.csv", "--batch_size", "3")
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming:" in rerun.stderr
    resumed = int(rerun.stderr.split("resuming: ")[1].split(" of ")[0])
    assert done <= resumed < 8
    assert out.read_bytes() == full_out.read_bytes()
    assert not journal.exists()


@pytest.mark.slow
def test_two_models_on_one_output_killed_then_rerun_never_mix(tmp_path, tiny_base):
    """Issue 13 item 2: a labeller runs, a second one with another model starts on the same
    output (replacing the journal) while the first keeps going; both are killed; each rerun
    writes exactly its own model's labels."""
    import signal
    import time

    clips = _mixed_clips(tmp_path / "clips", n=40)  # the first run must still be labelling when the second starts
    known, rand = tiny_model(tiny_base, "qwen2a", "known"), tiny_model(tiny_base, "qwen2a", "random")
    ref_rand = tmp_path / "ref_random.csv"
    _run("qwen2a", rand, clips, ref_rand, batch_size=4)
    known_bytes = (KNOWN_LABEL + "\n").encode() * 40  # what the known model writes for any clip
    assert ref_rand.read_bytes() != known_bytes

    out = tmp_path / "shared.csv"
    journal = tmp_path / ".shared.csv.journal"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO))

    # The library call without the command line's output lock (which would stop the second run
    # at once): what is tested here is that the journals alone cannot mix two runs.
    code = ("import sys; from auditoryhum.io.audio import expand_glob; from auditoryhum.models.device import resolve_precision; "
            "from auditoryhum.models.families import get_family; from auditoryhum.models.labeller import run_labelling, user_prompt; "
            "paths = expand_glob(sys.argv[1]); sys.stdin.readline(); run_labelling(get_family('qwen2a'), sys.argv[2], paths, "
            "[user_prompt(None)] * len(paths), sys.argv[3], resolve_precision('cpu'), batch_size=1)")

    def start(model):
        # Each child imports everything, then waits for a line on stdin before it starts the run.
        return subprocess.Popen([sys.executable, "-c", code, str(clips / "*.wav"), str(model), str(out)], cwd=REPO,
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def go(child):
        child.stdin.write(b"go\n")
        child.stdin.flush()

    def wait_for(predicate, what, child):
        deadline = time.time() + 120
        while time.time() < deadline:
            if predicate():
                return
            assert child.poll() is None, f"the run finished before {what}"
            time.sleep(0.005)
        pytest.fail(f"timed out waiting for {what}")

    def lines():
        return journal.read_bytes().split(b"\n") if journal.exists() else [b""]

    # The random model writes 64 tokens per clip (slow), the known one stops after a few: the
    # first run is still labelling while the second replaces the journal and appends to it.
    first, second = start(rand), start(known)
    try:
        go(first)
        wait_for(lambda: len(lines()) >= 3, "the first run journalled a clip", first)  # header + 1 record + ""
        go(second)
        wait_for(lambda: str(known).encode() in lines()[0], "the second run replaced the journal", second)
        wait_for(lambda: len(lines()) >= 3, "the second run journalled a clip", second)
        time.sleep(0.3)  # both append meanwhile
        assert first.poll() is None
    finally:
        for child in (first, second):
            if child is not None:
                child.send_signal(signal.SIGKILL)
                child.wait(timeout=30)
    assert (first.returncode, second.returncode) == (-signal.SIGKILL, -signal.SIGKILL)  # both killed mid-run
    assert not out.exists()

    rerun, _ = _label(tmp_path, "qwen2a", rand, clips, "shared.csv", "--batch_size", "4")
    assert rerun.returncode == 0, rerun.stderr
    assert out.read_bytes() == ref_rand.read_bytes()
    rerun, _ = _label(tmp_path, "qwen2a", known, clips, "shared.csv", "--batch_size", "3")
    assert rerun.returncode == 0, rerun.stderr
    assert out.read_bytes() == known_bytes


@pytest.mark.slow
def test_journal_of_another_run_is_not_reused(tmp_path, tone_dir, tiny_base, capsys):
    from auditoryhum.io.checkpoint import Journal

    model = tiny_model(tiny_base, "qwen2a", "known")
    out = tmp_path / "labels.csv"
    stale = Journal.open(out, {"tool": "label", "family": "qwen2a", "model": "some other model"})
    stale.append([{"id": os.path.abspath(tone_dir / "a.wav"), "fp": None, "value": "stale label", "error": None}])
    stale.close()
    report = _run("qwen2a", model, tone_dir, out)
    assert report.reused == 0
    assert out.read_text() == (KNOWN_LABEL + "\n") * 4
    assert "different arguments" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# annotations


END_OF_TURN = {"qwen2a": "<|im_end|>", "qwen2_5o": "<|im_end|>", "qwen3o": "<|im_end|>", "gemma3n": "<end_of_turn>"}


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILY_KEYS)
def test_annotation_is_appended_to_the_prompt_the_model_sees(tiny_base, family):
    """The input ids given to generate() decode to a prompt holding '<prompt> <hint>', the
    family's system message, the expanded audio placeholder and (Gemma-3n) one <bos> only."""
    from auditoryhum.models.families import PROMPT, get_family
    from auditoryhum.models.labeller import label_batch, user_prompt
    from transformers import AutoProcessor

    fam = get_family(family)
    folder = tiny_model(tiny_base, family, "known")
    processor = AutoProcessor.from_pretrained(folder)
    processor.tokenizer.padding_side = "left"
    model = fam.load_class().from_pretrained(folder).eval()
    seen = []

    class Spy:
        device, dtype = model.device, model.dtype

        def generate(self, **inputs):
            seen.append(inputs["input_ids"])
            return model.generate(**inputs)

    clips = [np.zeros(16000, np.float32), 0.1 * np.ones(8000, np.float32)]
    labels = label_batch(Spy(), processor, fam, clips, [user_prompt("  dog barking  "), user_prompt("   ")])
    assert labels == [KNOWN_LABEL, KNOWN_LABEL]
    tok = processor.tokenizer
    texts = tok.batch_decode(seen[0], skip_special_tokens=False)
    end = END_OF_TURN[family]
    assert f"{PROMPT} dog barking{end}" in texts[0]
    assert f"{PROMPT}{end}" in texts[1]  # a blank hint adds nothing, not even a space
    assert fam.system_prompt in texts[0]
    assert texts[0].count(tok.audio_token) > 1  # the audio placeholder expanded to soft tokens
    if tok.bos_token is not None:  # Gemma-3n: the template writes <bos>, the tokenizer must not add another
        for row in seen[0].tolist():
            unpadded = [t for t in row if t != tok.pad_token_id]
            assert unpadded[0] == tok.bos_token_id and unpadded.count(tok.bos_token_id) == 1


@pytest.mark.slow
def test_annotations_file_changes_only_annotated_clips(tmp_path, tiny_base):
    from auditoryhum.io.artefacts import read_annotations

    clips = _mixed_clips(tmp_path / "clips", n=4)
    model = tiny_model(tiny_base, "qwen2a", "random")
    hints = tmp_path / "annotations.csv"
    hints.write_text("\nrain on a tin roof\n")  # shorter than the clip list; line 1 blank
    a = _run("qwen2a", model, clips, tmp_path / "plain.csv", batch_size=4).labels
    b = _run("qwen2a", model, clips, tmp_path / "hinted.csv", hints=read_annotations(str(hints)), batch_size=4).labels
    assert [a[0], a[2], a[3]] == [b[0], b[2], b[3]]
    assert a[1] != b[1]


@pytest.mark.slow
def test_annotations_longer_than_clips_is_one_line_error(tmp_path, tone_dir, tiny_base):
    hints = tmp_path / "annotations.csv"
    hints.write_text("a\nb\nc\nd\ne\n")
    proc, out = _label(tmp_path, "qwen2a", tiny_model(tiny_base, "qwen2a", "known"), tone_dir, "x.csv", "--annotations", hints)
    assert_one_line_error(proc, "annotations file", "5 lines", "4 clips")
    assert not out.exists()


# ---------------------------------------------------------------------------------------
# long clips


@pytest.mark.slow
def test_long_clip_is_named_and_windowed(tmp_path, tiny_base, capsys):
    """A 65 s clip: --long_audio truncate labels the first 30 s and warns with its name;
    window labels the windows [0, 30), [30, 60), [60, 65) s and joins their labels in order,
    exactly as if each window were a clip of its own."""
    import soundfile as sf

    rng = np.random.default_rng(1)
    sr = 16000
    long = (0.3 * rng.standard_normal(65 * sr)).astype(np.float32)
    long[30 * sr:60 * sr] = 0.4 * np.sin(2 * np.pi * 440 * np.arange(30 * sr) / sr)
    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(str(clips / "long.wav"), long, sr, subtype="FLOAT")
    write_tone(clips / "short.wav", seconds=1.0)
    windows = tmp_path / "windows"
    windows.mkdir()
    for k, (a, b) in enumerate([(0, 30), (30, 60), (60, 65)]):
        sf.write(str(windows / f"w{k}.wav"), long[a * sr:b * sr], sr, subtype="FLOAT")
    model = tiny_model(tiny_base, "qwen2a", "random")

    truncated = _run("qwen2a", model, clips, tmp_path / "trunc.csv")
    trunc_err = capsys.readouterr().err
    windowed = _run("qwen2a", model, clips, tmp_path / "window.csv", long_audio="window")
    window_err = capsys.readouterr().err
    pieces = _run("qwen2a", model, windows, tmp_path / "pieces.csv").labels
    assert "warning: 1 clip(s) are longer than the 30 s the Qwen2-Audio audio front end reads" in trunc_err
    assert "long.wav (65.0 s)" in trunc_err and "short.wav" not in trunc_err
    assert "--long_audio window" in trunc_err
    assert "long.wav (65.0 s)" in window_err and "joined in order" in window_err
    assert truncated.long_clips == [str(clips / "long.wav")]
    assert len(set(pieces)) == 3 and all(pieces)
    assert truncated.labels[0] == pieces[0]  # truncation reads the first 30 s only
    assert windowed.labels[0] == ", ".join(pieces)
    assert windowed.labels[1] == truncated.labels[1]  # short clips are not affected


# ---------------------------------------------------------------------------------------
# failures


@pytest.mark.slow
def test_corrupt_clip_mid_run_then_rerun_retries_it(tmp_path, tone_dir, tiny_base):
    (tone_dir / "b.wav").write_bytes(b"RIFF\x00\x00not really a wav file")
    model = tiny_model(tiny_base, "qwen2a", "known")
    proc, out = _label(tmp_path, "qwen2a", model, tone_dir, "labels.csv", "--batch_size", "2")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "failed:" in proc.stderr and "b.wav" in proc.stderr
    assert "1 of 4 clips failed" in proc.stderr
    assert out.read_text() == f"{KNOWN_LABEL}\n\n{KNOWN_LABEL}\n{KNOWN_LABEL}\n"
    assert (tmp_path / ".labels.csv.journal").exists()

    write_tone(tone_dir / "b.wav", freq=330.0)  # the user fixes the clip and reruns
    again = _run("qwen2a", model, tone_dir, out)
    assert again.reused == 3 and not again.failures
    assert out.read_text() == (KNOWN_LABEL + "\n") * 4
    assert not (tmp_path / ".labels.csv.journal").exists()


@pytest.mark.slow
def test_missing_model_folder_is_one_line_error(tmp_path, tone_dir):
    proc, out = _label(tmp_path, "qwen2a", tmp_path / "no_such_model", tone_dir)
    assert_one_line_error(proc, "--qwen2a_model", "no such model folder")
    assert not out.exists()


@pytest.mark.slow
def test_folder_without_config_is_one_line_error(tmp_path, tone_dir):
    (tmp_path / "empty").mkdir()
    proc, _ = _label(tmp_path, "qwen2a", tmp_path / "empty", tone_dir)
    assert_one_line_error(proc, "--qwen2a_model", "config.json")


@pytest.mark.slow
def test_model_of_another_family_is_one_line_error(tmp_path, tone_dir, tiny_base):
    proc, _ = _label(tmp_path, "gemma3n", tiny_model(tiny_base, "qwen2a", "known"), tone_dir)
    assert_one_line_error(proc, "--gemma3n_model", "qwen2_audio", "Gemma-3n")


@pytest.mark.slow
def test_empty_glob_is_one_line_error(tmp_path):
    proc, _ = _label(tmp_path, "qwen2a", tmp_path, tmp_path / "none")
    assert_one_line_error(proc, "no files match")


# ---------------------------------------------------------------------------------------
# pieces of the engine


def test_label_line_keeps_one_line_per_clip():
    from auditoryhum.models.labeller import label_line

    assert label_line(KNOWN_RESPONSE) == KNOWN_LABEL
    assert label_line("Rain.\r\nWind\rThunder\u2028Hail") == "rain, wind, thunder, hail"
    assert "\n" not in label_line("a\n\nb") and label_line("a\n\nb") == "a, , b"


def test_user_prompt():
    from auditoryhum.models.families import PROMPT
    from auditoryhum.models.labeller import user_prompt

    assert PROMPT == "Describe the auditory scene using word pairs. Separate each pair with a comma."
    assert user_prompt() == PROMPT
    assert user_prompt("   ") == PROMPT
    assert user_prompt(" busy cafe \n") == PROMPT + " busy cafe"


def test_family_table():
    from auditoryhum.models.families import FAMILIES, QWEN_OMNI_SYSTEM_PROMPT

    assert set(FAMILIES) == set(FAMILY_KEYS)
    assert FAMILIES["qwen2a"].system_prompt == FAMILIES["gemma3n"].system_prompt == "Describing an auditory scene."
    assert FAMILIES["qwen2_5o"].system_prompt == FAMILIES["qwen3o"].system_prompt == QWEN_OMNI_SYSTEM_PROMPT
    assert QWEN_OMNI_SYSTEM_PROMPT.startswith("You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group")
    conversation = FAMILIES["qwen2a"].build_conversation("prompt text", "a.wav")
    assert [m["role"] for m in conversation] == ["system", "user"]
    assert [c["type"] for c in conversation[1]["content"]] == ["audio", "text"]
    assert FAMILIES["qwen3o"].window_seconds is None  # Qwen3-Omni reads whole clips


def test_split_windows():
    from auditoryhum.models.labeller import split_windows

    pieces = split_windows(np.arange(10), 4)
    assert [p.tolist() for p in pieces] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [p.tolist() for p in split_windows(np.arange(8), 4)] == [[0, 1, 2, 3], [4, 5, 6, 7]]


@pytest.mark.slow
def test_help_imports_no_heavy_library():
    code = (
        "import sys, runpy; sys.argv=['label_gemma3n.py','--help']\n"
        "try:\n    runpy.run_path('label_gemma3n.py', run_name='__main__')\nexcept SystemExit: pass\n"
        "print('HEAVY', [m for m in ('torch', 'transformers', 'librosa') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
    for flag in ("--gemma3n_model", "--annotations", "--long_audio", "--quantization", "--dtype", "--batch_size"):
        assert flag in proc.stdout


# ---------------------------------------------------------------------------------------
# the journal (auditoryhum.io.checkpoint)


def test_journal_resumes_complete_records_and_ignores_a_torn_line(tmp_path):
    from auditoryhum.io.checkpoint import Journal, journal_path

    target = tmp_path / "out.csv"
    key = {"model": "m", "n": [1, 2]}
    with Journal.open(target, key) as j:
        assert not j.resumed and j.records == {}
        j.append([{"id": "a", "value": "x"}, {"id": "b", "value": "y"}])
    path = journal_path(target)
    assert path.name == ".out.csv.journal"
    with open(path, "ab") as f:
        f.write(b'{"id": "c", "val')  # killed in mid-write
    j = Journal.open(target, {"n": [1, 2], "model": "m"})  # same key, other key order
    assert j.resumed and sorted(j.records) == ["a", "b"]
    j.append([{"id": "c", "value": "z"}])
    j.close()
    assert sorted(Journal.open(target, key).records) == ["a", "b", "c"]
    other = Journal.open(target, {"model": "another"})
    assert not other.resumed and other.records == {} and "different arguments" in other.discarded_reason
    other.remove()
    assert not path.exists()


# ---------------------------------------------------------------------------------------
# device, dtype and quantisation policy (auditoryhum.models.device)


def test_precision_policy_on_this_machine(monkeypatch):
    from auditoryhum.errors import UserError
    from auditoryhum.models import device

    p = device.resolve_precision("cpu", "auto", "auto")
    assert (p.device, p.dtype, p.quantization) == ("cpu", "float32", "none")
    assert p.quantization_config() is None
    assert "quantization none (4-bit needs a CUDA GPU" in p.describe()
    assert device.resolve_dtype("bfloat16", "cpu") == "bfloat16"
    assert device.resolve_dtype("auto", "mps") == "float16"
    monkeypatch.setattr(device, "bitsandbytes_available", lambda: False)
    assert device.resolve_quantization("auto", "cuda") == ("none", "4-bit needs the bitsandbytes package (pip install bitsandbytes)")
    with pytest.raises(UserError, match="needs the bitsandbytes package"):
        device.resolve_quantization("4bit", "cpu")
    monkeypatch.setattr(device, "bitsandbytes_available", lambda: True)
    assert device.resolve_quantization("auto", "cuda") == ("4bit", "")
    assert device.resolve_quantization("auto", "cpu")[0] == "none"
    assert device.resolve_quantization("8bit", "cpu") == ("8bit", "")
    with pytest.raises(UserError, match="MPS"):
        device.resolve_quantization("4bit", "mps")
    four = device.Precision("cuda", "bfloat16", "4bit")
    config = four.quantization_config()  # the paper's: NF4, double quantisation, bf16 compute
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert str(config.bnb_4bit_compute_dtype) == "torch.bfloat16"
    assert four.describe() == "device cuda, dtype bfloat16, quantization 4-bit NF4 (double quantisation, bfloat16 compute)"

"""The method's later revision wired as flags (docs/revision-2.md).

* ``features_clap_text.py --label_limit N --candidates {split,line}`` (and the same options of
  ``keep_first_labels``): outputs as the revision's rule says, the defaults byte-identical to the
  published rule, both in the run log;
* the labellers' and Gemini's ``--task caption``, ``--prompt``, ``--system_prompt``: the prompt
  and system turn the model sees, one caption line per clip, the resume key;
* ``composite_label.py --system_prompt neutral`` and the free-prompt mode ``--prompt``.

Real models throughout: tiny random CLAP (``tiny_embed_models``), the tiny ``known`` audio LLMs
(``tiny_mllm_models``: they answer every prompt with ``KNOWN_RESPONSE``), the tiny chat model of
``test_composite_label`` and the fake Gemini service.
"""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from conftest import assert_one_line_error, run_script, write_tone
from tiny_mllm_models import KNOWN_LABEL, KNOWN_RESPONSE, tiny_model

from auditoryhum.errors import ParameterError
from auditoryhum.recipe import CAPTION_PROMPT, NEUTRAL_SYSTEM_PROMPT, PROMPT

#: KNOWN_RESPONSE ("Birds chirping.\nWind-Noise!") as a caption: lines joined, case and
#: punctuation kept (there is no comma to turn into a semicolon).
KNOWN_CAPTION = "Birds chirping. Wind-Noise!"

TRICKY = [
    "  Car  traffic noise , birds chirping loudly,, wind",  # inner runs of spaces, empty candidate
    "A busy street; cars pass, then rain.",  # a caption with a comma
    "café ambience, ,   ",  # non-ASCII dropped
    "",  # no candidate at all
]


@pytest.fixture()
def clips(tmp_path):
    folder = tmp_path / "clips"
    for i, name in enumerate("abcd"):
        write_tone(folder / f"{name}.wav", freq=220.0 * (i + 1))
    return folder


def _label_file(tmp_path, lines=TRICKY):
    path = tmp_path / "labels.csv"
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------
# --label_limit, --candidates


def test_keep_first_labels_follows_the_word_limit_and_candidate_mode(clips, tmp_path):
    from auditoryhum.stages.score import keep_first_labels

    labels = _label_file(tmp_path)
    runs = {
        "default": {},
        "explicit": {"label_limit": 2, "candidates": "split"},
        "whole": {"label_limit": 0},
        "one word": {"label_limit": 1},
        "line": {"label_limit": 0, "candidates": "line"},
        "line2": {"label_limit": 2, "candidates": "line"},
    }
    kept = {}
    for name, options in runs.items():
        out = tmp_path / f"{name.replace(' ', '_')}.csv"
        kept[name] = keep_first_labels(f"{clips}/*.wav", labels, out, **options).labels
        kept[name + " bytes"] = out.read_bytes()
    assert kept["default"] == ["Car traffic", "A busy", "caf ambience", ""]
    assert kept["default bytes"] == kept["explicit bytes"]  # the defaults are the published rule
    assert kept["whole"] == ["Car  traffic noise", "A busy street; cars pass", "caf ambience", ""]
    assert kept["one word"] == ["Car", "A", "caf", ""]
    assert kept["line"] == ["Car  traffic noise , birds chirping loudly,, wind", "A busy street; cars pass, then rain.",
                            "caf ambience, ,", ""]
    assert kept["line2"] == ["Car traffic", "A busy", "caf ambience,", ""]
    with pytest.raises(ParameterError) as info:
        keep_first_labels(f"{clips}/*.wav", labels, tmp_path / "bad.csv", label_limit=-1)
    assert info.value.param == "label_limit"
    with pytest.raises(ParameterError) as info:
        keep_first_labels(f"{clips}/*.wav", labels, tmp_path / "bad.csv", candidates="words")
    assert info.value.param == "candidates" and "split, line" in str(info.value)
    assert not (tmp_path / "bad.csv").exists()


@pytest.fixture(scope="module")
def clap(tmp_path_factory):
    from tiny_embed_models import build_tiny_clap

    return str(build_tiny_clap(tmp_path_factory.mktemp("rev2_clap") / "clap", fused=False))


@pytest.mark.slow
def test_score_labels_with_tiny_clap_scores_the_candidates_the_options_make(clips, clap, tmp_path):
    from auditoryhum.models.text_embed import ClapTextEncoder
    from auditoryhum.scoring import cosine_similarities
    from auditoryhum.stages.embed import embed_audio
    from auditoryhum.stages.score import score_labels

    embed_audio(f"{clips}/*.wav", clap, tmp_path / "clap.npy", kind="clap", device="cpu", batch_size=2)
    audio = np.load(tmp_path / "clap.npy")
    labels = _label_file(tmp_path)
    cache = tmp_path / "cache"

    def score(name, **options):
        return score_labels(f"{clips}/*.wav", clap, tmp_path / "clap.npy", labels, tmp_path / f"{name}.csv",
                            device="cpu", cache_dir=cache, **options)

    default, explicit = score("default"), score("explicit", label_limit=2, candidates="split")
    assert (tmp_path / "default.csv").read_bytes() == (tmp_path / "explicit.csv").read_bytes()
    assert default.n_distinct == 6  # car traffic, birds chirping, wind, a busy, then rain, caf ambience
    line = score("line", label_limit=0, candidates="line")
    whole = score("whole", label_limit=0)

    encoder = ClapTextEncoder.load(clap, "cpu")
    # --candidates line: the whole line is the one candidate, so it is kept whatever its score.
    assert line.labels == [TRICKY[0].strip(), TRICKY[1], "caf ambience, ,", ""]
    expected = cosine_similarities(audio[1], encoder.encode([TRICKY[1]], 8))[0]
    assert line.scores[1] == pytest.approx(float(expected), abs=1e-5)
    assert math.isnan(line.scores[3]) and line.no_candidate == [str(clips / "d.wav")]
    # --label_limit 0 with split: the first clip chooses among its three whole candidates.
    candidates = ["Car  traffic noise", "birds chirping loudly", "wind"]
    scores = cosine_similarities(audio[0], encoder.encode(candidates, 8))
    assert whole.labels[0] == candidates[int(np.argmax(scores))]
    assert whole.scores[0] == pytest.approx(float(scores.max()), abs=1e-5)
    rows = (tmp_path / "line.csv").read_text().splitlines()
    assert rows[1].startswith(f"2, {clips / 'b.wav'}, \"A busy street; cars pass, then rain.\", ")


def test_features_clap_text_flags_reach_the_run_log(clips, tmp_path, monkeypatch):
    """In process, through the CLI layer: the effective values are logged, defaults included."""
    from auditoryhum.cli import _BY_SCRIPT, build_parser, execute

    labels = _label_file(tmp_path)
    log = tmp_path / "runs.jsonl"
    monkeypatch.setenv("AUDITORYHUM_RUN_LOG", str(log))
    command = _BY_SCRIPT["features_clap_text.py"]
    base = ["--filedir", f"{clips}/*.wav", "--clap_model", str(tmp_path / "no_clap"), "--clap_npy", str(tmp_path / "no.npy"),
            "--text_label_csv", str(labels)]
    for extra in ([], ["--label_limit", "0", "--candidates", "line"]):
        args = build_parser(command).parse_args(base + ["--top_label_scores_csv", str(tmp_path / "s.csv")] + extra)
        assert execute(command, args, command.script) == 1  # no CLAP model there: one error line, logged anyway
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["settings"] for e in entries] == [
        {"features_clap_text": {"label_limit": 2, "candidates": "split"}},
        {"features_clap_text": {"label_limit": 0, "candidates": "line"}},
    ]
    assert all(e["exit_code"] == 1 for e in entries)


@pytest.mark.slow
def test_bad_flag_values_are_one_line_errors(clips, tmp_path):
    common = ["--filedir", f"{clips}/*.wav", "--clap_model", tmp_path, "--clap_npy", tmp_path / "x.npy",
              "--text_label_csv", tmp_path / "l.csv", "--top_label_scores_csv", tmp_path / "s.csv"]
    assert_one_line_error(run_script("features_clap_text.py", *common, "--label_limit", "-1"), "--label_limit", "less than 0")
    assert_one_line_error(run_script("features_clap_text.py", *common, "--candidates", "words"), "--candidates", "invalid choice")


# ---------------------------------------------------------------------------------------
# captions: --task caption, --prompt, --system_prompt


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return tmp_path_factory.mktemp("rev2_mllm")


def _seen_prompts(family_key, folder, fam, prompts, postprocess):
    """Run label_batch on two silent clips; return (labels, the decoded input ids generate() got)."""
    from transformers import AutoProcessor

    from auditoryhum.models.labeller import label_batch

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
    labels = label_batch(Spy(), processor, fam, clips, prompts, postprocess=postprocess)
    return labels, processor.tokenizer.batch_decode(seen[0], skip_special_tokens=False)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2_5o", "gemma3n", "qwen2a", "qwen3o"])
def test_caption_conversation_has_no_system_turn_and_the_caption_prompt(tiny_base, family):
    from auditoryhum.models.families import get_family
    from auditoryhum.models.labeller import POSTPROCESS, user_prompt

    fam = get_family(family)
    folder = tiny_model(tiny_base, family, "known")
    caption_fam = replace(fam, system_prompt="")
    captions, texts = _seen_prompts(family, folder, caption_fam, [CAPTION_PROMPT, user_prompt("dog", CAPTION_PROMPT)],
                                    POSTPROCESS["caption"])
    assert captions == [KNOWN_CAPTION, KNOWN_CAPTION] and "\n" in KNOWN_RESPONSE
    end = {"gemma3n": "<end_of_turn>"}.get(family, "<|im_end|>")
    for text in texts:
        assert "system" not in text and fam.system_prompt not in text and "helpful assistant" not in text
        assert PROMPT not in text
    assert f"{CAPTION_PROMPT}{end}" in texts[0] and f"{CAPTION_PROMPT} dog{end}" in texts[1]
    # The same family with its system prompt: the turn is there (so the check above can fail).
    labels, texts = _seen_prompts(family, folder, fam, [PROMPT, PROMPT], POSTPROCESS["labels"])
    assert labels == [KNOWN_LABEL, KNOWN_LABEL] and all(fam.system_prompt in t for t in texts)


@pytest.mark.slow
def test_caption_task_end_to_end_and_the_resume_key(clips, tiny_base, tmp_path, monkeypatch):
    """label() with task caption on the Qwen2.5-Omni thinker: one caption line per clip; the
    worker renders no system turn; the resume key holds the task and the system prompt and
    each clip's fingerprint the caption prompt."""
    import auditoryhum.models.labeller as labeller
    from auditoryhum.engine import digest
    from auditoryhum.stages.label import label

    model = tiny_model(tiny_base, "qwen2_5o", "known")  # built (if needed) before the spies: building renders too
    keys, rendered = [], []
    real_run, real_render = labeller.run_resumable, labeller.render_prompts

    def spy_run(output, key, items, spec, **kw):
        keys.append((key, [item.extra_fp for item in items], spec))
        return real_run(output, key, items, spec, **kw)

    def spy_render(processor, family, prompts, refs):
        texts = real_render(processor, family, prompts, refs)
        rendered.extend(texts)
        return texts

    monkeypatch.setattr(labeller, "run_resumable", spy_run)
    monkeypatch.setattr(labeller, "render_prompts", spy_render)
    out = tmp_path / "captions.csv"
    result = label(f"{clips}/*.wav", str(model), out, family="qwen2_5o", task="caption", device="cpu", batch_size=2)
    assert out.read_bytes() == (KNOWN_CAPTION + "\n").encode() * 4 and result.labels == [KNOWN_CAPTION] * 4
    key, fingerprints, spec = keys[0]
    assert (key["task"], key["system_prompt"]) == ("caption", "") and (spec.task, spec.system_prompt) == ("caption", "")
    assert fingerprints == [digest(CAPTION_PROMPT)] * 4
    assert len(rendered) == 4 and all(t.startswith("<|im_start|>user\n") and CAPTION_PROMPT in t for t in rendered)

    # The published task on the same output: another key, so nothing of the caption run is reused.
    keys.clear()
    rendered.clear()
    label(f"{clips}/*.wav", str(model), tmp_path / "labels.csv", family="qwen2_5o", device="cpu", batch_size=2,
          system_prompt="Listen.", prompt="Name the sounds.")
    key, fingerprints, _ = keys[0]
    assert (key["task"], key["system_prompt"]) == ("labels", "Listen.")
    assert fingerprints == [digest("Name the sounds.")] * 4
    assert all(t.startswith("<|im_start|>system\nListen.<|im_end|>\n") and "Name the sounds." in t for t in rendered)
    assert (tmp_path / "labels.csv").read_text() == (KNOWN_LABEL + "\n") * 4


def test_prompt_options_are_checked(clips, tmp_path):
    from auditoryhum.stages.label import label, resolve_prompts

    assert resolve_prompts("labels", None, None, "fam") == (PROMPT, "fam")
    assert resolve_prompts("caption", None, None, "fam") == (CAPTION_PROMPT, "")
    assert resolve_prompts("caption", "Say it.", "Sys", "fam") == ("Say it.", "Sys")
    assert resolve_prompts("labels", None, "", "fam") == (PROMPT, "")
    for kwargs, param in (({"task": "captions"}, "task"), ({"prompt": "  "}, "prompt")):
        with pytest.raises(ParameterError) as info:
            label(f"{clips}/*.wav", str(tmp_path / "m"), tmp_path / "o.csv", family="qwen2a", **kwargs)
        assert info.value.param == param


@pytest.mark.slow
def test_label_script_caption_task_and_run_log(clips, tiny_base, tmp_path):
    model = tiny_model(tiny_base, "gemma3n", "known")
    out, log = tmp_path / "captions.csv", tmp_path / "runs.jsonl"
    proc = run_script("label_gemma3n.py", "--filedir", clips / "*.wav", "--gemma3n_model", model, "--text_label_csv", out,
                      "--task", "caption", "--device", "cpu", env={"AUDITORYHUM_RUN_LOG": str(log)})
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().splitlines() == [KNOWN_CAPTION] * 4
    assert "Gemma-3n captions of 4 clips" in proc.stdout
    entry = json.loads(log.read_text())
    assert entry["settings"] == {"label (gemma3n)": {"task": "caption", "prompt": CAPTION_PROMPT, "system_prompt": ""}}


@pytest.mark.slow
def test_gemini_caption_task_and_system_prompt(clips, tmp_path):
    from fake_gemini_server import GENERATE, FakeGemini

    from auditoryhum.stages.label import label_gemini

    from auditoryhum.models.labeller import label_line

    key = "AIzaSy-TEST-secret-rev2-0123456789"
    reply = "A street, cars.\n\n  Birds sing.  "
    with FakeGemini(api_key=key, reply=lambda r: reply) as fake:
        caption = label_gemini(f"{clips}/*.wav", "gemini-2.5-flash", tmp_path / "c.csv", task="caption", api_key=key,
                               base_url=fake.base_url, retry_base_delay=0.001)
        sent = fake.of(GENERATE)
        assert caption.labels == ["A street; cars. Birds sing."] * 4
        assert (tmp_path / "c.csv").read_text() == "A street; cars. Birds sing.\n" * 4
        assert all(r.prompt == CAPTION_PROMPT and "systemInstruction" not in r.json for r in sent)
        fake.requests.clear()
        labels = label_gemini(f"{clips}/*.wav", "gemini-2.5-flash", tmp_path / "l.csv", api_key=key,
                              base_url=fake.base_url, system_prompt="Describing an auditory scene.")
        sent = fake.of(GENERATE)
        assert labels.labels == [label_line(reply)] * 4 and "; " not in label_line(reply)
        assert all(r.prompt == PROMPT for r in sent)
        assert all(r.json["systemInstruction"]["parts"][0]["text"] == "Describing an auditory scene." for r in sent)


# ---------------------------------------------------------------------------------------
# composite_label.py: --system_prompt neutral, --max_new_tokens, --prompt


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    from test_composite_label import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("rev2_chat"))["known"]


@pytest.mark.slow
def test_free_prompt_mode_prints_the_answer_with_the_neutral_system_text(chat_model, tmp_path, monkeypatch):
    import auditoryhum.models.chat as chat
    from test_composite_label import KNOWN_ANSWER

    from auditoryhum.stages.composite import composite_prompt

    seen = []
    real = chat.render_chat

    def spy(model, system, prompts):
        texts = real(model, system, prompts)
        seen.extend(texts)
        return texts

    monkeypatch.setattr(chat, "render_chat", spy)
    prompt = "Provide a short sentence to describe this set of audio samples: car horn, 3; total samples: 3"
    result = composite_prompt(prompt, model=str(chat_model), device="cpu")
    assert result.answer == KNOWN_ANSWER and result.system == NEUTRAL_SYSTEM_PROMPT and result.outputs == {}
    assert seen == [f"<|im_start|>system\n{NEUTRAL_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"
                    f"<|im_start|>assistant\n"]
    seen.clear()
    other = composite_prompt(prompt, model=str(chat_model), device="cpu", system_prompt="Be brief.", max_new_tokens=3)
    assert seen[0].startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert len(other.answer) < len(KNOWN_ANSWER)  # 3 new tokens at most
    with pytest.raises(ParameterError) as info:
        composite_prompt(" ", model=str(chat_model))
    assert info.value.param == "prompt"


@pytest.mark.slow
def test_composite_label_script_free_prompt_and_flag_errors(chat_model, tmp_path):
    from test_composite_label import KNOWN_ANSWER

    proc = run_script("composite_label.py", "--model", chat_model, "--prompt", "Name this: car horn, 3", "--device", "cpu",
                      "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == KNOWN_ANSWER + "\n"
    assert not list(tmp_path.iterdir())  # nothing written
    assert_one_line_error(run_script("composite_label.py", "--model", chat_model, "--prompt", "x", "--label_csv", "a.csv"),
                          "--label_csv is not used with --prompt")
    assert_one_line_error(run_script("composite_label.py", "--model", chat_model), "--label_csv is required")


@pytest.mark.slow
def test_cluster_naming_with_the_neutral_preset(chat_model, tmp_path):
    from test_composite_label import KNOWN_LABEL, write_inputs

    from auditoryhum.composite import COMPOSITE_SYSTEM_INSTRUCTION
    from auditoryhum.stages.composite import composite_labels

    ids, scores = write_inputs(tmp_path / "in")
    neutral = composite_labels(ids, scores, tmp_path / "tax.csv", model=str(chat_model), system_prompt="neutral",
                               device="cpu")
    document = json.loads((tmp_path / "tax.json").read_text())
    assert neutral.n_named == neutral.n_clusters == 3
    assert document["system_instruction"] == NEUTRAL_SYSTEM_PROMPT
    # a plain chat model's names are grounded in each cluster's labels (composite.settle_labels):
    # "Busy street traffic" fits cluster 0 only; the others are named by their top label
    assert neutral.labels == {-1: "noise", 0: KNOWN_LABEL, 1: "birds chirping", 2: "rain falling"}
    default = composite_labels(ids, scores, tmp_path / "tax2.csv", model=str(chat_model), device="cpu")
    assert json.loads((tmp_path / "tax2.json").read_text())["system_instruction"] == COMPOSITE_SYSTEM_INSTRUCTION
    assert default.labels == neutral.labels

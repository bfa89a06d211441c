"""A model's identity: one rule for the run manifest, the resume journals and the text-embedding cache."""

import os

import pytest

from auditoryhum.models.identity import identity_digest, model_identity


def _folder(tmp_path):
    folder = tmp_path / "model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "clap"}')
    (folder / "model.safetensors").write_bytes(b"w" * 10)
    (folder / "1_Pooling" / "config.json").write_text("{}")
    (folder / ".gitattributes").write_text("*")
    (folder / ".cache" / "huggingface" / "download.lock").write_text("")
    for i, path in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
        os.utime(path, ns=(1_000_000_000 * (i + 1), 1_000_000_000 * (i + 1)))
    return folder


def test_a_folder_is_its_files_sizes_and_times_subfolders_included_hidden_ones_left_out(tmp_path):
    folder = _folder(tmp_path)
    identity = model_identity(str(folder))
    stamp = {p.relative_to(folder).as_posix(): [p.stat().st_size, p.stat().st_mtime_ns]
             for p in folder.rglob("*") if p.is_file()}
    assert identity == {"folder": str(folder), "files": {
        "1_Pooling/config.json": stamp["1_Pooling/config.json"], "config.json": stamp["config.json"],
        "model.safetensors": stamp["model.safetensors"]}}
    assert model_identity(str(folder)) == identity and identity_digest(identity) == identity_digest(model_identity(str(folder)))
    # hidden download bookkeeping changes nothing; a nested file rewritten is another model
    (folder / ".cache" / "huggingface" / "download.lock").write_text("busy")
    assert model_identity(str(folder)) == identity
    os.utime(folder / "1_Pooling" / "config.json", ns=(5, 5))
    changed = model_identity(str(folder))
    assert changed["files"]["1_Pooling/config.json"] == [2, 5] and identity_digest(changed) != identity_digest(identity)


def test_a_file_and_a_hub_id(tmp_path, monkeypatch):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    os.utime(gguf, ns=(7, 7))
    assert model_identity(str(gguf)) == {"file": str(gguf), "size": 4, "mtime_ns": 7}
    assert model_identity(None) is None

    import huggingface_hub.constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--org--tiny" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert model_identity("org/tiny") == {"hub_id": "org/tiny", "snapshot": "0123abcd"}
    assert model_identity("org/not-cached") == {"hub_id": "org/not-cached", "snapshot": None}


def test_the_manifest_the_journals_and_the_text_cache_use_the_one_rule(tmp_path):
    from auditoryhum.example import make_example
    from auditoryhum.models.text_embed import clap_model_identity
    from auditoryhum.pipeline import RunOptions, build_steps

    folder = _folder(tmp_path)
    example = make_example(str(tmp_path / "example"))
    steps = build_steps(RunOptions(filedir=os.path.join(os.path.dirname(example.clips[0]), "*"),
                                   out_dir=str(tmp_path / "run"), text_label_csv=example.label_file,
                                   st_model=str(folder), clap_model=str(folder)).validate())
    options = {step.name: step.options for step in steps}
    assert options["st"]["st_model"] == options["clap"]["clap_model"] == model_identity(str(folder))
    assert clap_model_identity(str(folder)) == identity_digest(model_identity(str(folder)))
    with pytest.raises(ValueError) as info:
        clap_model_identity(str(tmp_path / "example"))
    assert str(info.value) == (f"clap_model {str(tmp_path / 'example')!r} has no readable config.json; give the folder "
                               f"of a Hugging Face model")

"""The command layer: scripts and subcommands share their flags, help loads no heavy library, and
a parameter's error is shown under the flag that set it."""

import subprocess
import sys

import pytest

from auditoryhum.cli import COMMANDS, build_parser
from conftest import REPO, assert_one_line_error, run_script


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

"""The repository documents its own contract: docs/ is complete, current, and self-contained."""

import re
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_cli_reference_is_generated_from_the_current_parsers():
    proc = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'tools'); import gen_cli_docs; "
                           "sys.stdout.write(gen_cli_docs.cli_reference())"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    current = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert proc.stdout == current, "docs/cli.md is out of date: run `python tools/gen_cli_docs.py`"
    for script in ("util_resample.py", "features_clap_text.py", "cluster_sweep.py", "auditoryhum run"):
        assert script in current


def _tracked_text_files():
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [REPO / f for f in out if f.endswith((".py", ".sh", ".md", ".toml", ".txt", ".html", ".js", ".css"))]


@pytest.mark.slow
def test_nothing_refers_to_a_file_outside_the_repository():
    offenders = []
    for path in _tracked_text_files():
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.name == "test_docs.py":
            continue
        if re.search(r"(?<![/\w])SPEC\.md|\.\./shared|/work/shared", text):
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, offenders


def test_every_link_in_the_docs_resolves():
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_the_architecture_table_names_what_exists():
    """docs/architecture.md's table: every script, `ah.` name and module it names exists."""
    import auditoryhum as ah

    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(table) >= 15
    for line in table:
        script, _, names, stage, computation = [cell.strip() for cell in line.strip("|").split("|")]
        for name in re.findall(r"`([\w.]+\.py)`", script):
            assert (REPO / name).exists(), name
        for name in re.findall(r"`(\w+)`", names):
            assert callable(getattr(ah, name)), name
        for module in re.findall(r"`([\w/]+\.py)`", stage + computation):
            assert (REPO / "auditoryhum" / module).exists(), module

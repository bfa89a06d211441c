"""The run log: one JSON line per command run, so a report can say exactly what made a run.

When the environment variable ``AUDITORYHUM_RUN_LOG`` names a file, every command run through
the CLI appends one line to it: the command, its argv (values of secret flags such as
``--api_key`` replaced by ``***``), a shell line that repeats it, the working folder, start and
end time (UTC, ISO 8601), the exit code, the versions of Python and the main libraries, the
git commit of the toolkit when it runs from a git checkout, the fixed seeds and
hyper-parameters of the clustering stage, and the effective settings of the stages the command
ran (``settings``: e.g. the scoring stage's ``label_limit`` and ``candidates``, a labeller's
``task``, ``prompt`` and ``system_prompt``, defaults included), which each stage reports with
:func:`record_settings`. ``report.py --run_log`` turns the log into a
copy-pasteable listing.

The log is written and read only here. Each line is appended with a single ``write`` to a
file opened with ``O_APPEND``, so runs in parallel (a shell loop with ``&``) never interleave
within a line. Recording is best effort: a log that cannot be written gives a warning and
never changes a command's outcome or exit code.
"""

import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

RUN_LOG_ENV = "AUDITORYHUM_RUN_LOG"
#: Version of the line format; a reader skips nothing for a newer one, it only shows what it knows.
SCHEMA = 1
SCRUBBED = "***"
# Flags whose values are secrets. Matched on the option name, so an argparse abbreviation
# (``--api_k``) or the ``--flag=value`` form is scrubbed too.
_SECRET_FLAGS = ("--api_key",)
_SECRET_WORDS = ("key", "token", "secret", "password")
# Shortest abbreviation argparse could accept for --api_key (``--a`` is ambiguous with --annotations).
_MIN_ABBREVIATION = len("--ap")


def utc_now() -> str:
    """The current time in UTC as ISO 8601 with milliseconds and a ``Z``: ``2026-03-01T12:00:00.123Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _is_secret_flag(option: str) -> bool:
    if not option.startswith("--"):
        return False
    if any(len(option) >= _MIN_ABBREVIATION and flag.startswith(option) for flag in _SECRET_FLAGS):
        return True
    name = option[2:].lower()
    return any(word in name for word in _SECRET_WORDS)


def scrub_argv(argv: Sequence[str]) -> List[str]:
    """``argv`` with the value of every secret flag (``--api_key`` and the like) replaced by ``***``.

    Handles ``--api_key VALUE``, ``--api_key=VALUE`` and argparse's abbreviations of the flag.

    Parameters
    ----------
    argv : sequence of str
        As in ``sys.argv`` (the program first).

    Returns
    -------
    scrubbed : list of str
    """
    out: List[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(SCRUBBED)
            hide_next = False
            continue
        option, eq, _ = arg.partition("=")
        if _is_secret_flag(option):
            if eq:
                out.append(f"{option}={SCRUBBED}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(arg)
    return out


def _near(path: str, cwd: Optional[str]) -> str:
    """``path`` relative to ``cwd`` when it lies inside it (``.venv/bin/python``), else unchanged."""
    if cwd and os.path.isabs(path):
        try:
            relative = os.path.relpath(path, cwd)
        except ValueError:
            return path
        if not relative.startswith(".."):
            return relative if os.sep in relative else os.path.join(".", relative)
    return path


def shell_line(argv: Sequence[str], executable: str, cwd: Optional[str]) -> str:
    """A POSIX shell line that repeats a run from ``cwd``.

    A top-level script (``cluster_ag.py``) is prefixed with the interpreter that ran it; the
    package run as ``python -m auditoryhum`` is written that way; the ``auditoryhum`` console
    command is written as invoked. Every word is quoted where the shell needs it.

    Parameters
    ----------
    argv : sequence of str
        ``sys.argv`` of the run (already scrubbed).
    executable : str
        ``sys.executable`` of the run.
    cwd : str or None
        The run's working folder; paths inside it are written relative to it.

    Returns
    -------
    line : str
    """
    if not argv:
        return ""
    program, rest = argv[0], list(argv[1:])
    python = _near(executable, cwd) if executable else "python3"
    if Path(program).name == "__main__.py" and Path(program).parent.name == "auditoryhum":
        words = [python, "-m", "auditoryhum"]
    elif program.endswith(".py"):
        words = [python, _near(program, cwd)]
    else:
        words = [_near(program, cwd)]
    return shlex.join(words + rest)


def _module_version(module: str, distribution: str) -> Optional[str]:
    loaded = sys.modules.get(module)
    version = getattr(loaded, "__version__", None) if loaded is not None else None
    if isinstance(version, str):
        return version
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def versions() -> Dict[str, str]:
    """Versions of Python, the toolkit, numpy and scikit-learn, and of the model libraries the
    run imported (torch, transformers, ...; never imported just to ask).

    Returns
    -------
    versions : dict of str to str
    """
    from auditoryhum import __version__

    out = {"python": platform.python_version(), "auditoryhum": __version__}
    # Read from the installed metadata when not imported: importing scikit-learn costs ~1 s.
    for module, distribution in (("numpy", "numpy"), ("sklearn", "scikit-learn")):
        version = _module_version(module, distribution)
        if version:
            out[distribution] = version
    for module, distribution in (
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("sentence_transformers", "sentence-transformers"),
        ("librosa", "librosa"),
        ("google.genai", "google-genai"),
    ):
        if module in sys.modules:
            version = _module_version(module, distribution)
            if version:
                out[distribution] = version
    return out


def git_commit(repo: Optional[Path] = None) -> Optional[str]:
    """The commit checked out in the toolkit's git repository, read from ``.git`` (no subprocess).

    ``None`` when the toolkit is not run from a git checkout (an installed wheel) or the
    commit cannot be read. Uncommitted changes are not detected.

    Parameters
    ----------
    repo : Path, optional
        Folder holding ``.git``; default the folder above the ``auditoryhum`` package.

    Returns
    -------
    commit : str (40 hex digits) or None
    """
    repo = Path(__file__).resolve().parent.parent if repo is None else Path(repo)
    try:
        git = repo / ".git"
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = git.read_text(encoding="utf-8").strip()
            if not text.startswith("gitdir:"):
                return None
            git = (repo / text[len("gitdir:"):].strip()).resolve()
        if not git.is_dir():
            return None
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text(encoding="utf-8").strip()).resolve()
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head if _is_sha(head) else None
        ref = head[len("ref:"):].strip()
        for folder in (git, common):
            loose = folder / ref
            if loose.is_file():
                sha = loose.read_text(encoding="utf-8").strip()
                return sha if _is_sha(sha) else None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref and _is_sha(parts[0]):
                    return parts[0]
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _is_sha(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def toolkit_parameters() -> dict:
    """The fixed seeds and hyper-parameters of the toolkit, from :mod:`auditoryhum.recipe` (the
    clustering, the review selection's default fraction and the k sweep's default penalty)."""
    from auditoryhum import recipe

    return {
        "seed": recipe.SEED,
        "kmeans": dict(recipe.KMEANS_PARAMS),
        "agglomerative": {"metric": "euclidean", "linkage": "ward"},
        "spectral_embedding": dict(recipe.SPECTRAL_EMBEDDING_PARAMS),
        "hdbscan": dict(recipe.HDBSCAN_PARAMS),
        "tsne": dict(recipe.TSNE_PARAMS),
        "review_fraction_default": recipe.REVIEW_FRACTION,
        "sweep_penalty_default": recipe.SWEEP_PENALTY,
    }


# Settings the stages of the command being recorded report (record_settings); None when no
# command is being recorded, so a library call outside the CLI keeps nothing.
_settings: Optional[Dict[str, dict]] = None


def record_settings(stage: str, values: dict) -> None:
    """Note the effective settings of ``stage`` for the run-log line of the command now running.

    A stage calls this with the values it ran with (defaults resolved), so the log says them
    even when no flag was given. A no-op when no command is being recorded. A stage run twice
    in one command (the pipeline) keeps its last values.

    Parameters
    ----------
    stage : str
        The stage's name (``features_clap_text``, ``label``, ``composite``).
    values : dict
        JSON-serialisable values (str, int, float, bool, None).
    """
    if _settings is not None:
        _settings[stage] = dict(values)


def make_entry(
    command: str,
    argv: Sequence[str],
    cwd: Optional[str],
    started: str,
    ended: str,
    duration_s: float,
    exit_code: int,
    settings: Optional[Dict[str, dict]] = None,
) -> dict:
    """One run-log record (see the module docstring); ``argv`` is scrubbed here; ``settings``:
    stage name -> the effective settings it reported (:func:`record_settings`)."""
    scrubbed = scrub_argv(argv)
    return {
        "schema": SCHEMA,
        "command": command,
        "argv": scrubbed,
        "shell": shell_line(scrubbed, sys.executable, cwd),
        "cwd": cwd,
        "started": started,
        "ended": ended,
        "duration_s": round(duration_s, 3),
        "exit_code": exit_code,
        "versions": versions(),
        "platform": platform.platform(terse=True),
        "git_commit": git_commit(),
        "parameters": toolkit_parameters(),
        "settings": dict(settings or {}),
    }


def encode_entry(entry: dict) -> bytes:
    """The record as one UTF-8 JSON line (non-UTF-8 file names escaped, so the line stays valid)."""
    try:
        return (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from an undecodable file name in argv
        return (json.dumps(entry, ensure_ascii=True) + "\n").encode("ascii")


def append_line(path: str, data: bytes) -> None:
    """Append ``data`` to ``path`` in one ``write`` on an ``O_APPEND`` descriptor (the file and
    its folder are created if needed). Raises ``OSError`` when that fails or is cut short."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        written = os.write(fd, data)
    finally:
        os.close(fd)
    if written != len(data):
        raise OSError(f"only {written} of {len(data)} bytes were written")


def _exit_code_of(exc: BaseException) -> int:
    if isinstance(exc, SystemExit):
        code = exc.code
        return 0 if code is None else code if isinstance(code, int) else 1
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1  # what Python exits with after an uncaught exception


def recorded(command: str, run: Callable[[], int]) -> int:
    """Call ``run()`` (a command; returns its exit code) and, when ``$AUDITORYHUM_RUN_LOG`` is
    set, append the run to that log. The exit code is recorded even when ``run`` raises (the
    exception then propagates). A log that cannot be written only gives a warning.

    Parameters
    ----------
    command : str
        The command's name (``cluster-ag``).
    run : callable
        Runs the command and returns its exit code.

    Returns
    -------
    exit_code : int
        What ``run()`` returned.
    """
    path = os.environ.get(RUN_LOG_ENV)
    if not path:
        return run()
    started, clock = utc_now(), time.monotonic()
    try:
        cwd: Optional[str] = os.getcwd()
    except OSError:  # the working folder was deleted
        cwd = None
    argv = list(sys.argv)
    code = 1
    global _settings
    _settings = {}
    try:
        code = run()
        return code
    except BaseException as exc:
        code = _exit_code_of(exc)
        raise
    finally:
        settings, _settings = _settings, None
        try:
            entry = make_entry(command, argv, cwd, started, utc_now(), time.monotonic() - clock, int(code), settings)
            append_line(path, encode_entry(entry))
        except Exception as exc:  # never let the log change the command's outcome
            from auditoryhum.console import warn

            reason = getattr(exc, "strerror", None) or exc
            warn(f"run not recorded in the run log {path} ({RUN_LOG_ENV}): {reason}")


# ---------------------------------------------------------------------------------------
# reading


@dataclass
class RunLog:
    """The records of a run log in file order, and the lines that could not be read."""

    path: str
    entries: List[dict] = field(default_factory=list)
    bad_lines: List[int] = field(default_factory=list)  # 1-based


def read_run_log(path: str) -> RunLog:
    """Read a run log. Lines that are not a JSON record with ``command`` and ``argv`` (a line
    cut short by a full disk, say) are skipped and listed in ``bad_lines``; blank lines are
    ignored. A missing or unreadable file is a :class:`~auditoryhum.errors.UserError`.
    """
    from auditoryhum.io.artefacts import read_text_lines

    log = RunLog(path)
    for number, line in enumerate(read_text_lines(path, "run log"), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            log.bad_lines.append(number)
            continue
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("command"), str)
            or not isinstance(entry.get("argv"), list)
            or not all(isinstance(a, str) for a in entry["argv"])
        ):
            log.bad_lines.append(number)
            continue
        log.entries.append(entry)
    return log


def current_shell_line() -> str:
    """The shell line of the running process (scrubbed), for a report to name the command that made it."""
    try:
        cwd: Optional[str] = os.getcwd()
    except OSError:
        cwd = None
    return shell_line(scrub_argv(sys.argv), sys.executable, cwd)

"""Validation of parameter values, once: every library function checks its options with these.

Each helper returns the value (converted where said) or raises
:class:`~auditoryhum.errors.ParameterError` naming the parameter, so a message reads the same
from the Python API (``batch_size must be ...``) and the command line (``--batch_size must be ...``).
Light: imports nothing beyond the standard library.
"""

import math
from typing import Any, Iterable, Optional

from auditoryhum.errors import ParameterError


def positive_int(value: Any, param: str) -> int:
    """``value`` as an int >= 1 (bools and non-integral numbers are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ParameterError(param, f"must be a whole number >= 1, got {value!r}") from None
        if not as_float.is_integer():
            raise ParameterError(param, f"must be a whole number >= 1, got {value!r}")
        value = int(as_float)
    if value < 1:
        raise ParameterError(param, f"must be at least 1, got {value}")
    return int(value)


def optional_positive_int(value: Any, param: str) -> Optional[int]:
    """``None`` (use the default), or :func:`positive_int`."""
    return None if value is None else positive_int(value, param)


def non_negative_int(value: Any, param: str) -> int:
    """``value`` as an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParameterError(param, f"must be a whole number >= 0, got {value!r}")
    return int(value)


def finite_non_negative(value: Any, param: str) -> float:
    """``value`` as a finite float >= 0."""
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ParameterError(param, f"must be a finite number >= 0, got {value!r}") from None
    if not math.isfinite(as_float) or as_float < 0:
        raise ParameterError(param, f"must be a finite number >= 0, got {value!r}")
    return as_float


def fraction(value: Any, param: str) -> float:
    """``value`` as a float in (0, 1]."""
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ParameterError(param, f"must be a number in (0, 1], got {value!r}") from None
    if not (0.0 < as_float <= 1.0):
        raise ParameterError(param, f"must be a number in (0, 1], got {value!r}")
    return as_float


def one_of(value: Any, choices: Iterable[Any], param: str) -> Any:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        shown = ", ".join(str(c) for c in choices)
        raise ParameterError(param, f"must be one of {shown}, got {value!r}")
    return value


#: The run engines of the per-clip stages (:mod:`auditoryhum.engine`).
ENGINES = ("local", "ray")


def engine_options(engine: str = "local", ray_address: Optional[str] = None, actors: Any = 1,
                   gpus_per_actor: Any = None, cpus_per_actor: Any = None, verbose: bool = False) -> dict:
    """The engine keyword arguments of a per-clip stage, checked, as a dict for the run engine.

    ``engine`` is ``"local"`` (in this process) or ``"ray"`` (a Ray Data actor pool; the Ray
    options are ignored by ``"local"``).
    """
    one_of(engine, ENGINES, "engine")
    actors = positive_int(actors, "actors")
    for value, param in ((gpus_per_actor, "gpus_per_actor"), (cpus_per_actor, "cpus_per_actor")):
        if value is not None:
            finite_non_negative(value, param)
    if cpus_per_actor is not None and float(cpus_per_actor) == 0:
        raise ParameterError("cpus_per_actor", "must be more than 0 (a fraction such as 0.5 is fine)")
    return {"engine": engine, "ray_address": ray_address, "actors": actors,
            "gpus_per_actor": None if gpus_per_actor is None else float(gpus_per_actor),
            "cpus_per_actor": None if cpus_per_actor is None else float(cpus_per_actor), "verbose": bool(verbose)}


def worker_device(device: str, engine_kw: dict) -> str:
    """The device the model runs on: ``device``, except that ``"auto"`` under Ray with GPUs
    per actor means CUDA, since the driver that resolves it may itself have no GPU."""
    if device == "auto" and engine_kw.get("engine") == "ray" and (engine_kw.get("gpus_per_actor") or 0) > 0:
        return "cuda"
    return device


_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def byte_size(value: Any, param: str) -> int:
    """A size in bytes from ``value``: a whole number of bytes, or text such as ``500M``, ``1.5G``
    or ``20GiB`` (K, M, G, T are powers of 1024; a trailing ``B`` or ``iB`` is allowed)."""
    import re

    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ParameterError(param, f"must be a size >= 0, got {value}")
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(value), flags=re.IGNORECASE)
    if match is None:
        raise ParameterError(param, f"must be a size such as 500M, 4G or 1048576 (bytes), got {value!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def _shown(value: Any) -> str:
    """A wrong value as an error shows it: its type and a short repr (one line)."""
    text = repr(value).replace("\n", " ")
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def path_arg(value: Any, param: str, optional: bool = False) -> Optional[str]:
    """``value`` as a path string: a ``str`` or an ``os.PathLike`` (``None`` only when ``optional``).

    The one check of every path parameter of the stages (directly, and through
    :func:`auditoryhum.stages._base.guarded` and :func:`auditoryhum.io.guard.check_paths`):
    ``bytes`` would be iterated as numbers or shown as ``b'...'``, an int or an array ends in a
    bare TypeError deep in pathlib; each is refused here, naming the parameter.
    """
    import os

    if value is None:
        if optional:
            return None
        raise ParameterError(param, "must be a path (a str or os.PathLike), got None")
    if isinstance(value, bytes):
        raise ParameterError(param, f"must be a path (a str or os.PathLike), got {_shown(value)}; "
                                    f"decode it first (value.decode())")
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
        if isinstance(value, bytes):  # a PathLike of bytes (e.g. os.DirEntry of a bytes scan)
            raise ParameterError(param, f"must be a path (a str or os.PathLike of str), got {_shown(value)}")
    if not isinstance(value, str):
        raise ParameterError(param, f"must be a path (a str or os.PathLike), got {_shown(value)}")
    return value


def path_args(optional: Iterable[str] = (), **params: Any) -> None:
    """Check a stage's path parameters at its top, by name: ``path_args(cluster_npy=cluster_npy,
    png_plot=png_plot, optional=("png_plot",))`` (:func:`path_arg` on each; ``optional`` may be None).

    Called before a stage derives anything from a path (``sweep.csv`` -> ``sweep_decision.json``,
    ``if not html``) so a wrong type never reaches that code.
    """
    optional = set(optional)
    for param, value in params.items():
        path_arg(value, param, optional=param in optional)


def clips_arg(value: Any, param: str = "filedir") -> Any:
    """A clips parameter: a glob (``str`` / ``os.PathLike``) or a list or tuple of clip paths.

    Returns the glob as ``str`` or the paths as a list of ``str``. A numpy array, a set, bytes,
    an int or None is refused naming the parameter (a set has no order, and row *i* of every
    artefact belongs to clip *i*).
    """
    import os

    if isinstance(value, (list, tuple)):
        paths = []
        for number, item in enumerate(value, start=1):
            if isinstance(item, bytes) or not isinstance(item, (str, os.PathLike)):
                raise ParameterError(param, f"must hold clip paths (str or os.PathLike), but item {number} "
                                            f"is {_shown(item)}")
            paths.append(path_arg(item, param))
        return paths
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        return path_arg(value, param)
    hint = "; decode it first (value.decode())" if isinstance(value, bytes) else (
        "; pass a list of str (e.g. array.tolist())" if type(value).__module__ == "numpy" else "")
    raise ParameterError(param, f"must be a glob of the clips (a str) or a list of clip paths, "
                                f"got {'None' if value is None else _shown(value)}{hint}")

"""The one model loader: a Hugging Face class from a local folder, a GGUF file or a hub id, on a device.

Every neural stage loads its model through :func:`load_pretrained` and its processor through
:func:`load_processor`, so a missing folder or a wrong id always gives the same one-line
error, and device placement and evaluation mode are never forgotten.

A model source is one of:

* a folder holding a Hugging Face checkpoint (``config.json`` and weights);
* a GGUF file (``*.gguf``), or a folder without ``config.json`` that holds exactly one:
  transformers reads the configuration, the tokenizer and the weights from the file (the
  ``gguf`` package; quantised weights are dequantised to float32 while loading);
* a hub id (``name`` or ``owner/name``).

A loaded model's weights must match its configuration: a weight the configuration needs
that the checkpoint lacks (left randomly initialised by transformers) or a weight the
checkpoint has that the model does not use is an error naming the folder, never a warning.
"""

import json
import os
import re
import struct
from typing import Any, List, Optional, Sequence, Tuple

from auditoryhum.engine.common import first_line  # noqa: F401 (one definition; importable from here too)
from auditoryhum.errors import UserError

GGUF_SUFFIX = ".gguf"
# Weight files whose readability is checked before transformers opens them (it reports an
# unreadable file as "No such file or directory" or as a missing checkpoint).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".safetensors.index.json", ".bin.index.json")


def _expand(source: str) -> str:
    return os.path.expanduser(source)


def gguf_location(source: str) -> Optional[Tuple[str, str]]:
    """``(folder, file name)`` of the GGUF file ``source`` names, or ``None`` for anything else.

    ``source`` names a GGUF file when it is a file ending in ``.gguf``, or a folder without
    ``config.json`` holding exactly one ``.gguf`` file (a folder with several is refused by
    :func:`check_source`).
    """
    path = _expand(source)
    if os.path.isfile(path) and path.lower().endswith(GGUF_SUFFIX):
        return os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "config.json")):
        found = _gguf_files(path)
        if len(found) == 1:
            return os.path.abspath(path), found[0]
    return None


def _gguf_files(folder: str) -> List[str]:
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(n for n in names if n.lower().endswith(GGUF_SUFFIX) and os.path.isfile(os.path.join(folder, n)))


def describe_source(source: str) -> str:
    """How a model argument is named in messages: a local folder, a GGUF file or a hub id."""
    path = _expand(source)
    if os.path.isfile(path):
        return f"GGUF file {source!r}" if path.lower().endswith(GGUF_SUFFIX) else f"file {source!r}"
    return f"folder {source!r}" if os.path.isdir(path) else f"hub id {source!r}"


def check_source(source: str, flag: str) -> None:
    """Fail early, in one line, when ``source`` looks like a path but names no usable model."""
    path = _expand(source)
    if os.path.isfile(path):
        if not path.lower().endswith(GGUF_SUFFIX):
            raise UserError(f"{flag} {source!r} is a file, not a model; give a model folder (holding config.json), "
                            f"a .gguf file or a hub id")
        return
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "config.json")):
            found = _gguf_files(path)
            if len(found) > 1:
                raise UserError(f"{flag} {source!r} holds {len(found)} GGUF files ({', '.join(found[:4])}"
                                f"{', ...' if len(found) > 4 else ''}); give the one to use as the file itself")
        return
    if path.lower().endswith(GGUF_SUFFIX):
        raise UserError(f"{flag} {source!r}: no such GGUF file")
    # A hub id is "name" or "owner/name"; anything else can only be a folder.
    hub_id_like = re.fullmatch(r"[\w][\w.-]*(/[\w][\w.-]*)?", source) is not None
    if not hub_id_like:
        raise UserError(f"{flag} {source!r}: no such model folder; give a folder holding config.json, "
                        f"a .gguf file or a hub id")


# ---------------------------------------------------------------------------------------
# GGUF headers: the architecture without parsing the whole file

_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


class _GGUFHeader:
    """Reads the key-value header of a GGUF file sequentially (format versions 2 and 3).

    The ``gguf`` package parses every field of the file (the tokenizer's vocabulary
    included: seconds for a small chat model); the architecture is the first key.
    """

    def __init__(self, f):
        self.f = f

    def _read(self, fmt: str):
        size = struct.calcsize(fmt)
        data = self.f.read(size)
        if len(data) != size:
            raise ValueError("the file ends inside its header")
        return struct.unpack(fmt, data)[0]

    def string(self) -> str:
        n = self._read("<Q")
        if n > 1 << 24:
            raise ValueError("a header string is implausibly long")
        data = self.f.read(n)
        if len(data) != n:
            raise ValueError("the file ends inside its header")
        return data.decode("utf-8", errors="replace")

    def value(self, kind: int, skip: bool = False):
        if kind in _GGUF_SCALARS:
            return self._read(_GGUF_SCALARS[kind])
        if kind == _GGUF_STRING:
            return self.string()
        if kind == _GGUF_ARRAY:
            item_kind, count = self._read("<I"), self._read("<Q")
            if skip and item_kind in _GGUF_SCALARS:
                self.f.seek(struct.calcsize(_GGUF_SCALARS[item_kind]) * count, os.SEEK_CUR)
                return None
            return [self.value(item_kind, skip) for _ in range(count)]
        raise ValueError(f"unknown header value type {kind}")


def read_gguf_architecture(path: str) -> str:
    """The ``general.architecture`` of the GGUF file ``path`` (e.g. ``"llama"``), from its header.

    Raises
    ------
    ValueError
        The file is not a GGUF file (wrong magic, unsupported version, truncated header) or
        its header names no architecture.
    OSError
        The file cannot be read.
    """
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError("not a GGUF file (it does not start with 'GGUF')")
        header = _GGUFHeader(f)
        version = header._read("<I")
        if version not in (2, 3):
            raise ValueError(f"GGUF format version {version} is not supported (2 and 3 are)")
        header._read("<Q")  # tensor count
        n_keys = header._read("<Q")
        for _ in range(n_keys):
            key = header.string()
            kind = header._read("<I")
            if key == "general.architecture":
                value = header.value(kind)
                if not isinstance(value, str) or not value:
                    raise ValueError("its general.architecture is not a name")
                return value
            header.value(kind, skip=True)
    raise ValueError("its header has no general.architecture")


def _gguf_architecture(source: str, flag: str) -> str:
    folder, name = gguf_location(source)
    path = os.path.join(folder, name)
    try:
        architecture = read_gguf_architecture(path)
    except OSError as exc:
        raise UserError(f"{flag}: cannot read the GGUF file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UserError(f"{flag}: {path} is not a usable GGUF model: {exc}") from None
    # Whether transformers can build this architecture from GGUF is its own one-line error at
    # load time (checking here would import torch before any input is validated).
    return architecture


def read_model_type(source: str, flag: str) -> str:
    """The model type of ``source`` without loading weights: ``config.json``'s ``model_type``,
    or a GGUF file's architecture (``"llama"`` for SmolLM2). One-line :class:`UserError` when
    there is no readable configuration."""
    check_source(source, flag)
    if gguf_location(source) is not None:
        return _gguf_architecture(source, flag)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(_expand(source))
    except Exception as exc:  # OSError, ValueError, hub errors: no usable model there
        raise UserError(f"{flag}: cannot read a model configuration from {describe_source(source)}: {first_line(exc)}") from None
    return str(getattr(config, "model_type", "") or "")


# ---------------------------------------------------------------------------------------
# loading


def _from_pretrained_args(source: str, kwargs: dict) -> Tuple[str, dict]:
    """The path and keyword arguments of ``from_pretrained`` for ``source`` (``gguf_file`` for GGUF)."""
    location = gguf_location(source)
    if location is None:
        return _expand(source), kwargs
    folder, name = location
    return folder, dict(kwargs, gguf_file=name)


def check_weights_readable(source: str, flag: str) -> None:
    """Fail in one line naming the file and the cause when a local model's weight file cannot
    be read (permission, a broken link, a folder in its place). Hub ids are not checked."""
    path = _expand(source)
    if os.path.isfile(path):
        candidates = [path]
    elif os.path.isdir(path):
        try:
            names = sorted(os.listdir(path))
        except OSError as exc:
            raise UserError(f"{flag}: cannot list the model folder {source!r}: {exc.strerror or exc}") from None
        candidates = [os.path.join(path, n) for n in names if n.lower().endswith(WEIGHT_SUFFIXES)]
    else:
        return
    for candidate in candidates:
        if os.path.islink(candidate) and not os.path.exists(candidate):
            raise UserError(f"{flag}: the weights file {candidate} is a broken link (its target "
                            f"{os.path.realpath(candidate)} does not exist)")
        try:
            with open(candidate, "rb") as f:
                f.read(1)
        except IsADirectoryError:
            raise UserError(f"{flag}: the weights file {candidate} is a folder, not a file") from None
        except OSError as exc:
            fix = "; make it readable (chmod a+r)" if isinstance(exc, PermissionError) else ""
            raise UserError(f"{flag}: cannot read the weights file {candidate}: {exc.strerror or exc}{fix}") from None


def _describe_load_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and getattr(exc, "filename", None):
        return f"{exc.strerror or first_line(exc)}: {exc.filename}"
    return first_line(exc)


def load_processor(processor_class: Any, source: str, flag: str, **kwargs):
    """``processor_class.from_pretrained(source)`` with a one-line error naming ``flag``.

    A GGUF source gives the tokenizer stored in the file (``gguf_file=``); a processor class
    with more than a tokenizer cannot be built from one.
    """
    check_source(source, flag)
    path, kwargs = _from_pretrained_args(source, kwargs)
    try:
        return processor_class.from_pretrained(path, **kwargs)
    except Exception as exc:  # OSError, ValueError, hub errors: all mean "not a usable model here"
        raise UserError(f"{flag}: cannot load a processor from {describe_source(source)}: {_describe_load_error(exc)}") from None


def check_model_type(source: str, flag: str, model_types: Sequence[str], what: str) -> None:
    """Stop in one line when the local folder or GGUF file ``source`` holds no model, or a model of another kind.

    ``model_types`` are the ``model_type`` values of ``config.json`` that ``what`` (e.g.
    ``"a Qwen2-Audio model"``) may have; a GGUF file's architecture is compared with them.
    Hub ids are not checked here (loading them says enough).
    """
    if gguf_location(source) is not None:
        found = _gguf_architecture(source, flag)
        if found not in model_types:
            raise UserError(f"{flag} {source!r} holds a GGUF model of architecture {found!r}, not {what} "
                            f"(model type {' or '.join(model_types)})")
        return
    folder = _expand(source)
    if os.path.isfile(folder):
        check_source(source, flag)  # a file that is no GGUF file: refused there
    if not os.path.isdir(folder):
        return
    config_path = os.path.join(folder, "config.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{flag} {source!r} has no config.json; give the folder of a downloaded Hugging Face model ({what})") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{flag} {source!r}: cannot read config.json ({first_line(exc)})") from None
    found = config.get("model_type") if isinstance(config, dict) else None
    if found not in model_types:
        raise UserError(
            f"{flag} {source!r} holds a model of type {found!r}, not {what} (model type {' or '.join(model_types)})"
        )


def _key_list(keys, limit: int = 3) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_loading_info(info: Any, source: str, flag: str) -> None:
    """Refuse a model whose checkpoint does not match its configuration.

    ``info`` is the loading report of ``from_pretrained(..., output_loading_info=True)``
    (a dict with ``missing_keys``, ``unexpected_keys``, ``mismatched_keys``, ``error_msgs``),
    after transformers has removed the keys each model class declares as expected to be
    absent or extra (tied weights, talker weights beside a thinker, old buffers). What is left
    means random weights or a checkpoint of another model.
    """
    if not isinstance(info, dict):
        return
    problems = []
    missing, unexpected = info.get("missing_keys") or (), info.get("unexpected_keys") or ()
    mismatched, errors = info.get("mismatched_keys") or (), info.get("error_msgs") or ()
    if missing:
        problems.append(f"{len(missing)} weight(s) missing from the checkpoint ({_key_list(missing)}), "
                        f"which would be left random")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected weight(s) ({_key_list(unexpected)})")
    if mismatched:
        names = [m[0] if isinstance(m, (tuple, list)) else str(m) for m in mismatched]
        problems.append(f"{len(names)} weight(s) of the wrong shape ({_key_list(names)})")
    if errors:
        problems.append(f"loading errors ({first_line(Exception(str(errors[0])))})")
    if problems:
        raise UserError(f"{flag}: the weights in {describe_source(source)} do not match its configuration: "
                        f"{'; '.join(problems)}; the folder is incomplete or mixes two models (download it again)")


def load_pretrained(model_class: Any, source: str, flag: str, device: str = "cpu", dtype: Optional[Any] = None, **kwargs):
    """Load ``model_class`` from ``source``, move it to ``device``, set evaluation mode.

    ``kwargs`` go to ``from_pretrained`` (e.g. ``quantization_config``, ``device_map``); when a
    ``device_map`` is given the model is not moved afterwards. A quantised model (a
    ``quantization_config`` that is not ``None``) is placed on ``device`` while it loads,
    since bitsandbytes weights cannot be moved afterwards. A GGUF source is loaded with
    ``gguf_file=`` (weights dequantised to float32 unless ``dtype`` says otherwise).

    Raises
    ------
    UserError
        One line naming ``flag`` and the source: no such model, an unreadable weights file
        (named, with the cause), a load failure, or weights that do not match the
        configuration (see :func:`check_loading_info`).
    """
    check_source(source, flag)
    check_weights_readable(source, flag)
    if dtype is not None:
        kwargs["dtype"] = dtype
    if "quantization_config" in kwargs and kwargs["quantization_config"] is None:
        del kwargs["quantization_config"]  # "no quantisation" loads like any other model
    if "quantization_config" in kwargs and "device_map" not in kwargs:
        kwargs["device_map"] = {"": device}
    placed = "device_map" in kwargs or "quantization_config" in kwargs
    path, kwargs = _from_pretrained_args(source, kwargs)
    try:
        loaded = model_class.from_pretrained(path, output_loading_info=True, **kwargs)
    except Exception as exc:
        raise UserError(f"{flag}: cannot load {model_class.__name__} from {describe_source(source)}: {_describe_load_error(exc)}") from None
    model, info = loaded if isinstance(loaded, tuple) and len(loaded) == 2 else (loaded, None)
    check_loading_info(info, source, flag)
    if not placed:
        model = model.to(device)
    return model.eval()

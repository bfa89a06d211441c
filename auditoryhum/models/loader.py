"""The one model loader: a Hugging Face class from a local folder or a hub id, on a device.

Every neural stage loads its model through :func:`load_pretrained` and its processor through
:func:`load_processor`, so a missing folder or a wrong id always gives the same one-line
error, and device placement and evaluation mode are never forgotten.
"""

import json
import os
import re
from typing import Any, Optional, Sequence

from auditoryhum.errors import UserError


def describe_source(source: str) -> str:
    """How a model argument is named in messages: a local folder or a hub id."""
    return f"folder {source!r}" if os.path.isdir(source) else f"hub id {source!r}"


def check_source(source: str, flag: str) -> None:
    """Fail early, in one line, when ``source`` looks like a path but does not exist."""
    # A hub id is "name" or "owner/name"; anything else can only be a folder.
    hub_id_like = re.fullmatch(r"[\w][\w.-]*(/[\w][\w.-]*)?", source) is not None
    if not hub_id_like and not os.path.isdir(os.path.expanduser(source)):
        raise UserError(f"{flag} {source!r}: no such model folder; give a folder holding config.json or a hub id")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_processor(processor_class: Any, source: str, flag: str, **kwargs):
    """``processor_class.from_pretrained(source)`` with a one-line error naming ``flag``."""
    check_source(source, flag)
    try:
        return processor_class.from_pretrained(os.path.expanduser(source), **kwargs)
    except Exception as exc:  # OSError, ValueError, hub errors: all mean "not a usable model here"
        raise UserError(f"{flag}: cannot load a processor from {describe_source(source)}: {first_line(exc)}") from None


def check_model_type(source: str, flag: str, model_types: Sequence[str], what: str) -> None:
    """Stop in one line when the local folder ``source`` holds no model, or a model of another kind.

    ``model_types`` are the ``model_type`` values of ``config.json`` that ``what`` (e.g.
    ``"a Qwen2-Audio model"``) may have. Hub ids are not checked here (loading them says enough).
    """
    folder = os.path.expanduser(source)
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


def load_pretrained(model_class: Any, source: str, flag: str, device: str = "cpu", dtype: Optional[Any] = None, **kwargs):
    """Load ``model_class`` from ``source``, move it to ``device``, set evaluation mode.

    ``kwargs`` go to ``from_pretrained`` (e.g. ``quantization_config``, ``device_map``); when a
    ``device_map`` is given the model is not moved afterwards. A quantised model (a
    ``quantization_config`` that is not ``None``) is placed on ``device`` while it loads,
    since bitsandbytes weights cannot be moved afterwards.
    """
    check_source(source, flag)
    if dtype is not None:
        kwargs["dtype"] = dtype
    if "quantization_config" in kwargs and kwargs["quantization_config"] is None:
        del kwargs["quantization_config"]  # "no quantisation" loads like any other model
    if "quantization_config" in kwargs and "device_map" not in kwargs:
        kwargs["device_map"] = {"": device}
    try:
        model = model_class.from_pretrained(os.path.expanduser(source), **kwargs)
    except Exception as exc:
        raise UserError(f"{flag}: cannot load {model_class.__name__} from {describe_source(source)}: {first_line(exc)}") from None
    if "device_map" not in kwargs and "quantization_config" not in kwargs:
        model = model.to(device)
    return model.eval()

"""The one model loader: a Hugging Face class from a local folder or a hub id, on a device.

Every neural stage loads its model through :func:`load_pretrained` and its processor through
:func:`load_processor`, so a missing folder or a wrong id always gives the same one-line
error, and device placement and evaluation mode are never forgotten.
"""

import os
import re
from typing import Any, Optional

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


def load_pretrained(model_class: Any, source: str, flag: str, device: str = "cpu", dtype: Optional[Any] = None, **kwargs):
    """Load ``model_class`` from ``source``, move it to ``device``, set evaluation mode.

    ``kwargs`` go to ``from_pretrained`` (e.g. ``quantization_config``, ``device_map``); when a
    ``device_map`` is given the model is not moved afterwards.
    """
    check_source(source, flag)
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        model = model_class.from_pretrained(os.path.expanduser(source), **kwargs)
    except Exception as exc:
        raise UserError(f"{flag}: cannot load {model_class.__name__} from {describe_source(source)}: {first_line(exc)}") from None
    if "device_map" not in kwargs and "quantization_config" not in kwargs:
        model = model.to(device)
    return model.eval()

"""The one device and precision policy: which device, which dtype, which quantisation.

Device: CUDA, then Apple MPS, then CPU, unless the user names one. dtype: bfloat16 on CUDA
GPUs that support it (float16 on older ones), float16 on MPS, float32 on the CPU.
Quantisation: the published recipe loads the audio LLMs 4-bit NF4 with double quantisation
and bfloat16 compute (bitsandbytes); that is the default only where CUDA and bitsandbytes
are both present, and "none" everywhere else, with the reason said once.
"""

import importlib.util
from dataclasses import dataclass
from typing import Any, Optional

from auditoryhum.errors import ParameterError
from auditoryhum.errors import MentionError, mention

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
DTYPE_CHOICES = ("auto", "bfloat16", "float16", "float32")
QUANTIZATION_CHOICES = ("auto", "none", "4bit", "8bit")


def resolve_device(requested: str = "auto") -> str:
    """Return the torch device string to use for ``requested`` (one of :data:`DEVICE_CHOICES`).

    Raises
    ------
    ParameterError
        Naming the parameter ``device`` (the command line shows ``--device``) when ``requested``
        is unknown or names a device this machine lacks.
    """
    import torch

    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda" and not cuda:
        raise MentionError(f"{mention('device')} cuda was requested but torch sees no CUDA GPU; "
                           f"use {mention('device')} auto or cpu")
    if requested == "mps" and not mps:
        raise MentionError(f"{mention('device')} mps was requested but Apple MPS is not available; "
                           f"use {mention('device')} auto or cpu")
    if requested not in DEVICE_CHOICES:
        raise ParameterError("device", f"must be one of {', '.join(DEVICE_CHOICES)}, got {requested!r}")
    return requested


def resolve_dtype(requested: str, device: str) -> str:
    """Name of the torch dtype to load weights in (one of ``bfloat16``, ``float16``, ``float32``).

    ``auto`` gives bfloat16 on a CUDA GPU that supports it (float16 on older GPUs), float16 on
    Apple MPS and float32 on the CPU, where half precision is slow and gains nothing.
    """
    if requested not in DTYPE_CHOICES:
        raise ParameterError("dtype", f"must be one of {', '.join(DTYPE_CHOICES)}, got {requested!r}")
    if requested != "auto":
        return requested
    if device == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "mps":
        return "float16"
    return "float32"


def bitsandbytes_available() -> bool:
    """Whether the bitsandbytes package is installed (checked without importing it)."""
    return importlib.util.find_spec("bitsandbytes") is not None


def resolve_quantization(requested: str, device: str) -> "tuple[str, str]":
    """Return ``(quantization, reason)``: ``"none"``, ``"4bit"`` or ``"8bit"`` and, for an
    automatic fallback, why 4-bit was not used (empty otherwise).

    An explicit ``4bit``/``8bit`` that cannot work here is an error, never a silent fallback.
    """
    if requested not in QUANTIZATION_CHOICES:
        raise ParameterError("quantization", f"must be one of {', '.join(QUANTIZATION_CHOICES)}, got {requested!r}")
    if requested == "auto":
        if device != "cuda":
            return "none", f"4-bit needs a CUDA GPU and this run uses {device}"
        if not bitsandbytes_available():
            return "none", "4-bit needs the bitsandbytes package (pip install bitsandbytes)"
        return "4bit", ""
    if requested in ("4bit", "8bit"):
        if not bitsandbytes_available():
            raise MentionError(
                f"{mention('quantization')} {requested} needs the bitsandbytes package: pip install bitsandbytes, "
                f"or use {mention('quantization')} none"
            )
        if device == "mps":
            raise MentionError(f"{mention('quantization')} {requested} is not supported on Apple MPS; "
                               f"use {mention('quantization')} none")
    return requested, ""


@dataclass(frozen=True)
class Precision:
    """The resolved device, dtype and quantisation of one run."""

    device: str
    dtype: str  # "bfloat16" | "float16" | "float32"
    quantization: str  # "none" | "4bit" | "8bit"
    fallback_reason: str = ""  # why quantisation fell back to none under --quantization auto

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    def quantization_config(self) -> Optional[Any]:
        """The ``BitsAndBytesConfig`` for ``from_pretrained``, or ``None`` when not quantising.

        4-bit is the paper's: NF4, double quantisation, compute in the run's dtype (bfloat16
        on the GPUs the paper used).
        """
        if self.quantization == "none":
            return None
        from transformers import BitsAndBytesConfig

        if self.quantization == "8bit":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=self.torch_dtype,
        )

    def describe(self) -> str:
        """One line naming the choice, e.g. ``device cuda, dtype bfloat16, quantization 4-bit NF4 ...``."""
        if self.quantization == "4bit":
            quant = f"4-bit NF4 (double quantisation, {self.dtype} compute)"
        elif self.quantization == "8bit":
            quant = "8-bit (LLM.int8)"
        else:
            quant = "none" + (f" ({self.fallback_reason})" if self.fallback_reason else "")
        return f"device {self.device}, dtype {self.dtype}, quantization {quant}"


def resolve_precision(device: str = "auto", dtype: str = "auto", quantization: str = "auto") -> Precision:
    """Resolve the parameters ``device``, ``dtype`` and ``quantization`` together into a :class:`Precision`.

    Errors are :class:`~auditoryhum.errors.ParameterError` naming the parameter at fault.
    """
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    quant, reason = resolve_quantization(quantization, resolved_device)
    return Precision(resolved_device, resolved_dtype, quant, reason)

"""The one device policy: CUDA, then Apple MPS, then CPU, unless the user names one."""

from auditoryhum.errors import UserError

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def resolve_device(requested: str = "auto") -> str:
    """Return the torch device string to use for ``requested`` (one of :data:`DEVICE_CHOICES`)."""
    import torch

    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda" and not cuda:
        raise UserError("--device cuda was requested but torch sees no CUDA GPU; use --device auto or cpu")
    if requested == "mps" and not mps:
        raise UserError("--device mps was requested but Apple MPS is not available; use --device auto or cpu")
    if requested not in DEVICE_CHOICES:
        raise UserError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {requested!r}")
    return requested

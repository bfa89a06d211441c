"""How much memory a clustering may use, and the one-line refusal when it cannot fit.

Every stage that allocates in proportion to N^2, N*U or U^2 asks here before it allocates, so
that it stops within seconds with what it needs, what is available and what would fit,
instead of being killed by the kernel's out-of-memory killer with no message.
"""

from typing import Optional

from auditoryhum.errors import UserError

#: Share of the available memory a clustering plans to use: the rest is left to the
#: interpreter, the libraries' own temporaries and the rest of the machine.
MEMORY_SHARE = 0.85
_GIB = 2.0**30


def gib(nbytes: float) -> str:
    """``nbytes`` as ``"12.3 GiB"``."""
    return f"{nbytes / _GIB:.1f} GiB"


def _cgroup_room() -> Optional[int]:
    # Inside a container or a memory-capped session the machine's MemAvailable overstates
    # what the process may take: the cgroup's limit minus its use is the real room.
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            used = int(f.read().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def available_memory_bytes() -> Optional[int]:
    """Bytes this process can still allocate: MemAvailable from /proc/meminfo, lowered to the
    room left under the cgroup's memory limit when there is one; None where neither can be read."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        available = None
    room = _cgroup_room()
    if room is not None:
        available = room if available is None else min(available, room)
    return available


def memory_budget(setting="auto") -> Optional[float]:
    """The byte budget of a clustering: ``"auto"`` is :data:`MEMORY_SHARE` of what is
    available (None where that cannot be read), a number is taken as it is, None means none."""
    if setting == "auto":
        available = available_memory_bytes()
        return None if available is None else available * MEMORY_SHARE
    return setting


def check_fits(need: float, budget: Optional[float], what: str, fix: str) -> None:
    """Raise :class:`UserError` ``<what> needs about X but about Y is available; <fix>`` when
    ``need`` exceeds ``budget`` (no budget: nothing is checked)."""
    if budget is not None and need > budget:
        raise UserError(f"{what} needs about {gib(need)} but about {gib(budget)} is available; {fix}")

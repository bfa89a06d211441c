"""What the toolkit tells the user while it works: notes, warnings and progress bars.

stdout is reserved for the published output formats (``Silhouette Score <x>``, the
composite-label statistics, ...); everything here goes to stderr. ``--quiet`` silences notes
and progress bars, never warnings.
"""

import sys
from typing import Iterable, Optional, Sequence, TypeVar

T = TypeVar("T")

# Set once by the CLI from --quiet; library code never reads flags.
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = bool(quiet)


def warn(message: str) -> None:
    """A warning line: something the user should know about the result."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    """An informational line (silenced by ``--quiet``)."""
    if not _quiet:
        print(f"note: {message}", file=sys.stderr, flush=True)


def progress_enabled() -> bool:
    """Progress bars show unless ``--quiet`` or stderr is not a terminal (logs, CI)."""
    return not _quiet and sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str, total: Optional[int] = None, unit: str = "clip") -> Iterable[T]:
    """Wrap ``iterable`` in a progress bar (count, rate, ETA) when one should be shown."""
    if not progress_enabled():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, dynamic_ncols=True)


class _NoBar:
    """Stands in for a progress bar when none is shown."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, unit: str = "clip"):
    """A progress bar advanced by hand (``bar.update(n)``, ``bar.close()``), for loops over batches.

    Returns an object with those two methods that shows nothing when bars are off.
    """
    if not progress_enabled():
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def report_failures(failures: Sequence[str], total: int, consequence: str = "their rows are NaN",
                    unit: str = "clips", listed: bool = False) -> int:
    """Print each failure and a summary on stderr; return the exit code (1 if any failed).

    For the tools that carry on past an item that cannot be processed. ``consequence`` says what
    the output holds for the failed items; ``listed`` means each was already printed as it happened.
    """
    if not failures:
        return 0
    if not listed:
        for message in failures:
            print(f"failed: {message}", file=sys.stderr)
    print(f"{len(failures)} of {total} {unit} failed; {consequence}", file=sys.stderr)
    return 1

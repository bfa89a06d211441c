"""The error type for problems the user can fix.

A :class:`UserError` is caused by the input or the flags (a missing file, misaligned
artefacts, k larger than the data). The CLI prints it as one line on stderr and exits
non-zero; it never shows a traceback for one. Library code raises it with a message that
names the file and, where there is one, the fix.
"""

import contextlib
import re


class UserError(Exception):
    """An error caused by the input or the flags, reported as one clear line."""


class ParameterError(UserError, ValueError):
    """A bad value of one named parameter of a library function.

    Also a ``ValueError``, as a bad argument is in Python (scikit-learn's and numpy's refusals
    are): ``except ValueError`` in a notebook catches it, ``except UserError`` still does.

    The library says ``<param> <problem>`` (``batch_size must be at least 1, got 0``); the
    command line shows the same problem under the flag that set the parameter
    (``--batch_size must be at least 1, got 0``), found from its parser in one place
    (:func:`auditoryhum.cli._execute`). ``param`` is the keyword argument's name.
    """

    def __init__(self, param: str, problem: str):
        self.param = param
        self.problem = problem
        super().__init__(f"{param} {problem}")

    def for_flag(self, flag: str) -> str:
        """The message with ``flag`` in place of the parameter name."""
        return f"{flag} {self.problem}"


def mention(param: str) -> str:
    """A marker for ``param`` inside a message given to a lower layer; :func:`auditoryhum.stages._base.guarded` turns the
    error into a :class:`MentionError`, shown with the parameter's name (library) or flag (CLI)."""
    return f"\x00{param}\x00"


_MENTION = re.compile("\x00([A-Za-z_][A-Za-z0-9_]*)\x00")


class MentionError(ParameterError):
    """A :class:`ParameterError` whose message names one or more parameters anywhere, not only first.

    ``text`` holds :func:`mention` markers; ``param`` is the first one named.
    """

    def __init__(self, text: str):
        self.text = text
        params = _MENTION.findall(text)
        super().__init__(params[0], "")
        self.params = tuple(params)

    def __str__(self) -> str:
        return self.with_flags(lambda param: param)

    def for_flag(self, flag: str) -> str:
        return self.with_flags(lambda param: flag if param == self.param else param)

    def with_flags(self, flag_of) -> str:
        """The message with every named parameter shown as ``flag_of(param)``."""
        return _MENTION.sub(lambda m: flag_of(m.group(1)), self.text)


@contextlib.contextmanager
def as_parameter(param: str):
    """Turn a ``UserError`` whose message begins with ``param`` (a lower layer was given the
    parameter's name to cite) into a :class:`MentionError`, so the command line shows its flag."""
    try:
        yield
    except ParameterError:
        raise
    except UserError as exc:
        text = str(exc)
        if text.startswith(param) and text[len(param):len(param) + 1] in (" ", ":"):
            raise MentionError(mention(param) + text[len(param):]) from None
        raise

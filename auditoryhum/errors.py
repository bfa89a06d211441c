"""The error type for problems the user can fix.

A :class:`UserError` is caused by the input or the flags (a missing file, misaligned
artefacts, k larger than the data). The CLI prints it as one line on stderr and exits
non-zero; it never shows a traceback for one. Library code raises it with a message that
names the file and, where there is one, the fix.
"""


class UserError(Exception):
    """An error caused by the input or the flags, reported as one clear line."""


class ParameterError(UserError):
    """A bad value of one named parameter of a library function.

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

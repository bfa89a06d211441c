"""The error type for problems the user can fix.

A :class:`UserError` is caused by the input or the flags (a missing file, misaligned
artefacts, k larger than the data). The CLI prints it as one line on stderr and exits
non-zero; it never shows a traceback for one. Library code raises it with a message that
names the file and, where there is one, the fix.
"""


class UserError(Exception):
    """An error caused by the input or the flags, reported as one clear line."""

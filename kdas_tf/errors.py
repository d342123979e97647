"""The one error class for mistakes a user can fix: a bad flag or argument, missing data, a work directory
made with other settings, an unreadable file, a training that diverged.

The command lines print its message as one line, `error: ...`, and exit with code 2; a Python caller
catches it like any ValueError. Every other exception is a bug (or a fault of the machine) and keeps its
stack trace.
"""


class UserError(ValueError):
    """Something the user can fix; the message says what is wrong and what to do."""

"""The one error class for mistakes a user can fix: a bad flag or argument, missing data, a work directory
made with other settings, an unreadable file, a training that diverged.

The command lines print its message as one line, `error: ...`, and exit with code 2; a Python caller
catches it like any ValueError. Every other exception is a bug (or a fault of the machine) and keeps its
stack trace.
"""


class UserError(ValueError):
    """Something the user can fix; the message says what is wrong and what to do."""


def as_user_error(call, *args, **kwargs):
    """call(*args, **kwargs), with a lower layer's ValueError about a value the user gave raised as a UserError:
    the value is judged where it enters (the config, or a job's start)."""
    try:
        return call(*args, **kwargs)
    except UserError:
        raise
    except ValueError as error:
        raise UserError(str(error)) from None

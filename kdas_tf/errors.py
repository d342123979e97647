"""The one error class for mistakes a user can fix: a bad flag or argument, missing data, a work directory
made with other settings, an unreadable file, a training that diverged.

The command lines print its message as one line, `error: ...`, and exit with code 2; a Python caller
catches it like any ValueError. Every other exception is a bug (or a fault of the machine) and keeps its
stack trace.
"""

import re


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


# A terminal's escape sequences (Keras colours the message of an error inside a layer's call).
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# What Keras and TensorFlow wrap around an error's cause: the layer that was called, the arguments' values
# (whole tensors), the op's internal name (and the eager op's name after it), the function and device it ran on.
_FRAMING = (
    re.compile(r"Exception encountered when calling [\w.]+\(\)\.?"),
    re.compile(r"Exception encountered:"),
    re.compile(r"Arguments received by .*", re.S),
    re.compile(r"Received args: .*?(?=for signature:|$)", re.S),
    re.compile(r"Full object config: .*", re.S),
    re.compile(r"\[Op:[^\]]*\]?(?: name: ?\S*)?"),
    re.compile(r"\{\{function_node [^}]*\}\}"),
)


def one_line(message, limit=300):
    """A message from TensorFlow or Keras, made fit for a one-line error: no terminal escapes, no framing
    around its cause (the layer called, the tensors passed), whitespace joined, cut at a word within `limit`."""
    text = _ESCAPES.sub("", str(message))
    for framing in _FRAMING:
        text = framing.sub(" ", text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return text

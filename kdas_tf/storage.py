"""Atomic writes: a crash or kill never leaves a half-written result where a good one was.

Everything finished (teacher models, results, exports) is written to a
temporary name in the same directory and renamed into place, which POSIX
makes atomic; a write that fails removes its temporary and leaves the old
file as it was.
"""

import contextlib
import json
import os
import tempfile
import zipfile

import keras

from kdas_tf.errors import UserError


def _temporary_path(path, suffix=""):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(handle)
    os.chmod(temporary, 0o644)  # mkstemp's 0600 would make results unreadable to the rest of a team
    return temporary


def _write_then_rename(path, write, suffix=""):
    """write(temporary) beside `path`, then rename it onto `path`; on any failure `path` is untouched."""
    temporary = _temporary_path(path, suffix=suffix)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        # A failed or interrupted write must not leave its half-written temporary behind either.
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def write_bytes(path, content):
    """Write `content` (bytes) to `path`, atomically."""

    def write(temporary):
        with open(temporary, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())

    _write_then_rename(path, write)


def write_text(path, text):
    """Write `text` to `path`, atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path, value):
    """Write `value` as indented JSON to `path`, atomically."""
    write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def save_model(model, path):
    """Save a Keras model to `path` (a .keras file), atomically."""
    _write_then_rename(path, model.save, suffix=".keras")  # Keras wants the .keras ending on the temporary too


def load_model(path):
    """Load a .keras model in safe mode: no Python code from the work directory runs."""
    import kdas_tf.models  # noqa: F401  (registers the add-on layers for deserialisation)

    if not os.path.isfile(path):
        raise UserError(f"{path} does not exist")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
        # Keras calls an unreadable file "File not found"; say what it is and how to recover.
        raise UserError(
            f"{path} is not a readable Keras model ({type(error).__name__}): it may be corrupt; "
            "delete it and rerun the same command to rebuild it from its checkpoints"
        ) from None


def claim_workdir(workdir, settings, unrecorded=None):
    """Record the settings a work directory is made with; refuse a rerun with other ones.

    Results in one directory must come from one configuration, or resuming
    would silently mix them. unrecorded: {setting: value} for settings added
    later, as a directory whose settings.json lacks them was made.
    """
    path = os.path.join(workdir, "settings.json")
    written = read_json(path) if os.path.exists(path) else {}
    recorded = {**(unrecorded or {}), **written} if written else {}
    changed = {k: (recorded[k], v) for k, v in settings.items() if k in recorded and recorded[k] != v}
    if changed:
        detail = ", ".join(f"--{k} was {old!r}, now {new!r}" for k, (old, new) in sorted(changed.items()))
        raise UserError(f"{workdir} was made with other settings ({detail}): rerun with those or use another --workdir")
    if not settings.keys() <= written.keys():
        # A directory made before a setting was recorded takes the value it is resumed with (or `unrecorded`'s).
        write_json(path, {**settings, **written})

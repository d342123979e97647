"""Atomic writes: a crash or kill never leaves a half-written result where a good one was.

Everything finished (teacher models, results, exports) is written to a
temporary name in the same directory and renamed into place, which POSIX
makes atomic; a write that fails removes its temporary and leaves the old
file as it was. The rename is made durable by syncing the directory after it, so a power cut cannot
bring back the old file (or none) after a step was recorded as finished.

`fault_message` is the one place that says which faults of the machine a user can fix (a full disk, a
read-only or unwritable directory, a name too long) and what to do about each.
"""

import contextlib
import errno
import json
import os
import re
import sys
import tempfile
import zipfile

from kdas_tf.errors import UserError


TEMPORARY_PREFIX = ".tmp-"  # a name beginning so is a temporary; one left by a dead process is removed at claim time


def _temporary_path(path, suffix=""):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=suffix, dir=directory)
    os.close(handle)
    os.chmod(temporary, 0o644)  # mkstemp's 0600 would make results unreadable to the rest of a team
    return temporary


@contextlib.contextmanager
def writing(path):
    """An OSError inside that names no file (a full disk met by write or fsync) is about `path`: the one-line
    error then says which file could not be written."""
    try:
        yield
    except OSError as error:
        if error.errno is not None and error.filename is None:  # (an OSError of a message alone keeps it)
            error.filename = str(path)
        raise


def _write_then_rename(path, write, suffix=""):
    """write(temporary) beside `path`, then rename it onto `path`; on any failure `path` is untouched."""
    temporary = _temporary_path(path, suffix=suffix)
    try:
        with writing(path):
            write(temporary)
            os.replace(temporary, path)
            sync_directory(os.path.dirname(os.path.abspath(path)))
    except BaseException:
        # A failed or interrupted write must not leave its half-written temporary behind either.
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def sync_directory(directory):
    """Make the renames in `directory` durable: a file's fsync does not cover the directory entry naming it."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


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
    import keras  # here, not above: the commands import storage before TensorFlow (cli.run answers --help first)

    from kdas_tf.models import addons, resnet  # noqa: F401  (their layers register for deserialisation)

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


def claim_workdir(workdir, settings, unrecorded=None, *, record=True):
    """Record the settings a work directory is made with; refuse a rerun with other ones.

    Results in one directory must come from one configuration, or resuming
    would silently mix them. unrecorded: {setting: value} for settings added
    later, as a directory whose settings.json lacks them was made. record=False: only check (a parallel
    search's worker, which writes nothing its chief owns).
    """
    path = os.path.join(workdir, "settings.json")
    written = read_json(path) if os.path.exists(path) else {}
    recorded = {**(unrecorded or {}), **written} if written else {}
    changed = {k: (recorded[k], v) for k, v in settings.items() if k in recorded and recorded[k] != v}
    if changed:
        detail = ", ".join(f"--{k} was {old!r}, now {new!r}" for k, (old, new) in sorted(changed.items()))
        raise UserError(f"{workdir} was made with other settings ({detail}): rerun with those or use another --workdir")
    if record and not settings.keys() <= written.keys():
        # A directory made before a setting was recorded takes the value it is resumed with (or `unrecorded`'s).
        write_json(path, {**settings, **written})


# What a user does about each fault of the machine; the errno's own text says what happened.
_FREE_SPACE = "free space, then rerun the same command to resume"
_WRITABLE = "make it writable or use another --workdir, then rerun the same command to resume"
FAULTS = {
    errno.ENOSPC: _FREE_SPACE,
    errno.EDQUOT: _FREE_SPACE,
    errno.EROFS: _WRITABLE,
    errno.EACCES: _WRITABLE,
    errno.ENAMETOOLONG: "use a shorter --workdir",
    errno.ENOTDIR: "a file stands where a directory belongs: move it or use another --workdir",
    errno.EISDIR: "a directory stands where a file belongs: move it or use another --workdir",
}


def fault_message(error):
    """One line for a fault of the machine a user can fix (FAULTS), or None: any other exception is a bug.

    An OSError says it with its errno; TensorFlow's errors (a checkpoint write) and h5py's (a .keras file) only
    with the errno's text, so that is matched too. The cause chain counts: Keras re-raises some as ValueError.
    """
    tf = sys.modules.get("tensorflow")  # no TensorFlow imported, no TensorFlow error to recognise
    fault_types = (OSError, tf.errors.OpError) if tf else (OSError,)
    seen = error
    while seen is not None:
        if isinstance(seen, fault_types):
            text = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", " ".join(str(seen).split())).strip()  # TF's op names
            code = seen.errno if isinstance(seen, OSError) and seen.errno in FAULTS else next(
                (code for code in FAULTS if os.strerror(code) in text), None)
            if code is not None:
                named = isinstance(seen, OSError) and seen.filename
                what = f"{seen.filename}: {os.strerror(code)}" if named else text[-300:]  # the path, the errno's text
                return f"{what}: {FAULTS[code]}"
        seen = seen.__cause__ or seen.__context__
    return None

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
import hashlib
import json
import os
import re
import sys
import tempfile
import zipfile
import zlib

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


def content_sha256(path, chunk=1 << 20):
    """sha256 of a file, or of a directory's files (relative paths and contents, in sorted order)."""
    digest = hashlib.sha256()
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
    for file in files:
        digest.update(os.path.relpath(file, path).encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                digest.update(block)
    return digest.hexdigest()


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
        raise _unreadable_model(path, error) from None


def check_model_file(path):
    """Refuse a .keras file whose archive is damaged (truncated, or a member failing its CRC), reading it once:
    what load_model would find, at a fraction of its cost, before a run writes anything."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:  # zlib: a damaged deflated member
        raise _unreadable_model(path, error) from None
    if damaged is not None:
        raise _unreadable_model(path, zipfile.BadZipFile(f"{damaged} fails its CRC"))


def _unreadable_model(path, error):
    # Keras calls an unreadable file "File not found"; say what it is and how to recover.
    return UserError(f"{path} is not a readable Keras model ({type(error).__name__}): it may be corrupt; "
                     "delete it and rerun the same command to rebuild it from its checkpoints")


DATA_SETTING = "data"  # settings.json's record of the data a run was made from (data.content_identity), no flag


def read_settings(path):
    """A settings.json's content, {} where there is none; a file that is not a JSON object is refused in one line."""
    if not os.path.exists(path):
        return {}
    try:
        written = read_json(path)
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise UserError(f"{path} is not readable JSON ({str(error).splitlines()[0]}): restore it from a backup, "
                        "or use another --workdir") from None
    if not isinstance(written, dict):
        raise UserError(f"{path} is not a JSON object of settings: restore it from a backup, or use another --workdir")
    return written


def check_settings(workdir, settings, unrecorded=None, *, results=()):
    """Refuse a rerun of `workdir` with other settings than it was made with; returns what settings.json holds.

    Results in one directory must come from one configuration, or resuming would silently mix them.
    unrecorded: {setting: value} for settings added later, as a directory whose settings.json lacks them was
    made. results: paths that only a run with these settings makes; where one exists without settings.json,
    what it was made with is unknown, and it is refused. A settings.json made before DATA_SETTING was recorded
    is refused when the run has one: the line says how to add it. Reads only.
    """
    path = os.path.join(workdir, "settings.json")
    written = read_settings(path)
    made = [os.path.relpath(p, workdir) for p in results if os.path.exists(p)]
    if not written and made:
        raise UserError(f"{workdir} holds results but no settings.json ({', '.join(made[:3])}), so what they were made "
                        "with is unknown: restore its settings.json from a backup, or use another --workdir")
    recorded = {**(unrecorded or {}), **written} if written else {}
    changed = {k: (recorded[k], v) for k, v in settings.items() if k in recorded and recorded[k] != v}
    if changed:
        detail = ", ".join(f"the data was {old}, now {new}" if k == DATA_SETTING else f"--{k} was {old!r}, now {new!r}"
                           for k, (old, new) in sorted(changed.items()))
        if changed.keys() == {DATA_SETTING}:
            raise UserError(f"{workdir} was made from other data ({detail}): rerun on the data it was made from, "
                            "or use another --workdir")
        raise UserError(f"{workdir} was made with other settings ({detail}): rerun with those or use another --workdir")
    if written and DATA_SETTING in settings and DATA_SETTING not in written:
        value = json.dumps(settings[DATA_SETTING])
        raise UserError(f"{path} does not record the data the run was made from (it predates that record): if that "
                        f"was this data, add \"{DATA_SETTING}\": {value} to it and rerun; else use another --workdir")
    return written


def record_settings(workdir, settings, written):
    """Write settings.json where it lacks some of `settings` (check_settings' `written`): a directory made before a
    setting was recorded takes the value it is resumed with (or `unrecorded`'s); nothing is written otherwise."""
    if not settings.keys() <= written.keys():
        write_json(os.path.join(workdir, "settings.json"), {**settings, **written})


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

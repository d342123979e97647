"""One process at a time per work directory: an exclusive flock on WORKDIR/.lock, held until the process exits.

A flock belongs to an open file, so the operating system drops it when its holder dies, however it dies
(SIGKILL, a crash, a lost host): a lock is never stale and never needs removing by hand. The holder writes
its pid and host into the file, so the process refused can name it.

- The owner of a work directory (a search's chief, a teachers, train or export job) holds `.lock`
  exclusively. That is what makes it safe for the owner to delete the temporaries it finds at claim time:
  no other owner is writing.
- A run reading its teachers from another directory (--teacher_workdir) holds that directory's `.lock`
  shared: many such runs may read one ensemble at once, but none while a process owns the directory
  (it may be training them); a run that must train missing teachers there takes it exclusively.
- A parallel search's workers hold `.lock-workers` shared and never `.lock`: they work under their chief's
  claim. The chief removes temporaries only when no worker holds `.lock-workers` (one on another host may
  still be writing its trial's checkpoint).

Locks are held per process and re-entrant: claiming a directory this process already holds is a no-op.
On NFS, Linux implements flock with the server's byte-range locks, so hosts sharing a work directory see
each other's locks.
"""

import fcntl
import os
import socket
import sys

from kdas_tf.errors import UserError

LOCK_FILE = ".lock"
WORKERS_LOCK_FILE = ".lock-workers"
EXCLUSIVE, SHARED = "exclusive", "shared"

_held = {}  # lock file (absolute) -> (its open descriptor, EXCLUSIVE or SHARED), for the life of the process


def _try_lock(path, mode):
    """flock `path` in `mode` without waiting; True once this process holds it so."""
    path = os.path.abspath(path)
    descriptor, held_mode = _held.get(path, (None, None))
    if held_mode in (mode, EXCLUSIVE):
        return True
    if descriptor is None:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by started processes
        except OSError as error:
            raise UserError(f"cannot create the lock file {path} ({error.strerror}): make its directory writable "
                            "or choose another --workdir") from None
    try:
        fcntl.flock(descriptor, (fcntl.LOCK_EX if mode == EXCLUSIVE else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        if held_mode == SHARED:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a failed upgrade drops the shared lock (flock(2))
        else:
            os.close(descriptor)
        return False
    except OSError as error:  # ENOLCK: a file system without locks
        if held_mode is None:
            os.close(descriptor)
        raise UserError(f"cannot lock {path} ({error.strerror}): use a --workdir on a file system with locks "
                        "(a local disk, or NFS with its lock service)") from None
    _held[path] = (descriptor, mode)
    return True


def holder(directory):
    """Who holds `directory`'s lock, as its holder wrote it ("pid 123 on host h (kdas_tf.train)")."""
    try:
        with open(os.path.join(directory, LOCK_FILE)) as f:
            return f.read().strip() or "a process that has just started"
    except OSError:
        return "another process"


def _command():
    """What this process runs: kdas_tf.train for python -m kdas_tf.train, else the script's name."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec else os.path.basename(sys.argv[0] if sys.argv else "python")


def hold(directory):
    """Hold `directory` exclusively for this process's life; a directory held by another process is refused."""
    path = os.path.join(directory, LOCK_FILE)
    if _try_lock(path, EXCLUSIVE):
        descriptor = _held[os.path.abspath(path)][0]
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"pid {os.getpid()} on host {socket.gethostname()} ({_command()})\n".encode(), 0)
        return
    if _probe(path, fcntl.LOCK_SH):  # only shared holders: the file names the last owner, not them
        raise UserError(f"{directory} is in use by runs reading its teachers (their --teacher_workdir): wait for "
                        "them to end, then rerun the same command; or use another --workdir")
    raise UserError(f"{directory} is in use by {holder(directory)}: wait for it to end or stop it, then rerun the "
                    "same command (a process that dies releases it); or use another --workdir")


def hold_teachers(directory, *, train):
    """Hold the shared teacher directory `directory`: shared to read its ensemble, exclusive to train it."""
    path = os.path.join(directory, LOCK_FILE)
    if _try_lock(path, EXCLUSIVE if train else SHARED):
        return
    if train:
        raise UserError(f"other runs are reading the teachers in {directory} (--teacher_workdir): let them end, or "
                        f"train the teachers first with python -m kdas_tf.teachers --workdir={directory}")
    raise UserError(f"the teachers in {directory} (--teacher_workdir) are being written by {holder(directory)}: "
                    "wait for it to end, then rerun the same command")


def hold_as_worker(directory):
    """A parallel search's worker: shares its chief's claim and only marks that it is alive."""
    _try_lock(os.path.join(directory, WORKERS_LOCK_FILE), SHARED)


def workers_alive(directory):
    """Whether any worker (of this host or another) holds `directory`'s workers' lock now."""
    path = os.path.join(directory, WORKERS_LOCK_FILE)
    return os.path.exists(path) and not _probe(path, fcntl.LOCK_EX)


def _probe(path, operation):
    """Whether `path` could be flocked with `operation` now; the probe lets go at once (its own descriptor)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, operation | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)  # a flock belongs to its open file: closing this one leaves the others' locks be


def release(directory):
    """Let go of `directory`'s locks held by this process (a Python caller done with a run; tests)."""
    for name in (LOCK_FILE, WORKERS_LOCK_FILE):
        descriptor, _ = _held.pop(os.path.abspath(os.path.join(directory, name)), (None, None))
        if descriptor is not None:
            os.close(descriptor)


def release_all():
    """Let go of every lock this process holds."""
    for descriptor, _ in _held.values():
        os.close(descriptor)
    _held.clear()

"""What every `python -m kdas_tf.X` shares: its flags from the config's sections, help, one-line errors, exit codes.

The entry points define their flags (config.define_flags, so their --help lists them) and import the library
they call inside main: `run(main)` answers --help (-h, --helpfull) before anything imports TensorFlow, with
exit code 0. Otherwise it imports TensorFlow without its C++ start-up lines (oneDNN, CUDA stubs, cuInit on a
machine without a GPU, CPU features), unless the command line says --verbosity=1 or more (an explicit
TF_CPP_MIN_LOG_LEVEL is kept), lets absl parse the flags, and main turns them into a config.Config once
(config.from_flags) for one library call.
"""

import itertools
import logging as pylogging
import os
import re
import signal
import sys
import tempfile

from absl import app, flags, logging

from kdas_tf import parallel
from kdas_tf.errors import UserError
from kdas_tf.runtime import storage


def _verbose(argv):
    """--verbosity=N / -v N with N >= 1 on the command line (absl's flags, which are parsed later)."""
    for flag, value in zip(argv, argv[1:] + [""]):
        match = re.fullmatch(r"--?(?:verbosity|v)(?:=(-?\d+))?", flag)
        if match and int(match[1] if match[1] is not None else (value if re.fullmatch(r"-?\d+", value) else 0)) >= 1:
            return True
    return False


# What TensorFlow's import prints on every machine, whatever TF_CPP_MIN_LOG_LEVEL says (it logs before it
# reads it): CUDA stubs on a machine without a GPU, absl's notice. Any other line is shown.
_IMPORT_NOISE = re.compile(r"cudart_stub\.cc|absl::InitializeLog|cpu_feature_guard\.cc|To enable the following "
                           r"instructions|oneDNN custom operations")


def _import_tensorflow_quietly():
    """Import TensorFlow with stderr (the file descriptor its C++ writes to) captured, then show what is not
    _IMPORT_NOISE: a failed import still shows everything it said."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not _IMPORT_NOISE.search(line):
                    sys.stderr.write(line)


def _import_tensorflow(argv):
    """TensorFlow, imported before main: quietly unless --verbosity is 1 or more."""
    # absl's handler on the root logger first: TensorFlow gives its own logger a stderr handler when the root
    # has none, and each of its warnings was printed twice (and its INFO lines, "Assets written to ...", once).
    logging.use_absl_handler()
    if not _verbose(argv) and "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # later C++ lines too (cuInit's failure on a CPU)
        _import_tensorflow_quietly()


FLAGS = flags.FLAGS
flags.disclaim_key_flags()  # the key flags declared here are the calling command's, so its --help lists them
HELP = {"-h": False, "-?": False, "--help": False, "-help": False, "--helpshort": False, "-helpshort": False,
        "--helpfull": True, "-helpfull": True}  # what absl calls a help flag, and -h; True: every module's flags


def _answer_help(argv):
    """--help (-h, --helpshort) or --helpfull anywhere before `--`: usage on stdout and exit code 0 (absl's help
    exits 1), from the flags' definitions alone: nothing is parsed or imported."""
    asked = [HELP[arg] for arg in itertools.takewhile(lambda arg: arg != "--", argv[1:]) if arg in HELP]
    if not asked:
        return
    app.usage(shorthelp=not any(asked), writeto_stdout=True)
    if not any(asked):
        print("\nTry --helpfull to get a list of all flags.")
    sys.exit(0)


def _quiet_library_info(record):
    """TensorFlow's and KerasTuner's INFO lines (checkpoint sharding, ...) drown the progress lines."""
    path = record.pathname.replace(os.sep, "/")
    return record.levelno >= pylogging.WARNING or "/kdas_tf/" in path or "/site-packages/" not in path


class Stopped(KeyboardInterrupt):
    """SIGTERM (or SIGINT) raised in the main thread, as Ctrl-C is: `finally` blocks run, so a chief stops its
    workers and a write in progress removes its temporary."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def _stop_within(error):
    """The Stopped (or Ctrl-C) a C extension wrapped in another error, or None: a signal landing inside NumPy's
    __array__ under tf.data surfaces as "SystemError: ... returned a result with an exception set", its cause."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return None


def run(main):
    """app.run(main), turning user errors (flags included) into one line on stderr and exit code 2.

    Only a UserError, or a fault of the machine the user can fix (storage.fault_message: a full disk, a
    read-only directory, ...), is a user's mistake; any other exception is a bug and keeps its stack trace.
    SIGINT and SIGTERM stop with one line and exit code 128 + the signal (130, 143), as a shell reports them.
    `--verbosity=1` (or higher) shows the stack trace of a UserError or a fault as well.
    """

    def guarded(argv):
        logging.get_absl_handler().addFilter(_quiet_library_info)
        for stop in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop, _raise_stopped)
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments {argv[1:]}: every option is a --flag")
        try:
            try:
                return main(argv)
            except Exception as error:  # noqa: BLE001  (re-raised as it is unless a stop is inside it)
                raise _stop_within(error) or error
        except KeyboardInterrupt as stopped:
            signum = getattr(stopped, "signum", signal.SIGINT)
            for stop in (signal.SIGINT, signal.SIGTERM):
                signal.signal(stop, signal.SIG_DFL)  # a second signal ends the process at once
            if not os.environ.get(parallel.LAUNCHER_PID):  # a local worker's stop is its chief's to report
                print(f"stopped by {signal.Signals(signum).name}; rerun the same command to resume", file=sys.stderr)
            sys.exit(128 + signum)
        except Exception as error:  # noqa: BLE001  (re-raised unless it is the user's to fix)
            message = str(error) if isinstance(error, UserError) else storage.fault_message(error)
            if message is None:
                raise
            if FLAGS.verbosity >= 1:
                logging.exception("stack trace")
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)

    for name in ("flagfile", "verbosity"):  # absl's own, which --help leaves out
        flags.declare_key_flag(name)
    _answer_help(sys.argv)
    _import_tensorflow(sys.argv)
    app.run(guarded, flags_parser=_parse_flags)


def _parse_flags(argv):
    """absl's parsing, with its errors (unknown flag, bad value, missing flagfile) in our one-line form."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        message = " ".join(str(error).split()).removeprefix("ERROR:: ")
        print(f"error: {message} (--helpshort lists the flags)", file=sys.stderr)
        sys.exit(2)

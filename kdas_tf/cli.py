"""What every `python -m kdas_tf.X` shares: its flags from the config's sections, one-line errors, exit codes.

Only entry points import this module. They define their flags (config.define_flags, so their --help lists
them), let `run(main)` parse them, and turn them into a config.Config once (config.from_flags) for one
library call.
"""

import logging as pylogging
import os
import sys

from absl import app, flags, logging

from kdas_tf.errors import UserError

FLAGS = flags.FLAGS


def _quiet_library_info(record):
    """TensorFlow's and KerasTuner's INFO lines (checkpoint sharding, ...) drown the progress lines."""
    path = record.pathname.replace(os.sep, "/")
    return record.levelno >= pylogging.WARNING or "/kdas_tf/" in path or "/site-packages/" not in path


def run(main):
    """app.run(main), turning user errors (flags included) into one line on stderr and exit code 2.

    Only a UserError is a user's mistake; any other exception is a bug and keeps its stack trace.
    `--verbosity=1` (or higher) shows the stack trace of a UserError as well.
    """

    def guarded(argv):
        logging.get_absl_handler().addFilter(_quiet_library_info)
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments {argv[1:]}: every option is a --flag")
        try:
            return main(argv)
        except UserError as error:
            if FLAGS.verbosity >= 1:
                logging.exception("stack trace")
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    app.run(guarded, flags_parser=_parse_flags)


def _parse_flags(argv):
    """absl's parsing, with its errors (unknown flag, bad value, missing flagfile) in our one-line form."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        message = " ".join(str(error).split()).removeprefix("ERROR:: ")
        print(f"error: {message} (--helpshort lists the flags)", file=sys.stderr)
        sys.exit(2)

"""python -m kdas_tf.report --workdir=DIR [--compare=DIR2,...]: a finished run's tables and figures (kdas_tf.reporting.writer)."""

from absl import flags, logging

from kdas_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("workdir", None, "The run's work directory (holding results.json).")
    flags.DEFINE_string("output", None, "Where to write the report. Default: WORKDIR/report.")
    flags.DEFINE_list("compare", [], "Other runs' work directories whose searches to show beside this one "
                      "(e.g. the same search with --controller=random).")


def main(_):
    from kdas_tf.reporting import writer  # here: --help answers before TensorFlow (kdas_tf.cli)

    written = writer.write_report(FLAGS.workdir, FLAGS.output, FLAGS.compare)
    logging.info("report: %d files in %s (report.md shows them all)", len(written), written[-1].rsplit("/", 1)[0])


if __name__ == "__main__":
    define_flags()
    cli.run(main)

"""python -m kdas_tf.export --workdir=runs/digits [--model=final/kdas_kd] [--output=DIR] [--formats=...]: a
SavedModel for serving, and LiteRT files for devices (--formats=saved_model,tflite,tflite_int8).

Exports the run's served model, or any final model, trial or teacher member (a .keras file, or a directory
with model.keras or checkpoints/); kdas_tf.deploy.serving does the work.
"""

from absl import flags

from kdas_tf import cli, config

FLAGS = flags.FLAGS


def define_flags():
    config.define_flags("data", "export")
    flags.DEFINE_string("workdir", None, "The run's work directory.")
    flags.DEFINE_string("model", None, "What to export: a .keras file or a directory with model.keras or "
                        "checkpoints/ (absolute or inside --workdir). Default: the run's served final model.")
    flags.DEFINE_string("architecture", None, "Architecture of a checkpoint, when its directory does not record it.")
    flags.DEFINE_string("output", None, "Export directory. Default: WORKDIR/export for the served model, "
                        "WORKDIR/exports/NAME for --model.")


def main(_):
    from kdas_tf.deploy import serving  # here: --help answers before TensorFlow (kdas_tf.cli)

    given = {name: FLAGS[name].value for name in serving.DATA_SETTINGS if FLAGS[name].present}
    export = config.section_from_flags("export")
    serving.export_from_workdir(FLAGS.workdir, data_config=config.section_from_flags("data"), given=given,
                                model=FLAGS.model, architecture=FLAGS.architecture, output=FLAGS.output,
                                formats=export.formats, force=export.force_export)


if __name__ == "__main__":
    define_flags()
    cli.run(main)

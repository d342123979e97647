"""python -m kdas_tf.teachers: train (or reuse) the teacher ensemble and write its report (kdas_tf.distill.ensemble)."""

from absl import flags

from kdas_tf import cli, config

FLAGS = flags.FLAGS
SECTIONS = ("run", "data", "recipe", "model", "teachers")  # the config sections whose flags it reads


def define_flags():
    config.define_flags(*SECTIONS)
    flags.DEFINE_bool("dry_run", False, "Check the flags, print what would run, and stop: nothing is read or written.")


def main(_):
    from kdas_tf import assembly, pipeline  # here: --help answers before TensorFlow (kdas_tf.cli)

    run_config = config.from_flags()
    run_config.refuse_multi_worker("teachers")
    if FLAGS.dry_run:
        teachers = run_config.teachers
        if teachers.models:
            print(f"dry run: would check and report {', '.join(assembly.teacher_model_files(run_config))} on "
                  f"{run_config.data.dataset}, into {run_config.teacher_workdir}/teachers")
            return
        print(f"dry run: would train {teachers.num_teachers} x {teachers.network} on {run_config.data.dataset} "
              f"for {run_config.teacher_epochs} epochs each, into {run_config.teacher_workdir}/teachers")
        return
    pipeline.train_teachers(run_config)


if __name__ == "__main__":
    define_flags()
    cli.run(main)

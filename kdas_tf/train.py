"""python -m kdas_tf.train: train one fixed network or architecture with --loss=ce|kd|od.

Distilling losses read the teacher ensemble from --teacher_workdir (default: --workdir), as written by
python -m kdas_tf.teachers or kdas_tf.search (whose flagfiles work here too).
"""

from absl import flags

from kdas_tf import cli, config

FLAGS = flags.FLAGS
SECTIONS = ("run", "data", "recipe", "model", "teachers", "train")  # the config sections whose flags it reads


def define_flags():
    config.define_flags(*SECTIONS)
    flags.DEFINE_bool("dry_run", False, "Check the flags, print what would run, and stop: nothing is read or written.")


def main(_):
    from kdas_tf import pipeline  # here: --help answers before TensorFlow (kdas_tf.cli)

    run_config = config.from_flags()
    if FLAGS.dry_run:
        job = run_config.train
        teachers = (f", distilled from {run_config.teachers.num_teachers} teachers in "
                    f"{run_config.teacher_workdir}/teachers" if job.loss != "ce" else "")
        print(f"dry run: would train {job.parsed()} on {run_config.data.dataset} with {job.loss} for "
              f"{run_config.recipe.epochs} epochs{teachers}, into {run_config.workdir}")
        return
    pipeline.train_one(run_config)


if __name__ == "__main__":
    define_flags()
    cli.run(main)

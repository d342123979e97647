"""python -m kdas_tf.search --flagfile=flags/digits.cfg: the whole KDAS pipeline in one work directory.

teachers -> architecture search -> final rows -> export -> results, resumable (kdas_tf.pipeline). With
--parallel_trials=K the search trains K candidates at once in worker processes (kdas_tf.parallel); the
same command with KerasTuner's variables set runs the workers of another host's chief.
"""

import os

from absl import flags

from kdas_tf import cli, config
from kdas_tf.parallel import role

FLAGS = flags.FLAGS
SECTIONS = config.SEARCH_SECTIONS  # the config sections whose flags it reads


def define_flags():
    config.define_flags(*SECTIONS)
    flags.DEFINE_bool("dry_run", False, "Check the flags, print what would run, and stop: nothing is read or written.")
    flags.DEFINE_bool("estimate", True, "With --dry_run, after the plan: time a few training steps of the teacher "
                      "network, the backbone and each round's median-sized candidate here (no candidate started "
                      "after a minute of measuring; a lower bound then), and print the run's estimated duration "
                      "(--noestimate skips it).")
    flags.DEFINE_bool("worker", False, "Run one worker of a parallel search, at the chief named by KERASTUNER_* "
                      "variables (the launchers set this).")


def main(_):
    from kdas_tf import dry_run, pipeline  # here: --help answers before TensorFlow (kdas_tf.cli)
    from kdas_tf.parallel import launcher, worker

    run_config = config.from_flags()
    launcher.set_cpu_threads(run_config.parallel.cpu_threads)
    part = role(os.environ, worker=FLAGS.worker, parallel_trials=run_config.parallel.parallel_trials)
    if part == "worker_host":
        return launcher.run_worker_host(run_config)
    if part == "worker":
        return worker.run(run_config)
    if FLAGS.dry_run:
        run_config.refuse_multi_worker("search")
        print(dry_run.describe_plan(run_config), flush=True)
        if FLAGS.estimate:
            print("\n".join(dry_run.estimate_lines(run_config)))
        return
    pipeline.run(run_config, role=part)


if __name__ == "__main__":
    define_flags()
    cli.run(main)

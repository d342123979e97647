"""python -m kdas_tf.sweep --flagfile=F --budgets=0.6,0.9,1.2: the paper's Figure 3 (kdas_tf.budget_curve).

A search per budget sharing one teacher ensemble, each found model and man-made networks of similar size
trained with the same --final_loss; writes WORKDIR/sweep.{json,md,png}. Resumable: rerun the same command.
"""

from absl import flags

from kdas_tf import cli, config

FLAGS = flags.FLAGS


def define_flags():
    config.define_flags(*config.SEARCH_SECTIONS)
    flags.DEFINE_list("budgets", None, "Memory budgets M to search at (millions, or multiples of the backbone "
                      "like 2x), at least two.")


def main(_):
    from kdas_tf import budget_curve  # here: --help answers before TensorFlow (kdas_tf.cli)

    budget_curve.run(config.from_flags(), budget_curve.parse_budgets(FLAGS.budgets or []))


if __name__ == "__main__":
    define_flags()
    cli.run(main)

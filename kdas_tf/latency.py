"""python -m kdas_tf.latency --flagfile=FILE --budget_metric=latency [--export_table=FILE] [--check=N]: the latency
table of --budget_metric=latency, and how well it predicts whole networks.

    --export_table=FILE  measure the table here (run it on the target device) and write it to FILE, for a search
                         elsewhere to take as --latency_table=FILE
    (without it)         the run's table: --latency_table, the one its --workdir keeps, or measured here and kept
    --check=N            measure N networks sampled across the search's range whole, against the table's
                         prediction: Spearman's rho, median and worst relative error (--json=FILE keeps every number)

The search's flagfile gives the backbone, the data's image shape, --latency_format and --latency_threads;
kdas_tf.deploy.latency_table and latency_check do the work.
"""

from absl import flags

from kdas_tf import cli, config
from kdas_tf.errors import UserError

FLAGS = flags.FLAGS


def define_flags():
    config.define_flags(*config.SEARCH_SECTIONS)  # a search's flagfile parses here
    flags.DEFINE_string("export_table", None, "Measure the table on this machine and write it to this file (JSON).")
    flags.DEFINE_integer("check", 0, "Networks to measure whole against the table's prediction (0: none; 20 or "
                         "more to judge the table).")
    flags.DEFINE_integer("check_rounds", None, "Rounds of add-ons the checked networks have, 1 to this many "
                         "(default: --rounds).")
    flags.DEFINE_integer("check_seed", 0, "Seed of the checked networks' draw.")
    flags.DEFINE_string("json", None, "Write the check's networks and numbers to this file (JSON).")


def main(_):
    from kdas_tf import pipeline  # here: --help answers before TensorFlow (kdas_tf.cli)
    from kdas_tf.deploy import latency_check, latency_table
    from kdas_tf.runtime import storage

    if FLAGS.check < 0:
        raise UserError(f"--check={FLAGS.check}: give the number of networks to measure, 0 or more")
    # The table prices the search's networks, whatever its flagfile's budget bounds.
    FLAGS.budget_metric, FLAGS.budget = "latency", "2x"
    run_config = config.from_flags()
    table, check = pipeline.measure_latency(run_config, export_table=FLAGS.export_table, check=FLAGS.check,
                                            check_rounds=FLAGS.check_rounds, seed=FLAGS.check_seed)
    print(latency_table.markdown(table), flush=True)
    if check:
        print(latency_check.markdown(check), flush=True)
        if FLAGS.json:
            storage.write_json(FLAGS.json, check)


if __name__ == "__main__":
    define_flags()
    cli.run(main)

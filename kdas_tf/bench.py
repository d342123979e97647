"""python -m kdas_tf.bench: where the time of a KDAS run goes, as ratios against references timed beside them.

Every row is a median ratio over turns (in each turn the measurement and its reference are timed back to
back) with its 95% interval. A row with a target is met when the whole interval lies on the target's side,
missed when it lies wholly on the other side, undecided when it straddles the target (rerun with more
--turns, or on a quieter machine). Exit status: 0 when no row is missed (met and undecided rows alike), 1
when at least one row is missed, 2 for a bad flag. --quick runs tiny settings (a minute or two), for CI.
kdas_tf.benchmarking.suite measures; docs/performance.md reads the table.
"""

from absl import flags

from kdas_tf import cli, config
from kdas_tf.benchmarking import bench_config

FLAGS = flags.FLAGS


def main(_):
    from kdas_tf.benchmarking import suite, table  # here: --help answers before TensorFlow (kdas_tf.cli)

    bench = config.section_from_flags(bench_config.BenchConfig)
    if bench.quick:
        bench = bench_config.quick(bench, given={name for name in bench_config.QUICK if FLAGS[name].present})
    return table.exit_status(suite.run(bench)["rows"])


if __name__ == "__main__":
    config.define_flags(bench_config.BenchConfig)
    cli.run(main)


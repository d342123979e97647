"""python -m kdas_tf.bench: where the time of a KDAS run goes, as ratios against same-run references.

kdas_tf.benchmarking.suite measures; docs/performance.md reads the table.
"""

from kdas_tf import cli, config
from kdas_tf.benchmarking.bench_config import BenchConfig


def main(_):
    from kdas_tf.benchmarking import suite  # here: --help answers before TensorFlow (kdas_tf.cli)

    suite.run(config.section_from_flags(BenchConfig))


if __name__ == "__main__":
    config.define_flags(BenchConfig)
    cli.run(main)

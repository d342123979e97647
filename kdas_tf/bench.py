"""python -m kdas_tf.bench: where the time of a KDAS run goes, as ratios against same-run references.

kdas_tf.benchmarking.suite measures; docs/performance.md reads the table.
"""

from kdas_tf import cli  # noqa: I001  (first: it quiets TensorFlow's start-up before anything imports it)
from kdas_tf.benchmarking import suite
from kdas_tf import config


def main(_):
    suite.run(config.section_from_flags(suite.BenchConfig))


if __name__ == "__main__":
    config.define_flags(suite.BenchConfig)
    cli.run(main)

"""python -m kdas_tf.bench: where the time of a KDAS run goes, as ratios against same-run references.

kdas_tf.benchmarks measures; docs/performance.md reads the table.
"""

from kdas_tf import cli  # noqa: I001  (first: it quiets TensorFlow's start-up before anything imports it)
from kdas_tf import benchmarks, config


def main(_):
    benchmarks.run(config.section_from_flags(benchmarks.BenchConfig))


if __name__ == "__main__":
    config.define_flags(benchmarks.BenchConfig)
    cli.run(main)

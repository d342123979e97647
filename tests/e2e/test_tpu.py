"""tpu/: what can be checked without a TPU. The launch script parses, the TPU flagfile is a valid search
configuration with the paper's recipe, and --strategy=tpu resolves the TPU through TPUClusterResolver."""

import json
import os
import subprocess
import sys

import tensorflow as tf

from kdas_tf.runtime import distribute
from conftest import ROOT


# The search's own flag definitions, parsing each flagfile in turn; unknown or malformed flags raise.
PARSE_FLAGFILES = """
import json, sys
from absl import flags
from kdas_tf import search
absl_flags = set(flags.FLAGS)
search.define_flags()
parsed = []
for flagfile in sys.argv[1:]:
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["search", "--flagfile=" + flagfile])
    parsed.append({name: flags.FLAGS[name].value for name in set(flags.FLAGS) - absl_flags})
print(json.dumps(parsed))
"""


def parse(*flagfiles):
    run = subprocess.run([sys.executable, "-c", PARSE_FLAGFILES, *flagfiles], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_launch_script_parses_and_refuses_an_unknown_command():
    script = os.path.join(ROOT, "tpu", "launch.sh")
    assert subprocess.run(["bash", "-n", script], capture_output=True).returncode == 0
    assert os.access(script, os.X_OK)
    usage = subprocess.run(["bash", script, "nonsense"], capture_output=True, text=True, env={**os.environ, "PROJECT": "p"})
    assert usage.returncode == 2 and "usage:" in usage.stderr and "create|run|logs|copy|delete" in usage.stderr


def test_the_tpu_flagfile_is_the_cifar100_recipe_on_tpu():
    tpu, gpu = parse("tpu/cifar100_tpu.cfg", "flags/cifar100.cfg")
    assert tpu["strategy"] == "tpu" and tpu["tpu"] == "local"
    assert tpu["batch_size"] % 64 == 0  # 8 x devices on a v3-8 (8) and a v4-8 (4)
    different = {k for k in gpu if gpu[k] != tpu[k]}
    assert different == {"strategy", "tpu", "workdir"}, different


def test_the_tpu_strategy_is_built_from_a_resolver_of_the_named_tpu(monkeypatch):
    """A real TPUClusterResolver (a grpc address needs no TPU nor network); only what needs a TPU is stood in for."""
    received = {}
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", lambda r: received.setdefault("connect", r))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", lambda r: received.setdefault("initialize", r))

    class TPUStrategy:
        def __init__(self, resolver):
            self.resolver = resolver

    monkeypatch.setattr(tf.distribute, "TPUStrategy", TPUStrategy)
    strategy = distribute.make_strategy("tpu", tpu="grpc://10.1.2.3:8470")
    assert isinstance(strategy, TPUStrategy)
    resolver = strategy.resolver
    assert isinstance(resolver, tf.distribute.cluster_resolver.TPUClusterResolver)
    assert resolver.master() == "grpc://10.1.2.3:8470"
    assert resolver.cluster_spec().as_dict() == {"worker": ["10.1.2.3:8470"]}
    # The system the strategy runs on is the one connected to and initialised: the same resolver.
    assert received["connect"] is resolver and received["initialize"] is resolver

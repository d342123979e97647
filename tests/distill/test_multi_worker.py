"""One training over two hosts (MultiWorkerMirroredStrategy), as two real processes over loopback.

Each worker is a process of its own with TF_CONFIG naming both; they train the same network on digits
with the project's Trainer and write their final weights to a file of their own. Both must end with the
same weights, equal to one process training on the whole global batch, and only the chief may write the
training's checkpoints. The network has no BatchNorm: per-replica batch statistics would make one
process and two differ by design.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

WORKER = """
import json, os, sys
import keras, numpy as np
from kdas_tf import data
from kdas_tf.runtime import distribute
from kdas_tf.distill.trainer import TrainConfig, Trainer

strategy_name, workdir, out = sys.argv[1:4]
strategy = distribute.make_strategy(strategy_name)
keras.utils.set_random_seed(0)
with strategy.scope():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
config = TrainConfig(epochs=2, batch_size=64, learning_rate=0.05, weight_decay=5e-4)
Trainer(model, data.load("digits"), config, strategy=strategy, workdir=workdir).fit()
np.savez(out, *[np.asarray(w) for w in model.weights])
print(json.dumps({"writes_files": distribute.writes_files(strategy)}))
"""


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def weights(path):
    with np.load(path) as arrays:
        return [arrays[name] for name in sorted(arrays.files, key=lambda n: int(n.split("_")[1]))]


def test_two_workers_over_loopback_train_as_one_process_and_only_the_chief_writes(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    environment = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    environment["TF_CPP_MIN_LOG_LEVEL"] = "2"
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        command = [sys.executable, "-c", WORKER, "multi_worker", str(tmp_path / f"workdir_{index}"),
                   str(tmp_path / f"weights_{index}.npz")]
        workers.append(subprocess.Popen(command, cwd=ROOT, env={**environment, "TF_CONFIG": tf_config},
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    single = subprocess.run([sys.executable, "-c", WORKER, "default", str(tmp_path / "single"),
                             str(tmp_path / "weights_single.npz")], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=600)
    finished = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, stderr) in zip(workers, finished):
        assert worker.returncode == 0, stderr[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    assert [json.loads(out.strip().splitlines()[-1])["writes_files"] for out, _ in finished] == [True, False]

    chief, other, alone = (weights(tmp_path / f"weights_{name}.npz") for name in ("0", "1", "single"))
    for a, b in zip(chief, other):
        np.testing.assert_array_equal(a, b)  # the all-reduce gives every worker the same update
    for a, b in zip(chief, alone):
        # Two replicas sum their half-batch gradients in another order than one process: float32 rounding.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert os.listdir(tmp_path / "workdir_0" / "checkpoints")  # the chief's checkpoints
    assert not os.path.exists(tmp_path / "workdir_1")  # the other worker wrote nothing of the training's

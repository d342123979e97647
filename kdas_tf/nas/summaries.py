"""What the search writes to TensorBoard beyond the training curves: trials as HParams, the best architecture.

One log tree per work directory, WORKDIR/tb/: teachers/member_i, trials/trial_N,
controller, final/<row> and search, so `tensorboard --logdir WORKDIR` shows the
whole run. Each trial is an HParams session (architecture, op per slot,
parameters, round) whose metric is its validation top-1 (the controller's reward, unless --cost_exponent
weighs it by the network's cost: then the best trial's reward is written beside it), so the dashboard
compares the trials side by side.
"""

import time

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from kdas_tf import models
from kdas_tf.models.costs import format_cost
from kdas_tf.nas.rounds import slot_names

REWARD = "reward"  # scalar tag in each trial's run: its validation top-1 (the reward when --cost_exponent is 0)


def write_search_space(logdir, *, num_stages, ops_per_addon):
    """The HParams experiment: the searched hyperparameters and the reward metric."""
    hparams = [hp.HParam("architecture", display_name="architecture"),
               hp.HParam("parameters", display_name="trainable parameters"),
               hp.HParam("round", display_name="search round")]
    hparams += [hp.HParam(name, hp.Discrete(list(models.ADDON_OPS))) for name in slot_names(num_stages, ops_per_addon)]
    with tf.summary.create_file_writer(logdir).as_default():
        hp.hparams_config(hparams=hparams, metrics=[hp.Metric(REWARD, display_name="val top-1")])


def write_trial(logdir, *, trial_id, values, reward):
    """One trial's HParams session, reward and architecture (as text) in its own run `logdir`."""
    session = {k: v for k, v in values.items() if isinstance(v, (str, int, float, bool))}
    with tf.summary.create_file_writer(logdir).as_default():
        hp.hparams(session, trial_id=f"trial_{trial_id}", start_time_secs=int(time.time()))
        tf.summary.scalar(REWARD, reward, step=0)
        tf.summary.text("architecture", str(values.get("architecture")), step=0)


def write_search_result(logdir, *, best_architecture, best_reward, parameters, budget, trials, metric="parameters",
                        cost=None, soft_reward=None):
    """When the search ends: the best architecture as text, its validation top-1 (best_reward) and size (cost: what
    the budget counts of it, in `metric`) against the budget; soft_reward: its reward under --cost_exponent."""
    spent = (f"| parameters | {parameters / 1e6:.3f}M of budget {budget / 1e6:.3f}M |" if metric == "parameters" else
             f"| {metric} | {format_cost(metric, cost)} of budget {format_cost(metric, budget)} "
             f"({parameters / 1e6:.3f}M parameters) |")
    table = "\n".join([
        "| | |", "|---|---|",
        f"| best architecture | `{best_architecture}` |",
        f"| val top-1{'' if soft_reward is not None else ' (reward)'} | {100 * best_reward:.2f}% |",
        *([f"| reward, val top-1 x (cost / M)^w | {100 * soft_reward:.2f}% |"] if soft_reward is not None else []),
        spent,
        f"| trials | {trials} |",
    ])
    with tf.summary.create_file_writer(logdir).as_default():
        tf.summary.text("best_architecture", table, step=0)
        tf.summary.scalar("best_reward", best_reward, step=0)
        if soft_reward is not None:
            tf.summary.scalar("best_soft_reward", soft_reward, step=0)
        tf.summary.scalar("best_parameters", parameters, step=0)

"""Losses against an independent float64 NumPy reference (PAPER.md section 2).

Tolerance: float32 TensorFlow vs float64 NumPy, relative 1e-5 / absolute 1e-5
on losses of order 1-10 (T^2 scaling makes KD terms reach ~50).
"""

import numpy as np
import pytest
import tensorflow as tf

from kdas_tf.distill import losses

RTOL = ATOL = 1e-5


def np_log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def np_ce(labels, logits):
    return -np_log_softmax(logits)[np.arange(len(labels)), labels]


def np_kd_to(labels, student, target, temperature, alpha):
    log_p_t = np_log_softmax(target / temperature)
    log_p_s = np_log_softmax(student / temperature)
    kl = (np.exp(log_p_t) * (log_p_t - log_p_s)).sum(-1)
    return (1 - alpha) * np_ce(labels, student) + alpha * temperature**2 * kl


def np_kd(labels, student, teachers, temperature, alpha):
    return np_kd_to(labels, student, teachers.mean(0), temperature, alpha)


def np_od(labels, student, teachers, temperature, alpha):
    """Literal per-example transcription of L_OD, written independently of the TF code."""
    out = np.empty(len(labels))
    for b, y in enumerate(labels):
        correct = [j for j in range(teachers.shape[0]) if teachers[j, b].argmax() == y]
        if correct:
            target = teachers[correct, b].mean(0)
            out[b] = np_kd_to(labels[b : b + 1], student[b : b + 1], target[None], temperature, alpha)[0]
        else:
            out[b] = np_ce(labels[b : b + 1], student[b : b + 1])[0]
    return out


def random_case(seed, n=5, b=16, c=10, scale=3.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=b)
    student = rng.normal(scale=scale, size=(b, c))
    teachers = rng.normal(scale=scale, size=(n, b, c))
    return labels, student, teachers


def tf_call(fn, labels, student, teachers, **kw):
    out = fn(
        tf.constant(labels, tf.int32),
        tf.constant(student, tf.float32),
        tf.constant(teachers, tf.float32),
        **kw,
    )
    return out.numpy()


@pytest.mark.parametrize("seed", range(6))
def test_cross_entropy_matches_numpy(seed):
    labels, student, _ = random_case(seed, c=int(3 + seed * 7))
    got = losses.cross_entropy(tf.constant(labels), tf.constant(student, tf.float32)).numpy()
    np.testing.assert_allclose(got, np_ce(labels, student), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "seed,temperature,alpha,n,c",
    [(0, 4.0, 0.9, 5, 10), (1, 1.0, 0.5, 1, 7), (2, 8.0, 1.0, 3, 100), (3, 2.5, 0.0, 2, 4)],
)
def test_kd_loss_matches_numpy(seed, temperature, alpha, n, c):
    labels, student, teachers = random_case(seed, n=n, c=c)
    got = tf_call(losses.kd_loss, labels, student, teachers, temperature=temperature, alpha=alpha)
    want = np_kd(labels, student, teachers, temperature, alpha)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "seed,temperature,alpha,n,c",
    [(0, 4.0, 0.9, 5, 3), (1, 1.0, 0.5, 2, 5), (2, 8.0, 1.0, 5, 10), (3, 3.0, 0.3, 4, 2)],
)
def test_oracle_kd_loss_matches_numpy(seed, temperature, alpha, n, c):
    # Few classes so that every count of correct members (0..n) occurs.
    labels, student, teachers = random_case(seed, n=n, b=64, c=c)
    counts = (teachers.argmax(-1) == labels[None]).sum(0)
    assert (counts == 0).any() and (counts > 0).any()
    got = tf_call(losses.oracle_kd_loss, labels, student, teachers, temperature=temperature, alpha=alpha)
    want = np_od(labels, student, teachers, temperature, alpha)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_oracle_is_kd_when_every_member_is_right_and_ce_when_none_is():
    labels, student, teachers = random_case(7, n=3, b=8, c=6)
    right = teachers.copy()
    right[:, np.arange(8), labels] += 100.0  # every member right on every example
    kw = dict(temperature=4.0, alpha=0.9)
    np.testing.assert_allclose(
        tf_call(losses.oracle_kd_loss, labels, student, right, **kw),
        tf_call(losses.kd_loss, labels, student, right, **kw),
        rtol=RTOL, atol=ATOL,
    )
    wrong = teachers.copy()
    wrong[:, np.arange(8), (labels + 1) % 6] += 100.0  # every member wrong
    np.testing.assert_allclose(
        tf_call(losses.oracle_kd_loss, labels, student, wrong, **kw),
        np_ce(labels, student),
        rtol=RTOL, atol=ATOL,
    )


def test_oracle_teacher_logits_and_mask():
    labels, _, teachers = random_case(11, n=4, b=32, c=3)
    logits, mask = losses.oracle_teacher_logits(tf.constant(labels), tf.constant(teachers, tf.float32))
    correct = teachers.argmax(-1) == labels[None]
    np.testing.assert_array_equal(mask.numpy(), correct.any(0))
    for b in np.flatnonzero(correct.any(0)):
        np.testing.assert_allclose(logits.numpy()[b], teachers[correct[:, b], b].mean(0), rtol=1e-6, atol=1e-6)
    assert np.all(logits.numpy()[~correct.any(0)] == 0.0)


def test_large_logits_stay_finite_and_gradients_have_no_nan():
    labels, student, teachers = random_case(5, n=5, b=16, c=10, scale=1e4)
    teachers[:, :4, :] = 0.0
    teachers[:, :4, 0] = 1e4
    labels[:4] = 1  # no member right on the first four examples
    s = tf.Variable(student, dtype=tf.float32)
    for fn in (losses.kd_loss, losses.oracle_kd_loss):
        with tf.GradientTape() as tape:
            loss = fn(tf.constant(labels), s, tf.constant(teachers, tf.float32), temperature=4.0, alpha=0.9)
            total = tf.reduce_sum(loss)
        grad = tape.gradient(total, s)
        assert np.isfinite(loss.numpy()).all(), fn.__name__
        assert np.isfinite(grad.numpy()).all(), fn.__name__
    np.testing.assert_allclose(
        tf_call(losses.oracle_kd_loss, labels, student, teachers, temperature=4.0, alpha=0.9)[:4],
        np_ce(labels[:4], student[:4]),
        rtol=1e-4,
    )


def test_no_gradient_flows_into_teachers():
    labels, student, teachers = random_case(3)
    t = tf.Variable(teachers, dtype=tf.float32)
    s = tf.Variable(student, dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = losses.kd_loss(tf.constant(labels), s, t, temperature=4.0, alpha=0.9)
        total = tf.reduce_sum(loss)
    grad_teachers, grad_student = tape.gradient(total, [t, s])
    assert grad_teachers is None
    assert grad_student is not None and np.abs(grad_student.numpy()).sum() > 0


def test_unknown_loss_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"--search_loss='kl'.*ce, kd, od"):
        losses.check_loss_name("kl", flag="--search_loss")

"""The three training losses of KDAS (PAPER.md section 2), per example.

Every function returns a [B] vector; the training loop reduces it over the
global batch, so the same code is right under any tf.distribute strategy.
All of them work from log-softmax, so large logits stay finite in float32.

The distilling losses are written as one mechanism: a *target* (logits [B, C]
to imitate) plus a *has_target* mask [B]. KD's target is the ensemble mean for
every example; oracle KD's target is the mean of the correct members, and where
no member is correct the mask is off and the label alone teaches (plain CE).
That split also lets the teacher-output cache store just (target, mask).
"""

import tensorflow as tf

from kdas_tf.distill.recipe import DISTILLING, check_loss_name  # noqa: F401  (the names, beside their math)


def cross_entropy(labels, student_logits):
    """L_CE per example: labels [B] int, student_logits [B, C] -> [B]."""
    student_logits = tf.cast(student_logits, tf.float32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=student_logits
    )


def _soft_kl(target_logits, student_logits, temperature):
    """KL(softmax(t/T) || softmax(s/T)) per example, from log-softmax."""
    log_p_target = tf.nn.log_softmax(target_logits / temperature, axis=-1)
    log_p_student = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    return tf.reduce_sum(tf.exp(log_p_target) * (log_p_target - log_p_student), axis=-1)


def distill_to_target(labels, student_logits, target_logits, has_target, *, temperature, alpha):
    """Hinton's KD towards target_logits [B, C] where has_target [B], plain CE elsewhere -> [B]."""
    student_logits = tf.cast(student_logits, tf.float32)
    target_logits = tf.stop_gradient(tf.cast(target_logits, tf.float32))
    ce = cross_entropy(labels, student_logits)
    kd = (1.0 - alpha) * ce + alpha * temperature**2 * _soft_kl(
        target_logits, student_logits, temperature
    )
    return tf.where(tf.cast(has_target, tf.bool), kd, ce)


def ensemble_teacher_logits(teacher_logits):
    """The ensemble's logits: the members' mean, [N, B, C] -> [B, C]."""
    return tf.reduce_mean(tf.cast(teacher_logits, tf.float32), axis=0)


def oracle_teacher_logits(labels, teacher_logits):
    """Mean logits of the members that classify each example correctly.

    teacher_logits [N, B, C], labels [B] -> (oracle_logits [B, C], has_correct_member [B] bool).
    Where no member is correct the logits are zeros (never NaN: the loss's
    tf.where would otherwise leak NaN into the gradients) and the mask is False.
    """
    teacher_logits = tf.cast(teacher_logits, tf.float32)
    predictions = tf.argmax(teacher_logits, axis=-1, output_type=tf.int32)  # [N, B]
    correct = tf.cast(tf.equal(predictions, tf.cast(labels, tf.int32)[tf.newaxis, :]), tf.float32)
    num_correct = tf.reduce_sum(correct, axis=0)  # [B]
    summed = tf.reduce_sum(correct[:, :, tf.newaxis] * teacher_logits, axis=0)
    oracle_logits = summed / tf.maximum(num_correct, 1.0)[:, tf.newaxis]
    return oracle_logits, num_correct > 0


def distillation_targets(loss, labels, teacher_logits):
    """What the student imitates under `loss`: (target_logits [B, C], has_target [B])."""
    if loss == "kd":
        mean_logits = ensemble_teacher_logits(teacher_logits)
        return mean_logits, tf.ones(tf.shape(mean_logits)[:1], tf.bool)
    if loss == "od":
        return oracle_teacher_logits(labels, teacher_logits)
    raise ValueError(f"loss {loss!r} has no teacher targets: expected 'kd' or 'od'")


def kd_loss(labels, student_logits, teacher_logits, *, temperature, alpha):
    """L_KD: Hinton's distillation from the whole ensemble; teacher_logits [N, B, C] -> [B]."""
    target, has_target = distillation_targets("kd", labels, teacher_logits)
    return distill_to_target(
        labels, student_logits, target, has_target, temperature=temperature, alpha=alpha
    )


def oracle_kd_loss(labels, student_logits, teacher_logits, *, temperature, alpha):
    """L_OD: distillation from the correct members only, CE where none is correct -> [B]."""
    target, has_target = distillation_targets("od", labels, teacher_logits)
    return distill_to_target(
        labels, student_logits, target, has_target, temperature=temperature, alpha=alpha
    )


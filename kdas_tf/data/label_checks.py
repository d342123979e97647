"""A dataset's labels judged before a run: at least two classes, the training images per class said (the dry run
and the log) with a warning for a class of only a handful, and a validation split that can reward a search.

The rules, for K classes:
- one class is refused: there is nothing to classify (often a labels array of one value).
- a class with only a handful of training images (under RARE_COUNT, or under a tenth of the median class's) is
  warned about, by name: a label written by mistake (labels 0..10 meant as 0..9 give an eleventh class of the
  stray ones) looks like this.
- a validation split under MIN_VAL_PER_CLASS images per class (10 K) is refused by the dry run and when a job
  starts: the search's reward is validation top-1, which moves in steps of 1/n on n images, so a split of a few
  images ranks the candidates by chance (--val_fraction=0.001 of digits holds out one image: every reward is 0
  or 100%).
"""

import math

import numpy as np

from kdas_tf.errors import UserError

MIN_VAL_PER_CLASS = 10
RARE_COUNT = 5
RARE_SHARE = 0.1  # of the median class's training images
LISTED_CLASSES = 20  # more classes are summed up as min / median / max


def check_classes(source, num_classes):
    """Raises unless there are at least two classes."""
    if num_classes < 2:
        raise UserError(f"{source} has {num_classes} class (every training label is 0): a classifier needs at "
                        "least two, labelled 0..K-1")


def histogram(counts):
    """The training images per class, '0: 150, 1: 148, ...' (min / median / max beyond LISTED_CLASSES classes)."""
    counts = np.asarray(counts)
    if counts.min() == counts.max():
        return f"{counts[0]} each"
    if len(counts) <= LISTED_CLASSES:
        return ", ".join(f"{label}: {count}" for label, count in enumerate(counts))
    return (f"min {counts.min()} (class {counts.argmin()}), median {np.median(counts):g}, max {counts.max()} "
            f"(class {counts.argmax()})")


def rare_classes(counts):
    """The classes with fewer training images than RARE_COUNT or RARE_SHARE of the median class's."""
    counts = np.asarray(counts)
    return [int(label) for label in np.flatnonzero(counts < max(RARE_COUNT, RARE_SHARE * np.median(counts)))]


def rare_warning(source, counts):
    """One line naming the rare classes (rare_classes) and what they may be, or None."""
    rare = rare_classes(counts)
    if not rare:
        return None
    listed = ", ".join(f"{label} ({counts[label]})" for label in rare[:5]) + (" ..." if len(rare) > 5 else "")
    return (f"{source}: {len(rare)} of {len(counts)} classes have only a handful of training images: class "
            f"{listed}, where the median class has {np.median(counts):g}; are those labels meant (class ids "
            f"0..{len(counts) - 1})?")


def reward_line(num_val, num_classes):
    """The validation split as the search's reward: its size and the reward's step."""
    return (f"validation split {num_val} images ({num_val / num_classes:.3g} per class): the reward moves in steps "
            f"of {100 / num_val:.3g} points")


def check_validation_split(num_val, num_classes, *, val_fraction=None, num_examples=None):
    """Raises where the validation split holds under MIN_VAL_PER_CLASS images per class (the module docstring).

    val_fraction, num_examples: the flag and the official training set's size, to name the share that suffices.
    """
    needed = MIN_VAL_PER_CLASS * num_classes
    if num_val >= needed:
        return
    flag = "--val_fraction" if val_fraction else "val_fraction"
    percent = math.ceil(100 * needed / num_examples) if num_examples else None  # round(N share) >= needed
    if percent is None:
        fix = f"a larger {flag}"
    elif percent < 100:
        fix = f"{flag}={percent / 100:g} or more"
    else:
        fix = f"more training images than {num_examples}"
    images = f"image{'s' * (num_val != 1)}"
    what = (f"--val_fraction={val_fraction:g} holds out {num_val} validation {images}" if val_fraction else
            f"the validation split holds {num_val} {images}")
    raise UserError(f"{what} for {num_classes} classes: the search's reward (validation top-1) would move in steps "
                    f"of {100 / num_val:.3g} points; hold out at least {MIN_VAL_PER_CLASS} per class ({needed} "
                    f"images: {fix})")

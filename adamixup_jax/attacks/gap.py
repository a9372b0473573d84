"""Gap attack (Yeom et al. 2018), label-only: an example the model labels correctly
is guessed a member. Its advantage is the train-test accuracy gap."""

import numpy as np

from adamixup_jax.attacks.label_only import (
    PredictLabels,
    checked_images_and_labels,
    predicted,
)


def check_options() -> None:
    """The gap attack has no options."""


def scores(predict_labels: PredictLabels, images, labels, *, key=None) -> np.ndarray:
    """1.0 where `predict_labels(images)` equals `labels`, else 0.0; [examples]
    float64. `key` is unused (the attack is deterministic)."""
    del key
    images, labels = checked_images_and_labels(images, labels)
    return (predicted(predict_labels, images) == labels).astype(np.float64)

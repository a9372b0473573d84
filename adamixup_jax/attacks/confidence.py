"""True-label confidence attack (as used by Song & Mittal 2021): members get a high
softmax probability on their own label."""

import numpy as np

from adamixup_jax.attacks import loss


def scores(logits, labels) -> np.ndarray:
    """Softmax probability of the true label, [examples] float64."""
    return np.exp(loss.scores(logits, labels))

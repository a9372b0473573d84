"""True-label confidence attack (as used by Song & Mittal 2021): members get a high
softmax probability on their own label."""

import numpy as np

from adamixup_jax.attacks import loss


def scores(logits, labels) -> np.ndarray:
    """Softmax probability of the true label, [examples] float64.

    Limitation: p_y rounds to exactly 1.0 in float64 once the true logit leads by more
    than about 37, so such rows tie; the `loss` attack keeps ranking them.
    """
    return np.exp(loss.scores(logits, labels))

"""Loss-threshold attack (Yeom et al. 2018): members have low loss on their label."""

import numpy as np
import scipy.special

from adamixup_jax.attacks.base import checked_inputs


def scores(logits, labels) -> np.ndarray:
    """Minus the cross-entropy of the true label, [examples] float64.

    Computed as -log(1 + exp(-phi)) with phi = z_y - logsumexp(z_c, c != y), so very
    confident rows keep distinct scores (about -exp(-phi)) instead of all rounding to
    0, as log_softmax does once the true logit leads by more than about 37.
    """
    logits, labels = checked_inputs(logits, labels)
    rows = np.arange(len(labels))
    others = logits.copy()
    others[rows, labels] = -np.inf
    phi = logits[rows, labels] - scipy.special.logsumexp(others, axis=1)
    return -np.logaddexp(0.0, -phi)

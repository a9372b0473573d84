"""Loss-threshold attack (Yeom et al. 2018): members have low loss on their label."""

import numpy as np
import scipy.special

from adamixup_jax.attacks.base import checked_inputs


def scores(logits, labels) -> np.ndarray:
    """Minus the cross-entropy of the true label, [examples] float64."""
    logits, labels = checked_inputs(logits, labels)
    log_probs = scipy.special.log_softmax(logits, axis=1)
    return log_probs[np.arange(len(labels)), labels]

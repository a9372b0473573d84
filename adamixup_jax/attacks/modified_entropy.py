"""Modified-entropy attack (Song & Mittal 2021): an entropy that also uses the true
label, so a confident wrong prediction scores as non-member."""

import numpy as np
import scipy.special

from adamixup_jax.attacks.base import checked_inputs


def _log_one_minus_softmax(logits: np.ndarray) -> np.ndarray:
    """log(1 - softmax(logits)) [examples, classes], accurate even when p -> 1.

    log(1 - p_i) = logsumexp(logits without i) - logsumexp(logits). With the row maximum
    m and t_j = exp(logits_j - m), every class except the argmax keeps the maximal term
    1 in sum(t) - t_i, so that difference loses no precision; the argmax is instead
    summed afresh around the second-largest logit.
    """
    rows = np.arange(len(logits))
    log_normaliser = scipy.special.logsumexp(logits, axis=1, keepdims=True)
    row_max = logits.max(axis=1, keepdims=True)
    shifted_exp = np.exp(logits - row_max)
    # The argmax entries may be log(0) here; they are replaced just below.
    with np.errstate(divide="ignore"):
        log_sum_without = row_max + np.log(
            shifted_exp.sum(axis=1, keepdims=True) - shifted_exp
        )

    argmax = logits.argmax(axis=1)
    without_argmax = logits.copy()
    without_argmax[rows, argmax] = -np.inf
    log_sum_without[rows, argmax] = scipy.special.logsumexp(without_argmax, axis=1)
    return log_sum_without - log_normaliser


def scores(logits, labels) -> np.ndarray:
    """Minus Mentr(p, y) = (1 - p_y) log p_y + sum_{i != y} p_i log(1 - p_i)."""
    logits, labels = checked_inputs(logits, labels)
    rows = np.arange(len(labels))
    # The score depends on the true class's logit and the multiset of the others:
    # put the true class first and sort the rest, so outputs equal up to the order of
    # the other classes score bit-identically (tied, as they must).
    others = logits.copy()
    others[rows, labels] = -np.inf
    logits = np.concatenate(
        [logits[rows, labels][:, None], np.sort(others, axis=1)[:, 1:]], axis=1
    )
    labels = np.zeros_like(labels)
    log_probs = scipy.special.log_softmax(logits, axis=1)
    log_one_minus = _log_one_minus_softmax(logits)
    probs = np.exp(log_probs)

    true_term = np.exp(log_one_minus[rows, labels]) * log_probs[rows, labels]
    # p_i log(1 - p_i) -> 0 as p_i -> 0; keep an underflowed p_i from making 0 * -inf.
    other_terms = np.where(probs > 0.0, probs * log_one_minus, 0.0)
    other_terms[rows, labels] = 0.0
    return true_term + other_terms.sum(axis=1)

"""LiRA (Carlini et al. 2022): per example, Gaussians fitted to the shadow models'
logit-scaled confidence phi when the example was IN and when it was OUT. The target's
score is the log-likelihood ratio IN vs OUT (online), or how far above the OUT
Gaussian its phi lies (offline, OUT shadows only).

Queries (augmentations) are treated as one vector with diagonal covariance, and the
per-query scores are averaged: the diagonal Gaussian's log-likelihood ratio divided by
the number of queries, which ranks examples the same way.
"""

import numpy as np
import scipy.special

from adamixup_jax.attacks import shadow

# Floor on every fitted standard deviation, in phi units: shadows that agree exactly
# (e.g. p_y rounding to 1 in all of them) would otherwise give an infinite score.
MIN_STD = 1e-6


def _gaussians(phi, is_side, *, side, fixed_variance, num_shadows):
    """Mean and standard deviation [examples, queries] of phi [shadows, examples,
    queries] over the shadows where is_side [shadows, examples] holds.

    Per-example variances need two shadows on that side for every example; the fixed
    (global) variance needs one, pooling the deviations from each example's own mean
    over all examples, separately per query.
    """
    counts = is_side.sum(axis=0)
    min_count = 1 if fixed_variance else 2
    short = np.flatnonzero(counts < min_count)
    if short.size:
        advice = "" if fixed_variance else " or set attack.fixed_variance=True"
        raise ValueError(
            f"attack.num_shadows={num_shadows!r} leaves {short.size} examples (first: "
            f"{short[0]}) with fewer than {min_count} {side} shadow models; use more "
            f"shadow models{advice}."
        )

    weights = is_side[..., None]
    mean = (phi * weights).sum(axis=0) / counts[:, None]
    squared_deviations = ((phi - mean) ** 2 * weights).sum(axis=0)
    if fixed_variance:
        degrees_of_freedom = int((counts - 1).sum())
        if degrees_of_freedom == 0:
            raise ValueError(
                f"attack.num_shadows={num_shadows!r} gives no example two {side} "
                f"shadow models, so the fixed {side} variance cannot be estimated; "
                "use more shadow models."
            )
        variance = np.broadcast_to(
            squared_deviations.sum(axis=0) / degrees_of_freedom, mean.shape
        )
    else:
        variance = squared_deviations / (counts - 1)[:, None]
    return mean, np.maximum(np.sqrt(variance), MIN_STD)


def _log_density(x, mean, std):
    """log N(x; mean, std) without the constant -log(2 pi) / 2, which cancels."""
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std)


def scores(
    logits, keep, labels, target, *, online=True, fixed_variance=False, num_shadows=None
) -> np.ndarray:
    """LiRA member scores [examples] float64 for model `target`; higher = member.

    | option          | meaning                                                      |
    |-----------------|--------------------------------------------------------------|
    | online          | True: mean over queries of log N(phi_t; IN) - log N(phi_t;   |
    |                 | OUT). False (offline): mean over queries of                  |
    |                 | log Phi((phi_t - mu_out) / sigma_out), the log probability   |
    |                 | that an OUT model's phi is at most the target's              |
    | fixed_variance  | one sigma per query and side (IN/OUT), pooled over examples, |
    |                 | instead of one per example                                   |
    | num_shadows     | use the first this many models other than the target; None = |
    |                 | all                                                          |

    Raises ValueError when num_shadows exceeds the models available, or leaves an
    example with too few IN (online) or OUT shadows: two per example with per-example
    variances, one with the fixed variance. Scores are finite for any finite logits.
    """
    logits, keep, labels, target = shadow.checked_shadow_inputs(
        logits, keep, labels, target
    )
    online = shadow.check_flag("attack.online", online)
    fixed_variance = shadow.check_flag("attack.fixed_variance", fixed_variance)
    shadows = shadow.other_models(
        len(logits), target, num_shadows, "attack.num_shadows"
    )

    # [models, examples, queries]
    phi = shadow.logit_confidence(logits, labels)
    shadow_phi, target_phi = phi[shadows], phi[target]
    shadow_keep = keep[shadows]
    fit = dict(fixed_variance=fixed_variance, num_shadows=num_shadows)

    if not online:
        mean_out, std_out = _gaussians(shadow_phi, ~shadow_keep, side="OUT", **fit)
        per_query = scipy.special.log_ndtr((target_phi - mean_out) / std_out)
        return per_query.mean(axis=1)

    mean_in, std_in = _gaussians(shadow_phi, shadow_keep, side="IN", **fit)
    mean_out, std_out = _gaussians(shadow_phi, ~shadow_keep, side="OUT", **fit)
    per_query = _log_density(target_phi, mean_in, std_in) - _log_density(
        target_phi, mean_out, std_out
    )
    return per_query.mean(axis=1)

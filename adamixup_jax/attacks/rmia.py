"""RMIA (Zarifzadeh et al. 2024): x is a member when its likelihood ratio
Pr(x|theta) / Pr(x) beats that of many population points z. Pr(x) is the mean
true-label probability over reference models: all of them (online), or, offline, an
affine correction of the OUT references' mean with the mixing parameter a.

Probabilities are handled as logarithms throughout, so p_y near 0 or 1 stays finite.
"""

from collections.abc import Sequence

import numpy as np
import scipy.special

from adamixup_jax import metrics
from adamixup_jax.attacks import shadow

# The values of `a` that fit_a tries, in this order (the first best one wins).
A_GRID = tuple(i / 20 for i in range(21))


def _log_mean(log_values, weights):
    """log of the mean of exp(log_values) [models, examples] over the models where
    weights [models, examples] is True; every example needs one such model."""
    counts = weights.sum(axis=0)
    return scipy.special.logsumexp(log_values, axis=0, b=weights) - np.log(counts)


def _population(num_examples, num_population, seed) -> np.ndarray:
    """Indices of the population points z: a seeded sample of the pool without
    replacement, or the whole pool when num_population is None."""
    if num_population is None:
        return np.arange(num_examples)
    if not shadow.is_int(num_population) or num_population < 2:
        raise ValueError(
            f"attack.num_population={num_population!r} must be None or an integer >= 2."
        )
    if num_population > num_examples:
        raise ValueError(
            f"attack.num_population={num_population} exceeds the {num_examples} "
            "pool examples available."
        )
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_examples, size=num_population, replace=False))


def scores(
    logits,
    keep,
    labels,
    target,
    *,
    num_references=None,
    a=0.3,
    gamma=1.0,
    num_population=None,
    online=False,
    population_rng_seed=0,
) -> np.ndarray:
    """RMIA member scores [examples] float64 in [0, 1] for model `target`.

    | option              | meaning                                                  |
    |---------------------|----------------------------------------------------------|
    | num_references      | the first this many models other than the target; None = |
    |                     | all                                                      |
    | a                   | offline only: Pr(x) = (1 + a)/2 * mean_OUT p_y(x)        |
    |                     | + (1 - a)/2, in [0, 1]; see fit_a                        |
    | gamma               | > 0; z counts against x when ratio_x / ratio_z > gamma   |
    | num_population      | how many pool examples serve as z (seeded sample without |
    |                     | replacement); None = the whole pool                      |
    | online              | Pr(x) = mean p_y(x) over all references, IN and OUT      |
    | population_rng_seed | seeds the population sample                              |

    p_y(x) is the true-label softmax probability averaged over the queries, for the
    target (Pr(x|theta)) and for each reference alike. score(x) is the fraction of the
    population points z other than x itself with ratio_x / ratio_z > gamma; excluding x
    keeps the score from depending on whether x was drawn into the population.
    The population is drawn from the whole pool, members of the target included.
    Limitation: with P population points the score takes at most P + 1 values, so a
    small population ties many examples and coarsens the ROC at low FPR.

    Raises ValueError when num_references exceeds the models available, or, offline,
    leaves an example without an OUT reference.
    """
    logits, keep, labels, target = shadow.checked_shadow_inputs(
        logits, keep, labels, target
    )
    references = shadow.other_models(
        len(logits), target, num_references, "attack.num_references"
    )
    a = shadow.check_probability("attack.a", a)
    log_gamma = np.log(shadow.check_positive_number("attack.gamma", gamma))
    online = shadow.check_flag("attack.online", online)
    seed = shadow.check_seed("attack.population_rng_seed", population_rng_seed)
    num_examples = logits.shape[1]
    population = _population(num_examples, num_population, seed)

    # log p_y averaged over queries, [models, examples].
    log_true_probs = shadow.true_label_log_probs(logits, labels)
    num_queries = log_true_probs.shape[2]
    log_p = scipy.special.logsumexp(log_true_probs, axis=2) - np.log(num_queries)
    log_p_refs = log_p[references]
    if online:
        log_pr = _log_mean(log_p_refs, np.ones_like(log_p_refs, dtype=bool))
    else:
        is_out = ~keep[references]
        missing = np.flatnonzero(~is_out.any(axis=0))
        if missing.size:
            raise ValueError(
                f"attack.num_references={num_references!r} leaves {missing.size} "
                f"examples (first: {missing[0]}) without an OUT reference model, which "
                "offline RMIA needs; use more reference models or attack.online=True."
            )
        log_mean_out = _log_mean(log_p_refs, is_out)
        # a = 1 makes the constant term log(0) = -inf, which logaddexp handles.
        with np.errstate(divide="ignore"):
            log_pr = np.logaddexp(
                np.log((1.0 + a) / 2.0) + log_mean_out, np.log((1.0 - a) / 2.0)
            )
    log_ratio = log_p[target] - log_pr

    # ratio_x / ratio_z > gamma  <=>  log_ratio_z < log_ratio_x - log(gamma).
    bound = log_ratio - log_gamma
    beaten = np.searchsorted(np.sort(log_ratio[population]), bound, side="left")
    in_population = np.zeros(num_examples, dtype=bool)
    in_population[population] = True
    beats_itself = in_population & (log_ratio < bound)
    return (beaten - beats_itself) / (len(population) - in_population)


def fit_a(
    logits,
    keep,
    labels,
    ref_i,
    ref_j,
    *,
    grid: Sequence[float] = A_GRID,
    gamma=1.0,
) -> float:
    """The `a` in `grid` that maximises the offline attack's AUC when reference model
    ref_i plays the target and ref_j is the only reference.

    With one reference, offline Pr(x) exists only where ref_j did not train on x, so
    the attack is run and scored on ref_j's OUT examples (they are also the
    population), with keep[ref_i] as the truth. The first best value in `grid` wins.
    """
    logits, keep, labels, ref_i = shadow.checked_shadow_inputs(
        logits, keep, labels, ref_i
    )
    if not shadow.is_int(ref_j) or not 0 <= ref_j < len(logits) or ref_j == ref_i:
        raise ValueError(
            f"ref_j={ref_j!r} must be a model index in [0, {len(logits)}) other than "
            f"ref_i={ref_i}."
        )
    grid = [shadow.check_probability("grid entry", value) for value in grid]
    if not grid:
        raise ValueError("grid is empty; give at least one value of a in [0, 1].")

    usable = ~keep[ref_j]
    pair = [ref_i, int(ref_j)]
    pair_logits, pair_keep = logits[pair][:, usable], keep[pair][:, usable]
    is_member = pair_keep[0]
    if is_member.all() or not is_member.any():
        raise ValueError(
            f"ref_i={ref_i} has {int(is_member.sum())} members among the "
            f"{int(usable.sum())} examples ref_j={ref_j} did not train on; fitting a "
            "needs both members and non-members there."
        )

    def auc_of(a: float) -> float:
        member_scores = scores(
            pair_logits, pair_keep, labels[usable], 0, a=a, gamma=gamma
        )
        return metrics.membership_metrics(member_scores, is_member)["auc"]

    aucs = [auc_of(a) for a in grid]
    return grid[int(np.argmax(aucs))]

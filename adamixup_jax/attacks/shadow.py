"""What the shadow-model attacks (LiRA, RMIA, Shokri) share: the check of their
(logits, keep, labels, target) inputs, the choice of shadow/reference models, the
logit-scaled confidence and a leave-one-out evaluation over several target models.

Every model in `logits` was trained the same way on its own random half of the pool;
an attack on target t uses the other models as shadows and never reads keep[t].
"""

from collections.abc import Callable, Sequence

import numpy as np
import scipy.special

from adamixup_jax import metrics
from adamixup_jax.attacks.base import checked_inputs


def is_int(value) -> bool:
    """Whether `value` is a Python or NumPy integer (booleans excluded)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def checked_shadow_inputs(
    logits, keep, labels, target
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """`logits` float64 [models, examples, queries, classes], `keep` bool [models,
    examples], `labels` int64 [examples] and `target` as an int.

    Raises ValueError unless logits are finite reals with at least two classes and one
    query, the number of models is even (every example is IN for half of them) and at
    least 2, keep is boolean or 0/1 of shape [models, examples], labels are integers in
    [0, classes) and target indexes a model.
    """
    logits = np.asarray(logits)
    if logits.ndim != 4:
        raise ValueError(
            "logits must be 4-D [models, examples, queries, classes], got shape "
            f"{logits.shape}."
        )
    if logits.dtype.kind not in "iuf":
        raise ValueError(f"logits must be real numbers, got dtype {logits.dtype}.")
    num_models, num_examples, num_queries, _ = logits.shape
    if num_models < 2 or num_models % 2:
        raise ValueError(
            f"logits has {num_models} models; shadow attacks need an even number >= 2, "
            "since every example is IN for exactly half of the models."
        )
    if num_queries < 1 or num_examples < 1:
        raise ValueError(
            f"logits has {num_examples} examples and {num_queries} queries; both must "
            "be >= 1."
        )
    # Checks the class count and the labels against one model's identity queries.
    _, labels = checked_inputs(logits[0, :, 0, :], labels)
    logits = logits.astype(np.float64)
    num_nonfinite = int((~np.isfinite(logits)).sum())
    if num_nonfinite:
        raise ValueError(
            f"logits has {num_nonfinite} NaN or infinite values; they must be finite."
        )

    keep = np.asarray(keep)
    if keep.shape != (num_models, num_examples):
        raise ValueError(
            f"keep must have shape ({num_models}, {num_examples}) [models, examples] "
            f"to match logits, got {keep.shape}."
        )
    keep = metrics.boolean_mask(keep, "keep")

    if not is_int(target) or not 0 <= target < num_models:
        raise ValueError(
            f"target={target!r} must be an integer model index in [0, {num_models})."
        )
    return logits, keep, labels, int(target)


def other_models(num_models: int, target: int, count, option: str) -> np.ndarray:
    """Indices of the first `count` models other than `target` (all when None).

    `option` is the config name of `count` (e.g. "attack.num_shadows"), used in errors.
    """
    available = num_models - 1
    if count is None:
        count = available
    if not is_int(count) or count < 1:
        raise ValueError(f"{option}={count!r} must be None or an integer >= 1.")
    if count > available:
        raise ValueError(
            f"{option}={count} exceeds the {available} models available (all models "
            "but the target)."
        )
    return np.delete(np.arange(num_models), target)[:count]


def check_probability(option: str, value) -> float:
    """`value` as a float in [0, 1]; ValueError naming `option` otherwise."""
    if (
        not isinstance(value, (int, float, np.integer, np.floating))
        or isinstance(value, bool)
        or not 0.0 <= value <= 1.0
    ):
        raise ValueError(f"{option}={value!r} must be a number in [0, 1].")
    return float(value)


def check_positive_number(option: str, value) -> float:
    """`value` as a float if it is a finite number > 0; ValueError naming `option`
    otherwise."""
    if (
        not isinstance(value, (int, float, np.integer, np.floating))
        or isinstance(value, bool)
        or not 0.0 < value < np.inf
    ):
        raise ValueError(f"{option}={value!r} must be a finite number > 0.")
    return float(value)


def check_flag(option: str, value) -> bool:
    """`value` if it is a bool; ValueError naming `option` otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{option}={value!r} must be True or False.")
    return bool(value)


def check_positive_int(option: str, value) -> int:
    """`value` if it is an integer >= 1; ValueError naming `option` otherwise."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{option}={value!r} must be an integer >= 1.")
    return int(value)


def check_seed(option: str, value) -> int:
    """`value` if it is an integer >= 0; ValueError naming `option` otherwise."""
    if not is_int(value) or value < 0:
        raise ValueError(f"{option}={value!r} must be an integer >= 0.")
    return int(value)


def true_label_log_probs(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p_y [models, examples, queries] from logits [models, examples, queries,
    classes]; finite for any finite logits."""
    log_probs = scipy.special.log_softmax(logits, axis=-1)
    return np.take_along_axis(log_probs, labels[None, :, None, None], axis=-1)[..., 0]


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """phi = log(p_y) - log(1 - p_y) [models, examples, queries].

    Computed as z_y - logsumexp(z_c for c != y), which equals the definition exactly
    and stays finite where p_y rounds to 1 or to 0 in float64.
    """
    true_logit = np.take_along_axis(logits, labels[None, :, None, None], axis=-1)
    others = logits.copy()
    np.put_along_axis(others, labels[None, :, None, None], -np.inf, axis=-1)
    return true_logit[..., 0] - scipy.special.logsumexp(others, axis=-1)


def _mean_and_std(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def evaluate(
    attack_fn: Callable[..., np.ndarray],
    logits,
    keep,
    labels,
    targets: Sequence[int],
    *,
    fprs: Sequence[float] = (0.001, 0.01),
    **opts,
) -> dict:
    """Leave-one-out evaluation: attacks each model in `targets` with the others as
    shadows and summarises `metrics.membership_metrics` over the targets.

    | key                | value                                                     |
    |--------------------|-----------------------------------------------------------|
    | auc                | {"mean", "std"} over targets                              |
    | balanced_accuracy  | {"mean", "std"} (oracle threshold, per target)            |
    | advantage          | {"mean", "std"} (oracle threshold, per target)            |
    | tpr_at_fpr         | {metrics.fpr_key(f): {"mean", "std"}}                     |
    | targets            | the target indices, in the order given                    |
    | per_target         | each target's metrics without the ROC curve               |
    | roc                | the first target's ROC curve {"fpr", "tpr"}               |

    std is the population standard deviation (ddof=0): 0 for a single target.
    `opts` are passed to `attack_fn` as keyword arguments.
    """
    targets = list(targets)
    if not targets:
        raise ValueError("targets is empty; give at least one target model index.")
    # attack_fn checks each index; a repeated target would weigh one model twice.
    if len(set(targets)) != len(targets):
        raise ValueError(f"targets={targets} lists a model twice.")

    keep = np.asarray(keep)
    per_target = []
    for target in targets:
        member_scores = attack_fn(logits, keep, labels, target, **opts)
        result = metrics.membership_metrics(member_scores, keep[target], fprs=fprs)
        roc = result.pop("roc")
        if not per_target:
            first_roc = roc
        per_target.append(result)

    summary = {
        key: _mean_and_std([result[key] for result in per_target])
        for key in ("auc", "balanced_accuracy", "advantage")
    }
    summary["tpr_at_fpr"] = {
        key: _mean_and_std([result["tpr_at_fpr"][key] for result in per_target])
        for key in per_target[0]["tpr_at_fpr"]
    }
    summary["targets"] = [int(target) for target in targets]
    summary["per_target"] = per_target
    summary["roc"] = first_roc
    return summary

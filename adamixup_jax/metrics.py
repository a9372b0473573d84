"""Membership-inference metrics from per-example scores.

Members are the positive class everywhere and a higher score means "more likely a
member". Every ROC quantity is computed from the exact ROC (one point per distinct
score), so tied or outlying scores never depend on a threshold grid.
"""

from collections.abc import Sequence

import numpy as np
import sklearn.metrics


def _checked_scores(scores) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}.")
    if scores.dtype.kind not in "iuf":
        raise ValueError(
            f"scores must be real numbers (int or float), got dtype {scores.dtype}."
        )
    scores = scores.astype(np.float64)
    num_nan = int(np.isnan(scores).sum())
    if num_nan:
        raise ValueError(f"scores has {num_nan} NaN values; scores must be finite.")
    num_inf = int(np.isinf(scores).sum())
    if num_inf:
        raise ValueError(
            f"scores has {num_inf} infinite values; scores must be finite."
        )
    return scores


def _checked_is_member(is_member, num_scores: int) -> np.ndarray:
    is_member = np.asarray(is_member)
    if is_member.ndim != 1:
        raise ValueError(f"is_member must be 1-D, got shape {is_member.shape}.")
    if len(is_member) != num_scores:
        raise ValueError(
            f"scores has {num_scores} entries but is_member has {len(is_member)}; "
            "they must match."
        )
    is_member = boolean_mask(is_member, "is_member")

    num_members = int(is_member.sum())
    num_nonmembers = len(is_member) - num_members
    if num_members == 0 or num_nonmembers == 0:
        raise ValueError(
            "is_member must contain both members and non-members, got "
            f"{num_members} members and {num_nonmembers} non-members."
        )
    return is_member


def _checked(scores, is_member) -> tuple[np.ndarray, np.ndarray]:
    scores = _checked_scores(scores)
    return scores, _checked_is_member(is_member, len(scores))


def fpr_key(fpr: float) -> str:
    """The key of `tpr_at_fpr` for one target FPR, e.g. 0.001 -> "0.001"."""
    return str(float(fpr))


def boolean_mask(values, name: str) -> np.ndarray:
    """`values` as a bool array; accepts booleans or 0/1 integers, else ValueError."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        bad_values = np.setdiff1d(np.unique(values), [0, 1])
        if bad_values.size:
            raise ValueError(
                f"{name} has values {bad_values[:5].tolist()}; only 0 and 1 "
                "(or booleans) are allowed."
            )
    elif values.dtype.kind != "b":
        raise ValueError(
            f"{name} must be boolean or 0/1 integers, got dtype {values.dtype}."
        )
    return values.astype(bool)


def membership_metrics(
    scores, is_member, fprs: Sequence[float] = (0.001, 0.01)
) -> dict:
    """Threshold-free attack metrics; every value is plain Python (JSON-ready).

    | key                | meaning                                                   |
    |--------------------|-----------------------------------------------------------|
    | auc                | area under the exact ROC; a tie between a member and a    |
    |                    | non-member counts 1/2, so constant scores give 0.5        |
    | balanced_accuracy  | best over all thresholds of (tpr + 1 - fpr) / 2 (oracle)  |
    | advantage          | best over all thresholds of tpr - fpr (oracle), >= 0      |
    | tpr_at_fpr         | {fpr_key(f): largest TPR among ROC points with fpr <= f}, |
    |                    | exact, no interpolation; 0 when no threshold reaches f    |
    | roc                | {"fpr": [...], "tpr": [...]}, starting at (0, 0)          |

    Tied scores form one ROC point, so constant scores have only the points (0, 0) and
    (1, 1): TPR 0 at every FPR below 1.
    """
    scores, is_member = _checked(scores, is_member)
    fprs = [float(f) for f in fprs]
    for f in fprs:
        if not 0.0 < f < 1.0:
            raise ValueError(f"fprs must lie strictly between 0 and 1, got {f}.")

    # The ROC prepends the (0, 0) point: the threshold above every score.
    roc_fpr, roc_tpr, _ = sklearn.metrics.roc_curve(
        is_member, scores, drop_intermediate=False
    )
    tpr_at_fpr = {fpr_key(f): float(roc_tpr[roc_fpr <= f].max()) for f in fprs}
    return {
        "auc": float(sklearn.metrics.auc(roc_fpr, roc_tpr)),
        "balanced_accuracy": float(((roc_tpr + 1.0 - roc_fpr) / 2.0).max()),
        "advantage": float((roc_tpr - roc_fpr).max()),
        "tpr_at_fpr": tpr_at_fpr,
        "num_members": int(is_member.sum()),
        "num_nonmembers": int((~is_member).sum()),
        "roc": {"fpr": roc_fpr.tolist(), "tpr": roc_tpr.tolist()},
    }


def _midpoint(low: float, high: float) -> float:
    """A value in (low, high], as close to the middle as float64 allows."""
    # Halving first cannot overflow, even for scores near the float64 limit.
    middle = low / 2.0 + high / 2.0
    return float(middle) if low < middle <= high else float(high)


def best_threshold(scores, is_member) -> float:
    """The threshold with the best balanced accuracy for "member iff score >= t".

    Candidates are the smallest score (everyone is a member) and the midpoints between
    adjacent distinct scores, so a threshold keeps a margin on both sides when applied
    to other data. "Nobody is a member" is not a candidate: its balanced accuracy, 0.5,
    equals that of "everyone is a member".

    | case                                  | returned threshold                    |
    |---------------------------------------|---------------------------------------|
    | several thresholds reach the best     | the highest of them (fewest members   |
    |                                       | predicted, so the lowest FPR)         |
    | all scores equal                      | that score (balanced accuracy 0.5)    |
    | no threshold beats chance (reversed)  | the smallest score (everyone member)  |
    | perfect separation                    | midpoint of the highest non-member    |
    |                                       | and the lowest member score           |
    """
    scores, is_member = _checked(scores, is_member)
    num_members = int(is_member.sum())
    num_nonmembers = len(is_member) - num_members

    # [distinct], ascending; threshold j predicts member iff score >= distinct[j].
    distinct = np.unique(scores)
    member_scores = np.sort(scores[is_member])
    nonmember_scores = np.sort(scores[~is_member])
    true_positives = num_members - np.searchsorted(member_scores, distinct, "left")
    true_negatives = np.searchsorted(nonmember_scores, distinct, "left")

    # Balanced accuracy times 2 * members * non-members: integers, so ties are exact.
    scaled_balanced_accuracy = (
        true_positives.astype(np.int64) * num_nonmembers
        + true_negatives.astype(np.int64) * num_members
    )
    best = len(distinct) - 1 - int(np.argmax(scaled_balanced_accuracy[::-1]))
    if best == 0:
        return float(distinct[0])
    return _midpoint(distinct[best - 1], distinct[best])


def metrics_at_threshold(scores, is_member, threshold: float) -> dict:
    """Metrics of the decision "member iff score >= threshold", as plain Python."""
    scores, is_member = _checked(scores, is_member)
    threshold = float(threshold)
    if np.isnan(threshold):
        raise ValueError("threshold is NaN; it must be a number.")

    predicted_member = scores >= threshold
    tpr = float(predicted_member[is_member].mean())
    fpr = float(predicted_member[~is_member].mean())
    return {
        "threshold": threshold,
        "accuracy": float((predicted_member == is_member).mean()),
        "balanced_accuracy": (tpr + 1.0 - fpr) / 2.0,
        "tpr": tpr,
        "fpr": fpr,
        "advantage": tpr - fpr,
    }

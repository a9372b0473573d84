"""Tests for adamixup_jax.metrics: exact ROC quantities on hand-computed cases."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adamixup_jax import metrics

# 4 members and 4 non-members with ties across the classes. Pairs: member 3 beats all
# 4; each member 2 ties one and beats 3 (3.5, twice); member 1 loses one, ties one and
# beats 2 (2.5). AUC = (4 + 7 + 2.5) / 16.
TIED_SCORES = np.array([3, 2, 2, 1, 2, 1, 0, 0])
TIED_MEMBERS = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)


def test_tied_case_by_hand():
    result = metrics.membership_metrics(TIED_SCORES, TIED_MEMBERS)

    assert result["auc"] == pytest.approx(13.5 / 16)
    # ROC points: (0, 0), then (0, 1/4) at >= 3, (1/4, 3/4) at >= 2, (1/2, 1) at >= 1
    # and (1, 1).
    assert result["roc"] == {
        "fpr": [0.0, 0.0, 0.25, 0.5, 1.0],
        "tpr": [0.0, 0.25, 0.75, 1.0, 1.0],
    }
    assert result["tpr_at_fpr"] == {"0.001": 0.25, "0.01": 0.25}
    assert result["balanced_accuracy"] == pytest.approx(0.75)
    assert result["advantage"] == pytest.approx(0.5)
    assert result["num_members"] == 4
    assert result["num_nonmembers"] == 4


def test_result_is_plain_python():
    result = metrics.membership_metrics(TIED_SCORES, TIED_MEMBERS)

    assert type(result["auc"]) is float
    assert type(result["num_members"]) is int
    assert all(type(value) is float for value in result["roc"]["fpr"])
    assert all(type(value) is float for value in result["tpr_at_fpr"].values())


# The reversed case still has balanced accuracy 0.5: the oracle can always fall back
# to "nobody is a member". Its best threshold flags everyone, at the smallest score.
@pytest.mark.parametrize(
    ("member_scores", "nonmember_scores", "expected_auc", "best_balanced", "threshold"),
    [
        ([5.0, 6.0, 7.0], [1.0, 2.0, 3.0], 1.0, 1.0, 4.0),
        ([1.0, 2.0, 3.0], [5.0, 6.0, 7.0], 0.0, 0.5, 1.0),
    ],
    ids=["perfect", "reversed"],
)
def test_perfect_and_reversed_separation(
    member_scores, nonmember_scores, expected_auc, best_balanced, threshold
):
    scores = np.array(member_scores + nonmember_scores)
    is_member = np.arange(6) < 3

    result = metrics.membership_metrics(scores, is_member)

    assert result["auc"] == expected_auc
    assert result["tpr_at_fpr"] == {"0.001": expected_auc, "0.01": expected_auc}
    assert result["balanced_accuracy"] == best_balanced
    assert result["advantage"] == 2 * best_balanced - 1
    assert metrics.best_threshold(scores, is_member) == threshold


def test_constant_scores_are_chance():
    is_member = np.array([True, False] * 50)

    result = metrics.membership_metrics(np.full(100, 0.3), is_member)

    assert result["auc"] == 0.5
    assert result["tpr_at_fpr"] == {"0.001": 0.0, "0.01": 0.0}
    assert result["balanced_accuracy"] == 0.5
    assert result["roc"] == {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]}
    assert metrics.best_threshold(np.full(100, 0.3), is_member) == 0.3


def test_flipped_label_convention_gives_one_minus_auc():
    rng = np.random.default_rng(0)
    is_member = rng.random(200) < 0.5
    scores = rng.integers(0, 10, 200) + 5.0 * is_member

    auc = metrics.membership_metrics(scores, is_member)["auc"]
    flipped_auc = metrics.membership_metrics(scores, ~is_member)["auc"]

    assert auc > 0.7
    assert flipped_auc == pytest.approx(1.0 - auc)


def test_tpr_at_fpr_is_exact_and_inclusive():
    # Non-members 0..999; the member at 998.5 is caught at exactly one false positive
    # (FPR 0.001), the one at 997.5 at two; at FPR 0.01 all three are caught.
    scores = np.concatenate([[2000.0, 998.5, 997.5], np.arange(1000.0)])
    is_member = np.arange(1003) < 3

    result = metrics.membership_metrics(scores, is_member, fprs=(0.001, 0.01, 0.5))

    assert result["tpr_at_fpr"] == {"0.001": 2 / 3, "0.01": 1.0, "0.5": 1.0}


def test_outlier_scores():
    scores = np.array([1e300, 2.0, 1.0, -1e300, 1.5, 0.5])
    is_member = np.array([True, True, False, False, True, False])

    result = metrics.membership_metrics(scores, is_member)

    assert result["auc"] == 1.0
    assert result["tpr_at_fpr"]["0.001"] == 1.0
    assert metrics.best_threshold(scores, is_member) == 1.25


def test_best_threshold_near_float_limit_is_finite():
    scores = np.array([1.7e308, -1.7e308])
    is_member = np.array([True, False])

    assert metrics.best_threshold(scores, is_member) == 0.0


def test_best_threshold_between_adjacent_floats():
    low = 1.0
    high = np.nextafter(1.0, 2.0)
    is_member = np.array([True, False])

    threshold = metrics.best_threshold(np.array([high, low]), is_member)

    assert low < threshold <= high


def test_best_threshold_tie_picks_highest_and_applies():
    # Thresholds 1.5 and 0.5 both reach balanced accuracy 0.75 (see the tied case).
    threshold = metrics.best_threshold(TIED_SCORES, TIED_MEMBERS)

    assert threshold == 1.5
    assert metrics.metrics_at_threshold(TIED_SCORES, TIED_MEMBERS, threshold) == {
        "threshold": 1.5,
        "accuracy": 0.75,
        "balanced_accuracy": 0.75,
        "tpr": 0.75,
        "fpr": 0.25,
        "advantage": 0.5,
    }


def test_metrics_at_threshold_unbalanced_classes():
    # 1 member, 3 non-members; threshold 2 flags the member and one non-member.
    result = metrics.metrics_at_threshold([5, 2, 1, 0], [1, 0, 0, 0], 2.0)

    assert result["tpr"] == 1.0
    assert result["fpr"] == pytest.approx(1 / 3)
    assert result["accuracy"] == 0.75
    assert result["balanced_accuracy"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["advantage"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("scores", "is_member", "message"),
    [
        ([0.1, np.nan, np.nan, 0.2], [1, 0, 1, 0], "scores has 2 NaN values"),
        ([0.1, np.inf, 0.3, 0.2], [1, 0, 1, 0], "scores has 1 infinite values"),
        ([0.1, 0.2, 0.3], [1, 0], "scores has 3 entries but is_member has 2"),
        ([[0.1, 0.2], [0.3, 0.4]], [1, 0], r"scores must be 1-D, got shape \(2, 2\)"),
        ([0.1, 0.2], [[1, 0]], r"is_member must be 1-D"),
        ([0.1, 0.2, 0.3], [1, 1, 1], "got 3 members and 0 non-members"),
        ([0.1, 0.2, 0.3], [0, 0, 0], "got 0 members and 3 non-members"),
        ([0.1, 0.2], [0.0, 1.0], "is_member must be boolean or 0/1 integers"),
        ([0.1, 0.2, 0.3], [0, 1, 2], r"is_member has values \[2\]"),
        (["a", "b"], [0, 1], "scores must be real numbers"),
    ],
)
def test_invalid_inputs(scores, is_member, message):
    for function in (metrics.membership_metrics, metrics.best_threshold):
        with pytest.raises(ValueError, match=message):
            function(scores, is_member)
    with pytest.raises(ValueError, match=message):
        metrics.metrics_at_threshold(scores, is_member, 0.0)


@pytest.mark.parametrize("fpr", [0.0, 1.0, -0.1])
def test_invalid_target_fpr(fpr):
    message = f"fprs must lie strictly between 0 and 1, got {fpr}"
    with pytest.raises(ValueError, match=message):
        metrics.membership_metrics(TIED_SCORES, TIED_MEMBERS, fprs=(fpr,))


def test_nan_threshold():
    with pytest.raises(ValueError, match="threshold is NaN"):
        metrics.metrics_at_threshold(TIED_SCORES, TIED_MEMBERS, float("nan"))


def _labelled_integer_scores():
    """Small integer scores (many ties) with at least one member and one non-member."""
    return st.lists(
        st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=25
    ).filter(lambda pairs: len({member for _, member in pairs}) == 2)


@settings(max_examples=200, deadline=None)
@given(_labelled_integer_scores())
def test_auc_equals_mann_whitney_statistic(pairs):
    scores = np.array([score for score, _ in pairs])
    is_member = np.array([member for _, member in pairs])
    member_scores = scores[is_member]
    nonmember_scores = scores[~is_member]

    wins = sum(
        1.0 if m > n else 0.5 if m == n else 0.0
        for m, n in itertools.product(member_scores, nonmember_scores)
    )
    expected = wins / (len(member_scores) * len(nonmember_scores))

    assert metrics.membership_metrics(scores, is_member)["auc"] == pytest.approx(
        expected, abs=1e-12
    )


@settings(max_examples=200, deadline=None)
@given(_labelled_integer_scores(), st.randoms(use_true_random=False))
def test_best_threshold_reaches_oracle_and_order_does_not_matter(pairs, random):
    scores = np.array([score for score, _ in pairs], dtype=float)
    is_member = np.array([member for _, member in pairs])
    order = list(range(len(pairs)))
    random.shuffle(order)

    result = metrics.membership_metrics(scores, is_member)
    shuffled = metrics.membership_metrics(scores[order], is_member[order])
    threshold = metrics.best_threshold(scores, is_member)
    at_threshold = metrics.metrics_at_threshold(scores, is_member, threshold)

    assert shuffled == result
    assert metrics.best_threshold(scores[order], is_member[order]) == threshold
    assert at_threshold["balanced_accuracy"] == pytest.approx(
        result["balanced_accuracy"], abs=1e-12
    )

"""Tests for the score-based attacks: hand-computed values, invariances, stability."""

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from adamixup_jax import attacks
from adamixup_jax.attacks import confidence, entropy, loss, modified_entropy

ALL_SCORES = list(attacks.ATTACKS.values())


def _logits_of(probs):
    """Logits whose softmax is `probs` (a list of rows)."""
    return np.log(np.array(probs, dtype=np.float64))


def test_two_class_by_hand():
    # Both rows have probabilities (0.8, 0.2); row 0 is labelled 0, row 1 labelled 1.
    logits = _logits_of([[0.8, 0.2], [0.8, 0.2]])
    labels = np.array([0, 1])
    log = math.log

    np.testing.assert_allclose(loss.scores(logits, labels), [log(0.8), log(0.2)])
    np.testing.assert_allclose(confidence.scores(logits, labels), [0.8, 0.2])
    expected_entropy = 0.8 * log(0.8) + 0.2 * log(0.2)
    np.testing.assert_allclose(
        entropy.scores(logits, labels), [expected_entropy, expected_entropy]
    )
    # -Mentr = (1 - p_y) log p_y + sum_{i != y} p_i log(1 - p_i); with 2 classes
    # 1 - p_i is the other class's probability.
    np.testing.assert_allclose(
        modified_entropy.scores(logits, labels),
        [0.2 * log(0.8) + 0.2 * log(0.8), 0.8 * log(0.2) + 0.8 * log(0.2)],
    )


def test_three_class_modified_entropy_by_hand():
    logits = _logits_of([[0.5, 0.3, 0.2]])
    log = math.log

    result = modified_entropy.scores(logits, [1])

    np.testing.assert_allclose(
        result, [0.7 * log(0.3) + 0.5 * log(0.5) + 0.2 * log(0.8)]
    )


def test_modified_entropy_confident_wrong_matches_high_precision():
    # p_1 = 1 - 3.9e-22 rounds to 1 in float64, so a naive log(1 - p_1) is -inf.
    logits = [[0.0, 50.0, 0.0]]
    mpmath.mp.dps = 60
    z = [mpmath.mpf(v) for v in logits[0]]
    normaliser = sum(mpmath.exp(v) for v in z)
    p = [mpmath.exp(v) / normaliser for v in z]
    expected = (1 - p[0]) * mpmath.log(p[0]) + sum(
        p[i] * mpmath.log(1 - p[i]) for i in (1, 2)
    )

    result = modified_entropy.scores(logits, [0])

    np.testing.assert_allclose(result, [float(expected)], rtol=1e-13)
    assert result[0] == pytest.approx(-100 + math.log(2), rel=1e-12)


def test_extreme_logits_are_finite_and_exact():
    logits = np.array([[1000.0, -1000.0], [-1000.0, 1000.0], [1000.0, 1000.0]])
    labels = np.array([0, 0, 0])

    np.testing.assert_allclose(
        loss.scores(logits, labels), [0.0, -2000.0, -math.log(2)]
    )
    np.testing.assert_allclose(confidence.scores(logits, labels), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(entropy.scores(logits, labels), [0.0, 0.0, -math.log(2)])
    # Confident and wrong: (1 - p_y) log p_y = -2000 and p_1 log(1 - p_1) = -2000.
    np.testing.assert_allclose(
        modified_entropy.scores(logits, labels),
        [0.0, -4000.0, -math.log(2)],
        atol=1e-300,
    )


@pytest.mark.parametrize("scores", ALL_SCORES)
def test_confident_correct_beats_uncertain(scores):
    logits = np.array([[10.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    labels = np.array([0, 0, 1])

    result = scores(logits, labels)

    assert result[0] > result[1]
    assert result[2] > result[1]
    assert result.dtype == np.float64
    assert result.shape == (3,)


@pytest.mark.parametrize(
    "scores", [loss.scores, confidence.scores, modified_entropy.scores]
)
def test_confident_wrong_scores_lowest(scores):
    # Entropy ignores the label, so it is left out on purpose.
    logits = np.array([[0.0, 0.0, 0.0], [0.0, 10.0, 0.0]])

    result = scores(logits, [0, 0])

    assert result[1] < result[0]


def _logits_and_labels(max_abs=1000.0):
    shapes = st.tuples(st.integers(1, 6), st.integers(2, 5))
    return shapes.flatmap(
        lambda shape: st.tuples(
            hnp.arrays(
                np.float64,
                shape,
                elements=st.floats(-max_abs, max_abs, allow_nan=False),
            ),
            hnp.arrays(np.int64, shape[0], elements=st.integers(0, shape[1] - 1)),
        )
    )


@settings(max_examples=100, deadline=None)
@given(_logits_and_labels(), st.floats(-500.0, 500.0))
def test_shifting_a_row_changes_no_score(logits_and_labels, shift):
    logits, labels = logits_and_labels
    shifted = logits.copy()
    shifted[0] += shift

    for scores in ALL_SCORES:
        np.testing.assert_allclose(
            scores(shifted, labels), scores(logits, labels), rtol=1e-9, atol=1e-9
        )


@settings(max_examples=100, deadline=None)
@given(_logits_and_labels())
def test_scores_are_finite_and_bounded(logits_and_labels):
    logits, labels = logits_and_labels
    num_classes = logits.shape[1]

    for scores in ALL_SCORES:
        assert np.all(np.isfinite(scores(logits, labels)))
    assert np.all(entropy.scores(logits, labels) >= -math.log(num_classes) - 1e-12)
    assert np.all(entropy.scores(logits, labels) <= 0.0)
    assert np.all(modified_entropy.scores(logits, labels) <= 0.0)
    np.testing.assert_allclose(
        confidence.scores(logits, labels), np.exp(loss.scores(logits, labels))
    )


@settings(max_examples=100, deadline=None)
@given(_logits_and_labels(max_abs=5.0))
def test_modified_entropy_matches_naive_formula_on_moderate_logits(logits_and_labels):
    logits, labels = logits_and_labels
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    p_true = probs[rows, labels]
    others = probs * np.log(1.0 - probs)
    others[rows, labels] = 0.0
    expected = (1.0 - p_true) * np.log(p_true) + others.sum(axis=1)

    np.testing.assert_allclose(
        modified_entropy.scores(logits, labels), expected, rtol=1e-9, atol=1e-12
    )


def test_float32_and_integer_inputs_are_accepted():
    logits = np.array([[2.0, 1.0], [0.0, 3.0]], dtype=np.float32)
    labels = np.array([0, 1], dtype=np.int32)

    np.testing.assert_allclose(
        loss.scores(logits, labels), loss.scores(logits.astype(np.float64), [0, 1])
    )
    assert loss.scores([[2, 1]], [0]).dtype == np.float64


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        ([0.0, 1.0], [0], r"logits must be 2-D \[examples, classes\], got shape"),
        ([[0.0], [1.0]], [0, 0], "logits must have at least 2 classes, got 1"),
        ([[0.0, np.nan]], [0], "logits has 1 NaN or infinite values"),
        ([[0.0, np.inf]], [0], "logits has 1 NaN or infinite values"),
        ([["a", "b"]], [0], "logits must be real numbers"),
        ([[0.0, 1.0]], [0, 1], r"labels must have shape \(1,\) to match logits"),
        ([[0.0, 1.0]], [[0]], r"labels must have shape \(1,\)"),
        ([[0.0, 1.0]], [0.0], "labels must be integers, got dtype float64"),
        ([[0.0, 1.0], [1.0, 0.0]], [2, -1], r"labels has values \[-1, 2\] outside"),
    ],
)
@pytest.mark.parametrize("scores", ALL_SCORES)
def test_invalid_inputs(scores, logits, labels, message):
    with pytest.raises(ValueError, match=message):
        scores(logits, labels)


def test_registry():
    assert attacks.ATTACKS == {
        "loss": loss.scores,
        "confidence": confidence.scores,
        "entropy": entropy.scores,
        "modified_entropy": modified_entropy.scores,
    }
    assert attacks.get("modified_entropy") is modified_entropy.scores


def test_unknown_attack_names_the_key_and_allowed_names():
    with pytest.raises(
        ValueError,
        match="attacks has no attack 'lira'; allowed: confidence, entropy, loss, "
        "modified_entropy",
    ):
        attacks.get("lira")


def test_loss_keeps_ranking_very_confident_rows():
    logits = np.array(
        [[40.0, 0.0, 0.0], [45.0, 0.0, 0.0], [60.0, 0.0, 0.0], [80.0, 0.0, 0.0]]
    )
    scores = attacks.get("loss")(logits, np.zeros(4, int))
    assert np.all(np.diff(scores) > 0)
    np.testing.assert_allclose(scores, -2.0 * np.exp(-logits[:, 0]), rtol=1e-9)


def test_entropy_attacks_tie_outputs_equal_up_to_the_class_order():
    # MemGuard-like answers: the same vector, the top class in different places.
    top, rest = np.log(0.9), np.log(0.1 / 9)
    logits = np.full((10, 10), rest)
    logits[np.arange(10), np.arange(10)] = top
    labels = np.arange(10)  # all correct
    for module in (entropy, modified_entropy):
        scores = module.scores(logits, labels)
        assert len(np.unique(scores)) == 1, module.__name__
    wrong = (labels + 3) % 10  # all wrong, the true class in different places too
    assert len(np.unique(modified_entropy.scores(logits, wrong))) == 1

"""Mixup + MMD: the kernel two-sample distance, its per-class average, and the loss."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adamixup_jax.defenses import TrainingLength, mixup_mmd

# Two points each in 2-D at distance 0, 1 or sqrt(2) from one another.
X = jnp.array([[0.0, 0.0], [1.0, 0.0]])
Y = jnp.array([[0.0, 0.0], [0.0, 1.0]])
# Bandwidth 1: k = exp(-d² / 2). Mean k within X and within Y is (1 + e^-1/2) / 2,
# between them (1 + 2 e^-1/2 + e^-1) / 4, so MMD² = (1 - e^-1) / 2.
X_Y_MMD = (1.0 - math.exp(-1.0)) / 2.0


def _defense(**overrides):
    config = mixup_mmd.default_config()
    config.update(overrides)
    return mixup_mmd.make(config, TrainingLength(3, 10))


def test_mmd_squared_matches_the_hand_value():
    value = mixup_mmd.mmd_squared(X, Y, jnp.ones(2), jnp.ones(2), 1.0)
    np.testing.assert_allclose(value, X_Y_MMD, rtol=1e-6)


def test_mmd_squared_bandwidth_scales_distances():
    # Bandwidth 2 halves the distances: every exponent is divided by 4.
    value = mixup_mmd.mmd_squared(2 * X, 2 * Y, jnp.ones(2), jnp.ones(2), 2.0)
    np.testing.assert_allclose(value, X_Y_MMD, rtol=1e-6)


def test_mmd_squared_is_zero_for_identical_sets_and_positive_otherwise():
    same = mixup_mmd.mmd_squared(X, X, jnp.ones(2), jnp.ones(2), 1.0)
    assert float(same) == pytest.approx(0.0, abs=1e-7)
    shifted = mixup_mmd.mmd_squared(X, X + 0.1, jnp.ones(2), jnp.ones(2), 1.0)
    assert float(shifted) > 1e-4


def test_mmd_squared_ignores_weight_zero_points_and_uses_relative_weights():
    far = jnp.array([[50.0, -50.0]])
    padded = mixup_mmd.mmd_squared(
        jnp.concatenate([X, far]),
        jnp.concatenate([far, Y]),
        jnp.array([1.0, 1.0, 0.0]),
        jnp.array([0.0, 3.0, 3.0]),
        1.0,
    )
    np.testing.assert_allclose(padded, X_Y_MMD, rtol=1e-6)


@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 2**31 - 1), bandwidth=st.floats(0.1, 5.0))
def test_mmd_squared_is_symmetric_and_non_negative(seed, bandwidth):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    wx, wy = rng.uniform(size=5), rng.uniform(size=4)
    forward = float(mixup_mmd.mmd_squared(x, y, wx, wy, bandwidth))
    backward = float(mixup_mmd.mmd_squared(y, x, wy, wx, bandwidth))
    assert forward >= 0.0
    assert forward == pytest.approx(backward, rel=1e-5, abs=1e-7)


def test_class_conditional_mmd_skips_classes_missing_from_one_set():
    # Class 0: X against Y. Class 1: one point each at distance sqrt(2), so
    # MMD² = 1 + 1 - 2 e^-1. Class 2 only in x, class 3 only in y: skipped.
    # A weight-0 x point of class 3 does not make class 3 present.
    x = jnp.concatenate([X, jnp.array([[0.0, 0.0], [7.0, 7.0], [9.0, 9.0]])])
    x_classes = jnp.array([0, 0, 1, 2, 3])
    x_weights = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0])
    y = jnp.concatenate([Y, jnp.array([[1.0, 1.0], [-7.0, 7.0]])])
    y_classes = jnp.array([0, 0, 1, 3])
    value = mixup_mmd.class_conditional_mmd(
        x, x_classes, x_weights, y, y_classes, 4, 1.0
    )
    class_one = 2.0 * (1.0 - math.exp(-1.0))
    np.testing.assert_allclose(value, (X_Y_MMD + class_one) / 2, rtol=1e-6)


def test_class_conditional_mmd_is_zero_when_no_class_is_in_both():
    value = mixup_mmd.class_conditional_mmd(
        X, jnp.array([0, 0]), jnp.ones(2), Y, jnp.array([1, 1]), 2, 1.0
    )
    assert float(value) == 0.0


# A batch of 4 training samples over 3 classes, soft (mixed) targets whose dominant
# classes are 1, 0, 1, 2, and a validation batch of classes 1 and 0.
TRAIN_LOGITS = jnp.array(
    [[0.1, 2.0, -1.0], [1.5, 0.2, 0.0], [0.0, 0.5, 0.3], [-0.4, 0.0, 1.0]]
)
TARGETS = jnp.array(
    [[0.3, 0.7, 0.0], [0.6, 0.0, 0.4], [0.0, 0.9, 0.1], [0.2, 0.0, 0.8]]
)
WEIGHTS = jnp.ones(4)
VALIDATION = (
    jnp.array([[0.0, 3.0, 0.0], [0.2, 1.0, 0.1], [2.0, 0.0, 0.5]]),
    jnp.array([1, 1, 0]),
)


def _loss(defense, logits=TRAIN_LOGITS, weights=WEIGHTS, validation=VALIDATION):
    labels = jnp.argmax(TARGETS, -1)
    return jax.jit(defense.loss)(
        logits, TARGETS, labels, weights, jnp.array(0), validation
    )


def _hand_cross_entropy(logits, targets):
    log_probabilities = np.asarray(jax.nn.log_softmax(logits))
    return float(np.mean(-np.sum(np.asarray(targets) * log_probabilities, -1)))


def test_with_mmd_weight_zero_the_loss_is_the_mixup_cross_entropy():
    value = _loss(_defense(mmd_weight=0.0))
    np.testing.assert_allclose(
        value, _hand_cross_entropy(TRAIN_LOGITS, TARGETS), rtol=1e-6
    )


def test_the_penalty_compares_each_dominant_class_with_its_validation_examples():
    penalty = float(_loss(_defense(mmd_weight=2.0))) - float(
        _loss(_defense(mmd_weight=0.0))
    )
    train, val = jax.nn.softmax(TRAIN_LOGITS), jax.nn.softmax(VALIDATION[0])
    # Class 1: train samples 0 and 2 against validation 0 and 1; class 0: train
    # sample 1 against validation 2; class 2 (train sample 3) has no validation.
    class_one = mixup_mmd.mmd_squared(
        train[jnp.array([0, 2])], val[:2], jnp.ones(2), jnp.ones(2), 1.0
    )
    class_zero = mixup_mmd.mmd_squared(
        train[1:2], val[2:], jnp.ones(1), jnp.ones(1), 1.0
    )
    expected = 2.0 * (float(class_one) + float(class_zero)) / 2
    assert expected > 1e-3
    np.testing.assert_allclose(penalty, expected, rtol=1e-4)


def test_padding_training_examples_change_nothing():
    defense = _defense(mmd_weight=5.0)
    # Sample 0 is of class 1, which the validation batch also holds.
    weights = jnp.array([0.0, 1.0, 1.0, 1.0])
    reference = _loss(defense, weights=weights)
    wild = TRAIN_LOGITS.at[0].set(jnp.array([40.0, -40.0, 0.0]))
    padded = _loss(defense, logits=wild, weights=weights)
    np.testing.assert_allclose(padded, reference, rtol=1e-6)


def test_missing_validation_batch_is_an_error():
    with pytest.raises(ValueError, match="validation"):
        _loss(_defense(), validation=None)


def test_gradient_is_finite_when_outputs_coincide():
    # Identical train and validation outputs: kernel distance 0, where a norm
    # (with a square root) would have an undefined gradient.
    defense = _defense(mmd_weight=1.0)
    logits = jnp.tile(VALIDATION[0][:1], (4, 1))
    targets = jax.nn.one_hot(jnp.ones(4, jnp.int32), 3)
    gradient = jax.jit(jax.grad(defense.loss))(
        logits, targets, jnp.ones(4, jnp.int32), WEIGHTS, jnp.array(0), VALIDATION
    )
    assert np.all(np.isfinite(gradient))


def test_jit_and_vmap_over_models_match_one_model_at_a_time():
    defense = _defense(mmd_weight=3.0)
    train = jnp.stack([TRAIN_LOGITS, -TRAIN_LOGITS])  # [models, batch, classes]
    validation = jnp.stack([VALIDATION[0], 2 * VALIDATION[0]])
    labels = jnp.argmax(TARGETS, -1)

    def value_and_gradient(logits, validation_logits):
        return jax.value_and_grad(defense.loss)(
            logits,
            TARGETS,
            labels,
            WEIGHTS,
            jnp.array(0),
            (validation_logits, VALIDATION[1]),
        )

    values, gradients = jax.jit(jax.vmap(value_and_gradient))(train, validation)
    for model in range(2):
        value, gradient = jax.jit(value_and_gradient)(train[model], validation[model])
        np.testing.assert_allclose(values[model], value, rtol=1e-5)
        np.testing.assert_allclose(gradients[model], gradient, rtol=1e-4, atol=1e-7)
    assert float(values[0]) != pytest.approx(float(values[1]))


def test_inputs_are_mixed_as_in_mixup_with_soft_labels():
    defense = _defense()
    images = jnp.eye(8).reshape(8, 8, 1, 1)
    mixed, targets, strength = jax.jit(defense.prepare_batch, static_argnums=3)(
        jax.random.key(0), images, jnp.arange(8), 8, jnp.array(0), None
    )
    # With one-hot images and labels the mixed image *is* the soft label.
    np.testing.assert_allclose(
        np.asarray(mixed).reshape(8, 8), np.asarray(targets), atol=1e-6
    )
    assert 0.0 < float(strength) < 1.0
    assert defense.validation_fraction == pytest.approx(0.2)


def test_check_config_accepts_the_defaults():
    mixup_mmd.check_config(mixup_mmd.default_config())


@pytest.mark.parametrize(
    "key, value",
    [
        ("validation_fraction", 0.0),
        ("validation_fraction", 1.0),
        ("validation_fraction", 1.5),
        ("mmd_weight", -0.1),
        ("mmd_weight", float("inf")),
        ("bandwidth", 0.0),
        ("bandwidth", -1.0),
        ("alpha", 0.0),
        ("alpha", -1.0),
        ("alpha", float("nan")),
        ("pairing", "nearest"),
    ],
)
def test_check_config_rejects_bad_values_naming_the_key(key, value):
    config = mixup_mmd.default_config()
    config[key] = value
    with pytest.raises(ValueError, match=rf"^mixup_mmd\.{key}="):
        mixup_mmd.check_config(config)

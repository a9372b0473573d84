"""RelaxLoss: descent above the target loss, ascent or posterior flattening below."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamixup_jax.defenses import TrainingLength, relaxloss

STEPS_PER_EPOCH = 10
# Three 3-class examples: 0 and 2 correctly classified, 1 misclassified.
LOGITS = jnp.array([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0], [0.5, 0.0, 1.5]])
LABELS = jnp.array([0, 0, 2])
WEIGHTS = jnp.ones(3)


def _defense(alpha, ascent_period=2):
    config = relaxloss.default_config()
    config.alpha = alpha
    config.ascent_period = ascent_period
    return relaxloss.make(config, TrainingLength(5, STEPS_PER_EPOCH))


def _softmax(logits):
    exp = np.exp(np.asarray(logits) - np.max(logits, axis=-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def _hand_cross_entropy(logits, targets, weights):
    """Weighted mean cross-entropy and its gradient by the textbook formulas."""
    probabilities = _softmax(logits)
    per_example = -np.sum(targets * np.log(probabilities), axis=-1)
    weights = np.asarray(weights)
    value = np.sum(per_example * weights) / weights.sum()
    gradient = (probabilities - targets) * weights[:, None] / weights.sum()
    return value, gradient


def _hand_flattened(logits, labels):
    """p_y on the label and (1 - p_y) / 2 on the two others if correct, else one-hot."""
    p = _softmax(logits)
    targets = np.eye(3)[np.asarray(labels)]
    for i, label in enumerate(np.asarray(labels)):
        if np.argmax(p[i]) == label:
            targets[i] = (1 - p[i, label]) / 2
            targets[i, label] = p[i, label]
    return targets


def _value_and_gradient(defense, logits, labels, weights, step):
    targets = jax.nn.one_hot(labels, logits.shape[-1])
    return jax.value_and_grad(defense.loss)(
        logits, targets, labels, weights, jnp.array(step, jnp.int32), None
    )


def test_above_alpha_it_is_plain_cross_entropy():
    one_hot = np.eye(3)[np.asarray(LABELS)]
    expected_value, expected_gradient = _hand_cross_entropy(LOGITS, one_hot, WEIGHTS)
    assert expected_value > 0.5  # so alpha = 0.5 puts the batch above alpha

    # Whatever the epoch: ascent epochs (0, 2) and flattening epochs (1) alike.
    for step in (0, 13, 25):
        value, gradient = _value_and_gradient(
            _defense(0.5), LOGITS, LABELS, WEIGHTS, step
        )
        np.testing.assert_allclose(value, expected_value, rtol=1e-6)
        np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("step", [0, 9, 20, 29])  # epochs 0, 0, 2, 2
def test_below_alpha_on_an_ascent_epoch_the_gradient_is_reversed(step):
    one_hot = np.eye(3)[np.asarray(LABELS)]
    plain_value, plain_gradient = _hand_cross_entropy(LOGITS, one_hot, WEIGHTS)
    value, gradient = _value_and_gradient(_defense(10.0), LOGITS, LABELS, WEIGHTS, step)
    np.testing.assert_allclose(value, 10.0 - plain_value, rtol=1e-6)
    np.testing.assert_allclose(gradient, -plain_gradient, rtol=1e-5, atol=1e-7)


def test_flattened_target_keeps_p_y_and_spreads_the_rest():
    p = _softmax(LOGITS)
    expected = np.array(
        [
            [p[0, 0], (1 - p[0, 0]) / 2, (1 - p[0, 0]) / 2],  # correct: flattened
            [1.0, 0.0, 0.0],  # misclassified: one-hot of its label
            [(1 - p[2, 2]) / 2, (1 - p[2, 2]) / 2, p[2, 2]],  # correct: flattened
        ]
    )
    targets = relaxloss.flattened_targets(LOGITS, LABELS)
    np.testing.assert_allclose(targets, expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(targets).sum(-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("step", [10, 19, 35])  # epochs 1, 1, 3
def test_below_alpha_on_a_flattening_epoch_it_fits_the_flattened_targets(step):
    flattened = _hand_flattened(LOGITS, LABELS)
    expected_value, expected_gradient = _hand_cross_entropy(LOGITS, flattened, WEIGHTS)
    value, gradient = _value_and_gradient(_defense(10.0), LOGITS, LABELS, WEIGHTS, step)
    np.testing.assert_allclose(value, expected_value, rtol=1e-6)
    # The targets are constants: a correct example's true-class logit gets no push.
    np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(gradient)[[0, 2], [0, 2]], 0.0, atol=1e-7)


def test_ascent_period_sets_which_epochs_ascend():
    one_hot = np.eye(3)[np.asarray(LABELS)]
    plain_value, _ = _hand_cross_entropy(LOGITS, one_hot, WEIGHTS)
    defense = _defense(10.0, ascent_period=3)
    ascends = [
        bool(
            np.isclose(
                _value_and_gradient(
                    defense, LOGITS, LABELS, WEIGHTS, epoch * STEPS_PER_EPOCH
                )[0],
                10.0 - plain_value,
                rtol=1e-6,
            )
        )
        for epoch in range(5)
    ]
    assert ascends == [True, False, False, True, False]


@pytest.mark.parametrize(
    "alpha, step", [(0.5, 0), (10.0, 0), (10.0, 10)]
)  # descent, ascent, flattening
def test_padding_examples_change_nothing(alpha, step):
    defense = _defense(alpha)
    value, gradient = _value_and_gradient(defense, LOGITS, LABELS, WEIGHTS, step)

    # A padding example whose logits alone would flip the regime (huge loss).
    padded_logits = jnp.concatenate([LOGITS, jnp.array([[-50.0, 50.0, 0.0]])])
    padded_value, padded_gradient = _value_and_gradient(
        defense,
        padded_logits,
        jnp.concatenate([LABELS, jnp.array([0])]),
        jnp.concatenate([WEIGHTS, jnp.zeros(1)]),
        step,
    )
    np.testing.assert_allclose(padded_value, value, rtol=1e-6)
    np.testing.assert_allclose(padded_gradient[:3], gradient, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(padded_gradient[3], 0.0)


def test_jit_and_vmap_over_models_match_one_model_at_a_time():
    defense = _defense(1.0)
    # Model 0 has a high loss (descent), model 1 a low one (flattening at epoch 1).
    confident = jnp.array([[4.0, 1.0, 0.0], [4.0, 0.0, 0.0], [0.0, 1.0, 4.0]])
    logits = jnp.stack([LOGITS * 0.1, confident])  # [models, batch, classes]
    targets = jax.nn.one_hot(LABELS, 3)
    step = jnp.array(12, jnp.int32)

    def value_and_gradient(model_logits, step):
        return jax.value_and_grad(defense.loss)(
            model_logits, targets, LABELS, WEIGHTS, step, None
        )

    values, gradients = jax.jit(jax.vmap(value_and_gradient, in_axes=(0, None)))(
        logits, step
    )
    for model in range(2):
        value, gradient = jax.jit(value_and_gradient)(logits[model], step)
        np.testing.assert_allclose(values[model], value, rtol=1e-6)
        np.testing.assert_allclose(gradients[model], gradient, rtol=1e-5, atol=1e-8)

    # Each model got its own regime.
    one_hot = np.eye(3)[np.asarray(LABELS)]
    np.testing.assert_allclose(
        values[0], _hand_cross_entropy(logits[0], one_hot, WEIGHTS)[0], rtol=1e-6
    )
    np.testing.assert_allclose(
        values[1],
        _hand_cross_entropy(confident, _hand_flattened(confident, LABELS), WEIGHTS)[0],
        rtol=1e-6,
    )


def test_check_config_accepts_the_defaults():
    relaxloss.check_config(relaxloss.default_config())


@pytest.mark.parametrize(
    "key, value",
    [
        ("alpha", 0.0),
        ("alpha", -1.0),
        ("alpha", float("nan")),
        ("alpha", float("inf")),
        ("ascent_period", 0),
        ("ascent_period", True),
    ],
)
def test_check_config_rejects_bad_values_naming_the_key(key, value):
    config = relaxloss.default_config()
    config[key] = value
    with pytest.raises(ValueError, match=rf"^relaxloss\.{key}="):
        relaxloss.check_config(config)

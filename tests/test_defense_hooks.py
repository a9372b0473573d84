"""The defense hooks of training and scoring: per-example gradients (DP-SGD), the
validation slice, early stopping, the adaptive AdaMixup controller and MemGuard."""

import dataclasses

import hypothesis
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamixup_jax import models, training
from adamixup_jax.defenses import (
    DefenseBase,
    TrainingLength,
    adamixup,
    dpsgd,
    early_stopping,
    erm,
    memguard,
)
from tests.test_training import _digits, _train_config


def _tiny_model(norm="none"):
    config = models.default_config()
    config.width = 4
    config.dense = 16
    config.norm = norm
    return models.create(config, 10)


def _dpsgd(clip_norm, noise_multiplier):
    block = dpsgd.default_config()
    block.clip_norm = clip_norm
    block.noise_multiplier = noise_multiplier
    return dpsgd.make(block, TrainingLength(1, 1))


def _step_result(defense, model, weights):
    tx = training.make_optimizer(_train_config(1), 1)
    images, labels = _digits(8)
    state = training.init_state(model, tx, jax.random.key(0), images.shape[1:])
    step = jax.jit(training.make_train_step(model, tx, defense, 10))
    batch = {"images": images, "labels": labels, "weights": weights}
    return step(state, batch, jax.random.key(1))


def test_per_example_path_without_clipping_or_noise_equals_the_batch_gradient():
    # A clip norm no gradient reaches and a noise std of 1e-12 leave the mean of the
    # per-example gradients over the B slots, i.e. sum(w * g) / B. With one padding
    # slot of 8 that is 7/8 of the weighted-mean gradient of ERM, which SGD (no
    # momentum history yet, no weight decay) turns into 7/8 of ERM's update.
    model = _tiny_model()
    weights = jnp.array([1, 1, 1, 1, 1, 1, 1, 0], jnp.float32)
    private, private_metrics = _step_result(_dpsgd(1e6, 1e-12), model, weights)
    plain, plain_metrics = _step_result(erm.Erm(), model, weights)
    tx = training.make_optimizer(_train_config(1), 1)
    images, _ = _digits(8)
    start = training.init_state(model, tx, jax.random.key(0), images.shape[1:])
    decay = training.default_config().weight_decay
    lr = training.default_config().learning_rate

    def gradient(new, old):  # undo p' = p - lr * (g + decay * p)
        return (old - new) / lr - decay * old

    for p_new, e_new, old in zip(
        jax.tree.leaves(private.params),
        jax.tree.leaves(plain.params),
        jax.tree.leaves(start.params),
    ):
        np.testing.assert_allclose(
            gradient(p_new, old), 7 / 8 * gradient(e_new, old), rtol=2e-3, atol=2e-6
        )
    np.testing.assert_allclose(
        private_metrics["loss"], plain_metrics["loss"], rtol=1e-5
    )


def test_per_example_gradients_refuse_batchnorm():
    with pytest.raises(ValueError, match="BatchNorm"):
        _step_result(_dpsgd(1.0, 1.0), _tiny_model("batch"), jnp.ones(8))


def test_dp_step_with_groupnorm_runs_and_its_noise_is_keyed():
    model = _tiny_model("group")
    a, _ = _step_result(_dpsgd(1.0, 1.0), model, jnp.ones(8))
    b, _ = _step_result(_dpsgd(1.0, 1.0), model, jnp.ones(8))
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(a.params))


@dataclasses.dataclass(frozen=True)
class _ValidationOnly(DefenseBase):
    """Trains on the cross-entropy of the validation batch alone."""

    validation_fraction: float = 0.5
    name: str = "validation_only"

    def loss(self, logits, targets, labels, weights, step, validation):
        validation_logits, validation_labels = validation
        return super().loss(
            validation_logits,
            jax.nn.one_hot(validation_labels, 10),
            validation_labels,
            jnp.ones(validation_labels.shape),
            step,
            None,
        )


def test_epoch_draws_validation_batches_from_the_validation_slice_only():
    images, _ = _digits(24)
    labels = jnp.asarray(np.r_[np.zeros(16), np.arange(8) + 1].astype(np.int32))

    def step(state, batch, key):
        del key
        return state, {"validation_labels": batch["validation_labels"]}

    epoch = training.make_epoch_fn(step, 8)
    _, seen = jax.jit(epoch)(
        0,
        jnp.asarray(images),
        labels,
        jnp.arange(16, dtype=jnp.int32),
        jnp.ones(16),
        jax.random.key(3),
        0.0,
        jnp.arange(16, 24, dtype=jnp.int32),
    )
    seen = np.asarray(seen["validation_labels"])
    assert seen.shape == (2, 8)  # two steps of 8
    assert seen.min() >= 1  # never a training example (label 0)
    assert len(np.unique(seen)) > 1


def test_train_step_hands_the_validation_logits_to_the_loss():
    model = _tiny_model()
    tx = training.make_optimizer(_train_config(1), 1)
    images, labels = _digits(16)
    state = training.init_state(model, tx, jax.random.key(0), images.shape[1:])
    key = jax.random.key(1)
    train, validation = slice(0, 8), slice(8, 16)
    hooked, _ = training.make_train_step(model, tx, _ValidationOnly(), 10)(
        state,
        {
            "images": images[train],
            "labels": labels[train],
            "weights": jnp.ones(8),
            "validation_images": images[validation],
            "validation_labels": labels[validation],
        },
        key,
    )
    # ERM on the validation batch takes exactly the same step.
    plain, _ = training.make_train_step(model, tx, erm.Erm(), 10)(
        state,
        {
            "images": images[validation],
            "labels": labels[validation],
            "weights": jnp.ones(8),
        },
        key,
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        hooked.params,
        plain.params,
    )


def test_train_one_needs_the_validation_slice_when_the_defense_holds_one_out():
    images, labels = _digits(16)
    with pytest.raises(ValueError, match="validation"):
        training.train_one(
            _tiny_model(),
            early_stopping.EarlyStopping(validation_fraction=0.2),
            _train_config(1),
            images,
            labels,
            10,
            jax.random.key(0),
        )


def test_early_stopping_returns_the_first_epoch_of_best_validation_accuracy():
    images, labels = _digits(120)
    train, validation = (images[:96], labels[:96]), (images[96:], labels[96:])
    config = _train_config(6)
    result = training.train_one(
        _tiny_model(),
        early_stopping.EarlyStopping(validation_fraction=0.2),
        config,
        *train,
        10,
        jax.random.key(0),
        validation=validation,
    )
    accuracies = [record["validation_accuracy"] for record in result.history]
    assert len(accuracies) == 6
    assert result.selected_epoch == int(np.argmax(accuracies)) + 1
    logits = training.predict_logits(
        result.predict, result.state, validation[0], config.eval_batch_size
    )
    assert training.accuracy(logits, validation[1]) == max(accuracies)


def test_early_stopping_patience_stops_training():
    images, labels = _digits(120)
    result = training.train_one(
        _tiny_model(),
        early_stopping.EarlyStopping(validation_fraction=0.2, patience=1),
        _train_config(30),
        images[:96],
        labels[:96],
        10,
        jax.random.key(0),
        validation=(images[96:], labels[96:]),
    )
    accuracies = [record["validation_accuracy"] for record in result.history]
    assert len(accuracies) < 30
    # It stopped one epoch after its best, which no later epoch beat.
    assert result.selected_epoch == len(accuracies) - 1
    assert accuracies[-1] <= accuracies[-2]


def _controller(**changes):
    block = adamixup.default_config()
    block.controller = "gap"
    block.update(changes)
    return adamixup.make(block, TrainingLength(10, 1))


def test_adaptive_controller_moves_by_gain_times_gap_error_within_bounds():
    ada = _controller(target_gap=0.05, controller_gain=2.0, m_min=0.1, m_max=0.4)
    assert ada.validation_fraction == 0.1 and ada.initial_control() == 0.5
    # gap 0.15, error 0.10, step +0.20 from 0.15 -> 0.35
    assert ada.next_control(0.15, 0.95, 0.80) == pytest.approx(0.35)
    # gap 0.0, error -0.05, step -0.10 from 0.3 -> 0.2
    assert ada.next_control(0.3, 0.9, 0.9) == pytest.approx(0.2)
    assert ada.next_control(0.35, 1.0, 0.5) == 0.4  # clipped at m_max
    assert ada.next_control(0.12, 0.5, 0.9) == 0.1  # clipped at m_min
    plain = adamixup.make(adamixup.default_config(), TrainingLength(10, 1))
    assert plain.validation_fraction == 0.0
    assert plain.next_control(0.3, 1.0, 0.0) == 0.3


def test_adaptive_controller_mixes_at_the_controlled_strength():
    ada = _controller(pairing="different_class")  # the partner of 0 is always 1
    inputs = jnp.stack([jnp.zeros((2, 2, 1)), jnp.ones((2, 2, 1))])
    mixed, _, strength = ada.prepare_batch(
        jax.random.key(0),
        inputs,
        jnp.array([0, 1]),
        2,
        jnp.int32(0),
        control=jnp.float32(0.2),
    )
    assert float(strength) == pytest.approx(0.2)
    np.testing.assert_allclose(mixed[0], 0.2)  # 0.8 * 0 + 0.2 * 1
    np.testing.assert_allclose(mixed[1], 0.8)  # 0.8 * 1 + 0.2 * 0


def test_adaptive_controller_history_follows_the_measured_gap():
    images, labels = _digits(120)
    ada = _controller(target_gap=0.0, controller_gain=0.5)
    result = training.train_one(
        _tiny_model(),
        ada,
        _train_config(4),
        images[:100],
        labels[:100],
        10,
        jax.random.key(0),
        validation=(images[100:], labels[100:]),
    )
    control = 0.5
    for record in result.history:
        assert record["mixing_strength"] == pytest.approx(control, abs=1e-6)
        control = min(max(control + 0.5 * record["validation_gap"], 0.0), 0.5)
        assert record["next_control"] == pytest.approx(control)


def _guard(confidence=0.9):
    block = memguard.default_config()
    block.confidence = confidence
    return memguard.make(block, TrainingLength(1, 1))


@hypothesis.settings(deadline=None, max_examples=60)
@hypothesis.given(
    logits=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=3, min_side=2, max_side=6),
        elements=hypothesis.strategies.floats(-50, 50, width=32, allow_subnormal=False),
    ),
    confidence=hypothesis.strategies.floats(0.51, 0.99),
)
def test_memguard_never_changes_the_predicted_label(logits, confidence):
    guarded = np.asarray(_guard(confidence).transform_outputs(jnp.asarray(logits)))
    np.testing.assert_array_equal(guarded.argmax(-1), logits.argmax(-1))
    probabilities = np.asarray(jax.nn.softmax(guarded))
    np.testing.assert_allclose(probabilities.max(-1), confidence, rtol=1e-5)


def test_memguard_answers_are_the_same_vector_up_to_the_label():
    logits = jnp.array([[9.0, 0.0, -3.0], [0.1, 0.3, 0.2], [-1.0, 5.0, 4.9]])
    probabilities = np.asarray(jax.nn.softmax(_guard(0.8).transform_outputs(logits)))
    np.testing.assert_allclose(
        probabilities,
        [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]],
        rtol=1e-6,
    )


def test_memguard_refuses_a_confidence_that_could_lose_the_label():
    block = memguard.default_config()
    block.confidence = 0.3
    memguard.check_config(block)
    with pytest.raises(ValueError, match="memguard.confidence"):
        memguard.check_against_data(block, 100, 3)  # 0.3 < 1/3
    memguard.check_against_data(block, 100, 4)  # 0.3 > 1/4


def test_memguard_refuses_a_confidence_float32_cannot_separate_from_the_rest():
    block = memguard.default_config()
    block.confidence = 0.10000001
    with pytest.raises(ValueError, match="memguard.confidence"):
        memguard.check_against_data(block, 100, 10)


def test_adaptive_controller_must_start_inside_its_bounds():
    block = adamixup.default_config()
    block.controller = "gap"
    block.m_max = 0.1  # m_start is 0.5
    with pytest.raises(ValueError, match="adamixup.m_start"):
        adamixup.check_config(block)
    block.controller = "none"  # the schedule ignores the bounds
    adamixup.check_config(block)


def test_validation_split_keeps_the_pools_random_order():
    from adamixup_jax import pipeline

    config = pipeline.default_config()
    pool = np.random.default_rng(0).permutation(1000)[:200]
    trained, held_out = pipeline._validation_split(config, pool, 0.2)
    assert len(held_out) == 40 and len(trained) == 160
    assert not set(trained) & set(held_out) and set(trained) | set(held_out) == set(
        pool
    )
    # Subsequences of the pool, in its order: never re-sorted by dataset index.
    position = {index: rank for rank, index in enumerate(pool)}
    assert np.all(np.diff([position[i] for i in trained]) > 0)
    assert not np.all(np.diff(trained) > 0)

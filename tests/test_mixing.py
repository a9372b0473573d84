"""Mixing math: convex combinations, label allocation, schedules, pairing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adamixup_jax import mixing
from adamixup_jax.defenses import TrainingLength, adamixup, mixup


def test_mixed_input_is_the_stated_convex_combination():
    x = jnp.array([[[[0.0]], [[1.0]]], [[[10.0]], [[20.0]]]])  # [2, 2, 1, 1]
    partner = x[::-1]
    strength = jnp.array([0.25, 0.5])
    mixed = mixing.mix_inputs(x, partner, strength)
    expected = np.array(
        [
            [0.75 * 0 + 0.25 * 10, 0.75 * 1 + 0.25 * 20],
            [0.5 * 10 + 0.5 * 0, 0.5 * 20 + 0.5 * 1],
        ]
    )
    np.testing.assert_allclose(np.asarray(mixed)[..., 0, 0], expected)


def test_dominant_label_is_the_heavier_samples():
    own = jax.nn.one_hot(jnp.array([0, 1, 2]), 3)
    partner = jax.nn.one_hot(jnp.array([2, 2, 0]), 3)
    strength = jnp.array(
        [0.3, 0.5, 0.8]
    )  # own heavier, tie (own kept), partner heavier
    targets = mixing.allocate_labels(own, partner, strength, "dominant")
    np.testing.assert_array_equal(np.argmax(targets, -1), [0, 1, 0])
    np.testing.assert_array_equal(np.asarray(targets).sum(-1), [1, 1, 1])


def test_soft_label_is_the_convex_combination():
    own = jax.nn.one_hot(jnp.array([0]), 2)
    partner = jax.nn.one_hot(jnp.array([1]), 2)
    targets = mixing.allocate_labels(own, partner, jnp.array([0.3]), "soft")
    np.testing.assert_allclose(np.asarray(targets), [[0.7, 0.3]], rtol=1e-6)


@pytest.mark.parametrize(
    "schedule, first, middle, last",
    [
        ("linear", 0.5, 0.25, 0.0),
        ("cosine", 0.5, 0.25, 0.0),
        ("step", 0.5, 0.0, 0.0),
        ("constant", 0.5, 0.5, 0.5),
    ],
)
def test_schedule_at_first_middle_last_epoch(schedule, first, middle, last):
    # 11 epochs: epoch 5 is the exact middle; with step_fraction=0.4 'step' switches
    # after epoch 4.
    values = [
        float(mixing.scheduled_strength(schedule, e, 11, 0.5, 0.0, step_fraction=0.4))
        for e in (0, 5, 10)
    ]
    np.testing.assert_allclose(values, [first, middle, last], atol=1e-6)


def test_cosine_is_slow_at_the_ends():
    values = [
        float(mixing.scheduled_strength("cosine", e, 101, 0.5, 0.0))
        for e in (0, 1, 50, 51)
    ]
    assert values[0] - values[1] < (values[2] - values[3]) / 10


@settings(deadline=None, max_examples=30)
@given(
    schedule=st.sampled_from(mixing.SCHEDULES),
    m_start=st.floats(0, 0.5),
    m_end=st.floats(0, 0.5),
    num_epochs=st.integers(1, 300),
    epoch_share=st.floats(0, 1),
)
def test_schedule_stays_between_its_end_points(
    schedule, m_start, m_end, num_epochs, epoch_share
):
    epoch = int(epoch_share * (num_epochs - 1))
    value = float(
        mixing.scheduled_strength(schedule, epoch, num_epochs, m_start, m_end)
    )
    assert min(m_start, m_end) - 1e-6 <= value <= max(m_start, m_end) + 1e-6


def test_permutation_pairing_is_a_permutation():
    partner = mixing.partners(
        jax.random.key(0), jnp.zeros(64, jnp.int32), "permutation"
    )
    assert sorted(np.asarray(partner).tolist()) == list(range(64))


def test_different_class_pairing_never_pairs_a_class_with_itself():
    labels = jnp.array([0, 0, 0, 1, 2, 2, 1, 0] * 4)
    for seed in range(5):
        partner = np.asarray(
            mixing.partners(jax.random.key(seed), labels, "different_class")
        )
        assert np.all(np.asarray(labels)[partner] != np.asarray(labels))


def test_different_class_pairing_falls_back_when_batch_has_one_class():
    partner = mixing.partners(
        jax.random.key(0), jnp.ones(8, jnp.int32), "different_class"
    )
    assert sorted(np.asarray(partner).tolist()) == list(range(8))


def _adamixup(**overrides):
    config = adamixup.default_config()
    config.update(overrides)
    return adamixup.make(config, TrainingLength(num_epochs=3, steps_per_epoch=10))


def test_adamixup_batch_mixes_with_the_epochs_strength_and_dominant_labels():
    defense = _adamixup()
    images = jax.random.uniform(jax.random.key(1), (16, 4, 4, 1))
    labels = jnp.arange(16) % 4
    key = jax.random.key(2)
    for step, expected in ((0, 0.5), (10, 0.25), (29, 0.0)):
        mixed, targets, strength = defense.prepare_batch(
            key, images, labels, 4, jnp.array(step)
        )
        assert float(strength) == pytest.approx(expected, abs=1e-6)
        partner = mixing.partners(jax.random.split(key)[0], labels, "permutation")
        np.testing.assert_allclose(
            mixed, (1 - expected) * images + expected * images[partner], atol=1e-6
        )
        np.testing.assert_array_equal(np.argmax(targets, -1), labels)


def test_adamixup_jitter_stays_in_range_and_varies():
    defense = _adamixup(jitter=0.3, m_start=0.4)
    images = jnp.eye(64).reshape(64, 8, 8, 1)
    mixed, _, _ = defense.prepare_batch(
        jax.random.key(3), images, jnp.arange(64), 64, jnp.array(0)
    )
    own_weight = np.asarray(mixed).reshape(64, 64)[np.arange(64), np.arange(64)]
    assert np.all(own_weight >= 0.5 - 1e-6) and np.all(own_weight <= 1.0 + 1e-6)
    assert np.std(own_weight) > 0.05


def test_mixup_uses_soft_labels_that_match_the_input_weights():
    defense = mixup.make(mixup.default_config(), TrainingLength(1, 1))
    images = jnp.eye(8).reshape(8, 8, 1, 1)
    labels = jnp.arange(8)
    mixed, targets, _ = defense.prepare_batch(
        jax.random.key(0), images, labels, 8, jnp.array(0)
    )
    # With one-hot images and labels the mixed image *is* the soft label.
    np.testing.assert_allclose(
        np.asarray(mixed).reshape(8, 8), np.asarray(targets), atol=1e-6
    )


def test_label_smoothing_targets_are_the_stated_mixture():
    from adamixup_jax.defenses import label_smoothing

    config = label_smoothing.default_config()
    config.epsilon = 0.2
    defense = label_smoothing.make(config, TrainingLength(1, 1))
    images = jnp.ones((2, 2, 2, 1))
    inputs, targets, strength = defense.prepare_batch(
        jax.random.key(0), images, jnp.array([0, 3]), 4, jnp.array(0)
    )
    np.testing.assert_allclose(
        targets, [[0.85, 0.05, 0.05, 0.05], [0.05, 0.05, 0.05, 0.85]], rtol=1e-6
    )
    np.testing.assert_array_equal(inputs, images)
    assert float(strength) == 0.0

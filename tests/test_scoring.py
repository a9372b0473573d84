"""Scoring many models: augmented queries and the [models, examples, queries, classes]
logits, in inference mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamixup_jax import models, scoring, training


def test_transforms_flip_and_shift_with_black_fill():
    x = jnp.arange(9).reshape(1, 3, 3, 1)
    np.testing.assert_array_equal(
        scoring.transform(x, False, 1, 0)[0, :, :, 0], [[0, 0, 0], [0, 1, 2], [3, 4, 5]]
    )
    np.testing.assert_array_equal(
        scoring.transform(x, True, 0, 0)[0, :, :, 0], [[2, 1, 0], [5, 4, 3], [8, 7, 6]]
    )
    np.testing.assert_array_equal(
        scoring.transform(x, False, 0, -1)[0, :, :, 0],
        [[1, 2, 0], [4, 5, 0], [7, 8, 0]],
    )


def test_query_list_starts_with_identity_and_respects_flip():
    assert scoring.query_transforms(1, False, 0) == [(False, 0, 0)]
    assert scoring.query_transforms(3, False, 2) == [
        (False, 0, 0),
        (False, 2, 0),
        (False, -2, 0),
    ]
    assert scoring.query_transforms(2, True, 1)[1] == (True, 0, 0)
    with pytest.raises(ValueError, match="scoring.num_queries"):
        scoring.query_transforms(3, False, 0)


def test_logits_many_has_one_slice_per_model_and_query_in_inference_mode():
    config = models.default_config()
    config.width = 4
    config.dense = 8
    config.norm = "batch"
    model = models.create(config, 3)
    tx = training.make_optimizer(training.default_config(), 1)
    keys = jax.random.split(jax.random.key(0), 2)
    state = jax.vmap(lambda k: training.init_state(model, tx, k, (28, 28, 1)))(keys)
    state = state.replace(
        batch_stats=jax.tree.map(lambda v: v + 2.0, state.batch_stats)
    )
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28, 1), dtype=np.uint8)
    queries = scoring.query_transforms(3, False, 1)
    logits = scoring.logits_many(model, state, images, queries, batch_size=4)
    assert logits.shape == (2, 7, 3, 3) and logits.dtype == np.float32
    predict = training.make_predict_fn(model)
    for m in range(2):
        one = jax.tree.map(lambda leaf: leaf[m], state)
        shifted = np.asarray(scoring.transform(jnp.asarray(images), *queries[2]))
        expected = training.predict_logits(predict, one, shifted, batch_size=7)
        np.testing.assert_allclose(logits[m, :, 2], expected, rtol=1e-4, atol=1e-5)


def test_lira_layout_round_trips_with_the_reference_shapes(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 6, 2, 3)).astype(np.float32)
    keep = np.array([[1, 0, 1, 0, 1, 0]] * 2 + [[0, 1, 0, 1, 0, 1]] * 2, bool)
    labels = np.array([0, 1, 2, 0, 1, 2])
    scoring.export_lira_layout(str(tmp_path), logits, keep, labels, epochs=100)
    one = np.load(tmp_path / "experiment-2_4" / "logits" / "0000000100.npy")
    assert one.shape == (6, 1, 2, 3)  # [examples, 1, queries, classes]
    np.testing.assert_array_equal(
        np.load(tmp_path / "experiment-2_4" / "keep.npy"), keep[2]
    )
    back_logits, back_keep, back_labels = scoring.import_lira_layout(str(tmp_path))
    np.testing.assert_array_equal(back_logits, logits)
    np.testing.assert_array_equal(back_keep, keep)
    np.testing.assert_array_equal(back_labels, labels)

"""Models: every conv formulation computes the same function; BatchNorm is in
inference mode when logits are scored."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamixup_jax import models, training


@pytest.mark.parametrize("impl", ["shifted", "patches"])
@pytest.mark.parametrize("in_features", [1, 3])
def test_conv_formulations_match_xla_conv(impl, in_features):
    x = jax.random.normal(jax.random.key(0), (2, 9, 7, in_features))
    reference = models.Conv3x3(5, impl="xla")
    variables = reference.init(jax.random.key(1), x)
    expected = reference.apply(variables, x)
    got = models.Conv3x3(5, impl=impl).apply(variables, x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_conv_matches_a_hand_computed_3x3_sum():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    kernel = (
        jnp.zeros((3, 3, 1, 1)).at[0, 2, 0, 0].set(1.0)
    )  # picks the up-right neighbour
    variables = {"params": {"kernel": kernel, "bias": jnp.array([0.5])}}
    y = models.Conv3x3(1, impl="shifted").apply(variables, x)[0, :, :, 0]
    assert float(y[1, 1]) == 2.0 + 0.5  # x[0, 2]
    assert float(y[0, 0]) == 0.5  # out of the padded border


def test_max_pool_takes_the_max_of_each_2x2_block():
    x = jnp.array([[1.0, 5.0, 2.0], [3.0, 4.0, 9.0], [7.0, 0.0, 8.0]]).reshape(
        1, 3, 3, 1
    )
    np.testing.assert_array_equal(models.max_pool_2x2(x)[0, :, :, 0], [[5.0]])


def test_auto_impl_is_shifted_on_cpu_and_unknown_impl_is_refused():
    assert jax.default_backend() == "cpu"
    assert models.resolve_conv_impl("auto") == "shifted"
    with pytest.raises(ValueError, match="model.conv_impl"):
        models.resolve_conv_impl("fft")


@pytest.mark.parametrize(
    "name, shape",
    [
        ("mnist_cnn", (28, 28, 1)),
        ("cifar_cnn", (32, 32, 3)),
        ("cifar_cnn", (96, 96, 3)),
    ],
)
def test_models_give_logits_per_class(name, shape):
    config = models.default_config()
    config.name = name
    config.width = 8
    model = models.create(config, num_classes=7)
    x = jnp.zeros((3, *shape))
    variables = model.init(jax.random.key(0), x)
    assert model.apply(variables, x).shape == (3, 7)


def test_unknown_model_is_refused_naming_the_key():
    config = models.default_config()
    config.name = "resnet9000"
    with pytest.raises(ValueError, match="model.name"):
        models.create(config, 10)


def test_scores_use_batchnorm_in_inference_mode():
    config = models.default_config()
    config.norm = "batch"
    config.width = 4
    model = models.create(config, 3)
    images = np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), dtype=np.uint8)
    tx = training.make_optimizer(training.default_config(), 1)
    state = training.init_state(model, tx, jax.random.key(0), images.shape[1:])
    # Running statistics far from the batch statistics: train and inference modes differ.
    state = state.replace(
        batch_stats=jax.tree.map(lambda v: v + 3.0, state.batch_stats)
    )
    predict = training.make_predict_fn(model)
    scored = training.predict_logits(predict, state, images, batch_size=8)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    x = (images.astype(np.float32) / 255 - 0.5) / 0.5
    inference = model.apply(variables, x, train=False)
    train_mode, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert not np.allclose(inference, train_mode, atol=1e-3)
    np.testing.assert_allclose(scored, inference, rtol=1e-5, atol=1e-5)

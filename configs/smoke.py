"""Smoke preset: the whole quickstart pipeline in seconds, for tests; numbers are
meaningless at this size.

    python experiments/run.py --config=configs/smoke.py --workdir=/tmp/smoke
"""

from adamixup_jax import pipeline


def get_config():
    config = pipeline.default_config()
    config.data.name = "mnist5k"
    config.model.name = "mnist_cnn"
    config.model.width = 4
    config.model.dense = 16
    config.split.num_target_members = 64
    config.split.num_target_nonmembers = 64
    config.split.num_population = 128
    config.train.epochs = 2
    config.train.batch_size = 32
    config.train.eval_batch_size = 64
    config.train.progress = False
    config.defenses = "erm,adamixup"
    config.shadows.num_models = 4
    config.shadows.pool_size = 64
    config.shadows.num_targets = 2
    config.scoring.num_queries = 2
    config.attack.shokri.epochs = 20
    config.attack.lira.fixed_variance = (
        True  # Two IN shadows per example are too few otherwise.
    )
    return config

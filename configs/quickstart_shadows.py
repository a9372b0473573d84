"""Quickstart plus shadow-model attacks: ERM vs AdaMixup on mnist5k, every threshold
attack, and LiRA (online/offline), RMIA and Shokri on a batch of 16 models per defense
trained as one program.

    python experiments/run.py --config=configs/quickstart_shadows.py --workdir=runs/shadows
"""

from adamixup_jax import pipeline


def get_config():
    config = pipeline.default_config()
    config.data.name = "mnist5k"
    config.split.num_target_members = 250
    config.split.num_target_nonmembers = 2000
    config.split.num_population = 2250
    config.train.epochs = 100
    config.defenses = "erm,adamixup"
    config.shadows.num_models = 16
    config.shadows.pool_size = 500  # Each model trains on 250, like the target.
    config.shadows.num_targets = 4
    config.scoring.num_queries = 3  # Identity and two 2-pixel shifts.
    return config

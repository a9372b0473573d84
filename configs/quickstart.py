"""Quickstart: ERM vs AdaMixup on the embedded mnist5k digits, every threshold attack.

    python experiments/run.py --config=configs/quickstart.py --workdir=runs/quickstart

About 5 minutes on a 2-core CPU: four models (a target and an attacker's reference
model per defense), 500 members each.
"""

from adamixup_jax import pipeline


def get_config():
    config = pipeline.default_config()
    config.data.name = "mnist5k"
    config.model.name = "mnist_cnn"
    config.split.num_target_members = 500
    config.split.num_target_nonmembers = 500
    config.split.num_population = 1000  # The reference model trains on 500 of these.
    config.train.epochs = 60
    config.defenses = "erm,adamixup"
    return config

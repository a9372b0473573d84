"""Quickstart: ERM vs AdaMixup on the embedded mnist5k digits, every threshold attack.

    python experiments/run.py --config=configs/quickstart.py --workdir=runs/quickstart

Four models (a target and the attacker's reference model per defense), 250 members
each, 100 epochs: small member sets make even MNIST attackable. 2,000 non-members
give TPR at 0.1% FPR a resolution of two examples.
"""

from adamixup_jax import pipeline


def get_config():
    config = pipeline.default_config()
    config.data.name = "mnist5k"
    config.model.name = "mnist_cnn"
    config.split.num_target_members = 250
    config.split.num_target_nonmembers = 2000
    config.split.num_population = 2250  # The reference model trains on 250 of these.
    config.train.epochs = 100
    config.defenses = "erm,adamixup"
    return config

"""Full MNIST from tfds (70,000 digits; downloads on first use, then cached as .npz).

python experiments/run.py --config=configs/mnist.py --workdir=runs/mnist
"""

from adamixup_jax import pipeline


def get_config():
    config = pipeline.default_config()
    config.data.name = "mnist"
    config.data.tfds_splits = "train+test"
    config.model.name = "mnist_cnn"
    # Small member sets keep MNIST attackable: it generalises well.
    config.split.num_target_members = 2500
    config.split.num_target_nonmembers = 2500
    config.split.num_population = 5000
    config.train.epochs = 60
    config.train.batch_size = 128
    return config

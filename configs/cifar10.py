"""CIFAR-10 from tfds (60,000 32x32 colour images; downloads on first use).

python experiments/run.py --config=configs/cifar10.py --workdir=runs/cifar10
"""

from adamixup_jax import pipeline


def get_config():
    config = pipeline.default_config()
    config.data.name = "cifar10"
    config.data.tfds_splits = "train+test"
    config.model.name = "cifar_cnn"
    config.model.width = 32
    config.model.dense = 256
    config.split.num_target_members = 10000
    config.split.num_target_nonmembers = 10000
    config.split.num_population = 20000
    config.train.epochs = 100
    config.train.batch_size = 128
    config.train.learning_rate = 0.05
    return config

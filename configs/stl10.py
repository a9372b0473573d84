"""STL-10 labeled images from tfds (5,000 train + 8,000 test, 96x96 colour; the
100,000 unlabeled images are never used).

    python experiments/run.py --config=configs/stl10.py --workdir=runs/stl10
"""

from adamixup_jax import pipeline


def get_config():
    config = pipeline.default_config()
    config.data.name = "stl10"
    config.data.tfds_splits = "train+test"
    config.model.name = "cifar_cnn"
    config.model.width = 32
    config.model.dense = 256
    config.split.num_target_members = 3000
    config.split.num_target_nonmembers = 3000
    config.split.num_population = 6000
    config.train.epochs = 100
    config.train.batch_size = 64
    return config

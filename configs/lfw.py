"""LFW faces as identity classification: people with at least 20 images, the 50 most
photographed, resized to 64x64. From tfds (downloads on first use) or, with
`--config.data.root=DIR`, a local copy in LFW's own layout
(`DIR/<Person_Name>/<Person_Name>_0001.jpg`).

    python experiments/run.py --config=configs/lfw.py --workdir=runs/lfw
"""

from adamixup_jax import pipeline


def get_config():
    config = pipeline.default_config()
    config.data.name = "lfw"
    config.data.min_images_per_person = 20
    config.data.num_classes = 50
    config.data.image_size = 64
    config.model.name = "cifar_cnn"
    config.model.width = 32
    config.model.dense = 256
    # The 62 people with >= 20 images have about 3,000 faces; the top 50 somewhat fewer.
    config.split.num_target_members = 600
    config.split.num_target_nonmembers = 600
    config.split.num_population = 1200
    config.train.epochs = 80
    config.train.batch_size = 64
    return config

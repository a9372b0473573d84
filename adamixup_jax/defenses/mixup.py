"""`mixup` (Zhang et al. 2018): fixed-distribution mixing, lambda ~ Beta(alpha, alpha)
drawn per sample, soft labels. The fixed-ratio baseline AdaMixup is compared with."""

import dataclasses

import jax
import ml_collections

from adamixup_jax import mixing
from adamixup_jax.defenses.base import DefenseBase, TrainingLength


def default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.alpha = 1.0  # Beta(alpha, alpha) for lambda; 1.0 is uniform on [0, 1].
    config.pairing = "permutation"  # 'permutation' or 'different_class'.
    return config


@dataclasses.dataclass(frozen=True)
class Mixup(DefenseBase):
    alpha: float
    pairing: str
    name: str = "mixup"

    def prepare_batch(self, key, inputs, labels, num_classes, step, control=None):
        del step
        pair_key, strength_key = jax.random.split(key)
        partner = mixing.partners(pair_key, labels, self.pairing)
        # m = 1 - lambda has the same Beta(alpha, alpha) law, since it is symmetric.
        strength = jax.random.beta(strength_key, self.alpha, self.alpha, labels.shape)
        targets = jax.nn.one_hot(labels, num_classes)
        mixed = mixing.mix_inputs(inputs, inputs[partner], strength)
        mixed_targets = mixing.allocate_labels(
            targets, targets[partner], strength, "soft"
        )
        return mixed, mixed_targets, strength.mean()

    def mixing_strength(self, epoch: int) -> float | None:
        return 0.5  # The mean of Beta(alpha, alpha), whatever alpha.


def make(config: ml_collections.ConfigDict, length: TrainingLength) -> Mixup:
    del length
    return Mixup(alpha=float(config.alpha), pairing=config.pairing)

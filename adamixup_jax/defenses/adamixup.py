"""`adamixup`: mixup whose mixing strength follows a schedule over training, strong
early and weak late, with the label allocated to the dominant sample.

Our reading of AdaMixup (Chen et al. 2025; only its abstract could be read): the
mixing strength m (weight of the minority sample, lambda = 1 - m) starts high to
regularise while the model would otherwise begin memorising, then decays so the
model converges on nearly clean samples; each mixed sample keeps the hard label of
its heavier component. Every part of that reading is a config key below.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from adamixup_jax import mixing
from adamixup_jax.defenses.base import TrainingLength


def default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Schedule of the mixing strength m in [0, 0.5] over epochs:
    # 'linear' (default), 'cosine', 'step' or 'constant'.
    config.schedule = "linear"
    config.m_start = 0.5  # m at the first epoch (0.5 = equal mix).
    config.m_end = 0.0  # m at the last epoch (0 = clean samples).
    config.step_fraction = 0.5  # 'step' only: share of epochs spent at m_start.
    # Per-sample jitter: m_i = clip(m + jitter * u, 0, 0.5), u ~ Uniform(-1, 1).
    config.jitter = 0.0
    # 'dominant' (the heavier sample's hard label; default) or 'soft' (mixed labels).
    config.label_allocation = "dominant"
    # 'permutation' of the batch (default) or 'different_class' partners only.
    config.pairing = "permutation"
    return config


@dataclasses.dataclass(frozen=True)
class AdaMixup:
    schedule: str
    m_start: float
    m_end: float
    step_fraction: float
    jitter: float
    label_allocation: str
    pairing: str
    length: TrainingLength
    name: str = "adamixup"

    def _scheduled(self, epoch) -> jax.Array:
        return mixing.scheduled_strength(
            self.schedule,
            epoch,
            self.length.num_epochs,
            self.m_start,
            self.m_end,
            self.step_fraction,
        )

    def prepare_batch(self, key, inputs, labels, num_classes, step):
        pair_key, jitter_key = jax.random.split(key)
        partner = mixing.partners(pair_key, labels, self.pairing)
        strength = jnp.full(labels.shape, self._scheduled(self.length.epoch_of(step)))
        if self.jitter > 0:
            noise = jax.random.uniform(
                jitter_key, labels.shape, minval=-1.0, maxval=1.0
            )
            strength = jnp.clip(strength + self.jitter * noise, 0.0, 0.5)
        targets = jax.nn.one_hot(labels, num_classes)
        mixed = mixing.mix_inputs(inputs, inputs[partner], strength)
        mixed_targets = mixing.allocate_labels(
            targets, targets[partner], strength, self.label_allocation
        )
        return mixed, mixed_targets, strength.mean()

    def mixing_strength(self, epoch: int) -> float | None:
        return float(self._scheduled(epoch))


def make(config: ml_collections.ConfigDict, length: TrainingLength) -> AdaMixup:
    return AdaMixup(
        schedule=config.schedule,
        m_start=float(config.m_start),
        m_end=float(config.m_end),
        step_fraction=float(config.step_fraction),
        jitter=float(config.jitter),
        label_allocation=config.label_allocation,
        pairing=config.pairing,
        length=length,
    )

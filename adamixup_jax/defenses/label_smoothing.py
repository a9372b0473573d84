"""`label_smoothing`: train on (1 - epsilon) * one_hot + epsilon / classes, a baseline
that lowers the model's confidence on its training examples without mixing inputs."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from adamixup_jax.defenses.base import DefenseBase, TrainingLength


def default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.epsilon = 0.1  # Probability mass spread uniformly over all classes.
    return config


@dataclasses.dataclass(frozen=True)
class LabelSmoothing(DefenseBase):
    epsilon: float
    name: str = "label_smoothing"

    def prepare_batch(self, key, inputs, labels, num_classes, step, control=None):
        del key, step
        targets = jax.nn.one_hot(labels, num_classes)
        smoothed = (1.0 - self.epsilon) * targets + self.epsilon / num_classes
        return inputs, smoothed, jnp.zeros((), jnp.float32)

    def mixing_strength(self, epoch: int) -> float | None:
        return None


def make(config: ml_collections.ConfigDict, length: TrainingLength) -> LabelSmoothing:
    del length
    return LabelSmoothing(epsilon=float(config.epsilon))

"""`erm`: plain empirical risk minimisation, no defense; the undefended baseline."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from adamixup_jax.defenses.base import TrainingLength


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict()


@dataclasses.dataclass(frozen=True)
class Erm:
    name: str = "erm"

    def prepare_batch(self, key, inputs, labels, num_classes, step):
        del key, step
        return inputs, jax.nn.one_hot(labels, num_classes), jnp.zeros((), jnp.float32)

    def mixing_strength(self, epoch: int) -> float | None:
        return None


def make(config: ml_collections.ConfigDict, length: TrainingLength) -> Erm:
    del config, length
    return Erm()

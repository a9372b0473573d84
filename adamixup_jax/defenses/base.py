"""What a training-time defense is: it turns a clean batch into training inputs and
targets. Defenses see a batch and the training length, never the attacks."""

import dataclasses
from typing import Protocol

import jax


@dataclasses.dataclass(frozen=True)
class TrainingLength:
    """How long the run is, so schedules can be written per epoch."""

    num_epochs: int
    steps_per_epoch: int

    def epoch_of(self, step: jax.Array) -> jax.Array:
        return step // self.steps_per_epoch


class Defense(Protocol):
    name: str

    def prepare_batch(
        self,
        key: jax.Array,
        inputs: jax.Array,
        labels: jax.Array,
        num_classes: int,
        step: jax.Array,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Returns (training inputs `[batch, H, W, C]`, targets `[batch, classes]`,
        the mean mixing strength of the batch as a scalar, 0 for no mixing). Pure."""
        ...

    def mixing_strength(self, epoch: int) -> float | None:
        """The scheduled mixing strength at `epoch` for logging, or None."""
        ...

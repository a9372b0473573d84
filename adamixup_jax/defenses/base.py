"""What a defense is. Defenses see a batch, a loss and gradients, never the attacks.

A defense may act at five points of training and scoring; `DefenseBase` gives every
hook its neutral default, so a defense overrides only the ones it uses:

- `prepare_batch`: turn the clean batch into training inputs and targets (mixing);
- `loss`: the training loss from the logits (default: weighted cross-entropy), with
  the logits of a batch of the validation slice when `validation_fraction > 0`;
- `aggregate_gradients`: with `per_example_gradients`, combine the per-example
  gradients into one update direction (clipping and noise for DP-SGD);
- `next_control` / `initial_control`: a scalar the defense steers between epochs
  from the train and validation accuracy (the adaptive AdaMixup controller);
- `transform_outputs`: change the logits a querier sees (MemGuard).

All hooks that run inside the compiled step are pure functions of their inputs.
"""

import dataclasses

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class TrainingLength:
    """How long the run is, so schedules can be written per epoch."""

    num_epochs: int
    steps_per_epoch: int
    num_examples: int = 0  # Training examples per epoch (0 where not known).
    batch_size: int = 0  # Examples per step (0 where not known).

    def epoch_of(self, step: jax.Array) -> jax.Array:
        return step // self.steps_per_epoch


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    """Mean of `values` [batch] over the examples of weight > 0 (padding has 0)."""
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


class DefenseBase:
    """Neutral defaults for every hook; a defense subclasses this."""

    name: str = "defense"
    # Share of the training pool held out as the defense's validation slice (never
    # trained on as members, never the attack's non-member set).
    validation_fraction: float = 0.0
    # Keep the parameters of the epoch with the best validation accuracy.
    select_best_epoch: bool = False
    # With `select_best_epoch`: stop after this many epochs without a better
    # validation accuracy (0 = train every epoch, then select).
    patience: int = 0
    # Compute one gradient per example and hand them to `aggregate_gradients`.
    per_example_gradients: bool = False

    def prepare_batch(self, key, inputs, labels, num_classes, step, control=None):
        """Returns (training inputs `[batch, H, W, C]`, targets `[batch, classes]`,
        the mean mixing strength of the batch as a scalar, 0 for no mixing)."""
        del key, step, control
        targets = jax.nn.one_hot(labels, num_classes)
        return inputs, targets, jnp.zeros((), jnp.float32)

    def loss(self, logits, targets, labels, weights, step, validation):
        """Scalar training loss. `validation` is None, or (logits, labels) of a batch
        of the validation slice computed with the same parameters."""
        del labels, step, validation
        return weighted_mean(optax.softmax_cross_entropy(logits, targets), weights)

    def aggregate_gradients(self, per_example, weights, key):
        """With `per_example_gradients`: per-example gradients (a pytree whose leaves
        have a leading batch axis) and weights [batch] -> one gradient pytree."""
        del key
        return jax.tree.map(
            lambda g: (
                jnp.tensordot(weights, g, axes=1) / jnp.maximum(jnp.sum(weights), 1.0)
            ),
            per_example,
        )

    def initial_control(self) -> float:
        """The controlled scalar at epoch 0 (unused by most defenses)."""
        return 0.0

    def next_control(self, control: float, train_accuracy, validation_accuracy):
        """The controlled scalar for the next epoch, from this epoch's accuracies."""
        del train_accuracy, validation_accuracy
        return control

    def transform_outputs(self, logits: jax.Array) -> jax.Array:
        """Logits `[..., classes]` as the querier sees them (identity by default)."""
        return logits

    def mixing_strength(self, epoch: int) -> float | None:
        """The scheduled mixing strength at `epoch` for logging, or None."""
        del epoch
        return None

    def privacy_spent(self, num_examples: int, batch_size: int, num_steps: int):
        """A dict of the run's privacy guarantee (epsilon, delta), or None."""
        del num_examples, batch_size, num_steps


Defense = DefenseBase

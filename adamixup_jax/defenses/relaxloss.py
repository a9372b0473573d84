"""`relaxloss` (Chen et al. 2022): keep the training loss near a target level instead
of driving it to zero, so members do not end with much lower loss than non-members.

Our reading, as implemented in `RelaxLoss.loss`, with L the batch's weighted mean
cross-entropy and alpha the target level:

| case                                  | loss                                  |
|---------------------------------------|---------------------------------------|
| L >= alpha                            | L (ordinary descent)                  |
| L < alpha, epoch % ascent_period == 0 | alpha - L (ascent; grad of abs(L - alpha)) |
| L < alpha, other epochs               | cross-entropy against flattened targets |

Flattened target ("posterior flattening"): a correctly classified example keeps the
model's own probability p_y of its true class (stop-gradient) and spreads 1 - p_y
evenly over the other K - 1 classes, so training makes the non-true classes equally
likely without moving p_y; a misclassified example keeps its one-hot target.
The case is chosen per batch from the value of L, so a step is either all descent,
all ascent or all flattening. Needs at least two classes.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections
import optax

from adamixup_jax.defenses.base import DefenseBase, TrainingLength, weighted_mean


def default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Target mean training cross-entropy (> 0). Our choice for MNIST-sized CNNs: 0.5
    # (a mean true-class probability near 0.6) sits above the loss such a model
    # reaches on unseen digits, so members cannot end far below non-members, while
    # the true class stays well ahead of the other nine. Larger: more privacy, less
    # accuracy; tune it per dataset.
    config.alpha = 0.5
    # One ascent epoch every `ascent_period` epochs (those with epoch % period == 0);
    # the others flatten the posterior. 2 alternates; 1 never flattens.
    config.ascent_period = 2
    return config


def check_config(block: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first key of the `relaxloss` block that is bad."""
    alpha = block.alpha
    if not (
        isinstance(alpha, (int, float))
        and not isinstance(alpha, bool)
        and math.isfinite(alpha)
        and alpha > 0
    ):
        raise ValueError(f"relaxloss.alpha={alpha!r} must be a finite number > 0")
    period = block.ascent_period
    if not (isinstance(period, int) and not isinstance(period, bool) and period >= 1):
        raise ValueError(f"relaxloss.ascent_period={period!r} must be an integer >= 1")


def flattened_targets(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Posterior-flattening targets `[batch, classes]` (constants for the gradient).

    Correctly classified (argmax == label): p_y on the label, (1 - p_y) / (K - 1)
    elsewhere, with p_y the softmax probability of the label. Misclassified: one-hot.
    """
    num_classes = logits.shape[-1]
    one_hot = jax.nn.one_hot(labels, num_classes)
    true_probability = jnp.sum(jax.nn.softmax(logits) * one_hot, axis=-1)  # [batch]
    spread = (1.0 - true_probability) / (num_classes - 1)
    flattened = jnp.where(one_hot > 0, true_probability[:, None], spread[:, None])
    correct = jnp.argmax(logits, axis=-1) == labels
    return jax.lax.stop_gradient(jnp.where(correct[:, None], flattened, one_hot))


@dataclasses.dataclass(frozen=True)
class RelaxLoss(DefenseBase):
    alpha: float
    ascent_period: int
    length: TrainingLength
    name: str = "relaxloss"

    def loss(self, logits, targets, labels, weights, step, validation):
        del validation
        cross_entropy = weighted_mean(
            optax.softmax_cross_entropy(logits, targets), weights
        )
        flattening = weighted_mean(
            optax.softmax_cross_entropy(logits, flattened_targets(logits, labels)),
            weights,
        )
        ascent_epoch = self.length.epoch_of(step) % self.ascent_period == 0
        relaxed = jnp.where(ascent_epoch, self.alpha - cross_entropy, flattening)
        return jnp.where(cross_entropy >= self.alpha, cross_entropy, relaxed)


def make(config: ml_collections.ConfigDict, length: TrainingLength) -> RelaxLoss:
    return RelaxLoss(
        alpha=float(config.alpha),
        ascent_period=int(config.ascent_period),
        length=length,
    )

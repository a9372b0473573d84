"""`mixup_mmd` (Li et al. 2021): mixup training plus a penalty on the distance between
the model's output distribution on its training batch and on held-out validation data.

Our reading, as implemented: the inputs are mixed exactly as in `mixup` (this class
extends `Mixup`); the loss is the weighted mean mixup cross-entropy plus `mmd_weight`
times a class-conditional MMD². For each class, MMD² (Gaussian kernel, biased
V-statistic) compares the softmax outputs of the training examples of that class with
those of the validation examples of that class; the class of a mixed training sample
is its dominant label, the argmax of its soft target (a tie at exactly 0.5 goes to
the lower class index). Classes present in only one of the two batches are skipped and
the rest averaged. The gradient flows through both sides: the validation logits come
from the same parameters. Every validation example counts (that batch has no padding).

Limitation: the training outputs are those of mixed inputs, so the penalty also pulls
mixed-input outputs towards clean-input outputs, not only members towards
non-members.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections
import optax

from adamixup_jax import mixing
from adamixup_jax.defenses import mixup
from adamixup_jax.defenses.base import TrainingLength, weighted_mean


def default_config() -> ml_collections.ConfigDict:
    config = mixup.default_config()  # alpha and pairing, as in `mixup`.
    # Multiplier of the class-conditional MMD² in the loss (0 = plain mixup). Untuned:
    # MMD² between probability vectors is small, so 1.0 is a starting point.
    config.mmd_weight = 1.0
    # Gaussian kernel exp(-|p - q|² / (2 bandwidth²)) on probability vectors, whose
    # distances are at most sqrt(2): 1.0 keeps the kernel smooth over the simplex.
    config.bandwidth = 1.0
    # Share of the training pool held out as the validation slice the MMD compares
    # with, in (0, 1); never counted as members, they shape the model only through
    # the MMD term (its gradient flows through their outputs too).
    config.validation_fraction = 0.2
    return config


def _is_number(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def check_config(block: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first key of the `mixup_mmd` block that is bad."""
    if not (_is_number(block.alpha) and block.alpha > 0):
        raise ValueError(f"mixup_mmd.alpha={block.alpha!r} must be a finite number > 0")
    if block.pairing not in mixing.PAIRINGS:
        raise ValueError(
            f"mixup_mmd.pairing={block.pairing!r} is not allowed; choose one of "
            f"{mixing.PAIRINGS}"
        )
    if not (_is_number(block.mmd_weight) and block.mmd_weight >= 0):
        raise ValueError(
            f"mixup_mmd.mmd_weight={block.mmd_weight!r} must be a finite number >= 0"
        )
    if not (_is_number(block.bandwidth) and block.bandwidth > 0):
        raise ValueError(
            f"mixup_mmd.bandwidth={block.bandwidth!r} must be a finite number > 0"
        )
    fraction = block.validation_fraction
    if not (_is_number(fraction) and 0 < fraction < 1):
        raise ValueError(
            f"mixup_mmd.validation_fraction={fraction!r} must be in (0, 1): the MMD "
            "needs a validation slice, and some of the pool must remain to train on"
        )


def _gaussian_kernel(x: jax.Array, y: jax.Array, bandwidth: float) -> jax.Array:
    """exp(-|x_i - y_j|² / (2 bandwidth²)), `[len(x), len(y)]`."""
    # Differences, not |x|² + |y|² - 2 x.y, which can round below zero.
    squared = jnp.sum(jnp.square(x[:, None, :] - y[None, :, :]), axis=-1)
    return jnp.exp(-squared / (2.0 * bandwidth**2))


def _normalised(weights: jax.Array) -> jax.Array:
    """Weights `[..., points]` scaled to sum to 1 along the last axis (0 if all 0)."""
    total = jnp.sum(weights, axis=-1, keepdims=True)
    return weights / jnp.where(total > 0, total, 1.0)


def _mmd_squared_from_kernels(kxx, kyy, kxy, x_weights, y_weights) -> jax.Array:
    """Weighted V-statistic MMD², one value per row of `x_weights` / `y_weights`
    (`[..., len(x)]`, `[..., len(y)]`, each row normalised here)."""
    wx, wy = _normalised(x_weights), _normalised(y_weights)
    within_x = jnp.einsum("...i,ij,...j->...", wx, kxx, wx)
    within_y = jnp.einsum("...i,ij,...j->...", wy, kyy, wy)
    between = jnp.einsum("...i,ij,...j->...", wx, kxy, wy)
    # A squared RKHS norm, so >= 0; clip what rounding leaves below zero.
    return jnp.maximum(within_x + within_y - 2.0 * between, 0.0)


def mmd_squared(
    x: jax.Array,
    y: jax.Array,
    x_weights: jax.Array,
    y_weights: jax.Array,
    bandwidth: float,
) -> jax.Array:
    """Biased (V-statistic) MMD² between the weighted point sets x `[n, d]` and
    y `[m, d]` under the Gaussian kernel of width `bandwidth`.

    | property           | guarantee                                           |
    |--------------------|-----------------------------------------------------|
    | range              | >= 0; 0 when both sets (and weights) are identical  |
    | symmetry           | mmd_squared(x, y, a, b) == mmd_squared(y, x, b, a)  |
    | weights            | only relative weights matter; weight-0 points count |
    |                    | for nothing                                         |
    """
    return _mmd_squared_from_kernels(
        _gaussian_kernel(x, x, bandwidth),
        _gaussian_kernel(y, y, bandwidth),
        _gaussian_kernel(x, y, bandwidth),
        x_weights,
        y_weights,
    )


def class_conditional_mmd(
    x: jax.Array,
    x_classes: jax.Array,
    x_weights: jax.Array,
    y: jax.Array,
    y_classes: jax.Array,
    num_classes: int,
    bandwidth: float,
) -> jax.Array:
    """Mean over classes of `mmd_squared` between the points of x `[n, d]` and of
    y `[m, d]` of that class; every y point has weight 1. A class with no x point of
    weight > 0 or no y point is skipped; 0 when no class is in both."""
    classes = jnp.arange(num_classes)[:, None]
    x_masks = jnp.where(x_classes[None, :] == classes, x_weights[None, :], 0.0)
    y_masks = (y_classes[None, :] == classes).astype(x_masks.dtype)  # [classes, m]

    # The kernels are shared by all classes; each class only reweights them.
    per_class = _mmd_squared_from_kernels(
        _gaussian_kernel(x, x, bandwidth),
        _gaussian_kernel(y, y, bandwidth),
        _gaussian_kernel(x, y, bandwidth),
        x_masks,
        y_masks,
    )  # [classes]
    in_both = (jnp.sum(x_masks, axis=-1) > 0) & (jnp.sum(y_masks, axis=-1) > 0)
    return jnp.sum(jnp.where(in_both, per_class, 0.0)) / jnp.maximum(
        jnp.sum(in_both), 1
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class MixupMmd(mixup.Mixup):
    mmd_weight: float
    bandwidth: float
    validation_fraction: float
    name: str = "mixup_mmd"

    def loss(self, logits, targets, labels, weights, step, validation):
        del labels, step
        if validation is None:
            raise ValueError(
                "mixup_mmd needs the logits of a validation batch; the training "
                "loop passes them only when validation_fraction > 0"
            )
        validation_logits, validation_labels = validation
        cross_entropy = weighted_mean(
            optax.softmax_cross_entropy(logits, targets), weights
        )
        divergence = class_conditional_mmd(
            jax.nn.softmax(logits),
            jnp.argmax(targets, axis=-1),
            weights,
            jax.nn.softmax(validation_logits),
            validation_labels,
            logits.shape[-1],
            self.bandwidth,
        )
        return cross_entropy + self.mmd_weight * divergence


def make(config: ml_collections.ConfigDict, length: TrainingLength) -> MixupMmd:
    del length
    return MixupMmd(
        alpha=float(config.alpha),
        pairing=config.pairing,
        mmd_weight=float(config.mmd_weight),
        bandwidth=float(config.bandwidth),
        validation_fraction=float(config.validation_fraction),
    )

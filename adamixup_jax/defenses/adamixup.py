"""`adamixup`: mixup whose mixing strength follows a schedule over training, strong
early and weak late, with the label allocated to the dominant sample.

Our reading of AdaMixup (Chen et al. 2025; only its abstract could be read): the
mixing strength m (weight of the minority sample, lambda = 1 - m) starts high to
regularise while the model would otherwise begin memorising, then decays so the
model converges on nearly clean samples; each mixed sample keeps the hard label of
its heavier component. Every part of that reading is a config key below.

Adaptive controller (our extension, not in the paper; `controller='gap'`): instead of
the schedule, m is steered between epochs. After each epoch the generalisation gap
(train accuracy minus the accuracy on a validation slice held out of the training
pool, both in inference mode, on as many examples) is measured, and
m <- clip(m + gain * (gap - target_gap), m_min, m_max): more mixing when the model
starts to memorise, less when it generalises. It starts at m_start; each epoch's gap
and next m are in the training history.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections

from adamixup_jax import mixing
from adamixup_jax.defenses.base import DefenseBase, TrainingLength


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
    # Adaptive controller (our extension): 'none' (the schedule above) or 'gap'.
    config.controller = "none"
    config.target_gap = 0.02  # Train - validation accuracy the controller aims for.
    config.controller_gain = 1.0  # Change of m per unit of gap error, per epoch.
    config.m_min = 0.0  # The controller keeps m in [m_min, m_max].
    config.m_max = 0.5
    # Share of the training pool held out as the controller's validation slice.
    config.validation_fraction = 0.1
    return config


CONTROLLERS = ("none", "gap")


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError for a bad controller setting (the rest is checked with the
    mixing keys in config_checks)."""
    if config.controller not in CONTROLLERS:
        raise ValueError(
            f"adamixup.controller={config.controller!r} is not allowed; choose one "
            f"of {list(CONTROLLERS)}"
        )
    for key in ("m_min", "m_max"):
        value = config[key]
        if not (isinstance(value, (int, float)) and 0.0 <= value <= 0.5):
            raise ValueError(f"adamixup.{key}={value!r} must be in [0, 0.5]")
    if config.m_min > config.m_max:
        raise ValueError(
            f"adamixup.m_min={config.m_min!r} is above adamixup.m_max={config.m_max!r}"
        )
    if config.controller == "gap" and not (
        config.m_min <= config.m_start <= config.m_max
    ):
        raise ValueError(
            f"adamixup.m_start={config.m_start!r} is where the controller starts, "
            f"so it must lie in [adamixup.m_min, adamixup.m_max] = "
            f"[{config.m_min}, {config.m_max}]"
        )
    if not (math.isfinite(config.controller_gain) and config.controller_gain > 0):
        raise ValueError(
            f"adamixup.controller_gain={config.controller_gain!r} must be a finite "
            "number > 0"
        )
    if not (math.isfinite(config.target_gap) and -1.0 <= config.target_gap <= 1.0):
        raise ValueError(
            f"adamixup.target_gap={config.target_gap!r} must be in [-1, 1] (an "
            "accuracy difference)"
        )
    if not 0.0 < config.validation_fraction < 1.0:
        raise ValueError(
            f"adamixup.validation_fraction={config.validation_fraction!r} must be in "
            "(0, 1)"
        )


@dataclasses.dataclass(frozen=True)
class AdaMixup(DefenseBase):
    schedule: str
    m_start: float
    m_end: float
    step_fraction: float
    jitter: float
    label_allocation: str
    pairing: str
    length: TrainingLength
    controller: str = "none"
    target_gap: float = 0.02
    controller_gain: float = 1.0
    m_min: float = 0.0
    m_max: float = 0.5
    controlled_validation_fraction: float = 0.1
    name: str = "adamixup"

    @property
    def validation_fraction(self) -> float:
        return self.controlled_validation_fraction if self.adaptive else 0.0

    @property
    def adaptive(self) -> bool:
        return self.controller == "gap"

    def _scheduled(self, epoch) -> jax.Array:
        return mixing.scheduled_strength(
            self.schedule,
            epoch,
            self.length.num_epochs,
            self.m_start,
            self.m_end,
            self.step_fraction,
        )

    def prepare_batch(self, key, inputs, labels, num_classes, step, control=None):
        pair_key, jitter_key = jax.random.split(key)
        partner = mixing.partners(pair_key, labels, self.pairing)
        if self.adaptive:
            if control is None:
                raise ValueError("the adaptive controller needs the control value")
            scalar = jnp.clip(jnp.asarray(control, jnp.float32), 0.0, 0.5)
        else:
            scalar = self._scheduled(self.length.epoch_of(step))
        strength = jnp.full(labels.shape, scalar)
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
        if self.adaptive:
            return None  # Steered at run time: see the history's next_control.
        return float(self._scheduled(epoch))

    def initial_control(self) -> float:
        return self.m_start

    def next_control(self, control, train_accuracy, validation_accuracy):
        if not self.adaptive:
            return control
        gap = train_accuracy - validation_accuracy
        moved = control + self.controller_gain * (gap - self.target_gap)
        return min(max(moved, self.m_min), self.m_max)


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
        controller=config.controller,
        target_gap=float(config.target_gap),
        controller_gain=float(config.controller_gain),
        m_min=float(config.m_min),
        m_max=float(config.m_max),
        controlled_validation_fraction=float(config.validation_fraction),
    )

"""`dpsgd`: differentially private SGD. Each example's gradient is clipped to global
L2 norm `clip_norm` (C), the clipped gradients of a batch are summed, Gaussian noise
of std `noise_multiplier * C` is added to that sum, and the sum is divided by the
fixed batch size B. The optimizer (momentum, weight decay) only post-processes this.

Pieces: per-example clipping is `jax_privacy.clipping.clip_pytree`, the noise is
`jax_privacy.noise_addition.gaussian_privatizer`, and epsilon comes from a
`dp_accounting` RDP or PLD accountant (noise calibration from
`dp_accounting.calibrate_dp_mechanism`), add-or-remove-one neighbouring, under which
the clipped sum has L2 sensitivity C.

Limitation: training shuffles the training set and partitions it into batches each
epoch, while the accountant assumes Poisson sampling of each example with rate
q = batch_size / num_examples at every step. This is the usual approximation in
DP-SGD papers, not a proof for the sampling the code actually does.

BatchNorm is refused: its batch statistics mix examples, so a per-example gradient
would depend on the other examples of the batch and the clipping bound would no
longer bound one example's influence. The config checks refuse dpsgd with a
BatchNorm model.
"""

import dataclasses
import functools
import math
import numbers
from typing import ClassVar

import dp_accounting
import jax
import jax.numpy as jnp
import ml_collections
from jax_privacy import clipping, noise_addition

from adamixup_jax.defenses.base import DefenseBase, TrainingLength

ACCOUNTANTS = ("rdp", "pld")
# The smallest target epsilon calibrated; the RDP accountant fails to converge below.
_MIN_TARGET_EPSILON = 0.01
# Calibration returns a noise multiplier within this distance of the smallest one
# that reaches target_epsilon, and never one whose epsilon is above the target.
_CALIBRATION_TOLERANCE = 1e-4


def default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.clip_norm = 1.0  # C: bound on each example's gradient global L2 norm.
    # Noise std on the clipped sum is noise_multiplier * C; ignored (replaced by the
    # calibrated value) when target_epsilon > 0.
    config.noise_multiplier = 1.0
    # > 0: choose the noise multiplier so the whole run reaches exactly this epsilon
    # at `delta`; 0: use noise_multiplier as given.
    config.target_epsilon = 0.0
    config.delta = 1e-5  # The delta of the reported (epsilon, delta); below 1/N.
    config.accountant = "rdp"  # 'rdp' (Renyi DP) or 'pld' (privacy loss distr.).
    return config


def _require_number(key: str, value, allowed, condition) -> None:
    """Raises ValueError unless `value` is a finite real number meeting `condition`."""
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (is_number and math.isfinite(value) and condition(value)):
        raise ValueError(f"dpsgd.{key}={value!r} is not allowed; it must be {allowed}")


def _require_accountant(value) -> None:
    if value not in ACCOUNTANTS:
        raise ValueError(
            f"dpsgd.accountant={value!r} is not allowed; choose one of "
            f"{list(ACCOUNTANTS)}"
        )


def _target_epsilon(config: ml_collections.ConfigDict) -> float:
    """The block's target epsilon, 0.0 when unset (None counts as unset)."""
    return 0.0 if config.target_epsilon is None else config.target_epsilon


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first bad key of the `dpsgd` block."""
    unknown = sorted(set(config.keys()) - set(default_config().keys()))
    if unknown:
        raise ValueError(
            f"dpsgd.{unknown[0]}={config[unknown[0]]!r} is not a dpsgd key; the keys "
            f"are {sorted(default_config().keys())}"
        )
    _require_number(
        "clip_norm", config.clip_norm, "a finite number > 0", lambda c: c > 0
    )
    _require_number(
        "delta", config.delta, "a finite number in (0, 1)", lambda d: 0 < d < 1
    )
    _require_number(
        "target_epsilon",
        _target_epsilon(config),
        f"0 (use dpsgd.noise_multiplier) or a finite number >= {_MIN_TARGET_EPSILON} "
        "(below that the accountant does not converge)",
        lambda e: e == 0 or e >= _MIN_TARGET_EPSILON,
    )
    if _target_epsilon(config) > 0:
        _require_number(
            "noise_multiplier",
            config.noise_multiplier,
            "a finite number (it is replaced by the calibrated one)",
            lambda s: True,
        )
    else:
        _require_number(
            "noise_multiplier",
            config.noise_multiplier,
            "a finite number > 0 when dpsgd.target_epsilon is 0",
            lambda s: s > 0,
        )
    _require_accountant(config.accountant)


def check_against_data(
    config: ml_collections.ConfigDict, num_examples: int, num_classes: int = 0
) -> None:
    """Raises ValueError when delta is not below 1/N for a training set of N
    examples: a delta that large allows releasing some example outright."""
    del num_classes
    if not (isinstance(num_examples, int) and num_examples >= 1):
        raise ValueError(f"{num_examples=} must be an integer >= 1")
    if config.delta >= 1.0 / num_examples:
        raise ValueError(
            f"dpsgd.delta={config.delta!r} must be below 1/N = {1.0 / num_examples:g} "
            f"for a training set of N={num_examples} examples"
        )


def _sampling_rate(num_examples: int, batch_size: int) -> float:
    """q = batch_size / num_examples, capped at 1 (every example in every batch)."""
    if not (isinstance(num_examples, int) and num_examples >= 1):
        raise ValueError(f"{num_examples=} must be an integer >= 1")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"{batch_size=} must be an integer >= 1")
    return min(1.0, batch_size / num_examples)


def _training_event(
    noise_multiplier: float, sampling_rate: float, num_steps: int
) -> dp_accounting.DpEvent:
    """The run as the accountant sees it: num_steps Poisson-sampled Gaussian steps."""
    if not (isinstance(num_steps, int) and num_steps >= 0):
        raise ValueError(f"{num_steps=} must be an integer >= 0")
    step = dp_accounting.PoissonSampledDpEvent(
        sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
    )
    return dp_accounting.SelfComposedDpEvent(step, num_steps)


def _fresh_accountant(name: str) -> dp_accounting.PrivacyAccountant:
    _require_accountant(name)
    if name == "rdp":
        return dp_accounting.rdp.RdpAccountant()
    return dp_accounting.pld.PLDAccountant()


def epsilon(
    noise_multiplier: float,
    delta: float,
    num_examples: int,
    batch_size: int,
    num_steps: int,
    accountant: str,
) -> float:
    """Epsilon at `delta` of `num_steps` DP-SGD steps at sampling rate
    batch_size / num_examples (inf for a noise multiplier of 0)."""
    event = _training_event(
        noise_multiplier, _sampling_rate(num_examples, batch_size), num_steps
    )
    return float(_fresh_accountant(accountant).compose(event).get_epsilon(delta))


@functools.lru_cache(maxsize=64)  # the run builds the same defense several times
def calibrated_noise_multiplier(
    target_epsilon: float,
    delta: float,
    num_examples: int,
    batch_size: int,
    num_steps: int,
    accountant: str,
) -> float:
    """The smallest noise multiplier (within 1e-4) whose run has epsilon at most
    `target_epsilon` at `delta`."""
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ValueError(f"{target_epsilon=} must be a finite number > 0")
    if not 0 < delta < 1:
        raise ValueError(f"{delta=} must be in (0, 1)")
    sampling_rate = _sampling_rate(num_examples, batch_size)
    _require_accountant(accountant)
    return float(
        dp_accounting.calibrate_dp_mechanism(
            lambda: _fresh_accountant(accountant),
            lambda sigma: _training_event(sigma, sampling_rate, num_steps),
            target_epsilon,
            delta,
            tol=_CALIBRATION_TOLERANCE,
        )
    )


def clipped_per_example(per_example, clip_norm: float):
    """Each example's gradient (leaves [batch, ...]) scaled to global L2 norm at most
    `clip_norm`; gradients already within the bound are unchanged. NaN and inf
    entries become 0 first (jax-privacy's nan-safe clipping), so the bound holds.

    `clip_pytree` per example rather than `clipping.clipped_grad`: that one takes the
    loss and differentiates it itself, and marks padding with a boolean mask instead
    of weights, while the train step hands over gradients it already computed."""
    return jax.vmap(lambda g: clipping.clip_pytree(g, clip_norm)[0])(per_example)


@dataclasses.dataclass(frozen=True)
class DPSGD(DefenseBase):
    """DP-SGD with a fixed noise multiplier (already calibrated when a target
    epsilon was asked for). Trains on clean batches, no mixing.

    Guarantees of `aggregate_gradients`, for weights in [0, 1]:

    ==================================  ===========================================
    one example's clipped gradient      global L2 norm <= clip_norm
    padding (weight 0)                  contributes exactly 0
    noise on the clipped sum            N(0, (noise_multiplier * clip_norm)^2),
                                        independent per entry and per leaf
    returned gradient                   (clipped weighted sum + noise) / B, with B
                                        the leading axis, padding included
    ==================================  ===========================================
    """

    clip_norm: float
    noise_multiplier: float
    delta: float
    accountant: str
    name: str = "dpsgd"
    # Not a field: DP-SGD without per-example gradients would not be DP-SGD.
    per_example_gradients: ClassVar[bool] = True

    def __post_init__(self):
        _require_number(
            "clip_norm", self.clip_norm, "a finite number > 0", lambda c: c > 0
        )
        _require_number(
            "noise_multiplier",
            self.noise_multiplier,
            "a finite number > 0",
            lambda s: s > 0,
        )
        _require_number(
            "delta", self.delta, "a finite number in (0, 1)", lambda d: 0 < d < 1
        )
        _require_accountant(self.accountant)

    def aggregate_gradients(self, per_example, weights, key):
        """Per-example gradients (leaves [B, ...]), weights [B] and a PRNG key -> the
        noisy mean gradient (leaves [...]). Pure; jit- and vmap-safe."""
        batch_size = weights.shape[0]
        for leaf in jax.tree.leaves(per_example):
            if leaf.shape[:1] != (batch_size,):
                raise ValueError(
                    f"per-example gradient leaf of shape {leaf.shape} has no leading "
                    f"batch axis of the weights' length {batch_size}"
                )

        clipped = clipped_per_example(per_example, self.clip_norm)
        clipped_sum = jax.tree.map(
            lambda g: jnp.tensordot(weights.astype(g.dtype), g, axes=1), clipped
        )

        # A privatizer built on this step's key, used once: its state is only that
        # key, which it splits into one independent key per leaf.
        privatizer = noise_addition.gaussian_privatizer(
            stddev=self.noise_multiplier * self.clip_norm, prng_key=key
        )
        noisy_sum, _ = privatizer.update(clipped_sum, privatizer.init(clipped_sum))

        # The fixed B the sampling rate assumes, not the count of real examples: that
        # count depends on which examples were drawn and the noise does not cover it.
        return jax.tree.map(lambda g: g / batch_size, noisy_sum)

    def privacy_spent(self, num_examples: int, batch_size: int, num_steps: int):
        """The run's (epsilon, delta) with this noise multiplier, for `num_steps`
        steps on `num_examples` training examples (one model's training set) in
        batches of `batch_size`, accounted as Poisson sampling at rate
        batch_size / num_examples (see the module docstring). When a model's example
        list is padded to a length L > num_examples to share shapes with other
        models, each example is in one of ceil(L / batch_size) steps per epoch, so
        this rate overstates its participation: epsilon errs on the high side."""
        sampling_rate = _sampling_rate(num_examples, batch_size)
        return {
            "epsilon": epsilon(
                self.noise_multiplier,
                self.delta,
                num_examples,
                batch_size,
                num_steps,
                self.accountant,
            ),
            "delta": float(self.delta),
            "noise_multiplier": float(self.noise_multiplier),
            "clip_norm": float(self.clip_norm),
            "sampling_rate": sampling_rate,
            "steps": num_steps,
            "accountant": self.accountant,
        }


def make(
    config: ml_collections.ConfigDict,
    length: TrainingLength,
    num_examples: int | None = None,
    batch_size: int | None = None,
) -> DPSGD:
    """Builds DP-SGD from the `dpsgd` block. With target_epsilon > 0 the noise
    multiplier is calibrated for length.num_epochs * length.steps_per_epoch steps at
    rate batch_size / num_examples, so both must then be given (the same values
    later passed to `privacy_spent`); they default to `length.num_examples` and
    `length.batch_size`."""
    check_config(config)
    num_examples = num_examples or length.num_examples or None
    batch_size = batch_size or length.batch_size or None
    noise_multiplier = config.noise_multiplier
    target = _target_epsilon(config)
    if target > 0:
        if num_examples is None or batch_size is None:
            raise ValueError(
                f"dpsgd.target_epsilon={target!r} needs num_examples and batch_size "
                f"to calibrate the noise; got {num_examples=}, {batch_size=}"
            )
        noise_multiplier = calibrated_noise_multiplier(
            target,
            config.delta,
            num_examples,
            batch_size,
            length.num_epochs * length.steps_per_epoch,
            config.accountant,
        )
    return DPSGD(
        clip_norm=float(config.clip_norm),
        noise_multiplier=float(noise_multiplier),
        delta=float(config.delta),
        accountant=config.accountant,
    )

"""Mixing math shared by the mixup-family defenses: mixing-strength schedules, pairing,
convex combinations of inputs and label allocation.

Convention: the *mixing strength* m is the weight of the partner sample, so a mixed
input is (1 - m) * x_i + m * x_j. AdaMixup keeps m in [0, 0.5] (x_i dominates);
classic mixup draws m = 1 - lambda from Beta(alpha, alpha) over [0, 1].
"""

import jax
import jax.numpy as jnp

SCHEDULES = ("linear", "cosine", "step", "constant")
ALLOCATIONS = ("dominant", "soft")
PAIRINGS = ("permutation", "different_class")


def scheduled_strength(
    schedule: str,
    epoch: jax.Array | int,
    num_epochs: int,
    m_start: float,
    m_end: float,
    step_fraction: float = 0.5,
) -> jax.Array:
    """Mixing strength at `epoch` (0-based) of a run of `num_epochs` epochs.

    | schedule | value                                                           |
    |----------|-----------------------------------------------------------------|
    | linear   | m_start at epoch 0, m_end at the last epoch, linear in between  |
    | cosine   | same end points, half a cosine in between (slow-fast-slow)      |
    | step     | m_start while epoch < step_fraction * num_epochs, then m_end    |
    | constant | m_start throughout (m_end unused)                               |

    With num_epochs == 1 the single epoch uses m_start.
    """
    epoch = jnp.asarray(epoch, jnp.float32)
    progress = epoch / max(num_epochs - 1, 1)
    if schedule == "linear":
        value = m_start + (m_end - m_start) * progress
    elif schedule == "cosine":
        value = m_end + (m_start - m_end) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    elif schedule == "step":
        value = jnp.where(epoch < step_fraction * num_epochs, m_start, m_end)
    elif schedule == "constant":
        value = jnp.full((), m_start, jnp.float32)
    else:
        raise ValueError(
            f"schedule={schedule!r} is not allowed; choose one of {SCHEDULES}"
        )
    # Rounding (XLA divides by multiplying with a reciprocal) must not leave the range.
    return jnp.clip(value, min(m_start, m_end), max(m_start, m_end))


def partners(key: jax.Array, labels: jax.Array, pairing: str) -> jax.Array:
    """Index of each sample's mixing partner within the batch, `[batch]`.

    'permutation': a uniformly random permutation of the batch.
    'different_class': for each sample, a partner drawn uniformly among the batch's
    samples of another class (not a permutation: a sample may be chosen twice); a
    sample with no other-class sample in its batch falls back to its permutation
    partner.
    """
    permutation_key, choice_key = jax.random.split(key)
    permuted = jax.random.permutation(permutation_key, labels.shape[0])
    if pairing == "permutation":
        return permuted
    if pairing != "different_class":
        raise ValueError(
            f"pairing={pairing!r} is not allowed; choose one of {PAIRINGS}"
        )
    allowed = labels[:, None] != labels[None, :]  # [batch, batch]
    noise = jax.random.uniform(choice_key, allowed.shape)
    choice = jnp.argmax(jnp.where(allowed, noise, -1.0), axis=1)
    return jnp.where(allowed.any(axis=1), choice, permuted)


def mix_inputs(
    inputs: jax.Array, partner_inputs: jax.Array, strength: jax.Array
) -> jax.Array:
    """(1 - m) * x_i + m * x_j with one strength per sample, `strength` `[batch]`."""
    m = strength.reshape((-1,) + (1,) * (inputs.ndim - 1))
    return (1.0 - m) * inputs + m * partner_inputs


def allocate_labels(
    targets: jax.Array, partner_targets: jax.Array, strength: jax.Array, allocation: str
) -> jax.Array:
    """Training targets `[batch, classes]` for mixed samples.

    'dominant': the target of the heavier sample (own when m <= 0.5; a tie at exactly
    0.5 keeps the sample's own target). 'soft': (1 - m) * y_i + m * y_j.
    """
    m = strength[:, None]
    if allocation == "dominant":
        return jnp.where(m <= 0.5, targets, partner_targets)
    if allocation == "soft":
        return (1.0 - m) * targets + m * partner_targets
    raise ValueError(
        f"allocation={allocation!r} is not allowed; choose one of {ALLOCATIONS}"
    )

"""`memguard`: output perturbation at inference that keeps every predicted label and
hides how confident the model is. Training is plain ERM.

MemGuard (Jia et al. 2019) adds, per query, the smallest noise to the confidence
vector that makes the defender's own attack classifier undecided, subject to keeping
the argmax. We build the simple "strongest defender" form of that goal instead: every
answer is replaced by one fixed vector, `confidence` on the predicted class and the
rest spread evenly over the other classes. A member and a non-member with the same
predicted label then get identical outputs, so no score computed from the outputs can
separate them beyond the label itself — at least as strong against score-based
attacks as any perturbation that keeps the label, and, by construction, no change at
all for label-only attacks (a built-in sanity check, tested).
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from adamixup_jax.defenses.base import DefenseBase, TrainingLength


def default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Probability of the predicted class in every answer; the other classes share the
    # rest evenly. Must be in (1 / classes, 1) so the predicted label stays on top.
    config.confidence = 0.9
    return config


def check_config(config: ml_collections.ConfigDict) -> None:
    value = config.confidence
    if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
        raise ValueError(f"memguard.confidence={value!r} must be in (0, 1)")


def check_against_data(
    config: ml_collections.ConfigDict, num_examples: int, num_classes: int
) -> None:
    del num_examples
    rest = (1.0 - np.float32(config.confidence)) / (num_classes - 1)
    # Compared as the float32 log-probabilities the answers are made of.
    if not np.log(np.float32(config.confidence)) > np.log(np.float32(rest)):
        raise ValueError(
            f"memguard.confidence={config.confidence!r} must be above 1/classes = "
            f"{1.0 / num_classes:.4f} (distinguishably so in float32), or the "
            "predicted label would not stay on top"
        )


@dataclasses.dataclass(frozen=True)
class MemGuard(DefenseBase):
    confidence: float
    name: str = "memguard"

    def transform_outputs(self, logits: jax.Array) -> jax.Array:
        num_classes = logits.shape[-1]
        top = jax.nn.one_hot(jnp.argmax(logits, axis=-1), num_classes, dtype=bool)
        rest = (1.0 - self.confidence) / (num_classes - 1)
        # Log-probabilities are logits whose softmax is exactly the answer vector.
        return jnp.where(top, jnp.log(self.confidence), jnp.log(rest)).astype(
            logits.dtype
        )


def make(config: ml_collections.ConfigDict, length: TrainingLength) -> MemGuard:
    del length
    return MemGuard(confidence=float(config.confidence))

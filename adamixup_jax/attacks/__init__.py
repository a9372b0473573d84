"""Score-based membership-inference attacks: each maps logits and labels to one score
per example, higher meaning "more likely a member". Adding an attack is one module with
`scores(logits, labels)` and one line in ATTACKS."""

from collections.abc import Callable

import numpy as np

from adamixup_jax.attacks import confidence, entropy, lira, loss, modified_entropy, rmia, shokri

ATTACKS: dict[str, Callable[..., np.ndarray]] = {
    "loss": loss.scores,
    "confidence": confidence.scores,
    "entropy": entropy.scores,
    "modified_entropy": modified_entropy.scores,
}

# Attacks that need shadow/reference models: scores(logits [M, N, Q, C], keep [M, N],
# labels [N], target, **options) -> [N], higher = member of model `target`.
SHADOW_ATTACKS: dict[str, Callable[..., np.ndarray]] = {
    "lira": lira.scores,
    "rmia": rmia.scores,
    "shokri": shokri.scores,
}


def get(name: str) -> Callable[..., np.ndarray]:
    """The `scores` function of the attack called `name`."""
    if name not in ATTACKS:
        raise ValueError(
            f"attacks has no attack {name!r}; allowed: {', '.join(sorted(ATTACKS))}."
        )
    return ATTACKS[name]

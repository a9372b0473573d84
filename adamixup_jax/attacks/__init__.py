"""Score-based membership-inference attacks: each maps logits and labels to one score
per example, higher meaning "more likely a member". Adding an attack is one module with
`scores(logits, labels)` and one line in ATTACKS."""

from collections.abc import Callable

import numpy as np

from adamixup_jax.attacks import confidence, entropy, loss, modified_entropy

ATTACKS: dict[str, Callable[..., np.ndarray]] = {
    "loss": loss.scores,
    "confidence": confidence.scores,
    "entropy": entropy.scores,
    "modified_entropy": modified_entropy.scores,
}


def get(name: str) -> Callable[..., np.ndarray]:
    """The `scores` function of the attack called `name`."""
    if name not in ATTACKS:
        raise ValueError(
            f"attacks has no attack {name!r}; allowed: {', '.join(sorted(ATTACKS))}."
        )
    return ATTACKS[name]

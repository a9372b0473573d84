"""Score-based membership-inference attacks: each maps logits and labels to one score
per example, higher meaning "more likely a member". Adding an attack is one module with
`scores(logits, labels)` and one line in ATTACKS."""

from collections.abc import Callable
from types import ModuleType

import numpy as np

from adamixup_jax.attacks import (
    augmentation,
    boundary,
    confidence,
    entropy,
    gap,
    lira,
    loss,
    modified_entropy,
    noise,
    rmia,
    shokri,
)

ATTACKS: dict[str, Callable[..., np.ndarray]] = {
    "loss": loss.scores,
    "confidence": confidence.scores,
    "entropy": entropy.scores,
    "modified_entropy": modified_entropy.scores,
}

# Attacks that need shadow/reference models: scores(logits [M, N, Q, C], keep [M, N],
# labels [N], target, **options) -> [N], higher = member of model `target`. Each
# entry is (scores function, fixed options, name of its options block in
# config.attack, or None).
SHADOW_ATTACKS: dict[str, tuple[Callable[..., np.ndarray], dict, str | None]] = {
    "lira_online": (lira.scores, {"online": True}, "lira"),
    "lira_offline": (lira.scores, {"online": False}, "lira"),
    "rmia": (rmia.scores, {"online": False}, "rmia"),
    "rmia_online": (rmia.scores, {"online": True}, "rmia"),
    "shokri": (shokri.scores, {}, "shokri"),
}


# Label-only attacks, by module: each has `scores(predict_labels, images uint8
# [N, H, W, C], labels [N], *, key=None, **options) -> [N]`, where predict_labels is
# a `label_only.LabelOracle`, and `check_options(**options)` (ValueError naming the
# `attack.<name>` key). Options come from the block `config.attack.<name>`.
LABEL_ONLY_ATTACKS: dict[str, ModuleType] = {
    "gap": gap,
    "augmentation": augmentation,
    "noise": noise,
    "boundary": boundary,
}


def get(name: str) -> Callable[..., np.ndarray]:
    """The `scores` function of the attack called `name`."""
    if name not in ATTACKS:
        raise ValueError(
            f"attacks has no attack {name!r}; allowed: {', '.join(sorted(ATTACKS))}."
        )
    return ATTACKS[name]

"""Registry of training-time defenses. Adding one = one file here + one line below.

Each module provides `default_config()` (its config block, stored under the same
name at the top level of a run's config) and `make(config_block, length)`, and may
provide `check_config(block)` and `check_against_data(block, num_examples,
num_classes)` (ValueError naming the key), which config_checks runs before training.
"""

from types import ModuleType

from adamixup_jax.defenses import (
    adamixup,
    dpsgd,
    early_stopping,
    erm,
    label_smoothing,
    memguard,
    mixup,
    mixup_mmd,
    relaxloss,
)
from adamixup_jax.defenses.base import Defense, DefenseBase, TrainingLength

DEFENSES: dict[str, ModuleType] = {
    "erm": erm,
    "mixup": mixup,
    "adamixup": adamixup,
    "label_smoothing": label_smoothing,
    "memguard": memguard,
    "early_stopping": early_stopping,
    "relaxloss": relaxloss,
    "mixup_mmd": mixup_mmd,
    "dpsgd": dpsgd,
}


def make(name: str, config, length: TrainingLength) -> Defense:
    """Builds defense `name` from the run config (its block `config[name]`)."""
    if name not in DEFENSES:
        raise ValueError(
            f"defenses contains {name!r}, which is not a known defense; "
            f"choose from {sorted(DEFENSES)}"
        )
    return DEFENSES[name].make(config[name], length)


__all__ = ["DEFENSES", "Defense", "DefenseBase", "TrainingLength", "make"]

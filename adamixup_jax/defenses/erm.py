"""`erm`: plain empirical risk minimisation, no defense; the undefended baseline."""

import dataclasses

import ml_collections

from adamixup_jax.defenses.base import DefenseBase, TrainingLength


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict()


@dataclasses.dataclass(frozen=True)
class Erm(DefenseBase):
    name: str = "erm"
    # Every hook keeps the neutral default of DefenseBase.


def make(config: ml_collections.ConfigDict, length: TrainingLength) -> Erm:
    del config, length
    return Erm()

"""`early_stopping`: ERM that keeps the parameters of the epoch with the best accuracy
on a validation slice held out of the training pool (never the attack's non-member
set). The held-out slice is not trained on, so it is not counted as members."""

import dataclasses

import ml_collections

from adamixup_jax.defenses.base import DefenseBase, TrainingLength


def default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.validation_fraction = 0.2  # Share of the training pool held out.
    # Stop after this many epochs without a better validation accuracy; 0 trains
    # every epoch and then keeps the best one (same selection, more time).
    config.patience = 0
    return config


def check_config(config: ml_collections.ConfigDict) -> None:
    fraction = config.validation_fraction
    if not (isinstance(fraction, (int, float)) and 0.0 < fraction < 1.0):
        raise ValueError(
            f"early_stopping.validation_fraction={fraction!r} must be in (0, 1)"
        )
    patience = config.patience
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
        raise ValueError(
            f"early_stopping.patience={patience!r} must be an integer >= 0"
        )


@dataclasses.dataclass(frozen=True)
class EarlyStopping(DefenseBase):
    validation_fraction: float
    patience: int = 0
    select_best_epoch: bool = True
    name: str = "early_stopping"


def make(config: ml_collections.ConfigDict, length: TrainingLength) -> EarlyStopping:
    del length
    return EarlyStopping(
        validation_fraction=float(config.validation_fraction),
        patience=int(config.patience),
    )

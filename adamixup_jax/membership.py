"""Who is a member of what: the disjoint, seeded split of a dataset into the target's
members, the target's non-members and the attacker's population.

The attacker mimics the target: it trains a reference model on `reference_members`,
as many population examples as the target has members, and holds out the rest of the
population as `reference_nonmembers`, to calibrate attack thresholds on its own data.
The target never sees any population example.
"""

import dataclasses

import ml_collections
import numpy as np

from adamixup_jax import files


def default_config() -> ml_collections.ConfigDict:
    """The run's `split` block: sizes in examples."""
    config = ml_collections.ConfigDict()
    config.seed = 0  # Seeds the shuffle that assigns examples to roles.
    config.num_target_members = 500  # The target's training set.
    config.num_target_nonmembers = 500  # Unseen by the target; also its test set.
    # The attacker's own data: its reference model trains on num_target_members of
    # these (as many as the target) and holds out the rest.
    config.num_population = 1000
    return config


@dataclasses.dataclass(frozen=True)
class Split:
    """Indices into the dataset, pairwise disjoint, each role in random order (so any
    prefix of a role is a uniform sample of it, even on label-sorted data)."""

    seed: int
    num_examples: int
    target_members: np.ndarray
    target_nonmembers: np.ndarray
    reference_members: np.ndarray
    reference_nonmembers: np.ndarray

    @property
    def population(self) -> np.ndarray:
        return np.concatenate([self.reference_members, self.reference_nonmembers])

    def save(self, path: str) -> None:
        files.write_npz(
            path,
            **{
                f.name: np.asarray(getattr(self, f.name))
                for f in dataclasses.fields(self)
            },
        )

    @classmethod
    def load(cls, path: str) -> "Split":
        with np.load(path) as saved:
            values = {f.name: saved[f.name] for f in dataclasses.fields(cls)}
        values["seed"] = int(values["seed"])
        values["num_examples"] = int(values["num_examples"])
        return cls(**values)


def split(num_examples: int, config: ml_collections.ConfigDict) -> Split:
    """Shuffles `range(num_examples)` with `config.seed` and cuts it into roles.

    Raises ValueError naming the `split.*` keys when the sizes do not fit the data.
    """
    sizes = {
        "split.num_target_members": config.num_target_members,
        "split.num_target_nonmembers": config.num_target_nonmembers,
        "split.num_population": config.num_population,
    }
    for key, size in sizes.items():
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"{key}={size!r} must be a positive integer")
    if config.num_population <= config.num_target_members:
        raise ValueError(
            f"split.num_population={config.num_population} must exceed "
            f"split.num_target_members={config.num_target_members}: the reference "
            "model "
            "trains on as many examples as the target and needs non-members too"
        )
    total = sum(sizes.values())
    if total > num_examples:
        listed = " + ".join(f"{k}={v}" for k, v in sizes.items())
        raise ValueError(
            f"{listed} = {total} examples, but the dataset has only {num_examples}"
        )

    order = np.random.default_rng(config.seed).permutation(num_examples)
    cuts = np.cumsum([config.num_target_members, config.num_target_nonmembers])
    half = cuts[1] + config.num_target_members
    return Split(
        seed=int(config.seed),
        num_examples=int(num_examples),
        target_members=order[: cuts[0]],
        target_nonmembers=order[cuts[0] : cuts[1]],
        reference_members=order[cuts[1] : half],
        reference_nonmembers=order[half:total],
    )


def keep_masks(num_models: int, num_examples: int, seed: int) -> np.ndarray:
    """Balanced, seeded IN/OUT assignment for shadow models, bool `[models, examples]`.

    Every example is IN for exactly num_models / 2 models, and the models' training-set
    sizes differ by at most one. Examples are visited in a seeded random order; each
    is given to the num_models / 2 models with the fewest examples so far, ties
    broken at random, so the IN sets of different examples vary freely (no fixed
    pattern pairs models up).
    """
    if not isinstance(num_models, int) or num_models < 2 or num_models % 2:
        raise ValueError(
            f"shadows.num_models={num_models!r} must be an even integer >= 2, so that "
            "every example is IN for exactly half of the models"
        )
    if not isinstance(num_examples, int) or num_examples < 1:
        raise ValueError(f"num_examples={num_examples!r} must be a positive integer")
    rng = np.random.default_rng(seed)
    keep = np.zeros((num_models, num_examples), bool)
    loads = np.zeros(num_models, np.int64)
    for example in rng.permutation(num_examples):
        # Fewest examples first; random order among equally loaded models.
        chosen = np.lexsort((rng.random(num_models), loads))[: num_models // 2]
        keep[chosen, example] = True
        loads[chosen] += 1
    return keep

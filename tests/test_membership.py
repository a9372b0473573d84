"""Membership splits: disjoint, sized, seeded, saved."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adamixup_jax import membership


def _config(members=10, nonmembers=20, population=30, seed=0):
    config = membership.default_config()
    config.num_target_members = members
    config.num_target_nonmembers = nonmembers
    config.num_population = population
    config.seed = seed
    return config


@settings(deadline=None, max_examples=40)
@given(
    members=st.integers(1, 50),
    nonmembers=st.integers(1, 50),
    extra=st.integers(1, 50),
    slack=st.integers(0, 30),
    seed=st.integers(0, 2**31 - 1),
)
def test_roles_are_disjoint_and_sized(members, nonmembers, extra, slack, seed):
    population = members + extra
    n = members + nonmembers + population + slack
    split = membership.split(n, _config(members, nonmembers, population, seed))
    roles = [
        split.target_members,
        split.target_nonmembers,
        split.reference_members,
        split.reference_nonmembers,
    ]
    assert [len(r) for r in roles] == [members, nonmembers, members, extra]
    joined = np.concatenate(roles)
    assert len(np.unique(joined)) == len(joined)
    assert joined.min() >= 0 and joined.max() < n


def test_split_is_reproducible_and_seed_dependent():
    a = membership.split(1000, _config(seed=3))
    b = membership.split(1000, _config(seed=3))
    c = membership.split(1000, _config(seed=4))
    np.testing.assert_array_equal(a.target_members, b.target_members)
    assert not np.array_equal(a.target_members, c.target_members)


def test_split_mixes_a_label_sorted_dataset():
    labels = np.repeat(np.arange(10), 500)  # like mnist5k, sorted by label
    split = membership.split(5000, _config(250, 500, 500))
    assert len(np.unique(labels[split.target_members])) == 10


def test_too_large_a_split_names_the_keys():
    with pytest.raises(ValueError, match="split.num_target_members=10.*only 50"):
        membership.split(50, _config())


def test_population_must_exceed_the_members():
    with pytest.raises(ValueError, match="split.num_population=10"):
        membership.split(1000, _config(members=10, population=10))


def test_split_round_trips_through_its_file(tmp_path):
    split = membership.split(1000, _config(seed=9))
    split.save(str(tmp_path / "split.npz"))
    loaded = membership.Split.load(str(tmp_path / "split.npz"))
    assert loaded.seed == 9 and loaded.num_examples == 1000
    np.testing.assert_array_equal(
        loaded.reference_nonmembers, split.reference_nonmembers
    )
    np.testing.assert_array_equal(loaded.population, split.population)


@pytest.mark.parametrize(
    "models, examples", [(2, 10), (16, 1024), (16, 1003), (64, 500)]
)
def test_keep_masks_are_balanced_per_example_and_model(models, examples):
    keep = membership.keep_masks(models, examples, seed=1)
    assert keep.shape == (models, examples) and keep.dtype == bool
    assert np.all(keep.sum(axis=0) == models // 2)
    counts = keep.sum(axis=1)
    assert counts.max() - counts.min() <= 1


def test_keep_masks_pair_no_models_up():
    keep = membership.keep_masks(16, 2000, seed=0)
    # Many distinct IN sets, and no two models exact complements of each other.
    assert len({tuple(column) for column in keep.T}) > 1000
    agreement = (keep[:, None, :] == keep[None, :, :]).mean(axis=2)
    assert agreement[~np.eye(16, dtype=bool)].min() > 0.3


def test_keep_masks_are_seeded():
    a, b, c = (membership.keep_masks(8, 100, seed) for seed in (0, 0, 1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("models", [0, 1, 3, 7])
def test_keep_masks_need_an_even_number_of_models(models):
    with pytest.raises(ValueError, match="num_models"):
        membership.keep_masks(models, 10, 0)

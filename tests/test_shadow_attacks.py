"""Tests for the shadow-model attacks (LiRA, RMIA, Shokri) on synthetic logits whose
logit-scaled confidence is drawn from known Gaussians, so the right AUC is known."""

import math

import numpy as np
import pytest
import scipy.stats

from adamixup_jax import metrics
from adamixup_jax.attacks import lira, rmia, shadow, shokri

TARGETS = [0, 1, 2, 3]
FEW_SHADOWS = dict(num_models=16, num_examples=800)
SMALL = dict(num_models=8, num_examples=60)


def _balanced_keep(rng, num_models, num_examples):
    """keep [models, examples]: every example IN for a random half of the models."""
    ranks = np.argsort(rng.random((num_models, num_examples)), axis=0)
    return ranks < num_models // 2


def _synthetic(
    num_models=32,
    num_examples=2000,
    num_queries=1,
    shift=1.0,
    spread=2.0,
    centre=0.0,
    num_classes=2,
    seed=0,
):
    """Logits [models, examples, queries, classes] with phi = log(p_y / (1 - p_y))
    ~ N(mu_n + shift * IN, 1), independently per model and query; mu_n ~ N(centre,
    spread^2) per example. The true logit is phi + log(classes - 1), the others 0."""
    rng = np.random.default_rng(seed)
    keep = _balanced_keep(rng, num_models, num_examples)
    labels = rng.integers(0, num_classes, num_examples)
    mu = centre + spread * rng.standard_normal(num_examples)
    phi = (
        mu[None, :, None]
        + shift * keep[..., None]
        + rng.standard_normal((num_models, num_examples, num_queries))
    )
    logits = np.zeros((num_models, num_examples, num_queries, num_classes))
    np.put_along_axis(
        logits,
        labels[None, :, None, None],
        (phi + math.log(num_classes - 1))[..., None],
        axis=-1,
    )
    return logits.astype(np.float32), keep, labels


def _mean_auc(attack_fn, data, targets=TARGETS, **opts):
    return shadow.evaluate(attack_fn, *data, targets, **opts)["auc"]["mean"]


def _auc(member_scores, is_member):
    return metrics.membership_metrics(member_scores, is_member)["auc"]


LIRA_VARIANTS = [
    dict(online=True),
    dict(online=False),
    dict(online=True, fixed_variance=True),
    dict(online=False, fixed_variance=True),
]


def test_logit_confidence_is_exact_and_finite():
    # [models=1, examples=3, queries=1, classes=3]
    logits = np.array([[[[2.0, 0.0, -1.0]], [[100.0, 0.0, 0.0]], [[-100.0, 0, 0]]]])
    labels = np.array([0, 0, 0])

    phi = shadow.logit_confidence(logits, labels)

    # log(p / (1 - p)) = z_y - log(sum of the other exp(z)).
    expected = [2.0 - math.log(1.0 + math.exp(-1.0)), 100.0 - math.log(2.0)]
    np.testing.assert_allclose(phi[0, :2, 0], expected, rtol=1e-14)
    assert phi[0, 2, 0] == pytest.approx(-100.0 - math.log(2.0), rel=1e-14)


def test_synthetic_data_has_the_intended_phi():
    logits, keep, labels = _synthetic(num_models=4, num_examples=50, num_classes=3)

    phi = shadow.logit_confidence(logits.astype(np.float64), labels)
    unshifted, _, _ = _synthetic(num_models=4, num_examples=50, num_classes=3, shift=0)
    phi_without_shift = shadow.logit_confidence(unshifted.astype(np.float64), labels)

    np.testing.assert_allclose(phi - phi_without_shift, keep[..., None], atol=1e-5)
    assert (keep.sum(axis=0) == 2).all()


@pytest.mark.parametrize("options", LIRA_VARIANTS)
def test_lira_auc_matches_theory(options):
    # Known Gaussians with equal variance: the best attack has AUC Phi(d / sqrt(2)).
    shift = 1.0
    expected = scipy.stats.norm.cdf(shift / math.sqrt(2.0))

    auc = _mean_auc(lira.scores, _synthetic(shift=shift), **options)

    assert auc == pytest.approx(expected, abs=0.03)


@pytest.mark.parametrize("options", LIRA_VARIANTS)
def test_lira_without_signal_is_chance(options):
    auc = _mean_auc(lira.scores, _synthetic(shift=0.0), **options)

    assert abs(auc - 0.5) < 0.03


@pytest.mark.parametrize("options", LIRA_VARIANTS)
def test_lira_more_queries_raise_power(options):
    # Independent noise per query: averaging 4 queries halves the noise's std.
    one_query = _mean_auc(lira.scores, _synthetic(num_queries=1), **options)
    four_queries = _mean_auc(lira.scores, _synthetic(num_queries=4), **options)

    assert four_queries > one_query + 0.1
    # Averaging the per-query ratios loses little against the best test on the
    # 4-query mean, whose AUC is Phi(2 d / sqrt(2)).
    assert four_queries == pytest.approx(scipy.stats.norm.cdf(math.sqrt(2.0)), abs=0.04)


def test_lira_fixed_variance_helps_with_few_shadows():
    data = _synthetic(num_models=10)

    per_example = _mean_auc(lira.scores, data)
    fixed = _mean_auc(lira.scores, data, fixed_variance=True)

    assert fixed > per_example + 0.01


def test_lira_uses_the_first_shadows_other_than_the_target():
    logits, keep, labels = _synthetic(num_examples=300)
    target = 5
    chosen = [target] + [m for m in range(32) if m != target][:21]

    subset_scores = lira.scores(logits, keep, labels, target, num_shadows=21)

    np.testing.assert_allclose(
        subset_scores, lira.scores(logits[chosen], keep[chosen], labels, 0)
    )
    assert not np.allclose(subset_scores, lira.scores(logits, keep, labels, target))


@pytest.mark.parametrize("online", [False, True])
def test_rmia_separates_members(online):
    assert _mean_auc(rmia.scores, _synthetic(shift=1.0), online=online) > 0.65
    auc_without_signal = _mean_auc(rmia.scores, _synthetic(shift=0.0), online=online)
    assert abs(auc_without_signal - 0.5) < 0.03


def test_rmia_score_is_the_fraction_of_other_points_beaten():
    # Full population, gamma = 1: x beats every other z with a lower ratio, so the
    # scores are exactly 0, 1/(N-1), ..., 1 (ratios are distinct here).
    logits, keep, labels = _synthetic(num_models=8, num_examples=200)

    result = rmia.scores(logits, keep, labels, 0)

    np.testing.assert_allclose(np.sort(result), np.arange(200) / 199)


def test_rmia_population_sample_is_seeded():
    data = _synthetic(num_models=8, num_examples=300)

    first = rmia.scores(*data, 0, num_population=50, population_rng_seed=1)
    again = rmia.scores(*data, 0, num_population=50, population_rng_seed=1)
    other = rmia.scores(*data, 0, num_population=50, population_rng_seed=2)

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    # Each x is compared with 49 or 50 population points.
    on_grid_of_50 = np.isclose(first * 50, np.round(first * 50))
    on_grid_of_49 = np.isclose(first * 49, np.round(first * 49))
    assert np.all(on_grid_of_50 | on_grid_of_49)


def test_rmia_gamma_above_one_demands_a_margin():
    data = _synthetic(num_models=8, num_examples=300)

    strict = rmia.scores(*data, 0, gamma=2.0)
    loose = rmia.scores(*data, 0, gamma=1.0)

    assert np.all(strict <= loose)
    assert strict.mean() < loose.mean()


def test_fit_a_picks_the_grid_value_with_the_best_auc():
    logits, keep, labels = _synthetic(num_models=4, num_examples=1000)
    grid = (0.0, 0.5, 1.0)

    best = rmia.fit_a(logits, keep, labels, 1, 2, grid=grid)

    # Recompute each grid value's AUC on ref 2's OUT examples, ref 1 as target.
    usable = ~keep[2]
    pair_logits, pair_keep = logits[[1, 2]][:, usable], keep[[1, 2]][:, usable]
    aucs = [
        _auc(rmia.scores(pair_logits, pair_keep, labels[usable], 0, a=a), pair_keep[0])
        for a in grid
    ]
    assert best in grid
    assert aucs[grid.index(best)] == max(aucs)
    assert max(aucs) > 0.6


def test_shokri_separates_members_and_is_chance_without_signal():
    # Shokri's classifier is global per class, so keep the per-example spread small.
    separable = _synthetic(**FEW_SHADOWS, shift=2.0, spread=0.3, centre=2.0)
    identical = _synthetic(**FEW_SHADOWS, shift=0.0, spread=0.3, centre=2.0)

    assert _mean_auc(shokri.scores, separable) > 0.85
    assert abs(_mean_auc(shokri.scores, identical) - 0.5) < 0.04


def test_shokri_is_deterministic_given_seed():
    data = _synthetic(**FEW_SHADOWS, num_classes=3, spread=0.3, centre=2.0)

    first = shokri.scores(*data, 0, seed=3)
    again = shokri.scores(*data, 0, seed=3)
    other = shokri.scores(*data, 0, seed=4)

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert _auc(first, data[1][0]) > 0.65


ALL_ATTACKS = [
    pytest.param(lira.scores, {}, id="lira"),
    pytest.param(lira.scores, dict(online=False), id="lira_offline"),
    pytest.param(rmia.scores, {}, id="rmia"),
    pytest.param(rmia.scores, dict(online=True), id="rmia_online"),
    pytest.param(shokri.scores, dict(epochs=20), id="shokri"),
]


@pytest.mark.parametrize(("attack_fn", "options"), ALL_ATTACKS)
@pytest.mark.parametrize("gap", [100.0, -100.0])
def test_saturated_probabilities_give_finite_scores(attack_fn, options, gap):
    # p_y rounds to 1 (gap 100) or underflows towards 0 (gap -100) in every model.
    rng = np.random.default_rng(0)
    logits, keep, labels = _synthetic(num_models=8, num_examples=100, num_classes=3)
    logits = np.zeros_like(logits)
    np.put_along_axis(
        logits,
        labels[None, :, None, None],
        gap + rng.standard_normal((8, 100, 1, 1)).astype(np.float32) * 1e-3,
        axis=-1,
    )

    result = attack_fn(logits, keep, labels, 0, **options)

    assert result.shape == (100,)
    assert np.all(np.isfinite(result))


@pytest.mark.parametrize(("attack_fn", "options"), ALL_ATTACKS)
def test_members_are_the_positive_class(attack_fn, options):
    logits, keep, labels = _synthetic(**FEW_SHADOWS, spread=0.3, centre=2.0)
    flipped = keep.copy()
    flipped[0] = ~flipped[0]

    member_scores = attack_fn(logits, keep, labels, 0, **options)

    # The attack never reads the target's own keep row.
    np.testing.assert_array_equal(
        attack_fn(logits, flipped, labels, 0, **options), member_scores
    )
    auc = _auc(member_scores, keep[0])
    assert auc > 0.6
    assert _auc(member_scores, flipped[0]) == pytest.approx(1.0 - auc, abs=1e-12)


def test_evaluate_averages_over_targets():
    data = _synthetic(num_examples=500)

    result = shadow.evaluate(lira.scores, *data, [0, 3], online=False)

    aucs = [_auc(lira.scores(*data, t, online=False), data[1][t]) for t in (0, 3)]
    assert result["auc"]["mean"] == pytest.approx(np.mean(aucs))
    assert result["auc"]["std"] == pytest.approx(np.std(aucs))
    assert result["auc"]["std"] > 0.0
    assert set(result["tpr_at_fpr"]) == {"0.001", "0.01"}
    assert result["targets"] == [0, 3]
    assert "roc" not in result["per_target"][0]


@pytest.mark.parametrize(
    ("targets", "message"),
    [([], "targets is empty"), ([1, 1], "lists a model twice"), ([32], "target=32")],
)
def test_evaluate_rejects_bad_targets(targets, message):
    with pytest.raises(ValueError, match=message):
        shadow.evaluate(lira.scores, *_synthetic(num_examples=50), targets)


@pytest.mark.parametrize(
    ("attack_fn", "options", "message"),
    [
        (lira.scores, dict(num_shadows=8), "attack.num_shadows=8 exceeds the 7 models"),
        (lira.scores, dict(num_shadows=0), "attack.num_shadows=0 must be None"),
        (rmia.scores, dict(num_references=9), "attack.num_references=9 exceeds the 7"),
        (shokri.scores, dict(num_shadows=8), "attack.num_shadows=8 exceeds the 7"),
        # One shadow: the examples it trained on have no OUT shadow, the rest no IN.
        (lira.scores, dict(num_shadows=1), "attack.num_shadows=1 leaves .* IN"),
        (lira.scores, dict(num_shadows=1, online=False), "attack.num_shadows=1 .* OUT"),
        (rmia.scores, dict(num_references=1), "attack.num_references=1 leaves .* OUT"),
        (rmia.scores, dict(a=1.5), r"attack.a=1.5 must be a number in \[0, 1\]"),
        (rmia.scores, dict(a=-0.1), "attack.a=-0.1"),
        (rmia.scores, dict(gamma=0.0), "attack.gamma=0.0 must be a finite number > 0"),
        (rmia.scores, dict(num_population=61), "attack.num_population=61 exceeds"),
        (rmia.scores, dict(num_population=1), "attack.num_population=1 must be"),
        (rmia.scores, dict(population_rng_seed=-1), "attack.population_rng_seed=-1"),
        (lira.scores, dict(online="yes"), "attack.online='yes' must be True or False"),
        (shokri.scores, dict(hidden=0), "attack.hidden=0 must be an integer >= 1"),
        (shokri.scores, dict(epochs=1.5), "attack.epochs=1.5"),
        (shokri.scores, dict(learning_rate=0.0), "attack.learning_rate=0.0"),
    ],
)
def test_bad_options_name_the_option(attack_fn, options, message):
    with pytest.raises(ValueError, match=message):
        attack_fn(*_synthetic(**SMALL), 0, **options)


def test_online_lira_without_in_shadows_fails_loudly():
    # Two shadows that trained on the same half: no example is IN in both and OUT in
    # neither, and half the examples have no IN shadow at all.
    logits, keep, labels = _synthetic(**SMALL)
    keep[1] = keep[2] = np.arange(60) < 30
    keep[3] = ~keep[1]

    with pytest.raises(ValueError, match="attack.num_shadows=2 leaves 30 .* IN"):
        lira.scores(logits, keep, labels, 0, num_shadows=2, fixed_variance=True)


def test_per_example_variance_needs_two_shadows_per_side():
    logits, keep, labels = _synthetic(**SMALL)
    keep[1:4] = [np.arange(60) < 30, np.arange(60) >= 30, np.arange(60) % 2 == 0]

    with pytest.raises(ValueError, match="fewer than 2 IN .* attack.fixed_variance"):
        lira.scores(logits, keep, labels, 0, num_shadows=3)
    # One shadow per side suffices for the pooled variance.
    result = lira.scores(logits, keep, labels, 0, num_shadows=3, fixed_variance=True)
    assert np.all(np.isfinite(result))


@pytest.mark.parametrize(
    # change: (logits, keep, labels) -> a bad version of them.
    ("change", "message"),
    [
        (lambda z, k, y: (z[:7], k[:7], y), "7 models; shadow attacks need an even"),
        (lambda z, k, y: (z[:, :, 0], k, y), "logits must be 4-D"),
        (lambda z, k, y: (z, k[:, :10], y), r"keep must have shape \(8, 60\)"),
        (lambda z, k, y: (z, k * 2, y), r"keep has values \[2\]"),
        (lambda z, k, y: (np.where(z == 0, np.nan, z), k, y), "NaN or infinite"),
        (lambda z, k, y: (z, k, y + 2), "labels has values"),
    ],
)
def test_bad_inputs_are_rejected(change, message):
    logits, keep, labels = change(*_synthetic(**SMALL))

    for attack_fn in (lira.scores, rmia.scores, shokri.scores):
        with pytest.raises(ValueError, match=message):
            attack_fn(logits, keep, labels, 0)


def test_bad_target_and_reference_indices_are_rejected():
    data = _synthetic(**SMALL)

    with pytest.raises(ValueError, match=r"target=8 must be an integer model index"):
        lira.scores(*data, 8)
    with pytest.raises(ValueError, match="ref_j=1 must be a model index"):
        rmia.fit_a(*data, 1, 1)

"""The boundary-distance attack against linear classifiers, whose distance to the
boundary is known in closed form: accuracy, the query budget, determinism and the
pixel box."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamixup_jax.attacks import boundary
from adamixup_jax.attacks.label_only import LabelOracle


class Linear:
    """Label 1 iff sum(w * x) + bias > 0 (x in pixel units), as `predict_labels` with
    its `traceable` form."""

    def __init__(self, weights: np.ndarray, bias: float):
        self.weights = jnp.asarray(weights, jnp.float32)
        self.bias = float(bias)

    def traceable(self, images):
        margins = jnp.sum(images * self.weights, axis=(1, 2, 3)) + self.bias
        return (margins > 0).astype(jnp.int32)

    def __call__(self, images):
        return np.asarray(self.traceable(jnp.asarray(images, jnp.float32)))


@functools.cache
def analytic_case():
    """12 images 4x4x1 with a random linear classifier through the middle of them;
    the last 3 carry the wrong label. Returns (classifier, images, labels, true
    distances on the [0, 1] scale, misclassified mask). Cached: the compiled search
    is reused only for the same classifier object."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(4, 4, 1))
    images = rng.integers(60, 196, (12, 4, 4, 1), dtype=np.uint8)
    margins = (images * weights).sum(axis=(1, 2, 3))
    bias = -margins.mean()
    margins += bias
    true = np.abs(margins) / np.linalg.norm(weights) / 255
    misclassified = np.arange(12) >= 9
    labels = np.where(misclassified, margins <= 0, margins > 0).astype(np.int64)
    return Linear(weights, bias), images, labels, true, misclassified


@functools.cache
def analytic_search(max_queries: int, chunk_size: int = 16, seed: int = 0) -> dict:
    classifier, images, labels, _, _ = analytic_case()
    return boundary.search(
        classifier,
        images,
        labels,
        key=jax.random.key(seed),
        max_queries=max_queries,
        chunk_size=chunk_size,
    )


def test_analytic_case_is_well_inside_the_box():
    classifier, images, _, true, _ = analytic_case()
    weights = np.asarray(classifier.weights, np.float64)
    margins = (images * weights).sum(axis=(1, 2, 3)) + classifier.bias
    closest = images - (margins / (weights**2).sum())[:, None, None, None] * weights
    assert true.min() > 0.01
    assert closest.min() > 5 and closest.max() < 250


def test_distance_matches_linear_boundary():
    _, _, _, true, misclassified = analytic_case()
    got = analytic_search(2000)["distances"][~misclassified]
    ratio = got / true[~misclassified]
    # Every point found has another label, so none can beat the true distance.
    assert ratio.min() >= 1 - 1e-4
    assert ratio.max() <= 1.05


def test_misclassified_score_zero_at_one_query():
    misclassified = analytic_case()[4]
    for max_queries in (300, 2000):
        result = analytic_search(max_queries)
        np.testing.assert_array_equal(result["distances"][misclassified], 0.0)
        np.testing.assert_array_equal(result["queries"][misclassified], 1)
        assert (result["distances"][~misclassified] > 0).all()


@pytest.mark.parametrize("max_queries", [300, 1000, 2000])
def test_queries_follow_the_budget_formula(max_queries):
    _, _, _, _, misclassified = analytic_case()
    # Defaults: 10 noise starts, 10 binary-search steps, 50 probes, 8 step sizes.
    setup, per_iteration = 1 + 10 + 10, 50 + 8 + 10
    iterations = (max_queries - setup) // per_iteration
    queries = analytic_search(max_queries)["queries"]
    assert queries.dtype == np.int64
    np.testing.assert_array_equal(
        queries[~misclassified], setup + iterations * per_iteration
    )
    assert queries.max() <= max_queries
    assert max_queries - queries.max() < per_iteration


def test_larger_budget_never_farther():
    small, medium, large = (analytic_search(n)["distances"] for n in (300, 1000, 2000))
    assert (medium <= small).all() and (large <= medium).all()
    assert large.sum() < small.sum()


def test_same_key_same_scores_whatever_the_chunk_size():
    classifier, images, labels, _, _ = analytic_case()
    first = analytic_search(300)
    again = boundary.search(
        classifier,
        images,
        labels,
        key=jax.random.key(0),
        max_queries=300,
        chunk_size=16,
    )
    np.testing.assert_array_equal(again["distances"], first["distances"])

    # Chunks of 5, 5 and 2 + 3 padding; a different batch shape may round differently.
    padded = analytic_search(300, chunk_size=5)
    np.testing.assert_allclose(padded["distances"], first["distances"], rtol=1e-5)
    np.testing.assert_array_equal(padded["queries"], first["queries"])

    searched = first["distances"] > 0
    other_key = analytic_search(300, seed=1)["distances"][searched]
    assert (np.abs(other_key / first["distances"][searched] - 1) > 1e-4).all()


def test_scores_are_the_search_distances():
    classifier, images, labels, _, _ = analytic_case()
    options = {"max_queries": 300, "chunk_size": 16}
    got = boundary.scores(classifier, images, labels, key=jax.random.key(0), **options)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, analytic_search(300)["distances"])


def test_perturbations_stay_in_the_pixel_box():
    # Label 1 iff 4 * x[0] + sum(other pixels) > that sum at the image + 100. The
    # unconstrained closest point raises pixel 0 from 250 past 255, so within the
    # box pixel 0 stops at 255 and the other 15 pixels make up the rest.
    weights = np.ones((4, 4, 1))
    weights[0, 0, 0] = 4
    image = np.full((1, 4, 4, 1), 64, np.uint8)
    image[0, 0, 0, 0] = 250
    classifier = Linear(weights, -(weights * image[0]).sum() - 100)
    unconstrained = 100 / np.linalg.norm(weights) / 255
    in_box = np.sqrt(5**2 + 15 * (80 / 15) ** 2) / 255
    got = boundary.scores(classifier, image, np.array([0]), key=jax.random.key(0))
    assert got[0] >= in_box * (1 - 1e-4)
    assert got[0] <= in_box * 1.1
    assert got[0] > unconstrained * 1.1


def test_no_start_found_scores_the_box_diagonal():
    class Constant:
        def traceable(self, images):
            return jnp.zeros(images.shape[0], jnp.int32)

        def __call__(self, images):
            return np.zeros(len(images), np.int64)

    images = np.full((2, 4, 4, 1), 128, np.uint8)
    result = boundary.search(
        Constant(), images, np.array([0, 1]), key=jax.random.key(0), chunk_size=2
    )
    np.testing.assert_array_equal(result["distances"], [np.sqrt(16), 0.0])
    np.testing.assert_array_equal(result["queries"], [1 + 10, 1])


def test_runs_a_convolutional_label_oracle():
    # A random 3-class conv net, vmapped over probes inside the search, as the
    # pipeline's models are.
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 1, 4))
    dense = jax.random.normal(jax.random.key(2), (8 * 8 * 4, 3))

    def traceable(pixels):
        features = jax.lax.conv_general_dilated(
            pixels / 255 - 0.5,
            kernel,
            (1, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return jnp.argmax(jax.nn.relu(features).reshape(len(pixels), -1) @ dense, -1)

    oracle = LabelOracle(traceable)
    images = np.random.default_rng(4).integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    labels = oracle(images)
    labels[0] = (labels[0] + 1) % 3
    result = boundary.search(
        oracle, images, labels, key=jax.random.key(0), max_queries=300
    )
    assert result["distances"][0] == 0 and result["queries"][0] == 1
    assert (result["distances"][1:] > 0).all()
    assert (result["distances"][1:] < np.sqrt(8 * 8)).all()
    np.testing.assert_array_equal(result["queries"][1:], 21 + 4 * 68)


def test_no_examples_give_empty_results():
    classifier = analytic_case()[0]
    result = boundary.search(
        classifier,
        np.zeros((0, 4, 4, 1), np.uint8),
        np.zeros(0, np.int64),
        key=jax.random.key(0),
    )
    assert result["distances"].shape == (0,) and result["queries"].shape == (0,)


def test_default_config_passes_its_own_check():
    config = boundary.default_config()
    boundary.check_options(**config.to_dict())
    assert config.max_queries == 1000


@pytest.mark.parametrize(
    "options, name",
    [
        ({"max_queries": 0}, "attack.boundary.max_queries=0"),
        ({"max_queries": -5}, "attack.boundary.max_queries=-5"),
        ({"max_queries": 2.5}, "attack.boundary.max_queries=2.5"),
        ({"max_queries": True}, "attack.boundary.max_queries=True"),
        ({"max_queries": 88}, "attack.boundary.max_queries=88 is too small"),
        ({"num_gradient_samples": 1}, "attack.boundary.num_gradient_samples=1"),
        ({"binary_search_steps": -1}, "attack.boundary.binary_search_steps=-1"),
        ({"binary_search_steps": 21}, "attack.boundary.binary_search_steps=21"),
        ({"num_init_trials": 1.5}, "attack.boundary.num_init_trials=1.5"),
        ({"step_search_steps": 0}, "attack.boundary.step_search_steps=0"),
        ({"chunk_size": 0}, "attack.boundary.chunk_size=0"),
        ({"num_queries": 10}, "attack.boundary has no option 'num_queries'"),
    ],
)
def test_check_options_rejects(options, name):
    with pytest.raises(ValueError, match=re.escape(name)):
        boundary.check_options(**options)
    classifier, images, labels, _, _ = analytic_case()
    with pytest.raises(ValueError, match=re.escape(name)):
        boundary.scores(classifier, images, labels, key=jax.random.key(0), **options)


def test_the_smallest_budget_pays_for_one_iteration():
    boundary.check_options(max_queries=89)  # 21 to reach the boundary, 68 for one.


def test_needs_traceable_and_key():
    _, images, labels, _, _ = analytic_case()

    def predict_labels(images):
        return np.zeros(len(images), np.int64)

    with pytest.raises(ValueError, match="predict_labels.traceable"):
        boundary.scores(predict_labels, images, labels, key=jax.random.key(0))

    predict_labels.traceable = lambda images: jnp.zeros((len(images), 2), jnp.int32)
    with pytest.raises(ValueError, match=r"int labels \[2\], got int32 \(2, 2\)"):
        boundary.scores(predict_labels, images, labels, key=jax.random.key(0))

    with pytest.raises(ValueError, match="key=None"):
        boundary.scores(analytic_case()[0], images, labels)

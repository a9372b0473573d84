"""Label-only attacks (gap, augmentation, noise) against fake classifiers whose answers
can be worked out by hand."""

import jax
import numpy as np
import pytest

from adamixup_jax.attacks import augmentation, gap, noise


def bright_pixel_at(row: int, col: int):
    """A classifier that says 1 iff pixel (row, col) of channel 0 is bright, else 0."""

    def predict_labels(images):
        return (images[:, row, col, 0] > 127).astype(np.int64)

    return predict_labels


def one_bright_pixel(size: int, row: int, col: int) -> np.ndarray:
    image = np.zeros((size, size, 1), np.uint8)
    image[row, col] = 255
    return image


def mean_above(threshold: float):
    def predict_labels(images):
        brightness = images.reshape(len(images), -1).mean(axis=1)
        return (brightness > threshold).astype(np.int32)

    return predict_labels


def test_gap_scores_correct_predictions_one():
    images = np.zeros((4, 2, 2, 1), np.uint8)
    images[1] = images[3] = 200
    labels = np.array([0, 1, 1, 0])
    # Predictions 0, 1, 0, 1: right, right, wrong, wrong.
    np.testing.assert_array_equal(
        gap.scores(mean_above(100), images, labels), [1.0, 1.0, 0.0, 0.0]
    )


def test_augmentation_counts_shifted_copies_by_hand():
    # 4x4 images; the classifier says 1 iff pixel (1, 1) is bright. With shift=1 there
    # are 9 copies (dy, dx in {-1, 0, 1}^2).
    predict_labels = bright_pixel_at(1, 1)
    images = np.stack([one_bright_pixel(4, 1, 1), one_bright_pixel(4, 2, 2)])
    labels = np.array([1, 0])
    got = augmentation.scores(predict_labels, images, labels, shift=1, flip=False)
    # Example 0 stays right only unshifted; example 1 goes wrong only when shifted by
    # (-1, -1), which moves its bright pixel onto (1, 1).
    np.testing.assert_allclose(got, [1 / 9, 8 / 9])

    # Flipping maps column 1 of a width-4 image to column 2 (and 2 to 1), so among the
    # 9 flipped copies example 0 is right only at (dy, dx) = (0, -1), and example 1,
    # now bright at (2, 1), is wrong only at (-1, 0).
    got = augmentation.scores(predict_labels, images, labels, shift=1, flip=True)
    np.testing.assert_allclose(got, [2 / 18, 16 / 18])


def test_augmentation_rotations_by_hand():
    # Bright (1, 1) of a 4x4 image goes to (2, 1) at +90 and to (2, 2) at 180, so only
    # the identity of 3 copies keeps it in place.
    images = one_bright_pixel(4, 1, 1)[None]
    options = {"shift": 0, "flip": False, "angles": (90, 180)}
    got = augmentation.scores(bright_pixel_at(1, 1), images, np.array([1]), **options)
    np.testing.assert_allclose(got, [1 / 3])


@pytest.mark.parametrize("size", [3, 4])
def test_rotate_matches_rot90(size):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    for angle, k in [(90, 1), (-90, -1), (180, 2), (-180, 2)]:
        expected = np.rot90(images, k=k, axes=(1, 2))
        rotated = augmentation.rotate(images, angle)
        assert rotated.dtype == np.uint8
        np.testing.assert_array_equal(rotated, expected, err_msg=f"angle={angle}")
    np.testing.assert_array_equal(augmentation.rotate(images, 0), images)


def test_rotate_fills_corners_black():
    images = np.full((1, 5, 5, 1), 255, np.uint8)
    rotated = augmentation.rotate(images, 45)
    assert rotated[0, 0, 0, 0] == 0 and rotated[0, 2, 2, 0] == 255


@pytest.mark.parametrize(
    "options, name",
    [
        ({"angles": (181,)}, "attack.augmentation.angles"),
        ({"angles": (-200, 0)}, "attack.augmentation.angles"),
        ({"shift": -1}, "attack.augmentation.shift"),
        ({"shift": 1.5}, "attack.augmentation.shift"),
        ({"flip": 1}, "attack.augmentation.flip"),
    ],
)
def test_augmentation_rejects_bad_options(options, name):
    images = np.zeros((1, 4, 4, 1), np.uint8)
    with pytest.raises(ValueError, match=name):
        augmentation.scores(bright_pixel_at(0, 0), images, np.array([0]), **options)


def test_noise_fraction_far_from_and_at_threshold():
    # Mean-brightness classifier at 127.5; a half-127, half-128 image sits on it.
    far = np.stack([np.full((8, 8, 1), level, np.uint8) for level in (20, 235)])
    at = np.full((1, 8, 8, 1), 127, np.uint8)
    at[0, :, 4:] = 128
    images = np.concatenate([far, at])
    labels = np.array([0, 1, 1])
    options = {"sigma": 10.0, "num_samples": 200}
    got = noise.scores(
        mean_above(127.5), images, labels, key=jax.random.key(0), **options
    )
    np.testing.assert_array_equal(got[:2], [1.0, 1.0])
    assert abs(got[2] - 0.5) < 0.15


def test_noise_is_deterministic_per_key():
    rng = np.random.default_rng(1)
    images = rng.integers(100, 156, (16, 6, 6, 1), dtype=np.uint8)
    labels = (images.reshape(16, -1).mean(axis=1) > 127.5).astype(np.int64)
    options = {"sigma": 20.0, "num_samples": 20}
    first, again, other = (
        noise.scores(
            mean_above(127.5), images, labels, key=jax.random.key(seed), **options
        )
        for seed in (3, 3, 4)
    )
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(
    "options, name",
    [
        ({"sigma": 0.0}, "attack.noise.sigma"),
        ({"sigma": -1.0}, "attack.noise.sigma"),
        ({"num_samples": 0}, "attack.noise.num_samples"),
        ({"num_samples": -3}, "attack.noise.num_samples"),
    ],
)
def test_noise_rejects_bad_options(options, name):
    images = np.zeros((1, 4, 4, 1), np.uint8)
    with pytest.raises(ValueError, match=name):
        noise.scores(
            mean_above(1), images, np.array([0]), key=jax.random.key(0), **options
        )


def test_scores_depend_only_on_predicted_labels():
    # Two logit functions with the same argmax everywhere, as a MemGuard-style defence
    # that perturbs logits but keeps the label would produce.
    weights = np.random.default_rng(2).normal(size=(4 * 4 * 1, 5))

    def logits(images):
        return images.reshape(len(images), -1).astype(np.float64) @ weights

    def perturbed_logits(images):
        z = logits(images)
        # A monotone map per row plus a row-constant shift keeps the argmax.
        return np.tanh(z / 1e3) * 7.0 + z.mean(axis=1, keepdims=True)

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (12, 4, 4, 1), dtype=np.uint8)
    labels = rng.integers(0, 5, 12)
    plain = lambda x: logits(x).argmax(axis=1)  # noqa: E731
    defended = lambda x: perturbed_logits(x).argmax(axis=1)  # noqa: E731
    assert not np.allclose(logits(images), perturbed_logits(images))
    for attack, options in [
        (gap.scores, {}),
        (augmentation.scores, {"shift": 1, "flip": True, "angles": (15, -15)}),
        (noise.scores, {"sigma": 30.0, "num_samples": 8}),
    ]:
        key = jax.random.key(5)
        np.testing.assert_array_equal(
            attack(plain, images, labels, key=key, **options),
            attack(defended, images, labels, key=key, **options),
        )

"""Noise-robustness attack, label-only: members tend to stay correctly labelled under
more input noise. The score is the fraction of Gaussian-noised copies of an image that
the model still labels correctly."""

import numbers

import jax
import numpy as np

from adamixup_jax.attacks.label_only import (
    PredictLabels,
    checked_images_and_labels,
    fraction_correct,
)


def noised(images: np.ndarray, key: jax.Array, sigma: float) -> np.ndarray:
    """uint8 `images` plus N(0, sigma^2) noise in pixel units, rounded and clipped
    to [0, 255]."""
    noise = np.asarray(jax.random.normal(key, images.shape), np.float64) * sigma
    return np.clip(np.rint(images + noise), 0, 255).astype(np.uint8)


def check_options(sigma=8.0, num_samples=16) -> None:
    """Raises ValueError, naming the `attack.noise` key, for a bad option."""
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not sigma > 0:
        raise ValueError(f"attack.noise.sigma={sigma!r} must be a number > 0.")
    if not np.isfinite(sigma):
        raise ValueError(f"attack.noise.sigma={sigma!r} must be finite.")
    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, numbers.Integral)
        or num_samples < 1
    ):
        raise ValueError(
            f"attack.noise.num_samples={num_samples!r} must be an int >= 1."
        )


def scores(
    predict_labels: PredictLabels,
    images,
    labels,
    *,
    key: jax.Array | None = None,
    sigma: float = 8.0,
    num_samples: int = 16,
) -> np.ndarray:
    """Fraction [examples] float64 of `num_samples` noised copies labelled correctly.

    Sample s uses `jax.random.fold_in(key, s)`, so the same key gives the same scores.
    Limitation: one noise draw covers all examples at once, so an example's noise
    depends on the size of the batch it is scored in, not only on `key`.
    """
    check_options(sigma=sigma, num_samples=num_samples)
    if key is None:
        raise ValueError("attack.noise needs a jax.random.key; got key=None.")
    images, labels = checked_images_and_labels(images, labels)

    variants = (
        noised(images, jax.random.fold_in(key, sample), float(sigma))
        for sample in range(num_samples)
    )
    return fraction_correct(predict_labels, variants, labels)

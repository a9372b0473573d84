"""Data-augmentation attack (Choquette-Choo et al. 2021), label-only: members tend to
stay correctly labelled under the augmentations seen in training. The score is the
fraction of augmented copies (shifts, flips, rotations; identity always included) that
the model still labels correctly."""

import itertools
import numbers

import jax.numpy as jnp
import numpy as np

from adamixup_jax.attacks.label_only import (
    PredictLabels,
    checked_images_and_labels,
    fraction_correct,
)
from adamixup_jax.scoring import transform


def rotate(images: np.ndarray, angle: float) -> np.ndarray:
    """`images` [batch, H, W, C] rotated counter-clockwise (as displayed, row 0 at the
    top) by `angle` degrees about the image centre, nearest-neighbour, uncovered pixels
    black. Same dtype out as in; angle 90 on a square image equals
    `np.rot90(image, k=1, axes=(0, 1))`."""
    height, width = images.shape[1:3]
    centre_row, centre_col = (height - 1) / 2, (width - 1) / 2
    theta = np.deg2rad(angle)
    cos, sin = np.cos(theta), np.sin(theta)

    # Inverse mapping: each output pixel takes the input pixel rotated back onto it,
    # in (x right, y up) coordinates about the centre.
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    x, y = cols - centre_col, centre_row - rows
    source_cols = np.rint(cos * x + sin * y + centre_col).astype(np.int64)
    source_rows = np.rint(centre_row - (-sin * x + cos * y)).astype(np.int64)
    inside = (0 <= source_rows) & (source_rows < height)
    inside &= (0 <= source_cols) & (source_cols < width)

    rotated = images[
        :, np.clip(source_rows, 0, height - 1), np.clip(source_cols, 0, width - 1)
    ]
    return np.where(inside[None, :, :, None], rotated, np.zeros((), images.dtype))


def augmentations(
    shift: int, flip: bool, angles: tuple[float, ...]
) -> list[tuple[bool, int, int, float]]:
    """(flip, dy, dx, angle) of each copy: the identity first, then every flip and
    shift with |dy|, |dx| <= `shift`, then each angle applied to the plain image.
    Duplicates (such as angle 0) are kept only once."""
    candidates = [(False, 0, 0, 0.0)]
    offsets = range(-shift, shift + 1)
    flips = [False, True] if flip else [False]
    for flipped, dy, dx in itertools.product(flips, offsets, offsets):
        candidates.append((flipped, dy, dx, 0.0))
    candidates += [(False, 0, 0, float(angle)) for angle in angles]
    return list(dict.fromkeys(candidates))


def augmented(
    images: np.ndarray, flip: bool, dy: int, dx: int, angle: float
) -> np.ndarray:
    """`images` flipped and shifted (by `scoring.transform`), then rotated."""
    images = np.asarray(transform(jnp.asarray(images), flip, dy, dx))
    return rotate(images, angle) if angle else images


def check_options(shift=1, flip=True, angles=()) -> None:
    """Raises ValueError, naming the `attack.augmentation` key, for a bad option."""
    if isinstance(shift, bool) or not isinstance(shift, numbers.Integral) or shift < 0:
        raise ValueError(f"attack.augmentation.shift={shift!r} must be an int >= 0.")
    if not isinstance(flip, (bool, np.bool_)):
        raise ValueError(f"attack.augmentation.flip={flip!r} must be a bool.")
    if not isinstance(angles, (tuple, list)) or not all(
        isinstance(angle, numbers.Real) and not isinstance(angle, bool)
        for angle in angles
    ):
        raise ValueError(
            f"attack.augmentation.angles={angles!r} must be a tuple of numbers "
            "(degrees)."
        )
    if not all(-180 <= angle <= 180 for angle in angles):
        raise ValueError(
            f"attack.augmentation.angles={angles!r} must each be in [-180, 180] "
            "degrees."
        )


def scores(
    predict_labels: PredictLabels,
    images,
    labels,
    *,
    key=None,
    shift: int = 1,
    flip: bool = True,
    angles: tuple[float, ...] = (),
) -> np.ndarray:
    """Fraction [examples] float64 of augmented copies labelled correctly. `key` is
    unused (the augmentations are a fixed set)."""
    del key
    check_options(shift=shift, flip=flip, angles=angles)
    images, labels = checked_images_and_labels(images, labels)
    height, width = images.shape[1:3]
    if shift >= min(height, width):
        raise ValueError(
            f"attack.augmentation.shift={shift!r} must be smaller than the image side "
            f"{min(height, width)}."
        )

    copies = augmentations(int(shift), bool(flip), angles)
    variants = (augmented(images, *copy) for copy in copies)
    return fraction_correct(predict_labels, variants, labels)

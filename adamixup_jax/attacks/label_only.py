"""What every label-only attack shares: the check of its (images, labels) inputs and
the fraction of perturbed copies of each image that the model still labels correctly.

A label-only attacker sees only `predict_labels(images_uint8 [B, H, W, C]) -> [B]`
integer labels, never logits, so defences that only perturb the logits (and keep
their argmax) cannot change these scores.
"""

from collections.abc import Callable, Iterable

import numpy as np

PredictLabels = Callable[[np.ndarray], np.ndarray]


def checked_images_and_labels(images, labels) -> tuple[np.ndarray, np.ndarray]:
    """`images` as uint8 [examples, H, W, C] and `labels` as int64 [examples].

    Raises ValueError unless images are 4-D uint8 and labels are non-negative
    integers, one per image.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4:
        raise ValueError(
            f"images must be 4-D [examples, H, W, C], got shape {images.shape}."
        )
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 pixels, got dtype {images.dtype}.")
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"labels must have shape ({images.shape[0]},) to match images, "
            f"got {labels.shape}."
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}.")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got minimum {labels.min()}.")
    return images, labels


def predicted(predict_labels: PredictLabels, images: np.ndarray) -> np.ndarray:
    """`predict_labels(images)` checked to be integer labels [examples] int64."""
    predictions = np.asarray(predict_labels(images))
    if predictions.shape != (images.shape[0],):
        raise ValueError(
            f"predict_labels must return shape ({images.shape[0]},) for "
            f"{images.shape[0]} images, got {predictions.shape}."
        )
    if predictions.dtype.kind not in "iu":
        raise ValueError(
            f"predict_labels must return integer labels, got dtype {predictions.dtype}."
        )
    return predictions.astype(np.int64)


def fraction_correct(
    predict_labels: PredictLabels, variants: Iterable[np.ndarray], labels: np.ndarray
) -> np.ndarray:
    """Per example, the fraction [examples] float64 of `variants` (each uint8
    [examples, H, W, C], one perturbed copy of every image) labelled `labels`."""
    num_correct = np.zeros(labels.shape, np.int64)
    num_variants = 0
    for images in variants:
        num_correct += predicted(predict_labels, images) == labels
        num_variants += 1
    if not num_variants:
        raise ValueError("fraction_correct needs at least one variant of the images.")
    return num_correct / num_variants

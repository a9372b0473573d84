"""What every label-only attack shares: the check of its (images, labels) inputs and
the fraction of perturbed copies of each image that the model still labels correctly.

A label-only attacker sees only `predict_labels(images_uint8 [B, H, W, C]) -> [B]`
integer labels, never logits, so defences that only perturb the logits (and keep
their argmax) cannot change these scores.
"""

from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

PredictLabels = Callable[[np.ndarray], np.ndarray]


class LabelOracle:
    """What a label-only attacker may query: `oracle(images uint8 [B, H, W, C])` gives
    int labels [B]; `oracle.traceable(pixels float32 [B, H, W, C], 0-255 scale)` is
    the same classifier as a pure jax function (for searches that run inside jit,
    such as the boundary-distance attack)."""

    def __init__(
        self,
        traceable: Callable[[jax.Array], jax.Array],
        batch_size: int = 1000,
    ):
        self.traceable = traceable
        self.batch_size = batch_size
        self._jitted = jax.jit(lambda pixels: traceable(pixels).astype(jnp.int32))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        num = images.shape[0]
        size = min(self.batch_size, max(num, 1))
        outputs = []
        for start in range(0, num, size):
            chunk = images[start : start + size]
            pad = size - chunk.shape[0]
            if pad:  # one compiled shape: pad the last chunk with its first image
                chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
            labels = self._jitted(jnp.asarray(chunk, jnp.float32))
            outputs.append(np.asarray(labels, np.int64)[: size - pad])
        if not outputs:
            return np.zeros((0,), np.int64)
        return np.concatenate(outputs)


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

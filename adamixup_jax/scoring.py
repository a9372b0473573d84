"""Inference-mode logits of many models on many examples and their augmented queries.

`logits_many` returns `[models, examples, queries, classes]` float32 — the input of
every shadow-model attack. Query 0 is always the image itself; further queries are the
horizontal flip (where the dataset allows it) and small shifts, filled with black.
"""

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from adamixup_jax import training


def query_transforms(num_queries: int, flip: bool, shift: int) -> list[tuple[bool, int, int]]:
    """The first `num_queries` of: identity, flip, then shifts by `shift` pixels
    (down, up, right, left), each also flipped when `flip`. Entries are
    (flip, dy, dx)."""
    candidates = [(False, 0, 0)] + ([(True, 0, 0)] if flip else [])
    for dy, dx in ((shift, 0), (-shift, 0), (0, shift), (0, -shift)):
        if shift:
            candidates.append((False, dy, dx))
            if flip:
                candidates.append((True, dy, dx))
    if not isinstance(num_queries, int) or not 1 <= num_queries <= len(candidates):
        raise ValueError(
            f"scoring.num_queries={num_queries!r} must be in [1, {len(candidates)}] with "
            f"scoring.flip={flip} and scoring.shift={shift}"
        )
    return candidates[:num_queries]


def transform(images: jax.Array, flip: bool, dy: int, dx: int) -> jax.Array:
    """Flips `[batch, H, W, C]` images left-right and/or shifts them by (dy, dx)
    pixels, filling uncovered pixels with 0."""
    if flip:
        images = images[:, :, ::-1, :]
    if dy or dx:
        height, width = images.shape[1:3]
        pad = max(abs(dy), abs(dx))
        padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        images = padded[:, pad - dy : pad - dy + height, pad - dx : pad - dx + width, :]
    return images


def logits_many(
    model: nn.Module,
    state: training.TrainState,
    images: np.ndarray,
    queries: list[tuple[bool, int, int]],
    batch_size: int = 500,
) -> np.ndarray:
    """Logits `[models, examples, queries, classes]` of the stacked `state` (leading
    model axis) in inference mode on uint8 `images` `[examples, H, W, C]`."""
    predict = training.make_predict_fn(model)

    @jax.jit
    def batch_logits(params, batch_stats, batch):
        per_query = [
            jax.vmap(predict, in_axes=(0, 0, None))(params, batch_stats, transform(batch, *q))
            for q in queries
        ]
        return jnp.stack(per_query, axis=2)  # [models, batch, queries, classes]

    num = images.shape[0]
    outputs = []
    for start in range(0, num, batch_size):
        chunk = images[start : start + batch_size]
        real = chunk.shape[0]
        if real < batch_size and num > batch_size:
            # Pad the last batch so only one shape is ever compiled.
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch_size - real, axis=0)])
        logits = batch_logits(state.params, state.batch_stats, jnp.asarray(chunk))
        outputs.append(np.asarray(logits, np.float32)[:, :real])
    return np.concatenate(outputs, axis=1)

"""Inference-mode logits of many models on many examples and their augmented queries.

`logits_many` returns `[models, examples, queries, classes]` float32 — the input of
every shadow-model attack. Query 0 is always the image itself; further queries are the
horizontal flip (where the dataset allows it) and small shifts, filled with black.
"""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from adamixup_jax import files, training


def query_transforms(
    num_queries: int, flip: bool, shift: int
) -> list[tuple[bool, int, int]]:
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
            f"scoring.num_queries={num_queries!r} must be in [1, {len(candidates)}] "
            "with "
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
            jax.vmap(predict, in_axes=(0, 0, None))(
                params, batch_stats, transform(batch, *q)
            )
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
            chunk = np.concatenate(
                [chunk, np.repeat(chunk[:1], batch_size - real, axis=0)]
            )
        logits = batch_logits(state.params, state.batch_stats, jnp.asarray(chunk))
        outputs.append(np.asarray(logits, np.float32)[:, :real])
    return np.concatenate(outputs, axis=1)


def export_lira_layout(
    folder: str, logits: np.ndarray, keep: np.ndarray, labels: np.ndarray, epochs: int
) -> None:
    """Writes a batch in the folder layout of the LiRA reference scripts:
    `folder/y_train.npy` (labels [N]), and per model m
    `folder/experiment-<m>_<M>/keep.npy` (bool [N]) and
    `folder/experiment-<m>_<M>/logits/<epochs, 10 digits>.npy` ([N, 1, queries, classes]
    float32), so their scoring and plotting scripts can read our runs."""
    num_models = logits.shape[0]
    if keep.shape != logits.shape[:2] or labels.shape != logits.shape[1:2]:
        raise ValueError(
            f"logits {logits.shape}, keep {keep.shape} and labels {labels.shape} do "
            "not "
            "describe the same [models, examples]"
        )
    files.write_npy(os.path.join(folder, "y_train.npy"), np.asarray(labels))
    for m in range(num_models):
        experiment = os.path.join(folder, f"experiment-{m}_{num_models}")
        files.write_npy(os.path.join(experiment, "keep.npy"), np.asarray(keep[m], bool))
        files.write_npy(
            os.path.join(experiment, "logits", f"{epochs:010d}.npy"),
            np.asarray(logits[m], np.float32)[:, None],
        )


def import_lira_layout(folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reads a folder in the LiRA reference layout (see `export_lira_layout`; the
    newest logits file of each experiment) as (logits [M, N, Q, C], keep [M, N],
    labels [N])."""
    experiments = sorted(
        (name for name in os.listdir(folder) if name.startswith("experiment-")),
        key=lambda name: int(name.split("-")[1].split("_")[0]),
    )
    if not experiments:
        raise ValueError(f"{folder!r} holds no experiment-* folders")
    logits, keep = [], []
    for name in experiments:
        logits_folder = os.path.join(folder, name, "logits")
        newest = sorted(f for f in os.listdir(logits_folder) if f.endswith(".npy"))[-1]
        logits.append(np.load(os.path.join(logits_folder, newest))[:, 0])
        keep.append(np.load(os.path.join(folder, name, "keep.npy")).astype(bool))
    return (
        np.stack(logits),
        np.stack(keep),
        np.load(os.path.join(folder, "y_train.npy")),
    )

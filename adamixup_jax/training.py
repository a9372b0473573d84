"""Training one classifier: state, the pure train step, the epoch program and the loop.

`train_step(state, batch, key) -> (state, metrics)` is a pure function; an epoch is a
`lax.scan` of it over the epoch's batches, jitted once with the state donated. All
randomness comes from the key passed in (init, data order, mixing).
"""

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from tqdm import auto as tqdm

from adamixup_jax import data
from adamixup_jax.defenses import Defense

LR_SCHEDULES = ("cosine", "constant", "step")


def default_config() -> ml_collections.ConfigDict:
    """The run's `train` block."""
    config = ml_collections.ConfigDict()
    config.epochs = 60
    config.batch_size = 64
    config.learning_rate = 0.05  # Peak learning rate of SGD.
    config.lr_schedule = (
        "cosine"  # 'cosine' (to 0), 'constant' or 'step' (x0.1 at 50%, 75%).
    )
    config.warmup_epochs = 0  # Linear warm-up from 0, before the schedule.
    config.momentum = 0.9
    config.weight_decay = 5e-4  # Decoupled L2 added to the gradient (SGD-style).
    config.eval_batch_size = 1000  # Batch size for inference-mode passes.
    # Per-epoch logged accuracies use at most this many examples of each eval set
    # (its first ones); final accuracies and attack scores always use all.
    config.log_eval_examples = 250
    config.progress = True  # tqdm progress bar over epochs.
    return config


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any  # BatchNorm running statistics; an empty dict when none.
    opt_state: Any


@dataclasses.dataclass(frozen=True)
class TrainResult:
    state: TrainState
    history: list[dict[str, float]]  # One entry per epoch.
    seconds: float
    predict: Callable  # The jitted inference-mode `make_predict_fn` of the model.


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int):
    """SGD with momentum, decoupled weight decay and the configured lr schedule."""
    total = config.epochs * steps_per_epoch
    warmup = config.warmup_epochs * steps_per_epoch
    peak = config.learning_rate
    if config.lr_schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, max(total - warmup, 1))
    elif config.lr_schedule == "constant":
        main = optax.constant_schedule(peak)
    elif config.lr_schedule == "step":
        main = optax.piecewise_constant_schedule(
            peak, {int(0.5 * total) - warmup: 0.1, int(0.75 * total) - warmup: 0.1}
        )
    else:
        raise ValueError(
            f"train.lr_schedule={config.lr_schedule!r} is not allowed; "
            f"choose one of {LR_SCHEDULES}"
        )
    if warmup > 0:
        main = optax.join_schedules(
            [optax.linear_schedule(0.0, peak, warmup), main], [warmup]
        )
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay),
        optax.sgd(main, momentum=config.momentum),
    )


def init_state(
    model: nn.Module, tx: optax.GradientTransformation, key: jax.Array, image_shape
) -> TrainState:
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    variables = model.init(key, dummy, train=False)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
    )


def make_train_step(
    model: nn.Module,
    tx: optax.GradientTransformation,
    defense: Defense,
    num_classes: int,
) -> Callable:
    """Returns the pure `train_step(state, batch, key) -> (state, metrics)`.

    batch: {'images': uint8 [batch, H, W, C], 'labels': int [batch],
    'weights': float [batch]} — weight 0 marks padding that fills the last batch.
    """

    def train_step(state: TrainState, batch, key):
        inputs = data.normalize(batch["images"])
        inputs, targets, strength = defense.prepare_batch(
            key, inputs, batch["labels"], num_classes, state.step
        )
        weights = batch["weights"]

        def loss_fn(params):
            variables = {"params": params}
            if state.batch_stats:
                variables["batch_stats"] = state.batch_stats
                logits, updates = model.apply(
                    variables, inputs, train=True, mutable=["batch_stats"]
                )
                new_stats = updates["batch_stats"]
            else:
                logits, new_stats = model.apply(variables, inputs, train=True), {}
            per_example = optax.softmax_cross_entropy(logits, targets)
            loss = jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1.0)
            return loss, (logits, new_stats)

        (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state = TrainState(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            batch_stats=new_stats,
            opt_state=opt_state,
        )
        hits = (jnp.argmax(logits, -1) == jnp.argmax(targets, -1)) * weights
        metrics = {
            "loss": loss,
            "mixed_accuracy": jnp.sum(hits) / jnp.maximum(jnp.sum(weights), 1.0),
            "mixing_strength": strength,
        }
        return new_state, metrics

    return train_step


def epoch_batches(key: jax.Array, num_examples: int, batch_size: int):
    """Indices `[steps, batch]` and weights `[steps, batch]` of one shuffled epoch.

    The last batch is filled up with examples from the start of the same shuffled
    order at weight 0, so every example is seen exactly once per epoch at full weight,
    and every batch has the same shape.
    """
    steps = -(-num_examples // batch_size)
    order = jax.random.permutation(key, num_examples)
    padded = jnp.resize(order, steps * batch_size)  # repeats the order cyclically
    weights = (jnp.arange(steps * batch_size) < num_examples).astype(jnp.float32)
    return padded.reshape(steps, batch_size), weights.reshape(steps, batch_size)


def make_epoch_fn(train_step: Callable, batch_size: int) -> Callable:
    """`epoch(state, images, labels, slots, slot_weights, key) -> (state, metrics)`.

    One epoch of one model as a `lax.scan` of the step. `slots` `[L]` are indices into
    `images`/`labels` (uint8 on the device, gathered per batch inside the scan) of the
    model's training examples; `slot_weights` `[L]` are 0 for slots that only pad a
    model's list to a length shared with other models. Not jitted: callers jit it
    alone or under `vmap` over a leading model axis.
    """

    def epoch(state, images, labels, slots, slot_weights, key):
        order_key, step_key = jax.random.split(key)
        positions, position_weights = epoch_batches(
            order_key, slots.shape[0], batch_size
        )
        example_indices = slots[positions]  # [steps, batch]
        weights = slot_weights[positions] * position_weights
        step_keys = jax.random.split(step_key, positions.shape[0])

        def body(state, xs):
            batch_indices, batch_weights, key = xs
            batch = {
                "images": images[batch_indices],
                "labels": labels[batch_indices],
                "weights": batch_weights,
            }
            return train_step(state, batch, key)

        return jax.lax.scan(body, state, (example_indices, weights, step_keys))

    return epoch


def make_predict_fn(model: nn.Module) -> Callable:
    """Jitted inference-mode logits: BatchNorm uses running averages, no dropout."""

    @jax.jit
    def predict(params, batch_stats, images):
        variables = {"params": params}
        if batch_stats:
            variables["batch_stats"] = batch_stats
        return model.apply(variables, data.normalize(images), train=False)

    return predict


def predict_logits(
    predict: Callable, state: TrainState, images: np.ndarray, batch_size: int
) -> np.ndarray:
    """Inference-mode logits `[examples, classes]` float32, in fixed-size batches (the
    last one padded) so only one shape is ever compiled."""
    num = images.shape[0]
    outputs = []
    for start in range(0, num, batch_size):
        chunk = images[start : start + batch_size]
        pad = batch_size - chunk.shape[0]
        if pad and num > batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, axis=0)])
        logits = predict(state.params, state.batch_stats, chunk)
        outputs.append(np.asarray(logits, np.float32)[: batch_size - pad])
    return np.concatenate(outputs)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def train_one(
    model: nn.Module,
    defense: Defense,
    config: ml_collections.ConfigDict,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    key: jax.Array,
    eval_sets: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    description: str = "train",
) -> TrainResult:
    """Trains one model on (images uint8 [N, H, W, C], labels [N]).

    `config` is the run's `train` block. After each epoch, accuracy on (the first
    `config.log_eval_examples` of) every entry of `eval_sets` (name -> (images,
    labels)) is measured in inference mode and logged with the epoch's loss and mixing
    strength.
    """
    steps_per_epoch = -(-images.shape[0] // config.batch_size)
    tx = make_optimizer(config, steps_per_epoch)
    init_key, train_key = jax.random.split(key)
    state = init_state(model, tx, init_key, images.shape[1:])
    train_step = make_train_step(model, tx, defense, num_classes)
    epoch_fn = jax.jit(make_epoch_fn(train_step, config.batch_size), donate_argnums=0)
    predict = make_predict_fn(model)
    device_images = jnp.asarray(images, jnp.uint8)
    device_labels = jnp.asarray(labels, jnp.int32)
    slots = jnp.arange(images.shape[0], dtype=jnp.int32)
    slot_weights = jnp.ones(images.shape[0], jnp.float32)

    eval_sets = {
        name: (
            eval_images[: config.log_eval_examples],
            eval_labels[: config.log_eval_examples],
        )
        for name, (eval_images, eval_labels) in (eval_sets or {}).items()
    }
    history = []
    start = time.perf_counter()
    bar = tqdm.trange(config.epochs, desc=description, disable=not config.progress)
    for epoch in bar:
        state, metrics = epoch_fn(
            state,
            device_images,
            device_labels,
            slots,
            slot_weights,
            jax.random.fold_in(train_key, epoch),
        )
        record = {
            "epoch": epoch + 1,
            "loss": float(jnp.mean(metrics["loss"])),
            "mixing_strength": float(jnp.mean(metrics["mixing_strength"])),
        }
        for name, (eval_images, eval_labels) in eval_sets.items():
            logits = predict_logits(predict, state, eval_images, config.eval_batch_size)
            record[f"{name}_accuracy"] = accuracy(logits, eval_labels)
        history.append(record)
        summary = " ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in record.items()
        )
        logging.info("%s epoch %s", description, summary)
        bar.set_postfix(
            {k: v for k, v in record.items() if k != "epoch"}, refresh=False
        )
    jax.block_until_ready(state)
    return TrainResult(
        state=state,
        history=history,
        seconds=time.perf_counter() - start,
        predict=predict,
    )

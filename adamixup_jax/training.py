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
from adamixup_jax.defenses import Defense, DefenseBase

LR_SCHEDULES = ("cosine", "constant", "step")
# fold_in constant of a step key's validation-batch draw: far from the small indices
# that split(key, n)[i] == fold_in(key, i) gives a defense's own key splits.
_VALIDATION_STREAM = 0x7A11D


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
    selected_epoch: int = 0  # The epoch whose parameters `state` holds (1-based).


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


def _apply(model, state, params, inputs):
    """Train-mode logits, and the BatchNorm statistics updated by this batch (the
    unchanged {} when the model has none)."""
    variables = {"params": params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
        logits, updates = model.apply(
            variables, inputs, train=True, mutable=["batch_stats"]
        )
        return logits, updates["batch_stats"]
    return model.apply(variables, inputs, train=True), state.batch_stats


def make_train_step(
    model: nn.Module,
    tx: optax.GradientTransformation,
    defense: Defense,
    num_classes: int,
) -> Callable:
    """Returns the pure `train_step(state, batch, key) -> (state, metrics)`.

    batch: {'images': uint8 [batch, H, W, C], 'labels': int [batch],
    'weights': float [batch]} — weight 0 marks padding that fills the last batch —
    and optionally 'control' (a float scalar the defense steers between epochs) and
    'validation_images' / 'validation_labels' (a batch of the defense's validation
    slice, passed to `defense.loss` as train-mode logits under the same parameters).

    With `defense.per_example_gradients` (DP-SGD), one gradient per example is
    computed and `defense.aggregate_gradients` combines them; BatchNorm is refused
    there, as its batch statistics would couple the examples.
    """

    if (
        defense.per_example_gradients
        and type(defense).prepare_batch is not DefenseBase.prepare_batch
    ):
        # fold_in(key, 1), its noise key, equals split(key)[1], which a mixing
        # prepare_batch would draw from too: noise and mixing would be correlated.
        raise ValueError(
            f"defense {defense.name!r} combines per-example gradients with its own "
            "prepare_batch, whose random stream its noise key would share; not "
            "supported"
        )

    def train_step(state: TrainState, batch, key):
        inputs = data.normalize(batch["images"])
        control = batch.get("control", jnp.zeros((), jnp.float32))
        inputs, targets, strength = defense.prepare_batch(
            key, inputs, batch["labels"], num_classes, state.step, control=control
        )
        weights = batch["weights"]
        labels = batch["labels"]
        has_validation = "validation_images" in batch
        if has_validation:
            validation_inputs = data.normalize(batch["validation_images"])

        def loss_fn(params):
            logits, new_stats = _apply(model, state, params, inputs)
            validation = None
            if has_validation:
                # The validation batch's statistics are discarded.
                validation_logits, _ = _apply(model, state, params, validation_inputs)
                validation = (validation_logits, batch["validation_labels"])
            loss = defense.loss(
                logits, targets, labels, weights, state.step, validation
            )
            return loss, (logits, new_stats)

        if defense.per_example_gradients:
            if state.batch_stats:
                raise ValueError(
                    f"defense {defense.name!r} computes per-example gradients, which "
                    "BatchNorm would couple; use model.norm='group' or 'none'"
                )

            def example_loss(params, example_input, example_target, example_label):
                logits = model.apply(
                    {"params": params}, example_input[None], train=True
                )
                loss = defense.loss(
                    logits,
                    example_target[None],
                    example_label[None],
                    jnp.ones((1,), jnp.float32),
                    state.step,
                    None,
                )
                return loss, logits[0]

            (example_losses, logits), per_example = jax.vmap(
                jax.value_and_grad(example_loss, has_aux=True),
                in_axes=(None, 0, 0, 0),
            )(state.params, inputs, targets, labels)
            grads = defense.aggregate_gradients(
                per_example, weights, jax.random.fold_in(key, 1)
            )  # safe: such defenses never use the key in prepare_batch (checked)
            loss = jnp.sum(example_losses * weights) / jnp.maximum(
                jnp.sum(weights), 1.0
            )
            new_stats = state.batch_stats
        else:
            (loss, (logits, new_stats)), grads = jax.value_and_grad(
                loss_fn, has_aux=True
            )(state.params)
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
    and every batch has the same shape. The padding examples (the model's own
    training examples again) carry no loss or gradient weight, but can still be a
    mixing partner or enter BatchNorm's batch statistics.
    """
    steps = -(-num_examples // batch_size)
    order = jax.random.permutation(key, num_examples)
    padded = jnp.resize(order, steps * batch_size)  # repeats the order cyclically
    weights = (jnp.arange(steps * batch_size) < num_examples).astype(jnp.float32)
    return padded.reshape(steps, batch_size), weights.reshape(steps, batch_size)


def make_epoch_fn(train_step: Callable, batch_size: int) -> Callable:
    """`epoch(state, images, labels, slots, slot_weights, key, control=0,
    validation_slots=None) -> (state, metrics)`.

    One epoch of one model as a `lax.scan` of the step. `slots` `[L]` are indices into
    `images`/`labels` (uint8 on the device, gathered per batch inside the scan) of the
    model's training examples; `slot_weights` `[L]` are 0 for slots that only pad a
    model's list to a length shared with other models. `control` is the defense's
    steered scalar for this epoch. With `validation_slots` `[V]` (indices of the
    defense's validation slice), every step also gets a batch of `batch_size`
    validation examples drawn uniformly with replacement. Not jitted: callers jit it
    alone or under `vmap` over a leading model axis.
    """

    def epoch(
        state,
        images,
        labels,
        slots,
        slot_weights,
        key,
        control=0.0,
        validation_slots=None,
    ):
        order_key, step_key = jax.random.split(key)
        positions, position_weights = epoch_batches(
            order_key, slots.shape[0], batch_size
        )
        example_indices = slots[positions]  # [steps, batch]
        weights = slot_weights[positions] * position_weights
        step_keys = jax.random.split(step_key, positions.shape[0])
        control = jnp.asarray(control, jnp.float32)

        def body(state, xs):
            batch_indices, batch_weights, key = xs
            batch = {
                "images": images[batch_indices],
                "labels": labels[batch_indices],
                "weights": batch_weights,
                "control": control,
            }
            if validation_slots is not None:
                drawn = jax.random.randint(
                    jax.random.fold_in(key, _VALIDATION_STREAM),
                    (batch_size,),
                    0,
                    validation_slots.shape[0],
                )
                batch["validation_images"] = images[validation_slots[drawn]]
                batch["validation_labels"] = labels[validation_slots[drawn]]
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
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainResult:
    """Trains one model on (images uint8 [N, H, W, C], labels [N]).

    `config` is the run's `train` block. After each epoch, accuracy on (the first
    `config.log_eval_examples` of) every entry of `eval_sets` (name -> (images,
    labels)) is measured in inference mode and logged with the epoch's loss and mixing
    strength.

    `validation` (images, labels) is the defense's validation slice, required when
    `defense.validation_fraction > 0` and never trained on as members. Each epoch its
    accuracy (all of it) and the training accuracy (on as many training examples) are
    measured in inference mode (the training examples a keyed random subset); they
    steer `defense.next_control` and, with
    `defense.select_best_epoch`, pick the parameters returned (the first epoch of
    best validation accuracy; with `defense.patience` > 0, training stops after that
    many epochs without a better one).
    """
    if defense.validation_fraction > 0 and validation is None:
        raise ValueError(
            f"defense {defense.name!r} needs a validation slice (validation_fraction="
            f"{defense.validation_fraction}); pass validation=(images, labels)"
        )
    num_train = images.shape[0]
    steps_per_epoch = -(-num_train // config.batch_size)
    tx = make_optimizer(config, steps_per_epoch)
    init_key, train_key = jax.random.split(key)
    state = init_state(model, tx, init_key, images.shape[1:])
    train_step = make_train_step(model, tx, defense, num_classes)
    epoch_fn = jax.jit(make_epoch_fn(train_step, config.batch_size), donate_argnums=0)
    predict = make_predict_fn(model)
    all_images, all_labels = images, labels
    validation_slots = None
    if validation is not None:
        validation_images, validation_labels = validation
        all_images = np.concatenate([images, validation_images])
        all_labels = np.concatenate([labels, validation_labels])
        validation_slots = jnp.arange(
            num_train, num_train + len(validation_labels), dtype=jnp.int32
        )
        # The training examples the controller compares with the validation slice: a
        # keyed random subset of as many (the training set may be sorted by label).
        chosen = np.sort(
            np.asarray(
                jax.random.choice(
                    jax.random.fold_in(key, 7),
                    num_train,
                    (min(len(validation_labels), num_train),),
                    replace=False,
                )
            )
        )
        compared = (images[chosen], labels[chosen])
    device_images = jnp.asarray(all_images, jnp.uint8)
    device_labels = jnp.asarray(all_labels, jnp.int32)
    slots = jnp.arange(num_train, dtype=jnp.int32)
    slot_weights = jnp.ones(num_train, jnp.float32)

    eval_sets = {
        name: (
            eval_images[: config.log_eval_examples],
            eval_labels[: config.log_eval_examples],
        )
        for name, (eval_images, eval_labels) in (eval_sets or {}).items()
    }
    history = []
    control = float(defense.initial_control())
    best = None  # (validation accuracy, epoch, copy of the state) with selection
    patience = int(defense.patience)
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
            jnp.float32(control),
            validation_slots,
        )
        record = {
            "epoch": epoch + 1,
            "loss": float(jnp.mean(metrics["loss"])),
            "mixing_strength": float(jnp.mean(metrics["mixing_strength"])),
        }
        for name, (eval_images, eval_labels) in eval_sets.items():
            logits = predict_logits(predict, state, eval_images, config.eval_batch_size)
            record[f"{name}_accuracy"] = accuracy(logits, eval_labels)
        if validation is not None:
            validation_accuracy = accuracy(
                predict_logits(
                    predict, state, validation_images, config.eval_batch_size
                ),
                validation_labels,
            )
            compared_accuracy = accuracy(
                predict_logits(predict, state, compared[0], config.eval_batch_size),
                compared[1],
            )
            record["validation_accuracy"] = validation_accuracy
            record["validation_gap"] = compared_accuracy - validation_accuracy
            control = float(
                defense.next_control(control, compared_accuracy, validation_accuracy)
            )
            if type(defense).next_control is not DefenseBase.next_control:
                record["next_control"] = control
            if defense.select_best_epoch and (
                best is None or validation_accuracy > best[0]
            ):
                best = (validation_accuracy, epoch + 1, jax.tree.map(jnp.copy, state))
        history.append(record)
        summary = " ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in record.items()
        )
        logging.info("%s epoch %s", description, summary)
        bar.set_postfix(
            {k: v for k, v in record.items() if k != "epoch"}, refresh=False
        )
        if best is not None and patience and epoch + 1 - best[1] >= patience:
            logging.info(
                "%s: no better validation accuracy for %d epochs; stopping",
                description,
                patience,
            )
            break
    selected_epoch = len(history)
    if best is not None:
        _, selected_epoch, state = best
    jax.block_until_ready(state)
    return TrainResult(
        state=state,
        history=history,
        seconds=time.perf_counter() - start,
        predict=predict,
        selected_epoch=selected_epoch,
    )

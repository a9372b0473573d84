"""Many models trained at once: the shadow/reference models of the strongest attacks.

`train_many` trains M models, each on its own IN examples (a row of a keep mask) with
its own init key and data order, as one compiled program: params, optimizer state and
keys are stacked on a leading model axis, the epoch is `vmap`ped over that axis, and
the axis is laid out over a `jax.sharding.Mesh` of the available devices. Models are
trained in chunks of `chunk_size` when M do not fit at once; chunking changes nothing
but memory, since every model only ever sees its own key and examples.
"""

import dataclasses
import json
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import auto as tqdm

from adamixup_jax import files, training
from adamixup_jax.defenses import Defense

MODEL_AXIS = "models"
BATCHINGS = ("auto", "vmap", "map")


def default_config() -> ml_collections.ConfigDict:
    """The run's `shadows` block: the batch of models the shadow attacks use."""
    config = ml_collections.ConfigDict()
    # Models per defense, trained as one program; 0 skips the shadow-model attacks.
    # Even, so every pool example is IN for exactly half of them.
    config.num_models = 0
    config.pool_size = 1000  # Examples in the pool; each model trains on about half.
    config.num_targets = (
        4  # The first models, each attacked with the others as shadows.
    )
    config.seed = 0  # Seeds the pool and the keep masks.
    config.chunk_size = (
        0  # Models trained at once (0 = all); a multiple of the devices.
    )
    config.batching = "auto"  # 'vmap', 'map' or 'auto' (the measured winner here).
    # Orbax checkpoint of the stacked state every this many epochs (0 = only when a
    # chunk finishes); a killed run resumes from the last one.
    config.checkpoint_every_epochs = 10
    return config


def _check_fingerprint(checkpoint_dir: str, fingerprint: str) -> None:
    """Refuses checkpoints written by a run that trained differently."""
    path = os.path.join(checkpoint_dir, "fingerprint.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            stored = json.load(f).get("fingerprint")
        if stored != fingerprint:
            raise ValueError(
                f"checkpoints in {checkpoint_dir!r} were written by a run whose "
                "training "
                "differs from this one (config, defense, keep masks or keys); use "
                "another "
                "workdir or --config.overwrite=True"
            )
    else:
        files.write_json(path, {"fingerprint": fingerprint})


def resolve_batching(batching: str, mesh: Mesh) -> str:
    """'auto' -> the formulation measured faster here (benchmarks/bench_shadows.py).

    'vmap' batches the models into every op (wide matmuls: the win on accelerators,
    and what shards the model axis over devices); 'map' runs the models one after
    another inside the same compiled program (`lax.map`), which on a single CPU
    device beat vmap, since one model already saturates the cores there.
    """
    if batching not in BATCHINGS:
        raise ValueError(
            f"shadows.batching={batching!r} is not allowed; choose one of {BATCHINGS}"
        )
    if batching != "auto":
        return batching
    return "map" if jax.default_backend() == "cpu" and mesh.size == 1 else "vmap"


def member_slots(keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each model's IN example indices, padded to one length: `[M, L]` int32 indices
    (padding repeats the model's own examples) and `[M, L]` float32 weights (0 = pad)."""
    counts = keep.sum(axis=1)
    if np.any(counts == 0):
        raise ValueError(
            f"models {np.flatnonzero(counts == 0).tolist()} have no IN examples"
        )
    length = int(counts.max())
    slots = np.stack([np.resize(np.flatnonzero(row), length) for row in keep])
    weights = (np.arange(length)[None, :] < counts[:, None]).astype(np.float32)
    return slots.astype(np.int32), weights


def model_mesh(devices=None) -> Mesh:
    """A 1-D mesh over `devices` (default: all) whose axis carries the models.

    Multi-host: call `jax.distributed.initialize()` first on every host; `jax.devices()`
    then lists every host's devices and the same program shards over all of them.
    """
    devices = np.asarray(jax.devices() if devices is None else devices)
    return Mesh(devices.reshape(-1), (MODEL_AXIS,))


@dataclasses.dataclass(frozen=True)
class ManyResult:
    state: training.TrainState  # Every leaf has a leading [models] axis.
    seconds: float


def _init_many(model, tx, keys, image_shape):
    return jax.vmap(lambda key: training.init_state(model, tx, key, image_shape))(keys)


def build_program(
    model: nn.Module,
    defense: Defense,
    config: ml_collections.ConfigDict,
    num_classes: int,
    image_shape: tuple[int, ...],
    steps_per_epoch: int,
    mesh: Mesh,
    batching: str = "auto",
):
    """The two compiled pieces of `train_many`: `init(init_keys [M]) -> state` and
    `epoch(state, images, labels, slots [M, L], slot_weights [M, L], keys [M]) ->
    (state, metrics)`, the state donated, the model axis sharded over `mesh`."""
    tx = training.make_optimizer(config, steps_per_epoch)
    train_step = training.make_train_step(model, tx, defense, num_classes)
    epoch = training.make_epoch_fn(train_step, config.batch_size)
    if resolve_batching(batching, mesh) == "vmap":
        many = jax.vmap(epoch, in_axes=(0, None, None, 0, 0, 0))
    else:

        def many(state, images, labels, slots, slot_weights, keys):
            return jax.lax.map(
                lambda xs: epoch(xs[0], images, labels, *xs[1:]),
                (state, slots, slot_weights, keys),
            )

    model_sharded = NamedSharding(mesh, PartitionSpec(MODEL_AXIS))
    init = jax.jit(
        lambda keys: _init_many(model, tx, keys, image_shape),
        out_shardings=model_sharded,
    )
    return init, jax.jit(many, donate_argnums=0)


def train_many(
    model: nn.Module,
    defense: Defense,
    config: ml_collections.ConfigDict,
    images: np.ndarray,
    labels: np.ndarray,
    keep: np.ndarray,
    num_classes: int,
    keys: jax.Array,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    batching: str = "auto",
    description: str = "shadows",
    checkpoint_dir: str | None = None,
    checkpoint_every_epochs: int = 0,
    fingerprint: str = "",
) -> ManyResult:
    """Trains model m on `images[keep[m]]` with key `keys[m]`, for every m.

    images uint8 [N, H, W, C], labels [N], keep bool [M, N], keys [M] typed PRNG keys;
    `config` is the run's `train` block. Model m's key is used exactly as
    `training.train_one` uses its key, so a model whose IN count is the longest row of
    `keep` ends bit-for-bit (up to float reassociation) where `train_one` on
    `images[keep[m]]` would. Shorter rows are padded at weight 0 to that length.
    `chunk_size` (default: all) must be a multiple of the mesh's device count;
    `batching` is 'vmap', 'map' or 'auto' (see `resolve_batching`).

    With `checkpoint_dir`, each chunk's stacked state is saved with orbax every
    `checkpoint_every_epochs` epochs and when the chunk finishes; a rerun restores
    the latest checkpoint of every chunk, skips finished chunks and continues the
    others from their last epoch, ending where an uninterrupted run ends (epoch keys
    depend only on the epoch index). `fingerprint` names everything that shapes the
    training; checkpoints with another fingerprint are refused.
    """
    num_models = keep.shape[0]
    if keys.shape[0] != num_models:
        raise ValueError(f"keys has {keys.shape[0]} entries for {num_models} models")
    mesh = mesh or model_mesh()
    chunk_size = chunk_size or num_models
    if chunk_size % mesh.size:
        raise ValueError(
            f"shadows.chunk_size={chunk_size} must be a multiple of the {mesh.size} "
            "devices"
        )
    slots, slot_weights = member_slots(keep)
    steps_per_epoch = -(-slots.shape[1] // config.batch_size)
    init, many_epoch = build_program(
        model,
        defense,
        config,
        num_classes,
        images.shape[1:],
        steps_per_epoch,
        mesh,
        batching,
    )
    model_sharded = NamedSharding(mesh, PartitionSpec(MODEL_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())
    device_images = jax.device_put(jnp.asarray(images, jnp.uint8), replicated)
    device_labels = jax.device_put(jnp.asarray(labels, jnp.int32), replicated)

    if checkpoint_dir:
        os.makedirs(checkpoint_dir, exist_ok=True)
        _check_fingerprint(checkpoint_dir, fingerprint)
    start = time.perf_counter()
    chunks = []
    for first in range(0, num_models, chunk_size):
        chunk = slice(first, min(first + chunk_size, num_models))
        chunk_keys = keys[chunk]
        pad = chunk_size - chunk_keys.shape[0]
        # A short last chunk is padded with copies of its first model, then dropped,
        # so every chunk has one shape and one compiled program.
        take = np.r_[np.arange(chunk.start, chunk.stop), np.full(pad, chunk.start)]
        init_keys, train_keys = jax.vmap(jax.random.split, out_axes=1)(keys[take])
        state = init(init_keys)
        done_epochs, manager = 0, None
        if checkpoint_dir:
            manager = ocp.CheckpointManager(
                os.path.join(
                    os.path.abspath(checkpoint_dir), f"chunk_{first // chunk_size:04d}"
                ),
                options=ocp.CheckpointManagerOptions(max_to_keep=1),
            )
            if manager.latest_step() is not None:
                done_epochs = manager.latest_step()
                state = manager.restore(
                    done_epochs, args=ocp.args.StandardRestore(state)
                )
                logging.info(
                    "%s models %d-%d: resumed from the checkpoint after epoch %d",
                    description,
                    chunk.start,
                    chunk.stop - 1,
                    done_epochs,
                )
        chunk_slots = jax.device_put(slots[take], model_sharded)
        chunk_weights = jax.device_put(slot_weights[take], model_sharded)
        loss = float("nan")
        bar = tqdm.trange(
            done_epochs,
            config.epochs,
            desc=f"{description} {chunk.start}-{chunk.stop - 1}",
            disable=not config.progress,
        )
        for epoch_index in bar:
            epoch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(
                train_keys, epoch_index
            )
            state, metrics = many_epoch(
                state,
                device_images,
                device_labels,
                chunk_slots,
                chunk_weights,
                jax.device_put(epoch_keys, model_sharded),
            )
            loss = float(jnp.mean(metrics["loss"]))
            bar.set_postfix(loss=loss, refresh=False)
            finished = epoch_index + 1
            every = checkpoint_every_epochs
            if manager and (
                finished == config.epochs or (every and finished % every == 0)
            ):
                # Synchronous: the next epoch donates (reuses) these buffers.
                manager.save(finished, args=ocp.args.StandardSave(state))
                manager.wait_until_finished()
        if manager:
            manager.close()
        logging.info(
            "%s models %d-%d: %d epochs, final mean loss %.4f",
            description,
            chunk.start,
            chunk.stop - 1,
            config.epochs,
            loss,
        )
        chunks.append(
            jax.tree.map(lambda leaf: leaf[: chunk.stop - chunk.start], state)
        )
    state = jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *chunks)
    jax.block_until_ready(state)
    return ManyResult(state=state, seconds=time.perf_counter() - start)

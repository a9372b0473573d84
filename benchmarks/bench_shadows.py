"""Many shadow models at once vs one after another, on this backend.

    python benchmarks/bench_shadows.py                       # MNIST CNN, K = 1, 4, 16
    python benchmarks/bench_shadows.py --model=cifar_cnn --models=1,4

For each K, trains K models on their own halves of a pool with (a) `shadows.train_many`
(one program, model axis vmapped and sharded over the devices), (b) `training.train_one`
called K times (the same step, one model after another), and (c) the same MNIST CNN in
PyTorch, K times, if torch is installed. Each is timed per epoch on its compiled
program after two warm-up epochs, so compile time is excluded. Prints samples/s, a/b, a/c and the share of the
matmul peak measured in the same run.
"""

import jax
import numpy as np
from absl import app, flags

from adamixup_jax import membership, models, shadows, training
from adamixup_jax.defenses import erm
from common import best_of, matmul_peak_gflops, torch_mnist_cnn

_MODELS = flags.DEFINE_list("models", ["1", "4", "16"], "Model counts K.")
_MODEL = flags.DEFINE_enum("model", "mnist_cnn", list(models.MODELS), "Architecture.")
_POOL = flags.DEFINE_integer("pool", 1024, "Pool size; each model trains on half.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Timed epochs per case (best is kept).")


def _seconds_per_epoch(run_epoch, epochs):
    """Best wall time of one call of `run_epoch` over `epochs` calls, after two
    warm-up calls (a second compile can hide behind the first)."""
    run_epoch(), run_epoch()
    return best_of(run_epoch, epochs)


def _config():
    config = training.default_config()
    config.batch_size = _BATCH.value
    config.progress = False
    return config


def _torch_seconds_per_epoch(image_shape, num_examples, num_classes):
    try:
        import torch
    except ImportError:
        return None
    if _MODEL.value != "mnist_cnn":
        return None
    net, opt = torch_mnist_cnn(image_shape, num_classes)
    x = torch.rand(num_examples, image_shape[-1], *image_shape[:2])
    y = torch.randint(0, num_classes, (num_examples,))

    def epoch():
        for i in range(0, num_examples, _BATCH.value):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(
                net(x[i : i + _BATCH.value]), y[i : i + _BATCH.value]
            )
            loss.backward()
            opt.step()

    return _seconds_per_epoch(epoch, _EPOCHS.value)


def main(argv):
    del argv
    image_shape = (28, 28, 1) if _MODEL.value == "mnist_cnn" else (32, 32, 3)
    num_classes = 10
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (_POOL.value, *image_shape), dtype=np.uint8)
    labels = rng.integers(0, num_classes, _POOL.value).astype(np.int32)
    config = models.default_config()
    config.name = _MODEL.value
    model = models.create(config, num_classes)
    variables = model.init(jax.random.key(0), np.zeros((1, *image_shape), np.float32))
    cost = (
        jax.jit(model.apply)
        .lower(variables, np.zeros((1, *image_shape), np.float32))
        .compile()
        .cost_analysis()
    )
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    train_flops = 3 * float(cost["flops"])
    peak = matmul_peak_gflops(3)
    per_model = _POOL.value // 2
    torch_epoch = _torch_seconds_per_epoch(image_shape, per_model, num_classes)

    print(
        f"backend={jax.default_backend()} devices={jax.device_count()} "
        f"jax={jax.__version__}"
    )
    print(
        f"model={_MODEL.value} pool={_POOL.value} (each model trains on "
        f"{per_model}) batch={_BATCH.value}"
    )
    print(
        f"matmul peak {peak:.0f} GFLOP/s; training {train_flops / 1e6:.1f} MFLOP/sample"
    )
    auto = shadows.resolve_batching("auto", shadows.model_mesh())
    print(f"shadows.resolve_batching('auto') = {auto!r} here")
    print(
        "| K | batching | (a) batched samples/s | (b) sequential samples/s | (c) torch samples/s | a/b | a/c | a % of peak |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k in (int(v) for v in _MODELS.value):
        keep = membership.keep_masks(max(k, 2), _POOL.value, seed=0)[:k]
        keys = jax.random.split(jax.random.key(1), k)

        slots, weights = shadows.member_slots(keep)
        steps = -(-slots.shape[1] // _BATCH.value)
        mesh = shadows.model_mesh()
        device_images, device_labels = (
            jax.numpy.asarray(images),
            jax.numpy.asarray(labels),
        )

        def batched_epoch_seconds(batching):
            init, epoch = shadows.build_program(
                model,
                erm.Erm(),
                _config(),
                num_classes,
                image_shape,
                steps,
                mesh,
                batching,
            )
            state = [init(keys)]

            def run():
                state[0], _ = epoch(
                    state[0], device_images, device_labels, slots, weights, keys
                )
                jax.block_until_ready(state[0])

            return _seconds_per_epoch(run, _EPOCHS.value)

        def sequential_epoch_seconds():
            # The same step, one model after another, each model its own state.
            tx = training.make_optimizer(_config(), steps)
            step = training.make_train_step(model, tx, erm.Erm(), num_classes)
            epoch = jax.jit(
                training.make_epoch_fn(step, _BATCH.value), donate_argnums=0
            )
            states = [
                training.init_state(model, tx, keys[m], image_shape) for m in range(k)
            ]

            def run():
                for m in range(k):
                    states[m], _ = epoch(
                        states[m],
                        device_images,
                        device_labels,
                        slots[m],
                        weights[m],
                        keys[m],
                    )
                jax.block_until_ready(states)

            return _seconds_per_epoch(run, _EPOCHS.value)

        samples = k * per_model
        b = samples / sequential_epoch_seconds()
        c = per_model / torch_epoch if torch_epoch else None
        for batching in ("vmap", "map"):
            a = samples / batched_epoch_seconds(batching)
            share = a * train_flops / 1e9 / peak
            c_text = f"{c:,.0f}" if c else "n/a"
            ac_text = f"{a / c:.2f}" if c else "n/a"
            print(
                f"| {k} | {batching} | {a:,.0f} | {b:,.0f} | {c_text} | {a / b:.2f} "
                f"| {ac_text} | {100 * share:.0f}% |"
            )


if __name__ == "__main__":
    app.run(main)

"""Measures each 3x3-conv formulation inside our real train step, on this backend.

    python benchmarks/bench_conv.py            # MNIST CNN, batch 128
    python benchmarks/bench_conv.py --steps=20 --model=cifar_cnn

For every formulation (`models.CONV_IMPLS`), times the training step two ways, after
two warm-up calls each (a second compile can hide behind the first call): a Python loop
of the jitted step, and one jitted `lax.scan` over the steps (what `training` runs).
Prints seconds per step, samples/s, the ratio to the fastest, and the share of the
matmul peak measured in the same run. If torch is installed, the same CNN in PyTorch
is timed as a reference. `models.resolve_conv_impl('auto')` should name the winner.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from adamixup_jax import models, training
from common import best_of, matmul_peak_gflops, torch_mnist_cnn
from adamixup_jax.defenses import erm

_STEPS = flags.DEFINE_integer("steps", 30, "Training steps per timing.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_MODEL = flags.DEFINE_enum("model", "mnist_cnn", list(models.MODELS), "Model.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timings per case; the best is kept.")


def forward_flops(model, image_shape) -> float:
    """FLOPs of one forward pass on one image, from XLA's cost analysis."""
    variables = model.init(jax.random.key(0), jnp.zeros((1, *image_shape)))
    lowered = jax.jit(lambda v, x: model.apply(v, x)).lower(
        variables, jnp.zeros((1, *image_shape))
    )
    cost = lowered.compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"])


def time_formulation(impl: str, image_shape, num_classes: int):
    config = models.default_config()
    config.name = _MODEL.value
    config.conv_impl = impl
    model = models.create(config, num_classes)
    train_config = training.default_config()
    tx = training.make_optimizer(train_config, _STEPS.value)
    step = training.make_train_step(model, tx, erm.Erm(), num_classes)
    rng = np.random.default_rng(0)
    n = _STEPS.value * _BATCH.value
    images = jnp.asarray(rng.integers(0, 256, (n, *image_shape), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, num_classes, n, dtype=np.int32))
    state = training.init_state(model, tx, jax.random.key(0), image_shape)

    jitted = jax.jit(step)
    batches = [
        {
            "images": images[i * _BATCH.value : (i + 1) * _BATCH.value],
            "labels": labels[i * _BATCH.value : (i + 1) * _BATCH.value],
            "weights": jnp.ones(_BATCH.value),
        }
        for i in range(_STEPS.value)
    ]
    key = jax.random.key(1)

    def loop():
        s = state
        for batch in batches:
            s, _ = jitted(s, batch, key)
        jax.block_until_ready(s)

    epoch = jax.jit(training.make_epoch_fn(step, _BATCH.value), donate_argnums=0)
    slots = jnp.arange(n, dtype=jnp.int32)
    slot_weights = jnp.ones(n, jnp.float32)
    copies = [jax.tree.map(jnp.copy, state) for _ in range(_REPEATS.value + 2)]

    def scanned():
        s, _ = epoch(copies.pop(), images, labels, slots, slot_weights, key)
        jax.block_until_ready(s)

    loop(), loop()
    scanned(), scanned()
    return (
        best_of(loop, _REPEATS.value) / _STEPS.value,
        best_of(scanned, _REPEATS.value) / _STEPS.value,
        model,
    )


def torch_seconds_per_step(image_shape, num_classes):
    """The same MNIST CNN in PyTorch (CPU), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    if _MODEL.value != "mnist_cnn":
        return None
    channels = image_shape[-1]
    net, opt = torch_mnist_cnn(image_shape, num_classes)
    x = torch.rand(_BATCH.value, channels, *image_shape[:2])
    y = torch.randint(0, num_classes, (_BATCH.value,))

    def run():
        for _ in range(_STEPS.value):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()

    run()
    return best_of(run, _REPEATS.value) / _STEPS.value


def main(argv):
    del argv
    image_shape = (28, 28, 1) if _MODEL.value == "mnist_cnn" else (32, 32, 3)
    num_classes = 10
    peak = matmul_peak_gflops(_REPEATS.value)
    print(
        f"backend={jax.default_backend()} devices={jax.devices()} "
        f"jax={jax.__version__}"
    )
    print(
        f"model={_MODEL.value} batch={_BATCH.value} steps={_STEPS.value} "
        f"matmul peak={peak:.0f} GFLOP/s"
    )
    rows = []
    flops = None
    for impl in models.CONV_IMPLS[1:]:
        loop_s, scan_s, model = time_formulation(impl, image_shape, num_classes)
        flops = flops or 3 * forward_flops(model, image_shape)
        rows.append((impl, loop_s, scan_s))
    torch_s = torch_seconds_per_step(image_shape, num_classes)
    best = min(min(r[1], r[2]) for r in rows)
    print(f"training FLOPs per sample ~ {flops / 1e6:.1f} M (3x forward)")
    print(
        "| formulation | loop s/step | scan s/step | scan samples/s | fastest/this "
        "| % matmul peak | vs torch |"
    )
    print("|---|---|---|---|---|---|---|")
    for impl, loop_s, scan_s in rows:
        this = min(loop_s, scan_s)
        share = flops * _BATCH.value / this / 1e9 / peak
        vs_torch = f"{torch_s / this:.2f}x" if torch_s else "n/a"
        print(
            f"| {impl} | {loop_s:.4f} | {scan_s:.4f} | {_BATCH.value / scan_s:,.0f} "
            f"| {best / this:.2f} | {100 * share:.0f}% | {vs_torch} |"
        )
    if torch_s:
        print(
            f"| torch (CPU) | {torch_s:.4f} | - | {_BATCH.value / torch_s:,.0f} "
            f"| {best / torch_s:.2f} | - | 1.00x |"
        )
    # Training runs the scan, so the scan time decides.
    winner = min(rows, key=lambda r: r[2])[0]
    print(
        f"fastest inside scan: {winner}; "
        f"models.resolve_conv_impl('auto') = {models.resolve_conv_impl('auto')}"
    )


if __name__ == "__main__":
    app.run(main)

"""Helpers shared by the benchmarks: best-of timing and the measured matmul peak."""

import time

import jax
import jax.numpy as jnp


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak_gflops(repeats: int) -> float:
    """float32 GFLOP/s of a large square matmul on the default device."""
    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    mm(a).block_until_ready()
    seconds = best_of(lambda: mm(a).block_until_ready(), repeats + 2)
    return 2 * n**3 / seconds / 1e9


def torch_mnist_cnn(image_shape, num_classes):
    """The MNIST CNN of `models.MnistCNN` in PyTorch, with the same SGD settings as
    `training.default_config()`: (network, optimizer). Imports torch."""
    import torch

    net = torch.nn.Sequential(
        torch.nn.Conv2d(image_shape[-1], 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64 * (image_shape[0] // 4) ** 2, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, num_classes),
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    return net, opt

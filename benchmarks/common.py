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

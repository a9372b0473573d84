"""Flax image classifiers, registered by name.

Every model is a linen module called as `model.apply(variables, images, train=...)` on
float images `[batch, H, W, C]`. Convolutions go through `Conv3x3`, whose `impl`
chooses how the same 3x3 convolution is computed; the fastest formulation differs by
backend (see `benchmarks/bench_conv.py`), so `impl='auto'` picks per backend.
"""

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

CONV_IMPLS = ("auto", "shifted", "xla", "patches")
NORMS = ("none", "batch", "group")


def resolve_conv_impl(impl: str) -> str:
    """Maps 'auto' to the formulation measured fastest on the default backend.

    On XLA CPU, nine shifted slices + one matmul beat `lax.conv_general_dilated`
    several-fold inside `scan` (benchmarks/bench_conv.py). Limitation: on GPU/TPU the
    choice of XLA's native convolution is not yet backed by a measurement here.
    """
    if impl not in CONV_IMPLS:
        raise ValueError(
            f"model.conv_impl={impl!r} is not allowed; choose one of {CONV_IMPLS}"
        )
    if impl != "auto":
        return impl
    return "shifted" if jax.default_backend() == "cpu" else "xla"


class Conv3x3(nn.Module):
    """3x3 'SAME' convolution, stride 1, with a kernel laid out as flax's `nn.Conv`.

    impl: 'shifted' (nine shifted slices of the padded input, concatenated, then one
    matmul), 'patches' (`lax.conv_general_dilated_patches` + matmul) or 'xla'
    (`lax.conv_general_dilated`). All three compute the same function of the same
    parameters.
    """

    features: int
    impl: str = "shifted"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (3, 3, in_features, self.features)
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        batch, height, width, _ = x.shape

        if self.impl == "xla":
            y = jax.lax.conv_general_dilated(
                x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        elif self.impl == "shifted":
            padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            # Channel order (dy, dx, c) matches kernel.reshape(9 * C, F).
            shifted = [
                padded[:, dy : dy + height, dx : dx + width, :]
                for dy in range(3)
                for dx in range(3)
            ]
            columns = jnp.concatenate(shifted, axis=-1)
            y = columns.reshape(-1, 9 * in_features) @ kernel.reshape(-1, self.features)
            y = y.reshape(batch, height, width, self.features)
        elif self.impl == "patches":
            # The patches op orders features as (c, dy, dx); reorder the kernel to match.
            columns = jax.lax.conv_general_dilated_patches(
                x, (3, 3), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            kernel_matrix = kernel.transpose(2, 0, 1, 3).reshape(-1, self.features)
            y = columns.reshape(-1, 9 * in_features) @ kernel_matrix
            y = y.reshape(batch, height, width, self.features)
        else:
            raise ValueError(
                f"Conv3x3.impl={self.impl!r}; choose one of {CONV_IMPLS[1:]}"
            )
        return y + bias


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling, stride 2, as a reshape + max (crops an odd trailing row/col)."""
    batch, height, width, channels = x.shape
    x = x[:, : height // 2 * 2, : width // 2 * 2, :]
    x = x.reshape(batch, height // 2, 2, width // 2, 2, channels)
    return x.max(axis=(2, 4))


def _norm(kind: str, train: bool) -> Callable[[jax.Array], jax.Array]:
    if kind == "none":
        return lambda x: x
    if kind == "batch":
        return nn.BatchNorm(use_running_average=not train, momentum=0.9)
    if kind == "group":
        # Up to 8 groups; as many as divide the channel count evenly.
        return lambda x: nn.GroupNorm(num_groups=math.gcd(8, x.shape[-1]))(x)
    raise ValueError(f"model.norm={kind!r} is not allowed; choose one of {NORMS}")


class MnistCNN(nn.Module):
    """Two 3x3 conv layers (32, 64 filters) with 2x2 pooling, dense 128, for 28x28 gray."""

    num_classes: int
    conv_impl: str = "shifted"
    norm: str = "none"
    width: int = 32
    dense: int = 128

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for features in (self.width, 2 * self.width):
            x = Conv3x3(features, self.conv_impl)(x)
            x = _norm(self.norm, train)(x)
            x = max_pool_2x2(nn.relu(x))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.dense)(x))
        return nn.Dense(self.num_classes)(x)


class ColourCNN(nn.Module):
    """Three conv stages (2, 2, 1 convs of width w, 2w, 4w) with 2x2 pooling and a
    dense head, for 32x32 or 96x96 colour images (CIFAR-10, LFW crops, STL-10)."""

    num_classes: int
    conv_impl: str = "shifted"
    norm: str = "none"
    width: int = 32
    dense: int = 256

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for features, repeats in (
            (self.width, 2),
            (2 * self.width, 2),
            (4 * self.width, 1),
        ):
            for _ in range(repeats):
                x = Conv3x3(features, self.conv_impl)(x)
                x = nn.relu(_norm(self.norm, train)(x))
            x = max_pool_2x2(x)
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.dense)(x))
        return nn.Dense(self.num_classes)(x)


MODELS: dict[str, type[nn.Module]] = {
    "mnist_cnn": MnistCNN,
    "cifar_cnn": ColourCNN,
}


def default_config() -> ml_collections.ConfigDict:
    """The run's `model` block."""
    config = ml_collections.ConfigDict()
    config.name = "mnist_cnn"  # A key of models.MODELS.
    # How 3x3 convolutions are computed: 'auto' picks the measured winner per backend.
    config.conv_impl = "auto"
    config.norm = "none"  # 'none', 'batch' (BatchNorm) or 'group' (GroupNorm, DP-safe).
    config.width = 32  # Filters of the first conv stage; later stages multiply it.
    config.dense = 128  # Units of the hidden dense layer.
    return config


def create(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """Builds the model named by `config.name` (the run's `model` block)."""
    if config.name not in MODELS:
        raise ValueError(
            f"model.name={config.name!r} is not a known model; choose one of "
            f"{sorted(MODELS)}"
        )
    return MODELS[config.name](
        num_classes=num_classes,
        conv_impl=resolve_conv_impl(config.conv_impl),
        norm=config.norm,
        width=config.width,
        dense=config.dense,
    )

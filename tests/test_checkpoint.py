"""Checkpoint and resume of many models: a run killed with SIGKILL at any point ends,
once rerun, exactly where an uninterrupted run ends."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from adamixup_jax import shadows
from adamixup_jax.defenses import erm
from tests import test_shadows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 12

_TRAIN = textwrap.dedent(
    f"""
    import sys
    from adamixup_jax import shadows
    from adamixup_jax.defenses import erm
    from tests import test_shadows as t
    images, labels, keep, config, keys = t._setup(num_models=4, epochs={EPOCHS})
    shadows.train_many(
        t._tiny_model(), erm.Erm(), config, images, labels, keep, 10, keys,
        chunk_size=2, checkpoint_dir=sys.argv[1], checkpoint_every_epochs=1,
        fingerprint="test",
    )
    """
)


def _train(checkpoint_dir=None, fingerprint="test"):
    images, labels, keep, config, keys = test_shadows._setup(
        num_models=4, epochs=EPOCHS
    )
    return shadows.train_many(
        test_shadows._tiny_model(),
        erm.Erm(),
        config,
        images,
        labels,
        keep,
        10,
        keys,
        chunk_size=2,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every_epochs=1,
        fingerprint=fingerprint,
    )


def _latest_steps(checkpoint_dir):
    steps = {}
    for chunk in sorted(os.listdir(checkpoint_dir)):
        folder = os.path.join(checkpoint_dir, chunk)
        if os.path.isdir(folder):
            numbers = [int(name) for name in os.listdir(folder) if name.isdigit()]
            steps[chunk] = max(numbers, default=None)
    return steps


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    checkpoint_dir = str(tmp_path / "checkpoints")
    process = subprocess.Popen(
        [sys.executable, "-c", _TRAIN, checkpoint_dir],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if os.path.isdir(checkpoint_dir) and any(
            step for step in _latest_steps(checkpoint_dir).values()
        ):
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    interrupted = _latest_steps(checkpoint_dir)
    assert interrupted, "no checkpoint was written before the kill"
    assert interrupted.get("chunk_0001") != EPOCHS, (
        f"the run was not interrupted: {interrupted}"
    )

    resumed = _train(checkpoint_dir)
    uninterrupted = _train()
    jax.tree.map(
        np.testing.assert_array_equal, resumed.state.params, uninterrupted.state.params
    )
    assert _latest_steps(checkpoint_dir) == {"chunk_0000": EPOCHS, "chunk_0001": EPOCHS}


def test_finished_chunks_are_not_retrained(tmp_path):
    checkpoint_dir = str(tmp_path / "checkpoints")
    first = _train(checkpoint_dir)
    written = {
        chunk: os.stat(os.path.join(checkpoint_dir, chunk, str(EPOCHS))).st_mtime_ns
        for chunk in ("chunk_0000", "chunk_0001")
    }
    again = _train(checkpoint_dir)
    jax.tree.map(np.testing.assert_array_equal, first.state.params, again.state.params)
    for chunk, mtime in written.items():  # nothing trained, so nothing saved again
        assert (
            os.stat(os.path.join(checkpoint_dir, chunk, str(EPOCHS))).st_mtime_ns
            == mtime
        )


def test_checkpoints_of_a_different_run_are_refused(tmp_path):
    checkpoint_dir = str(tmp_path / "checkpoints")
    _train(checkpoint_dir, fingerprint="one")
    with pytest.raises(ValueError, match="differs from this one"):
        _train(checkpoint_dir, fingerprint="two")

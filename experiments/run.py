"""Trains the configured defenses, attacks them and writes the report.

    python experiments/run.py --config=configs/quickstart.py --workdir=runs/quickstart
    python experiments/run.py --config=configs/quickstart.py --workdir=runs/q2 \
        --config.defenses=erm,mixup --config.train.epochs=20
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from adamixup_jax import pipeline
from adamixup_jax.config_checks import ConfigError

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/quickstart.py", "Run config file."
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for the run's files.", required=True
)


def main(argv):
    del argv
    try:
        pipeline.run(_CONFIG.value, _WORKDIR.value)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except FloatingPointError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    with open(f"{_WORKDIR.value}/results.md", encoding="utf-8") as f:
        print(f.read())


if __name__ == "__main__":
    app.run(main)

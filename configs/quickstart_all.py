"""Every defense against every attack family on the embedded mnist5k digits.

    python experiments/run.py --config=configs/quickstart_all.py \
        --workdir=runs/quickstart_all

The quickstart's split and training (250 members, 2,000 non-members, 100 epochs),
for ERM, the baselines (mixup, label smoothing, DP-SGD, MemGuard, RelaxLoss,
mixup+MMD, early stopping) and AdaMixup, each attacked by the threshold attacks and
the four label-only attacks (calibrated on the attacker's reference model). The
label-only attacks score the 250 members and the first 250 non-members of each
model; the boundary search spends at most 400 queries per example. The CNN has no
normalisation layer, so DP-SGD's per-example gradients apply to the same
architecture as every other defense.
The adaptive AdaMixup controller (our extension) is one more run:
`--config.defenses=adamixup --config.adamixup.controller=gap`.
"""

import importlib.util
import os


def _quickstart():
    """configs/quickstart.py, loaded by path (configs/ is not a package)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quickstart.py")
    spec = importlib.util.spec_from_file_location("quickstart", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config():
    config = _quickstart().get_config()  # its data, split, model and training
    config.defenses = (
        "erm,mixup,label_smoothing,dpsgd,memguard,relaxloss,mixup_mmd,"
        "early_stopping,adamixup"
    )
    config.label_only_attacks = "gap,augmentation,noise,boundary"
    config.label_only_examples = 250
    config.attack.boundary.max_queries = 400
    return config

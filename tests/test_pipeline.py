"""The main job end to end on the smoke preset, its files, resume and refusals."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from adamixup_jax import defenses, membership, pipeline, scoring
from adamixup_jax.config_checks import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name="smoke"):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(ROOT, "configs", f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("smoke"))
    results = pipeline.run(_config(), workdir)
    return workdir, results


def test_main_job_writes_every_file_with_its_keys(smoke_run):
    workdir, results = smoke_run
    for name in ("config.json", "split.npz", "results.json", "results.md", "roc.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name

    with open(os.path.join(workdir, "results.json")) as f:
        saved = json.load(f)
    assert set(saved["defenses"]) == {"erm", "adamixup"}
    for defense in saved["defenses"].values():
        for key in ("train_accuracy", "test_accuracy", "generalization_gap", "history"):
            assert key in defense
        assert defense["generalization_gap"] == pytest.approx(
            defense["train_accuracy"] - defense["test_accuracy"]
        )
        assert set(defense["attacks"]) == {
            "loss",
            "confidence",
            "entropy",
            "modified_entropy",
        }
        for attack in defense["attacks"].values():
            free = attack["threshold_free"]
            assert 0.0 <= free["auc"] <= 1.0
            assert set(free["tpr_at_fpr"]) == {"0.001", "0.01"}
            assert free["num_members"] == 64 and free["num_nonmembers"] == 64
            assert set(attack["calibrated"]) >= {"threshold", "accuracy", "tpr", "fpr"}
    adamixup_history = saved["defenses"]["adamixup"]["history"]
    assert [h["mixing_strength"] for h in adamixup_history] == pytest.approx([0.5, 0.0])

    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["config"]["split"]["num_target_members"] == 64
    with open(os.path.join(workdir, "results.md")) as f:
        table = f.read()
    # One summary row, 4 attack rows and 5 shadow-attack rows per defense.
    assert table.count("| erm |") == 1 + 4 + 5
    assert table.count("| adamixup |") == 1 + 4 + 5
    for defense in saved["defenses"].values():
        assert set(defense["shadow_attacks"]) == {
            "lira_online",
            "lira_offline",
            "rmia",
            "rmia_online",
            "shokri",
        }
        for summary in defense["shadow_attacks"].values():
            assert summary["targets"] == [0, 1]
            assert 0.0 <= summary["auc"]["mean"] <= 1.0
    with np.load(
        os.path.join(workdir, "partial", "erm_shadow_logits.npz")
    ) as saved_logits:
        assert saved_logits["logits"].shape == (4, 64, 2, 10)
        assert np.all(saved_logits["keep"].sum(axis=0) == 2)
        exported, exported_keep, _ = scoring.import_lira_layout(
            os.path.join(workdir, "lira_layout", "erm")
        )
        np.testing.assert_array_equal(exported, saved_logits["logits"])
        np.testing.assert_array_equal(exported_keep, saved_logits["keep"])
    with open(os.path.join(workdir, "roc.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_saved_split_traces_the_examples(smoke_run):
    workdir, _ = smoke_run
    split = membership.Split.load(os.path.join(workdir, "split.npz"))
    expected = membership.split(5000, _config().split)
    np.testing.assert_array_equal(split.target_members, expected.target_members)
    assert split.seed == 0 and split.num_examples == 5000


def test_finished_workdir_is_refused_unless_overwrite(smoke_run, tmp_path):
    workdir, _ = smoke_run
    with pytest.raises(ConfigError, match="already holds a finished run"):
        pipeline.run(_config(), workdir)


def test_overwrite_with_a_bad_config_deletes_nothing(smoke_run, tmp_path):
    workdir, _ = smoke_run
    config = _config()
    config.overwrite = True
    config.split.num_population = 5000  # only caught once the data is loaded
    with pytest.raises(ConfigError, match="split.num_population=5000"):
        pipeline.run(config, workdir)
    assert os.path.exists(os.path.join(workdir, "results.json"))


def test_a_batch_larger_than_the_training_set_works(tmp_path):
    config = _config()
    config.defenses = "erm"
    config.attacks = "loss"
    config.shadows.num_models = 0
    config.train.epochs = 1
    config.train.batch_size = 200  # more than the 64 members
    results = pipeline.run(config, str(tmp_path))
    assert 0.0 <= results["defenses"]["erm"]["train_accuracy"] <= 1.0


def test_interrupted_run_resumes_from_finished_defenses(tmp_path):
    config = _config()
    config.defenses = "erm"
    first = pipeline.run(config, str(tmp_path))
    os.remove(tmp_path / "results.json")  # as if killed before the report
    resumed = pipeline.run(config, str(tmp_path))
    assert resumed["defenses"] == first["defenses"]

    os.remove(tmp_path / "results.json")
    config.train.epochs = 3
    with pytest.raises(ConfigError, match="different config.*changed: train.epochs"):
        pipeline.run(config, str(tmp_path))
    config.overwrite = True
    rerun = pipeline.run(config, str(tmp_path))
    assert len(rerun["defenses"]["erm"]["history"]) == 3


def test_non_adaptive_attacker_uses_erm_shadows(smoke_run, tmp_path):
    _, adaptive = smoke_run
    config = _config()
    config.defenses = "adamixup"
    config.attacks = "loss"
    config.shadow_attacks = "lira_offline,rmia"
    config.attack.shadow_defense = "erm"
    config.attack.rmia.fit_a = True
    results = pipeline.run(config, str(tmp_path))
    defense = results["defenses"]["adamixup"]
    assert defense["shadow_defense"] == "erm"
    assert os.path.exists(tmp_path / "partial" / "erm_shadow_logits.npz")
    assert 0.0 <= defense["shadow_attacks"]["rmia"]["fitted_a"] <= 1.0
    # Same targets, other shadows: the numbers move.
    assert (
        defense["shadow_attacks"]["lira_offline"]["per_target"]
        != adaptive["defenses"]["adamixup"]["shadow_attacks"]["lira_offline"][
            "per_target"
        ]
    )


def test_label_only_attacks_run_calibrated(tmp_path):
    config = _config()
    config.defenses = "erm"
    config.attacks = "loss"
    config.label_only_attacks = "gap,augmentation,noise"
    config.attack.noise.num_samples = 4
    config.shadows.num_models = 0
    results = pipeline.run(config, str(tmp_path))
    attacks = results["defenses"]["erm"]["attacks"]
    assert set(attacks) == {"loss", "gap", "augmentation", "noise"}
    for name in ("gap", "augmentation", "noise"):
        assert 0.0 <= attacks[name]["threshold_free"]["auc"] <= 1.0
        assert "threshold" in attacks[name]["calibrated"]
    # Flagging exactly the correctly classified: advantage = train acc - test acc.
    defense = results["defenses"]["erm"]
    assert attacks["gap"]["threshold_free"]["advantage"] == pytest.approx(
        max(defense["generalization_gap"], 0.0), abs=1e-9
    )


def test_same_config_gives_the_same_numbers(smoke_run, tmp_path):
    _, results = smoke_run
    config = _config()
    config.defenses = "adamixup"
    again = pipeline.run(config, str(tmp_path))
    assert (
        again["defenses"]["adamixup"]["attacks"]
        == results["defenses"]["adamixup"]["attacks"]
    )


@pytest.mark.parametrize(
    "key, value",
    [
        ("data.name", "imagenet"),
        ("model.name", "vgg"),
        ("model.conv_impl", "fft"),
        ("defenses", "erm,dropout"),
        ("defenses", ""),
        ("attacks", "loss,lira"),
        ("adamixup.m_start", 0.7),
        ("adamixup.m_end", -0.1),
        ("adamixup.schedule", "exponential"),
        ("adamixup.label_allocation", "random"),
        ("mixup.alpha", 0.0),
        ("label_smoothing.epsilon", 1.0),
        ("label_only_attacks", "gap,hopskipjump"),
        ("attack.noise.sigma", 0.0),
        ("train.epochs", -1),
        ("train.batch_size", 0),
        ("train.learning_rate", -0.1),
        ("split.num_target_members", -5),
        ("split.num_population", 10),
        ("split.num_target_nonmembers", 6000),
        ("attack.reference_defense", "no_such_defense"),
        ("attack.shadow_defense", "no_such_defense"),
        ("shadows.num_models", 5),
        ("shadows.num_targets", 9),
        ("scoring.num_queries", 9),
        ("dpsgd.noise_multiplier", 0.0),
        ("dpsgd.noise_multiplier", -1.0),
        ("dpsgd.clip_norm", 0.0),
        ("dpsgd.delta", 0.02),  # >= 1 / 64 target members
        ("attack.augmentation.angles", (15, 200)),
        ("attack.boundary.max_queries", 0),
        ("memguard.confidence", 0.05),  # below 1 / 10 classes
        ("early_stopping.validation_fraction", 1.0),
        ("relaxloss.alpha", 0.0),
        ("mixup_mmd.mmd_weight", -1.0),
        ("adamixup.controller", "pid"),
        ("adamixup.m_min", 0.6),
        ("attack.augmentation.shift", 28),  # the digits are 28 pixels wide
        ("attack.boundary.max_queries", 10**12),
        ("dpsgd.target_epsilon", 0.001),
        ("memguard.confidence", 0.10000001),  # float32 cannot tell it from 0.1
    ],
)
def test_bad_config_is_refused_naming_the_key_before_training(key, value, tmp_path):
    config = _config()
    parent = config
    *path, leaf = key.split(".")
    if path and path[0] in defenses.DEFENSES and path[0] not in config.defenses:
        config.defenses += "," + path[0]  # checks against the data need it in use
    for part in path:
        parent = parent[part]
    parent[leaf] = value
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        pipeline.run(config, str(tmp_path))
    assert not os.path.exists(tmp_path / "partial" / "erm.json")


def test_command_line_prints_one_error_line_and_exits_2(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "experiments", "run.py"),
            "--config=" + os.path.join(ROOT, "configs", "smoke.py"),
            f"--workdir={tmp_path}",
            "--config.adamixup.m_start=0.7",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    errors = [
        line for line in completed.stderr.splitlines() if line.startswith("error: ")
    ]
    assert len(errors) == 1 and "adamixup.m_start=0.7" in errors[0], completed.stderr[
        -2000:
    ]
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(
    "name", ["quickstart", "smoke", "mnist", "cifar10", "stl10", "lfw"]
)
def test_every_shipped_config_is_valid(name):
    from adamixup_jax import config_checks

    config = _config(name)
    config_checks.validate(config)
    assert config.data.name in ("mnist5k", "mnist", "cifar10", "stl10", "lfw")


@pytest.fixture(scope="module")
def baselines_run(tmp_path_factory):
    config = _config()
    config.shadows.num_models = 0
    config.defenses = "erm,memguard,dpsgd,early_stopping"
    config.label_only_attacks = "gap,augmentation,noise,boundary"
    config.label_only_examples = 32
    config.attack.boundary.max_queries = 120
    config.attack.boundary.num_gradient_samples = 20
    workdir = str(tmp_path_factory.mktemp("baselines"))
    return config, pipeline.run(config, workdir)


def test_label_only_attacks_give_the_same_numbers_with_and_without_memguard(
    baselines_run,
):
    _, results = baselines_run
    erm, guarded = results["defenses"]["erm"], results["defenses"]["memguard"]
    for name in ("gap", "augmentation", "noise", "boundary"):
        assert guarded["attacks"][name] == erm["attacks"][name], name
    spent = erm["attacks"]["boundary"]["queries"]
    assert 1 <= spent["target_max_per_example"] <= 120
    assert spent["reference_max_per_example"] <= 120
    # Every MemGuard answer is one of two vectors (label right or wrong), so the
    # loss attack sees exactly what the gap attack sees.
    loss = guarded["attacks"]["loss"]["threshold_free"]
    gap = guarded["attacks"]["gap"]["threshold_free"]
    assert loss["num_members"] == 64 and gap["num_members"] == 32
    assert guarded["test_accuracy"] == erm["test_accuracy"]


def test_memguard_loss_attack_equals_the_gap_on_the_same_examples(baselines_run):
    _, results = baselines_run
    guarded = results["defenses"]["memguard"]
    # Over all 64 + 64 examples the loss attack's AUC is the gap attack's AUC:
    # 0.5 + (train accuracy - test accuracy) / 2 for a two-valued score.
    expected = 0.5 + guarded["generalization_gap"] / 2
    assert guarded["attacks"]["loss"]["threshold_free"]["auc"] == pytest.approx(
        expected, abs=1e-9
    )


def test_dpsgd_run_reports_the_accountants_epsilon(baselines_run):
    from adamixup_jax.defenses import dpsgd

    config, results = baselines_run
    privacy = results["defenses"]["dpsgd"]["privacy"]
    steps = config.train.epochs * -(-64 // config.train.batch_size)
    expected = dpsgd.epsilon(
        config.dpsgd.noise_multiplier,
        config.dpsgd.delta,
        64,
        config.train.batch_size,
        steps,
        config.dpsgd.accountant,
    )
    assert privacy["steps"] == steps
    assert privacy["epsilon"] == pytest.approx(expected)
    assert results["defenses"]["erm"]["privacy"] is None


def test_early_stopping_holds_its_validation_slice_out_of_the_members(baselines_run):
    config, results = baselines_run
    stopped = results["defenses"]["early_stopping"]
    held_out = round(config.early_stopping.validation_fraction * 64)
    assert stopped["num_validation"] == held_out
    assert stopped["num_members"] == 64 - held_out
    assert stopped["attacks"]["loss"]["threshold_free"]["num_members"] == 64 - held_out
    accuracies = [record["validation_accuracy"] for record in stopped["history"]]
    assert stopped["selected_epoch"] == int(np.argmax(accuracies)) + 1

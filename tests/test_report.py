"""Tests for adamixup_jax.report: the table's rows and numbers, the written files."""

import json
import os

import numpy as np
import pytest

from adamixup_jax import metrics, report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _attack_result(rng, separation):
    is_member = np.arange(400) < 200
    scores = rng.normal(size=400) + separation * is_member
    threshold = metrics.best_threshold(scores, is_member)
    return {
        "threshold_free": metrics.membership_metrics(scores, is_member),
        "calibrated": metrics.metrics_at_threshold(scores, is_member, threshold),
    }


def _defense(train_accuracy, test_accuracy, attacks):
    return {
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
        "generalization_gap": train_accuracy - test_accuracy,
        "mixing_strength_final": None,
        "train_seconds": 12.5,
        "attacks": attacks,
    }


@pytest.fixture
def results():
    rng = np.random.default_rng(0)
    hand_made = {
        "threshold_free": {
            "auc": 0.75123,
            "balanced_accuracy": 0.6789,
            "advantage": 0.3578,
            "tpr_at_fpr": {"0.001": 0.0123, "0.01": 0.04567},
            "num_members": 4,
            "num_nonmembers": 4,
            "roc": {"fpr": [0.0, 0.0, 0.25, 1.0], "tpr": [0.0, 0.5, 0.75, 1.0]},
        },
        "calibrated": {
            "threshold": 0.5,
            "accuracy": 0.625,
            "balanced_accuracy": 0.625,
            "tpr": 0.75,
            "fpr": 0.5,
            "advantage": 0.25,
        },
    }
    return {
        "dataset": "mnist5k",
        "model": "mnist_cnn",
        "elapsed_seconds": 123.44,
        "split": {"num_target_members": 500, "num_target_nonmembers": 500},
        "defenses": {
            "erm": _defense(
                0.995,
                0.9012,
                {
                    "loss": hand_made,
                    "entropy": _attack_result(rng, 1.0),
                    "modified_entropy": _attack_result(rng, 1.5),
                },
            ),
            "adamixup": _defense(
                0.97,
                0.95,
                {
                    "loss": _attack_result(rng, 0.3),
                    "entropy": _attack_result(rng, 0.2),
                    "modified_entropy": _attack_result(rng, 0.4),
                },
            ),
        },
    }


def test_table_row_has_formatted_numbers(results):
    table = report.markdown_table(results)

    assert (
        "| erm | 99.5% | 90.1% | 9.4% | loss | 0.751 | 1.23% | 4.57% | 67.9% | 62.5% "
        "| 75.0% / 50.0% |" in table
    )


def test_table_has_every_row_and_labelled_columns(results):
    table = report.markdown_table(results)
    rows = [line for line in table.splitlines() if line.startswith("| ")]

    assert len(rows) == 1 + 6
    header = rows[0]
    for column in (
        "AUC",
        "TPR@0.1%FPR",
        "TPR@1%FPR",
        "oracle, upper bound",
        "attacker's threshold",
    ):
        assert column in header
    for defense in ("erm", "adamixup"):
        for attack in ("loss", "entropy", "modified_entropy"):
            assert any(
                row.startswith(f"| {defense} |") and f"| {attack} |" in row
                for row in rows[1:]
            )
    assert "positive class" in table
    assert "realistic" in table


def test_adamixup_row_numbers(results):
    entropy = results["defenses"]["adamixup"]["attacks"]["entropy"]
    row = next(
        line
        for line in report.markdown_table(results).splitlines()
        if line.startswith("| adamixup |") and "| entropy |" in line
    )
    cells = [cell.strip() for cell in row.strip("|").split("|")]

    assert cells[:5] == ["adamixup", "97.0%", "95.0%", "2.0%", "entropy"]
    assert cells[5] == f"{entropy['threshold_free']['auc']:.3f}"
    assert float(cells[8].rstrip("%")) == pytest.approx(
        100 * entropy["threshold_free"]["balanced_accuracy"], abs=0.05
    )


def test_markdown_has_title_and_run_lines(results):
    text = report.markdown(results)

    assert text.startswith("# Membership inference results\n")
    assert "- dataset: mnist5k" in text
    assert "- model: mnist_cnn" in text
    assert "- elapsed: 123.4 s" in text
    assert "- num_target_members: 500" in text


def test_write_all_creates_the_three_files(results, tmp_path):
    workdir = str(tmp_path / "run")

    text = report.write_all(workdir, results)

    assert sorted(os.listdir(workdir)) == ["results.json", "results.md", "roc.png"]
    with open(os.path.join(workdir, "results.md"), encoding="utf-8") as f:
        assert f.read() == text
    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
        assert json.load(f) == results
    with open(os.path.join(workdir, "roc.png"), "rb") as f:
        png = f.read()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 10_000


def test_write_markdown_and_json(results, tmp_path):
    report.write_markdown(str(tmp_path / "r.md"), results)
    report.write_json(str(tmp_path / "r.json"), results)

    assert (tmp_path / "r.md").read_text() == report.markdown(results)
    assert json.loads((tmp_path / "r.json").read_text()) == results


def test_roc_plot_without_attacks_is_refused(results):
    for defense in results["defenses"].values():
        defense["attacks"] = {}

    with pytest.raises(ValueError, match="no attack results"):
        report.plot_roc("unused.png", results)

"""Human-readable reports of one run: a Markdown table, the results as JSON and a
log-log ROC plot, all written atomically into the run's workdir.

The input is the results dict the pipeline produces: per defense its accuracies and,
per attack, `threshold_free` (metrics.membership_metrics) and `calibrated`
(metrics.metrics_at_threshold at the threshold chosen on the attacker's reference
model).
"""

import io
import os

import numpy as np
from absl import logging
from matplotlib.figure import Figure

from adamixup_jax import files

_EXPLANATION = (
    "Members of the target's training set are the positive class: TPR is the "
    "fraction of members flagged, FPR the fraction of non-members flagged. "
    "The *calibrated* columns are the realistic attacker, thresholding at a value "
    "chosen on its own reference model (balanced accuracy, then TPR / FPR at that "
    "threshold); *best bal. acc.* picks the best threshold with "
    "knowledge of the true membership and is only an oracle upper bound. AUC and "
    "TPR at low FPR are threshold-free."
)


def _percent(value: float, decimals: int = 1) -> str:
    return f"{100.0 * value:.{decimals}f}%"


def _fpr_keys(results: dict) -> list[str]:
    """Every target FPR reported by some attack, ascending."""
    keys = {
        key
        for defense in results["defenses"].values()
        for attack in defense["attacks"].values()
        for key in attack["threshold_free"]["tpr_at_fpr"]
    }
    return sorted(keys, key=float)


def markdown_table(results: dict) -> str:
    """An explanatory paragraph and one table row per (defense, attack)."""
    fpr_keys = _fpr_keys(results)
    header = (
        ["defense", "train acc.", "test acc.", "gap", "attack", "AUC"]
        + [f"TPR@{100.0 * float(key):g}%FPR" for key in fpr_keys]
        + [
            "best bal. acc. (oracle, upper bound)",
            "calibrated bal. acc. (attacker's threshold)",
            "calibrated TPR / FPR",
        ]
    )
    # Names left-aligned, numbers right-aligned.
    alignment = ["---"] + ["---:"] * 3 + ["---"] + ["---:"] * (len(header) - 5)
    lines = [
        _EXPLANATION,
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(alignment) + "|",
    ]

    for defense_name, defense in results["defenses"].items():
        for attack_name, attack in defense["attacks"].items():
            threshold_free = attack["threshold_free"]
            tpr_at_fpr = threshold_free["tpr_at_fpr"]
            row = (
                [
                    defense_name,
                    _percent(defense["train_accuracy"]),
                    _percent(defense["test_accuracy"]),
                    _percent(defense["generalization_gap"]),
                    attack_name,
                    f"{threshold_free['auc']:.3f}",
                ]
                + [
                    _percent(tpr_at_fpr[key], 2) if key in tpr_at_fpr else "–"
                    for key in fpr_keys
                ]
                + [
                    _percent(threshold_free["balanced_accuracy"]),
                    _percent(attack["calibrated"]["balanced_accuracy"]),
                    _percent(attack["calibrated"]["tpr"])
                    + " / "
                    + _percent(attack["calibrated"]["fpr"]),
                ]
            )
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _epsilon(defense: dict) -> str:
    privacy = defense.get("privacy")
    if not privacy:
        return "–"
    return f"{privacy['epsilon']:.3g} (δ={privacy['delta']:g})"


def summary_table(results: dict, fpr_key: str = "0.01") -> str:
    """One row per defense: accuracies, epsilon where it exists, and per attack the
    threshold-free AUC and TPR at `fpr_key` FPR (the largest reported FPR if that
    one is not); then the query budgets spent."""
    reported = _fpr_keys(results)
    if reported and fpr_key not in reported:
        fpr_key = reported[-1]
    attack_names = list(
        dict.fromkeys(
            name
            for defense in results["defenses"].values()
            for name in defense["attacks"]
        )
    )
    percent = f"{100.0 * float(fpr_key):g}%"
    header = ["defense", "train acc.", "test acc.", "ε", *attack_names]
    lines = [
        (
            f"Every defense against every attack: AUC / TPR at {percent} FPR "
            "(threshold-free; members are the positive class). ε is the DP-SGD "
            "guarantee of the target's training, where one exists."
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(attack_names),
    ]
    budgets = []
    for defense_name, defense in results["defenses"].items():
        cells = [
            defense_name,
            _percent(defense["train_accuracy"]),
            _percent(defense["test_accuracy"]),
            _epsilon(defense),
        ]
        for name in attack_names:
            attack = defense["attacks"].get(name)
            if attack is None:
                cells.append("–")
                continue
            free = attack["threshold_free"]
            tpr = free["tpr_at_fpr"].get(fpr_key)
            cells.append(
                f"{free['auc']:.3f} / {_percent(tpr, 1) if tpr is not None else '–'}"
            )
            if "queries" in attack:
                spent = attack["queries"]
                budgets.append(
                    f"- {defense_name}, {name}: on the target, "
                    f"{spent['target_mean_per_example']:.0f} queries per example on "
                    f"average, at most {spent['target_max_per_example']} (budget "
                    f"{spent['budget_per_example']}), {spent['target_total']} in all; "
                    f"{spent['reference_total']} more on the attacker's reference "
                    "model"
                )
        lines.append("| " + " | ".join(cells) + " |")
    if budgets:
        lines += ["", "Label queries spent:", *budgets]
    return "\n".join(lines) + "\n"


def shadow_table(results: dict) -> str:
    """Table of the shadow-model attacks (mean ± std over target models), or ''."""
    rows = [
        (defense_name, attack_name, summary)
        for defense_name, defense in results["defenses"].items()
        for attack_name, summary in defense.get("shadow_attacks", {}).items()
    ]
    if not rows:
        return ""
    fpr_keys = sorted(
        {key for *_, summary in rows for key in summary["tpr_at_fpr"]}, key=float
    )
    header = ["defense", "attack", "targets", "AUC"] + [
        f"TPR@{100.0 * float(key):g}%FPR" for key in fpr_keys
    ]
    lines = [
        "Shadow-model attacks: each of the first target models of a batch is attacked "
        "with the others as shadow/reference models (leave-one-out); mean ± std over "
        "targets, threshold-free.",
        "",
        "| " + " | ".join(header) + " |",
        "|---|---|---:|" + "---:|" * (len(header) - 3),
    ]
    for defense_name, attack_name, summary in rows:
        cells = [
            defense_name,
            attack_name,
            str(len(summary["targets"])),
            f"{summary['auc']['mean']:.3f} ± {summary['auc']['std']:.3f}",
        ] + [
            f"{_percent(summary['tpr_at_fpr'][key]['mean'], 2)} ± "
            f"{_percent(summary['tpr_at_fpr'][key]['std'], 2)}"
            for key in fpr_keys
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(results: dict) -> str:
    """The whole results.md: title, what was run, the table."""
    lines = [
        "# Membership inference results",
        "",
        f"- dataset: {results['dataset']}",
        f"- model: {results['model']}",
        f"- elapsed: {results['elapsed_seconds']:.1f} s",
    ]
    for key, value in results.get("split", {}).items():
        lines.append(f"- {key}: {value}")
    text = (
        "\n".join(lines)
        + "\n\n"
        + summary_table(results)
        + "\n"
        + markdown_table(results)
    )
    shadows = shadow_table(results)
    return text + ("\n" + shadows if shadows else "")


def write_markdown(path: str, results: dict) -> None:
    files.write_text(path, markdown(results))


def write_json(path: str, results: dict) -> None:
    files.write_json(path, results)


def _curves(results: dict) -> dict[str, list[tuple[str, dict, float]]]:
    """Per attack panel: (defense, roc, auc) for every defense that ran it. Shadow
    attacks show their first target's ROC and the mean AUC over targets."""
    panels: dict[str, list] = {}
    for defense_name, defense in results["defenses"].items():
        for attack_name, attack in defense["attacks"].items():
            free = attack["threshold_free"]
            panels.setdefault(attack_name, []).append(
                (defense_name, free["roc"], free["auc"])
            )
        for attack_name, summary in defense.get("shadow_attacks", {}).items():
            panels.setdefault(attack_name, []).append(
                (defense_name, summary["roc"], summary["auc"]["mean"])
            )
    return panels


def roc_png(results: dict) -> bytes:
    """Log-log ROC curves as PNG bytes: one panel per attack, one curve per defense."""
    panels = _curves(results)
    attack_names = list(panels)
    if not attack_names:
        raise ValueError("results has no attack results under any defense to plot.")
    most_nonmembers = max(
        attack["threshold_free"]["num_nonmembers"]
        for defense in results["defenses"].values()
        for attack in defense["attacks"].values()
    )
    # Down to 0.1% FPR at least, further when enough non-members resolve lower rates.
    lowest_rate = min(1e-3, 1.0 / most_nonmembers)

    # A bare Figure renders with Agg and leaves pyplot's global state alone.
    columns = min(4, len(attack_names))
    rows = -(-len(attack_names) // columns)
    figure = Figure(figsize=(4.0 * columns, 4.0 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(attack_names) :]:
        ax.set_visible(False)
    for ax, attack_name in zip(axes, attack_names):
        ax.plot(
            [lowest_rate, 1.0], [lowest_rate, 1.0], "k--", linewidth=0.8, label="chance"
        )
        for defense_name, roc, auc in panels[attack_name]:
            fpr = np.asarray(roc["fpr"])
            tpr = np.asarray(roc["tpr"])
            # A zero rate has no place on a log axis.
            visible = (fpr > 0.0) & (tpr > 0.0)
            ax.plot(
                fpr[visible],
                tpr[visible],
                linewidth=1.2,
                label=f"{defense_name} (AUC {auc:.3f})",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lowest_rate, 1.0)
        ax.set_ylim(lowest_rate, 1.0)
        ax.set_xlabel("false positive rate (non-members flagged)")
        ax.set_ylabel("true positive rate (members flagged)")
        ax.set_title(attack_name)
        ax.legend(loc="lower right", fontsize="small")

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def plot_roc(path: str, results: dict) -> None:
    files.write_bytes(path, roc_png(results))


def write_all(workdir: str, results: dict) -> str:
    """Writes results.json, results.md and roc.png into `workdir`; returns the text."""
    text = markdown(results)
    files.write_text(os.path.join(workdir, "results.md"), text)
    plot_roc(os.path.join(workdir, "roc.png"), results)
    # Last: its presence marks the run as finished.
    write_json(os.path.join(workdir, "results.json"), results)
    logging.info("Wrote results.json, results.md and roc.png to %s", workdir)
    return text

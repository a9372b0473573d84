"""One run, start to end: config -> data -> split -> target and reference models per
defense -> inference-mode logits -> attack scores -> metrics -> report.

A run is resumable: each defense's finished results are saved under
`<workdir>/partial/` as soon as they exist, and a rerun of the same config in the
same workdir picks them up instead of training again.
"""

import hashlib
import json
import os
import shutil
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from adamixup_jax import (
    attacks,
    config_checks,
    data,
    defenses,
    files,
    membership,
    metrics,
    models,
    report,
    scoring,
    shadows,
    training,
)
from adamixup_jax.attacks import rmia
from adamixup_jax.attacks import shadow as attack_shadow
from adamixup_jax.attacks.label_only import LabelOracle
from adamixup_jax.config_checks import ConfigError

# Keys that change how a run looks, never what it computes.
_COSMETIC_KEYS = ("overwrite", "train.progress")
_RUN_FILES = (
    "config.json",
    "split.npz",
    "shadows.npz",
    "results.json",
    "results.md",
    "roc.png",
)


def default_config() -> ml_collections.ConfigDict:
    """Every key of a run, with defaults; configs/*.py start from this."""
    config = ml_collections.ConfigDict()
    config.seed = 0  # Seeds model init, data order and mixing (split has its own seed).
    config.data = data.default_config()
    config.split = membership.default_config()
    config.model = models.default_config()
    config.train = training.default_config()
    # Comma-separated defenses to train and attack, side by side.
    config.defenses = "erm,adamixup"
    for name, module in defenses.DEFENSES.items():
        config[name] = module.default_config()
    # Comma-separated attacks to run on every defense.
    config.attacks = ",".join(attacks.ATTACKS)
    # Comma-separated label-only attacks (predicted labels only), calibrated like the
    # threshold attacks; '' runs none.
    config.label_only_attacks = ""
    # Label-only attacks score at most this many members and as many non-members of
    # each model (the first ones, in the split's random order); 0 scores all. The
    # boundary search costs max_queries forward passes per example.
    config.label_only_examples = 0
    config.attack = ml_collections.ConfigDict()
    config.attack.augmentation = ml_collections.ConfigDict()
    config.attack.augmentation.shift = 1  # Shifted copies up to this many pixels.
    config.attack.augmentation.flip = False  # Flipped copies (not for digits).
    # Rotated copies, degrees in [-180, 180] (each applied to the plain image).
    config.attack.augmentation.angles = ()
    config.attack.noise = ml_collections.ConfigDict()
    config.attack.noise.sigma = 8.0  # Noise std on the 0-255 pixel scale.
    config.attack.noise.num_samples = 16  # Noised copies per example.
    # Boundary distance (HopSkipJump-style search; max_queries is per example).
    config.attack.boundary = attacks.boundary.default_config()
    # Defense of the attacker's reference model: 'same' as the target (adaptive
    # attacker, the default) or a defense name such as 'erm'.
    config.attack.reference_defense = "same"
    # Defense of the shadow models: 'same' as the target (adaptive, default) or a
    # defense name such as 'erm' (a non-adaptive attacker).
    config.attack.shadow_defense = "same"
    # Comma-separated shadow-model attacks (need shadows.num_models > 0).
    config.shadow_attacks = ",".join(attacks.SHADOW_ATTACKS)
    config.attack.lira = ml_collections.ConfigDict()
    config.attack.lira.fixed_variance = (
        False  # One global variance instead of per example.
    )
    config.attack.rmia = ml_collections.ConfigDict()
    config.attack.rmia.a = 0.3  # Offline approximation of Pr(x) from OUT models.
    # Fit `a` instead on the last two shadow models (never targets), as the attacker
    # could: one plays the target, the other the only reference.
    config.attack.rmia.fit_a = False
    config.attack.rmia.gamma = 1.0  # Likelihood-ratio threshold against population z.
    config.attack.shokri = ml_collections.ConfigDict()
    config.attack.shokri.hidden = 64  # Hidden units of the per-class attack MLP.
    config.attack.shokri.epochs = 200  # Full-batch training steps of that MLP.
    config.shadows = shadows.default_config()
    config.scoring = ml_collections.ConfigDict()
    config.scoring.num_queries = 1  # Identity, then flip (if allowed), then shifts.
    config.scoring.flip = False  # Horizontal flips as queries (not for digits).
    config.scoring.shift = 2  # Pixels of the shifted queries.
    config.report = ml_collections.ConfigDict()
    config.report.fprs = (0.001, 0.01)  # FPRs at which TPR is reported.
    config.overwrite = False  # Allow replacing a finished run in --workdir.
    return config


def _comparable(config: ml_collections.ConfigDict) -> dict:
    resolved = json.loads(config.to_json())
    for key in _COSMETIC_KEYS:
        parent = resolved
        *path, leaf = key.split(".")
        for part in path:
            parent = parent[part]
        parent.pop(leaf, None)
    return resolved


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(prefix + key)
    return changed


def prepare_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Refuses a workdir that holds a finished run or a different unfinished one,
    unless `overwrite`; with `overwrite`, clears this project's files from it."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir={workdir!r} exists and is not a folder")
    config_path = os.path.join(workdir, "config.json")
    finished = os.path.exists(os.path.join(workdir, "results.json"))
    if config.overwrite:
        for name in _RUN_FILES:
            if os.path.exists(os.path.join(workdir, name)):
                os.remove(os.path.join(workdir, name))
        shutil.rmtree(os.path.join(workdir, "partial"), ignore_errors=True)
        shutil.rmtree(os.path.join(workdir, "checkpoints"), ignore_errors=True)
        shutil.rmtree(os.path.join(workdir, "lira_layout"), ignore_errors=True)
    elif finished:
        raise ConfigError(
            f"--workdir={workdir!r} already holds a finished run (results.json); "
            "choose another workdir or pass --config.overwrite=True"
        )
    elif os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as f:
            try:
                previous = json.load(f)
            except json.JSONDecodeError:
                previous = None
        previous_config = (previous or {}).get("config")
        current = _comparable(config)
        if previous_config != current:
            changed = sorted(_changed_keys(previous_config or {}, current))
            raise ConfigError(
                f"--workdir={workdir!r} holds an unfinished run with a different "
                "config "
                f"(changed: {', '.join(changed[:8]) or 'unreadable config.json'}); "
                "rerun "
                "with the same config to resume, or pass --config.overwrite=True"
            )
        logging.info("Resuming the unfinished run in %s", workdir)
    os.makedirs(os.path.join(workdir, "partial"), exist_ok=True)


def _calibrated_attack(config, target_scores, reference_scores) -> dict:
    """Threshold-free metrics on the target, and the metrics of the threshold the
    attacker calibrates on its reference model. `*_scores(part)` score the model's
    'members' or 'nonmembers'."""

    def with_membership(score_part):
        member_scores, nonmember_scores = (
            score_part("members"),
            score_part("nonmembers"),
        )
        is_member = np.r_[
            np.ones(len(member_scores), bool), np.zeros(len(nonmember_scores), bool)
        ]
        return np.concatenate([member_scores, nonmember_scores]), is_member

    scores, is_member = with_membership(target_scores)
    threshold = metrics.best_threshold(*with_membership(reference_scores))
    return {
        "threshold_free": metrics.membership_metrics(
            scores, is_member, fprs=tuple(config.report.fprs)
        ),
        "calibrated": metrics.metrics_at_threshold(scores, is_member, threshold),
    }


def _query_summary(spent: list[np.ndarray]) -> dict:
    spent = np.concatenate(spent)
    return {
        "mean_per_example": float(spent.mean()),
        "max_per_example": int(spent.max()),
        "total": int(spent.sum()),
    }


def _attack_results(config, target, reference) -> dict:
    """Every threshold attack on logits, then every label-only attack on predicted
    labels, each calibrated on the reference model. `target` and `reference` are
    the outputs of `_train_and_score`."""
    results = {}
    for name in config_checks.names(config.attacks):
        score = attacks.get(name)

        def from_logits(model, score=score):
            return lambda part: score(model["logits"][part], model["labels"][part])

        results[name] = _calibrated_attack(
            config, from_logits(target), from_logits(reference)
        )
    noise_key = jax.random.fold_in(jax.random.key(config.seed), 4)
    for name in config_checks.names(config.label_only_attacks):
        module = attacks.LABEL_ONLY_ATTACKS[name]
        options = config.attack[name].to_dict() if name in config.attack else {}
        queries = {"target": [], "reference": []}  # per example, where reported

        def from_labels(model, role, module=module, options=options, queries=queries):
            def score_part(part):
                limit = config.label_only_examples or None
                arguments = (
                    model["predict_labels"],
                    model["images"][part][:limit],
                    model["labels"][part][:limit],
                )
                if not hasattr(module, "search"):
                    return module.scores(*arguments, key=noise_key, **options)
                found = module.search(
                    *arguments,
                    key=noise_key,
                    progress=config.train.progress,
                    **options,
                )
                queries[role].append(found["queries"])
                return found["distances"]

            return score_part

        results[name] = _calibrated_attack(
            config,
            from_labels(target, "target"),
            from_labels(reference, "reference"),
        )
        if queries["target"]:
            results[name]["queries"] = {
                "budget_per_example": options.get("max_queries"),
                **{
                    f"{role}_{statistic}": value
                    for role, spent in queries.items()
                    for statistic, value in _query_summary(spent).items()
                },
            }
    return results


def _validation_split(config, member_idx: np.ndarray, fraction: float):
    """(trained-on indices, validation-slice indices) of a training pool: a seeded
    random `fraction` of it (at least one example) is held out for the defense."""
    if fraction <= 0:
        return member_idx, member_idx[:0]
    num_validation = max(1, round(fraction * len(member_idx)))
    order = np.random.default_rng([config.split.seed, 5]).permutation(len(member_idx))
    held_out = np.zeros(len(member_idx), bool)
    held_out[order[:num_validation]] = True
    # Both keep the pool's own (random) order: never sorted by dataset index, whose
    # rows may be sorted by label, so any prefix is still a random sample.
    return member_idx[~held_out], member_idx[held_out]


def _build_defense(config, defense_name, num_train_examples):
    steps_per_epoch = -(-num_train_examples // config.train.batch_size)
    length = defenses.TrainingLength(
        config.train.epochs,
        steps_per_epoch,
        num_train_examples,
        config.train.batch_size,
    )
    return defenses.make(defense_name, config, length)


def _train_and_score(
    config, model, defense_name, dataset, pool_idx, nonmember_idx, key, description
):
    """Trains one model with `defense_name` on the training pool `pool_idx` (less the
    defense's validation slice, if it holds one out). Returns its training result and
    what the attacks may see of it: a dict of 'images', 'labels' and inference-mode
    'logits' (after the defense's output transform) per part ('members': the examples
    actually trained on, 'nonmembers'), 'predict_labels' (a LabelOracle, for
    label-only attacks), 'num_validation' and the 'defense' object."""
    probe = _build_defense(config, defense_name, len(pool_idx))
    member_idx, validation_idx = _validation_split(
        config, pool_idx, probe.validation_fraction
    )
    defense = _build_defense(config, defense_name, len(member_idx))
    images, labels = dataset.images, dataset.labels
    result = training.train_one(
        model,
        defense,
        config.train,
        images[member_idx],
        labels[member_idx],
        dataset.num_classes,
        key,
        eval_sets={
            "train": (images[member_idx], labels[member_idx]),
            "test": (images[nonmember_idx], labels[nonmember_idx]),
        },
        description=description,
        validation=(
            (images[validation_idx], labels[validation_idx])
            if len(validation_idx)
            else None
        ),
    )
    predict = result.predict  # compiled once, during training
    state = result.state
    logits = {
        part: np.asarray(
            defense.transform_outputs(
                training.predict_logits(
                    predict, state, images[idx], config.train.eval_batch_size
                )
            ),
            np.float32,
        )
        for part, idx in (("members", member_idx), ("nonmembers", nonmember_idx))
    }
    if not all(np.isfinite(part).all() for part in logits.values()):
        raise FloatingPointError(
            f"{description}: training diverged (non-finite logits after "
            f"{config.train.epochs} epochs); lower train.learning_rate="
            f"{config.train.learning_rate}"
        )
    parts = {"members": member_idx, "nonmembers": nonmember_idx}

    def traceable(pixels):
        variables = {"params": state.params}
        if state.batch_stats:
            variables["batch_stats"] = state.batch_stats
        outputs = model.apply(variables, data.normalize_pixels(pixels), train=False)
        return jax.numpy.argmax(defense.transform_outputs(outputs), axis=-1)

    return result, {
        "images": {part: images[idx] for part, idx in parts.items()},
        "labels": {part: labels[idx] for part, idx in parts.items()},
        "logits": logits,
        "predict_labels": LabelOracle(traceable, config.train.eval_batch_size),
        "num_validation": len(validation_idx),
        "defense": defense,
    }


def _run_defense(config, model, dataset, split, defense_name) -> dict:
    root_key = jax.random.key(config.seed)
    # The same target key for every defense: targets differ only by their defense.
    target, target_view = _train_and_score(
        config,
        model,
        defense_name,
        dataset,
        split.target_members,
        split.target_nonmembers,
        jax.random.fold_in(root_key, 1),
        f"target/{defense_name}",
    )
    reference_defense = config.attack.reference_defense
    if reference_defense == "same":
        reference_defense = defense_name
    _, reference_view = _train_and_score(
        config,
        model,
        reference_defense,
        dataset,
        split.reference_members,
        split.reference_nonmembers,
        jax.random.fold_in(root_key, 2),
        f"reference/{reference_defense}",
    )

    def accuracy(view, part):
        return training.accuracy(view["logits"][part], view["labels"][part])

    train_accuracy = accuracy(target_view, "members")
    test_accuracy = accuracy(target_view, "nonmembers")
    defense = target_view["defense"]
    num_members = len(target_view["labels"]["members"])
    return {
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
        "generalization_gap": train_accuracy - test_accuracy,
        "mixing_strength_final": defense.mixing_strength(config.train.epochs - 1),
        "num_members": num_members,
        "num_validation": target_view["num_validation"],
        "selected_epoch": target.selected_epoch,
        "privacy": defense.privacy_spent(
            num_members,
            config.train.batch_size,
            target.selected_epoch * -(-num_members // config.train.batch_size),
        ),
        "train_seconds": target.seconds,
        "reference_defense": reference_defense,
        "reference_train_accuracy": accuracy(reference_view, "members"),
        "reference_test_accuracy": accuracy(reference_view, "nonmembers"),
        "history": target.history,
        "attacks": _attack_results(config, target_view, reference_view),
    }


def _training_fingerprint(config, defense_name: str, keep: np.ndarray) -> str:
    """Digest of everything that shapes the shadow models' training."""
    resolved = _comparable(config)
    shaping = {
        key: resolved[key]
        for key in ("seed", "data", "model", "train", "shadows", defense_name)
    }
    for key in ("eval_batch_size", "log_eval_examples"):
        shaping["train"].pop(key, None)
    digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode())
    digest.update(defense_name.encode())
    digest.update(np.packbits(keep).tobytes())
    return digest.hexdigest()


def _batch_logits(config, model, dataset, defense_name, pool, keep, workdir):
    """Trains a batch of models with `defense_name` on the pool (resuming from its
    checkpoints) and returns its logits `[models, pool, queries, classes]` and the
    training seconds. The batch's keys depend on the seed only, never the defense."""
    defense = _build_defense(config, defense_name, int(keep.sum(axis=1).max()))
    keys = jax.random.split(
        jax.random.fold_in(jax.random.key(config.seed), 3), keep.shape[0]
    )
    images, labels = dataset.images[pool], dataset.labels[pool]
    many = shadows.train_many(
        model,
        defense,
        config.train,
        images,
        labels,
        keep,
        dataset.num_classes,
        keys,
        chunk_size=config.shadows.chunk_size or None,
        batching=config.shadows.batching,
        description=f"shadows/{defense_name}",
        checkpoint_dir=os.path.join(workdir, "checkpoints", defense_name),
        checkpoint_every_epochs=config.shadows.checkpoint_every_epochs,
        fingerprint=_training_fingerprint(config, defense_name, keep),
    )
    queries = scoring.query_transforms(
        config.scoring.num_queries, config.scoring.flip, config.scoring.shift
    )
    logits = np.asarray(
        defense.transform_outputs(
            scoring.logits_many(
                model, many.state, images, queries, config.train.eval_batch_size
            )
        ),
        np.float32,
    )
    files.write_npz(
        os.path.join(workdir, "partial", f"{defense_name}_shadow_logits.npz"),
        logits=logits,
        keep=keep,
        labels=labels,
        pool=pool,
    )
    scoring.export_lira_layout(
        os.path.join(workdir, "lira_layout", defense_name),
        logits,
        keep,
        labels,
        config.train.epochs,
    )
    return logits, many.seconds


def _shadow_attack_results(
    config, defense_name, target_logits, shadow_logits, keep, labels
):
    """Each shadow attack, leave-one-out over the first targets: target t is model t of
    the defended batch, its shadows the other models of the shadow batch (the same
    batch for an adaptive attacker, `attack.shadow_defense='same'`)."""
    results = {}
    for name in config_checks.names(config.shadow_attacks):
        score, fixed, block = attacks.SHADOW_ATTACKS[name]
        options = dict(fixed, **(config.attack[block].to_dict() if block else {}))
        if name == "shokri":
            options["seed"] = config.seed
        fitted_a = None
        if block == "rmia" and options.pop("fit_a"):
            last = keep.shape[0] - 1
            fitted_a = rmia.fit_a(shadow_logits, keep, labels, last, last - 1)
            options["a"] = fitted_a

        def with_target_swapped_in(
            logits, keep, labels, target, score=score, **options
        ):
            combined = shadow_logits.copy()
            combined[target] = logits[target]
            return score(combined, keep, labels, target, **options)

        results[name] = attack_shadow.evaluate(
            with_target_swapped_in,
            target_logits,
            keep,
            labels,
            range(config.shadows.num_targets),
            fprs=tuple(config.report.fprs),
            **options,
        )
        if fitted_a is not None:
            results[name]["fitted_a"] = fitted_a
        logging.info(
            "Defense %s, %s: AUC %.3f ± %.3f over %d targets",
            defense_name,
            name,
            results[name]["auc"]["mean"],
            results[name]["auc"]["std"],
            config.shadows.num_targets,
        )
    return results


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs every defense and attack of `config`, writes the report into `workdir`
    and returns the results dict (the content of results.json)."""
    start = time.perf_counter()
    # Everything that can refuse the run does so before the workdir is touched.
    config_checks.validate(config)
    try:
        dataset = data.load(config.data)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    config_checks.validate_against_data(
        config, len(dataset.labels), dataset.num_classes, dataset.images.shape[1:]
    )
    prepare_workdir(config, workdir)
    logging.info(
        "Run: data=%s (%d examples, %d classes), model=%s, defenses=%s, attacks=%s",
        dataset.name,
        len(dataset.labels),
        dataset.num_classes,
        config.model.name,
        config.defenses,
        config.attacks,
    )

    split = membership.split(len(dataset.labels), config.split)
    files.write_json(
        os.path.join(workdir, "config.json"),
        {
            "config": _comparable(config),
            "jax_version": jax.__version__,
            "backend": jax.default_backend(),
        },
    )
    split.save(os.path.join(workdir, "split.npz"))
    model = models.create(config.model, dataset.num_classes)
    if config.shadows.num_models:
        order = np.random.default_rng(config.shadows.seed).permutation(
            len(dataset.labels)
        )
        pool = order[: config.shadows.pool_size]
        keep = membership.keep_masks(
            config.shadows.num_models, len(pool), config.shadows.seed
        )
        files.write_npz(os.path.join(workdir, "shadows.npz"), pool=pool, keep=keep)

    per_defense = {}
    batches = {}  # defense name -> (logits of its model batch, training seconds)
    for defense_name in config_checks.names(config.defenses):
        partial_path = os.path.join(workdir, "partial", f"{defense_name}.json")
        if os.path.exists(partial_path):
            with open(partial_path, encoding="utf-8") as f:
                per_defense[defense_name] = json.load(f)
            logging.info(
                "Defense %s: reusing finished results from %s",
                defense_name,
                partial_path,
            )
            continue
        per_defense[defense_name] = _run_defense(
            config, model, dataset, split, defense_name
        )
        if config.shadows.num_models:
            shadow_defense = config.attack.shadow_defense
            shadow_defense = (
                defense_name if shadow_defense == "same" else shadow_defense
            )
            for name in {defense_name, shadow_defense} - set(batches):
                batches[name] = _batch_logits(
                    config, model, dataset, name, pool, keep, workdir
                )
            per_defense[defense_name]["shadow_defense"] = shadow_defense
            per_defense[defense_name]["shadow_train_seconds"] = batches[defense_name][1]
            per_defense[defense_name]["shadow_attacks"] = _shadow_attack_results(
                config,
                defense_name,
                batches[defense_name][0],
                batches[shadow_defense][0],
                keep,
                dataset.labels[pool],
            )
        files.write_json(partial_path, per_defense[defense_name])
        logging.info("Defense %s: results written to %s", defense_name, partial_path)

    results = {
        "dataset": dataset.name,
        "model": config.model.name,
        "backend": jax.default_backend(),
        "elapsed_seconds": time.perf_counter() - start,
        "split": {
            "seed": split.seed,
            "num_target_members": len(split.target_members),
            "num_target_nonmembers": len(split.target_nonmembers),
            "num_reference_members": len(split.reference_members),
            "num_reference_nonmembers": len(split.reference_nonmembers),
        },
        "epochs": config.train.epochs,
        "defenses": per_defense,
    }
    report.write_all(workdir, results)
    logging.info("Results written to %s", workdir)
    return results

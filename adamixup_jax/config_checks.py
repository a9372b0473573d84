"""Validation of a run's config, done once at load time before any data is read or
any model trained. Every error is a `ConfigError` whose message names the config key,
the bad value and what is allowed."""

import math

import ml_collections

from adamixup_jax import (
    attacks,
    data,
    defenses,
    mixing,
    models,
    scoring,
    shadows,
    training,
)


class ConfigError(ValueError):
    """A config value that is not allowed; the message names the key."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(key: str, value, minimum: int = 1) -> None:
    _require(
        _is_int(value) and value >= minimum,
        f"{key}={value!r} must be an integer >= {minimum}",
    )


def _one_of(key: str, value, allowed) -> None:
    _require(
        value in allowed,
        f"{key}={value!r} is not allowed; choose one of {sorted(allowed)}",
    )


def names(value: str) -> list[str]:
    """Splits a comma-separated list config value ('erm,adamixup') into names."""
    return [name.strip() for name in value.split(",") if name.strip()]


def _check_name_list(key: str, value, registry) -> None:
    _require(
        isinstance(value, str), f"{key}={value!r} must be a comma-separated string"
    )
    listed = names(value)
    _require(
        bool(listed), f"{key}={value!r} names nothing; choose from {sorted(registry)}"
    )
    for name in listed:
        _one_of(f"{key} entry", name, registry)
    _require(len(set(listed)) == len(listed), f"{key}={value!r} lists a name twice")


def _check_mixing_strength(key: str, value) -> None:
    _require(
        isinstance(value, (int, float)) and 0.0 <= value <= 0.5,
        f"{key}={value!r} is outside [0, 0.5] (the mixing strength is the minority "
        "sample's weight)",
    )


def _converted(check, *args, **kwargs) -> None:
    """Runs a module's own check, turning its ValueError/TypeError into ConfigError."""
    try:
        check(*args, **kwargs)
    except (ValueError, TypeError) as error:
        raise ConfigError(str(error)) from error


def used_defenses(config: ml_collections.ConfigDict) -> list[str]:
    """Every defense a run trains: the listed ones, and the attacker's reference and
    shadow defenses when they are named rather than 'same'."""
    used = names(config.defenses) if isinstance(config.defenses, str) else []
    keys = ["reference_defense"] + (
        ["shadow_defense"] if config.shadows.num_models else []
    )
    for key in keys:
        name = config.attack[key]
        if name != "same" and name in defenses.DEFENSES and name not in used:
            used.append(name)
    return [name for name in used if name in defenses.DEFENSES]


def shadow_defenses(config: ml_collections.ConfigDict) -> list[str]:
    """The defenses that train shadow batches (none without shadow models)."""
    if not config.shadows.num_models:
        return []
    listed = [name for name in names(config.defenses) if name in defenses.DEFENSES]
    if config.attack.shadow_defense == "same":
        return listed
    return list(dict.fromkeys([*listed, config.attack.shadow_defense]))


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every key of a run config; raises ConfigError on the first bad one."""
    _require(_is_int(config.seed), f"seed={config.seed!r} must be an integer")
    _one_of("data.name", config.data.name, data.LOADERS)
    _require(
        _is_int(config.data.image_size)
        and (config.data.image_size == 0 or config.data.image_size >= 8),
        f"data.image_size={config.data.image_size!r} must be 0 (native size) or at "
        "least 8 "
        "(the models pool the image three times)",
    )
    _require(
        _is_int(config.split.seed) and config.split.seed >= 0,
        f"split.seed={config.split.seed!r} must be a non-negative integer",
    )

    _one_of("model.name", config.model.name, models.MODELS)
    _one_of("model.conv_impl", config.model.conv_impl, models.CONV_IMPLS)
    _one_of("model.norm", config.model.norm, models.NORMS)
    _positive_int("model.width", config.model.width)
    _positive_int("model.dense", config.model.dense)

    _check_name_list("defenses", config.defenses, defenses.DEFENSES)
    for name in names(config.defenses):
        _require(name in config, f"config has no block {name!r} for defense {name!r}")
    ada = config.adamixup
    _one_of("adamixup.schedule", ada.schedule, mixing.SCHEDULES)
    _check_mixing_strength("adamixup.m_start", ada.m_start)
    _check_mixing_strength("adamixup.m_end", ada.m_end)
    _check_mixing_strength("adamixup.jitter", ada.jitter)
    _require(
        0.0 < ada.step_fraction < 1.0,
        f"adamixup.step_fraction={ada.step_fraction!r} must be in (0, 1)",
    )
    _one_of("adamixup.label_allocation", ada.label_allocation, mixing.ALLOCATIONS)
    _one_of("adamixup.pairing", ada.pairing, mixing.PAIRINGS)
    _require(
        math.isfinite(config.mixup.alpha) and config.mixup.alpha > 0,
        f"mixup.alpha={config.mixup.alpha!r} must be a finite number > 0",
    )
    _one_of("mixup.pairing", config.mixup.pairing, mixing.PAIRINGS)
    epsilon = config.label_smoothing.epsilon
    _require(
        isinstance(epsilon, (int, float)) and 0.0 <= epsilon < 1.0,
        f"label_smoothing.epsilon={epsilon!r} must be in [0, 1)",
    )

    # Every defense block is checked, used or not: a bad value is a mistake either way.
    for name, module in defenses.DEFENSES.items():
        check = getattr(module, "check_config", None)
        if check is not None:
            _converted(check, config[name])
    if "dpsgd" in used_defenses(config):
        _require(
            config.model.norm != "batch",
            "model.norm='batch' cannot be used with defense 'dpsgd': BatchNorm couples "
            "the examples of a batch, so per-example gradients would not be private; "
            "use model.norm='group' or 'none'",
        )

    _check_name_list("attacks", config.attacks, attacks.ATTACKS)
    if config.label_only_attacks:
        _check_name_list(
            "label_only_attacks", config.label_only_attacks, attacks.LABEL_ONLY_ATTACKS
        )
    _require(
        _is_int(config.label_only_examples) and config.label_only_examples >= 0,
        f"label_only_examples={config.label_only_examples!r} must be an integer >= 0 "
        "(0 scores every example)",
    )
    for name, module in attacks.LABEL_ONLY_ATTACKS.items():
        options = config.attack[name].to_dict() if name in config.attack else {}
        _converted(module.check_options, **options)
    _require(
        _is_int(config.attack.augmentation.shift)
        and config.attack.augmentation.shift >= 0,
        f"attack.augmentation.shift={config.attack.augmentation.shift!r} must be an "
        "integer >= 0",
    )
    _require(
        math.isfinite(config.attack.noise.sigma) and config.attack.noise.sigma > 0,
        f"attack.noise.sigma={config.attack.noise.sigma!r} must be a finite number > 0",
    )
    _positive_int("attack.noise.num_samples", config.attack.noise.num_samples)
    for key in ("reference_defense", "shadow_defense"):
        _one_of(f"attack.{key}", config.attack[key], ["same", *defenses.DEFENSES])
    shadow = config.shadows
    _require(
        _is_int(shadow.num_models)
        and shadow.num_models >= 0
        and shadow.num_models % 2 == 0,
        f"shadows.num_models={shadow.num_models!r} must be 0 (no shadow attacks) or an "
        "even integer, so every pool example is IN for exactly half of the models",
    )
    if shadow.num_models:
        _require(
            shadow.num_models >= 4,
            f"shadows.num_models={shadow.num_models} is too few: leave-one-out attacks "
            "need "
            "IN and OUT shadows for every example; use at least 4 (16 or more is "
            "typical)",
        )
        _check_name_list(
            "shadow_attacks", config.shadow_attacks, attacks.SHADOW_ATTACKS
        )
        _require(
            _is_int(shadow.num_targets)
            and 1 <= shadow.num_targets <= shadow.num_models,
            f"shadows.num_targets={shadow.num_targets!r} must be in [1, "
            "shadows.num_models="
            f"{shadow.num_models}]",
        )
        _positive_int("shadows.pool_size", shadow.pool_size, minimum=2)
        _require(
            _is_int(shadow.chunk_size) and shadow.chunk_size >= 0,
            f"shadows.chunk_size={shadow.chunk_size!r} must be 0 (all at once) or "
            "positive",
        )
        _one_of("shadows.batching", shadow.batching, shadows.BATCHINGS)
        _require(
            _is_int(shadow.checkpoint_every_epochs)
            and shadow.checkpoint_every_epochs >= 0,
            f"shadows.checkpoint_every_epochs={shadow.checkpoint_every_epochs!r} must "
            "be a "
            "non-negative integer",
        )
        try:
            scoring.query_transforms(
                config.scoring.num_queries, config.scoring.flip, config.scoring.shift
            )
        except ValueError as error:
            raise ConfigError(str(error)) from error
        _require(
            0.0 <= config.attack.rmia.a <= 1.0,
            f"attack.rmia.a={config.attack.rmia.a!r} must be in [0, 1]",
        )
        _require(
            not config.attack.rmia.fit_a or shadow.num_targets <= shadow.num_models - 2,
            f"attack.rmia.fit_a needs two non-target models: shadows.num_targets="
            f"{shadow.num_targets} must be at most shadows.num_models - 2",
        )
        _require(
            config.attack.rmia.gamma > 0,
            f"attack.rmia.gamma={config.attack.rmia.gamma!r} must be > 0",
        )
    for fpr in config.report.fprs:
        _require(
            0.0 < fpr < 1.0, f"report.fprs contains {fpr!r}; each must be in (0, 1)"
        )

    for key in ("num_target_members", "num_target_nonmembers"):
        _positive_int(f"split.{key}", config.split[key])
    _require(
        _is_int(config.split.num_population)
        and config.split.num_population > config.split.num_target_members,
        f"split.num_population={config.split.num_population!r} must be an integer "
        "above "
        f"split.num_target_members={config.split.num_target_members}: the attacker's "
        "reference model trains on as many examples as the target and needs "
        "non-members",
    )

    train = config.train
    _positive_int("train.epochs", train.epochs)
    _positive_int("train.batch_size", train.batch_size)
    _positive_int("train.eval_batch_size", train.eval_batch_size)
    _positive_int("train.log_eval_examples", train.log_eval_examples)
    _require(
        math.isfinite(train.learning_rate) and train.learning_rate > 0,
        f"train.learning_rate={train.learning_rate!r} must be a finite number > 0",
    )
    _require(
        0 <= train.momentum < 1, f"train.momentum={train.momentum!r} must be in [0, 1)"
    )
    _require(
        train.weight_decay >= 0,
        f"train.weight_decay={train.weight_decay!r} must be >= 0",
    )
    _one_of("train.lr_schedule", train.lr_schedule, training.LR_SCHEDULES)
    _require(
        _is_int(train.warmup_epochs) and 0 <= train.warmup_epochs < train.epochs,
        f"train.warmup_epochs={train.warmup_epochs!r} must be an integer in [0, "
        "train.epochs)",
    )


def validate_against_data(
    config: ml_collections.ConfigDict,
    num_examples: int,
    num_classes: int,
    image_shape: tuple[int, ...] | None = None,
) -> None:
    """Checks that the split sizes fit a dataset of `num_examples` examples (and the
    attack options its images of `image_shape` (H, W, C), when given)."""
    if image_shape is not None:
        side = min(image_shape[:2])
        shift = config.attack.augmentation.shift
        _require(
            shift < side,
            f"attack.augmentation.shift={shift!r} must be smaller than the image side "
            f"{side} of data.name={config.data.name!r}",
        )
    _require(
        num_classes >= 2,
        f"data.name={config.data.name!r} gave {num_classes} class; membership "
        "inference "
        "on a classifier needs at least 2",
    )
    if config.shadows.num_models:
        _require(
            config.shadows.pool_size <= num_examples,
            f"shadows.pool_size={config.shadows.pool_size} is more than the "
            f"{num_examples} "
            f"examples that data.name={config.data.name!r} has",
        )
    for name in used_defenses(config):
        check = getattr(defenses.DEFENSES[name], "check_against_data", None)
        if check is not None:
            # Against every training set the defense trains on: the largest is the
            # strictest (delta must stay below 1/N).
            sizes = [config.split.num_target_members]
            if name in shadow_defenses(config):
                sizes.append(config.shadows.pool_size // 2)
            _converted(check, config[name], max(sizes), num_classes)
    for name in used_defenses(config):
        members = config.split.num_target_members
        length = defenses.TrainingLength(
            config.train.epochs,
            -(-members // config.train.batch_size),
            members,
            config.train.batch_size,
        )
        defense = defenses.make(name, config, length)
        fraction = defense.validation_fraction
        if fraction > 0:
            held_out = max(1, round(fraction * config.split.num_target_members))
            _require(
                held_out < config.split.num_target_members,
                f"{name}.validation_fraction={fraction} leaves no training examples "
                f"of split.num_target_members={config.split.num_target_members}",
            )
        _require(
            name not in shadow_defenses(config)
            or (fraction == 0 and not defense.select_best_epoch),
            f"defense {name!r} holds out a validation slice, which the shadow-model "
            "batch does not support yet; set shadows.num_models=0 for it (or, for "
            "adamixup, controller='none')",
        )
    sizes = {
        key: config.split[key]
        for key in ("num_target_members", "num_target_nonmembers", "num_population")
    }
    total = sum(sizes.values())
    _require(
        total <= num_examples,
        " + ".join(f"split.{k}={v}" for k, v in sizes.items())
        + f" = {total} examples, more than the {num_examples} that data.name="
        f"{config.data.name!r} has",
    )

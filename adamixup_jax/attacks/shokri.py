"""Shokri et al. 2017 shadow-model attack: per true class, a small MLP learns IN vs OUT
from the shadow models' output vectors on the identity query, then scores the target's.

The output vectors are sorted (largest probability first), so a classifier learns
from the shape of the prediction rather than from which class got which probability.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.special

from adamixup_jax.attacks import shadow

# Floor on a feature's standard deviation when standardising: a constant feature
# becomes 0 instead of NaN.
MIN_FEATURE_STD = 1e-12


def _init_mlp(key, num_features: int, hidden: int) -> dict:
    hidden_key, output_key = jax.random.split(key)
    return {
        "hidden_w": jax.random.normal(hidden_key, (num_features, hidden))
        * jnp.sqrt(2.0 / num_features),
        "hidden_b": jnp.zeros(hidden),
        "output_w": jax.random.normal(output_key, (hidden,)) * jnp.sqrt(1.0 / hidden),
        "output_b": jnp.zeros(()),
    }


def _member_logit(params: dict, features: jnp.ndarray) -> jnp.ndarray:
    """Member logit [rows] of one MLP on features [rows, num_features]."""
    hidden = jax.nn.relu(features @ params["hidden_w"] + params["hidden_b"])
    return hidden @ params["output_w"] + params["output_b"]


@functools.partial(jax.jit, static_argnames=("hidden", "epochs", "learning_rate"))
def _train_per_class(
    keys, features, is_member, weights, *, hidden, epochs, learning_rate
):
    """One MLP per class, trained full-batch with Adam; arrays are stacked over classes:
    keys [classes, 2], features [classes, rows, num_features], is_member and weights
    [classes, rows] (weight 0 marks a padding row)."""
    optimizer = optax.adam(learning_rate)

    def train_one(key, features, is_member, weights):
        def loss(params):
            per_row = optax.sigmoid_binary_cross_entropy(
                _member_logit(params, features), is_member
            )
            return (per_row * weights).sum() / jnp.maximum(weights.sum(), 1.0)

        def step(carry, _):
            params, opt_state = carry
            grads = jax.grad(loss)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        params = _init_mlp(key, features.shape[-1], hidden)
        (params, _), _ = jax.lax.scan(
            step, (params, optimizer.init(params)), None, length=epochs
        )
        return params

    return jax.vmap(train_one)(keys, features, is_member, weights)


def scores(
    logits,
    keep,
    labels,
    target,
    *,
    num_shadows=None,
    hidden=64,
    epochs=200,
    learning_rate=0.01,
    seed=0,
) -> np.ndarray:
    """Member logits [examples] float64 of the attack classifier of each example's
    class, on the target's sorted softmax vector (query 0); higher = member.

    | option        | meaning                                                        |
    |---------------|----------------------------------------------------------------|
    | num_shadows   | the first this many models other than the target; None = all  |
    | hidden        | width of the MLP's one ReLU hidden layer                       |
    | epochs        | full-batch Adam steps (each step sees all of a class's rows)   |
    | learning_rate | Adam's step size                                               |
    | seed          | seeds the MLPs' initialisation (the only randomness)           |

    Each class's classifier trains on every (shadow, example of that class) pair, IN
    when the shadow trained on the example, and standardises its features with the
    mean and standard deviation of those rows. All classes train at once under vmap.
    Deterministic given seed on CPU; accelerators may reorder float reductions.
    """
    logits, keep, labels, target = shadow.checked_shadow_inputs(
        logits, keep, labels, target
    )
    shadows = shadow.other_models(
        len(logits), target, num_shadows, "attack.num_shadows"
    )
    hidden = shadow.check_positive_int("attack.hidden", hidden)
    epochs = shadow.check_positive_int("attack.epochs", epochs)
    learning_rate = shadow.check_positive_number("attack.learning_rate", learning_rate)
    seed = shadow.check_seed("attack.seed", seed)
    num_classes = logits.shape[-1]

    # [models, examples, classes], largest probability first.
    sorted_probs = -np.sort(-scipy.special.softmax(logits[:, :, 0, :], axis=-1), -1)

    # Each class's rows, padded to a common count: [classes, rows, classes].
    rows_per_class = len(shadows) * np.bincount(labels, minlength=num_classes)
    num_rows = int(rows_per_class.max())
    features = np.zeros((num_classes, num_rows, num_classes))
    is_member = np.zeros((num_classes, num_rows))
    weights = np.zeros((num_classes, num_rows))
    means = np.zeros((num_classes, num_classes))
    stds = np.ones((num_classes, num_classes))
    shadow_probs, shadow_keep = sorted_probs[shadows], keep[shadows]
    for label in range(num_classes):
        examples = np.flatnonzero(labels == label)
        count = rows_per_class[label]
        if count == 0:
            continue
        class_features = shadow_probs[:, examples].reshape(count, num_classes)
        means[label] = class_features.mean(axis=0)
        stds[label] = np.maximum(class_features.std(axis=0), MIN_FEATURE_STD)
        features[label, :count] = (class_features - means[label]) / stds[label]
        is_member[label, :count] = shadow_keep[:, examples].reshape(count)
        weights[label, :count] = 1.0

    keys = jax.random.split(jax.random.PRNGKey(seed), num_classes)
    params = _train_per_class(
        keys,
        jnp.asarray(features, jnp.float32),
        jnp.asarray(is_member, jnp.float32),
        jnp.asarray(weights, jnp.float32),
        hidden=hidden,
        epochs=epochs,
        learning_rate=learning_rate,
    )

    # Each target example goes through its own class's classifier.
    target_features = (sorted_probs[target] - means[labels]) / stds[labels]
    params_per_example = jax.tree_util.tree_map(lambda p: p[labels], params)
    member_logits = jax.vmap(lambda p, x: _member_logit(p, x[None])[0])(
        params_per_example, jnp.asarray(target_features, jnp.float32)
    )
    return np.asarray(member_logits, dtype=np.float64)

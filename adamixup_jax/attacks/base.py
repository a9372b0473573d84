"""What every score-based attack shares: the check of its (logits, labels) inputs."""

import numpy as np


def checked_inputs(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    """`logits` as float64 [examples, classes] and `labels` as int64 [examples].

    Raises ValueError unless logits are finite reals with at least two classes and
    labels are integers in [0, classes), one per row of logits.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(
            f"logits must be 2-D [examples, classes], got shape {logits.shape}."
        )
    if logits.dtype.kind not in "iuf":
        raise ValueError(f"logits must be real numbers, got dtype {logits.dtype}.")
    num_examples, num_classes = logits.shape
    if num_classes < 2:
        raise ValueError(f"logits must have at least 2 classes, got {num_classes}.")
    logits = logits.astype(np.float64)
    num_nonfinite = int((~np.isfinite(logits)).sum())
    if num_nonfinite:
        raise ValueError(
            f"logits has {num_nonfinite} NaN or infinite values; they must be finite."
        )

    if labels.shape != (num_examples,):
        raise ValueError(
            f"labels must have shape ({num_examples},) to match logits, "
            f"got {labels.shape}."
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}.")
    labels = labels.astype(np.int64)
    out_of_range = labels[(labels < 0) | (labels >= num_classes)]
    if out_of_range.size:
        raise ValueError(
            f"labels has values {np.unique(out_of_range)[:5].tolist()} outside "
            f"[0, {num_classes})."
        )
    return logits, labels

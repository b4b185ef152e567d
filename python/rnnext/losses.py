"""Losses returning ``(loss, grad)``, the gradient taken with respect to the first argument.

Shapes: ``logits`` or ``y`` are (..., C), typically (T, B, C); ``mask`` has the leading
shape (...), typically (T, B), and weights each step's loss (0 drops a step: many-to-one,
one-to-many, padding). ``reduction="sum"`` is the notes' sum over time and batch;
``"mean"`` divides by the number of masked-in steps (softmax) or elements (sigmoid, mse),
as PyTorch does.
"""

from __future__ import annotations

from typing import Any, Literal, Tuple, get_args

import numpy as np

from . import _core
from ._checks import as_real_array, at, check_choice, first_bad_position

Reduction = Literal["sum", "mean"]
REDUCTIONS: Tuple[str, ...] = get_args(Reduction)


def _prepare(name: str, logits: Any, mask: Any, reduction: str) -> Tuple[np.ndarray, np.ndarray]:
    check_choice("reduction", reduction, REDUCTIONS)
    z = as_real_array(name, logits)  # torch tensors: read as values, detached
    if z.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected real numbers, got dtype {z.dtype}")
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    if z.ndim < 1:
        raise ValueError(f"{name}: expected at least 1 dimension (..., C), got shape {z.shape}")
    lead = z.shape[:-1]
    if mask is None:
        m = np.ones(lead, dtype=z.dtype)
    else:
        m = as_real_array("mask", mask)
        if m.dtype.kind not in "biuf":
            raise TypeError(f"mask: expected booleans or numbers, got dtype {m.dtype}")
        if m.shape != lead:
            raise ValueError(f"mask: expected shape {lead} (the leading axes of {name}), got {m.shape}")
        m = m.astype(z.dtype)
    return z, m


def _reduce(per_step: np.ndarray, grad: np.ndarray, m: np.ndarray, reduction: str, per_elem: int) -> Tuple[float, np.ndarray]:
    loss = float(np.sum(per_step * m))
    if reduction == "mean":
        n = float(np.sum(m)) * per_elem
        if n > 0:
            loss /= n
            grad = grad / n
    return loss, grad


def _log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - np.max(z, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def softmax_cross_entropy(
    logits: Any, targets: Any, mask: Any = None, reduction: Reduction = "sum"
) -> Tuple[float, np.ndarray]:
    """Cross-entropy of softmax(logits) against class ids (...) or distributions (..., C)."""
    if mask is None and reduction in REDUCTIONS and isinstance(logits, np.ndarray) and isinstance(targets, np.ndarray):
        # The common case (float logits, integer ids, no mask) in one C++ pass per row.
        fast = _core.softmax_xent(logits, targets)
        if fast is not None:
            loss, grad = fast
            if reduction == "mean" and targets.size:
                loss /= targets.size
                grad /= grad.dtype.type(targets.size)
            return float(loss), grad
    z, m = _prepare("logits", logits, mask, reduction)
    C = z.shape[-1]
    if C == 0:
        raise ValueError(f"logits: expected at least one class on the last axis (..., C), got shape {z.shape}")
    logp = _log_softmax(z)
    t = as_real_array("targets", targets)
    if t.shape == z.shape and t.dtype.kind == "f":
        q = t.astype(z.dtype)
    elif t.shape == z.shape[:-1]:
        if t.dtype.kind not in "iu":
            raise TypeError(f"targets: expected integer class ids, got dtype {t.dtype}")
        bad = ((t < 0) | (t >= C)) & (m != 0)
        if bad.any():
            pos = first_bad_position(bad)
            raise ValueError(f"targets: class ids must be in [0, {C}), got {int(t[pos])}{at('targets', pos)}")
        q = np.zeros_like(z)
        np.put_along_axis(q, np.clip(t, 0, C - 1)[..., None].astype(np.intp), 1.0, axis=-1)
    else:
        raise ValueError(
            f"targets: expected class ids of shape {z.shape[:-1]} or probabilities of shape {z.shape}, got {t.shape}"
        )
    per_step = -np.sum(q * logp, axis=-1)
    grad = (np.exp(logp) * np.sum(q, axis=-1, keepdims=True) - q) * m[..., None]
    return _reduce(per_step, grad, m, reduction, 1)


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _targets_like(t: Any, z: np.ndarray) -> np.ndarray:
    t = as_real_array("targets", t)
    if t.shape != z.shape:
        raise ValueError(f"targets: expected the shape of the first argument, {z.shape}, got {t.shape}")
    if t.dtype.kind not in "biuf":
        raise TypeError(f"targets: expected numbers, got dtype {t.dtype}")
    return t.astype(z.dtype)


def sigmoid_cross_entropy(
    logits: Any,
    targets: Any,
    mask: Any = None,
    reduction: Reduction = "sum",
    positive_only: bool = False,
) -> Tuple[float, np.ndarray]:
    """Binary cross-entropy of sigmoid(logits) per element.

    ``positive_only=True`` keeps only the ``-y log sigmoid(z)`` term: the loss of the
    worked example in the reference notes (000).
    """
    z, m = _prepare("logits", logits, mask, reduction)
    y = _targets_like(targets, z)
    # log sigmoid(z) = -softplus(-z), log(1 - sigmoid(z)) = -softplus(z): stable for any z.
    elem = y * _softplus(-z)
    grad = y * (_sigmoid(z) - 1.0)
    if not positive_only:
        elem = elem + (1.0 - y) * _softplus(z)
        grad = _sigmoid(z) - y
    return _reduce(np.sum(elem, axis=-1), grad * m[..., None], m, reduction, z.shape[-1])


def mse(y: Any, targets: Any, mask: Any = None, reduction: Reduction = "sum") -> Tuple[float, np.ndarray]:
    """Squared error sum((y - targets)^2) (no factor 1/2), as ``torch.nn.MSELoss``."""
    z, m = _prepare("y", y, mask, reduction)
    t = _targets_like(targets, z)
    diff = z - t
    return _reduce(np.sum(diff * diff, axis=-1), 2.0 * diff * m[..., None], m, reduction, z.shape[-1])

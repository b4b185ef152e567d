"""Optimizers working in place on a model's flat parameter and gradient buffers."""

from __future__ import annotations

from typing import Any

import numpy as np


def _flat(model: Any) -> tuple:
    try:
        return model.flat_params, model.flat_grads
    except AttributeError as e:
        raise TypeError(f"model: expected an rnnext.RNN, got {type(model).__name__}") from e


def _check_lr(lr: Any) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)):
        raise TypeError(f"lr: expected a positive float, got {lr!r}")
    if not lr > 0:
        raise ValueError(f"lr: expected a positive float, got {lr!r}")
    return float(lr)


class SGD:
    """Plain gradient descent: p -= lr * g."""

    def __init__(self, model: Any, lr: float) -> None:
        self.model = model
        self.lr = _check_lr(lr)
        self._p, self._g = _flat(model)

    def step(self) -> None:
        self._p -= self._g * self._p.dtype.type(self.lr)

    def zero_grad(self) -> None:
        self.model.zero_grad()


def clip_grad_norm(model: Any, max_norm: float, *, error_if_nonfinite: bool = False) -> float:
    """Scale the gradients so their global L2 norm is at most ``max_norm``.

    Returns the norm before clipping. A NaN or inf norm leaves the gradients unchanged and
    is returned as is, or raises ValueError with ``error_if_nonfinite=True``.
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float, np.floating)) or not max_norm > 0:
        raise ValueError(f"max_norm: expected a positive float, got {max_norm!r}")
    _, g = _flat(model)
    norm = float(np.sqrt(np.dot(g.astype(np.float64), g.astype(np.float64))))
    if not np.isfinite(norm):
        if error_if_nonfinite:
            raise ValueError(f"clip_grad_norm: the gradient norm is {norm}, not finite")
        return norm
    if norm > max_norm:
        g *= g.dtype.type(max_norm / (norm + 1e-6))
    return norm

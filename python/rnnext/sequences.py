"""Many-to-one over padded batches: each sequence's last output, and its gradient back.

With ``lengths``, sequence b ends at step ``lengths[b] - 1``; ``y`` holds zeros after it::

    y, _ = rnn(x, lengths=lengths)                      # (T, B, C)
    last = rnnext.gather_last(y, lengths)               # (B, C): y[lengths[b] - 1, b]
    loss, dlast = softmax_cross_entropy(last, labels)   # one label per sequence
    rnn.backward(rnnext.scatter_last(dlast, lengths, y))

``scatter_last`` is the exact adjoint of ``gather_last``: dL/dy is ``dlast[b]`` at each
sequence's last step and zero elsewhere. ``batch_first=True`` for (B, T, C) arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import as_int_array, as_real_array, check_shape, first_bad_position


def _last_index(lengths: Any, T: int, B: int) -> np.ndarray:
    """The last step of each sequence, (B,) ints in [0, T)."""
    if lengths is None:
        if T == 0:
            raise ValueError("y: T = 0 steps, so there is no last output")
        return np.full(B, T - 1)
    lens = as_int_array("lengths", lengths)
    check_shape("lengths", lens, (B,), ("B",))
    bad = (lens < 1) | (lens > T)
    if bad.any():
        b = first_bad_position(bad)[0]
        raise ValueError(
            f"lengths: expected values in [1, {T}] (a sequence needs a step to have a last output), "
            f"got {int(lens[b])} at lengths[{b}]"
        )
    return lens - 1


def _time_batch(name: str, arr: np.ndarray, batch_first: bool) -> np.ndarray:
    if not isinstance(batch_first, (bool, np.bool_)):
        raise TypeError(f"batch_first: expected a bool, got {batch_first!r}")
    if arr.ndim < 2:
        want = "(B, T, ...)" if batch_first else "(T, B, ...)"
        raise ValueError(f"{name}: expected shape {want}, got shape {arr.shape}")
    return arr.swapaxes(0, 1) if batch_first else arr


def gather_last(y: Any, lengths: Any = None, *, batch_first: bool = False) -> np.ndarray:
    """Each sequence's output at its last step: ``y[lengths[b] - 1, b]``, shape (B, ...).

    ``y`` is (T, B, ...) ((B, T, ...) with ``batch_first``); ``lengths`` (B,) ints in
    [1, T], or None for T each. Returns a new array.
    """
    ya = _time_batch("y", as_real_array("y", y), batch_first)
    T, B = ya.shape[:2]
    return ya[_last_index(lengths, T, B), np.arange(B)]


def scatter_last(grad: Any, lengths: Any, y: Any, *, batch_first: bool = False) -> np.ndarray:
    """dL/dy from dL/d(last outputs): ``grad`` (B, ...) at each sequence's last step,
    zeros elsewhere; shaped and typed like ``y`` (the output ``gather_last`` read), ready
    for ``rnn.backward``. ``lengths`` as for ``gather_last``."""
    ya = as_real_array("y", y)
    yt = _time_batch("y", ya, batch_first)
    T, B = yt.shape[:2]
    g = as_real_array("grad", grad)
    if g.shape != (B,) + yt.shape[2:]:
        raise ValueError(f"grad: expected the shape of the last outputs, {(B,) + yt.shape[2:]}, got {g.shape}")
    out = np.zeros(ya.shape, ya.dtype if ya.dtype.kind == "f" else np.float64)
    _time_batch("y", out, batch_first)[_last_index(lengths, T, B), np.arange(B)] = g
    return out


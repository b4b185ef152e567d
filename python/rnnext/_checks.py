"""Argument checks shared by the public entry points.

Every message names the argument, what was expected and what was received.
"""

from __future__ import annotations

import numbers
import os
from typing import Any, Iterable, Optional, Sequence

import numpy as np

FLOAT_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def check_int(name: str, value: Any, minimum: Optional[int] = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def check_float(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float in [{low}, {high}], got {type(value).__name__} {value!r}")
    if not low <= float(value) <= high:
        raise ValueError(f"{name}: expected a float in [{low}, {high}], got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        expected = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name}: expected one of {expected}, got {value!r}")
    return value


def check_dtype(value: Any) -> np.dtype:
    if value is None:  # np.dtype(None) is float64: a silent surprise (torch's None means float32)
        raise TypeError("dtype: expected 'float32' or 'float64', got None")
    try:
        dt = np.dtype(value)
    except TypeError as e:
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {value!r}") from e
    if dt not in FLOAT_DTYPES.values():
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {value!r}")
    return dt


def as_real_array(name: str, value: Any) -> np.ndarray:
    """An array of real numbers, not yet converted (no copy for an ndarray)."""
    arr = value if isinstance(value, np.ndarray) else _from_sequence(name, value)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected real numbers, got {_describe(value, arr)}")
    return arr


def as_float_array(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """A C-contiguous array of the model's dtype; real numbers only (no copy when possible).
    A scalar stays 0-d, so that messages show the shape the caller passed."""
    return np.asarray(as_real_array(name, value), dtype=dtype, order="C")


def as_int_array(name: str, value: Any) -> np.ndarray:
    """Integers; floats are accepted when every value is a whole number (10.0, not 4.5)."""
    arr = value if isinstance(value, np.ndarray) else _from_sequence(name, value)
    if arr.dtype.kind == "f":
        whole = np.isfinite(arr) & (arr == np.round(arr))
        if not whole.all():
            pos = first_bad_position(~whole)
            raise TypeError(f"{name}: expected integers (or whole-valued floats), got {arr[pos].item()!r}{at(name, pos)}")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integers, got {_describe(value, arr)}")
    if arr.dtype.kind in "fu":  # int64 must hold them all, not wrap
        big = (arr < -(2**63)) | (arr >= 2**63) if arr.dtype.kind == "f" else arr > np.iinfo(np.int64).max
        if big.any():
            pos = first_bad_position(big)
            raise ValueError(f"{name}: expected integers within int64, got {arr[pos].item()!r}{at(name, pos)}")
    # np.asarray, not ascontiguousarray: a scalar stays 0-d, so messages show what was passed
    return np.asarray(arr, dtype=np.int64, order="C")


def _describe(value: Any, arr: np.ndarray) -> str:
    """What the caller passed, for a message: None, a type name, or an array's dtype."""
    if value is None:
        return "None"
    if arr.dtype == object and not isinstance(value, np.ndarray):
        return f"{type(value).__name__} {value!r:.60}"
    return f"an array of dtype {arr.dtype}"


def torch_to_numpy(value: Any) -> Any:
    """A torch tensor's values as a NumPy array, detached from autograd and copied to the
    CPU (the result never links back to the graph); anything else unchanged. torch is not
    imported: a tensor is recognised by its type's module."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach") and hasattr(value, "cpu"):
        t = value.detach().cpu()
        if t.dtype.is_floating_point and t.element_size() < 4:  # NumPy has no bfloat16
            t = t.float()
        return t.numpy()
    return value


def _from_sequence(name: str, value: Any) -> np.ndarray:
    try:
        return np.asarray(torch_to_numpy(value))
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name}: expected an array-like of numbers, got {type(value).__name__}: {e}") from e


def check_shape(name: str, arr: np.ndarray, expected: Sequence[Optional[int]], axes: Sequence[str]) -> None:
    """`expected` holds a size per axis or None for any size; `axes` names the axes."""
    if arr.ndim != len(expected):
        want = "(" + ", ".join(axes) + ")"
        raise ValueError(f"{name}: expected {len(expected)} dimensions {want}, got shape {arr.shape}")
    for i, (got, want_n) in enumerate(zip(arr.shape, expected)):
        if want_n is not None and got != want_n:
            raise ValueError(
                f"{name}: axis {i} ({axes[i]}) should have size {want_n}, got {got} (shape {arr.shape})"
            )


def check_path(value: Any, name: str = "path") -> str:
    """A file name as str: a str or an os.PathLike of str (bytes names are refused, as the
    ``PathLike`` annotation says)."""
    try:
        path = os.fspath(value)
    except TypeError as e:
        raise TypeError(f"{name}: expected a str or os.PathLike, got {type(value).__name__}") from e
    if not isinstance(path, str):
        raise TypeError(f"{name}: expected a str or os.PathLike of str, got {type(value).__name__} {value!r}")
    return path


def physical_memory() -> int:
    """Bytes of RAM on this machine (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 0


def check_memory(what: str, nbytes: int) -> None:
    """Refuse before allocating what cannot fit: Linux would overcommit and then kill us."""
    ram = physical_memory()
    if ram and nbytes > ram:
        raise MemoryError(f"{what} need {nbytes / 2**30:.1f} GiB, more than this machine's {ram / 2**30:.1f} GiB of memory")


def first_bad_position(mask: np.ndarray) -> tuple:
    """Index of the first True in a boolean array, as a tuple."""
    return tuple(int(i) for i in np.argwhere(mask)[0])


def at(name: str, pos: tuple) -> str:
    """Where a bad value is, for a message: " at x[0, 3]", or nothing for a scalar."""
    return f" at {name}[{', '.join(map(str, pos))}]" if pos else ""


def check_keys(name: str, got: Iterable[str], allowed: Iterable[str]) -> None:
    unknown = sorted(set(got) - set(allowed))
    if unknown:
        raise TypeError(f"{name}: unknown option(s) {unknown}; expected some of {sorted(allowed)}")

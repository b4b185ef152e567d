"""Threads of the C++ engine (one pool shared by every model)."""

from __future__ import annotations

from . import _core
from ._checks import check_int


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (the calling one included) for forward, backward and step.

    The default is the number of cores this process may run on, or the environment
    variable ``RNNEXT_NUM_THREADS`` when set. Results do not depend on it beyond rounding.
    """
    _core.set_num_threads(check_int("n", n, 1))


def get_num_threads() -> int:
    """The number of threads the engine uses."""
    return int(_core.get_num_threads())

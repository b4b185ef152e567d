"""Checkpoints: one ``.npz`` file with the model, optimizer, task and trainer state.

The file is a NumPy ``.npz`` archive (no pickle): ``meta`` is a JSON document (format name,
version, model config, every non-array piece of state), and the arrays are ``params`` (the
flat parameter buffer), ``optimizer/<name>`` and ``task/<name>``. ``save_checkpoint`` writes
a temporary file in the same directory and renames it over the target, so an interrupted
save leaves the previous checkpoint intact. ``load_checkpoint`` reads and checks the whole
file before returning anything: a truncated or corrupt file raises ValueError naming it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Type

import numpy as np

from ._files import read_npz, write_npz_atomic
from .optim import OPTIMIZERS, Optimizer
from .rnn import RNN

FORMAT = "rnnext-checkpoint"
VERSION = 1
_OPTIMIZER_CLASSES: Dict[str, Type[Optimizer]] = {cls.__name__: cls for cls in OPTIMIZERS.values()}


def _split(prefix: str, state: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """The JSON part of ``state``; its arrays go into ``arrays`` under ``prefix/name``."""
    plain = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}/{key}"] = value
        else:
            plain[key] = value
    return plain


def _join(prefix: str, plain: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> Dict[str, Any]:
    state = dict(plain)
    for name, arr in arrays.items():
        if name.startswith(prefix + "/"):
            state[name[len(prefix) + 1 :]] = arr
    return state


def save_checkpoint(
    path: Any,
    model: RNN,
    optimizer: Optional[Optimizer] = None,
    task: Any = None,
    trainer: Any = None,
    extra: Optional[Dict[str, Any]] = None,
) -> None:
    """Write ``model`` (and optionally the optimizer, task, trainer and JSON-able ``extra``
    settings) to ``path`` atomically."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {path!r}")
    if not isinstance(model, RNN):
        raise TypeError(f"model: expected an rnnext.RNN, got {type(model).__name__}")
    arrays: Dict[str, np.ndarray] = {"params": np.array(model.flat_params)}
    meta: Dict[str, Any] = {"format": FORMAT, "version": VERSION, "model": model.config, "extra": extra or {}}
    meta["optimizer"] = None if optimizer is None else _split("optimizer", optimizer.state_dict(), arrays)
    if task is not None:
        meta["task"] = dict(name=task.name, config=task.config(), meta=task.meta(),
                            state=_split("task", task.state_dict(), arrays))
    else:
        meta["task"] = None
    meta["trainer"] = None if trainer is None else trainer.state_dict()
    try:
        text = json.dumps(meta)
    except TypeError as e:
        raise TypeError(f"checkpoint: the state to save is not JSON-able: {e}") from e
    arrays["meta"] = np.array(text)

    write_npz_atomic(os.fspath(path), arrays)


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns: fresh objects, already checked."""

    path: str
    model: RNN
    optimizer: Optional[Optimizer]
    task: Optional[Dict[str, Any]]  # name, config, meta, state
    trainer: Optional[Dict[str, Any]]
    extra: Dict[str, Any] = field(default_factory=dict)

    def build_task(self) -> Any:
        """The task, its data re-read and checked against the checkpoint, positioned where
        the checkpoint left it."""
        from .tasks import get_task

        if self.task is None:
            raise ValueError(f"checkpoint {self.path!r}: it holds no task")
        task = get_task(self.task["name"], **self.task["config"])
        now = task.meta()
        for key, saved in self.task["meta"].items():
            if now.get(key) != saved:
                what = "data" if key == "sha256" else key
                raise ValueError(
                    f"checkpoint {self.path!r}: the task's {what} differs from the one it was trained on"
                )
        task.load_state_dict(self.task["state"])
        return task


def _bad(path: str, why: str) -> ValueError:
    return ValueError(f"checkpoint {path!r}: {why}; nothing was loaded")


def load_checkpoint(path: Any) -> Checkpoint:
    """Read and check a checkpoint written by ``save_checkpoint``.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for one
    that is truncated, corrupt, of another format or version, or inconsistent.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {path!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r}: no such file")
    try:
        arrays = read_npz(path)
    except ValueError as e:
        raise _bad(path, f"truncated or corrupt ({e})") from e

    if "meta" not in arrays or arrays["meta"].dtype.kind != "U" or arrays["meta"].ndim != 0:
        raise _bad(path, "not an rnnext checkpoint (no 'meta' record)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as e:
        raise _bad(path, f"its 'meta' record is not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(path, "not an rnnext checkpoint")
    if meta.get("version") != VERSION:
        raise _bad(path, f"format version {meta.get('version')!r}, this rnnext reads version {VERSION}")
    missing = {"model", "optimizer", "task", "trainer", "extra"} - set(meta)
    if missing or "params" not in arrays:
        raise _bad(path, f"records missing: {sorted(missing | ({'params'} - set(arrays)))}")

    try:
        model = RNN(**meta["model"])
    except (TypeError, ValueError) as e:
        raise _bad(path, f"its model config is invalid ({e})") from e
    params = arrays["params"]
    if params.shape != model.flat_params.shape or params.dtype != model.flat_params.dtype:
        raise _bad(path, f"params has shape {params.shape} and dtype {params.dtype}, the model needs "
                         f"{model.flat_params.shape} {model.flat_params.dtype}")
    model.flat_params[...] = params

    optimizer = None
    if meta["optimizer"] is not None:
        state = _join("optimizer", meta["optimizer"], arrays)
        cls = _OPTIMIZER_CLASSES.get(str(state.get("type")))
        if cls is None:
            raise _bad(path, f"unknown optimizer type {state.get('type')!r}")
        try:
            optimizer = cls(model, lr=state["lr"], **{k: state[k] for k in cls.hyper if k in state})
            optimizer.load_state_dict(state)
        except (KeyError, TypeError, ValueError) as e:
            raise _bad(path, f"its optimizer state is invalid ({type(e).__name__}: {e})") from e

    task = meta["task"]
    if task is not None:
        if not isinstance(task, dict) or set(task) != {"name", "config", "meta", "state"}:
            raise _bad(path, "its task record is malformed")
        task = dict(task, state=_join("task", task["state"], arrays))
    return Checkpoint(path=path, model=model, optimizer=optimizer, task=task, trainer=meta["trainer"],
                      extra=meta["extra"])

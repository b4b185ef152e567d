"""Saving, loading and copying :class:`rnnext.RNN` models.

- :func:`save` / :func:`load`: the ``.npz`` file format of ``docs/file_format.md`` (its
  ``layout`` entry comes from :func:`rnnext.interop.npz_layout`).
- :func:`get_state` / :func:`set_state` / :func:`clone`: pickle, ``copy.copy`` and
  ``copy.deepcopy``. A copy always gets its own engine and buffers, even a shallow one:
  ``params`` and ``grads`` are views into the engine's memory, so sharing them would make
  two models silently train one set of weights.

PyTorch, Keras and ONNX layouts are in :mod:`rnnext.interop`. The model class is passed in
(``load(cls, path)``): this module does not import ``rnnext.rnn``.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from ._checks import check_path
from ._files import check_file, read_npz, write_npz_atomic
from ._version import __version__
from .interop import IncompatibleKeys as IncompatibleKeys  # noqa: F401  (its old home)
from .interop import npz_layout

FORMAT_VERSION = 1
NPZ_KEYS = ("format_version", "rnnext_version", "config", "layout", "params")
PathLike = Union[str, "os.PathLike[str]"]

# Attributes that RNN.__init__ rebuilds from the config (the engine and the views into it),
# never copied. `_last` describes the engine's cached forward pass, which a copy lacks.
_ENGINE_ATTRS = ("_core", "_flat_params", "_flat_grads", "_params", "_grads", "_last", "_config")


# ------------------------------------------------------------------- pickle and copy
def get_state(model: Any) -> Dict[str, Any]:
    """Config, copies of the flat parameters and gradients, and every other attribute."""
    attrs = {k: v for k, v in model.__dict__.items() if k not in _ENGINE_ATTRS}
    return dict(
        version=FORMAT_VERSION,
        config=model.config,
        flat_params=model.flat_params.copy(),
        flat_grads=model.flat_grads.copy(),
        attrs=attrs,
    )


def set_state(cls: Any, model: Any, state: Mapping[str, Any]) -> None:
    """Rebuild ``model`` (a fresh engine and buffers, made by ``cls.__init__``) from
    :func:`get_state`'s dict."""
    if not isinstance(state, Mapping) or state.get("version") != FORMAT_VERSION:
        got = state.get("version") if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(f"state: expected an rnnext RNN state of version {FORMAT_VERSION}, got {got!r}")
    cls.__init__(model, **state["config"])
    for name in ("flat_params", "flat_grads"):
        src = np.asarray(state[name])
        if src.shape != getattr(model, name).shape:
            raise ValueError(f"state: {name} should have shape {getattr(model, name).shape}, got {src.shape}")
        getattr(model, name)[...] = src
    model.__dict__.update(state["attrs"])


def clone(cls: Any, model: Any, memo: Optional[Dict[int, Any]]) -> Any:
    """``copy.copy`` (memo None) or ``copy.deepcopy``: in both, new parameter and gradient
    buffers; the other attributes are shared by a shallow copy and copied by a deep one."""
    new = object.__new__(type(model))
    state = get_state(model)
    if memo is not None:
        memo[id(model)] = new
        state = copy.deepcopy(state, memo)
    set_state(cls, new, state)
    return new


# ------------------------------------------------------------------------ .npz files
def save(model: Any, path: PathLike, vocab: Optional[str] = None) -> None:
    """Write ``model`` to ``path`` (exactly that name; no ``.npz`` is appended); ``vocab``
    (a character model's vocabulary, see ``rnnext.textgen``) is kept beside it.

    The file is written next to ``path`` under a temporary name and then renamed, so a
    crash never leaves a half-written file at ``path``.
    """
    path = check_path(path)
    arrays = dict(
        format_version=np.array(FORMAT_VERSION, dtype=np.int64),
        rnnext_version=np.array(__version__),
        config=np.array(json.dumps(model.config, sort_keys=True)),
        layout=np.array(json.dumps(npz_layout(model))),
        params=model.flat_params,
    )
    if vocab is not None:
        arrays["vocab"] = np.array(vocab)
    write_npz_atomic(path, arrays)


def load(cls: Any, path: PathLike) -> Any:
    """Read a ``cls`` model written by :func:`save`; every check passes before a model is returned.
    A vocabulary saved with it is not returned (``read_model_file`` returns both).
    """
    return read_model_file(cls, path)[0]


def read_model_file(cls: Any, path: PathLike) -> Tuple[Any, Optional[str]]:
    """``(model, vocab)`` from a model file written by :func:`save`; ``vocab`` is None unless
    one was saved with it.

    Raises FileNotFoundError for a missing file and ValueError naming the file for anything
    else wrong: not an ``.npz``, truncated or corrupt, missing or unknown entries, another
    format version, an invalid config, parameters of the wrong size or dtype.
    """
    path = check_path(path)
    check_file(path)

    def bad(msg: str) -> ValueError:
        return ValueError(f"{path}: {msg}")

    try:
        data = read_npz(path)
    except ValueError as e:
        raise bad(f"not a readable rnnext .npz file ({e})") from e
    missing = [k for k in NPZ_KEYS if k not in data]
    unknown = sorted(set(data) - set(NPZ_KEYS) - {"vocab"})
    if missing or unknown:
        raise bad(f"not an rnnext model file: missing entries {missing}, unknown entries {unknown}")
    version = data["format_version"]
    if version.shape != () or version.dtype.kind not in "iu":
        raise bad(f"format_version: expected an integer scalar, got {version.dtype} of shape {version.shape}")
    if int(version) != FORMAT_VERSION:
        raise bad(
            f"format version {int(version)} is not supported: this rnnext {__version__} reads version "
            f"{FORMAT_VERSION} (file written by rnnext {data['rnnext_version']})"
        )
    try:
        config = json.loads(str(data["config"]))
        layout = json.loads(str(data["layout"]))
    except ValueError as e:
        raise bad(f"config or layout is not valid JSON ({e})") from e
    if not isinstance(config, dict):
        raise bad(f"config: expected a JSON object, got {type(config).__name__}")
    try:
        model = cls(**config)
    except (TypeError, ValueError) as e:
        raise bad(f"invalid config {config}: {e}") from e
    if layout != npz_layout(model):
        raise bad(f"layout {layout} does not match the config's layout {npz_layout(model)}")
    params = data["params"]
    want = model.flat_params
    if params.shape != want.shape or params.dtype != want.dtype:
        raise bad(f"params: expected {want.dtype} of shape {want.shape}, got {params.dtype} of shape {params.shape}")
    want[...] = params
    vocab = data.get("vocab")
    if vocab is not None and (vocab.dtype.kind != "U" or vocab.shape != () or len(str(vocab)) != model.vocab_size):
        raise bad(f"vocab: expected a str of vocab_size = {model.vocab_size} characters, got {vocab.dtype} "
                  f"of shape {vocab.shape}")
    return model, None if vocab is None else str(vocab)

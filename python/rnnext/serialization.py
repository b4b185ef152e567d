"""Saving, loading, copying and weight exchange for :class:`rnnext.RNN`.

- :func:`save` / :func:`load`: the ``.npz`` file format of ``docs/file_format.md``.
- :func:`get_state` / :func:`set_state` / :func:`clone`: pickle, ``copy.copy`` and
  ``copy.deepcopy``. A copy always gets its own engine and buffers, even a shallow one:
  ``params`` and ``grads`` are views into the engine's memory, so sharing them would make
  two models silently train one set of weights.
- :func:`state_dict` / :func:`load_state_dict`: PyTorch's ``nn.RNN`` names and shapes.
- :func:`keras_weights` / :func:`set_keras_weights` / :func:`from_keras_weights`: the
  weight lists of Keras ``SimpleRNN`` (+ ``Embedding``, ``Bidirectional``, ``Dense``).

rnnext is row-vector (``x W``) like Keras; PyTorch is column-vector (``W x``), so its
weight matrices are the transposes of rnnext's (``weight_ih_l0 = W_x.T``).
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ._files import read_npz, write_npz_atomic
from ._version import __version__
from .interop import _suffix  # rnnext's name suffix of a cell: "", "_reverse", "_l1", ...

FORMAT_VERSION = 1
NPZ_KEYS = ("format_version", "rnnext_version", "config", "layout", "params")
PathLike = Union[str, "os.PathLike[str]"]

# Attributes that RNN.__init__ rebuilds from the config (the engine and the views into it),
# never copied. `_last` describes the engine's cached forward pass, which a copy lacks.
_ENGINE_ATTRS = ("_core", "flat_params", "flat_grads", "params", "grads", "_last", "_config")


def _rnn_class() -> Any:
    from .rnn import RNN  # late: rnn.py imports this module

    return RNN


def _torch_suffix(layer: int, direction: int) -> str:
    """PyTorch's: "_l0", "_l0_reverse", "_l1", ..."""
    return f"_l{layer}" + ("_reverse" if direction else "")


def _cells(model: Any) -> List[Tuple[int, int]]:
    return [(l, d) for l in range(model.num_layers) for d in range(model.num_directions)]


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


def set_state(model: Any, state: Mapping[str, Any]) -> None:
    """Rebuild ``model`` (a fresh engine and buffers) from :func:`get_state`'s dict."""
    if not isinstance(state, Mapping) or state.get("version") != FORMAT_VERSION:
        got = state.get("version") if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(f"state: expected an rnnext RNN state of version {FORMAT_VERSION}, got {got!r}")
    _rnn_class().__init__(model, **state["config"])
    for name in ("flat_params", "flat_grads"):
        src = np.asarray(state[name])
        if src.shape != getattr(model, name).shape:
            raise ValueError(f"state: {name} should have shape {getattr(model, name).shape}, got {src.shape}")
        getattr(model, name)[...] = src
    model.__dict__.update(state["attrs"])


def clone(model: Any, memo: Optional[Dict[int, Any]]) -> Any:
    """``copy.copy`` (memo None) or ``copy.deepcopy``: in both, new parameter and gradient
    buffers; the other attributes are shared by a shallow copy and copied by a deep one."""
    new = object.__new__(type(model))
    state = get_state(model)
    if memo is not None:
        memo[id(model)] = new
        state = copy.deepcopy(state, memo)
    set_state(new, state)
    return new


# ------------------------------------------------------------------------ .npz files
def _layout(model: Any) -> List[List[Any]]:
    return [[name, list(p.shape)] for name, p in model.params.items()]


def save(model: Any, path: PathLike, vocab: Optional[str] = None) -> None:
    """Write ``model`` to ``path`` (exactly that name; no ``.npz`` is appended); ``vocab``
    (a character model's vocabulary, see ``rnnext.textgen``) is kept beside it.

    The file is written next to ``path`` under a temporary name and then renamed, so a
    crash never leaves a half-written file at ``path``.
    """
    try:
        path = os.fspath(path)
    except TypeError as e:
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}") from e
    arrays = dict(
        format_version=np.array(FORMAT_VERSION, dtype=np.int64),
        rnnext_version=np.array(__version__),
        config=np.array(json.dumps(model.config, sort_keys=True)),
        layout=np.array(json.dumps(_layout(model))),
        params=model.flat_params,
    )
    if vocab is not None:
        arrays["vocab"] = np.array(vocab)
    write_npz_atomic(path, arrays)


def load(path: PathLike) -> Any:
    """Read a model written by :func:`save`; every check passes before a model is returned.
    A vocabulary saved with it is not returned (``rnnext.textgen.load`` reads both).

    Raises FileNotFoundError for a missing file and ValueError naming the file for anything
    else wrong: not an ``.npz``, truncated or corrupt, missing or unknown entries, another
    format version, an invalid config, parameters of the wrong size or dtype.
    """
    try:
        path = os.fspath(path)
    except TypeError as e:
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}") from e
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file: {path!r}")

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
        model = _rnn_class()(**config)
    except (TypeError, ValueError) as e:
        raise bad(f"invalid config {config}: {e}") from e
    if layout != _layout(model):
        raise bad(f"layout {layout} does not match the config's layout {_layout(model)}")
    params = data["params"]
    want = model.flat_params
    if params.shape != want.shape or params.dtype != want.dtype:
        raise bad(f"params: expected {want.dtype} of shape {want.shape}, got {params.dtype} of shape {params.shape}")
    want[...] = params
    if "vocab" in data:
        vocab = data["vocab"]
        if vocab.dtype.kind != "U" or vocab.shape != () or len(str(vocab)) != model.vocab_size:
            raise bad(f"vocab: expected a str of vocab_size = {model.vocab_size} characters, got {vocab.dtype} "
                      f"of shape {vocab.shape}")
        model._file_vocab = str(vocab)
    return model


def read_model_file(path: PathLike) -> Tuple[Any, Optional[str]]:
    """``(model, vocab)`` from a model file: ``vocab`` is None unless one was saved with it."""
    model = load(path)
    return model, model.__dict__.pop("_file_vocab", None)


# --------------------------------------------------------------------- PyTorch names
class IncompatibleKeys(NamedTuple):
    """What :func:`load_state_dict` did not use (as ``torch.nn.Module.load_state_dict``)."""

    missing_keys: List[str]
    unexpected_keys: List[str]


def _check_prefix(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a str, got {type(value).__name__} {value!r}")
    return value


def _torch_names(model: Any, rnn_prefix: str, linear_prefix: str) -> Dict[str, Tuple[str, bool]]:
    """state-dict key -> (rnnext parameter, transposed) for every key but the bias_hh ones."""
    names: Dict[str, Tuple[str, bool]] = {}
    if model.vocab_size:
        names["embedding.weight"] = ("E", False)
    for l, d in _cells(model):
        t, r = _torch_suffix(l, d), _suffix(l, d)
        names[rnn_prefix + "weight_ih" + t] = ("W_x" + r, True)
        names[rnn_prefix + "weight_hh" + t] = ("W_h" + r, True)
        names[rnn_prefix + "bias_ih" + t] = ("b_h" + r, False)
    if "h0" in model.params:
        names["h0"] = ("h0", False)
    if model.output_size:
        names[linear_prefix + "weight"] = ("W_y", True)
        names[linear_prefix + "bias"] = ("b_y", False)
    return names


def state_dict(model: Any, *, rnn_prefix: str = "", linear_prefix: str = "linear.") -> Dict[str, np.ndarray]:
    """Parameters under PyTorch's names and in its shapes (new arrays, not views).

    Keys, for layer k and the reverse direction's ``_reverse`` suffix: ``weight_ih_l{k}``
    = W_x.T, ``weight_hh_l{k}`` = W_h.T, ``bias_ih_l{k}`` = b_h, ``bias_hh_l{k}`` = 0
    (PyTorch has two biases where rnnext has their sum); with an output layer
    ``linear.weight`` = W_y.T and ``linear.bias`` = b_y; with a vocabulary
    ``embedding.weight`` = E; with ``learn_h0`` ``h0``. The prefixes are prepended to the
    nn.RNN and nn.Linear keys, e.g. ``rnn_prefix="rnn."`` for a module holding ``self.rnn``.
    """
    rp, lp = _check_prefix("rnn_prefix", rnn_prefix), _check_prefix("linear_prefix", linear_prefix)
    out: Dict[str, np.ndarray] = {}
    names = _torch_names(model, rp, lp)
    for key, (pname, transposed) in names.items():
        p = model.params[pname]
        out[key] = (p.T if transposed else p).copy()
        if key.startswith(rp + "bias_ih"):
            out[rp + "bias_hh" + key[len(rp + "bias_ih") :]] = np.zeros_like(p)
    return out


def _as_numpy(key: str, value: Any) -> np.ndarray:
    """A NumPy array from an array-like or a torch tensor (detached, on the CPU)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor; torch is not imported
        value = value.detach().cpu().double().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"state_dict[{key!r}]: expected real numbers, got dtype {arr.dtype}")
    return arr


def load_state_dict(
    model: Any,
    state_dict: Mapping[str, Any],
    *,
    strict: bool = True,
    rnn_prefix: str = "",
    linear_prefix: str = "linear.",
) -> IncompatibleKeys:
    """Copy parameters from a dict with :func:`state_dict`'s names (NumPy arrays, torch
    tensors or nested lists); ``b_h`` = ``bias_ih`` + ``bias_hh``.

    A dict without any ``bias_*`` key is an ``nn.RNN(bias=False)``: b_h = 0. With
    ``strict`` (default) a missing or unexpected key is a ValueError; without it they are
    skipped (missing parameters keep their values) and returned. Every key and shape is
    checked before anything is written.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
    rp, lp = _check_prefix("rnn_prefix", rnn_prefix), _check_prefix("linear_prefix", linear_prefix)
    names = _torch_names(model, rp, lp)
    bias_ih = rp + "bias_ih"
    hh_of = {k: rp + "bias_hh" + k[len(bias_ih) :] for k in names if k.startswith(bias_ih)}
    bias_keys = set(hh_of) | set(hh_of.values())
    no_bias = not any(k in state_dict for k in bias_keys)
    expected = list(names) + list(hh_of.values())
    missing = [k for k in expected if k not in state_dict and not (no_bias and k in bias_keys)]
    unexpected = [k for k in state_dict if k not in names and k not in bias_keys]
    if strict and (missing or unexpected):
        raise ValueError(
            f"state_dict: missing keys {missing}, unexpected keys {unexpected} for {model!r} "
            f"(rnn_prefix={rp!r}, linear_prefix={lp!r}; strict=False skips them)"
        )
    new: Dict[str, np.ndarray] = {}
    for key, (pname, transposed) in names.items():
        p = model.params[pname]
        want = p.T.shape if transposed else p.shape
        parts = []
        for k in (key, hh_of.get(key)):
            if k is not None and k in state_dict:
                arr = _as_numpy(k, state_dict[k])
                if arr.shape != want:
                    raise ValueError(f"state_dict[{k!r}]: expected shape {want} (for {pname}), got {arr.shape}")
                parts.append(arr.astype(np.float64))
        if parts:
            value = np.sum(parts, axis=0)
            new[pname] = value.T if transposed else value
        elif no_bias and key in hh_of:
            new[pname] = np.zeros(want)
    for pname, value in new.items():
        model.params[pname][...] = value
    return IncompatibleKeys(missing, unexpected)


# ---------------------------------------------------------------------- Keras weights
def _keras_layout(model: Any) -> List[Tuple[str, str, Tuple[int, ...]]]:
    """(rnnext name, description, shape) of each array of the Keras weight list."""
    out = []
    if model.vocab_size:
        out.append(("E", "Embedding embeddings", model.params["E"].shape))
    for l, d in _cells(model):
        r, where = _suffix(l, d), f"layer {l} {'backward' if d else 'forward'}"
        out.append(("W_x" + r, f"SimpleRNN kernel, {where}", model.params["W_x" + r].shape))
        out.append(("W_h" + r, f"SimpleRNN recurrent_kernel, {where}", model.params["W_h" + r].shape))
        out.append(("b_h" + r, f"SimpleRNN bias, {where}", model.params["b_h" + r].shape))
    if model.output_size:
        out.append(("W_y", "Dense kernel", model.params["W_y"].shape))
        out.append(("b_y", "Dense bias", model.params["b_y"].shape))
    return out


def _check_keras_model(model: Any) -> None:
    if "h0" in model.params:
        raise ValueError("learn_h0: Keras SimpleRNN has no learned initial state; got learn_h0=True")


def keras_weights(model: Any) -> List[np.ndarray]:
    """Weights in the order of ``keras.Sequential([...]).get_weights()`` (new arrays).

    ``[E]`` if there is a vocabulary (``Embedding``); then per layer, per direction
    (forward, then backward as in ``Bidirectional``) ``kernel`` = W_x (in, H),
    ``recurrent_kernel`` = W_h (H, H), ``bias`` = b_h (H,); then with an output layer the
    ``Dense`` ``kernel`` = W_y and ``bias`` = b_y. Keras is row-vector like rnnext: nothing
    is transposed. For one layer without output layer it is ``[kernel, recurrent_kernel, bias]``.
    """
    _check_keras_model(model)
    return [model.params[name].copy() for name, _, _ in _keras_layout(model)]


def set_keras_weights(model: Any, weights: Sequence[Any]) -> None:
    """Copy in a list ordered as :func:`keras_weights`; all shapes are checked first."""
    _check_keras_model(model)
    if isinstance(weights, (str, bytes, Mapping)) or not isinstance(weights, Sequence):
        raise TypeError(f"weights: expected a list of arrays, got {type(weights).__name__}")
    layout = _keras_layout(model)
    if len(weights) != len(layout):
        wanted = ", ".join(f"{desc} {shape}" for _, desc, shape in layout)
        raise ValueError(f"weights: expected {len(layout)} arrays ({wanted}), got {len(weights)}")
    arrays = []
    for i, ((_, desc, shape), w) in enumerate(zip(layout, weights)):
        arr = np.asarray(w)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"weights[{i}] ({desc}): expected real numbers, got dtype {arr.dtype}")
        if arr.shape != shape:
            raise ValueError(f"weights[{i}] ({desc}): expected shape {shape}, got {arr.shape}")
        arrays.append(arr)
    for (name, _, _), arr in zip(layout, arrays):
        model.params[name][...] = arr


def from_keras_weights(cls: Any, weights: Sequence[Any], **kwargs: Any) -> Any:
    """A model built from a Keras weight list (see :func:`keras_weights`).

    The sizes come from the shapes; ``num_layers`` and ``bidirectional`` (default 1 and
    False) say how many SimpleRNN arrays there are, and an extra 1 (first) or 2 (last)
    arrays are an Embedding or a Dense layer. Other keyword arguments go to ``RNN``
    (``nonlinearity`` must match the Keras ``activation``); the dtype defaults to the
    kernel's (float64 stays float64, anything else becomes float32).
    """
    if isinstance(weights, (str, bytes, Mapping)) or not isinstance(weights, Sequence):
        raise TypeError(f"weights: expected a list of arrays, got {type(weights).__name__}")
    for key in ("input_size", "hidden_size", "output_size", "vocab_size"):
        if key in kwargs:
            raise TypeError(f"{key}: comes from the weights' shapes; do not pass it")
    num_layers = kwargs.get("num_layers", 1)
    directions = 2 if kwargs.get("bidirectional", False) else 1
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
        raise ValueError(f"num_layers: expected an int >= 1, got {num_layers!r}")
    n_rnn = 3 * num_layers * directions
    extra = len(weights) - n_rnn
    if extra not in (0, 1, 2, 3):
        raise ValueError(
            f"weights: expected {n_rnn} SimpleRNN arrays (3 per layer and direction), optionally preceded "
            f"by 1 Embedding array and followed by 2 Dense arrays, got {len(weights)} arrays"
        )
    shapes = [np.shape(w) for w in weights]
    first = 1 if extra in (1, 3) else 0
    kernel = shapes[first]
    if len(kernel) != 2:
        raise ValueError(f"weights[{first}] (SimpleRNN kernel): expected 2 dimensions, got shape {kernel}")
    if first and len(shapes[0]) != 2:
        raise ValueError(f"weights[0] (Embedding embeddings): expected 2 dimensions, got shape {shapes[0]}")
    if extra >= 2 and len(shapes[-2]) != 2:
        raise ValueError(f"weights[{len(weights) - 2}] (Dense kernel): expected 2 dimensions, got shape {shapes[-2]}")
    if "dtype" not in kwargs:
        kwargs["dtype"] = "float64" if np.asarray(weights[first]).dtype == np.float64 else "float32"
    model = cls(
        kernel[0],
        kernel[1],
        shapes[-2][1] if extra >= 2 else None,
        vocab_size=shapes[0][0] if first else None,
        **kwargs,
    )
    set_keras_weights(model, weights)
    return model

"""The one home of rnnext's parameter names and of their layouts in other formats.

:func:`table` lists a model's parameters in the engine's order: ``E``; per layer, per
direction (forward first) the cell ``W_x``, ``W_h``, ``b_h``; ``h0``; ``W_y``, ``b_y``.
:data:`KINDS` says where each kind lives in PyTorch, Keras and ONNX and whether it is
transposed there. Everything below reads these two: the ``.npz`` layout, PyTorch state dicts
and modules (``from_torch``/``to_torch`` go through the state dict), Keras weight lists and
the tensors of ONNX's ``RNN`` operator.

rnnext is row-vector (``x W``) like Keras; PyTorch and ONNX are column-vector (``W x``), so
their cell matrices are the transposes of rnnext's (``weight_ih_l0 = W_x.T``). torch is
imported lazily; nothing here imports ``rnnext.rnn``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ._checks import torch_to_numpy


class Kind(NamedTuple):
    """Where one kind of parameter lives in each foreign layout."""

    torch: str  # state-dict key (cells: + PyTorch's suffix "_l0", "_l0_reverse", ...)
    torch_module: str  # whose prefix argument applies: "rnn", "linear" or "" (none)
    torch_T: bool  # PyTorch holds the transpose
    keras: Optional[str]  # Keras layer and weight; None: Keras has no such weight
    onnx: str  # ONNX tensor
    onnx_T: bool  # ONNX holds the transpose


KINDS: Dict[str, Kind] = {
    "E": Kind("embedding.weight", "", False, "Embedding embeddings", "Gather data", False),
    "W_x": Kind("weight_ih", "rnn", True, "SimpleRNN kernel", "RNN W[direction]", True),
    "W_h": Kind("weight_hh", "rnn", True, "SimpleRNN recurrent_kernel", "RNN R[direction]", True),
    # PyTorch and ONNX have two biases where rnnext has their sum: out b_h and 0, in the sum.
    "b_h": Kind("bias_ih", "rnn", False, "SimpleRNN bias", "RNN B[direction] = [Wb, Rb]", False),
    "h0": Kind("h0", "", False, None, "RNN initial_h", False),
    "W_y": Kind("weight", "linear", True, "Dense kernel", "MatMul B", False),
    "b_y": Kind("bias", "linear", False, "Dense bias", "Add B", False),
}
CELL_KINDS = ("W_x", "W_h", "b_h")


def suffix(layer: int, direction: int) -> str:
    """rnnext's name suffix of a cell: "", "_reverse", "_l1", "_l1_reverse", ..."""
    return (f"_l{layer}" if layer else "") + ("_reverse" if direction else "")


def torch_suffix(layer: int, direction: int) -> str:
    """PyTorch's: "_l0", "_l0_reverse", "_l1", ..."""
    return f"_l{layer}" + ("_reverse" if direction else "")


class Param(NamedTuple):
    """One parameter: its rnnext name, kind and (for cells) layer and direction."""

    name: str
    kind: str
    layer: int = 0
    direction: int = 0

    def torch_key(self, rnn_prefix: str = "", linear_prefix: str = "linear.") -> str:
        k = KINDS[self.kind]
        prefix = {"rnn": rnn_prefix, "linear": linear_prefix, "": ""}[k.torch_module]
        return prefix + k.torch + (torch_suffix(self.layer, self.direction) if self.kind in CELL_KINDS else "")

    def keras(self) -> str:
        k = KINDS[self.kind]
        if self.kind not in CELL_KINDS:
            return str(k.keras)
        return f"{k.keras}, layer {self.layer} {'backward' if self.direction else 'forward'}"


def table(config: Mapping[str, Any]) -> List[Param]:
    """The parameters of a model with this config (``RNN.config``), in the engine's order."""
    out = [Param("E", "E")] if config.get("vocab_size") else []
    D = 2 if config.get("bidirectional") else 1
    for l in range(config["num_layers"]):
        for d in range(D):
            out += [Param(kind + suffix(l, d), kind, l, d) for kind in CELL_KINDS]
    if config.get("learn_h0"):
        out.append(Param("h0", "h0"))
    if config.get("output_size"):
        out += [Param("W_y", "W_y"), Param("b_y", "b_y")]
    return out


# ------------------------------------------------------------------------ .npz files
def npz_layout(model: Any) -> List[List[Any]]:
    """The ``layout`` entry of the ``.npz`` format: [name, shape] in the engine's order."""
    return [[p.name, list(model.params[p.name].shape)] for p in table(model.config)]


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
    return {
        p.torch_key(rnn_prefix, linear_prefix): (p.name, KINDS[p.kind].torch_T) for p in table(model.config)
    }


def _bias_hh(key: str, rnn_prefix: str) -> Optional[str]:
    """The bias_hh key that goes with a bias_ih key (None for any other key)."""
    stem = rnn_prefix + KINDS["b_h"].torch
    return rnn_prefix + "bias_hh" + key[len(stem) :] if key.startswith(stem) else None


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
    for key, (pname, transposed) in _torch_names(model, rp, lp).items():
        p = model.params[pname]
        out[key] = (p.T if transposed else p).copy()
        hh = _bias_hh(key, rp)
        if hh is not None:
            out[hh] = np.zeros_like(p)
    return out


def _as_numpy(key: str, value: Any) -> np.ndarray:
    """A NumPy array from an array-like or a torch tensor (detached, on the CPU)."""
    arr = np.asarray(torch_to_numpy(value))
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
    hh_of = {k: hh for k in names for hh in [_bias_hh(k, rp)] if hh is not None}
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


# ---------------------------------------------------------------------- ONNX tensors
def onnx_view(model: Any, name: str) -> np.ndarray:
    """Parameter ``name`` in ONNX's layout (a view: writing to it sets the parameter).
    E, h0, W_y and b_y are as in rnnext; cells go through :func:`onnx_rnn_tensors`."""
    p = model.params[name]
    return p.T if KINDS[next(q.kind for q in table(model.config) if q.name == name)].onnx_T else p


def _onnx_cell(model: Any, layer: int, kind: str, direction: int) -> np.ndarray:
    return onnx_view(model, kind + suffix(layer, direction))


def onnx_rnn_tensors(model: Any, layer: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs ``W`` (D, H, in), ``R`` (D, H, H), ``B`` (D, 2H) of layer ``layer``'s ONNX
    ``RNN`` node: per direction W_x.T, W_h.T and [b_h, 0] (new arrays)."""
    D = model.num_directions
    W, R, b = (np.stack([_onnx_cell(model, layer, k, d) for d in range(D)]) for k in CELL_KINDS)
    return W, R, np.concatenate([b, np.zeros_like(b)], axis=1)


def set_onnx_rnn_tensors(model: Any, layer: int, W: np.ndarray, R: np.ndarray, B: np.ndarray) -> None:
    """The inverse of :func:`onnx_rnn_tensors`; b_h = Wb + Rb. Shapes are the caller's to check."""
    H = model.hidden_size
    for d in range(model.num_directions):
        for kind, value in zip(CELL_KINDS, (W[d], R[d], B[d, :H] + B[d, H:])):
            _onnx_cell(model, layer, kind, d)[...] = value


# ------------------------------------------------------------------ PyTorch modules
def _torch() -> Any:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("this needs PyTorch: pip install torch") from e
    return torch


def from_torch(cls: Any, rnn_module: Any, linear: Any = None, **kwargs: Any) -> Any:
    """A ``cls`` model holding an ``nn.RNN``'s (and ``nn.Linear``'s) parameters."""
    torch = _torch()
    if not isinstance(rnn_module, torch.nn.RNN):
        raise TypeError(f"rnn_module: expected a torch.nn.RNN, got {type(rnn_module).__name__}")
    if linear is not None and not isinstance(linear, torch.nn.Linear):
        raise TypeError(f"linear: expected a torch.nn.Linear or None, got {type(linear).__name__}")
    if getattr(rnn_module, "proj_size", 0):
        raise ValueError("rnn_module: proj_size is not supported by nn.RNN conversion")
    D = 2 if rnn_module.bidirectional else 1
    H = rnn_module.hidden_size
    if linear is not None and linear.in_features != D * H:
        raise ValueError(
            f"linear: expected in_features = {D * H} (directions * hidden_size), got {linear.in_features}"
        )
    taken = sorted(set(kwargs) & {"nonlinearity", "num_layers", "bidirectional", "dropout"})
    if taken:
        raise TypeError(f"{', '.join(taken)}: taken from rnn_module, not accepted as keyword arguments")
    dtype = rnn_module.weight_ih_l0.dtype
    model = cls(
        rnn_module.input_size,
        H,
        linear.out_features if linear is not None else None,
        nonlinearity=rnn_module.nonlinearity,
        num_layers=rnn_module.num_layers,
        bidirectional=rnn_module.bidirectional,
        dropout=float(rnn_module.dropout),
        batch_first=kwargs.pop("batch_first", bool(rnn_module.batch_first)),
        dtype=kwargs.pop("dtype", "float64" if dtype == torch.float64 else "float32"),
        **kwargs,
    )
    sd = dict(rnn_module.state_dict())  # without biases (bias=False) b_h = 0
    if linear is not None:
        sd["linear.weight"] = linear.weight
        sd["linear.bias"] = torch.zeros(linear.out_features) if linear.bias is None else linear.bias
    # Not strict: E and h0 (when asked for in kwargs) have no nn.RNN counterpart and keep their values.
    load_state_dict(model, sd, strict=False)
    return model


def to_torch(model: Any) -> Any:
    """``(nn.RNN, nn.Linear or None)`` holding ``model``'s parameters (from its state dict)."""
    torch = _torch()
    if model.vocab_size:
        raise ValueError("to_torch: a model with a vocabulary has no nn.RNN equivalent (use E separately)")
    if model.nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"to_torch: nn.RNN supports tanh and relu, got nonlinearity={model.nonlinearity!r}")
    tdtype = torch.float64 if model.dtype == np.float64 else torch.float32
    rnn = torch.nn.RNN(
        model.input_size,
        model.hidden_size,
        num_layers=model.num_layers,
        nonlinearity=model.nonlinearity,
        bidirectional=model.bidirectional,
        dropout=model.config["dropout"],
        batch_first=model.batch_first,
    ).to(tdtype)
    linear: Optional[Any] = None
    if model.output_size:
        linear = torch.nn.Linear(model.num_directions * model.hidden_size, model.output_size).to(tdtype)
    sd = {k: torch.from_numpy(v) for k, v in state_dict(model, rnn_prefix="rnn.", linear_prefix="linear.").items()}
    for prefix, module in (("rnn.", rnn), ("linear.", linear)):
        if module is not None:
            module.load_state_dict({k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)})
    return rnn, linear


# ---------------------------------------------------------------------- Keras weights
def _keras_layout(model: Any) -> List[Tuple[str, str, Tuple[int, ...]]]:
    """(rnnext name, description, shape) of each array of the Keras weight list."""
    return [
        (p.name, p.keras(), model.params[p.name].shape) for p in table(model.config) if KINDS[p.kind].keras
    ]


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
    _refuse_other_cells(weights)
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
    _refuse_other_cells(weights)
    num_layers = kwargs.get("num_layers", 1)
    directions = 2 if kwargs.get("bidirectional", False) else 1
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
        raise ValueError(f"num_layers: expected an int >= 1, got {num_layers!r}")
    n_rnn = len(CELL_KINDS) * num_layers * directions
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


# Gated cells stack their gates along the kernels' last axis: (in, g*H), (H, g*H).
_GATED_CELLS = {4: "LSTM", 3: "GRU"}


def _refuse_other_cells(weights: Sequence[Any]) -> None:
    """A weight list of a Keras LSTM or GRU is named as such, not reported as a bad shape."""
    shapes = [np.shape(w) for w in weights]
    for i, (k, r) in enumerate(zip(shapes, shapes[1:])):
        if len(k) == 2 and len(r) == 2 and k[1] == r[1] and r[0] and r[1] // r[0] in _GATED_CELLS and r[1] % r[0] == 0:
            g, H = r[1] // r[0], r[0]
            raise ValueError(
                f"weights: these look like a Keras {_GATED_CELLS[g]}'s (weights[{i}] kernel {k}, "
                f"weights[{i + 1}] recurrent_kernel {r}: {g} gates of {H} units); rnnext is a vanilla "
                f"RNN and reads SimpleRNN weights: kernel (I, H), recurrent_kernel (H, H), bias (H,)"
            )


# ----------------------------------------------------------------------- Keras layers
_KERAS_OUTPUT = {"linear": None, "softmax": "softmax", "sigmoid": "sigmoid"}


def _keras_activation(layer: Any, allowed: Mapping[str, Optional[str]], what: str) -> Optional[str]:
    act = layer.get_config().get("activation")
    name = act if isinstance(act, str) else getattr(layer.activation, "__name__", repr(act))
    if name not in allowed:
        raise ValueError(
            f"layer: {layer.name!r} has activation={name!r}; rnnext's {what} is one of {sorted(allowed)}"
        )
    return allowed[name]


def _keras_rnn(layer: Any) -> Tuple[Dict[str, Any], List[np.ndarray], bool]:
    """(settings, weights, return_sequences) of a SimpleRNN or Bidirectional(SimpleRNN) layer."""
    cls = type(layer).__name__
    cells = [layer.forward_layer, layer.backward_layer] if cls == "Bidirectional" else [layer]
    if cls == "Bidirectional" and layer.merge_mode != "concat":
        raise ValueError(f"layer: {layer.name!r} merges its directions by {layer.merge_mode!r}; rnnext concatenates")
    weights: List[np.ndarray] = []
    for d, cell in enumerate(cells):
        kind = type(cell).__name__
        if kind != "SimpleRNN":
            raise ValueError(
                f"layer: {cell.name!r} is a Keras {kind}; rnnext is a vanilla RNN and converts SimpleRNN layers"
            )
        if cell.go_backwards != bool(d) or getattr(cell, "stateful", False):
            raise ValueError(f"layer: {cell.name!r} has go_backwards={cell.go_backwards} or stateful=True; not supported")
        w = [np.asarray(a) for a in cell.get_weights()]
        if not cell.use_bias:  # b_h = 0
            w.append(np.zeros(w[1].shape[0], w[0].dtype))
        weights += w
    act = {k: k for k in ("tanh", "relu", "sigmoid")}
    settings = dict(nonlinearity=_keras_activation(cells[0], act, "nonlinearity"), bidirectional=len(cells) == 2,
                    units=cells[0].units)
    return settings, weights, bool(cells[0].return_sequences)


def from_keras(cls: Any, layer: Any, **kwargs: Any) -> Any:
    """A ``cls`` model equal to a Keras ``SimpleRNN``, ``Bidirectional(SimpleRNN)``, or a
    ``Sequential`` of an optional ``Embedding``, such layers and an optional ``Dense``.

    The layers' configs give what a weight list cannot: the activation (``nonlinearity``),
    the direction, the number of layers and the Dense activation (``output_activation``:
    linear, softmax or sigmoid). ``batch_first`` defaults to True, Keras's (B, T, ...)
    layout; other keyword arguments go to ``RNN``. ``y`` holds every step: a layer with
    ``return_sequences=False`` outputs ``y[:, -1]``. LSTM and GRU layers are refused by name.
    """
    name = type(layer).__name__
    if name in ("Sequential", "Functional", "Model"):
        layers = [l for l in layer.layers if type(l).__name__ != "InputLayer"]
    elif name in ("SimpleRNN", "Bidirectional", "LSTM", "GRU"):
        layers = [layer]
    else:
        raise TypeError(f"layer: expected a Keras SimpleRNN, Bidirectional or Sequential, got {name}")
    weights: List[np.ndarray] = []
    if layers and type(layers[0]).__name__ == "Embedding":
        weights.append(np.asarray(layers[0].get_weights()[0]))
        layers = layers[1:]
    dense = layers.pop() if layers and type(layers[-1]).__name__ == "Dense" else None
    if not layers:
        raise ValueError(f"layer: {layer.name!r} holds no SimpleRNN layer")
    found = [_keras_rnn(l) for l in layers]
    first = found[0][0]
    for l, (settings, _, seqs) in zip(layers, found):
        if settings != first:
            raise ValueError(f"layer: {l.name!r} differs from the first recurrent layer ({settings} vs {first})")
    for l, (_, _, seqs) in zip(layers[:-1], found[:-1]):
        if not seqs:
            raise ValueError(f"layer: {l.name!r} has return_sequences=False but feeds another recurrent layer")
    for _, w, _ in found:
        weights += w
    output_activation = None
    if dense is not None:
        if (dense.use_bias and len(dense.get_weights()) != 2) or np.ndim(dense.get_weights()[0]) != 2:
            raise ValueError(f"layer: {dense.name!r} is not a Dense layer on the states")
        output_activation = _keras_activation(dense, _KERAS_OUTPUT, "output_activation")
        dw = [np.asarray(a) for a in dense.get_weights()]
        weights += dw if dense.use_bias else [dw[0], np.zeros(dw[0].shape[1], dw[0].dtype)]
    kwargs.setdefault("batch_first", True)
    kwargs.setdefault("output_activation", output_activation)
    return from_keras_weights(
        cls, weights, num_layers=len(layers), bidirectional=first["bidirectional"],
        nonlinearity=first["nonlinearity"], **kwargs,
    )

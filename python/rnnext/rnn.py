"""`rnnext.RNN`: the NumPy face of the C++ engine."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Literal, Mapping, Optional, Sequence, Tuple, Union, get_args

import numpy as np

from . import _core
from . import interop, serialization
from ._checks import (
    as_float_array,
    as_int_array,
    as_real_array,
    at,
    check_choice,
    check_dtype,
    check_int,
    check_memory,
    check_shape,
    first_bad_position,
    torch_to_numpy,
)

if TYPE_CHECKING:  # torch stays optional: only the annotations name it
    import torch

Nonlinearity = Literal["tanh", "relu", "sigmoid"]
OutputActivation = Literal["none", "sigmoid", "softmax"]
Init = Literal["default", "xavier", "orthogonal", "identity"]
DTypeLike = Union[Literal["float32", "float64"], "np.dtype[Any]", type]

NONLINEARITIES: Tuple[str, ...] = get_args(Nonlinearity)
OUTPUT_ACTIVATIONS: Tuple[Optional[str], ...] = (None, *get_args(OutputActivation))
INITS: Tuple[str, ...] = get_args(Init)


class DropoutWarning(UserWarning):
    """``dropout`` > 0 with one layer: it acts between layers only, so it does nothing."""


class ParameterViews(Dict[str, np.ndarray]):
    """``rnn.params`` / ``rnn.grads``: a dict of views into the flat buffers. Its entries
    cannot be replaced (a new array would not be the model's memory); write into them:
    ``rnn.params["b_y"][...] = v``. ``dict(rnn.params)`` and copies are plain dicts."""

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self and value is dict.__getitem__(self, key):
            return  # `rnn.params[k] += d` writes in place, then sets the same view back
        self._refuse(key)

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        key = args[0] if args and isinstance(args[0], str) else next(iter(self), "W_x")
        raise TypeError(
            f"rnn.params and rnn.grads are views into the model's memory and cannot be replaced or "
            f"removed; write in place instead: rnn.params[{key!r}][...] = value"
        )

    __delitem__ = update = pop = popitem = clear = setdefault = __ior__ = _refuse

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


def _refuse_assignment(model: "RNN", name: str, value: Any) -> None:
    if value is getattr(model, "_" + name):
        return  # `rnn.flat_params += d` updates in place, then sets the same array back
    raise AttributeError(
        f"rnn.{name} is read-only: it is the model's memory, and a new object would not be. "
        "Write in place instead: "
        + ("rnn.params['b_y'][...] = value" if name in ("params", "grads") else f"rnn.{name}[...] = values")
    )


def _config_property(key: str, doc: str) -> property:
    return property(lambda self: self._config[key], doc=doc)


def _unchangeable(a: np.ndarray) -> bool:
    """Nothing can write a's memory: a and every array it views are read-only, down to one
    that owns its memory (whose flag only its owner would turn back) or a bytes object."""
    base: Any = a
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return False
        if base.base is None:
            return True
        base = base.base
    return isinstance(base, bytes)


class RNN:
    """Elman RNN, time-major by default, in the row-vector convention of the reference notes::

        s_t = f_s(x_t W_x + s_{t-1} W_h + b_h)      s_0 = h0 (zeros by default)
        y_t = f_o(s_t W_y + b_y)                     (only with an output layer)

    Parameters
    ----------
    input_size : int
        Features per step (with ``vocab_size``, the width of the embedding ``E``).
    hidden_size : int
        State size H.
    output_size : int, optional
        Adds the output layer ``W_y`` (D*H, output_size), ``b_y``; without it ``y`` is the
        top layer's states.
    nonlinearity : {"tanh", "relu", "sigmoid"}
        f_s.
    output_activation : {None, "sigmoid", "softmax"}
        f_o (None is the identity).
    dtype : "float32" or "float64" (NumPy dtypes accepted)
    seed : int, optional
        Seeds initialisation and dropout.
    num_layers : int
        Stacked layers; layer k > 0 reads layer k-1's states.
    bidirectional : bool
        Adds a reverse direction per layer; their states are concatenated (forward first).
    dropout : float
        Inverted dropout on the input of every layer above the first, while ``training``.
    vocab_size : int, optional
        Inputs are integer ids (T, B) looked up in ``E`` (vocab_size, input_size).
    learn_h0 : bool
        Makes the initial state a parameter ``h0`` (num_layers * directions, H).
    init : {"default", "xavier", "orthogonal", "identity"}
        "default" is PyTorch's uniform(-1/sqrt(H), 1/sqrt(H)); "identity" is the IRNN recipe
        (W_h = I, biases 0, W_x ~ N(0, 0.001^2)).
    batch_first : bool
        As in PyTorch: ``x`` and ``y`` (and ``backward``'s ``grad`` and ``dx``) are
        (B, T, ...) instead of (T, B, ...); token ids (B, T). h0 and h_n are unchanged.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: Optional[int] = None,
        *,
        nonlinearity: Nonlinearity = "tanh",
        output_activation: Optional[OutputActivation] = None,
        dtype: DTypeLike = "float32",
        seed: Optional[int] = None,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        vocab_size: Optional[int] = None,
        learn_h0: bool = False,
        init: Init = "default",
        batch_first: bool = False,
    ) -> None:
        input_size = check_int("input_size", input_size, 1)
        hidden_size = check_int("hidden_size", hidden_size, 1)
        if output_size is not None:
            output_size = check_int("output_size", output_size, 1)
        if output_activation is not None and output_size is None:
            check_choice("output_activation", output_activation, [c for c in OUTPUT_ACTIVATIONS if c])
            if output_activation != "none":
                raise ValueError(
                    f"output_activation: {output_activation!r} needs an output layer, got output_size=None"
                )
        check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        if output_activation is not None:
            check_choice("output_activation", output_activation, [c for c in OUTPUT_ACTIVATIONS if c])
        num_layers = check_int("num_layers", num_layers, 1)
        if vocab_size is not None:
            vocab_size = check_int("vocab_size", vocab_size, 1)
        if not isinstance(bidirectional, (bool, np.bool_)):
            raise TypeError(f"bidirectional: expected a bool, got {bidirectional!r}")
        if not isinstance(learn_h0, (bool, np.bool_)):
            raise TypeError(f"learn_h0: expected a bool, got {learn_h0!r}")
        if not isinstance(batch_first, (bool, np.bool_)):
            raise TypeError(f"batch_first: expected a bool, got {batch_first!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating)):
            raise TypeError(f"dropout: expected a float in [0, 1), got {dropout!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout: expected a float in [0, 1), got {dropout!r}")
        check_choice("init", init, INITS)
        if seed is not None:
            seed = check_int("seed", seed, 0)
        if dropout and num_layers == 1:  # PyTorch's warning
            warnings.warn(
                f"dropout: acts on the input of every layer above the first, so dropout={dropout!r} "
                f"with num_layers=1 does nothing",
                DropoutWarning,
                stacklevel=2,
            )
        self._dtype = check_dtype(dtype)
        D = 2 if bidirectional else 1
        n_params = (vocab_size or 0) * input_size + (output_size or 0) * (D * hidden_size + 1)
        n_params += D * hidden_size * (input_size + hidden_size + 1 + (learn_h0 and num_layers))
        n_params += (num_layers - 1) * D * hidden_size * (D * hidden_size + hidden_size + 1)
        check_memory("the parameters and their gradients", 2 * n_params * self.dtype.itemsize)
        self._config: Dict[str, Any] = dict(
            input_size=input_size,
            hidden_size=hidden_size,
            output_size=output_size,
            nonlinearity=nonlinearity,
            output_activation=None if output_activation == "none" else output_activation,
            dtype=self.dtype.name,
            num_layers=num_layers,
            bidirectional=bool(bidirectional),
            dropout=float(dropout),
            vocab_size=vocab_size,
            learn_h0=bool(learn_h0),
            init=init,
            batch_first=bool(batch_first),
        )
        core_cls = _core.ModelF32 if self.dtype == np.float32 else _core.ModelF64
        self._core = core_cls(
            input_size=input_size,
            hidden_size=hidden_size,
            output_size=output_size or 0,
            num_layers=num_layers,
            vocab_size=vocab_size or 0,
            bidirectional=bool(bidirectional),
            learn_h0=bool(learn_h0),
            dropout=float(dropout),
            nonlinearity=nonlinearity,
            output_activation=self._config["output_activation"] or "none",
        )
        self._bind_views()
        self._training = True
        self._grad_norms: Optional[np.ndarray] = None
        self._last: Optional[Dict[str, Any]] = None
        rng = np.random.default_rng(seed)
        self._core.seed(int(rng.integers(0, 2**63 - 1)))
        self.reset_parameters(init, rng)

    # ----------------------------------------------------------------- structure
    def _bind_views(self) -> None:
        flat_p, flat_g = self._core.params, self._core.grads
        self._flat_params: np.ndarray = flat_p
        self._flat_grads: np.ndarray = flat_g
        params, grads = {}, {}
        # The engine lists its tensors by kind; their names come from interop's table.
        names = interop.table(self._config)
        if [p.kind for p in names] != [kind for kind, _, _ in self._core.layout]:
            raise RuntimeError(f"internal: engine layout {self._core.layout} does not follow interop.table")
        for p, (_, offset, shape) in zip(names, self._core.layout):
            name, n = p.name, int(np.prod(shape))
            params[name] = flat_p[offset : offset + n].reshape(shape)
            grads[name] = flat_g[offset : offset + n].reshape(shape)
        self._params = ParameterViews(params)
        self._grads = ParameterViews(grads)

    @property
    def params(self) -> Mapping[str, np.ndarray]:
        """Name -> NumPy view into ``flat_params`` (W_x, W_h, b_h; suffixes ``_l{k}`` for layer
        k > 0 and ``_reverse``; E, h0, W_y, b_y). Writing into a view changes the model:
        ``rnn.params["b_y"][...] = v``. Neither the dict nor its entries can be replaced."""
        return self._params

    @params.setter
    def params(self, value: Any) -> None:
        _refuse_assignment(self, "params", value)

    @property
    def grads(self) -> Mapping[str, np.ndarray]:
        """Name -> NumPy view into ``flat_grads``, the gradients ``backward`` adds into (the
        names and shapes of ``params``); ``zero_grad()`` clears them. Read-only like ``params``."""
        return self._grads

    @grads.setter
    def grads(self, value: Any) -> None:
        _refuse_assignment(self, "grads", value)

    @property
    def flat_params(self) -> np.ndarray:
        """Every parameter in one 1-D array of the model's dtype, in the order of ``params``:
        the engine's own memory, updated in place (``rnn.flat_params[...] = v``); read-only."""
        return self._flat_params

    @flat_params.setter
    def flat_params(self, value: Any) -> None:
        _refuse_assignment(self, "flat_params", value)

    @property
    def flat_grads(self) -> np.ndarray:
        """Every gradient in one 1-D array, laid out as ``flat_params``; read-only."""
        return self._flat_grads

    @flat_grads.setter
    def flat_grads(self, value: Any) -> None:
        _refuse_assignment(self, "flat_grads", value)

    def parameters(self) -> Iterator[np.ndarray]:
        """The parameter views, in the order of ``flat_params`` (as ``torch.nn.Module``'s)."""
        return iter(self._params.values())

    def named_parameters(self) -> Iterator[Tuple[str, np.ndarray]]:
        """``(name, view)`` per parameter; the gradient of ``name`` is ``rnn.grads[name]``."""
        return iter(self._params.items())

    @property
    def config(self) -> Dict[str, Any]:
        """The constructor arguments (a copy)."""
        return dict(self._config)

    input_size = _config_property("input_size", "Features per step (the width of E with a vocabulary).")
    hidden_size = _config_property("hidden_size", "State size H.")
    output_size = _config_property("output_size", "Width of the output layer, or None without one.")
    num_layers = _config_property("num_layers", "Stacked layers.")
    bidirectional = _config_property("bidirectional", "Whether each layer has a reverse direction.")
    vocab_size = _config_property("vocab_size", "Number of token ids, or None for real-valued inputs.")
    nonlinearity = _config_property("nonlinearity", "f_s: 'tanh', 'relu' or 'sigmoid'.")
    output_activation = _config_property("output_activation", "f_o: None, 'sigmoid' or 'softmax'.")
    batch_first = _config_property("batch_first", "Whether x and y are (B, T, ...) rather than (T, B, ...).")

    @property
    def dtype(self) -> "np.dtype[Any]":
        """``np.dtype('float32')`` or ``np.dtype('float64')``: parameters, outputs, gradients."""
        return self._dtype

    @property
    def training(self) -> bool:
        """True (dropout on) after construction and ``train()``; False after ``eval()``."""
        return self._training

    @training.setter
    def training(self, mode: bool) -> None:
        self._training = bool(mode)

    @property
    def grad_norms(self) -> Optional[np.ndarray]:
        """After ``backward``: (num_layers * directions, T) array of |dL/ds_t| per
        layer-direction and step (vanishing or exploding gradients show here); None before."""
        return self._grad_norms

    @property
    def num_directions(self) -> int:
        """1, or 2 when bidirectional."""
        return 2 if self._config["bidirectional"] else 1

    @property
    def num_states(self) -> int:
        """Rows of h0 / h_n: num_layers * directions."""
        return self.num_layers * self.num_directions

    @property
    def out_features(self) -> int:
        """The last axis of y: output_size, or directions * hidden_size."""
        return self.output_size or self.num_directions * self.hidden_size

    def reset_parameters(self, init: Init = "default", rng: Any = None) -> None:
        """Re-initialise every parameter in place (see the class docstring for ``init``)."""
        check_choice("init", init, INITS)
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        H = self.hidden_size
        k = 1.0 / np.sqrt(H)
        kinds = {p.name: p.kind for p in interop.table(self._config)}
        for name, p in self.params.items():
            base = kinds[name]
            if name == "E":
                p[...] = rng.standard_normal(p.shape)
            elif name == "h0":
                p[...] = 0.0
            elif base in ("W_y", "b_y"):
                ky = 1.0 / np.sqrt(self.params["W_y"].shape[0])
                p[...] = rng.uniform(-ky, ky, p.shape)
            elif init == "default":
                p[...] = rng.uniform(-k, k, p.shape)
            elif base == "b_h":
                p[...] = 0.0
            elif base == "W_h" and init == "identity":
                p[...] = np.eye(H)
            elif base == "W_h" and init == "orthogonal":
                q, r = np.linalg.qr(rng.standard_normal((H, H)))
                p[...] = q * np.sign(np.diag(r))
            elif base == "W_x" and init == "identity":
                p[...] = rng.normal(0.0, 1e-3, p.shape)
            else:  # xavier (Glorot uniform) for W_x, and W_h under "xavier"
                a = np.sqrt(6.0 / (p.shape[0] + p.shape[1]))
                p[...] = rng.uniform(-a, a, p.shape)

    def zero_grad(self) -> None:
        """Set every gradient to zero (backward accumulates, as in PyTorch)."""
        self._core.zero_grad()

    def train(self, mode: bool = True) -> "RNN":
        """Training mode turns dropout on; returns self."""
        self._training = bool(mode)
        return self

    def eval(self) -> "RNN":
        """Inference mode (dropout off); returns self."""
        return self.train(False)

    # ------------------------------------------------------------------ forward
    def forward(
        self, x: Any, h0: Any = None, lengths: Any = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Run the sequence(s) ``x`` and return ``(y, h_n)``.

        ``x`` is (T, B, input_size) ((B, T, input_size) with ``batch_first``), or
        (T, input_size) for one unbatched sequence; with a vocabulary it is integer ids
        (T, B) ((B, T)) or (T,). ``h0`` is (num_layers * directions, B, H), PyTorch's
        shape; a one-layer unidirectional model also takes (B, H). Without the batch axis
        when ``x`` is unbatched. ``h_n`` has the rank of the ``h0`` given (without ``h0``:
        (B, H) for one layer and direction, else 3-D). ``lengths`` (B,) gives each
        sequence's length: later steps leave its state unchanged and output zeros;
        ``h_n`` is its state at its last step. Torch tensors are read as values (detached,
        on the CPU): nothing links back to autograd.
        """
        bf = self._config["batch_first"]
        if self.vocab_size:
            ids = as_int_array("x", x)
            if ids.ndim not in (1, 2):
                want = "(B, T)" if bf else "(T, B)"
                raise ValueError(f"x: expected token ids of shape {want} or (T,), got shape {ids.shape}")
            unbatched = ids.ndim == 1
            bad = (ids < 0) | (ids >= self.vocab_size)
            if bad.any():
                pos = first_bad_position(bad)
                raise ValueError(
                    f"x: token ids must be in [0, {self.vocab_size}), got {int(ids[pos])}{at('x', pos)}"
                )
            ids = ids[:, None] if unbatched else (np.ascontiguousarray(ids.T) if bf else ids)
            T, B = ids.shape
            self._check_workspace(T, B)
            xf = None
            keep_x = x_private = False
        else:
            xr = as_real_array("x", x)
            I = self.input_size
            if xr.ndim not in (2, 3):
                want = f"(B, T, {I})" if bf else f"(T, B, {I})"
                raise ValueError(f"x: expected shape {want} or (T, {I}), got shape {xr.shape}")
            unbatched = xr.ndim == 2
            axes = ("T", "input_size") if unbatched else ("B", "T", "input_size") if bf else ("T", "B", "input_size")
            check_shape("x", xr, (None,) * (xr.ndim - 1) + (I,), axes)
            xr = xr[:, None, :] if unbatched else (xr.swapaxes(0, 1) if bf else xr)
            T, B = xr.shape[:2]
            self._check_workspace(T, B)  # before converting x, which may copy it
            xf = np.ascontiguousarray(xr, dtype=self.dtype)
            ids = None
            # backward() needs x as it is now: the engine keeps the converted array when the
            # conversion made a private copy, or x itself when nothing can write it, and
            # copies x otherwise (the caller may change it before backward).
            x_private = not np.may_share_memory(xf, xr)
            keep_x = x_private or _unchangeable(xf)
        h0a, h_3d = (None, self.num_states > 1) if h0 is None else self._state_in("h0", h0, B, unbatched)
        lens = None
        if lengths is not None:
            if unbatched:
                raise ValueError("lengths: only for batched input; got an unbatched x of shape " + str(np.shape(x)))
            lens = as_int_array("lengths", lengths)
            check_shape("lengths", lens, (B,), ("B",))
            bad = (lens < 0) | (lens > T)
            if bad.any():
                b = first_bad_position(bad)[0]
                raise ValueError(f"lengths: expected values in [0, {T}] (T), got {int(lens[b])} at lengths[{b}]")
            lens = lens.astype(np.int32)
        y, h_n = self._core.forward(xf, ids, h0a, lens, T, B, self._training, keep_x, x_private)
        if unbatched:
            y = y[:, 0]
        elif bf:
            y = y.swapaxes(0, 1)
        self._last = dict(B=B, unbatched=unbatched, y_shape=y.shape, h_3d=h_3d)
        return y, self._state_out(h_n, unbatched, h_3d)

    __call__ = forward

    def _check_workspace(self, T: int, B: int) -> None:
        # Stored per step and sequence: the input, every layer's states (twice with dropout),
        # the outputs, and backward's gradients of the same sizes.
        DH = self.num_directions * self.hidden_size
        per_row = self.input_size + self.num_layers * DH * (3 if self._config["dropout"] else 1)
        per_row += 2 * (self.output_size or 0) + 3 * max(self.input_size, DH) + self.hidden_size
        check_memory(f"sequences of T={T}, B={B}", 2 * T * B * per_row * self.dtype.itemsize)

    def _state_in(self, name: str, value: Any, B: int, unbatched: bool) -> Tuple[np.ndarray, bool]:
        """A state (h0, dh_n, h) as the engine's (S, B, H), and whether it came with the
        leading num_layers*directions axis (always so when S > 1; optional when S = 1)."""
        arr = as_float_array(name, value, self.dtype)
        S, H = self.num_states, self.hidden_size
        want: Tuple[int, ...] = (H,) if unbatched else (B, H)
        axes: Tuple[str, ...] = ("H",) if unbatched else ("B", "H")
        if S == 1 and arr.ndim not in (len(want), len(want) + 1):
            raise ValueError(f"{name}: expected shape {want} or {(1,) + want} (PyTorch's), got shape {arr.shape}")
        with_s = S > 1 or arr.ndim == len(want) + 1
        if with_s:
            want, axes = (S,) + want, ("num_layers*directions",) + axes
        check_shape(name, arr, want, axes)
        return arr.reshape(S, B, H), with_s

    def _state_out(self, h: np.ndarray, unbatched: bool, with_s: bool) -> np.ndarray:
        if unbatched:
            h = h[:, 0]
        return h if with_s else h[0]

    # ----------------------------------------------------------------- backward
    def backward(
        self,
        grad: Any = None,
        dh_n: Any = None,
        *,
        wrt: Literal["y", "logits"] = "y",
        need_dx: bool = True,
    ) -> Tuple[Optional[np.ndarray], np.ndarray]:
        """Backpropagation through time for the last ``forward`` call.

        ``grad`` has the shape of that call's ``y``: dL/dy, or with ``wrt="logits"`` dL/dz for
        z = s W_y + b_y (so softmax or sigmoid plus cross-entropy needs no Jacobian); None
        when the loss depends on ``h_n`` only. ``dh_n`` is dL/dh_n, (B, H) or
        (num_layers * directions, B, H) as for ``h0``. At least one of the two is needed.
        Gradients are added into ``rnn.grads``; returns ``(dx, dh0)`` in the shapes of x and
        h0 (dx is None for token inputs). ``rnn.grad_norms`` (num_layers * directions, T)
        then holds |dL/ds_t| per step. Calling backward again for the same forward adds the
        gradients again. ``need_dx=False`` skips dL/dx (returned as None), a product of
        T*B*H*input_size.
        """
        check_choice("wrt", wrt, ("y", "logits"))
        if not isinstance(need_dx, (bool, np.bool_)):
            raise TypeError(f"need_dx: expected a bool, got {need_dx!r}")
        if self._last is None:
            raise ValueError("backward: expected a forward() call first, got none to differentiate")
        if wrt == "logits" and not self.output_size:
            raise ValueError("wrt: 'logits' needs an output layer (output_size), got output_size=None")
        if grad is None and dh_n is None:
            raise ValueError("backward: expected grad (dL/dy) or dh_n (dL/dh_n), got neither")
        B, unbatched, want = self._last["B"], self._last["unbatched"], self._last["y_shape"]
        bf = self._config["batch_first"] and not unbatched
        if grad is None:
            g = np.zeros((want[1], want[0]) + want[2:] if bf else want, self.dtype)
        else:
            g = as_real_array("grad", grad)
            if g.shape != want:
                layout = "(T, out_features)" if unbatched else "(B, T, out_features)" if bf else "(T, B, out_features)"
                raise ValueError(f"grad: expected the shape of y, {want}, got {g.shape} (y is {layout})")
            g = as_float_array("grad", g.swapaxes(0, 1) if bf else g, self.dtype)
        dh = None if dh_n is None else self._state_in("dh_n", dh_n, B, unbatched)[0]
        dx, dh0, norms = self._core.backward(g, dh, wrt == "logits", bool(need_dx))
        self._grad_norms = norms
        if dx is not None and unbatched:
            dx = dx[:, 0]
        elif dx is not None and bf:
            dx = dx.swapaxes(0, 1)
        return dx, self._state_out(dh0, unbatched, self._last["h_3d"])

    def step(self, x: Any, h: Any = None) -> Tuple[np.ndarray, np.ndarray]:
        """One step of every layer, for streaming inference: returns ``(y_t, h_new)``.

        ``x`` is one step's input, (input_size,) or (B, input_size) (token ids: a scalar or
        (B,)); ``h`` is the carried state in the shape ``forward`` takes for ``h0`` (None:
        the initial state). ``step(x[t], h)`` over t gives ``forward(x)``'s outputs. No
        dropout, nothing is kept for ``backward``; unidirectional models only. Checked and
        run in C++, so a call costs about a microsecond at small sizes.
        """
        try:
            return self._core.step(x, h)
        except TypeError:
            # Off the fast path, read x and h as forward() does: torch tensors NumPy cannot
            # take (bfloat16) converted, token ids as integers (whole-valued floats too).
            x2, h2 = torch_to_numpy(x), torch_to_numpy(h)
            if self.vocab_size:
                x2 = as_int_array("x", x2)
            if x2 is x and h2 is h:
                raise
            return self._core.step(x2, h2)

    # ------------------------------------------------------------------ helpers
    def reset_state(self, h: Any, done: Any) -> np.ndarray:
        """Carried state with the rows of finished sequences reset (to zeros, or to the
        learned ``h0``): ``done`` is a boolean (B,) mask. Returns a new array shaped as ``h``."""
        done_a = np.asarray(done)
        if done_a.dtype != np.bool_:
            raise TypeError(f"done: expected a boolean array, got dtype {done_a.dtype}")
        if done_a.ndim != 1:
            raise ValueError(f"done: expected shape (B,), got {done_a.shape}")
        state, with_s = self._state_in("h", h, done_a.shape[0], False)
        out = state.copy()  # (S, B, H)
        out[:, done_a] = self._params["h0"][:, None, :] if "h0" in self._params else 0.0
        return self._state_out(out, False, with_s)

    def num_parameters(self) -> int:
        """Total number of parameters (the size of ``flat_params``)."""
        return int(self._flat_params.size)

    def __repr__(self) -> str:
        """The full constructor call (without ``seed``, which is not kept)."""
        c = self._config
        args = [f"{k}={c[k]!r}" for k in c if k not in ("input_size", "hidden_size")]
        return f"RNN({c['input_size']}, {c['hidden_size']}, " + ", ".join(args) + ")"

    # ---------------------------------------------------------------- interop
    @classmethod
    def from_torch(cls, rnn_module: Any, linear: Any = None, **kwargs: Any) -> "RNN":
        """An equal model from a ``torch.nn.RNN`` (and an optional ``torch.nn.Linear``)."""
        return interop.from_torch(cls, rnn_module, linear, **kwargs)

    def to_torch(self) -> Tuple["torch.nn.RNN", Optional["torch.nn.Linear"]]:
        """``(torch.nn.RNN, torch.nn.Linear or None)`` holding this model's parameters."""
        return interop.to_torch(self)

    def to_onnx(
        self, path: serialization.PathLike, *, with_lengths: bool = False, with_h0: bool = False, opset: int = 14
    ) -> None:
        """Write an ONNX model computing ``forward``: inputs ``x`` (and ``lengths`` (B,) int32,
        ``h0`` in forward's shape), outputs ``y`` and ``h_n``; T and B are dynamic, ``x`` and
        ``y`` batch-first with ``batch_first``. Needs the ``onnx`` package; see docs/interop.md
        for the graph and onnxruntime."""
        from . import _onnx

        _onnx.export(self, path, with_lengths=with_lengths, with_h0=with_h0, opset=opset)

    # ------------------------------------------- copies, files, PyTorch and Keras names
    # Copies and files in serialization.py, foreign layouts in interop.py. A copy, even
    # copy.copy, gets its own engine and buffers: params and grads are views into the
    # engine's memory and must never be shared.
    def __getstate__(self) -> Dict[str, Any]:
        return serialization.get_state(self)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        with warnings.catch_warnings():  # warned when the original was built
            warnings.simplefilter("ignore", DropoutWarning)
            serialization.set_state(RNN, self, state)
        for name in ("dtype", "training", "grad_norms"):  # plain attributes before 0.x properties
            if name in self.__dict__:
                self.__dict__["_" + name] = self.__dict__.pop(name)

    def __copy__(self) -> "RNN":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DropoutWarning)
            return serialization.clone(RNN, self, None)

    def __deepcopy__(self, memo: Dict[int, Any]) -> "RNN":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DropoutWarning)
            return serialization.clone(RNN, self, memo)

    def save(self, path: serialization.PathLike) -> None:
        """Write the config and parameters to an ``.npz`` file; read it with ``rnnext.load``."""
        serialization.save(self, path)

    def state_dict(self, *, rnn_prefix: str = "", linear_prefix: str = "linear.") -> Dict[str, np.ndarray]:
        """Parameters under PyTorch's ``nn.RNN``/``nn.Linear`` names and shapes (copies)."""
        return interop.state_dict(self, rnn_prefix=rnn_prefix, linear_prefix=linear_prefix)

    def torch_state_dict(self, *, rnn_prefix: str = "", linear_prefix: str = "linear.") -> Dict[str, "torch.Tensor"]:
        """``state_dict()`` as torch tensors (new memory, the model's dtype), so that
        ``torch.save(rnn.torch_state_dict(), f)`` is read back by
        ``torch.load(f, weights_only=True)`` and loads into ``nn.RNN``/``nn.Linear`` modules."""
        from .interop import _torch

        torch = _torch()
        sd = self.state_dict(rnn_prefix=rnn_prefix, linear_prefix=linear_prefix)
        return {k: torch.from_numpy(v) for k, v in sd.items()}

    def load_state_dict(
        self,
        state_dict: Mapping[str, Any],
        *,
        strict: bool = True,
        rnn_prefix: str = "",
        linear_prefix: str = "linear.",
    ) -> interop.IncompatibleKeys:
        """Copy in a PyTorch-named state dict (arrays or tensors); b_h = bias_ih + bias_hh."""
        return interop.load_state_dict(
            self, state_dict, strict=strict, rnn_prefix=rnn_prefix, linear_prefix=linear_prefix
        )

    def keras_weights(self) -> List[np.ndarray]:
        """Keras ``get_weights()`` order: [kernel (I, H), recurrent_kernel (H, H), bias (H,)] per cell."""
        return interop.keras_weights(self)

    def set_keras_weights(self, weights: Sequence[Any]) -> None:
        """Copy in a Keras weight list (the order of ``keras_weights``)."""
        interop.set_keras_weights(self, weights)

    @classmethod
    def from_keras_weights(cls, weights: Sequence[Any], **kwargs: Any) -> "RNN":
        """A model whose sizes come from a Keras weight list; kwargs go to ``RNN``."""
        return interop.from_keras_weights(cls, weights, **kwargs)

    @classmethod
    def from_keras(cls, layer: Any, **kwargs: Any) -> "RNN":
        """An equal model from a Keras ``SimpleRNN``, ``Bidirectional(SimpleRNN)`` or a
        ``Sequential`` of [``Embedding``,] such layers [, ``Dense``]: sizes from the weights,
        activation, direction and layers from the layers' configs. ``batch_first`` defaults
        to True (Keras's layout); kwargs go to ``RNN``."""
        return interop.from_keras(cls, layer, **kwargs)


def load(path: serialization.PathLike) -> RNN:
    """Read a model written by ``RNN.save``; every check passes before a model is returned.

    Raises FileNotFoundError for a missing file and ValueError naming the file for anything
    else wrong (see ``docs/file_format.md``).
    """
    model: RNN = serialization.load(RNN, path)
    return model


def from_onnx(path: serialization.PathLike) -> RNN:
    """A model from an ONNX file written by ``RNN.to_onnx`` or by ``torch.onnx.export`` of an
    ``nn.RNN`` (+ ``nn.Linear``); anything else is a ValueError naming the node and attribute."""
    from . import _onnx

    model: RNN = _onnx.read(RNN, path)
    return model

"""`rnnext.RNN`: the NumPy face of the C++ engine."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import _core
from . import interop, serialization
from ._checks import (
    as_float_array,
    as_int_array,
    as_real_array,
    check_choice,
    check_dtype,
    check_int,
    check_memory,
    check_shape,
    first_bad_position,
)

NONLINEARITIES = ("tanh", "relu", "sigmoid")
OUTPUT_ACTIVATIONS = (None, "none", "sigmoid", "softmax")
INITS = ("default", "xavier", "orthogonal", "identity")


class RNN:
    """Elman RNN, time-major, in the row-vector convention of the reference notes::

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
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: Optional[int] = None,
        *,
        nonlinearity: str = "tanh",
        output_activation: Optional[str] = None,
        dtype: Any = "float32",
        seed: Optional[int] = None,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        vocab_size: Optional[int] = None,
        learn_h0: bool = False,
        init: str = "default",
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
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating)):
            raise TypeError(f"dropout: expected a float in [0, 1), got {dropout!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout: expected a float in [0, 1), got {dropout!r}")
        check_choice("init", init, INITS)
        if seed is not None:
            seed = check_int("seed", seed, 0)
        self.dtype = check_dtype(dtype)
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
        self.training = True
        self.grad_norms: Optional[np.ndarray] = None
        self._last: Optional[Dict[str, Any]] = None
        rng = np.random.default_rng(seed)
        self._core.seed(int(rng.integers(0, 2**63 - 1)))
        self.reset_parameters(init, rng)

    # ----------------------------------------------------------------- structure
    def _bind_views(self) -> None:
        flat_p, flat_g = self._core.params, self._core.grads
        self.flat_params: np.ndarray = flat_p
        self.flat_grads: np.ndarray = flat_g
        self.params: Dict[str, np.ndarray] = {}
        self.grads: Dict[str, np.ndarray] = {}
        # The engine lists its tensors by kind; their names come from interop's table.
        names = interop.table(self._config)
        if [p.kind for p in names] != [kind for kind, _, _ in self._core.layout]:
            raise RuntimeError(f"internal: engine layout {self._core.layout} does not follow interop.table")
        for p, (_, offset, shape) in zip(names, self._core.layout):
            name, n = p.name, int(np.prod(shape))
            self.params[name] = flat_p[offset : offset + n].reshape(shape)
            self.grads[name] = flat_g[offset : offset + n].reshape(shape)

    @property
    def config(self) -> Dict[str, Any]:
        """The constructor arguments (a copy)."""
        return dict(self._config)

    input_size = property(lambda self: self._config["input_size"])
    hidden_size = property(lambda self: self._config["hidden_size"])
    output_size = property(lambda self: self._config["output_size"])
    num_layers = property(lambda self: self._config["num_layers"])
    bidirectional = property(lambda self: self._config["bidirectional"])
    vocab_size = property(lambda self: self._config["vocab_size"])
    nonlinearity = property(lambda self: self._config["nonlinearity"])
    output_activation = property(lambda self: self._config["output_activation"])

    @property
    def num_directions(self) -> int:
        return 2 if self._config["bidirectional"] else 1

    @property
    def num_states(self) -> int:
        """Rows of h0 / h_n: num_layers * directions."""
        return self.num_layers * self.num_directions

    @property
    def out_features(self) -> int:
        return self.output_size or self.num_directions * self.hidden_size

    def reset_parameters(self, init: str = "default", rng: Any = None) -> None:
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
        self.training = bool(mode)
        return self

    def eval(self) -> "RNN":
        return self.train(False)

    # ------------------------------------------------------------------ forward
    def forward(
        self, x: Any, h0: Any = None, lengths: Any = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Run the sequence(s) ``x`` and return ``(y, h_n)``.

        ``x`` is (T, B, input_size), or (T, input_size) for one unbatched sequence; with a
        vocabulary it is integer ids (T, B) or (T,). ``h0`` is (B, H) for a one-layer
        unidirectional model, else (num_layers * directions, B, H); without the batch axis
        when ``x`` is unbatched. ``lengths`` (B,) gives each sequence's length: later steps
        leave its state unchanged and output zeros; ``h_n`` is its state at its last step.
        """
        if self.vocab_size:
            ids = as_int_array("x", x)
            if ids.ndim not in (1, 2):
                raise ValueError(f"x: expected token ids of shape (T, B) or (T,), got shape {ids.shape}")
            unbatched = ids.ndim == 1
            if unbatched:
                ids = ids[:, None]
            bad = (ids < 0) | (ids >= self.vocab_size)
            if bad.any():
                pos = first_bad_position(bad)
                where = f"[{pos[0]}]" if unbatched else f"[{pos[0]}, {pos[1]}]"
                raise ValueError(
                    f"x: token ids must be in [0, {self.vocab_size}), got {int(ids[pos])} at x{where}"
                )
            T, B = ids.shape
            self._check_workspace(T, B)
            xf = None
        else:
            xr = as_real_array("x", x)
            if xr.ndim not in (2, 3):
                raise ValueError(
                    f"x: expected shape (T, B, {self.input_size}) or (T, {self.input_size}), got shape {xr.shape}"
                )
            unbatched = xr.ndim == 2
            if unbatched:
                xr = xr[:, None, :]
            check_shape("x", xr, (None, None, self.input_size), ("T", "B", "input_size"))
            T, B = xr.shape[:2]
            self._check_workspace(T, B)  # before converting x, which may copy it
            xf = np.ascontiguousarray(xr, dtype=self.dtype)
            ids = None
        h0a = None if h0 is None else self._state_in("h0", h0, B, unbatched)
        lens = None
        if lengths is not None:
            if unbatched:
                raise ValueError("lengths: only for batched input (T, B, ...); got an unbatched x")
            lens = as_int_array("lengths", lengths)
            check_shape("lengths", lens, (B,), ("B",))
            bad = (lens < 0) | (lens > T)
            if bad.any():
                b = first_bad_position(bad)[0]
                raise ValueError(f"lengths: expected values in [0, {T}] (T), got {int(lens[b])} at lengths[{b}]")
            lens = lens.astype(np.int32)
        y, h_n = self._core.forward(xf, ids, h0a, lens, T, B, self.training)
        if unbatched:
            y = y[:, 0]
        self._last = dict(B=B, unbatched=unbatched, y_shape=y.shape)
        return y, self._state_out(h_n, unbatched)

    __call__ = forward

    def _check_workspace(self, T: int, B: int) -> None:
        # Stored per step and sequence: the input, every layer's states (twice with dropout),
        # the outputs, and backward's gradients of the same sizes.
        DH = self.num_directions * self.hidden_size
        per_row = self.input_size + self.num_layers * DH * (3 if self._config["dropout"] else 1)
        per_row += 2 * (self.output_size or 0) + 3 * max(self.input_size, DH) + self.hidden_size
        check_memory(f"sequences of T={T}, B={B}", 2 * T * B * per_row * self.dtype.itemsize)

    def _state_in(self, name: str, value: Any, B: int, unbatched: bool) -> np.ndarray:
        arr = as_float_array(name, value, self.dtype)
        S, H = self.num_states, self.hidden_size
        want: Tuple[int, ...]
        axes: Tuple[str, ...]
        if S == 1:
            want, axes = ((H,), ("H",)) if unbatched else ((B, H), ("B", "H"))
        else:
            want, axes = ((S, H), ("num_layers*directions", "H")) if unbatched else (
                (S, B, H),
                ("num_layers*directions", "B", "H"),
            )
        check_shape(name, arr, want, axes)
        return arr.reshape(S, B, H)

    def _state_out(self, h: np.ndarray, unbatched: bool) -> np.ndarray:
        if unbatched:
            h = h[:, 0]
        return h[0] if self.num_states == 1 else h

    # ----------------------------------------------------------------- backward
    def backward(
        self, grad: Any, dh_n: Any = None, *, wrt: str = "y", need_dx: bool = True
    ) -> Tuple[Optional[np.ndarray], np.ndarray]:
        """Backpropagation through time for the last ``forward`` call.

        ``grad`` has the shape of that call's ``y``: dL/dy, or with ``wrt="logits"`` dL/dz for
        z = s W_y + b_y (so softmax or sigmoid plus cross-entropy needs no Jacobian).
        ``dh_n`` is dL/dh_n in h_n's shape. Gradients are added into ``rnn.grads``; returns
        ``(dx, dh0)`` in the shapes of x and h0 (dx is None for token inputs).
        ``rnn.grad_norms`` (num_layers * directions, T) then holds |dL/ds_t| per step.
        Calling backward again for the same forward adds the gradients again.
        ``need_dx=False`` skips dL/dx (returned as None), a product of T*B*H*input_size.
        """
        check_choice("wrt", wrt, ("y", "logits"))
        if not isinstance(need_dx, (bool, np.bool_)):
            raise TypeError(f"need_dx: expected a bool, got {need_dx!r}")
        if self._last is None:
            raise ValueError("backward: expected a forward() call first, got none to differentiate")
        if wrt == "logits" and not self.output_size:
            raise ValueError("wrt: 'logits' needs an output layer (output_size), got output_size=None")
        B, unbatched = self._last["B"], self._last["unbatched"]
        g = as_float_array("grad", grad, self.dtype)
        want = self._last["y_shape"]
        if g.shape != want:
            raise ValueError(f"grad: expected the shape of y, {want}, got {g.shape}")
        dh = None if dh_n is None else self._state_in("dh_n", dh_n, B, unbatched)
        dx, dh0, norms = self._core.backward(g, dh, wrt == "logits", bool(need_dx))
        self.grad_norms = norms
        if dx is not None and unbatched:
            dx = dx[:, 0]
        return dx, self._state_out(dh0, unbatched)

    def step(self, x: Any, h: Any = None) -> Tuple[np.ndarray, np.ndarray]:
        """One step of every layer, for streaming inference: returns ``(y_t, h_new)``.

        ``x`` is one step's input, (input_size,) or (B, input_size) (token ids: a scalar or
        (B,)); ``h`` is the carried state in the shape ``forward`` takes for ``h0`` (None:
        the initial state). ``step(x[t], h)`` over t gives ``forward(x)``'s outputs. No
        dropout, nothing is kept for ``backward``; unidirectional models only. Checked and
        run in C++, so a call costs about a microsecond at small sizes.
        """
        return self._core.step(x, h)

    # ------------------------------------------------------------------ helpers
    def reset_state(self, h: Any, done: Any) -> np.ndarray:
        """Carried state with the rows of finished sequences reset (to zeros, or to the
        learned ``h0``): ``done`` is a boolean (B,) mask. Returns a new array."""
        done_a = np.asarray(done)
        if done_a.dtype != np.bool_:
            raise TypeError(f"done: expected a boolean array, got dtype {done_a.dtype}")
        if done_a.ndim != 1:
            raise ValueError(f"done: expected shape (B,), got {done_a.shape}")
        out = self._state_in("h", h, done_a.shape[0], False).copy()  # (S, B, H)
        out[:, done_a] = self.params["h0"][:, None, :] if "h0" in self.params else 0.0
        return self._state_out(out, False)

    def num_parameters(self) -> int:
        return int(self.flat_params.size)

    def __repr__(self) -> str:
        c = self._config
        extra = [f"output_size={c['output_size']}"] if c["output_size"] else []
        for key, default in (
            ("nonlinearity", "tanh"),
            ("output_activation", None),
            ("num_layers", 1),
            ("bidirectional", False),
            ("dropout", 0.0),
            ("vocab_size", None),
            ("learn_h0", False),
        ):
            if c[key] != default:
                extra.append(f"{key}={c[key]!r}")
        extra.append(f"dtype='{c['dtype']}'")
        return f"RNN({c['input_size']}, {c['hidden_size']}, " + ", ".join(extra) + ")"

    # ---------------------------------------------------------------- interop
    @classmethod
    def from_torch(cls, rnn_module: Any, linear: Any = None, **kwargs: Any) -> "RNN":
        """An equal model from a ``torch.nn.RNN`` (and an optional ``torch.nn.Linear``)."""
        return interop.from_torch(cls, rnn_module, linear, **kwargs)

    def to_torch(self) -> Any:
        """``(torch.nn.RNN, torch.nn.Linear or None)`` holding this model's parameters."""
        return interop.to_torch(self)

    # ------------------------------------------- copies, files, PyTorch and Keras names
    # Copies and files in serialization.py, foreign layouts in interop.py. A copy, even
    # copy.copy, gets its own engine and buffers: params and grads are views into the
    # engine's memory and must never be shared.
    def __getstate__(self) -> Dict[str, Any]:
        return serialization.get_state(self)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        serialization.set_state(RNN, self, state)

    def __copy__(self) -> "RNN":
        return serialization.clone(RNN, self, None)

    def __deepcopy__(self, memo: Dict[int, Any]) -> "RNN":
        return serialization.clone(RNN, self, memo)

    def save(self, path: serialization.PathLike) -> None:
        """Write the config and parameters to an ``.npz`` file; read it with ``rnnext.load``."""
        serialization.save(self, path)

    def state_dict(self, *, rnn_prefix: str = "", linear_prefix: str = "linear.") -> Dict[str, np.ndarray]:
        """Parameters under PyTorch's ``nn.RNN``/``nn.Linear`` names and shapes (copies)."""
        return interop.state_dict(self, rnn_prefix=rnn_prefix, linear_prefix=linear_prefix)

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


def load(path: serialization.PathLike) -> RNN:
    """Read a model written by ``RNN.save``; every check passes before a model is returned.

    Raises FileNotFoundError for a missing file and ValueError naming the file for anything
    else wrong (see ``docs/file_format.md``).
    """
    model: RNN = serialization.load(RNN, path)
    return model

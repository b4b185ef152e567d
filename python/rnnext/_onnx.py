"""ONNX graphs of an :class:`rnnext.RNN`: :func:`export` (``RNN.to_onnx``) and :func:`read`
(``rnnext.from_onnx``). Which tensor holds which parameter is :mod:`rnnext.interop`'s;
this module builds and reads the nodes around them. onnx is imported lazily.

The graph, per layer k, is one ``RNN`` node (layout 0, one activation per direction) fed by
the previous layer's states; ONNX's ``Y`` (T, D, B, H) becomes rnnext's (T, B, D*H) by a
Squeeze (D = 1) or by Transpose (0, 2, 1, 3) and Reshape (0, 0, -1). The output layer is
MatMul + Add (+ Sigmoid or Softmax). Two things differ between ONNX's RNN and rnnext and
are fixed in the graph: ONNX gives ``Y_h`` = 0 for a sequence of length 0 (rnnext: h0),
and the output layer maps the zero states past a sequence's end to f_o(b_y) (rnnext: 0).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from . import interop
from ._checks import check_int
from ._files import write_atomic

MIN_OPSET = 14  # RNN-14, Reshape-14, Squeeze/Unsqueeze/Slice with axes as inputs
ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("this needs the onnx package: pip install 'rnnext[onnx]'") from e
    return onnx


def _fspath(path: Any) -> str:
    try:
        return os.fspath(path)
    except TypeError as e:
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}") from e


# -------------------------------------------------------------------------- export
class _Graph:
    """Nodes and initializers under unique names."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: List[Any] = []
        self.inits: List[Any] = []
        self._n = 0

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def const(self, value: Sequence[int], scalar: bool = False) -> str:
        arr = np.array(value[0] if scalar else value, dtype=np.int64)
        return self.init(f"c{len(self.inits)}", arr)

    def op(self, op_type: str, inputs: Sequence[str], n_out: int = 1, name: str = "", **attrs: Any) -> Any:
        self._n += 1
        name = name or f"{op_type}_{self._n}"
        outs = [f"{name}_out{i}" if n_out > 1 else name for i in range(n_out)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs if n_out > 1 else outs[0]


def export(model: Any, path: Any, *, with_lengths: bool = False, with_h0: bool = False, opset: int = 14) -> None:
    onnx = _onnx()
    path = _fspath(path)
    for name, flag in (("with_lengths", with_lengths), ("with_h0", with_h0)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name}: expected a bool, got {flag!r}")
    newest = onnx.defs.onnx_opset_version()
    opset = check_int("opset", opset)
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset: expected an int in [{MIN_OPSET}, {newest}] (this onnx's newest), got {opset}")
    onnx_model = build(model, with_lengths=bool(with_lengths), with_h0=bool(with_h0), opset=opset)
    onnx.checker.check_model(onnx_model, full_check=True)
    write_atomic(path, lambda fh: fh.write(onnx_model.SerializeToString()))


def build(model: Any, *, with_lengths: bool, with_h0: bool, opset: int) -> Any:
    """The ONNX ModelProto of ``model`` (see the module docstring and docs/interop.md)."""
    onnx = _onnx()
    helper, TP = onnx.helper, onnx.TensorProto
    elem = TP.FLOAT if model.dtype == np.float32 else TP.DOUBLE
    g = _Graph(onnx)
    L, D, H, S = model.num_layers, model.num_directions, model.hidden_size, model.num_states
    inputs = []
    if model.vocab_size:
        inputs.append(helper.make_tensor_value_info("x", TP.INT64, ["T", "B"]))
        feat = g.op("Gather", [g.init("E", model.params["E"]), "x"], name="embedding", axis=0)
    else:
        inputs.append(helper.make_tensor_value_info("x", elem, ["T", "B", model.input_size]))
        feat = "x"
    lengths = ""
    if with_lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TP.INT32, ["B"]))
        lengths = "lengths"
    h0 = ""
    if with_h0:  # in forward()'s shape: (B, H) for one layer and direction
        inputs.append(helper.make_tensor_value_info("h0", elem, ["B", H] if S == 1 else [S, "B", H]))
        h0 = g.op("Unsqueeze", ["h0", g.const([0])]) if S == 1 else "h0"
    elif "h0" in model.params:  # the learned (S, H) broadcast to (S, B, H)
        batch = g.op("Slice", [g.op("Shape", ["x"]), g.const([1]), g.const([2])])
        h0 = g.op(
            "Expand",
            [g.op("Unsqueeze", [g.init("h0", model.params["h0"]), g.const([1])]),
            g.op("Concat", [g.const([1]), batch, g.const([1])], axis=0)],
        )
    empty = ""
    if lengths and h0:  # (1, B, 1): sequences of length 0, whose h_n is h0
        empty = g.op("Unsqueeze", [g.op("Equal", [lengths, g.init("zero_length", np.array(0, np.int32))]), g.const([0, 2])])
    act = ACTIVATIONS[model.nonlinearity]
    hs = []
    for l in range(L):
        W, R, B = interop.onnx_rnn_tensors(model, l)
        h0_l = h0 if not h0 or L == 1 else g.op("Slice", [h0, g.const([l * D]), g.const([(l + 1) * D]), g.const([0])])
        Y, Y_h = g.op(
            "RNN",
            [feat, g.init(f"W_l{l}", W), g.init(f"R_l{l}", R), g.init(f"B_l{l}", B), lengths, h0_l],
            n_out=2,
            name=f"rnn_l{l}",
            hidden_size=H,
            direction="bidirectional" if D == 2 else "forward",
            activations=[act] * D,
        )
        if D == 1:
            feat = g.op("Squeeze", [Y, g.const([1])])
        else:
            feat = g.op("Reshape", [g.op("Transpose", [Y], perm=[0, 2, 1, 3]), g.const([0, 0, -1])])
        hs.append(g.op("Where", [empty, h0_l, Y_h]) if empty else Y_h)
    h_n = hs[0] if L == 1 else g.op("Concat", hs, axis=0)
    if S == 1:
        h_n = g.op("Squeeze", [h_n, g.const([0])])
    g.nodes.append(helper.make_node("Identity", [h_n], ["h_n"], name="h_n"))
    y = feat
    if model.output_size:
        y = g.op("Add", [g.op("MatMul", [y, g.init("W_y", model.params["W_y"])]), g.init("b_y", model.params["b_y"])])
        if model.output_activation == "sigmoid":
            y = g.op("Sigmoid", [y])
        elif model.output_activation == "softmax":
            y = g.op("Softmax", [y], axis=-1)
        if lengths:  # zero past each sequence's end, as forward() does
            shape = g.op("Shape", ["x"])
            T = g.op("Gather", [shape, g.const([0], scalar=True)], axis=0)
            steps = g.op("Range", [g.const([0], scalar=True), T, g.const([1], scalar=True)])
            live = g.op(
                "Less",
                [g.op("Unsqueeze", [steps, g.const([1])]),
                 g.op("Unsqueeze", [g.op("Cast", [lengths], to=TP.INT64), g.const([0])])],
            )
            zero = g.init("zero", np.zeros((), model.dtype))
            y = g.op("Where", [g.op("Unsqueeze", [live, g.const([2])]), y, zero])
    g.nodes.append(helper.make_node("Identity", [y], ["y"], name="y"))
    outputs = [
        helper.make_tensor_value_info("y", elem, ["T", "B", model.out_features]),
        helper.make_tensor_value_info("h_n", elem, ["B", H] if S == 1 else [S, "B", H]),
    ]
    graph = helper.make_graph(g.nodes, "rnnext", inputs, outputs, g.inits)
    opsets = [helper.make_opsetid("", opset)]
    from ._version import __version__

    return helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),  # the oldest runtimes that can read it
        producer_name="rnnext",
        producer_version=__version__,
        doc_string=repr(model),
    )


# -------------------------------------------------------------------------- import
class _Refusal(ValueError):
    pass


def read(cls: Any, path: Any) -> Any:
    onnx = _onnx()
    path = _fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file: {path!r}")
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        proto = onnx.load_model_from_string(data)
        onnx.checker.check_model(proto)
    except Exception as e:  # protobuf's DecodeError, onnx's ValidationError, ...
        raise ValueError(f"{path}: not a valid ONNX model ({type(e).__name__}: {e})") from e
    try:
        return _Reader(onnx, proto).model(cls)
    except _Refusal as e:
        raise ValueError(f"{path}: {e}") from None


def _attrs(onnx: Any, node: Any) -> Dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else [s.decode() if isinstance(s, bytes) else s for s in v] if isinstance(v, list) else v
    return out


# Data-path values, tagged: ("x",), ("ids",), ("states", k) = layer k's input, ("Y", k),
# ("YT", k), ("Y_h", k), ("h_n",), ("z0",) = s W_y, ("z",) = + b_y, ("f_o", act).
# Nodes off the data path compute shapes, h0 and masks from constants, x's shape and inputs.
_SIDE_OPS = {
    "Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "ConstantOfShape",
    "Expand", "Cast", "Range", "Less", "Equal", "Where", "Identity", "Reshape",
}
_DATA_OPS = {"RNN", "Gather", "Squeeze", "Transpose", "Reshape", "Concat", "Where", "Identity"}
_DATA_OPS |= {"MatMul", "Add", "Sigmoid", "Softmax", "Shape"}


def _describe(tag: Optional[Tuple[Any, ...]]) -> str:
    if tag is None:
        return "nothing from the data"
    kind, k = tag[0], tag[1] if len(tag) > 1 else None
    return {
        "ids": "the token ids",
        "states": "the model input" if k == 0 else f"the states of layer {k - 1}" if k else "",
        "Y": f"the Y of layer {k}",
        "YT": f"the transposed Y of layer {k}",
        "Y_h": f"the Y_h of layer {k}",
        "h_n": "h_n",
        "z0": "the states times W_y",
        "z": "the output layer's logits",
        "f_o": f"the output layer's {k}",
    }[kind]


class _Reader:
    def __init__(self, onnx: Any, proto: Any) -> None:
        self.onnx, self.proto, self.graph = onnx, proto, proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.consts: Dict[str, np.ndarray] = {t.name: onnx.numpy_helper.to_array(t) for t in self.graph.initializer}
        self.producer: Dict[str, Any] = {o: n for n in self.graph.node for o in n.output}
        self.inputs = [i.name for i in self.graph.input if i.name not in self.consts]

    # ---- helpers
    def const(self, name: str, what: str, node: Any) -> np.ndarray:
        """A tensor computed from constants alone (an initializer, a Constant, or a
        subgraph of them)."""
        if name in self.consts:
            return self.consts[name]
        if self._input_ancestors(name):
            raise _Refusal(f"node {node.name!r} ({node.op_type}): {what} ({name!r}) is not a constant")
        value = self._evaluate([name], {})[0]
        self.consts[name] = value
        return value

    def _ancestors(self, name: str) -> Tuple[Set[str], List[Any]]:
        names, nodes, stack = set(), [], [name]
        while stack:
            t = stack.pop()
            if t in names or not t:
                continue
            names.add(t)
            n = self.producer.get(t)
            if n is not None and n not in nodes:
                nodes.append(n)
                stack.extend(n.input)
        return names, nodes

    def _input_ancestors(self, name: str) -> Set[str]:
        return self._ancestors(name)[0] & set(self.inputs)

    def _evaluate(self, names: List[str], feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        """Run the subgraph computing ``names`` with onnx's reference evaluator."""
        from onnx.reference import ReferenceEvaluator

        helper = self.onnx.helper
        wanted: Set[Any] = set()
        for name in names:
            wanted.update(id(n) for n in self._ancestors(name)[1])
        nodes = [n for n in self.graph.node if id(n) in wanted]
        g = helper.make_graph(
            nodes,
            "sub",
            [i for i in self.graph.input if i.name in feeds],
            [helper.make_empty_tensor_value_info(n) for n in names],
            list(self.graph.initializer),
        )
        sub = helper.make_model(g, opset_imports=self.proto.opset_import, ir_version=self.proto.ir_version)
        return [np.asarray(v) for v in ReferenceEvaluator(sub).run(names, feeds)]

    def axes(self, node: Any, attrs: Dict[str, Any]) -> List[int]:
        if "axes" in attrs:
            return list(attrs["axes"])
        if len(node.input) > 1 and node.input[1]:
            return [int(a) for a in self.const(node.input[1], "axes", node).reshape(-1)]
        return []

    # ---- the walk
    def model(self, cls: Any) -> Any:
        onnx = self.onnx
        TP = onnx.TensorProto
        data: Dict[str, Tuple[Any, ...]] = {}
        if not self.inputs:
            raise _Refusal("the graph has no inputs")
        x = self.inputs[0]
        x_type = next(i for i in self.graph.input if i.name == x).type.tensor_type
        if x_type.elem_type in (TP.INT64, TP.INT32):
            data[x] = ("ids",)
        elif x_type.elem_type in (TP.FLOAT, TP.DOUBLE):
            data[x] = ("states", 0)
        else:
            raise _Refusal(f"graph input {x!r}: expected float, double or int64 data, got element type {x_type.elem_type}")
        E = None
        layers: List[Dict[str, Any]] = []
        lengths_inputs: Set[str] = set()
        out_W: Optional[np.ndarray] = None
        out_b: Optional[np.ndarray] = None
        out_act: Optional[str] = None

        for node in self.graph.node:
            op, ins, attrs = node.op_type, list(node.input), _attrs(onnx, node)
            tags = [data.get(i) for i in ins]
            where = f"node {node.name!r} ({op})"
            dtags = [t for t in tags if t is not None]
            if op not in _SIDE_OPS | _DATA_OPS or node.domain not in ("", "ai.onnx"):
                raise _Refusal(
                    f"{where}: operator {node.domain + '.' if node.domain else ''}{op} is not supported: rnnext "
                    "reads RNN nodes, MatMul + Add (+ Sigmoid or Softmax) and shape operators"
                )
            if not dtags:
                if op not in _SIDE_OPS:
                    raise _Refusal(f"{where}: computes from constants alone, which rnnext does not expect of {op}")
                continue
            t0 = dtags[0]
            out: Optional[Tuple[Any, ...]] = None
            if op == "Shape":
                continue  # x's shape: a side value
            if op == "Gather" and tags == [None, ("ids",)]:
                if attrs.get("axis", 0) != 0 or E is not None:
                    raise _Refusal(f"{where}: attribute axis={attrs.get('axis')}: expected one embedding lookup on axis 0")
                E = self.const(ins[0], "the embedding E", node)
                out = ("states", 0)
            elif op == "RNN":
                out = self._rnn(node, attrs, tags, layers, lengths_inputs)
            elif op == "Squeeze" and t0[0] == "Y" and self.axes(node, attrs) == [1] and layers[t0[1]]["D"] == 1:
                out = ("states", t0[1] + 1)
            elif op == "Transpose" and t0[0] == "Y" and list(attrs.get("perm", [])) == [0, 2, 1, 3]:
                out = ("YT", t0[1])
            elif op == "Reshape" and t0[0] == "YT" and tags[1] is None:
                shape = self.const(ins[1], "shape", node).tolist()
                DH = layers[t0[1]]["D"] * layers[t0[1]]["H"]
                if len(shape) != 3 or shape[:2] != [0, 0] or shape[2] not in (-1, DH) or attrs.get("allowzero", 0):
                    raise _Refusal(f"{where}: shape {shape}: expected [0, 0, -1] (concatenating the directions)")
                out = ("states", t0[1] + 1)
            elif op in ("Squeeze", "Identity", "Concat") and t0[0] in ("Y_h", "h_n"):
                out = self._h_n(node, op, attrs, tags, layers, where)
            elif op == "Where" and tags[0] is None and sum(t is not None for t in tags) == 1:
                # masks: h_n = h0 for empty sequences, outputs zeroed past the end
                out = t0
            elif op == "Identity":
                out = t0
            elif op == "MatMul" and tags[1] is None and t0 == ("states", len(layers)) and out_W is None:
                out_W = self.const(ins[1], "the output weight W_y", node)
                out = ("z0",)
            elif op == "Add" and t0 == ("z0",) and len(dtags) == 1:
                out_b = self.const(ins[1] if tags[0] is not None else ins[0], "the output bias b_y", node)
                out = ("z",)
            elif op in ("Sigmoid", "Softmax") and t0 == ("z",):
                if op == "Softmax":
                    axis = attrs.get("axis", -1 if self.opset >= 13 else 1)
                    if axis not in (-1, 2):
                        raise _Refusal(f"{where}: attribute axis={axis}: expected the last axis (-1 or 2)")
                out_act = op.lower()
                out = ("f_o", out_act)
            else:
                got = ", ".join(f"{i!r} ({_describe(t)})" for i, t in zip(ins, tags) if t is not None)
                raise _Refusal(f"{where}: not part of an rnnext model here (reads {got}; attributes {attrs})")
            for o in node.output:
                data[o] = out if o == node.output[0] or op != "RNN" else ("Y_h", out[1])

        if not layers:
            raise _Refusal("the graph has no RNN node")
        return self._build(cls, data, layers, E, out_W, out_b, out_act, x, lengths_inputs)

    def _rnn(self, node: Any, attrs: Dict[str, Any], tags: List[Any], layers: List[Dict[str, Any]], lengths_inputs: Set[str]) -> Tuple[Any, ...]:
        where = f"node {node.name!r} (RNN)"
        k = len(layers)
        if tags[0] != ("states", k):
            want = _describe(("states", k))
            raise _Refusal(f"{where}: input X is {_describe(tags[0])}, expected {want}")
        if any(t is not None for t in tags[1:]):
            raise _Refusal(f"{where}: W, R, B, sequence_lens and initial_h must not depend on the data")
        for name in ("clip", "activation_alpha", "activation_beta"):
            if name in attrs:
                raise _Refusal(f"{where}: attribute {name}={attrs[name]} is not supported (rnnext has no {name})")
        if attrs.get("layout", 0) != 0:
            raise _Refusal(f"{where}: attribute layout={attrs['layout']} is not supported (only layout 0, time-major)")
        direction = attrs.get("direction", "forward")
        if direction not in ("forward", "bidirectional"):
            raise _Refusal(f"{where}: attribute direction={direction!r} is not supported (forward or bidirectional)")
        D = 2 if direction == "bidirectional" else 1
        acts = attrs.get("activations", ["Tanh"] * D)
        by_onnx = {v: k for k, v in ACTIVATIONS.items()}
        if len(acts) != D or len(set(acts)) != 1 or acts[0] not in by_onnx:
            raise _Refusal(f"{where}: attribute activations={acts} is not supported (one of Tanh, Relu, Sigmoid, the same for every direction)")
        ins = list(node.input) + [""] * (6 - len(node.input))
        W = self.const(ins[1], "W", node)
        R = self.const(ins[2], "R", node)
        H = int(attrs.get("hidden_size", R.shape[-1]))
        B = self.const(ins[3], "B", node) if ins[3] else np.zeros((D, 2 * H), W.dtype)
        if W.ndim != 3 or W.shape[:2] != (D, H) or R.shape != (D, H, H) or B.shape != (D, 2 * H):
            raise _Refusal(f"{where}: W {W.shape}, R {R.shape}, B {B.shape} do not fit hidden_size={H}, {D} direction(s)")
        if k and (H, D, W.shape[2]) != (layers[0]["H"], layers[0]["D"], D * H):
            raise _Refusal(f"{where}: layers differ in hidden_size or direction, or input_size {W.shape[2]} is not {D * H}")
        if k and by_onnx[acts[0]] != layers[0]["act"]:
            raise _Refusal(f"{where}: attribute activations={acts} differs from the first layer's")
        if ins[4]:
            src = self.producer.get(ins[4])
            name = src.input[0] if src is not None and src.op_type == "Cast" else ins[4]
            if name not in self.inputs:
                raise _Refusal(f"{where}: sequence_lens must be a graph input (lengths), got {ins[4]!r}")
            lengths_inputs.add(name)
        layers.append(dict(node=node, W=W, R=R, B=B, H=H, D=D, act=by_onnx[acts[0]], initial_h=ins[5]))
        return ("Y", k)

    def _h_n(self, node: Any, op: str, attrs: Dict[str, Any], tags: List[Any], layers: List[Dict[str, Any]], where: str) -> Tuple[Any, ...]:
        if op == "Identity":
            return tags[0]
        if op == "Squeeze":
            if self.axes(node, attrs) != [0]:
                raise _Refusal(f"{where}: squeezes axes {self.axes(node, attrs)} of h_n, expected [0]")
            return ("h_n",)
        if attrs.get("axis") != 0 or tags != [("Y_h", k) for k in range(len(tags))]:
            got = ", ".join(_describe(t) for t in tags)
            raise _Refusal(f"{where}: expected the layers' Y_h concatenated in order on axis 0, got {got}")
        self.h_n_layers = len(tags)
        return ("h_n",)

    def _build(self, cls: Any, data: Dict[str, Tuple[Any, ...]], layers: List[Dict[str, Any]], E: Any, W_y: Any, b_y: Any, act: Optional[str], x: str, lengths_inputs: Set[str]) -> Any:
        L, first = len(layers), layers[0]
        D, H = first["D"], first["H"]
        outs = [o.name for o in self.graph.output]
        want_y = ("f_o", act) if act else ("z",) if W_y is not None else ("states", L)
        if not outs or data.get(outs[0]) != want_y:
            got = _describe(data.get(outs[0])) if outs else "no output"
            raise _Refusal(f"graph output {outs[0] if outs else None!r}: expected {_describe(want_y)} (y), got {got}")
        for o in outs[1:2]:
            full = data.get(o) == ("h_n",) and getattr(self, "h_n_layers", L) == L
            if not (full or (L == 1 and data.get(o) == ("Y_h", 0))):
                raise _Refusal(f"graph output {o!r}: expected h_n (every layer's Y_h), got {_describe(data.get(o))}")
        if len(outs) > 2:
            raise _Refusal(f"graph outputs {outs[2:]}: expected only y and h_n")
        if (W_y is None) != (b_y is None) or (W_y is not None and (W_y.ndim != 2 or W_y.shape[0] != D * H or b_y.shape != (W_y.shape[1],))):
            raise _Refusal(f"output layer: W_y {getattr(W_y, 'shape', None)} and b_y {getattr(b_y, 'shape', None)} do not fit {D * H} states")
        h0 = self._learned_h0(layers, x, lengths_inputs, E)
        extra = set(self.inputs) - {x} - lengths_inputs - self._h0_inputs
        if extra:
            raise _Refusal(f"graph inputs {sorted(extra)}: expected only x, lengths and h0")
        dtype = "float64" if first["W"].dtype == np.float64 else "float32"
        model = cls(
            first["W"].shape[2] if E is None else E.shape[1],
            H,
            None if W_y is None else W_y.shape[1],
            nonlinearity=first["act"],
            output_activation=act,
            dtype=dtype,
            num_layers=L,
            bidirectional=D == 2,
            vocab_size=None if E is None else E.shape[0],
            learn_h0=h0 is not None,
        )
        if E is not None:
            if E.ndim != 2 or E.shape[1] != first["W"].shape[2]:
                raise _Refusal(f"embedding E {E.shape}: expected (vocab_size, {first['W'].shape[2]})")
            model.params["E"][...] = E
        for k, layer in enumerate(layers):
            interop.set_onnx_rnn_tensors(model, k, layer["W"], layer["R"], layer["B"])
        if h0 is not None:
            model.params["h0"][...] = h0
        if W_y is not None:
            model.params["W_y"][...] = W_y
            model.params["b_y"][...] = b_y
        return model

    def _learned_h0(self, layers: List[Dict[str, Any]], x: str, lengths_inputs: Set[str], E: Any) -> Optional[np.ndarray]:
        """The initial states when they come from constants (broadcast over the batch), or
        None when they are zeros or rows of a graph input (the ``h0`` of ``forward``)."""
        names = [layer["initial_h"] for layer in layers if layer["initial_h"]]
        self._h0_inputs: Set[str] = set()
        for name in names:
            self._h0_inputs |= self._input_ancestors(name) - {x} - lengths_inputs
        if len(self._h0_inputs) > 1:
            raise _Refusal(f"initial_h: computed from several graph inputs {sorted(self._h0_inputs)}, expected one h0")
        D, H = layers[0]["D"], layers[0]["H"]
        S = len(layers) * D
        x_info = next(i for i in self.graph.input if i.name == x).type.tensor_type
        x_np = self.onnx.helper.tensor_dtype_to_np_dtype(x_info.elem_type)
        values = []
        for B in (1, 3):  # two batch sizes: the states must not depend on it
            feeds = {x: np.zeros((1, B) if E is not None else (1, B, layers[0]["W"].shape[2]), x_np)}
            feeds.update({n: np.ones(B, np.int32) for n in lengths_inputs})
            given = np.arange(S * B * H, dtype=layers[0]["W"].dtype).reshape(S, B, H) + 1
            for n in self._h0_inputs:  # distinct values: each layer must read its own rows
                rank = len(next(i for i in self.graph.input if i.name == n).type.tensor_type.shape.dim)
                feeds[n] = given[0] if rank == 2 and S == 1 else given
            used = {n for name in names for n in self._ancestors(name)[0]}
            got = self._evaluate(names, {k: v for k, v in feeds.items() if k in used}) if names else []
            full = []
            for k, layer in enumerate(layers):
                node = layer["node"].name
                v = got[names.index(layer["initial_h"])] if layer["initial_h"] else np.zeros((D, B, H))
                if v.shape != (D, B, H):
                    raise _Refusal(f"node {node!r} (RNN): initial_h has shape {v.shape}, expected {(D, B, H)}")
                if self._h0_inputs:
                    if not np.array_equal(v, given[k * D : (k + 1) * D]):
                        raise _Refusal(f"node {node!r} (RNN): initial_h is not rows {k * D}:{(k + 1) * D} of h0")
                    continue
                if not np.array_equal(v, np.broadcast_to(v[:, :1], v.shape)):
                    raise _Refusal(f"node {node!r} (RNN): initial_h differs between the sequences of a batch")
                full.append(v[:, 0])
            if not self._h0_inputs:
                values.append(np.concatenate(full))
        if self._h0_inputs:
            return None
        if not np.array_equal(values[0], values[1]):
            raise _Refusal("initial_h: depends on the batch size")
        return values[0] if values[0].any() else None

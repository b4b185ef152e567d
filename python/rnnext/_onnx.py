"""ONNX graphs of an :class:`rnnext.RNN`: :func:`export` (``RNN.to_onnx``) and :func:`read`
(``rnnext.from_onnx``). Which tensor holds which parameter is :mod:`rnnext.interop`'s;
this module builds and reads the nodes around them. onnx is imported lazily.

The graph, per layer k, is one ``RNN`` node (layout 0, one activation per direction) fed by
the previous layer's states; ONNX's ``Y`` (T, D, B, H) becomes rnnext's (T, B, D*H) by a
Squeeze (D = 1) or by Transpose (0, 2, 1, 3) and Reshape (0, 0, -1). The output layer is
MatMul + Add (+ Sigmoid or Softmax). A ``batch_first`` model's graph is the same between a
Transpose of ``x`` to time-major and one of ``y`` back (onnxruntime rejects the RNN op's
layout=1); the importer reads those, and PyTorch's batch_first Transposes, as such a model.
Two things differ between ONNX's RNN and rnnext and are fixed in the graph: ONNX gives
``Y_h`` = 0 for a sequence of length 0 (rnnext: h0), and the output layer maps the zero
states past a sequence's end to f_o(b_y) (rnnext: 0).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from . import interop
from ._checks import check_int, check_path
from ._files import check_file, write_atomic
from ._version import __version__

MIN_OPSET = 14  # RNN-14, Reshape-14, Squeeze/Unsqueeze/Slice with axes as inputs
ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("this needs the onnx package: pip install 'rnnext[onnx]'") from e
    return onnx


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
    path = check_path(path)
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
    bf = model.batch_first  # x and y (B, T, ...): transposed around the time-major core
    TB = ["B", "T"] if bf else ["T", "B"]
    inputs = []
    if model.vocab_size:
        inputs.append(helper.make_tensor_value_info("x", TP.INT64, TB))
        x = g.op("Transpose", ["x"], name="x_time_major", perm=[1, 0]) if bf else "x"  # (T, B)
        feat = g.op("Gather", [g.init("E", interop.onnx_view(model, "E")), x], name="embedding", axis=0)
    else:
        inputs.append(helper.make_tensor_value_info("x", elem, TB + [model.input_size]))
        x = feat = g.op("Transpose", ["x"], name="x_time_major", perm=[1, 0, 2]) if bf else "x"
    lengths = ""
    if with_lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TP.INT32, ["B"]))
        lengths = "lengths"
    h0 = ""
    if with_h0:  # in forward()'s shape: (B, H) for one layer and direction
        inputs.append(helper.make_tensor_value_info("h0", elem, ["B", H] if S == 1 else [S, "B", H]))
        h0 = g.op("Unsqueeze", ["h0", g.const([0])]) if S == 1 else "h0"
    elif "h0" in model.params:  # the learned (S, H) broadcast to (S, B, H)
        batch = g.op("Slice", [g.op("Shape", [x]), g.const([1]), g.const([2])])
        h0 = g.op(
            "Expand",
            [g.op("Unsqueeze", [g.init("h0", interop.onnx_view(model, "h0")), g.const([1])]),
            g.op("Concat", [g.const([1]), batch, g.const([1])], axis=0)],
        )
    empty = ""
    if lengths and h0:  # (1, B, 1): sequences of length 0, whose h_n is h0
        is_empty = g.op("Equal", [lengths, g.init("zero_length", np.array(0, np.int32))])
        empty = g.op("Unsqueeze", [is_empty, g.const([0, 2])])
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
        z = g.op("MatMul", [y, g.init("W_y", interop.onnx_view(model, "W_y"))])
        y = g.op("Add", [z, g.init("b_y", interop.onnx_view(model, "b_y"))])
        if model.output_activation == "sigmoid":
            y = g.op("Sigmoid", [y])
        elif model.output_activation == "softmax":
            y = g.op("Softmax", [y], axis=-1)
        if lengths:  # zero past each sequence's end, as forward() does
            shape = g.op("Shape", [x])
            T = g.op("Gather", [shape, g.const([0], scalar=True)], axis=0)
            steps = g.op("Range", [g.const([0], scalar=True), T, g.const([1], scalar=True)])
            live = g.op(
                "Less",
                [g.op("Unsqueeze", [steps, g.const([1])]),
                 g.op("Unsqueeze", [g.op("Cast", [lengths], to=TP.INT64), g.const([0])])],
            )
            zero = g.init("zero", np.zeros((), model.dtype))
            y = g.op("Where", [g.op("Unsqueeze", [live, g.const([2])]), y, zero])
    if bf:
        y = g.op("Transpose", [y], name="y_batch_major", perm=[1, 0, 2])
    g.nodes.append(helper.make_node("Identity", [y], ["y"], name="y"))
    outputs = [
        helper.make_tensor_value_info("y", elem, TB + [model.out_features]),
        helper.make_tensor_value_info("h_n", elem, ["B", H] if S == 1 else [S, "B", H]),
    ]
    graph = helper.make_graph(g.nodes, "rnnext", inputs, outputs, g.inits)
    opsets = [helper.make_opsetid("", opset)]
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
    """A graph rnnext cannot represent; :func:`read` prefixes the file name."""


def read(cls: Any, path: Any) -> Any:
    onnx = _onnx()
    path = check_path(path)
    check_file(path)
    try:
        # With its external data (torch.onnx.export's dynamo exporter writes <path>.data).
        proto = onnx.load_model(path)
        onnx.checker.check_model(proto)
    except Exception as e:  # protobuf's DecodeError, onnx's ValidationError, ...
        raise ValueError(f"{path}: not a valid ONNX model ({type(e).__name__}: {e})") from e
    try:
        return _Reader(onnx, proto).model(cls)
    except _Refusal as e:
        raise ValueError(f"{path}: {e}") from None


def _attrs(onnx: Any, node: Any) -> Dict[str, Any]:
    """A node's attributes, strings decoded."""

    def text(v: Any) -> Any:
        return v.decode() if isinstance(v, bytes) else v

    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = [text(e) for e in v] if isinstance(v, list) else text(v)
    return out


def _where(node: Any) -> str:
    return f"node {node.name or node.output[0]!r} ({node.op_type})"


# Tensors on the data path are tagged (see _describe): ("x_ids",) and ("x",) = the graph
# input and its features (x or its embeddings) in x's layout, not yet known; time-major
# from there on: ("ids",), ("states", k) = the input of layer k, ("Y", k), ("YT", k),
# ("Y_h", k), ("h_n",), ("z0",) = s W_y, ("z",) = s W_y + b_y, ("f_o", act); ("BT", tag) =
# tag transposed to (B, T, ...), the output side of a batch_first graph. x's layout is fixed
# by the first node that reads it: a Transpose (1, 0, 2) or (1, 0) makes it batch-first, an
# RNN time-major; Shape reads no layout. Nodes off the data path compute shapes, h0 and
# masks from constants, x's shape and inputs.
# Off the data path every value is checked by evaluating it (constants, masks, h0), so the
# shape arithmetic exporters write is allowed (PyTorch's expand(-1, B, -1) uses Mul and Where).
_SIDE_OPS = {
    "Constant", "Shape", "Size", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Split",
    "ConstantOfShape", "Expand", "Tile", "Cast", "Range", "Reshape", "Transpose", "Identity",
    "Add", "Sub", "Mul", "Div", "Min", "Max", "Equal", "Less", "Greater", "Not", "And", "Or", "Where",
}
_DATA_OPS = {"RNN", "Gather", "Squeeze", "Transpose", "Reshape", "Concat", "Where", "Identity"}
_DATA_OPS |= {"MatMul", "Add", "Sigmoid", "Softmax", "Shape"}


def _describe(tag: Optional[Tuple[Any, ...]]) -> str:
    if tag is None:
        return "nothing from the data"
    if tag[0] == "BT":
        return f"{_describe(tag[1])} transposed to (B, T, ...)"
    kind, k = tag[0], tag[1] if len(tag) > 1 else 0
    return {
        "x": "the model input x (or its embeddings) in x's layout",
        "x_ids": "the token ids x",
        "ids": "the token ids",
        "states": "the model input" if k == 0 else f"the states of layer {k - 1}",
        "Y": f"the Y of layer {k}",
        "YT": f"the transposed Y of layer {k}",
        "Y_h": f"the Y_h of layer {k}",
        "h_n": "h_n",
        "z0": "the states times W_y",
        "z": "the output layer's logits",
        "f_o": f"the output layer's {k}",
    }[kind]


class _Reader:
    """One walk over the nodes in order, tagging the tensors on the data path (see
    :func:`_describe`); the parameters are read from constants on the way."""

    def __init__(self, onnx: Any, proto: Any) -> None:
        self.onnx, self.proto, self.graph = onnx, proto, proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.consts: Dict[str, np.ndarray] = {t.name: onnx.numpy_helper.to_array(t) for t in self.graph.initializer}
        self.producer: Dict[str, Any] = {o: n for n in self.graph.node for o in n.output}
        self.inputs = {i.name: i.type.tensor_type for i in self.graph.input if i.name not in self.consts}
        self.x = ""  # the data input: the first graph input
        self.batch_first: Optional[bool] = None  # x's layout, once a node has read it
        self.data: Dict[str, Tuple[Any, ...]] = {}
        self.layers: List[Dict[str, Any]] = []
        self.lengths: Set[str] = set()  # graph inputs feeding sequence_lens
        self.h0_inputs: Set[str] = set()  # graph inputs feeding initial_h
        self.E: Optional[np.ndarray] = None
        self.W_y: Optional[np.ndarray] = None
        self.b_y: Optional[np.ndarray] = None
        self.f_o: Optional[str] = None
        self.h_n_layers = 1

    # ---- constants and evaluation
    def const(self, name: str, what: str, node: Any) -> np.ndarray:
        """A tensor computed from constants alone (an initializer, a Constant, or a
        subgraph of them)."""
        if name not in self.consts:
            if self._ancestors(name)[0] & set(self.inputs):
                raise _Refusal(f"{_where(node)}: {what} ({name!r}) is not a constant")
            self.consts[name] = self._evaluate([name], {})[0]
        return self.consts[name]

    def _ancestors(self, name: str) -> Tuple[Set[str], List[Any]]:
        """The tensors and the nodes ``name`` is computed from."""
        names: Set[str] = set()
        nodes: List[Any] = []
        stack = [name]
        while stack:
            t = stack.pop()
            if t in names or not t:
                continue
            names.add(t)
            n = self.producer.get(t)
            if n is not None and all(m is not n for m in nodes):
                nodes.append(n)
                stack.extend(n.input)
        return names, nodes

    def _evaluate(self, names: List[str], feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        """Run the subgraph computing ``names`` with onnx's reference evaluator; ``feeds``
        may hold more inputs than it needs."""
        from onnx.reference import ReferenceEvaluator

        helper = self.onnx.helper
        wanted: Set[int] = set()
        used: Set[str] = set()
        for name in names:
            tensors, nodes = self._ancestors(name)
            used |= tensors
            wanted.update(id(n) for n in nodes)
        feeds = {k: v for k, v in feeds.items() if k in used}
        g = helper.make_graph(
            [n for n in self.graph.node if id(n) in wanted],
            "sub",
            [i for i in self.graph.input if i.name in feeds],
            [helper.make_empty_tensor_value_info(n) for n in names],
            list(self.graph.initializer),
        )
        sub = helper.make_model(g, opset_imports=self.proto.opset_import, ir_version=self.proto.ir_version)
        return [np.asarray(v) for v in ReferenceEvaluator(sub).run(names, feeds)]

    def _dummy_feeds(self, T: int, B: int, lengths: np.ndarray) -> Dict[str, np.ndarray]:
        """Zero data of shape (T, B, ...) ((B, T, ...) for a batch-first x) and the given
        lengths, to evaluate masks and h0."""
        x_np = self.onnx.helper.tensor_dtype_to_np_dtype(self.inputs[self.x].elem_type)
        shape: Tuple[int, ...] = (B, T) if self.batch_first else (T, B)
        shape += () if self.E is not None else (self.layers[0]["W"].shape[2],)
        return {self.x: np.zeros(shape, x_np), **{n: lengths for n in self.lengths}}

    def axes(self, node: Any, attrs: Dict[str, Any]) -> List[int]:
        """Squeeze's axes: an attribute before opset 13, an input from then on."""
        if "axes" in attrs:
            return list(attrs["axes"])
        if len(node.input) > 1 and node.input[1]:
            return [int(a) for a in self.const(node.input[1], "axes", node).reshape(-1)]
        return []

    # ---- the walk
    def model(self, cls: Any) -> Any:
        TP = self.onnx.TensorProto
        if not self.inputs:
            raise _Refusal("the graph has no inputs")
        self.x = next(iter(self.inputs))
        elem = self.inputs[self.x].elem_type
        if elem in (TP.INT64, TP.INT32):
            self.data[self.x] = ("x_ids",)
        elif elem in (TP.FLOAT, TP.DOUBLE):
            self.data[self.x] = ("x",)
        else:
            raise _Refusal(f"graph input {self.x!r}: expected float, double or integer data, got element type {elem}")
        try:
            for node in self.graph.node:
                out = self._node(node)
                for i, o in enumerate(node.output):
                    if o and out is not None:
                        self.data[o] = out if i == 0 else ("Y_h", out[1])  # only RNN has two outputs
        except _Refusal as e:
            if any(n.op_type == "RNN" for n in self.graph.node):
                raise
            raise _Refusal(
                f"{e}; the graph has no RNN node at all (torch.onnx.export's dynamo exporter, its default "
                "in recent PyTorch, unrolls nn.RNN into MatMul and Tanh: export with dynamo=False)"
            ) from None
        if not self.layers:
            raise _Refusal("the graph has no RNN node")
        return self._build(cls)

    def _node(self, node: Any) -> Optional[Tuple[Any, ...]]:
        """The tag of the node's (first) output, None off the data path."""
        op, ins, attrs = node.op_type, list(node.input), _attrs(self.onnx, node)
        tags = [self.data.get(i) if i else None for i in ins]
        where = _where(node)
        dtags = [t for t in tags if t is not None]
        if op not in _SIDE_OPS | _DATA_OPS or node.domain not in ("", "ai.onnx"):
            raise _Refusal(
                f"{where}: operator {node.domain + '.' if node.domain else ''}{op} is not supported: rnnext "
                "reads RNN nodes, MatMul + Add (+ Sigmoid or Softmax) and shape operators"
            )
        if not dtags:
            if op not in _SIDE_OPS:
                raise _Refusal(f"{where}: computes from constants alone, which rnnext does not expect of {op}")
            return None
        if op == "Shape":
            return None  # x's shape: a side value
        if any(t[0] == "BT" for t in dtags):
            return self._batch_major(node, op, ins, attrs, tags)
        return self._time_major(node, op, ins, attrs, tags)

    def _time_major(
        self, node: Any, op: str, ins: List[str], attrs: Dict[str, Any], tags: List[Any], batch_major: bool = False
    ) -> Tuple[Any, ...]:
        """The tag of a data node's output, tags as in (T, B, ...); ``batch_major``: they are
        really (B, T, ...) (see :meth:`_batch_major`)."""
        where, dtags = _where(node), [t for t in tags if t is not None]
        t0, layers = dtags[0], self.layers
        if op == "Gather" and tags[0] is None and tags[1:] in ([("ids",)], [("x_ids",)]):
            if attrs.get("axis", 0) != 0 or self.E is not None:
                raise _Refusal(f"{where}: attribute axis={attrs.get('axis')}: expected one lookup on axis 0")
            self.E = self.const(ins[0], "the embedding E", node)
            return ("states", 0) if tags[1] == ("ids",) else ("x",)
        if op == "RNN":
            return self._rnn(node, attrs, tags)
        if op == "Transpose" and t0 in (("x",), ("x_ids",)):
            perm, want = list(attrs.get("perm", [])), [1, 0, 2] if t0 == ("x",) else [1, 0]
            if perm != want:
                raise _Refusal(f"{where}: attribute perm={perm} on {_describe(t0)}: expected {want} (B, T to T, B)")
            self._layout(node, True)
            return ("states", 0) if t0 == ("x",) else ("ids",)
        if op == "Transpose" and list(attrs.get("perm", [])) == [1, 0, 2] and (
            t0[0] in ("z0", "z", "f_o") or (t0[0] == "states" and t0[1] > 0)
        ):
            if not self.batch_first:
                raise _Refusal(f"{where}: transposes {_describe(t0)} to (B, T, ...), but x is read time-major")
            return ("BT", t0)
        if op == "Squeeze" and t0[0] == "Y" and self.axes(node, attrs) == [1] and layers[t0[1]]["D"] == 1:
            return ("states", t0[1] + 1)
        if op == "Transpose" and t0[0] == "Y" and list(attrs.get("perm", [])) == [0, 2, 1, 3]:
            return ("YT", t0[1])
        if op == "Reshape" and t0[0] == "YT" and tags[1] is None:
            shape = self.const(ins[1], "shape", node).tolist()
            DH = layers[t0[1]]["D"] * layers[t0[1]]["H"]
            if len(shape) != 3 or shape[:2] != [0, 0] or shape[2] not in (-1, DH) or attrs.get("allowzero", 0):
                raise _Refusal(f"{where}: shape {shape}: expected [0, 0, -1] (concatenating the directions)")
            return ("states", t0[1] + 1)
        if op in ("Squeeze", "Concat") and t0[0] in ("Y_h", "h_n"):
            return self._h_n(node, op, attrs, tags)
        if op == "Where" and tags[0] is None and len(dtags) == 1 and t0[0] not in ("x", "x_ids"):
            self._mask(node, tags, batch_major)
            return t0
        if op == "Identity":
            return t0
        if op == "MatMul" and tags[1] is None and t0 == ("states", len(layers)) and self.W_y is None:
            self.W_y = self.const(ins[1], "the output weight W_y", node)
            return ("z0",)
        if op == "Add" and t0 == ("z0",) and len(dtags) == 1:
            self.b_y = self.const(ins[1] if tags[0] is not None else ins[0], "the output bias b_y", node)
            return ("z",)
        if op in ("Sigmoid", "Softmax") and t0 in (("z0",), ("z",)):
            if op == "Softmax":
                axis = attrs.get("axis", -1 if self.opset >= 13 else 1)
                if axis not in (-1, 2):
                    raise _Refusal(f"{where}: attribute axis={axis}: expected the last axis (-1 or 2)")
            self.f_o = op.lower()
            return ("f_o", self.f_o)
        got = ", ".join(f"{i!r} ({_describe(t)})" for i, t in zip(ins, tags) if t is not None)
        raise _Refusal(f"{where}: not part of an rnnext model here (reads {got}; attributes {attrs})")

    def _batch_major(
        self, node: Any, op: str, ins: List[str], attrs: Dict[str, Any], tags: List[Any]
    ) -> Tuple[Any, ...]:
        """The output side of a batch-first graph, after y's Transpose: the output layer and
        the mask, read as in (T, B, ...) with the result tagged ("BT", ...)."""
        if op not in ("MatMul", "Add", "Sigmoid", "Softmax", "Where", "Identity") or any(
            t is not None and t[0] != "BT" for t in tags
        ):
            got = ", ".join(f"{i!r} ({_describe(t)})" for i, t in zip(ins, tags) if t is not None)
            raise _Refusal(
                f"{_where(node)}: not part of an rnnext model here (reads {got}; after the Transpose to "
                "(B, T, ...) only the output layer and its mask)"
            )
        inner = [None if t is None else t[1] for t in tags]
        return ("BT", self._time_major(node, op, ins, attrs, inner, batch_major=True))

    def _layout(self, node: Any, batch_first: bool) -> None:
        """Fix x's layout, refusing a graph that reads it both ways."""
        if self.batch_first is not None and self.batch_first != batch_first:
            raise _Refusal(
                f"{_where(node)}: reads x as {'(B, T, ...)' if batch_first else '(T, B, ...)'}, another node "
                f"as {'(T, B, ...)' if batch_first else '(B, T, ...)'}"
            )
        self.batch_first = batch_first

    def _rnn(self, node: Any, attrs: Dict[str, Any], tags: List[Any]) -> Tuple[Any, ...]:
        where, k = _where(node), len(self.layers)
        if k == 0 and tags[0] == ("x",):  # x itself: time-major
            self._layout(node, False)
        elif tags[0] != ("states", k):
            raise _Refusal(f"{where}: input X is {_describe(tags[0])}, expected {_describe(('states', k))}")
        if any(t is not None for t in tags[1:]):
            raise _Refusal(f"{where}: W, R, B, sequence_lens and initial_h must not depend on the data")
        for name in ("clip", "activation_alpha", "activation_beta"):
            if name in attrs:
                raise _Refusal(f"{where}: attribute {name}={attrs[name]} is not supported (rnnext has no {name})")
        if attrs.get("layout", 0) != 0:
            raise _Refusal(f"{where}: attribute layout={attrs['layout']} is not supported (only 0, time-major)")
        direction = attrs.get("direction", "forward")
        if direction not in ("forward", "bidirectional"):
            raise _Refusal(f"{where}: attribute direction={direction!r} is not supported (forward or bidirectional)")
        D = 2 if direction == "bidirectional" else 1
        acts = attrs.get("activations", ["Tanh"] * D)
        by_onnx = {v: k for k, v in ACTIVATIONS.items()}
        if len(acts) != D or len(set(acts)) != 1 or acts[0] not in by_onnx:
            raise _Refusal(
                f"{where}: attribute activations={acts} is not supported (one of Tanh, Relu, Sigmoid, "
                "the same for every direction)"
            )
        ins = list(node.input) + [""] * (6 - len(node.input))
        W = self.const(ins[1], "W", node)
        R = self.const(ins[2], "R", node)
        H = int(attrs["hidden_size"]) if "hidden_size" in attrs else R.shape[-1]
        B = self.const(ins[3], "B", node) if ins[3] else np.zeros((D, 2 * H), W.dtype)
        if W.ndim != 3 or W.shape[:2] != (D, H) or R.shape != (D, H, H) or B.shape != (D, 2 * H):
            raise _Refusal(f"{where}: W {W.shape}, R {R.shape}, B {B.shape} do not fit hidden_size={H}, D={D}")
        if k:
            first = self.layers[0]
            if (H, D, W.shape[2]) != (first["H"], first["D"], D * H) or by_onnx[acts[0]] != first["act"]:
                raise _Refusal(f"{where}: hidden_size, direction, activations or input size differ from layer 0's")
        if ins[4]:
            src = self.producer.get(ins[4])
            name = src.input[0] if src is not None and src.op_type == "Cast" else ins[4]
            if name not in self.inputs:
                raise _Refusal(f"{where}: sequence_lens must be a graph input (lengths), got {ins[4]!r}")
            self.lengths.add(name)
        self.layers.append(dict(node=node, W=W, R=R, B=B, H=H, D=D, act=by_onnx[acts[0]], initial_h=ins[5]))
        return ("Y", k)

    def _h_n(self, node: Any, op: str, attrs: Dict[str, Any], tags: List[Any]) -> Tuple[Any, ...]:
        where = _where(node)
        if op == "Squeeze":
            if self.axes(node, attrs) != [0]:
                raise _Refusal(f"{where}: squeezes axes {self.axes(node, attrs)} of h_n, expected [0]")
        elif attrs.get("axis") != 0 or tags != [("Y_h", k) for k in range(len(tags))]:
            got = ", ".join(_describe(t) for t in tags)
            raise _Refusal(f"{where}: expected the layers' Y_h concatenated in order on axis 0, got {got}")
        else:
            self.h_n_layers = len(tags)
        return ("h_n",)

    def _mask(self, node: Any, tags: List[Any], batch_major: bool) -> None:
        """Check that a Where on the data path keeps the data exactly where rnnext does: the
        states or outputs at steps t < length (on (B, T, ...) data with ``batch_major``),
        h_n of non-empty sequences; elsewhere zeros, or for h_n the layer's initial state."""
        where, ins = _where(node), list(node.input)
        tag = tags[1] or tags[2]
        data_first = tags[1] is not None
        other = ins[2] if data_first else ins[1]
        if not self.lengths:
            raise _Refusal(f"{where}: a Where on {_describe(tag)} without a sequence_lens input")
        if tag[0] == "Y_h":
            if other != self.layers[tag[1]]["initial_h"]:
                raise _Refusal(f"{where}: expected Where(length == 0, initial_h, Y_h) for layer {tag[1]}")
        else:
            value = self.const(other, "the value past a sequence's end", node)
            if value.size != 1 or value.reshape(-1)[0] != 0:
                raise _Refusal(f"{where}: expected zeros past a sequence's end, got {value.reshape(-1)[:4]}")
        T, lens = 4, np.array([4, 1, 0], np.int32)  # T != B: a mask on the wrong axes shows
        cond = self._evaluate([ins[0]], self._dummy_feeds(T, 3, lens))[0].astype(bool)
        keep = cond if data_first else ~cond
        if tag[0] == "Y_h":  # (directions, B, H)
            want = (lens > 0)[None, :, None]
        else:  # (T, B, features) or (B, T, features)
            want = (np.arange(T)[:, None] < lens[None, :])[:, :, None]
            want = want.swapaxes(0, 1) if batch_major else want
        try:
            full = np.broadcast_shapes(keep.shape, want.shape)
        except ValueError:
            full = ()
        if full[:-1] != want.shape[:-1] or not (np.broadcast_to(keep, full) == np.broadcast_to(want, full)).all():
            raise _Refusal(f"{where}: its condition does not select the steps within each sequence's length")

    # ---- the model
    def _build(self, cls: Any) -> Any:
        L, first, W_y, b_y, E = len(self.layers), self.layers[0], self.W_y, self.b_y, self.E
        D, H = first["D"], first["H"]
        outs = [o.name for o in self.graph.output]
        if W_y is not None and b_y is None:  # nn.Linear(bias=False)
            b_y = np.zeros(W_y.shape[1:], W_y.dtype)
            linear: Tuple[Any, ...] = ("z0",)
        else:
            linear = ("z",)
        want_y = ("f_o", self.f_o) if self.f_o else linear if W_y is not None else ("states", L)
        want_y = ("BT", want_y) if self.batch_first else want_y
        if not outs or self.data.get(outs[0]) != want_y:
            got = _describe(self.data.get(outs[0])) if outs else "no output"
            raise _Refusal(f"graph output {outs[0] if outs else None!r}: expected {_describe(want_y)} (y), got {got}")
        for o in outs[1:2]:
            tag = self.data.get(o)
            if not ((tag == ("h_n",) and self.h_n_layers == L) or (L == 1 and tag == ("Y_h", 0))):
                raise _Refusal(f"graph output {o!r}: expected h_n (every layer's Y_h), got {_describe(tag)}")
        if len(outs) > 2:
            raise _Refusal(f"graph outputs {outs[2:]}: expected only y and h_n")
        if W_y is not None and (W_y.ndim != 2 or W_y.shape[0] != D * H or b_y is None or b_y.shape != W_y.shape[1:]):
            got = f"W_y {W_y.shape}, b_y {getattr(b_y, 'shape', None)}"
            raise _Refusal(f"output layer: {got} do not fit {D * H} states")
        if E is not None and (E.ndim != 2 or E.shape[1] != first["W"].shape[2]):
            raise _Refusal(f"embedding E {E.shape}: expected (vocab_size, {first['W'].shape[2]})")
        h0 = self._initial_state()
        extra = set(self.inputs) - {self.x} - self.lengths - self.h0_inputs
        if extra:
            raise _Refusal(f"graph inputs {sorted(extra)}: expected only x, lengths and h0")
        model = cls(
            first["W"].shape[2] if E is None else E.shape[1],
            H,
            None if W_y is None else W_y.shape[1],
            nonlinearity=first["act"],
            output_activation=self.f_o,
            dtype="float64" if first["W"].dtype == np.float64 else "float32",
            num_layers=L,
            bidirectional=D == 2,
            vocab_size=None if E is None else E.shape[0],
            learn_h0=h0 is not None,
            batch_first=bool(self.batch_first),
        )
        for name, value in (("E", E), ("h0", h0), ("W_y", W_y), ("b_y", b_y)):
            if value is not None:
                interop.onnx_view(model, name)[...] = value
        for k, layer in enumerate(self.layers):
            interop.set_onnx_rnn_tensors(model, k, layer["W"], layer["R"], layer["B"])
        return model

    def _initial_state(self) -> Optional[np.ndarray]:
        """The learned h0 (S, H) when the initial states come from constants broadcast over
        the batch; None when they are zeros or the rows of a graph input (forward's h0)."""
        names = [layer["initial_h"] for layer in self.layers if layer["initial_h"]]
        for name in names:
            self.h0_inputs |= self._ancestors(name)[0] & set(self.inputs) - {self.x} - self.lengths
        if len(self.h0_inputs) > 1:
            raise _Refusal(f"initial_h: computed from graph inputs {sorted(self.h0_inputs)}, expected one h0")
        D, H = self.layers[0]["D"], self.layers[0]["H"]
        S = len(self.layers) * D
        values = []
        for B in (1, 3):  # two batch sizes: the states must not depend on it
            feeds = self._dummy_feeds(1, B, np.ones(B, np.int32))
            given = np.arange(1, S * B * H + 1, dtype=self.layers[0]["W"].dtype).reshape(S, B, H)
            for n in self.h0_inputs:  # distinct values: each layer must read its own rows
                feeds[n] = given[0] if len(self.inputs[n].shape.dim) == 2 else given
            got = dict(zip(names, self._evaluate(names, feeds))) if names else {}
            rows = []
            for k, layer in enumerate(self.layers):
                v = got.get(layer["initial_h"], np.zeros((D, B, H)))
                where = _where(layer["node"])
                if v.shape != (D, B, H):
                    raise _Refusal(f"{where}: initial_h has shape {v.shape}, expected {(D, B, H)}")
                if self.h0_inputs and not np.array_equal(v, given[k * D : (k + 1) * D]):
                    raise _Refusal(f"{where}: initial_h is not rows {k * D}:{(k + 1) * D} of the h0 input")
                if not np.array_equal(v, np.broadcast_to(v[:, :1], v.shape)) and not self.h0_inputs:
                    raise _Refusal(f"{where}: initial_h differs between the sequences of a batch")
                rows.append(v[:, 0])
            values.append(np.concatenate(rows))
        if self.h0_inputs:
            return None
        if not np.array_equal(values[0], values[1]):
            raise _Refusal("initial_h: depends on the batch size")
        # Zeros are no learned h0 (PyTorch's default state), except in rnnext's own graph,
        # whose learned h0 is the initializer "h0" (zeros when freshly initialised).
        own = self.proto.producer_name == "rnnext" and any(t.name == "h0" for t in self.graph.initializer)
        return values[0] if values[0].any() or own else None

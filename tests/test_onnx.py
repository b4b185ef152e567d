"""ONNX export and import. The reference is onnxruntime running the exported file (its own
RNN kernel, not rnnext's) and PyTorch for graphs written by torch.onnx.export."""

import os
import warnings

import numpy as np
import pytest

import rnnext

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

# (RNN kwargs, with_lengths, with_h0), as in issue 13's Tests.
CASES = {
    "tanh-linear": (dict(input_size=3, hidden_size=5, output_size=2), False, False),
    "relu-softmax": (
        dict(input_size=3, hidden_size=5, output_size=4, nonlinearity="relu", output_activation="softmax"),
        False,
        False,
    ),
    "2bi-no-output": (dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True), False, False),
    "ids-sigmoid-sigmoid": (
        dict(
            input_size=3,
            hidden_size=5,
            output_size=2,
            vocab_size=11,
            nonlinearity="sigmoid",
            output_activation="sigmoid",
        ),
        False,
        False,
    ),
    "2bi-lengths-h0": (
        dict(
            input_size=3, hidden_size=5, num_layers=2, bidirectional=True, output_size=3, output_activation="softmax"
        ),
        True,
        True,
    ),
    "learned-h0": (dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, learn_h0=True), True, False),
    "1layer-lengths-h0": (dict(input_size=3, hidden_size=5), True, True),
}


def make_model(kwargs, seed=0):
    model = rnnext.RNN(**kwargs, seed=seed).eval()
    if "h0" in model.params:  # zeros after init: make the learned state visible
        model.params["h0"][...] = np.random.default_rng(seed).standard_normal(model.params["h0"].shape)
    return model


def inputs(model, T, B, with_lengths, with_h0, rng):
    """forward()'s keyword arguments and the matching onnxruntime feeds."""
    if model.vocab_size:
        x = rng.integers(0, model.vocab_size, (T, B))
    else:
        x = rng.standard_normal((T, B, model.input_size)).astype(np.float32)
    kwargs, feeds = {}, {"x": x}
    if with_lengths:  # full, short, empty and one-step sequences: the reverse direction starts at each end
        lengths = np.minimum([T, 2, 0, 1, T - 1], T)[:B].astype(np.int32)
        kwargs["lengths"] = feeds["lengths"] = lengths
    if with_h0:
        h0 = rng.standard_normal((model.num_states, B, model.hidden_size)).astype(np.float32)
        kwargs["h0"] = feeds["h0"] = h0[0] if model.num_states == 1 else h0
    return x, kwargs, feeds


def check_against_onnxruntime(model, session, back, make_inputs, with_lengths, with_h0):
    """onnxruntime's outputs equal the model's to 1e-5, and the imported model's exactly, at
    several dynamic (T, B); returns the model's and onnxruntime's y at the last, (9, 3)."""
    rng = np.random.default_rng(1)
    for T, B in ((6, 5), (1, 5), (9, 3)):
        x, fw, feeds = make_inputs(model, T, B, with_lengths, with_h0, rng)
        y, h_n = model(x, **fw)
        oy, oh = session.run(["y", "h_n"], feeds)
        assert oy.shape == y.shape and oh.shape == h_n.shape
        np.testing.assert_allclose(oy, y, rtol=0, atol=1e-5)
        np.testing.assert_allclose(oh, h_n, rtol=0, atol=1e-5)
        y2, h2 = back(x, **fw)
        np.testing.assert_array_equal(y2, y)
        np.testing.assert_array_equal(h2, h_n)
    return y, oy


@pytest.mark.parametrize("case", list(CASES))
def test_onnxruntime_matches_forward_and_import_round_trips(case, tmp_path):
    kwargs, with_lengths, with_h0 = CASES[case]
    model = make_model(kwargs)
    path = tmp_path / "model.onnx"
    model.to_onnx(path, with_lengths=with_lengths, with_h0=with_h0)
    assert os.listdir(tmp_path) == ["model.onnx"]  # no temporary file left behind
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    back = rnnext.from_onnx(path).eval()
    assert back.config == model.config
    y, _ = check_against_onnxruntime(model, session, back, inputs, with_lengths, with_h0)
    if with_lengths:  # the check above saw zeros past the ends and h0 for an empty sequence
        assert np.all(y[2:, 1] == 0) and np.all(y[:, 2] == 0)


def test_graph_is_one_rnn_node_per_layer(tmp_path):
    model = make_model(dict(input_size=3, hidden_size=4, num_layers=3, bidirectional=True, output_size=2))
    model.to_onnx(tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    rnns = [n for n in proto.graph.node if n.op_type == "RNN"]
    assert len(rnns) == 3
    for n in rnns:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["direction"] == b"bidirectional" and attrs["activations"] == [b"Tanh", b"Tanh"]
        assert "layout" not in attrs and "activation_alpha" not in attrs and "clip" not in attrs
    assert [i.name for i in proto.graph.input] == ["x"]
    assert [o.name for o in proto.graph.output] == ["y", "h_n"]
    assert proto.opset_import[0].version == 14


def test_float64_model_exports_as_double_and_round_trips(tmp_path):
    model = make_model(dict(input_size=3, hidden_size=4, output_size=2, dtype="float64"))
    model.to_onnx(tmp_path / "m.onnx", opset=17)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    back = rnnext.from_onnx(tmp_path / "m.onnx")
    assert back.dtype == np.float64
    np.testing.assert_array_equal(back.flat_params, model.flat_params)


# ------------------------------------------------------------------ torch.onnx graphs

class TorchNet(torch.nn.Module):
    def __init__(self, rnn, linear=None):
        super().__init__()
        self.rnn, self.linear = rnn, linear

    def forward(self, x, h0=None):
        y, h_n = self.rnn(x, h0)
        return (y if self.linear is None else self.linear(y)), h_n


def torch_export(net, path, with_h0):
    x = torch.randn(4, 2, net.rnn.input_size)
    args = (x,)
    names = ["x"]
    axes = {"x": {0: "T", 1: "B"}, "y": {0: "T", 1: "B"}, "h_n": {1: "B"}}
    if with_h0:
        D = 2 if net.rnn.bidirectional else 1
        args += (torch.randn(net.rnn.num_layers * D, 2, net.rnn.hidden_size),)
        names.append("h0")
        axes["h0"] = {1: "B"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, args, str(path), dynamo=False, input_names=names, output_names=["y", "h_n"], dynamic_axes=axes
        )


@pytest.mark.parametrize(
    "layers, bidirectional, nonlinearity, linear, with_h0, bias",
    [
        (2, True, "tanh", True, False, True),  # issue 13's case
        (2, False, "relu", False, True, True),
        (1, True, "tanh", True, True, True),
        (1, False, "tanh", True, False, False),
    ],
)
def test_torch_onnx_export_imports_with_pytorchs_outputs(
    tmp_path, layers, bidirectional, nonlinearity, linear, with_h0, bias
):
    torch.manual_seed(0)
    rnn = torch.nn.RNN(3, 5, num_layers=layers, bidirectional=bidirectional, nonlinearity=nonlinearity, bias=bias)
    D = 2 if bidirectional else 1
    net = TorchNet(rnn, torch.nn.Linear(D * 5, 4, bias=bias) if linear else None).eval()
    torch_export(net, tmp_path / "t.onnx", with_h0)
    model = rnnext.from_onnx(tmp_path / "t.onnx")
    assert (model.num_layers, model.bidirectional, model.nonlinearity) == (layers, bidirectional, nonlinearity)
    assert model.output_size == (4 if linear else None) and not model.config["learn_h0"]
    x = torch.randn(7, 3, 3)
    h0 = torch.randn(layers * D, 3, 5)
    with torch.no_grad():
        ty, th = net(x, h0 if with_h0 else None)
    fw = {"h0": h0.numpy()[0] if layers * D == 1 else h0.numpy()} if with_h0 else {}
    y, h_n = model(x.numpy(), **fw)
    np.testing.assert_allclose(y, ty.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(h_n, th.numpy().reshape(h_n.shape), rtol=0, atol=1e-5)


class TorchTagger(torch.nn.Module):
    """Embedding, a learned initial state expanded over the batch, RNN, Linear, sigmoid."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(10, 3)
        self.rnn = torch.nn.RNN(3, 4, num_layers=2, bidirectional=True)
        self.linear = torch.nn.Linear(8, 2)
        self.h0 = torch.nn.Parameter(torch.randn(4, 4))

    def forward(self, ids):
        h0 = self.h0.unsqueeze(1).expand(-1, ids.shape[1], -1).contiguous()
        y, h_n = self.rnn(self.embedding(ids), h0)
        return torch.sigmoid(self.linear(y)), h_n


def test_torch_graph_with_embedding_and_learned_h0_imports(tmp_path):
    torch.manual_seed(0)
    net = TorchTagger().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (torch.randint(0, 10, (5, 2)),), str(tmp_path / "t.onnx"), dynamo=False,
            input_names=["x"], output_names=["y", "h_n"], dynamic_axes={"x": {0: "T", 1: "B"}},
        )
    model = rnnext.from_onnx(tmp_path / "t.onnx")
    assert model.vocab_size == 10 and model.config["learn_h0"] and model.output_activation == "sigmoid"
    np.testing.assert_array_equal(model.params["h0"], net.h0.detach().numpy())
    ids = torch.randint(0, 10, (7, 3))
    with torch.no_grad():
        ty, th = net(ids)
    y, h_n = model(ids.numpy())
    np.testing.assert_allclose(y, ty.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(h_n, th.numpy(), rtol=0, atol=1e-5)


# ------------------------------------------------------------------------ refusals
def test_lstm_graph_is_refused_naming_the_node(tmp_path):
    net = torch.nn.LSTM(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(2, 1, 3),), str(tmp_path / "lstm.onnx"), dynamo=False)
    lstm = [n.name for n in onnx.load(str(tmp_path / "lstm.onnx")).graph.node if n.op_type == "LSTM"]
    with pytest.raises(ValueError, match=rf"node '{lstm[0]}' \(LSTM\): operator LSTM is not supported"):
        rnnext.from_onnx(tmp_path / "lstm.onnx")


def exported_with(tmp_path, **attrs):
    """rnnext's own graph with attributes set on its RNN node."""
    make_model(dict(input_size=3, hidden_size=4, bidirectional=True)).to_onnx(tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    node = next(n for n in proto.graph.node if n.op_type == "RNN")
    for name, value in attrs.items():
        for a in list(node.attribute):
            if a.name == name:
                node.attribute.remove(a)
        node.attribute.append(onnx.helper.make_attribute(name, value))
    onnx.save(proto, str(tmp_path / "edited.onnx"))
    return tmp_path / "edited.onnx"


@pytest.mark.parametrize(
    "attrs, message",
    [
        (dict(clip=5.0), r"node 'rnn_l0' \(RNN\): attribute clip=5.0 is not supported"),
        (dict(layout=1), r"node 'rnn_l0' \(RNN\): attribute layout=1 is not supported"),
        (dict(activations=["Tanh", "Relu"]), r"node 'rnn_l0' \(RNN\): attribute activations=\['Tanh', 'Relu'\]"),
        (dict(activations=["HardSigmoid"] * 2), r"node 'rnn_l0' \(RNN\): attribute activations="),
        (dict(activation_alpha=[1.0, 1.0]), r"node 'rnn_l0' \(RNN\): attribute activation_alpha="),
    ],
)
def test_rnn_attributes_rnnext_lacks_are_refused(tmp_path, attrs, message):
    with pytest.raises(ValueError, match=message):
        rnnext.from_onnx(exported_with(tmp_path, **attrs))


def test_reverse_only_rnn_is_refused(tmp_path):
    make_model(dict(input_size=3, hidden_size=4)).to_onnx(tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    node = next(n for n in proto.graph.node if n.op_type == "RNN")
    next(a for a in node.attribute if a.name == "direction").s = b"reverse"
    onnx.save(proto, str(tmp_path / "r.onnx"))
    with pytest.raises(ValueError, match=r"node 'rnn_l0' \(RNN\): attribute direction='reverse'"):
        rnnext.from_onnx(tmp_path / "r.onnx")


def test_a_mask_that_keeps_the_wrong_steps_is_refused(tmp_path):
    model = make_model(dict(input_size=3, hidden_size=4, output_size=2, output_activation="sigmoid"))
    model.to_onnx(tmp_path / "m.onnx", with_lengths=True)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    mask = [n for n in proto.graph.node if n.op_type == "Where"][-1]  # zeros past each end
    mask.input[1], mask.input[2] = mask.input[2], mask.input[1]
    onnx.save(proto, str(tmp_path / "swapped.onnx"))
    with pytest.raises(ValueError, match=rf"node '{mask.name}' \(Where\): its condition does not select"):
        rnnext.from_onnx(tmp_path / "swapped.onnx")


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    model = make_model(dict(input_size=3, hidden_size=4))
    model.save(tmp_path / "model.npz")
    (tmp_path / "text.onnx").write_text("not a model\n")
    for name in ("model.npz", "text.onnx"):
        with pytest.raises(ValueError, match=rf"{name}: not a valid ONNX model"):
            rnnext.from_onnx(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no such file"):
        rnnext.from_onnx(tmp_path / "missing.onnx")


def test_export_arguments_are_checked(tmp_path):
    model = make_model(dict(input_size=3, hidden_size=4))
    with pytest.raises(ValueError, match=r"opset: expected an int in \[14, \d+\].*got 13"):
        model.to_onnx(tmp_path / "m.onnx", opset=13)
    with pytest.raises(TypeError, match="with_lengths: expected a bool, got 1"):
        model.to_onnx(tmp_path / "m.onnx", with_lengths=1)
    with pytest.raises(TypeError, match="path: expected a str or os.PathLike, got int"):
        model.to_onnx(3)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ batch_first
# (B, T, ...) x and y around the time-major graph: Transposes, as torch.onnx writes them.
BF_CASES = {
    "tanh-linear": CASES["tanh-linear"],
    "2bi-lengths-h0": CASES["2bi-lengths-h0"],
    "ids-lengths": (dict(CASES["ids-sigmoid-sigmoid"][0]), True, False),
    "learned-h0": CASES["learned-h0"],  # h0 broadcast over B, which is x's axis 0 here
}


def batch_first_inputs(model, T, B, with_lengths, with_h0, rng):
    """As inputs(), with x (B, T, ...) and ids (B, T)."""
    x, kwargs, feeds = inputs(model, T, B, with_lengths, with_h0, rng)
    feeds["x"] = x = np.ascontiguousarray(x.swapaxes(0, 1))
    return x, kwargs, feeds


@pytest.mark.parametrize("case", list(BF_CASES))
def test_batch_first_model_exports_batch_first_graph(case, tmp_path):
    kwargs, with_lengths, with_h0 = BF_CASES[case]
    model = make_model({**kwargs, "batch_first": True})
    path = tmp_path / "bf.onnx"
    model.to_onnx(path, with_lengths=with_lengths, with_h0=with_h0)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in proto.graph.input[:1]]
    dims += [[d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]]
    assert dims[0][:2] == ["B", "T"] and dims[1] == ["B", "T", model.out_features]
    assert all("layout" not in {a.name for a in n.attribute} for n in proto.graph.node if n.op_type == "RNN")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    back = rnnext.from_onnx(path).eval()
    assert back.config == model.config and back.batch_first
    y, oy = check_against_onnxruntime(model, session, back, batch_first_inputs, with_lengths, with_h0)
    assert y.shape[:2] == (3, 9)  # (B, T) of the last shape checked
    if with_lengths:  # zeros past the ends, on the batch-first axes
        assert np.all(oy[1, 2:] == 0) and np.all(oy[2] == 0) and np.any(oy[0, 2:] != 0)


def test_batch_first_graph_equals_the_time_major_one_transposed(tmp_path):
    kwargs = dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, output_size=2)
    bf = make_model({**kwargs, "batch_first": True})
    tm = make_model(kwargs)
    np.testing.assert_array_equal(bf.flat_params, tm.flat_params)
    bf.to_onnx(tmp_path / "bf.onnx")
    tm.to_onnx(tmp_path / "tm.onnx")
    x = np.random.default_rng(2).standard_normal((7, 4, 3)).astype(np.float32)  # (T, B, I)
    run = lambda name, x: ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )
    (ybf, hbf), (ytm, htm) = run("bf.onnx", np.ascontiguousarray(x.swapaxes(0, 1))), run("tm.onnx", x)
    np.testing.assert_array_equal(ybf, ytm.swapaxes(0, 1))
    np.testing.assert_array_equal(hbf, htm)


def test_batch_first_mask_after_the_transpose_is_read_and_checked(tmp_path):
    """A graph that masks y after its Transpose to (B, T, ...): the mask is checked on those axes."""
    model = make_model(dict(input_size=3, hidden_size=4, output_size=2, output_activation="sigmoid", batch_first=True))
    model.to_onnx(tmp_path / "m.onnx", with_lengths=True)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    nodes = proto.graph.node
    where = next(n for n in nodes if n.op_type == "Where")  # zeros past each end, on (T, B, O)
    transpose = next(n for n in nodes if n.name == "y_batch_major")
    # Transpose the masked data's source instead, then mask on (B, T, 1): Where(cond^T, y^T, 0)
    transpose.input[0] = where.input[1]
    cond_t = onnx.helper.make_node("Transpose", [where.input[0]], ["cond_bt"], name="cond_bt", perm=[1, 0, 2])
    masked = onnx.helper.make_node(
        "Where", ["cond_bt", transpose.output[0], where.input[2]], ["masked"], name="mask_bt"
    )
    identity = next(n for n in nodes if n.op_type == "Identity" and n.output[0] == "y")
    identity.input[0] = "masked"
    nodes.remove(where)
    nodes.insert(list(nodes).index(identity), cond_t)
    nodes.insert(list(nodes).index(identity), masked)
    onnx.save(proto, str(tmp_path / "late_mask.onnx"))
    back = rnnext.from_onnx(tmp_path / "late_mask.onnx")
    assert back.config == model.config
    x = np.random.default_rng(3).standard_normal((3, 5, 3)).astype(np.float32)
    lengths = np.array([5, 2, 0], np.int32)
    oy, _ = ort.InferenceSession(str(tmp_path / "late_mask.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "lengths": lengths}
    )
    np.testing.assert_allclose(oy, model(x, lengths=lengths)[0], rtol=0, atol=1e-5)  # the edit kept the meaning
    node(nodes, "mask_bt").input[0] = where.input[0]  # the (T, B, 1) condition on (B, T, O) data: wrong axes
    nodes.remove(node(nodes, "cond_bt"))
    onnx.save(proto, str(tmp_path / "wrong_axes.onnx"))
    with pytest.raises(ValueError, match=r"node 'mask_bt' \(Where\): its condition does not select"):
        rnnext.from_onnx(tmp_path / "wrong_axes.onnx")


class TorchBatchFirst(torch.nn.Module):
    """A batch_first nn.RNN with an optional Embedding before it, a learned initial state
    expanded over the batch (x's axis 0) and an nn.Linear on top."""

    def __init__(self, layers=2, bidirectional=True, embedding=False, linear=True, learned_h0=False):
        super().__init__()
        D = 2 if bidirectional else 1
        self.embedding = torch.nn.Embedding(10, 3) if embedding else None
        self.rnn = torch.nn.RNN(3, 5, num_layers=layers, bidirectional=bidirectional, batch_first=True)
        self.linear = torch.nn.Linear(D * 5, 4) if linear else None
        self.h0 = torch.nn.Parameter(torch.randn(layers * D, 5)) if learned_h0 else None

    def forward(self, x, h0=None):
        if self.h0 is not None:
            h0 = self.h0.unsqueeze(1).expand(-1, x.shape[0], -1).contiguous()
        y, h_n = self.rnn(x if self.embedding is None else self.embedding(x), h0)
        return (y if self.linear is None else self.linear(y)), h_n


@pytest.mark.parametrize(
    "net_kwargs, with_h0",
    [
        (dict(), False),  # stacked bidirectional + Linear
        (dict(), True),
        (dict(embedding=True), False),
        (dict(layers=1, bidirectional=False, linear=False), False),  # y is the transposed Squeeze
        (dict(embedding=True, learned_h0=True), False),
    ],
)
def test_torch_onnx_export_of_batch_first_rnn_imports_batch_first(tmp_path, net_kwargs, with_h0):
    torch.manual_seed(0)
    net = TorchBatchFirst(**net_kwargs).eval()
    embedding, D, L = net.embedding is not None, 2 if net.rnn.bidirectional else 1, net.rnn.num_layers
    example = torch.randint(0, 10, (2, 4)) if embedding else torch.randn(2, 4, 3)  # (B, T, ...)
    args, names = (example,), ["x"]
    axes = {"x": {0: "B", 1: "T"}, "y": {0: "B", 1: "T"}, "h_n": {1: "B"}}
    if with_h0:
        args += (torch.randn(L * D, 2, 5),)
        names.append("h0")
        axes["h0"] = {1: "B"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, args, str(tmp_path / "t.onnx"), dynamo=False, input_names=names, output_names=["y", "h_n"],
            dynamic_axes=axes,
        )
    ops = [n.op_type for n in onnx.load(str(tmp_path / "t.onnx")).graph.node]
    assert "Transpose" in ops and ops.count("RNN") == L  # what this test is about: torch's batch-first glue
    model = rnnext.from_onnx(tmp_path / "t.onnx")
    assert model.batch_first and (model.num_layers, model.bidirectional) == (L, D == 2)
    assert model.output_size == (4 if net.linear is not None else None)
    assert model.vocab_size == (10 if embedding else None) and model.config["learn_h0"] == (net.h0 is not None)
    x = torch.randint(0, 10, (3, 7)) if embedding else torch.randn(3, 7, 3)  # B = 3, T = 7
    h0 = torch.randn(L * D, 3, 5)
    with torch.no_grad():
        ty, th = net(x, h0 if with_h0 else None)
    y, h_n = model(x.numpy(), **({"h0": h0.numpy()} if with_h0 else {}))
    assert y.shape == (3, 7, model.out_features)
    np.testing.assert_allclose(y, ty.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(h_n, th.numpy().reshape(h_n.shape), rtol=0, atol=1e-5)


def edited(tmp_path, batch_first, edit):
    """rnnext's graph of a small model, changed by edit(nodes)."""
    model = make_model(dict(input_size=3, hidden_size=4, output_size=2, batch_first=batch_first))
    model.to_onnx(tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    edit(proto.graph.node)
    onnx.save(proto, str(tmp_path / "edited.onnx"))
    return tmp_path / "edited.onnx"


def node(nodes, name):
    return next(n for n in nodes if n.name == name)


def set_perm(n, perm):
    next(a for a in n.attribute if a.name == "perm").ints[:] = perm


def drop_y_transpose(nodes):
    identity = next(n for n in nodes if n.op_type == "Identity" and n.output[0] == "y")
    identity.input[0] = node(nodes, "y_batch_major").input[0]
    nodes.remove(node(nodes, "y_batch_major"))


def transpose_y_of_time_major(nodes):
    identity = next(n for n in nodes if n.op_type == "Identity" and n.output[0] == "y")
    t = onnx.helper.make_node("Transpose", [identity.input[0]], ["y_bt"], name="y_bt", perm=[1, 0, 2])
    identity.input[0] = "y_bt"
    nodes.insert(list(nodes).index(identity), t)


def read_x_both_ways(nodes):
    rnn = node(nodes, "rnn_l0")  # the RNN reads x itself; the Transpose stays (unused) and came first
    rnn.input[0] = "x"


@pytest.mark.parametrize(
    "batch_first, edit, message",
    [
        (True, lambda nodes: set_perm(node(nodes, "x_time_major"), [0, 1, 2]),
         r"node 'x_time_major' \(Transpose\): attribute perm=\[0, 1, 2\] on the model input x .*expected \[1, 0, 2\]"),
        (True, lambda nodes: set_perm(node(nodes, "y_batch_major"), [0, 2, 1]),
         r"node 'y_batch_major' \(Transpose\): not part of an rnnext model"),
        (True, drop_y_transpose,
         r"graph output 'y': expected the output layer's logits transposed to \(B, T, \.\.\.\) \(y\), "
         r"got the output layer's logits"),
        (False, transpose_y_of_time_major,
         r"node 'y_bt' \(Transpose\): transposes the output layer's logits to \(B, T, \.\.\.\), but x is read"),
        (True, read_x_both_ways, r"node 'rnn_l0' \(RNN\): reads x as \(T, B, \.\.\.\), another node as \(B, T"),
    ],
)
def test_batch_first_glue_that_is_not_rnnexts_is_refused(tmp_path, batch_first, edit, message):
    with pytest.raises(ValueError, match=message):
        rnnext.from_onnx(edited(tmp_path, batch_first, edit))

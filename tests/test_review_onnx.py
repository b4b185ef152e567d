"""from_onnx on valid files it misread in the review: external data, graphs without RNN nodes."""

import numpy as np
import pytest

import rnnext

onnx = pytest.importorskip("onnx")


def test_a_model_with_external_data_imports(tmp_path):
    # torch.onnx.export's dynamo exporter writes m.onnx + m.onnx.data; from_onnx read only
    # m.onnx and called the file "not a valid ONNX model".
    model = rnnext.RNN(3, 4, 2, num_layers=2, bidirectional=True, seed=0)
    model.to_onnx(tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.save_model(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.onnx.data",
                    size_threshold=0)
    assert (tmp_path / "ext.onnx.data").stat().st_size > 0
    back = rnnext.from_onnx(tmp_path / "ext.onnx")
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    for got, want in zip(back(x), model(x)):
        np.testing.assert_array_equal(got, want)
    (tmp_path / "ext.onnx.data").unlink()  # and without its data it is refused by name
    with pytest.raises(ValueError, match=r"ext.onnx: not a valid ONNX model"):
        rnnext.from_onnx(tmp_path / "ext.onnx")


def test_a_graph_without_rnn_node_says_so_first(tmp_path):
    # An unrolled RNN (as the dynamo exporter writes) was refused at its first node as an
    # unsupported operator, without a word about the missing RNN node or dynamo=False.
    h = onnx.helper
    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["T", "B", 3])
    y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["T", "B", 3])
    graph = h.make_graph([h.make_node("Tanh", ["x"], ["y"], name="unrolled")], "g", [x], [y])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 14)]), str(tmp_path / "u.onnx"))
    with pytest.raises(ValueError, match=r"u.onnx: node .unrolled. \(Tanh\): operator Tanh is not supported.*; the graph has no RNN node at all .*dynamo=False"):
        rnnext.from_onnx(tmp_path / "u.onnx")


def test_a_fresh_learned_h0_survives_the_round_trip(tmp_path):
    # A new learn_h0 model's h0 is zeros; from_onnx read zeros as "no learned h0", so the
    # imported model had learn_h0=False and would no longer train h0.
    model = rnnext.RNN(3, 4, 2, learn_h0=True, num_layers=2, seed=0)
    assert not model.params["h0"].any()
    model.to_onnx(tmp_path / "m.onnx")
    back = rnnext.from_onnx(tmp_path / "m.onnx")
    assert back.config == model.config
    np.testing.assert_array_equal(back.params["h0"], model.params["h0"])

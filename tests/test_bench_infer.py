"""bench/bench_infer.py compares like with like: its ONNX graph (RNN node + MatMul + Add) and
its float64 forward give the outputs of the notes' reference and of rnnext with the same
weights. Correctness only; no timing is asserted."""

import pathlib

import numpy as np
import pytest

import rnnext
from conftest import load_script
from reference import forward as reference_forward

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench" / "bench_infer.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(BENCH)


def problem(I, H, O, B, T, seed=0):
    rng = np.random.default_rng(seed)
    params = {"W_x": rng.normal(0, 0.5, (I, H)), "W_h": rng.normal(0, 0.5, (H, H)), "b_h": rng.normal(0, 0.5, H),
              "W_y": rng.normal(0, 0.5, (H, O)), "b_y": rng.normal(0, 0.5, O)}
    params = {n: v.astype(np.float32) for n, v in params.items()}
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = rng.uniform(-0.5, 0.5, (B, H)).astype(np.float32)
    return dict(I=I, H=H, O=O, B=B, T=T, params=params, x=x, h0=h0)


def expected(pb):
    cfg = dict(num_layers=1, hidden_size=pb["H"], bidirectional=False, nonlinearity="tanh", output_size=pb["O"])
    y, h_n = reference_forward(pb["params"], cfg, pb["x"], pb["h0"][None])
    return y, h_n[0]


# I == H catches a missing transposition of W_x that a shape check would not.
SHAPES = [(3, 5, 4, 2, 7), (6, 6, 2, 3, 4), (8, 16, 3, 1, 1)]


@pytest.mark.parametrize("shape", SHAPES)
def test_onnx_graph_gives_the_reference_and_rnnext_outputs(bench, shape):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pb = problem(*shape)
    sess = ort.InferenceSession(bench.onnx_model(pb["params"]).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    y, h_n = sess.run(["y", "Y_h"], {"X": pb["x"], "initial_h": pb["h0"][None]})
    y_ref, h_ref = expected(pb)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_allclose(h_n[0], h_ref, atol=1e-5)

    rnn = rnnext.RNN(*shape[:3], dtype="float32", seed=0)
    for name, v in pb["params"].items():
        rnn.params[name][...] = v
    y_rx, h_rx = rnn.eval()(pb["x"], pb["h0"])
    np.testing.assert_allclose(y, y_rx, atol=1e-5)
    np.testing.assert_allclose(h_n[0], h_rx, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_bench_reference_is_the_notes_forward(bench, shape):
    pb = problem(*shape, seed=1)
    y, h_n = bench.reference(pb)
    y_ref, h_ref = expected(pb)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n, h_ref, rtol=1e-12, atol=1e-12)

"""Outputs, h_n and every gradient against torch.nn.RNN (+ Linear) on random shapes."""

import numpy as np
import pytest
from conftest import assert_close, assert_grads_match_torch, torch_run

import rnnext

torch = pytest.importorskip("torch")

TOL = {"float32": 1e-5, "float64": 1e-10}

CASES = [
    # T, B, I, H, O, layers, bidirectional, nonlinearity
    (7, 3, 5, 6, 4, 1, False, "tanh"),
    (1, 1, 1, 1, None, 1, False, "relu"),
    (12, 5, 3, 16, None, 1, False, "tanh"),
    (9, 4, 6, 8, 5, 2, False, "relu"),
    (6, 3, 4, 5, 3, 1, True, "tanh"),
    (8, 2, 3, 7, None, 3, True, "relu"),
    (20, 8, 16, 32, 10, 2, True, "tanh"),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_parity(case, dtype, with_lengths):
    T, B, I, H, O, L, bidir, act = case
    rng = np.random.default_rng(hash(case) % 2**32)
    rnn = rnnext.RNN(I, H, O, nonlinearity=act, num_layers=L, bidirectional=bidir, dtype=dtype, seed=7)
    rnn_t, lin_t = rnn.to_torch()
    S = L * (2 if bidir else 1)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((S, B, H))).astype(dtype)
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    if with_lengths:
        lengths[0] = T  # pad_packed_sequence pads to the longest; keep T as the longest
    h0_in = h0[0] if S == 1 else h0

    y, h_n = rnn(x, h0_in, lengths=lengths)
    xt, ht, yt, hnt = torch_run(rnn_t, lin_t, x, h0, lengths)
    assert_close(y, yt.detach().numpy(), TOL[dtype], "y")
    assert_close(h_n, hnt.detach().numpy()[0] if S == 1 else hnt.detach().numpy(), TOL[dtype], "h_n")

    gy = rng.standard_normal(y.shape).astype(dtype)
    gh = rng.standard_normal(hnt.shape).astype(dtype)
    rnn.zero_grad()
    dx, dh0 = rnn.backward(gy, gh[0] if S == 1 else gh)
    ((yt * torch.tensor(gy)).sum() + (hnt * torch.tensor(gh)).sum()).backward()
    assert_close(dx, xt.grad.numpy(), TOL[dtype], "dx")
    assert_close(dh0, ht.grad.numpy()[0] if S == 1 else ht.grad.numpy(), TOL[dtype], "dh0")
    assert_grads_match_torch(rnn, rnn_t, lin_t, TOL[dtype])


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_from_torch_equals_torch(act):
    torch.manual_seed(0)
    rnn_t = torch.nn.RNN(4, 6, num_layers=2, nonlinearity=act, bidirectional=True).double()
    lin_t = torch.nn.Linear(12, 3).double()
    rnn = rnnext.RNN.from_torch(rnn_t, lin_t)
    assert rnn.dtype == np.float64 and rnn.nonlinearity == act
    x = np.random.default_rng(0).standard_normal((5, 2, 4))
    y, h_n = rnn(x)
    out, hn_t = rnn_t(torch.tensor(x))
    np.testing.assert_allclose(y, lin_t(out).detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n, hn_t.detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_float32_agrees_with_float64(seed):
    rng = np.random.default_rng(seed)
    r64 = rnnext.RNN(6, 10, 4, num_layers=2, bidirectional=True, output_activation="softmax", dtype="float64", seed=seed)
    r32 = rnnext.RNN(6, 10, 4, num_layers=2, bidirectional=True, output_activation="softmax", dtype="float32")
    r32.flat_params[...] = r64.flat_params
    x = rng.standard_normal((15, 3, 6))
    g = rng.standard_normal((15, 3, 4))
    y64, h64 = r64(x)
    y32, h32 = r32(x)
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h32, h64, rtol=1e-4, atol=1e-5)
    dx64, _ = r64.backward(g)
    dx32, _ = r32.backward(g)
    np.testing.assert_allclose(dx32, dx64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r32.flat_grads, r64.flat_grads, rtol=1e-4, atol=1e-5)

"""Outputs, h_n and every gradient against torch.nn.RNN (+ Linear) on random shapes."""

import numpy as np
import pytest

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


def torch_run(rnn_t, lin_t, x, h0, lengths=None):
    xt = torch.tensor(x, requires_grad=True)
    ht = torch.tensor(h0, requires_grad=True)
    if lengths is None:
        out, h_n = rnn_t(xt, ht)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
        out, h_n = rnn_t(packed, ht)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
    y = lin_t(out) if lin_t is not None else out
    if lengths is not None:  # rnnext outputs zeros past a sequence's end, also after the Linear
        steps = torch.arange(x.shape[0])[:, None]
        y = y * (steps < torch.tensor(lengths)[None, :]).to(y.dtype)[..., None]
    return xt, ht, y, h_n


def assert_close(a, b, dtype, what):
    tol = TOL[dtype]
    scale = max(1.0, float(np.max(np.abs(b)))) if np.size(b) else 1.0
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale, err_msg=what)


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
    assert_close(y, yt.detach().numpy(), dtype, "y")
    assert_close(h_n, hnt.detach().numpy()[0] if S == 1 else hnt.detach().numpy(), dtype, "h_n")

    gy = rng.standard_normal(y.shape).astype(dtype)
    gh = rng.standard_normal(hnt.shape).astype(dtype)
    rnn.zero_grad()
    dx, dh0 = rnn.backward(gy, gh[0] if S == 1 else gh)
    ((yt * torch.tensor(gy)).sum() + (hnt * torch.tensor(gh)).sum()).backward()
    assert_close(dx, xt.grad.numpy(), dtype, "dx")
    assert_close(dh0, ht.grad.numpy()[0] if S == 1 else ht.grad.numpy(), dtype, "dh0")
    for l in range(L):
        for d in range(2 if bidir else 1):
            t, r = f"_l{l}" + ("_reverse" if d else ""), (f"_l{l}" if l else "") + ("_reverse" if d else "")
            assert_close(rnn.grads["W_x" + r], getattr(rnn_t, "weight_ih" + t).grad.numpy().T, dtype, "W_x" + r)
            assert_close(rnn.grads["W_h" + r], getattr(rnn_t, "weight_hh" + t).grad.numpy().T, dtype, "W_h" + r)
            assert_close(rnn.grads["b_h" + r], getattr(rnn_t, "bias_hh" + t).grad.numpy(), dtype, "b_h" + r)
    if O:
        assert_close(rnn.grads["W_y"], lin_t.weight.grad.numpy().T, dtype, "W_y")
        assert_close(rnn.grads["b_y"], lin_t.bias.grad.numpy(), dtype, "b_y")


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

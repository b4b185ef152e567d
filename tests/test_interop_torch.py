"""PyTorch interop: from_torch / to_torch for every configuration nn.RNN shares with rnnext,
and state dicts under PyTorch's names. The reference is torch itself (forward and autograd)."""

import itertools

import numpy as np
import pytest
from conftest import assert_grads_match_torch

import rnnext

torch = pytest.importorskip("torch")

CONFIGS = list(itertools.product([1, 2], [False, True], ["tanh", "relu"], [False, True]))
IDS = [f"L{L}-{'bi' if bi else 'uni'}-{act}-{'linear' if lin else 'nolinear'}" for L, bi, act, lin in CONFIGS]


def torch_pair(L, bi, act, lin, I=3, H=5, O=4, seed=0):
    torch.manual_seed(seed)
    t_rnn = torch.nn.RNN(I, H, num_layers=L, nonlinearity=act, bidirectional=bi).double()
    t_lin = torch.nn.Linear((2 if bi else 1) * H, O).double() if lin else None
    return t_rnn, t_lin


def torch_run(t_rnn, t_lin, x, h0, gy, gh):
    """Forward, then autograd of sum(y * gy) + sum(h_n * gh): dL/dparams, dx, dh0."""
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    for p in t_rnn.parameters():
        p.grad = None
    y, h_n = t_rnn(xt, h0t)
    if t_lin is not None:
        t_lin.zero_grad()
        y = t_lin(y)
    ((y * torch.tensor(gy)).sum() + (h_n * torch.tensor(gh)).sum()).backward()
    return y.detach().numpy(), h_n.detach().numpy(), xt.grad.numpy(), h0t.grad.numpy()


@pytest.mark.parametrize("L,bi,act,lin", CONFIGS, ids=IDS)
def test_from_torch_forward_backward_match_torch(L, bi, act, lin):
    t_rnn, t_lin = torch_pair(L, bi, act, lin)
    model = rnnext.RNN.from_torch(t_rnn, t_lin)
    assert model.dtype == np.float64 and model.num_layers == L and model.bidirectional == bi
    assert model.nonlinearity == act and model.output_size == (4 if lin else None)
    rng = np.random.default_rng(1)
    T, B, S = 6, 3, L * (2 if bi else 1)
    x = rng.standard_normal((T, B, 3))
    h0 = rng.standard_normal((S, B, 5))
    gy = rng.standard_normal((T, B, 4 if lin else (2 if bi else 1) * 5))
    gh = rng.standard_normal((S, B, 5))
    y_ref, hn_ref, dx_ref, dh0_ref = torch_run(t_rnn, t_lin, x, h0, gy, gh)

    h0_in = h0[0] if S == 1 else h0
    y, h_n = model(x, h0_in)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_n, hn_ref[0] if S == 1 else hn_ref, rtol=1e-10, atol=1e-12)
    model.zero_grad()
    dx, dh0 = model.backward(gy, gh[0] if S == 1 else gh)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dh0, dh0_ref[0] if S == 1 else dh0_ref, rtol=1e-9, atol=1e-12)
    assert_grads_match_torch(model, t_rnn, t_lin, 1e-9)


@pytest.mark.parametrize("L,bi,act,lin", CONFIGS, ids=IDS)
def test_to_torch_round_trip(L, bi, act, lin):
    model = rnnext.RNN(3, 5, 4 if lin else None, nonlinearity=act, num_layers=L, bidirectional=bi, seed=7)
    t_rnn, t_lin = model.to_torch()
    assert isinstance(t_rnn, torch.nn.RNN) and (t_lin is None) == (not lin)
    assert t_rnn.weight_ih_l0.dtype == torch.float32
    assert (t_rnn.num_layers, t_rnn.bidirectional, t_rnn.nonlinearity) == (L, bi, act)
    back = rnnext.RNN.from_torch(t_rnn, t_lin)
    assert back.config == model.config
    np.testing.assert_array_equal(back.flat_params, model.flat_params)  # transposes are exact
    # The torch model computes what the rnnext model computes.
    x = np.random.default_rng(2).standard_normal((5, 2, 3)).astype(np.float32)
    with torch.no_grad():
        y_t, h_t = t_rnn(torch.from_numpy(x))
        if t_lin is not None:
            y_t = t_lin(y_t)
    y, h_n = model(x)
    np.testing.assert_allclose(y, y_t.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_n, h_t.numpy()[0] if h_t.shape[0] == 1 else h_t.numpy(), rtol=1e-5, atol=1e-6)


def test_from_torch_without_bias_and_float32():
    torch.manual_seed(0)
    t_rnn = torch.nn.RNN(3, 4, bias=False)
    model = rnnext.RNN.from_torch(t_rnn)
    assert model.dtype == np.float32
    np.testing.assert_array_equal(model.params["b_h"], 0.0)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    with torch.no_grad():
        y_t, _ = t_rnn(torch.from_numpy(x))
    np.testing.assert_allclose(model(x)[0], y_t.numpy(), rtol=1e-5, atol=1e-6)


def test_from_torch_rejects_what_rnnext_cannot_represent():
    with pytest.raises(TypeError, match="rnn_module"):
        rnnext.RNN.from_torch(torch.nn.GRU(3, 4))
    assert rnnext.RNN.from_torch(torch.nn.RNN(3, 4, batch_first=True)).batch_first  # issue 15: carried over
    with pytest.raises(ValueError, match="in_features"):
        rnnext.RNN.from_torch(torch.nn.RNN(3, 4), torch.nn.Linear(5, 2))
    with pytest.raises(ValueError, match="nonlinearity"):
        rnnext.RNN(3, 4, nonlinearity="sigmoid").to_torch()
    with pytest.raises(TypeError, match="num_layers: taken from rnn_module"):
        rnnext.RNN.from_torch(torch.nn.RNN(3, 4), num_layers=2)  # was Python's "multiple values" error


# ------------------------------------------------------------------------ state dicts
@pytest.mark.parametrize("L,bi", [(1, False), (2, True)])
def test_state_dict_has_torch_names_and_shapes_and_loads_into_torch(L, bi):
    model = rnnext.RNN(3, 5, 2, num_layers=L, bidirectional=bi, seed=3, dtype="float64")
    sd = model.state_dict()
    t_rnn, t_lin = torch_pair(L, bi, "tanh", True, O=2)
    t_sd = t_rnn.state_dict()
    rnn_keys = [k for k in sd if not k.startswith("linear.")]
    assert rnn_keys == list(t_sd)  # same names, same order
    for k, v in t_sd.items():
        assert sd[k].shape == tuple(v.shape), k
    assert sd["linear.weight"].shape == tuple(t_lin.weight.shape)
    t_rnn.load_state_dict({k: torch.from_numpy(sd[k]) for k in rnn_keys})
    t_lin.load_state_dict({"weight": torch.from_numpy(sd["linear.weight"]), "bias": torch.from_numpy(sd["linear.bias"])})
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    with torch.no_grad():
        y_t = t_lin(t_rnn(torch.from_numpy(x))[0]).numpy()
    np.testing.assert_allclose(model(x)[0], y_t, rtol=1e-10, atol=1e-12)
    # The arrays are copies: changing them does not touch the model.
    sd["weight_ih_l0"][...] = 0.0
    assert np.any(model.params["W_x"] != 0.0)


@pytest.mark.parametrize("as_tensors", [False, True], ids=["numpy", "tensors"])
def test_torch_state_dict_loads_directly_biases_summed(as_tensors):
    t_rnn, t_lin = torch_pair(2, True, "relu", True, O=3)
    sd = {k: (v if as_tensors else v.numpy()) for k, v in t_rnn.state_dict().items()}
    sd.update({"linear." + k: (v if as_tensors else v.numpy()) for k, v in t_lin.state_dict().items()})
    model = rnnext.RNN(3, 5, 3, nonlinearity="relu", num_layers=2, bidirectional=True, dtype="float64")
    result = model.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(model.params["W_h_l1_reverse"], t_rnn.weight_hh_l1_reverse.detach().numpy().T)
    np.testing.assert_allclose(
        model.params["b_h_l1"], (t_rnn.bias_ih_l1 + t_rnn.bias_hh_l1).detach().numpy(), rtol=1e-15
    )
    x = np.random.default_rng(5).standard_normal((5, 2, 3))
    with torch.no_grad():
        y_t = t_lin(t_rnn(torch.from_numpy(x))[0]).numpy()
    np.testing.assert_allclose(model(x)[0], y_t, rtol=1e-10, atol=1e-12)


def test_state_dict_of_a_containing_module_with_prefixes():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.RNN(3, 4)
            self.fc = torch.nn.Linear(4, 2)

    net = Net()
    model = rnnext.RNN(3, 4, 2)
    model.load_state_dict(net.state_dict(), rnn_prefix="rnn.", linear_prefix="fc.")
    np.testing.assert_array_equal(model.params["W_y"], net.fc.weight.detach().numpy().T)
    assert set(model.state_dict(rnn_prefix="rnn.", linear_prefix="fc.")) == set(net.state_dict())


def test_state_dict_without_biases_is_bias_false():
    t_rnn = torch.nn.RNN(3, 4, bias=False)
    model = rnnext.RNN(3, 4, seed=0)
    model.load_state_dict(t_rnn.state_dict())
    np.testing.assert_array_equal(model.params["b_h"], 0.0)
    np.testing.assert_allclose(model.params["W_x"], t_rnn.weight_ih_l0.detach().numpy().T)


def test_state_dict_embedding_and_h0_names():
    model = rnnext.RNN(3, 4, vocab_size=7, learn_h0=True, seed=0)
    sd = model.state_dict()
    assert sd["embedding.weight"].shape == (7, 3) and sd["h0"].shape == (1, 4)
    other = rnnext.RNN(3, 4, vocab_size=7, learn_h0=True, seed=1)
    other.load_state_dict(sd)
    np.testing.assert_array_equal(other.flat_params, model.flat_params)


def test_load_state_dict_errors_leave_the_model_unchanged():
    model = rnnext.RNN(3, 4, 2, num_layers=2, seed=0)
    before = model.flat_params.copy()
    good = model.state_dict()

    missing = {k: v for k, v in good.items() if k != "weight_hh_l1"}
    with pytest.raises(ValueError, match=r"missing keys \['weight_hh_l1'\]"):
        model.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"unexpected keys \['weight_ih_l2'\]"):
        model.load_state_dict({**good, "weight_ih_l2": np.zeros((4, 4))})
    with pytest.raises(ValueError, match=r"missing keys \['bias_hh_l0'"):
        model.load_state_dict({k: v for k, v in good.items() if not k.startswith("bias_hh")})
    bad_shape = dict(good, weight_ih_l1=np.zeros((4, 3)))  # would be (4, 4)
    with pytest.raises(ValueError, match=r"state_dict\['weight_ih_l1'\]: expected shape \(4, 4\).*got \(4, 3\)"):
        model.load_state_dict(bad_shape)
    with pytest.raises(TypeError, match="state_dict"):
        model.load_state_dict([("weight_ih_l0", np.zeros((4, 3)))])
    with pytest.raises(TypeError, match="real numbers"):
        model.load_state_dict(dict(good, bias_ih_l0=np.array(["a"] * 4)))
    with pytest.raises(TypeError, match="rnn_prefix"):
        model.load_state_dict(good, rnn_prefix=None)
    np.testing.assert_array_equal(model.flat_params, before)


def test_load_state_dict_non_strict_reports_and_skips():
    model = rnnext.RNN(3, 4, 2, seed=0)
    W_h = model.params["W_h"].copy()
    partial = {"weight_ih_l0": np.ones((4, 3)), "extra": np.zeros(1)}
    result = model.load_state_dict(partial, strict=False)
    assert "extra" in result.unexpected_keys and "weight_hh_l0" in result.missing_keys
    np.testing.assert_array_equal(model.params["W_x"], 1.0)
    np.testing.assert_array_equal(model.params["W_h"], W_h)

"""Issue 15, a PyTorch user's first hour: read-only parameter views (2), batch_first (3),
PyTorch's 3-D h0 (4), backward through h_n alone and the many-to-one helpers (6), messages
in terms of what was passed (7), PyTorch habits (8) and typing (10). PyTorch is the
reference wherever it has the feature."""

import copy
import io
import pickle
import pydoc
import subprocess
import sys
import textwrap
import typing
import warnings
from pathlib import Path

import numpy as np
import pytest

import rnnext
from rnnext.losses import softmax_cross_entropy

torch = pytest.importorskip("torch")
# Keras' own arrays trip a NumPy 2 deprecation inside Keras; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
ROOT = Path(__file__).resolve().parents[1]


def twin(rnn, batch_first=False):
    """A torch nn.RNN (+ nn.Linear) with rnn's weights, built from the state dict."""
    t_rnn = torch.nn.RNN(
        rnn.input_size, rnn.hidden_size, num_layers=rnn.num_layers, bidirectional=rnn.bidirectional,
        nonlinearity=rnn.nonlinearity, batch_first=batch_first,
    ).double()
    sd = {k: torch.from_numpy(v).double() for k, v in rnn.state_dict().items()}
    t_rnn.load_state_dict({k: v for k, v in sd.items() if not k.startswith("linear.")})
    t_lin = None
    if rnn.output_size:
        t_lin = torch.nn.Linear(rnn.num_directions * rnn.hidden_size, rnn.output_size).double()
        t_lin.load_state_dict({k[len("linear."):]: v for k, v in sd.items() if k.startswith("linear.")})
    return t_rnn, t_lin


def t(a, grad=False):
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


# ------------------------------------------------------------ 2: read-only parameter views
@pytest.mark.parametrize("name", ["params", "grads", "flat_params", "flat_grads"])
def test_assigning_a_parameter_buffer_is_refused_with_the_in_place_way(name):
    rnn = rnnext.RNN(3, 4, 2, seed=0)
    before = rnn.flat_params.copy()
    new = {} if name in ("params", "grads") else np.zeros_like(before)
    with pytest.raises(AttributeError, match=r"read-only.*\[\.\.\.\] = "):
        setattr(rnn, name, new)
    np.testing.assert_array_equal(rnn.flat_params, before)
    assert getattr(type(rnn), name).__doc__  # a documented property, listed by help(RNN)


def test_replacing_an_entry_is_refused_and_in_place_writes_reach_the_model(rng):
    rnn = rnnext.RNN(3, 4, 2, dtype="float64", seed=0)
    x = rng.standard_normal((5, 2, 3))
    with pytest.raises(TypeError, match=r"rnn.params\['b_y'\]\[\.\.\.\] = value"):
        rnn.params["b_y"] = np.full(2, 100.0)
    for op in (lambda: rnn.params.pop("b_y"), lambda: rnn.params.update(b_y=0), lambda: rnn.params.clear()):
        with pytest.raises(TypeError, match="in place"):
            op()
    rnn.params["b_y"][...] = 100.0  # the in-place way the message shows
    y, _ = rnn(x)
    assert np.all(y > 90)
    rnn.params["b_y"] += 1.0  # augmented assignment works in place
    rnn.flat_params += 0.0
    assert rnn.flat_params[-1] == 101.0 and rnn(x)[0].min() > 91
    snapshot = copy.deepcopy(rnn.params)  # copies are plain, writable dicts
    snapshot["b_y"] = None
    assert type(snapshot) is dict and rnn.params["b_y"][0] == 101.0


def test_help_lists_the_attributes_a_user_needs():
    text = pydoc.render_doc(rnnext.RNN, renderer=pydoc.plaintext)
    for name in ("params", "grads", "flat_params", "flat_grads", "grad_norms", "training", "dtype",
                 "batch_first", "parameters", "named_parameters"):
        assert f"\n |  {name}" in text, name


def test_training_and_dtype_and_grad_norms_keep_working():
    rnn = rnnext.RNN(3, 4, 2, seed=0)
    rnn.training = False
    assert rnn.training is False and rnn.eval().training is False and rnn.train().training is True
    with pytest.raises(AttributeError):
        rnn.dtype = np.float64
    assert rnn.grad_norms is None
    rnn(np.zeros((3, 1, 3)))
    rnn.backward(np.ones((3, 1, 2)))
    assert rnn.grad_norms.shape == (1, 3)
    for back in (pickle.loads(pickle.dumps(rnn)), copy.deepcopy(rnn), copy.copy(rnn)):
        assert back.training and back.dtype == np.float32 and back.grad_norms.shape == (1, 3)
        back.flat_params[...] = 0  # own buffers
        assert not np.all(rnn.flat_params == 0)


# ----------------------------------------------------------------------- 3: batch_first
@pytest.mark.parametrize("layers, bi", [(1, False), (2, True)])
def test_batch_first_matches_pytorch_forward_and_backward(rng, layers, bi):
    rnn = rnnext.RNN(3, 5, 2, num_layers=layers, bidirectional=bi, dtype="float64", seed=1, batch_first=True)
    B, T = 4, 6
    x = rng.standard_normal((B, T, 3))
    h0 = rng.standard_normal((layers * (2 if bi else 1), B, 5))
    y, h_n = rnn(x, h0)
    t_rnn, t_lin = twin(rnn, batch_first=True)
    tx, th0 = t(x, True), t(h0, True)
    ts, th = t_rnn(tx, th0)
    ty = t_lin(ts)
    assert y.shape == (B, T, 2) and h_n.shape == h0.shape
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_n, th.detach().numpy(), rtol=1e-10, atol=1e-12)
    G, Gh = rng.standard_normal(y.shape), rng.standard_normal(h_n.shape)
    (ty * t(G)).sum().add((th * t(Gh)).sum()).backward()
    dx, dh0 = rnn.backward(G, Gh)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dh0, th0.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(rnn.grads["W_h"], t_rnn.weight_hh_l0.grad.numpy().T, rtol=1e-9, atol=1e-12)


def test_batch_first_with_lengths_token_ids_and_files(rng, tmp_path):
    tm = rnnext.RNN(3, 5, 2, dtype="float64", seed=2)
    bf = rnnext.RNN(3, 5, 2, dtype="float64", seed=2, batch_first=True)
    x, lengths = rng.standard_normal((6, 3, 3)), [6, 2, 4]
    y_tm, h_tm = tm(x, lengths=lengths)
    y_bf, h_bf = bf(np.swapaxes(x, 0, 1), lengths=lengths)
    np.testing.assert_array_equal(y_bf, np.swapaxes(y_tm, 0, 1))
    np.testing.assert_array_equal(h_bf, h_tm)
    tok_tm = rnnext.RNN(3, 5, 2, vocab_size=7, seed=3)
    tok_bf = rnnext.RNN(3, 5, 2, vocab_size=7, seed=3, batch_first=True)
    ids = rng.integers(0, 7, (6, 3))
    np.testing.assert_array_equal(tok_bf(ids.T)[0], np.swapaxes(tok_tm(ids)[0], 0, 1))
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 7\), got 9 at x\[2, 5\]"):
        ids[5, 2] = 9
        tok_bf(ids.T)  # the position in the caller's (B, T) layout
    path = tmp_path / "bf.npz"
    bf.save(path)
    back = rnnext.load(path)
    assert back.batch_first and back.config == bf.config
    np.testing.assert_array_equal(back(np.swapaxes(x, 0, 1))[0], bf(np.swapaxes(x, 0, 1))[0])
    assert not tm.batch_first and "batch_first=True" in repr(bf)


def test_batch_first_unbatched_input_is_time_major_as_in_pytorch(rng):
    bf = rnnext.RNN(3, 5, dtype="float64", seed=2, batch_first=True)
    x = rng.standard_normal((6, 3))  # (T, input_size): PyTorch ignores batch_first here too
    t_rnn, _ = twin(bf, batch_first=True)
    np.testing.assert_allclose(bf(x)[0], t_rnn(t(x))[0].detach().numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"x: axis 2 \(input_size\) should have size 3, got 4 \(shape \(2, 6, 4\)\)"):
        bf(np.zeros((2, 6, 4)))
    with pytest.raises(ValueError, match=r"grad: expected the shape of y, \(2, 6, 5\), got \(6, 2, 5\) \(y is \(B, T"):
        bf(np.zeros((2, 6, 3)))
        bf.backward(np.zeros((6, 2, 5)))


# --------------------------------------------------------------------- 4: PyTorch's h0
@pytest.mark.parametrize("vocab", [None, 9])
def test_one_layer_takes_pytorch_h0_and_returns_h_n_in_its_rank(rng, vocab):
    rnn = rnnext.RNN(3, 5, dtype="float64", seed=4, vocab_size=vocab)
    x = rng.integers(0, 9, (6, 4)) if vocab else rng.standard_normal((6, 4, 3))
    h0 = rng.standard_normal((1, 4, 5))
    y3, h3 = rnn(x, h0)
    y2, h2 = rnn(x, h0[0])
    assert h3.shape == (1, 4, 5) and h2.shape == (4, 5)
    np.testing.assert_array_equal(y3, y2)
    np.testing.assert_array_equal(h3[0], h2)
    assert rnn(x)[1].shape == (4, 5)  # without h0: as before
    if not vocab:
        t_rnn, _ = twin(rnn)
        np.testing.assert_allclose(h3, t_rnn(t(x), t(h0))[1].detach().numpy(), rtol=1e-10, atol=1e-12)
    rnn(x, h0)
    _, dh0 = rnn.backward(np.ones(y3.shape), np.ones((4, 5)))  # dh_n in either rank
    assert dh0.shape == (1, 4, 5)
    rnn(x, h0)
    _, dh0_3 = rnn.backward(np.ones(y3.shape), np.ones((1, 4, 5)))
    np.testing.assert_array_equal(dh0_3, dh0)
    xu = x[:, 0] if vocab else x[:, 0, :]  # unbatched: (1, H) as PyTorch's (D * num_layers, H)
    yu, hu = rnn(xu, h0[:, 0])
    assert hu.shape == (1, 5)
    np.testing.assert_allclose(hu[0], h3[0, 0], rtol=1e-12)
    with pytest.raises(ValueError, match=r"h0: expected shape \(4, 5\) or \(1, 4, 5\) \(PyTorch's\), got shape \(1, 1, 4, 5\)"):
        rnn(x, h0[None])
    with pytest.raises(ValueError, match=r"h0: axis 0 \(num_layers\*directions\) should have size 1, got 2"):
        rnn(x, np.zeros((2, 4, 5)))


def test_step_and_reset_state_keep_the_rank_of_the_state(rng):
    rnn = rnnext.RNN(3, 5, dtype="float64", seed=5)
    x = rng.standard_normal((4, 2, 3))
    h = np.zeros((1, 2, 5))
    for t_ in range(4):
        _, h = rnn.step(x[t_], h)
    assert h.shape == (1, 2, 5)
    np.testing.assert_allclose(h, rnn(x, np.zeros((1, 2, 5)))[1], rtol=1e-12)
    _, hu = rnn.step(x[0, 0], np.zeros((1, 5)))
    assert hu.shape == (1, 5)
    reset = rnn.reset_state(h, np.array([True, False]))
    assert reset.shape == (1, 2, 5) and np.all(reset[0, 0] == 0) and np.all(reset[0, 1] == h[0, 1])


# ------------------------------------------------------ 6: dL/dh_n alone, many-to-one
@pytest.mark.parametrize("layers, bi", [(1, False), (2, True)])
def test_backward_through_h_n_alone_matches_pytorch(rng, layers, bi):
    rnn = rnnext.RNN(3, 5, 2, num_layers=layers, bidirectional=bi, dtype="float64", seed=6)
    x = rng.standard_normal((6, 4, 3))
    _, h_n = rnn(x)
    Gh = rng.standard_normal(h_n.shape)
    dx, dh0 = rnn.backward(dh_n=Gh)
    t_rnn, _ = twin(rnn)
    tx = t(x, True)
    _, th = t_rnn(tx)
    (th.reshape(h_n.shape) * t(Gh)).sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(rnn.grads["W_x"], t_rnn.weight_ih_l0.grad.numpy().T, rtol=1e-9, atol=1e-12)
    assert np.all(rnn.grads["W_y"] == 0) and np.all(rnn.grads["b_y"] == 0)
    rnn.zero_grad()
    rnn(x)
    dx2, _ = rnn.backward(None, Gh)  # the positional form of the issue
    np.testing.assert_array_equal(dx2, dx)
    with pytest.raises(ValueError, match="expected grad .* or dh_n .*, got neither"):
        rnn.backward()


@pytest.mark.parametrize("batch_first", [False, True])
def test_gather_and_scatter_last_give_pytorchs_many_to_one_gradients(rng, batch_first):
    rnn = rnnext.RNN(3, 6, 2, dtype="float64", seed=7, batch_first=batch_first)
    T, B = 7, 5
    lengths = np.array([7, 1, 3, 5, 2])
    x = rng.standard_normal((B, T, 3) if batch_first else (T, B, 3))
    labels = rng.integers(0, 2, B)
    y, _ = rnn(x, lengths=lengths)
    last = rnnext.gather_last(y, lengths, batch_first=batch_first)
    loss, dlast = softmax_cross_entropy(last, labels, reduction="mean")
    grad = rnnext.scatter_last(dlast, lengths, y, batch_first=batch_first)
    assert grad.shape == y.shape and grad.dtype == y.dtype
    assert np.count_nonzero(np.abs(grad).sum(-1)) == B  # one step per sequence
    rnn.backward(grad)
    # PyTorch without packing: steps after a length do not influence the last output.
    t_rnn, t_lin = twin(rnn, batch_first=batch_first)
    ty = t_lin(t_rnn(t(x))[0])
    tlast = ty[np.arange(B), lengths - 1] if batch_first else ty[lengths - 1, np.arange(B)]
    tloss = torch.nn.functional.cross_entropy(tlast, torch.from_numpy(labels))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    np.testing.assert_allclose(last, tlast.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rnn.grads["W_h"], t_rnn.weight_hh_l0.grad.numpy().T, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(rnn.grads["W_y"], t_lin.weight.grad.numpy().T, rtol=1e-9, atol=1e-12)


def test_gather_last_checks_its_arguments():
    y = np.zeros((4, 2, 3))
    np.testing.assert_array_equal(rnnext.gather_last(np.arange(8.0).reshape(4, 2, 1)), [[6.0], [7.0]])
    with pytest.raises(ValueError, match=r"lengths: expected values in \[1, 4\].*got 0 at lengths\[1\]"):
        rnnext.gather_last(y, [4, 0])
    with pytest.raises(ValueError, match=r"lengths: axis 0 \(B\) should have size 2, got 3"):
        rnnext.gather_last(y, [4, 1, 1])
    with pytest.raises(ValueError, match=r"grad: expected the shape of the last outputs, \(2, 3\), got \(4, 2, 3\)"):
        rnnext.scatter_last(y, [4, 1], y)


# ------------------------------------------------------------ 7: messages and inputs
def test_messages_describe_what_was_passed():
    rnn = rnnext.RNN(8, 32, 5, seed=0)
    with pytest.raises(ValueError, match=r"x: axis 1 \(input_size\) should have size 8, got 5 \(shape \(10, 5\)\)"):
        rnn(np.zeros((10, 5)))
    with pytest.raises(TypeError, match=r"x: expected real numbers, got None"):
        rnn(None)
    rnn(np.zeros((10, 4, 8)))
    with pytest.raises(ValueError, match=r"grad: expected the shape of y, \(10, 4, 5\), got \(\)"):
        rnn.backward(0)
    lm = rnnext.RNN(4, 8, vocab_size=5)
    with pytest.raises(TypeError, match=r"x: expected integers, got None"):
        lm(None)


def test_float_lengths_whole_values_accepted_fractions_named(rng):
    rnn = rnnext.RNN(3, 4, dtype="float64", seed=0)
    x = rng.standard_normal((10, 3, 3))
    want = rnn(x, lengths=[10, 4, 7])
    for lengths in ([10.0, 4.0, 7.0], np.array([10, 4, 7], np.float32)):
        got = rnn(x, lengths=lengths)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    with pytest.raises(TypeError, match=r"lengths: expected integers \(or whole-valued floats\), got 4.5 at lengths\[1\]"):
        rnn(x, lengths=[10.0, 4.5, 7.0])
    with pytest.raises(TypeError, match=r"got nan at lengths\[0\]"):
        rnn(x, lengths=[np.nan, 4.0, 7.0])


def test_torch_tensors_that_require_grad_are_read_as_values(rng):
    rnn = rnnext.RNN(3, 4, 2, dtype="float64", seed=0)
    x, h0 = rng.standard_normal((5, 2, 3)), rng.standard_normal((1, 2, 4))
    want_y, want_h = rnn(x, h0, lengths=[5, 3])
    tx, th0 = t(x, True), t(h0, True)
    y, h = rnn(tx, th0, lengths=torch.tensor([5, 3]))
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(h, want_h)
    G = t(np.ones(y.shape), True)
    dx, _ = rnn.backward(G, th0)
    assert isinstance(dx, np.ndarray) and tx.grad is None  # no link back to autograd
    rnn.flat_params[...] = 0
    assert tx.detach().numpy().sum() == pytest.approx(x.sum())  # the caller's tensor untouched
    f32 = rnnext.RNN(3, 4)
    np.testing.assert_allclose(f32(t(x, True).half())[0], f32(x.astype(np.float16))[0], rtol=1e-6)


# ------------------------------------------------------------------ 8: PyTorch habits
def test_parameters_and_named_parameters_are_the_views():
    rnn = rnnext.RNN(3, 4, 2, num_layers=2, bidirectional=True, seed=0)
    named = list(rnn.named_parameters())
    assert [n for n, _ in named] == list(rnn.params)
    assert all(p is rnn.params[n] for n, p in named)
    assert sum(p.size for p in rnn.parameters()) == rnn.num_parameters()
    for p in rnn.parameters():
        p[...] = 0.5
    assert np.all(rnn.flat_params == 0.5)
    t_rnn, t_lin = rnn.to_torch()
    torch_names = [n for n, _ in t_rnn.named_parameters()] + [f"linear.{n}" for n, _ in t_lin.named_parameters()]
    assert set(rnn.state_dict()) == set(torch_names)


def _run_optimizers(rnn_opt, torch_opt, rng, steps=5):
    rnn = rnnext.RNN(3, 4, 2, dtype="float64", seed=0)
    p0 = rnn.flat_params.copy()
    tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    ours, theirs = rnn_opt(rnn), torch_opt([tp])
    for _ in range(steps):
        g = rng.standard_normal(p0.shape)
        rnn.flat_grads[...] = g
        tp.grad = torch.from_numpy(g.copy())
        ours.step()
        theirs.step()
        np.testing.assert_array_equal(rnn.flat_grads, g)  # the gradient itself is not changed
    return rnn.flat_params, tp.detach().numpy(), p0


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda m: rnnext.optim.SGD(m, 0.1, weight_decay=0.3), lambda p: torch.optim.SGD(p, 0.1, weight_decay=0.3)),
        (lambda m: rnnext.optim.SGD(m, 0.1, 0.9, nesterov=True, weight_decay=0.3),
         lambda p: torch.optim.SGD(p, 0.1, 0.9, nesterov=True, weight_decay=0.3)),
        (lambda m: rnnext.optim.Adagrad(m, 0.1, weight_decay=0.2), lambda p: torch.optim.Adagrad(p, 0.1, weight_decay=0.2)),
        (lambda m: rnnext.optim.RMSprop(m, 0.01, momentum=0.5, weight_decay=0.2),
         lambda p: torch.optim.RMSprop(p, 0.01, momentum=0.5, weight_decay=0.2)),
        (lambda m: rnnext.optim.Adam(m, 0.01, weight_decay=0.2), lambda p: torch.optim.Adam(p, 0.01, weight_decay=0.2)),
        (lambda m: rnnext.optim.AdamW(m, 0.01), lambda p: torch.optim.AdamW(p, 0.01)),
        (lambda m: rnnext.optim.AdamW(m, 0.05, (0.8, 0.9), weight_decay=0.5),
         lambda p: torch.optim.AdamW(p, 0.05, (0.8, 0.9), weight_decay=0.5)),
    ],
)
def test_weight_decay_and_adamw_match_pytorch(rng, ours, theirs):
    got, want, p0 = _run_optimizers(ours, theirs, rng)
    assert not np.allclose(got, p0)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_weight_decay_is_saved_checked_and_old_states_load():
    rnn = rnnext.RNN(3, 4, 2, seed=0)
    opt = rnnext.optim.AdamW(rnn, 0.01, weight_decay=0.1)
    state = opt.state_dict()
    assert state["weight_decay"] == 0.1 and "AdamW(lr=0.01" in repr(opt)
    with pytest.raises(ValueError, match="weight_decay"):
        rnnext.optim.AdamW(rnn, 0.01).load_state_dict(state)
    old = rnnext.optim.SGD(rnn, 0.1).state_dict()
    del old["weight_decay"]  # as saved before weight_decay existed
    rnnext.optim.SGD(rnn, 0.1).load_state_dict(old)
    with pytest.raises(ValueError, match=r"weight_decay: expected a float in \[0.0, inf\), got -1"):
        rnnext.optim.SGD(rnn, 0.1, weight_decay=-1)
    assert rnnext.optim.OPTIMIZERS["adamw"] is rnnext.optim.AdamW


def test_dropout_with_one_layer_warns_as_pytorch_does():
    with pytest.warns(UserWarning, match=r"dropout=0.5 with num_layers=1 does nothing"):
        one = rnnext.RNN(3, 4, dropout=0.5)
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        torch.nn.RNN(3, 4, dropout=0.5)  # the PyTorch behaviour being matched
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rnnext.RNN(3, 4, num_layers=2, dropout=0.5)
        rnnext.RNN(3, 4)
        copy.deepcopy(one), copy.copy(one), pickle.loads(pickle.dumps(one))  # warned once, at construction


def test_repr_is_the_full_constructor_call():
    rnn = rnnext.RNN(3, 4, 2, init="orthogonal", learn_h0=True, batch_first=True, output_activation="softmax")
    text = repr(rnn)
    assert "init='orthogonal'" in text and "batch_first=True" in text and "learn_h0=True" in text
    for key in rnn.config:
        assert key in text or key in ("input_size", "hidden_size")
    assert eval(text, {"RNN": rnnext.RNN}).config == rnn.config


def test_torch_state_dict_survives_torch_save_and_weights_only_load(rng):
    rnn = rnnext.RNN(3, 5, 2, num_layers=2, seed=0)
    buf = io.BytesIO()
    torch.save(rnn.torch_state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    assert all(v.dtype == torch.float32 for v in sd.values())
    t_rnn, t_lin = torch.nn.RNN(3, 5, num_layers=2), torch.nn.Linear(5, 2)
    t_rnn.load_state_dict({k: v for k, v in sd.items() if not k.startswith("linear.")})
    t_lin.load_state_dict({k[7:]: v for k, v in sd.items() if k.startswith("linear.")})
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(t_lin(t_rnn(torch.from_numpy(x))[0]).detach().numpy(), rnn(x)[0], rtol=1e-5, atol=1e-6)
    prefixed = rnn.torch_state_dict(rnn_prefix="rnn.", linear_prefix="fc.")
    assert "rnn.weight_ih_l1" in prefixed and "fc.bias" in prefixed
    before = rnn.flat_params.copy()
    prefixed["fc.bias"][...] = 7  # new memory, not views
    np.testing.assert_array_equal(rnn.flat_params, before)


# -------------------------------------------------------------------------- 10: typing
def test_to_torch_and_load_annotations_resolve():
    hints = typing.get_type_hints(rnnext.RNN.to_torch, localns={"torch": torch})
    assert hints["return"] == typing.Tuple[torch.nn.RNN, typing.Optional[torch.nn.Linear]]
    import os

    assert typing.get_type_hints(rnnext.load, localns={"os": os})["return"] is rnnext.RNN
    hints = typing.get_type_hints(rnnext.RNN.__init__)
    assert typing.get_args(hints["nonlinearity"]) == ("tanh", "relu", "sigmoid")
    assert set(typing.get_args(hints["init"])) == {"default", "xavier", "orthogonal", "identity"}


def _mypy(tmp_path, source, *flags, follow_torch=False):
    script = tmp_path / "user_script.py"
    script.write_text(source)
    # A user's setup: the installed package (its own code is not checked); torch's own types
    # (about 30 s to analyse) only where they matter, else they read as Any.
    config = tmp_path / "mypy.ini"
    skip = "" if follow_torch else "[mypy-torch.*]\nfollow_imports = skip\n[mypy-keras.*]\nfollow_imports = skip\n"
    untyped = "[mypy-onnxruntime.*]\nignore_missing_imports = True\n"  # it ships no types
    config.write_text("[mypy]\n" + skip + untyped)
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(tmp_path / "cache"), *flags]
    return subprocess.run(cmd + [str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)


def test_mypy_catches_a_bad_string_option_and_knows_what_load_returns(tmp_path):
    pytest.importorskip("mypy")
    r = _mypy(tmp_path, textwrap.dedent("""
        import rnnext
        rnn = rnnext.RNN(3, 4, nonlinearity="gelu")
        rnn.backward(None, wrt="z")
        rnnext.losses.mse(rnn(None)[0], 0, reduction="avg")
        reveal_type(rnnext.load("m.npz"))
        reveal_type(rnnext.RNN(3, 4).to_torch())
    """), "--strict")
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    assert out.count("[arg-type]") == 3, out
    assert 'Revealed type is "rnnext.rnn.RNN"' in out, out
    assert "Tuple[Any, Union[Any, None]]" in out or "tuple[Any, Any | None]" in out, out


def test_mypy_strict_accepts_the_readme_code_without_casts(tmp_path):
    pytest.importorskip("mypy")
    import re

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    source = "\n".join(blocks)
    assert "cast(" not in source and "type: ignore" not in source
    r = _mypy(tmp_path, source, "--strict", follow_torch=True)  # to_torch's types meet torch's
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------ 3 and 8: batch_first and Keras layers in interop
def test_from_torch_and_to_torch_carry_batch_first(rng):
    t_rnn = torch.nn.RNN(8, 6, num_layers=2, batch_first=True).double()
    t_lin = torch.nn.Linear(6, 3).double()
    rnn = rnnext.RNN.from_torch(t_rnn, t_lin)
    assert rnn.batch_first
    x = rng.standard_normal((4, 5, 8))  # (B, T, I)
    np.testing.assert_allclose(rnn(x)[0], t_lin(t_rnn(t(x))[0]).detach().numpy(), rtol=1e-10, atol=1e-12)
    back, _ = rnn.to_torch()
    assert back.batch_first
    assert not rnnext.RNN.from_torch(t_rnn, batch_first=False).batch_first  # an explicit choice wins
    # State dicts hold weights only, so they load into either layout.
    tm = rnnext.RNN(8, 6, 3, num_layers=2, dtype="float64")
    tm.load_state_dict(rnn.state_dict())
    np.testing.assert_allclose(tm(np.swapaxes(x, 0, 1))[0], np.swapaxes(rnn(x)[0], 0, 1), rtol=1e-12)


@pytest.fixture(scope="module")
def keras():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


@pytest.mark.parametrize("cell, gates", [("LSTM", 4), ("GRU", 3)])
def test_keras_weights_of_gated_cells_are_named(keras, cell, gates):
    layer = getattr(keras.layers, cell)(4)
    layer(np.zeros((1, 2, 3), np.float32))
    weights = layer.get_weights()
    msg = rf"look like a Keras {cell}'s .*kernel \(3, {4 * gates}\).*{gates} gates of 4 units"
    with pytest.raises(ValueError, match=msg):
        rnnext.RNN.from_keras_weights(weights)
    with pytest.raises(ValueError, match=msg):
        rnnext.RNN(3, 4).set_keras_weights(weights)
    with pytest.raises(ValueError, match=rf"is a Keras {cell}; rnnext is a vanilla RNN"):
        rnnext.RNN.from_keras(layer)


def test_from_keras_reads_activation_direction_and_layers(keras, rng):
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)  # Keras's (B, T, I)
    relu = keras.layers.SimpleRNN(4, activation="relu", return_sequences=True)
    want = keras.ops.convert_to_numpy(relu(x))
    rnn = rnnext.RNN.from_keras(relu)
    assert rnn.nonlinearity == "relu" and rnn.batch_first
    np.testing.assert_allclose(rnn(x)[0], want, rtol=1e-5, atol=1e-6)
    # from_keras_weights cannot see the activation: the silent tanh.
    assert rnnext.RNN.from_keras_weights(relu.get_weights()).nonlinearity == "tanh"
    bi = keras.layers.Bidirectional(keras.layers.SimpleRNN(4, activation="sigmoid", return_sequences=True))
    want = keras.ops.convert_to_numpy(bi(x))
    rnn = rnnext.RNN.from_keras(bi)
    assert rnn.bidirectional and rnn.nonlinearity == "sigmoid"
    np.testing.assert_allclose(rnn(x)[0], want, rtol=1e-5, atol=1e-6)
    seq = keras.Sequential([
        keras.Input((6,), dtype="int32"), keras.layers.Embedding(9, 3),
        keras.layers.SimpleRNN(5, return_sequences=True, use_bias=False),
        keras.layers.SimpleRNN(5), keras.layers.Dense(2, activation="softmax"),
    ])
    ids = rng.integers(0, 9, (2, 6))
    want = keras.ops.convert_to_numpy(seq(ids))  # return_sequences=False: the last step
    rnn = rnnext.RNN.from_keras(seq)
    assert (rnn.vocab_size, rnn.num_layers, rnn.output_activation) == (9, 2, "softmax")
    np.testing.assert_allclose(rnn(ids)[0][:, -1], want, rtol=1e-5, atol=1e-6)
    elu = keras.layers.SimpleRNN(4, activation="elu")
    elu(x)
    with pytest.raises(ValueError, match=r"activation='elu'; rnnext's nonlinearity is one of"):
        rnnext.RNN.from_keras(elu)
    with pytest.raises(TypeError, match="expected a Keras SimpleRNN, Bidirectional or Sequential, got Dense"):
        rnnext.RNN.from_keras(keras.layers.Dense(3))


def test_trainer_refuses_a_batch_first_model():
    task = rnnext.tasks.Reverse()
    model = rnnext.RNN(task.num_bits + 1, 8, task.num_bits, batch_first=True)
    with pytest.raises(ValueError, match="time-major .* got a batch_first=True model"):
        rnnext.Trainer(task, model, rnnext.optim.Adam(model))


def test_step_reads_tensors_that_require_grad_and_names_none(rng):
    rnn = rnnext.RNN(3, 4, dtype="float64", seed=0)
    x = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(rnn.step(t(x, True), t(np.zeros((1, 2, 4)), True))[1], rnn.step(x, np.zeros((1, 2, 4)))[1])
    with pytest.raises(TypeError, match="x: expected an array of real numbers, got None"):
        rnn.step(None)


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "sigmoid_cross_entropy", "mse"])
def test_losses_read_tensors_that_require_grad(rng, loss):
    z = rng.standard_normal((3, 2, 4))
    targets = rng.integers(0, 4, (3, 2)) if loss == "softmax_cross_entropy" else rng.random((3, 2, 4))
    mask = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    f = getattr(rnnext.losses, loss)
    want = f(z, targets, mask)
    got = f(t(z, True), torch.from_numpy(targets), t(mask, True))
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)


"""Sequence features: token ids, lengths, stacked and bidirectional layers, learned h0,
truncated BPTT, resets, initialisers, clipping, per-step gradient norms, dropout."""

import numpy as np
import pytest
from conftest import numeric_grad, rel_error
from reference import forward as ref_forward
from reference import suffix

import rnnext

TOL = 1e-6


def gradcheck(rnn, loss_fn, backward, extra=()):
    rnn.zero_grad()
    outs = backward()
    for name, p in rnn.params.items():
        analytic = rnn.grads[name].copy()
        err = rel_error(analytic, numeric_grad(loss_fn, p))
        assert err < TOL, f"{name}: relative error {err:.2e}"
    for (label, arr), analytic in zip(extra, outs):
        err = rel_error(analytic, numeric_grad(loss_fn, arr))
        assert err < TOL, f"{label}: relative error {err:.2e}"


def linear_loss(rnn, x, h0=None, lengths=None, seed=0):
    y, h_n = rnn(x, h0, lengths=lengths)
    rng = np.random.default_rng(seed)
    G, Gh = rng.standard_normal(y.shape), rng.standard_normal(h_n.shape)

    def loss_fn():
        y, h_n = rnn(x, h0, lengths=lengths)
        return float(np.sum(G * y) + np.sum(Gh * h_n))

    def backward():
        rnn(x, h0, lengths=lengths)
        return rnn.backward(G, Gh)

    return loss_fn, backward


# --------------------------------------------------------------------------- token inputs
def test_embedding_forward_equals_lookup_then_dense(rng):
    tok = rnnext.RNN(4, 5, 3, vocab_size=7, dtype="float64", seed=1)
    dense = rnnext.RNN(4, 5, 3, dtype="float64")
    for k in dense.params:
        dense.params[k][...] = tok.params[k]
    ids = rng.integers(0, 7, (6, 2))
    np.testing.assert_allclose(tok(ids)[0], dense(tok.params["E"][ids])[0], rtol=1e-13)
    y1, _ = tok(ids[:, 0])  # unbatched ids (T,)
    np.testing.assert_allclose(y1, tok(ids[:, :1])[0][:, 0], rtol=1e-13)


def test_embedding_gradients_by_finite_differences(rng):
    rnn = rnnext.RNN(3, 4, 2, vocab_size=6, num_layers=2, dtype="float64", seed=2)
    ids = rng.integers(0, 4, (5, 3))  # ids 4 and 5 unused: their rows get no gradient
    loss_fn, backward = linear_loss(rnn, ids)
    gradcheck(rnn, loss_fn, backward)
    assert not rnn.grads["E"][4:].any()
    rnn.zero_grad()
    rnn(ids)
    dx, _ = rnn.backward(np.ones((5, 3, 2)))
    assert dx is None  # no gradient with respect to integer ids


def test_embedding_against_torch(rng):
    torch = pytest.importorskip("torch")
    rnn = rnnext.RNN(3, 4, 2, vocab_size=6, dtype="float64", seed=3)
    emb = torch.nn.Embedding(6, 3).double()
    tr = torch.nn.RNN(3, 4).double()
    lin = torch.nn.Linear(4, 2).double()
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(rnn.params["E"]))
        tr.weight_ih_l0.copy_(torch.tensor(rnn.params["W_x"].T))
        tr.weight_hh_l0.copy_(torch.tensor(rnn.params["W_h"].T))
        tr.bias_ih_l0.copy_(torch.tensor(rnn.params["b_h"]))
        tr.bias_hh_l0.zero_()
        lin.weight.copy_(torch.tensor(rnn.params["W_y"].T))
        lin.bias.copy_(torch.tensor(rnn.params["b_y"]))
    ids = rng.integers(0, 6, (7, 2))
    y, _ = rnn(ids)
    yt = lin(tr(emb(torch.tensor(ids)))[0])
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
    g = rng.standard_normal(y.shape)
    rnn.zero_grad()
    rnn.backward(g)
    (yt * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(rnn.grads["E"], emb.weight.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_bad_token_ids_name_the_first_bad_position():
    rnn = rnnext.RNN(3, 4, vocab_size=5)
    ids = np.zeros((4, 3), int)
    ids[2, 1], ids[3, 0] = 5, -1
    with pytest.raises(ValueError, match=r"\[0, 5\), got 5 at x\[2, 1\]"):
        rnn(ids)
    with pytest.raises(ValueError, match=r"got -1 at x\[1\]"):
        rnn(np.array([0, -1, 9]))
    with pytest.raises(TypeError, match="integers"):
        rnn(np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match=r"\(T, B\)"):
        rnn(np.zeros((2, 2, 3), int))


# --------------------------------------------------------------------------- lengths
@pytest.mark.parametrize("layers, bidir", [(1, False), (1, True), (2, True)])
def test_padded_batch_equals_each_sequence_alone(rng, layers, bidir):
    rnn = rnnext.RNN(3, 4, 2, num_layers=layers, bidirectional=bidir, dtype="float64", seed=4)
    T, B = 6, 4
    lengths = np.array([6, 2, 0, 4])
    x = rng.standard_normal((T, B, 3))
    G = rng.standard_normal((T, B, 2))
    S = rnn.num_states
    h0 = rng.standard_normal((S, B, 4)) if S > 1 else rng.standard_normal((B, 4))
    y, h_n = rnn(x, h0, lengths=lengths)
    rnn.zero_grad()
    rnn.backward(G)
    batched = rnn.flat_grads.copy()
    rnn.zero_grad()
    for b in range(B):
        n = lengths[b]
        hb = h0[:, b : b + 1] if S > 1 else h0[b : b + 1]
        yb, hnb = rnn(x[:n, b : b + 1], hb)
        np.testing.assert_allclose(y[:n, b], yb[:, 0], rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(y[n:, b], 0.0)  # zero output past the end
        np.testing.assert_allclose(h_n[..., b, :], hnb[..., 0, :], rtol=1e-12, atol=1e-14)
        rnn.backward(G[:n, b : b + 1])
    np.testing.assert_allclose(batched, rnn.flat_grads, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("nonlinearity", ["tanh", "sigmoid", "relu"])
def test_lengths_forward_and_gradients(rng, nonlinearity):
    rnn = rnnext.RNN(2, 3, 2, nonlinearity=nonlinearity, num_layers=2, bidirectional=True, dtype="float64", seed=5)
    x, lengths = rng.standard_normal((5, 3, 2)), np.array([5, 1, 3])
    h0 = rng.standard_normal((4, 3, 3)) * 0.5
    y, h_n = rnn(x, h0, lengths=lengths)
    ref_y, ref_h = ref_forward(rnn.params, rnn.config, x, h0, lengths)
    np.testing.assert_allclose(y, ref_y, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h_n, ref_h, rtol=1e-12, atol=1e-14)
    loss_fn, backward = linear_loss(rnn, x, h0, lengths)
    gradcheck(rnn, loss_fn, backward, extra=[("x", x), ("h0", h0)])


# ------------------------------------------------------------------ stacked and bidirectional
def test_parameter_names_of_a_stacked_bidirectional_model():
    rnn = rnnext.RNN(3, 4, 2, num_layers=2, bidirectional=True, learn_h0=True)
    assert list(rnn.params) == [
        "W_x", "W_h", "b_h",
        "W_x_reverse", "W_h_reverse", "b_h_reverse",
        "W_x_l1", "W_h_l1", "b_h_l1",
        "W_x_l1_reverse", "W_h_l1_reverse", "b_h_l1_reverse",
        "h0", "W_y", "b_y",
    ]  # fmt: skip
    assert rnn.params["W_x_l1"].shape == (8, 4) and rnn.params["W_y"].shape == (8, 2)
    assert rnn.params["h0"].shape == (4, 4)


def test_stacked_sigmoid_against_the_numpy_reference(rng):
    rnn = rnnext.RNN(3, 4, 2, nonlinearity="sigmoid", output_activation="softmax", num_layers=3,
                     bidirectional=True, dtype="float64", seed=6)  # fmt: skip
    x = rng.standard_normal((5, 2, 3))
    y, h_n = rnn(x)
    ref_y, ref_h = ref_forward(rnn.params, rnn.config, x)
    np.testing.assert_allclose(y, ref_y, rtol=1e-12)
    np.testing.assert_allclose(h_n, ref_h, rtol=1e-12)
    loss_fn, backward = linear_loss(rnn, x)
    gradcheck(rnn, loss_fn, backward, extra=[("x", x)])


# --------------------------------------------------------------------------- learned h0
def test_learned_h0(rng):
    rnn = rnnext.RNN(2, 3, 2, num_layers=2, learn_h0=True, dtype="float64", seed=7)
    rnn.params["h0"][...] = rng.standard_normal((2, 3))
    x = rng.standard_normal((4, 3, 2))
    y, _ = rnn(x)
    y_explicit, _ = rnn(x, np.repeat(rnn.params["h0"][:, None], 3, axis=1))
    np.testing.assert_array_equal(y, y_explicit)
    loss_fn, backward = linear_loss(rnn, x, lengths=np.array([4, 2, 0]))
    gradcheck(rnn, loss_fn, backward)
    assert rnn.grads["h0"].any()
    rnn.zero_grad()  # an explicit h0 overrides the learned one, which then gets no gradient
    rnn(x, np.zeros((2, 3, 3)))
    rnn.backward(np.ones((4, 3, 2)))
    assert not rnn.grads["h0"].any()


# ------------------------------------------------------------------ truncated BPTT, resets
def test_chunked_forward_equals_one_long_forward(rng):
    rnn = rnnext.RNN(3, 5, 2, num_layers=2, bidirectional=False, dtype="float64", seed=8)
    x = rng.standard_normal((30, 4, 3))
    y_full, h_full = rnn(x)
    h, ys = None, []
    for start in range(0, 30, 7):  # uneven chunks: 7, 7, 7, 7, 2
        y, h = rnn(x[start : start + 7], h)
        ys.append(y)
    np.testing.assert_allclose(np.concatenate(ys), y_full, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, h_full, rtol=1e-12, atol=1e-14)


def test_truncated_bptt_cuts_the_gradient_between_chunks(rng):
    rnn = rnnext.RNN(2, 3, 2, dtype="float64", seed=9)
    x = rng.standard_normal((8, 2, 2))
    _, h = rnn(x[:4])
    rnn(x[4:], h)  # the second chunk starts from the carried state...
    rnn.zero_grad()
    rnn.backward(np.ones((4, 2, 2)))
    cut = rnn.flat_grads.copy()
    rnn.zero_grad()  # ...and its gradient equals that of a fresh run from the same state
    rnn(x[4:], h.copy())
    rnn.backward(np.ones((4, 2, 2)))
    np.testing.assert_array_equal(cut, rnn.flat_grads)


@pytest.mark.parametrize("learn_h0", [False, True])
def test_reset_state_zeroes_exactly_the_chosen_rows(rng, learn_h0):
    rnn = rnnext.RNN(2, 3, num_layers=2, learn_h0=learn_h0, seed=1)
    if learn_h0:
        rnn.params["h0"][...] = 0.25
    h = rng.standard_normal((2, 4, 3)).astype(np.float32)
    done = np.array([False, True, False, True])
    out = rnn.reset_state(h, done)
    fill = 0.25 if learn_h0 else 0.0
    np.testing.assert_array_equal(out[:, done], fill)
    np.testing.assert_array_equal(out[:, ~done], h[:, ~done])
    assert not np.shares_memory(out, h)
    with pytest.raises(TypeError, match="done"):
        rnn.reset_state(h, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="h"):
        rnn.reset_state(h, np.array([True, False]))


# ------------------------------------------------------------ exploding and vanishing gradients
def test_initialisers():
    H = 16
    ident = rnnext.RNN(4, H, init="identity", nonlinearity="relu", seed=0)
    np.testing.assert_array_equal(ident.params["W_h"], np.eye(H))
    assert not ident.params["b_h"].any() and np.abs(ident.params["W_x"]).max() < 0.01
    orth = rnnext.RNN(4, H, init="orthogonal", dtype="float64", seed=0)
    np.testing.assert_allclose(orth.params["W_h"] @ orth.params["W_h"].T, np.eye(H), atol=1e-12)
    xav = rnnext.RNN(4, H, init="xavier", seed=0)
    bound = np.sqrt(6 / (4 + H))
    assert np.abs(xav.params["W_x"]).max() <= bound and np.abs(xav.params["W_x"]).max() > 0.5 * bound


def test_clip_grad_norm(rng):
    rnn = rnnext.RNN(3, 4, 2, dtype="float64", seed=0)
    rnn(rng.standard_normal((5, 2, 3)))
    rnn.backward(rng.standard_normal((5, 2, 2)) * 100)
    before = np.linalg.norm(rnn.flat_grads)
    direction = rnn.flat_grads / before
    assert rnnext.optim.clip_grad_norm(rnn, 1.0) == pytest.approx(before)
    assert np.linalg.norm(rnn.flat_grads) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(rnn.flat_grads / np.linalg.norm(rnn.flat_grads), direction, rtol=1e-10)
    assert rnnext.optim.clip_grad_norm(rnn, 10.0) == pytest.approx(1.0, rel=1e-5)  # below: unchanged
    assert np.linalg.norm(rnn.flat_grads) == pytest.approx(1.0, rel=1e-5)
    rnn.flat_grads[0] = np.nan
    assert np.isnan(rnnext.optim.clip_grad_norm(rnn, 1.0))
    with pytest.raises(ValueError, match="not finite"):
        rnnext.optim.clip_grad_norm(rnn, 1.0, error_if_nonfinite=True)


def test_grad_norms_are_the_per_step_state_gradients(rng):
    """|dL/ds_t| for each t, against PyTorch unrolled with RNNCell and retained grads."""
    torch = pytest.importorskip("torch")
    rnn = rnnext.RNN(3, 4, 2, dtype="float64", seed=1)
    x, g = rng.standard_normal((6, 2, 3)), rng.standard_normal((6, 2, 2))
    rnn(x)
    rnn.backward(g)
    cell = torch.nn.RNNCell(3, 4).double()
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor(rnn.params["W_x"].T))
        cell.weight_hh.copy_(torch.tensor(rnn.params["W_h"].T))
        cell.bias_ih.copy_(torch.tensor(rnn.params["b_h"]))
        cell.bias_hh.zero_()
    h, states = torch.zeros(2, 4, dtype=torch.float64), []
    for t in range(6):
        h = cell(torch.tensor(x[t]), h)
        h.retain_grad()
        states.append(h)
    y = torch.stack(states) @ torch.tensor(rnn.params["W_y"]) + torch.tensor(rnn.params["b_y"])
    (y * torch.tensor(g)).sum().backward()
    expected = [s.grad.norm().item() for s in states]
    np.testing.assert_allclose(rnn.grad_norms[0], expected, rtol=1e-12)


def test_grad_norms_show_vanishing_gradients():
    """With small recurrent weights |dL/ds_t| decays geometrically towards t = 0."""
    rnn = rnnext.RNN(1, 8, dtype="float64", seed=0)
    rnn.params["W_h"][...] = 0.1 * np.eye(8)
    T = 20
    rnn(np.zeros((T, 1, 1)))
    g = np.zeros((T, 1, 8))
    g[-1] = 1.0  # loss on the last step only
    rnn.backward(g)
    n = rnn.grad_norms[0]
    assert n[0] < 1e-15 * n[-1] and np.all(np.diff(n) > 0)


# --------------------------------------------------------------------------- dropout
def test_dropout_is_seeded_off_in_eval_and_differentiable(rng):
    kw = dict(num_layers=3, dropout=0.5, dtype="float64")
    a, b = rnnext.RNN(3, 6, 2, seed=11, **kw), rnnext.RNN(3, 6, 2, seed=11, **kw)
    x = rng.standard_normal((5, 2, 3))
    ya, yb = a(x)[0], b(x)[0]
    np.testing.assert_array_equal(ya, yb)  # same seed, same masks
    a.eval()
    y_eval = a(x)[0]
    assert not np.allclose(ya, y_eval)
    nodrop = rnnext.RNN(3, 6, 2, num_layers=3, dtype="float64")
    nodrop.flat_params[...] = a.flat_params
    np.testing.assert_allclose(y_eval, nodrop(x)[0], rtol=1e-14, atol=1e-15)  # no dropout at inference
    a.train()
    G = rng.standard_normal(ya.shape)

    def loss_fn():  # reseeding replays the same dropout masks
        a._core.seed(123)
        return float(np.sum(G * a(x)[0]))

    def backward():
        loss_fn()
        return a.backward(G)

    gradcheck(a, loss_fn, backward, extra=[("x", x)])


@pytest.mark.parametrize("p", [0.2, 0.7])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_drops_a_fraction_p_and_scales_the_rest_by_1_over_1_minus_p(p, bidirectional):
    """Layer 0 outputs ones (relu(b_h = 1), no weights); layer 1 is relu(x W_x) with W_x = I:
    its states are the dropout mask on layer 1's input. Over 480 000 seeded draws the
    fraction dropped is p within 0.005 (more than 8 standard deviations: sqrt(p (1 - p) / n)
    <= 7.3e-4), and every kept value is exactly 1 / (1 - p). p != 0.5 catches a keep/drop
    inversion."""
    rnn = rnnext.RNN(1, 80, num_layers=2, nonlinearity="relu", dropout=p, bidirectional=bidirectional,
                     dtype="float64", seed=2024)
    rnn.flat_params[...] = 0.0
    D = 2 if bidirectional else 1
    for d in range(D):  # layer 1's direction d reads layer 0's units d*80 .. d*80+79
        rnn.params["b_h" + suffix(0, d)][...] = 1.0
        rnn.params["W_x" + suffix(1, d)][...] = np.eye(D * 80)[:, d * 80 : (d + 1) * 80]
    T, B = 100, 60 // D
    mask, _ = rnn(np.zeros((T, B, 1)))  # (T, B, D * 80): the mask of layer 1's input
    n = mask.size
    assert n == T * B * D * 80 == 480_000
    dropped = mask == 0.0
    assert abs(dropped.mean() - p) < 0.005, f"dropped {dropped.mean():.4f} of the inputs, p = {p}"
    np.testing.assert_array_equal(mask[~dropped], 1.0 / (1.0 - p))
    # Fresh masks at every step and for every sequence, not one mask reused.
    assert not np.array_equal(mask[0], mask[1]) and not np.array_equal(mask[:, 0], mask[:, 1])
    rnn.eval()
    np.testing.assert_array_equal(rnn(np.zeros((T, B, 1)))[0], 1.0)  # no dropout at inference

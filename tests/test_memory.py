"""What the engine keeps between calls, and the chunked backward pass that keeps it small.

The engine keeps the states s_t (the stored activations, T*B*H per layer and direction)
and, when it has to, a copy of x; backward() computes dL/d(pre-activation) a chunk of
steps at a time into a workspace of the call only. References are independent: PyTorch
(float64, nn.RNN and an unrolled nn.RNNCell) and NumPy's scatter-add. No timings here.
"""

import gc

import numpy as np
import pytest

import rnnext

torch = pytest.importorskip("torch")
from conftest import assert_close, torch_run  # noqa: E402

TOL = 1e-10  # float64 against PyTorch


@pytest.fixture
def threads():
    before = rnnext.get_num_threads()
    yield
    rnnext.set_num_threads(before)


@pytest.fixture
def chunk_rows():
    """Forces backward's chunks to a number of rows (steps * B; None: chosen by shape)."""
    yield lambda rows: rnnext._core._set_backward_chunk_rows(rows or 0)
    rnnext._core._set_backward_chunk_rows(0)


def torch_grads(rnn, x, h0, gy, gh, lengths):
    """y, h_n, dx, dh0 and every parameter gradient of rnn's twin in PyTorch."""
    rnn_t, lin_t = rnn.to_torch()
    xt, ht, yt, hnt = torch_run(rnn_t, lin_t, x, h0, lengths)
    ((yt * torch.tensor(gy)).sum() + (hnt * torch.tensor(gh)).sum()).backward()
    out = dict(y=yt.detach().numpy(), h_n=hnt.detach().numpy(), dx=xt.grad.numpy(), dh0=ht.grad.numpy())
    for l in range(rnn.num_layers):
        for d in range(rnn.num_directions):
            t, r = f"_l{l}" + ("_reverse" if d else ""), (f"_l{l}" if l else "") + ("_reverse" if d else "")
            out["W_x" + r] = getattr(rnn_t, "weight_ih" + t).grad.numpy().T
            out["W_h" + r] = getattr(rnn_t, "weight_hh" + t).grad.numpy().T
            out["b_h" + r] = getattr(rnn_t, "bias_hh" + t).grad.numpy()
    if lin_t is not None:
        out["W_y"] = lin_t.weight.grad.numpy().T
        out["b_y"] = lin_t.bias.grad.numpy()
    return out


# Backward in many chunks of steps (forced; the last one shorter), and once in the chunks
# the shape itself gets; with two threads the recurrence is split by batch rows or by
# columns of W_h (H = 370: W_h over 1 MB).
CHUNKED = [
    # T, B, I, H, O, layers, bidirectional, nonlinearity, lengths, threads, chunk rows
    (121, 2, 3, 8, 4, 1, False, "tanh", True, 1, 2 * 16),
    (61, 5, 4, 6, None, 3, True, "relu", True, 1, 5 * 9),
    (52, 4, 5, 7, 3, 3, False, "tanh", False, 1, 4 * 10),
    (300, 8, 5, 128, 7, 1, True, "tanh", True, 2, None),  # two chunks of its own
    (60, 4, 6, 370, None, 1, False, "tanh", True, 2, 4 * 16),
    (200, 1, 3, 16, 2, 2, True, "relu", False, 2, 30),
]


@pytest.mark.parametrize("case", CHUNKED)
def test_chunked_backward_matches_torch(case, threads, chunk_rows):
    T, B, I, H, O, L, bidir, act, with_lengths, n_threads, rows = case
    rnnext.set_num_threads(n_threads)
    chunk_rows(rows)
    rng = np.random.default_rng(T + B)
    rnn = rnnext.RNN(I, H, O, nonlinearity=act, num_layers=L, bidirectional=bidir, dtype="float64", seed=2)
    S = L * rnn.num_directions
    x = rng.standard_normal((T, B, I))
    h0 = 0.5 * rng.standard_normal((S, B, H))
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    if with_lengths:
        lengths[0] = T
    y, h_n = rnn(x, h0[0] if S == 1 else h0, lengths=lengths)
    gy = rng.standard_normal(y.shape)
    gh = rng.standard_normal((S, B, H))
    rnn.zero_grad()
    dx, dh0 = rnn.backward(gy, gh[0] if S == 1 else gh)
    want = torch_grads(rnn, x, h0, gy, gh, lengths)
    assert_close(y, want["y"], TOL, "y")
    assert_close(dx, want["dx"], TOL, "dx")
    assert_close(dh0, want["dh0"][0] if S == 1 else want["dh0"], TOL, "dh0")
    for name, g in rnn.grads.items():
        assert_close(g, want[name], TOL, name)


def test_chunked_grad_norms_match_torch(chunk_rows):
    """|dL/ds_t| over several chunks, against an unrolled RNNCell with retained grads."""
    T, B, I, H = 150, 2, 3, 5
    chunk_rows(2 * 20)
    rng = np.random.default_rng(0)
    rnn = rnnext.RNN(I, H, 2, dtype="float64", seed=1)
    x, g = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, 2))
    rnn(x)
    rnn.backward(g)
    cell = torch.nn.RNNCell(I, H).double()
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor(rnn.params["W_x"].T))
        cell.weight_hh.copy_(torch.tensor(rnn.params["W_h"].T))
        cell.bias_ih.copy_(torch.tensor(rnn.params["b_h"]))
        cell.bias_hh.zero_()
    h, states = torch.zeros(B, H, dtype=torch.float64), []
    for t in range(T):
        h = cell(torch.tensor(x[t]), h)
        h.retain_grad()
        states.append(h)
    y = torch.stack(states) @ torch.tensor(rnn.params["W_y"]) + torch.tensor(rnn.params["b_y"])
    (y * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(rnn.grad_norms[0], [s.grad.norm().item() for s in states], rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("bidir", [False, True])
def test_chunked_token_inputs_match_torch(bidir, chunk_rows):
    """dE is the scatter-add of dL/dx over the ids (the embeddings are looked up again,
    chunk by chunk, in backward)."""
    T, B, V, I, H, O = 100, 3, 11, 4, 6, 5
    chunk_rows(3 * 13)
    rng = np.random.default_rng(3)
    rnn = rnnext.RNN(I, H, O, vocab_size=V, bidirectional=bidir, dtype="float64", seed=4)
    twin = rnnext.RNN(I, H, O, bidirectional=bidir, dtype="float64")
    for name, p in twin.params.items():
        p[...] = rnn.params[name]
    ids = rng.integers(0, V, (T, B))
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    y, _ = rnn(ids, lengths=lengths)
    gy = rng.standard_normal(y.shape)
    rnn.zero_grad()
    rnn.backward(gy)
    S = twin.num_states
    x = rnn.params["E"][ids]
    want = torch_grads(twin, x, np.zeros((S, B, H)), gy, np.zeros((S, B, H)), lengths)
    dE = np.zeros((V, I))
    np.add.at(dE, ids.reshape(-1), want["dx"].reshape(-1, I))
    assert_close(rnn.grads["E"], dE, TOL, "E")
    for name in twin.params:
        assert_close(rnn.grads[name], want[name], TOL, name)


@pytest.mark.parametrize("bidir", [False, True])
def test_chunked_backward_with_dropout_matches_finite_differences(bidir, chunk_rows):
    """Dropout's choices are kept a byte each and applied again chunk by chunk."""
    from conftest import numeric_grad, rel_error

    T, B, I, H = 60, 4, 2, 3
    chunk_rows(4 * 7)
    rng = np.random.default_rng(7)
    rnn = rnnext.RNN(I, H, 2, num_layers=3, bidirectional=bidir, dropout=0.4, dtype="float64", seed=8)
    x, G = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, 2))

    def loss():  # reseeding replays the same dropout choices
        rnn._core.seed(5)
        return float(np.sum(G * rnn(x)[0]))

    loss()
    rnn.zero_grad()
    dx, _ = rnn.backward(G)
    names = ["W_x_l1", "W_h_l2", "b_h_l1"] + (["W_x_l2_reverse"] if bidir else [])
    for name in names:
        assert rel_error(rnn.grads[name], numeric_grad(loss, rnn.params[name])) < 1e-7, name
    assert rel_error(dx[:3], numeric_grad(loss, x[:3])) < 1e-7


# --------------------------------------------------------------- changing x after forward
def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def read_only_view(a):
    v = a.view()
    v.flags.writeable = False
    return v  # its base stays writable: must be copied


@pytest.mark.parametrize(
    "kind, model_dtype, make",
    [
        ("writable float32", "float32", lambda a: a.astype(np.float32)),
        ("float64 into float32 (converted)", "float32", lambda a: a),
        ("non-contiguous (converted)", "float64", lambda a: np.repeat(a, 2, axis=2)[:, :, ::2]),
        ("read-only view of a writable array", "float64", read_only_view),
        ("unbatched writable", "float64", lambda a: a[:, 0]),
    ],
)
def test_changing_x_after_forward_keeps_the_gradients(kind, model_dtype, make, chunk_rows):
    """The README's promise: the caller may change x before backward()."""
    T, B, I, H = 100, 4, 5, 7
    chunk_rows(4 * 30)
    rng = np.random.default_rng(5)
    base = rng.standard_normal((T, B, I))
    rnn = rnnext.RNN(I, H, 3, dtype=model_dtype, seed=0)

    def grads_of(x):
        y, _ = rnn(x)
        gy = np.ones_like(y)
        rnn.zero_grad()
        dx, _ = rnn.backward(gy)
        return rnn.flat_grads.copy(), dx

    x = make(base.copy())
    want, want_dx = grads_of(x.copy())
    y, _ = rnn(x)
    writable = x.base if kind.startswith("read-only view") else x
    writable[...] = 100.0  # everything the caller can reach
    rnn.zero_grad()
    dx, _ = rnn.backward(np.ones_like(y))
    np.testing.assert_array_equal(rnn.flat_grads, want, err_msg=kind)
    np.testing.assert_array_equal(dx, want_dx, err_msg=kind)


def test_a_kept_read_only_input_outlives_the_callers_reference():
    """A read-only x is kept by reference, not copied: it must stay alive and equal."""
    T, B, I, H = 50, 3, 4, 6
    rng = np.random.default_rng(6)
    x = read_only(rng.standard_normal((T, B, I)))
    rnn = rnnext.RNN(I, H, 2, dtype="float64", seed=0)
    y, _ = rnn(x.copy())
    rnn.zero_grad()
    rnn.backward(np.ones_like(y))
    want = rnn.flat_grads.copy()
    copied = rnn._core.workspace_bytes
    rnn(x)
    assert rnn._core.workspace_bytes == copied - x.nbytes  # a reference, not a copy
    del x
    gc.collect()
    np.zeros((T, B, I)) + 7.0  # likely to reuse the freed memory if x had been freed
    rnn.zero_grad()
    rnn.backward(np.ones_like(y))
    np.testing.assert_array_equal(rnn.flat_grads, want)


# ------------------------------------------------------------------ memory kept between calls
MEMORY = [
    # T, B, I, H, O, layers, bidirectional, with lengths, vocabulary, learn_h0, dtype
    (100, 16, 64, 128, 64, 1, False, False, None, False, "float32"),
    (50, 64, 512, 1024, 512, 1, False, False, None, False, "float32"),  # bench "large"
    (200, 1, 32, 64, 32, 1, False, False, None, False, "float32"),  # bench "latency"
    (60, 8, 16, 32, None, 2, True, True, None, False, "float64"),
    (80, 4, 10, 40, 7, 3, False, True, None, True, "float32"),
    (70, 5, 12, 24, 30, 2, False, False, 50, False, "float32"),
]


def kept_and_activations(case, x_kind):
    T, B, I, H, O, L, bidir, with_lengths, vocab, learn_h0, dtype = case
    rng = np.random.default_rng(T)
    rnn = rnnext.RNN(I, H, O, num_layers=L, bidirectional=bidir, vocab_size=vocab, learn_h0=learn_h0,
                     dtype=dtype, seed=0)
    if vocab:
        x = rng.integers(0, vocab, (T, B))
    else:
        x = rng.standard_normal((T, B, I)).astype(dtype)
        x = {"writable": x, "read-only": read_only(x), "converted": x.astype(np.float16)}[x_kind]
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    for _ in range(2):
        y, _ = rnn(x, lengths=lengths)
        rnn.backward(np.ones_like(y))
    activations = T * B * H * L * rnn.num_directions * rnn.dtype.itemsize
    return rnn, rnn._core.workspace_bytes, activations


@pytest.mark.parametrize("x_kind", ["read-only", "converted"])
@pytest.mark.parametrize("case", MEMORY)
def test_kept_memory_is_at_most_1_5x_the_activations(case, x_kind):
    """Issue 10: at most 1.5 x T*B*H per layer and direction between calls, when x needs
    no copy (a converted private array counts as kept)."""
    _, kept, activations = kept_and_activations(case, x_kind)
    assert kept <= 1.5 * activations, f"kept {kept / activations:.2f} x the activations"


@pytest.mark.parametrize("case", [c for c in MEMORY if c[2] <= c[3] / 2 or c[8]])
def test_a_copy_of_x_is_counted_and_stays_within_1_5x_when_x_is_narrow(case):
    """A writable x is copied (T*B*I more); with I <= H/2 the total stays within 1.5 x."""
    _, kept, activations = kept_and_activations(case, "writable")
    _, kept_ref, _ = kept_and_activations(case, "read-only")
    T, B, I = case[:3]
    assert kept - kept_ref == (0 if case[8] else T * B * I * np.dtype(case[10]).itemsize)
    assert kept <= 1.5 * activations, f"kept {kept / activations:.2f} x the activations"


def test_dropout_keeps_a_byte_per_choice():
    """With dropout the states and one byte per dropped input are kept (T*B*H each)."""
    T, B, I, H, L = 50, 4, 6, 16, 3
    rnn = rnnext.RNN(I, H, 2, num_layers=L, dropout=0.3, dtype="float32", seed=0)
    x = read_only(np.ones((T, B, I), np.float32))
    y, _ = rnn(x)
    rnn.backward(np.ones_like(y))
    assert rnn._core.workspace_bytes == T * B * H * (4 * L + (L - 1))
    rnn.eval()
    rnn(x)
    assert rnn._core.workspace_bytes == T * B * H * 4 * L


def test_kept_memory_follows_the_last_call():
    """Nothing grows over calls, and a shorter call after a longer one keeps less."""
    rnn = rnnext.RNN(8, 32, 4, dtype="float32", seed=0)
    rng = np.random.default_rng(0)
    sizes = {}
    for T in (400, 100, 400, 100):
        x = rng.standard_normal((T, 4, 8)).astype(np.float32)
        y, _ = rnn(x)
        rnn.backward(np.ones_like(y))
        sizes.setdefault(T, set()).add(rnn._core.workspace_bytes)
    assert len(sizes[400]) == len(sizes[100]) == 1
    (long,), (short,) = sizes[400], sizes[100]
    assert short * 4 == long  # everything kept here is proportional to T


def test_backward_workspace_is_bounded_by_chunks():
    """The call's workspace holds a chunk of steps (a quarter here), not all T of them."""
    T, B, I, H = 8000, 8, 4, 64
    rnn = rnnext.RNN(I, H, 3, dtype="float32", seed=0)
    x = np.zeros((T, B, I), np.float32)
    y, _ = rnn(x)
    rnn.backward(np.ones_like(y))
    activations = T * B * H * 4
    assert rnn._core.scratch_bytes <= 0.3 * activations + 4 * (H * H + 2 * B * H + 2 * T)

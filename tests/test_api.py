"""The NumPy-facing behaviour of RNN: views, shapes, conversions, errors."""

import numpy as np
import pytest
from reference import forward as ref_forward

import rnnext


def test_params_are_named_zero_copy_views():
    rnn = rnnext.RNN(3, 4, 2, seed=0)
    shapes = {k: v.shape for k, v in rnn.params.items()}
    assert shapes == {"W_x": (3, 4), "W_h": (4, 4), "b_h": (4,), "W_y": (4, 2), "b_y": (2,)}
    assert rnn.flat_params.size == sum(int(np.prod(s)) for s in shapes.values())
    for name, p in rnn.params.items():
        assert np.shares_memory(p, rnn.flat_params) and p.flags.writeable
        assert np.shares_memory(rnn.grads[name], rnn.flat_grads)
    assert rnn.flat_params.ctypes.data % 64 == 0  # one aligned buffer
    x = np.ones((2, 1, 3), np.float32)
    y0, _ = rnn(x)
    rnn.params["b_y"][...] += 1.0  # writing a view changes the model
    y1, _ = rnn(x)
    np.testing.assert_allclose(y1 - y0, 1.0, rtol=1e-6)


def test_views_outlive_the_model_object():
    p = rnnext.RNN(2, 3, seed=0).params["W_h"]
    import gc

    gc.collect()
    p[...] = 1.0  # the view keeps the engine's buffer alive
    assert p.sum() == 9.0


def test_without_output_layer_y_is_the_states(rng):
    rnn = rnnext.RNN(3, 5, nonlinearity="sigmoid", dtype="float64", seed=1)
    x = rng.standard_normal((4, 2, 3))
    y, h_n = rnn(x)
    ref_y, ref_h = ref_forward(rnn.params, rnn.config, x)
    np.testing.assert_allclose(y, ref_y, rtol=1e-12)
    np.testing.assert_allclose(h_n, ref_h[0], rtol=1e-12)
    np.testing.assert_array_equal(y[-1], h_n)


def test_call_is_forward_and_default_h0_is_zero(rng):
    rnn = rnnext.RNN(3, 4, 2, dtype="float64", seed=1)
    x = rng.standard_normal((5, 2, 3))
    a = rnn(x)
    b = rnn.forward(x, np.zeros((2, 4)))
    np.testing.assert_array_equal(a[0], b[0])


def test_unbatched_drops_the_batch_axis(rng):
    rnn = rnnext.RNN(3, 4, 2, dtype="float64", seed=1)
    x = rng.standard_normal((5, 3))
    y, h = rnn(x)
    assert y.shape == (5, 2) and h.shape == (4,)
    yb, hb = rnn(x[:, None, :])
    np.testing.assert_array_equal(y, yb[:, 0])
    np.testing.assert_array_equal(h, hb[0])


def test_any_array_like_is_accepted(rng):
    rnn = rnnext.RNN(3, 4, 2, dtype="float32", seed=1)
    base = rng.standard_normal((6, 4, 3))
    expected, _ = rnn(base.astype(np.float32))
    for x in (
        base,  # float64 converted to the model's dtype
        base.tolist(),  # nested lists
        np.asfortranarray(base),
        np.ascontiguousarray(base[::-1])[::-1],  # negative strides
        np.repeat(base, 2, axis=2)[:, :, ::2],  # non-contiguous view
    ):
        np.testing.assert_allclose(rnn(x)[0], expected, rtol=1e-6)
    ro = base.copy()
    ro.flags.writeable = False
    np.testing.assert_allclose(rnn(ro)[0], expected, rtol=1e-6)
    ints = rng.integers(0, 3, (6, 4, 3))
    np.testing.assert_allclose(rnn(ints)[0], rnn(ints.astype(np.float32))[0])


def test_inputs_are_not_written(rng):
    rnn = rnnext.RNN(3, 4, 2, dtype="float64", seed=1)
    x, h0 = rng.standard_normal((5, 2, 3)), rng.standard_normal((2, 4))
    g, gh = rng.standard_normal((5, 2, 2)), rng.standard_normal((2, 4))
    copies = [a.copy() for a in (x, h0, g, gh)]
    rnn(x, h0)
    rnn.backward(g, gh)
    for a, c in zip((x, h0, g, gh), copies):
        np.testing.assert_array_equal(a, c)


def test_backward_accumulates_and_zero_grad_clears(rng):
    rnn = rnnext.RNN(3, 4, 2, dtype="float64", seed=1)
    x, g = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 2))
    rnn(x)
    rnn.backward(g)
    once = rnn.flat_grads.copy()
    rnn.backward(g)  # a second backward for the same forward adds again
    np.testing.assert_allclose(rnn.flat_grads, 2 * once, rtol=1e-12)
    rnn.zero_grad()
    assert not rnn.flat_grads.any()


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.dtype("float64")])
def test_dtypes(dtype):
    rnn = rnnext.RNN(2, 3, dtype=dtype)
    assert rnn.dtype == np.dtype(dtype)
    y, h = rnn(np.zeros((2, 1, 2)))
    assert y.dtype == rnn.dtype and h.dtype == rnn.dtype and rnn.flat_params.dtype == rnn.dtype


def test_seed_makes_initialisation_reproducible():
    a, b, c = rnnext.RNN(3, 4, 2, seed=5), rnnext.RNN(3, 4, 2, seed=5), rnnext.RNN(3, 4, 2, seed=6)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert not np.array_equal(a.flat_params, c.flat_params)
    k = 1 / np.sqrt(4)
    assert np.all(np.abs(a.params["W_h"]) <= k)  # PyTorch's default uniform(-1/sqrt(H), 1/sqrt(H))


def test_repr():
    r = repr(rnnext.RNN(3, 4, 2, nonlinearity="relu", dtype="float64"))
    assert r == (
        "RNN(3, 4, output_size=2, nonlinearity='relu', output_activation=None, dtype='float64', "
        "num_layers=1, bidirectional=False, dropout=0.0, vocab_size=None, learn_h0=False, "
        "init='default', batch_first=False)"
    )


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        (dict(input_size=0, hidden_size=2), ValueError, "input_size"),
        (dict(input_size=2, hidden_size=-1), ValueError, "hidden_size"),
        (dict(input_size=2.5, hidden_size=2), TypeError, "input_size"),
        (dict(input_size=2, hidden_size=2, output_size=0), ValueError, "output_size"),
        (dict(input_size=2, hidden_size=2, nonlinearity="gelu"), ValueError, "nonlinearity"),
        (dict(input_size=2, hidden_size=2, output_size=2, output_activation="tanh"), ValueError, "output_activation"),
        (dict(input_size=2, hidden_size=2, output_activation="softmax"), ValueError, "output_activation"),
        (dict(input_size=2, hidden_size=2, dtype="float16"), ValueError, "dtype"),
        (dict(input_size=2, hidden_size=2, dtype="banana"), TypeError, "dtype"),
        (dict(input_size=2, hidden_size=2, num_layers=0), ValueError, "num_layers"),
        (dict(input_size=2, hidden_size=2, dropout=1.0), ValueError, "dropout"),
        (dict(input_size=2, hidden_size=2, init="he"), ValueError, "init"),
        (dict(input_size=2, hidden_size=2, vocab_size=0), ValueError, "vocab_size"),
        (dict(input_size=2, hidden_size=2, bidirectional="yes"), TypeError, "bidirectional"),
        (dict(input_size=2, hidden_size=2, seed=-1), ValueError, "seed"),
    ],
)
def test_constructor_errors(kwargs, error, text):
    with pytest.raises(error, match=text):
        rnnext.RNN(**kwargs)


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="hiden"):
        rnnext.RNN(2, 3, hiden=4)


@pytest.mark.parametrize(
    "call, error, text",
    [
        (lambda r: r(np.zeros((4, 2, 5))), ValueError, r"axis 2 \(input_size\) should have size 3, got 5"),
        (lambda r: r(np.zeros((4,))), ValueError, "x: expected shape"),
        (lambda r: r(np.zeros((4, 2, 3, 1))), ValueError, "x: expected shape"),
        (lambda r: r(np.zeros((4, 2, 3), complex)), TypeError, "x: expected real numbers"),
        (lambda r: r(np.array([["a"]])), TypeError, "x"),
        (lambda r: r(np.zeros((4, 2, 3)), np.zeros((3, 4))), ValueError, r"h0: axis 0 \(B\) should have size 2"),
        (lambda r: r(np.zeros((4, 2, 3)), np.zeros((2, 5))), ValueError, r"h0: axis 1 \(H\)"),
        (lambda r: r(np.zeros((4, 2, 3)), lengths=[1, 5]), ValueError, r"lengths: expected values in \[0, 4\]"),
        (lambda r: r(np.zeros((4, 2, 3)), lengths=[1, 2, 3]), ValueError, r"lengths: axis 0 \(B\)"),
        (lambda r: r(np.zeros((4, 3)), lengths=[1]), ValueError, "lengths"),
    ],
)
def test_forward_errors(call, error, text):
    rnn = rnnext.RNN(3, 4, 2)
    with pytest.raises(error, match=text):
        call(rnn)


def test_backward_errors():
    rnn = rnnext.RNN(3, 4, 2)
    with pytest.raises(ValueError, match="forward"):
        rnn.backward(np.zeros((4, 2, 2)))
    rnn(np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match=r"grad: expected the shape of y, \(4, 2, 2\), got \(4, 2, 3\)"):
        rnn.backward(np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match="wrt"):
        rnn.backward(np.zeros((4, 2, 2)), wrt="z")
    with pytest.raises(ValueError, match="dh_n"):
        rnn.backward(np.zeros((4, 2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="logits"):
        plain = rnnext.RNN(3, 4)
        plain(np.zeros((4, 2, 3)))
        plain.backward(np.zeros((4, 2, 4)), wrt="logits")


def test_empty_sequences_and_batches():
    rnn = rnnext.RNN(3, 4, 2, dtype="float64", seed=0)
    h0 = np.ones((2, 4)) * 0.3
    y, h = rnn(np.zeros((0, 2, 3)), h0)  # T = 0: no step, h_n = h0
    assert y.shape == (0, 2, 2)
    np.testing.assert_array_equal(h, h0)
    dx, dh0 = rnn.backward(np.zeros((0, 2, 2)), np.ones((2, 4)))
    assert dx.shape == (0, 2, 3)
    np.testing.assert_array_equal(dh0, 1.0)
    y, h = rnn(np.zeros((3, 0, 3)))  # B = 0
    assert y.shape == (3, 0, 2) and h.shape == (0, 4)
    dx, dh0 = rnn.backward(np.zeros((3, 0, 2)))
    assert dx.shape == (3, 0, 3) and dh0.shape == (0, 4)

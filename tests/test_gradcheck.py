"""Finite-difference checks in float64 of every gradient the engine computes."""

import numpy as np
import pytest
from conftest import numeric_grad, rel_error

import rnnext
from rnnext import losses

T, B, I, H, O = 5, 2, 3, 4, 3
TOL = 1e-6


def check_all(rnn, loss_fn, x, h0, backward):
    """Compare analytic gradients of loss_fn() (parameters, x, h0) with central differences."""
    rnn.zero_grad()
    dx, dh0 = backward()
    analytic = {k: v.copy() for k, v in rnn.grads.items()}
    for name, p in rnn.params.items():
        err = rel_error(analytic[name], numeric_grad(loss_fn, p))
        assert err < TOL, f"{name}: relative error {err:.2e}"
    if dx is not None:
        err = rel_error(dx, numeric_grad(loss_fn, x))
        assert err < TOL, f"x: relative error {err:.2e}"
    err = rel_error(dh0, numeric_grad(loss_fn, h0))
    assert err < TOL, f"h0: relative error {err:.2e}"


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("output_activation", [None, "sigmoid", "softmax", "no-output-layer"])
def test_wrt_y_linear_functional(rng, nonlinearity, output_activation):
    """L = <G, y> + <G_h, h_n> for random G: checks dL/dy and dL/dh_n paths for each f_o."""
    out = None if output_activation == "no-output-layer" else O
    act = None if output_activation == "no-output-layer" else output_activation
    rnn = rnnext.RNN(I, H, out, nonlinearity=nonlinearity, output_activation=act, dtype="float64", seed=3)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H)) * 0.5
    G = rng.standard_normal((T, B, out or H))
    Gh = rng.standard_normal((B, H))

    def loss_fn():
        y, h_n = rnn(x, h0)
        return float(np.sum(G * y) + np.sum(Gh * h_n))

    def backward():
        rnn(x, h0)
        return rnn.backward(G, Gh)

    check_all(rnn, loss_fn, x, h0, backward)


def _logits(y, act):
    if act == "sigmoid":
        return np.log(y / (1 - y))
    if act == "softmax":
        return np.log(y)  # softmax(log y) = y: the loss only sees logits up to a shift per row
    return y


LOSS_CASES = [
    ("softmax", lambda z, t: losses.softmax_cross_entropy(z, t["ids"], mask=t["mask"])),
    ("softmax", lambda z, t: losses.softmax_cross_entropy(z, t["probs"], reduction="mean")),
    ("sigmoid", lambda z, t: losses.sigmoid_cross_entropy(z, t["bits"], mask=t["mask"])),
    ("sigmoid", lambda z, t: losses.sigmoid_cross_entropy(z, t["bits"], positive_only=True, reduction="mean")),
    (None, lambda z, t: losses.mse(z, t["real"], mask=t["mask"])),
    (None, lambda z, t: losses.mse(z, t["real"], reduction="mean")),
]


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("case", range(len(LOSS_CASES)))
@pytest.mark.parametrize("wrt", ["logits", "y"])
def test_losses_through_the_model(rng, nonlinearity, case, wrt):
    """Each loss with its output activation, backpropagated from the logits or from y."""
    act, loss = LOSS_CASES[case]
    rnn = rnnext.RNN(I, H, O, nonlinearity=nonlinearity, output_activation=act, dtype="float64", seed=5)
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H)) * 0.5
    probs = rng.random((T, B, O))
    targets = dict(
        ids=rng.integers(0, O, (T, B)),
        probs=probs / probs.sum(-1, keepdims=True),
        bits=(rng.random((T, B, O)) < 0.5).astype(float),
        real=rng.standard_normal((T, B, O)),
        mask=(rng.random((T, B)) < 0.7).astype(float),
    )

    def loss_fn():
        y, _ = rnn(x, h0)
        return loss(_logits(y, act), targets)[0]

    def backward():
        y, _ = rnn(x, h0)
        _, dz = loss(_logits(y, act), targets)
        if wrt == "logits":
            return rnn.backward(dz, wrt="logits")
        # dL/dy by finite differences of the loss in y, independent of the engine
        dy = numeric_grad(lambda: loss(_logits(y, act), targets)[0], y)
        return rnn.backward(dy, wrt="y")

    check_all(rnn, loss_fn, x, h0, backward)


def test_unbatched_gradients(rng):
    rnn = rnnext.RNN(I, H, O, dtype="float64", seed=2)
    x = rng.standard_normal((T, I))
    h0 = rng.standard_normal(H)
    G = rng.standard_normal((T, O))

    def loss_fn():
        return float(np.sum(G * rnn(x, h0)[0]))

    def backward():
        rnn(x, h0)
        dx, dh0 = rnn.backward(G)
        assert dx.shape == x.shape and dh0.shape == h0.shape
        return dx, dh0

    check_all(rnn, loss_fn, x, h0, backward)

"""The worked example of the reference notes (000): 1, 3, 5 in binary in, 5, 3, 1 out.

Every expected number below is printed in the notes (two decimals); the engine must agree
to that precision.
"""

import numpy as np
import pytest

import rnnext
from rnnext.losses import sigmoid_cross_entropy

# The notes' names: W_s -> W_x, U -> W_h, B_s -> b_h, W_o -> W_y, B_o -> b_y.
W_S = [[-0.75, 0.50], [-0.25, 0.00], [0.25, 0.25]]
U = [[0.10, -0.25], [0.50, 0.50]]
B_S = [0.50, 0.35]
W_O = [[-0.90, 0.45, 0.00], [0.15, 0.25, 0.10]]
B_O = [0.80, 0.60, -0.25]

X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]], float)
TARGETS = np.array([[0, 0, 0]] * 3 + [[1, 0, 1], [0, 1, 1], [0, 0, 1]], float)
MASK = np.array([0, 0, 0, 1, 1, 1], float)  # outputs (and losses) only at steps 4 to 6


def make(dtype):
    rnn = rnnext.RNN(3, 2, 3, output_activation="sigmoid", dtype=dtype)
    for name, value in zip(("W_x", "W_h", "b_h", "W_y", "b_y"), (W_S, U, B_S, W_O, B_O)):
        rnn.params[name][...] = value
    return rnn


def loss_of(rnn):
    y, _ = rnn(X)
    logits = np.log(y / (1 - y))  # the sigmoid outputs' pre-activations
    return y, sigmoid_cross_entropy(logits, TARGETS, mask=MASK, positive_only=True)


def states(rnn):
    plain = rnnext.RNN(3, 2, dtype=rnn.dtype)
    for name in ("W_x", "W_h", "b_h"):
        plain.params[name][...] = rnn.params[name]
    return plain(X)[0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_states_outputs_and_loss(dtype):
    rnn = make(dtype)
    expected_states = [[0.64, 0.54], [0.68, 0.61], [0.36, 0.84], [0.74, 0.59], [0.70, 0.43], [0.66, 0.37]]
    np.testing.assert_allclose(states(rnn), expected_states, atol=0.005 + 1e-7)
    y, (loss, _) = loss_of(rnn)
    expected_outputs = [[0.55, 0.75, 0.45], [0.56, 0.74, 0.45], [0.57, 0.73, 0.45]]
    np.testing.assert_allclose(y[3:], expected_outputs, atol=0.005 + 1e-7)
    assert round(loss, 2) == 3.30


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradients_sgd_step_and_new_loss(dtype):
    rnn = make(dtype)
    _, (_, dlogits) = loss_of(rnn)
    rnn.zero_grad()
    rnn.backward(dlogits, wrt="logits")
    expected_grads = {
        "W_y": [[-0.33, -0.19, -1.16], [-0.26, -0.11, -0.77]],
        "b_y": [-0.45, -0.26, -1.65],
        "W_x": [[0.05, 0.01], [0.00, 0.02], [0.04, 0.03]],
        "b_h": [0.18, -0.27],
        "W_h": [[0.06, -0.15], [0.16, -0.19]],
    }
    for name, value in expected_grads.items():
        np.testing.assert_allclose(rnn.grads[name], value, atol=0.005 + 1e-7, err_msg=name)
    rnnext.optim.SGD(rnn, lr=0.5).step()
    expected_params = {
        "W_x": [[-0.77, 0.50], [-0.25, -0.01], [0.23, 0.23]],
        "W_y": [[-0.73, 0.54, 0.58], [0.28, 0.31, 0.48]],
        "W_h": [[0.07, -0.17], [0.42, 0.60]],
        "b_h": [0.41, 0.48],
        "b_y": [1.02, 0.73, 0.58],
    }
    for name, value in expected_params.items():
        np.testing.assert_allclose(rnn.params[name], value, atol=0.005 + 1e-7, err_msg=name)
    _, (new_loss, _) = loss_of(rnn)
    assert round(new_loss, 2) == 1.36


def test_gradients_wrt_y_equal_wrt_logits():
    """The sigmoid Jacobian applied by the engine gives the same gradients."""
    a, b = make("float64"), make("float64")
    y, (_, dlogits) = loss_of(a)
    a.backward(dlogits, wrt="logits")
    dy = -TARGETS * MASK[:, None] / y  # d(-sum y_t log o_t)/do_t
    b(X)
    b.backward(dy, wrt="y")
    for name in a.grads:
        np.testing.assert_allclose(a.grads[name], b.grads[name], rtol=1e-12, atol=1e-14)

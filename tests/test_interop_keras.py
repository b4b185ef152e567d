"""Keras weights: rnnext's keras_weights / set_keras_weights / from_keras_weights against real
Keras layers (SimpleRNN, Bidirectional, Embedding, Dense) when keras is importable; the
checks that need no Keras (shapes, errors) always run."""

import os

import numpy as np
import pytest

import rnnext

# Keras' own arrays trip a NumPy 2 deprecation inside Keras; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture(scope="module")
def keras():
    # Keras 3 runs on any installed backend; torch is the one the test extra brings.
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def keras_model(keras, I, H, O, L, bi, act, vocab=None, T=6):
    layers = [keras.Input((T,), dtype="int32") if vocab else keras.Input((T, I))]
    if vocab:
        layers.append(keras.layers.Embedding(vocab, I))
    for _ in range(L):
        cell = keras.layers.SimpleRNN(H, activation=act, return_sequences=True)
        layers.append(keras.layers.Bidirectional(cell) if bi else cell)
    if O:
        layers.append(keras.layers.Dense(O))
    return keras.Sequential(layers)


def run_keras(keras, m, x_time_major):
    # Keras is batch-major (B, T, ...); rnnext is time-major (T, B, ...).
    return np.swapaxes(keras.ops.convert_to_numpy(m(np.swapaxes(x_time_major, 0, 1))), 0, 1)


CASES = [
    (1, False, "tanh", 0, None),
    (1, False, "relu", 2, None),
    (2, True, "tanh", 3, None),
    (2, False, "sigmoid", 0, None),
    (1, True, "tanh", 2, 9),
]


@pytest.mark.parametrize("L,bi,act,O,vocab", CASES)
def test_keras_model_to_rnnext_and_back(keras, L, bi, act, O, vocab):
    I, H, T, B = 3, 4, 6, 2
    km = keras_model(keras, I, H, O, L, bi, act, vocab, T)
    rng = np.random.default_rng(0)
    x = rng.integers(0, vocab, (T, B)).astype(np.int32) if vocab else rng.standard_normal((T, B, I)).astype(np.float32)

    model = rnnext.RNN.from_keras_weights(km.get_weights(), num_layers=L, bidirectional=bi, nonlinearity=act)
    assert (model.input_size, model.hidden_size, model.output_size, model.vocab_size) == (I, H, O or None, vocab)
    assert model.dtype == np.float32
    y_ref = run_keras(keras, km, x)
    np.testing.assert_allclose(model(x)[0], y_ref, rtol=1e-5, atol=1e-5)

    # Back into a fresh Keras model of the same shape: the same outputs, the same arrays.
    other = rnnext.RNN(I, H, O or None, nonlinearity=act, num_layers=L, bidirectional=bi, vocab_size=vocab, seed=5)
    km2 = keras_model(keras, I, H, O, L, bi, act, vocab, T)
    km2.set_weights(other.keras_weights())
    np.testing.assert_allclose(run_keras(keras, km2, x), other(x)[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(km2.get_weights(), other.keras_weights()):
        np.testing.assert_array_equal(a, b)


def test_simple_rnn_final_state_and_weight_names(keras):
    layer = keras.layers.SimpleRNN(5, return_sequences=True, return_state=True)
    x = np.random.default_rng(1).standard_normal((7, 3, 2)).astype(np.float32)  # (T, B, I)
    y_k, h_k = layer(np.swapaxes(x, 0, 1))
    kernel, recurrent_kernel, bias = layer.get_weights()
    assert [w.path.split("/")[-1] for w in layer.weights] == ["kernel", "recurrent_kernel", "bias"]
    model = rnnext.RNN(2, 5)
    model.set_keras_weights([kernel, recurrent_kernel, bias])
    np.testing.assert_array_equal(model.params["W_x"], kernel)
    np.testing.assert_array_equal(model.params["W_h"], recurrent_kernel)
    y, h_n = model(x)
    np.testing.assert_allclose(y, np.swapaxes(keras.ops.convert_to_numpy(y_k), 0, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_n, keras.ops.convert_to_numpy(h_k), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- without Keras itself
def test_keras_weights_order_and_shapes():
    model = rnnext.RNN(3, 4, 2, num_layers=2, bidirectional=True, seed=0)
    w = model.keras_weights()
    shapes = [a.shape for a in w]
    assert shapes == [(3, 4), (4, 4), (4,)] * 2 + [(8, 4), (4, 4), (4,)] * 2 + [(8, 2), (2,)]
    np.testing.assert_array_equal(w[3], model.params["W_x_reverse"])
    np.testing.assert_array_equal(w[6], model.params["W_x_l1"])
    w[0][...] = 0.0  # copies, not views
    assert np.any(model.params["W_x"] != 0.0)
    assert [a.shape for a in rnnext.RNN(3, 4).keras_weights()] == [(3, 4), (4, 4), (4,)]


def test_from_keras_weights_round_trip_and_dtype():
    model = rnnext.RNN(3, 4, 2, vocab_size=6, dtype="float64", seed=0)
    back = rnnext.RNN.from_keras_weights(model.keras_weights())
    assert back.config == model.config
    np.testing.assert_array_equal(back.flat_params, model.flat_params)


def test_keras_errors_name_the_weight():
    model = rnnext.RNN(3, 4, seed=0)
    before = model.flat_params.copy()
    with pytest.raises(ValueError, match=r"expected 3 arrays .*SimpleRNN kernel.*got 2"):
        model.set_keras_weights([np.zeros((3, 4)), np.zeros((4, 4))])
    with pytest.raises(ValueError, match=r"weights\[1\] \(SimpleRNN recurrent_kernel, layer 0 forward\): expected shape \(4, 4\), got \(4, 3\)"):
        model.set_keras_weights([np.zeros((3, 4)), np.zeros((4, 3)), np.zeros(4)])
    with pytest.raises(TypeError, match="weights"):
        model.set_keras_weights({"kernel": np.zeros((3, 4))})
    np.testing.assert_array_equal(model.flat_params, before)
    with pytest.raises(ValueError, match="learn_h0"):
        rnnext.RNN(3, 4, learn_h0=True).keras_weights()
    with pytest.raises(ValueError, match="expected 3 SimpleRNN arrays"):
        rnnext.RNN.from_keras_weights([np.zeros((3, 4))] * 7)
    with pytest.raises(TypeError, match="hidden_size"):
        rnnext.RNN.from_keras_weights(model.keras_weights(), hidden_size=4)

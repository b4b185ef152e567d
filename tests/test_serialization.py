"""Python conventions: pickle, copy.copy / copy.deepcopy, repr, identity equality, and the
`.npz` file of rnn.save / rnnext.load with its validation."""

import copy
import json
import os
import pickle

import numpy as np
import pytest

import rnnext

CONFIGS = [
    dict(input_size=3, hidden_size=4),
    dict(input_size=3, hidden_size=4, output_size=2, output_activation="softmax", num_layers=2, bidirectional=True,
         dropout=0.25, nonlinearity="relu"),
    dict(input_size=3, hidden_size=5, output_size=6, vocab_size=6, learn_h0=True, dtype="float64", init="orthogonal"),
]


def trained(config):
    """A model with non-zero gradients and grad_norms after one forward/backward."""
    model = rnnext.RNN(**config, seed=0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, model.vocab_size, (5, 2)) if model.vocab_size else rng.standard_normal((5, 2, 3))
    y, _ = model.eval()(x)  # eval: non-default, so copies must carry the flag
    model.backward(rng.standard_normal(y.shape))
    assert np.count_nonzero(model.flat_grads) > model.flat_grads.size // 2
    return model, x


def same_model(a, b, x):
    assert type(b) is rnnext.RNN and b.config == a.config and b.dtype == a.dtype and b.training == a.training
    assert list(b.params) == list(a.params)
    np.testing.assert_array_equal(b.flat_params, a.flat_params)
    np.testing.assert_array_equal(b.flat_grads, a.flat_grads)
    np.testing.assert_array_equal(b.grad_norms, a.grad_norms)
    ya, ha = a(x)
    yb, hb = b(x)
    np.testing.assert_array_equal(yb, ya)  # the engine is bit-reproducible across instances
    np.testing.assert_array_equal(hb, ha)


def no_shared_memory(a, b):
    for name in ("flat_params", "flat_grads"):
        assert not np.shares_memory(getattr(a, name), getattr(b, name)), name
    for name in a.params:
        assert not np.shares_memory(a.params[name], b.params[name]), name
        assert not np.shares_memory(a.grads[name], b.grads[name]), name


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
def test_copies_equal_and_independent(config, how):
    model, x = trained(config)
    if how == "pickle":
        other = pickle.loads(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    else:
        other = getattr(copy, how)(model)
    same_model(model, other, x)
    no_shared_memory(model, other)
    # The views in params/grads point into the copy's own engine: an update of the copy's
    # flat buffer shows in its views and nowhere in the original.
    before = model.flat_params.copy()
    other.flat_params += 1.0
    np.testing.assert_array_equal(model.flat_params, before)
    first = next(iter(other.params))
    np.testing.assert_array_equal(other.params[first].ravel(), other.flat_params[: other.params[first].size])
    other.zero_grad()
    assert np.any(model.flat_grads != 0.0)


def test_copy_has_no_forward_cache_but_trains_like_the_original():
    model, x = trained(CONFIGS[0])
    other = copy.deepcopy(model)
    with pytest.raises(ValueError, match="forward"):
        other.backward(np.zeros((5, 2, 4)))
    gy = np.random.default_rng(3).standard_normal((5, 2, 4))
    for m in (model, other):
        m(x)
        m.backward(gy)  # accumulates onto the copied gradients
    np.testing.assert_array_equal(other.flat_grads, model.flat_grads)


def test_deepcopy_copies_other_attributes_shallow_copy_shares_them():
    model = rnnext.RNN(3, 4)
    model.note = {"epoch": 3}
    assert copy.copy(model).note is model.note
    deep = copy.deepcopy(model)
    assert deep.note == model.note and deep.note is not model.note


def test_equality_is_identity_and_repr_is_useful():
    model = rnnext.RNN(3, 4, 2, num_layers=2, bidirectional=True, dtype="float64")
    assert model == model and model != copy.deepcopy(model)
    assert type(model).__eq__ is object.__eq__ and hash(model) == object.__hash__(model)
    text = repr(model)
    assert text.startswith("RNN(3, 4, output_size=2, nonlinearity='tanh', output_activation=None, dtype='float64', ")
    assert "num_layers=2, bidirectional=True," in text and text.endswith("init='default', batch_first=False)")
    rebuilt = eval(text, {"RNN": rnnext.RNN})
    assert rebuilt.config == model.config


# --------------------------------------------------------------------------- .npz files
@pytest.mark.parametrize("config", CONFIGS)
def test_save_load_round_trip(tmp_path, config):
    model, x = trained(config)
    path = tmp_path / "model.bin"  # the exact name is kept, no ".npz" appended
    model.save(path)
    assert os.listdir(tmp_path) == ["model.bin"]  # no temporary file left behind
    loaded = rnnext.load(str(path))
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.flat_params, model.flat_params)
    np.testing.assert_array_equal(loaded.flat_grads, 0.0)
    np.testing.assert_array_equal(loaded.eval()(x)[0], model(x)[0])


def test_file_format_is_the_documented_one(tmp_path):
    model = rnnext.RNN(3, 4, 2, seed=0)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        assert sorted(f.files) == ["config", "format_version", "layout", "params", "rnnext_version"]
        assert int(f["format_version"]) == 1
        assert str(f["rnnext_version"]) == rnnext.__version__
        assert json.loads(str(f["config"])) == model.config
        layout = json.loads(str(f["layout"]))
        assert layout == [["W_x", [3, 4]], ["W_h", [4, 4]], ["b_h", [4]], ["W_y", [4, 2]], ["b_y", [2]]]
        params = f["params"]
    assert params.dtype == np.float32
    # Named tensors are consecutive slices of `params`, in layout order.
    offset = 0
    for name, shape in layout:
        n = int(np.prod(shape))
        np.testing.assert_array_equal(params[offset : offset + n].reshape(shape), model.params[name])
        offset += n
    assert offset == params.size


def rewrite(path, **changes):
    """Copy an .npz with some entries replaced (None removes one)."""
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    for k, v in changes.items():
        if v is None:
            del data[k]
        else:
            data[k] = v
    with open(path, "wb") as fh:
        np.savez(fh, **data)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "m.npz"
    rnnext.RNN(3, 4, 2, seed=0).save(path)
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(format_version=np.array(2)), "format version 2 is not supported"),
        (dict(format_version=np.array(1.0)), "format_version: expected an integer scalar"),
        (dict(params=None), r"missing entries \['params'\]"),
        (dict(extra=np.zeros(1)), r"unknown entries \['extra'\]"),
        (dict(params=np.zeros(10, np.float32)), r"params: expected float32 of shape \(42,\)"),
        (dict(params=np.zeros(42, np.float64)), "params: expected float32"),
        (dict(config=np.array("{not json")), "not valid JSON"),
        (dict(config=np.array(json.dumps({"input_size": 3, "hidden_size": 0}))), "invalid config.*hidden_size"),
        (dict(config=np.array(json.dumps({"input_size": 3, "hidden_size": 4, "colour": 1}))), "invalid config"),
        (dict(layout=np.array(json.dumps([["W_x", [3, 4]]]))), "layout"),
    ],
)
def test_load_rejects_bad_contents_naming_the_file(saved, changes, message):
    rewrite(saved, **changes)
    with pytest.raises(ValueError, match=message) as info:
        rnnext.load(saved)
    assert str(saved) in str(info.value)


def test_load_rejects_truncated_and_corrupt_files(saved):
    data = saved.read_bytes()
    for cut in (0, 10, len(data) // 3, len(data) // 2, len(data) - 30, len(data) - 1):
        saved.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a readable rnnext .npz file") as info:
            rnnext.load(saved)
        assert str(saved) in str(info.value)
    # One flipped byte inside the parameters: the zip's CRC check catches it.
    pos = data.find(b"params.npy") + 200
    flipped = data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :]
    saved.write_bytes(flipped)
    with pytest.raises(ValueError, match="not a readable rnnext .npz file"):
        rnnext.load(saved)


def test_load_other_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-file"):
        rnnext.load(tmp_path / "no-such-file.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not an .npz archive"):
        rnnext.load(tmp_path / "one.npy")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="text.npz"):
        rnnext.load(tmp_path / "text.npz")
    with pytest.raises(TypeError, match="path"):
        rnnext.load(3.5)
    with pytest.raises(TypeError, match="path"):
        rnnext.RNN(2, 2).save(None)

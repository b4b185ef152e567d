"""Careless-user inputs found in the review of issues 13 and 15: each message names the
argument, what was expected and what the caller passed."""

import os

import numpy as np
import pytest

import rnnext
from rnnext import losses


def model(**kw):
    return rnnext.RNN(5, 8, 3, seed=0, **kw)


x = np.zeros((4, 2, 5), np.float32)


@pytest.mark.parametrize(
    "lengths, shown",
    [([1e30, 2.0], "1e+30"), (np.array([2**63 + 1, 1], np.uint64), str(2**63 + 1)), ([-1e19, 2.0], "-1e+19")],
)
def test_lengths_beyond_int64_are_named_not_wrapped(lengths, shown):
    # Cast to int64 first, these wrapped to -9223372036854775808 in the message.
    with pytest.raises(ValueError, match=r"lengths: expected integers within int64, got " + shown.replace("+", r"\+")):
        model()(x, lengths=lengths)


def test_scalar_lengths_message_shows_the_scalar():
    with pytest.raises(ValueError, match=r"lengths: expected 1 dimensions \(B\), got shape \(\)"):
        model()(x, lengths=4)


def test_scalar_token_id_is_not_a_sequence():
    # (T,) or (T, B) ids, as the docstring says; a bare 3 was run as one step (T = 1).
    v = model(vocab_size=10)
    with pytest.raises(ValueError, match=r"x: expected token ids of shape \(T, B\) or \(T,\), got shape \(\)"):
        v(3)
    assert v(np.array([3]))[0].shape == (1, 3)


def test_dtype_none_is_refused():
    # np.dtype(None) is float64: dtype=None built a float64 model without a word.
    with pytest.raises(TypeError, match=r"dtype: expected 'float32' or 'float64', got None"):
        rnnext.RNN(5, 8, dtype=None)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: losses.softmax_cross_entropy(None, [0]), "logits"),
        (lambda: losses.softmax_cross_entropy([[1.0, 2.0]], None), "targets"),
        (lambda: losses.softmax_cross_entropy([[1.0, 2.0]], [0], mask=[None]), "mask"),
        (lambda: losses.sigmoid_cross_entropy([[1.0]], None), "targets"),
        (lambda: losses.mse(None, [1.0]), "y"),
    ],
)
def test_losses_name_none(call, name):
    with pytest.raises(TypeError, match=rf"{name}: expected real numbers, got (None|list \[None\])"):
        call()


def writer_of(which):
    if which == "to_onnx":
        pytest.importorskip("onnx")
    return getattr(model(), which)


@pytest.mark.parametrize("writer", ["save", "to_onnx"])
def test_write_to_a_missing_folder_names_the_path(tmp_path, writer):
    write = writer_of(writer)
    target = str(tmp_path / "nope" / "m.file")
    with pytest.raises(FileNotFoundError) as e:
        write(target)
    assert target in str(e.value) and ".tmp" not in str(e.value)


@pytest.mark.parametrize("writer", ["save", "to_onnx"])
def test_write_to_a_folder_names_the_path(tmp_path, writer):
    write = writer_of(writer)
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError) as e:
        write(str(tmp_path / "d"))
    assert str(tmp_path / "d") in str(e.value) and ".tmp" not in str(e.value)
    assert sorted(os.listdir(tmp_path)) == ["d"]  # no temporary file left behind


@pytest.mark.parametrize("which", ["save", "load", "to_onnx", "from_onnx"])
def test_bytes_paths_are_refused_by_name(tmp_path, which):
    if which in ("to_onnx", "from_onnx"):
        pytest.importorskip("onnx")
    m = model()
    p = os.fsencode(str(tmp_path / "m.file"))
    call = {"save": m.save, "load": rnnext.load, "to_onnx": m.to_onnx, "from_onnx": rnnext.from_onnx}[which]
    with pytest.raises(TypeError, match=r"path: expected a str or os.PathLike of str, got bytes"):
        call(p)


def test_step_reads_token_ids_as_forward_does():
    # forward() took ids 2.0 (whole-valued floats) while step() refused them by dtype.
    v = model(vocab_size=10).eval()
    y_int, h_int = v.step(2)
    y_f, h_f = v.step(2.0)
    np.testing.assert_array_equal(y_f, y_int)
    np.testing.assert_array_equal(h_f, h_int)
    y2, _ = v.step([1.0, 2.0])
    np.testing.assert_array_equal(y2, v.step(np.array([1, 2]))[0])
    np.testing.assert_array_equal(v(np.array([[2.0]]))[0][0], v.step([2])[0])
    with pytest.raises(TypeError, match=r"x: expected integers \(or whole-valued floats\), got 2.5"):
        v.step(2.5)
    with pytest.raises(TypeError, match=r"x: expected integers, got an array of dtype bool"):
        v.step(True)


def test_step_reads_bfloat16_tensors_as_forward_does():
    # forward() converts bfloat16 tensors (NumPy has no bfloat16); step() said "got Tensor".
    torch = pytest.importorskip("torch")
    m = model().eval()
    x = torch.linspace(-1, 1, 10).reshape(2, 5)
    h = torch.full((2, 8), 0.25)
    want = m.step(x.to(torch.bfloat16).float().numpy(), h.numpy())
    got = m.step(x.to(torch.bfloat16), h.to(torch.bfloat16))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(m(x.to(torch.bfloat16)[None])[0][0], m.step(x.to(torch.bfloat16))[0])
    with pytest.raises(TypeError, match=r"h: expected an array of real numbers or None, got dtype <U5"):
        m.step(x.to(torch.bfloat16), "state")


@pytest.mark.parametrize("targets", [np.array([0, 1]), np.zeros((2, 0))])
def test_softmax_cross_entropy_with_no_classes_names_logits(targets):
    # Was NumPy's "zero-size array to reduction operation maximum which has no identity".
    with pytest.raises(ValueError, match=r"logits: expected at least one class on the last axis \(\.\.\., C\), got shape \(2, 0\)"):
        losses.softmax_cross_entropy(np.zeros((2, 0)), targets)


@pytest.mark.parametrize("reader", ["load", "from_onnx"])
def test_reading_a_folder_says_it_is_a_folder(tmp_path, reader):
    # Was FileNotFoundError "no such file" for a folder that exists.
    if reader == "from_onnx":
        pytest.importorskip("onnx")
    with pytest.raises(IsADirectoryError, match=r"path: .* is a folder, expected a file"):
        getattr(rnnext, reader)(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"path: no such file"):
        getattr(rnnext, reader)(tmp_path / "missing")

"""Shared test helpers, and the rule that in CI (CI=true) a test skipped for a missing package
fails instead: everything the suite needs is in the `test` extra of pyproject.toml."""

import importlib.util
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from reference import cells, suffix, torch_suffix  # noqa: E402


# ------------------------------------------------------------- missing packages in CI
def in_ci():
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _missing_package_skip(report):
    """pytest.importorskip's skips ('could not import ...'), module-level or in a test."""
    if not report.skipped:
        return False
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return "could not import" in text


def _fail_in_ci(report):
    if in_ci() and _missing_package_skip(report):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"CI=true: a missing package is a failure, not a skip ({reason})"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_in_ci(outcome.get_result())


@pytest.fixture
def torch():
    """PyTorch, for the tests that compare with it (the others never import it)."""
    return pytest.importorskip("torch")


# ------------------------------------------------------------------------- numbers
@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def load_script(path):
    """A script of bench/ or examples/ (not a package) imported as a module."""
    spec = importlib.util.spec_from_file_location(os.path.basename(str(path))[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def numeric_grad(f, arr, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of arr (in place)."""
    g = np.zeros_like(arr, dtype=np.float64)
    flat, gflat = arr.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def rel_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)


def assert_close(got, want, tol, what=""):
    """|got - want| <= tol * (|want| + max(1, max |want|)): relative, with an absolute floor
    at the array's own scale (sums of many terms lose digits near zero)."""
    want = np.asarray(want)
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


# ---------------------------------------------------------------------- PyTorch peer
def torch_run(rnn_t, lin_t, x, h0, lengths=None):
    """torch.nn.RNN (+ Linear) on time-major x with leaf tensors for x and h0; with lengths,
    packed sequences, and outputs past a sequence's end zeroed as rnnext does."""
    import torch

    xt = torch.tensor(x, requires_grad=True)
    ht = torch.tensor(h0, requires_grad=True)
    if lengths is None:
        out, h_n = rnn_t(xt, ht)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
        out, h_n = rnn_t(packed, ht)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
    y = lin_t(out) if lin_t is not None else out
    if lengths is not None:  # rnnext outputs zeros past a sequence's end, also after the Linear
        steps = torch.arange(x.shape[0])[:, None]
        y = y * (steps < torch.tensor(lengths)[None, :]).to(y.dtype)[..., None]
    return xt, ht, y, h_n


def assert_grads_match_torch(rnn, rnn_t, lin_t, tol):
    """Every cell's W_x, W_h, b_h gradient (and W_y, b_y) against the torch modules' .grad
    (rnnext's single bias b_h stands for both of PyTorch's, which get the same gradient)."""
    for l, d in cells(rnn.num_layers, rnn.bidirectional):
        r, t = suffix(l, d), torch_suffix(l, d)
        assert_close(rnn.grads["W_x" + r], getattr(rnn_t, "weight_ih" + t).grad.numpy().T, tol, "W_x" + r)
        assert_close(rnn.grads["W_h" + r], getattr(rnn_t, "weight_hh" + t).grad.numpy().T, tol, "W_h" + r)
        for bias in ("bias_ih", "bias_hh"):
            assert_close(rnn.grads["b_h" + r], getattr(rnn_t, bias + t).grad.numpy(), tol, f"b_h{r} vs {bias}{t}")
    if lin_t is not None:
        assert_close(rnn.grads["W_y"], lin_t.weight.grad.numpy().T, tol, "W_y")
        assert_close(rnn.grads["b_y"], lin_t.bias.grad.numpy(), tol, "b_y")


# ------------------------------------------------------------------------- files
@pytest.fixture
def write_corpus(tmp_path):
    """write_corpus(words, size, name): a text file of `size` words drawn (seeded) from
    `words`; returns (path as str, text)."""

    def write(words, size=3000, name="corpus.txt"):
        text = "".join(np.random.default_rng(0).choice(words, size=size))
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path), text

    return write

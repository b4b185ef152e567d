"""Losses against PyTorch's and plain definitions; stability for huge logits."""

import numpy as np
import pytest

from rnnext import losses


@pytest.fixture
def data(rng):
    z = rng.standard_normal((6, 4, 5)) * 3
    return dict(
        z=z,
        ids=rng.integers(0, 5, (6, 4)),
        bits=(rng.random(z.shape) < 0.4).astype(float),
        real=rng.standard_normal(z.shape),
        mask=(rng.random((6, 4)) < 0.6).astype(float),
    )


def torch_grad(fn, z):
    import torch

    zt = torch.tensor(z, requires_grad=True)
    out = fn(zt)
    out.backward()
    return out.item(), zt.grad.numpy()


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_softmax_cross_entropy_matches_torch(torch, data, reduction):
    z, ids, m = data["z"], data["ids"], data["mask"]
    loss, g = losses.softmax_cross_entropy(z, ids, mask=m, reduction=reduction)

    def ref(zt):
        per = torch.nn.functional.cross_entropy(zt.reshape(-1, 5), torch.tensor(ids.reshape(-1)), reduction="none")
        per = per * torch.tensor(m.reshape(-1))
        return per.sum() / (m.sum() if reduction == "mean" else 1.0)

    ref_loss, ref_g = torch_grad(ref, z)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-14)


def test_softmax_cross_entropy_with_probabilities(torch, data):
    z = data["z"]
    q = np.exp(data["real"])
    q /= q.sum(-1, keepdims=True)
    loss, g = losses.softmax_cross_entropy(z, q, reduction="mean")
    ref_loss, ref_g = torch_grad(
        lambda zt: torch.nn.functional.cross_entropy(zt.reshape(-1, 5), torch.tensor(q.reshape(-1, 5))), z
    )
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_sigmoid_cross_entropy_matches_torch(torch, data, reduction):
    z, y, m = data["z"], data["bits"], data["mask"]
    loss, g = losses.sigmoid_cross_entropy(z, y, mask=m, reduction=reduction)
    w = torch.tensor(np.broadcast_to(m[..., None], z.shape).copy())
    ref_loss, ref_g = torch_grad(
        lambda zt: torch.nn.functional.binary_cross_entropy_with_logits(
            zt, torch.tensor(y), weight=w, reduction="sum"
        )
        / (w.sum() if reduction == "mean" else 1.0),
        z,
    )
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-14)


def test_sigmoid_positive_only_is_the_notes_loss(data):
    z, y = data["z"], data["bits"]
    o = 1 / (1 + np.exp(-z))
    loss, g = losses.sigmoid_cross_entropy(z, y, positive_only=True)
    assert loss == pytest.approx(-np.sum(y * np.log(o)), rel=1e-12)
    np.testing.assert_allclose(g, y * (o - 1), rtol=1e-12, atol=1e-15)  # the notes' y (o - 1)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_mse_matches_torch(torch, data, reduction):
    z, t, m = data["z"], data["real"], data["mask"]
    loss, g = losses.mse(z, t, mask=m, reduction=reduction)
    w = torch.tensor(np.broadcast_to(m[..., None], z.shape).copy())
    ref_loss, ref_g = torch_grad(
        lambda zt: (((zt - torch.tensor(t)) ** 2) * w).sum() / (w.sum() if reduction == "mean" else 1.0), z
    )
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_exact_for_huge_logits(scale):
    """Logits of +-1e4 (exp overflows in float64 beyond 709): the exact values, not merely
    finite ones. Per element, sigmoid cross-entropy is max(z, 0) - z y + log(1 + exp(-|z|)):
    the wrong-signed 1e4 costs 1e4, the zero logit ln 2, the right-signed one exp(-1e4) = 0."""
    z = np.array([[scale, 0.0, -scale]])
    s = np.sign(scale)
    loss, g = losses.sigmoid_cross_entropy(z, np.array([[1.0, 0.0, 1.0]]))
    assert loss == pytest.approx(1e4 + np.log(2), rel=1e-15)
    np.testing.assert_array_equal(g, [[0.0 if s > 0 else -1.0, 0.5, -1.0 if s > 0 else 0.0]])  # sigmoid(z) - y
    loss, g = losses.sigmoid_cross_entropy(z, np.array([[1.0, 0.0, 1.0]]), positive_only=True)
    assert loss == pytest.approx(1e4, rel=1e-15)  # -log sigmoid(-1e4); log sigmoid(1e4) = 0
    np.testing.assert_array_equal(g, [[0.0 if s > 0 else -1.0, 0.0, -1.0 if s > 0 else 0.0]])  # y (o - 1)
    loss, g = losses.softmax_cross_entropy(z, np.array([2]))
    # -log softmax(z)[2] = logsumexp(z) - z[2]: 2e4 when z[2] = -1e4, 0 (to 1e-4343) when it is 1e4
    assert loss == (pytest.approx(2e4, rel=1e-15) if s > 0 else 0.0)
    # softmax - onehot; exp(-1e4) underflows (Eigen's vectorised exp gives 5.6e-309, not 0)
    np.testing.assert_allclose(g, [[1.0, 0.0, -1.0]] if s > 0 else [[0.0, 0.0, 0.0]], rtol=0, atol=1e-300)
    loss, _ = losses.softmax_cross_entropy(np.array([[1e4, 0.0]]), np.array([1]))
    assert loss == pytest.approx(1e4, rel=1e-15)  # exact value of -log softmax: no overflow, no clipping


def test_float32_logits_keep_their_dtype():
    loss, g = losses.softmax_cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 1]))
    assert g.dtype == np.float32 and loss == pytest.approx(2 * np.log(3), rel=1e-6)


def test_masked_out_targets_may_be_padding():
    z = np.zeros((2, 3))
    loss, g = losses.softmax_cross_entropy(z, np.array([1, -1]), mask=np.array([1.0, 0.0]))
    assert loss == pytest.approx(np.log(3)) and np.all(g[1] == 0)


@pytest.mark.parametrize(
    "call, error, text",
    [
        (lambda: losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3])), ValueError, "targets"),
        (lambda: losses.softmax_cross_entropy(np.zeros((2, 3)), np.zeros((3,), int)), ValueError, "targets"),
        (lambda: losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0.5, 1.0])), TypeError, "targets"),
        (lambda: losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), mask=np.ones(3)), ValueError, "mask"),
        (lambda: losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), reduction="avg"), ValueError, "reduction"),
        (lambda: losses.mse(np.zeros((2, 3)), np.zeros((2, 2))), ValueError, "targets"),
        (lambda: losses.mse(np.array(["a"]), np.zeros(1)), TypeError, "y"),
        (lambda: losses.sigmoid_cross_entropy(np.zeros((2, 3)), np.zeros((2, 3)), mask=np.zeros((2, 3))), ValueError, "mask"),
    ],
)
def test_bad_arguments(call, error, text):
    with pytest.raises(error, match=text):
        call()

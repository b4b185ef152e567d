"""Optimizers: hand-computed steps, PyTorch as the reference, state round trips, checks."""

import math

import numpy as np
import pytest

import rnnext
from rnnext import optim


def tiny(p, dtype="float64"):
    """A 1-input, 1-state RNN: exactly three parameters (W_x, W_h, b_h), all set to ``p``."""
    rnn = rnnext.RNN(1, 1, dtype=dtype, seed=0)
    assert rnn.flat_params.size == 3
    rnn.flat_params[...] = p
    return rnn


def run(opt, rnn, grads):
    """One optimizer step per gradient value; the parameter after each step."""
    out = []
    for g in grads:
        rnn.flat_grads[...] = g
        opt.step()
        out.append(float(rnn.flat_params[0]))
    return out


# Hand-computed trajectories from p = 1 (arithmetic in the comments).
def test_sgd_plain_and_old_signature():
    rnn = tiny(1.0)
    # p = 1 - 0.1 * 2 = 0.8, then 0.8 - 0.1 * (-1) = 0.9
    assert run(optim.SGD(rnn, 0.1), rnn, [2.0, -1.0]) == pytest.approx([0.8, 0.9], abs=1e-15)


def test_sgd_momentum_by_hand():
    rnn = tiny(1.0)
    # buf = 1 -> p = 0.9; buf = 0.9 * 1 + 1 = 1.9 -> p = 0.9 - 0.19 = 0.71
    assert run(optim.SGD(rnn, 0.1, momentum=0.9), rnn, [1.0, 1.0]) == pytest.approx([0.9, 0.71], abs=1e-15)


def test_sgd_nesterov_by_hand():
    rnn = tiny(1.0)
    # buf = 1, step g + 0.9 buf = 1.9 -> p = 0.81; buf = 1.9, step 1 + 0.9 * 1.9 = 2.71 -> p = 0.539
    opt = optim.SGD(rnn, 0.1, momentum=0.9, nesterov=True)
    assert run(opt, rnn, [1.0, 1.0]) == pytest.approx([0.81, 0.539], abs=1e-15)


def test_adagrad_by_hand():
    rnn = tiny(1.0)
    # sum = 4 -> p = 1 - 0.1 * 2 / 2 = 0.9; sum = 5 -> p = 0.9 - 0.1 / sqrt(5) = 0.8552786404500042
    opt = optim.Adagrad(rnn, lr=0.1, eps=0.0)
    assert run(opt, rnn, [2.0, 1.0]) == pytest.approx([0.9, 0.8552786404500042], abs=1e-15)


def test_rmsprop_by_hand():
    rnn = tiny(1.0)
    # v = 0.1 * 4 = 0.4 -> p = 1 - 0.01 * 2 / sqrt(0.4) = 0.9683772233983162
    # v = 0.9 * 0.4 + 0.1 * 1 = 0.46 -> p -= 0.01 * 1 / sqrt(0.46) = 0.014744195615489714
    opt = optim.RMSprop(rnn, lr=0.01, alpha=0.9, eps=0.0)
    assert run(opt, rnn, [2.0, 1.0]) == pytest.approx([0.9683772233983162, 0.9536330277828265], abs=1e-14)


def test_adam_by_hand():
    rnn = tiny(1.0)
    # step 1: m = 0.2, v = 0.004; m^ = 2, v^ = 4 -> p = 1 - 0.1 * 2 / 2 = 0.9
    # step 2 (g = -1): m = 0.9 * 0.2 - 0.1 = 0.08, v = 0.999 * 0.004 + 0.001 = 0.004996
    #   m^ = 0.08 / 0.19 = 0.421052631578947, v^ = 0.004996 / 0.001999 = 2.499249624812406
    #   p = 0.9 - 0.1 * 0.421052631578947 / sqrt(2.499249624812406) = 0.9 - 0.1 * 0.4210526 / 1.5809015
    opt = optim.Adam(rnn, lr=0.1, eps=0.0)
    assert run(opt, rnn, [2.0, -1.0]) == pytest.approx([0.9, 0.87336629603396], abs=1e-13)


def test_every_parameter_gets_the_same_rule():
    rnn = tiny(np.array([1.0, -2.0, 0.5]))
    rnn.flat_grads[...] = [0.5, 0.5, 0.5]
    optim.SGD(rnn, 0.1).step()
    np.testing.assert_allclose(rnn.flat_params, [0.95, -2.05, 0.45], atol=1e-15)


# PyTorch as the reference, several steps on random parameters and gradients.
CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.5, nesterov=True), dict(lr=0.05, momentum=0.5, nesterov=True)),
    ("Adagrad", dict(lr=0.1), dict(lr=0.1)),
    ("Adagrad", dict(lr=0.05, eps=1e-6, initial_accumulator_value=0.1),
     dict(lr=0.05, eps=1e-6, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=0.01), dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.8), dict(lr=0.01, alpha=0.9, momentum=0.8)),
    ("Adam", dict(lr=0.01), dict(lr=0.01)),
    ("Adam", dict(lr=0.003, betas=(0.8, 0.99), eps=1e-6), dict(lr=0.003, betas=(0.8, 0.99), eps=1e-6)),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,ours,theirs", CASES)
def test_matches_pytorch(name, ours, theirs, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    rnn = rnnext.RNN(3, 4, 2, seed=0, dtype=dtype)
    p0 = np.array(rnn.flat_params)
    opt = getattr(optim, name)(rnn, **ours)
    tp = torch.nn.Parameter(torch.tensor(p0.astype(np.float64)))
    topt = getattr(torch.optim, name)([tp], **theirs)
    for _ in range(6):
        g = rng.standard_normal(p0.size) * rng.choice([0.01, 1.0, 10.0], size=p0.size)
        rnn.flat_grads[...] = g
        opt.step()
        tp.grad = torch.tensor(g.astype(dtype).astype(np.float64))
        topt.step()
    tol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(rnn.flat_params, tp.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "RMSprop", "Adam"])
def test_state_dict_round_trip_continues_identically(name):
    kwargs = dict(lr=0.01, momentum=0.9) if name in ("SGD", "RMSprop") else dict(lr=0.01)
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((5, 3))
    a = tiny(np.array([0.3, -0.2, 0.1]))
    opt_a = getattr(optim, name)(a, **kwargs)
    run(opt_a, a, grads[:3])
    b = tiny(np.array(a.flat_params))
    opt_b = getattr(optim, name)(b, **kwargs)
    state = opt_a.state_dict()
    opt_b.load_state_dict(state)
    assert opt_b.step_count == 3
    run(opt_a, a, grads[3:])
    run(opt_b, b, grads[3:])
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    # state_dict() copies: later steps do not change a saved state
    if opt_a.buffers:
        buf = opt_a.buffers[0]
        assert not np.array_equal(state[buf], opt_a.state[buf])


def test_load_state_dict_checks_before_changing_anything():
    rnn = tiny(0.5)
    adam = optim.Adam(rnn, lr=0.1)
    run(adam, rnn, [1.0])
    state = adam.state_dict()
    fresh = optim.Adam(tiny(0.5), lr=0.1)
    with pytest.raises(ValueError, match="Adagrad"):
        optim.Adagrad(tiny(0.5)).load_state_dict(state)
    with pytest.raises(ValueError, match="exp_avg should have shape"):
        fresh.load_state_dict(dict(state, exp_avg=np.zeros(7)))
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(tiny(0.5), betas=(0.5, 0.9)).load_state_dict(state)
    with pytest.raises(ValueError, match="keys"):
        fresh.load_state_dict({k: v for k, v in state.items() if k != "exp_avg_sq"})
    with pytest.raises(TypeError, match="state"):
        fresh.load_state_dict([1, 2])
    assert fresh.step_count == 0 and not fresh.state["exp_avg"].any()


def test_lr_schedule_hook():
    rnn = tiny(1.0)
    seen = []

    def halve(step):
        seen.append(step)
        return 0.5**step

    opt = optim.SGD(rnn, 1.0, lr_schedule=halve)
    # steps of 1 * 1, 0.5 * 1, 0.25 * 1
    assert run(opt, rnn, [1.0, 1.0, 1.0]) == pytest.approx([0.0, -0.5, -0.75], abs=1e-15)
    assert seen == [0, 1, 2]
    opt.lr_schedule = lambda step: float("nan")
    with pytest.raises(ValueError, match="lr_schedule"):
        opt.step()
    with pytest.raises(TypeError, match="lr_schedule"):
        optim.SGD(rnn, 1.0, lr_schedule=3)


def test_cosine_schedule_values():
    f = optim.cosine_schedule(100, warmup_steps=10, final_factor=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert f(100) == pytest.approx(0.1) and f(1000) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="final_factor"):
        optim.cosine_schedule(10, final_factor=2.0)


def test_clip_grad_norm():
    rnn = tiny(0.0)
    rnn.flat_grads[...] = [3.0, 4.0, 0.0]
    assert optim.clip_grad_norm(rnn, 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(rnn.flat_grads, [3.0, 4.0, 0.0])
    assert optim.clip_grad_norm(rnn, 1.0) == pytest.approx(5.0)
    assert np.linalg.norm(rnn.flat_grads) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(rnn.flat_grads / np.linalg.norm(rnn.flat_grads), [0.6, 0.8, 0.0])
    rnn.flat_grads[0] = np.inf
    assert math.isinf(optim.clip_grad_norm(rnn, 1.0))
    with pytest.raises(ValueError, match="not finite"):
        optim.clip_grad_norm(rnn, 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize(
    "make,err,match",
    [
        (lambda r: optim.SGD(r, -1.0), ValueError, "lr"),
        (lambda r: optim.SGD(r, "0.1"), TypeError, "lr"),
        (lambda r: optim.SGD(r, 0.1, momentum=1.5), ValueError, "momentum"),
        (lambda r: optim.SGD(r, 0.1, nesterov=True), ValueError, "nesterov"),
        (lambda r: optim.Adam(r, betas=(0.9,)), TypeError, "betas"),
        (lambda r: optim.Adam(r, betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
        (lambda r: optim.Adagrad(r, eps=-1.0), ValueError, "eps"),
        (lambda r: optim.RMSprop(r, alpha=True), TypeError, "alpha"),
        (lambda r: optim.Adam(object()), TypeError, "model"),
        (lambda r: optim.clip_grad_norm(r, 0.0), ValueError, "max_norm"),
    ],
)
def test_bad_arguments(make, err, match):
    with pytest.raises(err, match=match):
        make(tiny(0.0))


def test_update_is_in_place_on_the_model_buffers():
    rnn = rnnext.RNN(2, 3, 2, seed=0)
    before = {k: v.copy() for k, v in rnn.params.items()}
    rnn.flat_grads[...] = 1.0
    optim.Adam(rnn, lr=0.1).step()
    for name, p in rnn.params.items():  # the named views see the new values
        np.testing.assert_allclose(p, before[name] - 0.1, rtol=1e-5, atol=1e-6)

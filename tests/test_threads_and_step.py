"""The engine's fast paths: thread count, shapes past the GEMM blocking sizes, the
streaming step(), backward without dx, the one-pass softmax cross-entropy.

References are independent of the engine: PyTorch (float64) and the NumPy reference of
tests/reference.py (forward, BPTT, softmax cross-entropy); forward() is compared with step()
and one thread count with another only on top of that. No timings are asserted here; see bench/.
"""

import multiprocessing
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_close, assert_grads_match_torch, torch_run
from reference import backward as ref_backward
from reference import forward as ref_forward
from reference import softmax_cross_entropy as ref_softmax_cross_entropy

import rnnext
from rnnext.losses import softmax_cross_entropy

TOL64 = 1e-10  # float64 against float64 references


@pytest.fixture
def threads():
    """Restores the engine's thread count after a test changes it."""
    before = rnnext.get_num_threads()
    yield
    rnnext.set_num_threads(before)


def run_all(rnn, x, h0, gy, gh, lengths=None):
    """Outputs, states and every gradient of one forward/backward."""
    y, h_n = rnn(x, h0, lengths=lengths)
    rnn.zero_grad()
    dx, dh0 = rnn.backward(gy, gh)
    return dict(y=y, h_n=h_n, dx=dx, dh0=dh0, grads=rnn.flat_grads.copy(), norms=rnn.grad_norms.copy())


# Big enough that products and recurrences are split across threads (the engine keeps
# work below about 4M multiply-adds, or 16M for a whole recurrence, on one thread), by
# batch rows or by columns of W_h, and that the blocking loops of the packed GEMM run
# more than once (K blocks of 512, row blocks of 60, column blocks of 1024 floats / 512
# doubles), with sizes that are not multiples of the vector width.
BIG = [
    # T, B, I, H, O, layers, bidirectional, nonlinearity, with lengths
    (30, 9, 80, 300, 600, 1, False, "tanh", False),
    (26, 13, 45, 263, None, 2, True, "relu", True),
    (21, 25, 17, 130, 70, 1, False, "tanh", True),
    (30, 20, 20, 400, None, 1, False, "tanh", False),  # dW_x (20 rows) is split by columns
    # W_h over 1 MB, or one sequence: the recurrence is split by columns of W_h.
    (20, 3, 10, 530, 20, 1, True, "tanh", True),
    (30, 1, 8, 750, None, 1, False, "relu", False),
]


@pytest.mark.parametrize("case", BIG)
def test_big_shapes_match_torch_with_threads(case, threads, torch):
    T, B, I, H, O, L, bidir, act, with_lengths = case
    rnnext.set_num_threads(2)
    rng = np.random.default_rng(T * B)
    rnn = rnnext.RNN(I, H, O, nonlinearity=act, num_layers=L, bidirectional=bidir, dtype="float64", seed=3)
    rnn_t, lin_t = rnn.to_torch()
    S = L * (2 if bidir else 1)
    x = rng.standard_normal((T, B, I))
    h0 = 0.5 * rng.standard_normal((S, B, H))
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    if with_lengths:
        lengths[0] = T
    gy = rng.standard_normal((T, B, O or (2 if bidir else 1) * H))
    gh = rng.standard_normal((S, B, H))
    h0_in, gh_in = (h0[0], gh[0]) if S == 1 else (h0, gh)
    got = run_all(rnn, x, h0_in, gy, gh_in, lengths)

    xt, ht, yt, hnt = torch_run(rnn_t, lin_t, x, h0, lengths)
    assert_close(got["y"], yt.detach().numpy(), TOL64, "y")
    assert_close(got["h_n"], hnt.detach().numpy()[0] if S == 1 else hnt.detach().numpy(), TOL64, "h_n")
    ((yt * torch.tensor(gy)).sum() + (hnt * torch.tensor(gh)).sum()).backward()
    assert_close(got["dx"], xt.grad.numpy(), TOL64, "dx")
    assert_close(got["dh0"], ht.grad.numpy()[0] if S == 1 else ht.grad.numpy(), TOL64, "dh0")
    assert_grads_match_torch(rnn, rnn_t, lin_t, TOL64)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", BIG)
def test_thread_count_changes_nothing_but_rounding(case, dtype, threads):
    T, B, I, H, O, L, bidir, act, with_lengths = case
    rng = np.random.default_rng(1)
    rnn = rnnext.RNN(I, H, O, nonlinearity=act, num_layers=L, bidirectional=bidir, dtype=dtype, seed=5)
    S = L * (2 if bidir else 1)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((S, B, H)).astype(dtype)
    gy = rng.standard_normal((T, B, O or (2 if bidir else 1) * H)).astype(dtype)
    gh = rng.standard_normal((S, B, H)).astype(dtype)
    lengths = rng.integers(0, T + 1, B) if with_lengths else None
    h0_in, gh_in = (h0[0], gh[0]) if S == 1 else (h0, gh)
    results = []
    for n in (1, 2, 3):  # 3 threads on 2 cores still splits the work three ways
        rnnext.set_num_threads(n)
        results.append(run_all(rnn, x, h0_in, gy, gh_in, lengths))
    tol = 1e-12 if dtype == "float64" else 2e-5
    for other in results[1:]:
        for key, want in results[0].items():
            scale = max(1.0, float(np.max(np.abs(want))))
            np.testing.assert_allclose(other[key], want, rtol=tol, atol=tol * scale, err_msg=key)
    # The same thread count gives bit-identical results.
    again = run_all(rnn, x, h0_in, gy, gh_in, lengths)
    for key, want in results[-1].items():
        np.testing.assert_array_equal(again[key], want, err_msg=key)
    # One thread against the NumPy reference: a bug shared by every thread count shows here.
    params = {k: v.astype(np.float64) for k, v in rnn.params.items()}
    h0_ref = h0.astype(np.float64)
    y_ref, h_ref = ref_forward(params, rnn.config, x, h0_ref, lengths)
    grads_ref, dx_ref, dh0_ref = ref_backward(params, rnn.config, x, gy, gh, h0_ref, lengths)
    ref_tol = TOL64 if dtype == "float64" else 2e-5  # float32: seen up to 6.7e-7
    one = results[0]
    for key, want in (("y", y_ref), ("h_n", h_ref), ("dx", dx_ref), ("dh0", dh0_ref)):
        assert_close(one[key], want.reshape(one[key].shape), ref_tol, key)
    rnnext.set_num_threads(1)
    run_all(rnn, x, h0_in, gy, gh_in, lengths)
    for name, want in grads_ref.items():
        assert_close(rnn.grads[name], want, ref_tol, name)


def test_float32_past_the_float_column_block_matches_float64():
    """An output layer wider than 1024 values runs the float32 GEMM's column-block loop."""
    r64 = rnnext.RNN(20, 64, 1100, dtype="float64", seed=0)
    r32 = rnnext.RNN(20, 64, 1100, dtype="float32")
    r32.flat_params[...] = r64.flat_params
    x = np.random.default_rng(0).standard_normal((7, 3, 20))
    g = np.random.default_rng(1).standard_normal((7, 3, 1100))
    np.testing.assert_allclose(r32(x)[0], r64(x)[0], rtol=1e-4, atol=1e-5)
    r32.backward(g)
    r64.backward(g)
    np.testing.assert_allclose(r32.flat_grads, r64.flat_grads, rtol=1e-4, atol=2e-4)


def test_set_num_threads_checks_its_argument(threads):
    rnnext.set_num_threads(3)
    assert rnnext.get_num_threads() == 3
    with pytest.raises(ValueError, match=r"n: expected an int >= 1, got 0"):
        rnnext.set_num_threads(0)
    with pytest.raises(TypeError, match=r"n: expected an int"):
        rnnext.set_num_threads(1.5)
    with pytest.raises(TypeError, match=r"n: expected an int"):
        rnnext.set_num_threads(True)
    assert rnnext.get_num_threads() == 3


def _forward_in_child(queue):
    rnn = rnnext.RNN(40, 200, 30, dtype="float64", seed=0)
    y, _ = rnn(np.ones((40, 8, 40)))
    queue.put(float(y.sum()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_threads_work_after_fork(threads):
    """A child forked after the pool started gets a fresh pool instead of waiting forever
    for the parent's workers."""
    rnnext.set_num_threads(2)
    rnn = rnnext.RNN(40, 200, 30, dtype="float64", seed=0)
    want = float(rnn(np.ones((40, 8, 40)))[0].sum())  # starts the pool's workers
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_forward_in_child, args=(queue,))
    child.start()
    child.join(120)
    assert child.exitcode == 0, "the forked child hung or failed"
    assert queue.get(timeout=5) == want


# ------------------------------------------------------------------------ step()
STEP_MODELS = [
    dict(input_size=5, hidden_size=7),
    dict(input_size=5, hidden_size=16, output_size=4, num_layers=2, output_activation="softmax"),
    dict(input_size=3, hidden_size=9, output_size=6, nonlinearity="relu", learn_h0=True),
    dict(input_size=4, hidden_size=8, output_size=3, vocab_size=11, output_activation="sigmoid"),
    dict(input_size=30, hidden_size=200, output_size=50),  # big enough to release the GIL
]


@pytest.mark.parametrize("kwargs", STEP_MODELS)
def test_steps_give_forward(kwargs):
    rng = np.random.default_rng(0)
    rnn = rnnext.RNN(**kwargs, dtype="float64", seed=2)
    if "h0" in rnn.params:
        rnn.params["h0"][...] = rng.standard_normal(rnn.params["h0"].shape)
    T, B = 6, 40 if kwargs["hidden_size"] == 200 else 3
    if rnn.vocab_size:
        x = rng.integers(0, rnn.vocab_size, (T, B))
    else:
        x = rng.standard_normal((T, B, rnn.input_size))
    y_want, h_want = rnn(x)  # initial state: learned h0 or zeros
    y_ref, h_ref = ref_forward(rnn.params, rnn.config, x)
    h = None
    for t in range(T):
        y_t, h = rnn.step(x[t], h)
        np.testing.assert_allclose(y_t, y_ref[t], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(y_t, y_want[t], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h, h_ref.reshape(h.shape), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h, h_want, rtol=1e-12, atol=1e-12)


def test_step_unbatched_and_given_state():
    rng = np.random.default_rng(1)
    rnn = rnnext.RNN(3, 6, 2, num_layers=3, dtype="float64", seed=0)
    x = rng.standard_normal((4, 3))
    h0 = rng.standard_normal((3, 6))
    y_want, h_want = ref_forward(rnn.params, rnn.config, x[:, None], h0[:, None])
    h = h0.copy()
    for t in range(4):
        y_t, h_next = rnn.step(x[t], h)
        assert y_t.shape == (2,) and h_next.shape == (3, 6)
        assert h_next is not h
        h = h_next
        np.testing.assert_allclose(y_t, y_want[t, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h, h_want[:, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(h0, h0.copy())  # the given state is not written


def test_step_accepts_lists_and_other_dtypes():
    rnn = rnnext.RNN(2, 3, dtype="float32", seed=0)
    y1, h1 = rnn.step([0.5, -1], [0, 0, 0])
    y2, h2 = rnn.step(np.array([0.5, -1.0]), np.zeros(3))
    assert y1.dtype == np.float32
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(h1, h2)


def test_step_leaves_a_pending_backward_alone():
    rng = np.random.default_rng(2)
    rnn = rnnext.RNN(4, 8, 3, dtype="float64", seed=1)
    x, g = rng.standard_normal((5, 2, 4)), rng.standard_normal((5, 2, 3))
    rnn(x)
    rnn.zero_grad()
    dx_want, _ = rnn.backward(g)
    want = rnn.flat_grads.copy()
    rnn(x)
    rnn.step(rng.standard_normal((7, 4)), None)  # another batch size in between
    rnn.zero_grad()
    dx, _ = rnn.backward(g)
    np.testing.assert_array_equal(rnn.flat_grads, want)
    np.testing.assert_array_equal(dx, dx_want)


STEP_ERRORS = [
    (dict(), "step(np.zeros((2, 4)), None)", ValueError, r"x: expected shape \(3,\) or \(B, 3\), got shape \(2, 4\)"),
    (dict(), "step(np.zeros(3), np.zeros((2, 5)))", ValueError, r"h: expected shape \(1, 5\), got shape \(2, 5\)"),
    (dict(), "step(np.zeros((2, 3)), np.zeros((3, 5)))", ValueError, r"h: expected shape \(2, 5\) or \(1, 2, 5\), got shape \(3, 5\)"),
    (dict(num_layers=2), "step(np.zeros(3), np.zeros(5))", ValueError, r"h: expected shape \(2, 5\)"),
    (dict(), "step(['a', 'b', 'c'], None)", TypeError, r"x: expected an array of real numbers"),
    (dict(), "step(np.zeros(3), 'state')", TypeError, r"h: expected an array of real numbers or None"),
    (dict(bidirectional=True), "step(np.zeros(3), None)", ValueError, r"unidirectional"),
    (dict(vocab_size=4), "step(np.array([0.5]), None)", TypeError, r"x: expected integers \(or whole-valued floats\), got 0.5 at x\[0\]"),
    (dict(vocab_size=4), "step(np.array([1, 4]), None)", ValueError, r"x: token ids must be in \[0, 4\), got 4 at x\[1\]"),
    # a scalar id has no position to name (was "at x[0]" and "at x[]")
    (dict(vocab_size=4), "step(7, None)", ValueError, r"x: token ids must be in \[0, 4\), got 7$"),
    (dict(vocab_size=4), "step(0.5, None)", TypeError, r"x: expected integers \(or whole-valued floats\), got 0.5$"),
    (dict(vocab_size=4), "step(np.zeros((2, 2), int), None)", ValueError, r"x: expected token ids of shape \(\) or \(B,\)"),
]


@pytest.mark.parametrize("kwargs, call, error, text", STEP_ERRORS)
def test_step_rejects_bad_input(kwargs, call, error, text):
    rnn = rnnext.RNN(3, 5, **kwargs)
    with pytest.raises(error, match=text):
        eval("rnn." + call, {"rnn": rnn, "np": np})


# ------------------------------------------------------------- backward(need_dx)
def test_backward_without_dx_gives_the_same_gradients():
    rng = np.random.default_rng(3)
    rnn = rnnext.RNN(6, 10, 4, num_layers=2, dtype="float64", seed=0)
    x, g = rng.standard_normal((9, 3, 6)), rng.standard_normal((9, 3, 4))
    rnn(x)
    rnn.zero_grad()
    dx, dh0 = rnn.backward(g)
    want = rnn.flat_grads.copy()
    rnn(x)
    rnn.zero_grad()
    none, dh0_b = rnn.backward(g, need_dx=False)
    assert dx is not None and none is None
    np.testing.assert_array_equal(rnn.flat_grads, want)
    np.testing.assert_array_equal(dh0_b, dh0)
    with pytest.raises(TypeError, match=r"need_dx: expected a bool"):
        rnn.backward(g, need_dx="no")


# -------------------------------------------------------- one-pass softmax loss
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("C", [1, 7, 16, 33, 2000])
def test_softmax_loss_fast_and_general_paths_give_the_reference(dtype, reduction, C):
    """Without a mask the loss runs in C++; an all-ones mask takes the NumPy path; both
    against tests/reference.py."""
    rng = np.random.default_rng(C)
    z = (3 * rng.standard_normal((5, 4, C))).astype(dtype)[:, 1:]  # not contiguous
    t = rng.integers(0, C, (5, 3)).astype(np.uint8 if C < 256 else np.int64)
    loss, grad = softmax_cross_entropy(z, t, reduction=reduction)
    general_loss, general_grad = softmax_cross_entropy(z, t, mask=np.ones((5, 3)), reduction=reduction)
    want_loss, want_grad = ref_softmax_cross_entropy(z, t, reduction=reduction)
    assert grad.dtype == general_grad.dtype == np.dtype(dtype)
    assert grad.shape == z.shape
    tol = 1e-12 if dtype == "float64" else 2e-6
    for got_loss, got_grad in ((loss, grad), (general_loss, general_grad)):
        assert got_loss == pytest.approx(want_loss, rel=tol, abs=tol)
        np.testing.assert_allclose(got_grad, want_grad, rtol=tol, atol=tol)


def test_softmax_loss_fast_path_names_a_bad_id():
    with pytest.raises(ValueError, match=r"targets: class ids must be in \[0, 3\), got -1 at targets\[1, 0\]"):
        softmax_cross_entropy(np.zeros((2, 1, 3), np.float32), np.array([[0], [-1]]))


# ------------------------------------------------------------------ workspaces
def test_workspaces_stop_growing_and_stay_near_the_activations():
    T, B, I, H, O = 40, 8, 12, 64, 10
    rnn = rnnext.RNN(I, H, O, dtype="float32", seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    sizes = []
    for _ in range(3):
        y, _ = rnn(x)
        rnn.backward(np.ones_like(y))
        sizes.append(rnn._core.workspace_bytes)
    first = sizes[0]
    assert sizes == [first] * 3
    # Kept: a copy of the (writable) input, T*B*I, and the states, T*B*H; the workspaces
    # of a call are released when it returns (tests/test_memory.py has more).
    assert first == T * B * (I + H) * 4


def test_reference_agrees_on_a_threaded_shape(threads):
    """The plain NumPy reference (loops over sequences) on a shape whose recurrence is split."""
    rnnext.set_num_threads(2)
    cfg = dict(num_layers=1, hidden_size=260, bidirectional=False, nonlinearity="tanh", output_size=None)
    rnn = rnnext.RNN(10, 260, dtype="float64", seed=4)
    x = np.random.default_rng(5).standard_normal((30, 8, 10))
    y, h_n = rnn(x)
    y_ref, h_ref = ref_forward(rnn.params, cfg, x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n, h_ref[0], rtol=1e-12, atol=1e-12)


# ------------------------------------------------- kernels for every instruction set
# One model per dtype in a child process (the kernel is picked once per process): forward,
# backward and step() on a shape past the GEMM blocking sizes, saved with the parameters.
CHILD = """
import sys, numpy as np, rnnext
from rnnext import _core
out = {"isa": np.array(_core.gemm_isa())}
for dtype in ("float32", "float64"):
    rnn = rnnext.RNN(17, 130, 70, num_layers=2, bidirectional=True, dtype=dtype, seed=11)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((21, 25, 17)).astype(dtype)
    lengths = rng.integers(1, 22, 25)
    y, h_n = rnn(x, lengths=lengths)
    gy, gh = rng.standard_normal(y.shape).astype(dtype), rng.standard_normal(h_n.shape).astype(dtype)
    dx, dh0 = rnn.backward(gy, gh)
    for k, v in dict(x=x, lengths=lengths, y=y, h_n=h_n, gy=gy, gh=gh, dx=dx, dh0=dh0).items():
        out[dtype + "/" + k] = v
    for k, v in rnn.params.items():
        out[dtype + "/param/" + k], out[dtype + "/grad/" + k] = v, rnn.grads[k]
    uni = rnnext.RNN(17, 130, 70, dtype=dtype, seed=12)
    h, steps = None, []
    for t in range(3):
        y_t, h = uni.step(x[t], h)
        steps.append(y_t)
    out[dtype + "/step_y"] = np.stack(steps)
    for k, v in uni.params.items():
        out[dtype + "/step_param/" + k] = v
np.savez(sys.argv[1], **out)
"""


def cpu_flags():
    """The x86 feature flags of /proc/cpuinfo (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def best_kernel(flags):
    """The kernel the engine should pick on a CPU with these flags (x86-64 builds)."""
    if {"avx512f", "avx512vl", "avx512bw", "avx512dq"} <= flags:
        return "avx512"
    return "avx2" if {"avx2", "fma"} <= flags else "generic"


def run_kernel(isa, path):
    env = dict(os.environ)
    env.pop("RNNEXT_GEMM_ISA", None)
    if isa != "default":
        env["RNNEXT_GEMM_ISA"] = isa
    subprocess.run([sys.executable, "-c", CHILD, str(path)], env=env, check=True, timeout=300)
    with np.load(path) as f:
        return dict(f)


@pytest.mark.parametrize("isa", ["default", "avx2", "generic"])
def test_every_kernel_gives_the_reference_results(isa, tmp_path):
    """Builds for x86-64 carry AVX-512 (or the host's best), AVX2 and baseline kernels and
    pick one from the CPU; RNNEXT_GEMM_ISA=avx2|generic asks for a lesser one. Each kernel
    this CPU can run gives the NumPy reference's outputs, gradients and step() outputs,
    whichever of them is the default."""
    got = run_kernel(isa, tmp_path / "out.npz")
    ran = str(got["isa"])
    flags = cpu_flags()
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    if x86 and flags:  # the dispatch: the best kernel, or the one asked for when the CPU has it
        best = best_kernel(flags)
        order = ["generic", "avx2", "avx512"]
        want = best if isa == "default" else min(isa, best, key=order.index)
        assert ran == want, f"RNNEXT_GEMM_ISA={isa} on a CPU whose best kernel is {best} ran {ran}"
    elif not x86:
        assert ran == "generic"  # one baseline kernel (NEON...) on other machines
    for dtype in ("float32", "float64"):
        tol = 1e-12 if dtype == "float64" else 2e-5  # seen: 1.3e-15 and 5.3e-7
        g = {k.split("/", 1)[1]: v for k, v in got.items() if k.startswith(dtype + "/")}
        params = {k[6:]: v for k, v in g.items() if k.startswith("param/")}
        cfg = dict(num_layers=2, hidden_size=130, bidirectional=True, nonlinearity="tanh", output_size=70)
        y, h_n = ref_forward(params, cfg, g["x"], lengths=g["lengths"])
        grads, dx, dh0 = ref_backward(params, cfg, g["x"], g["gy"], g["gh"], lengths=g["lengths"])
        want = dict(y=y, h_n=h_n, dx=dx, dh0=dh0, **{"grad/" + k: v for k, v in grads.items()})
        uni = {k[11:]: v for k, v in g.items() if k.startswith("step_param/")}
        want["step_y"] = ref_forward(uni, dict(cfg, num_layers=1, bidirectional=False), g["x"][:3])[0]
        for key, w in want.items():
            assert_close(g[key], w, tol, f"{ran} kernel, {dtype}, {key}")

"""Misuse, hostile input, NaN and threads: always a Python exception or a documented result,
never a crash. Cases that reach C++ with bad input run in a subprocess, so a segfault fails
that case instead of killing the suite."""

import math
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import backward as ref_backward
from reference import forward as ref_forward

import rnnext



def machine_memory():
    """Bytes of RAM, from /proc/meminfo (Linux) or sysconf."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# Sizes needing about twice this machine's memory: RNN(1, H) keeps 2 H^2 float32 values
# (parameters and gradients); a forward of (N, N, 3) on RNN(3, 4, 2) keeps 2 N^2 (3 + 4)
# float32 values.
H_OVER_MEMORY = math.isqrt(machine_memory() // 4) + 1
N_OVER_MEMORY = math.isqrt(machine_memory() // 28) + 1

# (label, setup + statement, exception name, text the message must contain)
BAD_INPUTS = [
    ("x wrong ndim", "r(np.zeros((4,)))", "ValueError", "x: expected shape"),
    ("x wrong feature axis", "r(np.zeros((4, 2, 5)))", "ValueError", "axis 2 (input_size) should have size 3"),
    ("x complex", "r(np.zeros((4, 2, 3), complex))", "TypeError", "x: expected real numbers"),
    ("x object", "r(np.array([[[None] * 3]], dtype=object))", "TypeError", "x: expected real numbers"),
    ("x strings", "r([[['a', 'b', 'c']]])", "TypeError", "x: expected real numbers"),
    ("x ragged", "r([[[1, 2, 3]], [[1, 2]]])", "TypeError", "x: expected an array-like"),
    ("h0 wrong batch", "r(np.zeros((4, 2, 3)), np.zeros((3, 4)))", "ValueError", "h0: axis 0 (B) should have size 2"),
    ("h0 stacked shape", "s(np.zeros((4, 2, 3)), np.zeros((2, 4)))", "ValueError", "h0: expected 3 dimensions"),
    ("h0 complex", "r(np.zeros((4, 2, 3)), np.zeros((2, 4), complex))", "TypeError", "h0: expected real numbers"),
    ("lengths too long", "r(np.zeros((4, 2, 3)), lengths=[1, 5])", "ValueError", "lengths: expected values in [0, 4]"),
    ("lengths negative", "r(np.zeros((4, 2, 3)), lengths=[-1, 2])", "ValueError", "got -1 at lengths[0]"),
    ("lengths wrong size", "r(np.zeros((4, 2, 3)), lengths=[1])", "ValueError", "lengths: axis 0 (B) should have size 2"),
    ("lengths fractional", "r(np.zeros((4, 2, 3)), lengths=[1.5, 2])", "TypeError", "lengths: expected integers"),
    ("ids out of range", "v(np.array([[0, 9]]))", "ValueError", "got 9 at x[0, 1]"),
    ("ids negative", "v(np.array([3, -2]))", "ValueError", "got -2 at x[1]"),
    ("ids not integers", "v(np.array([[0.5]]))", "TypeError", "x: expected integers"),
    ("backward before forward", "r.backward(np.zeros((4, 2, 2)))", "ValueError", "forward"),
    ("grad wrong shape", "r(np.zeros((4, 2, 3))); r.backward(np.zeros((4, 2, 3)))", "ValueError", "grad: expected the shape of y"),
    ("grad complex", "r(np.zeros((4, 2, 3))); r.backward(np.zeros((4, 2, 2), complex))", "TypeError", "grad: expected real numbers"),
    ("dh_n wrong shape", "r(np.zeros((4, 2, 3))); r.backward(np.zeros((4, 2, 2)), np.zeros((4,)))", "ValueError", "dh_n"),
    ("wrt unknown", "r(np.zeros((4, 2, 3))); r.backward(np.zeros((4, 2, 2)), wrt='x')", "ValueError", "wrt: expected one of"),
    ("ctor zero size", "rnnext.RNN(0, 3)", "ValueError", "input_size: expected an int >= 1, got 0"),
    ("ctor float size", "rnnext.RNN(2.0, 3)", "TypeError", "input_size: expected an int"),
    ("ctor bool size", "rnnext.RNN(True, 3)", "TypeError", "input_size: expected an int"),
    ("ctor unknown option", "rnnext.RNN(2, 3, hiden=3)", "TypeError", "hiden"),
    ("ctor huge", "rnnext.RNN(10**9, 10**9)", "MemoryError", "more than this machine"),
    ("ctor over memory", f"rnnext.RNN(1, {H_OVER_MEMORY})", "MemoryError", "more than this machine"),
    ("forward over memory", f"r(np.broadcast_to(np.float32(0), ({N_OVER_MEMORY}, {N_OVER_MEMORY}, 3)))", "MemoryError",
     f"T={N_OVER_MEMORY}, B={N_OVER_MEMORY}"),
    ("reset done not bool", "r.reset_state(np.zeros((2, 4)), [1, 0])", "TypeError", "done: expected a boolean array"),
    ("clip bad max_norm", "rnnext.optim.clip_grad_norm(r, -1)", "ValueError", "max_norm"),
    ("sgd bad lr", "rnnext.optim.SGD(r, lr=0)", "ValueError", "lr"),
    ("step x shape", "r.step(np.zeros(5))", "ValueError", "x: expected shape (3,) or (B, 3), got shape (5,)"),
    ("step h shape", "r.step(np.zeros(3), np.zeros(7))", "ValueError", "h: expected shape (4,) or (1, 4), got shape (7,)"),
    ("step x complex", "r.step(np.zeros(3, complex))", "TypeError", "x: expected an array of real numbers"),
    ("step h strings", "r.step(np.zeros(3), np.array(['a'] * 4))", "TypeError", "h: expected an array of real numbers"),
    ("step x object", "r.step(object())", "TypeError", "x: expected an array of real numbers"),
    ("step id out of range", "v.step(7)", "ValueError", "x: token ids must be in [0, 5), got 7"),
    ("step bidirectional", "rnnext.RNN(3, 4, bidirectional=True).step(np.zeros(3))", "ValueError", "unidirectional"),
    ("threads zero", "rnnext.set_num_threads(0)", "ValueError", "n: expected an int >= 1"),
    ("loss bad target id", "rnnext.losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 7]))", "ValueError", "targets"),
]

PRELUDE = """
import numpy as np, rnnext
r = rnnext.RNN(3, 4, 2)
s = rnnext.RNN(3, 4, 2, num_layers=2)
v = rnnext.RNN(3, 4, vocab_size=5)
"""


@pytest.mark.parametrize("label, code, error, text", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_a_clear_error(label, code, error, text):
    program = PRELUDE + textwrap.dedent(f"""
        try:
            {code}
        except Exception as e:
            print(type(e).__name__)
            print(e)
        else:
            print("no exception")
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"interpreter died ({done.returncode}): {done.stderr[-2000:]}"
    kind, _, message = done.stdout.partition("\n")
    assert kind == error, done.stdout
    assert text in message, message


# --------------------------------------------------------------------------- properties
layouts = st.sampled_from(["C", "F", "reversed", "strided", "readonly", "list"])


def with_layout(a, layout):
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "reversed":
        return np.ascontiguousarray(a[::-1])[::-1]
    if layout == "strided":
        return np.repeat(a, 2, axis=-1)[..., ::2]
    if layout == "readonly":
        a = a.copy()
        a.flags.writeable = False
        return a
    if layout == "list":
        return a.tolist()
    return a


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    T=st.integers(0, 6),
    B=st.integers(0, 4),
    I=st.integers(1, 4),
    H=st.integers(1, 5),
    L=st.integers(1, 2),
    bidir=st.booleans(),
    act=st.sampled_from(["tanh", "relu", "sigmoid"]),
    in_dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int32]),
    layout=layouts,
    use_lengths=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_input_matches_the_float64_reference(T, B, I, H, L, bidir, act, in_dtype, layout, use_lengths, seed):
    rng = np.random.default_rng(seed)
    rnn = rnnext.RNN(I, H, 2, nonlinearity=act, num_layers=L, bidirectional=bidir, dtype="float64", seed=seed)
    x = (rng.standard_normal((T, B, I)) * 3).astype(in_dtype)
    lengths = rng.integers(0, T + 1, B) if use_lengths else None
    if layout == "list" and x.size == 0:
        layout = "C"  # a nested list cannot carry the shape of an empty array
    y, h_n = rnn(with_layout(x, layout), lengths=lengths)
    ref_y, ref_h = ref_forward(rnn.params, rnn.config, x.astype(np.float64), lengths=lengths)
    np.testing.assert_allclose(y, ref_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n, ref_h[0] if rnn.num_states == 1 else ref_h, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    dx, _ = rnn.backward(with_layout(g, layout))
    rnn.zero_grad()
    dx_c, _ = rnn.backward(np.ascontiguousarray(g))
    np.testing.assert_array_equal(dx, dx_c)


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 5), B=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_float32_model_is_close_to_float64(T, B, seed):
    r64 = rnnext.RNN(3, 4, 2, dtype="float64", seed=seed)
    r32 = rnnext.RNN(3, 4, 2, dtype="float32")
    r32.flat_params[...] = r64.flat_params
    x = np.random.default_rng(seed).standard_normal((T, B, 3))
    np.testing.assert_allclose(r32(x)[0], r64(x)[0], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- NaN and inf
def test_nan_and_inf_propagate_as_in_numpy():
    rnn = rnnext.RNN(3, 4, 2, dtype="float64", seed=0)
    x = np.ones((3, 2, 3))
    x[1, 0, 0] = np.nan
    y, h_n = rnn(x)
    assert np.isnan(y[1:, 0]).all() and np.isfinite(y[:, 1]).all()  # only the NaN's sequence
    assert np.isfinite(y[0, 0]).all() and np.isnan(h_n[0]).all() and np.isfinite(h_n[1]).all()
    rnn.backward(np.ones_like(y))
    assert np.isnan(rnn.flat_grads).any()
    with pytest.raises(ValueError, match="not finite"):
        rnnext.optim.clip_grad_norm(rnn, 1.0, error_if_nonfinite=True)
    rnn.zero_grad()
    rnn.params["W_x"][0, 0] = np.inf  # tanh(inf) = 1, as np.tanh: saturates, stays finite
    y_inf, h_inf = rnn(np.ones((2, 1, 3)))
    assert h_inf[0, 0] == 1.0 and np.isfinite(y_inf).all()
    rnn.params["W_x"][0, 0] = np.nan
    y, _ = rnn(np.ones((2, 1, 3)))
    assert np.isnan(y).all()  # propagates, no hang or crash


# --------------------------------------------------------------------------- threads
# Shapes that reach the thread pool (cpp/kernels.hpp plan_recurrence, cpp/gemm.hpp
# kParallelMinFma = 2^22 multiply-adds): with 2 threads the first model's recurrence
# (B H^2 T = 26M >= 4 * 2^22) is split by batch rows, the second's (W_h of 1.3 MB) by columns
# of W_h in a team that needs the whole pool; their W_y products and dW_h sums are split too.
# Run at once from two Python threads, one of them often finds the pool busy and falls back
# to one thread.
POOL_MODELS = [dict(T=40, B=8, I=16, H=256, O=64), dict(T=40, B=4, I=16, H=400, O=64)]


def _pool_model(i):
    c = POOL_MODELS[i]
    rnn = rnnext.RNN(c["I"], c["H"], c["O"], dtype="float64", seed=i)
    rng = np.random.default_rng(10 + i)
    x, g = rng.standard_normal((c["T"], c["B"], c["I"])), rng.standard_normal((c["T"], c["B"], c["O"]))
    return rnn, x, g


def _forward_backward(rnn, x, g):
    y, h_n = rnn(x)
    rnn.zero_grad()
    dx, _ = rnn.backward(g)
    return y, h_n, dx, rnn.flat_grads.copy()


@pytest.fixture
def two_threads():
    before = rnnext.get_num_threads()
    rnnext.set_num_threads(2)
    yield
    rnnext.set_num_threads(before)


def test_two_models_in_two_threads_equal_single_threaded_use(two_threads):
    models = [_pool_model(i) for i in range(2)]
    rnnext.set_num_threads(1)
    expected = [_forward_backward(*m) for m in models]
    for (rnn, x, g), (y, h_n, dx, grads) in zip(models, expected):  # single-threaded = reference
        y_ref, h_ref = ref_forward(rnn.params, rnn.config, x)
        np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(h_n, h_ref[0], rtol=1e-10, atol=1e-10)
        grads_ref, dx_ref, _ = ref_backward(rnn.params, rnn.config, x, g)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-10)
        for name, want in grads_ref.items():
            np.testing.assert_allclose(rnn.grads[name], want, rtol=1e-10, atol=1e-9, err_msg=name)
    rnnext.set_num_threads(2)
    results = [[], []]
    start = threading.Barrier(2)

    def work(i):
        start.wait()
        for _ in range(15):
            results[i].append(_forward_backward(*models[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert len(results[i]) == 15
        for run in results[i]:
            for got, want, what in zip(run, expected[i], ("y", "h_n", "dx", "grads")):
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"model {i}, {what}")


def test_one_model_shared_by_two_threads_stays_correct(two_threads):
    """Calls on one model are serialised by its lock: each forward sees its own input."""
    rnn, x, _ = _pool_model(1)
    xs = [x, np.random.default_rng(7).standard_normal(x.shape)]
    expected = [ref_forward(rnn.params, rnn.config, x)[0] for x in xs]
    failures = []

    def work(i):
        for _ in range(15):
            y, _ = rnn(xs[i])
            if not np.allclose(y, expected[i], rtol=1e-10, atol=1e-10):
                failures.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def _long_call(kind, H):
    """A forward, or a backward, of an engine with H hidden units on 1000 steps."""
    rnn = rnnext.RNN(64, H, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((1000, 4, 64))
    if kind == "forward":
        return lambda: rnn(x)
    y, _ = rnn(x)
    g = np.ones_like(y)
    return lambda: rnn.backward(g)


@pytest.mark.parametrize("kind", ["forward", "backward"])
def test_the_gil_is_released_during_compute(kind, monkeypatch):
    """A Python thread keeps making progress in the middle of a C++ call of 200 ms or more.

    With the GIL held, the thread could run only in the call's Python prologue and epilogue
    (well under a millisecond, plus one 5 ms switch interval), never in the middle half."""
    before = rnnext.get_num_threads()
    rnnext.set_num_threads(1)  # leave the other core to the counting thread
    try:
        H, took = 64, 0.0
        while took < 0.25:  # size the call so that it lasts 250 ms or more on this machine
            H *= 2
            call = _long_call(kind, H)
            call()  # the first call allocates the workspaces
            t0 = time.perf_counter()
            call()
            took = time.perf_counter() - t0
        ticks, stop = [], threading.Event()

        def count():
            while not stop.is_set():
                ticks.append(time.perf_counter())
                time.sleep(0.001)  # about a thousand ticks a second

        counter = threading.Thread(target=count)
        counter.start()
        time.sleep(0.02)
        t0 = time.perf_counter()
        call()
        t1 = time.perf_counter()
        stop.set()
        counter.join()
    finally:
        rnnext.set_num_threads(before)
    lo, hi = t0 + (t1 - t0) / 4, t1 - (t1 - t0) / 4
    middle = [t for t in ticks if lo <= t <= hi]
    assert middle, f"no progress of a Python thread during the middle {hi - lo:.3f} s of a {kind} call"

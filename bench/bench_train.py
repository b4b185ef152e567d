"""Training-step time of rnnext against PyTorch, JAX and plain NumPy, side by side in one run.

One training step = forward, loss, backpropagation through time and an SGD update of a tanh
RNN with a linear output layer and softmax cross-entropy summed over all steps (the
DeepBench shape: relu, no output layer, squared error 0.5*|y - R|^2 against a fixed random
target R). All implementations
start from the same parameters and their first losses are compared, so the table also says
whether they computed the same thing. Rounds are interleaved (every implementation runs a
block of steps per round) so drift on a shared machine hits all of them alike.

    python bench/bench_train.py                      # all shapes, all peers found
    python bench/bench_train.py --shapes latency small --json out.json
    python bench/bench_train.py --threads 1
    python bench/bench_train.py --check              # the speed floor CI runs (~15 s)

Missing peers (torch, jax) are reported as missing. Without --check nothing is asserted;
the goals are printed as met or not. With --check (rnnext and NumPy only, latency, small
and medium shapes, one thread unless --threads says otherwise) the exit status is 1 unless
rnnext's step is faster than the NumPy implementation's at every shape (the median over
interleaved rounds of each round's ratio below 1) and their first losses agree.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional

SHAPES = {  # name: (I, H, O, B, T, nonlinearity); O None: no output layer
    "latency": (32, 64, 32, 1, 200, "tanh"),
    "small": (64, 128, 64, 16, 100, "tanh"),
    "medium": (128, 256, 128, 32, 100, "tanh"),
    "large": (512, 1024, 512, 64, 50, "tanh"),
    "deepbench": (1760, 1760, None, 16, 50, "relu"),
}
# Goals of issue 10: rnnext time / fastest peer's (NumPy, PyTorch, JAX) at most this much.
GOAL_VS_BEST = {"latency": 0.3, "small": 0.5, "medium": 0.8, "large": 0.9}
GOAL_PCT_MATMUL = {"large": 85, "deepbench": 80}
CHECK_SHAPES = ["latency", "small", "medium"]
PEERS = ["numpy", "torch", "jax"]
LR = 1e-5


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true",
                   help="speed floor: exit 1 unless rnnext's step beats the NumPy implementation's "
                        f"(median ratio < 1) at {', '.join(CHECK_SHAPES)}; rnnext and NumPy only")
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES),
                   help=f"default: all ({', '.join(CHECK_SHAPES)} with --check)")
    p.add_argument("--peers", nargs="+", choices=["rnnext"] + PEERS,
                   help="default: all (rnnext and numpy with --check)")
    p.add_argument("--threads", type=int,
                   help="threads for every implementation (default: all cores; 1 with --check)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per shape (default 7, 11 with --check)")
    p.add_argument("--block", type=float,
                   help="seconds of steps each implementation runs per round, at least one step "
                        "(default 0.15, 0.1 with --check)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--no-stream", action="store_true", help="skip the streaming step() timing")
    a = p.parse_args(argv)
    # The floor compares kernels and engine, not the scheduler: on a shared machine two-thread
    # steps of both sides swing by 10x from round to round (threads waiting for a descheduled
    # partner), one-thread steps by a few percent.
    a.threads = a.threads or (1 if a.check else os.cpu_count() or 1)
    if a.threads < 1:
        p.error(f"--threads: expected an integer >= 1, got {a.threads}")
    a.shapes = a.shapes or (CHECK_SHAPES if a.check else list(SHAPES))
    a.peers = a.peers or (["rnnext", "numpy"] if a.check else ["rnnext"] + PEERS)
    if a.check and not {"rnnext", "numpy"} <= set(a.peers):
        p.error(f"--check: --peers must include rnnext and numpy, got {' '.join(a.peers)}")
    a.rounds = a.rounds or (11 if a.check else 7)
    a.block = a.block or (0.1 if a.check else 0.15)
    return a


ARGS = parse_args()
# Thread counts must be set before NumPy (OpenBLAS) and JAX (XLA) start their pools.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
if ARGS.threads == 1:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/_machine.py
from _machine import cpu_name  # noqa: E402


def flops_per_step(I: int, H: int, O: Optional[int], B: int, T: int) -> float:
    """T*B*(4*I*H + 6*(H*H + H*O)): the products every implementation here does. Forward
    2*(I*H + H*H + H*O), weight gradients the same again, dL/ds from the output layer 2*H*O
    and through W_h 2*H*H; dL/dx (2*I*H) is skipped by all of them (need_dx=False in
    rnnext; x does not require a gradient in PyTorch and JAX; the NumPy code never forms it)."""
    return float(T * B * (4 * I * H + 6 * (H * H + H * (O or 0))))


def make_problem(shape: str) -> Dict[str, Any]:
    I, H, O, B, T, act = SHAPES[shape]
    rng = np.random.default_rng(0)
    k = 1.0 / np.sqrt(H)
    p = {
        "W_x": rng.uniform(-k, k, (I, H)),
        "W_h": rng.uniform(-k, k, (H, H)),
        "b_h": rng.uniform(-k, k, H),
    }
    if O:
        p["W_y"] = rng.uniform(-k, k, (H, O))
        p["b_y"] = rng.uniform(-k, k, O)
    p = {n: v.astype(np.float32) for n, v in p.items()}
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    targets = rng.integers(0, O, (T, B)) if O else None
    R = None if O else rng.standard_normal((T, B, H)).astype(np.float32)
    return dict(I=I, H=H, O=O, B=B, T=T, act=act, params=p, x=x, targets=targets, R=R)


# ----------------------------------------------------------------- implementations
# Each builder returns step() -> loss (float), running one full training step.


def build_rnnext(pb: Dict[str, Any]) -> Callable[[], float]:
    import rnnext
    from rnnext.losses import softmax_cross_entropy

    if hasattr(rnnext, "set_num_threads"):
        rnnext.set_num_threads(ARGS.threads)
    rnn = rnnext.RNN(pb["I"], pb["H"], pb["O"], nonlinearity=pb["act"], dtype="float32", seed=0)
    for name, v in pb["params"].items():
        rnn.params[name][...] = v
    opt = rnnext.optim.SGD(rnn, lr=LR)
    x, targets, R = pb["x"], pb["targets"], pb["R"]

    def step() -> float:
        y, _ = rnn(x)
        if targets is not None:
            loss, grad = softmax_cross_entropy(y, targets, reduction="sum")
        else:
            grad = y - R
            loss = 0.5 * float(np.vdot(grad, grad))
        opt.zero_grad()
        rnn.backward(grad, wrt="logits" if targets is not None else "y", need_dx=False)
        opt.step()
        return loss

    step.model = rnn  # type: ignore[attr-defined]
    return step


def build_numpy(pb: Dict[str, Any]) -> Callable[[], float]:
    """The same algorithm in plain NumPy: input projection and weight gradients as single
    GEMMs over all T*B rows, only s_{t-1} W_h and dS W_h^T inside the loops."""
    p = {n: v.copy() for n, v in pb["params"].items()}
    x, targets, R, act = pb["x"], pb["targets"], pb["R"], pb["act"]
    T, B, I, H, O = pb["T"], pb["B"], pb["I"], pb["H"], pb["O"]
    S = np.empty((T, B, H), np.float32)
    h0 = np.zeros((B, H), np.float32)
    rows = np.arange(T * B)

    def step() -> float:
        np.matmul(x.reshape(T * B, I), p["W_x"], out=S.reshape(T * B, H))
        S[...] += p["b_h"]
        prev = h0
        for t in range(T):
            S[t] += prev @ p["W_h"]
            if act == "tanh":
                np.tanh(S[t], out=S[t])
            else:
                np.maximum(S[t], 0, out=S[t])
            prev = S[t]
        Sf = S.reshape(T * B, H)
        if O:
            z = Sf @ p["W_y"] + p["b_y"]
            z -= z.max(axis=1, keepdims=True)
            e = np.exp(z)
            se = e.sum(axis=1, keepdims=True)
            t_flat = targets.reshape(-1)
            loss = float(np.sum(np.log(se[:, 0]) - z[rows, t_flat]))
            dz = e / se
            dz[rows, t_flat] -= 1.0
            g = {"W_y": Sf.T @ dz, "b_y": dz.sum(axis=0)}
            dS = (dz @ p["W_y"].T).reshape(T, B, H)
        else:
            dS = S - R
            loss, g = 0.5 * float(np.vdot(dS, dS)), {}
        dP = np.empty_like(S)
        dh = np.zeros((B, H), np.float32)
        WhT = p["W_h"].T
        for t in range(T - 1, -1, -1):
            gt = dS[t] + dh
            gt *= (1.0 - S[t] * S[t]) if act == "tanh" else (S[t] > 0)
            dP[t] = gt
            dh = gt @ WhT
        dPf = dP.reshape(T * B, H)
        g["W_x"] = x.reshape(T * B, I).T @ dPf
        g["W_h"] = S[:-1].reshape(-1, H).T @ dP[1:].reshape(-1, H)
        g["b_h"] = dPf.sum(axis=0)
        for n, gn in g.items():
            p[n] -= LR * gn
        return loss

    return step


def build_torch(pb: Dict[str, Any]) -> Callable[[], float]:
    import torch

    torch.set_num_threads(ARGS.threads)
    I, H, O = pb["I"], pb["H"], pb["O"]
    rnn = torch.nn.RNN(I, H, nonlinearity=pb["act"])
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(pb["params"]["W_x"].T.copy()))
        rnn.weight_hh_l0.copy_(torch.from_numpy(pb["params"]["W_h"].T.copy()))
        rnn.bias_ih_l0.zero_()
        rnn.bias_hh_l0.copy_(torch.from_numpy(pb["params"]["b_h"]))
    mods = [rnn]
    lin = None
    if O:
        lin = torch.nn.Linear(H, O)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(pb["params"]["W_y"].T.copy()))
            lin.bias.copy_(torch.from_numpy(pb["params"]["b_y"]))
        mods.append(lin)
    opt = torch.optim.SGD([q for m in mods for q in m.parameters()], lr=LR)
    x = torch.from_numpy(pb["x"])
    tg = torch.from_numpy(pb["targets"].reshape(-1)) if O else None
    R = torch.from_numpy(pb["R"]) if not O else None

    def step() -> float:
        opt.zero_grad()
        out, _ = rnn(x)
        if O:
            loss = torch.nn.functional.cross_entropy(lin(out).reshape(-1, O), tg, reduction="sum")
        else:
            loss = 0.5 * ((out - R) ** 2).sum()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def build_jax(pb: Dict[str, Any]) -> Callable[[], float]:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_platforms", "cpu")
    O, act = pb["O"], pb["act"]
    f = jnp.tanh if act == "tanh" else jax.nn.relu
    B, H = pb["B"], pb["H"]

    def loss_fn(p: Dict[str, Any], x: Any, targets: Any, R: Any) -> Any:
        def cell(h: Any, u: Any) -> Any:
            h = f(u + h @ p["W_h"])
            return h, h

        _, S = jax.lax.scan(cell, jnp.zeros((B, H), jnp.float32), x @ p["W_x"] + p["b_h"])
        if O:
            logp = jax.nn.log_softmax(S @ p["W_y"] + p["b_y"])
            return -jnp.take_along_axis(logp, targets[..., None], axis=-1).sum()
        return 0.5 * jnp.sum((S - R) ** 2)

    @jax.jit
    def train(p: Dict[str, Any], x: Any, targets: Any, R: Any) -> Any:
        loss, g = jax.value_and_grad(loss_fn)(p, x, targets, R)
        return jax.tree_util.tree_map(lambda a, b: a - LR * b, p, g), loss

    state = {"p": {n: jnp.asarray(v) for n, v in pb["params"].items()}}
    x = jnp.asarray(pb["x"])
    targets = jnp.asarray(pb["targets"]) if O else jnp.zeros((1,), jnp.int32)
    R = jnp.asarray(pb["R"]) if not O else jnp.zeros((1,), jnp.float32)

    def step() -> float:
        state["p"], loss = train(state["p"], x, targets, R)
        return float(loss)  # waits for the result

    return step


BUILDERS = {"rnnext": build_rnnext, "numpy": build_numpy, "torch": build_torch, "jax": build_jax}


# ----------------------------------------------------------------------- timing


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def time_shape(shape: str) -> Dict[str, Any]:
    pb = make_problem(shape)
    steps: Dict[str, Callable[[], float]] = {}
    result: Dict[str, Any] = {"impls": {}, "missing": {}}
    first_loss: Dict[str, float] = {}
    for name in ARGS.peers:
        try:
            steps[name] = BUILDERS[name](pb)
        except ImportError as e:
            result["missing"][name] = f"not installed ({e.name or e})"
            continue
        first_loss[name] = steps[name]()  # first step from identical parameters
    # Warm up (JIT compilation, workspaces, caches) and size each block.
    per_step = {}
    for name, step in steps.items():
        t0 = time.perf_counter()
        step()
        step()
        per_step[name] = (time.perf_counter() - t0) / 2
    inner = {n: max(1, int(ARGS.block / max(dt, 1e-9))) for n, dt in per_step.items()}
    rounds: Dict[str, List[List[float]]] = {n: [] for n in steps}
    for _ in range(ARGS.rounds):
        for name, step in steps.items():
            ts = []
            for _ in range(inner[name]):
                t0 = time.perf_counter()
                step()
                ts.append(time.perf_counter() - t0)
            rounds[name].append(ts)
    fl = flops_per_step(pb["I"], pb["H"], pb["O"], pb["B"], pb["T"])
    ref = first_loss.get("numpy", first_loss.get("torch"))
    for name, rs in rounds.items():
        ts = [t for r in rs for t in r]
        tmin, tmed = min(ts), statistics.median(ts)
        agree = None if ref is None else abs(first_loss[name] - ref) <= 1e-3 * max(1.0, abs(ref))
        result["impls"][name] = dict(min_ms=tmin * 1e3, median_ms=tmed * 1e3, steps=len(ts),
                                     gflops=fl / tmed / 1e9, first_loss=first_loss[name], loss_agrees=agree,
                                     round_medians_ms=[statistics.median(r) * 1e3 for r in rs])
    if "rnnext" in steps:
        rx = result["impls"]["rnnext"]
        for peer in PEERS:
            if peer in steps:
                # Medians of all steps, and per round (neighbours in time: drift cancels).
                pm = result["impls"][peer]
                per_round = [a / b for a, b in zip(rx["round_medians_ms"], pm["round_medians_ms"])]
                result[f"ratio_vs_{peer}"] = rx["median_ms"] / pm["median_ms"]
                result[f"round_ratios_vs_{peer}"] = per_round
        have = [p for p in PEERS if p in steps]
        if have:
            best = min(have, key=lambda p: result["impls"][p]["median_ms"])
            result["best_peer"], result["ratio_vs_best"] = best, result[f"ratio_vs_{best}"]
        if not ARGS.check:
            result["memory"] = measure_memory(steps["rnnext"], pb)
    result["shape"] = dict(zip("I H O B T".split(), SHAPES[shape][:5]), nonlinearity=pb["act"])
    result["flops_per_step"] = fl
    return result


def measure_memory(step: Callable[[], float], pb: Dict[str, Any]) -> Dict[str, int]:
    """rnnext's memory beyond its parameters, measured on its own after the timing: the
    engine's buffers, the peak of the NumPy arrays one step allocates (tracemalloc sees
    NumPy's allocations) and the RSS growth over further steps (0: nothing accumulates)."""
    import tracemalloc

    rnn = step.model  # type: ignore[attr-defined]
    for _ in range(2):
        step()
    rss0 = rss_bytes()
    for _ in range(5):
        step()
    rss_growth = rss_bytes() - rss0
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    step()
    arrays_peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return dict(
        activations_bytes=pb["T"] * pb["B"] * pb["H"] * 4,
        engine_bytes=int(getattr(rnn._core, "workspace_bytes", -1)),
        arrays_peak_bytes=int(arrays_peak),
        rss_growth_bytes=int(rss_growth),
    )


def matmul_gflops(n: int = 2048, reps: int = 10) -> float:
    a = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    b = a.copy()
    c = np.empty_like(a)
    np.matmul(a, b, out=c)
    best = min(_timed(lambda: np.matmul(a, b, out=c)) for _ in range(reps))
    return 2.0 * n**3 / best / 1e9


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_streaming() -> Dict[str, Any]:
    """Per-call time of one streaming step (B=1, H=64, I=32) from Python."""
    import rnnext

    rnn = rnnext.RNN(32, 64, dtype="float32", seed=0)
    rnn.eval()
    x = np.random.default_rng(0).standard_normal((1, 32)).astype(np.float32)
    h = np.zeros((1, 64), np.float32)
    out: Dict[str, Any] = {}

    def per_call(fn: Callable[[], Any], n: int = 20000) -> float:
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter() - t0) / n)
        return best * 1e6

    if hasattr(rnn, "step"):
        out["rnnext.step_us"] = per_call(lambda: rnn.step(x, h))
    else:
        out["rnnext.step_us"] = None
    x3 = x[None]
    out["rnnext.forward_T1_us"] = per_call(lambda: rnn(x3, h), 5000)
    try:
        import torch

        cell = torch.nn.RNNCell(32, 64)
        xt, ht = torch.from_numpy(x), torch.from_numpy(h)
        with torch.no_grad():
            out["torch.RNNCell_us"] = per_call(lambda: cell(xt, ht), 5000)
    except ImportError:
        out["torch.RNNCell_us"] = None
    return out


# ---------------------------------------------------------------------- report




def fmt(v: Optional[float], spec: str = "8.2f") -> str:
    if v is not None:
        return format(v, spec)
    width = int(spec.split(".")[0] or 1)
    return " " * (width - 1) + "-"


def main() -> int:
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    report: Dict[str, Any] = {"date": started, "cpu": cpu_name(), "cores": os.cpu_count(),
                              "threads": ARGS.threads, "python": platform.python_version(),
                              "numpy": np.__version__, "shapes": {}, "rnnext_kernels": None,
                              "rnnext_gemm_isa_env": os.environ.get("RNNEXT_GEMM_ISA"),
                              "rounds": ARGS.rounds, "block_s": ARGS.block, "loadavg_start": os.getloadavg()}
    try:
        from rnnext import _core

        report["rnnext_kernels"] = _core.gemm_isa()
    except (ImportError, AttributeError):
        pass
    for mod in ("rnnext", "torch", "jax"):
        try:
            report[mod] = __import__(mod).__version__
        except ImportError:
            report[mod] = None
    # NumPy's matmul before the first shape and after every one; the best is the figure
    # (on a shared machine a single sample can catch another job's burst). Not for --check.
    samples = [] if ARGS.check else [matmul_gflops()]
    for shape in ARGS.shapes:
        print(f"timing {shape} ...", file=sys.stderr, flush=True)
        report["shapes"][shape] = time_shape(shape)
        if not ARGS.check:
            samples.append(matmul_gflops())
    report["matmul_gflops_samples"] = samples
    report["matmul_gflops"] = max(samples) if samples else None
    if not ARGS.no_stream and not ARGS.check and "rnnext" in ARGS.peers:
        report["streaming"] = time_streaming()
    report["loadavg_end"] = os.getloadavg()
    print_report(report)
    status = check(report) if ARGS.check else 0
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {ARGS.json}")
    return status


def check(r: Dict[str, Any]) -> int:
    """The speed floor: rnnext's median step / the NumPy implementation's < 1 at every shape
    (the median over the interleaved rounds of each round's ratio), with equal first losses."""
    failures = []
    print(f"\nspeed floor (--check, {r['rnnext_kernels']} kernels): rnnext / NumPy implementation, "
          f"median of {r['rounds']} interleaved rounds, must be < 1.0")
    for shape, s in r["shapes"].items():
        rr = s["round_ratios_vs_numpy"]
        ratio = statistics.median(rr)
        s["check_ratio"] = ratio
        bad_loss = [n for n, im in s["impls"].items() if im["loss_agrees"] is False]
        ok = ratio < 1.0 and not bad_loss
        print(f"  {shape:8s} {ratio:6.2f}  (rounds {min(rr):.2f}-{max(rr):.2f})  {'ok' if ok else 'FAILED'}"
              + (f"; first loss differs from NumPy's: {', '.join(bad_loss)}" if bad_loss else ""))
        if ratio >= 1.0:
            failures.append(f"{shape}: rnnext / NumPy = {ratio:.2f}, not faster")
        if bad_loss:
            failures.append(f"{shape}: the first loss of {', '.join(bad_loss)} differs from NumPy's")
    r["check_passed"] = not failures
    if failures:
        print(f"FAILED speed floor ({r['rnnext_kernels']} kernels; rnnext's training step must beat the plain "
              f"NumPy implementation, ratio < 1.0): " + "; ".join(failures), file=sys.stderr)
        return 1
    print(f"passed: rnnext ({r['rnnext_kernels']} kernels) is faster than the NumPy implementation at "
          + ", ".join(f"{sh} ({1 / s['check_ratio']:.1f}x)" for sh, s in r["shapes"].items()))
    return 0


def print_report(r: Dict[str, Any]) -> None:
    env = f", RNNEXT_GEMM_ISA={r['rnnext_gemm_isa_env']}" if r["rnnext_gemm_isa_env"] else ""
    print(f"\n{r['date']}  {r['cpu']}  cores={r['cores']}  threads={r['threads']}  "
          f"rnnext {r['rnnext']} ({r['rnnext_kernels']} kernels{env})  numpy {r['numpy']}  torch {r['torch']}  "
          f"jax {r['jax']}")
    print("load average (1 min, this run's threads included) at start / end: {:.1f} / {:.1f} on {} CPUs".format(
        r["loadavg_start"][0], r["loadavg_end"][0], r["cores"]))
    mm = r["matmul_gflops"]
    if mm:
        print(f"NumPy float32 matmul n=2048: {mm:.1f} GFLOP/s (best of "
              + " / ".join(f"{v:.0f}" for v in r["matmul_gflops_samples"]) + ", before and after each shape)")
    print(f"{r['rounds']} interleaved rounds of ~{r['block_s']} s per implementation and shape; "
          "GFLOP/s counts T*B*(4*I*H + 6*(H*H + H*O)) per step (no dL/dx) over the median\n")
    names = [n for n in ["rnnext"] + PEERS if n in ARGS.peers]
    head = f"{'shape (I,H,O,B,T)':32s}" + "".join(f"{n + ' min/med ms':>22s}" for n in names)
    head += f"{'vs best peer':>19s}{'GFLOP/s':>9s}" + (f"{'% mm':>6s}" if mm else "")
    print(head)
    for shape, s in r["shapes"].items():
        sh = s["shape"]
        label = f"{shape} ({sh['I']},{sh['H']},{sh['O'] or '-'},{sh['B']},{sh['T']})"
        line = f"{label:32s}"
        for n in names:
            im = s["impls"].get(n)
            if im is None:
                line += f"{'missing':>22s}"
            else:
                flag = "" if im["loss_agrees"] in (True, None) else "!"
                line += f"{im['min_ms']:>12.3f} /{im['median_ms']:>8.3f}{flag}"
        rb = s.get("ratio_vs_best")
        line += f"{fmt(rb, '10.3g')} {s['best_peer'] if rb is not None else '':8s}"
        rx = s["impls"].get("rnnext")
        if rx:
            line += f"{rx['gflops']:9.1f}" + (f"{100 * rx['gflops'] / mm:6.0f}" if mm else "")
        print(line)
    if any(s["missing"] for s in r["shapes"].values()):
        miss = {n: m for s in r["shapes"].values() for n, m in s["missing"].items()}
        print("missing: " + "; ".join(f"{n}: {m}" for n, m in miss.items()))
    print("(min / median over all timed steps; 'vs best peer' = rnnext's median / the fastest peer's median;"
          "\n '!' marks a first loss that differs from NumPy's)")
    if any(s.get("memory") for s in r["shapes"].values()):
        print("\nmemory of rnnext beyond its parameters (MiB): engine buffers kept between calls, peak of the"
              "\nNumPy arrays one step allocates (y, loss gradient, ...), stored activations T*B*H*4 for"
              "\nscale, RSS growth over 5 more steps")
    for shape, s in r["shapes"].items():
        m = s.get("memory")
        if m:
            mib = {k: v / 2**20 for k, v in m.items()}
            print(f"  {shape:10s} engine {mib['engine_bytes']:8.2f}   arrays {mib['arrays_peak_bytes']:8.2f}   "
                  f"activations {mib['activations_bytes']:8.2f}   RSS growth {mib['rss_growth_bytes']:6.2f}")
    st = r.get("streaming")
    if st:
        print("\nstreaming, one step B=1 I=32 H=64 from Python (us per call): " +
              ", ".join(f"{k} {fmt(v, '.2f')}" for k, v in st.items()))
    if ARGS.check:
        return
    print("\ngoals of issue 10 (rnnext / fastest peer, same run):")
    for shape, s in r["shapes"].items():
        txt = []
        goal = GOAL_VS_BEST.get(shape)
        rb = s.get("ratio_vs_best")
        if goal is not None:
            txt.append("no peer" if rb is None else
                       f"{rb:.3g} x {s['best_peer']} (goal <= {goal}) {'met' if rb <= goal else 'NOT met'}")
        pct_goal = GOAL_PCT_MATMUL.get(shape)
        if pct_goal is not None and "rnnext" in s["impls"] and mm:
            pct = 100 * s["impls"]["rnnext"]["gflops"] / mm
            txt.append(f"{pct:.0f} % of matmul GFLOP/s (goal >= {pct_goal}) {'met' if pct >= pct_goal else 'NOT met'}")
        if txt:
            print(f"  {shape:10s} " + "; ".join(txt))
    for shape, s in r["shapes"].items():
        m = s.get("memory")
        if m and shape == "large":
            k = m["engine_bytes"] / m["activations_bytes"]
            print(f"  memory     engine buffers {k:.1f} x the stored activations T*B*H (goal <= 1.5) "
                  f"{'met' if k <= 1.5 else 'NOT met'}; RSS growth {m['rss_growth_bytes']} bytes")
    if st and st.get("rnnext.step_us") is not None:
        v = st["rnnext.step_us"]
        print(f"  streaming  {v:.2f} us per step() (goal < 2) {'met' if v < 2 else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())

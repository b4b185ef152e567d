"""Inference time of rnnext against onnxruntime's RNN op and PyTorch, side by side in one run.

Forward only, in eval mode, no gradient: a tanh RNN with a linear output layer, every peer
with the same weights and the same initial state h0. rnnext runs ``rnn.eval()(x, h0)`` (and
at the stream shape also ``rnn.step(x_t, h)``); onnxruntime runs a graph built with the
``onnx`` helper API (an RNN node, then MatMul and Add for the output layer); PyTorch runs
``nn.RNN`` + ``nn.Linear`` under ``torch.no_grad()``. Every output y and final state h_n is
compared with a float64 NumPy forward; a difference over 1e-4 ends the run with exit status
1. Rounds are interleaved (every implementation runs a block of calls per round) and the
figure is the median over rounds of the time per call.

    python bench/bench_infer.py                      # all shapes, all peers found
    python bench/bench_infer.py --shapes stream latency --json out.json
    python bench/bench_infer.py --threads 1

A missing peer (onnx/onnxruntime, torch) is reported, not fatal. No figure is asserted; the
goals of issue 10 are printed as met or not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/_machine.py
from _machine import cpu_name  # noqa: E402

SHAPES = {  # name: (I, H, O, B, T)
    "stream": (32, 64, 32, 1, 1),
    "latency": (32, 64, 32, 1, 200),
    "small": (64, 128, 64, 16, 100),
    "medium": (128, 256, 128, 32, 100),
    "large": (512, 1024, 512, 64, 50),
}
PEERS = ["onnxruntime", "torch"]
GOAL_VS_BEST = 0.8  # issue 10: rnnext <= 0.8 x the faster of onnxruntime and PyTorch
GOAL_STEP_US = 2.0  # and step() under 2 us from Python
TOL = 1e-4  # max abs difference to the float64 reference, every output


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    p.add_argument("--peers", nargs="+", choices=PEERS, default=PEERS, help="besides rnnext")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for every implementation (default: all cores)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds per shape")
    p.add_argument("--block", type=float, default=0.1,
                   help="seconds of calls each implementation runs per round (at least one call)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    a = p.parse_args(argv)
    for name in ("threads", "rounds"):
        if getattr(a, name) < 1:
            p.error(f"--{name}: expected an integer >= 1, got {getattr(a, name)}")
    return a


# --------------------------------------------------------------------------- problem


def make_problem(shape: str) -> Dict[str, Any]:
    import numpy as np

    I, H, O, B, T = SHAPES[shape]
    rng = np.random.default_rng(0)
    k = 1.0 / np.sqrt(H)
    p = {"W_x": rng.uniform(-k, k, (I, H)), "W_h": rng.uniform(-k, k, (H, H)), "b_h": rng.uniform(-k, k, H),
         "W_y": rng.uniform(-k, k, (H, O)), "b_y": rng.uniform(-k, k, O)}
    return dict(I=I, H=H, O=O, B=B, T=T, params={n: v.astype(np.float32) for n, v in p.items()},
                x=rng.standard_normal((T, B, I)).astype(np.float32),
                h0=rng.uniform(-0.5, 0.5, (B, H)).astype(np.float32))


def reference(pb: Dict[str, Any]) -> Tuple[Any, Any]:
    """The notes' forward in float64 NumPy: s_t = tanh(x_t W_x + s_{t-1} W_h + b_h), y_t = s_t W_y + b_y."""
    import numpy as np

    p = {n: v.astype(np.float64) for n, v in pb["params"].items()}
    s = pb["h0"].astype(np.float64)
    ys = []
    for x_t in pb["x"].astype(np.float64):
        s = np.tanh(x_t @ p["W_x"] + s @ p["W_h"] + p["b_h"])
        ys.append(s @ p["W_y"] + p["b_y"])
    return np.stack(ys), s


def flops_per_call(I: int, H: int, O: int, B: int, T: int) -> float:
    """Forward only: 2*T*B*(I*H + H*H + H*O)."""
    return 2.0 * T * B * (I * H + H * H + H * O)


def onnx_model(params: Dict[str, Any]) -> Any:
    """The model as an ONNX graph: RNN (tanh, one direction) on X (T, B, I) from initial_h
    (1, B, H), its Y squeezed to (T, B, H), then MatMul W_y and Add b_y. Outputs y (T, B, O)
    and Y_h (1, B, H). ONNX's RNN computes X W^T + H R^T + Wb + Rb, so W = W_x^T, R = W_h^T,
    Wb = b_h, Rb = 0."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    W_x, W_h, b_h, W_y, b_y = (params[n] for n in ("W_x", "W_h", "b_h", "W_y", "b_y"))
    I, H = W_x.shape
    O = W_y.shape[1]
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(W_x.T)[None], "W"),
        numpy_helper.from_array(np.ascontiguousarray(W_h.T)[None], "R"),
        numpy_helper.from_array(np.concatenate([b_h, np.zeros_like(b_h)])[None], "B"),
        numpy_helper.from_array(W_y, "W_y"),
        numpy_helper.from_array(b_y, "b_y"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("RNN", ["X", "W", "R", "B", "", "initial_h"], ["Y", "Y_h"],
                         hidden_size=H, activations=["Tanh"]),
        helper.make_node("Squeeze", ["Y", "axis1"], ["S"]),
        helper.make_node("MatMul", ["S", "W_y"], ["Z"]),
        helper.make_node("Add", ["Z", "b_y"], ["y"]),
    ]
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "rnnext_rnn",
        [helper.make_tensor_value_info("X", f32, ["T", "B", I]),
         helper.make_tensor_value_info("initial_h", f32, [1, "B", H])],
        [helper.make_tensor_value_info("y", f32, ["T", "B", O]),
         helper.make_tensor_value_info("Y_h", f32, [1, "B", H])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # opset 17's IR; onnxruntime releases lag onnx's newest
    onnx.checker.check_model(model)
    return model


# ----------------------------------------------------------------- implementations
# Each builder returns call() -> (y, h_n) as NumPy arrays: y (T, B, O) or one step's (B, O),
# h_n (B, H) or (1, B, H); nothing more than the idiomatic call is timed.


def build_rnnext(pb: Dict[str, Any], threads: int) -> Callable[[], Tuple[Any, Any]]:
    rnn = _rnnext_model(pb, threads)
    x, h0 = pb["x"], pb["h0"]
    return lambda: rnn(x, h0)


def build_rnnext_step(pb: Dict[str, Any], threads: int) -> Callable[[], Tuple[Any, Any]]:
    """One step from the carried state: the streaming API (T must be 1)."""
    rnn = _rnnext_model(pb, threads)
    x_t, h = pb["x"][0], pb["h0"]
    return lambda: rnn.step(x_t, h)


def _rnnext_model(pb: Dict[str, Any], threads: int) -> Any:
    import rnnext

    rnnext.set_num_threads(threads)
    rnn = rnnext.RNN(pb["I"], pb["H"], pb["O"], dtype="float32", seed=0)
    for name, v in pb["params"].items():
        rnn.params[name][...] = v
    return rnn.eval()


def build_onnxruntime(pb: Dict[str, Any], threads: int) -> Callable[[], Tuple[Any, Any]]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_model(pb["params"]).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    feed = {"X": pb["x"], "initial_h": pb["h0"][None]}
    return lambda: tuple(sess.run(["y", "Y_h"], feed))


def build_torch(pb: Dict[str, Any], threads: int) -> Callable[[], Tuple[Any, Any]]:
    import torch

    torch.set_num_threads(threads)
    p = {n: torch.from_numpy(v) for n, v in pb["params"].items()}
    rnn = torch.nn.RNN(pb["I"], pb["H"]).eval()
    lin = torch.nn.Linear(pb["H"], pb["O"]).eval()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(p["W_x"].T)
        rnn.weight_hh_l0.copy_(p["W_h"].T)
        rnn.bias_ih_l0.copy_(p["b_h"])
        rnn.bias_hh_l0.zero_()
        lin.weight.copy_(p["W_y"].T)
        lin.bias.copy_(p["b_y"])
    x, h0 = torch.from_numpy(pb["x"]), torch.from_numpy(pb["h0"][None])

    def call() -> Tuple[Any, Any]:
        with torch.no_grad():
            s, h_n = rnn(x, h0)
            return lin(s).numpy(), h_n.numpy()

    return call


# ----------------------------------------------------------------------- timing


def time_shape(shape: str, args: argparse.Namespace) -> Dict[str, Any]:
    import numpy as np

    pb = make_problem(shape)
    y_ref, h_ref = reference(pb)
    builders: Dict[str, Callable[..., Callable[[], Tuple[Any, Any]]]] = {"rnnext": build_rnnext}
    if pb["T"] == 1:
        builders["rnnext.step"] = build_rnnext_step
    builders.update({"onnxruntime": build_onnxruntime, "torch": build_torch})
    calls: Dict[str, Callable[[], Tuple[Any, Any]]] = {}
    result: Dict[str, Any] = {"impls": {}, "missing": {}}
    for name, build in builders.items():
        if name in PEERS and name not in args.peers:
            continue
        try:
            calls[name] = build(pb, args.threads)
        except ImportError as e:
            result["missing"][name] = f"not installed ({e.name or e})"
            continue
        y, h_n = calls[name]()
        y, h_n = np.reshape(y, y_ref.shape), np.reshape(h_n, h_ref.shape)  # shapes differ by unit axes only
        result["impls"][name] = dict(max_abs_diff_y=float(np.max(np.abs(y - y_ref))),
                                     max_abs_diff_h=float(np.max(np.abs(h_n - h_ref))))
    # Warm up and size each block, then interleaved rounds of blocks; a block is timed as a
    # whole (a call can be a microsecond) and gives one time per call.
    inner = {}
    for name, call in calls.items():
        t0 = time.perf_counter()
        call()
        call()
        inner[name] = max(1, int(args.block / max((time.perf_counter() - t0) / 2, 1e-9)))
    per_round: Dict[str, List[float]] = {n: [] for n in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            n = inner[name]
            t0 = time.perf_counter()
            for _ in range(n):
                call()
            per_round[name].append((time.perf_counter() - t0) / n)
    fl = flops_per_call(pb["I"], pb["H"], pb["O"], pb["B"], pb["T"])
    for name, ts in per_round.items():
        med = statistics.median(ts)
        result["impls"][name].update(median_us=med * 1e6, min_us=min(ts) * 1e6, calls=inner[name] * len(ts),
                                     gflops=fl / med / 1e9)
    peers = [n for n in PEERS if n in calls]
    if peers:
        best = min(peers, key=lambda n: result["impls"][n]["median_us"])
        result["best_peer"] = best
        for name in ("rnnext", "rnnext.step"):
            if name in calls:
                result[f"ratio_{name}"] = result["impls"][name]["median_us"] / result["impls"][best]["median_us"]
    result["shape"] = dict(zip("I H O B T".split(), SHAPES[shape]))
    result["flops_per_call"] = fl
    return result


# ---------------------------------------------------------------------- report




def versions() -> Dict[str, Optional[str]]:
    out: Dict[str, Optional[str]] = {}
    for mod in ("numpy", "rnnext", "onnx", "onnxruntime", "torch"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def print_report(r: Dict[str, Any]) -> None:
    env = f", RNNEXT_GEMM_ISA={r['rnnext_gemm_isa_env']}" if r["rnnext_gemm_isa_env"] else ""
    v = r["versions"]
    print(f"\n{r['date']}  {r['cpu']}  cores={r['cores']}  threads={r['threads']}  rnnext {v['rnnext']} "
          f"({r['rnnext_kernels']} kernels{env})  numpy {v['numpy']}  onnx {v['onnx']}  "
          f"onnxruntime {v['onnxruntime']}  torch {v['torch']}")
    print("load average (1 min, this run's threads included) at start / end: {:.1f} / {:.1f} on {} CPUs".format(
        r["loadavg_start"][0], r["loadavg_end"][0], r["cores"]))
    print(f"forward only, eval, no gradient; median over {r['rounds']} interleaved rounds of the time per call; "
          "GFLOP/s counts 2*T*B*(I*H + H*H + H*O)\n")
    names = ["rnnext", "rnnext.step"] + PEERS
    print(f"{'shape (I,H,O,B,T)':30s}" + "".join(f"{n + ' ms':>16s}" for n in names)
          + f"{'rnnext / best':>22s}{'GFLOP/s':>9s}{'max |diff|':>12s}")
    for shape, s in r["shapes"].items():
        sh = s["shape"]
        line = f"{shape + ' ({I},{H},{O},{B},{T})'.format(**sh):30s}"
        for n in names:
            im = s["impls"].get(n)
            line += f"{im['median_us'] / 1e3:16.4g}" if im else f"{'missing' if n in s['missing'] else '-':>16s}"
        rx = s.get("ratio_rnnext")
        line += f"{rx:12.2f} {s['best_peer']:9s}" if rx is not None else f"{'no peer':>22s}"
        line += f"{s['impls']['rnnext']['gflops']:9.1f}"
        worst = max(max(im["max_abs_diff_y"], im["max_abs_diff_h"]) for im in s["impls"].values())
        print(line + f"{worst:12.1e}")
    miss = {n: m for s in r["shapes"].values() for n, m in s["missing"].items()}
    if miss:
        print("missing: " + "; ".join(f"{n}: {m}" for n, m in miss.items()))
    print("(max |diff|: the largest difference of any implementation's y or h_n to a float64 NumPy forward)")
    print("\nmax abs difference to the float64 reference, y / h_n:")
    for shape, s in r["shapes"].items():
        print(f"  {shape:8s} " + ", ".join(f"{n} {im['max_abs_diff_y']:.1e} / {im['max_abs_diff_h']:.1e}"
                                          for n, im in s["impls"].items()))
    print(f"\ngoals of issue 10 (rnnext / the faster of onnxruntime and PyTorch <= {GOAL_VS_BEST}, same run):")
    for shape, s in r["shapes"].items():
        parts = []
        for name in ("rnnext", "rnnext.step"):
            rx = s.get(f"ratio_{name}")
            if rx is not None:
                parts.append(f"{name} {rx:.2f} x {s['best_peer']} {'met' if rx <= GOAL_VS_BEST else 'NOT met'}")
        if "rnnext.step" in s["impls"]:
            us = s["impls"]["rnnext.step"]["median_us"]
            parts.append(f"step() {us:.2f} us (goal < {GOAL_STEP_US:g}) {'met' if us < GOAL_STEP_US else 'NOT met'}")
        print(f"  {shape:8s} " + ("; ".join(parts) or "no peer to compare with"))


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    # Thread counts must be set before NumPy (OpenBLAS), onnxruntime and PyTorch start pools.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    from rnnext import _core

    report: Dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu": cpu_name(),
                              "cores": os.cpu_count(), "threads": args.threads, "python": platform.python_version(),
                              "versions": versions(), "rnnext_kernels": _core.gemm_isa(),
                              "rnnext_gemm_isa_env": os.environ.get("RNNEXT_GEMM_ISA"),
                              "rounds": args.rounds, "block_s": args.block, "tolerance": TOL,
                              "loadavg_start": os.getloadavg(), "shapes": {}}
    for shape in args.shapes:
        print(f"timing {shape} ...", file=sys.stderr, flush=True)
        report["shapes"][shape] = time_shape(shape, args)
    report["loadavg_end"] = os.getloadavg()
    print_report(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    bad = [f"{shape} {n}: y {im['max_abs_diff_y']:.2e}, h_n {im['max_abs_diff_h']:.2e}"
           for shape, s in report["shapes"].items() for n, im in s["impls"].items()
           if max(im["max_abs_diff_y"], im["max_abs_diff_h"]) > TOL]
    if bad:
        print(f"FAILED: outputs differ from the float64 reference by more than {TOL:g}: " + "; ".join(bad),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
